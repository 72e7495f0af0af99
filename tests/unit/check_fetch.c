/* Unit tests of fetch (io/fetch.c) on a real event loop, against an
 * in-process evhttp stub on 127.0.0.1 on the same loop: a GET answered
 * from the loop, never inside submit; retries of 5xx for idempotent
 * methods only, and the last non-2xx handed over; a refused connection
 * retried then failed; the body limit and a timeout; a PUT's body without
 * Expect; cancel of a running and of a waiting request; a streamed body
 * with pauses.  Every test ends with nothing of ours on the loop. */
#include "config.h"

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "studyhub/io/fetch.h"
#include "unit_stub.h"
#include "unit_main.h"

/* --- the stub's answers ----------------------------------------------------------- */

static int flaky_left;       /* 503s still to send on /flaky */

static void stub_route(struct evhttp_request *req, const char *uri, struct evbuffer *in)
{
    if (!strcmp(uri, "/ok")) {
        reply(req, 200, "hello");
    } else if (!strcmp(uri, "/flaky")) {
        if (flaky_left > 0) {
            flaky_left--;
            reply(req, 503, "busy");
        } else {
            reply(req, 200, "recovered");
        }
    } else if (!strcmp(uri, "/big")) {
        struct evbuffer *b = evbuffer_new();
        static char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 32; i++)
            evbuffer_add(b, chunk, sizeof chunk);
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
    } else if (!strcmp(uri, "/hang")) {
        /* Never answered: evhttp frees it when the client goes away. */
    } else if (!strcmp(uri, "/echo")) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_buffer(b, in);
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Seen", "yes");
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
    } else {
        reply(req, 404, "no route");
    }
}

static char *url(const char *path)
{
    static char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d%s", stub_port, path);
    return u;
}

static void setup(void)
{
    stub_setup("check_fetch");
}

static void teardown(void)
{
    stub_teardown();
}

/* --- fetch -------------------------------------------------------------------- */

struct got {
    int calls;
    int status;
    int attempts;
    bool has_error;
    bool too_large;
    char body[256];
    size_t body_len;
    char seen[16];
};

static void on_got(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    (void)req;
    struct got *g = arg;
    g->calls++;
    g->status = res->status;
    g->attempts = res->attempts;
    g->has_error = res->error != NULL;
    g->too_large = res->body_too_large;
    g->body_len = res->body_len;
    snprintf(g->body, sizeof g->body, "%s", res->body);
    if (!fetch_header(res, "X-Seen", g->seen, sizeof g->seen))
        g->seen[0] = '\0';
}

START_TEST(fetch_get_ok_never_inside_submit)
{
    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = url("/ok"), .done = on_got, .arg = &g };
    ck_assert_ptr_nonnull(fetch_submit(fc, &o));
    ck_assert_int_eq(g.calls, 0);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_str_eq(g.body, "hello");
    ck_assert(!g.has_error);
    ck_assert_int_eq(g.attempts, 1);

    /* A malformed URL is reported from the loop too. */
    struct got b = { 0 };
    struct fetch_opts bad = { .method = "GET", .url = "notaurl:://", .done = on_got, .arg = &b };
    ck_assert_ptr_nonnull(fetch_submit(fc, &bad));
    ck_assert_int_eq(b.calls, 0);
    run_until(&b.calls, 1);
    ck_assert(b.has_error);
    ck_assert_ptr_null(fetch_submit(fc, &(struct fetch_opts){ .method = "GET", .done = on_got }));
}
END_TEST

START_TEST(fetch_retries_5xx_for_idempotent_only)
{
    struct got g = { 0 };
    flaky_left = 2;
    struct fetch_opts o = { .method = "GET", .url = url("/flaky"), .backoff_ms = 10,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_int_eq(g.attempts, 3);
    ck_assert_str_eq(g.body, "recovered");

    /* POST is not repeated unless asked. */
    struct got p = { 0 };
    flaky_left = 1;
    struct fetch_opts po = { .method = "POST", .url = url("/flaky"), .backoff_ms = 10,
                             .done = on_got, .arg = &p };
    fetch_submit(fc, &po);
    run_until(&p.calls, 1);
    ck_assert_int_eq(p.status, 503);
    ck_assert_int_eq(p.attempts, 1);
    ck_assert(!p.has_error);
    ck_assert_str_eq(p.body, "busy");

    /* Attempts run out: the last 503 is what the caller sees. */
    struct got x = { 0 };
    flaky_left = 5;
    struct fetch_opts xo = { .method = "GET", .url = url("/flaky"), .backoff_ms = 5,
                             .max_attempts = 2, .done = on_got, .arg = &x };
    fetch_submit(fc, &xo);
    run_until(&x.calls, 1);
    ck_assert_int_eq(x.status, 503);
    ck_assert_int_eq(x.attempts, 2);
}
END_TEST

START_TEST(fetch_connection_refused_is_retried_then_fails)
{
    /* A port nobody listens on. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &sl);
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(sa.sin_port));

    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = u, .backoff_ms = 5, .max_attempts = 3,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    close(s);
    ck_assert(g.has_error);
    ck_assert_int_eq(g.status, 0);
    ck_assert_int_eq(g.attempts, 3);
}
END_TEST

START_TEST(fetch_body_limit_and_timeout)
{
    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = url("/big"), .max_body = 100000,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert(g.has_error);
    ck_assert(g.too_large);
    ck_assert_int_eq(g.attempts, 1);  /* not a transient failure */

    struct got t = { 0 };
    struct fetch_opts to = { .method = "GET", .url = url("/hang"), .timeout_ms = 300,
                             .max_attempts = 1, .done = on_got, .arg = &t };
    fetch_submit(fc, &to);
    run_until(&t.calls, 1);
    ck_assert(t.has_error);
}
END_TEST

START_TEST(fetch_put_body_without_expect)
{
    static char body[200000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 26);
    struct got g = { 0 };
    const char *h[] = { "Content-Type: text/plain", NULL };
    struct fetch_opts o = { .method = "PUT", .url = url("/echo"), .headers = h,
                            .body = body, .body_len = sizeof body, .max_body = 1 << 20,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_uint_eq(g.body_len, sizeof body);
    ck_assert_str_eq(last_method, "PUT");
    ck_assert_str_eq(last_expect, "");
    ck_assert_str_eq(last_ctype, "text/plain");
    ck_assert_str_eq(g.seen, "yes");
    ck_assert_int_eq(memcmp(last_body, body, 100), 0);

    /* POST without a body still sends a length. */
    struct got p = { 0 };
    struct fetch_opts po = { .method = "POST", .url = url("/echo"), .done = on_got, .arg = &p };
    fetch_submit(fc, &po);
    run_until(&p.calls, 1);
    ck_assert_int_eq(p.status, 200);
    ck_assert_uint_eq(last_body_len, 0);
}
END_TEST

static void on_never(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    (void)req; (void)res; (void)arg;
    ck_abort_msg("a cancelled request called back");
}

START_TEST(fetch_cancel_running_and_waiting)
{
    struct fetch_opts o = { .method = "GET", .url = url("/hang"), .done = on_never };
    struct fetch_req *r = fetch_submit(fc, &o);
    run_for(50);
    fetch_cancel(r);
    /* One waiting for its backoff. */
    flaky_left = 10;
    struct fetch_opts f = { .method = "GET", .url = url("/flaky"), .backoff_ms = 2000,
                            .done = on_never };
    struct fetch_req *w = fetch_submit(fc, &f);
    run_for(100);
    fetch_cancel(w);
    run_for(50);
    ck_assert_uint_eq(fetch_pending(fc), 0);
}
END_TEST

/* A streaming consumer that pauses once per chunk. */
struct slow {
    struct fetch_req *req;
    size_t bytes;
    int pauses;
    bool paused_now;
    struct event *tick;
};

static int slow_write(const char *d, size_t n, void *arg)
{
    (void)d;
    struct slow *s = arg;
    if (!s->paused_now && s->pauses < 3) {
        s->paused_now = true;
        s->pauses++;
        struct timeval tv = { 0, 20000 };
        evtimer_add(s->tick, &tv);
        return FETCH_PAUSE;
    }
    s->paused_now = false;
    s->bytes += n;
    return 0;
}

static void slow_tick(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    struct slow *s = arg;
    fetch_resume(s->req);
}

START_TEST(fetch_stream_with_pause)
{
    struct slow s = { 0 };
    struct got g = { 0 };
    s.tick = evtimer_new(base, slow_tick, &s);
    struct fetch_opts o = { .method = "GET", .url = url("/big"), .write_fn = slow_write,
                            .write_arg = &s, .done = on_got, .arg = &g };
    s.req = fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    event_free(s.tick);
    ck_assert(!g.has_error);
    ck_assert_int_eq(g.status, 200);
    ck_assert_uint_eq(s.bytes, 32u * 65536u);
    ck_assert_int_eq(s.pauses, 3);
    ck_assert_uint_eq(g.body_len, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fetch");
    TCase *f = tcase_create("fetch");
    tcase_add_checked_fixture(f, setup, teardown);
    tcase_set_timeout(f, 30);
    tcase_add_test(f, fetch_get_ok_never_inside_submit);
    tcase_add_test(f, fetch_retries_5xx_for_idempotent_only);
    tcase_add_test(f, fetch_connection_refused_is_retried_then_fails);
    tcase_add_test(f, fetch_body_limit_and_timeout);
    tcase_add_test(f, fetch_put_body_without_expect);
    tcase_add_test(f, fetch_cancel_running_and_waiting);
    tcase_add_test(f, fetch_stream_with_pause);
    suite_add_tcase(s, f);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
