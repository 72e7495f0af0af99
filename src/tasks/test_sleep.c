/* test_sleep: the task kind and the scheduled job the tests drive
 * (tests/e2e/test_tasks.py), listed only with DEBUG_ROUTES=1; the kind is
 * queued by `task enqueue-test`, the job run by `run test_sleep`.  A small
 * complete example of each: states, open, step, resume, close. */
#include "config.h"

#include "studyhub/tasks/test_sleep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/proc.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"

/* Payload {"seconds": S, "stages": 1..3, "mode": "timer"|"child",
 * "fail_stage": NAME, "resume": "continue"|"fail"}.  Each stage sleeps S
 * seconds on a timer or as a `sleep` child; fail_stage fails (retried while
 * attempts remain); resume=fail fails a resumed task instead of re-running
 * its interrupted stage.  Enqueued by `task enqueue-test` only. */

enum ts_state { TS_FIRST, TS_SECOND, TS_THIRD };

static const char *const ts_state_names[] = {
    [TS_FIRST] = "first",
    [TS_SECOND] = "second",
    [TS_THIRD] = "third",
};

struct ts {
    struct task *t;          /* borrowed: its task */
    double seconds;          /* per stage */
    int stages;              /* how many of the states run */
    bool child;              /* sleep in a child instead of a timer */
    char fail_stage[16];     /* this stage fails ("": none) */
    bool resume_fail;        /* a resumed task fails */
    struct event *timer;     /* owned: the timer sleep */
    struct proc *proc;       /* the child sleep (abandoned in close) */
};

static int ts_open(struct task *t, char *err, size_t errlen)
{
    struct ts *ts = calloc(1, sizeof *ts);
    json_t *v;

    if (!ts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ts->t = t;
    ts->seconds = json_number_value(json_object_get(t->payload, "seconds"));
    ts->stages = (int)json_integer_value(json_object_get(t->payload, "stages"));
    if (ts->stages < 1 || ts->stages > 3)
        ts->stages = 3;
    v = json_object_get(t->payload, "mode");
    ts->child = json_is_string(v) && strcmp(json_string_value(v), "child") == 0;
    v = json_object_get(t->payload, "fail_stage");
    if (json_is_string(v))
        snprintf(ts->fail_stage, sizeof ts->fail_stage, "%s", json_string_value(v));
    v = json_object_get(t->payload, "resume");
    ts->resume_fail = json_is_string(v) && strcmp(json_string_value(v), "fail") == 0;
    if (ts->seconds < 0 || ts->seconds > 3600) {
        free(ts);
        snprintf(err, errlen, "seconds must be from 0 to 3600");
        return -1;
    }
    t->data = ts;
    return 0;
}

static void ts_next(struct ts *ts)
{
    struct task *t = ts->t;

    if (t->state + 1 < ts->stages) {
        task_set_state(t, t->state + 1, TASK_STAGE_OK);
        return;
    }
    task_finish(t, TASK_SUCCEEDED,
                json_pack("{s:i, s:b, s:i}", "stages", ts->stages, "resumed",
                          t->resumed, "attempts", t->attempts), NULL);
}

static void ts_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ts *ts = arg;

    task_log(ts->t, "slept %.3g s", ts->seconds);
    ts_next(ts);
}

static void ts_on_child(const struct proc_result *r, void *arg)
{
    struct ts *ts = arg;
    char how[128];

    ts->proc = NULL;
    proc_result_describe(r, how, sizeof how);
    task_log(ts->t, "child %d: %s", (int)r->pid, how);
    if (r->err_len)
        task_log_text(ts->t, "stderr", r->err, r->err_len);
    if (r->killed || task_cancel_requested(ts->t)) {
        task_finish(ts->t, TASK_CANCELLED, NULL, "cancelled while sleeping");
        return;
    }
    if (!proc_result_ok(r)) {
        task_finish(ts->t, TASK_FAILED, NULL, "the sleep child failed: %s", how);
        return;
    }
    ts_next(ts);
}

static void ts_step(struct task *t)
{
    struct ts *ts = t->data;

    if (task_cancel_requested(t)) {
        task_finish(t, TASK_CANCELLED, NULL, "cancelled");
        return;
    }
    if (strcmp(ts->fail_stage, ts_state_names[t->state]) == 0) {
        task_log(t, "failing on purpose in stage %s", ts_state_names[t->state]);
        if (task_can_retry(t))
            task_retry(t, "failed on purpose in stage %s", ts_state_names[t->state]);
        else
            task_finish(t, TASK_FAILED, NULL, "failed on purpose in stage %s",
                        ts_state_names[t->state]);
        return;
    }
    if (ts->child && t->app->procs) {
        char secs[32], err[256];
        const char *argv[] = { "sleep", secs, NULL };
        struct proc_opts o = { .argv = argv, .tail_bytes = 4096,
                               .timeout_ms = (long)(ts->seconds * 1000) + 60000,
                               .grace_ms = 2000 };

        snprintf(secs, sizeof secs, "%.3f", ts->seconds);
        ts->proc = proc_spawn(t->app->procs, &o, ts_on_child, ts, err, sizeof err);
        if (!ts->proc) {
            task_finish(t, TASK_FAILED, NULL, "cannot start sleep: %s", err);
            return;
        }
        task_log(t, "sleeping %s s in child %d", secs, (int)proc_pid(ts->proc));
        return;
    }
    if (!ts->timer)
        ts->timer = evtimer_new(t->app->base, ts_on_timer, ts);
    if (!ts->timer) {
        task_finish(t, TASK_FAILED, NULL, "out of memory");
        return;
    }
    task_log(t, "sleeping %.3g s", ts->seconds);
    util_timer_ms(ts->timer, (int64_t)(ts->seconds * 1000));
}

static int ts_resume(struct task *t, int interrupted)
{
    struct ts *ts = t->data;

    if (ts->resume_fail)
        return -1;
    if (t->attempts > t->max_attempts)
        return -1;
    return interrupted;
}

static void ts_cancel(struct task *t)
{
    struct ts *ts = t->data;

    if (ts->proc) {
        proc_kill(ts->proc);    /* ts_on_child finishes it */
        return;
    }
    if (ts->timer && evtimer_pending(ts->timer, NULL)) {
        evtimer_del(ts->timer);
        task_finish(t, TASK_CANCELLED, NULL, "cancelled while sleeping");
    }
    /* Otherwise between stages: ts_step sees the request. */
}

static void ts_close(struct task *t)
{
    struct ts *ts = t->data;

    if (!ts)
        return;
    if (ts->timer)
        event_free(ts->timer);
    if (ts->proc)
        proc_abandon(ts->proc);
    free(ts);
    t->data = NULL;
}

const struct task_kind test_sleep_kind = {
    .name = "test_sleep",
    .states = ts_state_names,
    .nstates = 3,
    .initial_state = TS_FIRST,
    .lease_s = 0,
    .max_attempts = 3,
    .retry_delay_s = 1,
    .resume_policy = TASK_RESUME_CONTINUE,
    .open = ts_open,
    .step = ts_step,
    .resume = ts_resume,
    .cancel = ts_cancel,
    .close = ts_close,
};

/* ---- the job: waits TEST_SLEEP_JOB_MS, then succeeds (for the tests of the
 * scheduler's lock and of wall-clock runs) ---------------------------------- */

enum tsj_state { TSJ_SLEEP };

static const char *const tsj_state_names[] = { [TSJ_SLEEP] = "sleep" };

static void tsj_on_timer(evutil_socket_t fd, short what, void *arg)
{
    sched_done(arg, SCHED_SUCCEEDED, "slept %d ms", TEST_SLEEP_JOB_MS);
}

static int tsj_open(struct sched_run *run, char *err, size_t errlen)
{
    struct event *timer = evtimer_new(sched_run_app(run)->base, tsj_on_timer, run);

    if (!timer) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sched_run_set_data(run, timer);
    return 0;
}

static void tsj_step(struct sched_run *run)
{
    switch ((enum tsj_state)sched_run_state(run)) {
    case TSJ_SLEEP:
        sched_run_log(run, "sleeping %d ms", TEST_SLEEP_JOB_MS);
        util_timer_ms(sched_run_data(run), TEST_SLEEP_JOB_MS);
        return;
    }
}

static void tsj_close(struct sched_run *run)
{
    event_free(sched_run_data(run));
}

const struct sched_job test_sleep_job = {
    .name = "test_sleep", .states = tsj_state_names, .nstates = 1,
    .initial_state = TSJ_SLEEP, .open = tsj_open, .step = tsj_step, .close = tsj_close,
};
