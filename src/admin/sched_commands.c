/* sched_commands: `jobs` lists the scheduled jobs with their next slot and
 * last runs; `run JOB` runs one now and reports its outcome.  Both go
 * through queue/sched's API for them. */
#include "config.h"

#include "studyhub/admin/sched_commands.h"

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/io/pg.h"
#include "studyhub/queue/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void on_recent(struct sched *s, PGresult *res, void *arg)
{
    struct admin_conn *c = arg;
    time_t now = time(NULL);

    if (!s) {
        admin_finish(c, "the server is stopping");
        return;
    }
    for (int i = 0; i < sched_job_count(s); i++) {
        struct sched_job_view job;
        char when[64];

        sched_job_view(s, i, &job);
        sched_format_time(job.next, when, sizeof when);
        admin_printf(c, "job=%s at=%s zone=%s next=%s", job.name, job.at, sched_zone(s), when);
        if (job.next != (time_t)-1)
            admin_printf(c, " next_in_s=%lld", (long long)(job.next - now));
        admin_printf(c, " running_here=%s%s%s%s\n", job.running_here ? "yes" : "no",
                     job.state ? " state=" : "", job.state ? job.state : "",
                     job.pending ? " pending=yes" : "");
        for (int r = 0; res && r < PQntuples(res); r++) {
            const char *detail = PQgetvalue(res, r, 7);
            const char *last = strrchr(detail, '\n');
            char slot[64], started[64];

            if (strcmp(PQgetvalue(res, r, 0), job.name) != 0)
                continue;
            sched_format_time((time_t)strtod(PQgetvalue(res, r, 4), NULL), slot, sizeof slot);
            sched_format_time((time_t)strtod(PQgetvalue(res, r, 5), NULL), started,
                         sizeof started);
            last = last && last[1] ? last + 1 : detail;
            admin_printf(c, "  run id=%s reason=%s outcome=%s scheduled_for=%s "
                         "started=%s took_s=%.2f instance=%s detail=%.*s\n",
                         PQgetvalue(res, r, 1), PQgetvalue(res, r, 2),
                         PQgetvalue(res, r, 3), slot, started,
                         strtod(PQgetvalue(res, r, 6), NULL), PQgetvalue(res, r, 8),
                         (int)strcspn(last, "\n"), last);
        }
    }
    admin_finish(c, res ? NULL : "database unavailable (no run history)");
}

static void cmd_jobs(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    (void)argc, (void)argv;
    if (!app->sched) {
        admin_finish(c, "no scheduler");
        return;
    }
    sched_recent_runs(app->sched, on_recent, c);
}

static void on_ran(const char *text, const char *error, void *arg)
{
    struct admin_conn *c = arg;

    if (text && *text)
        admin_printf(c, "%s", text);
    admin_finish(c, error);
}

static void cmd_run(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    if (argc != 2) {
        admin_finish(c, "usage: run JOB");
        return;
    }
    if (!app->sched) {
        admin_finish(c, "no such job (see `jobs`)");
        return;
    }
    sched_run_now(app->sched, argv[1], on_ran, c);
}

void sched_commands_register(struct admin_server *admin)
{
    admin_register(admin, "jobs", "scheduled jobs: time, next run, last runs", cmd_jobs);
    admin_register(admin, "run", "run JOB: run a scheduled job now and report its outcome",
                   cmd_run);
}
