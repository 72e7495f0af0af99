/* Unit tests of admin (the admin socket's line protocol) on a real loop:
 * a client in this process connects to the socket, sends a line and
 * reads the answer to the end.  What they hold the module to: the
 * answer's last line is OK or ERR <why>; bad lines (empty, too long, too
 * many words, an unknown command) are refused; a command may answer
 * later, after its client or the whole server went away; a stale socket
 * file is replaced but nothing else is; the socket is 0600; and each test
 * ends with nothing left on the loop. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "studyhub/admin/admin.h"
#include "unit_main.h"

static struct event_base *base;
static char dir[64];
static char path[96];
static struct admin_server *srv;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_admin.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/admin.sock", dir);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    srv = NULL;
}

static void teardown(void)
{
    admin_server_free(srv);
    /* Nothing may be left alive when a test ends. */
    ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
    unlink(path);
    rmdir(dir);
}

/* ---- a client in this process ------------------------------------------- */

struct client {
    int fd;
    struct event *ev;
    char got[16384];
    size_t len;
    bool eof;
};

static void client_read(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    ssize_t n;

    (void)what;
    n = read(fd, c->got + c->len, sizeof c->got - 1 - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        c->got[c->len] = '\0';
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    c->eof = true;
    event_del(c->ev);
}

static void on_deadline(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    *(int *)arg = 1;
}

static void run_until(const bool *flag)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { 10, 0 };

    evtimer_add(t, &tv);
    while (!*flag && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    ck_assert_msg(*flag, "timed out waiting");
}

/* Connects and sends text (as is: the caller writes the newline), then
 * closes its writing side when half_close. */
static struct client *client_send(const char *text, size_t len, bool half_close)
{
    struct client *c = calloc(1, sizeof *c);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    ck_assert_ptr_nonnull(c);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sun, sizeof sun), 0);
    if (len)
        ck_assert_int_eq(write(c->fd, text, len), (ssize_t)len);
    if (half_close)
        shutdown(c->fd, SHUT_WR);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->ev = event_new(base, c->fd, EV_READ | EV_PERSIST, client_read, c);
    event_add(c->ev, NULL);
    return c;
}

static void client_free(struct client *c)
{
    event_free(c->ev);
    close(c->fd);
    free(c);
}

/* The whole answer to one line. */
static char *ask(const char *line)
{
    struct client *c = client_send(line, strlen(line), true);
    char *answer;

    run_until(&c->eof);
    answer = strdup(c->got);
    client_free(c);
    return answer;
}

static void expect(const char *line, const char *answer)
{
    char *got = ask(line);

    ck_assert_str_eq(got, answer);
    free(got);
}

/* ---- commands ------------------------------------------------------------ */

static void cmd_echo(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    (void)app;
    for (int i = 1; i < argc; i++)
        admin_printf(c, "%s%s", argv[i], i + 1 < argc ? "|" : "");
    admin_finish(c, NULL);
}

static void cmd_fail(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    (void)argc; (void)argv; (void)app;
    admin_printf(c, "partial output\n");
    admin_finish(c, "it went wrong\non two lines");
}

/* A command that answers later, when the test says. */
static struct admin_conn *held;
static char held_arg[32];

static void cmd_later(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    (void)app;
    held = c;
    snprintf(held_arg, sizeof held_arg, "%s", argc > 1 ? argv[1] : "");
}

static void start_server(void)
{
    srv = admin_server_new(base, path, NULL);
    ck_assert_ptr_nonnull(srv);
    admin_register(srv, "echo", "say the words back", cmd_echo);
    admin_register(srv, "fail", "fail on purpose", cmd_fail);
    admin_register(srv, "later", "answer when the test says", cmd_later);
}

START_TEST(answers_end_in_ok_or_err)
{
    start_server();
    expect("echo a b  c\n", "a|b|c\nOK\n");
    expect("echo x\r\n", "x\nOK\n");                 /* CRLF is a line end too */
    expect("echo last", "last\nOK\n");               /* the last line needs no newline */
    /* An error is one line, whatever the message held. */
    expect("fail\n", "partial output\nERR it went wrong on two lines\n");
    expect("nope\n", "ERR unknown command: nope\n");
    expect("\n", "ERR empty command\n");
    expect("   \n", "ERR empty command\n");
    /* Built in: help lists every command, status says the version. */
    {
        char *h = ask("help\n");
        ck_assert_ptr_nonnull(strstr(h, "echo"));
        ck_assert_ptr_nonnull(strstr(h, "say the words back"));
        ck_assert_ptr_nonnull(strstr(h, "status"));
        ck_assert_str_eq(h + strlen(h) - 3, "OK\n");
        free(h);
        h = ask("status\n");
        ck_assert_ptr_nonnull(strstr(h, "version: "));
        ck_assert_str_eq(h + strlen(h) - 3, "OK\n");
        free(h);
    }
}
END_TEST

START_TEST(bad_lines_are_refused)
{
    char *line = malloc(5000 + 2);
    char words[200] = "echo";

    start_server();
    memset(line, 'x', 5000);
    strcpy(line + 5000, "\n");
    expect(line, "ERR line too long\n");
    /* Too long even before its newline arrives: refused without waiting. */
    {
        struct client *c = client_send(line, 5000, false);
        run_until(&c->eof);
        ck_assert_str_eq(c->got, "ERR line too long\n");
        client_free(c);
    }
    free(line);
    for (int i = 0; i < 64; i++)
        strcat(words, " w");
    strcat(words, "\n");
    expect(words, "ERR too many arguments\n");
    /* A client that closes without a word gets nothing, and is let go. */
    {
        struct client *c = client_send("", 0, true);
        run_until(&c->eof);
        ck_assert_uint_eq(c->len, 0);
        client_free(c);
    }
}
END_TEST

START_TEST(a_command_may_answer_later)
{
    struct client *c;

    start_server();
    held = NULL;
    c = client_send("later one\n", 10, true);
    while (!held)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_str_eq(held_arg, "one");
    /* Meanwhile the server answers others. */
    expect("echo meanwhile\n", "meanwhile\nOK\n");
    ck_assert(!c->eof);
    admin_printf(held, "done at last\n");
    admin_finish(held, NULL);
    run_until(&c->eof);
    ck_assert_str_eq(c->got, "done at last\nOK\n");
    client_free(c);
}
END_TEST

START_TEST(the_client_or_the_server_may_go_first)
{
    struct client *c;

    start_server();
    /* The client goes away while its command runs: the answer is
     * dropped, the command's conn stays valid until it finishes. */
    held = NULL;
    c = client_send("later gone\n", 11, true);
    while (!held)
        event_base_loop(base, EVLOOP_ONCE);
    client_free(c);
    for (int i = 0; i < 5; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    admin_printf(held, "nobody reads this\n");
    admin_finish(held, NULL);

    /* The whole server goes away while a command runs. */
    held = NULL;
    c = client_send("later stopping\n", 15, true);
    while (!held)
        event_base_loop(base, EVLOOP_ONCE);
    admin_server_free(srv);
    srv = NULL;
    ck_assert_int_ne(access(path, F_OK), 0);       /* its socket file went too */
    run_until(&c->eof);                             /* the client was let go */
    ck_assert_uint_eq(c->len, 0);
    client_free(c);
    admin_printf(held, "too late\n");
    admin_finish(held, "too late");                 /* frees it; nothing to write to */
}
END_TEST

START_TEST(socket_file_rules)
{
    struct stat st;
    int fd;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    /* A stale socket (its server gone) is replaced. */
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    close(fd);
    start_server();
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    expect("echo up\n", "up\nOK\n");

    /* A second server on a live socket is refused; the first keeps it. */
    ck_assert_ptr_null(admin_server_new(base, path, NULL));
    expect("echo still\n", "still\nOK\n");
    admin_server_free(srv);
    srv = NULL;

    /* Anything that is not a socket is left alone. */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_ptr_null(admin_server_new(base, path, NULL));
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    unlink(path);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("line protocol");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, answers_end_in_ok_or_err);
    tcase_add_test(tc, bad_lines_are_refused);
    tcase_add_test(tc, a_command_may_answer_later);
    tcase_add_test(tc, the_client_or_the_server_may_go_first);
    tcase_add_test(tc, socket_file_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* As the server does (src/studyhub.c): a client gone is EPIPE, not death. */
    signal(SIGPIPE, SIG_IGN);
    return unit_run(admin_suite());
}
