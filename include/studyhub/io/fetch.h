/* fetch: outbound HTTP (and SMTP, for the mail outbox) through one
 * libcurl multi handle driven by the libevent loop (curl's socket API).  Many transfers at once, each with
 * connect, total and low-speed timeouts, retries with exponential backoff
 * and jitter for idempotent requests, streamed or bounded in-memory bodies,
 * and cancellation.  A completion callback is never called inside
 * fetch_submit, fetch_resume or fetch_cancel: always from the loop. */
#ifndef STUDYHUB_IO_FETCH_H
#define STUDYHUB_IO_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct fetch_client;
struct fetch_req;

/* Return values of the streaming callbacks besides a byte count / 0. */
#define FETCH_ABORT (-1) /* stop the transfer: it completes with an error */
#define FETCH_PAUSE (-2) /* nothing now: call fetch_resume() when ready */

/* Streamed request body: copy up to len bytes into buf and return how
 * many; 0 at the end; FETCH_PAUSE or FETCH_ABORT. */
typedef ssize_t (*fetch_read_fn)(char *buf, size_t len, void *arg);
/* Start the streamed body again from its first byte (before a retry).
 * Returns 0, or -1 when it cannot: the request is then not retried. */
typedef int (*fetch_rewind_fn)(void *arg);
/* Streamed response body (2xx responses only; other bodies go to the
 * in-memory error buffer): take all len bytes and return 0, or return
 * FETCH_PAUSE to be given the same bytes again after fetch_resume(), or
 * FETCH_ABORT. */
typedef int (*fetch_write_fn)(const char *data, size_t len, void *arg);

/* What happened.  Valid only during the completion callback. */
struct fetch_result {
    int status;            /* HTTP status of the last response; 0 if none */
    int curl_code;         /* CURLcode of the last attempt; 0 on transport
                              success (whatever the HTTP status) */
    const char *error;     /* NULL when a response arrived and was taken
                              whole; else why not (curl's error text,
                              "cancelled", "response body too large", ...) */
    const char *body;      /* in-memory body (no write_fn, or a non-2xx
                              body); NUL-terminated; never NULL */
    size_t body_len;
    bool body_truncated;   /* an error body longer than the cap was cut */
    bool body_too_large;   /* an in-memory 2xx body passed max_body: the
                              transfer was stopped (error is set) */
    int attempts;          /* transfers made, 1 + retries */
    const char *headers;   /* raw header block of the final response
                              ("Name: value\r\n"...), bounded; never NULL */
};

/* req is freed after this returns: do not keep it. */
typedef void (*fetch_done_fn)(struct fetch_req *req,
                              const struct fetch_result *res, void *arg);

/* One request.  Filled by the caller (designated initialisers; zero is a
 * sane default for every field but method/url/done) and copied by
 * fetch_submit, except where said. */
struct fetch_opts {
    const char *method;            /* "GET", "HEAD", "PUT", "POST", "DELETE",
                                      or "SMTP" (an smtp:// or smtps:// url:
                                      the body is the message, status the
                                      server's last reply code) */
    const char *url;
    const char *const *headers;    /* NULL-terminated "Name: value" list */
    /* Request body: from memory (borrowed: must stay valid until the
     * completion callback or fetch_cancel) or streamed through read_fn. */
    const void *body;
    size_t body_len;
    fetch_read_fn read_fn;
    fetch_rewind_fn rewind_fn;     /* optional: makes a streamed body
                                      retryable */
    int64_t upload_len;            /* read_fn: total length (-1 unknown:
                                      chunked encoding) */
    void *read_arg;
    /* Response body: to write_fn, or kept in memory up to max_body bytes
     * (default 1 MiB; more fails the request with an error). */
    fetch_write_fn write_fn;
    void *write_arg;
    size_t max_body;
    bool follow_redirects;         /* up to 5, same method for 307/308 */
    /* Timeouts in milliseconds; 0 takes the default. */
    long connect_timeout_ms;       /* default 10 s */
    long timeout_ms;               /* whole attempt; default 120 s; -1: none
                                      (streams rely on the low-speed limit) */
    long low_speed_bytes;          /* abort below this many bytes/s ... */
    long low_speed_secs;           /* ... for this long (default 1 B/s for
                                      30 s) */
    /* Retries on connection errors, timeouts, 5xx and 429 (with
     * Retry-After honoured up to the cap). 0: the default, which is 4
     * attempts for GET/HEAD/PUT/DELETE/OPTIONS and 1 otherwise; set it for
     * a POST that is safe to repeat.  A streamed body without rewind_fn, or
     * a streamed response that already delivered bytes, is not retried. */
    int max_attempts;
    long backoff_ms;               /* first delay, default 200 ms; doubled
                                      per attempt with jitter */
    long backoff_max_ms;           /* cap, default 10 s */
    /* SMTP only: the envelope, "<addr>" each (copied). */
    const char *mail_from;
    const char *const *mail_rcpt;  /* NULL-terminated */
    long smtp_use_ssl;             /* CURLUSESSL_NONE, _TRY or _ALL */
    fetch_done_fn done;            /* required */
    void *arg;                     /* given to done */
};

/* Defaults of the client.  Zero fields take the default. */
struct fetch_client_opts {
    long max_host_connections;     /* default 16: more transfers queue */
    long max_total_connections;    /* default 64 */
    const char *user_agent;        /* default "studyhub" */
};

/* opts may be NULL.  Returns NULL when curl cannot be set up. */
struct fetch_client *fetch_client_new(struct event_base *base,
                                      const struct fetch_client_opts *opts);
/* Ends every transfer without calling its callbacks (the owners are going
 * away too).  Not from inside a fetch callback. */
void fetch_client_free(struct fetch_client *fc);

/* Queues a request.  Returns its handle, or NULL only when out of memory
 * or when method, url or done is missing.  Any failure after that,
 * including a bad URL, is reported to done from the loop. */
struct fetch_req *fetch_submit(struct fetch_client *fc,
                               const struct fetch_opts *opts);

/* Stops a request: no callback of it runs after this returns.  Safe from
 * inside any callback of any request (also its own, except done, where
 * the request is already finished).  req must still be live. */
void fetch_cancel(struct fetch_req *req);

/* Unpauses a request whose read_fn or write_fn returned FETCH_PAUSE.  The
 * callbacks run again from the loop, not inside this call. */
void fetch_resume(struct fetch_req *req);

/* Looks up a response header (case-insensitive) in res->headers.  Copies
 * the trimmed value into out and returns true when present and it fits. */
bool fetch_header(const struct fetch_result *res, const char *name,
                  char *out, size_t outsz);

/* Requests not yet completed or cancelled (for tests and metrics). */
size_t fetch_pending(const struct fetch_client *fc);

#endif
