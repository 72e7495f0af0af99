/* migrate: apply the embedded sql/ migrations at start-up, in order, each in
 * its own transaction, under an advisory lock so concurrent servers apply
 * each exactly once.  Runs before the event loop, so blocking libpq is fine
 * here (and only here). */
#include "config.h"   /* _GNU_SOURCE: pipe2 */

#include "studyhub/io/migrate.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"

/* Session advisory lock key: "StudyHub" in ASCII as a bigint. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_lock(6013560476838425954)"
#define MIGRATE_UNLOCK_SQL "SELECT pg_advisory_unlock(6013560476838425954)"

#define MIGRATE_RETRY_MS 500

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* libpq messages end in a newline and may span lines: make one line. */
static double elapsed_s(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) +
           (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* err = "<what>: <the result's error on one line>". */
static void set_res_err(char *err, size_t errlen, const char *what, const PGresult *res)
{
    char msg[512];

    util_one_line(msg, sizeof msg, PQresultErrorMessage(res));
    set_err(err, errlen, "%s: %s", what, msg);
}

/* NOTICEs ("relation already exists, skipping") would go to stderr raw. */
static void on_notice(void *arg, const PGresult *res)
{
    char msg[512];

    util_one_line(msg, sizeof msg, PQresultErrorMessage(res));
    log_debug("migrate: %s", msg);
}

/* Connects, retrying while PostgreSQL may still be starting. */
static PGconn *connect_wait(const char *conninfo, int wait_s, char *err,
                            size_t errlen)
{
    /* Our defaults come before the expanded conninfo, so it overrides them. */
    static const char *const keys[] = {
        "gssencmode", "connect_timeout", "application_name", "dbname", NULL,
    };
    const char *vals[] = { "disable", "5", "studyhub-migrate", conninfo, NULL };
    struct timespec start;
    bool said = false;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        PGconn *pg = PQconnectdbParams(keys, vals, 1);
        char msg[512];

        if (pg && PQstatus(pg) == CONNECTION_OK)
            return pg;
        util_one_line(msg, sizeof msg, pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        if (elapsed_s(&start) >= wait_s) {
            set_err(err, errlen, "cannot connect to PostgreSQL within %d s: %s",
                    wait_s, msg);
            return NULL;
        }
        if (!said)
            log_info("migrate: waiting for PostgreSQL: %s", msg);
        said = true;
        nanosleep(&(struct timespec){ 0, MIGRATE_RETRY_MS * 1000000L }, NULL);
    }
}

/* Runs sql; on failure fills err with what, PostgreSQL's message and
 * SQLSTATE.  Accepts an empty query (a file of comments only). */
static int exec_ok(PGconn *pg, const char *sql, const char *what, char *err,
                   size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
        st != PGRES_EMPTY_QUERY) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        char msg[512];

        util_one_line(msg, sizeof msg, res ? PQresultErrorMessage(res) : PQerrorMessage(pg));
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            snprintf(msg, sizeof msg, "COPY is not supported in migrations");
        set_err(err, errlen, "%s: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "",
                state ? state : "", state ? ")" : "");
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/* Applies one migration in its own transaction and records it. */
static int apply_one(PGconn *pg, const struct migration *m, char *err,
                     size_t errlen)
{
    char what[256];
    char version[16];
    const char *params[2] = { version, m->name };
    PGresult *res = NULL;
    struct timespec start;
    int rc = -1;

    clock_gettime(CLOCK_MONOTONIC, &start);
    snprintf(what, sizeof what, "migration %s", m->name);
    snprintf(version, sizeof version, "%d", m->version);
    if (exec_ok(pg, "BEGIN", what, err, errlen) < 0)
        goto out;
    if (exec_ok(pg, m->sql, what, err, errlen) < 0)
        goto out;
    /* A COMMIT inside the file would leave part of it applied unrecorded. */
    if (PQtransactionStatus(pg) != PQTRANS_INTRANS) {
        set_err(err, errlen, "%s: must not end its transaction (no BEGIN/COMMIT "
                "in migration files)", what);
        goto out;
    }
    res = PQexecParams(pg, "INSERT INTO schema_migrations (version, name) "
                       "VALUES ($1::int, $2)", 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char rec[300];

        snprintf(rec, sizeof rec, "%s: recording it", what);
        set_res_err(err, errlen, rec, res);
        goto out;
    }
    if (exec_ok(pg, "COMMIT", what, err, errlen) < 0)
        goto out;
    log_info("migrate: applied %s in %.0f ms", m->name, elapsed_s(&start) * 1000);
    rc = 0;
out:
    PQclear(res);
    if (rc < 0 && PQtransactionStatus(pg) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(pg, "ROLLBACK");

        PQclear(rb);
    }
    return rc;
}

/* The live text of the SQL functions (sql/functions/), applied after the
 * migrations at every start, in one transaction: CREATE OR REPLACE is
 * idempotent, and a function edited by hand goes back to its text.  A
 * server whose binary knows fewer migrations than the one that applied
 * them last leaves them alone, so an old server restarted during a
 * rolling upgrade does not put old functions back. */
static int apply_functions(PGconn *pg, int known_max, char *err, size_t errlen)
{
    char version[16];
    const char *params[1] = { version };
    PGresult *res = NULL;
    struct timespec start;
    int n = 0, rc = -1;

    clock_gettime(CLOCK_MONOTONIC, &start);
    snprintf(version, sizeof version, "%d", known_max);
    if (exec_ok(pg, "CREATE TABLE IF NOT EXISTS schema_functions ("
                "id int PRIMARY KEY CHECK (id = 1), migration int NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_functions", err, errlen) < 0)
        return -1;
    res = PQexecParams(pg, "SELECT migration FROM schema_functions WHERE migration > $1::int",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_res_err(err, errlen, "reading schema_functions", res);
        goto out;
    }
    if (PQntuples(res) > 0) {
        log_warn("migrate: SQL functions left as a newer server set them (it knows "
                 "migration %s, this binary %d)", PQgetvalue(res, 0, 0), known_max);
        rc = 0;
        goto out;
    }
    PQclear(res);
    res = NULL;
    /* Bodies are checked when called, not here: one file may call a
     * function of a file applied after it. */
    if (exec_ok(pg, "BEGIN", "SQL functions", err, errlen) < 0 ||
        exec_ok(pg, "SET LOCAL check_function_bodies = off", "SQL functions", err, errlen) < 0)
        goto out;
    for (const struct migration *f = sql_functions; f->name; f++, n++) {
        char what[256];

        snprintf(what, sizeof what, "sql/functions/%s.sql", f->name);
        if (exec_ok(pg, f->sql, what, err, errlen) < 0)
            goto out;
    }
    res = PQexecParams(pg, "INSERT INTO schema_functions (id, migration) VALUES (1, $1::int) "
                       "ON CONFLICT (id) DO UPDATE SET migration = EXCLUDED.migration, "
                       "applied_at = now()", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_res_err(err, errlen, "recording the SQL functions", res);
        goto out;
    }
    if (exec_ok(pg, "COMMIT", "SQL functions", err, errlen) < 0)
        goto out;
    log_info("migrate: SQL functions applied (%d files) in %.0f ms", n,
             elapsed_s(&start) * 1000);
    rc = 0;
out:
    PQclear(res);
    if (rc < 0 && PQtransactionStatus(pg) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(pg, "ROLLBACK");

        PQclear(rb);
    }
    return rc;
}

/* The embedded table must be strictly increasing, or a duplicate number
 * would be skipped silently as "already applied". */
static int check_table(char *err, size_t errlen)
{
    for (const struct migration *m = migrations; m->name; m++) {
        if (m->version <= 0 || (m != migrations && m->version <= m[-1].version)) {
            set_err(err, errlen, "migration %s: version %d is not above the "
                    "previous one", m->name, m->version);
            return -1;
        }
    }
    return 0;
}

static bool is_applied(const PGresult *res, int version)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (atoi(PQgetvalue(res, i, 0)) == version)
            return true;
    return false;
}

int migrate_apply(const char *conninfo, int wait_s, char *err, size_t errlen)
{
    PGconn *pg = NULL;
    PGresult *done = NULL;
    int applied = 0;
    int rc = -1;
    int known_max = 0;

    if (check_table(err, errlen) < 0)
        goto out;
    pg = connect_wait(conninfo ? conninfo : "", wait_s, err, errlen);
    if (!pg)
        goto out;
    PQsetNoticeReceiver(pg, on_notice, NULL);
    /* Serialises servers starting together; released by unlock or close. */
    if (exec_ok(pg, MIGRATE_LOCK_SQL, "taking the migration lock", err, errlen) < 0)
        goto out;
    if (exec_ok(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version int PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_migrations", err, errlen) < 0)
        goto out;
    done = PQexec(pg, "SELECT version FROM schema_migrations ORDER BY version");
    if (PQresultStatus(done) != PGRES_TUPLES_OK) {
        set_res_err(err, errlen, "reading schema_migrations", done);
        goto out;
    }
    for (const struct migration *m = migrations; m->name; m++) {
        known_max = m->version;
        if (is_applied(done, m->version))
            continue;
        if (apply_one(pg, m, err, errlen) < 0)
            goto out;
        applied++;
    }
    if (PQntuples(done) > 0 &&
        atoi(PQgetvalue(done, PQntuples(done) - 1, 0)) > known_max)
        log_warn("migrate: the database has migration %s, newer than this "
                 "binary knows (%d)", PQgetvalue(done, PQntuples(done) - 1, 0),
                 known_max);
    if (applied == 0)
        log_info("migrate: schema up to date");
    if (apply_functions(pg, known_max, err, errlen) < 0)
        goto out;
    rc = applied;
out:
    PQclear(done);
    if (pg) {
        PGresult *res = PQexec(pg, MIGRATE_UNLOCK_SQL);

        PQclear(res);
        PQfinish(pg);
    }
    return rc;
}

/* ---- in a child ------------------------------------------------------------ */

struct migrate_child {
    pid_t pid;                  /* the child, until reaped (0 after) */
    int fd;                     /* owned: read end of the result pipe */
    struct event *ev;           /* owned: fd readable */
    migrate_done_fn done;       /* borrowed */
    void *arg;                  /* borrowed */
    char buf[sizeof(int) + 1024];   /* the result: n, then the error text */
    size_t len;
};

static void child_reap(struct migrate_child *mc)
{
    int status;

    if (mc->pid > 0) {
        while (waitpid(mc->pid, &status, 0) < 0 && errno == EINTR)
            ;
        mc->pid = 0;
    }
}

static void on_child_result(evutil_socket_t fd, short what, void *arg)
{
    struct migrate_child *mc = arg;
    ssize_t r = read(fd, mc->buf + mc->len, sizeof mc->buf - 1 - mc->len);
    int n = -1;

    (void)what;
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r > 0) {
        mc->len += (size_t)r;
        if (mc->len < sizeof mc->buf - 1)
            return;   /* until EOF (or full) */
    }
    event_del(mc->ev);
    child_reap(mc);    /* the pipe closed: the child has exited */
    mc->buf[mc->len] = '\0';
    if (mc->len >= sizeof n)
        memcpy(&n, mc->buf, sizeof n);
    mc->done(n, mc->len > sizeof n ? mc->buf + sizeof n
                : mc->len == sizeof n ? "" : "the migration process died",
             mc->arg);
}

struct migrate_child *migrate_start(struct event_base *base, const char *conninfo,
                                    int wait_s, migrate_done_fn done, void *arg)
{
    struct migrate_child *mc = calloc(1, sizeof *mc);
    int p[2];

    if (!mc)
        return NULL;
    if (pipe2(p, O_CLOEXEC) < 0) {
        free(mc);
        return NULL;
    }
    mc->done = done;
    mc->arg = arg;
    mc->fd = p[0];
    mc->ev = event_new(base, p[0], EV_READ | EV_PERSIST, on_child_result, mc);
    mc->pid = mc->ev ? fork() : -1;
    if (mc->pid == 0) {
        /* The child: blocking libpq is fine here; _exit skips the
         * parent's atexit work (and the sanitizers' leak report). */
        char err[1024] = "";
        int n = migrate_apply(conninfo, wait_s, err, sizeof err);
        char out[sizeof(int) + sizeof err];
        size_t len = sizeof n + strlen(err);

        memcpy(out, &n, sizeof n);
        memcpy(out + sizeof n, err, strlen(err));
        close(p[0]);
        if (write(p[1], out, len) < 0)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    if (mc->pid < 0 || event_add(mc->ev, NULL) < 0) {
        mc->pid = mc->pid > 0 ? mc->pid : 0;
        migrate_child_free(mc);
        return NULL;
    }
    return mc;
}

void migrate_child_free(struct migrate_child *mc)
{
    if (!mc)
        return;
    if (mc->pid > 0)
        kill(mc->pid, SIGKILL);
    child_reap(mc);
    if (mc->ev)
        event_free(mc->ev);
    close(mc->fd);
    free(mc);
}
