/* Unit tests of log: levels by name, and the rate limit that a noisy loop
 * uses (at most N lines a second, then a count of what was dropped). */
#include <check.h>
#include <stdlib.h>
#include <unistd.h>

#include "studyhub/core/log.h"
#include "unit_main.h"

START_TEST(levels)
{
    enum log_level l;

    ck_assert_int_eq(log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert_int_eq(log_level_parse("info", &l), 0);
    ck_assert_int_eq(l, LOG_INFO);
    ck_assert_int_eq(log_level_parse("warn", &l), 0);
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert_int_eq(log_level_parse("error", &l), 0);
    ck_assert_int_eq(l, LOG_ERROR);
    ck_assert_int_ne(log_level_parse("loud", &l), 0);
    ck_assert_int_ne(log_level_parse("", &l), 0);
}
END_TEST

START_TEST(rate_limit)
{
    struct log_limit lim = { 0 };
    long suppressed = -1, reported = 0;
    int passed = 0;

    for (int i = 0; i < 100; i++)
        if (log_limit_pass(&lim, 5, &suppressed)) {
            passed++;
            reported += suppressed;
        }
    /* The 100 calls may straddle a second: at most two seconds' worth. */
    ck_assert_int_ge(passed, 5);
    ck_assert_int_le(passed, 10);
    sleep(2);
    ck_assert(log_limit_pass(&lim, 5, &suppressed));
    /* Every dropped line is counted once, in the next line that passes. */
    ck_assert_int_eq(reported + suppressed, 100 - passed);
    ck_assert(log_limit_pass(&lim, 5, &suppressed));
    ck_assert_int_eq(suppressed, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_add_test(tc, levels);
    tcase_add_test(tc, rate_limit);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
