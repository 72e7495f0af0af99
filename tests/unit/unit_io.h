/* unit_io: the loop of an io module's unit test (check_fetch,
 * check_storage, check_storage_file, check_storage_writer): one event
 * base and fetch client per test, a private temporary folder, and loop
 * runners that wait for a count of callbacks or for a time.  A test ends
 * with nothing of ours left on the loop (unit_loop_free). */
#ifndef STUDYHUB_TESTS_UNIT_IO_H
#define STUDYHUB_TESTS_UNIT_IO_H

#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "studyhub/io/fetch.h"
#include "unit_loop.h"

static struct event_base *base;
static struct fetch_client *fc;
static char tmpdir[64];

/* --- loop helpers ------------------------------------------------------------- */

static inline void on_deadline(evutil_socket_t fd, short w, void *arg)
{
    (void)fd; (void)w;
    *(int *)arg = 1;
}

/* Runs the loop until *count reaches want or 10 s pass. */
static inline void run_until(int *count, int want)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { 10, 0 };
    evtimer_add(t, &tv);
    while (*count < want && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    ck_assert_msg(*count >= want, "timed out waiting (%d of %d)", *count, want);
}

/* Runs the loop for ms milliseconds. */
static inline void run_for(int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(t, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

static inline void rm_rf(const char *p)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    ck_assert_int_eq(system(cmd), 0);
}

/* A new loop, fetch client and temporary folder (/tmp/NAME.XXXXXX). */
static inline void io_setup(const char *name)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    fc = fetch_client_new(base, NULL);
    ck_assert_ptr_nonnull(fc);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s.XXXXXX", name);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Nothing may be left alive when a test ends. */
static inline void io_teardown(void)
{
    ck_assert_uint_eq(fetch_pending(fc), 0);
    fetch_client_free(fc);
    unit_loop_free(base);
    rm_rf(tmpdir);
}

#endif
