/* Unit tests of reply_head: the HTTP date, its once-a-second cache, the
 * block of fixed headers every reply carries, and the reason phrases. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/reply_head.h"
#include "studyhub/http/server.h"   /* HTTP_BASE_CSP, HTTP_PAGE_CSP */
#include "unit_main.h"

START_TEST(date_format_is_imf_fixdate)
{
    char out[30];

    http_date_format(0, out);
    ck_assert_str_eq(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    http_date_format(784111777, out);   /* RFC 7231's own example */
    ck_assert_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    http_date_format(1796603952, out);
    ck_assert_str_eq(out, "Mon, 07 Dec 2026 00:39:12 GMT");
    ck_assert_uint_eq(strlen(out), 29);
}
END_TEST

START_TEST(date_cache_formats_once_a_second)
{
    struct http_date_cache c = { .second = -1 };
    const char *a = http_date_cached(&c, 784111777);

    ck_assert_str_eq(a, "Sun, 06 Nov 1994 08:49:37 GMT");
    /* The same second: the same text, not formatted again. */
    c.text[0] = 'X';
    ck_assert_str_eq(http_date_cached(&c, 784111777), "Xun, 06 Nov 1994 08:49:37 GMT");
    ck_assert_str_eq(http_date_cached(&c, 784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
    ck_assert_int_eq(c.second, 784111778);
}
END_TEST

START_TEST(header_block_lines)
{
    char out[512];
    size_t n = http_header_block(out, sizeof out, "Sun, 06 Nov 1994 08:49:37 GMT",
                                 "abc-1", HTTP_BASE_CSP);

    ck_assert_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                          "X-Request-Id: abc-1\r\n"
                          "X-Content-Type-Options: nosniff\r\n"
                          "Referrer-Policy: same-origin\r\n"
                          "X-Frame-Options: DENY\r\n"
                          "Content-Security-Policy: frame-ancestors 'none'");
    ck_assert_uint_eq(n, strlen(out));
    /* The handler's own CSP: none in the block. */
    n = http_header_block(out, sizeof out, "D", "r", NULL);
    ck_assert_str_eq(out, "D\r\nX-Request-Id: r\r\nX-Content-Type-Options: nosniff\r\n"
                          "Referrer-Policy: same-origin\r\nX-Frame-Options: DENY");
    ck_assert_uint_eq(n, strlen(out));
}
END_TEST

START_TEST(header_block_too_small)
{
    char out[64];

    ck_assert_uint_eq(http_header_block(out, sizeof out, "Sun, 06 Nov 1994 08:49:37 GMT",
                                        "abc", HTTP_PAGE_CSP), 0);
    /* Exactly full leaves no room for the NUL: refused too. */
    char exact[128];
    size_t need = http_header_block(exact, sizeof exact, "D", "r", NULL);
    ck_assert_uint_gt(need, 0);
    ck_assert_uint_eq(http_header_block(exact, need, "D", "r", NULL), 0);
    ck_assert_uint_eq(http_header_block(exact, need + 1, "D", "r", NULL), need);
}
END_TEST

START_TEST(reason_phrases)
{
    ck_assert_str_eq(http_reason_phrase(100), "Continue");
    ck_assert_str_eq(http_reason_phrase(200), "OK");
    ck_assert_str_eq(http_reason_phrase(204), "No Content");
    ck_assert_str_eq(http_reason_phrase(304), "Not Modified");
    ck_assert_str_eq(http_reason_phrase(404), "Not Found");
    ck_assert_str_eq(http_reason_phrase(431), "Request Header Fields Too Large");
    ck_assert_str_eq(http_reason_phrase(501), "Not Implemented");
    ck_assert_str_eq(http_reason_phrase(505), "HTTP Version Not Supported");
    /* A code not listed gets its class's phrase. */
    ck_assert_str_eq(http_reason_phrase(299), "OK");
    ck_assert_str_eq(http_reason_phrase(399), "Redirect");
    ck_assert_str_eq(http_reason_phrase(418), "Client Error");
    ck_assert_str_eq(http_reason_phrase(599), "Server Error");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reply_head");
    TCase *tc = tcase_create("reply_head");
    tcase_add_test(tc, date_format_is_imf_fixdate);
    tcase_add_test(tc, date_cache_formats_once_a_second);
    tcase_add_test(tc, header_block_lines);
    tcase_add_test(tc, header_block_too_small);
    tcase_add_test(tc, reason_phrases);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
