/* config: every environment variable studyhub reads, in one table that the
 * code, `studyhub --help` and the README all come from. */
#ifndef STUDYHUB_CORE_CONFIG_H
#define STUDYHUB_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config {
    char *listen_addr;          /* LISTEN_ADDR: numeric IP to bind (owned) */
    long listen_port;           /* LISTEN_PORT */
    char *base_url;             /* BASE_URL: absolute prefix for links, "" = from Host (owned) */
    char *database_url;         /* DATABASE_URL: libpq conninfo or URI (owned) */
    long pg_pool_size;          /* PG_POOL_SIZE */
    long pg_acquire_timeout_ms; /* PG_ACQUIRE_TIMEOUT_MS */
    char *redis_url;            /* REDIS_URL: redis://host:port/db (owned) */
    char *redis_host;           /* parsed from redis_url, numeric (owned) */
    long redis_port;            /* parsed from redis_url */
    long redis_db;              /* parsed from redis_url */
    long redis_timeout_ms;      /* REDIS_TIMEOUT_MS */
    long max_header_bytes;      /* MAX_HEADER_BYTES */
    long max_body_bytes;        /* MAX_BODY_BYTES */
    long idle_timeout_s;        /* IDLE_TIMEOUT_S */
    long drain_timeout_s;       /* DRAIN_TIMEOUT_S */
    char *admin_socket;         /* ADMIN_SOCKET: path of the Unix socket (owned) */
    char *log_level;            /* LOG_LEVEL: debug, info, warn, error (owned) */
    long session_ttl_s;         /* SESSION_TTL_S */
    bool migrate;               /* MIGRATE: apply sql/ migrations at start */
    bool debug_routes;          /* DEBUG_ROUTES: enable /debug/ (tests only) */
};

/* Reads every variable through getenv_fn (getenv in production, a table in
 * tests).  On a bad value returns -1 and writes a message naming the
 * variable into err; cfg is then left cleaned up. */
typedef const char *(*config_getenv_fn)(const char *name, void *arg);
int config_load(struct config *cfg, config_getenv_fn getenv_fn, void *arg,
                char *err, size_t errlen);
void config_cleanup(struct config *cfg);

/* Writes the table (name, default, meaning) for --help. */
void config_print_help(FILE *out);
/* Writes the table as Markdown rows, for the README. */
void config_print_markdown(FILE *out);

#endif
