/* Unit tests of proc: the bounded tail, text cleaning, and real children on
 * a real loop (exit codes, output tails, timeouts that kill the whole
 * group, proc_kill, proc_abandon, spawn errors, the child's descriptors). */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "studyhub/io/proc.h"
#include "unit_loop.h"
#include "unit_main.h"

/* ---- the tail -------------------------------------------------------- */

static char *tail_str(const struct proc_tail *t)
{
    char *s = calloc(1, t->len + 1);
    proc_tail_copy(t, s);
    return s;
}

START_TEST(tail_keeps_last_bytes)
{
    struct proc_tail t;
    char *s;

    ck_assert_int_eq(proc_tail_init(&t, 8), 0);
    proc_tail_append(&t, "abc", 3);
    s = tail_str(&t);
    ck_assert_str_eq(s, "abc");
    free(s);
    proc_tail_append(&t, "defgh", 5);          /* exactly full */
    s = tail_str(&t);
    ck_assert_str_eq(s, "abcdefgh");
    free(s);
    proc_tail_append(&t, "ij", 2);             /* wraps */
    s = tail_str(&t);
    ck_assert_str_eq(s, "cdefghij");
    free(s);
    proc_tail_append(&t, "0123456789XYZ", 13); /* longer than cap */
    s = tail_str(&t);
    ck_assert_str_eq(s, "56789XYZ");
    free(s);
    proc_tail_append(&t, "k", 1);
    s = tail_str(&t);
    ck_assert_str_eq(s, "6789XYZk");
    free(s);
    ck_assert_uint_eq(t.total, 3 + 5 + 2 + 13 + 1);
    ck_assert_uint_eq(t.len, 8);
    proc_tail_cleanup(&t);
}
END_TEST

/* Byte-by-byte against a reference: every split point and wrap. */
START_TEST(tail_matches_reference)
{
    char all[5000];
    struct proc_tail t;
    size_t n = 0;

    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (char)('a' + (i * 7) % 26);
    ck_assert_int_eq(proc_tail_init(&t, 97), 0);
    for (size_t step = 1; n < sizeof all; step = step % 131 + 1) {
        size_t k = n + step > sizeof all ? sizeof all - n : step;
        char *s;
        size_t keep;

        proc_tail_append(&t, all + n, k);
        n += k;
        keep = n < 97 ? n : 97;
        ck_assert_uint_eq(t.len, keep);
        s = tail_str(&t);
        ck_assert(memcmp(s, all + n - keep, keep) == 0);
        free(s);
    }
    proc_tail_cleanup(&t);
}
END_TEST

START_TEST(clean_text)
{
    char a[] = "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end";
    char b[] = "bad \xff\xfe x \xc3 y \xe2\x82 z";
    char c[] = "split\x80\x80 overlong \xc0\xaf surrogate \xed\xa0\x80";
    char d[] = { 'n', 0, 'u', 'l' };
    struct proc_tail t;
    char *s;
    size_t len;

    ck_assert_uint_eq(proc_clean_text(a, strlen(a)), strlen(a));
    ck_assert_str_eq(a, "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end");
    proc_clean_text(b, strlen(b));
    ck_assert_str_eq(b, "bad ?? x ? y ?? z");
    proc_clean_text(c, strlen(c));
    ck_assert_str_eq(c, "split?? overlong ?? surrogate ???");
    proc_clean_text(d, sizeof d);
    ck_assert(memcmp(d, "n?ul", 4) == 0);
    /* A tail that starts inside a character. */
    ck_assert_int_eq(proc_tail_init(&t, 4), 0);
    proc_tail_append(&t, "x\xe2\x82\xac" "ab", 6);
    s = proc_tail_text(&t, &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_str_eq(s, "??ab");
    free(s);
    proc_tail_cleanup(&t);
}
END_TEST

/* ---- children on a loop ------------------------------------------------- */

struct outcome {
    int calls;
    int exit_code, term_signal;
    bool timed_out, killed;
    char out[4096], err[4096];
    size_t out_len, out_total, err_total;
    struct event_base *base;
};

static void on_exit_cb(const struct proc_result *r, void *arg)
{
    struct outcome *o = arg;

    o->calls++;
    o->exit_code = r->exit_code;
    o->term_signal = r->term_signal;
    o->timed_out = r->timed_out;
    o->killed = r->killed;
    snprintf(o->out, sizeof o->out, "%s", r->out);
    snprintf(o->err, sizeof o->err, "%s", r->err);
    ck_assert_uint_eq(strlen(r->out), r->out_len);
    o->out_len = r->out_len;
    o->out_total = r->out_total;
    o->err_total = r->err_total;
    event_base_loopbreak(o->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Runs the loop until a callback breaks it or `seconds` pass. */
static void run_loop(struct event_base *base, int seconds)
{
    struct event *deadline = evtimer_new(base, on_deadline, base);
    struct timeval tv = { seconds, 0 };

    evtimer_add(deadline, &tv);
    event_base_dispatch(base);
    event_free(deadline);
}

static struct outcome *run_child(const char *const *argv, long timeout_ms,
                                 long grace_ms, size_t tail, int loop_s)
{
    static struct outcome o;
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    struct proc_opts opts = { .argv = argv, .timeout_ms = timeout_ms,
                              .grace_ms = grace_ms, .tail_bytes = tail };
    char err[256] = "";

    memset(&o, 0, sizeof o);
    o.base = base;
    ck_assert_ptr_nonnull(pt);
    ck_assert_msg(proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err) != NULL,
                  "spawn: %s", err);
    run_loop(base, loop_s);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_uint_eq(proc_table_count(pt), 0);
    proc_table_free(pt);
    unit_loop_free(base);
    return &o;
}

START_TEST(exit_code_and_output)
{
    const char *argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
    struct outcome *o = run_child(argv, 0, 0, 0, 10);

    ck_assert_int_eq(o->exit_code, 3);
    ck_assert_int_eq(o->term_signal, 0);
    ck_assert(!o->timed_out && !o->killed);
    ck_assert_str_eq(o->out, "out\n");
    ck_assert_str_eq(o->err, "err\n");
}
END_TEST

/* Resource limits are set before exec, soft and hard; a root parent can
 * run the child as another user with no supplementary groups. */
START_TEST(limits_and_user)
{
    const char *argv[] = { "sh", "-c", "ulimit -f; ulimit -H -f; id -u; id -G", NULL };
    static const struct proc_rlimit lim[] = { { RLIMIT_FSIZE, 8192 }, { -1, 0 } };
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    struct proc_opts opts = { .argv = argv, .rlimits = lim };
    static struct outcome o;
    char err[256] = "", want[64];

    memset(&o, 0, sizeof o);
    o.base = base;
    if (geteuid() == 0) {
        opts.set_ids = true;
        opts.uid = opts.gid = 65534;
    }
    ck_assert_msg(proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err) != NULL, "%s", err);
    run_loop(base, 10);
    ck_assert_int_eq(o.exit_code, 0);
    /* ulimit -f counts 512-byte blocks. */
    if (geteuid() == 0)
        snprintf(want, sizeof want, "16\n16\n65534\n65534\n");
    else
        snprintf(want, sizeof want, "16\n16\n%u\n", (unsigned)getuid());
    ck_assert_msg(strncmp(o.out, want, strlen(want)) == 0, "%s", o.out);
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

START_TEST(output_is_bounded)
{
    const char *argv[] = { "sh", "-c",
                           "head -c 3000000 /dev/zero | tr '\\000' a; echo END", NULL };
    struct outcome *o = run_child(argv, 0, 0, 1000, 20);

    ck_assert_int_eq(o->exit_code, 0);
    ck_assert_uint_eq(o->out_len, 1000);
    ck_assert_uint_eq(o->out_total, 3000004);
    ck_assert_str_eq(o->out + 996, "END\n");
}
END_TEST

static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    FILE *f;
    char *p;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return true;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    /* A zombie waiting for its (re)parent counts as gone. */
    p = p ? strrchr(buf, ')') : NULL;
    return p && p[1] == ' ' && p[2] == 'Z';
}

START_TEST(timeout_kills_the_group)
{
    const char *argv[] = { "sh", "-c", "sleep 100 & echo $!; sleep 100", NULL };
    struct outcome *o = run_child(argv, 300, 500, 0, 10);
    pid_t bg = (pid_t)atoi(o->out);

    ck_assert(o->timed_out);
    ck_assert_int_eq(o->term_signal, SIGTERM);
    ck_assert_int_gt(bg, 1);
    for (int i = 0; i < 100 && !pid_gone(bg); i++)
        usleep(20000);
    ck_assert_msg(pid_gone(bg), "background child %d survived", (int)bg);
}
END_TEST

START_TEST(sigkill_after_grace)
{
    const char *argv[] = { "sh", "-c", "trap '' TERM; echo ready; sleep 100; sleep 100", NULL };
    struct outcome *o = run_child(argv, 200, 300, 0, 10);

    ck_assert(o->timed_out);
    ck_assert_int_eq(o->term_signal, SIGKILL);
    ck_assert_str_eq(o->out, "ready\n");
}
END_TEST

struct kill_ctx {
    struct proc *p;
};

static void on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    proc_kill(((struct kill_ctx *)arg)->p);
}

START_TEST(kill_on_request)
{
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    const char *argv[] = { "sleep", "100", NULL };
    struct proc_opts opts = { .argv = argv };
    struct outcome o = { .base = base };
    struct kill_ctx kc;
    struct event *t = evtimer_new(base, on_kill_timer, &kc);
    struct timeval tv = { 0, 100000 };
    char err[256];

    kc.p = proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err);
    ck_assert_ptr_nonnull(kc.p);
    evtimer_add(t, &tv);
    run_loop(base, 10);
    ck_assert_int_eq(o.calls, 1);
    ck_assert(o.killed);
    ck_assert(!o.timed_out);
    ck_assert_int_eq(o.term_signal, SIGTERM);
    event_free(t);
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

START_TEST(abandon_never_calls_back)
{
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    const char *argv[] = { "sleep", "100", NULL };
    struct proc_opts opts = { .argv = argv };
    struct outcome o = { .base = base };
    struct proc *p;
    char err[256];
    pid_t pid;

    p = proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err);
    ck_assert_ptr_nonnull(p);
    pid = proc_pid(p);
    proc_abandon(p);
    for (int i = 0; i < 50 && proc_table_count(pt) > 0; i++) {
        usleep(20000);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    ck_assert_uint_eq(proc_table_count(pt), 0);
    ck_assert_int_eq(o.calls, 0);
    ck_assert(pid_gone(pid));
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

START_TEST(spawn_errors)
{
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    const char *argv[] = { "/no/such/program", NULL };
    const char *argv2[] = { "true", NULL };
    struct proc_opts opts = { .argv = argv };
    struct outcome o = { .base = base };
    char err[256] = "";

    ck_assert_ptr_null(proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err));
    ck_assert_msg(strstr(err, "cannot run /no/such/program") != NULL, "%s", err);
    opts.argv = argv2;
    opts.cwd = "/no/such/folder";
    ck_assert_ptr_null(proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err));
    ck_assert_msg(strstr(err, "cannot enter /no/such/folder") != NULL, "%s", err);
    ck_assert_uint_eq(proc_table_count(pt), 0);
    ck_assert_int_eq(o.calls, 0);
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

START_TEST(env_cwd_stdin_and_fds)
{
    /* A descriptor the server has open without close-on-exec. */
    int leak = dup2(0, 57);
    const char *argv[] = { "sh", "-c",
                           "echo \"$FOO\"; pwd; cat; ls /proc/self/fd | tr '\\n' ' '", NULL };
    const char *envp[] = { "FOO=bar baz", "PATH=/usr/bin:/bin", NULL };
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    struct proc_opts opts = { .argv = argv, .envp = envp, .cwd = "/tmp" };
    struct outcome o = { .base = base };
    char err[256];

    ck_assert_int_eq(leak, 57);
    ck_assert_ptr_nonnull(proc_spawn(pt, &opts, on_exit_cb, &o, err, sizeof err));
    run_loop(base, 10);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_int_eq(o.exit_code, 0);
    ck_assert_msg(strncmp(o.out, "bar baz\n/tmp\n", 13) == 0, "%s", o.out);
    /* cat read /dev/null: nothing between pwd and ls; ls sees 0 1 2 and
     * its own directory descriptor, never 57. */
    ck_assert_msg(strstr(o.out + 13, "57") == NULL, "fd leaked: %s", o.out);
    ck_assert_msg(strncmp(o.out + 13, "0 1 2 ", 6) == 0, "%s", o.out);
    close(leak);
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

/* Many children at once, each reaped and reported once. */
struct many {
    int calls;                  /* callbacks for this child */
    int *left;                  /* children not yet reported */
    struct event_base *base;    /* to stop the loop at the end */
};

static void on_many(const struct proc_result *r, void *arg)
{
    struct many *m = arg;

    m->calls++;
    ck_assert_int_eq(r->exit_code, 7);
    if (--*m->left == 0)
        event_base_loopbreak(m->base);
}

START_TEST(many_children)
{
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    const char *argv[] = { "sh", "-c", "exit 7", NULL };
    struct proc_opts opts = { .argv = argv };
    struct many m[40];
    int left = 40;
    char err[256];

    for (int i = 0; i < 40; i++) {
        m[i] = (struct many){ .left = &left, .base = base };
        ck_assert_ptr_nonnull(proc_spawn(pt, &opts, on_many, &m[i], err, sizeof err));
    }
    run_loop(base, 20);
    ck_assert_int_eq(left, 0);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(m[i].calls, 1);
    proc_table_free(pt);
    unit_loop_free(base);
}
END_TEST

/* ---- /proc/<pid>/stat -------------------------------------------------- */

START_TEST(stat_of_self_zombie_and_nobody)
{
    char state = 0;
    int pgrp = 0;
    pid_t kid;

    ck_assert_int_eq(proc_stat_read(getpid(), &state, &pgrp), 0);
    ck_assert_int_eq(state, 'R');                 /* reading it, so running */
    ck_assert_int_eq(pgrp, getpgrp());
    ck_assert_int_eq(proc_stat_read(getpid(), NULL, NULL), 0);

    /* A child that exited and was not waited for is a zombie. */
    kid = fork();
    ck_assert_int_ge(kid, 0);
    if (kid == 0)
        _exit(0);
    for (int i = 0; i < 500; i++) {             /* up to 5 s on a loaded machine */
        ck_assert_int_eq(proc_stat_read(kid, &state, NULL), 0);
        if (state == 'Z')
            break;
        usleep(10000);
    }
    ck_assert_int_eq(state, 'Z');
    ck_assert_int_eq(waitpid(kid, NULL, 0), kid);

    /* Above any pid_max: no such process. */
    errno = 0;
    ck_assert_int_eq(proc_stat_read(2147483646, &state, &pgrp), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("proc");
    TCase *tail = tcase_create("tail");
    TCase *kids = tcase_create("children");

    tcase_add_test(tail, tail_keeps_last_bytes);
    tcase_add_test(tail, tail_matches_reference);
    tcase_add_test(tail, clean_text);
    tcase_add_test(tail, stat_of_self_zombie_and_nobody);
    tcase_add_test(kids, exit_code_and_output);
    tcase_add_test(kids, output_is_bounded);
    tcase_add_test(kids, limits_and_user);
    tcase_add_test(kids, timeout_kills_the_group);
    tcase_add_test(kids, sigkill_after_grace);
    tcase_add_test(kids, kill_on_request);
    tcase_add_test(kids, abandon_never_calls_back);
    tcase_add_test(kids, spawn_errors);
    tcase_add_test(kids, env_cwd_stdin_and_fds);
    tcase_add_test(kids, many_children);
    tcase_set_timeout(kids, 60);
    suite_add_tcase(s, tail);
    suite_add_tcase(s, kids);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
