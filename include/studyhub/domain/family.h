/* family: a family's own records besides its children (children.c):
 *   POST /api/v1/demographics/          a new demographics snapshot (201),
 *                                       linked to the one before (previous)
 *   GET  /api/v1/demographics/current/  the caller's newest, or data null
 *   PATCH /api/v1/users/{id}/           the caller's own names and email
 *                                       preferences (anyone else's: 404)
 * The history of snapshots is GET /api/v1/users/{id}/demographics/
 * (users.c), newest first. */
#ifndef STUDYHUB_DOMAIN_FAMILY_H
#define STUDYHUB_DOMAIN_FAMILY_H

struct router;

/* Adds the module's route table; 0, or -1 when the router refused one.
 * Must come before users_routes (see family.c). */
int family_routes(struct router *r);

#endif
