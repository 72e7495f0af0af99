/* Unit tests of domain/feedback through the HTTP stack (unit_app): a
 * researcher who may edit a study's feedback comments on a consented
 * response and changes the comment; the family reads the feedback on its
 * own response; a researcher who may only read responses gets 403; one
 * who cannot see the response gets 404; the body's checks (a blank
 * comment, no response, a response that is no uuid, moving it). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/feedback.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { feedback_routes, NULL };

struct world {
    struct unit_app *u;
    struct unit_user *family, *writer, *reader, *outsider;
    char response[37], other_response[37];
};

static void world(struct world *w)
{
    int64_t study, child;

    w->u = unit_app_start(routes, NULL);
    w->family = unit_user(w->u, "fam", 0);
    w->writer = unit_user(w->u, "writer", UNIT_RESEARCHER);
    w->reader = unit_user(w->u, "reader", UNIT_RESEARCHER);
    w->outsider = unit_user(w->u, "outsider", UNIT_RESEARCHER);
    study = unit_study(w->u, unit_lab(w->u, "lab", NULL), "active", true, NULL);
    unit_study_member(w->u, study, w->writer, "manager");   /* edit_study__feedback */
    unit_study_member(w->u, study, w->reader, "analysis");
    child = unit_child(w->u, w->family, "Sally", 400, NULL);
    unit_response(w->u, child, study, false, true, w->response);
    unit_response(w->u, child, study, false, true, w->other_response);
}

static const char *create_body(const char *response, const char *comment)
{
    static char b[512];

    snprintf(b, sizeof b, "{\"data\": {\"type\": \"feedback\", \"attributes\": {\"comment\": %s},"
             " \"relationships\": {\"response\": {\"data\": {\"type\": \"responses\","
             " \"id\": \"%s\"}}}}}", comment, response);
    return b;
}

START_TEST(comment_then_change)
{
    struct world w;
    const struct unit_reply *r;
    char fb[37], path[96], body[512];

    world(&w);
    r = unit_req(w.u, w.writer, "POST", "/api/v1/feedback/",
                 create_body(w.response, "\"  Well done!  \""));
    ck_assert_int_eq(r->status, 201);
    snprintf(fb, sizeof fb, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_json(r, "data.attributes.comment"), "Well done!");   /* trimmed */
    ck_assert_str_eq(unit_sql(w.u, "SELECT f.comment FROM feedback f JOIN responses r"
                              " ON r.id = f.response_id WHERE r.uuid = '%s'", w.response),
                     "Well done!");

    snprintf(path, sizeof path, "/api/v1/feedback/%s/", fb);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"feedback\", \"id\": \"%s\","
             " \"attributes\": {\"comment\": \"Thanks!\"}}}", fb);
    r = unit_req(w.u, w.writer, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.comment"), "Thanks!");
    /* The reader sees it but may not change it. */
    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    r = unit_req(w.u, w.reader, "PATCH", path, body);
    ck_assert_int_eq(r->status, 403);
    r = unit_req(w.u, w.outsider, "PATCH", path, body);
    ck_assert_int_eq(r->status, 404);
    /* Feedback stays on its response. */
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"feedback\", \"id\": \"%s\","
             " \"attributes\": {}, \"relationships\": {\"response\": {\"data\":"
             " {\"type\": \"responses\", \"id\": \"%s\"}}}}}", fb, w.other_response);
    r = unit_req(w.u, w.writer, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/response");

    /* The family reads the feedback on its own response. */
    r = unit_req(w.u, w.family, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.comment"), "Thanks!");
    r = unit_req(w.u, w.family, "GET", "/api/v1/feedback/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(create_refusals)
{
    struct world w;
    const struct unit_reply *r;

    world(&w);
    r = unit_req(w.u, w.reader, "POST", "/api/v1/feedback/", create_body(w.response, "\"Hi\""));
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "permission_denied");
    r = unit_req(w.u, w.outsider, "POST", "/api/v1/feedback/", create_body(w.response, "\"Hi\""));
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/response");
    /* A family may not comment on its own response. */
    r = unit_req(w.u, w.family, "POST", "/api/v1/feedback/", create_body(w.response, "\"Hi\""));
    ck_assert_int_eq(r->status, 403);
    r = unit_req(w.u, w.writer, "POST", "/api/v1/feedback/", create_body(w.response, "\"   \""));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "blank");
    r = unit_req(w.u, w.writer, "POST", "/api/v1/feedback/", create_body(w.response, "5"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/comment");
    r = unit_req(w.u, w.writer, "POST", "/api/v1/feedback/", create_body("r-1", "\"Hi\""));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/response");
    r = unit_req(w.u, w.writer, "POST", "/api/v1/feedback/",
                 "{\"data\": {\"type\": \"feedback\", \"attributes\": {}}}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_nerrors(r), 2);
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM feedback f JOIN responses r"
                              " ON r.id = f.response_id WHERE r.uuid = '%s'", w.response), "0");
    unit_app_stop(w.u);
}
END_TEST

static Suite *feedback_suite(void)
{
    Suite *s = suite_create("feedback");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, comment_then_change);
    tcase_add_test(tc, create_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_feedback", feedback_suite());
}
