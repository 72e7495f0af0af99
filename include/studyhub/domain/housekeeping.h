/* housekeeping: a study team's care of its responses (issue 18 point 3).
 * Each route is one statement of sql/functions/analytics.sql.
 *
 *   DELETE /api/v1/researcher/studies/{id}/preview-responses/
 *       every preview response of the study, with its rulings, feedback
 *       and video rows, in one statement; the video objects and the
 *       study's cached zips are deleted by the erase_storage task, through
 *       an erasure of scope "preview" (the family erasure's own path).
 *       Needs delete_study__responses(is_preview=True); 200 with the
 *       report (responses_deleted, videos_deleted, erasure).
 *   GET /api/v1/researcher/studies/{id}/hash-check/
 *       the study's hashed child ids at its hash length: children with a
 *       response, distinct ids, children sharing an id, the expected
 *       number of collisions, the digits needed for a chance under 1%,
 *       and too_short (a collision, or fewer digits than needed).
 *       read_study__details.
 *   GET /api/v1/researcher/responses/{id}/json/   ?identifiable=true
 *       one response as a responses.json element, as a file download;
 *       a response the caller may not read is a 404; identifiable needs
 *       read_study__responses__identifiable.  Written to the access log
 *       (export, response-<uuid>[-identifiable].json).
 *
 * The data dictionaries beside each CSV are export.h's. */
#ifndef STUDYHUB_DOMAIN_HOUSEKEEPING_H
#define STUDYHUB_DOMAIN_HOUSEKEEPING_H

struct router;

/* Adds the module's routes; 0, or -1 when the router refused one. */
int housekeeping_routes(struct router *r);

#endif
