/* task_internal: what queue/task.c (the tasks' lives) and
 * queue/task_claim.c (how a runner takes them) share; nobody else may
 * include it.  The public API is queue/task.h. */
#ifndef STUDYHUB_QUEUE_TASK_INTERNAL_H
#define STUDYHUB_QUEUE_TASK_INTERNAL_H

#include <event2/util.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "studyhub/core/reap.h"
#include "studyhub/io/proc.h"
#include "studyhub/queue/task.h"

#define TASK_LOG_MAX (32 * 1024)         /* bytes kept of a stage's log */
#define TASK_MAX_KINDS 64

enum task_phase {
    TP_STARTING,  /* claimed; open/resume being decided */
    TP_ENTERING,  /* the save of a state change is in flight */
    TP_RUNNING,   /* the kind works on t->state */
    TP_LEAVING,   /* the save of its end (or hand-back) is in flight */
    TP_CLOSED,    /* done here; freed once nothing holds it */
};

enum leave_how {
    LEAVE_FINISH,   /* succeeded, failed or cancelled */
    LEAVE_RETRY,    /* queued again after a delay, same stage */
    LEAVE_RELEASE,  /* handed back while draining, next stage, no attempt */
};

struct task_runner;

struct task_impl {
    struct task pub;                /* what the kind sees; first member */
    TAILQ_ENTRY(task_impl) link;    /* in r->tasks, or r->closed once closed */
    struct task_runner *r;          /* borrowed: the owner */
    enum task_phase phase;          /* changed only by task_set_phase */
    char *subject;                  /* owned; pub.subject points here */
    int lease_s;                    /* this kind's lease */
    int64_t lease_deadline_ms;      /* monotonic: stop here if not renewed */
    struct event *heartbeat;        /* owned: lease renewal */
    struct event *wake;             /* owned: deferred calls into the kind */
    struct event *retry;            /* owned: re-sends a save (db down) */
    struct event *log_flush;        /* owned: saves the running stage's log */
    bool renewing;                  /* a renewal is in flight */
    bool flushing;                  /* a log save is in flight */
    bool opened;                    /* open succeeded: close is due */
    bool want_step;                 /* task_wake asked for a step */
    bool want_cancel;               /* cancel hook due */
    bool cancel_requested;          /* known here */
    bool cancel_delivered;          /* cancel hook called */
    struct reap reap;               /* held by its queries, kind callbacks
                                     * and, until closed, the runner */
    struct proc_tail log;           /* owned: the current stage's log */
    /* The save in flight (ENTERING / LEAVING), kept to re-send it. */
    int target_state;               /* ENTERING: the new state; RELEASE: next */
    const char *close_outcome;      /* static: outcome of the stage left */
    char *close_log;                /* owned: log of the stage left */
    enum leave_how leave;           /* LEAVING: how */
    const char *final_state;        /* static: LEAVING: tasks.state to set */
    char *result_text;              /* owned: LEAVING: result JSON or NULL */
    char *error;                    /* owned: LEAVING: error or NULL */
    char *problems;                 /* owned: task_problem's lines, or NULL */
    int retry_delay_s;              /* LEAVE_RETRY: seconds */
};

TAILQ_HEAD(task_list, task_impl);

struct task_runner {
    struct app *app;                /* borrowed */
    struct event_base *base;        /* borrowed */
    struct pg_pool *pool;           /* borrowed: app->pg */
    char owner[192];                /* our lease_owner: host/pidns/pid/token */
    char owner_prefix[160];         /* host/pidns/: this host's processes */
    const struct task_kind *kinds[TASK_MAX_KINDS]; /* borrowed, static */
    int nkinds;                     /* entries of kinds */
    char *kinds_param;              /* owned: "{a,b}" for the claim */
    char *leases_param;             /* owned: "{60,600}" */
    int concurrency;                /* TASK_CONCURRENCY */
    int lease_s;                    /* TASK_LEASE_S */
    int poll_s;                     /* TASK_POLL_S */
    struct task_list tasks;         /* owned: not closed */
    unsigned ntasks;                /* entries of tasks */
    struct task_list closed;        /* owned: closed, waiting to be freed */
    struct event *wake_timer;       /* owned: next claim */
    bool started;                   /* task_runner_start ran */
    bool draining;                  /* claim nothing, hand tasks back */
    bool dying;                     /* task_runner_free ran */
    bool claiming;                  /* a claim is in flight */
    bool claim_again;               /* woken while claiming */
    int64_t claim_sent_ms;          /* monotonic, for the lease deadline */
    struct reap reap;               /* held by each query out and each task */
    bool listening;                 /* pg_pool_listen registered */
    long finished[TASK_OUTCOMES];   /* tasks ended here, by outcome */
};

/* The callback of task_runner_exec: ti is the task it was sent for (held
 * until fn returns), or NULL. */
typedef void (*rq_fn)(struct task_runner *r, struct task_impl *ti,
                      PGresult *res, void *arg);

/* task.c, for the claim. */

/* pg_exec that keeps r (and ti, if given) alive until fn has run. */
int task_runner_exec(struct task_runner *r, struct task_impl *ti,
                     const struct pg_stmt *stmt, int n,
                     const char *const *params, rq_fn fn, void *arg);
/* The registered kind of that name, or NULL. */
const struct task_kind *task_runner_kind(const struct task_runner *r,
                                         const char *name);
/* Row `row` of the claim's result as a task of r (phase starting), or
 * NULL when out of memory. */
struct task_impl *task_new(struct task_runner *r, const struct task_kind *k,
                           PGresult *res, int row);
/* A claimed task starts: opened, resumed or failed, then its first state
 * entered.  old_state and old_owner: the row's before the claim. */
void task_begin(struct task_impl *ti, const char *stage, const char *old_state,
                const char *old_owner, bool cancel);
/* A cancel asked of a task of ours: its kind hears it at its next step. */
void task_note_cancel(struct task_impl *ti);

/* task_claim.c, for the runner. */

/* Claims due rows into the free slots now (or after the claim in flight). */
void task_claim_kick(struct task_runner *r);
/* At start: LISTEN, take back the rows of dead local processes, claim. */
void task_claim_start(struct task_runner *r);
/* At free: UNLISTEN (the callbacks must not outlive r). */
void task_claim_stop(struct task_runner *r);
/* r->wake_timer's callback (arg: r). */
void task_claim_on_wake_timer(evutil_socket_t fd, short what, void *arg);

#endif
