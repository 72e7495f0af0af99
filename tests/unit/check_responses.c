/* Unit tests of domain/responses through the HTTP stack (unit_app): the
 * runner's create (R3), read, list and update of a response; the refusals
 * that keep one family out of another's (403 for someone else's child, 404
 * for someone else's response); the checks of the body (malformed JSON,
 * a wrong type, an unknown study, a changed study); and no credentials. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/responses.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { responses_routes, NULL };

/* R3 as ember-data sends it. */
static const char *create_body(const char *child, const char *study)
{
    static char b[1024];

    snprintf(b, sizeof b,
             "{\"data\": {\"type\": \"responses\", \"attributes\": {"
             "\"global_event_timings\": [], \"exp_data\": {}, \"sequence\": [],"
             " \"completed\": false, \"completed_consent_frame\": false,"
             " \"survey_consent\": false, \"created_on\": null, \"is_preview\": false,"
             " \"hash_child_id\": null, \"recording_method\": \"recordrtc\"},"
             " \"relationships\": {\"child\": {\"data\": {\"type\": \"children\", \"id\": \"%s\"}},"
             " \"study\": {\"data\": {\"type\": \"studies\", \"id\": \"%s\"}}}}}", child, study);
    return b;
}

struct world {
    struct unit_app *u;
    struct unit_user *ann, *bob;
    char child[37], bobs_child[37], study[37];
};

static void world(struct world *w)
{
    int64_t lab;

    w->u = unit_app_start(routes, NULL);
    w->ann = unit_user(w->u, "ann", 0);
    w->bob = unit_user(w->u, "bob", 0);
    unit_child(w->u, w->ann, "Sally", 400, w->child);
    unit_child(w->u, w->bob, "Tom", 400, w->bobs_child);
    lab = unit_lab(w->u, "lab", NULL);
    unit_study(w->u, lab, "active", true, w->study);
}

/* Ann's response to the study; its uuid. */
static const char *created(struct world *w)
{
    static char uuid[37];
    const struct unit_reply *r = unit_req(w->u, w->ann, "POST", "/api/v1/responses/",
                                          create_body(w->child, w->study));

    ck_assert_int_eq(r->status, 201);
    snprintf(uuid, sizeof uuid, "%s", unit_json(r, "data.id"));
    return uuid;
}

START_TEST(create_read_list)
{
    struct world w;
    const struct unit_reply *r;
    char uuid[37], path[96];

    world(&w);
    r = unit_req(w.u, w.ann, "POST", "/api/v1/responses/", create_body(w.child, w.study));
    ck_assert_int_eq(r->status, 201);
    snprintf(uuid, sizeof uuid, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_json(r, "data.type"), "responses");
    ck_assert_str_eq(unit_json(r, "data.attributes.completed"), "false");
    ck_assert_str_eq(unit_json(r, "data.relationships.study.data.id"), w.study);
    ck_assert_ptr_nonnull(strstr(unit_reply_header(r, "Location"), uuid));
    /* The row: Ann's child, the study, eligible by age. */
    {
        char want[80];

        snprintf(want, sizeof want, "%s %s", w.child, w.study);
        ck_assert_str_eq(unit_sql(w.u, "SELECT c.uuid || ' ' || s.uuid FROM responses r"
                                  " JOIN children c ON c.id = r.child_id JOIN studies s"
                                  " ON s.id = r.study_id WHERE r.uuid = '%s'", uuid), want);
    }

    snprintf(path, sizeof path, "/api/v1/responses/%s/", uuid);
    r = unit_req(w.u, w.ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), uuid);
    ck_assert_ptr_nonnull(strstr(unit_json(r, "data.relationships.child.links.related"),
                                 w.child));
    r = unit_req(w.u, w.ann, "GET", "/api/v1/responses/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.id"), uuid);

    /* Bob sees none of it. */
    r = unit_req(w.u, w.bob, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Response matches the given query.");
    r = unit_req(w.u, w.bob, "GET", "/api/v1/responses/", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "0");
    r = unit_req(w.u, NULL, "GET", path, NULL);
    ck_assert_int_eq(r->status, 401);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(create_refusals)
{
    struct world w;
    const struct unit_reply *r;

    world(&w);
    /* Someone else's child: 403, nothing written. */
    r = unit_req(w.u, w.ann, "POST", "/api/v1/responses/", create_body(w.bobs_child, w.study));
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "permission_denied");
    /* A study nobody has. */
    r = unit_req(w.u, w.ann, "POST", "/api/v1/responses/",
                 create_body(w.child, "00000000-0000-4000-8000-000000000000"));
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/study");
    /* Not JSON; the wrong type. */
    r = unit_req(w.u, w.ann, "POST", "/api/v1/responses/", "{\"data\": [");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "parse_error");
    r = unit_req(w.u, w.ann, "POST", "/api/v1/responses/",
                 "{\"data\": {\"type\": \"studies\", \"attributes\": {}}}");
    ck_assert_int_eq(r->status, 409);
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM responses r JOIN studies s"
                              " ON s.id = r.study_id WHERE s.uuid = '%s'", w.study), "0");
    unit_app_stop(w.u);
}
END_TEST

START_TEST(update_own_only)
{
    struct world w;
    const struct unit_reply *r;
    char uuid[37], path[96], body[1024];

    world(&w);
    snprintf(uuid, sizeof uuid, "%s", created(&w));
    snprintf(path, sizeof path, "/api/v1/responses/%s/", uuid);
    snprintf(body, sizeof body,
             "{\"data\": {\"type\": \"responses\", \"id\": \"%s\", \"attributes\": {"
             "\"sequence\": [\"a\"], \"completed\": true,"
             " \"exp_data\": {\"a\": {\"x\": 1}}}}}", uuid);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.completed"), "true");
    ck_assert_str_eq(unit_json(r, "data.attributes.sequence.0"), "a");
    ck_assert_str_eq(unit_sql(w.u, "SELECT completed::text || ' ' || (exp_data->'a'->>'x')"
                              " FROM responses WHERE uuid = '%s'", uuid), "true 1");

    /* To Bob it does not exist. */
    r = unit_req(w.u, w.bob, "PATCH", path, body);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "No Response matches the given query.");
    /* The study of a response cannot change. */
    {
        char other[37], moved[1024];

        unit_study(w.u, unit_lab(w.u, "lab2", NULL), "active", true, other);
        snprintf(moved, sizeof moved,
                 "{\"data\": {\"type\": \"responses\", \"id\": \"%s\", \"attributes\": {},"
                 " \"relationships\": {\"study\": {\"data\": {\"type\": \"studies\","
                 " \"id\": \"%s\"}}}}}", uuid, other);
        r = unit_req(w.u, w.ann, "PATCH", path, moved);
        ck_assert_int_eq(r->status, 400);
        ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/study");
    }
    /* exp_data must be an object or a list, completed a boolean: one
     * error each, and nothing written. */
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"responses\", \"id\": \"%s\","
             " \"attributes\": {\"exp_data\": \"x\", \"completed\": \"no\"}}}", uuid);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_int_eq(unit_nerrors(r), 2);
    ck_assert(unit_has_error(r, "/data/attributes/exp_data"));
    ck_assert(unit_has_error(r, "/data/attributes/completed"));
    ck_assert_str_eq(unit_sql(w.u, "SELECT exp_data->'a'->>'x' FROM responses WHERE uuid = '%s'",
                              uuid), "1");
    r = unit_req(w.u, w.ann, "PATCH", "/api/v1/responses/00000000-0000-4000-8000-000000000000/",
                 "{\"data\": {\"type\": \"responses\", \"id\":"
                 " \"00000000-0000-4000-8000-000000000000\", \"attributes\": {}}}");
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

/* The scanner notes where the document's outer containers end, so a
 * member after a big one is found without stepping over it again
 * (apidoc.c, jindex).  Bodies with more containers than it notes, empty
 * ones, every order of the parts, and repeated names after a noted
 * container: the same answers as a plain walk gives. */
START_TEST(big_documents_are_read_right)
{
    struct world w;
    char uuid[37], path[96];
    char *body = malloc(16384), filler[8192];
    size_t n = 0;
    const struct unit_reply *r;

    world(&w);
    snprintf(uuid, sizeof uuid, "%s", created(&w));
    snprintf(path, sizeof path, "/api/v1/responses/%s/", uuid);
    /* 40 unknown object attributes (past the 32 noted), an empty one,
     * then the ones the API reads. */
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(filler + n, sizeof filler - n,
                              "\"x%d\": {\"a\": [1, {\"b\": []}], \"c\": {}}, ", i);
    snprintf(body, 16384,
             "{\"meta\": {}, \"data\": {\"relationships\": {}, \"type\": \"responses\","
             " \"attributes\": {%s\"e\": [], \"exp_data\": {\"f\": [{}, []], \"g\": {\"h\": 2}},"
             " \"sequence\": [\"f\", \"g\"], \"completed\": true}, \"id\": \"%s\"}}",
             filler, uuid);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.sequence.1"), "g");
    ck_assert_str_eq(unit_json(r, "data.attributes.exp_data.g.h"), "2");
    ck_assert_str_eq(unit_sql(w.u, "SELECT exp_data::text FROM responses WHERE uuid = '%s'", uuid),
                     "{\"f\": [{}, []], \"g\": {\"h\": 2}}");
    /* A name repeated after a big member: in data, then in attributes. */
    snprintf(body, 16384,
             "{\"data\": {\"type\": \"responses\", \"id\": \"%s\", \"attributes\": {%s\"y\": 1},"
             " \"type\": \"responses\"}}", uuid, filler);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.detail"), "JSON parse error - duplicate key");
    snprintf(body, 16384,
             "{\"data\": {\"type\": \"responses\", \"id\": \"%s\", \"attributes\": {%s"
             "\"completed\": false, \"x3\": {}}}}", uuid, filler);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes");
    /* Nothing of the refused ones was written. */
    ck_assert_str_eq(unit_sql(w.u, "SELECT completed::text FROM responses WHERE uuid = '%s'", uuid),
                     "true");
    free(body);
    unit_app_stop(w.u);
}
END_TEST

/* A PATCH sets date_modified itself (sql/110: the touch trigger skips
 * it); any other UPDATE still gets the trigger's now(). */
START_TEST(date_modified_moves_on_every_update)
{
    struct world w;
    char uuid[37], path[96], body[512];
    const struct unit_reply *r;

    world(&w);
    snprintf(uuid, sizeof uuid, "%s", created(&w));
    snprintf(path, sizeof path, "/api/v1/responses/%s/", uuid);
    /* Set outright, it sticks (the trigger sees it changed). */
    unit_sql(w.u, "UPDATE responses SET date_modified = '2000-01-01Z' WHERE uuid = '%s'", uuid);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"responses\", \"id\": \"%s\","
             " \"attributes\": {\"completed\": true}}}", uuid);
    r = unit_req(w.u, w.ann, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_sql(w.u, "SELECT date_modified > now() - interval '1 minute'"
                              " FROM responses WHERE uuid = '%s'", uuid), "t");
    unit_sql(w.u, "UPDATE responses SET date_modified = '2000-01-01Z' WHERE uuid = '%s'", uuid);
    ck_assert_str_eq(unit_sql(w.u, "SELECT date_modified = '2000-01-01Z' FROM responses"
                              " WHERE uuid = '%s'", uuid), "t");
    unit_sql(w.u, "UPDATE responses SET survey_consent = true WHERE uuid = '%s'", uuid);
    ck_assert_str_eq(unit_sql(w.u, "SELECT date_modified > now() - interval '1 minute'"
                              " FROM responses WHERE uuid = '%s'", uuid), "t");
    unit_app_stop(w.u);
}
END_TEST

/* Withdrawal is an EXIT frame's withdrawal true: spelled plainly, or with
 * its letters escaped (the quick look for "EXIT" must not miss it), and
 * not a frame merely named EXIT-something. */
START_TEST(withdrawn_by_the_exit_frame)
{
    static const struct {
        const char *exp_data;
        const char *withdrawn;
    } cases[] = {
        { "{\"0-a\": {\"frameType\": \"DEFAULT\", \"withdrawal\": true}}", "false" },
        { "{\"0-x\": {\"frameType\": \"EXIT\", \"withdrawal\": true}}", "true" },
        { "{\"0-x\": {\"frameType\": \"EXIT\", \"withdrawal\": false}}", "false" },
        { "{\"0-x\": {\"frameType\": \"\\u0045XIT\", \"withdrawal\": true}}", "true" },
        { "{\"0-x\": {\"frameType\": \"E\\u0058IT\", \"withdrawal\": true}}", "true" },
        { "{\"EXITS\": {\"frameType\": \"EXITS\", \"withdrawal\": true}}", "false" },
    };
    struct world w;
    char uuid[37], path[96], body[1024];

    world(&w);
    snprintf(uuid, sizeof uuid, "%s", created(&w));
    snprintf(path, sizeof path, "/api/v1/responses/%s/", uuid);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct unit_reply *r;
        snprintf(body, sizeof body, "{\"data\": {\"type\": \"responses\", \"id\": \"%s\","
                 " \"attributes\": {\"exp_data\": %s}}}", uuid, cases[i].exp_data);
        r = unit_req(w.u, w.ann, "PATCH", path, body);
        ck_assert_int_eq(r->status, 200);
        ck_assert_msg(strcmp(unit_json(r, "data.attributes.withdrawn"), cases[i].withdrawn) == 0,
                      "case %zu: withdrawn %s", i, unit_json(r, "data.attributes.withdrawn"));
    }
    unit_app_stop(w.u);
}
END_TEST

START_TEST(past_sessions_and_study_responses)
{
    struct world w;
    const struct unit_reply *r;
    char uuid[37], path[128];

    world(&w);
    snprintf(uuid, sizeof uuid, "%s", created(&w));
    /* The sessions of the same child and study as a response of Ann's,
     * the newest first; unknown to Bob. */
    char second[37];
    snprintf(second, sizeof second, "%s", created(&w));
    snprintf(path, sizeof path, "/api/v1/past-sessions/%s/", uuid);
    r = unit_req(w.u, w.ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int)json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_str_eq(unit_json(r, "data.0.id"), second);
    ck_assert_str_eq(unit_json(r, "data.1.id"), uuid);
    r = unit_req(w.u, w.bob, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);

    /* A family reads its own responses of a study; not another's. */
    snprintf(path, sizeof path, "/api/v1/studies/%s/responses/", w.study);
    r = unit_req(w.u, w.ann, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "2");
    r = unit_req(w.u, w.bob, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "0");
    r = unit_req(w.u, w.ann, "GET", "/api/v1/studies/nope/responses/", NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(w.u);
}
END_TEST

static Suite *responses_suite(void)
{
    Suite *s = suite_create("responses");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, create_read_list);
    tcase_add_test(tc, create_refusals);
    tcase_add_test(tc, update_own_only);
    tcase_add_test(tc, withdrawn_by_the_exit_frame);
    tcase_add_test(tc, big_documents_are_read_right);
    tcase_add_test(tc, date_modified_moves_on_every_update);
    tcase_add_test(tc, past_sessions_and_study_responses);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_responses", responses_suite());
}
