/* Unit tests of tasks/build's state machine as the task runner sees it:
 * the kind's table (its stages' names in order, where it starts, three
 * claims), the names of states, and where a build interrupted by a dead
 * server goes on: the stage it was in; the first for a state it never
 * had; and, its claims used up, the finish stage with the build failed
 * and a message naming the stage. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/queue/task.h"
#include "studyhub/tasks/build.h"
#include "studyhub/tasks/build_internal.h"
#include "unit_main.h"

START_TEST(kind_table)
{
    static const char *const want[] = { "resolve_sha", "download", "extract", "build",
                                        "upload", "finish" };

    ck_assert_str_eq(build_kind.name, BUILD_KIND);
    ck_assert_int_eq(build_kind.nstates, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(build_kind.states[i], want[i]);
        ck_assert_str_eq(bl_state_name(i), want[i]);
    }
    ck_assert_int_eq(BS_RESOLVE, 0);
    ck_assert_int_eq(BS_FINISH, 5);
    ck_assert_int_eq(build_kind.initial_state, BS_RESOLVE);
    ck_assert_int_eq(build_kind.max_attempts, 3);
    ck_assert_ptr_nonnull(build_kind.open);
    ck_assert_ptr_nonnull(build_kind.step);
    ck_assert_ptr_nonnull(build_kind.resume);
    ck_assert_ptr_nonnull(build_kind.cancel);
    ck_assert_ptr_nonnull(build_kind.close);
    ck_assert_str_eq(bl_state_name(-1), "?");
    ck_assert_str_eq(bl_state_name(6), "?");
}
END_TEST

/* A task of the kind on its attempt-th claim, with its build. */
static struct task *task_with_build(int attempts, struct build **out)
{
    struct task *t = calloc(1, sizeof *t);
    struct build *b = calloc(1, sizeof *b);

    ck_assert(t && b);
    t->kind = &build_kind;
    t->attempts = attempts;
    t->max_attempts = 3;
    t->data = b;
    b->t = t;
    *out = b;
    return t;
}

START_TEST(resume_where_it_stopped)
{
    struct build *b;
    struct task *t = task_with_build(2, &b);

    for (int s = BS_RESOLVE; s <= BS_FINISH; s++)
        ck_assert_int_eq(build_kind.resume(t, s), s);
    ck_assert_int_eq(build_kind.resume(t, -1), BS_RESOLVE);
    ck_assert_int_eq(build_kind.resume(t, 17), BS_RESOLVE);
    ck_assert_int_eq(b->outcome, BO_UNKNOWN);
    free(b);
    free(t);
}
END_TEST

START_TEST(resume_gives_up)
{
    struct build *b;
    struct task *t = task_with_build(4, &b);    /* a fourth claim of three */

    ck_assert_int_eq(build_kind.resume(t, BS_BUILD), BS_FINISH);
    ck_assert_int_eq(b->outcome, BO_FAILED);
    ck_assert_ptr_nonnull(strstr(b->error, "stopped 3 times"));
    ck_assert_ptr_nonnull(strstr(b->error, "stage build"));
    free(b);
    free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("build");
    TCase *tc = tcase_create("kind");

    tcase_add_test(tc, kind_table);
    tcase_add_test(tc, resume_where_it_stopped);
    tcase_add_test(tc, resume_gives_up);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
