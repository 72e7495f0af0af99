/* participate: how a family finds a study and takes part (see
 * participate.h): the public study list, the family's past sessions,
 * which of its children a study admits, and the steps of taking part that
 * need no built runner (an external study's redirect, a jsPsych study's
 * page).  The built runner's page and files, its caches and the hand-off
 * to its own host are participate_runner.c's. */
#include "studyhub/domain/participate.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/domain/eligibility.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/io/pg.h"

/* ---- pure helpers (unit-tested) ------------------------------------------ */

bool participate_split(const char *rest, char child[37])
{
    size_t n = strcspn(rest, "/");

    if (n != 36)
        return false;
    char seg[37];
    memcpy(seg, rest, 36);
    seg[36] = '\0';
    if (!jsonapi_is_uuid(seg))
        return false;
    memcpy(child, seg, 37);
    return true;
}

char *participate_external_location(const char *url, const char *child_hash,
                                    const char *response)
{
    /* As the runner's addSearchParams: keep the URL's query, then set
     * child and response; a fragment stays last. */
    const char *hashmark = strchr(url, '#');
    size_t base_len = hashmark ? (size_t)(hashmark - url) : strlen(url);
    const char *sep = memchr(url, '?', base_len) ? "&" : "?";

    return util_asprintf("%.*s%schild=%s&response=%s%s", (int)base_len, url, sep,
                         child_hash, response, hashmark ? hashmark : "");
}

/* ---- readable refusals --------------------------------------------------- */

/* Browsers get a page, never JSON.  One text for "no such study", "not
 * active" and "not your child", so nobody learns which it was. */
void participate_page_error(struct http_req *req, int status, const char *title,
                            const char *text)
{
    char *body = util_asprintf(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>%s – studyhub</title><link rel=\"stylesheet\" href=\"/css/site.css\">"
        "</head><body><main id=\"main\"><h1>%s</h1><p>%s</p>"
        "<p><a href=\"/studies/\">See the studies you can take part in</a> or "
        "<a href=\"/\">go to the home page</a>.</p></main></body></html>\n",
        title, title, text);

    http_add_header(req, "Cache-Control", "no-store");
    if (!body) {
        http_reply(req, status, "text/plain; charset=utf-8", title, strlen(title));
        return;
    }
    http_reply(req, status, "text/html; charset=utf-8", body, strlen(body));
    free(body);
}

void participate_unavailable_page(struct http_req *req)
{
    http_add_header(req, "Retry-After", "1");
    participate_page_error(req, 503, "Please try again",
                           "The study could not be opened just now. Please try again in a moment.");
}

void participate_no_study(struct http_req *req)
{
    participate_page_error(req, 404, "This study is not available",
                           "The study is not open right now, or this link is not for one of "
                           "your children.");
}

/* ---- discovery (public) -------------------------------------------------- */

#define AGE_DAYS(p) "(" p "years * 365 + " p "months * 30 + " p "days)"
#define DISCOVER_ATTRS                                                        \
    "json_build_object('name', s.name, 'short_description', s.short_description," \
    " 'purpose', s.purpose, 'criteria', s.criteria, 'duration', s.duration,"  \
    " 'compensation_description', s.compensation_description,"                \
    " 'contact_info', s.contact_info, 'image', s.image,"                      \
    " 'study_type', s.study_type,"                                            \
    " 'min_age_days', " AGE_DAYS("s.min_age_") ","                            \
    " 'max_age_days', " AGE_DAYS("s.max_age_") ", 'pk', s.id)"

/* $1 limit, $2 offset, $3 age in days or NULL.  Always one row: the
 * count, then the page (NULL when empty).  A maximum of 0 days admits
 * only newborns, as eligibility.c. */
static const struct pg_stmt discover_list_stmt = {
    "participate_discover",
    "WITH vis AS ("
    "  SELECT s.id, s.date_modified FROM studies s"
    "   WHERE s.state = 'active' AND s.public"
    "     AND ($3::integer IS NULL OR ($3 >= " AGE_DAYS("s.min_age_")
    "          AND $3 <= " AGE_DAYS("s.max_age_") ")))"
    " SELECT (SELECT count(*) FROM vis), p.uuid, p.attrs"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT s.uuid, " DISCOVER_ATTRS " AS attrs, v.date_modified, v.id"
    "       FROM (SELECT id, date_modified FROM vis"
    "              ORDER BY date_modified DESC, id DESC LIMIT $1 OFFSET $2) v"
    "       JOIN studies s ON s.id = v.id) p ON true"
    "  ORDER BY p.date_modified DESC, p.id DESC",
};

/* $1 study uuid: an active study (public or not: its link may be shared). */
static const struct pg_stmt discover_get_stmt = {
    "participate_discover_get",
    "SELECT s.uuid, " DISCOVER_ATTRS " FROM studies s"
    " WHERE s.uuid = $1::uuid AND s.state = 'active'",
};

static void render_discover(struct apidoc *d, const PGresult *res, int row, int col)
{
    apidoc_resource(d, "studies", res, row, col);
}

static void discover_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "participate_discover", 1, render_discover);
}

static void discover_list(struct http_req *req, struct app *app)
{
    char limit[24], offset[24], age[24];
    const char *a = http_req_query(req, "age_days");
    const char *age_p = NULL;

    if (a && *a) {
        char *end;
        long v = strtol(a, &end, 10);
        if (*end || v < 0 || v > 100000) {
            jsonapi_reply_errorf(req, 400, "invalid", NULL,
                                 "age_days must be a whole number of days.");
            return;
        }
        snprintf(age, sizeof age, "%ld", v);
        age_p = age;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { limit, offset, age_p };
    if (pg_exec(app->pg, &discover_list_stmt, 3, params, discover_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void discover_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "participate_discover_get"))
        return;
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_discover(&d, res, 0, 0);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, 200);
}

static void discover_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);

    if (!jsonapi_is_uuid(id)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    const char *params[] = { id };
    if (pg_exec(app->pg, &discover_get_stmt, 1, params, discover_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- past sessions (the family's own) ------------------------------------- */

/* $1 user, $2 limit, $3 offset: the caller's children's responses (not
 * previews), newest first, with the study, the child's first name and the
 * researchers' feedback.  A family reads only its own rows; research
 * reads of responses are logged in research.c, this is not one.  Always
 * one row: the count, then the page (NULL when empty). */
static const struct pg_stmt history_stmt = {
    "participate_history",
    "WITH vis AS ("
    "  SELECT r.id, r.date_created FROM responses r JOIN children c ON c.id = r.child_id"
    "   WHERE c.user_id = $1 AND NOT r.is_preview)"
    " SELECT (SELECT count(*) FROM vis), p.uuid, p.attrs"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT r.uuid, json_build_object("
    "         'study_id', s.uuid, 'study_name', s.name, 'image', s.image,"
    "         'study_state', s.state,"
    "         'child_id', c.uuid, 'child_name', c.given_name,"
    "         'date_created', api_time(r.date_created), 'completed', r.completed,"
    "         'feedback', coalesce((SELECT json_agg(json_build_object("
    "              'comment', f.comment, 'date_created', api_time(f.created_at))"
    "              ORDER BY f.created_at, f.id)"
    "            FROM feedback f WHERE f.response_id = r.id), '[]'::json)) AS attrs,"
    "         v.date_created, v.id"
    "       FROM (SELECT id, date_created FROM vis"
    "              ORDER BY date_created DESC, id DESC LIMIT $2 OFFSET $3) v"
    "       JOIN responses r ON r.id = v.id JOIN children c ON c.id = r.child_id"
    "       JOIN studies s ON s.id = r.study_id) p ON true"
    "  ORDER BY p.date_created DESC, p.id DESC",
};

static void render_history(struct apidoc *d, const PGresult *res, int row, int col)
{
    apidoc_resource(d, "past-sessions", res, row, col);
}

static void history_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "participate_history", 1, render_history);
}

static void history_list(struct http_req *req, struct app *app)
{
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { apidoc_user_id(req, uid), limit, offset };
    if (pg_exec(app->pg, &history_stmt, 3, params, history_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- eligibility of the caller's children -------------------------------- */

enum {
    EC_STUDY, EC_CHILD, EC_NAME, EC_BIRTHDAY, EC_AGE_DAYS, EC_GENDER, EC_WEEKS,
    EC_LANGS, EC_CONDS, EC_MIN_Y, EC_MIN_M, EC_MIN_D, EC_MAX_Y, EC_MAX_M,
    EC_MAX_D, EC_CRITERIA, EC_PARTICIPATION_OK
};
/* $1 user, $2 study uuid: one row per child of the caller (none: one row
 * with a NULL child), no row when the study is not active. */
static const struct pg_stmt eligibility_stmt = {
    "participate_eligibility",
    "SELECT s.uuid, c.uuid, c.given_name, c.birthday, current_date - c.birthday,"
    "       c.gender, coalesce(c.gestational_age_at_birth, 0),"
    "       array_to_string(c.languages_spoken, ' '),"
    "       array_to_string(c.existing_conditions, ' '),"
    "       s.min_age_years, s.min_age_months, s.min_age_days,"
    "       s.max_age_years, s.max_age_months, s.max_age_days, s.criteria_expression,"
    "       CASE WHEN c.id IS NOT NULL THEN child_participation_ok(c.id, s.id) END"
    "  FROM studies s"
    "  LEFT JOIN children c ON c.user_id = $1 AND NOT c.deleted"
    " WHERE s.uuid = $2::uuid AND s.state = 'active'"
    " ORDER BY c.birthday DESC, c.id",
};

static void eligibility_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "participate_eligibility"))
        return;
    if (PQntuples(res) == 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":[");
    int n = 0;
    for (int i = 0; i < PQntuples(res); i++) {
#define G(k) PQgetvalue(res, i, (k))
        if (PQgetisnull(res, i, EC_CHILD))
            continue;
        struct eligibility_ages ages = {
            atoi(G(EC_MIN_Y)), atoi(G(EC_MIN_M)), atoi(G(EC_MIN_D)),
            atoi(G(EC_MAX_Y)), atoi(G(EC_MAX_M)), atoi(G(EC_MAX_D)),
        };
        struct eligibility_child child = {
            .age_days = atol(G(EC_AGE_DAYS)), .gender = G(EC_GENDER),
            .gestational_weeks = atoi(G(EC_WEEKS)), .languages = G(EC_LANGS),
            .conditions = G(EC_CONDS),
        };
        bool met = true;
        char err[128];
        /* An unparsable expression counts as met, as responses.c. */
        if (eligibility_criteria(G(EC_CRITERIA), &child, &met, err, sizeof err) < 0)
            met = true;
        unsigned f = eligibility_flags(child.age_days, &ages, met,
                                       apidoc_bool(res, i, EC_PARTICIPATION_OK));
        json_t *name = json_string(G(EC_NAME));
        apidoc_printf(&d, "%s{\"type\":\"eligibility\",\"id\":\"%s\",\"attributes\":"
                      "{\"given_name\":", n++ ? "," : "", G(EC_CHILD));
        if (name)
            apidoc_json(&d, name);
        else
            apidoc_add(&d, "\"\"");
        json_decref(name);
        apidoc_printf(&d, ",\"birthday\":\"%s\",\"age_days\":%ld,\"eligible\":%s,"
                      "\"too_young\":%s,\"too_old\":%s,\"criteria_not_met\":%s,"
                      "\"already_participated\":%s}}",
                      G(EC_BIRTHDAY), child.age_days, f ? "false" : "true",
                      f & ELIGIBILITY_TOO_YOUNG ? "true" : "false",
                      f & ELIGIBILITY_TOO_OLD ? "true" : "false",
                      f & ELIGIBILITY_CRITERIA ? "true" : "false",
                      f & ELIGIBILITY_PARTICIPATION ? "true" : "false");
#undef G
    }
    apidoc_add(&d, "]}");
    apidoc_reply(&d, req, 200);
}

static void eligibility_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24];

    if (!jsonapi_is_uuid(id)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id };
    if (pg_exec(app->pg, &eligibility_stmt, 2, params, eligibility_done, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- external studies ---------------------------------------------------- */

/* $1 study id, $2 child id, $3 preview: a response as upstream's external
 * study view makes one (no frames), with the parent's latest demographics. */
static const struct pg_stmt external_insert_stmt = {
    "participate_external_insert",
    "INSERT INTO responses (study_id, child_id, study_type, is_preview,"
    "                       demographic_snapshot_id)"
    " SELECT $1::bigint, c.id, 2, $3::boolean,"
    "        (SELECT d.id FROM demographic_data d WHERE d.user_id = c.user_id"
    "          ORDER BY d.created_at DESC, d.id DESC LIMIT 1)"
    "   FROM children c WHERE c.id = $2::bigint"
    " RETURNING uuid",
};

/* One external study's step in flight: the response's insert. */
struct external {
    struct http_req *req;        /* borrowed: answered exactly once */
    char study[37];
    char child[37];
    char salt[37];               /* the hash's secret */
    int hash_digits;
    char *url;                   /* owned: the study's address */
};

static void external_free(struct external *x)
{
    if (!x)
        return;
    free(x->url);
    free(x);
}

static void external_inserted(PGresult *res, void *arg)
{
    struct external *x = arg;
    struct http_req *req = x->req;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        if (res && !pg_ok(res))
            log_warn("participate: external insert: %s", PQresultErrorMessage(res));
        participate_unavailable_page(req);
        external_free(x);
        return;
    }
    char hash[ELIGIBILITY_HASH_MAX + 1];
    if (eligibility_hash_child_id(x->child, x->study, x->salt, x->hash_digits, hash,
                                  sizeof hash) < 0) {
        participate_unavailable_page(req);
        external_free(x);
        return;
    }
    char *loc = participate_external_location(x->url, hash, PQgetvalue(res, 0, 0));
    if (!loc) {
        participate_unavailable_page(req);
        external_free(x);
        return;
    }
    http_add_header(req, "Location", loc);
    http_add_header(req, "Cache-Control", "no-store");
    http_reply(req, 302, "text/plain; charset=utf-8", "", 0);
    free(loc);
    external_free(x);
}

void participate_external(struct http_req *req, struct app *app,
                          const struct participate_external_study *e)
{
    if (strncmp(e->url, "https://", 8) != 0 && strncmp(e->url, "http://", 7) != 0) {
        participate_page_error(req, 404, "This study is not ready",
                               "The study has no address to send you to yet.");
        return;
    }
    struct external *x = calloc(1, sizeof *x);
    if (!x || !(x->url = strdup(e->url))) {
        free(x);
        participate_unavailable_page(req);
        return;
    }
    x->req = req;
    snprintf(x->study, sizeof x->study, "%s", e->study);
    snprintf(x->child, sizeof x->child, "%s", e->child);
    snprintf(x->salt, sizeof x->salt, "%s", e->salt);
    x->hash_digits = e->hash_digits;
    const char *p[] = { e->study_id, e->child_id, e->preview ? "t" : "f" };
    if (pg_exec(app->pg, &external_insert_stmt, 3, p, external_inserted, x) < 0) {
        participate_unavailable_page(req);
        external_free(x);
    }
}

/* ---- jsPsych studies ----------------------------------------------------- */

void participate_jspsych(struct http_req *req, struct app *app)
{
    /* The platform's own page (static/studies/jspsych.html, our script
     * only, on the API's origin) runs the study's protocol as data; no
     * researcher code runs, so it needs no sandbox. */
    const struct static_file *f =
        app->site ? static_site_find(app->site, "/studies/jspsych.html") : NULL;

    if (!f) {
        participate_no_study(req);
        return;
    }
    http_add_header(req, "Cache-Control", "no-cache");
    http_reply(req, 200, f->type, (const char *)f->data, f->len);
}

/* ---- routes -------------------------------------------------------------- */

/* The runner's routes (participate_runner_routes) come right after these. */
static const struct route participate_route_table[] = {
    { HTTP_GET, "/api/v1/discover/", discover_list, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/discover/{id}/", discover_get, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/studies/{id}/eligibility/", eligibility_get, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/history/", history_list, ROUTE_FAMILY },
};

int participate_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, participate_route_table);
}
