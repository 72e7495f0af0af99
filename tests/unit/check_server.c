/* Unit tests of server over loopback: a real server on its own loop with a
 * tiny router (an echo of what the request carried, and a handler that
 * holds its request until the test releases it from a timer), and a raw
 * client socket whose bytes are read by the same loop.  Every wait runs
 * the loop until a condition holds (the 10 s deadline only stops a hang),
 * so nothing depends on timing. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "studyhub/core/config.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "unit_loop.h"
#include "unit_main.h"

static struct event_base *base;
static struct config cfg;
static struct router *router;
static struct http_server *srv;

/* The later handler's request, answered by on_release. */
static struct http_req *held;
static int held_count, released;
static bool gone_at_reply;
static char base_url_at_reply[128];
static struct event *release_ev;

/* ---- the loop ----------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until cond holds (evaluated once a turn: it may take
 * what it found). */
#define RUN_UNTIL(cond)                                                      \
    do {                                                                     \
        int expired_ = 0, ok_;                                               \
        struct timeval tv_ = { 10, 0 };                                      \
        struct event *t_ = evtimer_new(base, on_deadline, &expired_);        \
        evtimer_add(t_, &tv_);                                               \
        while (!(ok_ = !!(cond)) && !expired_)                               \
            event_base_loop(base, EVLOOP_ONCE);                              \
        event_free(t_);                                                      \
        ck_assert_msg(ok_, "timed out waiting for %s", #cond);              \
    } while (0)

/* ---- handlers ----------------------------------------------------------- */

/* What the request carried, one fact a line; X-Keys: a,b names query
 * keys whose values (or "-") follow. */
static void echo_reply(struct http_req *req)
{
    char out[4096], keys[256];
    size_t blen;
    const char *body = http_req_body(req, &blen);
    const char *k = http_req_header(req, "X-Keys");
    int n = snprintf(out, sizeof out, "%s %s\npath=%s\nquery=%s\nbody=%zu:%s\n",
                     http_req_method_name(req), http_req_route(req), http_req_path(req),
                     http_req_query_string(req), blen, body);

    snprintf(keys, sizeof keys, "%s", k ? k : "");
    for (char *save, *key = strtok_r(keys, ",", &save); key; key = strtok_r(NULL, ",", &save)) {
        const char *v = http_req_query(req, key);
        n += snprintf(out + n, sizeof out - (size_t)n, "%s=%s\n", key, v ? v : "-");
    }
    ck_assert_int_lt(n, (int)sizeof out);
    http_reply(req, 200, "text/plain", out, (size_t)n);
}

static void echo(struct http_req *req, struct app *app)
{
    (void)app;
    echo_reply(req);
}

static void fallback(struct http_req *req, void *arg)
{
    (void)arg;
    echo_reply(req);
}

static void later(struct http_req *req, struct app *app)
{
    (void)app;
    ck_assert_ptr_null(held);
    held = req;
    held_count++;
}

static void on_release(evutil_socket_t fd, short what, void *arg)
{
    struct http_req *req = held;

    (void)fd;
    (void)what;
    (void)arg;
    held = NULL;
    gone_at_reply = http_req_client_gone(req);
    snprintf(base_url_at_reply, sizeof base_url_at_reply, "%s", http_req_base_url(req));
    http_add_header(req, "X-Later", "1");
    http_reply(req, 200, "text/plain", "later\n", 6);
    released++;
}

/* The held request is answered from a timer, as a handler whose query
 * came back would. */
static void release_later(void)
{
    struct timeval now = { 0, 0 };

    ck_assert_ptr_nonnull(held);
    evtimer_add(release_ev, &now);
}

/* /ref: a body sent by reference; how often, and with what, it was
 * released. */
static const char ref_body[] = "by reference\n";
static int ref_releases;
static const void *ref_released_body;

static void ref_release(const void *body, size_t len, void *arg)
{
    ck_assert_uint_eq(len, sizeof ref_body - 1);
    ck_assert_ptr_eq(arg, &ref_releases);
    ref_released_body = body;
    ref_releases++;
}

static void ref(struct http_req *req, struct app *app)
{
    (void)app;
    http_reply_ref(req, 200, "text/plain", ref_body, sizeof ref_body - 1, ref_release,
                   &ref_releases);
}

static void gate(struct http_req *req, const struct route *route, void *arg)
{
    route->handler(req, arg);
}

static const struct route routes[] = {
    { HTTP_GET, "/echo", echo, ROUTE_PUBLIC },
    { HTTP_POST, "/echo", echo, ROUTE_PUBLIC },
    { HTTP_GET, "/a/b", echo, ROUTE_PUBLIC },
    { HTTP_GET, "/later", later, ROUTE_PUBLIC },
    { HTTP_GET, "/ref", ref, ROUTE_PUBLIC },
    { HTTP_HEAD, "/ref", ref, ROUTE_PUBLIC },
};

/* ---- the client --------------------------------------------------------- */

struct client {
    int fd;
    struct event *ev;
    char buf[65536];
    size_t len;
    bool eof;           /* the server closed (FIN or reset) */
};

struct reply {
    int status;
    char head[4096];
    char body[8192];
};

static void on_client(evutil_socket_t fd, short what, void *arg)
{
    struct client *cl = arg;

    (void)what;
    for (;;) {
        ck_assert_uint_lt(cl->len, sizeof cl->buf - 1);
        ssize_t n = read(fd, cl->buf + cl->len, sizeof cl->buf - 1 - cl->len);
        if (n > 0) {
            cl->len += (size_t)n;
            cl->buf[cl->len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            cl->eof = true;
            event_del(cl->ev);
        }
        return;
    }
}

static struct client *client_open(void)
{
    struct client *cl = calloc(1, sizeof *cl);
    struct sockaddr_in sa = { .sin_family = AF_INET };

    ck_assert_ptr_nonnull(cl);
    sa.sin_port = htons((uint16_t)http_server_port(srv));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(cl->fd, 0);
    /* The kernel completes it from the backlog; the loop accepts it. */
    ck_assert_int_eq(connect(cl->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(fcntl(cl->fd, F_SETFL, O_NONBLOCK), 0);
    cl->ev = event_new(base, cl->fd, EV_READ | EV_PERSIST, on_client, cl);
    event_add(cl->ev, NULL);
    return cl;
}

static void client_close(struct client *cl)
{
    event_free(cl->ev);
    if (cl->fd >= 0)
        close(cl->fd);
    free(cl);
}

static void send_str(struct client *cl, const char *s)
{
    ck_assert_int_eq(write(cl->fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Header name's value in a reply head (into a static buffer), or NULL. */
static const char *header_of(const char *head, const char *name)
{
    static char out[1024];
    size_t nl = strlen(name);

    for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *p = l + 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, sizeof out, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return out;
        }
    }
    return NULL;
}

/* The first whole reply in cl's buffer, taken off it: true, or false while
 * it is not all in.  Replies here carry Content-Length. */
static bool take_reply(struct client *cl, struct reply *r)
{
    char *end = strstr(cl->buf, "\r\n\r\n");
    const char *cl_hdr;
    size_t hlen, blen;

    if (!end)
        return false;
    hlen = (size_t)(end + 4 - cl->buf);
    ck_assert_uint_lt(hlen, sizeof r->head);
    memcpy(r->head, cl->buf, hlen);
    r->head[hlen] = '\0';
    cl_hdr = header_of(r->head, "Content-Length");
    ck_assert_ptr_nonnull(cl_hdr);
    blen = (size_t)strtoul(cl_hdr, NULL, 10);
    if (cl->len < hlen + blen)
        return false;
    ck_assert_uint_lt(blen, sizeof r->body);
    memcpy(r->body, cl->buf + hlen, blen);
    r->body[blen] = '\0';
    ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    memmove(cl->buf, cl->buf + hlen + blen, cl->len - hlen - blen + 1);
    cl->len -= hlen + blen;
    return true;
}

/* Runs the loop until a whole reply is in, and takes it. */
static void await_reply(struct client *cl, struct reply *r)
{
    bool got = false;

    RUN_UNTIL((got = take_reply(cl, r)) || cl->eof);
    ck_assert_msg(got, "closed without a reply");
}

/* ---- the fixture -------------------------------------------------------- */

static const char *no_env(const char *name, void *arg)
{
    (void)name;
    (void)arg;
    return NULL;
}

static void setup(void)
{
    char err[256] = "";

    ck_assert_msg(config_load(&cfg, no_env, NULL, err, sizeof err) == 0, "%s", err);
    base = http_event_base_new();
    ck_assert_ptr_nonnull(base);
    router = router_new();
    ck_assert_ptr_nonnull(router);
    ck_assert_int_eq(ROUTER_ADD_TABLE(router, routes), 0);
    srv = http_server_new(base, &cfg, router, NULL, gate, NULL);
    ck_assert_ptr_nonnull(srv);
    http_server_set_fallback(srv, fallback);
    ck_assert_int_eq(http_server_listen(srv, "127.0.0.1", 0), 0);
    release_ev = evtimer_new(base, on_release, NULL);
    held = NULL;
    held_count = released = 0;
    gone_at_reply = false;
    ref_releases = 0;
    ref_released_body = NULL;
}

static void teardown(void)
{
    ck_assert_ptr_null(held);   /* every test answers what it held */
    http_server_free(srv);
    srv = NULL;
    event_free(release_ev);
    router_free(router);
    unit_loop_free(base);
    config_cleanup(&cfg);
}

#define GET(target) "GET " target " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests -------------------------------------------------------------- */

START_TEST(echo_and_keep_alive)
{
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "POST /echo\npath=/echo\nquery=x=1\nbody=5:hello\n");
    ck_assert_str_eq(header_of(r.head, "Content-Type"), "text/plain");
    ck_assert_ptr_null(header_of(r.head, "Connection"));   /* 1.1 keeps it open */
    ck_assert_uint_eq(http_server_inflight(srv), 0);
    ck_assert_uint_eq(http_server_connections(srv), 1);
    client_close(cl);
    RUN_UNTIL(http_server_connections(srv) == 0);
}
END_TEST

/* A body sent by reference arrives whole and is released once it is sent;
 * a HEAD's, never sent, is released at once. */
START_TEST(reply_by_reference)
{
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, GET("/ref"));
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, ref_body);
    RUN_UNTIL(ref_releases == 1);
    ck_assert_ptr_eq(ref_released_body, ref_body);
    send_str(cl, "HEAD /ref HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(strstr(cl->buf, "\r\n\r\n"));
    ck_assert_ptr_nonnull(strstr(cl->buf, "Content-Length: 13\r\n"));
    ck_assert_int_eq(ref_releases, 2);
    client_close(cl);
    RUN_UNTIL(http_server_connections(srv) == 0);
    ck_assert_int_eq(ref_releases, 2);
}
END_TEST

/* "//a/b" is an origin-form target whose first segment is empty:
 * http_target_split keeps it as the path, so it matches no route ("/a/b"
 * is another path) and goes to the fallback. */
START_TEST(double_slash_target_is_its_own_path)
{
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, GET("//a/b?x=1"));
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "GET unmatched\npath=//a/b\nquery=x=1\nbody=0:\n");
    send_str(cl, GET("/a/b?x=1"));
    await_reply(cl, &r);
    ck_assert_str_eq(r.body, "GET /a/b\npath=/a/b\nquery=x=1\nbody=0:\n");
    /* Without the fallback: a JSON:API 404. */
    http_server_set_fallback(srv, NULL);
    send_str(cl, GET("//a/b"));
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 404);
    client_close(cl);
}
END_TEST

/* http_req_query reads the first QUERY_MAX_PAIRS (64) pairs only. */
START_TEST(query_pairs_past_64_are_not_found)
{
    struct client *cl = client_open();
    struct reply r = { 0 };
    char req[2048];
    int n = snprintf(req, sizeof req, "GET /echo?");

    for (int i = 0; i < 65; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%sk%d=v%d", i ? "&" : "", i, i);
    snprintf(req + n, sizeof req - (size_t)n,
             " HTTP/1.1\r\nHost: t\r\nX-Keys: k0,k63,k64,K1\r\n\r\n");
    send_str(cl, req);
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\nk0=v0\nk63=v63\nk64=-\nK1=v1\n"));
    client_close(cl);
}
END_TEST

START_TEST(pipelined_requests_are_answered_in_order)
{
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, GET("/echo?n=1") GET("/echo?n=2"));
    await_reply(cl, &r);
    ck_assert_ptr_nonnull(strstr(r.body, "query=n=1\n"));
    await_reply(cl, &r);
    ck_assert_ptr_nonnull(strstr(r.body, "query=n=2\n"));

    /* The second waits in the buffer while the first is at its handler. */
    send_str(cl, GET("/later") "POST /echo?n=3 HTTP/1.1\r\nHost: t\r\n"
                               "Content-Length: 2\r\n\r\nhi" GET("/echo?n=4"));
    RUN_UNTIL(held_count == 1);
    ck_assert_uint_eq(http_server_inflight(srv), 1);
    ck_assert_uint_eq(cl->len, 0);
    release_later();
    await_reply(cl, &r);
    ck_assert_str_eq(r.body, "later\n");
    ck_assert_str_eq(header_of(r.head, "X-Later"), "1");
    ck_assert(!gone_at_reply);
    await_reply(cl, &r);
    ck_assert_str_eq(r.body, "POST /echo\npath=/echo\nquery=n=3\nbody=2:hi\n");
    await_reply(cl, &r);
    ck_assert_ptr_nonnull(strstr(r.body, "query=n=4\n"));
    ck_assert_uint_eq(http_server_inflight(srv), 0);
    client_close(cl);
}
END_TEST

/* A client that half-closes after a whole request counts as gone as soon
 * as the server reads its FIN: a reply already written goes out, but one
 * still at its handler is dropped (HTTP/1.1 would allow answering it). */
START_TEST(half_close_counts_as_gone)
{
    struct client *cl = client_open();
    struct reply r = { 0 };
    char expect_url[64];

    send_str(cl, GET("/echo?n=1"));
    ck_assert_int_eq(shutdown(cl->fd, SHUT_WR), 0);
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 200);
    RUN_UNTIL(cl->eof);
    RUN_UNTIL(http_server_connections(srv) == 0);
    client_close(cl);

    cl = client_open();
    send_str(cl, GET("/later"));
    ck_assert_int_eq(shutdown(cl->fd, SHUT_WR), 0);
    RUN_UNTIL(cl->eof);
    ck_assert_int_eq(held_count, 1);
    ck_assert(http_req_client_gone(held));
    ck_assert_uint_eq(http_server_connections(srv), 0);
    ck_assert_uint_eq(http_server_inflight(srv), 1);
    release_later();
    RUN_UNTIL(released == 1);
    ck_assert(gone_at_reply);
    snprintf(expect_url, sizeof expect_url, "http://127.0.0.1:%d", http_server_port(srv));
    ck_assert_str_eq(base_url_at_reply, expect_url);
    ck_assert_uint_eq(http_server_inflight(srv), 0);
    ck_assert_uint_eq(cl->len, 0);  /* nothing came back */
    client_close(cl);
}
END_TEST

START_TEST(late_reply_after_client_closed)
{
    struct client *cl = client_open();

    send_str(cl, GET("/later"));
    RUN_UNTIL(held_count == 1);
    client_close(cl);
    RUN_UNTIL(http_server_connections(srv) == 0);
    ck_assert_uint_eq(http_server_inflight(srv), 1);
    release_later();
    RUN_UNTIL(released == 1);
    ck_assert(gone_at_reply);
    ck_assert_uint_eq(http_server_inflight(srv), 0);
}
END_TEST

/* A head that does not parse: a JSON:API 400, and the connection closes
 * after it. */
START_TEST(malformed_head_is_400_and_close)
{
    static const char *const bad[] = {
        "GET /echo HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /echo\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost : t\r\n\r\n",
    };
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, bad[_i]);
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(header_of(r.head, "Connection"), "close");
    /* Once: the refusal asks for it and the writer writes it. */
    ck_assert_ptr_null(strstr(strstr(r.head, "Connection: close") + 1, "Connection:"));
    ck_assert_str_eq(header_of(r.head, "Content-Type"), "application/vnd.api+json");
    ck_assert_str_eq(r.body, "{\"errors\":[{\"detail\":\"Malformed request.\","
                             "\"status\":\"400\",\"code\":\"invalid\"}]}");
    RUN_UNTIL(cl->eof);
    ck_assert_uint_eq(cl->len, 0);
    ck_assert_int_eq(held_count, 0);
    ck_assert_uint_eq(http_server_inflight(srv), 0);
    client_close(cl);
}
END_TEST

START_TEST(unknown_method_is_501)
{
    struct client *cl = client_open();
    struct reply r = { 0 };

    send_str(cl, "BREW /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    await_reply(cl, &r);
    ck_assert_int_eq(r.status, 501);
    ck_assert_ptr_nonnull(strstr(r.head, "HTTP/1.1 501 Not Implemented\r\n"));
    ck_assert_str_eq(header_of(r.head, "Connection"), "close");
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"not_implemented\""));
    RUN_UNTIL(cl->eof);
    client_close(cl);
}
END_TEST

/* http_server_free with a request at its handler: the connection is
 * closed at once and freed when the handler answers, with no server left
 * (ASan: no use after free, no leak). */
START_TEST(free_with_request_at_handler)
{
    struct client *cl = client_open(), *idle = client_open();

    send_str(cl, GET("/later"));
    RUN_UNTIL(held_count == 1);
    http_server_free(srv);
    srv = NULL;
    RUN_UNTIL(cl->eof);
    ck_assert_uint_eq(cl->len, 0);
    ck_assert(http_req_client_gone(held));
    release_later();
    RUN_UNTIL(released == 1);
    ck_assert(gone_at_reply);
    ck_assert_str_eq(base_url_at_reply, "");
    client_close(cl);
    client_close(idle);
}
END_TEST

/* The same when the client had gone before the free (a DEAD connection). */
START_TEST(free_with_dead_connection_at_handler)
{
    struct client *cl = client_open();

    send_str(cl, GET("/later"));
    RUN_UNTIL(held_count == 1);
    client_close(cl);
    RUN_UNTIL(http_server_connections(srv) == 0);
    http_server_free(srv);
    srv = NULL;
    release_later();
    RUN_UNTIL(released == 1);
    ck_assert(gone_at_reply);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("server");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, echo_and_keep_alive);
    tcase_add_test(tc, double_slash_target_is_its_own_path);
    tcase_add_test(tc, query_pairs_past_64_are_not_found);
    tcase_add_test(tc, pipelined_requests_are_answered_in_order);
    tcase_add_test(tc, half_close_counts_as_gone);
    tcase_add_test(tc, reply_by_reference);
    tcase_add_test(tc, late_reply_after_client_closed);
    tcase_add_loop_test(tc, malformed_head_is_400_and_close, 0, 3);
    tcase_add_test(tc, unknown_method_is_501);
    tcase_add_test(tc, free_with_request_at_handler);
    tcase_add_test(tc, free_with_dead_connection_at_handler);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
