/* build_resolve: the build's first stage, resolve_sha: which repository
 * (the study's player_repo_url or RUNNER_REPO_URL, allowed and approved)
 * and which commit (the study's pinned SHA, else the head of the default
 * branch through the GitHub API), then the runner's cache key, saved with
 * them (a runner built before is found here and served as it is). */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

int build_parse_repo(const char *url, char **base, char owner[128], char repo[128])
{
    size_t n = strlen(url);
    char *u, *slash, *o;

    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return -1;
    if (n > 1000 || strpbrk(url, " \t\r\n?#\"'\\"))
        return -1;
    u = strdup(url);
    if (!u)
        return -1;
    while (n && u[n - 1] == '/')
        u[--n] = '\0';
    if (n > 4 && strcmp(u + n - 4, ".git") == 0)
        u[n -= 4] = '\0';
    slash = strrchr(u, '/');
    if (!slash || slash[1] == '\0' || slash - u < 9)
        goto bad;
    snprintf(repo, 128, "%s", slash + 1);
    *slash = '\0';
    o = strrchr(u, '/');
    if (!o || o[1] == '\0' || o - u < 7 || o[-1] == '/')
        goto bad;
    snprintf(owner, 128, "%s", o + 1);
    *slash = '/';
    for (const char *p = owner; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            goto bad;
    for (const char *p = repo; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            goto bad;
    *base = u;
    return 0;
bad:
    free(u);
    return -1;
}

int build_cache_key(const char *repo_url, const char *sha, const char *env_hash, char out[65])
{
    /* What the output depends on, and nothing of the study: its assets'
     * prefix is /runners/<this key>/ (build_env), so every study on this
     * repository, commit and environment serves the same files. */
    char *material = util_asprintf("%s\n%s\n/runners/\n%s\n", repo_url, sha, env_hash);

    if (!material)
        return -1;
    util_sha256_hex(material, strlen(material), out);
    free(material);
    return 0;
}

static const struct pg_stmt stmt_resolved = {
    "build_resolved",
    "WITH u AS (UPDATE study_builds SET repo_url = $2, sha = $3, cache_key = $4, shared = true,"
    "             reused = EXISTS (SELECT 1 FROM runner_builds WHERE cache_key = $4)"
    "           WHERE task_id = $1::bigint RETURNING task_id),"
    " r AS (UPDATE runner_builds SET last_used_at = now() WHERE cache_key = $4"
    "       RETURNING manifest)"
    " SELECT (SELECT manifest::text FROM r), (SELECT count(*) FROM u)",
};

static void on_resolved_saved(struct task *t, PGresult *res)
{
    struct build *b = t->data;

    bl_wait_end(b, BW_QUERY);
    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while resolving the commit");
        return;
    }
    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        bl_stop(b, BO_FAILED, "cannot save the resolved commit: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    json_decref(b->manifest);
    b->manifest = NULL;
    if (!PQgetisnull(res, 0, 0)) {
        b->manifest = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        task_log(t, "this runner (repository, commit and environment) was built before, for "
                 "this study or another: its %zu files are served as they are, with no build",
                 json_array_size(b->manifest));
    }
    bl_move(b, BS_DOWNLOAD, TASK_STAGE_OK);
}

int bl_query_resolved(struct build *b, task_pg_cb cb)
{
    char task[24];
    const char *params[4] = { task, b->repo_url, b->sha, b->cache_key };

    snprintf(task, sizeof task, "%" PRId64, b->t->id);
    return bl_query(b, &stmt_resolved, 4, params, cb);
}

/* The commit is known: the cache key, the paths, and save them. */
static void resolve_done(struct build *b)
{
    struct task *t = b->t;

    for (char *p = b->sha; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (build_cache_key(b->repo_url, b->sha, the_builder->env_hash, b->cache_key) < 0 ||
        bl_paths(b) < 0) {
        bl_stop(b, BO_FAILED, "out of memory");
        return;
    }
    task_log(t, "runner: %s at %s", b->repo_url, b->sha);
    if (bl_query_resolved(b, on_resolved_saved) < 0) {
        bl_stop(b, BO_FAILED, "cannot save the resolved commit: out of memory");
    }
}

static void api_get(struct build *b);

static void on_api(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    struct build *b = arg;
    json_t *doc;
    const char *v;

    b->req = NULL;
    bl_wait_end(b, BW_GITHUB);
    if (res->error || res->status != 200) {
        if (res->status)
            bl_stop(b, BO_FAILED, "GitHub API: HTTP %d for %s/%s%s%s after %d attempt%s: %.300s",
                    res->status, b->owner, b->repo, b->api_step ? " branch " : "",
                    b->api_step ? b->branch : "", res->attempts, res->attempts == 1 ? "" : "s",
                    res->body);
        else
            bl_stop(b, BO_FAILED, "GitHub API unreachable after %d attempt%s: %s",
                    res->attempts, res->attempts == 1 ? "" : "s", res->error);
        return;
    }
    doc = json_loadb(res->body, res->body_len, 0, NULL);
    if (b->api_step == 0) {
        v = json_string_value(json_object_get(doc, "default_branch"));
        if (!v || !*v || strlen(v) >= sizeof b->branch || strspn(v,
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") != strlen(v)) {
            json_decref(doc);
            bl_stop(b, BO_FAILED, "GitHub API: no usable default_branch for %s/%s", b->owner,
                    b->repo);
            return;
        }
        snprintf(b->branch, sizeof b->branch, "%s", v);
        json_decref(doc);
        task_log(b->t, "default branch: %s", b->branch);
        b->api_step = 1;
        api_get(b);
        return;
    }
    v = json_string_value(json_object_get(doc, "sha"));
    if (!is_sha(v)) {
        json_decref(doc);
        bl_stop(b, BO_FAILED, "GitHub API: no commit SHA for branch %s of %s/%s", b->branch,
                b->owner, b->repo);
        return;
    }
    snprintf(b->sha, sizeof b->sha, "%s", v);
    json_decref(doc);
    task_log(b->t, "head of %s: %s", b->branch, b->sha);
    resolve_done(b);
}

static void api_get(struct build *b)
{
    const struct config *c = the_builder->app->cfg;
    char auth[300];
    const char *headers[4];
    int nh = 0;
    size_t n = strlen(c->github_api_url);
    char *url;
    struct fetch_opts o = {
        .method = "GET",
        .headers = headers,
        .max_body = API_MAX_BODY,
        .follow_redirects = true,
        .connect_timeout_ms = 10000,
        .timeout_ms = c->build_fetch_timeout_s * 1000,
        .done = on_api,
        .arg = b,
    };

    while (n && c->github_api_url[n - 1] == '/')
        n--;
    if (b->api_step == 0)
        url = util_asprintf("%.*s/repos/%s/%s", (int)n, c->github_api_url, b->owner, b->repo);
    else
        url = util_asprintf("%.*s/repos/%s/%s/commits/%s", (int)n, c->github_api_url, b->owner,
                        b->repo, b->branch);
    headers[nh++] = "Accept: application/vnd.github+json";
    headers[nh++] = "X-GitHub-Api-Version: 2022-11-28";
    if (c->github_token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->github_token);
        headers[nh++] = auth;
    }
    headers[nh] = NULL;
    o.url = url;
    if (!url || !bl_fetch() || !(b->req = fetch_submit(bl_fetch(), &o))) {
        free(url);
        bl_stop(b, BO_FAILED, "cannot call the GitHub API: out of memory");
        return;
    }
    bl_wait(b, BW_GITHUB);
    task_log(b->t, "GET %s", url);
    free(url);
}

void bl_st_resolve(struct build *b)
{
    const char *repo = b->meta_repo && *b->meta_repo ? b->meta_repo
                                                     : the_builder->app->cfg->runner_repo_url;

    char *base;

    if (build_parse_repo(repo, &base, b->owner, b->repo) < 0) {
        bl_stop(b, BO_FAILED, "the runner repository \"%.300s\" is not an http(s) URL of the "
                "form https://github.com/OWNER/REPO", repo);
        return;
    }
    free(b->repo_url);
    b->repo_url = base;
    if (!builds_repo_allowed(the_builder->app->cfg, b->repo_url)) {
        bl_stop(b, BO_FAILED, "the runner repository %.300s is not allowed here "
                "(RUNNER_REPO_ALLOW)", b->repo_url);
        return;
    }
    /* Checked at the request too; again here, as the study's metadata may
     * have named another repository since. */
    if (!b->repo_approved) {
        bl_stop(b, BO_FAILED, "runner_repo_not_approved: the runner repository %.300s is not "
                "the default one and is not approved for this study; a site reviewer must "
                "approve it first", b->repo_url);
        return;
    }
    task_log(b->t, "repository %s (%s)", b->repo_url,
             b->meta_repo && *b->meta_repo ? "the study's player_repo_url" : "RUNNER_REPO_URL");
    if (is_sha(b->meta_sha)) {
        snprintf(b->sha, sizeof b->sha, "%s", b->meta_sha);
        task_log(b->t, "the study pins commit %s", b->meta_sha);
        resolve_done(b);
        return;
    }
    if (b->meta_sha && *b->meta_sha)
        task_log(b->t, "the study's last_known_player_sha \"%.80s\" is not a 40-hex SHA: "
                 "using the head of the default branch", b->meta_sha);
    else
        task_log(b->t, "the study pins no commit: using the head of the default branch");
    b->api_step = 0;
    api_get(b);
}

