-- The live text of the functions of workflow (docs/ARCHITECTURE.md, "A SQL function").

-- THE lab permission check, shaped as has_study_perm: a site-wide grant,
-- then the grant of the caller's group in this lab.  Inactive users hold
-- nothing; unknown users, labs or permissions: false.
CREATE OR REPLACE FUNCTION has_lab_perm(p_user bigint, p_lab bigint, p_perm text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT has_site_perm(p_user, p_perm) OR EXISTS (
        SELECT 1 FROM lab_members lm
          JOIN users u ON u.id = lm.user_id AND u.is_active
          JOIN group_permissions gp
            ON gp.group_kind = 'lab' AND gp.group_name = lm.role
           AND gp.permission = p_perm
         WHERE lm.lab_id = p_lab AND lm.user_id = p_user
    )
$$;

-- Who may see a lab at all: approved labs are public to researchers (they
-- have to find a lab to ask to join it); others only to holders of
-- read_lab__details.
CREATE OR REPLACE FUNCTION lab_visible(p_user bigint, p_lab bigint, p_approved boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_approved OR has_lab_perm(p_user, p_lab, 'read_lab__details')
$$;

-- 090_participate: studies with no build (issue 14).  External (2) and
-- jsPsych (3) studies have no experiment runner to build, so the 'built'
-- guard of the workflow (activation) holds for them as it is.
CREATE OR REPLACE FUNCTION workflow_guard_ok(p_guard text, s studies)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_guard IS NULL THEN true
                WHEN p_guard = 'built' THEN s.built OR s.study_type IN (2, 3)
                ELSE false END
$$;

-- Who last submitted the study (the "submitter" of approve and reject
-- emails); its creator when nobody did through the workflow.
CREATE OR REPLACE FUNCTION study_submitter(p_study bigint, p_creator bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT l.user_id FROM study_logs l
                      WHERE l.study_id = p_study AND l.action = 'submitted'
                        AND l.user_id IS NOT NULL
                      ORDER BY l.created_at DESC, l.id DESC LIMIT 1), p_creator)
$$;

-- The addresses a notification goes to (one row each, no duplicates).
CREATE OR REPLACE FUNCTION workflow_recipients(p_study bigint, p_creator bigint, p_notify text)
RETURNS TABLE (email text) LANGUAGE sql STABLE AS $$
    SELECT DISTINCT u.email FROM users u
     WHERE u.is_active
       AND ((p_notify = 'study_admins'
             AND u.id IN (SELECT sm.user_id FROM study_members sm
                           WHERE sm.study_id = p_study AND sm.grp = 'admin'))
         OR (p_notify = 'submitter' AND u.id = study_submitter(p_study, p_creator)))
$$;

-- The text of a workflow email.
CREATE OR REPLACE FUNCTION workflow_email_body(p_subject text, p_study_name text, p_study_uuid uuid,
                                    p_from text, p_to text, p_trigger text,
                                    p_actor bigint, p_comments text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format(E'%s.\n\nStudy: %s (%s)\nChange: %s -> %s (%s)\nBy: %s\n\nComments:\n%s\n',
                  p_subject, p_study_name, p_study_uuid, p_from, p_to, p_trigger,
                  coalesce((SELECT email FROM users WHERE id = p_actor), 'the system'),
                  coalesce(nullif(p_comments, ''), '(none)'))
$$;

-- ---------------------------------------------------------------- rendering
-- The researcher's view of a study: every field but the salt.
CREATE OR REPLACE FUNCTION study_research_resource(s studies, p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'type', 'studies',
        'id', s.uuid,
        'attributes', json_build_object(
            'name', s.name,
            'preview_summary', s.preview_summary,
            'short_description', s.short_description,
            'purpose', s.purpose,
            'criteria', s.criteria,
            'duration', s.duration,
            'contact_info', s.contact_info,
            'compensation_description', s.compensation_description,
            'min_age_days', s.min_age_days,
            'min_age_months', s.min_age_months,
            'min_age_years', s.min_age_years,
            'max_age_days', s.max_age_days,
            'max_age_months', s.max_age_months,
            'max_age_years', s.max_age_years,
            'criteria_expression', s.criteria_expression,
            'image', s.image,
            'exit_url', s.exit_url,
            'priority', s.priority,
            'comments', s.comments,
            'structure', s.structure,
            'generator', s.generator,
            'use_generator', s.use_generator,
            'display_full_screen', s.display_full_screen,
            'state', s.state,
            'status_change_date', api_time(s.status_change_date),
            'public', s.public,
            'shared_preview', s.shared_preview,
            'metadata', s.metadata,
            'built', s.built,
            'is_building', s.is_building,
            'study_type', s.study_type,
            'hash_digits', s.hash_digits,
            'date_created', api_time(s.date_created),
            'date_modified', api_time(s.date_modified),
            'pk', s.id),
        'relationships', json_build_object(
            'lab', json_build_object('data', json_build_object(
                'type', 'labs', 'id', (SELECT l.uuid FROM labs l WHERE l.id = s.lab_id))),
            'creator', json_build_object('data', (SELECT json_build_object('type', 'users', 'id', u.uuid)
                                                     FROM users u WHERE u.id = s.creator_id)),
            'logs', json_build_object('links', json_build_object(
                'related', p_base || '/api/v1/researcher/studies/' || s.uuid || '/logs/')),
            'groups', json_build_object('links', json_build_object(
                'related', p_base || '/api/v1/researcher/studies/' || s.uuid || '/groups/'))),
        'links', json_build_object(
            'self', p_base || '/api/v1/researcher/studies/' || s.uuid || '/'))
$$;

-- The researcher's view of a lab, with the caller's standing in it.
CREATE OR REPLACE FUNCTION lab_research_resource(l labs, p_user bigint, p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'type', 'labs',
        'id', l.uuid,
        'attributes', json_build_object(
            'name', l.name,
            'slug', l.slug,
            'institution', l.institution,
            'principal_investigator_name', l.principal_investigator_name,
            'contact_email', l.contact_email,
            'contact_phone', l.contact_phone,
            'lab_website', l.lab_website,
            'description', l.description,
            'irb_contact_info', l.irb_contact_info,
            'approved_to_test', l.approved_to_test,
            'date_created', api_time(l.date_created),
            'my_group', (SELECT lm.role FROM lab_members lm
                          WHERE lm.lab_id = l.id AND lm.user_id = p_user),
            'join_requested', EXISTS (SELECT 1 FROM lab_join_requests r
                                       WHERE r.lab_id = l.id AND r.user_id = p_user),
            'pk', l.id),
        'links', json_build_object(
            'self', p_base || '/api/v1/researcher/labs/' || l.uuid || '/'))
$$;

-- A person as the management lists show them.
CREATE OR REPLACE FUNCTION person_attrs(u users) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('email', u.email, 'given_name', u.given_name,
                             'family_name', u.family_name, 'is_active', u.is_active)
$$;

-- The reply of a management function.
CREATE OR REPLACE FUNCTION mgmt_verdict(p_verdict text, p_detail text, p_pointer text DEFAULT NULL)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_verdict, p_detail, p_pointer, NULL::json
$$;

-- ---------------------------------------------------------------- studies
-- The row s with the editable fields given in a (a JSON object keyed by
-- field name, values already checked by the caller) replaced.  Keys that
-- are not editable fields are ignored here; 'lab' is a relationship and
-- handled by the callers.
CREATE OR REPLACE FUNCTION study_with_attrs(s studies, a jsonb)
RETURNS studies LANGUAGE sql STABLE AS $$
    SELECT jsonb_populate_record(s, coalesce((
        SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(a) e
         WHERE e.key <> 'lab' AND e.key IN (SELECT field FROM study_review_fields)), '{}'))
$$;

-- Stores the editable fields of n into its row: the one list of editable
-- columns (create, edit and clone all go through it).
CREATE OR REPLACE FUNCTION study_store(n studies)
RETURNS studies LANGUAGE plpgsql AS $$
DECLARE
    r studies;
BEGIN
    UPDATE studies SET
        name = n.name, preview_summary = n.preview_summary,
        short_description = n.short_description, purpose = n.purpose,
        criteria = n.criteria, duration = n.duration, contact_info = n.contact_info,
        compensation_description = n.compensation_description,
        min_age_days = n.min_age_days, min_age_months = n.min_age_months,
        min_age_years = n.min_age_years, max_age_days = n.max_age_days,
        max_age_months = n.max_age_months, max_age_years = n.max_age_years,
        criteria_expression = n.criteria_expression, image = n.image,
        exit_url = n.exit_url, priority = n.priority, comments = n.comments,
        structure = n.structure, generator = n.generator,
        use_generator = n.use_generator, display_full_screen = n.display_full_screen,
        public = n.public, shared_preview = n.shared_preview, metadata = n.metadata,
        study_type = n.study_type, lab_id = n.lab_id
     WHERE id = n.id
    RETURNING * INTO r;
    RETURN r;
END;
$$;

-- A study whose age range is empty accepts nobody: refused.  Raised (not
-- returned) so that a create that already inserted rolls back whole;
-- perms.c answers SQLSTATE SH400 with 400, the message as detail and the
-- hint as the pointer.
CREATE OR REPLACE FUNCTION study_check_ages(n studies)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF n.min_age_years * 365 + n.min_age_months * 30 + n.min_age_days
       > n.max_age_years * 365 + n.max_age_months * 30 + n.max_age_days THEN
        RAISE EXCEPTION 'The maximum age is below the minimum age.'
            USING ERRCODE = 'SH400', HINT = '/data/attributes/max_age_years';
    END IF;
END;
$$;

-- The target lab of a create, clone or move: NULL when the caller cannot
-- see it (or it does not exist).
CREATE OR REPLACE FUNCTION mgmt_visible_lab(p_user bigint, p_lab uuid)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT l.id FROM labs l
     WHERE l.uuid = p_lab AND lab_visible(p_user, l.id, l.approved_to_test)
$$;

-- POST /api/v1/researcher/studies/: a new study in a lab (needs
-- associate_lab__study there); the creator becomes its admin.
CREATE OR REPLACE FUNCTION study_create(p_user bigint, p_lab uuid, p_attrs jsonb, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    v_lab bigint := mgmt_visible_lab(p_user, p_lab);
    s studies;
BEGIN
    IF v_lab IS NULL THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'No lab with this id, or you cannot see it.', '/data/relationships/lab');
        RETURN;
    END IF;
    IF NOT has_lab_perm(p_user, v_lab, 'associate_lab__study') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not create studies in this lab (associate_lab__study).');
        RETURN;
    END IF;
    INSERT INTO studies (name, lab_id, creator_id)
    VALUES (p_attrs->>'name', v_lab, p_user) RETURNING * INTO s;
    s := study_store(study_with_attrs(s, p_attrs));
    PERFORM study_check_ages(s);
    INSERT INTO study_members (study_id, user_id, grp) VALUES (s.id, p_user, 'admin');
    INSERT INTO study_logs (study_id, user_id, action, extra)
    VALUES (s.id, p_user, 'created', '{}');
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', study_research_resource(s, p_base));
END;
$$;

-- POST /api/v1/researcher/studies/{id}/clone/: a copy with a new uuid and
-- salt, in state created, made by the caller (its admin), in the source's
-- lab or the one given.  Needs read_study__details on the source and
-- associate_lab__study on the target lab.
CREATE OR REPLACE FUNCTION study_clone(p_user bigint, p_study uuid, p_lab uuid, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    src studies;
    v_lab bigint;
    s studies;
BEGIN
    SELECT * INTO src FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, src.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    v_lab := CASE WHEN p_lab IS NULL THEN src.lab_id ELSE mgmt_visible_lab(p_user, p_lab) END;
    IF v_lab IS NULL THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'No lab with this id, or you cannot see it.', '/data/relationships/lab');
        RETURN;
    END IF;
    IF NOT has_lab_perm(p_user, v_lab, 'associate_lab__study') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not create studies in this lab (associate_lab__study).');
        RETURN;
    END IF;
    INSERT INTO studies (name, lab_id, creator_id, hash_digits)
    VALUES ('Copy of ' || src.name, v_lab, p_user, src.hash_digits) RETURNING * INTO s;
    INSERT INTO study_must_have_participated (study_id, required_study_id)
    SELECT s.id, m.required_study_id FROM study_must_have_participated m
     WHERE m.study_id = src.id;
    INSERT INTO study_must_not_have_participated (study_id, excluded_study_id)
    SELECT s.id, m.excluded_study_id FROM study_must_not_have_participated m
     WHERE m.study_id = src.id;
    -- Every editable field but the name (and the lab chosen above).
    src.id := s.id;
    src.name := s.name;
    src.lab_id := v_lab;
    s := study_store(src);
    INSERT INTO study_members (study_id, user_id, grp) VALUES (s.id, p_user, 'admin');
    INSERT INTO study_logs (study_id, user_id, action, extra)
    VALUES (s.id, p_user, 'created', jsonb_build_object('cloned_from', p_study));
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', study_research_resource(s, p_base));
END;
$$;

-- PATCH /api/v1/researcher/studies/{id}/: needs edit_study__details (and
-- to move it, edit_study__lab plus associate_lab__study on the new lab).
-- The row is locked first, so the fields compared are the latest and a
-- transition cannot slip in between.  Changing a field whose
-- forces_review_in holds the current state sends the study back to
-- rejected; either that or a change of a notify_in field is logged and
-- emailed to the study admins, naming the fields.
CREATE OR REPLACE FUNCTION study_edit(p_user bigint, p_study uuid, p_attrs jsonb, p_lab uuid, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    n studies;
    v_lab bigint;
    v_changed text[];
    v_forcing text[];
    v_noted text[];
    v_subject text;
    v_log bigint;
    v_mails integer := 0;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study FOR UPDATE;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, 'edit_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not edit this study (edit_study__details).');
        RETURN;
    END IF;
    n := study_with_attrs(s, p_attrs);
    IF p_lab IS NOT NULL THEN
        v_lab := mgmt_visible_lab(p_user, p_lab);
        IF v_lab IS NULL THEN
            RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
                'No lab with this id, or you cannot see it.', '/data/relationships/lab');
            RETURN;
        END IF;
        IF v_lab <> s.lab_id AND NOT (has_study_perm(p_user, s.id, 'edit_study__lab')
                                      AND has_lab_perm(p_user, v_lab, 'associate_lab__study')) THEN
            RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
                'Moving the study needs edit_study__lab on it and associate_lab__study on the new lab.');
            RETURN;
        END IF;
        n.lab_id := v_lab;
    END IF;
    PERFORM study_check_ages(n);

    SELECT array_agg(f.field ORDER BY f.field),
           array_agg(f.field ORDER BY f.field) FILTER (WHERE s.state = ANY (f.forces_review_in)),
           array_agg(f.field ORDER BY f.field) FILTER (WHERE s.state = ANY (f.notify_in))
      INTO v_changed, v_forcing, v_noted
      FROM study_review_fields f
     WHERE to_jsonb(s) -> (CASE f.field WHEN 'lab' THEN 'lab_id' ELSE f.field END)
           IS DISTINCT FROM
           to_jsonb(n) -> (CASE f.field WHEN 'lab' THEN 'lab_id' ELSE f.field END);

    n := study_store(n);
    IF v_forcing IS NOT NULL THEN
        -- Everything monitored that changed is named, not only what forced.
        v_noted := ARRAY(SELECT DISTINCT x FROM unnest(v_forcing || coalesce(v_noted, '{}')) x ORDER BY x);
        UPDATE studies SET state = 'rejected', status_change_date = now()
         WHERE id = s.id RETURNING * INTO n;
        v_subject := format('Study "%s" needs a new review', n.name);
        INSERT INTO study_logs (study_id, user_id, action, extra)
        VALUES (s.id, p_user, 'rejected', jsonb_build_object(
            'from', s.state, 'trigger', 'edit', 'fields_changed', to_jsonb(v_noted),
            'comments', format('Edited after review: %s changed; the study needs a new review.',
                               array_to_string(v_noted, ', '))))
        RETURNING id INTO v_log;
    ELSIF v_noted IS NOT NULL THEN
        v_subject := format('Study "%s" was edited: %s changed', n.name,
                            array_to_string(v_noted, ', '));
        INSERT INTO study_logs (study_id, user_id, action, extra)
        VALUES (s.id, p_user, 'edited', jsonb_build_object(
            'state', s.state, 'fields_changed', to_jsonb(v_noted),
            'comments', format('%s changed; no new review needed.',
                               array_to_string(v_noted, ', '))))
        RETURNING id INTO v_log;
    END IF;
    IF v_log IS NOT NULL THEN
        INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
        SELECT 'study_edited', r.email, v_subject,
               format(E'%s.\n\nStudy: %s (%s)\nState: %s -> %s\nFields changed: %s\nBy: %s\n%s\n',
                      v_subject, n.name, n.uuid, s.state, n.state,
                      array_to_string(v_noted, ', '),
                      coalesce((SELECT email FROM users WHERE id = p_user), 'the system'),
                      CASE WHEN v_forcing IS NOT NULL
                           THEN E'\nThe study was sent back to "rejected": resubmit it for review when ready.'
                           ELSE E'\nNo new review is needed for these fields.' END)
          FROM workflow_recipients(s.id, s.creator_id, 'study_admins') r;
        GET DIAGNOSTICS v_mails = ROW_COUNT;
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', study_research_resource(n, p_base),
                          'meta', json_build_object(
                              'fields_changed', coalesce(v_changed, '{}'),
                              'review_forced', v_forcing IS NOT NULL,
                              'fields_forcing_review', coalesce(v_forcing, '{}'),
                              'log', v_log,
                              'emails_queued', v_mails));
END;
$$;

-- Study groups (GET /api/v1/researcher/studies/{id}/groups/): every group
-- with its members, in group order.
CREATE OR REPLACE FUNCTION study_groups_doc(p_study bigint, p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('data', coalesce(json_agg(json_build_object(
        'type', 'study-groups', 'id', g.name,
        'attributes', json_build_object(
            'description', g.description,
            'manage_permission', g.manage_permission,
            'members', coalesce((
                SELECT json_agg(json_build_object('type', 'users', 'id', u.uuid,
                                                  'attributes', person_attrs(u))
                                ORDER BY sm.created_at, u.id)
                  FROM study_members sm JOIN users u ON u.id = sm.user_id
                 WHERE sm.study_id = p_study AND sm.grp = g.name), '[]'::json)))
        ORDER BY g.position), '[]'::json))
      FROM study_groups g
$$;

-- POST /api/v1/researcher/studies/{id}/groups/{grp}/members/: adds a lab
-- researcher to a study group (the group's manage_permission).
CREATE OR REPLACE FUNCTION study_group_add(p_user bigint, p_study uuid, p_grp text, p_member uuid, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    g study_groups;
    m users;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study FOR UPDATE;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    SELECT * INTO g FROM study_groups WHERE name = p_grp;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No such study group.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, g.manage_permission) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            format('You may not change who is in this group (%s).', g.manage_permission));
        RETURN;
    END IF;
    SELECT * INTO m FROM users WHERE uuid = p_member;
    IF NOT FOUND OR NOT m.is_active OR NOT m.is_researcher THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'No active researcher with this id.', '/data/id');
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM lab_members WHERE lab_id = s.lab_id AND user_id = m.id) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'Only members of the study''s lab can be added to its groups.', '/data/id');
        RETURN;
    END IF;
    INSERT INTO study_members (study_id, user_id, grp) VALUES (s.id, m.id, g.name)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict', 'Already in this group.', '/data/id');
        RETURN;
    END IF;
    RETURN QUERY SELECT 'created', NULL::text, NULL::text, study_groups_doc(s.id, p_base);
END;
$$;

-- DELETE /api/v1/researcher/studies/{id}/groups/{grp}/members/{user}/.
-- A study keeps at least one admin.
CREATE OR REPLACE FUNCTION study_group_remove(p_user bigint, p_study uuid, p_grp text, p_member uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    g study_groups;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study FOR UPDATE;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    SELECT * INTO g FROM study_groups WHERE name = p_grp;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No such study group.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, g.manage_permission) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            format('You may not change who is in this group (%s).', g.manage_permission));
        RETURN;
    END IF;
    IF g.name = 'admin' AND (SELECT count(*) FROM study_members
                              WHERE study_id = s.id AND grp = 'admin') = 1
       AND EXISTS (SELECT 1 FROM study_members sm JOIN users u ON u.id = sm.user_id
                    WHERE sm.study_id = s.id AND sm.grp = 'admin' AND u.uuid = p_member) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A study needs at least one admin: add another before removing this one.');
        RETURN;
    END IF;
    DELETE FROM study_members sm USING users u
     WHERE sm.study_id = s.id AND sm.grp = g.name AND sm.user_id = u.id AND u.uuid = p_member;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'This user is not in this group.');
        RETURN;
    END IF;
    RETURN QUERY SELECT 'deleted', NULL::text, NULL::text, NULL::json;
END;
$$;

-- ---------------------------------------------------------------- labs
-- POST /api/v1/labs/: a new, unapproved lab; its creator is its admin.
-- Name (and slug) clashes are unique violations the caller turns into 409.
CREATE OR REPLACE FUNCTION lab_create(p_user bigint, p_attrs jsonb, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    n labs := jsonb_populate_record(NULL::labs, p_attrs);
    l labs;
BEGIN
    IF NOT has_site_perm(p_user, 'create_lab') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden', 'You may not create labs (create_lab).');
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM labs WHERE name = n.name) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A lab with this name already exists.', '/data/attributes/name');
        RETURN;
    END IF;
    IF coalesce(n.slug, '') <> '' AND EXISTS (SELECT 1 FROM labs WHERE slug = n.slug) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A lab with this slug already exists.', '/data/attributes/slug');
        RETURN;
    END IF;
    INSERT INTO labs (name, slug, institution, principal_investigator_name, contact_email,
                      contact_phone, lab_website, description, irb_contact_info)
    VALUES (n.name, coalesce(n.slug, ''), coalesce(n.institution, ''),
            coalesce(n.principal_investigator_name, ''), coalesce(n.contact_email, ''),
            coalesce(n.contact_phone, ''), coalesce(n.lab_website, ''),
            coalesce(n.description, ''), coalesce(n.irb_contact_info, ''))
    RETURNING * INTO l;
    INSERT INTO lab_members (lab_id, user_id, role) VALUES (l.id, p_user, 'admin');
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', lab_research_resource(l, p_user, p_base));
END;
$$;

-- PATCH /api/v1/labs/{id}/: details need edit_lab__details;
-- approved_to_test needs edit_lab__approved_to_test, and approving emails
-- the lab's admins.
CREATE OR REPLACE FUNCTION lab_edit(p_user bigint, p_lab uuid, p_attrs jsonb, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    l labs;
    n labs;
    v_details boolean := EXISTS (SELECT 1 FROM jsonb_object_keys(p_attrs) k
                                  WHERE k <> 'approved_to_test');
BEGIN
    SELECT * INTO l FROM labs WHERE uuid = p_lab FOR UPDATE;
    IF NOT FOUND OR NOT lab_visible(p_user, l.id, l.approved_to_test) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Lab matches the given query.');
        RETURN;
    END IF;
    IF v_details AND NOT has_lab_perm(p_user, l.id, 'edit_lab__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not edit this lab (edit_lab__details).');
        RETURN;
    END IF;
    IF p_attrs ? 'approved_to_test'
       AND (p_attrs->>'approved_to_test')::boolean IS DISTINCT FROM l.approved_to_test
       AND NOT has_lab_perm(p_user, l.id, 'edit_lab__approved_to_test') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'Only site reviewers approve labs (edit_lab__approved_to_test).',
            '/data/attributes/approved_to_test');
        RETURN;
    END IF;
    n := jsonb_populate_record(l, p_attrs);
    IF EXISTS (SELECT 1 FROM labs WHERE name = n.name AND id <> l.id) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A lab with this name already exists.', '/data/attributes/name');
        RETURN;
    END IF;
    IF n.slug <> '' AND EXISTS (SELECT 1 FROM labs WHERE slug = n.slug AND id <> l.id) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A lab with this slug already exists.', '/data/attributes/slug');
        RETURN;
    END IF;
    UPDATE labs SET name = n.name, slug = n.slug, institution = n.institution,
        principal_investigator_name = n.principal_investigator_name,
        contact_email = n.contact_email, contact_phone = n.contact_phone,
        lab_website = n.lab_website, description = n.description,
        irb_contact_info = n.irb_contact_info, approved_to_test = n.approved_to_test
     WHERE id = l.id RETURNING * INTO n;
    IF n.approved_to_test AND NOT l.approved_to_test THEN
        INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
        SELECT 'lab_approved', u.email, format('Lab "%s" was approved', n.name),
               format(E'Lab "%s" was approved to test studies.\n', n.name)
          FROM lab_members lm JOIN users u ON u.id = lm.user_id
         WHERE lm.lab_id = l.id AND lm.role = 'admin' AND u.is_active;
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', lab_research_resource(n, p_user, p_base));
END;
$$;

-- POST /api/v1/labs/{id}/join-requests/: the caller asks to join; the
-- lab's admins are emailed.
CREATE OR REPLACE FUNCTION lab_join_request(p_user bigint, p_lab uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    l labs;
BEGIN
    SELECT * INTO l FROM labs WHERE uuid = p_lab;
    IF NOT FOUND OR NOT lab_visible(p_user, l.id, l.approved_to_test) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Lab matches the given query.');
        RETURN;
    END IF;
    IF NOT has_site_perm(p_user, 'join_lab') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden', 'You may not join labs (join_lab).');
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM lab_members WHERE lab_id = l.id AND user_id = p_user) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict', 'You are already a member of this lab.');
        RETURN;
    END IF;
    INSERT INTO lab_join_requests (lab_id, user_id) VALUES (l.id, p_user)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict', 'You have already asked to join this lab.');
        RETURN;
    END IF;
    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    SELECT 'lab_join_request', a.email, format('%s asks to join lab "%s"', me.email, l.name),
           format(E'%s asks to join lab "%s". Approve or decline the request on the lab''s page.\n',
                  me.email, l.name)
      FROM users me, lab_members lm JOIN users a ON a.id = lm.user_id
     WHERE me.id = p_user AND lm.lab_id = l.id AND lm.role = 'admin' AND a.is_active;
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', json_build_object(
            'type', 'lab-join-requests', 'id', (SELECT uuid FROM users WHERE id = p_user),
            'attributes', json_build_object('lab', l.uuid)));
END;
$$;

-- DELETE /api/v1/labs/{id}/join-requests/{user}/: declined by a holder of
-- edit_lab__groups, or withdrawn by its author.
CREATE OR REPLACE FUNCTION lab_join_request_delete(p_user bigint, p_lab uuid, p_member uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    l labs;
    v_member bigint := (SELECT id FROM users WHERE uuid = p_member);
BEGIN
    SELECT * INTO l FROM labs WHERE uuid = p_lab;
    IF NOT FOUND OR NOT lab_visible(p_user, l.id, l.approved_to_test) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Lab matches the given query.');
        RETURN;
    END IF;
    IF v_member IS DISTINCT FROM p_user AND NOT has_lab_perm(p_user, l.id, 'edit_lab__groups') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not decline join requests (edit_lab__groups).');
        RETURN;
    END IF;
    DELETE FROM lab_join_requests WHERE lab_id = l.id AND user_id = v_member;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No such join request.');
        RETURN;
    END IF;
    RETURN QUERY SELECT 'deleted', NULL::text, NULL::text, NULL::json;
END;
$$;

-- A lab member as a resource.
CREATE OR REPLACE FUNCTION lab_member_resource(p_lab bigint, p_member bigint)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('type', 'lab-members', 'id', u.uuid,
                             'attributes', (person_attrs(u)::jsonb || jsonb_build_object(
                                 'group', lm.role, 'date_joined', api_time(lm.created_at)))::json)
      FROM lab_members lm JOIN users u ON u.id = lm.user_id
     WHERE lm.lab_id = p_lab AND lm.user_id = p_member
$$;

-- POST /api/v1/labs/{id}/members/: approves a pending join request into a
-- group (edit_lab__groups); the new member is emailed.
CREATE OR REPLACE FUNCTION lab_member_add(p_user bigint, p_lab uuid, p_member uuid, p_group text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    l labs;
    m users;
BEGIN
    SELECT * INTO l FROM labs WHERE uuid = p_lab FOR UPDATE;
    IF NOT FOUND OR NOT lab_visible(p_user, l.id, l.approved_to_test) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Lab matches the given query.');
        RETURN;
    END IF;
    IF NOT has_lab_perm(p_user, l.id, 'edit_lab__groups') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not change the lab''s members (edit_lab__groups).');
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM lab_groups WHERE name = p_group) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            format('"%s" is not a lab group: use guest, readonly, member or admin.', p_group),
            '/data/attributes/group');
        RETURN;
    END IF;
    SELECT * INTO m FROM users WHERE uuid = p_member;
    IF FOUND AND EXISTS (SELECT 1 FROM lab_members WHERE lab_id = l.id AND user_id = m.id) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict', 'Already a member of this lab.',
                                                '/data/relationships/user');
        RETURN;
    END IF;
    DELETE FROM lab_join_requests WHERE lab_id = l.id AND user_id = m.id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'This user has not asked to join the lab.', '/data/relationships/user');
        RETURN;
    END IF;
    INSERT INTO lab_members (lab_id, user_id, role) VALUES (l.id, m.id, p_group);
    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    SELECT 'lab_member_added', m.email, format('You joined lab "%s"', l.name),
           format(E'Your request to join lab "%s" was approved; your group is %s.\n', l.name, p_group)
     WHERE m.is_active;
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', lab_member_resource(l.id, m.id));
END;
$$;

-- PATCH /api/v1/labs/{id}/members/{user}/ (a new group) and DELETE (NULL
-- group: removal, also allowed to the member themself).  The lab row is
-- locked so two admins demoting each other cannot leave it with none.
CREATE OR REPLACE FUNCTION lab_member_change(p_user bigint, p_lab uuid, p_member uuid, p_group text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    l labs;
    v_member bigint := (SELECT id FROM users WHERE uuid = p_member);
    v_role text;
BEGIN
    SELECT * INTO l FROM labs WHERE uuid = p_lab FOR UPDATE;
    IF NOT FOUND OR NOT lab_visible(p_user, l.id, l.approved_to_test) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Lab matches the given query.');
        RETURN;
    END IF;
    IF NOT has_lab_perm(p_user, l.id, 'edit_lab__groups')
       AND NOT (p_group IS NULL AND v_member IS NOT DISTINCT FROM p_user) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not change the lab''s members (edit_lab__groups).');
        RETURN;
    END IF;
    IF p_group IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lab_groups WHERE name = p_group) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            format('"%s" is not a lab group: use guest, readonly, member or admin.', p_group),
            '/data/attributes/group');
        RETURN;
    END IF;
    SELECT role INTO v_role FROM lab_members WHERE lab_id = l.id AND user_id = v_member;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'This user is not a member of the lab.');
        RETURN;
    END IF;
    IF v_role = 'admin' AND p_group IS DISTINCT FROM 'admin'
       AND (SELECT count(*) FROM lab_members WHERE lab_id = l.id AND role = 'admin') = 1 THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'A lab needs at least one admin: make someone else admin first.');
        RETURN;
    END IF;
    IF p_group IS NULL THEN
        DELETE FROM lab_members WHERE lab_id = l.id AND user_id = v_member;
        RETURN QUERY SELECT 'deleted', NULL::text, NULL::text, NULL::json;
        RETURN;
    END IF;
    UPDATE lab_members SET role = p_group WHERE lab_id = l.id AND user_id = v_member;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', lab_member_resource(l.id, v_member));
END;
$$;
