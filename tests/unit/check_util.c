/* Unit tests of util: hex, SHA-256 (FIPS 180-2 vectors), random ids,
 * formatted allocation, mkdir -p. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/core/util.h"
#include "unit_main.h"

START_TEST(hex_and_sha256)
{
    char out[65];
    const unsigned char bytes[] = { 0x00, 0x7f, 0x80, 0xff };

    util_hex(bytes, sizeof bytes, out);
    ck_assert_str_eq(out, "007f80ff");
    util_hex(bytes, 0, out);
    ck_assert_str_eq(out, "");
    util_sha256_hex("abc", 3, out);
    ck_assert_str_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    util_sha256_hex("", 0, out);
    ck_assert_str_eq(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(int_dec)
{
    char out[UTIL_INT_DEC_LEN];

    ck_assert_uint_eq(util_int_dec(0, out), 1);
    ck_assert_str_eq(out, "0");
    ck_assert_uint_eq(util_int_dec(42, out), 2);
    ck_assert_str_eq(out, "42");
    ck_assert_uint_eq(util_int_dec(-7, out), 2);
    ck_assert_str_eq(out, "-7");
    util_int_dec(INT64_MAX, out);
    ck_assert_str_eq(out, "9223372036854775807");
    ck_assert_uint_eq(util_int_dec(INT64_MIN, out), 20);
    ck_assert_str_eq(out, "-9223372036854775808");
}
END_TEST

START_TEST(random_hex_is_hex_and_differs)
{
    char a[129], b[129];

    util_random_hex(64, a);
    util_random_hex(64, b);
    ck_assert_uint_eq(strlen(a), 128);
    ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 128);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(asprintf_formats)
{
    char *s = util_asprintf("%s/%d/%.*s", "a", 42, 2, "bcd");

    ck_assert_str_eq(s, "a/42/bc");
    free(s);
}
END_TEST

START_TEST(mkdir_p_nested_and_existing)
{
    char root[] = "/tmp/check_util_XXXXXX", path[256], file[300];
    struct stat sb;

    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(path, sizeof path, "%s/a/b/c", root);
    ck_assert_int_eq(util_mkdir_p(path), 0);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_int_eq(util_mkdir_p(path), 0);          /* already there */
    /* A file in the way is an error with errno. */
    snprintf(file, sizeof file, "%s/a/f", root);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/a/f/g", root);
    errno = 0;
    ck_assert_int_eq(util_mkdir_p(path), -1);
    ck_assert_int_eq(errno, ENOTDIR);
    unlink(file);
    snprintf(path, sizeof path, "%s/a/b/c", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a/b", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", root);
    rmdir(path);
    rmdir(root);
}
END_TEST

START_TEST(mono_ms_does_not_go_back)
{
    int64_t a = util_mono_ms(), b = util_mono_ms();

    ck_assert(a > 0);
    ck_assert(b >= a);
}
END_TEST

START_TEST(api_time_to_the_microsecond)
{
    char out[UTIL_API_TIME_LEN];

    util_api_time(0, out);
    ck_assert_str_eq(out, "1970-01-01T00:00:00.000000Z");
    /* As PostgreSQL's float8 text of EXTRACT(EPOCH ...) gives them. */
    util_api_time(1796603952.345678, out);
    ck_assert_str_eq(out, "2026-12-07T00:39:12.345678Z");
    util_api_time(1796603952.000001, out);
    ck_assert_str_eq(out, "2026-12-07T00:39:12.000001Z");
    util_api_time(1796603952.9999996, out);     /* rounds into the next second */
    ck_assert_str_eq(out, "2026-12-07T00:39:13.000000Z");
    util_api_time(-1.5, out);
    ck_assert_str_eq(out, "1969-12-31T23:59:58.500000Z");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_test(tc, hex_and_sha256);
    tcase_add_test(tc, int_dec);
    tcase_add_test(tc, random_hex_is_hex_and_differs);
    tcase_add_test(tc, asprintf_formats);
    tcase_add_test(tc, mkdir_p_nested_and_existing);
    tcase_add_test(tc, mono_ms_does_not_go_back);
    tcase_add_test(tc, api_time_to_the_microsecond);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
