/* Unit tests of domain/studies through the HTTP stack (unit_app): an
 * active study is read by any family, with an ETag that a conditional GET
 * answers with 304; a study not yet active is a 404 to a family and to a
 * researcher of it without two-factor, and readable to one with it; the
 * list shows public active studies and leaves the rest out. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/studies.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { studies_routes, NULL };

START_TEST(active_study_and_its_etag)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char study[37], path[96], etag[128], hdr[160];

    unit_study(u, unit_lab(u, "lab", NULL), "active", true, study);
    snprintf(path, sizeof path, "/api/v1/studies/%s/", study);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), study);
    ck_assert_str_eq(unit_json(r, "data.attributes.contact_info"), "Jane Smith");
    ck_assert_ptr_nonnull(unit_reply_header(r, "ETag"));
    snprintf(etag, sizeof etag, "%s", unit_reply_header(r, "ETag"));

    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    r = unit_req_h(u, ann, "GET", path, hdr, NULL);
    ck_assert_int_eq(r->status, 304);
    ck_assert_int_eq((int)r->len, 0);
    /* Served again (from the cache now): the same document. */
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_reply_header(r, "ETag"), etag);

    r = unit_req(u, NULL, "GET", path, NULL);
    ck_assert_int_eq(r->status, 401);
    r = unit_req(u, ann, "GET", "/api/v1/studies/00000000-0000-4000-8000-000000000000/", NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, ann, "GET", "/api/v1/studies/1/", NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);
}
END_TEST

START_TEST(study_not_active_needs_permission_and_two_factor)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *lax = unit_user(u, "lax", UNIT_RESEARCHER | UNIT_NO_MFA);
    const struct unit_reply *r;
    char study[37], path[96];
    int64_t id = unit_study(u, unit_lab(u, "lab", NULL), "created", false, study);

    unit_study_member(u, id, res, "researcher");
    unit_study_member(u, id, lax, "researcher");
    snprintf(path, sizeof path, "/api/v1/studies/%s/", study);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Study matches the given query.");
    r = unit_req(u, lax, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), study);
    unit_app_stop(u);
}
END_TEST

START_TEST(list_public_active)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char shown[37], hidden[37], created[37];
    int64_t lab = unit_lab(u, "lab", NULL);

    unit_study(u, lab, "active", false, hidden);     /* by link only */
    unit_study(u, lab, "created", true, created);
    unit_study(u, lab, "active", true, shown);
    r = unit_req(u, ann, "GET", "/api/v1/studies/?page_size=100", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert(unit_data_has(r, shown));
    ck_assert(!unit_data_has(r, hidden));
    ck_assert(!unit_data_has(r, created));
    ck_assert_str_eq(unit_json(r, "data.0.type"), "studies");
    r = unit_req(u, ann, "GET", "/api/v1/studies/?page_size=0", NULL);
    ck_assert_int_eq(r->status, 400);
    unit_app_stop(u);
}
END_TEST

static Suite *studies_suite(void)
{
    Suite *s = suite_create("studies");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, active_study_and_its_etag);
    tcase_add_test(tc, study_not_active_needs_permission_and_two_factor);
    tcase_add_test(tc, list_public_active);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_studies", studies_suite());
}
