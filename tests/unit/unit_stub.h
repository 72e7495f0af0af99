/* unit_stub: an HTTP stub on 127.0.0.1 (a port of its own) on the test's
 * loop, for the io tests that talk HTTP (check_fetch, check_storage): it
 * keeps what the last request carried for the asserts and answers through
 * the test's own stub_route.  After unit_io.h. */
#ifndef STUDYHUB_TESTS_UNIT_STUB_H
#define STUDYHUB_TESTS_UNIT_STUB_H

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "unit_io.h"

static struct evhttp *stub;
static int stub_port;
static int hits;             /* requests seen */
static char last_method[16];
static char last_uri[1024];
static char last_expect[64];
static char last_auth[512];
static char last_sha[80];
static char last_ctype[128];
static size_t last_body_len;
static char last_body[4096];

/* The test's answers: req to uri, its body in (unread). */
static void stub_route(struct evhttp_request *req, const char *uri, struct evbuffer *in);

static inline const char *method_name(enum evhttp_cmd_type t)
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

static inline void copy_hdr(struct evhttp_request *req, const char *name, char *out, size_t n)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
    snprintf(out, n, "%s", v ? v : "");
}

static inline void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (body)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static inline void on_stub(struct evhttp_request *req, void *arg)
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
    stub_route(req, uri, in);
}

static inline void stub_start(void)
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

/* The loop, the fetch client, the folder and the stub of one test. */
static inline void stub_setup(const char *name)
{
    io_setup(name);
    stub_start();
}

static inline void stub_teardown(void)
{
    evhttp_free(stub);
    io_teardown();
}

#endif
