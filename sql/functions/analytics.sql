-- The live text of the functions of analytics, the participant browser and
-- the housekeeping of responses (issue 18; docs/ARCHITECTURE.md, "A SQL
-- function").  src/domain/analytics.h says what each route shows.

-- ---------------------------------------------------------------- facts
-- response_consent's copy of what the charts count by (sql/107): a
-- response's own columns and its child's, after responses_consent_sync
-- has made the row.
CREATE OR REPLACE FUNCTION response_facts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE response_consent rc
       SET child_id = NEW.child_id, user_id = c.user_id,
           age_days = age_in_days(c.birthday, NEW.date_created), gender = c.gender,
           completed = NEW.completed, snapshot_id = NEW.demographic_snapshot_id
      FROM children c
     WHERE c.id = NEW.child_id AND rc.response_id = NEW.id;
    RETURN NULL;
END;
$$;

-- A child's family, gender or birthday changed (an edit, an erasure).
CREATE OR REPLACE FUNCTION child_facts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS DISTINCT FROM OLD.user_id OR NEW.gender IS DISTINCT FROM OLD.gender
       OR NEW.birthday IS DISTINCT FROM OLD.birthday THEN
        UPDATE response_consent rc
           SET user_id = NEW.user_id, gender = NEW.gender,
               age_days = age_in_days(NEW.birthday, rc.date_created)
         WHERE rc.child_id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;

-- A counted row changed: its study's cached charts go (sql/107).
CREATE OR REPLACE FUNCTION analytics_cache_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM analytics_cache WHERE studies @> ARRAY[OLD.study_id];
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.study_id <> OLD.study_id) THEN
        DELETE FROM analytics_cache WHERE studies @> ARRAY[NEW.study_id];
    END IF;
    RETURN NULL;
END;
$$;

-- ---------------------------------------------------------------- scope
-- The studies a caller may count or browse in a scope: one study (kind
-- 'study') or every study of a lab (kind 'lab'), each with
-- read_study__responses; ident says whether the caller also holds
-- read_study__responses__identifiable there.  verdict 'ok', or
-- 'not_found' / 'forbidden' with the detail, on one row with study NULL.
CREATE OR REPLACE FUNCTION analytics_scope(p_user bigint, p_kind text, p_id uuid)
RETURNS TABLE (study bigint, ident boolean, verdict text, detail text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_kind = 'study' THEN
        SELECT s.id INTO v_id FROM studies s WHERE s.uuid = p_id;
        IF v_id IS NULL OR NOT has_study_perm(p_user, v_id, 'read_study__details') THEN
            RETURN QUERY SELECT NULL::bigint, false, 'not_found', 'No Study matches the given query.';
            RETURN;
        END IF;
        IF NOT has_study_perm(p_user, v_id, 'read_study__responses') THEN
            RETURN QUERY SELECT NULL::bigint, false, 'forbidden',
                'The study''s analytics and participants need read_study__responses.';
            RETURN;
        END IF;
        RETURN QUERY SELECT v_id, has_study_perm(p_user, v_id, 'read_study__responses__identifiable'),
                            'ok', NULL::text;
        RETURN;
    END IF;
    SELECT l.id INTO v_id FROM labs l WHERE l.uuid = p_id;
    IF v_id IS NULL OR NOT has_lab_perm(p_user, v_id, 'read_lab__details') THEN
        RETURN QUERY SELECT NULL::bigint, false, 'not_found', 'No Lab matches the given query.';
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.id, has_study_perm(p_user, s.id, 'read_study__responses__identifiable'), 'ok', NULL::text
      FROM studies s
     WHERE s.lab_id = v_id AND has_study_perm(p_user, s.id, 'read_study__responses');
    IF NOT FOUND THEN
        -- A lab whose studies the caller may not read: an empty scope.
        RETURN QUERY SELECT NULL::bigint, false, 'ok', NULL::text;
    END IF;
END;
$$;

-- The age group of an age in days: 3-month groups up to 2 years, then
-- years up to 18, then one group.  (label, from_days, to_days), to_days
-- exclusive (NULL: no end); months and years as the eligibility code
-- counts them (30.4375 and 365.25 days).
CREATE OR REPLACE FUNCTION analytics_age_group(p_days integer)
RETURNS TABLE (label text, from_days integer, to_days integer)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN m < 24 THEN format('%s-%s months', m3, m3 + 3)
                WHEN y < 18 THEN format('%s years', y)
                ELSE '18 years and over' END,
           CASE WHEN m < 24 THEN ceil(m3 * 30.4375)::integer
                WHEN y < 18 THEN ceil(y * 365.25)::integer
                ELSE ceil(18 * 365.25)::integer END,
           CASE WHEN m < 24 THEN ceil((m3 + 3) * 30.4375)::integer
                WHEN y < 18 THEN ceil((y + 1) * 365.25)::integer END
      FROM (SELECT floor(greatest(p_days, 0) / 30.4375)::integer AS m,
                   (floor(greatest(p_days, 0) / 30.4375)::integer / 3) * 3 AS m3,
                   floor(greatest(p_days, 0) / 365.25)::integer AS y) a
$$;

-- A count shown in a breakdown, or NULL when it is under p_min (1 to
-- p_min - 1 children or families could be recognised in a small study).
CREATE OR REPLACE FUNCTION analytics_cell(p_n bigint, p_min integer)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_n < p_min THEN NULL ELSE p_n END
$$;

-- One chart of a scope as a JSON:API document: attributes chart, scope,
-- columns, rows (arrays in column order), min_cell, suppressed (cells
-- left out as NULL), counted (what the numbers count).  Charts:
--   over-time     consented responses per day (UTC)
--   ages          consented responses by the child's age group that day
--   genders       children with a consented response, by gender
--   demographics  families with a consented response, by the answer to
--                 p_field in the demographics of their newest one
--   rates         consent states of all non-preview responses (states,
--                 not data), and completion of the consented ones
-- Only non-preview responses whose consent is accepted are counted,
-- except the consent states themselves.
CREATE OR REPLACE FUNCTION analytics_chart(p_user bigint, p_kind text, p_id uuid, p_chart text,
                                           p_field text, p_min integer)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    v_studies bigint[];
    v_verdict text;
    v_detail text;
    v_cols json;
    v_rows json;
    v_supp bigint := 0;
    v_counted text;
    v_key text;
    v_doc json;
BEGIN
    SELECT array_agg(a.study) FILTER (WHERE a.study IS NOT NULL), min(a.verdict), min(a.detail)
      INTO v_studies, v_verdict, v_detail FROM analytics_scope(p_user, p_kind, p_id) a;
    IF v_verdict <> 'ok' THEN
        RETURN QUERY SELECT * FROM mgmt_verdict(v_verdict, v_detail);
        RETURN;
    END IF;
    v_studies := coalesce((SELECT array_agg(x ORDER BY x) FROM unnest(v_studies) x), '{}');
    -- A cached document of the same numbers, younger than 60 seconds
    -- (ANALYTICS_CACHE_S) and not dropped by a change since.
    v_key := md5(concat_ws(':', p_kind, p_id, p_chart, p_field, p_min,
                           array_to_string(v_studies, ',')));
    SELECT c.doc INTO v_doc FROM analytics_cache c
     WHERE c.key = v_key AND c.created_at > now() - interval '60 seconds';
    IF FOUND THEN
        RETURN QUERY SELECT 'ok', NULL::text, NULL::text, v_doc;
        RETURN;
    END IF;

    IF p_chart = 'over-time' THEN
        v_cols := '["day", "responses"]';
        v_counted := 'consented responses';
        SELECT coalesce(json_agg(json_build_array(d.day, d.n) ORDER BY d.day), '[]')
          INTO v_rows
          FROM (SELECT to_char(x.d, 'YYYY-MM-DD') AS day, x.n
                  FROM (SELECT (rc.date_created AT TIME ZONE 'UTC')::date AS d, count(*) AS n
                          FROM response_consent rc
                         WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                           AND NOT rc.is_preview
                         GROUP BY 1) x) d;
    ELSIF p_chart = 'ages' THEN
        v_cols := '["age_group", "from_days", "to_days", "responses"]';
        v_counted := 'consented responses, by the child''s age on the day';
        SELECT coalesce(json_agg(json_build_array(g.label, g.from_days, g.to_days,
                                                  analytics_cell(g.n, p_min))
                                 ORDER BY g.from_days), '[]'),
               count(*) FILTER (WHERE g.n < p_min)
          INTO v_rows, v_supp
          FROM (SELECT ag.label, ag.from_days, ag.to_days, sum(x.n)::bigint AS n
                  FROM (SELECT rc.age_days AS days, count(*) AS n
                          FROM response_consent rc
                         WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                           AND NOT rc.is_preview
                         GROUP BY 1) x,
                       LATERAL analytics_age_group(x.days) ag
                 GROUP BY 1, 2, 3) g;
    ELSIF p_chart = 'genders' THEN
        v_cols := '["gender", "children"]';
        v_counted := 'children with a consented response';
        SELECT coalesce(json_agg(json_build_array(g.gender, analytics_cell(g.n, p_min))
                                 ORDER BY g.gender), '[]'),
               count(*) FILTER (WHERE g.n < p_min)
          INTO v_rows, v_supp
          FROM (SELECT k.gender, count(*) AS n
                  FROM (SELECT DISTINCT rc.child_id, rc.gender FROM response_consent rc
                         WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                           AND NOT rc.is_preview) k
                 GROUP BY k.gender) g;
    ELSIF p_chart = 'demographics' THEN
        v_cols := json_build_array(p_field, 'families');
        v_counted := 'families with a consented response, by their demographics at the newest one';
        SELECT coalesce(json_agg(json_build_array(g.answer, analytics_cell(g.n, p_min))
                                 ORDER BY g.n DESC, g.answer), '[]'),
               count(*) FILTER (WHERE g.n < p_min)
          INTO v_rows, v_supp
          FROM (SELECT a.answer, count(*) AS n
                  FROM (SELECT DISTINCT ON (rc.user_id) rc.user_id, rc.snapshot_id AS snap
                          FROM response_consent rc
                         WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                           AND NOT rc.is_preview
                         ORDER BY rc.user_id, rc.date_created DESC, rc.response_id DESC) f
                  LEFT JOIN demographic_data d ON d.id = f.snap,
                  LATERAL (SELECT CASE WHEN d.id IS NULL THEN '(no demographics)'
                                       WHEN v = '' THEN '(no answer)' ELSE v END AS answer
                             FROM unnest(CASE p_field
                                 WHEN 'race_ethnicity' THEN
                                     CASE WHEN cardinality(d.us_race_ethnicity_identification) > 0
                                          THEN d.us_race_ethnicity_identification ELSE ARRAY[''] END
                                 ELSE ARRAY[CASE p_field
                                     WHEN 'country' THEN d.country WHEN 'state' THEN d.state
                                     WHEN 'density' THEN d.density
                                     WHEN 'education_level' THEN d.education_level
                                     WHEN 'annual_income' THEN d.annual_income
                                     WHEN 'number_of_children' THEN d.number_of_children
                                     WHEN 'number_of_guardians' THEN d.number_of_guardians
                                     WHEN 'age' THEN d.age WHEN 'gender' THEN d.gender
                                     WHEN 'lookit_referrer' THEN d.lookit_referrer END] END) v) a
                 GROUP BY a.answer) g;
    ELSE   -- rates
        v_cols := '["measure", "value", "responses", "of", "percent"]';
        v_counted := 'consent: every non-preview response''s state; completion: consented responses';
        WITH s AS (SELECT count(*) FILTER (WHERE rc.state = 'accepted') AS acc,
                          count(*) FILTER (WHERE rc.state = 'rejected') AS rej,
                          count(*) FILTER (WHERE rc.state = 'pending') AS pen,
                          count(*) AS total
                     FROM response_consent rc
                    WHERE rc.study_id = ANY (v_studies) AND NOT rc.is_preview),
             c AS (SELECT count(*) FILTER (WHERE rc.completed) AS done, count(*) AS total
                     FROM response_consent rc
                    WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                      AND NOT rc.is_preview)
        SELECT json_build_array(
                 json_build_array('consent', 'accepted', s.acc, s.total, analytics_pct(s.acc, s.total)),
                 json_build_array('consent', 'rejected', s.rej, s.total, analytics_pct(s.rej, s.total)),
                 json_build_array('consent', 'pending', s.pen, s.total, analytics_pct(s.pen, s.total)),
                 json_build_array('completion', 'completed', c.done, c.total,
                                  analytics_pct(c.done, c.total)),
                 json_build_array('completion', 'not completed', c.total - c.done, c.total,
                                  analytics_pct(c.total - c.done, c.total)))
          INTO v_rows FROM s, c;
    END IF;

    v_doc := json_build_object('data', json_build_object(
        'type', 'analytics', 'id', p_chart,
        'attributes', json_build_object(
            'chart', p_chart, 'scope', p_kind, 'scope_id', p_id, 'field', p_field,
            'studies', cardinality(v_studies), 'columns', v_cols, 'rows', v_rows,
            'min_cell', p_min, 'suppressed', v_supp, 'counted', v_counted)));
    INSERT INTO analytics_cache (key, studies, doc) VALUES (v_key, v_studies, v_doc)
    ON CONFLICT (key) DO UPDATE SET studies = EXCLUDED.studies, doc = EXCLUDED.doc,
                                    created_at = now();
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text, v_doc;
END;
$$;

-- A share as a percentage with one decimal, NULL of nothing.
CREATE OR REPLACE FUNCTION analytics_pct(p_n bigint, p_of bigint)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_of > 0 THEN round(100.0 * p_n / p_of, 1) END
$$;

-- ---------------------------------------------------------------- participants
-- A family of the browser: its lab-wide hashed id (hashed_id of the
-- account with the lab's uuid as study and salt: stable across the lab's
-- studies, unlinkable outside it), its children and their consented
-- responses in the scope.  Identifiable fields only where the caller
-- holds read_study__responses__identifiable for a study the family's
-- shown responses belong to.
CREATE OR REPLACE FUNCTION participant_item(p_user_id bigint, p_lab uuid, p_studies bigint[],
                                            p_ident bigint[], p_base text)
RETURNS json LANGUAGE sql STABLE AS $$
    WITH rs AS (SELECT r.*, s.uuid AS s_uuid, s.name AS s_name, s.salt AS s_salt,
                       s.hash_digits AS s_digits, (r.study_id = ANY (p_ident)) AS ident
                  FROM children c
                  JOIN responses r ON r.child_id = c.id
                  JOIN response_consent rc ON rc.response_id = r.id
                  JOIN studies s ON s.id = r.study_id
                 WHERE c.user_id = p_user_id AND r.study_id = ANY (p_studies)
                   AND rc.state = 'accepted' AND NOT r.is_preview),
         u AS (SELECT users.*, hashed_id(users.uuid, p_lab, p_lab, 10) AS lab_hash
                 FROM users WHERE id = p_user_id),
         fam_ident AS (SELECT coalesce(bool_or(ident), false) AS yes FROM rs)
    SELECT json_build_object('type', 'participants',
        'id', u.lab_hash,
        'attributes', json_build_object(
            'hashed_id', u.lab_hash,
            'identifiable', fi.yes,
            'nickname', CASE WHEN fi.yes THEN u.nickname END,
            'response_count', (SELECT count(*) FROM rs),
            'last_session', (SELECT api_time(max(rs.date_created)) FROM rs),
            'children', (
                SELECT coalesce(json_agg(json_build_object(
                    'hashed_id', hashed_id(c.uuid, p_lab, p_lab, 10),
                    'name', CASE WHEN ci.yes THEN c.given_name END,
                    'birthday', CASE WHEN ci.yes THEN c.birthday END,
                    'gender', c.gender,
                    'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),
                    'languages', c.languages_spoken,
                    'responses', (
                        SELECT json_agg(json_build_object(
                            'id', rs.uuid, 'study', rs.s_uuid, 'study_name', rs.s_name,
                            'child_hashed_id', hashed_id(c.uuid, rs.s_uuid, rs.s_salt, rs.s_digits),
                            'child_age_in_days', age_in_days(c.birthday, rs.date_created),
                            'session_date', api_time(rs.date_created),
                            'completed', rs.completed, 'withdrawn', rs.withdrawn,
                            'links', json_build_object('json', p_base
                                || '/api/v1/researcher/responses/' || rs.uuid || '/json/'))
                            ORDER BY rs.date_created DESC, rs.id DESC)
                          FROM rs WHERE rs.child_id = c.id))
                    ORDER BY c.id), '[]')
                  FROM children c,
                       LATERAL (SELECT coalesce(bool_or(rs.ident), false) AS yes
                                  FROM rs WHERE rs.child_id = c.id) ci
                 WHERE c.id IN (SELECT child_id FROM rs)))
        )
      FROM u, fam_ident fi
$$;

-- GET /api/v1/researcher/labs/{id}/participants/ (?study= one of its
-- studies): the families with a consented response in the scope, newest
-- session first.  Writes one access-log entry per study of the scope.
CREATE OR REPLACE FUNCTION participant_list(p_user bigint, p_lab uuid, p_study uuid,
                                            p_limit bigint, p_offset bigint, p_base text)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql AS $$
DECLARE
    v_studies bigint[];
    v_ident bigint[];
    v_verdict text;
    v_detail text;
    v_lab bigint;
    v_key text;
    v_ids bigint[];
BEGIN
    SELECT array_agg(a.study) FILTER (WHERE a.study IS NOT NULL),
           array_agg(a.study) FILTER (WHERE a.ident), min(a.verdict), min(a.detail)
      INTO v_studies, v_ident, v_verdict, v_detail FROM analytics_scope(p_user, 'lab', p_lab) a;
    IF v_verdict <> 'ok' THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, v_verdict, v_detail, NULL::text;
        RETURN;
    END IF;
    v_studies := coalesce(v_studies, '{}');
    v_ident := coalesce(v_ident, '{}');
    IF p_study IS NOT NULL THEN
        SELECT l.id INTO v_lab FROM labs l WHERE l.uuid = p_lab;
        IF NOT EXISTS (SELECT 1 FROM studies s WHERE s.uuid = p_study AND s.lab_id = v_lab
                          AND has_study_perm(p_user, s.id, 'read_study__details')) THEN
            RETURN QUERY SELECT 0::bigint, NULL::json, 'not_found',
                                'No Study of this lab matches the given query.', NULL::text;
            RETURN;
        END IF;
        SELECT coalesce(array_agg(s.id), '{}') INTO v_studies FROM studies s
         WHERE s.uuid = p_study AND s.id = ANY (v_studies);
        IF cardinality(v_studies) = 0 THEN
            RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
                'The study''s participants need read_study__responses.', NULL::text;
            RETURN;
        END IF;
    END IF;
    PERFORM access_log_write(p_user, s, 'participant_list', 'lab ' || p_lab::text,
                             jsonb_build_object('limit', p_limit, 'offset', p_offset))
       FROM unnest(v_studies) s;
    -- The families, newest session first: from the charts' cache (the
    -- same drops, sql/107), or one pass over the consented rows.
    v_studies := coalesce((SELECT array_agg(x ORDER BY x) FROM unnest(v_studies) x), '{}');
    v_key := md5('participants:' || coalesce(array_to_string(v_studies, ','), ''));
    SELECT c.ids INTO v_ids FROM analytics_cache c
     WHERE c.key = v_key AND c.ids IS NOT NULL AND c.created_at > now() - interval '60 seconds';
    IF NOT FOUND THEN
        SELECT coalesce(array_agg(f.user_id ORDER BY f.last DESC, f.user_id DESC), '{}')
          INTO v_ids
          FROM (SELECT rc.user_id, max(rc.date_created) AS last
                  FROM response_consent rc
                 WHERE rc.study_id = ANY (v_studies) AND rc.state = 'accepted'
                   AND NOT rc.is_preview
                 GROUP BY rc.user_id) f;
        INSERT INTO analytics_cache (key, studies, doc, ids)
        VALUES (v_key, coalesce(v_studies, '{}'), '{}', v_ids)
        ON CONFLICT (key) DO UPDATE SET studies = EXCLUDED.studies, ids = EXCLUDED.ids,
                                        created_at = now();
    END IF;
    RETURN QUERY
    SELECT cardinality(v_ids)::bigint, p.item, 'ok'::text, NULL::text, NULL::text
      FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT participant_item(x.u, p_lab, v_studies, v_ident, p_base) AS item, x.o
          FROM unnest(v_ids[(p_offset + 1)::integer : (p_offset + p_limit)::integer])
               WITH ORDINALITY AS x(u, o)) p ON true
     ORDER BY p.o;
END;
$$;

-- ---------------------------------------------------------------- housekeeping
-- GET /api/v1/researcher/responses/{id}/json/ (?identifiable=true): one
-- response as responses.json holds it, for a response the caller may
-- read; written to the access log as an export of that one file.
CREATE OR REPLACE FUNCTION response_json(p_user bigint, p_response uuid, p_ident boolean)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    r responses;
    s studies;
    c children;
    u users;
    cl record;
BEGIN
    SELECT * INTO r FROM responses WHERE uuid = p_response;
    IF NOT FOUND OR NOT response_readable(p_user, r.id, r.study_id, r.is_preview) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Response matches the given query.');
        RETURN;
    END IF;
    IF p_ident AND NOT has_study_perm(p_user, r.study_id, 'read_study__responses__identifiable') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'Identifiable data needs read_study__responses__identifiable.');
        RETURN;
    END IF;
    SELECT * INTO s FROM studies WHERE id = r.study_id;
    SELECT * INTO c FROM children WHERE id = r.child_id;
    SELECT * INTO u FROM users WHERE id = c.user_id;
    SELECT * INTO cl FROM consent_latest(r.id);
    PERFORM access_log_write(p_user, r.study_id, 'export',
        'response-' || r.uuid || CASE WHEN p_ident THEN '-identifiable' ELSE '' END || '.json',
        jsonb_build_object('identifiable', p_ident, 'response', r.uuid));
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text, json_build_object(
        'response', json_build_object('uuid', r.uuid, 'date_created', api_time(r.date_created),
            'completed', r.completed, 'withdrawn', r.withdrawn, 'is_preview', r.is_preview,
            'sequence', r.sequence, 'conditions', r.conditions,
            'global_event_timings', r.global_event_timings, 'eligibility', to_json(r.eligibility),
            'researcher_payment_status', r.researcher_payment_status,
            'researcher_session_status', r.researcher_session_status,
            'researcher_star', r.researcher_star),
        'consent', json_build_object('ruling', coalesce(cl.action, 'pending'),
            'time', api_time(cl.created_at), 'comments', cl.comments),
        'participant', CASE WHEN p_ident
            THEN json_build_object('hashed_id', hashed_id(u.uuid, s.uuid, s.salt, s.hash_digits),
                                   'nickname', u.nickname)
            ELSE json_build_object('hashed_id', hashed_id(u.uuid, s.uuid, s.salt, s.hash_digits)) END,
        'child', CASE WHEN p_ident
            THEN json_build_object('hashed_id', hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits),
                'age_in_days', age_in_days(c.birthday, r.date_created), 'gender', c.gender,
                'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),
                'language_list', array_to_string(c.languages_spoken, ' '),
                'name', c.given_name, 'birthday', c.birthday,
                'condition_list', array_to_string(c.existing_conditions, ' '),
                'additional_information', c.additional_information)
            ELSE json_build_object('hashed_id', hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits),
                'age_in_days', age_in_days(c.birthday, r.date_created), 'gender', c.gender,
                'age_at_birth', age_at_birth_label(c.gestational_age_at_birth),
                'language_list', array_to_string(c.languages_spoken, ' ')) END,
        'exp_data', CASE WHEN p_ident THEN r.exp_data::json
                         ELSE exp_data_deidentified(r.exp_data::json) END);
END;
$$;

-- The number of digits at which n hashed ids (base 32) collide with a
-- chance under 1%: n(n-1)/2 / 32^d <= 0.01 (the birthday bound).
CREATE OR REPLACE FUNCTION hash_digits_needed(p_n bigint)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_n < 2 THEN 1
           ELSE greatest(1, ceil(ln(p_n::numeric * (p_n - 1) / 2 / 0.01) / ln(32))::integer) END
$$;

-- GET /api/v1/researcher/studies/{id}/hash-check/: the study's hashed
-- child ids at its hash length (every child with a response, preview or
-- not): how many children share an id with another, the chance of a
-- collision at that length, and the length the study needs.
CREATE OR REPLACE FUNCTION study_hash_check(p_user bigint, p_study uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_children bigint;
    v_distinct bigint;
    v_colliding bigint;
    v_expected double precision;
    v_needed integer;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    SELECT count(*), count(DISTINCT x.id) INTO v_children, v_distinct
      FROM (SELECT hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits) AS id
              FROM children c
             WHERE c.id IN (SELECT r.child_id FROM responses r WHERE r.study_id = s.id)) x;
    -- Children whose id another child shares.
    SELECT coalesce(sum(n), 0) INTO v_colliding
      FROM (SELECT count(*) AS n
              FROM (SELECT hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits) AS id
                      FROM children c
                     WHERE c.id IN (SELECT r.child_id FROM responses r
                                     WHERE r.study_id = s.id)) x
             GROUP BY x.id HAVING count(*) > 1) g;
    v_expected := v_children::double precision * (v_children - 1) / 2
                  / power(32::double precision, s.hash_digits);
    v_needed := hash_digits_needed(v_children);
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text, json_build_object('data', json_build_object(
        'type', 'hash-checks', 'id', s.uuid,
        'attributes', json_build_object(
            'hash_digits', s.hash_digits, 'children', v_children, 'distinct_ids', v_distinct,
            'colliding_children', v_colliding,
            'expected_collisions', round(v_expected::numeric, 6),
            'digits_needed', v_needed,
            'too_short', v_colliding > 0 OR s.hash_digits < v_needed)));
END;
$$;

-- DELETE /api/v1/researcher/studies/{id}/preview-responses/: every
-- preview response of the study goes, with its rulings, feedback and
-- video rows; the video objects and the study's cached zips are left to
-- the erase_storage task, through an erasure of scope 'preview' (the
-- family erasure's own path, sql/functions/erasure.sql).
CREATE OR REPLACE FUNCTION study_preview_delete(p_user bigint, p_study uuid)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_drop bigint[];
    v_erasure bigint;
    v_uuid uuid;
    n_videos integer;
    v_report jsonb;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study FOR UPDATE;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, 'delete_study__responses(is_preview=True)') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'Deleting preview responses needs delete_study__responses(is_preview=True).');
        RETURN;
    END IF;
    SELECT coalesce(array_agg(r.id), '{}') INTO v_drop FROM responses r
     WHERE r.study_id = s.id AND r.is_preview;

    INSERT INTO erasures (scope, subject_uuid, requested_by)
    VALUES ('preview', s.uuid, 'researcher') RETURNING id, uuid INTO v_erasure, v_uuid;
    INSERT INTO erasure_objects (erasure_id, key, kind)
    SELECT v_erasure, v.full_name, 'video' FROM videos v WHERE v.response_id = ANY (v_drop)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n_videos = ROW_COUNT;
    IF cardinality(v_drop) > 0 THEN
        INSERT INTO erasure_objects (erasure_id, key, kind)
        VALUES (v_erasure, 'video-zips/' || s.uuid || '_', 'zips') ON CONFLICT DO NOTHING;
    END IF;
    DELETE FROM video_unplaced vu USING erasure_objects eo
     WHERE eo.erasure_id = v_erasure AND eo.kind = 'video' AND vu.key = eo.key;
    DELETE FROM responses WHERE id = ANY (v_drop);

    v_report := jsonb_build_object('erasure', v_uuid, 'scope', 'preview',
        'responses_deleted', cardinality(v_drop), 'videos_deleted', n_videos);
    UPDATE erasures SET report = v_report,
           storage_done_at = CASE WHEN EXISTS (SELECT 1 FROM erasure_objects
                                                WHERE erasure_id = v_erasure)
                                  THEN NULL ELSE now() END
     WHERE id = v_erasure;
    IF EXISTS (SELECT 1 FROM erasure_objects WHERE erasure_id = v_erasure) THEN
        INSERT INTO tasks (kind, subject, payload)
        VALUES ('erase_storage', v_uuid::text, jsonb_build_object('erasure', v_uuid));
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text, json_build_object('data', json_build_object(
        'type', 'preview-deletions', 'id', v_uuid, 'attributes', v_report));
END;
$$;
