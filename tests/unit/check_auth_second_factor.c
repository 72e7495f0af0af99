/* Unit tests of http/auth_second_factor on a real app (unit_app: the pool
 * and Redis on the loop): a TOTP code is accepted once (its step is used
 * up), a wrong one is refused and counted, and past the failures allowed
 * every check is locked (quietly reported as wrong when asked); a
 * recovery code works once; a user without TOTP is told so; an enrolment
 * code is checked against the pending secret and leaves the step
 * unclaimed; and a plaintext secret of an older version is sealed at
 * start, and still works after. */
#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "studyhub/http/auth_password.h"
#include "studyhub/http/auth_second_factor.h"
#include "studyhub/http/totp.h"
#include "unit_app.h"

static const char *const env[] = { "TWO_FACTOR_MAX_FAILURES", "3", NULL };
#define SECRET "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

struct outcome {
    bool done;
    enum auth_sf_result result;
    long retry_after_s;
    int64_t step;
    char secret[128];
};

static void on_checked(const struct auth_sf_outcome *o, void *arg)
{
    struct outcome *out = arg;

    out->done = true;
    out->result = o->result;
    out->retry_after_s = o->retry_after_s;
    out->step = o->step;
    snprintf(out->secret, sizeof out->secret, "%s", o->stored_secret ? o->stored_secret : "");
}

static struct outcome check(struct unit_app *u, const struct unit_user *who,
                            enum auth_sf_kind kind, const char *code, bool quiet)
{
    struct auth_sf_request rq = { who->id, kind, code, quiet };
    struct outcome out = { 0 };

    ck_assert_int_eq(auth_second_factor_check(&u->app, &rq, on_checked, &out), 0);
    while (!out.done)
        ck_assert_int_ge(event_base_loop(u->base, EVLOOP_ONCE), 0);
    return out;
}

/* The code of the current step (offset steps away). */
static const char *code_now(int offset)
{
    static char code[8];
    unsigned char key[TOTP_SECRET_BYTES];

    ck_assert_int_eq(totp_base32_decode(SECRET, key, sizeof key), (int)sizeof key);
    snprintf(code, sizeof code, "%06ld",
             totp_hotp(key, sizeof key, (uint64_t)(totp_step(time(NULL)) + offset), 6));
    return code;
}

static void totp_on(struct unit_app *u, const struct unit_user *who, bool confirmed)
{
    unit_sql(u, "INSERT INTO user_totp (user_id, secret, confirmed_at) VALUES (%lld, '%s', %s)",
             (long long)who->id, SECRET, confirmed ? "now()" : "NULL");
}

START_TEST(totp_once_then_lockout)
{
    struct unit_app *u = unit_app_start(NULL, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    struct outcome o;
    char good[8];

    totp_on(u, ann, true);
    snprintf(good, sizeof good, "%s", code_now(0));
    o = check(u, ann, AUTH_SF_TOTP, good, false);
    ck_assert_int_eq(o.result, AUTH_SF_OK);
    /* Its step is claimed (the step may have turned since). */
    ck_assert_int_ge(unit_sql_int(u, "SELECT last_step FROM user_totp WHERE user_id = %lld",
                                  (long long)ann->id), totp_step(time(NULL)) - 1);
    /* The same code again: used up. */
    ck_assert_int_eq(check(u, ann, AUTH_SF_TOTP, good, false).result, AUTH_SF_BAD);
    ck_assert_int_eq(check(u, ann, AUTH_SF_TOTP, "12345", false).result, AUTH_SF_BAD);
    /* Three failures (the reuse counts): now locked, even for a right code
     * of the next step. */
    ck_assert_int_eq(check(u, ann, AUTH_SF_TOTP, "000000x", false).result, AUTH_SF_BAD);
    o = check(u, ann, AUTH_SF_TOTP, code_now(1), false);
    ck_assert_int_eq(o.result, AUTH_SF_LOCKED);
    ck_assert_int_gt(o.retry_after_s, 0);
    ck_assert_int_eq(check(u, ann, AUTH_SF_TOTP, code_now(1), true).result, AUTH_SF_BAD);
    unit_app_stop(u);
}
END_TEST

START_TEST(recovery_code_once)
{
    struct unit_app *u = unit_app_start(NULL, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    char code[20], hash[65];

    totp_on(u, ann, true);
    auth_recovery_code_generate(code);
    ck_assert(auth_recovery_code_hash(code, hash));
    unit_sql(u, "INSERT INTO user_recovery_codes (user_id, code_hash) VALUES (%lld, '%s')",
             (long long)ann->id, hash);
    ck_assert_int_eq(check(u, ann, AUTH_SF_RECOVERY, code, false).result, AUTH_SF_OK);
    ck_assert_str_eq(unit_sql(u, "SELECT used_at IS NOT NULL FROM user_recovery_codes"
                              " WHERE user_id = %lld", (long long)ann->id), "t");
    ck_assert_int_eq(check(u, ann, AUTH_SF_RECOVERY, code, false).result, AUTH_SF_BAD);
    unit_app_stop(u);
}
END_TEST

START_TEST(not_enabled_and_enrolment)
{
    struct unit_app *u = unit_app_start(NULL, env);
    struct unit_user *none = unit_user(u, "none", 0), *new = unit_user(u, "new", 0);
    struct outcome o;

    ck_assert_int_eq(check(u, none, AUTH_SF_TOTP, code_now(0), false).result,
                     AUTH_SF_NOT_ENABLED);
    ck_assert_int_eq(check(u, none, AUTH_SF_ENROL, code_now(0), false).result,
                     AUTH_SF_NOT_ENABLED);
    totp_on(u, new, false);
    /* Pending: not a login factor yet. */
    ck_assert_int_eq(check(u, new, AUTH_SF_TOTP, code_now(0), false).result,
                     AUTH_SF_NOT_ENABLED);
    o = check(u, new, AUTH_SF_ENROL, code_now(0), false);
    ck_assert_int_eq(o.result, AUTH_SF_OK);
    ck_assert_str_eq(o.secret, SECRET);
    ck_assert_int_ge(o.step, totp_step(time(NULL)) - 1);
    ck_assert_str_eq(unit_sql(u, "SELECT last_step FROM user_totp WHERE user_id = %lld",
                              (long long)new->id), "0");          /* not claimed */
    unit_sql(u, "UPDATE user_totp SET confirmed_at = now() WHERE user_id = %lld",
             (long long)new->id);
    ck_assert_int_eq(check(u, new, AUTH_SF_ENROL, code_now(0), false).result,
                     AUTH_SF_ALREADY_ON);
    unit_app_stop(u);
}
END_TEST

START_TEST(plain_secret_sealed_and_still_works)
{
    struct unit_app *u = unit_app_start(NULL, env);
    struct unit_user *old = unit_user(u, "old", 0);
    char sql[128];

    totp_on(u, old, true);
    auth_seal_plain_secrets(&u->app);
    /* The sealing runs on the loop and tells nobody when it is done: turn
     * the loop (10 ms at most a turn, 10 s in all) until the row changed. */
    snprintf(sql, sizeof sql, "SELECT secret LIKE 'v1:%%' FROM user_totp WHERE user_id = %lld",
             (long long)old->id);
    for (int i = 0; i < 1000 && strcmp(unit_sql(u, "%s", sql), "t") != 0; i++) {
        struct timeval tv = { 0, 10000 };

        event_base_loopexit(u->base, &tv);
        event_base_dispatch(u->base);
    }
    ck_assert_str_eq(unit_sql(u, "%s", sql), "t");
    ck_assert_int_eq(check(u, old, AUTH_SF_TOTP, code_now(0), false).result, AUTH_SF_OK);
    unit_app_stop(u);
}
END_TEST

static Suite *second_factor_suite(void)
{
    Suite *s = suite_create("auth_second_factor");
    TCase *tc = tcase_create("check");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, totp_once_then_lockout);
    tcase_add_test(tc, recovery_code_once);
    tcase_add_test(tc, not_enabled_and_enrolment);
    tcase_add_test(tc, plain_secret_sealed_and_still_works);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_auth_second_factor", second_factor_suite());
}
