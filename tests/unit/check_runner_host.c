/* Unit tests of runner_host's pure parts: which paths the runner's own
 * host serves, which API routes a runner key opens, and the encoding of
 * a decoded path for a Location header.  Which host a request came to,
 * the redirects and the cookies are tested end to end
 * (tests/e2e/test_runner_origin.py). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/runner_host.h"

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

static Suite *runner_host_suite(void)
{
    Suite *s = suite_create("runner_host");
    TCase *tc = tcase_create("pure");

    tcase_add_test(tc, serves_the_runner_only);
    tcase_add_test(tc, api_paths_are_prefixes);
    tcase_add_test(tc, encodes_a_path_for_location);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(runner_host_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
