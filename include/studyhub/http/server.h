/* server: the HTTP listener and our own HTTP/1.1 connection layer
 * (src/http/server.c on libevent's loop, listener and evbuffers; the
 * request head parsed in place by http_parse.c).  Handlers see only this
 * API, so the layer under it can change without touching one.  A handler
 * may reply at once or later, from any callback; the request stays valid
 * until http_reply* is called exactly once. */
#ifndef STUDYHUB_HTTP_SERVER_H
#define STUDYHUB_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "studyhub/http/reply_head.h"

struct event_base;
struct evbuffer;
struct config;
struct http_server;
struct http_req;
struct router;
struct route;
struct metrics;

#define HTTP_MAX_PARAMS 4

enum http_method {
    HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE,
    HTTP_OPTIONS, HTTP_OTHER
};

/* The gate a matched request goes through: it enforces route->policy
 * (see router.h) and then runs route->handler, or answers itself. */
typedef void (*http_gate_fn)(struct http_req *req, const struct route *route,
                             void *arg);

/* The event loop the server runs on: epoll with its change list, so a
 * reply the socket does not take at once (EV_WRITE on, then off once
 * written) costs at most one epoll_ctl per loop pass. */
struct event_base *http_event_base_new(void);

/* router and metrics are borrowed; every matched request goes to gate
 * (auth_gate in production) with arg. */
struct http_server *http_server_new(struct event_base *base,
                                    const struct config *cfg,
                                    const struct router *router,
                                    struct metrics *metrics, http_gate_fn gate,
                                    void *arg);
/* Closes every connection.  One whose request a handler still holds is
 * freed when the handler answers it (which it still must; the answer goes
 * nowhere and touches no server state). */
void http_server_free(struct http_server *srv);
/* Serves router's routes from now on (the start-up router is swapped for
 * the full one once the server can answer them). */
void http_server_set_router(struct http_server *srv, const struct router *router);
/* What answers a path no route matches (given the server's arg): the
 * static pages' HTML 404 for browsers.  Without one, a JSON:API 404. */
typedef void (*http_fallback_fn)(struct http_req *req, void *arg);
void http_server_set_fallback(struct http_server *srv, http_fallback_fn fn);
int http_server_listen(struct http_server *srv, const char *addr, int port);
/* The port actually bound (useful with LISTEN_PORT=0). */
int http_server_port(const struct http_server *srv);
/* Stop accepting new connections; in-flight requests go on. */
void http_server_stop_accepting(struct http_server *srv);
/* Requests accepted and not yet answered. */
unsigned http_server_inflight(const struct http_server *srv);
/* Open client connections. */
unsigned http_server_connections(const struct http_server *srv);
/* Connections accepted and closed at once at the descriptor limit. */
unsigned long http_server_accepts_refused(const struct http_server *srv);
/* The connection table (counts of slow and over-cap closes). */
struct http_conns;
const struct http_conns *http_server_conns(const struct http_server *srv);

/* Request accessors; every returned pointer lives as long as the request. */
enum http_method http_req_method(const struct http_req *req);
const char *http_req_method_name(const struct http_req *req);
const char *http_req_path(const struct http_req *req);   /* decoded, no query */
const char *http_req_query_string(const struct http_req *req); /* raw or "" */
const char *http_req_query(struct http_req *req, const char *key); /* decoded */
const char *http_req_header(const struct http_req *req, const char *name);
const char *http_req_body(const struct http_req *req, size_t *len); /* NUL-terminated */
const char *http_req_id(const struct http_req *req);
const char *http_req_peer(const struct http_req *req);
/* Router parameters ({name} segments), in pattern order. */
const char *http_req_param(const struct http_req *req, int index);
/* The origin of API links, without trailing slash: BASE_URL, else
 * http://LISTEN_ADDR:port (never the Host header, which the client
 * chooses). */
const char *http_req_base_url(struct http_req *req);
/* The router pattern that matched, for logs and metrics. */
const char *http_req_route(const struct http_req *req);
/* Per-request user data (e.g. the authenticated user); free_fn (may be
 * NULL) is called on it when the request is answered. */
void http_req_set_data(struct http_req *req, void *data, void (*free_fn)(void *));
void *http_req_data(const struct http_req *req);
/* True once the client has gone (replying is still required and safe). */
bool http_req_client_gone(const struct http_req *req);

void http_add_header(struct http_req *req, const char *name, const char *value);
/* A header already added to the reply, or NULL. */
const char *http_reply_header(const struct http_req *req, const char *name);

/* Every reply (errors, streams and storage included) carries
 * X-Content-Type-Options: nosniff, Referrer-Policy: same-origin,
 * X-Frame-Options: DENY and a Content-Security-Policy: HTTP_PAGE_CSP for
 * text/html, HTTP_BASE_CSP otherwise, unless the handler set its own
 * (which must then say frame-ancestors itself; see videos.c's storage
 * links). */
#define HTTP_BASE_CSP "frame-ancestors 'none'"
#define HTTP_PAGE_CSP                                                        \
    "default-src 'self'; script-src 'self'; object-src 'none'; "            \
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* The media-src of HTTP_PAGE_CSP: 'self' and origin (scheme://host[:port],
 * the object storage's, so pages play videos from presigned links);
 * NULL or "" for none beyond default-src.  0, or -1 (origin refused or
 * out of memory: the CSP stays as it was). */
int http_server_set_media_origin(struct http_server *srv, const char *origin);

/* Replies and frees the request. */
void http_reply(struct http_req *req, int status, const char *content_type,
                const char *body, size_t len);
/* As http_reply, but the body is sent by reference, not copied:
 * release(body, len, arg) runs once, when the connection no longer needs
 * the bytes (sent, or never to be). */
void http_reply_ref(struct http_req *req, int status, const char *content_type,
                    const void *body, size_t len,
                    void (*release)(const void *body, size_t len, void *arg), void *arg);
/* A buffer holding bytes [off, off + len) of fd as a sendfile segment
 * (without it libevent maps the file and copies it, and unmaps it: a TLB
 * flush a request).  It owns fd from here: closed when the segment is sent
 * or the buffer freed, or at once when len is 0 or on failure (NULL). */
struct evbuffer *http_file_buffer(int fd, int64_t off, int64_t len);
void http_reply_buffer(struct http_req *req, int status,
                       const char *content_type, struct evbuffer *body);

/* ---- streamed replies (server-sent events; added for tasks/build.c) ----
 * http_reply_start sends the status and headers (Cache-Control: no-cache
 * unless the caller set one) and keeps the request
 * open; http_reply_chunk sends body bytes as they come (chunked encoding);
 * http_reply_end finishes the reply and frees the request.  A request is
 * ended by exactly one of http_reply, http_reply_buffer or http_reply_end.
 * While it streams, the connection has no read timeout (the client of a
 * stream sends nothing) but keeps IDLE_TIMEOUT_S as its write timeout, so
 * a client that stops reading is dropped.  The request counts as in flight
 * until it ends: owners must end their streams when the server drains,
 * and when http_req_client_gone turns true. */
void http_reply_start(struct http_req *req, int status, const char *content_type);
/* Sends len bytes (copied).  Returns 0, or -1 when the client has gone or
 * more than HTTP_STREAM_MAX_BUFFERED bytes wait unsent (a client that does
 * not keep up): the owner should end the stream. */
#define HTTP_STREAM_MAX_BUFFERED (1024 * 1024)
int http_reply_chunk(struct http_req *req, const void *data, size_t len);
void http_reply_end(struct http_req *req);
/* Ends a stream that failed midway: the connection is cut before the
 * chunked body's end, so the client sees an error, not a short file. */
void http_reply_abort(struct http_req *req);
/* Bytes of the reply written but not yet sent to the client (0 once it
 * has gone).  A stream that must not drop a slow client (exports) waits
 * until this falls before producing more, instead of failing at
 * HTTP_STREAM_MAX_BUFFERED. */
size_t http_reply_pending(const struct http_req *req);
/* Sends the whole of buf (drained) as body bytes, with no limit on what
 * waits unsent: the caller bounds it with http_reply_pending.  -1 when the
 * client has gone. */
int http_reply_chunk_buffer(struct http_req *req, struct evbuffer *buf);
/* The authenticated caller's uuid, named by the request's log line
 * (set by the auth gate). */
void http_req_set_log_user(struct http_req *req, const char *user_uuid);

#endif
