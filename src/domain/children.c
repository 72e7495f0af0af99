/* children: the runner's R2 and the children list, and a family's own
 * writes: add a child, change one, remove one (a soft delete: the row
 * stays for the studies it took part in).  The attributes come
 * from the children_api view (sql/002_model.sql), which the users
 * endpoints render from too, so the two cannot drift. */
#include "studyhub/domain/children.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/fields.h"
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

/* Replies with the child of the one-row result, with status. */
static void child_reply(struct http_req *req, PGresult *res, int status)
{
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
    apidoc_reply(&d, req, status);
}

static void child_got(PGresult *res, void *arg)
{
    child_reply(arg, res, 200);
}

static void child_got_created(PGresult *res, void *arg)
{
    child_reply(arg, res, 201);
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

/* ---- a family's writes ------------------------------------------------ */

static const char *const genders[] = { "m", "f", "o", "na", NULL };

/* The attributes of a child a family writes, in the order of the SQL
 * parameters below; then the ones the API renders (ignored). */
static const struct field child_fields[] = {
    { "given_name", F_TEXT, FIELD_REQUIRED | FIELD_NONEMPTY, 0, 255, NULL },
    { "birthday", F_DATE, FIELD_REQUIRED | FIELD_PAST, 0, 0, NULL },
    { "gender", F_CHOICE, FIELD_REQUIRED, 0, 0, genders },
    /* weeks: 23 is "under 24", 40 is "40 or more"; null is "not sure" */
    { "gestational_age_at_birth", F_INT, FIELD_NULLABLE, 23, 40, NULL },
    { "additional_information", F_TEXT, 0, 0, 5000, NULL },
    { "language_list", F_WORDS, 0, 0, 30, NULL },
    { "condition_list", F_WORDS, 0, 0, 30, NULL },
    { "age_at_birth", F_READONLY, 0, 0, 0, NULL },
    { "deleted", F_READONLY, 0, 0, 0, NULL },
    { "former_lookit_profile_id", F_READONLY, 0, 0, 0, NULL },
    { "pk", F_READONLY, 0, 0, 0, NULL },
};
#define CHILD_WRITABLE 7

/* Space-separated codes into the text[] columns. */
#define WORDS(n) "coalesce(string_to_array(nullif($" #n ", ''), ' '), '{}')"

/* $1 user, $2.. the writable fields.  Columns: uuid. */
static const struct pg_stmt child_insert_stmt = {
    "child_insert",
    "INSERT INTO children (user_id, given_name, birthday, gender,"
    "                      gestational_age_at_birth, additional_information,"
    "                      languages_spoken, existing_conditions)"
    " VALUES ($1::bigint, $2, $3::date, $4, $5::smallint, coalesce($6, ''),"
    "         " WORDS(7) ", " WORDS(8) ")"
    " RETURNING uuid",
};

/* $1 user, $2 child uuid, $3 mask of the fields given, $4.. the fields.
 * Only the caller's own children that are not deleted.  Columns: uuid. */
#define SET(col, bit, val) \
    col " = CASE WHEN $3::bigint & " #bit " <> 0 THEN " val " ELSE " col " END"
static const struct pg_stmt child_update_stmt = {
    "child_update",
    "UPDATE children SET "
    SET("given_name", 1, "$4") ", "
    SET("birthday", 2, "$5::date") ", "
    SET("gender", 4, "$6") ", "
    SET("gestational_age_at_birth", 8, "$7::smallint") ", "
    SET("additional_information", 16, "$8") ", "
    SET("languages_spoken", 32, WORDS(9)) ", "
    SET("existing_conditions", 64, WORDS(10))
    " WHERE uuid = $2::uuid AND user_id = $1::bigint AND NOT deleted"
    " RETURNING uuid",
};

/* $1 user, $2 child uuid: the erasure (sql/085_erasure.sql says what
 * goes and what a study keeps).  Columns: verdict. */
static const struct pg_stmt child_delete_stmt = {
    "child_delete",
    "SELECT verdict FROM family_erase($1::bigint, $2::uuid, 'family')",
};

/* A write in flight: the request and whether it created. */
struct child_write {
    struct http_req *req;   /* borrowed until replied */
    struct app *app;        /* borrowed */
    bool created;
};

/* After the insert or update: the child is read back through the view
 * the GET renders from, so the reply is what a GET would show. */
static void child_written(PGresult *res, void *arg)
{
    struct child_write *w = arg;
    struct http_req *req = w->req;
    char uid[24], rid[24], uuid[37];

    if (apidoc_db_failed(req, res, w->created ? "child_insert" : "child_update"))
        goto out;
    if (PQntuples(res) != 1) {
        reply_not_found(req);
        goto out;
    }
    snprintf(uuid, sizeof uuid, "%s", PQgetvalue(res, 0, 0));
    const char *params[] = { apidoc_user_id(req, uid), uuid, apidoc_research_id(req, rid) };
    if (pg_exec(w->app->pg, &children_get_stmt, 3, params,
                w->created ? child_got_created : child_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
out:
    free(w);
}

/* The request document's attributes checked against child_fields; false
 * after replying with every problem. */
static bool child_parse(struct http_req *req, const char *id, struct field_values *vals)
{
    struct jsonapi_error errs[FIELDS_MAX_ERRORS];
    json_t *data = NULL;
    char today[11];
    int n;

    memset(vals, 0, sizeof *vals);
    if (jsonapi_parse_request(req, "children", id, &data, &errs[0]) < 0) {
        jsonapi_reply_error(req, &errs[0]);
        return false;
    }
    fields_today(today);
    n = fields_parse(json_object_get(data, "attributes"), child_fields,
                     sizeof child_fields / sizeof child_fields[0], id == NULL, today, vals, errs);
    json_decref(data);
    if (n > 0) {
        apidoc_reply_errors(req, errs, n);
        fields_cleanup(vals);
        return false;
    }
    return true;
}

static void child_send(struct http_req *req, struct app *app, const struct pg_stmt *stmt,
                       int nparams, const char **params, bool created)
{
    struct child_write *w = calloc(1, sizeof *w);

    if (!w) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    w->req = req;
    w->app = app;
    w->created = created;
    if (pg_exec(app->pg, stmt, nparams, params, child_written, w) < 0) {
        free(w);
        jsonapi_reply_unavailable(req, "Database");
    }
}

/* POST /api/v1/children/: a child of the caller. */
static void child_create(struct http_req *req, struct app *app)
{
    struct field_values v;
    const char *params[1 + CHILD_WRITABLE];
    char uid[24];

    if (!child_parse(req, NULL, &v))
        return;
    params[0] = apidoc_user_id(req, uid);
    for (int i = 0; i < CHILD_WRITABLE; i++)
        params[1 + i] = v.param[i];
    child_send(req, app, &child_insert_stmt, 1 + CHILD_WRITABLE, params, true);
    fields_cleanup(&v);     /* pg_exec copied the parameters */
}

/* PATCH /api/v1/children/{id}/: the fields given, of the caller's own
 * child; anyone else's (or a deleted one) is a 404. */
static void child_update(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    struct field_values v;
    const char *params[3 + CHILD_WRITABLE];
    char uid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    if (!child_parse(req, id, &v))
        return;
    params[0] = apidoc_user_id(req, uid);
    params[1] = id;
    params[2] = v.mask_text;
    for (int i = 0; i < CHILD_WRITABLE; i++)
        params[3 + i] = v.param[i];
    child_send(req, app, &child_update_stmt, 3 + CHILD_WRITABLE, params, false);
    fields_cleanup(&v);
}

static void child_deleted(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (apidoc_db_failed(req, res, "child_delete"))
        return;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
        reply_not_found(req);
        return;
    }
    http_reply(req, 204, NULL, NULL, 0);
}

/* DELETE /api/v1/children/{id}/: erased now (family_erase): gone from
 * every list; only responses a study accepted stay, de-identified; the
 * family gets the report by email and erase_storage deletes the videos. */
static void child_delete(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id };
    if (pg_exec(app->pg, &child_delete_stmt, 2, params, child_deleted, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static const struct route children_route_table[] = {
    { HTTP_GET, "/api/v1/children/", children_list, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/children/{id}/", child_get, ROUTE_FAMILY },
    /* A family's own children only: no research rights apply. */
    { HTTP_POST, "/api/v1/children/", child_create, ROUTE_USER },
    { HTTP_PATCH, "/api/v1/children/{id}/", child_update, ROUTE_USER },
    { HTTP_DELETE, "/api/v1/children/{id}/", child_delete, ROUTE_USER },
};

int children_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, children_route_table);
}
