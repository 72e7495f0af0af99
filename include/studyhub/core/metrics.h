/* metrics: request counters and a latency histogram, rendered in the
 * Prometheus text format by GET /metrics. */
#ifndef STUDYHUB_CORE_METRICS_H
#define STUDYHUB_CORE_METRICS_H

#include <stddef.h>

struct evbuffer;
struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* route is the router pattern (a static string), or "unmatched".  It is
 * cached by address: never pass a buffer that is reused for other text. */
void metrics_observe_request(struct metrics *m, const char *route, int status,
                             double seconds);

/* Appends the counters and histogram; callers add their gauges. */
void metrics_render(const struct metrics *m, struct evbuffer *out);

#endif
