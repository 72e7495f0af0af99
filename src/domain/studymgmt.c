/* studymgmt: researcher study routes (create, edit, clone, groups, logs,
 * lists).  Each handler checks the shape of its input here, so PostgreSQL
 * only sees well-formed values, then sends one statement that checks the
 * permissions and makes the change (sql/030_workflow.sql); perms.c turns
 * its verdict into the reply. */
#include "studyhub/domain/studymgmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/eligibility.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

#define NOT_FOUND_STUDY "No Study matches the given query."

/* ------------------------------------------------------------ attributes */

int studymgmt_attrs_check(const json_t *attrs, const struct studymgmt_field *fields,
                          size_t nfields, json_t **clean, struct jsonapi_error *e)
{
    const char *key;
    json_t *v;
    char ptr[128];

    if (!(*clean = json_object())) {
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
        return -1;
    }
    json_object_foreach((json_t *)attrs, key, v) {
        const struct studymgmt_field *f = NULL;
        for (size_t i = 0; i < nfields && !f; i++)
            if (strcmp(fields[i].name, key) == 0)
                f = &fields[i];
        snprintf(ptr, sizeof ptr, "/data/attributes/%.100s", key);
        if (!f) {
            jsonapi_error_set(e, 400, "invalid", ptr, "Unknown attribute.");
            goto fail;
        }
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        bool ok = true;
        switch (f->kind) {
        case SM_READONLY:
            continue;
        case SM_TEXT:
            ok = s && len <= (size_t)f->max;
            break;
        case SM_NAME:
            ok = s && len >= 1 && len <= (size_t)f->max;
            break;
        case SM_TEXT_NULL:
            ok = json_is_null(v) || (s && len <= (size_t)f->max);
            break;
        case SM_URL:
            ok = s && len <= (size_t)f->max &&
                 (len == 0 || strncasecmp(s, "http://", 7) == 0 ||
                  strncasecmp(s, "https://", 8) == 0) &&
                 !strpbrk(s, " \t\r\n");
            break;
        case SM_SLUG:
            ok = s && len <= (size_t)f->max && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
            break;
        case SM_INT:
            ok = json_is_integer(v) && json_integer_value(v) >= f->min &&
                 json_integer_value(v) <= f->max;
            break;
        case SM_BOOL:
            ok = json_is_boolean(v);
            break;
        case SM_OBJECT:
            ok = json_is_object(v);
            break;
        }
        if (!ok) {
            switch (f->kind) {
            case SM_NAME:
                jsonapi_error_set(e, 400, "invalid", ptr,
                                  "A non-empty string of at most %ld bytes is required.", f->max);
                break;
            case SM_URL:
                jsonapi_error_set(e, 400, "invalid", ptr,
                                  "Enter a valid http(s) URL (or an empty string).");
                break;
            case SM_SLUG:
                jsonapi_error_set(e, 400, "invalid", ptr,
                                  "Use lower-case letters, digits and hyphens.");
                break;
            case SM_INT:
                jsonapi_error_set(e, 400, "invalid", ptr,
                                  "An integer from %ld to %ld is required.", f->min, f->max);
                break;
            case SM_BOOL:
                jsonapi_error_set(e, 400, "invalid", ptr, "Must be a valid boolean.");
                break;
            case SM_OBJECT:
                jsonapi_error_set(e, 400, "invalid", ptr, "Must be a JSON object.");
                break;
            default:
                jsonapi_error_set(e, 400, "invalid", ptr,
                                  "A string of at most %ld bytes is required.", f->max);
                break;
            }
            goto fail;
        }
        json_object_set(*clean, key, v);
    }
    return 0;
fail:
    json_decref(*clean);
    *clean = NULL;
    return -1;
}

#define TEXT_LONG 20000
#define AGE_MAX 100000

/* What a researcher may write, and what they may send back unchanged. */
static const struct studymgmt_field study_fields[] = {
    { "name", SM_NAME, 0, 255 },
    { "preview_summary", SM_TEXT, 0, TEXT_LONG },
    { "short_description", SM_TEXT, 0, TEXT_LONG },
    { "purpose", SM_TEXT, 0, TEXT_LONG },
    { "criteria", SM_TEXT, 0, TEXT_LONG },
    { "duration", SM_TEXT, 0, 255 },
    { "contact_info", SM_TEXT, 0, TEXT_LONG },
    { "compensation_description", SM_TEXT, 0, TEXT_LONG },
    { "min_age_days", SM_INT, 0, AGE_MAX },
    { "min_age_months", SM_INT, 0, AGE_MAX },
    { "min_age_years", SM_INT, 0, AGE_MAX },
    { "max_age_days", SM_INT, 0, AGE_MAX },
    { "max_age_months", SM_INT, 0, AGE_MAX },
    { "max_age_years", SM_INT, 0, AGE_MAX },
    { "criteria_expression", SM_TEXT, 0, TEXT_LONG },
    { "image", SM_TEXT_NULL, 0, 2000 },
    { "exit_url", SM_URL, 0, 2000 },
    { "priority", SM_INT, 1, 99 },
    { "comments", SM_TEXT, 0, TEXT_LONG },
    { "structure", SM_OBJECT, 0, 0 },
    { "generator", SM_TEXT, 0, 1048576 },
    { "use_generator", SM_BOOL, 0, 0 },
    { "display_full_screen", SM_BOOL, 0, 0 },
    { "public", SM_BOOL, 0, 0 },
    { "shared_preview", SM_BOOL, 0, 0 },
    { "metadata", SM_OBJECT, 0, 0 },
    { "study_type", SM_INT, 1, 3 },
    { "state", SM_READONLY, 0, 0 },
    { "status_change_date", SM_READONLY, 0, 0 },
    { "built", SM_READONLY, 0, 0 },
    { "is_building", SM_READONLY, 0, 0 },
    { "hash_digits", SM_READONLY, 0, 0 },
    { "date_created", SM_READONLY, 0, 0 },
    { "date_modified", SM_READONLY, 0, 0 },
    { "pk", SM_READONLY, 0, 0 },
};

static bool is_hex40(const char *s)
{
    return s && strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

/* The checks beyond a field's type: the criteria grammar (as upstream
 * validates on save), the runner pin in metadata (a blank or short SHA
 * broke upstream's builds, #506), the protocol's two members. */
static int study_checks(const json_t *clean, struct jsonapi_error *e)
{
    const json_t *v;

    if ((v = json_object_get(clean, "criteria_expression"))) {
        struct eligibility_child probe = { .age_days = 0, .gender = "na",
                                           .languages = "", .conditions = "" };
        bool met;
        char err[160];
        if (eligibility_criteria(json_string_value(v), &probe, &met, err, sizeof err) < 0) {
            jsonapi_error_set(e, 400, "invalid", "/data/attributes/criteria_expression",
                              "Invalid criteria expression: %s.", err);
            return -1;
        }
    }
    if ((v = json_object_get(clean, "metadata"))) {
        const json_t *sha = json_object_get(v, "last_known_player_sha");
        const json_t *url = json_object_get(v, "player_repo_url");
        if (sha && !json_is_null(sha) &&
            !(json_is_string(sha) && (json_string_length(sha) == 0 ||
                                      is_hex40(json_string_value(sha))))) {
            jsonapi_error_set(e, 400, "invalid", "/data/attributes/metadata",
                              "last_known_player_sha must be a full 40-character lower-case"
                              " commit SHA, or empty for the head of the default branch.");
            return -1;
        }
        if (url && !json_is_null(url) &&
            !(json_is_string(url) && (json_string_length(url) == 0 ||
                                      strncmp(json_string_value(url), "https://", 8) == 0))) {
            jsonapi_error_set(e, 400, "invalid", "/data/attributes/metadata",
                              "player_repo_url must be an https:// URL, or empty for the default.");
            return -1;
        }
    }
    if ((v = json_object_get(clean, "structure"))) {
        const json_t *frames = json_object_get(v, "frames"), *seq = json_object_get(v, "sequence");
        if ((frames && !json_is_object(frames)) || (seq && !json_is_array(seq))) {
            jsonapi_error_set(e, 400, "invalid", "/data/attributes/structure",
                              "structure.frames must be an object and structure.sequence an array.");
            return -1;
        }
    }
    return 0;
}

/* The lab of relationships.lab: 1 with its uuid, 0 when absent, -1 with e. */
static int lab_rel(json_t *data, char out[37], struct jsonapi_error *e)
{
    const char *id;
    int rc = jsonapi_rel_id(data, "lab", "labs", &id, e);
    if (rc == 1 && !apidoc_uuid_copy(id, out)) {
        jsonapi_error_set(e, 400, "invalid", "/data/relationships/lab",
                          "No lab with this id, or you cannot see it.");
        return -1;
    }
    return rc;
}

/* A request's document with checked attributes, as text for $::jsonb. */
struct study_input {
    json_t *data;                /* owned: the request's data member */
    json_t *clean;               /* owned: the writable attributes */
    char *attrs;                 /* owned: clean as JSON text */
    char lab[37];                /* relationships.lab, "" if absent */
};

static void study_input_cleanup(struct study_input *in)
{
    json_decref(in->data);
    json_decref(in->clean);
    free(in->attrs);
}

static int study_input_parse(struct http_req *req, const char *want_id, struct study_input *in,
                             struct jsonapi_error *e)
{
    memset(in, 0, sizeof *in);
    if (jsonapi_parse_request(req, "studies", want_id, &in->data, e) < 0 ||
        studymgmt_attrs_check(json_object_get(in->data, "attributes"), study_fields,
                              sizeof study_fields / sizeof *study_fields, &in->clean, e) < 0 ||
        study_checks(in->clean, e) < 0)
        return -1;
    int rc = lab_rel(in->data, in->lab, e);
    if (rc < 0)
        return -1;
    if (rc == 0)
        in->lab[0] = '\0';
    if (!(in->attrs = json_dumps(in->clean, JSON_COMPACT))) {
        jsonapi_error_set(e, 503, "unavailable", NULL, "Out of memory.");
        return -1;
    }
    return 0;
}

/* The {id} of the path as a lowercase uuid; false after replying 404. */
static bool path_study(struct http_req *req, char out[37])
{
    if (apidoc_uuid_copy(http_req_param(req, 0), out))
        return true;
    jsonapi_reply_errorf(req, 404, "not_found", NULL, NOT_FOUND_STUDY);
    return false;
}

/* ------------------------------------------------------------ statements */

/* The lists' order ($8: the review queue's), on vis and on the page. */
#define SM_LIST_ORDER                                                             \
    "CASE WHEN $8::boolean THEN status_change_date END ASC,"                      \
    " CASE WHEN $8::boolean THEN id END ASC, date_modified DESC, id DESC"
#define SM_LIST_ORDER_P                                                           \
    "CASE WHEN $8::boolean THEN p.status_change_date END ASC,"                    \
    " CASE WHEN $8::boolean THEN p.id END ASC, p.date_modified DESC, p.id DESC"

/* $1 user, $2 limit, $3 offset, $4 base URL, $5 state or NULL, $6 lab
 * uuid or NULL, $7 words the name must contain or NULL (a plain substring,
 * case-insensitive: like_contains escapes the LIKE wildcards, and a
 * trigram index serves it, sql/098), $8 true for the oldest state change
 * first (the review queue: the longest waiting study on top, and a tie
 * broken by id, so none is skipped between pages), else the newest change
 * first.  The permission is two small sets, not a call per study: a
 * site-wide holder reads every study, anyone else those of its labs'
 * umbrella grants and its own study grants (the same rules as
 * has_study_perm, sql/098).  Lists answer perms.h's (count,
 * item, verdict, detail, pointer). */
static const struct pg_stmt sm_list_stmt = {
    "sm_list",
    "WITH me AS MATERIALIZED ("
    "  SELECT " PERMS_SITE_SQL("$1::bigint", "'read_study__details'") " AS site),"
    " vis AS ("
    "  SELECT s.id, s.date_modified, s.status_change_date FROM studies s"
    "   WHERE ($5::text IS NULL OR s.state = $5::text)"
    "     AND ($6::uuid IS NULL OR s.lab_id = (SELECT l.id FROM labs l WHERE l.uuid = $6::uuid))"
    "     AND ($7::text IS NULL OR s.name ILIKE like_contains($7::text))"
    "     AND ((SELECT site FROM me)"
    "          OR s.lab_id IN (SELECT g.lab_id FROM lab_umbrella_ids($1::bigint,"
    "                                                 'read_study__details') g)"
    "          OR s.id IN (SELECT g.study_id FROM study_grant_ids($1::bigint,"
    "                                               'read_study__details') g)))"
    " SELECT (SELECT count(*) FROM vis), p.item,"
    "        CASE WHEN $5::text IS NOT NULL"
    "              AND NOT EXISTS (SELECT 1 FROM workflow_states WHERE name = $5::text)"
    "             THEN 'invalid' ELSE 'ok' END,"
    "        format('Unknown state \"%s\".', $5::text), NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT study_research_resource(s, $4::text) AS item, v.status_change_date,"
    "            v.date_modified, v.id"
    "       FROM (SELECT id, date_modified, status_change_date FROM vis"
    "              ORDER BY " SM_LIST_ORDER " LIMIT $2::bigint OFFSET $3::bigint) v"
    "       JOIN studies s ON s.id = v.id) p ON true"
    "  ORDER BY " SM_LIST_ORDER_P,
};

/* $1 user, $2 study uuid, $3 base URL. */
static const struct pg_stmt sm_detail_stmt = {
    "sm_detail",
    "SELECT CASE WHEN s.id IS NULL THEN 'not_found' ELSE 'ok' END,"
    "       '" NOT_FOUND_STUDY "', NULL,"
    "       CASE WHEN s.id IS NOT NULL"
    "            THEN json_build_object('data', study_research_resource(s, $3::text)) END"
    "  FROM (SELECT 1) one LEFT JOIN studies s ON s.uuid = $2::uuid"
    "   AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'"),
};

static const struct pg_stmt sm_create_stmt = {
    "sm_create",
    "SELECT * FROM study_create($1::bigint, $2::uuid, $3::jsonb, $4::text)",
};

static const struct pg_stmt sm_edit_stmt = {
    "sm_edit",
    "SELECT * FROM study_edit($1::bigint, $2::uuid, $3::jsonb, $4::uuid, $5::text)",
};

static const struct pg_stmt sm_clone_stmt = {
    "sm_clone",
    "SELECT * FROM study_clone($1::bigint, $2::uuid, $3::uuid, $4::text)",
};

/* $1 user, $2 limit, $3 offset, $4 study uuid, $5 action or NULL. */
static const struct pg_stmt sm_logs_stmt = {
    "sm_logs",
    "WITH st AS (SELECT s.id FROM studies s WHERE s.uuid = $4::uuid"
    "              AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'") "),"
    " lg AS (SELECT l.id, l.created_at FROM study_logs l"
    "         WHERE l.study_id = (SELECT id FROM st)"
    "           AND ($5::text IS NULL OR l.action = $5::text))"
    " SELECT (SELECT count(*) FROM lg), p.item,"
    "        CASE WHEN EXISTS (SELECT 1 FROM st) THEN 'ok' ELSE 'not_found' END,"
    "        '" NOT_FOUND_STUDY "', NULL"
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "     SELECT json_build_object('type', 'study-logs', 'id', l.id::text,"
    "              'attributes', json_build_object("
    "                'action', l.action, 'extra', l.extra,"
    "                'created_at', api_time(l.created_at),"
    "                'user', (SELECT json_build_object('id', u.uuid, 'email', u.email)"
    "                           FROM users u WHERE u.id = l.user_id))) AS item,"
    "            l.created_at, l.id"
    "       FROM (SELECT id FROM lg ORDER BY created_at DESC, id DESC"
    "              LIMIT $2::bigint OFFSET $3::bigint) g"
    "       JOIN study_logs l ON l.id = g.id) p ON true"
    "  ORDER BY p.created_at DESC, p.id DESC",
};

/* $1 user, $2 study uuid, $3 base URL. */
static const struct pg_stmt sm_groups_stmt = {
    "sm_groups",
    "SELECT CASE WHEN s.id IS NULL THEN 'not_found' ELSE 'ok' END,"
    "       '" NOT_FOUND_STUDY "', NULL,"
    "       CASE WHEN s.id IS NOT NULL THEN study_groups_doc(s.id, $3::text) END"
    "  FROM (SELECT 1) one LEFT JOIN studies s ON s.uuid = $2::uuid"
    "   AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'"),
};

static const struct pg_stmt sm_group_add_stmt = {
    "sm_group_add",
    "SELECT * FROM study_group_add($1::bigint, $2::uuid, $3::text, $4::uuid, $5::text)",
};

static const struct pg_stmt sm_group_remove_stmt = {
    "sm_group_remove",
    "SELECT * FROM study_group_remove($1::bigint, $2::uuid, $3::text, $4::uuid)",
};

/* ------------------------------------------------------------ handlers */

static void h_list(struct http_req *req, struct app *app)
{
    const char *state = http_req_query(req, "state");
    const char *lab = http_req_query(req, "lab");
    const char *search = http_req_query(req, "search");
    const char *sort = http_req_query(req, "sort");
    char uid[24], limit[24], offset[24], lu[37];

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (lab && !apidoc_uuid_copy(lab, lu)) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "lab must be a lab id (a uuid).");
        return;
    }
    if (search && strlen(search) > 255) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "search is at most 255 bytes.");
        return;
    }
    if (sort && strcmp(sort, "oldest") != 0 && strcmp(sort, "newest") != 0) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "sort must be oldest or newest.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), limit, offset,
                             http_req_base_url(req), state, lab ? lu : NULL,
                             search && *search ? search : NULL,
                             sort && strcmp(sort, "oldest") == 0 ? "true" : "false" };
    perms_exec_list(req, app, &sm_list_stmt, 8, params);
}

static void h_create(struct http_req *req, struct app *app)
{
    struct study_input in;
    struct jsonapi_error e;
    char uid[24];

    if (study_input_parse(req, NULL, &in, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    if (!json_object_get(in.clean, "name")) {
        jsonapi_reply_errorf(req, 400, "required", "/data/attributes/name",
                             "This field is required.");
        goto out;
    }
    if (!in.lab[0]) {
        jsonapi_reply_errorf(req, 400, "required", "/data/relationships/lab",
                             "A study belongs to a lab: give relationships.lab.");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), in.lab, in.attrs,
                             http_req_base_url(req) };
    perms_exec(req, app, &sm_create_stmt, 4, params);
out:
    study_input_cleanup(&in);
}

static void h_detail(struct http_req *req, struct app *app)
{
    char uid[24], su[37];

    if (!path_study(req, su))
        return;
    const char *params[] = { perms_user_param(req, uid), su, http_req_base_url(req) };
    perms_exec(req, app, &sm_detail_stmt, 3, params);
}

static void h_edit(struct http_req *req, struct app *app)
{
    struct study_input in;
    struct jsonapi_error e;
    char uid[24], su[37];

    memset(&in, 0, sizeof in);
    if (!path_study(req, su))
        goto out;
    if (study_input_parse(req, http_req_param(req, 0), &in, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), su, in.attrs,
                             in.lab[0] ? in.lab : NULL, http_req_base_url(req) };
    perms_exec(req, app, &sm_edit_stmt, 5, params);
out:
    study_input_cleanup(&in);
}

static void h_clone(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL;
    char uid[24], su[37], lu[37] = "";
    size_t len;

    if (!path_study(req, su))
        goto out;
    /* The body is optional: without one the copy stays in the same lab. */
    http_req_body(req, &len);
    if (len > 0) {
        if (jsonapi_parse_request(req, "studies", NULL, &data, &e) < 0 ||
            lab_rel(data, lu, &e) < 0) {
            jsonapi_reply_error(req, &e);
            goto out;
        }
        if (json_object_size(json_object_get(data, "attributes")) > 0) {
            jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes",
                                 "A clone copies the study: edit the copy afterwards.");
            goto out;
        }
    }
    const char *params[] = { perms_user_param(req, uid), su, lu[0] ? lu : NULL,
                             http_req_base_url(req) };
    perms_exec(req, app, &sm_clone_stmt, 4, params);
out:
    json_decref(data);
}

static void h_logs(struct http_req *req, struct app *app)
{
    char uid[24], su[37], limit[24], offset[24];

    if (!path_study(req, su) || !jsonapi_page_sql(req, limit, offset))
        return;
    const char *params[] = { perms_user_param(req, uid), limit, offset, su,
                             http_req_query(req, "action") };
    perms_exec_list(req, app, &sm_logs_stmt, 5, params);
}

static void h_groups(struct http_req *req, struct app *app)
{
    char uid[24], su[37];

    if (!path_study(req, su))
        return;
    const char *params[] = { perms_user_param(req, uid), su, http_req_base_url(req) };
    perms_exec(req, app, &sm_groups_stmt, 3, params);
}

/* A group name of the path: the table decides which exist; this only
 * keeps junk out of SQL. */
static bool group_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz_") == n;
}

static void h_group_add(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    json_t *data = NULL;
    char uid[24], su[37], mu[37];
    const char *grp = http_req_param(req, 1);

    if (!path_study(req, su))
        goto out;
    if (!group_name_ok(grp)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No such study group.");
        goto out;
    }
    if (jsonapi_parse_request(req, "users", NULL, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const json_t *id = json_object_get(data, "id");
    if (!id) {
        jsonapi_reply_errorf(req, 400, "required", "/data/id",
                             "Give the user to add as {\"data\": {\"type\": \"users\", \"id\": ...}}.");
        goto out;
    }
    if (!json_is_string(id) || !apidoc_uuid_copy(json_string_value(id), mu)) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/id", "No active researcher with this id.");
        goto out;
    }
    const char *params[] = { perms_user_param(req, uid), su, grp, mu, http_req_base_url(req) };
    perms_exec(req, app, &sm_group_add_stmt, 5, params);
out:
    json_decref(data);
}

static void h_group_remove(struct http_req *req, struct app *app)
{
    char uid[24], su[37], mu[37];
    const char *grp = http_req_param(req, 1);

    if (!path_study(req, su))
        return;
    if (!group_name_ok(grp)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No such study group.");
        return;
    }
    if (!apidoc_uuid_copy(http_req_param(req, 2), mu)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "This user is not in this group.");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), su, grp, mu };
    perms_exec(req, app, &sm_group_remove_stmt, 4, params);
}

/* ------------------------------------------------------------ routes */

static const struct route studymgmt_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/studies/", h_list, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/researcher/studies/", h_create, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/", h_detail, ROUTE_RESEARCHER },
    { HTTP_PATCH, "/api/v1/researcher/studies/{id}/", h_edit, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/researcher/studies/{id}/clone/", h_clone, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/logs/", h_logs, ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/groups/", h_groups, ROUTE_RESEARCHER },
    { HTTP_POST, "/api/v1/researcher/studies/{id}/groups/{group}/members/", h_group_add,
      ROUTE_RESEARCHER },
    { HTTP_DELETE, "/api/v1/researcher/studies/{id}/groups/{group}/members/{user}/",
      h_group_remove, ROUTE_RESEARCHER },
};

int studymgmt_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, studymgmt_route_table);
}
