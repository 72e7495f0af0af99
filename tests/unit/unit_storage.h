/* unit_storage: what the storage tests share (check_storage,
 * check_storage_file, check_storage_writer): an operation's result kept
 * for the asserts, WAIT for one operation's one callback, and a file://
 * storage in the test's folder.  After unit_io.h. */
#ifndef STUDYHUB_TESTS_UNIT_STORAGE_H
#define STUDYHUB_TESTS_UNIT_STORAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "studyhub/io/storage.h"
#include "unit_io.h"

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

static inline void on_sres(const struct storage_result *r, void *arg)
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

static inline struct storage *file_storage(void)
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

#endif
