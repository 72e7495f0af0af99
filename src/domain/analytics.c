/* analytics: the participant browser and the charts' numbers
 * (analytics.h).  Each handler checks the shape of its input and hands
 * the rest to one statement of sql/functions/analytics.sql; a chart asked
 * for as CSV is the same document written out by analytics_csv. */
#include "config.h"

#include "studyhub/domain/analytics.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/domain/export.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* $1 user, $2 'study' or 'lab', $3 its uuid, $4 chart, $5 field, $6 min cell. */
static const struct pg_stmt chart_stmt = {
    "analytics_chart",
    "SELECT * FROM analytics_chart($1::bigint, $2::text, $3::uuid, $4::text, $5::text,"
    " $6::integer)",
};

/* $1 user, $2 lab uuid, $3 study uuid or NULL, $4 limit, $5 offset, $6 base. */
static const struct pg_stmt participant_list_stmt = {
    "analytics_participant_list",
    "SELECT * FROM participant_list($1::bigint, $2::uuid, $3::uuid, $4::bigint, $5::bigint,"
    " $6::text)",
};

static const char *const charts[] = { "over-time", "ages", "genders", "demographics", "rates",
                                      NULL };

const char *const analytics_fields[] = {
    "country", "state", "density", "education_level", "annual_income", "number_of_children",
    "number_of_guardians", "age", "gender", "race_ethnicity", "lookit_referrer", NULL,
};

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

int analytics_check(const char *chart, const char *field, const char *format,
                    struct jsonapi_error *e)
{
    if (!chart || !in_list(charts, chart)) {
        jsonapi_error_set(e, 404, "not_found", NULL,
                          "No such chart: over-time, ages, genders, demographics or rates.");
        return -1;
    }
    if (strcmp(chart, "demographics") == 0) {
        if (!field || !in_list(analytics_fields, field)) {
            jsonapi_error_set(e, 400, field ? "invalid" : "required", NULL,
                              "field must be one of country, state, density, education_level,"
                              " annual_income, number_of_children, number_of_guardians, age,"
                              " gender, race_ethnicity, lookit_referrer.");
            return -1;
        }
    } else if (field) {
        jsonapi_error_set(e, 400, "invalid", NULL, "Only the demographics chart takes field.");
        return -1;
    }
    if (format && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
        jsonapi_error_set(e, 400, "invalid", NULL, "format must be json or csv.");
        return -1;
    }
    return 0;
}

/* One cell as text into out (a CSV field). */
static void csv_value(struct evbuffer *out, const json_t *v, bool suppressed_count, long min)
{
    char num[64];

    if (json_is_string(v)) {
        export_csv_field(out, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        export_csv_field(out, num, strlen(num));
    } else if (json_is_real(v)) {
        snprintf(num, sizeof num, "%.1f", json_real_value(v));
        export_csv_field(out, num, strlen(num));
    } else if (json_is_true(v) || json_is_false(v)) {
        export_csv_field(out, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
    } else if (suppressed_count) {
        snprintf(num, sizeof num, "<%ld", min);
        export_csv_field(out, num, strlen(num));
    }
    /* null elsewhere (a rate of nothing): the empty field */
}

int analytics_csv(struct evbuffer *out, const json_t *attributes)
{
    const json_t *cols = json_object_get(attributes, "columns");
    const json_t *rows = json_object_get(attributes, "rows");
    const char *chart = json_string_value(json_object_get(attributes, "chart"));
    long min = (long)json_integer_value(json_object_get(attributes, "min_cell"));
    bool breakdown = chart && (strcmp(chart, "ages") == 0 || strcmp(chart, "genders") == 0 ||
                               strcmp(chart, "demographics") == 0);
    size_t i, j, ncols;
    const json_t *row, *v;

    if (!json_is_array(cols) || !json_is_array(rows) || json_array_size(cols) == 0)
        return -1;
    ncols = json_array_size(cols);
    json_array_foreach(cols, i, v) {
        if (i)
            evbuffer_add(out, ",", 1);
        csv_value(out, v, false, min);
    }
    evbuffer_add(out, "\r\n", 2);
    json_array_foreach(rows, i, row) {
        for (j = 0; j < ncols; j++) {
            if (j)
                evbuffer_add(out, ",", 1);
            csv_value(out, json_array_get(row, j), breakdown && j == ncols - 1, min);
        }
        evbuffer_add(out, "\r\n", 2);
    }
    return 0;
}

/* ------------------------------------------------------------ charts */

/* A chart's reply: the document as it is, or (CSV) its numbers. */
static void chart_csv_done(PGresult *res, void *arg)
{
    struct http_req *req = arg;
    json_t *doc = NULL, *attrs;
    struct evbuffer *out = NULL;
    char disp[160];

    if (!res || !pg_ok(res) || PQntuples(res) < 1 ||
        strcmp(PQgetvalue(res, 0, PERMS_COL_VERDICT), "ok") != 0 ||
        PQgetisnull(res, 0, PERMS_COL_DOC)) {
        perms_reply(req, res);
        return;
    }
    doc = json_loads(PQgetvalue(res, 0, PERMS_COL_DOC), 0, NULL);
    attrs = json_object_get(json_object_get(doc, "data"), "attributes");
    if (!(out = evbuffer_new()) || analytics_csv(out, attrs) < 0) {
        log_error("analytics: a chart document without columns or rows");
        jsonapi_reply_errorf(req, 500, "error", NULL, "A server error occurred.");
        if (out)
            evbuffer_free(out);
        json_decref(doc);
        return;
    }
    snprintf(disp, sizeof disp, "attachment; filename=\"%s-%s-%s%s%s.csv\"",
             json_string_value(json_object_get(attrs, "scope")),
             json_string_value(json_object_get(attrs, "scope_id")),
             json_string_value(json_object_get(attrs, "chart")),
             json_is_string(json_object_get(attrs, "field")) ? "-" : "",
             json_is_string(json_object_get(attrs, "field"))
                 ? json_string_value(json_object_get(attrs, "field")) : "");
    http_add_header(req, "Content-Disposition", disp);
    http_reply_buffer(req, 200, "text/csv; charset=utf-8", out);
    evbuffer_free(out);
    json_decref(doc);
}

static void chart(struct http_req *req, struct app *app, const char *kind)
{
    struct jsonapi_error e;
    const char *field = http_req_query(req, "field");
    const char *format = http_req_query(req, "format");
    char uid[24], id[37], min[16];

    if (field && !*field)
        field = NULL;
    if (!apidoc_uuid_copy(http_req_param(req, 0), id)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No %s matches the given query.",
                             strcmp(kind, "lab") == 0 ? "Lab" : "Study");
        return;
    }
    if (analytics_check(http_req_param(req, 1), field, format, &e) < 0) {
        jsonapi_reply_error(req, &e);
        return;
    }
    snprintf(min, sizeof min, "%d", ANALYTICS_MIN_CELL);
    const char *params[] = { perms_user_param(req, uid), kind, id, http_req_param(req, 1),
                             field, min };
    if (format && strcmp(format, "csv") == 0) {
        if (pg_exec(app->pg, &chart_stmt, 6, params, chart_csv_done, req) < 0)
            jsonapi_reply_unavailable(req, "Database");
        return;
    }
    perms_exec(req, app, &chart_stmt, 6, params);
}

static void h_study_chart(struct http_req *req, struct app *app)
{
    chart(req, app, "study");
}

static void h_lab_chart(struct http_req *req, struct app *app)
{
    chart(req, app, "lab");
}

/* ------------------------------------------------------------ participants */

static void h_participants(struct http_req *req, struct app *app)
{
    const char *study = http_req_query(req, "study");
    char uid[24], lab[37], su[37], limit[24], offset[24];

    if (!apidoc_uuid_copy(http_req_param(req, 0), lab)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Lab matches the given query.");
        return;
    }
    if (!jsonapi_page_sql(req, limit, offset))
        return;
    if (study && *study && !apidoc_uuid_copy(study, su)) {
        jsonapi_reply_errorf(req, 400, "invalid", NULL, "study must be a study id (a uuid).");
        return;
    }
    const char *params[] = { perms_user_param(req, uid), lab, study && *study ? su : NULL,
                             limit, offset, http_req_base_url(req) };
    perms_exec_list(req, app, &participant_list_stmt, 6, params);
}

/* ------------------------------------------------------------ routes */

static const struct route analytics_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/labs/{id}/participants/", h_participants,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/studies/{id}/analytics/{chart}", h_study_chart,
      ROUTE_RESEARCHER },
    { HTTP_GET, "/api/v1/researcher/labs/{id}/analytics/{chart}", h_lab_chart,
      ROUTE_RESEARCHER },
};

int analytics_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, analytics_route_table);
}
