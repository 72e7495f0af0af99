/* pg: a pool of non-blocking libpq connections, each one a small state
 * machine driven by libevent; queries wait in a FIFO for a free connection.
 *
 * Host names are NOT resolved off the loop: libpq resolves them
 * synchronously inside PQconnectStart, which would block every request.
 * Give numeric addresses (host=127.0.0.1, hostaddr=..., or a Unix socket
 * directory); pg_pool_new logs a warning when it sees a name.
 *
 * Callbacks run only from pool_on_deliver (an event made active when a
 * query finishes) and from pg_pool_free, never from pg_exec or from the
 * middle of a connection's I/O handling, so a callback may call pg_exec or
 * even pg_pool_free safely: the pool is held (core/reap) while callbacks
 * run, and one freed under them goes on a later loop turn.
 *
 * Group commit (pg_exec_grouped): a connection that frees while grouped
 * writes wait takes up to group_max of them and sends them in pipeline
 * mode behind one Sync, so they run as one implicit transaction with one
 * commit (one WAL flush) and one round trip.  Their callbacks run once the
 * Sync's result says it committed.  A group with any failure was rolled
 * back whole; its queries then run again one by one on the same
 * connection (conn->line), each for its own outcome. */
#include "studyhub/io/pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "studyhub/core/log.h"
#include "studyhub/core/reap.h"
#include "studyhub/core/util.h"

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define PG_CONNECT_TIMEOUT_MS 5000  /* when conninfo sets no connect_timeout */
/* A query's deadline is statement_timeout plus this: a live server ends a
 * slow statement itself first, with an error and the session intact. */
#define PG_QUERY_GRACE_MS 1000
/* Grouped writes per transaction at most, unless set.  pgbench on 2 cores, 20 KB
 * UPDATEs of distinct rows: 8 per commit gave 1.4x the rows a second of
 * one per commit; 16 gave no more. */
#define PG_GROUP_MAX_DEFAULT 8
#define PG_GROUP_MAX_LIMIT 64

/* Where a connection is.  The query in flight (conn->q) is set exactly in
 * PGC_PREPARE and PGC_QUERY. */
enum pg_conn_state {
    PGC_WAIT,        /* no PGconn; backoff timer armed before the next try */
    PGC_CONNECTING,  /* PQconnectPoll in progress; connect deadline armed */
    PGC_IDLE,        /* ready; read event armed to notice a dead server */
    PGC_PREPARE,     /* PQsendPrepare for conn->q sent, awaiting its result */
    PGC_QUERY,       /* PQsendQueryPrepared for conn->q sent, awaiting results */
    PGC_GROUP,       /* a group's pipeline and Sync sent (conn->line), awaiting results */
};

/* The connection timer means one thing per state: backoff (WAIT), connect
 * deadline (CONNECTING), or the query's deadline (PREPARE, QUERY). */

static const char *const pg_conn_state_names[] = {
    [PGC_WAIT] = "wait",
    [PGC_CONNECTING] = "connecting",
    [PGC_IDLE] = "idle",
    [PGC_PREPARE] = "prepare",
    [PGC_QUERY] = "query",
    [PGC_GROUP] = "group",
};

struct pg_query {
    TAILQ_ENTRY(pg_query) link;   /* in pool->waiting, a conn's line, or pool->done */
    const struct pg_stmt *stmt;   /* borrowed: static by contract */
    const char *key;              /* grouped: its order in a group (in this
                                   * allocation); NULL: runs alone */
    int nparams;                  /* entries in params */
    const char **params;          /* owned: points into this allocation */
    pg_cb cb;                     /* borrowed: called exactly once */
    void *arg;                    /* borrowed: the caller's */
    int64_t deadline_us;          /* monotonic; fail if still waiting then */
    int64_t sent_us;              /* monotonic; when a connection took it */
    PGresult *res;                /* owned: result to deliver; NULL = failure */
};

TAILQ_HEAD(pg_query_list, pg_query);

struct pg_conn {
    struct pg_pool *pool;             /* borrowed: the owner */
    int id;                           /* index in pool->conns, for logs */
    enum pg_conn_state state;         /* see enum pg_conn_state */
    PGconn *pg;                       /* owned; NULL in PGC_WAIT */
    struct event *ev_io;              /* owned: socket watch, re-assigned per fd */
    bool io_added;                    /* ev_io is pending */
    int io_fd;                        /* fd ev_io was assigned for */
    short io_what;                    /* EV_READ/EV_WRITE ev_io was assigned for */
    bool flushing;                    /* PQflush returned 1: wait for writable */
    struct event *ev_timer;           /* owned: backoff (WAIT) or connect deadline */
    int backoff_ms;                   /* next backoff delay */
    int failures;                     /* failed attempts in a row: log the first */
    bool was_up;                      /* has been connected: say "reconnected" */
    const struct pg_stmt **prepared;  /* owned array of borrowed statements
                                       * prepared on this session */
    int nprepared;                    /* used entries of prepared */
    int capprepared;                  /* allocated entries of prepared */
    struct pg_query *q;               /* owned: the query in flight, or NULL */
    struct pg_query_list line;        /* owned: PGC_GROUP: the group in flight,
                                       * in send order; else a failed group's
                                       * queries still to run alone */
    struct pg_query *line_cur;        /* PGC_GROUP: whose results come next */
    bool line_failed;                 /* PGC_GROUP: a result was an error */
    int64_t deadline_ms;              /* the query deadline armed, for the log */
    bool listener;                    /* the pool's LISTEN session, not for queries */
    bool subscribing;                 /* LISTEN sent, its results not all read */
};

/* A channel someone listens on (pg_pool_listen). */
struct pg_listen {
    char channel[64];                 /* a plain identifier */
    pg_notify_fn fn;                  /* borrowed */
    void *arg;                        /* borrowed */
};

struct pg_pool {
    struct event_base *base;          /* borrowed */
    char *conninfo;                   /* owned: expanded as dbname on connect */
    int size;                         /* entries in conns */
    int acquire_timeout_ms;           /* longest wait for a connection */
    int query_timeout_ms;             /* longest run of one query (0: none) */
    int64_t down_since_us;            /* monotonic; when the last connection
                                       * went (or the pool started) with none
                                       * up; 0 while one is up */
    long failed_fast;                 /* queries refused at once while down */
    long timed_out;                   /* queries past query_timeout_ms */
    int group_max;                    /* grouped queries per transaction, at most */
    long grouped;                     /* queries committed in groups */
    long group_retries;               /* groups rolled back and run alone */
    char options[64];                 /* "-c statement_timeout=N" */
    int connect_timeout_ms;           /* longest PQconnectPoll sequence */
    struct pg_conn *conns;            /* owned array */
    struct pg_query_list waiting;     /* owned: queries waiting, FIFO */
    int nwaiting;                     /* entries in waiting */
    struct pg_query_list done;        /* owned: queries whose callback is due */
    struct event *ev_acquire;         /* owned: acquire-timeout timer */
    struct event *ev_deliver;         /* owned: runs callbacks from the loop */
    struct reap reap;                 /* held while callbacks run */
    bool dying;                       /* pg_pool_free ran: refuse new queries */
    struct pg_conn *listener;         /* owned: LISTEN session, made at first listen */
    struct pg_listen *listens;        /* owned array */
    int nlistens;                     /* entries in listens */
    struct timeval polled_pass;       /* the loop pass of the last poll_notifies */
};

static void conn_on_io(evutil_socket_t fd, short what, void *arg);
static void conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void listener_subscribe(struct pg_conn *c);
static int conn_flush(struct pg_conn *c);
static void conn_start(struct pg_conn *c);
static void conn_run_line(struct pg_conn *c);
static void conn_go_on(struct pg_conn *c);
static void pool_dispatch(struct pg_pool *pool);
static bool pool_any_up(const struct pg_pool *pool);

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void timer_arm_us(struct event *ev, int64_t us)
{
    struct timeval tv;

    if (us < 0)
        us = 0;
    tv.tv_sec = us / 1000000;
    tv.tv_usec = us % 1000000;
    evtimer_add(ev, &tv);
}

/* Server notices (and a FATAL sent to an idle session) would otherwise go
 * to stderr raw and break the JSON log. */
static void on_notice(void *arg, const PGresult *res)
{
    struct pg_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char msg[512];

    util_one_line(msg, sizeof msg, PQresultErrorMessage(res));
    if (sev && (!strcmp(sev, "WARNING") || !strcmp(sev, "ERROR") ||
                !strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
        log_warn("pg: conn %d: %s", c->id, msg);
    else
        log_debug("pg: conn %d: %s", c->id, msg);
}

/* ---- queries ---------------------------------------------------------- */

/* One allocation holds the query, its parameter pointers and their text. */
static struct pg_query *query_new(const struct pg_stmt *stmt, int nparams,
                                  const char *const *params, const char *key,
                                  pg_cb cb, void *arg)
{
    size_t size = sizeof(struct pg_query) + (size_t)nparams * sizeof(char *);
    struct pg_query *q;
    char *text;

    for (int i = 0; i < nparams; i++)
        if (params && params[i])
            size += strlen(params[i]) + 1;
    if (key)
        size += strlen(key) + 1;
    q = calloc(1, size);
    if (!q)
        return NULL;
    q->stmt = stmt;
    q->nparams = nparams;
    q->params = (const char **)(q + 1);
    q->cb = cb;
    q->arg = arg;
    text = (char *)(q->params + nparams);
    for (int i = 0; i < nparams; i++) {
        if (!params || !params[i]) {
            q->params[i] = NULL;    /* SQL NULL */
            continue;
        }
        size_t len = strlen(params[i]) + 1;
        memcpy(text, params[i], len);
        q->params[i] = text;
        text += len;
    }
    if (key) {
        memcpy(text, key, strlen(key) + 1);
        q->key = text;
    }
    return q;
}

/* Calls the callback once, then frees what the pool owned. */
static void query_finish(struct pg_query *q)
{
    if (q->cb)
        q->cb(q->res, q->arg);
    PQclear(q->res);
    free(q);
}

/* Hands a finished query to the deliver event: the callback must not run
 * with a connection's I/O handler (or pg_exec) on the stack. */
static void pool_complete(struct pg_pool *pool, struct pg_query *q,
                          PGresult *res)
{
    q->res = res;
    TAILQ_INSERT_TAIL(&pool->done, q, link);
    event_active(pool->ev_deliver, EV_TIMEOUT, 1);
}

/* ---- connections ------------------------------------------------------ */

static void conn_set_state(struct pg_conn *c, enum pg_conn_state state)
{
    /* Connection changes only: a line per query would drown the log. */
    if (c->state != state && (c->state < PGC_IDLE || state < PGC_IDLE))
        log_debug("pg: conn %d %s -> %s", c->id,
                  pg_conn_state_names[c->state], pg_conn_state_names[state]);
    c->state = state;
}

static bool conn_is_up(const struct pg_conn *c)
{
    return c->state == PGC_IDLE || c->state == PGC_PREPARE ||
           c->state == PGC_QUERY || c->state == PGC_GROUP;
}

static bool conn_busy(const struct pg_conn *c)
{
    return c->state == PGC_PREPARE || c->state == PGC_QUERY || c->state == PGC_GROUP;
}

/* Points ev_io at the connection's socket.  force re-adds it even if fd
 * and events look unchanged: during connect libpq may close its socket and
 * open another that gets the same number, which epoll would not watch. */
static int conn_watch(struct pg_conn *c, short what, bool force)
{
    int fd = PQsocket(c->pg);

    if (fd < 0)
        return -1;
    if (c->io_added && !force && c->io_fd == fd && c->io_what == what)
        return 0;
    if (c->io_added)
        event_del(c->ev_io);
    c->io_added = false;
    event_assign(c->ev_io, c->pool->base, fd, what | EV_PERSIST, conn_on_io, c);
    if (event_add(c->ev_io, NULL) < 0)
        return -1;
    c->io_added = true;
    c->io_fd = fd;
    c->io_what = what;
    return 0;
}

static void conn_unwatch(struct pg_conn *c)
{
    if (c->io_added)
        event_del(c->ev_io);
    c->io_added = false;
    c->flushing = false;
}

/* Closes the session (prepared statements die with it) and schedules the
 * next attempt.  A query in flight is answered NULL: it may or may not have
 * run, and only the caller can decide whether to retry. */
static void conn_lost(struct pg_conn *c, const char *why)
{
    struct pg_pool *pool = c->pool;
    char msg[512];
    bool was_up = conn_is_up(c);

    /* PQfinish frees the error message: copy it first. */
    util_one_line(msg, sizeof msg, why ? why : c->pg ? PQerrorMessage(c->pg) : NULL);
    if (was_up)
        log_warn("pg: conn %d lost: %s", c->id, msg);
    else if (c->failures++ == 0)
        log_warn("pg: conn %d cannot connect: %s", c->id, msg);
    else
        log_debug("pg: conn %d cannot connect: %s", c->id, msg);

    if (c->q) {
        struct pg_query *q = c->q;

        c->q = NULL;
        PQclear(q->res);
        q->res = NULL;
        pool_complete(pool, q, NULL);
    }
    for (struct pg_query *q; (q = TAILQ_FIRST(&c->line));) {
        TAILQ_REMOVE(&c->line, q, link);
        PQclear(q->res);
        q->res = NULL;
        pool_complete(pool, q, NULL);
    }
    c->line_cur = NULL;
    conn_unwatch(c);
    evtimer_del(c->ev_timer);
    PQfinish(c->pg);
    c->pg = NULL;
    c->nprepared = 0;
    conn_set_state(c, PGC_WAIT);
    if (was_up && !c->listener && !pool_any_up(pool) && !pool->down_since_us)
        pool->down_since_us = now_us();
    if (was_up) {
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        c->failures = 1;    /* "lost" said it: later failures go to debug */
    }
    timer_arm_us(c->ev_timer, (int64_t)c->backoff_ms * 1000);
    c->backoff_ms *= 2;
    if (c->backoff_ms > PG_BACKOFF_MAX_MS)
        c->backoff_ms = PG_BACKOFF_MAX_MS;
}

static void conn_ready(struct pg_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_lost(c, NULL);
        return;
    }
    evtimer_del(c->ev_timer);
    conn_set_state(c, PGC_IDLE);
    if (conn_watch(c, EV_READ, true) < 0) {
        conn_lost(c, "cannot watch the socket");
        return;
    }
    if (c->was_up || c->failures > 0)
        log_info("pg: conn %d reconnected", c->id);
    else
        log_debug("pg: conn %d connected", c->id);
    c->was_up = true;
    c->failures = 0;
    c->backoff_ms = PG_BACKOFF_MIN_MS;
    if (!c->listener)
        c->pool->down_since_us = 0;
    if (c->listener) {
        listener_subscribe(c);
        return;
    }
    pool_dispatch(c->pool);
}

/* One step of PQconnectPoll; re-arms the socket for what libpq asks. */
static void conn_poll_connect(struct pg_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, EV_READ, true) < 0)
            conn_lost(c, NULL);
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, EV_WRITE, true) < 0)
            conn_lost(c, NULL);
        return;
    case PGRES_POLLING_OK:
        conn_ready(c);
        return;
    default:
        conn_lost(c, NULL);
        return;
    }
}

static void conn_start(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    /* Our defaults come before the expanded conninfo, so it overrides them. */
    static const char *const keys[] = {
        "gssencmode", "application_name", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "options", "dbname", NULL,
    };
    const char *vals[] = {
        "disable", "studyhub", "30", "10", "3", pool->options, pool->conninfo,
        NULL,
    };

    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg) {
        conn_lost(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, NULL);
        return;
    }
    PQsetNoticeReceiver(c->pg, on_notice, c);
    conn_set_state(c, PGC_CONNECTING);
    /* PQconnectPoll ignores connect_timeout: enforce it ourselves. */
    timer_arm_us(c->ev_timer, (int64_t)pool->connect_timeout_ms * 1000);
    /* libpq: before the first PQconnectPoll, wait for writable. */
    if (conn_watch(c, EV_WRITE, true) < 0)
        conn_lost(c, NULL);
}

static bool conn_has_prepared(const struct pg_conn *c, const struct pg_stmt *s)
{
    for (int i = 0; i < c->nprepared; i++)
        if (c->prepared[i] == s)
            return true;
    return false;
}

static int conn_remember(struct pg_conn *c, const struct pg_stmt *s)
{
    if (c->nprepared == c->capprepared) {
        int cap = c->capprepared ? c->capprepared * 2 : 16;
        const struct pg_stmt **p = realloc(c->prepared, (size_t)cap * sizeof *p);

        if (!p)
            return -1;
        c->prepared = p;
        c->capprepared = cap;
    }
    c->prepared[c->nprepared++] = s;
    return 0;
}

/* Pushes libpq's output buffer; watch writable while it is not empty. */
static int conn_flush(struct pg_conn *c)
{
    int r = PQflush(c->pg);

    if (r < 0)
        return -1;
    c->flushing = r == 1;
    return conn_watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, false);
}

/* Sends c->q: its PREPARE the first time this session sees the statement,
 * else the execution. */
static int conn_send(struct pg_conn *c)
{
    const struct pg_stmt *s = c->q->stmt;

    if (!conn_has_prepared(c, s)) {
        if (!PQsendPrepare(c->pg, s->name, s->sql, 0, NULL))
            return -1;
        conn_set_state(c, PGC_PREPARE);
    } else {
        if (!PQsendQueryPrepared(c->pg, s->name, c->q->nparams, c->q->params,
                                 NULL, NULL, 0))
            return -1;
        conn_set_state(c, PGC_QUERY);
    }
    return conn_flush(c);
}

/* PQgetResult returned NULL: the command on the wire is complete. */
static void conn_command_done(struct pg_conn *c)
{
    struct pg_query *q = c->q;
    PGresult *res = q->res;

    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED)
                          : NULL;

    /* A result libpq made up for a broken socket, or the FATAL of a server
     * ending the session, means "no connection" to the caller. */
    if (PQstatus(c->pg) == CONNECTION_BAD || !res ||
        (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))) {
        char msg[512];

        util_one_line(msg, sizeof msg,
                     res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
        conn_lost(c, msg);
        return;
    }
    if (c->state == PGC_PREPARE && pg_ok(res)) {
        PQclear(res);
        q->res = NULL;
        if (conn_remember(c, q->stmt) < 0 || conn_send(c) < 0)
            conn_lost(c, NULL);
        return;
    }
    /* The query's result, or the SQL error its PREPARE got. */
    c->q = NULL;
    q->res = NULL;
    pool_complete(c->pool, q, res);
    evtimer_del(c->ev_timer);
    conn_set_state(c, PGC_IDLE);
    conn_go_on(c);
}

/* c is idle again: a rolled-back group's next query, or the waiting ones. */
static void conn_go_on(struct pg_conn *c)
{
    if (conn_watch(c, EV_READ, false) < 0) {
        conn_lost(c, "cannot watch the socket");
        return;
    }
    if (!TAILQ_EMPTY(&c->line)) {
        conn_run_line(c);
        return;
    }
    pool_dispatch(c->pool);
}

/* ---- groups ------------------------------------------------------------ */

static void conn_arm_deadline(struct pg_conn *c, int queries)
{
    struct pg_pool *pool = c->pool;

    /* statement_timeout ends each statement of a group on a live server. */
    if (pool->query_timeout_ms > 0) {
        c->deadline_ms = (int64_t)pool->query_timeout_ms * queries + PG_QUERY_GRACE_MS;
        timer_arm_us(c->ev_timer, c->deadline_ms * 1000);
    }
}

/* The next query of a rolled-back group, alone. */
static void conn_run_line(struct pg_conn *c)
{
    struct pg_query *q = TAILQ_FIRST(&c->line);

    TAILQ_REMOVE(&c->line, q, link);
    c->q = q;
    if (conn_send(c) < 0) {
        conn_lost(c, NULL);
        return;
    }
    conn_arm_deadline(c, 1);
}

/* Takes a group for idle c from the waiting queries: the grouped ones
 * whose statement c has prepared (the rest wait for the next connection),
 * when the oldest waiting query is one,
 * at most pool->group_max, into c->line in key order (equal keys in arrival
 * order, so the last write of a row stays last).  Returns how many; none
 * when fewer than two qualify: a lone query goes the plain way. */
static int conn_take_group(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    struct pg_query *q, *next;
    int n = 0;

    /* Only behind a grouped head: a plain query never waits for groups. */
    q = TAILQ_FIRST(&pool->waiting);
    if (!q || !q->key || !conn_has_prepared(c, q->stmt))
        return 0;
    TAILQ_FOREACH(q, &pool->waiting, link) {
        if (q->key && conn_has_prepared(c, q->stmt) && ++n == pool->group_max)
            break;
    }
    if (n < 2)
        return 0;   /* also when group_max is 1 */
    n = 0;
    for (q = TAILQ_FIRST(&pool->waiting); q && n < pool->group_max; q = next) {
        next = TAILQ_NEXT(q, link);
        if (!q->key || !conn_has_prepared(c, q->stmt))
            continue;
        TAILQ_REMOVE(&pool->waiting, q, link);
        pool->nwaiting--;
        struct pg_query *at = TAILQ_LAST(&c->line, pg_query_list);
        while (at && strcmp(at->key, q->key) > 0)
            at = TAILQ_PREV(at, pg_query_list, link);
        if (at)
            TAILQ_INSERT_AFTER(&c->line, at, q, link);
        else
            TAILQ_INSERT_HEAD(&c->line, q, link);
        n++;
    }
    return n;
}

/* Sends c->line as one pipeline behind one Sync: one implicit transaction. */
static int conn_send_group(struct pg_conn *c)
{
    struct pg_query *q;

    if (!PQenterPipelineMode(c->pg))
        return -1;
    TAILQ_FOREACH(q, &c->line, link) {
        if (!PQsendQueryPrepared(c->pg, q->stmt->name, q->nparams, q->params,
                                 NULL, NULL, 0))
            return -1;
    }
    if (!PQpipelineSync(c->pg))
        return -1;
    c->line_cur = TAILQ_FIRST(&c->line);
    c->line_failed = false;
    conn_set_state(c, PGC_GROUP);
    return conn_flush(c);
}

/* The group's Sync result is in: it committed, and each query gets its
 * result; or it was rolled back, and its queries run again alone. */
static void conn_group_done(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    struct pg_query *q;

    evtimer_del(c->ev_timer);
    c->line_cur = NULL;
    if (!PQexitPipelineMode(c->pg)) {
        conn_lost(c, NULL);
        return;
    }
    conn_set_state(c, PGC_IDLE);
    if (c->line_failed) {
        char why[256] = "";

        TAILQ_FOREACH(q, &c->line, link) {
            if (q->res && PQresultStatus(q->res) == PGRES_FATAL_ERROR && !why[0])
                util_one_line(why, sizeof why, PQresultErrorMessage(q->res));
            PQclear(q->res);
            q->res = NULL;
        }
        pool->group_retries++;
        log_debug("pg: conn %d: a group was rolled back (%s); its queries run alone",
                  c->id, why);
    } else {
        while ((q = TAILQ_FIRST(&c->line))) {
            TAILQ_REMOVE(&c->line, q, link);
            PGresult *res = q->res;
            q->res = NULL;
            pool->grouped++;
            pool_complete(pool, q, res);
        }
    }
    conn_go_on(c);
}

/* Reads a group's results: each query's, a NULL after each, then the
 * Sync's (PGRES_PIPELINE_SYNC).  After an error the rest are
 * PGRES_PIPELINE_ABORTED and nothing of the group was kept. */
static void conn_read_group(struct pg_conn *c)
{
    while (!PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);

        if (!res) {
            if (c->line_cur)
                c->line_cur = TAILQ_NEXT(c->line_cur, link);
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            conn_group_done(c);
            return;
        }
        if (!pg_ok(res)) {
            const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

            if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"))) {
                char msg[512];

                util_one_line(msg, sizeof msg, PQresultErrorMessage(res));
                PQclear(res);
                conn_lost(c, msg);
                return;
            }
            c->line_failed = true;
        }
        if (c->line_cur) {
            PQclear(c->line_cur->res);
            c->line_cur->res = res;
        } else {
            PQclear(res);
        }
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        conn_lost(c, NULL);
}

/* Sends one LISTEN per channel (simple protocol: several statements). */
static void listener_subscribe(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    char sql[64 * 16 + 16 * 12];
    size_t used = 0;

    sql[0] = '\0';
    for (int i = 0; i < pool->nlistens && used < sizeof sql; i++)
        used += (size_t)snprintf(sql + used, sizeof sql - used, "LISTEN %s;",
                                 pool->listens[i].channel);
    if (!PQsendQuery(c->pg, sql) || conn_flush(c) < 0) {
        conn_lost(c, NULL);
        return;
    }
    c->subscribing = true;
}

/* The listener's socket is readable: results of LISTEN, notifications. */
static void listener_on_io(struct pg_conn *c, short what)
{
    struct pg_pool *pool = c->pool;
    PGnotify *n;

    if (((what & EV_READ) && !PQconsumeInput(c->pg)) ||
        PQstatus(c->pg) == CONNECTION_BAD ||
        ((what & EV_WRITE) && c->flushing && conn_flush(c) < 0)) {
        conn_lost(c, NULL);
        return;
    }
    while (c->subscribing && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);

        if (res) {
            if (!pg_ok(res)) {
                char msg[512];
                util_one_line(msg, sizeof msg, PQresultErrorMessage(res));
                PQclear(res);
                conn_lost(c, msg);
                return;
            }
            PQclear(res);
            continue;
        }
        /* Subscribed: whatever changed while we were not is unknown, so
         * every listener hears "resync" (payload NULL). */
        c->subscribing = false;
        for (int i = 0; i < pool->nlistens; i++)
            pool->listens[i].fn(pool->listens[i].channel, NULL, pool->listens[i].arg);
    }
    while ((n = PQnotifies(c->pg))) {
        for (int i = 0; i < pool->nlistens; i++)
            if (strcmp(pool->listens[i].channel, n->relname) == 0)
                pool->listens[i].fn(n->relname, n->extra, pool->listens[i].arg);
        PQfreemem(n);
    }
}

static void conn_drain_notifies(struct pg_conn *c)
{
    PGnotify *n;

    /* Nothing LISTENs on pool sessions; drop strays so they do not pile up. */
    while ((n = PQnotifies(c->pg)))
        PQfreemem(n);
}

/* A busy connection's socket is ready: reads what came, then flushes
 * what was pending (libpq: after reading, flush again).  False when the
 * session was lost. */
static bool conn_pump(struct pg_conn *c, short what)
{
    if (((what & EV_READ) && !PQconsumeInput(c->pg)) ||
        (c->flushing && conn_flush(c) < 0)) {
        conn_lost(c, NULL);
        return false;
    }
    conn_drain_notifies(c);
    return true;
}

static void conn_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *c = arg;

    switch (c->state) {
    case PGC_CONNECTING:
        conn_poll_connect(c);
        return;
    case PGC_IDLE:
        if (c->listener) {
            listener_on_io(c, what);
            return;
        }
        /* Only EOF or a FATAL from a stopping server is expected here. */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
            conn_lost(c, NULL);
            return;
        }
        conn_drain_notifies(c);
        return;
    case PGC_PREPARE:
    case PGC_QUERY:
        if (!conn_pump(c, what))
            return;
        while (!PQisBusy(c->pg)) {
            PGresult *res = PQgetResult(c->pg);

            if (!res) {
                conn_command_done(c);
                return;
            }
            /* One statement gives one result; keep the last (an error). */
            PQclear(c->q->res);
            c->q->res = res;
        }
        if (PQstatus(c->pg) == CONNECTION_BAD)
            conn_lost(c, NULL);
        return;
    case PGC_GROUP:
        if (conn_pump(c, what))
            conn_read_group(c);
        return;
    case PGC_WAIT:
        break;
    }
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *c = arg;

    switch (c->state) {
    case PGC_WAIT:
        conn_start(c);
        return;
    case PGC_CONNECTING:
        conn_lost(c, "connect timeout");
        return;
    case PGC_PREPARE:
    case PGC_QUERY:
    case PGC_GROUP: {
        /* statement_timeout would have ended a slow query by now with an
         * error on a live server; silence means the server or the path to
         * it is stalled.  libpq 15's PQcancel blocks (it connects and waits
         * for the server), so the session is dropped instead: the caller
         * gets NULL (503) and the connection is opened anew. */
        char why[96];

        struct pg_pool *pool = c->pool;

        pool->timed_out++;
        const struct pg_query *late = c->q ? c->q : TAILQ_FIRST(&c->line);

        snprintf(why, sizeof why, "query %s had no answer in %lld ms",
                 late ? late->stmt->name : "?", (long long)c->deadline_ms);
        conn_lost(c, why);
        /* A stalled server stalls every session: the idle ones would take
         * the next queries and hang them too.  Open them anew instead;
         * once none is up for an acquire timeout, the circuit opens. */
        for (int i = 0; i < pool->size; i++)
            if (pool->conns[i].state == PGC_IDLE)
                conn_lost(&pool->conns[i], "dropped: the server stalled another session");
        return;
    }
    default:
        return;
    }
}

/* Unhooks everything the connection owns; its query must be taken first. */
static void conn_close(struct pg_conn *c)
{
    conn_unwatch(c);
    if (c->ev_io)
        event_free(c->ev_io);
    if (c->ev_timer)
        event_free(c->ev_timer);
    c->ev_io = c->ev_timer = NULL;
    PQfinish(c->pg);
    c->pg = NULL;
    free(c->prepared);
    c->prepared = NULL;
    c->nprepared = c->capprepared = 0;
}

/* ---- the pool --------------------------------------------------------- */

/* Gives waiting queries to idle connections, oldest first. */
static void pool_dispatch(struct pg_pool *pool)
{
    for (int i = 0; i < pool->size && !TAILQ_EMPTY(&pool->waiting); i++) {
        struct pg_conn *c = &pool->conns[i];
        struct pg_query *q;

        if (c->state != PGC_IDLE)
            continue;
        int grouped = conn_take_group(c);
        if (grouped > 0) {
            if (conn_send_group(c) < 0) {
                /* Nothing is kept of a pipeline the session lost. */
                conn_lost(c, NULL);
                continue;
            }
            conn_arm_deadline(c, grouped);
            continue;
        }
        q = TAILQ_FIRST(&pool->waiting);
        TAILQ_REMOVE(&pool->waiting, q, link);
        pool->nwaiting--;
        c->q = q;
        if (conn_send(c) < 0) {
            /* Nothing reached the server: put it back for another one. */
            c->q = NULL;
            TAILQ_INSERT_HEAD(&pool->waiting, q, link);
            pool->nwaiting++;
            conn_lost(c, NULL);
            continue;
        }
        conn_arm_deadline(c, 1);
    }
}

static bool pool_any_up(const struct pg_pool *pool)
{
    for (int i = 0; i < pool->size; i++)
        if (conn_is_up(&pool->conns[i]))
            return true;
    return false;
}

/* The circuit: PostgreSQL counts as known down once no connection has been
 * up for a whole acquire timeout.  Queries then fail at once instead of
 * each waiting out the timeout; every reconnect attempt (at most
 * PG_BACKOFF_MAX_MS apart) is the probe that closes the circuit again. */
static bool pool_known_down(const struct pg_pool *pool)
{
    return pool->down_since_us != 0 &&
           now_us() - pool->down_since_us >= (int64_t)pool->acquire_timeout_ms * 1000;
}

/* Fails queries that waited too long; they are at the head (FIFO, one
 * timeout for all), so the timer only ever needs the head's deadline. */
static void pool_on_acquire_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_pool *pool = arg;
    int64_t now = now_us();
    struct pg_query *q;
    int failed = 0;

    while ((q = TAILQ_FIRST(&pool->waiting)) && q->deadline_us <= now) {
        TAILQ_REMOVE(&pool->waiting, q, link);
        pool->nwaiting--;
        pool_complete(pool, q, NULL);
        failed++;
    }
    if (failed)
        log_warn("pg: %d quer%s waited %d ms for a connection; failing",
                 failed, failed == 1 ? "y" : "ies", pool->acquire_timeout_ms);
    if (q)
        timer_arm_us(pool->ev_acquire, q->deadline_us - now);
}

static void pool_destroy(void *arg)
{
    struct pg_pool *pool = arg;

    if (pool->ev_acquire)
        event_free(pool->ev_acquire);
    if (pool->ev_deliver)
        event_free(pool->ev_deliver);
    free(pool->conns);
    free(pool->listener);
    free(pool->listens);
    free(pool->conninfo);
    reap_cleanup(&pool->reap);
    free(pool);
}

static void pool_on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct pg_pool *pool = arg;
    struct pg_query *q;
    /* Only those done now: a steady stream must not starve the loop. */
    struct pg_query *last = TAILQ_LAST(&pool->done, pg_query_list);

    reap_hold(&pool->reap);
    while (last && (q = TAILQ_FIRST(&pool->done))) {
        TAILQ_REMOVE(&pool->done, q, link);
        bool was_last = q == last;
        query_finish(q);    /* may call pg_exec or pg_pool_free */
        if (was_last)
            break;
    }
    if (!pool->dying && !TAILQ_EMPTY(&pool->done))
        event_active(pool->ev_deliver, EV_TIMEOUT, 1);
    /* Freed by pg_pool_free under us: destroyed on a later turn. */
    reap_drop(&pool->reap);
}

/* Reads connect_timeout (seconds; libpq uses at least 2) and warns about
 * host names, which libpq would resolve synchronously on the loop. */
static int pool_check_conninfo(struct pg_pool *pool, const char *conninfo)
{
    PQconninfoOption *opts;
    char *errmsg = NULL;
    const char *host = NULL, *hostaddr = NULL;

    pool->connect_timeout_ms = PG_CONNECT_TIMEOUT_MS;
    opts = PQconninfoParse(conninfo, &errmsg);
    if (!opts) {
        /* A bare word is a database name, which libpq accepts too. */
        if (!strchr(conninfo, '=') && !strstr(conninfo, "://")) {
            PQfreemem(errmsg);
            return 0;
        }
        char msg[256];

        util_one_line(msg, sizeof msg, errmsg);
        log_error("pg: bad DATABASE_URL: %s", msg);
        PQfreemem(errmsg);
        return -1;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "connect_timeout")) {
            int s = atoi(o->val);

            if (s > 0)
                pool->connect_timeout_ms = (s < 2 ? 2 : s) * 1000;
        }
    }
    if (host && !hostaddr) {
        /* Comma-separated: each a socket directory or a numeric address. */
        const char *p = host;

        while (*p) {
            size_t n = strcspn(p, ",");
            char one[256];
            unsigned char addr[sizeof(struct in6_addr)];

            snprintf(one, sizeof one, "%.*s", (int)n, p);
            if (*one && *one != '/' && *one != '@' &&
                inet_pton(AF_INET, one, addr) != 1 &&
                inet_pton(AF_INET6, one, addr) != 1)
                log_warn("pg: host \"%s\" is a name: libpq resolves it "
                         "synchronously and blocks the loop; use a numeric "
                         "address", one);
            p += n;
            if (*p == ',')
                p++;
        }
    }
    PQconninfoFree(opts);
    return 0;
}

struct pg_pool *pg_pool_new(struct event_base *base, const char *conninfo,
                            int size, int acquire_timeout_ms, int query_timeout_ms)
{
    struct pg_pool *pool = NULL;

    if (!base || !conninfo || size < 1 || acquire_timeout_ms < 0 ||
        query_timeout_ms < 0) {
        log_error("pg: bad pool parameters (size %d, acquire timeout %d ms)",
                  size, acquire_timeout_ms);
        goto fail;
    }
    pool = calloc(1, sizeof *pool);
    if (!pool)
        goto fail;
    pool->base = base;
    pool->size = size;
    pool->acquire_timeout_ms = acquire_timeout_ms;
    pool->query_timeout_ms = query_timeout_ms;
    pool->group_max = PG_GROUP_MAX_DEFAULT;
    snprintf(pool->options, sizeof pool->options, "-c statement_timeout=%d",
             query_timeout_ms);
    pool->down_since_us = now_us();     /* until the first connection */
    TAILQ_INIT(&pool->waiting);
    TAILQ_INIT(&pool->done);
    if (reap_init(&pool->reap, base, pool_destroy, pool) < 0 ||
        pool_check_conninfo(pool, conninfo) < 0)
        goto fail;
    pool->conninfo = strdup(conninfo);
    pool->conns = calloc((size_t)size, sizeof *pool->conns);
    pool->ev_acquire = evtimer_new(base, pool_on_acquire_timer, pool);
    pool->ev_deliver = event_new(base, -1, 0, pool_on_deliver, pool);
    if (!pool->conninfo || !pool->conns || !pool->ev_acquire ||
        !pool->ev_deliver)
        goto fail;
    for (int i = 0; i < size; i++) {
        struct pg_conn *c = &pool->conns[i];

        c->pool = pool;
        c->id = i;
        TAILQ_INIT(&c->line);
        c->state = PGC_WAIT;
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        c->io_fd = -1;
        c->ev_io = event_new(base, -1, 0, conn_on_io, c);
        c->ev_timer = evtimer_new(base, conn_on_timer, c);
        if (!c->ev_io || !c->ev_timer)
            goto fail;
    }
    for (int i = 0; i < size; i++)
        conn_start(&pool->conns[i]);
    return pool;

fail:
    if (pool) {
        for (int i = 0; pool->conns && i < size; i++)
            conn_close(&pool->conns[i]);
        pool_destroy(pool);
    }
    return NULL;
}

void pg_pool_free(struct pg_pool *pool)
{
    struct pg_query_list fail;
    struct pg_query *q;

    if (!pool || pool->dying)
        return;
    pool->dying = true;
    TAILQ_INIT(&fail);
    for (int i = 0; i < pool->size; i++) {
        struct pg_conn *c = &pool->conns[i];

        if (c->q) {
            PQclear(c->q->res);
            c->q->res = NULL;
            TAILQ_INSERT_TAIL(&fail, c->q, link);
            c->q = NULL;
        }
        for (struct pg_query *lq; (lq = TAILQ_FIRST(&c->line));) {
            TAILQ_REMOVE(&c->line, lq, link);
            PQclear(lq->res);
            lq->res = NULL;
            TAILQ_INSERT_TAIL(&fail, lq, link);
        }
        conn_close(c);
        c->state = PGC_WAIT;
    }
    if (pool->listener)
        conn_close(pool->listener);
    TAILQ_CONCAT(&fail, &pool->waiting, link);
    pool->nwaiting = 0;
    event_del(pool->ev_acquire);
    event_del(pool->ev_deliver);

    /* Callbacks may look at the pool (pg_exec now returns -1), so it stays
     * allocated until they are done.  Finished ones get their results. */
    reap_hold(&pool->reap);
    while ((q = TAILQ_FIRST(&pool->done))) {
        TAILQ_REMOVE(&pool->done, q, link);
        query_finish(q);
    }
    while ((q = TAILQ_FIRST(&fail))) {
        TAILQ_REMOVE(&fail, q, link);
        query_finish(q);
    }
    reap_drop(&pool->reap);
    /* Now when no callback of it is on the stack; called from one, on a
     * later turn once pool_on_deliver has unwound. */
    reap_release(&pool->reap);
}

static int pool_exec(struct pg_pool *pool, const struct pg_stmt *stmt, int nparams,
                     const char *const *params, const char *key, pg_cb cb, void *arg)
{
    struct pg_query *q;
    bool was_empty;

    if (!pool || pool->dying || !stmt || nparams < 0)
        return -1;
    q = query_new(stmt, nparams, params, key, cb, arg);
    if (!q)
        return -1;
    if (pool_known_down(pool)) {
        pool->failed_fast++;
        pool_complete(pool, q, NULL);   /* delivered from the loop, not here */
        return 0;
    }
    q->deadline_us = now_us() + (int64_t)pool->acquire_timeout_ms * 1000;
    was_empty = TAILQ_EMPTY(&pool->waiting);
    TAILQ_INSERT_TAIL(&pool->waiting, q, link);
    pool->nwaiting++;
    /* A pending timer is for an older head, which expires no later. */
    if (was_empty && !evtimer_pending(pool->ev_acquire, NULL))
        timer_arm_us(pool->ev_acquire, (int64_t)pool->acquire_timeout_ms * 1000);
    pool_dispatch(pool);
    return 0;
}

void pg_pool_set_group_max(struct pg_pool *pool, int n)
{
    if (pool)
        pool->group_max = n < 1 ? 1 : n > PG_GROUP_MAX_LIMIT ? PG_GROUP_MAX_LIMIT : n;
}

int pg_exec(struct pg_pool *pool, const struct pg_stmt *stmt, int nparams,
            const char *const *params, pg_cb cb, void *arg)
{
    return pool_exec(pool, stmt, nparams, params, NULL, cb, arg);
}

int pg_exec_grouped(struct pg_pool *pool, const struct pg_stmt *stmt, int nparams,
                    const char *const *params, const char *key, pg_cb cb, void *arg)
{
    return pool_exec(pool, stmt, nparams, params, key ? key : "", cb, arg);
}

/* One query of a holder's owner in flight. */
struct held_query {
    struct pg_holder *h;          /* borrowed: held by us */
    pg_cb cb;                     /* borrowed: the owner's */
    void *arg;                    /* borrowed */
};

static void held_done(PGresult *res, void *arg)
{
    struct held_query hq = *(struct held_query *)arg;

    free(arg);
    if (!pg_holder_going(hq.h))
        hq.cb(res, hq.arg);
    /* The owner went meanwhile: destroyed on a later turn, not here. */
    reap_drop(&hq.h->reap);
}

int pg_holder_init(struct pg_holder *h, struct event_base *base,
                   void (*destroy)(void *owner), void *owner)
{
    return reap_init(&h->reap, base, destroy, owner);
}

void pg_holder_cleanup(struct pg_holder *h)
{
    reap_cleanup(&h->reap);
}

int pg_exec_held(struct pg_pool *pool, struct pg_holder *h, const struct pg_stmt *stmt,
                 int nparams, const char *const *params, pg_cb cb, void *arg)
{
    struct held_query *hq;

    if (!h || pg_holder_going(h) || !cb || !(hq = malloc(sizeof *hq)))
        return -1;
    *hq = (struct held_query){ h, cb, arg };
    if (pg_exec(pool, stmt, nparams, params, held_done, hq) != 0) {
        free(hq);
        return -1;
    }
    reap_hold(&h->reap);
    return 0;
}

void pg_holder_release(struct pg_holder *h)
{
    reap_release(&h->reap);
}

void pg_pool_stats(const struct pg_pool *pool, struct pg_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!pool)
        return;
    out->size = pool->size;
    out->waiting = pool->nwaiting;
    out->known_down = pool_known_down(pool);
    out->failed_fast = pool->failed_fast;
    out->timed_out = pool->timed_out;
    out->grouped = pool->grouped;
    out->group_retries = pool->group_retries;
    for (int i = 0; i < pool->size; i++) {
        const struct pg_conn *c = &pool->conns[i];

        if (conn_is_up(c))
            out->connected++;
        if (conn_busy(c))
            out->in_use++;
    }
}

bool pg_pool_ready(const struct pg_pool *pool)
{
    for (int i = 0; pool && !pool->dying && i < pool->size; i++)
        if (conn_is_up(&pool->conns[i]))
            return true;
    return false;
}

const char *pg_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return s ? s : "";
}

bool pg_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

static bool channel_ok(const char *ch)
{
    size_t n = 0;
    for (; ch[n]; n++)
        if (!((ch[n] >= 'a' && ch[n] <= 'z') || ch[n] == '_' || (n && ch[n] >= '0' && ch[n] <= '9')))
            return false;
    return n > 0 && n < sizeof(((struct pg_listen *)0)->channel);
}

int pg_pool_listen(struct pg_pool *pool, const char *channel, pg_notify_fn fn, void *arg)
{
    struct pg_listen *l;

    if (!pool || pool->dying || !fn || !channel_ok(channel) || pool->nlistens >= 16)
        return -1;
    l = realloc(pool->listens, (size_t)(pool->nlistens + 1) * sizeof *l);
    if (!l)
        return -1;
    pool->listens = l;
    l = &pool->listens[pool->nlistens++];
    snprintf(l->channel, sizeof l->channel, "%s", channel);
    l->fn = fn;
    l->arg = arg;
    if (!pool->listener) {
        struct pg_conn *c = calloc(1, sizeof *c);
        if (!c)
            goto fail;
        c->pool = pool;
        c->id = pool->size;
        TAILQ_INIT(&c->line);
        c->listener = true;
        c->state = PGC_WAIT;
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        c->io_fd = -1;
        c->ev_io = event_new(pool->base, -1, 0, conn_on_io, c);
        c->ev_timer = evtimer_new(pool->base, conn_on_timer, c);
        pool->listener = c;
        if (!c->ev_io || !c->ev_timer)
            goto fail;
        conn_start(c);
    } else if (pool->listener->state == PGC_IDLE && !pool->listener->subscribing) {
        /* A channel added later: subscribe again (listeners hear a resync). */
        listener_subscribe(pool->listener);
    } else if (pool->listener->state == PGC_IDLE) {
        /* A LISTEN batch is on the wire: drop the session and start over,
         * so the new channel is in the next batch. */
        conn_lost(pool->listener, "new channel");
    }
    return 0;
fail:
    pool->nlistens--;
    return -1;
}

void pg_pool_unlisten(struct pg_pool *pool, const char *channel, pg_notify_fn fn, void *arg)
{
    int kept = 0;

    for (int i = 0; pool && i < pool->nlistens; i++) {
        struct pg_listen *l = &pool->listens[i];

        if (strcmp(l->channel, channel) == 0 && l->fn == fn && l->arg == arg)
            continue;  /* the session stays subscribed: the channel is just not heard */
        pool->listens[kept++] = *l;
    }
    if (pool)
        pool->nlistens = kept;
}

bool pg_pool_listening(const struct pg_pool *pool)
{
    return pool && !pool->dying && pool->listener &&
           pool->listener->state == PGC_IDLE && !pool->listener->subscribing;
}

void pg_pool_poll_notifies(struct pg_pool *pool)
{
    struct pg_conn *c = pool ? pool->listener : NULL;
    struct timeval pass;

    /* Once per loop pass (its cached time names it): every request of a
     * pass was read before its first poll, so a second one (a token and
     * a document cache in one request, or the next request of the batch)
     * would find nothing that arrived before them. */
    if (c && event_base_gettimeofday_cached(pool->base, &pass) == 0) {
        if (timercmp(&pass, &pool->polled_pass, ==))
            return;
        pool->polled_pass = pass;
    }
    /* A read that finds nothing costs one recv; one that finds a
     * notification applies it before the caller trusts its cache. */
    if (c && !pool->dying && c->state == PGC_IDLE)
        listener_on_io(c, EV_READ);
}
