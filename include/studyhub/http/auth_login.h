/* auth_login: the login in one or two steps, with its slow-down, and the
 * logout (see http/auth.h's DECISIONS). */
#ifndef STUDYHUB_HTTP_AUTH_LOGIN_H
#define STUDYHUB_HTTP_AUTH_LOGIN_H

struct router;

/* POST /api/v1/auth/login/, login/2fa/ and logout/: 0, or -1 when the
 * router refused one. */
int auth_routes(struct router *r);

#endif
