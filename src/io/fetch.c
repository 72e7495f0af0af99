/* fetch: libcurl's multi socket API on the libevent loop (after curl's
 * docs/examples/hiperfifo.c), with the traps of that example avoided:
 * curl's timer callback only arms a libevent timer (socket_action is never
 * called from inside it), the timer is not dropped when nothing runs, and a
 * finished transfer's result is copied before its handle is removed.
 *
 * A request lives in one of four states.  Handles are removed from the
 * multi and freed only from the loop (check_multi_info or the work event),
 * never from inside a curl callback, so cancel is safe anywhere. */
#include "config.h"

#include "studyhub/io/fetch.h"

#include "studyhub/core/log.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY (1u << 20)
/* A non-2xx body is kept for the error message only. */
#define ERROR_BODY_CAP (64u << 10)
/* Headers of the final response; S3's are a few hundred bytes. */
#define HEADER_CAP (16u << 10)
#define DEFAULT_CONNECT_MS 10000L
#define DEFAULT_TIMEOUT_MS 120000L
#define DEFAULT_LOW_SPEED_BYTES 1L
#define DEFAULT_LOW_SPEED_SECS 30L
#define DEFAULT_BACKOFF_MS 200L
#define DEFAULT_BACKOFF_MAX_MS 10000L
#define DEFAULT_IDEMPOTENT_ATTEMPTS 4

/* WAITING: not in the multi (backoff delay, or a failure to report from
 * the loop).  RUNNING: in the multi.  FINISHING: done callback running.
 * CANCELLED: no callback will run; freed by the work event. */
enum fr_state { FR_WAITING, FR_RUNNING, FR_FINISHING, FR_CANCELLED };
static const char *const fr_state_names[] = {
    "waiting", "running", "finishing", "cancelled",
};

/* A bounded byte buffer, always NUL-terminated once allocated. */
struct fbuf {
    char *data;  /* owned */
    size_t len;
    size_t cap;  /* allocated */
};

struct fetch_req {
    TAILQ_ENTRY(fetch_req) link;  /* in fc->reqs */
    struct fetch_client *fc;      /* borrowed */
    enum fr_state state;          /* changed only by fr_set_state */
    CURL *easy;                   /* owned; PRIVATE points back here */
    bool in_multi;                /* easy is added to fc->multi */
    struct curl_slist *hdrs;      /* owned */
    struct curl_slist *rcpt;      /* owned: SMTP recipients */
    char *mail_from;              /* owned: SMTP envelope sender */
    bool smtp;                    /* method "SMTP" */
    char *method;                 /* owned */
    char *url;                    /* owned; for logs */
    struct event *timer_ev;       /* owned: backoff delay, deferred failure */
    struct fetch_opts o;          /* copy; body/read/write args borrowed */
    size_t body_off;              /* memory body: next byte to send */
    struct fbuf body;             /* owned: in-memory or error body */
    struct fbuf hdr;              /* owned: final response's headers */
    bool body_truncated;          /* error body cut at ERROR_BODY_CAP */
    bool too_large;               /* in-memory body passed max_body */
    bool streamed;                /* write_fn has taken bytes: no retry */
    bool resume;                  /* fetch_resume asked; work event acts */
    const char *abort_reason;     /* static: why we stopped the transfer */
    const char *fail_reason;      /* static: a failure before any transfer */
    int attempts;                 /* transfers started */
    int max_attempts;             /* resolved from o.max_attempts */
    long delay_ms;                /* last backoff delay */
    char errbuf[CURL_ERROR_SIZE]; /* curl's message for the last attempt */
};
TAILQ_HEAD(fetch_req_list, fetch_req);

/* One socket curl asked us to watch. */
struct fsock {
    LIST_ENTRY(fsock) link;   /* in fc->socks */
    struct fetch_client *fc;  /* borrowed */
    curl_socket_t fd;
    struct event *ev;         /* owned */
};
LIST_HEAD(fsock_list, fsock);

struct fetch_client {
    struct event_base *base;   /* borrowed */
    CURLM *multi;              /* owned */
    struct event *timer_ev;    /* owned: curl's single timeout */
    struct event *work_ev;     /* owned: resumes and reaps, from the loop */
    struct fetch_req_list reqs;/* owned: every live request */
    struct fsock_list socks;   /* owned: sockets being watched */
    char *user_agent;          /* owned */
    int in_curl;               /* > 0 inside socket_action / easy_pause */
    uint64_t rng;              /* xorshift state for backoff jitter */
};

static int curl_users;  /* curl_global_init is process-wide */

static void fr_set_state(struct fetch_req *r, enum fr_state s)
{
    if (r->state == s)
        return;
    log_debug("fetch: %s %s: %s -> %s", r->method, r->url,
              fr_state_names[r->state], fr_state_names[s]);
    r->state = s;
}

static void work_kick(struct fetch_client *fc)
{
    event_active(fc->work_ev, EV_TIMEOUT, 0);
}

/* --- buffers --------------------------------------------------------------- */

/* Appends up to `cap` bytes in total; returns the bytes taken. */
static size_t fbuf_add(struct fbuf *b, const char *p, size_t n, size_t cap)
{
    if (b->len >= cap)
        return 0;
    if (n > cap - b->len)
        n = cap - b->len;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        if (nc > cap + 1)
            nc = cap + 1;
        char *d = realloc(b->data, nc);
        if (!d)
            return 0;
        b->data = d;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static void fbuf_reset(struct fbuf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static void fbuf_free(struct fbuf *b)
{
    free(b->data);
    *b = (struct fbuf){ 0 };
}

/* --- curl callbacks on one transfer ------------------------------------------ */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct fetch_req *r = ud;
    size_t n = size * nmemb;
    long status = 0;

    if (r->state == FR_CANCELLED)
        return 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    bool ok = status >= 200 && status < 300;
    if (ok && r->o.write_fn) {
        int rc = r->o.write_fn(p, n, r->o.write_arg);
        if (r->state == FR_CANCELLED)
            return 0;
        if (rc == FETCH_PAUSE)
            return CURL_WRITEFUNC_PAUSE;
        if (rc != 0) {
            r->abort_reason = "response consumer stopped the transfer";
            return 0;
        }
        r->streamed = true;
        return n;
    }
    size_t cap = (ok && !r->o.write_fn) ? r->o.max_body : ERROR_BODY_CAP;
    if (r->body.len + n > cap) {
        if (ok) {
            r->abort_reason = "response body too large";
            r->too_large = true;
            return 0;
        }
        r->body_truncated = true;
    }
    if (fbuf_add(&r->body, p, n, cap) < n && !r->body_truncated) {
        r->abort_reason = "out of memory";
        return 0;
    }
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct fetch_req *r = ud;
    size_t n = size * nmemb;

    /* Each response (a 100, a redirect, the final one) starts with its
     * status line: keep only the last response's headers. */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        fbuf_reset(&r->hdr);
    fbuf_add(&r->hdr, p, n, HEADER_CAP);
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct fetch_req *r = ud;
    size_t n = size * nmemb;

    if (r->state == FR_CANCELLED)
        return CURL_READFUNC_ABORT;
    if (!r->o.read_fn) {
        size_t left = r->o.body_len - r->body_off;
        if (n > left)
            n = left;
        if (n)
            memcpy(buf, (const char *)r->o.body + r->body_off, n);
        r->body_off += n;
        return n;
    }
    ssize_t got = r->o.read_fn(buf, n, r->o.read_arg);
    if (r->state == FR_CANCELLED)
        return CURL_READFUNC_ABORT;
    if (got == FETCH_PAUSE)
        return CURL_READFUNC_PAUSE;
    if (got < 0 || (size_t)got > n) {
        r->abort_reason = "request body source failed";
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    struct fetch_req *r = ud;

    if (origin != SEEK_SET || off < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    if (!r->o.read_fn) {
        if ((size_t)off > r->o.body_len)
            return CURL_SEEKFUNC_FAIL;
        r->body_off = (size_t)off;
        return CURL_SEEKFUNC_OK;
    }
    if (off == 0 && r->o.rewind_fn && r->o.rewind_fn(r->o.read_arg) == 0)
        return CURL_SEEKFUNC_OK;
    return CURL_SEEKFUNC_CANTSEEK;
}

/* --- the multi on the loop -------------------------------------------------- */

static void check_multi_info(struct fetch_client *fc);

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct fetch_client *fc = arg;
    int running = 0;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    fc->in_curl++;
    curl_multi_socket_action(fc->multi, fd, flags, &running);
    fc->in_curl--;
    check_multi_info(fc);
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    struct fetch_client *fc = arg;
    int running = 0;

    fc->in_curl++;
    curl_multi_socket_action(fc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    fc->in_curl--;
    check_multi_info(fc);
    /* Not deleting the timer when running reaches zero: curl manages it,
     * and a completion that adds a transfer re-arms it through on_curl_timer. */
}

/* curl's CURLMOPT_TIMERFUNCTION: only (re)arms our timer. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct fetch_client *fc = userp;

    if (timeout_ms < 0) {
        evtimer_del(fc->timer_ev);
    } else {
        struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
        evtimer_add(fc->timer_ev, &tv);
    }
    return 0;
}

static void fsock_free(struct fsock *s)
{
    LIST_REMOVE(s, link);
    event_free(s->ev);
    free(s);
}

/* curl's CURLMOPT_SOCKETFUNCTION: watch, change or forget one socket. */
static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp,
                          void *socketp)
{
    struct fetch_client *fc = userp;
    struct fsock *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(fc->multi, fd, NULL);
            fsock_free(s);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->ev = event_new(fc->base, fd, kind, on_socket_event, fc);
        if (!s->ev) {
            free(s);
            return -1;
        }
        s->fc = fc;
        s->fd = fd;
        LIST_INSERT_HEAD(&fc->socks, s, link);
        curl_multi_assign(fc->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, fc->base, fd, kind, on_socket_event, fc);
    }
    event_add(s->ev, NULL);
    return 0;
}

/* --- request lifecycle -------------------------------------------------------- */

static void req_destroy(struct fetch_req *r)
{
    struct fetch_client *fc = r->fc;

    if (r->in_multi)
        curl_multi_remove_handle(fc->multi, r->easy);
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    curl_slist_free_all(r->rcpt);
    free(r->mail_from);
    if (r->timer_ev)
        event_free(r->timer_ev);
    fbuf_free(&r->body);
    fbuf_free(&r->hdr);
    TAILQ_REMOVE(&fc->reqs, r, link);
    free(r->method);
    free(r->url);
    free(r);
}

/* Calls done and frees the request. */
static void req_finish(struct fetch_req *r, int curl_code)
{
    long status = 0;
    struct fetch_result res = { 0 };

    if (r->attempts > 0)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    res.status = (int)status;
    res.curl_code = curl_code;
    if (r->fail_reason)
        res.error = r->fail_reason;
    else if (r->abort_reason)
        res.error = r->abort_reason;
    else if (curl_code != CURLE_OK)
        res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(curl_code);
    res.body = r->body.data ? r->body.data : "";
    res.body_len = r->body.len;
    res.body_truncated = r->body_truncated;
    res.body_too_large = r->too_large;
    res.attempts = r->attempts;
    res.headers = r->hdr.data ? r->hdr.data : "";
    if (res.error)
        log_debug("fetch: %s %s failed after %d attempt(s): %s", r->method,
                  r->url, r->attempts, res.error);

    fr_set_state(r, FR_FINISHING);
    r->o.done(r, &res, r->o.arg);
    req_destroy(r);
}

static bool transient_curl_error(int code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static uint64_t fc_rand(struct fetch_client *fc)
{
    uint64_t x = fc->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fc->rng = x;
    return x;
}

/* Seconds of a Retry-After header given as a number (dates are ignored). */
static long retry_after_ms(struct fetch_req *r)
{
    struct fetch_result tmp = { .headers = r->hdr.data ? r->hdr.data : "" };
    char v[32];

    if (!fetch_header(&tmp, "Retry-After", v, sizeof v))
        return 0;
    char *end;
    long s = strtol(v, &end, 10);
    return (end != v && *end == '\0' && s > 0 && s < 86400) ? s * 1000 : 0;
}

static void req_start(struct fetch_req *r);

static void on_req_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fetch_req *r = arg;

    if (r->state != FR_WAITING)
        return;
    if (r->fail_reason)
        req_finish(r, CURLE_OK);
    else
        req_start(r);
}

/* Decides, after one attempt ended with `code`, whether to try again. */
static bool should_retry(struct fetch_req *r, int code, long status)
{
    if (r->attempts >= r->max_attempts || r->abort_reason || r->streamed)
        return false;
    if (code != CURLE_OK ? !transient_curl_error(code)
                         : !(status >= 500 || status == 429))
        return false;
    if (r->o.read_fn &&
        (!r->o.rewind_fn || r->o.rewind_fn(r->o.read_arg) != 0))
        return false;
    return true;
}

static void req_attempt_done(struct fetch_req *r, int code)
{
    long status = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!should_retry(r, code, status)) {
        req_finish(r, code);
        return;
    }

    long base = r->o.backoff_ms;
    long cap = r->o.backoff_max_ms;
    long d = base;
    for (int i = 1; i < r->attempts && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* Equal jitter: half fixed, half random, so many clients retrying the
     * same outage spread out but none retries at once. */
    d = d / 2 + (long)(fc_rand(r->fc) % (uint64_t)(d / 2 + 1));
    long ra = retry_after_ms(r);
    if (ra > d)
        d = ra > cap ? cap : ra;
    r->delay_ms = d;

    log_warn("fetch: %s %s attempt %d/%d failed (%s%s%ld); retrying in %ld ms",
             r->method, r->url, r->attempts, r->max_attempts,
             code != CURLE_OK ? (r->errbuf[0] ? r->errbuf : curl_easy_strerror(code)) : "",
             code != CURLE_OK ? "; HTTP " : "HTTP ", status, d);
    fr_set_state(r, FR_WAITING);
    struct timeval tv = { d / 1000, (d % 1000) * 1000 };
    evtimer_add(r->timer_ev, &tv);
}

static void check_multi_info(struct fetch_client *fc)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(fc->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg points into the handle: copy before removing it. */
        CURL *e = msg->easy_handle;
        int code = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct fetch_req *r = (struct fetch_req *)priv;
        curl_multi_remove_handle(fc->multi, e);
        if (!r)
            continue;
        r->in_multi = false;
        if (r->state == FR_CANCELLED)
            continue;  /* the work event frees it */
        req_attempt_done(r, code);
    }
}

/* Puts the request (back) into the multi for one attempt. */
static void req_start(struct fetch_req *r)
{
    struct fetch_client *fc = r->fc;

    r->attempts++;
    r->body_off = 0;
    r->errbuf[0] = '\0';
    r->abort_reason = NULL;
    r->body_truncated = false;
    r->too_large = false;
    fbuf_reset(&r->body);
    fbuf_reset(&r->hdr);
    CURLMcode mc = curl_multi_add_handle(fc->multi, r->easy);
    if (mc != CURLM_OK) {
        /* Reported from the loop, like every other failure. */
        r->fail_reason = "cannot start the transfer";
        fr_set_state(r, FR_WAITING);
        struct timeval tv = { 0, 0 };
        evtimer_add(r->timer_ev, &tv);
        return;
    }
    r->in_multi = true;
    fr_set_state(r, FR_RUNNING);
}

/* Resumes paused transfers and frees cancelled requests, from the loop. */
static void on_work(evutil_socket_t fd, short what, void *arg)
{
    struct fetch_client *fc = arg;
    struct fetch_req *r, *next;

    TAILQ_FOREACH(r, &fc->reqs, link) {
        if (!r->resume || r->state != FR_RUNNING)
            continue;
        r->resume = false;
        fc->in_curl++;
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
        fc->in_curl--;
    }
    for (r = TAILQ_FIRST(&fc->reqs); r; r = next) {
        next = TAILQ_NEXT(r, link);
        if (r->state == FR_CANCELLED)
            req_destroy(r);
    }
    check_multi_info(fc);
}

static bool idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") ||
           !strcmp(m, "DELETE") || !strcmp(m, "OPTIONS");
}

/* Sets up the easy handle for r with the caller's headers (copied into
 * r->hdrs).  Returns false when curl refuses. */
static bool req_setup(struct fetch_req *r, const char *const *headers)
{
    struct fetch_client *fc = r->fc;
    CURL *e = r->easy;
    const struct fetch_opts *o = &r->o;
    bool upload = o->read_fn || o->body || !strcmp(r->method, "PUT") ||
                  !strcmp(r->method, "POST");
    CURLcode c = CURLE_OK;

#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_PRIVATE, (char *)r);
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, o->timeout_ms < 0 ? 0L : o->timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, o->low_speed_bytes);
    SET(CURLOPT_LOW_SPEED_TIME, o->low_speed_secs);
    if (r->smtp) {
        /* The envelope and STARTTLS as asked; the message goes through
         * on_read as every upload does; no HTTP option applies. */
        SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        SET(CURLOPT_MAIL_FROM, r->mail_from);
        SET(CURLOPT_MAIL_RCPT, r->rcpt);
        SET(CURLOPT_USE_SSL, o->smtp_use_ssl);
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, r);
        SET(CURLOPT_INFILESIZE_LARGE,
            (curl_off_t)(o->read_fn ? o->upload_len : (int64_t)o->body_len));
        return c == CURLE_OK;
    }
    SET(CURLOPT_USERAGENT, fc->user_agent);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, r);
    if (o->follow_redirects) {
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, 5L);
    }
    if (!strcmp(r->method, "HEAD")) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (upload) {
        /* Every body goes through the read callback, so memory and
         * streamed bodies behave the same (and retry the same way). */
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, r);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, r);
        SET(CURLOPT_INFILESIZE_LARGE,
            (curl_off_t)(o->read_fn ? o->upload_len : (int64_t)o->body_len));
        if (strcmp(r->method, "PUT"))
            SET(CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET")) {
        SET(CURLOPT_CUSTOMREQUEST, r->method);
    }
#undef SET
    if (c != CURLE_OK)
        return false;

    for (const char *const *h = headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(r->hdrs, *h);
        if (!n)
            return false;
        r->hdrs = n;
    }
    if (upload) {
        /* Skip the 100-continue round trip (a second's stall on servers
         * that do not answer it). */
        struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
        if (!n)
            return false;
        r->hdrs = n;
    }
    return curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs) == CURLE_OK;
}

struct fetch_req *fetch_submit(struct fetch_client *fc,
                               const struct fetch_opts *opts)
{
    struct fetch_req *r;

    if (!fc || !opts || !opts->method || !opts->url || !opts->done)
        return NULL;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->fc = fc;
    r->o = *opts;
    /* Copied pointers we do not own must not outlive the call. */
    r->o.headers = NULL;
    r->o.method = NULL;
    r->o.url = NULL;
    r->o.mail_from = NULL;
    r->o.mail_rcpt = NULL;
    TAILQ_INSERT_TAIL(&fc->reqs, r, link);
    r->state = FR_WAITING;
    r->method = strdup(opts->method);
    r->url = strdup(opts->url);
    r->easy = curl_easy_init();
    r->timer_ev = evtimer_new(fc->base, on_req_timer, r);
    if (!r->method || !r->url || !r->easy || !r->timer_ev) {
        req_destroy(r);
        return NULL;
    }
    r->smtp = strcmp(opts->method, "SMTP") == 0;
    if (r->smtp) {
        if (!opts->mail_from || !opts->mail_rcpt || !opts->mail_rcpt[0]) {
            req_destroy(r);
            return NULL;
        }
        r->mail_from = strdup(opts->mail_from);
        for (const char *const *to = opts->mail_rcpt; *to; to++) {
            struct curl_slist *n = curl_slist_append(r->rcpt, *to);
            if (!n)
                break;
            r->rcpt = n;
        }
        if (!r->mail_from || !r->rcpt) {
            req_destroy(r);
            return NULL;
        }
    }

    if (!r->o.max_body)
        r->o.max_body = DEFAULT_MAX_BODY;
    if (!r->o.connect_timeout_ms)
        r->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (!r->o.timeout_ms)
        r->o.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!r->o.low_speed_bytes)
        r->o.low_speed_bytes = DEFAULT_LOW_SPEED_BYTES;
    if (!r->o.low_speed_secs)
        r->o.low_speed_secs = DEFAULT_LOW_SPEED_SECS;
    if (r->o.backoff_ms <= 0)
        r->o.backoff_ms = DEFAULT_BACKOFF_MS;
    if (r->o.backoff_max_ms <= 0)
        r->o.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
    r->max_attempts = opts->max_attempts > 0 ? opts->max_attempts
                      : idempotent(r->method) ? DEFAULT_IDEMPOTENT_ATTEMPTS : 1;
    if (r->o.read_fn && r->o.upload_len < -1)
        r->o.upload_len = -1;

    if (!req_setup(r, opts->headers)) {
        /* A setup failure is reported from the loop like any other. */
        r->fail_reason = "cannot set up the transfer";
        struct timeval tv = { 0, 0 };
        evtimer_add(r->timer_ev, &tv);
        return r;
    }
    req_start(r);
    return r;
}

void fetch_cancel(struct fetch_req *r)
{
    if (!r || r->state == FR_CANCELLED || r->state == FR_FINISHING)
        return;
    evtimer_del(r->timer_ev);
    fr_set_state(r, FR_CANCELLED);
    work_kick(r->fc);
}

void fetch_resume(struct fetch_req *r)
{
    if (!r || r->state != FR_RUNNING)
        return;
    r->resume = true;
    work_kick(r->fc);
}

size_t fetch_pending(const struct fetch_client *fc)
{
    size_t n = 0;
    const struct fetch_req *r;

    TAILQ_FOREACH(r, &fc->reqs, link)
        if (r->state != FR_CANCELLED)
            n++;
    return n;
}

bool fetch_header(const struct fetch_result *res, const char *name,
                  char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = res->headers;

    while (p && *p) {
        const char *eol = strchr(p, '\n');
        const char *end = eol ? eol : p + strlen(p);
        if ((size_t)(end - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) + 1 > outsz)
                return false;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* --- the client ----------------------------------------------------------------- */

struct fetch_client *fetch_client_new(struct event_base *base,
                                      const struct fetch_client_opts *opts)
{
    struct fetch_client_opts d = { 0 };
    struct fetch_client *fc;

    if (opts)
        d = *opts;
    if (curl_users++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        curl_users--;
        return NULL;
    }
    fc = calloc(1, sizeof *fc);
    if (!fc)
        goto fail;
    fc->base = base;
    TAILQ_INIT(&fc->reqs);
    LIST_INIT(&fc->socks);
    fc->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uintptr_t)fc;
    if (!fc->rng)
        fc->rng = 0x9e3779b97f4a7c15ULL;
    fc->user_agent = strdup(d.user_agent ? d.user_agent : "studyhub");
    fc->multi = curl_multi_init();
    fc->timer_ev = evtimer_new(base, on_timer_event, fc);
    fc->work_ev = event_new(base, -1, 0, on_work, fc);
    if (!fc->user_agent || !fc->multi || !fc->timer_ev || !fc->work_ev)
        goto fail;
    curl_multi_setopt(fc->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(fc->multi, CURLMOPT_SOCKETDATA, fc);
    curl_multi_setopt(fc->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(fc->multi, CURLMOPT_TIMERDATA, fc);
    curl_multi_setopt(fc->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      d.max_host_connections > 0 ? d.max_host_connections : 16L);
    curl_multi_setopt(fc->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      d.max_total_connections > 0 ? d.max_total_connections : 64L);
    return fc;
fail:
    if (fc) {
        if (fc->multi)
            curl_multi_cleanup(fc->multi);
        if (fc->timer_ev)
            event_free(fc->timer_ev);
        if (fc->work_ev)
            event_free(fc->work_ev);
        free(fc->user_agent);
        free(fc);
    }
    if (--curl_users == 0)
        curl_global_cleanup();
    return NULL;
}

void fetch_client_free(struct fetch_client *fc)
{
    struct fetch_req *r;

    if (!fc)
        return;
    while ((r = TAILQ_FIRST(&fc->reqs)))
        req_destroy(r);
    /* Closing the connection cache may report sockets as removed; whatever
     * it does not report is freed after. */
    curl_multi_cleanup(fc->multi);
    while (!LIST_EMPTY(&fc->socks))
        fsock_free(LIST_FIRST(&fc->socks));
    event_free(fc->timer_ev);
    event_free(fc->work_ev);
    free(fc->user_agent);
    free(fc);
    if (--curl_users == 0)
        curl_global_cleanup();
}
