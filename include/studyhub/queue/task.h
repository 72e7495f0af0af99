/* task: long work as resumable state machines over a durable PostgreSQL
 * queue (table tasks, sql/010_tasks.sql).
 *
 * THE MODEL
 * A task kind is a state machine: an enum of states with a names table, and
 * one step function that switches on the current state, starts that
 * state's work (a query, a transfer, a child) and returns.  The callback of
 * that work stores its result in the kind's data and calls one of
 *   task_set_state(t, NEXT, TASK_STAGE_OK)   the stage ended; go to NEXT
 *   task_finish(t, outcome, result, fmt...)  the task is over
 *   task_retry(t, fmt...)                    this attempt failed; queue it
 *                                            again later (the stage is kept)
 * Every state change is saved (tasks.stage plus a task_stages row with
 * start, end, outcome and the stage's log) BEFORE the next state's step
 * runs, so a server that dies leaves the row naming the stage it was in.
 *
 * THE QUEUE
 * Rows are claimed with FOR UPDATE SKIP LOCKED by any server that knows the
 * kind, up to TASK_CONCURRENCY at once per process; a trigger NOTIFYs
 * channel 'tasks' on insert and a dedicated LISTEN connection wakes the
 * runner (plus a TASK_POLL_S poll as a safety net).  A running task holds
 * a lease (lease_owner, lease_until) renewed every lease/3; a server that
 * cannot renew in time stops the task locally.  A row left 'running' with
 * an expired lease (or by a dead process on this same host, at start) is
 * claimed again and RESUMED: its open stage row is closed 'interrupted',
 * then the kind's resume hook (or resume policy) picks the state to go on
 * from, or fails it.  Each claim counts as an attempt.
 *
 * DEFINING A KIND (see src/tasks/test_sleep.c for a complete one)
 *   enum build_state { BUILD_RESOLVE, BUILD_DOWNLOAD, ..., BUILD_FINISH };
 *   static const char *const build_state_names[] = { "resolve_sha", ... };
 *   static int build_open(struct task *t, char *err, size_t n)
 *       { parse t->payload, t->data = calloc(...); return 0; }
 *   static void build_step(struct task *t)
 *   {   struct build *b = t->data;
 *       switch ((enum build_state)t->state) {
 *       case BUILD_DOWNLOAD: start the download with b as its arg; return;
 *       ... } }
 *   static void on_download_done(..., void *arg)
 *   {   struct build *b = arg;  if (failed) { task_log(b->t, ...);
 *           task_set_state(b->t, BUILD_FINISH, TASK_STAGE_FAILED); return; }
 *       task_set_state(b->t, BUILD_EXTRACT, TASK_STAGE_OK); }
 *   const struct task_kind build_kind = {
 *       .name = "build_experiment", .states = build_state_names,
 *       .nstates = 7, .initial_state = BUILD_RESOLVE, .lease_s = 0,
 *       .max_attempts = 1, .resume_policy = TASK_RESUME_CONTINUE,
 *       .open = build_open, .step = build_step, .resume = build_resume,
 *       .cancel = build_cancel, .close = build_close };
 * and one line in tasks/background.c's table (&build_kind), which
 * task_register's every kind before task_runner_start.
 * A kind whose terminal work (study log, emails, restoring the study's
 * state) must happen whatever the outcome models it as states of its own
 * and reaches them from resume (resumed after a crash) and cancel too.
 *
 * ASYNC CALLS FROM A KIND
 * A task can be stopped under a kind's feet (lease lost, shutdown): then
 * close is called and the task struct is freed once nothing holds it.  Use
 * task_pg_exec (its callback is skipped once the task is closed), or
 * task_hold/task_release around other callbacks that carry the task, and
 * test task_live() in them.  proc children: proc_abandon in close. */
#ifndef STUDYHUB_QUEUE_TASK_H
#define STUDYHUB_QUEUE_TASK_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;
struct pg_pool;
struct pg_stmt;
struct task_runner;

/* How a task ended (tasks.state). */
enum task_outcome { TASK_SUCCEEDED, TASK_FAILED, TASK_CANCELLED };

/* How a finished task is reported (tasks.outcome, /metrics, studyhubctl):
 * a success after task_problem is "succeeded_with_problems": it did its
 * work, and a person should look at what tasks.problems says. */
enum task_outcome_kind {
    TASK_OUTCOME_SUCCEEDED, TASK_OUTCOME_PROBLEMS, TASK_OUTCOME_FAILED,
    TASK_OUTCOME_CANCELLED, TASK_OUTCOMES
};
const char *task_outcome_kind_name(enum task_outcome_kind o);
/* Bytes of tasks.problems kept. */
#define TASK_PROBLEMS_MAX 16384

/* How a stage ended (task_stages.outcome), given when leaving it. */
enum task_stage_outcome {
    TASK_STAGE_OK,       /* "succeeded" */
    TASK_STAGE_FAILED,   /* "failed": the task goes on to handle it */
    TASK_STAGE_SKIPPED,  /* "skipped": nothing to do (e.g. reused) */
};

/* What happens to a task whose server died while it ran, for kinds
 * without a resume hook. */
enum task_resume {
    TASK_RESUME_CONTINUE,  /* run the interrupted state again */
    TASK_RESUME_FAIL,      /* fail it: "interrupted in stage X" */
};

struct task;

struct task_kind {
    const char *name;            /* tasks.kind: [a-z0-9_]+, unique */
    const char *const *states;   /* names table: states[i] names state i;
                                    stored in tasks.stage */
    int nstates;                 /* entries of states */
    int initial_state;           /* where a new task starts */
    int lease_s;                 /* 0: TASK_LEASE_S */
    int max_attempts;            /* claims before giving up; 0: 1.  The row's
                                    max_attempts overrides it when set */
    int retry_delay_s;           /* task_retry: first delay, doubled per
                                    attempt (max 1 h); 0: 30 */
    enum task_resume resume_policy; /* used when resume is NULL */

    /* Called once when this process starts running the task (fresh,
     * retried, handed over or resumed), before any other hook: parse
     * t->payload, allocate t->data.  Return 0, or -1 with a message: the
     * task fails at once (no retry) and close is not called. */
    int (*open)(struct task *t, char *err, size_t errlen);
    /* Optional, as curl's per-state setup: called once each time the task
     * enters a state (after the change was saved; at a claim, for the state
     * it starts or goes on in; again for task_set_state to the same
     * state), before step, never after task_wake.  Reset what the state
     * counts, set up what it needs.  It may end the stage itself
     * (task_set_state, task_retry, task_finish): step is then not called. */
    void (*enter)(struct task *t, int state);
    /* The state machine: start the work of t->state.  Called from the loop
     * after the state was saved (and entered), and after task_wake. */
    void (*step)(struct task *t);
    /* Optional.  The task's previous server died in interrupted_state (its
     * stage row is already closed 'interrupted').  Return the state to go
     * on in, or -1 to fail it.  t->attempts > t->max_attempts means the
     * retries are used up: steer to the kind's failure handling. */
    int (*resume)(struct task *t, int interrupted_state);
    /* Optional.  Someone asked to cancel it: kill children, abort
     * transfers now; then finish with TASK_CANCELLED (through cleanup
     * states if needed).  Called once, from the loop.  Without it the
     * runner finishes the task as cancelled at its next state change. */
    void (*cancel)(struct task *t);
    /* Frees t->data and stops everything the task still has running
     * (proc_abandon, ...).  Called once for every task whose open
     * succeeded: after it finished, or when it is stopped here (lost
     * lease, shutdown) and left for another server to resume. */
    void (*close)(struct task *t);
};

/* What a kind sees.  Fields are read-only except data. */
struct task {
    int64_t id;                    /* tasks.id */
    char uuid[37];                 /* tasks.uuid, the public id */
    const struct task_kind *kind;  /* borrowed: registered */
    const char *subject;           /* tasks.subject, or NULL */
    json_t *payload;               /* borrowed: tasks.payload (an object) */
    int attempts;                  /* this claim's number, from 1 */
    int max_attempts;              /* from the row or the kind */
    bool resumed;                  /* its previous server died mid-task */
    int state;                     /* the kind's state; task_set_state */
    struct app *app;               /* borrowed: pg, redis, procs, config */
    void *data;                    /* the kind's own (owned by the kind) */
};

/* ---- for kinds -------------------------------------------------------- */

/* Ends the current stage with outcome (its log is saved with it) and moves
 * to state: logs "old -> new", saves both, then calls step.  Only while
 * the task runs (not twice without a step in between). */
void task_set_state(struct task *t, int state, enum task_stage_outcome outcome);
/* The end: saves outcome, result (stolen; may be NULL) and the error
 * message (fmt NULL: none), closes the current stage as succeeded, failed
 * or cancelled to match, then calls close. */
void task_finish(struct task *t, enum task_outcome outcome, json_t *result,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* This attempt failed for a reason that may pass (network, 5xx): queue it
 * again after the kind's backoff, in the same state; the stage is closed
 * as failed with its log.  When no attempt is left it is task_finish
 * (TASK_FAILED) instead. */
void task_retry(struct task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool task_can_retry(const struct task *t);
/* Something a person should look at, though the work goes on (a video
 * missing from a zip, an object reconcile cannot place): a line of the
 * stage log, and of tasks.problems if the task then succeeds, which makes
 * its outcome "succeeded_with_problems". */
void task_problem(struct task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a line to the current stage's log (the last 32 KiB are kept),
 * and logs it at debug level. */
void task_log(struct task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a block of text (a child's output tail) under a label. */
void task_log_text(struct task *t, const char *label, const char *text,
                   size_t len);
/* Calls step again from the loop (never from inside this call). */
void task_wake(struct task *t);
bool task_cancel_requested(const struct task *t);
/* False once the task was closed: a late callback must drop its result. */
bool task_live(const struct task *t);
/* Keep t allocated across a callback that carries it; release when the
 * callback ran (it may free t: do not touch t after). */
void task_hold(struct task *t);
void task_release(struct task *t);
/* pg_exec on behalf of t: cb runs only while t is live (else dropped). */
typedef void (*task_pg_cb)(struct task *t, PGresult *res);
int task_pg_exec(struct task *t, const struct pg_stmt *stmt, int nparams,
                 const char *const *params, task_pg_cb cb);
/* Names for logs. */
const char *task_state_name(const struct task *t, int state);

/* ---- cancel (enqueue and look-up: queue/task_queue.h) ----------------- */

enum task_cancel_status {
    TASK_CANCEL_UNAVAILABLE = -1,  /* database unreachable or error */
    TASK_CANCEL_NOT_FOUND = 0,
    TASK_CANCEL_ALREADY_DONE,      /* it had finished */
    TASK_CANCEL_CANCELLED,         /* it was queued: now cancelled */
    TASK_CANCEL_REQUESTED,         /* it runs: its server stops it */
};
typedef void (*task_cancel_cb)(enum task_cancel_status st, void *arg);
/* ref: the numeric id or the uuid.  A running task is told through
 * NOTIFY task_cancel (at once when it runs in this process).  Returns 0 or
 * -1 (bad ref; cb not called). */
int task_cancel(struct task_runner *r, const char *ref, task_cancel_cb cb,
                void *arg);

/* ---- the runner ------------------------------------------------------- */

/* Reads TASK_CONCURRENCY, TASK_LEASE_S and TASK_POLL_S from app->cfg and
 * runs its queries on app->pg. */
struct task_runner *task_runner_new(struct app *app);
/* Before task_runner_start.  Returns 0 or -1 (bad or duplicate kind). */
int task_register(struct task_runner *r, const struct task_kind *kind);
/* Opens the LISTEN connection, takes back tasks left running by a dead
 * process of this host, and starts claiming.  TASK_CONCURRENCY=0: runs
 * nothing (a web-only server); enqueue and cancel still work. */
int task_runner_start(struct task_runner *r);
/* SIGTERM: claim nothing more; each running task is handed back to the
 * queue at its next state change (another server, or this one after a
 * restart, goes on from there).  */
void task_runner_drain(struct task_runner *r);
/* Tasks this process holds (drained when 0). */
unsigned task_runner_busy(const struct task_runner *r);
/* Tasks this server finished since start, by enum task_outcome_kind. */
void task_runner_outcomes(const struct task_runner *r, long out[TASK_OUTCOMES]);
/* Stops every task here without writing (their leases run out and
 * another server resumes them) and frees the runner once its queries
 * have come back. */
void task_runner_free(struct task_runner *r);

/* Task slots of this process (TASK_CONCURRENCY); *owner is its lease
 * owner name (valid while r lives), *draining whether it claims no more.
 * task_runner_busy gives how many are taken. */
unsigned task_runner_slots(const struct task_runner *r, const char **owner,
                           bool *draining);

#endif
