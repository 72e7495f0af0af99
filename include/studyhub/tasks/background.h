/* background: every task kind and every scheduled job, in one table
 * (src/tasks/background.c).  A module exports its kind (struct task_kind,
 * queue/task.h) or its job (struct sched_job, queue/sched.h); adding one
 * is one line in that table, with a job's default time. */
#ifndef STUDYHUB_TASKS_BACKGROUND_H
#define STUDYHUB_TASKS_BACKGROUND_H

#include <stdbool.h>

struct app;
struct sched_job;
struct task_kind;

/* One line of the table: a kind, or a job and its default time. */
struct background {
    const struct task_kind *kind;   /* a task kind, or NULL */
    const struct sched_job *job;    /* a scheduled job, or NULL */
    const char *at;                 /* the job's default time: HH:MM or "off" */
    bool debug;                     /* DEBUG_ROUTES=1 only (the tests') */
};

/* The table and its length. */
extern const struct background background_table[];
extern const int background_count;

/* Registers the table's kinds with app->tasks and its jobs with
 * app->sched (each skipped when NULL), those marked debug only with
 * DEBUG_ROUTES=1.  Before task_runner_start and sched_start.  0 or -1
 * (the failure is logged). */
int background_register(struct app *app);

#endif
