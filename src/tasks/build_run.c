/* build_run: the build's 'build' stage: its children in order (docker:
 * the old container removed, the image, the run; local: a scratch copy
 * and the run, or the run in the bwrap sandbox), what each one's end
 * means, and the wait for another build on this server producing the
 * same runner.  Their command lines and environment are build_exec.c's. */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

static void docker_rm_done(const struct proc_result *r, void *arg)
{
    char how[128];

    proc_result_describe(r, how, sizeof how);
    log_debug("build: docker rm -f: %s", how);
}

/* Removes our container (a killed `docker run` client leaves it running). */
void bl_docker_rm_later(const char *name)
{
    const char *argv[] = { the_builder->app->cfg->docker_bin, "rm", "-f", name, NULL };
    struct proc_opts o = { .argv = argv, .timeout_ms = DOCKER_RM_TIMEOUT_MS, .tail_bytes = 2048,
                           .envp = build_docker_env() };
    char err[256];

    if (!proc_spawn(the_builder->app->procs, &o, docker_rm_done, NULL, err, sizeof err))
        log_warn("build: cannot run docker rm -f %s: %s", name, err);
}

int bl_first_child(bool docker, bool sandboxed, int attempts)
{
    if (sandboxed)
        return CH_RUN;          /* bwrap binds the checkout read-only */
    if (!docker)
        return CH_COPY;         /* a scratch copy first */
    /* docker: a container an earlier attempt left goes first. */
    return attempts > 1 ? CH_DOCKER_RM : CH_IMAGE;
}

int bl_next_child(int which)
{
    switch (which) {
    case CH_DOCKER_RM:
        return CH_IMAGE;
    case CH_COPY:
    case CH_IMAGE:
        return CH_RUN;
    default:
        return -1;
    }
}

static void on_child(const struct proc_result *r, void *arg);

static void child_start(struct build *b, int which)
{
    const struct config *c = the_builder->app->cfg;
    struct strv argv = { 0 }, envp = { 0 };
    struct proc_opts o = { .tail_bytes = CHILD_TAIL, .grace_ms = 3000 };
    char err[600] = "out of memory";
    int64_t left = b->deadline_ms - util_mono_ms();
    int rc = 0;

    b->child = which;
    if (left < 1)
        left = 1;
    o.timeout_ms = left;
    switch (which) {
    case CH_DOCKER_RM:
        rc |= strv_add(&argv, strdup(c->docker_bin));
        rc |= strv_add(&argv, strdup("rm"));
        rc |= strv_add(&argv, strdup("-f"));
        rc |= strv_add(&argv, strdup(b->container));
        o.timeout_ms = DOCKER_RM_TIMEOUT_MS;
        break;
    case CH_COPY:
        /* BUILD_SANDBOX=none: a scratch copy, so the build may write
         * anywhere in its tree while the checkout stays pristine. */
        rc |= strv_add(&argv, strdup("cp"));
        rc |= strv_add(&argv, strdup("-R"));
        rc |= strv_add(&argv, strdup("--"));
        rc |= strv_add(&argv, util_asprintf("%s/.", b->checkout));
        rc |= strv_add(&argv, strdup(b->scratch));
        break;
    case CH_IMAGE:
        rc |= strv_add(&argv, strdup(c->docker_bin));
        rc |= strv_add(&argv, strdup("build"));
        rc |= strv_add(&argv, strdup("-t"));
        rc |= strv_add(&argv, strdup(c->builder_image));
        rc |= strv_add(&argv, strdup(c->builder_context[0] ? c->builder_context : b->checkout));
        break;
    case CH_RUN:
        if (runner_is_docker()) {
            rc |= docker_run_args(b, &argv);
        } else if (runner_is_sandboxed()) {
            if (sandbox_run_args(b, &argv, err, sizeof err) < 0)
                rc = -1;
            /* bwrap itself needs no variable: --clearenv, then the list. */
            rc |= strv_add(&envp, strdup("PATH=/usr/bin:/bin"));
            o.rlimits = the_builder->limits;
            build_proc_ids(&o);
        } else {
            rc |= strv_add(&argv, strdup("bash"));
            rc |= strv_add(&argv, strdup("build.sh"));
            rc |= local_env(b, &envp, false);
            o.cwd = b->scratch;
            o.rlimits = the_builder->limits;
        }
        break;
    }
    if (rc) {
        strv_free(&argv);
        strv_free(&envp);
        bl_stop(b, BO_FAILED, "cannot start %s: %s", bl_child_name(which), err);
        return;
    }
    bl_wait(b, BW_CHILD);
    o.argv = (const char *const *)argv.v;
    o.envp = envp.v ? (const char *const *)envp.v : NULL;
    if (which != CH_COPY && (which != CH_RUN || runner_is_docker()))
        o.envp = build_docker_env();
    log_command(b, which, o.cwd, &argv);
    b->proc = proc_spawn(the_builder->app->procs, &o, on_child, b, err, sizeof err);
    strv_free(&argv);
    strv_free(&envp);
    if (!b->proc) {
        bl_stop(b, BO_FAILED, "cannot start %s: %s", bl_child_name(which), err);
        return;
    }
    if (which == CH_RUN)
        bl_disk_watch_start(b);
    if (which == CH_RUN && !runner_is_docker()) {
        /* So a restarted server can find what this one left running. */
        char *pf = util_asprintf("%s/pgid", b->work);
        FILE *fp = pf ? fopen(pf, "we") : NULL;
        if (fp) {
            fprintf(fp, "%d\n", (int)proc_pid(b->proc));
            fclose(fp);
        }
        free(pf);
    }
}

static void build_done(struct build *b)
{
    char *dist = util_asprintf("%s/dist", b->scratch);

    if (dir_nonempty(b->out)) {
        task_log(b->t, "the output is in STUDY_OUTPUT_DIR (%s)", b->out);
    } else if (dist && strcmp(the_builder->app->cfg->build_runner, "local") == 0 && dir_nonempty(dist)) {
        task_log(b->t, "STUDY_OUTPUT_DIR is empty: the output is the build's dist/ (%s)", dist);
    } else {
        free(dist);
        bl_stop(b, BO_FAILED, "the build exited 0 but wrote nothing to STUDY_OUTPUT_DIR%s",
                strcmp(the_builder->app->cfg->build_runner, "local") == 0 ? " or dist/" : "");
        return;
    }
    free(dist);
    bl_move(b, BS_UPLOAD, TASK_STAGE_OK);
}

static void on_child(const struct proc_result *r, void *arg)
{
    struct build *b = arg;
    bool docker = strcmp(the_builder->app->cfg->build_runner, "docker") == 0;
    char how[160], label[96];

    b->proc = NULL;
    bl_wait_end(b, BW_CHILD);
    bl_disk_watch_stop(b);
    proc_result_describe(r, how, sizeof how);
    task_log(b->t, "%s: %s after %.1f s", bl_child_name(b->child), how, r->duration_s);
    /* The last CHILD_TAIL bytes of each stream (the end is what explains
     * a failure). */
    if (r->out_len) {
        snprintf(label, sizeof label, r->out_len < r->out_total ? "stdout, the end of %zu"
                 : "stdout", r->out_total);
        task_log_text(b->t, label, r->out, r->out_len);
    }
    if (r->err_len) {
        snprintf(label, sizeof label, r->err_len < r->err_total ? "stderr, the end of %zu"
                 : "stderr", r->err_total);
        task_log_text(b->t, label, r->err, r->err_len);
    }
    if (b->disk_exceeded) {
        if (docker && b->child == CH_RUN)
            bl_docker_rm_later(b->container);
        bl_stop(b, BO_FAILED, "%s wrote more than BUILD_MAX_OUTPUT_MB=%ld MiB to its folders: "
                "it was killed", bl_child_name(b->child), the_builder->app->cfg->build_max_output_mb);
        return;
    }
    if (r->killed || task_cancel_requested(b->t)) {
        if (docker && b->child == CH_RUN)
            bl_docker_rm_later(b->container);
        bl_stop(b, BO_CANCELLED, "cancelled during %s", bl_child_name(b->child));
        return;
    }
    if (r->timed_out) {
        if (docker && b->child == CH_RUN)
            bl_docker_rm_later(b->container);
        bl_stop(b, BO_FAILED, "%s took longer than BUILD_TIMEOUT_S=%ld s: its process group "
                "was killed", bl_child_name(b->child), the_builder->app->cfg->build_timeout_s);
        return;
    }
    /* docker rm -f: "no such container" is fine. */
    if (b->child != CH_DOCKER_RM && !proc_result_ok(r)) {
        /* Whatever it wrote, a failing build is a failure (lookit-api#503). */
        bl_stop(b, BO_FAILED, "%s failed (%s)", bl_child_name(b->child), how);
        return;
    }
    if (bl_next_child(b->child) >= 0)
        child_start(b, bl_next_child(b->child));
    else
        build_done(b);
}

/* Another build on this server producing the same runner (its build ran
 * and it has not ended): twenty studies asking at once for a commit built
 * nowhere yet build it once.  Only builds that started producing are
 * waited for, so two builds never wait for each other.  Across servers a
 * runner may be built twice at once; its files are the same and each put
 * is atomic, so the second record only replaces the first. */
static struct build *same_runner_producer(struct build *b)
{
    struct build *x;

    TAILQ_FOREACH(x, &the_builder->running, rlink)
        if (x != b && x->producing && strcmp(x->cache_key, b->cache_key) == 0 &&
            (x->t->state == BS_BUILD || x->t->state == BS_UPLOAD))
            return x;
    return NULL;
}

/* After waiting: did the other build record the runner? */
static void on_rechecked(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    bl_wait_end(b, BW_QUERY);
    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while waiting for another build of this runner");
        return;
    }
    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        bl_stop(b, BO_FAILED, "cannot look for the runner: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    if (!PQgetisnull(res, 0, 0)) {
        json_decref(b->manifest);
        b->manifest = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        task_log(t, "the other build recorded the runner (%zu files): it is served as it is",
                 json_array_size(b->manifest));
        bl_move(b, BS_UPLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    task_log(t, "the other build did not record the runner: building it here");
    bl_st_build(b);
}

void bl_st_build(struct build *b)
{
    struct task *t = b->t;
    const struct config *c = the_builder->app->cfg;
    bool docker = strcmp(c->build_runner, "docker") == 0;
    char *build_sh;
    struct stat sb;
    struct build *other;

    if (b->manifest) {
        task_log(t, "the runner is cached: nothing to build");
        bl_move(b, BS_UPLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    if ((other = same_runner_producer(b))) {
        if (!b->waited)
            task_log(t, "build %s is producing this runner on this server: waiting for it",
                     other->t->uuid);
        b->waited = true;
        bl_wait_timer(b, SAME_RUNNER_WAIT_MS);
        return;
    }
    if (b->waited) {
        b->waited = false;
        if (bl_query_resolved(b, on_rechecked) < 0) {
            bl_stop(b, BO_FAILED, "cannot look for the runner: out of memory");
        }
        return;
    }
    if (runner_is_sandboxed() && the_builder->sandbox != SB_OK) {
        if (the_builder->sandbox == SB_CHECKING) {
            bl_wait_timer(b, PROBE_WAIT_MS);     /* the check at start */
            return;
        }
        bl_stop(b, BO_FAILED, "builds are refused: the build sandbox does not work on this "
                "server (BUILD_SANDBOX=bwrap): %s", the_builder->sandbox_err);
        return;
    }
    if (!is_dir(b->checkout)) {
        if (++b->rebuilds > MAX_REBUILDS) {
            bl_stop(b, BO_FAILED, "the checkout %s vanished %d times", b->checkout, MAX_REBUILDS);
            return;
        }
        task_log(t, "the checkout %s is gone: downloading it again", b->checkout);
        bl_move(b, BS_DOWNLOAD, TASK_STAGE_SKIPPED);
        return;
    }
    /* The checkout is in use: cleanup_checkouts keeps what was used in
     * the last day. */
    utimensat(AT_FDCWD, b->checkout, NULL, AT_SYMLINK_NOFOLLOW);
    build_sh = util_asprintf("%s/build.sh", b->checkout);
    if (!build_sh || lstat(build_sh, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        free(build_sh);
        bl_stop(b, BO_FAILED, "the runner repository has no build.sh at its top");
        return;
    }
    free(build_sh);
    if (util_mkdir_p(b->work) < 0) {
        bl_stop(b, BO_FAILED, "cannot create %s: %s", b->work, strerror(errno));
        return;
    }
    if (t->attempts > 1 && !docker)
        bl_kill_leftovers(b);
    /* A previous attempt's folders are moved aside (one rename each) and
     * removed by a child. */
    for (int i = 0; i < 2; i++) {
        const char *dir = i ? b->scratch : b->out;
        if (exists(dir)) {
            char rnd[13], *old;
            util_random_hex(6, rnd);
            old = util_asprintf("%s.old-%s", dir, rnd);
            if (!old || rename(dir, old) < 0) {
                free(old);
                bl_stop(b, BO_FAILED, "cannot clear %s: %s", dir, strerror(errno));
                return;
            }
            archive_remove_later(the_builder->app->procs, old);
            free(old);
        }
        if (mkdir(dir, 0755) < 0) {
            bl_stop(b, BO_FAILED, "cannot create %s: %s", dir, strerror(errno));
            return;
        }
        /* The build's user writes here and nowhere else on the host. */
        if ((docker || runner_is_sandboxed()) && builds_change_user() &&
            chown(dir, (uid_t)c->build_uid, (gid_t)c->build_uid) < 0) {
            bl_stop(b, BO_FAILED, "cannot hand %s to BUILD_UID=%ld: %s", dir, c->build_uid,
                    strerror(errno));
            return;
        }
    }
    snprintf(b->container, sizeof b->container, "studyhub-build-%s", t->uuid);
    b->producing = true;
    b->deadline_ms = util_mono_ms() + c->build_timeout_s * 1000;
    task_log(t, "runner: %s%s; timeout %ld s; network %s; at most %ld processes, %ld MiB of "
             "memory each, %ld MiB per file and of output", c->build_runner,
             docker ? "" : runner_is_sandboxed() ? " in the bwrap sandbox"
                                                 : " WITHOUT a sandbox (BUILD_SANDBOX=none)",
             c->build_timeout_s, c->build_network ? "on" : "off", c->build_max_procs,
             c->build_memory_mb, c->build_max_output_mb);
    child_start(b, bl_first_child(docker, runner_is_sandboxed(), t->attempts));
}

