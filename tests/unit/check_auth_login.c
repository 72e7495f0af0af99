/* Unit tests of http/auth_login through the HTTP stack (unit_app): a
 * password login sets the session and CSRF cookies, and the session works
 * (logout with CSRF: 204; without: 403; after: 401); a wrong password, an
 * unknown address: the same 400; an unverified address: 403, only after
 * the right password; an account with TOTP gets a challenge (202, no
 * cookie), and login/2fa/ completes it with a right code only; past its
 * free failures an account without TOTP waits (429). */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "studyhub/http/auth_login.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/totp.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { auth_routes, NULL };
/* The address's counter is every program's (127.0.0.1): not counted here. */
static const char *const env[] = { "LOGIN_DELAY_FREE_ADDR", "1000000",
                                   "LOGIN_DELAY_FREE_ACCOUNT", "1000000", NULL };
#define PASSWORD "a long enough passphrase"
/* A TOTP secret stored as older versions did (plain base32). */
#define SECRET "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

/* auth_password_hash(PASSWORD), made once (a hash costs 0.1 s; the login
 * reads its parameters from it). */
#define PASSWORD_HASH "$argon2id$v=19$m=19456,t=2,p=1$1Ge0L1KNgWBi30q3oBq8BA$" \
    "Oseyoh3ga8S9TlWOTx+ANcNKQXgBJAWBGuNB6EQvxhI"

static void set_password(struct unit_app *u, const struct unit_user *who)
{
    unit_sql(u, "UPDATE users SET password_hash = '%s' WHERE id = %lld", PASSWORD_HASH,
             (long long)who->id);
}

/* The constant is what the module makes and accepts. */
START_TEST(the_hash_is_the_password)
{
    ck_assert(auth_password_verify(PASSWORD_HASH, PASSWORD));
    ck_assert(!auth_password_verify(PASSWORD_HASH, PASSWORD "!"));
}
END_TEST

static const struct unit_reply *login(struct unit_app *u, const char *email, const char *pw)
{
    char body[256];

    snprintf(body, sizeof body, "{\"email\": \"%s\", \"password\": \"%s\"}", email, pw);
    return unit_req_h(u, NULL, "POST", "/api/v1/auth/login/", "Content-Type: application/json",
                      body);
}

/* The value of cookie name among the reply's Set-Cookie headers. */
static bool cookie_of(const struct unit_reply *r, const char *name, char *out, size_t outlen)
{
    char key[64];

    snprintf(key, sizeof key, "set-cookie: %s=", name);
    const char *p = strstr(r->headers, key);
    if (!p)
        return false;
    p += strlen(key);
    snprintf(out, outlen, "%.*s", (int)strcspn(p, ";\n"), p);
    return true;
}

START_TEST(password_login_and_logout)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    char sid[128], csrf[128], hdr[512];

    set_password(u, ann);
    r = login(u, ann->email, PASSWORD);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "data.attributes.two_factor_enabled"), "false");
    ck_assert(cookie_of(r, "sessionid", sid, sizeof sid));
    ck_assert(cookie_of(r, "csrftoken", csrf, sizeof csrf));
    ck_assert_int_eq((int)strlen(sid), 64);
    ck_assert_ptr_nonnull(strstr(r->headers, "HttpOnly"));

    /* A write of the session needs the CSRF token. */
    snprintf(hdr, sizeof hdr, "Cookie: sessionid=%s; csrftoken=%s", sid, csrf);
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/logout/", hdr, NULL);
    ck_assert_int_eq(r->status, 403);
    snprintf(hdr, sizeof hdr, "Cookie: sessionid=%s; csrftoken=%s\nX-CSRFToken: %s", sid, csrf,
             csrf);
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/logout/", hdr, NULL);
    ck_assert_int_eq(r->status, 204);
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/logout/", hdr, NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(bad_credentials)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0), *new = unit_user(u, "new", 0);
    const struct unit_reply *r;

    set_password(u, ann);
    set_password(u, new);
    unit_sql(u, "UPDATE users SET email_verified_at = NULL WHERE id = %lld", (long long)new->id);
    r = login(u, ann->email, "not the passphrase");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "Unable to log in with provided credentials.");
    ck_assert_ptr_null(strstr(r->headers, "set-cookie: sessionid="));
    r = login(u, "nobody-at-all@example.test", "not the passphrase");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "Unable to log in with provided credentials.");
    /* Unverified: said only to who knows the password. */
    r = login(u, new->email, "not the passphrase");
    ck_assert_int_eq(r->status, 400);
    r = login(u, new->email, PASSWORD);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "email_not_verified");
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/", "Content-Type: text/plain",
                   "{\"email\": \"a\", \"password\": \"b\"}");
    ck_assert_int_eq(r->status, 415);
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/", "Content-Type: application/json",
                   "{\"email\": \"a\"}");
    ck_assert_int_eq(r->status, 400);
    unit_app_stop(u);
}
END_TEST

START_TEST(two_factor_login)
{
    struct unit_app *u = unit_app_start(routes, env);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;
    unsigned char key[TOTP_SECRET_BYTES];
    char challenge[128], body[256], sid[128];

    set_password(u, ann);
    unit_sql(u, "INSERT INTO user_totp (user_id, secret, confirmed_at) VALUES (%lld, '%s', now())",
             (long long)ann->id, SECRET);
    ck_assert_int_eq(totp_base32_decode(SECRET, key, sizeof key), (int)sizeof key);

    r = login(u, ann->email, PASSWORD);
    ck_assert_int_eq(r->status, 202);
    ck_assert_str_eq(unit_json(r, "meta.second_factor_required"), "true");
    ck_assert_ptr_null(strstr(r->headers, "set-cookie: sessionid="));
    snprintf(challenge, sizeof challenge, "%s", unit_json(r, "meta.challenge"));

    snprintf(body, sizeof body, "{\"challenge\": \"%s\", \"code\": \"%06ld\"}", challenge,
             (totp_hotp(key, sizeof key, (uint64_t)totp_step(time(NULL)), 6) + 1) % 1000000);
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/2fa/", "Content-Type: application/json",
                   body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/code");
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/2fa/", "Content-Type: application/json",
                   "{\"challenge\": \"0000\", \"code\": \"123456\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "invalid_challenge");

    snprintf(body, sizeof body, "{\"challenge\": \"%s\", \"code\": \"%06ld\"}", challenge,
             totp_hotp(key, sizeof key, (uint64_t)totp_step(time(NULL)), 6));
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/2fa/", "Content-Type: application/json",
                   body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.two_factor_verified"), "true");
    ck_assert(cookie_of(r, "sessionid", sid, sizeof sid));
    /* The challenge is used up. */
    r = unit_req_h(u, NULL, "POST", "/api/v1/auth/login/2fa/", "Content-Type: application/json",
                   body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "invalid_challenge");
    unit_app_stop(u);
}
END_TEST

START_TEST(account_slow_down)
{
    static const char *const strict[] = { "LOGIN_DELAY_FREE_ADDR", "1000000",
                                          "LOGIN_DELAY_FREE_ACCOUNT", "1",
                                          "LOGIN_DELAY_FIRST_MS", "60000", NULL };
    struct unit_app *u = unit_app_start(routes, strict);
    struct unit_user *ann = unit_user(u, "ann", 0);
    const struct unit_reply *r;

    set_password(u, ann);
    ck_assert_int_eq(login(u, ann->email, "wrong one")->status, 400);   /* free */
    ck_assert_int_eq(login(u, ann->email, "wrong two")->status, 400);   /* sets the wait */
    /* The account waits: without TOTP even the right password gets 429
     * (checking it would answer the guesser). */
    r = login(u, ann->email, PASSWORD);
    ck_assert_int_eq(r->status, 429);
    ck_assert_ptr_nonnull(unit_reply_header(r, "Retry-After"));
    unit_app_stop(u);
}
END_TEST

static Suite *auth_login_suite(void)
{
    Suite *s = suite_create("auth_login");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, the_hash_is_the_password);
    tcase_add_test(tc, password_login_and_logout);
    tcase_add_test(tc, bad_credentials);
    tcase_add_test(tc, two_factor_login);
    tcase_add_test(tc, account_slow_down);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_auth_login", auth_login_suite());
}
