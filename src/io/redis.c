/* redis: one hiredis 0.14 async connection on the libevent loop, with
 * AUTH (when a password is set) and SELECT after connect, reconnect with capped backoff, a timeout on every
 * command, and NULL replies that are never delivered inside redis_cmd. */
#include "studyhub/io/redis.h"

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"

#include <event2/event.h>
#include <openssl/crypto.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

/* First reconnect delay after a drop, doubled per failed attempt up to the
 * cap, so a restarted Redis is seen within about a second. */
#define RC_BACKOFF_MIN_MS 50
#define RC_BACKOFF_MAX_MS 1000
/* hiredis 0.14 has no connect timeout: an unanswered SYN (or a server
 * that accepts but never answers SELECT) would otherwise hold CONNECTING
 * for minutes.  The command timeout is used when it is longer. */
#define RC_CONNECT_TIMEOUT_MIN_MS 1000

/* DOWN: waiting on the retry timer, commands fail at once.  CONNECTING:
 * context exists, SELECT sent, commands queue behind it.  UP: SELECT
 * answered OK. */
enum rc_state { RC_DOWN, RC_CONNECTING, RC_UP };
static const char *const rc_state_names[] = {"down", "connecting", "up"};

/* One command.  While in flight, hiredis's callback list holds it (privdata
 * of on_reply) and hiredis calls on_reply exactly once, with the reply or
 * with NULL when the context is freed; that call frees the record.  A
 * record whose caller was already answered (timeout, client freed) stays
 * until then with `answered` set. */
struct rc_pending {
    TAILQ_ENTRY(rc_pending) link; /* in rc->inflight or rc->failq */
    struct redis_client *rc;      /* borrowed; not used once answered */
    redis_cb cb;                  /* borrowed; may be NULL */
    void *arg;                    /* borrowed; given to cb */
    int64_t deadline_ms;          /* monotonic; INT64_MAX: no timeout */
    bool answered;                /* cb already called; waiting for hiredis */
};
TAILQ_HEAD(rc_pending_list, rc_pending);

struct redis_client {
    struct event_base *base;        /* borrowed */
    char *host;                     /* owned: numeric address */
    int port;                       /* TCP port */
    char *password;                 /* owned, secret: AUTH after every
                                       connect; NULL: none */
    int db;                         /* SELECTed after every connect */
    int timeout_ms;                 /* per command; <= 0: none */
    enum rc_state state;            /* changed only by rc_set_state */
    redisAsyncContext *ac;          /* hiredis frees it (after on_disconnect,
                                       or on a failed connect); NULL when down */
    struct event *retry_ev;         /* owned: reconnect delay (DOWN) or
                                       connect timeout (CONNECTING) */
    struct event *timeout_ev;       /* owned: fires at or before the oldest
                                       in-flight deadline */
    struct event *flush_ev;         /* owned: delivers failq from the loop */
    struct rc_pending_list inflight;/* records held by hiredis, oldest first
                                       (Redis answers in order) */
    struct rc_pending_list failq;   /* owned: records waiting for NULL */
    int backoff_ms;                 /* next reconnect delay */
    bool quiet;                     /* outage already logged: later failed
                                       attempts log at debug only */
    bool freeing;                   /* inside redis_client_free */
};

static void rc_connect_start(struct redis_client *rc);

static void rc_set_state(struct redis_client *rc, enum rc_state st,
                         const char *why)
{
    if (rc->state == st)
        return;
    log_debug("redis %s:%d: %s -> %s (%s)", rc->host, rc->port,
              rc_state_names[rc->state], rc_state_names[st], why);
    rc->state = st;
}

/* Logs a failure once per outage; repeats go to debug. */
static void rc_note_down(struct redis_client *rc, const char *what,
                         const char *err)
{
    if (rc->quiet) {
        log_debug("redis %s:%d: %s: %s", rc->host, rc->port, what,
                  err ? err : "?");
        return;
    }
    log_warn("redis %s:%d: %s: %s; reconnecting", rc->host, rc->port, what,
             err ? err : "?");
    rc->quiet = true;
}

static void rc_schedule_retry(struct redis_client *rc)
{
    event_del(rc->retry_ev);
    util_timer_ms(rc->retry_ev, rc->backoff_ms);
    rc->backoff_ms *= 2;
    if (rc->backoff_ms > RC_BACKOFF_MAX_MS)
        rc->backoff_ms = RC_BACKOFF_MAX_MS;
}

/* The caller gets NULL on the next loop turn, never on the caller's stack. */
static void rc_fail_later(struct redis_client *rc, struct rc_pending *p)
{
    TAILQ_INSERT_TAIL(&rc->failq, p, link);
    event_active(rc->flush_ev, EV_TIMEOUT, 0);
}

/* Drops the current context ourselves (timeout, bad SELECT, connect
 * timeout).  Not for use in on_connect/on_disconnect, where hiredis frees
 * the context itself.  If called inside a hiredis reply callback, hiredis
 * defers the free until that callback returns. */
static void rc_drop(struct redis_client *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;

    rc->ac = NULL;
    rc_set_state(rc, RC_DOWN, why);
    rc_schedule_retry(rc);
    /* on_reply moves the pending records to failq; on_disconnect sees
     * rc->ac != ac and does nothing. */
    if (ac)
        redisAsyncFree(ac);
}

static void rc_on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rc_pending *p = priv;
    struct redis_client *rc = p->rc;
    redis_cb cb;
    void *arg;

    (void)ac;
    if (p->answered) {
        /* Late reply of a timed-out command, or teardown after free. */
        free(p);
        return;
    }
    TAILQ_REMOVE(&rc->inflight, p, link);
    if (r == NULL) {
        /* hiredis is freeing the context: defer so no caller code runs
         * inside hiredis's teardown. */
        rc_fail_later(rc, p);
        return;
    }
    cb = p->cb;
    arg = p->arg;
    free(p);
    if (cb)
        cb(r, arg);
}

static void rc_on_select(redisReply *reply, void *arg)
{
    struct redis_client *rc = arg;

    if (reply == NULL)
        return; /* connection lost; the drop path already reconnects */
    if (reply->type == REDIS_REPLY_ERROR) {
        rc_note_down(rc, "SELECT failed", reply->str);
        rc_drop(rc, "SELECT failed");
        return;
    }
    event_del(rc->retry_ev); /* the connect timeout */
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    rc->quiet = false;
    rc_set_state(rc, RC_UP, "SELECT ok");
    log_info("redis %s:%d: connected (db %d)", rc->host, rc->port, rc->db);
}

/* AUTH's answer; SELECT, queued right behind it, reports success. */
static void rc_on_auth(redisReply *reply, void *arg)
{
    struct redis_client *rc = arg;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
        return;
    rc_note_down(rc, "AUTH failed", reply->str);
    rc_drop(rc, "AUTH failed");
}

static void rc_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_client *rc = ac->data;

    if (rc == NULL || rc->ac != ac)
        return;
    if (status == REDIS_OK)
        return; /* the connect timeout runs on until SELECT answers */
    /* hiredis frees the context after we return; on_disconnect won't run. */
    rc->ac = NULL;
    rc_note_down(rc, "connect failed", ac->errstr);
    rc_set_state(rc, RC_DOWN, "connect failed");
    rc_schedule_retry(rc);
}

static void rc_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_client *rc = ac->data;

    (void)status;
    if (rc == NULL || rc->ac != ac)
        return; /* we dropped it ourselves */
    /* hiredis frees the context after we return. */
    rc->ac = NULL;
    rc_note_down(rc, "connection lost", ac->err ? ac->errstr : "closed");
    rc_set_state(rc, RC_DOWN, "disconnected");
    rc_schedule_retry(rc);
}

static void rc_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *rc = arg;
    struct rc_pending *p = TAILQ_FIRST(&rc->inflight);
    int64_t now = util_mono_ms();
    redis_cb cb;
    void *cbarg;

    (void)fd;
    (void)what;
    if (p == NULL)
        return;
    if (p->deadline_ms > now) {
        util_timer_ms(rc->timeout_ev, p->deadline_ms - now);
        return;
    }
    /* hiredis still holds p; it is freed by on_reply during the drop. */
    TAILQ_REMOVE(&rc->inflight, p, link);
    p->answered = true;
    cb = p->cb;
    cbarg = p->arg;
    /* A command that got no answer means the connection cannot be
     * trusted: replies are matched by order, so drop it. */
    rc_note_down(rc, "command timed out", "no reply in time");
    rc_drop(rc, "command timed out");
    if (cb)
        cb(NULL, cbarg); /* rc may be freed by this call */
}

static void rc_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *rc = arg;

    (void)fd;
    (void)what;
    if (rc->state == RC_CONNECTING) {
        rc_note_down(rc, "connect failed", "timed out");
        rc_drop(rc, "connect timed out");
        return;
    }
    if (rc->state == RC_DOWN)
        rc_connect_start(rc);
}

static void rc_on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct redis_client *rc = arg;
    struct rc_pending_list list;
    struct rc_pending *p;

    (void)fd;
    (void)what;
    /* Take the queue: commands failed by these callbacks go to the next
     * turn, and rc may be freed by a callback (we don't touch it after). */
    TAILQ_INIT(&list);
    TAILQ_CONCAT(&list, &rc->failq, link);
    while ((p = TAILQ_FIRST(&list)) != NULL) {
        redis_cb cb = p->cb;
        void *cbarg = p->arg;

        TAILQ_REMOVE(&list, p, link);
        free(p);
        if (cb)
            cb(NULL, cbarg);
    }
}

static struct rc_pending *rc_pending_new(struct redis_client *rc, redis_cb cb,
                                         void *arg)
{
    struct rc_pending *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->rc = rc;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms =
        rc->timeout_ms > 0 ? util_mono_ms() + rc->timeout_ms : INT64_MAX;
    return p;
}

/* Commands that put the connection in a push mode: hiredis would then call
 * the callback many times, which breaks the one-reply-per-record rule.
 * Pub/sub needs its own connection. */
static bool rc_name_forbidden(const char *name, size_t len)
{
    static const char *const bad[] = {"subscribe", "psubscribe", "unsubscribe",
                                      "punsubscribe", "monitor", "quit"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (strlen(bad[i]) == len && strncasecmp(name, bad[i], len) == 0)
            return true;
    return false;
}

/* The first argument of a RESP-formatted command ("*N\r\n$L\r\nNAME"). */
static bool rc_formatted_forbidden(const char *cmd, size_t len)
{
    const char *p = memchr(cmd, '\n', len);
    char *end;
    long n;

    if (p == NULL || (size_t)(p + 1 - cmd) >= len || p[1] != '$')
        return false;
    n = strtol(p + 2, &end, 10);
    if (n < 0 || end + 2 > cmd + len || end[0] != '\r' || end[1] != '\n' ||
        (size_t)n > (size_t)(cmd + len - (end + 2)))
        return false;
    return rc_name_forbidden(end + 2, (size_t)n);
}

/* Queues a formatted command, or fails it later.  Takes p. */
static void rc_submit(struct redis_client *rc, struct rc_pending *p,
                      const char *cmd, int len)
{
    if (rc->ac == NULL || cmd == NULL || len < 0)
        goto fail;
    if (rc_formatted_forbidden(cmd, (size_t)len)) {
        log_error("redis: pub/sub, MONITOR and QUIT are not allowed on the "
                  "command connection");
        goto fail;
    }
    if (redisAsyncFormattedCommand(rc->ac, rc_on_reply, p, cmd, (size_t)len) !=
        REDIS_OK)
        goto fail;
    TAILQ_INSERT_TAIL(&rc->inflight, p, link);
    /* Lazy timer: it only has to fire no later than the oldest deadline;
     * on firing it re-arms for the new oldest. */
    if (rc->timeout_ms > 0 && !evtimer_pending(rc->timeout_ev, NULL))
        util_timer_ms(rc->timeout_ev, rc->timeout_ms);
    return;
fail:
    rc_fail_later(rc, p);
}

/* Creates the context and hooks it to the loop.  Returns 0, or -1 with
 * nothing left behind. */
static int rc_open(struct redis_client *rc)
{
    redisAsyncContext *ac = redisAsyncConnect(rc->host, rc->port);
    int ret = -1;

    if (ac == NULL) {
        rc_note_down(rc, "connect failed", "out of memory");
        goto out;
    }
    if (ac->err) {
        rc_note_down(rc, "connect failed", ac->errstr);
        goto out;
    }
    ac->data = rc;
    if (redisLibeventAttach(ac, rc->base) != REDIS_OK) {
        rc_note_down(rc, "connect failed", "cannot attach to the loop");
        goto out;
    }
    redisAsyncSetConnectCallback(ac, rc_on_connect);
    redisAsyncSetDisconnectCallback(ac, rc_on_disconnect);
    rc->ac = ac;
    ac = NULL;
    ret = 0;
out:
    if (ac)
        redisAsyncFree(ac); /* no callbacks set: nothing runs */
    return ret;
}

static void rc_connect_start(struct redis_client *rc)
{
    struct rc_pending *p;
    char *cmd = NULL;
    int len;

    if (rc_open(rc) < 0) {
        rc_set_state(rc, RC_DOWN, "connect failed");
        rc_schedule_retry(rc);
        return;
    }
    rc_set_state(rc, RC_CONNECTING, "connect started");
    util_timer_ms(rc->retry_ev, rc->timeout_ms > RC_CONNECT_TIMEOUT_MIN_MS
                             ? rc->timeout_ms
                             : RC_CONNECT_TIMEOUT_MIN_MS);
    /* AUTH, then SELECT go first in the output buffer, so commands queued
     * while connecting already run authenticated in the right database. */
    if (rc->password) {
        p = rc_pending_new(rc, rc_on_auth, rc);
        len = redisFormatCommand(&cmd, "AUTH %s", rc->password);
        if (p == NULL || len < 0) {
            free(p);
            rc_note_down(rc, "connect failed", "out of memory");
            rc_drop(rc, "out of memory");
            goto out;
        }
        rc_submit(rc, p, cmd, len);
        redisFreeCommand(cmd);
        cmd = NULL;
    }
    p = rc_pending_new(rc, rc_on_select, rc);
    len = redisFormatCommand(&cmd, "SELECT %d", rc->db);
    if (p == NULL || len < 0) {
        free(p);
        rc_note_down(rc, "connect failed", "out of memory");
        rc_drop(rc, "out of memory");
        goto out;
    }
    rc_submit(rc, p, cmd, len);
out:
    if (len >= 0)
        redisFreeCommand(cmd);
}

struct redis_client *redis_client_new(struct event_base *base, const char *host,
                                      int port, const char *password, int db,
                                      int timeout_ms)
{
    struct redis_client *rc = calloc(1, sizeof(*rc));

    if (rc == NULL)
        return NULL;
    rc->base = base;
    rc->port = port;
    rc->db = db;
    rc->timeout_ms = timeout_ms;
    rc->state = RC_DOWN;
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    TAILQ_INIT(&rc->inflight);
    TAILQ_INIT(&rc->failq);
    rc->host = strdup(host ? host : "127.0.0.1");
    if (password && !(rc->password = strdup(password)))
        goto fail;
    rc->retry_ev = evtimer_new(base, rc_on_retry, rc);
    rc->timeout_ev = evtimer_new(base, rc_on_timeout, rc);
    rc->flush_ev = event_new(base, -1, 0, rc_on_flush, rc);
    if (!rc->host || !rc->retry_ev || !rc->timeout_ev || !rc->flush_ev)
        goto fail;
    rc_connect_start(rc);
    return rc;
fail:
    redis_client_free(rc);
    return NULL;
}

void redis_client_free(struct redis_client *rc)
{
    struct rc_pending *p;

    if (rc == NULL)
        return;
    rc->freeing = true;
    /* Answer in-flight commands now; hiredis keeps the records until it
     * lets go of the context (at once, or after the current callback). */
    while ((p = TAILQ_FIRST(&rc->inflight)) != NULL) {
        TAILQ_REMOVE(&rc->inflight, p, link);
        p->answered = true;
        if (p->cb)
            p->cb(NULL, p->arg);
    }
    while ((p = TAILQ_FIRST(&rc->failq)) != NULL) {
        redis_cb cb = p->cb;
        void *arg = p->arg;

        TAILQ_REMOVE(&rc->failq, p, link);
        free(p);
        if (cb)
            cb(NULL, arg);
    }
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;

        rc->ac = NULL;
        ac->data = NULL; /* on_connect/on_disconnect must not touch rc */
        redisAsyncFree(ac);
    }
    if (rc->retry_ev)
        event_free(rc->retry_ev);
    if (rc->timeout_ev)
        event_free(rc->timeout_ev);
    if (rc->flush_ev)
        event_free(rc->flush_ev);
    free(rc->host);
    if (rc->password) {
        OPENSSL_cleanse(rc->password, strlen(rc->password));
        free(rc->password);
    }
    free(rc);
}

int redis_cmdargv(struct redis_client *rc, redis_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen)
{
    struct rc_pending *p;
    char *cmd = NULL;
    int len = -1;

    if (rc == NULL || rc->freeing)
        return -1;
    p = rc_pending_new(rc, cb, arg);
    if (p == NULL)
        return -1;
    if (rc->ac && argc > 0)
        len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    rc_submit(rc, p, cmd, len);
    if (len >= 0)
        redisFreeCommand(cmd);
    return 0;
}

int redis_cmd(struct redis_client *rc, redis_cb cb, void *arg, const char *fmt,
              ...)
{
    struct rc_pending *p;
    char *cmd = NULL;
    int len = -1;
    va_list ap;

    if (rc == NULL || rc->freeing)
        return -1;
    p = rc_pending_new(rc, cb, arg);
    if (p == NULL)
        return -1;
    if (rc->ac) {
        va_start(ap, fmt);
        len = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
    }
    rc_submit(rc, p, cmd, len);
    if (len >= 0)
        redisFreeCommand(cmd);
    return 0;
}

bool redis_connected(const struct redis_client *rc)
{
    return rc != NULL && rc->state == RC_UP;
}

/* ---- pub/sub ------------------------------------------------------------------ */

#define SUB_BACKOFF_MIN_MS 100
#define SUB_BACKOFF_MAX_MS 5000

struct redis_subscriber {
    struct event_base *base;         /* borrowed */
    char *host;                      /* owned */
    int port;
    char *password;                  /* owned, secret; NULL: no AUTH */
    char *channel;                   /* owned */
    redis_message_fn fn;
    void *arg;
    redisAsyncContext *ac;           /* hiredis frees it; NULL while down */
    struct event *retry;             /* owned: reconnect timer */
    int backoff_ms;
    bool stopping;
};

static void sub_connect(struct redis_subscriber *s);

static void sub_schedule(struct redis_subscriber *s)
{
    if (s->stopping)
        return;
    util_timer_ms(s->retry, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > SUB_BACKOFF_MAX_MS ? SUB_BACKOFF_MAX_MS
                                                          : s->backoff_ms * 2;
}

static void on_sub_message(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_subscriber *s = privdata;
    redisReply *reply = r;

    (void)ac;
    if (!reply || s->stopping || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        s->fn(reply->element[2]->str, reply->element[2]->len, s->arg);
    else if (strcmp(reply->element[0]->str, "subscribe") == 0)
        s->backoff_ms = SUB_BACKOFF_MIN_MS;
}

/* A refused AUTH: SUBSCRIBE fails behind it (NOAUTH); say why once. */
static void on_sub_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_subscriber *s = privdata;
    redisReply *reply = r;

    (void)ac;
    if (reply && reply->type == REDIS_REPLY_ERROR && !s->stopping)
        log_warn("redis subscriber %s: AUTH failed: %s", s->channel, reply->str);
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    struct redis_subscriber *s = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        log_debug("redis subscriber %s: cannot connect: %s", s->channel, ac->errstr);
        s->ac = NULL;
        sub_schedule(s);
    }
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_subscriber *s = ac->data;

    (void)status;
    s->ac = NULL;
    if (!s->stopping) {
        log_warn("redis subscriber %s: the subscription dropped; reconnecting", s->channel);
        sub_schedule(s);
    }
}

static void sub_connect(struct redis_subscriber *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);

    if (!ac) {
        sub_schedule(s);
        return;
    }
    if (ac->err) {
        log_debug("redis subscriber %s: cannot connect: %s", s->channel, ac->errstr);
        redisAsyncFree(ac);
        sub_schedule(s);
        return;
    }
    if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
        redisAsyncFree(ac);
        sub_schedule(s);
        return;
    }
    ac->data = s;
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    if (s->password)
        redisAsyncCommand(ac, on_sub_auth, s, "AUTH %s", s->password);
    redisAsyncCommand(ac, on_sub_message, s, "SUBSCRIBE %s", s->channel);
    s->ac = ac;
}

static void on_sub_retry(evutil_socket_t fd, short what, void *arg)
{
    struct redis_subscriber *s = arg;

    (void)fd;
    (void)what;
    if (!s->ac && !s->stopping)
        sub_connect(s);
}

struct redis_subscriber *redis_subscriber_new(struct event_base *base, const char *host,
                                              int port, const char *password,
                                              const char *channel,
                                              redis_message_fn fn, void *arg)
{
    struct redis_subscriber *s = calloc(1, sizeof *s);

    if (!s)
        return NULL;
    s->base = base;
    s->port = port;
    s->fn = fn;
    s->arg = arg;
    s->backoff_ms = SUB_BACKOFF_MIN_MS;
    s->host = strdup(host);
    s->channel = strdup(channel);
    s->password = password ? strdup(password) : NULL;
    s->retry = evtimer_new(base, on_sub_retry, s);
    if (!s->host || !s->channel || !s->retry || (password && !s->password)) {
        redis_subscriber_free(s);
        return NULL;
    }
    sub_connect(s);
    return s;
}

void redis_subscriber_free(struct redis_subscriber *s)
{
    if (!s)
        return;
    s->stopping = true;
    if (s->ac)
        redisAsyncFree(s->ac);      /* on_sub_disconnect clears s->ac */
    if (s->retry)
        event_free(s->retry);
    free(s->host);
    free(s->channel);
    if (s->password) {
        OPENSSL_cleanse(s->password, strlen(s->password));
        free(s->password);
    }
    free(s);
}
