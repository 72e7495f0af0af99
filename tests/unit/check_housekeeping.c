/* Unit tests of domain/housekeeping through the HTTP stack (unit_app):
 * deleting a study's preview responses (only those; who may: the design
 * group, 403 for a reader, 404 for an outsider); the hash check's counts;
 * one response as a JSON file (identifiable only with its permission, a
 * bad flag a 400, an outsider a 404). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/housekeeping.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { housekeeping_routes, NULL };

struct world {
    struct unit_app *u;
    struct unit_user *designer, *reader, *outsider;
    char study[37], real[37];
    int64_t study_id;
};

static void world(struct world *w)
{
    struct unit_user *fam;
    int64_t c1, c2;

    w->u = unit_app_start(routes, NULL);
    fam = unit_user(w->u, "fam", 0);
    w->designer = unit_user(w->u, "designer", UNIT_RESEARCHER);
    w->reader = unit_user(w->u, "reader", UNIT_RESEARCHER);
    w->outsider = unit_user(w->u, "outsider", UNIT_RESEARCHER);
    w->study_id = unit_study(w->u, unit_lab(w->u, "lab", NULL), "active", true, w->study);
    unit_study_member(w->u, w->study_id, w->designer, "design");
    unit_study_member(w->u, w->study_id, w->reader, "analysis");
    c1 = unit_child(w->u, fam, "A", 400, NULL);
    c2 = unit_child(w->u, fam, "B", 500, NULL);
    unit_response(w->u, c1, w->study_id, true, false, NULL);
    unit_response(w->u, c2, w->study_id, true, false, NULL);
    unit_response(w->u, c1, w->study_id, false, true, w->real);
}

START_TEST(preview_responses_deleted)
{
    struct world w;
    const struct unit_reply *r;
    char path[128];

    world(&w);
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/preview-responses/", w.study);
    r = unit_req(w.u, w.reader, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 403);
    r = unit_req(w.u, w.outsider, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM responses WHERE study_id = %lld",
                              (long long)w.study_id), "3");

    r = unit_req(w.u, w.designer, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.responses_deleted"), "2");
    ck_assert_str_eq(unit_sql(w.u, "SELECT string_agg(uuid::text, ',') FROM responses"
                              " WHERE study_id = %lld", (long long)w.study_id), w.real);
    r = unit_req(w.u, w.designer, "DELETE", "/api/v1/researcher/studies/nope/preview-responses/",
                 NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(hash_check)
{
    struct world w;
    const struct unit_reply *r;
    char path[128];

    world(&w);
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/hash-check/", w.study);
    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.type"), "hash-checks");
    ck_assert_str_eq(unit_json(r, "data.attributes.children"), "2");
    ck_assert_str_eq(unit_json(r, "data.attributes.distinct_ids"), "2");
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(response_as_json)
{
    struct world w;
    const struct unit_reply *r;
    char path[160];

    world(&w);
    snprintf(path, sizeof path, "/api/v1/researcher/responses/%s/json/", w.real);
    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(r->json);
    ck_assert_ptr_nonnull(strstr(unit_reply_header(r, "Content-Disposition"), w.real));
    ck_assert_ptr_nonnull(strstr(r->body, w.real));
    snprintf(path, sizeof path, "/api/v1/researcher/responses/%s/json/?identifiable=true", w.real);
    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 403);
    snprintf(path, sizeof path, "/api/v1/researcher/responses/%s/json/?identifiable=maybe", w.real);
    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 400);
    snprintf(path, sizeof path, "/api/v1/researcher/responses/%s/json/", w.real);
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Response matches the given query.");
    unit_app_stop(w.u);
}
END_TEST

static Suite *housekeeping_suite(void)
{
    Suite *s = suite_create("housekeeping");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, preview_responses_deleted);
    tcase_add_test(tc, hash_check);
    tcase_add_test(tc, response_as_json);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_housekeeping", housekeeping_suite());
}
