/* storage: one object-store interface over a local folder (file://), S3
 * (s3://) and GCS's S3-compatible XML API (gs://).  Every operation is a
 * storage_op started from the loop and answered from the loop.
 *
 * The file backend does its file I/O on the loop thread in bounded slices:
 * at most FILE_TURN_BYTES of reading/writing per loop turn for streams,
 * copies and multipart completion; a whole object only for storage_get
 * (bounded by its max) and storage_put / storage_mpu_put_part (whose bytes
 * the caller already holds).  Listing reads directories synchronously, one
 * page at a time.
 *
 * The S3 backend signs every request with SigV4 (io/sigv4) and sends it
 * through io/fetch, which retries idempotent requests.
 *
 * This file: the operations, their dispatch to a backend, links and setup;
 * the backends are storage_file.c and storage_s3.c. */
#include "config.h"

#include "studyhub/io/storage_backend.h"

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/sigv4.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const storage_op_names[] = {
    "put", "put_stream", "put_file", "get", "get_stream", "head", "list",
    "copy", "delete", "mpu_create", "mpu_put_part", "mpu_complete",
    "mpu_abort", "mpu_list",
};

static void on_op_ev(evutil_socket_t fd, short what, void *arg);

bool storage_key_valid(const char *key)
{
    size_t n;

    if (!key || !*key || key[0] == '/')
        return false;
    n = strlen(key);
    if (n > STORAGE_KEY_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            return false;
    /* Segments: none empty, "." or ".."; the first not our own folder. */
    const char *seg = key;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') ||
            (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (seg == key && len == strlen(INTERNAL_DIR) &&
            memcmp(seg, INTERNAL_DIR, len) == 0)
            return false;
        if (!end)
            break;
        seg = end + 1;
    }
    return true;
}

/* --- operations ---------------------------------------------------------------- */

static void op_destroy(void *op)
{
    storage_op_free(op);
}

static struct storage_op *op_new(struct storage *st, enum op_kind kind,
                                 storage_cb cb, void *arg)
{
    struct storage_op *op = calloc(1, sizeof *op);

    if (!op)
        return NULL;
    op->st = st;
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    op->in_fd = -1;
    op->out_fd = -1;
    op->ev = evtimer_new(st->base, on_op_ev, op);
    if (!op->ev || reap_init(&op->reap, st->base, op_destroy, op) < 0) {
        if (op->ev)
            event_free(op->ev);
        free(op);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&st->ops, op, link);
    return op;
}

void storage_op_free(struct storage_op *op)
{
    reap_cleanup(&op->reap);
    if (op->req)
        fetch_cancel(op->req);
    event_free(op->ev);
    if (op->in_fd >= 0)
        close(op->in_fd);
    if (op->out_fd >= 0)
        close(op->out_fd);
    if (op->tmp) {
        unlink(op->tmp);
        free(op->tmp);
    }
    free(op->buf);
    free(op->key);
    free(op->key2);
    free(op->prefix);
    free(op->token);
    free(op->upload_id);
    free(op->content_type);
    free(op->path);
    for (size_t i = 0; i < op->nparts; i++)
        free((char *)op->parts[i].etag);
    free(op->parts);
    free(op->xml);
    free(op->r_error);
    free(op->r_etag);
    free(op->r_ctype);
    free(op->r_upload_id);
    free(op->r_next);
    free(op->r_body);
    for (size_t i = 0; i < op->r_nobjs; i++) {
        free((char *)op->r_objs[i].key);
        free((char *)op->r_objs[i].etag);
    }
    free(op->r_objs);
    for (size_t i = 0; i < op->r_nups; i++) {
        free((char *)op->r_ups[i].key);
        free((char *)op->r_ups[i].upload_id);
    }
    free(op->r_ups);
    TAILQ_REMOVE(&op->st->ops, op, link);
    free(op);
}

/* Answers the caller and frees the operation. */
void storage_op_done(struct storage_op *op)
{
    struct storage_result *r = &op->res;

    r->error = op->r_error;
    if (r->err && !r->error)
        r->error = strerror(-r->err);
    r->etag = op->r_etag;
    r->content_type = op->r_ctype;
    r->upload_id = op->r_upload_id;
    r->next_token = op->r_next;
    r->objects = op->r_objs;
    r->nobjects = op->r_nobjs;
    r->uploads = op->r_ups;
    r->nuploads = op->r_nups;
    if (r->err)
        log_debug("storage: %s %s %s failed: %s", op->st->name,
                  storage_op_names[op->kind], op->key ? op->key : "", r->error);
    /* Answered: a cancel from here on is a no-op. */
    reap_hold(&op->reap);
    reap_release(&op->reap);
    if (op->cb)
        op->cb(r, op->arg);
    reap_drop(&op->reap);   /* freed on a later turn, not under cb */
}

void storage_op_fail(struct storage_op *op, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void storage_op_fail(struct storage_op *op, int err, const char *fmt, ...)
{
    va_list ap;

    op->res.err = err;
    free(op->r_error);
    op->r_error = NULL;
    va_start(ap, fmt);
    if (vasprintf(&op->r_error, fmt, ap) < 0)
        op->r_error = NULL;
    va_end(ap);
    storage_op_done(op);
}

/* Runs the op's next step on a later loop turn (after pending I/O). */
void storage_op_again(struct storage_op *op)
{
    static const struct timeval now = { 0, 0 };
    evtimer_add(op->ev, &now);
}

/* Starts op from the loop, or reports an argument error from there. */
static struct storage_op *op_submit(struct storage_op *op, int err,
                                    const char *why)
{
    if (err) {
        op->res.err = err;
        op->r_error = xstrdup(why);
    }
    storage_op_again(op);
    return op;
}

void storage_cancel(struct storage_op *op)
{
    if (!op || reap_released(&op->reap))
        return;
    if (op->req) {
        fetch_cancel(op->req);
        op->req = NULL;
    }
    evtimer_del(op->ev);
    /* Now, or on a later turn when a user function of it is on the stack. */
    reap_release(&op->reap);
}

void storage_resume(struct storage_op *op)
{
    if (!op || reap_released(&op->reap))
        return;
    if (op->req) {
        fetch_resume(op->req);
    } else if (op->paused) {
        op->paused = false;
        storage_op_again(op);
    }
}

/* Calls a user stream function holding op.  Returns false when the op was
 * cancelled inside it (freed on a later turn). */
bool storage_op_user_write(struct storage_op *op, const char *p, size_t n,
                          int *rc)
{
    bool live;

    reap_hold(&op->reap);
    *rc = op->write_fn(p, n, op->rw_arg);
    live = !reap_released(&op->reap);
    reap_drop(&op->reap);
    return live;
}

bool storage_op_user_read(struct storage_op *op, char *p, size_t n,
                         ssize_t *got)
{
    bool live;

    reap_hold(&op->reap);
    *got = op->read_fn(p, n, op->rw_arg);
    live = !reap_released(&op->reap);
    reap_drop(&op->reap);
    return live;
}

/* ============================ dispatch ====================================== */

static void on_op_ev(evutil_socket_t fd, short what, void *arg)
{
    struct storage_op *op = arg;

    if (op->res.err) {
        storage_op_done(op);
        return;
    }
    if (op->st->kind == ST_FILE)
        storage_file_step(op);
    else
        storage_s3_step(op);
}

/* --- public operations ------------------------------------------------------ */

#define NEW_OP(kind)                                   \
    struct storage_op *op = op_new(st, kind, cb, arg); \
    if (!op)                                           \
        return NULL

static struct storage_op *op_keyed(struct storage_op *op, const char *key)
{
    if (!storage_key_valid(key))
        return op_submit(op, -EINVAL, "invalid key");
    op->key = strdup(key);
    if (!op->key)
        return op_submit(op, -ENOMEM, "out of memory");
    return NULL;
}

struct storage_op *storage_put(struct storage *st, const char *key,
                               const void *data, size_t len,
                               const char *content_type, storage_cb cb,
                               void *arg)
{
    NEW_OP(OP_PUT);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    op->data = data ? data : "";
    op->len = data ? len : 0;
    op->content_type = xstrdup(content_type);
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_put_stream(struct storage *st, const char *key,
                                      int64_t len, const char *content_type,
                                      storage_read_fn read_fn, void *rarg,
                                      storage_cb cb, void *arg)
{
    NEW_OP(OP_PUT_STREAM);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    if (!read_fn || len < 0)
        return op_submit(op, -EINVAL, "a streamed put needs a reader and a length");
    op->stream_len = len;
    op->read_fn = read_fn;
    op->rw_arg = rarg;
    op->content_type = xstrdup(content_type);
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_put_file(struct storage *st, const char *key,
                                    const char *path,
                                    const char *content_type, storage_cb cb,
                                    void *arg)
{
    NEW_OP(OP_PUT_FILE);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    if (!path)
        return op_submit(op, -EINVAL, "no source file");
    op->path = strdup(path);
    op->content_type = xstrdup(content_type);
    return op_submit(op, op->path ? 0 : -ENOMEM, "out of memory");
}

struct storage_op *storage_get(struct storage *st, const char *key,
                               size_t max, storage_cb cb, void *arg)
{
    NEW_OP(OP_GET);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    op->max = max ? max : DEFAULT_GET_MAX;
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_get_stream(struct storage *st, const char *key,
                                      storage_write_fn write_fn, void *warg,
                                      storage_cb cb, void *arg)
{
    NEW_OP(OP_GET_STREAM);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    if (!write_fn)
        return op_submit(op, -EINVAL, "a streamed get needs a writer");
    op->write_fn = write_fn;
    op->rw_arg = warg;
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_head(struct storage *st, const char *key,
                                storage_cb cb, void *arg)
{
    NEW_OP(OP_HEAD);
    struct storage_op *early = op_keyed(op, key);
    return early ? early : op_submit(op, 0, NULL);
}

struct storage_op *storage_list(struct storage *st, const char *prefix,
                                const char *token, int max_keys,
                                storage_cb cb, void *arg)
{
    NEW_OP(OP_LIST);
    if (!prefix_valid(prefix))
        return op_submit(op, -EINVAL, "invalid prefix");
    op->prefix = xstrdup(prefix ? prefix : "");
    op->token = xstrdup(token);
    op->max_keys = (max_keys <= 0 || max_keys > LIST_MAX) ? LIST_MAX : max_keys;
    if (!op->prefix || (token && !op->token))
        return op_submit(op, -ENOMEM, "out of memory");
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_copy(struct storage *st, const char *src_key,
                                const char *dst_key, storage_cb cb, void *arg)
{
    NEW_OP(OP_COPY);
    struct storage_op *early = op_keyed(op, src_key);
    if (early)
        return early;
    if (!storage_key_valid(dst_key))
        return op_submit(op, -EINVAL, "invalid key");
    op->key2 = strdup(dst_key);
    return op_submit(op, op->key2 ? 0 : -ENOMEM, "out of memory");
}

struct storage_op *storage_delete(struct storage *st, const char *key,
                                  storage_cb cb, void *arg)
{
    NEW_OP(OP_DELETE);
    struct storage_op *early = op_keyed(op, key);
    return early ? early : op_submit(op, 0, NULL);
}

struct storage_op *storage_mpu_create(struct storage *st, const char *key,
                                      const char *content_type,
                                      storage_cb cb, void *arg)
{
    NEW_OP(OP_MPU_CREATE);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    op->content_type = xstrdup(content_type);
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_mpu_put_part(struct storage *st, const char *key,
                                        const char *upload_id, int number,
                                        const void *data, size_t len,
                                        storage_cb cb, void *arg)
{
    NEW_OP(OP_MPU_PART);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    if (!upload_id || !*upload_id || number < 1 || number > 10000)
        return op_submit(op, -EINVAL, "bad upload id or part number");
    op->upload_id = strdup(upload_id);
    op->number = number;
    op->data = data ? data : "";
    op->len = data ? len : 0;
    return op_submit(op, op->upload_id ? 0 : -ENOMEM, "out of memory");
}

struct storage_op *storage_mpu_complete(struct storage *st, const char *key,
                                        const char *upload_id,
                                        const struct storage_part *parts,
                                        size_t nparts, storage_cb cb,
                                        void *arg)
{
    NEW_OP(OP_MPU_COMPLETE);
    struct storage_op *early = op_keyed(op, key);

    if (early)
        return early;
    if (!upload_id || !*upload_id || !parts || nparts == 0 || nparts > 10000)
        return op_submit(op, -EINVAL, "bad upload id or part list");
    op->upload_id = strdup(upload_id);
    op->parts = calloc(nparts, sizeof *op->parts);
    if (!op->upload_id || !op->parts)
        return op_submit(op, -ENOMEM, "out of memory");
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].number < 1 || parts[i].number > 10000 || !parts[i].etag ||
            (i && parts[i].number <= parts[i - 1].number))
            return op_submit(op, -EINVAL, "part numbers must ascend within 1..10000");
        op->parts[i].number = parts[i].number;
        op->parts[i].etag = strdup(parts[i].etag);
        op->nparts = i + 1;
        if (!op->parts[i].etag)
            return op_submit(op, -ENOMEM, "out of memory");
    }
    return op_submit(op, 0, NULL);
}

struct storage_op *storage_mpu_abort(struct storage *st, const char *key,
                                     const char *upload_id, storage_cb cb,
                                     void *arg)
{
    NEW_OP(OP_MPU_ABORT);
    struct storage_op *early = op_keyed(op, key);
    if (early)
        return early;
    if (!upload_id || !*upload_id)
        return op_submit(op, -EINVAL, "bad upload id");
    op->upload_id = strdup(upload_id);
    return op_submit(op, op->upload_id ? 0 : -ENOMEM, "out of memory");
}

struct storage_op *storage_mpu_list(struct storage *st, const char *prefix,
                                    const char *token, storage_cb cb,
                                    void *arg)
{
    NEW_OP(OP_MPU_LIST);
    if (!prefix_valid(prefix))
        return op_submit(op, -EINVAL, "invalid prefix");
    op->prefix = xstrdup(prefix ? prefix : "");
    op->token = xstrdup(token);
    if (!op->prefix || (token && !op->token))
        return op_submit(op, -ENOMEM, "out of memory");
    return op_submit(op, 0, NULL);
}

/* --- presigned links ----------------------------------------------------------- */

/* hex HMAC-SHA256(link_secret, key "\n" expires) */
static void link_sig(const struct storage *st, const char *key,
                     const char *expires, char out[65])
{
    char *msg = util_asprintf("%s\n%s", key, expires);
    uint8_t mac[32];

    if (!msg) {
        out[0] = '\0';
        return;
    }
    sigv4_hmac_sha256(st->link_secret, strlen(st->link_secret), msg, strlen(msg), mac);
    util_hex(mac, sizeof mac, out);
    free(msg);
}

char *storage_presign_get(struct storage *st, const char *key,
                          unsigned expires, time_t now,
                          const char *download_name, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!storage_key_valid(key)) {
        *err = "invalid key";
        return NULL;
    }
    if (expires < 1 || expires > 604800) {
        *err = "expiry must be 1 s to 7 days";
        return NULL;
    }
    if (st->kind == ST_FILE) {
        if (!st->link_secret || !*st->link_secret) {
            *err = "no link secret configured";
            return NULL;
        }
        char exp[24], sig[65];
        snprintf(exp, sizeof exp, "%lld", (long long)now + expires);
        link_sig(st, key, exp, sig);
        char *ekey = sigv4_uri_encode(key, strlen(key), true);
        char *url = ekey ? util_asprintf("%s/storage/%s?expires=%s&sig=%s",
                                     st->public_base ? st->public_base : "", ekey, exp, sig)
                         : NULL;
        free(ekey);
        if (!url)
            *err = "out of memory";
        return url;
    }

    char *path = util_asprintf("%s/%s", st->path_prefix, key);
    char *disp = NULL;
    struct sigv4_pair extra[1];
    size_t nextra = 0;
    if (download_name && *download_name) {
        /* Quotes, backslashes and controls would break the header. */
        char *clean = strdup(download_name);
        for (char *p = clean; p && *p; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '_';
        disp = clean ? util_asprintf("attachment; filename=\"%s\"", clean) : NULL;
        free(clean);
        if (disp)
            extra[nextra++] = (struct sigv4_pair){ "response-content-disposition", disp };
    }
    struct sigv4_creds cr = { st->access_key, st->secret_key, st->region, "s3" };
    char *url = path ? sigv4_presign_url(&cr, "GET", st->origin, st->host, path,
                                         extra, nextra, now, expires)
                     : NULL;
    free(path);
    free(disp);
    if (!url)
        *err = "cannot sign the URL";
    return url;
}

int storage_link_verify(const struct storage *st, const char *key,
                        const char *expires, const char *sig, time_t now)
{
    char want[65];
    char *end;

    if (!storage_key_valid(key) || !expires || !sig)
        return -EINVAL;
    if (st->kind != ST_FILE || !st->link_secret || !*st->link_secret)
        return -EACCES;
    long long e = strtoll(expires, &end, 10);
    if (end == expires || *end || e <= 0)
        return -EACCES;
    link_sig(st, key, expires, want);
    if (strlen(sig) != 64 || CRYPTO_memcmp(want, sig, 64) != 0)
        return -EACCES;
    if ((long long)now > e)
        return -ETIMEDOUT;
    return 0;
}

/* --- setup ---------------------------------------------------------------------- */

const char *storage_backend(const struct storage *st)
{
    return st->name;
}

/* Browsers need the right type to run a runner (a script served as
 * octet-stream is refused under nosniff) and to play a video. */
const char *storage_content_type(const char *key)
{
    static const struct { const char *ext, *type; } types[] = {
        { "html", "text/html; charset=utf-8" }, { "htm", "text/html; charset=utf-8" },
        { "js", "text/javascript; charset=utf-8" }, { "mjs", "text/javascript; charset=utf-8" },
        { "css", "text/css; charset=utf-8" }, { "json", "application/json" },
        { "map", "application/json" }, { "svg", "image/svg+xml" }, { "png", "image/png" },
        { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "gif", "image/gif" },
        { "webp", "image/webp" }, { "ico", "image/x-icon" }, { "woff", "font/woff" },
        { "woff2", "font/woff2" }, { "ttf", "font/ttf" }, { "otf", "font/otf" },
        { "eot", "application/vnd.ms-fontobject" }, { "txt", "text/plain; charset=utf-8" },
        { "xml", "application/xml" }, { "wasm", "application/wasm" }, { "mp3", "audio/mpeg" },
        { "mp4", "video/mp4" }, { "webm", "video/webm" }, { "mov", "video/quicktime" },
        { "flv", "video/x-flv" }, { "zip", "application/zip" }, { "ogg", "audio/ogg" },
        { "wav", "audio/wav" }, { "pdf", "application/pdf" }, { "csv", "text/csv; charset=utf-8" },
    };
    const char *slash = strrchr(key, '/');
    const char *dot = strrchr(slash ? slash : key, '.');

    if (dot && dot[1]) {
        for (size_t i = 0; i < sizeof types / sizeof *types; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

struct storage *storage_new(struct event_base *base, struct fetch_client *fc,
                            const struct storage_config *cfg,
                            const char **err)
{
    const char *dummy;
    const char *url = cfg && cfg->url && *cfg->url ? cfg->url : "file://var/storage";
    struct storage *st;
    int rc;

    if (!err)
        err = &dummy;
    *err = NULL;
    st = calloc(1, sizeof *st);
    if (!st) {
        *err = "out of memory";
        return NULL;
    }
    st->base = base;
    st->fc = fc;
    TAILQ_INIT(&st->ops);
    if (starts_with(url, "file://")) {
        rc = storage_file_setup(st, url + 7, err);
        if (!rc && cfg) {
            st->fsync = cfg->fsync;
            st->public_base = xstrdup(cfg->public_base);
            st->link_secret = xstrdup(cfg->link_secret);
            /* A trailing '/' would double in links. */
            if (st->public_base) {
                size_t n = strlen(st->public_base);
                while (n > 0 && st->public_base[n - 1] == '/')
                    st->public_base[--n] = '\0';
            }
        }
    } else if (starts_with(url, "s3://") || starts_with(url, "gs://")) {
        bool gs = url[0] == 'g';
        if (!fc) {
            *err = "s3/gs storage needs an HTTP client";
            rc = -1;
        } else {
            rc = storage_s3_setup(st, url + 5, gs, cfg, err);
        }
    } else {
        *err = "storage URL must start with file://, s3:// or gs://";
        rc = -1;
    }
    if (rc) {
        storage_free(st);
        return NULL;
    }
    return st;
}

void storage_free(struct storage *st)
{
    if (!st)
        return;
    while (!TAILQ_EMPTY(&st->ops))
        storage_op_free(TAILQ_FIRST(&st->ops));
    free(st->dir);
    free(st->public_base);
    if (st->link_secret)
        OPENSSL_cleanse(st->link_secret, strlen(st->link_secret));
    free(st->link_secret);
    free(st->bucket);
    free(st->origin);
    free(st->host);
    free(st->path_prefix);
    free(st->region);
    free(st->access_key);
    if (st->secret_key)
        OPENSSL_cleanse(st->secret_key, strlen(st->secret_key));
    free(st->secret_key);
    free(st);
}
