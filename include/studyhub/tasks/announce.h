/* announce: the family-facing and researcher-facing notices of issue 15
 * point 4.
 *
 * - The scheduled job announce_new_studies (daily at 10:00 as upstream;
 *   SCHED_JOBS can move it; `studyhubctl run announce_new_studies`): one
 *   email per family that asked for new studies, listing the active public
 *   studies one of its children may take part in and that it was not told
 *   of yet (sql/096_announce_criteria.sql, announce_new_studies).  A
 *   study's criteria expression is evaluated here, in C, by
 *   eligibility_criteria for each candidate child (an expression that
 *   cannot be read announces the study to nobody).
 * - NOTIFY_WINDOW_S is written to app_settings at start, where the outbox
 *   trigger that gathers a study's edit notifications reads it (the first
 *   of a window goes at once, the rest at its end: sql/097). */
#ifndef STUDYHUB_TASKS_ANNOUNCE_H
#define STUDYHUB_TASKS_ANNOUNCE_H

struct app;
struct sched_job;

/* The job announce_new_studies (listed in tasks/background.c). */
extern const struct sched_job announce_new_studies_job;

/* Saves NOTIFY_WINDOW_S (at start); 0 or -1. */
int announce_start(struct app *app);

#endif
