/* Unit tests of admin/seed through the admin socket (unit_app, no static
 * site nor storage: the demo runner is reported not installed): seed-demo
 * makes the demo lab, users, child and an active public study and prints
 * their logins and uuids; the rows are there; run again, it makes nothing
 * twice and leaves passwords alone; --if-empty does nothing in a database
 * with users; a bad argument is ERR. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/admin/seed.h"
#include "unit_app.h"

static const unit_admin_reg_fn reg[] = { seed_register, NULL };

/* The uuid after "prefix" in text (36 characters), into out. */
static void uuid_after(const char *text, const char *prefix, char out[37])
{
    const char *p = strstr(text, prefix);

    ck_assert_msg(p != NULL, "no \"%s\" in %s", prefix, text);
    p += strlen(prefix);
    p += strspn(p, " ");
    snprintf(out, 37, "%.36s", p);
}

START_TEST(seed_then_again)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    const char *a;
    char study[37], child[37], hash[512];

    unit_admin_start(u, reg);
    a = unit_admin(u, "seed-demo");
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");
    ck_assert_ptr_nonnull(strstr(a, "demo runner    not installed"));
    uuid_after(a, "\nstudy", study);
    uuid_after(a, "\nchild", child);
    ck_assert_str_eq(unit_sql(u, "SELECT state || ' ' || public FROM studies WHERE uuid = '%s'",
                              study), "active true");
    ck_assert_str_eq(unit_sql(u, "SELECT given_name FROM children WHERE uuid = '%s'", child),
                     "Sally");
    /* Listening on loopback: a demo site admin is made. */
    ck_assert_ptr_null(strstr(a, "site admin     not made"));
    snprintf(hash, sizeof hash, "%s", unit_sql(u, "SELECT string_agg(password_hash, ','"
                                              " ORDER BY u.id) FROM users u JOIN children c"
                                              " ON c.user_id = u.id WHERE c.uuid = '%s'", child));

    /* Again: the same study and child, nothing doubled, passwords kept. */
    a = unit_admin(u, "seed-demo");
    ck_assert_str_eq(a + strlen(a) - 3, "OK\n");
    ck_assert_ptr_nonnull(strstr(a, "(existing account: password unchanged)"));
    {
        char again[37];

        uuid_after(a, "\nstudy", again);
        ck_assert_str_eq(again, study);
    }
    ck_assert_str_eq(unit_sql(u, "SELECT string_agg(password_hash, ',' ORDER BY u.id) FROM users u"
                              " JOIN children c ON c.user_id = u.id WHERE c.uuid = '%s'", child),
                     hash);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM children c JOIN children d"
                              " ON d.user_id = c.user_id AND d.given_name = 'Sally'"
                              " WHERE c.uuid = '%s'", child), "1");

    /* --if-empty: there are users. */
    ck_assert_str_eq(unit_admin(u, "seed-demo --if-empty"),
                     "demo seed skipped: the database already has users"
                     " (`studyhubctl seed-demo` adds what is missing)\nOK\n");
    ck_assert_str_eq(unit_admin(u, "seed-demo --now"), "ERR usage: seed-demo [--if-empty]\n");
    unit_app_stop(u);
}
END_TEST

static Suite *seed_suite(void)
{
    Suite *s = suite_create("seed");
    TCase *tc = tcase_create("admin");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, seed_then_again);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_seed", seed_suite());
}
