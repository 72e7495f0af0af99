/* redis: one hiredis async connection on the loop, re-opened on a timer
 * when it drops.  Commands sent while it is down are answered NULL at once
 * (from the loop, never inside redis_cmd). */
#ifndef STUDYHUB_IO_REDIS_H
#define STUDYHUB_IO_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct redis_client;

/* reply is owned by hiredis and freed after the callback returns; NULL
 * means Redis is unavailable (answer 503), or the command timed out. */
typedef void (*redis_cb)(redisReply *reply, void *arg);

/* host must be numeric (hiredis resolves names on the loop).  password
 * (NULL: none) is sent with AUTH before SELECT db on every connect.  timeout_ms
 * bounds each command from the call to the reply; a command that times
 * out gets NULL and the connection is dropped and re-opened (a late reply
 * cannot be matched to anything).  <= 0: no command timeout. */
struct redis_client *redis_client_new(struct event_base *base, const char *host,
                                      int port, const char *password, int db,
                                      int timeout_ms);
/* Answers every pending command with NULL (during this call), then frees
 * everything.  Call before event_base_free. */
void redis_client_free(struct redis_client *rc);

/* Sends a command built from argv (binary safe).  cb may be NULL.  Returns
 * 0, or -1 on allocation failure.  The callback runs exactly once.
 * SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE/MONITOR/QUIT are refused (NULL reply):
 * pub/sub needs a connection of its own. */
int redis_cmdargv(struct redis_client *rc, redis_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen);
/* printf-style, as redisAsyncCommand. */
int redis_cmd(struct redis_client *rc, redis_cb cb, void *arg, const char *fmt,
              ...);

bool redis_connected(const struct redis_client *rc);

/* ---- pub/sub -------------------------------------------------------------
 * A subscribed connection can send nothing else, so a subscriber has a
 * connection of its own.  It reconnects with capped backoff and subscribes
 * again; messages published while it was down are not replayed (callers
 * treat them as hints and keep the truth in PostgreSQL).  Channels are not
 * per database: their names say whose they are. */
struct redis_subscriber;

/* payload is borrowed for the call. */
typedef void (*redis_message_fn)(const char *payload, size_t len, void *arg);

/* host must be numeric.  Returns NULL when out of memory; a Redis that is
 * down is retried in the background. */
struct redis_subscriber *redis_subscriber_new(struct event_base *base, const char *host,
                                              int port, const char *password,
                                              const char *channel,
                                              redis_message_fn fn, void *arg);
/* No callback runs after this.  Call before event_base_free. */
void redis_subscriber_free(struct redis_subscriber *s);

#endif
