/* Unit tests of http/auth's gate through the HTTP stack (unit_app), on a
 * route table of one route per policy whose handler names the caller:
 * public takes anyone; user wants a token or a session (401 with
 * WWW-Authenticate otherwise, for a bad, expired or deactivated token, a
 * session of an old epoch), and CSRF on a session's writes (403); a
 * browser opening a page without a session goes to log in (302);
 * researcher wants two-factor; site_admin a site admin; operator a
 * loopback peer through no proxy, or the metrics token; debug exists only
 * with DEBUG_ROUTES=1. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/http/auth.h"
#include "studyhub/http/auth_cache.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "unit_app.h"

static void who(struct http_req *req, struct app *app)
{
    const struct auth_user *u = auth_user(req);

    jsonapi_reply(req, 200, json_pack("{s:s, s:b}", "caller", u ? u->uuid : "",
                                      "session", u && u->via_session));
}

static const struct route table[] = {
    { HTTP_GET, "/t/public/", who, ROUTE_PUBLIC },
    { HTTP_GET, "/t/user/", who, ROUTE_USER },
    { HTTP_POST, "/t/user/", who, ROUTE_USER },
    { HTTP_GET, "/t/page/", who, ROUTE_USER },
    { HTTP_GET, "/t/researcher/", who, ROUTE_RESEARCHER },
    { HTTP_GET, "/t/admin/", who, ROUTE_SITE_ADMIN },
    { HTTP_GET, "/t/operator/", who, ROUTE_OPERATOR },
    { HTTP_GET, "/t/debug/", who, ROUTE_DEBUG },
};

static int test_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, table);
}

static const unit_routes_fn routes[] = { test_routes, NULL };

static bool session_forgotten(void *arg)
{
    return auth_cache_session(*(const int64_t *)arg) == NULL;
}

START_TEST(user_policy)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *ann = unit_user(u, "ann", 0), *gone = unit_user(u, "gone", 0);
    struct unit_user *old = unit_user(u, "old", 0), forged;
    const struct unit_reply *r;
    char hdr[256];

    r = unit_req(u, NULL, "GET", "/t/public/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "caller"), "");

    r = unit_req(u, NULL, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 401);
    ck_assert_str_eq(unit_reply_header(r, "WWW-Authenticate"), "Token");
    r = unit_req(u, ann, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "caller"), ann->uuid);
    ck_assert_str_eq(unit_json(r, "session"), "false");
    r = unit_req(u, ann, "POST", "/t/user/", "{}");       /* a token needs no CSRF */
    ck_assert_int_eq(r->status, 200);

    forged = *ann;
    snprintf(forged.token, sizeof forged.token, "Token %040d", 7);
    r = unit_req(u, &forged, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 401);

    /* Expired and deactivated. */
    unit_sql(u, "UPDATE api_tokens SET expires_at = now() - interval '1 minute'"
             " WHERE user_id = %lld", (long long)old->id);
    r = unit_req(u, old, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 401);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "Token has expired: make a new one.");
    unit_sql(u, "UPDATE users SET is_active = false WHERE id = %lld", (long long)gone->id);
    r = unit_req(u, gone, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 401);

    /* Sessions: CSRF on writes; a new epoch ends them. */
    ann->use_session = true;
    r = unit_req(u, ann, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "session"), "true");
    /* The session is kept in process: the next page reads no Redis. */
    ck_assert_ptr_nonnull(auth_cache_sid(ann->session, (int64_t)time(NULL)));
    r = unit_req(u, ann, "POST", "/t/user/", "{}");
    ck_assert_int_eq(r->status, 200);
    snprintf(hdr, sizeof hdr, "Cookie: sessionid=%s; csrftoken=abc\nX-CSRFToken: abd",
             ann->session);
    r = unit_req_h(u, NULL, "POST", "/t/user/", hdr, "{}");
    ck_assert_int_eq(r->status, 403);
    ck_assert_ptr_nonnull(strstr(unit_json(r, "errors.0.detail"), "CSRF Failed"));
    snprintf(hdr, sizeof hdr, "Cookie: sessionid=%s", ann->session);
    r = unit_req_h(u, NULL, "POST", "/t/user/", hdr, "{}");
    ck_assert_int_eq(r->status, 403);
    unit_sql(u, "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = %lld",
             (long long)ann->id);
    /* Made behind the server's back: its notification evicts ann. */
    ck_assert(unit_await(u, session_forgotten, &ann->id));
    r = unit_req(u, ann, "GET", "/t/user/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(page_without_session_goes_to_login)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    const struct unit_reply *r;

    r = unit_req_h(u, NULL, "GET", "/t/page/?x=1", "Accept: text/html", NULL);
    ck_assert_int_eq(r->status, 302);
    ck_assert_str_eq(unit_reply_header(r, "Location"), "/login/?next=/t/page/%3Fx%3D1");
    /* An API client gets the 401. */
    r = unit_req(u, NULL, "GET", "/t/page/", NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(u);
}
END_TEST

START_TEST(researcher_and_site_admin)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *lax = unit_user(u, "lax", UNIT_RESEARCHER | UNIT_NO_MFA);
    struct unit_user *admin = unit_user(u, "admin", UNIT_SITE_ADMIN);
    const struct unit_reply *r;

    r = unit_req(u, res, "GET", "/t/researcher/", NULL);
    ck_assert_int_eq(r->status, 200);
    r = unit_req(u, lax, "GET", "/t/researcher/", NULL);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "two_factor_required");
    /* A session without two-factor: the same. */
    lax->use_session = true;
    r = unit_req(u, lax, "GET", "/t/researcher/", NULL);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "two_factor_required");

    r = unit_req(u, res, "GET", "/t/admin/", NULL);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "permission_denied");
    r = unit_req(u, admin, "GET", "/t/admin/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "caller"), admin->uuid);
    unit_app_stop(u);
}
END_TEST

START_TEST(operator_and_debug)
{
    static const char *const env[] = { "METRICS_TOKEN", "s3cret-metrics-token", NULL };
    static const char *const debug_env[] = { "DEBUG_ROUTES", "1", NULL };
    struct unit_app *u = unit_app_start(routes, env);
    const struct unit_reply *r;

    r = unit_req(u, NULL, "GET", "/t/operator/", NULL);
    ck_assert_int_eq(r->status, 200);
    r = unit_req_h(u, NULL, "GET", "/t/operator/", "X-Forwarded-For: 203.0.113.9", NULL);
    ck_assert_int_eq(r->status, 401);
    ck_assert_str_eq(unit_reply_header(r, "WWW-Authenticate"), "Bearer");
    r = unit_req_h(u, NULL, "GET", "/t/operator/",
                   "X-Forwarded-For: 203.0.113.9\nAuthorization: Bearer s3cret-metrics-token", NULL);
    ck_assert_int_eq(r->status, 200);
    r = unit_req_h(u, NULL, "GET", "/t/operator/",
                   "X-Forwarded-For: 203.0.113.9\nAuthorization: Bearer s3cret-metrics-tokem", NULL);
    ck_assert_int_eq(r->status, 401);
    r = unit_req(u, NULL, "GET", "/t/debug/", NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);

    u = unit_app_start(routes, debug_env);
    r = unit_req(u, NULL, "GET", "/t/debug/", NULL);
    ck_assert_int_eq(r->status, 200);
    unit_app_stop(u);
}
END_TEST

/* The one shape of the cookies we set: the strings the login and the
 * runner host's hand-off have always sent. */
START_TEST(cookie_lines)
{
    char out[256];

    ck_assert(auth_cookie_line(out, sizeof out, "sessionid", "abc", 1209600,
                               AUTH_COOKIE_HTTP_ONLY));
    ck_assert_str_eq(out, "sessionid=abc; Max-Age=1209600; Path=/; HttpOnly; SameSite=Lax");
    ck_assert(auth_cookie_line(out, sizeof out, "sessionid", "abc", 345600,
                               AUTH_COOKIE_HTTP_ONLY | AUTH_COOKIE_SECURE));
    ck_assert_str_eq(out,
                     "sessionid=abc; Max-Age=345600; Path=/; HttpOnly; SameSite=Lax; Secure");
    ck_assert(auth_cookie_line(out, sizeof out, "csrftoken", "c5", 31449600, 0));
    ck_assert_str_eq(out, "csrftoken=c5; Max-Age=31449600; Path=/; SameSite=Lax");
    ck_assert(auth_cookie_line(out, sizeof out, "csrftoken", "", 0, AUTH_COOKIE_SECURE));
    ck_assert_str_eq(out, "csrftoken=; Max-Age=0; Path=/; SameSite=Lax; Secure");
}
END_TEST

START_TEST(cookie_line_too_long)
{
    char out[48];

    /* 47 characters fit exactly; one more does not. */
    ck_assert(auth_cookie_line(out, sizeof out, "a", "0123456789ab", 0, 0));
    ck_assert_str_eq(out, "a=0123456789ab; Max-Age=0; Path=/; SameSite=Lax");
    ck_assert_uint_eq(strlen(out), 47);
    ck_assert(!auth_cookie_line(out, sizeof out, "a", "0123456789abc", 0, 0));
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("gate");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, user_policy);
    tcase_add_test(tc, page_without_session_goes_to_login);
    tcase_add_test(tc, researcher_and_site_admin);
    tcase_add_test(tc, operator_and_debug);
    suite_add_tcase(s, tc);
    TCase *pure = tcase_create("cookies");
    tcase_add_test(pure, cookie_lines);
    tcase_add_test(pure, cookie_line_too_long);
    suite_add_tcase(s, pure);
    return s;
}

int main(void)
{
    return unit_app_main("check_auth", auth_suite());
}
