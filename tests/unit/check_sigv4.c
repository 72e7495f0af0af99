/* Unit tests of sigv4 against AWS's published S3 examples ("Signature
 * Calculations for the Authorization Header: Transferring Payload in a
 * Single Chunk" and "Authenticating Requests: Using Query Parameters"):
 * exact canonical requests, strings to sign and signatures. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/util.h"
#include "studyhub/io/sigv4.h"
#include "unit_main.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define HOST "examplebucket.s3.amazonaws.com"
/* 2013-05-24T00:00:00Z */
#define T20130524 ((time_t)1369353600)

static const struct sigv4_creds creds = { AK, SK, "us-east-1", "s3" };

START_TEST(amz_date_and_hashes)
{
    char d[17], h[65];
    sigv4_amz_date(T20130524, d);
    ck_assert_str_eq(d, "20130524T000000Z");
    util_sha256_hex("", 0, h);
    ck_assert_str_eq(h, SIGV4_EMPTY_SHA256);
    util_sha256_hex("Welcome to Amazon S3.", 21, h);
    ck_assert_str_eq(h, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
}
END_TEST

START_TEST(uri_encoding)
{
    char *s = sigv4_uri_encode("a b/c$d~e_f.g-h/ü", strlen("a b/c$d~e_f.g-h/ü"), true);
    ck_assert_str_eq(s, "a%20b/c%24d~e_f.g-h/%C3%BC");
    free(s);
    s = sigv4_uri_encode("a/b+c=d", 7, false);
    ck_assert_str_eq(s, "a%2Fb%2Bc%3Dd");
    free(s);
}
END_TEST

START_TEST(get_object_with_range)
{
    const struct sigv4_pair h[] = {
        { "Host", HOST },
        { "Range", "bytes=0-9" },
        { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 },
        { "x-amz-date", "20130524T000000Z" },
    };
    struct sigv4_request r = {
        .method = "GET", .path = "/test.txt", .headers = h, .nheaders = 4,
        .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *cr = sigv4_canonical_request(&r);
    ck_assert_str_eq(cr,
        "GET\n/test.txt\n\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "range:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\n"
        "host;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char *sts = sigv4_string_to_sign(&creds, T20130524, cr);
    ck_assert_str_eq(sts,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    char sig[65];
    char *auth = sigv4_authorization(&creds, &r, T20130524, sig);
    ck_assert_str_eq(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    ck_assert_str_eq(auth,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(cr);
    free(sts);
    free(auth);
}
END_TEST

START_TEST(put_object)
{
    char body_hash[65];
    util_sha256_hex("Welcome to Amazon S3.", 21, body_hash);
    /* Values with stray spaces, as in the example's header block: they are
     * trimmed in the canonical form. */
    const struct sigv4_pair h[] = {
        { "Host", HOST },
        { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
        { "x-amz-date", "20130524T000000Z " },
        { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
        { "x-amz-content-sha256", body_hash },
    };
    struct sigv4_request r = {
        .method = "PUT", .path = "/test$file.text", .headers = h,
        .nheaders = 5, .payload_hash = body_hash,
    };
    char *cr = sigv4_canonical_request(&r);
    ck_assert_str_eq(cr,
        "PUT\n/test%24file.text\n\n"
        "date:Fri, 24 May 2013 00:00:00 GMT\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
        "x-amz-date:20130524T000000Z\n"
        "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    char sig[65];
    char *auth = sigv4_authorization(&creds, &r, T20130524, sig);
    ck_assert_str_eq(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    free(cr);
    free(auth);
}
END_TEST

START_TEST(get_bucket_lifecycle)
{
    const struct sigv4_pair h[] = {
        { "Host", HOST },
        { "x-amz-date", "20130524T000000Z" },
        { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 },
    };
    const struct sigv4_pair q[] = { { "lifecycle", NULL } };
    struct sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 1,
        .headers = h, .nheaders = 3, .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *cr = sigv4_canonical_request(&r);
    ck_assert_str_eq(cr,
        "GET\n/\nlifecycle=\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\n"
        "host;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char sig[65];
    char *auth = sigv4_authorization(&creds, &r, T20130524, sig);
    ck_assert_str_eq(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(cr);
    free(auth);
}
END_TEST

START_TEST(list_objects)
{
    const struct sigv4_pair h[] = {
        { "Host", HOST },
        { "x-amz-date", "20130524T000000Z" },
        { "x-amz-content-sha256", SIGV4_EMPTY_SHA256 },
    };
    /* Given out of order: sorting is the signer's job. */
    const struct sigv4_pair q[] = { { "prefix", "J" }, { "max-keys", "2" } };
    struct sigv4_request r = {
        .method = "GET", .path = "/", .query = q, .nquery = 2,
        .headers = h, .nheaders = 3, .payload_hash = SIGV4_EMPTY_SHA256,
    };
    char *cr = sigv4_canonical_request(&r);
    ck_assert_str_eq(cr,
        "GET\n/\nmax-keys=2&prefix=J\n"
        "host:examplebucket.s3.amazonaws.com\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\n"
        "host;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char sig[65];
    char *auth = sigv4_authorization(&creds, &r, T20130524, sig);
    ck_assert_str_eq(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(cr);
    free(auth);
}
END_TEST

START_TEST(presigned_url)
{
    char *url = sigv4_presign_url(&creds, "GET", "https://" HOST, HOST,
                                  "/test.txt", NULL, 0, T20130524, 86400);
    ck_assert_str_eq(url,
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z"
        "&X-Amz-Expires=86400"
        "&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    free(url);
    /* Out of range expiry and missing credentials are refused. */
    ck_assert_ptr_null(sigv4_presign_url(&creds, "GET", "https://" HOST, HOST,
                                         "/test.txt", NULL, 0, T20130524, 0));
    ck_assert_ptr_null(sigv4_presign_url(&creds, "GET", "https://" HOST, HOST,
                                         "/test.txt", NULL, 0, T20130524, 604801));
    struct sigv4_creds none = { NULL, SK, "us-east-1", "s3" };
    ck_assert_ptr_null(sigv4_presign_url(&none, "GET", "https://" HOST, HOST,
                                         "/test.txt", NULL, 0, T20130524, 60));
}
END_TEST

START_TEST(presigned_url_extra_params_sorted)
{
    const struct sigv4_pair extra[] = {
        { "response-content-disposition", "attachment; filename=\"a b.mp4\"" },
    };
    char *url = sigv4_presign_url(&creds, "GET", "http://127.0.0.1:9000",
                                  "127.0.0.1:9000", "/bucket/dir/a b.mp4",
                                  extra, 1, T20130524, 600);
    ck_assert_ptr_nonnull(url);
    ck_assert_ptr_nonnull(strstr(url, "http://127.0.0.1:9000/bucket/dir/a%20b.mp4?X-Amz-Algorithm="));
    /* 'r' sorts after 'X': the extra parameter comes after the X-Amz ones. */
    ck_assert_ptr_nonnull(strstr(url, "&X-Amz-SignedHeaders=host&response-content-disposition="
                                      "attachment%3B%20filename%3D%22a%20b.mp4%22&X-Amz-Signature="));
    free(url);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sigv4");
    TCase *tc = tcase_create("aws-examples");
    tcase_add_test(tc, amz_date_and_hashes);
    tcase_add_test(tc, uri_encoding);
    tcase_add_test(tc, get_object_with_range);
    tcase_add_test(tc, put_object);
    tcase_add_test(tc, get_bucket_lifecycle);
    tcase_add_test(tc, list_objects);
    tcase_add_test(tc, presigned_url);
    tcase_add_test(tc, presigned_url_extra_params_sorted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
