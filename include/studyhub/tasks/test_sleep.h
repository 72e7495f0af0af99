/* test_sleep: the task kind the tests drive (payload {"seconds", "stages",
 * "mode", "fail_stage", "resume"}: see src/tasks/test_sleep.c). */
#ifndef STUDYHUB_TASKS_TEST_SLEEP_H
#define STUDYHUB_TASKS_TEST_SLEEP_H

struct app;

/* Registers the kind with app->tasks when DEBUG_ROUTES=1 (0 otherwise).
 * 0 or -1. */
int test_sleep_register(struct app *app);

#endif
