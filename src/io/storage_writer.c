/* storage_writer: a streamed multipart upload on top of io/storage.
 *
 * One task with a state enum and one step function.  Buffers: one filling,
 * up to two uploading; a short write sets want_ready and the ready callback
 * runs from the loop once a buffer is free again.  The writer is held
 * (core/reap) while ready or done runs: cancelled or done there, it stops
 * at once and is freed on a later loop turn. */
#include "config.h"

#include "studyhub/io/storage_writer.h"
#include "studyhub/io/storage_backend.h"

#include "studyhub/core/log.h"
#include "studyhub/core/reap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum sw_state { SW_CREATING, SW_OPEN, SW_COMPLETING, SW_ABORTING, SW_DONE };
static const char *const sw_state_names[] = {
    "creating", "open", "completing", "aborting", "done",
};

#define SW_BUFS 3
#define SW_INFLIGHT (SW_BUFS - 1)

struct storage_writer;

/* Free: number 0 and no op.  Filling: w->fill.  Sealed: number > 0 and no
 * op.  Uploading: op set. */
struct sw_buf {
    struct storage_writer *w; /* borrowed: back pointer for callbacks */
    char *data;               /* owned; part_size bytes, made on first use */
    size_t len;               /* bytes in data */
    int number;               /* part number once sealed */
    struct storage_op *op;    /* put_part in flight */
};

struct storage_writer {
    struct storage *st;             /* borrowed */
    char *key;                      /* owned */
    char *content_type;             /* owned; may be NULL */
    size_t part_size;
    enum sw_state state;            /* changed only by sw_set_state */
    char *upload_id;                /* owned, once created */
    struct sw_buf bufs[SW_BUFS];
    int fill;                       /* buffer being filled, -1 none */
    int next_number;                /* of the next sealed part */
    struct storage_part *parts;     /* owned (etags too); [number - 1] */
    size_t nparts;                  /* parts recorded (highest number) */
    struct storage_op *op;          /* create / complete / abort in flight */
    int err;                        /* first failure, 0 while fine */
    char *error;                    /* owned: its message */
    char *etag;                     /* owned: of the completed object */
    int64_t total;                  /* bytes sealed into parts */
    bool finish;                    /* no more writes: complete when drained */
    bool want_ready;                /* a write was short */
    struct reap reap;               /* held while ready/done runs; released
                                     * once cancelled or done */
    struct event *ready_ev;         /* owned: runs `ready` from the loop */
    storage_writer_done_fn done;    /* borrowed */
    storage_writer_ready_fn ready;  /* borrowed; may be NULL */
    void *arg;                      /* borrowed */
};

static void sw_step(struct storage_writer *w);

static void sw_set_state(struct storage_writer *w, enum sw_state s)
{
    if (w->state == s)
        return;
    log_debug("storage: writer %s: %s -> %s", w->key, sw_state_names[w->state],
              sw_state_names[s]);
    w->state = s;
}

static void sw_fail(struct storage_writer *w, int err, const char *msg)
{
    if (w->err)
        return;  /* the first failure is the one worth telling */
    w->err = err ? err : -EIO;
    w->error = xstrdup(msg ? msg : strerror(-w->err));
}

/* Stops what is in flight, so nothing calls back any more; abort_remote
 * also throws away the backend's upload. */
static void sw_stop(struct storage_writer *w, bool abort_remote)
{
    for (int i = 0; i < SW_BUFS; i++) {
        storage_cancel(w->bufs[i].op);
        w->bufs[i].op = NULL;
    }
    storage_cancel(w->op);
    w->op = NULL;
    if (abort_remote && w->upload_id) {
        storage_mpu_abort(w->st, w->key, w->upload_id, NULL, NULL);
        free(w->upload_id);
        w->upload_id = NULL;
    }
    if (w->ready_ev)
        event_del(w->ready_ev);
}

/* Frees everything (stopped first). */
static void sw_free(struct storage_writer *w)
{
    sw_stop(w, false);
    for (int i = 0; i < SW_BUFS; i++)
        free(w->bufs[i].data);
    for (size_t i = 0; i < w->nparts; i++)
        free((char *)w->parts[i].etag);
    free(w->parts);
    event_free(w->ready_ev);
    free(w->key);
    free(w->content_type);
    free(w->upload_id);
    free(w->error);
    free(w->etag);
    reap_cleanup(&w->reap);
    free(w);
}

static void sw_destroy(void *w)
{
    sw_free(w);
}

static void sw_on_ready_ev(evutil_socket_t fd, short what, void *arg)
{
    struct storage_writer *w = arg;

    if (w->state != SW_CREATING && w->state != SW_OPEN)
        return;
    if (w->ready) {
        reap_hold(&w->reap);
        w->ready(w->arg);
        reap_drop(&w->reap);    /* cancelled there: freed on a later turn */
    }
}

static void sw_seal(struct storage_writer *w)
{
    struct sw_buf *b = &w->bufs[w->fill];

    b->number = w->next_number++;
    w->total += (int64_t)b->len;
    w->fill = -1;
}

static void sw_on_part(const struct storage_result *res, void *arg)
{
    struct sw_buf *b = arg;
    struct storage_writer *w = b->w;

    b->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
    } else if ((size_t)b->number > w->nparts) {
        /* Grow to hold [number - 1]; parts can finish out of order. */
        struct storage_part *np = realloc(w->parts, (size_t)b->number * sizeof *np);
        if (!np) {
            sw_fail(w, -ENOMEM, "out of memory");
        } else {
            memset(np + w->nparts, 0, ((size_t)b->number - w->nparts) * sizeof *np);
            w->parts = np;
            w->nparts = (size_t)b->number;
        }
    }
    if (!res->err && !w->err) {
        w->parts[b->number - 1].number = b->number;
        w->parts[b->number - 1].etag = xstrdup(res->etag);
        if (!w->parts[b->number - 1].etag)
            sw_fail(w, -EIO, "a part came back without an etag");
    }
    b->len = 0;
    b->number = 0;
    sw_step(w);
}

static void sw_on_create(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
        sw_set_state(w, SW_DONE);
    } else {
        w->upload_id = xstrdup(res->upload_id);
        if (!w->upload_id) {
            sw_fail(w, -ENOMEM, "out of memory");
            sw_set_state(w, SW_DONE);
        } else {
            sw_set_state(w, SW_OPEN);
        }
    }
    sw_step(w);
}

static void sw_on_complete(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err) {
        sw_fail(w, res->err, res->error);
        sw_set_state(w, SW_OPEN);  /* the step sees err and aborts */
    } else {
        w->etag = xstrdup(res->etag);
        free(w->upload_id);
        w->upload_id = NULL;  /* nothing left to abort */
        sw_set_state(w, SW_DONE);
    }
    sw_step(w);
}

static void sw_on_abort(const struct storage_result *res, void *arg)
{
    struct storage_writer *w = arg;

    w->op = NULL;
    if (res->err)
        log_warn("storage: aborting upload %s of %s failed: %s (the nightly "
                 "job will retry)", w->upload_id, w->key, res->error);
    free(w->upload_id);
    w->upload_id = NULL;
    sw_set_state(w, SW_DONE);
    sw_step(w);
}

/* OPEN: uploads what is sealed, completes when finished and drained. */
static void sw_open_step(struct storage_writer *w)
{
    int inflight = 0;

    for (int i = 0; i < SW_BUFS; i++)
        if (w->bufs[i].op)
            inflight++;
    /* Lowest part numbers first, so parts go out in order. */
    while (inflight < SW_INFLIGHT) {
        struct sw_buf *next = NULL;
        for (int i = 0; i < SW_BUFS; i++) {
            struct sw_buf *b = &w->bufs[i];
            if (b->number && !b->op && (!next || b->number < next->number))
                next = b;
        }
        if (!next)
            break;
        next->op = storage_mpu_put_part(w->st, w->key, w->upload_id, next->number,
                                        next->data, next->len, sw_on_part, next);
        if (!next->op) {
            sw_fail(w, -ENOMEM, "out of memory");
            return;
        }
        inflight++;
    }
    if (w->finish && inflight == 0 && w->fill < 0) {
        bool sealed = false;
        for (int i = 0; i < SW_BUFS; i++)
            sealed |= w->bufs[i].number != 0;
        if (!sealed) {
            w->op = storage_mpu_complete(w->st, w->key, w->upload_id, w->parts,
                                         w->nparts, sw_on_complete, w);
            if (!w->op) {
                sw_fail(w, -ENOMEM, "out of memory");
                return;
            }
            sw_set_state(w, SW_COMPLETING);
            return;
        }
    }
    if (w->want_ready && !w->finish) {
        for (int i = 0; i < SW_BUFS; i++) {
            if (!w->bufs[i].number && !w->bufs[i].op && i != w->fill) {
                static const struct timeval now = { 0, 0 };
                w->want_ready = false;
                evtimer_add(w->ready_ev, &now);
                break;
            }
        }
    }
}

static void sw_step(struct storage_writer *w)
{
    for (;;) {
        switch (w->state) {
        case SW_CREATING:
        case SW_COMPLETING:
        case SW_ABORTING:
            return;  /* a callback moves us on */
        case SW_OPEN:
            if (!w->err) {
                sw_open_step(w);
                if (!w->err)
                    return;
            }
            /* Failed: stop the parts, then abort the upload. */
            for (int i = 0; i < SW_BUFS; i++) {
                storage_cancel(w->bufs[i].op);
                w->bufs[i].op = NULL;
            }
            w->op = storage_mpu_abort(w->st, w->key, w->upload_id, sw_on_abort, w);
            if (w->op) {
                sw_set_state(w, SW_ABORTING);
                return;
            }
            sw_set_state(w, SW_DONE);
            continue;
        case SW_DONE: {
            struct storage_result res = {
                .err = w->err, .error = w->error, .size = w->total, .etag = w->etag,
            };
            /* Done: a cancel from here on is a no-op. */
            reap_hold(&w->reap);
            reap_release(&w->reap);
            if (w->done)
                w->done(&res, w->arg);
            /* An upload left by a failed complete is aborted here. */
            sw_stop(w, w->upload_id != NULL);
            reap_drop(&w->reap);        /* freed on a later turn, not here */
            return;
        }
        }
    }
}

struct storage_writer *storage_writer_new(struct storage *st,
                                          const char *key,
                                          const char *content_type,
                                          size_t part_size,
                                          storage_writer_done_fn done,
                                          storage_writer_ready_fn ready,
                                          void *arg)
{
    struct storage_writer *w;

    if (!st || !done || !storage_key_valid(key))
        return NULL;
    w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->st = st;
    w->part_size = part_size < STORAGE_MIN_PART_SIZE ? STORAGE_MIN_PART_SIZE : part_size;
    w->fill = -1;
    w->next_number = 1;
    w->done = done;
    w->ready = ready;
    w->arg = arg;
    w->state = SW_CREATING;
    for (int i = 0; i < SW_BUFS; i++)
        w->bufs[i].w = w;
    w->key = strdup(key);
    w->content_type = xstrdup(content_type);
    w->ready_ev = evtimer_new(st->base, sw_on_ready_ev, w);
    if (reap_init(&w->reap, st->base, sw_destroy, w) < 0 || !w->key ||
        (content_type && !w->content_type) || !w->ready_ev) {
        sw_free(w);
        return NULL;
    }
    w->op = storage_mpu_create(st, key, content_type, sw_on_create, w);
    if (!w->op) {
        sw_free(w);
        return NULL;
    }
    return w;
}

ssize_t storage_writer_write(struct storage_writer *w, const void *data,
                             size_t len)
{
    const char *p = data;
    size_t taken = 0;
    bool sealed = false;

    if (w->err || w->finish || reap_released(&w->reap) ||
        (w->state != SW_CREATING && w->state != SW_OPEN))
        return -1;
    while (taken < len) {
        if (w->fill < 0) {
            for (int i = 0; i < SW_BUFS && w->fill < 0; i++)
                if (!w->bufs[i].number && !w->bufs[i].op)
                    w->fill = i;
            if (w->fill < 0) {
                w->want_ready = true;
                break;
            }
            if (w->next_number > 10000) {
                sw_fail(w, -EFBIG, "more than 10000 parts: use a larger part size");
                w->fill = -1;
                sw_step(w);
                return -1;
            }
        }
        struct sw_buf *b = &w->bufs[w->fill];
        if (!b->data && !(b->data = malloc(w->part_size))) {
            w->fill = -1;
            sw_fail(w, -ENOMEM, "out of memory");
            sw_step(w);
            return -1;
        }
        size_t n = w->part_size - b->len;
        if (n > len - taken)
            n = len - taken;
        memcpy(b->data + b->len, p + taken, n);
        b->len += n;
        taken += n;
        if (b->len == w->part_size) {
            sw_seal(w);
            sealed = true;
        }
    }
    if (sealed)
        sw_step(w);
    return (ssize_t)taken;
}

void storage_writer_finish(struct storage_writer *w)
{
    if (w->finish || reap_released(&w->reap) || w->state == SW_DONE)
        return;
    w->finish = true;
    /* The last part may be short; an empty object is one empty part. */
    if (w->fill < 0 && w->next_number == 1)
        w->fill = 0;
    if (w->fill >= 0) {
        if (w->bufs[w->fill].len > 0 || w->next_number == 1)
            sw_seal(w);
        else
            w->fill = -1;
    }
    sw_step(w);
}

void storage_writer_cancel(struct storage_writer *w)
{
    if (!w || reap_released(&w->reap))
        return;     /* cancelled already, or done */
    sw_stop(w, true);
    /* Now, or inside ready: on a later turn once it returned. */
    reap_release(&w->reap);
}
