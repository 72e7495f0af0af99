/* participate: a family taking part in a study (issue 14).
 *   GET /api/v1/discover/                 active public studies with their
 *                                         age range (public: what anyone may
 *                                         see), ?age_days=N keeps those
 *                                         whose range holds a child of N days
 *   GET /api/v1/studies/{id}/eligibility/ the caller's children against an
 *                                         active study: eligible, and why not
 *   GET /api/v1/history/                  the family's past sessions with the
 *                                         researchers' feedback (newest first)
 * and the steps of taking part that need no built runner, which the
 * study's page (participate_runner.h) hands over to:
 *   an external study (study_type 2): redirect to the study's URL with
 *                                         child and response
 *   a jsPsych study (study_type 3): the platform's own page. */
#ifndef STUDYHUB_DOMAIN_PARTICIPATE_H
#define STUDYHUB_DOMAIN_PARTICIPATE_H

#include <stdbool.h>
#include <stddef.h>

struct app;
struct http_req;
struct router;

/* What a path under /studies/<study>/ asks for: rest is the part after
 * that prefix.  A first segment that is a uuid is a child (the page: its
 * index.html whatever follows); anything else is an asset at rest.
 * Returns true for a child and copies its uuid into child (37 bytes). */
bool participate_split(const char *rest, char child[37]);

/* The address an external study's participant is sent to: url (the
 * study's, http(s)://...) with its query kept and child=CHILD_HASH and
 * response=RESPONSE added, a fragment staying last, as the runner's
 * addSearchParams.  NULL when out of memory; caller frees. */
char *participate_external_location(const char *url, const char *child_hash,
                                    const char *response);

/* The pages a browser gets instead of the runner (never JSON): status with
 * a title and a sentence (no-store); 503 with Retry-After; and the one 404
 * for "no such study", "not active" and "not your child", so nobody learns
 * which it was. */
void participate_page_error(struct http_req *req, int status, const char *title,
                            const char *text);
void participate_unavailable_page(struct http_req *req);
void participate_no_study(struct http_req *req);

/* An external study (study_type 2) the page lookup found for a family's
 * child; the strings are borrowed for the call only. */
struct participate_external_study {
    const char *url;             /* the study's address ("" when none) */
    const char *study;           /* uuids */
    const char *child;
    const char *salt;            /* the child hash's secret */
    int hash_digits;
    const char *study_id;        /* the rows' ids, as text */
    const char *child_id;
    bool preview;
};

/* Takes part in an external study: records a response and answers with a
 * 302 to its address (participate_external_location); a 404 page when the
 * study has no http(s) address.  Answers req exactly once. */
void participate_external(struct http_req *req, struct app *app,
                          const struct participate_external_study *e);

/* Takes part in a jsPsych study (study_type 3): the platform's own page,
 * which runs the study's protocol as data.  Answers req exactly once. */
void participate_jspsych(struct http_req *req, struct app *app);

/* Adds the route table (the API's; the runner's pages are
 * participate_runner_routes's, added right after): 0, or -1 when the
 * router refused one. */
int participate_routes(struct router *r);

#endif
