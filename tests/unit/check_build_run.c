/* Unit tests of build_run's pure part: the order of the build stage's
 * children for each runner (docker, local with a scratch copy, local in
 * the bwrap sandbox), on a first attempt and after a dead server's. */
#include <check.h>
#include <stdlib.h>

#include "studyhub/tasks/build_internal.h"
#include "unit_main.h"

/* The children a build runs, in order, into seq (ended by -1). */
static void sequence(bool docker, bool sandboxed, int attempts, int seq[8])
{
    int n = 0;

    for (int c = bl_first_child(docker, sandboxed, attempts); c >= 0 && n < 7;
         c = bl_next_child(c))
        seq[n++] = c;
    seq[n] = -1;
}

START_TEST(child_order)
{
    int seq[8];

    sequence(true, false, 1, seq);          /* docker: the image, the run */
    ck_assert_int_eq(seq[0], CH_IMAGE);
    ck_assert_int_eq(seq[1], CH_RUN);
    ck_assert_int_eq(seq[2], -1);

    sequence(true, false, 2, seq);          /* again: the old container first */
    ck_assert_int_eq(seq[0], CH_DOCKER_RM);
    ck_assert_int_eq(seq[1], CH_IMAGE);
    ck_assert_int_eq(seq[2], CH_RUN);
    ck_assert_int_eq(seq[3], -1);

    sequence(false, false, 3, seq);         /* local: a scratch copy, the run */
    ck_assert_int_eq(seq[0], CH_COPY);
    ck_assert_int_eq(seq[1], CH_RUN);
    ck_assert_int_eq(seq[2], -1);

    for (int attempts = 1; attempts <= 2; attempts++) {
        sequence(false, true, attempts, seq);   /* bwrap: the run alone */
        ck_assert_int_eq(seq[0], CH_RUN);
        ck_assert_int_eq(seq[1], -1);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("build_run");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, child_order);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
