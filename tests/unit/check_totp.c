/* Unit tests of totp: RFC 4226 appendix D and RFC 6238 appendix B test
 * vectors, the verification window and replay rule, base32 (RFC 4648
 * section 10) and the otpauth:// URI. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/totp.h"
#include "unit_main.h"

/* The ASCII key of both RFCs' SHA-1 vectors. */
static const unsigned char rfc_key[] = "12345678901234567890";
#define RFC_KEYLEN 20

START_TEST(hotp_rfc4226_vectors)
{
    static const long want[10] = {
        755224, 287082, 359152, 969429, 338314,
        254676, 287922, 162583, 399871, 520489,
    };
    for (uint64_t c = 0; c < 10; c++)
        ck_assert_int_eq(totp_hotp(rfc_key, RFC_KEYLEN, c, 6), want[c]);
    ck_assert_int_eq(totp_hotp(rfc_key, RFC_KEYLEN, 0, 0), -1);
    ck_assert_int_eq(totp_hotp(rfc_key, RFC_KEYLEN, 0, 10), -1);
}
END_TEST

START_TEST(totp_rfc6238_vectors)
{
    /* Appendix B, SHA1 rows: time, 8-digit TOTP. */
    static const struct { long long t; long code; } rows[] = {
        { 59LL, 94287082L },
        { 1111111109LL, 7081804L },
        { 1111111111LL, 14050471L },
        { 1234567890LL, 89005924L },
        { 2000000000LL, 69279037L },
        { 20000000000LL, 65353130L },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t step = totp_step((time_t)rows[i].t);
        ck_assert_int_eq(totp_hotp(rfc_key, RFC_KEYLEN, (uint64_t)step, 8),
                         rows[i].code);
    }
    ck_assert_int_eq(totp_step(59), 1);
    ck_assert_int_eq(totp_step(60), 2);
    ck_assert_int_eq(totp_step(-5), 0);
}
END_TEST

static void code_at(time_t t, char out[16])
{
    snprintf(out, 16, "%06ld",
             totp_hotp(rfc_key, RFC_KEYLEN, (uint64_t)totp_step(t), 6));
}

START_TEST(verify_window_and_replay)
{
    time_t now = 1234567890;         /* step 41152263 */
    int64_t step = totp_step(now);
    char c[16], spaced[24];

    code_at(now, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, 0), step);
    /* One step of drift either way is accepted, two are not. */
    code_at(now - 30, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, 0), step - 1);
    code_at(now + 30, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, 0), step + 1);
    code_at(now - 60, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, 0), -1);
    code_at(now + 60, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, 0), -1);
    /* Replay: a code of a step already used (or older) is refused. */
    code_at(now, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, step), -1);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, step - 1), step);
    code_at(now - 30, c);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, c, now, step - 1), -1);
    /* Spaces are ignored ("123 456"), anything else is not a code. */
    code_at(now, c);
    snprintf(spaced, sizeof spaced, " %.3s %s ", c, c + 3);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, spaced, now, 0), step);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, "12345", now, 0), -1);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, "1234567", now, 0), -1);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, "12345a", now, 0), -1);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, "", now, 0), -1);
    ck_assert_int_eq(totp_verify(rfc_key, RFC_KEYLEN, NULL, now, 0), -1);
    /* The wrong key does not verify. */
    ck_assert_int_eq(totp_verify((const unsigned char *)"another key 12345678",
                                 20, c, now, 0), -1);
}
END_TEST

START_TEST(base32_rfc4648_vectors)
{
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const enc[] = { "", "MY", "MZXQ", "MZXW6", "MZXW6YQ", "MZXW6YTB", "MZXW6YTBOI" };
    char out[64];
    unsigned char back[64];

    for (int i = 0; i < 7; i++) {
        size_t n = strlen(plain[i]);
        ck_assert_int_eq(totp_base32_encode((const unsigned char *)plain[i], n,
                                            out, sizeof out), (int)strlen(enc[i]));
        ck_assert_str_eq(out, enc[i]);
        ck_assert_int_eq(totp_base32_decode(enc[i], back, sizeof back), (int)n);
        ck_assert(memcmp(back, plain[i], n) == 0);
    }
    /* Padding, lower case and spaces as authenticator apps show them. */
    ck_assert_int_eq(totp_base32_decode("mzxw 6ytb oi======", back, sizeof back), 6);
    ck_assert(memcmp(back, "foobar", 6) == 0);
    ck_assert_int_eq(totp_base32_decode("MZ1W", back, sizeof back), -1);
    ck_assert_int_eq(totp_base32_decode("MY=A", back, sizeof back), -1);
    ck_assert_int_eq(totp_base32_decode("MZXW6YTBOI", back, 3), -1);
    ck_assert_int_eq(totp_base32_encode(rfc_key, RFC_KEYLEN, out, 32), -1);
    ck_assert_int_eq(totp_base32_encode(rfc_key, RFC_KEYLEN, out, 33),
                     TOTP_SECRET_B32_LEN);
    ck_assert_str_eq(out, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
}
END_TEST

START_TEST(otpauth_uri)
{
    char out[512];
    ck_assert_int_gt(totp_uri(out, sizeof out, "study hub", "a+b@x.test",
                              "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), 0);
    ck_assert_str_eq(out, "otpauth://totp/study%20hub:a%2Bb%40x.test?"
                          "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=study%20hub"
                          "&algorithm=SHA1&digits=6&period=30");
    ck_assert_int_eq(totp_uri(out, 20, "studyhub", "a@x.test", "AAAA"), -1);
}
END_TEST

START_TEST(secret_sealing)
{
    unsigned char key[32], other[32];
    char sealed[TOTP_SEALED_LEN + 1], again[TOTP_SEALED_LEN + 1];
    char b32[TOTP_SECRET_B32_LEN + 1];
    const char *secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    memset(key, 7, sizeof key);
    memset(other, 8, sizeof other);
    ck_assert_int_eq(totp_secret_seal(key, 42, secret, sealed, sizeof sealed), 0);
    ck_assert_uint_eq(strlen(sealed), TOTP_SEALED_LEN);
    ck_assert(strncmp(sealed, "v1:", 3) == 0);
    ck_assert_ptr_null(strstr(sealed, secret));
    /* A fresh nonce each time: the same secret never seals the same. */
    ck_assert_int_eq(totp_secret_seal(key, 42, secret, again, sizeof again), 0);
    ck_assert_str_ne(sealed, again);
    ck_assert_int_eq(totp_secret_open(key, 42, sealed, b32, sizeof b32), 0);
    ck_assert_str_eq(b32, secret);
    /* Another key, another user, or one changed character: no. */
    ck_assert_int_eq(totp_secret_open(other, 42, sealed, b32, sizeof b32), -1);
    ck_assert_int_eq(totp_secret_open(key, 43, sealed, b32, sizeof b32), -1);
    sealed[10] = sealed[10] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(totp_secret_open(key, 42, sealed, b32, sizeof b32), -1);
    ck_assert_int_eq(totp_secret_open(key, 42, "v1:short", b32, sizeof b32), -1);
    ck_assert_int_eq(totp_secret_open(key, 42, "", b32, sizeof b32), -1);
    /* Plaintext of older versions opens as it is, and says so. */
    ck_assert_int_eq(totp_secret_open(key, 42, secret, b32, sizeof b32), 1);
    ck_assert_str_eq(b32, secret);
    /* Only base32 secrets of the right length are sealed; outputs are checked. */
    ck_assert_int_eq(totp_secret_seal(key, 42, "lowercase", sealed, sizeof sealed), -1);
    ck_assert_int_eq(totp_secret_seal(key, 42, secret, sealed, TOTP_SEALED_LEN), -1);
    ck_assert_int_eq(totp_secret_open(key, 42, secret, b32, TOTP_SECRET_B32_LEN), -1);
}
END_TEST

static Suite *totp_suite(void)
{
    Suite *s = suite_create("totp");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, hotp_rfc4226_vectors);
    tcase_add_test(tc, totp_rfc6238_vectors);
    tcase_add_test(tc, verify_window_and_replay);
    tcase_add_test(tc, base32_rfc4648_vectors);
    tcase_add_test(tc, otpauth_uri);
    tcase_add_test(tc, secret_sealing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(totp_suite());
}
