/* Unit tests of router: literal and parameter segments, trailing slashes,
 * the rest-wildcard, 405 with Allow, long paths, and the refusal of a
 * route without an access policy. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/router.h"
#include "unit_main.h"

static void h_a(struct http_req *r, struct app *a) { (void)r; (void)a; }
static void h_b(struct http_req *r, struct app *a) { (void)r; (void)a; }
static void h_c(struct http_req *r, struct app *a) { (void)r; (void)a; }

/* router_add with a public policy: the matching tests are about paths. */
static int add(struct router *r, enum http_method m, const char *pattern,
               route_handler_fn h)
{
    const struct route rt = { m, pattern, h, ROUTE_PUBLIC };
    return router_add(r, &rt);
}

static struct router *make(void)
{
    struct router *r = router_new();
    ck_assert_int_eq(add(r, HTTP_GET, "/api/v1/studies/", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/api/v1/studies/{id}/", h_b), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/api/v1/studies/{id}/responses/", h_c), 0);
    ck_assert_int_eq(add(r, HTTP_PATCH, "/api/v1/responses/{id}/", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_PUT, "/api/v1/responses/{id}/", h_b), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/healthz", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/debug/echo/*", h_c), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/", h_b), 0);
    return r;
}

START_TEST(literal_and_params)
{
    struct router *r = make();
    struct router_match m;
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_a);
    ck_assert_int_eq(m.nparams, 0);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies/abc-123/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_b);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_str_eq(m.param[0], "abc-123");
    ck_assert_str_eq(m.route->pattern, "/api/v1/studies/{id}/");
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies/x/responses/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_c);
    ck_assert_str_eq(m.param[0], "x");
    ck_assert_int_eq(router_match(r, HTTP_GET, "/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_b);
    router_free(r);
}
END_TEST

/* The first segment settles literal routes at once; a route starting
 * with a parameter still sees every path, and a prefix of a literal is
 * not the literal. */
START_TEST(first_segment)
{
    struct router *r = router_new();
    struct router_match m;

    ck_assert_int_eq(add(r, HTTP_GET, "/api/v1/x/", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/{slug}/about/", h_b), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/apix/", h_c), 0);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/x/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_a);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/about/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_b);
    ck_assert_str_eq(m.param[0], "api");
    ck_assert_int_eq(router_match(r, HTTP_GET, "/apix/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_c);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/ap/", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_POST, "/apix/", &m, NULL, 0),
                     ROUTER_METHOD_NOT_ALLOWED);
    router_free(r);

    /* The first route declared wins, whichever list it is in. */
    r = router_new();
    ck_assert_int_eq(add(r, HTTP_GET, "/{x}/y/", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/p/y/", h_b), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/p/z/", h_b), 0);
    ck_assert_int_eq(add(r, HTTP_GET, "/{x}/z/", h_c), 0);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/p/y/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_a);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/p/z/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_b);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/q/z/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_c);
    router_free(r);
}
END_TEST

START_TEST(trailing_slash_and_empty_segments)
{
    struct router *r = make();
    struct router_match m;
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies/x", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies//", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/healthz/", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/studies/x/y/", &m, NULL, 0), ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "", &m, NULL, 0), ROUTER_NOT_FOUND);
    router_free(r);
}
END_TEST

START_TEST(optional_trailing_slash)
{
    struct router *r = router_new();
    struct router_match m;
    ck_assert_int_eq(add(r, HTTP_GET, "/api/v1/workflow/?", h_a), 0);
    ck_assert_int_eq(add(r, HTTP_POST, "/api/v1/studies/{id}/build/?", h_b), 0);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/workflow", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/workflow/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/workflow//", &m, NULL, 0),
                     ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/workflow/x", &m, NULL, 0),
                     ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/api/v1/workflow?", &m, NULL, 0),
                     ROUTER_NOT_FOUND);
    ck_assert_int_eq(router_match(r, HTTP_POST, "/api/v1/studies/s1/build", &m, NULL, 0),
                     ROUTER_FOUND);
    ck_assert_str_eq(m.param[0], "s1");
    ck_assert_int_eq(router_match(r, HTTP_POST, "/api/v1/studies/s2/build/", &m, NULL, 0),
                     ROUTER_FOUND);
    ck_assert_str_eq(m.param[0], "s2");
    router_free(r);
}
END_TEST

START_TEST(method_not_allowed)
{
    struct router *r = make();
    struct router_match m;
    char allow[64];
    ck_assert_int_eq(router_match(r, HTTP_DELETE, "/api/v1/responses/u/", &m, allow, sizeof allow),
                     ROUTER_METHOD_NOT_ALLOWED);
    ck_assert_str_eq(allow, "PATCH, PUT");
    ck_assert_int_eq(router_match(r, HTTP_PUT, "/api/v1/responses/u/", &m, allow, sizeof allow),
                     ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_b);
    /* HEAD is answered by GET handlers. */
    ck_assert_int_eq(router_match(r, HTTP_HEAD, "/healthz", &m, NULL, 0), ROUTER_FOUND);
    router_free(r);
}
END_TEST

START_TEST(rest_wildcard_and_long_paths)
{
    struct router *r = make();
    struct router_match m;
    size_t n = 6000;
    char *path = malloc(n + 1);
    strcpy(path, "/debug/echo/");
    memset(path + 12, 'a', n - 12);
    path[n] = '\0';
    ck_assert_int_eq(router_match(r, HTTP_GET, path, &m, NULL, 0), ROUTER_FOUND);
    ck_assert_ptr_eq(m.route->handler, h_c);
    ck_assert_int_eq(router_match(r, HTTP_GET, "/debug/echo/", &m, NULL, 0), ROUTER_NOT_FOUND);
    /* A 6000-byte parameter does not fit and is no id: not found, no crash. */
    memcpy(path, "/api/v1/studies/", 16);
    path[n - 1] = '/';
    ck_assert_int_eq(router_match(r, HTTP_GET, path, &m, NULL, 0), ROUTER_NOT_FOUND);
    free(path);
    router_free(r);
}
END_TEST

START_TEST(bad_patterns)
{
    struct router *r = router_new();
    ck_assert_int_eq(add(r, HTTP_GET, "nope", h_a), -1);
    ck_assert_int_eq(add(r, HTTP_GET, "/a/*/b", h_a), -1);
    ck_assert_int_eq(add(r, HTTP_GET, "/a//b", h_a), -1);
    ck_assert_int_eq(add(r, HTTP_GET, "/{a}/{b}/{c}/{d}/{e}/", h_a), -1);
    router_free(r);
}
END_TEST

START_TEST(policy_required)
{
    struct router *r = router_new();
    /* Designated initialisers are how a policy could be left out. */
    const struct route none = { .method = HTTP_GET, .pattern = "/a/", .handler = h_a };
    const struct route bad = { HTTP_GET, "/b/", h_a, (enum route_policy)99 };
    const struct route ok = { HTTP_GET, "/c/", h_a, ROUTE_RESEARCHER };
    ck_assert_int_eq(router_add(r, &none), -1);
    ck_assert_int_eq(router_add(r, &bad), -1);
    ck_assert_int_eq(router_add(r, &ok), 0);
    ck_assert_int_eq(router_count(r), 1);
    ck_assert_int_eq(router_get(r, 0)->policy, ROUTE_RESEARCHER);
    ck_assert_ptr_null(router_get(r, 1));
    ck_assert_str_eq(route_policy_name(ROUTE_RESEARCHER), "researcher");
    ck_assert_str_eq(route_policy_name((enum route_policy)0), "none");
    /* The same method and pattern twice is a mistake too. */
    ck_assert_int_eq(router_add(r, &ok), -1);
    const struct route no_handler = { HTTP_GET, "/d/", NULL, ROUTE_PUBLIC };
    ck_assert_int_eq(router_add(r, &no_handler), -1);
    router_free(r);
}
END_TEST

START_TEST(tables)
{
    static const struct route table[] = {
        { HTTP_GET, "/x/", h_a, ROUTE_PUBLIC },
        { HTTP_POST, "/x/", h_b, ROUTE_USER },
    };
    static const struct route broken[] = {
        { HTTP_GET, "/y/", h_a, ROUTE_PUBLIC },
        { .method = HTTP_GET, .pattern = "/z/", .handler = h_a },
    };
    struct router *r = router_new();
    struct router_match m;
    ck_assert_int_eq(ROUTER_ADD_TABLE(r, table), 0);
    ck_assert_int_eq(router_match(r, HTTP_POST, "/x/", &m, NULL, 0), ROUTER_FOUND);
    ck_assert_int_eq(m.route->policy, ROUTE_USER);
    ck_assert_int_eq(ROUTER_ADD_TABLE(r, broken), -1);
    router_free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");
    tcase_add_test(tc, literal_and_params);
    tcase_add_test(tc, first_segment);
    tcase_add_test(tc, trailing_slash_and_empty_segments);
    tcase_add_test(tc, optional_trailing_slash);
    tcase_add_test(tc, method_not_allowed);
    tcase_add_test(tc, rest_wildcard_and_long_paths);
    tcase_add_test(tc, bad_patterns);
    tcase_add_test(tc, policy_required);
    tcase_add_test(tc, tables);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
