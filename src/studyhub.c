/* studyhub: the server.  Reads its configuration, applies migrations, then
 * runs one libevent loop serving HTTP and the admin socket until SIGTERM or
 * SIGINT, after which it stops accepting and drains in-flight work. */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "studyhub/admin/admin.h"
#include "studyhub/admin/sched_commands.h"
#include "studyhub/admin/task_commands.h"
#include "studyhub/admin/user_commands.h"
#include "studyhub/admin/erase.h"
#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/metrics.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/domain/accounts.h"
#include "studyhub/domain/children.h"
#include "studyhub/domain/family.h"
#include "studyhub/domain/participate.h"
#include "studyhub/domain/participate_runner.h"
#include "studyhub/domain/feedback.h"
#include "studyhub/domain/labs.h"
#include "studyhub/domain/perms.h"
#include "studyhub/domain/export.h"
#include "studyhub/domain/research.h"
#include "studyhub/domain/analytics.h"
#include "studyhub/domain/housekeeping.h"
#include "studyhub/domain/useradmin.h"
#include "studyhub/domain/listings.h"
#include "studyhub/domain/sitepages.h"
#include "studyhub/domain/adminview.h"
#include "studyhub/domain/responses.h"
#include "studyhub/admin/seed.h"
#include "studyhub/domain/studies.h"
#include "studyhub/domain/studymgmt.h"
#include "studyhub/domain/users.h"
#include "studyhub/domain/videos.h"
#include "studyhub/domain/workflow.h"
#include "studyhub/domain/messages.h"
#include "studyhub/domain/privacy.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_login.h"
#include "studyhub/http/auth_second_factor.h"
#include "studyhub/http/health.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/http/runner_host.h"
#include "studyhub/io/archive.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/mail.h"
#include "studyhub/io/migrate.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"
#include "studyhub/io/redis.h"
#include "studyhub/io/storage.h"
#include "studyhub/tasks/announce.h"
#include "studyhub/tasks/background.h"
#include "studyhub/tasks/build.h"

/* How long migrations wait for PostgreSQL to accept connections at start. */
#define MIGRATE_WAIT_S 30

struct shutdown {
    struct app *app;          /* borrowed */
    struct event *poll;       /* owned: checks whether the drain is done */
    struct timespec deadline; /* monotonic */
    int signals;              /* how many stop signals arrived */
};

static const char *env_getenv(const char *name, void *arg)
{
    return getenv(name);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: studyhub [--help | --version | --config-markdown]\n"
            "studyhub %s: an online-research platform server.\n"
            "It is configured only through the environment.\n\n",
            PACKAGE_VERSION);
    config_print_help(out);
}

/* Every module's route table.  A route the router refuses (no policy, a
 * bad pattern, declared twice) stops the server: -1. */
static int register_routes(struct router *r)
{
    if (health_routes(r) < 0 ||
        auth_routes(r) < 0 ||
        family_routes(r) < 0 ||       /* before users: demographics/current/ */
        users_routes(r) < 0 ||
        studies_routes(r) < 0 ||
        responses_routes(r) < 0 ||
        children_routes(r) < 0 ||
        feedback_routes(r) < 0 ||
        accounts_routes(r) < 0 ||     /* sign-up, verification, reset, TOTP, tokens */
        perms_routes(r) < 0 ||        /* what the caller holds */
        labs_routes(r) < 0 ||         /* labs, members, join requests */
        studymgmt_routes(r) < 0 ||    /* researcher studies, groups, logs */
        workflow_routes(r) < 0 ||     /* transitions, the workflow table */
        videos_routes(r) < 0 ||       /* Pipe webhook, upload Lambda, videos, zips, /storage/ */
        research_routes(r) < 0 ||     /* consent manager, response management, access log */
        export_routes(r) < 0 ||       /* streamed data exports */
        builds_routes(r) < 0 ||       /* build, preview, builds and their live events */
        useradmin_routes(r) < 0 ||    /* site admins manage accounts */
        privacy_routes(r) < 0 ||      /* account erasure, the family's data download */
        messages_routes(r) < 0 ||     /* messages to families */
        adminview_routes(r) < 0 ||    /* the admin pages' jobs and tasks */
        listings_routes(r) < 0 ||     /* study lists by age group and by lab */
        sitepages_routes(r) < 0 ||    /* the public pages' text, support */
        analytics_routes(r) < 0 ||    /* participant browser, charts' numbers */
        housekeeping_routes(r) < 0 || /* preview deletion, hash check, one response */
        static_routes(r) < 0 ||       /* the web pages and their assets */
        participate_routes(r) < 0 ||  /* discovery, eligibility, past sessions */
        participate_runner_routes(r) < 0) /* the runner's pages and files */
        return -1;
    return 0;
}

/* `routes`: every route with its access policy, one per line
 * ("GET /api/v1/studies/ family"), for audits and the route matrix test. */
static void routes_cmd(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    if (argc != 1) {
        admin_finish(c, "usage: routes");
        return;
    }
    for (size_t i = 0; i < router_count(app->router); i++) {
        const struct route *rt = router_get(app->router, i);
        admin_printf(c, "%s %s %s\n", router_method_name(rt->method), rt->pattern,
                     route_policy_name(rt->policy));
    }
    admin_finish(c, NULL);
}

static void register_admin(struct admin_server *admin)
{
    admin_register(admin, "routes", "routes: every HTTP route and its access policy",
                   routes_cmd);
    user_commands_register(admin);
    seed_register(admin);
    /* tasks, task ...; jobs, run JOB */
    task_commands_register(admin);
    sched_commands_register(admin);
    erase_admin_register(admin);
}

/* Background work: the builder's and the notices' set-up, then every task
 * kind and scheduled job from tasks/background.c's table, before the
 * runner and the scheduler start. */
static int register_background(struct app *app)
{
    if (build_start(app) < 0 || announce_start(app) < 0)
        return -1;
    return background_register(app);
}

static bool drained(const struct app *app)
{
    /* Running tasks are handed back to the queue at their next stage. */
    return http_server_inflight(app->http) == 0 &&
           task_runner_busy(app->tasks) == 0 && sched_busy(app->sched) == 0 &&
           mail_sender_busy(app->mail) == 0;   /* emails whose outcome is unsaved */
}

static void drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct shutdown *sd = arg;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (drained(sd->app)) {
        log_info("drained; exiting");
        event_base_loopbreak(sd->app->base);
        return;
    }
    if (now.tv_sec > sd->deadline.tv_sec ||
        (now.tv_sec == sd->deadline.tv_sec && now.tv_nsec >= sd->deadline.tv_nsec)) {
        log_warn("drain timeout passed with %u requests, %u tasks and %u jobs "
                 "in flight; exiting", http_server_inflight(sd->app->http),
                 task_runner_busy(sd->app->tasks), sched_busy(sd->app->sched));
        event_base_loopbreak(sd->app->base);
        return;
    }
    struct timeval tv = { 0, 20000 };
    evtimer_add(sd->poll, &tv);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct shutdown *sd = arg;

    if (sd->signals++ > 0) {
        log_warn("second stop signal; exiting now");
        event_base_loopbreak(sd->app->base);
        return;
    }
    log_info("signal %d: no longer accepting; draining for up to %ld s", (int)sig,
             sd->app->cfg->drain_timeout_s);
    sd->app->draining = 1;
    http_server_stop_accepting(sd->app->http);
    task_runner_drain(sd->app->tasks);
    sched_drain(sd->app->sched);
    mail_sender_drain(sd->app->mail);
    clock_gettime(CLOCK_MONOTONIC, &sd->deadline);
    sd->deadline.tv_sec += sd->app->cfg->drain_timeout_s;
    drain_poll(-1, 0, sd);
}

static void on_libevent_log(int severity, const char *msg)
{
    /* EVENT_LOG_DEBUG 0, MSG 1, WARN 2, ERR 3: the same scale as ours. */
    log_library("libevent", severity, msg);
}

/* Every connection, child pipe and storage file is a descriptor: take
 * the hard limit (often 1024 soft against 524288 hard) at start. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot raise the open-file limit from %ld: %s", (long)was,
                 strerror(errno));
    else
        log_debug("open-file limit raised from %ld to %ld", (long)was,
                  (long)rl.rlim_cur);
}

struct migration_wait {
    struct event_base *base;   /* borrowed */
    bool finished;
    bool stopped;              /* SIGTERM or SIGINT came first */
    int applied;               /* migrate_apply's result */
    char err[1024];
};

static void on_migrated(int n, const char *err, void *arg)
{
    struct migration_wait *w = arg;

    w->finished = true;
    w->applied = n;
    snprintf(w->err, sizeof w->err, "%s", err);
    event_base_loopbreak(w->base);
}

static void on_stop_while_migrating(evutil_socket_t sig, short what, void *arg)
{
    struct migration_wait *w = arg;

    log_info("signal %d while migrating: stopping", (int)sig);
    w->stopped = true;
    event_base_loopbreak(w->base);
}

/* Runs the loop (health routes only) until the migrations end: 0; 1 when
 * a stop signal came first (the child is killed: its transaction rolls
 * back); or -1 after logging why they failed. */
static int migrate_while_serving(struct app *app)
{
    struct migration_wait w = { .base = app->base };
    struct event *term = evsignal_new(app->base, SIGTERM, on_stop_while_migrating, &w);
    struct event *intr = evsignal_new(app->base, SIGINT, on_stop_while_migrating, &w);
    struct migrate_child *mc = NULL;

    if (term && intr && evsignal_add(term, NULL) == 0 && evsignal_add(intr, NULL) == 0)
        mc = migrate_start(app->base, app->cfg->database_url, MIGRATE_WAIT_S,
                           on_migrated, &w);
    if (!mc) {
        log_error("cannot start the migrations: %s", strerror(errno));
    }
    while (mc && !w.finished && !w.stopped)
        if (event_base_dispatch(app->base) < 0)
            break;
    migrate_child_free(mc);
    if (term)
        event_free(term);
    if (intr)
        event_free(intr);
    if (!mc)
        return -1;
    if (w.stopped && !w.finished)
        return 1;
    if (!w.finished || w.applied < 0) {
        log_error("migrations failed: %s", w.finished ? w.err : "the loop stopped");
        return -1;
    }
    log_info("migrations: %d applied", w.applied);
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct app app = { 0 };
    struct shutdown sd = { .app = &app };
    struct router *router = NULL, *starting_router = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    enum log_level level;
    char err[512];
    int rc = 1;

    /* A child of the experiment builder extracting an archive (io/archive.c). */
    if (argc > 1 && strcmp(argv[1], ARCHIVE_CHILD_FLAG) == 0)
        return archive_child_main(argc, argv);
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
            printf("studyhub %s\n", PACKAGE_VERSION);
            return 0;
        }
        if (strcmp(argv[1], "--config-markdown") == 0) {
            config_print_markdown(stdout);
            return 0;
        }
        fprintf(stderr, "studyhub: unknown option \"%s\"; --help lists the settings "
                "(all from the environment), --version the version\n", argv[1]);
        return 2;
    }
    if (config_load(&cfg, env_getenv, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "studyhub: bad configuration: %s\n", err);
        return 2;
    }
    /* Two-factor secrets are sealed with this key: without it they could
     * be neither written nor read, and a key made up here would lose them
     * at the next restart.  tools/run and tools/test make one. */
    if (!cfg.totp_key_set) {
        fprintf(stderr, "studyhub: bad configuration: TOTP_SECRET_KEY is not set: it"
                " encrypts the two-factor secrets and must stay the same across"
                " restarts; make one with `openssl rand -hex 32` and keep it with"
                " the database's credentials\n");
        config_cleanup(&cfg);
        return 2;
    }
    log_level_parse(cfg.log_level, &level);
    log_set_level(level);
    signal(SIGPIPE, SIG_IGN);
    /* libevent writes its warnings raw to stderr: through the JSON log,
     * rate-limited, instead. */
    event_set_log_callback(on_libevent_log);
    raise_fd_limit();

    app.cfg = &cfg;
    app.started = time(NULL);
    app.base = http_event_base_new();
    app.metrics = metrics_new();
    router = router_new();
    starting_router = router_new();
    if (!app.base || !app.metrics || !router || !starting_router) {
        log_error("out of memory at start");
        goto out;
    }
    if (register_routes(router) < 0 || health_starting_routes(starting_router) < 0) {
        log_error("a route was refused (see above): not starting");
        rc = 2;
        goto out;
    }
    app.router = router;
    /* The port opens first, with only /healthz, /readyz and /metrics, so
     * that a supervisor sees the process alive while PostgreSQL is awaited
     * and the migrations run (in a child: libpq blocks there). */
    /* The pages, read once now: no request waits on the disk. */
    app.site = static_site_load(cfg.static_dir, err, sizeof err);
    if (!app.site) {
        log_error("cannot load STATIC_DIR: %s", err);
        goto out;
    }
    app.http = http_server_new(app.base, &cfg, starting_router, app.metrics, auth_gate, &app);
    if (app.http)
        http_server_set_fallback(app.http, runner_host_not_found);
    if (!app.http || http_server_listen(app.http, cfg.listen_addr, (int)cfg.listen_port) < 0) {
        log_error("cannot listen on %s:%ld: %s", cfg.listen_addr, cfg.listen_port,
                  strerror(errno));
        goto out;
    }
    if (cfg.migrate) {
        int m = migrate_while_serving(&app);

        if (m != 0) {
            rc = m > 0 ? 0 : 1;    /* stopped before serving is no failure */
            goto out;
        }
    }
    http_server_set_router(app.http, router);
    app.pg = pg_pool_new(app.base, cfg.database_url, (int)cfg.pg_pool_size,
                         (int)cfg.pg_acquire_timeout_ms, (int)cfg.pg_query_timeout_ms);
    if (app.pg)
        pg_pool_set_group_max(app.pg, (int)cfg.pg_group_max);
    app.redis = redis_client_new(app.base, cfg.redis_host, (int)cfg.redis_port,
                                 cfg.redis_password, (int)cfg.redis_db, (int)cfg.redis_timeout_ms);
    if (!app.pg || !app.redis) {
        log_error("cannot set up the PostgreSQL pool or the Redis client");
        goto out;
    }
    /* Children, the task queue runner and the scheduler (queue/task.c,
     * queue/sched.c, io/proc.c). */
    app.procs = proc_table_new(app.base);
    app.tasks = task_runner_new(&app);
    app.sched = sched_new(&app, err, sizeof err);
    if (!app.procs || !app.tasks || !app.sched) {
        log_error("cannot set up tasks and scheduled jobs: %s",
                  app.sched ? "out of memory" : err);
        goto out;
    }
    if (register_background(&app) < 0) {
        log_error("cannot register the task kinds and scheduled jobs");
        goto out;
    }
    /* The mail outbox sender (io/mail.c). */
    app.mail = mail_sender_new(&app, err, sizeof err);
    if (!app.mail) {
        log_error("cannot set up the mail sender: %s", err);
        goto out;
    }
    if (studies_cache_start(app.pg) < 0)
        log_warn("study document cache is off");
    if (auth_cache_start(app.pg) < 0)
        log_warn("API token cache is off");
    if (participate_runner_cache_start(app.pg) < 0)
        log_warn("runner file folder cache is off");
    auth_seal_plain_secrets(&app);
    /* Outbound HTTP and object storage (io/fetch.c, io/storage.c); after
     * listen, since file:// links carry the bound port. */
    app.fetch = fetch_client_new(app.base, NULL);
    app.storage = app.fetch ? videos_storage_new(&app, http_server_port(app.http), err,
                                                 sizeof err)
                            : NULL;
    if (!app.storage) {
        log_error("cannot set up storage: %s", app.fetch ? err : "curl cannot start");
        goto out;
    }
    /* A crash mid-write leaves its temp file: take those of dead writers
     * now (the nightly abort_stale_uploads takes any old enough). */
    storage_sweep_tmp(app.storage, time(NULL) - 60, true);
    app.admin = admin_server_new(app.base, cfg.admin_socket, &app);
    if (!app.admin) {
        log_error("cannot open the admin socket %s", cfg.admin_socket);
        goto out;
    }
    register_admin(app.admin);

    sigterm = evsignal_new(app.base, SIGTERM, on_stop_signal, &sd);
    sigint = evsignal_new(app.base, SIGINT, on_stop_signal, &sd);
    sd.poll = evtimer_new(app.base, drain_poll, &sd);
    if (!sigterm || !sigint || !sd.poll || evsignal_add(sigterm, NULL) < 0 ||
        evsignal_add(sigint, NULL) < 0) {
        log_error("cannot install signal handlers");
        goto out;
    }
    if (task_runner_start(app.tasks) < 0 || sched_start(app.sched) < 0) {
        log_error("cannot start the task runner or the scheduler");
        goto out;
    }
    if (mail_sender_start(app.mail) < 0) {
        log_error("cannot start the mail sender");
        goto out;
    }
    log_info("studyhub %s listening on %s:%d", PACKAGE_VERSION, cfg.listen_addr,
             http_server_port(app.http));
    event_base_dispatch(app.base);
    rc = 0;
out:
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sd.poll)
        event_free(sd.poll);
    admin_server_free(app.admin);
    http_server_free(app.http);
    static_site_free(app.site);     /* after http: replies point into it */
    /* Before the pool and Redis: tasks left running here are stopped
     * without writing (their leases run out; another server resumes
     * them); queries still out come back NULL from pg_pool_free. */
    task_runner_free(app.tasks);
    sched_free(app.sched);
    build_stop();                 /* after its tasks closed; before storage and Redis */
    mail_sender_free(app.mail);   /* before the pool: its queries finish there */
    /* After everything that starts storage operations. */
    storage_free(app.storage);
    fetch_client_free(app.fetch);
    redis_client_free(app.redis);
    studies_cache_stop();
    auth_cache_stop();
    participate_runner_cache_stop();
    pg_pool_free(app.pg);
    if (app.base)
        reap_flush(app.base);     /* what the pool's last answers let go */
    proc_table_free(app.procs);
    router_free(router);
    router_free(starting_router);
    metrics_free(app.metrics);
    if (app.base)
        event_base_free(app.base);
    config_cleanup(&cfg);
    return rc;
}
