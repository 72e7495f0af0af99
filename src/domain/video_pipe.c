/* video_pipe: Pipe's webhook (POST /exp/renamevideo/): the recorder's
 * signed notice that a video is in storage, moved to its final name and
 * recorded. */
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

#define PIPE_FIELD_MAX 1024     /* videoName, payload: far more than Pipe sends */
#define TEXT_PLAIN "text/plain; charset=utf-8"

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
char *video_form_field(const char *body, size_t len, const char *want)
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
bool video_pipe_sig_matches(const char *key, const char *url, const char *payload,
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
    if (video_pipe_sig_matches(key, url, payload, sig))
        return true;
    if (!host || strlen(host) > 255)
        return false;
    snprintf(url, sizeof url, "http://%s%s", host, path);
    if (video_pipe_sig_matches(key, url, payload, sig))
        return true;
    snprintf(url, sizeof url, "https://%s%s", host, path);
    return video_pipe_sig_matches(key, url, payload, sig);
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
    char *payload = video_form_field(body, len, "payload");
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

static const struct route video_pipe_routes_table[] = {
    { HTTP_POST, "/exp/renamevideo/", pipe_webhook, ROUTE_SIGNED },
};

int video_pipe_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, video_pipe_routes_table);
}
