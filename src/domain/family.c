/* family: a family's own records beyond its children: the demographics
 * questionnaire, saved as a new snapshot on every save (previous_id points
 * to the one before, as upstream's DemographicData), and the user's own
 * profile and email preferences.  The reads of other people's records stay
 * in users.c; everything here touches only the caller's rows. */
#include "studyhub/domain/family.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/fields.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* ---- demographics --------------------------------------------------------- */

/* Upstream's choices (accounts/models.py); "" is "not answered". */
static const char *const n_children[] = { "", "0", "1", "2", "3", "4", "5", "6", "7", "8",
                                          "9", "10", "10+", NULL };
static const char *const n_guardians[] = { "", "1", "2", "3>", "varies", NULL };
static const char *const races[] = { "white", "hisp", "black", "asian", "native", "mideast",
                                     "hawaiian", "other", NULL };
static const char *const ages[] = { "", "<18", "18-21", "22-24", "25-29", "30-34", "35-39",
                                    "40-44", "45-49", "50s", "60s", ">70", NULL };
static const char *const genders[] = { "", "m", "f", "o", "na", NULL };
static const char *const educations[] = { "", "some", "hs", "col", "assoc", "bach", "grad",
                                          "prof", NULL };
static const char *const incomes[] = { "", "0", "5000", "10000", "15000", "20000", "30000",
                                       "40000", "50000", "60000", "70000", "80000", "90000",
                                       "100000", "110000", "120000", "130000", "140000",
                                       "150000", "160000", "170000", "180000", "190000",
                                       ">200000", "na", NULL };
static const char *const densities[] = { "", "urban", "suburban", "rural", NULL };

/* In the order of demographics_insert_stmt's $2.. */
static const struct field demographic_fields[] = {
    { "number_of_children", F_CHOICE, 0, 0, 0, n_children },
    { "child_birthdays", F_DATE_LIST, FIELD_PAST, 0, 20, NULL },
    { "number_of_guardians", F_CHOICE, 0, 0, 0, n_guardians },
    { "guardians_explanation", F_TEXT, 0, 0, 1000, NULL },
    { "us_race_ethnicity_identification", F_CHOICE_LIST, 0, 0, 8, races },
    { "us_race_ethnicity_identification_describe", F_TEXT, 0, 0, 1000, NULL },
    { "age", F_CHOICE, 0, 0, 0, ages },
    { "gender", F_CHOICE, 0, 0, 0, genders },
    { "education_level", F_CHOICE, 0, 0, 0, educations },
    { "annual_income", F_CHOICE, 0, 0, 0, incomes },
    { "lookit_referrer", F_TEXT, 0, 0, 1000, NULL },
    { "additional_comments", F_TEXT, 0, 0, 5000, NULL },
    { "country", F_TEXT, 0, 0, 2, NULL },
    { "state", F_TEXT, 0, 0, 2, NULL },
    { "density", F_CHOICE, 0, 0, 0, densities },
    { "extra", F_OBJECT, 0, 0, 10000, NULL },
    { "former_lookit_annual_income", F_READONLY, 0, 0, 0, NULL },
    { "date_created", F_READONLY, 0, 0, 0, NULL },
    { "pk", F_READONLY, 0, 0, 0, NULL },
};
#define DEMOGRAPHIC_WRITABLE 16

/* $1 user, $2.. the fields.  A snapshot is the whole questionnaire: a
 * field not given is "not answered", not the previous answer.  Columns:
 * uuid. */
static const struct pg_stmt demographics_insert_stmt = {
    "demographics_insert",
    "INSERT INTO demographic_data (user_id, previous_id, number_of_children,"
    "    child_birthdays, number_of_guardians, guardians_explanation,"
    "    us_race_ethnicity_identification, us_race_ethnicity_identification_describe,"
    "    age, gender, education_level, annual_income, lookit_referrer,"
    "    additional_comments, country, state, density, extra)"
    " SELECT $1::bigint,"
    "        (SELECT d.id FROM demographic_data d WHERE d.user_id = $1::bigint"
    "          ORDER BY d.created_at DESC, d.id DESC LIMIT 1),"
    "        coalesce($2, ''), coalesce($3::date[], '{}'), coalesce($4, ''),"
    "        coalesce($5, ''), coalesce($6::text[], '{}'), coalesce($7, ''),"
    "        coalesce($8, ''), coalesce($9, ''), coalesce($10, ''), coalesce($11, ''),"
    "        coalesce($12, ''), coalesce($13, ''), coalesce($14, ''), coalesce($15, ''),"
    "        coalesce($16, ''), coalesce($17::jsonb, '{}')"
    " RETURNING uuid",
};

/* The caller's snapshot by uuid ($1 user, $2 uuid), or the newest ($2
 * NULL).  Columns: uuid, attrs, previous uuid. */
static const struct pg_stmt demographics_own_stmt = {
    "demographics_own",
    "SELECT v.uuid, v.attrs, p.uuid"
    "  FROM demographics_api v JOIN demographic_data d ON d.id = v.id"
    "  LEFT JOIN demographic_data p ON p.id = d.previous_id"
    " WHERE v.user_id = $1::bigint AND ($2::uuid IS NULL OR v.uuid = $2::uuid)"
    " ORDER BY v.created_at DESC, v.id DESC LIMIT 1",
};

struct family_op {
    struct http_req *req;   /* borrowed until replied */
    struct app *app;        /* borrowed */
    int status;             /* of the reply: 200 or 201 */
};

static struct family_op *op_new(struct http_req *req, struct app *app, int status)
{
    struct family_op *op = calloc(1, sizeof *op);

    if (!op) {
        jsonapi_reply_unavailable(req, "Memory");
        return NULL;
    }
    op->req = req;
    op->app = app;
    op->status = status;
    return op;
}

/* Sends stmt for op; on failure replies 503 and frees op. */
static void op_exec(struct family_op *op, const struct pg_stmt *stmt, int n,
                    const char *const *params, pg_cb cb)
{
    if (pg_exec(op->app->pg, stmt, n, params, cb, op) < 0) {
        jsonapi_reply_unavailable(op->req, "Database");
        free(op);
    }
}

/* Checks the request document of type against the fields; false after
 * replying with every problem.  vals is cleaned up by the caller on true. */
static bool parse_fields(struct http_req *req, const char *type, const char *id,
                         const struct field *f, size_t n, bool create,
                         struct field_values *vals)
{
    struct jsonapi_error errs[FIELDS_MAX_ERRORS];
    json_t *data = NULL;
    char today[11];
    int nerr;

    memset(vals, 0, sizeof *vals);
    if (jsonapi_parse_request(req, type, id, &data, &errs[0]) < 0) {
        jsonapi_reply_error(req, &errs[0]);
        return false;
    }
    fields_today(today);
    nerr = fields_parse(json_object_get(data, "attributes"), f, n, create, today, vals, errs);
    json_decref(data);
    if (nerr > 0) {
        apidoc_reply_errors(req, errs, nerr);
        fields_cleanup(vals);
        return false;
    }
    return true;
}

static void demographics_rendered(PGresult *res, void *arg)
{
    struct family_op *op = arg;
    struct http_req *req = op->req;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "demographics_own"))
        goto out;
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    if (PQntuples(res) != 1) {
        /* No snapshot yet: an empty to-one, not an error. */
        apidoc_add(&d, "{\"data\":null}");
        apidoc_reply(&d, req, 200);
        goto out;
    }
    const char *uuid = PQgetvalue(res, 0, 0);
    apidoc_printf(&d, "{\"data\":{\"type\":\"demographics\",\"id\":\"%s\",\"attributes\":", uuid);
    apidoc_addn(&d, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    apidoc_add(&d, ",\"relationships\":{\"previous\":{\"data\":");
    if (PQgetisnull(res, 0, 2))
        apidoc_add(&d, "null");
    else
        apidoc_printf(&d, "{\"type\":\"demographics\",\"id\":\"%s\"}", PQgetvalue(res, 0, 2));
    apidoc_printf(&d, "}},\"links\":{\"self\":\"%s/api/v1/demographics/%s/\"}}}", d.base, uuid);
    apidoc_reply(&d, req, op->status);
out:
    free(op);
}

static void demographics_inserted(PGresult *res, void *arg)
{
    struct family_op *op = arg;
    char uid[24], uuid[37];

    if (apidoc_db_failed(op->req, res, "demographics_insert")) {
        free(op);
        return;
    }
    snprintf(uuid, sizeof uuid, "%s", PQgetvalue(res, 0, 0));
    const char *params[] = { apidoc_user_id(op->req, uid), uuid };
    op_exec(op, &demographics_own_stmt, 2, params, demographics_rendered);
}

/* POST /api/v1/demographics/: a new snapshot of the caller's answers. */
static void demographics_create(struct http_req *req, struct app *app)
{
    struct field_values v;
    struct family_op *op;
    const char *params[1 + DEMOGRAPHIC_WRITABLE];
    char uid[24];

    if (!parse_fields(req, "demographics", NULL, demographic_fields,
                      sizeof demographic_fields / sizeof demographic_fields[0], true, &v))
        return;
    if ((op = op_new(req, app, 201))) {
        params[0] = apidoc_user_id(req, uid);
        for (int i = 0; i < DEMOGRAPHIC_WRITABLE; i++)
            params[1 + i] = v.param[i];
        op_exec(op, &demographics_insert_stmt, 1 + DEMOGRAPHIC_WRITABLE, params,
                demographics_inserted);
    }
    fields_cleanup(&v);
}

/* GET /api/v1/demographics/current/: the caller's newest snapshot, or
 * data null.  (The history is GET /api/v1/users/{id}/demographics/.) */
static void demographics_current(struct http_req *req, struct app *app)
{
    struct family_op *op = op_new(req, app, 200);
    char uid[24];

    if (!op)
        return;
    const char *params[] = { apidoc_user_id(req, uid), NULL };
    op_exec(op, &demographics_own_stmt, 2, params, demographics_rendered);
}

/* ---- the user's own profile ----------------------------------------------- */

static const struct field user_fields[] = {
    { "given_name", F_TEXT, 0, 0, 255, NULL },
    { "middle_name", F_TEXT, 0, 0, 255, NULL },
    { "family_name", F_TEXT, 0, 0, 255, NULL },
    { "nickname", F_TEXT, 0, 0, 255, NULL },
    { "email_next_session", F_BOOL, 0, 0, 0, NULL },
    { "email_new_studies", F_BOOL, 0, 0, 0, NULL },
    { "email_study_updates", F_BOOL, 0, 0, 0, NULL },
    { "email_response_questions", F_BOOL, 0, 0, 0, NULL },
    /* The email address changes only through a verified flow; the rest
     * are the platform's. */
    { "email", F_READONLY, 0, 0, 0, NULL },
    { "username", F_READONLY, 0, 0, 0, NULL },
    { "identicon", F_READONLY, 0, 0, 0, NULL },
    { "is_active", F_READONLY, 0, 0, 0, NULL },
    { "is_staff", F_READONLY, 0, 0, 0, NULL },
    { "is_researcher", F_READONLY, 0, 0, 0, NULL },
    { "former_lookit_id", F_READONLY, 0, 0, 0, NULL },
    { "linked_former_lookit_ids", F_READONLY, 0, 0, 0, NULL },
    { "date_created", F_READONLY, 0, 0, 0, NULL },
    { "pk", F_READONLY, 0, 0, 0, NULL },
};
#define USER_WRITABLE 8

#undef SET
#define SET(col, bit, val) \
    col " = CASE WHEN $2::bigint & " #bit " <> 0 THEN " val " ELSE " col " END"
/* $1 user, $2 mask, $3.. the fields. */
static const struct pg_stmt user_update_stmt = {
    "user_update",
    "UPDATE users SET "
    SET("given_name", 1, "$3") ", " SET("middle_name", 2, "$4") ", "
    SET("family_name", 4, "$5") ", " SET("nickname", 8, "$6") ", "
    SET("email_next_session", 16, "$7::boolean") ", "
    SET("email_new_studies", 32, "$8::boolean") ", "
    SET("email_study_updates", 64, "$9::boolean") ", "
    SET("email_response_questions", 128, "$10::boolean")
    " WHERE id = $1::bigint AND is_active RETURNING uuid",
};

/* $1 user.  Columns: uuid, attrs. */
static const struct pg_stmt user_own_stmt = {
    "user_own",
    "SELECT v.uuid, v.attrs FROM users_api v WHERE v.id = $1::bigint",
};

static void user_rendered(PGresult *res, void *arg)
{
    struct family_op *op = arg;
    struct http_req *req = op->req;
    struct apidoc d;

    if (apidoc_db_failed(req, res, "user_own"))
        goto out;
    if (PQntuples(res) != 1) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No User matches the given query.");
        goto out;
    }
    if (apidoc_init(&d, req) < 0) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    const char *uuid = PQgetvalue(res, 0, 0);
    apidoc_printf(&d, "{\"data\":{\"type\":\"users\",\"id\":\"%s\",\"attributes\":", uuid);
    apidoc_addn(&d, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    apidoc_printf(&d,
                  ",\"relationships\":{\"demographics\":{\"links\":{\"related\":"
                  "\"%s/api/v1/users/%s/demographics/\"}},\"children\":{\"links\":"
                  "{\"related\":\"%s/api/v1/users/%s/children/\"}}},"
                  "\"links\":{\"self\":\"%s/api/v1/users/%s/\"}}}",
                  d.base, uuid, d.base, uuid, d.base, uuid);
    apidoc_reply(&d, req, op->status);
out:
    free(op);
}

static void user_updated(PGresult *res, void *arg)
{
    struct family_op *op = arg;
    char uid[24];

    if (apidoc_db_failed(op->req, res, "user_update")) {
        free(op);
        return;
    }
    const char *params[] = { apidoc_user_id(op->req, uid) };
    op_exec(op, &user_own_stmt, 1, params, user_rendered);
}

/* PATCH /api/v1/users/{id}/: the caller's own names and email
 * preferences.  Anyone else's id is a 404, as for a user one cannot see. */
static void user_update(struct http_req *req, struct app *app)
{
    const char *id = http_req_param(req, 0);
    const struct auth_user *me = auth_user(req);
    struct field_values v;
    struct family_op *op;
    const char *params[2 + USER_WRITABLE];
    char uid[24], want[37];

    if (!me || !apidoc_uuid_copy(id, want) || strcmp(want, me->uuid) != 0) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No User matches the given query.");
        return;
    }
    if (!parse_fields(req, "users", id, user_fields, sizeof user_fields / sizeof user_fields[0],
                      false, &v))
        return;
    if ((op = op_new(req, app, 200))) {
        params[0] = apidoc_user_id(req, uid);
        params[1] = v.mask_text;
        for (int i = 0; i < USER_WRITABLE; i++)
            params[2 + i] = v.param[i];
        op_exec(op, &user_update_stmt, 2 + USER_WRITABLE, params, user_updated);
    }
    fields_cleanup(&v);
}

/* Added before users.c's table, so that .../demographics/current/ is not
 * taken for a snapshot's id. */
static const struct route family_route_table[] = {
    { HTTP_POST, "/api/v1/demographics/", demographics_create, ROUTE_USER },
    { HTTP_GET, "/api/v1/demographics/current/", demographics_current, ROUTE_USER },
    { HTTP_PATCH, "/api/v1/users/{id}/", user_update, ROUTE_USER },
};

int family_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, family_route_table);
}
