/* auth: resolves who is calling (API token, or Redis session plus CSRF
 * token) before a handler runs; the login (one or two steps) and logout
 * endpoints that create and end sessions; and the mechanisms the account
 * flows share: failed-attempt counters, the second-factor check, password
 * hashing and policy, recovery codes.  Decisions: include/studyhub/http/auth.h. */
#include "studyhub/http/auth.h"

#include <argon2.h>
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/cache.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/totp.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

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

/* Token last_used_at is written at most this often per token, off the
 * request's path, so the hot path stays one indexed SELECT. */
#define AUTH_TOKEN_TOUCH_INTERVAL "1 hour"

/* Session and CSRF ids: 32 random bytes in hex. */
#define AUTH_SESSION_ID_LEN 64
/* Django's CSRF_COOKIE_AGE (one year). */
#define AUTH_CSRF_COOKIE_AGE_S 31449600L

/* A two-factor login challenge: how long it lives and how many codes it
 * takes before the password has to be given again. */
#define AUTH_CHALLENGE_TTL_S 300
#define AUTH_CHALLENGE_TRIES 5

#define AUTH_PASSWORD_MIN 10

/* Per-request authentication state; the request owns it (http_req data,
 * freed with the request), so nothing here outlives the reply. */
struct auth_ctx {
    struct http_req *req;        /* borrowed: the request owns this ctx */
    struct app *app;             /* borrowed */
    auth_next_fn next;           /* runs once authenticated (policy_check) */
    const struct route *route;   /* borrowed: the matched route (static table) */
    bool authenticated;          /* user below is valid */
    struct auth_user user;       /* the caller */
    int session_epoch;           /* of the session (sessions only) */
    char token_hash[65];         /* hex SHA-256 of the token ("" for sessions) */
    uint64_t token_ticket;       /* token cache generation before the lookup */
    bool token_cacheable;        /* notifications flowed when the lookup began */
    char session_id[AUTH_SESSION_ID_LEN + 1]; /* "" unless session auth */
    bool runner;                 /* a runner key (Authorization: Runner) */
};

/* Column order of the caller lookups (id, uuid, email, is_researcher,
 * is_site_admin, is_active, totp_on, then per statement). */
enum { UC_ID, UC_UUID, UC_EMAIL, UC_RESEARCHER, UC_SITE_ADMIN, UC_ACTIVE,
       UC_TOTP, UC_EXTRA };

#define TOTP_ON(u) \
    "EXISTS (SELECT 1 FROM user_totp tt WHERE tt.user_id = " u \
    " AND tt.confirmed_at IS NOT NULL)"

/* + (touch due, made by a two-factor verified session, expiry as epoch
 * seconds, expired). */
enum { TC_TOUCH = UC_EXTRA, TC_MFA, TC_EXPIRES, TC_EXPIRED };
static const struct pg_stmt auth_token_user_stmt = {
    "auth_token_user",
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active,"
    "       " TOTP_ON("u.id") ","
    "       (t.last_used_at IS NULL OR"
    "        t.last_used_at < now() - interval '" AUTH_TOKEN_TOUCH_INTERVAL "'),"
    "       t.mfa_verified, extract(epoch FROM t.expires_at)::bigint,"
    "       t.expires_at <= now()"
    "  FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = $1",
};

static const struct pg_stmt auth_token_touch_stmt = {
    "auth_token_touch",
    "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = $1",
};

static const struct pg_stmt auth_session_user_stmt = {
    "auth_session_user",
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active,"
    "       " TOTP_ON("u.id") ", u.session_epoch"
    "  FROM users u WHERE u.id = $1::bigint",
};

/* Login lookups: + (password_hash, session_epoch, email verified). */
enum { LC_HASH = UC_EXTRA, LC_EPOCH, LC_VERIFIED };
#define LOGIN_COLUMNS \
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active," \
    "       " TOTP_ON("u.id") ", u.password_hash, u.session_epoch," \
    "       u.email_verified_at IS NOT NULL FROM users u "

static const struct pg_stmt auth_login_stmt = {
    "auth_login", LOGIN_COLUMNS "WHERE lower(u.email) = lower($1)",
};

static const struct pg_stmt auth_login_by_id_stmt = {
    "auth_login_by_id", LOGIN_COLUMNS "WHERE u.id = $1::bigint",
};

static const struct pg_stmt auth_last_login_stmt = {
    "auth_last_login",
    "UPDATE users SET last_login = now() WHERE id = $1::bigint",
};

/* Second factor: the secret (confirmed, or pending for enrolment) with
 * the user's session epoch (the failure counter's key), then the
 * conditional claim of its time step (no code is accepted twice, across
 * servers; a plaintext secret is sealed on the way), or the use of a
 * recovery code. */
static const struct pg_stmt auth_sf_load_stmt = {
    "auth_sf_load",
    "SELECT t.secret, t.last_step, t.confirmed_at IS NOT NULL, u.session_epoch"
    "  FROM users u LEFT JOIN user_totp t ON t.user_id = u.id"
    " WHERE u.id = $1::bigint",
};
enum { SFC_SECRET, SFC_LAST, SFC_CONFIRMED, SFC_EPOCH };

static const struct pg_stmt auth_sf_step_stmt = {
    "auth_sf_step",
    "UPDATE user_totp SET last_step = $2::bigint, secret = $4"
    " WHERE user_id = $1::bigint AND last_step < $2::bigint AND secret = $3"
    "   AND confirmed_at IS NOT NULL RETURNING 1",
};

static const struct pg_stmt auth_sf_recovery_stmt = {
    "auth_sf_recovery",
    "UPDATE user_recovery_codes SET used_at = now()"
    " WHERE user_id = $1::bigint AND code_hash = $2 AND used_at IS NULL"
    " RETURNING 1",
};

/* Redis scripts (EVAL: atomic, one round trip). */

/* Counts one attempt on each key; the window starts at the first.  A key
 * found without a TTL (it should not happen) gets one, so no counter can
 * lock anyone out forever.  Returns {n1, ttl1, n2, ttl2, ...}. */
static const char rate_script[] =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  local n = redis.call('INCR', k) "
    "  local t = redis.call('TTL', k) "
    "  if t < 0 then redis.call('EXPIRE', k, ARGV[1]); t = tonumber(ARGV[1]) end "
    "  out[#out + 1] = n; out[#out + 1] = t "
    "end "
    "return out";

/* Login slow-down.  KEYS: the account's and the address's hashes {n:
 * failures counted, until: ms before which no attempt is checked}.  ARGV:
 * LOGIN_DELAY_MAX_S, LOGIN_RATE_WINDOW_S, then LOGIN_DELAY_FREE_ACCOUNT and
 * LOGIN_DELAY_FREE_ADDR (the free failures of each key), then
 * LOGIN_DELAY_FIRST_MS.  Returns {account
 * wait ms, address wait ms}.  An address still waiting is refused, and not
 * counted.  Otherwise the attempt is counted before it is checked (so a
 * burst sent at once cannot all slip in): the address always, the account
 * only when it is not itself waiting (a login during the account's delay
 * is not counted on it: see auth.h on why it still goes on).  Each count
 * past the free ones sets the next allowed time first, 2 x first, 4 x
 * first ... ms (capped) ahead.  The server's clock is Redis's, shared by every server. */
static const char delay_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local cap, win = tonumber(ARGV[1]) * 1000, tonumber(ARGV[2]) "
    "local wait = {0, 0} "
    "for i, k in ipairs(KEYS) do "
    "  local u = tonumber(redis.call('HGET', k, 'until') or '0') or 0 "
    "  if u > now then wait[i] = u - now end "
    "end "
    "if wait[2] > 0 then return wait end "
    "for i, k in ipairs(KEYS) do "
    "  if i == 2 or wait[1] == 0 then "
    "    local n = redis.call('HINCRBY', k, 'n', 1) "
    "    local free = tonumber(ARGV[2 + i]) "
    "    local d = 0 "
    "    if n > free then d = math.min(cap, tonumber(ARGV[5]) * 2 ^ math.min(n - free - 1, 30)) end "
    "    redis.call('HSET', k, 'until', now + d) "
    "    redis.call('EXPIRE', k, win + math.ceil(d / 1000)) "
    "  end "
    "end "
    "return wait";

/* A completed login: the account starts afresh; the address takes back
 * this login's own count (its delay stays: a login to an account of one's
 * own must not clear the way for guesses at another). */
static const char forgive_script[] =
    "redis.call('DEL', KEYS[1]) "
    "local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0') or 0 "
    "if n > 0 then redis.call('HINCRBY', KEYS[2], 'n', -1) end "
    "return 1";

/* Two-factor codes, every endpoint together.  KEYS[1]: the user's failure
 * counter; ARGV: TWO_FACTOR_MAX_FAILURES, TWO_FACTOR_LOCKOUT_S.  Returns 0
 * and counts this attempt (taken back when the code is right), or the
 * seconds the lockout has left. */
static const char sf_limit_script[] =
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0 "
    "if n >= tonumber(ARGV[1]) then "
    "  local t = redis.call('TTL', KEYS[1]) "
    "  if t < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]); t = tonumber(ARGV[2]) end "
    "  return t "
    "end "
    "if redis.call('INCR', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
    "return 0";

/* A challenge's value and how many codes it has now been given. */
static const char challenge_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then return false end "
    "local n = redis.call('INCR', KEYS[2]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end "
    "return {v, n}";

/* ------------------------------------------------------------ helpers */

static bool is_hex(const char *s, size_t want_len)
{
    size_t i;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return i == want_len;
}

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
static const char *dummy_hash(void)
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

void auth_reply_rate_limited(struct http_req *req, long retry_after_s)
{
    char ra[24];
    if (retry_after_s < 1)
        retry_after_s = 1;
    snprintf(ra, sizeof ra, "%ld", retry_after_s);
    http_add_header(req, "Retry-After", ra);
    jsonapi_reply_errorf(req, 429, "too_many_attempts", NULL,
                         "Too many failed attempts. Try again in %ld second%s.",
                         retry_after_s, retry_after_s == 1 ? "" : "s");
}

/* Finds cookie `name` in the Cookie header; false when absent, empty of
 * name, or longer than outlen - 1. */
static bool cookie_get(const struct http_req *req, const char *name,
                       char *out, size_t outlen)
{
    const char *h = http_req_header(req, "Cookie");
    size_t nlen = strlen(name);
    if (!h)
        return false;
    while (*h) {
        while (*h == ' ' || *h == '\t' || *h == ';')
            h++;
        const char *end = strchr(h, ';');
        size_t len = end ? (size_t)(end - h) : strlen(h);
        if (len > nlen && strncmp(h, name, nlen) == 0 && h[nlen] == '=') {
            const char *v = h + nlen + 1;
            size_t vlen = len - nlen - 1;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= outlen)
                return false;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        h += len;
    }
    return false;
}

static bool method_is_safe(enum http_method m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS;
}

/* Django's check: the X-CSRFToken header equals the csrftoken cookie.
 * Header names are case-insensitive, so X-CSRFTOKEN (the runner) works. */
static bool csrf_ok(const struct http_req *req)
{
    char cookie[256];
    const char *hdr = http_req_header(req, "X-CSRFToken");
    if (!cookie_get(req, "csrftoken", cookie, sizeof cookie) || !cookie[0] ||
        !hdr || !hdr[0])
        return false;
    size_t len = strlen(cookie);
    return strlen(hdr) == len && CRYPTO_memcmp(hdr, cookie, len) == 0;
}

/* COOKIE_SECURE: 1, 0, or auto (BASE_URL is https, or a TLS-terminating
 * proxy says so; a client lying about it only hurts its own cookies). */
static bool cookies_secure(struct http_req *req, const struct app *app)
{
    const struct config *cfg = app->cfg;
    const char *mode = cfg && cfg->cookie_secure ? cfg->cookie_secure : "auto";
    if (strcmp(mode, "1") == 0)
        return true;
    if (strcmp(mode, "0") == 0)
        return false;
    if (cfg && cfg->base_url && strncasecmp(cfg->base_url, "https://", 8) == 0)
        return true;
    const char *proto = http_req_header(req, "X-Forwarded-Proto");
    return proto && strncasecmp(proto, "https", 5) == 0 &&
           (proto[5] == '\0' || proto[5] == ',' || proto[5] == ' ');
}

/* Sets (or with max_age 0 clears) the session and CSRF cookies. */
static void set_auth_cookies(struct http_req *req, const struct app *app,
                             const char *session_id, const char *csrf,
                             long session_age)
{
    char buf[256];
    const char *secure = cookies_secure(req, app) ? "; Secure" : "";
    snprintf(buf, sizeof buf,
             "sessionid=%s; Max-Age=%ld; Path=/; HttpOnly; SameSite=Lax%s",
             session_id, session_age, secure);
    http_add_header(req, "Set-Cookie", buf);
    /* Not HttpOnly: the runner reads it from document.cookie. */
    snprintf(buf, sizeof buf, "csrftoken=%s; Max-Age=%ld; Path=/; SameSite=Lax%s",
             csrf, session_age ? AUTH_CSRF_COOKIE_AGE_S : 0L, secure);
    http_add_header(req, "Set-Cookie", buf);
}

static void reply_internal(struct http_req *req, const char *what,
                           const PGresult *res)
{
    log_error("auth: %s failed: %s", what,
              res ? PQresultErrorMessage(res) : "no result");
    jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
}

static void fill_user(struct auth_user *u, const PGresult *res)
{
    memset(u, 0, sizeof *u);
    u->id = strtoll(PQgetvalue(res, 0, UC_ID), NULL, 10);
    snprintf(u->uuid, sizeof u->uuid, "%s", PQgetvalue(res, 0, UC_UUID));
    snprintf(u->email, sizeof u->email, "%s", PQgetvalue(res, 0, UC_EMAIL));
    u->is_researcher = PQgetvalue(res, 0, UC_RESEARCHER)[0] == 't';
    u->is_site_admin = PQgetvalue(res, 0, UC_SITE_ADMIN)[0] == 't';
    u->totp_enabled = PQgetvalue(res, 0, UC_TOTP)[0] == 't';
}

static void ignore_result(PGresult *res, void *arg)
{
    const char *what = arg;
    if (res && !pg_ok(res))
        log_warn("auth: %s failed: %s", what, PQresultErrorMessage(res));
}

static void ignore_reply(redisReply *reply, void *arg)
{
    const char *what = arg;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("auth: redis %s: %s", what, reply->str);
}

/* ------------------------------------------------------------ request bodies */

static bool content_type_is_json(const struct http_req *req)
{
    const char *ct = http_req_header(req, "Content-Type");
    if (!ct)
        return false;
    return strncasecmp(ct, "application/json", 16) == 0 ||
           strncasecmp(ct, JSONAPI_MEDIA_TYPE, strlen(JSONAPI_MEDIA_TYPE)) == 0;
}

json_t *auth_read_json(struct http_req *req, json_t **fields)
{
    size_t len = 0;
    const char *raw = http_req_body(req, &len);
    json_error_t jerr;

    if (!content_type_is_json(req)) {
        const char *ct = http_req_header(req, "Content-Type");
        jsonapi_reply_errorf(req, 415, "unsupported_media_type", "/data",
                             "Unsupported media type \"%.100s\" in request.",
                             ct ? ct : "");
        return NULL;
    }
    json_t *body = raw ? json_loadb(raw, len, 0, &jerr) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        jsonapi_reply_errorf(req, 400, "parse_error", "/data",
                             "JSON parse error - expected an object.");
        return NULL;
    }
    json_t *attrs = json_object_get(json_object_get(body, "data"), "attributes");
    *fields = json_is_object(attrs) ? attrs : body;
    return body;
}

const char *auth_field(struct http_req *req, json_t *fields, const char *name,
                       size_t max)
{
    char pointer[64];
    json_t *v = json_object_get(fields, name);
    snprintf(pointer, sizeof pointer, "/%s", name);
    if (!v || json_is_null(v)) {
        jsonapi_reply_errorf(req, 400, "required", pointer, "This field is required.");
        return NULL;
    }
    if (!json_is_string(v)) {
        jsonapi_reply_errorf(req, 400, "invalid", pointer, "Not a valid string.");
        return NULL;
    }
    const char *s = json_string_value(v);
    if (!s[0]) {
        jsonapi_reply_errorf(req, 400, "blank", pointer, "This field may not be blank.");
        return NULL;
    }
    if (strlen(s) > max || strlen(s) != json_string_length(v)) {
        jsonapi_reply_errorf(req, 400, "invalid", pointer,
                             "Ensure this field has no more than %zu characters"
                             " and no NUL characters.", max);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------ rate limits */

/* Trims spaces and tabs around [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t'))
        (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

void auth_client_addr(const struct http_req *req, const struct app *app,
                      char *out, size_t outlen)
{
    const struct config *cfg = app->cfg;
    const char *peer = http_req_peer(req);
    const char *xff = http_req_header(req, "X-Forwarded-For");

    snprintf(out, outlen, "%s", peer ? peer : "");
    if (!xff || !cfg->n_trusted_proxies ||
        !config_addr_in(cfg->trusted_proxies_list, cfg->n_trusted_proxies, peer))
        return;
    /* Right to left: each trusted proxy appended the address it got the
     * request from; the first one no trusted proxy vouches for is the
     * client.  Anything left of it the client may have made up. */
    size_t end = strlen(xff);
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        const char *item = xff + start;
        size_t len = end - start;
        char ip[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        trim(&item, &len);
        if (len == 0 || len >= sizeof ip)
            return;                  /* malformed: keep the last good one */
        memcpy(ip, item, len);
        ip[len] = '\0';
        if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)
            return;
        snprintf(out, outlen, "%s", ip);
        if (!config_addr_in(cfg->trusted_proxies_list, cfg->n_trusted_proxies, ip))
            return;
        end = start > 0 ? start - 1 : 0;
    }
}

void auth_rate_keys(struct auth_rate_key keys[2], struct http_req *req,
                    const struct app *app, const char *scope,
                    const char *email)
{
    char addr[INET6_ADDRSTRLEN + 1];

    size_t n = (size_t)snprintf(keys[0].key, sizeof keys[0].key,
                                "rl:%s:acct:", scope);
    /* ASCII lower case, as the lower(email) the lookups use. */
    for (const char *p = email ? email : ""; *p && n + 1 < sizeof keys[0].key; p++)
        keys[0].key[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    keys[0].key[n] = '\0';
    keys[0].max = app->cfg->mail_rate_account_max;
    auth_client_addr(req, app, addr, sizeof addr);
    snprintf(keys[1].key, sizeof keys[1].key, "rl:%s:addr:%s", scope, addr);
    keys[1].max = app->cfg->mail_rate_addr_max;
}

/* One auth_rate_hit in flight. */
struct rate_ctx {
    auth_rate_fn fn;              /* the caller's verdict callback */
    void *arg;                    /* borrowed */
    long max[4];                  /* limit of each key */
    int nkeys;
};

static void rate_done(redisReply *reply, void *arg)
{
    struct rate_ctx *rc = arg;
    enum auth_rate_verdict v = AUTH_RATE_OK;
    long retry = 0;

    if (!reply || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != (size_t)(2 * rc->nkeys)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("auth: redis rate script: %s", reply->str);
        v = AUTH_RATE_UNAVAILABLE;
        goto out;
    }
    for (int i = 0; i < rc->nkeys; i++) {
        long long n = reply->element[2 * i]->integer;
        long long ttl = reply->element[2 * i + 1]->integer;
        if (n > rc->max[i]) {
            v = AUTH_RATE_LIMITED;
            if (ttl > retry)
                retry = (long)ttl;
        }
    }
out:
    rc->fn(v, retry, rc->arg);
    free(rc);
}

int auth_rate_hit(struct app *app, const struct auth_rate_key *keys,
                  int nkeys, auth_rate_fn fn, void *arg)
{
    const char *argv[8];
    size_t argl[8];
    char nk[8], window[24];
    struct rate_ctx *rc;

    if (nkeys < 1 || nkeys > 4)
        return -1;
    rc = calloc(1, sizeof *rc);
    if (!rc)
        return -1;
    rc->fn = fn;
    rc->arg = arg;
    rc->nkeys = nkeys;
    snprintf(nk, sizeof nk, "%d", nkeys);
    snprintf(window, sizeof window, "%ld", app->cfg->login_rate_window_s);
    argv[0] = "EVAL";
    argv[1] = rate_script;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i].key;
        rc->max[i] = keys[i].max;
    }
    argv[3 + nkeys] = window;
    for (int i = 0; i < 4 + nkeys; i++)
        argl[i] = strlen(argv[i]);
    if (redis_cmdargv(app->redis, rate_done, rc, 4 + nkeys, argv, argl) != 0) {
        free(rc);
        return -1;
    }
    return 0;
}

/* The login slow-down's keys: the account (lower-cased email) and the
 * client address. */
static void delay_keys(char acct[320], char addr_key[96], struct http_req *req,
                       const struct app *app, const char *email)
{
    char addr[INET6_ADDRSTRLEN + 1];
    size_t n = (size_t)snprintf(acct, 320, "ld:acct:");
    for (const char *p = email; *p && n + 1 < 320; p++)
        acct[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    acct[n] = '\0';
    auth_client_addr(req, app, addr, sizeof addr);
    snprintf(addr_key, 96, "ld:addr:%s", addr);
}

/* A completed login forgives the account (fire and forget). */
static void delay_forgive(struct app *app, const char *acct, const char *addr_key)
{
    const char *argv[5] = { "EVAL", forgive_script, "2", acct, addr_key };
    size_t argl[5];
    for (int i = 0; i < 5; i++)
        argl[i] = strlen(argv[i]);
    redis_cmdargv(app->redis, ignore_reply, (void *)"forgive", 5, argv, argl);
}

/* ------------------------------------------------------------ second factor */

/* Steps of one auth_second_factor_check. */
enum sf_state {
    SF_LOAD,       /* the secret, its last step and the session epoch (PostgreSQL) */
    SF_LIMIT,      /* the user's lockout, and counting this attempt (Redis) */
    SF_STEP,       /* claim the matched time step */
    SF_RECOVERY,   /* use up the recovery code */
};

struct sf_ctx {
    struct app *app;              /* borrowed */
    enum sf_state state;
    auth_sf_fn fn;                /* the caller's callback */
    void *arg;                    /* borrowed */
    enum auth_sf_kind kind;
    bool quiet_lock;              /* a lockout reads as AUTH_SF_BAD */
    int64_t uid;
    char user_id[24];
    char code[16];                /* TOTP code as given ("" if recovery) */
    char recovery_hash[65];       /* "" unless a well-formed recovery code */
    char stored[TOTP_SEALED_LEN + 1];         /* the secret column as read */
    char sealed[TOTP_SEALED_LEN + 1];         /* what the claim writes back */
    char secret[TOTP_SECRET_B32_LEN + 1];     /* opened */
    int64_t last_step;
    char limit_key[64];           /* "sf:fail:<user>:<epoch>" */
    int64_t step;                 /* matched time step */
    char step_text[24];
};

static void sf_finish(struct sf_ctx *sf, enum auth_sf_result r, long retry)
{
    struct auth_sf_outcome o = { .result = r, .retry_after_s = retry };

    if (r == AUTH_SF_LOCKED && sf->quiet_lock)
        o.result = AUTH_SF_BAD;
    /* A right code clears the user's failures (fire and forget). */
    if (r == AUTH_SF_OK && sf->limit_key[0])
        redis_cmd(sf->app->redis, ignore_reply, (void *)"sf clear", "DEL %s",
                  sf->limit_key);
    if (r == AUTH_SF_OK && sf->kind == AUTH_SF_ENROL) {
        o.step = sf->step;
        o.stored_secret = sf->stored;
    }
    sf->fn(&o, sf->arg);
    OPENSSL_cleanse(sf, sizeof *sf);
    free(sf);
}

static void sf_done(PGresult *res, void *arg);

static void sf_run(struct sf_ctx *sf, const struct pg_stmt *stmt, int n,
                   const char *const *p)
{
    if (pg_exec(sf->app->pg, stmt, n, p, sf_done, sf) != 0)
        sf_finish(sf, AUTH_SF_UNAVAILABLE, 0);
}

/* The code against the opened secret (TOTP and enrolment). */
static bool sf_code_matches(struct sf_ctx *sf)
{
    unsigned char key[TOTP_SECRET_BYTES + 8];
    int klen = totp_base32_decode(sf->secret, key, sizeof key);
    sf->step = klen > 0 ? totp_verify(key, (size_t)klen, sf->code, time(NULL),
                                      sf->last_step)
                        : -1;
    OPENSSL_cleanse(key, sizeof key);
    return sf->step >= 0;
}

/* The attempt is counted: check it. */
static void sf_check(struct sf_ctx *sf)
{
    if (sf->kind == AUTH_SF_RECOVERY) {
        if (!sf->recovery_hash[0]) {
            sf_finish(sf, AUTH_SF_BAD, 0);
            return;
        }
        sf->state = SF_RECOVERY;
        const char *p[2] = { sf->user_id, sf->recovery_hash };
        sf_run(sf, &auth_sf_recovery_stmt, 2, p);
        return;
    }
    if (!sf_code_matches(sf)) {
        sf_finish(sf, AUTH_SF_BAD, 0);
        return;
    }
    if (sf->kind == AUTH_SF_ENROL) {      /* the caller's write claims the step */
        sf_finish(sf, AUTH_SF_OK, 0);
        return;
    }
    sf->state = SF_STEP;
    snprintf(sf->step_text, sizeof sf->step_text, "%lld", (long long)sf->step);
    const char *p[4] = { sf->user_id, sf->step_text, sf->stored, sf->sealed };
    sf_run(sf, &auth_sf_step_stmt, 4, p);
}

static void sf_limit_done(redisReply *reply, void *arg)
{
    struct sf_ctx *sf = arg;

    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("auth: redis two-factor limit: %s", reply->str);
        sf_finish(sf, AUTH_SF_REDIS_UNAVAILABLE, 0);
        return;
    }
    if (reply->integer > 0) {
        sf_finish(sf, AUTH_SF_LOCKED, (long)reply->integer);
        return;
    }
    sf_check(sf);
}

/* After the load: is there a secret to check against?  Then the limit. */
static void sf_after_load(struct sf_ctx *sf, const PGresult *res)
{
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, SFC_SECRET)) {
        sf_finish(sf, AUTH_SF_NOT_ENABLED, 0);
        return;
    }
    bool confirmed = PQgetvalue(res, 0, SFC_CONFIRMED)[0] == 't';
    if (sf->kind == AUTH_SF_ENROL && confirmed) {
        sf_finish(sf, AUTH_SF_ALREADY_ON, 0);
        return;
    }
    if (sf->kind != AUTH_SF_ENROL && !confirmed) {
        sf_finish(sf, AUTH_SF_NOT_ENABLED, 0);
        return;
    }
    snprintf(sf->stored, sizeof sf->stored, "%s", PQgetvalue(res, 0, SFC_SECRET));
    sf->last_step = strtoll(PQgetvalue(res, 0, SFC_LAST), NULL, 10);
    if (sf->kind != AUTH_SF_RECOVERY) {
        const unsigned char *key = sf->app->cfg->totp_key;
        int opened = totp_secret_open(key, sf->uid, sf->stored, sf->secret,
                                      sizeof sf->secret);
        if (opened < 0) {
            log_error("auth: the two-factor secret of user %s does not open with"
                      " TOTP_SECRET_KEY (changed key?)", sf->user_id);
            sf_finish(sf, AUTH_SF_ERROR, 0);
            return;
        }
        /* A plaintext secret from before sealing is sealed by the claim. */
        if (opened == 0)
            memcpy(sf->sealed, sf->stored, sizeof sf->sealed);
        else if (totp_secret_seal(key, sf->uid, sf->secret, sf->sealed,
                                  sizeof sf->sealed) != 0) {
            sf_finish(sf, AUTH_SF_ERROR, 0);
            return;
        }
    }
    snprintf(sf->limit_key, sizeof sf->limit_key, "sf:fail:%s:%s", sf->user_id,
             PQgetvalue(res, 0, SFC_EPOCH));
    char max[24], lock[24];
    snprintf(max, sizeof max, "%ld", sf->app->cfg->two_factor_max_failures);
    snprintf(lock, sizeof lock, "%ld", sf->app->cfg->two_factor_lockout_s);
    const char *argv[6] = { "EVAL", sf_limit_script, "1", sf->limit_key, max, lock };
    size_t argl[6];
    for (int i = 0; i < 6; i++)
        argl[i] = strlen(argv[i]);
    sf->state = SF_LIMIT;
    if (redis_cmdargv(sf->app->redis, sf_limit_done, sf, 6, argv, argl) != 0)
        sf_finish(sf, AUTH_SF_REDIS_UNAVAILABLE, 0);
}

static void sf_done(PGresult *res, void *arg)
{
    struct sf_ctx *sf = arg;

    if (!res) {
        sf_finish(sf, AUTH_SF_UNAVAILABLE, 0);
        return;
    }
    if (!pg_ok(res)) {
        log_error("auth: second factor query failed: %s", PQresultErrorMessage(res));
        sf_finish(sf, AUTH_SF_ERROR, 0);
        return;
    }
    switch (sf->state) {
    case SF_LOAD:
        sf_after_load(sf, res);
        return;
    case SF_LIMIT:       /* Redis answers that step */
        return;
    case SF_STEP:        /* no row: that step was used meanwhile (replay) */
    case SF_RECOVERY:    /* no row: unknown or already used */
        sf_finish(sf, PQntuples(res) == 1 ? AUTH_SF_OK : AUTH_SF_BAD, 0);
        return;
    }
}

int auth_second_factor_check(struct app *app, const struct auth_sf_request *rq,
                             auth_sf_fn fn, void *arg)
{
    struct sf_ctx *sf = calloc(1, sizeof *sf);
    if (!sf)
        return -1;
    sf->app = app;
    sf->fn = fn;
    sf->arg = arg;
    sf->kind = rq->kind;
    sf->quiet_lock = rq->quiet_lock;
    sf->state = SF_LOAD;
    sf->uid = rq->user_id;
    snprintf(sf->user_id, sizeof sf->user_id, "%lld", (long long)rq->user_id);
    if (rq->kind == AUTH_SF_RECOVERY) {
        if (!rq->code || !auth_recovery_code_hash(rq->code, sf->recovery_hash))
            sf->recovery_hash[0] = '\0';
    } else {
        snprintf(sf->code, sizeof sf->code, "%s", rq->code ? rq->code : "");
    }
    const char *p[1] = { sf->user_id };
    if (pg_exec(app->pg, &auth_sf_load_stmt, 1, p, sf_done, sf) != 0) {
        free(sf);
        return -1;
    }
    return 0;
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

/* ------------------------------------------------------------ auth_require */

static void auth_proceed(struct auth_ctx *ctx)
{
    ctx->authenticated = true;
    /* The request log line names who asked (issue 15: who read what). */
    http_req_set_log_user(ctx->req, ctx->user.uuid);
    ctx->next(ctx->req, ctx->app);
}

/* API tokens resolved to their users, by token hash.  Every runner PATCH
 * carries a token or session; this saves the token's round trip.  Kept
 * right by the auth_changed notification (sql/004, sql/060): a revoked
 * token or a changed user is evicted on every server at commit; while
 * notifications are not flowing the cache is bypassed. */
static struct cache *token_users;           /* owned; NULL when off */
static struct pg_pool *token_users_pg;       /* borrowed */

#define TOKEN_USERS_MAX 65536
#define TOKEN_USERS_TTL_S 60

/* What the cache keeps per token: its user and when it stops working (so
 * a cached token still expires to the second). */
struct token_entry {
    struct auth_user user;        /* mfa_verified is the token's flag */
    int64_t expires_at;           /* epoch seconds */
};

static void token_users_notified(const char *channel, const char *payload, void *arg)
{
    if (!token_users)
        return;
    if (payload && *payload)
        cache_del(token_users, payload);
    else
        cache_clear(token_users);   /* resync, or a user changed */
}

int auth_cache_start(struct pg_pool *pg)
{
    token_users = cache_new(TOKEN_USERS_MAX, TOKEN_USERS_TTL_S);
    if (!token_users)
        return -1;
    token_users_pg = pg;
    if (pg_pool_listen(pg, "auth_changed", token_users_notified, NULL) < 0) {
        cache_free(token_users);
        token_users = NULL;
        return -1;
    }
    return 0;
}

void auth_token_forget(const char *token_hash)
{
    if (token_users)
        cache_del(token_users, token_hash);
}

void auth_cache_stop(void)
{
    cache_free(token_users);
    token_users = NULL;
    token_users_pg = NULL;
}

static bool token_users_usable(void)
{
    return token_users && pg_pool_listening(token_users_pg);
}

static void reply_token_expired(struct http_req *req)
{
    jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                         "Token has expired: make a new one.");
}

static void token_user_done(PGresult *res, void *arg)
{
    struct auth_ctx *ctx = arg;
    struct http_req *req = ctx->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        return;
    }
    if (!pg_ok(res)) {
        reply_internal(req, "token lookup", res);
        return;
    }
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "Invalid token.");
        return;
    }
    if (PQgetvalue(res, 0, UC_ACTIVE)[0] != 't') {
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "User inactive or deleted.");
        return;
    }
    if (PQgetvalue(res, 0, TC_EXPIRED)[0] == 't') {
        reply_token_expired(req);
        return;
    }
    struct token_entry e;
    fill_user(&e.user, res);
    /* Verified when a two-factor verified session, or an operator, made
     * it (turning two-factor off deletes the user's tokens). */
    e.user.mfa_verified = PQgetvalue(res, 0, TC_MFA)[0] == 't';
    e.expires_at = strtoll(PQgetvalue(res, 0, TC_EXPIRES), NULL, 10);
    ctx->user = e.user;
    if (ctx->token_cacheable && token_users_usable())
        cache_put(token_users, ctx->token_ticket, ctx->token_hash, &e, sizeof e);
    if (PQgetvalue(res, 0, TC_TOUCH)[0] == 't') {
        const char *p[1] = { ctx->token_hash };
        pg_exec(ctx->app->pg, &auth_token_touch_stmt, 1, p, ignore_result,
                (void *)"token touch");
    }
    auth_proceed(ctx);
}

bool auth_page_navigation(struct http_req *req)
{
    enum http_method m = http_req_method(req);
    const char *accept = http_req_header(req, "Accept");

    return (m == HTTP_GET || m == HTTP_HEAD) && strncmp(http_req_path(req), "/api/", 5) != 0 &&
           !http_req_header(req, "Authorization") && accept && strstr(accept, "text/html");
}

/* A readable refusal for a browser's page (the gate's JSON is for API
 * clients).  title and text are constant HTML. */
static void reply_page(struct http_req *req, int status, const char *title,
                       const char *text, const char *href, const char *link)
{
    char *body = util_asprintf(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>%s – studyhub</title><link rel=\"stylesheet\" href=\"/css/site.css\">"
        "</head><body><main id=\"main\"><h1>%s</h1><p>%s</p>"
        "<p><a href=\"%s\">%s</a></p></main></body></html>\n",
        title, title, text, href, link);

    http_add_header(req, "Cache-Control", "no-store");
    if (!body) {
        http_reply(req, status, "text/plain; charset=utf-8", title, strlen(title));
        return;
    }
    http_reply(req, status, "text/html; charset=utf-8", body, strlen(body));
    free(body);
}

/* "/login/?next=" and the page's path and query, percent-encoded but for
 * the slashes (the login page takes back only a plain path). */
static char *login_location(struct http_req *req)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *path = http_req_path(req);
    const char *query = http_req_query_string(req);
    size_t n = strlen(path) + (query && *query ? strlen(query) + 1 : 0);
    char *out = malloc(sizeof "/login/?next=" + 3 * n);
    char *o;

    if (!out)
        return NULL;
    o = out + sprintf(out, "/login/?next=");
    for (int part = 0; part < 2; part++) {
        const char *p = part ? query : path;
        if (part && (!query || !*query))
            break;
        if (part) {
            memcpy(o, "%3F", 3);
            o += 3;
        }
        for (; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
                *o++ = (char)c;
            } else {
                *o++ = '%';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
        }
    }
    *o = '\0';
    return out;
}

/* No session, or one that expired: a browser opening a page (the runner's,
 * say) goes to log in and comes back; an API client gets the 401. */
static void reply_no_session(struct http_req *req)
{
    if (auth_page_navigation(req)) {
        char *loc = login_location(req);
        if (loc) {
            http_add_header(req, "Location", loc);
            free(loc);
            reply_page(req, 302, "Please log in", "Your session has ended: log in to go on.",
                       "/login/", "Log in");
            return;
        }
    }
    jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                         "Authentication credentials were not provided.");
}

/* The session's value: "<user id>:<epoch>:<2fa 0|1>". */
struct session_value {
    long long uid;
    int epoch;
    bool mfa;
};

static bool session_value_parse(const char *s, size_t len, struct session_value *v)
{
    char buf[64], *end;
    if (len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v->uid = strtoll(buf, &end, 10);
    if (errno || v->uid <= 0 || *end != ':')
        return false;
    long e = strtol(end + 1, &end, 10);
    if (errno || e < 0 || e > 1000000000L || *end != ':')
        return false;
    v->epoch = (int)e;
    if ((end[1] != '0' && end[1] != '1') || end[2] != '\0')
        return false;
    v->mfa = end[1] == '1';
    return true;
}

static void session_user_done(PGresult *res, void *arg)
{
    struct auth_ctx *ctx = arg;
    struct http_req *req = ctx->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        return;
    }
    if (!pg_ok(res)) {
        reply_internal(req, "session user lookup", res);
        return;
    }
    /* A session of a deleted or deactivated user, or one from before a
     * password reset (older epoch), is no session at all. */
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't' ||
        atoi(PQgetvalue(res, 0, UC_EXTRA)) != ctx->session_epoch) {
        reply_no_session(req);
        return;
    }
    bool mfa = ctx->user.mfa_verified;      /* the session's flag */
    fill_user(&ctx->user, res);
    ctx->user.via_session = true;
    ctx->user.mfa_verified = mfa && ctx->user.totp_enabled;
    /* As DRF: authenticate first, then enforce CSRF on unsafe methods.  A
     * runner key is sent by script in a header, never by the browser on
     * its own, so it needs none. */
    if (ctx->runner) {
        ctx->user.via_session = false;
        ctx->user.mfa_verified = false;   /* the family's view, never research */
    } else if (!method_is_safe(http_req_method(req)) && !csrf_ok(req)) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "CSRF Failed: CSRF token missing or incorrect.");
        return;
    }
    auth_proceed(ctx);
}

static void session_get_done(redisReply *reply, void *arg)
{
    struct auth_ctx *ctx = arg;
    struct http_req *req = ctx->req;
    struct session_value v;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_error("auth: redis GET session: %s", reply->str);
        jsonapi_reply_unavailable(req, "redis");
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {   /* expired or never existed */
        reply_no_session(req);
        return;
    }
    if (!session_value_parse(reply->str, reply->len, &v)) {
        log_warn("auth: malformed session value");
        reply_no_session(req);
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%lld", v.uid);
    ctx->session_epoch = v.epoch;
    ctx->user.mfa_verified = v.mfa;
    const char *p[1] = { id };
    if (pg_exec(ctx->app->pg, &auth_session_user_stmt, 1, p, session_user_done,
                ctx) != 0)
        jsonapi_reply_unavailable(req, "database");
}

/* The routes a runner key opens: those the runner calls (runner-api.md
 * section 1) and the family's own children and past sessions. */
static bool runner_route_ok(struct http_req *req)
{
    static const char *const prefixes[] = {
        "/api/v1/studies/", "/api/v1/children/", "/api/v1/responses/",
        "/api/v1/past-sessions/", NULL,
    };
    const char *path = http_req_path(req);

    for (int i = 0; prefixes[i]; i++)
        if (strncmp(path, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* GET runner:<hash> answered: "uid:epoch:0 study child", the session value
 * of the family it was given to, checked as a session is. */
static void runner_get_done(redisReply *reply, void *arg)
{
    struct auth_ctx *ctx = arg;

    if (reply && reply->type == REDIS_REPLY_STRING) {
        const char *sp = memchr(reply->str, ' ', reply->len);
        size_t len = sp ? (size_t)(sp - reply->str) : reply->len;
        redisReply cut = *reply;
        cut.len = len;
        session_get_done(&cut, ctx);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_NIL) {
        jsonapi_reply_errorf(ctx->req, 401, "authentication_failed", "/data",
                             "This runner key has expired: open the study again.");
        return;
    }
    session_get_done(reply, ctx);
}

/* Splits an Authorization value into at most 3 whitespace words (as DRF's
 * header.split()); returns the number found (3 means "3 or more"). */
static int split_words(const char *s, const char *w[3], size_t wl[3])
{
    int n = 0;
    while (*s && n < 3) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        w[n] = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        wl[n] = (size_t)(s - w[n]);
        n++;
    }
    return n;
}

/* The request's ctx, made on first use. */
static struct auth_ctx *ctx_get(struct http_req *req)
{
    struct auth_ctx *ctx = http_req_data(req);
    if (ctx)
        return ctx;
    ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    http_req_set_data(req, ctx, free);
    return ctx;
}

/* Resolves the caller, then: no credentials or a bad token -> 401 (with
 * WWW-Authenticate: Token); a session write without a matching CSRF token
 * -> 403 "CSRF Failed: ..."; Redis or PostgreSQL down -> 503; otherwise
 * next(req, app).  The user is freed with the request. */
static void auth_require(struct http_req *req, struct app *app, auth_next_fn next)
{
    struct auth_ctx *ctx = ctx_get(req);

    if (!ctx) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return;
    }
    if (ctx->authenticated) {     /* already resolved for this request */
        next(req, app);
        return;
    }
    ctx->req = req;
    ctx->app = app;
    ctx->next = next;

    /* Token authentication comes first, as in DRF's settings; a header
     * with another scheme falls through to the session. */
    const char *authz = http_req_header(req, "Authorization");
    const char *w[3];
    size_t wl[3];
    int n = authz ? split_words(authz, w, wl) : 0;
    if (n >= 1 && wl[0] == 5 && strncasecmp(w[0], "Token", 5) == 0) {
        if (n == 1) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid token header. No credentials provided.");
            return;
        }
        if (n > 2) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid token header. Token string should not contain spaces.");
            return;
        }
        char key[128];
        if (wl[1] >= sizeof key) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid token.");
            return;
        }
        memcpy(key, w[1], wl[1]);
        key[wl[1]] = '\0';
        auth_token_hash(key, ctx->token_hash);
        size_t len;
        const struct token_entry *cached = NULL;
        if (token_users_usable()) {
            pg_pool_poll_notifies(token_users_pg);
            cached = cache_get(token_users, ctx->token_hash, &len);
        }
        if (cached && len == sizeof *cached) {
            if ((int64_t)time(NULL) >= cached->expires_at) {
                reply_token_expired(req);
                return;
            }
            ctx->user = cached->user;
            auth_proceed(ctx);
            return;
        }
        ctx->token_cacheable = token_users_usable();
        ctx->token_ticket = ctx->token_cacheable ? cache_ticket(token_users) : 0;
        const char *p[1] = { ctx->token_hash };
        if (pg_exec(app->pg, &auth_token_user_stmt, 1, p, token_user_done,
                    ctx) != 0)
            jsonapi_reply_unavailable(req, "database");
        return;
    }

    /* A runner key (domain/participate.c gives one to each runner page):
     * the family's session for the runner's API routes only. */
    if (n >= 1 && wl[0] == 6 && strncasecmp(w[0], "Runner", 6) == 0) {
        char key[65], hash[65];
        if (n != 2 || wl[1] != 64 || !runner_route_ok(req)) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid runner key.");
            return;
        }
        memcpy(key, w[1], 64);
        key[64] = '\0';
        if (!is_hex(key, 64)) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid runner key.");
            return;
        }
        util_sha256_hex(key, 64, hash);
        ctx->runner = true;
        if (redis_cmd(app->redis, runner_get_done, ctx, "GET runner:%s", hash) != 0)
            jsonapi_reply_unavailable(req, "redis");
        return;
    }

    char sid[AUTH_SESSION_ID_LEN + 1];
    if (!cookie_get(req, "sessionid", sid, sizeof sid) ||
        !is_hex(sid, AUTH_SESSION_ID_LEN)) {
        reply_no_session(req);
        return;
    }
    memcpy(ctx->session_id, sid, sizeof sid);
    if (redis_cmd(app->redis, session_get_done, ctx, "GET session:%s",
                  ctx->session_id) != 0)
        jsonapi_reply_unavailable(req, "redis");
}

bool auth_user_is_2fa_verified(const struct auth_user *u)
{
    return u && u->mfa_verified;
}

bool auth_request_researcher_ok(const struct http_req *req)
{
    return auth_user_is_2fa_verified(auth_user(req));
}

/* ------------------------------------------------------------ the gate */

static void reply_two_factor_required(struct http_req *req, const struct auth_user *u)
{
    if (auth_page_navigation(req)) {
        reply_page(req, 403, "This needs your two-factor code",
                   u->totp_enabled
                       ? "This page is for researchers who logged in with their two-factor"
                         " code: log out and in again."
                       : "This page is for researchers with two-factor authentication:"
                         " turn it on, then log in again.",
                   u->totp_enabled ? "/logout/" : "/researcher/two-factor/",
                   u->totp_enabled ? "Log out" : "Turn on two-factor authentication");
        return;
    }
    jsonapi_reply_errorf(req, 403, "two_factor_required", NULL, "%s",
                         u->totp_enabled
                             ? "This needs a login with your two-factor code:"
                               " log out and in again."
                             : "This needs two-factor authentication: turn it on"
                               " with POST /api/v1/accounts/totp/, then log in again.");
}

/* Once the caller is known: what the route's policy asks beyond that,
 * then the route's handler. */
static void policy_check(struct http_req *req, struct app *app)
{
    struct auth_ctx *ctx = http_req_data(req);
    const struct auth_user *u = &ctx->user;

    if (ctx->route->policy == ROUTE_RESEARCHER || ctx->route->policy == ROUTE_SITE_ADMIN) {
        if (!u->mfa_verified) {
            reply_two_factor_required(req, u);
            return;
        }
    }
    if (ctx->route->policy == ROUTE_SITE_ADMIN && !u->is_site_admin) {
        jsonapi_reply_errorf(req, 403, "permission_denied", NULL,
                             "You do not have permission to perform this action.");
        return;
    }
    ctx->route->handler(req, app);
}

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z. */
static bool peer_is_loopback(const char *peer)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, peer, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, peer, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* ROUTE_OPERATOR: the bearer METRICS_TOKEN, or a loopback peer.  A
 * request relayed by a proxy on the same host arrives from loopback too,
 * so one that carries a forwarding header is not taken as local. */
static bool operator_ok(struct http_req *req, const struct app *app)
{
    const char *want = app->cfg->metrics_token;
    const char *authz = http_req_header(req, "Authorization");

    if (want && want[0] && authz && strncasecmp(authz, "Bearer ", 7) == 0) {
        const char *given = authz + 7;
        size_t n = strlen(want);
        return strlen(given) == n && CRYPTO_memcmp(given, want, n) == 0;
    }
    return peer_is_loopback(http_req_peer(req)) &&
           !http_req_header(req, "X-Forwarded-For") && !http_req_header(req, "Forwarded");
}

void auth_gate(struct http_req *req, const struct route *route, void *arg)
{
    struct app *app = arg;
    struct auth_ctx *ctx;

    switch (route->policy) {
    case ROUTE_PUBLIC:
    case ROUTE_SIGNED:        /* the handler checks the signature first */
        route->handler(req, app);
        return;
    case ROUTE_DEBUG:
        if (!app->cfg->debug_routes) {
            jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
            return;
        }
        route->handler(req, app);
        return;
    case ROUTE_OPERATOR:
        if (!operator_ok(req, app)) {
            http_add_header(req, "WWW-Authenticate", "Bearer");
            jsonapi_reply_errorf(req, 401, "not_authenticated", NULL,
                                 "This is served to loopback callers, or with"
                                 " Authorization: Bearer METRICS_TOKEN.");
            return;
        }
        route->handler(req, app);
        return;
    case ROUTE_USER:
    case ROUTE_FAMILY:
    case ROUTE_RESEARCHER:
    case ROUTE_SITE_ADMIN:
        if (!(ctx = ctx_get(req))) {
            jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
            return;
        }
        ctx->route = route;
        auth_require(req, app, policy_check);
        return;
    }
    /* router_add refuses any other value: never reached. */
    log_error("auth: %s has no policy; refused", route->pattern);
    jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
}

const struct auth_user *auth_user(const struct http_req *req)
{
    const struct auth_ctx *ctx = http_req_data(req);
    return ctx && ctx->authenticated ? &ctx->user : NULL;
}

const char *auth_session_id(const struct http_req *req)
{
    const struct auth_ctx *ctx = http_req_data(req);
    return ctx && ctx->authenticated ? ctx->session_id : "";
}

/* One auth_session_mark_verified in flight. */
struct mark_ctx {
    void (*cb)(bool ok, void *arg);   /* the caller's */
    void *arg;                        /* borrowed */
};

static void mark_done(redisReply *reply, void *arg)
{
    struct mark_ctx *mc = arg;
    bool ok = reply && reply->type == REDIS_REPLY_STATUS;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("auth: redis SET session: %s", reply->str);
    mc->cb(ok, mc->arg);
    free(mc);
}

int auth_session_mark_verified(struct http_req *req, struct app *app, int epoch,
                               void (*cb)(bool ok, void *arg), void *arg)
{
    const struct auth_ctx *ctx = http_req_data(req);
    char value[64];
    struct mark_ctx *mc;

    if (!ctx || !ctx->authenticated || !ctx->session_id[0])
        return -1;
    mc = calloc(1, sizeof *mc);
    if (!mc)
        return -1;
    mc->cb = cb;
    mc->arg = arg;
    snprintf(value, sizeof value, "%lld:%d:1", (long long)ctx->user.id, epoch);
    /* XX: never resurrect a session that ended meanwhile. */
    if (redis_cmd(app->redis, mark_done, mc, "SET session:%s %s XX KEEPTTL",
                  ctx->session_id, value) != 0) {
        free(mc);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ login */

/* POST login/ and login/2fa/ share one flow; the second step starts at
 * LOGIN_CHALLENGE_GET, the first at LOGIN_DELAY. */
enum login_state {
    LOGIN_CHALLENGE_GET,   /* 2fa: the challenge's user (Redis) */
    LOGIN_DELAY,           /* the slow-down: wait or count (Redis) */
    LOGIN_LOOKUP,          /* the user row (PostgreSQL) */
    LOGIN_VERIFY,          /* password (argon2, on the loop) or second factor */
    LOGIN_CHALLENGE_SET,   /* TOTP on: store a challenge, answer 202 */
    LOGIN_SESSION,         /* store the session, answer 200 */
};
static const char *const login_state_names[] = {
    "challenge_get", "delay", "lookup", "verify", "challenge_set", "session",
};

/* A challenge's flags (one digit in its Redis value). */
#define CHALLENGE_PASSWORD_OK 1   /* the password step had the right password */
#define CHALLENGE_BLIND 2         /* made during the account's delay */

struct login_ctx {
    struct http_req *req;                 /* borrowed until replied */
    struct app *app;                      /* borrowed */
    enum login_state state;
    bool second_step;                     /* POST login/2fa/ */
    char *secret;                         /* owned, wiped: password or code */
    bool recovery;                        /* secret is a recovery code */
    char email[AUTH_EMAIL_MAX + 1];       /* as given, or the challenge's */
    char challenge[AUTH_SESSION_ID_LEN + 1];
    char delay_acct[320];                 /* slow-down key of the account */
    char delay_addr[96];                  /* slow-down key of the address */
    long acct_wait_s;                     /* > 0: the account is in its delay */
    int challenge_epoch;                  /* the epoch the challenge was made in */
    int challenge_flags;                  /* CHALLENGE_* */
    char user_id[24];                     /* users.id as text */
    char user_uuid[37];
    char user_email[AUTH_EMAIL_MAX + 1];
    int epoch;                            /* users.session_epoch */
    bool totp_on;
    bool mfa;                             /* the session will be 2FA-verified */
    char session_id[AUTH_SESSION_ID_LEN + 1];
    char csrf[AUTH_SESSION_ID_LEN + 1];
};

static void login_step(struct login_ctx *lc);

static void login_free(struct login_ctx *lc)
{
    if (!lc)
        return;
    if (lc->secret) {
        OPENSSL_cleanse(lc->secret, strlen(lc->secret));
        free(lc->secret);
    }
    OPENSSL_cleanse(lc, sizeof *lc);
    free(lc);
}

static void login_set_state(struct login_ctx *lc, enum login_state s)
{
    log_debug("auth: login %s -> %s", login_state_names[lc->state],
              login_state_names[s]);
    lc->state = s;
}

static void login_bad_credentials(struct http_req *req)
{
    jsonapi_reply_errorf(req, 400, "invalid", "/data",
                         "Unable to log in with provided credentials.");
}

static void login_bad_challenge(struct http_req *req)
{
    jsonapi_reply_errorf(req, 400, "invalid_challenge", "/challenge",
                         "This login has expired or used up its tries: log in again.");
}

static void login_bad_code(struct login_ctx *lc)
{
    jsonapi_reply_errorf(lc->req, 400, "invalid",
                         lc->recovery ? "/recovery_code" : "/code",
                         lc->recovery ? "Invalid or already used recovery code."
                                      : "Invalid two-factor code.");
}

static long ms_to_s(long long ms)
{
    return (long)((ms + 999) / 1000);
}

static void login_delay_done(redisReply *reply, void *arg)
{
    struct login_ctx *lc = arg;

    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("auth: redis login delay: %s", reply->str);
        jsonapi_reply_unavailable(lc->req, "redis");
        login_free(lc);
        return;
    }
    if (reply->element[1]->integer > 0) {      /* this address waits */
        auth_reply_rate_limited(lc->req, ms_to_s(reply->element[1]->integer));
        login_free(lc);
        return;
    }
    lc->acct_wait_s = ms_to_s(reply->element[0]->integer);
    login_set_state(lc, LOGIN_LOOKUP);
    login_step(lc);
}

static void challenge_get_done(redisReply *reply, void *arg)
{
    struct login_ctx *lc = arg;
    char *end;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_error("auth: redis challenge: %s", reply->str);
        jsonapi_reply_unavailable(lc->req, "redis");
        goto fail;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        login_bad_challenge(lc->req);              /* unknown or expired */
        goto fail;
    }
    if (reply->element[1]->integer > AUTH_CHALLENGE_TRIES) {
        redis_cmd(lc->app->redis, ignore_reply, (void *)"DEL challenge",
                  "DEL login2fa:%s login2fa:%s:tries", lc->challenge, lc->challenge);
        login_bad_challenge(lc->req);
        goto fail;
    }
    /* "<user id>:<epoch>:<flags>:<email>" (the email last: it may hold ':'). */
    const char *v = reply->element[0]->str;
    long long uid = strtoll(v, &end, 10);
    if (uid <= 0 || *end != ':')
        goto malformed;
    long epoch = strtol(end + 1, &end, 10);
    if (epoch < 0 || *end != ':')
        goto malformed;
    long flags = strtol(end + 1, &end, 10);
    if (flags < 0 || flags > 3 || *end != ':' || strlen(end + 1) > AUTH_EMAIL_MAX)
        goto malformed;
    snprintf(lc->user_id, sizeof lc->user_id, "%lld", uid);
    lc->challenge_epoch = (int)epoch;
    lc->challenge_flags = (int)flags;
    snprintf(lc->email, sizeof lc->email, "%s", end + 1);
    delay_keys(lc->delay_acct, lc->delay_addr, lc->req, lc->app, lc->email);
    login_set_state(lc, LOGIN_LOOKUP);
    login_step(lc);
    return;
malformed:
    log_warn("auth: malformed login challenge");
    login_bad_challenge(lc->req);
fail:
    login_free(lc);
}

/* The password step while the account waits out its delay.  Nothing said
 * here may tell whether the password was right, or the delay would not
 * slow guessing.  An account with TOTP gets a challenge either way (only
 * the right password AND a right code then log in); one without gets 429. */
static bool login_blind(struct login_ctx *lc, const PGresult *res)
{
    bool totp = PQntuples(res) == 1 && PQgetvalue(res, 0, UC_TOTP)[0] == 't';
    if (!totp) {
        auth_reply_rate_limited(lc->req, lc->acct_wait_s);
        return false;
    }
    /* Blocks the loop for one argon2id verification (tens of ms). */
    bool ok = auth_password_verify(PQgetvalue(res, 0, LC_HASH), lc->secret) &&
              PQgetvalue(res, 0, UC_ACTIVE)[0] == 't' &&
              PQgetvalue(res, 0, LC_VERIFIED)[0] == 't';
    lc->challenge_flags = CHALLENGE_BLIND | (ok ? CHALLENGE_PASSWORD_OK : 0);
    return true;
}

static void login_user_done(PGresult *res, void *arg)
{
    struct login_ctx *lc = arg;
    struct http_req *req = lc->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        goto fail;
    }
    if (!pg_ok(res)) {
        reply_internal(req, "login lookup", res);
        goto fail;
    }
    if (lc->second_step) {
        /* The account changed since the password step: start over. */
        if (PQntuples(res) != 1 || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't' ||
            atoi(PQgetvalue(res, 0, LC_EPOCH)) != lc->challenge_epoch) {
            login_bad_challenge(req);
            goto fail;
        }
    } else if (lc->acct_wait_s > 0) {
        if (!login_blind(lc, res))
            goto fail;
    } else if (PQntuples(res) != 1) {
        auth_password_verify(dummy_hash(), lc->secret);   /* same cost */
        login_bad_credentials(req);
        goto fail;
    } else {
        /* Blocks the loop for one argon2id verification (tens of ms). */
        bool ok = auth_password_verify(PQgetvalue(res, 0, LC_HASH), lc->secret);
        if (!ok || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't') {
            login_bad_credentials(req);
            goto fail;
        }
        /* Only now, after the right password, does an unverified address
         * make a difference. */
        if (PQgetvalue(res, 0, LC_VERIFIED)[0] != 't') {
            jsonapi_reply_errorf(req, 403, "email_not_verified", "/email",
                                 "Confirm your email address first: follow the link"
                                 " we emailed you, or ask for a new one with"
                                 " POST /api/v1/accounts/verify/resend/.");
            goto fail;
        }
        lc->challenge_flags = CHALLENGE_PASSWORD_OK;
    }
    snprintf(lc->user_id, sizeof lc->user_id, "%s", PQgetvalue(res, 0, UC_ID));
    snprintf(lc->user_uuid, sizeof lc->user_uuid, "%s", PQgetvalue(res, 0, UC_UUID));
    snprintf(lc->user_email, sizeof lc->user_email, "%s",
             PQgetvalue(res, 0, UC_EMAIL));
    lc->epoch = atoi(PQgetvalue(res, 0, LC_EPOCH));
    lc->totp_on = PQgetvalue(res, 0, UC_TOTP)[0] == 't';
    login_set_state(lc, LOGIN_VERIFY);
    login_step(lc);
    return;
fail:
    login_free(lc);
}

static void login_sf_done(const struct auth_sf_outcome *o, void *arg)
{
    struct login_ctx *lc = arg;
    switch (o->result) {
    case AUTH_SF_OK:
        redis_cmd(lc->app->redis, ignore_reply, (void *)"DEL challenge",
                  "DEL login2fa:%s login2fa:%s:tries", lc->challenge, lc->challenge);
        lc->mfa = true;
        login_set_state(lc, LOGIN_SESSION);
        login_step(lc);
        return;
    case AUTH_SF_BAD:
        login_bad_code(lc);
        break;
    case AUTH_SF_LOCKED:
        auth_reply_rate_limited(lc->req, o->retry_after_s);
        break;
    case AUTH_SF_NOT_ENABLED:        /* turned off since the password step */
    case AUTH_SF_ALREADY_ON:
        login_bad_challenge(lc->req);
        break;
    case AUTH_SF_UNAVAILABLE:
        jsonapi_reply_unavailable(lc->req, "database");
        break;
    case AUTH_SF_REDIS_UNAVAILABLE:
        jsonapi_reply_unavailable(lc->req, "redis");
        break;
    case AUTH_SF_ERROR:
        jsonapi_reply_errorf(lc->req, 500, "error", NULL, "A server error occurred.");
        break;
    }
    login_free(lc);
}

static void login_challenge_stored(redisReply *reply, void *arg)
{
    struct login_ctx *lc = arg;
    struct http_req *req = lc->req;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_error("auth: redis SETEX challenge: %s", reply->str);
        jsonapi_reply_unavailable(req, "redis");
        goto out;
    }
    /* No session yet, and not an error: the client goes on to login/2fa/. */
    json_t *doc = json_pack("{s:{s:b, s:s, s:[s,s], s:i}}", "meta",
                            "second_factor_required", 1, "challenge", lc->challenge,
                            "methods", "totp", "recovery_code",
                            "expires_in", AUTH_CHALLENGE_TTL_S);
    jsonapi_reply(req, 202, doc);
out:
    login_free(lc);
}

static void login_session_stored(redisReply *reply, void *arg)
{
    struct login_ctx *lc = arg;
    struct http_req *req = lc->req;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_error("auth: redis SETEX session: %s", reply->str);
        jsonapi_reply_unavailable(req, "redis");
        goto out;
    }
    const char *p[1] = { lc->user_id };
    pg_exec(lc->app->pg, &auth_last_login_stmt, 1, p, ignore_result,
            (void *)"last_login");
    delay_forgive(lc->app, lc->delay_acct, lc->delay_addr);

    char self[512];
    json_t *attrs = json_pack("{s:s, s:I, s:b, s:b}", "email", lc->user_email, "pk",
                              (json_int_t)strtoll(lc->user_id, NULL, 10),
                              "two_factor_enabled", lc->totp_on,
                              "two_factor_verified", lc->mfa);
    jsonapi_url(req, self, sizeof self, "users/%s/", lc->user_uuid);
    json_t *doc = json_pack("{s:o}", "data",
                            jsonapi_resource("users", lc->user_uuid, attrs,
                                             NULL, self));
    set_auth_cookies(req, lc->app, lc->session_id, lc->csrf,
                     lc->app->cfg->session_ttl_s);
    jsonapi_reply(req, 200, doc);
out:
    login_free(lc);
}

/* Starts the work of lc->state; the callbacks move it on. */
static void login_step(struct login_ctx *lc)
{
    struct app *app = lc->app;
    struct http_req *req = lc->req;

    switch (lc->state) {
    case LOGIN_CHALLENGE_GET: {
        char k1[96], k2[112], ttl[16];
        snprintf(k1, sizeof k1, "login2fa:%s", lc->challenge);
        snprintf(k2, sizeof k2, "login2fa:%s:tries", lc->challenge);
        snprintf(ttl, sizeof ttl, "%d", AUTH_CHALLENGE_TTL_S);
        const char *argv[6] = { "EVAL", challenge_script, "2", k1, k2, ttl };
        size_t argl[6];
        for (int i = 0; i < 6; i++)
            argl[i] = strlen(argv[i]);
        if (redis_cmdargv(app->redis, challenge_get_done, lc, 6, argv, argl) != 0)
            goto unavailable_redis;
        return;
    }
    case LOGIN_DELAY: {
        char cap[24], win[24], free_acct[24], free_addr[24], first[24];
        snprintf(cap, sizeof cap, "%ld", app->cfg->login_delay_max_s);
        snprintf(first, sizeof first, "%ld", app->cfg->login_delay_first_ms);
        snprintf(win, sizeof win, "%ld", app->cfg->login_rate_window_s);
        snprintf(free_acct, sizeof free_acct, "%ld", app->cfg->login_delay_free_account);
        snprintf(free_addr, sizeof free_addr, "%ld", app->cfg->login_delay_free_addr);
        const char *argv[10] = { "EVAL", delay_script, "2", lc->delay_acct,
                                 lc->delay_addr, cap, win, free_acct, free_addr, first };
        size_t argl[10];
        for (int i = 0; i < 10; i++)
            argl[i] = strlen(argv[i]);
        if (redis_cmdargv(app->redis, login_delay_done, lc, 10, argv, argl) != 0)
            goto unavailable_redis;
        return;
    }
    case LOGIN_LOOKUP: {
        /* The password is verified with the lookup's result: take the
         * argon2 budget now, after the cheap Redis counters said yes. */
        if (!lc->second_step && !auth_hash_throttle()) {
            auth_reply_throttled(req, 1);
            login_free(lc);
            return;
        }
        const char *p[1] = { lc->second_step ? lc->user_id : lc->email };
        if (pg_exec(app->pg, lc->second_step ? &auth_login_by_id_stmt : &auth_login_stmt,
                    1, p, login_user_done, lc) != 0) {
            jsonapi_reply_unavailable(req, "database");
            login_free(lc);
        }
        return;
    }
    case LOGIN_VERIFY:
        if (lc->second_step) {
            /* A challenge handed out during the account's delay for a wrong
             * password: no code can complete it, and none is checked (that
             * would count failures against the owner). */
            if (!(lc->challenge_flags & CHALLENGE_PASSWORD_OK)) {
                login_bad_code(lc);
                login_free(lc);
                return;
            }
            struct auth_sf_request rq = {
                .user_id = strtoll(lc->user_id, NULL, 10),
                .kind = lc->recovery ? AUTH_SF_RECOVERY : AUTH_SF_TOTP,
                .code = lc->secret,
                /* A blind challenge must answer as a wrong password's would. */
                .quiet_lock = (lc->challenge_flags & CHALLENGE_BLIND) != 0,
            };
            if (auth_second_factor_check(app, &rq, login_sf_done, lc) != 0) {
                jsonapi_reply_unavailable(req, "database");
                login_free(lc);
            }
            return;
        }
        /* The password was checked with the lookup. */
        login_set_state(lc, lc->totp_on ? LOGIN_CHALLENGE_SET : LOGIN_SESSION);
        login_step(lc);
        return;
    case LOGIN_CHALLENGE_SET: {
        char value[AUTH_EMAIL_MAX + 64], ttl[16];
        util_random_hex(32, lc->challenge);
        snprintf(value, sizeof value, "%s:%d:%d:%s", lc->user_id, lc->epoch,
                 lc->challenge_flags, lc->email);
        snprintf(ttl, sizeof ttl, "%d", AUTH_CHALLENGE_TTL_S);
        char key[96];
        snprintf(key, sizeof key, "login2fa:%s", lc->challenge);
        const char *argv[4] = { "SETEX", key, ttl, value };
        size_t argl[4];
        for (int i = 0; i < 4; i++)
            argl[i] = strlen(argv[i]);
        if (redis_cmdargv(app->redis, login_challenge_stored, lc, 4, argv, argl) != 0)
            goto unavailable_redis;
        return;
    }
    case LOGIN_SESSION: {
        char value[64], ttl[24];
        util_random_hex(32, lc->session_id);
        util_random_hex(32, lc->csrf);
        snprintf(value, sizeof value, "%s:%d:%d", lc->user_id, lc->epoch, lc->mfa ? 1 : 0);
        snprintf(ttl, sizeof ttl, "%ld", app->cfg->session_ttl_s);
        if (redis_cmd(app->redis, login_session_stored, lc, "SETEX session:%s %s %s",
                      lc->session_id, ttl, value) != 0)
            goto unavailable_redis;
        return;
    }
    }
    return;
unavailable_redis:
    jsonapi_reply_unavailable(req, "redis");
    login_free(lc);
}

/* POST /api/v1/auth/login/ {"email": .., "password": ..} (also accepted
 * inside data.attributes).  Only JSON bodies (see auth_read_json). */
static void auth_login(struct http_req *req, struct app *app)
{
    struct login_ctx *lc = NULL;
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *email, *password;

    if (!body)
        return;
    if (!(email = auth_field(req, fields, "email", AUTH_EMAIL_MAX)) ||
        !(password = auth_field(req, fields, "password", AUTH_PASSWORD_MAX)))
        goto out;
    lc = calloc(1, sizeof *lc);
    if (!lc || !(lc->secret = strdup(password))) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    lc->req = req;
    lc->app = app;
    snprintf(lc->email, sizeof lc->email, "%s", email);
    delay_keys(lc->delay_acct, lc->delay_addr, req, app, email);
    lc->state = LOGIN_DELAY;
    login_step(lc);
    lc = NULL;                    /* the flow owns it now */
out:
    login_free(lc);
    json_decref(body);
}

/* POST /api/v1/auth/login/2fa/ {"challenge": .., "code": "123456"} or
 * {"challenge": .., "recovery_code": "xxxx-xxxx-xxxx-xxxx"}. */
static void auth_login_2fa(struct http_req *req, struct app *app)
{
    struct login_ctx *lc = NULL;
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *challenge, *secret;
    bool recovery;

    if (!body)
        return;
    if (!(challenge = auth_field(req, fields, "challenge", AUTH_SESSION_ID_LEN)))
        goto out;
    if (!is_hex(challenge, AUTH_SESSION_ID_LEN)) {
        login_bad_challenge(req);
        goto out;
    }
    recovery = json_object_get(fields, "code") == NULL &&
               json_object_get(fields, "recovery_code") != NULL;
    if (!(secret = auth_field(req, fields, recovery ? "recovery_code" : "code", 64)))
        goto out;
    lc = calloc(1, sizeof *lc);
    if (!lc || !(lc->secret = strdup(secret))) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    lc->req = req;
    lc->app = app;
    lc->second_step = true;
    lc->recovery = recovery;
    memcpy(lc->challenge, challenge, AUTH_SESSION_ID_LEN + 1);
    lc->state = LOGIN_CHALLENGE_GET;
    login_step(lc);
    lc = NULL;
out:
    login_free(lc);
    json_decref(body);
}

/* ------------------------------------------------------------ logout */

static void logout_reply(struct http_req *req, struct app *app)
{
    set_auth_cookies(req, app, "", "", 0);
    http_reply(req, 204, NULL, NULL, 0);
}

/* Carries the request across the DEL (the auth ctx is owned by req). */
static void logout_deleted(redisReply *reply, void *arg)
{
    struct auth_ctx *ctx = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        jsonapi_reply_unavailable(ctx->req, "redis");
        return;
    }
    logout_reply(ctx->req, ctx->app);
}

/* POST /api/v1/auth/logout/: a session write, so it needs the CSRF token
 * (nobody can log a victim out cross-site). */
static void auth_logout(struct http_req *req, struct app *app)
{
    struct auth_ctx *ctx = http_req_data(req);
    if (!ctx->session_id[0]) {    /* token callers have no session to end */
        logout_reply(req, app);
        return;
    }
    if (redis_cmd(app->redis, logout_deleted, ctx, "DEL session:%s",
                  ctx->session_id) != 0)
        jsonapi_reply_unavailable(req, "redis");
}

static const struct route auth_route_table[] = {
    { HTTP_POST, "/api/v1/auth/login/", auth_login, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/auth/login/2fa/", auth_login_2fa, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/auth/logout/", auth_logout, ROUTE_USER },
};

int auth_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, auth_route_table);
}

/* ------------------------------------------------------------ sealing at start */

/* Two-factor secrets still stored as plaintext (written before sealing):
 * each is sealed under the condition that it is still the same text, so a
 * re-enrolment meanwhile wins. */
static const struct pg_stmt auth_plain_secrets_stmt = {
    "auth_plain_secrets",
    "SELECT user_id, secret FROM user_totp WHERE secret !~ '^v1:'",
};

static const struct pg_stmt auth_seal_secret_stmt = {
    "auth_seal_secret",
    "UPDATE user_totp SET secret = $3 WHERE user_id = $1::bigint AND secret = $2",
};

static void plain_secrets_done(PGresult *res, void *arg)
{
    struct app *app = arg;
    int sealed = 0;

    if (!res || !pg_ok(res)) {
        log_warn("auth: cannot list plaintext two-factor secrets (%s); they are"
                 " sealed at their next use", res ? PQresultErrorMessage(res)
                                                  : "database unavailable");
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        char b32[TOTP_SECRET_B32_LEN + 1], out[TOTP_SEALED_LEN + 1];
        const char *uid = PQgetvalue(res, i, 0), *plain = PQgetvalue(res, i, 1);
        if (totp_secret_open(app->cfg->totp_key, strtoll(uid, NULL, 10), plain, b32,
                             sizeof b32) != 1 ||
            totp_secret_seal(app->cfg->totp_key, strtoll(uid, NULL, 10), b32, out,
                             sizeof out) != 0) {
            OPENSSL_cleanse(b32, sizeof b32);
            continue;
        }
        const char *p[3] = { uid, plain, out };
        if (pg_exec(app->pg, &auth_seal_secret_stmt, 3, p, ignore_result,
                    (void *)"seal secret") == 0)
            sealed++;
        OPENSSL_cleanse(b32, sizeof b32);
    }
    if (sealed)
        log_info("auth: sealing %d plaintext two-factor secret%s with TOTP_SECRET_KEY",
                 sealed, sealed == 1 ? "" : "s");
}

void auth_seal_plain_secrets(struct app *app)
{
    if (pg_exec(app->pg, &auth_plain_secrets_stmt, 0, NULL, plain_secrets_done, app) != 0)
        log_warn("auth: cannot queue the sealing of plaintext two-factor secrets");
}
