/* participate_runner: serving a study's built runner to a family (issue
 * 14, issue 19's shared runners).
 *   GET /studies/{id}/{child}/...         the built runner's index.html for
 *                                         every deep path (login, active
 *                                         study, the caller's own child):
 *                                         its latest deploy's shared runner;
 *                                         an external or jsPsych study goes
 *                                         to participate.h's steps
 *   GET /runners/{key}/{path}             a shared runner's files, for every
 *                                         study serving it (issue 19), cached
 *                                         a year (the key names the content)
 *   GET /studies/{id}/{path}              the files of a study built before
 *                                         shared runners (its own folder)
 *   GET /exp/studies/{id}/{child}/preview/... the preview build (researcher
 *                                         with the preview permission)
 * Runner content is served under PARTICIPATE_RUNNER_CSP (a sandbox: an
 * opaque origin, no cookies of the API's origin); the runner calls the API
 * with the key written into its index.html (Authorization: Runner KEY),
 * which auth.c accepts on the runner's API routes only.  With
 * RUNNER_BASE_URL the page hands the key to the runner's own host instead
 * (a one-time code in a redirect, turned there into cookies). */
#ifndef STUDYHUB_DOMAIN_PARTICIPATE_RUNNER_H
#define STUDYHUB_DOMAIN_PARTICIPATE_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

struct pg_pool;
struct router;

/* The CSP of served runner content: scripts run, in an opaque origin. */
#define PARTICIPATE_RUNNER_CSP                                               \
    "sandbox allow-scripts allow-forms allow-popups allow-modals "          \
    "allow-top-navigation-by-user-activation allow-top-navigation; "        \
    "frame-ancestors 'none'"

/* The CSP of the runner's page on its own host (RUNNER_BASE_URL): no
 * sandbox, since there the runner must read its cookies; the host holds
 * nothing of the site's. */
#define PARTICIPATE_RUNNER_HOST_CSP                                          \
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"

/* How long a hand-off code from the site to the runner's host lasts: one
 * redirect's worth. */
#define PARTICIPATE_HANDOFF_TTL_S 60

/* How long a runner key (and the participation it opens) lasts: upstream
 * sets a participant's session expiry to 4 days on this page. */
#define PARTICIPATE_KEY_TTL_S (4 * 24 * 3600)

/* Whether a build's file name carries a content fingerprint, as
 * ember-cli writes them ("vendor-<8..64 lower hex>.js"): such a file never
 * changes, so it is cached for a year. */
bool participate_runner_fingerprinted(const char *path);

/* A copy of html (len bytes) with the runner's settings as a meta tag
 * right after <head ...> (or at the start when there is none):
 *   <meta name="studyhub-runner" content="KEY STUDY CHILD PREVIEW">
 * key, study and child are hex/uuid text (never escaped).  NULL when out
 * of memory; *out_len is the new length.  Caller frees. */
char *participate_runner_inject(const char *html, size_t len, const char *key,
                                const char *study, const char *child, bool preview,
                                size_t *out_len);

/* The cache of where each study's runner files are (kept right by the
 * studies_changed notification); without it every asset asks PostgreSQL.
 * start: 0, or -1 (the cache stays off). */
int participate_runner_cache_start(struct pg_pool *pg);
void participate_runner_cache_stop(void);

/* Adds the route table (the runner's pages and files; added right after
 * participate_routes): 0, or -1 when the router refused one. */
int participate_runner_routes(struct router *r);

#endif
