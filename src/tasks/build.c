/* build: the build_experiment task kind, its HTTP routes and its live event
 * stream.  See include/studyhub/tasks/build.h for the stages and promises,
 * sql/050_builds.sql for the statements that keep them.
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

#include "studyhub/tasks/build.h"

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

#define DL_ATTEMPTS 4               /* archive download attempts */
#define DL_BACKOFF_MS 1000          /* first retry delay, doubled */
#define API_MAX_BODY (1 << 20)      /* GitHub API answers kept */
#define CHILD_TAIL (16 * 1024)      /* bytes of each child stream kept */
#define OP_TRIES 4                  /* storage operation attempts */
#define OP_BACKOFF_MS 500           /* first retry delay, doubled */
#define WALK_TURN 256               /* directory entries read per loop turn */
#define WALK_DEPTH 64               /* deepest output folder */
#define SETTLE_RETRY_MS 2000        /* database away in 'finish' */
#define DOCKER_RM_TIMEOUT_MS 60000
#define MAX_REBUILDS 2              /* downloads again after a vanished product */
#define SKIP_LOG_MAX 10             /* skipped output entries named in the log */
#define PROBE_TIMEOUT_MS 20000      /* the sandbox check at start */
#define PROBE_WAIT_MS 200           /* a build waiting for that check */
#define DISK_CHECK_MS 5000          /* between measures of a running build's folders */
#define DISK_DU_TIMEOUT_MS 60000

/* ---- the module -------------------------------------------------------------- */

struct flight;
TAILQ_HEAD(flight_list, flight);

/* Whether BUILD_SANDBOX=bwrap works here: checked once at start by running
 * the sandbox itself; until it answers, builds wait; when it failed, every
 * local build is refused (never run unsandboxed behind the operator's back). */
enum sandbox_state { SB_UNUSED, SB_CHECKING, SB_OK, SB_BROKEN };

struct builder {
    struct app *app;                 /* borrowed */
    char *checkouts;                 /* owned: BUILD_ROOT/checkouts */
    char *builds;                    /* owned: BUILD_ROOT/builds */
    char env_hash[17];               /* of BUILD_ENV: part of the cache key */
    char **extra_env;                /* owned: BUILD_ENV as "K=V", NULL-terminated */
    struct flight_list flights;      /* owned: downloads and extractions */
    bool stopping;
    /* the sandbox of BUILD_RUNNER=local */
    enum sandbox_state sandbox;
    char sandbox_err[600];           /* why it is SB_BROKEN */
    struct proc *probe;              /* the check at start, while it runs */
    struct sandbox_host host;        /* /bin, /lib...: links or folders */
    struct proc_rlimit limits[5];    /* of every build process */
    char **docker_env;               /* owned: the docker client's environment */
};

static struct builder *B;

/* Outbound HTTP and storage are main's (app->fetch, app->storage). */
static struct fetch_client *bl_fetch(void)
{
    return B->app->fetch;
}

static struct storage *bl_storage(const char **err)
{
    if (!B->app->storage)
        *err = "the server has no object storage set up";
    return B->app->storage;
}

/* ---- small helpers -------------------------------------------------------------- */

static bool is_sha(const char *s)
{
    if (!s || strlen(s) != 40)
        return false;
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_dir(const char *path)
{
    struct stat sb;

    return lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool exists(const char *path)
{
    struct stat sb;

    return lstat(path, &sb) == 0;
}

/* True when path is a folder with at least one entry. */
static bool dir_nonempty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    bool any = false;

    if (!d)
        return false;
    while (!any && (de = readdir(d)))
        any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return any;
}

static bool is_index_html(const char *rel)
{
    const char *slash = strrchr(rel, '/');

    return strcmp(slash ? slash + 1 : rel, "index.html") == 0;
}

/* A NULL-terminated list of owned strings. */
struct strv {
    char **v;
    size_t n, cap;
};

static int strv_add(struct strv *s, char *str)
{
    if (!str)
        return -1;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            free(str);
            return -1;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    s->v[s->n] = NULL;
    return 0;
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- the kind: states and data ------------------------------------------------------ */

enum build_state { BS_RESOLVE, BS_DOWNLOAD, BS_EXTRACT, BS_BUILD, BS_UPLOAD, BS_FINISH };

static const char *const build_state_names[] = {
    [BS_RESOLVE] = "resolve_sha",
    [BS_DOWNLOAD] = "download",
    [BS_EXTRACT] = "extract",
    [BS_BUILD] = "build",
    [BS_UPLOAD] = "upload",
    [BS_FINISH] = "finish",
};
#define BS_COUNT ((int)(sizeof build_state_names / sizeof *build_state_names))

/* What 'finish' reports; UNKNOWN after a restart in 'finish' itself: the
 * settle statement derives it from the saved stages. */
enum build_outcome { BO_UNKNOWN, BO_SUCCEEDED, BO_FAILED, BO_CANCELLED };
static const char *const outcome_names[] = { NULL, "succeeded", "failed", "cancelled" };

static const char *const stage_outcome_names[] = { "succeeded", "failed", "skipped" };

struct upload;

/* The children of the build stage, in order. */
enum { CH_DOCKER_RM, CH_COPY, CH_IMAGE, CH_RUN };

struct build {
    struct task *t;                 /* borrowed: its task */
    bool deploy;                    /* mode: deploy, else preview */
    char study_uuid[37];
    /* read by bl_load */
    bool loaded;
    char *study_name;               /* owned */
    char *meta_repo;                /* owned: metadata.player_repo_url; NULL none */
    char *meta_sha;                 /* owned: metadata.last_known_player_sha; NULL none */
    bool repo_approved;             /* the default repository, or approved for the study */
    /* resolved */
    char *repo_url;                 /* owned */
    char owner[128], repo[128];     /* GitHub's names of it */
    char sha[41];                   /* "" until resolved */
    char cache_key[65];             /* "" until resolved */
    json_t *manifest;               /* owned: the cached runner's files; NULL none */
    char *checkout;                 /* owned: checkouts/<sha> */
    char *zip;                      /* owned: checkouts/<sha>.zip */
    char *work;                     /* owned: builds/<task uuid> */
    char *out;                      /* owned: work/out (STUDY_OUTPUT_DIR) */
    char *scratch;                  /* owned: work/scratch */
    /* the end */
    enum build_outcome outcome;
    char error[1024];
    int announced;                  /* last stage published; -1 none */
    bool moving;                    /* a stage change is on its way */
    /* the work in progress; at most one of these is set */
    bool pg_busy;                   /* a task_pg_exec is out */
    struct fetch_req *req;          /* a GitHub API call */
    int api_step;                   /* 0: repository, 1: branch head */
    char branch[256];
    struct flight *flight;          /* the download or extraction waited on */
    TAILQ_ENTRY(build) wlink;       /* in flight->waiters */
    struct proc *proc;              /* the current child */
    /* the disk watch of the build child: du of scratch and output */
    struct event *disk_timer;       /* owned */
    struct proc *du;                /* the measure in progress */
    bool disk_exceeded;             /* the build was killed for it */
    int child;                      /* which child of the build stage */
    int64_t deadline_ms;            /* monotonic end of BUILD_TIMEOUT_S */
    struct upload *up;              /* owned */
    struct event *timer;            /* owned: 'finish' retries */
    json_t *final_ev;               /* owned: the "finished" event, sent by close */
    int rebuilds;                   /* downloads again after a lost product */
    char container[64];             /* docker: our container's name */
};

static void bl_stop(struct build *b, enum build_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *state_name(int s)
{
    return s >= 0 && s < BS_COUNT ? build_state_names[s] : "?";
}

static void announce(struct build *b, int state, int previous,
                     enum task_stage_outcome prev_outcome)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "stage", "study",
                           b->study_uuid, "task", b->t->uuid, "mode",
                           b->deploy ? "deploy" : "preview", "stage", state_name(state));

    if (!ev)
        return;
    if (previous >= 0) {
        json_object_set_new(ev, "previous", json_string(state_name(previous)));
        json_object_set_new(ev, "previous_outcome",
                            json_string(stage_outcome_names[prev_outcome]));
    }
    if (b->t->resumed && previous < 0)
        json_object_set_new(ev, "resumed", json_true());
    b->announced = state;
    builds_publish(B->app, ev);
}

/* The one way to the next stage. */
static void bl_move(struct build *b, int state, enum task_stage_outcome o)
{
    b->moving = true;
    announce(b, state, b->t->state, o);
    task_set_state(b->t, state, o);
}

/* ---- flights: one download or extraction of a commit, shared ------------------------ */

enum flight_kind { FL_DOWNLOAD, FL_EXTRACT };
TAILQ_HEAD(waiter_list, build);

struct flight {
    TAILQ_ENTRY(flight) link;
    enum flight_kind kind;
    char *key;                  /* owned: the zip (download) or the checkout (extract) */
    char *url;                  /* owned: download: the archive's URL */
    char *part;                 /* owned: download: where it is written */
    int fd;                     /* download: the part file, -1 none */
    uint64_t bytes;             /* download: bytes written this attempt */
    int attempt;                /* download: attempts made */
    char err[512];              /* download: why the write stopped */
    struct fetch_req *req;      /* download: the transfer */
    struct event *timer;        /* owned: download retry */
    struct archive_job *job;    /* extract: the child */
    struct waiter_list waiters; /* the builds waiting (borrowed) */
    int64_t owner_task;         /* the task that started it, for logs */
    int64_t started_ms;         /* monotonic */
};

static void on_flight_done(struct build *b, enum flight_kind kind, bool ok, const char *msg);

static struct flight *flight_find(enum flight_kind kind, const char *key)
{
    struct flight *f;

    TAILQ_FOREACH(f, &B->flights, link)
        if (f->kind == kind && strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void flight_free(struct flight *f)
{
    if (f->req)
        fetch_cancel(f->req);
    if (f->job)
        archive_job_cancel(f->job);
    if (f->fd >= 0)
        close(f->fd);
    if (f->part) {
        unlink(f->part);
        free(f->part);
    }
    if (f->timer)
        event_free(f->timer);
    free(f->key);
    free(f->url);
    free(f);
}

static void flight_join(struct flight *f, struct build *b)
{
    b->flight = f;
    TAILQ_INSERT_TAIL(&f->waiters, b, wlink);
}

static void flight_leave(struct build *b)
{
    if (!b->flight)
        return;
    TAILQ_REMOVE(&b->flight->waiters, b, wlink);
    b->flight = NULL;
    /* A flight nobody waits for runs on: its product (a checkout) is
     * what the next build of the commit needs anyway. */
}

/* The end: every waiter is told, then it is freed. */
static void flight_finish(struct flight *f, bool ok, const char *msg)
{
    struct build *b;

    TAILQ_REMOVE(&B->flights, f, link);
    while ((b = TAILQ_FIRST(&f->waiters))) {
        TAILQ_REMOVE(&f->waiters, b, wlink);
        b->flight = NULL;
        on_flight_done(b, f->kind, ok, msg);
    }
    flight_free(f);
}

static struct flight *flight_new(enum flight_kind kind, const char *key, int64_t owner)
{
    struct flight *f = calloc(1, sizeof *f);

    if (!f)
        return NULL;
    f->kind = kind;
    f->fd = -1;
    f->owner_task = owner;
    f->started_ms = util_mono_ms();
    TAILQ_INIT(&f->waiters);
    if (!(f->key = strdup(key))) {
        free(f);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&B->flights, f, link);
    return f;
}

/* -- download */

static void dl_attempt(struct flight *f);

static int dl_write(const char *data, size_t len, void *arg)
{
    struct flight *f = arg;
    uint64_t max = (uint64_t)B->app->cfg->max_archive_bytes;

    if (len > max - f->bytes) {
        snprintf(f->err, sizeof f->err, "the archive is larger than MAX_ARCHIVE_BYTES=%" PRIu64,
                 max);
        return FETCH_ABORT;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(f->fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            snprintf(f->err, sizeof f->err, "cannot write %s: %s", f->part, strerror(errno));
            return FETCH_ABORT;
        }
        off += (size_t)w;
    }
    f->bytes += len;
    return 0;
}

static void on_dl_timer(evutil_socket_t fd, short what, void *arg)
{
    dl_attempt(arg);
}

/* A zip ends with its end-of-central-directory record ("PK\5\6", within
 * the last 22 + 65535 bytes): without it the archive was cut. */
static bool zip_has_end(const char *path)
{
    static const char sig[4] = { 'P', 'K', 5, 6 };
    char buf[22 + 65535];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t size, from;
    ssize_t n;
    bool found = false;

    if (fd < 0)
        return false;
    size = lseek(fd, 0, SEEK_END);
    from = size > (off_t)sizeof buf ? size - (off_t)sizeof buf : 0;
    n = size >= 22 ? pread(fd, buf, (size_t)(size - from), from) : -1;
    close(fd);
    for (ssize_t i = n - 22; i >= 0 && !found; i--)
        found = memcmp(buf + i, sig, 4) == 0;
    return found;
}

/* Whether a 200 brought the whole archive: as many bytes as its
 * Content-Length said (when it said one, without an encoding), and the
 * end of a zip.  A server or proxy that closes early without a length is
 * otherwise seen as a success.  Else false with the reason in why. */
static bool dl_whole(struct flight *f, const struct fetch_result *res, char *why, size_t n)
{
    char len[32], enc[64];

    if (fetch_header(res, "Content-Length", len, sizeof len) &&
        !fetch_header(res, "Content-Encoding", enc, sizeof enc) &&
        strtoull(len, NULL, 10) != f->bytes) {
        snprintf(why, n, "the download was cut short: %" PRIu64 " of %s bytes arrived", f->bytes,
                 len);
        return false;
    }
    if (!zip_has_end(f->part)) {
        snprintf(why, n, "the download was cut short: the %" PRIu64 " bytes that arrived are not "
                 "a whole zip archive (no end of central directory)", f->bytes);
        return false;
    }
    return true;
}

static void on_dl_done(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    struct flight *f = arg;
    char msg[800] = "";
    bool retry, cut = false;

    f->req = NULL;
    if (!res->error && res->status == 200 && !(cut = !dl_whole(f, res, msg, sizeof msg))) {
        if (close(f->fd) < 0 || rename(f->part, f->key) < 0) {
            f->fd = -1;
            snprintf(msg, sizeof msg, "cannot keep the archive at %s: %s", f->key,
                     strerror(errno));
            flight_finish(f, false, msg);
            return;
        }
        f->fd = -1;
        free(f->part);
        f->part = NULL;
        snprintf(msg, sizeof msg, "downloaded %s: %" PRIu64 " bytes in %.1f s (%d attempt%s)",
                 f->url, f->bytes, (double)(util_mono_ms() - f->started_ms) / 1000.0, f->attempt,
                 f->attempt == 1 ? "" : "s");
        flight_finish(f, true, msg);
        return;
    }
    if (f->err[0]) {
        snprintf(msg, sizeof msg, "%s", f->err);
    } else if (cut) {
        /* msg says why (dl_whole) */
    } else if (res->error && res->status == 200) {
        /* The answer began (200) and broke off: curl's partial file, a
         * reset, a timeout in the middle. */
        cut = true;
        snprintf(msg, sizeof msg, "the download was cut short after %" PRIu64 " bytes: %s",
                 f->bytes, res->error);
    } else if (res->error && res->status == 0) {
        snprintf(msg, sizeof msg, "%s", res->error);
    } else {
        snprintf(msg, sizeof msg, "HTTP %d%s%.200s", res->status, res->body_len ? ": " : "",
                 res->body);
    }
    /* Network trouble, cut downloads and server errors pass; a 404 (no
     * such commit) or an archive over the limit does not. */
    retry = !f->err[0] && (cut || res->status == 0 || res->status >= 500 ||
                           res->status == 429);
    log_info("build: download of %s, attempt %d: %s%s", f->url, f->attempt, msg,
             retry && f->attempt < DL_ATTEMPTS ? "; retrying" : "");
    if (retry && f->attempt < DL_ATTEMPTS) {
        struct build *w;
        TAILQ_FOREACH(w, &f->waiters, wlink)
            task_log(w->t, "attempt %d of the download: %s; trying again", f->attempt, msg);
    }
    if (retry && f->attempt < DL_ATTEMPTS) {
        util_timer_ms(f->timer, (int64_t)DL_BACKOFF_MS << (f->attempt - 1));
        return;
    }
    {
        char full[1000];
        snprintf(full, sizeof full, "cannot download %s after %d attempt%s: %s", f->url,
                 f->attempt, f->attempt == 1 ? "" : "s", msg);
        flight_finish(f, false, full);
    }
}

static void dl_attempt(struct flight *f)
{
    const struct config *c = B->app->cfg;
    struct fetch_opts o = {
        .method = "GET",
        .url = f->url,
        .write_fn = dl_write,
        .write_arg = f,
        .follow_redirects = true,   /* GitHub answers with codeload's URL */
        .connect_timeout_ms = 10000,
        .timeout_ms = c->build_fetch_timeout_s * 1000,
        .max_attempts = 1,          /* retried here, from byte 0 */
        .done = on_dl_done,
        .arg = f,
    };

    f->attempt++;
    f->bytes = 0;
    f->err[0] = '\0';
    if (!bl_fetch() || ftruncate(f->fd, 0) < 0 || lseek(f->fd, 0, SEEK_SET) < 0 ||
        !(f->req = fetch_submit(bl_fetch(), &o))) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot start the download: %s", strerror(errno));
        flight_finish(f, false, msg);
    }
}

/* Starts the download of b's commit with b waiting on it.  -1 when it
 * could not be set up (b is not told); a first attempt that fails at once
 * is told to b through the flight, like any other failure. */
static int dl_start(struct build *b)
{
    char rnd[17];
    struct flight *f = flight_new(FL_DOWNLOAD, b->zip, b->t->id);

    if (!f)
        return -1;
    util_random_hex(8, rnd);
    f->url = util_asprintf("%s/archive/%s.zip", b->repo_url, b->sha);
    f->part = util_asprintf("%s/.dl-%s-%s.part", B->checkouts, b->sha, rnd);
    f->timer = evtimer_new(B->app->base, on_dl_timer, f);
    if (!f->url || !f->part || !f->timer) {
        TAILQ_REMOVE(&B->flights, f, link);
        flight_free(f);
        return -1;
    }
    f->fd = open(f->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        TAILQ_REMOVE(&B->flights, f, link);
        free(f->part);
        f->part = NULL;
        flight_free(f);
        return -1;
    }
    task_log(b->t, "GET %s", f->url);
    flight_join(f, b);
    /* f may be gone after this (a transfer that cannot even start). */
    dl_attempt(f);
    return 0;
}

/* -- extraction */

static void on_extracted(int err, const char *msg, bool reused,
                         const struct archive_stats *st, void *arg)
{
    struct flight *f = arg;
    char text[800];

    f->job = NULL;
    /* Used up either way: a refused archive is fetched again next time. */
    unlink(f->url);
    if (err) {
        /* A checkout that appeared meanwhile (another server) is fine. */
        if (is_dir(f->key)) {
            flight_finish(f, true, "the checkout was made meanwhile by someone else; reused");
            return;
        }
        snprintf(text, sizeof text, "the archive was refused: %s", msg);
        flight_finish(f, false, text);
        return;
    }
    if (reused)
        snprintf(text, sizeof text, "the checkout was made meanwhile by someone else; reused");
    else
        snprintf(text, sizeof text, "extracted %" PRIu64 " files, %" PRIu64 " folders, %"
                 PRIu64 " links, %" PRIu64 " bytes in %.1f s", st->files, st->dirs, st->links,
                 st->bytes, (double)(util_mono_ms() - f->started_ms) / 1000.0);
    flight_finish(f, true, text);
}

static struct flight *ex_start(struct build *b, char *err, size_t errlen)
{
    const struct config *c = B->app->cfg;
    struct archive_limits lim = { .max_bytes = (uint64_t)c->max_archive_bytes,
                                  .max_files = (uint64_t)c->max_archive_files };
    struct flight *f = flight_new(FL_EXTRACT, b->checkout, b->t->id);
    const char *slash;
    char *top;

    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->url = strdup(b->zip);    /* the archive, removed when done */
    /* GitHub's archive of <owner>/<repo> at <sha> holds <repo>-<sha>/.  A
     * build resumed past resolve_sha knows only the URL it saved (already
     * without trailing slash and ".git"): the name is its last part. */
    slash = strrchr(b->repo_url, '/');
    top = util_asprintf("%s-%s", b->repo[0] ? b->repo : slash ? slash + 1 : b->repo_url,
                        b->sha);
    if (f->url && top)
        f->job = archive_extract_start(B->app->procs, NULL, b->zip, b->checkout, top, &lim,
                                       c->build_timeout_s * 1000, on_extracted, f, err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    free(top);
    if (!f->job) {
        TAILQ_REMOVE(&B->flights, f, link);
        flight_free(f);
        return NULL;
    }
    flight_join(f, b);
    return f;
}

/* ---- uploads: walk the output, put it under runners/<key>/, copy it -------------- */

struct upfile {
    char *rel;          /* owned: path under the output folder */
    int64_t size;
    const char *type;   /* static */
};

struct upslot {
    struct upload *up;          /* borrowed: its upload */
    long item;                  /* index into order[], -1 idle */
    int tries;
    struct storage_op *op;      /* the operation in flight */
    struct event *timer;        /* owned: retry delay */
};

enum up_phase { UP_WALK, UP_PUT, UP_COPY };

struct walkdir {
    DIR *d;             /* owned */
    char *rel;          /* owned: "" at the top */
};

struct upload {
    struct build *b;            /* borrowed */
    enum up_phase phase;
    bool cached;                /* files came from the cache's manifest */
    char *src_dir;              /* owned: the output folder (walk, put) */
    char *cache_prefix;         /* owned: runners/<key>/ */
    char *dest_prefix;          /* owned: experiments/<uuid>/ or preview_... */
    struct walkdir stack[WALK_DEPTH];
    int depth;
    struct event *walk_ev;      /* owned: one walk slice per loop turn */
    size_t skipped;
    struct upfile *files;       /* owned */
    size_t nfiles, cap;
    uint64_t bytes;
    size_t *order;              /* owned: file indexes, index.html last */
    size_t next, done;          /* in order[] */
    unsigned retries;           /* operations tried again */
    struct upslot *slots;       /* owned */
    int nslots;
    int64_t phase_ms;           /* monotonic start of the phase */
};

static void up_free(struct upload *up)
{
    if (!up)
        return;
    for (int i = 0; i < up->nslots; i++) {
        if (up->slots[i].op)
            storage_cancel(up->slots[i].op);
        if (up->slots[i].timer)
            event_free(up->slots[i].timer);
    }
    free(up->slots);
    while (up->depth > 0) {
        up->depth--;
        closedir(up->stack[up->depth].d);
        free(up->stack[up->depth].rel);
    }
    if (up->walk_ev)
        event_free(up->walk_ev);
    for (size_t i = 0; i < up->nfiles; i++)
        free(up->files[i].rel);
    free(up->files);
    free(up->order);
    free(up->src_dir);
    free(up->cache_prefix);
    free(up->dest_prefix);
    free(up);
}

static void up_fail(struct upload *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void up_fail(struct upload *up, const char *fmt, ...)
{
    struct build *b = up->b;
    char msg[800];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->up = NULL;
    up_free(up);
    bl_stop(b, BO_FAILED, "%s", msg);
}

static int up_add(struct upload *up, const char *rel, int64_t size, const char *type)
{
    if (up->nfiles == up->cap) {
        size_t cap = up->cap ? up->cap * 2 : 64;
        struct upfile *f = realloc(up->files, cap * sizeof *f);
        if (!f)
            return -1;
        up->files = f;
        up->cap = cap;
    }
    if (!(up->files[up->nfiles].rel = strdup(rel)))
        return -1;
    up->files[up->nfiles].size = size;
    up->files[up->nfiles].type = type;
    up->nfiles++;
    up->bytes += (uint64_t)(size > 0 ? size : 0);
    return 0;
}

static void up_phase_done(struct upload *up);
static void slot_next(struct upslot *s);
static void slot_start(struct upslot *s);
static void bl_cache_gone(struct build *b, const char *what);

static void on_op_timer(evutil_socket_t fd, short what, void *arg)
{
    slot_start(arg);    /* the same item again */
}

static void on_op_done(const struct storage_result *res, void *arg)
{
    struct upslot *s = arg;
    struct upload *up = s->up;
    struct build *b = up->b;
    const struct upfile *f = &up->files[up->order[s->item]];

    s->op = NULL;
    if (res->err == 0) {
        up->done++;
        s->tries = 0;
        slot_next(s);
        return;
    }
    if (res->err == -ENOENT && up->phase == UP_COPY && up->cached) {
        /* The cached runner's files are gone from storage. */
        char what[400];
        snprintf(what, sizeof what, "%s%s: %s", up->cache_prefix, f->rel,
                 res->error ? res->error : "missing");
        b->up = NULL;
        up_free(up);
        bl_cache_gone(b, what);
        return;
    }
    if ((res->err == -EIO || res->err == -ENOMEM) && ++s->tries < OP_TRIES) {
        up->retries++;
        task_log(b->t, "%s of %s failed (%s); trying again", up->phase == UP_PUT
                 ? "upload" : "copy", f->rel, res->error ? res->error : "error");
        util_timer_ms(s->timer, (int64_t)OP_BACKOFF_MS << (s->tries - 1));
        return;
    }
    up_fail(up, "%s of %s failed after %d attempt%s: %s", up->phase == UP_PUT ? "upload" : "copy",
            f->rel, s->tries + 1, s->tries ? "s" : "", res->error ? res->error : "error");
}

/* Starts the operation of the slot's item (first try or again). */
static void slot_start(struct upslot *s)
{
    struct upload *up = s->up;
    struct storage *st;
    const char *err = NULL;
    char *key = NULL, *src = NULL;
    const struct upfile *f = &up->files[up->order[s->item]];

    st = bl_storage(&err);
    if (!st) {
        up_fail(up, "no storage: %s", err ? err : "?");
        return;
    }
    if (up->phase == UP_PUT) {
        key = util_asprintf("%s%s", up->cache_prefix, f->rel);
        src = util_asprintf("%s/%s", up->src_dir, f->rel);
        if (key && src)
            s->op = storage_put_file(st, key, src, f->type, on_op_done, s);
    } else {
        src = util_asprintf("%s%s", up->cache_prefix, f->rel);
        key = util_asprintf("%s%s", up->dest_prefix, f->rel);
        if (key && src)
            s->op = storage_copy(st, src, key, on_op_done, s);
    }
    free(key);
    free(src);
    if (!s->op)
        up_fail(up, "out of memory starting the upload of %s", f->rel);
}

/* Takes the next item for the slot, or notices the end of the phase. */
static void slot_next(struct upslot *s)
{
    struct upload *up = s->up;

    if (up->next >= up->nfiles) {
        s->item = -1;
        if (up->done == up->nfiles)
            up_phase_done(up);
        return;
    }
    s->item = (long)up->next++;
    s->tries = 0;
    slot_start(s);
}

static void up_run_phase(struct upload *up, enum up_phase phase)
{
    size_t k = 0;

    up->phase = phase;
    up->next = up->done = 0;
    up->phase_ms = util_mono_ms();
    if (!up->order && up->nfiles) {
        /* index.html last: until it changes, the old runner keeps working. */
        if (!(up->order = malloc(up->nfiles * sizeof *up->order))) {
            up_fail(up, "out of memory");
            return;
        }
        for (size_t i = 0; i < up->nfiles; i++)
            if (!is_index_html(up->files[i].rel))
                up->order[k++] = i;
        for (size_t i = 0; i < up->nfiles; i++)
            if (is_index_html(up->files[i].rel))
                up->order[k++] = i;
    }
    if (up->nfiles == 0) {
        up_phase_done(up);
        return;
    }
    {
        /* A slot may fail the whole upload (and free it): stop then. */
        struct build *b = up->b;
        int n = up->nslots;
        for (int i = 0; i < n && b->up == up; i++)
            if (up->slots[i].item < 0 && !up->slots[i].op)
                slot_next(&up->slots[i]);
    }
}

static void on_recorded(struct task *t, PGresult *res);

/* The manifest of the runner: what the copy of a cached runner needs. */
static json_t *up_manifest(const struct upload *up)
{
    json_t *m = json_array();

    for (size_t i = 0; m && i < up->nfiles; i++)
        json_array_append_new(m, json_pack("{s:s, s:I, s:s}", "path", up->files[i].rel,
                                           "size", (json_int_t)up->files[i].size, "type",
                                           up->files[i].type));
    return m;
}

static const struct pg_stmt stmt_record = {
    "build_record_runner",
    "WITH r AS (INSERT INTO runner_builds (cache_key, repo_url, sha, manifest, files, bytes,"
    "                                     built_by)"
    "           VALUES ($1, $2, $3, $4::jsonb, $5::int, $6::bigint, $7::bigint)"
    "           ON CONFLICT (cache_key) DO UPDATE SET manifest = EXCLUDED.manifest,"
    "             files = EXCLUDED.files, bytes = EXCLUDED.bytes,"
    "             built_by = EXCLUDED.built_by, last_used_at = now()"
    "           RETURNING cache_key)"
    " UPDATE study_builds SET reused = false WHERE task_id = $7::bigint"
    "   AND EXISTS (SELECT 1 FROM r)",
};

static void up_phase_done(struct upload *up)
{
    struct build *b = up->b;
    double secs = (double)(util_mono_ms() - up->phase_ms) / 1000.0;

    if (up->phase == UP_PUT) {
        char files[24], bytes[24], task[24];
        json_t *m = up_manifest(up);
        char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        const char *params[7];

        json_decref(m);
        task_log(b->t, "uploaded %zu files (%" PRIu64 " bytes) to %s in %.1f s", up->nfiles,
                 up->bytes, up->cache_prefix, secs);
        if (!text) {
            up_fail(up, "out of memory");
            return;
        }
        snprintf(files, sizeof files, "%zu", up->nfiles);
        snprintf(bytes, sizeof bytes, "%" PRIu64, up->bytes);
        snprintf(task, sizeof task, "%" PRId64, b->t->id);
        params[0] = b->cache_key;
        params[1] = b->repo_url;
        params[2] = b->sha;
        params[3] = text;
        params[4] = files;
        params[5] = bytes;
        params[6] = task;
        b->pg_busy = true;
        if (task_pg_exec(b->t, &stmt_record, 7, params, on_recorded) < 0) {
            b->pg_busy = false;
            free(text);
            up_fail(up, "cannot record the runner: out of memory");
            return;
        }
        free(text);
        return;
    }
    /* UP_COPY: the study's folder has the runner. */
    task_log(b->t, "copied %zu files (%" PRIu64 " bytes) to %s in %.1f s%s", up->nfiles,
             up->bytes, up->dest_prefix, secs, up->cached ? " from the cached runner" : "");
    if (up->retries)
        task_log(b->t, "%u operations were tried again", up->retries);
    b->up = NULL;
    up_free(up);
    b->outcome = BO_SUCCEEDED;
    bl_move(b, BS_FINISH, TASK_STAGE_OK);
}

static void on_recorded(struct task *t, PGresult *res)
{
    struct build *b = t->data;
    struct upload *up = b->up;

    b->pg_busy = false;
    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while uploading");
        return;
    }
    if (!res || !pg_ok(res)) {
        up_fail(up, "cannot record the runner: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    up_run_phase(up, UP_COPY);
}

static void walk_done(struct upload *up)
{
    struct build *b = up->b;

    if (up->skipped)
        task_log(b->t, "%zu entries of the output were not regular files and were skipped",
                 up->skipped);
    if (up->nfiles == 0) {
        up_fail(up, "the build's output %s holds no files", up->src_dir);
        return;
    }
    task_log(b->t, "the output has %zu files, %" PRIu64 " bytes", up->nfiles, up->bytes);
    up_run_phase(up, UP_PUT);
}

/* One slice of the walk of the output folder: links and special files are
 * skipped (a build must not publish what a link points at), nothing is
 * followed. */
static void on_walk(evutil_socket_t fd, short what, void *arg)
{
    struct upload *up = arg;
    struct build *b = up->b;
    uint64_t max_files = (uint64_t)B->app->cfg->max_archive_files;
    int n = 0;

    while (up->depth > 0 && n < WALK_TURN) {
        struct walkdir *top = &up->stack[up->depth - 1];
        struct dirent *de = readdir(top->d);
        struct stat sb;
        char *rel;

        if (!de) {
            closedir(top->d);
            free(top->rel);
            up->depth--;
            continue;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        rel = top->rel[0] ? util_asprintf("%s/%s", top->rel, de->d_name) : strdup(de->d_name);
        if (!rel) {
            up_fail(up, "out of memory");
            return;
        }
        if (fstatat(dirfd(top->d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            up_fail(up, "cannot read the output entry %s: %s", rel, strerror(errno));
            free(rel);
            return;
        }
        if (S_ISDIR(sb.st_mode)) {
            int dfd;
            DIR *d;

            if (up->depth == WALK_DEPTH) {
                up_fail(up, "the output is nested deeper than %d folders", WALK_DEPTH);
                free(rel);
                return;
            }
            dfd = openat(dirfd(top->d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                    O_CLOEXEC);
            d = dfd >= 0 ? fdopendir(dfd) : NULL;
            if (!d) {
                if (dfd >= 0)
                    close(dfd);
                up_fail(up, "cannot open the output folder %s: %s", rel, strerror(errno));
                free(rel);
                return;
            }
            up->stack[up->depth].d = d;
            up->stack[up->depth].rel = rel;
            up->depth++;
            continue;
        }
        if (!S_ISREG(sb.st_mode)) {
            if (up->skipped++ < SKIP_LOG_MAX)
                task_log(b->t, "skipped %s: not a regular file", rel);
            free(rel);
            continue;
        }
        {
            char *key = util_asprintf("%s%s", up->dest_prefix, rel);
            bool ok = key && storage_key_valid(key);
            free(key);
            if (!ok) {
                up_fail(up, "the output file name \"%.200s\" cannot be stored", rel);
                free(rel);
                return;
            }
        }
        if (up->nfiles >= max_files) {
            up_fail(up, "the output has more than MAX_ARCHIVE_FILES=%" PRIu64 " files", max_files);
            free(rel);
            return;
        }
        if (up_add(up, rel, (int64_t)sb.st_size, storage_content_type(rel)) < 0) {
            up_fail(up, "out of memory");
            free(rel);
            return;
        }
        free(rel);
        if (up->bytes > (uint64_t)B->app->cfg->max_archive_bytes) {
            up_fail(up, "the output is larger than MAX_ARCHIVE_BYTES=%ld",
                    B->app->cfg->max_archive_bytes);
            return;
        }
        if (up->bytes > (uint64_t)B->app->cfg->build_max_output_mb << 20) {
            up_fail(up, "the output is larger than BUILD_MAX_OUTPUT_MB=%ld",
                    B->app->cfg->build_max_output_mb);
            return;
        }
    }
    if (up->depth > 0) {
        /* A zero timeout goes through the poll: other events run first. */
        struct timeval zero = { 0, 0 };
        evtimer_add(up->walk_ev, &zero);
        return;
    }
    walk_done(up);
}

static struct upload *up_new(struct build *b)
{
    struct upload *up = calloc(1, sizeof *up);
    int n = (int)B->app->cfg->build_upload_concurrency;

    if (!up)
        return NULL;
    up->b = b;
    up->nslots = n;
    up->slots = calloc((size_t)n, sizeof *up->slots);
    up->cache_prefix = util_asprintf("runners/%s/", b->cache_key);
    up->dest_prefix = util_asprintf("%s/%s/", b->deploy ? "experiments" : "preview_experiments",
                                b->study_uuid);
    if (!up->slots || !up->cache_prefix || !up->dest_prefix) {
        up_free(up);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        up->slots[i].up = up;
        up->slots[i].item = -1;
        if (!(up->slots[i].timer = evtimer_new(B->app->base, on_op_timer, &up->slots[i]))) {
            up_free(up);
            return NULL;
        }
    }
    return up;
}

/* ---- the stages ----------------------------------------------------------------------- */

/* ---- the disk watch ------------------------------------------------------------------ */

/* RLIMIT_FSIZE bounds each file a build writes, not how many: while the
 * build runs, its scratch and output folders are measured (`du`, a child:
 * a node_modules tree is too big to walk on the loop) every DISK_CHECK_MS,
 * and a build past BUILD_MAX_OUTPUT_MB is killed. */
static void disk_watch_stop(struct build *b)
{
    if (b->du) {
        proc_abandon(b->du);
        b->du = NULL;
    }
    if (b->disk_timer)
        evtimer_del(b->disk_timer);
}

static void on_du(const struct proc_result *r, void *arg)
{
    struct build *b = arg;
    int64_t total = 0;
    const char *p = r->out;
    int64_t limit = (int64_t)B->app->cfg->build_max_output_mb << 20;

    b->du = NULL;
    /* "BYTES\tPATH" per folder; a file that vanished mid-walk makes du exit
     * 1 with the sums still printed. */
    while (*p) {
        total += strtoll(p, NULL, 10);
        p += strcspn(p, "\n");
        p += *p == '\n';
    }
    if (total > limit && b->proc && b->child == CH_RUN) {
        b->disk_exceeded = true;
        task_log(b->t, "the build's folders hold %" PRId64 " bytes, more than "
                 "BUILD_MAX_OUTPUT_MB=%ld: killing it", total, B->app->cfg->build_max_output_mb);
        proc_kill(b->proc);
        return;
    }
    if (b->proc)
        util_timer_ms(b->disk_timer, DISK_CHECK_MS);
}

static void on_disk_timer(evutil_socket_t fd, short what, void *arg)
{
    struct build *b = arg;
    const char *argv[] = { "du", "-s", "-x", "-b", "--", b->scratch, b->out, NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = DISK_DU_TIMEOUT_MS, .tail_bytes = 4096 };
    char err[256];

    if (!b->proc || b->du)
        return;
    if (!(b->du = proc_spawn(B->app->procs, &o, on_du, b, err, sizeof err)))
        log_warn("build: cannot measure %s: %s", b->work, err);
}

static void disk_watch_start(struct build *b)
{
    if (!b->disk_timer && !(b->disk_timer = evtimer_new(B->app->base, on_disk_timer, b)))
        return;     /* out of memory: the per-file limit and the check at publish remain */
    b->disk_exceeded = false;
    util_timer_ms(b->disk_timer, DISK_CHECK_MS);
}

static void bl_halt(struct build *b)
{
    if (b->req) {
        fetch_cancel(b->req);
        b->req = NULL;
    }
    flight_leave(b);
    if (b->proc) {
        proc_abandon(b->proc);
        b->proc = NULL;
    }
    disk_watch_stop(b);
    if (b->up) {
        up_free(b->up);
        b->up = NULL;
    }
    if (b->timer)
        evtimer_del(b->timer);
}

static void docker_rm_done(const struct proc_result *r, void *arg)
{
    char how[128];

    proc_result_describe(r, how, sizeof how);
    log_debug("build: docker rm -f: %s", how);
}

/* Removes our container (a killed `docker run` client leaves it running). */
static void docker_rm_later(const char *name)
{
    const char *argv[] = { B->app->cfg->docker_bin, "rm", "-f", name, NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = DOCKER_RM_TIMEOUT_MS, .tail_bytes = 2048,
                           .envp = build_docker_env() };
    char err[256];

    if (!proc_spawn(B->app->procs, &o, docker_rm_done, NULL, err, sizeof err))
        log_warn("build: cannot run docker rm -f %s: %s", name, err);
}

/* To 'finish' with an outcome: stops what runs, notes why in the stage's
 * log, and closes the stage as failed (cancelled stages too: the runner's
 * stage outcomes have no 'cancelled'; the log and the build's outcome say
 * it). */
static void bl_stop(struct build *b, enum build_outcome o, const char *fmt, ...)
{
    va_list ap;

    if (b->moving)
        return;
    if (b->proc && b->child == CH_RUN && strcmp(B->app->cfg->build_runner, "docker") == 0)
        docker_rm_later(b->container);
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
static int bl_paths(struct build *b)
{
    free(b->checkout);
    free(b->zip);
    b->checkout = util_asprintf("%s/%s", B->checkouts, b->sha);
    b->zip = util_asprintf("%s/%s.zip", B->checkouts, b->sha);
    if (!b->work) {
        b->work = util_asprintf("%s/%s", B->builds, b->t->uuid);
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

    b->pg_busy = false;
    if (!res) {
        /* The database is away: the runner could not save either; try
         * again a little later through the timer. */
        util_timer_ms(b->timer, SETTLE_RETRY_MS);
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
                 state_name(t->state), t->attempts, t->max_attempts);
    task_wake(t);
}

/* Reads the study and what earlier attempts saved (every claim starts
 * here: a resumed build knows its commit and cached runner from it). */
static void bl_load(struct build *b)
{
    char task[24];
    const char *params[2] = { task, B->app->cfg->runner_repo_url };

    snprintf(task, sizeof task, "%" PRId64, b->t->id);
    b->pg_busy = true;
    if (task_pg_exec(b->t, &stmt_load, 2, params, on_loaded) < 0) {
        b->pg_busy = false;
        util_timer_ms(b->timer, SETTLE_RETRY_MS);
    }
}

static void on_bl_timer(evutil_socket_t fd, short what, void *arg)
{
    struct build *b = arg;

    task_wake(b->t);
}

/* -- resolve_sha */


/* "https://github.com/OWNER/REPO(.git)(/)": the repository URL without the
 * suffixes, its owner and name.  -1 when it is not http(s) or lacks them. */
static int parse_repo(struct build *b, const char *url)
{
    size_t n = strlen(url);
    char *u, *slash;

    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return -1;
    if (n > 1000 || strpbrk(url, " \t\r\n?#\"'\\"))
        return -1;
    u = strdup(url);
    if (!u)
        return -1;
    while (n && u[n - 1] == '/')
        u[--n] = '\0';
    if (n > 4 && strcmp(u + n - 4, ".git") == 0)
        u[n -= 4] = '\0';
    slash = strrchr(u, '/');
    if (!slash || slash[1] == '\0' || slash - u < 9) {
        free(u);
        return -1;
    }
    snprintf(b->repo, sizeof b->repo, "%s", slash + 1);
    *slash = '\0';
    {
        char *o = strrchr(u, '/');
        if (!o || o[1] == '\0' || o - u < 7 || o[-1] == '/') {
            free(u);
            return -1;
        }
        snprintf(b->owner, sizeof b->owner, "%s", o + 1);
    }
    *slash = '/';
    free(b->repo_url);
    b->repo_url = u;
    for (const char *p = b->owner; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            return -1;
    for (const char *p = b->repo; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            return -1;
    return 0;
}

static const struct pg_stmt stmt_resolved = {
    "build_resolved",
    "WITH u AS (UPDATE study_builds SET repo_url = $2, sha = $3, cache_key = $4,"
    "             reused = EXISTS (SELECT 1 FROM runner_builds WHERE cache_key = $4)"
    "           WHERE task_id = $1::bigint RETURNING task_id),"
    " r AS (UPDATE runner_builds SET last_used_at = now() WHERE cache_key = $4"
    "       RETURNING manifest)"
    " SELECT (SELECT manifest::text FROM r), (SELECT count(*) FROM u)",
};

static void on_resolved_saved(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    b->pg_busy = false;
    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while resolving the commit");
        return;
    }
    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        bl_stop(b, BO_FAILED, "cannot save the resolved commit: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    json_decref(b->manifest);
    b->manifest = NULL;
    if (!PQgetisnull(res, 0, 0)) {
        b->manifest = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        task_log(t, "this runner (repository, commit and environment) was built before: its "
                 "%zu files are reused", json_array_size(b->manifest));
    }
    bl_move(b, BS_DOWNLOAD, TASK_STAGE_OK);
}

/* The commit is known: the cache key, the paths, and save them. */
static void resolve_done(struct build *b)
{
    struct task *t = b->t;
    char *material;
    const char *params[4];
    char task[24];

    for (char *p = b->sha; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    /* What the output depends on: the prefix is compiled into the assets. */
    material = util_asprintf("%s\n%s\n/studies/%s/\n%s\n", b->repo_url, b->sha, b->study_uuid,
                         B->env_hash);
    if (!material || bl_paths(b) < 0) {
        free(material);
        bl_stop(b, BO_FAILED, "out of memory");
        return;
    }
    util_sha256_hex(material, strlen(material), b->cache_key);
    free(material);
    task_log(t, "runner: %s at %s", b->repo_url, b->sha);
    snprintf(task, sizeof task, "%" PRId64, t->id);
    params[0] = task;
    params[1] = b->repo_url;
    params[2] = b->sha;
    params[3] = b->cache_key;
    b->pg_busy = true;
    if (task_pg_exec(t, &stmt_resolved, 4, params, on_resolved_saved) < 0) {
        b->pg_busy = false;
        bl_stop(b, BO_FAILED, "cannot save the resolved commit: out of memory");
    }
}

static void api_get(struct build *b);

static void on_api(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    struct build *b = arg;
    json_t *doc;
    const char *v;

    b->req = NULL;
    if (res->error || res->status != 200) {
        if (res->status)
            bl_stop(b, BO_FAILED, "GitHub API: HTTP %d for %s/%s%s%s after %d attempt%s: %.300s",
                    res->status, b->owner, b->repo, b->api_step ? " branch " : "",
                    b->api_step ? b->branch : "", res->attempts, res->attempts == 1 ? "" : "s",
                    res->body);
        else
            bl_stop(b, BO_FAILED, "GitHub API unreachable after %d attempt%s: %s",
                    res->attempts, res->attempts == 1 ? "" : "s", res->error);
        return;
    }
    doc = json_loadb(res->body, res->body_len, 0, NULL);
    if (b->api_step == 0) {
        v = json_string_value(json_object_get(doc, "default_branch"));
        if (!v || !*v || strlen(v) >= sizeof b->branch || strspn(v,
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") != strlen(v)) {
            json_decref(doc);
            bl_stop(b, BO_FAILED, "GitHub API: no usable default_branch for %s/%s", b->owner,
                    b->repo);
            return;
        }
        snprintf(b->branch, sizeof b->branch, "%s", v);
        json_decref(doc);
        task_log(b->t, "default branch: %s", b->branch);
        b->api_step = 1;
        api_get(b);
        return;
    }
    v = json_string_value(json_object_get(doc, "sha"));
    if (!is_sha(v)) {
        json_decref(doc);
        bl_stop(b, BO_FAILED, "GitHub API: no commit SHA for branch %s of %s/%s", b->branch,
                b->owner, b->repo);
        return;
    }
    snprintf(b->sha, sizeof b->sha, "%s", v);
    json_decref(doc);
    task_log(b->t, "head of %s: %s", b->branch, b->sha);
    resolve_done(b);
}

static void api_get(struct build *b)
{
    const struct config *c = B->app->cfg;
    char auth[300];
    const char *headers[4];
    int nh = 0;
    size_t n = strlen(c->github_api_url);
    char *url;
    struct fetch_opts o = {
        .method = "GET",
        .headers = headers,
        .max_body = API_MAX_BODY,
        .follow_redirects = true,
        .connect_timeout_ms = 10000,
        .timeout_ms = c->build_fetch_timeout_s * 1000,
        .done = on_api,
        .arg = b,
    };

    while (n && c->github_api_url[n - 1] == '/')
        n--;
    if (b->api_step == 0)
        url = util_asprintf("%.*s/repos/%s/%s", (int)n, c->github_api_url, b->owner, b->repo);
    else
        url = util_asprintf("%.*s/repos/%s/%s/commits/%s", (int)n, c->github_api_url, b->owner,
                        b->repo, b->branch);
    headers[nh++] = "Accept: application/vnd.github+json";
    headers[nh++] = "X-GitHub-Api-Version: 2022-11-28";
    if (c->github_token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->github_token);
        headers[nh++] = auth;
    }
    headers[nh] = NULL;
    o.url = url;
    if (!url || !bl_fetch() || !(b->req = fetch_submit(bl_fetch(), &o))) {
        free(url);
        bl_stop(b, BO_FAILED, "cannot call the GitHub API: out of memory");
        return;
    }
    task_log(b->t, "GET %s", url);
    free(url);
}

static void st_resolve(struct build *b)
{
    const char *repo = b->meta_repo && *b->meta_repo ? b->meta_repo
                                                     : B->app->cfg->runner_repo_url;

    if (parse_repo(b, repo) < 0) {
        bl_stop(b, BO_FAILED, "the runner repository \"%.300s\" is not an http(s) URL of the "
                "form https://github.com/OWNER/REPO", repo);
        return;
    }
    if (!builds_repo_allowed(B->app->cfg, b->repo_url)) {
        bl_stop(b, BO_FAILED, "the runner repository %.300s is not allowed here "
                "(RUNNER_REPO_ALLOW)", b->repo_url);
        return;
    }
    /* Checked at the request too; again here, as the study's metadata may
     * have named another repository since. */
    if (!b->repo_approved) {
        bl_stop(b, BO_FAILED, "runner_repo_not_approved: the runner repository %.300s is not "
                "the default one and is not approved for this study; a site reviewer must "
                "approve it first", b->repo_url);
        return;
    }
    task_log(b->t, "repository %s (%s)", b->repo_url,
             b->meta_repo && *b->meta_repo ? "the study's player_repo_url" : "RUNNER_REPO_URL");
    if (is_sha(b->meta_sha)) {
        snprintf(b->sha, sizeof b->sha, "%s", b->meta_sha);
        task_log(b->t, "the study pins commit %s", b->meta_sha);
        resolve_done(b);
        return;
    }
    if (b->meta_sha && *b->meta_sha)
        task_log(b->t, "the study's last_known_player_sha \"%.80s\" is not a 40-hex SHA: "
                 "using the head of the default branch", b->meta_sha);
    else
        task_log(b->t, "the study pins no commit: using the head of the default branch");
    b->api_step = 0;
    api_get(b);
}

/* -- download and extract */

static void on_flight_done(struct build *b, enum flight_kind kind, bool ok, const char *msg)
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
    struct flight *f;

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
    if (util_mkdir_p(B->checkouts) < 0) {
        bl_stop(b, BO_FAILED, "cannot create %s: %s", B->checkouts, strerror(errno));
        return;
    }
    if ((f = flight_find(FL_DOWNLOAD, b->zip))) {
        task_log(t, "waiting for the download of this commit started by task %" PRId64,
                 f->owner_task);
        flight_join(f, b);
        return;
    }
    if (dl_start(b) < 0)
        bl_stop(b, BO_FAILED, "cannot start the download: %s", strerror(errno));
}

static void st_extract(struct build *b)
{
    struct task *t = b->t;
    struct flight *f;
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
    if ((f = flight_find(FL_EXTRACT, b->checkout))) {
        task_log(t, "waiting for the extraction of this commit started by task %" PRId64,
                 f->owner_task);
        flight_join(f, b);
        return;
    }
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
             B->app->cfg->max_archive_bytes, B->app->cfg->max_archive_files);
}

/* -- build */

static const char *const child_names[] = {
    [CH_DOCKER_RM] = "removing the previous attempt's container",
    [CH_COPY] = "copying the checkout",
    [CH_IMAGE] = "building the builder image",
    [CH_RUN] = "the build",
};

/* The environment of reference section 4 (paths as the build sees them:
 * checkout and output are where the sandbox or container puts them) plus
 * BUILD_ENV, as "K=V" strings.  Nothing of the server's environment. */
static int build_env(struct build *b, struct strv *env, const char *checkout, const char *out)
{
    int rc = 0;

    rc |= strv_add(env, util_asprintf("CHECKOUT_DIR=%s", checkout));
    rc |= strv_add(env, util_asprintf("PREPEND_FINGERPRINT=/studies/%s/", b->study_uuid));
    rc |= strv_add(env, util_asprintf("STUDY_OUTPUT_DIR=%s", out));
    rc |= strv_add(env, util_asprintf("STUDY_UUID=%s", b->study_uuid));
    rc |= strv_add(env, util_asprintf("RUNNER_SHA=%s", b->sha));
    rc |= strv_add(env, util_asprintf("RUNNER_REPO_URL=%s", b->repo_url));
    rc |= strv_add(env, util_asprintf("BUILD_MODE=%s", b->deploy ? "deploy" : "preview"));
    for (char **e = B->extra_env; e && *e; e++)
        rc |= strv_add(env, strdup(*e));
    return rc ? -1 : 0;
}

static bool runner_is_docker(void)
{
    return strcmp(B->app->cfg->build_runner, "docker") == 0;
}

static bool runner_is_sandboxed(void)
{
    return !runner_is_docker() && strcmp(B->app->cfg->build_sandbox, "bwrap") == 0;
}

/* A root server runs builds as BUILD_UID (bwrap and docker's --user);
 * any other server can only run them as itself. */
static bool builds_change_user(void)
{
    return geteuid() == 0;
}

static void build_proc_ids(struct proc_opts *o)
{
    if (!builds_change_user())
        return;
    o->set_ids = true;
    o->uid = o->gid = (unsigned)B->app->cfg->build_uid;
}

/* The docker client's environment: what it needs to find the engine and
 * its configuration, never the server's secrets.  Made once at start. */
static int docker_client_env(struct strv *env)
{
    static const char *const pass[] = { "PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG",
                                        "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
                                        "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR", NULL };
    int rc = 0;

    for (int i = 0; pass[i]; i++) {
        const char *v = getenv(pass[i]);
        if (v)
            rc |= strv_add(env, util_asprintf("%s=%s", pass[i], v));
        else if (i == 0)
            rc |= strv_add(env, strdup("PATH=/usr/local/bin:/usr/bin:/bin"));
    }
    return rc ? -1 : 0;
}

/* `docker run` of the build: a read-only container without capabilities
 * or privilege gains, as a non-root user, with its process, memory and
 * /tmp bounded and no network unless BUILD_NETWORK=1. */
static int docker_run_args(struct build *b, struct strv *argv)
{
    const struct config *c = B->app->cfg;
    struct strv env = { 0 };
    long mb = c->build_max_output_mb;
    int rc = 0;

    rc |= strv_add(argv, strdup(c->docker_bin));
    rc |= strv_add(argv, strdup("run"));
    rc |= strv_add(argv, strdup("--rm"));
    rc |= strv_add(argv, strdup("--name"));
    rc |= strv_add(argv, strdup(b->container));
    rc |= strv_add(argv, strdup("--read-only"));
    rc |= strv_add(argv, strdup("--cap-drop"));
    rc |= strv_add(argv, strdup("ALL"));
    rc |= strv_add(argv, strdup("--security-opt"));
    rc |= strv_add(argv, strdup("no-new-privileges"));
    rc |= strv_add(argv, strdup("--user"));
    if (builds_change_user())
        rc |= strv_add(argv, util_asprintf("%ld:%ld", c->build_uid, c->build_uid));
    else
        rc |= strv_add(argv, util_asprintf("%u:%u", (unsigned)getuid(), (unsigned)getgid()));
    rc |= strv_add(argv, strdup("--pids-limit"));
    rc |= strv_add(argv, util_asprintf("%ld", c->build_max_procs));
    rc |= strv_add(argv, strdup("--memory"));
    rc |= strv_add(argv, util_asprintf("%ldm", c->build_memory_mb));
    rc |= strv_add(argv, strdup("--memory-swap"));
    rc |= strv_add(argv, util_asprintf("%ldm", c->build_memory_mb));
    rc |= strv_add(argv, strdup("--ulimit"));
    rc |= strv_add(argv, util_asprintf("fsize=%lld", (long long)mb << 20));
    rc |= strv_add(argv, strdup("--tmpfs"));
    rc |= strv_add(argv, util_asprintf("/tmp:rw,nosuid,nodev,size=%ldm", mb));
    /* The writable copy of the checkout (node_modules lands there). */
    rc |= strv_add(argv, strdup("--tmpfs"));
    rc |= strv_add(argv, util_asprintf("/checkout-dir:rw,exec,nosuid,nodev,size=%ldm", mb));
    if (!c->build_network) {
        rc |= strv_add(argv, strdup("--network"));
        rc |= strv_add(argv, strdup("none"));
    }
    rc |= strv_add(argv, strdup("-v"));
    rc |= strv_add(argv, util_asprintf("%s:/checkouts:ro", b->checkout));
    rc |= strv_add(argv, strdup("-v"));
    rc |= strv_add(argv, util_asprintf("%s:/deployments", b->out));
    rc |= strv_add(&env, strdup("HOME=/tmp"));
    rc |= build_env(b, &env, "/checkouts", "/deployments");
    for (size_t i = 0; i < env.n; i++) {
        rc |= strv_add(argv, strdup("-e"));
        rc |= strv_add(argv, strdup(env.v[i]));
    }
    strv_free(&env);
    rc |= strv_add(argv, strdup(c->builder_image));
    rc |= strv_add(argv, strdup("bash"));
    rc |= strv_add(argv, strdup("-c"));
    rc |= strv_add(argv, strdup("cp -R /checkouts/. /checkout-dir && cd /checkout-dir && "
                                "exec bash ./build.sh"));
    return rc ? -1 : 0;
}

/* The environment of a local build: section 4's variables, a PATH, a
 * HOME and a locale. */
static int local_env(struct build *b, struct strv *envp, bool sandboxed)
{
    const char *path = getenv("PATH");
    int rc = 0;

    rc |= strv_add(envp, util_asprintf("PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin"));
    rc |= strv_add(envp, util_asprintf("HOME=%s", sandboxed ? SANDBOX_HOME : b->work));
    rc |= strv_add(envp, strdup("LANG=C.UTF-8"));
    if (sandboxed)
        rc |= build_env(b, envp, SANDBOX_CHECKOUT, SANDBOX_OUTPUT);
    else
        rc |= build_env(b, envp, b->checkout, b->out);
    return rc ? -1 : 0;
}

/* The sandboxed build: bwrap around `cp` of the checkout into the
 * scratch folder (done inside, as the build's user, so the copy is its
 * own to write) and build.sh. */
static int sandbox_run_args(struct build *b, struct strv *argv, char *err, size_t errlen)
{
    const struct config *c = B->app->cfg;
    static const char *const command[] = {
        "bash", "-c", "cp -R " SANDBOX_CHECKOUT "/. " SANDBOX_BUILD " && exec bash build.sh",
        NULL,
    };
    struct strv env = { 0 };
    struct sandbox_spec spec = {
        .bwrap = c->bwrap_bin, .host = &B->host, .checkout = b->checkout,
        .scratch = b->scratch, .output = b->out, .network = c->build_network,
        .tmp_mb = c->build_max_output_mb, .ro_paths = c->build_ro_paths,
        .command = command,
    };
    char **v;

    if (local_env(b, &env, true) < 0) {
        strv_free(&env);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    spec.env = (const char *const *)env.v;
    v = sandbox_argv(&spec, err, errlen);
    strv_free(&env);
    if (!v)
        return -1;
    /* Takes the strings over. */
    for (char **p = v; *p; p++)
        if (strv_add(argv, *p) < 0) {
            for (char **q = p + 1; *q; q++)
                free(*q);
            free(v);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    free(v);
    return 0;
}

/* True when NAME (len bytes) is one of BUILD_ENV's: its value may be a
 * secret (a Sentry DSN) and stays out of logs researchers read. */
static bool extra_env_name(const char *name, size_t len)
{
    for (char **e = B->extra_env; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return true;
    return false;
}

/* The command line, as a person would type it, for the stage's log; the
 * values of BUILD_ENV's variables hidden. */
static void log_command(struct build *b, int which, const char *cwd, const struct strv *argv)
{
    char line[3000];
    size_t len = 0;

    for (size_t i = 0; i < argv->n && len < sizeof line - 1; i++) {
        const char *a = argv->v[i], *eq = strchr(a, '=');
        int n;

        if (i >= 2 && strcmp(argv->v[i - 2], "--setenv") == 0 &&
            extra_env_name(argv->v[i - 1], strlen(argv->v[i - 1])))
            n = snprintf(line + len, sizeof line - len, " (hidden)");
        else if (i >= 1 && strcmp(argv->v[i - 1], "-e") == 0 && eq &&
                 extra_env_name(a, (size_t)(eq - a)))
            n = snprintf(line + len, sizeof line - len, " %.*s=(hidden)", (int)(eq - a), a);
        else
            n = snprintf(line + len, sizeof line - len, "%s%s", i ? " " : "", a);
        len += n > 0 ? (size_t)n : 0;
    }
    task_log(b->t, "%s: $ %s%s%s%s", child_names[which], cwd ? "cd " : "", cwd ? cwd : "",
             cwd ? " && " : "", line);
}

static void on_child(const struct proc_result *r, void *arg);

static void child_start(struct build *b, int which)
{
    const struct config *c = B->app->cfg;
    struct strv argv = { 0 }, envp = { 0 };
    struct proc_opts o = { .tail_bytes = CHILD_TAIL, .grace_ms = 3000 };
    char err[600] = "out of memory";
    int64_t left = b->deadline_ms - util_mono_ms();
    int rc = 0;

    b->child = which;
    if (left < 1)
        left = 1;
    o.timeout_ms = left;
    switch (which) {
    case CH_DOCKER_RM:
        rc |= strv_add(&argv, strdup(c->docker_bin));
        rc |= strv_add(&argv, strdup("rm"));
        rc |= strv_add(&argv, strdup("-f"));
        rc |= strv_add(&argv, strdup(b->container));
        o.timeout_ms = DOCKER_RM_TIMEOUT_MS;
        break;
    case CH_COPY:
        /* BUILD_SANDBOX=none: a scratch copy, so the build may write
         * anywhere in its tree while the checkout stays pristine. */
        rc |= strv_add(&argv, strdup("cp"));
        rc |= strv_add(&argv, strdup("-R"));
        rc |= strv_add(&argv, strdup("--"));
        rc |= strv_add(&argv, util_asprintf("%s/.", b->checkout));
        rc |= strv_add(&argv, strdup(b->scratch));
        break;
    case CH_IMAGE:
        rc |= strv_add(&argv, strdup(c->docker_bin));
        rc |= strv_add(&argv, strdup("build"));
        rc |= strv_add(&argv, strdup("-t"));
        rc |= strv_add(&argv, strdup(c->builder_image));
        rc |= strv_add(&argv, strdup(c->builder_context[0] ? c->builder_context : b->checkout));
        break;
    case CH_RUN:
        if (runner_is_docker()) {
            rc |= docker_run_args(b, &argv);
        } else if (runner_is_sandboxed()) {
            if (sandbox_run_args(b, &argv, err, sizeof err) < 0)
                rc = -1;
            /* bwrap itself needs no variable: --clearenv, then the list. */
            rc |= strv_add(&envp, strdup("PATH=/usr/bin:/bin"));
            o.rlimits = B->limits;
            build_proc_ids(&o);
        } else {
            rc |= strv_add(&argv, strdup("bash"));
            rc |= strv_add(&argv, strdup("build.sh"));
            rc |= local_env(b, &envp, false);
            o.cwd = b->scratch;
            o.rlimits = B->limits;
        }
        break;
    }
    if (rc) {
        strv_free(&argv);
        strv_free(&envp);
        bl_stop(b, BO_FAILED, "cannot start %s: %s", child_names[which], err);
        return;
    }
    o.argv = (const char *const *)argv.v;
    o.envp = envp.v ? (const char *const *)envp.v : NULL;
    if (which != CH_COPY && (which != CH_RUN || runner_is_docker()))
        o.envp = build_docker_env();
    log_command(b, which, o.cwd, &argv);
    b->proc = proc_spawn(B->app->procs, &o, on_child, b, err, sizeof err);
    strv_free(&argv);
    strv_free(&envp);
    if (!b->proc) {
        bl_stop(b, BO_FAILED, "cannot start %s: %s", child_names[which], err);
        return;
    }
    if (which == CH_RUN)
        disk_watch_start(b);
    if (which == CH_RUN && !runner_is_docker()) {
        /* So a restarted server can find what this one left running. */
        char *pf = util_asprintf("%s/pgid", b->work);
        FILE *fp = pf ? fopen(pf, "we") : NULL;
        if (fp) {
            fprintf(fp, "%d\n", (int)proc_pid(b->proc));
            fclose(fp);
        }
        free(pf);
    }
}

static void build_done(struct build *b)
{
    char *dist = util_asprintf("%s/dist", b->scratch);

    if (dir_nonempty(b->out)) {
        task_log(b->t, "the output is in STUDY_OUTPUT_DIR (%s)", b->out);
    } else if (dist && strcmp(B->app->cfg->build_runner, "local") == 0 && dir_nonempty(dist)) {
        task_log(b->t, "STUDY_OUTPUT_DIR is empty: the output is the build's dist/ (%s)", dist);
    } else {
        free(dist);
        bl_stop(b, BO_FAILED, "the build exited 0 but wrote nothing to STUDY_OUTPUT_DIR%s",
                strcmp(B->app->cfg->build_runner, "local") == 0 ? " or dist/" : "");
        return;
    }
    free(dist);
    bl_move(b, BS_UPLOAD, TASK_STAGE_OK);
}

static void on_child(const struct proc_result *r, void *arg)
{
    struct build *b = arg;
    bool docker = strcmp(B->app->cfg->build_runner, "docker") == 0;
    char how[160], label[96];

    b->proc = NULL;
    disk_watch_stop(b);
    proc_result_describe(r, how, sizeof how);
    task_log(b->t, "%s: %s after %.1f s", child_names[b->child], how, r->duration_s);
    /* The last CHILD_TAIL bytes of each stream (the end is what explains
     * a failure). */
    if (r->out_len) {
        snprintf(label, sizeof label, r->out_len < r->out_total ? "stdout, the end of %zu"
                 : "stdout", r->out_total);
        task_log_text(b->t, label, r->out, r->out_len);
    }
    if (r->err_len) {
        snprintf(label, sizeof label, r->err_len < r->err_total ? "stderr, the end of %zu"
                 : "stderr", r->err_total);
        task_log_text(b->t, label, r->err, r->err_len);
    }
    if (b->disk_exceeded) {
        if (docker && b->child == CH_RUN)
            docker_rm_later(b->container);
        bl_stop(b, BO_FAILED, "%s wrote more than BUILD_MAX_OUTPUT_MB=%ld MiB to its folders: "
                "it was killed", child_names[b->child], B->app->cfg->build_max_output_mb);
        return;
    }
    if (r->killed || task_cancel_requested(b->t)) {
        if (docker && b->child == CH_RUN)
            docker_rm_later(b->container);
        bl_stop(b, BO_CANCELLED, "cancelled during %s", child_names[b->child]);
        return;
    }
    if (r->timed_out) {
        if (docker && b->child == CH_RUN)
            docker_rm_later(b->container);
        bl_stop(b, BO_FAILED, "%s took longer than BUILD_TIMEOUT_S=%ld s: its process group "
                "was killed", child_names[b->child], B->app->cfg->build_timeout_s);
        return;
    }
    if (b->child == CH_DOCKER_RM) {
        child_start(b, CH_IMAGE);   /* "no such container" is fine */
        return;
    }
    if (!proc_result_ok(r)) {
        /* Whatever it wrote, a failing build is a failure (lookit-api#503). */
        bl_stop(b, BO_FAILED, "%s failed (%s)", child_names[b->child], how);
        return;
    }
    switch (b->child) {
    case CH_COPY:
        child_start(b, CH_RUN);
        return;
    case CH_IMAGE:
        child_start(b, CH_RUN);
        return;
    default:
        build_done(b);
        return;
    }
}

/* What a dead server's build left running (the process group of its
 * build.sh, whose leader died with the server but whose children did
 * not): killed, when they still work in this build's folder. */
static void kill_leftovers(struct build *b)
{
    char *pf = util_asprintf("%s/pgid", b->work), cwd[PATH_MAX], link[64];
    FILE *fp = pf ? fopen(pf, "re") : NULL;
    DIR *d;
    struct dirent *de;
    int pgid = 0, n = 0;
    size_t wl = strlen(b->work);

    if (fp) {
        if (fscanf(fp, "%d", &pgid) != 1)
            pgid = 0;
        fclose(fp);
    }
    if (pf)
        unlink(pf);
    free(pf);
    if (pgid <= 1 || !(d = opendir("/proc")))
        return;
    while ((de = readdir(d))) {
        char path[64], stat[512], *p;
        int pid = atoi(de->d_name), pgrp = 0;
        FILE *sf;
        ssize_t len;

        if (pid <= 1)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        if (!(sf = fopen(path, "re")))
            continue;
        len = (ssize_t)fread(stat, 1, sizeof stat - 1, sf);
        fclose(sf);
        if (len <= 0)
            continue;
        stat[len] = '\0';
        /* pid (comm) state ppid pgrp ...: comm may hold spaces. */
        if (!(p = strrchr(stat, ')')) || sscanf(p + 1, " %*c %*d %d", &pgrp) != 1 ||
            pgrp != pgid)
            continue;
        snprintf(link, sizeof link, "/proc/%d/cwd", pid);
        len = readlink(link, cwd, sizeof cwd - 1);
        if (len <= 0)
            continue;
        cwd[len] = '\0';
        if (strncmp(cwd, b->work, wl) == 0 && (cwd[wl] == '/' || cwd[wl] == '\0') &&
            kill(pid, SIGKILL) == 0)
            n++;
    }
    closedir(d);
    if (n)
        task_log(b->t, "killed %d process%s left running by the previous attempt", n,
                 n == 1 ? "" : "es");
}

static void st_build(struct build *b)
{
    struct task *t = b->t;
    const struct config *c = B->app->cfg;
    bool docker = strcmp(c->build_runner, "docker") == 0;
    char *build_sh;
    struct stat sb;

    if (b->manifest) {
        task_log(t, "the runner is cached: nothing to build");
        bl_move(b, BS_UPLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    if (runner_is_sandboxed() && B->sandbox != SB_OK) {
        if (B->sandbox == SB_CHECKING) {
            util_timer_ms(b->timer, PROBE_WAIT_MS);     /* the check at start */
            return;
        }
        bl_stop(b, BO_FAILED, "builds are refused: the build sandbox does not work on this "
                "server (BUILD_SANDBOX=bwrap): %s", B->sandbox_err);
        return;
    }
    if (!is_dir(b->checkout)) {
        if (++b->rebuilds > MAX_REBUILDS) {
            bl_stop(b, BO_FAILED, "the checkout %s vanished %d times", b->checkout, MAX_REBUILDS);
            return;
        }
        task_log(t, "the checkout %s is gone: downloading it again", b->checkout);
        bl_move(b, BS_DOWNLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    /* The checkout is in use: cleanup_checkouts keeps what was used in
     * the last day. */
    utimensat(AT_FDCWD, b->checkout, NULL, AT_SYMLINK_NOFOLLOW);
    build_sh = util_asprintf("%s/build.sh", b->checkout);
    if (!build_sh || lstat(build_sh, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        free(build_sh);
        bl_stop(b, BO_FAILED, "the runner repository has no build.sh at its top");
        return;
    }
    free(build_sh);
    if (util_mkdir_p(b->work) < 0) {
        bl_stop(b, BO_FAILED, "cannot create %s: %s", b->work, strerror(errno));
        return;
    }
    if (t->attempts > 1 && !docker)
        kill_leftovers(b);
    /* A previous attempt's folders are moved aside (one rename each) and
     * removed by a child. */
    for (int i = 0; i < 2; i++) {
        const char *dir = i ? b->scratch : b->out;
        if (exists(dir)) {
            char rnd[13], *old;
            util_random_hex(6, rnd);
            old = util_asprintf("%s.old-%s", dir, rnd);
            if (!old || rename(dir, old) < 0) {
                free(old);
                bl_stop(b, BO_FAILED, "cannot clear %s: %s", dir, strerror(errno));
                return;
            }
            archive_remove_later(B->app->procs, old);
            free(old);
        }
        if (mkdir(dir, 0755) < 0) {
            bl_stop(b, BO_FAILED, "cannot create %s: %s", dir, strerror(errno));
            return;
        }
        /* The build's user writes here and nowhere else on the host. */
        if ((docker || runner_is_sandboxed()) && builds_change_user() &&
            chown(dir, (uid_t)c->build_uid, (gid_t)c->build_uid) < 0) {
            bl_stop(b, BO_FAILED, "cannot hand %s to BUILD_UID=%ld: %s", dir, c->build_uid,
                    strerror(errno));
            return;
        }
    }
    snprintf(b->container, sizeof b->container, "studyhub-build-%s", t->uuid);
    b->deadline_ms = util_mono_ms() + c->build_timeout_s * 1000;
    task_log(t, "runner: %s%s; timeout %ld s; network %s; at most %ld processes, %ld MiB of "
             "memory each, %ld MiB per file and of output", c->build_runner,
             docker ? "" : runner_is_sandboxed() ? " in the bwrap sandbox"
                                                 : " WITHOUT a sandbox (BUILD_SANDBOX=none)",
             c->build_timeout_s, c->build_network ? "on" : "off", c->build_max_procs,
             c->build_memory_mb, c->build_max_output_mb);
    if (runner_is_sandboxed())
        child_start(b, CH_RUN);
    else if (!docker)
        child_start(b, CH_COPY);
    else if (t->attempts > 1)
        child_start(b, CH_DOCKER_RM);
    else
        child_start(b, CH_IMAGE);
}

/* -- upload */

static const struct pg_stmt stmt_forget_runner = {
    "build_forget_runner",
    "WITH d AS (DELETE FROM runner_builds WHERE cache_key = $1)"
    " UPDATE study_builds SET reused = false WHERE task_id = $2::bigint",
};

static void on_forgotten(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    b->pg_busy = false;
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
    if (b->manifest) {
        size_t i;
        json_t *f;

        up->cached = true;
        json_array_foreach(b->manifest, i, f) {
            const char *path = json_string_value(json_object_get(f, "path"));
            if (!path || up_add(up, path, (int64_t)json_integer_value(json_object_get(f, "size")),
                                storage_content_type(path)) < 0) {
                up_fail(up, "the cached runner's manifest is unreadable");
                return;
            }
        }
        task_log(t, "copying the cached runner (%zu files) from %s to %s", up->nfiles,
                 up->cache_prefix, up->dest_prefix);
        up_run_phase(up, UP_COPY);
        return;
    }
    if (dir_nonempty(b->out)) {
        up->src_dir = strdup(b->out);
    } else {
        char *dist = util_asprintf("%s/dist", b->scratch);
        if (dist && dir_nonempty(dist))
            up->src_dir = dist;
        else
            free(dist);
    }
    if (!up->src_dir) {
        /* Resumed, and the build's output is gone: build again. */
        b->up = NULL;
        up_free(up);
        if (++b->rebuilds > MAX_REBUILDS) {
            bl_stop(b, BO_FAILED, "the build's output vanished %d times", MAX_REBUILDS);
            return;
        }
        task_log(t, "the build's output is gone: building again");
        bl_move(b, BS_BUILD, TASK_STAGE_SKIPPED);
        return;
    }
    {
        int dfd = open(up->src_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

        up->walk_ev = evtimer_new(B->app->base, on_walk, up);
        up->stack[0].rel = strdup("");
        if (!d || !up->walk_ev || !up->stack[0].rel) {
            if (d)
                closedir(d);
            else if (dfd >= 0)
                close(dfd);
            free(up->stack[0].rel);
            up->stack[0].rel = NULL;
            up_fail(up, "cannot read the output %s: %s", up->src_dir, strerror(errno));
            return;
        }
        up->stack[0].d = d;
        up->depth = 1;
    }
    task_log(t, "publishing %s to %s (through %s)", up->src_dir, up->dest_prefix,
             up->cache_prefix);
    on_walk(-1, 0, up);
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

    b->pg_busy = false;
    if (!res) {
        util_timer_ms(b->timer, SETTLE_RETRY_MS);
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
        archive_remove_later(B->app->procs, b->scratch);
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
    b->pg_busy = true;
    if (task_pg_exec(b->t, &stmt_settle, 3, params, on_settled) < 0) {
        b->pg_busy = false;
        util_timer_ms(b->timer, SETTLE_RETRY_MS);
    }
}

/* ---- the kind's hooks ------------------------------------------------------------- */

static void build_step(struct task *t)
{
    struct build *b = t->data;

    b->moving = false;
    if (b->pg_busy)
        return;
    if (t->state != BS_FINISH && task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled before stage %s", state_name(t->state));
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
        st_resolve(b);
        return;
    case BS_DOWNLOAD:
        st_download(b);
        return;
    case BS_EXTRACT:
        st_extract(b);
        return;
    case BS_BUILD:
        st_build(b);
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
static void bl_cache_gone(struct build *b, const char *what)
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
    b->pg_busy = true;
    if (task_pg_exec(b->t, &stmt_forget_runner, 2, params, on_forgotten) < 0) {
        b->pg_busy = false;
        bl_stop(b, BO_FAILED, "cannot forget the lost cached runner: out of memory");
    }
}

static int build_open(struct task *t, char *err, size_t errlen)
{
    struct build *b;
    const char *mode = json_string_value(json_object_get(t->payload, "mode"));
    const char *study = json_string_value(json_object_get(t->payload, "study"));

    if (!B) {
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
    if (!(b->timer = evtimer_new(t->app->base, on_bl_timer, b))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
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
                 "(last in stage %s); giving up", t->attempts - 1, state_name(interrupted));
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
    if (b->pg_busy)
        return;     /* its callback checks */
    bl_stop(b, BO_CANCELLED, "cancelled in stage %s", state_name(t->state));
}

static void build_close(struct task *t)
{
    struct build *b = t->data;

    if (!b)
        return;
    bl_halt(b);
    if (b->final_ev && B && !B->stopping)
        builds_publish(B->app, b->final_ev); /* takes it */
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

static const struct task_kind build_kind = {
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
    B->extra_env = env.v;
    return 0;
}

static void on_probe(const struct proc_result *r, void *arg)
{
    char how[160];

    B->probe = NULL;
    if (proc_result_ok(r)) {
        B->sandbox = SB_OK;
        log_info("build: the bwrap sandbox works: local builds run in it");
        return;
    }
    proc_result_describe(r, how, sizeof how);
    B->sandbox = SB_BROKEN;
    snprintf(B->sandbox_err, sizeof B->sandbox_err, "%s (the check at start) %s%s%.300s%s",
             B->app->cfg->bwrap_bin, how, r->err_len ? ": " : "", r->err,
             strstr(r->err, "Permission denied")
                 ? " (BUILD_UID must be able to enter every folder above BUILD_ROOT: o+x)" : "");
    log_error("build: BUILD_SANDBOX=bwrap does not work here, so every local build will be "
              "refused: %s", B->sandbox_err);
}

/* Runs the sandbox once, around `true`, with the folders builds will
 * bind: a missing bwrap, a kernel without user namespaces, or a BUILD_ROOT
 * that BUILD_UID cannot reach is told now, and every build refused. */
static void sandbox_check(void)
{
    const struct config *c = B->app->cfg;
    static const char *const command[] = { "true", NULL };
    static const char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
    struct sandbox_spec spec = {
        .bwrap = c->bwrap_bin, .host = &B->host, .checkout = B->checkouts,
        .scratch = B->builds, .output = B->builds, .network = c->build_network,
        .tmp_mb = 1, .ro_paths = c->build_ro_paths, .command = command,
    };
    struct proc_opts o = { .envp = envp, .timeout_ms = PROBE_TIMEOUT_MS, .tail_bytes = 4096,
                           .rlimits = B->limits };
    char err[400];
    char **argv = sandbox_argv(&spec, err, sizeof err);

    B->sandbox = SB_BROKEN;
    if (!argv) {
        snprintf(B->sandbox_err, sizeof B->sandbox_err, "%s", err);
        log_error("build: the build sandbox cannot be set up: %s", err);
        return;
    }
    o.argv = (const char *const *)argv;
    build_proc_ids(&o);
    B->probe = proc_spawn(B->app->procs, &o, on_probe, NULL, err, sizeof err);
    sandbox_argv_free(argv);
    if (!B->probe) {
        snprintf(B->sandbox_err, sizeof B->sandbox_err, "%s (install the bubblewrap package)",
                 err);
        log_error("build: BUILD_SANDBOX=bwrap does not work here, so every local build will "
                  "be refused: %s", B->sandbox_err);
        return;
    }
    B->sandbox = SB_CHECKING;
}

/* The limits of every build process (see the README's "Builds in
 * production"): processes of the build's user, private writable memory
 * (RLIMIT_DATA, not RLIMIT_AS: node reserves far more address space than
 * it uses), the size of one file, and no core dumps. */
static void limits_init(const struct config *c)
{
    struct proc_rlimit *l = B->limits;

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

    if (B)
        return -1;
    if (!(B = calloc(1, sizeof *B)))
        return -1;
    B->app = app;
    TAILQ_INIT(&B->flights);
    /* Absolute: children run elsewhere (a build in its scratch folder,
     * docker mounting host paths). */
    if (util_mkdir_p(c->build_root) == 0 && (root = realpath(c->build_root, NULL))) {
        B->checkouts = util_asprintf("%s/checkouts", root);
        B->builds = util_asprintf("%s/builds", root);
        free(root);
    } else {
        char cwd[PATH_MAX];
        const char *base = c->build_root[0] == '/' || !getcwd(cwd, sizeof cwd) ? "" : cwd;
        B->checkouts = util_asprintf("%s%s%s/checkouts", base, *base ? "/" : "", c->build_root);
        B->builds = util_asprintf("%s%s%s/builds", base, *base ? "/" : "", c->build_root);
    }
    if (!B->checkouts || !B->builds || parse_build_env(c->build_env) < 0)
        goto fail;
    util_sha256_hex(c->build_env, strlen(c->build_env), hash);
    snprintf(B->env_hash, sizeof B->env_hash, "%.16s", hash);
    /* A web-only server may have no writable BUILD_ROOT: builds fail then,
     * with the reason in their log. */
    if (util_mkdir_p(B->checkouts) < 0 || util_mkdir_p(B->builds) < 0)
        log_warn("build: cannot create the folders under BUILD_ROOT=%s: %s", c->build_root,
                 strerror(errno));
    if (task_register(app->tasks, &build_kind) < 0)
        goto fail;
    limits_init(c);
    sandbox_host_probe(&B->host);
    {
        struct strv env = { 0 };
        if (docker_client_env(&env) < 0) {
            strv_free(&env);
            goto fail;
        }
        B->docker_env = env.v;
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
    struct flight *f;

    if (!B)
        return;
    B->stopping = true;
    if (B->probe) {
        proc_abandon(B->probe);
        B->probe = NULL;
    }
    while ((f = TAILQ_FIRST(&B->flights))) {
        TAILQ_REMOVE(&B->flights, f, link);
        flight_free(f);
    }
    builds_events_stop();
    for (char **e = B->extra_env; e && *e; e++)
        free(*e);
    free(B->extra_env);
    for (char **e = B->docker_env; e && *e; e++)
        free(*e);
    free(B->docker_env);
    free(B->checkouts);
    free(B->builds);
    free(B);
    B = NULL;
}

const char *const *build_docker_env(void)
{
    static const char *const fallback[] = { "PATH=/usr/local/bin:/usr/bin:/bin", NULL };

    return B && B->docker_env ? (const char *const *)B->docker_env : fallback;
}

const char *build_checkouts_dir(void)
{
    return B ? B->checkouts : NULL;
}

const char *build_builds_dir(void)
{
    return B ? B->builds : NULL;
}
