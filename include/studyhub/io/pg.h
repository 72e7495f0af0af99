/* pg: a pool of non-blocking libpq connections driven by the event loop.
 *
 * Every query is a named, parameterised statement (struct pg_stmt) that the
 * pool prepares once per connection.  One query is in flight per
 * connection; the rest wait in a FIFO.  A query that cannot get a
 * connection within the acquire timeout is answered with res == NULL.
 * Lost connections are re-opened with exponential backoff. */
#ifndef STUDYHUB_IO_PG_H
#define STUDYHUB_IO_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "studyhub/core/reap.h"

struct event_base;
struct pg_pool;

/* A statement: declare them static const; name must be unique. */
struct pg_stmt {
    const char *name;
    const char *sql;
};

/* res is owned by the pool and cleared after the callback returns.
 * res == NULL: no connection (PostgreSQL down, or the acquire timeout
 * passed, or the connection broke mid-query): answer 503.
 * Otherwise check PQresultStatus: PGRES_FATAL_ERROR carries a SQLSTATE
 * (PG_DIAG_SQLSTATE), e.g. "23505" for a unique violation. */
typedef void (*pg_cb)(PGresult *res, void *arg);

/* query_timeout_ms (0: none) is each session's statement_timeout; a query
 * with no answer a second after it is taken for a stalled server: its
 * session is dropped and the callback gets NULL.  While no connection has
 * been up for a whole acquire timeout, PostgreSQL is "known down" and
 * queries get NULL at once (from the loop) instead of waiting. */
struct pg_pool *pg_pool_new(struct event_base *base, const char *conninfo,
                            int size, int acquire_timeout_ms, int query_timeout_ms);
/* Fails every waiting query (callbacks get NULL) and closes connections. */
void pg_pool_free(struct pg_pool *pool);

/* Queues a query; params are copied, so they may be freed on return.
 * NULL params mean SQL NULL.  The callback is never called before this
 * function returns.  Returns 0, or -1 on allocation failure. */
int pg_exec(struct pg_pool *pool, const struct pg_stmt *stmt, int nparams,
            const char *const *params, pg_cb cb, void *arg);

/* pg_exec for a short write that may share its transaction, and so its
 * commit, with other grouped writes: when a connection frees while
 * several wait, it sends up to the group maximum of them behind one Sync (group commit:
 * one WAL flush and one round trip for all).  Alone, it runs as pg_exec.
 * A group runs in key order (strcmp; give the row's key), so groups lock
 * rows in one order and do not deadlock one another.  cb sees the result
 * only once the group committed.  When any statement of a group fails,
 * nothing of the group is kept and each of its statements runs again
 * alone, so each caller gets its own statement's outcome.  Only for a
 * statement that may share a transaction: one that does not read what a
 * concurrent write commits, and knows now() is the group's start. */
int pg_exec_grouped(struct pg_pool *pool, const struct pg_stmt *stmt, int nparams,
                    const char *const *params, const char *key, pg_cb cb, void *arg);

/* The most grouped writes one transaction takes (8 unless set; 1: none
 * are grouped).  1 to 64. */
void pg_pool_set_group_max(struct pg_pool *pool, int n);

/* An owner whose queries carry it (the mail sender, the scheduler): it
 * must not be freed while one is out, nor be called back once it is
 * going.  Each query sent through pg_exec_held holds it (core/reap); the
 * owner's free is pg_holder_release: destroyed at once when no query is
 * out, else the callbacks of its queries are skipped from then on and it
 * is destroyed on a later loop turn after the last one is back, never
 * under that query's callback.  destroy frees the owner and calls
 * pg_holder_cleanup. */
struct pg_holder {
    struct reap reap;             /* held by each query out */
};
/* 0, or -1 when out of memory (pg_holder_cleanup is harmless then). */
int pg_holder_init(struct pg_holder *h, struct event_base *base,
                   void (*destroy)(void *owner), void *owner);
void pg_holder_cleanup(struct pg_holder *h);
/* pg_exec held by h; cb(res, arg) runs only while h's owner lives. */
int pg_exec_held(struct pg_pool *pool, struct pg_holder *h, const struct pg_stmt *stmt,
                 int nparams, const char *const *params, pg_cb cb, void *arg);
/* The owner's free (see above). */
void pg_holder_release(struct pg_holder *h);
/* pg_holder_release ran. */
static inline bool pg_holder_going(const struct pg_holder *h)
{
    return reap_released(&h->reap);
}

struct pg_pool_stats {
    int size;       /* configured connections */
    int connected;  /* connections ready for queries */
    int in_use;     /* connections running a query */
    int waiting;    /* queries waiting for a connection */
    bool known_down;   /* the circuit is open: queries fail at once */
    long failed_fast;  /* queries failed at once while known down */
    long timed_out;    /* queries whose session was dropped at the deadline */
    long grouped;      /* queries committed as part of a group */
    long group_retries; /* groups rolled back whose queries then ran alone */
};
void pg_pool_stats(const struct pg_pool *pool, struct pg_pool_stats *out);

/* True once any connection is up; false while PostgreSQL is unreachable. */
bool pg_pool_ready(const struct pg_pool *pool);

/* LISTEN/NOTIFY on one extra session of the pool, re-opened with the same
 * backoff as the others.  fn(channel, payload, arg) runs for every
 * notification on channel; payload == NULL means "(re)subscribed: what
 * changed while we were not listening is unknown" — caches flush then.
 * channel is a lowercase identifier; at most 16 channels.  fn must not call
 * pg_pool_free. */
typedef void (*pg_notify_fn)(const char *channel, const char *payload, void *arg);
int pg_pool_listen(struct pg_pool *pool, const char *channel, pg_notify_fn fn,
                   void *arg);
/* fn(channel, ..., arg) hears channel no more.  Not from inside a notify
 * callback (the delivery loop would skip the next listener). */
void pg_pool_unlisten(struct pg_pool *pool, const char *channel, pg_notify_fn fn,
                      void *arg);
/* True while notifications are being received: caches may serve. */
bool pg_pool_listening(const struct pg_pool *pool);
/* Reads notifications already on the LISTEN socket now, without waiting
 * for the loop to get to it: a cache calls it before serving a hit, so a
 * change committed before the request arrived is applied first. */
void pg_pool_poll_notifies(struct pg_pool *pool);

/* Helpers for reading results. */
const char *pg_sqlstate(const PGresult *res);   /* "" if none */
bool pg_ok(const PGresult *res);                /* TUPLES_OK or COMMAND_OK */

#endif
