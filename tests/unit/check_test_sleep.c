/* Unit tests of test_sleep, the kind and the job the end-to-end tests
 * drive, on a real runner and scheduler against a real database: the
 * stages it is asked for and no more; a stage that fails on purpose is
 * retried until no attempt is left; the child mode; a cancel while it
 * sleeps; the job sleeps, shows its state while it does, and succeeds. */
#include "config.h"

#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/test_sleep.h"
#include "unit_sched.h"

static char id[32];

static void enqueue(const char *payload)
{
    snprintf(id, sizeof id, "%s", us_q(TASK_INSERT_SQL "VALUES ('test_sleep', NULL, '%s')"
                                       " RETURNING id", payload));
}

static const char *stages(void)
{
    return us_q("SELECT string_agg(stage || ':' || coalesce(outcome, 'open'), ',' ORDER BY id)"
                " FROM task_stages WHERE task_id = %s", id);
}

static void up(void)
{
    us_up(false);
    us_q("DELETE FROM tasks WHERE kind = 'test_sleep'");
    us_runner(&test_sleep_kind);
}

START_TEST(runs_the_stages_asked_for)
{
    up();
    enqueue("{\"seconds\": 0, \"stages\": 2}");
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(stages(), "first:succeeded,second:succeeded");
    ck_assert_str_eq(us_q("SELECT result->>'stages' FROM tasks WHERE id = %s", id), "2");
    ck_assert_str_eq(us_q("SELECT outcome FROM tasks WHERE id = %s", id), "succeeded");
    us_down();
}
END_TEST

START_TEST(a_failing_stage_is_retried_then_fails)
{
    up();
    enqueue("{\"seconds\": 0, \"fail_stage\": \"second\"}");
    us_runner_start();
    us_wait("failed", "SELECT state FROM tasks WHERE id = %s", id);
    /* Three attempts (the kind's), each failing in second; the first
     * stage ran once: a retry goes on in the stage it failed in. */
    ck_assert_str_eq(us_q("SELECT attempts FROM tasks WHERE id = %s", id), "3");
    ck_assert_str_eq(stages(), "first:succeeded,second:failed,second:failed,second:failed");
    ck_assert_str_eq(us_q("SELECT error LIKE 'failed on purpose in stage second%%'"
                          " FROM tasks WHERE id = %s", id), "t");
    us_down();
}
END_TEST

START_TEST(child_mode_sleeps_in_a_child)
{
    up();
    enqueue("{\"seconds\": 0.05, \"stages\": 1, \"mode\": \"child\"}");
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(us_q("SELECT log LIKE '%%sleeping 0.050 s in child%%' AND log LIKE"
                          " '%%: exit 0%%' FROM task_stages WHERE task_id = %s", id), "t");
    us_down();
}
END_TEST

static void on_cancel(enum task_cancel_status st, void *arg)
{
    *(enum task_cancel_status *)arg = st;
}

START_TEST(cancelled_while_sleeping)
{
    enum task_cancel_status st = TASK_CANCEL_UNAVAILABLE;

    up();
    enqueue("{\"seconds\": 60}");
    us_runner_start();
    us_wait("running:first", "SELECT state || ':' || stage FROM tasks WHERE id = %s", id);
    us_wait("t", "SELECT log LIKE '%%sleeping 60 s%%' FROM task_stages WHERE task_id = %s", id);
    ck_assert_int_eq(task_cancel(us.app.tasks, id, on_cancel, &st), 0);
    us_wait("cancelled", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_int_eq(st, TASK_CANCEL_REQUESTED);
    ck_assert_str_eq(us_q("SELECT error FROM tasks WHERE id = %s", id),
                     "cancelled while sleeping");
    us_down();
}
END_TEST

/* ---- the job ---------------------------------------------------------------- */

static void on_ran(const char *text, const char *error, void *arg)
{
    struct us_ran *r = arg;

    r->called = true;
    snprintf(r->text, sizeof r->text, "%s", text);
    r->failed = error != NULL;
}

START_TEST(the_job_sleeps_then_succeeds)
{
    struct us_ran r = { 0 };
    struct sched_job_view v = { 0 };
    int64_t deadline;

    us_up(false);
    us_add(&test_sleep_job);
    us_start();
    sched_run_now(us.app.sched, "test_sleep", on_ran, &r);
    /* While it sleeps, the view shows the job's state. */
    deadline = util_mono_ms() + US_WAIT_MS;
    while (!r.called && util_mono_ms() < deadline) {
        sched_job_view(us.app.sched, 0, &v);
        if (v.state && strcmp(v.state, "sleep") == 0)
            break;
        event_base_loop(us.base, EVLOOP_ONCE);
    }
    ck_assert(v.running_here);
    ck_assert_str_eq(v.state, "sleep");
    ck_assert(!r.called);
    ck_assert_str_eq(us_q("SELECT outcome FROM job_runs WHERE job = 'test_sleep'"
                          " ORDER BY id DESC LIMIT 1"), "running");
    while (!r.called && util_mono_ms() < deadline)
        event_base_loop(us.base, EVLOOP_ONCE);
    ck_assert(r.called && !r.failed);
    ck_assert_msg(strstr(r.text, "  | sleeping 2000 ms\n  | slept 2000 ms\n"), "%s", r.text);
    sched_job_view(us.app.sched, 0, &v);
    ck_assert(!v.running_here);
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("test_sleep");
    TCase *tc = tcase_create("kind and job");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, runs_the_stages_asked_for);
    tcase_add_test(tc, a_failing_stage_is_retried_then_fails);
    tcase_add_test(tc, child_mode_sleeps_in_a_child);
    tcase_add_test(tc, cancelled_while_sleeping);
    tcase_add_test(tc, the_job_sleeps_then_succeeds);
    suite_add_tcase(s, tc);
    return us_main("check_test_sleep", s);
}
