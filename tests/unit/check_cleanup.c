/* Unit tests of cleanup, the builder's nightly sweeps, through the
 * scheduler against a real database, with the builder set up on a
 * temporary BUILD_ROOT: build folders older than a day go unless a queued
 * or running build uses them, young ones stay; checkout entries likewise;
 * an empty folder has nothing to do; without the builder a sweep fails;
 * the docker prune runs DOCKER_BIN (a stand-in script) only for
 * BUILD_RUNNER=docker, and fails with it. */
#include "config.h"

#include <sys/stat.h>
#include <sys/time.h>

#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/build.h"
#include "studyhub/tasks/cleanup.h"
#include "unit_sched.h"

static char root[256], docker[300], runner[16] = "local";

static const char *env(const char *name)
{
    static char port[16];

    if (strcmp(name, "BUILD_ROOT") == 0)
        return root;
    if (strcmp(name, "BUILD_SANDBOX") == 0)
        return "none";
    if (strcmp(name, "BUILD_RUNNER") == 0)
        return runner;
    if (strcmp(name, "DOCKER_BIN") == 0)
        return docker;
    if (strcmp(name, "REDIS_PORT") == 0 && getenv("TEST_REDIS_PORT"))
        return snprintf(port, sizeof port, "%s", getenv("TEST_REDIS_PORT")), port;
    if (strcmp(name, "REDIS_PASSWORD") == 0)
        return getenv("TEST_REDIS_PASSWORD");
    return NULL;
}

/* The builder on a fresh BUILD_ROOT, the three jobs added and started. */
static void up(const char *build_runner, bool builder)
{
    snprintf(runner, sizeof runner, "%s", build_runner);
    snprintf(root, sizeof root, "/tmp/check_cleanup.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(docker, sizeof docker, "%s/docker", root);
    us.env = env;
    us_up(false);
    us_add(&cleanup_builds_job);
    us_add(&cleanup_docker_images_job);
    us_add(&cleanup_checkouts_job);
    us_start();
    if (builder)
        ck_assert_int_eq(build_start(&us.app), 0);
}

static void down(void)
{
    char cmd[300];

    build_stop();
    us_down();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ck_assert_int_eq(system(cmd), 0);
}

/* dir/name (a folder with a file in it, or a file), last changed
 * age_s ago. */
static void entry(const char *dir, const char *name, bool folder, long age_s)
{
    char path[600], inner[700];
    struct timeval tv[2];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (folder) {
        ck_assert_int_eq(mkdir(path, 0755), 0);
        snprintf(inner, sizeof inner, "%s/log.txt", path);
    } else {
        snprintf(inner, sizeof inner, "%s", path);
    }
    ck_assert_ptr_nonnull(f = fopen(inner, "w"));
    fputs("x", f);
    fclose(f);
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= age_s;
    tv[1] = tv[0];
    ck_assert_int_eq(utimes(path, tv), 0);
}

static bool exists(const char *dir, const char *name)
{
    char path[600];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

#define OLD (2 * 24 * 3600)

START_TEST(old_build_folders_go_unless_in_use)
{
    char inuse[37], line[200];
    struct us_ran r;

    up("local", true);
    us_q("DELETE FROM tasks WHERE kind = 'build_experiment'");
    snprintf(inuse, sizeof inuse, "%s", us_q(
        TASK_INSERT_SQL "VALUES ('build_experiment', 'check-cleanup', '{}') RETURNING uuid"));
    entry(build_builds_dir(), "00000000-0000-4000-8000-000000000001", true, OLD);
    entry(build_builds_dir(), "00000000-0000-4000-8000-000000000002", true, 60);
    entry(build_builds_dir(), inuse, true, OLD);

    r = us_run("cleanup_builds");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    us_assert_line(r, "removed 1 build folders older than a day (1 in use kept)");
    snprintf(line, sizeof line, "  | keeping %s: in use\n", inuse);
    ck_assert_msg(strstr(r.text, line), "%s", r.text);
    us_assert_line(r, "removing 00000000-0000-4000-8000-000000000001");
    ck_assert(!exists(build_builds_dir(), "00000000-0000-4000-8000-000000000001"));
    ck_assert(exists(build_builds_dir(), "00000000-0000-4000-8000-000000000002"));
    ck_assert(exists(build_builds_dir(), inuse));
    us_q("DELETE FROM tasks WHERE kind = 'build_experiment'");
    down();
}
END_TEST

START_TEST(old_checkout_entries_go_and_an_empty_folder_has_nothing)
{
    char line[400];
    struct us_ran r;

    up("local", true);
    us_q("DELETE FROM tasks WHERE kind = 'build_experiment'");
    r = us_run("cleanup_checkouts");
    snprintf(line, sizeof line, "  | no checkout entries older than a day in %s\n",
             build_checkouts_dir());
    ck_assert_msg(strstr(r.text, line), "%s", r.text);

    entry(build_checkouts_dir(), "abc123", true, OLD);
    entry(build_checkouts_dir(), "abc123.zip", false, OLD);
    entry(build_checkouts_dir(), ".dl-abc123-1", false, OLD);
    entry(build_checkouts_dir(), "def456", true, 60);
    r = us_run("cleanup_checkouts");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    us_assert_line(r, "removed 3 checkout entries older than a day (0 in use kept)");
    ck_assert(!exists(build_checkouts_dir(), "abc123"));
    ck_assert(!exists(build_checkouts_dir(), "abc123.zip"));
    ck_assert(!exists(build_checkouts_dir(), ".dl-abc123-1"));
    ck_assert(exists(build_checkouts_dir(), "def456"));
    down();
}
END_TEST

START_TEST(without_the_builder_a_sweep_fails)
{
    struct us_ran r;

    up("local", false);
    r = us_run("cleanup_builds");
    ck_assert_str_eq(r.error, "the job failed");
    us_assert_line(r, "the builder is not set up");
    ck_assert_str_eq(us_q("SELECT outcome || ':' || detail FROM job_runs"
                          " WHERE job = 'cleanup_builds' ORDER BY id DESC LIMIT 1"),
                     "failed:the builder is not set up");
    down();
}
END_TEST

static void script(const char *body)
{
    FILE *f = fopen(docker, "w");

    ck_assert_ptr_nonnull(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    ck_assert_int_eq(chmod(docker, 0755), 0);
}

START_TEST(docker_prune_only_for_docker)
{
    struct us_ran r;

    up("local", false);
    r = us_run("cleanup_docker_images");
    ck_assert_msg(!r.failed, "%s", r.error);
    us_assert_line(r, "nothing to do: BUILD_RUNNER is local, not docker");
    down();

    up("docker", false);
    script("echo \"args: $*\"; echo 'Total reclaimed space: 0B'");
    r = us_run("cleanup_docker_images");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    ck_assert_msg(strstr(r.text, "  | args: image prune -f --filter until=24h\n"), "%s", r.text);
    ck_assert_msg(strstr(r.text, "  | docker image prune: exit 0 after "), "%s", r.text);

    script("echo 'no daemon' >&2; exit 3");
    r = us_run("cleanup_docker_images");
    ck_assert_str_eq(r.error, "the job failed");
    us_assert_line(r, "docker image prune: exit 3");
    ck_assert_msg(strstr(r.text, "  | stderr: no daemon"), "%s", r.text);
    down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cleanup");
    TCase *tc = tcase_create("sweeps");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, old_build_folders_go_unless_in_use);
    tcase_add_test(tc, old_checkout_entries_go_and_an_empty_folder_has_nothing);
    tcase_add_test(tc, without_the_builder_a_sweep_fails);
    tcase_add_test(tc, docker_prune_only_for_docker);
    suite_add_tcase(s, tc);
    return us_main("check_cleanup", s);
}
