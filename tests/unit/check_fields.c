/* Unit tests of fields: real calendar days, each kind of field, unknown
 * and read-only attributes, required fields, and every error at once. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/fields.h"
#include "unit_main.h"

static const char *const colours[] = { "", "red", "blue", NULL };

static const struct field table[] = {
    { "name", F_TEXT, FIELD_REQUIRED | FIELD_NONEMPTY, 0, 8, NULL },
    { "day", F_DATE, FIELD_PAST, 0, 0, NULL },
    { "colour", F_CHOICE, 0, 0, 0, colours },
    { "weeks", F_INT, FIELD_NULLABLE, 23, 40, NULL },
    { "ok", F_BOOL, 0, 0, 0, NULL },
    { "langs", F_WORDS, 0, 0, 3, NULL },
    { "days", F_DATE_LIST, FIELD_PAST, 0, 2, NULL },
    { "colours", F_CHOICE_LIST, 0, 0, 3, colours },
    { "extra", F_OBJECT, 0, 0, 20, NULL },
    { "pk", F_READONLY, 0, 0, 0, NULL },
};
#define N (sizeof table / sizeof table[0])

static int parse(const char *text, bool create, struct field_values *v,
                 struct jsonapi_error *errs)
{
    json_t *attrs = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(attrs);
    int n = fields_parse(attrs, table, N, create, "2024-06-01", v, errs);
    json_decref(attrs);
    return n;
}

START_TEST(dates)
{
    ck_assert(fields_date_ok("2024-02-29"));
    ck_assert(!fields_date_ok("2023-02-29"));
    ck_assert(fields_date_ok("2000-02-29"));
    ck_assert(!fields_date_ok("1900-02-29"));
    ck_assert(!fields_date_ok("2024-04-31"));
    ck_assert(!fields_date_ok("2024-13-01"));
    ck_assert(!fields_date_ok("2024-1-01"));
    ck_assert(!fields_date_ok("1899-12-31"));
    ck_assert(!fields_date_ok("2024-06-01T00"));
    char today[11];
    fields_today(today);
    ck_assert(fields_date_ok(today));
}
END_TEST

START_TEST(every_kind)
{
    struct field_values v;
    struct jsonapi_error errs[FIELDS_MAX_ERRORS];
    int n = parse("{\"name\":\"Ada\",\"day\":\"2024-06-01\",\"colour\":\"\",\"weeks\":null,"
                  "\"ok\":false,\"langs\":\" en   fr \",\"days\":[\"2020-01-01\",\"2021-01-01\"],"
                  "\"colours\":[\"red\",\"blue\"],\"extra\":{\"a\":1},\"pk\":7}",
                  true, &v, errs);
    ck_assert_int_eq(n, 0);
    ck_assert_str_eq(v.param[0], "Ada");
    ck_assert_str_eq(v.param[1], "2024-06-01");
    ck_assert_str_eq(v.param[2], "");
    ck_assert_ptr_null(v.param[3]);         /* null is a value */
    ck_assert_str_eq(v.param[4], "f");
    ck_assert_str_eq(v.param[5], "en fr");
    ck_assert_str_eq(v.param[6], "{2020-01-01,2021-01-01}");
    ck_assert_str_eq(v.param[7], "{red,blue}");
    ck_assert_str_eq(v.param[8], "{\"a\":1}");
    ck_assert_ptr_null(v.param[9]);
    ck_assert_uint_eq(v.mask, 0x1ff);       /* pk ignored */
    ck_assert_str_eq(v.mask_text, "511");
    fields_cleanup(&v);
}
END_TEST

START_TEST(every_error_at_once)
{
    struct field_values v;
    struct jsonapi_error errs[FIELDS_MAX_ERRORS];
    int n = parse("{\"name\":\"  \",\"day\":\"2024-06-02\",\"colour\":\"green\",\"weeks\":41,"
                  "\"ok\":\"yes\",\"langs\":\"en;fr\",\"days\":[\"2020-01-01\",\"2020-01-01\"],"
                  "\"colours\":[\"red\",\"red\"],\"extra\":{\"a\":\"0123456789012345\"},"
                  "\"nope\":1}",
                  true, &v, errs);
    ck_assert_int_eq(n, 10);
    const char *want[] = { "name", "day", "colour", "weeks", "ok", "langs", "days", "colours",
                           "extra", "nope" };
    for (int i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "/data/attributes/%s", want[i]);
        ck_assert_str_eq(errs[i].pointer, p);
        ck_assert_int_eq(errs[i].status, 400);
    }
    fields_cleanup(&v);
}
END_TEST

START_TEST(required_only_on_create)
{
    struct field_values v;
    struct jsonapi_error errs[FIELDS_MAX_ERRORS];
    ck_assert_int_eq(parse("{}", true, &v, errs), 1);
    ck_assert_str_eq(errs[0].pointer, "/data/attributes/name");
    fields_cleanup(&v);
    ck_assert_int_eq(parse("{\"colour\":\"red\"}", false, &v, errs), 0);
    ck_assert_uint_eq(v.mask, 4);
    fields_cleanup(&v);
    /* Given but wrong: one error, not two. */
    ck_assert_int_eq(parse("{\"name\":null}", true, &v, errs), 1);
    fields_cleanup(&v);
    ck_assert_int_eq(parse("{\"name\":\"123456789\"}", true, &v, errs), 1);
    fields_cleanup(&v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fields");
    TCase *tc = tcase_create("fields");
    tcase_add_test(tc, dates);
    tcase_add_test(tc, every_kind);
    tcase_add_test(tc, every_error_at_once);
    tcase_add_test(tc, required_only_on_create);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
