/* Unit tests of domain/perms through the HTTP stack (unit_app): GET
 * /api/v1/researcher/permissions/ lists what the caller holds site-wide,
 * on a study and on a lab; a study or lab the caller cannot see is a 404;
 * both at once is a 400; the gate wants two-factor.  The verdict-to-status
 * rule itself (404/403/409) is held by the handlers' tests (studymgmt,
 * labs). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/perms.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { perms_routes, NULL };

/* Whether the reply's granted list holds name. */
static bool granted(const struct unit_reply *r, const char *name)
{
    json_t *list = unit_json_at(r->json, "data.attributes.granted");
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    return false;
}

START_TEST(held_by_scope)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *site = unit_user(u, "site", UNIT_SITE_ADMIN);
    const struct unit_reply *r;
    char lab[37], study[37], path[128];
    int64_t lab_id = unit_lab(u, "lab", lab);
    int64_t study_id = unit_study(u, lab_id, "created", false, study);

    unit_study_member(u, study_id, res, "analysis");
    unit_lab_member(u, lab_id, res, "guest");

    r = unit_req(u, res, "GET", "/api/v1/researcher/permissions/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.scope"), "site");
    ck_assert(granted(r, "create_lab"));
    ck_assert(!granted(r, "can_read_all_user_data"));
    r = unit_req(u, site, "GET", "/api/v1/researcher/permissions/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert(granted(r, "can_read_all_user_data"));

    snprintf(path, sizeof path, "/api/v1/researcher/permissions/?study=%s", study);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), study);
    ck_assert_str_eq(unit_json(r, "data.attributes.scope"), "study");
    ck_assert(granted(r, "read_study__responses"));
    ck_assert(!granted(r, "edit_study__admin__user_set"));
    ck_assert(!granted(r, "create_lab"));          /* only study permissions here */

    snprintf(path, sizeof path, "/api/v1/researcher/permissions/?lab=%s", lab);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.scope"), "lab");
    ck_assert(granted(r, "associate_lab__study"));
    ck_assert(!granted(r, "edit_lab__groups"));
    unit_app_stop(u);
}
END_TEST

START_TEST(unseen_scopes_and_bad_queries)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *lax = unit_user(u, "lax", UNIT_RESEARCHER | UNIT_NO_MFA);
    const struct unit_reply *r;
    char study[37], lab[37], path[160];
    int64_t lab_id = unit_lab(u, "lab", lab);

    unit_study(u, lab_id, "created", false, study);
    unit_sql(u, "UPDATE labs SET approved_to_test = false WHERE id = %lld", (long long)lab_id);
    snprintf(path, sizeof path, "/api/v1/researcher/permissions/?study=%s", study);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Study matches the given query.");
    snprintf(path, sizeof path, "/api/v1/researcher/permissions/?lab=%s", lab);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Lab matches the given query.");
    r = unit_req(u, res, "GET", "/api/v1/researcher/permissions/?study=12", NULL);
    ck_assert_int_eq(r->status, 404);
    snprintf(path, sizeof path, "/api/v1/researcher/permissions/?study=%s&lab=%s", study, lab);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 400);
    r = unit_req(u, lax, "GET", "/api/v1/researcher/permissions/", NULL);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "two_factor_required");
    r = unit_req(u, NULL, "GET", "/api/v1/researcher/permissions/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

static Suite *perms_suite(void)
{
    Suite *s = suite_create("perms");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, held_by_scope);
    tcase_add_test(tc, unseen_scopes_and_bad_queries);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_perms", perms_suite());
}
