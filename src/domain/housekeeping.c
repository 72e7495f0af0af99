/* housekeeping: deleting a study's preview responses, the check of its
 * hashed child ids, one response as JSON (housekeeping.h). */
#include "config.h"

#include "studyhub/domain/housekeeping.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* $1 user, $2 study uuid. */
static const struct pg_stmt preview_delete_stmt = {
    "housekeeping_preview_delete",
    "SELECT * FROM study_preview_delete($1::bigint, $2::uuid)",
};

/* $1 user, $2 study uuid. */
static const struct pg_stmt hash_check_stmt = {
    "housekeeping_hash_check",
    "SELECT * FROM study_hash_check($1::bigint, $2::uuid)",
};

/* $1 user, $2 response uuid, $3 identifiable. */
static const struct pg_stmt response_json_stmt = {
    "housekeeping_response_json",
    "SELECT * FROM response_json($1::bigint, $2::uuid, $3::boolean)",
};

static bool path_uuid(struct http_req *req, char out[37], const char *what)
{
    if (apidoc_uuid_copy(http_req_param(req, 0), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No %s matches the given query.", what);
    return false;
}

static void h_preview_delete(struct http_req *req, struct app *app)
{
    char uid[24], su[37];

    if (!path_uuid(req, su, "Study"))
        return;
    const char *params[] = { perms_user_param(req, uid), su };
    perms_exec(req, app, &preview_delete_stmt, 2, params);
}

static void h_hash_check(struct http_req *req, struct app *app)
{
    char uid[24], su[37];

    if (!path_uuid(req, su, "Study"))
        return;
    const char *params[] = { perms_user_param(req, uid), su };
    perms_exec(req, app, &hash_check_stmt, 2, params);
}

/* The response as a file: the element itself, not a JSON:API document. */
static void response_json_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    char disp[128];
    const char *ident;

    if (!res || !pg_ok(res) || PQntuples(res) < 1 ||
        strcmp(PQgetvalue(res, 0, PERMS_COL_VERDICT), "ok") != 0 ||
        PQgetisnull(res, 0, PERMS_COL_DOC)) {
        perms_reply(req, res);
        return;
    }
    ident = http_req_query(req, "identifiable");
    snprintf(disp, sizeof disp, "attachment; filename=\"response-%s%s.json\"",
             http_req_param(req, 0), ident && strcmp(ident, "true") == 0 ? "-identifiable" : "");
    http_add_header(req, "Content-Disposition", disp);
    http_reply(req, 200, "application/json; charset=utf-8", PQgetvalue(res, 0, PERMS_COL_DOC),
               (size_t)PQgetlength(res, 0, PERMS_COL_DOC));
}

static void h_response_json(struct http_req *req, struct app *app)
{
    const char *ident = http_req_query(req, "identifiable");
    char uid[24], ru[37];

    if (!path_uuid(req, ru, "Response"))
        return;
    if (ident && strcmp(ident, "true") != 0 && strcmp(ident, "false") != 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "identifiable must be true or false.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), ru,
                             ident && strcmp(ident, "true") == 0 ? "true" : "false" };
    if (pg_exec(app->pg, &response_json_stmt, 3, params, response_json_done, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static const struct route housekeeping_route_table[] = {
    { HTTP_DELETE, "/api/v1/researcher/studies/{id}/preview-responses/", h_preview_delete,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/hash-check/", h_hash_check,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/responses/{id}/json/", h_response_json,
      ROUTE_RESEARCHER },
};

int housekeeping_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, housekeeping_route_table);
}
