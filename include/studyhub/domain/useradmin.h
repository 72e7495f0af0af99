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
 * (and 100) checks manage_users again, refuses an admin's removal of their
 * own role or account, and logs each change in user_admin_log.
 *
 * `studyhubctl user ...` (admin/user_commands.c) runs the same actions
 * through the same *_exec functions below, as the operator. */
#ifndef STUDYHUB_DOMAIN_USERADMIN_H
#define STUDYHUB_DOMAIN_USERADMIN_H

#include <jansson.h>

#include "studyhub/io/pg.h"

struct jsonapi_error;
struct router;

/* The longest search string (bytes). */
#define USERADMIN_SEARCH_MAX 254

/* Checks a PATCH's attributes: only is_active, is_researcher and
 * is_site_admin, each a boolean, at least one.  0 with *clean a new
 * object of them (the caller owns it), or -1 with e set (400, pointer at
 * the attribute). */
int useradmin_attrs_check(const json_t *attrs, json_t **clean, struct jsonapi_error *e);

/* The account actions, for the routes and the admin socket alike.  The
 * actor is admin (a user id as text: must hold manage_users) with oper
 * NULL, or oper (the operator's name at the admin socket, logged as
 * "operator: NAME") with admin NULL.  user is a uuid or an email; base
 * the site's URL for links.  cb gets perms.h's layouts: list rows
 * (count, item, verdict, detail, pointer), else one row (verdict, detail,
 * pointer, doc).  search may be NULL; attrs is useradmin_attrs_check's
 * clean object as JSON text.  0, or -1 when the statement was not sent
 * (cb then never runs). */
int useradmin_list_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *search,
                        const char *limit, const char *offset, const char *base, pg_cb cb,
                        void *arg);
int useradmin_change_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *user,
                          const char *attrs, const char *base, pg_cb cb, void *arg);
int useradmin_reset_exec(struct pg_pool *pg, const char *admin, const char *oper, const char *user,
                         const char *base, pg_cb cb, void *arg);

/* Adds the module's route table; 0, or -1 when the router refused one. */
int useradmin_routes(struct router *r);

#endif
