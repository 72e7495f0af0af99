/* Unit tests of admin/task_commands through the admin socket (unit_app,
 * with a task runner that is not started): `tasks` lists a queued task
 * and the summary, `task show` its fields, `task cancel` cancels it while
 * queued and then says it has finished; unknown and malformed ids, bad
 * lines, and `task enqueue-test` without DEBUG_ROUTES are ERR. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/admin/task_commands.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "unit_app.h"

static const unit_admin_reg_fn reg[] = { task_commands_register, NULL };

START_TEST(list_show_cancel)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    const char *a;
    char id[24], uuid[37], kind[48], line[128], want[256];

    u->app.tasks = task_runner_new(&u->app);
    ck_assert_ptr_nonnull(u->app.tasks);
    unit_admin_start(u, reg);
    snprintf(kind, sizeof kind, "check_cmds_%d", (int)getpid());
    snprintf(id, sizeof id, "%s", unit_sql(u, TASK_INSERT_SQL "VALUES ('%s', 'subj-1',"
                                           " '{\"n\": 1}') RETURNING id", kind));
    snprintf(uuid, sizeof uuid, "%s", unit_sql(u, "SELECT uuid FROM tasks WHERE id = %s", id));

    a = unit_admin(u, "tasks");
    snprintf(want, sizeof want, "id=%s uuid=%s kind=%s state=queued stage=- subject=subj-1 "
             "attempts=0 ", id, uuid, kind);
    ck_assert_msg(strstr(a, want) != NULL, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, " queued; here: 0 of "));
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");

    snprintf(line, sizeof line, "task show %s", uuid);
    a = unit_admin(u, line);
    ck_assert_msg(strncmp(a, want, strlen(want) - 11) == 0, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, "\npayload: {\"n\": 1}\n"));

    snprintf(line, sizeof line, "task cancel %s", id);
    ck_assert_str_eq(unit_admin(u, line), "cancelled (it was queued)\nOK\n");
    ck_assert_str_eq(unit_sql(u, "SELECT state FROM tasks WHERE id = %s", id), "cancelled");
    ck_assert_str_eq(unit_admin(u, line), "ERR it has already finished\n");
    a = unit_admin(u, "tasks");
    ck_assert_ptr_null(strstr(a, want));
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_lines)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    static const char usage[] = "ERR usage: task show ID | task cancel ID | task enqueue-test ...\n";

    u->app.tasks = task_runner_new(&u->app);
    unit_admin_start(u, reg);
    ck_assert_str_eq(unit_admin(u, "task show 999999999"), "ERR no such task\n");
    ck_assert_str_eq(unit_admin(u, "task cancel 00000000-0000-4000-8000-000000000000"),
                     "ERR no such task\n");
    ck_assert_str_eq(unit_admin(u, "task show x'1"), "ERR ID must be a task id or uuid\n");
    ck_assert_str_eq(unit_admin(u, "task"), usage);
    ck_assert_str_eq(unit_admin(u, "task stop 1"), usage);
    ck_assert_str_eq(unit_admin(u, "tasks some"), "ERR usage: tasks [all]\n");
    ck_assert_str_eq(unit_admin(u, "task enqueue-test 1"),
                     "ERR task enqueue-test is for tests only (DEBUG_ROUTES=1)\n");
    unit_app_stop(u);
}
END_TEST

static Suite *task_commands_suite(void)
{
    Suite *s = suite_create("task_commands");
    TCase *tc = tcase_create("admin");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, list_show_cancel);
    tcase_add_test(tc, bad_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_task_commands", task_commands_suite());
}
