/* auth_cache: the gate's in-process caches of token and session users.
 * See include/studyhub/http/auth_cache.h. */
#include "config.h"

#include "studyhub/http/auth_cache.h"

#include <stdio.h>
#include <string.h>

#include "studyhub/core/cache.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"

/* Every runner PATCH carries a token or a runner key, and every page a
 * session: each saves the user's round trip. */
static struct cache *token_users;           /* owned; NULL when off */
static struct cache *session_users;         /* owned; NULL when off */
/* A page or API call in a browser would otherwise read its session from
 * Redis each time: the round trip was most of a runner page's cost. */
static struct cache *sids;                  /* owned; NULL when off */
static struct pg_pool *notify_pg;           /* borrowed */

#define USERS_MAX 65536
#define USERS_TTL_S 60
#define SIDS_MAX 65536
#define SIDS_TTL_S 60

void auth_cache_notified(const char *channel, const char *payload, void *arg)
{
    (void)channel;
    (void)arg;
    if (!token_users)
        return;
    if (payload && strcmp(payload, AUTH_CACHE_SESSIONS_ENDED) == 0) {
        cache_clear(sids);          /* a logout on another server */
    } else if (payload && *payload) {
        cache_del(token_users, payload);
    } else {
        cache_clear(token_users);   /* resync, or a user changed */
        cache_clear(session_users);
    }
}

int auth_cache_start(struct pg_pool *pg)
{
    token_users = cache_new(USERS_MAX, USERS_TTL_S);
    session_users = cache_new(USERS_MAX, USERS_TTL_S);
    sids = cache_new(SIDS_MAX, SIDS_TTL_S);
    if (!token_users || !session_users || !sids)
        goto fail;
    notify_pg = pg;
    if (pg_pool_listen(pg, "auth_changed", auth_cache_notified, NULL) < 0)
        goto fail;
    return 0;
fail:
    auth_cache_stop();
    return -1;
}

void auth_cache_stop(void)
{
    cache_free(token_users);
    cache_free(session_users);
    cache_free(sids);
    token_users = NULL;
    session_users = NULL;
    sids = NULL;
    notify_pg = NULL;
}

bool auth_cache_usable(void)
{
    if (!token_users || !pg_pool_listening(notify_pg))
        return false;
    pg_pool_poll_notifies(notify_pg);
    return true;
}

uint64_t auth_cache_ticket_tokens(void)
{
    return token_users ? cache_ticket(token_users) : 0;
}

uint64_t auth_cache_ticket_sessions(void)
{
    return session_users ? cache_ticket(session_users) : 0;
}

uint64_t auth_cache_ticket_sids(void)
{
    return sids ? cache_ticket(sids) : 0;
}

static void user_key(int64_t id, char key[UTIL_INT_DEC_LEN])
{
    util_int_dec(id, key);
}

const struct auth_token_entry *auth_cache_token(const char *token_hash)
{
    size_t len;
    const struct auth_token_entry *e;

    if (!token_users)
        return NULL;
    e = cache_get(token_users, token_hash, &len);
    return e && len == sizeof *e ? e : NULL;
}

const struct auth_session_entry *auth_cache_session(int64_t user_id)
{
    char key[24];
    size_t len;
    const struct auth_session_entry *e;

    if (!session_users)
        return NULL;
    user_key(user_id, key);
    e = cache_get(session_users, key, &len);
    return e && len == sizeof *e ? e : NULL;
}

const struct auth_sid_entry *auth_cache_sid(const char *sid, int64_t now)
{
    size_t len;
    const struct auth_sid_entry *e;

    if (!sids)
        return NULL;
    e = cache_get(sids, sid, &len);
    return e && len == sizeof *e && e->expires_at > now ? e : NULL;
}

void auth_cache_put_token(uint64_t ticket, const char *token_hash,
                          const struct auth_token_entry *e)
{
    if (token_users)
        cache_put(token_users, ticket, token_hash, e, sizeof *e);
}

void auth_cache_put_session(uint64_t ticket, const struct auth_session_entry *e)
{
    char key[24];

    if (!session_users)
        return;
    user_key(e->user.id, key);
    cache_put(session_users, ticket, key, e, sizeof *e);
}

void auth_cache_put_sid(uint64_t ticket, const char *sid, const struct auth_sid_entry *e)
{
    if (sids && e->expires_at > 0)
        cache_put(sids, ticket, sid, e, sizeof *e);
}

void auth_cache_sid_ended(const char *sid)
{
    if (sids)
        cache_del(sids, sid);
}

void auth_cache_user_wrote(const struct auth_user *u)
{
    char key[24];

    if (!session_users)
        return;
    if (u->is_site_admin) {     /* anyone's flags: tokens' users too */
        cache_clear(session_users);
        if (token_users)
            cache_clear(token_users);
        return;
    }
    user_key(u->id, key);
    cache_del(session_users, key);
}

void auth_token_forget(const char *token_hash)
{
    if (token_users)
        cache_del(token_users, token_hash);
}

void auth_users_changed(void)
{
    if (session_users)
        cache_clear(session_users);
    if (token_users)
        cache_clear(token_users);
}
