/* Unit tests of storage (io/storage.c): the key rules, content types by
 * extension, the backends' dispatch (a bad URL refused), and the S3
 * backend's signing and XML handling against canned replies from an
 * in-process evhttp stub on the same loop.  The file:// backend is
 * check_storage_file's, the streamed writer check_storage_writer's, a
 * real S3-compatible server check_storage_s3's. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "studyhub/io/fetch.h"
#include "studyhub/io/storage.h"
#include "unit_storage.h"
#include "unit_stub.h"
#include "unit_main.h"

/* --- the stub's answers ----------------------------------------------------------- */

static void stub_route(struct evhttp_request *req, const char *uri, struct evbuffer *in)
{
    (void)in;

    if (!strncmp(uri, "/bkt?", 5) && strstr(uri, "uploads=")) {
        reply(req, 200,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
              "<Bucket>bkt</Bucket><KeyMarker></KeyMarker><UploadIdMarker/>"
              "<NextKeyMarker>videos/b&amp;c.mp4</NextKeyMarker>"
              "<NextUploadIdMarker>id-2</NextUploadIdMarker><MaxUploads>2</MaxUploads>"
              "<IsTruncated>true</IsTruncated>"
              "<Upload><Key>videos/a.mp4</Key><UploadId>id-1</UploadId>"
              "<Initiator><ID>x</ID></Initiator><Initiated>2013-05-24T00:00:00.000Z</Initiated></Upload>"
              "<Upload><Key>videos/b&amp;c.mp4</Key><UploadId>id-2</UploadId>"
              "<Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>"
              "</ListMultipartUploadsResult>");
    } else if (!strncmp(uri, "/bkt/missing", 12)) {
        reply(req, 404, "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>"
                        "<Message>The specified key does not exist.</Message></Error>");
    } else if (!strncmp(uri, "/bkt/copyfail", 13)) {
        reply(req, 200, "<Error><Code>InternalError</Code><Message>try again</Message></Error>");
    } else if (!strncmp(uri, "/bkt/", 5) && strstr(uri, "uploadId=") &&
               evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
        reply(req, 204, NULL);
    } else if (!strncmp(uri, "/bkt/", 5) && evhttp_request_get_command(req) == EVHTTP_REQ_PUT) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "ETag", "\"abc\"");
        reply(req, 200, NULL);
    } else {
        reply(req, 404, "no route");
    }
}

static void setup(void)
{
    stub_setup("check_storage");
}

static void teardown(void)
{
    stub_teardown();
}

START_TEST(key_rules)
{
    ck_assert(storage_key_valid("a"));
    ck_assert(storage_key_valid("videos/videoStream_x_1.mp4"));
    ck_assert(storage_key_valid("a/.hidden/b..c"));
    ck_assert(!storage_key_valid(""));
    ck_assert(!storage_key_valid(NULL));
    ck_assert(!storage_key_valid("/abs"));
    ck_assert(!storage_key_valid(".."));
    ck_assert(!storage_key_valid("../x"));
    ck_assert(!storage_key_valid("a/../../x"));
    ck_assert(!storage_key_valid("a/./b"));
    ck_assert(!storage_key_valid("a//b"));
    ck_assert(!storage_key_valid("a/"));
    ck_assert(!storage_key_valid("a\\b"));
    ck_assert(!storage_key_valid("a\nb"));
    ck_assert(!storage_key_valid(".studyhub/tmp/x"));
    ck_assert(!storage_key_valid(".studyhub"));
    char long_key[STORAGE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    ck_assert(!storage_key_valid(long_key));
    long_key[STORAGE_KEY_MAX] = '\0';
    ck_assert(storage_key_valid(long_key));

    const char *err = NULL;
    struct storage_config bad = { .url = "ftp://x" };
    ck_assert_ptr_null(storage_new(base, fc, &bad, &err));
    ck_assert_ptr_nonnull(err);
    struct storage_config nokey = { .url = "s3://bucket" };
    ck_assert_ptr_null(storage_new(base, fc, &nokey, &err));
    struct storage_config badep = { .url = "s3://bucket", .endpoint = "127.0.0.1:9000",
                                    .access_key = "a", .secret_key = "b" };
    ck_assert_ptr_null(storage_new(base, fc, &badep, &err));
}
END_TEST

START_TEST(content_types_by_extension)
{
    ck_assert_str_eq(storage_content_type("dist/index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(storage_content_type("assets/app-1f2e.JS"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(storage_content_type("videoStream_x_1.mp4"), "video/mp4");
    ck_assert_str_eq(storage_content_type("s_videos_abc.zip"), "application/zip");
    /* A dot in a folder name is no extension. */
    ck_assert_str_eq(storage_content_type("a.b/README"), "application/octet-stream");
    ck_assert_str_eq(storage_content_type("trailing."), "application/octet-stream");
    ck_assert_str_eq(storage_content_type(""), "application/octet-stream");
}
END_TEST

/* --- the S3 backend against canned replies ------------------------------------------ */

static struct storage *stub_s3(void)
{
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", stub_port);
    struct storage_config cfg = { .url = "s3://bkt", .endpoint = ep, .path_style = true,
                                  .access_key = "AK", .secret_key = "SK" };
    const char *err = NULL;
    struct storage *st = storage_new(base, fc, &cfg, &err);
    ck_assert_msg(st != NULL, "%s", err);
    ck_assert_str_eq(storage_backend(st), "s3");
    return st;
}

START_TEST(s3_signing_and_replies)
{
    struct storage *st = stub_s3();
    struct sres r;

    WAIT(r, storage_put(st, "dir/a b.txt", "hi", 2, "text/plain", on_sres, &r));
    ck_assert_msg(r.err == 0, "%s", r.error);
    ck_assert_str_eq(r.etag, "\"abc\"");
    ck_assert_str_eq(last_uri, "/bkt/dir/a%20b.txt");
    ck_assert(strncmp(last_auth, "AWS4-HMAC-SHA256 Credential=AK/", 31) == 0);
    ck_assert_ptr_nonnull(strstr(last_auth, "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"));
    /* sha256("hi") */
    ck_assert_str_eq(last_sha, "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4");
    ck_assert_str_eq(last_expect, "");

    WAIT(r, storage_get(st, "missing", 100, on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    ck_assert_ptr_nonnull(strstr(r.error, "NoSuchKey"));

    WAIT(r, storage_copy(st, "src", "copyfail", on_sres, &r));
    ck_assert_int_eq(r.err, -EIO);  /* a 200 carrying an error */
    ck_assert_ptr_nonnull(strstr(r.error, "InternalError"));

    WAIT(r, storage_mpu_list(st, "videos/", NULL, on_sres, &r));
    ck_assert_msg(r.err == 0, "%s", r.error);
    ck_assert_ptr_nonnull(strstr(last_uri, "prefix=videos%2F"));
    ck_assert_ptr_nonnull(strstr(last_uri, "uploads="));
    ck_assert_uint_eq(r.nuploads, 2);
    ck_assert_str_eq(r.ukeys[0], "videos/a.mp4");
    ck_assert_str_eq(r.ukeys[1], "videos/b&c.mp4");
    ck_assert_int_eq(r.initiated[0], 1369353600);
    ck_assert(r.has_next);
    ck_assert_str_eq(r.next, "videos/b&c.mp4\nid-2");

    WAIT(r, storage_mpu_list(st, "videos/", "videos/b&c.mp4\nid-2", on_sres, &r));
    ck_assert_ptr_nonnull(strstr(last_uri, "key-marker=videos%2Fb%26c.mp4"));
    ck_assert_ptr_nonnull(strstr(last_uri, "upload-id-marker=id-2"));

    WAIT(r, storage_mpu_abort(st, "videos/a.mp4", "id-1", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_str_eq(last_method, "DELETE");
    ck_assert_str_eq(last_uri, "/bkt/videos/a.mp4?uploadId=id-1");

    const char *err;
    char *u = storage_presign_get(st, "videos/a.mp4", 600, 1369353600, "a \"b\".mp4", &err);
    ck_assert_ptr_nonnull(u);
    ck_assert(strstr(u, "/bkt/videos/a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20130524%2Fus-east-1%2Fs3%2Faws4_request") != NULL);
    ck_assert_ptr_nonnull(strstr(u, "response-content-disposition=attachment%3B%20filename%3D%22a%20_b_.mp4%22"));
    free(u);
    storage_free(st);
}
END_TEST

START_TEST(s3_virtual_hosted_and_gs)
{
    const char *err = NULL;
    struct storage_config v = { .url = "s3://my-bucket", .region = "eu-west-1",
                                .access_key = "AK", .secret_key = "SK" };
    struct storage *st = storage_new(base, fc, &v, &err);
    ck_assert_ptr_nonnull(st);
    char *u = storage_presign_get(st, "k", 60, 1369353600, NULL, &err);
    ck_assert(strncmp(u, "https://my-bucket.s3.eu-west-1.amazonaws.com/k?", 47) == 0);
    ck_assert_ptr_nonnull(strstr(u, "%2Feu-west-1%2Fs3%2Faws4_request"));
    free(u);
    storage_free(st);

    struct storage_config g = { .url = "gs://lab-videos", .access_key = "GOOG1", .secret_key = "S" };
    st = storage_new(base, fc, &g, &err);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(storage_backend(st), "gs");
    u = storage_presign_get(st, "k", 60, 1369353600, NULL, &err);
    ck_assert(strncmp(u, "https://storage.googleapis.com/lab-videos/k?", 44) == 0);
    ck_assert_ptr_nonnull(strstr(u, "%2Fauto%2Fs3%2Faws4_request"));
    free(u);
    storage_free(st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("storage");
    TCase *t = tcase_create("storage");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 30);
    tcase_add_test(t, key_rules);
    tcase_add_test(t, content_types_by_extension);
    suite_add_tcase(s, t);

    TCase *c = tcase_create("s3-stub");
    tcase_add_checked_fixture(c, setup, teardown);
    tcase_set_timeout(c, 30);
    tcase_add_test(c, s3_signing_and_replies);
    tcase_add_test(c, s3_virtual_hosted_and_gs);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
