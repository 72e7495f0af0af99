/* Unit tests of io/migrate against a real PostgreSQL: each test makes a
 * fresh database beside TEST_DATABASE_URL's (tools/test sets it; the role
 * may CREATE DATABASE) and drops it at the end.  What they hold the module
 * to: a fresh database gets every embedded migration once and the SQL
 * functions; a second run applies nothing; a function edited by hand goes
 * back to its text; functions a newer binary applied are left alone; two
 * servers starting together apply each migration exactly once; and an
 * unreachable PostgreSQL is a clear error, in the call and from the child. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "studyhub/io/migrate.h"
#include "unit_main.h"

static const char *admin_url;   /* TEST_DATABASE_URL: where CREATE DATABASE is sent */
static char db_name[64];
static char db_url[512];        /* the fresh database's */

static int migration_count(void)
{
    int n = 0;

    for (const struct migration *m = migrations; m->name; m++)
        n++;
    return n;
}

static int last_version(void)
{
    int v = 0;

    for (const struct migration *m = migrations; m->name; m++)
        v = m->version;
    return v;
}

/* Runs sql on url; returns the first value of the first row (malloc'd,
 * "" when there is none), failing the test on an error. */
static char *sql_value(const char *url, const char *sql)
{
    PGconn *pg = PQconnectdb(url);
    PGresult *res;
    char *v;

    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(pg));
    res = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
                  "%s: %s", sql, PQresultErrorMessage(res));
    v = strdup(PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    PQfinish(pg);
    return v;
}

static int sql_int(const char *url, const char *sql)
{
    char *v = sql_value(url, sql);
    int n = atoi(v);

    free(v);
    return n;
}

static void sql_do(const char *url, const char *sql)
{
    free(sql_value(url, sql));
}

/* db_url with the database name swapped for name. */
static void url_for(const char *name, char *out, size_t outlen)
{
    const char *slash = strrchr(admin_url, '/');

    ck_assert_ptr_nonnull(slash);
    snprintf(out, outlen, "%.*s/%s", (int)(slash - admin_url), admin_url, name);
}

static void setup(void)
{
    char sql[160];
    static int seq;

    snprintf(db_name, sizeof db_name, "check_migrate_%d_%d", (int)getpid(), seq++);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db_name);
    sql_do(admin_url, sql);
    url_for(db_name, db_url, sizeof db_url);
}

static void teardown(void)
{
    char sql[160];

    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db_name);
    sql_do(admin_url, sql);
}

START_TEST(fresh_database_gets_everything_once)
{
    char err[512] = "";
    char sql[160];

    ck_assert_int_eq(migrate_apply(db_url, 10, err, sizeof err), migration_count());
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(sql_int(db_url, "SELECT count(*) FROM schema_migrations"), migration_count());
    snprintf(sql, sizeof sql, "SELECT max(version) = %d FROM schema_migrations", last_version());
    {
        char *same = sql_value(db_url, sql);
        ck_assert_str_eq(same, "t");
        free(same);
    }
    /* The functions came after, recorded with the binary's last migration. */
    ck_assert_int_eq(sql_int(db_url, "SELECT migration FROM schema_functions"), last_version());
    ck_assert_int_eq(sql_int(db_url, "SELECT count(*) FROM pg_proc WHERE proname = 'hashed_id'"), 1);
    /* A second run has nothing to do. */
    ck_assert_int_eq(migrate_apply(db_url, 10, err, sizeof err), 0);
    ck_assert_int_eq(sql_int(db_url, "SELECT count(*) FROM schema_migrations"), migration_count());
}
END_TEST

START_TEST(hand_edited_function_goes_back)
{
    char err[512] = "";
    char *v;

    ck_assert_int_ge(migrate_apply(db_url, 10, err, sizeof err), 1);
    sql_do(db_url, "CREATE OR REPLACE FUNCTION api_time(t timestamptz) RETURNS text"
                   " LANGUAGE sql AS $$ SELECT 'edited by hand' $$");
    v = sql_value(db_url, "SELECT api_time(now())");
    ck_assert_str_eq(v, "edited by hand");
    free(v);
    ck_assert_int_eq(migrate_apply(db_url, 10, err, sizeof err), 0);
    v = sql_value(db_url, "SELECT api_time('2026-01-02 03:04:05.678+00')");
    ck_assert_str_ne(v, "edited by hand");
    ck_assert_ptr_nonnull(strstr(v, "2026-01-02"));
    free(v);
}
END_TEST

START_TEST(newer_binary_keeps_its_functions)
{
    char err[512] = "";
    char sql[160];
    char *v;

    ck_assert_int_ge(migrate_apply(db_url, 10, err, sizeof err), 1);
    /* A newer server (it knows a migration this binary does not) set the
     * functions last: an older one restarting must not put its own back. */
    snprintf(sql, sizeof sql, "UPDATE schema_functions SET migration = %d", last_version() + 1);
    sql_do(db_url, sql);
    sql_do(db_url, "CREATE OR REPLACE FUNCTION api_time(t timestamptz) RETURNS text"
                   " LANGUAGE sql AS $$ SELECT 'the newer text' $$");
    ck_assert_int_eq(migrate_apply(db_url, 10, err, sizeof err), 0);
    v = sql_value(db_url, "SELECT api_time(now())");
    ck_assert_str_eq(v, "the newer text");
    free(v);
    /* Once the record says this binary's (or older), ours go back. */
    snprintf(sql, sizeof sql, "UPDATE schema_functions SET migration = %d", last_version());
    sql_do(db_url, sql);
    ck_assert_int_eq(migrate_apply(db_url, 10, err, sizeof err), 0);
    v = sql_value(db_url, "SELECT api_time(now())");
    ck_assert_str_ne(v, "the newer text");
    free(v);
}
END_TEST

/* ---- the child on the loop ----------------------------------------------- */

struct done {
    int calls;
    int n;
    char err[512];
};

static void on_done(int n, const char *err, void *arg)
{
    struct done *d = arg;

    d->calls++;
    d->n = n;
    snprintf(d->err, sizeof d->err, "%s", err ? err : "");
}

static void on_deadline(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    *(int *)arg = 1;
}

/* Runs base until every done in ds has been called, or 60 s pass. */
static void run_until_done(struct event_base *base, struct done *ds, int nd)
{
    int expired = 0, left;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { 60, 0 };

    evtimer_add(t, &tv);
    do {
        left = 0;
        for (int i = 0; i < nd; i++)
            left += ds[i].calls == 0;
        if (left)
            event_base_loop(base, EVLOOP_ONCE);
    } while (left && !expired);
    event_free(t);
    ck_assert_msg(left == 0, "timed out waiting for %d migration children", left);
}

START_TEST(two_servers_apply_each_migration_once)
{
    struct event_base *base = event_base_new();
    struct done d[2] = { { 0 }, { 0 } };
    struct migrate_child *a, *b;

    a = migrate_start(base, db_url, 10, on_done, &d[0]);
    b = migrate_start(base, db_url, 10, on_done, &d[1]);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(d[0].calls + d[1].calls, 0);     /* never inside the call */
    run_until_done(base, d, 2);
    ck_assert_int_eq(d[0].calls, 1);
    ck_assert_int_eq(d[1].calls, 1);
    /* The lock serialised them: one applied everything, the other nothing. */
    ck_assert_msg(d[0].n + d[1].n == migration_count() && (d[0].n == 0 || d[1].n == 0),
                  "applied %d and %d of %d (%s / %s)", d[0].n, d[1].n, migration_count(),
                  d[0].err, d[1].err);
    ck_assert_int_eq(sql_int(db_url, "SELECT count(*) FROM schema_migrations"), migration_count());
    migrate_child_free(a);
    migrate_child_free(b);
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}
END_TEST

/* A URL whose port nobody listens on. */
static void dead_url(char *out, size_t outlen)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    snprintf(out, outlen, "postgresql://nobody@127.0.0.1:%d/nothing", ntohs(a.sin_port));
}

START_TEST(unreachable_is_a_clear_error)
{
    char url[160], err[512] = "";
    struct event_base *base = event_base_new();
    struct done d = { 0 };
    struct migrate_child *c;

    dead_url(url, sizeof url);
    ck_assert_int_eq(migrate_apply(url, 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot connect to PostgreSQL within 1 s"), "%s", err);
    ck_assert_ptr_null(strchr(err, '\n'));             /* one line, for the log */

    c = migrate_start(base, url, 1, on_done, &d);
    ck_assert_ptr_nonnull(c);
    run_until_done(base, &d, 1);
    ck_assert_int_eq(d.n, -1);
    ck_assert_msg(strstr(d.err, "cannot connect to PostgreSQL"), "%s", d.err);
    migrate_child_free(c);
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}
END_TEST

/* A SQL function whose body is one expression is inlined into the
 * statement that calls it, unless its declared volatility is below what
 * it calls (an IMMUTABLE body calling to_char, say).  Not inlined, every
 * statement calling it plans the body again: api_time cost a one-row
 * PATCH about 40 us that way.  Each such function of ours is called on
 * columns of a subquery the planner cannot fold, and the plan must not
 * name it. */
/* The public SQL functions of one expression the plan still names by name,
 * each after a space; "" when every one was inlined. */
static const char not_inlined_sql[] =
    "DO $$\n"
    "DECLARE f record; line text; plan text; missed text := '';\n"
    "BEGIN\n"
    "  FOR f IN SELECT p.proname,\n"
    "      (SELECT string_agg('a' || o, ',' ORDER BY o)\n"
    "         FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o)) refs,\n"
    "      (SELECT string_agg('NULL::' || format_type(t, NULL) || ' a' || o, ',' ORDER BY o)\n"
    "         FROM unnest(p.proargtypes) WITH ORDINALITY a(t, o)) cols\n"
    "    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace\n"
    "   WHERE n.nspname = 'public' AND p.pronargs > 0 AND NOT p.proretset\n"
    "     AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')\n"
    "     AND p.prorettype <> 'void'::regtype AND p.prosrc !~* '\\mfrom\\M'\n"
    "  LOOP\n"
    "    plan := '';\n"
    "    FOR line IN EXECUTE format('EXPLAIN VERBOSE SELECT %I(%s) FROM (SELECT %s OFFSET 0) s',\n"
    "                               f.proname, f.refs, f.cols) LOOP\n"
    "      plan := plan || line;\n"
    "    END LOOP;\n"
    "    IF plan ~ (f.proname || '\\(') THEN missed := missed || ' ' || f.proname; END IF;\n"
    "  END LOOP;\n"
    "  CREATE TEMP TABLE missed AS SELECT missed;\n"
    "END $$;\n"
    "SELECT missed FROM missed";

START_TEST(expression_functions_are_inlined)
{
    char err[512] = "";
    char *missed;

    ck_assert_int_ge(migrate_apply(db_url, 10, err, sizeof err), 1);
    missed = sql_value(db_url, not_inlined_sql);
    ck_assert_msg(strcmp(missed, "") == 0, "not inlined:%s", missed);
    free(missed);
    /* The check sees one that is not. */
    sql_do(db_url, "CREATE FUNCTION not_inlined_probe(t timestamptz) RETURNS text"
                   " LANGUAGE sql IMMUTABLE AS $$ SELECT to_char(t, 'YYYY') $$");
    missed = sql_value(db_url, not_inlined_sql);
    ck_assert_str_eq(missed, " not_inlined_probe");
    free(missed);
}
END_TEST

static Suite *migrate_suite(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc = tcase_create("real PostgreSQL");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, fresh_database_gets_everything_once);
    tcase_add_test(tc, hand_edited_function_goes_back);
    tcase_add_test(tc, newer_binary_keeps_its_functions);
    tcase_add_test(tc, two_servers_apply_each_migration_once);
    tcase_add_test(tc, unreachable_is_a_clear_error);
    tcase_add_test(tc, expression_functions_are_inlined);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    admin_url = getenv("TEST_DATABASE_URL");
    if (!admin_url || !*admin_url) {
        fprintf(stderr, "check_migrate: TEST_DATABASE_URL is not set (tools/test sets it)\n");
        return 77;              /* automake's SKIP: only outside tools/test */
    }
    return unit_run(migrate_suite());
}
