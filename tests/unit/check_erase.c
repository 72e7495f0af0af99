/* Unit tests of admin/erase through the admin socket (unit_app): `erase
 * child UUID` and `erase account EMAIL|UUID` erase as the family could
 * and print the erasure and its report; an unknown one, a second time, a
 * bad line are refused with ERR and erase nothing. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/admin/erase.h"
#include "unit_app.h"

static const unit_admin_reg_fn reg[] = { erase_admin_register, NULL };

START_TEST(erase_child_then_account)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const char *a;
    char child[37], line[160];
    int64_t kept = unit_child(u, ann, "Kept", 300, NULL);

    unit_child(u, ann, "Gone", 400, child);
    unit_admin_start(u, reg);
    snprintf(line, sizeof line, "erase child %s", child);
    a = unit_admin(u, line);
    ck_assert_msg(strncmp(a, "erasure ", 8) == 0, "%s", a);
    ck_assert_msg(strlen(a) > 4 && strcmp(a + strlen(a) - 3, "OK\n") == 0, "%s", a);
    ck_assert_ptr_nonnull(strstr(a, "\"scope\""));
    /* Gone (no study kept a response of it). */
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM children WHERE uuid = '%s'"
                              " AND erased_at IS NULL", child), "0");
    ck_assert_str_eq(unit_sql(u, "SELECT erased_at IS NULL FROM children WHERE id = %lld",
                              (long long)kept), "t");
    /* Once only. */
    ck_assert_str_eq(unit_admin(u, line), "ERR no such child or account\n");

    /* The account, by its email in another case. */
    for (char *p = ann->email; *p; p++)
        if (*p >= 'a' && *p <= 'z' && p < strchr(ann->email, '@'))
            *p = (char)(*p - 'a' + 'A');
    snprintf(line, sizeof line, "erase account %s", ann->email);
    a = unit_admin(u, line);
    ck_assert_msg(strncmp(a, "erasure ", 8) == 0, "%s", a);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM users WHERE id = %lld"
                              " AND erased_at IS NULL", (long long)ann->id), "0");
    ck_assert_str_eq(unit_admin(u, line), "ERR no such child or account\n");
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_lines)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0);
    char line[96];
    static const char usage[] =
        "ERR usage: erase child CHILD_UUID | erase account EMAIL|USER_UUID\n";

    unit_admin_start(u, reg);
    ck_assert_str_eq(unit_admin(u, "erase"), usage);
    ck_assert_str_eq(unit_admin(u, "erase pet 1"), usage);
    snprintf(line, sizeof line, "erase child %s extra", ann->uuid);
    ck_assert_str_eq(unit_admin(u, line), usage);
    ck_assert_str_eq(unit_admin(u, "erase child not-a-uuid"), "ERR no such child or account\n");
    /* A user's uuid is no child's. */
    snprintf(line, sizeof line, "erase child %s", ann->uuid);
    ck_assert_str_eq(unit_admin(u, line), "ERR no such child or account\n");
    ck_assert_str_eq(unit_sql(u, "SELECT erased_at IS NULL FROM users WHERE id = %lld",
                              (long long)ann->id), "t");
    unit_app_stop(u);
}
END_TEST

static Suite *erase_suite(void)
{
    Suite *s = suite_create("erase");
    TCase *tc = tcase_create("admin");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, erase_child_then_account);
    tcase_add_test(tc, bad_lines);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_erase", erase_suite());
}
