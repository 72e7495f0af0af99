/* Unit tests of domain/users through the HTTP stack (unit_app): a family
 * reads its own user, children and demographics; someone else's are a
 * 404 (never said to exist); a site admin, two-factor verified, reads
 * anyone's, and without two-factor only their own; labs are listed for
 * any caller; pages and bad ids. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/users.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { users_routes, NULL };

START_TEST(own_records)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char child[37], path[128];

    unit_child(u, ann, "Sally", 300, child);
    r = unit_req(u, ann, "GET", "/api/v1/users/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.id"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "data.0.attributes.given_name"), "ann");

    snprintf(path, sizeof path, "/api/v1/users/%s/", ann->uuid);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.type"), "users");
    snprintf(path, sizeof path, "/api/v1/users/%s/children/", ann->uuid);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.id"), child);

    unit_sql(u, "INSERT INTO demographic_data (user_id, country) VALUES (%lld, 'US')",
             (long long)ann->id);
    snprintf(path, sizeof path, "/api/v1/users/%s/demographics/", ann->uuid);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.0.attributes.country"), "US");
    unit_app_stop(u);
}
END_TEST

START_TEST(others_need_the_permission_and_two_factor)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    struct unit_user *admin = unit_user(u, "admin", UNIT_SITE_ADMIN);
    struct unit_user *lax = unit_user(u, "lax", UNIT_SITE_ADMIN | UNIT_NO_MFA);
    const struct unit_reply *r;
    char path[128];

    snprintf(path, sizeof path, "/api/v1/users/%s/", ann->uuid);
    r = unit_req(u, bob, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No User matches the given query.");
    snprintf(path, sizeof path, "/api/v1/users/%s/children/", ann->uuid);
    r = unit_req(u, bob, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);

    snprintf(path, sizeof path, "/api/v1/users/%s/", ann->uuid);
    r = unit_req(u, admin, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);
    /* The same admin's token without two-factor: only their own. */
    r = unit_req(u, lax, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, lax, "GET", "/api/v1/users/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.id"), lax->uuid);
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_ids_pages_and_labs)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char lab[37], path[128];

    r = unit_req(u, ann, "GET", "/api/v1/users/nope/", NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, ann, "GET", "/api/v1/demographics/00000000-0000-4000-8000-000000000000/", NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"),
                     "No DemographicData matches the given query.");
    r = unit_req(u, ann, "GET", "/api/v1/users/?page=abc", NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, ann, "GET", "/api/v1/users/?page=2", NULL);
    ck_assert_int_eq(r->status, 404);

    unit_lab(u, "lab", lab);
    snprintf(path, sizeof path, "/api/v1/labs/%s/", lab);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.type"), "labs");
    ck_assert_str_eq(unit_json(r, "data.id"), lab);
    r = unit_req(u, NULL, "GET", path, NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

static Suite *users_suite(void)
{
    Suite *s = suite_create("users");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, own_records);
    tcase_add_test(tc, others_need_the_permission_and_two_factor);
    tcase_add_test(tc, bad_ids_pages_and_labs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_users", users_suite());
}
