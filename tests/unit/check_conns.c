/* Unit tests of conns on a real evhttp and loop, with raw client sockets:
 * a request trickled a byte at a time is cut at its deadline and never
 * reaches the handler; a whole request is served and its idle keep-alive
 * connection is left alone; a body arriving above the minimum rate gets
 * its allowance; a fourth connection from one address is closed at
 * accept; and the table counts what is open. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "studyhub/http/conns.h"
#include "unit_loop.h"
#include "unit_main.h"

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    struct http_conns *conns;
    int port;
    int handled;      /* requests that reached the handler */
    int closed;       /* close callbacks */
};

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct fixture *f = arg;

    (void)evcon;
    f->closed++;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;

    http_conns_reply_done(f->conns, evhttp_request_get_connection(req));
}

static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    struct evbuffer *body = evbuffer_new();

    f->handled++;
    http_conns_request_in(f->conns, evhttp_request_get_connection(req));
    evbuffer_add_printf(body, "ok %zu", evbuffer_get_length(evhttp_request_get_input_buffer(req)));
    evhttp_request_set_on_complete_cb(req, on_done, f);
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

static void setup(struct fixture *f, int header_s, long rate, int per_addr)
{
    struct http_conns_limits lim = { header_s, rate, per_addr };
    struct evhttp_bound_socket *bound;
    struct sockaddr_in a;
    socklen_t len = sizeof a;

    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->http = evhttp_new(f->base);
    f->conns = http_conns_new(f->base, &lim, on_close, f);
    ck_assert_ptr_nonnull(f->conns);
    http_conns_attach(f->conns, f->http);
    evhttp_set_timeout(f->http, 30);
    evhttp_set_gencb(f->http, handler, f);
    bound = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bound);
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&a, &len);
    f->port = ntohs(a.sin_port);
}

static void teardown(struct fixture *f)
{
    evhttp_free(f->http);
    http_conns_free(f->conns);
    unit_loop_free(f->base);
}

/* Runs the loop for about ms milliseconds. */
static void pump(struct fixture *f, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static int client(struct fixture *f)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    pump(f, 20);   /* accepted and linked */
    return fd;
}

static void say(int fd, const char *s)
{
    ck_assert_int_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* 1: the server closed it; 0: open, nothing to read; 2: a reply waits. */
static int peer_state(int fd, char *buf, size_t len)
{
    ssize_t r = recv(fd, buf, len - 1, MSG_DONTWAIT);

    if (r == 0 || (r < 0 && errno == ECONNRESET))
        return 1;
    if (r < 0)
        return 0;
    buf[r] = '\0';
    return 2;
}

START_TEST(trickled_request_is_cut)
{
    struct fixture f;
    struct http_conns_stats st;
    const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    char buf[512];
    int fd, state = 0;

    setup(&f, 1, 1024, 0);
    fd = client(&f);
    /* One byte every 100 ms: about 6 s for the whole header. */
    for (size_t i = 0; i < strlen(req) && state == 0; i++) {
        char one[2] = { req[i], '\0' };

        if (send(fd, one, 1, MSG_NOSIGNAL) < 0)
            break;
        pump(&f, 100);
        state = peer_state(fd, buf, sizeof buf);
    }
    for (int i = 0; i < 30 && state == 0; i++) {
        pump(&f, 100);
        state = peer_state(fd, buf, sizeof buf);
    }
    ck_assert_int_eq(state, 1);
    ck_assert_int_eq(f.handled, 0);
    http_conns_stats(f.conns, &st);
    ck_assert_uint_eq(st.slow_closed, 1);
    ck_assert_uint_eq(st.open, 0);
    ck_assert_int_eq(f.closed, 1);
    close(fd);
    teardown(&f);
}
END_TEST

START_TEST(whole_request_served_and_idle_kept)
{
    struct fixture f;
    struct http_conns_stats st;
    char buf[512];
    int fd;

    setup(&f, 1, 1024, 0);
    fd = client(&f);
    say(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(&f, 50);
    ck_assert_int_eq(peer_state(fd, buf, sizeof buf), 2);
    ck_assert_ptr_nonnull(strstr(buf, "200 OK"));
    /* Idle past the request deadline: not a slow request. */
    pump(&f, 1600);
    ck_assert_int_eq(peer_state(fd, buf, sizeof buf), 0);
    say(fd, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(&f, 50);
    ck_assert_int_eq(peer_state(fd, buf, sizeof buf), 2);
    ck_assert_int_eq(f.handled, 2);
    http_conns_stats(f.conns, &st);
    ck_assert_uint_eq(st.open, 1);
    ck_assert_uint_eq(st.slow_closed, 0);
    close(fd);
    pump(&f, 50);
    http_conns_stats(f.conns, &st);
    ck_assert_uint_eq(st.open, 0);
    teardown(&f);
}
END_TEST

/* 8 KiB at ~5 KiB/s takes ~1.6 s, past the 1 s header deadline, but
 * within 1 s + 8 KiB / 1 KiB/s. */
START_TEST(body_above_min_rate_gets_its_allowance)
{
    struct fixture f;
    char buf[512], chunk[1025];
    int fd, state = 0;

    setup(&f, 1, 1024, 0);
    memset(chunk, 'x', 1024);
    chunk[1024] = '\0';
    fd = client(&f);
    say(fd, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 8192\r\n\r\n");
    for (int i = 0; i < 8; i++) {
        pump(&f, 200);
        ck_assert_int_eq(peer_state(fd, buf, sizeof buf), 0);
        say(fd, chunk);
    }
    for (int i = 0; i < 10 && state == 0; i++) {
        pump(&f, 50);
        state = peer_state(fd, buf, sizeof buf);
    }
    ck_assert_int_eq(state, 2);
    ck_assert_ptr_nonnull(strstr(buf, "ok 8192"));
    close(fd);
    teardown(&f);
}
END_TEST

START_TEST(per_address_cap)
{
    struct fixture f;
    struct http_conns_stats st;
    char buf[512];
    int fd[4];

    setup(&f, 10, 1024, 3);
    for (int i = 0; i < 4; i++)
        fd[i] = client(&f);
    pump(&f, 50);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(peer_state(fd[i], buf, sizeof buf), 0);
    ck_assert_int_eq(peer_state(fd[3], buf, sizeof buf), 1);
    http_conns_stats(f.conns, &st);
    ck_assert_uint_eq(st.over_cap, 1);
    ck_assert_uint_eq(st.open, 3);
    /* One goes: room for another. */
    close(fd[0]);
    close(fd[3]);
    pump(&f, 50);
    fd[0] = client(&f);
    pump(&f, 50);
    ck_assert_int_eq(peer_state(fd[0], buf, sizeof buf), 0);
    say(fd[0], "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(&f, 50);
    ck_assert_int_eq(peer_state(fd[0], buf, sizeof buf), 2);
    for (int i = 0; i < 3; i++)
        close(fd[i]);
    teardown(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("conns");
    TCase *tc = tcase_create("guard");

    tcase_add_test(tc, trickled_request_is_cut);
    tcase_add_test(tc, whole_request_served_and_idle_kept);
    tcase_add_test(tc, body_above_min_rate_gets_its_allowance);
    tcase_add_test(tc, per_address_cap);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
