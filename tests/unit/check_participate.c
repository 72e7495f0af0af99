/* Unit tests of participate's pure parts: which paths under
 * /studies/<study>/ are a child's page and which are the build's assets,
 * and where an external study sends its participant. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/participate.h"
#include "unit_main.h"

#define CHILD "26edcab0-b578-49e4-9ef3-6f9e5ee32642"

START_TEST(split)
{
    char child[37];

    ck_assert(participate_split(CHILD "/", child));
    ck_assert_str_eq(child, CHILD);
    ck_assert(participate_split(CHILD, child));
    ck_assert(participate_split(CHILD "/frames/3/deep", child));
    ck_assert(!participate_split("assets/runner-1.js", child));
    ck_assert(!participate_split("", child));
    ck_assert(!participate_split(CHILD "x/", child));          /* 37 characters */
    ck_assert(!participate_split("26edcab0-b578-49e4-9ef3-6f9e5ee3264g/", child));
}
END_TEST

START_TEST(external_location)
{
    char *loc = participate_external_location("https://example.org/study", "abc123",
                                              "r-1");
    ck_assert_str_eq(loc, "https://example.org/study?child=abc123&response=r-1");
    free(loc);

    /* The study's own query is kept; the new parameters follow it. */
    loc = participate_external_location("https://example.org/s?lang=en", "h", "r");
    ck_assert_str_eq(loc, "https://example.org/s?lang=en&child=h&response=r");
    free(loc);

    /* A fragment stays last, and a '?' inside it is not the query. */
    loc = participate_external_location("http://example.org/s#part?x", "h", "r");
    ck_assert_str_eq(loc, "http://example.org/s?child=h&response=r#part?x");
    free(loc);

    loc = participate_external_location("https://example.org/s?a=1#top", "h", "r");
    ck_assert_str_eq(loc, "https://example.org/s?a=1&child=h&response=r#top");
    free(loc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("participate");
    TCase *tc = tcase_create("participate");
    tcase_add_test(tc, split);
    tcase_add_test(tc, external_location);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
