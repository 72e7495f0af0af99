/* Unit tests of apidoc's JSON scanner: what it accepts and refuses (it must
 * agree with PostgreSQL's jsonb input), member and element iteration,
 * string decoding, and the uuid copy. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/apidoc.h"
#include "unit_main.h"

static int scan(const char *s, struct apidoc_jspan *v)
{
    char err[96];
    return apidoc_json_scan(s, strlen(s), v, NULL, err, sizeof err);
}

static bool ok(const char *s)
{
    struct apidoc_jspan v;
    return scan(s, &v) == 0;
}

START_TEST(accepts)
{
    const char *good[] = {
        "{}", "[]", " {\"a\" : [1, -2.5e+3, 0, 0.1, true, false, null, \"x\"]} \n",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "-0", "1E5", "[[[[[]]]]]", "{\"a\":{\"b\":{}}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(ok(good[i]), "refused: %s", good[i]);
}
END_TEST

START_TEST(refuses)
{
    const char *bad[] = {
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[01]", "[1.]",
        "[.5]", "[1e]", "[+1]", "[tru]", "[nul]", "\"abc", "\"a\\x\"", "\"\\u12\"",
        "\"\\u0000\"", "\"\\udc00\"", "\"\\ud800\"", "\"\\ud800\\u0041\"",
        "\"\x01\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"", "{} {}", "[1] x", "NaN", "[Infinity]", "'a'",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!ok(bad[i]), "accepted: %s", bad[i]);
    /* A NUL byte inside the text is not JSON either. */
    struct apidoc_jspan v;
    char err[96];
    ck_assert_int_eq(apidoc_json_scan("\"a\0b\"", 5, &v, NULL, err, sizeof err), -1);
}
END_TEST

START_TEST(depth)
{
    char *deep = malloc(20001);
    for (int i = 0; i < 10000; i++) {
        deep[i] = '[';
        deep[10000 + i] = ']';
    }
    deep[20000] = '\0';
    ck_assert(!ok(deep));
    deep[600] = '\0';        /* 300 deep: fine */
    memset(deep + 300, ']', 300);
    ck_assert(ok(deep));
    free(deep);
}
END_TEST

START_TEST(members_and_strings)
{
    struct apidoc_jspan doc, k, v, e;
    size_t it = 0, n = 0;
    char buf[64];

    ck_assert_int_eq(scan(" { \"a\" : 1 , \"b\\u0063\":[ \"x\" , {\"y\":2} ] ,\"a\":\"last\"} ",
                          &doc), 0);
    ck_assert_int_eq(doc.type, AJ_OBJECT);
    while (apidoc_json_member(&doc, &it, &k, &v))
        n++;
    ck_assert_uint_eq(n, 3);
    ck_assert(apidoc_json_get(&doc, "bc", &v));
    ck_assert_int_eq(v.type, AJ_ARRAY);
    it = n = 0;
    while (apidoc_json_element(&v, &it, &e))
        n++;
    ck_assert_uint_eq(n, 2);
    ck_assert(apidoc_json_get(&doc, "a", &v));     /* the last one wins */
    ck_assert(apidoc_json_string_is(&v, "last"));
    ck_assert(!apidoc_json_get(&doc, "zz", &v));

    ck_assert_int_eq(scan("\"\\u00e9\\ud83d\\ude00\\n\"", &v), 0);
    ck_assert(apidoc_json_string(&v, buf, sizeof buf));
    ck_assert_str_eq(buf, "\xc3\xa9\xf0\x9f\x98\x80\n");
    ck_assert(!apidoc_json_string(&v, buf, 4));    /* does not fit */

    ck_assert_int_eq(scan("[]", &v), 0);
    it = 0;
    ck_assert(!apidoc_json_element(&v, &it, &e));
    ck_assert_int_eq(scan("{}", &v), 0);
    it = 0;
    ck_assert(!apidoc_json_member(&v, &it, &k, &e));
}
END_TEST

/* The scanner steps over eight plain bytes at a time, and skip_value
 * finds a string's end by its last quote: what stops either must stop it
 * at every offset of an 8-byte window. */
START_TEST(long_strings_every_offset)
{
    static const char *const stops[] = {
        "\\\"", "\\\\", "\\u00e9", "\xc3\xa9", "\\\\\\\"",
    };
    char text[512], body[100];
    struct apidoc_jspan doc, k, v;

    for (size_t s = 0; s < sizeof stops / sizeof stops[0]; s++) {
        for (int off = 0; off < 24; off++) {
            size_t it = 0;
            memset(body, 'a', (size_t)off);
            snprintf(body + off, sizeof body - (size_t)off, "%s%s", stops[s],
                     "bbbbbbbbbbbbbbbbbbbbbbb{[]}");
            snprintf(text, sizeof text, "{\"k\":\"%s\",\"n\":[\"%s\"],\"z\":1}", body, body);
            ck_assert_msg(scan(text, &doc) == 0, "refused: %s", text);
            ck_assert(apidoc_json_member(&doc, &it, &k, &v));
            ck_assert_int_eq(v.type, AJ_STRING);
            ck_assert_uint_eq(v.len, strlen(body) + 2);
            ck_assert(apidoc_json_member(&doc, &it, &k, &v));
            ck_assert_int_eq(v.type, AJ_ARRAY);
            ck_assert(apidoc_json_member(&doc, &it, &k, &v));
            ck_assert(apidoc_json_string_is(&k, "z"));
            ck_assert(!apidoc_json_member(&doc, &it, &k, &v));
        }
    }
    /* A control byte, a stray quote or an invalid byte late in a long
     * string is still refused. */
    for (int off = 0; off < 24; off++) {
        static const char bad[] = { '\x01', '\x1f', '\xff', '\x80' };
        for (size_t b = 0; b < sizeof bad; b++) {
            memset(body, 'a', sizeof body);
            body[off] = bad[b];
            body[40] = '\0';
            snprintf(text, sizeof text, "\"%s\"", body);
            ck_assert_msg(!ok(text), "accepted byte %02x at %d", (unsigned char)bad[b], off);
        }
    }
}
END_TEST

static bool fits(const char *s)
{
    struct apidoc_jspan v;
    const char *big = s;
    char err[96];
    ck_assert_int_eq(apidoc_json_scan(s, strlen(s), &v, &big, err, sizeof err), 0);
    return big == NULL;
}

/* PostgreSQL's numeric: 131072 digits before the point, 16383 after. */
START_TEST(numbers_fit_numeric)
{
    ck_assert(fits("{\"n\": [0, -0, 1.5, -2.5e+3, 1e131071, 9.99e131071, 1e-16383]}"));
    ck_assert(fits("{\"s\": \"1e999999 in a string \\\" 1e999999\"}"));
    ck_assert(fits("0.000000e-16377"));
    ck_assert(!fits("{\"n\": 1e999999}"));
    ck_assert(!fits("[1, 2, 1e131072]"));
    ck_assert(!fits("-12e131071"));
    ck_assert(!fits("1e-16384"));
    ck_assert(!fits("0e-20000"));
    ck_assert(!fits("1.5e-16383"));
    ck_assert(!fits("1e99999999999999999999"));
}
END_TEST

START_TEST(uuid_copy)
{
    char out[37];
    ck_assert(apidoc_uuid_copy("26EDCAB0-B578-49e4-9ef3-6f9e5ee32642", out));
    ck_assert_str_eq(out, "26edcab0-b578-49e4-9ef3-6f9e5ee32642");
    ck_assert(!apidoc_uuid_copy("26edcab0b57849e49ef36f9e5ee32642", out));
    ck_assert(!apidoc_uuid_copy("26edcab0-b578-49e4-9ef3-6f9e5ee3264z", out));
    ck_assert(!apidoc_uuid_copy(NULL, out));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("apidoc");
    TCase *tc = tcase_create("apidoc");
    tcase_add_test(tc, accepts);
    tcase_add_test(tc, refuses);
    tcase_add_test(tc, depth);
    tcase_add_test(tc, members_and_strings);
    tcase_add_test(tc, long_strings_every_offset);
    tcase_add_test(tc, numbers_fit_numeric);
    tcase_add_test(tc, uuid_copy);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
