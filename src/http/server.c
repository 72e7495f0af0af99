/* server: the HTTP listener, on libevent's evhttp.  Every evhttp call of
 * the project is in this file, so the parser can be swapped for another
 * without touching a handler.  evhttp, not libevhtp: libevhtp truncates a
 * request path split across TCP reads or longer than 4 KiB (see
 * DESIGN.md). */
#include "studyhub/http/server.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/metrics.h"
#include "studyhub/core/ptrmap.h"
#include "studyhub/core/util.h"
#include "studyhub/http/conns.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"

struct http_server {
    struct event_base *base;            /* borrowed */
    const struct config *cfg;           /* borrowed */
    const struct router *router;        /* borrowed */
    struct metrics *metrics;            /* borrowed */
    http_gate_fn gate;                  /* runs matched routes */
    http_fallback_fn fallback;          /* answers unmatched paths; NULL: JSON 404 */
    void *arg;                          /* given to the gate; borrowed */
    struct evhttp *http;                /* owned */
    struct evhttp_bound_socket *bound;  /* owned by http; NULL once closed */
    int port;                           /* bound port */
    unsigned inflight;                  /* requests not yet answered */
    struct ptrmap writing;              /* connections with a reply not yet sent */
    bool draining;                      /* stop_accepting was called */
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
    struct evbuffer *scratch;           /* owned: http_reply's body, emptied by
                                         * each send (evhttp moves its chains) */
};

struct http_req {
    struct http_server *srv;        /* borrowed */
    struct evhttp_request *ev;      /* owned by evhttp until we reply */
    enum http_method method;
    char *path;                     /* decoded path (owned) */
    const char *query_raw;          /* borrowed from the evhttp uri; "" if none */
    struct evkeyvalq query;         /* parsed lazily (owned entries) */
    bool query_parsed;
    struct router_match match;      /* route and parameters */
    const char *route;              /* pattern, or "unmatched" (static) */
    char id[65];                    /* request id */
    char *body;                     /* NUL-terminated copy, lazily (owned) */
    size_t body_len;
    void *data;                     /* handler data (owned via data_free) */
    void (*data_free)(void *);
    struct timespec start;          /* monotonic */
    int stream_status;              /* http_reply_start's status (streams) */
    char log_user[37];              /* the caller's uuid for the log line, "" if none */
};

static enum http_method method_of(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return HTTP_GET;
    case EVHTTP_REQ_HEAD: return HTTP_HEAD;
    case EVHTTP_REQ_POST: return HTTP_POST;
    case EVHTTP_REQ_PUT: return HTTP_PUT;
    case EVHTTP_REQ_PATCH: return HTTP_PATCH;
    case EVHTTP_REQ_DELETE: return HTTP_DELETE;
    case EVHTTP_REQ_OPTIONS: return HTTP_OPTIONS;
    default: return HTTP_OTHER;
    }
}

static const char *const method_names[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"
};

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

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_server *srv = arg;

    /* A connection that fails mid-write never completes its reply. */
    ptrmap_del(&srv->writing, evcon);
}

static void on_reply_sent(struct evhttp_request *ev, void *arg)
{
    struct http_server *srv = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);

    ptrmap_del(&srv->writing, evcon);
    http_conns_reply_done(srv->conns, evcon);
}

/* A reply is being written on evcon: drain waits for it. */
static void writing_add(struct http_server *srv, struct evhttp_request *ev)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);

    /* Out of memory: drain may not wait for this one reply. */
    if (ptrmap_put(&srv->writing, evcon, evcon) < 0)
        log_warn("http: out of memory tracking a reply");
    evhttp_request_set_on_complete_cb(ev, on_reply_sent, srv);
}

static void req_free(struct http_req *req)
{
    if (req->data_free && req->data)
        req->data_free(req->data);
    if (req->query_parsed)
        evhttp_clear_headers(&req->query);
    free(req->path);
    free(req->body);
    free(req);
}

#define HEADER_HARD_LIMIT_FACTOR 4

/* The request line and headers as they came, give or take the spaces. */
static size_t header_bytes(struct evhttp_request *ev)
{
    const struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
    const char *uri = evhttp_request_get_uri(ev);
    size_t n = (uri ? strlen(uri) : 0) + 20;   /* method, version, CRLF */

    for (const struct evkeyval *kv = TAILQ_FIRST(h); kv; kv = TAILQ_NEXT(kv, next))
        n += strlen(kv->key) + strlen(kv->value) + 4;
    return n;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    struct http_server *srv = arg;
    struct http_req *req = calloc(1, sizeof *req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    const char *raw_path, *hdr;
    size_t path_len = 0;
    char allow[128];

    if (!req) {
        evhttp_send_error(ev, 503, "Out of memory");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    req->srv = srv;
    req->ev = ev;
    req->route = "unmatched";
    req->method = method_of(evhttp_request_get_command(ev));
    srv->inflight++;

    if (evcon)
        http_conns_request_in(srv->conns, evcon);

    hdr = evhttp_find_header(evhttp_request_get_input_headers(ev), "X-Request-Id");
    if (hdr && request_id_ok(hdr))
        snprintf(req->id, sizeof req->id, "%s", hdr);
    else
        snprintf(req->id, sizeof req->id, "%s%08llx", srv->id_prefix,
                 (unsigned long long)++srv->id_counter);

    if (header_bytes(ev) > (size_t)srv->cfg->max_header_bytes) {
        http_add_header(req, "Connection", "close");
        jsonapi_reply_errorf(req, 431, "request_header_fields_too_large", NULL,
                             "The request line and headers exceed %ld bytes.",
                             srv->cfg->max_header_bytes);
        return;
    }
    raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    req->query_raw = uri && evhttp_uri_get_query(uri) ? evhttp_uri_get_query(uri) : "";
    req->path = evhttp_uridecode(raw_path && *raw_path ? raw_path : "/", 0, &path_len);
    if (!req->path || strlen(req->path) != path_len) {
        /* A %00 in the path: nothing we serve has one. */
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "Malformed request path.");
        return;
    }

    /* A runner page is served sandboxed (an opaque origin: Origin: null),
     * so its calls to the API are cross-origin; they carry a runner key in
     * Authorization and no cookies (domain/participate_runner.h). */
    hdr = evhttp_find_header(evhttp_request_get_input_headers(ev), "Origin");
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

/* The server whose listener is open.  The listener's callback argument is
 * evhttp's, so the error callback finds its server here: one listening
 * server per process, as studyhub runs. */
static struct http_server *accepting_server;

static void on_accept_pause_end(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;

    (void)fd;
    (void)what;
    if (srv->bound && !srv->draining)
        evconnlistener_enable(evhttp_bound_socket_get_listener(srv->bound));
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
    struct http_server *srv = accepting_server;
    int err = EVUTIL_SOCKET_ERROR();
    long dropped;

    (void)arg;  /* evhttp's own pointer: the listener belongs to it */
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        if (log_limit_pass(&limit, 5, &dropped))
            log_warn("http: accept failed: %s (%ld more suppressed)",
                     strerror(err), dropped);
        return;
    }
    if (!srv)
        return;
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
    srv->http = evhttp_new(base);
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    srv->accept_pause = evtimer_new(base, on_accept_pause_end, srv);
    srv->scratch = evbuffer_new();
    srv->date.second = -1;
    srv->conns = http_conns_new(base, &(struct http_conns_limits){
                                    .header_timeout_s = (int)cfg->request_header_timeout_s,
                                    .min_rate = cfg->request_min_rate,
                                    .max_per_addr = (int)cfg->max_conns_per_addr,
                                }, on_conn_close, srv);
    if (!srv->http || !srv->accept_pause || !srv->conns || !srv->scratch) {
        http_server_free(srv);
        return NULL;
    }
    http_conns_attach(srv->conns, srv->http);
    util_random_hex(4, rnd);
    snprintf(srv->id_prefix, sizeof srv->id_prefix, "%s", rnd);
    /* evhttp's own limit answers a bare 400 and closes; ours (on_request)
     * answers 431 with a JSON:API error, so evhttp's is set well above it
     * and only stops what is absurd. */
    evhttp_set_max_headers_size(srv->http,
                                (ev_ssize_t)cfg->max_header_bytes * HEADER_HARD_LIMIT_FACTOR);
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)cfg->max_body_bytes);
    evhttp_set_timeout(srv->http, (int)cfg->idle_timeout_s);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
                               EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(srv->http, JSONAPI_MEDIA_TYPE);
    evhttp_set_gencb(srv->http, on_request, srv);
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
    if (!srv)
        return;
    if (srv->http)
        evhttp_free(srv->http);     /* closes connections; closecbs run */
    if (srv->accept_pause)
        event_free(srv->accept_pause);
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    if (accepting_server == srv)
        accepting_server = NULL;
    http_conns_free(srv->conns);     /* after evhttp_free (see conns.h) */
    ptrmap_cleanup(&srv->writing);
    if (srv->scratch)
        evbuffer_free(srv->scratch);
    free(srv->page_csp);
    free(srv);
}

int http_server_listen(struct http_server *srv, const char *addr, int port)
{
    srv->bound = evhttp_bind_socket_with_handle(srv->http, addr, (ev_uint16_t)port);
    if (!srv->bound)
        return -1;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(srv->bound),
                                on_accept_error);
    accepting_server = srv;
    srv->base_url[0] = '\0';   /* the port may be new */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->bound);
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
    if (srv->bound) {
        evhttp_del_accept_socket(srv->http, srv->bound);
        srv->bound = NULL;
    }
    srv->draining = true;
}

unsigned http_server_inflight(const struct http_server *srv)
{
    /* A reply still in the socket buffer is in flight too: exiting before
     * it is written would cut it off. */
    return srv->inflight + (unsigned)ptrmap_count(&srv->writing);
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
    if (!req->query_parsed) {
        TAILQ_INIT(&req->query);
        req->query_parsed = true;
        if (*req->query_raw && evhttp_parse_query_str(req->query_raw, &req->query) < 0) {
            evhttp_clear_headers(&req->query);
            TAILQ_INIT(&req->query);
        }
    }
    return evhttp_find_header(&req->query, key);
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
    struct http_req *r = (struct http_req *)req;  /* lazily cached */
    if (!r->body) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
        size_t n = evbuffer_get_length(in);
        r->body = malloc(n + 1);
        if (!r->body) {
            if (len)
                *len = 0;
            return "";
        }
        evbuffer_copyout(in, r->body, n);
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

const char *http_req_peer(const struct http_req *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    char *addr = NULL;
    ev_uint16_t port;
    if (!evcon)
        return "";
    evhttp_connection_get_peer(evcon, &addr, &port);
    return addr ? addr : "";
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

bool http_req_client_gone(const struct http_req *req)
{
    /* evhttp detaches a request from its connection when the client goes. */
    return evhttp_request_get_connection(req->ev) == NULL;
}

void http_add_header(struct http_req *req, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(req->ev), name, value);
}

/* ---- the fixed headers, as one block ---------------------------------- */

void http_date_format(time_t t, char out[30])
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    char tmp[96];   /* what the compiler cannot bound; the year is 4 digits */

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 29);
    out[29] = '\0';
}

const char *http_date_cached(struct http_date_cache *c, time_t t)
{
    if (c->second != t || !c->text[0]) {
        http_date_format(t, c->text);
        c->second = t;
    }
    return c->text;
}

static char *block_put(char *p, char *end, const char *s)
{
    size_t n = strlen(s);

    if (!p || (size_t)(end - p) < n)
        return NULL;
    memcpy(p, s, n);
    return p + n;
}

size_t http_header_block(char *out, size_t cap, const char *date,
                         const char *request_id, const char *csp)
{
    char *p = out, *end = out + cap;

    p = block_put(p, end, date);
    p = block_put(p, end, "\r\nX-Request-Id: ");
    p = block_put(p, end, request_id);
    p = block_put(p, end, "\r\nX-Content-Type-Options: nosniff"
                          "\r\nReferrer-Policy: same-origin"
                          "\r\nX-Frame-Options: DENY");
    if (csp) {
        p = block_put(p, end, "\r\nContent-Security-Policy: ");
        p = block_put(p, end, csp);
    }
    if (!p || p == end)
        return 0;
    *p = '\0';
    return (size_t)(p - out);
}

/* The headers every reply carries (see server.h), with its Date and
 * X-Request-Id: one place, so no error path, stream or file reply can
 * leave them out.  They go in as one header entry named Date whose value
 * holds the other lines (evhttp writes each entry as "key: value\r\n"):
 * three allocations and one formatted write instead of three per header
 * and one each, and evhttp, finding a Date, formats none of its own.  The
 * values are ours (the request id is checked by request_id_ok, the CSP by
 * http_server_set_media_origin), so skipping evhttp_add_header's check
 * for line breaks lets nothing in. */
static void add_fixed_headers(struct http_req *req, struct evkeyvalq *out,
                              const char *content_type)
{
    struct http_server *srv = req->srv;
    const char *csp = NULL;
    char block[2048];
    struct timeval now;
    size_t n;

    if (!evhttp_find_header(out, "Content-Security-Policy")) {
        bool html = content_type && strncasecmp(content_type, "text/html", 9) == 0;
        csp = html ? (srv->page_csp ? srv->page_csp : HTTP_PAGE_CSP) : HTTP_BASE_CSP;
    }
    if (event_base_gettimeofday_cached(srv->base, &now) < 0)
        gettimeofday(&now, NULL);
    n = http_header_block(block, sizeof block, http_date_cached(&srv->date, now.tv_sec),
                          req->id, csp);
    struct evkeyval *kv = n ? malloc(sizeof *kv) : NULL;
    if (kv) {
        kv->key = strdup("Date");
        kv->value = malloc(n + 1);
        if (kv->key && kv->value) {
            memcpy(kv->value, block, n + 1);
            TAILQ_INSERT_TAIL(out, kv, next);
            return;
        }
        free(kv->key);
        free(kv->value);
        free(kv);
    }
    /* Out of memory (or a CSP too long for the block): one by one. */
    evhttp_add_header(out, "X-Request-Id", req->id);
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Referrer-Policy", "same-origin");
    evhttp_add_header(out, "X-Frame-Options", "DENY");
    if (csp)
        evhttp_add_header(out, "Content-Security-Policy", csp);
}

const char *http_reply_header(const struct http_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_output_headers(req->ev), name);
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

/* The reply just queued on evcon, written at once instead of on the next
 * loop pass: evhttp would turn EV_WRITE on, wait for epoll to say the
 * socket is writable (it is: the reply is small), write, and turn EV_WRITE
 * off, two epoll_ctl per request.  Written here, evhttp is told the
 * output drained as its own write callback would (bufferevent_trigger),
 * and the change list cancels the on and the off.  A reply the socket
 * does not take whole (large, or a slow client) goes on as before. */
static void write_now(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    struct evbuffer *out;
    int fd;

    if (!bev || (fd = bufferevent_getfd(bev)) < 0)
        return;
    out = bufferevent_get_output(bev);
    /* evhttp may free the connection from the trigger: bev stays ours
     * until the decref. */
    bufferevent_incref(bev);
    /* A bufferevent keeps its output's front frozen but while it writes
     * itself: a write that cannot drain what it sent would send it twice. */
    evbuffer_unfreeze(out, 1);
    for (int i = 0; i < 2 && evbuffer_get_length(out) > 0; i++)
        if (evbuffer_write(out, fd) <= 0)
            break;
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) == 0)
        bufferevent_trigger(bev, EV_WRITE, 0);
    bufferevent_decref(bev);
}

void http_reply_buffer(struct http_req *req, int status,
                       const char *content_type, struct evbuffer *body)
{
    struct http_server *srv = req->srv;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    double ms;

    if (content_type)
        evhttp_add_header(out, "Content-Type", content_type);
    add_fixed_headers(req, out, content_type);
    if (srv->draining)
        evhttp_add_header(out, "Connection", "close");
    /* evhttp calls on_complete once the reply is written; a request whose
     * client has gone is freed at once instead, without it. */
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    if (evcon)
        writing_add(srv, req->ev);
    evhttp_send_reply(req->ev, status, NULL, body);
    if (evcon)
        write_now(evcon);
    ms = elapsed_ms(&req->start);
    metrics_observe_request(srv->metrics, req->route, status, ms / 1e3);
    log_request(req->id, method_names[req->method], req->route, req->path ? req->path : "",
                status, ms, req->log_user);
    srv->inflight--;
    req_free(req);
}

void http_reply(struct http_req *req, int status, const char *content_type,
                const char *body, size_t len)
{
    struct evbuffer *buf = req->srv->scratch;

    /* The scratch buffer is empty between replies: evhttp_send_reply
     * moves its chains to the connection (or, the client gone, the
     * request's own buffer is freed and this one is drained below). */
    if (len)
        evbuffer_add(buf, body, len);
    http_reply_buffer(req, status, content_type, buf);
    evbuffer_drain(buf, evbuffer_get_length(buf));
}

/* ---- streamed replies (server-sent events; added for tasks/build.c) ---------- */

void http_reply_start(struct http_req *req, int status, const char *content_type)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    struct evhttp_connection *evcon;

    if (content_type)
        evhttp_add_header(out, "Content-Type", content_type);
    /* A stream of a file may be cacheable: its owner says so first. */
    if (!evhttp_find_header(out, "Cache-Control"))
        evhttp_add_header(out, "Cache-Control", "no-cache");
    add_fixed_headers(req, out, content_type);
    if (req->srv->draining)
        evhttp_add_header(out, "Connection", "close");
    req->stream_status = status;
    evhttp_send_reply_start(req->ev, status, NULL);
    /* After the start, which (re)enables reading: the client of a stream
     * sends nothing, so only a stalled write ends the connection. */
    evcon = evhttp_request_get_connection(req->ev);
    if (evcon) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        struct timeval wtv = { req->srv->cfg->idle_timeout_s, 0 };
        if (bev)
            bufferevent_set_timeouts(bev, NULL, &wtv);
    }
}

void http_req_set_log_user(struct http_req *req, const char *user_uuid)
{
    snprintf(req->log_user, sizeof req->log_user, "%s", user_uuid ? user_uuid : "");
}

size_t http_reply_pending(const struct http_req *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

int http_reply_chunk_buffer(struct http_req *req, struct evbuffer *buf)
{
    if (!evhttp_request_get_connection(req->ev))
        return -1;
    /* evhttp moves the bytes out of buf (no copy); the caller keeps the
     * unsent total bounded by waiting on http_reply_pending. */
    evhttp_send_reply_chunk(req->ev, buf);
    return 0;
}

int http_reply_chunk(struct http_req *req, const void *data, size_t len)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    struct bufferevent *bev;
    struct evbuffer *buf;

    if (!evcon)
        return -1;
    bev = evhttp_connection_get_bufferevent(evcon);
    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > HTTP_STREAM_MAX_BUFFERED)
        return -1;
    buf = evbuffer_new();
    if (!buf || evbuffer_add(buf, data, len) < 0) {
        if (buf)
            evbuffer_free(buf);
        return -1;
    }
    evhttp_send_reply_chunk(req->ev, buf);
    evbuffer_free(buf);
    return 0;
}

void http_reply_end(struct http_req *req)
{
    struct http_server *srv = req->srv;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    double ms;

    if (evcon)
        writing_add(srv, req->ev);
    /* Frees the evhttp request (at once when the client has gone). */
    evhttp_send_reply_end(req->ev);
    ms = elapsed_ms(&req->start);
    metrics_observe_request(srv->metrics, req->route, req->stream_status, ms / 1e3);
    log_request(req->id, method_names[req->method], req->route, req->path ? req->path : "",
                req->stream_status, ms, req->log_user);
    srv->inflight--;
    req_free(req);
}

void http_reply_abort(struct http_req *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req->ev);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

    /* The socket is shut before the last chunk: the client sees a broken
     * body (and caches nothing), never a short one that looks whole. */
    if (bev && bufferevent_getfd(bev) >= 0)
        shutdown(bufferevent_getfd(bev), SHUT_RDWR);
    http_reply_end(req);
}
