-- Three outcomes for long work (issue 12): it succeeded; it succeeded but
-- a person should look (a zip that skipped a missing video, objects that
-- reconcile cannot place); or it failed.  A task's problems are kept
-- beside its state, and its outcome derived from both; a job run's
-- outcome may now be 'succeeded_with_problems'.
ALTER TABLE tasks
    ADD COLUMN problems text CHECK (octet_length(problems) <= 16384),
    ADD COLUMN outcome text GENERATED ALWAYS AS (
        CASE WHEN state = 'succeeded' AND problems IS NOT NULL THEN 'succeeded_with_problems'
             WHEN state IN ('succeeded', 'failed', 'cancelled') THEN state
        END) STORED;

ALTER TABLE job_runs DROP CONSTRAINT job_runs_outcome_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_outcome_check
    CHECK (outcome IN ('running', 'succeeded', 'succeeded_with_problems', 'failed',
                       'abandoned', 'skipped'));
