/* metrics: request counters by (route, status) and a latency histogram per
 * route, kept in plain arrays found through a ptrmap of the route string's
 * address, and rendered in the Prometheus text format. */
#include "studyhub/core/metrics.h"
#include "studyhub/core/ptrmap.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds; the last bucket is +Inf.  The label strings are
 * written out so they render exactly as configured. */
static const double mt_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                   0.025,  0.05,  0.1,    0.25,  0.5,
                                   1,      2.5,   5,      10};
static const char *const mt_le[] = {"0.0005", "0.001", "0.0025", "0.005",
                                    "0.01",   "0.025", "0.05",   "0.1",
                                    "0.25",   "0.5",   "1",      "2.5",
                                    "5",      "10",    "+Inf"};
#define MT_NBOUNDS (sizeof(mt_bounds) / sizeof(mt_bounds[0]))
#define MT_NBUCKETS (MT_NBOUNDS + 1)

/* Routes come from the router table, so a few dozen are expected; the cap
 * only keeps a caller that passes raw paths from growing memory without
 * bound.  Routes past it are counted under MT_OVERFLOW_ROUTE. */
#define MT_MAX_ROUTES 1000
#define MT_OVERFLOW_ROUTE "_overflow"
/* Pointer aliases cached per table; past this, lookups of new pointers
 * fall back to comparing strings. */
#define MT_MAX_POINTERS 2048

struct mt_status {
    int status;     /* HTTP status code */
    uint64_t count; /* requests answered with it */
};

struct mt_route {
    char *name;                    /* owned copy of the route string */
    struct mt_status *statuses;    /* owned; sorted by status */
    size_t nstatuses;              /* used entries of statuses */
    size_t capstatuses;            /* allocated entries of statuses */
    uint64_t buckets[MT_NBUCKETS]; /* per bucket, not cumulative */
    double sum;                    /* seconds, over all observations */
    uint64_t count;                /* observations */
};

struct metrics {
    struct mt_route *routes; /* owned array */
    size_t nroutes;          /* used entries of routes */
    size_t caproutes;        /* allocated entries of routes */
    struct ptrmap by_pointer; /* route string pointer -> its index + 1 */
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nroutes; i++) {
        free(m->routes[i].name);
        free(m->routes[i].statuses);
    }
    free(m->routes);
    ptrmap_cleanup(&m->by_pointer);
    free(m);
}

/* Remembers route pointer -> idx if there is room; failing only costs
 * speed. */
static void mt_pointer_add(struct metrics *m, const char *key, size_t idx)
{
    if (ptrmap_count(&m->by_pointer) < MT_MAX_POINTERS)
        ptrmap_put(&m->by_pointer, key, (void *)(uintptr_t)(idx + 1));
}

static struct mt_route *mt_route_by_name(struct metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nroutes; i++)
        if (strcmp(m->routes[i].name, name) == 0)
            return &m->routes[i];
    return NULL;
}

static struct mt_route *mt_route_add(struct metrics *m, const char *name)
{
    struct mt_route *r;

    if (m->nroutes == m->caproutes) {
        size_t cap = m->caproutes ? m->caproutes * 2 : 16;
        struct mt_route *nr = realloc(m->routes, cap * sizeof(*nr));

        if (nr == NULL)
            return NULL;
        m->routes = nr;
        m->caproutes = cap;
    }
    r = &m->routes[m->nroutes];
    memset(r, 0, sizeof(*r));
    r->name = strdup(name);
    if (r->name == NULL)
        return NULL;
    m->nroutes++;
    return r;
}

/* The slow path, taken once per distinct route pointer: the same text may
 * arrive through two pointers (e.g. "unmatched" in two files), and must
 * stay one series. */
static struct mt_route *mt_route_lookup_slow(struct metrics *m,
                                             const char *route)
{
    struct mt_route *r = mt_route_by_name(m, route);

    if (r == NULL && m->nroutes >= MT_MAX_ROUTES) {
        r = mt_route_by_name(m, MT_OVERFLOW_ROUTE);
        if (r == NULL)
            r = mt_route_add(m, MT_OVERFLOW_ROUTE);
        return r; /* not cached: the pointer may be a transient buffer */
    }
    if (r == NULL)
        r = mt_route_add(m, route);
    if (r)
        mt_pointer_add(m, route, (size_t)(r - m->routes));
    return r;
}

static struct mt_route *mt_route_get(struct metrics *m, const char *route)
{
    uintptr_t idx = (uintptr_t)ptrmap_get(&m->by_pointer, route);

    if (idx)
        return &m->routes[idx - 1];
    return mt_route_lookup_slow(m, route);
}

static struct mt_status *mt_status_get(struct mt_route *r, int status)
{
    size_t i;

    /* A route sees a handful of statuses: a short linear scan. */
    for (i = 0; i < r->nstatuses; i++) {
        if (r->statuses[i].status == status)
            return &r->statuses[i];
        if (r->statuses[i].status > status)
            break;
    }
    if (r->nstatuses == r->capstatuses) {
        size_t cap = r->capstatuses ? r->capstatuses * 2 : 4;
        struct mt_status *ns = realloc(r->statuses, cap * sizeof(*ns));

        if (ns == NULL)
            return NULL;
        r->statuses = ns;
        r->capstatuses = cap;
    }
    /* Kept sorted so rendering needs no sort. */
    memmove(&r->statuses[i + 1], &r->statuses[i],
            (r->nstatuses - i) * sizeof(*r->statuses));
    r->statuses[i].status = status;
    r->statuses[i].count = 0;
    r->nstatuses++;
    return &r->statuses[i];
}

void metrics_observe_request(struct metrics *m, const char *route, int status,
                             double seconds)
{
    struct mt_route *r;
    struct mt_status *st;
    size_t b;

    if (m == NULL)
        return;
    if (route == NULL)
        route = "unmatched";
    if (status < 0 || status > 999)
        status = 0; /* keeps the label three digits at most */
    if (!(seconds >= 0) || isinf(seconds))
        seconds = 0; /* NaN, negative (clock step) or infinite */
    r = mt_route_get(m, route);
    if (r == NULL)
        return; /* out of memory: drop the sample rather than fail */
    st = mt_status_get(r, status);
    if (st)
        st->count++;
    for (b = 0; b < MT_NBOUNDS && seconds > mt_bounds[b]; b++)
        ;
    r->buckets[b]++;
    r->sum += seconds;
    r->count++;
}

/* Label values escape backslash, double quote and newline. */
static void mt_add_label(struct evbuffer *out, const char *v)
{
    const char *run = v;

    for (; *v; v++) {
        const char *esc = NULL;

        if (*v == '\\')
            esc = "\\\\";
        else if (*v == '"')
            esc = "\\\"";
        else if (*v == '\n')
            esc = "\\n";
        if (esc == NULL)
            continue;
        evbuffer_add(out, run, (size_t)(v - run));
        evbuffer_add(out, esc, 2);
        run = v + 1;
    }
    evbuffer_add(out, run, (size_t)(v - run));
}

static int mt_cmp_route(const void *a, const void *b)
{
    const struct mt_route *ra = *(const struct mt_route *const *)a;
    const struct mt_route *rb = *(const struct mt_route *const *)b;

    return strcmp(ra->name, rb->name);
}

void metrics_render(const struct metrics *m, struct evbuffer *out)
{
    const struct mt_route **order = NULL;
    size_t n = m ? m->nroutes : 0;

    evbuffer_add_printf(out,
                        "# HELP studyhub_http_requests_total HTTP requests "
                        "answered, by route and status.\n"
                        "# TYPE studyhub_http_requests_total counter\n");
    /* Sorted by route for stable output; if the sort array can't be had,
     * insertion order is still valid output. */
    if (n > 0)
        order = malloc(n * sizeof(*order));
    if (order) {
        for (size_t i = 0; i < n; i++)
            order[i] = &m->routes[i];
        qsort(order, n, sizeof(*order), mt_cmp_route);
    }
    for (size_t i = 0; i < n; i++) {
        const struct mt_route *r = order ? order[i] : &m->routes[i];

        for (size_t j = 0; j < r->nstatuses; j++) {
            evbuffer_add_printf(out, "studyhub_http_requests_total{route=\"");
            mt_add_label(out, r->name);
            evbuffer_add_printf(out, "\",status=\"%d\"} %" PRIu64 "\n",
                                r->statuses[j].status, r->statuses[j].count);
        }
    }
    evbuffer_add_printf(out,
                        "# HELP studyhub_http_request_duration_seconds Time "
                        "from request to reply, by route.\n"
                        "# TYPE studyhub_http_request_duration_seconds "
                        "histogram\n");
    for (size_t i = 0; i < n; i++) {
        const struct mt_route *r = order ? order[i] : &m->routes[i];
        uint64_t cum = 0;

        for (size_t b = 0; b < MT_NBUCKETS; b++) {
            cum += r->buckets[b];
            evbuffer_add_printf(
                out, "studyhub_http_request_duration_seconds_bucket{route=\"");
            mt_add_label(out, r->name);
            evbuffer_add_printf(out, "\",le=\"%s\"} %" PRIu64 "\n", mt_le[b],
                                cum);
        }
        evbuffer_add_printf(out,
                            "studyhub_http_request_duration_seconds_sum{route=\"");
        mt_add_label(out, r->name);
        evbuffer_add_printf(out, "\"} %.17g\n", r->sum);
        evbuffer_add_printf(
            out, "studyhub_http_request_duration_seconds_count{route=\"");
        mt_add_label(out, r->name);
        evbuffer_add_printf(out, "\"} %" PRIu64 "\n", r->count);
    }
    free(order);
}
