/* video_zips: a zip of a study's videos queued (the video_zip task does
 * the work), and the caller's zips with their progress and links. */
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
#include "studyhub/queue/task_queue.h"
#include "studyhub/core/util.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/sigv4.h"
#include "studyhub/io/storage.h"

/* ============================ queueing a zip ===================================== */

/* $1 user, $2 study uuid, $3 consent only.  One row: (study found, may
 * read, videos, largest video id, sha256 of the sorted names).  A study
 * the caller may not see at all is not found (404), as in the list; one
 * it sees but whose responses it may not read is a 403.  The hash
 * is upstream's, over names sorted by code point (COLLATE "C" is byte
 * order, the same for UTF-8). */
static const struct pg_stmt zip_prepare_stmt = {
    "video_zip_prepare",
    "WITH s AS MATERIALIZED ("
    "  SELECT s.id, has_study_perm($1, s.id, 'read_study__responses')"
    "         OR has_study_perm($1, s.id, 'read_study__responses(is_preview=True)') AS rd"
    "    FROM studies s WHERE s.uuid = $2::uuid"
    "     AND has_study_perm($1, s.id, 'read_study__details')),"
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

static const struct route video_zips_routes_table[] = {
    { HTTP_POST, "/api/v1/studies/{id}/video-zips/", zip_create, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/studies/{id}/video-zips/", zip_list, ROUTE_RESEARCHER },
};

int video_zips_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, video_zips_routes_table);
}
