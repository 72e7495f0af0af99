/* video_zip: build_zipfile_of_videos, a study's videos streamed from
 * storage through libarchive's ZIP writer into a multipart upload, never
 * whole in memory or on disk, then a 30-minute link emailed.  See
 * include/studyhub/tasks/video_zip.h for the states and the memory bound. */
#include "config.h"

#include "studyhub/tasks/video_zip.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/task.h"
#include "studyhub/domain/videos.h"
#include "studyhub/io/mail.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"
#include "studyhub/io/storage_writer.h"

/* Videos read per batch query. */
#define VZ_BATCH 50
/* Archive bytes allowed to wait for the writer before we stop producing:
 * a read chunk (256 KiB from the file backend) plus headers. */
#define VZ_BACKLOG_MAX (1u << 20)
/* Names listed in MISSING_VIDEOS.txt, at most. */
#define VZ_MISSING_MAX (256u << 10)

enum zip_state { ZIP_PREPARE, ZIP_LOOKUP, ZIP_BUILD, ZIP_NOTIFY, ZIP_FAIL_NOTIFY, ZIP_NSTATES };
static const char *const zip_state_names[] = {
    "prepare", "lookup", "build", "notify", "fail_notify",
};

/* Where a build is; the task state stays ZIP_BUILD throughout. */
enum build_phase {
    BP_START,      /* nothing made yet */
    BP_VIDEOS,     /* reading videos into the archive */
    BP_CLOSING,    /* archive closed; the writer gets the last bytes */
    BP_FINISHED,   /* the writer reported (ok or not): step acts on it */
};

/* One video of the current batch. */
struct vz_video {
    int64_t id;
    char *name;                    /* owned: its key, the entry name */
    int64_t mtime;                 /* entry time (upload time) */
};

struct vzip {
    struct task *t;                /* borrowed: the task we are */
    struct app *app;               /* borrowed */
    /* from the payload */
    char study[37];
    char user[24];                 /* users.id as text */
    bool consent_only;
    int64_t max_id;                /* the set ends at this video id */
    /* prepare */
    char study_id[24];             /* studies.id as text */
    char *study_name;              /* owned */
    char *key;                     /* owned: the zip's storage key */
    int64_t count;                 /* videos in the set */
    char *fail_reason;             /* owned: for fail_notify's email */
    /* build */
    enum build_phase phase;
    struct archive *ar;            /* owned */
    struct storage_writer *w;      /* owned until its done callback */
    struct storage_op *op;         /* owned: the HEAD or GET in flight */
    struct evbuffer *backlog;      /* owned: archive bytes the writer could not take yet */
    struct vz_video batch[VZ_BATCH]; /* owned names */
    int nbatch, ibatch;            /* videos in batch, the one being read */
    int64_t after;                 /* id of the last video read */
    bool list_done;                /* the last batch came */
    bool paused;                   /* the GET waits for the writer */
    bool waiting_ready;            /* next_video waits for the backlog to drain */
    int64_t entry_size, entry_got; /* the entry being written */
    int64_t videos_done;           /* entries written */
    int64_t bytes;                 /* archive bytes produced */
    struct evbuffer *missing;      /* owned: names not found in storage */
    int64_t nmissing;
    int writer_err;                /* the writer's outcome, BP_FINISHED */
    char errmsg[256];              /* a failure inside a libarchive callback */
    bool failed;                   /* errmsg is set: swallow further output */
    struct timespec t_start;       /* build started (monotonic) */
    struct timespec t_finish;      /* every byte handed to the writer */
    double stream_s, finish_s;     /* reading+writing; last parts + completion */
    /* notify */
    bool reused;                   /* the zip was there already */
};

static void build_next(struct vzip *z);
static void build_flush(struct vzip *z);

static double seconds_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

/* No more bytes: the writer uploads the last part and completes. */
static void build_finish_writer(struct vzip *z)
{
    clock_gettime(CLOCK_MONOTONIC, &z->t_finish);
    z->stream_s = seconds_since(&z->t_start);
    storage_writer_finish(z->w);
}

/* ---- teardown ---------------------------------------------------------- */

static void batch_clear(struct vzip *z)
{
    for (int i = 0; i < z->nbatch; i++)
        free(z->batch[i].name);
    z->nbatch = z->ibatch = 0;
}

/* Stops whatever the build has running; the upload is aborted in the
 * background.  Safe from any of the build's callbacks. */
static void zip_build_stop(struct vzip *z)
{
    if (z->op) {
        storage_cancel(z->op);
        z->op = NULL;
    }
    if (z->w) {
        storage_writer_cancel(z->w);
        z->w = NULL;
    }
    if (z->ar) {
        /* Fatal first: free must not write a trailer. */
        archive_write_fail(z->ar);
        archive_write_free(z->ar);
        z->ar = NULL;
    }
    if (z->backlog) {
        evbuffer_free(z->backlog);
        z->backlog = NULL;
    }
    if (z->missing) {
        evbuffer_free(z->missing);
        z->missing = NULL;
    }
    batch_clear(z);
}

static void vzip_free(struct vzip *z)
{
    zip_build_stop(z);
    free(z->study_name);
    free(z->key);
    free(z->fail_reason);
    free(z);
}

/* The build failed: stop it, then retry later (transient: storage or
 * database trouble) or tell the requester. */
static void zip_build_fail(struct vzip *z, bool transient, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void zip_build_fail(struct vzip *z, bool transient, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zip_build_stop(z);
    task_log(z->t, "build failed after %lld of %lld videos (%lld bytes): %s",
             (long long)z->videos_done, (long long)z->count, (long long)z->bytes, msg);
    if (transient && task_can_retry(z->t)) {
        task_retry(z->t, "%s", msg);
        return;
    }
    free(z->fail_reason);
    z->fail_reason = strdup(msg);
    task_set_state(z->t, ZIP_FAIL_NOTIFY, TASK_STAGE_FAILED);
}

/* ---- libarchive's output to the writer ----------------------------------- */

/* libarchive's client writer: must take every byte (it treats a short
 * write as fatal), so what the storage writer cannot take now waits in
 * the backlog, and the producers stop until it drains. */
static la_ssize_t on_archive_write(struct archive *a, void *arg, const void *buf, size_t len)
{
    struct vzip *z = arg;
    const char *p = buf;

    z->bytes += (int64_t)len;
    if (z->failed || !z->w)
        return (la_ssize_t)len;   /* swallowed: the build is being stopped */
    if (evbuffer_get_length(z->backlog) == 0) {
        ssize_t n = storage_writer_write(z->w, p, len);
        if (n < 0) {
            snprintf(z->errmsg, sizeof z->errmsg, "the upload failed");
            z->failed = true;
            return (la_ssize_t)len;
        }
        p += n;
        len -= (size_t)n;
    }
    if (len && evbuffer_add(z->backlog, p, len) < 0) {
        snprintf(z->errmsg, sizeof z->errmsg, "out of memory");
        z->failed = true;
    }
    return (la_ssize_t)(p - (const char *)buf) + (la_ssize_t)len;
}

/* Moves backlog bytes into the writer while it takes them. */
static void build_flush(struct vzip *z)
{
    while (z->w && evbuffer_get_length(z->backlog) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(z->backlog, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = storage_writer_write(z->w, v.iov_base, v.iov_len);
        if (n < 0) {
            snprintf(z->errmsg, sizeof z->errmsg, "the upload failed");
            z->failed = true;
            return;
        }
        evbuffer_drain(z->backlog, (size_t)n);
        if ((size_t)n < v.iov_len)
            return;   /* full: the ready callback comes back here */
    }
}

/* The writer has room again.  Nothing after a call that may end the
 * build: it may have stopped the task. */
static void on_writer_ready(void *arg)
{
    struct vzip *z = arg;

    build_flush(z);
    if (z->failed)
        return;   /* the writer's done callback reports it */
    size_t left = evbuffer_get_length(z->backlog);
    if (z->paused) {
        if (left == 0) {
            z->paused = false;
            storage_resume(z->op);
        }
    } else if (z->waiting_ready) {
        if (left < VZ_BACKLOG_MAX / 2) {
            z->waiting_ready = false;
            build_next(z);
        }
    } else if (z->phase == BP_CLOSING && left == 0 && z->w) {
        build_finish_writer(z);
    }
}

/* The upload completed or failed; the writer frees itself after this. */
static void on_writer_done(const struct storage_result *res, void *arg)
{
    struct vzip *z = arg;

    z->w = NULL;
    z->writer_err = res->err;
    if (res->err) {
        if (!z->failed)
            snprintf(z->errmsg, sizeof z->errmsg, "upload: %s", res->error ? res->error : "failed");
        z->failed = true;
    }
    z->phase = BP_FINISHED;
    /* Out of the writer's call stack: step acts on the outcome. */
    task_wake(z->t);
}

/* ---- one video ------------------------------------------------------------ */

static int on_video_data(const char *data, size_t len, void *arg)
{
    struct vzip *z = arg;

    if (z->failed)
        return -1;
    if (evbuffer_get_length(z->backlog) > 0) {
        build_flush(z);
        if (z->failed)
            return -1;
        if (evbuffer_get_length(z->backlog) > 0) {
            z->paused = true;
            return STORAGE_PAUSE;   /* the same bytes come after storage_resume */
        }
    }
    if (z->entry_got + (int64_t)len > z->entry_size) {
        snprintf(z->errmsg, sizeof z->errmsg, "%s grew while it was read",
                 z->batch[z->ibatch].name);
        z->failed = true;
        return -1;
    }
    la_ssize_t n = archive_write_data(z->ar, data, len);
    if (n < 0 || (size_t)n != len) {
        if (!z->failed)
            snprintf(z->errmsg, sizeof z->errmsg, "zip: %s", archive_error_string(z->ar));
        z->failed = true;
        return -1;
    }
    z->entry_got += (int64_t)len;
    return z->failed ? -1 : 0;
}

static void on_video_read(const struct storage_result *res, void *arg)
{
    struct vzip *z = arg;
    const char *name = z->batch[z->ibatch].name;

    z->op = NULL;
    z->paused = false;
    if (z->failed) {
        zip_build_fail(z, true, "%s", z->errmsg);
        return;
    }
    if (res->err) {
        /* Bytes of it may be in the archive already: start over. */
        zip_build_fail(z, true, "reading %s: %s", name, res->error ? res->error : "failed");
        return;
    }
    if (z->entry_got != z->entry_size) {
        zip_build_fail(z, true, "%s: read %lld bytes, expected %lld", name,
                   (long long)z->entry_got, (long long)z->entry_size);
        return;
    }
    if (archive_write_finish_entry(z->ar) < ARCHIVE_WARN || z->failed) {
        zip_build_fail(z, true, "zip: %s", z->failed ? z->errmsg : archive_error_string(z->ar));
        return;
    }
    z->videos_done++;
    z->ibatch++;
    build_next(z);
}

static void on_video_head(const struct storage_result *res, void *arg)
{
    struct vzip *z = arg;
    struct vz_video *v = &z->batch[z->ibatch];

    z->op = NULL;
    if (res->err == -ENOENT) {
        /* A recorded video whose object is gone: the zip lists it. */
        task_log(z->t, "missing from storage: %s", v->name);
        z->nmissing++;
        if (evbuffer_get_length(z->missing) < VZ_MISSING_MAX)
            evbuffer_add_printf(z->missing, "%s\n", v->name);
        z->ibatch++;
        build_next(z);
        return;
    }
    if (res->err) {
        zip_build_fail(z, true, "HEAD %s: %s", v->name, res->error ? res->error : "failed");
        return;
    }
    /* A stored entry needs its size in the header (libarchive would
     * deflate an entry of unknown size); the CRC goes after the data. */
    struct archive_entry *e = archive_entry_new();
    if (!e) {
        zip_build_fail(z, true, "out of memory");
        return;
    }
    if (!archive_entry_update_pathname_utf8(e, v->name))
        archive_entry_set_pathname(e, v->name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, res->size);
    archive_entry_set_mtime(e, v->mtime > 0 ? v->mtime : res->mtime, 0);
    int rc = archive_write_header(z->ar, e);
    archive_entry_free(e);
    if (rc < ARCHIVE_WARN || z->failed) {
        zip_build_fail(z, true, "zip header of %s: %s", v->name,
                   z->failed ? z->errmsg : archive_error_string(z->ar));
        return;
    }
    z->entry_size = res->size;
    z->entry_got = 0;
    z->op = storage_get_stream(z->app->storage, v->name, on_video_data, z, on_video_read, z);
    if (!z->op)
        zip_build_fail(z, true, "out of memory");
}

/* ---- the batches ------------------------------------------------------------ */

/* $1 user, $2 study id, $3 consent only, $4 after id, $5 max id, $6 limit. */
static const struct pg_stmt batch_stmt = {
    "video_zip_batch",
    "SELECT id, full_name, mtime FROM videos_visible_in_study($1::bigint, $2::bigint,"
    " $3::boolean, $4::bigint, $5::bigint, $6::int)",
};

static void on_batch(struct task *t, PGresult *res)
{
    struct vzip *z = t->data;

    if (!res || !pg_ok(res)) {
        zip_build_fail(z, true, "database: %s", res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }
    batch_clear(z);
    for (int i = 0; i < PQntuples(res) && i < VZ_BATCH; i++) {
        struct vz_video *v = &z->batch[z->nbatch];
        v->id = atoll(PQgetvalue(res, i, 0));
        v->name = strdup(PQgetvalue(res, i, 1));
        v->mtime = atoll(PQgetvalue(res, i, 2));
        if (!v->name) {
            zip_build_fail(z, true, "out of memory");
            return;
        }
        z->nbatch++;
        z->after = v->id;
    }
    if (z->nbatch < VZ_BATCH)
        z->list_done = true;
    build_next(z);
}

/* The archive is complete: the missing list, the central directory, then
 * the last part of the upload. */
static void build_close(struct vzip *z)
{
    if (z->nmissing > 0) {
        size_t n = evbuffer_get_length(z->missing);
        const unsigned char *text = evbuffer_pullup(z->missing, -1);
        struct archive_entry *e = archive_entry_new();
        if (!e || (!text && n)) {
            archive_entry_free(e);
            zip_build_fail(z, true, "out of memory");
            return;
        }
        archive_entry_set_pathname(e, "MISSING_VIDEOS.txt");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)n);
        archive_entry_set_mtime(e, time(NULL), 0);
        int rc = archive_write_header(z->ar, e);
        archive_entry_free(e);
        if (rc < ARCHIVE_WARN || (n && archive_write_data(z->ar, text, n) != (la_ssize_t)n) ||
            archive_write_finish_entry(z->ar) < ARCHIVE_WARN) {
            zip_build_fail(z, true, "zip: %s", archive_error_string(z->ar));
            return;
        }
        task_problem(z->t, "%lld videos missing from storage (listed in MISSING_VIDEOS.txt)",
                     (long long)z->nmissing);
    }
    z->phase = BP_CLOSING;
    if (archive_write_close(z->ar) != ARCHIVE_OK || z->failed) {
        zip_build_fail(z, true, "zip: %s", z->failed ? z->errmsg : archive_error_string(z->ar));
        return;
    }
    archive_write_free(z->ar);
    z->ar = NULL;
    build_flush(z);
    if (z->failed) {
        zip_build_fail(z, true, "%s", z->errmsg);
        return;
    }
    if (evbuffer_get_length(z->backlog) == 0)
        build_finish_writer(z);
    /* else on_writer_ready finishes it once the backlog is in */
}

/* The next video, the next batch, or the end. */
static void build_next(struct vzip *z)
{
    if (z->failed) {
        zip_build_fail(z, true, "%s", z->errmsg);
        return;
    }
    if (evbuffer_get_length(z->backlog) >= VZ_BACKLOG_MAX) {
        z->waiting_ready = true;   /* on_writer_ready calls us again */
        return;
    }
    if (z->ibatch < z->nbatch) {
        z->op = storage_head(z->app->storage, z->batch[z->ibatch].name, on_video_head, z);
        if (!z->op)
            zip_build_fail(z, true, "out of memory");
        return;
    }
    if (!z->list_done) {
        char after[24], max[24], limit[16];
        snprintf(after, sizeof after, "%lld", (long long)z->after);
        snprintf(max, sizeof max, "%lld", (long long)z->max_id);
        snprintf(limit, sizeof limit, "%d", VZ_BATCH);
        const char *params[] = { z->user, z->study_id, z->consent_only ? "true" : "false",
                                 after, max, limit };
        if (task_pg_exec(z->t, &batch_stmt, 6, params, on_batch) < 0)
            zip_build_fail(z, true, "out of memory");
        return;
    }
    build_close(z);
}

static void build_start(struct vzip *z)
{
    const struct config *cfg = z->app->cfg;
    size_t part = (size_t)cfg->video_zip_part_mb << 20;

    z->phase = BP_VIDEOS;
    clock_gettime(CLOCK_MONOTONIC, &z->t_start);
    z->backlog = evbuffer_new();
    z->missing = evbuffer_new();
    z->ar = archive_write_new();
    if (!z->backlog || !z->missing || !z->ar) {
        zip_build_fail(z, true, "out of memory");
        return;
    }
    /* ZIP64 always (zips of a study pass 4 GiB), entries stored (video is
     * compressed already), and no block padding: the stream is ours. */
    if (archive_write_set_format_zip(z->ar) != ARCHIVE_OK ||
        archive_write_zip_set_compression_store(z->ar) != ARCHIVE_OK ||
        archive_write_set_format_option(z->ar, "zip", "zip64", "1") != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(z->ar, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(z->ar, 1) != ARCHIVE_OK) {
        zip_build_fail(z, false, "zip setup: %s", archive_error_string(z->ar));
        return;
    }
    archive_write_set_format_option(z->ar, "zip", "hdrcharset", "UTF-8");
    z->w = storage_writer_new(z->app->storage, z->key, "application/zip", part,
                              on_writer_done, on_writer_ready, z);
    if (!z->w) {
        zip_build_fail(z, true, "cannot start the upload of %s", z->key);
        return;
    }
    if (archive_write_open(z->ar, z, NULL, on_archive_write, NULL) != ARCHIVE_OK) {
        zip_build_fail(z, true, "zip open: %s", archive_error_string(z->ar));
        return;
    }
    task_log(z->t, "building %s: %lld videos, %zu MiB parts", z->key, (long long)z->count,
             part >> 20);
    build_next(z);
}

static void build_step(struct vzip *z)
{
    switch (z->phase) {
    case BP_START:      /* zip_enter starts it */
    case BP_VIDEOS:
    case BP_CLOSING:
        return;   /* callbacks drive it */
    case BP_FINISHED:
        if (z->writer_err || z->failed) {
            zip_build_fail(z, true, "%s", z->errmsg);
            return;
        }
        zip_build_stop(z);
        z->finish_s = seconds_since(&z->t_finish);
        task_log(z->t, "uploaded %s: %lld videos, %lld missing, %lld bytes; %.1f s reading and "
                 "writing, %.1f s for the last parts and the completion", z->key,
                 (long long)z->videos_done, (long long)z->nmissing, (long long)z->bytes,
                 z->stream_s, z->finish_s);
        task_set_state(z->t, ZIP_NOTIFY, TASK_STAGE_OK);
        return;
    }
}

/* ---- prepare, lookup, notify ------------------------------------------------- */

/* $1 user, $2 study uuid, $3 consent only, $4 max video id.  One row:
 * (study id, study name, requester's email, videos, hash). */
static const struct pg_stmt prepare_stmt = {
    "video_zip_task_prepare",
    "WITH s AS (SELECT id, name FROM studies WHERE uuid = $2::uuid),"
    " v AS (SELECT z.full_name FROM s,"
    "         videos_visible_in_study($1::bigint, s.id, $3::boolean, 0, $4::bigint, NULL) z),"
    " agg AS (SELECT count(*) AS n,"
    "         encode(sha256(convert_to(coalesce(string_agg(full_name, ''"
    "                ORDER BY full_name COLLATE \"C\"), ''), 'UTF8')), 'hex') AS h FROM v)"
    " SELECT s.id, s.name, (SELECT email FROM users WHERE id = $1::bigint AND is_active),"
    "        agg.n, agg.h FROM agg LEFT JOIN s ON true",
};

static void on_prepared(struct task *t, PGresult *res)
{
    struct vzip *z = t->data;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        task_retry(t, "database: %s", res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }
    if (PQgetisnull(res, 0, 0)) {
        task_finish(t, TASK_FAILED, NULL, "the study %s no longer exists", z->study);
        return;
    }
    if (PQgetisnull(res, 0, 2)) {
        task_finish(t, TASK_FAILED, NULL, "the requester (user %s) is gone or inactive", z->user);
        return;
    }
    snprintf(z->study_id, sizeof z->study_id, "%s", PQgetvalue(res, 0, 0));
    z->study_name = strdup(PQgetvalue(res, 0, 1));
    z->count = atoll(PQgetvalue(res, 0, 3));
    const char *hash = PQgetvalue(res, 0, 4);
    if (asprintf(&z->key, VIDEO_ZIP_PREFIX "%s_%svideos_%s.zip", z->study,
                 z->consent_only ? "consent_" : "", hash) < 0)
        z->key = NULL;
    if (!z->study_name || !z->key) {
        task_retry(t, "out of memory");
        return;
    }
    if (z->count == 0) {
        z->fail_reason = strdup("there are no videos you may download in this study any more");
        task_set_state(t, ZIP_FAIL_NOTIFY, TASK_STAGE_FAILED);
        return;
    }
    task_log(t, "%lld videos; zip %s", (long long)z->count, z->key);
    task_set_state(t, ZIP_LOOKUP, TASK_STAGE_OK);
}

static void on_lookup(const struct storage_result *res, void *arg)
{
    struct vzip *z = arg;

    z->op = NULL;
    /* A zip is reused only while younger than a link's life, so that every
     * link to it dies before purge_video_storage deletes it (at twice
     * that age; tasks/purge_videos.h).  An older one is built again. */
    if (res->err == 0 && res->mtime > 0 && time(NULL) - res->mtime > VIDEOS_ZIP_URL_TTL_S) {
        task_log(z->t, "%s exists but is too old to hand out again: rebuilt", z->key);
        task_set_state(z->t, ZIP_BUILD, TASK_STAGE_OK);
    } else if (res->err == 0) {
        z->reused = true;
        z->bytes = res->size;
        task_log(z->t, "%s exists (%lld bytes): reused", z->key, (long long)res->size);
        task_set_state(z->t, ZIP_NOTIFY, TASK_STAGE_SKIPPED);
    } else if (res->err == -ENOENT) {
        task_set_state(z->t, ZIP_BUILD, TASK_STAGE_OK);
    } else {
        task_retry(z->t, "HEAD %s: %s", z->key, res->error ? res->error : "failed");
    }
}

/* $1 user id, $2 subject, $3 body. */
static const struct pg_stmt mail_stmt = {
    "video_zip_mail",
    MAIL_INSERT_SQL
    "SELECT 'video_zip', u.email, $2, $3 FROM users u WHERE u.id = $1::bigint RETURNING id",
};

static void on_mailed(struct task *t, PGresult *res)
{
    struct vzip *z = t->data;

    if (!res || !pg_ok(res)) {
        task_retry(t, "database: %s", res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }
    if (t->state == ZIP_FAIL_NOTIFY) {
        task_finish(t, TASK_FAILED, NULL, "%s", z->fail_reason ? z->fail_reason : "failed");
        return;
    }
    json_t *result = json_pack("{s:s, s:I, s:I, s:I, s:b, s:f, s:f}", "key", z->key, "videos",
                               (json_int_t)z->count, "missing", (json_int_t)z->nmissing,
                               "bytes", (json_int_t)z->bytes, "reused", z->reused,
                               "stream_s", z->stream_s, "finish_s", z->finish_s);
    task_finish(t, TASK_SUCCEEDED, result, NULL);
}

static void notify(struct vzip *z, bool ok)
{
    struct task *t = z->t;
    char *subject = NULL, *body = NULL, until[40];
    const char *why = NULL, *what = z->consent_only ? "consent videos" : "videos";
    time_t now = time(NULL), end = now + VIDEOS_ZIP_URL_TTL_S;
    struct tm tm;
    char *url = NULL;
    int rc = -1;

    gmtime_r(&end, &tm);
    strftime(until, sizeof until, "%Y-%m-%d %H:%M UTC", &tm);
    if (ok) {
        const char *base = strrchr(z->key, '/');
        url = storage_presign_get(z->app->storage, z->key, VIDEOS_ZIP_URL_TTL_S, now,
                                  base ? base + 1 : z->key, &why);
        if (!url) {
            task_retry(t, "cannot sign a link to %s: %s", z->key, why ? why : "?");
            return;
        }
        subject = strdup("Your video archive has been created");
        rc = asprintf(&body,
                      "Hello,\n\n"
                      "The archive of the %s of the study \"%s\" that you asked for is "
                      "ready: %lld videos%s.\n\n"
                      "Download it here (the link works for 30 minutes, until %s):\n%s\n\n"
                      "Ask for the archive again for a new link; it is not built again "
                      "while the videos stay the same.\n",
                      what, z->study_name ? z->study_name : z->study,
                      (long long)(z->count - z->nmissing),
                      z->nmissing ? " (some could not be found; see MISSING_VIDEOS.txt)" : "",
                      until, url);
    } else {
        subject = strdup("Your video archive could not be created");
        rc = asprintf(&body,
                      "Hello,\n\n"
                      "The archive of the %s of the study \"%s\" that you asked for could "
                      "not be created: %s.\n\nPlease try again later; if it keeps failing, "
                      "contact the site's administrators.\n",
                      what, z->study_name ? z->study_name : z->study,
                      z->fail_reason ? z->fail_reason : "an error");
    }
    if (rc < 0)
        body = NULL;
    if (!subject || !body) {
        task_retry(t, "out of memory");
        goto out;
    }
    const char *params[] = { z->user, subject, body };
    if (task_pg_exec(t, &mail_stmt, 3, params, on_mailed) < 0)
        task_retry(t, "out of memory");
out:
    free(url);
    free(subject);
    free(body);
}

/* ---- the kind -------------------------------------------------------------------- */

static int zip_open(struct task *t, char *err, size_t errlen)
{
    const char *study = json_string_value(json_object_get(t->payload, "study"));
    const char *user = json_string_value(json_object_get(t->payload, "user"));
    json_t *max = json_object_get(t->payload, "max_video_id");
    struct vzip *z;

    if (!study || strlen(study) != 36 || !user || !*user || strlen(user) > 20 ||
        strspn(user, "0123456789") != strlen(user) || !json_is_integer(max)) {
        snprintf(err, errlen, "payload needs study (uuid), user (id) and max_video_id");
        return -1;
    }
    z = calloc(1, sizeof *z);
    if (!z) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    z->t = t;
    z->app = t->app;
    snprintf(z->study, sizeof z->study, "%s", study);
    snprintf(z->user, sizeof z->user, "%s", user);
    z->consent_only = json_is_true(json_object_get(t->payload, "consent_only"));
    z->max_id = json_integer_value(max);
    t->data = z;
    return 0;
}

/* Entering build sets the archive and its upload up and starts the
 * first video; from then on the callbacks drive it, and step acts on the
 * writer's outcome. */
static void zip_enter(struct task *t, int state)
{
    struct vzip *z = t->data;

    if (state == ZIP_BUILD && z->phase == BP_START)
        build_start(z);
}

static void zip_step(struct task *t)
{
    struct vzip *z = t->data;

    switch ((enum zip_state)t->state) {
    case ZIP_PREPARE: {
        char max[24];
        snprintf(max, sizeof max, "%lld", (long long)z->max_id);
        const char *params[] = { z->user, z->study, z->consent_only ? "true" : "false", max };
        if (task_pg_exec(t, &prepare_stmt, 4, params, on_prepared) < 0)
            task_retry(t, "out of memory");
        return;
    }
    case ZIP_LOOKUP:
        z->op = storage_head(z->app->storage, z->key, on_lookup, z);
        if (!z->op)
            task_retry(t, "out of memory");
        return;
    case ZIP_BUILD:
        build_step(z);
        return;
    case ZIP_NOTIFY:
        notify(z, true);
        return;
    case ZIP_FAIL_NOTIFY:
        notify(z, false);
        return;
    case ZIP_NSTATES:
        break;
    }
    task_finish(t, TASK_FAILED, NULL, "internal error: state %d", t->state);
}

/* A server died mid-task: what it knew died with it, so start again from
 * prepare (a zip it completed is found by lookup); with no attempt left,
 * tell the requester. */
static int zip_resume(struct task *t, int interrupted_state)
{
    struct vzip *z = t->data;

    if (t->attempts > t->max_attempts) {
        z->fail_reason = strdup("the server building it stopped, too many times");
        return z->fail_reason ? ZIP_FAIL_NOTIFY : -1;
    }
    return ZIP_PREPARE;
}

static void zip_cancel(struct task *t)
{
    struct vzip *z = t->data;

    zip_build_stop(z);
    task_finish(t, TASK_CANCELLED, NULL, "cancelled");
}

static void zip_close(struct task *t)
{
    vzip_free(t->data);
    t->data = NULL;
}

const struct task_kind video_zip_kind = {
    .name = VIDEO_ZIP_KIND,
    .states = zip_state_names,
    .nstates = ZIP_NSTATES,
    .initial_state = ZIP_PREPARE,
    .max_attempts = 3,
    .retry_delay_s = 30,
    .resume_policy = TASK_RESUME_CONTINUE,
    .open = zip_open,
    .enter = zip_enter,
    .step = zip_step,
    .resume = zip_resume,
    .cancel = zip_cancel,
    .close = zip_close,
};
