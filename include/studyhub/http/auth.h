/* auth: who is asking.  `Authorization: Token <key>` (API tokens, stored
 * hashed) or the `sessionid` cookie (sessions live in Redis) with the CSRF
 * token: unsafe methods of a session must send X-CSRFToken equal to the
 * `csrftoken` cookie.  Handlers wrap themselves with auth_require. */
#ifndef STUDYHUB_HTTP_AUTH_H
#define STUDYHUB_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_req;
struct app;
struct router;

struct auth_user {
    int64_t id;            /* users.id */
    char uuid[37];         /* users.uuid */
    char email[256];
    bool is_researcher;
    bool is_site_admin;    /* member of the site admins (platform reviewers) */
    bool via_session;      /* authenticated by cookie (CSRF applies) */
};

/* Called with the request once authenticated; auth_user(req) is set. */
typedef void (*auth_next_fn)(struct http_req *req, struct app *app);

/* Resolves the caller, then: no credentials or a bad token -> 401 (with
 * WWW-Authenticate: Token); a session write without a matching CSRF token
 * -> 403 "CSRF Failed: ..."; Redis or PostgreSQL down -> 503; otherwise
 * next(req, app).  The user is freed with the request. */
void auth_require(struct http_req *req, struct app *app, auth_next_fn next);

/* The authenticated user of this request, or NULL. */
const struct auth_user *auth_user(const struct http_req *req);

/* Tokens: returns a new random key (hex, 40 chars) in out; its SHA-256 is
 * what the database keeps. */
void auth_token_generate(char out[41]);
void auth_token_hash(const char *key, char out_hex[65]);

/* Passwords: argon2id with OWASP's moderate parameters (t=2, m=19456 KiB,
 * p=1).  Hashing or verifying takes ~40 ms of CPU on the loop
 * thread; login is throttled for that reason (see auth.c).  Writes the PHC
 * string ($argon2id$v=19$...) into out; returns 0, or -1 if out is too
 * small (AUTH_PASSWORD_HASH_MAX is always enough) or hashing failed. */
#define AUTH_PASSWORD_HASH_MAX 128
int auth_password_hash(const char *password, char *out, size_t outlen);
/* True when password matches the encoded hash ("" never matches). */
bool auth_password_verify(const char *encoded, const char *password);

/* POST /api/v1/auth/login/ and /api/v1/auth/logout/. */
void auth_routes(struct router *r);

#endif
