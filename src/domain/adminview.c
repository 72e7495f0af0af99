/* adminview: the admin pages' read-only view of scheduled jobs and tasks
 * (see adminview.h).  Jobs come from this server's scheduler (their
 * times) and its sched_recent_runs (their outcomes, written by every
 * server), as `studyhubctl jobs` shows them; tasks from the tasks table,
 * as task_commands.c reads them. */
#include "studyhub/domain/adminview.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/util.h"
#include "studyhub/queue/sched.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

int adminview_parse_filter(const char *s, enum adminview_filter *out)
{
    if (!s || !*s || strcmp(s, "active") == 0)
        *out = ADMINVIEW_ACTIVE;
    else if (strcmp(s, "finished") == 0)
        *out = ADMINVIEW_FINISHED;
    else if (strcmp(s, "all") == 0)
        *out = ADMINVIEW_ALL;
    else
        return -1;
    return 0;
}

/* ------------------------------------------------------------ tasks */

/* $1 filter (active, finished, all), $2 limit, $3 offset.  perms.h's list
 * layout.  Active: oldest first (the queue's order); otherwise the last
 * to finish first, then the unfinished newest first. */
static const struct pg_stmt av_tasks_stmt = {
    "adminview_tasks",
    "WITH t AS (SELECT * FROM tasks"
    "            WHERE CASE $1::text WHEN 'active' THEN state IN ('queued', 'running')"
    "                                WHEN 'finished' THEN finished_at IS NOT NULL"
    "                                ELSE true END)"
    " SELECT (SELECT count(*) FROM t), p.item, 'ok', NULL, NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT json_build_object('type', 'admin-tasks', 'id', t.uuid,"
    "              'attributes', json_build_object("
    "                'pk', t.id, 'kind', t.kind, 'state', t.state, 'stage', t.stage,"
    "                'outcome', t.outcome, 'problems', t.problems,"
    "                'subject', t.subject, 'attempts', t.attempts,"
    "                'cancel_requested', t.cancel_requested, 'lease_owner', t.lease_owner,"
    "                'created_at', api_time(t.created_at), 'run_after', api_time(t.run_after),"
    "                'started_at', api_time(t.started_at),"
    "                'finished_at', api_time(t.finished_at),"
    "                'took_s', round(EXTRACT(EPOCH FROM t.finished_at"
    "                                 - coalesce(t.started_at, t.created_at))::numeric, 1),"
    "                'error', t.error)) AS item, x.rank"
    "       FROM (SELECT id, row_number() OVER ("
    "                      ORDER BY CASE WHEN $1::text = 'active' THEN id END ASC,"
    "                               finished_at DESC NULLS FIRST, id DESC) AS rank"
    "               FROM t ORDER BY rank LIMIT $2::bigint OFFSET $3::bigint) x"
    "       JOIN tasks t ON t.id = x.id) p ON true"
    "  ORDER BY p.rank",
};

static void h_tasks(struct http_req *req, struct app *app)
{
    static const char *const names[] = { "active", "finished", "all" };
    enum adminview_filter f;
    char limit[24], offset[24];

    if (adminview_parse_filter(http_req_query(req, "state"), &f) < 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "state must be active, finished or all.");
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { names[f], limit, offset };
    perms_exec_list(req, app, &av_tasks_stmt, 3, params);
}

/* ------------------------------------------------------------ jobs */

/* Every job of this server's scheduler with its next slot and its last
 * three runs (sched_recent_runs: job_runs, written by every server),
 * taken while the scheduler is held for the answer. */
static void runs_read(struct sched *s, PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct sched_job_view ji;
    json_t *data = json_array();
    int r = 0;

    if (!s || !res || !data) {
        json_decref(data);
        jsonapi_reply_unavailable(req, !s ? "Scheduler" : !res ? "Database" : "Memory");
        return;
    }
    for (int i = 0; i < sched_job_count(s); i++) {
        json_t *runs = json_array(), *next_run = json_null();
        char next[UTIL_API_TIME_LEN], slot[UTIL_API_TIME_LEN], started[UTIL_API_TIME_LEN];

        sched_job_view(s, i, &ji);
        if (ji.next != (time_t)-1 && ji.next != 0) {
            util_api_time((double)ji.next, next);
            next_run = json_string(next);
        }
        /* The rows come by job, then newest first. */
        for (r = 0; r < PQntuples(res); r++) {
            if (strcmp(PQgetvalue(res, r, 0), ji.name) != 0)
                continue;
            /* The detail's last line: what the run ended with. */
            const char *detail = PQgetvalue(res, r, 7);
            const char *last = strrchr(detail, '\n');
            last = last && last[1] ? last + 1 : detail;
            util_api_time(strtod(PQgetvalue(res, r, 4), NULL), slot);
            util_api_time(strtod(PQgetvalue(res, r, 5), NULL), started);
            json_array_append_new(
                runs, json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:s%, s:s}", "id",
                                (json_int_t)atoll(PQgetvalue(res, r, 1)), "reason",
                                PQgetvalue(res, r, 2), "outcome", PQgetvalue(res, r, 3),
                                "scheduled_for", slot, "started_at", started, "took_s",
                                round(strtod(PQgetvalue(res, r, 6), NULL) * 100) / 100,
                                "detail", last, strcspn(last, "\n"), "instance",
                                PQgetvalue(res, r, 8)));
        }
        json_array_append_new(
            data, json_pack("{s:s, s:s, s:{s:s?, s:s?, s:o, s:b, s:o}}", "type", "admin-jobs",
                            "id", ji.name, "attributes", "at", ji.at, "zone", sched_zone(s),
                            "next_run", next_run, "running_here", ji.running_here, "runs",
                            runs));
    }
    json_t *doc = json_pack("{s:o, s:{s:I}}", "data", data, "meta", "count",
                            (json_int_t)json_array_size(data));
    if (doc)
        jsonapi_reply(req, 200, doc);
    else
        jsonapi_reply_unavailable(req, "Memory");
}

static void h_jobs(struct http_req *req, struct app *app)
{
    if (!app->sched) {
        jsonapi_reply_unavailable(req, "Scheduler");
        return;
    }
    sched_recent_runs(app->sched, runs_read, req);
}

static const struct route adminview_route_table[] = {
    { HTTP_GET, "/api/v1/admin/jobs/", h_jobs, ROUTE_SITE_ADMIN },
    { HTTP_GET, "/api/v1/admin/tasks/", h_tasks, ROUTE_SITE_ADMIN },
};

int adminview_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, adminview_route_table);
}
