/* Unit tests of domain/accounts through the HTTP stack (unit_app): sign-up
 * and the emailed verification link; a password reset through its link;
 * the caller's account; API tokens (a session makes them, a token may not;
 * listed, used, deleted; someone else's is a 404); TOTP enrolment, its
 * confirmation with a real code and turning it off with a recovery code;
 * and the researcher gate's answer. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "studyhub/domain/accounts.h"
#include "studyhub/http/totp.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { accounts_routes, NULL };
/* Sign-ups and emails from 127.0.0.1 are many here: no 429 for them. */
static const char *const env[] = { "MAIL_RATE_ADDR_MAX", "1000000", NULL };

/* The 64-hex link token of the newest email to addr. */
static const char *mailed_token(struct unit_app *u, const char *addr)
{
    return unit_sql(u, "SELECT substring(body_text from '[0-9a-f]{64}') FROM mail_outbox"
                    " WHERE to_addr = '%s' ORDER BY id DESC LIMIT 1", addr);
}

START_TEST(signup_then_verify)
{
    struct unit_app *u = unit_app_start(routes, env);
    const struct unit_reply *r;
    char email[96], body[512], token[65];

    snprintf(email, sizeof email, "new-%d-%ld@example.test", (int)getpid(), (long)time(NULL));
    snprintf(body, sizeof body, "{\"email\": \"%s\", \"password\": \"correct horse battery\","
             " \"given_name\": \"Nia\"}", email);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/signup/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.attributes.email"), email);
    ck_assert_str_eq(unit_json(r, "data.attributes.email_verified"), "false");
    ck_assert_str_eq(unit_json(r, "data.attributes.given_name"), "Nia");
    ck_assert_str_eq(unit_sql(u, "SELECT email_verified_at IS NOT NULL FROM users WHERE email = '%s'", email),
                     "f");
    snprintf(token, sizeof token, "%s", mailed_token(u, email));
    ck_assert_int_eq((int)strlen(token), 64);

    snprintf(body, sizeof body, "{\"token\": \"%s\"}", token);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/verify/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.email_verified"), "true");
    ck_assert_str_eq(unit_sql(u, "SELECT email_verified_at IS NOT NULL FROM users WHERE email = '%s'", email),
                     "t");
    /* A link works once. */
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/verify/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/token");
    unit_app_stop(u);
}
END_TEST

START_TEST(signup_refusals)
{
    struct unit_app *u = unit_app_start(routes, env);
    const struct unit_reply *r;

    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/signup/",
                   "Content-Type: application/json",
                   "{\"email\": \"not-an-address\", \"password\": \"correct horse battery\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/email");
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/signup/",
                   "Content-Type: application/json",
                   "{\"email\": \"weak@example.test\", \"password\": \"short\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/password");
    /* A form post (what a cross-site page can send) is refused. */
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/signup/",
                   "Content-Type: application/x-www-form-urlencoded", "email=a&password=b");
    ck_assert_int_eq(r->status, 415);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/signup/",
                   "Content-Type: application/json", "{\"email\": ");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM users WHERE email = 'weak@example.test'"),
                     "0");
    unit_app_stop(u);
}
END_TEST

START_TEST(password_reset_by_link)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char body[512], token[65];

    snprintf(body, sizeof body, "{\"email\": \"%s\"}", ann->email);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/password-reset/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 202);
    /* The same answer for an address nobody has. */
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/password-reset/",
                   "Content-Type: application/json", "{\"email\": \"nobody@example.test\"}");
    ck_assert_int_eq(r->status, 202);
    snprintf(token, sizeof token, "%s", mailed_token(u, ann->email));
    ck_assert_int_eq((int)strlen(token), 64);

    snprintf(body, sizeof body, "{\"token\": \"%s\", \"password\": \"short\"}", token);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/password-reset/confirm/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/password");
    snprintf(body, sizeof body, "{\"token\": \"%s\", \"password\": \"a much longer passphrase\"}",
             token);
    r = unit_req_h(u, NULL, "POST", "/api/v1/accounts/password-reset/confirm/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 204);
    /* Every session ends (a new epoch) and every token goes. */
    ck_assert_str_eq(unit_sql(u, "SELECT session_epoch > 0 AND password_hash <> ''"
                              " FROM users WHERE id = %lld", (long long)ann->id), "t");
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM api_tokens WHERE user_id = %lld",
                              (long long)ann->id), "0");
    r = unit_req(u, ann, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(me_and_the_researcher_gate)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *lax = unit_user(u, "lax", UNIT_RESEARCHER | UNIT_NO_MFA);
    const struct unit_reply *r;

    r = unit_req(u, ann, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "data.attributes.email"), ann->email);
    ck_assert_str_eq(unit_json(r, "data.attributes.authenticated_by"), "token");
    ck_assert_str_eq(unit_json(r, "data.attributes.is_researcher"), "false");
    ann->use_session = true;
    r = unit_req(u, ann, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.authenticated_by"), "session");
    r = unit_req(u, NULL, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 401);

    r = unit_req(u, res, "GET", "/api/v1/accounts/researcher-access/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "meta.researcher_access"), "true");
    r = unit_req(u, lax, "GET", "/api/v1/accounts/researcher-access/", NULL);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "two_factor_required");
    unit_app_stop(u);
}
END_TEST

START_TEST(api_tokens)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0), *bob = unit_user(u, "bob", 0);
    struct unit_user key_user;
    const struct unit_reply *r;
    char id[37], path[96], key[41];

    /* A token cannot make tokens. */
    r = unit_req(u, ann, "POST", "/api/v1/accounts/tokens/", "{\"name\": \"x\"}");
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "session_required");

    ann->use_session = true;
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/tokens/", "Content-Type: application/json",
                   "{\"name\": \"laptop\"}");
    ck_assert_int_eq(r->status, 201);
    snprintf(id, sizeof id, "%s", unit_json(r, "data.id"));
    ck_assert_int_eq((int)strlen(unit_json(r, "data.attributes.key")), 40);
    snprintf(key, sizeof key, "%.40s", unit_json(r, "data.attributes.key"));
    ck_assert_str_eq(unit_json(r, "data.attributes.name"), "laptop");

    r = unit_req(u, ann, "GET", "/api/v1/accounts/tokens/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "meta.count"), "2");          /* the harness's and this */

    /* The new key works. */
    key_user = *ann;
    key_user.use_session = false;
    snprintf(key_user.token, sizeof key_user.token, "Token %s", key);
    r = unit_req(u, &key_user, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);

    /* Bob cannot delete Ann's; Ann can, once. */
    snprintf(path, sizeof path, "/api/v1/accounts/tokens/%s/", id);
    bob->use_session = true;
    r = unit_req(u, bob, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, ann, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 204);
    r = unit_req(u, ann, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(u, &key_user, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(totp_enrol_and_confirm)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", UNIT_NO_MFA);
    const struct unit_reply *r;
    unsigned char key[TOTP_SECRET_BYTES];
    char secret[64], body[96], recovery[32];

    ann->use_session = true;
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/", "Content-Type: application/json",
                   "{}");
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.attributes.pending"), "true");
    snprintf(secret, sizeof secret, "%s", unit_json(r, "data.attributes.secret"));
    ck_assert_int_eq(totp_base32_decode(secret, key, sizeof key), (int)sizeof key);

    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/confirm/",
                   "Content-Type: application/json", "{\"code\": \"000000x\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/code");
    snprintf(body, sizeof body, "{\"code\": \"%06ld\"}",
             totp_hotp(key, sizeof key, (uint64_t)totp_step(time(NULL)), 6));
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/confirm/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int)json_array_size(unit_json_at(r->json, "data.attributes.recovery_codes")),
                     10);
    snprintf(recovery, sizeof recovery, "%s", unit_json(r, "data.attributes.recovery_codes.0"));
    /* The session is verified now and TOTP is on. */
    r = unit_req(u, ann, "GET", "/api/v1/accounts/totp/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.enabled"), "true");
    r = unit_req(u, ann, "GET", "/api/v1/accounts/me/", NULL);
    ck_assert_str_eq(unit_json(r, "data.attributes.two_factor_verified"), "true");

    /* Off again with a recovery code (the lost phone's way); the code of
     * this step is used up already. */
    snprintf(body, sizeof body, "{\"recovery_code\": \"%s\"}", recovery);
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/disable/",
                   "Content-Type: application/json", "{\"recovery_code\": \"nope-nope\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/recovery_code");
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/disable/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 204);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM user_totp WHERE user_id = %lld"
                              " AND confirmed_at IS NOT NULL", (long long)ann->id), "0");
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM api_tokens WHERE user_id = %lld",
                              (long long)ann->id), "0");     /* every token goes too */
    r = unit_req_h(u, ann, "POST", "/api/v1/accounts/totp/disable/",
                   "Content-Type: application/json", body);
    ck_assert_int_eq(r->status, 409);
    unit_app_stop(u);
}
END_TEST

static Suite *accounts_suite(void)
{
    Suite *s = suite_create("accounts");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, signup_then_verify);
    tcase_add_test(tc, signup_refusals);
    tcase_add_test(tc, password_reset_by_link);
    tcase_add_test(tc, me_and_the_researcher_gate);
    tcase_add_test(tc, api_tokens);
    tcase_add_test(tc, totp_enrol_and_confirm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_accounts", accounts_suite());
}
