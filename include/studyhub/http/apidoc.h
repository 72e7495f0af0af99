/* apidoc: JSON:API documents written straight into an evbuffer from pieces
 * PostgreSQL already rendered as JSON text (attributes objects), so the hot
 * paths (GET study, PATCH response) never parse and re-serialize JSON they
 * only pass through.  Shared by the studies, responses, children and
 * feedback modules, with the few request helpers they all need. */
#ifndef STUDYHUB_HTTP_APIDOC_H
#define STUDYHUB_HTTP_APIDOC_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "studyhub/http/jsonapi.h"

struct evbuffer;
struct http_req;

/* Longest base URL we put in links, JSON-escaped. */
#define APIDOC_BASE_MAX 640

struct apidoc {
    struct evbuffer *buf;          /* owned until apidoc_reply/cleanup */
    char base[APIDOC_BASE_MAX];    /* http_req_base_url, JSON-escaped */
    bool failed;                   /* an append ran out of memory */
};

/* Starts an empty buffer.  Returns 0, or -1 when out of memory. */
int apidoc_init(struct apidoc *d, struct http_req *req);
void apidoc_cleanup(struct apidoc *d);

void apidoc_add(struct apidoc *d, const char *text);
void apidoc_addn(struct apidoc *d, const char *text, size_t len);
void apidoc_printf(struct apidoc *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends a jansson value (e.g. the pagination links). */
void apidoc_json(struct apidoc *d, const json_t *v);

/* Sends the document (status, application/vnd.api+json) and cleans up;
 * a buffer that ran out of memory becomes a 503. */
void apidoc_reply(struct apidoc *d, struct http_req *req, int status);

/* Renders the resource whose columns start at col of row. */
typedef void (*apidoc_render_fn)(struct apidoc *d, const PGresult *res, int row, int col);

/* Renders {"type": type, "id": column col, "attributes": column col + 1}
 * for a query that builds the attributes as one JSON value (copied as
 * is).  type is a JSON-safe literal. */
void apidoc_resource(struct apidoc *d, const char *type, const PGresult *res,
                     int row, int col);

/* Replies with one page of a list query whose every row is (count, the
 * resource's columns from column 1); the empty page has one row whose
 * column check_col is NULL.  The page is parsed again from the request
 * (it was checked before the query).  what names the query in logs. */
void apidoc_reply_page(struct http_req *req, PGresult *res, const char *what,
                       int check_col, apidoc_render_fn render);

/* Replies with several error objects at once, sorted by pointer as
 * upstream does; the HTTP status is the first error's. */
void apidoc_reply_errors(struct http_req *req, const struct jsonapi_error *errs, int n);

/* After a query: false when res is usable.  Otherwise replies (503 when
 * PostgreSQL is unreachable, 500 on an unexpected SQL error, logged with
 * what) and returns true. */
bool apidoc_db_failed(struct http_req *req, const PGresult *res, const char *what);

/* The caller's users.id as text, for a query parameter. */
const char *apidoc_user_id(const struct http_req *req, char buf[24]);
/* The caller's users.id as text when the caller may see research data
 * (auth_request_researcher_ok: two-factor verified), else NULL: the
 * parameter the family routes (ROUTE_FAMILY) give every permission check,
 * so that without two-factor those checks grant nothing and only the
 * caller's own family's rows are left. */
const char *apidoc_research_id(const struct http_req *req, char buf[24]);

/* A uuid in any case (Django's uuid lookups accept upper case), copied
 * lowercase into out; false if s is not one. */
bool apidoc_uuid_copy(const char *s, char out[37]);

/* ---- a validating JSON scanner ------------------------------------------
 *
 * Request bodies of the hot write paths carry 20 KB of runner data the
 * server only stores and echoes; building a jansson tree of it costs more
 * than everything else in the request.  The scanner checks a JSON text
 * completely (RFC 8259, UTF-8, no \u0000, paired surrogates: what
 * PostgreSQL's jsonb accepts) without allocating, and hands out the byte
 * spans of values so they can be passed on verbatim. */
enum apidoc_jtype {
    AJ_NONE, AJ_OBJECT, AJ_ARRAY, AJ_STRING, AJ_NUMBER, AJ_TRUE, AJ_FALSE, AJ_NULL
};

struct apidoc_jspan {
    const char *p;             /* first byte of the value (borrowed) */
    size_t len;                /* bytes, quotes and brackets included */
    enum apidoc_jtype type;
};

/* Validates the JSON text [s, s+len) and locates its one value.  Returns
 * 0, or -1 with a message in err.  big_number (if not NULL) receives the
 * first number PostgreSQL's numeric cannot hold (more than 131072 digits
 * before the point or 16383 after): valid JSON that jsonb refuses, and
 * that a value kept as json must refuse too.  NULL when there is none. */
int apidoc_json_scan(const char *s, size_t len, struct apidoc_jspan *out,
                     const char **big_number, char *err, size_t errlen);

/* The next member of a scanned object (*it starts at 0): returns true with
 * key (a string span) and value, false after the last. */
bool apidoc_json_member(const struct apidoc_jspan *obj, size_t *it,
                        struct apidoc_jspan *key, struct apidoc_jspan *val);
/* The next element of a scanned array, likewise. */
bool apidoc_json_element(const struct apidoc_jspan *arr, size_t *it,
                         struct apidoc_jspan *val);
/* A scanned string, unescaped into buf as NUL-terminated UTF-8; false when
 * it does not fit (or is not a string). */
bool apidoc_json_string(const struct apidoc_jspan *str, char *buf, size_t len);
/* Is the scanned string equal to s? */
bool apidoc_json_string_is(const struct apidoc_jspan *str, const char *s);
/* The member named key of a scanned object (the last one if repeated). */
bool apidoc_json_get(const struct apidoc_jspan *obj, const char *key,
                     struct apidoc_jspan *val);

/* The members of a scanned object in one pass: up to max are stored in
 * out; returns how many there are. */
struct apidoc_jmember {
    struct apidoc_jspan key, val;
};
size_t apidoc_json_members(const struct apidoc_jspan *obj, struct apidoc_jmember *out,
                           size_t max);

/* A request document located by the scanner.  Spans point into the
 * request body, which lives as long as the request; absent members have
 * type AJ_NONE.  The attributes' members come located (a handler need
 * not step over a 20 KB exp_data again to find the next one). */
#define APIDOC_DOC_MAX_MEMBERS 64
struct apidoc_doc {
    struct apidoc_jspan data;
    struct apidoc_jspan attributes;
    struct apidoc_jspan relationships;
    const char *big_number;    /* see apidoc_json_scan */
    struct apidoc_jmember attr[APIDOC_DOC_MAX_MEMBERS];  /* attributes' members */
    size_t nattr;                                        /* entries in attr */
};

/* jsonapi_parse_request for the scanner: the same checks, statuses and
 * messages (415, 400 parse_error, 409 type, id missing 400 / different
 * 409, attributes and relationships objects), plus 400 on a member name
 * repeated in the document, data, attributes or relationships objects. */
int apidoc_parse_request(struct http_req *req, const char *want_type, const char *want_id,
                         struct apidoc_doc *doc, struct jsonapi_error *e);

/* jsonapi_rel_id for the scanner: 1 and the id (a uuid in any case,
 * copied lowercase) when relationships.<name> is well formed, 0 when it
 * is absent, -1 with e (409 wrong type, 400 malformed or not a uuid). */
int apidoc_rel_uuid(const struct apidoc_doc *doc, const char *name, const char *want_type,
                    char out[37], struct jsonapi_error *e);

/* A PostgreSQL boolean cell. */
bool apidoc_bool(const PGresult *res, int row, int col);

#endif
