/* auth_cache: the gate's in-process caches of who a credential is: API
 * tokens' users by token hash, session users by users.id, and sessions
 * (what a sessionid cookie stands for) by session id.  Kept
 * right by the auth_changed notification (sql/004, sql/060, sql/109) on
 * every server, and on this one at once by the writes that change them
 * (auth_cache_user_wrote, auth_users_changed in auth.h).  While
 * notifications are not flowing both are bypassed.
 *
 * Only the auth modules use this; start and stop are in auth.h. */
#ifndef STUDYHUB_HTTP_AUTH_CACHE_H
#define STUDYHUB_HTTP_AUTH_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "studyhub/http/auth.h"

/* What is kept per token: its user and when it stops working (so a
 * cached token still expires to the second). */
struct auth_token_entry {
    struct auth_user user;        /* mfa_verified is the token's flag */
    int64_t expires_at;           /* epoch seconds */
};

/* What is kept per session user: flags, and the epoch that ends older
 * sessions.  Only active users are kept. */
struct auth_session_entry {
    struct auth_user user;        /* mfa_verified and via_session unset */
    int epoch;                    /* users.session_epoch */
};

/* What is kept per session id: its Redis value, parsed.  Only sessions
 * whose value says when they end (login writes it) are kept, and never
 * past that second. */
struct auth_sid_entry {
    int64_t uid;
    int epoch;                    /* the session's; checked against the user's */
    bool mfa;                     /* made by a two-factor verified login */
    int64_t expires_at;           /* epoch seconds: the Redis key's end */
};

/* The payload of auth_changed that ends cached sessions on every server
 * (a logout elsewhere). */
#define AUTH_CACHE_SESSIONS_ENDED "sessions"

/* The caches may be read and filled now: started, and notifications
 * flowing (those that arrived are applied first). */
bool auth_cache_usable(void);

/* A lookup that misses takes a ticket first and puts with it: a put whose
 * ticket an eviction outdated (the row may have changed meanwhile) is
 * dropped. */
uint64_t auth_cache_ticket_tokens(void);
uint64_t auth_cache_ticket_sessions(void);
uint64_t auth_cache_ticket_sids(void);

/* NULL when not kept. */
const struct auth_token_entry *auth_cache_token(const char *token_hash);
const struct auth_session_entry *auth_cache_session(int64_t user_id);
/* NULL when not kept or past its expires_at (now: epoch seconds). */
const struct auth_sid_entry *auth_cache_sid(const char *sid, int64_t now);

void auth_cache_put_token(uint64_t ticket, const char *token_hash,
                          const struct auth_token_entry *e);
void auth_cache_put_session(uint64_t ticket, const struct auth_session_entry *e);
void auth_cache_put_sid(uint64_t ticket, const char *sid, const struct auth_sid_entry *e);

/* The session sid ended or changed on this server (a logout, a second
 * factor given): forgets it here at once.  Other servers hear of a
 * logout by AUTH_CACHE_SESSIONS_ENDED. */
void auth_cache_sid_ended(const char *sid);

/* u's request wrote something, and its reply is out: what the gate knows
 * of u may have changed (two-factor, the epoch, its own flags), and a
 * site admin's write may have changed anyone's.  Evicts u, or every
 * session user for a site admin. */
void auth_cache_user_wrote(const struct auth_user *u);

/* The notification's handler (payload: a token hash, "" for any user's
 * change, or AUTH_CACHE_SESSIONS_ENDED); called by the pool, and by
 * tests. */
void auth_cache_notified(const char *channel, const char *payload, void *arg);

#endif
