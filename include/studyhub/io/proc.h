/* proc: supervised child processes on the event loop.
 *
 * A child runs in a process group of its own (so a timeout or proc_kill
 * reaches everything it started), with stdin on /dev/null, every other
 * descriptor above 2 closed, SIGPIPE and the signal mask reset, and
 * PR_SET_PDEATHSIG so it dies with the server.  Its stdout and stderr are
 * read from the loop into ring buffers that keep only the last tail_bytes
 * of each: output is bounded whatever the child writes.
 *
 * Exits are noticed through SIGCHLD as a libevent signal event and reaped
 * with waitpid(pid, WNOHANG) for each child of the table (never a stray
 * waitpid(-1) that would steal another module's child).  The callback runs
 * from the loop, exactly once per spawned child, after the handle's own
 * event handlers have returned; the handle is freed right after the
 * callback returns.  When the leader exits, stray members of its group are
 * killed (SIGKILL) so nothing it started outlives it.
 *
 * One proc_table per process (SIGCHLD is process-wide): app->procs. */
#ifndef STUDYHUB_IO_PROC_H
#define STUDYHUB_IO_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct event_base;
struct proc_table;
struct proc;

#define PROC_TAIL_DEFAULT (64 * 1024)   /* bytes kept of each stream */
#define PROC_GRACE_DEFAULT_MS 5000      /* SIGTERM -> SIGKILL */

/* A resource limit set in the child before exec (setrlimit: soft and hard
 * both, so the child cannot raise it again). */
struct proc_rlimit {
    int resource;             /* RLIMIT_*; -1 ends a list */
    unsigned long long value; /* the limit */
};

struct proc_opts {
    const char *const *argv;  /* borrowed, NULL-terminated; argv[0] is
                                 looked up in PATH when it has no '/' */
    const char *const *envp;  /* borrowed, NULL-terminated "K=V"; NULL:
                                 the server's environment */
    const char *cwd;          /* borrowed; NULL: the server's */
    long timeout_ms;          /* 0: none; then SIGTERM to the group */
    long grace_ms;            /* SIGTERM -> SIGKILL; 0: PROC_GRACE_DEFAULT_MS */
    size_t tail_bytes;        /* kept of each stream; 0: PROC_TAIL_DEFAULT */
    const struct proc_rlimit *rlimits; /* borrowed, ended by resource -1;
                                 NULL: none */
    bool set_ids;             /* run as uid/gid with no supplementary
                                 groups (the server must be root) */
    unsigned uid, gid;        /* with set_ids */
};

/* What the exit callback is given; everything is borrowed for the length
 * of the callback (copy what you keep). */
struct proc_result {
    pid_t pid;
    int exit_code;            /* 0..255 when it exited, else -1 */
    int term_signal;          /* the signal that ended it, else 0 */
    bool timed_out;           /* our timeout fired (then killed) */
    bool killed;              /* proc_kill was called */
    double duration_s;        /* spawn to reap, monotonic */
    const char *out;          /* tail of stdout as text: NUL-terminated,
                                 invalid UTF-8 and NUL bytes replaced */
    size_t out_len;           /* strlen(out) */
    size_t out_total;         /* bytes the child wrote to stdout */
    const char *err;          /* tail of stderr, as out */
    size_t err_len;
    size_t err_total;
};

/* ok: exited with status 0, no timeout, no kill. */
static inline bool proc_result_ok(const struct proc_result *r)
{
    return r->exit_code == 0 && !r->timed_out && !r->killed;
}
/* "exit 3", "killed by signal 9", "timed out after 2.0 s", ... */
void proc_result_describe(const struct proc_result *r, char *buf, size_t len);

typedef void (*proc_cb)(const struct proc_result *r, void *arg);

/* Installs the SIGCHLD event.  NULL on failure. */
struct proc_table *proc_table_new(struct event_base *base);
/* Kills every remaining child's group with SIGKILL and reaps it (a short
 * blocking wait at shutdown only); their callbacks are NOT called: owners
 * must have stopped first. */
void proc_table_free(struct proc_table *pt);

/* Forks and execs.  Returns the handle (owned by the table; valid until
 * the callback returns), or NULL with a message in err when the child
 * could not be started (no such program, bad cwd, ...): then cb is never
 * called.  Never calls cb before returning. */
struct proc *proc_spawn(struct proc_table *pt, const struct proc_opts *opts,
                        proc_cb cb, void *arg, char *err, size_t errlen);

/* SIGTERM to the whole group now, SIGKILL after the grace; the callback
 * still comes, with killed set.  Safe to call again or after the exit
 * (before the callback). */
void proc_kill(struct proc *p);
/* For an owner going away: kill the group (SIGKILL) and never call back. */
void proc_abandon(struct proc *p);

pid_t proc_pid(const struct proc *p);
unsigned proc_table_count(const struct proc_table *pt);

/* Of any process of this pid namespace, from /proc/<pid>/stat: its state
 * letter (R, S, D, Z, X...) and process group.  Returns 0, or -1 with
 * errno (ENOENT: no such process).  Either out may be NULL. */
int proc_stat_read(pid_t pid, char *state, int *pgrp);

/* ---- the bounded tail, exposed for tests and for other bounded logs --- */

/* Keeps the last cap bytes written to it (and counts all of them). */
struct proc_tail {
    char *buf;        /* owned, cap bytes */
    size_t cap;       /* capacity */
    size_t len;       /* bytes held, <= cap */
    size_t start;     /* index of the oldest byte held */
    size_t total;     /* bytes ever appended */
};

int proc_tail_init(struct proc_tail *t, size_t cap);
void proc_tail_cleanup(struct proc_tail *t);
void proc_tail_append(struct proc_tail *t, const void *data, size_t n);
/* Copies the held bytes in order into dst (at least t->len bytes). */
void proc_tail_copy(const struct proc_tail *t, char *dst);
/* A malloc'd NUL-terminated text of the held bytes with invalid UTF-8
 * sequences (a split first character, binary output) and NUL bytes
 * replaced by '?', so it can go into JSON and PostgreSQL text.  NULL on
 * allocation failure. */
char *proc_tail_text(const struct proc_tail *t, size_t *len_out);
/* The same cleaning for any buffer (in place; returns the new length,
 * never longer). */
size_t proc_clean_text(char *s, size_t len);

#endif
