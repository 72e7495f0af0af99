/* auth_password: what a secret is made of and checked against: API token
 * keys (kept hashed), passwords (argon2id, the policy, the process-wide
 * throttle in front of the hashing) and recovery codes.  No I/O: every
 * function here answers from its arguments and the CPU. */
#include "studyhub/http/auth_password.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/server.h"

/* argon2id parameters: OWASP's "m=19 MiB, t=2, p=1" row.  One verification
 * costs ~40 ms of CPU on the loop thread (measured here), which is why
 * it is throttled below; hashes made with other parameters still verify, since
 * the PHC string carries its own. */
#define AUTH_ARGON2_T 2
#define AUTH_ARGON2_M_KIB 19456
#define AUTH_ARGON2_P 1
#define AUTH_ARGON2_SALT_LEN 16
#define AUTH_ARGON2_HASH_LEN 32

/* At most this many argon2 computations per second, process-wide, with
 * bursts up to the capacity: a flood of logins can use at most ~40% of the
 * loop's time and stall it ~0.4 s at once.  Beyond it the answer is 429. */
#define AUTH_HASH_RATE_PER_S 10.0
#define AUTH_HASH_BURST 10.0

#define AUTH_PASSWORD_MIN 10

void auth_token_generate(char out[41])
{
    util_random_hex(20, out);
}

void auth_token_hash(const char *key, char out_hex[65])
{
    util_sha256_hex(key, strlen(key), out_hex);
}

int auth_password_hash(const char *password, char *out, size_t outlen)
{
    unsigned char salt[AUTH_ARGON2_SALT_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return -1;
    int rc = argon2id_hash_encoded(AUTH_ARGON2_T, AUTH_ARGON2_M_KIB,
                                   AUTH_ARGON2_P, password, strlen(password),
                                   salt, sizeof salt, AUTH_ARGON2_HASH_LEN,
                                   out, outlen);
    return rc == ARGON2_OK ? 0 : -1;
}

bool auth_password_verify(const char *encoded, const char *password)
{
    if (!encoded || strncmp(encoded, "$argon2id$", 10) != 0)
        return false;
    return argon2id_verify(encoded, password, strlen(password)) == ARGON2_OK;
}

const char *auth_password_policy(const char *password, const char *email)
{
    size_t chars = 0;
    /* Characters, not bytes: a UTF-8 continuation byte is no character. */
    for (const unsigned char *p = (const unsigned char *)password; *p; p++)
        if ((*p & 0xC0) != 0x80)
            chars++;
    if (chars < AUTH_PASSWORD_MIN)
        return "This password is too short. It must contain at least 10 characters.";
    if (strlen(password) > AUTH_PASSWORD_MAX)
        return "This password is too long.";
    if (email && strcasecmp(password, email) == 0)
        return "The password is too similar to the email address.";
    return NULL;
}

/* A hash of a password nobody has, verified when the email is unknown so
 * that a wrong email and a wrong password take the same time. */
const char *auth_password_dummy_hash(void)
{
    static char hash[AUTH_PASSWORD_HASH_MAX];
    if (!hash[0] && auth_password_hash("studyhub: no such user", hash,
                                       sizeof hash) != 0)
        hash[0] = '\0';
    return hash;
}

/* The global token bucket in front of argon2 (AUTH_HASH_RATE_PER_S). */
bool auth_hash_throttle(void)
{
    static double tokens = AUTH_HASH_BURST;
    static double last;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (last > 0) {
        tokens += (now - last) * AUTH_HASH_RATE_PER_S;
        if (tokens > AUTH_HASH_BURST)
            tokens = AUTH_HASH_BURST;
    }
    last = now;
    if (tokens < 1.0)
        return false;
    tokens -= 1.0;
    return true;
}

void auth_reply_throttled(struct http_req *req, long retry_after_s)
{
    char ra[24];
    snprintf(ra, sizeof ra, "%ld", retry_after_s);
    http_add_header(req, "Retry-After", ra);
    jsonapi_reply_errorf(req, 429, "throttled", NULL,
                         "Request was throttled. Expected available in %ld second%s.",
                         retry_after_s, retry_after_s == 1 ? "" : "s");
}

static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";

void auth_recovery_code_generate(char out[20])
{
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        log_error("auth: RAND_bytes failed");
        abort();
    }
    int o = 0;
    for (int i = 0; i < 16; i++) {         /* 5 bits of each byte: 80 bits */
        if (i && i % 4 == 0)
            out[o++] = '-';
        out[o++] = b32_lower[rnd[i] & 31];
    }
    out[o] = '\0';
    OPENSSL_cleanse(rnd, sizeof rnd);
}

bool auth_recovery_code_hash(const char *code, char out_hex[65])
{
    char norm[17];
    int n = 0;
    for (const char *p = code; *p; p++) {
        char c = *p;
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (n >= 16 || !strchr(b32_lower, c) || c == '\0')
            return false;
        norm[n++] = c;
    }
    if (n != 16)
        return false;
    norm[n] = '\0';
    util_sha256_hex(norm, 16, out_hex);
    return true;
}
