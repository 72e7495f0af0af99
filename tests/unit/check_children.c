/* Unit tests of domain/children through the HTTP stack (unit_app): a
 * family lists, reads, adds, changes and removes its own children; another
 * family's child is a 404 for each; a bad document is a 400 naming the
 * field; no credentials are a 401. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/children.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { children_routes, NULL };

START_TEST(list_and_get_own_children)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    char mine[37], theirs[37], path[96];
    const struct unit_reply *r;

    unit_child(u, ann, "Sally", 400, mine);
    unit_child(u, bob, "Tom", 500, theirs);
    r = unit_req(u, ann, "GET", "/api/v1/children/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.id"), mine);
    ck_assert_str_eq(unit_json(r, "data.0.attributes.given_name"), "Sally");

    snprintf(path, sizeof path, "/api/v1/children/%s/", mine);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.type"), "children");
    ck_assert_str_eq(unit_json(r, "data.id"), mine);

    /* Another family's child, and no child at all: the same 404. */
    snprintf(path, sizeof path, "/api/v1/children/%s/", theirs);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Child matches the given query.");
    r = unit_req(u, ann, "GET", "/api/v1/children/not-a-uuid/", NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, NULL, "GET", "/api/v1/children/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(create_update_delete)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    const struct unit_reply *r;
    char uuid[37], path[96];

    ann->use_session = true;           /* the pages' way: cookie and CSRF */
    r = unit_req(u, ann, "POST", "/api/v1/children/",
                 "{\"data\": {\"type\": \"children\", \"attributes\": {\"given_name\": \"Max\","
                 " \"birthday\": \"2024-01-02\", \"gender\": \"m\","
                 " \"language_list\": \"en fr\"}}}");
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.attributes.given_name"), "Max");
    ck_assert_str_eq(unit_json(r, "data.attributes.birthday"), "2024-01-02");
    snprintf(uuid, sizeof uuid, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_sql(u, "SELECT array_to_string(languages_spoken, ',') FROM children"
                              " WHERE uuid = '%s' AND user_id = %lld", uuid, (long long)ann->id),
                     "en,fr");

    snprintf(path, sizeof path, "/api/v1/children/%s/", uuid);
    r = unit_req(u, ann, "PATCH", path,
                 "{\"data\": {\"type\": \"children\", \"id\": \"00000000-0000-0000-0000-000000000000\","
                 " \"attributes\": {\"given_name\": \"Maxi\"}}}");
    ck_assert_int_eq(r->status, 409);  /* the id must be the URL's */
    char body[256];
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"children\", \"id\": \"%s\","
             " \"attributes\": {\"given_name\": \"Maxi\"}}}", uuid);
    r = unit_req(u, ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.given_name"), "Maxi");
    ck_assert_str_eq(unit_json(r, "data.attributes.gender"), "m");   /* unchanged */

    /* Bob can neither change nor remove it. */
    r = unit_req(u, bob, "PATCH", path, body);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, bob, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_sql(u, "SELECT deleted FROM children WHERE uuid = '%s'", uuid), "f");

    r = unit_req(u, ann, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 204);
    r = unit_req(u, ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_documents)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;

    r = unit_req(u, ann, "POST", "/api/v1/children/", "{\"data\": ");
    ck_assert_int_eq(r->status, 400);
    /* A birthday in the future and a gender not offered: one error each. */
    r = unit_req(u, ann, "POST", "/api/v1/children/",
                 "{\"data\": {\"type\": \"children\", \"attributes\": {\"given_name\": \"Max\","
                 " \"birthday\": \"2999-01-01\", \"gender\": \"x\"}}}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_nerrors(r), 2);
    ck_assert(unit_has_error(r, "/data/attributes/birthday"));
    ck_assert(unit_has_error(r, "/data/attributes/gender"));
    /* given_name missing; gestational age a string. */
    r = unit_req(u, ann, "POST", "/api/v1/children/",
                 "{\"data\": {\"type\": \"children\", \"attributes\": {"
                 " \"birthday\": \"2020-01-01\", \"gender\": \"f\","
                 " \"gestational_age_at_birth\": \"forty\"}}}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_nerrors(r), 2);
    ck_assert(unit_has_error(r, "/data/attributes/gestational_age_at_birth"));
    ck_assert(unit_has_error(r, "/data/attributes/given_name"));
    r = unit_req(u, ann, "POST", "/api/v1/children/",
                 "{\"data\": {\"type\": \"users\", \"attributes\": {}}}");
    ck_assert_int_eq(r->status, 409);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM children WHERE user_id = %lld",
                              (long long)ann->id), "0");
    unit_app_stop(u);
}
END_TEST

START_TEST(session_write_needs_csrf)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char cookie[160];

    snprintf(cookie, sizeof cookie, "Cookie: sessionid=%s; csrftoken=abc\nX-CSRFToken: abd",
             ann->session);
    r = unit_req_h(u, NULL, "POST", "/api/v1/children/", cookie,
                   "{\"data\": {\"type\": \"children\", \"attributes\": {}}}");
    ck_assert_int_eq(r->status, 403);
    ck_assert_ptr_nonnull(strstr(unit_json(r, "errors.0.detail"), "CSRF Failed"));
    unit_app_stop(u);
}
END_TEST

static Suite *children_suite(void)
{
    Suite *s = suite_create("children");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, list_and_get_own_children);
    tcase_add_test(tc, create_update_delete);
    tcase_add_test(tc, bad_documents);
    tcase_add_test(tc, session_write_needs_csrf);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_children", children_suite());
}
