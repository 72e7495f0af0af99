/* Unit tests of adminview's ?state= filter of the admin task list. */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "studyhub/domain/adminview.h"
#include "unit_main.h"

START_TEST(active_by_default)
{
    enum adminview_filter f = ADMINVIEW_ALL;

    ck_assert_int_eq(adminview_parse_filter(NULL, &f), 0);
    ck_assert_int_eq(f, ADMINVIEW_ACTIVE);
    f = ADMINVIEW_ALL;
    ck_assert_int_eq(adminview_parse_filter("", &f), 0);
    ck_assert_int_eq(f, ADMINVIEW_ACTIVE);
}
END_TEST

START_TEST(the_three_names)
{
    enum adminview_filter f;

    ck_assert_int_eq(adminview_parse_filter("active", &f), 0);
    ck_assert_int_eq(f, ADMINVIEW_ACTIVE);
    ck_assert_int_eq(adminview_parse_filter("finished", &f), 0);
    ck_assert_int_eq(f, ADMINVIEW_FINISHED);
    ck_assert_int_eq(adminview_parse_filter("all", &f), 0);
    ck_assert_int_eq(f, ADMINVIEW_ALL);
}
END_TEST

START_TEST(refuses_others)
{
    enum adminview_filter f = ADMINVIEW_FINISHED;

    ck_assert_int_eq(adminview_parse_filter("running", &f), -1);
    ck_assert_int_eq(adminview_parse_filter("ALL", &f), -1);
    ck_assert_int_eq(adminview_parse_filter("active ", &f), -1);
    ck_assert_int_eq(f, ADMINVIEW_FINISHED);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("adminview");
    TCase *tc = tcase_create("filter");

    tcase_add_test(tc, active_by_default);
    tcase_add_test(tc, the_three_names);
    tcase_add_test(tc, refuses_others);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
