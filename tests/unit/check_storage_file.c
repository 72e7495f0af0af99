/* Unit tests of the file:// storage backend (io/storage_file.c) end to
 * end on a real event loop, in a private temporary folder: the temp files
 * of unfinished writes swept, path traversal refused, put, get, head and
 * delete (with private modes), list pages in byte order, copy, streamed
 * get and put, cancel, multipart, presigned links and storage_file_open.
 * Every test ends with nothing of ours on the loop. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/io/storage.h"
#include "unit_storage.h"
#include "unit_main.h"

static void setup(void)
{
    io_setup("check_storage_file");
}

static void teardown(void)
{
    io_teardown();
}

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

static Suite *suite(void)
{
    Suite *s = suite_create("storage_file");
    TCase *t = tcase_create("file");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, file_sweep_tmp);
    tcase_add_test(t, file_traversal_refused);
    tcase_add_test(t, file_put_get_head_delete);
    tcase_add_test(t, file_list_pages_in_byte_order);
    tcase_add_test(t, file_copy_stream_and_file);
    tcase_add_test(t, file_streams);
    tcase_add_test(t, file_cancel);
    tcase_add_test(t, file_multipart);
    tcase_add_test(t, file_presigned_links);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
