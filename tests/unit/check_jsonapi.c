/* Unit tests of the JSON helpers: error documents, resources,
 * relationships, uuid checks and page arithmetic. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/jsonapi.h"
#include "unit_main.h"

START_TEST(error_document_shape)
{
    struct jsonapi_error e;
    jsonapi_error_set(&e, 400, "required", "/data/relationships/child", "This field is required.");
    json_t *doc = jsonapi_error_doc(&e);
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(s, "{\"errors\":[{\"code\":\"required\",\"detail\":\"This field is required.\","
                        "\"source\":{\"pointer\":\"/data/relationships/child\"},\"status\":\"400\"}]}");
    free(s);
    json_decref(doc);
    /* 404s carry no source. */
    jsonapi_error_set(&e, 404, "not_found", NULL, "Not found.");
    doc = jsonapi_error_doc(&e);
    ck_assert_ptr_null(json_object_get(json_array_get(json_object_get(doc, "errors"), 0), "source"));
    json_decref(doc);
}
END_TEST

START_TEST(resource_shape)
{
    json_t *rels = json_pack("{s:o}", "responses",
                             jsonapi_rel_link("http://h/api/v1/studies/x/responses/"));
    json_t *r = jsonapi_resource("studies", "x", json_pack("{s:s}", "name", "S"), rels,
                                 "http://h/api/v1/studies/x/");
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(s, "{\"attributes\":{\"name\":\"S\"},\"id\":\"x\",\"links\":{\"self\":"
                        "\"http://h/api/v1/studies/x/\"},\"relationships\":{\"responses\":{\"links\":"
                        "{\"related\":\"http://h/api/v1/studies/x/responses/\"}}},\"type\":\"studies\"}");
    free(s);
    json_decref(r);
    json_t *d = jsonapi_rel_data("children", "c", NULL);
    s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(s, "{\"data\":{\"id\":\"c\",\"type\":\"children\"},\"links\":{\"related\":null}}");
    free(s);
    json_decref(d);
}
END_TEST

START_TEST(relationship_ids)
{
    struct jsonapi_error e;
    const char *id;
    json_t *data = json_loads("{\"relationships\":{\"child\":{\"data\":{\"type\":\"children\",\"id\":\"c1\"}},"
                              "\"study\":{\"data\":{\"type\":\"labs\",\"id\":\"s1\"}},"
                              "\"bad\":{\"data\":[1]},\"noid\":{\"data\":{\"type\":\"x\"}}}}", 0, NULL);
    ck_assert_int_eq(jsonapi_rel_id(data, "child", "children", &id, &e), 1);
    ck_assert_str_eq(id, "c1");
    ck_assert_int_eq(jsonapi_rel_id(data, "missing", "children", &id, &e), 0);
    ck_assert_ptr_null(id);
    ck_assert_int_eq(jsonapi_rel_id(data, "study", "studies", &id, &e), -1);
    ck_assert_int_eq(e.status, 409);
    ck_assert_str_eq(e.pointer, "/data/relationships/study");
    ck_assert_int_eq(jsonapi_rel_id(data, "bad", "x", &id, &e), -1);
    ck_assert_int_eq(e.status, 400);
    ck_assert_int_eq(jsonapi_rel_id(data, "noid", "x", &id, &e), -1);
    ck_assert_int_eq(e.status, 400);
    json_decref(data);
}
END_TEST

START_TEST(uuids)
{
    ck_assert(jsonapi_is_uuid("26edcab0-b578-49e4-9ef3-6f9e5ee32642"));
    ck_assert(!jsonapi_is_uuid("26EDCAB0-b578-49e4-9ef3-6f9e5ee32642"));
    ck_assert(!jsonapi_is_uuid("26edcab0b57849e49ef36f9e5ee32642"));
    ck_assert(!jsonapi_is_uuid("26edcab0-b578-49e4-9ef3-6f9e5ee3264"));
    ck_assert(!jsonapi_is_uuid("26edcab0-b578-49e4-9ef3-6f9e5ee3264g"));
    ck_assert(!jsonapi_is_uuid("../../../../etc/passwd-aaaaaaaaaaaaa"));
    ck_assert(!jsonapi_is_uuid(""));
    ck_assert(!jsonapi_is_uuid(NULL));
}
END_TEST

START_TEST(page_offsets)
{
    struct jsonapi_page p = { 1, 10 };
    ck_assert_int_eq(jsonapi_page_offset(&p), 0);
    p.page = 3;
    ck_assert_int_eq(jsonapi_page_offset(&p), 20);
    p.size = 100;
    ck_assert_int_eq(jsonapi_page_offset(&p), 200);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsonapi");
    TCase *tc = tcase_create("jsonapi");
    tcase_add_test(tc, error_document_shape);
    tcase_add_test(tc, resource_shape);
    tcase_add_test(tc, relationship_ids);
    tcase_add_test(tc, uuids);
    tcase_add_test(tc, page_offsets);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
