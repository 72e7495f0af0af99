/* auth_limit: the client's address (behind TRUSTED_PROXIES) and the
 * fixed-window Redis counters in front of the requests that send account
 * emails.  (Logins use the slow-down of http/auth.h's DECISIONS, in
 * auth_login.) */
#ifndef STUDYHUB_HTTP_AUTH_LIMIT_H
#define STUDYHUB_HTTP_AUTH_LIMIT_H

#include <stddef.h>

struct http_req;
struct app;

/* The client's address (see http/auth.h's DECISIONS) as text into out
 * (INET6_ADDRSTRLEN + 1 is enough). */
void auth_client_addr(const struct http_req *req, const struct app *app,
                      char *out, size_t outlen);
/* The same from its parts: the TCP peer and the X-Forwarded-For header
 * (NULL: none). */
struct config;
void auth_client_addr_of(const struct config *cfg, const char *peer,
                         const char *xff, char *out, size_t outlen);

/* Fixed-window counters of requests that send account emails (sign-up,
 * verification resend, password reset): each key is INCRed (and given
 * LOGIN_RATE_WINDOW_S on its first hit); fn gets the verdict: LIMITED when
 * any counter passed its max, with the seconds until that window ends.
 * (Logins use the slow-down of http/auth.h's DECISIONS instead.) */
enum auth_rate_verdict { AUTH_RATE_OK, AUTH_RATE_LIMITED, AUTH_RATE_UNAVAILABLE };
typedef void (*auth_rate_fn)(enum auth_rate_verdict v, long retry_after_s,
                             void *arg);
struct auth_rate_key {
    char key[320];         /* "rl:<scope>:acct:<email>" or ":addr:<ip>" */
    long max;
};
/* Fills keys[0] (the account, lower-cased email) and keys[1] (the client
 * address) for scope ("signup", "mail"), with the MAIL_RATE_*_MAX limits. */
/* prefix followed by the email in ASCII lower case (as the lower(email)
 * the lookups use), truncated to fit out; the account key of the rate
 * limits and the login slow-down. */
void auth_account_key(char *out, size_t outlen, const char *prefix, const char *email);

void auth_rate_keys(struct auth_rate_key keys[2], struct http_req *req,
                    const struct app *app, const char *scope,
                    const char *email);
/* Returns 0, or -1 when the command cannot be queued (fn is not called). */
int auth_rate_hit(struct app *app, const struct auth_rate_key *keys,
                  int nkeys, auth_rate_fn fn, void *arg);
/* 429 "too_many_attempts" with Retry-After. */
void auth_reply_rate_limited(struct http_req *req, long retry_after_s);

#endif
