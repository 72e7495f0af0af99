/* Unit tests of announce, the job announce_new_studies, through the
 * scheduler against a real database: a family that asked for new studies
 * hears, in one email, of the active public studies its child fits (no
 * expression, or one the child meets), not of one it does not meet nor of
 * one whose expression cannot be read; once told, never again.  And
 * announce_start saves NOTIFY_WINDOW_S where the outbox trigger reads it. */
#include "config.h"

#include "studyhub/tasks/announce.h"
#include "unit_sched.h"

static char tag[40], email[80];

/* Four active public studies for children of 10 to 12 years (names
 * TAG-a..d: no expression, met, not met, unreadable) and a family of one
 * girl of 11 who asked for new studies.  The studies and families of
 * earlier cases are retired first: the job looks at the whole database. */
static void world(void)
{
    snprintf(tag, sizeof tag, "ann%d-%lld", (int)getpid(), (long long)util_mono_ms());
    snprintf(email, sizeof email, "%s@example.test", tag);
    us_q("UPDATE studies SET public = false WHERE name LIKE 'ann%%'");
    us_q("UPDATE users SET email_new_studies = false WHERE email LIKE 'ann%%@example.test'");
    us_q("WITH l AS (INSERT INTO labs (name, approved_to_test) VALUES ('%s', true) RETURNING id)"
         " INSERT INTO studies (name, lab_id, state, public, structure, min_age_years,"
         "                      max_age_years, criteria_expression, short_description)"
         " SELECT '%s-' || n, l.id, 'active', true, '{}', 10, 12, e, 'About ' || n"
         "   FROM l, (VALUES ('a', ''), ('b', 'gender = f'), ('c', 'gender = m'),"
         "                   ('d', 'gender ~~ banana')) v(n, e)", tag, tag);
    us_q("WITH u AS (INSERT INTO users (email, given_name, email_new_studies)"
         "           VALUES ('%s', 'Parent', true) RETURNING id)"
         " INSERT INTO children (user_id, given_name, birthday, gender)"
         " SELECT id, 'Sally', current_date - 11 * 365, 'f' FROM u", email);
}

START_TEST(a_family_hears_of_the_studies_its_child_fits_once)
{
    struct us_ran r;
    char want[128];

    us_up(false);
    us_add(&announce_new_studies_job);
    us_start();
    world();

    r = us_run("announce_new_studies");
    ck_assert_msg(!r.failed, "%s: %s", r.error, r.text);
    us_assert_line(r, "announced 2 studies to 1 families (1 emails)");
    ck_assert_str_eq(us_q("SELECT string_agg(s.name, ',' ORDER BY s.name)"
                          " FROM study_announcements a JOIN studies s ON s.id = a.study_id"
                          " JOIN users u ON u.id = a.user_id WHERE u.email = '%s'", email),
                     (snprintf(want, sizeof want, "%s-a,%s-b", tag, tag), want));
    ck_assert_str_eq(us_q("SELECT count(*) || ':' || min(subject) FROM mail_outbox"
                          " WHERE to_addr = '%s'", email),
                     "1:2 new studies your children can take part in");
    ck_assert_str_eq(us_q("SELECT body_text LIKE '%%%s-a%%' AND body_text LIKE '%%%s-b%%'"
                          " AND body_text NOT LIKE '%%%s-c%%' AND body_text NOT LIKE '%%%s-d%%'"
                          " FROM mail_outbox WHERE to_addr = '%s'", tag, tag, tag, tag, email),
                     "t");

    /* Told once: the next run has nothing for them. */
    r = us_run("announce_new_studies");
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_str_eq(us_q("SELECT count(*) FROM mail_outbox WHERE to_addr = '%s'", email), "1");
    ck_assert_str_eq(us_q("SELECT count(*) FROM study_announcements a JOIN users u"
                          " ON u.id = a.user_id WHERE u.email = '%s'", email), "2");
    us_down();
}
END_TEST

START_TEST(a_family_that_did_not_ask_hears_nothing)
{
    struct us_ran r;

    us_up(false);
    us_add(&announce_new_studies_job);
    us_start();
    world();
    us_q("UPDATE users SET email_new_studies = false WHERE email = '%s'", email);
    r = us_run("announce_new_studies");
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_str_eq(us_q("SELECT count(*) FROM mail_outbox WHERE to_addr = '%s'", email), "0");
    us_down();
}
END_TEST

static const char *window_env(const char *name)
{
    return strcmp(name, "NOTIFY_WINDOW_S") == 0 ? "321" : NULL;
}

START_TEST(start_saves_the_notify_window)
{
    us.env = window_env;
    us_up(false);
    us_q("DELETE FROM app_settings WHERE key = 'notify_window_s'");
    ck_assert_int_eq(announce_start(&us.app), 0);
    us_wait("321", "SELECT value #>> '{}' FROM app_settings WHERE key = 'notify_window_s'");
    us_down();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("announce");
    TCase *tc = tcase_create("job");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_family_hears_of_the_studies_its_child_fits_once);
    tcase_add_test(tc, a_family_that_did_not_ask_hears_nothing);
    tcase_add_test(tc, start_saves_the_notify_window);
    suite_add_tcase(s, tc);
    return us_main("check_announce", s);
}
