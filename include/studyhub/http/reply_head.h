/* reply_head: the fixed part of every reply's head (pure, no I/O): the
 * HTTP date and its once-a-second cache, the block of headers every reply
 * carries, and the status line's reason phrases.  server.c writes them;
 * kept apart so they are tested on their own (check_reply_head). */
#ifndef STUDYHUB_HTTP_REPLY_HEAD_H
#define STUDYHUB_HTTP_REPLY_HEAD_H

#include <stddef.h>
#include <time.h>

/* t as an HTTP date (RFC 7231 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37
 * GMT", 29 characters); out holds 30. */
void http_date_format(time_t t, char out[30]);

/* The Date of second t, formatted once per second (the last second's text
 * is kept): every reply of one second shares it. */
struct http_date_cache {
    time_t second;      /* of text; -1 before the first use */
    char text[30];
};
const char *http_date_cached(struct http_date_cache *c, time_t t);

/* The headers every reply carries, as one block of "Name: value" lines
 * joined by CRLF, without the last CRLF (the writer adds it): Date,
 * X-Request-Id, X-Content-Type-Options, Referrer-Policy, X-Frame-Options,
 * then Content-Security-Policy: csp unless csp is NULL (the handler set
 * its own).  Returns the length,
 * or 0 when it does not fit in cap (out is then unusable). */
size_t http_header_block(char *out, size_t cap, const char *date,
                         const char *request_id, const char *csp);

/* The status line's reason phrase of status ("Not Found"); a code not
 * listed gets its class's ("OK", "Redirect", "Client Error", "Server
 * Error"). */
const char *http_reason_phrase(int status);

#endif
