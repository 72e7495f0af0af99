/* Unit tests of domain/labs through the HTTP stack (unit_app): a
 * researcher creates a lab (unapproved, its admin); its admin edits it, a
 * read-only member may not (403), a site admin approves it and the lab's
 * own admin may not; a researcher asks to join, the admin takes them in,
 * changes their group and removes them; the input checks; and a family
 * account may not create labs. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/domain/labs.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { labs_routes, NULL };

static const char *lab_doc(const char *id, const char *attrs)
{
    static char b[512];

    if (id)
        snprintf(b, sizeof b, "{\"data\": {\"type\": \"labs\", \"id\": \"%s\", \"attributes\": %s}}",
                 id, attrs);
    else
        snprintf(b, sizeof b, "{\"data\": {\"type\": \"labs\", \"attributes\": %s}}", attrs);
    return b;
}

START_TEST(create_edit_approve)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *viewer = unit_user(u, "viewer", UNIT_RESEARCHER);
    struct unit_user *site = unit_user(u, "site", UNIT_SITE_ADMIN);
    const struct unit_reply *r;
    char lab[37], path[96], name[64];

    snprintf(name, sizeof name, "Baby Lab %d", (int)getpid());
    {
        char attrs[128];

        snprintf(attrs, sizeof attrs, "{\"name\": \"%s\", \"institution\": \"MIT\"}", name);
        r = unit_req(u, res, "POST", "/api/v1/labs/", lab_doc(NULL, attrs));
    }
    ck_assert_int_eq(r->status, 201);
    snprintf(lab, sizeof lab, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_json(r, "data.attributes.name"), name);
    ck_assert_str_eq(unit_json(r, "data.attributes.approved_to_test"), "false");
    ck_assert_str_eq(unit_sql(u, "SELECT m.role FROM lab_members m JOIN labs l ON l.id = m.lab_id"
                              " WHERE l.uuid = '%s' AND m.user_id = %lld", lab,
                              (long long)res->id), "admin");
    unit_lab_member(u, unit_sql_int(u, "SELECT id FROM labs WHERE uuid = '%s'", lab), viewer,
                    "readonly");

    snprintf(path, sizeof path, "/api/v1/labs/%s/", lab);
    r = unit_req(u, res, "PATCH", path, lab_doc(lab, "{\"institution\": \"Harvard\"}"));
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.attributes.institution"), "Harvard");
    r = unit_req(u, viewer, "PATCH", path, lab_doc(lab, "{\"institution\": \"Yale\"}"));
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_sql(u, "SELECT institution FROM labs WHERE uuid = '%s'", lab),
                     "Harvard");

    /* Approval is the site reviewers' alone. */
    r = unit_req(u, res, "PATCH", path, lab_doc(lab, "{\"approved_to_test\": true}"));
    ck_assert_int_eq(r->status, 403);
    r = unit_req(u, site, "PATCH", path, lab_doc(lab, "{\"approved_to_test\": true}"));
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_sql(u, "SELECT approved_to_test FROM labs WHERE uuid = '%s'", lab), "t");

    snprintf(path, sizeof path, "/api/v1/researcher/labs/%s/", lab);
    r = unit_req(u, viewer, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "data.id"), lab);
    unit_app_stop(u);
}
END_TEST

START_TEST(create_refusals)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *res = unit_user(u, "res", UNIT_RESEARCHER);
    struct unit_user *family = unit_user(u, "family", 0);
    const struct unit_reply *r;

    r = unit_req(u, res, "POST", "/api/v1/labs/", lab_doc(NULL, "{\"institution\": \"MIT\"}"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/name");
    r = unit_req(u, res, "POST", "/api/v1/labs/",
                 lab_doc(NULL, "{\"name\": \"L\", \"approved_to_test\": true}"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/approved_to_test");
    r = unit_req(u, res, "POST", "/api/v1/labs/", lab_doc(NULL, "{\"name\": 7}"));
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/name");
    /* A family account is no researcher: it may not create labs. */
    r = unit_req(u, family, "POST", "/api/v1/labs/", lab_doc(NULL, "{\"name\": \"Fam lab\"}"));
    ck_assert_int_eq(r->status, 403);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM lab_members WHERE user_id IN (%lld, %lld)",
                              (long long)res->id, (long long)family->id), "0");
    r = unit_req(u, res, "PATCH", "/api/v1/labs/00000000-0000-4000-8000-000000000000/",
                 lab_doc("00000000-0000-4000-8000-000000000000", "{\"name\": \"x\"}"));
    ck_assert_int_eq(r->status, 404);
    unit_app_stop(u);
}
END_TEST

START_TEST(join_and_membership)
{
    struct unit_app *u = unit_app_start(routes, NULL);
    struct unit_user *admin = unit_user(u, "admin", UNIT_RESEARCHER);
    struct unit_user *joiner = unit_user(u, "joiner", UNIT_RESEARCHER);
    const struct unit_reply *r;
    char lab[37], path[160], body[384];
    int64_t lab_id = unit_lab(u, "lab", lab);

    unit_lab_member(u, lab_id, admin, "admin");
    snprintf(path, sizeof path, "/api/v1/labs/%s/join-requests/", lab);
    r = unit_req(u, joiner, "POST", path, NULL);
    ck_assert_msg(r->status == 201, "%d %s", r->status, r->body);
    /* The joiner may not read the requests; the admin sees theirs. */
    r = unit_req(u, joiner, "GET", path, NULL);
    ck_assert_int_eq(r->status, 403);
    r = unit_req(u, admin, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "1");

    snprintf(path, sizeof path, "/api/v1/labs/%s/members/", lab);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"lab-members\", \"attributes\":"
             " {\"group\": \"member\"}, \"relationships\": {\"user\": {\"data\":"
             " {\"type\": \"users\", \"id\": \"%s\"}}}}}", joiner->uuid);
    r = unit_req(u, joiner, "POST", path, body);
    ck_assert_int_eq(r->status, 403);
    r = unit_req(u, admin, "POST", path, body);
    ck_assert_msg(r->status == 201, "%d %s", r->status, r->body);
    ck_assert_str_eq(unit_sql(u, "SELECT role FROM lab_members WHERE lab_id = %lld AND user_id = %lld",
                              (long long)lab_id, (long long)joiner->id), "member");
    r = unit_req(u, joiner, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_json(r, "links.meta.count"), "2");

    snprintf(path, sizeof path, "/api/v1/labs/%s/members/%s/", lab, joiner->uuid);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"lab-members\", \"id\": \"%s\","
             " \"attributes\": {\"group\": \"owner\"}}}", joiner->uuid);
    r = unit_req(u, admin, "PATCH", path, body);
    ck_assert_int_eq(r->status, 400);
    snprintf(body, sizeof body, "{\"data\": {\"type\": \"lab-members\", \"id\": \"%s\","
             " \"attributes\": {\"group\": \"readonly\"}}}", joiner->uuid);
    r = unit_req(u, admin, "PATCH", path, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(unit_sql(u, "SELECT role FROM lab_members WHERE lab_id = %lld AND user_id = %lld",
                              (long long)lab_id, (long long)joiner->id), "readonly");
    r = unit_req(u, admin, "DELETE", path, NULL);
    ck_assert_int_eq(r->status, 204);
    ck_assert_str_eq(unit_sql(u, "SELECT count(*) FROM lab_members WHERE lab_id = %lld"
                              " AND user_id = %lld", (long long)lab_id, (long long)joiner->id),
                     "0");
    unit_app_stop(u);
}
END_TEST

static Suite *labs_suite(void)
{
    Suite *s = suite_create("labs");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, create_edit_approve);
    tcase_add_test(tc, create_refusals);
    tcase_add_test(tc, join_and_membership);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_labs", labs_suite());
}
