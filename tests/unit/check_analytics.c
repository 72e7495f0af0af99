/* Unit tests of analytics: the checks of a chart request and the CSV of a
 * chart's numbers (suppressed cells, quoting, formulas). */
#include "config.h"

#include <check.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/analytics.h"
#include "unit_main.h"

START_TEST(check_accepts_the_charts)
{
    struct jsonapi_error e;
    ck_assert_int_eq(analytics_check("over-time", NULL, NULL, &e), 0);
    ck_assert_int_eq(analytics_check("ages", NULL, "csv", &e), 0);
    ck_assert_int_eq(analytics_check("genders", NULL, "json", &e), 0);
    ck_assert_int_eq(analytics_check("rates", NULL, NULL, &e), 0);
    for (size_t i = 0; analytics_fields[i]; i++)
        ck_assert_int_eq(analytics_check("demographics", analytics_fields[i], NULL, &e), 0);
}
END_TEST

START_TEST(check_refuses_the_rest)
{
    struct jsonapi_error e;
    ck_assert_int_eq(analytics_check("pie", NULL, NULL, &e), -1);
    ck_assert_int_eq(e.status, 404);
    ck_assert_int_eq(analytics_check("demographics", NULL, NULL, &e), -1);
    ck_assert_int_eq(e.status, 400);
    ck_assert_str_eq(e.code, "required");
    ck_assert_int_eq(analytics_check("demographics", "email", NULL, &e), -1);
    ck_assert_str_eq(e.code, "invalid");
    ck_assert_int_eq(analytics_check("ages", "country", NULL, &e), -1);
    ck_assert_int_eq(e.status, 400);
    ck_assert_int_eq(analytics_check("ages", NULL, "xml", &e), -1);
    ck_assert_int_eq(e.status, 400);
}
END_TEST

static char *csv_of(const char *attrs)
{
    json_t *a = json_loads(attrs, 0, NULL);
    struct evbuffer *out = evbuffer_new();
    char *text = NULL;

    ck_assert_ptr_nonnull(a);
    if (analytics_csv(out, a) == 0) {
        size_t n = evbuffer_get_length(out);
        text = calloc(1, n + 1);
        evbuffer_remove(out, text, n);
    }
    evbuffer_free(out);
    json_decref(a);
    return text;
}

START_TEST(csv_writes_rows_and_suppressed_cells)
{
    char *t = csv_of("{\"chart\":\"demographics\",\"min_cell\":5,"
                     "\"columns\":[\"country\",\"families\"],"
                     "\"rows\":[[\"US\",12],[\"a, b\",null],[\"=cmd()\",7]]}");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, "country,families\r\nUS,12\r\n\"a, b\",<5\r\n\"'=cmd()\",7\r\n");
    free(t);
    /* A rate of nothing is empty, not suppressed. */
    t = csv_of("{\"chart\":\"rates\",\"min_cell\":5,\"columns\":[\"measure\",\"percent\"],"
               "\"rows\":[[\"consent\",null],[\"completion\",33.3]]}");
    ck_assert_str_eq(t, "measure,percent\r\nconsent,\r\ncompletion,33.3\r\n");
    free(t);
    t = csv_of("{\"chart\":\"over-time\",\"columns\":[\"day\",\"responses\"],\"rows\":[]}");
    ck_assert_str_eq(t, "day,responses\r\n");
    free(t);
    ck_assert_ptr_null(csv_of("{\"chart\":\"ages\"}"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("analytics");
    TCase *tc = tcase_create("analytics");
    tcase_add_test(tc, check_accepts_the_charts);
    tcase_add_test(tc, check_refuses_the_rest);
    tcase_add_test(tc, csv_writes_rows_and_suppressed_cells);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
