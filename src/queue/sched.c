/* sched: daily jobs at wall-clock times in one time zone, run by one
 * server at a time, each run recorded in job_runs.  See
 * include/studyhub/queue/sched.h.  This file holds the jobs, their timers,
 * the start-up, the scheduler and what the admin commands see; a run's
 * life (its lock, its job_runs row, the job's steps, its outcome) is in
 * queue/sched_run.c, and what both share in sched_internal.h.
 *
 * The start-up is a state machine (enum sched_boot: lock namespace,
 * abandoned runs, last recorded slots) with a names table and one step
 * function; every change goes through its setter. */
#include "config.h"

#include "studyhub/queue/sched_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"

#define SCHED_BOOT_RETRY_MS 5000
#define SCHED_MAX_TIMER_S 300          /* re-check the clock this often */
#define SCHED_KEEP_DAYS "90"           /* cleanup_job_runs */

/* ---- SQL ------------------------------------------------------------------- */

/* A random id per database, so servers of one deployment share lock keys
 * and two deployments on one Redis do not. */
static const struct pg_stmt sql_namespace = {
    "sched_namespace",
    "WITH i AS (INSERT INTO app_settings (key, value)"
    "           VALUES ('sched_lock_namespace', to_jsonb(gen_random_uuid()::text))"
    "           ON CONFLICT (key) DO NOTHING RETURNING value)"
    " SELECT value #>> '{}' FROM i"
    " UNION ALL SELECT value #>> '{}' FROM app_settings"
    "  WHERE key = 'sched_lock_namespace' AND NOT EXISTS (SELECT 1 FROM i)",
};

static const struct pg_stmt sql_abandon = {
    "sched_abandon",
    "UPDATE job_runs SET outcome = 'abandoned', finished_at = now(), lease_until = NULL,"
    "  detail = left(detail || CASE WHEN detail = '' THEN '' ELSE E'\\n' END ||"
    "           'its server stopped during the run', 60000)"
    " WHERE outcome = 'running' AND lease_until < now()",
};

/* The last slot each job ran (or was baselined) for. */
static const struct pg_stmt sql_last_slots = {
    "sched_last_slots",
    "SELECT job, EXTRACT(EPOCH FROM max(scheduled_for))::float8 FROM job_runs"
    " WHERE reason <> 'manual' AND job = ANY($1::text[]) GROUP BY job",
};

static const struct pg_stmt sql_baseline = {
    "sched_baseline",
    "INSERT INTO job_runs (job, scheduled_for, reason, outcome, finished_at, instance, detail)"
    " VALUES ($1, to_timestamp($2::float8), 'baseline', 'skipped', now(), $3,"
    "         'first start with this job: no earlier slot to catch up')"
    " ON CONFLICT (job, scheduled_for) DO NOTHING",
};

static const struct pg_stmt sql_recent = {
    "sched_recent",
    "SELECT job, id, reason, outcome, EXTRACT(EPOCH FROM scheduled_for)::float8,"
    "  EXTRACT(EPOCH FROM started_at)::float8,"
    "  EXTRACT(EPOCH FROM COALESCE(finished_at, now()) - started_at)::float8,"
    "  detail, instance"
    " FROM (SELECT *, row_number() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) rn"
    "       FROM job_runs) x"
    " WHERE rn <= 3 ORDER BY job, started_at DESC, id DESC",
};

static const struct pg_stmt sql_cleanup_runs = {
    "sched_cleanup_runs",
    "WITH d AS (DELETE FROM job_runs WHERE outcome <> 'running'"
    "           AND started_at < now() - $1::int * interval '1 day' RETURNING 1)"
    " SELECT count(*) FROM d",
};

/* ---- types ------------------------------------------------------------------- */

static const char *const boot_names[] = {
    [BOOT_NAMESPACE] = "namespace",
    [BOOT_ABANDONED] = "abandoned",
    [BOOT_LAST_SLOTS] = "last_slots",
    [BOOT_DONE] = "done",
};

static void job_arm(struct sched_entry *job);
static void sched_destroy(void *arg);

void sched_timer_arm_ms(struct event *ev, int64_t ms)
{
    struct timeval tv;

    if (ms < 0)
        ms = 0;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

/* ---- jobs -------------------------------------------------------------------- */

void sched_job_try(struct sched_entry *job)
{
    struct sched *s = job->s;

    if (!job->pending_slot || job->running || s->draining || s->dying ||
        s->boot < BOOT_DONE)
        return;
    if (sched_run_start(job, job->pending_slot, job->pending_reason, NULL, NULL) < 0)
        log_error("sched: %s: out of memory", job->name);
}

static void job_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sched_entry *job = arg;
    time_t now = time(NULL);

    if (job->s->draining || job->s->dying)
        return;
    if (!job->pending_slot) {
        if (job->next == (time_t)-1)
            return;
        if (now < job->next) {
            job_arm(job);   /* early, or the clock moved: look again */
            return;
        }
        job->pending_slot = job->next;
        job->pending_reason = "schedule";
    }
    job->next = sched_next(&job->spec, now > job->pending_slot ? now : job->pending_slot);
    job_arm(job);
    sched_job_try(job);
}

static void job_arm(struct sched_entry *job)
{
    time_t now = time(NULL);
    int64_t delay;

    if (job->next == (time_t)-1 || job->s->draining || job->s->dying)
        return;
    delay = (int64_t)(job->next - now);
    if (delay > SCHED_MAX_TIMER_S)
        delay = SCHED_MAX_TIMER_S;
    evtimer_del(job->timer);
    /* A little past the second, so time(NULL) has reached it. */
    sched_timer_arm_ms(job->timer, delay * 1000 + 20);
}

static struct sched_entry *sched_find(const struct sched *s, const char *name)
{
    for (int i = 0; i < s->njobs; i++)
        if (strcmp(s->jobs[i]->name, name) == 0)
            return s->jobs[i];
    return NULL;
}

/* The SCHED_JOBS entry for name, into buf; NULL if none. */
static const char *override_for(const struct sched *s, const char *name,
                                char *buf, size_t n)
{
    const char *p = s->overrides;
    size_t nl = strlen(name);

    while (p && *p) {
        size_t len = strcspn(p, ",");

        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(buf, n, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return buf;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return NULL;
}

int sched_add(struct sched *s, const struct sched_job *def, const char *at)
{
    struct sched_entry *job;
    const char *name = def ? def->name : NULL;
    char buf[32];
    const char *use;

    if (!s || !name)
        return -1;
    use = override_for(s, name, buf, sizeof buf);
    if (!use)
        use = at;
    if (!*name || !def->step || !def->states || def->nstates < 1 ||
        def->initial_state < 0 || def->initial_state >= def->nstates || s->started ||
        s->njobs == SCHED_MAX_JOBS || sched_find(s, name) || strlen(name) > 100 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name)) {
        log_error("sched: cannot add job %s", name ? name : "(null)");
        return -1;
    }
    job = calloc(1, sizeof *job);
    if (!job)
        return -1;
    if (sched_parse_at(use, &job->spec) < 0) {
        log_error("sched: job %s: bad time '%s' (HH:MM, HH:MM:SS or off)", name, use);
        free(job);
        return -1;
    }
    job->s = s;
    job->def = def;
    job->name = name;
    snprintf(job->at, sizeof job->at, "%s", use);
    job->next = (time_t)-1;
    job->timer = evtimer_new(s->base, job_on_timer, job);
    if (!job->timer) {
        free(job);
        return -1;
    }
    s->jobs[s->njobs++] = job;
    return 0;
}

/* ---- start-up --------------------------------------------------------------- */

static void run_now(struct sched *s, struct sched_entry *job, sched_waiter_fn fn, void *arg);

/* Answers the `run JOB` commands that wait for the boot. */
static void pending_finish(struct sched *s, const char *why)
{
    for (int i = 0; i < s->npending; i++)
        s->pending[i].fn("", why, s->pending[i].arg);
    s->npending = 0;
}

static void boot_set(struct sched *s, enum sched_boot b)
{
    bool ready_now = s->boot < BOOT_DONE && b >= BOOT_DONE;

    if (s->boot != b)
        log_debug("sched: boot %s -> %s", boot_names[s->boot], boot_names[b]);
    s->boot = b;
    if (ready_now) {
        int n = s->npending;

        s->npending = 0;
        for (int i = 0; i < n; i++)
            run_now(s, s->pending[i].job, s->pending[i].fn, s->pending[i].arg);
    }
}

static void boot_step(struct sched *s);

static void boot_retry(struct sched *s)
{
    sched_timer_arm_ms(s->boot_timer, SCHED_BOOT_RETRY_MS);
}

static void on_boot_timer(evutil_socket_t fd, short what, void *arg)
{
    boot_step(arg);
}

static void on_namespace(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        boot_retry(s);
        return;
    }
    snprintf(s->ns, sizeof s->ns, "%s", PQgetvalue(res, 0, 0));
    boot_set(s, BOOT_ABANDONED);
    boot_step(s);
}

static void on_abandon(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (!res || !pg_ok(res)) {
        boot_retry(s);
        return;
    }
    if (strcmp(PQcmdTuples(res), "0") != 0)
        log_warn("sched: %s run(s) of stopped servers marked abandoned",
                 PQcmdTuples(res));
    boot_set(s, BOOT_LAST_SLOTS);
    boot_step(s);
}

static void boot_done(struct sched *s)
{
    boot_set(s, BOOT_DONE);
    for (int i = 0; i < s->njobs; i++)
        sched_job_try(s->jobs[i]);
}

/* A baseline that failed is only a missing row: the next start writes it. */
static void on_baseline(PGresult *res, void *arg)
{
    struct sched *s = arg;

    if (--s->baselines == 0)
        boot_done(s);
}

static void on_last_slots(PGresult *res, void *arg)
{
    struct sched *s = arg;
    time_t now = time(NULL);

    if (!res || !pg_ok(res)) {
        boot_retry(s);
        return;
    }
    for (int i = 0; i < s->njobs; i++) {
        struct sched_entry *job = s->jobs[i];
        time_t prev = sched_prev(&job->spec, now);
        bool seen = false;
        double last = 0;

        if (prev == (time_t)-1)
            continue;   /* off */
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), job->name) == 0) {
                seen = true;
                last = strtod(PQgetvalue(res, r, 1), NULL);
            }
        if (!seen) {
            char slot[32];
            const char *params[3] = { job->name, slot, s->instance };

            snprintf(slot, sizeof slot, "%lld", (long long)prev);
            if (pg_exec_held(s->app->pg, &s->held, &sql_baseline, 3, params, on_baseline,
                             s) == 0)
                s->baselines++;
            continue;
        }
        if ((double)prev > last + 0.5 && !job->pending_slot) {
            char when[64];

            sched_format_time(prev, when, sizeof when);
            log_info("sched: %s: the slot of %s was missed; running it now",
                     job->name, when);
            job->pending_slot = prev;
            job->pending_reason = "catch-up";
        }
    }
    /* The boot is done once the baselines are written, so that a `run`
     * waiting for it is recorded after them. */
    if (s->baselines == 0)
        boot_done(s);
}

static void boot_step(struct sched *s)
{
    const char *params[1];
    char *names = NULL;
    size_t len;
    FILE *f;

    if (s->dying)
        return;
    switch (s->boot) {
    case BOOT_NAMESPACE:
        if (pg_exec_held(s->app->pg, &s->held, &sql_namespace, 0, NULL, on_namespace, s) < 0)
            boot_retry(s);
        return;
    case BOOT_ABANDONED:
        if (pg_exec_held(s->app->pg, &s->held, &sql_abandon, 0, NULL, on_abandon, s) < 0)
            boot_retry(s);
        return;
    case BOOT_LAST_SLOTS:
        f = open_memstream(&names, &len);
        if (!f) {
            boot_retry(s);
            return;
        }
        fputc('{', f);
        for (int i = 0; i < s->njobs; i++)
            fprintf(f, "%s\"%s\"", i ? "," : "", s->jobs[i]->name);
        fputc('}', f);
        fclose(f);
        params[0] = names;
        if (pg_exec_held(s->app->pg, &s->held, &sql_last_slots, 1, params, on_last_slots, s) < 0)
            boot_retry(s);
        free(names);
        return;
    case BOOT_DONE:
        return;
    }
}

/* ---- the scheduler's own job ------------------------------------------------- */

static const struct sched_count cleanup_job_runs_count = {
    .stmt = &sql_cleanup_runs, .nparams = 1, .params = { SCHED_KEEP_DAYS },
    .noun = "job run", .rest = "older than " SCHED_KEEP_DAYS " days",
};

const struct sched_job sched_cleanup_job_runs_job =
    SCHED_COUNT_JOB("cleanup_job_runs", &cleanup_job_runs_count);

/* ---- the scheduler ----------------------------------------------------------- */

/* An IANA name that names a zone file (tzset would silently use UTC). */
static int zone_check(const char *zone, char *err, size_t n)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    struct stat st;

    if (!zone || !*zone || zone[0] == '/' || strstr(zone, "..") ||
        strspn(zone, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789/_+-") != strlen(zone)) {
        snprintf(err, n, "SCHED_TIME_ZONE: '%s' is not an IANA zone name", zone ? zone : "");
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", zone);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, n, "SCHED_TIME_ZONE: unknown time zone '%s' (no %s)", zone, path);
        return -1;
    }
    return 0;
}

struct sched *sched_new(struct app *app, char *err, size_t errlen)
{
    struct sched *s;
    char host[64] = "localhost";

    if (zone_check(app->cfg->sched_time_zone, err, errlen) < 0)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->app = app;
    s->base = app->base;
    s->zone = strdup(app->cfg->sched_time_zone);
    s->overrides = strdup(app->cfg->sched_jobs ? app->cfg->sched_jobs : "");
    s->boot_timer = evtimer_new(s->base, on_boot_timer, s);
    if (pg_holder_init(&s->held, s->base, sched_destroy, s) < 0 || !s->zone ||
        !s->overrides || !s->boot_timer) {
        snprintf(err, errlen, "out of memory");
        sched_destroy(s);
        return NULL;
    }
    /* One schedule zone for the process; logs are in UTC and unaffected. */
    setenv("TZ", s->zone, 1);
    tzset();
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(s->instance, sizeof s->instance, "%s/%d", host, (int)getpid());
    return s;
}

int sched_start(struct sched *s)
{
    time_t now = time(NULL);
    const char *p;

    if (!s || s->started)
        return -1;
    /* An override for a job nobody added is most likely a typo. */
    for (p = s->overrides; *p;) {
        size_t len = strcspn(p, ","), nl = strcspn(p, "=");
        char name[128];

        if (nl < len && nl < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)nl, p);
            if (!sched_find(s, name))
                log_warn("sched: SCHED_JOBS names an unknown job '%s'", name);
        } else if (len > 0) {
            log_warn("sched: SCHED_JOBS entry '%.*s' is not job=TIME", (int)len, p);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    s->started = true;
    for (int i = 0; i < s->njobs; i++) {
        struct sched_entry *job = s->jobs[i];
        char when[64];

        job->next = sched_next(&job->spec, now);
        sched_format_time(job->next, when, sizeof when);
        log_debug("sched: %s at %s %s; next %s", job->name, job->at, s->zone, when);
        job_arm(job);
    }
    log_info("sched: %d job%s in %s", s->njobs, s->njobs == 1 ? "" : "s", s->zone);
    boot_step(s);
    return 0;
}

void sched_drain(struct sched *s)
{
    if (!s || s->draining)
        return;
    s->draining = true;
    for (int i = 0; i < s->njobs; i++)
        evtimer_del(s->jobs[i]->timer);
    evtimer_del(s->boot_timer);
    pending_finish(s, "the server is stopping");
}

void sched_outcomes(const struct sched *s, long out[SCHED_OUTCOMES])
{
    for (int i = 0; i < SCHED_OUTCOMES; i++)
        out[i] = s ? s->outcomes[i] : 0;
}

unsigned sched_busy(const struct sched *s)
{
    return s ? s->running : 0;
}

static void sched_destroy(void *arg)
{
    struct sched *s = arg;

    for (int i = 0; i < s->njobs; i++) {
        if (s->jobs[i]->timer)
            event_free(s->jobs[i]->timer);
        free(s->jobs[i]);
    }
    if (s->boot_timer)
        event_free(s->boot_timer);
    free(s->zone);
    free(s->overrides);
    pg_holder_cleanup(&s->held);
    free(s);
}

void sched_free(struct sched *s)
{
    if (!s || s->dying)
        return;
    s->dying = true;
    sched_drain(s);
    /* Runs still going lose their scheduler: they finish on their own and
     * only free themselves (their row's lease marks it abandoned if the
     * loop stops first). */
    for (int i = 0; i < s->njobs; i++) {
        struct sched_run *run = s->jobs[i]->running;

        if (run)
            sched_run_orphan(run);
    }
    /* Queries still out skip their callbacks; s goes after the last. */
    pg_holder_release(&s->held);
}

/* ---- a job that is one counting statement ------------------------------------ */

enum count_state { COUNT_DELETE };

const char *const sched_count_states[] = { [COUNT_DELETE] = "delete" };

static void on_counted(PGresult *res, void *arg)
{
    struct sched_run *run = arg;
    const struct sched_count *c = sched_run_arg(run);

    if (!res) {
        sched_done(run, SCHED_FAILED, "database unavailable");
    } else if (!pg_ok(res) || PQntuples(res) != 1) {
        sched_done(run, SCHED_FAILED, "%s", PQresultErrorMessage(res));
    } else {
        const char *n = PQgetvalue(res, 0, 0);
        const char *rest = c->rest ? c->rest : "";

        sched_done(run, SCHED_SUCCEEDED, "deleted %s %s%s%s%s", n, c->noun,
                   strcmp(n, "1") ? "s" : "", *rest ? " " : "", rest);
    }
}

void sched_count_step(struct sched_run *run)
{
    const struct sched_count *c = sched_run_arg(run);

    switch ((enum count_state)sched_run_state(run)) {
    case COUNT_DELETE:
        if (pg_exec(sched_run_app(run)->pg, c->stmt, c->nparams, c->params, on_counted,
                    run) < 0)
            sched_done(run, SCHED_FAILED, "cannot queue the query");
        return;
    }
    sched_done(run, SCHED_FAILED, "internal error: state %d", sched_run_state(run));
}

/* ---- what the admin commands see ---------------------------------------------- */

const char *sched_zone(const struct sched *s)
{
    return s->zone;
}

int sched_job_count(const struct sched *s)
{
    return s->njobs;
}

void sched_job_view(const struct sched *s, int i, struct sched_job_view *out)
{
    const struct sched_entry *job = s->jobs[i];

    out->name = job->name;
    out->at = job->at;
    out->next = job->next;
    out->running_here = job->running != NULL;
    out->pending = job->pending_slot != 0;
    out->state = NULL;
    if (job->running)
        out->state = sched_run_shown_state(job->running);
}

struct recent_ctx {
    struct sched *s;        /* borrowed, held by s->held */
    sched_recent_fn fn;     /* borrowed */
    void *arg;              /* borrowed */
};

static void on_recent(PGresult *res, void *arg)
{
    struct recent_ctx rc = *(struct recent_ctx *)arg;

    free(arg);
    /* Held by hand, not through pg_exec_held: fn must hear of a
     * scheduler that stopped meanwhile. */
    if (rc.s->dying)
        rc.fn(NULL, NULL, rc.arg);
    else
        rc.fn(rc.s, res && pg_ok(res) ? res : NULL, rc.arg);
    reap_drop(&rc.s->held.reap);
}

void sched_recent_runs(struct sched *s, sched_recent_fn fn, void *arg)
{
    struct recent_ctx *rc = calloc(1, sizeof *rc);

    if (!rc) {
        fn(s, NULL, arg);
        return;
    }
    *rc = (struct recent_ctx){ s, fn, arg };
    reap_hold(&s->held.reap);  /* keeps the scheduler until the answer */
    if (pg_exec(s->app->pg, &sql_recent, 0, NULL, on_recent, rc) < 0)
        on_recent(NULL, rc);
}

void sched_run_now(struct sched *s, const char *name, sched_waiter_fn fn, void *arg)
{
    struct sched_entry *job = sched_find(s, name);

    if (!job) {
        fn("", "no such job (see `jobs`)", arg);
        return;
    }
    if (s->draining || s->dying) {
        fn("", "the server is stopping", arg);
        return;
    }
    if (s->boot < BOOT_DONE) {
        /* Just after start: the boot's queries are on their way. */
        if (s->npending == SCHED_MAX_PENDING_RUNS) {
            fn("", "the scheduler is not ready (database unavailable?)", arg);
            return;
        }
        s->pending[s->npending].fn = fn;
        s->pending[s->npending].arg = arg;
        s->pending[s->npending].job = job;
        s->npending++;
        return;
    }
    run_now(s, job, fn, arg);
}

static void run_now(struct sched *s, struct sched_entry *job, sched_waiter_fn fn, void *arg)
{
    if (s->draining || s->dying) {
        fn("", "the server is stopping", arg);
        return;
    }
    if (job->running) {
        fn("", "it is already running here", arg);
        return;
    }
    if (sched_run_start(job, 0, "manual", fn, arg) < 0)
        fn("", "out of memory", arg);
}
