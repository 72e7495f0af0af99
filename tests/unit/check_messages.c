/* Unit tests of domain/messages through the HTTP stack (unit_app): a
 * researcher who may message a study's families sends to every family
 * with a consented response (emailed per their preference), the study's
 * list counts it, the family reads it in its own list; a reader of the
 * study gets 403, an outsider 404; a bad kind, an empty subject, a
 * response not of the study are refused and send nothing. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/messages.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { messages_routes, NULL };

struct world {
    struct unit_app *u;
    struct unit_user *fam, *quiet, *sender, *reader, *outsider;
    char study[37], response[37];
    int64_t study_id;
};

static void world(struct world *w)
{
    w->u = unit_app_start(routes, NULL);
    w->fam = unit_user(w->u, "fam", 0);
    w->quiet = unit_user(w->u, "quiet", 0);
    w->sender = unit_user(w->u, "sender", UNIT_RESEARCHER);
    w->reader = unit_user(w->u, "reader", UNIT_RESEARCHER);
    w->outsider = unit_user(w->u, "outsider", UNIT_RESEARCHER);
    unit_sql(w->u, "UPDATE users SET email_study_updates = false WHERE id = %lld",
             (long long)w->quiet->id);
    w->study_id = unit_study(w->u, unit_lab(w->u, "lab", NULL), "active", true, w->study);
    unit_study_member(w->u, w->study_id, w->sender, "researcher");
    unit_study_member(w->u, w->study_id, w->reader, "analysis");
    unit_response(w->u, unit_child(w->u, w->fam, "A", 400, NULL), w->study_id, false, true,
                  w->response);
    unit_response(w->u, unit_child(w->u, w->quiet, "B", 400, NULL), w->study_id, false, true,
                  NULL);
}

static const char *msg(const char *attrs)
{
    static char b[512];

    snprintf(b, sizeof b, "{\"data\": {\"type\": \"messages\", \"attributes\": %s}}", attrs);
    return b;
}

START_TEST(send_to_all_then_read)
{
    struct world w;
    const struct unit_reply *r;
    char path[128];

    world(&w);
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/messages/", w.study);
    r = unit_req(w.u, w.sender, "POST", path,
                 msg("{\"subject\": \"News\", \"body\": \"Results are in.\", \"all\": true}"));
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.attributes.recipients"), "2");
    ck_assert_str_eq(unit_json(r, "data.attributes.emailed"), "1");     /* quiet said no */
    ck_assert_str_eq(unit_json(r, "data.attributes.kind"), "study_updates");
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM mail_outbox WHERE to_addr = '%s'",
                              w.fam->email), "1");
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM mail_outbox WHERE to_addr = '%s'",
                              w.quiet->email), "0");

    r = unit_req(w.u, w.sender, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    r = unit_req(w.u, w.fam, "GET", "/api/v1/messages/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.attributes.subject"), "News");
    r = unit_req(w.u, w.outsider, "GET", "/api/v1/messages/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "0");
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(refusals_send_nothing)
{
    struct world w;
    const struct unit_reply *r;
    char path[128], attrs[256];

    world(&w);
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/messages/", w.study);
    r = unit_req(w.u, w.reader, "POST", path,
                 msg("{\"subject\": \"S\", \"body\": \"B\", \"all\": true}"));
    ck_assert_int_eq(r->status, 403);
    r = unit_req(w.u, w.outsider, "POST", path,
                 msg("{\"subject\": \"S\", \"body\": \"B\", \"all\": true}"));
    ck_assert_int_eq(r->status, 404);
    r = unit_req(w.u, w.sender, "POST", path,
                 msg("{\"subject\": \"S\", \"body\": \"B\", \"all\": true, \"kind\": \"spam\"}"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/kind");
    r = unit_req(w.u, w.sender, "POST", path, msg("{\"subject\": \"  \", \"body\": \"B\","
                                                  " \"all\": true}"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/subject");
    /* Both all and a list, or neither: one or the other. */
    r = unit_req(w.u, w.sender, "POST", path, msg("{\"subject\": \"S\", \"body\": \"B\"}"));
    ck_assert_int_eq(r->status, 400);
    snprintf(attrs, sizeof attrs, "{\"subject\": \"S\", \"body\": \"B\", \"responses\":"
             " [\"%s\", \"00000000-0000-4000-8000-000000000000\"]}", w.response);
    r = unit_req(w.u, w.sender, "POST", path, msg(attrs));
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/responses");
    r = unit_req(w.u, w.sender, "POST", path, "{\"data\": {\"type\": \"messages\","
                 " \"attributes\": [1]}}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM family_messages WHERE study_id = %lld",
                              (long long)w.study_id), "0");

    /* One response's family only. */
    snprintf(attrs, sizeof attrs, "{\"subject\": \"S\", \"body\": \"B\", \"responses\":"
             " [\"%s\"]}", w.response);
    r = unit_req(w.u, w.sender, "POST", path, msg(attrs));
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_eq(unit_json(r, "data.attributes.recipients"), "1");
    ck_assert_int_eq(unit_sql_int(w.u, "SELECT user_id FROM family_messages WHERE study_id = %lld",
                                  (long long)w.study_id), w.fam->id);
    unit_app_stop(w.u);
}
END_TEST

static Suite *messages_suite(void)
{
    Suite *s = suite_create("messages");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, send_to_all_then_read);
    tcase_add_test(tc, refusals_send_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_messages", messages_suite());
}
