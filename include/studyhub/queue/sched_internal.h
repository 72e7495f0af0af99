/* sched_internal: what queue/sched.c (the jobs, their timers, the boot
 * and the admin view) and queue/sched_run.c (a run's life: its lock, its
 * job_runs row, the job's steps, its outcome) share; nobody else may
 * include it.  The public API is queue/sched.h. */
#ifndef STUDYHUB_QUEUE_SCHED_INTERNAL_H
#define STUDYHUB_QUEUE_SCHED_INTERNAL_H

#include <event2/util.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "studyhub/io/pg.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/schedule.h"

#define SCHED_MAX_JOBS 64
#define SCHED_MAX_PENDING_RUNS 8     /* `run JOB` waiting for the boot */

enum sched_boot {
    BOOT_NAMESPACE,   /* reading the lock namespace */
    BOOT_ABANDONED,   /* marking runs of dead servers */
    BOOT_LAST_SLOTS,  /* finding missed slots */
    BOOT_DONE,
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

/* sched.c, for the runs. */

/* Starts job's due slot (job->pending_slot) unless it runs, or the
 * scheduler stops or has not booted. */
void sched_job_try(struct sched_entry *job);
/* (Re)arms a timer ms from now (0 if negative). */
void sched_timer_arm_ms(struct event *ev, int64_t ms);

/* sched_run.c, for the scheduler. */

/* A run of job for slot (0: manual, now), started: 0, or -1 when out of
 * memory (nothing started, fn not called).  fn (may be NULL) hears how it
 * ended, once. */
int sched_run_start(struct sched_entry *job, time_t slot, const char *reason,
                    sched_waiter_fn fn, void *arg);
/* At sched_free: the run loses its scheduler and its loop events, its
 * asker hears "the server is stopping"; it finishes on its own and only
 * frees itself. */
void sched_run_orphan(struct sched_run *run);
/* What the `jobs` view shows of a run: the job's state while it works,
 * else the run's phase. */
const char *sched_run_shown_state(const struct sched_run *run);

#endif
