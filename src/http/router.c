/* router: match a method and a decoded path against a table of patterns.
 * Patterns are split into segments once, at router_add; a match walks the
 * path once per candidate route; a route whose first literal segment is
 * not the path's is passed over by one compare.  The table is a few
 * hundred routes, so a linear scan of them costs less than a syscall.  The router only
 * keeps each route's policy; the server's gate enforces it. */
#include "studyhub/http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/log.h"

#define ROUTER_MAX_SEGMENTS 12

enum seg_kind { SEG_LITERAL, SEG_PARAM, SEG_REST };

struct segment {
    enum seg_kind kind;
    const char *text;   /* literal text; points into the pattern (static) */
    size_t len;
};

struct compiled_route {
    struct route route;
    int nsegs;
    bool trailing_slash;    /* the pattern ends in '/' */
    bool optional_slash;    /* ... or in "/?": with or without it */
    struct segment segs[ROUTER_MAX_SEGMENTS];
};

struct router {
    struct compiled_route *routes;  /* owned array */
    size_t n, cap;
};

struct router *router_new(void)
{
    return calloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r);
}

static const char *const method_names[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"
};

static const char *const policy_names[] = {
    [ROUTE_PUBLIC] = "public",
    [ROUTE_SIGNED] = "signed",
    [ROUTE_USER] = "user",
    [ROUTE_FAMILY] = "family",
    [ROUTE_RESEARCHER] = "researcher",
    [ROUTE_SITE_ADMIN] = "site_admin",
    [ROUTE_OPERATOR] = "operator",
    [ROUTE_DEBUG] = "debug",
};

const char *route_policy_name(enum route_policy p)
{
    if ((int)p < ROUTE_PUBLIC || p > ROUTE_POLICY_MAX)
        return "none";
    return policy_names[p];
}

const char *router_method_name(enum http_method m)
{
    if ((int)m < 0 || m > HTTP_OTHER)
        return "OTHER";
    return method_names[m];
}

/* Splits route->pattern into cr; false on a malformed pattern. */
static bool compile(const struct route *route, struct compiled_route *cr)
{
    const char *p = route->pattern;
    int nparams = 0;

    memset(cr, 0, sizeof *cr);
    cr->route = *route;
    if (*p != '/')
        return false;
    while (*p == '/' && p[1] != '\0' && strcmp(p, "/?") != 0) {
        const char *start = p + 1;
        size_t len = strcspn(start, "/");
        if (cr->nsegs == ROUTER_MAX_SEGMENTS || len == 0)
            return false;
        struct segment *s = &cr->segs[cr->nsegs++];
        if (len == 1 && *start == '*') {
            if (start[1] != '\0')
                return false;   /* the rest-wildcard must come last */
            s->kind = SEG_REST;
        } else if (*start == '{' && start[len - 1] == '}') {
            if (++nparams > HTTP_MAX_PARAMS)
                return false;
            s->kind = SEG_PARAM;
        } else {
            s->kind = SEG_LITERAL;
        }
        s->text = start;
        s->len = len;
        p = start + len;
    }
    cr->optional_slash = (strcmp(p, "/?") == 0);
    cr->trailing_slash = (*p == '/' && !cr->optional_slash);
    return true;
}

int router_add(struct router *r, const struct route *route)
{
    struct compiled_route cr;
    const char *pattern = route->pattern ? route->pattern : "(null)";

    /* A route nobody said who may call is a bug of the table it came
     * from: refused here, the server does not start. */
    if ((int)route->policy < ROUTE_PUBLIC || route->policy > ROUTE_POLICY_MAX) {
        log_error("router: %s %s has no access policy", router_method_name(route->method),
                  pattern);
        return -1;
    }
    if (!route->handler || !route->pattern || !compile(route, &cr)) {
        log_error("router: %s %s: bad pattern or no handler",
                  router_method_name(route->method), pattern);
        return -1;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->routes[i].route.method == route->method &&
            strcmp(r->routes[i].route.pattern, route->pattern) == 0) {
            log_error("router: %s %s is declared twice", router_method_name(route->method),
                      pattern);
            return -1;
        }
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        struct compiled_route *nr = realloc(r->routes, cap * sizeof *nr);
        if (!nr)
            return -1;
        r->routes = nr;
        r->cap = cap;
    }
    r->routes[r->n++] = cr;
    return 0;
}

/* Does path match cr?  Fills params (copied into out->params_buf). */
static bool match_one(const struct compiled_route *cr, const char *path,
                      struct router_match *out)
{
    const char *p = path;
    size_t used = 0;

    out->nparams = 0;
    for (int i = 0; i < cr->nsegs; i++) {
        const struct segment *s = &cr->segs[i];
        if (*p != '/')
            return false;
        p++;
        if (s->kind == SEG_REST)
            return *p != '\0';
        size_t len = strcspn(p, "/");
        if (len == 0)
            return false;
        if (s->kind == SEG_LITERAL) {
            if (len != s->len || memcmp(p, s->text, len) != 0)
                return false;
        } else {
            if (used + len + 1 > sizeof out->params_buf)
                return false;   /* no id is this long */
            memcpy(out->params_buf + used, p, len);
            out->params_buf[used + len] = '\0';
            out->param[out->nparams++] = out->params_buf + used;
            used += len + 1;
        }
        p += len;
    }
    if (cr->optional_slash && p[0] == '/')
        p++;
    else if (cr->trailing_slash)
        return p[0] == '/' && p[1] == '\0';
    return *p == '\0';
}

enum router_result router_match(const struct router *r, enum http_method method,
                                const char *path, struct router_match *out,
                                char *allow, size_t allowlen)
{
    bool path_matched = false;
    size_t allow_used = 0;

    /* The path's first segment, measured once: most routes start with a
     * literal ("api", "studies", "exp") that settles them by a compare. */
    const char *first = path[0] == '/' ? path + 1 : path;
    size_t first_len = strcspn(first, "/");

    if (allow && allowlen)
        allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const struct compiled_route *cr = &r->routes[i];
        const struct segment *s0 = &cr->segs[0];
        struct router_match m;
        if (cr->nsegs > 0 && s0->kind == SEG_LITERAL &&
            (s0->len != first_len || memcmp(s0->text, first, first_len) != 0))
            continue;
        if (!match_one(cr, path, &m))
            continue;
        /* HEAD is served by the GET handler (evhttp drops the body). */
        if (cr->route.method == method ||
            (method == HTTP_HEAD && cr->route.method == HTTP_GET)) {
            *out = m;
            /* Re-point params into the caller's copy of the buffer. */
            for (int k = 0; k < m.nparams; k++)
                out->param[k] = out->params_buf + (m.param[k] - m.params_buf);
            out->route = &cr->route;
            return ROUTER_FOUND;
        }
        path_matched = true;
        if (allow && allowlen) {
            const char *name = method_names[cr->route.method];
            int n = snprintf(allow + allow_used, allowlen - allow_used, "%s%s",
                             allow_used ? ", " : "", name);
            if (n > 0 && (size_t)n < allowlen - allow_used)
                allow_used += (size_t)n;
        }
    }
    return path_matched ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

int router_add_table(struct router *r, const struct route *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (router_add(r, &table[i]) < 0)
            return -1;
    }
    return 0;
}

size_t router_count(const struct router *r)
{
    return r->n;
}

const struct route *router_get(const struct router *r, size_t i)
{
    return i < r->n ? &r->routes[i].route : NULL;
}
