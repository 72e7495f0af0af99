/* Unit tests of useradmin's input check: the attributes a site admin may
 * change on an account (three booleans, nothing else). */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/useradmin.h"
#include "studyhub/http/jsonapi.h"
#include "unit_main.h"

static json_t *obj(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(accepts_the_three_roles)
{
    struct jsonapi_error e;
    json_t *a = obj("{\"is_active\":false,\"is_researcher\":true,\"is_site_admin\":false}");
    json_t *clean = NULL;

    ck_assert_int_eq(useradmin_attrs_check(a, &clean, &e), 0);
    ck_assert(json_equal(a, clean));
    json_decref(clean);
    json_decref(a);
}
END_TEST

START_TEST(accepts_one_alone)
{
    struct jsonapi_error e;
    json_t *a = obj("{\"is_researcher\":true}");
    json_t *clean = NULL;

    ck_assert_int_eq(useradmin_attrs_check(a, &clean, &e), 0);
    ck_assert_int_eq(json_object_size(clean), 1);
    ck_assert(json_is_true(json_object_get(clean, "is_researcher")));
    json_decref(clean);
    json_decref(a);
}
END_TEST

START_TEST(refuses_anything_else)
{
    static const char *bad[][3] = {
        { "{}", "/data/attributes", "required" },
        { "[]", "/data/attributes", "invalid" },
        { "{\"email\":\"x@example.test\"}", "/data/attributes/email", "invalid" },
        { "{\"is_active\":\"false\"}", "/data/attributes/is_active", "invalid" },
        { "{\"is_researcher\":1}", "/data/attributes/is_researcher", "invalid" },
        { "{\"is_site_admin\":null}", "/data/attributes/is_site_admin", "invalid" },
        { "{\"is_researcher\":true,\"password\":\"x\"}", "/data/attributes/password", "invalid" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct jsonapi_error e;
        json_t *a = obj(bad[i][0]);
        json_t *clean = (json_t *)1;

        ck_assert_int_eq(useradmin_attrs_check(a, &clean, &e), -1);
        ck_assert_ptr_null(clean);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.pointer, bad[i][1]);
        ck_assert_str_eq(e.code, bad[i][2]);
        json_decref(a);
    }
}
END_TEST

START_TEST(no_attributes_at_all)
{
    struct jsonapi_error e;
    json_t *clean = (json_t *)1;

    ck_assert_int_eq(useradmin_attrs_check(NULL, &clean, &e), -1);
    ck_assert_ptr_null(clean);
    ck_assert_int_eq(e.status, 400);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("useradmin");
    TCase *tc = tcase_create("attrs");

    tcase_add_test(tc, accepts_the_three_roles);
    tcase_add_test(tc, accepts_one_alone);
    tcase_add_test(tc, refuses_anything_else);
    tcase_add_test(tc, no_attributes_at_all);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
