/* Unit tests of eligibility: the age range in upstream's 365/30-day units,
 * the criteria-expression grammar, the flags and their text[] literal, and
 * the hashed child id (runner-api.md section 4's worked example). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/eligibility.h"
#include "unit_main.h"

#define EX_CHILD "26edcab0-b578-49e4-9ef3-6f9e5ee32642"
#define EX_STUDY "c39fc4e9-0084-4efb-9db1-ea596c946108"
#define EX_SALT "88b9d333-852d-42a2-8352-3027354ee136"

START_TEST(hash_worked_example)
{
    char out[64];
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 6, out,
                                               sizeof out), 0);
    ck_assert_str_eq(out, "2Y7W5d");
    /* Every character of the digest, with both I->c and O->d applied
     * (re-computed with Python's base64.b32encode). */
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 52, out,
                                               sizeof out), 0);
    ck_assert_str_eq(out, "2Y7W5dLXYFCXRXKG3GEGMcVZNCZLFZ6AHPVWRDMQX2C5XZ5W7YKA");
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 1, out,
                                               sizeof out), 0);
    ck_assert_str_eq(out, "2");
    /* Upper-case uuids are the same ids. */
    ck_assert_int_eq(eligibility_hash_child_id("26EDCAB0-B578-49E4-9EF3-6F9E5EE32642",
                                               EX_STUDY, EX_SALT, 6, out, sizeof out), 0);
    ck_assert_str_eq(out, "2Y7W5d");
    ck_assert_int_eq(eligibility_hash_child_id("00000000-0000-0000-0000-000000000000",
                                               "00000000-0000-0000-0000-000000000000",
                                               "00000000-0000-0000-0000-000000000000",
                                               52, out, sizeof out), 0);
    ck_assert_str_eq(out, "G5DQR77XdGd5LF46ZB25K3GSFBXW2PHX5QYXUdZFMMVKWKHMG65Q");
}
END_TEST

START_TEST(hash_rejects_bad_input)
{
    char out[64];
    ck_assert_int_eq(eligibility_hash_child_id("nope", EX_STUDY, EX_SALT, 6, out, sizeof out), -1);
    ck_assert_int_eq(eligibility_hash_child_id("26edcab0b57849e49ef36f9e5ee32642xxxx", EX_STUDY,
                                               EX_SALT, 6, out, sizeof out), -1);
    ck_assert_int_eq(eligibility_hash_child_id("26edcab0-b578-49e4-9ef3-6f9e5ee3264g", EX_STUDY,
                                               EX_SALT, 6, out, sizeof out), -1);
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 0, out, sizeof out), -1);
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 53, out, sizeof out), -1);
    ck_assert_int_eq(eligibility_hash_child_id(EX_CHILD, EX_STUDY, EX_SALT, 6, out, 6), -1);
    ck_assert_int_eq(eligibility_hash_child_id(NULL, EX_STUDY, EX_SALT, 6, out, sizeof out), -1);
}
END_TEST

START_TEST(age_range)
{
    /* 6 months to 1 year 2 months: 180 .. 425 days. */
    struct eligibility_ages a = { 0, 6, 0, 1, 2, 0 };
    ck_assert_int_eq(eligibility_limit_days(1, 2, 3), 365 + 60 + 3);
    ck_assert_int_eq(eligibility_age_difference(100, &a), -80);
    ck_assert_int_eq(eligibility_age_difference(180, &a), 0);   /* inclusive */
    ck_assert_int_eq(eligibility_age_difference(181, &a), 0);
    ck_assert_int_eq(eligibility_age_difference(425, &a), 0);   /* inclusive */
    ck_assert_int_eq(eligibility_age_difference(430, &a), 5);
    ck_assert_uint_eq(eligibility_flags(100, &a, true, true), ELIGIBILITY_TOO_YOUNG);
    ck_assert_uint_eq(eligibility_flags(500, &a, true, true), ELIGIBILITY_TOO_OLD);
    ck_assert_uint_eq(eligibility_flags(200, &a, true, true), 0);
    ck_assert_uint_eq(eligibility_flags(200, &a, false, false),
                      ELIGIBILITY_CRITERIA | ELIGIBILITY_PARTICIPATION);
    /* All limits zero: only a newborn is in range, as upstream. */
    struct eligibility_ages zero = { 0 };
    ck_assert_uint_eq(eligibility_flags(0, &zero, true, true), 0);
    ck_assert_uint_eq(eligibility_flags(3, &zero, true, true), ELIGIBILITY_TOO_OLD);
}
END_TEST

START_TEST(pg_array)
{
    char buf[128];
    ck_assert_str_eq(eligibility_pg_array(0, buf, sizeof buf), "{Eligible}");
    ck_assert_str_eq(eligibility_pg_array(ELIGIBILITY_TOO_OLD, buf, sizeof buf),
                     "{Ineligible_TooOld}");
    ck_assert_str_eq(eligibility_pg_array(ELIGIBILITY_TOO_YOUNG | ELIGIBILITY_PARTICIPATION |
                                          ELIGIBILITY_CRITERIA, buf, sizeof buf),
                     "{Ineligible_CriteriaExpression,Ineligible_Participation,"
                     "Ineligible_TooYoung}");
}
END_TEST

static bool eval(const char *expr, const struct eligibility_child *c)
{
    bool r = false;
    char err[128];
    ck_assert_msg(eligibility_criteria(expr, c, &r, err, sizeof err) == 0,
                  "parse of \"%s\" failed: %s", expr, err);
    return r;
}

static bool parses(const char *expr, const struct eligibility_child *c)
{
    bool r;
    char err[128];
    return eligibility_criteria(expr, c, &r, err, sizeof err) == 0;
}

START_TEST(criteria)
{
    struct eligibility_child c = { .age_days = 400, .gender = "f",
                                   .gestational_weeks = 38, .languages = "en fr",
                                   .conditions = "autism_spectrum_disorder" };
    struct eligibility_child u = { .age_days = 10, .gender = "na",
                                   .gestational_weeks = 0, .languages = "",
                                   .conditions = "" };

    ck_assert(eval("", &c));
    ck_assert(eval("   ", &c));
    ck_assert(eval("gender = f", &c));
    ck_assert(eval("gender = Female", &c));
    ck_assert(!eval("gender = m", &c));
    ck_assert(eval("gender != male", &c));
    ck_assert(eval("gender = na", &u));
    ck_assert(eval("age_in_days >= 400", &c));
    ck_assert(!eval("age_in_days < 400", &c));
    ck_assert(eval("age_in_days<=400 AND age_in_days>399", &c));
    ck_assert(eval("speaks_en", &c));
    ck_assert(!eval("speaks_de", &c));
    ck_assert(eval("n_languages = 2 AND num_languages > 1", &c));
    ck_assert(eval("autism_spectrum_disorder", &c));
    ck_assert(!eval("deaf", &c));
    ck_assert(eval("NOT deaf", &c));
    ck_assert(eval("gestational_age_in_weeks >= 37", &c));
    ck_assert(!eval("gestational_age_in_weeks >= 37", &u));   /* unknown: not met */
    ck_assert(eval("gestational_age_in_weeks = na", &u));
    ck_assert(eval("gestational_age_in_weeks != n/a", &c));
    ck_assert(!eval("gestational_age_in_weeks < na", &u));
    /* AND binds tighter than OR; parentheses; NOT of a group. */
    ck_assert(eval("speaks_de AND deaf OR speaks_en", &c));
    ck_assert(!eval("speaks_de AND (deaf OR speaks_en)", &c));
    ck_assert(eval("NOT (speaks_de OR deaf) AND gender = f", &c));
    ck_assert(eval("((((speaks_fr))))", &c));

    ck_assert(!parses("gender =", &c));
    ck_assert(!parses("gender < f", &c));
    ck_assert(!parses("gender = robot", &c));
    ck_assert(!parses("age_in_days > x", &c));
    ck_assert(!parses("(speaks_en", &c));
    ck_assert(!parses("speaks_en)", &c));
    ck_assert(!parses("speaks_en AND", &c));
    ck_assert(!parses("AND speaks_en", &c));
    ck_assert(!parses("speaks_en speaks_fr", &c));
    ck_assert(!parses("age_in_days > 99999999999999999999999", &c));
    ck_assert(!parses("speaks_en & deaf", &c));

    /* Deep nesting is refused, not a stack overflow. */
    char deep[4096];
    size_t n = 0;
    for (int i = 0; i < 2000; i++)
        deep[n++] = '(';
    memcpy(deep + n, "deaf", 5);
    ck_assert(!parses(deep, &c));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eligibility");
    TCase *tc = tcase_create("eligibility");
    tcase_add_test(tc, hash_worked_example);
    tcase_add_test(tc, hash_rejects_bad_input);
    tcase_add_test(tc, age_range);
    tcase_add_test(tc, pg_array);
    tcase_add_test(tc, criteria);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
