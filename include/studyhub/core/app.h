/* app: the one process-wide context every handler and task is given. */
#ifndef STUDYHUB_CORE_APP_H
#define STUDYHUB_CORE_APP_H

#include <time.h>

struct event_base;
struct config;
struct pg_pool;
struct redis_client;
struct http_server;
struct router;
struct metrics;
struct admin_server;
struct task_runner;
struct sched;
struct proc_table;
struct mail_sender;
struct fetch_client;
struct storage;
struct static_site;

struct app {
    struct event_base *base;      /* borrowed from main */
    const struct config *cfg;     /* borrowed from main */
    struct pg_pool *pg;           /* owned by main */
    struct redis_client *redis;   /* owned by main */
    struct http_server *http;     /* owned by main */
    const struct router *router;  /* owned by main: every route and its policy */
    struct metrics *metrics;      /* owned by main */
    struct admin_server *admin;   /* owned by main */
    struct task_runner *tasks;    /* owned by main: the task queue runner */
    struct sched *sched;          /* owned by main: scheduled jobs */
    struct proc_table *procs;     /* owned by main: supervised children */
    struct mail_sender *mail;     /* owned by main: the mail outbox sender (io/mail.c) */
    struct fetch_client *fetch;   /* owned by main: outbound HTTP (io/fetch.c) */
    struct storage *storage;      /* owned by main: object storage (io/storage.c) */
    struct static_site *site;     /* owned by main: the pages (http/static.c);
                                   * freed after http, whose replies point into it */
    time_t started;               /* wall-clock start, for uptime */
    int draining;                 /* set once SIGTERM/SIGINT arrived */
};

#endif
