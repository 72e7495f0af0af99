/* task_commands: the operator's view of the task queue over the admin
 * socket: `tasks [all]`, `task show ID`, `task cancel ID` and, for the
 * tests only, `task enqueue-test`.  They read the tasks table directly and
 * ask the runner (app->tasks) only for what this process holds. */
#include "config.h"

#include "studyhub/admin/task_commands.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/io/pg.h"

static const struct pg_stmt sql_list = {
    "task_list",
    "SELECT id, uuid, kind, state, COALESCE(stage, '-'), COALESCE(subject, '-'),"
    "  attempts, EXTRACT(EPOCH FROM now() - created_at)::bigint,"
    "  COALESCE(lease_owner, '-'), cancel_requested,"
    "  GREATEST(0, EXTRACT(EPOCH FROM run_after - now()))::bigint"
    " FROM tasks WHERE state IN ('queued', 'running') ORDER BY id LIMIT 500",
};

static const struct pg_stmt sql_list_recent = {
    "task_list_recent",
    "SELECT id, uuid, kind, state, COALESCE(stage, '-'), COALESCE(subject, '-'),"
    "  attempts, EXTRACT(EPOCH FROM finished_at - COALESCE(started_at, created_at))::float8,"
    "  COALESCE(error, ''), COALESCE(outcome, state), COALESCE(problems, '')"
    " FROM tasks WHERE finished_at IS NOT NULL ORDER BY finished_at DESC, id DESC LIMIT 20",
};

static const struct pg_stmt sql_show = {
    "task_show",
    "SELECT t.id, t.uuid, t.kind, t.state, COALESCE(t.stage, '-'),"
    "  COALESCE(t.subject, '-'), t.attempts, COALESCE(t.max_attempts::text, '-'),"
    "  t.payload::text, COALESCE(t.result::text, '-'), COALESCE(t.error, ''),"
    "  COALESCE(t.lease_owner, '-'), t.cancel_requested,"
    "  s.stage, s.attempt, COALESCE(s.outcome, 'running'),"
    "  EXTRACT(EPOCH FROM COALESCE(s.ended_at, now()) - s.started_at)::float8, s.log,"
    "  COALESCE(t.outcome, '-'), COALESCE(t.problems, '')"
    " FROM tasks t LEFT JOIN task_stages s ON s.task_id = t.id"
    " WHERE t.id = $1::bigint OR t.uuid = $2::uuid ORDER BY s.id",
};

static void on_admin_list(PGresult *res, void *arg);

static void on_admin_recent(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res || !pg_ok(res)) {
        admin_finish(c, "database unavailable");
        return;
    }
    admin_printf(c, "recently finished:\n");
    for (int i = 0; i < PQntuples(res); i++)
        admin_printf(c, "id=%s uuid=%s kind=%s state=%s outcome=%s stage=%s subject=%s "
                     "attempts=%s took_s=%.1f error=%s problems=%.*s\n",
                     PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                     PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 9),
                     PQgetvalue(res, i, 4), PQgetvalue(res, i, 5),
                     PQgetvalue(res, i, 6), strtod(PQgetvalue(res, i, 7), NULL),
                     *PQgetvalue(res, i, 8) ? PQgetvalue(res, i, 8) : "-",
                     *PQgetvalue(res, i, 10) ? (int)strcspn(PQgetvalue(res, i, 10), "\n") : 1,
                     *PQgetvalue(res, i, 10) ? PQgetvalue(res, i, 10) : "-");
    admin_finish(c, NULL);
}

struct list_ctx {
    struct admin_conn *c;  /* borrowed until admin_finish */
    struct app *app;       /* borrowed */
    bool all;              /* also the recently finished */
};

static void on_admin_list(PGresult *res, void *arg)
{
    struct list_ctx *lc = arg;
    struct admin_conn *c = lc->c;
    struct task_runner *r = lc->app->tasks;
    const char *me = "";
    bool draining = false;
    unsigned slots = r ? task_runner_slots(r, &me, &draining) : 0;
    int queued = 0, running = 0;
    bool all = lc->all;
    struct app *app = lc->app;

    free(lc);
    if (!res || !pg_ok(res)) {
        admin_finish(c, "database unavailable");
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *state = PQgetvalue(res, i, 3);
        const char *owner = PQgetvalue(res, i, 8);
        bool here = r && strcmp(owner, me) == 0;
        long long wait = strtoll(PQgetvalue(res, i, 10), NULL, 10);

        if (strcmp(state, "running") == 0)
            running++;
        else
            queued++;
        admin_printf(c, "id=%s uuid=%s kind=%s state=%s stage=%s subject=%s "
                     "attempts=%s age_s=%s owner=%s%s%s",
                     PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                     PQgetvalue(res, i, 2), state, PQgetvalue(res, i, 4),
                     PQgetvalue(res, i, 5), PQgetvalue(res, i, 6),
                     PQgetvalue(res, i, 7), owner, here ? " here" : "",
                     PQgetvalue(res, i, 9)[0] == 't' ? " cancel_requested" : "");
        if (wait > 0 && strcmp(state, "queued") == 0)
            admin_printf(c, " due_in_s=%lld", wait);
        admin_printf(c, "\n");
    }
    if (PQntuples(res) == 500)
        admin_printf(c, "(only the first 500 are listed)\n");
    admin_printf(c, "%d running, %d queued; here: %u of %u slots busy%s\n", running,
                 queued, r ? task_runner_busy(r) : 0, slots,
                 draining ? " (draining)" : "");
    if (all && pg_exec(app->pg, &sql_list_recent, 0, NULL, on_admin_recent, c) == 0)
        return;
    admin_finish(c, NULL);
}

static void admin_cmd_tasks(struct admin_conn *c, int argc, char **argv,
                            struct app *app)
{
    struct list_ctx *lc;

    if (argc > 2 || (argc == 2 && strcmp(argv[1], "all") != 0)) {
        admin_finish(c, "usage: tasks [all]");
        return;
    }
    lc = calloc(1, sizeof *lc);
    if (!lc) {
        admin_finish(c, "out of memory");
        return;
    }
    lc->c = c;
    lc->app = app;
    lc->all = argc == 2;
    if (!app->pg || pg_exec(app->pg, &sql_list, 0, NULL, on_admin_list, lc) < 0) {
        free(lc);
        admin_finish(c, "database unavailable");
    }
}

static void on_admin_show(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res || !pg_ok(res)) {
        admin_finish(c, "database unavailable");
        return;
    }
    if (PQntuples(res) == 0) {
        admin_finish(c, "no such task");
        return;
    }
    admin_printf(c, "id=%s uuid=%s kind=%s state=%s stage=%s subject=%s "
                 "attempts=%s max_attempts=%s owner=%s cancel_requested=%s\n",
                 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                 PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5),
                 PQgetvalue(res, 0, 6), PQgetvalue(res, 0, 7), PQgetvalue(res, 0, 11),
                 PQgetvalue(res, 0, 12)[0] == 't' ? "yes" : "no");
    admin_printf(c, "outcome: %s\npayload: %s\nresult: %s\nerror: %s\n",
                 PQgetvalue(res, 0, 18), PQgetvalue(res, 0, 8), PQgetvalue(res, 0, 9),
                 *PQgetvalue(res, 0, 10) ? PQgetvalue(res, 0, 10) : "-");
    for (const char *p = PQgetvalue(res, 0, 19); *p;) {
        size_t n = strcspn(p, "\n");

        admin_printf(c, "problem: %.*s\n", (int)n, p);
        p += n;
        if (*p)
            p++;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *log = PQgetvalue(res, i, 17);

        if (PQgetisnull(res, i, 13))
            break;
        admin_printf(c, "stage %s attempt=%s outcome=%s duration_s=%.2f\n",
                     PQgetvalue(res, i, 13), PQgetvalue(res, i, 14),
                     PQgetvalue(res, i, 15), strtod(PQgetvalue(res, i, 16), NULL));
        /* The log, indented so the "OK" line can never be faked by it. */
        while (*log) {
            size_t n = strcspn(log, "\n");

            admin_printf(c, "  | %.*s\n", (int)n, log);
            log += n;
            if (*log == '\n')
                log++;
        }
    }
    admin_finish(c, NULL);
}

static void on_admin_cancel(enum task_cancel_status st, void *arg)
{
    struct admin_conn *c = arg;

    switch (st) {
    case TASK_CANCEL_UNAVAILABLE:
        admin_finish(c, "database unavailable");
        return;
    case TASK_CANCEL_NOT_FOUND:
        admin_finish(c, "no such task");
        return;
    case TASK_CANCEL_ALREADY_DONE:
        admin_finish(c, "it has already finished");
        return;
    case TASK_CANCEL_CANCELLED:
        admin_printf(c, "cancelled (it was queued)\n");
        admin_finish(c, NULL);
        return;
    case TASK_CANCEL_REQUESTED:
        admin_printf(c, "cancel requested (it is running; its server stops it)\n");
        admin_finish(c, NULL);
        return;
    }
}

static void on_admin_enqueue_test(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res) {
        admin_finish(c, "database unavailable");
        return;
    }
    if (!pg_ok(res)) {
        admin_finish(c, strcmp(pg_sqlstate(res), "23505") == 0
                            ? "a test task with that subject is already active"
                            : "cannot enqueue");
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        admin_printf(c, "enqueued id=%s uuid=%s\n", PQgetvalue(res, i, 0),
                     PQgetvalue(res, i, 1));
    admin_finish(c, NULL);
}

/* task enqueue-test SECONDS [STAGES] [timer|child] [fail=STAGE]
 *   [resume=fail] [subject=S] [count=N]   (tests only: DEBUG_ROUTES=1) */
static void admin_enqueue_test(struct admin_conn *c, int argc, char **argv,
                               struct app *app)
{
    json_t *p;
    char *text;
    const char *subject = NULL;
    char count[16] = "1";
    char *end;
    double secs;

    if (!app->cfg->debug_routes) {
        admin_finish(c, "task enqueue-test is for tests only (DEBUG_ROUTES=1)");
        return;
    }
    if (argc < 3) {
        admin_finish(c, "usage: task enqueue-test SECONDS [STAGES] [timer|child] "
                        "[fail=STAGE] [resume=fail] [subject=S] [count=N]");
        return;
    }
    secs = strtod(argv[2], &end);
    if (*end || secs < 0 || secs > 3600) {
        admin_finish(c, "SECONDS must be a number from 0 to 3600");
        return;
    }
    p = json_pack("{s:f, s:i, s:s}", "seconds", secs, "stages", 3, "mode", "timer");
    for (int i = 3; p && i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "timer") == 0 || strcmp(a, "child") == 0)
            json_object_set_new(p, "mode", json_string(a));
        else if (a[0] >= '1' && a[0] <= '3' && a[1] == '\0')
            json_object_set_new(p, "stages", json_integer(a[0] - '0'));
        else if (strncmp(a, "fail=", 5) == 0)
            json_object_set_new(p, "fail_stage", json_string(a + 5));
        else if (strcmp(a, "resume=fail") == 0)
            json_object_set_new(p, "resume", json_string("fail"));
        else if (strncmp(a, "subject=", 8) == 0)
            subject = a + 8;
        else if (strncmp(a, "count=", 6) == 0 && atoi(a + 6) >= 1 && atoi(a + 6) <= 1000)
            snprintf(count, sizeof count, "%d", atoi(a + 6));
        else {
            json_decref(p);
            admin_finish(c, "unknown argument");
            return;
        }
    }
    if (subject && strcmp(count, "1") != 0) {
        json_decref(p);
        admin_finish(c, "subject= and count= do not go together");
        return;
    }
    text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!text || task_enqueue_test(app->pg, text, subject, count,
                                   on_admin_enqueue_test, c) < 0)
        admin_finish(c, "cannot enqueue");
    free(text);
}

static void admin_cmd_task(struct admin_conn *c, int argc, char **argv,
                           struct app *app)
{
    char id[32], uuid[40];
    const char *params[2];

    if (argc >= 2 && strcmp(argv[1], "enqueue-test") == 0) {
        admin_enqueue_test(c, argc, argv, app);
        return;
    }
    if (argc != 3 || (strcmp(argv[1], "show") != 0 && strcmp(argv[1], "cancel") != 0)) {
        admin_finish(c, "usage: task show ID | task cancel ID | task enqueue-test ...");
        return;
    }
    if (task_parse_ref(argv[2], id, sizeof id, uuid, sizeof uuid) < 0) {
        admin_finish(c, "ID must be a task id or uuid");
        return;
    }
    if (strcmp(argv[1], "cancel") == 0) {
        if (!app->tasks || task_cancel(app->tasks, argv[2], on_admin_cancel, c) < 0)
            admin_finish(c, "cannot cancel now");
        return;
    }
    params[0] = id[0] ? id : NULL;
    params[1] = uuid[0] ? uuid : NULL;
    if (pg_exec(app->pg, &sql_show, 2, params, on_admin_show, c) < 0)
        admin_finish(c, "database unavailable");
}

void task_commands_register(struct admin_server *admin)
{
    admin_register(admin, "tasks", "queued and running tasks (all: also the "
                   "recently finished)", admin_cmd_tasks);
    admin_register(admin, "task", "task show ID | task cancel ID | task "
                   "enqueue-test SECONDS ... (tests only)", admin_cmd_task);
}
