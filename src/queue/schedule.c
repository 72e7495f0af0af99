/* schedule: daily wall-clock times ("HH:MM"), the next and previous run
 * in the local time zone across DST changes, and local times for people.
 * Pure: no loop, no I/O; the scheduler (queue/sched) stands on it. */
#include "config.h"

#include "studyhub/queue/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sched_parse_at(const char *text, struct sched_spec *out)
{
    int h, m, s = 0, n = 0;

    if (!text)
        return -1;
    if (strcmp(text, "off") == 0) {
        out->hour = -1;
        out->min = out->sec = 0;
        return 0;
    }
    if (sscanf(text, "%2d:%2d%n", &h, &m, &n) != 2)
        return -1;
    if (text[n] == ':') {
        int n2 = 0;

        if (sscanf(text + n + 1, "%2d%n", &s, &n2) != 1 || n2 != 2)
            return -1;
        n += 1 + n2;
    }
    if (text[n] != '\0' || n < 4 || h < 0 || h > 23 || m < 0 || m > 59 ||
        s < 0 || s > 59 || text[n - 3] != ':' )
        return -1;
    out->hour = h;
    out->min = m;
    out->sec = s;
    return 0;
}

/* (date, time of day) of t in local time, as one comparable number. */
static long long local_key(time_t t)
{
    struct tm tm;

    localtime_r(&t, &tm);
    return ((long long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 +
            tm.tm_mday) * 1000000LL + tm.tm_hour * 10000 + tm.tm_min * 100 +
           tm.tm_sec;
}

/* The run on local date y-m-d: the first instant whose local date and time
 * reach the spec.  A wall time inside a DST gap has no instant: then the
 * first instant after the gap; one that happens twice: the first. */
static time_t run_on_date(const struct sched_spec *sp, int y, int mo, int d)
{
    long long want = ((long long)y * 10000 + mo * 100 + d) * 1000000LL +
                     sp->hour * 10000 + sp->min * 100 + sp->sec;
    time_t best = (time_t)-1;
    time_t lo, hi;

    /* The occurrences mktime finds under standard and under summer time:
     * the smallest that really shows that wall time is the answer. */
    for (int dst = 0; dst <= 1; dst++) {
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                         .tm_hour = sp->hour, .tm_min = sp->min,
                         .tm_sec = sp->sec, .tm_isdst = dst };
        time_t t = mktime(&tm);

        if (t != (time_t)-1 && local_key(t) == want && (best == (time_t)-1 || t < best))
            best = t;
    }
    if (best != (time_t)-1)
        return best;
    /* A gap: the wall clock is monotonic around it, so search the first
     * instant at or past the wanted wall time within a few hours. */
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                     .tm_hour = sp->hour, .tm_min = sp->min, .tm_sec = sp->sec,
                     .tm_isdst = -1 };
    time_t guess = mktime(&tm);

    if (guess == (time_t)-1)
        return (time_t)-1;
    lo = guess - 4 * 3600;
    hi = guess + 4 * 3600;
    if (local_key(lo) >= want || local_key(hi) < want)
        return (time_t)-1;
    while (hi - lo > 1) {
        time_t mid = lo + (hi - lo) / 2;

        if (local_key(mid) >= want)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* The local date of t moved by `days`, normalised by mktime at noon. */
static void local_date(time_t t, int days, int *y, int *mo, int *d)
{
    struct tm tm;

    localtime_r(&t, &tm);
    tm.tm_mday += days;
    tm.tm_hour = 12;
    tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    mktime(&tm);
    *y = tm.tm_year + 1900;
    *mo = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

time_t sched_next(const struct sched_spec *sp, time_t after)
{
    if (sp->hour < 0)
        return (time_t)-1;
    for (int i = 0; i <= 3; i++) {
        int y, mo, d;
        time_t t;

        local_date(after, i, &y, &mo, &d);
        t = run_on_date(sp, y, mo, d);
        if (t != (time_t)-1 && t > after)
            return t;
    }
    return (time_t)-1;
}

time_t sched_prev(const struct sched_spec *sp, time_t at)
{
    if (sp->hour < 0)
        return (time_t)-1;
    for (int i = 0; i >= -3; i--) {
        int y, mo, d;
        time_t t;

        local_date(at, i, &y, &mo, &d);
        t = run_on_date(sp, y, mo, d);
        if (t != (time_t)-1 && t <= at)
            return t;
    }
    return (time_t)-1;
}

void sched_format_time(time_t t, char *buf, size_t n)
{
    struct tm tm;

    if (t == (time_t)-1 || t == 0) {
        snprintf(buf, n, "-");
        return;
    }
    localtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%S%z(%Z)", &tm);
}
