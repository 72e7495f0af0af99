/* reap: one deferred free for every object the loop calls back into.  See
 * include/studyhub/core/reap.h. */
#include "config.h"

#include "studyhub/core/reap.h"

#include <stdlib.h>

#include <event2/event.h>

static void reap_on_turn(evutil_socket_t fd, short what, void *arg)
{
    struct reap *r = arg;

    (void)fd;
    (void)what;
    /* Held again since (a new hold on a released object): its last drop
     * comes back here. */
    if (r->released && r->holds == 0)
        r->destroy(r->obj);
}

int reap_init(struct reap *r, struct event_base *base, void (*destroy)(void *obj),
              void *obj)
{
    r->destroy = destroy;
    r->obj = obj;
    r->holds = 0;
    r->released = false;
    r->ev = event_new(base, -1, 0, reap_on_turn, r);
    return r->ev ? 0 : -1;
}

void reap_cleanup(struct reap *r)
{
    if (r->ev)
        event_free(r->ev);
    r->ev = NULL;
}

void reap_hold(struct reap *r)
{
    r->holds++;
}

void reap_drop(struct reap *r)
{
    /* A drop comes from a callback (the work came back, or the object's
     * own callback returned): the destroy waits for the loop. */
    if (--r->holds == 0 && r->released)
        event_active(r->ev, EV_TIMEOUT, 1);
}

void reap_release(struct reap *r)
{
    if (r->released)
        return;
    r->released = true;
    if (r->holds == 0)
        r->destroy(r->obj);
}

bool reap_now(struct reap *r)
{
    if (!r->released || r->holds > 0)
        return false;
    if (r->ev)
        event_del(r->ev);
    r->destroy(r->obj);
    return true;
}

static int find_due(const struct event_base *base, const struct event *ev,
                    void *arg)
{
    (void)base;
    if (event_get_callback(ev) != reap_on_turn || !event_pending(ev, EV_TIMEOUT, NULL))
        return 0;
    *(struct reap **)arg = event_get_callback_arg(ev);
    return 1;
}

int reap_flush(struct event_base *base)
{
    struct reap *r;
    int done = 0;

    /* One at a time: the walk may not free events, and a destroy may
     * destroy others. */
    while ((r = NULL, event_base_foreach_event(base, find_due, &r), r)) {
        if (reap_now(r))
            done++;
        else
            event_del(r->ev);
    }
    return done;
}
