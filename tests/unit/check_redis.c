/* Unit tests of io/redis on a real loop against a real Redis
 * (TEST_REDIS_PORT and TEST_REDIS_PASSWORD: tools/test starts one for the
 * unit tests), and against a port where nothing listens (Redis down).
 * What they hold the module to: every callback runs exactly once and
 * never inside the call that queued it; a command that outlives its
 * timeout is answered NULL and the connection comes back; freeing the
 * client answers what is in flight; pub/sub delivers; and each test ends
 * with nothing left on the loop. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "studyhub/io/redis.h"
#include "unit_main.h"

static struct event_base *base;
static int redis_port;
static const char *redis_password;
static int test_db = 9;         /* the server's db 0 is nobody's here, but stay clear */

static void on_deadline(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    *(int *)arg = 1;
}

/* Runs the loop until *count reaches want or 10 s pass. */
static void run_until(const int *count, int want)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { 10, 0 };

    evtimer_add(t, &tv);
    while (*count < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    ck_assert_msg(*count >= want, "timed out waiting (%d of %d)", *count, want);
}

/* A port nobody listens on: bound, never listened, closed. */
static int dead_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void setup(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
}

static void teardown(void)
{
    /* Nothing may be left alive when a test ends: every client and
     * subscriber freed its events. */
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

/* ---- replies ------------------------------------------------------------ */

struct got {
    int calls;
    int type;               /* -1: NULL reply */
    char str[256];
    size_t len;
    long long integer;
};

static void on_reply(redisReply *reply, void *arg)
{
    struct got *g = arg;

    g->calls++;
    g->type = reply ? reply->type : -1;
    if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS
                  || reply->type == REDIS_REPLY_ERROR)) {
        g->len = reply->len < sizeof g->str ? reply->len : sizeof g->str - 1;
        memcpy(g->str, reply->str, g->len);
        g->str[g->len] = '\0';
    }
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        g->integer = reply->integer;
}

static struct redis_client *client(int timeout_ms)
{
    struct redis_client *rc = redis_client_new(base, "127.0.0.1", redis_port, redis_password,
                                               test_db, timeout_ms);
    ck_assert_ptr_nonnull(rc);
    return rc;
}

START_TEST(binary_safe_round_trip)
{
    struct redis_client *rc = client(2000);
    struct got set = { 0 }, get = { 0 }, del = { 0 };
    const char value[] = "a\0b\r\nc";       /* a NUL and a CRLF inside */
    const char *sargv[] = { "SET", "check_redis:bin", value };
    size_t slen[] = { 3, 15, sizeof value - 1 };

    ck_assert_int_eq(redis_cmdargv(rc, on_reply, &set, 3, sargv, slen), 0);
    ck_assert_int_eq(set.calls, 0);          /* never inside the call */
    ck_assert_int_eq(redis_cmd(rc, on_reply, &get, "GET %s", "check_redis:bin"), 0);
    run_until(&get.calls, 1);
    ck_assert_int_eq(set.calls, 1);
    ck_assert_int_eq(set.type, REDIS_REPLY_STATUS);
    ck_assert_int_eq(get.type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(get.len, sizeof value - 1);
    ck_assert_mem_eq(get.str, value, sizeof value - 1);
    ck_assert(redis_connected(rc));
    redis_cmd(rc, on_reply, &del, "DEL %s", "check_redis:bin");
    run_until(&del.calls, 1);
    ck_assert_int_eq(del.integer, 1);
    redis_client_free(rc);
}
END_TEST

START_TEST(select_picks_the_database)
{
    struct redis_client *rc = client(2000);
    struct got set = { 0 }, db = { 0 }, del = { 0 };

    redis_cmd(rc, on_reply, &set, "SET %s %s", "check_redis:db", "x");
    redis_cmd(rc, on_reply, &db, "EXISTS %s", "check_redis:db");
    run_until(&db.calls, 1);
    ck_assert_int_eq(db.integer, 1);
    redis_client_free(rc);

    /* Another database does not see it. */
    test_db = 8;
    rc = client(2000);
    memset(&db, 0, sizeof db);
    redis_cmd(rc, on_reply, &db, "EXISTS %s", "check_redis:db");
    run_until(&db.calls, 1);
    ck_assert_int_eq(db.integer, 0);
    redis_client_free(rc);
    test_db = 9;
    rc = client(2000);
    redis_cmd(rc, on_reply, &del, "DEL %s", "check_redis:db");
    run_until(&del.calls, 1);
    ck_assert_int_eq(del.integer, 1);
    redis_client_free(rc);
}
END_TEST

START_TEST(pubsub_commands_are_refused_from_the_loop)
{
    struct redis_client *rc = client(2000);
    struct got sub = { 0 }, mon = { 0 }, ping = { 0 };
    const char *argv[] = { "subscribe", "x" };
    size_t lens[] = { 9, 1 };

    ck_assert_int_eq(redis_cmdargv(rc, on_reply, &sub, 2, argv, lens), 0);
    ck_assert_int_eq(redis_cmd(rc, on_reply, &mon, "MONITOR"), 0);
    ck_assert_int_eq(sub.calls + mon.calls, 0);
    redis_cmd(rc, on_reply, &ping, "PING");
    run_until(&ping.calls, 1);
    run_until(&mon.calls, 1);
    ck_assert_int_eq(sub.type, -1);
    ck_assert_int_eq(mon.type, -1);
    /* The connection is still a command connection. */
    ck_assert_int_eq(ping.type, REDIS_REPLY_STATUS);
    ck_assert_str_eq(ping.str, "PONG");
    redis_client_free(rc);
}
END_TEST

START_TEST(down_is_answered_null_later)
{
    struct redis_client *rc = redis_client_new(base, "127.0.0.1", dead_port(), NULL, 0, 500);
    struct got g = { 0 };

    ck_assert_ptr_nonnull(rc);
    ck_assert_int_eq(redis_cmd(rc, on_reply, &g, "PING"), 0);
    ck_assert_int_eq(g.calls, 0);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.type, -1);
    ck_assert(!redis_connected(rc));
    redis_client_free(rc);
}
END_TEST

START_TEST(wrong_password_is_down)
{
    struct redis_client *rc;
    struct got g = { 0 };

    if (!redis_password || !*redis_password)
        return;                 /* a Redis without a password takes any */
    rc = redis_client_new(base, "127.0.0.1", redis_port, "not-the-password", test_db, 500);
    ck_assert_ptr_nonnull(rc);
    redis_cmd(rc, on_reply, &g, "PING");
    run_until(&g.calls, 1);
    /* Queued behind AUTH: answered with Redis's refusal or NULL, never PONG. */
    ck_assert(g.type == -1 || g.type == REDIS_REPLY_ERROR);
    ck_assert(!redis_connected(rc));
    redis_client_free(rc);
}
END_TEST

START_TEST(timeout_answers_null_and_reconnects)
{
    struct redis_client *rc = client(300);
    struct got warm = { 0 }, blocked = { 0 }, after = { 0 };

    redis_cmd(rc, on_reply, &warm, "PING");
    run_until(&warm.calls, 1);
    ck_assert(redis_connected(rc));
    /* BLPOP on an empty list holds the reply for 5 s, past the timeout. */
    redis_cmd(rc, on_reply, &blocked, "BLPOP %s %s", "check_redis:empty", "5");
    run_until(&blocked.calls, 1);
    ck_assert_int_eq(blocked.type, -1);
    /* The connection was dropped (a late reply could not be matched) and
     * comes back: a later command is answered.  Commands sent before it
     * is up again are answered NULL, so keep asking. */
    for (int tries = 0; tries < 40 && after.type != REDIS_REPLY_STATUS; tries++) {
        int calls = after.calls;
        redis_cmd(rc, on_reply, &after, "PING");
        run_until(&after.calls, calls + 1);
        if (after.type != REDIS_REPLY_STATUS) {
            int slept = 0;
            struct event *t = evtimer_new(base, on_deadline, &slept);
            struct timeval tv = { 0, 100000 };
            evtimer_add(t, &tv);
            run_until(&slept, 1);
            event_free(t);
        }
    }
    ck_assert_int_eq(after.type, REDIS_REPLY_STATUS);
    ck_assert_str_eq(after.str, "PONG");
    redis_client_free(rc);
}
END_TEST

START_TEST(free_answers_what_is_in_flight)
{
    struct redis_client *rc = client(2000);
    struct got a = { 0 }, b = { 0 };

    redis_cmd(rc, on_reply, &a, "PING");
    redis_cmd(rc, on_reply, &b, "BLPOP %s %s", "check_redis:empty", "5");
    ck_assert_int_eq(a.calls + b.calls, 0);
    redis_client_free(rc);
    /* Both were answered during the free, exactly once, NULL. */
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(a.type, -1);
    ck_assert_int_eq(b.type, -1);
    /* Nothing calls back later. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(a.calls + b.calls, 2);
}
END_TEST

/* ---- pub/sub ------------------------------------------------------------ */

struct heard {
    int n;
    char last[64];
};

static void on_message(const char *payload, size_t len, void *arg)
{
    struct heard *h = arg;

    h->n++;
    snprintf(h->last, sizeof h->last, "%.*s", (int)len, payload);
}

START_TEST(subscriber_hears_published_messages)
{
    struct heard h = { 0 };
    struct redis_subscriber *s = redis_subscriber_new(base, "127.0.0.1", redis_port,
                                                      redis_password, "check_redis:chan",
                                                      on_message, &h);
    struct redis_client *rc = client(2000);

    ck_assert_ptr_nonnull(s);
    /* The subscription is in place once PUBLISH counts a receiver. */
    for (int tries = 0; tries < 100 && h.n == 0; tries++) {
        struct got pub = { 0 };
        redis_cmd(rc, on_reply, &pub, "PUBLISH %s %s", "check_redis:chan", "hello");
        run_until(&pub.calls, 1);
        ck_assert_int_eq(pub.type, REDIS_REPLY_INTEGER);
        if (pub.integer > 0)
            run_until(&h.n, 1);
    }
    ck_assert_int_ge(h.n, 1);
    ck_assert_str_eq(h.last, "hello");
    redis_subscriber_free(s);
    redis_client_free(rc);
}
END_TEST

static Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("client");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, binary_safe_round_trip);
    tcase_add_test(tc, select_picks_the_database);
    tcase_add_test(tc, pubsub_commands_are_refused_from_the_loop);
    tcase_add_test(tc, down_is_answered_null_later);
    tcase_add_test(tc, wrong_password_is_down);
    tcase_add_test(tc, timeout_answers_null_and_reconnects);
    tcase_add_test(tc, free_answers_what_is_in_flight);
    tcase_add_test(tc, subscriber_hears_published_messages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *port = getenv("TEST_REDIS_PORT");

    if (!port || !*port) {
        fprintf(stderr, "check_redis: TEST_REDIS_PORT is not set (tools/test sets it)\n");
        return 77;              /* automake's SKIP: only outside tools/test */
    }
    redis_port = atoi(port);
    redis_password = getenv("TEST_REDIS_PASSWORD");
    return unit_run(redis_suite());
}
