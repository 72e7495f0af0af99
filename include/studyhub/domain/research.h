/* research: the researcher's way to a study's data (issue 15): the
 * consent manager, response management and the access log.  Exports are
 * export.h.
 *
 *   GET   /api/v1/researcher/studies/{id}/consent/      ?state=pending|accepted|rejected
 *         responses by consent state, each with its consent videos
 *         (presigned links), the child's hashed id and age in days, the
 *         session date and every ruling, newest first.  Non-preview
 *         responses need edit_study__responses__consent_rulings, preview
 *         ones edit_study__responses(is_preview=True)__consent_rulings.
 *   POST  /api/v1/researcher/responses/{id}/consent/
 *         {"data":{"type":"consent-rulings","attributes":{"action":..,"comments":..}}}
 *         a new ruling (201); the history is kept.
 *   GET   /api/v1/researcher/studies/{id}/responses/    ?starred=true|false
 *         the readable responses (consent accepted, or preview with its
 *         read permission), de-identified, with the management columns.
 *   PATCH /api/v1/researcher/responses/{id}/
 *         researcher_payment_status, researcher_session_status (text, at
 *         most RESEARCH_STATUS_MAX bytes), researcher_star (boolean);
 *         edit_study__responses; an unreadable response is a 404.
 *   GET   /api/v1/researcher/studies/{id}/access-log/   (read_study__details)
 *   GET   /api/v1/researcher/access-log/  ?study=       (site admins)
 *
 * Every route is one statement (sql/084_research_data.sql): the
 * permission checks, the change and its access-log entry commit together. */
#ifndef STUDYHUB_DOMAIN_RESEARCH_H
#define STUDYHUB_DOMAIN_RESEARCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "studyhub/http/jsonapi.h"

struct router;

/* Longest payment or session status (upstream: CharField(max_length=..)). */
#define RESEARCH_STATUS_MAX 128
/* Longest ruling comment. */
#define RESEARCH_COMMENT_MAX 10000

/* Checks the attributes of a PATCH of a response: only the three
 * management fields, with their types and lengths.  Returns 0 with *clean
 * a new object of the accepted values, or -1 with e (400, pointer to the
 * attribute).  Pure: unit-tested. */
int research_edit_attrs(json_t *attributes, json_t **clean, struct jsonapi_error *e);

/* Checks a ruling's attributes: action one of accepted, rejected, pending;
 * comments a string of at most RESEARCH_COMMENT_MAX bytes (may be absent).
 * Returns 0 with *action and *comments borrowed from attributes, or -1
 * with e.  Pure: unit-tested. */
int research_ruling_attrs(json_t *attributes, const char **action, const char **comments,
                          struct jsonapi_error *e);

/* Adds the module's routes; 0, or -1 when the router refused one. */
int research_routes(struct router *r);

#endif
