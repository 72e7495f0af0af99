/* health: GET /healthz, /readyz and /metrics. */
#ifndef STUDYHUB_HTTP_HEALTH_H
#define STUDYHUB_HTTP_HEALTH_H

struct router;

/* /healthz and /readyz (public), /metrics (operator) and the /debug/
 * routes (debug); 0, or -1 when the router refused one. */
int health_routes(struct router *r);
/* The start-up router: health_routes, and 503 "starting" for every other
 * path, until the migrations are done. */
int health_starting_routes(struct router *r);

#endif
