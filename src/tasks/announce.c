/* announce: the job announce_new_studies and the notification window
 * (announce.h).  The job reads the candidates a criteria expression
 * decides and evaluates it in C (eligibility_criteria), then one
 * statement writes: who is told of what, the emails and the record that
 * they were told commit together, so a crash neither loses nor repeats an
 * announcement. */
#include "config.h"

#include "studyhub/tasks/announce.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/domain/eligibility.h"
#include "studyhub/queue/sched.h"
#include "studyhub/io/pg.h"

/* The (study, child) pairs that pass all but a criteria expression:
 * study, child, expression, age in days, gender, weeks, languages,
 * conditions (sql/096). */
static const struct pg_stmt candidates_stmt = {
    "announce_criteria_candidates",
    "SELECT study_id, child_id, criteria_expression, age_days, gender, gestational_weeks,"
    "       languages, conditions FROM announce_criteria_candidates()",
};

/* $1 base URL of the links, $2 and $3 the pairs whose expression is met
 * (studies, children).  Columns: families, studies, emails. */
static const struct pg_stmt announce_stmt = {
    "announce_new_studies",
    "SELECT families, studies, emails"
    "  FROM announce_new_studies($1::text, $2::bigint[], $3::bigint[])",
};

/* $1 NOTIFY_WINDOW_S. */
static const struct pg_stmt window_stmt = {
    "announce_notify_window",
    "INSERT INTO app_settings (key, value) VALUES ('notify_window_s', to_jsonb($1::integer))"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
};

/* The job: CANDIDATES (the pairs an expression decides are read and
 * evaluated), then ANNOUNCING (the one statement that writes). */
enum announce_state { ANNOUNCE_CANDIDATES, ANNOUNCE_ANNOUNCING };

static const char *const announce_state_names[] = {
    [ANNOUNCE_CANDIDATES] = "candidates", [ANNOUNCE_ANNOUNCING] = "announcing",
};

/* The run's data. */
struct announce_run {
    struct sched_run *run;      /* borrowed: the run this is the data of */
    struct app *app;            /* borrowed */
    char base[512];
    char *studies, *children;   /* owned: the pairs met, as array literals */
};

/* A PostgreSQL array literal being built: "{1,2,3}". */
struct id_array {
    char *p;
    size_t len, cap;
    bool any;
};

static int id_array_put(struct id_array *a, const char *s)
{
    size_t n = strlen(s), need = a->len + n + 2;

    if (need > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        char *p;
        while (cap < need)
            cap *= 2;
        if (!(p = realloc(a->p, cap)))
            return -1;
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->len, s, n + 1);
    a->len += n;
    return 0;
}

static int id_array_add(struct id_array *a, const char *id)
{
    if ((a->any ? id_array_put(a, ",") : id_array_put(a, "{")) < 0)
        return -1;
    a->any = true;
    return id_array_put(a, id);
}

static int id_array_close(struct id_array *a)
{
    return id_array_put(a, a->any ? "}" : "{}");
}

/* The pairs of res whose criteria expression the child meets, as two
 * array literals (studies, children; the caller frees both p); -1 when
 * out of memory. */
static int met_pairs(PGresult *res, struct id_array *studies, struct id_array *children,
                     long *unparsable)
{
    for (int i = 0; i < PQntuples(res); i++) {
#define G(k) PQgetvalue(res, i, (k))
        struct eligibility_child child = {
            .age_days = atol(G(3)), .gender = G(4), .gestational_weeks = atoi(G(5)),
            .languages = G(6), .conditions = G(7),
        };
        bool met = false;
        char err[128];
        /* Unlike a session (which counts an expression it cannot read as
         * met), an announcement is not sent on one: a family that may not
         * be eligible is not written to. */
        if (eligibility_criteria(G(2), &child, &met, err, sizeof err) < 0) {
            (*unparsable)++;
            met = false;
        }
        if (met && (id_array_add(studies, G(0)) < 0 || id_array_add(children, G(1)) < 0))
            return -1;
#undef G
    }
    return id_array_close(studies) < 0 || id_array_close(children) < 0 ? -1 : 0;
}

/* A failed statement ends the run; true then. */
static bool announce_failed(struct announce_run *a, PGresult *res)
{
    if (res && pg_ok(res))
        return false;
    sched_done(a->run, SCHED_FAILED, "%s",
               res ? PQresultErrorMessage(res) : "the database is unreachable");
    return true;
}

static void on_candidates(PGresult *res, void *arg)
{
    struct announce_run *a = arg;
    struct id_array studies = { 0 }, children = { 0 };
    long unparsable = 0;

    if (announce_failed(a, res))
        return;
    if (met_pairs(res, &studies, &children, &unparsable) < 0) {
        free(studies.p);
        free(children.p);
        sched_done(a->run, SCHED_FAILED, "out of memory");
        return;
    }
    if (unparsable)
        log_warn("announce_new_studies: %ld criteria expressions not understood;"
                 " those studies are not announced to those children", unparsable);
    a->studies = studies.p;
    a->children = children.p;
    sched_set_state(a->run, ANNOUNCE_ANNOUNCING);
}

static void on_announced(PGresult *res, void *arg)
{
    struct announce_run *a = arg;

    if (announce_failed(a, res))
        return;
    if (PQntuples(res) != 1) {
        sched_done(a->run, SCHED_FAILED, "no answer from announce_new_studies");
        return;
    }
    sched_done(a->run, SCHED_SUCCEEDED, "announced %s studies to %s families (%s emails)",
               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
}

static void announce_step(struct sched_run *run)
{
    struct announce_run *a = sched_run_data(run);

    switch ((enum announce_state)sched_run_state(run)) {
    case ANNOUNCE_CANDIDATES:
        if (pg_exec(a->app->pg, &candidates_stmt, 0, NULL, on_candidates, a) < 0)
            sched_done(run, SCHED_FAILED, "out of memory");
        return;
    case ANNOUNCE_ANNOUNCING: {
        const char *params[] = { a->base, a->studies, a->children };

        if (pg_exec(a->app->pg, &announce_stmt, 3, params, on_announced, a) < 0)
            sched_done(run, SCHED_FAILED, "out of memory");
        return;
    }
    }
}

static int announce_open(struct sched_run *run, char *err, size_t errlen)
{
    struct app *app = sched_run_app(run);
    const struct config *cfg = app->cfg;
    struct announce_run *a = calloc(1, sizeof *a);

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->run = run;
    a->app = app;
    if (cfg->base_url && *cfg->base_url)
        snprintf(a->base, sizeof a->base, "%s", cfg->base_url);
    else
        snprintf(a->base, sizeof a->base, "http://%s:%ld", cfg->listen_addr, cfg->listen_port);
    sched_run_set_data(run, a);
    return 0;
}

static void announce_close(struct sched_run *run)
{
    struct announce_run *a = sched_run_data(run);

    free(a->studies);
    free(a->children);
    free(a);
}

const struct sched_job announce_new_studies_job = {
    .name = "announce_new_studies", .states = announce_state_names, .nstates = 2,
    .initial_state = ANNOUNCE_CANDIDATES,
    .open = announce_open, .step = announce_step, .close = announce_close,
};

static void window_saved(PGresult *res, void *arg)
{
    (void)arg;
    if (!res || !pg_ok(res))
        log_warn("cannot save NOTIFY_WINDOW_S: %s",
                 res ? PQresultErrorMessage(res) : "the database is unreachable");
}

int announce_start(struct app *app)
{
    char window[24];

    snprintf(window, sizeof window, "%ld", app->cfg->notify_window_s);
    const char *params[] = { window };
    return pg_exec(app->pg, &window_stmt, 1, params, window_saved, NULL);
}
