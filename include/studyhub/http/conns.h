/* conns: the table of client connections, and the guard that cuts slow
 * ones.  evhttp's own timeout restarts at every byte read, so a client
 * that sends one byte a second keeps its connection (and a descriptor)
 * forever.  Here each request has a deadline from its first byte:
 * REQUEST_HEADER_TIMEOUT_S, plus one second per REQUEST_MIN_RATE bytes
 * received, until the whole request is in; a request past it is closed
 * without a reply.  A client address may hold at most MAX_CONNS_PER_ADDR
 * connections at once; more are closed as they are accepted.
 *
 * The module hooks evhttp through evhttp_set_bevcb (it makes each
 * connection's bufferevent), and holds a reference on every bufferevent
 * it guards, so it never touches freed memory even if evhttp drops a
 * connection without calling the close callback. */
#ifndef STUDYHUB_HTTP_CONNS_H
#define STUDYHUB_HTTP_CONNS_H

#include <stdbool.h>

struct event_base;
struct evhttp;
struct evhttp_connection;
struct http_conns;

struct http_conns_limits {
    int header_timeout_s;   /* first byte of a request to the whole request */
    long min_rate;          /* bytes a second that extend the deadline by 1 s */
    int max_per_addr;       /* connections one address may hold (0: any) */
};

/* Called when evhttp closes one of the connections (the server keeps its
 * own state per connection too). */
typedef void (*http_conns_close_fn)(struct evhttp_connection *evcon, void *arg);

struct http_conns *http_conns_new(struct event_base *base,
                                  const struct http_conns_limits *limits,
                                  http_conns_close_fn on_close, void *arg);
/* Makes evhttp create its connections through this table. */
void http_conns_attach(struct http_conns *cs, struct evhttp *http);
/* After evhttp_free (which closes the connections). */
void http_conns_free(struct http_conns *cs);

/* The whole request is in (evhttp called the request handler): no
 * deadline until its reply has been written. */
void http_conns_request_in(struct http_conns *cs, struct evhttp_connection *evcon);
/* Its reply is written: the next request's clock starts at its first
 * byte (at once when bytes of it are already waiting). */
void http_conns_reply_done(struct http_conns *cs, struct evhttp_connection *evcon);

struct http_conns_stats {
    unsigned open;                /* connections open now */
    unsigned long slow_closed;    /* closed past their request deadline */
    unsigned long over_cap;       /* closed at accept: too many from one address */
};
void http_conns_stats(const struct http_conns *cs, struct http_conns_stats *out);

#endif
