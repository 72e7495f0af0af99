/* schedule: daily wall-clock times and their next and previous runs in
 * the local time zone (TZ), pure functions the scheduler stands on. */
#ifndef STUDYHUB_QUEUE_SCHEDULE_H
#define STUDYHUB_QUEUE_SCHEDULE_H

#include <stddef.h>
#include <time.h>

/* A daily wall-clock time; hour -1 means "off" (manual runs only). */
struct sched_spec {
    int hour, min, sec;
};

/* "HH:MM" or "HH:MM:SS" (24 h), or "off".  0 or -1. */
int sched_parse_at(const char *text, struct sched_spec *out);
/* In the process's local time zone (TZ): the first run strictly after
 * `after`, and the last run at or before `at`.  (time_t)-1 for "off". */
time_t sched_next(const struct sched_spec *spec, time_t after);
time_t sched_prev(const struct sched_spec *spec, time_t at);

/* t in local time with its zone ("2026-12-06T10:00:00+0100(CET)"), "-" for
 * 0 or -1. */
void sched_format_time(time_t t, char *buf, size_t n);

#endif
