-- The live text of the functions of erasure (docs/ARCHITECTURE.md, "A SQL function").

-- Erases p_child of p_user, or (p_child NULL) the whole account.
-- p_by: 'family' (the API: researchers and site admins cannot erase their
-- own account there) or 'admin' (studyhubctl).  One statement: the rows,
-- the report email and the storage task commit together.
CREATE OR REPLACE FUNCTION family_erase(p_user bigint, p_child uuid, p_by text)
RETURNS TABLE (verdict text, detail text, erasure uuid, report jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    u users;
    v_children bigint[];
    v_keep bigint[];
    v_drop bigint[];
    v_erasure bigint;
    v_uuid uuid;
    n_videos integer;
    n_cdel integer;
    n_ckeep integer;
    v_studies text[];
    v_report jsonb;
BEGIN
    SELECT * INTO u FROM users WHERE id = p_user AND erased_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', 'No User matches the given query.', NULL::uuid, NULL::jsonb;
        RETURN;
    END IF;
    IF p_child IS NOT NULL THEN
        SELECT array_agg(c.id) INTO v_children FROM children c
         WHERE c.uuid = p_child AND c.user_id = p_user AND c.erased_at IS NULL
           AND (p_by = 'admin' OR NOT c.deleted);
        IF v_children IS NULL THEN
            RETURN QUERY SELECT 'not_found', 'No Child matches the given query.', NULL::uuid,
                                NULL::jsonb;
            RETURN;
        END IF;
    ELSE
        IF p_by = 'family' AND (u.is_researcher OR u.is_site_admin) THEN
            RETURN QUERY SELECT 'conflict',
                'A researcher''s or site admin''s account is erased by a site admin.',
                NULL::uuid, NULL::jsonb;
            RETURN;
        END IF;
        SELECT coalesce(array_agg(c.id), '{}') INTO v_children FROM children c
         WHERE c.user_id = p_user AND c.erased_at IS NULL;
    END IF;

    SELECT coalesce(array_agg(x.id) FILTER (WHERE x.keep), '{}'),
           coalesce(array_agg(x.id) FILTER (WHERE NOT x.keep), '{}')
      INTO v_keep, v_drop
      FROM (SELECT r.id, (NOT r.is_preview AND consent_status(r.id) = 'accepted') AS keep
              FROM responses r WHERE r.child_id = ANY (v_children)) x;
    SELECT coalesce(array_agg(DISTINCT s.name ORDER BY s.name), '{}') INTO v_studies
      FROM responses r JOIN studies s ON s.id = r.study_id WHERE r.id = ANY (v_keep);

    INSERT INTO erasures (scope, subject_uuid, requested_by)
    VALUES (CASE WHEN p_child IS NULL THEN 'account' ELSE 'child' END,
            coalesce(p_child, u.uuid), p_by)
    RETURNING id, uuid INTO v_erasure, v_uuid;

    INSERT INTO erasure_objects (erasure_id, key, kind)
    SELECT v_erasure, v.full_name, 'video' FROM videos v WHERE v.response_id = ANY (v_drop)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n_videos = ROW_COUNT;
    -- Zips are caches: those of every study involved go, rebuilt on demand.
    INSERT INTO erasure_objects (erasure_id, key, kind)
    SELECT DISTINCT v_erasure, 'video-zips/' || s.uuid || '_', 'zips'
      FROM responses r JOIN studies s ON s.id = r.study_id
     WHERE r.child_id = ANY (v_children)
    ON CONFLICT DO NOTHING;
    DELETE FROM video_unplaced vu USING erasure_objects eo
     WHERE eo.erasure_id = v_erasure AND eo.kind = 'video' AND vu.key = eo.key;

    -- Rulings, feedback and video rows go with their responses.
    DELETE FROM responses WHERE id = ANY (v_drop);
    UPDATE responses SET exp_data = exp_data_deidentified(exp_data)
     WHERE id = ANY (v_keep);
    DELETE FROM feedback WHERE response_id = ANY (v_keep);

    DELETE FROM children c WHERE c.id = ANY (v_children)
       AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.child_id = c.id);
    GET DIAGNOSTICS n_cdel = ROW_COUNT;
    UPDATE children SET given_name = 'erased', gender = 'na', gestational_age_at_birth = NULL,
           additional_information = '', languages_spoken = '{}', existing_conditions = '{}',
           former_lookit_profile_id = '', deleted = true, erased_at = now()
     WHERE id = ANY (v_children);
    GET DIAGNOSTICS n_ckeep = ROW_COUNT;

    v_report := jsonb_build_object(
        'erasure', v_uuid, 'scope', CASE WHEN p_child IS NULL THEN 'account' ELSE 'child' END,
        'children_deleted', n_cdel, 'children_kept_deidentified', n_ckeep,
        'responses_deleted', coalesce(array_length(v_drop, 1), 0),
        'responses_kept', coalesce(array_length(v_keep, 1), 0),
        'videos_deleted', n_videos, 'studies_keeping_data', to_jsonb(v_studies));
    UPDATE erasures SET report = v_report,
           storage_done_at = CASE WHEN EXISTS (SELECT 1 FROM erasure_objects
                                                WHERE erasure_id = v_erasure)
                                  THEN NULL ELSE now() END
     WHERE id = v_erasure;

    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    VALUES ('erasure_report', u.email,
            CASE WHEN p_child IS NULL THEN 'Your account has been erased'
                 ELSE 'A child''s record has been erased' END,
            format(E'Hello,\n\nAs %s asked, we have erased %s.\n\n'
                   || E'Children''s records deleted: %s\n'
                   || E'Responses deleted (with their videos): %s\n'
                   || E'Video files deleted from storage: %s\n'
                   || E'Responses kept, de-identified: %s%s\n\n'
                   || E'A response is kept only when the study''s researchers had accepted '
                   || E'its consent: the study may use it as that consent allows. It no '
                   || E'longer holds the child''s name, conditions, languages or free text, '
                   || E'nor your name, email or demographics.\n\nReference: %s\n',
                   CASE WHEN p_by = 'admin' THEN 'a site administrator was' ELSE 'you' END,
                   CASE WHEN p_child IS NULL THEN 'your account and everything in it'
                        ELSE 'one child''s record' END,
                   n_cdel + n_ckeep, coalesce(array_length(v_drop, 1), 0), n_videos,
                   coalesce(array_length(v_keep, 1), 0),
                   CASE WHEN cardinality(v_studies) > 0
                        THEN ' (studies: ' || array_to_string(v_studies, ', ') || ')'
                        ELSE '' END,
                   v_uuid));

    IF p_child IS NULL THEN
        DELETE FROM demographic_data WHERE user_id = p_user;
        DELETE FROM api_tokens WHERE user_id = p_user;
        DELETE FROM family_messages WHERE user_id = p_user;   -- sql/086
        IF EXISTS (SELECT 1 FROM children WHERE user_id = p_user) THEN
            -- Kept only as the parent of a kept child: nothing of the person.
            UPDATE users SET email = 'erased-' || uuid || '@erased.invalid', password_hash = '',
                   given_name = '', middle_name = '', family_name = '', nickname = '',
                   identicon = '', is_active = false, former_lookit_id = '',
                   linked_former_lookit_ids = '{}', email_next_session = false,
                   email_new_studies = false, email_study_updates = false,
                   email_response_questions = false, session_epoch = session_epoch + 1,
                   erased_at = now()
             WHERE id = p_user;
        ELSE
            DELETE FROM users WHERE id = p_user;
        END IF;
    END IF;

    IF EXISTS (SELECT 1 FROM erasure_objects WHERE erasure_id = v_erasure) THEN
        INSERT INTO tasks (kind, subject, payload)
        VALUES ('erase_storage', v_uuid::text, jsonb_build_object('erasure', v_uuid));
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, v_uuid, v_report;
END;
$$;
