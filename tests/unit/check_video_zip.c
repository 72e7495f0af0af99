/* Unit tests of video_zip, the kind build_zipfile_of_videos, on a real
 * runner against a real database and file:// storage: the zip of a
 * study's visible videos is built (its build state set up by the kind's
 * enter hook), a video missing from storage is listed in
 * MISSING_VIDEOS.txt and makes the outcome succeeded_with_problems, and
 * the requester is emailed a link; the same set again reuses the zip
 * (lookup skips to notify); a set with nothing visible fails and says so
 * by email. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>

#include "studyhub/domain/videos.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/video_zip.h"
#include "unit_sched.h"

static char study[37], user[24], email[96], tag[40], max_id[24];

/* A lab admin (the requester), a study with one consented response and
 * two videos of it: TAG-1.mp4 stored, TAG-2.mp4 not. */
static void world(void)
{
    snprintf(tag, sizeof tag, "vz%d-%lld", (int)getpid(), (long long)util_mono_ms());
    snprintf(email, sizeof email, "%s@example.test", tag);
    snprintf(user, sizeof user, "%s", us_q("INSERT INTO users (email, given_name, is_researcher)"
                                           " VALUES ('%s', 'R', true) RETURNING id", email));
    snprintf(study, sizeof study, "%s", us_q(
        "WITH l AS (INSERT INTO labs (name, approved_to_test) VALUES ('%s', true) RETURNING id),"
        " m AS (INSERT INTO lab_members (lab_id, user_id, role) SELECT id, %s, 'admin' FROM l)"
        " INSERT INTO studies (name, lab_id, state, structure) SELECT 'Zip study', id,"
        " 'active', '{}' FROM l RETURNING uuid", tag, user));
    us_q("WITH s AS (SELECT id FROM studies WHERE uuid = '%s'),"
         " u AS (INSERT INTO users (email, given_name)"
         "       VALUES ('%s-parent@example.test', 'P') RETURNING id),"
         " c AS (INSERT INTO children (user_id, given_name, birthday, gender)"
         "       SELECT id, 'C', current_date - 400, 'f' FROM u RETURNING id),"
         " r AS (INSERT INTO responses (study_id, child_id, exp_data, sequence)"
         "       SELECT s.id, c.id, '{}', '[]' FROM s, c RETURNING id, study_id),"
         " k AS (INSERT INTO consent_rulings (response_id, action) SELECT id, 'accepted' FROM r)"
         " INSERT INTO videos (study_id, response_id, frame_id, full_name)"
         " SELECT r.study_id, r.id, 'f', '%s-' || n || '.mp4' FROM r, generate_series(1, 2) n",
         study, tag, tag);
    snprintf(max_id, sizeof max_id, "%s", us_q("SELECT max(id) FROM videos"));
}

static const char *enqueue(bool consent_only)
{
    static char id[32];

    snprintf(id, sizeof id, "%s", us_q(
        TASK_INSERT_SQL "VALUES ('" VIDEO_ZIP_KIND "', '%s:%s:x', '{\"study\": \"%s\","
        " \"user\": \"%s\", \"consent_only\": %s, \"max_video_id\": %s}') RETURNING id",
        study, consent_only ? "consent" : "all", study, user, consent_only ? "true" : "false",
        max_id));
    return id;
}

static const char *stages(const char *id)
{
    return us_q("SELECT string_agg(stage || ':' || outcome, ',' ORDER BY id) FROM task_stages"
                " WHERE task_id = %s", id);
}

/* The names of the zip's entries, sorted, comma-separated. */
static const char *entries(const char *key)
{
    static char names[512];
    char path[600];
    struct archive *a = archive_read_new();
    struct archive_entry *e;

    snprintf(path, sizeof path, "%s/objects/%s", us.dir, key);
    archive_read_support_format_zip(a);
    ck_assert_int_eq(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
    names[0] = '\0';
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                 names[0] ? "," : "", archive_entry_pathname(e));
        archive_read_data_skip(a);
    }
    archive_read_free(a);
    return names;
}

static void up(void)
{
    us_up(true);
    us_runner(&video_zip_kind);
    world();
    char first[64];

    snprintf(first, sizeof first, "%s-1.mp4", tag);
    us_put_object(first, "the first video");
    us_runner_start();
}

START_TEST(builds_lists_the_missing_and_emails_a_link)
{
    char id[32], key[200], want[256];

    up();
    snprintf(id, sizeof id, "%s", enqueue(false));
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(us_q("SELECT outcome FROM tasks WHERE id = %s", id),
                     "succeeded_with_problems");
    ck_assert_str_eq(stages(id), "prepare:succeeded,lookup:succeeded,build:succeeded,"
                                 "notify:succeeded");
    ck_assert_str_eq(us_q("SELECT (result->>'videos') || ',' || (result->>'missing') || ','"
                          " || (result->>'reused') FROM tasks WHERE id = %s", id), "2,1,false");
    snprintf(key, sizeof key, "%s", us_q("SELECT result->>'key' FROM tasks WHERE id = %s", id));
    ck_assert_msg(strncmp(key, VIDEO_ZIP_PREFIX, strlen(VIDEO_ZIP_PREFIX)) == 0, "%s", key);
    snprintf(want, sizeof want, "%s-1.mp4,MISSING_VIDEOS.txt", tag);
    ck_assert_str_eq(entries(key), want);
    ck_assert_str_eq(us_q("SELECT subject || ':' || (body_text LIKE '%%2 videos%%' OR"
                          " body_text LIKE '%%1 videos%%') FROM mail_outbox WHERE to_addr = '%s'",
                          email), "Your video archive has been created:true");

    /* The same set again: the zip is there, lookup skips to notify. */
    snprintf(id, sizeof id, "%s", enqueue(false));
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(stages(id), "prepare:succeeded,lookup:skipped,notify:succeeded");
    ck_assert_str_eq(us_q("SELECT (result->>'reused') || ',' || (result->>'key')"
                          " FROM tasks WHERE id = %s", id),
                     (snprintf(want, sizeof want, "true,%s", key), want));
    ck_assert_str_eq(us_q("SELECT count(*) FROM mail_outbox WHERE to_addr = '%s'", email), "2");
    us_down();
}
END_TEST

START_TEST(nothing_visible_fails_and_says_so)
{
    char id[32];

    up();
    /* Consent videos only: there are none. */
    snprintf(id, sizeof id, "%s", enqueue(true));
    us_wait("failed", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(stages(id), "prepare:failed,fail_notify:failed");
    ck_assert_str_eq(us_q("SELECT error FROM tasks WHERE id = %s", id),
                     "there are no videos you may download in this study any more");
    ck_assert_str_eq(us_q("SELECT subject FROM mail_outbox WHERE to_addr = '%s'", email),
                     "Your video archive could not be created");
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("video_zip");
    TCase *tc = tcase_create("kind");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, builds_lists_the_missing_and_emails_a_link);
    tcase_add_test(tc, nothing_visible_fails_and_says_so);
    suite_add_tcase(s, tc);
    return us_main("check_video_zip", s);
}
