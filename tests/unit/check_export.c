/* Unit tests of export's pure parts: CSV quoting (RFC 4180 and formula
 * neutralising), header and rows without the identifiable columns, the
 * data dictionary, formats and file names. */
#include "config.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/export.h"
#include "unit_main.h"

/* The buffer's text (caller frees); the buffer is drained. */
static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

static void field_is(const char *in, const char *want)
{
    struct evbuffer *b = evbuffer_new();
    export_csv_field(b, in, in ? strlen(in) : 0);
    char *got = text_of(b);
    ck_assert_msg(strcmp(got, want) == 0, "field [%s] -> [%s], want [%s]", in ? in : "NULL",
                  got, want);
    free(got);
    evbuffer_free(b);
}

START_TEST(csv_quoting)
{
    field_is("plain", "plain");
    field_is("", "");
    field_is(NULL, "");
    field_is("a,b", "\"a,b\"");
    field_is("say \"hi\"", "\"say \"\"hi\"\"\"");
    field_is("\"", "\"\"\"\"");
    field_is("two\nlines", "\"two\nlines\"");
    field_is("cr\r", "\"cr\r\"");
    field_is(" lead", "\" lead\"");
    field_is("trail ", "\"trail \"");
    field_is("caf\xc3\xa9", "caf\xc3\xa9");
}
END_TEST

START_TEST(csv_formulas_neutralised_numbers_kept)
{
    field_is("=1+1", "\"'=1+1\"");
    field_is("+cmd", "\"'+cmd\"");
    field_is("@SUM(A1)", "\"'@SUM(A1)\"");
    field_is("-x", "\"'-x\"");
    field_is("=\"q\"", "\"'=\"\"q\"\"\"");
    field_is("-3", "-3");
    field_is("+1.5", "+1.5");
    field_is("-2e3", "-2e3");
}
END_TEST

START_TEST(header_and_rows_leave_identifiable_out)
{
    const struct export_format *f = export_format_find("summary.csv");
    ck_assert_ptr_nonnull(f);
    struct evbuffer *b = evbuffer_new();
    export_csv_header(b, f, false);
    char *h = text_of(b);
    ck_assert_ptr_null(strstr(h, "child_name"));
    ck_assert_ptr_null(strstr(h, "child_birthday"));
    ck_assert_ptr_nonnull(strstr(h, "child_hashed_id"));
    ck_assert(strncmp(h, "response_uuid,", 14) == 0);
    ck_assert_str_eq(h + strlen(h) - 2, "\r\n");
    free(h);
    export_csv_header(b, f, true);
    h = text_of(b);
    ck_assert_ptr_nonnull(strstr(h, "child_name"));
    free(h);

    const char *fields[64];
    size_t lens[64];
    for (size_t i = 0; i < f->ncolumns; i++) {
        fields[i] = f->columns[i].identifiable ? "SECRET" : "x";
        lens[i] = strlen(fields[i]);
    }
    export_csv_row(b, f, false, fields, lens);
    char *row = text_of(b);
    ck_assert_ptr_null(strstr(row, "SECRET"));
    export_csv_row(b, f, true, fields, lens);
    free(row);
    row = text_of(b);
    ck_assert_ptr_nonnull(strstr(row, "SECRET"));
    free(row);
    evbuffer_free(b);
}
END_TEST

START_TEST(dictionary_lists_every_column)
{
    const struct export_format *f = export_format_find("frames-dictionary.csv");
    ck_assert_ptr_nonnull(f);
    struct evbuffer *b = evbuffer_new();
    export_dictionary(b, f);
    char *d = text_of(b);
    ck_assert(strncmp(d, "column,description,identifiable\r\n", 33) == 0);
    for (size_t i = 0; i < f->ncolumns; i++)
        ck_assert_ptr_nonnull(strstr(d, f->columns[i].name));
    ck_assert_ptr_nonnull(strstr(d, "event_number,"));
    free(d);
    /* every CSV has its dictionary with the same columns */
    static const char *pairs[][2] = { { "summary.csv", "summary-dictionary.csv" },
                                      { "children.csv", "children-dictionary.csv" },
                                      { "frames.csv", "frames-dictionary.csv" },
                                      { "demographics.csv", "demographics-dictionary.csv" } };
    for (size_t i = 0; i < 4; i++) {
        const struct export_format *a = export_format_find(pairs[i][0]);
        const struct export_format *z = export_format_find(pairs[i][1]);
        ck_assert_ptr_eq(a->columns, z->columns);
        ck_assert_uint_eq(a->ncolumns, z->ncolumns);
    }
    evbuffer_free(b);
}
END_TEST

START_TEST(formats_and_names)
{
    char name[160];
    ck_assert_ptr_null(export_format_find("../etc/passwd"));
    ck_assert_ptr_null(export_format_find(NULL));
    const struct export_format *f = export_format_find("responses.json");
    export_file_name(f, "0b5d3c1e-0000-4000-8000-000000000000", false, name, sizeof name);
    ck_assert_str_eq(name, "0b5d3c1e-0000-4000-8000-000000000000-responses.json");
    export_file_name(f, "0b5d3c1e-0000-4000-8000-000000000000", true, name, sizeof name);
    ck_assert_str_eq(name, "0b5d3c1e-0000-4000-8000-000000000000-responses-identifiable.json");
    f = export_format_find("summary-dictionary.csv");
    export_file_name(f, "s", true, name, sizeof name);
    ck_assert_str_eq(name, "s-summary-dictionary.csv");
}
END_TEST

START_TEST(frame_rows_unroll_exp_data)
{
    struct evbuffer *b = evbuffer_new();
    const char *ed =
        "{\"0-consent\":{\"frameType\":\"CONSENT\",\"eventTimings\":"
        "[{\"eventType\":\"start\",\"streamTime\":1.5},{\"eventType\":\"stop\"}]},"
        "\"1-q\":{\"answer\":\"a, \\\"b\\\"\",\"n\":[1, 2]},"
        "\"2-exit\":{\"withdrawal\":true,\"feedback\":\"my name is Sally\","
        "\"birthDate\":\"2024-01-02\"},"
        "\"3-empty\":{}}";

    ck_assert_int_eq(export_frame_rows(b, "R", "H", ed, strlen(ed), false), 8);
    char *t = text_of(b);
    ck_assert_str_eq(t,
        "R,H,0-consent,,frameType,CONSENT\r\n"
        "R,H,0-consent,1,eventType,start\r\n"
        "R,H,0-consent,1,streamTime,1.5\r\n"
        "R,H,0-consent,2,eventType,stop\r\n"
        "R,H,1-q,,answer,\"a, \"\"b\"\"\"\r\n"
        "R,H,1-q,,n,\"[1, 2]\"\r\n"
        "R,H,2-exit,,withdrawal,true\r\n"
        "R,H,3-empty,,,\r\n");
    free(t);
    /* identifiable: the free text is there */
    ck_assert_int_eq(export_frame_rows(b, "R", "H", ed, strlen(ed), true), 10);
    t = text_of(b);
    ck_assert_ptr_nonnull(strstr(t, "R,H,2-exit,,feedback,my name is Sally\r\n"));
    ck_assert_ptr_nonnull(strstr(t, "R,H,2-exit,,birthDate,2024-01-02\r\n"));
    free(t);
    /* jsPsych: an array of trials, numbered from 0 */
    const char *js = "[{\"rt\":350},{\"rt\":410,\"response\":\"j\"}]";
    ck_assert_int_eq(export_frame_rows(b, "R", "H", js, strlen(js), false), 3);
    t = text_of(b);
    ck_assert_str_eq(t, "R,H,0,,rt,350\r\nR,H,1,,rt,410\r\nR,H,1,,response,j\r\n");
    free(t);
    /* Escaped keys are unescaped (and a free-text key written with an
     * escape is still free text); the frame's name is CSV-quoted. */
    const char *esc = "{\"a\\\"b\":{\"k\\u0065y\":1,\"feed\\u0062ack\":\"x\"}}";
    ck_assert_int_eq(export_frame_rows(b, "R", "H", esc, strlen(esc), false), 1);
    t = text_of(b);
    ck_assert_str_eq(t, "R,H,\"a\"\"b\",,key,1\r\n");
    free(t);
    /* Event numbers past 9, and a value larger than a block of output. */
    {
        char big[60000], *p = big;
        size_t vlen = 40000;
        p += sprintf(p, "{\"f\":{\"text\":\"");
        memset(p, 'x', vlen);
        p += vlen;
        p += sprintf(p, "\",\"eventTimings\":[");
        for (int i = 0; i < 12; i++)
            p += sprintf(p, "%s{\"e\":%d}", i ? "," : "", i + 1);
        sprintf(p, "]}}");
        ck_assert_int_eq(export_frame_rows(b, "R", "H", big, strlen(big), false), 13);
        t = text_of(b);
        ck_assert_uint_eq(strlen(t), strlen("R,H,f,,text,\r\n") + vlen
                                     + 9 * strlen("R,H,f,1,e,1\r\n")
                                     + 3 * strlen("R,H,f,10,e,10\r\n"));
        ck_assert_ptr_nonnull(strstr(t, "xxx\r\nR,H,f,1,e,1\r\n"));
        ck_assert_ptr_nonnull(strstr(t, "R,H,f,12,e,12\r\n"));
        free(t);
    }
    /* not JSON: nothing */
    ck_assert_int_eq(export_frame_rows(b, "R", "H", "{oops", 5, false), -1);
    ck_assert_uint_eq(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}
END_TEST

START_TEST(exp_data_loses_free_text_unless_identifiable)
{
    struct evbuffer *b = evbuffer_new();
    const char *plain = "{\"0-a\": {\"answer\": \"cats\"}}";
    const char *ed =
        "{\"1-q\": {\"answer\": \"cats\", \"n\": [1, 2]},"
        " \"2-exit\": {\"withdrawal\": true, \"feedback\": \"my name is Sally\","
        " \"birthDate\": \"2024-01-02\", \"childName\": \"Sally\"}, \"x\": 3}";
    const char *escaped = "{\"e\":{\"birth\\u0044ate\":\"2024\",\"k\":1}}";
    const char *js = "[{\"rt\":350,\"feedback\":\"hi\"},2]";
    char *t;

    /* Nothing to drop: the text as stored, byte for byte. */
    ck_assert_int_eq(export_exp_data(b, plain, strlen(plain), false), 0);
    t = text_of(b);
    ck_assert_str_eq(t, plain);
    free(t);
    ck_assert_int_eq(export_exp_data(b, ed, strlen(ed), true), 0);
    t = text_of(b);
    ck_assert_str_eq(t, ed);
    free(t);
    ck_assert_int_eq(export_exp_data(b, ed, strlen(ed), false), 0);
    t = text_of(b);
    ck_assert_str_eq(t, "{\"1-q\":{\"answer\":\"cats\",\"n\":[1, 2]},"
                        "\"2-exit\":{\"withdrawal\":true},\"x\":3}");
    free(t);
    /* A key spelt with escapes is still that key. */
    ck_assert_int_eq(export_exp_data(b, escaped, strlen(escaped), false), 0);
    t = text_of(b);
    ck_assert_str_eq(t, "{\"e\":{\"k\":1}}");
    free(t);
    ck_assert_int_eq(export_exp_data(b, js, strlen(js), false), 0);
    t = text_of(b);
    ck_assert_str_eq(t, "[{\"rt\":350},2]");
    free(t);
    ck_assert_int_eq(export_exp_data(b, "{\"feedback\" oops", 16, false), -1);
    ck_assert_uint_eq(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_test(tc, csv_quoting);
    tcase_add_test(tc, csv_formulas_neutralised_numbers_kept);
    tcase_add_test(tc, header_and_rows_leave_identifiable_out);
    tcase_add_test(tc, dictionary_lists_every_column);
    tcase_add_test(tc, formats_and_names);
    tcase_add_test(tc, frame_rows_unroll_exp_data);
    tcase_add_test(tc, exp_data_loses_free_text_unless_identifiable);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
