-- 010_tasks: the durable task queue (src/core/task.c), the log of every
-- stage a task went through, and the record of scheduled job runs
-- (src/core/sched.c).
--
-- The tasks row is the only copy of a task's progress: several server
-- processes claim rows with FOR UPDATE SKIP LOCKED, keep them with a lease
-- they renew while the task runs, and another process resumes (or fails)
-- a row whose lease ran out.  Anyone may enqueue with a plain INSERT, in
-- the same statement as the change that asks for the work (see
-- include/studyhub/core/task.h); a trigger wakes the runners.

CREATE TABLE tasks (
    id                bigserial PRIMARY KEY,
    uuid              uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    -- The registered kind (struct task_kind.name) that runs it.
    kind              text NOT NULL CHECK (kind <> ''),
    -- What the task works on (a study's uuid, ...) and its exclusivity
    -- key: at most one queued-or-running task per (kind, subject), see
    -- tasks_one_active.  NULL for work that may run any number of times.
    subject           text,
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded',
                                       'failed', 'cancelled')),
    -- The kind's own state name (its names table); NULL until the first
    -- stage starts.  A queued row resumes in this stage.
    stage             text,
    payload           jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    -- Claims so far (fresh starts, retries and resumptions after a crash).
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- NULL: the kind's default.
    max_attempts      integer CHECK (max_attempts IS NULL OR max_attempts >= 1),
    run_after         timestamptz NOT NULL DEFAULT now(),
    -- "host/pidns/pid/token" of the process running it, and until when it
    -- is trusted to be alive; both set exactly while running.
    lease_owner       text,
    lease_until       timestamptz,
    -- Set by task cancel (admin, API); the runner that holds the lease is
    -- woken on channel task_cancel.
    cancel_requested  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- Why the last attempt failed (or the task was cancelled).
    error             text,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
);

-- "One build per study at a time", across every server: an INSERT of a
-- second active task for the same (kind, subject) fails with 23505, which
-- rolls back the caller's whole statement (the study is not marked twice).
CREATE UNIQUE INDEX tasks_one_active ON tasks (kind, subject)
    WHERE subject IS NOT NULL AND state IN ('queued', 'running');
-- The claim: due queued rows, oldest first; running rows by lease expiry.
CREATE INDEX tasks_queued ON tasks (run_after, id) WHERE state = 'queued';
CREATE INDEX tasks_running ON tasks (lease_until) WHERE state = 'running';
-- Listing one subject's tasks (a study's builds), newest first.
CREATE INDEX tasks_kind_subject ON tasks (kind, subject, id DESC);
-- The cleanup of old finished tasks.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE FUNCTION tasks_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_touch();

-- Wakes the runners (LISTEN tasks) when a row becomes queued: a new task,
-- a retry or a task handed back by a draining server.  The payload is the
-- kind; PostgreSQL folds identical notifications of one transaction into
-- one and delivers them at commit, so a bulk insert wakes each runner once.
-- The holder of a running task is told of a cancel on channel task_cancel.
CREATE FUNCTION tasks_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'queued' AND
       (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'queued') THEN
        PERFORM pg_notify('tasks', NEW.kind);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.state = 'running' AND NEW.cancel_requested
       AND NOT OLD.cancel_requested THEN
        PERFORM pg_notify('task_cancel', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_notify();

-- One row per stage a task entered, per attempt: when, how it ended, and
-- the tail of its log (the runner keeps the last 32 KiB).  The open row of
-- a running task has ended_at NULL; a row left open by a dead process is
-- closed 'interrupted' when the task is resumed.
CREATE TABLE task_stages (
    id          bigserial PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    stage       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    outcome     text CHECK (outcome IN ('succeeded', 'failed', 'cancelled',
                                        'interrupted', 'skipped')),
    log         text NOT NULL DEFAULT '' CHECK (octet_length(log) <= 65536),
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX task_stages_task ON task_stages (task_id, id);

-- Every run of a scheduled job.  (job, scheduled_for) is unique so a slot
-- runs once however many servers see it come due; manual runs use the
-- time they were asked for.  A row still 'running' after its lease ran out
-- belonged to a server that died and is marked 'abandoned'.
CREATE TABLE job_runs (
    id             bigserial PRIMARY KEY,
    job            text NOT NULL,
    scheduled_for  timestamptz NOT NULL,
    -- schedule: on time; catch-up: missed while no server ran; manual:
    -- studyhubctl run; baseline: first sight of a job, nothing run.
    reason         text NOT NULL CHECK (reason IN ('schedule', 'catch-up',
                                                   'manual', 'baseline')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    lease_until    timestamptz,
    outcome        text NOT NULL DEFAULT 'running'
                   CHECK (outcome IN ('running', 'succeeded', 'failed',
                                      'abandoned', 'skipped')),
    detail         text NOT NULL DEFAULT '' CHECK (octet_length(detail) <= 65536),
    instance       text NOT NULL,
    UNIQUE (job, scheduled_for),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX job_runs_job_started ON job_runs (job, started_at DESC);
