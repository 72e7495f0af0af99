/* task_claim: how a runner takes work: the claim of due rows (FOR UPDATE
 * SKIP LOCKED) into free slots, the timer to the next due row, the
 * notifications that wake it ("tasks") or stop a task ("task_cancel"),
 * and at start the take-back of rows that dead processes of this host
 * held.  The tasks themselves: queue/task.c (task_internal.h). */
#include "studyhub/queue/task_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/proc.h"

#define TASK_CLAIM_MIN_DELAY_MS 200      /* between claims of one runner */

/* $1 kinds, $2 their leases (s), $3 how many, $4 our owner string, $5 the
 * ids this process still holds.  Due queued rows and running rows whose
 * holder's lease ran out, ours included once we let go of them (stopped
 * here while the database was away). */
static const struct pg_stmt sql_claim = {
    "task_claim",
    "WITH k AS (SELECT * FROM unnest($1::text[], $2::int[]) AS k(kind, lease_s)),"
    " c AS (SELECT t.id, t.state AS old_state, t.lease_owner AS old_owner, k.lease_s"
    "       FROM tasks t JOIN k ON k.kind = t.kind"
    "       WHERE (t.state = 'queued' AND t.run_after <= now())"
    "          OR (t.state = 'running' AND t.lease_until < now()"
    "              AND NOT t.id = ANY($5::bigint[]))"
    "       ORDER BY t.run_after, t.id LIMIT $3::int"
    "       FOR UPDATE OF t SKIP LOCKED)"
    " UPDATE tasks t SET state = 'running', lease_owner = $4,"
    "   lease_until = now() + c.lease_s * interval '1 second',"
    "   attempts = t.attempts + 1, started_at = COALESCE(t.started_at, now())"
    " FROM c WHERE t.id = c.id"
    " RETURNING t.id, t.uuid, t.kind, t.subject, t.stage, t.payload::text,"
    "   t.attempts, t.max_attempts, t.cancel_requested, c.old_state, c.old_owner",
};

/* Seconds until the next row could be claimed (NULL: none); $2 the ids
 * this process holds. */
static const struct pg_stmt sql_next_due = {
    "task_next_due",
    "SELECT EXTRACT(EPOCH FROM LEAST("
    "  (SELECT min(run_after) FROM tasks WHERE state = 'queued' AND kind = ANY($1::text[])),"
    "  (SELECT min(lease_until) FROM tasks WHERE state = 'running'"
    "     AND kind = ANY($1::text[]) AND NOT id = ANY($2::bigint[]))) - now())::float8",
};

/* Lease holders of this host and pid namespace ($1 the prefix). */
static const struct pg_stmt sql_local_owners = {
    "task_local_owners",
    "SELECT DISTINCT lease_owner FROM tasks"
    " WHERE state = 'running' AND left(lease_owner, length($1)) = $1",
};

/* Ends the leases of dead local holders so the claim takes their rows. */
static const struct pg_stmt sql_expire = {
    "task_expire",
    "UPDATE tasks SET lease_until = now() - interval '1 second'"
    " WHERE state = 'running' AND lease_owner = ANY($1::text[])",
};

/* "{1,2}": the tasks this process holds (running, or closed with a query
 * still out), which the claim must not take back. */
static char *runner_held_ids(const struct task_runner *r)
{
    const struct task_list *lists[2] = { &r->tasks, &r->closed };
    const struct task_impl *ti;
    char *text = NULL;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    bool first = true;

    if (!f)
        return NULL;
    fputc('{', f);
    for (int i = 0; i < 2; i++)
        TAILQ_FOREACH(ti, lists[i], link) {
            fprintf(f, "%s%lld", first ? "" : ",", (long long)ti->pub.id);
            first = false;
        }
    fputc('}', f);
    fclose(f);
    return text;
}

static void runner_arm_wake(struct task_runner *r, double seconds)
{
    int64_t ms = (int64_t)(seconds * 1000.0);

    if (r->dying || r->draining || !r->started)
        return;
    if (ms < TASK_CLAIM_MIN_DELAY_MS)
        ms = TASK_CLAIM_MIN_DELAY_MS;
    if (ms > (int64_t)r->poll_s * 1000)
        ms = (int64_t)r->poll_s * 1000;
    evtimer_del(r->wake_timer);
    util_timer_ms(r->wake_timer, ms);
}


static void on_next_due(struct task_runner *r, struct task_impl *ti,
                        PGresult *res, void *arg)
{
    double s = r->poll_s;

    if (res && pg_ok(res) && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        s = strtod(PQgetvalue(res, 0, 0), NULL) + 0.05;
    runner_arm_wake(r, s);
}

static void on_claim(struct task_runner *r, struct task_impl *unused,
                     PGresult *res, void *arg)
{
    int limit = (int)(intptr_t)arg;
    int n;
    const char *params[2];
    char *held;

    r->claiming = false;
    if (r->dying)
        return;
    if (!res) {
        runner_arm_wake(r, 1.0);
        return;
    }
    if (!pg_ok(res)) {
        log_error("tasks: claim failed: %s", PQresultErrorMessage(res));
        runner_arm_wake(r, r->poll_s);
        return;
    }
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        const struct task_kind *k = task_runner_kind(r, PQgetvalue(res, i, 2));
        struct task_impl *ti = k ? task_new(r, k, res, i) : NULL;

        if (!ti) {
            /* Its lease runs out and someone takes it again. */
            log_error("tasks: cannot take task %s (kind %s): out of memory",
                      PQgetvalue(res, i, 0), PQgetvalue(res, i, 2));
            continue;
        }
        TAILQ_INSERT_TAIL(&r->tasks, ti, link);
        r->ntasks++;
        util_timer_ms(ti->heartbeat, (int64_t)ti->lease_s * 1000 / 3);
        task_begin(ti, PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
                   PQgetvalue(res, i, 9),
                   PQgetisnull(res, i, 10) ? "-" : PQgetvalue(res, i, 10),
                   PQgetvalue(res, i, 8)[0] == 't');
    }
    if (n == limit || r->claim_again) {
        task_claim_kick(r);
        return;
    }
    held = runner_held_ids(r);
    params[0] = r->kinds_param;
    params[1] = held;
    if (!held || task_runner_exec(r, NULL, &sql_next_due, 2, params, on_next_due, NULL) < 0)
        runner_arm_wake(r, r->poll_s);
    free(held);
}

void task_claim_kick(struct task_runner *r)
{
    const char *params[5];
    char limit[16];
    char *held;
    int free_slots;

    if (!r->started || r->draining || r->dying || r->nkinds == 0)
        return;
    if (r->claiming) {
        r->claim_again = true;
        return;
    }
    free_slots = r->concurrency - (int)r->ntasks;
    if (free_slots <= 0)
        return;     /* a closing task kicks again */
    snprintf(limit, sizeof limit, "%d", free_slots);
    params[0] = r->kinds_param;
    params[1] = r->leases_param;
    params[2] = limit;
    params[3] = r->owner;
    params[4] = held = runner_held_ids(r);
    r->claim_again = false;
    r->claim_sent_ms = util_mono_ms();
    if (!held || task_runner_exec(r, NULL, &sql_claim, 5, params, on_claim,
                             (void *)(intptr_t)free_slots) < 0) {
        free(held);
        runner_arm_wake(r, 1.0);
        return;
    }
    free(held);
    r->claiming = true;
}

void task_claim_on_wake_timer(evutil_socket_t fd, short what, void *arg)
{
    task_claim_kick(arg);
}

/* ---- notifications ----------------------------------------------------------- */

/* "tasks": one was queued or came due; "task_cancel" (payload: its id): a
 * task to stop if it runs here.  A NULL payload follows a (re)subscription:
 * notifications may have been missed, so claim now. */
static void on_notify(const char *channel, const char *payload, void *arg)
{
    struct task_runner *r = arg;
    struct task_impl *ti;

    if (r->dying)
        return;
    if (!payload || strcmp(channel, "tasks") == 0) {
        task_claim_kick(r);
    } else if (strcmp(channel, "task_cancel") == 0) {
        int64_t id = strtoll(payload, NULL, 10);

        TAILQ_FOREACH(ti, &r->tasks, link)
            if (ti->pub.id == id)
                task_note_cancel(ti);
    }
}

static void runner_listen(struct task_runner *r)
{
    if (pg_pool_listen(r->pool, "tasks", on_notify, r) == 0 &&
        pg_pool_listen(r->pool, "task_cancel", on_notify, r) == 0) {
        r->listening = true;
        return;
    }
    pg_pool_unlisten(r->pool, "tasks", on_notify, r);
    log_warn("tasks: cannot LISTEN; polling every %d s", r->poll_s);
}

void task_claim_stop(struct task_runner *r)
{
    if (!r->listening)
        return;
    pg_pool_unlisten(r->pool, "tasks", on_notify, r);
    pg_pool_unlisten(r->pool, "task_cancel", on_notify, r);
    r->listening = false;
}

/* ---- start: take back what dead local processes left ------------------------ */

/* Killed but not yet reaped by its parent (or init), or gone already. */
static bool pid_is_zombie(pid_t pid)
{
    char state;

    if (proc_stat_read(pid, &state, NULL) < 0)
        return errno == ENOENT;
    return state == 'Z' || state == 'X';
}

/* "host/pidns/pid/token": is that process gone?  Only for our host and pid
 * namespace, where the pid means the same process. */
static bool owner_is_dead(const struct task_runner *r, const char *owner)
{
    const char *p = owner + strlen(r->owner_prefix);
    long pid;
    char *end;

    if (strncmp(owner, r->owner_prefix, strlen(r->owner_prefix)) != 0 ||
        strcmp(owner, r->owner) == 0)
        return false;
    pid = strtol(p, &end, 10);
    if (end == p || *end != '/' || pid <= 0)
        return false;
    if (pid == (long)getpid())
        return true;    /* an earlier process that had our pid */
    if (kill((pid_t)pid, 0) < 0)
        return errno == ESRCH;
    return pid_is_zombie((pid_t)pid);
}

static void on_expire(struct task_runner *r, struct task_impl *ti,
                      PGresult *res, void *arg)
{
    if (res && pg_ok(res) && strcmp(PQcmdTuples(res), "0") != 0)
        log_info("tasks: took back %s task%s of a stopped server on this host",
                 PQcmdTuples(res), strcmp(PQcmdTuples(res), "1") ? "s" : "");
    task_claim_kick(r);
}

static void on_local_owners(struct task_runner *r, struct task_impl *ti,
                            PGresult *res, void *arg)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f;
    int dead = 0;

    if (r->dying)
        return;
    if (!res || !pg_ok(res) || PQntuples(res) == 0) {
        task_claim_kick(r);
        return;
    }
    f = open_memstream(&list, &len);
    if (!f) {
        task_claim_kick(r);
        return;
    }
    fputc('{', f);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *o = PQgetvalue(res, i, 0);

        if (!owner_is_dead(r, o)) {
            log_debug("tasks: lease holder %s on this host is alive", o);
            continue;
        }
        /* Owners hold no quotes or backslashes (see runner_identity). */
        fprintf(f, "%s\"%s\"", dead++ ? "," : "", o);
    }
    fputc('}', f);
    fclose(f);
    if (dead == 0 || task_runner_exec(r, NULL, &sql_expire, 1,
                                 (const char *const *)&list, on_expire, NULL) < 0)
        task_claim_kick(r);
    free(list);
}


void task_claim_start(struct task_runner *r)
{
    const char *params[1] = { r->owner_prefix };

    runner_listen(r);
    if (task_runner_exec(r, NULL, &sql_local_owners, 1, params, on_local_owners,
                         NULL) < 0)
        runner_arm_wake(r, 1.0);
    runner_arm_wake(r, r->poll_s);
}
