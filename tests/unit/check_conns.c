/* Unit tests of conns, the guard table, with a clock of the test's own
 * (http_conns_sweep takes now): a request whose bytes trickle is cut at
 * its deadline; one that is whole (handled) or idle is left alone; bytes
 * above the minimum rate extend the deadline; a pipelined request's clock
 * starts when the reply before it is written; the per-address cap refuses
 * the connection over it and frees its place at close; and the table
 * counts what is open. */
#include <check.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/util.h"
#include "studyhub/http/conns.h"
#include "unit_main.h"

struct fixture {
    struct event_base *base;
    struct http_conns *cs;
    int cuts;
    void *last_cut;
};

static void on_cut(void *conn, void *arg)
{
    struct fixture *f = arg;

    f->cuts++;
    f->last_cut = conn;
    /* The server closes the connection, which unlinks its guard. */
    http_conns_close(f->cs, (struct http_guard *)conn);
}

static void setup(struct fixture *f, int header_s, long rate, int per_addr)
{
    struct http_conns_limits lim = { header_s, rate, per_addr };

    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->cs = http_conns_new(f->base, &lim, on_cut, f);
    ck_assert_ptr_nonnull(f->cs);
}

static void teardown(struct fixture *f)
{
    http_conns_free(f->cs);
    event_base_free(f->base);
}

static unsigned open_count(struct fixture *f)
{
    struct http_conns_stats st;

    http_conns_stats(f->cs, &st);
    return st.open;
}

START_TEST(trickled_request_is_cut)
{
    struct fixture f;
    struct http_guard g;
    struct http_conns_stats st;

    setup(&f, 2, 1024, 0);
    ck_assert_int_eq(http_conns_open(f.cs, &g, "127.0.0.1", &g), 0);
    ck_assert_uint_eq(open_count(&f), 1);
    http_conns_bytes_in(&g, 1);
    ck_assert_int_eq(g.state, HTTP_GUARD_RECEIVING);
    int64_t t0 = g.started_ms;
    for (int i = 0; i < 10; i++)
        http_conns_bytes_in(&g, 1);   /* fresh bytes do not restart the clock */
    ck_assert_int_eq(g.started_ms, t0);
    http_conns_sweep(f.cs, t0 + 1000);
    ck_assert_int_eq(f.cuts, 0);
    http_conns_sweep(f.cs, t0 + 2011);   /* 2 s and 11 bytes at 1024 a second */
    ck_assert_int_eq(f.cuts, 1);
    ck_assert_ptr_eq(f.last_cut, &g);
    ck_assert_uint_eq(open_count(&f), 0);
    http_conns_stats(f.cs, &st);
    ck_assert_uint_eq(st.slow_closed, 1);
    teardown(&f);
}
END_TEST

START_TEST(handled_and_idle_are_left_alone)
{
    struct fixture f;
    struct http_guard g;

    setup(&f, 1, 1024, 0);
    ck_assert_int_eq(http_conns_open(f.cs, &g, "127.0.0.1", &g), 0);
    http_conns_sweep(f.cs, util_mono_ms() + 100000);   /* idle */
    ck_assert_int_eq(f.cuts, 0);
    http_conns_bytes_in(&g, 100);
    http_conns_request_in(&g);
    ck_assert_int_eq(g.state, HTTP_GUARD_HANDLING);
    http_conns_bytes_in(&g, 100);   /* pipelined bytes while handled: no clock */
    http_conns_sweep(f.cs, util_mono_ms() + 100000);
    ck_assert_int_eq(f.cuts, 0);
    http_conns_reply_done(&g, 0);
    ck_assert_int_eq(g.state, HTTP_GUARD_IDLE);
    http_conns_sweep(f.cs, util_mono_ms() + 100000);
    ck_assert_int_eq(f.cuts, 0);
    http_conns_close(f.cs, &g);
    http_conns_close(f.cs, &g);     /* twice: a no-op */
    ck_assert_uint_eq(open_count(&f), 0);
    teardown(&f);
}
END_TEST

START_TEST(body_above_min_rate_gets_its_allowance)
{
    struct fixture f;
    struct http_guard g;

    setup(&f, 1, 1000, 0);
    ck_assert_int_eq(http_conns_open(f.cs, &g, "::1", &g), 0);
    http_conns_bytes_in(&g, 5000);  /* 5 s more than the 1 s */
    int64_t t0 = g.started_ms;
    http_conns_sweep(f.cs, t0 + 5500);
    ck_assert_int_eq(f.cuts, 0);
    http_conns_sweep(f.cs, t0 + 6001);
    ck_assert_int_eq(f.cuts, 1);
    teardown(&f);
}
END_TEST

START_TEST(pipelined_request_clock_starts_at_reply)
{
    struct fixture f;
    struct http_guard g;

    setup(&f, 1, 0, 0);
    ck_assert_int_eq(http_conns_open(f.cs, &g, "127.0.0.1", &g), 0);
    http_conns_bytes_in(&g, 10);
    http_conns_request_in(&g);
    http_conns_reply_done(&g, 40);  /* the next request's bytes wait */
    ck_assert_int_eq(g.state, HTTP_GUARD_RECEIVING);
    ck_assert_uint_eq(g.received, 40);
    http_conns_sweep(f.cs, g.started_ms + 1001);
    ck_assert_int_eq(f.cuts, 1);
    teardown(&f);
}
END_TEST

START_TEST(per_address_cap)
{
    struct fixture f;
    struct http_guard g[4], other;
    struct http_conns_stats st;

    setup(&f, 10, 1024, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(http_conns_open(f.cs, &g[i], "10.0.0.1", &g[i]), 0);
    ck_assert_int_eq(http_conns_open(f.cs, &g[3], "10.0.0.1", &g[3]), -1);
    http_conns_close(f.cs, &g[3]);  /* refused: not open, a no-op */
    ck_assert_int_eq(http_conns_open(f.cs, &other, "10.0.0.2", &other), 0);
    http_conns_stats(f.cs, &st);
    ck_assert_uint_eq(st.over_cap, 1);
    ck_assert_uint_eq(st.open, 4);
    /* A close frees a place. */
    http_conns_close(f.cs, &g[0]);
    ck_assert_int_eq(http_conns_open(f.cs, &g[3], "10.0.0.1", &g[3]), 0);
    teardown(&f);   /* frees with guards still open */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conns");
    TCase *tc = tcase_create("conns");
    tcase_add_test(tc, trickled_request_is_cut);
    tcase_add_test(tc, handled_and_idle_are_left_alone);
    tcase_add_test(tc, body_above_min_rate_gets_its_allowance);
    tcase_add_test(tc, pipelined_request_clock_starts_at_reply);
    tcase_add_test(tc, per_address_cap);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
