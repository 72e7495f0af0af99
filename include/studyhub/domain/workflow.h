/* workflow: the study workflow of reference section 2, kept as data
 * (sql/030_workflow.sql: workflow_states, workflow_transitions,
 * workflow_guards), and its two routes:
 *
 *   POST /api/v1/studies/{id}/transitions/  {"trigger": "...", "comments": "..."}
 *     Fires a trigger.  404 when the caller cannot read the study, 400 for
 *     an unknown trigger, 403 without the transition's permission
 *     (edit_study__status; approve and reject: edit_study__approval), 409
 *     when the study's state does not allow it, when a guard refuses
 *     (activate needs a built runner) or when another transition changed
 *     the state first.  On success, in one statement: the state (a
 *     conditional UPDATE ... WHERE state = <expected>, so of two racing
 *     transitions exactly one wins), status_change_date, a study log
 *     (action = new state; extra {comments, from, trigger}) and the
 *     notification emails queued in mail_outbox.
 *
 *   GET /api/v1/workflow[/]  ?format=json (default) | dot | svg
 *                            &study=<uuid> [&roi=1]
 *     The table as a JSON:API document, as Graphviz dot, or as SVG drawn
 *     by Graphviz's dot program (GRAPHVIZ_DOT; 501 when it is not
 *     installed), run as a supervised child off the loop.  With study, the
 *     study's current state, its previous state and the states reachable
 *     from it are highlighted (the region of interest of the seeds'
 *     diagrams); roi=1 draws only that region. */
#ifndef STUDYHUB_DOMAIN_WORKFLOW_H
#define STUDYHUB_DOMAIN_WORKFLOW_H

#include <jansson.h>

struct evbuffer;
struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int workflow_routes(struct router *r);

/* Writes the dot source of a workflow document's attributes (the
 * "attributes" object GET /api/v1/workflow renders) into out; roi_only
 * draws only the study's region of interest.  Returns 0, or -1 when the
 * document is malformed or memory ran out.  Exposed for tests. */
int workflow_dot(const json_t *attrs, int roi_only, struct evbuffer *out);

#endif
