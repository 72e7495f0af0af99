/* messages: researchers write to the families of a study's participants
 * (issue 15 point 4); the family reads them on its account.
 *
 *   POST /api/v1/researcher/studies/{id}/messages/   edit_study__message_set
 *        {"data":{"type":"messages","attributes":{"subject","body",
 *         "kind" (next_session|new_studies|study_updates|response_questions,
 *         default study_updates), "responses":[uuid...] | "all":true}}}
 *        -> 201 {recipients, emailed}
 *   GET  /api/v1/researcher/studies/{id}/messages/   what was sent (counts)
 *   GET  /api/v1/messages/                           the caller's messages
 *
 * Recipients are the families of responses the sender may read (accepted
 * consent, or preview with its permission); every message is kept for
 * the family's account, and emailed through the outbox only when the
 * family's preference for its kind is on (sql/086_messages.sql). */
#ifndef STUDYHUB_DOMAIN_MESSAGES_H
#define STUDYHUB_DOMAIN_MESSAGES_H

struct router;

int messages_routes(struct router *r);

#endif
