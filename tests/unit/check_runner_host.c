/* Unit tests of runner_host's pure parts: which paths the runner's own
 * host serves, which API routes a runner key opens, and the encoding of
 * a decoded path for a Location header and the Locations themselves.
 * Which host a request came to,
 * the redirects and the cookies are tested end to end
 * (tests/e2e/test_runner_origin.py). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/runner_host.h"
#include "unit_main.h"

#define STUDY "/studies/0b5e7c0e-1111-4222-8333-444455556666/"

START_TEST(serves_the_runner_only)
{
    ck_assert(runner_host_serves(STUDY "0b5e7c0e-1111-4222-8333-444455556667/"));
    ck_assert(runner_host_serves(STUDY "assets/vendor-abc.js"));
    ck_assert(runner_host_serves("/runners/abc/assets/app.js"));
    ck_assert(runner_host_serves("/api/v1/responses/"));
    ck_assert(runner_host_serves("/api/v1/studies/x/"));
    ck_assert(runner_host_serves("/api/v1/children/"));
    ck_assert(runner_host_serves("/api/v1/past-sessions/"));
    /* The site's pages and the rest of the API are not the runner's. */
    ck_assert(!runner_host_serves("/studies/history/"));
    ck_assert(!runner_host_serves("/studies/"));
    ck_assert(!runner_host_serves("/studies/0b5e7c0e-1111-4222-8333-44445555666/x"));
    ck_assert(!runner_host_serves("/studies/0b5e7c0e-1111-4222-8333-444455556666"));
    ck_assert(!runner_host_serves("/studies/0b5e7c0e-1111-4222-8333-44445555666z/x"));
    ck_assert(!runner_host_serves("/"));
    ck_assert(!runner_host_serves("/login/"));
    ck_assert(!runner_host_serves("/api/v1/accounts/me/"));
    ck_assert(!runner_host_serves("/api/v1/users/"));
    ck_assert(!runner_host_serves("/api/v1/auth/login/"));
    ck_assert(!runner_host_serves("/api/v1/researcher/studies/"));
    ck_assert(!runner_host_serves("/storage/x"));
    ck_assert(!runner_host_serves("/healthz"));
}
END_TEST

START_TEST(api_paths_are_prefixes)
{
    ck_assert(runner_host_api_path("/api/v1/responses/abc/"));
    ck_assert(!runner_host_api_path("/api/v1/response"));
    ck_assert(!runner_host_api_path("/api/v2/responses/"));
    ck_assert(!runner_host_api_path(""));
}
END_TEST

START_TEST(encodes_a_path_for_location)
{
    char out[64];

    strcpy(out, "http://site");
    ck_assert(runner_host_encode_path(out, sizeof out, "/studies/a b/ü\r\n\"<x>"));
    ck_assert_str_eq(out, "http://site/studies/a%20b/%C3%BC%0D%0A%22%3Cx%3E");
    out[0] = '\0';
    ck_assert(runner_host_encode_path(out, sizeof out, "/a-._~!$&'()*+,;=:@/"));
    ck_assert_str_eq(out, "/a-._~!$&'()*+,;=:@/");
    /* Cut short: false, and what was written still ends. */
    out[0] = '\0';
    ck_assert(!runner_host_encode_path(out, 8, "/abcdefghij"));
    ck_assert_uint_lt(strlen(out), 8);
    out[0] = '\0';
    ck_assert(!runner_host_encode_path(out, 5, "/é"));     /* %C3%A9 does not fit */
    ck_assert_uint_lt(strlen(out), 5);
}
END_TEST

/* The Locations of the two redirects between the site and the runner's
 * host: the hand-off there (with its code) and the way back (without). */
START_TEST(builds_a_location)
{
    char out[128];

    ck_assert(runner_host_location(out, sizeof out, "https://runner.example", "/studies/a b/",
                                   NULL, "c0de"));
    ck_assert_str_eq(out, "https://runner.example/studies/a%20b/?handoff=c0de");
    /* The page's own query goes along; the code comes last. */
    ck_assert(runner_host_location(out, sizeof out, "https://runner.example", "/s/",
                                   "lang=en&x=%20", "c0de"));
    ck_assert_str_eq(out, "https://runner.example/s/?lang=en&x=%20&handoff=c0de");
    /* An empty query is none. */
    ck_assert(runner_host_location(out, sizeof out, "http://site", "/login/", "", NULL));
    ck_assert_str_eq(out, "http://site/login/");
    ck_assert(runner_host_location(out, sizeof out, "http://site", "/a/", "next=/b/", NULL));
    ck_assert_str_eq(out, "http://site/a/?next=/b/");
    /* A path alone (the runner host's redirect to itself). */
    ck_assert(runner_host_location(out, sizeof out, "", "/studies/x/ü", NULL, NULL));
    ck_assert_str_eq(out, "/studies/x/%C3%BC");
}
END_TEST

START_TEST(a_location_that_does_not_fit)
{
    char out[32];

    /* Exactly full (31 characters and the NUL) fits; one more does not,
     * in the base, the path, the query or the code. */
    ck_assert(runner_host_location(out, sizeof out, "http://s", "/p", "q=1", "01234567"));
    ck_assert_uint_eq(strlen(out), 31);
    ck_assert(!runner_host_location(out, sizeof out, "http://s", "/p", "q=1", "012345678"));
    ck_assert(!runner_host_location(out, sizeof out, "http://s", "/p", "q=12", "01234567"));
    ck_assert(!runner_host_location(out, sizeof out, "http://s", "/pp", "q=1", "01234567"));
    ck_assert(!runner_host_location(out, sizeof out, "http://0123456789012345678901234", "/",
                                    NULL, NULL));
    ck_assert(!runner_host_location(out, sizeof out, "http://s", "/p", NULL,
                                    "0123456789abcdef0123456789"));
    ck_assert(!runner_host_location(out, sizeof out, "http://s", "/p",
                                    "0123456789abcdef0123456789", NULL));
}
END_TEST

static Suite *runner_host_suite(void)
{
    Suite *s = suite_create("runner_host");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, serves_the_runner_only);
    tcase_add_test(tc, api_paths_are_prefixes);
    tcase_add_test(tc, encodes_a_path_for_location);
    tcase_add_test(tc, builds_a_location);
    tcase_add_test(tc, a_location_that_does_not_fit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(runner_host_suite());
}
