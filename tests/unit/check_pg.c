#define _GNU_SOURCE   /* accept4 */
/* Unit tests of pg's fault handling on a real loop, against two stand-ins
 * for PostgreSQL made here: a port where nothing listens (PostgreSQL
 * down), and a peer that completes the start-up handshake and then never
 * answers again (PostgreSQL frozen, as by SIGSTOP).  The happy paths run
 * end to end against a real server in tests/e2e; group commit is tested
 * here against the real PostgreSQL of TEST_DATABASE_URL (tools/test). */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "studyhub/io/pg.h"
#include "unit_loop.h"
#include "unit_main.h"

static const struct pg_stmt one_stmt = { "check_pg_one", "SELECT 1" };

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A listening socket on 127.0.0.1; *port receives its port. */
static int listen_any(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port nobody listens on: bound, never listened, closed. */
static int dead_port(void)
{
    int port, fd = listen_any(&port);

    close(fd);
    return port;
}

/* ---- the frozen server --------------------------------------------------- */

/* Answers the SSL request with 'N' and the start-up packet with
 * AuthenticationOk, BackendKeyData and ReadyForQuery; reads and ignores
 * everything after that. */
struct frozen {
    struct event_base *base;
    int lfd;                  /* listening socket */
    struct event *accept_ev;  /* owned */
    int cfd[8];               /* accepted sessions */
    struct event *read_ev[8]; /* owned, one per session */
    int n;
    int stage[8];             /* 0: expect SSL request or start-up; 1: stalled */
};

static void frozen_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct frozen *f = arg;
    char buf[4096];
    int i;
    ssize_t r;

    (void)what;
    for (i = 0; i < f->n && f->cfd[i] != fd; i++)
        ;
    r = read(fd, buf, sizeof buf);
    if (r <= 0 || f->stage[i] == 1)
        return;    /* stalled: swallow queries and never answer */
    if (r >= 8 && ntohl(*(uint32_t *)(buf + 4)) == 80877103) {
        ck_assert_int_eq(write(fd, "N", 1), 1);    /* no SSL */
        return;
    }
    /* The start-up packet: 'R' AuthenticationOk, 'K' key data, 'Z' idle. */
    static const unsigned char hello[] = {
        'R', 0, 0, 0, 8, 0, 0, 0, 0,
        'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2,
        'Z', 0, 0, 0, 5, 'I',
    };
    ck_assert_int_eq(write(fd, hello, sizeof hello), (int)sizeof hello);
    f->stage[i] = 1;
}

static void frozen_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct frozen *f = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    (void)what;
    if (fd < 0 || f->n == 8) {
        if (fd >= 0)
            close(fd);
        return;
    }
    f->cfd[f->n] = fd;
    f->read_ev[f->n] = event_new(f->base, fd, EV_READ | EV_PERSIST, frozen_on_read, f);
    event_add(f->read_ev[f->n], NULL);
    f->n++;
}

static void frozen_start(struct frozen *f, struct event_base *base, int *port)
{
    memset(f, 0, sizeof *f);
    f->base = base;
    f->lfd = listen_any(port);
    f->accept_ev = event_new(base, f->lfd, EV_READ | EV_PERSIST, frozen_on_accept, f);
    event_add(f->accept_ev, NULL);
}

static void frozen_stop(struct frozen *f)
{
    for (int i = 0; i < f->n; i++) {
        event_free(f->read_ev[i]);
        close(f->cfd[i]);
    }
    event_free(f->accept_ev);
    close(f->lfd);
}

/* ---- callbacks -------------------------------------------------------------- */

struct answer {
    int calls;
    bool null_res;
    int64_t at_ms;
    struct event_base *base;
};

static void on_answer(PGresult *res, void *arg)
{
    struct answer *a = arg;

    a->calls++;
    a->null_res = res == NULL;
    a->at_ms = now_ms();
    event_base_loopbreak(a->base);
}

static void run_until_answer(struct event_base *base, struct answer *a, int max_ms)
{
    int64_t end = now_ms() + max_ms;

    /* EVLOOP_ONCE blocks for one batch of events: pg's timers guarantee
     * one, and the answer breaks the loop. */
    while (a->calls == 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
}

static char *conninfo_for(int port)
{
    static char buf[128];

    snprintf(buf, sizeof buf, "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2", port);
    return buf;
}

/* A frozen server: the query goes out on a connected session and is cut at
 * statement_timeout + 1 s, answered NULL, counted, and the session
 * dropped. */
START_TEST(stalled_query_is_cut_at_its_deadline)
{
    struct event_base *base = event_base_new();
    struct frozen f;
    struct answer a = { .base = base };
    struct pg_pool_stats st;
    struct pg_pool *pool;
    int port;
    int64_t t0;

    frozen_start(&f, base, &port);
    pool = pg_pool_new(base, conninfo_for(port), 1, 5000, 200);
    ck_assert_ptr_nonnull(pool);
    /* Let the session connect first, so only the query's deadline counts. */
    for (int i = 0; i < 200 && !pg_pool_ready(pool); i++) {
        struct timeval tv = { 0, 10000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    ck_assert(pg_pool_ready(pool));
    t0 = now_ms();
    ck_assert_int_eq(pg_exec(pool, &one_stmt, 0, NULL, on_answer, &a), 0);
    ck_assert_int_eq(a.calls, 0);            /* never from pg_exec */
    run_until_answer(base, &a, 5000);
    ck_assert_int_eq(a.calls, 1);
    ck_assert(a.null_res);
    ck_assert_int_ge(a.at_ms - t0, 1100);    /* 200 ms + the 1 s grace */
    ck_assert_int_lt(a.at_ms - t0, 3000);
    pg_pool_stats(pool, &st);
    ck_assert_int_eq(st.timed_out, 1);
    ck_assert_int_eq(st.in_use, 0);
    pg_pool_free(pool);
    frozen_stop(&f);
    unit_loop_free(base);
}
END_TEST

/* Nothing listens: the first query waits out the acquire timeout; once the
 * pool has been down that long, the next fails at once (from the loop),
 * and the failure is counted. */
START_TEST(known_down_fails_fast)
{
    struct event_base *base = event_base_new();
    struct answer a = { .base = base }, b = { .base = base };
    struct pg_pool_stats st;
    struct pg_pool *pool = pg_pool_new(base, conninfo_for(dead_port()), 2, 300, 0);
    int64_t t0 = now_ms();

    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(pg_exec(pool, &one_stmt, 0, NULL, on_answer, &a), 0);
    run_until_answer(base, &a, 5000);
    ck_assert_int_eq(a.calls, 1);
    ck_assert(a.null_res);
    ck_assert_int_ge(a.at_ms - t0, 250);
    pg_pool_stats(pool, &st);
    ck_assert(st.known_down);
    ck_assert_int_eq(st.failed_fast, 0);

    t0 = now_ms();
    ck_assert_int_eq(pg_exec(pool, &one_stmt, 0, NULL, on_answer, &b), 0);
    ck_assert_int_eq(b.calls, 0);            /* still never from pg_exec */
    run_until_answer(base, &b, 5000);
    ck_assert_int_eq(b.calls, 1);
    ck_assert(b.null_res);
    ck_assert_int_lt(b.at_ms - t0, 100);
    pg_pool_stats(pool, &st);
    ck_assert_int_eq(st.failed_fast, 1);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* pg_exec_held: while the owner lives its callbacks run; once released
 * with queries out they are skipped, and the owner is destroyed once,
 * after the last one is back, from the loop (not under its callback). */
struct owner {
    struct pg_holder held;
    struct event_base *base;
    int answers, destroyed;
};

static void owner_answer(PGresult *res, void *arg)
{
    struct owner *o = arg;

    o->answers++;
    event_base_loopbreak(o->base);
}

static void owner_destroy(void *arg)
{
    struct owner *o = arg;

    o->destroyed++;
    pg_holder_cleanup(&o->held);
    event_base_loopbreak(o->base);
}

START_TEST(held_queries_keep_their_owner)
{
    struct event_base *base = event_base_new();
    struct owner o = { .base = base };
    struct pg_pool *pool = pg_pool_new(base, conninfo_for(dead_port()), 2, 300, 0);
    int64_t end = now_ms() + 5000;

    ck_assert_int_eq(pg_holder_init(&o.held, base, owner_destroy, &o), 0);
    ck_assert_int_eq(pg_exec_held(pool, &o.held, &one_stmt, 0, NULL, owner_answer, &o), 0);
    ck_assert_int_eq(o.held.reap.holds, 1);
    while (o.answers == 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(o.answers, 1);             /* alive: answered (NULL: down) */
    ck_assert_int_eq(o.held.reap.holds, 0);

    /* Two out, then the owner's free: nobody is called back, and the
     * second one back destroys it. */
    ck_assert_int_eq(pg_exec_held(pool, &o.held, &one_stmt, 0, NULL, owner_answer, &o), 0);
    ck_assert_int_eq(pg_exec_held(pool, &o.held, &one_stmt, 0, NULL, owner_answer, &o), 0);
    pg_holder_release(&o.held);
    ck_assert_int_eq(o.destroyed, 0);
    ck_assert_int_eq(pg_exec_held(pool, &o.held, &one_stmt, 0, NULL, owner_answer, &o), -1);
    end = now_ms() + 5000;
    while (o.destroyed == 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(o.held.reap.holds, 0);
    ck_assert_int_eq(o.answers, 1);
    ck_assert_int_eq(o.destroyed, 1);

    /* Nothing out: it goes at once. */
    struct owner idle = { 0 };
    ck_assert_int_eq(pg_holder_init(&idle.held, base, owner_destroy, &idle), 0);
    pg_holder_release(&idle.held);
    ck_assert_int_eq(idle.destroyed, 1);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* A pool that has never connected is not "known down" before a whole
 * acquire timeout has passed: a query at start waits for the first
 * connection instead of failing. */
START_TEST(new_pool_is_not_known_down)
{
    struct event_base *base = event_base_new();
    struct pg_pool_stats st;
    struct pg_pool *pool = pg_pool_new(base, conninfo_for(dead_port()), 1, 60000, 0);

    ck_assert_ptr_nonnull(pool);
    pg_pool_stats(pool, &st);
    ck_assert(!st.known_down);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* ---- group commit, against a real PostgreSQL ------------------------------- */

static const char *database_url;   /* TEST_DATABASE_URL */

/* Each test's session has its own temporary table: the pool has one
 * connection, so every statement below runs on that session. */
static const struct pg_stmt group_table_stmt = {
    "check_pg_group_table",
    "CREATE TEMP TABLE g (k text PRIMARY KEY CHECK (k <> 'bad'), xid bigint, seen bigint)",
};
/* The row's transaction and how many rows it saw before its own. */
static const struct pg_stmt group_insert_stmt = {
    "check_pg_group_insert",
    "INSERT INTO g VALUES ($1, txid_current(), (SELECT count(*) FROM g)) RETURNING xid, seen",
};
static const struct pg_stmt group_sleep_stmt = {
    "check_pg_group_sleep", "SELECT pg_sleep($1::float8)",
};
static const struct pg_stmt group_count_stmt = {
    "check_pg_group_count", "SELECT count(*) FROM g",
};

struct row_answer {
    struct event_base *base;
    int *left;                     /* answers still due, shared */
    int calls;
    bool null_res;
    char sqlstate[6];
    long long xid, seen;
};

static void on_row(PGresult *res, void *arg)
{
    struct row_answer *a = arg;

    a->calls++;
    a->null_res = res == NULL;
    if (res && pg_ok(res) && PQntuples(res) == 1 && PQnfields(res) == 2) {
        a->xid = atoll(PQgetvalue(res, 0, 0));
        a->seen = atoll(PQgetvalue(res, 0, 1));
    } else if (res) {
        snprintf(a->sqlstate, sizeof a->sqlstate, "%s", pg_sqlstate(res));
    }
    if (--*a->left == 0)
        event_base_loopbreak(a->base);
}

static void run_until_none_left(struct event_base *base, const int *left)
{
    int64_t end = now_ms() + 10000;

    while (*left > 0 && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_int_eq(*left, 0);
}

/* A pool of one connection with the table made and the insert prepared
 * (a statement groups only once its connection has prepared it). */
static struct pg_pool *group_pool(struct event_base *base, long long *first_xid)
{
    struct pg_pool *pool = pg_pool_new(base, database_url, 1, 5000, 5000);
    int left = 2;
    struct row_answer made = { .base = base, .left = &left };
    struct row_answer first = { .base = base, .left = &left };
    const char *k0[] = { "0" };

    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(pg_exec(pool, &group_table_stmt, 0, NULL, on_row, &made), 0);
    ck_assert_int_eq(pg_exec_grouped(pool, &group_insert_stmt, 1, k0, "0", on_row, &first), 0);
    run_until_none_left(base, &left);
    ck_assert(!first.null_res);
    ck_assert_str_eq(first.sqlstate, "");
    *first_xid = first.xid;
    return pool;
}

/* The pool's one connection busy for 0.2 s, and n grouped inserts of
 * keys queued behind it: they wait together. */
static void grouped_behind_busy(struct pg_pool *pool, struct row_answer *busy,
                                const struct pg_stmt *stmt, const char *const *keys, int n,
                                struct row_answer *a)
{
    static const char *const pause[] = { "0.2" };

    ck_assert_int_eq(pg_exec(pool, &group_sleep_stmt, 1, pause, on_row, busy), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pg_exec_grouped(pool, stmt, 1, &keys[i], keys[i], on_row, &a[i]), 0);
}

/* Grouped writes that wait together go in one transaction, in key order,
 * each answered with its own result once it committed. */
START_TEST(waiting_writes_commit_as_one_group_in_key_order)
{
    struct event_base *base = event_base_new();
    long long xid0;
    struct pg_pool *pool = group_pool(base, &xid0);
    struct pg_pool_stats st;
    int left = 4;
    struct row_answer busy = { .base = base, .left = &left };
    struct row_answer a[3] = { { .base = base, .left = &left }, { .base = base, .left = &left },
                               { .base = base, .left = &left } };
    const char *keys[] = { "c", "a", "b" };

    grouped_behind_busy(pool, &busy, &group_insert_stmt, keys, 3, a);
    run_until_none_left(base, &left);
    for (int i = 0; i < 3; i++) {
        ck_assert(!a[i].null_res);
        ck_assert_str_eq(a[i].sqlstate, "");
        ck_assert_int_eq(a[i].calls, 1);
    }
    /* One transaction, not the one before it. */
    ck_assert_int_eq(a[0].xid, a[1].xid);
    ck_assert_int_eq(a[1].xid, a[2].xid);
    ck_assert_int_ne(a[0].xid, xid0);
    /* Key order: a saw only "0", b saw a too, c saw both. */
    ck_assert_int_eq(a[1].seen, 1);
    ck_assert_int_eq(a[2].seen, 2);
    ck_assert_int_eq(a[0].seen, 3);
    pg_pool_stats(pool, &st);
    ck_assert_int_eq(st.grouped, 3);
    ck_assert_int_eq(st.group_retries, 0);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* PG_GROUP_MAX=1: grouped writes run as plain ones, each its own commit. */
START_TEST(group_max_one_groups_nothing)
{
    struct event_base *base = event_base_new();
    long long xid0;
    struct pg_pool *pool = group_pool(base, &xid0);
    struct pg_pool_stats st;
    int left = 3;
    struct row_answer busy = { .base = base, .left = &left };
    struct row_answer a[2] = { { .base = base, .left = &left }, { .base = base, .left = &left } };
    const char *keys[] = { "b", "a" };

    pg_pool_set_group_max(pool, 1);
    grouped_behind_busy(pool, &busy, &group_insert_stmt, keys, 2, a);
    run_until_none_left(base, &left);
    ck_assert_int_ne(a[0].xid, a[1].xid);
    ck_assert_int_eq(a[0].seen, 1);     /* arrival order, not key order */
    ck_assert_int_eq(a[1].seen, 2);
    pg_pool_stats(pool, &st);
    ck_assert_int_eq(st.grouped, 0);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* One failing write rolls its group back; each write then runs alone, so
 * the others still succeed and the failing one gets its own error. */
START_TEST(failed_group_runs_each_write_alone)
{
    struct event_base *base = event_base_new();
    long long xid0;
    struct pg_pool *pool = group_pool(base, &xid0);
    struct pg_pool_stats st;
    int left = 4;
    struct row_answer busy = { .base = base, .left = &left };
    struct row_answer a[3] = { { .base = base, .left = &left }, { .base = base, .left = &left },
                               { .base = base, .left = &left } };
    struct row_answer count = { .base = base, .left = &left };
    const char *keys[] = { "a", "bad", "c" };

    grouped_behind_busy(pool, &busy, &group_insert_stmt, keys, 3, a);
    run_until_none_left(base, &left);
    left = 1;
    ck_assert_int_eq(pg_exec(pool, &group_count_stmt, 0, NULL, on_row, &count), 0);
    run_until_none_left(base, &left);

    ck_assert_str_eq(a[0].sqlstate, "");
    ck_assert_str_eq(a[1].sqlstate, "23514");   /* its own check violation */
    ck_assert_str_eq(a[2].sqlstate, "");
    ck_assert(!a[1].null_res);
    /* Each alone: two transactions; "a" committed before "c" ran. */
    ck_assert_int_ne(a[0].xid, a[2].xid);
    ck_assert_int_eq(a[0].seen, 1);
    ck_assert_int_eq(a[2].seen, 2);
    ck_assert_str_eq(count.sqlstate, "");
    pg_pool_stats(pool, &st);
    ck_assert_int_eq(st.grouped, 0);
    ck_assert_int_eq(st.group_retries, 1);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* A plain query at the head of the queue is not passed by a group: it
 * goes first, and the grouped writes behind it after. */
START_TEST(plain_query_is_not_passed_by_a_group)
{
    struct event_base *base = event_base_new();
    long long xid0;
    struct pg_pool *pool = group_pool(base, &xid0);
    int left = 4;
    struct row_answer busy = { .base = base, .left = &left };
    struct row_answer plain = { .base = base, .left = &left };
    struct row_answer a[2] = { { .base = base, .left = &left }, { .base = base, .left = &left } };
    const char *keys[] = { "a", "b" };
    const char *pause[] = { "0.2" };
    const char *k_plain[] = { "p" };

    ck_assert_int_eq(pg_exec(pool, &group_sleep_stmt, 1, pause, on_row, &busy), 0);
    ck_assert_int_eq(pg_exec(pool, &group_insert_stmt, 1, k_plain, on_row, &plain), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pg_exec_grouped(pool, &group_insert_stmt, 1, &keys[i], keys[i],
                                         on_row, &a[i]), 0);
    run_until_none_left(base, &left);
    ck_assert_int_eq(plain.seen, 1);            /* after "0" only */
    ck_assert_int_eq(a[0].seen, 2);
    ck_assert_int_eq(a[1].seen, 3);
    ck_assert_int_eq(a[0].xid, a[1].xid);
    ck_assert_int_ne(plain.xid, a[0].xid);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

/* The session dies while a group is out: every write of it is answered
 * NULL (it may or may not have run: the caller answers 503), and the pool
 * connects again. */
struct terminator {
    struct event *ev;
    int killed;
};

static void on_terminate(evutil_socket_t fd, short what, void *arg)
{
    struct terminator *t = arg;
    PGconn *pg = PQconnectdb(database_url);
    PGresult *res;

    (void)fd;
    (void)what;
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    res = PQexec(pg, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                      " WHERE application_name = 'studyhub' AND query LIKE '%pg_sleep(0.5), $1::text%'"
                     "   AND pid <> pg_backend_pid() AND datname = current_database()");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    t->killed = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
}

static const struct pg_stmt group_slow_stmt = {
    "check_pg_group_slow", "SELECT pg_sleep(0.5), $1::text",
};

START_TEST(lost_session_answers_the_whole_group_null)
{
    struct event_base *base = event_base_new();
    long long xid0;
    struct pg_pool *pool = group_pool(base, &xid0);
    int left = 1;
    struct row_answer warm = { .base = base, .left = &left };
    struct row_answer busy = { .base = base, .left = &left };
    struct row_answer a[2] = { { .base = base, .left = &left }, { .base = base, .left = &left } };
    const char *keys[] = { "a", "b" };
    const char *pause[] = { "0.1" };
    struct terminator t = { 0 };
    struct timeval at = { 0, 350 * 1000 };

    /* Prepared on the session first, so the two can group. */
    ck_assert_int_eq(pg_exec_grouped(pool, &group_slow_stmt, 1, keys, "a", on_row, &warm), 0);
    run_until_none_left(base, &left);
    left = 3;
    ck_assert_int_eq(pg_exec(pool, &group_sleep_stmt, 1, pause, on_row, &busy), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pg_exec_grouped(pool, &group_slow_stmt, 1, &keys[i], keys[i],
                                         on_row, &a[i]), 0);
    t.ev = evtimer_new(base, on_terminate, &t);
    evtimer_add(t.ev, &at);
    run_until_none_left(base, &left);
    ck_assert_int_eq(t.killed, 1);
    ck_assert(a[0].null_res);
    ck_assert(a[1].null_res);
    ck_assert_int_eq(a[0].calls + a[1].calls, 2);
    event_free(t.ev);
    pg_pool_free(pool);
    unit_loop_free(base);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pg");
    TCase *faults = tcase_create("faults");

    tcase_add_test(faults, stalled_query_is_cut_at_its_deadline);
    tcase_add_test(faults, known_down_fails_fast);
    tcase_add_test(faults, new_pool_is_not_known_down);
    tcase_add_test(faults, held_queries_keep_their_owner);
    tcase_set_timeout(faults, 30);
    suite_add_tcase(s, faults);

    /* Outside tools/test there is no PostgreSQL to group on. */
    database_url = getenv("TEST_DATABASE_URL");
    if (database_url && *database_url) {
        TCase *groups = tcase_create("groups");

        tcase_add_test(groups, waiting_writes_commit_as_one_group_in_key_order);
        tcase_add_test(groups, failed_group_runs_each_write_alone);
        tcase_add_test(groups, group_max_one_groups_nothing);
        tcase_add_test(groups, plain_query_is_not_passed_by_a_group);
        tcase_add_test(groups, lost_session_answers_the_whole_group_null);
        tcase_set_timeout(groups, 30);
        suite_add_tcase(s, groups);
    } else {
        fprintf(stderr, "check_pg: TEST_DATABASE_URL is not set: group commit untested\n");
    }
    return s;
}

int main(void)
{
    return unit_run(suite());
}
