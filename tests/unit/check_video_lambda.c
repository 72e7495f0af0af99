/* Unit tests of video_lambda: the Python-style dump the Lambda signs (key
 * order kept, separators "," and ":", non-ASCII escaped, floats as Python
 * writes them), its HMAC-SHA256 against a value computed with Python, and
 * the snake_case of attribute names. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/videos_internal.h"
#include "unit_main.h"

static const char *ATTRS =
    "{\"pipe_name\":\"vid\",\"frame_id\":\"2-x\",\"size\":1.5,\"n\":[1,null,true],"
    "\"s\":\"caf\\u00e9 \\\"q\\\"\\n\"}";

START_TEST(python_dump)
{
    json_t *v = json_loads(ATTRS, 0, NULL);
    struct evbuffer *out = evbuffer_new();

    ck_assert_ptr_nonnull(v);
    video_py_dump(v, out);
    size_t n = evbuffer_get_length(out);
    char *text = calloc(1, n + 1);
    evbuffer_remove(out, text, n);
    /* What json.dumps(attrs, separators=(",", ":")) printed. */
    ck_assert_str_eq(text, ATTRS);
    free(text);
    evbuffer_free(out);
    json_decref(v);
}
END_TEST

START_TEST(signature)
{
    json_t *v = json_loads(ATTRS, 0, NULL);
    const char *good = "50ed302596cda0cf501e0902a82c8fc7725f71ce9fa9d30e36b37a843155f882";
    char upper[65];

    ck_assert(video_lambda_sig_ok("lambda-key", v, good));
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(good[i] >= 'a' && good[i] <= 'f' ? good[i] - 32 : good[i]);
    ck_assert(video_lambda_sig_ok("lambda-key", v, upper));   /* hex case is free */
    ck_assert(!video_lambda_sig_ok("other-key", v, good));
    ck_assert(!video_lambda_sig_ok("lambda-key", v, "50ed30"));
    json_object_set_new(v, "size", json_real(1.25));
    ck_assert(!video_lambda_sig_ok("lambda-key", v, good));
    json_decref(v);
}
END_TEST

START_TEST(snake_case)
{
    const char *cases[][2] = {
        { "pipeName", "pipe_name" }, { "frameId", "frame_id" }, { "s3Timestamp", "s3_timestamp" },
        { "HTTPResponse", "http_response" }, { "already_snake", "already_snake" },
        { "is-consent", "is_consent" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = video_underscore(cases[i][0]);
        ck_assert_str_eq(s, cases[i][1]);
        free(s);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("video_lambda");
    TCase *tc = tcase_create("lambda");

    tcase_add_test(tc, python_dump);
    tcase_add_test(tc, signature);
    tcase_add_test(tc, snake_case);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
