/* videos: webcam video coming in (Pipe's webhook, the upload Lambda) and
 * researchers watching it (presigned links, the file:// link server), plus
 * the endpoint that queues a zip of a study's videos.  See
 * include/studyhub/domain/videos.h for the routes and the decisions. */
#include "config.h"

#include "studyhub/domain/videos.h"
#include "studyhub/domain/videos_internal.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/task.h"
#include "studyhub/core/util.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/sigv4.h"
#include "studyhub/io/storage.h"

/* ============================ names ============================================ */

bool is_alnum_run(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]))
            return false;
    return true;
}

static const char *last_of(const char *start, const char *end, char c)
{
    while (end > start) {
        end--;
        if (*end == c)
            return end;
    }
    return NULL;
}

static bool uuid_at(const char *p, char out[37])
{
    char tmp[37];
    memcpy(tmp, p, 36);
    tmp[36] = '\0';
    return apidoc_uuid_copy(tmp, out);
}

static int name_err(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int name_err(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

int videos_parse_name(const char *name, bool has_ext, struct videos_name *out,
                      char *err, size_t errlen)
{
    const char *p = name, *end, *u_rand, *u_ms, *u_resp, *u_study;

    memset(out, 0, sizeof *out);
    if (strncmp(p, "consent-", 8) == 0) {
        out->consent = true;
        p += 8;
    }
    end = p + strlen(p);
    if (has_ext) {
        const char *dot = last_of(p, end, '.');
        const char *us = last_of(p, end, '_');
        if (!dot || !us || dot < us || !is_alnum_run(dot + 1, (size_t)(end - dot - 1), 10))
            return name_err(err, errlen, "no .<extension> after the last part");
        end = dot;
    }
    /* From the right: _<rand>, _<ms>, _<response uuid>. */
    if (!(u_rand = last_of(p, end, '_')) || !is_alnum_run(u_rand + 1, (size_t)(end - u_rand - 1), 64))
        return name_err(err, errlen, "the last part must be letters and digits");
    if (!(u_ms = last_of(p, u_rand, '_')) || u_rand - u_ms - 1 < 1 || u_rand - u_ms - 1 > 15)
        return name_err(err, errlen, "no millisecond timestamp before the last part");
    for (const char *q = u_ms + 1; q < u_rand; q++)
        if (!isdigit((unsigned char)*q))
            return name_err(err, errlen, "the timestamp part is not a number");
    out->ms = strtoll(u_ms + 1, NULL, 10);
    if (u_ms - p < 36 + 1 || u_ms[-37] != '_' || !uuid_at(u_ms - 36, out->response))
        return name_err(err, errlen, "no response uuid before the timestamp");
    u_resp = u_ms - 37;
    /* From the left: <prefix>_<study uuid>_. */
    u_study = memchr(p, '_', (size_t)(end - p));
    if (!u_study || u_study == p)
        return name_err(err, errlen, "no prefix before the study uuid");
    for (const char *q = p; q < u_study; q++)
        if (!isalnum((unsigned char)*q) && *q != '-')
            return name_err(err, errlen, "the prefix must be letters, digits and '-'");
    if (u_resp - u_study < 38 || u_study[37] != '_' || !uuid_at(u_study + 1, out->study))
        return name_err(err, errlen, "no study uuid after the prefix");
    const char *frame = u_study + 38;
    size_t flen = (size_t)(u_resp - frame);
    if (u_resp < frame || flen == 0)
        return name_err(err, errlen, "no frame id between the study and the response");
    if (flen > VIDEOS_FRAME_MAX)
        return name_err(err, errlen, "the frame id is longer than %d bytes", VIDEOS_FRAME_MAX);
    for (size_t i = 0; i < flen; i++)
        if ((unsigned char)frame[i] < 0x20 || frame[i] == 0x7f || frame[i] == '/' ||
            frame[i] == '\\')
            return name_err(err, errlen, "the frame id has a control character or a slash");
    memcpy(out->frame, frame, flen);
    out->frame[flen] = '\0';
    return 0;
}

/* ============================ storage from the configuration =================== */

struct storage *videos_storage_new(struct app *app, int port, char *err, size_t errlen)
{
    const struct config *c = app->cfg;
    char base[320], secret[65];
    const char *e = NULL;

    if (c->base_url && *c->base_url)
        snprintf(base, sizeof base, "%s", c->base_url);
    else if (strchr(c->listen_addr, ':'))
        snprintf(base, sizeof base, "http://[%s]:%d", c->listen_addr, port);
    else
        snprintf(base, sizeof base, "http://%s:%d", c->listen_addr, port);
    if (c->storage_link_secret && *c->storage_link_secret) {
        snprintf(secret, sizeof secret, "%s", c->storage_link_secret);
    } else {
        /* Derived from the key every instance must share anyway (two-factor
         * secrets are sealed with it), under a label of its own: a link
         * signed by one server works on every other, and after a restart. */
        static const char label[] = "studyhub storage links v1";
        unsigned char mac[32];
        unsigned int maclen = 0;

        if (!c->totp_key_set ||
            !HMAC(EVP_sha256(), c->totp_key, sizeof c->totp_key,
                  (const unsigned char *)label, sizeof label - 1, mac, &maclen)) {
            util_random_hex(32, secret);
            log_warn("no STORAGE_LINK_SECRET nor TOTP_SECRET_KEY: file:// download links "
                     "are signed with a random key of this process");
        } else {
            util_hex(mac, maclen, secret);
        }
        OPENSSL_cleanse(mac, sizeof mac);
    }
    struct storage_config sc = {
        .url = c->storage_url,
        .endpoint = c->s3_endpoint && *c->s3_endpoint ? c->s3_endpoint : NULL,
        .region = c->s3_region && *c->s3_region ? c->s3_region : NULL,
        .access_key = c->s3_access_key_id,
        .secret_key = c->s3_secret_access_key,
        .path_style = c->s3_path_style,
        .public_base = base,
        .link_secret = secret,
        .fsync = c->storage_fsync,
    };
    struct storage *st = storage_new(app->base, app->fetch, &sc, &e);
    OPENSSL_cleanse(secret, sizeof secret);
    if (!st) {
        snprintf(err, errlen, "storage %s: %s", c->storage_url, e ? e : "out of memory");
        return NULL;
    }
    if (app->http && strcmp(storage_backend(st), "file") != 0 &&
        videos_media_origin(app, st) < 0)
        log_warn("the pages cannot play videos from %s (no media-src for it)", c->storage_url);
    return st;
}

int videos_media_origin(struct app *app, struct storage *st)
{
    const char *why = NULL;
    /* The origin of a presigned link, whatever the backend's addressing
     * (virtual-hosted or path-style, S3 or GCS): its scheme://host[:port]. */
    char *url = storage_presign_get(st, "media-src-probe", 60, time(NULL), NULL, &why);
    int rc = -1;

    if (url) {
        char *sep = strstr(url, "://");
        if (sep) {
            char *end = sep + 3 + strcspn(sep + 3, "/?#");
            *end = '\0';
            rc = http_server_set_media_origin(app->http, url);
        }
    }
    free(url);
    return rc;
}

/* ============================ shared statements ================================ */

/* Records a video.  $1 study uuid, $2 response uuid, $3 frame id, $4
 * full_name, $5 pipe_name, $6 pipe_numeric_id, $7 upload time in ms or
 * NULL, $8 time text (video_parse_time) or NULL, $9 consent flag given.
 * The response row is locked FOR SHARE, so a PATCH of its exp_data
 * commits wholly before (we see the consent frame) or after (its trigger
 * sees this video): upstream #598.  One row: (verdict, uuid, attrs,
 * study uuid, response uuid), verdict created, exists (the same video:
 * idempotent), conflict (the name belongs to another response),
 * no_study or no_response.  No row: a concurrent insert we cannot see
 * yet (run it again). */
const struct pg_stmt video_record_stmt = {
    "video_record",
    "WITH r AS (SELECT r.id, r.study_id, r.exp_data FROM responses r"
    "           JOIN studies s ON s.id = r.study_id"
    "           WHERE r.uuid = $2::uuid AND s.uuid = $1::uuid FOR SHARE OF r),"
    " ins AS (INSERT INTO videos AS v (study_id, response_id, frame_id, full_name,"
    "           pipe_name, pipe_numeric_id, s3_timestamp, is_consent_footage)"
    "         SELECT r.study_id, r.id, $3, $4, $5, $6::bigint,"
    "                coalesce(to_timestamp($7::bigint / 1000.0), video_parse_time($8)),"
    "                $9::boolean OR exp_data_consent_frame(r.exp_data, $3)"
    "           FROM r ON CONFLICT DO NOTHING RETURNING v)"
    " SELECT 'created', (ins.v).uuid, video_attrs(ins.v), $1::text, $2::text FROM ins"
    " UNION ALL"
    " SELECT CASE WHEN v.study_id = r.study_id AND v.response_id = r.id"
    "             AND v.full_name = $4 THEN 'exists' ELSE 'conflict' END,"
    "        v.uuid, video_attrs(v), $1::text, $2::text"
    "   FROM r JOIN videos v ON v.full_name = $4 OR v.pipe_name = $5"
    "  WHERE NOT EXISTS (SELECT 1 FROM ins)"
    " UNION ALL"
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM studies WHERE uuid = $1::uuid)"
    "             THEN 'no_response' ELSE 'no_study' END, NULL, NULL, NULL, NULL"
    "  WHERE NOT EXISTS (SELECT 1 FROM r)",
};

/* ============================ rendering ======================================== */

static void add_json_string(struct apidoc *d, const char *s)
{
    json_t *j = json_string(s);
    if (!j) {
        d->failed = true;
        return;
    }
    apidoc_json(d, j);
    json_decref(j);
}

/* A videos resource from (uuid, attrs, study uuid, response uuid) at col;
 * with a presigned url (10 minutes) when app is given. */
static void render_video(struct apidoc *d, struct app *app, const PGresult *res, int row,
                         int col, time_t now)
{
#define V(k) PQgetvalue(res, row, col + (k))
    const char *uuid = V(0), *attrs = V(1), *study = V(2), *resp = V(3);
    size_t alen = (size_t)PQgetlength(res, row, col + 1);

    apidoc_printf(d, "{\"type\":\"videos\",\"id\":\"%s\",\"attributes\":", uuid);
    if (app && alen > 2 && attrs[alen - 1] == '}') {
        /* Append url and its expiry inside the attributes object. */
        json_t *a = json_loadb(attrs, alen, 0, NULL);
        const char *full = json_string_value(json_object_get(a, "full_name"));
        const char *why = NULL;
        char *url = full ? storage_presign_get(app->storage, full, VIDEOS_URL_TTL_S, now,
                                               NULL, &why)
                         : NULL;
        char exp[32];
        time_t t = now + VIDEOS_URL_TTL_S;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        apidoc_addn(d, attrs, alen - 1);
        apidoc_add(d, ",\"url\":");
        if (url)
            add_json_string(d, url);
        else
            apidoc_add(d, "null");
        apidoc_printf(d, ",\"url_expires\":\"%s\"}", exp);
        if (!url)
            log_warn("videos: cannot presign %s: %s", full ? full : "?", why ? why : "?");
        free(url);
        json_decref(a);
    } else {
        apidoc_addn(d, attrs, alen);
    }
    apidoc_printf(d,
                  ",\"relationships\":{\"study\":{\"links\":{\"related\":"
                  "\"%s/api/v1/studies/%s/\"},\"data\":{\"type\":\"studies\",\"id\":\"%s\"}},"
                  "\"response\":{\"links\":{\"related\":\"%s/api/v1/responses/%s/\"},"
                  "\"data\":{\"type\":\"responses\",\"id\":\"%s\"}}},"
                  "\"links\":{\"self\":\"%s/api/v1/videos/%s/\"}}",
                  d->base, study, study, d->base, resp, resp, d->base, uuid);
#undef V
}

void reply_video(struct http_req *req, struct app *app, const PGresult *res, int col,
                 int status)
{
    struct apidoc d;

    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_video(&d, app, res, 0, col, time(NULL));
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, status);
}

/* ============================ researchers watching ============================== */

/* A request and the app, for statements whose answer needs storage. */
struct req_app *req_app_new(struct http_req *req, struct app *app)
{
    struct req_app *ra = malloc(sizeof *ra);
    if (ra) {
        ra->req = req;
        ra->app = app;
    }
    return ra;
}

/* $1 user, $2 video uuid. */
static const struct pg_stmt video_get_stmt = {
    "video_get",
    "WITH lg AS (" VIDEO_LOG_COLS
    "  SELECT u.id, u.uuid, u.email, v.study_id, s.uuid, 'video_link', v.uuid::text"
    "    FROM videos v JOIN responses r ON r.id = v.response_id"
    "    JOIN studies s ON s.id = v.study_id JOIN users u ON u.id = $1"
    "   WHERE v.uuid = $2::uuid"
    "     AND video_visible($1, v.study_id, r.id, r.is_preview, v.is_consent_footage))"
    "SELECT v.uuid, video_attrs(v), s.uuid, r.uuid FROM videos v"
    "  JOIN responses r ON r.id = v.response_id JOIN studies s ON s.id = v.study_id"
    " WHERE v.uuid = $2::uuid"
    "   AND video_visible($1, v.study_id, r.id, r.is_preview, v.is_consent_footage)",
};

/* $1 user, $2 study uuid or NULL, $3 response uuid or NULL, $4 limit, $5
 * offset.  Rows (verdict, count, uuid, attrs, study uuid, response
 * uuid); verdict not_found (no such study or response), forbidden (no
 * read permission on the study) or ok; an empty page has one row whose
 * uuid is NULL. */
static const struct pg_stmt video_list_stmt = {
    "video_list",
    "WITH r0 AS (SELECT id, study_id FROM responses WHERE uuid = $3::uuid),"
    " s AS MATERIALIZED ("
    "  SELECT s.id, s.uuid,"
    "         has_study_perm($1, s.id, 'read_study__responses') AS rd,"
    "         has_study_perm($1, s.id, 'read_study__responses(is_preview=True)') AS pv,"
    "         has_study_perm($1, s.id, 'edit_study__responses__consent_rulings') AS cr"
    "    FROM studies s"
    "   WHERE CASE WHEN $2::uuid IS NOT NULL THEN s.uuid = $2::uuid"
    "              ELSE s.id = (SELECT study_id FROM r0) END"
    "     AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM r0))),"
    " lg AS (" VIDEO_LOG_COLS
    "  SELECT u.id, u.uuid, u.email, s.id, s.uuid, 'video_list',"
    "         coalesce('response ' || $3::text, 'study')"
    "    FROM s JOIN users u ON u.id = $1 WHERE s.rd OR s.pv),"
    " vis AS ("
    "  SELECT v.id, v.created_at FROM s JOIN videos v ON v.study_id = s.id"
    "    JOIN responses r ON r.id = v.response_id"
    "   WHERE (s.rd OR s.pv) AND ($3::uuid IS NULL OR r.id = (SELECT id FROM r0))"
    "     AND video_visible_p(r.id, r.is_preview, v.is_consent_footage, s.rd, s.pv, s.cr))"
    " SELECT CASE WHEN s.id IS NULL THEN 'not_found' WHEN NOT (s.rd OR s.pv) THEN 'forbidden'"
    "             ELSE 'ok' END, (SELECT count(*) FROM vis), p.uuid, p.attrs, s.uuid, p.ru"
    "   FROM (SELECT 1) one LEFT JOIN s ON true LEFT JOIN LATERAL ("
    "     SELECT v.uuid, video_attrs(v) AS attrs, r.uuid AS ru, v.created_at AS k1, v.id AS k2"
    "       FROM (SELECT id FROM vis ORDER BY created_at, id LIMIT $4 OFFSET $5) x"
    "       JOIN videos v ON v.id = x.id JOIN responses r ON r.id = v.response_id) p ON true"
    "  ORDER BY p.k1, p.k2",
};
enum { VL_VERDICT, VL_COUNT, VL_UUID };

static void video_got(PGresult *res, void *arg)
{
    struct req_app *ra = arg;

    if (apidoc_db_failed(ra->req, res, "video_get")) {
        free(ra);
        return;
    }
    if (PQntuples(res) != 1)
        jsonapi_reply_errorf(ra->req, 404, "not_found", NULL, "No Video matches the given query.");
    else
        reply_video(ra->req, ra->app, res, 0, 200);
    free(ra);
}

static void video_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24], uuid[37];
    struct req_app *ra;

    if (!apidoc_uuid_copy(id, uuid)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Video matches the given query.");
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), uuid };
    if (!(ra = req_app_new(req, app)) ||
        pg_exec(app->pg, &video_get_stmt, 2, params, video_got, ra) < 0) {
        free(ra);
        jsonapi_reply_unavailable(req, "Database");
    }
}

static void video_listed(PGresult *res, void *arg)
{
    struct req_app *ra = arg;
    struct http_req *req = ra->req;
    struct jsonapi_page page;
    struct jsonapi_error e;
    struct apidoc d;
    json_t *links;
    time_t now = time(NULL);

    if (apidoc_db_failed(req, res, "video_list"))
        goto out;
    const char *verdict = PQntuples(res) ? PQgetvalue(res, 0, VL_VERDICT) : "not_found";
    if (strcmp(verdict, "not_found") == 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL,
                             "No Study or Response matches the given query.");
        goto out;
    }
    if (strcmp(verdict, "forbidden") == 0) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "You do not have permission to perform this action.");
        goto out;
    }
    jsonapi_page_parse(req, &page, &e);
    long count = atol(PQgetvalue(res, 0, VL_COUNT));
    if (!(links = jsonapi_page_links(req, &page, count, &e))) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (apidoc_init(&d, req) < 0) {
        json_decref(links);
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    apidoc_add(&d, "{\"links\":");
    apidoc_json(&d, links);
    json_decref(links);
    apidoc_add(&d, ",\"data\":[");
    for (int i = 0, n = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, VL_UUID))
            continue;
        if (n++)
            apidoc_add(&d, ",");
        render_video(&d, ra->app, res, i, VL_UUID, now);
    }
    apidoc_add(&d, "]}");
    apidoc_reply(&d, req, 200);
out:
    free(ra);
}

/* A uuid query parameter: 1 with it, 0 when absent, -1 after a 400. */
static int query_uuid(struct http_req *req, const char *name, char out[37])
{
    const char *v = http_req_query(req, name);
    if (!v || !*v)
        return 0;
    if (apidoc_uuid_copy(v, out))
        return 1;
    jsonapi_reply_errorf(req, 400, "invalid", NULL, "?%s= is not a valid UUID.", name);
    return -1;
}

static void video_list(struct http_req *req, struct app *app)
{
    char uid[24], limit[24], offset[24], study[37], resp[37];
    struct req_app *ra;
    int hs, hr;

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if ((hs = query_uuid(req, "study", study)) < 0 || (hr = query_uuid(req, "response", resp)) < 0)
        return;
    if (!hs && !hr) {
        jsonapi_reply_errorf(req, 400, "required", NULL,
                             "Give ?study=<uuid> or ?response=<uuid> (or both).");
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), hs ? study : NULL, hr ? resp : NULL,
                             limit, offset };
    if (!(ra = req_app_new(req, app)) ||
        pg_exec(app->pg, &video_list_stmt, 5, params, video_listed, ra) < 0) {
        free(ra);
        jsonapi_reply_unavailable(req, "Database");
    }
}

/* ============================ file:// objects behind signed links ================= */

/* "bytes=A-B", "bytes=A-", "bytes=-N" against size: 1 with the range, 0
 * when there is none (or one we ignore, as several ranges), -1 when it
 * cannot be satisfied. */
static int parse_range(const char *h, int64_t size, int64_t *off, int64_t *len)
{
    char *end;
    long long a, b;

    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    h += 6;
    if (*h == '-') {
        b = strtoll(h + 1, &end, 10);
        if (end == h + 1 || *end || b <= 0)
            return 0;
        if (size == 0)
            return -1;
        *len = b < size ? b : size;
        *off = size - *len;
        return 1;
    }
    a = strtoll(h, &end, 10);
    if (end == h || *end != '-' || a < 0)
        return 0;
    if (end[1] == '\0') {
        b = size - 1;
    } else {
        char *e2;
        b = strtoll(end + 1, &e2, 10);
        if (*e2 || b < a)
            return 0;
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return -1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

static void storage_link(struct http_req *req, struct app *app)
{
    const char *key = http_req_path(req) + strlen("/storage/");
    int64_t size = 0, off = 0, len;
    char hdr[96];
    int rc, fd = -1, status = 200;

    if (!app->storage || strcmp(storage_backend(app->storage), "file") != 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    rc = storage_link_verify(app->storage, key, http_req_query(req, "expires"),
                             http_req_query(req, "sig"), time(NULL));
    if (rc == -ETIMEDOUT) {
        jsonapi_reply_errorf(req, 403, "link_expired", NULL, "This link has expired.");
        return;
    }
    if (rc == -EINVAL && storage_key_valid(key)) {
        jsonapi_reply_errorf(req, 403, "permission_denied", NULL,
                             "This link is incomplete (expires and sig are required).");
        return;
    }
    if (rc < 0) {
        jsonapi_reply_errorf(req, rc == -EINVAL ? 404 : 403,
                             rc == -EINVAL ? "not_found" : "permission_denied", NULL,
                             rc == -EINVAL ? "Not found." : "This link is not valid.");
        return;
    }
    fd = storage_file_open(app->storage, key, &size);
    if (fd < 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    len = size;
    switch (parse_range(http_req_header(req, "Range"), size, &off, &len)) {
    case 1:
        status = 206;
        snprintf(hdr, sizeof hdr, "bytes %lld-%lld/%lld", (long long)off,
                 (long long)(off + len - 1), (long long)size);
        http_add_header(req, "Content-Range", hdr);
        break;
    case -1:
        close(fd);
        snprintf(hdr, sizeof hdr, "bytes */%lld", (long long)size);
        http_add_header(req, "Content-Range", hdr);
        jsonapi_reply_errorf(req, 416, "range_not_satisfiable", NULL,
                             "The range is outside the object.");
        return;
    default:
        break;
    }
    /* A file segment: sent with sendfile as the socket drains, never read
     * whole into memory. */
    struct evbuffer *buf = http_file_buffer(fd, off, len);
    if (!buf) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    http_add_header(req, "Accept-Ranges", "bytes");
    http_add_header(req, "Cache-Control", "private, no-store");
    /* A stored object may be HTML with script (a built runner): it runs in
     * a sandbox with an opaque origin, so it can read none of this
     * origin's cookies or storage and cannot call the API as the viewer.
     * (The server adds nosniff and the other headers of every reply.) */
    http_add_header(req, "Content-Security-Policy", VIDEOS_STORAGE_CSP);
    const char *ctype = storage_content_type(key);
    if (strcmp(ctype, "application/zip") == 0 || strcmp(ctype, "application/octet-stream") == 0) {
        const char *base = strrchr(key, '/');
        char disp[320];
        base = base ? base + 1 : key;
        if (strlen(base) < 250 && !strpbrk(base, "\"\\\r\n")) {
            snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", base);
            http_add_header(req, "Content-Disposition", disp);
        }
    }
    http_reply_buffer(req, status, ctype, buf);
    evbuffer_free(buf);
}

/* ============================ routes ============================================ */

static const struct route videos_route_table[] = {
    { HTTP_GET, "/api/v1/videos/", video_list, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/videos/{id}/", video_get, ROUTE_RESEARCHER },
    { HTTP_GET, "/storage/*", storage_link, ROUTE_SIGNED },
};

int videos_routes(struct router *r)
{
    /* Each file of the module has its table: intake, zips, watching. */
    if (video_pipe_routes(r) < 0 || video_lambda_routes(r) < 0 || video_zips_routes(r) < 0)
        return -1;
    return ROUTER_ADD_TABLE(r, videos_route_table);
}
