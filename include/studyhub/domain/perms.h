/* perms: how every route asks for a permission, and how the answer of a
 * permission-checked statement becomes a reply.
 *
 * Permissions are named (reference section 3) and granted to groups as data
 * (sql/002_model.sql, sql/030_workflow.sql).  A route never asks whether the
 * caller is in a group or is a superuser: it asks for a permission, and
 * the question is always answered by one of three SQL functions, evaluated
 * inside the route's one statement so that the check and the change it
 * guards happen in the same transaction:
 *
 *   has_site_perm(user, perm)         a site-wide grant
 *   has_study_perm(user, study, perm) site-wide, then the study's own
 *                                     grant, then the umbrella grant of the
 *                                     study's lab
 *   has_lab_perm(user, lab, perm)     site-wide, then the lab's grant
 *
 * The PERMS_*_SQL macros spell those calls for statement texts; the
 * management functions of sql/030_workflow.sql call them directly.  Which
 * permission a route needs is in the route's statement (or, for the
 * workflow, in the transition table).
 *
 * GET /api/v1/researcher/permissions/ (?study=<uuid> or ?lab=<uuid>)
 * lists what the caller holds, for pages that show only the buttons that
 * will work. */
#ifndef STUDYHUB_DOMAIN_PERMS_H
#define STUDYHUB_DOMAIN_PERMS_H

#include <libpq-fe.h>

struct app;
struct http_req;
struct pg_stmt;
struct router;

/* SQL fragments: the only way a statement asks a permission.  Arguments
 * are SQL expressions (parameters or columns), e.g.
 * PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'"). */
#define PERMS_SITE_SQL(user, perm) "has_site_perm(" user ", " perm ")"
#define PERMS_STUDY_SQL(user, study, perm) "has_study_perm(" user ", " study ", " perm ")"
#define PERMS_LAB_SQL(user, lab, perm) "has_lab_perm(" user ", " lab ", " perm ")"

/* The result of a management statement is one row of
 * (verdict, detail, pointer, doc): verdict "ok" (200), "created" (201) or
 * "deleted" (204, no body) with doc the JSON:API document; or
 * "not_found" (404), "forbidden" (403), "conflict" (409), "invalid" (400)
 * with detail and pointer for the error object.  Columns in this order. */
enum { PERMS_COL_VERDICT, PERMS_COL_DETAIL, PERMS_COL_POINTER, PERMS_COL_DOC };

/* A list statement returns rows of (count, item, verdict, detail,
 * pointer): the first row's verdict decides as above; on "ok" count is the
 * total and item one resource object per row (NULL on the one row of an
 * empty page), the layout apidoc_reply_page renders. */
enum { PERMS_LCOL_COUNT, PERMS_LCOL_ITEM, PERMS_LCOL_VERDICT };

/* Replies to such a result (res may be NULL: 503).  SQL errors: a unique
 * violation or a lost lock race is 409, a value PostgreSQL refuses is 400,
 * anything else 500 (logged; never expected). */
void perms_reply(struct http_req *req, const PGresult *res);

/* Replies to a list result with the pagination links of the request
 * (?page, ?page_size: parsed again, they were checked before the query). */
void perms_reply_list(struct http_req *req, const PGresult *res);

/* pg callbacks (arg: the request) replying with perms_reply /
 * perms_reply_list, for statements sent by another module's function. */
void perms_reply_cb(PGresult *res, void *arg);
void perms_list_cb(PGresult *res, void *arg);

/* Runs stmt and replies with perms_reply / perms_reply_list.  params are
 * copied.  A query that cannot be queued is answered 503. */
void perms_exec(struct http_req *req, struct app *app, const struct pg_stmt *stmt,
                int nparams, const char *const *params);
void perms_exec_list(struct http_req *req, struct app *app, const struct pg_stmt *stmt,
                     int nparams, const char *const *params);

/* The caller's users.id as text, for a statement parameter ($1 by
 * convention).  The caller is authenticated. */
const char *perms_user_param(const struct http_req *req, char buf[24]);

/* GET /api/v1/researcher/permissions/: 0, or -1 when the router refused it. */
int perms_routes(struct router *r);

#endif
