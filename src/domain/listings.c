/* listings: the families' study lists by age group and by lab (see
 * listings.h).  Public: the statements show only active, public studies
 * and approved labs, the same as the discovery list (participate.c). */
#include "studyhub/domain/listings.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/io/pg.h"

/* Longest lab slug (labs.c's field limit). */
#define LISTINGS_SLUG_MAX 64

/* ---- age groups (pure, unit-tested) --------------------------------------- */

static const struct listings_age_group groups[] = {
    { "babies", "Babies (under 1)", 0, 1 },
    { "toddlers", "Toddlers (1 to 2)", 1, 3 },
    { "preschoolers", "Preschoolers (3 to 4)", 3, 5 },
    { "school-age", "School-age kids (5 to 17)", 5, 18 },
    { "adults", "Adults (18 and over)", 18, 999 },
};

#define NGROUPS ((int)(sizeof groups / sizeof groups[0]))

const struct listings_age_group *listings_age_groups(int *n)
{
    *n = NGROUPS;
    return groups;
}

const struct listings_age_group *listings_age_group(const char *slug)
{
    if (!slug)
        return NULL;
    for (int i = 0; i < NGROUPS; i++)
        if (strcmp(groups[i].slug, slug) == 0)
            return &groups[i];
    return NULL;
}

/* Upstream's overlap test; the SQL below says the same. */
int listings_study_in_group(const struct listings_age_group *g, long min_days,
                            long max_days)
{
    return min_days <= (long)g->hi_years * 365 && max_days >= (long)g->lo_years * 365;
}

/* A slug as labs.c accepts it: lower-case letters, digits and hyphens. */
static int slug_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > LISTINGS_SLUG_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* ---- statements ------------------------------------------------------------ */

#define AGE_DAYS(p) "(" p "years * 365 + " p "months * 30 + " p "days)"
/* The discovery list's attributes, and the lab's name and slug (a card
 * links to the lab's page). */
#define STUDY_ATTRS                                                           \
    "json_build_object('name', s.name, 'short_description', s.short_description," \
    " 'purpose', s.purpose, 'duration', s.duration,"                          \
    " 'compensation_description', s.compensation_description, 'image', s.image," \
    " 'min_age_days', " AGE_DAYS("s.min_age_") ","                            \
    " 'max_age_days', " AGE_DAYS("s.max_age_") ","                            \
    " 'lab_name', l.name, 'lab_slug', l.slug)"

/* $1 limit, $2 offset, $3 lowest day, $4 highest day of the group.  One
 * row at least: the count, then the page (NULL when empty). */
static const struct pg_stmt group_list_stmt = {
    "listings_age_group",
    "WITH vis AS ("
    "  SELECT s.id, s.date_modified FROM studies s"
    "   WHERE s.state = 'active' AND s.public"
    "     AND " AGE_DAYS("s.min_age_") " <= $4::integer"
    "     AND " AGE_DAYS("s.max_age_") " >= $3::integer)"
    " SELECT (SELECT count(*) FROM vis), p.uuid, p.attrs"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT s.uuid, " STUDY_ATTRS " AS attrs, v.date_modified, v.id"
    "       FROM (SELECT id, date_modified FROM vis"
    "              ORDER BY date_modified DESC, id DESC LIMIT $1 OFFSET $2) v"
    "       JOIN studies s ON s.id = v.id JOIN labs l ON l.id = s.lab_id) p ON true"
    "  ORDER BY p.date_modified DESC, p.id DESC",
};

/* $1 slug: the lab, when approved (an unapproved lab has no public page). */
static const struct pg_stmt lab_get_stmt = {
    "listings_lab",
    "SELECT l.uuid, json_build_object('name', l.name, 'slug', l.slug,"
    " 'institution', l.institution,"
    " 'principal_investigator_name', l.principal_investigator_name,"
    " 'contact_email', l.contact_email, 'lab_website', l.lab_website,"
    " 'description', l.description)"
    "  FROM labs l WHERE l.slug = $1 AND l.slug <> '' AND l.approved_to_test",
};

/* $1 limit, $2 offset, $3 slug.  As group_list_stmt, with a fourth
 * column: whether the lab exists (an unknown lab is a 404, not an empty
 * list). */
static const struct pg_stmt lab_list_stmt = {
    "listings_lab_studies",
    "WITH lab AS (SELECT id FROM labs WHERE slug = $3 AND slug <> '' AND approved_to_test),"
    " vis AS ("
    "  SELECT s.id, s.date_modified FROM studies s"
    "   WHERE s.state = 'active' AND s.public AND s.lab_id = (SELECT id FROM lab))"
    " SELECT (SELECT count(*) FROM vis), p.uuid, p.attrs, EXISTS (SELECT 1 FROM lab)"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT s.uuid, " STUDY_ATTRS " AS attrs, v.date_modified, v.id"
    "       FROM (SELECT id, date_modified FROM vis"
    "              ORDER BY date_modified DESC, id DESC LIMIT $1 OFFSET $2) v"
    "       JOIN studies s ON s.id = v.id JOIN labs l ON l.id = s.lab_id) p ON true"
    "  ORDER BY p.date_modified DESC, p.id DESC",
};

/* $1 slug: does the page have a lab (the page route's check). */
static const struct pg_stmt lab_exists_stmt = {
    "listings_lab_exists",
    "SELECT 1 FROM labs WHERE slug = $1 AND slug <> '' AND approved_to_test",
};

#define NOT_FOUND_LAB "No Lab matches the given query."
#define NOT_FOUND_GROUP "No age group matches the given query: use babies, toddlers, " \
                        "preschoolers, school-age or adults."

static void render_study(struct apidoc *d, const PGresult *res, int row, int col)
{
    apidoc_resource(d, "studies", res, row, col);
}

/* ---- API handlers ---------------------------------------------------------- */

static void h_groups(struct http_req *req, struct app *app)
{
    json_t *data = json_array();

    (void)app;
    for (int i = 0; data && i < NGROUPS; i++) {
        json_t *attrs = json_pack("{s:s, s:i, s:i}", "label", groups[i].label,
                                  "min_age_years", groups[i].lo_years,
                                  "max_age_years", groups[i].hi_years);
        json_t *r = attrs ? jsonapi_resource("age-groups", groups[i].slug, attrs, NULL, NULL) : NULL;
        if (!r || json_array_append_new(data, r) < 0) {
            json_decref(data);
            data = NULL;
        }
    }
    json_t *doc = data ? json_pack("{s:o}", "data", data) : NULL;
    if (!doc) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    http_add_header(req, "Cache-Control", "public, max-age=3600");
    jsonapi_reply(req, 200, doc);
}

static void group_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "listings_age_group", 1, render_study);
}

static void h_group_studies(struct http_req *req, struct app *app)
{
    const struct listings_age_group *g = listings_age_group(http_req_param(req, 0));
    char limit[24], offset[24], lo[24], hi[24];

    if (!g) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_GROUP);
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    snprintf(lo, sizeof lo, "%d", g->lo_years * 365);
    snprintf(hi, sizeof hi, "%d", g->hi_years * 365);
    const char *params[] = { limit, offset, lo, hi };
    if (pg_exec(app->pg, &group_list_stmt, 4, params, group_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void lab_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "listings_lab"))
        return;
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_LAB);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    apidoc_resource(&d, "lab-pages", res, 0, 0);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, 200);
}

static void h_lab(struct http_req *req, struct app *app)
{
    const char *slug = http_req_param(req, 0);

    if (!slug_ok(slug)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_LAB);
        return;
    }
    const char *params[] = { slug };
    if (pg_exec(app->pg, &lab_get_stmt, 1, params, lab_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void lab_listed(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (apidoc_db_failed(req, res, "listings_lab_studies"))
        return;
    if (PQntuples(res) < 1 || !apidoc_bool(res, 0, 3)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_LAB);
        return;
    }
    apidoc_reply_page(req, res, "listings_lab_studies", 1, render_study);
}

static void h_lab_studies(struct http_req *req, struct app *app)
{
    const char *slug = http_req_param(req, 0);
    char limit[24], offset[24];

    if (!slug_ok(slug)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_LAB);
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { limit, offset, slug };
    if (pg_exec(app->pg, &lab_list_stmt, 3, params, lab_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- the pages ------------------------------------------------------------- */

/* A page for an age group or lab that does not exist is the site's
 * readable 404 page, so a mistyped or old link says so at once. */
static void p_group(struct http_req *req, struct app *app)
{
    if (!listings_age_group(http_req_param(req, 0))) {
        static_not_found(req, app);
        return;
    }
    static_serve_page(req, app->site, "/ages/index.html");
}

struct lab_page {
    struct http_req *req;   /* borrowed: lives until replied */
    struct app *app;        /* borrowed */
};

static void lab_page_checked(PGresult *res, void *arg)
{
    struct lab_page *lp = arg;
    struct http_req *req = lp->req;
    struct app *app = lp->app;

    free(lp);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* The page asks the API again, which says what is wrong. */
        static_serve_page(req, app->site, "/labs/index.html");
        return;
    }
    if (PQntuples(res) != 1) {
        static_not_found(req, app);
        return;
    }
    static_serve_page(req, app->site, "/labs/index.html");
}

static void p_lab(struct http_req *req, struct app *app)
{
    const char *slug = http_req_param(req, 0);
    struct lab_page *lp;

    if (!slug_ok(slug)) {
        static_not_found(req, app);
        return;
    }
    if (!(lp = malloc(sizeof *lp))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    lp->req = req;
    lp->app = app;
    const char *params[] = { slug };
    if (pg_exec(app->pg, &lab_exists_stmt, 1, params, lab_page_checked, lp) < 0) {
        free(lp);
        jsonapi_reply_unavailable(req, "Database");
    }
}

static const struct route listings_route_table[] = {
    { HTTP_GET, "/api/v1/age-groups/", h_groups, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/age-groups/{group}/studies/", h_group_studies, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/lab-pages/{slug}/", h_lab, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/lab-pages/{slug}/studies/", h_lab_studies, ROUTE_PUBLIC },
    { HTTP_GET, "/ages/{group}/", p_group, ROUTE_PUBLIC },
    { HTTP_GET, "/labs/{slug}/", p_lab, ROUTE_PUBLIC },
};

int listings_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, listings_route_table);
}
