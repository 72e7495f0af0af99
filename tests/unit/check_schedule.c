/* Unit tests of schedule: parsing job times, the next/previous run across
 * the DST changes of America/New_York, and local times for people. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "studyhub/queue/schedule.h"
#include "unit_main.h"

/* UTC date-time to time_t without depending on TZ. */
static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                     .tm_hour = h, .tm_min = mi, .tm_sec = s };
    return timegm(&tm);
}

static struct sched_spec at(const char *text)
{
    struct sched_spec sp;
    ck_assert_int_eq(sched_parse_at(text, &sp), 0);
    return sp;
}

static void new_york(void)
{
    setenv("TZ", "America/New_York", 1);
    tzset();
}

START_TEST(parse)
{
    struct sched_spec sp;

    ck_assert_int_eq(sched_parse_at("02:00", &sp), 0);
    ck_assert_int_eq(sp.hour, 2);
    ck_assert_int_eq(sp.min, 0);
    ck_assert_int_eq(sp.sec, 0);
    ck_assert_int_eq(sched_parse_at("23:59:30", &sp), 0);
    ck_assert_int_eq(sp.hour, 23);
    ck_assert_int_eq(sp.min, 59);
    ck_assert_int_eq(sp.sec, 30);
    ck_assert_int_eq(sched_parse_at("off", &sp), 0);
    ck_assert_int_eq(sp.hour, -1);
    ck_assert_int_eq(sched_parse_at("24:00", &sp), -1);
    ck_assert_int_eq(sched_parse_at("02:60", &sp), -1);
    ck_assert_int_eq(sched_parse_at("2", &sp), -1);
    ck_assert_int_eq(sched_parse_at("02:00:", &sp), -1);
    ck_assert_int_eq(sched_parse_at("02:00:5", &sp), -1);
    ck_assert_int_eq(sched_parse_at("02:00x", &sp), -1);
    ck_assert_int_eq(sched_parse_at("", &sp), -1);
    ck_assert_int_eq(sched_parse_at(NULL, &sp), -1);
}
END_TEST

START_TEST(summer_and_winter)
{
    struct sched_spec sp = at("02:00");

    new_york();
    /* June: EDT, UTC-4. */
    ck_assert_int_eq(sched_next(&sp, utc(2024, 6, 1, 16, 0, 0)), utc(2024, 6, 2, 6, 0, 0));
    /* January: EST, UTC-5. */
    ck_assert_int_eq(sched_next(&sp, utc(2024, 1, 10, 12, 0, 0)), utc(2024, 1, 11, 7, 0, 0));
    /* Strictly after: at the run itself, the next day's. */
    ck_assert_int_eq(sched_next(&sp, utc(2024, 6, 2, 6, 0, 0)), utc(2024, 6, 3, 6, 0, 0));
    ck_assert_int_eq(sched_next(&sp, utc(2024, 6, 2, 5, 59, 59)), utc(2024, 6, 2, 6, 0, 0));
    /* Previous: at or before. */
    ck_assert_int_eq(sched_prev(&sp, utc(2024, 6, 2, 6, 0, 0)), utc(2024, 6, 2, 6, 0, 0));
    ck_assert_int_eq(sched_prev(&sp, utc(2024, 6, 2, 5, 59, 59)), utc(2024, 6, 1, 6, 0, 0));
}
END_TEST

/* 2024-03-10: 02:00 EST jumps to 03:00 EDT; 02:00-02:59 do not exist. */
START_TEST(spring_forward)
{
    struct sched_spec two = at("02:00"), half = at("02:30"), one = at("01:30"),
                      three = at("03:00");

    new_york();
    /* The day before at 02:00 EST. */
    ck_assert_int_eq(sched_next(&two, utc(2024, 3, 8, 12, 0, 0)), utc(2024, 3, 9, 7, 0, 0));
    /* The missing 02:00 and 02:30 run at the end of the gap, 03:00 EDT. */
    ck_assert_int_eq(sched_next(&two, utc(2024, 3, 9, 12, 0, 0)), utc(2024, 3, 10, 7, 0, 0));
    ck_assert_int_eq(sched_next(&half, utc(2024, 3, 9, 12, 0, 0)), utc(2024, 3, 10, 7, 0, 0));
    /* Once only that day: the next is the day after, at 02:00 EDT. */
    ck_assert_int_eq(sched_next(&two, utc(2024, 3, 10, 7, 0, 0)), utc(2024, 3, 11, 6, 0, 0));
    /* Times around the gap are unaffected. */
    ck_assert_int_eq(sched_next(&one, utc(2024, 3, 9, 12, 0, 0)), utc(2024, 3, 10, 6, 30, 0));
    ck_assert_int_eq(sched_next(&three, utc(2024, 3, 9, 12, 0, 0)), utc(2024, 3, 10, 7, 0, 0));
    /* Previous just before and in the gap. */
    ck_assert_int_eq(sched_prev(&two, utc(2024, 3, 10, 6, 59, 59)), utc(2024, 3, 9, 7, 0, 0));
    ck_assert_int_eq(sched_prev(&two, utc(2024, 3, 10, 7, 0, 0)), utc(2024, 3, 10, 7, 0, 0));
}
END_TEST

/* 2024-11-03: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happen twice. */
START_TEST(fall_back)
{
    struct sched_spec one = at("01:30"), two = at("02:00"), zero = at("00:30");

    new_york();
    /* The first 01:30 (EDT, 05:30Z), not the second (EST, 06:30Z). */
    ck_assert_int_eq(sched_next(&one, utc(2024, 11, 2, 12, 0, 0)), utc(2024, 11, 3, 5, 30, 0));
    /* After the first: the next day, not the repeat an hour later. */
    ck_assert_int_eq(sched_next(&one, utc(2024, 11, 3, 5, 30, 0)), utc(2024, 11, 4, 6, 30, 0));
    ck_assert_int_eq(sched_next(&one, utc(2024, 11, 3, 6, 0, 0)), utc(2024, 11, 4, 6, 30, 0));
    /* 02:00 happens once, in EST. */
    ck_assert_int_eq(sched_next(&two, utc(2024, 11, 2, 12, 0, 0)), utc(2024, 11, 3, 7, 0, 0));
    ck_assert_int_eq(sched_next(&zero, utc(2024, 11, 2, 12, 0, 0)), utc(2024, 11, 3, 4, 30, 0));
    /* During the repeated hour the last run is the first 01:30. */
    ck_assert_int_eq(sched_prev(&one, utc(2024, 11, 3, 6, 45, 0)), utc(2024, 11, 3, 5, 30, 0));
}
END_TEST

/* A daily job walked over both changes runs exactly once per local day. */
START_TEST(once_per_day_across_a_year)
{
    struct sched_spec sp = at("02:30");
    time_t t = utc(2024, 1, 1, 0, 0, 0), end = utc(2025, 1, 1, 0, 0, 0);
    int runs = 0, last_yday = -1;

    new_york();
    while ((t = sched_next(&sp, t)) < end) {
        struct tm tm;

        localtime_r(&t, &tm);
        ck_assert_int_ne(tm.tm_yday, last_yday);
        /* 02:30, or 03:00 on the day the clock skips it. */
        ck_assert(tm.tm_hour == 2 || (tm.tm_hour == 3 && tm.tm_min == 0));
        last_yday = tm.tm_yday;
        ck_assert_int_eq(sched_prev(&sp, t), t);
        runs++;
    }
    /* 2024 local days from Dec 31 2023 19:00 EST to Dec 31 2024 19:00: 366. */
    ck_assert_int_eq(runs, 366);
}
END_TEST

START_TEST(off_and_other_zones)
{
    struct sched_spec off = at("off"), two = at("02:00");

    ck_assert_int_eq(sched_next(&off, 1000000), (time_t)-1);
    ck_assert_int_eq(sched_prev(&off, 1000000), (time_t)-1);
    setenv("TZ", "UTC", 1);
    tzset();
    ck_assert_int_eq(sched_next(&two, utc(2024, 3, 10, 1, 0, 0)), utc(2024, 3, 10, 2, 0, 0));
    /* Europe/Berlin springs forward at 02:00 CET on 2024-03-31. */
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    ck_assert_int_eq(sched_next(&two, utc(2024, 3, 30, 12, 0, 0)), utc(2024, 3, 31, 1, 0, 0));
}
END_TEST

START_TEST(format_for_people)
{
    char buf[64];

    setenv("TZ", "America/New_York", 1);
    tzset();
    sched_format_time(0, buf, sizeof buf);
    ck_assert_str_eq(buf, "-");
    sched_format_time((time_t)-1, buf, sizeof buf);
    ck_assert_str_eq(buf, "-");
    sched_format_time(1783339200, buf, sizeof buf);   /* 2026-07-06T12:00:00Z */
    ck_assert_str_eq(buf, "2026-07-06T08:00:00-0400(EDT)");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, parse);
    tcase_add_test(tc, format_for_people);
    tcase_add_test(tc, summer_and_winter);
    tcase_add_test(tc, spring_forward);
    tcase_add_test(tc, fall_back);
    tcase_add_test(tc, once_per_day_across_a_year);
    tcase_add_test(tc, off_and_other_zones);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
