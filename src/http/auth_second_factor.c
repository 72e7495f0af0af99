/* auth_second_factor: the one check of a two-factor code (TOTP or a
 * recovery code) with its per-user lockout, for every endpoint that takes
 * one; and the sealing at start of secrets still stored as plaintext. */
#include "studyhub/http/auth_second_factor.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/http/auth_internal.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/totp.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"


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
        redis_cmd(sf->app->redis, auth_ignore_reply, (void *)"sf clear", "DEL %s",
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
        if (pg_exec(app->pg, &auth_seal_secret_stmt, 3, p, auth_ignore_result,
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
