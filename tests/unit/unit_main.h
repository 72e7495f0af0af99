/* unit_main: how a unit-test program runs its suite: every test in its
 * own fork (Check's default), the failures counted into the exit status
 * that automake's test driver reads. */
#ifndef STUDYHUB_TESTS_UNIT_MAIN_H
#define STUDYHUB_TESTS_UNIT_MAIN_H

#include <check.h>
#include <stdlib.h>

/* Runs s (and frees it); EXIT_SUCCESS when every test passed. */
static inline int unit_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
