/* erase_storage: deletes an erasure's objects from storage
 * (erase_storage.h).  Within DELETE, the items of the batch are walked one
 * by one (a zips item lists and deletes pages of zips); a resumed task
 * starts again from LOAD, and the rows still there say what is left. */
#include "config.h"

#include "studyhub/tasks/erase_storage.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/queue/task.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"

enum erase_state { ERASE_LOAD, ERASE_DELETE, ERASE_FORGET, ERASE_FINISH, ERASE_NSTATES };

static const char *const erase_state_names[] = { "load", "delete", "forget", "finish" };

struct erase {
    struct task *t;           /* borrowed: the task that owns this */
    char erasure[37];         /* erasures.uuid */
    char **keys;              /* owned: the batch's keys (objects or zip prefixes) */
    bool *is_zips;            /* owned: per key, a zips prefix */
    size_t n, i;              /* batch size, the item being deleted */
    char **listed;            /* owned: a page of zips of the current prefix */
    size_t nlisted, ilisted;
    struct storage_op *op;    /* the storage call in flight, or NULL */
    long videos, zips;        /* objects deleted (or already gone) */
};

static void batch_clear(struct erase *e)
{
    for (size_t k = 0; k < e->n; k++)
        free(e->keys[k]);
    free(e->keys);
    free(e->is_zips);
    e->keys = NULL;
    e->is_zips = NULL;
    e->n = e->i = 0;
}

static void listed_clear(struct erase *e)
{
    for (size_t k = 0; k < e->nlisted; k++)
        free(e->listed[k]);
    free(e->listed);
    e->listed = NULL;
    e->nlisted = e->ilisted = 0;
}

/* ---- statements ---------------------------------------------------------- */

/* $1 erasure uuid, $2 batch size.  Videos first, then the zip prefixes. */
static const struct pg_stmt load_stmt = {
    "erase_storage_load",
    "SELECT eo.key, eo.kind = 'zips' FROM erasure_objects eo"
    "  JOIN erasures e ON e.id = eo.erasure_id WHERE e.uuid = $1::uuid"
    " ORDER BY eo.kind = 'zips', eo.key LIMIT $2::bigint",
};

/* $1 erasure uuid, $2 the keys done, as a text array. */
static const struct pg_stmt forget_stmt = {
    "erase_storage_forget",
    "DELETE FROM erasure_objects eo USING erasures e"
    " WHERE e.uuid = $1::uuid AND eo.erasure_id = e.id AND eo.key = ANY ($2::text[])",
};

static const struct pg_stmt finish_stmt = {
    "erase_storage_finish",
    "UPDATE erasures SET storage_done_at = now() WHERE uuid = $1::uuid",
};

/* ---- deleting the batch --------------------------------------------------- */

static void delete_next(struct erase *e);

/* A storage failure other than "already gone": try again later. */
static bool storage_failed(struct erase *e, const struct storage_result *res, const char *what)
{
    if (res->err == 0 || res->err == -ENOENT)
        return false;
    task_retry(e->t, "cannot %s %s: %s", what, e->keys[e->i],
               res->error ? res->error : "storage error");
    return true;
}

static void on_deleted(const struct storage_result *res, void *arg)
{
    struct erase *e = arg;

    e->op = NULL;
    if (storage_failed(e, res, "delete"))
        return;
    if (e->is_zips[e->i]) {
        e->zips++;
        e->ilisted++;
    } else {
        e->videos++;
        e->i++;
    }
    delete_next(e);
}

static void on_listed(const struct storage_result *res, void *arg)
{
    struct erase *e = arg;

    e->op = NULL;
    if (storage_failed(e, res, "list"))
        return;
    listed_clear(e);
    if (res->err == 0 && res->nobjects > 0) {
        if (!(e->listed = calloc(res->nobjects, sizeof *e->listed))) {
            task_retry(e->t, "out of memory");
            return;
        }
        for (size_t k = 0; k < res->nobjects; k++)
            if ((e->listed[e->nlisted] = strdup(res->objects[k].key)))
                e->nlisted++;
    }
    if (e->nlisted == 0)
        e->i++;             /* this prefix holds no zip any more */
    delete_next(e);
}

/* Starts the next storage call of the batch, or moves to FORGET. */
static void delete_next(struct erase *e)
{
    struct storage *st = e->t->app->storage;

    if (e->i == e->n) {
        task_log(e->t, "deleted %ld videos and %ld zips so far", e->videos, e->zips);
        task_set_state(e->t, ERASE_FORGET, TASK_STAGE_OK);
        return;
    }
    if (!st) {
        /* No storage configured: no object was ever stored. */
        e->i = e->n;
        delete_next(e);
        return;
    }
    if (!e->is_zips[e->i])
        e->op = storage_delete(st, e->keys[e->i], on_deleted, e);
    else if (e->ilisted < e->nlisted)
        e->op = storage_delete(st, e->listed[e->ilisted], on_deleted, e);
    else
        /* Always the first page: what was deleted is no longer in it. */
        e->op = storage_list(st, e->keys[e->i], NULL, 1000, on_listed, e);
    if (!e->op)
        task_retry(e->t, "out of memory");
}

/* ---- the machine ------------------------------------------------------------ */

static void on_loaded(struct task *t, PGresult *res)
{
    struct erase *e = t->data;
    int n;

    if (!res || !pg_ok(res)) {
        task_retry(t, "cannot read what is left to delete");
        return;
    }
    batch_clear(e);
    listed_clear(e);
    if ((n = PQntuples(res)) == 0) {
        task_set_state(t, ERASE_FINISH, TASK_STAGE_OK);
        return;
    }
    e->keys = calloc((size_t)n, sizeof *e->keys);
    e->is_zips = calloc((size_t)n, sizeof *e->is_zips);
    if (!e->keys || !e->is_zips) {
        task_retry(t, "out of memory");
        return;
    }
    for (int k = 0; k < n; k++) {
        if (!(e->keys[k] = strdup(PQgetvalue(res, k, 0)))) {
            task_retry(t, "out of memory");
            return;
        }
        e->is_zips[k] = PQgetvalue(res, k, 1)[0] == 't';
        e->n++;
    }
    task_set_state(t, ERASE_DELETE, TASK_STAGE_OK);
}

static void on_forgotten(struct task *t, PGresult *res)
{
    if (!res || !pg_ok(res)) {
        task_retry(t, "cannot record the deleted objects");
        return;
    }
    task_set_state(t, ERASE_LOAD, TASK_STAGE_OK);
}

static void on_finished(struct task *t, PGresult *res)
{
    struct erase *e = t->data;

    if (!res || !pg_ok(res)) {
        task_retry(t, "cannot mark the erasure done");
        return;
    }
    json_t *result = json_pack("{s:s, s:I, s:I}", "erasure", e->erasure,
                               "videos_deleted", (json_int_t)e->videos,
                               "zips_deleted", (json_int_t)e->zips);
    task_finish(t, TASK_SUCCEEDED, result, NULL);
}

char *erase_storage_text_array(char *const *keys, size_t n)
{
    size_t len = 3;
    for (size_t k = 0; k < n; k++)
        len += 2 * strlen(keys[k]) + 3;
    char *s = malloc(len), *w = s;
    if (!s)
        return NULL;
    *w++ = '{';
    for (size_t k = 0; k < n; k++) {
        if (k)
            *w++ = ',';
        *w++ = '"';
        for (const char *p = keys[k]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    strcpy(w, "}");
    return s;
}

static void erase_step(struct task *t)
{
    struct erase *e = t->data;
    char limit[16];

    switch ((enum erase_state)t->state) {
    case ERASE_LOAD: {
        snprintf(limit, sizeof limit, "%d", ERASE_STORAGE_BATCH);
        const char *params[] = { e->erasure, limit };
        if (task_pg_exec(t, &load_stmt, 2, params, on_loaded) < 0)
            task_retry(t, "out of memory");
        return;
    }
    case ERASE_DELETE:
        delete_next(e);
        return;
    case ERASE_FORGET: {
        char *arr = erase_storage_text_array(e->keys, e->n);
        if (!arr) {
            task_retry(t, "out of memory");
            return;
        }
        const char *params[] = { e->erasure, arr };
        int rc = task_pg_exec(t, &forget_stmt, 2, params, on_forgotten);
        free(arr);
        if (rc < 0)
            task_retry(t, "out of memory");
        return;
    }
    case ERASE_FINISH: {
        const char *params[] = { e->erasure };
        if (task_pg_exec(t, &finish_stmt, 1, params, on_finished) < 0)
            task_retry(t, "out of memory");
        return;
    }
    case ERASE_NSTATES:
        break;
    }
    task_finish(t, TASK_FAILED, NULL, "internal error: state %d", t->state);
}

/* The batch is walked from its first item each time DELETE is entered
 * (what a retry already deleted is "already gone"). */
static void erase_enter(struct task *t, int state)
{
    struct erase *e = t->data;

    if (state == ERASE_DELETE)
        e->i = 0;
}

static int erase_open(struct task *t, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(t->payload, "erasure"));
    struct erase *e;

    if (!id || strlen(id) != 36) {
        snprintf(err, errlen, "payload needs erasure (uuid)");
        return -1;
    }
    if (!(e = calloc(1, sizeof *e))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    e->t = t;
    snprintf(e->erasure, sizeof e->erasure, "%s", id);
    t->data = e;
    return 0;
}

/* What the dead server had in memory is gone; the rows say what is left. */
static int erase_resume(struct task *t, int interrupted_state)
{
    (void)t;
    return interrupted_state == ERASE_FINISH ? ERASE_FINISH : ERASE_LOAD;
}

static void erase_close(struct task *t)
{
    struct erase *e = t->data;

    if (!e)
        return;
    if (e->op)
        storage_cancel(e->op);     /* its callback will not run */
    batch_clear(e);
    listed_clear(e);
    free(e);
    t->data = NULL;
}

const struct task_kind erase_storage_kind = {
    .name = ERASE_STORAGE_KIND,
    .states = erase_state_names,
    .nstates = ERASE_NSTATES,
    .initial_state = ERASE_LOAD,
    .max_attempts = 10,
    .retry_delay_s = 30,
    .resume_policy = TASK_RESUME_CONTINUE,
    .open = erase_open,
    .enter = erase_enter,
    .step = erase_step,
    .resume = erase_resume,
    .close = erase_close,
};
