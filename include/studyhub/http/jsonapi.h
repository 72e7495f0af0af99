/* jsonapi: JSON:API documents for the upstream-compatible API: resources,
 * error objects, request-document checks and page-number pagination. */
#ifndef STUDYHUB_HTTP_JSONAPI_H
#define STUDYHUB_HTTP_JSONAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct http_req;

#define JSONAPI_MEDIA_TYPE "application/vnd.api+json"
#define JSONAPI_PAGE_SIZE_DEFAULT 10
#define JSONAPI_PAGE_SIZE_MAX 100

/* One error object.  pointer may be NULL (404s carry no source). */
struct jsonapi_error {
    int status;
    const char *code;      /* static: "parse_error", "required", "invalid", ... */
    char detail[256];
    char pointer[128];     /* "" when none */
};

void jsonapi_error_set(struct jsonapi_error *e, int status, const char *code,
                       const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* {"errors":[{...}]} as a new reference. */
json_t *jsonapi_error_doc(const struct jsonapi_error *e);

/* Replies with an error document (and WWW-Authenticate on 401). */
void jsonapi_reply_error(struct http_req *req, const struct jsonapi_error *e);
void jsonapi_reply_errorf(struct http_req *req, int status, const char *code,
                          const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Replies with doc (steals the reference) in application/vnd.api+json. */
void jsonapi_reply(struct http_req *req, int status, json_t *doc);

/* The usual 503 when PostgreSQL or Redis cannot be reached. */
void jsonapi_reply_unavailable(struct http_req *req, const char *what);

/* {"type","id","attributes","relationships"?,"links":{"self"}}.
 * Steals attributes and relationships (which may be NULL). */
json_t *jsonapi_resource(const char *type, const char *id, json_t *attributes,
                         json_t *relationships, const char *self_url);
/* {"links":{"related":url}} and {"data":{type,id},"links":{"related":url}} */
json_t *jsonapi_rel_link(const char *related_url);
json_t *jsonapi_rel_data(const char *type, const char *id, const char *related_url);

/* Checks a request document: Content-Type, valid JSON object, "data"
 * object, data.type == want_type (409), and when want_id is given,
 * data.id present (400) and equal (409).  On success *data is a new
 * reference to the data member. */
/* application/vnd.api+json, optionally with parameters; plain JSON is
 * accepted too, as the upstream parser list does. */
bool jsonapi_content_type_ok(const char *ct);

int jsonapi_parse_request(struct http_req *req, const char *want_type,
                          const char *want_id, json_t **data,
                          struct jsonapi_error *e);

/* Relationship id: data.relationships.<name>.data.{type,id}.  Returns 1 and
 * *id when present and well formed, 0 when absent, -1 with e on a bad one
 * (wrong type 409, malformed 400). */
int jsonapi_rel_id(json_t *data, const char *name, const char *want_type,
                   const char **id, struct jsonapi_error *e);

/* Page-number pagination: ?page= (default 1) and ?page_size= (default 10,
 * at most 100).  A malformed value is a 400; page beyond the last is a 404
 * (checked by jsonapi_page_links once count is known). */
struct jsonapi_page {
    long page;
    long size;
};
int jsonapi_page_parse(struct http_req *req, struct jsonapi_page *p,
                       struct jsonapi_error *e);
long jsonapi_page_offset(const struct jsonapi_page *p);
/* The request's page as LIMIT and OFFSET texts for a list query; false
 * after replying 400 when ?page or ?page_size is malformed. */
bool jsonapi_page_sql(struct http_req *req, char limit[24], char offset[24]);
/* The "links" object {first,last,next,prev,meta{page,pages,count}} with
 * absolute URLs of this request, query keys sorted, page replaced.
 * Returns NULL with a 404 in e when page > pages. */
json_t *jsonapi_page_links(struct http_req *req, const struct jsonapi_page *p,
                           long count, struct jsonapi_error *e);

/* Canonical lowercase hyphenated uuid check. */
bool jsonapi_is_uuid(const char *s);

/* Builds "base/api/v1/<fmt>" into buf; returns buf. */
const char *jsonapi_url(struct http_req *req, char *buf, size_t len,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
