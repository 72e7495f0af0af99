/* task_queue: the durable queue (table tasks) from outside the runner.
 * Any server may enqueue, look up and clean, whether or not it runs
 * tasks (TASK_CONCURRENCY=0); queue/task.h is the runner and the kinds.
 *
 * ENQUEUEING IN THE SAME STATEMENT AS A CHANGE
 * The pool runs one statement per call, so "the same transaction" is one
 * statement with data-modifying CTEs.  Insert into tasks (kind, subject,
 * payload) with TASK_INSERT_SQL; if another queued or running task has the
 * same (kind, subject), the whole statement fails with SQLSTATE 23505 on
 * constraint TASK_ACTIVE_INDEX and nothing of it happened: answer 409 with
 * the id from task_find_active().  Example:
 *   static const struct pg_stmt start_build = { "study_start_build",
 *       "WITH s AS (UPDATE studies SET state = 'building'"
 *       "           WHERE uuid = $1 AND state = 'approved' RETURNING uuid),"
 *       " t AS (" TASK_INSERT_SQL
 *       "       SELECT 'build_experiment', s.uuid::text, $2::jsonb FROM s"
 *       "       RETURNING id, uuid)"
 *       " SELECT t.id, t.uuid FROM t" };
 * No row back: the UPDATE matched nothing (wrong state).  The trigger on
 * tasks wakes every runner when the statement commits.
 */
#ifndef STUDYHUB_QUEUE_TASK_QUEUE_H
#define STUDYHUB_QUEUE_TASK_QUEUE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

struct pg_pool;

/* The columns an enqueueing INSERT gives; follow with VALUES or SELECT of
 * (kind text, subject text or NULL, payload jsonb). */
#define TASK_INSERT_SQL "INSERT INTO tasks (kind, subject, payload) "
/* The unique index behind "one active task per (kind, subject)". */
#define TASK_ACTIVE_INDEX "tasks_one_active"

enum task_enqueue_status {
    TASK_ENQUEUE_UNAVAILABLE = -1, /* database unreachable or error */
    TASK_ENQUEUE_CREATED = 0,      /* id, uuid: the new task */
    TASK_ENQUEUE_EXISTS = 1,       /* an active task with the same kind and
                                      subject: id, uuid are that one's (0,
                                      "" if it finished meanwhile) */
};
typedef void (*task_enqueue_cb)(enum task_enqueue_status st, int64_t id,
                                const char *uuid, void *arg);
/* Queues a task (subject NULL: no exclusivity; payload borrowed, NULL:
 * {}).  cb may be NULL.  Returns 0, or -1 if it could not be queued (then
 * cb is not called). */
int task_enqueue(struct pg_pool *pool, const char *kind, const char *subject,
                 json_t *payload, task_enqueue_cb cb, void *arg);
/* The queued or running task of (kind, subject): EXISTS with its ids, or
 * CREATED with id 0 when there is none (read it as "not found"). */
int task_find_active(struct pg_pool *pool, const char *kind,
                     const char *subject, task_enqueue_cb cb, void *arg);

/* An id ("123") or a uuid into id (or "") and uuid (or ""), the two
 * parameters of the task lookups; -1 when ref is neither. */
int task_parse_ref(const char *ref, char *id, size_t idlen, char *uuid,
                   size_t uuidlen);

/* Queues count (text, 1..1000) test_sleep tasks with the JSON payload and
 * an optional subject; cb gets rows (id, uuid).  For the tests' admin
 * command only: the kind exists only with DEBUG_ROUTES=1. */
int task_enqueue_test(struct pg_pool *pg, const char *payload, const char *subject,
                      const char *count, void (*cb)(PGresult *res, void *arg),
                      void *arg);

/* Scheduled job cleanup_tasks (a count job, queue/sched.h): deletes
 * finished tasks older than 90 days. */
struct sched_job;
extern const struct sched_job task_cleanup_job;

#endif
