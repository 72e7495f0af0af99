/* reconcile_videos: the catch-up task that records videos the webhooks
 * missed, page by page and restartably, and the nightly jobs that queue
 * it and abort stale multipart uploads.  See
 * include/studyhub/tasks/reconcile_videos.h. */
#include "config.h"

#include "studyhub/tasks/reconcile_videos.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/domain/videos.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"

#define REC_PAGE_KEYS 1000
/* Pages between saved stages: a draining server hands the task back at a
 * stage change, and each stage keeps its own log. */
#define REC_PAGES_PER_STAGE 10
#define REC_SUBJECT "videos"
#define REC_NAME_MAX 255

enum rec_state { REC_PAGE, REC_FINISH, REC_NSTATES };
static const char *const rec_state_names[] = { "page", "finish" };

struct rec {
    struct task *t;           /* borrowed: the task we are */
    struct app *app;          /* borrowed */
    char *token;              /* owned: where the next page starts; NULL: the start */
    bool started;             /* a page was listed in this claim (token is ours) */
    bool last_page;           /* the page being recorded was the last */
    int pages_in_stage;       /* pages since the last stage change */
    struct storage_op *op;    /* owned: the listing in flight */
    json_t *progress;         /* owned: the counters as last saved */
};

/* ---- recording one page ----------------------------------------------------- */

/* $1 task id, $2 candidates [{k,s,r,f,ms,cf,sz}], $3 unplaceable by name
 * [{k,why,sz}], $4 the next token (NULL: last page), $5 keys listed.
 * Records the candidates whose study and response exist (their response
 * rows locked FOR SHARE, as the webhook does), reports the rest, and
 * saves the progress, all or nothing.  One row: (recorded, unplaced,
 * payload, some recorded names, some unplaced keys). */
static const struct pg_stmt page_stmt = {
    "reconcile_videos_page",
    "WITH c AS (SELECT * FROM jsonb_to_recordset($2::jsonb)"
    "           AS c(k text, s uuid, r uuid, f text, ms bigint, cf boolean, sz bigint)),"
    " m AS (SELECT c.k, c.f, c.ms, c.cf, r.id AS rid, r.study_id, r.exp_data"
    "         FROM c JOIN studies s ON s.uuid = c.s"
    "         JOIN responses r ON r.uuid = c.r AND r.study_id = s.id"
    "        FOR SHARE OF r),"
    " ins AS (INSERT INTO videos (study_id, response_id, frame_id, full_name,"
    "           s3_timestamp, is_consent_footage)"
    "         SELECT m.study_id, m.rid, m.f, m.k, to_timestamp(m.ms / 1000.0),"
    "                m.cf OR exp_data_consent_frame(m.exp_data, m.f) FROM m"
    "         ON CONFLICT DO NOTHING RETURNING full_name),"
    " un AS (SELECT c.k, CASE WHEN NOT EXISTS (SELECT 1 FROM studies WHERE uuid = c.s)"
    "                         THEN 'names study ' || c.s || ', which does not exist'"
    "                         ELSE 'names response ' || c.r || ', which is not in study '"
    "                              || c.s END AS why, c.sz"
    "          FROM c WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.k = c.k)"
    "        UNION ALL"
    "        SELECT x.k, x.why, x.sz FROM jsonb_to_recordset($3::jsonb)"
    "          AS x(k text, why text, sz bigint)),"
    " up AS (INSERT INTO video_unplaced AS u (key, reason, size)"
    "        SELECT k, why, sz FROM un"
    "        ON CONFLICT (key) DO UPDATE SET reason = excluded.reason,"
    "           size = excluded.size, last_seen = now()"
    "        RETURNING key),"
    " placed AS (DELETE FROM video_unplaced WHERE key IN (SELECT k FROM m)),"
    " prog AS (UPDATE tasks SET payload = payload || jsonb_build_object("
    "            'token', $4::text,"
    "            'pages', coalesce((payload->>'pages')::bigint, 0) + 1,"
    "            'listed', coalesce((payload->>'listed')::bigint, 0) + $5::bigint,"
    "            'recorded', coalesce((payload->>'recorded')::bigint, 0)"
    "                        + (SELECT count(*) FROM ins),"
    "            'unplaced', coalesce((payload->>'unplaced')::bigint, 0)"
    "                        + (SELECT count(*) FROM up),"
    "            'run_started', coalesce(payload->>'run_started', now()::text))"
    "          WHERE id = $1::bigint RETURNING payload)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up),"
    "        (SELECT payload::text FROM prog),"
    "        (SELECT string_agg(full_name, ' ') FROM (SELECT full_name FROM ins LIMIT 20) i),"
    "        (SELECT string_agg(key, ' ') FROM (SELECT key FROM up LIMIT 20) u)",
};

/* $1 task id.  Drops the reports of objects this run did not see. */
static const struct pg_stmt finish_stmt = {
    "reconcile_videos_finish",
    "WITH t AS (SELECT payload FROM tasks WHERE id = $1::bigint),"
    " d AS (DELETE FROM video_unplaced u USING t"
    "        WHERE u.last_seen < coalesce((t.payload->>'run_started')::timestamptz, now())"
    "        RETURNING u.key)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM video_unplaced"
    "         WHERE key NOT IN (SELECT key FROM d)), (SELECT payload::text FROM t)",
};

static void rec_list(struct rec *r);

static void on_page_saved(struct task *t, PGresult *res)
{
    struct rec *r = t->data;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        task_retry(t, "database: %s", res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }
    json_decref(r->progress);
    r->progress = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
    long long recorded = atoll(PQgetvalue(res, 0, 0));
    long long unplaced = atoll(PQgetvalue(res, 0, 1));
    if (recorded > 0)
        task_log(t, "recorded %lld missing videos: %s%s", recorded, PQgetvalue(res, 0, 3),
                 recorded > 20 ? " ..." : "");
    if (unplaced > 0)
        task_problem(t, "cannot place %lld objects (table video_unplaced says why): %s%s",
                     unplaced, PQgetvalue(res, 0, 4), unplaced > 20 ? " ..." : "");
    if (r->last_page) {
        task_set_state(t, REC_FINISH, TASK_STAGE_OK);
        return;
    }
    if (++r->pages_in_stage >= REC_PAGES_PER_STAGE) {
        task_set_state(t, REC_PAGE, TASK_STAGE_OK);     /* a new stage: rec_enter */
        return;
    }
    rec_list(r);
}

/* Sorts the page's keys into candidates and unplaceables, then saves. */
static void on_listed(const struct storage_result *res, void *arg)
{
    struct rec *r = arg;
    struct task *t = r->t;
    json_t *cands = json_array(), *bad = json_array();
    char *cands_text = NULL, *bad_text = NULL, why[200], listed[24], id[24];
    size_t skipped = 0;

    r->op = NULL;
    if (res->err) {
        task_retry(t, "listing the storage: %s", res->error ? res->error : "failed");
        goto out;
    }
    if (!cands || !bad)
        goto oom;
    for (size_t i = 0; i < res->nobjects; i++) {
        const struct storage_object *o = &res->objects[i];
        struct videos_name n;
        if (strchr(o->key, '/')) {
            skipped++;   /* another module's folder */
            continue;
        }
        json_t *item;
        if (strlen(o->key) > REC_NAME_MAX) {
            item = json_pack("{s:s, s:s, s:I}", "k", o->key, "why",
                             "longer than a video name may be", "sz", (json_int_t)o->size);
        } else if (videos_parse_name(o->key, true, &n, why, sizeof why) < 0) {
            char reason[240];
            snprintf(reason, sizeof reason, "not a video name: %s", why);
            item = json_pack("{s:s, s:s, s:I}", "k", o->key, "why", reason, "sz",
                             (json_int_t)o->size);
        } else {
            item = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:I}", "k", o->key, "s", n.study,
                             "r", n.response, "f", n.frame, "ms", (json_int_t)n.ms, "cf",
                             n.consent, "sz", (json_int_t)o->size);
            /* (json_pack fails only on a key that is not UTF-8: skipped.) */
            if (item && json_array_append_new(cands, item) < 0)
                goto oom;
            continue;
        }
        if (item && json_array_append_new(bad, item) < 0)
            goto oom;
    }
    cands_text = json_dumps(cands, JSON_COMPACT);
    bad_text = json_dumps(bad, JSON_COMPACT);
    if (!cands_text || !bad_text)
        goto oom;
    free(r->token);
    r->token = res->next_token ? strdup(res->next_token) : NULL;
    if (res->next_token && !r->token)
        goto oom;
    r->last_page = r->token == NULL;
    r->started = true;
    snprintf(listed, sizeof listed, "%zu", res->nobjects);
    snprintf(id, sizeof id, "%lld", (long long)t->id);
    const char *params[] = { id, cands_text, bad_text, r->token, listed };
    if (skipped)
        task_log(t, "skipped %zu keys under folders", skipped);
    if (task_pg_exec(t, &page_stmt, 5, params, on_page_saved) < 0)
        goto oom;
    goto out;
oom:
    task_retry(t, "out of memory");
out:
    json_decref(cands);
    json_decref(bad);
    free(cands_text);
    free(bad_text);
}

static void rec_list(struct rec *r)
{
    r->op = storage_list(r->app->storage, "", r->token, REC_PAGE_KEYS, on_listed, r);
    if (!r->op)
        task_retry(r->t, "out of memory");
}

static void on_finished(struct task *t, PGresult *res)
{
    struct rec *r = t->data;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        task_retry(t, "database: %s", res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }
    json_t *p = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
    json_t *result = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
        "pages", (json_int_t)json_integer_value(json_object_get(p, "pages")),
        "listed", (json_int_t)json_integer_value(json_object_get(p, "listed")),
        "recorded", (json_int_t)json_integer_value(json_object_get(p, "recorded")),
        "unplaced_seen", (json_int_t)json_integer_value(json_object_get(p, "unplaced")),
        "unplaced", (json_int_t)atoll(PQgetvalue(res, 0, 1)),
        "reports_dropped", (json_int_t)atoll(PQgetvalue(res, 0, 0)));
    json_decref(p);
    (void)r;
    task_log(t, "done: %s unplaced objects reported (table video_unplaced)",
             PQgetvalue(res, 0, 1));
    task_finish(t, TASK_SUCCEEDED, result, NULL);
}

/* ---- the kind ------------------------------------------------------------------ */

static int rec_open(struct task *t, char *err, size_t errlen)
{
    struct rec *r = calloc(1, sizeof *r);
    json_t *tok = json_object_get(t->payload, "token");

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->t = t;
    r->app = t->app;
    /* A run that was interrupted goes on after its last saved page. */
    if (json_is_string(tok) && !(r->token = strdup(json_string_value(tok)))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->data = r;
    return 0;
}

/* Each page stage counts its own pages; the first of a claim may find
 * the run already over (resumed after its last page was saved). */
static void rec_enter(struct task *t, int state)
{
    struct rec *r = t->data;
    json_t *pages = json_object_get(t->payload, "pages");

    if (state != REC_PAGE)
        return;
    r->pages_in_stage = 0;
    if (r->started)
        return;
    if (json_is_integer(pages) && !r->token) {
        task_set_state(t, REC_FINISH, TASK_STAGE_SKIPPED);  /* nothing left */
        return;
    }
    if (r->token)
        task_log(t, "going on after page %lld", (long long)json_integer_value(pages));
}

static void rec_step(struct task *t)
{
    struct rec *r = t->data;

    switch ((enum rec_state)t->state) {
    case REC_PAGE:
        rec_list(r);
        return;
    case REC_FINISH: {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)t->id);
        const char *params[] = { id };
        if (task_pg_exec(t, &finish_stmt, 1, params, on_finished) < 0)
            task_retry(t, "out of memory");
        return;
    }
    case REC_NSTATES:
        break;
    }
    task_finish(t, TASK_FAILED, NULL, "internal error: state %d", t->state);
}

static void rec_close(struct task *t)
{
    struct rec *r = t->data;

    if (!r)
        return;
    storage_cancel(r->op);
    json_decref(r->progress);
    free(r->token);
    free(r);
    t->data = NULL;
}

const struct task_kind reconcile_videos_kind = {
    .name = RECONCILE_VIDEOS_KIND,
    .states = rec_state_names,
    .nstates = REC_NSTATES,
    .initial_state = REC_PAGE,
    .max_attempts = 5,
    .retry_delay_s = 60,
    /* The token in the payload says where: run the page state again. */
    .resume_policy = TASK_RESUME_CONTINUE,
    .open = rec_open,
    .enter = rec_enter,
    .step = rec_step,
    .close = rec_close,
};

/* ---- the nightly jobs ------------------------------------------------------------ */

/* reconcile_videos: one state, queueing the task. */
enum rj_state { RJ_ENQUEUE };

static const char *const rj_state_names[] = { [RJ_ENQUEUE] = "enqueue" };

static void on_reconcile_queued(enum task_enqueue_status st, int64_t id, const char *uuid,
                                void *arg)
{
    struct sched_run *run = arg;

    if (st == TASK_ENQUEUE_CREATED)
        sched_done(run, SCHED_SUCCEEDED, "queued task %s", uuid);
    else if (st == TASK_ENQUEUE_EXISTS)
        sched_done(run, SCHED_SUCCEEDED, "already queued or running: task %s",
                   uuid && *uuid ? uuid : "(just finished)");
    else
        sched_done(run, SCHED_FAILED, "database unavailable");
}

static void rj_step(struct sched_run *run)
{
    switch ((enum rj_state)sched_run_state(run)) {
    case RJ_ENQUEUE:
        if (task_enqueue(sched_run_app(run)->pg, RECONCILE_VIDEOS_KIND, REC_SUBJECT, NULL,
                         on_reconcile_queued, run) < 0)
            sched_done(run, SCHED_FAILED, "cannot queue the task");
        return;
    }
}

const struct sched_job reconcile_videos_job = {
    .name = "reconcile_videos", .states = rj_state_names, .nstates = 1,
    .initial_state = RJ_ENQUEUE, .step = rj_step,
};

/* abort_stale_uploads: the temp files of cut writes, then the incomplete
 * uploads a page at a time, each stale one aborted in turn. */
enum abort_state { ABORT_SWEEP_TMP, ABORT_LIST, ABORT_ABORT };

static const char *const abort_state_names[] = {
    [ABORT_SWEEP_TMP] = "sweep_tmp", [ABORT_LIST] = "list", [ABORT_ABORT] = "abort",
};

/* The run's data. */
struct abort_run {
    struct sched_run *run;          /* borrowed: the run this is the data of */
    struct app *app;                /* borrowed */
    char *token;                    /* owned: the next page of uploads */
    time_t cutoff;                  /* started before this: aborted */
    struct storage_upload_info *todo; /* owned (strings too): this page's stale ones */
    size_t ntodo, next;
    long aborted, failed, kept;
};

static void todo_clear(struct abort_run *a)
{
    for (size_t i = 0; i < a->ntodo; i++) {
        free((char *)a->todo[i].key);
        free((char *)a->todo[i].upload_id);
    }
    free(a->todo);
    a->todo = NULL;
    a->ntodo = a->next = 0;
}

static void abort_run_end(struct abort_run *a, enum sched_outcome o, const char *error)
{
    if (error)
        sched_done(a->run, o, "%s (aborted %ld, failed %ld, kept %ld)", error, a->aborted,
                   a->failed, a->kept);
    else
        sched_done(a->run, o, "aborted %ld incomplete uploads older than %ld s, %ld failed, "
                   "%ld younger kept", a->aborted, a->app->cfg->stale_upload_age_s, a->failed,
                   a->kept);
}

static void on_aborted(const struct storage_result *res, void *arg)
{
    struct abort_run *a = arg;
    const struct storage_upload_info *u = &a->todo[a->next - 1];

    if (res->err && res->err != -ENOENT) {
        a->failed++;
        sched_run_log(a->run, "abort %s (upload %s): %s", u->key, u->upload_id,
                      res->error ? res->error : "failed");
    } else {
        a->aborted++;
        sched_run_log(a->run, "aborted %s (upload %s, started %lld)", u->key, u->upload_id,
                      (long long)u->initiated);
    }
    sched_set_state(a->run, ABORT_ABORT);   /* the next one */
}

static void on_uploads(const struct storage_result *res, void *arg)
{
    struct abort_run *a = arg;

    if (res->err) {
        abort_run_end(a, SCHED_FAILED, res->error ? res->error : "listing uploads failed");
        return;
    }
    todo_clear(a);
    if (res->nuploads && !(a->todo = calloc(res->nuploads, sizeof *a->todo))) {
        abort_run_end(a, SCHED_FAILED, "out of memory");
        return;
    }
    for (size_t i = 0; i < res->nuploads; i++) {
        const struct storage_upload_info *u = &res->uploads[i];
        if (u->initiated >= a->cutoff) {
            a->kept++;
            continue;
        }
        struct storage_upload_info *d = &a->todo[a->ntodo];
        d->key = strdup(u->key);
        d->upload_id = strdup(u->upload_id);
        d->initiated = u->initiated;
        a->ntodo++;
        if (!d->key || !d->upload_id) {
            abort_run_end(a, SCHED_FAILED, "out of memory");
            return;
        }
    }
    free(a->token);
    a->token = res->next_token ? strdup(res->next_token) : NULL;
    if (res->next_token && !a->token) {
        abort_run_end(a, SCHED_FAILED, "out of memory");
        return;
    }
    sched_set_state(a->run, ABORT_ABORT);
}

static void abort_step(struct sched_run *run)
{
    struct abort_run *a = sched_run_data(run);

    switch ((enum abort_state)sched_run_state(run)) {
    case ABORT_SWEEP_TMP: {
        if (!a->app->storage) {
            sched_done(run, SCHED_FAILED, "no storage");
            return;
        }
        /* file://'s own leftovers: temp files of writes cut by a crash. */
        long swept = storage_sweep_tmp(a->app->storage, a->cutoff, false);
        if (swept)
            sched_run_log(run, "removed %ld temporary files of unfinished writes", swept);
        sched_set_state(run, ABORT_LIST);
        return;
    }
    case ABORT_LIST:
        if (!storage_mpu_list(a->app->storage, "", a->token, on_uploads, a))
            abort_run_end(a, SCHED_FAILED, "out of memory");
        return;
    case ABORT_ABORT:
        if (a->next < a->ntodo) {
            const struct storage_upload_info *u = &a->todo[a->next++];
            if (!storage_mpu_abort(a->app->storage, u->key, u->upload_id, on_aborted, a))
                abort_run_end(a, SCHED_FAILED, "out of memory");
        } else if (a->token) {
            sched_set_state(run, ABORT_LIST);
        } else {
            abort_run_end(a, a->failed ? SCHED_FAILED : SCHED_SUCCEEDED, NULL);
        }
        return;
    }
}

static int abort_open(struct sched_run *run, char *err, size_t errlen)
{
    struct abort_run *a = calloc(1, sizeof *a);

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->run = run;
    a->app = sched_run_app(run);
    a->cutoff = time(NULL) - a->app->cfg->stale_upload_age_s;
    sched_run_set_data(run, a);
    return 0;
}

static void abort_close(struct sched_run *run)
{
    struct abort_run *a = sched_run_data(run);

    todo_clear(a);
    free(a->token);
    free(a);
}

const struct sched_job abort_stale_uploads_job = {
    .name = "abort_stale_uploads", .states = abort_state_names, .nstates = ABORT_ABORT + 1,
    .initial_state = ABORT_SWEEP_TMP, .open = abort_open, .step = abort_step,
    .close = abort_close,
};
