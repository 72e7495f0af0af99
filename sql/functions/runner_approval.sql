-- The live text of the functions of runner approval (docs/ARCHITECTURE.md, "A SQL function").

-- The repository URL as src/tasks/build.c reads it (parse_repo): trailing
-- slashes, then one ".git", removed.
CREATE OR REPLACE FUNCTION runner_repo_norm(p_url text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(regexp_replace(p_url, '/+$', ''), '\.git$', '')
$$;

-- The repository a study builds (its metadata's player_repo_url, else the
-- default), and whether it may be built: the default always, any other
-- with an approval of that URL for that study.
CREATE OR REPLACE FUNCTION study_runner_repo(p_study bigint, p_default text)
RETURNS TABLE (repo_url text, approved boolean)
LANGUAGE sql STABLE AS $$
    SELECT r.url,
           r.url = runner_repo_norm(p_default) OR EXISTS (
               SELECT 1 FROM study_runner_approvals a
                WHERE a.study_id = p_study AND a.repo_url = r.url)
      FROM (SELECT runner_repo_norm(coalesce(nullif(s.metadata->>'player_repo_url', ''),
                                             p_default)) AS url
              FROM studies s WHERE s.id = p_study) r
$$;

-- The approval resource (type "runner-approvals", id: the study's uuid).
CREATE OR REPLACE FUNCTION runner_approval_resource(p_study bigint, p_repo text, p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'type', 'runner-approvals',
        'id', s.uuid,
        'attributes', json_build_object(
            'repo_url', a.repo_url,
            'approved_by', u.uuid,
            'approved_at', api_time(a.approved_at)),
        'relationships', json_build_object(
            'study', json_build_object('data', json_build_object('type', 'studies', 'id', s.uuid))),
        'links', json_build_object(
            'self', p_base || '/api/v1/studies/' || s.uuid || '/runner-approval/'))
      FROM study_runner_approvals a JOIN studies s ON s.id = a.study_id
      LEFT JOIN users u ON u.id = a.approved_by
     WHERE a.study_id = p_study AND a.repo_url = p_repo
$$;

-- POST /api/v1/studies/{id}/runner-approval/ with the repository URL the
-- reviewer looked at: it must be the study's current one (so an approval
-- never lands on a repository nobody saw).  Rows of (verdict, detail,
-- pointer, doc) as src/domain/perms.c replies to them.
CREATE OR REPLACE FUNCTION study_runner_approve(p_user bigint, p_study uuid, p_repo text,
                                     p_default text, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_repo text;
    v_new boolean;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT (has_study_perm(p_user, s.id, 'read_study__details')
                         OR has_site_perm(p_user, 'approve_runner_repo')) THEN
        RETURN QUERY SELECT 'not_found', 'No Study matches the given query.', NULL::text, NULL::json;
        RETURN;
    END IF;
    IF NOT has_site_perm(p_user, 'approve_runner_repo') THEN
        RETURN QUERY SELECT 'forbidden',
            'Only a site reviewer may approve a runner repository (approve_runner_repo).',
            NULL::text, NULL::json;
        RETURN;
    END IF;
    SELECT r.repo_url INTO v_repo FROM study_runner_repo(s.id, p_default) r;
    IF v_repo = runner_repo_norm(p_default) THEN
        RETURN QUERY SELECT 'invalid',
            'This study uses the default runner repository, which needs no approval.',
            '/data/attributes/repo_url', NULL::json;
        RETURN;
    END IF;
    IF p_repo IS NULL OR runner_repo_norm(p_repo) <> v_repo THEN
        RETURN QUERY SELECT 'invalid', format(
            'The study''s runner repository is %s: approve that URL (it may have changed since you looked).',
            v_repo), '/data/attributes/repo_url', NULL::json;
        RETURN;
    END IF;
    INSERT INTO study_runner_approvals (study_id, repo_url, approved_by)
    VALUES (s.id, v_repo, p_user)
    ON CONFLICT (study_id, repo_url) DO NOTHING;
    v_new := FOUND;
    IF v_new THEN
        INSERT INTO study_logs (study_id, user_id, action, extra)
        VALUES (s.id, p_user, 'runner repository approved', jsonb_build_object('repo_url', v_repo));
    END IF;
    RETURN QUERY SELECT CASE WHEN v_new THEN 'created' ELSE 'ok' END, NULL::text, NULL::text,
        json_build_object('data', runner_approval_resource(s.id, v_repo, p_base));
END;
$$;

-- DELETE /api/v1/studies/{id}/runner-approval/: every approval of the
-- study goes (its builds fall back to refusing a non-default repository).
CREATE OR REPLACE FUNCTION study_runner_revoke(p_user bigint, p_study uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_repos jsonb;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT (has_study_perm(p_user, s.id, 'read_study__details')
                         OR has_site_perm(p_user, 'approve_runner_repo')) THEN
        RETURN QUERY SELECT 'not_found', 'No Study matches the given query.', NULL::text, NULL::json;
        RETURN;
    END IF;
    IF NOT has_site_perm(p_user, 'approve_runner_repo') THEN
        RETURN QUERY SELECT 'forbidden',
            'Only a site reviewer may revoke a runner repository approval (approve_runner_repo).',
            NULL::text, NULL::json;
        RETURN;
    END IF;
    WITH d AS (DELETE FROM study_runner_approvals WHERE study_id = s.id RETURNING repo_url)
    SELECT jsonb_agg(repo_url ORDER BY repo_url) INTO v_repos FROM d;
    IF v_repos IS NULL THEN
        RETURN QUERY SELECT 'not_found', 'This study has no approved runner repository.',
            NULL::text, NULL::json;
        RETURN;
    END IF;
    INSERT INTO study_logs (study_id, user_id, action, extra)
    VALUES (s.id, p_user, 'runner repository approval revoked', jsonb_build_object('repo_urls', v_repos));
    RETURN QUERY SELECT 'deleted', NULL::text, NULL::text, NULL::json;
END;
$$;

CREATE OR REPLACE FUNCTION study_build_request(p_user bigint, p_study uuid, p_mode text, p_base text,
                                    p_default_repo text)
RETURNS TABLE (verdict text, detail text, task_uuid uuid, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_perm text := CASE p_mode WHEN 'deploy' THEN 'edit_study__build' ELSE 'edit_study__preview' END;
    v_id bigint;
    v_uuid uuid;
    v_repo text;
    v_ok boolean;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT 'not_found', 'No Study matches the given query.', NULL::uuid, NULL::json;
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, v_perm) THEN
        RETURN QUERY SELECT 'forbidden', format('You may not %s this study (%s).',
            CASE p_mode WHEN 'deploy' THEN 'build' ELSE 'preview' END, v_perm), NULL::uuid, NULL::json;
        RETURN;
    END IF;
    IF s.study_type <> 1 THEN
        RETURN QUERY SELECT 'invalid', 'Only Ember frame player studies have an experiment runner to build.',
            NULL::uuid, NULL::json;
        RETURN;
    END IF;
    SELECT r.repo_url, r.approved INTO v_repo, v_ok FROM study_runner_repo(s.id, p_default_repo) r;
    IF NOT v_ok THEN
        RETURN QUERY SELECT 'runner_repo_not_approved', format(
            'The runner repository %s is not the default one and is not approved for this study: '
            'a site reviewer must approve it first (POST /api/v1/studies/%s/runner-approval/).',
            v_repo, s.uuid), NULL::uuid, NULL::json;
        RETURN;
    END IF;
    -- The task first: its unique index may wait for a build that is ending
    -- (whose trigger locks the study row); taking the study row only after
    -- that wait keeps the two from deadlocking.
    BEGIN
        INSERT INTO tasks (kind, subject, payload)
        VALUES ('build_experiment', s.uuid::text,
                jsonb_build_object('mode', p_mode, 'study', s.uuid, 'user', p_user))
        RETURNING id, uuid INTO v_id, v_uuid;
        INSERT INTO study_builds (task_id, study_id, mode, requested_by)
        VALUES (v_id, s.id, p_mode, p_user);
        UPDATE studies SET is_building = true WHERE id = s.id;
    EXCEPTION WHEN unique_violation THEN
        SELECT t.uuid INTO v_uuid FROM tasks t
         WHERE t.kind = 'build_experiment' AND t.subject = s.uuid::text
           AND t.state IN ('queued', 'running');
        RETURN QUERY SELECT 'conflict',
            'A build or preview of this study is already queued or running' ||
            coalesce(' (task ' || v_uuid::text || ')', '') || '.', v_uuid, NULL::json;
        RETURN;
    END;
    RETURN QUERY SELECT 'created', NULL::text, v_uuid,
        json_build_object('data', build_resource(v_id, p_base));
END;
$$;
