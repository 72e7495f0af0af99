/* health: GET /healthz, /readyz and /metrics. */
#ifndef STUDYHUB_HTTP_HEALTH_H
#define STUDYHUB_HTTP_HEALTH_H

struct router;

/* Handlers get the struct app as their arg. */
void health_routes(struct router *r);

#endif
