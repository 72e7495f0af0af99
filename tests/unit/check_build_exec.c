/* Unit tests of build_exec: the exact `docker run` of a build (hardening
 * flags, limits, mounts) and the environment every build gets, which holds
 * section 4's variables and BUILD_ENV and nothing of the server's. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/tasks/build_internal.h"
#include "unit_main.h"

static struct config cfg;
static struct app app;
static struct builder bld;
static char *extra[] = { "NODE_OPTIONS=--max-old-space-size=2048", NULL };

static void setup(void)
{
    memset(&cfg, 0, sizeof cfg);
    cfg.docker_bin = "docker";
    cfg.builder_image = "studyhub/builder:1";
    cfg.build_runner = "docker";
    cfg.build_sandbox = "bwrap";
    cfg.build_uid = 64000;
    cfg.build_max_procs = 512;
    cfg.build_memory_mb = 4096;
    cfg.build_max_output_mb = 2048;
    app.cfg = &cfg;
    bld.app = &app;
    bld.extra_env = extra;
    the_builder = &bld;
}

static struct build build_for_test(void)
{
    struct build b = { 0 };

    strcpy(b.study_uuid, "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e");
    strcpy(b.sha, "0123456789abcdef0123456789abcdef01234567");
    strcpy(b.cache_key, "5f0c0123456789abcdef0123456789abcdef0123456789abcdef012345678901");
    b.repo_url = "https://github.com/lookit/ember-lookit-frameplayer";
    b.checkout = "/var/builds/checkouts/0123";
    b.out = "/var/builds/builds/t1/out";
    b.deploy = true;
    strcpy(b.container, "studyhub-build-t1");
    return b;
}

static long find(const struct strv *s, const char *want)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], want) == 0)
            return (long)i;
    return -1;
}

START_TEST(docker_run_is_hardened)
{
    struct build b = build_for_test();
    struct strv argv = { 0 };

    setup();
    ck_assert_int_eq(docker_run_args(&b, &argv), 0);
    ck_assert_str_eq(argv.v[0], "docker");
    ck_assert_str_eq(argv.v[1], "run");
    ck_assert_int_ge(find(&argv, "--rm"), 0);
    ck_assert_int_ge(find(&argv, "--read-only"), 0);
    long i = find(&argv, "--cap-drop");
    ck_assert_str_eq(argv.v[i + 1], "ALL");
    i = find(&argv, "--security-opt");
    ck_assert_str_eq(argv.v[i + 1], "no-new-privileges");
    i = find(&argv, "--pids-limit");
    ck_assert_str_eq(argv.v[i + 1], "512");
    i = find(&argv, "--memory");
    ck_assert_str_eq(argv.v[i + 1], "4096m");
    i = find(&argv, "--network");
    ck_assert_str_eq(argv.v[i + 1], "none");        /* BUILD_NETWORK=0 */
    ck_assert_int_ge(find(&argv, "/var/builds/checkouts/0123:/checkouts:ro"), 0);
    ck_assert_int_ge(find(&argv, "/var/builds/builds/t1/out:/deployments"), 0);
    /* Nothing of the study: the runner is shared by every study (issue 19). */
    ck_assert_int_ge(find(&argv, "PREPEND_FINGERPRINT=/runners/5f0c0123456789abcdef0123456789abcdef0123456789abcdef012345678901/"), 0);
    for (size_t k = 0; k < argv.n; k++)
        ck_assert_ptr_null(strstr(argv.v[k], "d3b5c0de"));
    ck_assert_int_ge(find(&argv, "NODE_OPTIONS=--max-old-space-size=2048"), 0);
    ck_assert_str_eq(argv.v[argv.n - 4], "studyhub/builder:1");
    strv_free(&argv);

    cfg.build_network = true;
    ck_assert_int_eq(docker_run_args(&b, &argv), 0);
    ck_assert_int_lt(find(&argv, "--network"), 0);
    strv_free(&argv);
}
END_TEST

START_TEST(environment_is_only_section_4)
{
    struct build b = build_for_test();
    struct strv env = { 0 };

    setup();
    setenv("DATABASE_URL", "postgresql://secret@127.0.0.1/x", 1);
    b.deploy = false;
    ck_assert_int_eq(build_env(&b, &env, "/checkouts", "/deployments"), 0);
    const char *want[] = {
        "CHECKOUT_DIR=/checkouts",
        "PREPEND_FINGERPRINT=/runners/5f0c0123456789abcdef0123456789abcdef0123456789abcdef012345678901/",
        "STUDY_OUTPUT_DIR=/deployments",
        "RUNNER_SHA=0123456789abcdef0123456789abcdef01234567",
        "RUNNER_REPO_URL=https://github.com/lookit/ember-lookit-frameplayer",
        "NODE_OPTIONS=--max-old-space-size=2048",
    };
    ck_assert_uint_eq(env.n, sizeof want / sizeof *want);
    for (size_t i = 0; i < env.n; i++)
        ck_assert_str_eq(env.v[i], want[i]);
    ck_assert_ptr_null(env.v[env.n]);
    strv_free(&env);
    ck_assert_str_eq(bl_child_name(CH_RUN), "the build");
    ck_assert_str_eq(bl_child_name(99), "?");
}
END_TEST

START_TEST(which_runner)
{
    setup();
    ck_assert(runner_is_docker());
    ck_assert(!runner_is_sandboxed());
    cfg.build_runner = "local";
    ck_assert(!runner_is_docker());
    ck_assert(runner_is_sandboxed());
    cfg.build_sandbox = "none";
    ck_assert(!runner_is_sandboxed());
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("build_exec");
    TCase *tc = tcase_create("exec");

    tcase_add_test(tc, docker_run_is_hardened);
    tcase_add_test(tc, environment_is_only_section_4);
    tcase_add_test(tc, which_runner);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
