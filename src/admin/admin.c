/* admin: the Unix-socket command server.  One command per connection: read
 * one line, run the registered command (which may answer later), write its
 * output and "OK"/"ERR <message>", then close.  Only the server's own user
 * (or root) gets in: the socket file is 0600 and every connection's peer
 * credentials (SO_PEERCRED) are checked as well, so a socket reached some
 * other way (a copied descriptor, a too-open folder) still refuses. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE           /* struct ucred (SO_PEERCRED) */
#endif
#include "config.h"

#include "studyhub/admin/admin.h"

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_LINE 4096   /* bytes of a command line, without EOL */
#define ADMIN_MAX_CLIENTS 16  /* connections at once; more are refused */
#define ADMIN_MAX_ARGS 64     /* words of a command line */
#define ADMIN_IO_TIMEOUT_S 30 /* to send the line / to take the answer */
#define ADMIN_BACKLOG 16
#define ADMIN_ACCEPT_PAUSE_MS 1000 /* after an accept error such as EMFILE */

/* READING: waiting for the line.  RUNNING: the command owns the conn until
 * admin_finish.  FINISHING: the answer is being written; freed when sent. */
enum admin_conn_state { AC_READING, AC_RUNNING, AC_FINISHING };

struct admin_cmd {
    const char *name; /* borrowed: static string */
    const char *help; /* borrowed: static string */
    admin_cmd_fn fn;  /* the handler */
};

TAILQ_HEAD(admin_conn_list, admin_conn);

struct admin_server {
    struct event_base *base;      /* borrowed */
    struct app *app;              /* borrowed; given to every command */
    char *path;                   /* owned: socket path */
    dev_t dev;                    /* of the socket file we bound, so free */
    ino_t ino;                    /*   unlinks ours and nobody else's */
    struct evconnlistener *lev;   /* owned; closes the socket */
    struct event *resume_ev;      /* owned: re-enables accepting after an
                                     accept error */
    struct admin_cmd *cmds;       /* owned array, in registration order */
    size_t ncmds;                 /* used entries of cmds */
    size_t capcmds;               /* allocated entries of cmds */
    struct admin_conn_list conns; /* attached connections (not owned by
                                     the list: see admin_conn_free) */
    unsigned nconns;              /* entries of conns */
};

struct admin_conn {
    TAILQ_ENTRY(admin_conn) link; /* in srv->conns while srv is set */
    struct admin_server *srv;     /* borrowed; NULL once the server is freed */
    struct bufferevent *bev;      /* owned; NULL once the client is gone
                                     (output is then dropped) */
    enum admin_conn_state state;  /* see enum */
    bool midline;                 /* output so far ends without a newline */
    char *line;                   /* owned: the command line; argv points
                                     into it until admin_finish */
    char *argv[ADMIN_MAX_ARGS + 1]; /* words of line, NULL-terminated */
};

static void admin_conn_free(struct admin_conn *c)
{
    if (c->srv) {
        TAILQ_REMOVE(&c->srv->conns, c, link);
        c->srv->nconns--;
    }
    if (c->bev)
        bufferevent_free(c->bev);
    free(c->line);
    free(c);
}

void admin_printf(struct admin_conn *c, const char *fmt, ...)
{
    char small[512];
    char *text = small;
    va_list ap;
    int n;

    if (c == NULL || c->bev == NULL || c->state != AC_RUNNING)
        return; /* client gone: the command goes on, output is dropped */
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(small)) {
        text = malloc((size_t)n + 1);
        if (text == NULL)
            return;
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (n > 0) {
        evbuffer_add(bufferevent_get_output(c->bev), text, (size_t)n);
        /* Remembered so the status line starts a line of its own. */
        c->midline = text[n - 1] != '\n';
    }
    if (text != small)
        free(text);
}

void admin_finish(struct admin_conn *c, const char *err)
{
    struct evbuffer *out;
    struct timeval tv = {ADMIN_IO_TIMEOUT_S, 0};

    if (c == NULL)
        return;
    if (c->bev == NULL || c->state != AC_RUNNING) {
        /* Client or server already gone: nobody to answer. */
        admin_conn_free(c);
        return;
    }
    out = bufferevent_get_output(c->bev);
    /* The status must be a line of its own for the client to find it. */
    if (c->midline)
        evbuffer_add(out, "\n", 1);
    if (err == NULL) {
        evbuffer_add(out, "OK\n", 3);
    } else {
        evbuffer_add(out, "ERR ", 4);
        for (const char *p = err; *p; p++) {
            char ch = (*p == '\n' || *p == '\r') ? ' ' : *p;

            evbuffer_add(out, &ch, 1);
        }
        evbuffer_add(out, "\n", 1);
    }
    c->state = AC_FINISHING;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    /* admin_write_cb frees c once the output has drained. */
}

static const struct admin_cmd *admin_lookup(const struct admin_server *srv,
                                            const char *name)
{
    for (size_t i = 0; i < srv->ncmds; i++)
        if (strcmp(srv->cmds[i].name, name) == 0)
            return &srv->cmds[i];
    return NULL;
}

/* Takes line.  c may be freed when this returns: don't touch it after. */
static void admin_dispatch(struct admin_conn *c, char *line)
{
    struct admin_server *srv = c->srv;
    const struct admin_cmd *cmd;
    char *save = NULL;
    char *w;
    int argc = 0;

    c->line = line;
    c->state = AC_RUNNING;
    /* A command may take as long as it needs. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    for (w = strtok_r(line, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (argc == ADMIN_MAX_ARGS) {
            admin_finish(c, "too many arguments");
            return;
        }
        c->argv[argc++] = w;
    }
    c->argv[argc] = NULL;
    if (argc == 0) {
        admin_finish(c, "empty command");
        return;
    }
    cmd = admin_lookup(srv, c->argv[0]);
    if (cmd == NULL) {
        char msg[128];

        snprintf(msg, sizeof(msg), "unknown command: %.80s", c->argv[0]);
        admin_finish(c, msg);
        return;
    }
    cmd->fn(c, argc, c->argv, srv->app);
}

/* Extracts the command line once it is complete.  at_eof: the client has
 * closed its side, so a last line without newline counts. */
static void admin_try_line(struct admin_conn *c, bool at_eof)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len,
                                                  EVBUFFER_EOL_LF);
    size_t len = evbuffer_get_length(in);
    char *line;

    if (eol.pos >= 0)
        len = (size_t)eol.pos;
    else if (!at_eof && len <= ADMIN_MAX_LINE)
        return; /* wait for the rest */
    if (len > ADMIN_MAX_LINE) {
        c->state = AC_RUNNING;
        admin_finish(c, "line too long");
        return;
    }
    if (eol.pos < 0 && len == 0) {
        admin_conn_free(c); /* closed without a word */
        return;
    }
    line = malloc(len + 1);
    if (line == NULL) {
        c->state = AC_RUNNING;
        admin_finish(c, "out of memory");
        return;
    }
    evbuffer_remove(in, line, len);
    evbuffer_drain(in, eol_len);
    line[len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[len - 1] = '\0';
    admin_dispatch(c, line);
}

static void admin_read_cb(struct bufferevent *bev, void *arg)
{
    struct admin_conn *c = arg;

    if (c->state != AC_READING) {
        /* One command per connection: ignore anything after the line. */
        evbuffer_drain(bufferevent_get_input(bev),
                       evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    admin_try_line(c, false);
}

static void admin_write_cb(struct bufferevent *bev, void *arg)
{
    struct admin_conn *c = arg;

    (void)bev;
    if (c->state == AC_FINISHING)
        admin_conn_free(c);
}

static void admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct admin_conn *c = arg;

    (void)bev;
    if (c->state == AC_READING) {
        if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR))
            admin_try_line(c, true);
        else
            admin_conn_free(c);
        return;
    }
    if (c->state == AC_FINISHING) {
        admin_conn_free(c); /* client left or stalled: nothing more to do */
        return;
    }
    /* RUNNING.  EOF may be a half-close (`printf cmd | nc -U`), so the
     * answer is still written; an error means the client is gone: keep c
     * for the command, which frees it at admin_finish. */
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

/* The peer runs as this server's user or as root. */
static bool admin_peer_allowed(evutil_socket_t fd)
{
    static const char denied[] = "ERR permission denied\n";
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        log_warn("admin: SO_PEERCRED: %s; refusing the client", strerror(errno));
        return false;
    }
    if (cred.uid == geteuid() || cred.uid == 0)
        return true;
    log_warn("admin: refused a client of uid %u (pid %d): only the server's own"
             " user (uid %u) and root may use the admin socket", (unsigned)cred.uid,
             (int)cred.pid, (unsigned)geteuid());
    if (send(fd, denied, sizeof denied - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("admin: refusing client: %s", strerror(errno));
    return false;
}

static void admin_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                            struct sockaddr *sa, int socklen, void *arg)
{
    static const char busy[] = "ERR too many clients\n";
    struct admin_server *srv = arg;
    struct admin_conn *c = NULL;
    struct timeval tv = {ADMIN_IO_TIMEOUT_S, 0};

    (void)lev;
    (void)sa;
    (void)socklen;
    if (!admin_peer_allowed(fd))
        goto out;
    if (srv->nconns >= ADMIN_MAX_CLIENTS) {
        /* Best effort: the socket buffer of a new connection is empty. */
        if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            log_debug("admin: refusing client: %s", strerror(errno));
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL)
        goto out;
    fd = -1; /* the bufferevent owns it now */
    c->srv = srv;
    c->state = AC_READING;
    TAILQ_INSERT_TAIL(&srv->conns, c, link);
    srv->nconns++;
    bufferevent_setcb(c->bev, admin_read_cb, admin_write_cb, admin_event_cb, c);
    /* +2 leaves room for "\r\n" after a line of the maximum length. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, ADMIN_MAX_LINE + 2);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ);
    c = NULL;
out:
    free(c);
    if (fd >= 0)
        close(fd);
}

static void admin_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct admin_server *srv = arg;

    (void)fd;
    (void)what;
    evconnlistener_enable(srv->lev);
}

static void admin_accept_error_cb(struct evconnlistener *lev, void *arg)
{
    struct admin_server *srv = arg;
    struct timeval tv = {0, ADMIN_ACCEPT_PAUSE_MS * 1000};
    int err = EVUTIL_SOCKET_ERROR();

    /* With EMFILE the socket stays readable: pause instead of spinning. */
    log_warn("admin: accept failed: %s; pausing",
             evutil_socket_error_to_string(err));
    evconnlistener_disable(lev);
    evtimer_add(srv->resume_ev, &tv);
}

/* Unlinks a socket file nobody listens on; refuses a live one or a file
 * that is not a socket.  Returns 0 or a negative errno. */
static int admin_clear_stale(const char *path, const struct sockaddr_un *sun)
{
    struct stat st;
    int fd = -1;
    int ret = 0;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        log_error("admin: %s exists and is not a socket", path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 ||
        errno == EAGAIN) {
        log_error("admin: another server is listening on %s", path);
        ret = -EADDRINUSE;
        goto out;
    }
    if (errno != ECONNREFUSED) {
        ret = -errno;
        log_error("admin: cannot probe %s: %s", path, strerror(errno));
        goto out;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        ret = -errno;
        log_error("admin: cannot remove stale %s: %s", path, strerror(errno));
        goto out;
    }
    log_info("admin: removed stale socket %s", path);
out:
    close(fd);
    return ret;
}

/* Creates the parent folder (one level, mode 0700) so the default
 * var/studyhub.sock works in a fresh checkout. */
static void admin_make_parent(const char *path)
{
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;

    if (slash && slash != dir) {
        struct stat st;
        *slash = '\0';
        if (mkdir(dir, 0700) == 0)
            log_info("admin: created %s", dir);
        /* Anyone who may write the folder may swap the socket for one of
         * their own; the socket's 0600 cannot help then. */
        else if (stat(dir, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) &&
                 !(st.st_mode & S_ISVTX))
            log_warn("admin: %s is writable by other users (mode %o): make it 0700"
                     " so nobody can replace the admin socket", dir,
                     (unsigned)(st.st_mode & 07777));
    }
    free(dir);
}

/* Returns the bound, not yet listening socket, or -1. */
static int admin_bind(struct admin_server *srv)
{
    struct sockaddr_un sun;
    struct stat st;
    mode_t old_mask;
    int fd = -1;
    int ret = -1;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(srv->path) >= sizeof(sun.sun_path)) {
        log_error("admin: socket path too long (max %zu bytes): %s",
                  sizeof(sun.sun_path) - 1, srv->path);
        goto out;
    }
    strcpy(sun.sun_path, srv->path);
    admin_make_parent(srv->path);
    if (admin_clear_stale(srv->path, &sun) < 0)
        goto out;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("admin: socket: %s", strerror(errno));
        goto out;
    }
    /* Linux takes the socket file's mode from the umask at bind (fchmod
     * on the socket does not reach the file), so narrow it around bind. */
    old_mask = umask(0177);
    ret = bind(fd, (const struct sockaddr *)&sun, sizeof(sun));
    umask(old_mask);
    if (ret < 0) {
        log_error("admin: bind %s: %s", srv->path, strerror(errno));
        goto out;
    }
    ret = -1;
    if (chmod(srv->path, 0600) < 0 || stat(srv->path, &st) < 0) {
        log_error("admin: chmod %s: %s", srv->path, strerror(errno));
        unlink(srv->path);
        goto out;
    }
    srv->dev = st.st_dev;
    srv->ino = st.st_ino;
    ret = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return ret;
}

static void admin_cmd_help(struct admin_conn *c, int argc, char **argv,
                           struct app *app)
{
    (void)argc;
    (void)argv;
    (void)app;
    for (size_t i = 0; c->srv && i < c->srv->ncmds; i++)
        admin_printf(c, "%-12s %s\n", c->srv->cmds[i].name,
                     c->srv->cmds[i].help);
    admin_finish(c, NULL);
}

static void admin_cmd_status(struct admin_conn *c, int argc, char **argv,
                             struct app *app)
{
    (void)argc;
    (void)argv;
    admin_printf(c, "version: %s\n", PACKAGE_VERSION);
    if (app == NULL)
        goto out;
    if (app->started > 0)
        admin_printf(c, "uptime_s: %lld\n",
                     (long long)(time(NULL) - app->started));
    else
        admin_printf(c, "uptime_s: n/a\n");
    admin_printf(c, "draining: %s\n", app->draining ? "yes" : "no");
    if (app->http) {
        admin_printf(c, "http_connections: %u\n",
                     http_server_connections(app->http));
        admin_printf(c, "http_inflight: %u\n", http_server_inflight(app->http));
    } else {
        admin_printf(c, "http_connections: n/a\nhttp_inflight: n/a\n");
    }
    if (app->pg) {
        struct pg_pool_stats ps;

        memset(&ps, 0, sizeof(ps));
        pg_pool_stats(app->pg, &ps);
        admin_printf(c,
                     "pg_size: %d\npg_connected: %d\npg_in_use: %d\n"
                     "pg_waiting: %d\n",
                     ps.size, ps.connected, ps.in_use, ps.waiting);
    } else {
        admin_printf(c, "pg_size: n/a\npg_connected: n/a\npg_in_use: n/a\n"
                        "pg_waiting: n/a\n");
    }
    if (app->redis)
        admin_printf(c, "redis_connected: %s\n",
                     redis_connected(app->redis) ? "yes" : "no");
    else
        admin_printf(c, "redis_connected: n/a\n");
out:
    admin_finish(c, NULL);
}

struct admin_server *admin_server_new(struct event_base *base, const char *path,
                                      struct app *app)
{
    struct admin_server *srv = calloc(1, sizeof(*srv));
    int fd = -1;

    if (srv == NULL)
        return NULL;
    srv->base = base;
    srv->app = app;
    TAILQ_INIT(&srv->conns);
    srv->path = strdup(path);
    srv->resume_ev = evtimer_new(base, admin_resume_cb, srv);
    if (srv->path == NULL || srv->resume_ev == NULL)
        goto fail;
    fd = admin_bind(srv);
    if (fd < 0)
        goto fail;
    srv->lev = evconnlistener_new(base, admin_accept_cb, srv,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                  ADMIN_BACKLOG, fd);
    if (srv->lev == NULL) {
        log_error("admin: listen %s: %s", path, strerror(errno));
        close(fd);
        unlink(srv->path);
        srv->ino = 0;
        goto fail;
    }
    evconnlistener_set_error_cb(srv->lev, admin_accept_error_cb);
    admin_register(srv, "help", "list commands", admin_cmd_help);
    admin_register(srv, "status",
                   "version, uptime, connections, database and redis state",
                   admin_cmd_status);
    log_info("admin: listening on %s", path);
    return srv;
fail:
    admin_server_free(srv);
    return NULL;
}

void admin_server_free(struct admin_server *srv)
{
    struct admin_conn *c;
    struct stat st;

    if (srv == NULL)
        return;
    if (srv->lev)
        evconnlistener_free(srv->lev);
    /* Only unlink the file we bound: a newer server may own the path. */
    if (srv->ino && stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
        st.st_ino == srv->ino)
        unlink(srv->path);
    while ((c = TAILQ_FIRST(&srv->conns)) != NULL) {
        TAILQ_REMOVE(&srv->conns, c, link);
        srv->nconns--;
        c->srv = NULL;
        if (c->state == AC_RUNNING) {
            /* The command still holds c: close the client, free at
             * admin_finish. */
            if (c->bev)
                bufferevent_free(c->bev);
            c->bev = NULL;
        } else {
            admin_conn_free(c);
        }
    }
    if (srv->resume_ev)
        event_free(srv->resume_ev);
    free(srv->cmds);
    free(srv->path);
    free(srv);
}

void admin_register(struct admin_server *srv, const char *name,
                    const char *help, admin_cmd_fn fn)
{
    struct admin_cmd *cmd;

    if (srv == NULL || name == NULL || fn == NULL)
        return;
    /* Registering a name again replaces the handler (e.g. a richer
     * status). */
    for (size_t i = 0; i < srv->ncmds; i++) {
        if (strcmp(srv->cmds[i].name, name) == 0) {
            srv->cmds[i].help = help ? help : "";
            srv->cmds[i].fn = fn;
            return;
        }
    }
    if (srv->ncmds == srv->capcmds) {
        size_t cap = srv->capcmds ? srv->capcmds * 2 : 16;
        struct admin_cmd *nc = realloc(srv->cmds, cap * sizeof(*nc));

        if (nc == NULL) {
            log_error("admin: out of memory registering %s", name);
            return;
        }
        srv->cmds = nc;
        srv->capcmds = cap;
    }
    cmd = &srv->cmds[srv->ncmds++];
    cmd->name = name;
    cmd->help = help ? help : "";
    cmd->fn = fn;
}
