/* Unit tests of domain/studymgmt through the HTTP stack (unit_app): a lab
 * member creates a study (its admin, logged), reads, edits and clones it;
 * the groups and their members; the permission rule (cannot read: 404;
 * can read, cannot change: 403; not in the lab: 403 to create); the input
 * checks (a missing name, an unknown attribute, a bad lab); and the gate
 * (two-factor). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/studymgmt.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { studymgmt_routes, NULL };

static const char *create_body(const char *lab, const char *name)
{
    static char b[512];

    snprintf(b, sizeof b, "{\"data\": {\"type\": \"studies\", \"attributes\": {\"name\": \"%s\"},"
             " \"relationships\": {\"lab\": {\"data\": {\"type\": \"labs\", \"id\": \"%s\"}}}}}",
             name, lab);
    return b;
}

START_TEST(create_read_edit_clone)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *other = unit_user(u, "other", UNIT_RESEARCHER);
    const struct unit_reply *r;
    char lab[37], study[37], path[128], body[512];

    unit_lab_member(u, unit_lab(u, "lab", lab), res, "guest");
    r = unit_req(u, res, "POST", "/api/v1/researcher/studies/", create_body(lab, "Cats"));
    ck_assert_int_eq(r->status, 201);
    snprintf(study, sizeof study, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_json(r, "data.attributes.name"), "Cats");
    ck_assert_str_eq(unit_sql(u, "SELECT s.state || ' ' || m.grp FROM studies s JOIN study_members m"
                              " ON m.study_id = s.id WHERE s.uuid = '%s' AND m.user_id = %lld",
                              study, (long long)res->id), "created admin");

    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/", study);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), study);
    r = unit_req(u, other, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);

    snprintf(body, sizeof body, "{\"data\": {\"type\": \"studies\", \"id\": \"%s\","
             " \"attributes\": {\"name\": \"Dogs\", \"short_description\": \"Barks\"}}}", study);
    r = unit_req(u, res, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.name"), "Dogs");
    ck_assert_str_eq(unit_sql(u, "SELECT name || '/' || short_description FROM studies"
                              " WHERE uuid = '%s'", study), "Dogs/Barks");
    r = unit_req(u, other, "PATCH", path, body);
    ck_assert_int_eq(r->status, 404);

    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/logs/", study);
    r = unit_req(u, res, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");
    ck_assert_str_eq(unit_json(r, "data.0.type"), "study-logs");
    ck_assert_str_eq(unit_json(r, "data.0.attributes.action"), "created");
    ck_assert_str_eq(unit_json(r, "data.0.attributes.user.id"), res->uuid);

    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/clone/", study);
    r = unit_req(u, res, "POST", path, NULL);
    ck_assert_int_eq(r->status, 201);
    ck_assert_str_ne(unit_json(r, "data.id"), study);
    ck_assert_str_eq(unit_json(r, "data.attributes.name"), "Copy of Dogs");
    r = unit_req(u, other, "POST", path, NULL);
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);
}
END_TEST

START_TEST(read_but_not_change_is_403)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *viewer = unit_user(u, "viewer", UNIT_RESEARCHER);
    const struct unit_reply *r;
    char study[37], path[128], body[256];
    int64_t id = unit_study(u, unit_lab(u, "lab", NULL), "created", false, study);

    unit_study_member(u, id, viewer, "preview");
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/", study);
    r = unit_req(u, viewer, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"studies\", \"id\": \"%s\","
             " \"attributes\": {\"name\": \"Mine now\"}}}", study);
    r = unit_req(u, viewer, "PATCH", path, body);
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "permission_denied");
    ck_assert_str_ne(unit_sql(u, "SELECT name FROM studies WHERE id = %lld", (long long)id),
                     "Mine now");
    unit_app_stop(u);
}
END_TEST

START_TEST(create_refusals)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *outsider = unit_user(u, "outsider", UNIT_RESEARCHER);
    struct unit_user *lax = unit_user(u, "lax", UNIT_RESEARCHER | UNIT_NO_MFA);
    const struct unit_reply *r;
    char lab[37], body[512];

    unit_lab_member(u, unit_lab(u, "lab", lab), res, "member");
    unit_lab_member(u, unit_sql_int(u, "SELECT id FROM labs WHERE uuid = '%s'", lab), lax,
                    "member");
    r = unit_req(u, outsider, "POST", "/api/v1/researcher/studies/", create_body(lab, "X"));
    ck_assert_int_eq(r->status, 403);
    r = unit_req(u, lax, "POST", "/api/v1/researcher/studies/", create_body(lab, "X"));
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "two_factor_required");

    snprintf(body, sizeof body, "{\"data\": {\"type\": \"studies\", \"attributes\": {},"
             " \"relationships\": {\"lab\": {\"data\": {\"type\": \"labs\", \"id\": \"%s\"}}}}}",
             lab);
    r = unit_req(u, res, "POST", "/api/v1/researcher/studies/", body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/name");
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"studies\", \"attributes\": {\"name\": \"A\","
             " \"colour\": \"red\"}, \"relationships\": {\"lab\": {\"data\": {\"type\": \"labs\","
             " \"id\": \"%s\"}}}}}", lab);
    r = unit_req(u, res, "POST", "/api/v1/researcher/studies/", body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/colour");
    r = unit_req(u, res, "POST", "/api/v1/researcher/studies/",
                 create_body("00000000-0000-4000-8000-000000000000", "A"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/relationships/lab");
    r = unit_req(u, res, "GET", "/api/v1/researcher/studies/?sort=sideways", NULL);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM studies s JOIN labs l ON l.id = s.lab_id"
                              " WHERE l.uuid = '%s'", lab), "0");
    unit_app_stop(u);
}
END_TEST

START_TEST(groups_and_members)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *admin = unit_user(u, "admin", UNIT_RESEARCHER);
    struct unit_user *helper = unit_user(u, "helper", UNIT_RESEARCHER);
    struct unit_user *family = unit_user(u, "family", 0);
    const struct unit_reply *r;
    char study[37], path[192], body[256];
    int64_t lab = unit_lab(u, "lab", NULL);
    int64_t id = unit_study(u, lab, "created", false, study);

    unit_study_member(u, id, admin, "admin");
    unit_lab_member(u, lab, helper, "readonly");
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/groups/", study);
    r = unit_req(u, admin, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);

    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/groups/analysis/members/", study);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"users\", \"id\": \"%s\"}}", helper->uuid);
    r = unit_req(u, admin, "POST", path, body);
    ck_assert_msg(r->status == 201, "%d %s", r->status, r->body);
    ck_assert_str_eq(unit_sql(u, "SELECT string_agg(grp, ',') FROM study_members WHERE study_id = %lld"
                              " AND user_id = %lld", (long long)id, (long long)helper->id),
                     "analysis");
    /* Only researchers can be added; a group that is not one is a 404. */
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"users\", \"id\": \"%s\"}}", family->uuid);
    r = unit_req(u, admin, "POST", path, body);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/id");
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/groups/owners/members/", study);
    r = unit_req(u, admin, "POST", path, body);
    ck_assert_int_eq(r->status, 404);
    /* The helper cannot staff the study. */
    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/groups/analysis/members/", study);
    r = unit_req(u, helper, "POST", path, body);
    ck_assert_int_eq(r->status, 403);

    snprintf(path, sizeof path, "/api/v1/researcher/studies/%s/groups/analysis/members/%s/",
             study, helper->uuid);
    r = unit_req(u, admin, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 204);
    r = unit_req(u, admin, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM study_members WHERE study_id = %lld"
                              " AND user_id = %lld", (long long)id, (long long)helper->id), "0");
    unit_app_stop(u);
}
END_TEST

static Suite *studymgmt_suite(void)
{
    Suite *s = suite_create("studymgmt");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, create_read_edit_clone);
    tcase_add_test(tc, read_but_not_change_is_403);
    tcase_add_test(tc, create_refusals);
    tcase_add_test(tc, groups_and_members);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_studymgmt", studymgmt_suite());
}
