/* reply_head: the fixed part of every reply's head; see reply_head.h. */
#include "studyhub/http/reply_head.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void http_date_format(time_t t, char out[30])
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    char tmp[96];   /* what the compiler cannot bound; the year is 4 digits */

    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 29);
    out[29] = '\0';
}

const char *http_date_cached(struct http_date_cache *c, time_t t)
{
    if (c->second != t || !c->text[0]) {
        http_date_format(t, c->text);
        c->second = t;
    }
    return c->text;
}

static char *block_put(char *p, char *end, const char *s)
{
    size_t n = strlen(s);

    if (!p || (size_t)(end - p) < n)
        return NULL;
    memcpy(p, s, n);
    return p + n;
}

size_t http_header_block(char *out, size_t cap, const char *date,
                         const char *request_id, const char *csp)
{
    char *p = out, *end = out + cap;

    p = block_put(p, end, date);
    p = block_put(p, end, "\r\nX-Request-Id: ");
    p = block_put(p, end, request_id);
    p = block_put(p, end, "\r\nX-Content-Type-Options: nosniff"
                          "\r\nReferrer-Policy: same-origin"
                          "\r\nX-Frame-Options: DENY");
    if (csp) {
        p = block_put(p, end, "\r\nContent-Security-Policy: ");
        p = block_put(p, end, csp);
    }
    if (!p || p == end)
        return 0;
    *p = '\0';
    return (size_t)(p - out);
}

const char *http_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ?
                                                                       "Client Error" : "Server Error";
    }
}
