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
 *   static void cleanup_checkouts(struct sched_run *run, void *arg)
 *   {   struct app *app = sched_run_app(run);
 *       ... start async work with run as the callback argument ...
 *       later: sched_done(run, SCHED_SUCCEEDED, "removed %d folders", n); }
 *   sched_add(app->sched, "cleanup_checkouts", "04:00", cleanup_checkouts, NULL);
 * sched_done must be called exactly once per run; run is freed inside it.
 * SCHED_JOBS=cleanup_checkouts=04:15,reconcile_videos=off overrides times
 * ("off": only `studyhubctl run JOB`). */
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

typedef void (*sched_job_fn)(struct sched_run *run, void *arg);

/* Sets TZ to SCHED_TIME_ZONE (an error if the zone is unknown), reads
 * SCHED_JOBS and registers the built-in job cleanup_job_runs (and
 * test_sleep when DEBUG_ROUTES=1).  NULL with a message on error. */
struct sched *sched_new(struct app *app, char *err, size_t errlen);
/* Before sched_start; `at` as sched_parse_at, overridden by SCHED_JOBS.
 * name is copied.  0 or -1. */
int sched_add(struct sched *s, const char *name, const char *at,
              sched_job_fn fn, void *arg);
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
/* A job that is one statement answering one row, a count of what it
 * deleted: runs it and ends the run, "deleted N NOUN(s) REST" or failed
 * with the database's error.  noun and rest are static strings. */
struct pg_stmt;
void sched_run_count(struct sched_run *run, const struct pg_stmt *stmt, int nparams,
                     const char *const *params, const char *noun, const char *rest);
/* Appends a line to the run's detail (the last 16 KiB are kept). */
void sched_run_log(struct sched_run *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The end of a run: outcome and a one-line summary (NULL: none), saved
 * with the detail lines before it.  Call it exactly once, from any
 * callback; run must not be used after it (it is freed once saved). */
void sched_done(struct sched_run *run, enum sched_outcome outcome,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
