/* Unit tests of auth.c's pure parts: the one shape of the cookies we set.
 * The strings are those the login and the runner host's hand-off have
 * always sent (tests/e2e/test_users_auth.py and test_runner_origin.py
 * check them on the wire). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/auth.h"

START_TEST(cookie_lines)
{
    char out[256];

    ck_assert(auth_cookie_line(out, sizeof out, "sessionid", "abc", 1209600,
                               AUTH_COOKIE_HTTP_ONLY));
    ck_assert_str_eq(out, "sessionid=abc; Max-Age=1209600; Path=/; HttpOnly; SameSite=Lax");
    ck_assert(auth_cookie_line(out, sizeof out, "sessionid", "abc", 345600,
                               AUTH_COOKIE_HTTP_ONLY | AUTH_COOKIE_SECURE));
    ck_assert_str_eq(out,
                     "sessionid=abc; Max-Age=345600; Path=/; HttpOnly; SameSite=Lax; Secure");
    ck_assert(auth_cookie_line(out, sizeof out, "csrftoken", "c5", 31449600, 0));
    ck_assert_str_eq(out, "csrftoken=c5; Max-Age=31449600; Path=/; SameSite=Lax");
    ck_assert(auth_cookie_line(out, sizeof out, "csrftoken", "", 0, AUTH_COOKIE_SECURE));
    ck_assert_str_eq(out, "csrftoken=; Max-Age=0; Path=/; SameSite=Lax; Secure");
}
END_TEST

START_TEST(cookie_line_too_long)
{
    char out[48];

    /* 47 characters fit exactly; one more does not. */
    ck_assert(auth_cookie_line(out, sizeof out, "a", "0123456789ab", 0, 0));
    ck_assert_str_eq(out, "a=0123456789ab; Max-Age=0; Path=/; SameSite=Lax");
    ck_assert_uint_eq(strlen(out), 47);
    ck_assert(!auth_cookie_line(out, sizeof out, "a", "0123456789abc", 0, 0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, cookie_lines);
    tcase_add_test(tc, cookie_line_too_long);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
