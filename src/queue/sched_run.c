/* sched_run: one run of a scheduled job, from its Redis lock and its
 * job_runs row through the job's own steps to the saved outcome and the
 * report.  See include/studyhub/queue/sched.h (the API the jobs use) and
 * sched_internal.h (what queue/sched.c, the scheduler, calls here).
 *
 * A run is a state machine (enum run_phase: lock, record, work, save,
 * unlock, end) with a names table and one step function, run_step; within
 * its work, the job's own (struct sched_job: its states and step).  Every
 * change goes through its setter; a run's callbacks only store their
 * result and call run_step. */
#include "config.h"

#include "studyhub/queue/sched_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/io/redis.h"

#define SCHED_LOCK_TTL_MS 60000        /* Redis lock and job_runs lease */
#define SCHED_HEARTBEAT_MS 20000       /* renews both */
#define SCHED_RETRY_S 30               /* a slot that could not start */
#define SCHED_DETAIL_MAX (16 * 1024)
#define SCHED_SAVE_TRIES 5

/* ---- SQL ------------------------------------------------------------------- */

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

/* Redis: delete / extend the lock only while it is still ours. */
#define LUA_RELEASE \
    "if redis.call('get', KEYS[1]) == ARGV[1] then " \
    "return redis.call('del', KEYS[1]) else return 0 end"
#define LUA_RENEW \
    "if redis.call('get', KEYS[1]) == ARGV[1] then " \
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"

/* ---- types ------------------------------------------------------------------- */

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

static void run_step(struct sched_run *run);

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
            sched_timer_arm_ms(run->heartbeat, 1000);
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
    sched_timer_arm_ms(run->heartbeat, SCHED_HEARTBEAT_MS);
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
        sched_timer_arm_ms(job->timer, SCHED_RETRY_S * 1000);
        return;
    }
    if (run->slot && run->slot == job->pending_slot)
        job->pending_slot = 0;
    if (job->pending_slot)
        sched_job_try(job);    /* a slot came due while this one ran */
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
            sched_timer_arm_ms(run->heartbeat, SCHED_HEARTBEAT_MS);
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

int sched_run_start(struct sched_entry *job, time_t slot, const char *reason,
                    sched_waiter_fn fn, void *arg)
{
    struct sched_run *run = run_new(job, slot, reason);

    if (!run)
        return -1;
    run->waiter = fn;
    run->waiter_arg = arg;
    run_step(run);
    return 0;
}

void sched_run_orphan(struct sched_run *run)
{
    log_warn("sched: %s still running at exit", run->job_name);
    run->job->running = NULL;
    run->s->running--;
    run->s = NULL;
    run->job = NULL;
    if (run->wake)
        event_free(run->wake);
    if (run->heartbeat)
        event_free(run->heartbeat);
    run->wake = run->heartbeat = NULL;
    waiter_tell(run, "", "the server is stopping");
}

const char *sched_run_shown_state(const struct sched_run *run)
{
    return run->phase == RUN_WORK && run->opened ? run->def->states[run->state]
                                                 : run_phase_names[run->phase];
}
