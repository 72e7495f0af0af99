/* task: the runner of long work.  Claims rows of the durable queue (table
 * tasks) with FOR UPDATE SKIP LOCKED, keeps a lease on each while it runs,
 * drives each task's kind state machine and saves every state change with
 * its stage row before the next step.  See include/studyhub/queue/task.h.
 *
 * Two state machines live here:
 *  - the runner's view of one task (enum task_phase: entering a state,
 *    running it, leaving the queue's "running" state, closed), changed only
 *    by task_set_phase;
 *  - the kind's own (t->state, its names table), changed only by
 *    task_set_state, which logs old -> new and saves it.
 * Notifications come through the pool's LISTEN session (pg_pool_listen):
 * "tasks" wakes the claim, "task_cancel" names a task to stop.
 *
 * Memory (core/reap): a task is freed on a loop turn after it closed and
 * nothing holds it (or synchronously at shutdown); every query the runner
 * sends for a task holds it, so no callback ever sees a freed task.  The
 * runner is held by its queries and its tasks, and goes after the last. */
#include "config.h"

#include "studyhub/queue/task_internal.h"
#include "studyhub/queue/task_queue.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"

#define TASK_RETRY_DELAY_DEFAULT_S 30
#define TASK_RETRY_DELAY_MAX_S 3600
#define TASK_PERSIST_RETRY_MS 1000       /* database down: try again */
#define TASK_LEASE_MARGIN_MS 1000        /* stop this long before expiry */
#define TASK_LOG_FLUSH_MS 1000           /* a running stage's log is saved */

/* ---- SQL ------------------------------------------------------------------ */


/* $1 id, $2 the new stage, $3 owner, $4/$5 outcome and log of the stage
 * being left (if one is open). */
static const struct pg_stmt sql_enter = {
    "task_enter",
    "WITH u AS (UPDATE tasks SET stage = $2"
    "           WHERE id = $1 AND lease_owner = $3 AND state = 'running'"
    "           RETURNING id, attempts, cancel_requested),"
    " e AS (UPDATE task_stages s SET ended_at = now(), outcome = $4, log = $5"
    "       FROM u WHERE s.task_id = u.id AND s.ended_at IS NULL),"
    " i AS (INSERT INTO task_stages (task_id, attempt, stage)"
    "       SELECT id, attempts, $2 FROM u)"
    " SELECT cancel_requested FROM u",
};

/* $1 id, $2 owner, $3 lease (s). */
static const struct pg_stmt sql_renew = {
    "task_renew",
    "UPDATE tasks SET lease_until = now() + $3::int * interval '1 second'"
    " WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
    " RETURNING cancel_requested",
};

/* Out of 'running': finished, or queued again (retry: after $10 s; drain
 * hand-over: in stage $8, the claim's attempt given back with $9).
 * $1 id, $2 new state, $3 owner, $4 result, $5 error, $6/$7 outcome and
 * log of the open stage, $11 the problems of a success (task_problem). */
static const struct pg_stmt sql_leave = {
    "task_leave",
    "WITH u AS (UPDATE tasks SET state = $2, stage = COALESCE($8, stage),"
    "             result = COALESCE($4::jsonb, result), error = $5,"
    "             problems = CASE WHEN $2 = 'succeeded' THEN $11 END,"
    "             attempts = attempts - $9::int,"
    "             run_after = CASE WHEN $2 = 'queued'"
    "                         THEN now() + $10::int * interval '1 second'"
    "                         ELSE run_after END,"
    "             finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END,"
    "             lease_owner = NULL, lease_until = NULL"
    "           WHERE id = $1 AND lease_owner = $3 AND state = 'running'"
    "           RETURNING id),"
    " e AS (UPDATE task_stages s SET ended_at = now(), outcome = $6, log = $7"
    "       FROM u WHERE s.task_id = u.id AND s.ended_at IS NULL)"
    " SELECT id FROM u",
};

/* The open stage's log so far, while it runs ($2: that stage, so a late
 * write never lands in the next stage's row). */
static const struct pg_stmt sql_stage_log = {
    "task_stage_log",
    "UPDATE task_stages s SET log = $3 FROM tasks t"
    " WHERE s.task_id = $1 AND s.ended_at IS NULL AND s.stage = $2"
    "   AND t.id = s.task_id AND t.lease_owner = $4 AND t.state = 'running'",
};



/* $1 id or NULL, $2 uuid or NULL.  No row: not found; state NULL: it had
 * finished; 'cancelled': it was queued; 'running': requested. */
static const struct pg_stmt sql_cancel = {
    "task_cancel",
    "WITH t AS (SELECT id FROM tasks WHERE id = $1::bigint OR uuid = $2::uuid),"
    " u AS (UPDATE tasks SET cancel_requested = true,"
    "         state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,"
    "         finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,"
    "         error = CASE WHEN state = 'queued' THEN 'cancelled before it started'"
    "                 ELSE error END"
    "       WHERE id IN (SELECT id FROM t) AND state IN ('queued', 'running')"
    "       RETURNING id, state, lease_owner)"
    " SELECT t.id, u.state, u.lease_owner FROM t LEFT JOIN u ON u.id = t.id",
};


/* ---- types ---------------------------------------------------------------- */


static const char *const task_phase_names[] = {
    [TP_STARTING] = "starting",
    [TP_ENTERING] = "entering",
    [TP_RUNNING] = "running",
    [TP_LEAVING] = "leaving",
    [TP_CLOSED] = "closed",
};

static const char *const stage_outcome_names[] = {
    [TASK_STAGE_OK] = "succeeded",
    [TASK_STAGE_FAILED] = "failed",
    [TASK_STAGE_SKIPPED] = "skipped",
};

static const char *const outcome_names[] = {
    [TASK_SUCCEEDED] = "succeeded",
    [TASK_FAILED] = "failed",
    [TASK_CANCELLED] = "cancelled",
};





typedef void (*rq_fn)(struct task_runner *r, struct task_impl *ti,
                      PGresult *res, void *arg);
/* One query sent by the runner (for a task, an admin command, ...). */
struct rq {
    struct task_runner *r;          /* borrowed: held by us */
    struct task_impl *ti;           /* held while in flight, or NULL */
    rq_fn fn;                       /* borrowed */
    void *arg;                      /* borrowed: fn's */
    task_pg_cb kcb;                 /* task_pg_exec: the kind's callback */
};

static void task_enter(struct task_impl *ti, int state);
static void task_leave(struct task_impl *ti);
static void task_close(struct task_impl *ti, const char *why);
static void runner_destroy(void *arg);
static void task_free(struct task_impl *ti);
static enum task_outcome_kind task_final_outcome(const struct task_impl *ti);

static struct task_impl *impl(const struct task *t)
{
    return (struct task_impl *)t;
}

static char *vformat(const char *fmt, va_list ap)
{
    return fmt ? util_vasprintf(fmt, ap) : NULL;
}

/* ---- queries -------------------------------------------------------------- */

static void rq_done(PGresult *res, void *arg)
{
    struct rq *q = arg;
    struct task_runner *r = q->r;
    struct task_impl *ti = q->ti;

    if (q->fn)
        q->fn(r, ti, res, q->arg);
    if (ti)
        task_release(&ti->pub);
    free(q);
    reap_drop(&r->reap);    /* freed by task_runner_free: goes after the last */
}

/* pg_exec that keeps r (and ti, if given) alive until fn has run. */
int task_runner_exec(struct task_runner *r, struct task_impl *ti,
                     const struct pg_stmt *stmt, int n,
                     const char *const *params, rq_fn fn, void *arg)
{
    struct rq *q = calloc(1, sizeof *q);

    if (!q)
        return -1;
    q->r = r;
    q->ti = ti;
    q->fn = fn;
    q->arg = arg;
    if (pg_exec(r->pool, stmt, n, params, rq_done, q) < 0) {
        free(q);
        return -1;
    }
    reap_hold(&r->reap);
    if (ti)
        reap_hold(&ti->reap);
    return 0;
}

/* ---- the task's phase ----------------------------------------------------- */

static void task_set_phase(struct task_impl *ti, enum task_phase ph)
{
    if (ti->phase != ph)
        log_debug("task %lld %s: phase %s -> %s", (long long)ti->pub.id,
                  ti->pub.kind->name, task_phase_names[ti->phase],
                  task_phase_names[ph]);
    ti->phase = ph;
}

const char *task_state_name(const struct task *t, int state)
{
    if (state < 0 || state >= t->kind->nstates)
        return "(none)";
    return t->kind->states[state];
}

static void stage_log_reset(struct task_impl *ti)
{
    ti->log.len = ti->log.start = ti->log.total = 0;
}

/* The current stage's log as text, and a fresh log for the next one. */
static char *stage_log_take(struct task_impl *ti)
{
    char *s = proc_tail_text(&ti->log, NULL);

    stage_log_reset(ti);
    return s ? s : strdup("");
}

static void set_close(struct task_impl *ti, const char *outcome, char *log_text)
{
    free(ti->close_log);
    ti->close_outcome = outcome;
    ti->close_log = log_text;
}

/* Stops the task here: no more saves; close hook; freed when unheld. */
static void task_close(struct task_impl *ti, const char *why)
{
    struct task_runner *r = ti->r;

    if (ti->phase == TP_CLOSED)
        return;
    if (why)
        log_warn("task %lld %s: stopped here: %s", (long long)ti->pub.id,
                 ti->pub.kind->name, why);
    task_set_phase(ti, TP_CLOSED);
    evtimer_del(ti->heartbeat);
    event_del(ti->wake);
    evtimer_del(ti->retry);
    evtimer_del(ti->log_flush);
    TAILQ_REMOVE(&r->tasks, ti, link);
    r->ntasks--;
    TAILQ_INSERT_TAIL(&r->closed, ti, link);
    if (ti->opened) {
        ti->opened = false;
        ti->pub.kind->close(&ti->pub);
    }
    /* The runner's hold ends: freed on a later turn once nothing holds it. */
    reap_release(&ti->reap);
    reap_drop(&ti->reap);
    /* A slot is free. */
    task_claim_kick(r);
}

static void task_free(struct task_impl *ti)
{
    if (ti->heartbeat)
        event_free(ti->heartbeat);
    if (ti->wake)
        event_free(ti->wake);
    if (ti->retry)
        event_free(ti->retry);
    if (ti->log_flush)
        event_free(ti->log_flush);
    json_decref(ti->pub.payload);
    proc_tail_cleanup(&ti->log);
    free(ti->subject);
    free(ti->close_log);
    free(ti->result_text);
    free(ti->error);
    free(ti->problems);
    reap_cleanup(&ti->reap);
    free(ti);
}

/* A closed task nothing holds (core/reap): from the loop, or at shutdown. */
static void task_destroy(void *arg)
{
    struct task_impl *ti = arg;
    struct task_runner *r = ti->r;

    TAILQ_REMOVE(&r->closed, ti, link);
    task_free(ti);
    reap_drop(&r->reap);    /* the task's hold on the runner */
}

/* Abandoned here (lease lost, database gone too long): another server
 * resumes it once the lease has run out. */
static void task_abandon(struct task_impl *ti, const char *why)
{
    char msg[256];

    snprintf(msg, sizeof msg, "%s; its lease will run out and a server will "
             "resume it", why);
    task_close(ti, msg);
}

/* A save came back NULL (no database): try again, within the lease. */
static void task_persist_later(struct task_impl *ti)
{
    if (util_mono_ms() >= ti->lease_deadline_ms) {
        task_abandon(ti, "the database was unreachable until its lease ran out");
        return;
    }
    util_timer_ms(ti->retry, TASK_PERSIST_RETRY_MS);
}

/* ---- entering a state ----------------------------------------------------- */

static void task_step(struct task_impl *ti)
{
    if (ti->phase != TP_RUNNING)
        return;
    ti->pub.kind->step(&ti->pub);
}

static void task_deliver_cancel(struct task_impl *ti)
{
    if (ti->phase != TP_RUNNING || ti->cancel_delivered ||
        !ti->pub.kind->cancel)
        return;
    ti->cancel_delivered = true;
    ti->want_cancel = false;
    ti->pub.kind->cancel(&ti->pub);
}

static void on_enter(struct task_runner *r, struct task_impl *ti,
                     PGresult *res, void *arg)
{
    if (ti->phase != TP_ENTERING || r->dying)
        return;
    if (!res) {
        task_persist_later(ti);
        return;
    }
    if (!pg_ok(res)) {
        log_error("task %lld %s: cannot save stage %s: %s", (long long)ti->pub.id,
                  ti->pub.kind->name, task_state_name(&ti->pub, ti->target_state),
                  PQresultErrorMessage(res));
        task_abandon(ti, "its state could not be saved");
        return;
    }
    if (PQntuples(res) == 0) {
        task_close(ti, "it lost its lease (another server took it over, or it "
                       "was finished elsewhere)");
        return;
    }
    if (PQgetvalue(res, 0, 0)[0] == 't')
        ti->cancel_requested = true;
    ti->pub.state = ti->target_state;
    free(ti->close_log);
    ti->close_log = NULL;
    task_set_phase(ti, TP_RUNNING);
    if (ti->cancel_requested) {
        if (!ti->pub.kind->cancel) {
            set_close(ti, "cancelled", strdup("cancelled before this stage ran"));
            ti->final_state = "cancelled";
            ti->leave = LEAVE_FINISH;
            free(ti->error);
            ti->error = strdup("cancelled");
            task_leave(ti);
            return;
        }
        task_deliver_cancel(ti);
    }
    /* The state's setup; it may have moved the task on already. */
    if (ti->pub.kind->enter && ti->phase == TP_RUNNING)
        ti->pub.kind->enter(&ti->pub, ti->pub.state);
    task_step(ti);
}

static void task_send_enter(struct task_impl *ti)
{
    char id[32];
    const char *params[5];

    snprintf(id, sizeof id, "%lld", (long long)ti->pub.id);
    params[0] = id;
    params[1] = ti->pub.kind->states[ti->target_state];
    params[2] = ti->r->owner;
    params[3] = ti->close_outcome ? ti->close_outcome : "succeeded";
    params[4] = ti->close_log ? ti->close_log : "";
    if (task_runner_exec(ti->r, ti, &sql_enter, 5, params, on_enter, NULL) < 0)
        task_persist_later(ti);
}

static void task_enter(struct task_impl *ti, int state)
{
    ti->target_state = state;
    task_set_phase(ti, TP_ENTERING);
    task_send_enter(ti);
}

/* ---- leaving the running state -------------------------------------------- */

static void on_leave(struct task_runner *r, struct task_impl *ti,
                     PGresult *res, void *arg)
{
    if (ti->phase != TP_LEAVING || r->dying)
        return;
    if (!res) {
        task_persist_later(ti);
        return;
    }
    if (!pg_ok(res)) {
        log_error("task %lld %s: cannot save its end: %s", (long long)ti->pub.id,
                  ti->pub.kind->name, PQresultErrorMessage(res));
        task_abandon(ti, "its end could not be saved");
        return;
    }
    if (PQntuples(res) == 0) {
        task_close(ti, "it lost its lease before its end was saved");
        return;
    }
    switch (ti->leave) {
    case LEAVE_FINISH:
        ti->r->finished[task_final_outcome(ti)]++;
        if (task_final_outcome(ti) == TASK_OUTCOME_PROBLEMS)
            log_warn("task %lld %s: succeeded with problems in stage %s after %d attempt%s: %s",
                     (long long)ti->pub.id, ti->pub.kind->name,
                     task_state_name(&ti->pub, ti->pub.state), ti->pub.attempts,
                     ti->pub.attempts == 1 ? "" : "s", ti->problems);
        else
            log_info("task %lld %s: %s in stage %s after %d attempt%s%s%s",
                     (long long)ti->pub.id, ti->pub.kind->name, ti->final_state,
                     task_state_name(&ti->pub, ti->pub.state), ti->pub.attempts,
                     ti->pub.attempts == 1 ? "" : "s", ti->error ? ": " : "",
                     ti->error ? ti->error : "");
        break;
    case LEAVE_RETRY:
        log_warn("task %lld %s: attempt %d/%d failed in stage %s; retry in %d s: %s",
                 (long long)ti->pub.id, ti->pub.kind->name, ti->pub.attempts,
                 ti->pub.max_attempts, task_state_name(&ti->pub, ti->pub.state),
                 ti->retry_delay_s, ti->error ? ti->error : "");
        break;
    case LEAVE_RELEASE:
        log_info("task %lld %s: handed back to the queue at stage %s",
                 (long long)ti->pub.id, ti->pub.kind->name,
                 task_state_name(&ti->pub, ti->target_state));
        break;
    }
    task_close(ti, NULL);
}

static void task_send_leave(struct task_impl *ti)
{
    char id[32], delay[16];
    const char *params[11];

    snprintf(id, sizeof id, "%lld", (long long)ti->pub.id);
    snprintf(delay, sizeof delay, "%d", ti->leave == LEAVE_RETRY ? ti->retry_delay_s : 0);
    params[0] = id;
    params[1] = ti->final_state;
    params[2] = ti->r->owner;
    params[3] = ti->result_text;
    params[4] = ti->error;
    params[5] = ti->close_outcome ? ti->close_outcome : "interrupted";
    params[6] = ti->close_log ? ti->close_log : "";
    params[7] = ti->leave == LEAVE_RELEASE && ti->target_state >= 0
                    ? ti->pub.kind->states[ti->target_state] : NULL;
    params[8] = ti->leave == LEAVE_RELEASE ? "1" : "0";
    params[9] = delay;
    params[10] = ti->problems;
    if (task_runner_exec(ti->r, ti, &sql_leave, 11, params, on_leave, NULL) < 0)
        task_persist_later(ti);
}

static void task_leave(struct task_impl *ti)
{
    task_set_phase(ti, TP_LEAVING);
    task_send_leave(ti);
}

/* The runner fails a task on its own (open failed, not resumable...). */
static void task_fail_now(struct task_impl *ti, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void task_fail_now(struct task_impl *ti, const char *fmt, ...)
{
    va_list ap;

    free(ti->error);
    va_start(ap, fmt);
    ti->error = vformat(fmt, ap);
    va_end(ap);
    log_warn("task %lld %s: failing it: %s", (long long)ti->pub.id,
             ti->pub.kind->name, ti->error ? ti->error : "");
    ti->final_state = "failed";
    ti->leave = LEAVE_FINISH;
    task_leave(ti);
}

static void task_on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct task_impl *ti = arg;

    if (util_mono_ms() >= ti->lease_deadline_ms) {
        task_abandon(ti, "the database was unreachable until its lease ran out");
        return;
    }
    if (ti->phase == TP_ENTERING)
        task_send_enter(ti);
    else if (ti->phase == TP_LEAVING)
        task_send_leave(ti);
}

/* ---- the lease ------------------------------------------------------------ */

void task_note_cancel(struct task_impl *ti)
{
    if (ti->cancel_requested || ti->phase == TP_CLOSED)
        return;
    ti->cancel_requested = true;
    log_info("task %lld %s: cancel requested in stage %s", (long long)ti->pub.id,
             ti->pub.kind->name, task_state_name(&ti->pub, ti->pub.state));
    if (ti->phase == TP_RUNNING && ti->pub.kind->cancel) {
        ti->want_cancel = true;
        event_active(ti->wake, EV_TIMEOUT, 1);
    }
}

struct renew_ctx {
    int64_t sent_ms;   /* monotonic time the renewal was sent */
};

static void on_renew(struct task_runner *r, struct task_impl *ti,
                     PGresult *res, void *arg)
{
    struct renew_ctx *rc = arg;
    int64_t sent = rc->sent_ms;

    free(rc);
    ti->renewing = false;
    if (r->dying || ti->phase == TP_CLOSED || !res)
        return;     /* NULL: the next heartbeat tries again */
    if (!pg_ok(res)) {
        log_error("task %lld %s: cannot renew its lease: %s", (long long)ti->pub.id,
                  ti->pub.kind->name, PQresultErrorMessage(res));
        return;
    }
    if (PQntuples(res) == 0) {
        /* While leaving, the row may already be ours no more. */
        if (ti->phase != TP_LEAVING)
            task_close(ti, "it lost its lease (another server took it over, "
                           "or it was finished elsewhere)");
        return;
    }
    ti->lease_deadline_ms = sent + (int64_t)ti->lease_s * 1000 - TASK_LEASE_MARGIN_MS;
    if (PQgetvalue(res, 0, 0)[0] == 't')
        task_note_cancel(ti);
}

static void task_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct task_impl *ti = arg;
    struct renew_ctx *rc;
    char id[32], lease[16];
    const char *params[3];
    int64_t period = (int64_t)ti->lease_s * 1000 / 3;

    if (ti->phase == TP_CLOSED)
        return;
    int64_t now = util_mono_ms();

    if (now >= ti->lease_deadline_ms) {
        task_abandon(ti, "its lease could not be renewed in time");
        return;
    }
    /* The next beat comes at the deadline at the latest: a server that
     * cannot renew must stop its work (children killed in close) before
     * another server may take the task over, not a period later. */
    util_timer_ms(ti->heartbeat, period < ti->lease_deadline_ms - now
                                     ? period : ti->lease_deadline_ms - now);
    if (ti->renewing)
        return;
    rc = malloc(sizeof *rc);
    if (!rc)
        return;
    rc->sent_ms = util_mono_ms();
    snprintf(id, sizeof id, "%lld", (long long)ti->pub.id);
    snprintf(lease, sizeof lease, "%d", ti->lease_s);
    params[0] = id;
    params[1] = ti->r->owner;
    params[2] = lease;
    if (task_runner_exec(ti->r, ti, &sql_renew, 3, params, on_renew, rc) < 0) {
        free(rc);
        return;
    }
    ti->renewing = true;
}

static void task_on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct task_impl *ti = arg;

    if (ti->phase != TP_RUNNING) {
        ti->want_step = ti->want_cancel = false;
        return;
    }
    if (ti->want_cancel)
        task_deliver_cancel(ti);
    if (ti->want_step && ti->phase == TP_RUNNING) {
        ti->want_step = false;
        task_step(ti);
    }
}

/* ---- the API for kinds ---------------------------------------------------- */

void task_set_state(struct task *t, int state, enum task_stage_outcome outcome)
{
    struct task_impl *ti = impl(t);
    struct task_runner *r = ti->r;

    if (ti->phase != TP_RUNNING) {
        log_error("task %lld %s: task_set_state(%s) while %s; ignored",
                  (long long)t->id, t->kind->name, task_state_name(t, state),
                  task_phase_names[ti->phase]);
        return;
    }
    if (state < 0 || state >= t->kind->nstates) {
        task_finish(t, TASK_FAILED, NULL, "internal error: state %d of kind %s",
                    state, t->kind->name);
        return;
    }
    if ((unsigned)outcome > TASK_STAGE_SKIPPED)
        outcome = TASK_STAGE_OK;
    log_info("task %lld %s: %s -> %s (%s)", (long long)t->id, t->kind->name,
             task_state_name(t, t->state), task_state_name(t, state),
             stage_outcome_names[outcome]);
    set_close(ti, stage_outcome_names[outcome], stage_log_take(ti));
    if (r->draining) {
        ti->target_state = state;
        ti->final_state = "queued";
        ti->leave = LEAVE_RELEASE;
        free(ti->error);
        ti->error = NULL;
        task_leave(ti);
        return;
    }
    if (ti->cancel_requested && !t->kind->cancel) {
        ti->final_state = "cancelled";
        ti->leave = LEAVE_FINISH;
        free(ti->error);
        ti->error = strdup("cancelled");
        task_leave(ti);
        return;
    }
    task_enter(ti, state);
}

void task_finish(struct task *t, enum task_outcome outcome, json_t *result,
                 const char *fmt, ...)
{
    struct task_impl *ti = impl(t);
    va_list ap;

    if (ti->phase != TP_RUNNING) {
        log_error("task %lld %s: task_finish while %s; ignored", (long long)t->id,
                  t->kind->name, task_phase_names[ti->phase]);
        json_decref(result);
        return;
    }
    if ((unsigned)outcome > TASK_CANCELLED)
        outcome = TASK_FAILED;
    free(ti->error);
    va_start(ap, fmt);
    ti->error = vformat(fmt, ap);
    va_end(ap);
    free(ti->result_text);
    ti->result_text = result ? json_dumps(result, JSON_COMPACT) : NULL;
    json_decref(result);
    if (ti->error && outcome != TASK_SUCCEEDED)
        task_log(t, "%s: %s", outcome_names[outcome], ti->error);
    set_close(ti, outcome_names[outcome], stage_log_take(ti));
    ti->final_state = outcome_names[outcome];
    ti->leave = LEAVE_FINISH;
    task_leave(ti);
}

bool task_can_retry(const struct task *t)
{
    return t->attempts < t->max_attempts;
}

void task_retry(struct task *t, const char *fmt, ...)
{
    struct task_impl *ti = impl(t);
    va_list ap;
    char *msg;
    int delay;

    if (ti->phase != TP_RUNNING) {
        log_error("task %lld %s: task_retry while %s; ignored", (long long)t->id,
                  t->kind->name, task_phase_names[ti->phase]);
        return;
    }
    va_start(ap, fmt);
    msg = vformat(fmt, ap);
    va_end(ap);
    if (!task_can_retry(t)) {
        task_finish(t, TASK_FAILED, NULL, "%s (attempt %d of %d; none left)",
                    msg ? msg : "failed", t->attempts, t->max_attempts);
        free(msg);
        return;
    }
    delay = t->kind->retry_delay_s > 0 ? t->kind->retry_delay_s
                                       : TASK_RETRY_DELAY_DEFAULT_S;
    for (int i = 1; i < t->attempts && delay < TASK_RETRY_DELAY_MAX_S; i++)
        delay *= 2;
    if (delay > TASK_RETRY_DELAY_MAX_S)
        delay = TASK_RETRY_DELAY_MAX_S;
    if (msg)
        task_log(t, "attempt %d failed: %s", t->attempts, msg);
    free(ti->error);
    ti->error = msg;
    set_close(ti, "failed", stage_log_take(ti));
    ti->retry_delay_s = delay;
    ti->final_state = "queued";
    ti->leave = LEAVE_RETRY;
    task_leave(ti);
}

static void on_log_flush(struct task_runner *r, struct task_impl *ti,
                         PGresult *res, void *arg)
{
    ti->flushing = false;
}

/* Saves the running stage's log so far (task show, live views); the end
 * of the stage saves it whole anyway. */
static void task_on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    struct task_impl *ti = arg;
    char id[32];
    char *text;
    const char *params[4];

    if (ti->phase != TP_RUNNING)
        return;
    if (ti->flushing) {
        util_timer_ms(ti->log_flush, TASK_LOG_FLUSH_MS);
        return;
    }
    text = proc_tail_text(&ti->log, NULL);
    if (!text)
        return;
    snprintf(id, sizeof id, "%lld", (long long)ti->pub.id);
    params[0] = id;
    params[1] = ti->pub.kind->states[ti->pub.state];
    params[2] = text;
    params[3] = ti->r->owner;
    if (task_runner_exec(ti->r, ti, &sql_stage_log, 4, params, on_log_flush, NULL) == 0)
        ti->flushing = true;
    free(text);
}

static void stage_log_append(struct task_impl *ti, const char *s, size_t n)
{
    proc_tail_append(&ti->log, s, n);
    if (ti->phase == TP_RUNNING && !evtimer_pending(ti->log_flush, NULL))
        util_timer_ms(ti->log_flush, TASK_LOG_FLUSH_MS);
}

/* The outcome a finishing task reports (finished[] and the log). */
static enum task_outcome_kind task_final_outcome(const struct task_impl *ti)
{
    if (strcmp(ti->final_state, "succeeded") == 0)
        return ti->problems ? TASK_OUTCOME_PROBLEMS : TASK_OUTCOME_SUCCEEDED;
    return strcmp(ti->final_state, "cancelled") == 0 ? TASK_OUTCOME_CANCELLED
                                                     : TASK_OUTCOME_FAILED;
}

void task_problem(struct task *t, const char *fmt, ...)
{
    struct task_impl *ti = impl(t);
    size_t have = ti->problems ? strlen(ti->problems) : 0;
    va_list ap;
    char *s, *all;

    va_start(ap, fmt);
    s = vformat(fmt, ap);
    va_end(ap);
    if (!s)
        return;
    task_log(t, "problem: %s", s);
    /* Bounded like the column: the first problems say the most. */
    if (have + strlen(s) + 2 <= TASK_PROBLEMS_MAX &&
        (all = util_asprintf("%s%s%s", have ? ti->problems : "", have ? "\n" : "", s))) {
        free(ti->problems);
        ti->problems = all;
    }
    free(s);
}

const char *task_outcome_kind_name(enum task_outcome_kind o)
{
    static const char *const names[TASK_OUTCOMES] = {
        [TASK_OUTCOME_SUCCEEDED] = "succeeded",
        [TASK_OUTCOME_PROBLEMS] = "succeeded_with_problems",
        [TASK_OUTCOME_FAILED] = "failed",
        [TASK_OUTCOME_CANCELLED] = "cancelled",
    };
    return (unsigned)o < TASK_OUTCOMES ? names[o] : "?";
}

void task_runner_outcomes(const struct task_runner *r, long out[TASK_OUTCOMES])
{
    for (int i = 0; i < TASK_OUTCOMES; i++)
        out[i] = r ? r->finished[i] : 0;
}

void task_log(struct task *t, const char *fmt, ...)
{
    struct task_impl *ti = impl(t);
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = vformat(fmt, ap);
    va_end(ap);
    if (!s)
        return;
    log_debug("task %lld %s [%s]: %s", (long long)t->id, t->kind->name,
              task_state_name(t, t->state), s);
    stage_log_append(ti, s, strlen(s));
    stage_log_append(ti, "\n", 1);
    free(s);
}

void task_log_text(struct task *t, const char *label, const char *text,
                   size_t len)
{
    struct task_impl *ti = impl(t);
    char head[256];

    snprintf(head, sizeof head, "--- %s (%zu bytes) ---\n", label ? label : "output", len);
    stage_log_append(ti, head, strlen(head));
    if (text && len) {
        stage_log_append(ti, text, len);
        if (text[len - 1] != '\n')
            stage_log_append(ti, "\n", 1);
    }
}

void task_wake(struct task *t)
{
    struct task_impl *ti = impl(t);

    if (ti->phase != TP_RUNNING)
        return;
    ti->want_step = true;
    event_active(ti->wake, EV_TIMEOUT, 1);
}

bool task_cancel_requested(const struct task *t)
{
    return impl(t)->cancel_requested;
}

bool task_live(const struct task *t)
{
    const struct task_impl *ti = impl(t);

    return ti->phase != TP_CLOSED && !ti->r->dying;
}

void task_hold(struct task *t)
{
    reap_hold(&impl(t)->reap);
}

void task_release(struct task *t)
{
    struct task_impl *ti = impl(t);
    struct task_runner *r = ti->r;

    reap_drop(&ti->reap);
    if (r->dying)
        reap_now(&ti->reap);    /* no loop turn may come: now, if it may go */
}

static void on_kind_query(struct task_runner *r, struct task_impl *ti,
                          PGresult *res, void *arg)
{
    struct rq *q = arg;
    task_pg_cb cb = q->kcb;

    free(q);
    if (ti->phase != TP_CLOSED && !r->dying)
        cb(&ti->pub, res);
}

int task_pg_exec(struct task *t, const struct pg_stmt *stmt, int nparams,
                 const char *const *params, task_pg_cb cb)
{
    struct task_impl *ti = impl(t);
    struct rq *holder;

    if (!task_live(t) || !cb)
        return -1;
    /* The kind's callback rides in a second small record. */
    holder = calloc(1, sizeof *holder);
    if (!holder)
        return -1;
    holder->kcb = cb;
    if (task_runner_exec(ti->r, ti, stmt, nparams, params, on_kind_query, holder) < 0) {
        free(holder);
        return -1;
    }
    return 0;
}

/* ---- a claimed row becomes a task ------------------------------------------- */

const struct task_kind *task_runner_kind(const struct task_runner *r,
                                         const char *name)
{
    for (int i = 0; i < r->nkinds; i++)
        if (strcmp(r->kinds[i]->name, name) == 0)
            return r->kinds[i];
    return NULL;
}

static int kind_state(const struct task_kind *k, const char *name)
{
    for (int i = 0; i < k->nstates; i++)
        if (strcmp(k->states[i], name) == 0)
            return i;
    return -1;
}

/* A claimed row becomes a task of this process: open it, decide where it
 * goes on (resume), then enter that state. */
void task_begin(struct task_impl *ti, const char *stage,
                       const char *old_state, const char *old_owner,
                       bool cancel)
{
    const struct task_kind *k = ti->pub.kind;
    char err[256] = "";
    int st, next;
    bool resumed = strcmp(old_state, "running") == 0;

    if (resumed) {
        char msg[512];

        if (strcmp(old_owner, ti->r->owner) == 0)
            snprintf(msg, sizeof msg, "interrupted: this server stopped the stage "
                     "when it could not reach the database to renew its lease");
        else
            snprintf(msg, sizeof msg, "interrupted: the server running this stage "
                     "(%s) stopped before it ended", old_owner);
        set_close(ti, "interrupted", strdup(msg));
    } else {
        set_close(ti, "interrupted", NULL);
    }
    if (ti->r->draining) {
        /* Claimed just as SIGTERM came: give it straight back. */
        ti->target_state = -1;
        ti->final_state = "queued";
        ti->leave = LEAVE_RELEASE;
        task_leave(ti);
        return;
    }
    if (!json_is_object(ti->pub.payload)) {
        task_fail_now(ti, "its payload is not a JSON object");
        return;
    }
    if (k->open(&ti->pub, err, sizeof err) < 0) {
        task_fail_now(ti, "cannot start: %s", err[0] ? err : "open failed");
        return;
    }
    ti->opened = true;
    st = stage ? kind_state(k, stage) : k->initial_state;
    if (st < 0) {
        task_fail_now(ti, "unknown stage '%s' for kind %s", stage, k->name);
        return;
    }
    ti->pub.state = st;
    next = st;
    if (resumed) {
        ti->pub.resumed = true;
        log_warn("task %lld %s: its server (%s) stopped in stage %s; resuming "
                 "(attempt %d of %d)", (long long)ti->pub.id, k->name, old_owner,
                 k->states[st], ti->pub.attempts, ti->pub.max_attempts);
        if (k->resume) {
            next = k->resume(&ti->pub, st);
            if (next < 0 || next >= k->nstates) {
                task_fail_now(ti, "interrupted in stage %s (its server stopped) "
                              "and not resumable", k->states[st]);
                return;
            }
        } else if (ti->pub.attempts > ti->pub.max_attempts) {
            task_fail_now(ti, "gave up after %d attempts; the last was "
                          "interrupted in stage %s (its server stopped)",
                          ti->pub.attempts - 1, k->states[st]);
            return;
        } else if (k->resume_policy == TASK_RESUME_FAIL) {
            task_fail_now(ti, "interrupted in stage %s (its server stopped)",
                          k->states[st]);
            return;
        }
    }
    if (cancel) {
        ti->cancel_requested = true;
        if (!k->cancel) {
            free(ti->error);
            ti->error = strdup("cancelled");
            ti->final_state = "cancelled";
            ti->leave = LEAVE_FINISH;
            task_leave(ti);
            return;
        }
    }
    log_info("task %lld %s: %s %s (attempt %d of %d)", (long long)ti->pub.id,
             k->name, resumed ? "resumes in" : stage ? "goes on in" : "starts in",
             k->states[next], ti->pub.attempts, ti->pub.max_attempts);
    task_enter(ti, next);
}

struct task_impl *task_new(struct task_runner *r, const struct task_kind *k,
                                  PGresult *res, int row)
{
    struct task_impl *ti = calloc(1, sizeof *ti);
    json_error_t jerr;

    if (!ti)
        return NULL;
    ti->r = r;
    ti->pub.kind = k;
    ti->pub.app = r->app;
    ti->pub.state = -1;
    ti->target_state = -1;
    ti->pub.id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
    snprintf(ti->pub.uuid, sizeof ti->pub.uuid, "%s", PQgetvalue(res, row, 1));
    if (!PQgetisnull(res, row, 3)) {
        ti->subject = strdup(PQgetvalue(res, row, 3));
        ti->pub.subject = ti->subject;
    }
    ti->pub.payload = json_loads(PQgetvalue(res, row, 5), 0, &jerr);
    ti->pub.attempts = atoi(PQgetvalue(res, row, 6));
    ti->pub.max_attempts = !PQgetisnull(res, row, 7) ? atoi(PQgetvalue(res, row, 7))
                           : k->max_attempts > 0 ? k->max_attempts : 1;
    ti->lease_s = k->lease_s > 0 ? k->lease_s : r->lease_s;
    ti->lease_deadline_ms = r->claim_sent_ms + (int64_t)ti->lease_s * 1000 -
                            TASK_LEASE_MARGIN_MS;
    ti->heartbeat = evtimer_new(r->base, task_on_heartbeat, ti);
    ti->wake = event_new(r->base, -1, 0, task_on_wake, ti);
    ti->retry = evtimer_new(r->base, task_on_retry_timer, ti);
    ti->log_flush = evtimer_new(r->base, task_on_log_flush, ti);
    if (reap_init(&ti->reap, r->base, task_destroy, ti) < 0 || !ti->heartbeat ||
        !ti->wake || !ti->retry || !ti->log_flush ||
        proc_tail_init(&ti->log, TASK_LOG_MAX) < 0) {
        task_free(ti);
        return NULL;
    }
    reap_hold(&ti->reap);       /* the runner's, until it closes */
    reap_hold(&r->reap);        /* the task's, until it is freed */
    task_set_phase(ti, TP_STARTING);
    return ti;
}

/* ---- the runner ------------------------------------------------------------- */

/* host/pidns/pid/token: the pid namespace makes "same host" mean "pids are
 * comparable" (two containers sharing a host name do not share pids). */
static void runner_identity(struct task_runner *r)
{
    char host[64] = "localhost", ns[64] = "", link[64];
    char rnd[9];
    ssize_t n;

    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '/' || *p == '"' || *p == '\\' || *p == ',' || *p == '{' ||
            *p == '}' || (unsigned char)*p < 0x21)
            *p = '_';
    n = readlink("/proc/self/ns/pid", link, sizeof link - 1);
    if (n > 0) {
        link[n] = '\0';
        const char *b = strchr(link, '[');

        snprintf(ns, sizeof ns, "%lu", b ? strtoul(b + 1, NULL, 10) : 0UL);
    } else {
        snprintf(ns, sizeof ns, "0");
    }
    util_random_hex(4, rnd);
    snprintf(r->owner_prefix, sizeof r->owner_prefix, "%s/%s/", host, ns);
    snprintf(r->owner, sizeof r->owner, "%s%d/%s", r->owner_prefix, (int)getpid(), rnd);
}

struct task_runner *task_runner_new(struct app *app)
{
    struct task_runner *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->app = app;
    r->base = app->base;
    r->pool = app->pg;
    r->concurrency = (int)app->cfg->task_concurrency;
    r->lease_s = (int)app->cfg->task_lease_s;
    r->poll_s = (int)app->cfg->task_poll_s;
    TAILQ_INIT(&r->tasks);
    TAILQ_INIT(&r->closed);
    runner_identity(r);
    r->wake_timer = evtimer_new(r->base, task_claim_on_wake_timer, r);
    if (reap_init(&r->reap, r->base, runner_destroy, r) < 0 || !r->wake_timer) {
        runner_destroy(r);
        return NULL;
    }
    return r;
}

int task_register(struct task_runner *r, const struct task_kind *k)
{
    if (!r || !k || !k->name || !k->states || k->nstates < 1 || !k->open ||
        !k->step || !k->close || k->initial_state < 0 ||
        k->initial_state >= k->nstates || r->started) {
        log_error("tasks: bad kind %s", k && k->name ? k->name : "(null)");
        return -1;
    }
    for (const char *p = k->name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            log_error("tasks: kind name '%s' is not [a-z0-9_]+", k->name);
            return -1;
        }
    if (task_runner_kind(r, k->name) || r->nkinds == TASK_MAX_KINDS) {
        log_error("tasks: kind %s registered twice (or too many kinds)", k->name);
        return -1;
    }
    r->kinds[r->nkinds++] = k;
    return 0;
}

/* "{a,b}" and "{60,600}" for the claim's unnest. */
static int runner_build_params(struct task_runner *r)
{
    FILE *fk, *fl;
    size_t lk, ll;

    fk = open_memstream(&r->kinds_param, &lk);
    fl = open_memstream(&r->leases_param, &ll);
    if (!fk || !fl) {
        if (fk)
            fclose(fk);
        if (fl)
            fclose(fl);
        return -1;
    }
    fputc('{', fk);
    fputc('{', fl);
    for (int i = 0; i < r->nkinds; i++) {
        const struct task_kind *k = r->kinds[i];

        fprintf(fk, "%s%s", i ? "," : "", k->name);
        fprintf(fl, "%s%d", i ? "," : "", k->lease_s > 0 ? k->lease_s : r->lease_s);
    }
    fputc('}', fk);
    fputc('}', fl);
    fclose(fk);
    fclose(fl);
    return r->kinds_param && r->leases_param ? 0 : -1;
}

int task_runner_start(struct task_runner *r)
{
    if (!r || r->started)
        return -1;
    if (runner_build_params(r) < 0)
        return -1;
    r->started = true;
    if (r->concurrency == 0) {
        log_info("tasks: TASK_CONCURRENCY=0: this server runs no tasks");
        return 0;
    }
    log_info("tasks: runner %s: up to %d at once, lease %d s, kinds %s", r->owner,
             r->concurrency, r->lease_s, r->kinds_param);
    task_claim_start(r);
    return 0;
}

void task_runner_drain(struct task_runner *r)
{
    if (!r || r->draining)
        return;
    r->draining = true;
    evtimer_del(r->wake_timer);
    if (r->ntasks)
        log_info("tasks: draining: %u task%s here go back to the queue at their "
                 "next stage", r->ntasks, r->ntasks == 1 ? "" : "s");
}

unsigned task_runner_busy(const struct task_runner *r)
{
    return r ? r->ntasks : 0;
}

static void runner_destroy(void *arg)
{
    struct task_runner *r = arg;

    task_claim_stop(r);
    reap_cleanup(&r->reap);
    if (r->wake_timer)
        event_free(r->wake_timer);
    free(r->kinds_param);
    free(r->leases_param);
    free(r);
}

void task_runner_free(struct task_runner *r)
{
    struct task_impl *ti, *next;

    if (!r || r->dying)
        return;
    r->dying = true;
    task_claim_stop(r);
    evtimer_del(r->wake_timer);
    while ((ti = TAILQ_FIRST(&r->tasks))) {
        log_warn("task %lld %s: still running at exit (stage %s); its lease will "
                 "run out and a server will resume it", (long long)ti->pub.id,
                 ti->pub.kind->name, task_state_name(&ti->pub, ti->pub.state));
        task_close(ti, NULL);
    }
    /* The closed ones nothing holds go now: no loop turn may come. */
    for (ti = TAILQ_FIRST(&r->closed); ti; ti = next) {
        next = TAILQ_NEXT(ti, link);
        reap_now(&ti->reap);
    }
    /* Queries still out come back (NULL at pg_pool_free at the latest);
     * the runner goes after the last. */
    reap_release(&r->reap);
}

/* ---- enqueue, find, cancel -------------------------------------------------- */


struct cancel_ctx {
    task_cancel_cb cb;    /* borrowed */
    void *arg;            /* borrowed */
};

static void on_cancel(struct task_runner *r, struct task_impl *unused,
                      PGresult *res, void *arg)
{
    struct cancel_ctx *c = arg;
    enum task_cancel_status st = TASK_CANCEL_UNAVAILABLE;

    if (res && pg_ok(res)) {
        if (PQntuples(res) == 0) {
            st = TASK_CANCEL_NOT_FOUND;
        } else if (PQgetisnull(res, 0, 1)) {
            st = TASK_CANCEL_ALREADY_DONE;
        } else if (strcmp(PQgetvalue(res, 0, 1), "cancelled") == 0) {
            st = TASK_CANCEL_CANCELLED;
            log_info("task %s: cancelled before it started", PQgetvalue(res, 0, 0));
        } else {
            int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            struct task_impl *ti;

            st = TASK_CANCEL_REQUESTED;
            /* Ours: no need to wait for the notification. */
            if (!r->dying && strcmp(PQgetvalue(res, 0, 2), r->owner) == 0)
                TAILQ_FOREACH(ti, &r->tasks, link)
                    if (ti->pub.id == id)
                        task_note_cancel(ti);
        }
    } else if (res) {
        log_error("tasks: cancel failed: %s", PQresultErrorMessage(res));
    }
    if (c->cb)
        c->cb(st, c->arg);
    free(c);
}

int task_cancel(struct task_runner *r, const char *ref, task_cancel_cb cb,
                void *arg)
{
    char id[32], uuid[40];
    const char *params[2];
    struct cancel_ctx *c;

    if (!r || !ref || task_parse_ref(ref, id, sizeof id, uuid, sizeof uuid) < 0)
        return -1;
    params[0] = id[0] ? id : NULL;
    params[1] = uuid[0] ? uuid : NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->cb = cb;
    c->arg = arg;
    if (task_runner_exec(r, NULL, &sql_cancel, 2, params, on_cancel, c) < 0) {
        free(c);
        return -1;
    }
    return 0;
}



unsigned task_runner_slots(const struct task_runner *r, const char **owner, bool *draining)
{
    *owner = r->owner;
    *draining = r->draining;
    return (unsigned)r->concurrency;
}

