/* Unit tests of auth_password: token keys and their hash, argon2id
 * passwords (the round trip, foreign and empty hashes, a too small
 * buffer), the password policy, the hashing throttle, recovery codes
 * and their normalisation. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/auth_password.h"
#include "unit_main.h"

static bool all_lower_hex(const char *s, size_t want)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n == want && s[n] == '\0';
}

START_TEST(token_keys)
{
    char a[41], b[41], h[65];
    auth_token_generate(a);
    auth_token_generate(b);
    ck_assert(all_lower_hex(a, 40));
    ck_assert_str_ne(a, b);
    /* The database keeps SHA-256 of the key (FIPS 180-2's "abc"). */
    auth_token_hash("abc", h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(password_round_trip)
{
    char hash[AUTH_PASSWORD_HASH_MAX], tiny[16];
    ck_assert_int_eq(auth_password_hash("correct horse battery", hash, sizeof hash), 0);
    ck_assert(strncmp(hash, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0);
    ck_assert(auth_password_verify(hash, "correct horse battery"));
    ck_assert(!auth_password_verify(hash, "correct horse batterY"));
    ck_assert(!auth_password_verify(hash, ""));
    /* Salted: the same password hashes differently each time. */
    char again[AUTH_PASSWORD_HASH_MAX];
    ck_assert_int_eq(auth_password_hash("correct horse battery", again, sizeof again), 0);
    ck_assert_str_ne(hash, again);
    /* Nothing but an argon2id PHC string is ever accepted. */
    ck_assert(!auth_password_verify(NULL, "x"));
    ck_assert(!auth_password_verify("", ""));
    ck_assert(!auth_password_verify("pbkdf2_sha256$260000$salt$hash", "x"));
    ck_assert(!auth_password_verify("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA", "x"));
    ck_assert_int_eq(auth_password_hash("correct horse battery", tiny, sizeof tiny), -1);
}
END_TEST

START_TEST(dummy_hash_matches_nothing)
{
    const char *d = auth_password_dummy_hash();
    ck_assert(strncmp(d, "$argon2id$", 10) == 0);
    ck_assert_ptr_eq(d, auth_password_dummy_hash());     /* made once */
    ck_assert(!auth_password_verify(d, ""));
    ck_assert(!auth_password_verify(d, "password12"));
}
END_TEST

START_TEST(password_policy)
{
    ck_assert_ptr_null(auth_password_policy("ten chars!", "a@example.org"));
    ck_assert_ptr_nonnull(auth_password_policy("nine char", "a@example.org"));
    /* Characters, not bytes: nine two-byte letters are still too short,
     * ten are enough. */
    ck_assert_ptr_nonnull(auth_password_policy("ééééééééé", NULL));
    ck_assert_ptr_null(auth_password_policy("éééééééééé", NULL));
    char long_pw[AUTH_PASSWORD_MAX + 2];
    memset(long_pw, 'x', sizeof long_pw - 1);
    long_pw[sizeof long_pw - 1] = '\0';
    ck_assert_str_eq(auth_password_policy(long_pw, NULL), "This password is too long.");
    long_pw[AUTH_PASSWORD_MAX] = '\0';
    ck_assert_ptr_null(auth_password_policy(long_pw, NULL));
    ck_assert_ptr_nonnull(auth_password_policy("Parent@Example.org", "parent@example.org"));
}
END_TEST

START_TEST(hash_throttle_bursts_then_refuses)
{
    /* A fresh process (check forks per test): the bucket starts full, 10
     * computations go at once, the 11th waits ~0.1 s. */
    for (int i = 0; i < 10; i++)
        ck_assert(auth_hash_throttle());
    ck_assert(!auth_hash_throttle());
}
END_TEST

START_TEST(recovery_codes)
{
    char code[20], other[20], h1[65], h2[65];
    auth_recovery_code_generate(code);
    auth_recovery_code_generate(other);
    ck_assert_uint_eq(strlen(code), 19);
    ck_assert_str_ne(code, other);
    for (int i = 0; i < 19; i++) {
        if (i == 4 || i == 9 || i == 14)
            ck_assert_int_eq(code[i], '-');
        else
            ck_assert_ptr_nonnull(strchr("abcdefghijklmnopqrstuvwxyz234567", code[i]));
    }
    /* Case, dashes and spaces do not matter; the hash is of the 16 letters. */
    ck_assert(auth_recovery_code_hash("abcd-efgh-ijkl-mnop", h1));
    ck_assert(auth_recovery_code_hash("ABCD EFGH ijkl-MNOP", h2));
    ck_assert_str_eq(h1, h2);
    ck_assert(all_lower_hex(h1, 64));
    ck_assert(auth_recovery_code_hash("abcdefghijklmnop", h2));
    ck_assert_str_eq(h1, h2);
    /* Wrong length, or a letter outside base32 (0, 1, 8, 9, punctuation). */
    ck_assert(!auth_recovery_code_hash("abcd-efgh-ijkl-mno", h2));
    ck_assert(!auth_recovery_code_hash("abcd-efgh-ijkl-mnopq", h2));
    ck_assert(!auth_recovery_code_hash("abcd-efgh-ijkl-mno1", h2));
    ck_assert(!auth_recovery_code_hash("abcd-efgh-ijkl-mn0p", h2));
    ck_assert(!auth_recovery_code_hash("abcd-efgh-ijkl-mno!", h2));
    ck_assert(!auth_recovery_code_hash("", h2));
}
END_TEST

static Suite *auth_password_suite(void)
{
    Suite *s = suite_create("auth_password");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);           /* argon2 under sanitizers */
    tcase_add_test(tc, token_keys);
    tcase_add_test(tc, password_round_trip);
    tcase_add_test(tc, dummy_hash_matches_nothing);
    tcase_add_test(tc, password_policy);
    tcase_add_test(tc, hash_throttle_bursts_then_refuses);
    tcase_add_test(tc, recovery_codes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(auth_password_suite());
}
