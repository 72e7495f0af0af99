/* reap: "never free an object under its own callback", in one place.
 *
 * An object embeds a struct reap.  Whoever calls the object's callbacks,
 * or sends work that will come back into it (a query, a request), holds it
 * for that time (reap_hold, reap_drop); the owner's free is reap_release.
 * The owner's free while nothing holds the object destroys it at once (no
 * callback of it is on the stack).  Released while held (inside its own
 * callback, whose dispatcher holds it; with work out), it is destroyed by
 * the loop on a later turn after the last drop, from an event of its own:
 * a callback that releases its own object returns into a live one, and
 * no callback ever frees the object it belongs to.  reap_flush runs the
 * destroys still due once a loop is over (work that came back after it,
 * a loop left by event_base_loopbreak), before its base is freed.
 *
 * A zeroed struct reap is not usable: reap_init it.  destroy frees the
 * object and calls reap_cleanup on its struct reap. */
#ifndef STUDYHUB_CORE_REAP_H
#define STUDYHUB_CORE_REAP_H

#include <stdbool.h>

struct event;
struct event_base;

struct reap {
    struct event *ev;            /* owned: the next-turn destroy */
    void (*destroy)(void *obj);  /* frees obj; calls reap_cleanup */
    void *obj;                   /* borrowed: what destroy frees */
    int holds;                   /* callbacks on the stack, work out */
    bool released;               /* the owner's free ran */
};

/* 0, or -1 when out of memory (then reap_cleanup is harmless). */
int reap_init(struct reap *r, struct event_base *base, void (*destroy)(void *obj),
              void *obj);
/* Frees the event: from destroy, or for an object that never got going. */
void reap_cleanup(struct reap *r);

void reap_hold(struct reap *r);
/* The last drop of a released object: destroyed on the next loop turn. */
void reap_drop(struct reap *r);
/* The owner's free: destroys now when unheld, else after the last drop;
 * a second call does nothing more. */
void reap_release(struct reap *r);

static inline bool reap_released(const struct reap *r) { return r->released; }
static inline bool reap_held(const struct reap *r) { return r->holds > 0; }

/* An owner freeing what it still has once no loop turn may come (at
 * shutdown): destroys r's object now if it is released and unheld.  True
 * if it did. */
bool reap_now(struct reap *r);

/* Destroys now every released, unheld object of base whose destroy waits
 * for a loop turn; returns how many.  Not from inside a callback. */
int reap_flush(struct event_base *base);

#endif
