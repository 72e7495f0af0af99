/* useradmin: the account routes of the admin pages (see useradmin.h).
 * The handlers check the shape of their input; one statement of
 * sql/095_user_admin.sql checks the permission, changes, logs and renders
 * the reply, and perms.c turns its verdict into the answer. */
#include "studyhub/domain/useradmin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

#define NOT_FOUND_USER "No User matches the given query."

static const char *const writable[] = { "is_active", "is_researcher", "is_site_admin" };

int useradmin_attrs_check(const json_t *attrs, json_t **clean, struct jsonapi_error *e)
{
    const char *key;
    json_t *v;
    char ptr[128];

    *clean = NULL;
    if (!json_is_object(attrs)) {
        jsonapi_error_set(e, 400, "invalid", "/data/attributes", "Give the attributes to change.");
        return -1;
    }
    if (!(*clean = json_object())) {
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
        return -1;
    }
    json_object_foreach((json_t *)attrs, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof writable / sizeof *writable; i++)
            known = known || strcmp(writable[i], key) == 0;
        snprintf(ptr, sizeof ptr, "/data/attributes/%.100s", key);
        if (!known) {
            jsonapi_error_set(e, 400, "invalid", ptr,
                              "Only is_active, is_researcher and is_site_admin can be changed here.");
            goto fail;
        }
        if (!json_is_boolean(v)) {
            jsonapi_error_set(e, 400, "invalid", ptr, "Must be a valid boolean.");
            goto fail;
        }
        json_object_set(*clean, key, v);
    }
    if (json_object_size(*clean) == 0) {
        jsonapi_error_set(e, 400, "required", "/data/attributes",
                          "Give is_active, is_researcher or is_site_admin.");
        goto fail;
    }
    return 0;
fail:
    json_decref(*clean);
    *clean = NULL;
    return -1;
}

/* ------------------------------------------------------------ statements */

/* The statements of useradmin.h, one per action (see there for their
 * parameters); sql/100_user_admin_operator.sql holds the logic. */
static const struct pg_stmt ua_list_stmt = {
    "useradmin_list",
    "SELECT * FROM user_admin_list($1::bigint, $2::text, $3::text, $4::bigint, $5::bigint,"
    " $6::text)",
};

static const struct pg_stmt ua_change_stmt = {
    "useradmin_change",
    "SELECT * FROM user_admin_change($1::bigint, $2::text, $3::text, $4::jsonb, $5::text)",
};

static const struct pg_stmt ua_reset_stmt = {
    "useradmin_reset",
    "SELECT * FROM user_admin_reset_2fa($1::bigint, $2::text, $3::text, $4::text)",
};

int useradmin_list_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *search,
                        const char *limit, const char *offset, const char *base, pg_cb cb,
                        void *arg)
{
    const char *params[] = { admin, oper, search, limit, offset, base };
    return pg_exec(pg, &ua_list_stmt, 6, params, cb, arg);
}

int useradmin_change_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *user,
                          const char *attrs, const char *base, pg_cb cb, void *arg)
{
    const char *params[] = { admin, oper, user, attrs, base };
    return pg_exec(pg, &ua_change_stmt, 5, params, cb, arg);
}

int useradmin_reset_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *user,
                         const char *base, pg_cb cb, void *arg)
{
    const char *params[] = { admin, oper, user, base };
    return pg_exec(pg, &ua_reset_stmt, 4, params, cb, arg);
}

/* ------------------------------------------------------------ handlers */

static bool path_user(struct http_req *req, char out[37])
{
    if (apidoc_uuid_copy(http_req_param(req, 0), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_USER);
    return false;
}

static void h_list(struct http_req *req, struct app *app)
{
    const char *search = http_req_query(req, "search");
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (search && strlen(search) > USERADMIN_SEARCH_MAX) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "search is at most %d bytes.",
                             USERADMIN_SEARCH_MAX);
        return;
    }
    if (useradmin_list_exec(app->pg, perms_user_param(req, uid), NULL,
                            search && *search ? search : NULL, limit, offset,
                            http_req_base_url(req), perms_list_cb, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void h_change(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *clean = NULL;
    char *text = NULL;
    char uid[24], uu[37];

    if (!path_user(req, uu))
        return;
    if (jsonapi_parse_request(req, "admin-users", http_req_param(req, 0), &data, &e) < 0 ||
        useradmin_attrs_check(json_object_get(data, "attributes"), &clean, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (!(text = json_dumps(clean, JSON_COMPACT))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    log_info("useradmin: user %s changes %s: %s", perms_user_param(req, uid), uu, text);
    if (useradmin_change_exec(app->pg, perms_user_param(req, uid), NULL, uu, text,
                              http_req_base_url(req), perms_reply_cb, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
out:
    free(text);
    json_decref(clean);
    json_decref(data);
}

static void h_reset(struct http_req *req, struct app *app)
{
    char uid[24], uu[37];

    if (!path_user(req, uu))
        return;
    log_info("useradmin: user %s resets two-factor of %s", perms_user_param(req, uid), uu);
    /* The email to the owner is queued in the statement; the mail
     * sender's next poll (MAIL_POLL_S) sends it. */
    if (useradmin_reset_exec(app->pg, perms_user_param(req, uid), NULL, uu,
                             http_req_base_url(req), perms_reply_cb, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static const struct route useradmin_route_table[] = {
    { HTTP_GET, "/api/v1/admin/users/", h_list, ROUTE_SITE_ADMIN },
    { HTTP_PATCH, "/api/v1/admin/users/{id}/", h_change, ROUTE_SITE_ADMIN },
    { HTTP_POST, "/api/v1/admin/users/{id}/reset-two-factor/", h_reset, ROUTE_SITE_ADMIN },
};

int useradmin_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, useradmin_route_table);
}
