/* router: a table of (method, pattern, handler).  A pattern is a path whose
 * segments are literal or {name}; a {name} matches one non-empty segment.
 * Trailing slashes are significant, as in the upstream API; a pattern
 * ending in "/?" matches the path with or without its trailing slash. */
#ifndef STUDYHUB_HTTP_ROUTER_H
#define STUDYHUB_HTTP_ROUTER_H

#include "studyhub/http/server.h"

struct route {
    enum http_method method;
    const char *pattern;      /* static string */
    http_handler_fn handler;
};

struct router;

struct router_match {
    const struct route *route;             /* borrowed from the table */
    int nparams;
    const char *param[HTTP_MAX_PARAMS];    /* point into params_buf */
    char params_buf[512];
};

enum router_result { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

struct router *router_new(void);
void router_free(struct router *r);
/* Copies the route; returns -1 on a bad pattern. */
int router_add(struct router *r, enum http_method method, const char *pattern,
               http_handler_fn handler);
/* On ROUTER_METHOD_NOT_ALLOWED, allow (if given) receives e.g. "GET, PATCH". */
enum router_result router_match(const struct router *r, enum http_method method,
                                const char *path, struct router_match *out,
                                char *allow, size_t allowlen);

#endif
