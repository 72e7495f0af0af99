/* purge_videos: deletes withdrawn responses' non-consent videos and
 * expired or stale video zips (purge_videos.h).  The job is a state
 * machine (enum purge_state, queue/sched.h): FIND a batch of withdrawn videos, DELETE_OBJECTS
 * one by one, DELETE_ROWS, again until none is left; then LIST_ZIPS a page
 * at a time and DELETE_ZIPS the ones to go.  Each callback stores its
 * result in struct purge (the run's data) and sets the next state. */
#include "config.h"

#include "studyhub/tasks/purge_videos.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/domain/videos.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"
#include "studyhub/tasks/video_zip.h"

#define ZIP_MAX_AGE_S (2 * VIDEOS_ZIP_URL_TTL_S)
#define STUDIES_MAX 4096      /* studies whose zips go, per run */

enum purge_state { PURGE_FIND, PURGE_DELETE_OBJECTS, PURGE_DELETE_ROWS, PURGE_LIST_ZIPS,
                   PURGE_DELETE_ZIPS, PURGE_DONE };

static const char *const purge_state_names[] = { "find", "delete_objects", "delete_rows",
                                                 "list_zips", "delete_zips", "done" };

struct purge {
    struct sched_run *run;    /* borrowed: the run this is the data of */
    struct app *app;          /* borrowed */
    char **names;             /* owned: the batch's object keys (videos or zips) */
    char **ids;               /* owned: the batch's video ids */
    size_t n, i;              /* batch size, next to delete */
    char **studies;           /* owned: study uuids whose zips go */
    size_t nstudies;
    char *token;              /* owned: the next zip page, NULL at first/last */
    bool more_zips;           /* another zip page follows */
    int batches;
    long videos, zips;        /* deleted */
    const char *failure;      /* static: why the run failed */
};

static void batch_clear(struct purge *p)
{
    for (size_t k = 0; k < p->n; k++) {
        free(p->names[k]);
        if (p->ids)
            free(p->ids[k]);
    }
    free(p->names);
    free(p->ids);
    p->names = p->ids = NULL;
    p->n = p->i = 0;
}

static void purge_free(struct purge *p)
{
    batch_clear(p);
    for (size_t k = 0; k < p->nstudies; k++)
        free(p->studies[k]);
    free(p->studies);
    free(p->token);
    free(p);
}

static void purge_set_state(struct purge *p, enum purge_state s)
{
    sched_set_state(p->run, s);
}

static void purge_fail(struct purge *p, const char *why)
{
    p->failure = why;
    purge_set_state(p, PURGE_DONE);
}

static void note_study(struct purge *p, const char *uuid)
{
    for (size_t k = 0; k < p->nstudies; k++)
        if (strcmp(p->studies[k], uuid) == 0)
            return;
    if (p->nstudies >= STUDIES_MAX)
        return;
    char **grown = realloc(p->studies, (p->nstudies + 1) * sizeof *grown);
    if (!grown)
        return;
    p->studies = grown;
    if ((p->studies[p->nstudies] = strdup(uuid)))
        p->nstudies++;
}

/* ------------------------------------------------------------ withdrawn videos */

static const struct pg_stmt purge_find_stmt = {
    "purge_find_withdrawn",
    "SELECT v.id, v.full_name, s.uuid FROM videos v"
    "  JOIN responses r ON r.id = v.response_id JOIN studies s ON s.id = v.study_id"
    " WHERE r.withdrawn AND NOT v.is_consent_footage ORDER BY v.id LIMIT $1::bigint",
};

/* $1 ids as a text array.  The conditions again: a row that stopped
 * qualifying meanwhile stays. */
static const struct pg_stmt purge_rows_stmt = {
    "purge_delete_withdrawn",
    "DELETE FROM videos v USING responses r"
    " WHERE v.id = ANY ($1::bigint[]) AND r.id = v.response_id"
    "   AND r.withdrawn AND NOT v.is_consent_footage",
};

static void on_found(PGresult *res, void *arg)
{
    struct purge *p = arg;
    int n = res && pg_ok(res) ? PQntuples(res) : -1;

    if (n < 0) {
        purge_fail(p, "cannot read the withdrawn videos");
    } else if (n == 0 || p->batches >= PURGE_BATCHES_MAX) {
        purge_set_state(p, PURGE_LIST_ZIPS);
    } else {
        p->names = calloc((size_t)n, sizeof *p->names);
        p->ids = calloc((size_t)n, sizeof *p->ids);
        if (!p->names || !p->ids) {
            purge_fail(p, "out of memory");
        } else {
            bool oom = false;

            for (int k = 0; k < n && !oom; k++) {
                p->ids[k] = strdup(PQgetvalue(res, k, 0));
                p->names[k] = strdup(PQgetvalue(res, k, 1));
                note_study(p, PQgetvalue(res, k, 2));
                p->n++;
                oom = !p->ids[k] || !p->names[k];
            }
            if (oom)
                purge_fail(p, "out of memory");
            else
                purge_set_state(p, PURGE_DELETE_OBJECTS);
        }
    }
}

static void on_object_deleted(const struct storage_result *res, void *arg)
{
    struct purge *p = arg;
    enum purge_state st = sched_run_state(p->run);

    if (res->err != 0 && res->err != -ENOENT) {
        sched_run_log(p->run, "cannot delete %s: %s", p->names[p->i],
                      res->error ? res->error : "failed");
        purge_fail(p, "a video object could not be deleted (its row is kept)");
    } else if (++p->i < p->n) {
        purge_set_state(p, st);     /* the next object */
    } else if (st == PURGE_DELETE_ZIPS) {
        p->zips += (long)p->n;
        purge_set_state(p, PURGE_LIST_ZIPS);
    } else {
        p->videos += (long)p->n;
        purge_set_state(p, PURGE_DELETE_ROWS);
    }
}

static void on_rows_deleted(PGresult *res, void *arg)
{
    struct purge *p = arg;

    if (!res || !pg_ok(res)) {
        purge_fail(p, "cannot delete the withdrawn video rows");
    } else {
        sched_run_log(p->run, "deleted %s withdrawn videos", PQcmdTuples(res));
        batch_clear(p);
        p->batches++;
        purge_set_state(p, PURGE_FIND);
    }
}

/* "{1,2,3}" of the batch's ids. */
static char *ids_array(const struct purge *p)
{
    size_t len = 3;
    for (size_t k = 0; k < p->n; k++)
        len += strlen(p->ids[k]) + 1;
    char *s = malloc(len), *w = s;
    if (!s)
        return NULL;
    *w++ = '{';
    for (size_t k = 0; k < p->n; k++)
        w += sprintf(w, "%s%s", k ? "," : "", p->ids[k]);
    strcpy(w, "}");
    return s;
}

/* ------------------------------------------------------------ zips */

/* Does this zip go: too old for any live link, or of a study that lost
 * videos?  Keys are VIDEO_ZIP_PREFIX<study uuid>_... */
static bool zip_goes(const struct purge *p, const struct storage_object *o, time_t now)
{
    const char *rest = o->key + strlen(VIDEO_ZIP_PREFIX);

    if (strncmp(o->key, VIDEO_ZIP_PREFIX, strlen(VIDEO_ZIP_PREFIX)) != 0)
        return false;
    if (o->mtime > 0 && now - o->mtime > ZIP_MAX_AGE_S)
        return true;
    for (size_t k = 0; k < p->nstudies; k++)
        if (strncmp(rest, p->studies[k], 36) == 0 && rest[36] == '_')
            return true;
    return false;
}

static void on_zips_listed(const struct storage_result *res, void *arg)
{
    struct purge *p = arg;
    time_t now = time(NULL);

    if (res->err != 0) {
        purge_fail(p, "cannot list the video zips");
        return;
    }
    free(p->token);
    p->token = res->next_token ? strdup(res->next_token) : NULL;
    p->more_zips = res->next_token != NULL;
    p->names = calloc(res->nobjects + 1, sizeof *p->names);
    if (!p->names) {
        purge_fail(p, "out of memory");
        return;
    }
    for (size_t k = 0; k < res->nobjects; k++)
        if (zip_goes(p, &res->objects[k], now) && (p->names[p->n] = strdup(res->objects[k].key)))
            p->n++;
    if (p->n > 0) {
        purge_set_state(p, PURGE_DELETE_ZIPS);
    } else if (!p->more_zips) {
        purge_set_state(p, PURGE_DONE);
    } else {
        batch_clear(p);
        purge_set_state(p, PURGE_LIST_ZIPS);   /* the next page */
    }
}

/* ------------------------------------------------------------ the machine */

static void purge_step(struct sched_run *run)
{
    struct purge *p = sched_run_data(run);
    char limit[16];
    char *arr;

    switch ((enum purge_state)sched_run_state(run)) {
    case PURGE_FIND: {
        if (!p->app->storage) {
            sched_done(run, SCHED_SUCCEEDED, "nothing to do: no storage");
            return;
        }
        snprintf(limit, sizeof limit, "%d", PURGE_BATCH);
        const char *params[] = { limit };
        if (pg_exec(p->app->pg, &purge_find_stmt, 1, params, on_found, p) < 0)
            purge_fail(p, "out of memory");
        return;
    }
    case PURGE_DELETE_OBJECTS:
    case PURGE_DELETE_ZIPS:
        if (!storage_delete(p->app->storage, p->names[p->i], on_object_deleted, p))
            purge_fail(p, "cannot start a delete");
        return;
    case PURGE_DELETE_ROWS: {
        if (!(arr = ids_array(p))) {
            purge_fail(p, "out of memory");
            return;
        }
        const char *params[] = { arr };
        int rc = pg_exec(p->app->pg, &purge_rows_stmt, 1, params, on_rows_deleted, p);
        free(arr);
        if (rc < 0)
            purge_fail(p, "out of memory");
        return;
    }
    case PURGE_LIST_ZIPS:
        batch_clear(p);
        if (p->zips > 0 && !p->more_zips) {
            purge_set_state(p, PURGE_DONE);
            return;
        }
        if (!storage_list(p->app->storage, VIDEO_ZIP_PREFIX, p->token, 1000, on_zips_listed, p))
            purge_fail(p, "cannot list the video zips");
        return;
    case PURGE_DONE:
        if (p->failure)
            sched_done(run, SCHED_FAILED, "%s; deleted %ld withdrawn videos and %ld zips",
                       p->failure, p->videos, p->zips);
        else
            sched_done(run, SCHED_SUCCEEDED,
                       "deleted %ld withdrawn videos and %ld video zips", p->videos, p->zips);
        return;     /* purge_close frees p */
    }
}

static int purge_open(struct sched_run *run, char *err, size_t errlen)
{
    struct purge *p = calloc(1, sizeof *p);

    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->run = run;
    p->app = sched_run_app(run);
    sched_run_set_data(run, p);
    return 0;
}

static void purge_close(struct sched_run *run)
{
    purge_free(sched_run_data(run));
}

const struct sched_job purge_video_storage_job = {
    .name = "purge_video_storage", .states = purge_state_names, .nstates = PURGE_DONE + 1,
    .initial_state = PURGE_FIND, .open = purge_open, .step = purge_step, .close = purge_close,
};
