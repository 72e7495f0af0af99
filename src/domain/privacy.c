/* privacy: account erasure and the family's data download (privacy.h).
 *
 * The download is a small state machine (struct fam_dl): START (one
 * statement writes the access log), then for each section FETCHING (a
 * keyset batch is in flight) or WAITING (the client has not taken enough
 * of what was sent), then DONE.  Only dl_finish ends the reply and frees
 * the job; memory is one batch plus EXPORT_PENDING_MAX whatever the size
 * of the family's data. */
#include "config.h"

#include "studyhub/domain/privacy.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/export.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/mail.h"
#include "studyhub/io/pg.h"

/* ------------------------------------------------------------ erasure */

/* $1 user.  Columns: verdict, detail, erasure, report. */
static const struct pg_stmt account_erase_stmt = {
    "privacy_erase_account",
    "SELECT verdict, detail, erasure, report FROM family_erase($1::bigint, NULL, 'family')",
};

struct erase_op {
    struct http_req *req;   /* borrowed until replied */
    struct app *app;        /* borrowed */
};

static void account_erased(PGresult *res, void *arg)
{
    struct erase_op *op = arg;
    struct http_req *req = op->req;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "family_erase"))
        goto out;
    const char *v = PQntuples(res) ? PQgetvalue(res, 0, 0) : "not_found";
    if (strcmp(v, "ok") != 0) {
        int status = strcmp(v, "conflict") == 0 ? 409 : 404;
        jsonapi_reply_errorf(req, status, status == 409 ? "conflict" : "not_found", NULL, "%s",
                             PQgetvalue(res, 0, 1));
        goto out;
    }
    auth_users_changed();               /* its tokens and sessions end here now */
    mail_sender_kick(op->app->mail);    /* the report */
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    apidoc_printf(&d, "{\"data\":{\"type\":\"erasures\",\"id\":\"%s\",\"attributes\":",
                  PQgetvalue(res, 0, 2));
    apidoc_addn(&d, PQgetvalue(res, 0, 3), (size_t)PQgetlength(res, 0, 3));
    apidoc_add(&d, "}}");
    apidoc_reply(&d, req, 200);
out:
    free(op);
}

/* DELETE /api/v1/users/{id}/: the caller's own account, erased now. */
static void account_erase(struct http_req *req, struct app *app)
{
    const struct auth_user *me = auth_user(req);
    char uid[24], want[37];
    struct erase_op *op;

    if (!me || !apidoc_uuid_copy(http_req_param(req, 0), want) || strcmp(want, me->uuid) != 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No User matches the given query.");
        return;
    }
    if (!(op = calloc(1, sizeof *op))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    op->req = req;
    op->app = app;
    const char *params[] = { apidoc_user_id(req, uid) };
    if (pg_exec(app->pg, &account_erase_stmt, 1, params, account_erased, op) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        free(op);
    }
}

/* ------------------------------------------------------------ the download
 *
 * Each section's statement takes $1 user id, $2 the last key sent (0 at
 * first), $3 PRIVACY_BATCH and yields (key, one JSON text) ordered by key.
 * Everything held about the family, including records it hid (soft-deleted
 * children) and what researchers wrote about its responses. */

static const struct pg_stmt dl_account_stmt = {
    "privacy_dl_account",
    "SELECT v.id, (v.attrs::jsonb || jsonb_build_object('id', v.uuid, 'email', v.email))::text"
    "  FROM users_api v WHERE v.id = $1::bigint AND v.id > $2::bigint LIMIT $3::bigint",
};

static const struct pg_stmt dl_children_stmt = {
    "privacy_dl_children",
    "SELECT c.id, json_build_object('id', c.uuid, 'attributes', c.attrs)"
    "  FROM children_api c WHERE c.user_id = $1::bigint AND c.id > $2::bigint"
    " ORDER BY c.id LIMIT $3::bigint",
};

static const struct pg_stmt dl_demographics_stmt = {
    "privacy_dl_demographics",
    "SELECT d.id, json_build_object('id', d.uuid, 'attributes', d.attrs)"
    "  FROM demographics_api d WHERE d.user_id = $1::bigint AND d.id > $2::bigint"
    " ORDER BY d.id LIMIT $3::bigint",
};

static const struct pg_stmt dl_responses_stmt = {
    "privacy_dl_responses",
    "SELECT r.id, json_build_object('id', r.uuid, 'study', json_build_object('id', s.uuid,"
    "     'name', s.name), 'child', c.uuid, 'date_created', api_time(r.date_created),"
    "   'completed', r.completed, 'completed_consent_frame', r.completed_consent_frame,"
    "   'withdrawn', r.withdrawn, 'is_preview', r.is_preview, 'consent', consent_status(r.id),"
    "   'eligibility', to_json(r.eligibility), 'sequence', r.sequence,"
    "   'conditions', r.conditions, 'global_event_timings', r.global_event_timings,"
    "   'researcher_payment_status', r.researcher_payment_status,"
    "   'researcher_session_status', r.researcher_session_status,"
    "   'researcher_star', r.researcher_star, 'exp_data', r.exp_data)"
    "  FROM responses r JOIN children c ON c.id = r.child_id JOIN studies s ON s.id = r.study_id"
    " WHERE c.user_id = $1::bigint AND r.id > $2::bigint ORDER BY r.id LIMIT $3::bigint",
};

static const struct pg_stmt dl_feedback_stmt = {
    "privacy_dl_feedback",
    "SELECT f.id, json_build_object('id', f.uuid, 'response', r.uuid, 'comment', f.comment,"
    "   'created_at', api_time(f.created_at))"
    "  FROM feedback f JOIN responses r ON r.id = f.response_id"
    "  JOIN children c ON c.id = r.child_id"
    " WHERE c.user_id = $1::bigint AND f.id > $2::bigint ORDER BY f.id LIMIT $3::bigint",
};

static const struct pg_stmt dl_messages_stmt = {
    "privacy_dl_messages",
    "SELECT m.id, family_message_json(m) FROM family_messages m"
    " WHERE m.user_id = $1::bigint AND m.id > $2::bigint ORDER BY m.id LIMIT $3::bigint",
};

static const struct pg_stmt dl_videos_stmt = {
    "privacy_dl_videos",
    "SELECT v.id, json_build_object('id', v.uuid, 'full_name', v.full_name,"
    "   'response', r.uuid, 'frame_id', v.frame_id, 'is_consent_footage', v.is_consent_footage,"
    "   'created_at', api_time(v.created_at))"
    "  FROM videos v JOIN responses r ON r.id = v.response_id"
    "  JOIN children c ON c.id = r.child_id"
    " WHERE c.user_id = $1::bigint AND v.id > $2::bigint ORDER BY v.id LIMIT $3::bigint",
};

static const struct {
    const char *name;               /* the key in the file */
    const struct pg_stmt *stmt;
} sections[] = {
    { "account", &dl_account_stmt },
    { "children", &dl_children_stmt },
    { "demographics", &dl_demographics_stmt },
    { "responses", &dl_responses_stmt },
    { "feedback", &dl_feedback_stmt },
    { "messages", &dl_messages_stmt },
    { "videos", &dl_videos_stmt },
};
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* $1 user: the access-log entry (no study: the family's own data). */
static const struct pg_stmt dl_log_stmt = {
    "privacy_dl_log",
    "SELECT access_log_write($1::bigint, NULL, 'family_data', 'own', '{}')",
};

enum dl_state { DL_START, DL_FETCHING, DL_WAITING, DL_DONE };
static const char *const dl_state_names[] = { "start", "fetching", "waiting", "done" };

struct fam_dl {
    enum dl_state state;
    struct http_req *req;       /* borrowed until dl_finish ends it */
    struct app *app;            /* borrowed */
    struct event *timer;        /* owned: the WAITING poll */
    char user_id[24];
    size_t section;             /* index into sections */
    char after[24];             /* the last key sent in this section */
    bool any;                   /* an element of this section was sent */
    long rows;
};

static void dl_fetch(struct fam_dl *j);

static void dl_set_state(struct fam_dl *j, enum dl_state s)
{
    log_debug("family data %s: %s -> %s", j->user_id, dl_state_names[j->state],
              dl_state_names[s]);
    j->state = s;
}

/* Ends the reply and frees the job: the only place either happens.  A
 * stream cut short is left as invalid JSON, so it cannot pass for whole. */
static void dl_finish(struct fam_dl *j, const char *failure)
{
    if (failure) {
        log_warn("family data of user %s stopped after %ld rows: %s", j->user_id, j->rows,
                 failure);
        if (!http_req_client_gone(j->req))
            http_reply_chunk(j->req, "\n# download failed\n", 19);
    }
    dl_set_state(j, DL_DONE);
    http_reply_end(j->req);
    if (j->timer)
        event_free(j->timer);
    free(j);
}

static void dl_batch_done(PGresult *res, void *arg)
{
    struct fam_dl *j = arg;
    struct evbuffer *out;
    int n;

    if (http_req_client_gone(j->req) || j->app->draining) {
        dl_finish(j, "the client went away or the server stops");
        return;
    }
    if (!res || !pg_ok(res)) {
        if (res)
            log_error("family data: %s", PQresultErrorMessage(res));
        dl_finish(j, "a database error");
        return;
    }
    if (!(out = evbuffer_new())) {
        dl_finish(j, "out of memory");
        return;
    }
    n = PQntuples(res);
    for (int row = 0; row < n; row++) {
        if (j->any)
            evbuffer_add(out, ",\n", 2);
        evbuffer_add(out, PQgetvalue(res, row, 1), (size_t)PQgetlength(res, row, 1));
        j->any = true;
        j->rows++;
    }
    if (n > 0)
        snprintf(j->after, sizeof j->after, "%s", PQgetvalue(res, n - 1, 0));
    if (n < PRIVACY_BATCH) {
        /* The section is complete: close it, open the next or the file. */
        evbuffer_add(out, "]", 1);
        j->section++;
        j->any = false;
        strcpy(j->after, "0");
        if (j->section < NSECTIONS)
            evbuffer_add_printf(out, ",\n\"%s\":[", sections[j->section].name);
        else
            evbuffer_add(out, "}\n", 2);
    }
    http_reply_chunk_buffer(j->req, out);
    evbuffer_free(out);
    if (j->section == NSECTIONS) {
        log_info("family data of user %s: %ld rows", j->user_id, j->rows);
        dl_finish(j, NULL);
        return;
    }
    dl_fetch(j);
}

static void dl_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dl_fetch(arg);
}

/* The next batch, once the client has taken enough of the last. */
static void dl_fetch(struct fam_dl *j)
{
    static const struct timeval wait = { 0, EXPORT_WAIT_MS * 1000 };
    char limit[16];

    if (http_req_client_gone(j->req) || j->app->draining) {
        dl_finish(j, "the client went away or the server stops");
        return;
    }
    if (http_reply_pending(j->req) > EXPORT_PENDING_MAX) {
        dl_set_state(j, DL_WAITING);
        if (!j->timer && !(j->timer = evtimer_new(j->app->base, dl_on_timer, j))) {
            dl_finish(j, "out of memory");
            return;
        }
        evtimer_add(j->timer, &wait);
        return;
    }
    dl_set_state(j, DL_FETCHING);
    snprintf(limit, sizeof limit, "%d", PRIVACY_BATCH);
    const char *params[] = { j->user_id, j->after, limit };
    if (pg_exec(j->app->pg, sections[j->section].stmt, 3, params, dl_batch_done, j) < 0)
        dl_finish(j, "out of memory");
}

static void dl_logged(PGresult *res, void *arg)
{
    struct fam_dl *j = arg;
    struct http_req *req = j->req;
    char disp[128];

    /* No entry in the access log, no data. */
    if (apidoc_db_failed(req, res, "access_log_write")) {
        free(j);
        return;
    }
    snprintf(disp, sizeof disp, "attachment; filename=\"studyhub-my-data.json\"");
    http_add_header(req, "Content-Disposition", disp);
    http_reply_start(req, 200, "application/json; charset=utf-8");
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        dl_finish(j, "out of memory");
        return;
    }
    evbuffer_add_printf(out, "{\"format\":\"studyhub-family-data-1\",\n\"%s\":[",
                        sections[0].name);
    http_reply_chunk_buffer(req, out);
    evbuffer_free(out);
    dl_fetch(j);
}

/* GET /api/v1/users/{id}/data/: the caller's own data only. */
static void family_download(struct http_req *req, struct app *app)
{
    const struct auth_user *me = auth_user(req);
    char want[37];
    struct fam_dl *j;

    if (!me || !apidoc_uuid_copy(http_req_param(req, 0), want) || strcmp(want, me->uuid) != 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No User matches the given query.");
        return;
    }
    if (!(j = calloc(1, sizeof *j))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    j->req = req;
    j->app = app;
    apidoc_user_id(req, j->user_id);
    strcpy(j->after, "0");
    const char *params[] = { j->user_id };
    if (pg_exec(app->pg, &dl_log_stmt, 1, params, dl_logged, j) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        free(j);
    }
}

static const struct route privacy_route_table[] = {
    /* The caller's own account only: no research rights apply. */
    { HTTP_DELETE, "/api/v1/users/{id}/", account_erase, ROUTE_USER },
    { HTTP_GET, "/api/v1/users/{id}/data/", family_download, ROUTE_USER },
};

int privacy_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, privacy_route_table);
}
