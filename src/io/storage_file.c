/* storage_file: the file:// backend of io/storage.  Objects are files under
 * the folder, written to a temp file and renamed; multipart uploads keep
 * their parts under .studyhub/uploads. */
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
int storage_file_open_object(const struct storage *st, const char *key,
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
        storage_op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
        return;
    }
    storage_op_done(op);
}

/* One slice of copying in_fd (or read_fn) to the temp file; commits to
 * `dest` at the end.  Used by put_stream, put_file and copy. */
static void file_copy_slice(struct storage_op *op, const char *dest)
{
    size_t budget = FILE_TURN_BYTES;
    int rc;

    if (!op->buf && !(op->buf = malloc(FILE_CHUNK))) {
        storage_op_fail(op, -ENOMEM, "out of memory");
        return;
    }
    while (budget > 0) {
        ssize_t got;
        if (op->read_fn) {
            if (!storage_op_user_read(op, op->buf, FILE_CHUNK, &got))
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
            storage_op_fail(op, op->read_fn ? -ECANCELED : -EIO,
                    "reading the source of %s failed", dest);
            return;
        }
        if (got == 0)
            break;
        rc = write_all(op->out_fd, op->buf, (size_t)got);
        if (rc) {
            storage_op_fail(op, -EIO, "cannot write %s: %s", dest, strerror(-rc));
            return;
        }
        op->moved += got;
        budget -= (size_t)got < budget ? (size_t)got : budget;
        if (op->kind == OP_PUT_STREAM && op->moved > op->stream_len) {
            storage_op_fail(op, -EINVAL, "stream for %s longer than promised", dest);
            return;
        }
    }
    if (budget == 0) {
        storage_op_again(op);
        return;
    }
    if (op->kind == OP_PUT_STREAM && op->moved != op->stream_len) {
        storage_op_fail(op, -EINVAL, "stream for %s ended at %lld of %lld bytes", dest,
                (long long)op->moved, (long long)op->stream_len);
        return;
    }
    rc = commit_tmp(op, dest);
    if (rc) {
        storage_op_fail(op, -EIO, "cannot write %s: %s", dest, strerror(-rc));
        return;
    }
    storage_op_done(op);
}

static void file_stream_put(struct storage_op *op)
{
    if (op->out_fd < 0 && !op->tmp) {
        int rc = 0;
        if (op->kind == OP_PUT_FILE) {
            op->in_fd = open(op->path, O_RDONLY | O_CLOEXEC);
            if (op->in_fd < 0) {
                storage_op_fail(op, errno == ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                        op->path, strerror(errno));
                return;
            }
        } else if (op->kind == OP_COPY) {
            struct stat sb;
            op->in_fd = storage_file_open_object(op->st, op->key, &sb);
            if (op->in_fd < 0) {
                rc = op->in_fd;
                op->in_fd = -1;
                storage_op_fail(op, rc == -ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                        op->key, strerror(-rc));
                return;
            }
        }
        rc = open_tmp(op);
        if (rc) {
            storage_op_fail(op, -EIO, "cannot create a temporary file: %s", strerror(-rc));
            return;
        }
    }
    file_copy_slice(op, op->kind == OP_COPY ? op->key2 : op->key);
}

static void file_get(struct storage_op *op)
{
    struct stat sb;
    int fd = storage_file_open_object(op->st, op->key, &sb);

    if (fd < 0) {
        storage_op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                fd == -ENOENT ? "no such key" : strerror(-fd));
        return;
    }
    op->in_fd = fd;
    if ((uint64_t)sb.st_size > op->max) {
        storage_op_fail(op, -EFBIG, "%s is %lld bytes, more than %zu", op->key,
                (long long)sb.st_size, op->max);
        return;
    }
    op->r_body = malloc((size_t)sb.st_size + 1);
    if (!op->r_body) {
        storage_op_fail(op, -ENOMEM, "out of memory");
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
    storage_op_done(op);
}

static void file_get_stream(struct storage_op *op)
{
    size_t budget = FILE_TURN_BYTES;

    if (op->in_fd < 0) {
        struct stat sb;
        int fd = storage_file_open_object(op->st, op->key, &sb);
        if (fd < 0) {
            storage_op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                    fd == -ENOENT ? "no such key" : strerror(-fd));
            return;
        }
        op->in_fd = fd;
        op->res.size = sb.st_size;
        op->res.mtime = sb.st_mtim.tv_sec;
        op->r_etag = file_etag(&sb);
        if (!(op->buf = malloc(FILE_CHUNK))) {
            storage_op_fail(op, -ENOMEM, "out of memory");
            return;
        }
    }
    while (budget > 0) {
        if (op->buf_off >= op->buf_len) {
            ssize_t got = read(op->in_fd, op->buf, FILE_CHUNK);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                storage_op_fail(op, -EIO, "cannot read %s: %s", op->key, strerror(errno));
                return;
            }
            if (got == 0) {
                storage_op_done(op);
                return;
            }
            op->buf_len = (size_t)got;
            op->buf_off = 0;
        }
        int rc;
        size_t n = op->buf_len - op->buf_off;
        if (!storage_op_user_write(op, op->buf + op->buf_off, n, &rc))
            return;
        if (rc == STORAGE_PAUSE) {
            op->paused = true;
            return;
        }
        if (rc != 0) {
            storage_op_fail(op, -ECANCELED, "the reader of %s stopped", op->key);
            return;
        }
        op->buf_off = op->buf_len;
        op->moved += (int64_t)n;
        budget -= n < budget ? n : budget;
    }
    storage_op_again(op);
}

static void file_head(struct storage_op *op)
{
    struct stat sb;
    int fd = storage_file_open_object(op->st, op->key, &sb);

    if (fd < 0) {
        storage_op_fail(op, fd == -ENOENT ? -ENOENT : -EIO, "%s: %s", op->key,
                fd == -ENOENT ? "no such key" : strerror(-fd));
        return;
    }
    close(fd);
    op->res.size = sb.st_size;
    op->res.mtime = sb.st_mtim.tv_sec;
    op->r_etag = file_etag(&sb);
    storage_op_done(op);
}

static void file_delete(struct storage_op *op)
{
    char *p = fpath(op->st, op->key);

    if (!p) {
        storage_op_fail(op, -ENOMEM, "out of memory");
        return;
    }
    /* A folder is no object: deleting its name succeeds like any absent key. */
    if (unlink(p) < 0 && errno != ENOENT && errno != ENOTDIR && errno != EISDIR) {
        int e = errno;
        free(p);
        storage_op_fail(op, -EIO, "cannot delete %s: %s", op->key, strerror(e));
        return;
    }
    free(p);
    rmdir_empty_parents(op->st, op->key);
    storage_op_done(op);
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
        storage_op_fail(op, c.err, "listing failed: %s", strerror(-c.err));
        return;
    }
    if (c.n > c.max) {
        /* The extra key only says there is more. */
        op->r_nobjs = c.max;
        free((char *)c.objs[c.max].key);
        free((char *)c.objs[c.max].etag);
        op->r_next = xstrdup(c.objs[c.max - 1].key);
    }
    storage_op_done(op);
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
        storage_op_fail(op, -EIO, "cannot start an upload: %s", strerror(-rc));
        return;
    }
    op->r_upload_id = strdup(id);
    storage_op_done(op);
}

static void file_mpu_part(struct storage_op *op)
{
    char leaf[16], etag[35];
    char *p = NULL, *pe = NULL;
    int rc = upload_check(op->st, op->upload_id, op->key);

    if (rc) {
        storage_op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
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
        storage_op_fail(op, -EIO, "cannot write part %d: %s", op->number, strerror(-rc));
        return;
    }
    op->r_etag = strdup(etag);
    op->res.size = (int64_t)op->len;
    storage_op_done(op);
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
            storage_op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
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
                storage_op_fail(op, -EINVAL, "part %d of upload %s is missing or its etag differs",
                        op->parts[i].number, op->upload_id);
                return;
            }
            if (i + 1 < op->nparts && sb.st_size < (off_t)STORAGE_MIN_PART_SIZE) {
                storage_op_fail(op, -EINVAL, "part %d is smaller than %u bytes (only the last may be)",
                        op->parts[i].number, STORAGE_MIN_PART_SIZE);
                return;
            }
        }
        int rc = open_tmp(op);
        if (rc) {
            storage_op_fail(op, -EIO, "cannot create a temporary file: %s", strerror(-rc));
            return;
        }
        if (!(op->buf = malloc(FILE_CHUNK))) {
            storage_op_fail(op, -ENOMEM, "out of memory");
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
                storage_op_fail(op, -EIO, "cannot open part %d", op->parts[op->part_idx].number);
                return;
            }
        }
        ssize_t got = read(op->in_fd, op->buf, FILE_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            storage_op_fail(op, -EIO, "cannot read part %d: %s",
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
            storage_op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
            return;
        }
        budget -= (size_t)got < budget ? (size_t)got : budget;
    }
    if (op->part_idx < op->nparts) {
        storage_op_again(op);
        return;
    }
    int rc = commit_tmp(op, op->key);
    if (rc) {
        storage_op_fail(op, -EIO, "cannot write %s: %s", op->key, strerror(-rc));
        return;
    }
    rm_upload_dir(st, op->upload_id);
    storage_op_done(op);
}

static void file_mpu_abort(struct storage_op *op)
{
    if (upload_check(op->st, op->upload_id, op->key)) {
        storage_op_fail(op, -ENOENT, "no such upload %s for %s", op->upload_id, op->key);
        return;
    }
    rm_upload_dir(op->st, op->upload_id);
    storage_op_done(op);
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
    storage_op_done(op);
}

void storage_file_step(struct storage_op *op)
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

int storage_file_open(const struct storage *st, const char *key, int64_t *size)
{
    struct stat sb;

    if (st->kind != ST_FILE || !storage_key_valid(key))
        return -EINVAL;
    int fd = storage_file_open_object(st, key, &sb);
    if (fd >= 0 && size)
        *size = sb.st_size;
    return fd;
}

int storage_file_setup(struct storage *st, const char *path, const char **err)
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
