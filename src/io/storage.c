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
 * through io/fetch, which retries idempotent requests. */
#include "config.h"

#include "studyhub/io/storage.h"

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/sigv4.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <time.h>

#define FILE_CHUNK (256u << 10)
/* File I/O done per loop turn by one streaming operation. */
#define FILE_TURN_BYTES (1u << 20)
#define LIST_MAX 1000
/* Bodies up to this size are hashed into x-amz-content-sha256; larger ones
 * go as UNSIGNED-PAYLOAD so that hashing a part does not stall the loop
 * (TLS protects them in transit). */
#define HASH_BODY_MAX (1u << 20)
#define XML_MAX (8u << 20)
#define DEFAULT_GET_MAX (1u << 20)
#define INTERNAL_DIR ".studyhub"
/* file:// objects and folders are the server's alone: it serves them
 * through signed links, nobody else on the host needs to read them. */
#define STORAGE_FILE_MODE 0600
#define STORAGE_DIR_MODE 0700

enum st_kind { ST_FILE, ST_S3 };

struct storage_op;
TAILQ_HEAD(op_list, storage_op);

struct storage {
    struct event_base *base;  /* borrowed */
    struct fetch_client *fc;  /* borrowed; NULL allowed for file */
    enum st_kind kind;
    const char *name;         /* static: "file", "s3" or "gs" */
    struct op_list ops;       /* owned: live operations */
    /* file */
    char *dir;                /* owned: no trailing '/' */
    char *public_base;        /* owned; may be NULL */
    char *link_secret;        /* owned; may be NULL */
    bool fsync;               /* fdatasync before rename */
    uint64_t seq;             /* temp file names */
    /* s3 / gs */
    char *bucket;             /* owned */
    char *origin;             /* owned: scheme://host[:port] of requests */
    char *host;               /* owned: Host header value */
    char *path_prefix;        /* owned: "/bucket" (path-style) or "" */
    char *region;             /* owned */
    char *access_key;         /* owned */
    char *secret_key;         /* owned */
};

enum op_kind {
    OP_PUT, OP_PUT_STREAM, OP_PUT_FILE, OP_GET, OP_GET_STREAM, OP_HEAD,
    OP_LIST, OP_COPY, OP_DELETE, OP_MPU_CREATE, OP_MPU_PART,
    OP_MPU_COMPLETE, OP_MPU_ABORT, OP_MPU_LIST,
};
static const char *const op_names[] = {
    "put", "put_stream", "put_file", "get", "get_stream", "head", "list",
    "copy", "delete", "mpu_create", "mpu_put_part", "mpu_complete",
    "mpu_abort", "mpu_list",
};

struct storage_op {
    TAILQ_ENTRY(storage_op) link; /* in st->ops */
    struct storage *st;           /* borrowed */
    enum op_kind kind;
    storage_cb cb;                /* borrowed; may be NULL */
    void *arg;                    /* borrowed */
    int busy;                     /* > 0 while a user function runs */
    bool cancelled;               /* cancelled while busy: freed after */
    bool finishing;               /* cb running: cancel is a no-op */
    bool paused;                  /* stream waits for storage_resume */
    bool stopped;                 /* the user's stream function said stop */
    struct event *ev;             /* owned: start, file work slices */
    struct fetch_req *req;        /* s3 request in flight (fetch owns) */
    /* parameters (owned copies unless said) */
    char *key;
    char *key2;                   /* copy destination */
    char *prefix;
    char *token;
    char *upload_id;
    char *content_type;
    char *path;                   /* put_file source */
    const void *data;             /* borrowed body */
    size_t len;
    size_t max;                   /* get: byte limit */
    int max_keys;
    int number;                   /* part number */
    int64_t stream_len;           /* put_stream: promised length */
    storage_read_fn read_fn;      /* borrowed */
    storage_write_fn write_fn;    /* borrowed */
    void *rw_arg;                 /* borrowed */
    struct storage_part *parts;   /* owned, etags owned */
    size_t nparts;
    char *xml;                    /* owned: request body (complete) */
    size_t xml_len;
    /* file streaming */
    int in_fd;                    /* owned; -1 when closed */
    int out_fd;                   /* owned; -1 when closed */
    char *tmp;                    /* owned: temp file to rename or unlink */
    char *buf;                    /* owned: one chunk */
    size_t buf_len;               /* bytes in buf */
    size_t buf_off;               /* bytes of buf already written */
    int64_t moved;                /* bytes streamed so far */
    size_t part_idx;              /* complete: next part to append */
    /* result and what it points to (owned) */
    struct storage_result res;
    char *r_error;
    char *r_etag;
    char *r_ctype;
    char *r_upload_id;
    char *r_next;
    char *r_body;
    struct storage_object *r_objs;
    size_t r_nobjs;
    struct storage_upload_info *r_ups;
    size_t r_nups;
};

static void on_op_ev(evutil_socket_t fd, short what, void *arg);

/* --- small helpers ------------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

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

/* A list prefix is any string a key could start with. */
static bool prefix_valid(const char *p)
{
    if (!p)
        return true;
    if (strlen(p) > STORAGE_KEY_MAX || p[0] == '/')
        return false;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            return false;
    return true;
}

static bool upload_id_valid_file(const char *id)
{
    if (!id || strlen(id) != 32)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static time_t parse_iso8601(const char *s)
{
    struct tm tm = { 0 };
    int y, mo, d, h, mi, sec;

    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return timegm(&tm);
}

/* --- operations ---------------------------------------------------------------- */

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
    if (!op->ev) {
        free(op);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&st->ops, op, link);
    return op;
}

static void op_free(struct storage_op *op)
{
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
static void op_done(struct storage_op *op)
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
                  op_names[op->kind], op->key ? op->key : "", r->error);
    if (op->cb) {
        op->finishing = true;
        op->busy++;
        op->cb(r, op->arg);
    }
    op_free(op);
}

static void op_fail(struct storage_op *op, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void op_fail(struct storage_op *op, int err, const char *fmt, ...)
{
    va_list ap;

    op->res.err = err;
    free(op->r_error);
    op->r_error = NULL;
    va_start(ap, fmt);
    if (vasprintf(&op->r_error, fmt, ap) < 0)
        op->r_error = NULL;
    va_end(ap);
    op_done(op);
}

/* Runs the op's next step on a later loop turn (after pending I/O). */
static void op_again(struct storage_op *op)
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
    op_again(op);
    return op;
}

void storage_cancel(struct storage_op *op)
{
    if (!op || op->finishing || op->cancelled)
        return;
    if (op->req) {
        fetch_cancel(op->req);
        op->req = NULL;
    }
    if (op->busy) {
        /* A user function of this op is on the stack: free it after. */
        op->cancelled = true;
        evtimer_del(op->ev);
        return;
    }
    op_free(op);
}

void storage_resume(struct storage_op *op)
{
    if (!op || op->cancelled || op->finishing)
        return;
    if (op->req) {
        fetch_resume(op->req);
    } else if (op->paused) {
        op->paused = false;
        op_again(op);
    }
}

/* Calls a user stream function with the busy guard.  Returns false when
 * the op was cancelled inside it (and has now been freed). */
static bool op_user_write(struct storage_op *op, const char *p, size_t n,
                          int *rc)
{
    op->busy++;
    *rc = op->write_fn(p, n, op->rw_arg);
    op->busy--;
    if (op->cancelled) {
        op_free(op);
        return false;
    }
    return true;
}

static bool op_user_read(struct storage_op *op, char *p, size_t n,
                         ssize_t *got)
{
    op->busy++;
    *got = op->read_fn(p, n, op->rw_arg);
    op->busy--;
    if (op->cancelled) {
        op_free(op);
        return false;
    }
    return true;
}

/* ============================ file backend ================================== */

static char *fpath(const struct storage *st, const char *key)
{
    return util_asprintf("%s/%s", st->dir, key);
}

/* Creates the folders leading to key's file. */
static int mkdir_parents(const struct storage *st, const char *key)
{
    const char *slash = strrchr(key, '/');
    if (!slash)
        return 0;
    char *dir = util_asprintf("%s/%.*s", st->dir, (int)(slash - key), key);
    if (!dir)
        return -ENOMEM;
    int rc = util_mkdir_mode(dir, STORAGE_DIR_MODE) < 0 ? -errno : 0;
    free(dir);
    return rc;
}

/* Removes folders left empty by a delete, up to (not including) DIR. */
static void rmdir_empty_parents(const struct storage *st, const char *key)
{
    char *full = fpath(st, key);
    size_t base = strlen(st->dir);

    if (!full)
        return;
    for (;;) {
        char *slash = strrchr(full, '/');
        if (!slash || (size_t)(slash - full) <= base)
            break;
        *slash = '\0';
        if (rmdir(full) < 0)
            break;
    }
    free(full);
}

/* A new temp file under DIR/.studyhub/tmp (same filesystem as the objects,
 * so rename is atomic). */
static int open_tmp(struct storage_op *op)
{
    struct storage *st = op->st;

    op->tmp = util_asprintf("%s/" INTERNAL_DIR "/tmp/t-%ld-%llu", st->dir,
                        (long)getpid(), (unsigned long long)++st->seq);
    if (!op->tmp)
        return -ENOMEM;
    op->out_fd = open(op->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, STORAGE_FILE_MODE);
    if (op->out_fd < 0) {
        int e = -errno;
        free(op->tmp);
        op->tmp = NULL;
        return e;
    }
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static char *file_etag(const struct stat *sb)
{
    return util_asprintf("\"%llx-%llx\"",
                     (unsigned long long)sb->st_mtim.tv_sec * 1000000000ULL +
                         (unsigned long long)sb->st_mtim.tv_nsec,
                     (unsigned long long)sb->st_size);
}

/* Moves the temp file into place as `key`.  Returns 0 or -errno. */
static int commit_tmp(struct storage_op *op, const char *key)
{
    struct storage *st = op->st;
    struct stat sb;
    char *final = NULL;
    int rc = 0;

    if (st->fsync && fdatasync(op->out_fd) < 0) {
        rc = -errno;
        goto out;
    }
    if (fstat(op->out_fd, &sb) < 0) {
        rc = -errno;
        goto out;
    }
    if (close(op->out_fd) < 0) {
        op->out_fd = -1;
        rc = -errno;
        goto out;
    }
    op->out_fd = -1;
    rc = mkdir_parents(st, key);
    if (rc)
        goto out;
    final = fpath(st, key);
    if (!final) {
        rc = -ENOMEM;
        goto out;
    }
    if (rename(op->tmp, final) < 0) {
        rc = -errno;
        goto out;
    }
    free(op->tmp);
    op->tmp = NULL;
    op->res.size = sb.st_size;
    op->res.mtime = sb.st_mtim.tv_sec;
    free(op->r_etag);
    op->r_etag = file_etag(&sb);
out:
    free(final);
    return rc;
}

/* Opens key for reading; -ENOENT also for folders. */
static int open_object(const struct storage *st, const char *key,
                       struct stat *sb)
{
    char *p = fpath(st, key);
    if (!p)
        return -ENOMEM;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(p);
    if (fd < 0)
        return (errno == ELOOP || errno == ENOTDIR) ? -ENOENT : -errno;
    if (fstat(fd, sb) < 0 || !S_ISREG(sb->st_mode)) {
        close(fd);
        return -ENOENT;
    }
    return fd;
}

static void file_put(struct storage_op *op)
{
    int rc = open_tmp(op);
    if (!rc)
        rc = write_all(op->out_fd, op->data, op->len);
    if (!rc)
        rc = commit_tmp(op, op->key);
    if (rc) {
        op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
        return;
    }
    op_done(op);
}

/* One slice of copying in_fd (or read_fn) to the temp file; commits to
 * `dest` at the end.  Used by put_stream, put_file and copy. */
static void file_copy_slice(struct storage_op *op, const char *dest)
{
    size_t budget = FILE_TURN_BYTES;
    int rc;

    if (!op->buf && !(op->buf = malloc(FILE_CHUNK))) {
        op_fail(op, -ENOMEM, "out of memory");
        return;
    }
    while (budget > 0) {
        ssize_t got;
        if (op->read_fn) {
            if (!op_user_read(op, op->buf, FILE_CHUNK, &got))
                return;
            if (got == STORAGE_PAUSE) {
                op->paused = true;
                return;
            }
        } else {
            got = read(op->in_fd, op->buf, FILE_CHUNK);
            if (got < 0 && errno == EINTR)
                continue;
        }
        if (got < 0 || got > (ssize_t)FILE_CHUNK) {
            op_fail(op, op->read_fn ? -ECANCELED : -EIO,
                    "reading the source of %s failed", dest);
            return;
        }
        if (got == 0)
            break;
        rc = write_all(op->out_fd, op->buf, (size_t)got);
        if (rc) {
            op_fail(op, -EIO, "cannot write %s: %s", dest, strerror(-rc));
            return;
        }
        op->moved += got;
        budget -= (size_t)got < budget ? (size_t)got : budget;
        if (op->kind == OP_PUT_STREAM && op->moved > op->stream_len) {
            op_fail(op, -EINVAL, "stream for %s longer than promised", dest);
            return;
        }
    }
    if (budget == 0) {
        op_again(op);
        return;
    }
    if (op->kind == OP_PUT_STREAM && op->moved != op->stream_len) {
        op_fail(op, -EINVAL, "stream for %s ended at %lld of %lld bytes", dest,
                (long long)op->moved, (long long)op->stream_len);
        return;
    }
    rc = commit_tmp(op, dest);
    if (rc) {
        op_fail(op, -EIO, "cannot write %s: %s", dest, strerror(-rc));
        return;
    }
    op_done(op);
}

static void file_stream_put(struct storage_op *op)
{
    if (op->out_fd < 0 && !op->tmp) {
        int rc = 0;
        if (op->kind == OP_PUT_FILE) {
            op->in_fd = open(op->path, O_RDONLY | O_CLOEXEC);
            if (op->in_fd < 0) {
                op_fail(op, errno == ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                        op->path, strerror(errno));
                return;
            }
        } else if (op->kind == OP_COPY) {
            struct stat sb;
            op->in_fd = open_object(op->st, op->key, &sb);
            if (op->in_fd < 0) {
                rc = op->in_fd;
                op->in_fd = -1;
                op_fail(op, rc == -ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                        op->key, strerror(-rc));
                return;
            }
        }
        rc = open_tmp(op);
        if (rc) {
            op_fail(op, -EIO, "cannot create a temporary file: %s", strerror(-rc));
            return;
        }
    }
    file_copy_slice(op, op->kind == OP_COPY ? op->key2 : op->key);
}

static void file_get(struct storage_op *op)
{
    struct stat sb;
    int fd = open_object(op->st, op->key, &sb);

    if (fd < 0) {
        op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                fd == -ENOENT ? "no such key" : strerror(-fd));
        return;
    }
    op->in_fd = fd;
    if ((uint64_t)sb.st_size > op->max) {
        op_fail(op, -EFBIG, "%s is %lld bytes, more than %zu", op->key,
                (long long)sb.st_size, op->max);
        return;
    }
    op->r_body = malloc((size_t)sb.st_size + 1);
    if (!op->r_body) {
        op_fail(op, -ENOMEM, "out of memory");
        return;
    }
    size_t have = 0;
    while (have < (size_t)sb.st_size) {
        ssize_t got = read(fd, op->r_body + have, (size_t)sb.st_size - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    op->r_body[have] = '\0';
    op->res.body = op->r_body;
    op->res.body_len = have;
    op->res.size = (int64_t)have;
    op->res.mtime = sb.st_mtim.tv_sec;
    op->r_etag = file_etag(&sb);
    op_done(op);
}

static void file_get_stream(struct storage_op *op)
{
    size_t budget = FILE_TURN_BYTES;

    if (op->in_fd < 0) {
        struct stat sb;
        int fd = open_object(op->st, op->key, &sb);
        if (fd < 0) {
            op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                    fd == -ENOENT ? "no such key" : strerror(-fd));
            return;
        }
        op->in_fd = fd;
        op->res.size = sb.st_size;
        op->res.mtime = sb.st_mtim.tv_sec;
        op->r_etag = file_etag(&sb);
        if (!(op->buf = malloc(FILE_CHUNK))) {
            op_fail(op, -ENOMEM, "out of memory");
            return;
        }
    }
    while (budget > 0) {
        if (op->buf_off >= op->buf_len) {
            ssize_t got = read(op->in_fd, op->buf, FILE_CHUNK);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                op_fail(op, -EIO, "cannot read %s: %s", op->key, strerror(errno));
                return;
            }
            if (got == 0) {
                op_done(op);
                return;
            }
            op->buf_len = (size_t)got;
            op->buf_off = 0;
        }
        int rc;
        size_t n = op->buf_len - op->buf_off;
        if (!op_user_write(op, op->buf + op->buf_off, n, &rc))
            return;
        if (rc == STORAGE_PAUSE) {
            op->paused = true;
            return;
        }
        if (rc != 0) {
            op_fail(op, -ECANCELED, "the reader of %s stopped", op->key);
            return;
        }
        op->buf_off = op->buf_len;
        op->moved += (int64_t)n;
        budget -= n < budget ? n : budget;
    }
    op_again(op);
}

static void file_head(struct storage_op *op)
{
    struct stat sb;
    int fd = open_object(op->st, op->key, &sb);

    if (fd < 0) {
        op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                fd == -ENOENT ? "no such key" : strerror(-fd));
        return;
    }
    close(fd);
    op->res.size = sb.st_size;
    op->res.mtime = sb.st_mtim.tv_sec;
    op->r_etag = file_etag(&sb);
    op_done(op);
}

static void file_delete(struct storage_op *op)
{
    char *p = fpath(op->st, op->key);

    if (!p) {
        op_fail(op, -ENOMEM, "out of memory");
        return;
    }
    /* A folder is no object: deleting its name succeeds like any absent key. */
    if (unlink(p) < 0 && errno != ENOENT && errno != ENOTDIR && errno != EISDIR) {
        int e = errno;
        free(p);
        op_fail(op, -EIO, "cannot delete %s: %s", op->key, strerror(e));
        return;
    }
    free(p);
    rmdir_empty_parents(op->st, op->key);
    op_done(op);
}

/* --- file listing ---------------------------------------------------------- */

/* One directory entry, its name with '/' appended for folders so that
 * sorting entries sorts full keys: DFS in that order yields keys in byte
 * order without holding more than one folder's names per level. */
struct dent {
    char *name;  /* owned */
    bool dir;
};

static int dent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

/* Collects the page: keys > after, starting with prefix, up to max+1 (the
 * extra one only tells that there is a next page). */
struct list_ctx {
    const struct storage *st;
    const char *prefix;
    const char *after;           /* may be NULL */
    size_t max;
    struct storage_object *objs; /* owned by the op after */
    size_t n;
    int err;
};

static void list_add(struct list_ctx *c, const char *key, const struct stat *sb)
{
    struct storage_object *o = realloc(c->objs, (c->n + 1) * sizeof *o);
    if (!o) {
        c->err = -ENOMEM;
        return;
    }
    c->objs = o;
    o[c->n].key = strdup(key);
    o[c->n].etag = file_etag(sb);
    o[c->n].size = sb->st_size;
    o[c->n].mtime = sb->st_mtim.tv_sec;
    if (!o[c->n].key || !o[c->n].etag) {
        free((char *)o[c->n].key);
        free((char *)o[c->n].etag);
        c->err = -ENOMEM;
        return;
    }
    c->n++;
}

static void list_walk(struct list_ctx *c, const char *rel)
{
    char *dpath = *rel ? util_asprintf("%s/%s", c->st->dir, rel) : xstrdup(c->st->dir);
    struct dent *ents = NULL;
    size_t n = 0, cap = 0;
    DIR *d = NULL;
    struct dirent *de;

    if (!dpath) {
        c->err = -ENOMEM;
        return;
    }
    d = opendir(dpath);
    if (!d)
        goto out;  /* vanished or unreadable: nothing to list */
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!*rel && !strcmp(de->d_name, INTERNAL_DIR))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct dent *ne = realloc(ents, cap * sizeof *ents);
            if (!ne) {
                c->err = -ENOMEM;
                goto out;
            }
            ents = ne;
        }
        ents[n].dir = S_ISDIR(sb.st_mode);
        ents[n].name = ents[n].dir ? util_asprintf("%s/", de->d_name) : strdup(de->d_name);
        if (!ents[n].name) {
            c->err = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (n > 1)
        qsort(ents, n, sizeof *ents, dent_cmp);
    for (size_t i = 0; i < n && !c->err && c->n <= c->max; i++) {
        char *full = util_asprintf("%s%s", rel, ents[i].name);
        if (!full) {
            c->err = -ENOMEM;
            break;
        }
        if (ents[i].dir) {
            /* Skip folders that cannot hold a key with the prefix, or
             * whose keys all sort before `after`. */
            bool fits = starts_with(full, c->prefix) || starts_with(c->prefix, full);
            bool before = c->after && strcmp(full, c->after) < 0 &&
                          !starts_with(c->after, full);
            if (fits && !before)
                list_walk(c, full);
        } else if (starts_with(full, c->prefix) &&
                   (!c->after || strcmp(full, c->after) > 0) &&
                   storage_key_valid(full)) {
            struct stat sb;
            if (fstatat(dirfd(d), ents[i].name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
                list_add(c, full, &sb);
        }
        free(full);
    }
out:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    free(dpath);
}

static void file_list(struct storage_op *op)
{
    struct list_ctx c = {
        .st = op->st, .prefix = op->prefix ? op->prefix : "",
        .after = op->token, .max = (size_t)op->max_keys,
    };

    list_walk(&c, "");
    op->r_objs = c.objs;
    op->r_nobjs = c.n;
    if (c.err) {
        op_fail(op, c.err, "listing failed: %s", strerror(-c.err));
        return;
    }
    if (c.n > c.max) {
        /* The extra key only says there is more. */
        op->r_nobjs = c.max;
        free((char *)c.objs[c.max].key);
        free((char *)c.objs[c.max].etag);
        op->r_next = xstrdup(c.objs[c.max - 1].key);
    }
    op_done(op);
}

/* --- file multipart ----------------------------------------------------------
 * DIR/.studyhub/uploads/<id>/key holds the key (its mtime is the start
 * time); parts are NNNNN with their etag in NNNNN.etag. */

static char *upload_path(const struct storage *st, const char *id, const char *leaf)
{
    return leaf ? util_asprintf("%s/" INTERNAL_DIR "/uploads/%s/%s", st->dir, id, leaf)
                : util_asprintf("%s/" INTERNAL_DIR "/uploads/%s", st->dir, id);
}

/* Reads a small file (at most cap-1 bytes) into a string. */
static char *read_small(const char *path, size_t cap, struct stat *sb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *s = NULL;

    if (fd < 0)
        return NULL;
    s = malloc(cap);
    ssize_t n = s ? read(fd, s, cap - 1) : -1;
    if (n < 0 || (sb && fstat(fd, sb) < 0)) {
        free(s);
        s = NULL;
    } else {
        s[n] = '\0';
    }
    close(fd);
    return s;
}

/* 0 when the upload exists and belongs to key. */
static int upload_check(const struct storage *st, const char *id, const char *key)
{
    if (!upload_id_valid_file(id))
        return -ENOENT;
    char *p = upload_path(st, id, "key");
    char *k = p ? read_small(p, STORAGE_KEY_MAX + 2, NULL) : NULL;
    int rc = (k && !strcmp(k, key)) ? 0 : -ENOENT;
    free(p);
    free(k);
    return rc;
}

/* Writes data to path through a temp name + rename. */
static int write_file_atomic(const char *path, const void *data, size_t len,
                             bool sync)
{
    char *tmp = util_asprintf("%s.tmp", path);
    int rc = 0, fd;

    if (!tmp)
        return -ENOMEM;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, STORAGE_FILE_MODE);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = write_all(fd, data, len);
    if (!rc && sync && fdatasync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

static void file_mpu_create(struct storage_op *op)
{
    char id[33];
    char *dir = NULL, *keyp = NULL;
    int rc;

    util_random_hex(16, id);
    dir = upload_path(op->st, id, NULL);
    keyp = upload_path(op->st, id, "key");
    if (!dir || !keyp) {
        rc = -ENOMEM;
        goto out;
    }
    rc = mkdir(dir, STORAGE_DIR_MODE) < 0 ? -errno : 0;
    if (!rc)
        rc = write_file_atomic(keyp, op->key, strlen(op->key), false);
out:
    free(dir);
    free(keyp);
    if (rc) {
        op_fail(op, -EIO, "cannot start an upload: %s", strerror(-rc));
        return;
    }
    op->r_upload_id = strdup(id);
    op_done(op);
}

static void file_mpu_part(struct storage_op *op)
{
    char leaf[16], etag[35];
    char *p = NULL, *pe = NULL;
    int rc = upload_check(op->st, op->upload_id, op->key);

    if (rc) {
        op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
        return;
    }
    /* A random etag: a part written again gets a new one, so a stale list
     * given to complete is caught. */
    etag[0] = '"';
    util_random_hex(16, etag + 1);
    etag[33] = '"';
    etag[34] = '\0';
    snprintf(leaf, sizeof leaf, "%05d", op->number);
    p = upload_path(op->st, op->upload_id, leaf);
    snprintf(leaf, sizeof leaf, "%05d.etag", op->number);
    pe = upload_path(op->st, op->upload_id, leaf);
    if (!p || !pe)
        rc = -ENOMEM;
    if (!rc)
        rc = write_file_atomic(p, op->data, op->len, op->st->fsync);
    if (!rc)
        rc = write_file_atomic(pe, etag, strlen(etag), false);
    free(p);
    free(pe);
    if (rc) {
        op_fail(op, -EIO, "cannot write part %d: %s", op->number, strerror(-rc));
        return;
    }
    op->r_etag = strdup(etag);
    op->res.size = (int64_t)op->len;
    op_done(op);
}

static void rm_upload_dir(const struct storage *st, const char *id)
{
    char *dir = upload_path(st, id, NULL);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;

    if (d) {
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
        rmdir(dir);
    }
    free(dir);
}

/* Complete: check every part first, then append them one slice per loop
 * turn into a temp file, then rename it into place. */
static void file_mpu_complete(struct storage_op *op)
{
    struct storage *st = op->st;
    char leaf[16];

    if (op->out_fd < 0 && !op->tmp) {
        if (upload_check(st, op->upload_id, op->key)) {
            op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
            return;
        }
        for (size_t i = 0; i < op->nparts; i++) {
            struct stat sb;
            snprintf(leaf, sizeof leaf, "%05d.etag", op->parts[i].number);
            char *pe = upload_path(st, op->upload_id, leaf);
            char *e = pe ? read_small(pe, 64, NULL) : NULL;
            snprintf(leaf, sizeof leaf, "%05d", op->parts[i].number);
            char *pp = upload_path(st, op->upload_id, leaf);
            bool ok = e && pp && !strcmp(e, op->parts[i].etag) && stat(pp, &sb) == 0;
            free(pe);
            free(e);
            free(pp);
            if (!ok) {
                op_fail(op, -EINVAL, "part %d of upload %s is missing or its etag differs",
                        op->parts[i].number, op->upload_id);
                return;
            }
            if (i + 1 < op->nparts && sb.st_size < (off_t)STORAGE_MIN_PART_SIZE) {
                op_fail(op, -EINVAL, "part %d is smaller than %u bytes (only the last may be)",
                        op->parts[i].number, STORAGE_MIN_PART_SIZE);
                return;
            }
        }
        int rc = open_tmp(op);
        if (rc) {
            op_fail(op, -EIO, "cannot create a temporary file: %s", strerror(-rc));
            return;
        }
        if (!(op->buf = malloc(FILE_CHUNK))) {
            op_fail(op, -ENOMEM, "out of memory");
            return;
        }
    }

    size_t budget = FILE_TURN_BYTES;
    while (budget > 0 && op->part_idx < op->nparts) {
        if (op->in_fd < 0) {
            snprintf(leaf, sizeof leaf, "%05d", op->parts[op->part_idx].number);
            char *pp = upload_path(st, op->upload_id, leaf);
            op->in_fd = pp ? open(pp, O_RDONLY | O_CLOEXEC) : -1;
            free(pp);
            if (op->in_fd < 0) {
                op_fail(op, -EIO, "cannot open part %d", op->parts[op->part_idx].number);
                return;
            }
        }
        ssize_t got = read(op->in_fd, op->buf, FILE_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            op_fail(op, -EIO, "cannot read part %d: %s",
                    op->parts[op->part_idx].number, strerror(errno));
            return;
        }
        if (got == 0) {
            close(op->in_fd);
            op->in_fd = -1;
            op->part_idx++;
            continue;
        }
        int rc = write_all(op->out_fd, op->buf, (size_t)got);
        if (rc) {
            op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
            return;
        }
        budget -= (size_t)got < budget ? (size_t)got : budget;
    }
    if (op->part_idx < op->nparts) {
        op_again(op);
        return;
    }
    int rc = commit_tmp(op, op->key);
    if (rc) {
        op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
        return;
    }
    rm_upload_dir(st, op->upload_id);
    op_done(op);
}

static void file_mpu_abort(struct storage_op *op)
{
    if (upload_check(op->st, op->upload_id, op->key)) {
        op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
        return;
    }
    rm_upload_dir(op->st, op->upload_id);
    op_done(op);
}

static int upload_cmp(const void *a, const void *b)
{
    const struct storage_upload_info *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->upload_id, y->upload_id);
}

static void file_mpu_list(struct storage_op *op)
{
    char *dir = util_asprintf("%s/" INTERNAL_DIR "/uploads", op->st->dir);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    struct storage_upload_info *u = NULL;
    size_t n = 0;
    const char *prefix = op->prefix ? op->prefix : "";
    /* token: "key\nupload_id" of the last upload of the previous page */
    char *tkey = NULL, *tid = NULL;

    if (op->token) {
        tkey = xstrdup(op->token);
        char *nl = tkey ? strchr(tkey, '\n') : NULL;
        if (nl) {
            *nl = '\0';
            tid = nl + 1;
        }
    }
    while (d && (de = readdir(d))) {
        if (!upload_id_valid_file(de->d_name))
            continue;
        struct stat sb;
        char *kp = upload_path(op->st, de->d_name, "key");
        char *k = kp ? read_small(kp, STORAGE_KEY_MAX + 2, &sb) : NULL;
        free(kp);
        if (!k || !starts_with(k, prefix)) {
            free(k);
            continue;
        }
        if (tkey) {
            int c = strcmp(k, tkey);
            if (c < 0 || (c == 0 && (!tid || strcmp(de->d_name, tid) <= 0))) {
                free(k);
                continue;
            }
        }
        struct storage_upload_info *nu = realloc(u, (n + 1) * sizeof *u);
        if (nu)
            u = nu;
        char *id = nu ? strdup(de->d_name) : NULL;
        if (!id) {
            free(k);
            break;
        }
        u[n].key = k;
        u[n].upload_id = id;
        u[n].initiated = sb.st_mtim.tv_sec;
        n++;
    }
    if (d)
        closedir(d);
    free(dir);
    free(tkey);
    if (n > 1)
        qsort(u, n, sizeof *u, upload_cmp);
    if (n > LIST_MAX) {
        for (size_t i = LIST_MAX; i < n; i++) {
            free((char *)u[i].key);
            free((char *)u[i].upload_id);
        }
        n = LIST_MAX;
        op->r_next = util_asprintf("%s\n%s", u[n - 1].key, u[n - 1].upload_id);
    }
    op->r_ups = u;
    op->r_nups = n;
    op_done(op);
}

static void file_step(struct storage_op *op)
{
    switch (op->kind) {
    case OP_PUT: file_put(op); break;
    case OP_PUT_STREAM:
    case OP_PUT_FILE:
    case OP_COPY: file_stream_put(op); break;
    case OP_GET: file_get(op); break;
    case OP_GET_STREAM: file_get_stream(op); break;
    case OP_HEAD: file_head(op); break;
    case OP_LIST: file_list(op); break;
    case OP_DELETE: file_delete(op); break;
    case OP_MPU_CREATE: file_mpu_create(op); break;
    case OP_MPU_PART: file_mpu_part(op); break;
    case OP_MPU_COMPLETE: file_mpu_complete(op); break;
    case OP_MPU_ABORT: file_mpu_abort(op); break;
    case OP_MPU_LIST: file_mpu_list(op); break;
    }
}

/* ============================ XML (S3 replies) ================================
 * S3's replies are flat, machine-written documents: no CDATA, comments or
 * nesting of an element inside one of the same name.  Enough to find
 * elements by name and decode their text. */

/* Finds the next <name ...>inner</name> (or <name/>) in [*pos, end);
 * sets the inner span and moves *pos past the element. */
static bool xml_next(const char **pos, const char *end, const char *name,
                     const char **in, size_t *inlen)
{
    size_t nl = strlen(name);
    const char *p = *pos;

    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt || (size_t)(end - lt) < nl + 2)
            return false;
        const char *after = lt + 1 + nl;
        if (memcmp(lt + 1, name, nl) == 0 &&
            (*after == '>' || *after == ' ' || *after == '/' || *after == '\t' ||
             *after == '\r' || *after == '\n')) {
            const char *gt = memchr(after, '>', (size_t)(end - after));
            if (!gt)
                return false;
            if (gt[-1] == '/') {  /* <name/> */
                *in = gt + 1;
                *inlen = 0;
                *pos = gt + 1;
                return true;
            }
            const char *s = gt + 1;
            for (const char *q = s; q < end; ) {
                const char *c = memchr(q, '<', (size_t)(end - q));
                if (!c || (size_t)(end - c) < nl + 3)
                    return false;
                if (c[1] == '/' && memcmp(c + 2, name, nl) == 0 && c[2 + nl] == '>') {
                    *in = s;
                    *inlen = (size_t)(c - s);
                    *pos = c + 3 + nl;
                    return true;
                }
                q = c + 1;
            }
            return false;
        }
        p = lt + 1;
    }
    return false;
}

static void put_utf8(char **o, unsigned long cp)
{
    char *d = *o;
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xC0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xE0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (char)(0xF0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *d++ = (char)(0x80 | (cp & 0x3F));
    }
    *o = d;
}

/* Text with the five entities and numeric references decoded.  A
 * reference to NUL or out of range is refused (NULL), as is NUL itself. */
static char *xml_text(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; ) {
        if (s[i] == '\0')
            goto bad;
        if (s[i] != '&') {
            *o++ = s[i++];
            continue;
        }
        const char *semi = memchr(s + i, ';', n - i);
        if (!semi)
            goto bad;
        size_t el = (size_t)(semi - (s + i)) + 1;
        const char *e = s + i;
        if (el == 5 && !memcmp(e, "&amp;", 5)) *o++ = '&';
        else if (el == 4 && !memcmp(e, "&lt;", 4)) *o++ = '<';
        else if (el == 4 && !memcmp(e, "&gt;", 4)) *o++ = '>';
        else if (el == 6 && !memcmp(e, "&quot;", 6)) *o++ = '"';
        else if (el == 6 && !memcmp(e, "&apos;", 6)) *o++ = '\'';
        else if (el > 3 && e[1] == '#') {
            char num[16];
            if (el - 3 >= sizeof num)
                goto bad;
            memcpy(num, e + 2, el - 3);
            num[el - 3] = '\0';
            char *end;
            unsigned long cp = (num[0] == 'x' || num[0] == 'X')
                                   ? strtoul(num + 1, &end, 16)
                                   : strtoul(num, &end, 10);
            if (*end || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                goto bad;
            put_utf8(&o, cp);  /* at most 4 bytes, never more than el */
        } else {
            goto bad;
        }
        i += el;
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Text of the first <name> in [p, p+n), or NULL. */
static char *xml_get(const char *p, size_t n, const char *name)
{
    const char *pos = p, *in;
    size_t inlen;
    if (!xml_next(&pos, p + n, name, &in, &inlen))
        return NULL;
    return xml_text(in, inlen);
}

/* A growing XML document; `oom` sticks. */
struct xbuf {
    char *data;  /* owned */
    size_t len;
    size_t cap;
    bool oom;
};

static void xbuf_add(struct xbuf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *d = realloc(b->data, nc);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void xbuf_raw(struct xbuf *b, const char *s)
{
    xbuf_add(b, s, strlen(s));
}

/* Text content, escaped (an ETag's quotes included). */
static void xbuf_text(struct xbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': xbuf_raw(b, "&amp;"); break;
        case '<': xbuf_raw(b, "&lt;"); break;
        case '>': xbuf_raw(b, "&gt;"); break;
        case '"': xbuf_raw(b, "&quot;"); break;
        default: xbuf_add(b, s, 1);
        }
    }
}

/* ============================ S3 backend ==================================== */

/* One S3 request to build, sign and send. */
struct s3_call {
    const char *method;
    const char *key;                 /* NULL: the bucket itself */
    const struct sigv4_pair *query;
    size_t nquery;
    const struct sigv4_pair *hdrs;   /* extra headers, signed and sent */
    size_t nhdrs;
    const void *body;                /* memory body (borrowed) */
    size_t body_len;
    bool stream_body;                /* op's read path (put_stream/put_file) */
    int64_t stream_len;
    bool stream_response;            /* op's write_fn */
    size_t max_body;
    int max_attempts;                /* 0: fetch's default */
    bool long_transfer;              /* no total timeout; low-speed only */
};

static void s3_on_done(struct fetch_req *req, const struct fetch_result *res,
                       void *arg);

static ssize_t s3_read(char *buf, size_t len, void *arg)
{
    struct storage_op *op = arg;

    if (op->kind == OP_PUT_FILE) {
        for (;;) {
            ssize_t n = read(op->in_fd, buf, len);
            if (n < 0 && errno == EINTR)
                continue;
            return n < 0 ? FETCH_ABORT : n;
        }
    }
    ssize_t got;
    if (!op_user_read(op, buf, len, &got))
        return FETCH_ABORT;
    if (got == STORAGE_PAUSE)
        return FETCH_PAUSE;
    if (got < 0) {
        op->stopped = true;
        return FETCH_ABORT;
    }
    op->moved += got;
    return got;
}

static int s3_rewind(void *arg)
{
    struct storage_op *op = arg;
    return (op->kind == OP_PUT_FILE && lseek(op->in_fd, 0, SEEK_SET) == 0) ? 0 : -1;
}

static int s3_write(const char *data, size_t len, void *arg)
{
    struct storage_op *op = arg;
    int rc;

    if (!op_user_write(op, data, len, &rc))
        return FETCH_ABORT;
    if (rc == STORAGE_PAUSE)
        return FETCH_PAUSE;
    if (rc != 0) {
        op->stopped = true;
        return FETCH_ABORT;
    }
    op->moved += (int64_t)len;
    return 0;
}

/* Signs and submits; on failure answers the op (and returns -1). */
static int s3_send(struct storage_op *op, const struct s3_call *c)
{
    struct storage *st = op->st;
    time_t now = time(NULL);
    char date[17], hash[65];
    const char *payload;
    char *path = NULL, *epath = NULL, *query = NULL, *url = NULL, *auth = NULL;
    struct sigv4_pair *sh = NULL;
    char **lines = NULL;
    size_t nsh = 3 + c->nhdrs, nl = 0;
    int rc = -1;

    if (!st->fc) {
        op_fail(op, -EIO, "no HTTP client");
        return -1;
    }
    sigv4_amz_date(now, date);
    if (c->stream_body || c->body_len > HASH_BODY_MAX) {
        payload = SIGV4_UNSIGNED_PAYLOAD;
    } else {
        util_sha256_hex(c->body ? c->body : "", c->body_len, hash);
        payload = hash;
    }
    if (c->key)
        path = util_asprintf("%s/%s", st->path_prefix, c->key);
    else
        path = xstrdup(*st->path_prefix ? st->path_prefix : "/");
    sh = calloc(nsh, sizeof *sh);
    lines = calloc(nsh + 3, sizeof *lines);
    if (!path || !sh || !lines)
        goto oom;
    sh[0] = (struct sigv4_pair){ "host", st->host };
    sh[1] = (struct sigv4_pair){ "x-amz-date", date };
    sh[2] = (struct sigv4_pair){ "x-amz-content-sha256", payload };
    for (size_t i = 0; i < c->nhdrs; i++)
        sh[3 + i] = c->hdrs[i];
    struct sigv4_creds cr = { st->access_key, st->secret_key, st->region, "s3" };
    struct sigv4_request sr = {
        .method = c->method, .path = path, .query = c->query,
        .nquery = c->nquery, .headers = sh, .nheaders = nsh,
        .payload_hash = payload,
    };
    auth = sigv4_authorization(&cr, &sr, now, NULL);
    epath = sigv4_uri_encode(path, strlen(path), true);
    query = c->nquery ? sigv4_canonical_query(c->query, c->nquery) : xstrdup("");
    if (!auth || !epath || !query)
        goto oom;
    url = util_asprintf("%s%s%s%s", st->origin, epath, *query ? "?" : "", query);
    if (!url)
        goto oom;
    for (size_t i = 0; i < nsh; i++)
        if (!(lines[nl++] = util_asprintf("%s: %s", sh[i].name, sh[i].value ? sh[i].value : "")))
            goto oom;
    if (!(lines[nl++] = util_asprintf("Authorization: %s", auth)))
        goto oom;

    struct fetch_opts fo = {
        .method = c->method, .url = url, .headers = (const char *const *)lines,
        .body = c->body, .body_len = c->body_len,
        .max_body = c->max_body ? c->max_body : XML_MAX,
        .max_attempts = c->max_attempts,
        .timeout_ms = c->long_transfer ? -1 : 0,
        .done = s3_on_done, .arg = op,
    };
    if (c->stream_body) {
        fo.body = NULL;
        fo.read_fn = s3_read;
        fo.rewind_fn = s3_rewind;
        fo.read_arg = op;
        fo.upload_len = c->stream_len;
    }
    if (c->stream_response) {
        fo.write_fn = s3_write;
        fo.write_arg = op;
    }
    op->req = fetch_submit(st->fc, &fo);
    if (!op->req)
        goto oom;
    rc = 0;
    goto out;
oom:
    op_fail(op, -ENOMEM, "out of memory");
out:
    for (size_t i = 0; i < nl; i++)
        free(lines[i]);
    free(lines);
    free(sh);
    free(path);
    free(epath);
    free(query);
    free(url);
    free(auth);
    return rc;
}

/* Maps a failed reply to err and message; returns true when it failed. */
static bool s3_failed(struct storage_op *op, const struct fetch_result *res)
{
    int status = res->status;
    int err;

    op->res.http_status = status;
    if (res->body_too_large) {
        op_fail(op, -EFBIG, "%s is larger than %zu bytes", op->key ? op->key : "reply",
                op->max);
        return true;
    }
    if (res->error) {
        op_fail(op, op->stopped ? -ECANCELED : -EIO, "%s %s: %s", op_names[op->kind],
                op->key ? op->key : op->st->bucket,
                op->stopped ? "stopped by the caller's stream function" : res->error);
        return true;
    }
    /* A 200 can carry an error (copy, complete): S3 sends the status before
     * it knows the outcome. */
    bool error_body = status == 200 && (op->kind == OP_COPY || op->kind == OP_MPU_COMPLETE) &&
                      strstr(res->body, "<Error>");
    if (status >= 200 && status < 300 && !error_body)
        return false;
    if (status == 404 && op->kind == OP_DELETE)
        return false;  /* already gone is fine */
    switch (status) {
    case 404: err = -ENOENT; break;
    case 401:
    case 403: err = -EACCES; break;
    case 400:
    case 409:
    case 411:
    case 412:
    case 416: err = -EINVAL; break;
    default: err = -EIO;
    }
    char *code = xml_get(res->body, res->body_len, "Code");
    char *msg = xml_get(res->body, res->body_len, "Message");
    if (code && (!strcmp(code, "NoSuchKey") || !strcmp(code, "NoSuchUpload")))
        err = -ENOENT;
    op_fail(op, err, "%s %s: HTTP %d%s%s%s%s", op_names[op->kind],
            op->key ? op->key : op->st->bucket, status, code ? " " : "",
            code ? code : (status == 404 ? " not found" : ""), msg ? ": " : "",
            msg ? msg : "");
    free(code);
    free(msg);
    return true;
}

static void s3_headers_to_result(struct storage_op *op, const struct fetch_result *res)
{
    char v[512];

    if (fetch_header(res, "ETag", v, sizeof v))
        op->r_etag = strdup(v);
    if (fetch_header(res, "Content-Type", v, sizeof v))
        op->r_ctype = strdup(v);
    if (fetch_header(res, "Content-Length", v, sizeof v))
        op->res.size = strtoll(v, NULL, 10);
    if (fetch_header(res, "Last-Modified", v, sizeof v)) {
        time_t t = curl_getdate(v, NULL);
        op->res.mtime = t > 0 ? t : 0;
    }
}

static int s3_parse_list(struct storage_op *op, const struct fetch_result *res)
{
    const char *pos = res->body, *end = res->body + res->body_len, *in;
    size_t inlen;

    while (xml_next(&pos, end, "Contents", &in, &inlen)) {
        struct storage_object *o = realloc(op->r_objs, (op->r_nobjs + 1) * sizeof *o);
        if (!o)
            return -ENOMEM;
        op->r_objs = o;
        o += op->r_nobjs;
        memset(o, 0, sizeof *o);
        o->key = xml_get(in, inlen, "Key");
        o->etag = xml_get(in, inlen, "ETag");
        char *size = xml_get(in, inlen, "Size");
        char *lm = xml_get(in, inlen, "LastModified");
        o->size = size ? strtoll(size, NULL, 10) : 0;
        o->mtime = parse_iso8601(lm);
        free(size);
        free(lm);
        op->r_nobjs++;
        if (!o->key)
            return -EIO;
        if (!o->etag && !(o->etag = strdup("")))
            return -ENOMEM;
    }
    char *trunc = xml_get(res->body, res->body_len, "IsTruncated");
    if (trunc && !strcmp(trunc, "true")) {
        op->r_next = xml_get(res->body, res->body_len, "NextContinuationToken");
        if (!op->r_next) {
            free(trunc);
            return -EIO;
        }
    }
    free(trunc);
    return 0;
}

static int s3_parse_uploads(struct storage_op *op, const struct fetch_result *res)
{
    const char *pos = res->body, *end = res->body + res->body_len, *in;
    size_t inlen;

    while (xml_next(&pos, end, "Upload", &in, &inlen)) {
        struct storage_upload_info *u = realloc(op->r_ups, (op->r_nups + 1) * sizeof *u);
        if (!u)
            return -ENOMEM;
        op->r_ups = u;
        u += op->r_nups;
        u->key = xml_get(in, inlen, "Key");
        u->upload_id = xml_get(in, inlen, "UploadId");
        char *t = xml_get(in, inlen, "Initiated");
        u->initiated = parse_iso8601(t);
        free(t);
        op->r_nups++;
        if (!u->key || !u->upload_id)
            return -EIO;
    }
    char *trunc = xml_get(res->body, res->body_len, "IsTruncated");
    if (trunc && !strcmp(trunc, "true")) {
        char *k = xml_get(res->body, res->body_len, "NextKeyMarker");
        char *id = xml_get(res->body, res->body_len, "NextUploadIdMarker");
        if (k)
            op->r_next = util_asprintf("%s\n%s", k, id ? id : "");
        free(k);
        free(id);
    }
    free(trunc);
    return 0;
}

static void s3_on_done(struct fetch_req *req, const struct fetch_result *res,
                       void *arg)
{
    struct storage_op *op = arg;
    int rc = 0;

    op->req = NULL;
    if (s3_failed(op, res))
        return;
    switch (op->kind) {
    case OP_PUT:
    case OP_PUT_STREAM:
    case OP_PUT_FILE:
    case OP_MPU_PART:
        s3_headers_to_result(op, res);
        op->res.size = op->kind == OP_PUT_STREAM ? op->moved
                     : op->kind == OP_PUT_FILE ? op->stream_len : (int64_t)op->len;
        if (op->kind == OP_MPU_PART && !op->r_etag)
            rc = -EIO;
        break;
    case OP_GET:
        s3_headers_to_result(op, res);
        op->r_body = malloc(res->body_len + 1);
        if (!op->r_body) {
            rc = -ENOMEM;
            break;
        }
        memcpy(op->r_body, res->body, res->body_len + 1);
        op->res.body = op->r_body;
        op->res.body_len = res->body_len;
        op->res.size = (int64_t)res->body_len;
        break;
    case OP_GET_STREAM:
        s3_headers_to_result(op, res);
        op->res.size = op->moved;
        break;
    case OP_HEAD:
        s3_headers_to_result(op, res);
        break;
    case OP_COPY:
    case OP_MPU_COMPLETE:
        op->r_etag = xml_get(res->body, res->body_len, "ETag");
        break;
    case OP_DELETE:
    case OP_MPU_ABORT:
        break;
    case OP_LIST:
        rc = s3_parse_list(op, res);
        break;
    case OP_MPU_CREATE:
        op->r_upload_id = xml_get(res->body, res->body_len, "UploadId");
        if (!op->r_upload_id)
            rc = -EIO;
        break;
    case OP_MPU_LIST:
        rc = s3_parse_uploads(op, res);
        break;
    }
    if (rc) {
        op_fail(op, rc, "%s %s: %s", op_names[op->kind], op->key ? op->key : "",
                rc == -ENOMEM ? "out of memory" : "unexpected reply");
        return;
    }
    op_done(op);
}

static void s3_step(struct storage_op *op)
{
    struct storage *st = op->st;
    struct s3_call c = { .key = op->key };
    struct sigv4_pair q[5], h[2];
    char num[16], maxk[16];
    char *copy_src = NULL;
    size_t nh = 0;

    if (op->content_type)
        h[nh++] = (struct sigv4_pair){ "content-type", op->content_type };
    switch (op->kind) {
    case OP_PUT:
        c.method = "PUT";
        c.body = op->data;
        c.body_len = op->len;
        c.long_transfer = op->len > HASH_BODY_MAX;
        break;
    case OP_PUT_STREAM:
        c.method = "PUT";
        c.stream_body = true;
        c.stream_len = op->stream_len;
        c.max_attempts = 1;  /* a stream cannot be replayed */
        c.long_transfer = true;
        break;
    case OP_PUT_FILE: {
        struct stat sb;
        op->in_fd = open(op->path, O_RDONLY | O_CLOEXEC);
        if (op->in_fd < 0 || fstat(op->in_fd, &sb) < 0) {
            op_fail(op, errno == ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                    op->path, strerror(errno));
            return;
        }
        op->stream_len = sb.st_size;
        c.method = "PUT";
        c.stream_body = true;
        c.stream_len = sb.st_size;
        c.long_transfer = true;
        break;
    }
    case OP_GET:
        c.method = "GET";
        c.max_body = op->max;
        break;
    case OP_GET_STREAM:
        c.method = "GET";
        c.stream_response = true;
        c.long_transfer = true;
        break;
    case OP_HEAD:
        c.method = "HEAD";
        break;
    case OP_DELETE:
        c.method = "DELETE";
        break;
    case OP_COPY:
        /* PUT on the destination; the source is /bucket/key, encoded. */
        copy_src = sigv4_uri_encode(op->key, strlen(op->key), true);
        char *src = copy_src ? util_asprintf("/%s/%s", st->bucket, copy_src) : NULL;
        free(copy_src);
        copy_src = src;
        if (!copy_src) {
            op_fail(op, -ENOMEM, "out of memory");
            return;
        }
        h[nh++] = (struct sigv4_pair){ "x-amz-copy-source", copy_src };
        c.method = "PUT";
        c.key = op->key2;
        break;
    case OP_LIST: {
        size_t n = 0;
        snprintf(maxk, sizeof maxk, "%d", op->max_keys);
        q[n++] = (struct sigv4_pair){ "list-type", "2" };
        q[n++] = (struct sigv4_pair){ "max-keys", maxk };
        if (op->prefix && *op->prefix)
            q[n++] = (struct sigv4_pair){ "prefix", op->prefix };
        if (op->token)
            q[n++] = (struct sigv4_pair){ "continuation-token", op->token };
        c.method = "GET";
        c.key = NULL;
        c.query = q;
        c.nquery = n;
        break;
    }
    case OP_MPU_CREATE:
        q[0] = (struct sigv4_pair){ "uploads", "" };
        c.method = "POST";
        c.query = q;
        c.nquery = 1;
        /* A repeated create leaves an orphan upload at worst, which the
         * nightly abort job removes. */
        c.max_attempts = 3;
        break;
    case OP_MPU_PART:
        snprintf(num, sizeof num, "%d", op->number);
        q[0] = (struct sigv4_pair){ "partNumber", num };
        q[1] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "PUT";
        c.query = q;
        c.nquery = 2;
        c.body = op->data;
        c.body_len = op->len;
        c.long_transfer = true;
        break;
    case OP_MPU_COMPLETE:
        q[0] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "POST";
        c.query = q;
        c.nquery = 1;
        c.body = op->xml;
        c.body_len = op->xml_len;
        c.max_attempts = 3;
        nh = 0;
        h[nh++] = (struct sigv4_pair){ "content-type", "application/xml" };
        break;
    case OP_MPU_ABORT:
        q[0] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "DELETE";
        c.query = q;
        c.nquery = 1;
        break;
    case OP_MPU_LIST: {
        size_t n = 0;
        char *tkey = NULL, *tid = NULL;
        q[n++] = (struct sigv4_pair){ "uploads", "" };
        if (op->prefix && *op->prefix)
            q[n++] = (struct sigv4_pair){ "prefix", op->prefix };
        if (op->token) {
            tkey = op->token;
            char *nl = strchr(tkey, '\n');
            if (nl) {
                *nl = '\0';
                tid = nl + 1;
            }
            q[n++] = (struct sigv4_pair){ "key-marker", tkey };
            if (tid && *tid)
                q[n++] = (struct sigv4_pair){ "upload-id-marker", tid };
        }
        c.method = "GET";
        c.key = NULL;
        c.query = q;
        c.nquery = n;
        break;
    }
    }
    if (op->kind != OP_COPY && op->kind != OP_PUT && op->kind != OP_PUT_STREAM &&
        op->kind != OP_PUT_FILE && op->kind != OP_MPU_CREATE && op->kind != OP_MPU_COMPLETE)
        nh = 0;  /* content-type only where an object is written */
    c.hdrs = h;
    c.nhdrs = nh;
    s3_send(op, &c);
    free(copy_src);
}

/* ============================ dispatch ====================================== */

static void on_op_ev(evutil_socket_t fd, short what, void *arg)
{
    struct storage_op *op = arg;

    if (op->res.err) {
        op_done(op);
        return;
    }
    if (op->st->kind == ST_FILE)
        file_step(op);
    else
        s3_step(op);
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
    struct xbuf x = { 0 };

    if (early)
        return early;
    if (!upload_id || !*upload_id || !parts || nparts == 0 || nparts > 10000)
        return op_submit(op, -EINVAL, "bad upload id or part list");
    op->upload_id = strdup(upload_id);
    op->parts = calloc(nparts, sizeof *op->parts);
    if (!op->upload_id || !op->parts)
        return op_submit(op, -ENOMEM, "out of memory");
    xbuf_raw(&x, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < nparts; i++) {
        char num[16];
        if (parts[i].number < 1 || parts[i].number > 10000 || !parts[i].etag ||
            (i && parts[i].number <= parts[i - 1].number)) {
            free(x.data);
            return op_submit(op, -EINVAL, "part numbers must ascend within 1..10000");
        }
        op->parts[i].number = parts[i].number;
        op->parts[i].etag = strdup(parts[i].etag);
        op->nparts = i + 1;
        snprintf(num, sizeof num, "%d", parts[i].number);
        xbuf_raw(&x, "<Part><PartNumber>");
        xbuf_raw(&x, num);
        xbuf_raw(&x, "</PartNumber><ETag>");
        xbuf_text(&x, parts[i].etag);
        xbuf_raw(&x, "</ETag></Part>");
        if (!op->parts[i].etag)
            x.oom = true;
    }
    xbuf_raw(&x, "</CompleteMultipartUpload>");
    if (x.oom) {
        free(x.data);
        return op_submit(op, -ENOMEM, "out of memory");
    }
    op->xml = x.data;
    op->xml_len = x.len;
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

int storage_file_open(const struct storage *st, const char *key, int64_t *size)
{
    struct stat sb;

    if (st->kind != ST_FILE || !storage_key_valid(key))
        return -EINVAL;
    int fd = open_object(st, key, &sb);
    if (fd >= 0 && size)
        *size = sb.st_size;
    return fd;
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

/* Splits "http://host:port" into scheme and host:port; refuses a path. */
static int parse_endpoint(const char *ep, char **scheme, char **hostport)
{
    const char *sep = strstr(ep, "://");
    if (!sep || sep == ep)
        return -1;
    size_t sl = (size_t)(sep - ep);
    const char *h = sep + 3;
    size_t hl = strlen(h);
    while (hl > 0 && h[hl - 1] == '/')
        hl--;
    if (hl == 0 || memchr(h, '/', hl) || memchr(h, '?', hl) || memchr(h, '@', hl))
        return -1;
    *scheme = strndup(ep, sl);
    *hostport = strndup(h, hl);
    if (!*scheme || !*hostport)
        return -1;
    if (strcmp(*scheme, "http") && strcmp(*scheme, "https"))
        return -1;
    return 0;
}

static bool bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '.' || *p == '_'))
            return false;
    return true;
}

static int setup_file(struct storage *st, const char *path, const char **err)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0) {
        *err = "file:// needs a folder";
        return -1;
    }
    st->dir = strndup(path, n);
    char *tmp = st->dir ? util_asprintf("%s/" INTERNAL_DIR "/tmp", st->dir) : NULL;
    char *up = st->dir ? util_asprintf("%s/" INTERNAL_DIR "/uploads", st->dir) : NULL;
    int rc = (tmp && up) ? 0 : -ENOMEM;
    if (!rc)
        rc = util_mkdir_mode(tmp, STORAGE_DIR_MODE) < 0 ? -errno : 0;
    if (!rc)
        rc = util_mkdir_mode(up, STORAGE_DIR_MODE) < 0 ? -errno : 0;
    /* Only this server reads the objects (through signed links): a folder
     * made by an older version, or by hand, is closed too. */
    if (!rc && chmod(st->dir, STORAGE_DIR_MODE) < 0)
        log_warn("storage: cannot make %s private (mode 0700): %s", st->dir, strerror(errno));
    free(tmp);
    free(up);
    if (rc) {
        *err = "cannot create the storage folder";
        return -1;
    }
    st->kind = ST_FILE;
    st->name = "file";
    return 0;
}

static int setup_s3(struct storage *st, const char *bucket, bool gs,
                    const struct storage_config *cfg, const char **err)
{
    char *scheme = NULL, *hostport = NULL, *def = NULL;
    int rc = -1;
    const char *region = cfg->region && *cfg->region ? cfg->region : gs ? "auto" : "us-east-1";
    const char *ep = cfg->endpoint && *cfg->endpoint ? cfg->endpoint : NULL;
    bool path_style = gs || cfg->path_style;

    if (!bucket_valid(bucket)) {
        *err = "bad bucket name";
        goto out;
    }
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key) {
        *err = "s3/gs storage needs an access key and a secret";
        goto out;
    }
    if (!ep) {
        def = gs ? strdup("https://storage.googleapis.com")
                 : util_asprintf("https://s3.%s.amazonaws.com", region);
        ep = def;
    }
    if (!ep || parse_endpoint(ep, &scheme, &hostport) < 0) {
        *err = "bad storage endpoint (want http[s]://host[:port])";
        goto out;
    }
    /* A dotted bucket cannot be a TLS virtual host: use path-style. */
    if (!path_style && strchr(bucket, '.') && !strcmp(scheme, "https"))
        path_style = true;
    st->bucket = strdup(bucket);
    st->region = strdup(region);
    st->access_key = strdup(cfg->access_key);
    st->secret_key = strdup(cfg->secret_key);
    if (path_style) {
        st->host = strdup(hostport);
        st->origin = util_asprintf("%s://%s", scheme, hostport);
        st->path_prefix = util_asprintf("/%s", bucket);
    } else {
        st->host = util_asprintf("%s.%s", bucket, hostport);
        st->origin = util_asprintf("%s://%s.%s", scheme, bucket, hostport);
        st->path_prefix = strdup("");
    }
    if (!st->bucket || !st->region || !st->access_key || !st->secret_key ||
        !st->host || !st->origin || !st->path_prefix) {
        *err = "out of memory";
        goto out;
    }
    st->kind = ST_S3;
    st->name = gs ? "gs" : "s3";
    rc = 0;
out:
    free(scheme);
    free(hostport);
    free(def);
    return rc;
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
        rc = setup_file(st, url + 7, err);
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
            rc = setup_s3(st, url + 5, gs, cfg, err);
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

long storage_sweep_tmp(struct storage *st, time_t before, bool dead_writers_only)
{
    char *dir = st && st->kind == ST_FILE ? util_asprintf("%s/" INTERNAL_DIR "/tmp", st->dir)
                                         : NULL;
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    long removed = 0;

    while (d && (e = readdir(d))) {
        struct stat sb;
        long pid;

        if (sscanf(e->d_name, "t-%ld-", &pid) != 1 ||
            fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(sb.st_mode) || sb.st_mtime >= before)
            continue;
        if (dead_writers_only && (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 ||
                                  errno != ESRCH))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
            removed++;
            log_info("storage: removed %s/%s, left by an unfinished write (%lld bytes)",
                     dir, e->d_name, (long long)sb.st_size);
        }
    }
    if (d)
        closedir(d);
    free(dir);
    return removed;
}

void storage_free(struct storage *st)
{
    if (!st)
        return;
    while (!TAILQ_EMPTY(&st->ops))
        op_free(TAILQ_FIRST(&st->ops));
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

/* ============================ streamed multipart writer ========================
 * One task with a state enum and one step function.  Buffers: one filling,
 * up to two uploading; a short write sets want_ready and the ready callback
 * runs from the loop once a buffer is free again. */

enum sw_state { SW_CREATING, SW_OPEN, SW_COMPLETING, SW_ABORTING, SW_DONE };
static const char *const sw_state_names[] = {
    "creating", "open", "completing", "aborting", "done",
};

#define SW_BUFS 3
#define SW_INFLIGHT (SW_BUFS - 1)

struct storage_writer;

/* Free: number 0 and no op.  Filling: w->fill.  Sealed: number > 0 and no
 * op.  Uploading: op set. */
struct sw_buf {
    struct storage_writer *w; /* borrowed: back pointer for callbacks */
    char *data;               /* owned; part_size bytes, made on first use */
    size_t len;               /* bytes in data */
    int number;               /* part number once sealed */
    struct storage_op *op;    /* put_part in flight */
};

struct storage_writer {
    struct storage *st;             /* borrowed */
    char *key;                      /* owned */
    char *content_type;             /* owned; may be NULL */
    size_t part_size;
    enum sw_state state;            /* changed only by sw_set_state */
    char *upload_id;                /* owned, once created */
    struct sw_buf bufs[SW_BUFS];
    int fill;                       /* buffer being filled, -1 none */
    int next_number;                /* of the next sealed part */
    struct storage_part *parts;     /* owned (etags too); [number - 1] */
    size_t nparts;                  /* parts recorded (highest number) */
    struct storage_op *op;          /* create / complete / abort in flight */
    int err;                        /* first failure, 0 while fine */
    char *error;                    /* owned: its message */
    char *etag;                     /* owned: of the completed object */
    int64_t total;                  /* bytes sealed into parts */
    bool finish;                    /* no more writes: complete when drained */
    bool want_ready;                /* a write was short */
    bool cancelled;                 /* cancelled inside our callback */
    int busy;                       /* > 0 while ready/done runs */
    struct event *ready_ev;         /* owned: runs `ready` from the loop */
    storage_writer_done_fn done;    /* borrowed */
    storage_writer_ready_fn ready;  /* borrowed; may be NULL */
    void *arg;                      /* borrowed */
};

static void sw_step(struct storage_writer *w);

static void sw_set_state(struct storage_writer *w, enum sw_state s)
{
    if (w->state == s)
        return;
    log_debug("storage: writer %s: %s -> %s", w->key, sw_state_names[w->state],
              sw_state_names[s]);
    w->state = s;
}

static void sw_fail(struct storage_writer *w, int err, const char *msg)
{
    if (w->err)
        return;  /* the first failure is the one worth telling */
    w->err = err ? err : -EIO;
    w->error = xstrdup(msg ? msg : strerror(-w->err));
}

/* Frees everything; abort_remote also throws away the backend's upload. */
static void sw_free(struct storage_writer *w, bool abort_remote)
{
    for (int i = 0; i < SW_BUFS; i++) {
        storage_cancel(w->bufs[i].op);
        free(w->bufs[i].data);
    }
    storage_cancel(w->op);
    if (abort_remote && w->upload_id)
        storage_mpu_abort(w->st, w->key, w->upload_id, NULL, NULL);
    for (size_t i = 0; i < w->nparts; i++)
        free((char *)w->parts[i].etag);
    free(w->parts);
    event_free(w->ready_ev);
    free(w->key);
    free(w->content_type);
    free(w->upload_id);
    free(w->error);
    free(w->etag);
    free(w);
}

static void sw_on_ready_ev(evutil_socket_t fd, short what, void *arg)
{
    struct storage_writer *w = arg;

    if (w->state != SW_CREATING && w->state != SW_OPEN)
        return;
    if (w->ready) {
        w->busy++;
        w->ready(w->arg);
        w->busy--;
        if (w->cancelled)
            sw_free(w, true);
    }
}

static void sw_seal(struct storage_writer *w)
{
    struct sw_buf *b = &w->bufs[w->fill];

    b->number = w->next_number++;
    w->total += (int64_t)b->len;
    w->fill = -1;
}

static void sw_on_part(const struct storage_result *res, void *arg)
{
    struct sw_buf *b = arg;
    struct storage_writer *w = b->w;

    b->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
    } else if ((size_t)b->number > w->nparts) {
        /* Grow to hold [number - 1]; parts can finish out of order. */
        struct storage_part *np = realloc(w->parts, (size_t)b->number * sizeof *np);
        if (!np) {
            sw_fail(w, -ENOMEM, "out of memory");
        } else {
            memset(np + w->nparts, 0, ((size_t)b->number - w->nparts) * sizeof *np);
            w->parts = np;
            w->nparts = (size_t)b->number;
        }
    }
    if (!res->err && !w->err) {
        w->parts[b->number - 1].number = b->number;
        w->parts[b->number - 1].etag = xstrdup(res->etag);
        if (!w->parts[b->number - 1].etag)
            sw_fail(w, -EIO, "a part came back without an etag");
    }
    b->len = 0;
    b->number = 0;
    sw_step(w);
}

static void sw_on_create(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
        sw_set_state(w, SW_DONE);
    } else {
        w->upload_id = xstrdup(res->upload_id);
        if (!w->upload_id) {
            sw_fail(w, -ENOMEM, "out of memory");
            sw_set_state(w, SW_DONE);
        } else {
            sw_set_state(w, SW_OPEN);
        }
    }
    sw_step(w);
}

static void sw_on_complete(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
        sw_set_state(w, SW_OPEN);  /* the step sees err and aborts */
    } else {
        w->etag = xstrdup(res->etag);
        free(w->upload_id);
        w->upload_id = NULL;  /* nothing left to abort */
        sw_set_state(w, SW_DONE);
    }
    sw_step(w);
}

static void sw_on_abort(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err)
        log_warn("storage: aborting upload %s of %s failed: %s (the nightly "
                 "job will retry)", w->upload_id, w->key, res->error);
    free(w->upload_id);
    w->upload_id = NULL;
    sw_set_state(w, SW_DONE);
    sw_step(w);
}

/* OPEN: uploads what is sealed, completes when finished and drained. */
static void sw_open_step(struct storage_writer *w)
{
    int inflight = 0;

    for (int i = 0; i < SW_BUFS; i++)
        if (w->bufs[i].op)
            inflight++;
    /* Lowest part numbers first, so parts go out in order. */
    while (inflight < SW_INFLIGHT) {
        struct sw_buf *next = NULL;
        for (int i = 0; i < SW_BUFS; i++) {
            struct sw_buf *b = &w->bufs[i];
            if (b->number && !b->op && (!next || b->number < next->number))
                next = b;
        }
        if (!next)
            break;
        next->op = storage_mpu_put_part(w->st, w->key, w->upload_id, next->number,
                                        next->data, next->len, sw_on_part, next);
        if (!next->op) {
            sw_fail(w, -ENOMEM, "out of memory");
            return;
        }
        inflight++;
    }
    if (w->finish && inflight == 0 && w->fill < 0) {
        bool sealed = false;
        for (int i = 0; i < SW_BUFS; i++)
            sealed |= w->bufs[i].number != 0;
        if (!sealed) {
            w->op = storage_mpu_complete(w->st, w->key, w->upload_id, w->parts,
                                         w->nparts, sw_on_complete, w);
            if (!w->op) {
                sw_fail(w, -ENOMEM, "out of memory");
                return;
            }
            sw_set_state(w, SW_COMPLETING);
            return;
        }
    }
    if (w->want_ready && !w->finish) {
        for (int i = 0; i < SW_BUFS; i++) {
            if (!w->bufs[i].number && !w->bufs[i].op && i != w->fill) {
                static const struct timeval now = { 0, 0 };
                w->want_ready = false;
                evtimer_add(w->ready_ev, &now);
                break;
            }
        }
    }
}

static void sw_step(struct storage_writer *w)
{
    for (;;) {
        switch (w->state) {
        case SW_CREATING:
        case SW_COMPLETING:
        case SW_ABORTING:
            return;  /* a callback moves us on */
        case SW_OPEN:
            if (!w->err) {
                sw_open_step(w);
                if (!w->err)
                    return;
            }
            /* Failed: stop the parts, then abort the upload. */
            for (int i = 0; i < SW_BUFS; i++) {
                storage_cancel(w->bufs[i].op);
                w->bufs[i].op = NULL;
            }
            w->op = storage_mpu_abort(w->st, w->key, w->upload_id, sw_on_abort, w);
            if (w->op) {
                sw_set_state(w, SW_ABORTING);
                return;
            }
            sw_set_state(w, SW_DONE);
            continue;
        case SW_DONE: {
            struct storage_result res = {
                .err = w->err, .error = w->error, .size = w->total, .etag = w->etag,
            };
            if (w->done) {
                w->busy++;
                w->done(&res, w->arg);
            }
            /* An upload left by a failed complete is aborted here. */
            sw_free(w, w->upload_id != NULL);
            return;
        }
        }
    }
}

struct storage_writer *storage_writer_new(struct storage *st,
                                          const char *key,
                                          const char *content_type,
                                          size_t part_size,
                                          storage_writer_done_fn done,
                                          storage_writer_ready_fn ready,
                                          void *arg)
{
    struct storage_writer *w;

    if (!st || !done || !storage_key_valid(key))
        return NULL;
    w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->st = st;
    w->part_size = part_size < STORAGE_MIN_PART_SIZE ? STORAGE_MIN_PART_SIZE : part_size;
    w->fill = -1;
    w->next_number = 1;
    w->done = done;
    w->ready = ready;
    w->arg = arg;
    w->state = SW_CREATING;
    for (int i = 0; i < SW_BUFS; i++)
        w->bufs[i].w = w;
    w->key = strdup(key);
    w->content_type = xstrdup(content_type);
    w->ready_ev = evtimer_new(st->base, sw_on_ready_ev, w);
    if (!w->key || (content_type && !w->content_type) || !w->ready_ev) {
        sw_free(w, false);
        return NULL;
    }
    w->op = storage_mpu_create(st, key, content_type, sw_on_create, w);
    if (!w->op) {
        sw_free(w, false);
        return NULL;
    }
    return w;
}

ssize_t storage_writer_write(struct storage_writer *w, const void *data,
                             size_t len)
{
    const char *p = data;
    size_t taken = 0;
    bool sealed = false;

    if (w->err || w->finish || w->cancelled ||
        (w->state != SW_CREATING && w->state != SW_OPEN))
        return -1;
    while (taken < len) {
        if (w->fill < 0) {
            for (int i = 0; i < SW_BUFS && w->fill < 0; i++)
                if (!w->bufs[i].number && !w->bufs[i].op)
                    w->fill = i;
            if (w->fill < 0) {
                w->want_ready = true;
                break;
            }
            if (w->next_number > 10000) {
                sw_fail(w, -EFBIG, "more than 10000 parts: use a larger part size");
                w->fill = -1;
                sw_step(w);
                return -1;
            }
        }
        struct sw_buf *b = &w->bufs[w->fill];
        if (!b->data && !(b->data = malloc(w->part_size))) {
            w->fill = -1;
            sw_fail(w, -ENOMEM, "out of memory");
            sw_step(w);
            return -1;
        }
        size_t n = w->part_size - b->len;
        if (n > len - taken)
            n = len - taken;
        memcpy(b->data + b->len, p + taken, n);
        b->len += n;
        taken += n;
        if (b->len == w->part_size) {
            sw_seal(w);
            sealed = true;
        }
    }
    if (sealed)
        sw_step(w);
    return (ssize_t)taken;
}

void storage_writer_finish(struct storage_writer *w)
{
    if (w->finish || w->cancelled || w->state == SW_DONE)
        return;
    w->finish = true;
    /* The last part may be short; an empty object is one empty part. */
    if (w->fill < 0 && w->next_number == 1)
        w->fill = 0;
    if (w->fill >= 0) {
        if (w->bufs[w->fill].len > 0 || w->next_number == 1)
            sw_seal(w);
        else
            w->fill = -1;
    }
    sw_step(w);
}

void storage_writer_cancel(struct storage_writer *w)
{
    if (!w || w->cancelled)
        return;
    if (w->busy) {
        /* Inside ready (freed when it returns) or done (freed anyway). */
        w->cancelled = true;
        return;
    }
    sw_free(w, true);
}
