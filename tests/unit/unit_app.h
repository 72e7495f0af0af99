/* unit_app: the harness of the handler tests.  One real struct app on one
 * loop, built as src/studyhub.c's main() builds it (configuration from a
 * small table, the PostgreSQL pool on a database of its own, Redis, a
 * router holding the routes the test names, the auth gate, the HTTP server
 * on 127.0.0.1:0), and a client on the same loop: a request goes out, the
 * loop runs until its reply, and the test reads status, headers and the
 * body (parsed when it is JSON).
 *
 * The database: tools/test hands every build one (TEST_DATABASE_URL),
 * which each program migrates (a no-op but for the SQL functions once the
 * first did it) and all of them share: a copy per program (CREATE
 * DATABASE ... TEMPLATE) cost 0.7-1.8 s each, more than the tests.  So a
 * test keeps to the rows it made: names are unique, counts are of its own
 * users' or studies' rows.  Redis: TEST_REDIS_DB (tools/test: one per
 * build), else 8.  Without TEST_DATABASE_URL, TEST_REDIS_PORT and
 * TEST_REDIS_PASSWORD a program SKIPs (77).
 *
 * Typical use:
 *     int main(void) { return unit_app_main("check_x", suite()); }
 * with each test
 *     struct unit_app *u = unit_app_start(routes, NULL);
 *     struct unit_user *a = unit_user(u, "ann", 0);
 *     const struct unit_reply *r = unit_req(u, a, "GET", "/api/v1/x/", NULL);
 *     ck_assert_int_eq(r->status, 200);
 *     unit_app_stop(u);          (ends with unit_loop_free)
 */
#ifndef STUDYHUB_TESTS_UNIT_APP_H
#define STUDYHUB_TESTS_UNIT_APP_H

#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"

struct router;
struct admin_server;
struct evhttp_connection;
typedef int (*unit_routes_fn)(struct router *r);

/* The last reply; valid until the next request or unit_app_stop. */
struct unit_reply {
    int status;                 /* 0: no reply (connection failed) */
    char *body;                 /* NUL-terminated */
    size_t len;
    json_t *json;               /* the body parsed, or NULL */
    char *headers;              /* "name: value\n" lines, names lower-cased */
};

#define UNIT_MAX_USERS 16

/* A person in the database with an API token and a Redis session. */
struct unit_user {
    int64_t id;
    char uuid[37];
    char email[128];
    char token[48];             /* "Token <hex>" (mfa_verified unless UNIT_NO_MFA) */
    char session[65];           /* sessionid cookie value */
    bool use_session;           /* send the cookie (and CSRF) instead of the token */
};

enum {
    UNIT_RESEARCHER = 1,
    UNIT_SITE_ADMIN = 2,        /* researcher too */
    UNIT_NO_MFA = 4,            /* the token and session are not two-factor verified */
};

struct unit_app {
    struct event_base *base;
    struct config cfg;
    struct app app;
    struct router *router;
    int port;
    PGconn *db;                 /* blocking: the test's own fixture writes */
    struct unit_reply reply;
    struct unit_user users[UNIT_MAX_USERS];
    int nusers;
    char admin_dir[64];         /* the admin socket's folder, once started */
    char *admin_answer;         /* the last admin answer */
    bool admin_timed_out;
};

/* The program's main: SKIP without the services; else migrates the
 * database and runs the suite (CK_NORMAL, each test in its own fork). */
int unit_app_main(const char *name, Suite *s);

/* routes: a NULL-ended list of route tables to register, in order.  env:
 * NULL or "NAME", "value", ..., NULL: settings beside the harness's.
 * A test may set app.tasks (task_runner_new) and app.sched (sched_new):
 * unit_app_stop frees them where main does. */
struct unit_app *unit_app_start(const unit_routes_fn *routes, const char *const *env);
void unit_app_stop(struct unit_app *u);

/* Runs the loop in 10 ms turns until done(arg) or about 2 s; returns
 * done(arg).  For what the app learns by notification (a change made
 * behind its back, as psql or another server would). */
bool unit_await(struct unit_app *u, bool (*done)(void *arg), void *arg);

/* A request from who (NULL: no credentials); body NULL for none.  With a
 * body, Content-Type is JSON:API unless a "Content-Type: ..." line is in
 * headers (NULL or "Name: value" lines joined by \n). */
const struct unit_reply *unit_req(struct unit_app *u, const struct unit_user *who,
                                  const char *method, const char *path, const char *body);
const struct unit_reply *unit_req_h(struct unit_app *u, const struct unit_user *who,
                                    const char *method, const char *path,
                                    const char *headers, const char *body);
/* A reply header (name case-insensitive) into a static buffer, or NULL. */
const char *unit_reply_header(const struct unit_reply *r, const char *name);
/* A string (or number, as text) at a dotted path of the reply's JSON
 * ("data.attributes.name", "errors.0.detail"), or NULL. */
const char *unit_json(const struct unit_reply *r, const char *path);
json_t *unit_json_at(json_t *root, const char *path);
/* Whether the reply's errors hold one whose source.pointer is pointer
 * (their order follows the document's object, which is no order). */
bool unit_has_error(const struct unit_reply *r, const char *pointer);
/* Whether the reply's data array holds a resource of id. */
bool unit_data_has(const struct unit_reply *r, const char *id);
/* How many errors the reply holds. */
int unit_nerrors(const struct unit_reply *r);

/* The first value of the first row of printf-formatted SQL, as text ("" for
 * no row), in a static buffer; fails the test on an error. */
const char *unit_sql(struct unit_app *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t unit_sql_int(struct unit_app *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Fixtures, written straight into the database (names are made unique). */
struct unit_user *unit_user(struct unit_app *u, const char *name, int flags);
/* A lab approved to test, its id; uuid into uuid[37] when not NULL. */
int64_t unit_lab(struct unit_app *u, const char *name, char *uuid);
void unit_lab_member(struct unit_app *u, int64_t lab, const struct unit_user *who,
                     const char *role);
/* A study of lab (state, public), its id; uuid into uuid[37]. */
int64_t unit_study(struct unit_app *u, int64_t lab, const char *state, bool public_,
                   char *uuid);
void unit_study_member(struct unit_app *u, int64_t study, const struct unit_user *who,
                       const char *grp);
/* A child of who, age_days old; its id, uuid into uuid[37]. */
int64_t unit_child(struct unit_app *u, const struct unit_user *who, const char *name,
                   int age_days, char *uuid);

/* A response of child to study (a preview or not), its id; with
 * accepted, a consent ruling accepts it.  uuid into uuid[37]. */
int64_t unit_response(struct unit_app *u, int64_t child, int64_t study, bool preview,
                      bool accepted, char *uuid);

/* The admin socket (in a folder of its own), its commands registered by
 * each of the NULL-ended reg functions; app.admin is set. */
typedef void (*unit_admin_reg_fn)(struct admin_server *srv);
void unit_admin_start(struct unit_app *u, const unit_admin_reg_fn *reg);
/* The whole answer to one command line (no newline needed): its lines,
 * the last "OK" or "ERR why".  Valid until the next call or stop. */
const char *unit_admin(struct unit_app *u, const char *line);

/* The database's URL (for the tests driving a module without the app). */
const char *unit_app_db_url(void);

#endif
