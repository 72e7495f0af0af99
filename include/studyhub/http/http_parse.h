/* http_parse: the HTTP/1.x request head, chunked bodies and query strings,
 * parsed in place (pure; check_http_parse).  The server (server.c) reads a
 * connection's bytes into one buffer and parses them here: the request
 * line and headers become offsets into that buffer (no allocation per
 * header), names and values NUL-terminated where they lie.  Strict: a bare
 * LF, a folded header line, a NUL or other control byte, a name that is
 * not a token, or conflicting framing headers is a 400. */
#ifndef STUDYHUB_HTTP_HTTP_PARSE_H
#define STUDYHUB_HTTP_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "studyhub/http/server.h"

/* More headers than this in one request: 431. */
#define HTTP_PARSE_MAX_HEADERS 100

struct http_parse_header {
    uint32_t name;      /* offsets into the buffer, NUL-terminated there */
    uint32_t value;     /* trimmed of surrounding spaces and tabs */
};

struct http_head {
    enum http_method method;
    int minor;                      /* HTTP/1.minor: 0 or 1 */
    uint32_t target;                /* the request target as sent (NUL-terminated) */
    uint32_t target_len;
    size_t head_len;                /* bytes up to and including the blank line */
    size_t nheaders;
    /* Framing, from the headers. */
    bool chunked;                   /* Transfer-Encoding: chunked */
    int64_t content_length;         /* -1: none */
    bool conn_close;                /* Connection: close */
    bool conn_keep_alive;           /* Connection: keep-alive */
    bool expect_continue;           /* Expect: 100-continue */
    struct http_parse_header h[HTTP_PARSE_MAX_HEADERS];   /* last: not zeroed */
};

/* Results of http_parse_head and http_parse_chunked besides a length. */
#define HTTP_PARSE_INCOMPLETE 0
#define HTTP_PARSE_BAD (-400)          /* malformed */
#define HTTP_PARSE_TOO_MANY (-431)     /* over HTTP_PARSE_MAX_HEADERS */
#define HTTP_PARSE_METHOD (-501)       /* a method we do not serve */
#define HTTP_PARSE_VERSION (-505)      /* not HTTP/1.0 or 1.1 */
#define HTTP_PARSE_EXPECT (-417)       /* an Expect other than 100-continue */

/* How far http_head_end has looked (zeroed before a request's first call),
 * so bytes arriving a few at a time are scanned once. */
struct http_head_scan {
    size_t line;        /* start of the line not yet ended */
    bool started;       /* a non-empty line (the request line) was seen */
};

/* The offset just past the blank line ending the head in buf[0, len), 0
 * when it has not come yet, or -1 on a bare LF.  Empty lines before the
 * request line are skipped (RFC 9112 2.2). */
long http_head_end(const char *buf, size_t len, struct http_head_scan *scan);

/* Parses the complete head buf[0, end) (end from http_head_end), writing
 * NULs into buf.  Returns end, or one of the negative results above. */
long http_parse_head(char *buf, size_t end, struct http_head *out);

/* A header's value (name case-insensitive), the first if repeated; NULL
 * if absent.  buf is the buffer the head was parsed in. */
const char *http_head_header(const struct http_head *head, const char *buf,
                             const char *name);

/* The request target split in place: the path decoded (%XX; '+' kept),
 * without query or fragment; the query raw ("" if none).  Both point into
 * the target, which is overwritten.  An absolute-form target
 * (http://host/path) gives its path.  Returns false when the decoded path
 * holds a NUL (a %00). */
bool http_target_split(char *target, const char **path, const char **query);

/* Decodes %XX in s[0, n) into out (which may be s), '+' as a space when
 * plus; invalid escapes are kept as they are.  Returns the decoded
 * length; out is NUL-terminated (it needs n + 1 bytes). */
size_t http_uri_decode(const char *s, size_t n, char *out, bool plus);

/* A query string's key=value pairs, split in place in buf (a copy of the
 * raw query): keys kept as sent, values decoded with '+' as a space.
 * evhttp_parse_query_str's rules: a part without '=' or with an empty key
 * makes the whole query invalid (-1).  Returns the number of pairs, or
 * -1; at most max are stored (the rest are parsed but dropped). */
struct http_query_pair {
    const char *key;
    const char *value;
};
int http_parse_query(char *buf, struct http_query_pair *pairs, int max);

/* The chunked body that starts at buf[*raw] (up to len): each whole chunk's
 * data is moved down to buf[*body_end], *raw and *body_end advancing.
 * Returns 1 once the last chunk and trailers are in (*raw is then past
 * them), HTTP_PARSE_INCOMPLETE when more bytes are needed, or
 * HTTP_PARSE_BAD.  *body_end - (where the body began) never exceeds max:
 * past it, -413. */
int http_parse_chunked(char *buf, size_t len, size_t *raw, size_t *body_end,
                       size_t body_start, size_t max);

#endif
