/* sched: jobs that run daily at a wall-clock time in one IANA time zone
 * (SCHED_TIME_ZONE, e.g. 02:00 America/New_York), like Celery beat.
 *
 * - Only one server runs a given run: a Redis lock per job (SET NX PX,
 *   renewed while the job runs, released with a compare-and-delete script)
 *   keeps two runs of a job from overlapping, and the row of job_runs,
 *   unique on (job, scheduled_for), makes each scheduled slot run once
 *   however many servers see it come due (and still does while Redis is
 *   down).
 * - A slot missed while no server ran (its time passed after the job's
 *   last recorded slot) runs once at start, reason 'catch-up'; however many
 *   were missed.  The first time a database sees a job, a 'baseline' row
 *   is written instead: nothing was missed yet.
 * - Every run's outcome and detail stay in job_runs; a run whose server
 *   died is marked 'abandoned' once its lease (renewed while it runs) is
 *   over.
 *
 * Time zone: sched_new sets TZ for the whole process (setenv + tzset) and
 * computes with localtime_r/mktime; the server has one schedule zone and
 * logs in UTC, so nothing else depends on TZ.  A wall time that does not
 * exist on a day (spring forward: 02:30 in New York on the second Sunday
 * of March) runs at the first instant after the gap (03:00 EDT); a wall
 * time that happens twice (fall back: 01:30) runs at the first one only.
 *
 * DEFINING A JOB
 * A job is a state machine, as a task kind is (queue/task.h): an enum of
 * states with a names table and one step function that starts the work of
 * the run's current state and returns.  The work's callback stores its
 * result in the run's data and calls sched_set_state (step again, from
 * the loop, in that state) or sched_done (the run is over).
 *   enum sweep_state { SWEEP_LIST, SWEEP_REMOVE };
 *   static const char *const sweep_names[] = { "list", "remove" };
 *   static int sweep_open(struct sched_run *run, char *err, size_t n)
 *       { sched_run_set_data(run, calloc(...)); return 0; }
 *   static void sweep_step(struct sched_run *run)
 *   {   switch (sched_run_state(run)) { case SWEEP_LIST: start it; ... } }
 *   static void on_listed(..., void *arg)
 *   {   ... sched_set_state(run, SWEEP_REMOVE);  or
 *       sched_done(run, SCHED_SUCCEEDED, "removed %d folders", n); }
 *   const struct sched_job cleanup_checkouts_job = {
 *       .name = "cleanup_checkouts", .states = sweep_names, .nstates = 2,
 *       .open = sweep_open, .step = sweep_step, .close = sweep_close };
 * and one line in tasks/background.c's table: the job and its time.
 * sched_done must be called exactly once per run; close (which frees the
 * data) runs after it, from the loop.  SCHED_JOBS=cleanup_checkouts=04:15,
 * reconcile_videos=off overrides times ("off": only `studyhubctl run JOB`).
 * The state of a run in progress shows in `studyhubctl jobs`. */
#ifndef STUDYHUB_QUEUE_SCHED_H
#define STUDYHUB_QUEUE_SCHED_H

#include <libpq-fe.h>

#include "studyhub/queue/schedule.h"
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct app;

struct sched;
struct sched_run;

/* How a run ended: it did its work; it did it, but a person should look
 * (the detail says what); or it failed. */
enum sched_outcome { SCHED_SUCCEEDED, SCHED_FAILED, SCHED_PROBLEMS };
#define SCHED_OUTCOMES 3
/* "succeeded", "failed", "succeeded_with_problems" (job_runs.outcome). */
const char *sched_outcome_name(enum sched_outcome o);

/* A scheduled job: its name and its state machine (see above). */
struct sched_job {
    const char *name;            /* job_runs.job: [a-z0-9_]+, unique */
    const char *const *states;   /* names table: states[i] names state i */
    int nstates;                 /* entries of states */
    int initial_state;           /* where a run starts */
    const void *arg;             /* the job's own constants (sched_run_arg) */
    /* Optional.  Called once when a run starts working (after its lock and
     * its job_runs row): allocate the data (sched_run_set_data).  -1 with a
     * message: the run fails with it, and close is not called. */
    int (*open)(struct sched_run *run, char *err, size_t errlen);
    /* The state machine: start the work of sched_run_state(run). */
    void (*step)(struct sched_run *run);
    /* Optional.  Frees the data; called once after sched_done, from the
     * loop, for every run whose open succeeded. */
    void (*close)(struct sched_run *run);
};

/* Sets TZ to SCHED_TIME_ZONE (an error if the zone is unknown) and reads
 * SCHED_JOBS.  NULL with a message on error. */
struct sched *sched_new(struct app *app, char *err, size_t errlen);
/* Before sched_start; `at` as sched_parse_at, overridden by SCHED_JOBS.
 * job is borrowed (static).  0 or -1 (bad or duplicate name, bad time). */
int sched_add(struct sched *s, const struct sched_job *job, const char *at);
/* Marks abandoned runs, runs missed slots once, arms the timers. */
int sched_start(struct sched *s);
/* SIGTERM: start no more runs. */
void sched_drain(struct sched *s);
/* Runs in progress in this process. */
unsigned sched_busy(const struct sched *s);
/* Runs this server ended since start, by enum sched_outcome. */
void sched_outcomes(const struct sched *s, long out[SCHED_OUTCOMES]);
/* A run still in progress is left to finish on its own (its sched_done
 * then only frees it).  A job still waiting on a timer or a child when
 * the drain timeout ends the loop is leaked at exit (its row is marked
 * abandoned by the next start). */
void sched_free(struct sched *s);

/* ---- for the admin commands (admin/sched_commands.c) ------------------- */

/* One job as `studyhubctl jobs` lists it; strings borrowed from s. */
struct sched_job_view {
    const char *name;
    const char *at;          /* HH:MM as set, or "off" */
    time_t next;             /* next slot; -1 off */
    bool running_here;
    bool pending;            /* a due slot not started yet */
    const char *state;       /* running here: the run's state (the job's,
                                or the scheduler's: lock, record, save...) */
};
const char *sched_zone(const struct sched *s);
int sched_job_count(const struct sched *s);
void sched_job_view(const struct sched *s, int i, struct sched_job_view *out);

/* The last three runs of every job, one row each: job, id, reason, outcome,
 * scheduled_for and started (epoch seconds), took_s, detail, instance.  fn
 * gets s, or NULL when the scheduler stopped meanwhile, and res, or NULL
 * when the database is away.  The scheduler lives until fn returns. */
typedef void (*sched_recent_fn)(struct sched *s, PGresult *res, void *arg);
void sched_recent_runs(struct sched *s, sched_recent_fn fn, void *arg);

/* Called once when a manual run is over: text is its report ("job NAME:
 * succeeded in 0.12 s (run 7)" and the job's detail lines, each "  | "),
 * error NULL when it succeeded, else why not. */
typedef void (*sched_waiter_fn)(const char *text, const char *error, void *arg);
/* Runs job now ("manual"), also when its slot is not due; asked just after
 * start, it waits for the boot.  fn is called once, maybe at once. */
void sched_run_now(struct sched *s, const char *job, sched_waiter_fn fn, void *arg);

/* ---- for jobs ---------------------------------------------------------- */
struct app *sched_run_app(const struct sched_run *run);
const char *sched_run_job(const struct sched_run *run);
time_t sched_run_scheduled_for(const struct sched_run *run);
/* The job's arg (struct sched_job). */
const void *sched_run_arg(const struct sched_run *run);
/* The run's data, owned by the job (open sets it, close frees it). */
void *sched_run_data(const struct sched_run *run);
void sched_run_set_data(struct sched_run *run, void *data);
/* The job's state the run is in. */
int sched_run_state(const struct sched_run *run);
/* The run goes to state (the same one: again): logs "old -> new" and calls
 * step from the loop, never from inside this call.  Only while it works. */
void sched_set_state(struct sched_run *run, int state);

/* A job that is one statement answering one row, a count of what it
 * deleted: "deleted N NOUN(s) REST", or failed with the database's
 * error.  Its one state is "delete". */
struct pg_stmt;
struct sched_count {
    const struct pg_stmt *stmt;
    int nparams;
    const char *params[2];       /* static strings */
    const char *noun, *rest;     /* static; rest may be NULL */
};
extern const char *const sched_count_states[];
void sched_count_step(struct sched_run *run);
#define SCHED_COUNT_JOB(NAME, COUNT) \
    { .name = (NAME), .states = sched_count_states, .nstates = 1, \
      .arg = (COUNT), .step = sched_count_step }

/* The scheduler's own job: deletes job_runs rows older than 90 days. */
extern const struct sched_job sched_cleanup_job_runs_job;

/* Appends a line to the run's detail (the last 16 KiB are kept). */
void sched_run_log(struct sched_run *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The end of a run: outcome and a one-line summary (NULL: none), saved
 * with the detail lines before it.  Call it exactly once, from any
 * callback; run must not be used after it (it is freed once saved). */
void sched_done(struct sched_run *run, enum sched_outcome outcome,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
