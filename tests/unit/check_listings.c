/* Unit tests of listings' age groups: upstream's bounds, the lookup by
 * name, and the overlap rule a study is listed by. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/listings.h"
#include "unit_main.h"

START_TEST(five_groups_with_upstreams_bounds)
{
    static const struct { const char *slug; int lo, hi; } want[] = {
        { "babies", 0, 1 }, { "toddlers", 1, 3 }, { "preschoolers", 3, 5 },
        { "school-age", 5, 18 }, { "adults", 18, 999 },
    };
    int n = 0;
    const struct listings_age_group *g = listings_age_groups(&n);

    ck_assert_int_eq(n, 5);
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(g[i].slug, want[i].slug);
        ck_assert_int_eq(g[i].lo_years, want[i].lo);
        ck_assert_int_eq(g[i].hi_years, want[i].hi);
        ck_assert_ptr_eq(listings_age_group(want[i].slug), &g[i]);
        ck_assert(strlen(g[i].label) > 0);
    }
}
END_TEST

START_TEST(unknown_names)
{
    ck_assert_ptr_null(listings_age_group(NULL));
    ck_assert_ptr_null(listings_age_group(""));
    ck_assert_ptr_null(listings_age_group("Babies"));
    ck_assert_ptr_null(listings_age_group("babies/"));
    ck_assert_ptr_null(listings_age_group("teens"));
}
END_TEST

START_TEST(overlap_rule)
{
    const struct listings_age_group *babies = listings_age_group("babies");
    const struct listings_age_group *toddlers = listings_age_group("toddlers");
    const struct listings_age_group *adults = listings_age_group("adults");

    /* 6 to 12 months: babies only (a toddler starts at 365 days). */
    ck_assert(listings_study_in_group(babies, 180, 364));
    ck_assert(!listings_study_in_group(toddlers, 180, 364));
    /* The bounds touch: a study up to exactly 365 days meets both. */
    ck_assert(listings_study_in_group(toddlers, 180, 365));
    /* 2 to 4 years spans toddlers and preschoolers, not babies. */
    ck_assert(!listings_study_in_group(babies, 730, 1460));
    ck_assert(listings_study_in_group(toddlers, 730, 1460));
    ck_assert(listings_study_in_group(listings_age_group("preschoolers"), 730, 1460));
    /* Adults: 18 years and older. */
    ck_assert(listings_study_in_group(adults, 18 * 365, 99 * 365));
    ck_assert(!listings_study_in_group(adults, 0, 17 * 365));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("listings");
    TCase *tc = tcase_create("age groups");

    tcase_add_test(tc, five_groups_with_upstreams_bounds);
    tcase_add_test(tc, unknown_names);
    tcase_add_test(tc, overlap_rule);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
