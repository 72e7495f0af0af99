/* Unit tests of background, the one table of task kinds and scheduled
 * jobs: every line is a kind or a job, the job names are the ones job_runs
 * and SCHED_JOBS know, each machine's names table is whole, each default
 * time parses, and registering adds them all to a scheduler and a runner
 * (the tests' own only with DEBUG_ROUTES=1), in the table's order.  No
 * database: registering queries nothing. */
#include "config.h"

#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/reap.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/schedule.h"
#include "studyhub/queue/task.h"
#include "studyhub/tasks/background.h"
#include "studyhub/tasks/build.h"
#include "studyhub/tasks/test_sleep.h"
#include "unit_loop.h"
#include "unit_main.h"

/* The jobs and their times as they were before the table (`studyhubctl
 * jobs` lists them in this order). */
static const struct { const char *name, *at; } want_jobs[] = {
    { "cleanup_job_runs", "04:30" },
    { "test_sleep", "off" },
    { "cleanup_tasks", "04:45" },
    { "cleanup_account_tokens", "04:30" },
    { "abort_stale_uploads", "05:00" },
    { "reconcile_videos", "05:30" },
    { "purge_video_storage", "05:15" },
    { "cleanup_runners", "02:30" },
    { "cleanup_builds", "02:00" },
    { "cleanup_docker_images", "03:00" },
    { "cleanup_checkouts", "04:00" },
    { "announce_new_studies", "10:00" },
};
#define NWANT (int)(sizeof want_jobs / sizeof want_jobs[0])

static const char *want_kinds[] = {
    "build_zipfile_of_videos", "reconcile_videos", "build_experiment", "erase_storage",
    "test_sleep",
};
#define NKINDS (int)(sizeof want_kinds / sizeof want_kinds[0])

START_TEST(every_line_is_whole)
{
    int jobs = 0, kinds = 0;

    for (int i = 0; i < background_count; i++) {
        const struct background *b = &background_table[i];
        const char *const *names = b->kind ? b->kind->states : b->job ? b->job->states : NULL;
        int n = b->kind ? b->kind->nstates : b->job ? b->job->nstates : 0;

        ck_assert_msg((b->kind != NULL) != (b->job != NULL), "line %d: a kind or a job", i);
        ck_assert_ptr_nonnull(names);
        ck_assert_int_ge(n, 1);
        for (int s = 0; s < n; s++)
            ck_assert_msg(names[s] && *names[s], "line %d: state %d has no name", i, s);
        if (b->kind) {
            ck_assert_str_eq(b->kind->name, want_kinds[kinds]);
            ck_assert_ptr_null(b->at);
            ck_assert_ptr_nonnull(b->kind->step);
            kinds++;
            continue;
        }
        struct sched_spec spec;
        ck_assert_int_lt(jobs, NWANT);
        ck_assert_str_eq(b->job->name, want_jobs[jobs].name);
        ck_assert_str_eq(b->at, want_jobs[jobs].at);
        ck_assert_int_eq(sched_parse_at(b->at, &spec), 0);
        ck_assert_ptr_nonnull(b->job->step);
        ck_assert(b->job->initial_state >= 0 && b->job->initial_state < n);
        /* A job that opens data closes it. */
        ck_assert(!b->job->open == !b->job->close);
        jobs++;
    }
    ck_assert_int_eq(jobs, NWANT);
    ck_assert_int_eq(kinds, NKINDS);
}
END_TEST

static struct event_base *base;
static struct config cfg;
static struct app app;
static const char *debug = "0";

static const char *fake_getenv(const char *name, void *arg)
{
    if (strcmp(name, "DEBUG_ROUTES") == 0)
        return debug;
    return NULL;
}

static void up(const char *debug_routes)
{
    char err[256] = "";

    debug = debug_routes;
    ck_assert_msg(config_load(&cfg, fake_getenv, NULL, err, sizeof err) == 0, "%s", err);
    base = event_base_new();
    app.base = base;
    app.cfg = &cfg;
    app.tasks = task_runner_new(&app);
    app.sched = sched_new(&app, err, sizeof err);
    ck_assert_ptr_nonnull(app.tasks);
    ck_assert_msg(app.sched != NULL, "%s", err);
}

static void down(void)
{
    sched_free(app.sched);
    task_runner_free(app.tasks);
    reap_flush(base);
    unit_loop_free(base);
    config_cleanup(&cfg);
    memset(&app, 0, sizeof app);
}

START_TEST(registers_all_in_order_tests_only_when_debug)
{
    struct sched_job_view v;

    up("0");
    ck_assert_int_eq(background_register(&app), 0);
    ck_assert_int_eq(sched_job_count(app.sched), NWANT - 1);
    for (int i = 0, w = 0; i < sched_job_count(app.sched); i++, w++) {
        if (strcmp(want_jobs[w].name, "test_sleep") == 0)
            w++;
        sched_job_view(app.sched, i, &v);
        ck_assert_str_eq(v.name, want_jobs[w].name);
        ck_assert_str_eq(v.at, want_jobs[w].at);
    }
    /* The kinds are the runner's now: a second registration is refused;
     * the tests' kind was left out. */
    ck_assert_int_eq(task_register(app.tasks, &build_kind), -1);
    ck_assert_int_eq(task_register(app.tasks, &test_sleep_kind), 0);
    /* The whole table twice: refused. */
    ck_assert_int_eq(background_register(&app), -1);
    down();

    up("1");
    ck_assert_int_eq(background_register(&app), 0);
    ck_assert_int_eq(sched_job_count(app.sched), NWANT);
    sched_job_view(app.sched, 1, &v);
    ck_assert_str_eq(v.name, "test_sleep");
    ck_assert_str_eq(v.at, "off");
    ck_assert_int_eq(task_register(app.tasks, &test_sleep_kind), -1);
    down();
}
END_TEST

START_TEST(without_a_scheduler_only_kinds)
{
    char err[256] = "";

    debug = "0";
    ck_assert_msg(config_load(&cfg, fake_getenv, NULL, err, sizeof err) == 0, "%s", err);
    base = event_base_new();
    app.base = base;
    app.cfg = &cfg;
    app.tasks = task_runner_new(&app);
    ck_assert_int_eq(background_register(&app), 0);
    ck_assert_int_eq(task_register(app.tasks, &build_kind), -1);
    down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("background");
    TCase *tc = tcase_create("table");

    tcase_add_test(tc, every_line_is_whole);
    tcase_add_test(tc, registers_all_in_order_tests_only_when_debug);
    tcase_add_test(tc, without_a_scheduler_only_kinds);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
