/* useradmin: site admins manage accounts (issue 16, point 5), the things
 * that needed psql before:
 *
 *   GET   /api/v1/admin/users/?search=              accounts, oldest first; search
 *                                                   is a substring of the email or a name
 *   PATCH /api/v1/admin/users/{id}/                 is_active, is_researcher, is_site_admin
 *   POST  /api/v1/admin/users/{id}/reset-two-factor/  TOTP, recovery codes, tokens
 *                                                   and sessions go; the owner is emailed
 *
 * All site_admin policy (two-factor verified); sql/095_user_admin.sql
 * checks manage_users again, refuses an admin's removal of their own role
 * or account, and logs each change in user_admin_log. */
#ifndef STUDYHUB_DOMAIN_USERADMIN_H
#define STUDYHUB_DOMAIN_USERADMIN_H

#include <jansson.h>

struct jsonapi_error;
struct router;

/* The longest search string (bytes). */
#define USERADMIN_SEARCH_MAX 254

/* Checks a PATCH's attributes: only is_active, is_researcher and
 * is_site_admin, each a boolean, at least one.  0 with *clean a new
 * object of them (the caller owns it), or -1 with e set (400, pointer at
 * the attribute). */
int useradmin_attrs_check(const json_t *attrs, json_t **clean, struct jsonapi_error *e);

/* Adds the module's route table; 0, or -1 when the router refused one. */
int useradmin_routes(struct router *r);

#endif
