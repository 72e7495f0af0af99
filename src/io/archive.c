/* archive: safe zip extraction with libarchive, in a supervised child, and
 * the rename of its result into place.  See include/studyhub/io/archive.h
 * for what is refused and why the work happens in a child.
 *
 * The extractor never uses archive_write_disk: it would follow the
 * archive's idea of types, modes and links (libarchive 3.6.2 creates
 * devices, FIFOs and outward symlinks, keeps setuid bits and lets a later
 * duplicate overwrite an earlier file, even with the SECURE flags).
 * Instead every entry is checked here and written with openat(2) relative
 * to folder descriptors opened with O_NOFOLLOW, so a path can only ever
 * resolve inside the destination. */
#include "config.h"

#include "studyhub/io/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/proc.h"

#define READ_BLOCK (64 * 1024)      /* libarchive's read size */
#define DATA_BUF (64 * 1024)        /* copy buffer of one entry */
#define RM_TIMEOUT_MS (10 * 60 * 1000)

/* ---- errors ---------------------------------------------------------------- */

static int fail(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;

    if (err && n) {
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- the set of names seen (duplicates are refused) ------------------------ */

struct name_set {
    char **slots;      /* owned strings; NULL = empty */
    size_t cap;        /* power of two */
    size_t used;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;     /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int name_set_grow(struct name_set *ns)
{
    size_t cap = ns->cap ? ns->cap * 2 : 256;
    char **slots = calloc(cap, sizeof *slots);

    if (!slots)
        return -1;
    for (size_t i = 0; i < ns->cap; i++) {
        if (!ns->slots[i])
            continue;
        size_t j = (size_t)name_hash(ns->slots[i]) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = ns->slots[i];
    }
    free(ns->slots);
    ns->slots = slots;
    ns->cap = cap;
    return 0;
}

/* 1: added; 0: already there; -1: out of memory. */
static int name_set_add(struct name_set *ns, const char *name)
{
    size_t i;

    if ((ns->used + 1) * 2 > ns->cap && name_set_grow(ns) < 0)
        return -1;
    i = (size_t)name_hash(name) & (ns->cap - 1);
    while (ns->slots[i]) {
        if (strcmp(ns->slots[i], name) == 0)
            return 0;
        i = (i + 1) & (ns->cap - 1);
    }
    if (!(ns->slots[i] = strdup(name)))
        return -1;
    ns->used++;
    return 1;
}

static void name_set_free(struct name_set *ns)
{
    for (size_t i = 0; i < ns->cap; i++)
        free(ns->slots[i]);
    free(ns->slots);
}

/* ---- names ------------------------------------------------------------------ */

/* Checks an entry name and writes its canonical form ("a/b/c": no leading
 * "./", no empty or "." components, no trailing '/') into out.  Returns 0,
 * 1 for a name that is only "." or "./" (the root itself: skipped), or -1
 * with the reason. */
static int name_canonical(const char *name, char *out, size_t outlen,
                          char *err, size_t errlen)
{
    size_t len = strlen(name), o = 0;
    const char *p = name;

    if (len == 0)
        return fail(err, errlen, "an entry has an empty name");
    if (len >= PATH_MAX || len >= outlen)
        return fail(err, errlen, "an entry name is longer than %d bytes", PATH_MAX);
    if (name[0] == '/')
        return fail(err, errlen, "entry \"%.200s\" has an absolute path", name);
    if (strchr(name, '\\'))
        return fail(err, errlen, "entry \"%.200s\" has a backslash in its name", name);
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if (n == 2 && p[0] == '.' && p[1] == '.')
            return fail(err, errlen, "entry \"%.200s\" has a '..' component", name);
        if (n > NAME_MAX)
            return fail(err, errlen, "entry \"%.200s\" has a component longer than %d bytes",
                        name, NAME_MAX);
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    out[o] = '\0';
    return o == 0 ? 1 : 0;
}

/* A link target is acceptable when it is relative and has no '..': it can
 * then only lead further down from the folder holding the link. */
static int link_target_ok(const char *name, const char *target, char *err,
                          size_t errlen)
{
    const char *p = target;

    if (!target || !*target)
        return fail(err, errlen, "link \"%.200s\" has an empty target", name);
    if (strlen(target) >= PATH_MAX)
        return fail(err, errlen, "link \"%.200s\" has a target longer than %d bytes",
                    name, PATH_MAX);
    if (target[0] == '/')
        return fail(err, errlen, "link \"%.200s\" points outside the folder (absolute "
                    "target \"%.200s\")", name, target);
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        if (n == 2 && p[0] == '.' && p[1] == '.')
            return fail(err, errlen, "link \"%.200s\" points outside the folder (target "
                        "\"%.200s\" has '..')", name, target);
        p += n;
        if (*p == '/')
            p++;
    }
    return 0;
}

/* ---- writing under the root --------------------------------------------------- */

/* Opens (creating when create is set) the folder path (canonical, relative)
 * under rootfd, one component at a time with O_NOFOLLOW.  Returns an fd or
 * -1 (errno). */
static int open_dir_path(int rootfd, const char *path, bool create,
                         struct archive_stats *st)
{
    char comp[NAME_MAX + 1];
    const char *p = path;
    int fd = dup(rootfd);

    if (fd < 0)
        return -1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int next;

        memcpy(comp, p, n);
        comp[n] = '\0';
        next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
            }
            if (st)
                st->dirs++;
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        close(fd);
        fd = next;
        p += n;
        if (*p == '/')
            p++;
    }
    return fd;
}

/* Splits "a/b/c" into its folder ("a/b", or "" at the top) and base name
 * ("c").  dir must hold PATH_MAX bytes. */
static const char *split_path(const char *path, char *dir)
{
    const char *slash = strrchr(path, '/');

    if (!slash) {
        dir[0] = '\0';
        return path;
    }
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return slash + 1;
}

struct pending_link {
    char *name;     /* owned: canonical path of the link */
    char *target;   /* owned */
};

struct extract {
    struct archive *a;                  /* owned */
    int rootfd;                         /* owned */
    const struct archive_limits *lim;   /* borrowed */
    struct archive_stats st;
    uint64_t entries;
    struct name_set names;              /* owned */
    struct pending_link *links;         /* owned array */
    size_t nlinks, links_cap;
    char *buf;                          /* owned: DATA_BUF bytes */
};

static int write_file(struct extract *x, struct archive_entry *e,
                      const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *base = split_path(path, dir);
    mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
    int dfd, fd, rc = -1;

    if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0 &&
        (uint64_t)archive_entry_size(e) > x->lim->max_bytes - x->st.bytes)
        return fail(err, errlen, "entry \"%.200s\" declares %" PRId64 " bytes: the archive "
                    "would pass the limit of %" PRIu64 " bytes", path,
                    (int64_t)archive_entry_size(e), x->lim->max_bytes);
    dfd = open_dir_path(x->rootfd, dir, true, &x->st);
    if (dfd < 0)
        return fail(err, errlen, "cannot create the folder of \"%.200s\": %s", path,
                    strerror(errno));
    fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        fail(err, errlen, "cannot create \"%.200s\": %s", path, strerror(errno));
        goto out;
    }
    for (;;) {
        la_ssize_t n = archive_read_data(x->a, x->buf, DATA_BUF);

        if (n == 0)
            break;
        if (n < 0) {
            fail(err, errlen, "corrupt data in \"%.200s\": %s", path,
                 archive_error_string(x->a) ? archive_error_string(x->a) : "read error");
            goto out;
        }
        if ((uint64_t)n > x->lim->max_bytes - x->st.bytes) {
            fail(err, errlen, "the archive expands to more than %" PRIu64 " bytes",
                 x->lim->max_bytes);
            goto out;
        }
        x->st.bytes += (uint64_t)n;
        for (la_ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, x->buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fail(err, errlen, "cannot write \"%.200s\": %s", path, strerror(errno));
                goto out;
            }
            off += w;
        }
    }
    x->st.files++;
    rc = 0;
out:
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = fail(err, errlen, "cannot write \"%.200s\": %s", path, strerror(errno));
    close(dfd);
    return rc;
}

static int make_dir(struct extract *x, const char *path, char *err, size_t errlen)
{
    int fd = open_dir_path(x->rootfd, path, true, &x->st);

    if (fd < 0)
        return fail(err, errlen, "cannot create the folder \"%.200s\": %s", path,
                    strerror(errno));
    close(fd);
    return 0;
}

static int queue_link(struct extract *x, const char *path, const char *target,
                      char *err, size_t errlen)
{
    if (link_target_ok(path, target, err, errlen) < 0)
        return -1;
    if (x->nlinks == x->links_cap) {
        size_t cap = x->links_cap ? x->links_cap * 2 : 16;
        struct pending_link *l = realloc(x->links, cap * sizeof *l);
        if (!l)
            return fail(err, errlen, "out of memory");
        x->links = l;
        x->links_cap = cap;
    }
    x->links[x->nlinks].name = strdup(path);
    x->links[x->nlinks].target = strdup(target);
    if (!x->links[x->nlinks].name || !x->links[x->nlinks].target) {
        free(x->links[x->nlinks].name);
        free(x->links[x->nlinks].target);
        return fail(err, errlen, "out of memory");
    }
    x->nlinks++;
    return 0;
}

/* Links last: no entry can be written through one. */
static int make_links(struct extract *x, char *err, size_t errlen)
{
    for (size_t i = 0; i < x->nlinks; i++) {
        char dir[PATH_MAX];
        const char *base = split_path(x->links[i].name, dir);
        int dfd = open_dir_path(x->rootfd, dir, true, &x->st);

        if (dfd < 0)
            return fail(err, errlen, "cannot create the folder of link \"%.200s\": %s",
                        x->links[i].name, strerror(errno));
        if (symlinkat(x->links[i].target, dfd, base) < 0) {
            int e = errno;
            close(dfd);
            return fail(err, errlen, "cannot create link \"%.200s\": %s",
                        x->links[i].name, strerror(e));
        }
        close(dfd);
        x->st.links++;
    }
    return 0;
}

static int extract_entries(struct extract *x, char *err, size_t errlen)
{
    struct archive_entry *e;
    char path[PATH_MAX];

    for (;;) {
        int r = archive_read_next_header(x->a, &e);
        const char *name;

        if (r == ARCHIVE_EOF)
            return 0;
        if (r != ARCHIVE_OK)
            return fail(err, errlen, "corrupt archive: %s",
                        archive_error_string(x->a) ? archive_error_string(x->a) : "bad header");
        if (++x->entries > x->lim->max_files)
            return fail(err, errlen, "the archive has more than %" PRIu64 " entries",
                        x->lim->max_files);
        name = archive_entry_pathname(e);
        if (!name)
            return fail(err, errlen, "an entry name is not valid text");
        r = name_canonical(name, path, sizeof path, err, errlen);
        if (r < 0)
            return -1;
        if (r == 1)
            continue;    /* "./": the root */
        if (archive_entry_is_encrypted(e))
            return fail(err, errlen, "entry \"%.200s\" is encrypted", path);
        if (archive_entry_hardlink(e))
            return fail(err, errlen, "entry \"%.200s\" is a hard link", path);
        switch (name_set_add(&x->names, path)) {
        case -1:
            return fail(err, errlen, "out of memory");
        case 0:
            return fail(err, errlen, "entry \"%.200s\" appears twice", path);
        }
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
            if (write_file(x, e, path, err, errlen) < 0)
                return -1;
            break;
        case AE_IFDIR:
            if (make_dir(x, path, err, errlen) < 0)
                return -1;
            break;
        case AE_IFLNK:
            if (queue_link(x, path, archive_entry_symlink(e), err, errlen) < 0)
                return -1;
            break;
        default:
            return fail(err, errlen, "entry \"%.200s\" is a device, FIFO or socket "
                        "(type 0%o)", path, (unsigned)archive_entry_filetype(e));
        }
    }
}

int archive_extract_sync(const char *zip_path, const char *dest,
                         const struct archive_limits *lim,
                         struct archive_stats *st, char *err, size_t errlen)
{
    struct extract x = { .rootfd = -1, .lim = lim };
    bool created = false;
    int rc = -1;

    if (mkdir(dest, 0755) < 0) {
        fail(err, errlen, "cannot create %s: %s", dest, strerror(errno));
        goto out;
    }
    created = true;
    x.rootfd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    x.buf = malloc(DATA_BUF);
    x.a = archive_read_new();
    if (x.rootfd < 0 || !x.buf || !x.a) {
        fail(err, errlen, "cannot start: %s", x.rootfd < 0 ? strerror(errno) : "out of memory");
        goto out;
    }
    archive_read_support_format_zip(x.a);
    if (archive_read_open_filename(x.a, zip_path, READ_BLOCK) != ARCHIVE_OK) {
        fail(err, errlen, "not a readable zip archive: %s",
             archive_error_string(x.a) ? archive_error_string(x.a) : "open failed");
        goto out;
    }
    if (extract_entries(&x, err, errlen) < 0 || make_links(&x, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    if (x.a)
        archive_read_free(x.a);
    if (x.rootfd >= 0)
        close(x.rootfd);
    for (size_t i = 0; i < x.nlinks; i++) {
        free(x.links[i].name);
        free(x.links[i].target);
    }
    free(x.links);
    free(x.buf);
    name_set_free(&x.names);
    if (rc < 0 && created)
        archive_remove_tree(dest);
    if (st)
        *st = x.st;
    return rc;
}

/* ---- removing a tree -------------------------------------------------------------- */

static int remove_in(int dfd, int depth)
{
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (depth > 256) {
        close(dfd);
        errno = ELOOP;
        return -1;
    }
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -1;
    }
    while ((de = readdir(d))) {
        struct stat sb;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -1;
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || remove_in(sub, depth + 1) < 0 ||
                unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
                rc = -1;
        } else if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

int archive_remove_tree(const char *path)
{
    struct stat sb;
    int fd;

    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode))
        return unlink(path);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || remove_in(fd, 0) < 0)
        return -1;
    return rmdir(path);
}

/* ---- the child ------------------------------------------------------------------- */

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

int archive_child_main(int argc, char **argv)
{
    struct archive_limits lim;
    struct archive_stats st = { 0 };
    char err[512] = "";
    json_t *out;
    int rc;

    if (argc != 6 || strcmp(argv[1], ARCHIVE_CHILD_FLAG) != 0 ||
        parse_u64(argv[4], &lim.max_bytes) < 0 || parse_u64(argv[5], &lim.max_files) < 0) {
        fprintf(stderr, "usage: studyhub %s ZIP DEST MAX_BYTES MAX_FILES\n",
                ARCHIVE_CHILD_FLAG);
        return 2;
    }
    rc = archive_extract_sync(argv[2], argv[3], &lim, &st, err, sizeof err);
    if (rc == 0)
        out = json_pack("{s:b, s:I, s:I, s:I, s:I}", "ok", 1, "files", (json_int_t)st.files,
                        "dirs", (json_int_t)st.dirs, "links", (json_int_t)st.links,
                        "bytes", (json_int_t)st.bytes);
    else
        out = json_pack("{s:b, s:s}", "ok", 0, "error", err);
    if (out) {
        char *s = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(out);
    }
    fflush(stdout);
    return rc == 0 ? 0 : 1;
}

/* ---- the asynchronous job ------------------------------------------------------------ */

struct archive_job {
    struct proc_table *pt;     /* borrowed */
    struct proc *proc;         /* the extraction child (owned by pt) */
    char *tmp;                 /* owned: the child's destination */
    char *final;               /* owned */
    char *top;                 /* owned: the one top folder it must have; NULL any */
    archive_done_fn done;      /* borrowed */
    void *arg;                 /* borrowed: given to done */
};

static void on_rm_done(const struct proc_result *r, void *arg)
{
    char how[128];

    if (proc_result_ok(r))
        return;
    proc_result_describe(r, how, sizeof how);
    log_warn("archive: rm -rf of a temporary folder failed (%s): %.300s", how, r->err);
}

int archive_remove_later(struct proc_table *pt, const char *path)
{
    const char *argv[] = { "rm", "-rf", "--", path, NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = RM_TIMEOUT_MS, .tail_bytes = 2048 };
    char err[256];

    if (!pt || !path || !*path)
        return -1;
    if (!proc_spawn(pt, &o, on_rm_done, NULL, err, sizeof err)) {
        log_warn("archive: cannot remove %s: %s", path, err);
        return -1;
    }
    return 0;
}

static void job_free(struct archive_job *j)
{
    free(j->tmp);
    free(j->final);
    free(j->top);
    free(j);
}

/* The one entry of the child's folder when there is exactly one and it is
 * a folder (GitHub's "<repo>-<sha>/"), copied into name; else false. */
static bool single_top_folder(const char *dir, char *name, size_t namelen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    bool is_dir = false;

    if (!d)
        return false;
    while (n < 2 && (de = readdir(d))) {
        struct stat sb;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        snprintf(name, namelen, "%s", de->d_name);
        is_dir = fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                 S_ISDIR(sb.st_mode);
    }
    closedir(d);
    return n == 1 && is_dir;
}

/* True when the extracted tree's one top entry is the folder want
 * ("<repo>-<sha>": the repository's name compared without case, since
 * GitHub names it as the repository is spelled, the commit exactly);
 * else false with the reason in msg. */
static bool top_is(const char *dir, const char *want, char *msg, size_t msglen)
{
    char top[NAME_MAX + 1];
    const char *dash = strrchr(want, '-');
    size_t name_len = dash ? (size_t)(dash - want) : strlen(want);

    if (!single_top_folder(dir, top, sizeof top)) {
        snprintf(msg, msglen, "the archive does not hold one top folder %s/ as an archive of "
                 "that repository and commit does", want);
        return false;
    }
    if (strlen(top) != strlen(want) || strncasecmp(top, want, name_len) != 0 ||
        strcmp(top + name_len, want + name_len) != 0) {
        snprintf(msg, msglen, "the archive's top folder is %.200s/, not %s/: it is not the "
                 "repository and commit asked for", top, want);
        return false;
    }
    return true;
}

static void on_child_done(const struct proc_result *r, void *arg)
{
    struct archive_job *j = arg;
    struct archive_stats st = { 0 };
    char msg[600], how[128], top[NAME_MAX + 1], *src = NULL;
    json_t *res = NULL, *v;
    bool reused = false;
    int rc = -1;

    j->proc = NULL;
    proc_result_describe(r, how, sizeof how);
    res = r->out_len ? json_loads(r->out, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    if (!proc_result_ok(r) || !json_is_true(json_object_get(res, "ok"))) {
        v = json_object_get(res, "error");
        if (json_is_string(v))
            snprintf(msg, sizeof msg, "%s", json_string_value(v));
        else
            snprintf(msg, sizeof msg, "the extraction child %s%s%.300s", how,
                     r->err_len ? ": " : "", r->err_len ? r->err : "");
        archive_remove_later(j->pt, j->tmp);
        goto out;
    }
    st.files = (uint64_t)json_integer_value(json_object_get(res, "files"));
    st.dirs = (uint64_t)json_integer_value(json_object_get(res, "dirs"));
    st.links = (uint64_t)json_integer_value(json_object_get(res, "links"));
    st.bytes = (uint64_t)json_integer_value(json_object_get(res, "bytes"));
    if (j->top && !top_is(j->tmp, j->top, msg, sizeof msg)) {
        /* Not what was asked for: never kept as the checkout. */
        archive_remove_later(j->pt, j->tmp);
        goto out;
    }
    if (single_top_folder(j->tmp, top, sizeof top)) {
        if (asprintf(&src, "%s/%s", j->tmp, top) < 0)
            src = NULL;
    } else {
        src = strdup(j->tmp);
    }
    if (!src) {
        snprintf(msg, sizeof msg, "out of memory");
        archive_remove_later(j->pt, j->tmp);
        goto out;
    }
    if (rename(src, j->final) == 0) {
        if (strcmp(src, j->tmp) != 0)
            rmdir(j->tmp);
        rc = 0;
    } else if (errno == EEXIST || errno == ENOTEMPTY) {
        /* Someone else put the same commit there first: theirs is used. */
        archive_remove_later(j->pt, j->tmp);
        memset(&st, 0, sizeof st);
        reused = true;
        rc = 0;
    } else {
        snprintf(msg, sizeof msg, "cannot move the extracted tree to %s: %s", j->final,
                 strerror(errno));
        archive_remove_later(j->pt, j->tmp);
    }
out:
    free(src);
    json_decref(res);
    j->done(rc, rc == 0 ? NULL : msg, reused, &st, j->arg);
    job_free(j);
}

struct archive_job *archive_extract_start(struct proc_table *pt,
                                          const char *self_exe,
                                          const char *zip_path,
                                          const char *final_dir,
                                          const char *expect_top,
                                          const struct archive_limits *lim,
                                          long timeout_ms, archive_done_fn done,
                                          void *arg, char *err, size_t errlen)
{
    struct archive_job *j = calloc(1, sizeof *j);
    const char *slash = strrchr(final_dir, '/');
    char rnd[13];
    char maxb[32], maxf[32];
    const char *argv[7];
    struct proc_opts o = { .argv = argv, .timeout_ms = timeout_ms, .tail_bytes = 8192 };

    if (!j) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    util_random_hex(6, rnd);
    /* Beside the destination, so the rename stays on one file system. */
    j->tmp = util_asprintf("%.*s.tmp-%s-%s", slash ? (int)(slash - final_dir + 1) : 0,
                           final_dir, slash ? slash + 1 : final_dir, rnd);
    j->final = strdup(final_dir);
    j->top = expect_top ? strdup(expect_top) : NULL;
    if (!j->tmp || !j->final || (expect_top && !j->top)) {
        job_free(j);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(maxb, sizeof maxb, "%" PRIu64, lim->max_bytes);
    snprintf(maxf, sizeof maxf, "%" PRIu64, lim->max_files);
    argv[0] = self_exe ? self_exe : "/proc/self/exe";
    argv[1] = ARCHIVE_CHILD_FLAG;
    argv[2] = zip_path;
    argv[3] = j->tmp;
    argv[4] = maxb;
    argv[5] = maxf;
    argv[6] = NULL;
    j->pt = pt;
    j->done = done;
    j->arg = arg;
    j->proc = proc_spawn(pt, &o, on_child_done, j, err, errlen);
    if (!j->proc) {
        job_free(j);
        return NULL;
    }
    return j;
}

void archive_job_cancel(struct archive_job *j)
{
    if (!j)
        return;
    if (j->proc)
        proc_abandon(j->proc);
    archive_remove_later(j->pt, j->tmp);
    job_free(j);
}
