/* router: match a method and a decoded path against a table of patterns.
 * Patterns are split into segments once, at router_add; a match walks the
 * path once per candidate route.  The table is small (tens of routes), so a
 * linear scan costs less than a request's first syscall. */
#include "studyhub/http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int router_add(struct router *r, enum http_method method, const char *pattern,
               http_handler_fn handler)
{
    struct compiled_route cr = { .route = { method, pattern, handler } };
    const char *p = pattern;
    int nparams = 0;

    if (*p != '/')
        return -1;
    while (*p == '/' && p[1] != '\0' && strcmp(p, "/?") != 0) {
        const char *start = p + 1;
        size_t len = strcspn(start, "/");
        if (cr.nsegs == ROUTER_MAX_SEGMENTS || len == 0)
            return -1;
        struct segment *s = &cr.segs[cr.nsegs++];
        if (len == 1 && *start == '*') {
            if (start[1] != '\0')
                return -1;      /* the rest-wildcard must come last */
            s->kind = SEG_REST;
        } else if (*start == '{' && start[len - 1] == '}') {
            if (++nparams > HTTP_MAX_PARAMS)
                return -1;
            s->kind = SEG_PARAM;
        } else {
            s->kind = SEG_LITERAL;
        }
        s->text = start;
        s->len = len;
        p = start + len;
    }
    cr.optional_slash = (strcmp(p, "/?") == 0);
    cr.trailing_slash = (*p == '/' && !cr.optional_slash);
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

static const char *method_names[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"
};

enum router_result router_match(const struct router *r, enum http_method method,
                                const char *path, struct router_match *out,
                                char *allow, size_t allowlen)
{
    bool path_matched = false;
    size_t allow_used = 0;

    if (allow && allowlen)
        allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const struct compiled_route *cr = &r->routes[i];
        struct router_match m;
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
