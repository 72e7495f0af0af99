/* Unit tests of http/health through the HTTP stack (unit_app): /healthz;
 * /readyz with both services up (200) and with Redis down (503 naming
 * it); /metrics for a loopback caller (the pool's and the outcomes'
 * lines) and not through a proxy; the start-up table answering every
 * other path 503 with Retry-After; the debug routes with DEBUG_ROUTES=1. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/http/health.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { health_routes, NULL };

START_TEST(alive_ready_and_metrics)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    const struct unit_reply *r;

    r = unit_req(u, NULL, "GET", "/healthz", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "status"), "ok");
    r = unit_req(u, NULL, "GET", "/readyz", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "status"), "ok");
    ck_assert_str_eq(unit_json(r, "checks.postgresql"), "up");
    ck_assert_str_eq(unit_json(r, "checks.redis"), "up");
    ck_assert_int_eq((int)json_array_size(json_object_get(r->json, "down")), 0);

    r = unit_req(u, NULL, "GET", "/metrics", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(strstr(unit_reply_header(r, "Content-Type"), "text/plain"));
    ck_assert_ptr_nonnull(strstr(r->body, "\nstudyhub_pg_pool_size 2\n"));
    ck_assert_ptr_nonnull(strstr(r->body, "\nstudyhub_redis_connected 1\n"));
    ck_assert_ptr_nonnull(strstr(r->body, "studyhub_tasks_finished_total{outcome=\"succeeded\"} 0\n"));
    r = unit_req_h(u, NULL, "GET", "/metrics", "X-Forwarded-For: 198.51.100.7", NULL);
    ck_assert_int_eq(r->status, 401);
    /* The debug routes do not exist by default. */
    r = unit_req(u, NULL, "GET", "/debug/echo/x", NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);
}
END_TEST

START_TEST(redis_down_is_not_ready)
{
    /* Port 1 on loopback: nothing listens there. */
    static const char *const env[] = { "REDIS_URL", "redis://127.0.0.1:1/0",
                                       "REDIS_TIMEOUT_MS", "500", NULL };
    struct unit_app *u = unit_app_start(routes, env);
    const struct unit_reply *r;

    r = unit_req(u, NULL, "GET", "/readyz", NULL);
    ck_assert_int_eq(r->status, 503);
    ck_assert_str_eq(unit_json(r, "status"), "unavailable");
    ck_assert_str_eq(unit_json(r, "checks.postgresql"), "up");
    ck_assert_str_eq(unit_json(r, "checks.redis"), "down");
    ck_assert_str_eq(unit_json(r, "down.0"), "redis");
    r = unit_req(u, NULL, "GET", "/healthz", NULL);
    ck_assert_int_eq(r->status, 200);           /* alive all the same */
    unit_app_stop(u);
}
END_TEST

START_TEST(starting_and_debug)
{
    static const unit_routes_fn starting[] = { health_starting_routes, NULL };
    static const char *const env[] = { "DEBUG_ROUTES", "1", NULL };
    struct unit_app *u = unit_app_start(starting, NULL);
    const struct unit_reply *r;

    r = unit_req(u, NULL, "GET", "/api/v1/studies/", NULL);
    ck_assert_int_eq(r->status, 503);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "starting");
    ck_assert_str_eq(unit_reply_header(r, "Retry-After"), "2");
    r = unit_req(u, NULL, "POST", "/api/v1/auth/login/", "{}");
    ck_assert_int_eq(r->status, 503);
    unit_app_stop(u);

    u = unit_app_start(routes, env);
    r = unit_req(u, NULL, "GET", "/debug/echo/a%20b", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "path"), "/debug/echo/a b");
    r = unit_req(u, NULL, "GET", "/debug/sleep?ms=20", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "slept"), "true");
    unit_app_stop(u);
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, alive_ready_and_metrics);
    tcase_add_test(tc, redis_down_is_not_ready);
    tcase_add_test(tc, starting_and_debug);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_health", health_suite());
}
