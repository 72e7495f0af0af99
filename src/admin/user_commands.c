/* user_commands: the admin socket's user commands: `token create EMAIL`
 * prints a new API token for that user (the way in for the first site
 * admin, and for scripts); `user ...` does what the admin pages' user
 * admin does (search, activate or deactivate, grant or revoke the
 * researcher and site admin roles, reset two-factor) through useradmin's
 * functions, so the rules and user_admin_log are the pages' own. */
#include "config.h"

#include "studyhub/admin/user_commands.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/domain/useradmin.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/server.h"
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

/* ------------------------------------------------------------ user ... */

/* The operator's name in user_admin_log ("operator: studyhubctl"). */
#define USER_CMD_OPERATOR "studyhubctl"
#define USER_CMD_USAGE                                                              \
    "usage: user search [TEXT] | user activate|deactivate USER |"                 \
    " user grant|revoke researcher|site-admin USER | user reset-two-factor USER"   \
    " (USER: email or uuid)"

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s ? s : dflt;
}

/* One account as a line: email, uuid and its flags. */
static void print_user(struct admin_conn *c, const json_t *item)
{
    const json_t *a = json_object_get(item, "attributes");
    admin_printf(c, "%s id=%s active=%s researcher=%s site_admin=%s two_factor=%s"
                 " last_login=%s\n",
                 str_or(json_object_get(a, "email"), "-"),
                 str_or(json_object_get(item, "id"), "-"),
                 json_is_true(json_object_get(a, "is_active")) ? "yes" : "no",
                 json_is_true(json_object_get(a, "is_researcher")) ? "yes" : "no",
                 json_is_true(json_object_get(a, "is_site_admin")) ? "yes" : "no",
                 json_is_true(json_object_get(a, "two_factor_enabled")) ? "yes" : "no",
                 str_or(json_object_get(a, "last_login"), "never"));
}

static json_t *parse_json(const char *text)
{
    return json_loads(text, JSON_DECODE_ANY, NULL);
}

static void user_listed(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res || !pg_ok(res) || PQntuples(res) < 1) {
        admin_finish(c, res ? PQresultErrorMessage(res) : "database unavailable");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 2), "ok") != 0) {
        admin_finish(c, PQgetvalue(res, 0, 3));
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 1))
            continue;
        json_t *item = parse_json(PQgetvalue(res, i, 1));
        if (item)
            print_user(c, item);
        json_decref(item);
    }
    long long total = atoll(PQgetvalue(res, 0, 0));
    admin_printf(c, "%lld account%s%s\n", total, total == 1 ? "" : "s",
                 total > PQntuples(res) ? " (the first 100 listed; search to narrow)" : "");
    admin_finish(c, NULL);
}

static void user_changed(PGresult *res, void *arg)
{
    struct admin_conn *c = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        admin_finish(c, res ? PQresultErrorMessage(res) : "database unavailable");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
        admin_finish(c, PQgetvalue(res, 0, 1));
        return;
    }
    json_t *doc = parse_json(PQgetvalue(res, 0, 3));
    if (doc)
        print_user(c, json_object_get(doc, "data"));
    json_decref(doc);
    admin_finish(c, NULL);
}

/* The site's URL, for the links the statements write (the reset email). */
static void site_base(struct app *app, char *buf, size_t len)
{
    const struct config *cfg = app->cfg;
    if (cfg->base_url && *cfg->base_url)
        snprintf(buf, len, "%s", cfg->base_url);
    else
        snprintf(buf, len, "http://%s:%d", cfg->listen_addr,
                 app->http ? http_server_port(app->http) : (int)cfg->listen_port);
}

/* user search [TEXT] | activate|deactivate USER | grant|revoke ROLE USER |
 * reset-two-factor USER */
static void user_cmd(struct admin_conn *c, int argc, char **argv, struct app *app)
{
    char base[320];
    const char *verb = argc >= 2 ? argv[1] : "";
    const char *attr = NULL;
    bool value = false;
    const char *who = NULL;
    int rc;

    site_base(app, base, sizeof base);
    if (strcmp(verb, "search") == 0 && argc <= 3) {
        const char *q = argc == 3 ? argv[2] : NULL;
        if (q && strlen(q) > USERADMIN_SEARCH_MAX) {
            admin_finish(c, "the search is too long");
            return;
        }
        rc = useradmin_list_exec(app->pg, NULL, USER_CMD_OPERATOR, q, "100", "0", base,
                                 user_listed, c);
    } else if (strcmp(verb, "reset-two-factor") == 0 && argc == 3) {
        rc = useradmin_reset_exec(app->pg, NULL, USER_CMD_OPERATOR, argv[2], base,
                                  user_changed, c);
    } else {
        if ((strcmp(verb, "activate") == 0 || strcmp(verb, "deactivate") == 0) && argc == 3) {
            attr = "is_active";
            value = verb[0] == 'a';
            who = argv[2];
        } else if ((strcmp(verb, "grant") == 0 || strcmp(verb, "revoke") == 0) && argc == 4) {
            if (strcmp(argv[2], "researcher") == 0)
                attr = "is_researcher";
            else if (strcmp(argv[2], "site-admin") == 0)
                attr = "is_site_admin";
            value = verb[0] == 'g';
            who = argv[3];
        }
        if (!attr) {
            admin_finish(c, USER_CMD_USAGE);
            return;
        }
        /* The page's own check of the attributes, then its statement. */
        struct jsonapi_error e;
        json_t *attrs = json_pack("{s:b}", attr, value), *clean = NULL;
        char *text = NULL;
        if (!attrs || useradmin_attrs_check(attrs, &clean, &e) < 0 ||
            !(text = json_dumps(clean, JSON_COMPACT))) {
            json_decref(attrs);
            json_decref(clean);
            admin_finish(c, "out of memory");
            return;
        }
        rc = useradmin_change_exec(app->pg, NULL, USER_CMD_OPERATOR, who, text, base,
                                   user_changed, c);
        free(text);
        json_decref(clean);
        json_decref(attrs);
    }
    if (rc < 0)
        admin_finish(c, "database unavailable");
}

void user_commands_register(struct admin_server *srv)
{
    admin_register(srv, "token",
                   "token create EMAIL: print a new API token for that user",
                   token_cmd);
    admin_register(srv, "user",
                   "user search [TEXT] | activate|deactivate USER | grant|revoke "
                   "researcher|site-admin USER | reset-two-factor USER: the admin "
                   "pages' account actions (USER: email or uuid), logged in user_admin_log",
                   user_cmd);
}
