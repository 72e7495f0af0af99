/* sitepages: the public pages' text and the support form (see
 * sitepages.h).  The handlers check the shape of their input; the edit's
 * permission, change and log row are one statement of
 * sql/functions/site_pages.sql, and perms.c turns its verdict into the
 * answer. */
#include "studyhub/domain/sitepages.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_limit.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/mail.h"
#include "studyhub/io/pg.h"

#define NOT_FOUND_PAGE "No page matches the given query."

/* ---- input checks (pure, unit-tested) -------------------------------------- */

/* Characters of valid UTF-8 (jansson's strings are). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* No control characters; line ends (LF, CR, TAB) only where allowed. */
static bool plain_text(const char *s, bool lines)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == 0x7F || (c < 0x20 && !(lines && (c == '\n' || c == '\r' || c == '\t'))))
            return false;
    }
    return true;
}

int sitepages_attrs_check(const json_t *attrs, const char **title, const char **body,
                          struct jsonapi_error *e)
{
    const char *key;
    json_t *v;

    *title = *body = NULL;
    if (!json_is_object(attrs)) {
        jsonapi_error_set(e, 400, "invalid", "/data/attributes", "Give the title or body to change.");
        return -1;
    }
    json_object_foreach((json_t *)attrs, key, v) {
        if (strcmp(key, "title") == 0) {
            const char *s = json_string_value(v);
            if (!s || !*s) {
                jsonapi_error_set(e, 400, "invalid", "/data/attributes/title", "Give the page a title.");
                return -1;
            }
            if (utf8_chars(s) > SITEPAGES_TITLE_MAX || !plain_text(s, false)) {
                jsonapi_error_set(e, 400, "invalid", "/data/attributes/title",
                                  "A title is one line of at most %d characters.", SITEPAGES_TITLE_MAX);
                return -1;
            }
            *title = s;
        } else if (strcmp(key, "body") == 0) {
            const char *s = json_string_value(v);
            if (!s) {
                jsonapi_error_set(e, 400, "invalid", "/data/attributes/body", "The text must be a string.");
                return -1;
            }
            if (strlen(s) > SITEPAGES_BODY_MAX || !plain_text(s, true)) {
                jsonapi_error_set(e, 400, "invalid", "/data/attributes/body",
                                  "The text is at most %d bytes, without control characters.",
                                  SITEPAGES_BODY_MAX);
                return -1;
            }
            *body = s;
        } else {
            char ptr[128];
            snprintf(ptr, sizeof ptr, "/data/attributes/%.100s", key);
            jsonapi_error_set(e, 400, "invalid", ptr, "Only title and body can be changed.");
            return -1;
        }
    }
    if (!*title && !*body) {
        jsonapi_error_set(e, 400, "required", "/data/attributes", "Give the title or body to change.");
        return -1;
    }
    return 0;
}

/* One string field: required (or optional, then "" when absent or null),
 * within max bytes, plain text. */
static int support_field(const json_t *fields, const char *name, size_t max, bool required,
                         bool lines, const char **out, struct jsonapi_error *e)
{
    json_t *v = json_object_get(fields, name);
    char ptr[64];

    snprintf(ptr, sizeof ptr, "/data/attributes/%s", name);
    if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
        if (required) {
            jsonapi_error_set(e, 400, "required", ptr, "This field is required.");
            return -1;
        }
        *out = "";
        return 0;
    }
    if (!json_is_string(v)) {
        jsonapi_error_set(e, 400, "invalid", ptr, "Must be text.");
        return -1;
    }
    const char *s = json_string_value(v);
    if (strlen(s) > max) {
        jsonapi_error_set(e, 400, "invalid", ptr, "Use at most %zu characters.", max);
        return -1;
    }
    if (!plain_text(s, lines)) {
        jsonapi_error_set(e, 400, "invalid", ptr, "Use plain text only.");
        return -1;
    }
    *out = s;
    return 0;
}

int sitepages_support_check(const json_t *fields, struct sitepages_support *out,
                            struct jsonapi_error *e)
{
    if (!json_is_object(fields)) {
        jsonapi_error_set(e, 400, "invalid", "/data/attributes", "Give your email and message.");
        return -1;
    }
    if (support_field(fields, "name", SITEPAGES_NAME_MAX, false, false, &out->name, e) < 0 ||
        support_field(fields, "email", 254, true, false, &out->email, e) < 0)
        return -1;
    const char *at = strchr(out->email, '@');
    if (!mail_addr_ok(out->email) || !at || !strchr(at, '.')) {
        jsonapi_error_set(e, 400, "invalid", "/data/attributes/email",
                          "Enter an email address like name@example.com.");
        return -1;
    }
    if (support_field(fields, "subject", SITEPAGES_SUBJECT_MAX, true, false, &out->subject, e) < 0 ||
        support_field(fields, "message", SITEPAGES_MESSAGE_MAX, true, true, &out->message, e) < 0)
        return -1;
    return 0;
}

char *sitepages_support_subject(const struct sitepages_support *s)
{
    return util_asprintf("Support: %s", s->subject);
}

char *sitepages_support_body(const struct sitepages_support *s)
{
    return util_asprintf("A message from the support page.\n\n"
                         "From: %s\nEmail: %s\nSubject: %s\n\n%s\n\n"
                         "-- \nReply to the address above: the sender is not told this "
                         "address until you answer.\n",
                         *s->name ? s->name : "(no name given)", s->email, s->subject,
                         s->message);
}

/* ---- the pages' text --------------------------------------------------------- */

static const struct pg_stmt list_stmt = {
    "sitepages_list",
    "SELECT coalesce(json_agg(site_page_item(p, $1) ORDER BY p.position), '[]')"
    "  FROM site_pages p",
};

static const struct pg_stmt get_stmt = {
    "sitepages_get",
    "SELECT site_page_item(p, $2) FROM site_pages p WHERE p.slug = $1",
};

static const struct pg_stmt edit_stmt = {
    "sitepages_edit",
    "SELECT * FROM site_page_edit($1::bigint, $2::text, $3::text, $4::text, $5::text)",
};

static const struct pg_stmt edits_stmt = {
    "sitepages_edits",
    "SELECT * FROM site_page_edits($1::bigint, $2::bigint, $3::bigint)",
};

/* Pages are a fixed few: a slug outside the table's pattern is not one. */
static bool slug_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz-") == n;
}

static void reply_json_col(struct http_req *req, const PGresult *res, const char *what)
{
    struct apidoc d;

    if (apidoc_db_failed(req, res, what))
        return;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_PAGE);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    apidoc_addn(&d, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, 200);
}

static void listed(PGresult *res, void *arg)
{
    reply_json_col(arg, res, "sitepages_list");
}

static void h_list(struct http_req *req, struct app *app)
{
    const char *params[] = { http_req_base_url(req) };
    if (pg_exec(app->pg, &list_stmt, 1, params, listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void got(PGresult *res, void *arg)
{
    reply_json_col(arg, res, "sitepages_get");
}

static void h_get(struct http_req *req, struct app *app)
{
    const char *slug = http_req_param(req, 0);

    if (!slug_ok(slug)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_PAGE);
        return;
    }
    const char *params[] = { slug, http_req_base_url(req) };
    if (pg_exec(app->pg, &get_stmt, 2, params, got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void h_edit(struct http_req *req, struct app *app)
{
    const char *slug = http_req_param(req, 0);
    struct jsonapi_error e;
    json_t *data = NULL;
    const char *title, *body;
    char uid[24];

    if (!slug_ok(slug)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_PAGE);
        return;
    }
    if (jsonapi_parse_request(req, "site-pages", slug, &data, &e) < 0 ||
        sitepages_attrs_check(json_object_get(data, "attributes"), &title, &body, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    log_info("sitepages: user %s edits page %s", perms_user_param(req, uid), slug);
    const char *params[] = { perms_user_param(req, uid), slug, title, body,
                             http_req_base_url(req) };
    perms_exec(req, app, &edit_stmt, 5, params);
out:
    json_decref(data);
}

static void h_edits(struct http_req *req, struct app *app)
{
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset };
    perms_exec_list(req, app, &edits_stmt, 3, params);
}

/* ---- support ---------------------------------------------------------------- */

/* One support message between its rate check and its insert. */
struct support_op {
    struct http_req *req;            /* borrowed: lives until replied */
    struct app *app;                 /* borrowed */
    json_t *body;                    /* owned: the request's JSON (msg's strings) */
    struct sitepages_support msg;    /* borrowed from body */
    struct auth_rate_key rate[2];    /* the sender's email and the client address */
};

static void support_free(struct support_op *op)
{
    if (!op)
        return;
    json_decref(op->body);
    free(op);
}

static const struct pg_stmt support_stmt = {
    "sitepages_support",
    MAIL_INSERT_SQL "VALUES ('support', $1, $2, $3)",
};

static void support_queued(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (apidoc_db_failed(req, res, "sitepages_support"))
        return;
    json_t *doc = json_pack("{s:{s:s}}", "meta", "detail",
                            "Thank you: your message was sent. We will answer by email.");
    if (!doc) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    jsonapi_reply(req, 202, doc);
}

static void support_rated(enum auth_rate_verdict v, long retry, void *arg)
{
    struct support_op *op = arg;
    struct http_req *req = op->req;
    char *subject = NULL, *text = NULL;

    switch (v) {
    case AUTH_RATE_LIMITED:
        auth_reply_rate_limited(req, retry);
        goto out;
    case AUTH_RATE_UNAVAILABLE:
        jsonapi_reply_unavailable(req, "Redis");
        goto out;
    case AUTH_RATE_OK:
        break;
    }
    if (!(subject = sitepages_support_subject(&op->msg)) ||
        !(text = sitepages_support_body(&op->msg))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    /* Neither the sender nor the message goes to the log: the access log
     * has the client's address, which is what traces abuse of the form. */
    log_info("sitepages: support message queued");
    const char *params[] = { op->app->cfg->support_email, subject, text };
    if (pg_exec(op->app->pg, &support_stmt, 3, params, support_queued, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
out:
    free(subject);
    free(text);
    support_free(op);
}

static void h_support(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *fields;
    struct support_op *op = calloc(1, sizeof *op);

    if (!op) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    op->req = req;
    op->app = app;
    if (!(op->body = auth_read_json(req, &fields))) {
        support_free(op);
        return;
    }
    if (sitepages_support_check(fields, &op->msg, &e) < 0) {
        jsonapi_reply_error(req, &e);
        support_free(op);
        return;
    }
    auth_rate_keys(op->rate, req, app, "support", op->msg.email);
    op->rate[0].max = op->rate[1].max = app->cfg->support_rate_max;
    if (auth_rate_hit(app, op->rate, 2, support_rated, op) != 0) {
        jsonapi_reply_unavailable(req, "Redis");
        support_free(op);
    }
}

static const struct route sitepages_route_table[] = {
    { HTTP_GET, "/api/v1/site-pages/", h_list, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/site-pages/{slug}/", h_get, ROUTE_PUBLIC },
    { HTTP_PATCH, "/api/v1/site-pages/{slug}/", h_edit, ROUTE_SITE_ADMIN },
    { HTTP_GET, "/api/v1/admin/site-page-edits/", h_edits, ROUTE_SITE_ADMIN },
    { HTTP_POST, "/api/v1/support/", h_support, ROUTE_PUBLIC },
};

int sitepages_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, sitepages_route_table);
}
