/* responses: the experiment runner's session data (runner-api.md R3-R6 and
 * section 3).  GET/POST /api/v1/responses/, GET/PUT/PATCH
 * /api/v1/responses/{id}/, the nested GET /api/v1/studies/{id}/responses/
 * (the runner's past sessions, carrying hash_child_id) and GET
 * /api/v1/past-sessions/{response_id}/.
 *
 * Who sees what: the parent sees their children's responses; a researcher
 * sees consented non-preview responses of studies they hold
 * read_study__responses on, and preview responses of studies they hold
 * read_study__responses(is_preview=True) on.  Only the parent writes.
 * Every write is validated completely first and then is one SQL statement,
 * so a 2xx means the row is in PostgreSQL and a 4xx means nothing changed;
 * concurrent PATCHes of one response are single UPDATEs: all succeed, the
 * last one wins. */
#ifndef STUDYHUB_DOMAIN_RESPONSES_H
#define STUDYHUB_DOMAIN_RESPONSES_H

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int responses_routes(struct router *r);

#endif
