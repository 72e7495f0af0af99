/* Unit tests of sandbox: the exact bubblewrap command line for given
 * settings, and the refusals of a bad spec. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/tasks/sandbox.h"
#include "unit_main.h"

/* Debian 12's layout: /bin, /sbin, /lib, /lib32, /lib64 are links into
 * /usr, /libx32 is absent. */
static void debian_host(struct sandbox_host *h)
{
    memset(h, 0, sizeof *h);
    const char *links[] = { "usr/bin", "usr/sbin", "usr/lib", "usr/lib32", "usr/lib64" };
    for (int i = 0; i < 5; i++) {
        h->kind[i] = SANDBOX_TOP_LINK;
        snprintf(h->link[i], sizeof h->link[i], "%s", links[i]);
    }
}

static const char *const env[] = { "PATH=/usr/bin:/bin", "HOME=/tmp/home",
                                   "STUDY_OUTPUT_DIR=/output", "EMPTY=", NULL };
static const char *const cmd[] = { "bash", "-c", "exec bash build.sh", NULL };

static char *joined(char **argv)
{
    size_t len = 1;
    char *s;

    for (char **p = argv; *p; p++)
        len += strlen(*p) + 1;
    s = calloc(1, len);
    for (char **p = argv; *p; p++) {
        if (p != argv)
            strcat(s, " ");
        strcat(s, *p);
    }
    return s;
}

START_TEST(exact_command_line_without_network)
{
    struct sandbox_host h;
    char err[256] = "";
    debian_host(&h);
    struct sandbox_spec s = { .bwrap = "bwrap", .host = &h, .checkout = "/b/checkouts/abc",
                              .scratch = "/b/builds/t/scratch", .output = "/b/builds/t/out",
                              .network = false, .tmp_mb = 16, .ro_paths = " /opt/node , ",
                              .env = env, .command = cmd };
    char **argv = sandbox_argv(&s, err, sizeof err);
    ck_assert_msg(argv != NULL, "%s", err);
    char *line = joined(argv);
    ck_assert_str_eq(line,
        "bwrap --unshare-user --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try"
        " --unshare-net --uid 65534 --gid 65534 --hostname studyhub-build --disable-userns"
        " --die-with-parent --new-session --cap-drop ALL"
        " --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin"
        " --symlink usr/lib /lib --symlink usr/lib32 /lib32 --symlink usr/lib64 /lib64"
        " --ro-bind-try /etc/alternatives /etc/alternatives --ro-bind-try /etc/ssl /etc/ssl"
        " --ro-bind-try /etc/ca-certificates /etc/ca-certificates"
        " --ro-bind-try /etc/ld.so.cache /etc/ld.so.cache"
        " --ro-bind-try /etc/localtime /etc/localtime"
        " --ro-bind /opt/node /opt/node"
        " --proc /proc --dev /dev --size 16777216 --tmpfs /tmp --dir /tmp/home"
        " --ro-bind /b/checkouts/abc /checkout --bind /b/builds/t/scratch /build"
        " --bind /b/builds/t/out /output --remount-ro / --chdir /build --clearenv"
        " --setenv PATH /usr/bin:/bin --setenv HOME /tmp/home"
        " --setenv STUDY_OUTPUT_DIR /output --setenv EMPTY "
        " -- bash -c exec bash build.sh");
    free(line);
    sandbox_argv_free(argv);
}
END_TEST

START_TEST(network_keeps_the_namespace_and_adds_resolution)
{
    struct sandbox_host h;
    char err[256] = "";
    memset(&h, 0, sizeof h);
    h.kind[0] = SANDBOX_TOP_DIR;    /* a /bin of its own: bound read-only */
    struct sandbox_spec s = { .bwrap = "/usr/bin/bwrap", .host = &h, .checkout = "/c",
                              .scratch = "/s", .output = "/o", .network = true, .tmp_mb = 1,
                              .env = NULL, .command = cmd };
    char **argv = sandbox_argv(&s, err, sizeof err);
    ck_assert_msg(argv != NULL, "%s", err);
    char *line = joined(argv);
    ck_assert_ptr_null(strstr(line, "--unshare-net"));
    ck_assert_ptr_nonnull(strstr(line, " --ro-bind /bin /bin "));
    ck_assert_ptr_nonnull(strstr(line, " --ro-bind-try /etc/resolv.conf /etc/resolv.conf "));
    ck_assert_ptr_nonnull(strstr(line, " --ro-bind-try /etc/hosts /etc/hosts "));
    ck_assert_ptr_null(strstr(line, "/lib64"));
    ck_assert_ptr_null(strstr(line, "--setenv"));
    ck_assert_str_eq(argv[0], "/usr/bin/bwrap");
    free(line);
    sandbox_argv_free(argv);
}
END_TEST

START_TEST(never_the_whole_etc_or_host)
{
    struct sandbox_host h;
    char err[256] = "";
    debian_host(&h);
    struct sandbox_spec s = { .bwrap = "bwrap", .host = &h, .checkout = "/c", .scratch = "/s",
                              .output = "/o", .tmp_mb = 1, .env = env, .command = cmd };
    char **argv = sandbox_argv(&s, err, sizeof err);
    ck_assert_ptr_nonnull(argv);
    for (char **p = argv; *p; p++) {
        /* No bind of the host's root, /etc or /proc: only named parts. */
        if (strcmp(*p, "--bind") == 0 || strcmp(*p, "--ro-bind") == 0 ||
            strcmp(*p, "--ro-bind-try") == 0 || strcmp(*p, "--dev-bind") == 0) {
            ck_assert_str_ne(p[1], "/");
            ck_assert_str_ne(p[1], "/etc");
            ck_assert_str_ne(p[1], "/proc");
            ck_assert_str_ne(p[1], "/run");
        }
        ck_assert_ptr_null(strstr(*p, "shadow"));
    }
    sandbox_argv_free(argv);
}
END_TEST

START_TEST(bad_specs_are_refused)
{
    struct sandbox_host h;
    char err[256] = "";
    const char *const bad_env[] = { "NOEQUALS", NULL };
    debian_host(&h);
    struct sandbox_spec s = { .bwrap = "bwrap", .host = &h, .checkout = "/c", .scratch = "/s",
                              .output = "/o", .tmp_mb = 1, .env = env, .command = cmd };
    const char *bad_paths[] = { "relative/dir", "/", "/opt/../etc", "/opt/..", "/a\nb" };
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        s.ro_paths = bad_paths[i];
        err[0] = '\0';
        ck_assert_ptr_null(sandbox_argv(&s, err, sizeof err));
        ck_assert_msg(strstr(err, "BUILD_RO_PATHS") != NULL, "%s: %s", bad_paths[i], err);
    }
    s.ro_paths = "/opt/a..b";   /* dots inside a name are fine */
    char **argv = sandbox_argv(&s, err, sizeof err);
    ck_assert_ptr_nonnull(argv);
    sandbox_argv_free(argv);
    s.ro_paths = NULL;
    s.env = bad_env;
    ck_assert_ptr_null(sandbox_argv(&s, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "NOEQUALS"));
    s.env = env;
    s.command = NULL;
    ck_assert_ptr_null(sandbox_argv(&s, err, sizeof err));
}
END_TEST

START_TEST(host_probe_sees_this_machine)
{
    struct sandbox_host h;
    sandbox_host_probe(&h);
    /* Every machine has a /bin, as a folder or a link. */
    ck_assert(h.kind[0] == SANDBOX_TOP_DIR || h.kind[0] == SANDBOX_TOP_LINK);
    if (h.kind[0] == SANDBOX_TOP_LINK)
        ck_assert(strlen(h.link[0]) > 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sandbox");
    TCase *tc = tcase_create("sandbox");
    tcase_add_test(tc, exact_command_line_without_network);
    tcase_add_test(tc, network_keeps_the_namespace_and_adds_resolution);
    tcase_add_test(tc, never_the_whole_etc_or_host);
    tcase_add_test(tc, bad_specs_are_refused);
    tcase_add_test(tc, host_probe_sees_this_machine);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
