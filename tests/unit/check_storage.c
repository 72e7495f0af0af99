/* Unit tests of fetch and storage on a real event loop: fetch against an
 * in-process evhttp stub on 127.0.0.1 (retries, limits, timeouts, cancel,
 * pause/resume), the file:// backend end to end (traversal refused, put,
 * get, list pages, copy, delete, multipart, the streamed writer, presigned
 * links), and the S3 backend's signing and XML handling against canned
 * replies from the stub. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/io/fetch.h"
#include "studyhub/io/storage.h"
#include "studyhub/io/storage_writer.h"
#include "unit_loop.h"

static struct event_base *base;
static struct fetch_client *fc;
static char tmpdir[64];

/* --- loop helpers ------------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    *(int *)arg = 1;
}

/* Runs the loop until *count reaches want or 10 s pass. */
static void run_until(int *count, int want)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { 10, 0 };
    evtimer_add(t, &tv);
    while (*count < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    ck_assert_msg(*count >= want, "timed out waiting (%d of %d)", *count, want);
}

/* Runs the loop for ms milliseconds. */
static void run_for(int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(t, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

/* --- the stub HTTP server ----------------------------------------------------------- */

static struct evhttp *stub;
static int stub_port;
static int flaky_left;       /* 503s still to send on /flaky */
static int hits;             /* requests seen */
static char last_method[16];
static char last_uri[1024];
static char last_expect[64];
static char last_auth[512];
static char last_sha[80];
static char last_ctype[128];
static size_t last_body_len;
static char last_body[4096];

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "OTHER";
    }
}

static void copy_hdr(struct evhttp_request *req, const char *name, char *out, size_t n)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    snprintf(out, n, "%s", v ? v : "");
}

static void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (body)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void on_stub(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    hits++;
    snprintf(last_method, sizeof last_method, "%s", method_name(evhttp_request_get_command(req)));
    snprintf(last_uri, sizeof last_uri, "%s", uri);
    copy_hdr(req, "Expect", last_expect, sizeof last_expect);
    copy_hdr(req, "Authorization", last_auth, sizeof last_auth);
    copy_hdr(req, "x-amz-content-sha256", last_sha, sizeof last_sha);
    copy_hdr(req, "Content-Type", last_ctype, sizeof last_ctype);
    last_body_len = evbuffer_get_length(in);
    size_t n = last_body_len < sizeof last_body - 1 ? last_body_len : sizeof last_body - 1;
    evbuffer_copyout(in, last_body, n);
    last_body[n] = '\0';

    if (!strcmp(uri, "/ok")) {
        reply(req, 200, "hello");
    } else if (!strcmp(uri, "/flaky")) {
        if (flaky_left > 0) {
            flaky_left--;
            reply(req, 503, "busy");
        } else {
            reply(req, 200, "recovered");
        }
    } else if (!strcmp(uri, "/big")) {
        struct evbuffer *b = evbuffer_new();
        static char chunk[65536];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 32; i++)
            evbuffer_add(b, chunk, sizeof chunk);
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
    } else if (!strcmp(uri, "/hang")) {
        /* Never answered: evhttp frees it when the client goes away. */
    } else if (!strcmp(uri, "/echo")) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_buffer(b, in);
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Seen", "yes");
        evhttp_send_reply(req, 200, "OK", b);
        evbuffer_free(b);
    } else if (!strncmp(uri, "/bkt?", 5) && strstr(uri, "uploads=")) {
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

static void stub_start(void)
{
    stub = evhttp_new(base);
    struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(stub, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(h);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sa, &sl);
    stub_port = ntohs(sa.sin_port);
    evhttp_set_gencb(stub, on_stub, NULL);
    hits = 0;
}

static char *url(const char *path)
{
    static char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d%s", stub_port, path);
    return u;
}

static void setup(void)
{
    base = event_base_new();
    fc = fetch_client_new(base, NULL);
    ck_assert_ptr_nonnull(fc);
    stub_start();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_storage.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_rf(const char *p)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    ck_assert_int_eq(system(cmd), 0);
}

static void teardown(void)
{
    /* Nothing may be left alive when a test ends. */
    ck_assert_uint_eq(fetch_pending(fc), 0);
    fetch_client_free(fc);
    evhttp_free(stub);
    unit_loop_free(base);
    rm_rf(tmpdir);
}

/* --- fetch -------------------------------------------------------------------- */

struct got {
    int calls;
    int status;
    int attempts;
    bool has_error;
    bool too_large;
    char body[256];
    size_t body_len;
    char seen[16];
};

static void on_got(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    (void)req;
    struct got *g = arg;
    g->calls++;
    g->status = res->status;
    g->attempts = res->attempts;
    g->has_error = res->error != NULL;
    g->too_large = res->body_too_large;
    g->body_len = res->body_len;
    snprintf(g->body, sizeof g->body, "%s", res->body);
    if (!fetch_header(res, "X-Seen", g->seen, sizeof g->seen))
        g->seen[0] = '\0';
}

START_TEST(fetch_get_ok_never_inside_submit)
{
    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = url("/ok"), .done = on_got, .arg = &g };
    ck_assert_ptr_nonnull(fetch_submit(fc, &o));
    ck_assert_int_eq(g.calls, 0);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_str_eq(g.body, "hello");
    ck_assert(!g.has_error);
    ck_assert_int_eq(g.attempts, 1);

    /* A malformed URL is reported from the loop too. */
    struct got b = { 0 };
    struct fetch_opts bad = { .method = "GET", .url = "notaurl:://", .done = on_got, .arg = &b };
    ck_assert_ptr_nonnull(fetch_submit(fc, &bad));
    ck_assert_int_eq(b.calls, 0);
    run_until(&b.calls, 1);
    ck_assert(b.has_error);
    ck_assert_ptr_null(fetch_submit(fc, &(struct fetch_opts){ .method = "GET", .done = on_got }));
}
END_TEST

START_TEST(fetch_retries_5xx_for_idempotent_only)
{
    struct got g = { 0 };
    flaky_left = 2;
    struct fetch_opts o = { .method = "GET", .url = url("/flaky"), .backoff_ms = 10,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_int_eq(g.attempts, 3);
    ck_assert_str_eq(g.body, "recovered");

    /* POST is not repeated unless asked. */
    struct got p = { 0 };
    flaky_left = 1;
    struct fetch_opts po = { .method = "POST", .url = url("/flaky"), .backoff_ms = 10,
                             .done = on_got, .arg = &p };
    fetch_submit(fc, &po);
    run_until(&p.calls, 1);
    ck_assert_int_eq(p.status, 503);
    ck_assert_int_eq(p.attempts, 1);
    ck_assert(!p.has_error);
    ck_assert_str_eq(p.body, "busy");

    /* Attempts run out: the last 503 is what the caller sees. */
    struct got x = { 0 };
    flaky_left = 5;
    struct fetch_opts xo = { .method = "GET", .url = url("/flaky"), .backoff_ms = 5,
                             .max_attempts = 2, .done = on_got, .arg = &x };
    fetch_submit(fc, &xo);
    run_until(&x.calls, 1);
    ck_assert_int_eq(x.status, 503);
    ck_assert_int_eq(x.attempts, 2);
}
END_TEST

START_TEST(fetch_connection_refused_is_retried_then_fails)
{
    /* A port nobody listens on. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &sl);
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/", ntohs(sa.sin_port));

    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = u, .backoff_ms = 5, .max_attempts = 3,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    close(s);
    ck_assert(g.has_error);
    ck_assert_int_eq(g.status, 0);
    ck_assert_int_eq(g.attempts, 3);
}
END_TEST

START_TEST(fetch_body_limit_and_timeout)
{
    struct got g = { 0 };
    struct fetch_opts o = { .method = "GET", .url = url("/big"), .max_body = 100000,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert(g.has_error);
    ck_assert(g.too_large);
    ck_assert_int_eq(g.attempts, 1);  /* not a transient failure */

    struct got t = { 0 };
    struct fetch_opts to = { .method = "GET", .url = url("/hang"), .timeout_ms = 300,
                             .max_attempts = 1, .done = on_got, .arg = &t };
    fetch_submit(fc, &to);
    run_until(&t.calls, 1);
    ck_assert(t.has_error);
}
END_TEST

START_TEST(fetch_put_body_without_expect)
{
    static char body[200000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 26);
    struct got g = { 0 };
    const char *h[] = { "Content-Type: text/plain", NULL };
    struct fetch_opts o = { .method = "PUT", .url = url("/echo"), .headers = h,
                            .body = body, .body_len = sizeof body, .max_body = 1 << 20,
                            .done = on_got, .arg = &g };
    fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    ck_assert_int_eq(g.status, 200);
    ck_assert_uint_eq(g.body_len, sizeof body);
    ck_assert_str_eq(last_method, "PUT");
    ck_assert_str_eq(last_expect, "");
    ck_assert_str_eq(last_ctype, "text/plain");
    ck_assert_str_eq(g.seen, "yes");
    ck_assert_int_eq(memcmp(last_body, body, 100), 0);

    /* POST without a body still sends a length. */
    struct got p = { 0 };
    struct fetch_opts po = { .method = "POST", .url = url("/echo"), .done = on_got, .arg = &p };
    fetch_submit(fc, &po);
    run_until(&p.calls, 1);
    ck_assert_int_eq(p.status, 200);
    ck_assert_uint_eq(last_body_len, 0);
}
END_TEST

static void on_never(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    (void)req; (void)res; (void)arg;
    ck_abort_msg("a cancelled request called back");
}

START_TEST(fetch_cancel_running_and_waiting)
{
    struct fetch_opts o = { .method = "GET", .url = url("/hang"), .done = on_never };
    struct fetch_req *r = fetch_submit(fc, &o);
    run_for(50);
    fetch_cancel(r);
    /* One waiting for its backoff. */
    flaky_left = 10;
    struct fetch_opts f = { .method = "GET", .url = url("/flaky"), .backoff_ms = 2000,
                            .done = on_never };
    struct fetch_req *w = fetch_submit(fc, &f);
    run_for(100);
    fetch_cancel(w);
    run_for(50);
    ck_assert_uint_eq(fetch_pending(fc), 0);
}
END_TEST

/* A streaming consumer that pauses once per chunk. */
struct slow {
    struct fetch_req *req;
    size_t bytes;
    int pauses;
    bool paused_now;
    struct event *tick;
};

static int slow_write(const char *d, size_t n, void *arg)
{
    (void)d;
    struct slow *s = arg;
    if (!s->paused_now && s->pauses < 3) {
        s->paused_now = true;
        s->pauses++;
        struct timeval tv = { 0, 20000 };
        evtimer_add(s->tick, &tv);
        return FETCH_PAUSE;
    }
    s->paused_now = false;
    s->bytes += n;
    return 0;
}

static void slow_tick(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    struct slow *s = arg;
    fetch_resume(s->req);
}

START_TEST(fetch_stream_with_pause)
{
    struct slow s = { 0 };
    struct got g = { 0 };
    s.tick = evtimer_new(base, slow_tick, &s);
    struct fetch_opts o = { .method = "GET", .url = url("/big"), .write_fn = slow_write,
                            .write_arg = &s, .done = on_got, .arg = &g };
    s.req = fetch_submit(fc, &o);
    run_until(&g.calls, 1);
    event_free(s.tick);
    ck_assert(!g.has_error);
    ck_assert_int_eq(g.status, 200);
    ck_assert_uint_eq(s.bytes, 32u * 65536u);
    ck_assert_int_eq(s.pauses, 3);
    ck_assert_uint_eq(g.body_len, 0);
}
END_TEST

/* --- storage: common --------------------------------------------------------------- */

struct sres {
    int calls;
    int err;
    char error[512];
    int64_t size;
    char etag[128];
    char upload_id[128];
    char next[1100];
    bool has_next;
    char body[4096];
    size_t body_len;
    size_t nobjects;
    char keys[16][128];
    size_t nuploads;
    char ukeys[4][64];
    time_t initiated[4];
};

static void on_sres(const struct storage_result *r, void *arg)
{
    struct sres *s = arg;
    s->calls++;
    s->err = r->err;
    snprintf(s->error, sizeof s->error, "%s", r->error ? r->error : "");
    s->size = r->size;
    snprintf(s->etag, sizeof s->etag, "%s", r->etag ? r->etag : "");
    snprintf(s->upload_id, sizeof s->upload_id, "%s", r->upload_id ? r->upload_id : "");
    s->has_next = r->next_token != NULL;
    snprintf(s->next, sizeof s->next, "%s", r->next_token ? r->next_token : "");
    s->body_len = r->body_len;
    if (r->body) {
        size_t n = r->body_len < sizeof s->body - 1 ? r->body_len : sizeof s->body - 1;
        memcpy(s->body, r->body, n);
        s->body[n] = '\0';
    }
    s->nobjects = r->nobjects;
    for (size_t i = 0; i < r->nobjects && i < 16; i++)
        snprintf(s->keys[i], sizeof s->keys[i], "%s", r->objects[i].key);
    s->nuploads = r->nuploads;
    for (size_t i = 0; i < r->nuploads && i < 4; i++) {
        snprintf(s->ukeys[i], sizeof s->ukeys[i], "%s", r->uploads[i].key);
        s->initiated[i] = r->uploads[i].initiated;
    }
}

/* Starts op and waits for its one callback. */
#define WAIT(res, call)                                   \
    do {                                                  \
        memset(&(res), 0, sizeof(res));                   \
        ck_assert_ptr_nonnull(call);                      \
        ck_assert_int_eq((res).calls, 0);                 \
        run_until(&(res).calls, 1);                       \
    } while (0)

static struct storage *file_storage(void)
{
    char u[300];
    snprintf(u, sizeof u, "file://%s/objects", tmpdir);
    struct storage_config cfg = { .url = u, .public_base = "http://127.0.0.1:8000/",
                                  .link_secret = "s3cret" };
    const char *err = NULL;
    struct storage *st = storage_new(base, fc, &cfg, &err);
    ck_assert_msg(st != NULL, "storage_new: %s", err);
    ck_assert_str_eq(storage_backend(st), "file");
    return st;
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

/* Temp files of unfinished writes: a dead writer's old one goes at start,
 * a live writer's (ours) and a fresh one stay; the nightly sweep takes any
 * old enough; other names are never touched. */
START_TEST(file_sweep_tmp)
{
    struct storage *st = file_storage();
    char dir[256], path[512];
    struct timespec old[2] = { { .tv_sec = 1000 }, { .tv_sec = 1000 } };
    const char *names[] = { "t-999999999-1", "t-999999999-2", NULL, "keep-me" };
    char mine[64];
    int fd;

    snprintf(mine, sizeof mine, "t-%ld-7", (long)getpid());
    names[2] = mine;
    snprintf(dir, sizeof dir, "%s/objects/.studyhub/tmp", tmpdir);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        fd = open(path, O_WRONLY | O_CREAT, 0600);
        ck_assert_int_ge(fd, 0);
        close(fd);
        if (i != 1)   /* names[1] stays fresh */
            ck_assert_int_eq(utimensat(AT_FDCWD, path, old, 0), 0);
    }
    /* At start: old and written by a process that is gone. */
    ck_assert_int_eq(storage_sweep_tmp(st, time(NULL) - 60, true), 1);
    snprintf(path, sizeof path, "%s/%s", dir, names[0]);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* Nightly: anything old enough, the live writer's too. */
    ck_assert_int_eq(storage_sweep_tmp(st, time(NULL) - 60, false), 1);
    snprintf(path, sizeof path, "%s/%s", dir, mine);
    ck_assert_int_ne(access(path, F_OK), 0);
    for (int i = 1; i < 4; i += 2) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        ck_assert_int_eq(access(path, F_OK), 0);
    }
    storage_free(st);
}
END_TEST

START_TEST(file_traversal_refused)
{
    struct storage *st = file_storage();
    struct sres r;
    const char *bad[] = { "../escape", "/etc/passwd", "a/../../b", ".studyhub/tmp/x", "a//b" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        WAIT(r, storage_put(st, bad[i], "x", 1, NULL, on_sres, &r));
        ck_assert_int_eq(r.err, -EINVAL);
        WAIT(r, storage_get(st, bad[i], 100, on_sres, &r));
        ck_assert_int_eq(r.err, -EINVAL);
        WAIT(r, storage_delete(st, bad[i], on_sres, &r));
        ck_assert_int_eq(r.err, -EINVAL);
        WAIT(r, storage_copy(st, "ok", bad[i], on_sres, &r));
        ck_assert_int_eq(r.err, -EINVAL);
    }
    char p[400];
    snprintf(p, sizeof p, "%s/escape", tmpdir);
    ck_assert_int_ne(access(p, F_OK), 0);
    storage_free(st);
}
END_TEST

START_TEST(file_put_get_head_delete)
{
    struct storage *st = file_storage();
    struct sres r;

    WAIT(r, storage_put(st, "a/b/c.txt", "hello world", 11, "text/plain", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.size, 11);
    ck_assert(r.etag[0] == '"');

    /* Objects and their folders are the server's alone. */
    const char *const private_paths[][2] = {
        { "objects", "700" }, { "objects/a", "700" }, { "objects/a/b", "700" },
        { "objects/a/b/c.txt", "600" },
    };
    for (size_t i = 0; i < sizeof private_paths / sizeof *private_paths; i++) {
        char path[400], mode[8];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", tmpdir, private_paths[i][0]);
        ck_assert_int_eq(stat(path, &sb), 0);
        snprintf(mode, sizeof mode, "%o", (unsigned)(sb.st_mode & 07777));
        ck_assert_msg(strcmp(mode, private_paths[i][1]) == 0, "%s has mode %s, not %s",
                      path, mode, private_paths[i][1]);
    }

    WAIT(r, storage_get(st, "a/b/c.txt", 100, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_str_eq(r.body, "hello world");
    ck_assert_uint_eq(r.body_len, 11);

    WAIT(r, storage_get(st, "a/b/c.txt", 5, on_sres, &r));
    ck_assert_int_eq(r.err, -EFBIG);

    WAIT(r, storage_head(st, "a/b/c.txt", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.size, 11);

    WAIT(r, storage_head(st, "a/b", on_sres, &r));  /* a folder is no object */
    ck_assert_int_eq(r.err, -ENOENT);
    WAIT(r, storage_get(st, "nope", 100, on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);

    /* Overwrite is atomic and whole. */
    WAIT(r, storage_put(st, "a/b/c.txt", "bye", 3, NULL, on_sres, &r));
    WAIT(r, storage_get(st, "a/b/c.txt", 100, on_sres, &r));
    ck_assert_str_eq(r.body, "bye");

    WAIT(r, storage_delete(st, "a/b/c.txt", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    WAIT(r, storage_delete(st, "a/b/c.txt", on_sres, &r));  /* absent: fine */
    ck_assert_int_eq(r.err, 0);
    char p[400];
    snprintf(p, sizeof p, "%s/objects/a", tmpdir);
    ck_assert_int_ne(access(p, F_OK), 0);  /* empty folders went too */

    /* Nothing left in the temp folder. */
    snprintf(p, sizeof p, "rmdir '%s/objects/.studyhub/tmp' && mkdir '%s/objects/.studyhub/tmp'",
             tmpdir, tmpdir);
    ck_assert_int_eq(system(p), 0);
    storage_free(st);
}
END_TEST

START_TEST(file_list_pages_in_byte_order)
{
    struct storage *st = file_storage();
    struct sres r;
    /* '-' (0x2d) sorts before '/' (0x2f): "a-c" comes before "a/b". */
    const char *keys[] = { "a/b", "a-c", "a/c/d", "b", "ab", "a/c0", "v/x1", "v/x2" };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        WAIT(r, storage_put(st, keys[i], "1", 1, NULL, on_sres, &r));
    const char *want[] = { "a-c", "a/b", "a/c/d", "a/c0", "ab", "b", "v/x1", "v/x2" };

    char token[1100] = "";
    size_t seen = 0;
    int pages = 0;
    do {
        WAIT(r, storage_list(st, "", pages ? token : NULL, 3, on_sres, &r));
        ck_assert_int_eq(r.err, 0);
        for (size_t i = 0; i < r.nobjects; i++)
            ck_assert_str_eq(r.keys[i], want[seen++]);
        snprintf(token, sizeof token, "%s", r.next);
        pages++;
    } while (r.has_next);
    ck_assert_uint_eq(seen, 8);
    ck_assert_int_eq(pages, 3);

    WAIT(r, storage_list(st, "a/c", NULL, 0, on_sres, &r));
    ck_assert_uint_eq(r.nobjects, 2);
    ck_assert_str_eq(r.keys[0], "a/c/d");
    ck_assert_str_eq(r.keys[1], "a/c0");
    ck_assert(!r.has_next);

    WAIT(r, storage_list(st, "v/", NULL, 1, on_sres, &r));
    ck_assert_uint_eq(r.nobjects, 1);
    ck_assert_str_eq(r.keys[0], "v/x1");
    ck_assert(r.has_next);
    storage_free(st);
}
END_TEST

START_TEST(file_copy_stream_and_file)
{
    struct storage *st = file_storage();
    struct sres r;
    size_t n = 3 * 1024 * 1024 + 17;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7);
    WAIT(r, storage_put(st, "src.bin", data, n, NULL, on_sres, &r));
    WAIT(r, storage_copy(st, "src.bin", "dst/copy.bin", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.size, (int64_t)n);
    WAIT(r, storage_copy(st, "missing", "dst/x", on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);

    char p[400];
    snprintf(p, sizeof p, "%s/objects/dst/copy.bin", tmpdir);
    WAIT(r, storage_put_file(st, "fromfile.bin", p, NULL, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.size, (int64_t)n);

    WAIT(r, storage_get(st, "fromfile.bin", n, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_uint_eq(r.body_len, n);
    ck_assert_int_eq(memcmp(r.body, data, sizeof r.body - 1), 0);
    free(data);
    storage_free(st);
}
END_TEST

/* Streamed get consumer that pauses and resumes through the loop. */
struct sink {
    struct storage_op *op;
    size_t bytes;
    unsigned sum;
    int pauses;
    struct event *tick;
    bool stop_at_first;
};

static int sink_write(const char *d, size_t n, void *arg)
{
    struct sink *s = arg;
    if (s->stop_at_first)
        return -1;
    if (s->pauses < 2 && s->bytes > 0 && s->bytes % (256 * 1024) == 0 && !evtimer_pending(s->tick, NULL)) {
        s->pauses++;
        struct timeval tv = { 0, 10000 };
        evtimer_add(s->tick, &tv);
        return STORAGE_PAUSE;
    }
    for (size_t i = 0; i < n; i++)
        s->sum = s->sum * 31 + (unsigned char)d[i];
    s->bytes += n;
    return 0;
}

static void sink_tick(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    struct sink *s = arg;
    storage_resume(s->op);
}

struct source {
    size_t left;
    size_t pos;
};

static ssize_t source_read(char *buf, size_t len, void *arg)
{
    struct source *s = arg;
    size_t n = len < s->left ? len : s->left;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((s->pos + i) * 13);
    s->left -= n;
    s->pos += n;
    return (ssize_t)n;
}

START_TEST(file_streams)
{
    struct storage *st = file_storage();
    struct sres r;
    size_t n = 2 * 1024 * 1024 + 5;
    struct source src = { n, 0 };
    WAIT(r, storage_put_stream(st, "s/stream.bin", (int64_t)n, NULL, source_read, &src,
                               on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_int_eq(r.size, (int64_t)n);

    /* A stream shorter than promised is refused and leaves nothing. */
    struct source shortsrc = { 10, 0 };
    WAIT(r, storage_put_stream(st, "s/short.bin", 20, NULL, source_read, &shortsrc,
                               on_sres, &r));
    ck_assert_int_eq(r.err, -EINVAL);
    WAIT(r, storage_head(st, "s/short.bin", on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);

    struct sink s = { 0 };
    s.tick = evtimer_new(base, sink_tick, &s);
    memset(&r, 0, sizeof r);
    s.op = storage_get_stream(st, "s/stream.bin", sink_write, &s, on_sres, &r);
    run_until(&r.calls, 1);
    ck_assert_int_eq(r.err, 0);
    ck_assert_uint_eq(s.bytes, n);
    ck_assert_int_eq(s.pauses, 2);
    unsigned want = 0;
    for (size_t i = 0; i < n; i++)
        want = want * 31 + (unsigned char)(char)(i * 13);
    ck_assert_uint_eq(s.sum, want);

    struct sink stop = { .stop_at_first = true, .tick = s.tick };
    WAIT(r, storage_get_stream(st, "s/stream.bin", sink_write, &stop, on_sres, &r));
    ck_assert_int_eq(r.err, -ECANCELED);
    event_free(s.tick);
    storage_free(st);
}
END_TEST

static void on_sres_never(const struct storage_result *r, void *arg)
{
    (void)r; (void)arg;
    ck_abort_msg("a cancelled operation called back");
}

START_TEST(file_cancel)
{
    struct storage *st = file_storage();
    struct storage_op *op = storage_put(st, "x", "1", 1, NULL, on_sres_never, NULL);
    storage_cancel(op);
    run_for(20);
    struct sres r;
    WAIT(r, storage_head(st, "x", on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    /* Freed with an operation in flight: no callback, no leak. */
    storage_put(st, "y", "1", 1, NULL, on_sres_never, NULL);
    storage_free(st);
    run_for(20);
}
END_TEST

START_TEST(file_multipart)
{
    struct storage *st = file_storage();
    struct sres r;
    size_t psz = STORAGE_MIN_PART_SIZE;
    char *p1 = malloc(psz), *p2 = malloc(psz);
    memset(p1, 'A', psz);
    memset(p2, 'B', psz);

    WAIT(r, storage_mpu_create(st, "mp/obj.bin", "video/mp4", on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    char id[128];
    snprintf(id, sizeof id, "%s", r.upload_id);
    char e1[128], e2[128], e3[128];
    WAIT(r, storage_mpu_put_part(st, "mp/obj.bin", id, 1, p1, psz, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    snprintf(e1, sizeof e1, "%s", r.etag);
    WAIT(r, storage_mpu_put_part(st, "mp/obj.bin", id, 2, p2, psz, on_sres, &r));
    snprintf(e2, sizeof e2, "%s", r.etag);
    WAIT(r, storage_mpu_put_part(st, "mp/obj.bin", id, 3, "tail", 4, on_sres, &r));
    snprintf(e3, sizeof e3, "%s", r.etag);
    /* The wrong key for an upload is no such upload. */
    WAIT(r, storage_mpu_put_part(st, "other", id, 1, p1, 10, on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    WAIT(r, storage_mpu_put_part(st, "mp/obj.bin", "../../x", 1, p1, 10, on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);

    WAIT(r, storage_mpu_list(st, "mp/", NULL, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_uint_eq(r.nuploads, 1);
    ck_assert_str_eq(r.ukeys[0], "mp/obj.bin");
    ck_assert(r.initiated[0] > time(NULL) - 60);

    /* A stale etag and a small middle part are refused. */
    struct storage_part bad[] = { { 1, e1 }, { 2, "\"nope\"" }, { 3, e3 } };
    WAIT(r, storage_mpu_complete(st, "mp/obj.bin", id, bad, 3, on_sres, &r));
    ck_assert_int_eq(r.err, -EINVAL);
    struct storage_part small[] = { { 1, e1 }, { 3, e3 }, { 2, e2 } };
    WAIT(r, storage_mpu_complete(st, "mp/obj.bin", id, small, 3, on_sres, &r));
    ck_assert_int_eq(r.err, -EINVAL);  /* not ascending */
    struct storage_part mid[] = { { 3, e3 }, { 4, e3 } };
    WAIT(r, storage_mpu_complete(st, "mp/obj.bin", id, mid, 2, on_sres, &r));
    ck_assert_int_eq(r.err, -EINVAL);

    struct storage_part good[] = { { 1, e1 }, { 2, e2 }, { 3, e3 } };
    WAIT(r, storage_mpu_complete(st, "mp/obj.bin", id, good, 3, on_sres, &r));
    ck_assert_msg(r.err == 0, "complete: %s", r.error);
    ck_assert_int_eq(r.size, (int64_t)(2 * psz + 4));

    WAIT(r, storage_head(st, "mp/obj.bin", on_sres, &r));
    ck_assert_int_eq(r.size, (int64_t)(2 * psz + 4));
    WAIT(r, storage_mpu_list(st, "", NULL, on_sres, &r));
    ck_assert_uint_eq(r.nuploads, 0);

    /* Abort throws the parts away. */
    WAIT(r, storage_mpu_create(st, "mp/aborted", NULL, on_sres, &r));
    snprintf(id, sizeof id, "%s", r.upload_id);
    WAIT(r, storage_mpu_put_part(st, "mp/aborted", id, 1, "x", 1, on_sres, &r));
    WAIT(r, storage_mpu_abort(st, "mp/aborted", id, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    WAIT(r, storage_mpu_abort(st, "mp/aborted", id, on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    WAIT(r, storage_head(st, "mp/aborted", on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    free(p1);
    free(p2);
    storage_free(st);
}
END_TEST

/* --- the streamed writer ------------------------------------------------------------ */

struct wstate {
    struct storage_writer *w;
    size_t total;   /* to write */
    size_t pos;
    int ready_calls;
    int done_calls;
    int err;
    int64_t size;
};

static void w_pump(struct wstate *s)
{
    static char chunk[300000];
    while (s->pos < s->total) {
        size_t n = s->total - s->pos < sizeof chunk ? s->total - s->pos : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)((s->pos + i) % 251);
        ssize_t got = storage_writer_write(s->w, chunk, n);
        ck_assert_int_ge(got, 0);
        s->pos += (size_t)got;
        if ((size_t)got < n)
            return;  /* wait for ready */
    }
    storage_writer_finish(s->w);
}

static void w_ready(void *arg)
{
    struct wstate *s = arg;
    s->ready_calls++;
    w_pump(s);
}

static void w_done(const struct storage_result *r, void *arg)
{
    struct wstate *s = arg;
    s->done_calls++;
    s->err = r->err;
    s->size = r->size;
}

START_TEST(file_writer)
{
    struct storage *st = file_storage();
    struct wstate s = { .total = 4 * STORAGE_MIN_PART_SIZE + 12345 };
    s.w = storage_writer_new(st, "zips/a.zip", "application/zip", STORAGE_MIN_PART_SIZE,
                             w_done, w_ready, &s);
    ck_assert_ptr_nonnull(s.w);
    w_pump(&s);
    ck_assert_int_eq(s.done_calls, 0);
    run_until(&s.done_calls, 1);
    ck_assert_int_eq(s.err, 0);
    ck_assert_int_eq(s.size, (int64_t)s.total);
    ck_assert_int_gt(s.ready_calls, 0);  /* back-pressure happened */

    struct sres r;
    WAIT(r, storage_get(st, "zips/a.zip", s.total, on_sres, &r));
    ck_assert_int_eq(r.err, 0);
    ck_assert_uint_eq(r.body_len, s.total);
    for (size_t i = 0; i < 100; i++)
        ck_assert_int_eq((unsigned char)r.body[i], i % 251);

    /* An empty object. */
    struct wstate e = { .total = 0 };
    e.w = storage_writer_new(st, "zips/empty.zip", NULL, 0, w_done, w_ready, &e);
    storage_writer_finish(e.w);
    run_until(&e.done_calls, 1);
    ck_assert_int_eq(e.err, 0);
    WAIT(r, storage_head(st, "zips/empty.zip", on_sres, &r));
    ck_assert_int_eq(r.size, 0);

    /* Cancelled half way: no object, no upload left behind. */
    struct wstate c = { .total = 3 * STORAGE_MIN_PART_SIZE };
    c.w = storage_writer_new(st, "zips/cancelled.zip", NULL, 0, w_done, NULL, &c);
    static char chunk[1 << 20];
    for (int i = 0; i < 7; i++)
        storage_writer_write(c.w, chunk, sizeof chunk);
    run_for(50);
    storage_writer_cancel(c.w);
    run_for(100);
    ck_assert_int_eq(c.done_calls, 0);
    WAIT(r, storage_mpu_list(st, "zips/", NULL, on_sres, &r));
    ck_assert_uint_eq(r.nuploads, 0);
    WAIT(r, storage_head(st, "zips/cancelled.zip", on_sres, &r));
    ck_assert_int_eq(r.err, -ENOENT);
    storage_free(st);
}
END_TEST

START_TEST(file_presigned_links)
{
    struct storage *st = file_storage();
    time_t now = 1700000000;
    const char *err = NULL;
    char *u = storage_presign_get(st, "videos/a b.mp4", 600, now, NULL, &err);
    ck_assert_ptr_nonnull(u);
    ck_assert(strncmp(u, "http://127.0.0.1:8000/storage/videos/a%20b.mp4?expires=1700000600&sig=", 70) == 0);
    const char *sig = strstr(u, "sig=") + 4;
    ck_assert_uint_eq(strlen(sig), 64);
    ck_assert_int_eq(storage_link_verify(st, "videos/a b.mp4", "1700000600", sig, now), 0);
    ck_assert_int_eq(storage_link_verify(st, "videos/a b.mp4", "1700000600", sig, now + 601), -ETIMEDOUT);
    ck_assert_int_eq(storage_link_verify(st, "videos/a b.mp4", "1700000601", sig, now), -EACCES);
    ck_assert_int_eq(storage_link_verify(st, "videos/other.mp4", "1700000600", sig, now), -EACCES);
    ck_assert_int_eq(storage_link_verify(st, "videos/a b.mp4", "1700000600", "00", now), -EACCES);
    ck_assert_int_eq(storage_link_verify(st, "../x", "1700000600", sig, now), -EINVAL);
    free(u);
    ck_assert_ptr_null(storage_presign_get(st, "../x", 600, now, NULL, &err));
    ck_assert_ptr_null(storage_presign_get(st, "x", 0, now, NULL, &err));

    struct sres r;
    WAIT(r, storage_put(st, "videos/a b.mp4", "movie", 5, NULL, on_sres, &r));
    int64_t size = 0;
    int fd = storage_file_open(st, "videos/a b.mp4", &size);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(size, 5);
    close(fd);
    ck_assert_int_eq(storage_file_open(st, "videos/none", &size), -ENOENT);
    ck_assert_int_eq(storage_file_open(st, "../etc", &size), -EINVAL);
    storage_free(st);

    /* No secret, no links. */
    char url2[300];
    snprintf(url2, sizeof url2, "file://%s/o2", tmpdir);
    struct storage_config cfg = { .url = url2 };
    st = storage_new(base, fc, &cfg, &err);
    ck_assert_ptr_null(storage_presign_get(st, "x", 60, now, NULL, &err));
    ck_assert_int_eq(storage_link_verify(st, "x", "1", "00", now), -EACCES);
    storage_free(st);
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
    TCase *f = tcase_create("fetch");
    tcase_add_checked_fixture(f, setup, teardown);
    tcase_set_timeout(f, 30);
    tcase_add_test(f, fetch_get_ok_never_inside_submit);
    tcase_add_test(f, fetch_retries_5xx_for_idempotent_only);
    tcase_add_test(f, fetch_connection_refused_is_retried_then_fails);
    tcase_add_test(f, fetch_body_limit_and_timeout);
    tcase_add_test(f, fetch_put_body_without_expect);
    tcase_add_test(f, fetch_cancel_running_and_waiting);
    tcase_add_test(f, fetch_stream_with_pause);
    suite_add_tcase(s, f);

    TCase *t = tcase_create("file");
    tcase_add_test(t, file_sweep_tmp);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, key_rules);
    tcase_add_test(t, content_types_by_extension);
    tcase_add_test(t, file_traversal_refused);
    tcase_add_test(t, file_put_get_head_delete);
    tcase_add_test(t, file_list_pages_in_byte_order);
    tcase_add_test(t, file_copy_stream_and_file);
    tcase_add_test(t, file_streams);
    tcase_add_test(t, file_cancel);
    tcase_add_test(t, file_multipart);
    tcase_add_test(t, file_writer);
    tcase_add_test(t, file_presigned_links);
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
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
