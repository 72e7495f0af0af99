/* Unit tests of workflow_dot: the plain graph, the study's region of
 * interest (current, previous, reachable; edges from the current state
 * and the one taken into it), roi-only drawing, dot string escaping, and
 * malformed documents. */
#include <check.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/workflow.h"
#include "unit_main.h"

/* A small workflow: a -go-> b -stop-> c, b -back[ok]-> a. */
static const char *const TABLE =
    "{\"states\": [{\"name\": \"a\", \"description\": \"say \\\"hi\\\"\\\\ \\nnow\"},"
    "              {\"name\": \"b\", \"description\": \"B\"},"
    "              {\"name\": \"c\", \"description\": \"C\"}],"
    " \"transitions\": [{\"trigger\": \"go\", \"from\": \"a\", \"to\": \"b\", \"guard\": null},"
    "                   {\"trigger\": \"stop\", \"from\": \"b\", \"to\": \"c\", \"guard\": null},"
    "                   {\"trigger\": \"back\", \"from\": \"b\", \"to\": \"a\", \"guard\": \"ok\"}],"
    " \"study\": %s}";

/* The dot text of TABLE with study (JSON text) drawn; caller frees. */
static char *draw(const char *study, int roi_only, int *rc)
{
    char doc[2048];
    json_error_t err;

    snprintf(doc, sizeof doc, TABLE, study);
    json_t *attrs = json_loads(doc, 0, &err);
    ck_assert_msg(attrs != NULL, "bad fixture: %s", err.text);
    struct evbuffer *out = evbuffer_new();
    *rc = workflow_dot(attrs, roi_only, out);
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    evbuffer_remove(out, text, n);
    text[n] = '\0';
    evbuffer_free(out);
    json_decref(attrs);
    return text;
}

START_TEST(plain_graph)
{
    int rc;
    char *dot = draw("null", 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(dot, "digraph workflow {"));
    ck_assert_ptr_nonnull(strstr(dot, "\"a\" -> \"b\" [label=\"go\"];"));
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" -> \"a\" [label=\"back\\n[ok]\"];"));
    /* Quotes, backslashes and newlines of texts are escaped. */
    ck_assert_ptr_nonnull(strstr(dot, "tooltip=\"say \\\"hi\\\"\\\\ \\nnow\""));
    ck_assert_ptr_null(strstr(dot, "fillcolor"));
    ck_assert_ptr_null(strstr(dot, "gray"));
    free(dot);
    /* roi=1 without a study draws everything. */
    dot = draw("null", 1, &rc);
    ck_assert_ptr_nonnull(strstr(dot, "\"c\" ["));
    free(dot);
}
END_TEST

static const char *const STUDY_AT_B =
    "{\"name\": \"Cats \\\"2\\\"\", \"state\": \"b\", \"previous_state\": \"a\","
    " \"next\": [{\"trigger\": \"stop\", \"to\": \"c\", \"allowed\": true, \"guard_ok\": true},"
    "          {\"trigger\": \"back\", \"to\": \"a\", \"allowed\": false, \"guard_ok\": false}]}";

START_TEST(region_of_interest)
{
    int rc;
    char *dot = draw(STUDY_AT_B, 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(dot, "label=\"Cats \\\"2\\\": b\";"));
    /* current */
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" [tooltip=\"B\", style=\"rounded,filled,bold\""));
    /* previous and reachable */
    ck_assert_ptr_nonnull(strstr(dot, "style=\"rounded,filled,dashed\", fillcolor=\"#a8dadc\""));
    /* reachable only */
    ck_assert_ptr_nonnull(strstr(dot, "\"c\" [tooltip=\"C\", style=\"rounded,filled\","));
    /* the edge taken into b, and the ones out of it */
    ck_assert_ptr_nonnull(strstr(dot, "\"a\" -> \"b\" [label=\"go\", color=\"#457b9d\""));
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" -> \"c\" [label=\"stop\", color=\"#1d3557\","
                                      " fontcolor=\"#1d3557\", penwidth=2];"));
    /* not allowed and guard refused: dashed, says why */
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" -> \"a\" [label=\"back\\n[ok: not yet]\","
                                      " color=\"#1d3557\", fontcolor=\"#1d3557\", penwidth=2,"
                                      " style=dashed];"));
    free(dot);
}
END_TEST

START_TEST(roi_only)
{
    int rc;
    char *dot = draw("{\"name\": \"x\", \"state\": \"c\", \"previous_state\": \"b\", \"next\": []}",
                     1, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(strstr(dot, "\"c\" ["));
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" ["));
    ck_assert_ptr_null(strstr(dot, "\"a\" ["));
    ck_assert_ptr_nonnull(strstr(dot, "\"b\" -> \"c\""));
    ck_assert_ptr_null(strstr(dot, "\"a\" -> \"b\""));
    ck_assert_ptr_null(strstr(dot, "\"b\" -> \"a\""));
    free(dot);
}
END_TEST

START_TEST(malformed)
{
    struct evbuffer *out = evbuffer_new();
    json_t *bad = json_loads("{\"states\": {}, \"transitions\": []}", 0, NULL);
    ck_assert_int_eq(workflow_dot(bad, 0, out), -1);
    json_decref(bad);
    bad = json_loads("{\"states\": [{\"name\": \"a\"}], \"transitions\": [{\"trigger\": \"t\"}]}",
                     0, NULL);
    ck_assert_int_eq(workflow_dot(bad, 0, out), -1);
    json_decref(bad);
    bad = json_loads("{\"states\": [{\"description\": \"no name\"}], \"transitions\": []}", 0, NULL);
    ck_assert_int_eq(workflow_dot(bad, 0, out), -1);
    json_decref(bad);
    evbuffer_free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("workflow");
    TCase *tc = tcase_create("workflow");
    tcase_add_test(tc, plain_graph);
    tcase_add_test(tc, region_of_interest);
    tcase_add_test(tc, roi_only);
    tcase_add_test(tc, malformed);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
