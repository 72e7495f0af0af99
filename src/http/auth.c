/* auth: resolves who is calling (API token, or Redis session plus CSRF
 * token) before a handler runs, and the login/logout endpoints that create
 * and end sessions. */
#include "studyhub/http/auth.h"

#include <argon2.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

/* argon2id parameters: OWASP's "m=19 MiB, t=2, p=1" row.  One verification
 * costs ~40 ms of CPU on the loop thread (measured here), which is why
 * login is throttled below; hashes made with other parameters still verify, since
 * the PHC string carries its own. */
#define AUTH_ARGON2_T 2
#define AUTH_ARGON2_M_KIB 19456
#define AUTH_ARGON2_P 1
#define AUTH_ARGON2_SALT_LEN 16
#define AUTH_ARGON2_HASH_LEN 32

/* At most this many password verifications per second, process-wide, with
 * bursts up to the capacity: a flood of logins can use at most ~40% of the
 * loop's time and stall it ~0.4 s at once.  Beyond it logins get 429. */
#define AUTH_LOGIN_RATE_PER_S 10.0
#define AUTH_LOGIN_BURST 10.0

/* Token last_used_at is written at most this often per token, off the
 * request's path, so the hot path stays one indexed SELECT. */
#define AUTH_TOKEN_TOUCH_INTERVAL "1 hour"

/* Session and CSRF ids: 32 random bytes in hex. */
#define AUTH_SESSION_ID_LEN 64
/* Django's CSRF_COOKIE_AGE (one year). */
#define AUTH_CSRF_COOKIE_AGE_S 31449600L

#define AUTH_EMAIL_MAX 254
#define AUTH_PASSWORD_MAX 1024

/* Per-request authentication state; the request owns it (http_req data,
 * freed with the request), so nothing here outlives the reply. */
struct auth_ctx {
    struct http_req *req;        /* borrowed: the request owns this ctx */
    struct app *app;             /* borrowed */
    auth_next_fn next;           /* the handler to run once authenticated */
    bool authenticated;          /* user below is valid */
    struct auth_user user;       /* the caller */
    char token_hash[65];         /* hex SHA-256 of the token ("" for sessions) */
    char session_id[AUTH_SESSION_ID_LEN + 1]; /* "" unless session auth */
};

/* Column order of both user lookups (id, uuid, email, is_researcher,
 * is_site_admin, is_active[, token_stale]). */
enum { UC_ID, UC_UUID, UC_EMAIL, UC_RESEARCHER, UC_SITE_ADMIN, UC_ACTIVE, UC_STALE };

static const struct pg_stmt auth_token_user_stmt = {
    "auth_token_user",
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active,"
    "       (t.last_used_at IS NULL OR"
    "        t.last_used_at < now() - interval '" AUTH_TOKEN_TOUCH_INTERVAL "')"
    "  FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = $1",
};

static const struct pg_stmt auth_token_touch_stmt = {
    "auth_token_touch",
    "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = $1",
};

static const struct pg_stmt auth_session_user_stmt = {
    "auth_session_user",
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active"
    "  FROM users u WHERE u.id = $1::bigint",
};

static const struct pg_stmt auth_login_stmt = {
    "auth_login",
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active,"
    "       u.password_hash"
    "  FROM users u WHERE lower(u.email) = lower($1)",
};

static const struct pg_stmt auth_last_login_stmt = {
    "auth_last_login",
    "UPDATE users SET last_login = now() WHERE id = $1::bigint",
};

/* ------------------------------------------------------------ helpers */

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Random hex of 2*n chars.  A CSPRNG failure leaves no safe way to go on. */
static void random_hex(size_t n, char *out)
{
    unsigned char buf[64];
    if (n > sizeof buf || RAND_bytes(buf, (int)n) != 1) {
        log_error("auth: RAND_bytes failed");
        abort();
    }
    hex_encode(buf, n, out);
    OPENSSL_cleanse(buf, sizeof buf);
}

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
    random_hex(20, out);
}

void auth_token_hash(const char *key, char out_hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32) {
        log_error("auth: SHA-256 failed");
        abort();
    }
    hex_encode(md, mdlen, out_hex);
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

static bool cookies_secure(const struct app *app)
{
    const char *b = app->cfg ? app->cfg->base_url : NULL;
    return b && strncasecmp(b, "https://", 8) == 0;
}

/* Sets (or with max_age 0 clears) the session and CSRF cookies. */
static void set_auth_cookies(struct http_req *req, const struct app *app,
                             const char *session_id, const char *csrf,
                             long session_age)
{
    char buf[256];
    const char *secure = cookies_secure(app) ? "; Secure" : "";
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
}

static void ignore_result(PGresult *res, void *arg)
{
    const char *what = arg;
    if (res && !pg_ok(res))
        log_warn("auth: %s failed: %s", what, PQresultErrorMessage(res));
}

/* ------------------------------------------------------------ auth_require */

static void auth_proceed(struct auth_ctx *ctx)
{
    ctx->authenticated = true;
    ctx->next(ctx->req, ctx->app);
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
    fill_user(&ctx->user, res);
    if (PQgetvalue(res, 0, UC_STALE)[0] == 't') {
        const char *p[1] = { ctx->token_hash };
        pg_exec(ctx->app->pg, &auth_token_touch_stmt, 1, p, ignore_result,
                (void *)"token touch");
    }
    auth_proceed(ctx);
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
    /* A session of a deleted or deactivated user is no session at all. */
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't') {
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "Authentication credentials were not provided.");
        return;
    }
    fill_user(&ctx->user, res);
    ctx->user.via_session = true;
    /* As DRF: authenticate first, then enforce CSRF on unsafe methods. */
    if (!method_is_safe(http_req_method(req)) && !csrf_ok(req)) {
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

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            log_error("auth: redis GET session: %s", reply->str);
        jsonapi_reply_unavailable(req, "redis");
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {   /* expired or never existed */
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "Authentication credentials were not provided.");
        return;
    }
    char id[24];
    char *end = NULL;
    long long uid = strtoll(reply->str, &end, 10);
    if (reply->len >= sizeof id || uid <= 0 || !end || *end) {
        log_warn("auth: malformed session value");
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "Authentication credentials were not provided.");
        return;
    }
    snprintf(id, sizeof id, "%lld", uid);
    const char *p[1] = { id };
    if (pg_exec(ctx->app->pg, &auth_session_user_stmt, 1, p, session_user_done,
                ctx) != 0)
        jsonapi_reply_unavailable(req, "database");
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

void auth_require(struct http_req *req, struct app *app, auth_next_fn next)
{
    struct auth_ctx *ctx = http_req_data(req);

    if (ctx) {                    /* already resolved for this request */
        if (ctx->authenticated) {
            next(req, app);
            return;
        }
    } else {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) {
            jsonapi_reply_errorf(req, 500, "error", NULL,
                                 "A server error occurred.");
            return;
        }
        http_req_set_data(req, ctx, free);
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
        const char *p[1] = { ctx->token_hash };
        if (pg_exec(app->pg, &auth_token_user_stmt, 1, p, token_user_done,
                    ctx) != 0)
            jsonapi_reply_unavailable(req, "database");
        return;
    }

    char sid[AUTH_SESSION_ID_LEN + 1];
    if (!cookie_get(req, "sessionid", sid, sizeof sid) ||
        !is_hex(sid, AUTH_SESSION_ID_LEN)) {
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "Authentication credentials were not provided.");
        return;
    }
    memcpy(ctx->session_id, sid, sizeof sid);
    if (redis_cmd(app->redis, session_get_done, ctx, "GET session:%s",
                  ctx->session_id) != 0)
        jsonapi_reply_unavailable(req, "redis");
}

const struct auth_user *auth_user(const struct http_req *req)
{
    const struct auth_ctx *ctx = http_req_data(req);
    return ctx && ctx->authenticated ? &ctx->user : NULL;
}

/* ------------------------------------------------------------ login */

/* One login in flight: lookup -> verify -> SETEX -> reply. */
struct login_ctx {
    struct http_req *req;                 /* borrowed until replied */
    struct app *app;                      /* borrowed */
    char *password;                       /* owned; wiped before free */
    char user_id[24];                     /* users.id as text */
    char user_uuid[37];
    char email[AUTH_EMAIL_MAX + 1];
    char session_id[AUTH_SESSION_ID_LEN + 1];
    char csrf[AUTH_SESSION_ID_LEN + 1];
};

static void login_free(struct login_ctx *lc)
{
    if (!lc)
        return;
    if (lc->password) {
        OPENSSL_cleanse(lc->password, strlen(lc->password));
        free(lc->password);
    }
    OPENSSL_cleanse(lc->session_id, sizeof lc->session_id);
    free(lc);
}

/* A global token bucket in front of argon2 (see AUTH_LOGIN_RATE_PER_S). */
static bool login_throttle_take(void)
{
    static double tokens = AUTH_LOGIN_BURST;
    static double last;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (last > 0) {
        tokens += (now - last) * AUTH_LOGIN_RATE_PER_S;
        if (tokens > AUTH_LOGIN_BURST)
            tokens = AUTH_LOGIN_BURST;
    }
    last = now;
    if (tokens < 1.0)
        return false;
    tokens -= 1.0;
    return true;
}

static void login_bad_credentials(struct http_req *req)
{
    jsonapi_reply_errorf(req, 400, "invalid", "/data",
                         "Unable to log in with provided credentials.");
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

    char self[512];
    json_t *attrs = json_pack("{s:s, s:I}", "email", lc->email, "pk",
                              (json_int_t)strtoll(lc->user_id, NULL, 10));
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

static void login_user_done(PGresult *res, void *arg)
{
    struct login_ctx *lc = arg;
    struct http_req *req = lc->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    if (!pg_ok(res)) {
        reply_internal(req, "login lookup", res);
        goto out;
    }
    if (PQntuples(res) != 1) {
        auth_password_verify(dummy_hash(), lc->password);   /* same cost */
        login_bad_credentials(req);
        goto out;
    }
    /* Blocks the loop for one argon2id verification (tens of ms). */
    bool ok = auth_password_verify(PQgetvalue(res, 0, 6), lc->password);
    if (!ok || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't') {
        login_bad_credentials(req);
        goto out;
    }
    snprintf(lc->user_id, sizeof lc->user_id, "%s", PQgetvalue(res, 0, UC_ID));
    snprintf(lc->user_uuid, sizeof lc->user_uuid, "%s",
             PQgetvalue(res, 0, UC_UUID));
    snprintf(lc->email, sizeof lc->email, "%s", PQgetvalue(res, 0, UC_EMAIL));
    random_hex(32, lc->session_id);
    random_hex(32, lc->csrf);

    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", lc->app->cfg->session_ttl_s);
    if (redis_cmd(lc->app->redis, login_session_stored, lc,
                  "SETEX session:%s %s %s", lc->session_id, ttl,
                  lc->user_id) != 0) {
        jsonapi_reply_unavailable(req, "redis");
        goto out;
    }
    return;                       /* lc now belongs to login_session_stored */
out:
    login_free(lc);
}

static bool content_type_is_json(const struct http_req *req)
{
    const char *ct = http_req_header(req, "Content-Type");
    if (!ct)
        return false;
    return strncasecmp(ct, "application/json", 16) == 0 ||
           strncasecmp(ct, JSONAPI_MEDIA_TYPE, strlen(JSONAPI_MEDIA_TYPE)) == 0;
}

/* POST /api/v1/auth/login/ {"email": .., "password": ..} (also accepted
 * inside data.attributes).  Only JSON bodies: a cross-site HTML form cannot
 * send one without a CORS preflight, which is the login-CSRF defence. */
static void auth_login(struct http_req *req, void *arg)
{
    struct app *app = arg;
    struct login_ctx *lc = NULL;
    json_t *body = NULL;
    size_t len = 0;
    const char *raw = http_req_body(req, &len);

    if (!content_type_is_json(req)) {
        const char *ct = http_req_header(req, "Content-Type");
        jsonapi_reply_errorf(req, 415, "unsupported_media_type", "/data",
                             "Unsupported media type \"%.100s\" in request.",
                             ct ? ct : "");
        goto out;
    }
    json_error_t jerr;
    body = raw ? json_loadb(raw, len, 0, &jerr) : NULL;
    if (!json_is_object(body)) {
        jsonapi_reply_errorf(req, 400, "parse_error", "/data",
                             "JSON parse error - expected an object.");
        goto out;
    }
    json_t *src = body;
    json_t *attrs = json_object_get(json_object_get(body, "data"), "attributes");
    if (json_is_object(attrs))
        src = attrs;
    const char *email = json_string_value(json_object_get(src, "email"));
    const char *password = json_string_value(json_object_get(src, "password"));
    if (!email || !email[0] || strlen(email) > AUTH_EMAIL_MAX) {
        jsonapi_reply_errorf(req, 400, email ? "invalid" : "required", "/email",
                             email ? "Enter a valid email address."
                                   : "This field is required.");
        goto out;
    }
    if (!password || !password[0] || strlen(password) > AUTH_PASSWORD_MAX) {
        jsonapi_reply_errorf(req, 400, password ? "invalid" : "required",
                             "/password",
                             password ? "Enter a valid password."
                                      : "This field is required.");
        goto out;
    }
    if (!login_throttle_take()) {
        http_add_header(req, "Retry-After", "1");
        jsonapi_reply_errorf(req, 429, "throttled", NULL,
                             "Request was throttled. Expected available in 1 second.");
        goto out;
    }
    lc = calloc(1, sizeof *lc);
    if (!lc || !(lc->password = strdup(password))) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    lc->req = req;
    lc->app = app;
    const char *p[1] = { email };
    if (pg_exec(app->pg, &auth_login_stmt, 1, p, login_user_done, lc) != 0) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    lc = NULL;                    /* owned by login_user_done now */
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

static void logout_next(struct http_req *req, struct app *app)
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

/* POST /api/v1/auth/logout/: a session write, so it needs the CSRF token
 * (nobody can log a victim out cross-site). */
static void auth_logout(struct http_req *req, void *arg)
{
    auth_require(req, arg, logout_next);
}

void auth_routes(struct router *r)
{
    router_add(r, HTTP_POST, "/api/v1/auth/login/", auth_login);
    router_add(r, HTTP_POST, "/api/v1/auth/logout/", auth_logout);
}
