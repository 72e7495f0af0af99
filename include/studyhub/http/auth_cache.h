/* auth_cache: the gate's in-process caches of who a credential is: API
 * tokens' users by token hash, and session users by users.id.  Kept
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

/* The caches may be read and filled now: started, and notifications
 * flowing (those that arrived are applied first). */
bool auth_cache_usable(void);

/* A lookup that misses takes a ticket first and puts with it: a put whose
 * ticket an eviction outdated (the row may have changed meanwhile) is
 * dropped. */
uint64_t auth_cache_ticket_tokens(void);
uint64_t auth_cache_ticket_sessions(void);

/* NULL when not kept. */
const struct auth_token_entry *auth_cache_token(const char *token_hash);
const struct auth_session_entry *auth_cache_session(int64_t user_id);

void auth_cache_put_token(uint64_t ticket, const char *token_hash,
                          const struct auth_token_entry *e);
void auth_cache_put_session(uint64_t ticket, const struct auth_session_entry *e);

/* u's request wrote something, and its reply is out: what the gate knows
 * of u may have changed (two-factor, the epoch, its own flags), and a
 * site admin's write may have changed anyone's.  Evicts u, or every
 * session user for a site admin. */
void auth_cache_user_wrote(const struct auth_user *u);

/* The notification's handler (payload: a token hash, or "" for any
 * user's change); called by the pool, and by tests. */
void auth_cache_notified(const char *channel, const char *payload, void *arg);

#endif
