/* build_exec: the environment and the command lines of a build: docker's
 * `run`, the bubblewrap sandbox, and the line logged for a person; and the
 * watch over its processes: the disk they fill, and what a dead server's
 * build left running. */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

static const char *const child_names[] = {
    [CH_DOCKER_RM] = "removing the previous attempt's container",
    [CH_COPY] = "copying the checkout",
    [CH_IMAGE] = "building the builder image",
    [CH_RUN] = "the build",
};

const char *bl_child_name(int which)
{
    return which >= 0 && which <= CH_RUN ? child_names[which] : "?";
}

/* The environment of reference section 4 (paths as the build sees them:
 * checkout and output are where the sandbox or container puts them) plus
 * BUILD_ENV, as "K=V" strings.  Nothing of the server's environment, and
 * nothing of a study's: the output is shared by every study on this
 * repository, commit and environment (issue 19), so its asset prefix is
 * the runner's own, /runners/<cache key>/. */
int build_env(struct build *b, struct strv *env, const char *checkout, const char *out)
{
    int rc = 0;

    rc |= strv_add(env, util_asprintf("CHECKOUT_DIR=%s", checkout));
    rc |= strv_add(env, util_asprintf("PREPEND_FINGERPRINT=/runners/%s/", b->cache_key));
    rc |= strv_add(env, util_asprintf("STUDY_OUTPUT_DIR=%s", out));
    rc |= strv_add(env, util_asprintf("RUNNER_SHA=%s", b->sha));
    rc |= strv_add(env, util_asprintf("RUNNER_REPO_URL=%s", b->repo_url));
    for (char **e = the_builder->extra_env; e && *e; e++)
        rc |= strv_add(env, strdup(*e));
    return rc ? -1 : 0;
}

bool runner_is_docker(void)
{
    return strcmp(the_builder->app->cfg->build_runner, "docker") == 0;
}

bool runner_is_sandboxed(void)
{
    return !runner_is_docker() && strcmp(the_builder->app->cfg->build_sandbox, "bwrap") == 0;
}

/* A root server runs builds as BUILD_UID (bwrap and docker's --user);
 * any other server can only run them as itself. */
bool builds_change_user(void)
{
    return geteuid() == 0;
}

void build_proc_ids(struct proc_opts *o)
{
    if (!builds_change_user())
        return;
    o->set_ids = true;
    o->uid = o->gid = (unsigned)the_builder->app->cfg->build_uid;
}

/* The docker client's environment: what it needs to find the engine and
 * its configuration, never the server's secrets.  Made once at start. */
int docker_client_env(struct strv *env)
{
    static const char *const pass[] = { "PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG",
                                        "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
                                        "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR", NULL };
    int rc = 0;

    for (int i = 0; pass[i]; i++) {
        const char *v = getenv(pass[i]);
        if (v)
            rc |= strv_add(env, util_asprintf("%s=%s", pass[i], v));
        else if (i == 0)
            rc |= strv_add(env, strdup("PATH=/usr/local/bin:/usr/bin:/bin"));
    }
    return rc ? -1 : 0;
}

/* `docker run` of the build: a read-only container without capabilities
 * or privilege gains, as a non-root user, with its process, memory and
 * /tmp bounded and no network unless BUILD_NETWORK=1. */
int docker_run_args(struct build *b, struct strv *argv)
{
    const struct config *c = the_builder->app->cfg;
    struct strv env = { 0 };
    long mb = c->build_max_output_mb;
    int rc = 0;

    rc |= strv_add(argv, strdup(c->docker_bin));
    rc |= strv_add(argv, strdup("run"));
    rc |= strv_add(argv, strdup("--rm"));
    rc |= strv_add(argv, strdup("--name"));
    rc |= strv_add(argv, strdup(b->container));
    rc |= strv_add(argv, strdup("--read-only"));
    rc |= strv_add(argv, strdup("--cap-drop"));
    rc |= strv_add(argv, strdup("ALL"));
    rc |= strv_add(argv, strdup("--security-opt"));
    rc |= strv_add(argv, strdup("no-new-privileges"));
    rc |= strv_add(argv, strdup("--user"));
    if (builds_change_user())
        rc |= strv_add(argv, util_asprintf("%ld:%ld", c->build_uid, c->build_uid));
    else
        rc |= strv_add(argv, util_asprintf("%u:%u", (unsigned)getuid(), (unsigned)getgid()));
    rc |= strv_add(argv, strdup("--pids-limit"));
    rc |= strv_add(argv, util_asprintf("%ld", c->build_max_procs));
    rc |= strv_add(argv, strdup("--memory"));
    rc |= strv_add(argv, util_asprintf("%ldm", c->build_memory_mb));
    rc |= strv_add(argv, strdup("--memory-swap"));
    rc |= strv_add(argv, util_asprintf("%ldm", c->build_memory_mb));
    rc |= strv_add(argv, strdup("--ulimit"));
    rc |= strv_add(argv, util_asprintf("fsize=%lld", (long long)mb << 20));
    rc |= strv_add(argv, strdup("--tmpfs"));
    rc |= strv_add(argv, util_asprintf("/tmp:rw,nosuid,nodev,size=%ldm", mb));
    /* The writable copy of the checkout (node_modules lands there). */
    rc |= strv_add(argv, strdup("--tmpfs"));
    rc |= strv_add(argv, util_asprintf("/checkout-dir:rw,exec,nosuid,nodev,size=%ldm", mb));
    if (!c->build_network) {
        rc |= strv_add(argv, strdup("--network"));
        rc |= strv_add(argv, strdup("none"));
    }
    rc |= strv_add(argv, strdup("-v"));
    rc |= strv_add(argv, util_asprintf("%s:/checkouts:ro", b->checkout));
    rc |= strv_add(argv, strdup("-v"));
    rc |= strv_add(argv, util_asprintf("%s:/deployments", b->out));
    rc |= strv_add(&env, strdup("HOME=/tmp"));
    rc |= build_env(b, &env, "/checkouts", "/deployments");
    for (size_t i = 0; i < env.n; i++) {
        rc |= strv_add(argv, strdup("-e"));
        rc |= strv_add(argv, strdup(env.v[i]));
    }
    strv_free(&env);
    rc |= strv_add(argv, strdup(c->builder_image));
    rc |= strv_add(argv, strdup("bash"));
    rc |= strv_add(argv, strdup("-c"));
    rc |= strv_add(argv, strdup("cp -R /checkouts/. /checkout-dir && cd /checkout-dir && "
                                "exec bash ./build.sh"));
    return rc ? -1 : 0;
}

/* The environment of a local build: section 4's variables, a PATH, a
 * HOME and a locale. */
int local_env(struct build *b, struct strv *envp, bool sandboxed)
{
    const char *path = getenv("PATH");
    int rc = 0;

    rc |= strv_add(envp, util_asprintf("PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin"));
    rc |= strv_add(envp, util_asprintf("HOME=%s", sandboxed ? SANDBOX_HOME : b->work));
    rc |= strv_add(envp, strdup("LANG=C.UTF-8"));
    if (sandboxed)
        rc |= build_env(b, envp, SANDBOX_CHECKOUT, SANDBOX_OUTPUT);
    else
        rc |= build_env(b, envp, b->checkout, b->out);
    return rc ? -1 : 0;
}

/* The sandboxed build: bwrap around `cp` of the checkout into the
 * scratch folder (done inside, as the build's user, so the copy is its
 * own to write) and build.sh. */
int sandbox_run_args(struct build *b, struct strv *argv, char *err, size_t errlen)
{
    const struct config *c = the_builder->app->cfg;
    static const char *const command[] = {
        "bash", "-c", "cp -R " SANDBOX_CHECKOUT "/. " SANDBOX_BUILD " && exec bash build.sh",
        NULL,
    };
    struct strv env = { 0 };
    struct sandbox_spec spec = {
        .bwrap = c->bwrap_bin, .host = &the_builder->host, .checkout = b->checkout,
        .scratch = b->scratch, .output = b->out, .network = c->build_network,
        .tmp_mb = c->build_max_output_mb, .ro_paths = c->build_ro_paths,
        .command = command,
    };
    char **v;

    if (local_env(b, &env, true) < 0) {
        strv_free(&env);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    spec.env = (const char *const *)env.v;
    v = sandbox_argv(&spec, err, errlen);
    strv_free(&env);
    if (!v)
        return -1;
    /* Takes the strings over. */
    for (char **p = v; *p; p++)
        if (strv_add(argv, *p) < 0) {
            for (char **q = p + 1; *q; q++)
                free(*q);
            free(v);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    free(v);
    return 0;
}

/* True when NAME (len bytes) is one of BUILD_ENV's: its value may be a
 * secret (a Sentry DSN) and stays out of logs researchers read. */
static bool extra_env_name(const char *name, size_t len)
{
    for (char **e = the_builder->extra_env; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return true;
    return false;
}

/* The command line, as a person would type it, for the stage's log; the
 * values of BUILD_ENV's variables hidden. */
void log_command(struct build *b, int which, const char *cwd, const struct strv *argv)
{
    char line[3000];
    size_t len = 0;

    for (size_t i = 0; i < argv->n && len < sizeof line - 1; i++) {
        const char *a = argv->v[i], *eq = strchr(a, '=');
        int n;

        if (i >= 2 && strcmp(argv->v[i - 2], "--setenv") == 0 &&
            extra_env_name(argv->v[i - 1], strlen(argv->v[i - 1])))
            n = snprintf(line + len, sizeof line - len, " (hidden)");
        else if (i >= 1 && strcmp(argv->v[i - 1], "-e") == 0 && eq &&
                 extra_env_name(a, (size_t)(eq - a)))
            n = snprintf(line + len, sizeof line - len, " %.*s=(hidden)", (int)(eq - a), a);
        else
            n = snprintf(line + len, sizeof line - len, "%s%s", i ? " " : "", a);
        len += n > 0 ? (size_t)n : 0;
    }
    task_log(b->t, "%s: $ %s%s%s%s", bl_child_name(which), cwd ? "cd " : "", cwd ? cwd : "",
             cwd ? " && " : "", line);
}

/* ---- the disk watch ------------------------------------------------------------------ */

/* RLIMIT_FSIZE bounds each file a build writes, not how many: while the
 * build runs, its scratch and output folders are measured (`du`, a child:
 * a node_modules tree is too big to walk on the loop) every DISK_CHECK_MS,
 * and a build past BUILD_MAX_OUTPUT_MB is killed. */
void bl_disk_watch_stop(struct build *b)
{
    if (b->du) {
        proc_abandon(b->du);
        b->du = NULL;
    }
    if (b->disk_timer)
        evtimer_del(b->disk_timer);
}

static void on_du(const struct proc_result *r, void *arg)
{
    struct build *b = arg;
    int64_t total = 0;
    const char *p = r->out;
    int64_t limit = (int64_t)the_builder->app->cfg->build_max_output_mb << 20;

    b->du = NULL;
    /* "BYTES\tPATH" per folder; a file that vanished mid-walk makes du exit
     * 1 with the sums still printed. */
    while (*p) {
        total += strtoll(p, NULL, 10);
        p += strcspn(p, "\n");
        p += *p == '\n';
    }
    if (total > limit && b->proc && b->child == CH_RUN) {
        b->disk_exceeded = true;
        task_log(b->t, "the build's folders hold %" PRId64 " bytes, more than "
                 "BUILD_MAX_OUTPUT_MB=%ld: killing it", total, the_builder->app->cfg->build_max_output_mb);
        proc_kill(b->proc);
        return;
    }
    if (b->proc)
        util_timer_ms(b->disk_timer, DISK_CHECK_MS);
}

static void on_disk_timer(evutil_socket_t fd, short what, void *arg)
{
    struct build *b = arg;
    const char *argv[] = { "du", "-s", "-x", "-b", "--", b->scratch, b->out, NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = DISK_DU_TIMEOUT_MS, .tail_bytes = 4096 };
    char err[256];

    if (!b->proc || b->du)
        return;
    if (!(b->du = proc_spawn(the_builder->app->procs, &o, on_du, b, err, sizeof err)))
        log_warn("build: cannot measure %s: %s", b->work, err);
}

void bl_disk_watch_start(struct build *b)
{
    if (!b->disk_timer && !(b->disk_timer = evtimer_new(the_builder->app->base, on_disk_timer, b)))
        return;     /* out of memory: the per-file limit and the check at publish remain */
    b->disk_exceeded = false;
    util_timer_ms(b->disk_timer, DISK_CHECK_MS);
}

/* ---- leftovers ------------------------------------------------------------------------ */

/* What a dead server's build left running (the process group of its
 * build.sh, whose leader died with the server but whose children did
 * not): killed, when they still work in this build's folder. */
void bl_kill_leftovers(struct build *b)
{
    char *pf = util_asprintf("%s/pgid", b->work), cwd[PATH_MAX], link[64];
    FILE *fp = pf ? fopen(pf, "re") : NULL;
    DIR *d;
    struct dirent *de;
    int pgid = 0, n = 0;
    size_t wl = strlen(b->work);

    if (fp) {
        if (fscanf(fp, "%d", &pgid) != 1)
            pgid = 0;
        fclose(fp);
    }
    if (pf)
        unlink(pf);
    free(pf);
    if (pgid <= 1 || !(d = opendir("/proc")))
        return;
    while ((de = readdir(d))) {
        int pid = atoi(de->d_name), pgrp = 0;
        ssize_t len;

        if (pid <= 1 || proc_stat_read(pid, NULL, &pgrp) < 0 || pgrp != pgid)
            continue;
        snprintf(link, sizeof link, "/proc/%d/cwd", pid);
        len = readlink(link, cwd, sizeof cwd - 1);
        if (len <= 0)
            continue;
        cwd[len] = '\0';
        if (strncmp(cwd, b->work, wl) == 0 && (cwd[wl] == '/' || cwd[wl] == '\0') &&
            kill(pid, SIGKILL) == 0)
            n++;
    }
    closedir(d);
    if (n)
        task_log(b->t, "killed %d process%s left running by the previous attempt", n,
                 n == 1 ? "" : "es");
}
