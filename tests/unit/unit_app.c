/* unit_app: the handler tests' harness (see unit_app.h). */
#include "unit_app.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/log.h"
#include "studyhub/core/metrics.h"
#include "studyhub/core/reap.h"
#include "studyhub/domain/participate_runner.h"
#include "studyhub/domain/studies.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/migrate.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/redis.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "unit_loop.h"
#include "unit_main.h"

#define REPLY_WAIT_S 20          /* one request, on a loaded machine */
/* Sessions and login counters go to TEST_REDIS_DB (tools/test gives each
 * build its own: user ids repeat across the builds' databases), else 8:
 * clear of the e2e servers' 0 and check_redis's 9. */
static int redis_db = 8;

static char db_url[512];         /* the build's database */
static char admin_url[512];      /* TEST_DATABASE_URL */
static char redis_url[256];
static const char *redis_port, *redis_password;
static int serial;               /* unique names within the program */

/* ---- the database: the build's, migrated by the first program ----------- */

/* Every program of a build shares TEST_DATABASE_URL's database: a copy of
 * a migrated template per program cost 0.7 to 1.8 s (CREATE DATABASE
 * copies 11 MB and checkpoints), migrating it when it is already current
 * about 0.1 s.  So the tests keep to the rows they made: unique names,
 * counts of their own users' and studies' rows, never of a whole table. */
static int db_prepare(void)
{
    char err[512] = "";

    snprintf(db_url, sizeof db_url, "%s", admin_url);
    log_set_level(LOG_WARN);        /* not a line per migration */
    /* Under migrate's own advisory lock; applies nothing when current
     * (the SQL functions are written again, in one transaction). */
    if (migrate_apply(db_url, 10, err, sizeof err) < 0) {
        fprintf(stderr, "unit_app: cannot migrate %s: %s\n", db_url, err);
        return -1;
    }
    return 0;
}

const char *unit_app_db_url(void)
{
    return db_url;
}

int unit_app_main(const char *name, Suite *s)
{
    const char *url = getenv("TEST_DATABASE_URL");

    redis_port = getenv("TEST_REDIS_PORT");
    redis_password = getenv("TEST_REDIS_PASSWORD");
    if (!url || !*url || !redis_port || !*redis_port || !redis_password) {
        fprintf(stderr, "%s: TEST_DATABASE_URL, TEST_REDIS_PORT or TEST_REDIS_PASSWORD"
                " is not set (tools/test sets them)\n", name);
        srunner_free(srunner_create(s));   /* frees the suite */
        return 77;              /* automake's SKIP: only outside tools/test */
    }
    snprintf(admin_url, sizeof admin_url, "%s", url);
    if (getenv("TEST_REDIS_DB") && *getenv("TEST_REDIS_DB"))
        redis_db = atoi(getenv("TEST_REDIS_DB"));
    snprintf(redis_url, sizeof redis_url, "redis://:%s@127.0.0.1:%s/%d", redis_password,
             redis_port, redis_db);
    if (db_prepare() < 0) {
        srunner_free(srunner_create(s));
        return EXIT_FAILURE;
    }
    return unit_run(s);
}

/* ---- the app ---------------------------------------------------------- */

static const char *const *extra_env;

static const char *table_getenv(const char *name, void *arg)
{
    static const char *const fixed[] = {
        "LISTEN_ADDR", "127.0.0.1",
        "LISTEN_PORT", "0",
        "LOG_LEVEL", "error",
        "PG_POOL_SIZE", "2",
        "ADMIN_SOCKET", "/nonexistent/unit.sock",
        "TOTP_SECRET_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        NULL,
    };

    for (const char *const *e = extra_env; e && *e; e += 2)
        if (strcmp(e[0], name) == 0)
            return e[1];
    if (strcmp(name, "DATABASE_URL") == 0)
        return db_url;
    if (strcmp(name, "REDIS_URL") == 0)
        return redis_url;
    for (const char *const *e = fixed; *e; e += 2)
        if (strcmp(e[0], name) == 0)
            return e[1];
    return NULL;
}

struct unit_app *unit_app_start(const unit_routes_fn *routes, const char *const *env)
{
    struct unit_app *u = calloc(1, sizeof *u);
    char err[512] = "";

    ck_assert_ptr_nonnull(u);
    extra_env = env;
    ck_assert_msg(config_load(&u->cfg, table_getenv, NULL, err, sizeof err) == 0, "%s", err);
    extra_env = NULL;
    {
        enum log_level level;

        if (log_level_parse(u->cfg.log_level, &level) == 0)
            log_set_level(level);
    }
    u->base = http_event_base_new();
    ck_assert_ptr_nonnull(u->base);
    u->app.base = u->base;
    u->app.cfg = &u->cfg;
    u->app.started = time(NULL);
    u->app.metrics = metrics_new();
    u->router = router_new();
    ck_assert_ptr_nonnull(u->router);
    for (const unit_routes_fn *f = routes; f && *f; f++)
        ck_assert_int_eq((*f)(u->router), 0);
    u->app.router = u->router;
    u->app.http = http_server_new(u->base, &u->cfg, u->router, u->app.metrics, auth_gate,
                                  &u->app);
    ck_assert_ptr_nonnull(u->app.http);
    ck_assert_int_eq(http_server_listen(u->app.http, "127.0.0.1", 0), 0);
    u->port = http_server_port(u->app.http);
    u->app.pg = pg_pool_new(u->base, db_url, (int)u->cfg.pg_pool_size,
                            (int)u->cfg.pg_acquire_timeout_ms, (int)u->cfg.pg_query_timeout_ms);
    u->app.redis = redis_client_new(u->base, u->cfg.redis_host, (int)u->cfg.redis_port,
                                    u->cfg.redis_password, (int)u->cfg.redis_db,
                                    (int)u->cfg.redis_timeout_ms);
    ck_assert_ptr_nonnull(u->app.pg);
    ck_assert_ptr_nonnull(u->app.redis);
    /* As main: the caches kept by NOTIFY (with them off, every request
     * reads the database, which would test less of what runs). */
    ck_assert_int_eq(studies_cache_start(u->app.pg), 0);
    ck_assert_int_eq(auth_cache_start(u->app.pg), 0);
    ck_assert_int_eq(participate_runner_cache_start(u->app.pg), 0);
    u->db = PQconnectdb(db_url);
    ck_assert_msg(PQstatus(u->db) == CONNECTION_OK, "%s", PQerrorMessage(u->db));
    /* As a server some moments after its start: the pool has a connection
     * and Redis is connected (unless the test pointed it elsewhere). */
    bool redis_elsewhere = false;
    for (const char *const *e = env; e && *e; e += 2)
        redis_elsewhere |= strcmp(e[0], "REDIS_URL") == 0;
    for (int i = 0; i < 5000 && !(pg_pool_ready(u->app.pg) &&
                                  (redis_elsewhere || redis_connected(u->app.redis))); i++) {
        struct timeval tv = { 0, 2000 };

        event_base_loopexit(u->base, &tv);
        event_base_dispatch(u->base);
    }
    ck_assert_msg(pg_pool_ready(u->app.pg), "the pool did not connect");
    return u;
}

static void reply_clear(struct unit_reply *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

void unit_app_stop(struct unit_app *u)
{
    reply_clear(&u->reply);
    free(u->admin_answer);
    admin_server_free(u->app.admin);
    if (u->admin_dir[0]) {
        char path[96];

        snprintf(path, sizeof path, "%s/admin.sock", u->admin_dir);
        unlink(path);
        rmdir(u->admin_dir);
    }
    http_server_free(u->app.http);
    /* A test's runner and scheduler (as main: before the pool and Redis). */
    task_runner_free(u->app.tasks);
    sched_free(u->app.sched);
    redis_client_free(u->app.redis);
    studies_cache_stop();
    auth_cache_stop();
    participate_runner_cache_stop();
    pg_pool_free(u->app.pg);
    reap_flush(u->base);
    router_free(u->router);
    metrics_free(u->app.metrics);
    unit_loop_free(u->base);
    PQfinish(u->db);
    config_cleanup(&u->cfg);
    free(u);
}

/* ---- the client --------------------------------------------------------- */

struct pending {
    struct unit_app *u;
    bool done;
};

static void on_reply(struct evhttp_request *req, void *arg)
{
    struct pending *p = arg;
    struct unit_reply *r = &p->u->reply;

    p->done = true;
    event_base_loopbreak(p->u->base);
    if (!req || evhttp_request_get_response_code(req) == 0)
        return;
    r->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    r->len = evbuffer_get_length(in);
    r->body = malloc(r->len + 1);
    ck_assert_ptr_nonnull(r->body);
    evbuffer_remove(in, r->body, r->len);
    r->body[r->len] = '\0';
    r->json = json_loadb(r->body, r->len, 0, NULL);

    struct evbuffer *h = evbuffer_new();
    for (struct evkeyval *kv = evhttp_request_get_input_headers(req)->tqh_first; kv;
         kv = kv->next.tqe_next) {
        for (const char *c = kv->key; *c; c++)
            evbuffer_add_printf(h, "%c", tolower((unsigned char)*c));
        evbuffer_add_printf(h, ": %s\n", kv->value);
    }
    size_t hl = evbuffer_get_length(h);
    r->headers = malloc(hl + 1);
    ck_assert_ptr_nonnull(r->headers);
    evbuffer_remove(h, r->headers, hl);
    r->headers[hl] = '\0';
    evbuffer_free(h);
}

static enum evhttp_cmd_type method_of(const char *m)
{
    static const struct { const char *name; enum evhttp_cmd_type t; } map[] = {
        { "GET", EVHTTP_REQ_GET }, { "POST", EVHTTP_REQ_POST }, { "PUT", EVHTTP_REQ_PUT },
        { "PATCH", EVHTTP_REQ_PATCH }, { "DELETE", EVHTTP_REQ_DELETE },
        { "HEAD", EVHTTP_REQ_HEAD }, { "OPTIONS", EVHTTP_REQ_OPTIONS },
    };

    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, m) == 0)
            return map[i].t;
    ck_abort_msg("unknown method %s", m);
    return EVHTTP_REQ_GET;
}

const struct unit_reply *unit_req_h(struct unit_app *u, const struct unit_user *who,
                                    const char *method, const char *path,
                                    const char *headers, const char *body)
{
    struct pending p = { u, false };
    struct evhttp_connection *conn;
    struct evhttp_request *req;
    struct evkeyvalq *out;
    bool typed = false;

    reply_clear(&u->reply);
    conn = evhttp_connection_base_new(u->base, NULL, "127.0.0.1", (unsigned short)u->port);
    ck_assert_ptr_nonnull(conn);
    evhttp_connection_set_timeout(conn, REPLY_WAIT_S);
    req = evhttp_request_new(on_reply, &p);
    ck_assert_ptr_nonnull(req);
    out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Host", "127.0.0.1");
    evhttp_add_header(out, "Accept", "application/vnd.api+json");
    for (const char *h = headers; h && *h;) {
        const char *nl = strchr(h, '\n');
        size_t n = nl ? (size_t)(nl - h) : strlen(h);
        char line[1024], *colon;

        snprintf(line, sizeof line, "%.*s", (int)n, h);
        colon = strchr(line, ':');
        ck_assert_ptr_nonnull(colon);
        *colon = '\0';
        if (strcasecmp(line, "Content-Type") == 0)
            typed = true;
        if (strcasecmp(line, "Accept") == 0)
            evhttp_remove_header(out, "Accept");
        evhttp_add_header(out, line, colon + 1 + strspn(colon + 1, " "));
        h += n + (nl ? 1 : 0);
    }
    if (who && who->use_session) {
        char cookie[160];

        snprintf(cookie, sizeof cookie, "sessionid=%s; csrftoken=unitcsrf", who->session);
        evhttp_add_header(out, "Cookie", cookie);
        evhttp_add_header(out, "X-CSRFToken", "unitcsrf");
    } else if (who) {
        evhttp_add_header(out, "Authorization", who->token);
    }
    if (body) {
        char n[24];

        if (!typed)
            evhttp_add_header(out, "Content-Type", "application/vnd.api+json");
        /* evhttp adds it only for POST and PUT. */
        snprintf(n, sizeof n, "%zu", strlen(body));
        evhttp_add_header(out, "Content-Length", n);
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    ck_assert_int_eq(evhttp_make_request(conn, req, method_of(method), path), 0);
    while (!p.done)
        if (event_base_dispatch(u->base) < 0)
            break;
    evhttp_connection_free(conn);
    ck_assert_msg(p.done, "%s %s: the loop ended without a reply", method, path);
    return &u->reply;
}

const struct unit_reply *unit_req(struct unit_app *u, const struct unit_user *who,
                                  const char *method, const char *path, const char *body)
{
    return unit_req_h(u, who, method, path, NULL, body);
}

const char *unit_reply_header(const struct unit_reply *r, const char *name)
{
    static char out[1024];
    size_t n = strlen(name);

    for (const char *l = r->headers; l && *l;) {
        const char *nl = strchr(l, '\n');

        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 2;

            snprintf(out, sizeof out, "%.*s", (int)(nl ? nl - v : (long)strlen(v)), v);
            return out;
        }
        if (!nl)
            break;
        l = nl + 1;
    }
    return NULL;
}

json_t *unit_json_at(json_t *root, const char *path)
{
    char key[128];
    json_t *cur = root;

    while (cur && *path) {
        size_t n = strcspn(path, ".");
        char *end;

        snprintf(key, sizeof key, "%.*s", (int)n, path);
        if (json_is_array(cur)) {
            long i = strtol(key, &end, 10);
            cur = *end ? NULL : json_array_get(cur, (size_t)i);
        } else {
            cur = json_object_get(cur, key);
        }
        path += n + (path[n] == '.');
    }
    return cur;
}

const char *unit_json(const struct unit_reply *r, const char *path)
{
    static char out[4096];
    json_t *v = unit_json_at(r->json, path);

    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(out, sizeof out, "%lld", (long long)json_integer_value(v));
        return out;
    }
    if (json_is_true(v))
        return "true";
    if (json_is_false(v))
        return "false";
    if (json_is_null(v))
        return "null";
    if (json_is_real(v)) {
        snprintf(out, sizeof out, "%g", json_real_value(v));
        return out;
    }
    return NULL;
}

bool unit_has_error(const struct unit_reply *r, const char *pointer)
{
    json_t *errs = json_object_get(r->json, "errors");
    size_t i;
    json_t *e;

    json_array_foreach(errs, i, e) {
        const char *p = json_string_value(unit_json_at(e, "source.pointer"));

        if (p && strcmp(p, pointer) == 0)
            return true;
    }
    return false;
}

bool unit_data_has(const struct unit_reply *r, const char *id)
{
    json_t *data = json_object_get(r->json, "data");
    size_t i;
    json_t *e;

    json_array_foreach(data, i, e) {
        const char *v = json_string_value(json_object_get(e, "id"));

        if (v && strcmp(v, id) == 0)
            return true;
    }
    return false;
}

int unit_nerrors(const struct unit_reply *r)
{
    return (int)json_array_size(json_object_get(r->json, "errors"));
}

/* ---- SQL and fixtures --------------------------------------------------- */

static const char *vsql(struct unit_app *u, const char *fmt, va_list ap)
{
    static char out[8192];
    char sql[8192];
    PGresult *res;

    vsnprintf(sql, sizeof sql, fmt, ap);
    res = PQexec(u->db, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK ||
                  PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(res));
    snprintf(out, sizeof out, "%s",
             PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return out;
}

const char *unit_sql(struct unit_app *u, const char *fmt, ...)
{
    va_list ap;
    const char *v;

    va_start(ap, fmt);
    v = vsql(u, fmt, ap);
    va_end(ap);
    return v;
}

int64_t unit_sql_int(struct unit_app *u, const char *fmt, ...)
{
    va_list ap;
    const char *v;

    va_start(ap, fmt);
    v = vsql(u, fmt, ap);
    va_end(ap);
    return strtoll(v, NULL, 10);
}

/* SET session:<sid> in Redis, as a login would (the value says when it
 * ends, so servers keep it). */
static void session_put(struct unit_user *p, int epoch, bool mfa)
{
    redisContext *c = redisConnect("127.0.0.1", atoi(redis_port));
    redisReply *r;

    ck_assert_msg(c && !c->err, "redis: %s", c ? c->errstr : "out of memory");
    r = redisCommand(c, "AUTH %s", redis_password);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "redis AUTH failed");
    freeReplyObject(r);
    r = redisCommand(c, "SELECT %d", redis_db);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "redis SELECT failed");
    freeReplyObject(r);
    r = redisCommand(c, "SET session:%s %lld:%d:%d:%lld EX 3600", p->session,
                     (long long)p->id, epoch, mfa ? 1 : 0, (long long)time(NULL) + 3600);
    ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "redis SET failed");
    freeReplyObject(r);
    redisFree(c);
}

struct unit_user *unit_user(struct unit_app *u, const char *name, int flags)
{
    struct unit_user *p;
    char hex[41];
    int n = ++serial;

    ck_assert_int_lt(u->nusers, UNIT_MAX_USERS);
    p = &u->users[u->nusers++];
    memset(p, 0, sizeof *p);
    snprintf(p->email, sizeof p->email, "%s-%d-%d@example.test", name, (int)getpid(), n);
    p->id = unit_sql_int(u, "INSERT INTO users (email, given_name, is_researcher, is_site_admin)"
                         " VALUES ('%s', '%s', %s, %s) RETURNING id", p->email, name,
                         flags & (UNIT_RESEARCHER | UNIT_SITE_ADMIN) ? "true" : "false",
                         flags & UNIT_SITE_ADMIN ? "true" : "false");
    snprintf(p->uuid, sizeof p->uuid, "%s",
             unit_sql(u, "SELECT uuid FROM users WHERE id = %lld", (long long)p->id));
    snprintf(hex, sizeof hex, "%08x%08x%08x%08x%08x", (unsigned)getpid(), (unsigned)n,
             (unsigned)random(), (unsigned)random(), (unsigned)p->id);
    snprintf(p->token, sizeof p->token, "Token %s", hex);
    unit_sql(u, "INSERT INTO api_tokens (token_hash, user_id, mfa_verified)"
             " VALUES (encode(sha256('%s'::bytea), 'hex'), %lld, %s)", hex, (long long)p->id,
             flags & UNIT_NO_MFA ? "false" : "true");
    memcpy(p->session, hex, 40);
    memcpy(p->session + 40, hex, 24);       /* 64 hex digits */
    p->session[64] = '\0';
    session_put(p, 0, !(flags & UNIT_NO_MFA));
    return p;
}

int64_t unit_lab(struct unit_app *u, const char *name, char *uuid)
{
    int64_t id = unit_sql_int(u, "INSERT INTO labs (name, approved_to_test) VALUES"
                              " ('%s-%d-%d', true) RETURNING id", name, (int)getpid(),
                              ++serial);

    if (uuid)
        snprintf(uuid, 37, "%s", unit_sql(u, "SELECT uuid FROM labs WHERE id = %lld",
                                          (long long)id));
    return id;
}

void unit_lab_member(struct unit_app *u, int64_t lab, const struct unit_user *who,
                     const char *role)
{
    unit_sql(u, "INSERT INTO lab_members (lab_id, user_id, role) VALUES (%lld, %lld, '%s')",
             (long long)lab, (long long)who->id, role);
}

int64_t unit_study(struct unit_app *u, int64_t lab, const char *state, bool public_,
                   char *uuid)
{
    int64_t id = unit_sql_int(
        u, "INSERT INTO studies (name, lab_id, state, public, structure, exit_url,"
        " contact_info, min_age_months, max_age_years) VALUES ('Study %d', %lld, '%s', %s,"
        " '{\"frames\": {\"a\": {\"kind\": \"exp-lookit-exit-survey\"}}, \"sequence\": [\"a\"]}',"
        " 'https://example.test/exit/', 'Jane Smith', 6, 3) RETURNING id", ++serial,
        (long long)lab, state, public_ ? "true" : "false");

    if (uuid)
        snprintf(uuid, 37, "%s", unit_sql(u, "SELECT uuid FROM studies WHERE id = %lld",
                                          (long long)id));
    return id;
}

void unit_study_member(struct unit_app *u, int64_t study, const struct unit_user *who,
                       const char *grp)
{
    unit_sql(u, "INSERT INTO study_members (study_id, user_id, grp) VALUES (%lld, %lld, '%s')",
             (long long)study, (long long)who->id, grp);
}

int64_t unit_child(struct unit_app *u, const struct unit_user *who, const char *name,
                   int age_days, char *uuid)
{
    int64_t id = unit_sql_int(u, "INSERT INTO children (user_id, given_name, birthday, gender)"
                              " VALUES (%lld, '%s', current_date - %d, 'f') RETURNING id",
                              (long long)who->id, name, age_days);

    if (uuid)
        snprintf(uuid, 37, "%s", unit_sql(u, "SELECT uuid FROM children WHERE id = %lld",
                                          (long long)id));
    return id;
}

int64_t unit_response(struct unit_app *u, int64_t child, int64_t study, bool preview,
                      bool accepted, char *uuid)
{
    int64_t id = unit_sql_int(u, "INSERT INTO responses (child_id, study_id, is_preview,"
                              " sequence, exp_data) VALUES (%lld, %lld, %s, '[\"a\"]',"
                              " '{\"a\": {}}') RETURNING id", (long long)child,
                              (long long)study, preview ? "true" : "false");

    if (accepted)
        unit_sql(u, "INSERT INTO consent_rulings (response_id, action) VALUES (%lld,"
                 " 'accepted')", (long long)id);
    if (uuid)
        snprintf(uuid, 37, "%s", unit_sql(u, "SELECT uuid FROM responses WHERE id = %lld",
                                          (long long)id));
    return id;
}

/* ---- the admin socket ---------------------------------------------------- */

void unit_admin_start(struct unit_app *u, const unit_admin_reg_fn *reg)
{
    char path[96];

    snprintf(u->admin_dir, sizeof u->admin_dir, "/tmp/unit_app.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(u->admin_dir));
    snprintf(path, sizeof path, "%s/admin.sock", u->admin_dir);
    u->app.admin = admin_server_new(u->base, path, &u->app);
    ck_assert_ptr_nonnull(u->app.admin);
    for (const unit_admin_reg_fn *f = reg; f && *f; f++)
        (*f)(u->app.admin);
}

static void admin_client_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct unit_app *u = arg;

    u->admin_timed_out = true;
    event_base_loopbreak(u->base);
}

struct admin_client {
    struct unit_app *u;
    struct evbuffer *got;
    bool eof;
};

static void admin_client_read(evutil_socket_t fd, short what, void *arg)
{
    struct admin_client *c = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);

    if (n > 0) {
        evbuffer_add(c->got, buf, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    c->eof = true;
    event_base_loopbreak(c->u->base);
}

const char *unit_admin(struct unit_app *u, const char *line)
{
    struct admin_client c = { u, evbuffer_new(), false };
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct event *ev;
    int fd;

    ck_assert_ptr_nonnull(u->app.admin);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/admin.sock", u->admin_dir);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    ck_assert_int_eq(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    ck_assert_int_eq(write(fd, "\n", 1), 1);
    shutdown(fd, SHUT_WR);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ev = event_new(u->base, fd, EV_READ | EV_PERSIST, admin_client_read, &c);
    ck_assert_ptr_nonnull(ev);
    event_add(ev, NULL);
    {
        struct timeval tv = { REPLY_WAIT_S, 0 };
        struct event *deadline = evtimer_new(u->base, admin_client_deadline, u);

        evtimer_add(deadline, &tv);
        while (!c.eof && !u->admin_timed_out)
            event_base_dispatch(u->base);
        event_free(deadline);
    }
    event_free(ev);
    close(fd);
    ck_assert_msg(c.eof, "%s: no answer in %d s", line, REPLY_WAIT_S);
    free(u->admin_answer);
    size_t n = evbuffer_get_length(c.got);
    u->admin_answer = malloc(n + 1);
    ck_assert_ptr_nonnull(u->admin_answer);
    evbuffer_remove(c.got, u->admin_answer, n);
    u->admin_answer[n] = '\0';
    evbuffer_free(c.got);
    return u->admin_answer;
}

bool unit_await(struct unit_app *u, bool (*done)(void *arg), void *arg)
{
    for (int i = 0; i < 200 && !done(arg); i++) {
        struct timeval tv = { 0, 10000 };
        event_base_loopexit(u->base, &tv);
        event_base_dispatch(u->base);
    }
    return done(arg);
}
