/* labs: creating and running labs (reference sections 1, 3, 7).  The
 * upstream-compatible GET /api/v1/labs/ and /api/v1/labs/{id}/ (approved
 * labs, users.c) stay as they are; the researcher's views of labs, which
 * also show unapproved labs to those who may see them, are under
 * /api/v1/researcher/labs/:
 *
 *   GET    /api/v1/researcher/labs/                    approved labs and the caller's own
 *   GET    /api/v1/researcher/labs/{id}/
 *   POST   /api/v1/labs/                               create (create_lab); the creator
 *                                                      is its admin; approved_to_test false
 *   PATCH  /api/v1/labs/{id}/                          details (edit_lab__details);
 *                                                      approved_to_test (edit_lab__approved_to_test)
 *   POST   /api/v1/labs/{id}/join-requests/            ask to join (join_lab)
 *   GET    /api/v1/labs/{id}/join-requests/            (read_lab__groups)
 *   DELETE /api/v1/labs/{id}/join-requests/{user}/     decline (edit_lab__groups) or withdraw
 *   GET    /api/v1/labs/{id}/members/                  (read_lab__groups)
 *   POST   /api/v1/labs/{id}/members/                  approve a request into a group
 *                                                      (edit_lab__groups)
 *   PATCH  /api/v1/labs/{id}/members/{user}/           change the group (edit_lab__groups)
 *   DELETE /api/v1/labs/{id}/members/{user}/           remove (edit_lab__groups) or leave
 *
 * A lab always keeps at least one admin. */
#ifndef STUDYHUB_DOMAIN_LABS_H
#define STUDYHUB_DOMAIN_LABS_H

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int labs_routes(struct router *r);

#endif
