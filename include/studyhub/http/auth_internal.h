/* auth_internal: what the auth modules (auth, auth_login,
 * auth_second_factor) share and nobody else may use.  Definitions in
 * src/http/auth.c. */
#ifndef STUDYHUB_HTTP_AUTH_INTERNAL_H
#define STUDYHUB_HTTP_AUTH_INTERNAL_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct http_req;

/* Session, CSRF and challenge ids: 32 random bytes in hex. */
#define AUTH_SESSION_ID_LEN 64

/* Column order of the caller lookups (id, uuid, email, is_researcher,
 * is_site_admin, is_active, totp_on, then per statement). */
enum { UC_ID, UC_UUID, UC_EMAIL, UC_RESEARCHER, UC_SITE_ADMIN, UC_ACTIVE,
       UC_TOTP, UC_EXTRA };

#define TOTP_ON(u) \
    "EXISTS (SELECT 1 FROM user_totp tt WHERE tt.user_id = " u \
    " AND tt.confirmed_at IS NOT NULL)"

/* s is exactly want_len lower-case hex digits. */
bool auth_is_hex(const char *s, size_t want_len);

/* 500, logging what failed and PostgreSQL's message. */
void auth_reply_internal(struct http_req *req, const char *what,
                         const PGresult *res);

/* Callbacks of fire-and-forget writes: a failure is logged, with arg (a
 * constant string) naming the write. */
void auth_ignore_result(PGresult *res, void *arg);
void auth_ignore_reply(redisReply *reply, void *arg);

#endif
