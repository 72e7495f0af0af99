/* feedback: researchers' comments on responses.  Each request is one
 * statement; writes carry their permission check (edit_study__feedback on
 * the response's study) in the same statement, with the reason when they
 * did nothing, so there is no window between check and write. */
#include "studyhub/domain/feedback.h"

#include <ctype.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* Columns of a rendered feedback, for a value f of type feedback. */
enum { FC_UUID, FC_ATTRS, FC_RESPONSE, FC_RESEARCHER, FC_NCOLS };

#define FB_COLS(f)                                                                \
    "(" f ").uuid, json_build_object('comment', (" f ").comment, 'pk', (" f ").id),"  \
    " r.uuid, ru.uuid"

#define FB_JOINS(join, f)                                                         \
    " " join " responses r ON r.id = (" f ").response_id"                         \
    " LEFT JOIN users ru ON ru.id = (" f ").researcher_id"

/* Each statement takes the caller's id ($1: their own family's feedback)
 * and the research id: the caller's id when two-factor verified, else NULL
 * (apidoc_research_id), the only id permission checks are given. */

/* May the caller see the response r of child c (the parent, or a reader
 * with research id rid)? */
#define FB_VISIBLE(rid) \
    "(c.user_id = $1 OR response_readable(" rid ", r.id, r.study_id, r.is_preview))"

/* $1 user, $2 feedback uuid, $3 research id. */
static const struct pg_stmt feedback_get_stmt = {
    "feedback_get",
    "SELECT " FB_COLS("f") " FROM feedback f" FB_JOINS("JOIN", "f")
    "  JOIN children c ON c.id = r.child_id"
    " WHERE f.uuid = $2::uuid AND " FB_VISIBLE("$3::bigint"),
};

/* $1 user, $2 limit, $3 offset, $4 research id.  Newest first. */
static const struct pg_stmt feedback_list_stmt = {
    "feedback_list",
    "WITH rs AS MATERIALIZED ("
    "  SELECT s.id, has_study_perm($4::bigint, s.id, 'read_study__responses') AS rd,"
    "         has_study_perm($4::bigint, s.id, 'read_study__responses(is_preview=True)') AS pv"
    "    FROM studies s),"
    " vis AS ("
    "  SELECT f.id, f.created_at FROM feedback f JOIN responses r ON r.id = f.response_id"
    "    JOIN children c ON c.id = r.child_id WHERE c.user_id = $1"
    "  UNION"
    "  SELECT f.id, f.created_at FROM rs JOIN responses r ON r.study_id = rs.id"
    "    JOIN feedback f ON f.response_id = r.id"
    "   WHERE (rs.rd OR rs.pv)"
    "     AND response_research_visible(r.id, r.is_preview, rs.rd, rs.pv))"
    " SELECT (SELECT count(*) FROM vis), p.*"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT " FB_COLS("f") ", f.created_at AS k1, f.id AS k2"
    "       FROM (SELECT id FROM vis ORDER BY created_at DESC, id DESC"
    "              LIMIT $2 OFFSET $3) v"
    "       JOIN feedback f ON f.id = v.id" FB_JOINS("JOIN", "f") ") p ON true"
    "  ORDER BY p.k1 DESC, p.k2 DESC",
};

/* $1 user, $2 response uuid, $3 comment, $4 research id.  First column:
 * ok, not_found (unknown, or not visible to the caller: a researcher
 * sees a response only once consent is accepted, so feedback on a
 * pending or rejected one is a 404, and the family never gets it) or
 * forbidden (visible, e.g. the parent's own, but no edit_study__feedback). */
static const struct pg_stmt feedback_create_stmt = {
    "feedback_create",
    "WITH t AS ("
    "  SELECT r.id, has_study_perm($4::bigint, r.study_id, 'edit_study__feedback') AS can_edit,"
    "         response_readable($4::bigint, r.id, r.study_id, r.is_preview) AS readable,"
    "         " FB_VISIBLE("$4::bigint") " AS visible"
    "    FROM responses r JOIN children c ON c.id = r.child_id WHERE r.uuid = $2::uuid),"
    " ins AS ("
    "  INSERT INTO feedback AS f (response_id, researcher_id, comment)"
    "  SELECT t.id, $1, $3 FROM t WHERE t.can_edit AND t.readable"
    "  RETURNING f)"
    " SELECT CASE WHEN (ins.f).id IS NOT NULL THEN 'ok'"
    "             WHEN t.id IS NULL OR NOT t.visible THEN 'not_found'"
    "             ELSE 'forbidden' END, "
    FB_COLS("ins.f")
    "  FROM (SELECT 1) one LEFT JOIN t ON true LEFT JOIN ins ON true"
    FB_JOINS("LEFT JOIN", "ins.f"),
};

/* $1 user, $2 feedback uuid, $3 comment or NULL, $4 response uuid or NULL,
 * $5 research id.
 * The researcher stays the one who wrote it.  Moving feedback to another
 * response is refused (response_changed). */
static const struct pg_stmt feedback_update_stmt = {
    "feedback_update",
    "WITH t AS ("
    "  SELECT f.id, r.uuid AS response_uuid,"
    "         has_study_perm($5::bigint, r.study_id, 'edit_study__feedback') AS can_edit,"
    "         " FB_VISIBLE("$5::bigint") " AS visible,"
    "         response_readable($5::bigint, r.id, r.study_id, r.is_preview) AS readable"
    "    FROM feedback f JOIN responses r ON r.id = f.response_id"
    "    JOIN children c ON c.id = r.child_id WHERE f.uuid = $2::uuid),"
    " upd AS ("
    "  UPDATE feedback f SET comment = coalesce($3::text, f.comment)"
    "    FROM t WHERE f.id = t.id AND t.can_edit AND t.readable"
    "     AND ($4::uuid IS NULL OR $4::uuid = t.response_uuid)"
    "  RETURNING f)"
    " SELECT CASE WHEN (upd.f).id IS NOT NULL THEN 'ok'"
    "             WHEN t.id IS NULL OR NOT t.visible THEN 'not_found'"
    "             WHEN NOT (t.can_edit AND t.readable) THEN 'forbidden'"
    "             ELSE 'response_changed' END, "
    FB_COLS("upd.f")
    "  FROM (SELECT 1) one LEFT JOIN t ON true LEFT JOIN upd ON true"
    FB_JOINS("LEFT JOIN", "upd.f"),
};

static void render_feedback(struct apidoc *d, const PGresult *res, int row, int col)
{
#define V(k) PQgetvalue(res, row, col + (k))
    const char *uuid = V(FC_UUID), *resp = V(FC_RESPONSE);

    apidoc_printf(d, "{\"type\":\"feedback\",\"id\":\"%s\",\"attributes\":", uuid);
    apidoc_addn(d, V(FC_ATTRS), (size_t)PQgetlength(res, row, col + FC_ATTRS));
    apidoc_printf(d,
                  ",\"relationships\":{\"response\":{\"links\":{\"related\":"
                  "\"%s/api/v1/responses/%s/\"},\"data\":{\"type\":\"responses\","
                  "\"id\":\"%s\"}},\"researcher\":",
                  d->base, resp, resp);
    if (PQgetisnull(res, row, col + FC_RESEARCHER))
        apidoc_add(d, "{\"links\":{\"related\":null},\"data\":null}}");
    else
        apidoc_printf(d,
                      "{\"links\":{\"related\":\"%s/api/v1/users/%s/\"},"
                      "\"data\":{\"type\":\"users\",\"id\":\"%s\"}}}",
                      d->base, V(FC_RESEARCHER), V(FC_RESEARCHER));
    apidoc_printf(d, ",\"links\":{\"self\":\"%s/api/v1/feedback/%s/\"}}", d->base, uuid);
#undef V
}

static void reply_one(struct http_req *req, const PGresult *res, int col, int status)
{
    struct apidoc d;

    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_feedback(&d, res, 0, col);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, status);
}

static void reply_not_found(struct http_req *req)
{
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Feedback matches the given query.");
}

/* ---- reads -------------------------------------------------------------------- */

static void feedback_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (apidoc_db_failed(req, res, "feedback_get"))
        return;
    if (PQntuples(res) != 1) {
        reply_not_found(req);
        return;
    }
    reply_one(req, res, 0, 200);
}

static void feedback_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24], rid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id, apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &feedback_get_stmt, 3, params, feedback_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void feedback_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "feedback_list", 1, render_feedback);
}

static void feedback_list(struct http_req *req, struct app *app)
{
    char uid[24], rid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { apidoc_user_id(req, uid), limit, offset,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &feedback_list_stmt, 4, params, feedback_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- writes --------------------------------------------------------------------- */

/* A checked write body: the comment (trimmed, as DRF's CharField does) and
 * the response relationship. */
struct fb_body {
    char *comment;        /* owned; NULL when absent */
    char response[37];    /* "" when absent */
};

static int parse_body(struct http_req *req, const char *want_id, bool create,
                      struct fb_body *b)
{
    struct jsonapi_error errs[2], e;
    int nerr = 0, rc = -1;
    json_t *data = NULL;
    const char *id;

    memset(b, 0, sizeof *b);
    if (jsonapi_parse_request(req, "feedback", want_id, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    switch (jsonapi_rel_id(data, "response", "responses", &id, &e)) {
    case 1:
        if (!apidoc_uuid_copy(id, b->response))
            jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/relationships/response",
                              "\"%.40s\" is not a valid UUID.", id);
        break;
    case 0:
        if (create)
            jsonapi_error_set(&errs[nerr++], 400, "required", "/data/relationships/response",
                              "This field is required.");
        break;
    default:
        if (e.status == 409) {
            jsonapi_reply_error(req, &e);
            goto out;
        }
        errs[nerr++] = e;
        break;
    }
    json_t *attrs = json_object_get(data, "attributes");
    json_t *comment = json_is_object(attrs) ? json_object_get(attrs, "comment") : NULL;
    const char *ptr = "/data/attributes/comment";
    if (!comment) {
        if (create)
            jsonapi_error_set(&errs[nerr++], 400, "required", ptr, "This field is required.");
    } else if (json_is_null(comment)) {
        jsonapi_error_set(&errs[nerr++], 400, "null", ptr, "This field may not be null.");
    } else if (!json_is_string(comment)) {
        jsonapi_error_set(&errs[nerr++], 400, "invalid", ptr, "Not a valid string.");
    } else {
        const char *s = json_string_value(comment);
        size_t n = json_string_length(comment);
        while (n && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        while (n && isspace((unsigned char)s[n - 1]))
            n--;
        if (!n)
            jsonapi_error_set(&errs[nerr++], 400, "blank", ptr, "This field may not be blank.");
        else if (memchr(s, '\0', n))
            jsonapi_error_set(&errs[nerr++], 400, "invalid", ptr,
                              "Null characters are not allowed.");
        else if (!(b->comment = strndup(s, n))) {
            jsonapi_reply_unavailable(req, "Memory");
            goto out;
        }
    }
    if (nerr) {
        apidoc_reply_errors(req, errs, nerr);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0) {
        free(b->comment);
        b->comment = NULL;
    }
    json_decref(data);
    return rc;
}

static void feedback_written(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    bool create = http_req_method(req) == HTTP_POST;
    char self[160];

    if (apidoc_db_failed(req, res, create ? "feedback_create" : "feedback_update"))
        return;
    const char *outcome = PQntuples(res) ? PQgetvalue(res, 0, 0) : "not_found";
    if (strcmp(outcome, "ok") == 0) {
        if (create) {
            jsonapi_url(req, self, sizeof self, "feedback/%s/", PQgetvalue(res, 0, 1));
            http_add_header(req, "Location", self);
        }
        reply_one(req, res, 1, create ? 201 : 200);
    } else if (strcmp(outcome, "forbidden") == 0) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "You do not have permission to perform this action.");
    } else if (strcmp(outcome, "response_changed") == 0) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/relationships/response",
                             "The response of a feedback cannot be changed.");
    } else if (create) {
        jsonapi_reply_errorf(req, 404, "not_found", "/data/relationships/response",
                             "No Response matches the given query.");
    } else {
        reply_not_found(req);
    }
}

static void feedback_create(struct http_req *req, struct app *app)
{
    struct fb_body b;
    char uid[24], rid[24];

    if (parse_body(req, NULL, true, &b) < 0)
        return;
    const char *params[] = { apidoc_user_id(req, uid), b.response, b.comment,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &feedback_create_stmt, 4, params, feedback_written, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
    free(b.comment);
}

static void feedback_update(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    struct fb_body b;
    char uid[24], rid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    if (parse_body(req, id, false, &b) < 0)
        return;
    const char *params[] = { apidoc_user_id(req, uid), id, b.comment,
                             b.response[0] ? b.response : NULL,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &feedback_update_stmt, 5, params, feedback_written, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
    free(b.comment);
}

static const struct route feedback_route_table[] = {
    { HTTP_GET, "/api/v1/feedback/", feedback_list, ROUTE_FAMILY },
    { HTTP_POST, "/api/v1/feedback/", feedback_create, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/feedback/{id}/", feedback_get, ROUTE_FAMILY },
    { HTTP_PATCH, "/api/v1/feedback/{id}/", feedback_update, ROUTE_FAMILY },
    { HTTP_PUT, "/api/v1/feedback/{id}/", feedback_update, ROUTE_FAMILY },
};

int feedback_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, feedback_route_table);
}
