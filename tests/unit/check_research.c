/* Unit tests of research's input checks: the management attributes of a
 * response and the attributes of a consent ruling. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/research.h"
#include "unit_main.h"

static json_t *obj(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(edit_accepts_the_three_fields)
{
    struct jsonapi_error e;
    json_t *a = obj("{\"researcher_payment_status\":\"paid\","
                    "\"researcher_session_status\":\"follow_up\",\"researcher_star\":true}");
    json_t *clean = NULL;

    ck_assert_int_eq(research_edit_attrs(a, &clean, &e), 0);
    ck_assert(json_equal(a, clean));
    json_decref(clean);
    json_decref(a);
}
END_TEST

START_TEST(edit_refuses_anything_else)
{
    static const char *bad[][2] = {
        { "{}", "/data/attributes" },
        { "{\"exp_data\":{}}", "/data/attributes/exp_data" },
        { "{\"researcher_star\":\"yes\"}", "/data/attributes/researcher_star" },
        { "{\"researcher_payment_status\":3}", "/data/attributes/researcher_payment_status" },
        { "{\"researcher_session_status\":null}", "/data/attributes/researcher_session_status" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jsonapi_error e;
        json_t *a = obj(bad[i][0]), *clean = (json_t *)1;
        ck_assert_int_eq(research_edit_attrs(a, &clean, &e), -1);
        ck_assert_ptr_null(clean);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.pointer, bad[i][1]);
        json_decref(a);
    }
}
END_TEST

START_TEST(edit_refuses_a_long_status)
{
    struct jsonapi_error e;
    char *long_s = malloc(RESEARCH_STATUS_MAX + 2);
    json_t *a = json_object(), *clean = NULL;

    memset(long_s, 'x', RESEARCH_STATUS_MAX + 1);
    long_s[RESEARCH_STATUS_MAX + 1] = '\0';
    json_object_set_new(a, "researcher_payment_status", json_string(long_s));
    ck_assert_int_eq(research_edit_attrs(a, &clean, &e), -1);
    long_s[RESEARCH_STATUS_MAX] = '\0';
    json_object_set_new(a, "researcher_payment_status", json_string(long_s));
    ck_assert_int_eq(research_edit_attrs(a, &clean, &e), 0);
    json_decref(clean);
    json_decref(a);
    free(long_s);
}
END_TEST

START_TEST(ruling_attrs)
{
    struct jsonapi_error e;
    const char *action, *comments;
    json_t *a = obj("{\"action\":\"accepted\",\"comments\":\"clear video\"}");

    ck_assert_int_eq(research_ruling_attrs(a, &action, &comments, &e), 0);
    ck_assert_str_eq(action, "accepted");
    ck_assert_str_eq(comments, "clear video");
    json_decref(a);

    a = obj("{\"action\":\"pending\"}");
    ck_assert_int_eq(research_ruling_attrs(a, &action, &comments, &e), 0);
    ck_assert_str_eq(comments, "");
    json_decref(a);

    static const char *bad[][3] = {
        { "{}", "/data/attributes/action", "required" },
        { "{\"action\":\"maybe\"}", "/data/attributes/action", "invalid" },
        { "{\"action\":1}", "/data/attributes/action", "invalid" },
        { "{\"action\":\"accepted\",\"comments\":7}", "/data/attributes/comments", "invalid" },
        { "{\"action\":\"accepted\",\"arbiter\":\"me\"}", "/data/attributes/arbiter", "invalid" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = obj(bad[i][0]);
        ck_assert_int_eq(research_ruling_attrs(a, &action, &comments, &e), -1);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.pointer, bad[i][1]);
        ck_assert_str_eq(e.code, bad[i][2]);
        json_decref(a);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("research");
    TCase *tc = tcase_create("research");
    tcase_add_test(tc, edit_accepts_the_three_fields);
    tcase_add_test(tc, edit_refuses_anything_else);
    tcase_add_test(tc, edit_refuses_a_long_status);
    tcase_add_test(tc, ruling_attrs);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
