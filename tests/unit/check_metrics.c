/* Unit tests of metrics: counters by route and status class and the
 * latency histogram, as Prometheus text. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/metrics.h"
#include "unit_main.h"

static char *render(const struct metrics *m)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *text;

    metrics_render(m, b);
    n = evbuffer_get_length(b);
    text = malloc(n + 1);
    evbuffer_remove(b, text, n);
    text[n] = '\0';
    evbuffer_free(b);
    return text;
}

START_TEST(counts_and_histogram)
{
    static const char route[] = "/api/v1/studies/{id}/";
    struct metrics *m = metrics_new();

    for (int i = 0; i < 3; i++)
        metrics_observe_request(m, route, 200, 0.002);
    metrics_observe_request(m, route, 404, 0.004);
    metrics_observe_request(m, "unmatched", 404, 0.5);
    char *text = render(m);

    ck_assert_ptr_nonnull(strstr(text, "# TYPE"));
    ck_assert_ptr_nonnull(strstr(text, route));
    ck_assert_ptr_nonnull(strstr(text, "unmatched"));
    /* Every line is a comment or "name{labels} value" / "name value". */
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        ck_assert_msg(sp && sp[1], "no value: %s", line);
        char *end;
        strtod(sp + 1, &end);
        ck_assert_msg(*end == '\0', "value not a number: %s", line);
    }
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(empty_renders)
{
    struct metrics *m = metrics_new();
    char *text = render(m);

    ck_assert_ptr_nonnull(text);
    free(text);
    metrics_free(m);
    metrics_free(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_test(tc, counts_and_histogram);
    tcase_add_test(tc, empty_renders);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
