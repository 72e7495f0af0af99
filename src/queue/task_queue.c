/* task_queue: the durable queue seen from outside the runner: put a task
 * in (one active task per kind and subject), find the active one, read a
 * task reference, and forget finished tasks after TASK_KEEP_DAYS.  Any
 * server may call these, whether or not it runs tasks. */
#include "studyhub/queue/task_queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/log.h"
#include "studyhub/io/pg.h"
#include "studyhub/queue/sched.h"

#define TASK_KEEP_DAYS "90"              /* task_cleanup_job */

static const struct pg_stmt sql_enqueue = {
    "task_enqueue",
    "WITH ins AS (" TASK_INSERT_SQL "VALUES ($1, $2, COALESCE($3::jsonb, '{}'))"
    "   ON CONFLICT (kind, subject)"
    "     WHERE subject IS NOT NULL AND state IN ('queued', 'running')"
    "   DO NOTHING RETURNING id, uuid)"
    " SELECT id, uuid, true FROM ins"
    " UNION ALL"
    " SELECT id, uuid, false FROM tasks"
    "  WHERE kind = $1 AND subject = $2 AND state IN ('queued', 'running')"
    "    AND NOT EXISTS (SELECT 1 FROM ins)",
};

static const struct pg_stmt sql_find_active = {
    "task_find_active",
    "SELECT id, uuid, false FROM tasks"
    " WHERE kind = $1 AND subject = $2 AND state IN ('queued', 'running')",
};

static const struct pg_stmt sql_enqueue_test = {
    "task_enqueue_test",
    TASK_INSERT_SQL "SELECT 'test_sleep', $2, $1::jsonb FROM generate_series(1, $3::int)"
    " RETURNING id, uuid",
};

static const struct pg_stmt sql_cleanup = {
    "task_cleanup",
    "WITH d AS (DELETE FROM tasks WHERE finished_at < now() - $1::int * interval '1 day'"
    "           RETURNING 1) SELECT count(*) FROM d",
};

struct enqueue_ctx {
    task_enqueue_cb cb;   /* borrowed, may be NULL */
    void *arg;            /* borrowed */
};

static void on_enqueue(PGresult *res, void *arg)
{
    struct enqueue_ctx *c = arg;
    enum task_enqueue_status st = TASK_ENQUEUE_UNAVAILABLE;
    int64_t id = 0;
    const char *uuid = "";

    if (res && pg_ok(res)) {
        if (PQntuples(res) > 0) {
            id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            uuid = PQgetvalue(res, 0, 1);
            st = PQgetvalue(res, 0, 2)[0] == 't' ? TASK_ENQUEUE_CREATED
                                                 : TASK_ENQUEUE_EXISTS;
        } else {
            st = TASK_ENQUEUE_EXISTS;   /* it finished between two looks */
        }
    } else if (res) {
        log_error("tasks: enqueue failed: %s", PQresultErrorMessage(res));
    }
    if (c->cb)
        c->cb(st, id, uuid, c->arg);
    free(c);
}

int task_enqueue(struct pg_pool *pool, const char *kind, const char *subject,
                 json_t *payload, task_enqueue_cb cb, void *arg)
{
    struct enqueue_ctx *c;
    char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    const char *params[3] = { kind, subject, text };
    int rc = -1;

    if (!pool || !kind || (payload && !text))
        goto out;
    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->cb = cb;
    c->arg = arg;
    if (pg_exec(pool, &sql_enqueue, 3, params, on_enqueue, c) < 0) {
        free(c);
        goto out;
    }
    rc = 0;
out:
    free(text);
    return rc;
}

static void on_find_active(PGresult *res, void *arg)
{
    struct enqueue_ctx *c = arg;

    if (res && pg_ok(res) && PQntuples(res) > 0)
        c->cb(TASK_ENQUEUE_EXISTS, strtoll(PQgetvalue(res, 0, 0), NULL, 10),
              PQgetvalue(res, 0, 1), c->arg);
    else if (res && pg_ok(res))
        c->cb(TASK_ENQUEUE_CREATED, 0, "", c->arg);
    else
        c->cb(TASK_ENQUEUE_UNAVAILABLE, 0, "", c->arg);
    free(c);
}

int task_find_active(struct pg_pool *pool, const char *kind,
                     const char *subject, task_enqueue_cb cb, void *arg)
{
    const char *params[2] = { kind, subject };
    struct enqueue_ctx *c;

    if (!pool || !kind || !subject || !cb)
        return -1;
    c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->cb = cb;
    c->arg = arg;
    if (pg_exec(pool, &sql_find_active, 2, params, on_find_active, c) < 0) {
        free(c);
        return -1;
    }
    return 0;
}

int task_parse_ref(const char *ref, char *id, size_t idlen, char *uuid,
                     size_t uuidlen)
{
    size_t n = strlen(ref);
    bool digits = n > 0 && n < 19;

    id[0] = uuid[0] = '\0';
    for (size_t i = 0; digits && i < n; i++)
        digits = ref[i] >= '0' && ref[i] <= '9';
    if (digits) {
        snprintf(id, idlen, "%s", ref);
        return 0;
    }
    if (n != 36)
        return -1;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = ref[i];

        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                                (c >= 'A' && c <= 'F')))
            return -1;
    }
    snprintf(uuid, uuidlen, "%s", ref);
    return 0;
}

static const struct sched_count cleanup_count = {
    .stmt = &sql_cleanup, .nparams = 1, .params = { TASK_KEEP_DAYS },
    .noun = "finished task", .rest = "older than " TASK_KEEP_DAYS " days",
};

const struct sched_job task_cleanup_job = SCHED_COUNT_JOB("cleanup_tasks", &cleanup_count);

int task_enqueue_test(struct pg_pool *pg, const char *payload, const char *subject,
                      const char *count, void (*cb)(PGresult *res, void *arg),
                      void *arg)
{
    const char *params[3] = { payload, subject, count };

    return pg_exec(pg, &sql_enqueue_test, 3, params, cb, arg);
}
