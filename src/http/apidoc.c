/* apidoc: JSON:API documents assembled in an evbuffer from PostgreSQL's
 * JSON text, and the small request helpers the API modules share. */
#include "studyhub/http/apidoc.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* JSON string contents (no quotes) of s into out; false if it does not fit. */
static bool escape_into(const char *s, char *out, size_t len)
{
    size_t used = 0;

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char tmp[8];
        const char *piece = tmp;
        if (ch == '"' || ch == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)ch;
            tmp[2] = '\0';
        } else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
        } else {
            tmp[0] = (char)ch;
            tmp[1] = '\0';
        }
        size_t n = strlen(piece);
        if (used + n + 1 > len)
            return false;
        memcpy(out + used, piece, n);
        used += n;
    }
    out[used] = '\0';
    return true;
}

int apidoc_init(struct apidoc *d, struct http_req *req)
{
    d->failed = false;
    if (!escape_into(http_req_base_url(req), d->base, sizeof d->base))
        d->base[0] = '\0';      /* absurd BASE_URL: links become root-relative */
    d->buf = evbuffer_new();
    return d->buf ? 0 : -1;
}

void apidoc_cleanup(struct apidoc *d)
{
    if (d->buf)
        evbuffer_free(d->buf);
    d->buf = NULL;
}

void apidoc_addn(struct apidoc *d, const char *text, size_t len)
{
    if (evbuffer_add(d->buf, text, len) < 0)
        d->failed = true;
}

void apidoc_add(struct apidoc *d, const char *text)
{
    apidoc_addn(d, text, strlen(text));
}

void apidoc_printf(struct apidoc *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(d->buf, fmt, ap) < 0)
        d->failed = true;
    va_end(ap);
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return evbuffer_add(data, buffer, size);
}

void apidoc_json(struct apidoc *d, const json_t *v)
{
    if (!v || json_dump_callback(v, dump_cb, d->buf, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
        d->failed = true;
}

void apidoc_reply(struct apidoc *d, struct http_req *req, int status)
{
    if (d->failed) {
        apidoc_cleanup(d);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    http_reply_buffer(req, status, JSONAPI_MEDIA_TYPE, d->buf);
    apidoc_cleanup(d);
}

void apidoc_resource(struct apidoc *d, const char *type, const PGresult *res,
                     int row, int col)
{
    apidoc_printf(d, "{\"type\":\"%s\",\"id\":\"%s\",\"attributes\":", type,
                  PQgetvalue(res, row, col));
    apidoc_addn(d, PQgetvalue(res, row, col + 1), (size_t)PQgetlength(res, row, col + 1));
    apidoc_add(d, "}");
}

void apidoc_reply_page(struct http_req *req, PGresult *res, const char *what,
                       int check_col, apidoc_render_fn render)
{
    struct jsonapi_page page;
    struct jsonapi_error e;
    struct apidoc d;
    json_t *links;

    if (apidoc_db_failed(req, res, what))
        return;
    jsonapi_page_parse(req, &page, &e);
    long count = PQntuples(res) ? atol(PQgetvalue(res, 0, 0)) : 0;
    if (!(links = jsonapi_page_links(req, &page, count, &e))) {
        jsonapi_reply_error(req, &e);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        json_decref(links);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"links\":");
    apidoc_json(&d, links);
    json_decref(links);
    apidoc_add(&d, ",\"data\":[");
    for (int i = 0, n = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, check_col))
            continue;
        if (n++)
            apidoc_add(&d, ",");
        render(&d, res, i, 1);
    }
    apidoc_add(&d, "]}");
    apidoc_reply(&d, req, 200);
}

static int error_cmp(const void *a, const void *b)
{
    const struct jsonapi_error *x = a, *y = b;
    return strcmp(x->pointer, y->pointer);
}

void apidoc_reply_errors(struct http_req *req, const struct jsonapi_error *errs, int n)
{
    struct jsonapi_error sorted[16];
    json_t *list = json_array();

    if (n > (int)(sizeof sorted / sizeof sorted[0]))
        n = (int)(sizeof sorted / sizeof sorted[0]);
    memcpy(sorted, errs, (size_t)n * sizeof *errs);
    qsort(sorted, (size_t)n, sizeof *sorted, error_cmp);
    for (int i = 0; i < n; i++) {
        json_t *doc = jsonapi_error_doc(&sorted[i]);
        json_array_extend(list, json_object_get(doc, "errors"));
        json_decref(doc);
    }
    jsonapi_reply(req, n ? sorted[0].status : 400, json_pack("{s:o}", "errors", list));
}

bool apidoc_db_failed(struct http_req *req, const PGresult *res, const char *what)
{
    if (!res) {
        jsonapi_reply_unavailable(req, "Database");
        return true;
    }
    if (pg_ok(res))
        return false;
    /* Class 22 (a value PostgreSQL cannot take, e.g. a number beyond
     * numeric's range inside exp_data) and 23 (a constraint) are the
     * request's fault even when the checks before the query missed them:
     * the statement failed, so nothing was written. */
    const char *state = pg_sqlstate(res);
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0) {
        log_info("%s refused by PostgreSQL: %s", what, state);
        jsonapi_reply_errorf(req, 400, "invalid", "/data",
                             "The request holds a value that cannot be stored (SQLSTATE %s).",
                             state);
        return true;
    }
    /* Every input is validated before it reaches SQL, so this is a bug or
     * a schema drift: say so in the log, keep the details from the client. */
    log_error("%s failed: %s %s", what, pg_sqlstate(res), PQresultErrorMessage(res));
    jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
    return true;
}

const char *apidoc_user_id(const struct http_req *req, char buf[24])
{
    const struct auth_user *u = auth_user(req);
    util_int_dec(u ? u->id : 0, buf);
    return buf;
}

const char *apidoc_research_id(const struct http_req *req, char buf[24])
{
    if (!auth_request_researcher_ok(req))
        return NULL;
    return apidoc_user_id(req, buf);
}

bool apidoc_bool(const PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

bool apidoc_uuid_copy(const char *s, char out[37])
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[36] = '\0';
    return true;
}

/* ---- JSON scanner ---------------------------------------------------------- */

/* Deeper than any runner document; keeps the recursion bounded. */
#define SCAN_MAX_DEPTH 512

/* Where the outer containers of a scanned document end, so stepping over
 * one again (to reach the member after it) costs a lookup, not a pass:
 * a runner PATCH's 20 KB exp_data sits inside the document, data and
 * attributes, each of whose members are listed once.  The first
 * JINDEX_MAX containers at most JINDEX_DEPTH deep, in document order. */
#define JINDEX_MAX 32
#define JINDEX_DEPTH 4
struct jindex {
    const char *open[JINDEX_MAX];
    const char *close[JINDEX_MAX];   /* one past the bracket */
    int n;
};

struct scan {
    const char *end;       /* one past the text (borrowed) */
    const char *err;       /* static message of the first error */
    const char *big;       /* the first number numeric cannot hold, or NULL */
    int depth;
    struct jindex *ix;     /* NULL: not recorded */
};

static const char *scan_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hex4(const char *p, const char *end)
{
    int v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Length of the UTF-8 sequence at p (1..4), or 0 when it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF refused). */
static int utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    int n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (end - p < n)
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && p[1] < 0xA0)
        return 0;           /* overlong */
    if (c == 0xED && p[1] >= 0xA0)
        return 0;           /* surrogate */
    if (c == 0xF0 && p[1] < 0x90)
        return 0;           /* overlong */
    if (c == 0xF4 && p[1] >= 0x90)
        return 0;           /* above U+10FFFF */
    return n;
}

/* The bytes a string may hold as they are: printable ASCII but '"' and
 * '\\'.  The scanner steps over runs of them by this table, a few
 * instructions a byte, and looks closer only at the rest (a runner's
 * 20 KB exp_data is almost all such runs). */
static const unsigned char plain_in_string[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* a0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* b0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* c0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* d0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* e0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* f0 */
};

/* Eight bytes at a time (SWAR): are all of w's bytes plain_in_string? */
#define BYTES_ONES 0x0101010101010101ull
#define BYTES_HIGHS 0x8080808080808080ull
static bool plain_eight(uint64_t w)
{
    uint64_t quote = w ^ (BYTES_ONES * '"'), backslash = w ^ (BYTES_ONES * '\\');
    uint64_t zero_in = ((quote - BYTES_ONES) & ~quote) | ((backslash - BYTES_ONES) & ~backslash);
    uint64_t control = (w - BYTES_ONES * 0x20) & ~w;     /* a byte below 0x20 */

    return ((zero_in | control | w) & BYTES_HIGHS) == 0;
}

/* p at the opening quote; returns the byte after the closing one. */
static const char *scan_string(struct scan *sc, const char *p)
{
    const char *end = sc->end;

    p++;
    while (p < end) {
        uint64_t w;
        while (end - p >= 8 && (memcpy(&w, p, 8), plain_eight(w)))
            p += 8;
        while (p < end && plain_in_string[(unsigned char)*p])
            p++;
        if (p >= end)
            break;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20) {
            sc->err = "control character in a string";
            return NULL;
        }
        if (c == '\\') {
            if (++p >= end)
                break;
            if (*p == 'u') {
                int v = hex4(p + 1, end);
                if (v < 0) {
                    sc->err = "bad \\u escape";
                    return NULL;
                }
                p += 5;
                if (v == 0) {
                    sc->err = "\\u0000 is not allowed";
                    return NULL;
                }
                if (v >= 0xDC00 && v <= 0xDFFF) {
                    sc->err = "lone low surrogate";
                    return NULL;
                }
                if (v >= 0xD800 && v <= 0xDBFF) {
                    int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, end) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        sc->err = "high surrogate without its low half";
                        return NULL;
                    }
                    p += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", *p) || !*p) {
                sc->err = "bad escape";
                return NULL;
            }
            p++;
            continue;
        }
        int n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
        if (!n) {
            sc->err = "invalid UTF-8";
            return NULL;
        }
        p += n;
    }
    sc->err = "unterminated string";
    return NULL;
}

/* The number at p (already checked JSON): does it fit PostgreSQL's numeric
 * (at most 131072 digits before the point and 16383 after), as jsonb
 * needs? */
static bool number_fits_numeric(const char *p, const char *end)
{
    long int_digits = 0, frac_digits = 0, frac_zeros = 0, exp = 0;
    bool nonzero = false, exp_neg = false;

    if (*p == '-')
        p++;
    while (p < end && *p == '0')
        p++;
    for (; p < end && isdigit((unsigned char)*p); p++, int_digits++)
        nonzero = true;
    if (p < end && *p == '.') {
        for (p++; p < end && isdigit((unsigned char)*p); p++, frac_digits++) {
            if (*p != '0')
                nonzero = true;
            else if (!nonzero)
                frac_zeros++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            exp_neg = *p++ == '-';
        for (; p < end && isdigit((unsigned char)*p); p++)
            if (exp < 100000000)
                exp = exp * 10 + (*p - '0');
        if (exp_neg)
            exp = -exp;
    }
    /* Digits after the point once the exponent is applied (numeric keeps
     * them, zeros included), and the position of the first digit. */
    if (frac_digits - exp > 16383)
        return false;
    if (!nonzero)
        return true;
    long weight = int_digits ? int_digits + exp : exp - frac_zeros;
    return weight <= 131072 && weight >= -131072;
}

static const char *scan_number(struct scan *sc, const char *p)
{
    const char *end = sc->end, *start, *number = p;

    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else {
        start = p;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p == start)
            goto bad;
    }
    if (p < end && *p == '.') {
        start = ++p;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p == start)
            goto bad;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        start = p;
        while (p < end && isdigit((unsigned char)*p))
            p++;
        if (p == start)
            goto bad;
    }
    if (!sc->big && !number_fits_numeric(number, p))
        sc->big = number;
    return p;
bad:
    sc->err = "malformed number";
    return NULL;
}

static const char *scan_value(struct scan *sc, const char *p, enum apidoc_jtype *type);

static const char *scan_container(struct scan *sc, const char *p, bool object)
{
    const char *end = sc->end;
    char close = object ? '}' : ']';
    int slot = -1;

    if (++sc->depth > SCAN_MAX_DEPTH) {
        sc->err = "nested too deeply";
        return NULL;
    }
    if (sc->ix && sc->depth <= JINDEX_DEPTH && sc->ix->n < JINDEX_MAX) {
        slot = sc->ix->n++;
        sc->ix->open[slot] = p;
        sc->ix->close[slot] = NULL;     /* set when it closes */
    }
    p = scan_ws(p + 1, end);
    if (p < end && *p == close) {
        sc->depth--;
        if (slot >= 0)
            sc->ix->close[slot] = p + 1;
        return p + 1;
    }
    for (;;) {
        enum apidoc_jtype t;
        if (object) {
            if (p >= end || *p != '"') {
                sc->err = "expected a member name";
                return NULL;
            }
            if (!(p = scan_string(sc, p)))
                return NULL;
            p = scan_ws(p, end);
            if (p >= end || *p != ':') {
                sc->err = "expected ':'";
                return NULL;
            }
            p = scan_ws(p + 1, end);
        }
        if (!(p = scan_value(sc, p, &t)))
            return NULL;
        p = scan_ws(p, end);
        if (p < end && *p == ',') {
            p = scan_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == close) {
            sc->depth--;
            if (slot >= 0)
                sc->ix->close[slot] = p + 1;
            return p + 1;
        }
        sc->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
        return NULL;
    }
}

static const char *scan_literal(struct scan *sc, const char *p, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(sc->end - p) < n || memcmp(p, word, n) != 0) {
        sc->err = "unexpected character";
        return NULL;
    }
    return p + n;
}

static const char *scan_value(struct scan *sc, const char *p, enum apidoc_jtype *type)
{
    if (p >= sc->end) {
        sc->err = "unexpected end of input";
        return NULL;
    }
    switch (*p) {
    case '{': *type = AJ_OBJECT; return scan_container(sc, p, true);
    case '[': *type = AJ_ARRAY; return scan_container(sc, p, false);
    case '"': *type = AJ_STRING; return scan_string(sc, p);
    case 't': *type = AJ_TRUE; return scan_literal(sc, p, "true");
    case 'f': *type = AJ_FALSE; return scan_literal(sc, p, "false");
    case 'n': *type = AJ_NULL; return scan_literal(sc, p, "null");
    default:
        if (*p == '-' || isdigit((unsigned char)*p)) {
            *type = AJ_NUMBER;
            return scan_number(sc, p);
        }
        sc->err = "unexpected character";
        return NULL;
    }
}

static int json_scan(const char *s, size_t len, struct apidoc_jspan *out,
                     const char **big_number, char *err, size_t errlen, struct jindex *ix)
{
    struct scan sc = { .end = s + len, .ix = ix };
    const char *p = scan_ws(s, sc.end), *start, *q;

    out->type = AJ_NONE;
    start = p;
    q = scan_value(&sc, p, &out->type);
    if (q && scan_ws(q, sc.end) != sc.end) {
        sc.err = "extra data after the value";
        q = NULL;
    }
    if (!q) {
        snprintf(err, errlen, "%s", sc.err ? sc.err : "malformed JSON");
        out->type = AJ_NONE;
        return -1;
    }
    out->p = start;
    out->len = (size_t)(q - start);
    if (big_number)
        *big_number = sc.big;
    return 0;
}

int apidoc_json_scan(const char *s, size_t len, struct apidoc_jspan *out,
                     const char **big_number, char *err, size_t errlen)
{
    return json_scan(s, len, out, big_number, err, errlen, NULL);
}

/* What matters to skip_value outside strings: quotes and brackets. */
static const unsigned char skip_stop[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/* Steps over one already-validated value at p: no checks, only strings
 * and brackets matter, so it is several times quicker than the scan. */
static const char *skip_value(const char *p, const char *end, enum apidoc_jtype *type)
{
    int depth = 0;

    switch (*p) {
    case '{': *type = AJ_OBJECT; break;
    case '[': *type = AJ_ARRAY; break;
    case '"': *type = AJ_STRING; break;
    case 't': *type = AJ_TRUE; return p + 4;
    case 'f': *type = AJ_FALSE; return p + 5;
    case 'n': *type = AJ_NULL; return p + 4;
    default:
        *type = AJ_NUMBER;
        while (p < end && *p && (isdigit((unsigned char)*p) || strchr("+-.eE", *p)))
            p++;
        return p;
    }
    do {
        char c = *p++;
        if (c == '"') {
            /* To the closing quote: the next '"' that an even run of
             * backslashes precedes (in valid JSON a backslash only
             * starts an escape). */
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p)), *b;
                if (!q) {
                    p = end;
                    break;
                }
                for (b = q; b > p && b[-1] == '\\'; b--)
                    ;
                p = q + 1;
                if ((q - b) % 2 == 0)
                    break;
            }
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
        while (depth > 0 && p < end && !skip_stop[(unsigned char)*p])
            p++;
    } while (depth > 0 && p < end);
    return p;
}

/* skip_value, with a lookup first for a container ix recorded. */
static const char *skip_value_ix(const char *p, const char *end, enum apidoc_jtype *type,
                                 const struct jindex *ix)
{
    if (ix && (*p == '{' || *p == '[')) {
        for (int i = 0; i < ix->n && ix->open[i] <= p; i++) {
            if (ix->open[i] == p && ix->close[i] && ix->close[i] <= end) {
                *type = *p == '{' ? AJ_OBJECT : AJ_ARRAY;
                return ix->close[i];
            }
        }
    }
    return skip_value(p, end, type);
}

static bool json_member(const struct apidoc_jspan *obj, size_t *it, struct apidoc_jspan *key,
                        struct apidoc_jspan *val, const struct jindex *ix)
{
    const char *end = obj->p + obj->len, *p;
    enum apidoc_jtype t;

    if (obj->type != AJ_OBJECT)
        return false;
    p = scan_ws(obj->p + (*it ? *it : 1), end);
    if (p < end && *p == ',')
        p = scan_ws(p + 1, end);
    if (p >= end || *p != '"')
        return false;
    key->p = p;
    key->type = AJ_STRING;
    p = skip_value(p, end, &t);
    key->len = (size_t)(p - key->p);
    p = scan_ws(scan_ws(p, end) + 1, end);     /* the ':' */
    val->p = p;
    p = skip_value_ix(p, end, &val->type, ix);
    val->len = (size_t)(p - val->p);
    *it = (size_t)(p - obj->p);
    return true;
}

bool apidoc_json_member(const struct apidoc_jspan *obj, size_t *it,
                        struct apidoc_jspan *key, struct apidoc_jspan *val)
{
    return json_member(obj, it, key, val, NULL);
}

bool apidoc_json_element(const struct apidoc_jspan *arr, size_t *it,
                         struct apidoc_jspan *val)
{
    const char *end = arr->p + arr->len, *p;

    if (arr->type != AJ_ARRAY)
        return false;
    p = scan_ws(arr->p + (*it ? *it : 1), end);
    if (p < end && *p == ',')
        p = scan_ws(p + 1, end);
    if (p >= end || *p == ']')
        return false;
    val->p = p;
    p = skip_value(p, end, &val->type);
    val->len = (size_t)(p - val->p);
    *it = (size_t)(p - arr->p);
    return true;
}

/* Appends code point v as UTF-8. */
static size_t put_utf8(char *o, unsigned v)
{
    if (v < 0x80) {
        o[0] = (char)v;
        return 1;
    }
    if (v < 0x800) {
        o[0] = (char)(0xC0 | v >> 6);
        o[1] = (char)(0x80 | (v & 0x3F));
        return 2;
    }
    if (v < 0x10000) {
        o[0] = (char)(0xE0 | v >> 12);
        o[1] = (char)(0x80 | (v >> 6 & 0x3F));
        o[2] = (char)(0x80 | (v & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | v >> 18);
    o[1] = (char)(0x80 | (v >> 12 & 0x3F));
    o[2] = (char)(0x80 | (v >> 6 & 0x3F));
    o[3] = (char)(0x80 | (v & 0x3F));
    return 4;
}

bool apidoc_json_string(const struct apidoc_jspan *str, char *buf, size_t len)
{
    const char *p, *end;
    size_t n = 0;

    if (str->type != AJ_STRING || str->len < 2 || !len)
        return false;
    p = str->p + 1;
    end = str->p + str->len - 1;        /* the closing quote */
    while (p < end) {
        char tmp[4];
        size_t k;
        if (*p != '\\') {
            tmp[0] = *p++;
            k = 1;
        } else {
            p++;
            switch (*p) {
            case 'b': tmp[0] = '\b'; k = 1; p++; break;
            case 'f': tmp[0] = '\f'; k = 1; p++; break;
            case 'n': tmp[0] = '\n'; k = 1; p++; break;
            case 'r': tmp[0] = '\r'; k = 1; p++; break;
            case 't': tmp[0] = '\t'; k = 1; p++; break;
            case 'u': {
                unsigned v = (unsigned)hex4(p + 1, end);
                p += 5;
                if (v >= 0xD800 && v <= 0xDBFF) {     /* validated: a pair */
                    unsigned lo = (unsigned)hex4(p + 2, end);
                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
                k = put_utf8(tmp, v);
                break;
            }
            default: tmp[0] = *p++; k = 1; break;   /* " \ / */
            }
        }
        if (n + k + 1 > len)
            return false;
        memcpy(buf + n, tmp, k);
        n += k;
    }
    buf[n] = '\0';
    return true;
}

bool apidoc_json_string_is(const struct apidoc_jspan *str, const char *s)
{
    char buf[256];
    size_t n = strlen(s);

    /* The common case, no escapes: compare the bytes in place. */
    if (str->type == AJ_STRING && str->len == n + 2 && memcmp(str->p + 1, s, n) == 0)
        return true;
    if (n >= sizeof buf || !memchr(str->p, '\\', str->len))
        return false;
    return apidoc_json_string(str, buf, sizeof buf) && strcmp(buf, s) == 0;
}

bool apidoc_json_get(const struct apidoc_jspan *obj, const char *key,
                     struct apidoc_jspan *val)
{
    struct apidoc_jspan k, v;
    size_t it = 0;
    bool found = false;

    while (apidoc_json_member(obj, &it, &k, &v)) {
        if (apidoc_json_string_is(&k, key)) {
            *val = v;
            found = true;
        }
    }
    return found;
}

/* ---- request documents with the scanner -------------------------------------- */

static size_t json_members(const struct apidoc_jspan *obj, struct apidoc_jmember *out,
                           size_t max, const struct jindex *ix)
{
    struct apidoc_jspan k, v;
    size_t it = 0, n = 0;

    while (json_member(obj, &it, &k, &v, ix)) {
        if (n < max) {
            out[n].key = k;
            out[n].val = v;
        }
        n++;
    }
    return n;
}

size_t apidoc_json_members(const struct apidoc_jspan *obj, struct apidoc_jmember *out,
                           size_t max)
{
    return json_members(obj, out, max, NULL);
}

/* Members of the objects the API reads (the document, data, attributes,
 * relationships): a handful each.  More than this many is not a request
 * we serve. */
#define DOC_MAX_MEMBERS APIDOC_DOC_MAX_MEMBERS

/* Loads obj's members into m; false when there are too many or a name is
 * repeated (pairwise: the lists are short). */
static bool members_unique(const struct apidoc_jspan *obj, struct apidoc_jmember *m, size_t *n,
                           const struct jindex *ix)
{
    *n = json_members(obj, m, DOC_MAX_MEMBERS, ix);
    if (*n > DOC_MAX_MEMBERS)
        return false;
    for (size_t i = 0; i < *n; i++) {
        char name[256];
        bool plain = apidoc_json_string(&m[i].key, name, sizeof name);
        for (size_t j = i + 1; j < *n; j++) {
            if (plain ? apidoc_json_string_is(&m[j].key, name)
                      : (m[i].key.len == m[j].key.len &&
                         memcmp(m[i].key.p, m[j].key.p, m[i].key.len) == 0))
                return false;
        }
    }
    return true;
}

static const struct apidoc_jspan *member(const struct apidoc_jmember *m, size_t n,
                                         const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (apidoc_json_string_is(&m[i].key, name))
            return &m[i].val;
    return NULL;
}

int apidoc_parse_request(struct http_req *req, const char *want_type, const char *want_id,
                         struct apidoc_doc *doc, struct jsonapi_error *e)
{
    struct apidoc_jspan top;
    struct apidoc_jmember m[DOC_MAX_MEMBERS];
    const struct apidoc_jspan *v, *type;
    size_t len, n;
    const char *body = http_req_body(req, &len);
    char err[96];
    struct jindex ix;

    memset(doc, 0, sizeof *doc);
    if (!jsonapi_content_type_ok(http_req_header(req, "Content-Type"))) {
        jsonapi_error_set(e, 415, "unsupported_media_type", "/data",
                          "Unsupported media type in request; use %s.", JSONAPI_MEDIA_TYPE);
        return -1;
    }
    ix.n = 0;
    if (json_scan(body, len, &top, &doc->big_number, err, sizeof err, &ix) < 0) {
        jsonapi_error_set(e, 400, "parse_error", "/data", "JSON parse error - %s", err);
        return -1;
    }
    if (top.type == AJ_OBJECT && !members_unique(&top, m, &n, &ix)) {
        jsonapi_error_set(e, 400, "parse_error", "/data", "JSON parse error - duplicate key");
        return -1;
    }
    if (top.type != AJ_OBJECT || !(v = member(m, n, "data")) || v->type != AJ_OBJECT) {
        jsonapi_error_set(e, 400, "parse_error", "/data",
                          "Received document does not contain primary data");
        return -1;
    }
    doc->data = *v;
    if (!members_unique(&doc->data, m, &n, &ix)) {
        jsonapi_error_set(e, 400, "parse_error", "/data", "JSON parse error - duplicate key");
        return -1;
    }
    if (!(type = member(m, n, "type")) || !apidoc_json_string_is(type, want_type)) {
        char tname[64] = "none";
        if (type && type->type == AJ_STRING && !apidoc_json_string(type, tname, sizeof tname))
            snprintf(tname, sizeof tname, "?");
        jsonapi_error_set(e, 409, "error", "/data",
                          "The resource object's type (%s) is not the type that constitute the collection represented by the endpoint (%s).",
                          tname, want_type);
        return -1;
    }
    if (want_id) {
        if (!(v = member(m, n, "id"))) {
            jsonapi_error_set(e, 400, "parse_error", "/data",
                              "The resource identifier object must contain an 'id' member");
            return -1;
        }
        if (!apidoc_json_string_is(v, want_id)) {
            jsonapi_error_set(e, 409, "error", "/data",
                              "The resource object's id does not match the id in the URL.");
            return -1;
        }
    }
    static const char *const parts[] = { "attributes", "relationships" };
    for (int i = 0; i < 2; i++) {
        struct apidoc_jmember inner[DOC_MAX_MEMBERS];
        size_t ninner;
        char pointer[32];
        if (!(v = member(m, n, parts[i])))
            continue;
        snprintf(pointer, sizeof pointer, "/data/%s", parts[i]);
        if (v->type != AJ_OBJECT) {
            jsonapi_error_set(e, 400, "parse_error", pointer, "%s must be an object", parts[i]);
            return -1;
        }
        if (!members_unique(v, i == 0 ? doc->attr : inner, i == 0 ? &doc->nattr : &ninner,
                            &ix)) {
            jsonapi_error_set(e, 400, "parse_error", pointer, "JSON parse error - duplicate key");
            return -1;
        }
        if (i == 0)
            doc->attributes = *v;
        else
            doc->relationships = *v;
    }
    return 0;
}

int apidoc_rel_uuid(const struct apidoc_doc *doc, const char *name, const char *want_type,
                    char out[37], struct jsonapi_error *e)
{
    struct apidoc_jspan rel, d, type, id;
    char pointer[96], buf[64];

    if (doc->relationships.type != AJ_OBJECT ||
        !apidoc_json_get(&doc->relationships, name, &rel))
        return 0;
    snprintf(pointer, sizeof pointer, "/data/relationships/%s", name);
    if (rel.type != AJ_OBJECT || !apidoc_json_get(&rel, "data", &d) || d.type != AJ_OBJECT) {
        jsonapi_error_set(e, 400, "invalid", pointer,
                          "Invalid relationship: expected a resource identifier object.");
        return -1;
    }
    if (!apidoc_json_get(&d, "type", &type) || type.type != AJ_STRING ||
        !apidoc_json_get(&d, "id", &id) || id.type != AJ_STRING) {
        jsonapi_error_set(e, 400, "invalid", pointer,
                          "Invalid resource identifier object: missing 'type' or 'id'.");
        return -1;
    }
    if (!apidoc_json_string_is(&type, want_type)) {
        if (!apidoc_json_string(&type, buf, sizeof buf))
            snprintf(buf, sizeof buf, "?");
        jsonapi_error_set(e, 409, "error", pointer,
                          "Incorrect relation type. Expected %s, received %s.", want_type, buf);
        return -1;
    }
    if (!apidoc_json_string(&id, buf, sizeof buf) || !apidoc_uuid_copy(buf, out)) {
        jsonapi_error_set(e, 400, "invalid", pointer, "\"%.40s\" is not a valid UUID.",
                          apidoc_json_string(&id, buf, sizeof buf) ? buf : "?");
        return -1;
    }
    return 1;
}
