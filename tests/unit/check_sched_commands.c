/* Unit tests of admin/sched_commands through the admin socket (unit_app,
 * with a started scheduler holding one job of the test's): `jobs` lists
 * it with its time and zone; `run JOB` runs it now and reports its
 * outcome (a success with its detail; a failure as ERR), recorded in
 * job_runs; an unknown job, a bad line, no scheduler at all are ERR. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/admin/sched_commands.h"
#include "studyhub/queue/sched.h"
#include "unit_app.h"

static const unit_admin_reg_fn reg[] = { sched_commands_register, NULL };
static int runs;

static void good_step(struct sched_run *run)
{
    runs++;
    sched_done(run, SCHED_SUCCEEDED, "tidied %d things", 3);
}

static void bad_step(struct sched_run *run)
{
    runs++;
    sched_done(run, SCHED_FAILED, "the shelf fell");
}

/* One state each; the names are filled in per process by start. */
static const char *const one_state[] = { "run" };
static char good_name[48], bad_name[48];
static const struct sched_job good_job = {
    .name = good_name, .states = one_state, .nstates = 1, .step = good_step,
};
static const struct sched_job bad_job = {
    .name = bad_name, .states = one_state, .nstates = 1, .step = bad_step,
};

/* A scheduler with this process's two jobs (names unique: the lock and
 * the history are shared with every program of the build). */
static struct unit_app *start(char good[48], char bad[48])
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    char err[256] = "";

    snprintf(good_name, sizeof good_name, "check_good_%d", (int)getpid());
    snprintf(bad_name, sizeof bad_name, "check_bad_%d", (int)getpid());
    snprintf(good, 48, "%s", good_name);
    snprintf(bad, 48, "%s", bad_name);
    u->app.sched = sched_new(&u->app, err, sizeof err);
    ck_assert_msg(u->app.sched != NULL, "%s", err);
    ck_assert_int_eq(sched_add(u->app.sched, &good_job, "03:10"), 0);
    ck_assert_int_eq(sched_add(u->app.sched, &bad_job, "03:20"), 0);
    ck_assert_int_eq(sched_start(u->app.sched), 0);
    unit_admin_start(u, reg);
    runs = 0;
    return u;
}

START_TEST(jobs_and_run)
{
    char good[48], bad[48], line[96], want[128];
    struct unit_app *u = start(good, bad);
    const char *a;

    a = unit_admin(u, "jobs");
    snprintf(want, sizeof want, "job=%s at=03:10 zone=", good);
    ck_assert_msg(strstr(a, want) != NULL, "%s", a);
    snprintf(want, sizeof want, "job=%s at=03:20 zone=", bad);
    ck_assert_msg(strstr(a, want) != NULL, "%s", a);
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");

    snprintf(line, sizeof line, "run %s", good);
    a = unit_admin(u, line);
    snprintf(want, sizeof want, "job %s: succeeded in ", good);
    ck_assert_msg(strncmp(a, want, strlen(want)) == 0, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, "tidied 3 things"));
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");
    ck_assert_int_eq(runs, 1);
    ck_assert_str_eq(unit_sql(u, "SELECT outcome || ' ' || reason FROM job_runs WHERE job = '%s'"
                              " ORDER BY id DESC LIMIT 1", good), "succeeded manual");

    snprintf(line, sizeof line, "run %s", bad);
    a = unit_admin(u, line);
    snprintf(want, sizeof want, "job %s: failed in ", bad);
    ck_assert_msg(strncmp(a, want, strlen(want)) == 0, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, "\n  | the shelf fell\n"));
    ck_assert_str_eq(a + strlen(a) - 20, "\nERR the job failed\n");
    ck_assert_int_eq(runs, 2);
    ck_assert_str_eq(unit_sql(u, "SELECT outcome FROM job_runs WHERE job = '%s'"
                              " ORDER BY id DESC LIMIT 1", bad), "failed");

    /* The run history shows in `jobs`. */
    a = unit_admin(u, "jobs");
    ck_assert_ptr_nonnull(strstr(a, "reason=manual outcome=succeeded"));
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_lines)
{
    char good[48], bad[48];
    struct unit_app *u = start(good, bad);

    ck_assert_str_eq(unit_admin(u, "run"), "ERR usage: run JOB\n");
    ck_assert_str_eq(unit_admin(u, "run a b"), "ERR usage: run JOB\n");
    ck_assert_msg(strncmp(unit_admin(u, "run no_such_job_here"), "ERR ", 4) == 0, "%s",
                  u->admin_answer);
    ck_assert_int_eq(runs, 0);
    unit_app_stop(u);

    /* A server without a scheduler. */
    u = unit_app_start(NULL, NULL);
    unit_admin_start(u, reg);
    ck_assert_str_eq(unit_admin(u, "jobs"), "ERR no scheduler\n");
    ck_assert_str_eq(unit_admin(u, "run x"), "ERR no such job (see `jobs`)\n");
    unit_app_stop(u);
}
END_TEST

static Suite *sched_commands_suite(void)
{
    Suite *s = suite_create("sched_commands");
    TCase *tc = tcase_create("admin");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, jobs_and_run);
    tcase_add_test(tc, bad_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_sched_commands", sched_commands_suite());
}
