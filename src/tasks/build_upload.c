/* build_upload: the output folder walked a slice per loop turn and put
 * under runners/<cache key>/, several operations at once with retries,
 * index.html files last.  Every study using the runner serves it from
 * there (issue 19): nothing is copied to a study's folder.  A cached
 * runner is only checked (its index.html files are still in storage). */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

#include "studyhub/queue/sched.h"

#include <strings.h>

/* ---- uploads: walk the output, put it under runners/<key>/; or check it ----------- */



void up_free(struct upload *up)
{
    if (!up)
        return;
    for (int i = 0; i < up->nslots; i++) {
        if (up->slots[i].op)
            storage_cancel(up->slots[i].op);
        if (up->slots[i].timer)
            event_free(up->slots[i].timer);
    }
    free(up->slots);
    while (up->depth > 0) {
        up->depth--;
        closedir(up->stack[up->depth].d);
        free(up->stack[up->depth].rel);
    }
    if (up->walk_ev)
        event_free(up->walk_ev);
    for (size_t i = 0; i < up->nfiles; i++)
        free(up->files[i].rel);
    free(up->files);
    free(up->order);
    free(up->src_dir);
    free(up->cache_prefix);
    free(up);
}

static void up_fail(struct upload *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void up_fail(struct upload *up, const char *fmt, ...)
{
    struct build *b = up->b;
    char msg[800];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->up = NULL;
    bl_wait_end(b, BW_UPLOAD);
    up_free(up);
    bl_stop(b, BO_FAILED, "%s", msg);
}

static int up_add(struct upload *up, const char *rel, int64_t size, const char *type)
{
    if (up->nfiles == up->cap) {
        size_t cap = up->cap ? up->cap * 2 : 64;
        struct upfile *f = realloc(up->files, cap * sizeof *f);
        if (!f)
            return -1;
        up->files = f;
        up->cap = cap;
    }
    if (!(up->files[up->nfiles].rel = strdup(rel)))
        return -1;
    up->files[up->nfiles].size = size;
    up->files[up->nfiles].type = type;
    up->nfiles++;
    up->bytes += (uint64_t)(size > 0 ? size : 0);
    return 0;
}

static void up_phase_done(struct upload *up);
static void slot_next(struct upslot *s);
static void slot_start(struct upslot *s);

static void on_op_timer(evutil_socket_t fd, short what, void *arg)
{
    slot_start(arg);    /* the same item again */
}

static void on_op_done(const struct storage_result *res, void *arg)
{
    struct upslot *s = arg;
    struct upload *up = s->up;
    struct build *b = up->b;
    const struct upfile *f = &up->files[up->order[s->item]];

    s->op = NULL;
    if (res->err == 0) {
        up->done++;
        s->tries = 0;
        slot_next(s);
        return;
    }
    if (res->err == -ENOENT && up->phase == UP_CHECK && up->cached) {
        /* The cached runner's files are gone from storage. */
        char what[400];
        snprintf(what, sizeof what, "%s%s: %s", up->cache_prefix, f->rel,
                 res->error ? res->error : "missing");
        b->up = NULL;
        bl_wait_end(b, BW_UPLOAD);
        up_free(up);
        bl_cache_gone(b, what);
        return;
    }
    if ((res->err == -EIO || res->err == -ENOMEM) && ++s->tries < OP_TRIES) {
        up->retries++;
        task_log(b->t, "%s of %s failed (%s); trying again", up->phase == UP_PUT
                 ? "upload" : "check", f->rel, res->error ? res->error : "error");
        util_timer_ms(s->timer, (int64_t)OP_BACKOFF_MS << (s->tries - 1));
        return;
    }
    up_fail(up, "%s of %s failed after %d attempt%s: %s", up->phase == UP_PUT ? "upload" : "check",
            f->rel, s->tries + 1, s->tries ? "s" : "", res->error ? res->error : "error");
}

/* Starts the operation of the slot's item (first try or again). */
static void slot_start(struct upslot *s)
{
    struct upload *up = s->up;
    struct storage *st;
    const char *err = NULL;
    char *key = NULL, *src = NULL;
    const struct upfile *f = &up->files[up->order[s->item]];

    st = bl_storage(&err);
    if (!st) {
        up_fail(up, "no storage: %s", err ? err : "?");
        return;
    }
    key = util_asprintf("%s%s", up->cache_prefix, f->rel);
    if (up->phase == UP_PUT) {
        src = util_asprintf("%s/%s", up->src_dir, f->rel);
        if (key && src)
            s->op = storage_put_file(st, key, src, f->type, on_op_done, s);
    } else if (key) {
        s->op = storage_head(st, key, on_op_done, s);
    }
    free(key);
    free(src);
    if (!s->op)
        up_fail(up, "out of memory starting the upload of %s", f->rel);
}

/* Takes the next item for the slot, or notices the end of the phase. */
static void slot_next(struct upslot *s)
{
    struct upload *up = s->up;

    if (up->next >= up->nfiles) {
        s->item = -1;
        if (up->done == up->nfiles)
            up_phase_done(up);
        return;
    }
    s->item = (long)up->next++;
    s->tries = 0;
    slot_start(s);
}

void up_publish_order(const struct upfile *files, size_t n, size_t *order)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (!is_index_html(files[i].rel))
            order[k++] = i;
    for (size_t i = 0; i < n; i++)
        if (is_index_html(files[i].rel))
            order[k++] = i;
}

void up_run_phase(struct upload *up, enum up_phase phase)
{
    up->phase = phase;
    up->next = up->done = 0;
    up->phase_ms = util_mono_ms();
    if (!up->order && up->nfiles) {
        if (!(up->order = malloc(up->nfiles * sizeof *up->order))) {
            up_fail(up, "out of memory");
            return;
        }
        up_publish_order(up->files, up->nfiles, up->order);
    }
    if (up->nfiles == 0) {
        up_phase_done(up);
        return;
    }
    {
        /* A slot may fail the whole upload (and free it): stop then. */
        struct build *b = up->b;
        int n = up->nslots;
        for (int i = 0; i < n && b->up == up; i++)
            if (up->slots[i].item < 0 && !up->slots[i].op)
                slot_next(&up->slots[i]);
    }
}

static void on_recorded(struct task *t, PGresult *res);

/* The manifest of the runner: what the copy of a cached runner needs. */
static json_t *up_manifest(const struct upload *up)
{
    json_t *m = json_array();

    for (size_t i = 0; m && i < up->nfiles; i++)
        json_array_append_new(m, json_pack("{s:s, s:I, s:s}", "path", up->files[i].rel,
                                           "size", (json_int_t)up->files[i].size, "type",
                                           up->files[i].type));
    return m;
}

static const struct pg_stmt stmt_record = {
    "build_record_runner",
    "WITH r AS (INSERT INTO runner_builds (cache_key, repo_url, sha, manifest, files, bytes,"
    "                                     built_by)"
    "           VALUES ($1, $2, $3, $4::jsonb, $5::int, $6::bigint, $7::bigint)"
    "           ON CONFLICT (cache_key) DO UPDATE SET manifest = EXCLUDED.manifest,"
    "             files = EXCLUDED.files, bytes = EXCLUDED.bytes,"
    "             built_by = EXCLUDED.built_by, last_used_at = now()"
    "           RETURNING cache_key)"
    " UPDATE study_builds SET reused = false WHERE task_id = $7::bigint"
    "   AND EXISTS (SELECT 1 FROM r)",
};

static void up_phase_done(struct upload *up)
{
    struct build *b = up->b;
    double secs = (double)(util_mono_ms() - up->phase_ms) / 1000.0;

    if (up->phase == UP_PUT) {
        char files[24], bytes[24], task[24];
        json_t *m = up_manifest(up);
        char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        const char *params[7];

        json_decref(m);
        task_log(b->t, "uploaded %zu files (%" PRIu64 " bytes) to %s in %.1f s", up->nfiles,
                 up->bytes, up->cache_prefix, secs);
        if (!text) {
            up_fail(up, "out of memory");
            return;
        }
        snprintf(files, sizeof files, "%zu", up->nfiles);
        snprintf(bytes, sizeof bytes, "%" PRIu64, up->bytes);
        snprintf(task, sizeof task, "%" PRId64, b->t->id);
        params[0] = b->cache_key;
        params[1] = b->repo_url;
        params[2] = b->sha;
        params[3] = text;
        params[4] = files;
        params[5] = bytes;
        params[6] = task;
        if (bl_query(b, &stmt_record, 7, params, on_recorded) < 0) {
            free(text);
            up_fail(up, "cannot record the runner: out of memory");
            return;
        }
        free(text);
        return;
    }
    /* UP_CHECK: the cached runner is still in storage. */
    task_log(b->t, "the cached runner is in place: %s (%zu file%s checked in %.2f s)",
             up->cache_prefix, up->nfiles, up->nfiles == 1 ? "" : "s", secs);
    if (up->retries)
        task_log(b->t, "%u operations were tried again", up->retries);
    b->up = NULL;
    bl_wait_end(b, BW_UPLOAD);
    up_free(up);
    b->outcome = BO_SUCCEEDED;
    bl_move(b, BS_FINISH, TASK_STAGE_OK);
}

static void on_recorded(struct task *t, PGresult *res)
{
    struct build *b = t->data;
    struct upload *up = b->up;

    bl_wait_end(b, BW_QUERY);
    if (task_cancel_requested(t)) {
        bl_stop(b, BO_CANCELLED, "cancelled while uploading");
        return;
    }
    if (!res || !pg_ok(res)) {
        up_fail(up, "cannot record the runner: %s",
                res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    /* Recorded: every study may serve it now. */
    task_log(b->t, "the runner is recorded under %s for every study that uses it",
             up->cache_prefix);
    if (up->retries)
        task_log(b->t, "%u operations were tried again", up->retries);
    b->up = NULL;
    bl_wait_end(b, BW_UPLOAD);
    up_free(up);
    b->outcome = BO_SUCCEEDED;
    bl_move(b, BS_FINISH, TASK_STAGE_OK);
}

size_t up_index_refs(const char *html, size_t len, const char *prefix,
                     void (*fn)(const char *rel, size_t n, void *arg), void *arg)
{
    size_t plen = strlen(prefix), found = 0;

    for (size_t i = 0; i < len; i++) {
        size_t a = 0;

        if (i + 4 <= len && strncasecmp(html + i, "src=", 4) == 0)
            a = i + 4;
        else if (i + 5 <= len && strncasecmp(html + i, "href=", 5) == 0)
            a = i + 5;
        if (!a || a >= len || (html[a] != '"' && html[a] != '\''))
            continue;
        if (i > 0 && (isalnum((unsigned char)html[i - 1]) || html[i - 1] == '-'))
            continue;                    /* data-src=, xhref=: not ours */
        char quote = html[a++];
        const char *end = memchr(html + a, quote, len - a);
        if (!end)
            break;
        size_t vlen = (size_t)(end - (html + a));
        if (vlen > plen && memcmp(html + a, prefix, plen) == 0) {
            const char *rel = html + a + plen;
            size_t n = strcspn(rel, "?#");
            if (n > vlen - plen)
                n = vlen - plen;
            if (n > 0) {
                fn(rel, n, arg);
                found++;
            }
        }
        i = (size_t)(end - html);
    }
    return found;
}

/* The smoke check of an output: its index.html is at the top, and every
 * asset it asks for under the runner's prefix is in the output.  What
 * fails is a problem (the build succeeds with problems): a person should
 * look before families meet a blank page. */
struct smoke {
    struct upload *up;
    int missing;
};

static void smoke_ref(const char *rel, size_t n, void *arg)
{
    struct smoke *sm = arg;
    struct upload *up = sm->up;

    for (size_t i = 0; i < up->nfiles; i++)
        if (strlen(up->files[i].rel) == n && memcmp(up->files[i].rel, rel, n) == 0)
            return;
    if (sm->missing++ < SKIP_LOG_MAX)
        task_problem(up->b->t, "index.html asks for %.*s, which the build did not produce",
                     (int)(n > 300 ? 300 : n), rel);
}

static void smoke_check(struct upload *up)
{
    struct build *b = up->b;
    char *path = util_asprintf("%s/index.html", up->src_dir);
    char prefix[80], *html = NULL;
    struct smoke sm = { up, 0 };
    FILE *f = path ? fopen(path, "re") : NULL;
    size_t len = 0;
    bool at_top = false;

    for (size_t i = 0; i < up->nfiles && !at_top; i++)
        at_top = strcmp(up->files[i].rel, "index.html") == 0;
    if (!at_top || !f) {
        task_problem(b->t, "the output has no index.html at its top: a study's page has"
                     " nothing to serve");
        goto out;
    }
    /* Bounded: a page that asks for its assets is small. */
    if (!(html = malloc(SMOKE_INDEX_MAX)) || (len = fread(html, 1, SMOKE_INDEX_MAX, f)) == 0)
        goto out;
    snprintf(prefix, sizeof prefix, "/runners/%s/", b->cache_key);
    size_t refs = up_index_refs(html, len, prefix, smoke_ref, &sm);
    if (sm.missing > SKIP_LOG_MAX)
        task_problem(b->t, "and %d more assets index.html asks for are missing",
                     sm.missing - SKIP_LOG_MAX);
    task_log(b->t, "smoke check: index.html asks for %zu asset%s under %s, %d missing",
             refs, refs == 1 ? "" : "s", prefix, sm.missing);
out:
    if (f)
        fclose(f);
    free(html);
    free(path);
}

static void walk_done(struct upload *up)
{
    struct build *b = up->b;

    if (up->skipped)
        task_log(b->t, "%zu entries of the output were not regular files and were skipped",
                 up->skipped);
    if (up->nfiles == 0) {
        up_fail(up, "the build's output %s holds no files", up->src_dir);
        return;
    }
    task_log(b->t, "the output has %zu files, %" PRIu64 " bytes", up->nfiles, up->bytes);
    smoke_check(up);
    up_run_phase(up, UP_PUT);
}

/* One slice of the walk of the output folder: links and special files are
 * skipped (a build must not publish what a link points at), nothing is
 * followed. */
static void on_walk(evutil_socket_t fd, short what, void *arg)
{
    struct upload *up = arg;
    struct build *b = up->b;
    uint64_t max_files = (uint64_t)the_builder->app->cfg->max_archive_files;
    int n = 0;

    while (up->depth > 0 && n < WALK_TURN) {
        struct walkdir *top = &up->stack[up->depth - 1];
        struct dirent *de = readdir(top->d);
        struct stat sb;
        char *rel;

        if (!de) {
            closedir(top->d);
            free(top->rel);
            up->depth--;
            continue;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        rel = top->rel[0] ? util_asprintf("%s/%s", top->rel, de->d_name) : strdup(de->d_name);
        if (!rel) {
            up_fail(up, "out of memory");
            return;
        }
        if (fstatat(dirfd(top->d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            up_fail(up, "cannot read the output entry %s: %s", rel, strerror(errno));
            free(rel);
            return;
        }
        if (S_ISDIR(sb.st_mode)) {
            int dfd;
            DIR *d;

            if (up->depth == WALK_DEPTH) {
                up_fail(up, "the output is nested deeper than %d folders", WALK_DEPTH);
                free(rel);
                return;
            }
            dfd = openat(dirfd(top->d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                    O_CLOEXEC);
            d = dfd >= 0 ? fdopendir(dfd) : NULL;
            if (!d) {
                if (dfd >= 0)
                    close(dfd);
                up_fail(up, "cannot open the output folder %s: %s", rel, strerror(errno));
                free(rel);
                return;
            }
            up->stack[up->depth].d = d;
            up->stack[up->depth].rel = rel;
            up->depth++;
            continue;
        }
        if (!S_ISREG(sb.st_mode)) {
            if (up->skipped++ < SKIP_LOG_MAX)
                task_log(b->t, "skipped %s: not a regular file", rel);
            free(rel);
            continue;
        }
        {
            char *key = util_asprintf("%s%s", up->cache_prefix, rel);
            bool ok = key && storage_key_valid(key);
            free(key);
            if (!ok) {
                up_fail(up, "the output file name \"%.200s\" cannot be stored", rel);
                free(rel);
                return;
            }
        }
        if (up->nfiles >= max_files) {
            up_fail(up, "the output has more than MAX_ARCHIVE_FILES=%" PRIu64 " files", max_files);
            free(rel);
            return;
        }
        if (up_add(up, rel, (int64_t)sb.st_size, storage_content_type(rel)) < 0) {
            up_fail(up, "out of memory");
            free(rel);
            return;
        }
        free(rel);
        if (up->bytes > (uint64_t)the_builder->app->cfg->max_archive_bytes) {
            up_fail(up, "the output is larger than MAX_ARCHIVE_BYTES=%ld",
                    the_builder->app->cfg->max_archive_bytes);
            return;
        }
        if (up->bytes > (uint64_t)the_builder->app->cfg->build_max_output_mb << 20) {
            up_fail(up, "the output is larger than BUILD_MAX_OUTPUT_MB=%ld",
                    the_builder->app->cfg->build_max_output_mb);
            return;
        }
    }
    if (up->depth > 0) {
        /* A zero timeout goes through the poll: other events run first. */
        struct timeval zero = { 0, 0 };
        evtimer_add(up->walk_ev, &zero);
        return;
    }
    walk_done(up);
}

struct upload *up_new(struct build *b)
{
    struct upload *up = calloc(1, sizeof *up);
    int n = (int)the_builder->app->cfg->build_upload_concurrency;

    if (!up)
        return NULL;
    up->b = b;
    up->nslots = n;
    up->slots = calloc((size_t)n, sizeof *up->slots);
    up->cache_prefix = util_asprintf("runners/%s/", b->cache_key);
    if (!up->slots || !up->cache_prefix) {
        up_free(up);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        up->slots[i].up = up;
        up->slots[i].item = -1;
        if (!(up->slots[i].timer = evtimer_new(the_builder->app->base, on_op_timer, &up->slots[i]))) {
            up_free(up);
            return NULL;
        }
    }
    return up;
}

void up_from_manifest(struct upload *up, const json_t *manifest)
{
    size_t i;
    json_t *f;

    up->cached = true;
    /* Its index.html files: what a study's page serves, and what the
     * upload put last, so their presence means the rest was put too.  A
     * lost runner (storage emptied by hand) is built again. */
    json_array_foreach(manifest, i, f) {
        const char *path = json_string_value(json_object_get(f, "path"));
        if (!path) {
            up_fail(up, "the cached runner's manifest is unreadable");
            return;
        }
        if (is_index_html(path) && up_add(up, path, (int64_t)json_integer_value(
                                              json_object_get(f, "size")),
                                          storage_content_type(path)) < 0) {
            up_fail(up, "out of memory");
            return;
        }
    }
    if (up->nfiles == 0) {
        up_fail(up, "the cached runner has no index.html");
        return;
    }
    task_log(up->b->t, "the runner (%zu files) was built before: it is served from %s; "
             "nothing to copy", json_array_size(manifest), up->cache_prefix);
    up_run_phase(up, UP_CHECK);
}

void up_from_output(struct upload *up, char *src_dir)
{
    struct task *t = up->b->t;

    up->src_dir = src_dir;
    {
        int dfd = open(up->src_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

        up->walk_ev = evtimer_new(the_builder->app->base, on_walk, up);
        up->stack[0].rel = strdup("");
        if (!d || !up->walk_ev || !up->stack[0].rel) {
            if (d)
                closedir(d);
            else if (dfd >= 0)
                close(dfd);
            free(up->stack[0].rel);
            up->stack[0].rel = NULL;
            up_fail(up, "cannot read the output %s: %s", up->src_dir, strerror(errno));
            return;
        }
        up->stack[0].d = d;
        up->depth = 1;
    }
    task_log(t, "publishing %s to %s", up->src_dir, up->cache_prefix);
    on_walk(-1, 0, up);
}

/* ---- cleanup_runners: shared runners no study serves any more -------------------
 * A runner stays while any study serves it: while it is the runner of a
 * study's latest successful build of a mode (deploy or preview), or a
 * build in progress names it.  Runners that none does and that no build
 * used for RUNNER_SWEEP_DAYS lose their row first (the statement checks
 * all of that again, so a build resolving to the runner meanwhile keeps
 * it: it bumps last_used_at), then their files, one delete at a time.
 * A build resolving to it after the row went builds it again. */
#define RUNNER_SWEEP_DAYS "7"
#define RUNNER_SWEEP_BATCH "100"        /* runners per run */

enum rs_state { RS_CHOOSE, RS_DELETE };

static const char *const rs_state_names[] = { [RS_CHOOSE] = "choose", [RS_DELETE] = "delete_files" };

/* The run's data. */
struct runner_sweep {
    struct sched_run *run;      /* borrowed: the run this is the data of */
    struct app *app;            /* borrowed */
    char (*keys)[65];           /* owned: the cache keys of the runners removed */
    json_t **manifests;         /* owned: their files */
    int n;                      /* runners removed */
    int row;                    /* the runner whose files go now */
    size_t file;                /* the next file of it */
    long files, failed;         /* deleted, not deleted */
};

static const struct pg_stmt stmt_sweep_runners = {
    "build_sweep_runners",
    "DELETE FROM runner_builds r WHERE r.cache_key IN ("
    "  SELECT x.cache_key FROM runner_builds x"
    "   WHERE x.last_used_at < now() - interval '" RUNNER_SWEEP_DAYS " days'"
    "     AND NOT EXISTS (SELECT 1 FROM study_builds b WHERE b.cache_key = x.cache_key"
    "                      AND b.settled_at IS NULL)"
    "     AND NOT EXISTS (SELECT 1 FROM study_builds b"
    "          WHERE b.cache_key = x.cache_key AND b.shared AND b.outcome = 'succeeded'"
    "            AND NOT EXISTS (SELECT 1 FROM study_builds n"
    "                 WHERE n.study_id = b.study_id AND n.mode = b.mode"
    "                   AND n.outcome = 'succeeded' AND n.task_id > b.task_id))"
    "   ORDER BY x.last_used_at LIMIT " RUNNER_SWEEP_BATCH " FOR UPDATE SKIP LOCKED)"
    " RETURNING r.cache_key, r.manifest::text",
};

static void sweep_free(struct runner_sweep *sw)
{
    for (int i = 0; i < sw->n; i++)
        json_decref(sw->manifests[i]);
    free(sw->manifests);
    free(sw->keys);
    free(sw);
}

static void on_sweep_deleted(const struct storage_result *res, void *arg)
{
    struct runner_sweep *sw = arg;

    if (res->err) {
        sw->failed++;
        sched_run_log(sw->run, "cannot delete a file of runners/%s/: %s", sw->keys[sw->row],
                      res->error ? res->error : "error");
    } else {
        sw->files++;
    }
    sched_set_state(sw->run, RS_DELETE);   /* the next file */
}

/* Deletes the next file of the current runner, or the next runner's
 * first; when none is left, the run is over. */
static void sweep_next(struct runner_sweep *sw)
{
    while (sw->row < sw->n) {
        json_t *f = json_array_get(sw->manifests[sw->row], sw->file++);

        if (!f) {
            sw->row++;
            sw->file = 0;
            continue;
        }
        const char *path = json_string_value(json_object_get(f, "path"));
        char *obj = path ? util_asprintf("runners/%s/%s", sw->keys[sw->row], path) : NULL;
        struct storage_op *op = obj ? storage_delete(sw->app->storage, obj, on_sweep_deleted,
                                                     sw) : NULL;
        free(obj);
        if (op)
            return;
        sw->failed++;
    }
    if (sw->failed)
        sched_done(sw->run, SCHED_PROBLEMS, "removed %d runner%s no study serves (%ld files); "
                   "%ld files could not be deleted", sw->n, sw->n == 1 ? "" : "s", sw->files,
                   sw->failed);
    else
        sched_done(sw->run, SCHED_SUCCEEDED, "removed %d runner%s no study serves (%ld files)",
                   sw->n, sw->n == 1 ? "" : "s", sw->files);
}

static void on_runners_swept(PGresult *res, void *arg)
{
    struct runner_sweep *sw = arg;
    int n;

    if (!res || !pg_ok(res)) {
        sched_done(sw->run, SCHED_FAILED, "cannot choose the runners to remove: %s",
                   res ? PQresultErrorMessage(res) : "database unreachable");
        return;
    }
    /* The rows are gone already: their files go now, whatever happens. */
    n = PQntuples(res);
    sw->keys = n ? calloc((size_t)n, sizeof *sw->keys) : NULL;
    sw->manifests = n ? calloc((size_t)n, sizeof *sw->manifests) : NULL;
    if (n && (!sw->keys || !sw->manifests)) {
        sched_done(sw->run, SCHED_FAILED, "out of memory: %d runners forgotten, their files "
                   "left in storage", n);
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(sw->keys[i], sizeof sw->keys[i], "%s", PQgetvalue(res, i, 0));
        sw->manifests[i] = json_loads(PQgetvalue(res, i, 1), 0, NULL);
        sched_run_log(sw->run, "runners/%s/: %zu files, served by no study", sw->keys[i],
                      json_array_size(sw->manifests[i]));
    }
    sw->n = n;
    sched_set_state(sw->run, RS_DELETE);
}

static void sweep_step(struct sched_run *run)
{
    struct runner_sweep *sw = sched_run_data(run);

    switch ((enum rs_state)sched_run_state(run)) {
    case RS_CHOOSE:
        if (!sw->app->storage) {
            sched_done(run, SCHED_SUCCEEDED, "nothing to do: the server has no object storage");
            return;
        }
        if (pg_exec(sw->app->pg, &stmt_sweep_runners, 0, NULL, on_runners_swept, sw) < 0)
            sched_done(run, SCHED_FAILED, "cannot queue the query");
        return;
    case RS_DELETE:
        sweep_next(sw);
        return;
    }
}

static int sweep_open(struct sched_run *run, char *err, size_t errlen)
{
    struct runner_sweep *sw = calloc(1, sizeof *sw);

    if (!sw) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sw->run = run;
    sw->app = sched_run_app(run);
    sched_run_set_data(run, sw);
    return 0;
}

static void sweep_close(struct sched_run *run)
{
    sweep_free(sched_run_data(run));
}

const struct sched_job cleanup_runners_job = {
    .name = "cleanup_runners", .states = rs_state_names, .nstates = RS_DELETE + 1,
    .initial_state = RS_CHOOSE, .open = sweep_open, .step = sweep_step, .close = sweep_close,
};
