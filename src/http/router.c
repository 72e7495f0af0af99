/* router: match a method and a decoded path against a table of patterns.
 * Patterns are split into segments once, at router_add; a match walks the
 * path once per candidate route.  Candidates are the routes filed under
 * the path's first segment ("api", "studies") and those that start with
 * a parameter: a few dozen of the few hundred.  The router only
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

/* Indexes of routes, in table order. */
struct route_list {
    size_t *at;                     /* owned array */
    size_t n, cap;
};

/* The routes whose pattern starts with one literal segment ("api",
 * "studies"): a path is matched only against its first segment's
 * bucket and the routes that start otherwise. */
struct first_bucket {
    const char *text;               /* points into the patterns (static) */
    size_t len;
    struct route_list routes;
};

struct router {
    struct compiled_route *routes;  /* owned array */
    size_t n, cap;
    struct first_bucket *buckets;   /* owned array */
    size_t nbuckets, bucket_cap;
    struct route_list others;       /* a parameter or '*' first, or "/" */
};

struct router *router_new(void)
{
    return calloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nbuckets; i++)
        free(r->buckets[i].routes.at);
    free(r->buckets);
    free(r->others.at);
    free(r->routes);
    free(r);
}

/* Makes room for one more element in array arr of n, capacity cap
 * (doubling from first); -1 when out of memory, arr unchanged. */
#define GROW(arr, n, cap, first)                                              \
    ((n) < (cap) ? 0 : grow_to((void **)&(arr), &(cap), sizeof *(arr), (first)))

static int grow_to(void **arr, size_t *cap, size_t elem, size_t first)
{
    size_t ncap = *cap ? *cap * 2 : first;
    void *na = realloc(*arr, ncap * elem);

    if (!na)
        return -1;
    *arr = na;
    *cap = ncap;
    return 0;
}

static int list_push(struct route_list *l, size_t i)
{
    if (GROW(l->at, l->n, l->cap, 8) < 0)
        return -1;
    l->at[l->n++] = i;
    return 0;
}

static struct first_bucket *bucket_find(const struct router *r, const char *text, size_t len)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        if (r->buckets[i].len == len && memcmp(r->buckets[i].text, text, len) == 0)
            return &r->buckets[i];
    return NULL;
}

/* Files route i (compiled) under its first segment. */
static int index_route(struct router *r, size_t i)
{
    const struct compiled_route *cr = &r->routes[i];
    const struct segment *s0 = &cr->segs[0];
    struct first_bucket *b;

    if (cr->nsegs == 0 || s0->kind != SEG_LITERAL)
        return list_push(&r->others, i);
    if (!(b = bucket_find(r, s0->text, s0->len))) {
        if (GROW(r->buckets, r->nbuckets, r->bucket_cap, 8) < 0)
            return -1;
        b = &r->buckets[r->nbuckets++];
        memset(b, 0, sizeof *b);
        b->text = s0->text;
        b->len = s0->len;
    }
    return list_push(&b->routes, i);
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
    if (GROW(r->routes, r->n, r->cap, 32) < 0)
        return -1;
    r->routes[r->n] = cr;
    if (index_route(r, r->n) < 0)
        return -1;
    r->n++;
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

    /* Only the routes that start with the path's first segment, and those
     * that start with no literal, can match: both lists walked together
     * in table order, so the first route declared still wins. */
    const char *first = path[0] == '/' ? path + 1 : path;
    const struct first_bucket *b = bucket_find(r, first, strcspn(first, "/"));
    const struct route_list none = { 0 }, *lit = b ? &b->routes : &none;
    size_t li = 0, oi = 0;

    if (allow && allowlen)
        allow[0] = '\0';
    while (li < lit->n || oi < r->others.n) {
        size_t i = oi >= r->others.n || (li < lit->n && lit->at[li] < r->others.at[oi])
                       ? lit->at[li++]
                       : r->others.at[oi++];
        const struct compiled_route *cr = &r->routes[i];
        struct router_match m;
        if (!match_one(cr, path, &m))
            continue;
        /* HEAD is served by the GET handler (the server drops the body). */
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
