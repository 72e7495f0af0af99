/* Unit tests of the streamed writer (io/storage_writer.c) on the file://
 * backend: a multi-part object written with back-pressure and read back
 * whole, an empty object, and a writer cancelled half way that leaves no
 * object and no upload behind.  Every test ends with nothing of ours on
 * the loop. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/io/storage.h"
#include "studyhub/io/storage_writer.h"
#include "unit_storage.h"
#include "unit_main.h"

static void setup(void)
{
    io_setup("check_storage_writer");
}

static void teardown(void)
{
    io_teardown();
}

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

static Suite *suite(void)
{
    Suite *s = suite_create("storage_writer");
    TCase *t = tcase_create("writer");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, file_writer);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
