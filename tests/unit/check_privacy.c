/* Unit tests of domain/privacy through the HTTP stack (unit_app): a family
 * downloads its own data (a JSON attachment with every section, its child
 * in it, an access-log entry) and erases its own account (the report is
 * the reply; its tokens are deleted); someone else's id is a 404 for
 * both; a researcher's account is not erased this way (409). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/privacy.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { privacy_routes, NULL };

START_TEST(download_own_data)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    const struct unit_reply *r;
    char path[96];
    json_t *children;

    unit_child(u, ann, "Sally", 400, NULL);
    snprintf(path, sizeof path, "/api/v1/users/%s/data/", ann->uuid);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(r->json);
    ck_assert_ptr_nonnull(strstr(unit_reply_header(r, "Content-Disposition"), "attachment"));
    ck_assert_str_eq(unit_json(r, "format"), "studyhub-family-data-1");
    children = json_object_get(r->json, "children");
    ck_assert_int_eq((int)json_array_size(children), 1);
    ck_assert_ptr_nonnull(strstr(r->body, "\"Sally\""));
    ck_assert_int_eq((int)json_array_size(json_object_get(r->json, "account")), 1);
    ck_assert(json_is_array(json_object_get(r->json, "videos")));

    snprintf(path, sizeof path, "/api/v1/users/%s/data/", bob->uuid);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No User matches the given query.");
    r = unit_req(u, NULL, "GET", path, NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(erase_own_account)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    const struct unit_reply *r;
    char path[96];

    unit_child(u, ann, "Sally", 400, NULL);
    snprintf(path, sizeof path, "/api/v1/users/%s/", ann->uuid);
    r = unit_req(u, bob, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_sql(u, "SELECT is_active FROM users WHERE id = %lld",
                              (long long)ann->id), "t");

    r = unit_req(u, ann, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.type"), "erasures");
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM children WHERE user_id = %lld"
                              " AND NOT deleted", (long long)ann->id), "0");
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM users WHERE id = %lld AND is_active"
                              " AND email = '%s'", (long long)ann->id, ann->email), "0");
    /* Its tokens are gone (the other servers' caches hear it by NOTIFY). */
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM api_tokens WHERE user_id = %lld",
                              (long long)ann->id), "0");
    /* ... and this server's cache forgot it at once: the next request with
     * the token, cached by the DELETE's own lookup, is refused. */
    char data[128];
    snprintf(data, sizeof data, "/api/v1/users/%s/data/", ann->uuid);
    r = unit_req(u, ann, "GET", data, NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(researcher_account_is_not_erased_here)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    const struct unit_reply *r;
    char path[96];

    snprintf(path, sizeof path, "/api/v1/users/%s/", res->uuid);
    r = unit_req(u, res, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 409);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "conflict");
    ck_assert_str_eq(unit_sql(u, "SELECT is_active FROM users WHERE id = %lld",
                              (long long)res->id), "t");
    unit_app_stop(u);
}
END_TEST

static Suite *privacy_suite(void)
{
    Suite *s = suite_create("privacy");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, download_own_data);
    tcase_add_test(tc, erase_own_account);
    tcase_add_test(tc, researcher_account_is_not_erased_here);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_privacy", privacy_suite());
}
