/* totp: one-time passwords for two-factor login: HOTP (RFC 4226) and TOTP
 * (RFC 6238) with HMAC-SHA1, 30-second steps and 6 digits (what every
 * authenticator app does by default), base32 secrets (RFC 4648) and the
 * otpauth:// URI that enrolment QR codes carry.
 *
 * Pure functions, no I/O: replay prevention is the caller's job.  A
 * verification returns the time step the code matched; the caller stores
 * it and accepts a later code only for a strictly greater step (one UPDATE
 * ... WHERE last_step < $step makes that atomic across servers). */
#ifndef STUDYHUB_HTTP_TOTP_H
#define STUDYHUB_HTTP_TOTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TOTP_SECRET_BYTES 20   /* 160 bits, RFC 4226's recommended length */
#define TOTP_PERIOD_S 30
#define TOTP_DIGITS 6
#define TOTP_WINDOW 1          /* steps of clock drift accepted each way */
/* Base32 text of TOTP_SECRET_BYTES: 32 characters, no padding. */
#define TOTP_SECRET_B32_LEN 32

/* HOTP value of counter (RFC 4226 section 5.3), reduced to digits (1-9)
 * decimal digits.  Returns -1 if HMAC fails or digits is out of range. */
long totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter,
               int digits);

/* The RFC 6238 time step of t: floor((t - 0) / TOTP_PERIOD_S). */
int64_t totp_step(time_t t);

/* Checks code (exactly TOTP_DIGITS ASCII digits; surrounding and inner
 * spaces are ignored) against the steps of now - TOTP_WINDOW .. now +
 * TOTP_WINDOW that are greater than last_step.  Returns the matching step
 * (the largest, if several match), or -1.  Compares in constant time. */
int64_t totp_verify(const unsigned char *key, size_t keylen, const char *code,
                    time_t now, int64_t last_step);

/* RFC 4648 base32, upper case, no padding.  Writes a NUL-terminated string;
 * returns its length, or -1 if out is too small. */
int totp_base32_encode(const unsigned char *in, size_t n, char *out,
                       size_t outlen);
/* Decodes base32 (either case; spaces, '-' and trailing '=' ignored).
 * Returns the byte count, or -1 on a bad character or a too-small out. */
int totp_base32_decode(const char *in, unsigned char *out, size_t outlen);

/* otpauth://totp/ISSUER:ACCOUNT?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30
 * with issuer and account percent-encoded.  Returns the length, or -1 if
 * out is too small. */
int totp_uri(char *out, size_t outlen, const char *issuer, const char *account,
             const char *secret_b32);

/* Secrets at rest: "v1:" + base64(nonce 12 | AES-256-GCM of the base32
 * text | tag 16), with "studyhub-totp:<user id>" as associated data so a
 * sealed secret only opens for its own user.  The key is TOTP_SECRET_KEY. */
#define TOTP_SEAL_PREFIX "v1:"
#define TOTP_SEAL_NONCE 12
#define TOTP_SEAL_TAG 16
#define TOTP_SEALED_LEN (3 + 80)   /* prefix + base64 of 60 bytes */

/* Seals the base32 secret b32 (TOTP_SECRET_B32_LEN characters) into out
 * (at least TOTP_SEALED_LEN + 1 bytes).  Returns 0, or -1. */
int totp_secret_seal(const unsigned char key[32], int64_t user_id,
                     const char *b32, char *out, size_t outlen);
/* Opens a stored secret into b32 (at least TOTP_SECRET_B32_LEN + 1 bytes).
 * Returns 0 when it was sealed, 1 when it was still plaintext base32 (from
 * before sealing: the caller seals it at its next write), -1 when it does
 * not open (wrong key, wrong user, damaged). */
int totp_secret_open(const unsigned char key[32], int64_t user_id,
                     const char *stored, char *b32, size_t outlen);

#endif
