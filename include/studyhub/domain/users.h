/* users: the read-only JSON:API resources about people and labs: users,
 * their children and demographics, and approved labs (runner-api.md
 * section 3).  Participants see only their own records; site-wide reads
 * come from the can_read_all_user_data permission, never a role check. */
#ifndef STUDYHUB_DOMAIN_USERS_H
#define STUDYHUB_DOMAIN_USERS_H

struct router;

/* GET /api/v1/users/, users/{id}/, users/{id}/demographics/,
 * users/{id}/children/, demographics/, demographics/{id}/, labs/,
 * labs/{id}/.  0, or -1 when the router refused one. */
int users_routes(struct router *r);

#endif
