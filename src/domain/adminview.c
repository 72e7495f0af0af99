/* adminview: the admin pages' read-only view of scheduled jobs and tasks
 * (see adminview.h).  Jobs come from this server's scheduler (their
 * times) and job_runs (their outcomes, written by every server); tasks
 * from the tasks table, as task_commands.c reads them. */
#include "studyhub/domain/adminview.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
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

/* The last three runs of every job, as `jobs` lists them. */
static const struct pg_stmt av_runs_stmt = {
    "adminview_runs",
    "SELECT job, id, reason, outcome, api_time(scheduled_for), api_time(started_at),"
    "  round(EXTRACT(EPOCH FROM coalesce(finished_at, now()) - started_at)::numeric, 2),"
    "  detail, instance"
    " FROM (SELECT *, row_number() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) rn"
    "       FROM job_runs) x"
    " WHERE rn <= 3 ORDER BY job, started_at DESC, id DESC",
};

/* A jobs request between the scheduler's snapshot and the runs. */
struct jobs_req {
    struct http_req *req;   /* borrowed */
    json_t *data;           /* owned: the jobs, runs still empty */
};

static void runs_read(PGresult *res, void *arg)
{
    struct jobs_req *jr = arg;
    size_t i;
    json_t *job;

    if (apidoc_db_failed(jr->req, res, "adminview_runs"))
        goto out;
    json_array_foreach(jr->data, i, job) {
        const char *name = json_string_value(json_object_get(job, "id"));
        json_t *runs = json_object_get(json_object_get(job, "attributes"), "runs");
        for (int r = 0; r < PQntuples(res); r++) {
            if (strcmp(PQgetvalue(res, r, 0), name) != 0)
                continue;
            /* The detail's last line: what the run ended with. */
            const char *detail = PQgetvalue(res, r, 7);
            const char *last = strrchr(detail, '\n');
            last = last && last[1] ? last + 1 : detail;
            json_array_append_new(
                runs, json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:s%, s:s}", "id",
                                (json_int_t)atoll(PQgetvalue(res, r, 1)), "reason",
                                PQgetvalue(res, r, 2), "outcome", PQgetvalue(res, r, 3),
                                "scheduled_for", PQgetvalue(res, r, 4), "started_at",
                                PQgetvalue(res, r, 5), "took_s",
                                strtod(PQgetvalue(res, r, 6), NULL), "detail", last,
                                strcspn(last, "\n"), "instance", PQgetvalue(res, r, 8)));
        }
    }
    json_t *doc = json_pack("{s:O, s:{s:I}}", "data", jr->data, "meta", "count",
                            (json_int_t)json_array_size(jr->data));
    if (doc)
        jsonapi_reply(jr->req, 200, doc);
    else
        jsonapi_reply_unavailable(jr->req, "Memory");
out:
    json_decref(jr->data);
    free(jr);
}

static void h_jobs(struct http_req *req, struct app *app)
{
    struct jobs_req *jr = calloc(1, sizeof *jr);
    struct sched_job_view ji;
    char next[32];

    if (!jr || !(jr->data = json_array()))
        goto oom;
    jr->req = req;
    /* The scheduler's part now: the reply comes after the query, and the
     * scheduler may be gone by then (a stopping server). */
    for (int i = 0; app->sched && i < sched_job_count(app->sched); i++) {
        struct tm tm;
        json_t *next_run = json_null();

        sched_job_view(app->sched, i, &ji);
        if (ji.next != (time_t)-1 && ji.next != 0 && gmtime_r(&ji.next, &tm)) {
            strftime(next, sizeof next, "%Y-%m-%dT%H:%M:%SZ", &tm);
            next_run = json_string(next);
        }
        if (json_array_append_new(
                jr->data, json_pack("{s:s, s:s, s:{s:s?, s:s?, s:o, s:b, s:[]}}", "type",
                                    "admin-jobs", "id", ji.name, "attributes", "at", ji.at,
                                    "zone", sched_zone(app->sched), "next_run", next_run,
                                    "running_here", ji.running_here, "runs")) < 0)
            goto oom;
    }
    if (pg_exec(app->pg, &av_runs_stmt, 0, NULL, runs_read, jr) < 0) {
        json_decref(jr->data);
        free(jr);
        jsonapi_reply_unavailable(req, "Database");
    }
    return;
oom:
    if (jr)
        json_decref(jr->data);
    free(jr);
    jsonapi_reply_unavailable(req, "Memory");
}

static const struct route adminview_route_table[] = {
    { HTTP_GET, "/api/v1/admin/jobs/", h_jobs, ROUTE_SITE_ADMIN },
    { HTTP_GET, "/api/v1/admin/tasks/", h_tasks, ROUTE_SITE_ADMIN },
};

int adminview_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, adminview_route_table);
}
