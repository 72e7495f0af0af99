/* storage_backend: what the storage module's files share (storage.c, the
 * operations and dispatch; storage_file.c and storage_s3.c, the backends;
 * storage_writer.c).  Not for other modules: they use io/storage.h. */
#ifndef STUDYHUB_IO_STORAGE_BACKEND_H
#define STUDYHUB_IO_STORAGE_BACKEND_H

#include "studyhub/core/reap.h"
#include "studyhub/io/storage.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#define FILE_CHUNK (256u << 10)
/* File I/O done per loop turn by one streaming operation. */
#define FILE_TURN_BYTES (1u << 20)
#define LIST_MAX 1000
/* Bodies up to this size are hashed into x-amz-content-sha256; larger ones
 * go as UNSIGNED-PAYLOAD so that hashing a part does not stall the loop
 * (TLS protects them in transit). */
#define HASH_BODY_MAX (1u << 20)
#define XML_MAX (8u << 20)
#define DEFAULT_GET_MAX (1u << 20)
#define INTERNAL_DIR ".studyhub"
/* file:// objects and folders are the server's alone: it serves them
 * through signed links, nobody else on the host needs to read them. */
#define STORAGE_FILE_MODE 0600
#define STORAGE_DIR_MODE 0700

enum st_kind { ST_FILE, ST_S3 };

struct storage_op;
TAILQ_HEAD(op_list, storage_op);

struct storage {
    struct event_base *base;  /* borrowed */
    struct fetch_client *fc;  /* borrowed; NULL allowed for file */
    enum st_kind kind;
    const char *name;         /* static: "file", "s3" or "gs" */
    struct op_list ops;       /* owned: live operations */
    /* file */
    char *dir;                /* owned: no trailing '/' */
    char *public_base;        /* owned; may be NULL */
    char *link_secret;        /* owned; may be NULL */
    bool fsync;               /* fdatasync before rename */
    uint64_t seq;             /* temp file names */
    /* s3 / gs */
    char *bucket;             /* owned */
    char *origin;             /* owned: scheme://host[:port] of requests */
    char *host;               /* owned: Host header value */
    char *path_prefix;        /* owned: "/bucket" (path-style) or "" */
    char *region;             /* owned */
    char *access_key;         /* owned */
    char *secret_key;         /* owned */
};

enum op_kind {
    OP_PUT, OP_PUT_STREAM, OP_PUT_FILE, OP_GET, OP_GET_STREAM, OP_HEAD,
    OP_LIST, OP_COPY, OP_DELETE, OP_MPU_CREATE, OP_MPU_PART,
    OP_MPU_COMPLETE, OP_MPU_ABORT, OP_MPU_LIST,
};
extern const char *const storage_op_names[];

struct storage_op {
    TAILQ_ENTRY(storage_op) link; /* in st->ops */
    struct storage *st;           /* borrowed */
    enum op_kind kind;
    storage_cb cb;                /* borrowed; may be NULL */
    void *arg;                    /* borrowed */
    struct reap reap;             /* held while a user function runs;
                                   * released once cancelled or answered */
    bool paused;                  /* stream waits for storage_resume */
    bool stopped;                 /* the user's stream function said stop */
    struct event *ev;             /* owned: start, file work slices */
    struct fetch_req *req;        /* s3 request in flight (fetch owns) */
    /* parameters (owned copies unless said) */
    char *key;
    char *key2;                   /* copy destination */
    char *prefix;
    char *token;
    char *upload_id;
    char *content_type;
    char *path;                   /* put_file source */
    const void *data;             /* borrowed body */
    size_t len;
    size_t max;                   /* get: byte limit */
    int max_keys;
    int number;                   /* part number */
    int64_t stream_len;           /* put_stream: promised length */
    storage_read_fn read_fn;      /* borrowed */
    storage_write_fn write_fn;    /* borrowed */
    void *rw_arg;                 /* borrowed */
    struct storage_part *parts;   /* owned, etags owned */
    size_t nparts;
    char *xml;                    /* owned: request body (complete) */
    size_t xml_len;
    /* file streaming */
    int in_fd;                    /* owned; -1 when closed */
    int out_fd;                   /* owned; -1 when closed */
    char *tmp;                    /* owned: temp file to rename or unlink */
    char *buf;                    /* owned: one chunk */
    size_t buf_len;               /* bytes in buf */
    size_t buf_off;               /* bytes of buf already written */
    int64_t moved;                /* bytes streamed so far */
    size_t part_idx;              /* complete: next part to append */
    /* result and what it points to (owned) */
    struct storage_result res;
    char *r_error;
    char *r_etag;
    char *r_ctype;
    char *r_upload_id;
    char *r_next;
    char *r_body;
    struct storage_object *r_objs;
    size_t r_nobjs;
    struct storage_upload_info *r_ups;
    size_t r_nups;
};

/* --- small helpers ------------------------------------------------------------ */

static inline char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static inline bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* A list prefix is any string a key could start with. */
static inline bool prefix_valid(const char *p)
{
    if (!p)
        return true;
    if (strlen(p) > STORAGE_KEY_MAX || p[0] == '/')
        return false;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            return false;
    return true;
}

static inline bool upload_id_valid_file(const char *id)
{
    if (!id || strlen(id) != 32)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static inline time_t parse_iso8601(const char *s)
{
    struct tm tm = { 0 };
    int y, mo, d, h, mi, sec;

    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return timegm(&tm);
}

/* --- operations (storage.c) ----------------------------------------------------- */

/* Answers the caller and frees the operation. */
void storage_op_done(struct storage_op *op);
void storage_op_fail(struct storage_op *op, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Runs the op's next step on a later loop turn (after pending I/O). */
void storage_op_again(struct storage_op *op);
void storage_op_free(struct storage_op *op);
/* Call a user stream function, holding op.  False when the op was
 * cancelled inside it (it is freed on a later loop turn: leave it). */
bool storage_op_user_write(struct storage_op *op, const char *p, size_t n, int *rc);
bool storage_op_user_read(struct storage_op *op, char *p, size_t n, ssize_t *got);

/* --- the file backend (storage_file.c) ------------------------------------------ */

int storage_file_setup(struct storage *st, const char *path, const char **err);
/* One step of op on a file:// store. */
void storage_file_step(struct storage_op *op);

/* --- the S3 backend (storage_s3.c) ---------------------------------------------- */

int storage_s3_setup(struct storage *st, const char *bucket, bool gs,
                     const struct storage_config *cfg, const char **err);
/* One step of op on an s3:// or gs:// store. */
void storage_s3_step(struct storage_op *op);

#endif
