/* messages: the routes of messages.h; the rules are in
 * sql/086_messages.sql (family_message_send and the two lists). */
#include "config.h"

#include "studyhub/domain/messages.h"

#include <jansson.h>
#include <stdlib.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* $1 user, $2 study uuid, $3 attributes. */
static const struct pg_stmt send_stmt = {
    "messages_send",
    "SELECT * FROM family_message_send($1::bigint, $2::uuid, $3::jsonb)",
};

/* $1 user, $2 study uuid, $3 limit, $4 offset. */
static const struct pg_stmt study_list_stmt = {
    "messages_study_list",
    "SELECT * FROM study_message_list($1::bigint, $2::uuid, $3::bigint, $4::bigint)",
};

/* $1 user, $2 limit, $3 offset. */
static const struct pg_stmt own_list_stmt = {
    "messages_own_list",
    "SELECT * FROM family_message_list($1::bigint, $2::bigint, $3::bigint)",
};

static bool study_param(struct http_req *req, char out[37])
{
    if (apidoc_uuid_copy(http_req_param(req, 0), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
    return false;
}

static void h_send(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL, *attrs;
    char uid[24], su[37], *text = NULL;

    if (!study_param(req, su))
        return;
    if (jsonapi_parse_request(req, "messages", NULL, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return;
    }
    attrs = json_object_get(data, "attributes");
    if (!json_is_object(attrs)) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes",
                             "attributes must be an object.");
        goto out;
    }
    if (!(text = json_dumps(attrs, JSON_COMPACT))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), su, text };
    perms_exec(req, app, &send_stmt, 3, params);
out:
    free(text);
    json_decref(data);
}

static void h_study_list(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];

    if (!study_param(req, su) || !jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), su, limit, offset };
    perms_exec_list(req, app, &study_list_stmt, 4, params);
}

static void h_own_list(struct http_req *req, struct app *app)
{
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset };
    perms_exec_list(req, app, &own_list_stmt, 3, params);
}

static const struct route messages_route_table[] = {
    { HTTP_POST, "/api/v1/researcher/studies/{id}/messages/", h_send, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/messages/", h_study_list, ROUTE_RESEARCHER },
    /* The caller's own messages only. */
    { HTTP_GET, "/api/v1/messages/", h_own_list, ROUTE_USER },
};

int messages_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, messages_route_table);
}
