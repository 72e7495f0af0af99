/* perms: the replies of permission-checked statements (verdict -> HTTP
 * status, per the rule "cannot read it: 404; can read, cannot change it:
 * 403") and GET /api/v1/researcher/permissions/.  The checks themselves
 * are SQL (has_site_perm, has_study_perm, has_lab_perm); see perms.h. */
#include "studyhub/domain/perms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* Verdicts of the management statements and what they answer. */
struct verdict {
    const char *name;      /* as the statement spells it */
    int status;
    const char *code;      /* JSON:API error code; NULL for successes */
    const char *detail;    /* default when the statement gives none */
};

static const struct verdict verdicts[] = {
    { "ok", 200, NULL, NULL },
    { "created", 201, NULL, NULL },
    { "deleted", 204, NULL, NULL },
    { "not_found", 404, "not_found", "Not found." },
    { "forbidden", 403, "permission_denied",
      "You do not have permission to perform this action." },
    { "conflict", 409, "conflict", "The request conflicts with the current state." },
    { "invalid", 400, "invalid", "Invalid input." },
};

static const struct verdict *verdict_find(const char *name)
{
    for (size_t i = 0; i < sizeof verdicts / sizeof *verdicts; i++)
        if (strcmp(verdicts[i].name, name) == 0)
            return &verdicts[i];
    return NULL;
}

const char *perms_user_param(const struct http_req *req, char buf[24])
{
    const struct auth_user *me = auth_user(req);
    snprintf(buf, 24, "%lld", me ? (long long)me->id : 0LL);
    return buf;
}

/* A failed statement: false when res is usable.  The SQL errors that are
 * about the request rather than the server get their own answers. */
static bool db_failed(struct http_req *req, const PGresult *res)
{
    const char *what = http_req_route(req);

    if (res && !pg_ok(res)) {
        const char *state = pg_sqlstate(res);
        if (strcmp(state, "23505") == 0) {
            /* The statement checked first; this is a race with another
             * writer of the same name, id or membership. */
            log_info("%s: unique violation: %s", what, PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME)
                                                        ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME)
                                                        : "?");
            jsonapi_reply_errorf(req, 409, "conflict", "/data",
                                 "This conflicts with an existing record.");
            return true;
        }
        if (strcmp(state, "SH400") == 0) {
            /* A check that had to abort the whole statement (something
             * was already written): message and pointer are the SQL's. */
            const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
            jsonapi_reply_errorf(req, 400, "invalid", hint, "%s", msg ? msg : "Invalid input.");
            return true;
        }
        if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0) {
            jsonapi_reply_errorf(req, 409, "conflict", NULL,
                                 "A concurrent change got in the way; try again.");
            return true;
        }
    }
    return apidoc_db_failed(req, res, what ? what : "perms");
}

/* Replies with the error of a refusing verdict whose (verdict, detail,
 * pointer) columns start at col. */
static void reply_refusal(struct http_req *req, const struct verdict *v,
                          const PGresult *res, int col)
{
    const char *detail = PQgetisnull(res, 0, col + 1) ? v->detail : PQgetvalue(res, 0, col + 1);
    const char *pointer = PQgetisnull(res, 0, col + 2) ? NULL : PQgetvalue(res, 0, col + 2);
    jsonapi_reply_errorf(req, v->status, v->code, pointer, "%s", detail);
}

/* The verdict of the first row (columns col..col+2 of at least ncols), or
 * NULL after replying 500. */
static const struct verdict *first_verdict(struct http_req *req, const PGresult *res,
                                           int col, int ncols)
{
    const struct verdict *v = NULL;

    if (PQntuples(res) >= 1 && PQnfields(res) >= ncols && !PQgetisnull(res, 0, col))
        v = verdict_find(PQgetvalue(res, 0, col));
    if (!v) {
        log_error("%s: statement gave no verdict", http_req_route(req));
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
    }
    return v;
}

void perms_reply(struct http_req *req, const PGresult *res)
{
    const struct verdict *v;
    struct apidoc d;

    if (db_failed(req, res) ||
        !(v = first_verdict(req, res, PERMS_COL_VERDICT, PERMS_COL_DOC + 1)))
        return;
    if (v->code) {
        reply_refusal(req, v, res, PERMS_COL_VERDICT);
        return;
    }
    if (v->status == 204) {
        http_reply(req, 204, NULL, NULL, 0);
        return;
    }
    if (PQgetisnull(res, 0, PERMS_COL_DOC)) {
        log_error("%s: verdict %s without a document", http_req_route(req), v->name);
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return;
    }
    /* The document is rendered by PostgreSQL: passed through verbatim. */
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_addn(&d, PQgetvalue(res, 0, PERMS_COL_DOC),
                (size_t)PQgetlength(res, 0, PERMS_COL_DOC));
    apidoc_reply(&d, req, v->status);
}

/* One list item: a resource object PostgreSQL rendered. */
static void render_item(struct apidoc *d, const PGresult *res, int row, int col)
{
    apidoc_addn(d, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
}

void perms_reply_list(struct http_req *req, const PGresult *res)
{
    const struct verdict *v;

    if (db_failed(req, res) ||
        !(v = first_verdict(req, res, PERMS_LCOL_VERDICT, PERMS_LCOL_VERDICT + 3)))
        return;
    if (v->code) {
        reply_refusal(req, v, res, PERMS_LCOL_VERDICT);
        return;
    }
    apidoc_reply_page(req, (PGresult *)res, http_req_route(req), PERMS_LCOL_ITEM, render_item);
}

void perms_reply_cb(PGresult *res, void *arg)
{
    perms_reply(arg, res);
}

void perms_list_cb(PGresult *res, void *arg)
{
    perms_reply_list(arg, res);
}

void perms_exec(struct http_req *req, struct app *app, const struct pg_stmt *stmt,
                int nparams, const char *const *params)
{
    /* The request is the callback's only state. */
    if (pg_exec(app->pg, stmt, nparams, params, perms_reply_cb, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

void perms_exec_list(struct http_req *req, struct app *app, const struct pg_stmt *stmt,
                     int nparams, const char *const *params)
{
    if (pg_exec(app->pg, stmt, nparams, params, perms_list_cb, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ------------------------------------------------------------ the route */

/* $1 user, $2 study uuid or NULL, $3 lab uuid or NULL (not both).  The
 * permissions listed for a scope are the ones that make sense there:
 * study permissions on a study, lab permissions on a lab, all of them
 * site-wide. */
static const struct pg_stmt perms_held_stmt = {
    "perms_held",
    "WITH st AS (SELECT s.id FROM studies s WHERE s.uuid = $2::uuid"
    "              AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'") "),"
    "     lb AS (SELECT l.id FROM labs l WHERE l.uuid = $3::uuid"
    "              AND lab_visible($1::bigint, l.id, l.approved_to_test))"
    " SELECT CASE WHEN $2::uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM st) THEN 'not_found'"
    "             WHEN $3::uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lb) THEN 'not_found'"
    "             ELSE 'ok' END,"
    "        CASE WHEN $2::uuid IS NOT NULL THEN 'No Study matches the given query.'"
    "             ELSE 'No Lab matches the given query.' END,"
    "        NULL,"
    "        json_build_object('data', json_build_object("
    "          'type', 'permissions',"
    "          'id', coalesce($2::text, $3::text, 'site'),"
    "          'attributes', json_build_object("
    "            'scope', CASE WHEN $2::uuid IS NOT NULL THEN 'study'"
    "                          WHEN $3::uuid IS NOT NULL THEN 'lab' ELSE 'site' END,"
    "            'granted', (SELECT coalesce(json_agg(p.name ORDER BY p.name), '[]'::json)"
    "                          FROM permissions p"
    "                         WHERE CASE WHEN $2::uuid IS NOT NULL THEN"
    "                                      p.name LIKE '%study\\_\\_%' AND "
                                             PERMS_STUDY_SQL("$1::bigint", "(SELECT id FROM st)", "p.name")
    "                                    WHEN $3::uuid IS NOT NULL THEN"
    "                                      p.name LIKE '%\\_lab\\_\\_%' AND "
                                             PERMS_LAB_SQL("$1::bigint", "(SELECT id FROM lb)", "p.name")
    "                                    ELSE " PERMS_SITE_SQL("$1::bigint", "p.name") " END))))",
};

static void h_held(struct http_req *req, struct app *app)
{
    const char *study = http_req_query(req, "study");
    const char *lab = http_req_query(req, "lab");
    char uid[24], su[37], lu[37];

    if (study && lab) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "Give study or lab, not both.");
        return;
    }
    /* An id that is no uuid names nothing. */
    if ((study && !apidoc_uuid_copy(study, su)) || (lab && !apidoc_uuid_copy(lab, lu))) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s",
                             study ? "No Study matches the given query."
                                   : "No Lab matches the given query.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), study ? su : NULL, lab ? lu : NULL };
    perms_exec(req, app, &perms_held_stmt, 3, params);
}

static const struct route perms_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/permissions/", h_held, ROUTE_RESEARCHER },
};

int perms_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, perms_route_table);
}
