/* Unit tests of video_pipe: reading the webhook's form body (percent and
 * plus decoding, a name that only looks like the field, empty values) and
 * Pipe's signature (HMAC-SHA1 of URL + payload, base64), against a value
 * computed with Python's hmac module. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/videos_internal.h"
#include "unit_main.h"

START_TEST(form_fields)
{
    const char *body = "x=1&payload=%7B%22a%22%3A1%7D+ok&pay=no&empty=&payload2=z";
    char *v = video_form_field(body, strlen(body), "payload");

    ck_assert_str_eq(v, "{\"a\":1} ok");
    free(v);
    ck_assert_ptr_null(video_form_field(body, strlen(body), "empty"));
    ck_assert_ptr_null(video_form_field(body, strlen(body), "missing"));
    v = video_form_field(body, strlen(body), "payload2");
    ck_assert_str_eq(v, "z");
    free(v);
    /* A NUL smuggled in by %00 is refused, not cut short. */
    const char *nul = "payload=ab%00cd";
    ck_assert_ptr_null(video_form_field(nul, strlen(nul), "payload"));
    /* A bad escape stays as it is. */
    const char *bad = "payload=%zz";
    v = video_form_field(bad, strlen(bad), "payload");
    ck_assert_str_eq(v, "%zz");
    free(v);
}
END_TEST

START_TEST(signature)
{
    const char *url = "http://127.0.0.1:8000/exp/renamevideo/";
    /* base64(HMAC-SHA1("pipe-key", url + payload)), from Python. */
    const char *good = "zyAkfifi/b9TPPBuX73AQG9daEk=";

    ck_assert(video_pipe_sig_matches("pipe-key", url, "{\"a\":1}", good));
    ck_assert(!video_pipe_sig_matches("pipe-key", url, "{\"a\":2}", good));
    ck_assert(!video_pipe_sig_matches("other-key", url, "{\"a\":1}", good));
    ck_assert(!video_pipe_sig_matches("pipe-key", "http://evil/exp/renamevideo/", "{\"a\":1}",
                                      good));
    ck_assert(!video_pipe_sig_matches("pipe-key", url, "{\"a\":1}", ""));
    ck_assert(!video_pipe_sig_matches("pipe-key", url, "{\"a\":1}", "zyAkfifi/b9TPPBuX73AQG9daEk"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("video_pipe");
    TCase *tc = tcase_create("pipe");

    tcase_add_test(tc, form_fields);
    tcase_add_test(tc, signature);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
