/* http_parse: HTTP/1.x request heads, chunked bodies and query strings,
 * in place (see http_parse.h). */
#include "studyhub/http/http_parse.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr(extra, c));
}

/* A field value's byte: VCHAR, obs-text, SP or HTAB. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long http_head_end(const char *buf, size_t len, struct http_head_scan *scan)
{
    size_t line = scan->line;

    for (;;) {
        const char *nl = line < len ? memchr(buf + line, '\n', len - line) : NULL;
        if (!nl)
            break;
        size_t i = (size_t)(nl - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return -1;
        bool empty = i - 1 == line;
        line = i + 1;
        if (empty && scan->started) {
            scan->line = line;
            return (long)line;
        }
        if (!empty)
            scan->started = true;
    }
    scan->line = line;
    return 0;
}

static const struct {
    const char *name;
    size_t len;
    enum http_method method;
} methods[] = {
    { "GET", 3, HTTP_GET }, { "HEAD", 4, HTTP_HEAD }, { "POST", 4, HTTP_POST },
    { "PUT", 3, HTTP_PUT }, { "PATCH", 5, HTTP_PATCH }, { "DELETE", 6, HTTP_DELETE },
    { "OPTIONS", 7, HTTP_OPTIONS },
};

/* The framing headers, checked as they are stored. */
static long note_header(struct http_head *out, const char *name, const char *value)
{
    if (strcasecmp(name, "Content-Length") == 0) {
        int64_t n = 0;
        size_t i = 0;

        for (; value[i]; i++) {
            if (value[i] < '0' || value[i] > '9' || i >= 18)
                return HTTP_PARSE_BAD;
            n = n * 10 + (value[i] - '0');
        }
        if (i == 0 || (out->content_length >= 0 && out->content_length != n))
            return HTTP_PARSE_BAD;
        out->content_length = n;
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        /* Only chunked, once: anything else is a body we cannot frame. */
        if (out->chunked || strcasecmp(value, "chunked") != 0)
            return HTTP_PARSE_BAD;
        out->chunked = true;
    } else if (strcasecmp(name, "Connection") == 0) {
        const char *p = value;

        while (*p) {
            size_t n;

            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            n = strcspn(p, " \t,");
            if (n == 5 && strncasecmp(p, "close", 5) == 0)
                out->conn_close = true;
            else if (n == 10 && strncasecmp(p, "keep-alive", 10) == 0)
                out->conn_keep_alive = true;
            p += n;
        }
    } else if (strcasecmp(name, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") != 0)
            return HTTP_PARSE_EXPECT;
        out->expect_continue = true;
    }
    return 0;
}

long http_parse_head(char *buf, size_t end, struct http_head *out)
{
    size_t p = 0, start;
    bool known = false;

    memset(out, 0, offsetof(struct http_head, h));
    out->content_length = -1;
    out->method = HTTP_OTHER;
    while (p + 1 < end && buf[p] == '\r' && buf[p + 1] == '\n')
        p += 2;

    /* method SP target SP HTTP/1.x CRLF */
    start = p;
    while (p < end && is_tchar((unsigned char)buf[p]))
        p++;
    if (p == start || p >= end || buf[p] != ' ')
        return HTTP_PARSE_BAD;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (methods[i].len == p - start && memcmp(buf + start, methods[i].name, p - start) == 0) {
            out->method = methods[i].method;
            known = true;
        }
    }
    start = ++p;
    while (p < end && (unsigned char)buf[p] > 0x20 && buf[p] != 0x7f)
        p++;
    if (p == start || p >= end || buf[p] != ' ')
        return HTTP_PARSE_BAD;
    out->target = (uint32_t)start;
    out->target_len = (uint32_t)(p - start);
    buf[p++] = '\0';
    if (end - p < 10 || memcmp(buf + p, "HTTP/", 5) != 0 || buf[p + 6] != '.' ||
        buf[p + 5] < '0' || buf[p + 5] > '9' || buf[p + 7] < '0' || buf[p + 7] > '9' ||
        buf[p + 8] != '\r' || buf[p + 9] != '\n')
        return HTTP_PARSE_BAD;
    if (buf[p + 5] != '1' || (buf[p + 7] != '0' && buf[p + 7] != '1'))
        return HTTP_PARSE_VERSION;
    out->minor = buf[p + 7] - '0';
    p += 10;

    /* field-name ":" OWS field-value OWS CRLF, until the empty line. */
    for (;;) {
        size_t name, colon, value, vend;
        long rc;

        if (p + 1 >= end)
            return HTTP_PARSE_BAD;
        if (buf[p] == '\r') {
            if (buf[p + 1] != '\n')
                return HTTP_PARSE_BAD;
            p += 2;
            break;
        }
        name = p;
        while (p < end && is_tchar((unsigned char)buf[p]))
            p++;
        /* Empty (a folded line starts with a space), or a space before
         * the colon. */
        if (p == name || p >= end || buf[p] != ':')
            return HTTP_PARSE_BAD;
        colon = p++;
        while (p < end && (buf[p] == ' ' || buf[p] == '\t'))
            p++;
        value = p;
        while (p < end && is_value_char((unsigned char)buf[p]))
            p++;
        if (p + 1 >= end || buf[p] != '\r' || buf[p + 1] != '\n')
            return HTTP_PARSE_BAD;
        vend = p;
        while (vend > value && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
            vend--;
        p += 2;
        if (out->nheaders >= HTTP_PARSE_MAX_HEADERS)
            return HTTP_PARSE_TOO_MANY;
        buf[colon] = '\0';
        buf[vend] = '\0';
        out->h[out->nheaders].name = (uint32_t)name;
        out->h[out->nheaders].value = (uint32_t)value;
        out->nheaders++;
        if ((rc = note_header(out, buf + name, buf + value)) < 0)
            return rc;
    }
    if (p != end)
        return HTTP_PARSE_BAD;
    if (out->chunked && (out->content_length >= 0 || out->minor == 0))
        return HTTP_PARSE_BAD;
    if (!known)
        return HTTP_PARSE_METHOD;
    out->head_len = end;
    return (long)end;
}

const char *http_head_header(const struct http_head *head, const char *buf,
                             const char *name)
{
    for (size_t i = 0; i < head->nheaders; i++)
        if (strcasecmp(buf + head->h[i].name, name) == 0)
            return buf + head->h[i].value;
    return NULL;
}

size_t http_uri_decode(const char *s, size_t n, char *out, bool plus)
{
    size_t i, j;

    for (i = j = 0; i < n; i++) {
        char c = s[i];
        int hi, lo;

        if (c == '+' && plus) {
            c = ' ';
        } else if (c == '%' && i + 2 < n && (hi = hex_value((unsigned char)s[i + 1])) >= 0 &&
                   (lo = hex_value((unsigned char)s[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[j++] = c;
    }
    out[j] = '\0';
    return j;
}

bool http_target_split(char *target, const char **path, const char **query)
{
    char *p = target, *q;
    size_t n;

    *query = "";
    if (*p != '/') {
        char *scheme = strstr(p, "://");
        if (scheme && !memchr(p, '/', (size_t)(scheme - p)) && !memchr(p, '?', (size_t)(scheme - p))) {
            char *slash = strpbrk(scheme + 3, "/?#");
            if (!slash || *slash != '/') {
                /* http://host or http://host?q: the path is "/". */
                if (slash && *slash == '?') {
                    *query = slash + 1;
                    char *frag = strchr(slash + 1, '#');
                    if (frag)
                        *frag = '\0';
                }
                *path = "/";
                return true;
            }
            p = slash;
        }
    }
    q = strpbrk(p, "?#");
    if (q) {
        if (*q == '?') {
            char *frag = strchr(q + 1, '#');
            if (frag)
                *frag = '\0';
            *query = q + 1;
        }
        *q = '\0';
    }
    n = strlen(p);
    if (n == 0) {
        *path = "/";
        return true;
    }
    *path = p;
    return http_uri_decode(p, n, p, false) == strlen(p);
}

int http_parse_query(char *buf, struct http_query_pair *pairs, int max)
{
    int count = 0;
    char *p = buf;

    while (p && *p) {
        char *part = p, *amp = strchr(p, '&'), *eq;

        if (amp) {
            *amp = '\0';
            p = amp + 1;
        } else {
            p = NULL;
        }
        eq = strchr(part, '=');
        if (!eq || eq == part)
            return -1;
        *eq = '\0';
        http_uri_decode(eq + 1, strlen(eq + 1), eq + 1, true);
        if (count < max) {
            pairs[count].key = part;
            pairs[count].value = eq + 1;
        }
        count++;
    }
    return count < max ? count : max;
}

int http_parse_chunked(char *buf, size_t len, size_t *raw, size_t *body_end,
                       size_t body_start, size_t max)
{
    for (;;) {
        size_t p = *raw, size = 0, digits = 0, data;
        const char *nl = p < len ? memchr(buf + p, '\n', len - p) : NULL;

        if (!nl)
            return len - p > 1024 ? HTTP_PARSE_BAD : HTTP_PARSE_INCOMPLETE;
        size_t eol = (size_t)(nl - buf);     /* the LF */
        if (eol == p || buf[eol - 1] != '\r')
            return HTTP_PARSE_BAD;
        for (; p < eol - 1; p++, digits++) {
            int h = hex_value((unsigned char)buf[p]);
            if (h < 0)
                break;
            if (digits >= 15)
                return HTTP_PARSE_BAD;
            size = size * 16 + (size_t)h;
        }
        if (digits == 0)
            return HTTP_PARSE_BAD;
        /* Chunk extensions (";name=value") are ignored; nothing else may follow. */
        for (; p < eol - 1; p++)
            if (buf[p] != ';' && buf[p] != ' ' && buf[p] != '\t' && !is_value_char((unsigned char)buf[p]))
                return HTTP_PARSE_BAD;
        data = eol + 1;
        if (size == 0) {
            /* Trailers (ignored) up to the empty line. */
            size_t line = data;
            for (;;) {
                const char *tl = line < len ? memchr(buf + line, '\n', len - line) : NULL;
                if (!tl)
                    return len - data > 8192 ? HTTP_PARSE_BAD : HTTP_PARSE_INCOMPLETE;
                size_t t = (size_t)(tl - buf);
                if (t == line || buf[t - 1] != '\r')
                    return HTTP_PARSE_BAD;
                if (t - 1 == line) {
                    *raw = t + 1;
                    return 1;
                }
                line = t + 1;
            }
        }
        if (*body_end - body_start + size > max)
            return -413;
        if (len - data < size + 2)
            return HTTP_PARSE_INCOMPLETE;
        if (buf[data + size] != '\r' || buf[data + size + 1] != '\n')
            return HTTP_PARSE_BAD;
        memmove(buf + *body_end, buf + data, size);
        *body_end += size;
        *raw = data + size + 2;
    }
}
