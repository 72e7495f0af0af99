/* util: the few small helpers that several modules need alike (formatted
 * allocation, hex, SHA-256, random ids, the monotonic clock, timers, mkdir
 * -p).  Kept here so each exists once. */
#ifndef STUDYHUB_CORE_UTIL_H
#define STUDYHUB_CORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

struct event;

/* A malloc'd formatted string, or NULL when out of memory. */
char *util_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *util_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Epoch seconds (with their fraction) as the API writes times (SQL's
 * api_time): "2026-12-07T00:39:12.345678Z", to the microsecond. */
#define UTIL_API_TIME_LEN 28
void util_api_time(double epoch_s, char out[UTIL_API_TIME_LEN]);

/* v in decimal and a NUL (at most 20 digits and a sign); returns the
 * length.  For ids on hot paths, where snprintf's cost shows. */
#define UTIL_INT_DEC_LEN 24
size_t util_int_dec(int64_t v, char out[UTIL_INT_DEC_LEN]);

/* src into dst of cap bytes (cap > 0), cut to fit, always NUL-terminated,
 * as snprintf(dst, cap, "%s", src) without its cost; returns strlen(src)
 * (>= cap: it was cut). */
size_t util_strlcpy(char *dst, const char *src, size_t cap);

/* n bytes as 2n lowercase hex digits and a NUL. */
void util_hex(const void *in, size_t n, char *out);
/* The SHA-256 of data as 64 hex digits and a NUL. */
void util_sha256_hex(const void *data, size_t len, char out[65]);
/* n (at most 64) bytes from the CSPRNG as 2n hex digits and a NUL.  A
 * CSPRNG that fails leaves no safe way to go on: it aborts. */
void util_random_hex(size_t n, char *out);

/* src (NULL or "": "unknown error") as one log line into dst: newlines
 * and tabs become spaces, trailing blanks go.  libpq's messages end in a
 * newline and may span lines. */
void util_one_line(char *dst, size_t dstlen, const char *src);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t util_mono_ms(void);
/* Arms a libevent timer ms milliseconds from now (negative: at once). */
void util_timer_ms(struct event *ev, int64_t ms);

/* mkdir -p with mode 0755: 0, or -1 with errno. */
int util_mkdir_p(const char *path);
/* mkdir -p with the given mode for every folder it creates (folders
 * already there keep theirs): 0, or -1 with errno. */
int util_mkdir_mode(const char *path, mode_t mode);

#endif
