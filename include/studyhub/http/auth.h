/* auth: who is asking.  `Authorization: Token <key>` (API tokens, stored
 * hashed) or the `sessionid` cookie (sessions live in Redis) with the CSRF
 * token: unsafe methods of a session must send X-CSRFToken equal to the
 * `csrftoken` cookie.  Every route declares a policy (router.h) and the
 * server's gate, auth_gate, enforces it before the handler runs.
 *
 * Also the mechanisms the account flows (domain/accounts.c) share: login
 * in one or two steps, sessions, failed-attempt counters in Redis, the
 * second-factor check, password hashing and policy, recovery codes.
 *
 * DECISIONS
 * - Sessions: Redis key session:<64 hex> holding "<user id>:<epoch>:<2fa>",
 *   SESSION_TTL_S.  The epoch must equal users.session_epoch, so bumping
 *   that column (password reset) ends every session of the user at once.
 *   <2fa> is 1 when the session passed a TOTP or recovery code at login,
 *   or confirmed TOTP itself.  Cookies: HttpOnly, SameSite=Lax, Secure per
 *   COOKIE_SECURE (auto: BASE_URL or X-Forwarded-Proto is https).
 * - Login refuses (403 email_not_verified) an account whose address was
 *   never verified; the answer comes only after the right password.
 *   Accounts made by operators, the seed and older versions count as
 *   verified (sql/020).
 * - Login of an account with TOTP on answers 202 with a challenge and no
 *   session; POST /api/v1/auth/login/2fa/ with the challenge and a code
 *   (or a recovery code) completes it.  A challenge lives 5 minutes and
 *   takes 5 codes.
 * - Failed attempts are counted per account and per client address in
 *   Redis (INCR, EXPIRE LOGIN_RATE_WINDOW_S); past LOGIN_RATE_*_MAX the
 *   answer is 429 with Retry-After.  Every attempt (password or code) is
 *   counted before it is checked; a completed login forgives its own.  A
 *   right password does not forgive anything until the second factor
 *   passes, so challenges cannot be farmed.  The client address is the
 *   TCP peer: X-Forwarded-For is not trusted.
 * - Two-factor for researcher endpoints (ROUTE_RESEARCHER): a
 *   session needs TOTP on and passed; API tokens count as verified (the
 *   token API hands them out only to sessions that passed two-factor when
 *   the user is a researcher, and operators make the others).  The gate
 *   asks no role question: permissions decide the rest. */
#ifndef STUDYHUB_HTTP_AUTH_H
#define STUDYHUB_HTTP_AUTH_H

#include <jansson.h>
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
    bool totp_enabled;     /* a confirmed TOTP secret is on the account */
    bool mfa_verified;     /* passed two-factor (see DECISIONS) */
};

/* A route's handler once its policy passed; auth_user(req) is set for the
 * authenticated policies.  Same type as route_handler_fn (router.h). */
typedef void (*auth_next_fn)(struct http_req *req, struct app *app);

/* The server's gate (http_gate_fn; arg is the struct app): enforces
 * route->policy, then runs route->handler.
 * - public, signed: the handler at once (a signed route checks its own
 *   signature first thing).
 * - debug: 404 unless DEBUG_ROUTES=1.
 * - operator: a loopback peer with no X-Forwarded-For or Forwarded
 *   header, or Authorization: Bearer METRICS_TOKEN; else 401.
 * - user, family: the caller is resolved: no credentials or a bad token
 *   -> 401 (WWW-Authenticate: Token); a session write without a matching
 *   CSRF token -> 403 "CSRF Failed: ..."; Redis or PostgreSQL down -> 503.
 * - researcher: user, then 403 "two_factor_required" unless
 *   auth_user_is_2fa_verified.
 * - site_admin: researcher, then 403 "permission_denied" unless a site
 *   admin.
 * The user is freed with the request. */
struct route;
void auth_gate(struct http_req *req, const struct route *route, void *arg);

/* The authenticated user of this request, or NULL. */
const struct auth_user *auth_user(const struct http_req *req);
bool auth_user_is_2fa_verified(const struct auth_user *u);
/* May this request see research data (rows of other families that the
 * caller's permissions grant)?  Only a two-factor-verified caller: the
 * family routes (ROUTE_FAMILY) show anyone else only their own family. */
bool auth_request_researcher_ok(const struct http_req *req);

/* The session id of an authenticated session request, else "". */
const char *auth_session_id(const struct http_req *req);

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

#define AUTH_EMAIL_MAX 254
#define AUTH_PASSWORD_MAX 1024

/* The JSON body of an account endpoint: Content-Type application/json or
 * JSON:API (a cross-site form cannot send either without a CORS preflight,
 * which is what stops login CSRF), a JSON object.  *fields is
 * data.attributes when present, else the object itself (borrowed from the
 * returned reference).  On failure replies 415/400 and returns NULL. */
json_t *auth_read_json(struct http_req *req, json_t **fields);
/* A string field: returns it, or NULL after replying 400 (required,
 * empty, not a string, or longer than max). */
const char *auth_field(struct http_req *req, json_t *fields, const char *name,
                       size_t max);

/* Failed-attempt counters (see DECISIONS).  Each key is INCRed (and given
 * the window on its first hit); fn gets the verdict: LIMITED when any
 * counter passed its max, with the seconds until that window ends. */
enum auth_rate_verdict { AUTH_RATE_OK, AUTH_RATE_LIMITED, AUTH_RATE_UNAVAILABLE };
typedef void (*auth_rate_fn)(enum auth_rate_verdict v, long retry_after_s,
                             void *arg);
struct auth_rate_key {
    char key[320];         /* "rl:<scope>:acct:<email>" or ":addr:<ip>" */
    long max;
};
/* Fills keys[0] (the account, lower-cased email) and keys[1] (the client
 * address) for scope ("login", "signup", "reset", ...), with the
 * LOGIN_RATE_*_MAX limits. */
void auth_rate_keys(struct auth_rate_key keys[2], struct http_req *req,
                    const struct app *app, const char *scope,
                    const char *email);
/* Returns 0, or -1 when the command cannot be queued (fn is not called). */
int auth_rate_hit(struct app *app, const struct auth_rate_key *keys,
                  int nkeys, auth_rate_fn fn, void *arg);
/* 429 "too_many_attempts" with Retry-After. */
void auth_reply_rate_limited(struct http_req *req, long retry_after_s);

/* Second factor of user_id: a TOTP code (accepted once: its time step is
 * recorded and no code of that or an earlier step works again) or a
 * recovery code (single use).  Exactly one of code and recovery_code is
 * given.  Only confirmed TOTP counts. */
enum auth_sf_result {
    AUTH_SF_OK,            /* accepted (and used up) */
    AUTH_SF_BAD,           /* wrong, reused or malformed */
    AUTH_SF_NOT_ENABLED,   /* the user has no confirmed TOTP */
    AUTH_SF_UNAVAILABLE,   /* PostgreSQL down: answer 503 */
    AUTH_SF_ERROR,         /* a query failed: answer 500 */
};
typedef void (*auth_sf_fn)(enum auth_sf_result r, void *arg);
int auth_second_factor_check(struct app *app, int64_t user_id,
                             const char *code, const char *recovery_code,
                             auth_sf_fn fn, void *arg);

/* Recovery codes: "xxxx-xxxx-xxxx-xxxx" of base32 (80 random bits).
 * hash: SHA-256 hex of the normalised code (lower case, no '-' or
 * spaces); false when it is not 16 base32 characters. */
#define AUTH_RECOVERY_CODES 10
void auth_recovery_code_generate(char out[20]);
bool auth_recovery_code_hash(const char *code, char out_hex[65]);

/* Marks the session of this request two-factor verified (after TOTP was
 * confirmed in it), keeping its TTL.  cb(ok, arg) from the loop. */
int auth_session_mark_verified(struct http_req *req, struct app *app,
                               void (*cb)(bool ok, void *arg), void *arg);

/* POST /api/v1/auth/login/, login/2fa/ and logout/: 0, or -1 when the
 * router refused one. */
int auth_routes(struct router *r);

/* The in-process cache of API tokens' users, kept by the auth_changed
 * notification.  Start after pg_pool_new; stop before pg_pool_free. */
struct pg_pool;
int auth_cache_start(struct pg_pool *pg);
void auth_cache_stop(void);
/* Evicts a revoked token here at once (other servers hear the NOTIFY). */
void auth_token_forget(const char *token_hash);

#endif
