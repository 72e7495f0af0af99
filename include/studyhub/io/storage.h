/* storage: objects by key behind one interface, three backends chosen by
 * the URL's scheme:
 *   file://DIR    objects are files under DIR (the default); presigned
 *                 links are HMAC-signed, expiring URLs the server serves
 *                 (storage_link_verify, storage_file_open);
 *   s3://BUCKET   S3 or an S3-compatible server, SigV4, path-style or
 *                 virtual-hosted URLs;
 *   gs://BUCKET   Google Cloud Storage's XML API with HMAC keys (the S3
 *                 backend with endpoint https://storage.googleapis.com).
 * Every operation is asynchronous: its callback runs later from the loop,
 * never inside the call that started it.  Keys are checked the same way
 * for every backend (storage_key_valid). */
#ifndef STUDYHUB_IO_STORAGE_H
#define STUDYHUB_IO_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct event_base;
struct fetch_client;
struct storage;
struct storage_op;

/* Keys: 1..1024 bytes of UTF-8 without control characters, no leading '/',
 * no empty, "." or ".." segment, no backslash, and not under ".studyhub/"
 * (the file backend's own folder). */
#define STORAGE_KEY_MAX 1024
/* S3's smallest part, except the last one. */
#define STORAGE_MIN_PART_SIZE (5u << 20)

struct storage_config {
    const char *url;         /* file://DIR, s3://BUCKET, gs://BUCKET;
                                NULL or "" means file://var/storage */
    /* s3 and gs */
    const char *endpoint;    /* e.g. http://127.0.0.1:9000; default
                                https://s3.REGION.amazonaws.com, or
                                https://storage.googleapis.com for gs */
    const char *region;      /* default us-east-1 ("auto" for gs) */
    const char *access_key;
    const char *secret_key;
    bool path_style;         /* endpoint/bucket/key instead of
                                bucket.endpoint/key (always for gs) */
    /* file */
    const char *public_base; /* origin of presigned links, e.g.
                                http://127.0.0.1:8000 */
    const char *link_secret; /* HMAC key of presigned links (required for
                                file:// presigning) */
    bool fsync;              /* fsync objects before they are renamed
                                into place (default off: set it in
                                production for durability) */
};

/* One listed object or incomplete upload.  Strings owned by the result. */
struct storage_object {
    const char *key;
    int64_t size;
    time_t mtime;
    const char *etag;        /* with its quotes, as S3 gives it */
};

struct storage_upload_info {
    const char *key;
    const char *upload_id;
    time_t initiated;
};

/* A finished multipart part.  Borrowed by storage_mpu_complete. */
struct storage_part {
    int number;              /* 1..10000, ascending */
    const char *etag;
};

/* What an operation produced.  Valid only during the callback. */
struct storage_result {
    int err;                 /* 0, or -ENOENT (no such key or upload),
                                -EACCES, -EINVAL (bad key or request),
                                -EFBIG (larger than asked), -EIO (backend
                                or network), -ECANCELED, -ENOMEM */
    const char *error;       /* NULL on success; a message for logs */
    int http_status;         /* s3/gs: last HTTP status; 0 for file */
    /* head, get, put, copy, put_part */
    int64_t size;
    time_t mtime;
    const char *etag;
    const char *content_type;
    /* get to memory */
    const char *body;
    size_t body_len;
    /* list, mpu_list: one page */
    const struct storage_object *objects;
    size_t nobjects;
    const struct storage_upload_info *uploads;
    size_t nuploads;
    const char *next_token;  /* NULL on the last page */
    /* mpu_create */
    const char *upload_id;
};

typedef void (*storage_cb)(const struct storage_result *res, void *arg);
/* Streamed get: take the bytes and return 0, or STORAGE_PAUSE (the same
 * bytes come again after storage_resume), or -1 to stop (err -ECANCELED). */
typedef int (*storage_write_fn)(const char *data, size_t len, void *arg);
/* Streamed put: fill buf, return bytes, 0 at the end, STORAGE_PAUSE, or -1. */
typedef ssize_t (*storage_read_fn)(char *buf, size_t len, void *arg);
#define STORAGE_PAUSE (-2)

/* Parses the config; fc (borrowed, may be NULL for file://) carries the
 * HTTP traffic.  On failure returns NULL with *err set to a static
 * message.  The file backend creates DIR when missing. */
struct storage *storage_new(struct event_base *base, struct fetch_client *fc,
                            const struct storage_config *cfg,
                            const char **err);
/* Stops every operation without calling its callback.  Cancel writers
 * first (they use st), and not from inside a storage callback. */
void storage_free(struct storage *st);

/* file:// only (0 elsewhere): removes the temporary files of writes that
 * never finished (a crash mid-upload leaves one behind) and returns how
 * many.  A file goes when it was last written before `before`, and, with
 * dead_writers_only, only when the process that wrote it (its name holds
 * the pid) is gone from this host.  Synchronous: the folder holds only the
 * writes in flight. */
long storage_sweep_tmp(struct storage *st, time_t before, bool dead_writers_only);

/* "file", "s3" or "gs". */
const char *storage_backend(const struct storage *st);
bool storage_key_valid(const char *key);
/* The content type of an object by its name's extension
 * (application/octet-stream when unknown). */
const char *storage_content_type(const char *key);

/* Every call below returns a handle for storage_cancel/storage_resume, or
 * NULL when out of memory (nothing was started; the callback will not
 * run).  Any other failure, a bad key included, goes to the callback. */

/* Writes the object whole (atomically: readers see the old or the new). */
struct storage_op *storage_put(struct storage *st, const char *key,
                               const void *data, size_t len,
                               const char *content_type, storage_cb cb,
                               void *arg);
/* Streams `len` bytes from read_fn (s3: sent as UNSIGNED-PAYLOAD; not
 * retried, since the stream cannot be replayed). */
struct storage_op *storage_put_stream(struct storage *st, const char *key,
                                      int64_t len, const char *content_type,
                                      storage_read_fn read_fn, void *rarg,
                                      storage_cb cb, void *arg);
/* Uploads a local file (retried on network errors). */
struct storage_op *storage_put_file(struct storage *st, const char *key,
                                    const char *path,
                                    const char *content_type, storage_cb cb,
                                    void *arg);
/* Reads the object into memory; more than max bytes (0: 1 MiB) fails
 * with -EFBIG. */
struct storage_op *storage_get(struct storage *st, const char *key,
                               size_t max, storage_cb cb, void *arg);
/* Streams the object to write_fn, then calls cb (with size, etag). */
struct storage_op *storage_get_stream(struct storage *st, const char *key,
                                      storage_write_fn write_fn, void *warg,
                                      storage_cb cb, void *arg);
/* Size, mtime, etag, content type; -ENOENT when absent. */
struct storage_op *storage_head(struct storage *st, const char *key,
                                storage_cb cb, void *arg);
/* One page (at most max_keys, default and cap 1000) of the keys starting
 * with prefix, in byte order, after the page that gave `token` (NULL for
 * the first page). */
struct storage_op *storage_list(struct storage *st, const char *prefix,
                                const char *token, int max_keys,
                                storage_cb cb, void *arg);
struct storage_op *storage_copy(struct storage *st, const char *src_key,
                                const char *dst_key, storage_cb cb, void *arg);
/* Deleting an absent key succeeds, as on S3. */
struct storage_op *storage_delete(struct storage *st, const char *key,
                                  storage_cb cb, void *arg);

/* Multipart upload, the S3 way: create gives upload_id; parts 1..10000
 * of at least STORAGE_MIN_PART_SIZE (the last may be smaller), each
 * giving an etag; complete with the list; abort throws the parts away. */
struct storage_op *storage_mpu_create(struct storage *st, const char *key,
                                      const char *content_type,
                                      storage_cb cb, void *arg);
/* data is borrowed until the callback. */
struct storage_op *storage_mpu_put_part(struct storage *st, const char *key,
                                        const char *upload_id, int number,
                                        const void *data, size_t len,
                                        storage_cb cb, void *arg);
struct storage_op *storage_mpu_complete(struct storage *st, const char *key,
                                        const char *upload_id,
                                        const struct storage_part *parts,
                                        size_t nparts, storage_cb cb,
                                        void *arg);
struct storage_op *storage_mpu_abort(struct storage *st, const char *key,
                                     const char *upload_id, storage_cb cb,
                                     void *arg);
/* One page of incomplete uploads under prefix, with their start times
 * (for the nightly job that aborts the old ones). */
struct storage_op *storage_mpu_list(struct storage *st, const char *prefix,
                                    const char *token, storage_cb cb,
                                    void *arg);

/* Stops an operation: its callback will not run.  Safe inside the op's own
 * stream function; a no-op inside its completion callback. */
void storage_cancel(struct storage_op *op);
/* Continues a streamed get/put whose function returned STORAGE_PAUSE. */
void storage_resume(struct storage_op *op);

/* A URL anyone can GET the object with until now + expires seconds.
 * s3/gs: a SigV4 presigned URL; file: public_base + /storage/KEY
 * ?expires=UNIX&sig=HEX.  download_name, when set, asks for
 * Content-Disposition: attachment (s3/gs only).  malloc'd; NULL with
 * *err set when it cannot be made (bad key, no link secret). */
char *storage_presign_get(struct storage *st, const char *key,
                          unsigned expires, time_t now,
                          const char *download_name, const char **err);

/* file backend, for the HTTP handler of /storage/KEY: 0 when sig is the
 * link's signature and expires (decimal UNIX time) is not past; -EACCES
 * for a bad signature, -ETIMEDOUT when expired, -EINVAL for a bad key. */
int storage_link_verify(const struct storage *st, const char *key,
                        const char *expires, const char *sig, time_t now);
/* file backend: opens the object for reading (O_CLOEXEC) and fills *size.
 * Returns the fd or -ENOENT / -EINVAL / -errno. */
int storage_file_open(const struct storage *st, const char *key,
                      int64_t *size);

#endif
