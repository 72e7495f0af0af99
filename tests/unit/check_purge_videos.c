/* Unit tests of purge_videos, the job purge_video_storage, run through the
 * scheduler against a real database and file:// storage: a withdrawn
 * response's non-consent video goes (object, then row), its consent video
 * and a kept response's stay; the zips of its study go, another study's
 * young zip stays and an old one goes; a missing object counts as gone;
 * without storage there is nothing to do. */
#include "config.h"

#include <sys/time.h>

#include "studyhub/domain/videos.h"
#include "studyhub/tasks/purge_videos.h"
#include "unit_sched.h"

#define OTHER_STUDY "00000000-0000-4000-8000-00000000abcd"

/* A study with a withdrawn response (a video TAG-w and a consent video
 * TAG-wc) and a kept one (TAG-k); its uuid into su. */
static void world(const char *tag, char su[37])
{
    snprintf(su, 37, "%s", us_q(
        "WITH l AS (INSERT INTO labs (name, approved_to_test)"
        "           VALUES ('purge-' || gen_random_uuid(), true) RETURNING id),"
        " s AS (INSERT INTO studies (name, lab_id, state, structure)"
        "       SELECT 'Purge', id, 'active', '{}' FROM l RETURNING id, uuid),"
        " u AS (INSERT INTO users (email, given_name)"
        "       VALUES ('p-' || gen_random_uuid() || '@example.test', 'P') RETURNING id),"
        " c AS (INSERT INTO children (user_id, given_name, birthday, gender)"
        "       SELECT id, 'C', current_date - 400, 'f' FROM u RETURNING id),"
        " r AS (INSERT INTO responses (study_id, child_id, exp_data, sequence, withdrawn)"
        "       SELECT s.id, c.id, '{}', '[]', w FROM s, c, (VALUES (true), (false)) v(w)"
        "       RETURNING id, study_id, withdrawn),"
        " v AS (INSERT INTO videos (study_id, response_id, frame_id, full_name,"
        "                           is_consent_footage)"
        "       SELECT r.study_id, r.id, 'f', '%s-' || CASE WHEN NOT r.withdrawn THEN 'k'"
        "              WHEN k.cf THEN 'wc' ELSE 'w' END, k.cf"
        "         FROM r, (VALUES (false), (true)) k(cf) WHERE r.withdrawn OR NOT k.cf)"
        " SELECT uuid FROM s", tag));
    ck_assert_int_eq((int)strlen(su), 36);
}

/* TAG-suffix, in one of two buffers (two may be used at once). */
static const char *key_of(const char *tag, const char *suffix)
{
    static char buf[2][96];
    static int which;

    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s-%s", tag, suffix);
    return buf[which];
}

static void age_object(const char *key, long seconds)
{
    char path[600];
    struct timeval tv[2];

    snprintf(path, sizeof path, "%s/objects/%s", us.dir, key);
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(path, tv), 0);
}

START_TEST(withdrawn_videos_and_their_studys_zips_go)
{
    char su[37], tag[64], zip[128], kept[200];
    struct us_ran r;

    snprintf(tag, sizeof tag, "pv%d-a", (int)getpid());
    us_up(true);
    us_add(&purge_video_storage_job);
    us_start();
    world(tag, su);
    us_put_object(key_of(tag, "w"), "video");
    us_put_object(key_of(tag, "wc"), "video");
    us_put_object(key_of(tag, "k"), "video");
    snprintf(zip, sizeof zip, VIDEO_ZIP_PREFIX "%s_videos_abc.zip", su);
    us_put_object(zip, "zip");
    us_put_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_young.zip", "zip");

    r = us_run("purge_video_storage");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    us_assert_line(r, "deleted 1 withdrawn videos");
    us_assert_line(r, "deleted 1 withdrawn videos and 1 video zips");
    /* The withdrawn non-consent video: object and row gone. */
    ck_assert(!us_has_object(key_of(tag, "w")));
    ck_assert_str_eq(us_q("SELECT string_agg(full_name, ',' ORDER BY full_name) FROM videos"
                          " WHERE full_name LIKE '%s-%%'", tag),
                     (snprintf(kept, sizeof kept, "%s-k,%s-wc", tag, tag), kept));
    ck_assert(us_has_object(key_of(tag, "wc")));
    ck_assert(us_has_object(key_of(tag, "k")));
    /* Its study's zip is stale now; another study's young zip stays. */
    ck_assert(!us_has_object(zip));
    ck_assert(us_has_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_young.zip"));
    ck_assert_str_eq(us_q("SELECT outcome FROM job_runs WHERE job = 'purge_video_storage'"
                          " ORDER BY id DESC LIMIT 1"), "succeeded");
    us_down();
}
END_TEST

START_TEST(old_zips_go_and_a_missing_object_counts_as_gone)
{
    char su[37], tag[64];
    struct us_ran r;

    snprintf(tag, sizeof tag, "pv%d-b", (int)getpid());
    us_up(true);
    us_add(&purge_video_storage_job);
    us_start();
    world(tag, su);
    /* No object for TAG-w: storage says it is not there. */
    us_put_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_old.zip", "zip");
    age_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_old.zip", 2 * VIDEOS_ZIP_URL_TTL_S + 60);
    us_put_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_young.zip", "zip");
    age_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_young.zip", VIDEOS_ZIP_URL_TTL_S);

    r = us_run("purge_video_storage");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    us_assert_line(r, "deleted 1 withdrawn videos and 1 video zips");
    ck_assert_str_eq(us_q("SELECT count(*) FROM videos WHERE full_name = '%s-w'", tag), "0");
    ck_assert(!us_has_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_old.zip"));
    ck_assert(us_has_object(VIDEO_ZIP_PREFIX OTHER_STUDY "_videos_young.zip"));

    /* Again: nothing left to do. */
    r = us_run("purge_video_storage");
    us_assert_line(r, "deleted 0 withdrawn videos and 0 video zips");
    ck_assert_str_eq(us_q("SELECT count(*) FROM videos WHERE full_name = '%s'",
                          key_of(tag, "k")), "1");
    us_down();
}
END_TEST

START_TEST(without_storage_nothing_to_do)
{
    struct us_ran r;

    us_up(false);
    us_add(&purge_video_storage_job);
    us_start();
    r = us_run("purge_video_storage");
    ck_assert_msg(!r.failed, "%s", r.error);
    us_assert_line(r, "nothing to do: no storage");
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("purge_videos");
    TCase *tc = tcase_create("job");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, withdrawn_videos_and_their_studys_zips_go);
    tcase_add_test(tc, old_zips_go_and_a_missing_object_counts_as_gone);
    tcase_add_test(tc, without_storage_nothing_to_do);
    suite_add_tcase(s, tc);
    return us_main("check_purge_videos", s);
}
