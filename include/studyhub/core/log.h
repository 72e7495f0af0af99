/* log: JSON lines on stderr, one object per event. */
#ifndef STUDYHUB_CORE_LOG_H
#define STUDYHUB_CORE_LOG_H

#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

int log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);

/* {"time":..,"level":..,"msg":<formatted>} */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The access-log line of one HTTP request. */
void log_request(const char *request_id, const char *method, const char *route,
                 const char *path, int status, double duration_ms);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
