/* accounts: sign-up, email verification, password reset, TOTP enrolment
 * and recovery codes, and API token management (the endpoints are listed
 * in include/studyhub/domain/accounts.h).  Every change and the email it
 * sends are one SQL statement (data-modifying CTEs), so an email is queued
 * exactly when its change commits. */
#include "studyhub/domain/accounts.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/core/util.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_limit.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/auth_second_factor.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/totp.h"
#include "studyhub/io/mail.h"
#include "studyhub/io/pg.h"

#define ACCT_NAME_MAX 255
#define ACCT_TOKEN_NAME_MAX 100
/* Emailed tokens: 32 random bytes as hex; the database keeps the SHA-256. */
#define ACCT_LINK_TOKEN_LEN 64

/* ------------------------------------------------------------ statements */

/* $1 email, $2 hash, $3-$5 names, $6 token hash, $7 ttl, $8 subject,
 * $9 body, $10 subject and $11 body of the email to the owner of an
 * existing account.  One row either way: a new account's uuid, or for an
 * address already taken a random uuid nobody has (the answer must not
 * tell the two apart) while its owner is told by email.  An inactive
 * (deleted) account's address gets no email. */
static const struct pg_stmt acct_signup_stmt = {
    "acct_signup",
    "WITH u AS ("
    "  INSERT INTO users (email, password_hash, given_name, family_name, nickname,"
    "                     email_verified_at)"
    "  VALUES ($1, $2, $3, $4, $5, NULL)"
    "  ON CONFLICT DO NOTHING RETURNING id, uuid, email),"
    " t AS (INSERT INTO account_tokens (user_id, purpose, token_hash, expires_at)"
    "       SELECT id, 'verify_email', $6, now() + make_interval(secs => $7::int)"
    "         FROM u RETURNING user_id),"
    " m AS (" MAIL_INSERT_SECRET_SQL
    "       SELECT 'verify_email', u.email, $8, $9, true FROM u JOIN t ON t.user_id = u.id"
    "       RETURNING id),"
    " e AS (SELECT x.email FROM users x"
    "        WHERE lower(x.email) = lower($1) AND x.is_active"
    "          AND NOT EXISTS (SELECT 1 FROM u)),"
    " n AS (" MAIL_INSERT_SQL
    "       SELECT 'signup_existing', e.email, $10, $11 FROM e RETURNING id)"
    " SELECT u.uuid, u.email FROM u"
    " UNION ALL SELECT gen_random_uuid(), $1 WHERE NOT EXISTS (SELECT 1 FROM u)",
};

static const struct pg_stmt acct_verify_stmt = {
    "acct_verify",
    "WITH t AS (UPDATE account_tokens SET used_at = now()"
    "            WHERE token_hash = $1 AND purpose = 'verify_email'"
    "              AND used_at IS NULL AND expires_at > now()"
    "            RETURNING user_id)"
    " UPDATE users u SET email_verified_at = coalesce(u.email_verified_at, now())"
    "   FROM t WHERE u.id = t.user_id AND u.is_active"
    " RETURNING u.uuid, u.email",
};

/* A new emailed link for an existing account: $1 email, $2 token hash,
 * $3 ttl, $4 subject, $5 body.  The condition on the account differs. */
#define LINK_MAIL(name, purpose, cond) { \
    name, \
    "WITH u AS (SELECT id, email FROM users" \
    "            WHERE lower(email) = lower($1) AND is_active AND " cond ")," \
    " t AS (INSERT INTO account_tokens (user_id, purpose, token_hash, expires_at)" \
    "       SELECT id, '" purpose "', $2, now() + make_interval(secs => $3::int)" \
    "         FROM u RETURNING user_id)," \
    " m AS (" MAIL_INSERT_SECRET_SQL \
    "       SELECT '" purpose "', u.email, $4, $5, true FROM u JOIN t ON t.user_id = u.id" \
    "       RETURNING id)" \
    " SELECT count(*) FROM m" }

static const struct pg_stmt acct_resend_stmt =
    LINK_MAIL("acct_resend", "verify_email", "email_verified_at IS NULL");
static const struct pg_stmt acct_reset_request_stmt =
    LINK_MAIL("acct_reset_request", "password_reset", "true");

static const struct pg_stmt acct_reset_lookup_stmt = {
    "acct_reset_lookup",
    "SELECT u.id, u.email FROM account_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = $1 AND t.purpose = 'password_reset'"
    "   AND t.used_at IS NULL AND t.expires_at > now() AND u.is_active",
};

/* $1 token hash, $2 password hash, $3 subject, $4 body.  Uses the token
 * (once), sets the password, ends every session (epoch), revokes every API
 * token, voids the user's other reset links and tells them by email. */
static const struct pg_stmt acct_reset_confirm_stmt = {
    "acct_reset_confirm",
    "WITH t AS (UPDATE account_tokens SET used_at = now()"
    "            WHERE token_hash = $1 AND purpose = 'password_reset'"
    "              AND used_at IS NULL AND expires_at > now()"
    "            RETURNING user_id),"
    " u AS (UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1,"
    "              email_verified_at = coalesce(email_verified_at, now())"
    "         FROM t WHERE users.id = t.user_id AND users.is_active"
    "       RETURNING users.id, users.email),"
    " o AS (UPDATE account_tokens a SET used_at = now() FROM u"
    "        WHERE a.user_id = u.id AND a.purpose = 'password_reset'"
    "          AND a.used_at IS NULL AND a.token_hash <> $1 RETURNING 1),"
    " k AS (DELETE FROM api_tokens a USING u WHERE a.user_id = u.id RETURNING 1),"
    " m AS (" MAIL_INSERT_SQL
    "       SELECT 'password_changed', u.email, $3, $4 FROM u RETURNING id)"
    " SELECT count(*) FROM u",
};

static const struct pg_stmt acct_me_stmt = {
    "acct_me",
    "SELECT u.uuid, u.email, u.email_verified_at IS NOT NULL, u.is_researcher,"
    "       u.is_site_admin, t.confirmed_at IS NOT NULL,"
    "       api_time(t.confirmed_at), t.user_id IS NOT NULL AND t.confirmed_at IS NULL,"
    "       (SELECT count(*) FROM user_recovery_codes r"
    "         WHERE r.user_id = u.id AND r.used_at IS NULL AND t.confirmed_at IS NOT NULL)"
    "  FROM users u LEFT JOIN user_totp t ON t.user_id = u.id"
    " WHERE u.id = $1::bigint",
};
enum { ME_UUID, ME_EMAIL, ME_VERIFIED, ME_RESEARCHER, ME_ADMIN, ME_TOTP,
       ME_TOTP_SINCE, ME_TOTP_PENDING, ME_CODES_LEFT };

/* A fresh secret replaces an unconfirmed one; no row: TOTP is already on. */
static const struct pg_stmt acct_totp_enroll_stmt = {
    "acct_totp_enroll",
    "INSERT INTO user_totp (user_id, secret) VALUES ($1::bigint, $2)"
    " ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret,"
    "   created_at = now(), last_step = 0"
    " WHERE user_totp.confirmed_at IS NULL RETURNING 1",
};

/* $1 user, $2 step, $3 secret (as read: a concurrent re-enrolment makes
 * this match nothing), $4 recovery code hashes, $5 subject, $6 body.
 * Turning TOTP on ends the user's other sessions: the epoch moves on, and
 * the new one comes back for this session. */
static const struct pg_stmt acct_totp_confirm_stmt = {
    "acct_totp_confirm",
    "WITH d AS (UPDATE user_totp SET confirmed_at = now(), last_step = $2::bigint"
    "            WHERE user_id = $1::bigint AND confirmed_at IS NULL AND secret = $3"
    "              AND last_step < $2::bigint RETURNING user_id),"
    " s AS (UPDATE users SET session_epoch = session_epoch + 1"
    "        WHERE id IN (SELECT user_id FROM d) RETURNING session_epoch),"
    " x AS (DELETE FROM user_recovery_codes WHERE user_id IN (SELECT user_id FROM d)),"
    " r AS (INSERT INTO user_recovery_codes (user_id, code_hash)"
    "       SELECT d.user_id, h FROM d, unnest($4::text[]) h RETURNING 1),"
    " m AS (" MAIL_INSERT_SQL
    "       SELECT 'totp_enabled', u.email, $5, $6 FROM d JOIN users u ON u.id = d.user_id"
    "       RETURNING id)"
    " SELECT (SELECT count(*) FROM d), (SELECT session_epoch FROM s)",
};

/* Turning TOTP off also revokes every API token of the user. */
static const struct pg_stmt acct_totp_disable_stmt = {
    "acct_totp_disable",
    "WITH d AS (DELETE FROM user_totp WHERE user_id = $1::bigint RETURNING user_id),"
    " x AS (DELETE FROM user_recovery_codes WHERE user_id IN (SELECT user_id FROM d)),"
    " k AS (DELETE FROM api_tokens WHERE user_id IN (SELECT user_id FROM d)),"
    " m AS (" MAIL_INSERT_SQL
    "       SELECT 'totp_disabled', u.email, $2, $3 FROM d JOIN users u ON u.id = d.user_id"
    "       RETURNING id)"
    " SELECT count(*) FROM d",
};

static const struct pg_stmt acct_codes_replace_stmt = {
    "acct_codes_replace",
    "WITH d AS (SELECT user_id FROM user_totp"
    "            WHERE user_id = $1::bigint AND confirmed_at IS NOT NULL),"
    " x AS (DELETE FROM user_recovery_codes WHERE user_id IN (SELECT user_id FROM d)),"
    " r AS (INSERT INTO user_recovery_codes (user_id, code_hash)"
    "       SELECT d.user_id, h FROM d, unnest($2::text[]) h RETURNING 1)"
    " SELECT count(*) FROM r",
};

static const struct pg_stmt acct_tokens_list_stmt = {
    "acct_tokens_list",
    "SELECT uuid, name, api_time(created_at), api_time(last_used_at),"
    "       api_time(expires_at), mfa_verified"
    "  FROM api_tokens WHERE user_id = $1::bigint ORDER BY id",
};

/* $1 hash, $2 user, $3 name, $4 made by a two-factor verified session,
 * $5 TOKEN_TTL_DAYS. */
static const struct pg_stmt acct_token_create_stmt = {
    "acct_token_create",
    "INSERT INTO api_tokens (token_hash, user_id, name, mfa_verified, expires_at)"
    " VALUES ($1, $2::bigint, $3, $4::boolean, now() + make_interval(days => $5::int))"
    " RETURNING uuid, name, api_time(created_at), NULL, api_time(expires_at),"
    "           mfa_verified",
};

static const struct pg_stmt acct_token_delete_stmt = {
    "acct_token_delete",
    "DELETE FROM api_tokens WHERE uuid = $1::uuid AND user_id = $2::bigint RETURNING token_hash",
};

/* ------------------------------------------------------------ the op */

/* Every flow's steps.  One enum for all flows, since each flow is a
 * straight line through a few of them. */
enum acct_state {
    ST_RATE,        /* count the request against MAIL_RATE_* */
    ST_LOOKUP,      /* read what the change depends on (reset links) */
    ST_HASH,        /* argon2id (on the loop, throttled) */
    ST_CHECK,       /* second factor (auth_second_factor_check) */
    ST_WRITE,       /* the change and its email, one statement */
    ST_SESSION,     /* mark this session two-factor verified */
    ST_DONE,
};
static const char *const acct_state_names[] = {
    "rate", "lookup", "hash", "check", "write", "session", "done",
};

enum acct_flow {
    FLOW_SIGNUP, FLOW_RESEND, FLOW_RESET_REQUEST, FLOW_RESET_CONFIRM,
    FLOW_TOTP_CONFIRM, FLOW_TOTP_DISABLE, FLOW_CODES,
};

/* One request between its first step and its reply. */
struct acct_op {
    struct http_req *req;          /* borrowed until replied */
    struct app *app;               /* borrowed */
    enum acct_flow flow;
    enum acct_state state;
    char uid[24];                  /* users.id as text (logged-in flows, reset) */
    char email[AUTH_EMAIL_MAX + 1];
    char *password;                /* owned, wiped: sign-up, reset */
    char hash[AUTH_PASSWORD_HASH_MAX];
    char link_token[ACCT_LINK_TOKEN_LEN + 1];   /* emailed; never stored */
    char link_hash[65];            /* SHA-256 of link_token, or of the given one */
    char code[72];                 /* a TOTP or recovery code as given */
    bool recovery;                 /* code is a recovery code */
    char secret[TOTP_SEALED_LEN + 1];  /* enrolment: the pending secret as stored */
    char step[24];                 /* matched TOTP step */
    int epoch;                     /* TOTP confirmed: the user's new session epoch */
    char names[3][ACCT_NAME_MAX + 1];          /* given, family, nickname */
    char codes[AUTH_RECOVERY_CODES][20];       /* new recovery codes */
    struct auth_rate_key rate[2];  /* account and address counters */
};

static void op_step(struct acct_op *op);

static struct acct_op *op_new(struct http_req *req, struct app *app,
                              enum acct_flow flow, enum acct_state first)
{
    struct acct_op *op = calloc(1, sizeof *op);
    if (!op) {
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        return NULL;
    }
    op->req = req;
    op->app = app;
    op->flow = flow;
    op->state = first;
    return op;
}

static void op_free(struct acct_op *op)
{
    if (!op)
        return;
    if (op->password) {
        OPENSSL_cleanse(op->password, strlen(op->password));
        free(op->password);
    }
    OPENSSL_cleanse(op, sizeof *op);
    free(op);
}

static void op_set_state(struct acct_op *op, enum acct_state s)
{
    log_debug("accounts: %s -> %s", acct_state_names[op->state], acct_state_names[s]);
    op->state = s;
}

/* A pg result that cannot be used: replied (503 or 500), op freed. */
static bool op_res_bad(struct acct_op *op, const PGresult *res, const char *what)
{
    if (!res) {
        jsonapi_reply_unavailable(op->req, "database");
    } else if (!pg_ok(res)) {
        log_error("accounts: %s failed: %s", what, PQresultErrorMessage(res));
        jsonapi_reply_errorf(op->req, 500, "error", NULL, "A server error occurred.");
    } else {
        return false;
    }
    op_free(op);
    return true;
}

static void reply_internal(struct http_req *req, const char *what)
{
    log_error("accounts: %s", what);
    jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
}

/* Where emailed links point: BASE_URL, else the address we listen on.
 * Never the Host header: a reset requested with "Host: evil.example"
 * must not email the victim a link to evil.example. */
static void public_base(const struct app *app, char *out, size_t len)
{
    if (app->cfg->base_url && app->cfg->base_url[0])
        snprintf(out, len, "%s", app->cfg->base_url);
    else
        snprintf(out, len, "http://%s:%d", app->cfg->listen_addr,
                 http_server_port(app->http));
}

static void new_link_token(struct acct_op *op)
{
    util_random_hex(32, op->link_token);
    auth_token_hash(op->link_token, op->link_hash);
}

/* A given link token: 64 hex characters (else false: no query needed);
 * its SHA-256 into hash. */
static bool link_token_take(const char *token, char hash[65])
{
    size_t n = strlen(token);
    if (n != ACCT_LINK_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", token[i]))
            return false;
    auth_token_hash(token, hash);
    return true;
}

static const char *session_only_detail =
    "This needs a logged-in session (an API token cannot manage credentials).";

static bool require_session(struct http_req *req, const struct auth_user *me)
{
    if (me->via_session)
        return true;
    jsonapi_reply_errorf(req, 403, "session_required", NULL, "%s", session_only_detail);
    return false;
}

/* ------------------------------------------------------------ emails */

/* Subject and body of each email, made when its change is written. */
static void mail_verify(const struct acct_op *op, char *subject, size_t sl,
                        char *body, size_t bl)
{
    char base[320];
    public_base(op->app, base, sizeof base);
    snprintf(subject, sl, "Confirm your email address");
    snprintf(body, bl,
             "Hello,\n\n"
             "Please confirm the email address of your account by opening this link:\n\n"
             "%s/accounts/verify/%s/\n\n"
             "The link works once and expires in %ld hours. If you did not sign up,\n"
             "you can ignore this email.\n",
             base, op->link_token, (op->app->cfg->email_verify_ttl_s + 3599) / 3600);
}

static void mail_reset(const struct acct_op *op, char *subject, size_t sl,
                       char *body, size_t bl)
{
    char base[320];
    public_base(op->app, base, sizeof base);
    snprintf(subject, sl, "Reset your password");
    snprintf(body, bl,
             "Hello,\n\n"
             "Someone (we hope you) asked to reset the password of your account.\n"
             "To choose a new password, open this link:\n\n"
             "%s/accounts/password-reset/%s/\n\n"
             "The link works once and expires in %ld minutes. If you did not ask,\n"
             "you can ignore this email: your password stays as it is.\n",
             base, op->link_token, (op->app->cfg->password_reset_ttl_s + 59) / 60);
}

/* To the owner of an address someone tried to sign up with. */
static void mail_signup_existing(const struct acct_op *op, char *subject, size_t sl,
                                 char *body, size_t bl)
{
    char base[320];
    public_base(op->app, base, sizeof base);
    snprintf(subject, sl, "Someone tried to sign up with your address");
    snprintf(body, bl,
             "Hello,\n\n"
             "Someone just tried to create an account with this email address,\n"
             "which already has one.  If it was you, log in at\n\n"
             "%s/\n\n"
             "or, if you forgot your password, reset it there.  If it was not you,\n"
             "you can ignore this email: nothing about your account changed.\n",
             base);
}

static void mail_notice(const char *what, char *subject, size_t sl, char *body,
                        size_t bl)
{
    snprintf(subject, sl, "Security notice: %s", what);
    snprintf(body, bl,
             "Hello,\n\n"
             "This is to let you know: %s on your account.\n\n"
             "If this was not you, reset your password now and contact us.\n",
             what);
}

/* ------------------------------------------------------------ callbacks */

static void op_rate_done(enum auth_rate_verdict v, long retry, void *arg)
{
    struct acct_op *op = arg;
    if (v == AUTH_RATE_UNAVAILABLE) {
        jsonapi_reply_unavailable(op->req, "redis");
        op_free(op);
        return;
    }
    if (v == AUTH_RATE_LIMITED) {
        auth_reply_rate_limited(op->req, retry);
        op_free(op);
        return;
    }
    op_set_state(op, op->flow == FLOW_SIGNUP ? ST_HASH : ST_WRITE);
    op_step(op);
}

static void op_lookup_done(PGresult *res, void *arg)
{
    struct acct_op *op = arg;
    struct http_req *req = op->req;

    if (op_res_bad(op, res, "lookup"))
        return;
    /* FLOW_RESET_CONFIRM, the only flow with a lookup: the link's user. */
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 400, "invalid", "/token",
                             "This password reset link is invalid or has expired.");
        goto out;
    }
    snprintf(op->uid, sizeof op->uid, "%s", PQgetvalue(res, 0, 0));
    snprintf(op->email, sizeof op->email, "%s", PQgetvalue(res, 0, 1));
    const char *why = auth_password_policy(op->password, op->email);
    if (why) {
        jsonapi_reply_errorf(req, 400, "invalid", "/password", "%s", why);
        goto out;
    }
    op_set_state(op, ST_HASH);
    op_step(op);
    return;
out:
    op_free(op);
}

static void op_sf_done(const struct auth_sf_outcome *o, void *arg)
{
    struct acct_op *op = arg;
    switch (o->result) {
    case AUTH_SF_OK:
        if (op->flow == FLOW_TOTP_CONFIRM) {      /* the write claims the step */
            snprintf(op->step, sizeof op->step, "%lld", (long long)o->step);
            snprintf(op->secret, sizeof op->secret, "%s", o->stored_secret);
        }
        op_set_state(op, ST_WRITE);
        op_step(op);
        return;
    case AUTH_SF_BAD:
        jsonapi_reply_errorf(op->req, 400, "invalid",
                             op->recovery ? "/recovery_code" : "/code",
                             op->recovery ? "Invalid or already used recovery code."
                                          : "Invalid two-factor code.");
        break;
    case AUTH_SF_LOCKED:
        auth_reply_rate_limited(op->req, o->retry_after_s);
        break;
    case AUTH_SF_NOT_ENABLED:
        if (op->flow == FLOW_TOTP_CONFIRM)
            jsonapi_reply_errorf(op->req, 400, "not_enrolled", NULL,
                                 "Start with POST /api/v1/accounts/totp/ to get a secret.");
        else
            jsonapi_reply_errorf(op->req, 409, "conflict", NULL,
                                 "Two-factor authentication is not on.");
        break;
    case AUTH_SF_ALREADY_ON:
        jsonapi_reply_errorf(op->req, 409, "conflict", NULL,
                             "Two-factor authentication is already on.");
        break;
    case AUTH_SF_UNAVAILABLE:
        jsonapi_reply_unavailable(op->req, "database");
        break;
    case AUTH_SF_REDIS_UNAVAILABLE:
        jsonapi_reply_unavailable(op->req, "redis");
        break;
    case AUTH_SF_ERROR:
        reply_internal(op->req, "second factor check failed");
        break;
    }
    op_free(op);
}

/* The new recovery codes as the JSON the client shows once. */
static json_t *codes_json(const struct acct_op *op)
{
    json_t *a = json_array();
    for (int i = 0; i < AUTH_RECOVERY_CODES; i++)
        json_array_append_new(a, json_string(op->codes[i]));
    return a;
}

static void op_reply_codes(struct acct_op *op, bool confirmed_now)
{
    char self[512];
    const struct auth_user *me = auth_user(op->req);
    jsonapi_url(op->req, self, sizeof self, "accounts/totp/");
    json_t *attrs = json_pack("{s:b, s:o, s:i}", "enabled", 1,
                              "recovery_codes", codes_json(op),
                              "recovery_codes_left", AUTH_RECOVERY_CODES);
    if (confirmed_now)
        json_object_set_new(attrs, "two_factor_verified", json_true());
    jsonapi_reply(op->req, 200, json_pack("{s:o}", "data",
                  jsonapi_resource("totp", me ? me->uuid : "", attrs, NULL, self)));
}

static void op_session_marked(bool ok, void *arg)
{
    struct acct_op *op = arg;
    /* TOTP is on either way; a session that could not be moved to the new
     * epoch ended with the others, and its user logs in again. */
    if (!ok)
        log_warn("accounts: could not move the session to the new epoch");
    op_reply_codes(op, ok);
    op_free(op);
}

static void op_write_done(PGresult *res, void *arg)
{
    struct acct_op *op = arg;
    struct http_req *req = op->req;
    char self[512];

    if (op_res_bad(op, res, "write"))
        return;
    switch (op->flow) {
    case FLOW_SIGNUP: {
        /* One row, a new account or not (see acct_signup_stmt); the same
         * answer either way, and an email either way. */
        if (PQntuples(res) != 1) {
            reply_internal(req, "sign-up returned no row");
            break;
        }
        mail_sender_kick(op->app->mail);
        const char *uuid = PQgetvalue(res, 0, 0);
        jsonapi_url(req, self, sizeof self, "users/%s/", uuid);
        json_t *attrs = json_pack("{s:s, s:b, s:s, s:s, s:s}", "email",
                                  PQgetvalue(res, 0, 1), "email_verified", 0,
                                  "given_name", op->names[0], "family_name",
                                  op->names[1], "nickname", op->names[2]);
        jsonapi_reply(req, 201, json_pack("{s:o, s:{s:s}}", "data",
                      jsonapi_resource("users", uuid, attrs, NULL, self), "meta",
                      "detail", "We emailed you a link to confirm your address."));
        break;
    }
    case FLOW_RESEND:
    case FLOW_RESET_REQUEST:
        /* The same answer whether or not an email went out. */
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) > 0)
            mail_sender_kick(op->app->mail);
        jsonapi_reply(req, 202, json_pack("{s:{s:s}}", "meta", "detail",
                      "If that address belongs to an account, an email is on its way."));
        break;
    case FLOW_RESET_CONFIRM:
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) != 1) {   /* raced */
            jsonapi_reply_errorf(req, 400, "invalid", "/token",
                                 "This password reset link is invalid or has expired.");
            break;
        }
        auth_users_changed();          /* the epoch moved: sessions end */
        mail_sender_kick(op->app->mail);
        http_reply(req, 204, NULL, NULL, 0);
        break;
    case FLOW_TOTP_CONFIRM:
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) != 1) {   /* raced */
            jsonapi_reply_errorf(req, 409, "conflict", NULL,
                                 "Two-factor enrolment changed meanwhile; start again.");
            break;
        }
        op->epoch = atoi(PQgetvalue(res, 0, 1));
        mail_sender_kick(op->app->mail);
        op_set_state(op, ST_SESSION);
        op_step(op);
        return;
    case FLOW_TOTP_DISABLE:
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) != 1) {
            jsonapi_reply_errorf(req, 409, "conflict", NULL,
                                 "Two-factor authentication is not on.");
            break;
        }
        mail_sender_kick(op->app->mail);
        http_reply(req, 204, NULL, NULL, 0);
        break;
    case FLOW_CODES:
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) != AUTH_RECOVERY_CODES) {
            jsonapi_reply_errorf(req, 409, "conflict", NULL,
                                 "Two-factor authentication is not on.");
            break;
        }
        op_reply_codes(op, false);
        break;
    }
    op_free(op);
}

/* ------------------------------------------------------------ the step */

/* "{h1,h2,...}" of the new recovery codes' hashes (hex: no quoting). */
static void codes_generate(struct acct_op *op, char *array, size_t len)
{
    size_t o = 0;
    array[o++] = '{';
    for (int i = 0; i < AUTH_RECOVERY_CODES; i++) {
        char h[65];
        auth_recovery_code_generate(op->codes[i]);
        auth_recovery_code_hash(op->codes[i], h);
        o += (size_t)snprintf(array + o, len - o, "%s%s", i ? "," : "", h);
    }
    snprintf(array + o, len - o, "}");
}

static int op_write(struct acct_op *op)
{
    struct app *app = op->app;
    char subject[256], body[2048], ttl[24], array[AUTH_RECOVERY_CODES * 66 + 4];

    switch (op->flow) {
    case FLOW_SIGNUP: {
        char subject2[256], body2[1024];
        new_link_token(op);
        mail_verify(op, subject, sizeof subject, body, sizeof body);
        mail_signup_existing(op, subject2, sizeof subject2, body2, sizeof body2);
        snprintf(ttl, sizeof ttl, "%ld", app->cfg->email_verify_ttl_s);
        const char *p[11] = { op->email, op->hash, op->names[0], op->names[1],
                              op->names[2], op->link_hash, ttl, subject, body,
                              subject2, body2 };
        return pg_exec(app->pg, &acct_signup_stmt, 11, p, op_write_done, op);
    }
    case FLOW_RESEND:
    case FLOW_RESET_REQUEST: {
        bool reset = op->flow == FLOW_RESET_REQUEST;
        new_link_token(op);
        if (reset)
            mail_reset(op, subject, sizeof subject, body, sizeof body);
        else
            mail_verify(op, subject, sizeof subject, body, sizeof body);
        snprintf(ttl, sizeof ttl, "%ld", reset ? app->cfg->password_reset_ttl_s
                                               : app->cfg->email_verify_ttl_s);
        const char *p[5] = { op->email, op->link_hash, ttl, subject, body };
        return pg_exec(app->pg, reset ? &acct_reset_request_stmt : &acct_resend_stmt,
                       5, p, op_write_done, op);
    }
    case FLOW_RESET_CONFIRM: {
        mail_notice("your password was changed", subject, sizeof subject, body,
                    sizeof body);
        const char *p[4] = { op->link_hash, op->hash, subject, body };
        return pg_exec(app->pg, &acct_reset_confirm_stmt, 4, p, op_write_done, op);
    }
    case FLOW_TOTP_CONFIRM: {
        codes_generate(op, array, sizeof array);
        mail_notice("two-factor authentication was turned on", subject,
                    sizeof subject, body, sizeof body);
        const char *p[6] = { op->uid, op->step, op->secret, array, subject, body };
        return pg_exec(app->pg, &acct_totp_confirm_stmt, 6, p, op_write_done, op);
    }
    case FLOW_TOTP_DISABLE: {
        mail_notice("two-factor authentication was turned off", subject,
                    sizeof subject, body, sizeof body);
        const char *p[3] = { op->uid, subject, body };
        return pg_exec(app->pg, &acct_totp_disable_stmt, 3, p, op_write_done, op);
    }
    case FLOW_CODES: {
        codes_generate(op, array, sizeof array);
        const char *p[2] = { op->uid, array };
        return pg_exec(app->pg, &acct_codes_replace_stmt, 2, p, op_write_done, op);
    }
    }
    return -1;
}

/* Starts the work of op->state; callbacks move it on. */
static void op_step(struct acct_op *op)
{
    struct app *app = op->app;
    struct http_req *req = op->req;

    switch (op->state) {
    case ST_RATE:
        if (auth_rate_hit(app, op->rate, 2, op_rate_done, op) != 0) {
            jsonapi_reply_unavailable(req, "redis");
            op_free(op);
        }
        return;
    case ST_LOOKUP: {           /* FLOW_RESET_CONFIRM */
        const char *p[1] = { op->link_hash };
        int rc = pg_exec(app->pg, &acct_reset_lookup_stmt, 1, p, op_lookup_done, op);
        if (rc != 0) {
            jsonapi_reply_unavailable(req, "database");
            op_free(op);
        }
        return;
    }
    case ST_HASH:
        if (!auth_hash_throttle()) {
            auth_reply_throttled(req, 1);
            op_free(op);
            return;
        }
        /* Blocks the loop for one argon2id hash (tens of ms). */
        if (auth_password_hash(op->password, op->hash, sizeof op->hash) != 0) {
            reply_internal(req, "password hashing failed");
            op_free(op);
            return;
        }
        op_set_state(op, ST_WRITE);
        op_step(op);
        return;
    case ST_CHECK: {
        struct auth_sf_request rq = {
            .user_id = strtoll(op->uid, NULL, 10),
            .kind = op->flow == FLOW_TOTP_CONFIRM ? AUTH_SF_ENROL
                    : op->recovery                ? AUTH_SF_RECOVERY
                                                  : AUTH_SF_TOTP,
            .code = op->code,
        };
        if (auth_second_factor_check(app, &rq, op_sf_done, op) != 0) {
            jsonapi_reply_unavailable(req, "database");
            op_free(op);
        }
        return;
    }
    case ST_WRITE:
        if (op_write(op) != 0) {
            jsonapi_reply_unavailable(req, "database");
            op_free(op);
        }
        return;
    case ST_SESSION:
        if (auth_session_mark_verified(req, app, op->epoch, op_session_marked, op) != 0) {
            op_reply_codes(op, false);
            op_free(op);
        }
        return;
    case ST_DONE:
        return;
    }
}

/* ------------------------------------------------------------ anonymous */

/* An email field that must look like an address (sign-up). */
static const char *email_field(struct http_req *req, json_t *fields)
{
    const char *email = auth_field(req, fields, "email", AUTH_EMAIL_MAX);
    if (email && (!mail_addr_ok(email) || !strchr(strchr(email, '@'), '.'))) {
        jsonapi_reply_errorf(req, 400, "invalid", "/email", "Enter a valid email address.");
        return NULL;
    }
    return email;
}

/* An optional name field: absent or null is "", else a string up to 255. */
static bool name_field(struct http_req *req, json_t *fields, const char *name,
                       char *out, size_t outlen)
{
    json_t *v = json_object_get(fields, name);
    if (!v || json_is_null(v)) {
        out[0] = '\0';
        return true;
    }
    const char *s = auth_field(req, fields, name, ACCT_NAME_MAX);
    if (!s)
        return false;
    snprintf(out, outlen, "%s", s);
    return true;
}

static void h_signup(struct http_req *req, struct app *app)
{
    struct acct_op *op = NULL;
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *email, *password, *why;

    if (!body)
        return;
    if (!(email = email_field(req, fields)) ||
        !(password = auth_field(req, fields, "password", AUTH_PASSWORD_MAX)))
        goto out;
    if ((why = auth_password_policy(password, email))) {
        jsonapi_reply_errorf(req, 400, "invalid", "/password", "%s", why);
        goto out;
    }
    if (!(op = op_new(req, app, FLOW_SIGNUP, ST_RATE)))
        goto out;
    if (!name_field(req, fields, "given_name", op->names[0], sizeof op->names[0]) ||
        !name_field(req, fields, "family_name", op->names[1], sizeof op->names[1]) ||
        !name_field(req, fields, "nickname", op->names[2], sizeof op->names[2]))
        goto out;
    if (!(op->password = strdup(password))) {
        reply_internal(req, "out of memory");
        goto out;
    }
    snprintf(op->email, sizeof op->email, "%s", email);
    auth_rate_keys(op->rate, req, app, "signup", email);
    op_step(op);
    op = NULL;
out:
    op_free(op);
    json_decref(body);
}

static void verify_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    char self[512];

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        return;
    }
    if (!pg_ok(res)) {
        log_error("accounts: verify failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "verify failed");
        return;
    }
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 400, "invalid", "/token",
                             "This confirmation link is invalid or has expired.");
        return;
    }
    const char *uuid = PQgetvalue(res, 0, 0);
    jsonapi_url(req, self, sizeof self, "users/%s/", uuid);
    jsonapi_reply(req, 200, json_pack("{s:o}", "data",
                  jsonapi_resource("users", uuid,
                                   json_pack("{s:s, s:b}", "email", PQgetvalue(res, 0, 1),
                                             "email_verified", 1),
                                   NULL, self)));
}

static void h_verify(struct http_req *req, struct app *app)
{
    char hash[65];
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *token;

    if (!body)
        return;
    if (!(token = auth_field(req, fields, "token", 128)))
        goto out;
    if (!link_token_take(token, hash)) {
        jsonapi_reply_errorf(req, 400, "invalid", "/token",
                             "This confirmation link is invalid or has expired.");
        goto out;
    }
    const char *p[1] = { hash };
    if (pg_exec(app->pg, &acct_verify_stmt, 1, p, verify_done, req) != 0)
        jsonapi_reply_unavailable(req, "database");
out:
    json_decref(body);
}

/* verify/resend/ and password-reset/: the same shape. */
static void link_request(struct http_req *req, struct app *app, enum acct_flow flow)
{
    struct acct_op *op = NULL;
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *email;

    if (!body)
        return;
    if (!(email = auth_field(req, fields, "email", AUTH_EMAIL_MAX)))
        goto out;
    if (!(op = op_new(req, app, flow, ST_RATE)))
        goto out;
    snprintf(op->email, sizeof op->email, "%s", email);
    /* Keyed on the address as given, existing or not: a 429 says nothing
     * about whether the account exists. */
    auth_rate_keys(op->rate, req, app, "mail", email);
    op_step(op);
    op = NULL;
out:
    op_free(op);
    json_decref(body);
}

static void h_resend(struct http_req *req, struct app *app)
{
    link_request(req, app, FLOW_RESEND);
}

static void h_reset_request(struct http_req *req, struct app *app)
{
    link_request(req, app, FLOW_RESET_REQUEST);
}

static void h_reset_confirm(struct http_req *req, struct app *app)
{
    struct acct_op *op = NULL;
    json_t *fields, *body = auth_read_json(req, &fields);
    const char *token, *password;

    if (!body)
        return;
    if (!(token = auth_field(req, fields, "token", 128)) ||
        !(password = auth_field(req, fields, "password", AUTH_PASSWORD_MAX)))
        goto out;
    if (!(op = op_new(req, app, FLOW_RESET_CONFIRM, ST_LOOKUP)))
        goto out;
    if (!link_token_take(token, op->link_hash)) {
        jsonapi_reply_errorf(req, 400, "invalid", "/token",
                             "This password reset link is invalid or has expired.");
        goto out;
    }
    /* The policy needs the account's email: checked after the lookup. */
    if (!(op->password = strdup(password))) {
        reply_internal(req, "out of memory");
        goto out;
    }
    op_step(op);
    op = NULL;
out:
    op_free(op);
    json_decref(body);
}

/* ------------------------------------------------------------ logged in */

static void me_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    char self[512];

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        return;
    }
    if (!pg_ok(res) || PQntuples(res) != 1) {
        if (!pg_ok(res))
            log_error("accounts: me failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "me lookup");
        return;
    }
    const struct auth_user *me = auth_user(req);
    bool totp_route = strstr(http_req_route(req), "/totp/") != NULL;
    bool totp = PQgetvalue(res, 0, ME_TOTP)[0] == 't';
    json_t *attrs = json_pack("{s:b, s:b, s:I}", "enabled", totp, "pending",
                              PQgetvalue(res, 0, ME_TOTP_PENDING)[0] == 't',
                              "recovery_codes_left",
                              (json_int_t)strtoll(PQgetvalue(res, 0, ME_CODES_LEFT), NULL, 10));
    json_object_set_new(attrs, "enabled_since",
                        PQgetisnull(res, 0, ME_TOTP_SINCE)
                            ? json_null() : json_string(PQgetvalue(res, 0, ME_TOTP_SINCE)));
    if (totp_route) {
        jsonapi_url(req, self, sizeof self, "accounts/totp/");
        jsonapi_reply(req, 200, json_pack("{s:o}", "data",
                      jsonapi_resource("totp", me->uuid, attrs, NULL, self)));
        return;
    }
    json_t *acc = json_pack("{s:s, s:b, s:b, s:b, s:b, s:b, s:s, s:o}",
                            "email", PQgetvalue(res, 0, ME_EMAIL),
                            "email_verified", PQgetvalue(res, 0, ME_VERIFIED)[0] == 't',
                            "is_researcher", PQgetvalue(res, 0, ME_RESEARCHER)[0] == 't',
                            "is_staff", PQgetvalue(res, 0, ME_ADMIN)[0] == 't',
                            "two_factor_enabled", totp,
                            "two_factor_verified", auth_user_is_2fa_verified(me),
                            "authenticated_by", me->via_session ? "session" : "token",
                            "two_factor", attrs);
    jsonapi_url(req, self, sizeof self, "accounts/me/");
    jsonapi_reply(req, 200, json_pack("{s:o}", "data",
                  jsonapi_resource("accounts", PQgetvalue(res, 0, ME_UUID), acc, NULL, self)));
}

static void h_me(struct http_req *req, struct app *app)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", (long long)auth_user(req)->id);
    const char *p[1] = { uid };
    if (pg_exec(app->pg, &acct_me_stmt, 1, p, me_done, req) != 0)
        jsonapi_reply_unavailable(req, "database");
}

static void enroll_done(PGresult *res, void *arg);

/* One enrolment between its INSERT and its reply. */
struct enroll {
    struct http_req *req;                     /* borrowed until replied */
    struct app *app;                          /* borrowed */
    char secret[TOTP_SECRET_B32_LEN + 1];     /* shown once, here */
    char sealed[TOTP_SEALED_LEN + 1];         /* what the database keeps */
};

static void h_totp_enroll(struct http_req *req, struct app *app)
{
    const struct auth_user *me = auth_user(req);
    unsigned char key[TOTP_SECRET_BYTES];
    char uid[24];
    struct enroll *en;

    if (!require_session(req, me))
        return;
    en = calloc(1, sizeof *en);
    if (!en) {
        reply_internal(req, "out of memory");
        return;
    }
    en->req = req;
    en->app = app;
    if (RAND_bytes(key, sizeof key) != 1 ||
        totp_base32_encode(key, sizeof key, en->secret, sizeof en->secret) < 0) {
        OPENSSL_cleanse(key, sizeof key);
        free(en);
        reply_internal(req, "cannot make a TOTP secret");
        return;
    }
    OPENSSL_cleanse(key, sizeof key);
    if (totp_secret_seal(app->cfg->totp_key, me->id, en->secret, en->sealed,
                         sizeof en->sealed) != 0) {
        OPENSSL_cleanse(en, sizeof *en);
        free(en);
        reply_internal(req, "cannot seal a TOTP secret");
        return;
    }
    snprintf(uid, sizeof uid, "%lld", (long long)me->id);
    const char *p[2] = { uid, en->sealed };
    if (pg_exec(app->pg, &acct_totp_enroll_stmt, 2, p, enroll_done, en) != 0) {
        free(en);
        jsonapi_reply_unavailable(req, "database");
    }
}

static void enroll_done(PGresult *res, void *arg)
{
    struct enroll *en = arg;
    struct http_req *req = en->req;
    const struct auth_user *me = auth_user(req);
    char self[512], uri[1024];

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    if (!pg_ok(res)) {
        log_error("accounts: enroll failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "enroll failed");
        goto out;
    }
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 409, "conflict", NULL,
                             "Two-factor authentication is already on; turn it off first.");
        goto out;
    }
    if (totp_uri(uri, sizeof uri, en->app->cfg->totp_issuer, me->email, en->secret) < 0)
        uri[0] = '\0';
    jsonapi_url(req, self, sizeof self, "accounts/totp/");
    json_t *attrs = json_pack("{s:s, s:s, s:b, s:b, s:s, s:i, s:i}", "secret", en->secret,
                              "otpauth_uri", uri, "enabled", 0, "pending", 1,
                              "algorithm", "SHA1", "digits", TOTP_DIGITS,
                              "period", TOTP_PERIOD_S);
    jsonapi_reply(req, 201, json_pack("{s:o}", "data",
                  jsonapi_resource("totp", me->uuid, attrs, NULL, self)));
out:
    OPENSSL_cleanse(en, sizeof *en);
    free(en);
}

/* confirm/, disable/ and recovery-codes/: a code in the body, then a flow.
 * Runs after the gate (ROUTE_USER), so an unauthenticated caller gets 401 whatever
 * its body. */
static void code_flow(struct http_req *req, struct app *app, enum acct_flow flow)
{
    const struct auth_user *me = auth_user(req);
    struct acct_op *op = NULL;
    json_t *fields, *body;
    const char *code;
    bool recovery = false;

    if (!require_session(req, me))
        return;
    if (!(body = auth_read_json(req, &fields)))
        return;
    /* Turning two-factor off takes a recovery code too (a lost phone). */
    if (flow == FLOW_TOTP_DISABLE && !json_object_get(fields, "code") &&
        json_object_get(fields, "recovery_code"))
        recovery = true;
    if (!(code = auth_field(req, fields, recovery ? "recovery_code" : "code", 64)))
        goto out;
    if (!(op = op_new(req, app, flow, ST_CHECK)))
        goto out;
    op->recovery = recovery;
    snprintf(op->code, sizeof op->code, "%s", code);
    snprintf(op->uid, sizeof op->uid, "%lld", (long long)me->id);
    op_step(op);
    op = NULL;
out:
    op_free(op);
    json_decref(body);
}

static void h_totp_confirm(struct http_req *req, struct app *app)
{
    code_flow(req, app, FLOW_TOTP_CONFIRM);
}

static void h_totp_disable(struct http_req *req, struct app *app)
{
    code_flow(req, app, FLOW_TOTP_DISABLE);
}

static void h_totp_codes(struct http_req *req, struct app *app)
{
    code_flow(req, app, FLOW_CODES);
}

/* ------------------------------------------------------------ API tokens */

/* One api-tokens resource from (uuid, name, created, last_used) at row. */
static json_t *token_resource(struct http_req *req, const PGresult *res, int row,
                              const char *key)
{
    char self[512];
    const char *uuid = PQgetvalue(res, row, 0);
    json_t *attrs = json_pack("{s:s, s:s, s:o, s:s, s:b}", "name", PQgetvalue(res, row, 1),
                              "created", PQgetvalue(res, row, 2), "last_used",
                              PQgetisnull(res, row, 3) ? json_null()
                                                       : json_string(PQgetvalue(res, row, 3)),
                              "expires", PQgetvalue(res, row, 4),
                              "two_factor_verified", PQgetvalue(res, row, 5)[0] == 't');
    if (key)
        json_object_set_new(attrs, "key", json_string(key));
    jsonapi_url(req, self, sizeof self, "accounts/tokens/%s/", uuid);
    return jsonapi_resource("api-tokens", uuid, attrs, NULL, self);
}

static void tokens_list_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
        return;
    }
    if (!pg_ok(res)) {
        log_error("accounts: token list failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "token list");
        return;
    }
    json_t *data = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(data, token_resource(req, res, i, NULL));
    jsonapi_reply(req, 200, json_pack("{s:o, s:{s:i}}", "data", data, "meta",
                                      "count", PQntuples(res)));
}

static void h_tokens_list(struct http_req *req, struct app *app)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%lld", (long long)auth_user(req)->id);
    const char *p[1] = { uid };
    if (pg_exec(app->pg, &acct_tokens_list_stmt, 1, p, tokens_list_done, req) != 0)
        jsonapi_reply_unavailable(req, "database");
}

/* One token creation between its INSERT and its reply. */
struct token_new {
    struct http_req *req;         /* borrowed until replied */
    char key[41];                 /* shown once, never stored */
};

static void token_create_done(PGresult *res, void *arg)
{
    struct token_new *tn = arg;
    struct http_req *req = tn->req;

    if (!res) {
        jsonapi_reply_unavailable(req, "database");
    } else if (!pg_ok(res) || PQntuples(res) != 1) {
        log_error("accounts: token create failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "token create");
    } else {
        jsonapi_reply(req, 201, json_pack("{s:o, s:{s:s}}", "data",
                      token_resource(req, res, 0, tn->key), "meta", "detail",
                      "Copy the key now: it is not shown again."));
    }
    OPENSSL_cleanse(tn, sizeof *tn);
    free(tn);
}

static void h_token_create(struct http_req *req, struct app *app)
{
    const struct auth_user *me = auth_user(req);
    json_t *fields = NULL, *body = NULL;
    struct token_new *tn = NULL;
    const char *name = "";
    char uid[24], hash[65], ttl[24];

    if (!require_session(req, me))
        return;
    /* A token is as verified as the session that makes it; researchers
     * and site admins only make verified ones (an unverified token could
     * do nothing they need it for). */
    if ((me->is_researcher || me->is_site_admin) && !auth_user_is_2fa_verified(me)) {
        jsonapi_reply_errorf(req, 403, "two_factor_required", NULL,
                             "Researchers need a two-factor verified session to create"
                             " API tokens.");
        return;
    }
    /* The body is optional: {} or {"name": ..}. */
    size_t len = 0;
    http_req_body(req, &len);
    if (len > 0) {
        if (!(body = auth_read_json(req, &fields)))
            return;
        json_t *v = json_object_get(fields, "name");
        if (v && !json_is_null(v) && !(name = auth_field(req, fields, "name",
                                                         ACCT_TOKEN_NAME_MAX)))
            goto out;
    }
    tn = calloc(1, sizeof *tn);
    if (!tn) {
        reply_internal(req, "out of memory");
        goto out;
    }
    tn->req = req;
    auth_token_generate(tn->key);
    auth_token_hash(tn->key, hash);
    snprintf(uid, sizeof uid, "%lld", (long long)me->id);
    snprintf(ttl, sizeof ttl, "%ld", app->cfg->token_ttl_days);
    const char *p[5] = { hash, uid, name, auth_user_is_2fa_verified(me) ? "t" : "f", ttl };
    if (pg_exec(app->pg, &acct_token_create_stmt, 5, p, token_create_done, tn) != 0) {
        jsonapi_reply_unavailable(req, "database");
        goto out;
    }
    tn = NULL;
out:
    free(tn);
    json_decref(body);
}

static void token_delete_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    if (!res) {
        jsonapi_reply_unavailable(req, "database");
    } else if (!pg_ok(res)) {
        log_error("accounts: token delete failed: %s", PQresultErrorMessage(res));
        reply_internal(req, "token delete");
    } else if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No API token matches the given query.");
    } else {
        auth_token_forget(PQgetvalue(res, 0, 0));
        http_reply(req, 204, NULL, NULL, 0);
    }
}

static void h_token_delete(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24];
    if (!id || !jsonapi_is_uuid(id)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No API token matches the given query.");
        return;
    }
    snprintf(uid, sizeof uid, "%lld", (long long)auth_user(req)->id);
    const char *p[2] = { id, uid };
    if (pg_exec(app->pg, &acct_token_delete_stmt, 2, p, token_delete_done, req) != 0)
        jsonapi_reply_unavailable(req, "database");
}

/* ------------------------------------------------------------ researcher gate */

/* GET accounts/researcher-access/: a ROUTE_RESEARCHER route that does
 * nothing, so it answers as every researcher endpoint's gate does, for
 * pages deciding what to show. */
static void h_researcher_access(struct http_req *req, struct app *app)
{
    jsonapi_reply(req, 200, json_pack("{s:{s:b}}", "meta", "researcher_access", 1));
}

/* ------------------------------------------------------------ cleanup job */

static const struct pg_stmt acct_cleanup_stmt = {
    "acct_cleanup",
    "WITH d AS (DELETE FROM account_tokens"
    "            WHERE expires_at < now() - interval '7 days'"
    "               OR used_at < now() - interval '7 days' RETURNING 1)"
    " SELECT count(*) FROM d",
};

static const struct sched_count acct_cleanup_count = {
    .stmt = &acct_cleanup_stmt, .noun = "emailed token",
};

const struct sched_job accounts_cleanup_job =
    SCHED_COUNT_JOB("cleanup_account_tokens", &acct_cleanup_count);

/* ------------------------------------------------------------ routes */

static const struct route accounts_route_table[] = {
    { HTTP_POST, "/api/v1/accounts/signup/", h_signup, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/accounts/verify/", h_verify, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/accounts/verify/resend/", h_resend, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/accounts/password-reset/", h_reset_request, ROUTE_PUBLIC },
    { HTTP_POST, "/api/v1/accounts/password-reset/confirm/", h_reset_confirm, ROUTE_PUBLIC },
    { HTTP_GET, "/api/v1/accounts/me/", h_me, ROUTE_USER },
    { HTTP_GET, "/api/v1/accounts/researcher-access/", h_researcher_access, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/accounts/totp/", h_me, ROUTE_USER },
    { HTTP_POST, "/api/v1/accounts/totp/", h_totp_enroll, ROUTE_USER },
    { HTTP_POST, "/api/v1/accounts/totp/confirm/", h_totp_confirm, ROUTE_USER },
    { HTTP_POST, "/api/v1/accounts/totp/disable/", h_totp_disable, ROUTE_USER },
    { HTTP_POST, "/api/v1/accounts/totp/recovery-codes/", h_totp_codes, ROUTE_USER },
    { HTTP_GET, "/api/v1/accounts/tokens/", h_tokens_list, ROUTE_USER },
    { HTTP_POST, "/api/v1/accounts/tokens/", h_token_create, ROUTE_USER },
    { HTTP_DELETE, "/api/v1/accounts/tokens/{id}/", h_token_delete, ROUTE_USER },
};

int accounts_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, accounts_route_table);
}
