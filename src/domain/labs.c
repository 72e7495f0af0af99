/* labs: lab routes (create, edit, approve, join requests, members).  The
 * handlers check the shape of their input; one statement per request
 * checks the permissions and makes the change (sql/030_workflow.sql),
 * and perms.c turns its verdict into the reply. */
#include "studyhub/domain/labs.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/domain/studymgmt.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

#define NOT_FOUND_LAB "No Lab matches the given query."

/* What may be written (approved_to_test: PATCH only, by site reviewers). */
static const struct studymgmt_field lab_fields[] = {
    { "name", SM_NAME, 0, 255 },
    { "slug", SM_SLUG, 0, 64 },
    { "institution", SM_TEXT, 0, 255 },
    { "principal_investigator_name", SM_TEXT, 0, 255 },
    { "contact_email", SM_TEXT, 0, 254 },
    { "contact_phone", SM_TEXT, 0, 64 },
    { "lab_website", SM_URL, 0, 2000 },
    { "description", SM_TEXT, 0, 20000 },
    { "irb_contact_info", SM_TEXT, 0, 20000 },
    { "approved_to_test", SM_BOOL, 0, 0 },
    { "date_created", SM_READONLY, 0, 0 },
    { "my_group", SM_READONLY, 0, 0 },
    { "join_requested", SM_READONLY, 0, 0 },
    { "pk", SM_READONLY, 0, 0 },
};

static const struct studymgmt_field member_fields[] = {
    { "group", SM_NAME, 0, 32 },
    { "email", SM_READONLY, 0, 0 },
    { "given_name", SM_READONLY, 0, 0 },
    { "family_name", SM_READONLY, 0, 0 },
    { "is_active", SM_READONLY, 0, 0 },
    { "date_joined", SM_READONLY, 0, 0 },
};

/* ------------------------------------------------------------ statements */

/* $1 user, $2 limit, $3 offset, $4 base URL, $5 approved_to_test or
 * NULL (?approved=false: the labs a reviewer has yet to approve), $6
 * words of the name or NULL (a plain substring, case-insensitive). */
static const struct pg_stmt labs_list_r_stmt = {
    "labs_list_r",
    "WITH vis AS (SELECT l.id FROM labs l"
    "              WHERE lab_visible($1::bigint, l.id, l.approved_to_test)"
    "                AND ($5::boolean IS NULL OR l.approved_to_test = $5::boolean)"
    "                AND ($6::text IS NULL OR strpos(lower(l.name), lower($6::text)) > 0))"
    " SELECT (SELECT count(*) FROM vis), p.item, 'ok', NULL, NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT lab_research_resource(l, $1::bigint, $4::text) AS item, l.id"
    "       FROM (SELECT id FROM vis ORDER BY id LIMIT $2::bigint OFFSET $3::bigint) v"
    "       JOIN labs l ON l.id = v.id) p ON true"
    "  ORDER BY p.id",
};

/* $1 user, $2 lab uuid, $3 base URL. */
static const struct pg_stmt labs_detail_r_stmt = {
    "labs_detail_r",
    "SELECT CASE WHEN l.id IS NULL THEN 'not_found' ELSE 'ok' END, '" NOT_FOUND_LAB "', NULL,"
    "       CASE WHEN l.id IS NOT NULL"
    "            THEN json_build_object('data', lab_research_resource(l, $1::bigint, $3::text)) END"
    "  FROM (SELECT 1) one LEFT JOIN labs l ON l.uuid = $2::uuid"
    "   AND lab_visible($1::bigint, l.id, l.approved_to_test)",
};

static const struct pg_stmt labs_create_stmt = {
    "labs_create",
    "SELECT * FROM lab_create($1::bigint, $2::jsonb, $3::text)",
};

static const struct pg_stmt labs_edit_stmt = {
    "labs_edit",
    "SELECT * FROM lab_edit($1::bigint, $2::uuid, $3::jsonb, $4::text)",
};

static const struct pg_stmt labs_join_stmt = {
    "labs_join",
    "SELECT * FROM lab_join_request($1::bigint, $2::uuid)",
};

static const struct pg_stmt labs_join_delete_stmt = {
    "labs_join_delete",
    "SELECT * FROM lab_join_request_delete($1::bigint, $2::uuid, $3::uuid)",
};

static const struct pg_stmt labs_member_add_stmt = {
    "labs_member_add",
    "SELECT * FROM lab_member_add($1::bigint, $2::uuid, $3::uuid, $4::text)",
};

/* $4 NULL removes the member. */
static const struct pg_stmt labs_member_change_stmt = {
    "labs_member_change",
    "SELECT * FROM lab_member_change($1::bigint, $2::uuid, $3::uuid, $4::text)",
};

/* The lab of a members or join-requests list, and whether the caller may
 * see who is in it: 404 when they cannot see the lab, 403 when they can
 * but lack read_lab__groups. */
#define LAB_GROUPS_CTE                                                              \
    "WITH lb AS (SELECT l.id, lab_visible($1::bigint, l.id, l.approved_to_test) AS vis," \
    "                   " PERMS_LAB_SQL("$1::bigint", "l.id", "'read_lab__groups'") " AS can" \
    "              FROM labs l WHERE l.uuid = $4::uuid),"
#define LAB_GROUPS_VERDICT                                                          \
    "        CASE WHEN NOT EXISTS (SELECT 1 FROM lb WHERE vis) THEN 'not_found'"    \
    "             WHEN NOT EXISTS (SELECT 1 FROM lb WHERE can) THEN 'forbidden'"    \
    "             ELSE 'ok' END,"                                                   \
    "        CASE WHEN NOT EXISTS (SELECT 1 FROM lb WHERE vis) THEN '" NOT_FOUND_LAB "'" \
    "             ELSE 'You may not see who is in this lab (read_lab__groups).' END, NULL"

/* $1 user, $2 limit, $3 offset, $4 lab uuid.  Oldest member first. */
static const struct pg_stmt labs_members_stmt = {
    "labs_members",
    LAB_GROUPS_CTE
    " mem AS (SELECT lm.user_id, lm.created_at FROM lab_members lm"
    "          WHERE lm.lab_id = (SELECT id FROM lb WHERE vis AND can))"
    " SELECT (SELECT count(*) FROM mem), p.item,"
    LAB_GROUPS_VERDICT
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT lab_member_resource((SELECT id FROM lb), m.user_id) AS item,"
    "            m.created_at, m.user_id"
    "       FROM mem m ORDER BY m.created_at, m.user_id"
    "      LIMIT $2::bigint OFFSET $3::bigint) p ON true"
    "  ORDER BY p.created_at, p.user_id",
};

/* $1 user, $2 limit, $3 offset, $4 lab uuid.  Oldest request first. */
static const struct pg_stmt labs_requests_stmt = {
    "labs_requests",
    LAB_GROUPS_CTE
    " req AS (SELECT r.user_id, r.created_at FROM lab_join_requests r"
    "          WHERE r.lab_id = (SELECT id FROM lb WHERE vis AND can))"
    " SELECT (SELECT count(*) FROM req), p.item,"
    LAB_GROUPS_VERDICT
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT json_build_object('type', 'lab-join-requests', 'id', u.uuid,"
    "              'attributes', (person_attrs(u)::jsonb || jsonb_build_object("
    "                 'date_requested', api_time(r.created_at)))::json) AS item,"
    "            r.created_at, r.user_id"
    "       FROM req r JOIN users u ON u.id = r.user_id"
    "      ORDER BY r.created_at, r.user_id LIMIT $2::bigint OFFSET $3::bigint) p ON true"
    "  ORDER BY p.created_at, p.user_id",
};

/* ------------------------------------------------------------ helpers */

/* The {id} of the path as a lowercase uuid; false after replying 404. */
static bool path_lab(struct http_req *req, char out[37])
{
    if (apidoc_uuid_copy(http_req_param(req, 0), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_LAB);
    return false;
}


/* A document's checked attributes as JSON text (malloc'd), or NULL with e. */
static char *attrs_text(json_t *data, const struct studymgmt_field *fields, size_t n,
                        json_t **clean, struct jsonapi_error *e)
{
    char *text;

    if (studymgmt_attrs_check(json_object_get(data, "attributes"), fields, n, clean, e) < 0)
        return NULL;
    if (!(text = json_dumps(*clean, JSON_COMPACT)))
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
    return text;
}

/* ------------------------------------------------------------ handlers */

static void h_list(struct http_req *req, struct app *app)
{
    const char *approved = http_req_query(req, "approved");
    const char *search = http_req_query(req, "search");
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (approved && strcmp(approved, "true") != 0 && strcmp(approved, "false") != 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "approved must be true or false.");
        return;
    }
    if (search && strlen(search) > 255) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "search is at most 255 bytes.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), limit, offset, http_req_base_url(req),
                             approved, search && *search ? search : NULL };
    perms_exec_list(req, app, &labs_list_r_stmt, 6, params);
}

static void h_detail(struct http_req *req, struct app *app)
{
    char uid[24], lu[37];

    if (!path_lab(req, lu))
        return;
    const char *params[] = { perms_user_param(req, uid), lu, http_req_base_url(req) };
    perms_exec(req, app, &labs_detail_r_stmt, 3, params);
}

static void h_create(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    char *text = NULL, uid[24];

    if (jsonapi_parse_request(req, "labs", NULL, &data, &e) < 0 ||
        !(text = attrs_text(data, lab_fields, sizeof lab_fields / sizeof *lab_fields,
                            &clean, &e))) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (!json_object_get(clean, "name")) {
        jsonapi_reply_errorf(req, 400, "required", "/data/attributes/name",
                             "This field is required.");
        goto out;
    }
    if (json_object_get(clean, "approved_to_test")) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes/approved_to_test",
                             "A new lab is unapproved; a site reviewer approves it later.");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), text, http_req_base_url(req) };
    perms_exec(req, app, &labs_create_stmt, 3, params);
out:
    free(text);
    json_decref(clean);
    json_decref(data);
}

static void h_edit(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    char *text = NULL, uid[24], lu[37];

    if (!path_lab(req, lu))
        goto out;
    if (jsonapi_parse_request(req, "labs", http_req_param(req, 0), &data, &e) < 0 ||
        !(text = attrs_text(data, lab_fields, sizeof lab_fields / sizeof *lab_fields,
                            &clean, &e))) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), lu, text, http_req_base_url(req) };
    perms_exec(req, app, &labs_edit_stmt, 4, params);
out:
    free(text);
    json_decref(clean);
    json_decref(data);
}

static void h_join(struct http_req *req, struct app *app)
{
    char uid[24], lu[37];

    if (!path_lab(req, lu))
        return;
    const char *params[] = { perms_user_param(req, uid), lu };
    perms_exec(req, app, &labs_join_stmt, 2, params);
}

static void h_requests(struct http_req *req, struct app *app)
{
    char uid[24], lu[37], limit[24], offset[24];

    if (!path_lab(req, lu) || !jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset, lu };
    perms_exec_list(req, app, &labs_requests_stmt, 4, params);
}

static void h_members(struct http_req *req, struct app *app)
{
    char uid[24], lu[37], limit[24], offset[24];

    if (!path_lab(req, lu) || !jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset, lu };
    perms_exec_list(req, app, &labs_members_stmt, 4, params);
}

/* The {user} of a members or join-requests path; false after replying. */
static bool path_member(struct http_req *req, char out[37], const char *what)
{
    if (apidoc_uuid_copy(http_req_param(req, 1), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "%s", what);
    return false;
}

static void h_request_delete(struct http_req *req, struct app *app)
{
    char uid[24], lu[37], mu[37];

    if (!path_lab(req, lu) || !path_member(req, mu, "No such join request."))
        return;
    const char *params[] = { perms_user_param(req, uid), lu, mu };
    perms_exec(req, app, &labs_join_delete_stmt, 3, params);
}

static void h_member_add(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    const char *user;
    char uid[24], lu[37], mu[37];

    if (!path_lab(req, lu))
        goto out;
    if (jsonapi_parse_request(req, "lab-members", NULL, &data, &e) < 0 ||
        studymgmt_attrs_check(json_object_get(data, "attributes"), member_fields,
                              sizeof member_fields / sizeof *member_fields, &clean, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    int rc = jsonapi_rel_id(data, "user", "users", &user, &e);
    if (rc < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (rc == 0 || !apidoc_uuid_copy(user, mu)) {
        jsonapi_reply_errorf(req, 400, rc == 0 ? "required" : "invalid",
                             "/data/relationships/user",
                             rc == 0 ? "Give the user whose request is approved."
                                     : "This user has not asked to join the lab.");
        goto out;
    }
    const char *group = json_string_value(json_object_get(clean, "group"));
    const char *params[] = { perms_user_param(req, uid), lu, mu, group ? group : "guest" };
    perms_exec(req, app, &labs_member_add_stmt, 4, params);
out:
    json_decref(clean);
    json_decref(data);
}

static void h_member_change(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    char uid[24], lu[37], mu[37];

    if (!path_lab(req, lu) || !path_member(req, mu, "This user is not a member of the lab."))
        goto out;
    if (jsonapi_parse_request(req, "lab-members", http_req_param(req, 1), &data, &e) < 0 ||
        studymgmt_attrs_check(json_object_get(data, "attributes"), member_fields,
                              sizeof member_fields / sizeof *member_fields, &clean, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *group = json_string_value(json_object_get(clean, "group"));
    if (!group) {
        jsonapi_reply_errorf(req, 400, "required", "/data/attributes/group",
                             "This field is required.");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), lu, mu, group };
    perms_exec(req, app, &labs_member_change_stmt, 4, params);
out:
    json_decref(clean);
    json_decref(data);
}

static void h_member_remove(struct http_req *req, struct app *app)
{
    char uid[24], lu[37], mu[37];

    if (!path_lab(req, lu) || !path_member(req, mu, "This user is not a member of the lab."))
        return;
    const char *params[] = { perms_user_param(req, uid), lu, mu, NULL };
    perms_exec(req, app, &labs_member_change_stmt, 4, params);
}

/* ------------------------------------------------------------ routes */

static const struct route labs_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/labs/", h_list, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/labs/{id}/", h_detail, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/labs/", h_create, ROUTE_RESEARCHER },
    { HTTP_PATCH, "/api/v1/labs/{id}/", h_edit, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/labs/{id}/join-requests/", h_join, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/labs/{id}/join-requests/", h_requests, ROUTE_RESEARCHER },
    { HTTP_DELETE, "/api/v1/labs/{id}/join-requests/{user}/", h_request_delete,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/labs/{id}/members/", h_members, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/labs/{id}/members/", h_member_add, ROUTE_RESEARCHER },
    { HTTP_PATCH, "/api/v1/labs/{id}/members/{user}/", h_member_change, ROUTE_RESEARCHER },
    { HTTP_DELETE, "/api/v1/labs/{id}/members/{user}/", h_member_remove, ROUTE_RESEARCHER },
};

int labs_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, labs_route_table);
}
