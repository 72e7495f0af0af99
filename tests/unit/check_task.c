/* Unit tests of task, the runner everything long stands on, on a real loop
 * against a real PostgreSQL (TEST_DATABASE_URL: tools/test makes a fresh
 * database per build; it is migrated here).  A kind of three states is run
 * to its end; retried, then given up; finished with a problem; cancelled
 * while queued and while running; and taken back after a process of this
 * host died holding it.  Each case reads the rows the runner wrote (tasks
 * and task_stages) with a separate blocking connection. */
#include <check.h>
#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/util.h"
#include "studyhub/io/migrate.h"
#include "studyhub/io/pg.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "unit_loop.h"
#include "unit_main.h"

#define WAIT_MS 30000           /* for any one condition, on a loaded machine */

static const char *db_url;

/* ---- the kind under test --------------------------------------------------
 * Payload {"mode": "ok" | "retry_once" | "retry_always" | "problem" | "wait"}:
 * ok goes first -> second -> last and succeeds; retry_once retries its first
 * attempt in "first"; retry_always retries until no attempt is left;
 * problem reports one and succeeds; wait sits in "first" until cancelled. */

enum ck_state { CKS_FIRST, CKS_SECOND, CKS_LAST };
static const char *const ck_state_names[] = { "first", "second", "last" };

struct ck_task {
    struct task *t;
    char mode[16];
    int entered;                /* the state enter last set up, or -1 */
};

static int ck_closed;           /* close calls: every open is closed once */

static int ck_open(struct task *t, char *err, size_t errlen)
{
    struct ck_task *c = calloc(1, sizeof *c);
    const char *mode = json_string_value(json_object_get(t->payload, "mode"));

    if (!c || !mode) {
        free(c);
        snprintf(err, errlen, "no mode");
        return -1;
    }
    c->t = t;
    snprintf(c->mode, sizeof c->mode, "%s", mode);
    c->entered = -1;
    t->data = c;
    return 0;
}

/* Each state is entered before its step: the log says so, and step checks
 * it was entered for its own state. */
static void ck_enter(struct task *t, int state)
{
    struct ck_task *c = t->data;

    ck_assert_int_eq(state, t->state);
    c->entered = state;
    task_log(t, "entered %s", ck_state_names[state]);
}

static void ck_step(struct task *t)
{
    struct ck_task *c = t->data;

    ck_assert_int_eq(c->entered, t->state);

    if (strcmp(c->mode, "wait") == 0)
        return;                          /* until cancel */
    if (strcmp(c->mode, "retry_always") == 0 ||
        (strcmp(c->mode, "retry_once") == 0 && t->attempts == 1)) {
        task_log(t, "attempt %d fails", t->attempts);
        task_retry(t, "attempt %d failed on purpose", t->attempts);
        return;
    }
    if (strcmp(c->mode, "problem") == 0) {
        task_problem(t, "one video is missing");
        task_finish(t, TASK_SUCCEEDED, json_pack("{s:s}", "mode", c->mode), NULL);
        return;
    }
    if (t->state < CKS_LAST) {
        task_log(t, "stage %s done", ck_state_names[t->state]);
        task_set_state(t, t->state + 1, TASK_STAGE_OK);
        return;
    }
    task_finish(t, TASK_SUCCEEDED,
                json_pack("{s:i, s:b}", "attempts", t->attempts, "resumed", t->resumed),
                NULL);
}

static int ck_resume(struct task *t, int interrupted)
{
    return interrupted;                  /* run the interrupted stage again */
}

static void ck_cancel(struct task *t)
{
    task_finish(t, TASK_CANCELLED, NULL, "cancelled by the test");
}

static void ck_close(struct task *t)
{
    free(t->data);
    t->data = NULL;
    ck_closed++;
}

static const struct task_kind ck_kind = {
    .name = "check_steps", .states = ck_state_names, .nstates = 3,
    .initial_state = CKS_FIRST, .lease_s = 10, .max_attempts = 2, .retry_delay_s = 1,
    .open = ck_open, .enter = ck_enter, .step = ck_step, .resume = ck_resume, .cancel = ck_cancel,
    .close = ck_close,
};

/* ---- the fixture: a loop, a pool, a runner; a blocking connection ------ */

static struct event_base *base;
static struct config cfg;
static struct app app;
static PGconn *db;

static const char *fake_getenv(const char *name, void *arg)
{
    if (strcmp(name, "DATABASE_URL") == 0)
        return db_url;
    if (strcmp(name, "TASK_POLL_S") == 0)
        return "1";
    return NULL;
}

/* The first column of the first row of sql, as text ("" for none). */
static char *q(const char *sql)
{
    static char out[4096];
    PGresult *res = PQexec(db, sql);

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK ||
                  PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(res));
    snprintf(out, sizeof out, "%s",
             PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return out;
}

static void setup(void)
{
    char err[256] = "";

    ck_assert_msg(config_load(&cfg, fake_getenv, NULL, err, sizeof err) == 0, "%s", err);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    app.base = base;
    app.cfg = &cfg;
    app.pg = pg_pool_new(base, db_url, 2, 5000, 10000);
    ck_assert_ptr_nonnull(app.pg);
    db = PQconnectdb(db_url);
    ck_assert_int_eq(PQstatus(db), CONNECTION_OK);
    q("DELETE FROM tasks WHERE kind = 'check_steps'");
    app.tasks = task_runner_new(&app);
    ck_assert_ptr_nonnull(app.tasks);
    ck_assert_int_eq(task_register(app.tasks, &ck_kind), 0);
    ck_closed = 0;
}

static void teardown(void)
{
    task_runner_free(app.tasks);
    pg_pool_free(app.pg);       /* answers what is still out: the runner goes */
    reap_flush(base);           /* ... once the loop would have turned */
    unit_loop_free(base);
    PQfinish(db);
    config_cleanup(&cfg);
    memset(&app, 0, sizeof app);
}

/* Runs the loop until sql's first value equals want (or, with sql NULL,
 * until ck_closed reaches closed), or fails after WAIT_MS.  Polled every
 * 50 ms from a timer. */
struct waiter {
    const char *sql, *want;         /* sql NULL: wait for closed close calls */
    int64_t deadline;
    bool met;
    struct event *tick;
    int closed;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct waiter *w = arg;

    if (w->sql ? strcmp(q(w->sql), w->want) == 0 : ck_closed >= w->closed) {
        w->met = true;
        event_base_loopbreak(base);
        return;
    }
    if (util_mono_ms() > w->deadline) {
        event_base_loopbreak(base);
        return;
    }
    util_timer_ms(w->tick, 50);
}

static void wait_for(const char *sql, const char *want)
{
    struct waiter w = { sql, want, util_mono_ms() + WAIT_MS, false, NULL, 0 };

    w.tick = evtimer_new(base, on_tick, &w);
    util_timer_ms(w.tick, 0);
    event_base_dispatch(base);
    event_free(w.tick);
    ck_assert_msg(w.met, "waited %d ms for [%s] = '%s'; it is '%s'", WAIT_MS, sql, want,
                  q(sql));
}

/* The task's row says it ended before the runner has read that answer
 * and closed it: wait for the close too. */
static void wait_closed(int n)
{
    struct waiter w = { NULL, NULL, util_mono_ms() + WAIT_MS, false, NULL, n };

    w.tick = evtimer_new(base, on_tick, &w);
    util_timer_ms(w.tick, 0);
    event_base_dispatch(base);
    event_free(w.tick);
    ck_assert_msg(w.met, "waited %d ms for %d closes; there were %d", WAIT_MS, n, ck_closed);
    ck_assert_int_eq(ck_closed, n);
}

static char *enqueue_sql(const char *mode)
{
    static char sql[256];

    snprintf(sql, sizeof sql, TASK_INSERT_SQL "VALUES ('check_steps', NULL,"
             " '{\"mode\": \"%s\"}') RETURNING id", mode);
    return sql;
}

static char *task_sql(const char *id, const char *expr)
{
    static char sql[512];

    snprintf(sql, sizeof sql, "SELECT %s FROM tasks WHERE id = %s", expr, id);
    return sql;
}

/* The task's stages as "name:outcome,..." in the order they ran. */
static char *stages_of(const char *id)
{
    char sql[256];

    snprintf(sql, sizeof sql, "SELECT string_agg(stage || ':' || coalesce(s.outcome, 'open'),"
             " ',' ORDER BY s.id) FROM task_stages s WHERE task_id = %s", id);
    return q(sql);
}

/* Queues a task of mode, starts the runner and waits for the task's state
 * to be want; its id into id. */
static void run_until(const char *mode, const char *want, char id[32])
{
    snprintf(id, 32, "%s", q(enqueue_sql(mode)));
    ck_assert_int_eq(task_runner_start(app.tasks), 0);
    wait_for(task_sql(id, "state"), want);
}

/* ---- the cases ------------------------------------------------------------ */

START_TEST(three_states_to_the_end)
{
    char id[32];

    run_until("ok", "succeeded", id);
    ck_assert_str_eq(q(task_sql(id, "outcome")), "succeeded");
    ck_assert_str_eq(q(task_sql(id, "result->>'attempts'")), "1");
    ck_assert_str_eq(q(task_sql(id, "result->>'resumed'")), "false");
    ck_assert_str_eq(q(task_sql(id, "lease_owner IS NULL AND finished_at IS NOT NULL")), "t");
    ck_assert_str_eq(stages_of(id), "first:succeeded,second:succeeded,last:succeeded");
    /* Each stage's log is saved with it. */
    ck_assert_str_eq(q("SELECT count(*) FROM task_stages s JOIN tasks t ON t.id = s.task_id"
                       " WHERE t.kind = 'check_steps' AND s.log LIKE '%done%'"), "2");
    /* Each stage was entered once, before its step. */
    ck_assert_str_eq(q("SELECT string_agg(rtrim(s.log, E'\\n'), '|' ORDER BY s.id)"
                       " FROM task_stages s JOIN tasks t ON t.id = s.task_id"
                       " WHERE t.kind = 'check_steps'"),
                     "entered first\nstage first done|entered second\nstage second done|"
                     "entered last");
    wait_closed(1);
}
END_TEST

START_TEST(retry_then_success)
{
    char id[32];

    run_until("retry_once", "succeeded", id);
    ck_assert_str_eq(q(task_sql(id, "attempts")), "2");
    ck_assert_str_eq(q(task_sql(id, "error IS NULL")), "t");
    /* The failed attempt's stage stays, with its log. */
    ck_assert_str_eq(stages_of(id),
                     "first:failed,first:succeeded,second:succeeded,last:succeeded");
    ck_assert_str_eq(q("SELECT log LIKE '%attempt 1 fails%' FROM task_stages s JOIN tasks t"
                       " ON t.id = s.task_id WHERE t.kind = 'check_steps' ORDER BY s.id LIMIT 1"),
                     "t");
    wait_closed(2);                     /* each attempt opened and closed */
}
END_TEST

START_TEST(retries_run_out)
{
    char id[32];

    run_until("retry_always", "failed", id);
    ck_assert_str_eq(q(task_sql(id, "attempts")), "2");
    ck_assert_str_eq(q(task_sql(id, "error")),
                     "attempt 2 failed on purpose (attempt 2 of 2; none left)");
    ck_assert_str_eq(q(task_sql(id, "outcome")), "failed");
    ck_assert_str_eq(stages_of(id), "first:failed,first:failed");
}
END_TEST

START_TEST(problems_make_the_third_outcome)
{
    char id[32];

    run_until("problem", "succeeded", id);
    ck_assert_str_eq(q(task_sql(id, "outcome")), "succeeded_with_problems");
    ck_assert_str_eq(q(task_sql(id, "problems LIKE '%one video is missing%'")), "t");
}
END_TEST

struct enqueued {
    int calls;
    enum task_enqueue_status st[2];
    int64_t id[2];
};

static void on_enqueued(enum task_enqueue_status st, int64_t id, const char *uuid,
                        void *arg)
{
    struct enqueued *e = arg;

    if (e->calls < 2) {
        e->st[e->calls] = st;
        e->id[e->calls] = id;
    }
    e->calls++;
    event_base_loopbreak(base);
}

START_TEST(one_active_task_per_subject)
{
    struct enqueued e = { 0 };
    json_t *payload = json_pack("{s:s}", "mode", "wait");

    /* No runner started: both are answered by the queue alone, one after
     * the other.  (Two at once: the second may not see the first's row in
     * its snapshot, and says EXISTS with id 0.) */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(task_enqueue(app.pg, "check_steps", "study-1", payload,
                                      on_enqueued, &e), 0);
        while (e.calls == i)
            event_base_dispatch(base);
    }
    json_decref(payload);
    ck_assert_int_eq(e.st[0], TASK_ENQUEUE_CREATED);
    ck_assert_int_eq(e.st[1], TASK_ENQUEUE_EXISTS);
    ck_assert(e.id[0] > 0 && e.id[0] == e.id[1]);
    ck_assert_str_eq(q("SELECT count(*) FROM tasks WHERE subject = 'study-1'"), "1");
    ck_assert_int_eq(task_enqueue(NULL, "check_steps", NULL, NULL, NULL, NULL), -1);
}
END_TEST

struct cancelled {
    enum task_cancel_status st;
    bool called;
};

static void on_cancelled(enum task_cancel_status st, void *arg)
{
    struct cancelled *c = arg;

    c->st = st;
    c->called = true;
    event_base_loopbreak(base);
}

static enum task_cancel_status cancel(const char *ref)
{
    struct cancelled c = { 0 };

    ck_assert_int_eq(task_cancel(app.tasks, ref, on_cancelled, &c), 0);
    while (!c.called)
        event_base_dispatch(base);
    return c.st;
}

START_TEST(cancel_queued_running_and_unknown)
{
    char later[32], running[32], uuid[40];

    /* Queued for later: cancelled where it stands. */
    snprintf(later, sizeof later, "%s", q(enqueue_sql("ok")));
    q("UPDATE tasks SET run_after = now() + interval '1 hour' WHERE kind = 'check_steps'");
    snprintf(running, sizeof running, "%s", q(enqueue_sql("wait")));
    ck_assert_int_eq(task_runner_start(app.tasks), 0);
    wait_for(task_sql(running, "state || ':' || stage"), "running:first");

    ck_assert_int_eq(cancel(later), TASK_CANCEL_CANCELLED);
    ck_assert_str_eq(q(task_sql(later, "state")), "cancelled");
    ck_assert_str_eq(q(task_sql(later, "error")), "cancelled before it started");

    /* Running here, by its uuid: the kind's cancel hook ends it. */
    snprintf(uuid, sizeof uuid, "%s", q(task_sql(running, "uuid")));
    ck_assert_int_eq(cancel(uuid), TASK_CANCEL_REQUESTED);
    wait_for(task_sql(running, "state"), "cancelled");
    ck_assert_str_eq(q(task_sql(running, "error")), "cancelled by the test");
    ck_assert_str_eq(stages_of(running), "first:cancelled");

    ck_assert_int_eq(cancel(running), TASK_CANCEL_ALREADY_DONE);
    ck_assert_int_eq(cancel("999999999"), TASK_CANCEL_NOT_FOUND);
    ck_assert_int_eq(task_cancel(app.tasks, "not-a-ref", on_cancelled, NULL), -1);
}
END_TEST

START_TEST(dead_local_holder_is_taken_back)
{
    const char *owner;
    bool draining;
    char prefix[192], dead_owner[256], sql[1024], id[32];
    pid_t kid;

    /* This process's lease owner is host/pidns/pid/token: a holder with
     * another pid in the same host and namespace, now dead, is ours to
     * take back at start, though its lease has an hour to run. */
    task_runner_slots(app.tasks, &owner, &draining);
    snprintf(prefix, sizeof prefix, "%s", owner);
    *strrchr(prefix, '/') = '\0';
    *(strrchr(prefix, '/') + 1) = '\0';
    kid = fork();
    ck_assert_int_ge(kid, 0);
    if (kid == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(kid, NULL, 0), kid);
    snprintf(dead_owner, sizeof dead_owner, "%s%d/deadbeef", prefix, (int)kid);
    snprintf(sql, sizeof sql,
             "WITH t AS (INSERT INTO tasks (kind, payload, state, stage, attempts,"
             "  lease_owner, lease_until, started_at)"
             " VALUES ('check_steps', '{\"mode\": \"ok\"}', 'running', 'second', 1, '%s',"
             "  now() + interval '1 hour', now()) RETURNING id),"
             " s AS (INSERT INTO task_stages (task_id, attempt, stage) SELECT id, 1, 'first'"
             "  FROM t)"
             " SELECT id FROM t", dead_owner);
    snprintf(id, sizeof id, "%s", q(sql));
    q("UPDATE task_stages SET ended_at = now(), outcome = 'succeeded' WHERE stage = 'first'"
      " AND task_id IN (SELECT id FROM tasks WHERE kind = 'check_steps')");
    snprintf(sql, sizeof sql, "INSERT INTO task_stages (task_id, attempt, stage)"
             " VALUES (%s, 1, 'second')", id);
    q(sql);

    ck_assert_int_eq(task_runner_start(app.tasks), 0);
    wait_for(task_sql(id, "state"), "succeeded");
    ck_assert_str_eq(q(task_sql(id, "attempts")), "2");
    ck_assert_str_eq(q(task_sql(id, "result->>'resumed'")), "true");
    /* The open stage closed as interrupted, with why; then it went on from
     * there. */
    ck_assert_str_eq(stages_of(id),
                     "first:succeeded,second:interrupted,second:succeeded,last:succeeded");
    snprintf(sql, sizeof sql, "SELECT log LIKE '%%%s%%stopped before it ended%%'"
             " FROM task_stages WHERE task_id = %s AND outcome = 'interrupted'",
             dead_owner, id);
    ck_assert_str_eq(q(sql), "t");
}
END_TEST

static Suite *task_suite(void)
{
    Suite *s = suite_create("task");
    TCase *tc = tcase_create("runner");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, three_states_to_the_end);
    tcase_add_test(tc, retry_then_success);
    tcase_add_test(tc, retries_run_out);
    tcase_add_test(tc, problems_make_the_third_outcome);
    tcase_add_test(tc, one_active_task_per_subject);
    tcase_add_test(tc, cancel_queued_running_and_unknown);
    tcase_add_test(tc, dead_local_holder_is_taken_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char err[512] = "";

    db_url = getenv("TEST_DATABASE_URL");
    if (!db_url || !*db_url) {
        fprintf(stderr, "check_task: TEST_DATABASE_URL is not set (tools/test sets it)\n");
        return 77;              /* automake's SKIP: only outside tools/test */
    }
    if (migrate_apply(db_url, 30, err, sizeof err) < 0) {
        fprintf(stderr, "check_task: cannot migrate: %s\n", err);
        return EXIT_FAILURE;
    }
    return unit_run(task_suite());
}
