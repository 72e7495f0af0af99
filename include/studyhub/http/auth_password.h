/* auth_password: API token keys, passwords and recovery codes: how each
 * is made, what the database keeps of it, and the check.  Pure CPU work,
 * no I/O; the argon2 hashing is throttled process-wide (auth_hash_throttle)
 * because it runs on the loop thread. */
#ifndef STUDYHUB_HTTP_AUTH_PASSWORD_H
#define STUDYHUB_HTTP_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

struct http_req;

#define AUTH_EMAIL_MAX 254
#define AUTH_PASSWORD_MAX 1024

/* Tokens: returns a new random key (hex, 40 chars) in out; its SHA-256 is
 * what the database keeps. */
void auth_token_generate(char out[41]);
void auth_token_hash(const char *key, char out_hex[65]);

/* Passwords: argon2id with OWASP's moderate parameters (t=2, m=19456 KiB,
 * p=1).  Hashing or verifying takes ~40 ms of CPU on the loop
 * thread; take auth_hash_throttle first.  Writes the PHC
 * string ($argon2id$v=19$...) into out; returns 0, or -1 if out is too
 * small (AUTH_PASSWORD_HASH_MAX is always enough) or hashing failed. */
#define AUTH_PASSWORD_HASH_MAX 128
int auth_password_hash(const char *password, char *out, size_t outlen);
/* True when password matches the encoded hash ("" never matches). */
bool auth_password_verify(const char *encoded, const char *password);
/* NULL when password is acceptable for email, else why not (a sentence
 * for the error's detail): at least 10 characters, at most 1024 bytes,
 * not the email address. */
const char *auth_password_policy(const char *password, const char *email);
/* One argon2 computation may run now (a process-wide token bucket: at most
 * ~40% of the loop's time).  False: answer auth_reply_throttled(req, 1). */
bool auth_hash_throttle(void);
/* 429 "throttled" with Retry-After. */
void auth_reply_throttled(struct http_req *req, long retry_after_s);

/* A hash of a password nobody has: verified when a login's email is
 * unknown, so that a wrong email and a wrong password take the same time. */
const char *auth_password_dummy_hash(void);

/* Recovery codes: "xxxx-xxxx-xxxx-xxxx" of base32 (80 random bits).
 * hash: SHA-256 hex of the normalised code (lower case, no '-' or
 * spaces); false when it is not 16 base32 characters. */
#define AUTH_RECOVERY_CODES 10
void auth_recovery_code_generate(char out[20]);
bool auth_recovery_code_hash(const char *code, char out_hex[65]);

#endif
