/* adminview: what `studyhubctl jobs` and `studyhubctl tasks` show, for
 * the admin pages (issue 16, point 5), read-only:
 *
 *   GET /api/v1/admin/jobs/    the scheduled jobs of this server: time,
 *                              zone, next run, and their last three runs
 *                              (outcome, reason, duration, last detail line)
 *   GET /api/v1/admin/tasks/?state=active|finished|all (default active)
 *                              the task queue: queued and running tasks,
 *                              oldest first, or the finished ones, the
 *                              last to finish first; paginated
 *
 * Both site_admin policy (two-factor verified).  Neither shows a task's
 * payload or result (user ids, storage keys): kind, subject, state, stage,
 * attempts, times and the last error, as the commands do. */
#ifndef STUDYHUB_DOMAIN_ADMINVIEW_H
#define STUDYHUB_DOMAIN_ADMINVIEW_H

struct router;

/* The task list's filters (?state=). */
enum adminview_filter { ADMINVIEW_ACTIVE, ADMINVIEW_FINISHED, ADMINVIEW_ALL };

/* ?state= as a filter: NULL or "" is ADMINVIEW_ACTIVE; 0, or -1 for an
 * unknown value. */
int adminview_parse_filter(const char *s, enum adminview_filter *out);

/* Adds the module's route table; 0, or -1 when the router refused one. */
int adminview_routes(struct router *r);

#endif
