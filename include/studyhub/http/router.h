/* router: a table of (method, pattern, handler, policy).  A pattern is a
 * path whose segments are literal or {name}; a {name} matches one
 * non-empty segment.  Trailing slashes are significant, as in the upstream
 * API; a pattern ending in "/?" matches the path with or without its
 * trailing slash.
 *
 * Every route declares who may call it (enum route_policy), next to its
 * pattern, in its module's table.  The server's gate (auth_gate in
 * http/auth.c) enforces the policy before the handler runs, so a handler
 * never checks who is calling, only what the caller may do with the
 * resource (perms). */
#ifndef STUDYHUB_HTTP_ROUTER_H
#define STUDYHUB_HTTP_ROUTER_H

#include <stddef.h>

#include "studyhub/http/server.h"

struct app;

/* Who may call a route.  0 is no policy: router_add refuses it, and a
 * table entry written without one is a -Wmissing-field-initializers
 * error, so a route cannot be added without saying who may call it. */
enum route_policy {
    ROUTE_PUBLIC = 1,   /* anyone; the handler reads no credentials */
    ROUTE_SIGNED,       /* anyone; the handler checks an HMAC signature
                         * (Pipe webhook, upload Lambda, signed storage
                         * link) before it reads or changes anything */
    ROUTE_USER,         /* an authenticated caller: a session (CSRF token
                         * on unsafe methods) or an API token */
    ROUTE_FAMILY,       /* ROUTE_USER for the runner-facing routes that
                         * serve families and researchers alike: research
                         * rows only when auth_request_researcher_ok(req),
                         * else only the caller's own family */
    ROUTE_RESEARCHER,   /* ROUTE_USER, two-factor verified (a session that
                         * passed a code, or a token made by one) */
    ROUTE_SITE_ADMIN,   /* ROUTE_RESEARCHER and a site admin */
    ROUTE_OPERATOR,     /* a loopback peer that came through no proxy, or
                         * Authorization: Bearer METRICS_TOKEN */
    ROUTE_DEBUG,        /* only with DEBUG_ROUTES=1 (tests); else 404 */
};
#define ROUTE_POLICY_MAX ROUTE_DEBUG

/* A handler runs once its route's policy passed: for the authenticated
 * policies auth_user(req) is set.  Same type as auth_next_fn. */
typedef void (*route_handler_fn)(struct http_req *req, struct app *app);

struct route {
    enum http_method method;
    const char *pattern;        /* static string */
    route_handler_fn handler;
    enum route_policy policy;
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
/* Copies the route (the pattern stays borrowed); returns -1, after
 * logging why, on a bad pattern, a missing handler or policy, or a route
 * whose method and pattern are already in the table. */
int router_add(struct router *r, const struct route *route);
/* router_add for each of the n routes; -1 at the first refused one. */
int router_add_table(struct router *r, const struct route *table, size_t n);
#define ROUTER_ADD_TABLE(r, table) \
    router_add_table((r), (table), sizeof(table) / sizeof((table)[0]))
/* On ROUTER_METHOD_NOT_ALLOWED, allow (if given) receives e.g. "GET, PATCH". */
enum router_result router_match(const struct router *r, enum http_method method,
                                const char *path, struct router_match *out,
                                char *allow, size_t allowlen);

/* The table, in the order routes were added (admin `routes`, tests). */
size_t router_count(const struct router *r);
const struct route *router_get(const struct router *r, size_t i);
/* "public", "signed", "user", ...; "none" for anything else. */
const char *route_policy_name(enum route_policy p);
/* "GET", "POST", ... */
const char *router_method_name(enum http_method m);

#endif
