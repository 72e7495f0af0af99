/* users: GET endpoints for users, their children and demographics, and
 * approved labs; plus the `token create EMAIL` admin command.
 *
 * Every route is one row of the endpoints table below: the router pattern,
 * one prepared statement and a view that renders a row.  Visibility is
 * decided in SQL (own records, or the can_read_all_user_data permission),
 * and lists are paginated in SQL: each list statement returns at least one
 * row carrying the total count, with NULL item columns when the page is
 * empty, so a page costs one round trip. */
#include "studyhub/domain/users.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* List statements take ($1 limit, $2 offset, $3 caller id, $4 research
 * id, $5 parent uuid, $6 ordering), each using a prefix of those, and
 * return (parent_visible, total, uuid, attrs, extra).  The research id is
 * the caller's when two-factor verified, else NULL (apidoc_research_id):
 * only it is given to permission checks, so without two-factor a caller
 * sees only their own records. */
enum { LC_PARENT_OK, LC_TOTAL, LC_UUID, LC_ATTRS, LC_EXTRA };
/* Detail statements take ($1 uuid, $2 caller id, $3 research id) and
 * return (uuid, attrs, extra). */
enum { DC_UUID, DC_ATTRS, DC_EXTRA };

/* Who may see a user's records: the user, or a holder of the site-wide
 * permission.  Written once, used by every statement below. */
#define VISIBLE_USER(col, me, research) \
    "(" col " = " me " OR has_site_perm(" research ", 'can_read_all_user_data'))"
#define USERNAME(research) \
    "CASE WHEN has_site_perm(" research ", 'can_read_usernames') THEN v.email END"
/* The page of a list: one row even when empty (LEFT JOIN LATERAL). */
#define PAGE "LIMIT $1::bigint OFFSET $2::bigint) p ON true"

static const struct pg_stmt users_list_stmt = {
    "users_list",
    "SELECT true, c.n, p.uuid, p.attrs, p.username"
    "  FROM (SELECT count(*) AS n FROM users u"
    "         WHERE " VISIBLE_USER("u.id", "$3::bigint", "$4::bigint") ") c"
    "  LEFT JOIN LATERAL ("
    "    SELECT v.uuid, v.attrs, " USERNAME("$4::bigint") " AS username"
    "      FROM users_api v WHERE " VISIBLE_USER("v.id", "$3::bigint", "$4::bigint")
    "     ORDER BY v.id " PAGE,
};

static const struct pg_stmt users_detail_stmt = {
    "users_detail",
    "SELECT v.uuid, v.attrs, " USERNAME("$3::bigint")
    "  FROM users_api v"
    " WHERE v.uuid = $1::uuid AND " VISIBLE_USER("v.id", "$2::bigint", "$3::bigint"),
};

/* The parent user of a nested list, if the caller may see it. */
#define TARGET_USER \
    "WITH target AS (SELECT u.id FROM users u WHERE u.uuid = $5::uuid" \
    "                   AND " VISIBLE_USER("u.id", "$3::bigint", "$4::bigint") ") "

static const struct pg_stmt users_demographics_stmt = {
    "users_demographics",
    TARGET_USER
    "SELECT EXISTS (SELECT 1 FROM target), c.n, p.uuid, p.attrs, NULL"
    "  FROM (SELECT count(*) AS n FROM demographic_data d"
    "         WHERE d.user_id IN (SELECT id FROM target)) c"
    "  LEFT JOIN LATERAL ("
    "    SELECT v.uuid, v.attrs FROM demographics_api v"
    "     WHERE v.user_id IN (SELECT id FROM target)"
    "     ORDER BY v.created_at DESC, v.id DESC " PAGE,
};

/* ?ordering=birthday / -birthday as upstream's OrderingFilter; any other
 * value is ignored, as there. */
static const struct pg_stmt users_children_stmt = {
    "users_children",
    TARGET_USER
    "SELECT EXISTS (SELECT 1 FROM target), c.n, p.uuid, p.attrs, p.user_uuid"
    "  FROM (SELECT count(*) AS n FROM children ch"
    "         WHERE ch.user_id IN (SELECT id FROM target) AND NOT ch.deleted) c"
    "  LEFT JOIN LATERAL ("
    "    SELECT v.uuid, v.attrs, v.user_uuid FROM children_api v"
    "     WHERE v.user_id IN (SELECT id FROM target) AND NOT v.deleted"
    "     ORDER BY CASE WHEN $6::text = 'birthday' THEN v.birthday_date END,"
    "              CASE WHEN $6::text = '-birthday' THEN v.birthday_date END DESC,"
    "              v.id " PAGE,
};

static const struct pg_stmt demographics_list_stmt = {
    "demographics_list",
    "SELECT true, c.n, p.uuid, p.attrs, NULL"
    "  FROM (SELECT count(*) AS n FROM demographic_data d"
    "         WHERE " VISIBLE_USER("d.user_id", "$3::bigint", "$4::bigint") ") c"
    "  LEFT JOIN LATERAL ("
    "    SELECT v.uuid, v.attrs FROM demographics_api v"
    "     WHERE " VISIBLE_USER("v.user_id", "$3::bigint", "$4::bigint")
    "     ORDER BY v.created_at DESC, v.id DESC " PAGE,
};

static const struct pg_stmt demographics_detail_stmt = {
    "demographics_detail",
    "SELECT v.uuid, v.attrs, NULL FROM demographics_api v"
    " WHERE v.uuid = $1::uuid AND " VISIBLE_USER("v.user_id", "$2::bigint", "$3::bigint"),
};

static const struct pg_stmt labs_list_stmt = {
    "labs_list",
    "SELECT true, c.n, p.uuid, p.attrs, NULL"
    "  FROM (SELECT count(*) AS n FROM labs WHERE approved_to_test) c"
    "  LEFT JOIN LATERAL ("
    "    SELECT v.uuid, v.attrs FROM labs_api v WHERE v.approved_to_test"
    "     ORDER BY v.id " PAGE,
};

static const struct pg_stmt labs_detail_stmt = {
    "labs_detail",
    "SELECT v.uuid, v.attrs, NULL FROM labs_api v"
    " WHERE v.uuid = $1::uuid AND v.approved_to_test",
};

/* ------------------------------------------------------------ views */

/* Adds relationships (returned, or NULL for none) and any extra column to
 * the attributes of one row. */
typedef json_t *(*decorate_fn)(struct http_req *req, json_t *attrs,
                               const char *uuid, const char *extra);

struct view {
    const char *type;            /* JSON:API type */
    const char *self_fmt;        /* "users/%s/": the self link of a uuid */
    decorate_fn decorate;        /* NULL when there is nothing to add */
};

static json_t *user_decorate(struct http_req *req, json_t *attrs,
                             const char *uuid, const char *extra)
{
    char dem[512], kids[512];
    if (extra)          /* the username, for holders of can_read_usernames */
        json_object_set_new(attrs, "username", json_string(extra));
    jsonapi_url(req, dem, sizeof dem, "users/%s/demographics/", uuid);
    jsonapi_url(req, kids, sizeof kids, "users/%s/children/", uuid);
    return json_pack("{s:o, s:o}", "demographics", jsonapi_rel_link(dem),
                     "children", jsonapi_rel_link(kids));
}

static json_t *child_decorate(struct http_req *req, json_t *attrs,
                              const char *uuid, const char *extra)
{
    char user[512];
    jsonapi_url(req, user, sizeof user, "users/%s/", extra ? extra : "");
    return json_pack("{s:o}", "user", jsonapi_rel_link(user));
}

static const struct view user_view = { "users", "users/%s/", user_decorate };
static const struct view child_view = { "children", "children/%s/", child_decorate };
static const struct view demographic_view = { "demographics", "demographics/%s/", NULL };
static const struct view lab_view = { "labs", "labs/%s/", NULL };

/* One resource object from (uuid, attrs, extra) at row/col0 of res. */
static json_t *view_render(const struct view *v, struct http_req *req,
                           const PGresult *res, int row, int col0)
{
    const char *uuid = PQgetvalue(res, row, col0);
    const char *extra = PQgetisnull(res, row, col0 + 2)
                            ? NULL : PQgetvalue(res, row, col0 + 2);
    json_error_t jerr;
    json_t *attrs = json_loads(PQgetvalue(res, row, col0 + 1), 0, &jerr);
    char self[512];

    if (!json_is_object(attrs)) {
        log_error("users: bad attributes of %s %s: %s", v->type, uuid,
                  jerr.text);
        json_decref(attrs);
        return NULL;
    }
    json_t *rels = v->decorate ? v->decorate(req, attrs, uuid, extra) : NULL;
    jsonapi_url(req, self, sizeof self, v->self_fmt, uuid);  /* static fmt */
    return jsonapi_resource(v->type, uuid, attrs, rels, self);
}

/* ------------------------------------------------------------ endpoints */

struct endpoint {
    const char *pattern;          /* router pattern (also the lookup key) */
    const struct pg_stmt *stmt;
    int nparams;                  /* how many of the layout's params it takes */
    bool list;                    /* paginated list, else one resource */
    bool has_id;                  /* pattern has {id}: must be a uuid */
    const struct view *view;
    const char *not_found;        /* detail of the 404 (unknown {id}) */
};

static const struct endpoint endpoints[] = {
    { "/api/v1/users/", &users_list_stmt, 4, true, false, &user_view, NULL },
    { "/api/v1/users/{id}/", &users_detail_stmt, 3, false, true, &user_view,
      "No User matches the given query." },
    { "/api/v1/users/{id}/demographics/", &users_demographics_stmt, 5, true,
      true, &demographic_view, "No User matches the given query." },
    { "/api/v1/users/{id}/children/", &users_children_stmt, 6, true, true,
      &child_view, "No User matches the given query." },
    { "/api/v1/demographics/", &demographics_list_stmt, 4, true, false,
      &demographic_view, NULL },
    { "/api/v1/demographics/{id}/", &demographics_detail_stmt, 3, false, true,
      &demographic_view, "No DemographicData matches the given query." },
    { "/api/v1/labs/", &labs_list_stmt, 2, true, false, &lab_view, NULL },
    { "/api/v1/labs/{id}/", &labs_detail_stmt, 1, false, true, &lab_view,
      "No Lab matches the given query." },
};

static const struct endpoint *endpoint_find(const char *pattern)
{
    for (size_t i = 0; pattern && i < sizeof endpoints / sizeof *endpoints; i++)
        if (strcmp(endpoints[i].pattern, pattern) == 0)
            return &endpoints[i];
    return NULL;
}

/* One request in flight between its query and its reply. */
struct users_query {
    struct http_req *req;         /* borrowed until replied */
    const struct endpoint *ep;    /* static */
    struct jsonapi_page page;     /* lists only */
};

static void reply_internal(struct http_req *req, const char *what,
                           const PGresult *res)
{
    log_error("users: %s failed: %s", what,
              res ? PQresultErrorMessage(res) : "render");
    jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
}

static void list_done(PGresult *res, void *arg)
{
    struct users_query *q = arg;
    struct http_req *req = q->req;
    struct jsonapi_error e;
    json_t *data = NULL;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    if (!pg_ok(res) || PQntuples(res) < 1) {
        reply_internal(req, q->ep->stmt->name, res);
        goto out;
    }
    if (PQgetvalue(res, 0, LC_PARENT_OK)[0] != 't') {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s",
                             q->ep->not_found);
        goto out;
    }
    long total = strtol(PQgetvalue(res, 0, LC_TOTAL), NULL, 10);
    json_t *links = jsonapi_page_links(req, &q->page, total, &e);
    if (!links) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    data = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, LC_UUID))      /* the empty page's row */
            continue;
        json_t *r = view_render(q->ep->view, req, res, i, LC_UUID);
        if (!r) {
            json_decref(links);
            reply_internal(req, q->ep->stmt->name, NULL);
            goto out;
        }
        json_array_append_new(data, r);
    }
    jsonapi_reply(req, 200, json_pack("{s:o, s:o}", "links", links, "data",
                                      data));
    data = NULL;
out:
    json_decref(data);
    free(q);
}

static void detail_done(PGresult *res, void *arg)
{
    struct users_query *q = arg;
    struct http_req *req = q->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    if (!pg_ok(res)) {
        reply_internal(req, q->ep->stmt->name, res);
        goto out;
    }
    if (PQntuples(res) != 1) {   /* absent or not visible: never say which */
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s",
                             q->ep->not_found);
        goto out;
    }
    json_t *r = view_render(q->ep->view, req, res, 0, DC_UUID);
    if (!r) {
        reply_internal(req, q->ep->stmt->name, NULL);
        goto out;
    }
    jsonapi_reply(req, 200, json_pack("{s:o}", "data", r));
out:
    free(q);
}

/* Runs once the caller is known: checks the id and the page, then sends
 * the endpoint's one query. */
static void users_get(struct http_req *req, struct app *app)
{
    const struct endpoint *ep = endpoint_find(http_req_route(req));
    const struct auth_user *me = auth_user(req);
    struct users_query *q = NULL;
    struct jsonapi_error e;
    const char *id = NULL;
    char limit[24], offset[24], uid[24];
    const char *research = NULL;

    if (!ep || !me) {
        log_error("users: no endpoint for route %s", http_req_route(req));
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    if (ep->has_id) {
        id = http_req_param(req, 0);
        if (!id || !jsonapi_is_uuid(id)) {       /* never reaches SQL */
            jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s",
                                 ep->not_found);
            goto out;
        }
    }
    q = calloc(1, sizeof *q);
    if (!q) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    q->req = req;
    q->ep = ep;
    snprintf(uid, sizeof uid, "%lld", (long long)me->id);
    research = auth_request_researcher_ok(req) ? uid : NULL;

    int rc;
    if (ep->list) {
        if (jsonapi_page_parse(req, &q->page, &e) != 0) {
            jsonapi_reply_error(req, &e);
            goto out;
        }
        snprintf(limit, sizeof limit, "%ld", q->page.size);
        snprintf(offset, sizeof offset, "%ld", jsonapi_page_offset(&q->page));
        const char *ordering = http_req_query(req, "ordering");
        const char *p[6] = { limit, offset, uid, research, id, ordering ? ordering : "" };
        rc = pg_exec(app->pg, ep->stmt, ep->nparams, p, list_done, q);
    } else {
        const char *p[3] = { id, uid, research };
        rc = pg_exec(app->pg, ep->stmt, ep->nparams, p, detail_done, q);
    }
    if (rc != 0) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    q = NULL;                     /* owned by the callback now */
out:
    free(q);
}

/* Every endpoint above is a family route: the user's own records for
 * anyone, others' only by permission to a two-factor-verified caller. */
static const struct route users_route_table[] = {
    { HTTP_GET, "/api/v1/users/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/users/{id}/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/users/{id}/demographics/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/users/{id}/children/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/demographics/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/demographics/{id}/", users_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/labs/", users_get, ROUTE_USER },
    { HTTP_GET, "/api/v1/labs/{id}/", users_get, ROUTE_USER },
};

int users_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, users_route_table);
}
