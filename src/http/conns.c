/* conns: one guard per client connection, driven by three inputs (bytes
 * arriving, the request handed to the server, its reply written) and one
 * sweep timer.  Nothing is freed from inside evhttp's callbacks except the
 * guard itself in the close callback, where evhttp still owns the
 * connection; closing a connection happens only from this module's own
 * events. */
#include "studyhub/http/conns.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "studyhub/core/log.h"
#include "studyhub/core/ptrmap.h"
#include "studyhub/core/util.h"

#define SWEEP_MS 500
#define ADDR_BUCKETS 65536   /* per-address counts, by hash (see addr_bucket) */

/* Where a connection's current request is. */
enum guard_state {
    GUARD_PENDING,    /* made by evhttp_set_bevcb; not yet linked to its evcon */
    GUARD_IDLE,       /* between requests: evhttp's idle timeout applies */
    GUARD_RECEIVING,  /* bytes of a request arrived; its deadline runs */
    GUARD_HANDLING,   /* the whole request is in; the server answers it */
};

struct guard {
    TAILQ_ENTRY(guard) link;          /* in cs->guards */
    struct http_conns *cs;            /* borrowed: the owner */
    struct bufferevent *bev;          /* one reference held (see conns.h) */
    struct evhttp_connection *evcon;  /* borrowed from evhttp; NULL while pending */
    struct evbuffer_cb_entry *on_in;  /* our callback on bev's input buffer */
    enum guard_state state;
    int64_t started_ms;               /* monotonic: the request's first byte */
    uint64_t received;                /* bytes of this request so far */
    uint32_t bucket;                  /* its address bucket, counted while linked */
    bool counted;                     /* bucket holds this connection */
};

TAILQ_HEAD(guard_list, guard);

struct http_conns {
    struct event_base *base;          /* borrowed */
    struct http_conns_limits limits;
    http_conns_close_fn on_close;     /* borrowed */
    void *arg;                        /* borrowed */
    struct guard_list guards;         /* owned: every guard */
    struct ptrmap by_evcon;           /* evcon -> its guard (linked guards) */
    struct event *link_ev;            /* owned: links pending guards */
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

static void guard_release(struct guard *g)
{
    struct http_conns *cs = g->cs;

    if (g->on_in)
        evbuffer_remove_cb_entry(bufferevent_get_input(g->bev), g->on_in);
    if (g->evcon)
        ptrmap_del(&cs->by_evcon, g->evcon);
    if (g->counted)
        cs->addr_count[g->bucket]--;
    if (g->state != GUARD_PENDING)
        cs->open--;
    TAILQ_REMOVE(&cs->guards, g, link);
    bufferevent_decref(g->bev);   /* evhttp's own reference frees it */
    free(g);
}

/* evhttp is closing the connection; the bufferevent is still alive. */
static void on_evcon_close(struct evhttp_connection *evcon, void *arg)
{
    struct guard *g = arg;
    struct http_conns *cs = g->cs;

    guard_release(g);
    if (cs->on_close)
        cs->on_close(evcon, cs->arg);
}

static void start_receiving(struct guard *g, uint64_t bytes)
{
    g->state = GUARD_RECEIVING;
    g->started_ms = util_mono_ms();
    g->received = bytes;
}

/* Bytes arrived (or evhttp drained parsed ones: n_added is 0 then). */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct guard *g = arg;

    (void)buf;
    if (info->n_added == 0)
        return;
    if (g->state == GUARD_IDLE)
        start_receiving(g, info->n_added);
    else if (g->state == GUARD_RECEIVING)
        g->received += info->n_added;
}

static bool past_deadline(const struct guard *g, int64_t now)
{
    const struct http_conns_limits *l = &g->cs->limits;
    int64_t allowed = (int64_t)l->header_timeout_s * 1000;

    if (l->min_rate > 0)
        allowed += (int64_t)(g->received * 1000 / (uint64_t)l->min_rate);
    return now - g->started_ms > allowed;
}

/* Ties a new bufferevent to the evhttp connection evhttp made around it
 * (its callbacks' argument), or drops the guard if evhttp already let the
 * connection go (its callbacks are cleared then). */
static void guard_link(struct guard *g)
{
    struct http_conns *cs = g->cs;
    bufferevent_data_cb rd, wr;
    bufferevent_event_cb ev;
    void *cbarg = NULL;
    char *addr = NULL;
    ev_uint16_t port = 0;
    int one = 1;

    bufferevent_getcb(g->bev, &rd, &wr, &ev, &cbarg);
    if (!ev || !cbarg || ptrmap_put(&cs->by_evcon, cbarg, g) < 0) {
        guard_release(g);
        return;
    }
    g->evcon = cbarg;
    g->state = GUARD_IDLE;
    cs->open++;
    evhttp_connection_set_closecb(g->evcon, on_evcon_close, g);
    g->on_in = evbuffer_add_cb(bufferevent_get_input(g->bev), on_input, g);
    /* Replies go out whole: without TCP_NODELAY a keep-alive reply larger
     * than one write waits for the client's delayed ACK (~40 ms). */
    setsockopt(bufferevent_getfd(g->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bufferevent_set_max_single_write(g->bev, 256 * 1024);

    evhttp_connection_get_peer(g->evcon, &addr, &port);
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
            /* From our own event: evhttp is not on the stack. */
            evhttp_connection_free(g->evcon);
            return;
        }
        cs->addr_count[g->bucket]++;
        g->counted = true;
    }
}

static void on_link(evutil_socket_t fd, short what, void *arg)
{
    struct http_conns *cs = arg;
    struct guard *g, *next;

    (void)fd;
    (void)what;
    /* New guards are at the tail; pending ones are always the newest. */
    for (g = TAILQ_LAST(&cs->guards, guard_list); g && g->state == GUARD_PENDING; g = next) {
        next = TAILQ_PREV(g, guard_list, link);
        guard_link(g);
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct http_conns *cs = arg;
    int64_t now = util_mono_ms();
    struct guard *g, *next;

    (void)fd;
    (void)what;
    for (g = TAILQ_FIRST(&cs->guards); g; g = next) {
        bufferevent_data_cb rd, wr;
        bufferevent_event_cb ev;
        void *cbarg;

        next = TAILQ_NEXT(g, link);
        if (g->state == GUARD_PENDING)
            continue;
        /* Dropped without a close callback: only our reference is left. */
        bufferevent_getcb(g->bev, &rd, &wr, &ev, &cbarg);
        if (!ev) {
            guard_release(g);
            continue;
        }
        if (g->state == GUARD_RECEIVING && past_deadline(g, now)) {
            static struct log_limit limit;
            long dropped;

            cs->slow_closed++;
            if (log_limit_pass(&limit, 5, &dropped))
                log_info("http: closing a connection whose request took %lld ms for "
                         "%llu bytes (%ld more suppressed)",
                         (long long)(now - g->started_ms),
                         (unsigned long long)g->received, dropped);
            /* Runs on_evcon_close, which releases g (next stays valid:
             * only g leaves the list). */
            evhttp_connection_free(g->evcon);
        }
    }
    util_timer_ms(cs->sweep_ev, SWEEP_MS);
}

/* evhttp_set_bevcb: a plain socket bufferevent, guarded. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct http_conns *cs = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct guard *g;

    if (!bev)
        return NULL;
    g = calloc(1, sizeof *g);
    if (!g)
        return bev;    /* served unguarded rather than refused */
    g->cs = cs;
    g->bev = bev;
    g->state = GUARD_PENDING;
    bufferevent_incref(bev);
    TAILQ_INSERT_TAIL(&cs->guards, g, link);
    /* evhttp sets its callbacks right after this returns; the link event
     * runs in the same loop pass, before any byte is read. */
    event_active(cs->link_ev, EV_TIMEOUT, 1);
    return bev;
}

struct http_conns *http_conns_new(struct event_base *base,
                                  const struct http_conns_limits *limits,
                                  http_conns_close_fn on_close, void *arg)
{
    struct http_conns *cs = calloc(1, sizeof *cs);

    if (!cs)
        return NULL;
    cs->base = base;
    cs->limits = *limits;
    cs->on_close = on_close;
    cs->arg = arg;
    TAILQ_INIT(&cs->guards);
    cs->link_ev = event_new(base, -1, 0, on_link, cs);
    cs->sweep_ev = evtimer_new(base, on_sweep, cs);
    cs->addr_count = calloc(ADDR_BUCKETS, sizeof *cs->addr_count);
    if (!cs->link_ev || !cs->sweep_ev || !cs->addr_count) {
        http_conns_free(cs);
        return NULL;
    }
    util_timer_ms(cs->sweep_ev, SWEEP_MS);
    return cs;
}

void http_conns_attach(struct http_conns *cs, struct evhttp *http)
{
    evhttp_set_bevcb(http, make_bev, cs);
}

void http_conns_free(struct http_conns *cs)
{
    struct guard *g;

    if (!cs)
        return;
    /* evhttp_free ran first and closed its connections (their guards
     * went with the close callbacks): what is left is not evhttp's any
     * more, so no evcon is touched here. */
    while ((g = TAILQ_FIRST(&cs->guards)))
        guard_release(g);
    if (cs->link_ev)
        event_free(cs->link_ev);
    if (cs->sweep_ev)
        event_free(cs->sweep_ev);
    ptrmap_cleanup(&cs->by_evcon);
    free(cs->addr_count);
    free(cs);
}

void http_conns_request_in(struct http_conns *cs, struct evhttp_connection *evcon)
{
    struct guard *g = ptrmap_get(&cs->by_evcon, evcon);

    if (g)
        g->state = GUARD_HANDLING;
}

void http_conns_reply_done(struct http_conns *cs, struct evhttp_connection *evcon)
{
    struct guard *g = ptrmap_get(&cs->by_evcon, evcon);
    size_t waiting;

    if (!g || g->state != GUARD_HANDLING)
        return;
    g->state = GUARD_IDLE;
    waiting = evbuffer_get_length(bufferevent_get_input(g->bev));
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
