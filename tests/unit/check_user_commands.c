/* Unit tests of admin/user_commands through the admin socket (unit_app):
 * `token create EMAIL` prints a key that authenticates as that user
 * (two-factor verified); `user search` finds an account; `user grant`,
 * `revoke`, `deactivate` change it as the admin pages would (logged in
 * user_admin_log) and print it; unknown users, roles and verbs are ERR. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/admin/user_commands.h"
#include "studyhub/domain/accounts.h"
#include "unit_app.h"

static const unit_admin_reg_fn reg[] = { user_commands_register, NULL };
static const unit_routes_fn routes[] = { accounts_routes, NULL };

START_TEST(token_create)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), by_key;
    const char *a;
    const struct unit_reply *r;
    char line[192], key[41];

    unit_admin_start(u, reg);
    snprintf(line, sizeof line, "token create %s", ann->email);
    a = unit_admin(u, line);
    ck_assert_int_eq((int)strcspn(a, "\n"), 40);
    ck_assert_str_eq(a + 40, "\nOK\n");
    snprintf(key, sizeof key, "%.40s", a);
    by_key = *ann;
    snprintf(by_key.token, sizeof by_key.token, "Token %s", key);
    r = unit_req(u, &by_key, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "data.attributes.two_factor_verified"), "true");

    ck_assert_str_eq(unit_admin(u, "token create nobody@example.test"),
                     "ERR no user with that email\n");
    ck_assert_str_eq(unit_admin(u, "token delete x"), "ERR usage: token create EMAIL\n");
    unit_app_stop(u);
}
END_TEST

START_TEST(user_changes)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const char *a;
    char line[192], want[256];

    unit_admin_start(u, reg);
    snprintf(line, sizeof line, "user search %s", ann->email);
    a = unit_admin(u, line);
    snprintf(want, sizeof want, "%s id=%s active=yes researcher=no site_admin=no", ann->email,
             ann->uuid);
    ck_assert_msg(strncmp(a, want, strlen(want)) == 0, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, "\n1 account\nOK\n"));

    snprintf(line, sizeof line, "user grant researcher %s", ann->uuid);
    a = unit_admin(u, line);
    ck_assert_ptr_nonnull(strstr(a, " researcher=yes "));
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");
    ck_assert_str_eq(unit_sql(u, "SELECT is_researcher FROM users WHERE id = %lld",
                              (long long)ann->id), "t");
    ck_assert_int_ge(unit_sql_int(u, "SELECT count(*) FROM user_admin_log WHERE user_id = %lld",
                                  (long long)ann->id), 1);

    snprintf(line, sizeof line, "user deactivate %s", ann->email);
    a = unit_admin(u, line);
    ck_assert_ptr_nonnull(strstr(a, " active=no "));
    ck_assert_str_eq(unit_sql(u, "SELECT is_active FROM users WHERE id = %lld",
                              (long long)ann->id), "f");
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_lines)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const char *a;
    char line[192];

    unit_admin_start(u, reg);
    snprintf(line, sizeof line, "user grant wizard %s", ann->email);
    a = unit_admin(u, line);
    ck_assert_msg(strncmp(a, "ERR usage: user search", 22) == 0, "%s", a);
    a = unit_admin(u, "user promote x");
    ck_assert_msg(strncmp(a, "ERR usage: user search", 22) == 0, "%s", a);
    a = unit_admin(u, "user grant researcher nobody@example.test");
    ck_assert_msg(strncmp(a, "ERR ", 4) == 0, "%s", a);
    ck_assert_str_eq(unit_sql(u, "SELECT is_researcher FROM users WHERE id = %lld",
                              (long long)ann->id), "f");
    unit_app_stop(u);
}
END_TEST

static Suite *user_commands_suite(void)
{
    Suite *s = suite_create("user_commands");
    TCase *tc = tcase_create("admin");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, token_create);
    tcase_add_test(tc, user_changes);
    tcase_add_test(tc, bad_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_user_commands", user_commands_suite());
}
