/* participate_runner: a study's built runner served to a family (see
 * participate_runner.h).  The runner's own files come from storage under the
 * sandbox CSP; its index.html carries a runner key, a capability kept in
 * Redis that lets the runner's script call the runner's API routes as
 * the family for a few days, and nothing else (auth.c).
 *
 * Where the runner is (issue 19): a build since sql/105 is shared by every
 * study on its repository, commit and environment, under
 * runners/<cache key>/ with that prefix compiled into its asset URLs; the
 * study's page serves that index.html and GET /runners/<key>/... its
 * assets, cached for long by browsers and shared caches (the key names the
 * content).  A study last built before (or seeded) is served from its own
 * folder, experiments/<uuid>/ or preview_experiments/<uuid>/, as then. */
#include "studyhub/domain/participate_runner.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/cache.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/domain/participate.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/runner_host.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"
#include "studyhub/io/storage.h"

/* A runner's index.html is read whole (the key goes into it); assets are
 * streamed, whatever their size. */
#define PARTICIPATE_MAX_PAGE (4u * 1024 * 1024)

/* ---- pure helpers (unit-tested) ------------------------------------------ */

bool participate_runner_fingerprinted(const char *path)
{
    const char *name = strrchr(path, '/');
    const char *dot, *dash;
    size_t n;

    name = name ? name + 1 : path;
    if (!(dot = strrchr(name, '.')))
        return false;
    /* The last '-' before the extension starts the hash. */
    dash = NULL;
    for (const char *p = name; p < dot; p++)
        if (*p == '-')
            dash = p;
    if (!dash || dash == name)
        return false;
    n = (size_t)(dot - dash - 1);
    if (n < 8 || n > 64)
        return false;
    for (const char *p = dash + 1; p < dot; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

char *participate_runner_inject(const char *html, size_t len, const char *key,
                                const char *study, const char *child, bool preview,
                                size_t *out_len)
{
    static const char open[] = "<meta name=\"studyhub-runner\" content=\"";
    char meta[256], *w = meta;
    size_t at = 0, kl = strlen(key), sl = strlen(study), cl = strlen(child), m;

    /* Built by hand, as snprintf's cost showed on every page. */
    if (sizeof open + kl + sl + cl + 8 > sizeof meta)
        return NULL;
    memcpy(w, open, sizeof open - 1);
    w += sizeof open - 1;
    memcpy(w, key, kl);
    w += kl;
    *w++ = ' ';
    memcpy(w, study, sl);
    w += sl;
    *w++ = ' ';
    memcpy(w, child, cl);
    w += cl;
    *w++ = ' ';
    *w++ = preview ? '1' : '0';
    *w++ = '"';
    *w++ = '>';
    m = (size_t)(w - meta);
    /* Right after the first "<head" tag's '>', matched without case. */
    for (size_t i = 0; i + 5 <= len; i++) {
        if (html[i] == '<' && strncasecmp(html + i + 1, "head", 4) == 0 &&
            (i + 5 == len || html[i + 5] == '>' || html[i + 5] == ' ' ||
             html[i + 5] == '\t' || html[i + 5] == '\n' || html[i + 5] == '\r')) {
            const char *gt = memchr(html + i, '>', len - i);
            if (gt)
                at = (size_t)(gt - html) + 1;
            break;
        }
    }
    char *out = malloc(len + (size_t)m + 1);
    if (!out)
        return NULL;
    memcpy(out, html, at);
    memcpy(out + at, meta, (size_t)m);
    memcpy(out + at + m, html + at, len - at);
    out[len + m] = '\0';
    *out_len = len + m;
    return out;
}

/* ---- where a study's files are, cached ------------------------------------
 * Every asset of a runner asks which build folder its study serves from;
 * a page of the runner loads a dozen.  The answer is kept by study uuid and
 * dropped by the studies_changed notification (sql/004: any UPDATE of the
 * row, which a build's end, an activation or a pause is); while
 * notifications do not flow the cache is bypassed, as studies.c's. */
static struct cache *asset_dirs;            /* owned; NULL when off */
static struct pg_pool *asset_dirs_pg;       /* borrowed */

#define ASSET_DIRS_MAX 4096
#define ASSET_DIRS_TTL_S 300

/* A family reopening the runner's page of a built study (a reload, the
 * runner's deep links) within PAGE_KEYS_TTL_S gets the key it was given a
 * moment ago instead of a lookup and a new key: the same capability, for
 * the same family, study and child, still days from expiring in Redis.
 * Any change of a study empties it (the keys of its entries name several
 * rows); a child removed meanwhile keeps its page for at most the TTL, and
 * a password reset's new epoch makes such a key fail (auth.c checks it),
 * so the TTL is short.  Previews are never kept: their permission can
 * change without a notification. */
static struct cache *page_keys;             /* owned; NULL when off */

#define PAGE_KEYS_MAX 16384
#define PAGE_KEYS_TTL_S 60

struct page_key {
    char key[65];
    char session_value[64];
    char object[96];             /* the index.html's storage key */
    char html_key[128];          /* its key in page_html */
};

/* The runner's index.html by storage key: a build writes its files before
 * the UPDATE of the study that settles it (sql/050), whose notification
 * drops the study's pages here, so a rebuilt page is never served stale. */
static struct cache *page_html;             /* owned; NULL when off */

#define PAGE_HTML_MAX 1024
#define PAGE_HTML_TTL_S 300
#define PAGE_HTML_LARGEST (512u * 1024)     /* larger pages are read each time */

/* file:// assets up to ASSET_BYTES_LARGEST, as ready bytes by storage
 * key (ASSET_BYTES_BUDGET in all): the value is "<ETag>\0<bytes>".  A
 * build writes its files before the UPDATE of its study whose
 * notification empties this (any study's: they are rare), and a shared
 * runner's files never change, so a request costs no open, fstat,
 * sendfile or close.  Up to 512 KB: a 200 KB bundle written from memory
 * went out at 1.3x nginx, by sendfile at 0.6x (tools/bench, one run). */
static struct cache *asset_bytes;           /* owned; NULL when off */

#define ASSET_BYTES_MAX 256
#define ASSET_BYTES_TTL_S 300
#define ASSET_BYTES_LARGEST (512u * 1024)
#define ASSET_BYTES_BUDGET (32u * 1024 * 1024)  /* all files kept, at most */

static void asset_dirs_notified(const char *channel, const char *payload, void *arg)
{
    (void)channel;
    (void)arg;
    if (asset_bytes)
        cache_clear(asset_bytes);
    if (page_keys)
        cache_clear(page_keys);
    if (page_html) {
        char k[96];
        if (!payload) {
            cache_clear(page_html);
        } else {
            snprintf(k, sizeof k, "experiments/%.36s/index.html", payload);
            cache_del(page_html, k);
            snprintf(k, sizeof k, "preview_experiments/%.36s/index.html", payload);
            cache_del(page_html, k);
        }
    }
    if (!asset_dirs)
        return;
    if (payload)
        cache_del(asset_dirs, payload);
    else
        cache_clear(asset_dirs);
}

int participate_runner_cache_start(struct pg_pool *pg)
{
    asset_dirs = cache_new(ASSET_DIRS_MAX, ASSET_DIRS_TTL_S);
    page_keys = cache_new(PAGE_KEYS_MAX, PAGE_KEYS_TTL_S);
    page_html = cache_new(PAGE_HTML_MAX, PAGE_HTML_TTL_S);
    asset_bytes = cache_new(ASSET_BYTES_MAX, ASSET_BYTES_TTL_S);
    if (asset_bytes)
        cache_limit_bytes(asset_bytes, ASSET_BYTES_BUDGET);
    asset_dirs_pg = pg;
    if (!asset_dirs || !page_keys || !page_html || !asset_bytes ||
        pg_pool_listen(pg, "studies_changed", asset_dirs_notified, NULL) < 0) {
        participate_runner_cache_stop();
        return -1;
    }
    return 0;
}

void participate_runner_cache_stop(void)
{
    cache_free(asset_dirs);
    cache_free(page_keys);
    cache_free(page_html);
    cache_free(asset_bytes);
    asset_bytes = NULL;
    asset_dirs = NULL;
    page_keys = NULL;
    page_html = NULL;
    asset_dirs_pg = NULL;
}

static bool asset_dirs_usable(void)
{
    return asset_dirs && pg_pool_listening(asset_dirs_pg);
}

static bool page_keys_usable(void)
{
    return page_keys && pg_pool_listening(asset_dirs_pg);
}


/* ---- serving the runner -------------------------------------------------- */

enum serve_kind {
    SERVE_PAGE,      /* /studies/<s>/<c>/...: index.html with a runner key */
    SERVE_PREVIEW,   /* /exp/studies/<s>/<c>/preview/...: the preview build's */
    SERVE_ASSET,     /* /studies/<s>/<path>: a file of a study's own folder */
    SERVE_RUNNER,    /* /runners/<key>/<path>: a file of a shared runner */
};

/* One request in flight: the lookup, the key, then the object. */
struct serve {
    struct http_req *req;        /* borrowed: answered exactly once */
    struct app *app;             /* borrowed */
    enum serve_kind kind;
    char study[37];
    char child[37];
    char key[65];                /* the runner key given to the page */
    char *object;                /* owned: the storage key to send */
    char html_key[128];          /* the page's key in page_html: the object,
                                    and the runner's generation when shared */
    char session_value[64];      /* "uid:epoch:0": what the key stands for */
    struct storage_op *op;       /* s3/gs asset: the HEAD or the stream */
    struct event *timer;         /* owned: waiting for the client to drain */
    bool started;                /* the streamed reply's headers are out */
    bool cacheable;              /* the asset's folder or the page's key may
                                    be kept */
    uint64_t ticket;             /* its cache_ticket, taken before the query */
    bool html_cacheable;         /* the page's index.html may be kept */
    bool on_runner_host;         /* the page on RUNNER_BASE_URL: its key is the
                                    cookie the hand-off set */
    char handoff[65];            /* the one-time code taking the key there */
    uint64_t html_ticket;        /* page_html's ticket before the read */
};

static void serve_free(struct serve *s)
{
    if (!s)
        return;
    if (s->timer)
        event_free(s->timer);
    free(s->object);
    free(s);
}

/* "uid study child": the family's page (uid at most 20 digits, the
 * uuids 36 characters each: it always fits). */
static void page_cache_key(const struct serve *s, const char *uid, char out[128])
{
    size_t n = strnlen(uid, 24);
    char *p = out;

    memcpy(p, uid, n);
    p += n;
    *p++ = ' ';
    memcpy(p, s->study, 36);
    p += 36;
    *p++ = ' ';
    memcpy(p, s->child, 37);        /* with its NUL */
}

/* Headers of every runner file: the sandbox, and never cached by a
 * shared cache (the page holds a key). */
static void runner_headers(struct http_req *req, bool page, bool on_runner_host)
{
    http_add_header(req, "Content-Security-Policy",
                    on_runner_host ? PARTICIPATE_RUNNER_HOST_CSP : PARTICIPATE_RUNNER_CSP);
    http_add_header(req, "Cache-Control", page ? "private, no-store" : "private, max-age=3600");
}

/* An asset's headers: the sandbox, its ETag, and a year's caching when its
 * name carries a fingerprint (the build gives a changed file a new name)
 * or it is a shared runner's: that folder's name is the hash of the
 * repository, commit and environment that made its files, so they never
 * change.  True when If-None-Match names the ETag: the caller answers 304. */
static bool asset_headers(struct http_req *req, const char *object, const char *etag)
{
    http_add_header(req, "Content-Security-Policy", PARTICIPATE_RUNNER_CSP);
    http_add_header(req, "Cache-Control", participate_runner_fingerprinted(object) ||
                                                  strncmp(object, "runners/", 8) == 0
                                              ? "public, max-age=31536000, immutable"
                                              : "private, max-age=3600");
    if (!etag || !*etag)
        return false;
    http_add_header(req, "ETag", etag);
    return static_etag_matches(http_req_header(req, "If-None-Match"), etag);
}

static void fetch_object(struct serve *s);
static bool asset_fallback(struct serve *s);
static void handoff_give(struct serve *s);

/* The page: the runner's index.html with the key written in. */
static void send_page(struct serve *s, const char *body, size_t body_len)
{
    struct http_req *req = s->req;
    size_t len = 0;
    char *html = participate_runner_inject(body, body_len, s->key, s->study, s->child,
                                           s->kind == SERVE_PREVIEW, &len);
    if (!html) {
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    runner_headers(req, true, s->on_runner_host);
    http_reply(req, 200, "text/html; charset=utf-8", html, len);
    free(html);
    serve_free(s);
}

static void object_got(const struct storage_result *r, void *arg)
{
    struct serve *s = arg;
    struct http_req *req = s->req;

    if (r->err == -ENOENT) {
        participate_page_error(req, 404, "This study is not ready",
                               "The study's experiment has not been built yet.");
        serve_free(s);
        return;
    }
    if (r->err) {
        log_warn("participate: storage get %s: %s", s->object, r->error ? r->error : "error");
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    if (s->html_cacheable && r->body_len <= PAGE_HTML_LARGEST && page_keys_usable())
        cache_put(page_html, s->html_ticket, s->html_key, r->body, r->body_len);
    send_page(s, r->body, r->body_len);
}

static void release_held(const void *body, size_t len, void *held)
{
    (void)body;
    (void)len;
    cache_release(held);
}

/* An asset from its ready bytes, "<ETag>\0<bytes>": when held in
 * asset_bytes, sent by reference (a 200 KB bundle is not copied per
 * reply) and released once sent; else copied. */
static void send_asset_bytes(struct serve *s, const char *v, size_t len, bool held)
{
    size_t elen = strlen(v);

    if (asset_headers(s->req, s->object, v)) {
        http_reply(s->req, 304, NULL, NULL, 0);
    } else if (held) {
        http_reply_ref(s->req, 200, storage_content_type(s->object), v + elen + 1,
                       len - elen - 1, release_held, (void *)v);
        return;
    } else {
        http_reply(s->req, 200, storage_content_type(s->object), v + elen + 1, len - elen - 1);
    }
    if (held)
        cache_release(v);
}

/* A small file read whole into "<ETag>\0<bytes>" (malloc'd, *len set);
 * NULL when it cannot be. */
static char *read_asset(int fd, const char *etag, int64_t size, size_t *len)
{
    size_t elen = strlen(etag), got = 0;
    char *v = malloc(elen + 1 + (size_t)size);

    if (!v)
        return NULL;
    memcpy(v, etag, elen + 1);
    while (got < (size_t)size) {
        ssize_t n = pread(fd, v + elen + 1 + got, (size_t)size - got, (off_t)got);
        if (n <= 0) {
            free(v);
            return NULL;
        }
        got += (size_t)n;
    }
    *len = elen + 1 + got;
    return v;
}

/* file://: an asset is sent from memory when small, else with sendfile as
 * the socket drains. */
static bool send_file_asset(struct serve *s)
{
    int64_t size = 0;
    int fd;
    struct stat st;
    char etag[64];
    bool keep = false;
    uint64_t ticket = 0;

    if (asset_bytes && pg_pool_listening(asset_dirs_pg)) {
        size_t len;
        const char *v;
        if (s->kind != SERVE_ASSET)     /* studies_files polled already */
            pg_pool_poll_notifies(asset_dirs_pg);
        if ((v = cache_hold(asset_bytes, s->object, &len))) {
            send_asset_bytes(s, v, len, true);
            return true;
        }
        keep = true;
        ticket = cache_ticket(asset_bytes);
    }
    fd = storage_file_open(s->app->storage, s->object, &size);
    if (fd < 0)
        return false;
    /* nginx's tag: the file's mtime and size, enough for a build's files
     * (a rebuild writes new files). */
    if (fstat(fd, &st) == 0)
        snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_mtime,
                 (unsigned long long)size);
    else
        etag[0] = '\0';
    if (keep && etag[0] && size <= (int64_t)ASSET_BYTES_LARGEST) {
        size_t len = 0;
        char *v = read_asset(fd, etag, size, &len);
        if (v) {
            close(fd);
            cache_put(asset_bytes, ticket, s->object, v, len);
            const char *held = cache_hold(asset_bytes, s->object, &len);
            if (held)       /* else outdated while read, or over the budget */
                send_asset_bytes(s, held, len, true);
            else
                send_asset_bytes(s, v, len, false);
            free(v);
            return true;
        }
    }
    if (asset_headers(s->req, s->object, etag)) {
        close(fd);
        http_reply(s->req, 304, NULL, NULL, 0);
        return true;
    }
    struct evbuffer *buf = http_file_buffer(fd, 0, size);
    if (!buf) {
        jsonapi_reply_unavailable(s->req, "Memory");
        return true;
    }
    http_reply_buffer(s->req, 200, storage_content_type(s->object), buf);
    evbuffer_free(buf);
    return true;
}

/* An asset missing from the deployed build is looked for in the preview
 * build (a preview of an active study); true when there is one to try. */
static bool asset_fallback(struct serve *s)
{
    if (s->kind != SERVE_ASSET || strncmp(s->object, "experiments/", 12) != 0)
        return false;
    char *alt = util_asprintf("preview_%s", s->object);
    if (!alt)
        return false;
    free(s->object);
    s->object = alt;
    return true;
}

/* ---- s3:// and gs:// assets: streamed ------------------------------------
 * HEAD (for the ETag, and 304 without a body), then the object streamed
 * into a chunked reply as it arrives; while more than PENDING_MAX bytes
 * wait for the client, the stream pauses and a timer looks again (the
 * server tells a stream nothing when its output drains, as export.c
 * notes). */
#define ASSET_PENDING_MAX (256u * 1024)
#define ASSET_WAIT_MS 5

static void asset_stream_end(struct serve *s, bool failed)
{
    if (failed)
        http_reply_abort(s->req);
    else
        http_reply_end(s->req);
    serve_free(s);
}

static void asset_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct serve *s = arg;

    (void)fd;
    (void)what;
    if (http_req_client_gone(s->req) || s->app->draining) {
        storage_cancel(s->op);          /* its callbacks will not run */
        s->op = NULL;
        asset_stream_end(s, true);
        return;
    }
    if (http_reply_pending(s->req) > ASSET_PENDING_MAX) {
        util_timer_ms(s->timer, ASSET_WAIT_MS);
        return;
    }
    storage_resume(s->op);
}

static int asset_data(const char *data, size_t len, void *arg)
{
    struct serve *s = arg;

    if (http_req_client_gone(s->req) || s->app->draining)
        return -1;                      /* asset_streamed ends the reply */
    if (!s->started) {
        http_reply_start(s->req, 200, storage_content_type(s->object));
        s->started = true;
    }
    if (http_reply_pending(s->req) > ASSET_PENDING_MAX) {
        if (!s->timer && !(s->timer = evtimer_new(s->app->base, asset_on_timer, s)))
            return -1;
        util_timer_ms(s->timer, ASSET_WAIT_MS);
        return STORAGE_PAUSE;           /* the same bytes come again */
    }
    struct evbuffer *buf = evbuffer_new();
    if (!buf || evbuffer_add(buf, data, len) < 0 || http_reply_chunk_buffer(s->req, buf) < 0) {
        if (buf)
            evbuffer_free(buf);
        return -1;
    }
    evbuffer_free(buf);
    return 0;
}

static void asset_streamed(const struct storage_result *r, void *arg)
{
    struct serve *s = arg;

    s->op = NULL;
    if (s->started) {
        if (r->err && r->err != -ECANCELED)
            log_warn("participate: storage stream %s: %s", s->object,
                     r->error ? r->error : "error");
        asset_stream_end(s, r->err != 0);
        return;
    }
    if (r->err == -ENOENT) {            /* gone between the HEAD and the GET */
        http_add_header(s->req, "Cache-Control", "no-store");
        jsonapi_reply_errorf(s->req, 404, "not_found", NULL, "Not found.");
    } else if (r->err) {
        log_warn("participate: storage get %s: %s", s->object, r->error ? r->error : "error");
        jsonapi_reply_unavailable(s->req, "Storage");
    } else {                            /* an empty object: no data came */
        http_reply(s->req, 200, storage_content_type(s->object), NULL, 0);
    }
    serve_free(s);
}

static void asset_headed(const struct storage_result *r, void *arg)
{
    struct serve *s = arg;
    struct http_req *req = s->req;

    s->op = NULL;
    if (r->err == -ENOENT && asset_fallback(s)) {
        fetch_object(s);
        return;
    }
    if (r->err == -ENOENT) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        serve_free(s);
        return;
    }
    if (r->err) {
        log_warn("participate: storage head %s: %s", s->object, r->error ? r->error : "error");
        jsonapi_reply_unavailable(req, "Storage");
        serve_free(s);
        return;
    }
    if (asset_headers(req, s->object, r->etag)) {
        http_reply(req, 304, NULL, NULL, 0);
        serve_free(s);
        return;
    }
    s->op = storage_get_stream(s->app->storage, s->object, asset_data, s, asset_streamed, s);
    if (!s->op) {
        jsonapi_reply_unavailable(req, "Memory");
        serve_free(s);
    }
}

static void fetch_object(struct serve *s)
{
    bool asset = s->kind == SERVE_ASSET || s->kind == SERVE_RUNNER;

    if (s->kind == SERVE_PAGE && !s->on_runner_host && s->app->cfg->runner_base_url[0]) {
        handoff_give(s);        /* the runner runs on its own host */
        return;
    }

    if (asset && strcmp(storage_backend(s->app->storage), "file") == 0) {
        bool sent = send_file_asset(s);
        if (!sent && asset_fallback(s))
            sent = send_file_asset(s);
        if (!sent)
            jsonapi_reply_errorf(s->req, 404, "not_found", NULL, "Not found.");
        serve_free(s);
        return;
    }
    if (asset) {
        s->op = storage_head(s->app->storage, s->object, asset_headed, s);
        if (!s->op) {
            jsonapi_reply_unavailable(s->req, "Memory");
            serve_free(s);
        }
        return;
    }
    /* The page is small (an index.html) and changed before it is sent. */
    if (page_keys_usable() && page_html) {
        size_t len;
        const char *html;
        pg_pool_poll_notifies(asset_dirs_pg);
        if (!s->html_key[0])
            util_strlcpy(s->html_key, s->object, sizeof s->html_key);
        if ((html = cache_get(page_html, s->html_key, &len))) {
            send_page(s, html, len);
            return;
        }
        s->html_cacheable = true;
        s->html_ticket = cache_ticket(page_html);
    }
    if (!storage_get(s->app->storage, s->object, PARTICIPATE_MAX_PAGE, object_got, s)) {
        participate_unavailable_page(s->req);
        serve_free(s);
    }
}

static void key_stored(redisReply *reply, void *arg)
{
    struct serve *s = arg;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        log_warn("participate: redis SETEX runner key: %s",
                 reply ? reply->str : "no reply");
        participate_unavailable_page(s->req);
        serve_free(s);
        return;
    }
    if (s->cacheable && s->kind == SERVE_PAGE && page_keys_usable()) {
        struct page_key e;
        char ck[128], uid[24];
        util_strlcpy(e.key, s->key, sizeof e.key);
        util_strlcpy(e.session_value, s->session_value, sizeof e.session_value);
        util_strlcpy(e.object, s->object, sizeof e.object);
        util_strlcpy(e.html_key, s->html_key, sizeof e.html_key);
        page_cache_key(s, apidoc_user_id(s->req, uid), ck);
        cache_put(page_keys, s->ticket, ck, &e, sizeof e);
    }
    fetch_object(s);
}

/* The page: a fresh runner key for this family, study and child. */
static void give_key(struct serve *s)
{
    char hash[65];

    util_random_hex(32, s->key);
    util_sha256_hex(s->key, strlen(s->key), hash);
    if (redis_cmd(s->app->redis, key_stored, s, "SETEX runner:%s %d %s", hash,
                  PARTICIPATE_KEY_TTL_S, s->session_value) != 0) {
        log_warn("participate: redis unavailable for the runner key");
        participate_unavailable_page(s->req);
        serve_free(s);
    }
}

/* ---- the runner's own host (RUNNER_BASE_URL) ------------------------------
 *
 * With the setting, the site's page does not serve the runner: it gives
 * the key to the runner's host through a one-time code in a redirect, and
 * that host turns the code into its own cookies (the key as sessionid,
 * HttpOnly; a csrftoken the runner reads) and serves the page unsandboxed.
 * The key never sits in a URL that lives: the code is good once, for a
 * minute, and the host's answer to it is a redirect without it. */

static void handoff_stored(redisReply *reply, void *arg)
{
    struct serve *s = arg;
    struct http_req *req = s->req;
    const char *qs = http_req_query_string(req);
    char loc[2048];

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        log_warn("participate: redis SETEX hand-off: %s", reply ? reply->str : "no reply");
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    /* The page's own query (already encoded as the client sent it) goes
     * along; the code comes last. */
    if (!runner_host_location(loc, sizeof loc, s->app->cfg->runner_base_url,
                              http_req_path(req), strchr(qs, '#') ? NULL : qs,
                              s->handoff)) {
        participate_no_study(req);
        serve_free(s);
        return;
    }
    http_add_header(req, "Location", loc);
    http_add_header(req, "Cache-Control", "no-store");
    http_add_header(req, "Referrer-Policy", "no-referrer");
    http_reply(req, 303, "text/plain; charset=utf-8", "", 0);
    serve_free(s);
}

static void handoff_give(struct serve *s)
{
    char hash[65];

    util_random_hex(32, s->handoff);
    util_sha256_hex(s->handoff, strlen(s->handoff), hash);
    if (redis_cmd(s->app->redis, handoff_stored, s, "SETEX runner-handoff:%s %d %s", hash,
                  PARTICIPATE_HANDOFF_TTL_S, s->key) != 0) {
        participate_unavailable_page(s->req);
        serve_free(s);
    }
}

/* One hand-off being taken. */
struct handoff {
    struct http_req *req;       /* borrowed: answered exactly once */
    bool secure;                /* the runner's host is https: Secure cookies */
};

/* GETDEL answered: the key the code stood for, or nothing. */
static void handoff_taken(redisReply *reply, void *arg)
{
    struct handoff *h = arg;
    struct http_req *req = h->req;
    char csrf[33], loc[1024];
    unsigned secure = h->secure ? AUTH_COOKIE_SECURE : 0;

    free(h);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        participate_unavailable_page(req);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len != 64 ||
        strspn(reply->str, "0123456789abcdef") != 64) {
        participate_page_error(req, 403, "This link has expired",
                               "Open the study again from its page to take part.");
        return;
    }
    auth_set_cookie(req, "sessionid", reply->str, PARTICIPATE_KEY_TTL_S,
                    AUTH_COOKIE_HTTP_ONLY | secure);
    util_random_hex(16, csrf);
    /* Not HttpOnly: the runner reads it from document.cookie. */
    auth_set_cookie(req, "csrftoken", csrf, PARTICIPATE_KEY_TTL_S, secure);
    if (!runner_host_location(loc, sizeof loc, "", http_req_path(req), NULL, NULL)) {
        participate_no_study(req);
        return;
    }
    http_add_header(req, "Location", loc);
    http_add_header(req, "Cache-Control", "no-store");
    http_add_header(req, "Referrer-Policy", "no-referrer");
    http_reply(req, 303, "text/plain; charset=utf-8", "", 0);
}

/* GET /studies/<s>/<c>/...?handoff=CODE on the runner's host. */
static void handoff_take(struct http_req *req, struct app *app, const char *code)
{
    char hash[65];

    if (strlen(code) != 64 || strspn(code, "0123456789abcdef") != 64) {
        participate_page_error(req, 403, "This link has expired",
                               "Open the study again from its page to take part.");
        return;
    }
    struct handoff *h = malloc(sizeof *h);
    if (!h) {
        participate_unavailable_page(req);
        return;
    }
    h->req = req;
    h->secure = strncmp(app->cfg->runner_base_url, "https://", 8) == 0;
    util_sha256_hex(code, 64, hash);
    if (redis_cmd(app->redis, handoff_taken, h, "GETDEL runner-handoff:%s", hash) != 0) {
        free(h);
        participate_unavailable_page(req);
    }
}

/* What follows /studies/<uuid>/ in the request's path ("" when none). */
static const char *rest_of(struct http_req *req)
{
    const char *p = http_req_path(req);
    size_t pre = strlen("/studies/") + 36 + 1;

    return strlen(p) > pre ? p + pre : "";
}

/* ---- the lookups --------------------------------------------------------- */

enum {
    SC_TYPE, SC_BUILT, SC_URL, SC_EPOCH, SC_SALT, SC_DIGITS, SC_STUDY_ID, SC_CHILD_ID,
    SC_UID, SC_RUNNER, SC_GEN
};
/* $1 user, $2 study uuid, $3 child uuid, $4 research id (preview: the
 * study may be in any state for who may read its details or share its
 * preview).  A row only for the caller's own child.  SC_RUNNER: the
 * shared runner of the study's latest successful build of the mode
 * (deploy for the page, preview for the preview), NULL when that build
 * (or none) predates shared runners; SC_GEN: which upload of that runner
 * it is (a lost runner built again is a new one, for page_html). */
static const struct pg_stmt page_stmt = {
    "participate_page",
    "SELECT s.study_type, s.built, s.metadata->>'url', u.session_epoch, s.salt,"
    "       s.hash_digits, s.id, c.id, u.id, lb.runner, lb.gen"
    "  FROM studies s JOIN children c ON c.uuid = $3::uuid AND c.user_id = $1"
    "       AND NOT c.deleted"
    "  JOIN users u ON u.id = $1"
    "  LEFT JOIN LATERAL ("
    "    SELECT CASE WHEN b.shared THEN b.cache_key END AS runner,"
    "           coalesce((SELECT r.built_by FROM runner_builds r"
    "                      WHERE r.cache_key = b.cache_key), 0) AS gen"
    "      FROM study_builds b"
    "     WHERE b.study_id = s.id AND b.outcome = 'succeeded'"
    "       AND b.mode = CASE WHEN $4::bigint IS NULL THEN 'deploy' ELSE 'preview' END"
    "     ORDER BY b.task_id DESC LIMIT 1) lb ON true"
    " WHERE s.uuid = $2::uuid"
    "   AND CASE WHEN $4::bigint IS NULL THEN s.state = 'active'"
    "            ELSE study_visible($4::bigint, s.id, s.state, s.public,"
    "                               s.shared_preview, false) END",
};

/* $1 study uuid: where its files are: the deployed build of an active
 * study, else the preview build (a file missing from the deployed build is
 * looked for in the preview's too: a preview of an active study). */
static const struct pg_stmt asset_stmt = {
    "participate_asset",
    "SELECT CASE WHEN s.state = 'active' AND s.built THEN 'experiments'"
    "            ELSE 'preview_experiments' END"
    "  FROM studies s WHERE s.uuid = $1::uuid",
};

static void page_found(PGresult *res, void *arg)
{
    struct serve *s = arg;
    struct http_req *req = s->req;

    if (!res) {
        log_warn("participate: page lookup: no database");
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    if (!pg_ok(res)) {
        log_warn("participate: page lookup: %s", PQresultErrorMessage(res));
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    if (PQntuples(res) != 1) {
        participate_no_study(req);
        serve_free(s);
        return;
    }
#define G(k) PQgetvalue(res, 0, (k))
    int type = atoi(G(SC_TYPE));
    snprintf(s->session_value, sizeof s->session_value, "%s:%s:0", G(SC_UID), G(SC_EPOCH));
    if (type == 2) {
        struct participate_external_study e = {
            .url = PQgetisnull(res, 0, SC_URL) ? "" : G(SC_URL),
            .study = s->study, .child = s->child, .salt = G(SC_SALT),
            .hash_digits = atoi(G(SC_DIGITS)),
            .study_id = G(SC_STUDY_ID), .child_id = G(SC_CHILD_ID),
            .preview = s->kind == SERVE_PREVIEW,
        };
        participate_external(req, s->app, &e);
        serve_free(s);
        return;
    }
    if (type == 3) {
        participate_jspsych(req, s->app);
        serve_free(s);
        return;
    }
    if (type == 1 && s->kind == SERVE_PAGE && G(SC_BUILT)[0] != 't') {
        participate_page_error(req, 404, "This study is not ready",
                               "The study's experiment has not been built yet.");
        serve_free(s);
        return;
    }
    if (!PQgetisnull(res, 0, SC_RUNNER)) {
        /* The shared runner: its index.html for this study's path. */
        s->object = util_asprintf("runners/%s/index.html", G(SC_RUNNER));
        snprintf(s->html_key, sizeof s->html_key, "runners/%.64s/index.html#%s",
                 G(SC_RUNNER), G(SC_GEN));
    } else {
        /* Built before shared runners (or seeded): the study's own folder. */
        s->object = util_asprintf("%s/%s/index.html",
                                  s->kind == SERVE_PREVIEW ? "preview_experiments"
                                                           : "experiments", s->study);
    }
#undef G
    if (!s->object) {
        participate_unavailable_page(req);
        serve_free(s);
        return;
    }
    if (s->on_runner_host)
        fetch_object(s);        /* its key is the cookie the gate checked */
    else
        give_key(s);
}

/* The asset at rest_of(req) in folder dir (NULL: no such study). */
static void asset_in(struct serve *s, const char *dir)
{
    struct http_req *req = s->req;
    const char *rest = rest_of(req);

    if (!dir || !storage_key_valid(rest)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        serve_free(s);
        return;
    }
    s->object = util_asprintf("%s/%s/%s", dir, s->study, rest);
    if (!s->object) {
        jsonapi_reply_unavailable(req, "Memory");
        serve_free(s);
        return;
    }
    fetch_object(s);
}

static void asset_found(PGresult *res, void *arg)
{
    struct serve *s = arg;
    const char *dir = NULL;

    if (apidoc_db_failed(s->req, res, "participate_asset")) {
        serve_free(s);
        return;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        dir = PQgetvalue(res, 0, 0);
        if (s->cacheable && asset_dirs_usable())
            cache_put(asset_dirs, s->ticket, s->study, dir, strlen(dir) + 1);
    }
    asset_in(s, dir);
}

static struct serve *serve_new(struct http_req *req, struct app *app, enum serve_kind kind)
{
    struct serve *s = calloc(1, sizeof *s);

    if (!s)
        return NULL;
    s->req = req;
    s->app = app;
    s->kind = kind;
    return s;
}

/* The page, once the gate has found the user (ROUTE_USER below). */
static void studies_page(struct http_req *req, struct app *app)
{
    const char *study = http_req_param(req, 0);
    char child[37], uid[24];

    if (!participate_split(rest_of(req), child)) {
        participate_no_study(req);
        return;
    }
    struct serve *s = serve_new(req, app, SERVE_PAGE);
    if (!s) {
        participate_unavailable_page(req);
        return;
    }
    util_strlcpy(s->study, study, sizeof s->study);
    util_strlcpy(s->child, child, sizeof s->child);
    apidoc_user_id(req, uid);
    s->on_runner_host = runner_host_is(req, app->cfg);
    if (s->on_runner_host && !auth_cookie(req, "sessionid", s->key, sizeof s->key)) {
        participate_no_study(req);    /* the gate found it: not reached */
        serve_free(s);
        return;
    }
    if (page_keys_usable() && !s->on_runner_host) {
        char ck[128];
        size_t len;
        const struct page_key *e;
        pg_pool_poll_notifies(asset_dirs_pg);   /* a change committed before now */
        page_cache_key(s, uid, ck);
        if ((e = cache_get(page_keys, ck, &len)) && len == sizeof *e) {
            memcpy(s->key, e->key, sizeof s->key);
            memcpy(s->session_value, e->session_value, sizeof s->session_value);
            memcpy(s->html_key, e->html_key, sizeof s->html_key);
            s->object = strdup(e->object);
            if (!s->object) {
                participate_unavailable_page(req);
                serve_free(s);
                return;
            }
            fetch_object(s);
            return;
        }
        s->cacheable = true;
        s->ticket = cache_ticket(page_keys);
    }
    const char *p[] = { uid, study, child, NULL };
    if (pg_exec(app->pg, &page_stmt, 4, p, page_found, s) < 0) {
        participate_unavailable_page(req);
        serve_free(s);
    }
}

/* The page's own policy: the table's route is public for the assets. */
static const struct route page_route = {
    HTTP_GET, "/studies/{id}/{child}/*", studies_page, ROUTE_USER,
};

/* GET /studies/{id}/...: a child's page (login, through the gate), else an
 * asset of the build.  A build's files are no secret (upstream serves them
 * from a public bucket): the study's data comes through the API. */
static void studies_files(struct http_req *req, struct app *app)
{
    const char *study = http_req_param(req, 0);
    const char *rest = rest_of(req);
    char child[37];

    if (!jsonapi_is_uuid(study) || !*rest) {
        participate_no_study(req);
        return;
    }
    bool page = participate_split(rest, child);
    if (page && runner_host_is(req, app->cfg)) {
        const char *code = http_req_query(req, "handoff");
        if (code)
            handoff_take(req, app, code);
        else
            auth_gate(req, &page_route, app);   /* the key as its cookie */
        return;
    }
    if (page) {
        /* A browser with no session at all goes to log in first. */
        const char *cookie = http_req_header(req, "Cookie");
        if (!http_req_header(req, "Authorization") &&
            !(cookie && strstr(cookie, "sessionid="))) {
            char *loc = util_asprintf("/login/?next=%s", http_req_path(req));
            if (loc)
                http_add_header(req, "Location", loc);
            free(loc);
            http_add_header(req, "Cache-Control", "no-store");
            participate_page_error(req, 302, "Please log in",
                                   "Log in to take part in this study.");
            return;
        }
        auth_gate(req, &page_route, app);
        return;
    }
    struct serve *s = serve_new(req, app, SERVE_ASSET);
    if (!s) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    util_strlcpy(s->study, study, sizeof s->study);
    if (asset_dirs_usable()) {
        size_t len;
        const char *dir;
        pg_pool_poll_notifies(asset_dirs_pg);   /* a change committed before now */
        if ((dir = cache_get(asset_dirs, s->study, &len)) && len > 1 && !dir[len - 1]) {
            asset_in(s, dir);
            return;
        }
        s->cacheable = true;
        s->ticket = cache_ticket(asset_dirs);
    }
    const char *p[] = { study };
    if (pg_exec(app->pg, &asset_stmt, 1, p, asset_found, s) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        serve_free(s);
    }
}

/* GET /runners/{key}/...: a file of a shared runner, for every study that
 * serves it.  Public, as a study's own folder is: a build holds no data
 * and no secret.  Its index.html is served only through a study's page,
 * with the family's key written in. */
static void runners_files(struct http_req *req, struct app *app)
{
    const char *key = http_req_param(req, 0);
    const char *p = http_req_path(req);
    size_t pre = strlen("/runners/") + 64 + 1;
    const char *rest = strlen(p) > pre ? p + pre : "";

    if (strlen(key) != 64 || strspn(key, "0123456789abcdef") != 64 || !*rest ||
        !storage_key_valid(rest) || strcmp(rest, "index.html") == 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    struct serve *s = serve_new(req, app, SERVE_RUNNER);
    if (!s || !(s->object = util_asprintf("runners/%s/%s", key, rest))) {
        serve_free(s);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    fetch_object(s);
}

/* GET /exp/studies/{id}/{child}/preview/...: the preview build. */
static void preview_page(struct http_req *req, struct app *app)
{
    const char *study = http_req_param(req, 0);
    const char *child = http_req_param(req, 1);
    char uid[24], rid[24];

    if (!jsonapi_is_uuid(study) || !jsonapi_is_uuid(child)) {
        participate_no_study(req);
        return;
    }
    struct serve *s = serve_new(req, app, SERVE_PREVIEW);
    if (!s) {
        participate_unavailable_page(req);
        return;
    }
    util_strlcpy(s->study, study, sizeof s->study);
    util_strlcpy(s->child, child, sizeof s->child);
    const char *research = apidoc_research_id(req, rid);
    if (!research) {       /* the policy asks two-factor; belt and braces */
        participate_no_study(req);
        serve_free(s);
        return;
    }
    const char *p[] = { apidoc_user_id(req, uid), study, child, research };
    if (pg_exec(app->pg, &page_stmt, 4, p, page_found, s) < 0) {
        participate_unavailable_page(req);
        serve_free(s);
    }
}

/* ---- routes -------------------------------------------------------------- */

/* After participate_routes's, in this order. */
static const struct route participate_runner_route_table[] = {
    { HTTP_GET, "/studies/{id}/*", studies_files, ROUTE_PUBLIC },
    { HTTP_GET, "/runners/{key}/*", runners_files, ROUTE_PUBLIC },
    { HTTP_GET, "/exp/studies/{id}/{child}/preview/", preview_page, ROUTE_RESEARCHER },
    { HTTP_GET, "/exp/studies/{id}/{child}/preview/*", preview_page, ROUTE_RESEARCHER },
};

int participate_runner_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, participate_runner_route_table);
}
