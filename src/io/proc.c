/* proc: supervised children.  fork+exec with a private process group,
 * output tails read from the loop, timeouts that kill the whole group,
 * SIGCHLD as a libevent signal event, exits delivered from the loop.
 *
 * Each child is a small state machine (enum proc_state); every change goes
 * through proc_set_state.  Callbacks run only from table_on_deliver, never
 * from proc_spawn, proc_kill or an I/O handler, so a callback may spawn,
 * kill or abandon any child: its own handle is held (core/reap) while it
 * runs and freed on a later loop turn. */
#include "config.h"

#include "studyhub/io/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <grp.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "studyhub/core/log.h"
#include "studyhub/core/reap.h"

/* Bytes read from one pipe per wakeup: a child that writes without pause
 * must not keep the loop from everything else. */
#define PROC_READ_BUDGET (256 * 1024)
/* Bytes drained from a pipe after its writer was reaped. */
#define PROC_DRAIN_MAX (4 * 1024 * 1024)

enum proc_state {
    PS_RUNNING,    /* alive, not asked to stop */
    PS_STOPPING,   /* SIGTERM sent (timeout or proc_kill); grace armed */
    PS_EXITED,     /* reaped; on the done list waiting for delivery */
    PS_DELIVERING, /* its callback ran or runs; on the gone list, freed by
                    * the loop once it returned */
    PS_ABANDONED,  /* owner gone: SIGKILLed, freed silently when reaped */
};

static const char *const proc_state_names[] = {
    [PS_RUNNING] = "running",
    [PS_STOPPING] = "stopping",
    [PS_EXITED] = "exited",
    [PS_DELIVERING] = "delivering",
    [PS_ABANDONED] = "abandoned",
};

/* One of the child's output pipes. */
struct proc_stream {
    int fd;                 /* owned: read end, non-blocking; -1 once closed */
    struct event *ev;       /* owned: read watch; NULL once closed */
    struct proc_tail tail;  /* owned: the last bytes */
};

struct proc {
    TAILQ_ENTRY(proc) link;     /* in pt->live, pt->done or pt->gone */
    struct reap reap;           /* held while its callback runs */
    struct proc_table *pt;      /* borrowed: the owner */
    pid_t pid;                  /* also the process group id */
    enum proc_state state;      /* changed only by proc_set_state */
    proc_cb cb;                 /* borrowed; NULL once abandoned */
    void *arg;                  /* borrowed: given to cb */
    struct proc_stream out;     /* stdout */
    struct proc_stream err;     /* stderr */
    struct event *timer;        /* owned: the timeout, then the grace */
    long grace_ms;              /* SIGTERM -> SIGKILL */
    bool timed_out;             /* the timeout fired */
    bool killed;                /* proc_kill was called */
    int status;                 /* from waitpid; valid once reaped */
    bool status_known;          /* waitpid gave a status (not ECHILD) */
    struct timespec started;    /* monotonic */
    double duration_s;          /* spawn to reap */
};

TAILQ_HEAD(proc_list, proc);

struct proc_table {
    struct event_base *base;    /* borrowed */
    struct event *sigchld;      /* owned: SIGCHLD as a loop event */
    struct event *deliver;      /* owned: runs exit callbacks from the loop */
    struct proc_list live;      /* owned: children not yet reaped, by pid */
    struct proc_list done;      /* owned: reaped, callback due */
    struct proc_list gone;      /* owned: delivered, freed on a later turn */
    unsigned count;             /* entries of live + done */
};

/* ---- the tail ring buffer ----------------------------------------------- */

int proc_tail_init(struct proc_tail *t, size_t cap)
{
    memset(t, 0, sizeof *t);
    if (cap == 0)
        cap = 1;
    t->buf = malloc(cap);
    if (!t->buf)
        return -1;
    t->cap = cap;
    return 0;
}

void proc_tail_cleanup(struct proc_tail *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

void proc_tail_append(struct proc_tail *t, const void *data, size_t n)
{
    const char *p = data;

    if (!t->buf)
        return;
    t->total += n;
    if (n >= t->cap) {
        /* Only the last cap bytes can survive. */
        memcpy(t->buf, p + (n - t->cap), t->cap);
        t->start = 0;
        t->len = t->cap;
        return;
    }
    /* Write at the end position, wrapping; drop the oldest on overflow. */
    size_t end = (t->start + t->len) % t->cap;
    size_t first = t->cap - end < n ? t->cap - end : n;

    memcpy(t->buf + end, p, first);
    memcpy(t->buf, p + first, n - first);
    if (t->len + n > t->cap) {
        size_t drop = t->len + n - t->cap;

        t->start = (t->start + drop) % t->cap;
        t->len = t->cap;
    } else {
        t->len += n;
    }
}

void proc_tail_copy(const struct proc_tail *t, char *dst)
{
    size_t first;

    if (!t->buf || t->len == 0)
        return;
    first = t->cap - t->start < t->len ? t->cap - t->start : t->len;
    memcpy(dst, t->buf + t->start, first);
    memcpy(dst + first, t->buf, t->len - first);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    size_t n;
    unsigned c = s[0];
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

size_t proc_clean_text(char *s, size_t len)
{
    unsigned char *p = (unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = p[i] ? utf8_seq(p + i, len - i) : 0;

        if (n == 0) {
            p[i++] = '?';
            continue;
        }
        i += n;
    }
    return len;
}

char *proc_tail_text(const struct proc_tail *t, size_t *len_out)
{
    char *s = malloc(t->len + 1);

    if (!s)
        return NULL;
    proc_tail_copy(t, s);
    proc_clean_text(s, t->len);
    s[t->len] = '\0';
    if (len_out)
        *len_out = t->len;
    return s;
}

/* ---- children ------------------------------------------------------------- */

static void proc_set_state(struct proc *p, enum proc_state st)
{
    if (p->state != st)
        log_debug("proc: pid %d %s -> %s", (int)p->pid,
                  proc_state_names[p->state], proc_state_names[st]);
    p->state = st;
}

static void timer_arm_ms(struct event *ev, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    evtimer_add(ev, &tv);
}

/* Signals the whole group; the leader too in case it left the group. */
static void proc_signal_group(struct proc *p, int sig)
{
    if (kill(-p->pid, sig) < 0 && errno == ESRCH)
        kill(p->pid, sig);
}

static void stream_close(struct proc_stream *s)
{
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* Reads what is there, up to budget bytes; closes the stream at EOF or on
 * an error.  Returns the bytes read. */
static size_t stream_read(struct proc_stream *s, size_t budget)
{
    char buf[16384];
    size_t got = 0;

    while (s->fd >= 0 && got < budget) {
        ssize_t n = read(s->fd, buf, sizeof buf);

        if (n > 0) {
            proc_tail_append(&s->tail, buf, (size_t)n);
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        stream_close(s);    /* EOF or a real error */
    }
    return got;
}

static void stream_on_read(evutil_socket_t fd, short what, void *arg)
{
    stream_read(arg, PROC_READ_BUDGET);
}

static void proc_free(struct proc *p)
{
    reap_cleanup(&p->reap);
    stream_close(&p->out);
    stream_close(&p->err);
    proc_tail_cleanup(&p->out.tail);
    proc_tail_cleanup(&p->err.tail);
    if (p->timer)
        event_free(p->timer);
    free(p);
}

/* A delivered child's handle, from the loop after its callback returned. */
static void proc_destroy(void *arg)
{
    struct proc *p = arg;

    TAILQ_REMOVE(&p->pt->gone, p, link);
    proc_free(p);
}

static void proc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct proc *p = arg;

    switch (p->state) {
    case PS_RUNNING:
        log_warn("proc: pid %d timed out; SIGTERM to its group", (int)p->pid);
        p->timed_out = true;
        proc_signal_group(p, SIGTERM);
        proc_set_state(p, PS_STOPPING);
        timer_arm_ms(p->timer, p->grace_ms);
        return;
    case PS_STOPPING:
        log_warn("proc: pid %d still there %ld ms after SIGTERM; SIGKILL",
                 (int)p->pid, p->grace_ms);
        proc_signal_group(p, SIGKILL);
        return;
    default:
        return;
    }
}

/* The leader is gone: take the rest of its output and hand it over. */
static void proc_reaped(struct proc *p, int status, bool known)
{
    struct proc_table *pt = p->pt;
    struct timespec now;

    p->status = status;
    p->status_known = known;
    clock_gettime(CLOCK_MONOTONIC, &now);
    p->duration_s = (double)(now.tv_sec - p->started.tv_sec) +
                    (double)(now.tv_nsec - p->started.tv_nsec) / 1e9;
    /* Nothing it started may outlive it (and keep our pipes open). */
    kill(-p->pid, SIGKILL);
    evtimer_del(p->timer);
    /* Its writes are complete: what is in the pipes is all there is. */
    stream_read(&p->out, PROC_DRAIN_MAX);
    stream_read(&p->err, PROC_DRAIN_MAX);
    stream_close(&p->out);
    stream_close(&p->err);
    TAILQ_REMOVE(&pt->live, p, link);
    if (p->state == PS_ABANDONED) {
        pt->count--;
        proc_free(p);
        return;
    }
    proc_set_state(p, PS_EXITED);
    TAILQ_INSERT_TAIL(&pt->done, p, link);
    event_active(pt->deliver, EV_TIMEOUT, 1);
}

/* SIGCHLD: signals merge, so look at every child of ours. */
static void table_on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    struct proc_table *pt = arg;
    struct proc *p, *next;

    for (p = TAILQ_FIRST(&pt->live); p; p = next) {
        int status = 0;
        pid_t r;

        next = TAILQ_NEXT(p, link);
        do
            r = waitpid(p->pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == p->pid) {
            proc_reaped(p, status, true);
        } else if (r < 0 && errno == ECHILD) {
            log_warn("proc: pid %d was reaped elsewhere; exit status unknown",
                     (int)p->pid);
            proc_reaped(p, 0, false);
        }
    }
}

static void proc_fill_result(struct proc *p, struct proc_result *r,
                             char **out, char **err)
{
    static char empty[] = "";

    memset(r, 0, sizeof *r);
    r->pid = p->pid;
    r->exit_code = -1;
    if (p->status_known && WIFEXITED(p->status))
        r->exit_code = WEXITSTATUS(p->status);
    else if (p->status_known && WIFSIGNALED(p->status))
        r->term_signal = WTERMSIG(p->status);
    r->timed_out = p->timed_out;
    r->killed = p->killed;
    r->duration_s = p->duration_s;
    *out = proc_tail_text(&p->out.tail, &r->out_len);
    *err = proc_tail_text(&p->err.tail, &r->err_len);
    r->out = *out ? *out : empty;
    r->err = *err ? *err : empty;
    if (!*out)
        r->out_len = 0;
    if (!*err)
        r->err_len = 0;
    r->out_total = p->out.tail.total;
    r->err_total = p->err.tail.total;
}

static void table_on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct proc_table *pt = arg;
    struct proc *p;

    while ((p = TAILQ_FIRST(&pt->done))) {
        struct proc_result r;
        char *out = NULL, *err = NULL;

        TAILQ_REMOVE(&pt->done, p, link);
        TAILQ_INSERT_TAIL(&pt->gone, p, link);
        pt->count--;
        proc_set_state(p, PS_DELIVERING);
        proc_fill_result(p, &r, &out, &err);
        reap_hold(&p->reap);
        reap_release(&p->reap);     /* delivered: it goes once unheld */
        if (p->cb)
            p->cb(&r, p->arg);  /* may spawn, kill or abandon others */
        free(out);
        free(err);
        reap_drop(&p->reap);        /* freed on a later turn, not here */
    }
}

void proc_result_describe(const struct proc_result *r, char *buf, size_t len)
{
    if (r->timed_out)
        snprintf(buf, len, "timed out after %.1f s (%s %d)", r->duration_s,
                 r->term_signal ? "signal" : "exit",
                 r->term_signal ? r->term_signal : r->exit_code);
    else if (r->killed)
        snprintf(buf, len, "killed on request after %.1f s", r->duration_s);
    else if (r->term_signal)
        snprintf(buf, len, "killed by signal %d (%s)", r->term_signal,
                 strsignal(r->term_signal));
    else if (r->exit_code >= 0)
        snprintf(buf, len, "exit %d", r->exit_code);
    else
        snprintf(buf, len, "exit status unknown");
}

/* ---- spawning ----------------------------------------------------------------- */

/* What the child reports through the exec pipe when it cannot exec. */
struct spawn_failure {
    int step;   /* SPAWN_* */
    int err;    /* errno */
};

enum { SPAWN_SETUP, SPAWN_CHDIR, SPAWN_EXEC, SPAWN_LIMITS, SPAWN_IDS };

/* Moves fd above 2 (the child's 0..2 are re-pointed with dup2, which must
 * not clobber one of our own pipes).  Closes the old one. */
static int fd_above2(int fd)
{
    int nfd;

    if (fd > 2)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return nfd;
}

static int pipe_above2(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    fds[0] = fd_above2(fds[0]);
    fds[1] = fd_above2(fds[1]);
    if (fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return -1;
    }
    return 0;
}

/* Closes every descriptor above 2 except keep (the exec pipe, itself
 * close-on-exec).  Async-signal-safe. */
static void child_close_fds(int keep)
{
    if (close_range(3, (unsigned)keep - 1, 0) == 0 &&
        close_range((unsigned)keep + 1, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);

    if (max < 0 || max > 1048576)
        max = 1048576;
    for (int fd = 3; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

static void child_fail(int fd, int step)
{
    struct spawn_failure f = { step, errno };
    ssize_t w = write(fd, &f, sizeof f);

    (void)w;
    _exit(127);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(const struct proc_opts *o, pid_t parent, int devnull,
                       int out_w, int err_w, int exec_w)
{
    struct sigaction sa;
    sigset_t empty;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    /* libevent's handlers would write into the server's signal socket,
     * and the server ignores SIGPIPE, which exec would keep. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL);
    sigemptyset(&empty);
    if (setpgid(0, 0) < 0)
        child_fail(exec_w, SPAWN_SETUP);
    for (const struct proc_rlimit *l = o->rlimits; l && l->resource >= 0; l++) {
        struct rlimit rl = { (rlim_t)l->value, (rlim_t)l->value };
        if (setrlimit(l->resource, &rl) < 0)
            child_fail(exec_w, SPAWN_LIMITS);
    }
    /* Before PR_SET_PDEATHSIG: a change of credentials clears it.  Groups
     * first, the uid last (after it nothing else may be changed). */
    if (o->set_ids && (setgroups(0, NULL) < 0 || setgid((gid_t)o->gid) < 0 ||
                       setuid((uid_t)o->uid) < 0))
        child_fail(exec_w, SPAWN_IDS);
    /* Die with the server: an orphaned build would run on unwatched. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        child_fail(exec_w, SPAWN_SETUP);
    if (dup2(devnull, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
        child_fail(exec_w, SPAWN_SETUP);
    child_close_fds(exec_w);
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(exec_w, SPAWN_CHDIR);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    if (o->envp)
        execvpe(o->argv[0], (char *const *)o->argv, (char *const *)o->envp);
    else
        execvp(o->argv[0], (char *const *)o->argv);
    child_fail(exec_w, SPAWN_EXEC);
}

struct proc *proc_spawn(struct proc_table *pt, const struct proc_opts *opts,
                        proc_cb cb, void *arg, char *err, size_t errlen)
{
    struct proc *p = NULL, *ret = NULL;
    int out[2] = { -1, -1 }, errp[2] = { -1, -1 }, ex[2] = { -1, -1 };
    int devnull = -1;
    sigset_t all, old;
    struct spawn_failure f;
    ssize_t n;
    pid_t pid;

    if (!pt || !opts || !opts->argv || !opts->argv[0]) {
        snprintf(err, errlen, "no program to run");
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (!p || proc_tail_init(&p->out.tail, opts->tail_bytes ? opts->tail_bytes
                                                            : PROC_TAIL_DEFAULT) < 0 ||
        proc_tail_init(&p->err.tail, opts->tail_bytes ? opts->tail_bytes
                                                      : PROC_TAIL_DEFAULT) < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    p->pt = pt;
    p->cb = cb;
    p->arg = arg;
    p->out.fd = p->err.fd = -1;
    p->grace_ms = opts->grace_ms > 0 ? opts->grace_ms : PROC_GRACE_DEFAULT_MS;
    p->timer = evtimer_new(pt->base, proc_on_timer, p);
    devnull = fd_above2(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (reap_init(&p->reap, pt->base, proc_destroy, p) < 0 || !p->timer || devnull < 0 || pipe_above2(out) < 0 ||
        pipe_above2(errp) < 0 || pipe_above2(ex) < 0) {
        snprintf(err, errlen, "cannot set up the child's pipes: %s",
                 strerror(errno));
        goto out;
    }
    /* No signal handler may run in the child before it resets them. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid = fork();
    if (pid == 0)
        child_exec(opts, parent, devnull, out[1], errp[1], ex[1]);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        goto out;
    }
    /* Also here, so a kill of the group cannot race the child's setpgid. */
    setpgid(pid, pid);
    p->pid = pid;
    clock_gettime(CLOCK_MONOTONIC, &p->started);
    close(ex[1]);
    ex[1] = -1;
    /* EOF when exec succeeded (the pipe is close-on-exec).  This waits
     * only for the child to reach exec, as posix_spawn does. */
    do
        n = read(ex[0], &f, sizeof f);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof f) {
        int status;

        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        snprintf(err, errlen, "%s %s: %s",
                 f.step == SPAWN_CHDIR ? "cannot enter"
                 : f.step == SPAWN_EXEC ? "cannot run"
                 : f.step == SPAWN_LIMITS ? "cannot set the resource limits of"
                 : f.step == SPAWN_IDS ? "cannot change the user of" : "cannot set up",
                 f.step == SPAWN_CHDIR ? opts->cwd : opts->argv[0],
                 strerror(f.err));
        goto out;
    }
    close(out[1]);
    close(errp[1]);
    out[1] = errp[1] = -1;
    p->out.fd = out[0];
    p->err.fd = errp[0];
    out[0] = errp[0] = -1;
    if (fcntl(p->out.fd, F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(p->err.fd, F_SETFL, O_NONBLOCK) < 0 ||
        !(p->out.ev = event_new(pt->base, p->out.fd, EV_READ | EV_PERSIST,
                                stream_on_read, &p->out)) ||
        !(p->err.ev = event_new(pt->base, p->err.fd, EV_READ | EV_PERSIST,
                                stream_on_read, &p->err)) ||
        event_add(p->out.ev, NULL) < 0 || event_add(p->err.ev, NULL) < 0) {
        /* Running but unwatchable: stop it; the reaper frees it. */
        snprintf(err, errlen, "cannot watch the child's output");
        proc_signal_group(p, SIGKILL);
        proc_set_state(p, PS_ABANDONED);
        p->cb = NULL;
        TAILQ_INSERT_TAIL(&pt->live, p, link);
        pt->count++;
        p = NULL;
        goto out;
    }
    if (opts->timeout_ms > 0)
        timer_arm_ms(p->timer, opts->timeout_ms);
    proc_set_state(p, PS_RUNNING);
    TAILQ_INSERT_TAIL(&pt->live, p, link);
    pt->count++;
    log_debug("proc: pid %d started: %s", (int)pid, opts->argv[0]);
    ret = p;
    p = NULL;
    /* It may already have exited; SIGCHLD is queued for the loop anyway. */
out:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (errp[i] >= 0)
            close(errp[i]);
        if (ex[i] >= 0)
            close(ex[i]);
    }
    if (devnull >= 0)
        close(devnull);
    if (p)
        proc_free(p);
    return ret;
}

void proc_kill(struct proc *p)
{
    if (!p || p->state != PS_RUNNING)
        return;
    log_info("proc: pid %d: kill requested; SIGTERM to its group", (int)p->pid);
    p->killed = true;
    proc_signal_group(p, SIGTERM);
    proc_set_state(p, PS_STOPPING);
    evtimer_del(p->timer);
    timer_arm_ms(p->timer, p->grace_ms);
}

void proc_abandon(struct proc *p)
{
    if (!p)
        return;
    switch (p->state) {
    case PS_RUNNING:
    case PS_STOPPING:
        proc_signal_group(p, SIGKILL);
        p->cb = NULL;
        evtimer_del(p->timer);
        proc_set_state(p, PS_ABANDONED);
        return;
    case PS_EXITED:
        /* Reaped, callback not yet run: just drop it. */
        TAILQ_REMOVE(&p->pt->done, p, link);
        p->pt->count--;
        proc_free(p);
        return;
    case PS_DELIVERING:
        p->cb = NULL;   /* freed by the loop once its callback returned */
        return;
    case PS_ABANDONED:
        return;
    }
}

pid_t proc_pid(const struct proc *p)
{
    return p ? p->pid : -1;
}

unsigned proc_table_count(const struct proc_table *pt)
{
    return pt ? pt->count : 0;
}

struct proc_table *proc_table_new(struct event_base *base)
{
    struct proc_table *pt = calloc(1, sizeof *pt);

    if (!pt)
        return NULL;
    pt->base = base;
    TAILQ_INIT(&pt->live);
    TAILQ_INIT(&pt->done);
    TAILQ_INIT(&pt->gone);
    pt->sigchld = evsignal_new(base, SIGCHLD, table_on_sigchld, pt);
    pt->deliver = event_new(base, -1, 0, table_on_deliver, pt);
    if (!pt->sigchld || !pt->deliver || evsignal_add(pt->sigchld, NULL) < 0) {
        log_error("proc: cannot install the SIGCHLD event");
        proc_table_free(pt);
        return NULL;
    }
    return pt;
}

void proc_table_free(struct proc_table *pt)
{
    struct proc *p;

    if (!pt)
        return;
    while ((p = TAILQ_FIRST(&pt->live))) {
        int status;

        TAILQ_REMOVE(&pt->live, p, link);
        if (p->state == PS_ABANDONED)
            log_debug("proc: reaping abandoned pid %d at shutdown", (int)p->pid);
        else
            log_warn("proc: pid %d still running at shutdown; killing its group",
                     (int)p->pid);
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
            ;
        proc_free(p);
    }
    while ((p = TAILQ_FIRST(&pt->done))) {
        TAILQ_REMOVE(&pt->done, p, link);
        proc_free(p);
    }
    /* Delivered, waiting for a loop turn that will not come. */
    while ((p = TAILQ_FIRST(&pt->gone)) && reap_now(&p->reap))
        ;
    if (pt->sigchld)
        event_free(pt->sigchld);
    if (pt->deliver)
        event_free(pt->deliver);
    free(pt);
}

int proc_stat_read(pid_t pid, char *state, int *pgrp)
{
    char path[64], buf[512];
    const char *close_paren;
    char st;
    int group;
    FILE *f;
    size_t len;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "re")))
        return -1;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'. */
    if (!(close_paren = strrchr(buf, ')')) ||
        sscanf(close_paren + 1, " %c %*d %d", &st, &group) != 2) {
        errno = EINVAL;
        return -1;
    }
    if (state)
        *state = st;
    if (pgrp)
        *pgrp = group;
    return 0;
}
