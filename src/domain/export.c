/* export: a study's data as streamed files (export.h).  One export is a
 * small state machine (struct export_job): CHECKING (one statement checks
 * the permissions and writes the access log), FETCHING (a keyset batch
 * is in flight), WAITING (the client has not taken enough of what was
 * sent), then DONE.  Every callback stores what it got and calls
 * export_step; only export_finish ends the reply and frees the job. */
#include "config.h"

#include "studyhub/domain/export.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/domain/eligibility.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/domain/perms.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"

/* ------------------------------------------------------------ statements
 *
 * Every batch statement takes $1 study id, $2 the last key sent (0 at
 * first), $3 EXPORT_BATCH (frames: EXPORT_FRAMES_BATCH), $4 identifiable, $5 include consented
 * responses, $6 include preview responses, and yields (key, fields...)
 * ordered by key; identifiable fields are NULL unless $4 (the C side also
 * leaves their columns out). */

#define IDENT(x) "CASE WHEN $4::boolean THEN " x " END"

/* The batch of every response-keyed file: the
 * rule of export_includes written out, with the newest ruling as a
 * lateral index probe, so the prepared plan holds no per-row function
 * call (a SQL function that is not inlined costs tens of microseconds a
 * row, more than moving 20 KB of exp_data).  The hashed ids are computed
 * in C (eligibility_hash_child_id: the same function the runner uses),
 * and exp_data goes out as stored (de-identified in C). */
#define BATCH_CONSENTED                                                           \
    "WITH b AS (SELECT r.*, cl.action AS c_action, cl.created_at AS c_at,"         \
    "     cl.comments AS c_comments FROM responses r"                              \
    "   LEFT JOIN LATERAL (SELECT x.action, x.created_at, x.comments"              \
    "     FROM consent_rulings x WHERE x.response_id = r.id"                       \
    "     ORDER BY x.created_at DESC, x.id DESC LIMIT 1) cl ON true"               \
    "   WHERE r.study_id = $1::bigint AND r.id > $2::bigint"                       \
    "     AND CASE WHEN r.is_preview THEN $6::boolean"                             \
    "              ELSE $5::boolean AND cl.action IS NOT DISTINCT FROM 'accepted' END" \
    "   ORDER BY r.id LIMIT $3::bigint)"

/* export_includes(r, $5, $6) written out for a response r, with the
 * newest ruling as an index probe, for the statements that test
 * responses inside EXISTS or a GROUP BY. */
#define INCLUDED                                                                  \
    "CASE WHEN r.is_preview THEN $6::boolean ELSE $5::boolean AND"                \
    " (SELECT x.action FROM consent_rulings x WHERE x.response_id = r.id"         \
    "   ORDER BY x.created_at DESC, x.id DESC LIMIT 1) IS NOT DISTINCT FROM 'accepted' END"

/* (key, response object, consent object, parent uuid, the parent's other
 * fields, child uuid, the child's other fields, exp_data): C writes the
 * element (json_row). */
static const struct pg_stmt responses_json_stmt = {
    "export_responses_json",
    BATCH_CONSENTED
    " SELECT b.id, json_build_object('uuid', b.uuid, 'date_created', api_time(b.date_created),"
    "     'completed', b.completed, 'withdrawn', b.withdrawn, 'is_preview', b.is_preview,"
    "     'sequence', b.sequence, 'conditions', b.conditions,"
    "     'global_event_timings', b.global_event_timings, 'eligibility', to_json(b.eligibility),"
    "     'researcher_payment_status', b.researcher_payment_status,"
    "     'researcher_session_status', b.researcher_session_status,"
    "     'researcher_star', b.researcher_star),"
    "   json_build_object('ruling', coalesce(b.c_action, 'pending'),"
    "     'time', api_time(b.c_at), 'comments', b.c_comments),"
    "   u.uuid, CASE WHEN $4::boolean THEN json_build_object('nickname', u.nickname)"
    "                ELSE json_build_object() END,"
    "   c.uuid, CASE WHEN $4::boolean THEN json_build_object("
    "       'age_in_days', age_in_days(c.birthday, b.date_created), 'gender', c.gender,"
    "       'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),"
    "       'language_list', array_to_string(c.languages_spoken, ' '),"
    "       'name', c.given_name, 'birthday', c.birthday,"
    "       'condition_list', array_to_string(c.existing_conditions, ' '),"
    "       'additional_information', c.additional_information)"
    "     ELSE json_build_object("
    "       'age_in_days', age_in_days(c.birthday, b.date_created), 'gender', c.gender,"
    "       'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),"
    "       'language_list', array_to_string(c.languages_spoken, ' ')) END,"
    "   b.exp_data"
    " FROM b JOIN children c ON c.id = b.child_id JOIN users u ON u.id = c.user_id"
    " ORDER BY b.id",
};

static const struct pg_stmt summary_csv_stmt = {
    "export_summary_csv",
    BATCH_CONSENTED
    " SELECT b.id, b.uuid, api_time(b.date_created), b.completed, b.withdrawn, b.is_preview,"
    "   array_to_string(b.eligibility, ' '), b.researcher_payment_status,"
    "   b.researcher_session_status, b.researcher_star,"
    "   coalesce(b.c_action, 'pending'), api_time(b.c_at),"
    "   u.uuid, c.uuid, age_in_days(c.birthday, b.date_created), c.gender,"
    "   age_at_birth_label(c.gestational_age_at_birth), array_to_string(c.languages_spoken, ' '),"
    "   " IDENT("u.nickname") ", " IDENT("c.given_name") ", " IDENT("c.birthday::text") ","
    "   " IDENT("array_to_string(c.existing_conditions, ' ')") ", "
    IDENT("c.additional_information")
    " FROM b JOIN children c ON c.id = b.child_id JOIN users u ON u.id = c.user_id"
    " ORDER BY b.id",
};

static const struct export_column summary_columns[] = {
    { "response_uuid", "The response's id, as in every other file and the API", false },
    { "response_date_created", "When the session started (UTC, ISO 8601)", false },
    { "response_completed", "Whether the family reached the end of the study", false },
    { "response_withdrawn", "Whether the family withdrew video consent in the exit survey",
      false },
    { "response_is_preview", "A researcher's preview session, not a participant's", false },
    { "response_eligibility", "The eligibility the runner recorded (space separated)", false },
    { "response_payment_status", "researcher_payment_status as set by the study's team", false },
    { "response_session_status", "researcher_session_status as set by the study's team", false },
    { "response_star", "Starred by the study's team", false },
    { "consent_ruling", "The newest consent ruling (accepted in this file)", false },
    { "consent_time", "When that ruling was made (UTC)", false },
    { "participant_hashed_id", "The parent's account, hashed per study", false },
    { "child_hashed_id", "The child, hashed per study (as the runner's hash_child_id)", false },
    { "child_age_in_days", "The child's age in days on the day of the session", false },
    { "child_gender", "m, f, o or na", false },
    { "child_age_at_birth", "Gestational age at birth as the family gave it", false },
    { "child_language_list", "Languages spoken (codes, space separated)", false },
    { "participant_nickname", "The parent's nickname", true },
    { "child_name", "The child's given name", true },
    { "child_birthday", "The child's exact birthday (YYYY-MM-DD)", true },
    { "child_condition_list", "Conditions the family listed", true },
    { "child_additional_information", "Free text the family wrote about the child", true },
};

static const struct pg_stmt children_csv_stmt = {
    "export_children_csv",
    "WITH b AS (SELECT c.* FROM children c"
    "   WHERE c.id > $2::bigint AND EXISTS (SELECT 1 FROM responses r"
    "     WHERE r.child_id = c.id AND r.study_id = $1::bigint AND " INCLUDED ")"
    "   ORDER BY c.id LIMIT $3::bigint),"
    " rs AS (SELECT r.child_id, min(r.date_created) AS first, count(*) AS n FROM responses r"
    "   WHERE r.child_id IN (SELECT id FROM b) AND r.study_id = $1::bigint"
    "     AND " INCLUDED " GROUP BY r.child_id)"
    " SELECT c.id, c.uuid, u.uuid, c.gender,"
    "   age_at_birth_label(c.gestational_age_at_birth), array_to_string(c.languages_spoken, ' '),"
    "   age_in_days(c.birthday, rs.first), rs.n,"
    "   " IDENT("c.given_name") ", " IDENT("c.birthday::text") ","
    "   " IDENT("array_to_string(c.existing_conditions, ' ')") ", "
    IDENT("c.additional_information")
    " FROM b c JOIN rs ON rs.child_id = c.id JOIN users u ON u.id = c.user_id"
    " ORDER BY c.id",
};

static const struct export_column children_columns[] = {
    { "child_hashed_id", "The child, hashed per study", false },
    { "participant_hashed_id", "The parent's account, hashed per study", false },
    { "child_gender", "m, f, o or na", false },
    { "child_age_at_birth", "Gestational age at birth as the family gave it", false },
    { "child_language_list", "Languages spoken (codes, space separated)", false },
    { "child_age_in_days_at_first_session", "Age in days at the child's first session", false },
    { "response_count", "The child's sessions in this file", false },
    { "child_name", "The child's given name", true },
    { "child_birthday", "The child's exact birthday (YYYY-MM-DD)", true },
    { "child_condition_list", "Conditions the family listed", true },
    { "child_additional_information", "Free text the family wrote about the child", true },
};

/* Frame data, long: one response per row, its exp_data as the runner
 * sent it; C unrolls it into the file's rows (export_frame_rows), with
 * the JSON scanner that checks runner writes: one pass over the text, no
 * tree, no per-row SQL. */
static const struct pg_stmt frames_csv_stmt = {
    "export_frames_csv",
    BATCH_CONSENTED
    " SELECT b.id, b.uuid, c.uuid, b.exp_data, $4::boolean"
    " FROM b JOIN children c ON c.id = b.child_id ORDER BY b.id",
};

static const struct export_column frames_columns[] = {
    { "response_uuid", "The response's id", false },
    { "child_hashed_id", "The child, hashed per study", false },
    { "frame_id", "The frame's id in exp_data (a jsPsych trial's index)", false },
    { "event_number", "For eventTimings entries: the event's number from 1; else empty",
      false },
    { "key", "The frame's (or event's) key", false },
    { "value", "Its value: strings as they are, anything else as JSON", false },
};

#define DEMO_FIELDS                                                               \
    " b.uuid, u.uuid, api_time(d.created_at), d.number_of_children,"              \
    " d.number_of_guardians, array_to_string(d.us_race_ethnicity_identification, ' '),"  \
    " d.age, d.gender, d.education_level, d.annual_income, d.lookit_referrer,"    \
    " d.country, d.state, d.density"

static const struct pg_stmt demographics_csv_stmt = {
    "export_demographics_csv",
    BATCH_CONSENTED
    " SELECT b.id," DEMO_FIELDS ", " IDENT("array_to_string(d.child_birthdays, ' ')") ","
    "   " IDENT("d.guardians_explanation") ", "
    IDENT("d.us_race_ethnicity_identification_describe") ", " IDENT("d.additional_comments")
    " FROM b JOIN children c ON c.id = b.child_id JOIN users u ON u.id = c.user_id"
    " LEFT JOIN demographic_data d ON d.id = b.demographic_snapshot_id"
    " ORDER BY b.id",
};

static const struct export_column demographics_columns[] = {
    { "response_uuid", "The response whose snapshot this is", false },
    { "participant_hashed_id", "The parent's account, hashed per study", false },
    { "demographic_date", "When the family last changed these answers (UTC)", false },
    { "number_of_children", "As the family answered", false },
    { "number_of_guardians", "As the family answered", false },
    { "us_race_ethnicity_identification", "Codes, space separated", false },
    { "age", "The parent's age range", false },
    { "gender", "The parent's gender", false },
    { "education_level", "As the family answered", false },
    { "annual_income", "As the family answered", false },
    { "lookit_referrer", "How the family heard of the platform", false },
    { "country", "Country code", false },
    { "state", "US state code", false },
    { "density", "urban, suburban or rural", false },
    { "child_birthdays", "Exact birthdays of the family's children", true },
    { "guardians_explanation", "Free text", true },
    { "us_race_ethnicity_identification_describe", "Free text", true },
    { "additional_comments", "Free text", true },
};

static const struct pg_stmt demographics_json_stmt = {
    "export_demographics_json",
    BATCH_CONSENTED
    " SELECT b.id, u.uuid, jsonb_build_object('response_uuid', b.uuid,"
    "   'demographic_date', api_time(d.created_at),"
    "   'number_of_children', d.number_of_children,"
    "   'number_of_guardians', d.number_of_guardians,"
    "   'us_race_ethnicity_identification', to_jsonb(d.us_race_ethnicity_identification),"
    "   'age', d.age, 'gender', d.gender, 'education_level', d.education_level,"
    "   'annual_income', d.annual_income, 'lookit_referrer', d.lookit_referrer,"
    "   'country', d.country, 'state', d.state, 'density', d.density)"
    "   || CASE WHEN $4::boolean THEN jsonb_build_object("
    "        'child_birthdays', to_jsonb(d.child_birthdays),"
    "        'guardians_explanation', d.guardians_explanation,"
    "        'us_race_ethnicity_identification_describe',"
    "            d.us_race_ethnicity_identification_describe,"
    "        'additional_comments', d.additional_comments) ELSE '{}'::jsonb END"
    " FROM b JOIN children c ON c.id = b.child_id JOIN users u ON u.id = c.user_id"
    " LEFT JOIN demographic_data d ON d.id = b.demographic_snapshot_id"
    " ORDER BY b.id",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct export_format formats[] = {
    { "responses.json", "responses", "json", EXPORT_JSON, NULL, 0, &responses_json_stmt },
    { "summary.csv", "summary", "csv", EXPORT_CSV, summary_columns, N(summary_columns),
      &summary_csv_stmt },
    { "summary-dictionary.csv", "summary-dictionary", "csv", EXPORT_DICTIONARY,
      summary_columns, N(summary_columns), NULL },
    { "children.csv", "children", "csv", EXPORT_CSV, children_columns, N(children_columns),
      &children_csv_stmt },
    { "children-dictionary.csv", "children-dictionary", "csv", EXPORT_DICTIONARY,
      children_columns, N(children_columns), NULL },
    { "frames.csv", "frames", "csv", EXPORT_FRAMES, frames_columns, N(frames_columns),
      &frames_csv_stmt },
    { "frames-dictionary.csv", "frames-dictionary", "csv", EXPORT_DICTIONARY, frames_columns,
      N(frames_columns), NULL },
    { "demographics.csv", "demographics", "csv", EXPORT_CSV, demographics_columns,
      N(demographics_columns), &demographics_csv_stmt },
    { "demographics-dictionary.csv", "demographics-dictionary", "csv", EXPORT_DICTIONARY,
      demographics_columns, N(demographics_columns), NULL },
    { "demographics.json", "demographics", "json", EXPORT_JSON, NULL, 0,
      &demographics_json_stmt },
};

/* $1 user, $2 study uuid, $3 identifiable wanted, $4 preview wanted, $5
 * the file name (for the log).  One row: verdict, study id, include
 * consented, include preview, the study's salt and hash digits (for the
 * hashed ids computed in C).  The access-log entry is written only when
 * the export goes ahead. */
static const struct pg_stmt export_begin_stmt = {
    "export_begin",
    "WITH st AS (SELECT s.id, s.salt, s.hash_digits FROM studies s WHERE s.uuid = $2::uuid"
    "              AND " PERMS_STUDY_SQL("$1::bigint", "s.id", "'read_study__details'") "),"
    " p AS (SELECT st.id, st.salt, st.hash_digits,"
    "   " PERMS_STUDY_SQL("$1::bigint", "st.id", "'read_study__responses'") " AS rd,"
    "   " PERMS_STUDY_SQL("$1::bigint", "st.id", "'read_study__responses(is_preview=True)'") " AS pv,"
    "   " PERMS_STUDY_SQL("$1::bigint", "st.id", "'read_study__responses__identifiable'") " AS idf"
    "   FROM st),"
    " v AS (SELECT CASE WHEN p.id IS NULL THEN 'not_found'"
    "                   WHEN $4::boolean AND NOT p.pv THEN 'no_preview'"
    "                   WHEN NOT $4::boolean AND NOT p.rd THEN 'no_read'"
    "                   WHEN $3::boolean AND NOT p.idf THEN 'no_identifiable'"
    "                   ELSE 'ok' END AS verdict, p.id, p.rd, p.pv AND $4::boolean AS pv,"
    "          p.salt, p.hash_digits"
    "   FROM (SELECT 1) one LEFT JOIN p ON true),"
    " lg AS (INSERT INTO access_log (user_id, user_uuid, user_email, study_id, study_uuid,"
    "          action, object, detail)"
    "        SELECT u.id, u.uuid, u.email, v.id, $2::uuid, 'export', $5::text,"
    "               jsonb_build_object('identifiable', $3::boolean, 'preview', v.pv)"
    "          FROM v JOIN users u ON u.id = $1::bigint WHERE v.verdict = 'ok')"
    " SELECT v.verdict, v.id, v.rd, v.pv, v.salt, v.hash_digits FROM v",
};

/* ------------------------------------------------------------ pure parts */

const struct export_format *export_format_find(const char *file)
{
    for (size_t i = 0; file && i < N(formats); i++)
        if (strcmp(formats[i].file, file) == 0)
            return &formats[i];
    return NULL;
}

void export_file_name(const struct export_format *f, const char *study_uuid,
                      bool identifiable, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s-%s%s.%s", study_uuid, f->base,
             identifiable && f->kind != EXPORT_DICTIONARY ? "-identifiable" : "", f->ext);
}

/* Would a spreadsheet take this for a formula?  Numbers ("-3", "+1.5")
 * are left alone so the data stays numeric. */
static bool formula_like(const char *s, size_t len)
{
    char *end;
    char buf[64];

    if (len == 0)
        return false;
    switch (s[0]) {         /* strchr("=+-@\t\r", s[0]), its NUL included */
    case '=': case '+': case '-': case '@': case '\t': case '\r': case '\0':
        break;
    default:
        return false;
    }
    if (len < sizeof buf && (s[0] == '-' || s[0] == '+')) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        strtod(buf, &end);
        if (end != buf && *end == '\0')
            return false;
    }
    return true;
}

/* Output gathered into 16 KB blocks handed to the evbuffer by reference
 * (freed when sent): an evbuffer_add per field (a dozen per frame-data
 * row) cost more than the bytes, and a buffer on the stack cost a second
 * copy of them.  With out NULL (a row's fixed prefix) it writes into
 * fixed[] only and drops what does not fit, which the callers' bounds
 * rule out. */
#define SB_CHUNK 16384

struct sbuf {
    struct evbuffer *out;
    char *p;                    /* owned block (or fixed) */
    size_t len, cap;
    char fixed[1024];
};

static void sb_init(struct sbuf *b, struct evbuffer *out)
{
    b->out = out;
    b->len = 0;
    b->p = out ? NULL : b->fixed;
    b->cap = out ? 0 : sizeof b->fixed;
}

static void sb_block_free(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

static void sb_flush(struct sbuf *b)
{
    if (!b->out || !b->p)
        return;
    if (b->len == 0 || evbuffer_add_reference(b->out, b->p, b->len, sb_block_free, NULL) < 0)
        free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Room for n more bytes; false when out of memory (the bytes are lost). */
static bool sb_room(struct sbuf *b, size_t n)
{
    size_t want = n > SB_CHUNK ? n : SB_CHUNK;

    if (n <= b->cap - b->len)
        return true;
    if (!b->out)
        return false;
    sb_flush(b);
    if (!(b->p = malloc(want)))
        return false;
    b->cap = want;
    return true;
}

static inline void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (n == 0)
        return;                 /* nothing, and no block taken for it */
    if (n > b->cap - b->len && !sb_room(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Bytes that make a CSV field quoted. */
static bool csv_special(unsigned char c)
{
    /* One compare for the letters and digits that most bytes are. */
    return c <= ',' && (c == ',' || c == '"' || c == '\r' || c == '\n');
}

/* isspace in the C locale, without its table lookup through a call. */
static inline bool csv_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static void csv_field(struct sbuf *b, const char *s, size_t len)
{
    bool quote;
    const char *q;

    if (!s)
        return;
    quote = len > 0 && (csv_space((unsigned char)s[0]) || csv_space((unsigned char)s[len - 1]));
    for (size_t i = 0; i < len && !quote; i++)
        quote = csv_special((unsigned char)s[i]);
    if (formula_like(s, len)) {
        /* The apostrophe goes inside the quotes, so quote always. */
        sb_put(b, "\"'", 2);
        quote = true;
    } else if (quote) {
        sb_put(b, "\"", 1);
    }
    if (!quote) {
        sb_put(b, s, len);
        return;
    }
    while ((q = memchr(s, '"', len))) {
        size_t n = (size_t)(q - s) + 1;
        sb_put(b, s, n);            /* up to and with the quote, */
        sb_put(b, "\"", 1);         /* which is doubled */
        s += n;
        len -= n;
    }
    sb_put(b, s, len);
    sb_put(b, "\"", 1);
}

void export_csv_field(struct evbuffer *out, const char *s, size_t len)
{
    struct sbuf b;

    sb_init(&b, out);
    csv_field(&b, s, len);
    sb_flush(&b);
}

static void csv_row(struct sbuf *b, const struct export_format *f, bool identifiable,
                    const char *const *fields, const size_t *lens)
{
    bool first = true;
    for (size_t i = 0; i < f->ncolumns; i++) {
        if (f->columns[i].identifiable && !identifiable)
            continue;
        if (!first)
            sb_put(b, ",", 1);
        first = false;
        csv_field(b, fields[i], fields[i] ? lens[i] : 0);
    }
    sb_put(b, "\r\n", 2);
}

void export_csv_header(struct evbuffer *out, const struct export_format *f, bool identifiable)
{
    bool first = true;
    for (size_t i = 0; i < f->ncolumns; i++) {
        if (f->columns[i].identifiable && !identifiable)
            continue;
        if (!first)
            evbuffer_add(out, ",", 1);
        first = false;
        export_csv_field(out, f->columns[i].name, strlen(f->columns[i].name));
    }
    evbuffer_add(out, "\r\n", 2);
}

void export_csv_row(struct evbuffer *out, const struct export_format *f, bool identifiable,
                    const char *const *fields, const size_t *lens)
{
    struct sbuf b;

    sb_init(&b, out);
    csv_row(&b, f, identifiable, fields, lens);
    sb_flush(&b);
}

void export_dictionary(struct evbuffer *out, const struct export_format *f)
{
    evbuffer_add_printf(out, "column,description,identifiable\r\n");
    for (size_t i = 0; i < f->ncolumns; i++) {
        const struct export_column *c = &f->columns[i];
        export_csv_field(out, c->name, strlen(c->name));
        evbuffer_add(out, ",", 1);
        export_csv_field(out, c->description, strlen(c->description));
        evbuffer_add_printf(out, ",%s\r\n", c->identifiable ? "true" : "false");
    }
}

/* A scanned value as row text: strings unescaped (into buf when they
 * fit, else into *owned, which the caller frees), anything else the JSON
 * text as the runner sent it. */
static const char *value_text(const struct apidoc_jspan *v, char *buf, size_t buflen,
                              char **owned, size_t *len)
{
    char *dst = buf;

    *owned = NULL;
    if (v->type != AJ_STRING) {
        *len = v->len;
        return v->p;
    }
    /* Without a backslash the text is what lies between the quotes. */
    if (!memchr(v->p, '\\', v->len)) {
        *len = v->len - 2;
        return v->p + 1;
    }
    /* Unescaped text is never longer than its escaped form. */
    if (v->len + 1 > buflen && !(dst = *owned = malloc(v->len + 1))) {
        *len = 0;
        return "";
    }
    if (!apidoc_json_string(v, dst, v->len + 1)) {
        *len = 0;
        return "";
    }
    *len = strlen(dst);
    return dst;
}

static bool free_text_key(const char *k, size_t len)
{
    static const char *const keys[] = { "birthDate", "feedback", "childName" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (len == strlen(keys[i]) && memcmp(k, keys[i], len) == 0)
            return true;
    return false;
}

/* A frame (or trial) without the free-text keys: its other members as
 * written, joined with commas. */
static void object_without_free_text(struct evbuffer *out, const struct apidoc_jspan *obj)
{
    struct apidoc_jspan key, val;
    char name[16];
    size_t it = 0;
    bool first = true;

    evbuffer_add(out, "{", 1);
    while (apidoc_json_member(obj, &it, &key, &val)) {
        /* The three keys are short; a longer key is never one of them. */
        if (apidoc_json_string(&key, name, sizeof name) && free_text_key(name, strlen(name)))
            continue;
        if (!first)
            evbuffer_add(out, ",", 1);
        first = false;
        evbuffer_add(out, key.p, key.len);
        evbuffer_add(out, ":", 1);
        evbuffer_add(out, val.p, val.len);
    }
    evbuffer_add(out, "}", 1);
}

static bool mentions_free_text(const char *s, size_t len)
{
    const char *q, *end = s + len;

    /* A key written with escapes ("birth\\u0044ate") is found by parsing:
     * any \u sends the text there. */
    for (const char *p = s; p < end && (q = memchr(p, '\\', (size_t)(end - p))); p = q + 2)
        if (q + 1 < end && q[1] == 'u')
            return true;
    /* One pass from quote to quote (three memmem calls over 20 KB cost
     * half of what writing it out does). */
    for (const char *p = s; p < end && (q = memchr(p, '"', (size_t)(end - p))); p = q + 1) {
        size_t left = (size_t)(end - q);
        if ((left >= 11 && q[1] == 'b' && memcmp(q, "\"birthDate\"", 11) == 0) ||
            (left >= 10 && q[1] == 'f' && memcmp(q, "\"feedback\"", 10) == 0) ||
            (left >= 11 && q[1] == 'c' && memcmp(q, "\"childName\"", 11) == 0))
            return true;
    }
    return false;
}

int export_exp_data(struct evbuffer *out, const char *exp_data, size_t len, bool identifiable)
{
    struct apidoc_jspan root, key, val;
    char err[128];
    size_t it = 0;
    bool first = true;

    /* Most exp_data holds none of the keys (or the export keeps them):
     * it goes out as the runner sent it, without being parsed. */
    if (identifiable || !mentions_free_text(exp_data, len)) {
        evbuffer_add(out, exp_data, len);
        return 0;
    }
    if (apidoc_json_scan(exp_data, len, &root, NULL, err, sizeof err) < 0)
        return -1;
    if (root.type == AJ_OBJECT) {
        evbuffer_add(out, "{", 1);
        while (apidoc_json_member(&root, &it, &key, &val)) {
            if (!first)
                evbuffer_add(out, ",", 1);
            first = false;
            evbuffer_add(out, key.p, key.len);
            evbuffer_add(out, ":", 1);
            if (val.type == AJ_OBJECT)
                object_without_free_text(out, &val);
            else
                evbuffer_add(out, val.p, val.len);
        }
        evbuffer_add(out, "}", 1);
    } else if (root.type == AJ_ARRAY) {
        evbuffer_add(out, "[", 1);
        while (apidoc_json_element(&root, &it, &val)) {
            if (!first)
                evbuffer_add(out, ",", 1);
            first = false;
            if (val.type == AJ_OBJECT)
                object_without_free_text(out, &val);
            else
                evbuffer_add(out, val.p, val.len);
        }
        evbuffer_add(out, "]", 1);
    } else {
        evbuffer_add(out, root.p, root.len);
    }
    return 0;
}

/* n >= 0 in decimal into out (not NUL-ended); its length.  snprintf's
 * cost showed in the profile: it runs once per event. */
static size_t decimal(long n, char out[24])
{
    char tmp[24];
    size_t len = 0, i = 0;

    do {
        tmp[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0 && len < sizeof tmp);
    while (len)
        out[i++] = tmp[--len];
    return i;
}

/* A key's text: what lies between the quotes when it has no escape
 * (nearly always), else unescaped into buf; NULL when longer than buf
 * (no runner writes such a key). */
static const char *key_text(const struct apidoc_jspan *key, char *buf, size_t buflen,
                            size_t *len)
{
    if (!memchr(key->p + 1, '\\', key->len - 2)) {
        *len = key->len - 2;
        return key->p + 1;
    }
    if (!apidoc_json_string(key, buf, buflen))
        return NULL;
    *len = strlen(buf);
    return buf;
}

static bool key_is(const char *k, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(k, name, len) == 0;
}

/* One row: the six columns of frames_columns; pre is the first three
 * (response, child, frame) as CSV with their commas, the same for every
 * row of a frame, and for an event's rows its number too (without its
 * comma).  key NULL: the row of a frame without keys. */
static void frame_row(struct sbuf *out, const struct sbuf *pre, const char *key, size_t klen,
                      const struct apidoc_jspan *val)
{
    char *owned = NULL, buf[512];
    size_t vlen = 0;
    const char *v = val ? value_text(val, buf, sizeof buf, &owned, &vlen) : NULL;

    sb_put(out, pre->p, pre->len);
    sb_put(out, ",", 1);
    csv_field(out, key, klen);
    sb_put(out, ",", 1);
    csv_field(out, v, vlen);
    sb_put(out, "\r\n", 2);
    free(owned);
}

/* The rows of one frame: its keys in order (eventTimings aside, and the
 * free-text keys unless identifiable), then each key of each event with
 * its number from 1.  A frame with none still gets a row of its own. */
static long frame_rows(struct sbuf *out, const char *response, const char *hash,
                       const char *frame, const struct apidoc_jspan *fv, bool identifiable)
{
    struct apidoc_jspan key, val, events = { NULL, 0, AJ_NONE }, ev;
    char name[256], num[24];
    const char *k;
    size_t it = 0, klen, frame_len;
    long rows = 0;
    struct sbuf pre;    /* at most ~600 bytes: response, hash, frame (256, escaped) */

    sb_init(&pre, NULL);
    csv_field(&pre, response, strlen(response));
    sb_put(&pre, ",", 1);
    csv_field(&pre, hash, strlen(hash));
    sb_put(&pre, ",", 1);
    csv_field(&pre, frame, strlen(frame));
    sb_put(&pre, ",", 1);
    frame_len = pre.len;
    while (fv->type == AJ_OBJECT && apidoc_json_member(fv, &it, &key, &val)) {
        if (!(k = key_text(&key, name, sizeof name, &klen)))
            continue;               /* a key longer than any runner writes */
        if (key_is(k, klen, "eventTimings")) {
            events = val;
            continue;
        }
        if (!identifiable && free_text_key(k, klen))
            continue;
        frame_row(out, &pre, k, klen, &val);
        rows++;
    }
    it = 0;
    for (long n = 1; events.type == AJ_ARRAY && apidoc_json_element(&events, &it, &ev); n++) {
        size_t kt = 0;
        pre.len = frame_len;
        sb_put(&pre, num, decimal(n, num));
        while (ev.type == AJ_OBJECT && apidoc_json_member(&ev, &kt, &key, &val)) {
            if (!(k = key_text(&key, name, sizeof name, &klen)))
                continue;
            frame_row(out, &pre, k, klen, &val);
            rows++;
        }
    }
    if (rows == 0) {
        pre.len = frame_len;
        frame_row(out, &pre, NULL, 0, NULL);
        rows++;
    }
    return rows;
}

/* The rows of a located exp_data (an object of frames or an array of
 * trials). */
static long frame_rows_of(struct evbuffer *out, const char *response, const char *hash,
                          const struct apidoc_jspan *root, bool identifiable)
{
    struct apidoc_jspan key, val;
    char frame[256];
    size_t it = 0;
    long rows = 0;
    struct sbuf b;

    sb_init(&b, out);
    if (root->type == AJ_OBJECT) {
        while (apidoc_json_member(root, &it, &key, &val))
            if (apidoc_json_string(&key, frame, sizeof frame))
                rows += frame_rows(&b, response, hash, frame, &val, identifiable);
    } else if (root->type == AJ_ARRAY) {
        for (long i = 0; apidoc_json_element(root, &it, &val); i++) {
            frame[decimal(i, frame)] = '\0';
            rows += frame_rows(&b, response, hash, frame, &val, identifiable);
        }
    }
    sb_flush(&b);
    return rows;
}

long export_frame_rows(struct evbuffer *out, const char *response, const char *hash,
                       const char *exp_data, size_t len, bool identifiable)
{
    struct apidoc_jspan root;
    char err[128];

    if (apidoc_json_scan(exp_data, len, &root, NULL, err, sizeof err) < 0)
        return -1;
    return frame_rows_of(out, response, hash, &root, identifiable);
}

/* export_frame_rows for exp_data as the batch statement returns it: a
 * json column, which PostgreSQL parsed when it was stored (and its CHECK
 * keeps an object or an array), after the write path had checked it with
 * apidoc_json_scan.  Valid JSON is all the walk needs, so the 20 KB are
 * not checked a second time; only the outer brackets are located.
 * (PostgreSQL's json also takes what the scanner refuses, a \u0000 or a
 * number numeric cannot hold: such exp_data is exported, not skipped.) */
static long frame_rows_stored(struct evbuffer *out, const char *response, const char *hash,
                              const char *exp_data, size_t len, bool identifiable)
{
    const char *p = exp_data, *end = exp_data + len;
    struct apidoc_jspan root;

    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        end--;
    if (end - p < 2 || !((*p == '{' && end[-1] == '}') || (*p == '[' && end[-1] == ']')))
        return -1;
    root.p = p;
    root.len = (size_t)(end - p);
    root.type = *p == '{' ? AJ_OBJECT : AJ_ARRAY;
    return frame_rows_of(out, response, hash, &root, identifiable);
}

/* ------------------------------------------------------------ the job */

struct hash_memo {
    char uuid[37];
    char hash[ELIGIBILITY_HASH_MAX + 1];
};

enum export_state { EXPORT_CHECKING, EXPORT_FETCHING, EXPORT_WAITING, EXPORT_DONE };

static const char *const export_state_names[] = { "checking", "fetching", "waiting", "done" };

struct export_job {
    enum export_state state;
    struct http_req *req;               /* borrowed until export_finish ends it */
    struct app *app;                    /* borrowed */
    const struct export_format *fmt;    /* static */
    struct event *timer;                /* owned: the WAITING poll */
    bool identifiable;                  /* asked for, and allowed */
    bool preview;                       /* preview rows asked for */
    char study_uuid[37];
    char study_id[24];                  /* studies.id, from the check */
    char consented[6], previews[6];     /* "true"/"false": what the rows include */
    char after[24];                     /* the last key sent */
    char salt[37];                      /* the study's, for the hashed ids */
    int digits;                         /* studies.hash_digits */
    struct hash_memo child, parent;     /* the last hashed id of each */
    char filename[160];
    long rows;                          /* rows sent */
    bool any;                           /* a JSON element was sent (comma before the next) */
    bool failed;                        /* out of memory with a batch in flight */
};

static void export_fetch(struct export_job *j);

/* The hashed id of a uuid for this job's study, remembered for the next
 * row (a child's sessions, a parent's children, come in runs). */
static const char *job_hash(struct export_job *j, struct hash_memo *m, const char *uuid)
{
    if (strcmp(m->uuid, uuid) != 0) {
        snprintf(m->uuid, sizeof m->uuid, "%s", uuid);
        if (eligibility_hash_child_id(uuid, j->study_uuid, j->salt, j->digits, m->hash,
                                      sizeof m->hash) < 0)
            m->hash[0] = '\0';
    }
    return m->hash;
}

/* A CSV column named child_hashed_id or participant_hashed_id gets a
 * uuid from its statement and C hashes it (job_hash, with the memo of
 * its kind), so no row calls hashed_id in SQL: tens of microseconds a
 * row, more than the rest of the row.  NULL for any other column. */
static struct hash_memo *hash_column(struct export_job *j, const struct export_column *c)
{
    if (strcmp(c->name, "child_hashed_id") == 0)
        return &j->child;
    if (strcmp(c->name, "participant_hashed_id") == 0)
        return &j->parent;
    return NULL;
}

/* {"<key>": "<hash>", <the other fields>}: others is a JSON object
 * from the batch ("{}" or "{...}"). */
static void json_with_hash(struct evbuffer *out, const char *key, const char *hash,
                           const char *others, size_t olen)
{
    evbuffer_add_printf(out, "{\"%s\": \"%s\"", key, hash);
    /* json_build_object writes "{", its members, "}" (no space inside
     * the braces when empty). */
    if (olen > 2) {
        evbuffer_add(out, ", ", 2);
        evbuffer_add(out, others + 1, olen - 1);
    } else {
        evbuffer_add(out, "}", 1);
    }
}

/* One element of responses.json from a row of responses_json_stmt. */
static void json_row(struct export_job *j, const PGresult *res, int row, struct evbuffer *out)
{
#define V(c) PQgetvalue(res, row, c)
#define L(c) ((size_t)PQgetlength(res, row, c))
    evbuffer_add(out, "{\"response\": ", 13);
    evbuffer_add(out, V(1), L(1));
    evbuffer_add(out, ", \"consent\": ", 13);
    evbuffer_add(out, V(2), L(2));
    evbuffer_add(out, ", \"participant\": ", 17);
    json_with_hash(out, "hashed_id", job_hash(j, &j->parent, V(3)), V(4), L(4));
    evbuffer_add(out, ", \"child\": ", 11);
    json_with_hash(out, "hashed_id", job_hash(j, &j->child, V(5)), V(6), L(6));
    evbuffer_add(out, ", \"exp_data\": ", 14);
    if (export_exp_data(out, V(7), L(7), j->identifiable) < 0) {
        log_warn("export %s: row %s: exp_data does not scan", j->filename, V(0));
        evbuffer_add(out, "null", 4);
    }
    evbuffer_add(out, "}", 1);
#undef V
#undef L
}

static void export_set_state(struct export_job *j, enum export_state s)
{
    log_debug("export %s: %s -> %s", j->filename, export_state_names[j->state],
              export_state_names[s]);
    j->state = s;
}

/* Ends the reply (complete or not) and frees the job: the only place
 * either happens.  A stream cut short ends with a last line saying so, so
 * the file cannot pass for complete (JSON: the array is left open). */
static void export_finish(struct export_job *j, const char *failure)
{
    if (failure) {
        char line[256];
        int n = snprintf(line, sizeof line, "\r\n# export failed: %s\r\n", failure);
        log_warn("export %s stopped after %ld rows: %s", j->filename, j->rows, failure);
        if (!http_req_client_gone(j->req))
            http_reply_chunk(j->req, line, (size_t)n);
    } else {
        log_info("export %s: %ld rows", j->filename, j->rows);
    }
    export_set_state(j, EXPORT_DONE);
    http_reply_end(j->req);
    if (j->timer)
        event_free(j->timer);
    free(j);
}

/* Stops a stream nobody will read, or that must end for the drain. */
static bool export_abandoned(struct export_job *j)
{
    if (http_req_client_gone(j->req)) {
        export_finish(j, "the client went away");
        return true;
    }
    if (j->app->draining) {
        export_finish(j, "the server is stopping; download again");
        return true;
    }
    return false;
}

/* Writes one batch's rows. */
static void export_write_rows(struct export_job *j, const PGresult *res, struct evbuffer *out)
{
    const struct export_format *f = j->fmt;
    const char *fields[32];
    size_t lens[32];

    for (int row = 0; row < PQntuples(res); row++) {
        if (f->kind == EXPORT_FRAMES) {
            long n = frame_rows_stored(out, PQgetvalue(res, row, 1),
                                       job_hash(j, &j->child, PQgetvalue(res, row, 2)),
                                       PQgetvalue(res, row, 3),
                                       (size_t)PQgetlength(res, row, 3), j->identifiable);
            if (n < 0)
                log_warn("export %s: response %s: exp_data does not scan", j->filename,
                         PQgetvalue(res, row, 1));
            j->rows += n > 0 ? n - 1 : 0;      /* the row counted below */
        } else if (f->stmt == &responses_json_stmt) {
            if (j->any)
                evbuffer_add(out, ",\n", 2);
            json_row(j, res, row, out);
        } else if (f->stmt == &demographics_json_stmt) {
            /* (key, parent uuid, the snapshot's other fields) */
            if (j->any)
                evbuffer_add(out, ",\n", 2);
            json_with_hash(out, "participant_hashed_id",
                           job_hash(j, &j->parent, PQgetvalue(res, row, 1)),
                           PQgetvalue(res, row, 2), (size_t)PQgetlength(res, row, 2));
        } else if (f->kind == EXPORT_JSON) {
            if (j->any)
                evbuffer_add(out, ",\n", 2);
            evbuffer_add(out, PQgetvalue(res, row, 1), (size_t)PQgetlength(res, row, 1));
        } else {
            for (size_t c = 0; c < f->ncolumns && c < 32; c++) {
                int col = (int)c + 1;
                struct hash_memo *h = hash_column(j, &f->columns[c]);
                fields[c] = PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
                lens[c] = (size_t)PQgetlength(res, row, col);
                if (fields[c] && h) {
                    fields[c] = job_hash(j, h, fields[c]);
                    lens[c] = strlen(fields[c]);
                    continue;
                }
                /* Booleans as true/false, not t/f. */
                if (fields[c] && PQftype(res, col) == 16 /* BOOLOID */) {
                    fields[c] = fields[c][0] == 't' ? "true" : "false";
                    lens[c] = strlen(fields[c]);
                }
            }
            export_csv_row(out, f, j->identifiable, fields, lens);
        }
        j->any = true;
        j->rows++;
    }
}

/* About what a batch's rows come to: the result's bytes, half as much
 * again for frames.csv (its rows repeat the response and child ids). */
static size_t batch_size_hint(const struct export_job *j, const PGresult *res)
{
    size_t n = 0;
    int cols = PQnfields(res);

    for (int row = 0; row < PQntuples(res); row++)
        for (int c = 0; c < cols; c++)
            n += (size_t)PQgetlength(res, row, c) + 16;
    return j->fmt->kind == EXPORT_FRAMES ? n + n / 2 : n + n / 8;
}

static void export_batch_done(PGresult *res, void *arg);

static int batch_of(const struct export_job *j)
{
    return j->fmt->kind == EXPORT_FRAMES ? EXPORT_FRAMES_BATCH : EXPORT_BATCH;
}

/* Sends the next batch's statement; -1 when it could not be queued. */
static int export_query(struct export_job *j)
{
    char limit[24];

    export_set_state(j, EXPORT_FETCHING);
    snprintf(limit, sizeof limit, "%d", batch_of(j));
    const char *params[] = { j->study_id, j->after, limit, j->identifiable ? "true" : "false",
                             j->consented, j->previews };
    return pg_exec(j->app->pg, j->fmt->stmt, 6, params, export_batch_done, j);
}

/* How many distinct keys a batch holds, and the last one (the next
 * batch's "after"). */
static long batch_keys(const PGresult *res, char *last, size_t lastlen)
{
    long keys = 0;
    const char *prev = NULL;

    for (int row = 0; row < PQntuples(res); row++) {
        const char *k = PQgetvalue(res, row, 0);
        if (!prev || strcmp(prev, k) != 0)
            keys++;
        prev = k;
    }
    if (prev)
        snprintf(last, lastlen, "%s", prev);
    return keys;
}

static void export_batch_done(PGresult *res, void *arg)
{
    struct export_job *j = arg;
    struct evbuffer *out;
    bool more, asked = false;

    if (export_abandoned(j))
        return;
    if (j->failed) {
        export_finish(j, "out of memory");
        return;
    }
    if (!res || !pg_ok(res)) {
        if (res)
            log_error("export %s: %s", j->filename, PQresultErrorMessage(res));
        export_finish(j, res ? "a database error" : "the database is unreachable");
        return;
    }
    more = batch_keys(res, j->after, sizeof j->after) >= batch_of(j);
    /* The next batch is asked for before this one is written, so that
     * PostgreSQL reads it while this process formats and sends: the two
     * overlap instead of taking turns.  Memory: one more batch. */
    if (more && http_reply_pending(j->req) <= EXPORT_PENDING_MAX) {
        if (export_query(j) < 0) {
            export_finish(j, "out of memory");
            return;
        }
        asked = true;
    }
    if (!(out = evbuffer_new())) {
        /* The batch asked for above still calls back: it finds the
         * stream ended (export_finish is not called twice). */
        if (!asked)
            export_finish(j, "out of memory");
        else
            j->failed = true;
        return;
    }
    /* Room for the whole batch in one piece: row by row, evbuffer_add
     * would allocate a 4 KB chain at a time (a malloc per few rows). */
    evbuffer_expand(out, batch_size_hint(j, res));
    export_write_rows(j, res, out);
    if (!more && j->fmt->kind == EXPORT_JSON)
        evbuffer_add(out, "\n]\n", 3);
    http_reply_chunk_buffer(j->req, out);
    evbuffer_free(out);
    if (!more)
        export_finish(j, NULL);
    else if (!asked)
        export_fetch(j);
}

static void export_on_timer(evutil_socket_t fd, short what, void *arg)
{
    export_fetch(arg);
}

/* The next batch, once the client has taken enough of the last. */
static void export_fetch(struct export_job *j)
{
    static const struct timeval wait = { 0, EXPORT_WAIT_MS * 1000 };

    if (export_abandoned(j))
        return;
    if (http_reply_pending(j->req) > EXPORT_PENDING_MAX) {
        /* The server tells a stream nothing when its output drains, so
         * it looks again shortly. */
        export_set_state(j, EXPORT_WAITING);
        if (!j->timer && !(j->timer = evtimer_new(j->app->base, export_on_timer, j))) {
            export_finish(j, "out of memory");
            return;
        }
        evtimer_add(j->timer, &wait);
        return;
    }
    if (export_query(j) < 0)
        export_finish(j, "out of memory");
}

/* The check's answer: refuse, or start the reply and the first batch. */
static void export_checked(PGresult *res, void *arg)
{
    struct export_job *j = arg;
    struct http_req *req = j->req;
    const char *v;
    char disp[256];

    if (apidoc_db_failed(req, res, "export_begin")) {
        free(j);
        return;
    }
    v = PQntuples(res) ? PQgetvalue(res, 0, 0) : "not_found";
    if (strcmp(v, "ok") != 0) {
        if (strcmp(v, "not_found") == 0)
            jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        else
            jsonapi_reply_errorf(req, 403, "permission_denied", NULL, "%s",
                                 strcmp(v, "no_preview") == 0
                                     ? "Preview data needs read_study__responses(is_preview=True)."
                                 : strcmp(v, "no_identifiable") == 0
                                     ? "Identifiable columns need read_study__responses__identifiable."
                                     : "Exports need read_study__responses.");
        free(j);
        return;
    }
    snprintf(j->study_id, sizeof j->study_id, "%s", PQgetvalue(res, 0, 1));
    snprintf(j->consented, sizeof j->consented, "%s", apidoc_bool(res, 0, 2) ? "true" : "false");
    snprintf(j->previews, sizeof j->previews, "%s", apidoc_bool(res, 0, 3) ? "true" : "false");
    snprintf(j->salt, sizeof j->salt, "%s", PQgetvalue(res, 0, 4));
    j->digits = atoi(PQgetvalue(res, 0, 5));
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", j->filename);
    http_add_header(req, "Content-Disposition", disp);
    http_reply_start(req, 200, j->fmt->kind == EXPORT_JSON ? "application/json; charset=utf-8"
                                                           : "text/csv; charset=utf-8");
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        export_finish(j, "out of memory");
        return;
    }
    if (j->fmt->kind == EXPORT_DICTIONARY)
        export_dictionary(out, j->fmt);
    else if (j->fmt->kind == EXPORT_CSV || j->fmt->kind == EXPORT_FRAMES)
        export_csv_header(out, j->fmt, j->identifiable);
    else
        evbuffer_add(out, "[\n", 2);
    http_reply_chunk_buffer(req, out);
    evbuffer_free(out);
    if (j->fmt->kind == EXPORT_DICTIONARY)
        export_finish(j, NULL);
    else
        export_fetch(j);
}

/* ?name=true|false (absent: false); false after a 400 for anything else. */
static bool query_flag(struct http_req *req, const char *name, bool *out)
{
    const char *v = http_req_query(req, name);
    *out = v && strcmp(v, "true") == 0;
    if (!v || strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        return true;
    jsonapi_reply_errorf(req, 400, "invalid", NULL, "%s must be true or false.", name);
    return false;
}

static void h_export(struct http_req *req, struct app *app)
{
    const struct export_format *f = export_format_find(http_req_param(req, 1));
    struct export_job *j;
    bool ident, preview;
    char uid[24], su[37];

    if (!apidoc_uuid_copy(http_req_param(req, 0), su)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No Study matches the given query.");
        return;
    }
    if (!f) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "No such export.");
        return;
    }
    if (!query_flag(req, "identifiable", &ident) || !query_flag(req, "preview", &preview))
        return;
    if (!(j = calloc(1, sizeof *j))) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    j->state = EXPORT_CHECKING;
    j->req = req;
    j->app = app;
    j->fmt = f;
    j->identifiable = ident;
    j->preview = preview;
    snprintf(j->study_uuid, sizeof j->study_uuid, "%s", su);
    snprintf(j->after, sizeof j->after, "0");
    export_file_name(f, su, ident, j->filename, sizeof j->filename);
    const char *params[] = { perms_user_param(req, uid), su, ident ? "true" : "false",
                             preview ? "true" : "false", j->filename };
    if (pg_exec(app->pg, &export_begin_stmt, 5, params, export_checked, j) < 0) {
        free(j);
        jsonapi_reply_unavailable(req, "Database");
    }
}

static const struct route export_route_table[] = {
    { HTTP_GET, "/api/v1/researcher/studies/{id}/exports/{file}", h_export, ROUTE_RESEARCHER },
};

int export_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, export_route_table);
}
