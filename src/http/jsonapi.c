/* jsonapi: the document shapes of the upstream API (Django REST framework
 * JSON:API 7.1): resources with uuid ids and absolute links, error objects
 * with a string status, and page-number pagination with links.meta. */
#include "studyhub/http/jsonapi.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/http/server.h"

void jsonapi_error_set(struct jsonapi_error *e, int status, const char *code,
                       const char *pointer, const char *fmt, ...)
{
    va_list ap;
    e->status = status;
    e->code = code;
    snprintf(e->pointer, sizeof e->pointer, "%s", pointer ? pointer : "");
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof e->detail, fmt, ap);
    va_end(ap);
}

json_t *jsonapi_error_doc(const struct jsonapi_error *e)
{
    char status[8];
    snprintf(status, sizeof status, "%d", e->status);
    json_t *err = json_pack("{s:s, s:s, s:s}", "detail", e->detail, "status", status,
                            "code", e->code ? e->code : "error");
    if (err && e->pointer[0])
        json_object_set_new(err, "source", json_pack("{s:s}", "pointer", e->pointer));
    return json_pack("{s:[o]}", "errors", err);
}

void jsonapi_reply(struct http_req *req, int status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        static const char oom[] =
            "{\"errors\":[{\"detail\":\"Out of memory.\",\"status\":\"503\",\"code\":\"unavailable\"}]}";
        http_reply(req, 503, JSONAPI_MEDIA_TYPE, oom, sizeof oom - 1);
        return;
    }
    http_reply(req, status, JSONAPI_MEDIA_TYPE, text, strlen(text));
    free(text);
}

void jsonapi_reply_error(struct http_req *req, const struct jsonapi_error *e)
{
    /* The API's scheme, unless the route asked for another (/metrics). */
    if (e->status == 401 && !http_reply_header(req, "WWW-Authenticate"))
        http_add_header(req, "WWW-Authenticate", "Token");
    jsonapi_reply(req, e->status, jsonapi_error_doc(e));
}

void jsonapi_reply_errorf(struct http_req *req, int status, const char *code,
                          const char *pointer, const char *fmt, ...)
{
    struct jsonapi_error e = { .status = status, .code = code };
    va_list ap;
    snprintf(e.pointer, sizeof e.pointer, "%s", pointer ? pointer : "");
    va_start(ap, fmt);
    vsnprintf(e.detail, sizeof e.detail, fmt, ap);
    va_end(ap);
    jsonapi_reply_error(req, &e);
}

void jsonapi_reply_unavailable(struct http_req *req, const char *what)
{
    http_add_header(req, "Retry-After", "1");
    jsonapi_reply_errorf(req, 503, "unavailable", NULL,
                         "%s is unavailable; try again shortly.", what);
}

json_t *jsonapi_resource(const char *type, const char *id, json_t *attributes,
                         json_t *relationships, const char *self_url)
{
    json_t *r = json_object();
    json_object_set_new(r, "type", json_string(type));
    json_object_set_new(r, "id", json_string(id));
    json_object_set_new(r, "attributes", attributes ? attributes : json_object());
    if (relationships)
        json_object_set_new(r, "relationships", relationships);
    if (self_url)
        json_object_set_new(r, "links", json_pack("{s:s}", "self", self_url));
    return r;
}

json_t *jsonapi_rel_link(const char *related_url)
{
    return json_pack("{s:{s:s?}}", "links", "related", related_url);
}

json_t *jsonapi_rel_data(const char *type, const char *id, const char *related_url)
{
    return json_pack("{s:{s:s?}, s:{s:s, s:s}}", "links", "related", related_url,
                     "data", "type", type, "id", id);
}

bool jsonapi_content_type_ok(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n && isspace((unsigned char)ct[n - 1]))
        n--;
    return (n == strlen(JSONAPI_MEDIA_TYPE) && strncasecmp(ct, JSONAPI_MEDIA_TYPE, n) == 0) ||
           (n == 16 && strncasecmp(ct, "application/json", n) == 0);
}

int jsonapi_parse_request(struct http_req *req, const char *want_type,
                          const char *want_id, json_t **data,
                          struct jsonapi_error *e)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    json_t *doc, *d, *type, *id;

    *data = NULL;
    if (!jsonapi_content_type_ok(http_req_header(req, "Content-Type"))) {
        jsonapi_error_set(e, 415, "unsupported_media_type", "/data",
                          "Unsupported media type in request; use %s.", JSONAPI_MEDIA_TYPE);
        return -1;
    }
    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        jsonapi_error_set(e, 400, "parse_error", "/data", "JSON parse error - %s",
                          jerr.text);
        return -1;
    }
    d = json_is_object(doc) ? json_object_get(doc, "data") : NULL;
    if (!json_is_object(d)) {
        jsonapi_error_set(e, 400, "parse_error", "/data",
                          "Received document does not contain primary data");
        goto fail;
    }
    type = json_object_get(d, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), want_type) != 0) {
        jsonapi_error_set(e, 409, "error", "/data",
                          "The resource object's type (%s) is not the type that constitute the collection represented by the endpoint (%s).",
                          json_is_string(type) ? json_string_value(type) : "none", want_type);
        goto fail;
    }
    if (want_id) {
        id = json_object_get(d, "id");
        if (!id) {
            jsonapi_error_set(e, 400, "parse_error", "/data",
                              "The resource identifier object must contain an 'id' member");
            goto fail;
        }
        if (!json_is_string(id) || strcmp(json_string_value(id), want_id) != 0) {
            jsonapi_error_set(e, 409, "error", "/data",
                              "The resource object's id does not match the id in the URL.");
            goto fail;
        }
    }
    json_t *attrs = json_object_get(d, "attributes");
    if (attrs && !json_is_object(attrs)) {
        jsonapi_error_set(e, 400, "parse_error", "/data/attributes",
                          "attributes must be an object");
        goto fail;
    }
    json_t *rels = json_object_get(d, "relationships");
    if (rels && !json_is_object(rels)) {
        jsonapi_error_set(e, 400, "parse_error", "/data/relationships",
                          "relationships must be an object");
        goto fail;
    }
    *data = json_incref(d);
    json_decref(doc);
    return 0;
fail:
    json_decref(doc);
    return -1;
}

int jsonapi_rel_id(json_t *data, const char *name, const char *want_type,
                   const char **id, struct jsonapi_error *e)
{
    json_t *rels = json_object_get(data, "relationships");
    json_t *rel = rels ? json_object_get(rels, name) : NULL;
    char pointer[96];

    *id = NULL;
    if (!rel)
        return 0;
    snprintf(pointer, sizeof pointer, "/data/relationships/%s", name);
    json_t *d = json_is_object(rel) ? json_object_get(rel, "data") : NULL;
    if (!json_is_object(d)) {
        jsonapi_error_set(e, 400, "invalid", pointer,
                          "Invalid relationship: expected a resource identifier object.");
        return -1;
    }
    json_t *type = json_object_get(d, "type"), *idv = json_object_get(d, "id");
    if (!json_is_string(type) || !json_is_string(idv)) {
        jsonapi_error_set(e, 400, "invalid", pointer,
                          "Invalid resource identifier object: missing 'type' or 'id'.");
        return -1;
    }
    if (strcmp(json_string_value(type), want_type) != 0) {
        jsonapi_error_set(e, 409, "error", pointer,
                          "Incorrect relation type. Expected %s, received %s.", want_type,
                          json_string_value(type));
        return -1;
    }
    *id = json_string_value(idv);
    return 1;
}

/* A positive integer, all digits. */
static int parse_positive(const char *s, long *out)
{
    char *end;
    if (!s || !*s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1)
        return -1;
    *out = v;
    return 0;
}

int jsonapi_page_parse(struct http_req *req, struct jsonapi_page *p,
                       struct jsonapi_error *e)
{
    const char *page = http_req_query(req, "page");
    const char *size = http_req_query(req, "page_size");

    p->page = 1;
    p->size = JSONAPI_PAGE_SIZE_DEFAULT;
    if (page && parse_positive(page, &p->page) < 0) {
        jsonapi_error_set(e, 404, "not_found", NULL, "Invalid page.");
        return -1;
    }
    if (size) {
        if (parse_positive(size, &p->size) < 0) {
            jsonapi_error_set(e, 400, "invalid", NULL,
                              "page_size must be a positive integer.");
            return -1;
        }
        /* As upstream (max_page_size): a larger size is capped, not refused. */
        if (p->size > JSONAPI_PAGE_SIZE_MAX)
            p->size = JSONAPI_PAGE_SIZE_MAX;
    }
    /* Bound the offset so LIMIT/OFFSET arithmetic cannot overflow. */
    if (p->page > 100000000L) {
        jsonapi_error_set(e, 404, "not_found", NULL, "Invalid page.");
        return -1;
    }
    return 0;
}

long jsonapi_page_offset(const struct jsonapi_page *p)
{
    return (p->page - 1) * p->size;
}

bool jsonapi_page_sql(struct http_req *req, char limit[24], char offset[24])
{
    struct jsonapi_page page;
    struct jsonapi_error e;

    if (jsonapi_page_parse(req, &page, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return false;
    }
    snprintf(limit, 24, "%ld", page.size);
    snprintf(offset, 24, "%ld", jsonapi_page_offset(&page));
    return true;
}

struct query_pair {
    char *key;     /* owned, raw (still percent-encoded) */
    char *value;   /* owned, raw */
};

static int pair_cmp(const void *a, const void *b)
{
    const struct query_pair *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

/* Absolute URL of this request with ?page=N, other keys kept, sorted. */
static char *page_url(struct http_req *req, long page)
{
    const char *qs = http_req_query_string(req);
    struct query_pair pairs[32];
    size_t n = 0;
    char *copy = strdup(qs), *save = NULL, *tok;
    char pagebuf[32];

    if (!copy)
        return NULL;
    for (tok = strtok_r(copy, "&", &save); tok && n < 31; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        if (strcmp(tok, "page") == 0)
            continue;
        pairs[n].key = tok;
        pairs[n].value = eq ? eq + 1 : (char *)"";
        n++;
    }
    snprintf(pagebuf, sizeof pagebuf, "%ld", page);
    pairs[n].key = (char *)"page";
    pairs[n].value = pagebuf;
    n++;
    qsort(pairs, n, sizeof pairs[0], pair_cmp);

    size_t cap = strlen(http_req_base_url(req)) + strlen(http_req_path(req)) + strlen(qs) + 64;
    char *url = malloc(cap);
    if (url) {
        size_t used = (size_t)snprintf(url, cap, "%s%s", http_req_base_url(req),
                                       http_req_path(req));
        for (size_t i = 0; i < n && used < cap; i++)
            used += (size_t)snprintf(url + used, cap - used, "%c%s=%s", i ? '&' : '?',
                                     pairs[i].key, pairs[i].value);
    }
    free(copy);
    return url;
}

json_t *jsonapi_page_links(struct http_req *req, const struct jsonapi_page *p,
                           long count, struct jsonapi_error *e)
{
    long pages = count <= 0 ? 1 : (count + p->size - 1) / p->size;
    char *first, *last, *next = NULL, *prev = NULL;
    json_t *links;

    if (p->page > pages) {
        jsonapi_error_set(e, 404, "not_found", NULL, "Invalid page.");
        return NULL;
    }
    first = page_url(req, 1);
    last = page_url(req, pages);
    if (p->page < pages)
        next = page_url(req, p->page + 1);
    if (p->page > 1)
        prev = page_url(req, p->page - 1);
    links = json_pack("{s:s?, s:s?, s:s?, s:s?, s:{s:I, s:I, s:I}}",
                      "first", first, "last", last, "next", next, "prev", prev,
                      "meta", "page", (json_int_t)p->page, "pages", (json_int_t)pages,
                      "count", (json_int_t)count);
    free(first);
    free(last);
    free(next);
    free(prev);
    if (!links)
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
    return links;
}

bool jsonapi_is_uuid(const char *s)
{
    /* Lowercase hex only, as uuid's text is.  By table (each character's
     * class against the class its place wants): every runner page and
     * asset checks two or three. */
    enum { OTHER, HEX, DASH };
    static const unsigned char class_of[256] = {
        ['0'] = HEX, ['1'] = HEX, ['2'] = HEX, ['3'] = HEX, ['4'] = HEX, ['5'] = HEX,
        ['6'] = HEX, ['7'] = HEX, ['8'] = HEX, ['9'] = HEX, ['a'] = HEX, ['b'] = HEX,
        ['c'] = HEX, ['d'] = HEX, ['e'] = HEX, ['f'] = HEX, ['-'] = DASH,
    };
    static const unsigned char want[36] = {
        HEX, HEX, HEX, HEX, HEX, HEX, HEX, HEX, DASH, HEX, HEX, HEX, HEX, DASH,
        HEX, HEX, HEX, HEX, DASH, HEX, HEX, HEX, HEX, DASH, HEX, HEX, HEX, HEX,
        HEX, HEX, HEX, HEX, HEX, HEX, HEX, HEX,
    };
    const unsigned char *u = (const unsigned char *)s;
    unsigned bad = 0;

    if (!s || strnlen(s, 37) != 36)
        return false;
    for (int i = 0; i < 36; i++)
        bad |= class_of[u[i]] ^ want[i];
    return !bad;
}

const char *jsonapi_url(struct http_req *req, char *buf, size_t len,
                        const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, len, "%s/api/v1/", http_req_base_url(req));
    if (n < 0 || (size_t)n >= len)
        return buf;
    va_start(ap, fmt);
    vsnprintf(buf + n, len - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}
