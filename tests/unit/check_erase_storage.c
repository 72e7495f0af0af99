/* Unit tests of erase_storage: the text array literal that names the
 * batch's keys to forget (quotes, backslashes, commas, braces, empty);
 * and, with a database (TEST_DATABASE_URL) and file:// storage, the kind:
 * an erasure's videos and its studies' zips are deleted (a missing one
 * counts as gone), its rows forgotten batch by batch (each DELETE stage
 * entered afresh), the erasure marked done. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/erase_storage.h"
#include "unit_sched.h"
#include "unit_main.h"

START_TEST(text_array_quotes_every_key)
{
    char *keys[] = { "videoStream_a_b", "with,comma {brace}", "q\"uote", "back\\slash", "" };
    char *s = erase_storage_text_array(keys, 5);

    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"videoStream_a_b\",\"with,comma {brace}\",\"q\\\"uote\","
                        "\"back\\\\slash\",\"\"}");
    free(s);
    s = erase_storage_text_array(keys, 0);
    ck_assert_str_eq(s, "{}");
    free(s);
}
END_TEST

/* An erasure of ERASE_STORAGE_BATCH + 2 videos (TAG-v<n>, the last not
 * stored) and the zips of one study; its uuid. */
static const char *erasure(const char *tag, const char *study)
{
    static char uuid[37];
    char key[128];

    snprintf(uuid, sizeof uuid, "%s", us_q(
        "WITH e AS (INSERT INTO erasures (scope, subject_uuid, requested_by)"
        "           VALUES ('child', gen_random_uuid(), 'family') RETURNING id, uuid),"
        " v AS (INSERT INTO erasure_objects (erasure_id, key, kind)"
        "       SELECT e.id, '%s-v' || n, 'video' FROM e, generate_series(1, %d) n),"
        " z AS (INSERT INTO erasure_objects (erasure_id, key, kind)"
        "       SELECT e.id, 'video-zips/%s_', 'zips' FROM e)"
        " SELECT uuid FROM e", tag, ERASE_STORAGE_BATCH + 2, study));
    for (int n = 1; n <= ERASE_STORAGE_BATCH + 1; n++) {
        snprintf(key, sizeof key, "%s-v%d", tag, n);
        us_put_object(key, "video");
    }
    return uuid;
}

START_TEST(deletes_forgets_and_marks_done)
{
    const char *study = "00000000-0000-4000-8000-00000000e4a5", *other =
        "00000000-0000-4000-8000-00000000e4a6";
    char tag[40], uuid[37], key[128];

    snprintf(tag, sizeof tag, "er%d", (int)getpid());
    us_up(true);
    us_runner(&erase_storage_kind);
    snprintf(uuid, sizeof uuid, "%s", erasure(tag, study));
    snprintf(key, sizeof key, "video-zips/%s_videos_a.zip", study);
    us_put_object(key, "zip");
    snprintf(key, sizeof key, "video-zips/%s_consent_videos_b.zip", study);
    us_put_object(key, "zip");
    snprintf(key, sizeof key, "video-zips/%s_videos_c.zip", other);
    us_put_object(key, "zip");
    us_q(TASK_INSERT_SQL "VALUES ('" ERASE_STORAGE_KIND "', '%s', '{\"erasure\": \"%s\"}')",
         uuid, uuid);
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE subject = '%s'", uuid);
    /* Two batches: the first all videos, the second the rest and the zips. */
    ck_assert_str_eq(us_q("SELECT string_agg(s.stage, ',' ORDER BY s.id) FROM task_stages s"
                          " JOIN tasks t ON t.id = s.task_id WHERE t.subject = '%s'", uuid),
                     "load,delete,forget,load,delete,forget,load,finish");
    ck_assert_str_eq(us_q("SELECT (result->>'videos_deleted') || ',' ||"
                          " (result->>'zips_deleted') FROM tasks WHERE subject = '%s'", uuid),
                     "102,2");
    ck_assert_str_eq(us_q("SELECT count(*) FROM erasure_objects eo JOIN erasures e"
                          " ON e.id = eo.erasure_id WHERE e.uuid = '%s'", uuid), "0");
    ck_assert_str_eq(us_q("SELECT storage_done_at IS NOT NULL FROM erasures WHERE uuid = '%s'",
                          uuid), "t");
    snprintf(key, sizeof key, "%s-v1", tag);
    ck_assert(!us_has_object(key));
    snprintf(key, sizeof key, "video-zips/%s_videos_a.zip", study);
    ck_assert(!us_has_object(key));
    snprintf(key, sizeof key, "video-zips/%s_videos_c.zip", other);
    ck_assert(us_has_object(key));
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("erase_storage");
    TCase *tc = tcase_create("erase_storage");
    tcase_add_test(tc, text_array_quotes_every_key);
    suite_add_tcase(s, tc);
    us.db_url = getenv("TEST_DATABASE_URL");
    if (us.db_url && *us.db_url) {
        char err[512] = "";
        TCase *db = tcase_create("kind");

        if (migrate_apply(us.db_url, 30, err, sizeof err) < 0) {
            fprintf(stderr, "check_erase_storage: cannot migrate: %s\n", err);
            return EXIT_FAILURE;
        }
        tcase_set_timeout(db, 60);
        tcase_add_test(db, deletes_forgets_and_marks_done);
        suite_add_tcase(s, db);
    }
    return unit_run(s);
}
