/* health: liveness, readiness and metrics, plus the test-only /debug/
 * routes (ROUTE_DEBUG: only with DEBUG_ROUTES=1). */
#include "studyhub/http/health.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/metrics.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "studyhub/http/conns.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

/* 200 while the process runs; "starting" until the migrations are done
 * and every route is served, then "ok". */
static void healthz(struct http_req *req, struct app *app)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    static const char starting[] = "{\"status\":\"starting\"}";

    if (app->pg)
        http_reply(req, 200, "application/json", ok, sizeof ok - 1);
    else
        http_reply(req, 200, "application/json", starting, sizeof starting - 1);
}

/* /readyz asks both services for a round trip at once. */
struct readiness {
    struct http_req *req;   /* answered when pending reaches 0 */
    int pending;
    bool pg_ok;
    bool redis_ok;
};

static void readiness_done(struct readiness *r)
{
    if (--r->pending > 0)
        return;
    json_t *down = json_array();
    if (!r->pg_ok)
        json_array_append_new(down, json_string("postgresql"));
    if (!r->redis_ok)
        json_array_append_new(down, json_string("redis"));
    bool ready = json_array_size(down) == 0;
    json_t *doc = json_pack("{s:s, s:{s:s, s:s}, s:o}",
                            "status", ready ? "ok" : "unavailable",
                            "checks", "postgresql", r->pg_ok ? "up" : "down",
                            "redis", r->redis_ok ? "up" : "down", "down", down);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_reply(r->req, ready ? 200 : 503, "application/json", text ? text : "{}",
               text ? strlen(text) : 2);
    free(text);
    free(r);
}

static const struct pg_stmt stmt_ping = { "health_ping", "SELECT 1" };

static void readiness_pg(PGresult *res, void *arg)
{
    struct readiness *r = arg;
    r->pg_ok = res && pg_ok(res);
    readiness_done(r);
}

static void readiness_redis(redisReply *reply, void *arg)
{
    struct readiness *r = arg;
    r->redis_ok = reply && reply->type != REDIS_REPLY_ERROR;
    readiness_done(r);
}

static void readyz(struct http_req *req, struct app *app)
{
    struct readiness *r;

    if (!app->pg || !app->redis) {
        /* Starting: PostgreSQL awaited, migrations running. */
        static const char body[] = "{\"status\":\"starting\",\"checks\":"
            "{\"migrations\":\"running\"},\"down\":[\"migrations\"]}";
        http_reply(req, 503, "application/json", body, sizeof body - 1);
        return;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    r->req = req;
    r->pending = 2;
    /* A pool with no live connection is down now, not after the timeout. */
    if (!pg_pool_ready(app->pg) || pg_exec(app->pg, &stmt_ping, 0, NULL, readiness_pg, r) < 0) {
        r->pg_ok = false;
        r->pending--;
    }
    if (redis_cmd(app->redis, readiness_redis, r, "PING") < 0) {
        r->redis_ok = false;
        r->pending--;
    }
    if (r->pending == 0) {
        r->pending = 1;
        readiness_done(r);
    }
}

/* Entries of /proc/self/fd, less the one opendir holds (-1: unknown). */
static int open_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static long max_fd_count(void)
{
    struct rlimit rl;

    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : -1;
}

/* Long work by its three outcomes (and cancelled tasks): what ended on
 * this server since it started. */
static void render_outcomes(const struct app *app, struct evbuffer *out)
{
    long tasks[TASK_OUTCOMES], runs[SCHED_OUTCOMES];

    task_runner_outcomes(app->tasks, tasks);
    sched_outcomes(app->sched, runs);
    evbuffer_add_printf(out, "# HELP studyhub_tasks_finished_total Tasks this server "
                        "finished, by outcome.\n# TYPE studyhub_tasks_finished_total counter\n");
    for (int i = 0; i < TASK_OUTCOMES; i++)
        evbuffer_add_printf(out, "studyhub_tasks_finished_total{outcome=\"%s\"} %ld\n",
                            task_outcome_kind_name((enum task_outcome_kind)i), tasks[i]);
    evbuffer_add_printf(out, "# HELP studyhub_job_runs_total Scheduled job runs this "
                        "server ended, by outcome.\n# TYPE studyhub_job_runs_total counter\n");
    for (int i = 0; i < SCHED_OUTCOMES; i++)
        evbuffer_add_printf(out, "studyhub_job_runs_total{outcome=\"%s\"} %ld\n",
                            sched_outcome_name((enum sched_outcome)i), runs[i]);
}

static void metrics_route(struct http_req *req, struct app *app)
{
    struct evbuffer *out = evbuffer_new();
    struct pg_pool_stats ps;
    struct http_conns_stats cs;

    if (!out) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    metrics_render(app->metrics, out);
    render_outcomes(app, out);
    pg_pool_stats(app->pg, &ps);
    http_conns_stats(http_server_conns(app->http), &cs);
    evbuffer_add_printf(out,
        "# HELP studyhub_pg_pool_size PostgreSQL connections configured.\n"
        "# TYPE studyhub_pg_pool_size gauge\nstudyhub_pg_pool_size %d\n"
        "# HELP studyhub_pg_pool_connected PostgreSQL connections up.\n"
        "# TYPE studyhub_pg_pool_connected gauge\nstudyhub_pg_pool_connected %d\n"
        "# HELP studyhub_pg_pool_in_use PostgreSQL connections running a query.\n"
        "# TYPE studyhub_pg_pool_in_use gauge\nstudyhub_pg_pool_in_use %d\n"
        "# HELP studyhub_pg_pool_waiting Queries waiting for a PostgreSQL connection.\n"
        "# TYPE studyhub_pg_pool_waiting gauge\nstudyhub_pg_pool_waiting %d\n"
        "# HELP studyhub_pg_known_down 1 while PostgreSQL is known down (queries fail at once).\n"
        "# TYPE studyhub_pg_known_down gauge\nstudyhub_pg_known_down %d\n"
        "# HELP studyhub_pg_failed_fast_total Queries failed at once while PostgreSQL was down.\n"
        "# TYPE studyhub_pg_failed_fast_total counter\nstudyhub_pg_failed_fast_total %ld\n"
        "# HELP studyhub_pg_query_timeouts_total Queries whose session was dropped at the deadline.\n"
        "# TYPE studyhub_pg_query_timeouts_total counter\nstudyhub_pg_query_timeouts_total %ld\n"
        "# HELP studyhub_pg_grouped_total Writes committed in a group (one transaction for several).\n"
        "# TYPE studyhub_pg_grouped_total counter\nstudyhub_pg_grouped_total %ld\n"
        "# HELP studyhub_pg_group_retries_total Groups rolled back whose writes then ran alone.\n"
        "# TYPE studyhub_pg_group_retries_total counter\nstudyhub_pg_group_retries_total %ld\n"
        "# HELP studyhub_redis_connected 1 when the Redis connection is up.\n"
        "# TYPE studyhub_redis_connected gauge\nstudyhub_redis_connected %d\n"
        "# HELP studyhub_http_inflight Requests accepted and not yet answered.\n"
        "# TYPE studyhub_http_inflight gauge\nstudyhub_http_inflight %u\n"
        "# HELP studyhub_http_connections Open client connections.\n"
        "# TYPE studyhub_http_connections gauge\nstudyhub_http_connections %u\n"
        "# HELP studyhub_http_accepts_refused_total Connections closed at once at the descriptor limit.\n"
        "# TYPE studyhub_http_accepts_refused_total counter\nstudyhub_http_accepts_refused_total %lu\n"
        "# HELP studyhub_http_slow_closed_total Connections closed past their request deadline.\n"
        "# TYPE studyhub_http_slow_closed_total counter\nstudyhub_http_slow_closed_total %lu\n"
        "# HELP studyhub_http_over_cap_total Connections closed at accept: too many from one address.\n"
        "# TYPE studyhub_http_over_cap_total counter\nstudyhub_http_over_cap_total %lu\n"
        "# HELP studyhub_open_fds Open file descriptors of the process.\n"
        "# TYPE studyhub_open_fds gauge\nstudyhub_open_fds %d\n"
        "# HELP studyhub_max_fds The process's descriptor limit (RLIMIT_NOFILE).\n"
        "# TYPE studyhub_max_fds gauge\nstudyhub_max_fds %ld\n",
        ps.size, ps.connected, ps.in_use, ps.waiting, ps.known_down ? 1 : 0,
        ps.failed_fast, ps.timed_out, ps.grouped, ps.group_retries, redis_connected(app->redis) ? 1 : 0,
        http_server_inflight(app->http), http_server_connections(app->http),
        http_server_accepts_refused(app->http), cs.slow_closed, cs.over_cap,
        open_fd_count(), max_fd_count());
    http_reply_buffer(req, 200, "text/plain; version=0.0.4", out);
    evbuffer_free(out);
}

/* /debug/sleep?ms=N: a slow request, for the drain test. */
struct sleeper {
    struct http_req *req;
    struct event *timer;    /* owned */
};

static void sleeper_fire(evutil_socket_t fd, short what, void *arg)
{
    struct sleeper *s = arg;
    static const char body[] = "{\"slept\":true}";
    http_reply(s->req, 200, "application/json", body, sizeof body - 1);
    event_free(s->timer);
    free(s);
}

static void debug_sleep(struct http_req *req, struct app *app)
{
    const char *ms_s = http_req_query(req, "ms");
    long ms = ms_s ? strtol(ms_s, NULL, 10) : 1000;
    struct sleeper *s;

    if (ms < 0 || ms > 60000)
        ms = 1000;
    s = calloc(1, sizeof *s);
    if (!s || !(s->timer = evtimer_new(app->base, sleeper_fire, s))) {
        free(s);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    s->req = req;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(s->timer, &tv);
}

/* /debug/echo/...: the path as the router saw it, for the parser tests. */
static void debug_echo(struct http_req *req, struct app *app)
{
    json_t *doc = json_pack("{s:s}", "path", http_req_path(req));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_reply(req, 200, "application/json", text ? text : "{}", text ? strlen(text) : 2);
    free(text);
}

/* /debug/page: a text/html reply, so the tests can see the page
 * Content-Security-Policy the server adds to every HTML page. */
static void debug_page(struct http_req *req, struct app *app)
{
    static const char body[] =
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>studyhub</title></head><body><p>page</p></body></html>\n";
    http_reply(req, 200, "text/html; charset=utf-8", body, sizeof body - 1);
}

static const struct route health_route_table[] = {
    { HTTP_GET, "/healthz", healthz, ROUTE_PUBLIC },
    { HTTP_GET, "/readyz", readyz, ROUTE_PUBLIC },
    { HTTP_GET, "/metrics", metrics_route, ROUTE_OPERATOR },
    { HTTP_GET, "/debug/sleep", debug_sleep, ROUTE_DEBUG },
    { HTTP_GET, "/debug/echo/*", debug_echo, ROUTE_DEBUG },
    { HTTP_GET, "/debug/page", debug_page, ROUTE_DEBUG },
};

int health_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, health_route_table);
}

/* Anything else while starting: not "not found", but "come back". */
static void starting(struct http_req *req, struct app *app)
{
    (void)app;
    http_add_header(req, "Retry-After", "2");
    jsonapi_reply_errorf(req, 503, "starting", NULL,
                         "The server is starting (waiting for the database); try again shortly.");
}

static const struct route starting_route_table[] = {
    { HTTP_GET, "/*", starting, ROUTE_PUBLIC },
    { HTTP_HEAD, "/*", starting, ROUTE_PUBLIC },
    { HTTP_POST, "/*", starting, ROUTE_PUBLIC },
    { HTTP_PUT, "/*", starting, ROUTE_PUBLIC },
    { HTTP_PATCH, "/*", starting, ROUTE_PUBLIC },
    { HTTP_DELETE, "/*", starting, ROUTE_PUBLIC },
    { HTTP_OPTIONS, "/*", starting, ROUTE_PUBLIC },
};

int health_starting_routes(struct router *r)
{
    if (health_routes(r) < 0)
        return -1;
    return ROUTER_ADD_TABLE(r, starting_route_table);
}
