/* log: JSON lines on stderr.  Each event is built in one buffer and written
 * with one write(2), so lines from several processes never interleave. */
#include "studyhub/core/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    min_level = level;
}

/* A line under construction; truncated (still valid JSON) when full. */
struct line {
    char buf[4096];
    size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > sizeof l->buf - 8 - l->len)   /* keep room for the closing "}\n" */
        n = sizeof l->buf - 8 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Appends s as a JSON string, escaping quotes, backslashes and controls. */
static void put_json_string(struct line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[6];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 15];
            put(l, esc, 6);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

static void begin(struct line *l, enum log_level level)
{
    struct timeval tv;
    struct tm tm;
    char ts[64];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    l->len = 0;
    puts_raw(l, "{\"time\":\"");
    puts_raw(l, ts);
    puts_raw(l, "\",\"level\":\"");
    puts_raw(l, level_names[level]);
    puts_raw(l, "\"");
}

static void finish(struct line *l)
{
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    /* Nothing sensible to do if stderr is gone. */
    ssize_t w = write(STDERR_FILENO, l->buf, l->len);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    struct line l;
    char msg[2048];
    va_list ap;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    begin(&l, level);
    puts_raw(&l, ",\"msg\":");
    put_json_string(&l, msg);
    finish(&l);
}

void log_request(const char *request_id, const char *method, const char *route,
                 const char *path, int status, double duration_ms, const char *user)
{
    struct line l;
    char num[64];

    if (LOG_INFO < min_level)
        return;
    begin(&l, status >= 500 ? LOG_ERROR : LOG_INFO);
    puts_raw(&l, ",\"msg\":\"request\",\"request_id\":");
    put_json_string(&l, request_id);
    puts_raw(&l, ",\"method\":");
    put_json_string(&l, method);
    puts_raw(&l, ",\"route\":");
    put_json_string(&l, route);
    puts_raw(&l, ",\"path\":");
    /* Paths can be long; the log keeps the first part. */
    char shortpath[512];
    snprintf(shortpath, sizeof shortpath, "%s", path);
    put_json_string(&l, shortpath);
    snprintf(num, sizeof num, ",\"status\":%d,\"duration_ms\":%.3f", status, duration_ms);
    puts_raw(&l, num);
    if (user && *user) {
        puts_raw(&l, ",\"user\":");
        put_json_string(&l, user);
    }
    finish(&l);
}

bool log_limit_pass(struct log_limit *l, int max_per_s, long *suppressed)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec != l->second) {
        l->second = ts.tv_sec;
        l->passed = 0;
    }
    if (l->passed >= max_per_s) {
        l->suppressed++;
        return false;
    }
    l->passed++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return true;
}

void log_library(const char *lib, int severity, const char *msg)
{
    static struct log_limit limit;
    enum log_level level = severity <= 0 ? LOG_DEBUG
                         : severity == 1 ? LOG_INFO
                         : severity == 2 ? LOG_WARN : LOG_ERROR;
    struct line l;
    long dropped;
    char num[64];

    if (level < min_level || !log_limit_pass(&limit, 10, &dropped))
        return;
    begin(&l, level);
    puts_raw(&l, ",\"msg\":");
    put_json_string(&l, msg ? msg : "");
    puts_raw(&l, ",\"lib\":");
    put_json_string(&l, lib);
    if (dropped) {
        snprintf(num, sizeof num, ",\"suppressed\":%ld", dropped);
        puts_raw(&l, num);
    }
    finish(&l);
}
