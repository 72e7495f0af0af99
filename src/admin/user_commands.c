/* user_commands: the admin socket's user commands: `token create EMAIL`
 * prints a new API token for that user (the way in for the first site
 * admin, and for scripts). */
#include "config.h"

#include "studyhub/admin/user_commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/http/auth.h"
#include "studyhub/io/pg.h"

/* An operator's token counts as two-factor verified (while the user has
 * TOTP on): only the server's own user or root reach the admin socket.
 * $4: TOKEN_TTL_DAYS. */
static const struct pg_stmt users_token_create_stmt = {
    "users_token_create",
    "INSERT INTO api_tokens (token_hash, user_id, name, mfa_verified, expires_at)"
    " SELECT $1, u.id, $3, true, now() + make_interval(days => $4::int)"
    "   FROM users u WHERE lower(u.email) = lower($2)"
    " RETURNING user_id",
};

/* A `token create` in flight. */
struct token_cmd {
    struct admin_conn *c;         /* borrowed until admin_finish */
    char key[41];                 /* the new key: printed, never stored */
};

static void token_created(PGresult *res, void *arg)
{
    struct token_cmd *t = arg;

    if (!res)
        admin_finish(t->c, "database unavailable");
    else if (!pg_ok(res))
        admin_finish(t->c, PQresultErrorMessage(res));
    else if (PQntuples(res) != 1)
        admin_finish(t->c, "no user with that email");
    else {
        admin_printf(t->c, "%s\n", t->key);
        admin_finish(t->c, NULL);
    }
    memset(t->key, 0, sizeof t->key);
    free(t);
}

/* token create EMAIL */
static void token_cmd(struct admin_conn *c, int argc, char **argv,
                      struct app *app)
{
    struct token_cmd *t = NULL;
    char hash[65];

    /* argv[0] is the command name itself. */
    if (argc != 3 || strcmp(argv[1], "create") != 0) {
        admin_finish(c, "usage: token create EMAIL");
        goto out;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        admin_finish(c, "out of memory");
        goto out;
    }
    t->c = c;
    auth_token_generate(t->key);
    auth_token_hash(t->key, hash);
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", app->cfg->token_ttl_days);
    const char *p[4] = { hash, argv[2], "studyhubctl", ttl };
    if (pg_exec(app->pg, &users_token_create_stmt, 4, p, token_created, t) != 0) {
        admin_finish(c, "database unavailable");
        goto out;
    }
    t = NULL;
out:
    free(t);
}

void user_commands_register(struct admin_server *srv)
{
    admin_register(srv, "token",
                   "token create EMAIL: print a new API token for that user",
                   token_cmd);
}
