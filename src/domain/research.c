/* research: the consent manager, response management and the access log
 * (issue 15; routes in research.h).  Each handler checks the shape of its
 * input here and hands the rest to one statement of
 * sql/084_research_data.sql, which checks permissions, changes, writes
 * the access log and renders the reply in one transaction. */
#include "config.h"

#include "studyhub/domain/research.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/domain/videos.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"

#define NOT_FOUND_STUDY "No Study matches the given query."
#define NOT_FOUND_RESPONSE "No Response matches the given query."

/* ------------------------------------------------------------ statements */

/* $1 user, $2 study uuid, $3 state or NULL, $4 limit, $5 offset, $6 base. */
static const struct pg_stmt consent_list_stmt = {
    "research_consent_list",
    "SELECT * FROM consent_list($1::bigint, $2::uuid, $3::text, $4::bigint, $5::bigint, $6::text)",
};

/* $1 user, $2 response uuid, $3 action, $4 comments, $5 base. */
static const struct pg_stmt consent_rule_stmt = {
    "research_consent_rule",
    "SELECT * FROM consent_rule($1::bigint, $2::uuid, $3::text, $4::text, $5::text)",
};

/* $1 user, $2 study uuid, $3 starred or NULL, $4 limit, $5 offset, $6 base. */
static const struct pg_stmt response_list_stmt = {
    "research_response_list",
    "SELECT * FROM research_response_list($1::bigint, $2::uuid, $3::boolean,"
    " $4::bigint, $5::bigint, $6::text)",
};

/* $1 user, $2 response uuid, $3 attributes, $4 base. */
static const struct pg_stmt response_edit_stmt = {
    "research_response_edit",
    "SELECT * FROM research_response_edit($1::bigint, $2::uuid, $3::jsonb, $4::text)",
};

/* $1 user, $2 limit, $3 offset, $4 study uuid.  Newest first. */
static const struct pg_stmt access_study_stmt = {
    "research_access_study",
    "WITH st AS (SELECT s.id FROM studies s WHERE s.uuid = $4::uuid"
    "              AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'") "),"
    " lg AS (SELECT a.id FROM access_log a WHERE a.study_id = (SELECT id FROM st))"
    " SELECT (SELECT count(*) FROM lg), p.item,"
    "        CASE WHEN EXISTS (SELECT 1 FROM st) THEN 'ok' ELSE 'not_found' END,"
    "        '" NOT_FOUND_STUDY "', NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT access_log_item(a) AS item, a.id"
    "       FROM (SELECT id FROM lg ORDER BY id DESC LIMIT $2::bigint OFFSET $3::bigint) g"
    "       JOIN access_log a ON a.id = g.id) p ON true"
    "  ORDER BY p.id DESC",
};

/* $1 user, $2 limit, $3 offset, $4 study uuid or NULL.  The route is for
 * site admins; the statement asks the site permission as well, so the
 * rule is in one place with the data it guards. */
static const struct pg_stmt access_all_stmt = {
    "research_access_all",
    "WITH ok AS (SELECT " PERMS_SITE_SQL("$1::bigint", "'can_read_all_user_data'") " AS yes),"
    " lg AS (SELECT a.id FROM access_log a, ok WHERE ok.yes"
    "          AND ($4::uuid IS NULL OR a.study_uuid = $4::uuid))"
    " SELECT (SELECT count(*) FROM lg), p.item,"
    "        CASE WHEN (SELECT yes FROM ok) THEN 'ok' ELSE 'forbidden' END,"
    "        'The whole access log needs can_read_all_user_data.', NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT access_log_item(a) AS item, a.id"
    "       FROM (SELECT id FROM lg ORDER BY id DESC LIMIT $2::bigint OFFSET $3::bigint) g"
    "       JOIN access_log a ON a.id = g.id) p ON true"
    "  ORDER BY p.id DESC",
};

/* ------------------------------------------------------------ checking input */

static bool string_within(const json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) <= max;
}

int research_edit_attrs(json_t *attributes, json_t **clean, struct jsonapi_error *e)
{
    const char *key;
    json_t *v;

    *clean = NULL;
    if (!json_is_object(attributes) || json_object_size(attributes) == 0) {
        jsonapi_error_set(e, 400, "required", "/data/attributes",
                          "Give researcher_payment_status, researcher_session_status"
                          " or researcher_star.");
        return -1;
    }
    json_object_foreach(attributes, key, v) {
        bool status = strcmp(key, "researcher_payment_status") == 0 ||
                      strcmp(key, "researcher_session_status") == 0;
        if (status && !string_within(v, RESEARCH_STATUS_MAX)) {
            jsonapi_error_set(e, 400, "invalid", "", "%s must be a string of at most %d bytes.",
                              key, RESEARCH_STATUS_MAX);
        } else if (strcmp(key, "researcher_star") == 0 && !json_is_boolean(v)) {
            jsonapi_error_set(e, 400, "invalid", "", "researcher_star must be true or false.");
        } else if (!status && strcmp(key, "researcher_star") != 0) {
            /* Everything else of a response is the family's: never here. */
            jsonapi_error_set(e, 400, "invalid", "", "%s cannot be changed here.", key);
        } else {
            continue;
        }
        snprintf(e->pointer, sizeof e->pointer, "/data/attributes/%s", key);
        return -1;
    }
    *clean = json_deep_copy(attributes);
    if (!*clean) {
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
        return -1;
    }
    return 0;
}

int research_ruling_attrs(json_t *attributes, const char **action, const char **comments,
                          struct jsonapi_error *e)
{
    const char *key;
    json_t *v;
    const char *a;

    *action = *comments = NULL;
    if (!json_is_object(attributes)) {
        jsonapi_error_set(e, 400, "required", "/data/attributes", "Give the action.");
        return -1;
    }
    json_object_foreach(attributes, key, v) {
        if (strcmp(key, "action") != 0 && strcmp(key, "comments") != 0) {
            jsonapi_error_set(e, 400, "invalid", "", "Unknown attribute %s.", key);
            snprintf(e->pointer, sizeof e->pointer, "/data/attributes/%s", key);
            return -1;
        }
    }
    v = json_object_get(attributes, "action");
    a = json_string_value(v);
    if (!a || (strcmp(a, "accepted") != 0 && strcmp(a, "rejected") != 0 &&
               strcmp(a, "pending") != 0)) {
        jsonapi_error_set(e, 400, v ? "invalid" : "required", "/data/attributes/action",
                          "action must be accepted, rejected or pending.");
        return -1;
    }
    v = json_object_get(attributes, "comments");
    if (v && !string_within(v, RESEARCH_COMMENT_MAX)) {
        jsonapi_error_set(e, 400, "invalid", "/data/attributes/comments",
                          "comments must be a string of at most %d bytes.",
                          RESEARCH_COMMENT_MAX);
        return -1;
    }
    *action = a;
    *comments = v ? json_string_value(v) : "";
    return 0;
}

/* The study uuid of the path, or a 404. */
static bool path_uuid(struct http_req *req, int i, char out[37], const char *what)
{
    if (apidoc_uuid_copy(http_req_param(req, i), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s", what);
    return false;
}

/* ------------------------------------------------------------ consent manager */

/* The storage that signs links while one consent page is rendered.  The
 * page renderer (apidoc_render_fn) takes no context; the loop is single
 * threaded and the pointer is set and cleared around the one call. */
static struct storage *render_storage;

/* An item of the consent list with a presigned url added to each of its
 * consent videos.  Items are small (a page holds at most 100), so parsing
 * them is cheap next to the query. */
static void render_consent_item(struct apidoc *d, const PGresult *res, int row, int col)
{
    const char *text = PQgetvalue(res, row, col);
    json_t *item = json_loads(text, 0, NULL);
    json_t *videos = json_object_get(json_object_get(item, "attributes"), "consent_videos");
    time_t now = time(NULL);
    size_t i;
    json_t *v;

    if (!item) {
        apidoc_add(d, text);
        return;
    }
    json_array_foreach(videos, i, v) {
        const char *full = json_string_value(json_object_get(v, "full_name"));
        const char *why = NULL;
        char *url = full && render_storage
                        ? storage_presign_get(render_storage, full, VIDEOS_URL_TTL_S, now,
                                              NULL, &why)
                        : NULL;
        json_object_set_new(v, "url", url ? json_string(url) : json_null());
        if (!url)
            log_warn("research: cannot presign %s: %s", full ? full : "?", why ? why : "?");
        free(url);
    }
    apidoc_json(d, item);
    json_decref(item);
}

struct consent_page {
    struct http_req *req;     /* borrowed until replied */
    struct app *app;          /* borrowed */
};

static void consent_listed(PGresult *res, void *arg)
{
    struct consent_page *cp = arg;
    struct http_req *req = cp->req;
    struct app *app = cp->app;

    free(cp);
    /* Refusals and failures are perms_reply_list's. */
    if (!res || !pg_ok(res) || PQntuples(res) < 1 ||
        strcmp(PQgetvalue(res, 0, PERMS_LCOL_VERDICT), "ok") != 0) {
        perms_reply_list(req, res);
        return;
    }
    render_storage = app->storage;
    apidoc_reply_page(req, res, "research_consent_list", PERMS_LCOL_ITEM, render_consent_item);
    render_storage = NULL;
}

static void h_consent_list(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];
    const char *state = http_req_query(req, "state");
    struct consent_page *cp;

    if (!path_uuid(req, 0, su, NOT_FOUND_STUDY) || !jsonapi_page_sql(req, limit, offset))
        return;
    if (state && !*state)
        state = NULL;
    const char *params[] = { perms_user_param(req, uid), su, state, limit, offset,
                             http_req_base_url(req) };
    if (!(cp = calloc(1, sizeof *cp))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    cp->req = req;
    cp->app = app;
    if (pg_exec(app->pg, &consent_list_stmt, 6, params, consent_listed, cp) < 0) {
        free(cp);
        jsonapi_reply_unavailable(req, "Database");
    }
}

static void h_consent_rule(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL;
    const char *action, *comments;
    char uid[24], ru[37];

    if (!path_uuid(req, 0, ru, NOT_FOUND_RESPONSE))
        return;
    if (jsonapi_parse_request(req, "consent-rulings", NULL, &data, &e) < 0 ||
        research_ruling_attrs(json_object_get(data, "attributes"), &action, &comments, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), ru, action, comments,
                             http_req_base_url(req) };
    perms_exec(req, app, &consent_rule_stmt, 5, params);
out:
    json_decref(data);
}

/* ------------------------------------------------------------ response management */

static void h_response_list(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];
    const char *starred = http_req_query(req, "starred");

    if (!path_uuid(req, 0, su, NOT_FOUND_STUDY) || !jsonapi_page_sql(req, limit, offset))
        return;
    if (starred && strcmp(starred, "true") != 0 && strcmp(starred, "false") != 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "starred must be true or false.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), su, starred, limit, offset,
                             http_req_base_url(req) };
    perms_exec_list(req, app, &response_list_stmt, 6, params);
}

static void h_response_edit(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    char *attrs = NULL;
    char uid[24], ru[37];

    if (!path_uuid(req, 0, ru, NOT_FOUND_RESPONSE))
        return;
    if (jsonapi_parse_request(req, "responses", http_req_param(req, 0), &data, &e) < 0 ||
        research_edit_attrs(json_object_get(data, "attributes"), &clean, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (!(attrs = json_dumps(clean, JSON_COMPACT))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), ru, attrs, http_req_base_url(req) };
    perms_exec(req, app, &response_edit_stmt, 4, params);
out:
    free(attrs);
    json_decref(clean);
    json_decref(data);
}

/* ------------------------------------------------------------ access log */

static void h_access_study(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];

    if (!path_uuid(req, 0, su, NOT_FOUND_STUDY) || !jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset, su };
    perms_exec_list(req, app, &access_study_stmt, 4, params);
}

static void h_access_all(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];
    const char *study = http_req_query(req, "study");

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (study && !apidoc_uuid_copy(study, su)) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "study must be a study id (a uuid).");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), limit, offset, study ? su : NULL };
    perms_exec_list(req, app, &access_all_stmt, 4, params);
}

/* ------------------------------------------------------------ routes */

static const struct route research_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/studies/{id}/consent/", h_consent_list, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/researcher/responses/{id}/consent/", h_consent_rule,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/responses/", h_response_list,
      ROUTE_RESEARCHER },
    { HTTP_PATCH, "/api/v1/researcher/responses/{id}/", h_response_edit, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/access-log/", h_access_study,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/access-log/", h_access_all, ROUTE_SITE_ADMIN },
};

int research_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, research_route_table);
}
