/* auth_login: POST /api/v1/auth/login/ (the password, with the login
 * slow-down), login/2fa/ (the challenge and a code) and logout/, and the
 * session and CSRF cookies they set.  DECISIONS: http/auth.h. */
#include "studyhub/http/auth_login.h"

#include <errno.h>
#include <netinet/in.h>
#include <jansson.h>
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
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_cache.h"
#include "studyhub/http/auth_internal.h"
#include "studyhub/http/auth_limit.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/auth_second_factor.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"

/* Django's CSRF_COOKIE_AGE (one year). */
#define AUTH_CSRF_COOKIE_AGE_S 31449600L

/* A two-factor login challenge: how long it lives and how many codes it
 * takes before the password has to be given again. */
#define AUTH_CHALLENGE_TTL_S 300
#define AUTH_CHALLENGE_TRIES 5

/* Login lookups: + (password_hash, session_epoch, email verified). */
enum { LC_HASH = UC_EXTRA, LC_EPOCH, LC_VERIFIED };
#define LOGIN_COLUMNS \
    "SELECT u.id, u.uuid, u.email, u.is_researcher, u.is_site_admin, u.is_active," \
    "       " TOTP_ON("u.id") ", u.password_hash, u.session_epoch," \
    "       u.email_verified_at IS NOT NULL FROM users u "

/* A logout tells the other servers to forget the sessions they keep. */
static const struct pg_stmt auth_logout_notify_stmt = {
    "auth_logout_notify",
    "SELECT pg_notify('auth_changed', '" AUTH_CACHE_SESSIONS_ENDED "')",
};

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

/* Redis scripts (EVAL: atomic, one round trip). */

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

/* A challenge's value and how many codes it has now been given. */
static const char challenge_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then return false end "
    "local n = redis.call('INCR', KEYS[2]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end "
    "return {v, n}";


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
    unsigned secure = cookies_secure(req, app) ? AUTH_COOKIE_SECURE : 0;

    auth_set_cookie(req, "sessionid", session_id, session_age,
                    AUTH_COOKIE_HTTP_ONLY | secure);
    /* Not HttpOnly: the runner reads it from document.cookie. */
    auth_set_cookie(req, "csrftoken", csrf, session_age ? AUTH_CSRF_COOKIE_AGE_S : 0L, secure);
}

/* The login slow-down's keys: the account (lower-cased email) and the
 * client address. */
static void delay_keys(char acct[320], char addr_key[96], struct http_req *req,
                       const struct app *app, const char *email)
{
    char addr[INET6_ADDRSTRLEN + 1];
    auth_account_key(acct, 320, "ld:acct:", email);
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
    redis_cmdargv(app->redis, auth_ignore_reply, (void *)"forgive", 5, argv, argl);
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
        redis_cmd(lc->app->redis, auth_ignore_reply, (void *)"DEL challenge",
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
        auth_reply_internal(req, "login lookup", res);
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
        auth_password_verify(auth_password_dummy_hash(), lc->secret);   /* same cost */
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
        redis_cmd(lc->app->redis, auth_ignore_reply, (void *)"DEL challenge",
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
    pg_exec(lc->app->pg, &auth_last_login_stmt, 1, p, auth_ignore_result,
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
        /* The value says when it ends, so a server may keep it (auth_cache). */
        snprintf(value, sizeof value, "%s:%d:%d:%lld", lc->user_id, lc->epoch, lc->mfa ? 1 : 0,
                 (long long)time(NULL) + (long long)app->cfg->session_ttl_s);
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
    if (!auth_is_hex(challenge, AUTH_SESSION_ID_LEN)) {
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

/* One logout in flight: the DEL, then the notification. */
struct logout_ctx {
    struct http_req *req;         /* borrowed until replied */
    struct app *app;              /* borrowed */
};

static void logout_notified(PGresult *res, void *arg)
{
    struct logout_ctx *lo = arg;
    /* The session is gone from Redis: the other servers' copies end with
     * their minute (auth_cache's TTL) even when this did not reach them. */
    if (!pg_ok(res))
        log_warn("auth: logout notification: %s",
                 res ? PQresultErrorMessage(res) : "no database");
    logout_reply(lo->req, lo->app);
    free(lo);
}

static void logout_deleted(redisReply *reply, void *arg)
{
    struct logout_ctx *lo = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        jsonapi_reply_unavailable(lo->req, "redis");
        free(lo);
        return;
    }
    if (pg_exec(lo->app->pg, &auth_logout_notify_stmt, 0, NULL, logout_notified, lo) < 0)
        logout_notified(NULL, lo);
}

/* POST /api/v1/auth/logout/: a session write, so it needs the CSRF token
 * (nobody can log a victim out cross-site). */
static void auth_logout(struct http_req *req, struct app *app)
{
    const char *sid = auth_session_id(req);
    struct logout_ctx *lo;

    if (!sid[0]) {                /* token callers have no session to end */
        logout_reply(req, app);
        return;
    }
    if (!(lo = malloc(sizeof *lo))) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return;
    }
    lo->req = req;
    lo->app = app;
    auth_cache_sid_ended(sid);
    if (redis_cmd(app->redis, logout_deleted, lo, "DEL session:%s", sid) != 0) {
        free(lo);
        jsonapi_reply_unavailable(req, "redis");
    }
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
