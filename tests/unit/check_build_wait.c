/* Unit tests of build_wait: a build waits on one named thing at a time;
 * ending a wait it is not in changes nothing; bl_halt stops a timer and
 * leaves a query out alone; and the loop ends with nothing of ours. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/queue/task.h"
#include "studyhub/tasks/build_internal.h"
#include "unit_loop.h"
#include "unit_main.h"

START_TEST(every_wait_has_a_name)
{
    for (int w = BW_NONE; w <= BW_TIMER; w++) {
        ck_assert_ptr_nonnull(bl_wait_names[w]);
        for (int v = BW_NONE; v < w; v++)
            ck_assert_str_ne(bl_wait_names[v], bl_wait_names[w]);
    }
    ck_assert_str_eq(bl_wait_names[BW_NONE], "nothing");
    ck_assert_str_eq(bl_wait_names[BW_QUERY], "query");
}
END_TEST

START_TEST(one_wait_at_a_time)
{
    struct task t = { .id = 7 };
    struct build b = { .t = &t };

    ck_assert_int_eq(b.wait, BW_NONE);
    bl_wait(&b, BW_GITHUB);
    ck_assert_int_eq(b.wait, BW_GITHUB);
    bl_wait_end(&b, BW_TIMER);          /* not what it waits on */
    ck_assert_int_eq(b.wait, BW_GITHUB);
    bl_wait_end(&b, BW_GITHUB);
    ck_assert_int_eq(b.wait, BW_NONE);
    bl_wait(&b, BW_CHILD);
    bl_wait(&b, BW_UPLOAD);             /* the next replaces it */
    ck_assert_int_eq(b.wait, BW_UPLOAD);
}
END_TEST

START_TEST(halt_stops_a_timer)
{
    struct event_base *base = event_base_new();
    struct task t = { .id = 8 };
    struct build b = { .t = &t };

    ck_assert_ptr_nonnull(base);
    b.timer = evtimer_new(base, bl_on_timer, &b);
    ck_assert_ptr_nonnull(b.timer);
    bl_wait_timer(&b, 60000);
    ck_assert_int_eq(b.wait, BW_TIMER);
    ck_assert(evtimer_pending(b.timer, NULL));
    ck_assert_int_eq(unit_loop_events_left(base), 1);
    bl_halt(&b);
    ck_assert_int_eq(b.wait, BW_NONE);
    ck_assert(!evtimer_pending(b.timer, NULL));

    /* A query out stays: its callback still comes and ends it. */
    bl_wait(&b, BW_QUERY);
    bl_halt(&b);
    ck_assert_int_eq(b.wait, BW_QUERY);
    event_free(b.timer);
    unit_loop_free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("build_wait");
    TCase *tc = tcase_create("wait");
    tcase_add_test(tc, every_wait_has_a_name);
    tcase_add_test(tc, one_wait_at_a_time);
    tcase_add_test(tc, halt_stops_a_timer);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
