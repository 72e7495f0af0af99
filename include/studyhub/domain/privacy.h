/* privacy: the family's rights over its own data (issue 15 point 5).
 *
 *   DELETE /api/v1/users/{id}/        erase the caller's whole account
 *                                     (200, the erasure report); anyone
 *                                     else's id is a 404
 *   GET    /api/v1/users/{id}/data/   everything the platform holds about
 *                                     the caller, as one JSON file,
 *                                     streamed; written to the access log
 *   (DELETE /api/v1/children/{id}/ erases one child: children.c.)
 *
 * What an erasure deletes and keeps is decided in one SQL function,
 * family_erase (sql/085_erasure.sql, and the README); the objects in
 * storage are deleted by the erase_storage task (tasks/erase_storage.h).
 * The family gets the report by email in the same statement. */
#ifndef STUDYHUB_DOMAIN_PRIVACY_H
#define STUDYHUB_DOMAIN_PRIVACY_H

struct router;

/* Sections per batch statement of the download. */
#define PRIVACY_BATCH 100

int privacy_routes(struct router *r);

#endif
