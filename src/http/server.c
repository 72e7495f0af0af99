/* server: the HTTP/1.1 listener and connection layer.  libevent gives the
 * loop, the listener and the output evbuffers (sendfile segments stay
 * zero-copy); the rest is ours: each connection reads into one buffer, the
 * request head is parsed in place there (http_parse.c: no allocation per
 * request or header), the request struct lives in the connection and is
 * reused, and a reply's status line and headers are written in one piece.
 * This replaced evhttp, whose per-request allocations, header parsing and
 * formatting were most of a small request's cost (README, "The decision on
 * evhttp").
 *
 * A connection is a state machine (enum conn_state): READING a request,
 * HANDLING it (the handler has it), STREAMING a started reply, WRITING a
 * finished reply until the socket took it, CLOSING (the last reply sent,
 * the rest of the input read and dropped so the close does not reset the
 * reply away), and DEAD: the socket is gone but the handler still holds
 * its request, which is answered (and dropped) before the connection is
 * freed.  One request at a time: pipelined requests wait in the buffer
 * until the reply before them is written. */
#include "studyhub/http/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/metrics.h"
#include "studyhub/core/util.h"
#include "studyhub/http/conns.h"
#include "studyhub/http/http_parse.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"

#define IN_INITIAL 4096             /* a connection's input buffer at first */
#define IN_KEEP (64 * 1024)         /* larger ones shrink back between requests */
#define HEADER_HARD_LIMIT_FACTOR 4  /* past max_header_bytes times this: 400, close */
#define LINGER_S 2                  /* reading what follows a last reply, at most */
#define QUERY_MAX_PAIRS 64

enum conn_state {
    CONN_READING,       /* waiting for, or receiving, a request */
    CONN_HANDLING,      /* the request is with its handler */
    CONN_STREAMING,     /* a streamed reply is going out */
    CONN_WRITING,       /* the reply is whole; the socket has not taken it all */
    CONN_CLOSING,       /* the last reply is sent; input is read and dropped */
    CONN_DEAD,          /* the socket is closed; the request is still answered */
};

struct conn;

struct http_req {
    struct http_server *srv;        /* borrowed */
    struct conn *conn;              /* the connection it is part of */
    enum http_method method;
    const char *path;               /* decoded, in conn->in (or a literal) */
    const char *query_raw;          /* in conn->in; "" if none */
    char *query_buf;                /* owned: the query split into pairs, lazily */
    struct http_query_pair *query;  /* owned with query_buf */
    int nquery;                     /* -1: not parsed yet */
    struct router_match match;      /* route and parameters */
    const char *route;              /* pattern, or "unmatched" (static) */
    char id[65];                    /* request id */
    char *body;                     /* NUL-terminated copy, lazily (owned) */
    size_t body_len;
    void *data;                     /* handler data (owned via data_free) */
    void (*data_free)(void *);
    struct timespec start;          /* monotonic */
    int stream_status;              /* http_reply_start's status (streams) */
    bool chunked;                   /* the stream's body goes in chunks */
    bool stream_body;               /* the stream has a body at all (not HEAD) */
    char log_user[37];              /* the caller's uuid for the log line, "" if none */
    char *out_h;                    /* owned: reply headers, "name\0value\0" each */
    size_t out_len, out_cap;
};

struct conn {
    TAILQ_ENTRY(conn) link;         /* in srv->conns_list */
    struct http_server *srv;        /* borrowed */
    int fd;                         /* owned; -1 once closed (DEAD) */
    enum conn_state state;
    struct event rev, wev;          /* reading (persistent) and writing */
    bool rev_on, wev_on;            /* added */
    bool processing;                /* process_input is on the stack: free later */
    bool close_after;               /* close once the current reply is written */
    bool req_active;                /* req is with a handler (not yet answered) */
    struct evbuffer *out;           /* owned: bytes for the socket */
    char *in;                       /* owned: bytes read, the current request first */
    size_t in_len, in_cap;
    size_t discarded;               /* CLOSING: bytes dropped */
    /* The current request's parse. */
    struct http_head_scan scan;
    bool have_head;
    struct http_head head;
    size_t body_start, body_end;    /* its body in in[] */
    size_t raw;                     /* chunked: the next undecoded byte */
    size_t req_end;                 /* where the next request starts */
    struct http_guard guard;        /* the slow-client guard (conns.h) */
    char peer[INET6_ADDRSTRLEN];
    struct http_req req;            /* the current request, reused */
};

TAILQ_HEAD(conn_list, conn);

struct http_server {
    struct event_base *base;            /* borrowed */
    const struct config *cfg;           /* borrowed */
    const struct router *router;        /* borrowed */
    struct metrics *metrics;            /* borrowed */
    http_gate_fn gate;                  /* runs matched routes */
    http_fallback_fn fallback;          /* answers unmatched paths; NULL: JSON 404 */
    void *arg;                          /* given to the gate; borrowed */
    struct evconnlistener *listener;    /* owned; NULL once closed */
    int port;                           /* bound port */
    unsigned inflight;                  /* requests not yet answered */
    unsigned writing;                   /* connections in CONN_WRITING */
    bool draining;                      /* stop_accepting was called */
    struct conn_list conns_list;        /* owned: every connection */
    struct http_conns *conns;           /* owned: open connections, slow-client guard */
    int reserve_fd;                     /* owned: /dev/null, given up to refuse
                                         * a connection at the fd limit */
    struct event *accept_pause;         /* owned: re-enables accepting */
    unsigned long accepts_refused;      /* connections refused at the fd limit */
    char id_prefix[9];                  /* random per process, for request ids */
    uint64_t id_counter;
    char *page_csp;                     /* owned: HTTP_PAGE_CSP with a media-src; NULL: as is */
    char base_url[320];                 /* http_req_base_url, made on first use */
    struct http_date_cache date;        /* the replies' Date, once a second */
    struct evbuffer *scratch;           /* owned: http_reply's body, emptied by each send */
    char *head_buf;                     /* owned: a reply's status line and headers */
    size_t head_cap;
    struct timeval idle_tv;             /* IDLE_TIMEOUT_S */
};

static const char *const method_names[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"
};

static void process_input(struct conn *c);
static void conn_flush(struct conn *c);

static double elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* A client-sent X-Request-Id is kept when it is short and plain. */
static bool request_id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (n >= 64 || !(isalnum((unsigned char)s[n]) || s[n] == '-' ||
                         s[n] == '_' || s[n] == '.'))
            return false;
    }
    return n > 0;
}

/* ---- connections -------------------------------------------------------- */

static void set_state(struct conn *c, enum conn_state s)
{
    if (c->state == CONN_WRITING)
        c->srv->writing--;
    if (s == CONN_WRITING)
        c->srv->writing++;
    c->state = s;
}

static void rev_add(struct conn *c, const struct timeval *tv)
{
    event_add(&c->rev, tv);
    c->rev_on = true;
}

static void conn_free(struct conn *c)
{
    struct http_req *req = &c->req;

    if (c->srv)
        TAILQ_REMOVE(&c->srv->conns_list, c, link);
    if (req->data_free && req->data)
        req->data_free(req->data);
    free(req->query_buf);
    free(req->query);
    free(req->body);
    free(req->out_h);
    free(c->in);
    free(c);
}

/* Closes the socket: the connection is DEAD from here. */
static void conn_shut(struct conn *c)
{
    if (c->fd < 0)
        return;
    event_del(&c->rev);
    event_del(&c->wev);
    c->rev_on = c->wev_on = false;
    close(c->fd);
    c->fd = -1;
    if (c->out) {
        evbuffer_free(c->out);
        c->out = NULL;
    }
    http_conns_close(c->srv->conns, &c->guard);
    set_state(c, CONN_DEAD);
}

/* The client went, or the connection is done: freed now, or once its
 * handler answers (req_active) or process_input returns (processing). */
static void conn_drop(struct conn *c)
{
    conn_shut(c);
    if (!c->req_active && !c->processing)
        conn_free(c);
}

/* The conns table's sweep: a request past its deadline. */
static void on_cut(void *conn, void *arg)
{
    (void)arg;
    conn_drop(conn);
}

static int in_reserve(struct conn *c, size_t cap)
{
    char *p;

    if (cap <= c->in_cap)
        return 0;
    p = realloc(c->in, cap);
    if (!p)
        return -1;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

/* The reply is written and nothing more follows: the client gets a FIN
 * after it, and what it still sends is read and dropped for a while, so
 * the close does not turn into a reset that could destroy the reply
 * before the client read it (a 413 sent before the body came in). */
static void conn_linger(struct conn *c)
{
    struct timeval tv = { LINGER_S, 0 };

    set_state(c, CONN_CLOSING);
    shutdown(c->fd, SHUT_WR);
    c->in_len = 0;
    c->discarded = 0;
    rev_add(c, &tv);
}

/* The request's state, for the next one on the connection. */
static void parse_reset(struct conn *c)
{
    memset(&c->scan, 0, sizeof c->scan);
    c->have_head = false;
    c->head.nheaders = 0;
    c->body_start = c->body_end = c->raw = c->req_end = 0;
}

/* The reply is all in the socket. */
static void on_drained(struct conn *c)
{
    size_t left;

    set_state(c, CONN_READING);
    if (c->close_after) {
        conn_linger(c);
        return;
    }
    left = c->in_len - c->req_end;
    if (left)
        memmove(c->in, c->in + c->req_end, left);
    c->in_len = left;
    parse_reset(c);
    if (c->in_cap > IN_KEEP && left < IN_INITIAL) {
        char *p = realloc(c->in, IN_INITIAL);
        if (p) {
            c->in = p;
            c->in_cap = IN_INITIAL;
        }
    }
    http_conns_reply_done(&c->guard, left);
    rev_add(c, &c->srv->idle_tv);
    if (left && !c->processing)
        process_input(c);
}

/* Writes what the socket takes now.  A small reply goes out at once
 * instead of waiting a loop pass for EV_WRITE (which would also cost an
 * epoll_ctl on and one off); the rest waits on wev, with IDLE_TIMEOUT_S
 * as the write timeout (a client that stops reading is dropped).  May
 * free c: nothing touches it after. */
static void conn_flush(struct conn *c)
{
    for (int i = 0; i < 4 && evbuffer_get_length(c->out) > 0; i++) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            conn_drop(c);
            return;
        }
        if (n == 0)
            break;
    }
    if (evbuffer_get_length(c->out) > 0) {
        if (!c->wev_on) {
            event_add(&c->wev, &c->srv->idle_tv);
            c->wev_on = true;
        }
        return;
    }
    if (c->wev_on) {
        event_del(&c->wev);
        c->wev_on = false;
    }
    if (c->state == CONN_WRITING)
        on_drained(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    if (what & EV_TIMEOUT) {
        conn_drop(c);
        return;
    }
    conn_flush(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        conn_drop(c);   /* idle, or lingering long enough */
        return;
    }
    if (c->state == CONN_CLOSING) {
        char drop[16384];
        while ((n = read(fd, drop, sizeof drop)) > 0) {
            c->discarded += (size_t)n;
            if (c->discarded > (size_t)c->srv->cfg->max_body_bytes + (1 << 20)) {
                conn_drop(c);
                return;
            }
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_drop(c);
        return;
    }
    if (c->in_len == c->in_cap) {
        /* process_input leaves room while it waits for more; a handled
         * request's buffer does not move (its strings are in it), so
         * bytes after it wait in the socket until its reply is out. */
        if (c->state == CONN_READING) {
            conn_drop(c);   /* out of memory for more */
            return;
        }
        event_del(&c->rev);
        c->rev_on = false;
        return;
    }
    n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        conn_drop(c);   /* the client went (while handled: client_gone) */
        return;
    }
    c->in_len += (size_t)n;
    if (c->state == CONN_READING) {
        http_conns_bytes_in(&c->guard, (size_t)n);
        process_input(c);
    }
}

static void conn_new(struct http_server *srv, int fd, const struct sockaddr *sa)
{
    struct conn *c = calloc(1, sizeof *c);
    int one = 1;

    if (!c || !(c->in = malloc(IN_INITIAL)) || !(c->out = evbuffer_new())) {
        if (c) {
            free(c->in);
            free(c);
        }
        close(fd);
        return;
    }
    c->in_cap = IN_INITIAL;
    c->fd = fd;
    c->srv = srv;
    c->req.srv = srv;
    c->req.conn = c;
    c->req.nquery = -1;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer,
                  sizeof c->peer);
    event_assign(&c->rev, srv->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, srv->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    TAILQ_INSERT_TAIL(&srv->conns_list, c, link);
    if (http_conns_open(srv->conns, &c->guard, c->peer, c) < 0) {
        conn_drop(c);
        return;
    }
    /* Replies go out whole: without TCP_NODELAY a keep-alive reply larger
     * than one write waits for the client's delayed ACK (~40 ms). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evbuffer_set_flags(c->out, EVBUFFER_FLAG_DRAINS_TO_FD);
    c->state = CONN_READING;
    rev_add(c, &srv->idle_tv);
}

/* ---- requests ----------------------------------------------------------- */

/* The parsed request goes to a handler (or gets an error). */
static struct http_req *request_begin(struct conn *c)
{
    struct http_server *srv = c->srv;
    struct http_req *req = &c->req;
    const char *hdr;

    clock_gettime(CLOCK_MONOTONIC, &req->start);
    req->route = "unmatched";
    req->method = c->have_head ? c->head.method : HTTP_OTHER;
    req->path = "";
    req->query_raw = "";
    srv->inflight++;
    c->req_active = true;
    set_state(c, CONN_HANDLING);
    http_conns_request_in(&c->guard);
    /* No read timeout while it is handled (or streamed): the client waits. */
    event_remove_timer(&c->rev);

    hdr = http_req_header(req, "X-Request-Id");
    if (hdr && request_id_ok(hdr))
        snprintf(req->id, sizeof req->id, "%s", hdr);
    else
        snprintf(req->id, sizeof req->id, "%s%08llx", srv->id_prefix,
                 (unsigned long long)++srv->id_counter);
    return req;
}

/* The answered request's state goes; the connection keeps the struct. */
static void request_end(struct conn *c)
{
    struct http_req *req = &c->req;

    if (req->data_free && req->data)
        req->data_free(req->data);
    req->data = NULL;
    req->data_free = NULL;
    free(req->query_buf);
    free(req->query);
    req->query_buf = NULL;
    req->query = NULL;
    req->nquery = -1;
    free(req->body);
    req->body = NULL;
    req->body_len = 0;
    req->out_len = 0;
    req->log_user[0] = '\0';
    req->chunked = req->stream_body = false;
    memset(&req->match, 0, sizeof req->match);
    c->req_active = false;
    if (c->srv)
        c->srv->inflight--;
}

/* A request refused before any handler: a JSON:API error, then close. */
static void reject(struct conn *c, int status, const char *code, const char *detail)
{
    struct http_req *req;

    if (!c->have_head)
        c->head.nheaders = 0;   /* a head that failed to parse names nothing */
    req = request_begin(c);
    req->route = "bad_request";
    c->close_after = true;
    http_add_header(req, "Connection", "close");
    jsonapi_reply_errorf(req, status, code, NULL, "%s", detail);
}

static void reject_parse(struct conn *c, long rc)
{
    switch (rc) {
    case HTTP_PARSE_TOO_MANY:
        reject(c, 431, "request_header_fields_too_large", "Too many request headers.");
        break;
    case HTTP_PARSE_METHOD:
        reject(c, 501, "not_implemented", "Method not implemented.");
        break;
    case HTTP_PARSE_VERSION:
        reject(c, 505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are served.");
        break;
    case HTTP_PARSE_EXPECT:
        reject(c, 417, "expectation_failed", "Only \"Expect: 100-continue\" is understood.");
        break;
    case -413:
        reject(c, 413, "payload_too_large", "The request body is too large.");
        break;
    default:
        reject(c, 400, "invalid", "Malformed request.");
        break;
    }
}

static void reject_body_size(struct conn *c)
{
    struct http_req *req = request_begin(c);
    char detail[96];

    req->route = "bad_request";
    c->close_after = true;
    http_add_header(req, "Connection", "close");
    snprintf(detail, sizeof detail, "The request body exceeds %ld bytes.",
             c->srv->cfg->max_body_bytes);
    jsonapi_reply_errorf(req, 413, "payload_too_large", NULL, "%s", detail);
}

/* Room for more bytes of a request not yet whole: 0, or -1 when it may
 * not grow (past limit). */
static int make_room(struct conn *c, size_t limit)
{
    size_t cap;

    if (c->in_len < c->in_cap)
        return 0;
    if (c->in_cap >= limit)
        return -1;
    cap = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
    return in_reserve(c, cap);
}

/* One step of reading a request: 1 when a whole one is in, 0 when more
 * bytes are needed, -1 when it was refused (a reply is on its way). */
static int parse_request(struct conn *c)
{
    const struct config *cfg = c->srv->cfg;
    size_t hard = (size_t)cfg->max_header_bytes * HEADER_HARD_LIMIT_FACTOR;
    size_t max_body = (size_t)cfg->max_body_bytes;

    if (!c->have_head) {
        long end = http_head_end(c->in, c->in_len, &c->scan);
        long rc;

        if (end < 0) {
            reject(c, 400, "invalid", "Malformed request.");
            return -1;
        }
        if (end == 0 || (size_t)end > hard) {
            if (end == 0 && c->in_len < hard && make_room(c, hard) == 0)
                return 0;
            /* Absurd: no handler sees it. */
            reject(c, 400, "invalid", "The request line and headers are far too large.");
            return -1;
        }
        rc = http_parse_head(c->in, (size_t)end, &c->head);
        if (rc < 0) {
            reject_parse(c, rc);
            return -1;
        }
        c->have_head = true;
        c->body_start = c->body_end = c->raw = (size_t)end;
        if (c->head.content_length > (int64_t)max_body) {
            reject_body_size(c);
            return -1;
        }
        /* The client waits for a go-ahead before it sends the body. */
        if (c->head.expect_continue && c->head.minor >= 1 && c->in_len == (size_t)end &&
            (c->head.chunked || c->head.content_length > 0)) {
            evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            conn_flush(c);
            if (c->fd < 0)
                return 0;
        }
    }
    if (c->head.chunked) {
        int rc = http_parse_chunked(c->in, c->in_len, &c->raw, &c->body_end, c->body_start,
                                    max_body);
        if (rc == 0) {
            if (make_room(c, c->body_start + 2 * max_body + 65536) == 0)
                return 0;
            rc = -413;
        }
        if (rc < 0) {
            reject_parse(c, rc);
            return -1;
        }
        /* Pipelined bytes move down to the decoded body's end. */
        memmove(c->in + c->body_end, c->in + c->raw, c->in_len - c->raw);
        c->in_len -= c->raw - c->body_end;
        c->req_end = c->body_end;
        return 1;
    }
    size_t need = c->body_start + (size_t)(c->head.content_length > 0 ? c->head.content_length : 0);
    if (c->in_len < need) {
        if (in_reserve(c, need) < 0) {
            reject(c, 503, "unavailable", "Out of memory.");
            return -1;
        }
        return 0;
    }
    c->body_end = c->req_end = need;
    return 1;
}

static void on_request(struct conn *c);

/* Serves the requests in the buffer, one at a time: the loop goes on only
 * when a reply was written at once and the connection stays open. */
static void process_input(struct conn *c)
{
    c->processing = true;
    while (c->state == CONN_READING) {
        if (parse_request(c) <= 0)
            break;
        on_request(c);
    }
    c->processing = false;
    if (c->state == CONN_DEAD && !c->req_active)
        conn_free(c);
}

static void on_request(struct conn *c)
{
    struct http_server *srv = c->srv;
    struct http_req *req = request_begin(c);
    const char *hdr;
    char allow[128];

    if (c->head.head_len > (size_t)srv->cfg->max_header_bytes) {
        http_add_header(req, "Connection", "close");
        jsonapi_reply_errorf(req, 431, "request_header_fields_too_large", NULL,
                             "The request line and headers exceed %ld bytes.",
                             srv->cfg->max_header_bytes);
        return;
    }
    if (!http_target_split(c->in + c->head.target, &req->path, &req->query_raw)) {
        /* A %00 in the path: nothing we serve has one. */
        req->path = "";
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "Malformed request path.");
        return;
    }

    /* A runner page is served sandboxed (an opaque origin: Origin: null),
     * so its calls to the API are cross-origin; they carry a runner key in
     * Authorization and no cookies (domain/participate_runner.h). */
    hdr = http_req_header(req, "Origin");
    if (hdr && strcmp(hdr, "null") == 0 && strncmp(req->path, "/api/v1/", 8) == 0) {
        http_add_header(req, "Access-Control-Allow-Origin", "*");
        if (req->method == HTTP_OPTIONS) {
            http_add_header(req, "Access-Control-Allow-Methods", "GET, POST, PATCH");
            http_add_header(req, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Accept");
            http_add_header(req, "Access-Control-Max-Age", "600");
            req->route = "cors_preflight";
            http_reply(req, 204, "text/plain; charset=utf-8", "", 0);
            return;
        }
    }

    switch (router_match(srv->router, req->method, req->path, &req->match, allow,
                         sizeof allow)) {
    case ROUTER_FOUND:
        req->route = req->match.route->pattern;
        srv->gate(req, req->match.route, srv->arg);
        return;
    case ROUTER_METHOD_NOT_ALLOWED:
        req->route = "method_not_allowed";
        http_add_header(req, "Allow", allow);
        jsonapi_reply_errorf(req, 405, "method_not_allowed", "/data",
                             "Method \"%s\" not allowed.", method_names[req->method]);
        return;
    case ROUTER_NOT_FOUND:
        if (srv->fallback)
            srv->fallback(req, srv->arg);
        else
            jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
}

/* ---- accepting at the descriptor limit -------------------------------- */

#define ACCEPT_PAUSE_MS 100

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)lev;
    (void)socklen;
    conn_new(arg, fd, sa);
}

static void on_accept_pause_end(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;

    (void)fd;
    (void)what;
    if (srv->listener && !srv->draining)
        evconnlistener_enable(srv->listener);
}

/* accept(2) failed.  At the descriptor limit (EMFILE, ENFILE) the
 * connection stays queued and the listener is woken again at once: left
 * alone, the loop spins and logs without end.  Instead the reserve
 * descriptor is given up so the waiting connection can be accepted and
 * closed (its client gets a clean close instead of a hang), the reserve is
 * taken back, and accepting pauses for ACCEPT_PAUSE_MS while replies
 * finish and free descriptors. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    static struct log_limit limit;
    struct http_server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    long dropped;

    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        if (log_limit_pass(&limit, 5, &dropped))
            log_warn("http: accept failed: %s (%ld more suppressed)",
                     strerror(err), dropped);
        return;
    }
    srv->accepts_refused++;
    if (srv->reserve_fd >= 0) {
        close(srv->reserve_fd);
        srv->reserve_fd = -1;
    }
    int fd = accept(evconnlistener_get_fd(lev), NULL, NULL);
    if (fd >= 0)
        close(fd);
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    evconnlistener_disable(lev);
    struct timeval pause = { 0, ACCEPT_PAUSE_MS * 1000 };
    evtimer_add(srv->accept_pause, &pause);
    if (log_limit_pass(&limit, 5, &dropped))
        log_warn("http: out of file descriptors (%s): refused a connection, "
                 "pausing accepts %d ms (%ld more suppressed)", strerror(err),
                 ACCEPT_PAUSE_MS, dropped);
}

unsigned long http_server_accepts_refused(const struct http_server *srv)
{
    return srv->accepts_refused;
}

const struct http_conns *http_server_conns(const struct http_server *srv)
{
    return srv->conns;
}

struct http_server *http_server_new(struct event_base *base,
                                    const struct config *cfg,
                                    const struct router *router,
                                    struct metrics *metrics, http_gate_fn gate,
                                    void *arg)
{
    struct http_server *srv;
    char rnd[9];

    if (!gate)
        return NULL;        /* no route may run without its policy checked */
    srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->gate = gate;
    srv->base = base;
    srv->cfg = cfg;
    srv->router = router;
    srv->metrics = metrics;
    srv->arg = arg;
    TAILQ_INIT(&srv->conns_list);
    srv->idle_tv.tv_sec = cfg->idle_timeout_s;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    srv->accept_pause = evtimer_new(base, on_accept_pause_end, srv);
    srv->scratch = evbuffer_new();
    srv->date.second = -1;
    srv->conns = http_conns_new(base, &(struct http_conns_limits){
                                    .header_timeout_s = (int)cfg->request_header_timeout_s,
                                    .min_rate = cfg->request_min_rate,
                                    .max_per_addr = (int)cfg->max_conns_per_addr,
                                }, on_cut, srv);
    if (!srv->accept_pause || !srv->conns || !srv->scratch) {
        http_server_free(srv);
        return NULL;
    }
    util_random_hex(4, rnd);
    snprintf(srv->id_prefix, sizeof srv->id_prefix, "%s", rnd);
    return srv;
}

void http_server_set_fallback(struct http_server *srv, http_fallback_fn fn)
{
    srv->fallback = fn;
}

int http_server_set_media_origin(struct http_server *srv, const char *origin)
{
    char *csp = NULL;

    if (origin && *origin) {
        /* An origin is scheme://host[:port]: nothing that could end the
         * directive or start another. */
        if (strpbrk(origin, " ;,'\"\r\n") ||
            !(csp = util_asprintf("%s; media-src 'self' %s", HTTP_PAGE_CSP, origin)))
            return -1;
    }
    free(srv->page_csp);
    srv->page_csp = csp;
    return 0;
}

void http_server_free(struct http_server *srv)
{
    struct conn *c, *next;

    if (!srv)
        return;
    if (srv->listener)
        evconnlistener_free(srv->listener);
    /* A connection whose request a handler still holds is closed and
     * orphaned (no server): the handler may answer it yet, and that answer
     * frees it without touching the server. */
    for (c = TAILQ_FIRST(&srv->conns_list); c; c = next) {
        next = TAILQ_NEXT(c, link);
        c->processing = false;
        if (c->req_active) {
            conn_shut(c);
            TAILQ_REMOVE(&srv->conns_list, c, link);
            c->srv = c->req.srv = NULL;
        } else {
            conn_drop(c);
        }
    }
    if (srv->accept_pause)
        event_free(srv->accept_pause);
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    http_conns_free(srv->conns);
    if (srv->scratch)
        evbuffer_free(srv->scratch);
    free(srv->head_buf);
    free(srv->page_csp);
    free(srv);
}

int http_server_listen(struct http_server *srv, const char *addr, int port)
{
    struct evutil_addrinfo hints, *ai = NULL;
    char portstr[16];

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    snprintf(portstr, sizeof portstr, "%d", port);
    if (evutil_getaddrinfo(addr, portstr, &hints, &ai) != 0 || !ai)
        return -1;
    srv->listener = evconnlistener_new_bind(srv->base, on_accept, srv,
                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                            LEV_OPT_CLOSE_ON_EXEC, -1,
                                            ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (!srv->listener)
        return -1;
    evconnlistener_set_error_cb(srv->listener, on_accept_error);
    srv->base_url[0] = '\0';   /* the port may be new */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evconnlistener_get_fd(srv->listener);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

void http_server_set_router(struct http_server *srv, const struct router *router)
{
    srv->router = router;
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_stop_accepting(struct http_server *srv)
{
    if (srv->listener) {
        evconnlistener_free(srv->listener);
        srv->listener = NULL;
    }
    srv->draining = true;
}

unsigned http_server_inflight(const struct http_server *srv)
{
    /* A reply still in the socket buffer is in flight too: exiting before
     * it is written would cut it off. */
    return srv->inflight + srv->writing;
}

unsigned http_server_connections(const struct http_server *srv)
{
    struct http_conns_stats st;

    http_conns_stats(srv->conns, &st);
    return st.open;
}

enum http_method http_req_method(const struct http_req *req)
{
    return req->method;
}

const char *http_req_method_name(const struct http_req *req)
{
    return method_names[req->method];
}

const char *http_req_path(const struct http_req *req)
{
    return req->path;
}

const char *http_req_query_string(const struct http_req *req)
{
    return req->query_raw;
}

const char *http_req_query(struct http_req *req, const char *key)
{
    if (req->nquery < 0) {
        req->nquery = 0;
        if (*req->query_raw) {
            req->query_buf = strdup(req->query_raw);
            req->query = calloc(QUERY_MAX_PAIRS, sizeof *req->query);
            if (req->query_buf && req->query) {
                int n = http_parse_query(req->query_buf, req->query, QUERY_MAX_PAIRS);
                req->nquery = n < 0 ? 0 : n;
            }
        }
    }
    /* evhttp_find_header's rule: the first pair, the key any case. */
    for (int i = 0; i < req->nquery; i++)
        if (strcasecmp(req->query[i].key, key) == 0)
            return req->query[i].value;
    return NULL;
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    const struct conn *c = req->conn;

    return http_head_header(&c->head, c->in, name);
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
    struct http_req *r = (struct http_req *)req;  /* lazily cached */
    const struct conn *c = req->conn;

    if (!r->body) {
        size_t n = c->have_head ? c->body_end - c->body_start : 0;
        r->body = malloc(n + 1);
        if (!r->body) {
            if (len)
                *len = 0;
            return "";
        }
        if (n)
            memcpy(r->body, c->in + c->body_start, n);
        r->body[n] = '\0';
        r->body_len = n;
    }
    if (len)
        *len = r->body_len;
    return r->body;
}

const char *http_req_id(const struct http_req *req)
{
    return req->id;
}

const char *http_req_param(const struct http_req *req, int index)
{
    if (index < 0 || index >= req->match.nparams)
        return NULL;
    return req->match.param[index];
}

const char *http_req_base_url(struct http_req *req)
{
    struct http_server *srv = req->srv;

    if (!srv)
        return "";  /* orphaned: the reply goes nowhere */
    if (srv->base_url[0])
        return srv->base_url;
    const struct config *cfg = srv->cfg;
    /* Not the Host header: a client could make links (and emailed ones)
     * point anywhere.  Without BASE_URL the server listens on loopback
     * (config refuses anything else), so its own address is right.  The
     * same for every request: made once. */
    if (cfg->base_url && *cfg->base_url)
        snprintf(srv->base_url, sizeof srv->base_url, "%s", cfg->base_url);
    else if (strchr(cfg->listen_addr, ':'))
        snprintf(srv->base_url, sizeof srv->base_url, "http://[%s]:%d", cfg->listen_addr,
                 srv->port);
    else
        snprintf(srv->base_url, sizeof srv->base_url, "http://%s:%d", cfg->listen_addr,
                 srv->port);
    return srv->base_url;
}

const char *http_req_route(const struct http_req *req)
{
    return req->route;
}

void http_req_set_data(struct http_req *req, void *data, void (*free_fn)(void *))
{
    if (req->data_free && req->data && req->data != data)
        req->data_free(req->data);
    req->data = data;
    req->data_free = free_fn;
}

void *http_req_data(const struct http_req *req)
{
    return req->data;
}

const char *http_req_peer(const struct http_req *req)
{
    return req->conn->peer;
}

bool http_req_client_gone(const struct http_req *req)
{
    return req->conn->fd < 0;
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), need = req->out_len + nl + vl + 2;

    /* A line break would let the value write headers (or a body) of its own. */
    if (!nl || strpbrk(name, "\r\n: ") || strpbrk(value, "\r\n")) {
        log_warn("http: header %s refused: a line break or bad name", name);
        return;
    }
    if (need > req->out_cap) {
        size_t cap = req->out_cap ? req->out_cap : 512;
        while (cap < need)
            cap *= 2;
        char *p = realloc(req->out_h, cap);
        if (!p)
            return;
        req->out_h = p;
        req->out_cap = cap;
    }
    memcpy(req->out_h + req->out_len, name, nl + 1);
    memcpy(req->out_h + req->out_len + nl + 1, value, vl + 1);
    req->out_len = need;
}

const char *http_reply_header(const struct http_req *req, const char *name)
{
    for (size_t off = 0; off < req->out_len;) {
        const char *n = req->out_h + off, *v = n + strlen(n) + 1;
        if (strcasecmp(n, name) == 0)
            return v;
        off = (size_t)(v - req->out_h) + strlen(v) + 1;
    }
    return NULL;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUTS(p, lit) ((p) = put((p), (lit), sizeof(lit) - 1))

/* The status line and headers of req's reply, appended to the
 * connection's output in one piece: the handler's headers, Content-Type
 * (JSON:API unless set), Content-Length (body_len >= 0) or chunked
 * Transfer-Encoding, Connection when it closes (or keeps a 1.0 client),
 * and the fixed block (reply_head.h) with its Date. */
static void write_head(struct http_req *req, int status, int64_t body_len, bool chunked)
{
    struct http_server *srv = req->srv;
    struct conn *c = req->conn;
    bool has_body = status != 204 && status != 304 && status >= 200;
    bool has_type = false, has_length = false, has_csp = false, close = c->close_after;
    const char *csp = NULL, *ctype = NULL;
    char block[2048], num[64];
    struct timeval now;
    size_t n, need;
    char *p;

    for (size_t off = 0; off < req->out_len;) {
        const char *k = req->out_h + off, *v = k + strlen(k) + 1;
        off = (size_t)(v - req->out_h) + strlen(v) + 1;
        if (strcasecmp(k, "Content-Type") == 0) {
            has_type = true;
            if (!ctype)
                ctype = v;
        } else if (strcasecmp(k, "Content-Length") == 0) {
            has_length = true;
        } else if (strcasecmp(k, "Content-Security-Policy") == 0) {
            has_csp = true;
        } else if (strcasecmp(k, "Connection") == 0 && strcasecmp(v, "close") == 0) {
            close = true;
        }
    }
    if (c->head.conn_close || (c->head.minor == 0 && !c->head.conn_keep_alive) || srv->draining)
        close = true;
    if (!has_body)
        chunked = false;
    if (!ctype && has_body && req->method != HTTP_HEAD)
        ctype = JSONAPI_MEDIA_TYPE;
    if (!has_csp) {
        bool html = ctype && strncasecmp(ctype, "text/html", 9) == 0;
        csp = html ? (srv->page_csp ? srv->page_csp : HTTP_PAGE_CSP) : HTTP_BASE_CSP;
    }
    if (event_base_gettimeofday_cached(srv->base, &now) < 0)
        gettimeofday(&now, NULL);
    n = http_header_block(block, sizeof block, http_date_cached(&srv->date, now.tv_sec),
                          req->id, csp);

    need = req->out_len * 2 + n + 1024 + (ctype && !has_type ? strlen(ctype) : 0) +
           (csp ? strlen(csp) : 0);
    if (need > srv->head_cap) {
        size_t cap = srv->head_cap ? srv->head_cap : 4096;
        while (cap < need)
            cap *= 2;
        p = realloc(srv->head_buf, cap);
        if (!p) {
            conn_shut(c);   /* out of memory: the client sees a cut */
            return;
        }
        srv->head_buf = p;
        srv->head_cap = cap;
    }
    p = srv->head_buf;
    n = (size_t)snprintf(num, sizeof num, "HTTP/1.1 %d ", status);
    p = put(p, num, n);
    const char *reason = http_reason_phrase(status);
    p = put(p, reason, strlen(reason));
    p = put(p, "\r\n", 2);
    for (size_t off = 0; off < req->out_len;) {
        const char *k = req->out_h + off;
        size_t kl = strlen(k), vl = strlen(k + kl + 1);
        off += kl + vl + 2;
        /* Connection is the writer's own line, below: once. */
        if (kl == 10 && strcasecmp(k, "Connection") == 0)
            continue;
        p = put(p, k, kl);
        p = put(p, ": ", 2);
        p = put(p, k + kl + 1, vl);
        p = put(p, "\r\n", 2);
    }
    if (ctype && !has_type) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, ctype, strlen(ctype));
        p = put(p, "\r\n", 2);
    }
    if (chunked) {
        p = put(p, "Transfer-Encoding: chunked\r\n", 28);
    } else if (body_len >= 0 && has_body && !has_length) {
        n = (size_t)snprintf(num, sizeof num, "Content-Length: %lld\r\n", (long long)body_len);
        p = put(p, num, n);
    }
    if (close)
        p = put(p, "Connection: close\r\n", 19);
    else if (c->head.minor == 0)
        p = put(p, "Connection: keep-alive\r\n", 24);
    c->close_after = close;
    if (n) {
        /* http_header_block starts with the Date's value. */
        p = put(p, "Date: ", 6);
        p = put(p, block, strlen(block));
        p = put(p, "\r\n", 2);
    } else {
        /* A CSP too long for the block: the lines one by one. */
        p = put(p, "X-Request-Id: ", 14);
        p = put(p, req->id, strlen(req->id));
        PUTS(p, "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin"
                "\r\nX-Frame-Options: DENY\r\n");
        if (csp) {
            PUTS(p, "Content-Security-Policy: ");
            p = put(p, csp, strlen(csp));
            PUTS(p, "\r\n");
        }
    }
    p = put(p, "\r\n", 2);
    evbuffer_add(c->out, srv->head_buf, (size_t)(p - srv->head_buf));
}

struct evbuffer *http_file_buffer(int fd, int64_t off, int64_t len)
{
    struct evbuffer *buf = evbuffer_new();

    if (buf)
        evbuffer_set_flags(buf, EVBUFFER_FLAG_DRAINS_TO_FD);
    if (!buf || (len > 0 && evbuffer_add_file(buf, fd, (ev_off_t)off, (ev_off_t)len) < 0)) {
        if (buf)
            evbuffer_free(buf);
        close(fd);
        return NULL;
    }
    if (len == 0)
        close(fd);
    return buf;
}

/* The log line and the metrics of an answered request; then its state
 * goes, and the connection writes (and may be freed) or, dead, is freed. */
static void request_done(struct http_req *req, int status)
{
    struct http_server *srv = req->srv;
    struct conn *c = req->conn;
    double ms = elapsed_ms(&req->start);

    if (srv)    /* NULL: orphaned by http_server_free */
        metrics_observe_request(srv->metrics, req->route, status, ms / 1e3);
    log_request(req->id, method_names[req->method], req->route, req->path ? req->path : "",
                status, ms, req->log_user);
    request_end(c);
    if (c->fd >= 0)
        conn_flush(c);
    else if (!c->processing)
        conn_free(c);
}

void http_reply_buffer(struct http_req *req, int status,
                       const char *content_type, struct evbuffer *body)
{
    struct conn *c = req->conn;

    if (content_type)
        http_add_header(req, "Content-Type", content_type);
    if (c->fd >= 0) {
        bool has_body = status != 204 && status != 304 && status >= 200;
        write_head(req, status, (int64_t)evbuffer_get_length(body), false);
        /* The body's chains move (no copy; sendfile segments stay so). */
        if (c->fd >= 0 && has_body && req->method != HTTP_HEAD)
            evbuffer_add_buffer(c->out, body);
        if (c->fd >= 0)
            set_state(c, CONN_WRITING);
    }
    request_done(req, status);
}

void http_reply(struct http_req *req, int status, const char *content_type,
                const char *body, size_t len)
{
    struct evbuffer *buf = req->srv ? req->srv->scratch : NULL;

    if (!buf) {     /* orphaned: nothing is sent */
        http_reply_buffer(req, status, content_type, NULL);
        return;
    }
    /* The scratch buffer is empty between replies: its chains move to the
     * connection (what stays, a HEAD's or a gone client's, is drained). */
    if (len)
        evbuffer_add(buf, body, len);
    http_reply_buffer(req, status, content_type, buf);
    evbuffer_drain(buf, evbuffer_get_length(buf));
}

void http_reply_ref(struct http_req *req, int status, const char *content_type,
                    const void *body, size_t len,
                    void (*release)(const void *body, size_t len, void *arg), void *arg)
{
    struct evbuffer *buf = req->srv ? req->srv->scratch : NULL;

    /* evbuffer calls release when the chain is sent or freed; on failure
     * (or nothing to send) the bytes are copied and released now. */
    if (!buf || !len || evbuffer_add_reference(buf, body, len, release, arg) < 0) {
        http_reply(req, status, content_type, body, len);
        release(body, len, arg);
        return;
    }
    http_reply_buffer(req, status, content_type, buf);
    evbuffer_drain(buf, evbuffer_get_length(buf));
}

/* ---- streamed replies (server-sent events; added for tasks/build.c) ---------- */

void http_reply_start(struct http_req *req, int status, const char *content_type)
{
    struct conn *c = req->conn;

    if (content_type)
        http_add_header(req, "Content-Type", content_type);
    /* A stream of a file may be cacheable: its owner says so first. */
    if (!http_reply_header(req, "Cache-Control"))
        http_add_header(req, "Cache-Control", "no-cache");
    req->stream_status = status;
    if (c->fd < 0)
        return;
    req->stream_body = status != 204 && status != 304 && status >= 200 &&
                       req->method != HTTP_HEAD;
    /* A 1.0 client's stream ends at the close. */
    req->chunked = req->stream_body && c->head.minor >= 1;
    if (req->stream_body && !req->chunked)
        c->close_after = true;
    write_head(req, status, -1, req->chunked);
    if (c->fd < 0)
        return;
    /* The client of a stream sends nothing: no read timeout (none is set
     * while a request is handled); a stalled write still ends it. */
    set_state(c, CONN_STREAMING);
    conn_flush(c);
}

void http_req_set_log_user(struct http_req *req, const char *user_uuid)
{
    snprintf(req->log_user, sizeof req->log_user, "%s", user_uuid ? user_uuid : "");
}

size_t http_reply_pending(const struct http_req *req)
{
    const struct conn *c = req->conn;

    return c->fd >= 0 ? evbuffer_get_length(c->out) : 0;
}

/* Frames len body bytes (their chunk header; the data follows it). */
static void chunk_head(struct conn *c, size_t len)
{
    char hdr[24];
    int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);

    evbuffer_add(c->out, hdr, (size_t)n);
}

int http_reply_chunk_buffer(struct http_req *req, struct evbuffer *buf)
{
    struct conn *c = req->conn;
    size_t len = evbuffer_get_length(buf);

    if (c->fd < 0 || c->state != CONN_STREAMING)
        return -1;
    if (len == 0 || !req->stream_body) {
        evbuffer_drain(buf, len);
        return 0;
    }
    /* The bytes move out of buf (no copy); the caller keeps the unsent
     * total bounded by waiting on http_reply_pending. */
    if (req->chunked)
        chunk_head(c, len);
    evbuffer_add_buffer(c->out, buf);
    if (req->chunked)
        evbuffer_add(c->out, "\r\n", 2);
    conn_flush(c);
    return 0;
}

int http_reply_chunk(struct http_req *req, const void *data, size_t len)
{
    struct conn *c = req->conn;

    if (c->fd < 0 || c->state != CONN_STREAMING ||
        evbuffer_get_length(c->out) > HTTP_STREAM_MAX_BUFFERED)
        return -1;
    if (len == 0 || !req->stream_body)
        return 0;
    if (req->chunked)
        chunk_head(c, len);
    if (evbuffer_add(c->out, data, len) < 0)
        return -1;
    if (req->chunked)
        evbuffer_add(c->out, "\r\n", 2);
    conn_flush(c);
    return 0;
}

void http_reply_end(struct http_req *req)
{
    struct conn *c = req->conn;

    if (c->fd >= 0) {
        if (c->state == CONN_STREAMING && req->chunked)
            evbuffer_add(c->out, "0\r\n\r\n", 5);
        set_state(c, CONN_WRITING);
    }
    request_done(req, req->stream_status);
}

void http_reply_abort(struct http_req *req)
{
    struct conn *c = req->conn;

    /* The socket is shut before the last chunk: the client sees a broken
     * body (and caches nothing), never a short one that looks whole. */
    if (c->fd >= 0) {
        shutdown(c->fd, SHUT_RDWR);
        conn_shut(c);
    }
    request_done(req, req->stream_status);
}

struct event_base *http_event_base_new(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base;

    if (!ec)
        return NULL;
    /* The change list's one caveat is a descriptor dup()ed while watched
     * (libevent's event_config_set_flag): none is here. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}
