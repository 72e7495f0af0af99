/* unit_loop: how a loop-based unit test ends: with nothing alive on its
 * loop (every event its modules made is freed), then the base freed.
 * libevent's own events (the signal pipe's, an evhttp stub's) are not
 * ours: an event counts when its callback is in this program's text. */
#ifndef STUDYHUB_TESTS_UNIT_LOOP_H
#define STUDYHUB_TESTS_UNIT_LOOP_H

#include <check.h>
#include <stdint.h>
#include <event2/event.h>

/* The bounds of the program's text (GNU ld). */
extern const char __executable_start[], etext[];

static inline int unit_loop_count_event(const struct event_base *b, const struct event *ev,
                                        void *arg)
{
    const char *cb = (const char *)(uintptr_t)event_get_callback(ev);

    (void)b;
    if (cb >= __executable_start && cb < etext)
        ++*(int *)arg;
    return 0;
}

/* Events of ours still added or active on base. */
static inline int unit_loop_events_left(struct event_base *base)
{
    int n = 0;

    event_base_foreach_event(base, unit_loop_count_event, &n);
    return n;
}

/* Asserts nothing is left on base, then frees it. */
static inline void unit_loop_free(struct event_base *base)
{
    ck_assert_int_eq(unit_loop_events_left(base), 0);
    event_base_free(base);
}

#endif
