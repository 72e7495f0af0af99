/* feedback: researchers' comments on responses (runner-api.md section 3).
 * GET/POST /api/v1/feedback/, GET/PATCH/PUT /api/v1/feedback/{id}/.
 * Visible: feedback on responses the requester may read, or on their own
 * children's responses.  Creating or changing one needs
 * edit_study__feedback on the response's study (403 when the requester can
 * see the response but not edit its feedback, 404 when they cannot see it);
 * the researcher is the requester who created it. */
#ifndef STUDYHUB_DOMAIN_FEEDBACK_H
#define STUDYHUB_DOMAIN_FEEDBACK_H

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int feedback_routes(struct router *r);

#endif
