-- The live text of the functions of tasks (docs/ARCHITECTURE.md, "A SQL function").

CREATE OR REPLACE FUNCTION tasks_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Wakes the runners (LISTEN tasks) when a row becomes queued: a new task,
-- a retry or a task handed back by a draining server.  The payload is the
-- kind; PostgreSQL folds identical notifications of one transaction into
-- one and delivers them at commit, so a bulk insert wakes each runner once.
-- The holder of a running task is told of a cancel on channel task_cancel.
CREATE OR REPLACE FUNCTION tasks_notify() RETURNS trigger
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
