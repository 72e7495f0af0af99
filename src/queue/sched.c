/* sched: daily jobs at wall-clock times in one time zone, run by one
 * server at a time, each run recorded in job_runs.  See
 * include/studyhub/queue/sched.h.
 *
 * Three state machines: the start-up (enum sched_boot: lock namespace,
 * abandoned runs, last recorded slots), each run (enum run_phase: lock,
 * record, work, save, unlock, end), and within the run's work, the job's
 * own (struct sched_job: its states and step), each with a names table and
 * one step function; every change goes through its setter.  A run's
 * callbacks only store their result and call run_step. */
#include "config.h"

#include "studyhub/queue/sched.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/io/redis.h"

#define SCHED_MAX_JOBS 64
#define SCHED_LOCK_TTL_MS 60000        /* Redis lock and job_runs lease */
#define SCHED_HEARTBEAT_MS 20000       /* renews both */
#define SCHED_RETRY_S 30               /* a slot that could not start */
#define SCHED_BOOT_RETRY_MS 5000
#define SCHED_MAX_PENDING_RUNS 8     /* `run JOB` waiting for the boot */
#define SCHED_MAX_TIMER_S 300          /* re-check the clock this often */
#define SCHED_DETAIL_MAX (16 * 1024)
#define SCHED_SAVE_TRIES 5
#define SCHED_KEEP_DAYS "90"           /* cleanup_job_runs */

/* ---- SQL ------------------------------------------------------------------- */

/* A random id per database, so servers of one deployment share lock keys
 * and two deployments on one Redis do not. */
static const struct pg_stmt sql_namespace = {
    "sched_namespace",
    "WITH i AS (INSERT INTO app_settings (key, value)"
    "           VALUES ('sched_lock_namespace', to_jsonb(gen_random_uuid()::text))"
    "           ON CONFLICT (key) DO NOTHING RETURNING value)"
    " SELECT value #>> '{}' FROM i"
    " UNION ALL SELECT value #>> '{}' FROM app_settings"
    "  WHERE key = 'sched_lock_namespace' AND NOT EXISTS (SELECT 1 FROM i)",
};

static const struct pg_stmt sql_abandon = {
    "sched_abandon",
    "UPDATE job_runs SET outcome = 'abandoned', finished_at = now(), lease_until = NULL,"
    "  detail = left(detail || CASE WHEN detail = '' THEN '' ELSE E'\\n' END ||"
    "           'its server stopped during the run', 60000)"
    " WHERE outcome = 'running' AND lease_until < now()",
};

/* The last slot each job ran (or was baselined) for. */
static const struct pg_stmt sql_last_slots = {
    "sched_last_slots",
    "SELECT job, EXTRACT(EPOCH FROM max(scheduled_for))::float8 FROM job_runs"
    " WHERE reason <> 'manual' AND job = ANY($1::text[]) GROUP BY job",
};

static const struct pg_stmt sql_baseline = {
    "sched_baseline",
    "INSERT INTO job_runs (job, scheduled_for, reason, outcome, finished_at, instance, detail)"
    " VALUES ($1, to_timestamp($2::float8), 'baseline', 'skipped', now(), $3,"
    "         'first start with this job: no earlier slot to catch up')"
    " ON CONFLICT (job, scheduled_for) DO NOTHING",
};

/* $2 NULL: a manual run, now. */
static const struct pg_stmt sql_record = {
    "sched_record",
    "INSERT INTO job_runs (job, scheduled_for, reason, instance, lease_until)"
    " VALUES ($1, COALESCE(to_timestamp($2::float8), clock_timestamp()), $3, $4,"
    "         now() + $5::int * interval '1 millisecond')"
    " ON CONFLICT (job, scheduled_for) DO NOTHING RETURNING id",
};

static const struct pg_stmt sql_renew = {
    "sched_renew",
    "UPDATE job_runs SET lease_until = now() + $2::int * interval '1 millisecond'"
    " WHERE id = $1 AND outcome = 'running'",
};

static const struct pg_stmt sql_save = {
    "sched_save",
    "UPDATE job_runs SET outcome = $2, detail = $3, finished_at = now(), lease_until = NULL"
    " WHERE id = $1",
};

static const struct pg_stmt sql_recent = {
    "sched_recent",
    "SELECT job, id, reason, outcome, EXTRACT(EPOCH FROM scheduled_for)::float8,"
    "  EXTRACT(EPOCH FROM started_at)::float8,"
    "  EXTRACT(EPOCH FROM COALESCE(finished_at, now()) - started_at)::float8,"
    "  detail, instance"
    " FROM (SELECT *, row_number() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) rn"
    "       FROM job_runs) x"
    " WHERE rn <= 3 ORDER BY job, started_at DESC, id DESC",
};

static const struct pg_stmt sql_cleanup_runs = {
    "sched_cleanup_runs",
    "WITH d AS (DELETE FROM job_runs WHERE outcome <> 'running'"
    "           AND started_at < now() - $1::int * interval '1 day' RETURNING 1)"
    " SELECT count(*) FROM d",
};

/* Redis: delete / extend the lock only while it is still ours. */
#define LUA_RELEASE \
    "if redis.call('get', KEYS[1]) == ARGV[1] then " \
    "return redis.call('del', KEYS[1]) else return 0 end"
#define LUA_RENEW \
    "if redis.call('get', KEYS[1]) == ARGV[1] then " \
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"

/* ---- types ------------------------------------------------------------------- */

enum sched_boot {
    BOOT_NAMESPACE,   /* reading the lock namespace */
    BOOT_ABANDONED,   /* marking runs of dead servers */
    BOOT_LAST_SLOTS,  /* finding missed slots */
    BOOT_DONE,
};

static const char *const boot_names[] = {
    [BOOT_NAMESPACE] = "namespace",
    [BOOT_ABANDONED] = "abandoned",
    [BOOT_LAST_SLOTS] = "last_slots",
    [BOOT_DONE] = "done",
};

enum run_phase {
    RUN_LOCK,      /* SET NX PX sent */
    RUN_RECORD,    /* job_runs row being inserted */
    RUN_WORK,      /* the job runs */
    RUN_SAVE,      /* its outcome being saved */
    RUN_UNLOCK,    /* releasing the lock */
    RUN_END,       /* report and free */
};

static const char *const run_phase_names[] = {
    [RUN_LOCK] = "lock",
    [RUN_RECORD] = "record",
    [RUN_WORK] = "work",
    [RUN_SAVE] = "save",
    [RUN_UNLOCK] = "unlock",
    [RUN_END] = "end",
};

/* How a run ended, for the scheduler and the `run` command. */
enum run_result {
    RR_NONE,       /* not yet */
    RR_RAN,        /* recorded and run: outcome says how */
    RR_DONE_ELSEWHERE, /* the slot already had its row */
    RR_BUSY,       /* the lock was held: running elsewhere */
    RR_UNAVAILABLE,/* no database: try the slot again later */
};

struct sched_entry;

struct sched_run {
    struct sched *s;             /* borrowed; NULL once orphaned */
    struct sched_entry *job;     /* borrowed; NULL once orphaned */
    const struct sched_job *def; /* borrowed (static): the job's machine */
    struct app *app;             /* borrowed */
    const char *job_name;        /* borrowed: def->name */
    int state;                   /* the job's state; sched_set_state */
    void *data;                  /* the job's (open and close) */
    bool opened;                 /* open ran and succeeded: close is due */
    time_t slot;                 /* scheduled_for; 0: manual (now) */
    const char *reason;          /* static: schedule, catch-up, manual */
    enum run_phase phase;        /* changed only by run_set_phase */
    enum run_result result;      /* see enum */
    enum sched_outcome outcome;  /* RR_RAN: how the job went */
    bool work_done;              /* sched_done was called */
    bool locked;                 /* we hold the Redis lock */
    char lock_key[192];          /* the Redis key */
    char lock_value[128];        /* ours: instance + random */
    int64_t row_id;              /* job_runs.id once recorded */
    int save_tries;              /* RUN_SAVE attempts */
    struct proc_tail detail;     /* owned: detail lines, bounded */
    struct event *wake;          /* owned: deferred run_step */
    struct event *heartbeat;     /* owned: lock and lease renewal */
    sched_waiter_fn waiter;      /* borrowed: a manual run's asker, or NULL */
    void *waiter_arg;            /* borrowed: its argument */
    int pending;                 /* redis and pg calls in flight */
    struct timespec started;     /* monotonic */
};

struct sched_entry {
    struct sched *s;             /* borrowed: owner */
    const struct sched_job *def; /* borrowed (static) */
    const char *name;            /* borrowed: def->name */
    char at[32];                 /* as given (or overridden), for listing */
    struct sched_spec spec;      /* hour -1: off */
    struct event *timer;         /* owned: next slot, or a retry */
    time_t next;                 /* next slot; -1 off */
    time_t pending_slot;         /* a due slot not yet started; 0: none */
    const char *pending_reason;  /* static: schedule or catch-up */
    struct sched_run *running;   /* this process's run, or NULL */
};

struct sched {
    struct app *app;                       /* borrowed */
    struct event_base *base;               /* borrowed */
    char *zone;                            /* owned: SCHED_TIME_ZONE */
    char instance[96];                     /* host/pid, for job_runs */
    char ns[64];                           /* lock namespace ("" until read) */
    struct sched_entry *jobs[SCHED_MAX_JOBS];/* owned */
    int njobs;                             /* entries of jobs */
    char *overrides;                       /* owned: SCHED_JOBS */
    enum sched_boot boot;                  /* changed only by boot_set */
    struct event *boot_timer;              /* owned: boot retry */
    bool started, draining, dying;         /* lifecycle */
    unsigned running;                      /* runs in progress here */
    struct pg_holder held;                 /* queries in flight that carry s */
    /* `run JOB` asked before the boot could take it (just after start):
     * started when the boot gets there, answered if the server stops. */
    struct {
        sched_waiter_fn fn;                /* borrowed: told once */
        void *arg;                         /* borrowed: fn's */
        struct sched_entry *job;           /* borrowed: one of jobs */
    } pending[SCHED_MAX_PENDING_RUNS];
    int npending;
    int baselines;               /* baseline inserts in flight at boot */
    long outcomes[SCHED_OUTCOMES]; /* runs ended here, by enum sched_outcome */
};

static void run_step(struct sched_run *run);
static void job_arm(struct sched_entry *job);
static void job_try(struct sched_entry *job);
static void sched_destroy(void *arg);

static void timer_arm_ms(struct event *ev, int64_t ms)
{
    struct timeval tv;

    if (ms < 0)
        ms = 0;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

/* ---- runs ------------------------------------------------------------------- */

static void run_set_phase(struct sched_run *run, enum run_phase ph)
{
    if (run->phase != ph)
        log_debug("sched: %s run %s -> %s", run->job_name,
                  run_phase_names[run->phase], run_phase_names[ph]);
    run->phase = ph;
}

static void run_free(struct sched_run *run)
{
    if (run->wake)
        event_free(run->wake);
    if (run->heartbeat)
        event_free(run->heartbeat);
    proc_tail_cleanup(&run->detail);
    free(run);
}

static void run_on_wake(evutil_socket_t fd, short what, void *arg)
{
    run_step(arg);
}

/* Runs the next step from the loop. */
static void run_later(struct sched_run *run)
{
    if (run->wake)
        event_active(run->wake, EV_TIMEOUT, 1);
    else
        run_step(run);  /* orphaned: no loop events any more */
}

void sched_run_log(struct sched_run *run, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    proc_tail_append(&run->detail, buf, (size_t)n);
    proc_tail_append(&run->detail, "\n", 1);
}

struct app *sched_run_app(const struct sched_run *run)
{
    return run->app;
}

const void *sched_run_arg(const struct sched_run *run)
{
    return run->def->arg;
}

void *sched_run_data(const struct sched_run *run)
{
    return run->data;
}

void sched_run_set_data(struct sched_run *run, void *data)
{
    run->data = data;
}

int sched_run_state(const struct sched_run *run)
{
    return run->state;
}

void sched_set_state(struct sched_run *run, int state)
{
    if (run->phase != RUN_WORK || run->work_done || !run->opened) {
        log_error("sched: %s: sched_set_state outside the job's work; ignored",
                  run->job_name);
        return;
    }
    if (state < 0 || state >= run->def->nstates) {
        sched_done(run, SCHED_FAILED, "internal error: state %d of job %s", state,
                   run->job_name);
        return;
    }
    if (state != run->state)
        log_debug("sched: %s: %s -> %s", run->job_name, run->def->states[run->state],
                  run->def->states[state]);
    run->state = state;
    run_later(run);     /* run_step (RUN_WORK) calls the job's step */
}

const char *sched_run_job(const struct sched_run *run)
{
    return run->job_name;
}

time_t sched_run_scheduled_for(const struct sched_run *run)
{
    return run->slot;
}

void sched_done(struct sched_run *run, enum sched_outcome outcome,
                const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    if (run->phase != RUN_WORK || run->work_done) {
        log_error("sched: %s: sched_done called twice or too early", run->job_name);
        return;
    }
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        sched_run_log(run, "%s", buf);
    }
    run->work_done = true;
    run->outcome = outcome;
    run->result = RR_RAN;
    if (run->heartbeat)
        evtimer_del(run->heartbeat);
    run_set_phase(run, RUN_SAVE);
    run_later(run);
}

static void run_on_lock(redisReply *reply, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    if (reply && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0) {
        run->locked = true;
        run_set_phase(run, RUN_RECORD);
    } else if (reply && reply->type == REDIS_REPLY_NIL) {
        run->result = RR_BUSY;
        run_set_phase(run, RUN_END);
    } else {
        /* No Redis: the job_runs row still makes a slot run once. */
        log_warn("sched: %s: Redis unavailable; running without the lock",
                 run->job_name);
        run_set_phase(run, RUN_RECORD);
    }
    run_step(run);
}

static void run_on_record(PGresult *res, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    if (!res || !pg_ok(res)) {
        if (res)
            log_error("sched: %s: cannot record the run: %s", run->job_name,
                      PQresultErrorMessage(res));
        run->result = RR_UNAVAILABLE;
        run_set_phase(run, RUN_UNLOCK);
    } else if (PQntuples(res) == 0) {
        run->result = RR_DONE_ELSEWHERE;
        run_set_phase(run, RUN_UNLOCK);
    } else {
        run->row_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        run_set_phase(run, RUN_WORK);
    }
    run_step(run);
}

static void run_on_save(PGresult *res, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    if ((!res || !pg_ok(res)) && run->s && ++run->save_tries < SCHED_SAVE_TRIES) {
        /* Try again shortly; the lease marks it abandoned if we never can. */
        if (run->heartbeat) {
            evtimer_del(run->heartbeat);
            timer_arm_ms(run->heartbeat, 1000);
            return;
        }
    }
    if (!res || !pg_ok(res))
        log_error("sched: %s: cannot save the outcome of run %lld", run->job_name,
                  (long long)run->row_id);
    run_set_phase(run, RUN_UNLOCK);
    run_step(run);
}

static void run_on_unlock(redisReply *reply, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    run->locked = false;
    run_set_phase(run, RUN_END);
    run_step(run);
}

static void run_on_renew_reply(redisReply *reply, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        log_warn("sched: %s: the Redis lock was lost while the job ran",
                 run->job_name);
    if (run->phase == RUN_END && run->pending == 0)
        run_step(run);
}

static void run_on_renew_row(PGresult *res, void *arg)
{
    struct sched_run *run = arg;

    run->pending--;
    if (run->phase == RUN_END && run->pending == 0)
        run_step(run);
}

/* Heartbeat while working; retry of the save otherwise. */
static void run_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct sched_run *run = arg;
    char id[32], ttl[16];
    const char *params[2];

    if (run->phase == RUN_SAVE) {
        run_step(run);
        return;
    }
    if (run->phase != RUN_WORK || !run->s)
        return;
    timer_arm_ms(run->heartbeat, SCHED_HEARTBEAT_MS);
    snprintf(ttl, sizeof ttl, "%d", SCHED_LOCK_TTL_MS);
    if (run->locked && run->s->app->redis &&
        redis_cmd(run->s->app->redis, run_on_renew_reply, run, "EVAL %s 1 %s %s %s",
                  LUA_RENEW, run->lock_key, run->lock_value, ttl) == 0)
        run->pending++;
    snprintf(id, sizeof id, "%lld", (long long)run->row_id);
    params[0] = id;
    params[1] = ttl;
    if (pg_exec(run->s->app->pg, &sql_renew, 2, params, run_on_renew_row, run) == 0)
        run->pending++;
}

const char *sched_outcome_name(enum sched_outcome o)
{
    switch (o) {
    case SCHED_SUCCEEDED: return "succeeded";
    case SCHED_PROBLEMS: return "succeeded_with_problems";
    case SCHED_FAILED: break;
    }
    return "failed";
}

/* Tells a manual run's asker, once. */
static void waiter_tell(struct sched_run *run, const char *text, const char *error)
{
    sched_waiter_fn fn = run->waiter;

    run->waiter = NULL;
    if (fn)
        fn(text, error, run->waiter_arg);
}

/* "job NAME: succeeded in 0.12 s (run 7)" and the job's detail lines. */
static char *run_report_text(const struct sched_run *run, double took, const char *detail)
{
    char *text = util_asprintf("job %s: %s in %.2f s (run %lld)\n", run->job_name,
                               sched_outcome_name(run->outcome), took,
                               (long long)run->row_id);

    for (const char *p = detail ? detail : ""; text && *p;) {
        size_t n = strcspn(p, "\n");
        char *more = util_asprintf("%s  | %.*s\n", text, (int)n, p);

        free(text);
        text = more;
        p += n;
        if (*p)
            p++;
    }
    return text;
}

/* What the scheduler does once a run is over. */
static void run_report(struct sched_run *run)
{
    struct sched_entry *job = run->job;
    char *detail = proc_tail_text(&run->detail, NULL);
    struct timespec now;
    double took;

    clock_gettime(CLOCK_MONOTONIC, &now);
    took = (double)(now.tv_sec - run->started.tv_sec) +
           (double)(now.tv_nsec - run->started.tv_nsec) / 1e9;
    switch (run->result) {
    case RR_RAN:
        run->s->outcomes[run->outcome]++;
        if (run->outcome == SCHED_SUCCEEDED)
            log_info("sched: %s (%s) succeeded in %.2f s", run->job_name, run->reason, took);
        else
            log_warn("sched: %s (%s) %s after %.2f s: %s", run->job_name, run->reason,
                     run->outcome == SCHED_PROBLEMS ? "succeeded with problems" : "failed",
                     took, detail ? detail : "");
        break;
    case RR_BUSY:
        log_info("sched: %s: running on another server; not started here", run->job_name);
        break;
    case RR_DONE_ELSEWHERE:
        log_debug("sched: %s: this slot already ran", run->job_name);
        break;
    case RR_UNAVAILABLE:
        log_warn("sched: %s: database unavailable; will try again", run->job_name);
        break;
    case RR_NONE:
        break;
    }
    if (run->waiter) {
        char *text = NULL;

        switch (run->result) {
        case RR_RAN:
            text = run_report_text(run, took, detail);
            /* With problems it ran: the report says what to look at. */
            waiter_tell(run, text ? text : "", run->outcome == SCHED_FAILED
                                                   ? "the job failed" : NULL);
            break;
        case RR_BUSY:
            waiter_tell(run, "", "it is running on another server now");
            break;
        case RR_DONE_ELSEWHERE:
        case RR_UNAVAILABLE:
        case RR_NONE:
            waiter_tell(run, "", "database unavailable");
            break;
        }
        free(text);
    }
    free(detail);
    if (!job)
        return;
    job->running = NULL;
    run->s->running--;
    if (run->result == RR_UNAVAILABLE && job->pending_slot && !run->s->draining) {
        /* The slot stays due: try again later. */
        evtimer_del(job->timer);
        timer_arm_ms(job->timer, SCHED_RETRY_S * 1000);
        return;
    }
    if (run->slot && run->slot == job->pending_slot)
        job->pending_slot = 0;
    if (job->pending_slot)
        job_try(job);    /* a slot came due while this one ran */
}

static void run_step(struct sched_run *run)
{
    struct sched *s = run->s;
    char slot[32], ttl[16];
    const char *params[5];

    switch (run->phase) {
    case RUN_LOCK:
        if (!s) {
            run_set_phase(run, RUN_END);
            run_step(run);
            return;
        }
        snprintf(run->lock_key, sizeof run->lock_key, "studyhub:sched:%s:%s", s->ns,
                 run->job_name);
        if (s->app->redis && redis_cmd(s->app->redis, run_on_lock, run,
                                       "SET %s %s NX PX %d", run->lock_key,
                                       run->lock_value, SCHED_LOCK_TTL_MS) == 0) {
            run->pending++;
            return;
        }
        run->pending++;             /* run_on_lock gives it back */
        run_on_lock(NULL, run);     /* counts as "no Redis" */
        return;
    case RUN_RECORD:
        if (!s) {
            run->result = RR_UNAVAILABLE;
            run_set_phase(run, RUN_UNLOCK);
            run_step(run);
            return;
        }
        snprintf(slot, sizeof slot, "%lld", (long long)run->slot);
        snprintf(ttl, sizeof ttl, "%d", SCHED_LOCK_TTL_MS);
        params[0] = run->job_name;
        params[1] = run->slot ? slot : NULL;
        params[2] = run->reason;
        params[3] = s->instance;
        params[4] = ttl;
        if (pg_exec(s->app->pg, &sql_record, 5, params, run_on_record, run) == 0) {
            run->pending++;
            return;
        }
        run->result = RR_UNAVAILABLE;
        run_set_phase(run, RUN_UNLOCK);
        run_step(run);
        return;
    case RUN_WORK:
        if (run->opened) {
            /* sched_set_state: the job's next step (also once orphaned:
             * it goes on to its sched_done). */
            run->def->step(run);
            return;
        }
        if (!s) {
            run_set_phase(run, RUN_END);
            run_step(run);
            return;
        }
        log_info("sched: %s: starting (%s run %lld)", run->job_name, run->reason,
                 (long long)run->row_id);
        if (run->heartbeat)
            timer_arm_ms(run->heartbeat, SCHED_HEARTBEAT_MS);
        run->state = run->def->initial_state;
        if (run->def->open) {
            char err[256] = "";

            if (run->def->open(run, err, sizeof err) < 0) {
                sched_done(run, SCHED_FAILED, "%s", err[0] ? err : "cannot start");
                return;
            }
        }
        run->opened = true;
        run->def->step(run);   /* calls sched_done, now or later */
        return;
    case RUN_SAVE: {
        char id[32];
        size_t dlen = 0;
        char *detail;

        if (run->opened) {
            /* After sched_done, from the loop: the job's data goes. */
            run->opened = false;
            if (run->def->close)
                run->def->close(run);
            run->data = NULL;
        }
        detail = proc_tail_text(&run->detail, &dlen);

        while (detail && dlen > 0 && detail[dlen - 1] == '\n')
            detail[--dlen] = '\0';
        if (!s) {
            free(detail);
            run_set_phase(run, RUN_UNLOCK);
            run_step(run);
            return;
        }
        snprintf(id, sizeof id, "%lld", (long long)run->row_id);
        params[0] = id;
        params[1] = sched_outcome_name(run->outcome);
        params[2] = detail ? detail : "";
        if (pg_exec(s->app->pg, &sql_save, 3, params, run_on_save, run) == 0) {
            run->pending++;
            free(detail);
            return;
        }
        free(detail);
        run->pending++;             /* run_on_save gives it back */
        run_on_save(NULL, run);
        return;
    }
    case RUN_UNLOCK:
        if (run->locked && s && s->app->redis &&
            redis_cmd(s->app->redis, run_on_unlock, run, "EVAL %s 1 %s %s",
                      LUA_RELEASE, run->lock_key, run->lock_value) == 0) {
            run->pending++;
            return;
        }
        run->locked = false;
        run_set_phase(run, RUN_END);
        /* fall through */
    case RUN_END:
        if (run->pending > 0)
            return;     /* a renewal is out; its reply comes back here */
        if (s)
            run_report(run);
        else
            waiter_tell(run, "", "the server is stopping");
        run_free(run);
        return;
    }
}

static struct sched_run *run_new(struct sched_entry *job, time_t slot,
                                 const char *reason)
{
    struct sched *s = job->s;
    struct sched_run *run = calloc(1, sizeof *run);
    char rnd[13];

    if (!run)
        return NULL;
    run->s = s;
    run->job = job;
    run->def = job->def;
    run->app = s->app;
    run->slot = slot;
    run->reason = reason;
    run->job_name = job->name;
    run->wake = event_new(s->base, -1, 0, run_on_wake, run);
    run->heartbeat = evtimer_new(s->base, run_on_heartbeat, run);
    if (!run->wake || !run->heartbeat ||
        proc_tail_init(&run->detail, SCHED_DETAIL_MAX) < 0) {
        run_free(run);
        return NULL;
    }
    util_random_hex(6, rnd);
    snprintf(run->lock_value, sizeof run->lock_value, "%s/%s", s->instance, rnd);
    clock_gettime(CLOCK_MONOTONIC, &run->started);
    run->phase = RUN_LOCK;
    job->running = run;
    s->running++;
    return run;
}

/* ---- jobs -------------------------------------------------------------------- */

static void job_try(struct sched_entry *job)
{
    struct sched *s = job->s;
    struct sched_run *run;

    if (!job->pending_slot || job->running || s->draining || s->dying ||
        s->boot < BOOT_DONE)
        return;
    run = run_new(job, job->pending_slot, job->pending_reason);
    if (!run) {
        log_error("sched: %s: out of memory", job->name);
        return;
    }
    run_step(run);
}

static void job_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sched_entry *job = arg;
    time_t now = time(NULL);

    if (job->s->draining || job->s->dying)
        return;
    if (!job->pending_slot) {
        if (job->next == (time_t)-1)
            return;
        if (now < job->next) {
            job_arm(job);   /* early, or the clock moved: look again */
            return;
        }
        job->pending_slot = job->next;
        job->pending_reason = "schedule";
    }
    job->next = sched_next(&job->spec, now > job->pending_slot ? now : job->pending_slot);
    job_arm(job);
    job_try(job);
}

static void job_arm(struct sched_entry *job)
{
    time_t now = time(NULL);
    int64_t delay;

    if (job->next == (time_t)-1 || job->s->draining || job->s->dying)
        return;
    delay = (int64_t)(job->next - now);
    if (delay > SCHED_MAX_TIMER_S)
        delay = SCHED_MAX_TIMER_S;
    evtimer_del(job->timer);
    /* A little past the second, so time(NULL) has reached it. */
    timer_arm_ms(job->timer, delay * 1000 + 20);
}

static struct sched_entry *sched_find(const struct sched *s, const char *name)
{
    for (int i = 0; i < s->njobs; i++)
        if (strcmp(s->jobs[i]->name, name) == 0)
            return s->jobs[i];
    return NULL;
}

/* The SCHED_JOBS entry for name, into buf; NULL if none. */
static const char *override_for(const struct sched *s, const char *name,
                                char *buf, size_t n)
{
    const char *p = s->overrides;
    size_t nl = strlen(name);

    while (p && *p) {
        size_t len = strcspn(p, ",");

        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(buf, n, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return buf;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return NULL;
}

int sched_add(struct sched *s, const struct sched_job *def, const char *at)
{
    struct sched_entry *job;
    const char *name = def ? def->name : NULL;
    char buf[32];
    const char *use;

    if (!s || !name)
        return -1;
    use = override_for(s, name, buf, sizeof buf);
    if (!use)
        use = at;
    if (!*name || !def->step || !def->states || def->nstates < 1 ||
        def->initial_state < 0 || def->initial_state >= def->nstates || s->started ||
        s->njobs == SCHED_MAX_JOBS || sched_find(s, name) || strlen(name) > 100 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) {
        log_error("sched: cannot add job %s", name ? name : "(null)");
        return -1;
    }
    job = calloc(1, sizeof *job);
    if (!job)
        return -1;
    if (sched_parse_at(use, &job->spec) < 0) {
        log_error("sched: job %s: bad time '%s' (HH:MM, HH:MM:SS or off)", name, use);
        free(job);
        return -1;
    }
    job->s = s;
    job->def = def;
    job->name = name;
    snprintf(job->at, sizeof job->at, "%s", use);
    job->next = (time_t)-1;
    job->timer = evtimer_new(s->base, job_on_timer, job);
    if (!job->timer) {
        free(job);
        return -1;
    }
    s->jobs[s->njobs++] = job;
    return 0;
}

/* ---- start-up --------------------------------------------------------------- */

static void run_now(struct sched *s, struct sched_entry *job, sched_waiter_fn fn, void *arg);

/* Answers the `run JOB` commands that wait for the boot. */
static void pending_finish(struct sched *s, const char *why)
{
    for (int i = 0; i < s->npending; i++)
        s->pending[i].fn("", why, s->pending[i].arg);
    s->npending = 0;
}

static void boot_set(struct sched *s, enum sched_boot b)
{
    bool ready_now = s->boot < BOOT_DONE && b >= BOOT_DONE;

    if (s->boot != b)
        log_debug("sched: boot %s -> %s", boot_names[s->boot], boot_names[b]);
    s->boot = b;
    if (ready_now) {
        int n = s->npending;

        s->npending = 0;
        for (int i = 0; i < n; i++)
            run_now(s, s->pending[i].job, s->pending[i].fn, s->pending[i].arg);
    }
}

static void boot_step(struct sched *s);

static void boot_retry(struct sched *s)
{
    timer_arm_ms(s->boot_timer, SCHED_BOOT_RETRY_MS);
}

static void on_boot_timer(evutil_socket_t fd, short what, void *arg)
{
    boot_step(arg);
}

static void on_namespace(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        boot_retry(s);
        return;
    }
    snprintf(s->ns, sizeof s->ns, "%s", PQgetvalue(res, 0, 0));
    boot_set(s, BOOT_ABANDONED);
    boot_step(s);
}

static void on_abandon(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (!res || !pg_ok(res)) {
        boot_retry(s);
        return;
    }
    if (strcmp(PQcmdTuples(res), "0") != 0)
        log_warn("sched: %s run(s) of stopped servers marked abandoned",
                 PQcmdTuples(res));
    boot_set(s, BOOT_LAST_SLOTS);
    boot_step(s);
}

static void boot_done(struct sched *s)
{
    boot_set(s, BOOT_DONE);
    for (int i = 0; i < s->njobs; i++)
        job_try(s->jobs[i]);
}

/* A baseline that failed is only a missing row: the next start writes it. */
static void on_baseline(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (--s->baselines == 0)
        boot_done(s);
}

static void on_last_slots(PGresult *res, void *arg)
{
    struct sched *s = arg;
    time_t now = time(NULL);

    if (!res || !pg_ok(res)) {
        boot_retry(s);
        return;
    }
    for (int i = 0; i < s->njobs; i++) {
        struct sched_entry *job = s->jobs[i];
        time_t prev = sched_prev(&job->spec, now);
        bool seen = false;
        double last = 0;

        if (prev == (time_t)-1)
            continue;   /* off */
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), job->name) == 0) {
                seen = true;
                last = strtod(PQgetvalue(res, r, 1), NULL);
            }
        if (!seen) {
            char slot[32];
            const char *params[3] = { job->name, slot, s->instance };

            snprintf(slot, sizeof slot, "%lld", (long long)prev);
            if (pg_exec_held(s->app->pg, &s->held, &sql_baseline, 3, params, on_baseline,
                             s) == 0)
                s->baselines++;
            continue;
        }
        if ((double)prev > last + 0.5 && !job->pending_slot) {
            char when[64];

            sched_format_time(prev, when, sizeof when);
            log_info("sched: %s: the slot of %s was missed; running it now",
                     job->name, when);
            job->pending_slot = prev;
            job->pending_reason = "catch-up";
        }
    }
    /* The boot is done once the baselines are written, so that a `run`
     * waiting for it is recorded after them. */
    if (s->baselines == 0)
        boot_done(s);
}

static void boot_step(struct sched *s)
{
    const char *params[1];
    char *names = NULL;
    size_t len;
    FILE *f;

    if (s->dying)
        return;
    switch (s->boot) {
    case BOOT_NAMESPACE:
        if (pg_exec_held(s->app->pg, &s->held, &sql_namespace, 0, NULL, on_namespace, s) < 0)
            boot_retry(s);
        return;
    case BOOT_ABANDONED:
        if (pg_exec_held(s->app->pg, &s->held, &sql_abandon, 0, NULL, on_abandon, s) < 0)
            boot_retry(s);
        return;
    case BOOT_LAST_SLOTS:
        f = open_memstream(&names, &len);
        if (!f) {
            boot_retry(s);
            return;
        }
        fputc('{', f);
        for (int i = 0; i < s->njobs; i++)
            fprintf(f, "%s\"%s\"", i ? "," : "", s->jobs[i]->name);
        fputc('}', f);
        fclose(f);
        params[0] = names;
        if (pg_exec_held(s->app->pg, &s->held, &sql_last_slots, 1, params, on_last_slots, s) < 0)
            boot_retry(s);
        free(names);
        return;
    case BOOT_DONE:
        return;
    }
}

/* ---- the scheduler's own job ------------------------------------------------- */

static const struct sched_count cleanup_job_runs_count = {
    .stmt = &sql_cleanup_runs, .nparams = 1, .params = { SCHED_KEEP_DAYS },
    .noun = "job run", .rest = "older than " SCHED_KEEP_DAYS " days",
};

const struct sched_job sched_cleanup_job_runs_job =
    SCHED_COUNT_JOB("cleanup_job_runs", &cleanup_job_runs_count);

/* ---- the scheduler ----------------------------------------------------------- */

/* An IANA name that names a zone file (tzset would silently use UTC). */
static int zone_check(const char *zone, char *err, size_t n)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    struct stat st;

    if (!zone || !*zone || zone[0] == '/' || strstr(zone, "..") ||
        strspn(zone, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789/_+-") != strlen(zone)) {
        snprintf(err, n, "SCHED_TIME_ZONE: '%s' is not an IANA zone name", zone ? zone : "");
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", zone);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, n, "SCHED_TIME_ZONE: unknown time zone '%s' (no %s)", zone, path);
        return -1;
    }
    return 0;
}

struct sched *sched_new(struct app *app, char *err, size_t errlen)
{
    struct sched *s;
    char host[64] = "localhost";

    if (zone_check(app->cfg->sched_time_zone, err, errlen) < 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->app = app;
    s->base = app->base;
    s->zone = strdup(app->cfg->sched_time_zone);
    s->overrides = strdup(app->cfg->sched_jobs ? app->cfg->sched_jobs : "");
    s->boot_timer = evtimer_new(s->base, on_boot_timer, s);
    if (pg_holder_init(&s->held, s->base, sched_destroy, s) < 0 || !s->zone ||
        !s->overrides || !s->boot_timer) {
        snprintf(err, errlen, "out of memory");
        sched_destroy(s);
        return NULL;
    }
    /* One schedule zone for the process; logs are in UTC and unaffected. */
    setenv("TZ", s->zone, 1);
    tzset();
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(s->instance, sizeof s->instance, "%s/%d", host, (int)getpid());
    return s;
}

int sched_start(struct sched *s)
{
    time_t now = time(NULL);
    const char *p;

    if (!s || s->started)
        return -1;
    /* An override for a job nobody added is most likely a typo. */
    for (p = s->overrides; *p;) {
        size_t len = strcspn(p, ","), nl = strcspn(p, "=");
        char name[128];

        if (nl < len && nl < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)nl, p);
            if (!sched_find(s, name))
                log_warn("sched: SCHED_JOBS names an unknown job '%s'", name);
        } else if (len > 0) {
            log_warn("sched: SCHED_JOBS entry '%.*s' is not job=TIME", (int)len, p);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    s->started = true;
    for (int i = 0; i < s->njobs; i++) {
        struct sched_entry *job = s->jobs[i];
        char when[64];

        job->next = sched_next(&job->spec, now);
        sched_format_time(job->next, when, sizeof when);
        log_debug("sched: %s at %s %s; next %s", job->name, job->at, s->zone, when);
        job_arm(job);
    }
    log_info("sched: %d job%s in %s", s->njobs, s->njobs == 1 ? "" : "s", s->zone);
    boot_step(s);
    return 0;
}

void sched_drain(struct sched *s)
{
    if (!s || s->draining)
        return;
    s->draining = true;
    for (int i = 0; i < s->njobs; i++)
        evtimer_del(s->jobs[i]->timer);
    evtimer_del(s->boot_timer);
    pending_finish(s, "the server is stopping");
}

void sched_outcomes(const struct sched *s, long out[SCHED_OUTCOMES])
{
    for (int i = 0; i < SCHED_OUTCOMES; i++)
        out[i] = s ? s->outcomes[i] : 0;
}

unsigned sched_busy(const struct sched *s)
{
    return s ? s->running : 0;
}

static void sched_destroy(void *arg)
{
    struct sched *s = arg;

    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->timer)
            event_free(s->jobs[i]->timer);
        free(s->jobs[i]);
    }
    if (s->boot_timer)
        event_free(s->boot_timer);
    free(s->zone);
    free(s->overrides);
    pg_holder_cleanup(&s->held);
    free(s);
}

void sched_free(struct sched *s)
{
    if (!s || s->dying)
        return;
    s->dying = true;
    sched_drain(s);
    /* Runs still going lose their scheduler: they finish on their own and
     * only free themselves (their row's lease marks it abandoned if the
     * loop stops first). */
    for (int i = 0; i < s->njobs; i++) {
        struct sched_run *run = s->jobs[i]->running;

        if (!run)
            continue;
        log_warn("sched: %s still running at exit", run->job_name);
        s->jobs[i]->running = NULL;
        s->running--;
        run->s = NULL;
        run->job = NULL;
        if (run->wake)
            event_free(run->wake);
        if (run->heartbeat)
            event_free(run->heartbeat);
        run->wake = run->heartbeat = NULL;
        waiter_tell(run, "", "the server is stopping");
    }
    /* Queries still out skip their callbacks; s goes after the last. */
    pg_holder_release(&s->held);
}

/* ---- a job that is one counting statement ------------------------------------ */

enum count_state { COUNT_DELETE };

const char *const sched_count_states[] = { [COUNT_DELETE] = "delete" };

static void on_counted(PGresult *res, void *arg)
{
    struct sched_run *run = arg;
    const struct sched_count *c = run->def->arg;

    if (!res) {
        sched_done(run, SCHED_FAILED, "database unavailable");
    } else if (!pg_ok(res) || PQntuples(res) != 1) {
        sched_done(run, SCHED_FAILED, "%s", PQresultErrorMessage(res));
    } else {
        const char *n = PQgetvalue(res, 0, 0);
        const char *rest = c->rest ? c->rest : "";

        sched_done(run, SCHED_SUCCEEDED, "deleted %s %s%s%s%s", n, c->noun,
                   strcmp(n, "1") ? "s" : "", *rest ? " " : "", rest);
    }
}

void sched_count_step(struct sched_run *run)
{
    const struct sched_count *c = run->def->arg;

    switch ((enum count_state)run->state) {
    case COUNT_DELETE:
        if (pg_exec(run->app->pg, c->stmt, c->nparams, c->params, on_counted, run) < 0)
            sched_done(run, SCHED_FAILED, "cannot queue the query");
        return;
    }
    sched_done(run, SCHED_FAILED, "internal error: state %d", run->state);
}

/* ---- what the admin commands see ---------------------------------------------- */

const char *sched_zone(const struct sched *s)
{
    return s->zone;
}

int sched_job_count(const struct sched *s)
{
    return s->njobs;
}

void sched_job_view(const struct sched *s, int i, struct sched_job_view *out)
{
    const struct sched_entry *job = s->jobs[i];

    out->name = job->name;
    out->at = job->at;
    out->next = job->next;
    out->running_here = job->running != NULL;
    out->pending = job->pending_slot != 0;
    out->state = NULL;
    if (job->running)
        out->state = job->running->phase == RUN_WORK && job->running->opened
                          ? job->def->states[job->running->state]
                          : run_phase_names[job->running->phase];
}

struct recent_ctx {
    struct sched *s;        /* borrowed, held by s->held */
    sched_recent_fn fn;     /* borrowed */
    void *arg;              /* borrowed */
};

static void on_recent(PGresult *res, void *arg)
{
    struct recent_ctx rc = *(struct recent_ctx *)arg;

    free(arg);
    /* Held by hand, not through pg_exec_held: fn must hear of a
     * scheduler that stopped meanwhile. */
    if (rc.s->dying)
        rc.fn(NULL, NULL, rc.arg);
    else
        rc.fn(rc.s, res && pg_ok(res) ? res : NULL, rc.arg);
    reap_drop(&rc.s->held.reap);
}

void sched_recent_runs(struct sched *s, sched_recent_fn fn, void *arg)
{
    struct recent_ctx *rc = calloc(1, sizeof *rc);

    if (!rc) {
        fn(s, NULL, arg);
        return;
    }
    *rc = (struct recent_ctx){ s, fn, arg };
    reap_hold(&s->held.reap);  /* keeps the scheduler until the answer */
    if (pg_exec(s->app->pg, &sql_recent, 0, NULL, on_recent, rc) < 0)
        on_recent(NULL, rc);
}

void sched_run_now(struct sched *s, const char *name, sched_waiter_fn fn, void *arg)
{
    struct sched_entry *job = sched_find(s, name);

    if (!job) {
        fn("", "no such job (see `jobs`)", arg);
        return;
    }
    if (s->draining || s->dying) {
        fn("", "the server is stopping", arg);
        return;
    }
    if (s->boot < BOOT_DONE) {
        /* Just after start: the boot's queries are on their way. */
        if (s->npending == SCHED_MAX_PENDING_RUNS) {
            fn("", "the scheduler is not ready (database unavailable?)", arg);
            return;
        }
        s->pending[s->npending].fn = fn;
        s->pending[s->npending].arg = arg;
        s->pending[s->npending].job = job;
        s->npending++;
        return;
    }
    run_now(s, job, fn, arg);
}

static void run_now(struct sched *s, struct sched_entry *job, sched_waiter_fn fn, void *arg)
{
    struct sched_run *run;

    if (s->draining || s->dying) {
        fn("", "the server is stopping", arg);
        return;
    }
    if (job->running) {
        fn("", "it is already running here", arg);
        return;
    }
    run = run_new(job, 0, "manual");
    if (!run) {
        fn("", "out of memory", arg);
        return;
    }
    run->waiter = fn;
    run->waiter_arg = arg;
    run_step(run);
}
