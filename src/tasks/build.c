/* build: the build_experiment task kind: its states, names table and step
 * function, the stages load, download, extract, upload and finish, and its
 * hooks.  See include/studyhub/tasks/build.h for the stages and promises,
 * sql/050_builds.sql for the statements that keep them.  Its other files
 * (build_internal.h): build_wait (what it waits on), build_resolve (the
 * stage resolve_sha), build_run (the stage build), build_exec (the
 * children's command lines), build_flight (shared downloads and
 * extractions), build_upload (the output to storage).
 *
 * Shape: one struct build per running task (t->data), driven by
 * build_step, which switches on the stage; every callback (query, GitHub
 * call, shared download or extraction, child, storage operation) stores
 * its result on the build and moves it on with bl_move (a stage change,
 * saved by task_set_state) or bl_stop (to 'finish' with an outcome).
 * Work that several builds may need at once (downloading and extracting
 * the same commit) is a "flight" owned by this module with the waiting
 * builds listed on it, so twenty builds of one commit download it once.
 * Nothing here blocks the loop: file trees are walked a slice per loop
 * turn, extraction and builds run in children, transfers on curl multi. */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/task.h"
#include "studyhub/core/util.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/io/archive.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/io/redis.h"
#include "studyhub/io/storage.h"
#include "studyhub/tasks/sandbox.h"

struct builder *the_builder;

static const char *const build_state_names[] = {
    [BS_RESOLVE] = "resolve_sha",
    [BS_DOWNLOAD] = "download",
    [BS_EXTRACT] = "extract",
    [BS_BUILD] = "build",
    [BS_UPLOAD] = "upload",
    [BS_FINISH] = "finish",
};
#define BS_COUNT ((int)(sizeof build_state_names / sizeof *build_state_names))

static const char *const outcome_names[] = { NULL, "succeeded", "failed", "cancelled" };
static const char *const stage_outcome_names[] = { "succeeded", "failed", "skipped" };

/* ---- the kind: states and data ------------------------------------------------------ */

void bl_stop(struct build *b, enum build_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *bl_state_name(int s)
{
    return s >= 0 && s < BS_COUNT ? build_state_names[s] : "?";
}

static void announce(struct build *b, int state, int previous,
                     enum task_stage_outcome prev_outcome)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "stage", "study",
                           b->study_uuid, "task", b->t->uuid, "mode",
                           b->deploy ? "deploy" : "preview", "stage", bl_state_name(state));

    if (!ev)
        return;
    if (previous >= 0) {
        json_object_set_new(ev, "previous", json_string(bl_state_name(previous)));
        json_object_set_new(ev, "previous_outcome",
                            json_string(stage_outcome_names[prev_outcome]));
    }
    if (b->t->resumed && previous < 0)
        json_object_set_new(ev, "resumed", json_true());
    b->announced = state;
    builds_publish(the_builder->app, ev);
}

/* The one way to the next stage. */
void bl_move(struct build *b, int state, enum task_stage_outcome o)
{
    b->moving = true;
    announce(b, state, b->t->state, o);
    task_set_state(b->t, state, o);
}

/* ---- the stages ----------------------------------------------------------------------- */

/* To 'finish' with an outcome: stops what runs, notes why in the stage's
 * log, and closes the stage as failed (cancelled stages too: the runner's
 * stage outcomes have no 'cancelled'; the log and the build's outcome say
 * it). */
void bl_stop(struct build *b, enum build_outcome o, const char *fmt, ...)
{
    va_list ap;

    if (b->moving)
        return;
    if (b->proc && b->child == CH_RUN && strcmp(the_builder->app->cfg->build_runner, "docker") == 0)
        bl_docker_rm_later(b->container);
    bl_halt(b);
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof b->error, fmt, ap);
    va_end(ap);
    b->outcome = o;
    task_log(b->t, "%s: %s", o == BO_CANCELLED ? "cancelled" : "failed", b->error);
    if (b->t->state == BS_FINISH) {
        task_finish(b->t, o == BO_CANCELLED ? TASK_CANCELLED : TASK_FAILED, NULL, "%s",
                    b->error);
        return;
    }
    bl_move(b, BS_FINISH, TASK_STAGE_FAILED);
}

/* Paths that follow from the commit and the task. */
int bl_paths(struct build *b)
{
    free(b->checkout);
    free(b->zip);
    b->checkout = util_asprintf("%s/%s", the_builder->checkouts, b->sha);
    b->zip = util_asprintf("%s/%s.zip", the_builder->checkouts, b->sha);
    if (!b->work) {
        b->work = util_asprintf("%s/%s", the_builder->builds, b->t->uuid);
        b->out = b->work ? util_asprintf("%s/out", b->work) : NULL;
        b->scratch = b->work ? util_asprintf("%s/scratch", b->work) : NULL;
    }
    return b->checkout && b->zip && b->work && b->out && b->scratch ? 0 : -1;
}

/* -- load: the study and what earlier attempts found */

static const struct pg_stmt stmt_load = {
    "build_load",
    "SELECT s.name, s.metadata->>'player_repo_url', s.metadata->>'last_known_player_sha',"
    "       b.repo_url, b.sha, b.cache_key, r.manifest::text, s.uuid,"
    "       (SELECT approved FROM study_runner_repo(s.id, $2))"
    "  FROM study_builds b JOIN studies s ON s.id = b.study_id"
    "  LEFT JOIN runner_builds r ON r.cache_key = b.cache_key"
    " WHERE b.task_id = $1::bigint",
};

static char *col_dup(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

static void on_loaded(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    bl_wait_end(b, BW_QUERY);
    if (!res) {
        /* The database is away: the runner could not save either; try
         * again a little later through the timer. */
        bl_wait_timer(b, SETTLE_RETRY_MS);
        return;
    }
    if (!pg_ok(res)) {
        task_finish(t, TASK_FAILED, NULL, "cannot read the build: %s", PQresultErrorMessage(res));
        return;
    }
    if (PQntuples(res) == 0) {
        /* The study (and with it this build's row) was deleted. */
        task_finish(t, TASK_CANCELLED, NULL, "the study no longer exists");
        return;
    }
    b->study_name = col_dup(res, 0);
    b->meta_repo = col_dup(res, 1);
    b->meta_sha = col_dup(res, 2);
    b->repo_approved = PQgetvalue(res, 0, 8)[0] == 't';
    if (!PQgetisnull(res, 0, 3) && !PQgetisnull(res, 0, 4) && !PQgetisnull(res, 0, 5)) {
        b->repo_url = strdup(PQgetvalue(res, 0, 3));
        snprintf(b->sha, sizeof b->sha, "%s", PQgetvalue(res, 0, 4));
        snprintf(b->cache_key, sizeof b->cache_key, "%s", PQgetvalue(res, 0, 5));
        if (!PQgetisnull(res, 0, 6))
            b->manifest = json_loads(PQgetvalue(res, 0, 6), 0, NULL);
        if (!b->repo_url || bl_paths(b) < 0) {
            task_finish(t, TASK_FAILED, NULL, "out of memory");
            return;
        }
    }
    b->loaded = true;
    if (t->resumed)
        task_log(t, "resumed in stage %s (attempt %d of %d): the server running it stopped",
                 bl_state_name(t->state), t->attempts, t->max_attempts);
    task_wake(t);
}

/* Reads the study and what earlier attempts saved (every claim starts
 * here: a resumed build knows its commit and cached runner from it). */
static void bl_load(struct build *b)
{
    char task[24];
    const char *params[2] = { task, the_builder->app->cfg->runner_repo_url };

    snprintf(task, sizeof task, "%" PRId64, b->t->id);
    if (bl_query(b, &stmt_load, 2, params, on_loaded) < 0) {
        bl_wait_timer(b, SETTLE_RETRY_MS);
    }
}

/* -- resolve_sha: build_resolve.c */

/* -- download and extract */

void bl_on_flight_done(struct build *b, enum flight_kind kind, bool ok, const char *msg)
{
    struct task *t = b->t;

    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while waiting for the %s",
                kind == FL_DOWNLOAD ? "download" : "extraction");
        return;
    }
    if (!ok) {
        bl_stop(b, BO_FAILED, "%s", msg);
        return;
    }
    task_log(t, "%s", msg);
    bl_move(b, kind == FL_DOWNLOAD ? BS_EXTRACT : BS_BUILD, TASK_STAGE_OK);
}

static void st_download(struct build *b)
{
    struct task *t = b->t;

    if (b->manifest) {
        task_log(t, "the runner is cached: nothing to download");
        bl_move(b, BS_EXTRACT, TASK_STAGE_SKIPPED);
        return;
    }
    if (is_dir(b->checkout)) {
        task_log(t, "checkout %s is present: reused", b->checkout);
        bl_move(b, BS_EXTRACT, TASK_STAGE_SKIPPED);
        return;
    }
    if (exists(b->zip)) {
        task_log(t, "the archive %s is already here", b->zip);
        bl_move(b, BS_EXTRACT, TASK_STAGE_SKIPPED);
        return;
    }
    if (util_mkdir_p(the_builder->checkouts) < 0) {
        bl_stop(b, BO_FAILED, "cannot create %s: %s", the_builder->checkouts, strerror(errno));
        return;
    }
    if (flight_wait(b, FL_DOWNLOAD, b->zip))
        return;
    if (dl_start(b) < 0)
        bl_stop(b, BO_FAILED, "cannot start the download: %s", strerror(errno));
}

static void st_extract(struct build *b)
{
    struct task *t = b->t;
    char err[300];

    if (b->manifest) {
        task_log(t, "the runner is cached: nothing to extract");
        bl_move(b, BS_BUILD, TASK_STAGE_SKIPPED);
        return;
    }
    if (is_dir(b->checkout)) {
        task_log(t, "checkout %s is present: reused", b->checkout);
        bl_move(b, BS_BUILD, TASK_STAGE_SKIPPED);
        return;
    }
    if (flight_wait(b, FL_EXTRACT, b->checkout))
        return;
    if (!exists(b->zip)) {
        if (++b->rebuilds > MAX_REBUILDS) {
            bl_stop(b, BO_FAILED, "the archive %s vanished %d times", b->zip, MAX_REBUILDS);
            return;
        }
        task_log(t, "the archive %s is gone: downloading it again", b->zip);
        bl_move(b, BS_DOWNLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    if (!ex_start(b, err, sizeof err)) {
        bl_stop(b, BO_FAILED, "cannot start the extraction: %s", err);
        return;
    }
    task_log(t, "extracting %s into %s (at most %ld bytes, %ld entries)", b->zip, b->checkout,
             the_builder->app->cfg->max_archive_bytes, the_builder->app->cfg->max_archive_files);
}

/* -- build: build_run.c */

/* -- upload */

static const struct pg_stmt stmt_forget_runner = {
    "build_forget_runner",
    "WITH d AS (DELETE FROM runner_builds WHERE cache_key = $1)"
    " UPDATE study_builds SET reused = false WHERE task_id = $2::bigint",
};

static void on_forgotten(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    bl_wait_end(b, BW_QUERY);
    json_decref(b->manifest);
    b->manifest = NULL;
    if (!res || !pg_ok(res)) {
        bl_stop(b, BO_FAILED, "cannot forget the lost cached runner: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    bl_move(b, BS_DOWNLOAD, TASK_STAGE_FAILED);
}

static void st_upload(struct build *b)
{
    struct task *t = b->t;
    struct upload *up;
    const char *err = NULL;

    if (!bl_storage(&err)) {
        bl_stop(b, BO_FAILED, "no storage: %s", err ? err : "?");
        return;
    }
    if (!(up = up_new(b))) {
        bl_stop(b, BO_FAILED, "out of memory");
        return;
    }
    b->up = up;
    bl_wait(b, BW_UPLOAD);
    if (b->manifest) {
        up_from_manifest(up, b->manifest);
        return;
    }
    char *src = NULL;

    if (dir_nonempty(b->out)) {
        src = strdup(b->out);
    } else {
        char *dist = util_asprintf("%s/dist", b->scratch);
        if (dist && dir_nonempty(dist))
            src = dist;
        else
            free(dist);
    }
    if (!src) {
        /* Resumed, and the build's output is gone: build again. */
        b->up = NULL;
        bl_wait_end(b, BW_UPLOAD);
        up_free(up);
        if (++b->rebuilds > MAX_REBUILDS) {
            bl_stop(b, BO_FAILED, "the build's output vanished %d times", MAX_REBUILDS);
            return;
        }
        task_log(t, "the build's output is gone: building again");
        bl_move(b, BS_BUILD, TASK_STAGE_SKIPPED);
        return;
    }
    up_from_output(up, src);
}

/* -- finish */

static const struct pg_stmt stmt_settle = {
    "build_settle",
    "WITH s AS (SELECT * FROM study_build_settle($1::bigint, $2, $3))"
    " SELECT outcome, error FROM s"
    " UNION ALL"
    " SELECT b.outcome, NULL FROM study_builds b"
    "  WHERE b.task_id = $1::bigint AND NOT EXISTS (SELECT 1 FROM s)",
};

static void on_settled(struct task *t, PGresult *res)
{
    struct build *b = t->data;
    const char *outcome, *error;
    enum task_outcome to;
    json_t *ev, *result;

    bl_wait_end(b, BW_QUERY);
    if (!res) {
        bl_wait_timer(b, SETTLE_RETRY_MS);
        return;
    }
    if (!pg_ok(res)) {
        log_error("build %" PRId64 ": cannot report its end: %s", t->id,
                  PQresultErrorMessage(res));
        task_finish(t, TASK_FAILED, NULL, "cannot report the build's end: %s",
                    PQresultErrorMessage(res));
        return;
    }
    outcome = PQntuples(res) && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "failed";
    error = PQntuples(res) && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : NULL;
    if (!error && b->error[0])
        error = b->error;
    to = strcmp(outcome, "succeeded") == 0 ? TASK_SUCCEEDED
         : strcmp(outcome, "cancelled") == 0 ? TASK_CANCELLED : TASK_FAILED;
    ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "finished", "study", b->study_uuid,
                   "task", t->uuid, "mode", b->deploy ? "deploy" : "preview", "outcome", outcome);
    if (ev && error)
        json_object_set_new(ev, "error", json_string(error));
    /* Told in close, once the end is saved: a client that reads the
     * build on this event must see it ended. */
    json_decref(b->final_ev);
    b->final_ev = ev;
    /* The scratch copy (it may hold a whole node_modules) goes now; the
     * output and the logs stay until cleanup_builds. */
    if (b->scratch && exists(b->scratch))
        archive_remove_later(the_builder->app->procs, b->scratch);
    result = json_pack("{s:s, s:s?, s:s?, s:b}", "outcome", outcome, "sha",
                       b->sha[0] ? b->sha : NULL, "cache_key",
                       b->cache_key[0] ? b->cache_key : NULL, "reused", b->manifest != NULL);
    if (to == TASK_SUCCEEDED)
        task_finish(t, to, result, NULL);
    else
        task_finish(t, to, result, "%s", error ? error : outcome);
}

static void st_finish(struct build *b)
{
    char task[24];
    const char *params[3];

    snprintf(task, sizeof task, "%" PRId64, b->t->id);
    params[0] = task;
    params[1] = outcome_names[b->outcome];
    params[2] = b->error[0] ? b->error : NULL;
    if (bl_query(b, &stmt_settle, 3, params, on_settled) < 0) {
        bl_wait_timer(b, SETTLE_RETRY_MS);
    }
}

/* ---- the kind's hooks ------------------------------------------------------------- */

static void build_step(struct task *t)
{
    struct build *b = t->data;

    b->moving = false;
    if (b->wait == BW_QUERY)
        return;
    if (t->state != BS_FINISH && task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled before stage %s", bl_state_name(t->state));
        return;
    }
    if (!b->loaded) {
        bl_load(b);     /* on_loaded steps again */
        return;
    }
    if (b->announced != t->state)
        announce(b, t->state, -1, TASK_STAGE_OK);
    if (t->state > BS_RESOLVE && t->state < BS_FINISH && !b->sha[0]) {
        /* Resumed past resolve_sha without its result: resolve again. */
        bl_move(b, BS_RESOLVE, TASK_STAGE_SKIPPED);
        return;
    }
    switch ((enum build_state)t->state) {
    case BS_RESOLVE:
        bl_st_resolve(b);
        return;
    case BS_DOWNLOAD:
        st_download(b);
        return;
    case BS_EXTRACT:
        st_extract(b);
        return;
    case BS_BUILD:
        bl_st_build(b);
        return;
    case BS_UPLOAD:
        st_upload(b);
        return;
    case BS_FINISH:
        st_finish(b);
        return;
    }
}

/* The cached runner lost files in storage: forget the cache entry and
 * build the runner again (from 'download'). */
void bl_cache_gone(struct build *b, const char *what)
{
    const char *params[2];
    char task[24];

    if (++b->rebuilds > MAX_REBUILDS) {
        bl_stop(b, BO_FAILED, "the cached runner's file %s is gone from storage", what);
        return;
    }
    snprintf(task, sizeof task, "%" PRId64, b->t->id);
    params[0] = b->cache_key;
    params[1] = task;
    task_log(b->t, "the cached runner's file %s is gone from storage: building it again", what);
    if (bl_query(b, &stmt_forget_runner, 2, params, on_forgotten) < 0) {
        bl_stop(b, BO_FAILED, "cannot forget the lost cached runner: out of memory");
    }
}

static int build_open(struct task *t, char *err, size_t errlen)
{
    struct build *b;
    const char *mode = json_string_value(json_object_get(t->payload, "mode"));
    const char *study = json_string_value(json_object_get(t->payload, "study"));

    if (!the_builder) {
        snprintf(err, errlen, "the builder is not set up");
        return -1;
    }
    if (!mode || (strcmp(mode, "deploy") != 0 && strcmp(mode, "preview") != 0) || !study ||
        !jsonapi_is_uuid(study)) {
        snprintf(err, errlen, "bad payload: mode must be deploy or preview, study a uuid");
        return -1;
    }
    if (!(b = calloc(1, sizeof *b))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    b->t = t;
    b->deploy = strcmp(mode, "deploy") == 0;
    snprintf(b->study_uuid, sizeof b->study_uuid, "%s", study);
    b->announced = -1;
    if (!(b->timer = evtimer_new(t->app->base, bl_on_timer, b))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    TAILQ_INSERT_TAIL(&the_builder->running, b, rlink);
    t->data = b;
    return 0;
}

/* A build whose server died: go on in the stage it was in (its work is
 * redone from the products of the finished stages), unless it has been
 * tried too often: then fail it through 'finish', which reports it. */
static int build_resume(struct task *t, int interrupted)
{
    struct build *b = t->data;

    if (t->attempts > t->max_attempts) {
        b->outcome = BO_FAILED;
        snprintf(b->error, sizeof b->error, "the server running this build stopped %d times "
                 "(last in stage %s); giving up", t->attempts - 1, bl_state_name(interrupted));
        return BS_FINISH;
    }
    if (interrupted < 0 || interrupted >= BS_COUNT)
        return BS_RESOLVE;
    return interrupted;
}

static void build_cancel(struct task *t)
{
    struct build *b = t->data;

    if (t->state == BS_FINISH || b->moving)
        return;     /* reporting already, or the next step sees it */
    if (b->proc) {
        /* on_child reports it (and removes a container) once the group
         * is gone. */
        proc_kill(b->proc);
        return;
    }
    if (b->wait == BW_QUERY)
        return;     /* its callback checks */
    bl_stop(b, BO_CANCELLED, "cancelled in stage %s", bl_state_name(t->state));
}

static void build_close(struct task *t)
{
    struct build *b = t->data;

    if (!b)
        return;
    if (the_builder)
        TAILQ_REMOVE(&the_builder->running, b, rlink);
    bl_halt(b);
    if (b->final_ev && the_builder && !the_builder->stopping)
        builds_publish(the_builder->app, b->final_ev); /* takes it */
    else
        json_decref(b->final_ev);
    if (b->timer)
        event_free(b->timer);
    if (b->disk_timer)
        event_free(b->disk_timer);
    json_decref(b->manifest);
    free(b->study_name);
    free(b->meta_repo);
    free(b->meta_sha);
    free(b->repo_url);
    free(b->checkout);
    free(b->zip);
    free(b->work);
    free(b->out);
    free(b->scratch);
    free(b);
    t->data = NULL;
}

const struct task_kind build_kind = {
    .name = BUILD_KIND,
    .states = build_state_names,
    .nstates = BS_COUNT,
    .initial_state = BS_RESOLVE,
    .lease_s = 0,
    .max_attempts = 3,
    .retry_delay_s = 0,
    .resume_policy = TASK_RESUME_CONTINUE,
    .open = build_open,
    .step = build_step,
    .resume = build_resume,
    .cancel = build_cancel,
    .close = build_close,
};

/* ---- start and stop ---------------------------------------------------------------- */

static const struct pg_stmt stmt_repair = {
    "build_repair",
    "SELECT study_build_repair()",
};

static void on_repaired(PGresult *res, void *arg)
{
    if (!res || !pg_ok(res)) {
        log_warn("build: cannot check for studies left building: %s",
                 res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    if (atoi(PQgetvalue(res, 0, 0)) > 0)
        log_warn("build: %s studies were marked building without a build; unmarked",
                 PQgetvalue(res, 0, 0));
}

/* BUILD_ENV "K=V,K2=V2": names checked, kept as "K=V". */
static int parse_build_env(const char *text)
{
    struct strv env = { 0 };
    const char *p = text;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *kv = strndup(p, n);
        char *eq = kv ? strchr(kv, '=') : NULL;

        if (n && (!kv || !eq || eq == kv)) {
            free(kv);
            strv_free(&env);
            log_error("BUILD_ENV: \"%.*s\" is not KEY=VALUE", (int)n, p);
            return -1;
        }
        for (char *k = kv; kv && k < eq; k++) {
            if (!(isupper((unsigned char)*k) || *k == '_' || (k > kv && isdigit((unsigned char)*k)))) {
                free(kv);
                strv_free(&env);
                log_error("BUILD_ENV: \"%.*s\" is not an upper-case variable name", (int)n, p);
                return -1;
            }
        }
        if (n && strv_add(&env, kv) < 0) {
            strv_free(&env);
            return -1;
        }
        if (!n)
            free(kv);
        p += end ? n + 1 : n;
    }
    the_builder->extra_env = env.v;
    return 0;
}

static void on_probe(const struct proc_result *r, void *arg)
{
    char how[160];

    the_builder->probe = NULL;
    if (proc_result_ok(r)) {
        the_builder->sandbox = SB_OK;
        log_info("build: the bwrap sandbox works: local builds run in it");
        return;
    }
    proc_result_describe(r, how, sizeof how);
    the_builder->sandbox = SB_BROKEN;
    snprintf(the_builder->sandbox_err, sizeof the_builder->sandbox_err, "%s (the check at start) %s%s%.300s%s",
             the_builder->app->cfg->bwrap_bin, how, r->err_len ? ": " : "", r->err,
             strstr(r->err, "Permission denied")
                 ? " (BUILD_UID must be able to enter every folder above BUILD_ROOT: o+x)" : "");
    log_error("build: BUILD_SANDBOX=bwrap does not work here, so every local build will be "
              "refused: %s", the_builder->sandbox_err);
}

/* Runs the sandbox once, around `true`, with the folders builds will
 * bind: a missing bwrap, a kernel without user namespaces, or a BUILD_ROOT
 * that BUILD_UID cannot reach is told now, and every build refused. */
static void sandbox_check(void)
{
    const struct config *c = the_builder->app->cfg;
    static const char *const command[] = { "true", NULL };
    static const char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
    struct sandbox_spec spec = {
        .bwrap = c->bwrap_bin, .host = &the_builder->host, .checkout = the_builder->checkouts,
        .scratch = the_builder->builds, .output = the_builder->builds, .network = c->build_network,
        .tmp_mb = 1, .ro_paths = c->build_ro_paths, .command = command,
    };
    struct proc_opts o = { .envp = envp, .timeout_ms = PROBE_TIMEOUT_MS, .tail_bytes = 4096,
                           .rlimits = the_builder->limits };
    char err[400];
    char **argv = sandbox_argv(&spec, err, sizeof err);

    the_builder->sandbox = SB_BROKEN;
    if (!argv) {
        snprintf(the_builder->sandbox_err, sizeof the_builder->sandbox_err, "%s", err);
        log_error("build: the build sandbox cannot be set up: %s", err);
        return;
    }
    o.argv = (const char *const *)argv;
    build_proc_ids(&o);
    the_builder->probe = proc_spawn(the_builder->app->procs, &o, on_probe, NULL, err, sizeof err);
    sandbox_argv_free(argv);
    if (!the_builder->probe) {
        snprintf(the_builder->sandbox_err, sizeof the_builder->sandbox_err, "%s (install the bubblewrap package)",
                 err);
        log_error("build: BUILD_SANDBOX=bwrap does not work here, so every local build will "
                  "be refused: %s", the_builder->sandbox_err);
        return;
    }
    the_builder->sandbox = SB_CHECKING;
}

/* The limits of every build process (see the README's "Builds in
 * production"): processes of the build's user, private writable memory
 * (RLIMIT_DATA, not RLIMIT_AS: node reserves far more address space than
 * it uses), the size of one file, and no core dumps. */
static void limits_init(const struct config *c)
{
    struct proc_rlimit *l = the_builder->limits;

    l[0] = (struct proc_rlimit){ RLIMIT_NPROC, (unsigned long long)c->build_max_procs };
    l[1] = (struct proc_rlimit){ RLIMIT_DATA, (unsigned long long)c->build_memory_mb << 20 };
    l[2] = (struct proc_rlimit){ RLIMIT_FSIZE, (unsigned long long)c->build_max_output_mb << 20 };
    l[3] = (struct proc_rlimit){ RLIMIT_CORE, 0 };
    l[4] = (struct proc_rlimit){ -1, 0 };
}

int build_start(struct app *app)
{
    const struct config *c = app->cfg;
    char hash[65], *root;

    if (the_builder)
        return -1;
    if (!(the_builder = calloc(1, sizeof *the_builder)))
        return -1;
    the_builder->app = app;
    TAILQ_INIT(&the_builder->flights);
    TAILQ_INIT(&the_builder->running);
    /* Absolute: children run elsewhere (a build in its scratch folder,
     * docker mounting host paths). */
    if (util_mkdir_p(c->build_root) == 0 && (root = realpath(c->build_root, NULL))) {
        the_builder->checkouts = util_asprintf("%s/checkouts", root);
        the_builder->builds = util_asprintf("%s/builds", root);
        free(root);
    } else {
        char cwd[PATH_MAX];
        const char *base = c->build_root[0] == '/' || !getcwd(cwd, sizeof cwd) ? "" : cwd;
        the_builder->checkouts = util_asprintf("%s%s%s/checkouts", base, *base ? "/" : "", c->build_root);
        the_builder->builds = util_asprintf("%s%s%s/builds", base, *base ? "/" : "", c->build_root);
    }
    if (!the_builder->checkouts || !the_builder->builds || parse_build_env(c->build_env) < 0)
        goto fail;
    util_sha256_hex(c->build_env, strlen(c->build_env), hash);
    snprintf(the_builder->env_hash, sizeof the_builder->env_hash, "%.16s", hash);
    /* A web-only server may have no writable BUILD_ROOT: builds fail then,
     * with the reason in their log. */
    if (util_mkdir_p(the_builder->checkouts) < 0 || util_mkdir_p(the_builder->builds) < 0)
        log_warn("build: cannot create the folders under BUILD_ROOT=%s: %s", c->build_root,
                 strerror(errno));
    limits_init(c);
    sandbox_host_probe(&the_builder->host);
    {
        struct strv env = { 0 };
        if (docker_client_env(&env) < 0) {
            strv_free(&env);
            goto fail;
        }
        the_builder->docker_env = env.v;
    }
    if (runner_is_sandboxed())
        sandbox_check();
    else if (!runner_is_docker())
        log_warn("build: BUILD_SANDBOX=none: every runner's build.sh runs on this host as "
                 "the server's own user, with its files, its network and its processes in "
                 "reach; only for runner repositories you trust completely");
    if (builds_events_start(app) < 0)
        goto fail;
    if (pg_exec(app->pg, &stmt_repair, 0, NULL, on_repaired, NULL) < 0)
        log_warn("build: cannot check for studies left building");
    return 0;
fail:
    build_stop();
    return -1;
}

void build_stop(void)
{

    if (!the_builder)
        return;
    the_builder->stopping = true;
    if (the_builder->probe) {
        proc_abandon(the_builder->probe);
        the_builder->probe = NULL;
    }
    flights_free_all();
    builds_events_stop();
    for (char **e = the_builder->extra_env; e && *e; e++)
        free(*e);
    free(the_builder->extra_env);
    for (char **e = the_builder->docker_env; e && *e; e++)
        free(*e);
    free(the_builder->docker_env);
    free(the_builder->checkouts);
    free(the_builder->builds);
    free(the_builder);
    the_builder = NULL;
}

const char *const *build_docker_env(void)
{
    static const char *const fallback[] = { "PATH=/usr/local/bin:/usr/bin:/bin", NULL };

    return the_builder && the_builder->docker_env ? (const char *const *)the_builder->docker_env : fallback;
}

const char *build_checkouts_dir(void)
{
    return the_builder ? the_builder->checkouts : NULL;
}

const char *build_builds_dir(void)
{
    return the_builder ? the_builder->builds : NULL;
}
