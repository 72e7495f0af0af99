/* log: JSON lines on stderr, one object per event. */
#ifndef STUDYHUB_CORE_LOG_H
#define STUDYHUB_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);

/* {"time":..,"level":..,"msg":<formatted>} */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The access-log line of one HTTP request. */
/* user: the authenticated caller's uuid ("" or NULL: none, and no "user"
 * key is written). */
void log_request(const char *request_id, const char *method, const char *route,
                 const char *path, int status, double duration_ms, const char *user);

/* A rate limit for one noisy place (a loop that could log thousands of
 * lines a second, as accept errors at the descriptor limit do): at most
 * max_per_s lines a second pass; the first line after a quiet second says
 * how many were suppressed.  Declare one static per call site. */
struct log_limit {
    long second;       /* the monotonic second being counted */
    int passed;        /* lines passed in that second */
    long suppressed;   /* lines dropped since the last one passed */
};
/* True when this line may be written; *suppressed gets the count of lines
 * dropped before it (to mention in the line), then is reset. */
bool log_limit_pass(struct log_limit *l, int max_per_s, long *suppressed);

/* Messages of a library (libevent's event_set_log_callback, for one),
 * severity 0 debug .. 3 error, as JSON lines with "lib", rate-limited to
 * 10 lines a second in all. */
void log_library(const char *lib, int severity, const char *msg);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
