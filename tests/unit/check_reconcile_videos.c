/* Unit tests of reconcile_videos against a real database and file://
 * storage: the job queues one task at a time; the kind records the videos
 * the webhooks missed (a consent video as such), reports what it cannot
 * place (a name off the scheme, a study that does not exist) as problems,
 * skips other modules' folders, changes nothing when run again, and drops
 * the reports of objects gone since; a task resumed after its last page
 * goes straight to finish (its enter hook); abort_stale_uploads aborts the
 * old incomplete uploads and keeps the young. */
#include "config.h"

#include <sys/time.h>

#include "studyhub/core/config.h"
#include "studyhub/domain/videos.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/reconcile_videos.h"
#include "unit_sched.h"

static char study[37], response[37], tag[32];

/* A study and a response of it: their uuids. */
static void world(void)
{
    const char *both = us_q(
        "WITH l AS (INSERT INTO labs (name, approved_to_test)"
        "           VALUES ('rec-' || gen_random_uuid(), true) RETURNING id),"
        " s AS (INSERT INTO studies (name, lab_id, state, structure)"
        "       SELECT 'Rec', id, 'active', '{}' FROM l RETURNING id, uuid),"
        " u AS (INSERT INTO users (email, given_name)"
        "       VALUES ('r-' || gen_random_uuid() || '@example.test', 'R') RETURNING id),"
        " c AS (INSERT INTO children (user_id, given_name, birthday, gender)"
        "       SELECT id, 'C', current_date - 400, 'f' FROM u RETURNING id),"
        " r AS (INSERT INTO responses (study_id, child_id, exp_data, sequence)"
        "       SELECT s.id, c.id, '{}', '[]' FROM s, c RETURNING uuid)"
        " SELECT (SELECT uuid FROM s) || ' ' || (SELECT uuid FROM r)");

    ck_assert_int_eq(sscanf(both, "%36s %36s", study, response), 2);
    /* A millisecond time of its own: the names differ from run to run. */
    snprintf(tag, sizeof tag, "%lld", 1700000000000LL + (long long)(util_mono_ms() % 100000000));
}

static const char *key(const char *what)
{
    static char buf[4][200];
    static int n;

    n = (n + 1) % 4;
    if (strcmp(what, "good") == 0)
        snprintf(buf[n], sizeof buf[n], "videoStream_%s_1-frame_%s_%s_1.mp4",
                 study, response, tag);
    else if (strcmp(what, "consent") == 0)
        snprintf(buf[n], sizeof buf[n], "consent-videoStream_%s_0-consent_%s_%s_2.mp4",
                 study, response, tag);
    else if (strcmp(what, "bad") == 0)
        snprintf(buf[n], sizeof buf[n], "notavideo-%s.mp4", tag);
    else    /* a study that does not exist */
        snprintf(buf[n], sizeof buf[n], "videoStream_00000000-0000-4000-8000-0000000000aa_f_"
                 "00000000-0000-4000-8000-0000000000bb_%s_3.mp4", tag);
    return buf[n];
}

static void up(void)
{
    us_up(true);
    us_q("DELETE FROM tasks WHERE kind = 'reconcile_videos'");
    us_q("DELETE FROM video_unplaced");
    us_add(&reconcile_videos_job);
    us_add(&abort_stale_uploads_job);
    us_start();
    us_runner(&reconcile_videos_kind);
    world();
}

/* Runs the job; the uuid of the task it queued (or found). */
static const char *queue_task(const char *want_prefix)
{
    static char uuid[37];
    struct us_ran r = us_run("reconcile_videos");
    const char *p = strstr(r.text, want_prefix);

    ck_assert_msg(!r.failed && p, "%s: %s", r.error, r.text);
    ck_assert_int_eq(sscanf(p + strlen(want_prefix), "%36s", uuid), 1);
    return uuid;
}

START_TEST(records_the_missing_and_reports_the_unplaceable)
{
    char uuid[37];

    up();
    us_put_object(key("good"), "v");
    us_put_object(key("consent"), "v");
    us_put_object(key("bad"), "v");
    us_put_object(key("nostudy"), "v");
    us_put_object(VIDEO_ZIP_PREFIX "someone_elses.zip", "z");

    /* One task at a time. */
    snprintf(uuid, sizeof uuid, "%s", queue_task("  | queued task "));
    ck_assert_str_eq(queue_task("  | already queued or running: task "), uuid);

    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE uuid = '%s'", uuid);
    ck_assert_str_eq(us_q("SELECT outcome FROM tasks WHERE uuid = '%s'", uuid),
                     "succeeded_with_problems");
    ck_assert_str_eq(us_q("SELECT (result->>'recorded') || ',' || (result->>'unplaced')"
                          " FROM tasks WHERE uuid = '%s'", uuid), "2,2");
    ck_assert_str_eq(us_q("SELECT string_agg(is_consent_footage::text, ',' ORDER BY full_name)"
                          " FROM videos WHERE full_name IN ('%s', '%s')", key("consent"),
                          key("good")), "true,false");
    ck_assert_str_eq(us_q("SELECT count(*) FROM videos v JOIN responses r ON r.id = v.response_id"
                          " WHERE v.full_name = '%s' AND r.uuid = '%s' AND v.frame_id = '1-frame'",
                          key("good"), response), "1");
    ck_assert_str_eq(us_q("SELECT reason LIKE 'not a video name: %%' FROM video_unplaced"
                          " WHERE key = '%s'", key("bad")), "t");
    ck_assert_str_eq(us_q("SELECT reason FROM video_unplaced WHERE key = '%s'", key("nostudy")),
                     "names study 00000000-0000-4000-8000-0000000000aa, which does not exist");
    ck_assert_str_eq(us_q("SELECT count(*) FROM video_unplaced WHERE key LIKE 'video-zips/%%'"),
                     "0");
    ck_assert_str_eq(us_q("SELECT problems LIKE 'cannot place 2 objects%%' FROM tasks"
                          " WHERE uuid = '%s'", uuid), "t");

    /* Again, with the bad name gone from storage: nothing new recorded,
     * and its report dropped. */
    char path[600];
    snprintf(path, sizeof path, "%s/objects/%s", us.dir, key("bad"));
    ck_assert_int_eq(unlink(path), 0);
    snprintf(uuid, sizeof uuid, "%s", queue_task("  | queued task "));
    us_wait("succeeded", "SELECT state FROM tasks WHERE uuid = '%s'", uuid);
    ck_assert_str_eq(us_q("SELECT (result->>'recorded') || ',' || (result->>'unplaced') || ','"
                          " || (result->>'reports_dropped') FROM tasks WHERE uuid = '%s'", uuid),
                     "0,1,1");
    ck_assert_str_eq(us_q("SELECT count(*) FROM video_unplaced WHERE key = '%s'", key("bad")),
                     "0");
    us_down();
}
END_TEST

START_TEST(resumed_after_its_last_page_it_finishes)
{
    char id[32];

    up();
    us_put_object(key("good"), "v");
    /* The row a server left after saving its last page (no token). */
    snprintf(id, sizeof id, "%s", us_q(
        TASK_INSERT_SQL "VALUES ('reconcile_videos', 'videos', '{\"pages\": 2, \"listed\": 5,"
        " \"recorded\": 1, \"unplaced\": 0}') RETURNING id"));
    us_q("UPDATE tasks SET state = 'running', stage = 'page', attempts = 1,"
         " lease_owner = 'elsewhere/1/2/x', lease_until = now() - interval '1 second'"
         " WHERE id = %s", id);
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(us_q("SELECT string_agg(stage || ':' || outcome, ',' ORDER BY id)"
                          " FROM task_stages WHERE task_id = %s", id),
                     "page:skipped,finish:succeeded");
    ck_assert_str_eq(us_q("SELECT (result->>'pages') || ',' || (result->>'listed')"
                          " FROM tasks WHERE id = %s", id), "2,5");
    /* Nothing was listed again. */
    ck_assert_str_eq(us_q("SELECT count(*) FROM videos WHERE full_name = '%s'", key("good")), "0");
    us_down();
}
END_TEST

/* ---- abort_stale_uploads ------------------------------------------------------ */

struct created {
    int calls;
    char id[128];
};

static void on_created(const struct storage_result *res, void *arg)
{
    struct created *c = arg;

    ck_assert_int_eq(res->err, 0);
    snprintf(c->id, sizeof c->id, "%s", res->upload_id);
    c->calls++;
    event_base_loopbreak(us.base);
}

static void create_upload(const char *k, struct created *c)
{
    ck_assert_ptr_nonnull(storage_mpu_create(us.app.storage, k, "video/mp4", on_created, c));
    while (!c->calls)
        event_base_loop(us.base, EVLOOP_ONCE);
}

START_TEST(stale_uploads_aborted_young_kept)
{
    struct created old = { 0 }, young = { 0 };
    char path[600], line[300];
    struct timeval tv[2];
    struct us_ran r;

    up();
    create_upload("old-upload.mp4", &old);
    create_upload("young-upload.mp4", &young);
    snprintf(path, sizeof path, "%s/objects/" ".studyhub/uploads/%s/key", us.dir, old.id);
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= us.cfg.stale_upload_age_s + 60;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(path, tv), 0);

    r = us_run("abort_stale_uploads");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    snprintf(line, sizeof line, "  | aborted 1 incomplete uploads older than %ld s, 0 failed, "
             "1 younger kept\n", us.cfg.stale_upload_age_s);
    ck_assert_msg(strstr(r.text, line), "%s", r.text);
    ck_assert_msg(strstr(r.text, "  | aborted old-upload.mp4 (upload "), "%s", r.text);
    snprintf(path, sizeof path, "%s/objects/.studyhub/uploads/%s", us.dir, old.id);
    ck_assert_int_ne(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/objects/.studyhub/uploads/%s", us.dir, young.id);
    ck_assert_int_eq(access(path, F_OK), 0);
    us_down();
}
END_TEST

START_TEST(no_storage_no_abort)
{
    struct us_ran r;

    us_up(false);
    us_add(&abort_stale_uploads_job);
    us_start();
    r = us_run("abort_stale_uploads");
    ck_assert_str_eq(r.error, "the job failed");
    us_assert_line(r, "no storage");
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reconcile_videos");
    TCase *tc = tcase_create("kind and jobs");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, records_the_missing_and_reports_the_unplaceable);
    tcase_add_test(tc, resumed_after_its_last_page_it_finishes);
    tcase_add_test(tc, stale_uploads_aborted_young_kept);
    tcase_add_test(tc, no_storage_no_abort);
    suite_add_tcase(s, tc);
    return us_main("check_reconcile_videos", s);
}
