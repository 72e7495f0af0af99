/* builds: the HTTP side of builds (request, list, one, cancel, the runner
 * repository's approval) and their live event stream.  The work itself is
 * tasks/build's task kind; this module only queues it through SQL
 * (study_build_request), cancels it through queue/task, and relays the
 * events every server publishes on BUILD_EVENTS_CHANNEL. */
#include "config.h"

#include "studyhub/domain/builds.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"
#include "studyhub/queue/task.h"

#define STREAMS_MAX 512             /* event streams per process */
#define STREAM_PING_TICKS 15        /* seconds between keep-alive comments */

struct stream;
TAILQ_HEAD(stream_list, stream);

/* The event streams of this process. */
struct builds_events {
    struct app *app;                 /* borrowed */
    /* a subscriber connection of its own (redis_cmd refuses SUBSCRIBE: a
     * subscribed connection can do nothing else) */
    struct redis_subscriber *sub;    /* owned: BUILD_EVENTS_CHANNEL */
    struct stream_list streams;      /* owned */
    unsigned nstreams;
    struct event *tick;              /* owned: stream keep-alives, ends */
    bool stopping;
};

static struct builds_events *E;

static void iso_now(char out[64])
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);
}

/* ---- live events ------------------------------------------------------------------ */

/* One open event stream (GET .../builds/events). */
struct stream {
    TAILQ_ENTRY(stream) link;
    struct http_req *req;     /* owned until http_reply_end */
    char study[37];           /* the study it follows */
    unsigned ticks;           /* seconds since the last bytes sent */
};

static void stream_end(struct stream *s)
{
    TAILQ_REMOVE(&E->streams, s, link);
    E->nstreams--;
    http_reply_end(s->req);
    free(s);
}

static void stream_send(struct stream *s, const char *event, const char *data, size_t len)
{
    char head[64];
    int n = snprintf(head, sizeof head, "event: %s\ndata: ", event);

    /* A stream that cannot take more is ended by the next tick. */
    if (http_reply_chunk(s->req, head, (size_t)n) < 0 ||
        http_reply_chunk(s->req, data, len) < 0 || http_reply_chunk(s->req, "\n\n", 2) < 0)
        s->ticks = UINT_MAX;
    else
        s->ticks = 0;
}

/* Every second while streams are open: keep-alives, and ends for clients
 * that left, streams that fell behind, and a draining server. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct stream *s, *next;

    for (s = TAILQ_FIRST(&E->streams); s; s = next) {
        next = TAILQ_NEXT(s, link);
        if (s->ticks == UINT_MAX || http_req_client_gone(s->req) || E->app->draining ||
            E->stopping) {
            stream_end(s);
            continue;
        }
        if (++s->ticks >= STREAM_PING_TICKS) {
            if (http_reply_chunk(s->req, ": ping\n\n", 8) < 0)
                s->ticks = UINT_MAX;
            else
                s->ticks = 0;
        }
    }
    if (!TAILQ_EMPTY(&E->streams))
        util_timer_ms(E->tick, 1000);
}

/* A message of the subscriber: to the streams of its study. */
static void deliver_event(const char *payload, size_t len, void *arg)
{
    json_t *ev = json_loadb(payload, len, 0, NULL);
    const char *study = json_string_value(json_object_get(ev, "study"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    struct stream *s;

    if (study && type && strlen(type) < 32) {
        TAILQ_FOREACH(s, &E->streams, link)
            if (strcmp(s->study, study) == 0)
                stream_send(s, type, payload, len);
    }
    json_decref(ev);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static void reply_refusal(struct http_req *req, const char *verdict, const char *detail)
{
    if (strcmp(verdict, "forbidden") == 0)
        jsonapi_reply_errorf(req, 403, "permission_denied", NULL, "%s", detail);
    else if (strcmp(verdict, "invalid") == 0)
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "%s", detail);
    else if (strcmp(verdict, "conflict") == 0)
        jsonapi_reply_errorf(req, 409, "conflict", NULL, "%s", detail);
    else if (strcmp(verdict, "runner_repo_not_approved") == 0)
        jsonapi_reply_errorf(req, 409, "runner_repo_not_approved", NULL, "%s", detail);
    else
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s", detail);
}

/* A document PostgreSQL rendered, parsed again so jansson writes it. */
static void reply_doc(struct http_req *req, int status, const char *text, json_t *meta)
{
    json_t *doc = json_loads(text, 0, NULL);

    if (!doc) {
        json_decref(meta);
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return;
    }
    if (meta)
        json_object_set_new(doc, "meta", meta);
    jsonapi_reply(req, status, doc);
}

/* -- POST build/ and preview/ */

static const struct pg_stmt stmt_request = {
    "build_request",
    "SELECT verdict, detail, task_uuid, doc::text"
    "  FROM study_build_request($1::bigint, $2::uuid, $3, $4, $5)",
};

static bool route_is_preview(const struct http_req *req)
{
    return strstr(http_req_route(req), "/preview") != NULL;
}

static void on_requested(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    const char *verdict, *detail;

    if (res && !pg_ok(res) && (strcmp(pg_sqlstate(res), "40P01") == 0 ||
                               strcmp(pg_sqlstate(res), "40001") == 0)) {
        /* Met a build of the study that was ending at that instant. */
        jsonapi_reply_errorf(req, 409, "conflict", NULL,
                             "A concurrent change got in the way; try again.");
        return;
    }
    if (apidoc_db_failed(req, res, "build request"))
        return;
    verdict = PQgetvalue(res, 0, 0);
    detail = PQgetvalue(res, 0, 1);
    if (strcmp(verdict, "created") == 0) {
        json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "type", "queued", "study",
                               http_req_param(req, 0), "task", PQgetvalue(res, 0, 2), "mode",
                               route_is_preview(req) ? "preview" : "deploy");
        if (ev) {
            /* The path's uuid may be upper case: streams know it lower. */
            char su[37];
            if (apidoc_uuid_copy(http_req_param(req, 0), su))
                json_object_set_new(ev, "study", json_string(su));
            builds_publish(E->app, ev);
        }
        reply_doc(req, 202, PQgetvalue(res, 0, 3), NULL);
        return;
    }
    if (strcmp(verdict, "conflict") == 0 && !PQgetisnull(res, 0, 2)) {
        struct jsonapi_error e;
        json_t *doc, *err;

        jsonapi_error_set(&e, 409, "build_in_progress", NULL, "%s", detail);
        doc = jsonapi_error_doc(&e);
        err = json_array_get(json_object_get(doc, "errors"), 0);
        if (err)
            json_object_set_new(err, "meta", json_pack("{s:s}", "task", PQgetvalue(res, 0, 2)));
        jsonapi_reply(req, 409, doc);
        return;
    }
    reply_refusal(req, verdict, detail);
}

static void h_request(struct http_req *req, struct app *app)
{
    char su[37], uid[24];
    const char *params[5];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    params[0] = perms_user_param(req, uid);
    params[1] = su;
    params[2] = route_is_preview(req) ? "preview" : "deploy";
    params[3] = http_req_base_url(req);
    params[4] = app->cfg->runner_repo_url;
    if (pg_exec(app->pg, &stmt_request, 5, params, on_requested, req) < 0)
        jsonapi_reply_unavailable(req, "Memory");
}

/* -- GET builds/ */

/* The rows in the layout perms_reply_list renders. */
static const struct pg_stmt stmt_list = {
    "build_list",
    "SELECT count, item::text, verdict, detail, NULL::text"
    "  FROM study_builds_list($1::bigint, $2::uuid, $3::int, $4::int, $5)",
};

static void h_list(struct http_req *req, struct app *app)
{
    char su[37], uid[24], limit[24], offset[24];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), su, limit, offset,
                             http_req_base_url(req) };
    perms_exec_list(req, app, &stmt_list, 5, params);
}

/* -- GET and DELETE builds/{task}/ */

static const struct pg_stmt stmt_get = {
    "build_get",
    "SELECT verdict, detail, task_id, state, doc::text"
    "  FROM study_build_get($1::bigint, $2::uuid, $3::uuid, $4::boolean, $5)",
};

static void doc_free(void *p)
{
    json_decref(p);
}

static void on_cancelled(enum task_cancel_status st, void *arg)
{
    struct http_req *req = arg;
    json_t *doc = http_req_data(req);

    switch (st) {
    case TASK_CANCEL_CANCELLED:
    case TASK_CANCEL_REQUESTED:
        json_incref(doc);
        json_object_set_new(doc, "meta", json_pack("{s:s}", "cancel",
                            st == TASK_CANCEL_CANCELLED ? "cancelled" : "requested"));
        jsonapi_reply(req, 202, doc);
        return;
    case TASK_CANCEL_ALREADY_DONE:
        jsonapi_reply_errorf(req, 409, "conflict", NULL, "This build has already ended.");
        return;
    case TASK_CANCEL_NOT_FOUND:
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No such build of this study.");
        return;
    default:
        jsonapi_reply_unavailable(req, "PostgreSQL");
        return;
    }
}

static void on_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    const char *verdict, *state;
    json_t *doc;

    if (apidoc_db_failed(req, res, "build"))
        return;
    verdict = PQgetvalue(res, 0, 0);
    if (strcmp(verdict, "ok") != 0) {
        reply_refusal(req, verdict, PQgetvalue(res, 0, 1));
        return;
    }
    if (http_req_method(req) != HTTP_DELETE) {
        reply_doc(req, 200, PQgetvalue(res, 0, 4), NULL);
        return;
    }
    state = PQgetvalue(res, 0, 3);
    if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0) {
        jsonapi_reply_errorf(req, 409, "conflict", NULL, "This build has already ended (%s).",
                             state);
        return;
    }
    if (!(doc = json_loads(PQgetvalue(res, 0, 4), 0, NULL))) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return;
    }
    http_req_set_data(req, doc, doc_free);
    if (task_cancel(E->app->tasks, http_req_param(req, 1), on_cancelled, req) < 0)
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No such build of this study.");
}

static void h_one(struct http_req *req, struct app *app)
{
    char su[37], tu[37], uid[24];
    const char *params[5];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su) ||
        !apidoc_uuid_copy(http_req_param(req, 1), tu)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    params[0] = perms_user_param(req, uid);
    params[1] = su;
    params[2] = tu;
    params[3] = http_req_method(req) == HTTP_DELETE ? "true" : "false";
    params[4] = http_req_base_url(req);
    if (pg_exec(app->pg, &stmt_get, 5, params, on_got, req) < 0)
        jsonapi_reply_unavailable(req, "Memory");
}

/* -- GET builds/events */

static const struct pg_stmt stmt_events = {
    "build_events_open",
    "SELECT q.ok, CASE WHEN q.ok THEN (SELECT build_resource(b.task_id, $3)::text"
    "                                    FROM study_builds b WHERE b.study_id = q.id"
    "                                   ORDER BY b.task_id DESC LIMIT 1) END"
    "  FROM (SELECT s.id, s.id IS NOT NULL"
    "               AND has_study_perm($1::bigint, s.id, 'read_study__details') AS ok"
    "          FROM (SELECT $2::uuid AS u) x LEFT JOIN studies s ON s.uuid = x.u) q",
};

static void on_events_open(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct stream *s;
    json_t *snap, *build = NULL;
    char *text;

    if (apidoc_db_failed(req, res, "build events"))
        return;
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (!E || E->stopping || E->app->draining || E->nstreams >= STREAMS_MAX) {
        http_add_header(req, "Retry-After", "5");
        jsonapi_reply_errorf(req, 503, "unavailable", NULL,
                             "Too many event streams are open; try again later.");
        return;
    }
    if (!(s = calloc(1, sizeof *s))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    s->req = req;
    apidoc_uuid_copy(http_req_param(req, 0), s->study);
    if (!PQgetisnull(res, 0, 1))
        build = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    snap = json_pack("{s:s, s:s, s:o}", "type", "snapshot", "study", s->study, "build",
                     build ? build : json_null());
    text = snap ? json_dumps(snap, JSON_COMPACT) : NULL;
    json_decref(snap);
    http_add_header(req, "X-Accel-Buffering", "no");
    http_reply_start(req, 200, "text/event-stream; charset=utf-8");
    TAILQ_INSERT_TAIL(&E->streams, s, link);
    E->nstreams++;
    /* Reconnect after 2 s when the stream breaks. */
    http_reply_chunk(req, "retry: 2000\n\n", 13);
    if (text)
        stream_send(s, "snapshot", text, strlen(text));
    free(text);
    if (!evtimer_pending(E->tick, NULL))
        util_timer_ms(E->tick, 1000);
}

static void h_events(struct http_req *req, struct app *app)
{
    char su[37], uid[24];
    const char *params[3];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    params[0] = perms_user_param(req, uid);
    params[1] = su;
    params[2] = http_req_base_url(req);
    if (pg_exec(app->pg, &stmt_events, 3, params, on_events_open, req) < 0)
        jsonapi_reply_unavailable(req, "Memory");
}

/* -- POST and DELETE runner-approval/ */

static const struct pg_stmt stmt_approve = {
    "build_runner_approve",
    "SELECT * FROM study_runner_approve($1::bigint, $2::uuid, $3, $4, $5)",
};

static const struct pg_stmt stmt_revoke = {
    "build_runner_revoke",
    "SELECT * FROM study_runner_revoke($1::bigint, $2::uuid)",
};

/* {"data": {"type": "runner-approvals", "attributes": {"repo_url": URL}}}:
 * the URL the reviewer looked at, which must be the study's current one
 * (checked by the statement) and inside RUNNER_REPO_ALLOW. */
static void h_approve(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL;
    const char *url;
    char su[37], uid[24];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (jsonapi_parse_request(req, "runner-approvals", NULL, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return;
    }
    url = json_string_value(json_object_get(json_object_get(data, "attributes"), "repo_url"));
    if (!url || !*url || strlen(url) > 1000) {
        jsonapi_reply_errorf(req, 400, "required", "/data/attributes/repo_url",
                             "Give the repository URL you approve as attributes.repo_url.");
    } else if (!builds_repo_allowed(app->cfg, url)) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes/repo_url",
                             "This server builds no repository outside RUNNER_REPO_ALLOW, "
                             "approved or not.");
    } else {
        const char *params[] = { perms_user_param(req, uid), su, url, app->cfg->runner_repo_url,
                                 http_req_base_url(req) };
        perms_exec(req, app, &stmt_approve, 5, params);
    }
    json_decref(data);
}

static void h_revoke(struct http_req *req, struct app *app)
{
    char su[37], uid[24];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), su };
    perms_exec(req, app, &stmt_revoke, 2, params);
}

/* Upstream's trailing slashes, and issue 6's spelling without; the event
 * stream before {task}: the first match wins. */
static const struct route build_route_table[] = {
    { HTTP_GET, "/api/v1/studies/{id}/builds/events", h_events, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/studies/{id}/build/?", h_request, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/studies/{id}/preview/?", h_request, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/studies/{id}/builds/?", h_list, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/studies/{id}/builds/{task}/?", h_one, ROUTE_RESEARCHER },
    { HTTP_DELETE, "/api/v1/studies/{id}/builds/{task}/?", h_one, ROUTE_RESEARCHER },
    /* The statements check approve_runner_repo (site reviewers). */
    { HTTP_POST, "/api/v1/studies/{id}/runner-approval/?", h_approve, ROUTE_RESEARCHER },
    { HTTP_DELETE, "/api/v1/studies/{id}/runner-approval/?", h_revoke, ROUTE_RESEARCHER },
};

int builds_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, build_route_table);
}


bool builds_repo_allowed(const struct config *c, const char *url)
{
    const char *p = c->runner_repo_allow;

    if (strcmp(url, c->runner_repo_url) == 0)
        return true;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        while (n && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n && isspace((unsigned char)p[n - 1]))
            n--;
        if (n && strncmp(url, p, n) == 0)
            return true;
        p += end ? (size_t)(end - p) + 1 : strlen(p);
    }
    return false;
}

/* Tells every server's streams (fire and forget: a lost event is seen in
 * the next snapshot). */
void builds_publish(struct app *app, json_t *ev)
{
    char at[64];
    char *s;

    iso_now(at);
    json_object_set_new(ev, "at", json_string(at));
    s = json_dumps(ev, JSON_COMPACT);
    if (s)
        redis_cmd(app->redis, NULL, NULL, "PUBLISH %s %b", BUILD_EVENTS_CHANNEL, s,
                  strlen(s));
    free(s);
    json_decref(ev);
}

/* ---- start and stop ---------------------------------------------------------------- */

int builds_events_start(struct app *app)
{
    const struct config *c = app->cfg;

    if (E)
        return -1;
    if (!(E = calloc(1, sizeof *E)))
        return -1;
    E->app = app;
    TAILQ_INIT(&E->streams);
    E->tick = evtimer_new(app->base, on_tick, NULL);
    if (E->tick)
        E->sub = redis_subscriber_new(app->base, c->redis_host, (int)c->redis_port,
                                      c->redis_password, BUILD_EVENTS_CHANNEL, deliver_event,
                                      NULL);
    if (!E->tick || !E->sub) {
        builds_events_stop();
        return -1;
    }
    return 0;
}

void builds_events_stop(void)
{
    struct stream *s;

    if (!E)
        return;
    E->stopping = true;
    /* Streams end while draining (on_tick); one left now belongs to a
     * server already past http_server_free: only our record goes. */
    while ((s = TAILQ_FIRST(&E->streams))) {
        TAILQ_REMOVE(&E->streams, s, link);
        log_warn("build: an event stream was still open at exit");
        free(s);
    }
    redis_subscriber_free(E->sub);
    if (E->tick)
        event_free(E->tick);
    free(E);
    E = NULL;
}
