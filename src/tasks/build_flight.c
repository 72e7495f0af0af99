/* build_flight: one download or extraction of a commit, shared by every
 * build that needs it at once (twenty builds of one commit download it
 * once); the waiting builds are listed on the flight. */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

/* ---- flights: one download or extraction of a commit, shared ------------------------ */

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


static struct flight *flight_find(enum flight_kind kind, const char *key)
{
    struct flight *f;

    TAILQ_FOREACH(f, &the_builder->flights, link)
        if (f->kind == kind && strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

void flight_free(struct flight *f)
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
    bl_wait(b, BW_FLIGHT);
    TAILQ_INSERT_TAIL(&f->waiters, b, wlink);
}

void flight_leave(struct build *b)
{
    if (!b->flight)
        return;
    TAILQ_REMOVE(&b->flight->waiters, b, wlink);
    b->flight = NULL;
    bl_wait_end(b, BW_FLIGHT);
    /* A flight nobody waits for runs on: its product (a checkout) is
     * what the next build of the commit needs anyway. */
}

/* The end: every waiter is told, then it is freed. */
static void flight_finish(struct flight *f, bool ok, const char *msg)
{
    struct build *b;

    TAILQ_REMOVE(&the_builder->flights, f, link);
    while ((b = TAILQ_FIRST(&f->waiters))) {
        TAILQ_REMOVE(&f->waiters, b, wlink);
        b->flight = NULL;
        bl_wait_end(b, BW_FLIGHT);
        bl_on_flight_done(b, f->kind, ok, msg);
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
    TAILQ_INSERT_TAIL(&the_builder->flights, f, link);
    return f;
}

/* -- download */

static void dl_attempt(struct flight *f);

static int dl_write(const char *data, size_t len, void *arg)
{
    struct flight *f = arg;
    uint64_t max = (uint64_t)the_builder->app->cfg->max_archive_bytes;

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
bool zip_has_end(const char *path)
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
    const struct config *c = the_builder->app->cfg;
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
int dl_start(struct build *b)
{
    char rnd[17];
    struct flight *f = flight_new(FL_DOWNLOAD, b->zip, b->t->id);

    if (!f)
        return -1;
    util_random_hex(8, rnd);
    f->url = util_asprintf("%s/archive/%s.zip", b->repo_url, b->sha);
    f->part = util_asprintf("%s/.dl-%s-%s.part", the_builder->checkouts, b->sha, rnd);
    f->timer = evtimer_new(the_builder->app->base, on_dl_timer, f);
    if (!f->url || !f->part || !f->timer) {
        TAILQ_REMOVE(&the_builder->flights, f, link);
        flight_free(f);
        return -1;
    }
    f->fd = open(f->part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        TAILQ_REMOVE(&the_builder->flights, f, link);
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

struct flight *ex_start(struct build *b, char *err, size_t errlen)
{
    const struct config *c = the_builder->app->cfg;
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
        f->job = archive_extract_start(the_builder->app->procs, NULL, b->zip, b->checkout, top, &lim,
                                       c->build_timeout_s * 1000, on_extracted, f, err, errlen);
    else
        snprintf(err, errlen, "out of memory");
    free(top);
    if (!f->job) {
        TAILQ_REMOVE(&the_builder->flights, f, link);
        flight_free(f);
        return NULL;
    }
    flight_join(f, b);
    return f;
}

bool flight_wait(struct build *b, enum flight_kind kind, const char *key)
{
    struct flight *f = flight_find(kind, key);

    if (!f)
        return false;
    task_log(b->t, "waiting for the %s of this commit started by task %" PRId64,
             kind == FL_DOWNLOAD ? "download" : "extraction", f->owner_task);
    flight_join(f, b);
    return true;
}

void flights_free_all(void)
{
    struct flight *f;

    while ((f = TAILQ_FIRST(&the_builder->flights))) {
        TAILQ_REMOVE(&the_builder->flights, f, link);
        flight_free(f);
    }
}
