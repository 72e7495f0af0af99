/* studies: GET /api/v1/studies/ and /api/v1/studies/{id}/.  One query per
 * request, visibility included (sql/003_responses.sql study_visible); the
 * attributes object comes from PostgreSQL as JSON text and is spliced into
 * the document as is, so the detail (a benchmarked hot path) allocates one
 * output buffer and parses nothing.
 *
 * The detail of an active study (what every runner session asks first) is
 * the same for every requester, so its document is cached in process and
 * served without PostgreSQL.  The studies_changed notification (sql/004)
 * evicts it; while notifications are not flowing the cache is bypassed. */
#include "studyhub/domain/studies.h"

#include <event2/buffer.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/cache.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/io/pg.h"

/* $1 is the research id (apidoc_research_id): the caller's id when
 * two-factor verified, else NULL, so a study that is not active (a shared
 * preview) is seen only by a verified researcher.
 *
 * $1 research id, $2 study uuid, $3 base URL.  The active test comes first
 * so the common case never evaluates a permission. */
static const struct pg_stmt studies_get_stmt = {
    "studies_get",
    "SELECT s.uuid, study_attrs(s, $3), s.state FROM studies s"
    " WHERE s.uuid = $2::uuid"
    "   AND (s.state = 'active'"
    "        OR study_visible($1, s.id, s.state, s.public, s.shared_preview, false))",
};

/* $1 research id, $2 limit, $3 offset, $4 base URL.  Always one row: the count,
 * then the page's columns (NULL when the page is empty). */
static const struct pg_stmt studies_list_stmt = {
    "studies_list",
    "WITH vis AS ("
    "  SELECT s.id, s.date_modified FROM studies s"
    "   WHERE study_visible($1, s.id, s.state, s.public, s.shared_preview, true))"
    " SELECT (SELECT count(*) FROM vis), p.uuid, p.attrs"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT s.uuid, study_attrs(s, $4) AS attrs, v.date_modified, v.id"
    "       FROM (SELECT id, date_modified FROM vis"
    "              ORDER BY date_modified DESC, id DESC LIMIT $2 OFFSET $3) v"
    "       JOIN studies s ON s.id = v.id) p ON true"
    "  ORDER BY p.date_modified DESC, p.id DESC",
};

/* One resource object from (uuid, attrs) at row/col. */
static void render_study(struct apidoc *d, const PGresult *res, int row, int col)
{
    const char *uuid = PQgetvalue(res, row, col);

    apidoc_printf(d, "{\"type\":\"studies\",\"id\":\"%s\",\"attributes\":", uuid);
    apidoc_addn(d, PQgetvalue(res, row, col + 1), (size_t)PQgetlength(res, row, col + 1));
    apidoc_printf(d,
                  ",\"relationships\":{\"responses\":{\"links\":{\"related\":"
                  "\"%s/api/v1/studies/%s/responses/\"}}},"
                  "\"links\":{\"self\":\"%s/api/v1/studies/%s/\"}}",
                  d->base, uuid, d->base, uuid);
}

static void reply_not_found(struct http_req *req)
{
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
}

/* Active study documents by uuid, as ready bytes with their ETag; the
 * value is "<base URL>\0<ETag>\0<document>" because links in the document
 * depend on the base URL. */
static struct cache *study_docs;            /* owned; NULL when off */
static struct pg_pool *study_docs_pg;       /* borrowed: is it listening? */

#define STUDY_DOCS_MAX 4096
#define STUDY_DOCS_TTL_S 300
#define STUDY_ETAG_LEN 18                   /* '"' 16 hex '"' */

static void study_docs_notified(const char *channel, const char *payload, void *arg)
{
    if (!study_docs)
        return;
    if (payload)
        cache_del(study_docs, payload);
    else
        cache_clear(study_docs);
}

int studies_cache_start(struct pg_pool *pg)
{
    study_docs = cache_new(STUDY_DOCS_MAX, STUDY_DOCS_TTL_S);
    if (!study_docs)
        return -1;
    study_docs_pg = pg;
    if (pg_pool_listen(pg, "studies_changed", study_docs_notified, NULL) < 0) {
        cache_free(study_docs);
        study_docs = NULL;
        return -1;
    }
    return 0;
}

void studies_cache_stop(void)
{
    cache_free(study_docs);
    study_docs = NULL;
    study_docs_pg = NULL;
}

static bool study_docs_usable(void)
{
    return study_docs && pg_pool_listening(study_docs_pg);
}

/* A strong ETag of the document's bytes: any edit of the study changes
 * its attributes, so its tag. */
static void study_etag(const char *doc, size_t len, char out[STUDY_ETAG_LEN + 1])
{
    char hex[65];

    util_sha256_hex(doc, len, hex);
    snprintf(out, STUDY_ETAG_LEN + 1, "\"%.16s\"", hex);
}

/* The document with its ETag: 304 when If-None-Match names it. */
static void study_reply(struct http_req *req, const char *etag, const char *doc, size_t len)
{
    http_add_header(req, "ETag", etag);
    if (static_etag_matches(http_req_header(req, "If-None-Match"), etag))
        http_reply(req, 304, NULL, NULL, 0);
    else
        http_reply(req, 200, JSONAPI_MEDIA_TYPE, doc, len);
}

/* Serves the cached document; false on a miss. */
static bool study_docs_serve(struct http_req *req, const char *uuid)
{
    size_t len;
    const char *v = NULL;

    if (study_docs_usable()) {
        pg_pool_poll_notifies(study_docs_pg);
        v = cache_get(study_docs, uuid, &len);
    }
    if (!v)
        return false;
    const char *base = http_req_base_url(req);
    size_t blen = strlen(base), head = blen + 1 + STUDY_ETAG_LEN + 1;

    if (len < head || memcmp(v, base, blen + 1) != 0)
        return false;
    study_reply(req, v + blen + 1, v + head, len - head);
    return true;
}

static void study_docs_store(struct http_req *req, uint64_t ticket, const char *uuid,
                             const char *etag, const char *doc, size_t dlen)
{
    const char *base = http_req_base_url(req);
    size_t blen = strlen(base), head = blen + 1 + STUDY_ETAG_LEN + 1;
    char *v = malloc(head + dlen);

    if (!v)
        return;
    memcpy(v, base, blen + 1);
    memcpy(v + blen + 1, etag, STUDY_ETAG_LEN + 1);
    memcpy(v + head, doc, dlen);
    cache_put(study_docs, ticket, uuid, v, head + dlen);
    free(v);
}

/* What a miss carries to its query's callback. */
struct study_get_ctx {
    struct http_req *req;   /* borrowed until answered */
    uint64_t ticket;        /* cache generation before the query */
    bool cacheable;         /* notifications were flowing at the start */
};

static void study_got(PGresult *res, void *arg)
{
    struct study_get_ctx *ctx = arg;
    struct http_req *req = ctx->req;
    uint64_t ticket = ctx->ticket;
    bool cacheable = ctx->cacheable;
    struct apidoc d;

    free(ctx);

    if (apidoc_db_failed(req, res, "studies_get"))
        return;
    if (PQntuples(res) != 1) {
        reply_not_found(req);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_study(&d, res, 0, 0);
    apidoc_add(&d, "}");
    size_t dlen = evbuffer_get_length(d.buf);
    const char *doc = d.failed ? NULL : (const char *)evbuffer_pullup(d.buf, -1);
    if (!doc) {
        apidoc_cleanup(&d);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    char etag[STUDY_ETAG_LEN + 1];
    study_etag(doc, dlen, etag);
    /* Only an active study looks the same to everyone who may see it. */
    if (cacheable && study_docs_usable() && strcmp(PQgetvalue(res, 0, 2), "active") == 0)
        study_docs_store(req, ticket, PQgetvalue(res, 0, 0), etag, doc, dlen);
    study_reply(req, etag, doc, dlen);
    apidoc_cleanup(&d);
}

static void study_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24];

    /* Not a uuid cannot name a study: 404 without asking PostgreSQL. */
    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    if (study_docs_serve(req, id))
        return;
    struct study_get_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    ctx->req = req;
    ctx->cacheable = study_docs_usable();
    ctx->ticket = ctx->cacheable ? cache_ticket(study_docs) : 0;
    const char *params[] = { apidoc_research_id(req, uid), id, http_req_base_url(req) };
    if (pg_exec(app->pg, &studies_get_stmt, 3, params, study_got, ctx) < 0) {
        free(ctx);
        jsonapi_reply_unavailable(req, "Database");
    }
}

static void studies_listed(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "studies_list", 1, render_study);
}

static void studies_list(struct http_req *req, struct app *app)
{
    char uid[24], limit[24], offset[24];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { apidoc_research_id(req, uid), limit, offset,
                             http_req_base_url(req) };
    if (pg_exec(app->pg, &studies_list_stmt, 4, params, studies_listed, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static const struct route studies_route_table[] = {
    { HTTP_GET, "/api/v1/studies/", studies_list, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/studies/{id}/", study_get, ROUTE_FAMILY },
};

int studies_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, studies_route_table);
}
