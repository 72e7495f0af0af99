/* Unit tests of task_claim, how a runner takes work, against a real
 * database with the poll turned off (TASK_POLL_S=3600): only rows of its
 * kinds, only once due (the timer to the next due row wakes it); a NOTIFY
 * of a new row wakes it; TASK_CONCURRENCY bounds the rows it holds, and a
 * freed slot takes the next; a running row of another host is taken back
 * once its lease ran out, and left alone while it holds one. */
#include "config.h"

#include "studyhub/queue/task_queue.h"
#include "unit_sched.h"

/* The kind: payload {"mode": "done"} succeeds at once; "hold" waits until
 * cancelled. */
static const char *const claim_states[] = { "only" };

static int claim_open(struct task *t, char *err, size_t errlen)
{
    return 0;
}

static void claim_step(struct task *t)
{
    const char *mode = json_string_value(json_object_get(t->payload, "mode"));

    if (mode && strcmp(mode, "hold") == 0)
        return;
    task_finish(t, TASK_SUCCEEDED, json_pack("{s:i, s:b}", "attempts", t->attempts,
                                             "resumed", t->resumed), NULL);
}

static void claim_cancel(struct task *t)
{
    task_finish(t, TASK_CANCELLED, NULL, "cancelled by the test");
}

static void claim_close(struct task *t)
{
}

static const struct task_kind claim_kind = {
    .name = "check_claim", .states = claim_states, .nstates = 1, .max_attempts = 3,
    .open = claim_open, .step = claim_step, .cancel = claim_cancel, .close = claim_close,
};

static const char *concurrency = "4";

static const char *env(const char *name)
{
    if (strcmp(name, "TASK_POLL_S") == 0)
        return "3600";
    if (strcmp(name, "TASK_CONCURRENCY") == 0)
        return concurrency;
    return NULL;
}

/* The loop runs for ms, whatever comes. */
static void turn_loop_ms(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    event_base_loopexit(us.base, &tv);
    event_base_dispatch(us.base);
}

static void up(const char *slots)
{
    concurrency = slots;
    us.env = env;
    us_up(false);
    us_q("DELETE FROM tasks WHERE kind IN ('check_claim', 'check_unknown')");
    us_runner(&claim_kind);
}

/* A row of kind with payload, due after `after` seconds; its id. */
static const char *enqueue(const char *kind, const char *mode, int after)
{
    static char id[4][32];
    static int n;

    n = (n + 1) % 4;
    snprintf(id[n], sizeof id[n], "%s", us_q(
        TASK_INSERT_SQL "VALUES ('%s', NULL, '{\"mode\": \"%s\"}') RETURNING id", kind, mode));
    if (after)
        us_q("UPDATE tasks SET run_after = now() + interval '%d seconds' WHERE id = %s", after,
             id[n]);
    return id[n];
}

START_TEST(only_its_kinds_and_only_once_due)
{
    char now_id[32], later[32], other[32];

    up("4");
    snprintf(now_id, sizeof now_id, "%s", enqueue("check_claim", "done", 0));
    snprintf(later, sizeof later, "%s", enqueue("check_claim", "done", 2));
    snprintf(other, sizeof other, "%s", enqueue("check_unknown", "done", 0));
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", now_id);
    ck_assert_str_eq(us_q("SELECT state FROM tasks WHERE id = %s", later), "queued");
    /* The timer to the next due row (no poll, no notification). */
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", later);
    ck_assert_str_eq(us_q("SELECT started_at >= run_after FROM tasks WHERE id = %s", later), "t");
    ck_assert_str_eq(us_q("SELECT state || ':' || attempts FROM tasks WHERE id = %s", other),
                     "queued:0");
    us_down();
}
END_TEST

START_TEST(a_notification_wakes_it)
{
    char id[32];

    up("4");
    us_runner_start();
    turn_loop_ms(300);      /* the start-up claim finds nothing */
    snprintf(id, sizeof id, "%s", enqueue("check_claim", "done", 0));
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", id);
    ck_assert_str_eq(us_q("SELECT result->>'attempts' FROM tasks WHERE id = %s", id), "1");
    us_down();
}
END_TEST

static void on_cancel(enum task_cancel_status st, void *arg)
{
    *(enum task_cancel_status *)arg = st;
}


START_TEST(concurrency_bounds_the_slots)
{
    char a[32], b[32];
    enum task_cancel_status st = TASK_CANCEL_UNAVAILABLE;

    up("1");
    snprintf(a, sizeof a, "%s", enqueue("check_claim", "hold", 0));
    snprintf(b, sizeof b, "%s", enqueue("check_claim", "hold", 0));
    us_runner_start();
    us_wait("1", "SELECT count(*) FROM tasks WHERE kind = 'check_claim' AND state = 'running'");
    turn_loop_ms(500);
    ck_assert_str_eq(us_q("SELECT string_agg(state, ',' ORDER BY id) FROM tasks"
                          " WHERE kind = 'check_claim'"), "running,queued");
    ck_assert_uint_eq(task_runner_busy(us.app.tasks), 1);
    /* The slot freed: the next row is taken. */
    ck_assert_int_eq(task_cancel(us.app.tasks, a, on_cancel, &st), 0);
    us_wait("cancelled", "SELECT state FROM tasks WHERE id = %s", a);
    us_wait("running", "SELECT state FROM tasks WHERE id = %s", b);
    ck_assert_int_eq(st, TASK_CANCEL_REQUESTED);
    us_down();
}
END_TEST

START_TEST(another_hosts_row_taken_back_only_when_its_lease_ran_out)
{
    char gone[32], alive[32];

    up("4");
    snprintf(gone, sizeof gone, "%s", enqueue("check_claim", "done", 0));
    snprintf(alive, sizeof alive, "%s", enqueue("check_claim", "done", 0));
    us_q("UPDATE tasks SET state = 'running', stage = 'only', attempts = 1,"
         " lease_owner = 'elsewhere/1/2/dead', lease_until = now() - interval '1 second'"
         " WHERE id = %s", gone);
    us_q("UPDATE tasks SET state = 'running', stage = 'only', attempts = 1,"
         " lease_owner = 'elsewhere/1/3/alive', lease_until = now() + interval '1 hour'"
         " WHERE id = %s", alive);
    us_runner_start();
    us_wait("succeeded", "SELECT state FROM tasks WHERE id = %s", gone);
    ck_assert_str_eq(us_q("SELECT (result->>'resumed') || ':' || (result->>'attempts')"
                          " FROM tasks WHERE id = %s", gone), "true:2");
    turn_loop_ms(300);
    ck_assert_str_eq(us_q("SELECT state || ':' || lease_owner FROM tasks WHERE id = %s", alive),
                     "running:elsewhere/1/3/alive");
    us_q("DELETE FROM tasks WHERE id = %s", alive);
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("task_claim");
    TCase *tc = tcase_create("claim");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, only_its_kinds_and_only_once_due);
    tcase_add_test(tc, a_notification_wakes_it);
    tcase_add_test(tc, concurrency_bounds_the_slots);
    tcase_add_test(tc, another_hosts_row_taken_back_only_when_its_lease_ran_out);
    suite_add_tcase(s, tc);
    return us_main("check_task_claim", s);
}
