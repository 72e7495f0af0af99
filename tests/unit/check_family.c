/* Unit tests of domain/family through the HTTP stack (unit_app): the
 * demographics snapshots (each save a new one; current is the newest; a
 * bad answer is a 400 and saves nothing), and the user's own profile
 * (names and email preferences; anyone else's id is a 404). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/family.h"
#include "studyhub/domain/users.h"
#include "unit_app.h"

/* As studyhub.c: family's before users', for demographics/current/. */
static const unit_routes_fn routes[] = { family_routes, users_routes, NULL };

START_TEST(demographics_snapshots)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    const struct unit_reply *r;
    char first[37];

    r = unit_req(u, ann, "GET", "/api/v1/demographics/current/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data"), "null");

    r = unit_req(u, ann, "POST", "/api/v1/demographics/",
                 "{\"data\": {\"type\": \"demographics\", \"attributes\": {"
                 "\"number_of_children\": \"2\", \"country\": \"US\","
                 " \"us_race_ethnicity_identification\": [\"white\", \"asian\"]}}}");
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.type"), "demographics");
    ck_assert_str_eq(unit_json(r, "data.attributes.number_of_children"), "2");
    snprintf(first, sizeof first, "%s", unit_json(r, "data.id"));

    /* A second save is a new snapshot; a field not given is unanswered. */
    r = unit_req(u, ann, "POST", "/api/v1/demographics/",
                 "{\"data\": {\"type\": \"demographics\", \"attributes\": {\"state\": \"MA\"}}}");
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_ne(unit_json(r, "data.id"), first);
    r = unit_req(u, ann, "GET", "/api/v1/demographics/current/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.state"), "MA");
    ck_assert_str_eq(unit_json(r, "data.attributes.number_of_children"), "");
    ck_assert_int_eq(unit_sql_int(u, "SELECT count(*) FROM demographic_data WHERE user_id = %lld",
                                  (long long)ann->id), 2);
    /* Bob's current is still none. */
    r = unit_req(u, bob, "GET", "/api/v1/demographics/current/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data"), "null");
    r = unit_req(u, NULL, "GET", "/api/v1/demographics/current/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_demographics_save_nothing)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;

    /* A choice not offered, a country of three letters. */
    r = unit_req(u, ann, "POST", "/api/v1/demographics/",
                 "{\"data\": {\"type\": \"demographics\", \"attributes\": {"
                 "\"number_of_children\": \"eleven\", \"country\": \"USA\"}}}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_nerrors(r), 2);
    ck_assert(unit_has_error(r, "/data/attributes/number_of_children"));
    ck_assert(unit_has_error(r, "/data/attributes/country"));
    /* A list where a list of choices is wanted holds a number. */
    r = unit_req(u, ann, "POST", "/api/v1/demographics/",
                 "{\"data\": {\"type\": \"demographics\", \"attributes\": {"
                 "\"us_race_ethnicity_identification\": [1]}}}");
    ck_assert_int_eq(r->status, 400);
    r = unit_req(u, ann, "POST", "/api/v1/demographics/", "not json");
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_sql_int(u, "SELECT count(*) FROM demographic_data WHERE user_id = %lld",
                                  (long long)ann->id), 0);
    unit_app_stop(u);
}
END_TEST

START_TEST(own_profile_only)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    const struct unit_reply *r;
    char path[96], body[512];

    snprintf(path, sizeof path, "/api/v1/users/%s/", ann->uuid);
    snprintf(body, sizeof body,
             "{\"data\": {\"type\": \"users\", \"id\": \"%s\", \"attributes\": {"
             "\"nickname\": \"Annie\", \"email_new_studies\": false}}}", ann->uuid);
    r = unit_req(u, ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "data.attributes.nickname"), "Annie");
    ck_assert_str_eq(unit_sql(u, "SELECT nickname || ' ' || email_new_studies FROM users"
                              " WHERE id = %lld", (long long)ann->id), "Annie false");

    /* Bob cannot write Ann's profile: 404, as for a user he cannot see. */
    r = unit_req(u, bob, "PATCH", path, body);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No User matches the given query.");
    /* A boolean that is a string; a read-only field is ignored. */
    snprintf(body, sizeof body,
             "{\"data\": {\"type\": \"users\", \"id\": \"%s\", \"attributes\": {"
             "\"email_next_session\": \"yes\"}}}", ann->uuid);
    r = unit_req(u, ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"),
                     "/data/attributes/email_next_session");
    snprintf(body, sizeof body,
             "{\"data\": {\"type\": \"users\", \"id\": \"%s\", \"attributes\": {"
             "\"is_researcher\": true}}}", ann->uuid);
    r = unit_req(u, ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_sql(u, "SELECT is_researcher FROM users WHERE id = %lld",
                              (long long)ann->id), "f");
    unit_app_stop(u);
}
END_TEST

static Suite *family_suite(void)
{
    Suite *s = suite_create("family");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, demographics_snapshots);
    tcase_add_test(tc, bad_demographics_save_nothing);
    tcase_add_test(tc, own_profile_only);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_family", family_suite());
}
