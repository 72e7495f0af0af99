/* build_exec: the environment and the command lines of a build: docker's
 * `run`, the bubblewrap sandbox, and the line logged for a person. */
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
