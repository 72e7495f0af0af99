/* admin: a Unix-socket command server (mode 0600) with a line protocol.
 * The client sends one line of space-separated words; the server answers
 * with lines of output and a last line "OK" or "ERR <message>". */
#ifndef STUDYHUB_ADMIN_ADMIN_H
#define STUDYHUB_ADMIN_ADMIN_H

struct event_base;
struct admin_server;
struct admin_conn;
struct app;

/* A command may answer at once or later; it must call admin_finish once.
 * c and argv stay valid until then, even if the client or the server goes
 * away first (output is then dropped). */
typedef void (*admin_cmd_fn)(struct admin_conn *c, int argc, char **argv,
                             struct app *app);

struct admin_server *admin_server_new(struct event_base *base, const char *path,
                                      struct app *app);
void admin_server_free(struct admin_server *srv);
/* name and help are static strings. */
void admin_register(struct admin_server *srv, const char *name,
                    const char *help, admin_cmd_fn fn);

void admin_printf(struct admin_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* err NULL: "OK"; otherwise "ERR <err>".  Frees c (after the write). */
void admin_finish(struct admin_conn *c, const char *err);

#endif
