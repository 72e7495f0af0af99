/* totp: HOTP/TOTP (RFC 4226/6238) with OpenSSL's HMAC-SHA1, base32 secrets,
 * otpauth:// URIs for two-factor login, and the AES-256-GCM sealing that
 * keeps the secrets encrypted in the database.
 *
 * Why not liboath (oath-toolkit, Debian's liboath-dev), weighed for issue
 * 12: it would replace HOTP and base32, about 90 of these lines, and
 * nothing else: the replay rule (a code's time step must pass the last one
 * used, claimed in the same UPDATE across servers), the URI and the
 * sealing stay ours; its base32 decoder allocates; and it is one more
 * library to install, link and keep.  The RFC 4226, 6238 and 4648 test
 * vectors pass here (check_totp), so the gain is too small. */
#include "studyhub/http/totp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const long pow10_table[] = {
    1L, 10L, 100L, 1000L, 10000L, 100000L, 1000000L, 10000000L, 100000000L,
    1000000000L,
};

long totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter,
               int digits)
{
    unsigned char msg[8], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (digits < 1 || digits > 9)
        return -1;
    for (int i = 7; i >= 0; i--) {          /* big-endian, as the RFC says */
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    if (!HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof msg, md, &mdlen) ||
        mdlen != 20)
        return -1;
    /* Dynamic truncation (RFC 4226 section 5.4). */
    unsigned off = md[19] & 0x0f;
    unsigned long bin = ((unsigned long)(md[off] & 0x7f) << 24) |
                        ((unsigned long)md[off + 1] << 16) |
                        ((unsigned long)md[off + 2] << 8) |
                        (unsigned long)md[off + 3];
    OPENSSL_cleanse(md, sizeof md);
    return (long)(bin % (unsigned long)pow10_table[digits]);
}

int64_t totp_step(time_t t)
{
    if (t < 0)
        return 0;
    return (int64_t)t / TOTP_PERIOD_S;
}

/* The code's digits without spaces, or false if it is not TOTP_DIGITS
 * digits. */
static bool code_normalise(const char *code, char out[TOTP_DIGITS + 1])
{
    int n = 0;
    if (!code)
        return false;
    for (const char *p = code; *p; p++) {
        if (*p == ' ' || *p == '\t')
            continue;
        if (*p < '0' || *p > '9' || n >= TOTP_DIGITS)
            return false;
        out[n++] = *p;
    }
    out[n] = '\0';
    return n == TOTP_DIGITS;
}

int64_t totp_verify(const unsigned char *key, size_t keylen, const char *code,
                    time_t now, int64_t last_step)
{
    char want[TOTP_DIGITS + 1], got[24];
    int64_t step = totp_step(now), match = -1;

    if (!code_normalise(code, want))
        return -1;
    /* Every step of the window is computed and compared, so the time taken
     * does not say which one (if any) matched. */
    for (int64_t s = step - TOTP_WINDOW; s <= step + TOTP_WINDOW; s++) {
        if (s < 0)
            continue;
        long v = totp_hotp(key, keylen, (uint64_t)s, TOTP_DIGITS);
        if (v < 0)
            return -1;
        snprintf(got, sizeof got, "%0*ld", TOTP_DIGITS, v);
        bool eq = CRYPTO_memcmp(got, want, TOTP_DIGITS) == 0;
        if (eq && s > last_step)
            match = s;
    }
    OPENSSL_cleanse(got, sizeof got);
    return match;
}

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int totp_base32_encode(const unsigned char *in, size_t n, char *out,
                       size_t outlen)
{
    size_t need = (n * 8 + 4) / 5;
    uint32_t buf = 0;
    int bits = 0;
    size_t o = 0;

    if (outlen < need + 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32_alphabet[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32_alphabet[(buf << (5 - bits)) & 31];
    out[o] = '\0';
    return (int)o;
}

int totp_base32_decode(const char *in, unsigned char *out, size_t outlen)
{
    uint32_t buf = 0;
    int bits = 0;
    size_t o = 0;
    bool padding = false;

    for (const char *p = in; *p; p++) {
        char c = *p;
        int v;
        if (c == ' ' || c == '-')
            continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        if (padding)                     /* data after padding */
            return -1;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return -1;
        buf = (buf << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (o >= outlen)
                return -1;
            out[o++] = (unsigned char)((buf >> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return (int)o;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static int pct_encode(char *out, size_t outlen, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (o + (plain ? 1 : 3) >= outlen)
            return -1;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return (int)o;
}

int totp_uri(char *out, size_t outlen, const char *issuer, const char *account,
             const char *secret_b32)
{
    char iss[256], acc[768];
    if (pct_encode(iss, sizeof iss, issuer) < 0 ||
        pct_encode(acc, sizeof acc, account) < 0)
        return -1;
    int n = snprintf(out, outlen,
                     "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1"
                     "&digits=%d&period=%d",
                     iss, acc, secret_b32, iss, TOTP_DIGITS, TOTP_PERIOD_S);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

/* ------------------------------------------------------------ at rest */

/* The associated data binds a sealed secret to its user: a row's secret
 * copied onto another user's row does not open. */
static int seal_aad(int64_t user_id, char *out, size_t len)
{
    return snprintf(out, len, "studyhub-totp:%lld", (long long)user_id);
}

static bool is_plain_b32(const char *s)
{
    return strlen(s) == TOTP_SECRET_B32_LEN &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == TOTP_SECRET_B32_LEN;
}

int totp_secret_seal(const unsigned char key[32], int64_t user_id,
                     const char *b32, char *out, size_t outlen)
{
    unsigned char buf[TOTP_SEAL_NONCE + TOTP_SECRET_B32_LEN + TOTP_SEAL_TAG];
    unsigned char *nonce = buf, *ct = buf + TOTP_SEAL_NONCE,
                  *tag = ct + TOTP_SECRET_B32_LEN;
    char aad[48];
    int aadlen = seal_aad(user_id, aad, sizeof aad), n = 0, ret = -1;
    EVP_CIPHER_CTX *c = NULL;

    if (!is_plain_b32(b32) || outlen < TOTP_SEALED_LEN + 1)
        return -1;
    if (RAND_bytes(nonce, TOTP_SEAL_NONCE) != 1 || !(c = EVP_CIPHER_CTX_new()))
        goto out;
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, aadlen) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, (const unsigned char *)b32,
                          TOTP_SECRET_B32_LEN) != 1 ||
        EVP_EncryptFinal_ex(c, ct + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TOTP_SEAL_TAG, tag) != 1)
        goto out;
    memcpy(out, TOTP_SEAL_PREFIX, strlen(TOTP_SEAL_PREFIX));
    EVP_EncodeBlock((unsigned char *)out + strlen(TOTP_SEAL_PREFIX), buf, sizeof buf);
    ret = 0;
out:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(buf, sizeof buf);
    return ret;
}

int totp_secret_open(const unsigned char key[32], int64_t user_id,
                     const char *stored, char *b32, size_t outlen)
{
    unsigned char buf[TOTP_SEAL_NONCE + TOTP_SECRET_B32_LEN + TOTP_SEAL_TAG + 3];
    unsigned char *nonce = buf, *ct = buf + TOTP_SEAL_NONCE,
                  *tag = ct + TOTP_SECRET_B32_LEN;
    size_t plen = strlen(TOTP_SEAL_PREFIX);
    char aad[48];
    int aadlen = seal_aad(user_id, aad, sizeof aad), n = 0, ret = -1;
    EVP_CIPHER_CTX *c = NULL;

    if (outlen < TOTP_SECRET_B32_LEN + 1)
        return -1;
    if (is_plain_b32(stored)) {          /* written before sealing existed */
        memcpy(b32, stored, TOTP_SECRET_B32_LEN + 1);
        return 1;
    }
    if (strlen(stored) != TOTP_SEALED_LEN || strncmp(stored, TOTP_SEAL_PREFIX, plen) != 0 ||
        EVP_DecodeBlock(buf, (const unsigned char *)stored + plen,
                        (int)(TOTP_SEALED_LEN - plen)) !=
            TOTP_SEAL_NONCE + TOTP_SECRET_B32_LEN + TOTP_SEAL_TAG)
        return -1;
    if (!(c = EVP_CIPHER_CTX_new()))
        goto out;
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)aad, aadlen) != 1 ||
        EVP_DecryptUpdate(c, (unsigned char *)b32, &n, ct, TOTP_SECRET_B32_LEN) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TOTP_SEAL_TAG, tag) != 1 ||
        EVP_DecryptFinal_ex(c, (unsigned char *)b32 + n, &n) != 1) {
        OPENSSL_cleanse(b32, outlen);
        goto out;
    }
    b32[TOTP_SECRET_B32_LEN] = '\0';
    ret = is_plain_b32(b32) ? 0 : -1;
out:
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(buf, sizeof buf);
    return ret;
}
