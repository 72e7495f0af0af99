/* sandbox: assembles the bubblewrap command line of a sandboxed build (see
 * include/studyhub/tasks/sandbox.h for what the build sees).  Only strings
 * here; the caller spawns the result. */
#include "config.h"

#include "studyhub/tasks/sandbox.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const sandbox_top_dirs[SANDBOX_NTOP] = {
    "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
};

/* Files of /etc a build may need, none of them a secret: Debian's program
 * alternatives (awk, editors, node on some installs), the TLS roots npm
 * and git use, the loader cache, the time zone.  Never the whole /etc:
 * it holds shadow, ssh host keys, and whatever the operator put there. */
static const char *const etc_always[] = {
    "/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache",
    "/etc/localtime", NULL,
};
/* With the network: name resolution. */
static const char *const etc_network[] = {
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", NULL,
};

/* A growing NULL-terminated argv; on the first failure it stays failed
 * (every later add is a no-op), so callers check once at the end. */
struct args {
    char **v;       /* owned, with every string */
    size_t n, cap;
    bool failed;
};

static void add(struct args *a, const char *s)
{
    char *copy;

    if (a->failed)
        return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->failed = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    if (!(copy = strdup(s))) {
        a->failed = true;
        return;
    }
    a->v[a->n++] = copy;
    a->v[a->n] = NULL;
}

static void add3(struct args *a, const char *x, const char *y, const char *z)
{
    add(a, x);
    add(a, y);
    if (z)
        add(a, z);
}

static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* An extra read-only path must be absolute and plain: no '..', no
 * control characters, not the root itself (that would show everything). */
static bool ro_path_ok(const char *p, size_t n)
{
    if (n < 2 || p[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return false;
        if (p[i] == '.' && i + 1 < n && p[i + 1] == '.' && p[i - 1] == '/' &&
            (i + 2 == n || p[i + 2] == '/'))
            return false;
    }
    return true;
}

/* BUILD_RO_PATHS: each folder bound read-only at the same place. */
static int add_ro_paths(struct args *a, const char *list, char *err, size_t errlen)
{
    const char *p = list;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char path[1024];

        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n) {
            if (!ro_path_ok(p, n) || n >= sizeof path) {
                fail(err, errlen, "BUILD_RO_PATHS: \"%.*s\" is not an absolute path of a "
                     "folder below /", (int)(n > 200 ? 200 : n), p);
                return -1;
            }
            snprintf(path, sizeof path, "%.*s", (int)n, p);
            add3(a, "--ro-bind", path, path);
        }
        p = end ? end + 1 : p + strlen(p);
    }
    return 0;
}

/* --setenv NAME VALUE for each "NAME=VALUE". */
static int add_env(struct args *a, const char *const *env, char *err, size_t errlen)
{
    for (const char *const *e = env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char name[256];

        if (!eq || eq == *e || (size_t)(eq - *e) >= sizeof name) {
            fail(err, errlen, "the build variable \"%.100s\" is not NAME=VALUE", *e);
            return -1;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
        add3(a, "--setenv", name, eq + 1);
    }
    return 0;
}

char **sandbox_argv(const struct sandbox_spec *s, char *err, size_t errlen)
{
    struct args a = { 0 };
    char size[32];

    if (!s->bwrap || !s->host || !s->checkout || !s->scratch || !s->output || !s->command ||
        !s->command[0]) {
        fail(err, errlen, "incomplete sandbox spec");
        return NULL;
    }
    add(&a, s->bwrap);
    /* Namespaces: the build is uid 65534 of a user namespace of its own
     * and may not make another (a nested one would give it capabilities
     * again, and more kernel to attack). */
    add(&a, "--unshare-user");
    add(&a, "--unshare-pid");
    add(&a, "--unshare-ipc");
    add(&a, "--unshare-uts");
    add(&a, "--unshare-cgroup-try");
    if (!s->network)
        add(&a, "--unshare-net");
    add3(&a, "--uid", SANDBOX_UID, NULL);
    add3(&a, "--gid", SANDBOX_UID, NULL);
    add3(&a, "--hostname", "studyhub-build", NULL);
    add(&a, "--disable-userns");
    add(&a, "--die-with-parent");
    add(&a, "--new-session");
    add3(&a, "--cap-drop", "ALL", NULL);
    /* The system, read-only. */
    add3(&a, "--ro-bind", "/usr", "/usr");
    for (int i = 0; i < SANDBOX_NTOP; i++) {
        const char *dir = sandbox_top_dirs[i];
        if (s->host->kind[i] == SANDBOX_TOP_LINK)
            add3(&a, "--symlink", s->host->link[i], dir);
        else if (s->host->kind[i] == SANDBOX_TOP_DIR)
            add3(&a, "--ro-bind", dir, dir);
    }
    for (int i = 0; etc_always[i]; i++)
        add3(&a, "--ro-bind-try", etc_always[i], etc_always[i]);
    for (int i = 0; s->network && etc_network[i]; i++)
        add3(&a, "--ro-bind-try", etc_network[i], etc_network[i]);
    if (add_ro_paths(&a, s->ro_paths, err, errlen) < 0)
        goto fail;
    /* Its own /proc (its PID namespace only) and /dev (null, zero, full,
     * random, urandom, tty: no disk, no host device). */
    add3(&a, "--proc", "/proc", NULL);
    add3(&a, "--dev", "/dev", NULL);
    snprintf(size, sizeof size, "%lld", (long long)s->tmp_mb * 1024 * 1024);
    add3(&a, "--size", size, NULL);
    add3(&a, "--tmpfs", "/tmp", NULL);
    add3(&a, "--dir", SANDBOX_HOME, NULL);
    /* Its folders. */
    add3(&a, "--ro-bind", s->checkout, SANDBOX_CHECKOUT);
    add3(&a, "--bind", s->scratch, SANDBOX_BUILD);
    add3(&a, "--bind", s->output, SANDBOX_OUTPUT);
    /* The root bwrap builds is a tmpfs of its own: read-only once every
     * mount point is made, or the build could fill memory through it. */
    add3(&a, "--remount-ro", "/", NULL);
    add3(&a, "--chdir", SANDBOX_BUILD, NULL);
    add(&a, "--clearenv");
    if (add_env(&a, s->env, err, errlen) < 0)
        goto fail;
    add(&a, "--");
    for (const char *const *c = s->command; *c; c++)
        add(&a, *c);
    if (a.failed) {
        fail(err, errlen, "out of memory");
        goto fail;
    }
    return a.v;
fail:
    sandbox_argv_free(a.v);
    return NULL;
}

void sandbox_argv_free(char **argv)
{
    for (char **p = argv; p && *p; p++)
        free(*p);
    free(argv);
}

void sandbox_host_probe(struct sandbox_host *h)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < SANDBOX_NTOP; i++) {
        struct stat sb;
        ssize_t n;

        if (lstat(sandbox_top_dirs[i], &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            h->kind[i] = SANDBOX_TOP_DIR;
            continue;
        }
        if (!S_ISLNK(sb.st_mode))
            continue;
        n = readlink(sandbox_top_dirs[i], h->link[i], sizeof h->link[i] - 1);
        if (n > 0) {
            h->link[i][n] = '\0';
            h->kind[i] = SANDBOX_TOP_LINK;
        }
    }
}
