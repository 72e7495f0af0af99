/* announce: the job announce_new_studies and the notification window
 * (announce.h).  The job is one statement: who is told of what, the
 * emails and the record that they were told commit together, so a crash
 * neither loses nor repeats an announcement. */
#include "config.h"

#include "studyhub/tasks/announce.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/sched.h"
#include "studyhub/io/pg.h"

/* $1 base URL of the links.  Columns: families, studies, emails. */
static const struct pg_stmt announce_stmt = {
    "announce_new_studies",
    "SELECT families, studies, emails FROM announce_new_studies($1::text)",
};

/* $1 NOTIFY_WINDOW_S. */
static const struct pg_stmt window_stmt = {
    "announce_notify_window",
    "INSERT INTO app_settings (key, value) VALUES ('notify_window_s', to_jsonb($1::integer))"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
};

static void announced(PGresult *res, void *arg)
{
    struct sched_run *run = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        sched_done(run, SCHED_FAILED, "%s",
                   res ? PQresultErrorMessage(res) : "the database is unreachable");
        return;
    }
    sched_done(run, SCHED_SUCCEEDED, "announced %s studies to %s families (%s emails)",
               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
}

static void announce_job(struct sched_run *run, void *arg)
{
    struct app *app = sched_run_app(run);
    const struct config *cfg = app->cfg;
    char base[512];

    (void)arg;
    if (cfg->base_url && *cfg->base_url)
        snprintf(base, sizeof base, "%s", cfg->base_url);
    else
        snprintf(base, sizeof base, "http://%s:%ld", cfg->listen_addr, cfg->listen_port);
    const char *params[] = { base };
    if (pg_exec(app->pg, &announce_stmt, 1, params, announced, run) < 0)
        sched_done(run, SCHED_FAILED, "out of memory");
}

static void window_saved(PGresult *res, void *arg)
{
    (void)arg;
    if (!res || !pg_ok(res))
        log_warn("cannot save NOTIFY_WINDOW_S: %s",
                 res ? PQresultErrorMessage(res) : "the database is unreachable");
}

int announce_register(struct app *app)
{
    char window[24];

    snprintf(window, sizeof window, "%ld", app->cfg->notify_window_s);
    const char *params[] = { window };
    if (pg_exec(app->pg, &window_stmt, 1, params, window_saved, NULL) < 0)
        return -1;
    return sched_add(app->sched, "announce_new_studies", "10:00", announce_job, NULL);
}
