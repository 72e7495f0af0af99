/* conns: the table of client connections, and the guard that cuts slow
 * ones.  A read timeout that restarts at every byte read lets a client
 * that sends one byte a second keep its connection (and a descriptor)
 * forever.  Here each request has a deadline from its first byte:
 * REQUEST_HEADER_TIMEOUT_S, plus one second per REQUEST_MIN_RATE bytes
 * received, until the whole request is in; a request past it is cut (the
 * server closes it without a reply).  A client address may hold at most
 * MAX_CONNS_PER_ADDR connections at once; more are refused as they are
 * accepted.
 *
 * The server (server.c) owns its connections and embeds a guard in each;
 * it tells the table what happens (opened, bytes in, request in, reply
 * written, closed), and the table's sweep timer asks it to cut a
 * connection through the cut callback.  No I/O happens here. */
#ifndef STUDYHUB_HTTP_CONNS_H
#define STUDYHUB_HTTP_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct http_conns;

struct http_conns_limits {
    int header_timeout_s;   /* first byte of a request to the whole request */
    long min_rate;          /* bytes a second that extend the deadline by 1 s */
    int max_per_addr;       /* connections one address may hold (0: any) */
};

/* Where a connection's current request is. */
enum http_guard_state {
    HTTP_GUARD_IDLE,        /* between requests: the idle timeout applies */
    HTTP_GUARD_RECEIVING,   /* bytes of a request arrived; its deadline runs */
    HTTP_GUARD_HANDLING,    /* the whole request is in; the server answers it */
};

/* One per open connection, inside the server's connection (no allocation). */
struct http_guard {
    TAILQ_ENTRY(http_guard) link;     /* in the table, while open */
    void *conn;                       /* the server's connection (cut's argument) */
    enum http_guard_state state;
    int64_t started_ms;               /* monotonic: the request's first byte */
    uint64_t received;                /* bytes of this request so far */
    uint32_t bucket;                  /* its address bucket, counted while open */
    bool counted;                     /* bucket holds this connection */
    bool open;                        /* in the table */
};

/* The sweep found conn's request past its deadline: the server closes it
 * (and calls http_conns_close on its guard). */
typedef void (*http_conns_cut_fn)(void *conn, void *arg);

struct http_conns *http_conns_new(struct event_base *base,
                                  const struct http_conns_limits *limits,
                                  http_conns_cut_fn cut, void *arg);
/* After every guard was closed (or with guards left: they are unlinked). */
void http_conns_free(struct http_conns *cs);

/* A connection from addr (numeric) was accepted: 0 and g is in the table,
 * or -1 when addr holds MAX_CONNS_PER_ADDR already (counted in over_cap;
 * the caller closes it). */
int http_conns_open(struct http_conns *cs, struct http_guard *g, const char *addr,
                    void *conn);
/* The connection is closed (no-op for a guard not open). */
void http_conns_close(struct http_conns *cs, struct http_guard *g);
/* n bytes arrived on it. */
void http_conns_bytes_in(struct http_guard *g, size_t n);
/* The whole request is in: no deadline until its reply has been written. */
void http_conns_request_in(struct http_guard *g);
/* Its reply is written: the next request's clock starts at its first
 * byte (at once when waiting bytes of it are already in). */
void http_conns_reply_done(struct http_guard *g, size_t waiting);
/* Cuts the requests past their deadline at now_ms (the timer runs it every
 * 500 ms; tests call it with a clock of their own). */
void http_conns_sweep(struct http_conns *cs, int64_t now_ms);

struct http_conns_stats {
    unsigned open;                /* connections open now */
    unsigned long slow_closed;    /* closed past their request deadline */
    unsigned long over_cap;       /* closed at accept: too many from one address */
};
void http_conns_stats(const struct http_conns *cs, struct http_conns_stats *out);

#endif
