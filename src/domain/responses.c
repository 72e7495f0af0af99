/* responses: create, read, list and update experiment-runner responses
 * (runner-api.md R3-R6, section 3).  A write body is checked in full in C
 * (apidoc's scanner: no JSON tree is built for the 20 KB of runner data),
 * then written by one SQL statement that also checks who may write; the
 * reply echoes the big values from the request and takes the rest from
 * the row the statement returned.  Reads get their attributes from
 * PostgreSQL as JSON text; C adds the hashed child id and the links while
 * copying it into the reply. */
#include "config.h"

#include "studyhub/domain/responses.h"

#include <ctype.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/eligibility.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* past-sessions is not paginated upstream; a child does not take a study
 * this many times, and the bound keeps one reply's memory bounded. */
#define PAST_SESSIONS_MAX "1000"

/* upstream: sequence is ArrayField(CharField(max_length=128)),
 * recording_method a CharField(max_length=50). */
#define SEQUENCE_ITEM_MAX 128
#define RECORDING_METHOD_MAX 50

#define MAX_ERRORS 16

/* ---- SQL ------------------------------------------------------------------
 *
 * Every statement that renders responses yields these columns, in this
 * order, for a value r of type responses (a table alias, or the row an
 * INSERT/UPDATE returned).  Lists put the total count first. */
enum {
    RC_UUID,      /* response uuid */
    RC_ATTRS,     /* response_attrs(r): JSON object text */
    RC_CREATED,   /* created_on, ISO 8601 UTC */
    RC_CHILD,     /* child uuid */
    RC_STUDY,     /* study uuid */
    RC_SALT,      /* study salt, for hash_child_id */
    RC_DIGITS,    /* study hash_digits */
    RC_USER,      /* parent (child's user) uuid */
    RC_DEMO,      /* demographic snapshot uuid, or NULL */
    RC_NCOLS
};

#define RESP_COLS(r)                                                              \
    "(" r ").uuid, response_attrs(" r "), api_time((" r ").date_created),"        \
    " c.uuid, s.uuid, s.salt, s.hash_digits, pu.uuid, d.uuid"

/* The big JSON attributes, in the order of the writable table below. */
enum { W_CONDITIONS, W_TIMINGS, W_EXP_DATA, W_SEQUENCE, NHEAVY };

/* POST, PATCH and PUT answer with the row their statement wrote.  The big
 * JSON values the request gave are what was written, so they are copied
 * from the request instead of being rendered by PostgreSQL again (it
 * returns NULL for them); the rest comes from the row. */
enum {
    WC_UUID,
    WC_HEAVY,                 /* NHEAVY columns, W_* order: JSON text or NULL */
    WC_COMPLETED = WC_HEAVY + NHEAVY,
    WC_CONSENT_FRAME,
    WC_SURVEY_CONSENT,
    WC_IS_PREVIEW,
    WC_PK,
    WC_WITHDRAWN,
    WC_RECORDING_METHOD,      /* JSON text */
    WC_ELIGIBILITY,           /* JSON text */
    WC_CREATED,
    WC_CHILD, WC_STUDY, WC_SALT, WC_DIGITS, WC_USER, WC_DEMO,
    WC_NCOLS
};

/* a: the attributes parameter, e.g. "$3::jsonb"; x: the exp_data
 * parameter (json, NULL when not given). */
#define WRITTEN_COLS(r, a, x) WRITTEN_BASE(r, a, x, "pu.uuid") ", d.uuid"
/* All but the demographics snapshot's uuid, the last column; u is the
 * owner's uuid. */
#define WRITTEN_BASE(r, a, x, u)                                                        \
    "(" r ").uuid,"                                                                     \
    " CASE WHEN " a " ? 'conditions' THEN NULL ELSE (" r ").conditions END,"           \
    " CASE WHEN " a " ? 'global_event_timings' THEN NULL"                               \
    "      ELSE (" r ").global_event_timings END,"                                      \
    " CASE WHEN " x " IS NOT NULL THEN NULL ELSE (" r ").exp_data END,"                \
    " CASE WHEN " a " ? 'sequence' THEN NULL ELSE (" r ").sequence END,"               \
    " (" r ").completed, (" r ").completed_consent_frame, (" r ").survey_consent,"      \
    " (" r ").is_preview, (" r ").id, (" r ").withdrawn,"                               \
    " to_json((" r ").recording_method), to_json((" r ").eligibility),"                 \
    " api_time((" r ").date_created), c.uuid, s.uuid, s.salt, s.hash_digits, " u

/* join is "JOIN" when r is always there, "LEFT JOIN" when it may be NULL. */
#define RESP_JOINS(join, r)                                                       \
    " " join " children c ON c.id = (" r ").child_id"                            \
    " " join " users pu ON pu.id = c.user_id"                                     \
    " " join " studies s ON s.id = (" r ").study_id"                             \
    " LEFT JOIN demographic_data d ON d.id = (" r ").demographic_snapshot_id"

/* The page of a list whose CTE vis holds (id, date_modified) of the
 * visible responses; $2 limit, $3 offset.  Always one row at least: the
 * count, then the page's columns (NULL when the page is empty).  Only ids
 * are sorted and counted; the page's rows are read once. */
#define RESP_PAGE                                                                 \
    " SELECT (SELECT count(*) FROM vis), p.*"                                     \
    "   FROM (SELECT 1) one LEFT JOIN LATERAL ("                                  \
    "     SELECT " RESP_COLS("r") ", r.date_modified AS k1, r.id AS k2"           \
    "       FROM (SELECT id FROM vis ORDER BY date_modified DESC, id DESC"        \
    "              LIMIT $2 OFFSET $3) v"                                         \
    "       JOIN responses r ON r.id = v.id" RESP_JOINS("JOIN", "r") ") p ON true" \
    "  ORDER BY p.k1 DESC, p.k2 DESC"

/* Every statement takes the caller's id (own family: their children's
 * responses) and, separately, the research id: the caller's id when
 * two-factor verified, else NULL (apidoc_research_id).  Only the research
 * id is given to permission checks, so without two-factor they grant
 * nothing and only the caller's own family is left. */

/* The permissions of research id r on each study, looked up once per
 * study rather than once per response. */
#define READABLE_STUDIES(r, where)                                                \
    "rs AS MATERIALIZED ("                                                        \
    "  SELECT s.id, has_study_perm(" r ", s.id, 'read_study__responses') AS rd,"  \
    "         has_study_perm(" r ", s.id, 'read_study__responses(is_preview=True)') AS pv" \
    "    FROM studies s " where ")"

/* $1 user, $2 response uuid, $3 research id. */
static const struct pg_stmt responses_get_stmt = {
    "responses_get",
    "SELECT " RESP_COLS("r") " FROM responses r" RESP_JOINS("JOIN", "r")
    " WHERE r.uuid = $2::uuid"
    "   AND (c.user_id = $1 OR response_readable($3::bigint, r.id, r.study_id, r.is_preview))",
};

/* $1 user, $2 limit, $3 offset, $4 child uuid or NULL, $5 study uuid or
 * NULL, $6 research id. */
static const struct pg_stmt responses_list_stmt = {
    "responses_list",
    "WITH " READABLE_STUDIES("$6::bigint", "WHERE $5::uuid IS NULL OR s.uuid = $5::uuid") ","
    " vis AS ("
    "  SELECT r.id, r.date_modified FROM responses r JOIN children c ON c.id = r.child_id"
    "   WHERE c.user_id = $1 AND ($4::uuid IS NULL OR c.uuid = $4::uuid)"
    "     AND ($5::uuid IS NULL OR r.study_id IN (SELECT id FROM rs))"
    "  UNION"
    "  SELECT r.id, r.date_modified FROM rs JOIN responses r ON r.study_id = rs.id"
    "    JOIN children c ON c.id = r.child_id"
    "   WHERE (rs.rd OR rs.pv) AND ($4::uuid IS NULL OR c.uuid = $4::uuid)"
    "     AND response_research_visible(r.id, r.is_preview, rs.rd, rs.pv))"
    RESP_PAGE,
};

/* The nested list without ?child=: $1 user, $2 limit, $3 offset, $4 study,
 * $5 research id. */
static const struct pg_stmt responses_nested_stmt = {
    "responses_nested",
    "WITH st AS ("
    "  SELECT s.id, has_study_perm($5::bigint, s.id, 'read_study__responses') AS rd,"
    "         has_study_perm($5::bigint, s.id, 'read_study__responses(is_preview=True)') AS pv"
    "    FROM studies s WHERE s.uuid = $4::uuid),"
    " vis AS ("
    "  SELECT r.id, r.date_modified FROM st JOIN responses r ON r.study_id = st.id"
    "    JOIN children c ON c.id = r.child_id"
    "   WHERE c.user_id = $1 OR response_research_visible(r.id, r.is_preview, st.rd, st.pv))"
    RESP_PAGE,
};

/* The runner's R4: ?child= is restricted to the requester's own children,
 * as upstream.  $1 user, $2 limit, $3 offset, $4 study, $5 child. */
static const struct pg_stmt responses_nested_child_stmt = {
    "responses_nested_child",
    "WITH vis AS ("
    "  SELECT r.id, r.date_modified FROM studies s"
    "    JOIN responses r ON r.study_id = s.id JOIN children c ON c.id = r.child_id"
    "   WHERE s.uuid = $4::uuid AND c.uuid = $5::uuid AND c.user_id = $1)"
    RESP_PAGE,
};

/* $1 user, $2 response uuid: every response of the same child and study,
 * when the child is the requester's. */
static const struct pg_stmt responses_past_stmt = {
    "responses_past_sessions",
    "SELECT " RESP_COLS("r")
    "  FROM responses t JOIN children tc ON tc.id = t.child_id"
    "  JOIN responses r ON r.study_id = t.study_id AND r.child_id = t.child_id"
    RESP_JOINS("JOIN", "r")
    " WHERE t.uuid = $2::uuid AND tc.user_id = $1"
    " ORDER BY r.date_modified DESC, r.id DESC LIMIT " PAST_SESSIONS_MAX,
};

/* What creating a response needs to know, in one round trip.
 * $1 user, $2 child uuid, $3 study uuid, $4 research id (previews of
 * studies that are not active).  Always one row. */
enum {
    PC_CHILD_ID, PC_OWN, PC_AGE_DAYS, PC_GENDER, PC_WEEKS, PC_LANGS, PC_CONDS,
    PC_STUDY_ID, PC_MIN_Y, PC_MIN_M, PC_MIN_D, PC_MAX_Y, PC_MAX_M, PC_MAX_D,
    PC_CRITERIA, PC_PARTICIPATION_OK
};
static const struct pg_stmt responses_precheck_stmt = {
    "responses_precheck",
    "SELECT c.id, c.user_id = $1, current_date - c.birthday, c.gender,"
    "       coalesce(c.gestational_age_at_birth, 0),"
    "       array_to_string(c.languages_spoken, ' '),"
    "       array_to_string(c.existing_conditions, ' '),"
    "       s.id, s.min_age_years, s.min_age_months, s.min_age_days,"
    "       s.max_age_years, s.max_age_months, s.max_age_days, s.criteria_expression,"
    "       CASE WHEN c.id IS NOT NULL AND s.id IS NOT NULL"
    "            THEN child_participation_ok(c.id, s.id) END"
    "  FROM (SELECT 1) one"
    "  LEFT JOIN children c ON c.uuid = $2::uuid AND NOT c.deleted"
    "  LEFT JOIN studies s ON s.uuid = $3::uuid"
    "        AND (s.state = 'active'"
    "             OR study_visible($4::bigint, s.id, s.state, s.public, s.shared_preview,"
    "                              false))",
};

/* The attribute values of $4 (validated and normalised in C; absent keys
 * take the column defaults), the demographic snapshot is the parent's
 * latest demographics (none: NULL).  Ownership is asked again so the
 * INSERT cannot outrun a change since the check.
 * $1 user, $2 child id, $3 study id, $4 attributes but exp_data, $5
 * eligibility, $6 exp_data (json, kept as sent), $7 its withdrawn. */
static const struct pg_stmt responses_insert_stmt = {
    "responses_insert",
    "WITH ins AS ("
    "  INSERT INTO responses AS r (study_id, child_id, study_type, conditions,"
    "         global_event_timings, exp_data, withdrawn, sequence, completed,"
    "         completed_consent_frame, survey_consent, is_preview,"
    "         recording_method, eligibility, demographic_snapshot_id)"
    "  SELECT s.id, c.id, s.study_type,"
    "         coalesce($4::jsonb -> 'conditions', '{}'),"
    "         coalesce($4::jsonb -> 'global_event_timings', '[]'),"
    "         coalesce($6::json, '{}'), coalesce($7::boolean, false),"
    "         coalesce($4::jsonb -> 'sequence', '[]'),"
    "         coalesce(($4::jsonb -> 'completed')::boolean, false),"
    "         coalesce(($4::jsonb -> 'completed_consent_frame')::boolean, false),"
    "         coalesce(($4::jsonb -> 'survey_consent')::boolean, false),"
    "         coalesce(($4::jsonb -> 'is_preview')::boolean, false),"
    "         coalesce($4::jsonb ->> 'recording_method', ''),"
    "         $5::text[],"
    "         (SELECT dd.id FROM demographic_data dd WHERE dd.user_id = c.user_id"
    "           ORDER BY dd.created_at DESC, dd.id DESC LIMIT 1)"
    "    FROM children c, studies s"
    "   WHERE c.id = $2::bigint AND c.user_id = $1 AND s.id = $3::bigint"
    "  RETURNING r)"
    " SELECT " WRITTEN_COLS("ins.r", "$4::jsonb", "$6::json") " FROM ins" RESP_JOINS("JOIN", "ins.r"),
};

/* The columns a PATCH or PUT sets: each from $3 (the attributes but
 * exp_data) when the key is there, exp_data from $6 and withdrawn from $7,
 * else the current value; and date_modified, which spares the row the
 * touch trigger's PL/pgSQL call (sql/110). */
#define UPDATE_SET \
    "    date_modified = now()," \
    "    conditions = coalesce($3::jsonb -> 'conditions', r.conditions)," \
    "    global_event_timings = coalesce($3::jsonb -> 'global_event_timings', r.global_event_timings)," \
    "    exp_data = coalesce($6::json, r.exp_data)," \
    "    withdrawn = coalesce($7::boolean, r.withdrawn)," \
    "    sequence = coalesce($3::jsonb -> 'sequence', r.sequence)," \
    "    completed = coalesce(($3::jsonb -> 'completed')::boolean, r.completed)," \
    "    completed_consent_frame = coalesce(($3::jsonb -> 'completed_consent_frame')::boolean," \
    "                                       r.completed_consent_frame)," \
    "    survey_consent = coalesce(($3::jsonb -> 'survey_consent')::boolean, r.survey_consent)," \
    "    is_preview = coalesce(($3::jsonb -> 'is_preview')::boolean, r.is_preview)," \
    "    recording_method = coalesce($3::jsonb ->> 'recording_method', r.recording_method)," \
    "    eligibility = CASE WHEN $3::jsonb ? 'eligibility'" \
    "                       THEN ARRAY(SELECT jsonb_array_elements_text($3::jsonb -> 'eligibility'))" \
    "                       ELSE r.eligibility END"

/* The owner's PATCH or PUT (the runner's, once a frame): the UPDATE alone,
 * with the row the reply needs.  No row: the full statement below says
 * why (it reads the response, the child and the study first, which costs
 * the hot path about a fifth of its rate).  Same parameters but $8, the
 * caller's uuid: the owner is the caller, so users need not be joined. */
static const struct pg_stmt responses_update_own_stmt = {
    "responses_update_own",
    "UPDATE responses r SET" UPDATE_SET
    "  FROM children c, studies s"
    " WHERE r.uuid = $2::uuid AND c.id = r.child_id AND c.user_id = $1"
    "   AND s.id = r.study_id"
    "   AND ($4::uuid IS NULL OR $4::uuid = c.uuid)"
    "   AND ($5::uuid IS NULL OR $5::uuid = s.uuid)"
    " RETURNING 'ok', " WRITTEN_BASE("r", "$3::jsonb", "$6::json", "$8::uuid") ","
    "   (SELECT d.uuid FROM demographic_data d WHERE d.id = r.demographic_snapshot_id)",
};

/* PATCH and PUT: one UPDATE whose WHERE is the permission check, plus the
 * reason when nothing was updated.  Each column is set from $3 when the
 * key is there and from its current value otherwise, inside the UPDATE:
 * no read-modify-write across statements, so concurrent PATCHes serialise
 * on the row lock and the last one wins.  Only researchers who may read
 * the response learn that it exists (403); everyone else gets 404.
 * $1 user, $2 response uuid, $3 attributes but exp_data, $4 child uuid,
 * $5 study uuid, $6 exp_data (json, kept as sent), $7 its withdrawn, $8
 * research id. */
static const struct pg_stmt responses_update_stmt = {
    "responses_update",
    "WITH t AS ("
    "  SELECT r.id, c.user_id = $1 AS own, c.uuid AS child_uuid, s.uuid AS study_uuid,"
    "         CASE WHEN c.user_id = $1 THEN true"
    "              ELSE response_readable($8::bigint, r.id, r.study_id, r.is_preview)"
    "         END AS visible"
    "    FROM responses r JOIN children c ON c.id = r.child_id"
    "    JOIN studies s ON s.id = r.study_id"
    "   WHERE r.uuid = $2::uuid),"
    " nc AS (SELECT c.user_id = $1 AND NOT c.deleted AS own FROM children c"
    "         WHERE c.uuid = $4::uuid),"
    " ns AS (SELECT true AS found FROM studies s WHERE s.uuid = $5::uuid),"
    " upd AS ("
    "  UPDATE responses r SET" UPDATE_SET
    "    FROM t"
    "   WHERE r.id = t.id AND t.own"
    "     AND ($4::uuid IS NULL OR $4::uuid = t.child_uuid)"
    "     AND ($5::uuid IS NULL OR $5::uuid = t.study_uuid)"
    "  RETURNING r)"
    " SELECT CASE WHEN (upd.r).id IS NOT NULL THEN 'ok'"
    "             WHEN t.id IS NULL OR NOT t.visible THEN 'not_found'"
    "             WHEN NOT t.own THEN 'forbidden'"
    "             WHEN $4::uuid IS NOT NULL AND $4::uuid <> t.child_uuid THEN"
    "                  CASE WHEN nc.own IS NULL THEN 'child_not_found'"
    "                       WHEN nc.own THEN 'child_changed' ELSE 'child_forbidden' END"
    "             WHEN ns.found IS NULL THEN 'study_not_found'"
    "             ELSE 'study_changed' END, "
    WRITTEN_COLS("upd.r", "$3::jsonb", "$6::json")
    "  FROM (SELECT 1) one LEFT JOIN t ON true LEFT JOIN nc ON true"
    "  LEFT JOIN ns ON true LEFT JOIN upd ON true"
    RESP_JOINS("LEFT JOIN", "upd.r"),
};

/* ---- rendering ------------------------------------------------------------ */

enum resp_shape {
    SHAPE_READ,    /* ResponseSerializer: lists, GET, PUT */
    SHAPE_WRITE,   /* ResponseWriteableSerializer: POST, PATCH */
    SHAPE_PAST,    /* ResponseSerializer typed past_sessions */
};

/* The read serializer's two extra attributes, as members to append. */
static void render_read_extras(struct apidoc *d, const char *created, const char *child,
                               const char *study, const char *salt, const char *digits)
{
    char hash[ELIGIBILITY_HASH_MAX + 1];
    bool hashed = eligibility_hash_child_id(child, study, salt, atoi(digits), hash,
                                            sizeof hash) == 0;

    apidoc_printf(d, ",\"created_on\":\"%s\",\"hash_child_id\":%s%s%s", created,
                  hashed ? "\"" : "", hashed ? hash : "null", hashed ? "\"" : "");
}

/* After the attributes: relationships and links, closing the object.
 * demo is NULL when there is no demographic snapshot. */
static void render_response_tail(struct apidoc *d, enum resp_shape shape, const char *uuid,
                                 const char *child, const char *study, const char *user,
                                 const char *demo)
{
    if (shape == SHAPE_WRITE) {
        /* Upstream puts integer pks into these two links (a quirk the
         * runner ignores); uuids make links that resolve. */
        apidoc_printf(d,
                      ",\"relationships\":{"
                      "\"child\":{\"links\":{\"related\":\"%s/api/v1/children/%s/\"},"
                      "\"data\":{\"type\":\"children\",\"id\":\"%s\"}},"
                      "\"study\":{\"links\":{\"related\":\"%s/api/v1/studies/%s/\"},"
                      "\"data\":{\"type\":\"studies\",\"id\":\"%s\"}}}",
                      d->base, child, child, d->base, study, study);
    } else {
        apidoc_printf(d,
                      ",\"relationships\":{"
                      "\"child\":{\"links\":{\"related\":\"%s/api/v1/children/%s/\"}},"
                      "\"user\":{\"links\":{\"related\":\"%s/api/v1/users/%s/\"}},"
                      "\"study\":{\"links\":{\"related\":\"%s/api/v1/studies/%s/\"}},"
                      "\"demographic_snapshot\":{\"links\":{\"related\":",
                      d->base, child, d->base, user, d->base, study);
        if (!demo)
            apidoc_add(d, "null}}}");
        else
            apidoc_printf(d, "\"%s/api/v1/demographics/%s/\"}}}", d->base, demo);
    }
    apidoc_printf(d, ",\"links\":{\"self\":\"%s/api/v1/responses/%s/\"}}", d->base, uuid);
}

/* One resource object from the RC_* columns starting at col. */
static void render_response(struct apidoc *d, const PGresult *res, int row, int col,
                            enum resp_shape shape)
{
#define V(k) PQgetvalue(res, row, col + (k))
    const char *attrs = V(RC_ATTRS);
    size_t alen = (size_t)PQgetlength(res, row, col + RC_ATTRS);

    apidoc_printf(d, "{\"type\":\"%s\",\"id\":\"%s\",\"attributes\":",
                  shape == SHAPE_PAST ? "past_sessions" : "responses", V(RC_UUID));
    if (shape == SHAPE_WRITE || alen < 2 || attrs[alen - 1] != '}') {
        apidoc_addn(d, attrs, alen);
    } else {
        /* Into the object PostgreSQL rendered: drop its closing brace,
         * append, close. */
        apidoc_addn(d, attrs, alen - 1);
        render_read_extras(d, V(RC_CREATED), V(RC_CHILD), V(RC_STUDY), V(RC_SALT),
                           V(RC_DIGITS));
        apidoc_add(d, "}");
    }
    render_response_tail(d, shape, V(RC_UUID), V(RC_CHILD), V(RC_STUDY), V(RC_USER),
                         PQgetisnull(res, row, col + RC_DEMO) ? NULL : V(RC_DEMO));
#undef V
}

/* {"data": <one response>} with the given status. */
static void reply_one(struct http_req *req, const PGresult *res, int col,
                      enum resp_shape shape, int status)
{
    struct apidoc d;

    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_response(&d, res, 0, col, shape);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, status);
}

static void reply_not_found(struct http_req *req)
{
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Response matches the given query.");
}

static void reply_forbidden(struct http_req *req)
{
    jsonapi_reply_errorf(req, 403, "permission_denied", "/data",
                         "You do not have permission to perform this action.");
}

/* A paginated list from a RESP_PAGE result. */
static void render_response_read(struct apidoc *d, const PGresult *res, int row, int col)
{
    render_response(d, res, row, col, SHAPE_READ);
}

static void responses_page_done(PGresult *res, void *arg)
{
    apidoc_reply_page(arg, res, "responses list", 1 + RC_UUID, render_response_read);
}

/* ---- request validation ------------------------------------------------------ */

/* A ?child= / ?study= filter: absent (NULL in *out), or a valid uuid. */
static int filter_uuid(struct http_req *req, const char *key, char buf[37],
                       const char **out, struct jsonapi_error *e)
{
    const char *v = http_req_query(req, key);

    *out = NULL;
    if (!v || !*v)
        return 0;
    if (!apidoc_uuid_copy(v, buf)) {
        jsonapi_error_set(e, 400, "invalid", NULL, "%s: Enter a valid UUID.", key);
        return -1;
    }
    *out = buf;
    return 0;
}

/* inflection.underscore, which upstream's parser applies to top-level
 * attribute names only: "expData" -> "exp_data", "exp-data" -> "exp_data". */
static bool underscore(const char *in, char *out, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; in[i]; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (isupper(ch) && i > 0) {
            unsigned char prev = (unsigned char)in[i - 1], next = (unsigned char)in[i + 1];
            if (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next))) {
                if (n + 1 >= len)
                    return false;
                out[n++] = '_';
            }
        }
        if (n + 1 >= len)
            return false;
        out[n++] = ch == '-' ? '_' : (char)tolower(ch);
    }
    out[n] = '\0';
    return true;
}

enum attr_kind {
    AK_CONTAINER,    /* JSON object or array */
    AK_ARRAY,        /* JSON array */
    AK_SEQUENCE,     /* array of strings of at most SEQUENCE_ITEM_MAX characters */
    AK_BOOL,
    AK_STRING,       /* at most RECORDING_METHOD_MAX characters */
    AK_ELIGIBILITY,  /* array of eligibility names */
};

/* The writable attributes; everything else (pk, withdrawn, created_on,
 * hash_child_id, unknown names) is ignored, as upstream does.  The first
 * NHEAVY are the big JSON values a write echoes from the request rather
 * than have PostgreSQL render them again. */
static const struct {
    const char *name;
    enum attr_kind kind;
    bool on_create;       /* false: computed by the server on create */
} writable[] = {
    [W_CONDITIONS] = { "conditions", AK_CONTAINER, true },
    [W_TIMINGS] = { "global_event_timings", AK_ARRAY, true },
    [W_EXP_DATA] = { "exp_data", AK_CONTAINER, true },
    [W_SEQUENCE] = { "sequence", AK_SEQUENCE, true },
    { "completed", AK_BOOL, true },
    { "completed_consent_frame", AK_BOOL, true },
    { "survey_consent", AK_BOOL, true },
    { "is_preview", AK_BOOL, true },
    { "recording_method", AK_STRING, true },
    { "eligibility", AK_ELIGIBILITY, false },
};
#define NWRITABLE (sizeof writable / sizeof writable[0])

static const char *span_type_name(const struct apidoc_jspan *v)
{
    switch (v->type) {
    case AJ_OBJECT: return "dict";
    case AJ_ARRAY: return "list";
    case AJ_STRING: return "str";
    case AJ_NUMBER: return memchr(v->p, '.', v->len) || memchr(v->p, 'e', v->len) ||
                           memchr(v->p, 'E', v->len) ? "float" : "int";
    case AJ_TRUE:
    case AJ_FALSE: return "bool";
    default: return "NoneType";
    }
}

/* Does the string hold at most max characters (code points, as Python's
 * len counts)? */
static bool string_fits(const struct apidoc_jspan *v, size_t max)
{
    char buf[4 * 128 + 1];
    size_t n = 0;

    if (max * 4 + 1 > sizeof buf || !apidoc_json_string(v, buf, max * 4 + 1))
        return false;
    for (const char *p = buf; *p; p++)
        n += ((unsigned char)*p & 0xC0) != 0x80;
    return n <= max;
}

static bool eligibility_name_ok(const struct apidoc_jspan *v)
{
    static const char *const names[] = {
        "Eligible", "Ineligible_TooYoung", "Ineligible_TooOld",
        "Ineligible_CriteriaExpression", "Ineligible_Participation",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (apidoc_json_string_is(v, names[i]))
            return true;
    return false;
}

/* Checks one value; on a bad one fills e and returns false. */
static bool attr_valid(const char *name, enum attr_kind kind, const struct apidoc_jspan *v,
                       struct jsonapi_error *e)
{
    char pointer[96];
    struct apidoc_jspan item;
    size_t it = 0, i = 0;

    snprintf(pointer, sizeof pointer, "/data/attributes/%s", name);
    if (v->type == AJ_NULL) {
        jsonapi_error_set(e, 400, "null", pointer, "This field may not be null.");
        return false;
    }
    switch (kind) {
    case AK_CONTAINER:
        if (v->type == AJ_OBJECT || v->type == AJ_ARRAY)
            return true;
        jsonapi_error_set(e, 400, "invalid", pointer,
                          "Expected a JSON object or list but got type \"%s\".",
                          span_type_name(v));
        return false;
    case AK_ARRAY:
    case AK_SEQUENCE:
    case AK_ELIGIBILITY:
        if (v->type != AJ_ARRAY) {
            jsonapi_error_set(e, 400, "not_a_list", pointer,
                              "Expected a list of items but got type \"%s\".",
                              span_type_name(v));
            return false;
        }
        for (; kind != AK_ARRAY && apidoc_json_element(v, &it, &item); i++) {
            if (item.type != AJ_STRING) {
                jsonapi_error_set(e, 400, "invalid", pointer,
                                  "Item %zu: Not a valid string.", i);
                return false;
            }
            if (kind == AK_SEQUENCE && !string_fits(&item, SEQUENCE_ITEM_MAX)) {
                jsonapi_error_set(e, 400, "max_length", pointer,
                                  "Item %zu: Ensure this field has no more than %d characters.",
                                  i, SEQUENCE_ITEM_MAX);
                return false;
            }
            if (kind == AK_ELIGIBILITY && !eligibility_name_ok(&item)) {
                char buf[64];
                jsonapi_error_set(e, 400, "invalid_choice", pointer,
                                  "\"%s\" is not a valid choice.",
                                  apidoc_json_string(&item, buf, sizeof buf) ? buf : "...");
                return false;
            }
        }
        return true;
    case AK_BOOL:
        /* Strict: "yes" or 1 are refused (DRF would coerce them). */
        if (v->type == AJ_TRUE || v->type == AJ_FALSE)
            return true;
        jsonapi_error_set(e, 400, "invalid", pointer, "Must be a valid boolean.");
        return false;
    case AK_STRING:
        if (v->type != AJ_STRING) {
            jsonapi_error_set(e, 400, "invalid", pointer, "Not a valid string.");
            return false;
        }
        if (!string_fits(v, RECORDING_METHOD_MAX)) {
            jsonapi_error_set(e, 400, "max_length", pointer,
                              "Ensure this field has no more than %d characters.",
                              RECORDING_METHOD_MAX);
            return false;
        }
        return true;
    }
    return false;
}

/* A write body, checked: what can be known without PostgreSQL. */
struct write_body {
    struct apidoc_jspan given[NWRITABLE]; /* provided attributes (type AJ_NONE when
                                           * absent); spans point into the request
                                           * body, which lives as long as the request */
    char *attrs_text;                     /* owned: {"name":<value>,...} of the given
                                           * attributes but exp_data, a parameter */
    char *exp_data_text;                  /* owned: exp_data as sent, or NULL */
    const char *withdrawn;                /* "true"/"false" from exp_data, or NULL */
    char child[37];                       /* relationship uuid, "" when absent */
    char study[37];                       /* relationship uuid, "" when absent */
};

static void write_body_cleanup(struct write_body *wb)
{
    free(wb->attrs_text);
    wb->attrs_text = NULL;
    free(wb->exp_data_text);
    wb->exp_data_text = NULL;
}

/* The relationship into out (400s collected in errs; a 409 is returned at
 * once, as upstream's parser raises it before validation). */
static int body_rel(const struct apidoc_doc *doc, const char *name, const char *type,
                    bool required, char out[37], struct jsonapi_error *errs, int *nerr,
                    struct jsonapi_error *conflict)
{
    struct jsonapi_error e;
    char pointer[64];

    out[0] = '\0';
    switch (apidoc_rel_uuid(doc, name, type, out, &e)) {
    case 1:
        return 0;
    case 0:
        if (!required)
            return 0;
        snprintf(pointer, sizeof pointer, "/data/relationships/%s", name);
        jsonapi_error_set(&e, 400, "required", pointer, "This field is required.");
        break;
    default:
        if (e.status == 409) {
            *conflict = e;
            return -1;
        }
        break;
    }
    errs[(*nerr)++] = e;
    return 0;
}

/* Does [p, p+len) hold "EXIT" in quotes, or a \\u escape? */
static bool text_has_exit_or_escape(const char *p, size_t len)
{
    const char *end = p + len, *q;

    for (q = p; (q = memchr(q, 'X', (size_t)(end - q))); q++)
        if (q - p >= 2 && end - q >= 4 && memcmp(q - 2, "\"EXIT\"", 6) == 0)
            return true;
    for (q = p; end - q >= 2 && (q = memchr(q, '\\', (size_t)(end - q - 1))); q += 2)
        if (q[1] == 'u')
            return true;
    return false;
}

/* Upstream's Response.withdrawn: the exit survey (an EFP frame of type
 * EXIT) says withdrawal true.  EFP's exp_data is an object keyed by frame
 * id; jsPsych's array has no exit frame. */
static bool exp_data_withdrawn(const struct apidoc_jspan *exp_data)
{
    struct apidoc_jspan key, frame, v;
    size_t it = 0;

    if (exp_data->type != AJ_OBJECT)
        return false;
    /* Most PATCHes come before the exit frame: no "EXIT" in the text (nor
     * an escape that could spell it) needs no walk through the frames.
     * By memchr for the rare 'X' and '\\': glibc's memmem of a short
     * needle took a fifth of a PATCH's instructions. */
    if (!text_has_exit_or_escape(exp_data->p, exp_data->len))
        return false;
    while (apidoc_json_member(exp_data, &it, &key, &frame)) {
        if (frame.type == AJ_OBJECT && apidoc_json_get(&frame, "frameType", &v) &&
            apidoc_json_string_is(&v, "EXIT") && apidoc_json_get(&frame, "withdrawal", &v) &&
            v.type == AJ_TRUE)
            return true;
    }
    return false;
}

/* Checks a POST/PATCH/PUT body completely (the JSON, the document, the
 * relationships, every known attribute) and builds the parameter from the
 * spans of the attributes.  Returns 0, or -1 after replying. */
static int parse_write_body(struct http_req *req, const char *want_id, bool create,
                            struct write_body *wb)
{
    struct jsonapi_error errs[MAX_ERRORS], conflict, e;
    struct apidoc_doc doc;
    int nerr = 0;
    size_t size = 2;

    memset(wb, 0, sizeof *wb);
    if (apidoc_parse_request(req, "responses", want_id, &doc, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return -1;
    }
    if (body_rel(&doc, "child", "children", create, wb->child, errs, &nerr, &conflict) < 0 ||
        body_rel(&doc, "study", "studies", create, wb->study, errs, &nerr, &conflict) < 0) {
        jsonapi_reply_error(req, &conflict);
        return -1;
    }
    /* The attributes' members, located once by apidoc_parse_request. */
    for (size_t m = 0; m < doc.nattr; m++) {
        const struct apidoc_jspan *key = &doc.attr[m].key, *val = &doc.attr[m].val;
        char raw[64], name[64];
        if (!apidoc_json_string(key, raw, sizeof raw) || !underscore(raw, name, sizeof name))
            continue;
        for (size_t i = 0; i < NWRITABLE; i++) {
            if (strcmp(name, writable[i].name) != 0)
                continue;
            if (create && !writable[i].on_create)
                break;
            /* "expData" and "exp_data" both given: the later wins, as
             * in upstream's dict. */
            wb->given[i] = *val;
            if (!attr_valid(name, writable[i].kind, val, &errs[nerr]) &&
                nerr < MAX_ERRORS - 1)
                nerr++;
            break;
        }
    }
    if (nerr) {
        apidoc_reply_errors(req, errs, nerr);
        return -1;
    }
    const struct apidoc_jspan *exp_data = &wb->given[W_EXP_DATA];
    if (exp_data->type != AJ_NONE) {
        if (doc.big_number && doc.big_number >= exp_data->p &&
            doc.big_number < exp_data->p + exp_data->len) {
            jsonapi_reply_errorf(req, 400, "invalid", "/data/attributes/exp_data",
                                 "A number is too large or too precise to be stored.");
            return -1;
        }
        wb->withdrawn = exp_data_withdrawn(exp_data) ? "true" : "false";
        if (!(wb->exp_data_text = strndup(exp_data->p, exp_data->len))) {
            jsonapi_reply_unavailable(req, "Memory");
            return -1;
        }
    }
    for (size_t i = 0; i < NWRITABLE; i++)
        if (wb->given[i].type != AJ_NONE && i != W_EXP_DATA)
            size += strlen(writable[i].name) + 4 + wb->given[i].len;
    char *p = wb->attrs_text = malloc(size + 1);
    if (!p) {
        write_body_cleanup(wb);
        jsonapi_reply_unavailable(req, "Memory");
        return -1;
    }
    *p++ = '{';
    for (size_t i = 0, n = 0; i < NWRITABLE; i++) {
        if (wb->given[i].type == AJ_NONE || i == W_EXP_DATA)
            continue;
        p += sprintf(p, "%s\"%s\":", n++ ? "," : "", writable[i].name);
        memcpy(p, wb->given[i].p, wb->given[i].len);
        p += wb->given[i].len;
    }
    *p++ = '}';
    *p = '\0';
    return 0;
}

/* ---- written responses (WC_* columns) ------------------------------------------ */

static void render_written(struct apidoc *d, const PGresult *res, int col,
                           const struct write_body *wb, enum resp_shape shape)
{
#define V(k) PQgetvalue(res, 0, col + (k))
#define B(k) (V(k)[0] == 't' ? "true" : "false")
    apidoc_printf(d, "{\"type\":\"responses\",\"id\":\"%s\",\"attributes\":{", V(WC_UUID));
    for (int i = 0; i < NHEAVY; i++) {
        apidoc_printf(d, "%s\"%s\":", i ? "," : "", writable[i].name);
        if (wb->given[i].type != AJ_NONE)
            apidoc_addn(d, wb->given[i].p, wb->given[i].len);
        else
            apidoc_addn(d, V(WC_HEAVY + i), (size_t)PQgetlength(res, 0, col + WC_HEAVY + i));
    }
    apidoc_printf(d,
                  ",\"completed\":%s,\"completed_consent_frame\":%s,\"survey_consent\":%s,"
                  "\"is_preview\":%s,\"pk\":%s,\"withdrawn\":%s,\"recording_method\":%s,"
                  "\"eligibility\":%s",
                  B(WC_COMPLETED), B(WC_CONSENT_FRAME), B(WC_SURVEY_CONSENT), B(WC_IS_PREVIEW),
                  V(WC_PK), B(WC_WITHDRAWN), V(WC_RECORDING_METHOD), V(WC_ELIGIBILITY));
    if (shape != SHAPE_WRITE)
        render_read_extras(d, V(WC_CREATED), V(WC_CHILD), V(WC_STUDY), V(WC_SALT),
                           V(WC_DIGITS));
    apidoc_add(d, "}");
    render_response_tail(d, shape, V(WC_UUID), V(WC_CHILD), V(WC_STUDY), V(WC_USER),
                         PQgetisnull(res, 0, col + WC_DEMO) ? NULL : V(WC_DEMO));
#undef B
#undef V
}

static void reply_written(struct http_req *req, const PGresult *res, int col,
                          const struct write_body *wb, enum resp_shape shape, int status)
{
    struct apidoc d;

    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":");
    render_written(&d, res, col, wb, shape);
    apidoc_add(&d, "}");
    apidoc_reply(&d, req, status);
}

/* ---- GET /api/v1/responses/{id}/ -------------------------------------------- */

static void response_got(PGresult *res, void *arg)
{
    struct http_req *req = arg;

    if (apidoc_db_failed(req, res, "responses_get"))
        return;
    if (PQntuples(res) != 1) {
        reply_not_found(req);
        return;
    }
    reply_one(req, res, 0, SHAPE_READ, 200);
}

static void response_get(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24], rid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id, apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &responses_get_stmt, 3, params, response_got, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- lists ------------------------------------------------------------------ */

static void responses_list(struct http_req *req, struct app *app)
{
    struct jsonapi_error e;
    char uid[24], rid[24], limit[24], offset[24], child_buf[37], study_buf[37];
    const char *child, *study;

    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (filter_uuid(req, "child", child_buf, &child, &e) < 0 ||
        filter_uuid(req, "study", study_buf, &study, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), limit, offset, child, study,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &responses_list_stmt, 6, params, responses_page_done, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* GET /api/v1/studies/{id}/responses/: the runner sends
 * ?page[size]=10&page=N&child=<uuid>; page[size] is ignored as upstream
 * ignores it (its parameter is page_size). */
static void study_responses(struct http_req *req, struct app *app)
{
    const char *study = http_req_param(req, 0);
    struct jsonapi_error e;
    char uid[24], rid[24], limit[24], offset[24], child_buf[37];
    const char *child;

    if (!jsonapi_is_uuid(study)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (filter_uuid(req, "child", child_buf, &child, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return;
    }
    /* ?child= names the caller's own child: no research id needed. */
    const char *params[] = { apidoc_user_id(req, uid), limit, offset, study,
                             child ? child : apidoc_research_id(req, rid) };
    int rc = pg_exec(app->pg, child ? &responses_nested_child_stmt : &responses_nested_stmt,
                     5, params, responses_page_done, req);
    if (rc < 0)
        jsonapi_reply_unavailable(req, "Database");
}

static void past_sessions_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "responses_past_sessions"))
        return;
    /* Upstream answers an unknown id with a 500; someone else's is
     * unknown too (never a leak). */
    if (PQntuples(res) == 0) {
        reply_not_found(req);
        return;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    apidoc_add(&d, "{\"data\":[");
    for (int i = 0; i < PQntuples(res); i++) {
        if (i)
            apidoc_add(&d, ",");
        render_response(&d, res, i, 0, SHAPE_PAST);
    }
    apidoc_add(&d, "]}");
    apidoc_reply(&d, req, 200);
}

static void past_sessions(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    char uid[24];

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    const char *params[] = { apidoc_user_id(req, uid), id };
    if (pg_exec(app->pg, &responses_past_stmt, 2, params, past_sessions_done, req) < 0)
        jsonapi_reply_unavailable(req, "Database");
}

/* ---- POST /api/v1/responses/ ---------------------------------------------------
 *
 * Two queries: what the child and study are (ownership, visibility, the
 * facts eligibility needs), then the INSERT with the eligibility computed
 * here in between. */

enum create_state {
    CREATE_CHECK,    /* responses_precheck in flight */
    CREATE_INSERT,   /* responses_insert in flight */
};

struct create_ctx {
    struct http_req *req;       /* borrowed: answered once, by the step */
    struct app *app;            /* borrowed */
    enum create_state state;
    char user_id[24];
    struct write_body body;     /* owned (attrs_text, exp_data_text) */
};

static void create_free(struct create_ctx *c)
{
    write_body_cleanup(&c->body);
    free(c);
}

static void create_on_result(PGresult *res, void *arg);

/* CREATE_CHECK done: answer 404/403, or compute eligibility and insert.
 * Returns true when the INSERT is on its way. */
static bool create_checked(struct create_ctx *c, PGresult *res)
{
    struct http_req *req = c->req;

    if (apidoc_db_failed(req, res, "responses_precheck"))
        return false;
#define G(k) PQgetvalue(res, 0, (k))
#define N(k) PQgetisnull(res, 0, (k))
    /* Upstream turns every relationship uuid into a row first (404 for an
     * unknown one), then asks whether the child is the requester's (403).
     * A study the requester may not see is unknown: no leak. */
    if (N(PC_CHILD_ID)) {
        jsonapi_reply_errorf(req, 404, "not_found", "/data/relationships/child",
                             "No Child matches the given query.");
        return false;
    }
    if (N(PC_STUDY_ID)) {
        jsonapi_reply_errorf(req, 404, "not_found", "/data/relationships/study",
                             "No Study matches the given query.");
        return false;
    }
    if (!apidoc_bool(res, 0, PC_OWN)) {
        reply_forbidden(req);
        return false;
    }
    struct eligibility_ages ages = {
        atoi(G(PC_MIN_Y)), atoi(G(PC_MIN_M)), atoi(G(PC_MIN_D)),
        atoi(G(PC_MAX_Y)), atoi(G(PC_MAX_M)), atoi(G(PC_MAX_D)),
    };
    struct eligibility_child child = {
        .age_days = atol(G(PC_AGE_DAYS)), .gender = G(PC_GENDER),
        .gestational_weeks = atoi(G(PC_WEEKS)), .languages = G(PC_LANGS),
        .conditions = G(PC_CONDS),
    };
    bool met = true;
    char err[128], elig[128];
    /* An expression that does not parse cannot be evaluated; upstream
     * validates them when the study is saved, so this is a study saved
     * some other way.  Count it as met (never refuse a session over it)
     * and say so in the log. */
    if (eligibility_criteria(G(PC_CRITERIA), &child, &met, err, sizeof err) < 0) {
        log_warn("study %s: criteria_expression not understood (%s); counted as met",
                 c->body.study, err);
        met = true;
    }
    unsigned flags = eligibility_flags(child.age_days, &ages, met,
                                       apidoc_bool(res, 0, PC_PARTICIPATION_OK));
    eligibility_pg_array(flags, elig, sizeof elig);

    const char *params[] = { c->user_id, G(PC_CHILD_ID), G(PC_STUDY_ID),
                             c->body.attrs_text, elig, c->body.exp_data_text,
                             c->body.withdrawn };
#undef G
#undef N
    c->state = CREATE_INSERT;
    if (pg_exec(c->app->pg, &responses_insert_stmt, 7, params, create_on_result, c) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        return false;
    }
    return true;
}

static void create_inserted(struct create_ctx *c, PGresult *res)
{
    struct http_req *req = c->req;
    char self[160];

    if (apidoc_db_failed(req, res, "responses_insert"))
        return;
    if (PQntuples(res) != 1) {
        /* The child changed hands between the two queries. */
        reply_forbidden(req);
        return;
    }
    jsonapi_url(req, self, sizeof self, "responses/%s/", PQgetvalue(res, 0, RC_UUID));
    http_add_header(req, "Location", self);
    reply_written(req, res, 0, &c->body, SHAPE_WRITE, 201);
}

/* One step per query result; frees the context once the request is
 * answered. */
static void create_step(struct create_ctx *c, PGresult *res)
{
    switch (c->state) {
    case CREATE_CHECK:
        if (create_checked(c, res))
            return;
        break;
    case CREATE_INSERT:
        create_inserted(c, res);
        break;
    }
    create_free(c);
}

static void create_on_result(PGresult *res, void *arg)
{
    create_step(arg, res);
}

static void response_create(struct http_req *req, struct app *app)
{
    struct create_ctx *c = calloc(1, sizeof *c);

    if (!c) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    c->req = req;
    c->app = app;
    c->state = CREATE_CHECK;
    apidoc_user_id(req, c->user_id);
    if (parse_write_body(req, NULL, true, &c->body) < 0) {
        create_free(c);
        return;
    }
    char rid[24];
    const char *params[] = { c->user_id, c->body.child, c->body.study,
                             apidoc_research_id(req, rid) };
    if (pg_exec(app->pg, &responses_precheck_stmt, 4, params, create_on_result, c) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        create_free(c);
    }
}

/* ---- PATCH / PUT /api/v1/responses/{id}/ -------------------------------------- */

/* A PATCH/PUT in flight: the checked body, whose spans the reply echoes. */
struct update_ctx {
    struct http_req *req;       /* borrowed: answered by response_updated */
    struct app *app;            /* borrowed */
    struct write_body body;     /* its texts kept for the full statement */
    char uid[24], rid[24];      /* the caller's user and research ids */
};

static void update_ctx_free(struct update_ctx *u)
{
    write_body_cleanup(&u->body);
    free(u);
}

/* $1..$8 of the update statements ($8 only the full one's). */
static void update_params(struct update_ctx *u, const char *params[8])
{
    const char *p[8] = { u->uid, http_req_param(u->req, 0), u->body.attrs_text,
                         u->body.child[0] ? u->body.child : NULL,
                         u->body.study[0] ? u->body.study : NULL,
                         u->body.exp_data_text, u->body.withdrawn,
                         u->rid[0] ? u->rid : NULL };
    memcpy(params, p, sizeof p);
}

static void response_updated(PGresult *res, void *arg)
{
    struct update_ctx *u = arg;
    struct http_req *req = u->req;

    if (apidoc_db_failed(req, res, "responses_update"))
        goto out;
    const char *outcome = PQntuples(res) ? PQgetvalue(res, 0, 0) : "not_found";
    if (strcmp(outcome, "ok") == 0) {
        /* PATCH answers with the write serializer, PUT with the read one. */
        reply_written(req, res, 1, &u->body,
                      http_req_method(req) == HTTP_PUT ? SHAPE_READ : SHAPE_WRITE, 200);
    } else if (strcmp(outcome, "forbidden") == 0 || strcmp(outcome, "child_forbidden") == 0) {
        reply_forbidden(req);
    } else if (strcmp(outcome, "child_not_found") == 0) {
        jsonapi_reply_errorf(req, 404, "not_found", "/data/relationships/child",
                             "No Child matches the given query.");
    } else if (strcmp(outcome, "study_not_found") == 0) {
        jsonapi_reply_errorf(req, 404, "not_found", "/data/relationships/study",
                             "No Study matches the given query.");
    } else if (strcmp(outcome, "child_changed") == 0) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/relationships/child",
                             "The child of a response cannot be changed.");
    } else if (strcmp(outcome, "study_changed") == 0) {
        jsonapi_reply_errorf(req, 400, "invalid", "/data/relationships/study",
                             "The study of a response cannot be changed.");
    } else {
        reply_not_found(req);
    }
out:
    update_ctx_free(u);
}

/* The owner's update answered: done, or the full statement for why not. */
static void response_updated_own(PGresult *res, void *arg)
{
    struct update_ctx *u = arg;
    const char *params[8];

    if (res && pg_ok(res) && PQntuples(res) == 1) {
        response_updated(res, u);
        return;
    }
    if (apidoc_db_failed(u->req, res, "responses_update_own")) {
        update_ctx_free(u);
        return;
    }
    update_params(u, params);
    if (pg_exec(u->app->pg, &responses_update_stmt, 8, params, response_updated, u) < 0) {
        jsonapi_reply_unavailable(u->req, "Database");
        update_ctx_free(u);
    }
}

static void response_update(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    struct update_ctx *u;

    if (!jsonapi_is_uuid(id)) {
        reply_not_found(req);
        return;
    }
    if (!(u = calloc(1, sizeof *u))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    u->req = req;
    if (parse_write_body(req, id, false, &u->body) < 0) {
        free(u);
        return;
    }
    u->app = app;
    apidoc_user_id(req, u->uid);
    const char *research = apidoc_research_id(req, u->rid);
    if (!research)
        u->rid[0] = '\0';
    const char *params[8];
    const struct auth_user *caller = auth_user(req);
    update_params(u, params);
    params[7] = caller ? caller->uuid : NULL;
    /* Grouped: under load, the runner's PATCHes share commits (io/pg.h).
     * Keyed by the response, so groups lock rows in one order. */
    if (pg_exec_grouped(app->pg, &responses_update_own_stmt, 8, params, id,
                        response_updated_own, u) < 0) {
        jsonapi_reply_unavailable(req, "Database");
        update_ctx_free(u);
    }
}

/* ---- routes ------------------------------------------------------------------ */

static const struct route responses_route_table[] = {
    { HTTP_GET, "/api/v1/responses/", responses_list, ROUTE_FAMILY },
    { HTTP_POST, "/api/v1/responses/", response_create, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/responses/{id}/", response_get, ROUTE_FAMILY },
    { HTTP_PATCH, "/api/v1/responses/{id}/", response_update, ROUTE_FAMILY },
    { HTTP_PUT, "/api/v1/responses/{id}/", response_update, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/studies/{id}/responses/", study_responses, ROUTE_FAMILY },
    { HTTP_GET, "/api/v1/past-sessions/{id}/", past_sessions, ROUTE_FAMILY },
};

int responses_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, responses_route_table);
}
