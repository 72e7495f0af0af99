/* unit_sched: the fixture of the unit tests of scheduled jobs and task
 * kinds that need a database: a loop, a pool on TEST_DATABASE_URL (tools/
 * test makes a fresh database; us_main migrates it), a scheduler without
 * Redis (a run goes without the lock: its job_runs row still counts), and
 * optionally file:// storage in a fresh temporary folder.  us_run runs a
 * job as `studyhubctl run JOB` does and returns its report; us_q reads
 * with a separate blocking connection.  us_down ends with nothing of ours
 * on the loop (unit_loop_free).  For a task kind: us_runner registers it
 * with a task runner, us_wait turns the loop until a query says so. */
#ifndef STUDYHUB_TESTS_UNIT_SCHED_H
#define STUDYHUB_TESTS_UNIT_SCHED_H

#include <check.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/reap.h"
#include "studyhub/core/util.h"
#include "studyhub/io/migrate.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/io/storage.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "unit_loop.h"
#include "unit_main.h"

#define US_WAIT_MS 30000

static struct {
    struct event_base *base;
    struct config cfg;
    struct app app;
    PGconn *db;
    char dir[256];              /* the temporary folder, or "" */
    const char *db_url;
    const char *(*env)(const char *name);   /* a test's own settings, or NULL */
} us;

static inline const char *us_getenv(const char *name, void *arg)
{
    const char *v = us.env ? us.env(name) : NULL;

    (void)arg;
    if (v)
        return v;
    if (strcmp(name, "DATABASE_URL") == 0)
        return us.db_url;
    return NULL;
}

/* The first column of the first row, as text ("" for none). */
static inline const char *us_q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline const char *us_q(const char *fmt, ...)
{
    static char out[8192];
    char *sql;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&sql, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    PGresult *res = PQexec(us.db, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK ||
                  PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(res));
    snprintf(out, sizeof out, "%s",
             PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    free(sql);
    return out;
}

/* A loop, the pool, the scheduler (jobs added by the test, then
 * us_start); with_storage: file:// storage under a new temp folder. */
static inline void us_up(bool with_storage)
{
    char err[256] = "";

    ck_assert_msg(config_load(&us.cfg, us_getenv, NULL, err, sizeof err) == 0, "%s", err);
    us.base = event_base_new();
    ck_assert_ptr_nonnull(us.base);
    us.app.base = us.base;
    us.app.cfg = &us.cfg;
    us.app.pg = pg_pool_new(us.base, us.db_url, 2, 5000, 10000);
    ck_assert_ptr_nonnull(us.app.pg);
    us.app.sched = sched_new(&us.app, err, sizeof err);
    ck_assert_msg(us.app.sched != NULL, "%s", err);
    us.app.procs = proc_table_new(us.base);
    ck_assert_ptr_nonnull(us.app.procs);
    us.db = PQconnectdb(us.db_url);
    ck_assert_int_eq(PQstatus(us.db), CONNECTION_OK);
    us.dir[0] = '\0';
    if (with_storage) {
        char url[300];
        const char *serr = NULL;

        snprintf(us.dir, sizeof us.dir, "/tmp/check_job.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(us.dir));
        snprintf(url, sizeof url, "file://%s/objects", us.dir);
        struct storage_config sc = { .url = url, .public_base = "http://127.0.0.1:8000/",
                                     .link_secret = "s3cret" };
        us.app.storage = storage_new(us.base, NULL, &sc, &serr);
        ck_assert_msg(us.app.storage != NULL, "storage_new: %s", serr);
    }
}

static inline void us_add(const struct sched_job *job)
{
    ck_assert_int_eq(sched_add(us.app.sched, job, "off"), 0);
}

static inline void us_start(void)
{
    ck_assert_int_eq(sched_start(us.app.sched), 0);
}

/* A task runner with kind registered (started by us_runner_start). */
static inline void us_runner(const struct task_kind *kind)
{
    us.app.tasks = task_runner_new(&us.app);
    ck_assert_ptr_nonnull(us.app.tasks);
    ck_assert_int_eq(task_register(us.app.tasks, kind), 0);
}

static inline void us_runner_start(void)
{
    ck_assert_int_eq(task_runner_start(us.app.tasks), 0);
}

static inline void us_on_tick(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(us.base);
}

/* Turns the loop until the query's first value is want (polled every
 * 50 ms), or fails after US_WAIT_MS. */
static inline void us_wait(const char *want, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void us_wait(const char *want, const char *fmt, ...)
{
    int64_t deadline = util_mono_ms() + US_WAIT_MS;
    struct event *tick = evtimer_new(us.base, us_on_tick, NULL);
    char *sql;
    va_list ap;

    va_start(ap, fmt);
    ck_assert_int_ge(vasprintf(&sql, fmt, ap), 0);
    va_end(ap);
    ck_assert_ptr_nonnull(tick);
    while (strcmp(us_q("%s", sql), want) != 0 && util_mono_ms() < deadline) {
        util_timer_ms(tick, 50);
        event_base_dispatch(us.base);
    }
    event_free(tick);
    ck_assert_msg(strcmp(us_q("%s", sql), want) == 0, "waited for [%s] = '%s'; it is '%s'",
                  sql, want, us_q("%s", sql));
    free(sql);
}

/* Writes an object straight into the file backend's folder. */
static inline void us_put_object(const char *key, const char *body)
{
    char path[600], *slash;
    FILE *f;

    snprintf(path, sizeof path, "%s/objects/%s", us.dir, key);
    slash = strrchr(path, '/');
    *slash = '\0';
    ck_assert_int_eq(util_mkdir_p(path), 0);
    *slash = '/';
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(body, f);
    fclose(f);
}

static inline bool us_has_object(const char *key)
{
    char path[600];

    snprintf(path, sizeof path, "%s/objects/%s", us.dir, key);
    return access(path, F_OK) == 0;
}

/* What a manual run answered. */
struct us_ran {
    bool called;
    bool failed;            /* an error came with it */
    char text[8192];        /* the report: "job X: OUTCOME in ..." and "  | " lines */
    char error[256];
};

static inline void us_on_ran(const char *text, const char *error, void *arg)
{
    struct us_ran *r = arg;

    r->called = true;
    snprintf(r->text, sizeof r->text, "%s", text ? text : "");
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    r->failed = error != NULL;
    event_base_loopbreak(us.base);
}

static inline struct us_ran us_run(const char *name)
{
    struct us_ran r = { 0 };
    int64_t deadline = util_mono_ms() + US_WAIT_MS;

    sched_run_now(us.app.sched, name, us_on_ran, &r);
    while (!r.called && util_mono_ms() < deadline)
        event_base_loop(us.base, EVLOOP_ONCE);
    ck_assert_msg(r.called, "run %s: no answer in %d ms", name, US_WAIT_MS);
    return r;
}

/* The run's report has this line ("  | line"). */
#define us_assert_line(r, line)                                                      \
    ck_assert_msg(strstr((r).text, "  | " line "\n") != NULL, "no line '%s' in:\n%s", \
                  line, (r).text)

static inline void us_down(void)
{
    task_runner_free(us.app.tasks);
    sched_free(us.app.sched);
    if (us.app.storage)
        storage_free(us.app.storage);
    pg_pool_free(us.app.pg);
    reap_flush(us.base);
    proc_table_free(us.app.procs);
    unit_loop_free(us.base);
    PQfinish(us.db);
    config_cleanup(&us.cfg);
    if (us.dir[0]) {
        char cmd[320];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", us.dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    memset(&us.app, 0, sizeof us.app);
    us.env = NULL;
}

/* main's part: skip (77) without TEST_DATABASE_URL, migrate, run. */
static inline int us_main(const char *name, Suite *s)
{
    char err[512] = "";

    us.db_url = getenv("TEST_DATABASE_URL");
    if (!us.db_url || !*us.db_url) {
        fprintf(stderr, "%s: TEST_DATABASE_URL is not set (tools/test sets it)\n", name);
        return 77;
    }
    if (migrate_apply(us.db_url, 30, err, sizeof err) < 0) {
        fprintf(stderr, "%s: cannot migrate: %s\n", name, err);
        return EXIT_FAILURE;
    }
    return unit_run(s);
}

#endif
