/* Unit tests of domain/video_zips through the HTTP stack (unit_app): a
 * reader of a study's responses queues a zip of its videos (202, a task
 * of kind video_zip with the set's size); the same set again is a 409
 * naming the task; the consent-only set is its own; the caller's zips are
 * listed; a study with nothing to zip is a 400; to an outsider the study
 * does not exist (404, list and request); consent_only must be a boolean. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/domain/videos.h"
#include "studyhub/domain/videos_internal.h"
#include "unit_app.h"

static const unit_routes_fn routes[] = { video_zips_routes, NULL };

struct world {
    struct unit_app *u;
    struct unit_user *reader, *viewer, *outsider;
    char study[37];
    int64_t study_id;
};

static void world(struct world *w, int videos)
{
    struct unit_user *fam;
    int64_t resp;

    w->u = unit_app_start(routes, NULL);
    fam = unit_user(w->u, "fam", 0);
    w->reader = unit_user(w->u, "reader", UNIT_RESEARCHER);
    w->viewer = unit_user(w->u, "viewer", UNIT_RESEARCHER);
    w->outsider = unit_user(w->u, "outsider", UNIT_RESEARCHER);
    w->study_id = unit_study(w->u, unit_lab(w->u, "lab", NULL), "active", true, w->study);
    unit_study_member(w->u, w->study_id, w->reader, "admin");
    unit_study_member(w->u, w->study_id, w->viewer, "preview");
    resp = unit_response(w->u, unit_child(w->u, fam, "A", 400, NULL), w->study_id, false, true,
                         NULL);
    for (int i = 0; i < videos; i++)
        unit_sql(w->u, "INSERT INTO videos (full_name, study_id, response_id, is_consent_footage)"
                 " VALUES ('videoStream_%s_%d_%lld.mp4', %lld, %lld, %s)", w->study, i,
                 (long long)resp, (long long)w->study_id, (long long)resp,
                 i == 0 ? "true" : "false");
}

START_TEST(queue_then_list)
{
    struct world w;
    const struct unit_reply *r;
    char path[128], task[37];

    world(&w, 3);
    snprintf(path, sizeof path, "/api/v1/studies/%s/video-zips/", w.study);
    r = unit_req(w.u, w.reader, "POST", path, NULL);
    ck_assert_int_eq(r->status, 202);
    ck_assert_str_eq(unit_json(r, "data.type"), "tasks");
    ck_assert_str_eq(unit_json(r, "data.attributes.kind"), VIDEO_ZIP_KIND);
    ck_assert_str_eq(unit_json(r, "data.attributes.videos"), "3");
    ck_assert_str_eq(unit_json(r, "data.attributes.consent_only"), "false");
    snprintf(task, sizeof task, "%s", unit_json(r, "data.id"));
    ck_assert_str_eq(unit_json(r, "data.attributes.state"), "queued");
    ck_assert_int_eq(unit_sql_int(w.u, "SELECT (payload->>'user')::bigint FROM tasks"
                                  " WHERE uuid = '%s' AND state = 'queued'", task),
                     w.reader->id);

    /* The same set again: that task. */
    snprintf(path, sizeof path, "/api/v1/studies/%s/video-zips/", w.study);
    r = unit_req(w.u, w.reader, "POST", path, NULL);
    ck_assert_int_eq(r->status, 409);
    ck_assert_str_eq(unit_json(r, "errors.0.meta.task"), task);
    /* The consent videos are another set. */
    r = unit_req_h(w.u, w.reader, "POST", path, "Content-Type: application/json",
                   "{\"consent_only\": true}");
    ck_assert_int_eq(r->status, 202);
    ck_assert_str_eq(unit_json(r, "data.attributes.videos"), "1");

    r = unit_req(w.u, w.reader, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int)json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_str_eq(unit_json(r, "data.1.id"), task);
    ck_assert_str_eq(unit_json(r, "data.1.attributes.state"), "queued");
    /* Another researcher's list holds none of them. */
    unit_study_member(w.u, w.study_id, w.outsider, "analysis");
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int)json_array_size(json_object_get(r->json, "data")), 0);
    unit_app_stop(w.u);
}
END_TEST

START_TEST(refusals)
{
    struct world w;
    const struct unit_reply *r;
    char path[128];

    world(&w, 1);
    snprintf(path, sizeof path, "/api/v1/studies/%s/video-zips/", w.study);
    r = unit_req(w.u, w.viewer, "GET", path, NULL);
    ck_assert_int_eq(r->status, 200);            /* previews: it may read preview videos */
    /* An outsider: the study is not there for them, listed or zipped. */
    r = unit_req(w.u, w.outsider, "GET", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req(w.u, w.outsider, "POST", path, NULL);
    ck_assert_int_eq(r->status, 404);
    r = unit_req_h(w.u, w.reader, "POST", path, "Content-Type: application/json",
                   "{\"consent_only\": \"yes\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.source.pointer"), "/data/attributes/consent_only");
    r = unit_req(w.u, w.reader, "POST", "/api/v1/studies/nope/video-zips/", NULL);
    ck_assert_int_eq(r->status, 404);
    ck_assert_str_eq(unit_sql(w.u, "SELECT count(*) FROM tasks WHERE subject LIKE '%s:%%'",
                              w.study), "0");
    unit_app_stop(w.u);

    /* Nothing to zip. */
    world(&w, 0);
    snprintf(path, sizeof path, "/api/v1/studies/%s/video-zips/", w.study);
    r = unit_req(w.u, w.reader, "POST", path, NULL);
    ck_assert_int_eq(r->status, 400);
    ck_assert_str_eq(unit_json(r, "errors.0.code"), "no_videos");
    unit_app_stop(w.u);
}
END_TEST

static Suite *video_zips_suite(void)
{
    Suite *s = suite_create("video_zips");
    TCase *tc = tcase_create("routes");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, queue_then_list);
    tcase_add_test(tc, refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_video_zips", video_zips_suite());
}
