/* build_internal: what the files of the build task kind share (build.c,
 * the kind, its step and stages; build_wait.c, what a build waits on;
 * build_resolve.c, the stage resolve_sha; build_run.c, the stage build
 * and its children; build_flight.c, shared downloads and extractions;
 * build_upload.c, the output to storage; build_exec.c, the build's
 * environment and command lines).  Not for other modules. */
#ifndef STUDYHUB_TASKS_BUILD_INTERNAL_H
#define STUDYHUB_TASKS_BUILD_INTERNAL_H



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
#define SAME_RUNNER_WAIT_MS 250     /* between looks at another build of the runner */

/* ---- the module -------------------------------------------------------------- */

struct flight;
TAILQ_HEAD(flight_list, flight);
struct build;
TAILQ_HEAD(build_list, build);

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
    struct build_list running;       /* borrowed: the open builds, to find one
                                        producing the runner another needs */
    bool stopping;
    /* the sandbox of BUILD_RUNNER=local */
    enum sandbox_state sandbox;
    char sandbox_err[600];           /* why it is SB_BROKEN */
    struct proc *probe;              /* the check at start, while it runs */
    struct sandbox_host host;        /* /bin, /lib...: links or folders */
    struct proc_rlimit limits[5];    /* of every build process */
    char **docker_env;               /* owned: the docker client's environment */
};

extern struct builder *the_builder;

/* Outbound HTTP and storage are main's (app->fetch, app->storage). */
static inline struct fetch_client *bl_fetch(void)
{
    return the_builder->app->fetch;
}

static inline struct storage *bl_storage(const char **err)
{
    if (!the_builder->app->storage)
        *err = "the server has no object storage set up";
    return the_builder->app->storage;
}

/* ---- small helpers -------------------------------------------------------------- */

static inline bool is_sha(const char *s)
{
    if (!s || strlen(s) != 40)
        return false;
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static inline bool is_dir(const char *path)
{
    struct stat sb;

    return lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static inline bool exists(const char *path)
{
    struct stat sb;

    return lstat(path, &sb) == 0;
}

/* True when path is a folder with at least one entry. */
static inline bool dir_nonempty(const char *path)
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

static inline bool is_index_html(const char *rel)
{
    const char *slash = strrchr(rel, '/');

    return strcmp(slash ? slash + 1 : rel, "index.html") == 0;
}

/* A NULL-terminated list of owned strings. */
struct strv {
    char **v;
    size_t n, cap;
};

static inline int strv_add(struct strv *s, char *str)
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

static inline void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ---- the kind: states and data ------------------------------------------------------ */

enum build_state { BS_RESOLVE, BS_DOWNLOAD, BS_EXTRACT, BS_BUILD, BS_UPLOAD, BS_FINISH };


/* What 'finish' reports; UNKNOWN after a restart in 'finish' itself: the
 * settle statement derives it from the saved stages. */
enum build_outcome { BO_UNKNOWN, BO_SUCCEEDED, BO_FAILED, BO_CANCELLED };


struct upload;
struct flight;

enum flight_kind { FL_DOWNLOAD, FL_EXTRACT };
enum up_phase { UP_WALK, UP_PUT, UP_CHECK };

/* What a build waits on between its steps: at most one thing at a time,
 * changed only by bl_wait (names: bl_wait_names).  A step does nothing
 * while a query is out; the others end in a callback that steps again.
 * Nothing of it is saved: a resumed build starts its stage over. */
enum bl_wait {
    BW_NONE,      /* nothing: stepping, or moving to the next stage */
    BW_QUERY,     /* a task_pg_exec (bl_query) */
    BW_GITHUB,    /* b->req: a GitHub API call */
    BW_FLIGHT,    /* b->flight: the download or extraction of the commit */
    BW_CHILD,     /* b->proc: a child of the build stage */
    BW_UPLOAD,    /* b->up: the output going to storage */
    BW_TIMER,     /* b->timer: a retry, or another build of the runner */
};
extern const char *const bl_wait_names[];

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
    /* the work in progress: wait names it; at most one of these is set */
    enum bl_wait wait;              /* changed only by bl_wait */
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
    TAILQ_ENTRY(build) rlink;       /* in the_builder->running */
    bool producing;                 /* its build child ran: it will record the runner */
    bool waited;                    /* it waited for another build of its runner */
};

/* ---- shared between the files ---------------------------------------------------- */

/* build.c */
void bl_stop(struct build *b, enum build_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bl_move(struct build *b, int state, enum task_stage_outcome o);
const char *bl_state_name(int s);
/* b's checkout, zip and work folders from its commit and task: 0 or -1. */
int bl_paths(struct build *b);
void bl_cache_gone(struct build *b, const char *what);

/* build_wait.c */
void bl_wait(struct build *b, enum bl_wait w);
/* Back to BW_NONE if w is what b waits on (a query out stays). */
void bl_wait_end(struct build *b, enum bl_wait w);
/* task_pg_exec waited on as BW_QUERY; -1 (waiting on nothing) when it
 * could not be sent. */
int bl_query(struct build *b, const struct pg_stmt *stmt, int n,
             const char *const *params, task_pg_cb cb);
/* b->timer in ms, waited on as BW_TIMER; bl_on_timer (b->timer's
 * callback, arg b) ends the wait and steps the task again. */
void bl_wait_timer(struct build *b, int64_t ms);
void bl_on_timer(evutil_socket_t fd, short what, void *arg);
/* Stops what b waits on (GitHub call, flight, child, upload, timer): back
 * to BW_NONE, unless a query is out (its callback still comes). */
void bl_halt(struct build *b);

/* build_resolve.c */
/* "https://github.com/OWNER/REPO(.git)(/)": *base (malloc'd) is the URL
 * without the suffixes; owner and repo are GitHub's names (letters,
 * digits, '-', '_', '.').  -1 (nothing set in *base) when it is not
 * http(s) or lacks them. */
int build_parse_repo(const char *url, char **base, char owner[128], char repo[128]);
/* The runner's cache key (64 hex): what its output depends on, the
 * repository, commit and BUILD_ENV's hash; nothing of the study.  0, or
 * -1 when out of memory. */
int build_cache_key(const char *repo_url, const char *sha, const char *env_hash, char out[65]);
/* The stage resolve_sha. */
void bl_st_resolve(struct build *b);
/* Saves b's repository, commit and cache key (bl_query); the answer's
 * one row holds the runner's manifest (NULL when never built). */
int bl_query_resolved(struct build *b, task_pg_cb cb);

/* build_run.c */
/* The stage build. */
void bl_st_build(struct build *b);
/* The build stage's first child, and the one after which (-1: the build
 * is done). */
int bl_first_child(bool docker, bool sandboxed, int attempts);
int bl_next_child(int which);
/* Removes our container later (a killed `docker run` client leaves it
 * running). */
void bl_docker_rm_later(const char *name);
void bl_on_flight_done(struct build *b, enum flight_kind kind, bool ok, const char *msg);

/* build_flight.c */
int dl_start(struct build *b);
struct flight *ex_start(struct build *b, char *err, size_t errlen);
void flight_leave(struct build *b);
void flight_free(struct flight *f);
/* Whether the file ends with a zip's end-of-central-directory record
 * (within the last 64 KiB + 22 bytes): a cut download does not. */
bool zip_has_end(const char *path);
/* At stop: every flight goes (their builds were closed before). */
void flights_free_all(void);
/* When a flight of kind for key is under way, b waits on it: true. */
bool flight_wait(struct build *b, enum flight_kind kind, const char *key);

/* build_upload.c */
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


struct walkdir {
    DIR *d;             /* owned */
    char *rel;          /* owned: "" at the top */
};

struct upload {
    struct build *b;            /* borrowed */
    enum up_phase phase;
    bool cached;                /* files came from the cache's manifest */
    char *src_dir;              /* owned: the output folder (walk, put) */
    char *cache_prefix;         /* owned: runners/<key>/, served to every study */
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

/* The order files are published in: every index.html after the rest, so
 * that until it changes the old runner keeps working.  order: n entries. */
void up_publish_order(const struct upfile *files, size_t n, size_t *order);
struct upload *up_new(struct build *b);
void up_free(struct upload *up);
void up_run_phase(struct upload *up, enum up_phase phase);
/* The cached runner (its manifest): its index.html checked in storage. */
void up_from_manifest(struct upload *up, const json_t *manifest);
/* The build's output folder src_dir (taken) walked, put, then recorded. */
void up_from_output(struct upload *up, char *src_dir);

/* The assets an index.html asks for under prefix ("/runners/<key>/"):
 * fn(rel, n) for each src= or href= value starting with it, less the
 * prefix, its query and fragment (rel is not NUL-terminated).  Returns
 * how many.  The smoke check of an output (a missing one is a problem). */
size_t up_index_refs(const char *html, size_t len, const char *prefix,
                     void (*fn)(const char *rel, size_t n, void *arg), void *arg);
#define SMOKE_INDEX_MAX (1 << 20)   /* bytes of index.html read */


/* build_exec.c */
/* "the build", "copying the checkout"...: CH_* for logs. */
const char *bl_child_name(int which);
/* While the build's child runs: its folders measured every DISK_CHECK_MS,
 * and the child killed past BUILD_MAX_OUTPUT_MB. */
void bl_disk_watch_start(struct build *b);
void bl_disk_watch_stop(struct build *b);
/* Kills what a dead server's attempt of this build left running in its
 * folder (its process group, from the work folder's pgid file). */
void bl_kill_leftovers(struct build *b);
int build_env(struct build *b, struct strv *env, const char *checkout, const char *out);
bool runner_is_docker(void);
bool runner_is_sandboxed(void);
bool builds_change_user(void);
void build_proc_ids(struct proc_opts *o);
int docker_client_env(struct strv *env);
int docker_run_args(struct build *b, struct strv *argv);
int local_env(struct build *b, struct strv *envp, bool sandboxed);
int sandbox_run_args(struct build *b, struct strv *argv, char *err, size_t errlen);
void log_command(struct build *b, int which, const char *cwd, const struct strv *argv);

#endif
