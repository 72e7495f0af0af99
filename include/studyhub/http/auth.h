/* auth: who is asking.  `Authorization: Token <key>` (API tokens, stored
 * hashed) or the `sessionid` cookie (sessions live in Redis) with the CSRF
 * token: unsafe methods of a session must send X-CSRFToken equal to the
 * `csrftoken` cookie.  Every route declares a policy (router.h) and the
 * server's gate, auth_gate, enforces it before the handler runs.
 *
 * Also the mechanisms the account flows (domain/accounts.c) share: login
 * in one or two steps with its slow-down, sessions, the counters of
 * account emails, the client address, the one second-factor check with
 * its lockout, password hashing and policy, recovery codes.
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
 * - Login slow-down, not lockout (Redis hashes ld:acct:<email> and
 *   ld:addr:<client address>).  Each attempt is counted before it is
 *   checked; past LOGIN_DELAY_FREE_ACCOUNT (or _ADDR) failures, each one
 *   sets the next allowed time 1, 2, 4 ... s ahead, capped at
 *   LOGIN_DELAY_MAX_S; a counter is forgotten LOGIN_RATE_WINDOW_S after
 *   its last failure.  An
 *   address that comes back early gets 429 with Retry-After, uncounted.
 *   The account's delay must not lock its owner out, so a login during it
 *   still goes on, without being counted on the account, "blind": for an
 *   account with TOTP on the answer is a challenge whether the password
 *   was right or not (the challenge remembers which), and only the right
 *   password plus a right code completes it; an account without TOTP
 *   gets 429 (checking its password would give the guesser an answer, so
 *   someone who keeps guessing can keep such an account waiting).  So a
 *   right password and a right second factor always get in, from an
 *   address that is not itself waiting.  A completed login
 *   clears the account's counter and takes its own count off the address.
 * - The client address is the TCP peer, unless the peer is one of
 *   TRUSTED_PROXIES: then it is the right-most X-Forwarded-For address
 *   that is not itself a trusted proxy (auth_client_addr).
 * - Two-factor codes: every check (login/2fa, TOTP confirm and disable,
 *   recovery-code renewal) goes through auth_second_factor_check, which
 *   counts it against one per-user counter (sf:fail:<user>:<epoch>,
 *   TWO_FACTOR_MAX_FAILURES per TWO_FACTOR_LOCKOUT_S) before checking
 *   it; past the limit every check answers 429 until the window ends.  A
 *   right code clears it; a password reset (new epoch) starts a fresh one.
 *   Codes given to a blind challenge whose password was wrong are never
 *   checked nor counted, and a lockout reads as a wrong code there: no
 *   answer may tell the password was right.
 * - Confirming TOTP bumps users.session_epoch (ending every other session
 *   and pending login of the user) and moves this session to the new
 *   epoch, verified.
 * - TOTP secrets are stored sealed with TOTP_SECRET_KEY (AES-256-GCM,
 *   bound to the user id; http/totp.h).  Plaintext secrets of older
 *   versions still work; they are sealed at start
 *   (auth_seal_plain_secrets) and at their next use.
 * - API tokens expire (TOKEN_TTL_DAYS; 401 "Token has expired" after) and
 *   count as two-factor verified only when made by a verified session, or
 *   by an operator (`studyhubctl token create`: the admin socket is open
 *   to the server's own user and root only).  Tokens from before sql/081
 *   are not verified.  A password reset and turning TOTP off delete every
 *   token of the user (the auth_changed notification evicts them from
 *   every server's cache; the cache also keeps each token's expiry).
 * - Two-factor for researcher endpoints (ROUTE_RESEARCHER): a
 *   session needs TOTP on and passed; a token needs its flag.  The gate
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
/* Cookie name of the request's Cookie header into out; false when absent,
 * empty of name, or longer than outlen - 1. */
bool auth_cookie(const struct http_req *req, const char *name, char *out, size_t outlen);

/* The one shape of every cookie we set (the login's session, the runner
 * host's hand-off):
 *   NAME=VALUE; Max-Age=N; Path=/; [HttpOnly; ]SameSite=Lax[; Secure]
 * auth_cookie_line writes it into out (false when it does not fit);
 * auth_set_cookie adds it to req's reply as a Set-Cookie header (a line
 * that does not fit is logged and not set). */
#define AUTH_COOKIE_HTTP_ONLY 1u     /* not readable from scripts */
#define AUTH_COOKIE_SECURE 2u        /* https only */
bool auth_cookie_line(char *out, size_t outlen, const char *name, const char *value,
                      long max_age, unsigned flags);
void auth_set_cookie(struct http_req *req, const char *name, const char *value,
                     long max_age, unsigned flags);
const struct auth_user *auth_user(const struct http_req *req);
bool auth_user_is_2fa_verified(const struct auth_user *u);
/* May this request see research data (rows of other families that the
 * caller's permissions grant)?  Only a two-factor-verified caller: the
 * family routes (ROUTE_FAMILY) show anyone else only their own family. */
bool auth_request_researcher_ok(const struct http_req *req);

/* Whether the request is a browser opening a page: GET or HEAD outside
 * /api/, asking for text/html, with no Authorization header.  The gate
 * sends such a request with no (or an expired) session to
 * /login/?next=<its path>, and answers its refusals with a readable page
 * instead of JSON. */
bool auth_page_navigation(struct http_req *req);

/* The session id of an authenticated session request, else "". */
const char *auth_session_id(const struct http_req *req);



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





/* Marks the session of this request two-factor verified under the user's
 * session epoch `epoch` (TOTP was just confirmed in it, which moved the
 * epoch on), keeping its TTL.  cb(ok, arg) from the loop. */
int auth_session_mark_verified(struct http_req *req, struct app *app, int epoch,
                               void (*cb)(bool ok, void *arg), void *arg);


/* The in-process caches of token and session users (http/auth_cache),
 * kept by the auth_changed notification.  Start after pg_pool_new; stop
 * before pg_pool_free.  Defined in src/http/auth_cache.c, as are the two
 * evictions below. */
struct pg_pool;
int auth_cache_start(struct pg_pool *pg);
void auth_cache_stop(void);

/* Evicts a revoked token here at once (other servers hear the NOTIFY). */
void auth_token_forget(const char *token_hash);

/* Forgets every cached session and token user here at once: call after a
 * write that ended a user's sessions or tokens (a password reset by its
 * emailed link, an erasure).  Other servers hear the NOTIFY. */
void auth_users_changed(void);

#endif
