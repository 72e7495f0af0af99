/* videos: webcam video coming in (Pipe's webhook, the upload Lambda) and
 * researchers watching it (presigned links, the file:// link server), plus
 * the endpoint that queues a zip of a study's videos.  See
 * include/studyhub/domain/videos.h for the routes and the decisions. */
#include "config.h"

#include "studyhub/domain/videos.h"

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

#define PIPE_FIELD_MAX 1024     /* videoName, payload: far more than Pipe sends */
#define VIDEO_NAME_MAX 255      /* upstream's CharField(max_length=255) */
#define TEXT_PLAIN "text/plain; charset=utf-8"

/* ============================ names ============================================ */

static bool is_alnum_run(const char *s, size_t n, size_t max)
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
static const struct pg_stmt video_record_stmt = {
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
enum { VR_VERDICT, VR_UUID, VR_ATTRS, VR_STUDY, VR_RESPONSE };

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

static void reply_video(struct http_req *req, struct app *app, const PGresult *res, int col,
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

/* ============================ Pipe's webhook ==================================== */

static void pipe_reply(struct http_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pipe_reply(struct http_req *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    if (status != 200)
        log_info("videos: renamevideo: %d %s", status, msg);
    http_reply(req, status, TEXT_PLAIN, msg, (size_t)n);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* application/x-www-form-urlencoded, as Python's parse_qs: '&'-separated
 * pairs, '+' is a space, bad %-escapes kept, blank values dropped.  The
 * decoded value of the first `want` field, malloc'd, or NULL. */
static char *form_field(const char *body, size_t len, const char *want)
{
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (eq && eq + 1 < pe) {
            /* Decode name and value into one buffer. */
            char *out = malloc((size_t)(pe - p) + 1);
            if (!out)
                return NULL;
            size_t nlen = 0, o = 0;
            for (const char *q = p; q < pe; q++) {
                if (q == eq) {
                    out[o++] = '\0';
                    nlen = o;
                    continue;
                }
                if (*q == '+') {
                    out[o++] = ' ';
                } else if (*q == '%' && pe - q >= 3 && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
                    out[o++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
                    q += 2;
                } else {
                    out[o++] = *q;
                }
            }
            out[o] = '\0';
            if (strcmp(out, want) == 0 && o > nlen &&
                strlen(out + nlen) == o - nlen) {
                memmove(out, out + nlen, o - nlen + 1);
                return out;
            }
            free(out);
        }
        p = pe + 1;
    }
    return NULL;
}

static bool utf8_valid(const char *s)
{
    json_t *j = json_string(s);  /* jansson checks UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

/* Is sig base64(HMAC-SHA1(key, url + payload))? */
static bool pipe_sig_matches(const char *key, const char *url, const char *payload,
                             const char *sig)
{
    unsigned char mac[EVP_MAX_MD_SIZE], b64[64];
    unsigned int maclen = 0;
    size_t ulen = strlen(url), plen = strlen(payload);
    unsigned char *msg = malloc(ulen + plen + 1);
    bool ok = false;

    if (!msg)
        return false;
    memcpy(msg, url, ulen);
    memcpy(msg + ulen, payload, plen);
    if (HMAC(EVP_sha1(), key, (int)strlen(key), msg, ulen + plen, mac, &maclen)) {
        int n = EVP_EncodeBlock(b64, mac, (int)maclen);
        ok = n > 0 && strlen(sig) == (size_t)n && CRYPTO_memcmp(b64, sig, (size_t)n) == 0;
    }
    free(msg);
    return ok;
}

/* Pipe signs the URL it was configured with: BASE_URL + path in
 * production; scheme://Host + path as upstream's request.scheme (either
 * scheme, since a proxy in front may have ended TLS). */
static bool pipe_signature_ok(struct http_req *req, const char *key, const char *payload,
                              const char *sig)
{
    const char *path = http_req_path(req), *host = http_req_header(req, "Host");
    char url[2048];

    snprintf(url, sizeof url, "%s%s", http_req_base_url(req), path);
    if (pipe_sig_matches(key, url, payload, sig))
        return true;
    if (!host || strlen(host) > 255)
        return false;
    snprintf(url, sizeof url, "http://%s%s", host, path);
    if (pipe_sig_matches(key, url, payload, sig))
        return true;
    snprintf(url, sizeof url, "https://%s%s", host, path);
    return pipe_sig_matches(key, url, payload, sig);
}

/* One webhook call in progress; freed when answered. */
struct pipe_ctx {
    struct http_req *req;        /* borrowed: answered exactly once */
    struct app *app;             /* borrowed */
    struct videos_name name;
    char *video_name;            /* owned: data.videoName */
    char *src;                   /* owned: <videoName>.<type>, Pipe's upload */
    char *dst;                   /* owned: <name>.<type>, the searchable name */
    char *jpg;                   /* owned: <videoName>.jpg, Pipe's snapshot */
    char pipe_id[24];            /* data.id as decimal text */
    int deletes;                 /* deletes in flight */
    int tries;                   /* record statement runs */
};

static void pipe_free(struct pipe_ctx *c)
{
    free(c->video_name);
    free(c->src);
    free(c->dst);
    free(c->jpg);
    free(c);
}

/* Answers and frees c. */
static void pipe_finish(struct pipe_ctx *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pipe_finish(struct pipe_ctx *c, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pipe_reply(c->req, status, "%s", msg);
    pipe_free(c);
}

static void pipe_record(struct pipe_ctx *c);

static void pipe_recorded(PGresult *res, void *arg)
{
    struct pipe_ctx *c = arg;

    if (!res) {
        pipe_finish(c, 503, "Database unavailable; try again.");
        return;
    }
    if (!pg_ok(res)) {
        log_error("videos: video_record for %s failed: %s", c->dst,
                  PQresultErrorMessage(res));
        pipe_finish(c, 503, "The video could not be recorded; try again.");
        return;
    }
    if (PQntuples(res) == 0) {
        /* A concurrent delivery's row we cannot see yet: look again. */
        if (c->tries < 3) {
            pipe_record(c);
            return;
        }
        pipe_finish(c, 503, "The video could not be recorded; try again.");
        return;
    }
    const char *v = PQgetvalue(res, 0, VR_VERDICT);
    if (strcmp(v, "created") == 0 || strcmp(v, "exists") == 0) {
        log_info("videos: %s %s --> %s", strcmp(v, "created") == 0 ? "recorded" : "already had",
                 c->video_name, c->dst);
        pipe_finish(c, 200, "%s --> %s", c->video_name, c->dst);
    } else if (strcmp(v, "conflict") == 0) {
        pipe_finish(c, 400, "Another response's video is already recorded as %s (or with "
                    "pipe name %s).", c->dst, c->src);
    } else if (strcmp(v, "no_study") == 0) {
        pipe_finish(c, 404, "No study %s (named by the video).", c->name.study);
    } else {
        pipe_finish(c, 404, "No response %s in study %s (named by the video).",
                    c->name.response, c->name.study);
    }
}

static void pipe_record(struct pipe_ctx *c)
{
    char ms[24];
    snprintf(ms, sizeof ms, "%lld", (long long)c->name.ms);
    const char *params[] = { c->name.study, c->name.response, c->name.frame, c->dst,
                             c->src, c->pipe_id, ms, NULL,
                             c->name.consent ? "true" : "false" };
    c->tries++;
    if (pg_exec(c->app->pg, &video_record_stmt, 9, params, pipe_recorded, c) < 0)
        pipe_finish(c, 503, "Out of memory; try again.");
}

static void pipe_deleted(const struct storage_result *res, void *arg)
{
    struct pipe_ctx *c = arg;

    /* The copy is safe already: a leftover original is only clutter that
     * the reconcile reports, so a failed delete does not fail the call. */
    if (res->err && res->err != -ENOENT)
        log_warn("videos: deleting Pipe's original failed (%s); the reconcile will "
                 "report it", res->error);
    if (--c->deletes == 0)
        pipe_record(c);
}

static void pipe_delete_originals(struct pipe_ctx *c)
{
    c->deletes = 2;
    if (!storage_delete(c->app->storage, c->src, pipe_deleted, c))
        c->deletes--;
    if (!storage_delete(c->app->storage, c->jpg, pipe_deleted, c))
        c->deletes--;
    if (c->deletes == 0)
        pipe_record(c);
}

static void pipe_target_checked(const struct storage_result *res, void *arg)
{
    struct pipe_ctx *c = arg;

    if (res->err == 0) {
        /* An earlier delivery copied it and deleted the original. */
        pipe_delete_originals(c);
    } else if (res->err == -ENOENT) {
        pipe_finish(c, 404, "No video %s in storage.", c->src);
    } else {
        pipe_finish(c, 503, "Storage unavailable (%s); try again.", res->error);
    }
}

static void pipe_copied(const struct storage_result *res, void *arg)
{
    struct pipe_ctx *c = arg;

    if (res->err == 0) {
        pipe_delete_originals(c);
    } else if (res->err == -ENOENT) {
        if (!storage_head(c->app->storage, c->dst, pipe_target_checked, c))
            pipe_finish(c, 503, "Out of memory; try again.");
    } else {
        pipe_finish(c, 503, "Storage unavailable (%s); try again.", res->error);
    }
}

/* $1 study uuid, $2 response uuid: do they exist, and belong together? */
static const struct pg_stmt pipe_check_stmt = {
    "video_pipe_check",
    "SELECT s.id IS NOT NULL, r.id IS NOT NULL, r.study_id IS NOT DISTINCT FROM s.id"
    "  FROM (SELECT 1) one LEFT JOIN studies s ON s.uuid = $1::uuid"
    "  LEFT JOIN responses r ON r.uuid = $2::uuid",
};

static void pipe_checked(PGresult *res, void *arg)
{
    struct pipe_ctx *c = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        if (res && !pg_ok(res))
            log_error("videos: video_pipe_check failed: %s", PQresultErrorMessage(res));
        pipe_finish(c, 503, "Database unavailable; try again.");
        return;
    }
    if (!apidoc_bool(res, 0, 0)) {
        pipe_finish(c, 404, "No study %s (named by the video).", c->name.study);
        return;
    }
    if (!apidoc_bool(res, 0, 1) || !apidoc_bool(res, 0, 2)) {
        pipe_finish(c, 404, "No response %s in study %s (named by the video).",
                    c->name.response, c->name.study);
        return;
    }
    if (strcmp(c->src, c->dst) == 0) {
        /* Already under its searchable name: nothing to move. */
        pipe_record(c);
        return;
    }
    if (!storage_copy(c->app->storage, c->src, c->dst, pipe_copied, c))
        pipe_finish(c, 503, "Out of memory; try again.");
}

/* A string field of data, or NULL after answering 400 (upstream's
 * KeyError). */
static const char *pipe_string(struct http_req *req, json_t *data, const char *name)
{
    json_t *v = json_object_get(data, name);
    if (!v) {
        pipe_reply(req, 400, "Missing expected header or field: '%s'", name);
        return NULL;
    }
    if (!json_is_string(v)) {
        pipe_reply(req, 400, "Field '%s' is not a string.", name);
        return NULL;
    }
    return json_string_value(v);
}

static void pipe_webhook(struct http_req *req, struct app *app)
{
    const char *key = app->cfg->pipe_webhook_key;
    const char *sig = http_req_header(req, "X-Pipe-Signature");
    size_t len = 0;
    const char *body = http_req_body(req, &len);
    char *payload = form_field(body, len, "payload");
    json_t *doc = NULL;
    struct pipe_ctx *c = NULL;
    char why[160];

    if (!payload) {
        pipe_reply(req, 400, "Missing expected header or field: 'payload'");
        goto out;
    }
    if (!sig) {
        pipe_reply(req, 400, "Missing expected header or field: 'X-Pipe-Signature'");
        goto out;
    }
    if (!key || !*key) {
        log_warn("videos: a Pipe webhook arrived but PIPE_WEBHOOK_KEY is not set");
        pipe_reply(req, 403, "Invalid signature.");
        goto out;
    }
    if (!utf8_valid(payload) || !pipe_signature_ok(req, key, payload, sig)) {
        pipe_reply(req, 403, "Invalid signature.");
        goto out;
    }
    json_error_t jerr;
    doc = json_loads(payload, 0, &jerr);
    json_t *data = json_object_get(doc, "data");
    if (!json_is_object(doc)) {
        pipe_reply(req, 400, "The payload is not a JSON object: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(data)) {
        pipe_reply(req, 400, "Missing expected header or field: 'data'");
        goto out;
    }
    const char *status = pipe_string(req, data, "s3UploadStatus");
    if (!status)
        goto out;
    if (strcmp(status, "upload success") != 0) {
        pipe_reply(req, 403, "Nothing done: s3UploadStatus is \"%.100s\".", status);
        goto out;
    }
    const char *name = pipe_string(req, data, "payload");
    if (!name)
        goto out;
    if (!*name) {
        pipe_reply(req, 403, "The video has no name (empty payload).");
        goto out;
    }
    const char *video_name = pipe_string(req, data, "videoName");
    const char *type = video_name ? pipe_string(req, data, "type") : NULL;
    if (!type)
        goto out;
    json_t *id = json_object_get(data, "id");
    if (!id) {
        pipe_reply(req, 400, "Missing expected header or field: 'id'");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        pipe_reply(req, 503, "Out of memory; try again.");
        goto out;
    }
    c->req = req;
    c->app = app;
    if (json_is_integer(id)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%lld", (long long)json_integer_value(id));
    } else if (json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) < 19 &&
               strspn(json_string_value(id), "0123456789") == json_string_length(id)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%s", json_string_value(id));
    } else {
        pipe_reply(req, 400, "Field 'id' is not an integer.");
        goto out;
    }
    if (strlen(name) > PIPE_FIELD_MAX || videos_parse_name(name, false, &c->name, why,
                                                          sizeof why) < 0) {
        pipe_reply(req, 400, "Malformed video name \"%.300s\": %s.", name,
                   strlen(name) > PIPE_FIELD_MAX ? "too long" : why);
        goto out;
    }
    if (!is_alnum_run(type, strlen(type), 10)) {
        pipe_reply(req, 400, "Field 'type' must be letters and digits (e.g. MP4).");
        goto out;
    }
    char ext[12];
    size_t i;
    for (i = 0; type[i]; i++)
        ext[i] = (char)tolower((unsigned char)type[i]);
    ext[i] = '\0';
    const char *stem = c->name.consent ? name + 8 : name;
    c->video_name = strdup(video_name);
    if (c->video_name && strlen(video_name) <= PIPE_FIELD_MAX &&
        asprintf(&c->src, "%s.%s", video_name, ext) < 0)
        c->src = NULL;
    if (asprintf(&c->dst, "%s.%s", stem, ext) < 0)
        c->dst = NULL;
    if (asprintf(&c->jpg, "%s.jpg", video_name) < 0)
        c->jpg = NULL;
    if (!c->video_name || !c->src || !c->dst || !c->jpg) {
        pipe_reply(req, strlen(video_name) > PIPE_FIELD_MAX ? 400 : 503,
                   "Cannot handle videoName.");
        goto out;
    }
    if (strlen(c->dst) > VIDEO_NAME_MAX || !storage_key_valid(c->dst)) {
        pipe_reply(req, 400, "Malformed video name \"%.300s\": not a storable name.", name);
        goto out;
    }
    if (strchr(video_name, '/') || !storage_key_valid(c->src) || !storage_key_valid(c->jpg)) {
        pipe_reply(req, 400, "Malformed videoName \"%.300s\".", video_name);
        goto out;
    }
    const char *params[] = { c->name.study, c->name.response };
    if (pg_exec(app->pg, &pipe_check_stmt, 2, params, pipe_checked, c) < 0) {
        pipe_reply(req, 503, "Out of memory; try again.");
        goto out;
    }
    c = NULL;  /* answered by the chain */
out:
    if (c)
        pipe_free(c);
    json_decref(doc);
    free(payload);
}

/* ============================ the upload Lambda ================================== */

/* Python's json.dumps(v, separators=(",", ":")) with its defaults
 * (ensure_ascii, float repr): the bytes the Lambda signs. */
static void py_float(double x, struct evbuffer *out)
{
    char buf[48], digits[24];
    int prec, exp, nd = 0;

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    const char *p = buf;
    if (*p == '-') {
        evbuffer_add(out, "-", 1);
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p) && nd < (int)sizeof digits - 1)
            digits[nd++] = *p;
    digits[nd] = '\0';
    exp = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                evbuffer_add(out, i < nd ? &digits[i] : "0", 1);
            evbuffer_add(out, ".", 1);
            if (nd > exp + 1)
                evbuffer_add(out, digits + exp + 1, (size_t)(nd - exp - 1));
            else
                evbuffer_add(out, "0", 1);
        } else {
            evbuffer_add(out, "0.", 2);
            for (int i = 0; i < -exp - 1; i++)
                evbuffer_add(out, "0", 1);
            evbuffer_add(out, digits, (size_t)nd);
        }
    } else {
        evbuffer_add(out, digits, 1);
        if (nd > 1) {
            evbuffer_add(out, ".", 1);
            evbuffer_add(out, digits + 1, (size_t)(nd - 1));
        }
        evbuffer_add_printf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void py_string(const char *s, size_t n, struct evbuffer *out)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    evbuffer_add(out, "\"", 1);
    while (p < end) {
        unsigned c = *p;
        unsigned long cp;
        int extra;
        switch (c) {
        case '"': evbuffer_add(out, "\\\"", 2); p++; continue;
        case '\\': evbuffer_add(out, "\\\\", 2); p++; continue;
        case '\n': evbuffer_add(out, "\\n", 2); p++; continue;
        case '\r': evbuffer_add(out, "\\r", 2); p++; continue;
        case '\t': evbuffer_add(out, "\\t", 2); p++; continue;
        case '\b': evbuffer_add(out, "\\b", 2); p++; continue;
        case '\f': evbuffer_add(out, "\\f", 2); p++; continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            evbuffer_add(out, p, 1);
            p++;
            continue;
        }
        /* jansson gave valid UTF-8: decode one code point. */
        if (c < 0x80) {
            cp = c;
            extra = 0;
        } else if (c < 0xe0) {
            cp = c & 0x1f;
            extra = 1;
        } else if (c < 0xf0) {
            cp = c & 0x0f;
            extra = 2;
        } else {
            cp = c & 0x07;
            extra = 3;
        }
        p++;
        for (int i = 0; i < extra && p < end; i++, p++)
            cp = (cp << 6) | (*p & 0x3f);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            evbuffer_add_printf(out, "\\u%04lx\\u%04lx", 0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
        } else {
            evbuffer_add_printf(out, "\\u%04lx", cp);
        }
    }
    evbuffer_add(out, "\"", 1);
}

static void py_dump(const json_t *v, struct evbuffer *out)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        evbuffer_add(out, "{", 1);
        json_object_foreach((json_t *)v, k, x) {
            if (!first)
                evbuffer_add(out, ",", 1);
            first = false;
            py_string(k, strlen(k), out);
            evbuffer_add(out, ":", 1);
            py_dump(x, out);
        }
        evbuffer_add(out, "}", 1);
        break;
    }
    case JSON_ARRAY:
        evbuffer_add(out, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                evbuffer_add(out, ",", 1);
            py_dump(json_array_get(v, i), out);
        }
        evbuffer_add(out, "]", 1);
        break;
    case JSON_STRING:
        py_string(json_string_value(v), json_string_length(v), out);
        break;
    case JSON_INTEGER:
        evbuffer_add_printf(out, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        py_float(json_real_value(v), out);
        break;
    case JSON_TRUE: evbuffer_add(out, "true", 4); break;
    case JSON_FALSE: evbuffer_add(out, "false", 5); break;
    case JSON_NULL: evbuffer_add(out, "null", 4); break;
    }
}

/* inflection.underscore, which upstream's parser applies to the top-level
 * attribute names: "fullName" -> "full_name", "HTTPCode" -> "http_code". */
static char *underscore(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i > 0 && isupper(c)) {
            unsigned char prev = (unsigned char)s[i - 1], next = (unsigned char)s[i + 1];
            bool r1 = isupper(prev) && next && islower(next);
            bool r2 = islower(prev) || isdigit(prev);
            if (r1 || r2)
                *o++ = '_';
        }
        *o++ = c == '-' ? '_' : (char)tolower(c);
    }
    *o = '\0';
    return out;
}

/* What the Lambda signs: DJA's parsed data (id, the attributes with their
 * names underscored, relationships other than study and response, and
 * _meta) without type, study and response.  Also the underscored
 * attributes, for reading the fields.  NULL when out of memory. */
static json_t *lambda_signed_dict(json_t *doc, json_t *data, json_t **attrs_out)
{
    json_t *out = json_object(), *attrs = json_object();
    json_t *a = json_object_get(data, "attributes"), *rels = json_object_get(data, "relationships");
    const char *k;
    json_t *v;

    if (!out || !attrs)
        goto fail;
    if (json_object_get(data, "id"))
        json_object_set(out, "id", json_object_get(data, "id"));
    json_object_foreach(a, k, v) {
        char *u = underscore(k);
        if (!u)
            goto fail;
        json_object_set(out, u, v);
        json_object_set(attrs, u, v);
        free(u);
    }
    json_object_foreach(rels, k, v) {
        if (strcmp(k, "study") == 0 || strcmp(k, "response") == 0)
            continue;
        json_t *d = json_object_get(v, "data");
        json_object_set(out, k, d ? d : json_null());
    }
    if (json_object_get(doc, "meta"))
        json_object_set(out, "_meta", json_object_get(doc, "meta"));
    json_object_del(out, "type");
    *attrs_out = attrs;
    return out;
fail:
    json_decref(out);
    json_decref(attrs);
    return NULL;
}

static bool lambda_sig_ok(const char *key, json_t *dict, const char *sig)
{
    struct evbuffer *msg = evbuffer_new();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], given[2 * EVP_MAX_MD_SIZE + 1];
    bool ok = false;

    if (!msg)
        return false;
    py_dump(dict, msg);
    size_t n = evbuffer_get_length(msg);
    const unsigned char *p = evbuffer_pullup(msg, -1);
    if ((p || n == 0) &&
        HMAC(EVP_sha256(), key, (int)strlen(key), p, n, mac, &maclen) != NULL &&
        strlen(sig) == 2 * (size_t)maclen) {
        util_hex(mac, maclen, hex);
        for (size_t i = 0; i <= strlen(sig); i++)
            given[i] = (char)tolower((unsigned char)sig[i]);
        ok = CRYPTO_memcmp(hex, given, 2 * (size_t)maclen) == 0;
    }
    evbuffer_free(msg);
    return ok;
}

/* Characters (code points) of a valid UTF-8 string, as Django counts. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

#define LAMBDA_STR_MAX (VIDEO_NAME_MAX * 4 + 1)

/* One POST /api/v1/video/ waiting for its statement. */
struct lambda_ctx {
    struct http_req *req;           /* borrowed */
    struct app *app;                /* borrowed */
    char study[37], response[37];   /* lower-case uuids */
    char frame[LAMBDA_STR_MAX];
    char full[LAMBDA_STR_MAX];
    char pipe_name[LAMBDA_STR_MAX];
    char pipe_id[24];
    char ts[LAMBDA_STR_MAX];
    bool has_pipe_name, has_pipe_id, has_ts, consent;
    int tries;                      /* statement runs */
};

static void lambda_run(struct lambda_ctx *c);

static void lambda_recorded(PGresult *res, void *arg)
{
    struct lambda_ctx *c = arg;
    struct http_req *req = c->req;

    if (apidoc_db_failed(req, res, "video_record")) {
        free(c);
        return;
    }
    if (PQntuples(res) == 0 && c->tries < 3) {
        lambda_run(c);
        return;
    }
    const char *v = PQntuples(res) ? PQgetvalue(res, 0, VR_VERDICT) : "";
    if (strcmp(v, "created") == 0) {
        char self[200];
        jsonapi_url(req, self, sizeof self, "videos/%s/", PQgetvalue(res, 0, VR_UUID));
        http_add_header(req, "Location", self);
        reply_video(req, NULL, res, VR_UUID, 201);
    } else if (strcmp(v, "exists") == 0) {
        /* The Lambda retried: the video is recorded once. */
        reply_video(req, NULL, res, VR_UUID, 200);
    } else if (strcmp(v, "conflict") == 0) {
        jsonapi_reply_errorf(req, 400, "unique", "/data/attributes/full_name",
                             "video with this full name already exists.");
    } else if (strcmp(v, "no_study") == 0) {
        jsonapi_reply_errorf(req, 400, "does_not_exist", "/data/relationships/study",
                             "Invalid pk \"%s\" - object does not exist.", c->study);
    } else if (strcmp(v, "no_response") == 0) {
        jsonapi_reply_errorf(req, 400, "does_not_exist", "/data/relationships/response",
                             "Invalid pk \"%s\" - object does not exist in this study.",
                             c->response);
    } else {
        jsonapi_reply_unavailable(req, "Database");
    }
    free(c);
}

static void lambda_run(struct lambda_ctx *c)
{
    const char *params[] = {
        c->study, c->response, c->frame, c->full,
        c->has_pipe_name ? c->pipe_name : NULL, c->has_pipe_id ? c->pipe_id : NULL,
        NULL, c->has_ts ? c->ts : NULL, c->consent ? "true" : "false",
    };
    c->tries++;
    if (pg_exec(c->app->pg, &video_record_stmt, 9, params, lambda_recorded, c) < 0) {
        jsonapi_reply_unavailable(c->req, "Database");
        free(c);
    }
}

/* A string attribute copied into out (LAMBDA_STR_MAX bytes): 1, 0 when
 * absent or null (an error when required), -1 after adding an error. */
static int lambda_str(json_t *attrs, const char *name, bool required, char *out,
                      struct jsonapi_error *errs, int *nerr)
{
    json_t *v = json_object_get(attrs, name);
    char ptr[80];

    snprintf(ptr, sizeof ptr, "/data/attributes/%s", name);
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        jsonapi_error_set(&errs[(*nerr)++], 400, "required", ptr, "This field is required.");
        return -1;
    }
    if (!json_is_string(v)) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "invalid", ptr, "Not a valid string.");
        return -1;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "invalid", ptr,
                          "Null characters are not allowed.");
        return -1;
    }
    if (!*s && required) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "blank", ptr, "This field may not be blank.");
        return -1;
    }
    if (utf8_chars(s) > VIDEO_NAME_MAX) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "max_length", ptr,
                          "Ensure this field has no more than %d characters.", VIDEO_NAME_MAX);
        return -1;
    }
    snprintf(out, LAMBDA_STR_MAX, "%s", s);
    return 1;
}

/* A relationship that must be there: 1 with the lower-case uuid, or -1
 * after answering. */
static int lambda_rel(struct http_req *req, json_t *data, const char *name, const char *type,
                      char out[37])
{
    struct jsonapi_error e;
    const char *id;
    char ptr[64];

    snprintf(ptr, sizeof ptr, "/data/relationships/%s", name);
    switch (jsonapi_rel_id(data, name, type, &id, &e)) {
    case 1:
        if (apidoc_uuid_copy(id, out))
            return 1;
        jsonapi_reply_errorf(req, 400, "does_not_exist", ptr,
                             "Invalid pk \"%.40s\" - object does not exist.", id);
        return -1;
    case 0:
        jsonapi_reply_errorf(req, 400, "parse_error", ptr,
                             "Received document does not contain a %s relationship.", name);
        return -1;
    default:
        jsonapi_reply_error(req, &e);
        return -1;
    }
}

static void lambda_post(struct http_req *req, struct app *app)
{
    struct jsonapi_error e, errs[8];
    int nerr = 0;
    json_t *data = NULL, *doc = NULL, *dict = NULL, *attrs = NULL;
    struct lambda_ctx *c = NULL;
    const char *key = app->cfg->aws_lambda_secret_access_key;

    /* Upstream's order: the parser (415, 400, 409), the signature (401),
     * then the fields (400). */
    if (jsonapi_parse_request(req, "videos", NULL, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *sig = http_req_header(req, "X-AWS-Lambda-HMAC-Sig");
    if (!sig)
        sig = http_req_header(req, "X_AWS_LAMBDA_HMAC_SIG");
    if (!sig) {
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "No HMAC signature found in request header.");
        goto out;
    }
    size_t blen = 0;
    const char *body = http_req_body(req, &blen);
    doc = json_loadb(body, blen, 0, NULL);
    if (!doc || !(dict = lambda_signed_dict(doc, data, &attrs))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    if (!key || !*key) {
        log_warn("videos: POST /api/v1/video/ arrived but AWS_LAMBDA_SECRET_ACCESS_KEY is not set");
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "HMAC signatures do not match.");
        goto out;
    }
    if (!lambda_sig_ok(key, dict, sig)) {
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "HMAC signatures do not match.");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    c->req = req;
    c->app = app;
    if (lambda_rel(req, data, "study", "studies", c->study) < 0 ||
        lambda_rel(req, data, "response", "responses", c->response) < 0)
        goto out;
    lambda_str(attrs, "frame_id", true, c->frame, errs, &nerr);
    if (lambda_str(attrs, "full_name", true, c->full, errs, &nerr) > 0 &&
        !storage_key_valid(c->full))
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/full_name",
                          "Not a name a video can be stored under.");
    c->has_pipe_name = lambda_str(attrs, "pipe_name", false, c->pipe_name, errs, &nerr) > 0;
    c->has_ts = lambda_str(attrs, "s3_timestamp", false, c->ts, errs, &nerr) > 0;
    json_t *pid = json_object_get(attrs, "pipe_numeric_id");
    if (json_is_integer(pid)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%lld", (long long)json_integer_value(pid));
        c->has_pipe_id = true;
    } else if (json_is_string(pid) && json_string_length(pid) > 0 &&
               json_string_length(pid) < 19 &&
               strspn(json_string_value(pid), "0123456789") == json_string_length(pid)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%s", json_string_value(pid));
        c->has_pipe_id = true;
    } else if (pid && !json_is_null(pid)) {
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/pipe_numeric_id",
                          "A valid integer is required.");
    }
    /* DRF's BooleanField: true/false, 1/0, and their strings. */
    json_t *cf = json_object_get(attrs, "is_consent_footage");
    const char *cs = json_is_string(cf) ? json_string_value(cf) : NULL;
    if (json_is_boolean(cf))
        c->consent = json_is_true(cf);
    else if (json_is_integer(cf) && (json_integer_value(cf) == 0 || json_integer_value(cf) == 1))
        c->consent = json_integer_value(cf) == 1;
    else if (cs && (strcasecmp(cs, "true") == 0 || strcmp(cs, "1") == 0))
        c->consent = true;
    else if (cs && (strcasecmp(cs, "false") == 0 || strcmp(cs, "0") == 0))
        c->consent = false;
    else if (cf && !json_is_null(cf))
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/is_consent_footage",
                          "Must be a valid boolean.");
    if (nerr) {
        apidoc_reply_errors(req, errs, nerr);
        goto out;
    }
    lambda_run(c);
    c = NULL;
out:
    free(c);
    json_decref(attrs);
    json_decref(dict);
    json_decref(doc);
    json_decref(data);
}

/* ============================ researchers watching ============================== */

/* A request and the app, for statements whose answer needs storage. */
struct req_app {
    struct http_req *req;  /* borrowed */
    struct app *app;       /* borrowed */
};

static struct req_app *req_app_new(struct http_req *req, struct app *app)
{
    struct req_app *ra = malloc(sizeof *ra);
    if (ra) {
        ra->req = req;
        ra->app = app;
    }
    return ra;
}

/* The access log (sql/084) gets who read which video's link, written in
 * the statement that makes the link readable. */
#define VIDEO_LOG_COLS \
    "INSERT INTO access_log (user_id, user_uuid, user_email, study_id, study_uuid, action, object)"

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

/* ============================ queueing a zip ===================================== */

/* $1 user, $2 study uuid, $3 consent only.  One row: (study found, may
 * read, videos, largest video id, sha256 of the sorted names).  The hash
 * is upstream's, over names sorted by code point (COLLATE "C" is byte
 * order, the same for UTF-8). */
static const struct pg_stmt zip_prepare_stmt = {
    "video_zip_prepare",
    "WITH s AS MATERIALIZED ("
    "  SELECT s.id, has_study_perm($1, s.id, 'read_study__responses')"
    "         OR has_study_perm($1, s.id, 'read_study__responses(is_preview=True)') AS rd"
    "    FROM studies s WHERE s.uuid = $2::uuid),"
    " lg AS (" VIDEO_LOG_COLS
    "  SELECT u.id, u.uuid, u.email, s.id, $2::uuid, 'video_zip',"
    "         CASE WHEN $3::boolean THEN 'consent videos' ELSE 'all videos' END"
    "    FROM s JOIN users u ON u.id = $1 WHERE s.rd),"
    " v AS (SELECT z.id, z.full_name FROM s,"
    "         videos_visible_in_study($1, s.id, $3::boolean, 0, NULL, NULL) z),"
    " agg AS (SELECT count(*) AS n, coalesce(max(id), 0) AS mx,"
    "         encode(sha256(convert_to(coalesce(string_agg(full_name, ''"
    "                ORDER BY full_name COLLATE \"C\"), ''), 'UTF8')), 'hex') AS h FROM v)"
    " SELECT s.id IS NOT NULL, coalesce(s.rd, false), agg.n, agg.mx, agg.h"
    "   FROM agg LEFT JOIN s ON true",
};

/* A zip request between its statement and its enqueue. */
struct zip_req {
    struct http_req *req;   /* borrowed */
    struct app *app;        /* borrowed */
    char study[37];
    bool consent_only;
    long long count;        /* videos in the set */
};

static void zip_enqueued(enum task_enqueue_status st, int64_t id, const char *uuid, void *arg)
{
    struct zip_req *z = arg;
    struct http_req *req = z->req;

    if (st == TASK_ENQUEUE_CREATED) {
        json_t *doc = json_pack(
            "{s:{s:s, s:s, s:{s:s, s:s, s:s, s:b, s:I, s:I}}}", "data", "type", "tasks", "id",
            uuid, "attributes", "kind", VIDEO_ZIP_KIND, "state", "queued", "study", z->study,
            "consent_only", z->consent_only, "videos", (json_int_t)z->count, "pk",
            (json_int_t)id);
        if (doc)
            jsonapi_reply(req, 202, doc);
        else
            jsonapi_reply_unavailable(req, "Memory");
    } else if (st == TASK_ENQUEUE_EXISTS) {
        json_t *doc = json_pack(
            "{s:[{s:s, s:s, s:s, s:{s:s}, s:{s:s}}]}", "errors", "status", "409", "code",
            "conflict", "detail",
            "A zip of these videos is already being built; its link will be emailed.",
            "source", "pointer", "/data", "meta", "task", uuid && *uuid ? uuid : "");
        if (doc)
            jsonapi_reply(req, 409, doc);
        else
            jsonapi_reply_unavailable(req, "Memory");
    } else {
        jsonapi_reply_unavailable(req, "Database");
    }
    free(z);
}

static void zip_prepared(PGresult *res, void *arg)
{
    struct zip_req *z = arg;
    struct http_req *req = z->req;
    char subject[160], uid[24];
    json_t *payload = NULL;

    if (apidoc_db_failed(req, res, "video_zip_prepare"))
        goto fail;
    if (PQntuples(res) != 1 || !apidoc_bool(res, 0, 0)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        goto fail;
    }
    if (!apidoc_bool(res, 0, 1)) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "You do not have permission to perform this action.");
        goto fail;
    }
    z->count = atoll(PQgetvalue(res, 0, 2));
    if (z->count == 0) {
        jsonapi_reply_errorf(req, 400, "no_videos", "/data",
                             "There are no %svideos you may download in this study.",
                             z->consent_only ? "consent " : "");
        goto fail;
    }
    const char *hash = PQgetvalue(res, 0, 4);
    /* One task per (study, kind, file set): the exclusivity key. */
    snprintf(subject, sizeof subject, "%s:%s:%s", z->study, z->consent_only ? "consent" : "all",
             hash);
    payload = json_pack("{s:s, s:s, s:b, s:I, s:s, s:I}", "study", z->study, "user",
                        apidoc_user_id(req, uid), "consent_only", z->consent_only,
                        "max_video_id", (json_int_t)atoll(PQgetvalue(res, 0, 3)), "hash", hash,
                        "videos", (json_int_t)z->count);
    if (!payload || task_enqueue(z->app->pg, VIDEO_ZIP_KIND, subject, payload, zip_enqueued,
                                 z) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        goto fail;
    }
    json_decref(payload);
    return;
fail:
    json_decref(payload);
    free(z);
}

static void zip_create(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    struct zip_req *z;
    json_t *body = NULL, *fields = NULL;
    char uid[24];
    size_t len = 0;

    z = calloc(1, sizeof *z);
    if (!z) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    z->req = req;
    z->app = app;
    if (!apidoc_uuid_copy(id, z->study)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        goto fail;
    }
    /* An empty body asks for every video. */
    http_req_body(req, &len);
    if (len > 0) {
        if (!(body = auth_read_json(req, &fields)))
            goto fail;
        json_t *co = json_object_get(fields, "consent_only");
        if (co && !json_is_boolean(co) && !json_is_null(co)) {
            jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes/consent_only",
                                 "Must be a valid boolean.");
            goto fail;
        }
        z->consent_only = json_is_true(co);
    }
    const char *params[] = { apidoc_user_id(req, uid), z->study,
                             z->consent_only ? "true" : "false" };
    if (pg_exec(app->pg, &zip_prepare_stmt, 3, params, zip_prepared, z) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        goto fail;
    }
    json_decref(body);
    return;
fail:
    json_decref(body);
    free(z);
}

/* ============================ the caller's zips of a study ======================= */

/* $1 user, $2 study uuid, $3 a link's life (s).  The caller's last zips of
 * the study, newest first: rows of (study found, may read, task uuid,
 * state, stage, consent only, videos, created, finished, zip key, link
 * seconds left, missing, error).  A finished zip's link is offered until
 * its finish + a link's life, as the email's: a reused zip is at most
 * that old at its finish, so no link outlives the purge (at twice that
 * age, tasks/purge_videos.h).  Handing out a link is logged, as the
 * zip's request was. */
static const struct pg_stmt zip_list_stmt = {
    "video_zip_list",
    "WITH s AS MATERIALIZED ("
    "  SELECT s.id, has_study_perm($1, s.id, 'read_study__responses')"
    "         OR has_study_perm($1, s.id, 'read_study__responses(is_preview=True)') AS rd"
    "    FROM studies s WHERE s.uuid = $2::uuid"
    "     AND has_study_perm($1, s.id, 'read_study__details')),"
    " z AS (SELECT t.uuid, t.state, coalesce(t.stage, '') AS stage,"
    "              coalesce((t.payload->>'consent_only')::boolean, false) AS consent_only,"
    "              coalesce(t.payload->>'videos', '0') AS videos,"
    "              api_time(t.created_at) AS created, api_time(t.finished_at) AS finished,"
    "              t.result->>'key' AS zkey,"
    "              CASE WHEN t.state = 'succeeded' THEN GREATEST(0, floor(EXTRACT(EPOCH FROM"
    "                t.finished_at + make_interval(secs => $3::int) - now())))::bigint"
    "              END AS left_s,"
    "              coalesce(t.result->>'missing', '0') AS missing, t.error, t.id"
    "         FROM s, tasks t"
    "        WHERE s.rd AND t.kind = '" VIDEO_ZIP_KIND "' AND t.subject LIKE $2 || ':%'"
    "          AND t.payload->>'user' = $1::text"
    "        ORDER BY t.id DESC LIMIT 10),"
    " lg AS (" VIDEO_LOG_COLS
    "  SELECT u.id, u.uuid, u.email, s.id, $2::uuid, 'video_zip_link', z.zkey"
    "    FROM s, z JOIN users u ON u.id = $1 WHERE z.zkey IS NOT NULL AND z.left_s > 0)"
    " SELECT s.id IS NOT NULL, coalesce(s.rd, false), z.uuid, z.state, z.stage,"
    "        z.consent_only, z.videos, z.created, z.finished, z.zkey, z.left_s, z.missing,"
    "        z.error"
    "   FROM (SELECT 1) one LEFT JOIN s ON true LEFT JOIN z ON true ORDER BY z.id DESC",
};

enum { ZL_FOUND, ZL_RD, ZL_UUID, ZL_STATE, ZL_STAGE, ZL_CONSENT, ZL_VIDEOS, ZL_CREATED,
       ZL_FINISHED, ZL_KEY, ZL_LEFT, ZL_MISSING, ZL_ERROR };

static void zip_listed(PGresult *res, void *arg)
{
    struct req_app *ra = arg;
    struct http_req *req = ra->req;
    json_t *data = NULL, *doc = NULL;
    time_t now = time(NULL);

    if (apidoc_db_failed(req, res, "video_zip_list"))
        goto out;
    if (PQntuples(res) < 1 || !apidoc_bool(res, 0, ZL_FOUND)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        goto out;
    }
    if (!apidoc_bool(res, 0, ZL_RD)) {
        jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                             "You do not have permission to perform this action.");
        goto out;
    }
    if (!(data = json_array()))
        goto oom;
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, ZL_UUID))
            continue;
        const char *state = PQgetvalue(res, i, ZL_STATE);
        long long left = PQgetisnull(res, i, ZL_LEFT) ? 0 : atoll(PQgetvalue(res, i, ZL_LEFT));
        json_t *attrs = json_pack(
            "{s:s, s:s, s:b, s:I, s:s, s:o, s:I}", "state", state, "stage",
            PQgetvalue(res, i, ZL_STAGE), "consent_only", apidoc_bool(res, i, ZL_CONSENT),
            "videos", (json_int_t)atoll(PQgetvalue(res, i, ZL_VIDEOS)), "created_at",
            PQgetvalue(res, i, ZL_CREATED), "finished_at",
            PQgetisnull(res, i, ZL_FINISHED) ? json_null()
                                              : json_string(PQgetvalue(res, i, ZL_FINISHED)),
            "missing", (json_int_t)atoll(PQgetvalue(res, i, ZL_MISSING)));
        if (!attrs)
            goto oom;
        /* A failure's reason is the task's own text (never a child's
         * data); the page shows it so the researcher knows to ask again. */
        if (strcmp(state, "failed") == 0 && !PQgetisnull(res, i, ZL_ERROR))
            json_object_set_new(attrs, "error", json_string(PQgetvalue(res, i, ZL_ERROR)));
        if (strcmp(state, "succeeded") == 0 && !PQgetisnull(res, i, ZL_KEY) && left > 0) {
            const char *key = PQgetvalue(res, i, ZL_KEY), *why = NULL;
            const char *base = strrchr(key, '/');
            char *url = storage_presign_get(ra->app->storage, key, (unsigned)left, now,
                                            base ? base + 1 : key, &why);
            if (url) {
                char until[40];
                struct tm tm;
                time_t end = now + left;
                gmtime_r(&end, &tm);
                strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
                json_object_set_new(attrs, "download_url", json_string(url));
                json_object_set_new(attrs, "download_expires_at", json_string(until));
                free(url);
            } else {
                log_warn("video zip list: cannot sign a link to %s: %s", key, why ? why : "?");
            }
        }
        if (json_array_append_new(data, json_pack("{s:s, s:s, s:o}", "type", "video-zips", "id",
                                                  PQgetvalue(res, i, ZL_UUID), "attributes",
                                                  attrs)) < 0)
            goto oom;
    }
    if (!(doc = json_pack("{s:o}", "data", data))) {
        data = NULL;
        goto oom;
    }
    jsonapi_reply(req, 200, doc);
    goto out;
oom:
    json_decref(data);
    jsonapi_reply_unavailable(req, "Memory");
out:
    free(ra);
}

static void zip_list(struct http_req *req, struct app *app)
{
    char uid[24], study[37], ttl[24];
    struct req_app *ra;

    if (!apidoc_uuid_copy(http_req_param(req, 0), study)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    snprintf(ttl, sizeof ttl, "%d", VIDEOS_ZIP_URL_TTL_S);
    const char *params[] = { apidoc_user_id(req, uid), study, ttl };
    if (!(ra = req_app_new(req, app)) ||
        pg_exec(app->pg, &zip_list_stmt, 3, params, zip_listed, ra) < 0) {
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
    struct evbuffer *buf = evbuffer_new();
    /* A file segment: sent with sendfile as the socket drains, never read
     * whole into memory; the evbuffer closes fd once it is done. */
    if (!buf || (len > 0 && evbuffer_add_file(buf, fd, off, len) < 0)) {
        if (buf)
            evbuffer_free(buf);
        close(fd);
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    if (len == 0)
        close(fd);
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
    { HTTP_POST, "/exp/renamevideo/", pipe_webhook, ROUTE_SIGNED },
    { HTTP_POST, "/api/v1/video/", lambda_post, ROUTE_SIGNED },
    { HTTP_GET, "/api/v1/videos/", video_list, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/videos/{id}/", video_get, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/studies/{id}/video-zips/", zip_create, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/studies/{id}/video-zips/", zip_list, ROUTE_RESEARCHER },
    { HTTP_GET, "/storage/*", storage_link, ROUTE_SIGNED },
};

int videos_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, videos_route_table);
}
