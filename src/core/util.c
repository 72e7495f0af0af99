/* util: small helpers shared by several modules (see util.h). */
#include "config.h"

#include "studyhub/core/util.h"

#include <errno.h>
#include <math.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "studyhub/core/log.h"

char *util_vasprintf(const char *fmt, va_list ap)
{
    char *s;

    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

char *util_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = util_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

size_t util_int_dec(int64_t v, char out[UTIL_INT_DEC_LEN])
{
    char tmp[UTIL_INT_DEC_LEN];
    /* Through unsigned: INT64_MIN has no positive twin. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

size_t util_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strlen(src), k = n < cap ? n : cap - 1;

    memcpy(dst, src, k);
    dst[k] = '\0';
    return n;
}

void util_hex(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = in;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void util_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        log_error("SHA-256 failed");
        abort();
    }
    util_hex(md, mdlen, out);
}

void util_random_hex(size_t n, char *out)
{
    unsigned char buf[64];

    if (n > sizeof buf || RAND_bytes(buf, (int)n) != 1) {
        log_error("RAND_bytes failed");
        abort();
    }
    util_hex(buf, n, out);
    OPENSSL_cleanse(buf, sizeof buf);
}

int64_t util_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_timer_ms(struct event *ev, int64_t ms)
{
    struct timeval tv;

    if (ms < 0)
        ms = 0;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    evtimer_add(ev, &tv);
}

int util_mkdir_p(const char *path)
{
    return util_mkdir_mode(path, 0755);
}

int util_mkdir_mode(const char *path, mode_t mode)
{
    char *buf = strdup(path);
    int rc = 0;

    if (!buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST) {
            rc = -1;
            break;
        }
        *p = '/';
    }
    if (rc == 0 && mkdir(buf, mode) < 0 && errno != EEXIST)
        rc = -1;
    free(buf);
    return rc;
}

void util_one_line(char *dst, size_t dstlen, const char *src)
{
    size_t n;

    snprintf(dst, dstlen, "%s", src && *src ? src : "unknown error");
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    n = strlen(dst);
    while (n > 0 && dst[n - 1] == ' ')
        dst[--n] = '\0';
}

void util_api_time(double epoch_s, char out[UTIL_API_TIME_LEN])
{
    /* A double holds today's epoch to ~0.25 us: rounding recovers the
     * microsecond PostgreSQL sent. */
    long long us = llround(epoch_s * 1e6);
    long long secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    time_t t = (time_t)secs;
    unsigned frac = (unsigned)(us - secs * 1000000) % 1000000u;
    struct tm tm;
    char day[20];

    if (!gmtime_r(&t, &tm) || strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, UTIL_API_TIME_LEN, "1970-01-01T00:00:00.000000Z");
        return;
    }
    snprintf(out, UTIL_API_TIME_LEN, "%s.%06uZ", day, frac);
}
