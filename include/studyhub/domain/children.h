/* children: GET /api/v1/children/ and /api/v1/children/{id}/ (runner-api.md
 * R2, section 3).  A participant sees their own children (not deleted); a
 * researcher also sees the children of responses they may read (consented
 * non-preview responses of studies they hold read_study__responses on,
 * preview responses with read_study__responses(is_preview=True)).
 * ?ordering=birthday and ?ordering=-birthday are supported. */
#ifndef STUDYHUB_DOMAIN_CHILDREN_H
#define STUDYHUB_DOMAIN_CHILDREN_H

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int children_routes(struct router *r);

#endif
