/* Unit tests of reap on a real event loop: an object released outside any
 * callback goes at once; one released inside its own callback is freed
 * after that callback returns, on the next loop turn; holds keep it; a
 * loop left early is flushed; and every loop ends with nothing alive. */
#include <check.h>
#include <stdlib.h>

#include <event2/event.h>

#include "studyhub/core/reap.h"
#include "unit_loop.h"
#include "unit_main.h"

static int alive;          /* objects not yet destroyed */

struct obj {
    struct reap reap;
    struct event *ev;      /* owned: "its callback" */
    bool release_in_cb;    /* the callback releases its own object */
    bool seen_after;       /* the callback read its object after release */
    bool in_cb;            /* its callback is on the stack */
    int *freed_at;         /* borrowed: set to the turn it went */
    int *turn;             /* borrowed: the test's turn counter */
};

static int freed_under_cb;  /* destroys that ran inside the object's callback */

static void obj_destroy(void *arg)
{
    struct obj *o = arg;

    if (o->in_cb)
        freed_under_cb++;
    if (o->freed_at)
        *o->freed_at = o->turn ? *o->turn : -1;
    event_free(o->ev);
    reap_cleanup(&o->reap);
    free(o);
    alive--;
}

/* The object's own callback, run as its owner's dispatcher would: held
 * around the call. */
static void obj_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct obj *o = arg;

    (void)fd;
    (void)what;
    reap_hold(&o->reap);
    o->in_cb = true;
    if (o->release_in_cb) {
        reap_release(&o->reap);
        o->seen_after = reap_released(&o->reap);   /* still there to read */
    }
    o->in_cb = false;
    reap_drop(&o->reap);
    /* The drop is under the loop's callback still: not freed here. */
    ck_assert_int_ge(alive, 1);
}

static struct obj *obj_new(struct event_base *base)
{
    struct obj *o = calloc(1, sizeof *o);

    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(reap_init(&o->reap, base, obj_destroy, o), 0);
    o->ev = event_new(base, -1, 0, obj_on_event, o);
    ck_assert_ptr_nonnull(o->ev);
    alive++;
    return o;
}

START_TEST(released_outside_goes_at_once)
{
    struct event_base *base = event_base_new();
    struct obj *o = obj_new(base);
    int freed_at = -2;

    o->freed_at = &freed_at;
    reap_release(&o->reap);
    ck_assert_int_eq(alive, 0);
    ck_assert_int_eq(freed_at, -1);
    unit_loop_free(base);
}
END_TEST

START_TEST(released_in_own_callback_goes_next_turn)
{
    struct event_base *base = event_base_new();
    struct obj *o = obj_new(base);

    freed_under_cb = 0;
    o->release_in_cb = true;
    event_active(o->ev, EV_TIMEOUT, 1);
    ck_assert_int_ge(event_base_dispatch(base), 0);
    /* Freed after its callback returned, from the loop, not under it. */
    ck_assert_int_eq(alive, 0);
    ck_assert_int_eq(freed_under_cb, 0);
    unit_loop_free(base);       /* the loop ended with nothing alive */
}
END_TEST

START_TEST(holds_keep_it)
{
    struct event_base *base = event_base_new();
    struct obj *o = obj_new(base);

    reap_hold(&o->reap);            /* work out */
    reap_hold(&o->reap);
    reap_release(&o->reap);
    reap_release(&o->reap);         /* twice: no more */
    ck_assert_int_eq(alive, 1);
    ck_assert(reap_held(&o->reap));
    reap_drop(&o->reap);
    ck_assert_int_eq(alive, 1);
    reap_drop(&o->reap);            /* due on the next turn */
    ck_assert_int_eq(alive, 1);
    ck_assert_int_ge(event_base_dispatch(base), 0);
    ck_assert_int_eq(alive, 0);
    unit_loop_free(base);
}
END_TEST

/* Work comes back inside a loop callback after the release: the last drop
 * defers to the next turn, not under that callback. */
static void drop_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct obj *o = arg;

    (void)fd;
    (void)what;
    reap_drop(&o->reap);
    ck_assert_int_eq(alive, 1);
}

START_TEST(last_drop_in_a_callback_defers)
{
    struct event_base *base = event_base_new();
    struct obj *o = obj_new(base);
    struct event *back = event_new(base, -1, 0, drop_on_event, o);

    reap_hold(&o->reap);
    reap_release(&o->reap);
    event_active(back, EV_TIMEOUT, 1);
    ck_assert_int_ge(event_base_dispatch(base), 0);
    ck_assert_int_eq(alive, 0);
    event_free(back);
    unit_loop_free(base);
}
END_TEST

/* A loop left at once (loopbreak) before the next turn: reap_flush. */
static void release_and_break(evutil_socket_t fd, short what, void *arg)
{
    struct obj *o = arg;

    (void)fd;
    (void)what;
    reap_hold(&o->reap);            /* as its dispatcher */
    reap_release(&o->reap);
    reap_drop(&o->reap);
    event_base_loopbreak(event_get_base(o->ev));
}

START_TEST(flush_after_the_loop)
{
    struct event_base *base = event_base_new();
    struct obj *a = obj_new(base), *b = obj_new(base), *c = obj_new(base);
    struct event *ev = event_new(base, -1, 0, release_and_break, a);

    reap_hold(&b->reap);
    reap_release(&b->reap);          /* held: not due */
    event_active(ev, EV_TIMEOUT, 1);
    ck_assert_int_ge(event_base_dispatch(base), 0);
    ck_assert_int_eq(alive, 3);
    ck_assert_int_eq(unit_loop_events_left(base), 1);  /* a's, due */
    ck_assert_int_eq(reap_flush(base), 1);
    ck_assert_int_eq(alive, 2);
    ck_assert_int_eq(reap_flush(base), 0);
    reap_drop(&b->reap);            /* after the loop: flushed */
    reap_release(&c->reap);         /* unheld: at once */
    ck_assert_int_eq(alive, 1);
    ck_assert_int_eq(reap_flush(base), 1);
    ck_assert_int_eq(alive, 0);
    event_free(ev);
    unit_loop_free(base);
}
END_TEST

/* reap_now: at shutdown an owner frees what may go, and only that. */
START_TEST(now_at_shutdown)
{
    struct event_base *base = event_base_new();
    struct obj *a = obj_new(base), *b = obj_new(base);

    ck_assert(!reap_now(&a->reap));         /* not released */
    reap_hold(&a->reap);
    reap_release(&a->reap);
    ck_assert(!reap_now(&a->reap));         /* held */
    reap_drop(&a->reap);                    /* due on a turn that never comes */
    ck_assert(reap_now(&a->reap));
    ck_assert_int_eq(alive, 1);
    reap_release(&b->reap);
    ck_assert_int_eq(alive, 0);
    ck_assert_int_eq(reap_flush(base), 0);
    unit_loop_free(base);
}
END_TEST

/* Hundreds released in their own callbacks on one turn all go the next. */
START_TEST(many)
{
    enum { N = 300 };
    struct event_base *base = event_base_new();

    for (int i = 0; i < N; i++) {
        struct obj *o = obj_new(base);

        o->release_in_cb = i % 2 == 0;
        event_active(o->ev, EV_TIMEOUT, 1);
        if (i % 2)
            reap_release(&o->reap);     /* outside: at once */
    }
    ck_assert_int_eq(alive, N / 2);
    ck_assert_int_ge(event_base_dispatch(base), 0);
    ck_assert_int_eq(alive, 0);
    unit_loop_free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reap");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, released_outside_goes_at_once);
    tcase_add_test(tc, released_in_own_callback_goes_next_turn);
    tcase_add_test(tc, holds_keep_it);
    tcase_add_test(tc, last_drop_in_a_callback_defers);
    tcase_add_test(tc, flush_after_the_loop);
    tcase_add_test(tc, now_at_shutdown);
    tcase_add_test(tc, many);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
