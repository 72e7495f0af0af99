/* auth: resolves who is calling (API token, runner key, or Redis session
 * plus CSRF token) and enforces the route's policy before its handler
 * runs (the gate); the JSON bodies of the account endpoints.  The login
 * and logout are auth_login, the two-factor check auth_second_factor,
 * passwords and keys auth_password, the counters auth_limit.  Decisions:
 * include/studyhub/http/auth.h. */
#include "studyhub/http/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/auth_cache.h"
#include "studyhub/http/auth_internal.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/runner_host.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

/* Token last_used_at is written at most this often per token, off the
 * request's path, so the hot path stays one indexed SELECT. */
#define AUTH_TOKEN_TOUCH_INTERVAL "1 hour"

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
    uint64_t cache_ticket;       /* the cache's generation before the lookup */
    bool cacheable;              /* notifications flowed when the lookup began */
    char session_id[AUTH_SESSION_ID_LEN + 1]; /* "" unless session auth */
    int64_t session_expires;     /* epoch seconds, 0 when its value says not */
    uint64_t sid_ticket;         /* the session cache's generation before GET */
    bool sid_cacheable;          /* ... and notifications flowed then */
    bool runner;                 /* a runner key (Authorization: Runner) */
    bool runner_cookie;          /* ... sent as the runner host's sessionid cookie */
};

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

/* ------------------------------------------------------------ helpers */

bool auth_is_hex(const char *s, size_t want_len)
{
    size_t i;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return i == want_len;
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

bool auth_cookie(const struct http_req *req, const char *name, char *out, size_t outlen)
{
    return cookie_get(req, name, out, outlen);
}

bool auth_cookie_line(char *out, size_t outlen, const char *name, const char *value,
                      long max_age, unsigned flags)
{
    int n = snprintf(out, outlen, "%s=%s; Max-Age=%ld; Path=/; %sSameSite=Lax%s", name,
                     value, max_age, flags & AUTH_COOKIE_HTTP_ONLY ? "HttpOnly; " : "",
                     flags & AUTH_COOKIE_SECURE ? "; Secure" : "");
    return n >= 0 && (size_t)n < outlen;
}

void auth_set_cookie(struct http_req *req, const char *name, const char *value,
                     long max_age, unsigned flags)
{
    char buf[256];

    /* Our names and values are short hex: a cut one is a bug, not input. */
    if (auth_cookie_line(buf, sizeof buf, name, value, max_age, flags))
        http_add_header(req, "Set-Cookie", buf);
    else
        log_error("auth: cookie %s too long to set", name);
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


void auth_reply_internal(struct http_req *req, const char *what,
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

void auth_ignore_result(PGresult *res, void *arg)
{
    const char *what = arg;
    if (res && !pg_ok(res))
        log_warn("auth: %s failed: %s", what, PQresultErrorMessage(res));
}

void auth_ignore_reply(redisReply *reply, void *arg)
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

/* ------------------------------------------------------------ auth_require */

static void auth_proceed(struct auth_ctx *ctx)
{
    ctx->authenticated = true;
    /* The request log line names who asked (issue 15: who read what). */
    http_req_set_log_user(ctx->req, ctx->user.uuid);
    ctx->next(ctx->req, ctx->app);
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
        auth_reply_internal(req, "token lookup", res);
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
    struct auth_token_entry e;
    fill_user(&e.user, res);
    /* Verified when a two-factor verified session, or an operator, made
     * it (turning two-factor off deletes the user's tokens). */
    e.user.mfa_verified = PQgetvalue(res, 0, TC_MFA)[0] == 't';
    e.expires_at = strtoll(PQgetvalue(res, 0, TC_EXPIRES), NULL, 10);
    ctx->user = e.user;
    if (ctx->cacheable && auth_cache_usable())
        auth_cache_put_token(ctx->cache_ticket, ctx->token_hash, &e);
    if (PQgetvalue(res, 0, TC_TOUCH)[0] == 't') {
        const char *p[1] = { ctx->token_hash };
        pg_exec(ctx->app->pg, &auth_token_touch_stmt, 1, p, auth_ignore_result,
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

/* The session's value: "<user id>:<epoch>:<2fa 0|1>[:<expires>]", the
 * last the epoch second its Redis key ends (login writes it; runner keys
 * and older sessions have none, and are never cached in process). */
struct session_value {
    long long uid;
    int epoch;
    bool mfa;
    long long expires;           /* 0: not given */
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
    if ((end[1] != '0' && end[1] != '1') || (end[2] != '\0' && end[2] != ':'))
        return false;
    v->mfa = end[1] == '1';
    v->expires = 0;
    if (end[2] == ':') {
        const char *x = end + 3;
        if (*x < '0' || *x > '9')
            return false;
        v->expires = strtoll(x, &end, 10);
        if (errno || v->expires <= 0 || *end != '\0')
            return false;
    }
    return true;
}

/* The session's user is u, active and of the session's epoch: the
 * session's flags on it, CSRF, and on. */
static void session_accept(struct auth_ctx *ctx, const struct auth_user *u)
{
    struct http_req *req = ctx->req;
    bool mfa = ctx->user.mfa_verified;      /* the session's flag */

    ctx->user = *u;
    ctx->user.via_session = true;
    ctx->user.mfa_verified = mfa && ctx->user.totp_enabled;
    /* As DRF: authenticate first, then enforce CSRF on unsafe methods.  A
     * runner key is sent by script in a header, never by the browser on
     * its own, so it needs none. */
    if (ctx->runner) {
        ctx->user.via_session = false;
        ctx->user.mfa_verified = false;   /* the family's view, never research */
    }
    /* The runner host's cookie goes out with every request the browser
     * makes there, so it needs the CSRF check a session has. */
    if ((!ctx->runner || ctx->runner_cookie) && !method_is_safe(http_req_method(req)) &&
        !csrf_ok(req)) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "CSRF Failed: CSRF token missing or incorrect.");
        return;
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
        auth_reply_internal(req, "session user lookup", res);
        return;
    }
    /* A session of a deleted or deactivated user, or one from before a
     * password reset (older epoch), is no session at all. */
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, UC_ACTIVE)[0] != 't' ||
        atoi(PQgetvalue(res, 0, UC_EXTRA)) != ctx->session_epoch) {
        reply_no_session(req);
        return;
    }
    struct auth_session_entry e;
    fill_user(&e.user, res);
    e.epoch = ctx->session_epoch;
    if (ctx->cacheable && auth_cache_usable())
        auth_cache_put_session(ctx->cache_ticket, &e);
    session_accept(ctx, &e.user);
}

/* The session (or runner key) stands for v: its user, from the cache or
 * the database. */
static void session_value_known(struct auth_ctx *ctx, const struct session_value *v)
{
    struct http_req *req = ctx->req;
    char id[UTIL_INT_DEC_LEN];

    ctx->session_epoch = v->epoch;
    ctx->session_expires = v->expires;
    ctx->user.mfa_verified = v->mfa;
    if (auth_cache_usable()) {
        const struct auth_session_entry *e = auth_cache_session(v->uid);
        /* Another epoch: the session is older than the row (ended), or the
         * row cached is: the database says which. */
        if (e && e->epoch == v->epoch) {
            session_accept(ctx, &e->user);
            return;
        }
        ctx->cacheable = true;
        ctx->cache_ticket = auth_cache_ticket_sessions();
    }
    util_int_dec(v->uid, id);
    const char *p[1] = { id };
    if (pg_exec(ctx->app->pg, &auth_session_user_stmt, 1, p, session_user_done,
                ctx) != 0)
        jsonapi_reply_unavailable(req, "database");
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
    if (!ctx->runner && ctx->sid_cacheable && v.expires > 0 && auth_cache_usable()) {
        struct auth_sid_entry e = {
            .uid = v.uid, .epoch = v.epoch, .mfa = v.mfa, .expires_at = v.expires,
        };
        auth_cache_put_sid(ctx->sid_ticket, ctx->session_id, &e);
    }
    session_value_known(ctx, &v);
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
        if (ctx->runner_cookie && auth_page_navigation(ctx->req)) {
            runner_host_elsewhere(ctx->req);     /* the site gives a fresh key */
            return;
        }
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

/* Frees the ctx once the reply is out.  A write by a user (a runner key's
 * writes are responses only) may have changed what the gate reads of
 * them: two-factor, the epoch, their own flags; a site admin's, anyone's.
 * Evicted here, after its commit and before any later request is read.
 * (A token's own entry is not: every write by a token, a PATCH a frame,
 * would then cost the next request its lookup; the notification evicts
 * it.) */
static void ctx_free(void *arg)
{
    struct auth_ctx *ctx = arg;

    if (ctx->authenticated && ctx->req && !ctx->runner &&
        !method_is_safe(http_req_method(ctx->req)))
        auth_cache_user_wrote(&ctx->user);
    free(ctx);
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
    http_req_set_data(req, ctx, ctx_free);
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
    /* On the runner's own host only runner keys count: in the header, or
     * as the sessionid cookie the hand-off set there (domain/participate.c). */
    bool runner_host = runner_host_is(req, app->cfg);
    if (runner_host && n == 0) {
        char key[AUTH_SESSION_ID_LEN + 1], hash[65];
        if (!cookie_get(req, "sessionid", key, sizeof key) ||
            !auth_is_hex(key, AUTH_SESSION_ID_LEN)) {
            /* A page opened here without the hand-off: the site gives one. */
            if (auth_page_navigation(req))
                runner_host_elsewhere(req);
            else
                reply_no_session(req);
            return;
        }
        util_sha256_hex(key, AUTH_SESSION_ID_LEN, hash);
        ctx->runner = ctx->runner_cookie = true;
        if (redis_cmd(app->redis, runner_get_done, ctx, "GET runner:%s", hash) != 0)
            jsonapi_reply_unavailable(req, "redis");
        return;
    }
    if (runner_host && !(n >= 1 && wl[0] == 6 && strncasecmp(w[0], "Runner", 6) == 0)) {
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "Invalid runner key.");
        return;
    }

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
        const struct auth_token_entry *cached =
            auth_cache_usable() ? auth_cache_token(ctx->token_hash) : NULL;
        if (cached) {
            if ((int64_t)time(NULL) >= cached->expires_at) {
                reply_token_expired(req);
                return;
            }
            ctx->user = cached->user;
            auth_proceed(ctx);
            return;
        }
        ctx->cacheable = auth_cache_usable();
        ctx->cache_ticket = ctx->cacheable ? auth_cache_ticket_tokens() : 0;
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
        if (n != 2 || wl[1] != 64 || !runner_host_api_path(http_req_path(req))) {
            jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                                 "Invalid runner key.");
            return;
        }
        memcpy(key, w[1], 64);
        key[64] = '\0';
        if (!auth_is_hex(key, 64)) {
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
        !auth_is_hex(sid, AUTH_SESSION_ID_LEN)) {
        reply_no_session(req);
        return;
    }
    memcpy(ctx->session_id, sid, sizeof sid);
    if (auth_cache_usable()) {
        const struct auth_sid_entry *e = auth_cache_sid(sid, (int64_t)time(NULL));
        if (e) {
            struct session_value v = {
                .uid = e->uid, .epoch = e->epoch, .mfa = e->mfa, .expires = e->expires_at,
            };
            session_value_known(ctx, &v);
            return;
        }
        ctx->sid_cacheable = true;
        ctx->sid_ticket = auth_cache_ticket_sids();
    }
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

    /* The runner's own host answers the runner and nothing else. */
    if (runner_host_is(req, app->cfg) && !runner_host_serves(http_req_path(req))) {
        runner_host_elsewhere(req);
        return;
    }
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
    char session_id[AUTH_SESSION_ID_LEN + 1];
};

static void mark_done(redisReply *reply, void *arg)
{
    struct mark_ctx *mc = arg;
    bool ok = reply && reply->type == REDIS_REPLY_STATUS;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_error("auth: redis SET session: %s", reply->str);
    /* This server's next request sees the second factor at once; another
     * server's cached copy only lacks it (less, never more) for a moment. */
    auth_cache_sid_ended(mc->session_id);
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
    memcpy(mc->session_id, ctx->session_id, sizeof mc->session_id);
    if (ctx->session_expires > 0)
        snprintf(value, sizeof value, "%lld:%d:1:%lld", (long long)ctx->user.id, epoch,
                 (long long)ctx->session_expires);
    else
        snprintf(value, sizeof value, "%lld:%d:1", (long long)ctx->user.id, epoch);
    /* XX: never resurrect a session that ended meanwhile. */
    if (redis_cmd(app->redis, mark_done, mc, "SET session:%s %s XX KEEPTTL",
                  ctx->session_id, value) != 0) {
        free(mc);
        return -1;
    }
    return 0;
}
