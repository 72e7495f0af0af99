/* children: the runner's R2 and the children list.  The attributes come
 * from the children_api view (sql/002_model.sql), which the users
 * endpoints render from too, so the two cannot drift. */
#include "studyhub/domain/children.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/domain/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* Each statement takes the caller's id (their own children) and the
 * research id: the caller's id when two-factor verified, else NULL
 * (apidoc_research_id), the only id permission checks are given.
 *
 * $1 user, $2 child uuid, $3 research id.  Columns: uuid, attrs, user
 * uuid. */
static const struct pg_stmt children_get_stmt = {
    "children_get",
    "SELECT ca.uuid, ca.attrs, ca.user_uuid"
    "  FROM children_api ca JOIN users pu ON pu.id = ca.user_id"
    " WHERE ca.uuid = $2::uuid AND pu.is_active"
    "   AND ((ca.user_id = $1 AND NOT ca.deleted)"
    "        OR EXISTS (SELECT 1 FROM responses r WHERE r.child_id = ca.id"
    "                      AND response_readable($3::bigint, r.id, r.study_id,"
    "                                            r.is_preview)))",
};

/* $1 user, $2 limit, $3 offset, $4 ordering ("birthday", "-birthday" or
 * "" for creation order), $5 research id.  The permissions are looked up once per study,
 * then the children of the readable responses are added to the user's
 * own.  Columns: count, then uuid, attrs, user uuid and the sort keys. */
static const struct pg_stmt children_list_stmt = {
    "children_list",
    "WITH rs AS MATERIALIZED ("
    "  SELECT s.id, has_study_perm($5::bigint, s.id, 'read_study__responses') AS rd,"
    "         has_study_perm($5::bigint, s.id, 'read_study__responses(is_preview=True)')"
    "           AS pv"
    "    FROM studies s),"
    " ids AS ("
    "  SELECT c.id FROM children c WHERE c.user_id = $1 AND NOT c.deleted"
    "  UNION"
    "  SELECT r.child_id FROM rs JOIN responses r ON r.study_id = rs.id"
    "   WHERE (rs.rd OR rs.pv)"
    "     AND response_research_visible(r.id, r.is_preview, rs.rd, rs.pv)),"
    " vis AS ("
    "  SELECT c.id, CASE WHEN $4 = 'birthday' THEN c.birthday END AS k1,"
    "         CASE WHEN $4 = '-birthday' THEN c.birthday END AS k2"
    "    FROM ids JOIN children c ON c.id = ids.id JOIN users pu ON pu.id = c.user_id"
    "   WHERE pu.is_active)"
    " SELECT (SELECT count(*) FROM vis), p.*"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT ca.uuid, ca.attrs, ca.user_uuid, v.k1, v.k2, v.id"
    "       FROM (SELECT * FROM vis ORDER BY k1 ASC, k2 DESC, id LIMIT $2 OFFSET $3) v"
    "       JOIN children_api ca ON ca.id = v.id) p ON true"
    "  ORDER BY p.k1 ASC, p.k2 DESC, p.id",
};

static void render_child(struct apidoc *d, const PGresult *res, int row, int col)
{
    const char *uuid = PQgetvalue(res, row, col);

    apidoc_printf(d, "{\"type\":\"children\",\"id\":\"%s\",\"attributes\":", uuid);
    apidoc_addn(d, PQgetvalue(res, row, col + 1), (size_t)PQgetlength(res, row, col + 1));
    apidoc_printf(d,
                  ",\"relationships\":{\"user\":{\"links\":{\"related\":"
                  "\"%s/api/v1/users/%s/\"}}},"
                  "\"links\":{\"self\":\"%s/api/v1/children/%s/\"}}",
                  d->base, PQgetvalue(res, row, col + 2), d->base, uuid);
}

static void reply_not_found(struct http_req *req)
{
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Child matches the given query.");
}

static void child_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "children_get"))
        return;
    if (PQntuples(res) != 1) {
        reply_not_found(req);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_child(&d, res, 0, 0);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, 200);
}

static void child_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24], rid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id, apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &children_get_stmt, 3, params, child_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void children_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "children_list", 1, render_child);
}

static void children_list(struct http_req *req, struct app *app)
{
    char uid[24], rid[24], limit[24], offset[24];
    const char *ordering = http_req_query(req, "ordering");

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    /* As DRF's OrderingFilter, an ordering it does not offer is ignored. */
    if (!ordering || (strcmp(ordering, "birthday") != 0 && strcmp(ordering, "-birthday") != 0))
        ordering = "";
    const char *params[] = { apidoc_user_id(req, uid), limit, offset, ordering,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &children_list_stmt, 5, params, children_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static const struct route children_route_table[] = {
    { HTTP_GET, "/api/v1/children/", children_list, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/children/{id}/", child_get, ROUTE_FAMILY },
};

int children_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, children_route_table);
}
