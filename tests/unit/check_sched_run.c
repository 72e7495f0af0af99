/* Unit tests of sched_run, a scheduled job's run, on a real loop against a
 * real PostgreSQL (TEST_DATABASE_URL; migrated here).  A job of two states
 * is run through them (each state visible in the `jobs` view while it
 * runs, its data opened and closed once, its outcome row and report); the
 * three outcomes; a job whose open fails; sched_done taken once and
 * nothing after it; a state outside the job's table; a run that outlives
 * its scheduler and finishes alone; the outcome names.  No Redis: runs go
 * without the lock (the job_runs row still makes a slot run once).  The
 * jobs are named srun_*: check_sched, which may run beside this test,
 * clears check_* rows. */
#include "config.h"

#include "unit_sched.h"

/* ---- the jobs under test ---------------------------------------------------
 * srun_states: first -> second -> sched_done with the outcome its arg
 * names; srun_open_fails: open refuses; srun_twice: sched_done twice, then
 * a state; srun_outside: a state the job does not have; srun_slow:
 * sched_done from a timer 100 ms after its first step. */

enum ck_state { CK_FIRST, CK_SECOND };
static const char *const ck_state_names[] = { [CK_FIRST] = "first", [CK_SECOND] = "second" };

struct ck_run {
    int steps;
    char seen_first[32];        /* the `jobs` view's state during "first" */
    char seen_second[32];       /* and during "second" */
};

static int ck_opened, ck_closed, ck_stepped;

static int ck_open(struct sched_run *run, char *err, size_t errlen)
{
    struct ck_run *c = calloc(1, sizeof *c);

    ck_assert_ptr_nonnull(c);
    sched_run_set_data(run, c);
    ck_opened++;
    return 0;
}

static void ck_close(struct sched_run *run)
{
    free(sched_run_data(run));
    ck_closed++;
}

/* The `jobs` view's state of the job of run, into buf. */
static void seen_state(struct sched_run *run, char *buf, size_t n)
{
    for (int i = 0; i < sched_job_count(us.app.sched); i++) {
        struct sched_job_view v;

        sched_job_view(us.app.sched, i, &v);
        if (strcmp(v.name, sched_run_job(run)) == 0) {
            ck_assert(v.running_here);
            snprintf(buf, n, "%s", v.state ? v.state : "(none)");
            return;
        }
    }
    ck_abort_msg("no job %s in the view", sched_run_job(run));
}

static void ck_step(struct sched_run *run)
{
    struct ck_run *c = sched_run_data(run);
    const enum sched_outcome *outcome = sched_run_arg(run);

    c->steps++;
    ck_stepped++;
    switch ((enum ck_state)sched_run_state(run)) {
    case CK_FIRST:
        ck_assert_ptr_eq(sched_run_app(run), &us.app);
        ck_assert(sched_run_scheduled_for(run) == 0);    /* manual: now */
        seen_state(run, c->seen_first, sizeof c->seen_first);
        sched_run_log(run, "in first; the view says %s", c->seen_first);
        sched_set_state(run, CK_SECOND);
        /* The next step comes from the loop, not from inside the call. */
        ck_assert_int_eq(c->steps, 1);
        return;
    case CK_SECOND:
        seen_state(run, c->seen_second, sizeof c->seen_second);
        sched_run_log(run, "in second; the view says %s", c->seen_second);
        sched_done(run, *outcome, "done in %d steps", c->steps);
        return;
    }
}

static const enum sched_outcome out_ok = SCHED_SUCCEEDED, out_problems = SCHED_PROBLEMS,
                                out_failed = SCHED_FAILED;

static const struct sched_job ck_job = {
    .name = "srun_states", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_ok,
    .open = ck_open, .step = ck_step, .close = ck_close,
};
static const struct sched_job ck_problems_job = {
    .name = "srun_problems", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_problems,
    .open = ck_open, .step = ck_step, .close = ck_close,
};
static const struct sched_job ck_failed_job = {
    .name = "srun_failed", .states = ck_state_names, .nstates = 2,
    .initial_state = CK_FIRST, .arg = &out_failed,
    .open = ck_open, .step = ck_step, .close = ck_close,
};

static int refuse_open(struct sched_run *run, char *err, size_t errlen)
{
    snprintf(err, errlen, "nothing to open here");
    return -1;
}

static const struct sched_job ck_open_fails_job = {
    .name = "srun_open_fails", .states = ck_state_names, .nstates = 2,
    .open = refuse_open, .step = ck_step, .close = ck_close,
};

static void twice_step(struct sched_run *run)
{
    ck_stepped++;
    sched_done(run, SCHED_SUCCEEDED, "the first word");
    sched_done(run, SCHED_FAILED, "the second word");     /* ignored */
    sched_set_state(run, CK_SECOND);                       /* ignored */
    sched_run_log(run, "still heard after sched_done");
}

static const struct sched_job ck_twice_job = {
    .name = "srun_twice", .states = ck_state_names, .nstates = 2,
    .open = ck_open, .step = twice_step, .close = ck_close,
};

static void outside_step(struct sched_run *run)
{
    ck_stepped++;
    sched_set_state(run, 7);
}

static const struct sched_job ck_outside_job = {
    .name = "srun_outside", .states = ck_state_names, .nstates = 2,
    .open = ck_open, .step = outside_step, .close = ck_close,
};

static void slow_fire(evutil_socket_t fd, short what, void *arg)
{
    sched_done(arg, SCHED_SUCCEEDED, "finished alone");   /* may free the run */
}

static void slow_step(struct sched_run *run)
{
    struct timeval tv = { 0, 100000 };

    ck_stepped++;
    ck_assert_int_eq(event_base_once(us.base, -1, EV_TIMEOUT, slow_fire, run, &tv), 0);
}

static const struct sched_job ck_slow_job = {
    .name = "srun_slow", .states = ck_state_names, .nstates = 2,
    .open = ck_open, .step = slow_step, .close = ck_close,
};

/* ---- the fixture -------------------------------------------------------- */

static void setup(void)
{
    us_up(false);
    us_q("DELETE FROM job_runs WHERE job LIKE 'srun_%%'");
    ck_opened = ck_closed = ck_stepped = 0;
}

static void teardown(void)
{
    us_down();
}

/* The loop turns until cond, or fails after US_WAIT_MS. */
#define turn_until(cond)                                                   \
    do {                                                                   \
        int64_t deadline_ = util_mono_ms() + US_WAIT_MS;                   \
        while (!(cond) && util_mono_ms() < deadline_)                      \
            event_base_loop(us.base, EVLOOP_ONCE);                         \
        ck_assert_msg(cond, "waited %d ms for %s", US_WAIT_MS, #cond);     \
    } while (0)

/* ---- the cases -------------------------------------------------------------- */

START_TEST(a_job_runs_through_its_states)
{
    struct us_ran r;
    struct sched_job_view v;
    long outcomes[SCHED_OUTCOMES];

    us_add(&ck_job);
    us_start();
    r = us_run("srun_states");
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_msg(strstr(r.text, "job srun_states: succeeded in ") == r.text, "%s", r.text);
    /* Each state of the job shows in the view while it runs. */
    us_assert_line(r, "in first; the view says first");
    us_assert_line(r, "in second; the view says second");
    us_assert_line(r, "done in 2 steps");
    /* Its row: a manual run, succeeded, with the detail lines. */
    ck_assert_str_eq(us_q("SELECT reason || ':' || outcome FROM job_runs"
                          " WHERE job = 'srun_states'"), "manual:succeeded");
    ck_assert_str_eq(us_q("SELECT detail FROM job_runs WHERE job = 'srun_states'"),
                     "in first; the view says first\nin second; the view says second\n"
                     "done in 2 steps");
    ck_assert_str_eq(us_q("SELECT finished_at IS NOT NULL AND lease_until IS NULL"
                          " FROM job_runs WHERE job = 'srun_states'"), "t");
    ck_assert_int_eq(ck_opened, 1);
    ck_assert_int_eq(ck_closed, 1);
    /* Nothing runs now: the view says so. */
    sched_job_view(us.app.sched, 0, &v);
    ck_assert_str_eq(v.name, "srun_states");
    ck_assert(!v.running_here);
    ck_assert_ptr_null(v.state);
    ck_assert_int_eq(sched_busy(us.app.sched), 0);
    sched_outcomes(us.app.sched, outcomes);
    ck_assert_int_eq(outcomes[SCHED_SUCCEEDED], 1);
}
END_TEST

START_TEST(three_outcomes_and_a_failed_open)
{
    struct us_ran r;
    long outcomes[SCHED_OUTCOMES];

    us_add(&ck_problems_job);
    us_add(&ck_failed_job);
    us_add(&ck_open_fails_job);
    us_start();

    /* With problems it ran: no error, the report says what to look at. */
    r = us_run("srun_problems");
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_msg(strstr(r.text, "job srun_problems: succeeded_with_problems"), "%s", r.text);
    ck_assert_str_eq(us_q("SELECT outcome FROM job_runs WHERE job = 'srun_problems'"),
                     "succeeded_with_problems");

    r = us_run("srun_failed");
    ck_assert_str_eq(r.error, "the job failed");
    ck_assert_str_eq(us_q("SELECT outcome FROM job_runs WHERE job = 'srun_failed'"), "failed");

    /* open refused: failed with its message; no step, and close is not
     * called. */
    ck_stepped = 0;
    r = us_run("srun_open_fails");
    ck_assert_str_eq(r.error, "the job failed");
    us_assert_line(r, "nothing to open here");
    ck_assert_str_eq(us_q("SELECT outcome || ':' || detail FROM job_runs"
                          " WHERE job = 'srun_open_fails'"), "failed:nothing to open here");
    ck_assert_int_eq(ck_stepped, 0);
    ck_assert_int_eq(ck_opened, 2);
    ck_assert_int_eq(ck_closed, 2);
    sched_outcomes(us.app.sched, outcomes);
    ck_assert_int_eq(outcomes[SCHED_SUCCEEDED], 0);
    ck_assert_int_eq(outcomes[SCHED_PROBLEMS], 1);
    ck_assert_int_eq(outcomes[SCHED_FAILED], 2);
}
END_TEST

START_TEST(sched_done_counts_once)
{
    struct us_ran r;
    long outcomes[SCHED_OUTCOMES];

    us_add(&ck_twice_job);
    us_start();
    r = us_run("srun_twice");
    /* The first word stands; the second and the state after it are
     * ignored, and the step is not called again. */
    ck_assert_msg(!r.failed, "%s", r.error);
    ck_assert_msg(strstr(r.text, "job srun_twice: succeeded in ") == r.text, "%s", r.text);
    ck_assert_ptr_null(strstr(r.text, "the second word"));
    ck_assert_str_eq(us_q("SELECT outcome || ':' || detail FROM job_runs"
                          " WHERE job = 'srun_twice'"),
                     "succeeded:the first word\nstill heard after sched_done");
    ck_assert_int_eq(ck_stepped, 1);
    ck_assert_int_eq(ck_opened, 1);
    ck_assert_int_eq(ck_closed, 1);
    ck_assert_str_eq(us_q("SELECT count(*) FROM job_runs WHERE job = 'srun_twice'"), "1");
    sched_outcomes(us.app.sched, outcomes);
    ck_assert_int_eq(outcomes[SCHED_SUCCEEDED], 1);
    ck_assert_int_eq(outcomes[SCHED_FAILED], 0);
}
END_TEST

START_TEST(a_state_outside_the_table_fails_the_run)
{
    struct us_ran r;

    us_add(&ck_outside_job);
    us_start();
    r = us_run("srun_outside");
    ck_assert_str_eq(r.error, "the job failed");
    ck_assert_str_eq(us_q("SELECT outcome || ':' || detail FROM job_runs"
                          " WHERE job = 'srun_outside'"),
                     "failed:internal error: state 7 of job srun_outside");
    ck_assert_int_eq(ck_stepped, 1);
    ck_assert_int_eq(ck_closed, 1);
}
END_TEST

START_TEST(a_run_outlives_its_scheduler_and_finishes_alone)
{
    struct us_ran r = { 0 };

    us_add(&ck_slow_job);
    us_start();
    sched_run_now(us.app.sched, "srun_slow", us_on_ran, &r);
    turn_until(ck_stepped == 1);
    ck_assert(!r.called);
    ck_assert_int_eq(sched_busy(us.app.sched), 1);
    ck_assert_str_eq(us_q("SELECT outcome FROM job_runs WHERE job = 'srun_slow'"), "running");

    /* The scheduler goes: the asker hears it at once; the run keeps its
     * data until the job's own sched_done, then closes and frees itself
     * (unit_loop_free in us_down: nothing of it stays on the loop). */
    sched_free(us.app.sched);
    us.app.sched = NULL;
    ck_assert(r.called);
    ck_assert_str_eq(r.error, "the server is stopping");
    ck_assert_int_eq(ck_closed, 0);
    turn_until(ck_closed == 1);
    ck_assert_int_eq(ck_opened, 1);
    /* Its outcome is not saved without the scheduler: the row's lease
     * marks it abandoned at the next start. */
    ck_assert_str_eq(us_q("SELECT outcome || ':' || (lease_until IS NOT NULL)::text"
                          " FROM job_runs WHERE job = 'srun_slow'"), "running:true");
}
END_TEST

START_TEST(outcome_names)
{
    ck_assert_str_eq(sched_outcome_name(SCHED_SUCCEEDED), "succeeded");
    ck_assert_str_eq(sched_outcome_name(SCHED_PROBLEMS), "succeeded_with_problems");
    ck_assert_str_eq(sched_outcome_name(SCHED_FAILED), "failed");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sched_run");
    TCase *tc = tcase_create("db");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_job_runs_through_its_states);
    tcase_add_test(tc, three_outcomes_and_a_failed_open);
    tcase_add_test(tc, sched_done_counts_once);
    tcase_add_test(tc, a_state_outside_the_table_fails_the_run);
    tcase_add_test(tc, a_run_outlives_its_scheduler_and_finishes_alone);
    tcase_add_test(tc, outcome_names);
    suite_add_tcase(s, tc);
    return us_main("check_sched_run", s);
}
