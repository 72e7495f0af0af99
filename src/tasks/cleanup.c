/* cleanup: the builder's nightly sweeps (cleanup_builds, cleanup_docker_images,
 * cleanup_checkouts).  See include/studyhub/tasks/cleanup.h.
 *
 * A sweep is a job's state machine (enum sweep_state, its names table,
 * sweep_step; queue/sched.h): list the candidates (one readdir of a folder we own:
 * its entries are builds and commits, a few thousand at most), ask
 * PostgreSQL which are in use, then remove the rest with `rm -rf` children
 * in batches, one batch at a time, and report.  Each callback stores its
 * result and steps again. */
#include "config.h"

#include "studyhub/tasks/cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/tasks/build.h"

#define SWEEP_AGE_S (24 * 60 * 60)     /* "older than a day" */
#define RM_BATCH 64                    /* paths per rm child */
#define RM_TIMEOUT_MS (30 * 60 * 1000)
#define PRUNE_TIMEOUT_MS (10 * 60 * 1000)
#define CANDIDATES_MAX 100000          /* entries looked at per run */

enum sweep_kind { SWEEP_BUILDS, SWEEP_CHECKOUTS };

static const char *const sweep_what[] = {
    [SWEEP_BUILDS] = "build folders",
    [SWEEP_CHECKOUTS] = "checkout entries",
};

enum sweep_state {
    SWS_LIST,      /* read the folder: the entries older than a day */
    SWS_IN_USE,    /* the query: which of them queued or running builds use */
    SWS_REMOVE,    /* rm -rf the rest, one batch (child) at a time */
    SWS_END,       /* report (outcome, text) and free */
};

static const char *const sweep_state_names[] = {
    [SWS_LIST] = "list", [SWS_IN_USE] = "in_use", [SWS_REMOVE] = "remove",
    [SWS_END] = "end",
};

/* The run's data (its state is the run's: sched_run_state). */
struct sweep {
    struct sched_run *run;     /* borrowed: the run this is the data of */
    enum sched_outcome outcome; /* SWS_END's */
    char *text;                /* owned: SWS_END's report; NULL: out of memory */
    struct app *app;           /* borrowed */
    enum sweep_kind kind;
    char *dir;                 /* owned: the folder swept */
    char **names;              /* owned: candidate entries (older than a day) */
    size_t n, cap;
    size_t next;               /* the next name to remove */
    size_t removed, kept;
    bool failed;               /* an rm child failed */
};

static void sweep_free(struct sweep *sw)
{
    for (size_t i = 0; i < sw->n; i++)
        free(sw->names[i]);
    free(sw->names);
    free(sw->dir);
    free(sw->text);
    free(sw);
}


/* To SWS_END with the run's outcome and report. */
static void sweep_finish(struct sweep *sw, enum sched_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sweep_finish(struct sweep *sw, enum sched_outcome o, const char *fmt, ...)
{
    va_list ap;

    free(sw->text);
    va_start(ap, fmt);
    if (vasprintf(&sw->text, fmt, ap) < 0)
        sw->text = NULL;
    va_end(ap);
    sw->outcome = o;
    sched_set_state(sw->run, SWS_END);
}

static void on_rm(const struct proc_result *r, void *arg)
{
    struct sweep *sw = arg;
    char how[128];

    if (!proc_result_ok(r)) {
        proc_result_describe(r, how, sizeof how);
        sched_run_log(sw->run, "rm -rf %s: %.500s", how, r->err);
        sw->failed = true;
    }
    sched_set_state(sw->run, SWS_REMOVE);    /* the next batch */
}

/* Starts the next batch of names (NULL entries were kept): true when an
 * rm child is out, false when none is left (or it could not start). */
static bool rm_batch(struct sweep *sw)
{
    const char *argv[RM_BATCH + 4];
    char *paths[RM_BATCH];
    int np = 0, na = 0;
    char err[256];
    struct proc_opts o = { .argv = argv, .timeout_ms = RM_TIMEOUT_MS, .tail_bytes = 4096 };

    argv[na++] = "rm";
    argv[na++] = "-rf";
    argv[na++] = "--";
    while (sw->next < sw->n && np < RM_BATCH) {
        char *name = sw->names[sw->next++];
        if (!name)
            continue;
        if (asprintf(&paths[np], "%s/%s", sw->dir, name) < 0)
            break;
        sched_run_log(sw->run, "removing %s", name);
        argv[na++] = paths[np++];
        sw->removed++;
    }
    argv[na] = NULL;
    if (np == 0)
        return false;
    bool started = proc_spawn(sw->app->procs, &o, on_rm, sw, err, sizeof err) != NULL;

    if (!started) {
        sched_run_log(sw->run, "cannot start rm: %s", err);
        sw->failed = true;
        sw->next = sw->n;
    }
    for (int i = 0; i < np; i++)
        free(paths[i]);
    return started;
}

/* Entries of sw->dir whose modification time is older than a day. */
static int list_old(struct sweep *sw)
{
    DIR *d = opendir(sw->dir);
    struct dirent *de;
    time_t cutoff = time(NULL) - SWEEP_AGE_S;
    size_t seen = 0;

    if (!d)
        return errno == ENOENT ? 0 : -1;
    while ((de = readdir(d)) && seen++ < CANDIDATES_MAX) {
        struct stat sb;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            sb.st_mtime > cutoff)
            continue;
        if (sw->n == sw->cap) {
            size_t cap = sw->cap ? sw->cap * 2 : 64;
            char **v = realloc(sw->names, cap * sizeof *v);
            if (!v)
                break;
            sw->names = v;
            sw->cap = cap;
        }
        if (!(sw->names[sw->n] = strdup(de->d_name)))
            break;
        sw->n++;
    }
    closedir(d);
    return 0;
}

/* What queued and running builds use: their task uuids (build folders)
 * and commits (checkouts). */
static const struct pg_stmt stmt_in_use = {
    "cleanup_build_in_use",
    "SELECT t.uuid::text, b.sha FROM tasks t LEFT JOIN study_builds b ON b.task_id = t.id"
    " WHERE t.kind = 'build_experiment' AND t.state IN ('queued', 'running')",
};

/* A checkout entry belongs to a commit: "<sha>", "<sha>.zip",
 * ".dl-<sha>-...", ".tmp-<sha>-...". */
static bool entry_uses(const char *name, const char *sha)
{
    size_t n = strlen(sha);

    if (!n)
        return false;
    if (strncmp(name, ".dl-", 4) == 0)
        name += 4;
    else if (strncmp(name, ".tmp-", 5) == 0)
        name += 5;
    return strncmp(name, sha, n) == 0;
}

static void on_in_use(PGresult *res, void *arg)
{
    struct sweep *sw = arg;

    if (!res || !pg_ok(res)) {
        sweep_finish(sw, SCHED_FAILED, "cannot ask which builds run: %s",
                     res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    for (size_t i = 0; i < sw->n; i++) {
        for (int r = 0; r < PQntuples(res); r++) {
            bool used = sw->kind == SWEEP_BUILDS
                            ? strncmp(sw->names[i], PQgetvalue(res, r, 0), 36) == 0
                            : !PQgetisnull(res, r, 1) && entry_uses(sw->names[i],
                                                                   PQgetvalue(res, r, 1));
            if (used) {
                sched_run_log(sw->run, "keeping %s: in use", sw->names[i]);
                free(sw->names[i]);
                sw->names[i] = NULL;
                sw->kept++;
                break;
            }
        }
    }
    sched_set_state(sw->run, SWS_REMOVE);
}

static void sweep_step(struct sched_run *run)
{
    struct sweep *sw = sched_run_data(run);

    switch ((enum sweep_state)sched_run_state(run)) {
    case SWS_LIST:
        if (list_old(sw) < 0)
            sweep_finish(sw, SCHED_FAILED, "cannot list %s: %s", sw->dir, strerror(errno));
        else if (sw->n == 0)
            sweep_finish(sw, SCHED_SUCCEEDED, "no %s older than a day in %s",
                         sweep_what[sw->kind], sw->dir);
        else
            sched_set_state(run, SWS_IN_USE);
        return;
    case SWS_IN_USE:
        if (pg_exec(sw->app->pg, &stmt_in_use, 0, NULL, on_in_use, sw) < 0)
            sweep_finish(sw, SCHED_FAILED, "cannot queue the query");
        return;     /* else on_in_use goes on */
    case SWS_REMOVE:
        if (rm_batch(sw))
            return;     /* on_rm goes on */
        if (sw->failed)
            sweep_finish(sw, SCHED_FAILED, "removed %zu %s older than a day (%zu in "
                         "use kept); some could not be removed", sw->removed,
                         sweep_what[sw->kind], sw->kept);
        else
            sweep_finish(sw, SCHED_SUCCEEDED, "removed %zu %s older than a day (%zu "
                         "in use kept)", sw->removed, sweep_what[sw->kind], sw->kept);
        return;
    case SWS_END:
        sched_done(run, sw->outcome, "%s", sw->text ? sw->text : "out of memory");
        return;     /* sweep_close frees sw */
    }
}

static int sweep_open(struct sched_run *run, char *err, size_t errlen)
{
    enum sweep_kind kind = *(const enum sweep_kind *)sched_run_arg(run);
    const char *dir = kind == SWEEP_BUILDS ? build_builds_dir() : build_checkouts_dir();
    struct sweep *sw;

    if (!dir) {
        snprintf(err, errlen, "the builder is not set up");
        return -1;
    }
    if (!(sw = calloc(1, sizeof *sw)) || !(sw->dir = strdup(dir))) {
        free(sw);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sw->run = run;
    sw->app = sched_run_app(run);
    sw->kind = kind;
    sched_run_set_data(run, sw);
    return 0;
}

static void sweep_close(struct sched_run *run)
{
    sweep_free(sched_run_data(run));
}

static const enum sweep_kind sweep_builds = SWEEP_BUILDS, sweep_checkouts = SWEEP_CHECKOUTS;

const struct sched_job cleanup_builds_job = {
    .name = "cleanup_builds", .states = sweep_state_names, .nstates = SWS_END + 1,
    .initial_state = SWS_LIST, .arg = &sweep_builds,
    .open = sweep_open, .step = sweep_step, .close = sweep_close,
};

const struct sched_job cleanup_checkouts_job = {
    .name = "cleanup_checkouts", .states = sweep_state_names, .nstates = SWS_END + 1,
    .initial_state = SWS_LIST, .arg = &sweep_checkouts,
    .open = sweep_open, .step = sweep_step, .close = sweep_close,
};

/* -- docker images */

static void on_prune(const struct proc_result *r, void *arg)
{
    struct sched_run *run = arg;
    char how[128];

    proc_result_describe(r, how, sizeof how);
    if (r->out_len)
        sched_run_log(run, "%s", r->out);
    if (r->err_len)
        sched_run_log(run, "stderr: %s", r->err);
    if (proc_result_ok(r))
        sched_done(run, SCHED_SUCCEEDED, "docker image prune: %s after %.1f s", how,
                   r->duration_s);
    else
        sched_done(run, SCHED_FAILED, "docker image prune: %s", how);
}

/* One state: the prune child runs. */
enum prune_state { PRUNE_RUN };

static const char *const prune_state_names[] = { [PRUNE_RUN] = "prune" };

static void prune_step(struct sched_run *run)
{
    struct app *app = sched_run_app(run);
    const struct config *c = app->cfg;
    /* Dangling images a day old: a build running now keeps its image. */
    const char *argv[] = { c->docker_bin, "image", "prune", "-f", "--filter", "until=24h", NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = PRUNE_TIMEOUT_MS, .tail_bytes = 8192,
                           .envp = build_docker_env() };
    char err[256];

    switch ((enum prune_state)sched_run_state(run)) {
    case PRUNE_RUN:
        if (strcmp(c->build_runner, "docker") != 0) {
            sched_done(run, SCHED_SUCCEEDED, "nothing to do: BUILD_RUNNER is %s, not docker",
                       c->build_runner);
            return;
        }
        sched_run_log(run, "$ %s image prune -f --filter until=24h", c->docker_bin);
        if (!proc_spawn(app->procs, &o, on_prune, run, err, sizeof err))
            sched_done(run, SCHED_FAILED, "cannot run %s: %s", c->docker_bin, err);
        return;
    }
}

const struct sched_job cleanup_docker_images_job = {
    .name = "cleanup_docker_images", .states = prune_state_names, .nstates = 1,
    .initial_state = PRUNE_RUN, .step = prune_step,
};
