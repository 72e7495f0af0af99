/* conns: the guard of each client connection (see conns.h), driven by the
 * server's events (opened, bytes in, request in, reply written, closed)
 * and one sweep timer.  The guards live inside the server's connections:
 * the table only links them, and asks the server to cut a slow one. */
#include "studyhub/http/conns.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"

#define SWEEP_MS 500
#define ADDR_BUCKETS 65536   /* per-address counts, by hash (see addr_bucket) */

TAILQ_HEAD(guard_list, http_guard);

struct http_conns {
    struct event_base *base;          /* borrowed */
    struct http_conns_limits limits;
    http_conns_cut_fn cut;            /* borrowed */
    void *arg;                        /* borrowed */
    struct guard_list guards;         /* open guards (owned by their connections) */
    struct event *sweep_ev;           /* owned: cuts requests past deadline */
    uint16_t *addr_count;             /* owned: ADDR_BUCKETS counters */
    unsigned open;
    unsigned long slow_closed;
    unsigned long over_cap;
};

/* Two addresses may share a bucket: the cap then holds for the pair, which
 * errs on the side of refusing; 65536 buckets make it rare. */
static uint32_t addr_bucket(const char *addr)
{
    uint32_t h = 2166136261u;   /* FNV-1a */

    for (; *addr; addr++)
        h = (h ^ (unsigned char)*addr) * 16777619u;
    return h % ADDR_BUCKETS;
}

static void start_receiving(struct http_guard *g, uint64_t bytes)
{
    g->state = HTTP_GUARD_RECEIVING;
    g->started_ms = util_mono_ms();
    g->received = bytes;
}

static bool past_deadline(const struct http_conns *cs, const struct http_guard *g,
                          int64_t now)
{
    const struct http_conns_limits *l = &cs->limits;
    int64_t allowed = (int64_t)l->header_timeout_s * 1000;

    if (l->min_rate > 0)
        allowed += (int64_t)(g->received * 1000 / (uint64_t)l->min_rate);
    return now - g->started_ms > allowed;
}

void http_conns_sweep(struct http_conns *cs, int64_t now)
{
    struct http_guard *g, *next;

    for (g = TAILQ_FIRST(&cs->guards); g; g = next) {
        next = TAILQ_NEXT(g, link);
        if (g->state == HTTP_GUARD_RECEIVING && past_deadline(cs, g, now)) {
            static struct log_limit limit;
            long dropped;

            cs->slow_closed++;
            if (log_limit_pass(&limit, 5, &dropped))
                log_info("http: closing a connection whose request took %lld ms for "
                         "%llu bytes (%ld more suppressed)",
                         (long long)(now - g->started_ms),
                         (unsigned long long)g->received, dropped);
            /* The server closes it, which unlinks g (next stays valid:
             * only g leaves the list). */
            cs->cut(g->conn, cs->arg);
        }
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct http_conns *cs = arg;

    (void)fd;
    (void)what;
    http_conns_sweep(cs, util_mono_ms());
    util_timer_ms(cs->sweep_ev, SWEEP_MS);
}

struct http_conns *http_conns_new(struct event_base *base,
                                  const struct http_conns_limits *limits,
                                  http_conns_cut_fn cut, void *arg)
{
    struct http_conns *cs = calloc(1, sizeof *cs);

    if (!cs)
        return NULL;
    cs->base = base;
    cs->limits = *limits;
    cs->cut = cut;
    cs->arg = arg;
    TAILQ_INIT(&cs->guards);
    cs->sweep_ev = evtimer_new(base, on_sweep, cs);
    cs->addr_count = calloc(ADDR_BUCKETS, sizeof *cs->addr_count);
    if (!cs->sweep_ev || !cs->addr_count) {
        http_conns_free(cs);
        return NULL;
    }
    util_timer_ms(cs->sweep_ev, SWEEP_MS);
    return cs;
}

void http_conns_free(struct http_conns *cs)
{
    struct http_guard *g;

    if (!cs)
        return;
    while ((g = TAILQ_FIRST(&cs->guards)))
        http_conns_close(cs, g);
    if (cs->sweep_ev)
        event_free(cs->sweep_ev);
    free(cs->addr_count);
    free(cs);
}

int http_conns_open(struct http_conns *cs, struct http_guard *g, const char *addr,
                    void *conn)
{
    memset(g, 0, sizeof *g);
    g->conn = conn;
    g->state = HTTP_GUARD_IDLE;
    if (cs->limits.max_per_addr > 0 && addr) {
        g->bucket = addr_bucket(addr);
        if (cs->addr_count[g->bucket] >= cs->limits.max_per_addr) {
            static struct log_limit limit;
            long dropped;

            cs->over_cap++;
            if (log_limit_pass(&limit, 5, &dropped))
                log_warn("http: %s holds %d connections already (MAX_CONNS_PER_ADDR); "
                         "closing a new one (%ld more suppressed)", addr,
                         cs->limits.max_per_addr, dropped);
            return -1;
        }
        cs->addr_count[g->bucket]++;
        g->counted = true;
    }
    g->open = true;
    cs->open++;
    TAILQ_INSERT_TAIL(&cs->guards, g, link);
    return 0;
}

void http_conns_close(struct http_conns *cs, struct http_guard *g)
{
    if (!g->open)
        return;
    if (g->counted)
        cs->addr_count[g->bucket]--;
    g->counted = false;
    g->open = false;
    cs->open--;
    TAILQ_REMOVE(&cs->guards, g, link);
}

void http_conns_bytes_in(struct http_guard *g, size_t n)
{
    if (n == 0)
        return;
    if (g->state == HTTP_GUARD_IDLE)
        start_receiving(g, n);
    else if (g->state == HTTP_GUARD_RECEIVING)
        g->received += n;
}

void http_conns_request_in(struct http_guard *g)
{
    g->state = HTTP_GUARD_HANDLING;
}

void http_conns_reply_done(struct http_guard *g, size_t waiting)
{
    if (g->state != HTTP_GUARD_HANDLING)
        return;
    g->state = HTTP_GUARD_IDLE;
    if (waiting > 0)
        start_receiving(g, waiting);    /* a pipelined request */
}

void http_conns_stats(const struct http_conns *cs, struct http_conns_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!cs)
        return;
    out->open = cs->open;
    out->slow_closed = cs->slow_closed;
    out->over_cap = cs->over_cap;
}
