/* erase: `studyhubctl erase child|account ...` (erase.h). */
#include "config.h"

#include "studyhub/admin/erase.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/io/pg.h"

/* $1 child uuid (text, checked here).  Columns: verdict, detail, erasure,
 * report; no row when there is no such child. */
static const struct pg_stmt erase_child_stmt = {
    "admin_erase_child",
    "SELECT e.verdict, e.detail, e.erasure, e.report FROM children c,"
    "       family_erase(c.user_id, c.uuid, 'admin') e"
    " WHERE c.uuid::text = lower($1) AND c.erased_at IS NULL",
};

/* $1 email or user uuid. */
static const struct pg_stmt erase_account_stmt = {
    "admin_erase_account",
    "SELECT e.verdict, e.detail, e.erasure, e.report FROM users u,"
    "       family_erase(u.id, NULL, 'admin') e"
    " WHERE (u.uuid::text = lower($1) OR lower(u.email) = lower($1)) AND u.erased_at IS NULL",
};

static void erased(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res || !pg_ok(res)) {
        admin_finish(c, res ? PQresultErrorMessage(res) : "database unavailable");
        return;
    }
    if (PQntuples(res) != 1) {
        admin_finish(c, "no such child or account");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
        admin_finish(c, PQgetvalue(res, 0, 1));
        return;
    }
    admin_printf(c, "erasure %s\n%s\n", PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3));
    admin_finish(c, NULL);
}

static void erase_cmd(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    const struct pg_stmt *stmt;

    if (argc != 3 || (strcmp(argv[1], "child") != 0 && strcmp(argv[1], "account") != 0)) {
        admin_finish(c, "usage: erase child CHILD_UUID | erase account EMAIL|USER_UUID");
        return;
    }
    stmt = strcmp(argv[1], "child") == 0 ? &erase_child_stmt : &erase_account_stmt;
    const char *params[] = { argv[2] };
    if (pg_exec(app->pg, stmt, 1, params, erased, c) < 0)
        admin_finish(c, "database unavailable");
}

void erase_admin_register(struct admin_server *srv)
{
    admin_register(srv, "erase",
                   "erase child CHILD_UUID | erase account EMAIL|USER_UUID: erase as the "
                   "family could (a report is emailed to the family)",
                   erase_cmd);
}
