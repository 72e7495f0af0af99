/* workflow: firing study transitions (one statement: conditional state
 * update, study log, queued emails) and the workflow as JSON, dot and SVG.
 * The table itself is data (sql/030_workflow.sql); nothing here knows a
 * state or trigger by name. */
#include "studyhub/domain/workflow.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"

/* Longest comment kept with a transition (bytes). */
#define WORKFLOW_COMMENTS_MAX 10000
/* Longest trigger name (the table's CHECK says the same). */
#define WORKFLOW_TRIGGER_MAX 32
/* How long Graphviz may take to draw nine boxes, and how much SVG we keep. */
#define WORKFLOW_DOT_TIMEOUT_MS 10000
#define WORKFLOW_SVG_MAX (1024 * 1024)

/* ------------------------------------------------------------ transitions */

/* $1 user, $2 study uuid, $3 trigger, $4 comments, $5 base URL.
 *
 * One statement, so one transaction: the checks read the statement's
 * snapshot, and the UPDATE changes the row only if its state is still the
 * transition's from_state (and the guard still holds) when it gets the
 * row lock.  A transition that committed meanwhile makes that re-check
 * fail: upd is empty, nothing is logged or queued, and the answer is 409.
 * The log and mail CTEs read upd, so they run exactly when it changed a
 * row.  The result is perms.h's (verdict, detail, pointer, doc). */
static const struct pg_stmt workflow_fire_stmt = {
    "workflow_fire",
    "WITH s AS ("
    "  SELECT st.id, st.uuid, st.name, st.state, st.creator_id, st AS srow,"
    "         " PERMS_STUDY_SQL("$1::bigint", "st.id", "'read_study__details'") " AS can_read"
    "    FROM studies st WHERE st.uuid = $2::uuid),"
    " t AS (SELECT wt.* FROM workflow_transitions wt JOIN s ON wt.from_state = s.state"
    "        WHERE wt.trigger = $3::text),"
    /* The permission of the trigger: of its row from the current state, or
     * (to say 403 rather than 409 to someone who may never fire it) of any
     * of its rows. */
    " perm AS (SELECT coalesce((SELECT permission FROM t),"
    "                          (SELECT min(permission) FROM workflow_transitions"
    "                            WHERE trigger = $3::text)) AS name),"
    " froms AS (SELECT string_agg(wt.from_state, ', ' ORDER BY ws.position) AS list"
    "             FROM workflow_transitions wt JOIN workflow_states ws ON ws.name = wt.from_state"
    "            WHERE wt.trigger = $3::text),"
    " chk AS (SELECT s.*, "
    "         " PERMS_STUDY_SQL("$1::bigint", "s.id", "(SELECT name FROM perm)") " AS allowed"
    "           FROM s),"
    " upd AS ("
    "  UPDATE studies st SET state = t.to_state, status_change_date = now()"
    "    FROM chk, t"
    "   WHERE st.id = chk.id AND chk.can_read AND chk.allowed"
    "     AND st.state = t.from_state AND workflow_guard_ok(t.guard, st)"
    "  RETURNING st.id, st.uuid, st.name, st.creator_id, t.from_state, st.state AS to_state,"
    "            t.notify, t.subject, study_research_resource(st, $5::text) AS resource),"
    " log AS ("
    "  INSERT INTO study_logs (study_id, user_id, action, extra)"
    "  SELECT u.id, $1::bigint, u.to_state,"
    "         jsonb_build_object('comments', $4::text, 'from', u.from_state, 'trigger', $3::text)"
    "    FROM upd u RETURNING id),"
    " mail AS ("
    "  INSERT INTO mail_outbox (kind, to_addr, subject, body_text)"
    "  SELECT 'study_' || $3::text, r.email, format(u.subject, u.name),"
    "         workflow_email_body(format(u.subject, u.name), u.name, u.uuid, u.from_state,"
    "                             u.to_state, $3::text, $1::bigint, $4::text)"
    "    FROM upd u, LATERAL workflow_recipients(u.id, u.creator_id, u.notify) r"
    "  RETURNING 1)"
    " SELECT CASE WHEN c.id IS NULL OR NOT c.can_read THEN 'not_found'"
    "             WHEN (SELECT name FROM perm) IS NULL THEN 'invalid'"
    "             WHEN NOT c.allowed THEN 'forbidden'"
    "             WHEN EXISTS (SELECT 1 FROM upd) THEN 'ok'"
    "             ELSE 'conflict' END,"
    "        CASE WHEN c.id IS NULL OR NOT c.can_read THEN 'No Study matches the given query.'"
    "             WHEN (SELECT name FROM perm) IS NULL THEN"
    "               format('Unknown trigger \"%s\"; the triggers are: %s.', $3::text,"
    "                      (SELECT string_agg(trigger, ', ' ORDER BY position) FROM"
    "                         (SELECT DISTINCT trigger, position FROM workflow_transitions) d))"
    "             WHEN NOT c.allowed THEN"
    "               format('You may not %s this study (%s).', $3::text, (SELECT name FROM perm))"
    "             WHEN EXISTS (SELECT 1 FROM upd) THEN NULL"
    "             WHEN NOT EXISTS (SELECT 1 FROM t) THEN"
    "               format('Cannot %s a study that is %s: %s is allowed from %s.',"
    "                      $3::text, c.state, $3::text, (SELECT list FROM froms))"
    "             WHEN NOT workflow_guard_ok((SELECT guard FROM t), c.srow) THEN"
    "               format('Cannot %s: %s.', $3::text,"
    "                      (SELECT g.refusal FROM workflow_guards g JOIN t ON g.name = t.guard))"
    "             ELSE format('The study changed state while this %s was being made (it was %s);"
    " reload it and try again.', $3::text, c.state) END,"
    "        CASE WHEN c.can_read AND (SELECT name FROM perm) IS NULL THEN '/trigger' END,"
    "        (SELECT json_build_object('data', u.resource, 'meta', json_build_object("
    "                  'transition', json_build_object("
    "                    'trigger', $3::text, 'from', u.from_state, 'to', u.to_state,"
    "                    'comments', $4::text, 'log', (SELECT id FROM log),"
    "                    'emails_queued', (SELECT count(*) FROM mail))))"
    "           FROM upd u)"
    "   FROM (SELECT 1) one LEFT JOIN chk c ON true",
};

/* Content-Type: application/json or JSON:API, parameters allowed. */
static bool json_content_type(const char *ct)
{
    static const char *const ok[] = { "application/json", JSONAPI_MEDIA_TYPE };
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n && isspace((unsigned char)ct[n - 1]))
        n--;
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (n == strlen(ok[i]) && strncasecmp(ct, ok[i], n) == 0)
            return true;
    return false;
}

static bool trigger_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!(s[n] == '_' || (s[n] >= 'a' && s[n] <= 'z')))
            return false;
    return n >= 1 && n <= WORKFLOW_TRIGGER_MAX;
}

/* Checks the body {"trigger": "...", "comments": "..."}; on success *doc
 * holds the parsed body (the strings point into it). */
static int transition_parse(struct http_req *req, json_t **doc, const char **trigger,
                            const char **comments, struct jsonapi_error *e)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    const char *key;
    json_t *v;

    *doc = NULL;
    if (!json_content_type(http_req_header(req, "Content-Type"))) {
        jsonapi_error_set(e, 415, "unsupported_media_type", NULL,
                          "Send the transition as application/json.");
        return -1;
    }
    if (!(*doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr))) {
        jsonapi_error_set(e, 400, "parse_error", "", "JSON parse error - %s", jerr.text);
        return -1;
    }
    if (!json_is_object(*doc)) {
        jsonapi_error_set(e, 400, "parse_error", "",
                          "The body must be an object: {\"trigger\": ..., \"comments\": ...}.");
        return -1;
    }
    json_object_foreach(*doc, key, v) {
        if (strcmp(key, "trigger") != 0 && strcmp(key, "comments") != 0) {
            jsonapi_error_set(e, 400, "invalid", "", "Unknown member \"%.64s\": only trigger"
                              " and comments are accepted.", key);
            return -1;
        }
    }
    v = json_object_get(*doc, "trigger");
    if (!v) {
        jsonapi_error_set(e, 400, "required", "/trigger", "This field is required.");
        return -1;
    }
    if (!json_is_string(v) || !trigger_ok(json_string_value(v))) {
        jsonapi_error_set(e, 400, "invalid", "/trigger",
                          "A trigger is a name like \"submit\" (lower-case letters and _).");
        return -1;
    }
    *trigger = json_string_value(v);
    v = json_object_get(*doc, "comments");
    *comments = "";
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            jsonapi_error_set(e, 400, "invalid", "/comments", "Comments must be a string.");
            return -1;
        }
        if (json_string_length(v) > WORKFLOW_COMMENTS_MAX) {
            jsonapi_error_set(e, 400, "invalid", "/comments",
                              "Comments are limited to %d bytes.", WORKFLOW_COMMENTS_MAX);
            return -1;
        }
        *comments = json_string_value(v);
    }
    return 0;
}

static void h_fire(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    const char *trigger, *comments;
    json_t *doc = NULL;
    char uid[24], su[37];

    /* A study id that is no uuid names nothing: 404 before the body. */
    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        goto out;
    }
    if (transition_parse(req, &doc, &trigger, &comments, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), su, trigger, comments,
                             http_req_base_url(req) };
    perms_exec(req, app, &workflow_fire_stmt, 5, params);   /* copies params */
out:
    json_decref(doc);
}

/* ------------------------------------------------------------ the table */

/* $1 user, $2 study uuid or NULL.  The table, and with a study the caller
 * may read: its state, the state it came from (the latest log of its
 * current state that says where from) and what can happen next. */
static const struct pg_stmt workflow_table_stmt = {
    "workflow_table",
    "WITH st AS (SELECT s AS srow, s.id, s.uuid, s.name, s.state FROM studies s"
    "             WHERE s.uuid = $2::uuid"
    "               AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'") ")"
    " SELECT CASE WHEN $2::uuid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM st)"
    "             THEN 'not_found' ELSE 'ok' END,"
    "        'No Study matches the given query.', NULL,"
    "        json_build_object('data', json_build_object("
    "          'type', 'workflows', 'id', 'studies',"
    "          'attributes', json_build_object("
    "            'states', (SELECT json_agg(json_build_object('name', ws.name,"
    "                                'description', ws.description) ORDER BY ws.position)"
    "                         FROM workflow_states ws),"
    "            'transitions', (SELECT json_agg(json_build_object("
    "                                'trigger', t.trigger, 'from', t.from_state, 'to', t.to_state,"
    "                                'permission', t.permission, 'guard', t.guard,"
    "                                'notify', t.notify) ORDER BY t.position, fs.position)"
    "                              FROM workflow_transitions t"
    "                              JOIN workflow_states fs ON fs.name = t.from_state),"
    "            'guards', (SELECT coalesce(json_object_agg(g.name, g.refusal), '{}'::json)"
    "                         FROM workflow_guards g),"
    "            'study', (SELECT json_build_object("
    "                'id', st.uuid, 'name', st.name, 'state', st.state,"
    "                'previous_state', (SELECT l.extra->>'from' FROM study_logs l"
    "                                    WHERE l.study_id = st.id AND l.action = st.state"
    "                                      AND l.extra ? 'from'"
    "                                    ORDER BY l.created_at DESC, l.id DESC LIMIT 1),"
    "                'next', (SELECT coalesce(json_agg(json_build_object("
    "                            'trigger', t.trigger, 'to', t.to_state,"
    "                            'allowed', " PERMS_STUDY_SQL("$1::bigint", "st.id", "t.permission") ","
    "                            'guard_ok', workflow_guard_ok(t.guard, st.srow))"
    "                            ORDER BY t.position), '[]'::json)"
    "                           FROM workflow_transitions t WHERE t.from_state = st.state))"
    "                FROM st))))",
};

enum workflow_format { WF_JSON, WF_DOT, WF_SVG };

/* A GET /api/v1/workflow between its query and its reply (and, for SVG,
 * its child). */
struct wf_get {
    struct http_req *req;        /* borrowed until replied */
    struct app *app;             /* borrowed */
    enum workflow_format format;
    int roi_only;                /* draw only the region of interest */
    char path[256];              /* the dot source for Graphviz; "" if none */
};

static void wf_get_free(struct wf_get *g)
{
    if (!g)
        return;
    if (g->path[0] && unlink(g->path) < 0 && errno != ENOENT)
        log_warn("workflow: cannot remove %s: %s", g->path, strerror(errno));
    free(g);
}

/* Dot strings: quoted, with quotes, backslashes and newlines escaped. */
static void dot_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            evbuffer_add_printf(out, "\\%c", *s);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Where a state stands relative to the study (bits). */
enum { ROI_CURRENT = 1, ROI_PREVIOUS = 2, ROI_REACHABLE = 4 };

static int state_roi(const char *name, const char *cur, const char *prev, const json_t *next)
{
    int r = 0;
    size_t i;
    json_t *n;

    if (str_eq(name, cur))
        r |= ROI_CURRENT;
    if (str_eq(name, prev))
        r |= ROI_PREVIOUS;
    json_array_foreach(next, i, n)
        if (str_eq(name, jstr(n, "to")))
            r |= ROI_REACHABLE;
    return r;
}

/* The study's "next" entry of a trigger from the current state. */
static const json_t *next_of(const json_t *next, const char *trigger)
{
    size_t i;
    json_t *n;

    json_array_foreach(next, i, n)
        if (str_eq(jstr(n, "trigger"), trigger))
            return n;
    return NULL;
}

int workflow_dot(const json_t *attrs, int roi_only, struct evbuffer *out)
{
    const json_t *states = json_object_get(attrs, "states");
    const json_t *trans = json_object_get(attrs, "transitions");
    const json_t *study = json_object_get(attrs, "study");
    const json_t *next = json_object_get(study, "next");
    const char *cur = jstr(study, "state"), *prev = jstr(study, "previous_state");
    bool have_study = json_is_object(study) && cur;
    size_t i;
    json_t *v;

    if (!json_is_array(states) || !json_is_array(trans))
        return -1;
    roi_only = roi_only && have_study;
    evbuffer_add_printf(out, "digraph workflow {\n"
                             "  rankdir=LR;\n"
                             "  fontname=\"Helvetica\";\n"
                             "  node [shape=box, style=\"rounded\", fontname=\"Helvetica\"];\n"
                             "  edge [fontname=\"Helvetica\", fontsize=10];\n");
    if (have_study) {
        evbuffer_add_printf(out, "  labelloc=t;\n  label=");
        char label[512];
        snprintf(label, sizeof label, "%s: %s", jstr(study, "name") ? jstr(study, "name") : "study",
                 cur);
        dot_str(out, label);
        evbuffer_add_printf(out, ";\n");
    }
    json_array_foreach(states, i, v) {
        const char *name = jstr(v, "name");
        if (!name)
            return -1;
        int roi = have_study ? state_roi(name, cur, prev, next) : 0;
        if (roi_only && !roi)
            continue;
        evbuffer_add(out, "  ", 2);
        dot_str(out, name);
        evbuffer_add_printf(out, " [tooltip=");
        dot_str(out, jstr(v, "description"));
        if (roi & ROI_CURRENT)
            evbuffer_add_printf(out, ", style=\"rounded,filled,bold\", fillcolor=\"#f4a261\","
                                     " penwidth=2");
        else if (roi & ROI_REACHABLE)
            evbuffer_add_printf(out, ", style=\"rounded,filled%s\", fillcolor=\"#a8dadc\"",
                                roi & ROI_PREVIOUS ? ",dashed" : "");
        else if (roi & ROI_PREVIOUS)
            evbuffer_add_printf(out, ", style=\"rounded,filled,dashed\", fillcolor=\"#e9ecef\"");
        else if (have_study)
            evbuffer_add_printf(out, ", color=\"gray60\", fontcolor=\"gray50\"");
        evbuffer_add_printf(out, "];\n");
    }
    json_array_foreach(trans, i, v) {
        const char *trigger = jstr(v, "trigger"), *from = jstr(v, "from"), *to = jstr(v, "to");
        const char *guard = jstr(v, "guard");
        char label[128];

        if (!trigger || !from || !to)
            return -1;
        bool from_cur = have_study && str_eq(from, cur);
        bool taken = have_study && str_eq(from, prev) && str_eq(to, cur);
        if (roi_only && !from_cur && !taken)
            continue;
        snprintf(label, sizeof label, "%s%s%s%s", trigger, guard ? "\n[" : "",
                 guard ? guard : "", guard ? "]" : "");
        evbuffer_add(out, "  ", 2);
        dot_str(out, from);
        evbuffer_add_printf(out, " -> ");
        dot_str(out, to);
        evbuffer_add_printf(out, " [label=");
        if (from_cur) {
            const json_t *n = next_of(next, trigger);
            bool allowed = n && json_is_true(json_object_get(n, "allowed"));
            bool guard_ok = !n || json_is_true(json_object_get(n, "guard_ok"));
            if (!guard_ok)
                snprintf(label, sizeof label, "%s\n[%s: not yet]", trigger, guard ? guard : "guard");
            dot_str(out, label);
            evbuffer_add_printf(out, ", color=\"#1d3557\", fontcolor=\"#1d3557\", penwidth=2%s",
                                allowed && guard_ok ? "" : ", style=dashed");
        } else if (taken) {
            dot_str(out, label);
            evbuffer_add_printf(out, ", color=\"#457b9d\", fontcolor=\"#457b9d\", style=dashed");
        } else {
            dot_str(out, label);
            if (have_study)
                evbuffer_add_printf(out, ", color=\"gray70\", fontcolor=\"gray50\"");
        }
        evbuffer_add_printf(out, "];\n");
    }
    evbuffer_add_printf(out, "}\n");
    return 0;
}

/* Graphviz finished: the SVG, or why not. */
static void svg_done(const struct proc_result *r, void *arg)
{
    struct wf_get *g = arg;

    if (proc_result_ok(r) && r->out_total == r->out_len && r->out_len > 0) {
        http_reply(g->req, 200, "image/svg+xml", r->out, r->out_len);
    } else {
        char why[128];
        proc_result_describe(r, why, sizeof why);
        log_warn("workflow: dot failed (%s): %.300s", why, r->err ? r->err : "");
        jsonapi_reply_errorf(g->req, 503, "unavailable", NULL,
                             "Graphviz could not draw the workflow (%s); ?format=dot gives"
                             " the source.", why);
    }
    wf_get_free(g);
}

static void reply_no_graphviz(struct http_req *req, const char *why)
{
    jsonapi_reply_errorf(req, 501, "not_implemented", NULL,
                         "SVG needs Graphviz's dot program (Debian package graphviz; "
                         "GRAPHVIZ_DOT names it): %s. ?format=dot gives the source.", why);
}

/* Writes the source to a file Graphviz reads (its stdin is /dev/null) and
 * starts it.  Returns true when the child owns g now. */
static bool svg_start(struct wf_get *g, struct evbuffer *src)
{
    const char *dot = g->app->cfg->graphviz_dot;
    const char *tmp = getenv("TMPDIR");
    char err[256];
    int fd;

    if (!dot || !*dot) {
        reply_no_graphviz(g->req, "GRAPHVIZ_DOT is empty");
        return false;
    }
    snprintf(g->path, sizeof g->path, "%s/studyhub-workflow-XXXXXX.dot",
             tmp && *tmp && strlen(tmp) < 200 ? tmp : "/tmp");
    /* A few KB written once: not worth a trip off the loop. */
    if ((fd = mkstemps(g->path, 4)) < 0) {
        log_error("workflow: cannot create %s: %s", g->path, strerror(errno));
        g->path[0] = '\0';
        jsonapi_reply_errorf(g->req, 503, "unavailable", NULL, "Cannot draw the workflow now.");
        return false;
    }
    bool written = evbuffer_write(src, fd) >= 0 && evbuffer_get_length(src) == 0;
    if (close(fd) < 0 || !written) {
        log_error("workflow: cannot write %s", g->path);
        jsonapi_reply_errorf(g->req, 503, "unavailable", NULL, "Cannot draw the workflow now.");
        return false;
    }
    const char *argv[] = { dot, "-Tsvg", g->path, NULL };
    struct proc_opts o = {
        .argv = argv,
        .timeout_ms = WORKFLOW_DOT_TIMEOUT_MS,
        .tail_bytes = WORKFLOW_SVG_MAX,
    };
    if (!proc_spawn(g->app->procs, &o, svg_done, g, err, sizeof err)) {
        reply_no_graphviz(g->req, err);
        return false;
    }
    return true;
}

static void table_got(PGresult *res, void *arg)
{
    struct wf_get *g = arg;
    struct evbuffer *src = NULL;
    json_t *doc = NULL;

    /* Errors and the JSON format are replied to as they come. */
    if (g->format == WF_JSON || !res || !pg_ok(res) || PQntuples(res) != 1 ||
        strcmp(PQgetvalue(res, 0, PERMS_COL_VERDICT), "ok") != 0) {
        perms_reply(g->req, res);
        goto out;
    }
    json_error_t jerr;
    doc = json_loads(PQgetvalue(res, 0, PERMS_COL_DOC), 0, &jerr);
    json_t *attrs = json_object_get(json_object_get(doc, "data"), "attributes");
    if (!(src = evbuffer_new()) || !attrs || workflow_dot(attrs, g->roi_only, src) < 0) {
        log_error("workflow: cannot draw the table (%s)", doc ? "bad document" : jerr.text);
        jsonapi_reply_errorf(g->req, 500, "error", NULL, "A server error occurred.");
        goto out;
    }
    if (g->format == WF_DOT) {
        http_reply_buffer(g->req, 200, "text/vnd.graphviz; charset=utf-8", src);
        goto out;
    }
    if (svg_start(g, src))
        g = NULL;                     /* svg_done replies and frees */
out:
    if (src)
        evbuffer_free(src);
    json_decref(doc);
    wf_get_free(g);
}

static void h_table(struct http_req *req, struct app *app)
{
    const char *format = http_req_query(req, "format");
    const char *study = http_req_query(req, "study");
    const char *roi = http_req_query(req, "roi");
    struct wf_get *g = NULL;
    char uid[24], su[37];

    if (!(g = calloc(1, sizeof *g))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    g->req = req;
    g->app = app;
    if (!format || strcmp(format, "json") == 0)
        g->format = WF_JSON;
    else if (strcmp(format, "dot") == 0)
        g->format = WF_DOT;
    else if (strcmp(format, "svg") == 0)
        g->format = WF_SVG;
    else {
        jsonapi_reply_errorf(req, 400, "invalid", NULL,
                             "format must be json, dot or svg.");
        goto out;
    }
    if (roi && strcmp(roi, "0") != 0 && strcmp(roi, "1") != 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "roi must be 0 or 1.");
        goto out;
    }
    g->roi_only = roi && strcmp(roi, "1") == 0;
    if (g->roi_only && !study) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL,
                             "roi=1 draws a study's region of interest: give study too.");
        goto out;
    }
    if (study && !apidoc_uuid_copy(study, su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), study ? su : NULL };
    if (pg_exec(app->pg, &workflow_table_stmt, 2, params, table_got, g) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        goto out;
    }
    g = NULL;                         /* the callback owns it */
out:
    wf_get_free(g);
}

static const struct route workflow_route_table[] = {
    { HTTP_POST, "/api/v1/studies/{id}/transitions/", h_fire, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/workflow/?", h_table, ROUTE_USER },
};

int workflow_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, workflow_route_table);
}
