/* auth_second_factor: the one check of a two-factor code, every endpoint
 * together (see http/auth.h's DECISIONS on the lockout), and the sealing
 * of secrets older versions stored as plaintext. */
#ifndef STUDYHUB_HTTP_AUTH_SECOND_FACTOR_H
#define STUDYHUB_HTTP_AUTH_SECOND_FACTOR_H

#include <stdbool.h>
#include <stdint.h>

struct app;

/* The one check of a two-factor code (see http/auth.h's DECISIONS): the user's lockout
 * first, then the code.  AUTH_SF_TOTP: a code of the confirmed secret
 * (accepted once: its time step is recorded and no code of that or an
 * earlier step works again).  AUTH_SF_RECOVERY: a recovery code (single
 * use).  AUTH_SF_ENROL: a code of the pending, unconfirmed secret; the
 * step is NOT claimed: the caller's confirming write does that, guarded
 * by the step and stored_secret of the outcome. */
enum auth_sf_kind { AUTH_SF_TOTP, AUTH_SF_RECOVERY, AUTH_SF_ENROL };
enum auth_sf_result {
    AUTH_SF_OK,            /* accepted (and, but for ENROL, used up) */
    AUTH_SF_BAD,           /* wrong, reused or malformed */
    AUTH_SF_LOCKED,        /* too many wrong codes: 429, retry_after_s */
    AUTH_SF_NOT_ENABLED,   /* no confirmed TOTP (ENROL: nothing pending) */
    AUTH_SF_ALREADY_ON,    /* ENROL: TOTP is already confirmed */
    AUTH_SF_UNAVAILABLE,   /* PostgreSQL down: answer 503 */
    AUTH_SF_REDIS_UNAVAILABLE, /* Redis down: answer 503 */
    AUTH_SF_ERROR,         /* a query failed, or the secret does not open: 500 */
};
struct auth_sf_request {
    int64_t user_id;
    enum auth_sf_kind kind;
    const char *code;      /* as given (copied) */
    bool quiet_lock;       /* report a lockout as AUTH_SF_BAD */
};
struct auth_sf_outcome {
    enum auth_sf_result result;
    long retry_after_s;    /* AUTH_SF_LOCKED */
    int64_t step;          /* ENROL and OK: the matched time step */
    const char *stored_secret; /* ENROL and OK: the secret column as read
                                  (valid during the callback) */
};
typedef void (*auth_sf_fn)(const struct auth_sf_outcome *o, void *arg);
/* Returns 0, or -1 when nothing could be started (fn is not called). */
int auth_second_factor_check(struct app *app, const struct auth_sf_request *rq,
                             auth_sf_fn fn, void *arg);

/* Seals, from the loop, the two-factor secrets still stored as plaintext
 * (written before TOTP_SECRET_KEY existed).  Call once at start. */
void auth_seal_plain_secrets(struct app *app);

#endif
