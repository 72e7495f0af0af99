/* Unit tests of sched, the scheduler of the daily jobs, on a real loop
 * against a real PostgreSQL (TEST_DATABASE_URL; migrated here): the count
 * jobs; SCHED_JOBS moving a job, turning one off and refusing a bad time;
 * the boot's baseline row; unknown and bad names refused.  A run's own
 * life (its states, outcomes, a failed open) is check_sched_run's.  No
 * Redis: runs go without the lock (the job_runs row still makes a slot
 * run once). */
#include "config.h"

#include <check.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/util.h"
#include "studyhub/io/migrate.h"
#include "studyhub/io/pg.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task_queue.h"
#include "unit_loop.h"
#include "unit_main.h"

#define WAIT_MS 30000

static const char *db_url;
static const char *sched_jobs = "";

/* ---- the jobs under test ---------------------------------------------------
 * check_states: first -> second -> sched_done with the outcome its arg
 * names (here only added; check_sched_run runs such jobs). */

enum ck_state { CK_FIRST, CK_SECOND };
static const char *const ck_state_names[] = { [CK_FIRST] = "first", [CK_SECOND] = "second" };

struct ck_run {
    int steps;
    char seen_state[32];        /* the `jobs` view's state during "first" */
};

static int ck_opened, ck_closed;
static struct sched *the_sched;

static int ck_open(struct sched_run *run, char *err, size_t errlen)
{
    struct ck_run *c = calloc(1, sizeof *c);

    ck_assert_ptr_nonnull(c);
    sched_run_set_data(run, c);
    ck_opened++;
    return 0;
}

static int view_index(const char *name)
{
    for (int i = 0; i < sched_job_count(the_sched); i++) {
        struct sched_job_view v;

        sched_job_view(the_sched, i, &v);
        if (strcmp(v.name, name) == 0)
            return i;
    }
    return -1;
}

static void ck_step(struct sched_run *run)
{
    struct ck_run *c = sched_run_data(run);
    const enum sched_outcome *outcome = sched_run_arg(run);
    struct sched_job_view v;

    c->steps++;
    switch ((enum ck_state)sched_run_state(run)) {
    case CK_FIRST:
        sched_job_view(the_sched, view_index(sched_run_job(run)), &v);
        snprintf(c->seen_state, sizeof c->seen_state, "%s", v.state ? v.state : "(none)");
        sched_run_log(run, "in first; the view says %s", c->seen_state);
        sched_set_state(run, CK_SECOND);
        /* The next step comes from the loop, not from inside the call. */
        ck_assert_int_eq(c->steps, 1);
        return;
    case CK_SECOND:
        sched_done(run, *outcome, "done in %d steps", c->steps);
        return;
    }
}

static void ck_close(struct sched_run *run)
{
    free(sched_run_data(run));
    ck_closed++;
}

static const enum sched_outcome out_ok = SCHED_SUCCEEDED, out_problems = SCHED_PROBLEMS,
                                out_failed = SCHED_FAILED;

static const struct sched_job ck_job = {
    .name = "check_states", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_ok,
    .open = ck_open, .step = ck_step, .close = ck_close,
};
static const struct sched_job ck_problems_job = {
    .name = "check_problems", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_problems,
    .open = ck_open, .step = ck_step, .close = ck_close,
};
static const struct sched_job ck_failed_job = {
    .name = "check_failed", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_failed,
    .open = ck_open, .step = ck_step, .close = ck_close,
};

/* ---- the fixture -------------------------------------------------------- */

static struct event_base *base;
static struct config cfg;
static struct app app;
static PGconn *db;

static const char *fake_getenv(const char *name, void *arg)
{
    if (strcmp(name, "DATABASE_URL") == 0)
        return db_url;
    if (strcmp(name, "SCHED_JOBS") == 0)
        return sched_jobs;
    return NULL;
}

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

/* A fresh scheduler with SCHED_JOBS = jobs. */
static void sched_up(const char *jobs)
{
    char err[256] = "";

    sched_jobs = jobs;
    ck_assert_msg(config_load(&cfg, fake_getenv, NULL, err, sizeof err) == 0, "%s", err);
    app.cfg = &cfg;
    the_sched = app.sched = sched_new(&app, err, sizeof err);
    ck_assert_msg(app.sched != NULL, "%s", err);
}

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    app.base = base;
    app.pg = pg_pool_new(base, db_url, 2, 5000, 10000);
    ck_assert_ptr_nonnull(app.pg);
    db = PQconnectdb(db_url);
    ck_assert_int_eq(PQstatus(db), CONNECTION_OK);
    q("DELETE FROM job_runs WHERE job LIKE 'check_%' OR job = 'cleanup_job_runs'"
      " OR job = 'cleanup_tasks' OR job = 'old'");
    ck_opened = ck_closed = 0;
}

static void teardown(void)
{
    sched_free(app.sched);
    pg_pool_free(app.pg);
    reap_flush(base);
    unit_loop_free(base);
    PQfinish(db);
    config_cleanup(&cfg);
    memset(&app, 0, sizeof app);
    the_sched = NULL;
}

/* `run JOB` through sched_run_now: its report and error. */
struct ran {
    bool called;
    char text[4096];
    char error[256];
    bool failed;
};

static void on_ran(const char *text, const char *error, void *arg)
{
    struct ran *r = arg;

    r->called = true;
    snprintf(r->text, sizeof r->text, "%s", text ? text : "");
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    r->failed = error != NULL;
    event_base_loopbreak(base);
}

static struct ran run_job(const char *name)
{
    struct ran r = { 0 };
    int64_t deadline = util_mono_ms() + WAIT_MS;

    sched_run_now(app.sched, name, on_ran, &r);
    while (!r.called && util_mono_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_msg(r.called, "run %s: no answer in %d ms", name, WAIT_MS);
    return r;
}

/* The loop turns until sql's first value is want. */
static void wait_for(const char *sql, const char *want)
{
    int64_t deadline = util_mono_ms() + WAIT_MS;
    struct timeval tick = { 0, 50000 };

    while (strcmp(q(sql), want) != 0 && util_mono_ms() < deadline)
        event_base_loopexit(base, &tick), event_base_dispatch(base);
    ck_assert_str_eq(q(sql), want);
}

/* ---- the cases -------------------------------------------------------------- */

START_TEST(count_jobs_delete_and_report)
{
    struct ran r;

    sched_up("");
    ck_assert_int_eq(sched_add(app.sched, &sched_cleanup_job_runs_job, "off"), 0);
    ck_assert_int_eq(sched_add(app.sched, &task_cleanup_job, "off"), 0);
    ck_assert_int_eq(sched_start(app.sched), 0);
    q("INSERT INTO job_runs (job, scheduled_for, reason, started_at, finished_at, outcome,"
      " instance) VALUES ('old', now() - interval '100 days', 'schedule',"
      " now() - interval '100 days', now() - interval '100 days', 'succeeded', 'x'),"
      " ('old', now() - interval '10 days', 'schedule', now() - interval '10 days',"
      " now() - interval '10 days', 'succeeded', 'x')");
    r = run_job("cleanup_job_runs");
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_msg(strstr(r.text, "  | deleted 1 job run older than 90 days\n"), "%s", r.text);
    /* The young one stays. */
    ck_assert_str_eq(q("SELECT count(*) FROM job_runs WHERE job = 'old'"), "1");
    r = run_job("cleanup_tasks");
    ck_assert_msg(strstr(r.text, "finished task"), "%s", r.text);
    ck_assert_msg(strstr(r.text, "older than 90 days"), "%s", r.text);
}
END_TEST

START_TEST(sched_jobs_moves_and_turns_off)
{
    struct sched_job_view v;

    sched_up("check_states=03:15,check_problems=off,check_nobody=01:00");
    ck_assert_int_eq(sched_add(app.sched, &ck_job, "04:00"), 0);
    ck_assert_int_eq(sched_add(app.sched, &ck_problems_job, "04:00"), 0);
    ck_assert_int_eq(sched_add(app.sched, &ck_failed_job, "05:00"), 0);
    /* An override for a job nobody added is only warned about. */
    ck_assert_int_eq(sched_start(app.sched), 0);
    ck_assert_int_eq(sched_job_count(app.sched), 3);

    sched_job_view(app.sched, view_index("check_states"), &v);
    ck_assert_str_eq(v.at, "03:15");
    ck_assert(v.next != (time_t)-1);
    struct tm tm;
    localtime_r(&v.next, &tm);
    ck_assert_int_eq(tm.tm_hour * 60 + tm.tm_min, 3 * 60 + 15);

    sched_job_view(app.sched, view_index("check_problems"), &v);
    ck_assert_str_eq(v.at, "off");
    ck_assert(v.next == (time_t)-1);

    sched_job_view(app.sched, view_index("check_failed"), &v);
    ck_assert_str_eq(v.at, "05:00");

    /* The boot baselines the jobs with a time, not the one turned off. */
    wait_for("SELECT count(*) FROM job_runs WHERE reason = 'baseline'"
             " AND job IN ('check_states', 'check_failed')", "2");
    ck_assert_str_eq(q("SELECT count(*) FROM job_runs WHERE job = 'check_problems'"), "0");
}
END_TEST

START_TEST(a_bad_override_time_is_refused)
{
    sched_up("check_states=25:99");
    ck_assert_int_eq(sched_add(app.sched, &ck_job, "04:00"), -1);
    ck_assert_int_eq(sched_job_count(app.sched), 0);
}
END_TEST

static void not_called(struct sched_run *run)
{
    ck_abort_msg("step of a job that was refused");
}

START_TEST(unknown_and_bad_names_refused)
{
    static const struct sched_job spaced = {
        .name = "Bad Name", .states = ck_state_names, .nstates = 2, .step = not_called };
    static const struct sched_job stateless = {
        .name = "check_stateless", .states = ck_state_names, .nstates = 0, .step = not_called };
    static const struct sched_job outside = {
        .name = "check_outside", .states = ck_state_names, .nstates = 2, .initial_state = 2,
        .step = not_called };
    struct ran r;

    sched_up("");
    ck_assert_int_eq(sched_add(app.sched, &spaced, "04:00"), -1);
    ck_assert_int_eq(sched_add(app.sched, &stateless, "04:00"), -1);
    ck_assert_int_eq(sched_add(app.sched, &outside, "04:00"), -1);
    ck_assert_int_eq(sched_add(app.sched, NULL, "04:00"), -1);
    ck_assert_int_eq(sched_add(app.sched, &ck_job, "4 o'clock"), -1);
    ck_assert_int_eq(sched_add(app.sched, &ck_job, "off"), 0);
    ck_assert_int_eq(sched_add(app.sched, &ck_job, "off"), -1);     /* twice */
    ck_assert_int_eq(sched_start(app.sched), 0);
    ck_assert_int_eq(sched_add(app.sched, &ck_failed_job, "off"), -1);  /* started */
    ck_assert_int_eq(sched_job_count(app.sched), 1);

    r = run_job("no_such_job");
    ck_assert_str_eq(r.error, "no such job (see `jobs`)");
    ck_assert_str_eq(q("SELECT count(*) FROM job_runs WHERE job = 'no_such_job'"), "0");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("db");
    char err[512];

    db_url = getenv("TEST_DATABASE_URL");
    if (!db_url || !*db_url) {
        fprintf(stderr, "check_sched: TEST_DATABASE_URL is not set (tools/test sets it)\n");
        return 77;
    }
    if (migrate_apply(db_url, 30, err, sizeof err) < 0) {
        fprintf(stderr, "check_sched: cannot migrate: %s\n", err);
        return 1;
    }
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, count_jobs_delete_and_report);
    tcase_add_test(tc, sched_jobs_moves_and_turns_off);
    tcase_add_test(tc, a_bad_override_time_is_refused);
    tcase_add_test(tc, unknown_and_bad_names_refused);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
