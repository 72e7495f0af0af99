/* test_sleep: the task kind the tests drive (payload {"seconds", "stages",
 * "mode", "fail_stage", "resume"}: see src/tasks/test_sleep.c) and the
 * scheduled job (sleeps TEST_SLEEP_JOB_MS, then succeeds); both listed in
 * tasks/background.c with DEBUG_ROUTES=1 only. */
#ifndef STUDYHUB_TASKS_TEST_SLEEP_H
#define STUDYHUB_TASKS_TEST_SLEEP_H

struct sched_job;
struct task_kind;

#define TEST_SLEEP_JOB_MS 2000

extern const struct task_kind test_sleep_kind;
extern const struct sched_job test_sleep_job;

#endif
