/* Unit tests of http_parse: the head's end found across reads, request
 * lines and headers parsed in place, the strict refusals (bare LF,
 * folding, NUL and control bytes, bad tokens, conflicting framing), the
 * target split and decoded, query strings by evhttp's rules, and chunked
 * bodies decoded in place. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/http_parse.h"
#include "unit_main.h"

/* Parses s (a whole head, copied): the result, head in *h, text in buf. */
static long parse(const char *s, struct http_head *h, char *buf, size_t cap)
{
    size_t n = strlen(s);
    struct http_head_scan scan = { 0 };
    long end;

    ck_assert_uint_lt(n, cap);
    memcpy(buf, s, n + 1);
    end = http_head_end(buf, n, &scan);
    if (end <= 0)
        return end == 0 ? -1000 : HTTP_PARSE_BAD;
    return http_parse_head(buf, (size_t)end, h);
}

START_TEST(head_end_across_reads)
{
    const char *req = "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
    struct http_head_scan scan = { 0 };
    size_t full = strlen(req) - 4;

    /* Fed one byte more at a time: found exactly when the blank line is in. */
    for (size_t n = 1; n <= strlen(req); n++) {
        long end = http_head_end(req, n, &scan);
        if (n < full)
            ck_assert_int_eq(end, 0);
        else {
            ck_assert_int_eq(end, (long)full);
            break;
        }
    }
    memset(&scan, 0, sizeof scan);
    ck_assert_int_eq(http_head_end("GET / HTTP/1.1\nHost: x\r\n\r\n", 26, &scan), -1);
    memset(&scan, 0, sizeof scan);
    ck_assert_int_eq(http_head_end("\r\n\r\n", 4, &scan), 0);   /* empty lines only */
}
END_TEST

START_TEST(request_parsed_in_place)
{
    char buf[512];
    struct http_head h;
    long n = parse("POST /a/b?x=1 HTTP/1.1\r\nHost: example\r\ncontent-length: 5\r\n"
                   "X-Empty:\r\nX-Pad:  \t v a l \t \r\nConnection: keep-alive, Close\r\n\r\n",
                   &h, buf, sizeof buf);

    ck_assert_int_gt(n, 0);
    ck_assert_uint_eq(h.head_len, (size_t)n);
    ck_assert_int_eq(h.method, HTTP_POST);
    ck_assert_int_eq(h.minor, 1);
    ck_assert_str_eq(buf + h.target, "/a/b?x=1");
    ck_assert_uint_eq(h.target_len, 8);
    ck_assert_uint_eq(h.nheaders, 5);
    ck_assert_str_eq(http_head_header(&h, buf, "host"), "example");
    ck_assert_str_eq(http_head_header(&h, buf, "CONTENT-LENGTH"), "5");
    ck_assert_str_eq(http_head_header(&h, buf, "X-Empty"), "");
    ck_assert_str_eq(http_head_header(&h, buf, "x-pad"), "v a l");
    ck_assert_ptr_null(http_head_header(&h, buf, "X-None"));
    ck_assert_int_eq(h.content_length, 5);
    ck_assert(!h.chunked);
    ck_assert(h.conn_close);
    ck_assert(h.conn_keep_alive);

    n = parse("GET / HTTP/1.0\r\n\r\n", &h, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(h.minor, 0);
    ck_assert_int_eq(h.content_length, -1);
    ck_assert_uint_eq(h.nheaders, 0);
}
END_TEST

START_TEST(strict_refusals)
{
    char buf[512];
    struct http_head h;
    static const struct {
        const char *head;
        long want;
    } cases[] = {
        { "GET / HTTP/1.1\r\n Host: x\r\n\r\n", HTTP_PARSE_BAD },          /* folding */
        { "GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", HTTP_PARSE_BAD },    /* obs-fold */
        { "GET / HTTP/1.1\r\nHost : x\r\n\r\n", HTTP_PARSE_BAD },          /* space before : */
        { "GET / HTTP/1.1\r\nHo(st: x\r\n\r\n", HTTP_PARSE_BAD },          /* not a token */
        { "GET / HTTP/1.1\r\nHost: a\x01" "b\r\n\r\n", HTTP_PARSE_BAD },   /* control byte */
        { "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", HTTP_PARSE_BAD },        /* bare CR */
        { "GET / HTTP/1.1\r\nNoColon\r\n\r\n", HTTP_PARSE_BAD },
        { "GET  / HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD },
        { "GET /\x7f HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD },
        { "GET / HTTP/1.1 \r\n\r\n", HTTP_PARSE_BAD },
        { "GET /\r\n\r\n", HTTP_PARSE_BAD },                              /* HTTP/0.9 */
        { "GET / HTTP/2.0\r\n\r\n", HTTP_PARSE_VERSION },
        { "GET / HTTP/1.2\r\n\r\n", HTTP_PARSE_VERSION },
        { "G@T / HTTP/1.1\r\n\r\n", HTTP_PARSE_BAD },
        { "BREW / HTTP/1.1\r\n\r\n", HTTP_PARSE_METHOD },
        { "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
          HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_PARSE_BAD },
        { "POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", HTTP_PARSE_EXPECT },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long got = parse(cases[i].head, &h, buf, sizeof buf);
        ck_assert_msg(got == cases[i].want, "case %zu: %ld, want %ld", i, got, cases[i].want);
    }
    /* A NUL in a header value. */
    const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    struct http_head_scan scan = { 0 };
    memcpy(buf, nul, sizeof nul);
    long end = http_head_end(buf, sizeof nul - 1, &scan);
    ck_assert_int_gt(end, 0);
    ck_assert_int_eq(http_parse_head(buf, (size_t)end, &h), HTTP_PARSE_BAD);
    /* Same Content-Length twice is one. */
    ck_assert_int_gt(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                           &h, buf, sizeof buf), 0);
    ck_assert_int_eq(h.content_length, 5);
    ck_assert_int_gt(parse("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n"
                           "Expect: 100-Continue\r\n\r\n", &h, buf, sizeof buf), 0);
    ck_assert(h.chunked);
    ck_assert(h.expect_continue);
}
END_TEST

START_TEST(too_many_headers)
{
    char buf[8192], *p = buf;
    static char head[8192];
    struct http_head h;

    p += sprintf(head, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= HTTP_PARSE_MAX_HEADERS; i++)
        p += sprintf(head + (p - buf), "X-%d: v\r\n", i);
    sprintf(head + (p - buf), "\r\n");
    ck_assert_int_eq(parse(head, &h, buf, sizeof buf), HTTP_PARSE_TOO_MANY);
}
END_TEST

START_TEST(target_split_and_decoded)
{
    char t[128];
    const char *path, *query;

    strcpy(t, "/a%20b%2Fc+d?x=1&y=%41#frag");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/a b/c+d");
    ck_assert_str_eq(query, "x=1&y=%41");
    strcpy(t, "/p#f?not");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/p");
    ck_assert_str_eq(query, "");
    strcpy(t, "/bad%zz%4");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/bad%zz%4");
    strcpy(t, "/nul%00here");
    ck_assert(!http_target_split(t, &path, &query));
    strcpy(t, "http://host:8080/abs/path?q=2");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/abs/path");
    ck_assert_str_eq(query, "q=2");
    strcpy(t, "http://host");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/");
    strcpy(t, "?q");
    ck_assert(http_target_split(t, &path, &query));
    ck_assert_str_eq(path, "/");
    ck_assert_str_eq(query, "q");
}
END_TEST

START_TEST(query_by_evhttp_rules)
{
    char q[128];
    struct http_query_pair pairs[8];

    strcpy(q, "a=1+2&b=%41%2b&Empty=&c=x=y&A=dup");
    ck_assert_int_eq(http_parse_query(q, pairs, 8), 5);
    ck_assert_str_eq(pairs[0].key, "a");
    ck_assert_str_eq(pairs[0].value, "1 2");
    ck_assert_str_eq(pairs[1].value, "A+");
    ck_assert_str_eq(pairs[2].key, "Empty");
    ck_assert_str_eq(pairs[2].value, "");
    ck_assert_str_eq(pairs[3].value, "x=y");
    strcpy(q, "k%20x=v");           /* keys are not decoded */
    ck_assert_int_eq(http_parse_query(q, pairs, 8), 1);
    ck_assert_str_eq(pairs[0].key, "k%20x");
    strcpy(q, "a=1&flag");          /* a part without '=': all invalid */
    ck_assert_int_eq(http_parse_query(q, pairs, 8), -1);
    strcpy(q, "a=1&&b=2");
    ck_assert_int_eq(http_parse_query(q, pairs, 8), -1);
    strcpy(q, "=v");
    ck_assert_int_eq(http_parse_query(q, pairs, 8), -1);
    strcpy(q, "a=1&");
    ck_assert_int_eq(http_parse_query(q, pairs, 8), 1);
    strcpy(q, "a=1&b=2&c=3");
    ck_assert_int_eq(http_parse_query(q, pairs, 2), 2);
}
END_TEST

START_TEST(chunked_in_place)
{
    char buf[256];
    const char *body = "HEAD5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nT: x\r\n\r\nNEXT";
    size_t len = strlen(body), raw = 4, end = 4;

    /* Byte by byte: incomplete until the very end of the trailers. */
    memcpy(buf, body, len + 1);
    for (size_t n = 5; n < len - 4; n++) {
        int rc = http_parse_chunked(buf, n, &raw, &end, 4, 1000);
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_int_eq(http_parse_chunked(buf, len, &raw, &end, 4, 1000), 1);
    ck_assert_uint_eq(end - 4, 16);
    ck_assert(memcmp(buf + 4, "hello 0123456789", 16) == 0);
    ck_assert_str_eq(buf + raw, "NEXT");

    /* Over the limit, bad sizes, missing CRLF after data. */
    strcpy(buf, "10\r\n0123456789abcdef\r\n0\r\n\r\n");
    raw = end = 0;
    ck_assert_int_eq(http_parse_chunked(buf, strlen(buf), &raw, &end, 0, 8), -413);
    strcpy(buf, "zz\r\n");
    raw = end = 0;
    ck_assert_int_eq(http_parse_chunked(buf, strlen(buf), &raw, &end, 0, 8), HTTP_PARSE_BAD);
    strcpy(buf, "3\r\nabcX\r\n");
    raw = end = 0;
    ck_assert_int_eq(http_parse_chunked(buf, strlen(buf), &raw, &end, 0, 8), HTTP_PARSE_BAD);
    strcpy(buf, "3\nabc\r\n");
    raw = end = 0;
    ck_assert_int_eq(http_parse_chunked(buf, strlen(buf), &raw, &end, 0, 8), HTTP_PARSE_BAD);
    strcpy(buf, "ffffffffffffffffff\r\n");
    raw = end = 0;
    ck_assert_int_eq(http_parse_chunked(buf, strlen(buf), &raw, &end, 0, 8), HTTP_PARSE_BAD);
}
END_TEST

START_TEST(uri_decode)
{
    char out[32];

    ck_assert_uint_eq(http_uri_decode("a+b%2", 5, out, true), 5);
    ck_assert_str_eq(out, "a b%2");
    ck_assert_uint_eq(http_uri_decode("%41%4a%4A", 9, out, false), 3);
    ck_assert_str_eq(out, "AJJ");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_parse");
    TCase *tc = tcase_create("http_parse");
    tcase_add_test(tc, head_end_across_reads);
    tcase_add_test(tc, request_parsed_in_place);
    tcase_add_test(tc, strict_refusals);
    tcase_add_test(tc, too_many_headers);
    tcase_add_test(tc, target_split_and_decoded);
    tcase_add_test(tc, query_by_evhttp_rules);
    tcase_add_test(tc, chunked_in_place);
    tcase_add_test(tc, uri_decode);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
