/* builds: the routes of builds and previews and their live event stream
 * (the ROUTES of tasks/build.h); the build itself is tasks/build's kind. */
#ifndef STUDYHUB_DOMAIN_BUILDS_H
#define STUDYHUB_DOMAIN_BUILDS_H

#include <jansson.h>
#include <stdbool.h>

struct app;
struct config;
struct router;

/* Redis pub/sub channel of build events: every server's streams hear
 * every server's builds. */
#define BUILD_EVENTS_CHANNEL "studyhub:build-events"

int builds_routes(struct router *r);
/* The subscriber of BUILD_EVENTS_CHANNEL and the streams' tick.  0 or -1. */
int builds_events_start(struct app *app);
/* Ends what is left of the streams and frees the subscriber. */
void builds_events_stop(void);
/* Publishes ev (a JSON object with "type" and "study"; stolen) to every
 * server's streams, stamped with "at".  Fire and forget: a lost event is
 * seen in the next snapshot. */
void builds_publish(struct app *app, json_t *ev);
/* Whether url is RUNNER_REPO_URL or starts with a RUNNER_REPO_ALLOW
 * prefix (comma-separated, blanks around entries ignored). */
bool builds_repo_allowed(const struct config *c, const char *url);

#endif
