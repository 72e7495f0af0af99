-- The live text of the functions of builds (docs/ARCHITECTURE.md, "A SQL function").

-- ---------------------------------------------------------------- documents
-- A build as the API shows it (type "builds", id: the task's uuid), with
-- its stages: when each started and ended, how, and the tail of its log.
CREATE OR REPLACE FUNCTION build_resource(p_task bigint, p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'type', 'builds',
        'id', t.uuid,
        'attributes', json_build_object(
            'mode', b.mode,
            'state', t.state,
            'stage', t.stage,
            'repo_url', b.repo_url,
            'sha', b.sha,
            'reused', b.reused,
            'cancel_requested', t.cancel_requested,
            'attempts', t.attempts,
            'error', t.error,
            'created', api_time(t.created_at),
            'started', api_time(t.started_at),
            'finished', api_time(t.finished_at),
            'stages', coalesce((
                SELECT json_agg(json_build_object(
                           'stage', s.stage, 'attempt', s.attempt,
                           'outcome', coalesce(s.outcome, 'running'),
                           'started', api_time(s.started_at),
                           'ended', api_time(s.ended_at),
                           'log', right(s.log, 4000)) ORDER BY s.id)
                  FROM task_stages s WHERE s.task_id = t.id), '[]'::json)),
        'relationships', json_build_object(
            'study', json_build_object('data', json_build_object('type', 'studies', 'id', st.uuid))),
        'links', json_build_object(
            'self', p_base || '/api/v1/studies/' || st.uuid || '/builds/' || t.uuid || '/'))
      FROM tasks t JOIN study_builds b ON b.task_id = t.id
      JOIN studies st ON st.id = b.study_id
     WHERE t.id = p_task
$$;

-- GET /api/v1/studies/{id}/builds/: one page of the study's builds, newest
-- first, as rows of (verdict, detail, count, item); an empty page is one
-- row with item NULL.
CREATE OR REPLACE FUNCTION study_builds_list(p_user bigint, p_study uuid, p_limit int, p_offset int,
                                  p_base text)
RETURNS TABLE (verdict text, detail text, count bigint, item json)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s studies;
    v_count bigint;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT 'not_found', 'No Study matches the given query.',
            NULL::bigint, NULL::json;
        RETURN;
    END IF;
    SELECT count(*) INTO v_count FROM study_builds WHERE study_id = s.id;
    IF v_count = 0 OR p_offset >= v_count THEN
        RETURN QUERY SELECT 'ok', NULL::text, v_count, NULL::json;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT 'ok', NULL::text, v_count, build_resource(b.task_id, p_base)
      FROM study_builds b WHERE b.study_id = s.id
     ORDER BY b.task_id DESC LIMIT p_limit OFFSET p_offset;
END;
$$;

-- One build of a study (GET .../builds/{task}/ and the check before a
-- DELETE): verdict, the task's id and state, and the document.  Cancelling
-- needs the permission of the build's mode.
CREATE OR REPLACE FUNCTION study_build_get(p_user bigint, p_study uuid, p_task uuid, p_for_cancel boolean,
                                p_base text)
RETURNS TABLE (verdict text, detail text, task_id bigint, state text, doc json)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s studies;
    b study_builds;
    t tasks;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT 'not_found', 'No Study matches the given query.', NULL::bigint,
            NULL::text, NULL::json;
        RETURN;
    END IF;
    SELECT x.* INTO t FROM tasks x WHERE x.uuid = p_task AND x.kind = 'build_experiment';
    IF FOUND THEN
        SELECT x.* INTO b FROM study_builds x WHERE x.task_id = t.id AND x.study_id = s.id;
    END IF;
    IF t.id IS NULL OR b.task_id IS NULL THEN
        RETURN QUERY SELECT 'not_found', 'No such build of this study.', NULL::bigint,
            NULL::text, NULL::json;
        RETURN;
    END IF;
    IF p_for_cancel AND NOT has_study_perm(p_user, s.id,
            CASE b.mode WHEN 'deploy' THEN 'edit_study__build' ELSE 'edit_study__preview' END) THEN
        RETURN QUERY SELECT 'forbidden', 'You may not cancel this build.', t.id, t.state, NULL::json;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, t.id, t.state,
        json_build_object('data', build_resource(t.id, p_base));
END;
$$;

-- ---------------------------------------------------------------- the end of a build
-- Reports the end of build p_task once: clears is_building, marks the
-- study built (a successful deploy) and pins the commit it used in its
-- metadata (when the metadata named none, so a deploy after a preview
-- builds what was previewed), writes ONE study log whose extra holds every
-- stage (stage, outcome, start, end, tail of its log) and queues ONE email
-- to the study's admins (the requester when it has none).  p_outcome NULL:
-- derived (cancel requested: cancelled; the last stage before 'finish'
-- failed: failed; else succeeded).  Returns the outcome and error used, or
-- nothing when it had already been settled.
CREATE OR REPLACE FUNCTION study_build_settle(p_task bigint, p_outcome text, p_error text)
RETURNS TABLE (outcome text, error text)
LANGUAGE plpgsql AS $$
DECLARE
    b study_builds;
    t tasks;
    s studies;
    v_outcome text;
    v_error text := p_error;
    v_fstage text;         -- the failing stage, its outcome and log tail
    v_foutcome text;
    v_ftail text;
    v_stages json;
    v_action text;
    v_subject text;
    v_body text;
BEGIN
    SELECT * INTO b FROM study_builds WHERE task_id = p_task FOR UPDATE;
    IF NOT FOUND OR b.settled_at IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT * INTO t FROM tasks WHERE id = p_task;
    SELECT * INTO s FROM studies WHERE id = b.study_id FOR UPDATE;
    -- The stage that failed: the last one before 'finish' that did not end well.
    SELECT st.stage, st.outcome, right(st.log, 2000) INTO v_fstage, v_foutcome, v_ftail
      FROM task_stages st WHERE st.task_id = p_task AND st.stage <> 'finish'
     ORDER BY st.id DESC LIMIT 1;
    v_outcome := coalesce(p_outcome,
        CASE WHEN t.cancel_requested THEN 'cancelled'
             WHEN coalesce(v_foutcome, '') IN ('failed', 'interrupted') THEN 'failed'
             ELSE 'succeeded' END);
    IF v_outcome NOT IN ('succeeded', 'failed', 'cancelled') THEN
        v_outcome := 'failed';
    END IF;
    IF v_outcome <> 'failed' OR coalesce(v_foutcome, '') NOT IN ('failed', 'interrupted') THEN
        v_fstage := NULL;
        v_ftail := NULL;
    END IF;
    IF v_outcome = 'failed' AND v_error IS NULL THEN
        v_error := coalesce(t.error, 'the build failed');
    END IF;
    IF v_outcome = 'cancelled' AND v_error IS NULL THEN
        v_error := coalesce(t.error, 'cancelled');
    END IF;
    SELECT coalesce(json_agg(json_build_object(
               'stage', st.stage, 'attempt', st.attempt,
               'outcome', coalesce(st.outcome, 'running'),
               'started', api_time(st.started_at), 'ended', api_time(st.ended_at),
               'log', right(st.log, 8000)) ORDER BY st.id), '[]'::json)
      INTO v_stages FROM task_stages st WHERE st.task_id = p_task;

    UPDATE studies SET is_building = false,
        built = built OR (v_outcome = 'succeeded' AND b.mode = 'deploy'),
        metadata = CASE
            WHEN v_outcome = 'succeeded' AND b.sha IS NOT NULL
             AND coalesce(metadata->>'last_known_player_sha', '') !~ '^[0-9a-fA-F]{40}$'
            THEN metadata || jsonb_build_object('last_known_player_sha', b.sha)
            ELSE metadata END
     WHERE id = s.id;
    UPDATE study_builds SET settled_at = now(), outcome = v_outcome WHERE task_id = p_task;

    v_action := CASE v_outcome
        WHEN 'succeeded' THEN CASE b.mode WHEN 'deploy' THEN 'deployed' ELSE 'previewed' END
        WHEN 'failed' THEN 'failed to build'
        ELSE 'build cancelled' END;
    INSERT INTO study_logs (study_id, user_id, action, extra)
    VALUES (s.id, b.requested_by, v_action, jsonb_build_object(
        'task', t.uuid, 'mode', b.mode, 'outcome', v_outcome,
        'repo_url', b.repo_url, 'sha', b.sha, 'reused', b.reused,
        'error', v_error, 'failed_stage', v_fstage,
        'stages', v_stages));

    v_subject := CASE v_outcome
        WHEN 'succeeded' THEN CASE b.mode
            WHEN 'deploy' THEN format('Experiment runner built: "%s" is deployed', s.name)
            ELSE format('Preview of "%s" is ready', s.name) END
        WHEN 'failed' THEN format('Experiment runner build failed for "%s"', s.name)
        ELSE format('Experiment runner build cancelled for "%s"', s.name) END;
    v_body := CASE v_outcome
        WHEN 'succeeded' THEN format(E'The %s of study "%s" (%s) succeeded.\n\nRunner: %s at %s%s.\n',
            CASE b.mode WHEN 'deploy' THEN 'build' ELSE 'preview build' END, s.name, s.uuid,
            coalesce(b.repo_url, '?'), coalesce(b.sha, '?'),
            CASE WHEN b.reused THEN ' (an earlier build of this commit was reused)' ELSE '' END)
        WHEN 'failed' THEN format(E'The %s of study "%s" (%s) failed%s.\n\nError: %s\n%s',
            CASE b.mode WHEN 'deploy' THEN 'build' ELSE 'preview build' END, s.name, s.uuid,
            CASE WHEN v_fstage IS NULL THEN '' ELSE format(' in stage %s', v_fstage) END, v_error,
            coalesce(E'\nThe end of the stage''s log:\n\n' || nullif(v_ftail, '') || E'\n', ''))
        ELSE format(E'The %s of study "%s" (%s) was cancelled.\n',
            CASE b.mode WHEN 'deploy' THEN 'build' ELSE 'preview build' END, s.name, s.uuid) END;
    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    SELECT 'build_' || v_outcome, r.email, v_subject, v_body
      FROM (SELECT DISTINCT u.email FROM study_members sm JOIN users u ON u.id = sm.user_id
             WHERE sm.study_id = s.id AND sm.grp = 'admin' AND u.is_active
            UNION
            SELECT u.email FROM users u
             WHERE u.id = b.requested_by AND u.is_active
               AND NOT EXISTS (SELECT 1 FROM study_members sm JOIN users a ON a.id = sm.user_id
                                WHERE sm.study_id = s.id AND sm.grp = 'admin' AND a.is_active)) r;
    RETURN QUERY SELECT v_outcome, v_error;
END;
$$;

-- The safety net: a build task that ends without its finish stage having
-- settled it (cancelled while still queued; failed by the runner because
-- it could not be opened or resumed) is settled here, in the same
-- transaction as its end.
CREATE OR REPLACE FUNCTION tasks_build_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM study_build_settle(NEW.id, NEW.state, NEW.error);
    RETURN NULL;
END;
$$;

-- At start: a study marked building without a queued or running build
-- (older data, or a hand-edited row) is unmarked, with a log saying so.
CREATE OR REPLACE FUNCTION study_build_repair() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH fixed AS (
        UPDATE studies s SET is_building = false
         WHERE s.is_building AND NOT EXISTS (
               SELECT 1 FROM tasks t
                WHERE t.kind = 'build_experiment' AND t.subject = s.uuid::text
                  AND t.state IN ('queued', 'running'))
        RETURNING s.id),
    logged AS (
        INSERT INTO study_logs (study_id, action, extra)
        SELECT id, 'build state repaired',
               '{"detail": "marked building without a queued or running build; unmarked at start"}'
          FROM fixed RETURNING 1)
    SELECT count(*) INTO n FROM logged;
    RETURN n;
END;
$$;
