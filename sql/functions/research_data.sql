-- The live text of the functions of research data (docs/ARCHITECTURE.md, "A SQL function").

-- ---------------------------------------------------------------- hashed ids
-- The hashed child id of eligibility_hash_child_id (src/domain/
-- eligibility.c) in SQL, so exports never need C to de-identify a row:
-- base32(sha256(child ^ study ^ salt)), first p_digits characters, with
-- I -> c and O -> d.  The e2e tests check it against the runner API's
-- hash_child_id.  plpgsql: a loop is several times cheaper here than a
-- set-returning query, and exports call it once or twice per row.
CREATE OR REPLACE FUNCTION hashed_id(p_id uuid, p_study uuid, p_salt uuid, p_digits integer)
RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    -- the three uuids as 128-bit strings, XORed
    x bit(128) := ('x' || replace(p_id::text, '-', ''))::bit(128)
                # ('x' || replace(p_study::text, '-', ''))::bit(128)
                # ('x' || replace(p_salt::text, '-', ''))::bit(128);
    bits text;
    out text := '';
BEGIN
    bits := (('x' || encode(sha256(decode(
                 lpad(to_hex(substring(x FROM 1 FOR 64)::bit(64)::bigint), 16, '0')
              || lpad(to_hex(substring(x FROM 65 FOR 64)::bit(64)::bigint), 16, '0'), 'hex')), 'hex'))::bit(256)
             || B'0000')::text;
    FOR i IN 0 .. p_digits - 1 LOOP
        out := out || substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567',
                             substr(bits, i * 5 + 1, 5)::bit(5)::integer + 1, 1);
    END LOOP;
    RETURN translate(out, 'IO', 'cd');
END;
$$;

-- A child's age in days on the day of a session.
CREATE OR REPLACE FUNCTION age_in_days(p_birthday date, p_at timestamptz)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT ((p_at AT TIME ZONE 'UTC')::date - p_birthday)
$$;

CREATE OR REPLACE FUNCTION access_log_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Writes one entry (the reader's uuid and email copied, see above).
CREATE OR REPLACE FUNCTION access_log_write(p_user bigint, p_study bigint, p_action text,
                                 p_object text, p_detail jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
    INSERT INTO access_log (user_id, user_uuid, user_email, study_id, study_uuid,
                            action, object, detail)
    SELECT p_user, u.uuid, coalesce(u.email, ''), p_study,
           (SELECT s.uuid FROM studies s WHERE s.id = p_study),
           p_action, coalesce(p_object, ''), coalesce(p_detail, '{}')
      FROM (SELECT 1) one LEFT JOIN users u ON u.id = p_user
$$;

CREATE OR REPLACE FUNCTION access_log_item(a access_log) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('type', 'access-log', 'id', a.id::text,
        'attributes', json_build_object(
            'created_at', api_time(a.created_at), 'user', a.user_uuid,
            'user_email', a.user_email, 'study', a.study_uuid, 'action', a.action,
            'object', a.object, 'detail', a.detail))
$$;

-- ---------------------------------------------------------------- consent manager
-- One response as the consent manager shows it: de-identified child (the
-- ruler decides on the consent video, not on the child's name), the
-- session date, its consent footage (C adds the presigned urls) and the
-- whole history of rulings, newest first.
CREATE OR REPLACE FUNCTION consent_item(r responses, p_base text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('type', 'consent-responses', 'id', r.uuid,
        'attributes', json_build_object(
            'consent', consent_status(r.id),
            'is_preview', r.is_preview,
            'completed', r.completed,
            'completed_consent_frame', r.completed_consent_frame,
            'withdrawn', r.withdrawn,
            'session_date', api_time(r.date_created),
            'child_hashed_id', hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits),
            'child_age_in_days', age_in_days(c.birthday, r.date_created),
            'consent_videos', (SELECT coalesce(json_agg(json_build_object(
                                   'id', v.uuid, 'frame_id', v.frame_id,
                                   'full_name', v.full_name,
                                   'created_at', api_time(v.created_at)) ORDER BY v.id), '[]')
                                 FROM videos v
                                WHERE v.response_id = r.id AND v.is_consent_footage),
            'rulings', (SELECT coalesce(json_agg(json_build_object(
                            'action', cr.action, 'comments', cr.comments,
                            'arbiter', u.uuid, 'arbiter_email', u.email,
                            'created_at', api_time(cr.created_at))
                            ORDER BY cr.created_at DESC, cr.id DESC), '[]')
                          FROM consent_rulings cr LEFT JOIN users u ON u.id = cr.arbiter_id
                         WHERE cr.response_id = r.id)),
        'links', json_build_object(
            'self', p_base || '/api/v1/researcher/responses/' || r.uuid || '/consent/'))
      FROM children c, studies s
     WHERE c.id = r.child_id AND s.id = r.study_id
$$;

-- The two lists, as sql/084 defined them, reading response_consent.
CREATE OR REPLACE FUNCTION consent_list(p_user bigint, p_study uuid, p_state text,
                             p_limit bigint, p_offset bigint, p_base text)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql AS $$
DECLARE
    v_study bigint;
    cr boolean;
    cp boolean;
    v_count bigint;
BEGIN
    SELECT s.id INTO v_study FROM studies s WHERE s.uuid = p_study;
    IF v_study IS NULL OR NOT has_study_perm(p_user, v_study, 'read_study__details') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'not_found',
                            'No Study matches the given query.', NULL::text;
        RETURN;
    END IF;
    cr := has_study_perm(p_user, v_study, 'edit_study__responses__consent_rulings');
    cp := has_study_perm(p_user, v_study, 'edit_study__responses(is_preview=True)__consent_rulings');
    IF NOT (cr OR cp) THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
            'The consent manager needs edit_study__responses__consent_rulings.', NULL::text;
        RETURN;
    END IF;
    IF p_state IS NOT NULL AND p_state NOT IN ('pending', 'accepted', 'rejected') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'invalid',
            'state must be pending, accepted or rejected.', NULL::text;
        RETURN;
    END IF;
    PERFORM access_log_write(p_user, v_study, 'consent_list', coalesce(p_state, 'all'));
    -- The count, then the page walking the index newest first: no list of
    -- every matching response is made.
    SELECT count(*) INTO v_count FROM response_consent rc
     WHERE rc.study_id = v_study
       AND CASE WHEN rc.is_preview THEN cp ELSE cr END
       AND (p_state IS NULL OR rc.state = p_state);
    RETURN QUERY
    SELECT v_count, p.item, 'ok'::text, NULL::text, NULL::text
      FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT consent_item(r, p_base) AS item, v.date_created, v.id
          FROM (SELECT rc.response_id AS id, rc.date_created FROM response_consent rc
                 WHERE rc.study_id = v_study
                   AND CASE WHEN rc.is_preview THEN cp ELSE cr END
                   AND (p_state IS NULL OR rc.state = p_state)
                 ORDER BY rc.date_created DESC, rc.response_id DESC
                 LIMIT p_limit OFFSET p_offset) v
          JOIN responses r ON r.id = v.id) p ON true
     ORDER BY p.date_created DESC, p.id DESC;
END;
$$;

-- POST /api/v1/researcher/responses/{id}/consent/: a new ruling (the
-- history is the rows; the newest wins, consent_status).  Nothing is
-- cached per response on any server, so the next read anywhere sees it.
CREATE OR REPLACE FUNCTION consent_rule(p_user bigint, p_response uuid, p_action text,
                             p_comments text, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    r responses;
BEGIN
    SELECT * INTO r FROM responses WHERE uuid = p_response FOR UPDATE;
    IF NOT FOUND OR NOT has_study_perm(p_user, r.study_id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Response matches the given query.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, r.study_id, CASE WHEN r.is_preview
            THEN 'edit_study__responses(is_preview=True)__consent_rulings'
            ELSE 'edit_study__responses__consent_rulings' END) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden', CASE WHEN r.is_preview
            THEN 'Rulings on preview responses need edit_study__responses(is_preview=True)__consent_rulings.'
            ELSE 'Rulings need edit_study__responses__consent_rulings.' END);
        RETURN;
    END IF;
    IF p_action IS NULL OR p_action NOT IN ('accepted', 'rejected', 'pending') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'action must be accepted, rejected or pending.', '/data/attributes/action');
        RETURN;
    END IF;
    INSERT INTO consent_rulings (response_id, action, arbiter_id, comments)
    VALUES (r.id, p_action, p_user, coalesce(p_comments, ''));
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
                        json_build_object('data', consent_item(r, p_base));
END;
$$;

-- ---------------------------------------------------------------- response management
-- A readable response as the researcher's list shows it: de-identified,
-- with the management columns and its feedback count.
CREATE OR REPLACE FUNCTION research_response_item(r responses, p_base text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('type', 'research-responses', 'id', r.uuid,
        'attributes', json_build_object(
            'consent', consent_status(r.id),
            'is_preview', r.is_preview,
            'completed', r.completed,
            'withdrawn', r.withdrawn,
            'session_date', api_time(r.date_created),
            'child_hashed_id', hashed_id(c.uuid, s.uuid, s.salt, s.hash_digits),
            'child_age_in_days', age_in_days(c.birthday, r.date_created),
            'researcher_payment_status', r.researcher_payment_status,
            'researcher_session_status', r.researcher_session_status,
            'researcher_star', r.researcher_star,
            'feedback_count', (SELECT count(*) FROM feedback f WHERE f.response_id = r.id)),
        'links', json_build_object(
            'self', p_base || '/api/v1/researcher/responses/' || r.uuid || '/'))
      FROM children c, studies s
     WHERE c.id = r.child_id AND s.id = r.study_id
$$;

CREATE OR REPLACE FUNCTION research_response_list(p_user bigint, p_study uuid, p_star boolean,
                                       p_limit bigint, p_offset bigint, p_base text)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql AS $$
DECLARE
    v_study bigint;
    rd boolean;
    pv boolean;
    v_count bigint;
BEGIN
    SELECT s.id INTO v_study FROM studies s WHERE s.uuid = p_study;
    IF v_study IS NULL OR NOT has_study_perm(p_user, v_study, 'read_study__details') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'not_found',
                            'No Study matches the given query.', NULL::text;
        RETURN;
    END IF;
    rd := has_study_perm(p_user, v_study, 'read_study__responses');
    pv := has_study_perm(p_user, v_study, 'read_study__responses(is_preview=True)');
    IF NOT (rd OR pv) THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
            'Reading responses needs read_study__responses.', NULL::text;
        RETURN;
    END IF;
    PERFORM access_log_write(p_user, v_study, 'response_list',
                             CASE WHEN p_star THEN 'starred' ELSE 'all' END);
    SELECT count(*) INTO v_count FROM response_consent rc
     WHERE rc.study_id = v_study
       AND CASE WHEN rc.is_preview THEN pv ELSE rd AND rc.state = 'accepted' END
       AND (p_star IS NULL OR (SELECT r.researcher_star FROM responses r
                                WHERE r.id = rc.response_id) = p_star);
    RETURN QUERY
    SELECT v_count, p.item, 'ok'::text, NULL::text, NULL::text
      FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT research_response_item(r, p_base) AS item, v.date_created, v.id
          FROM (SELECT rc.response_id AS id, rc.date_created FROM response_consent rc
                 WHERE rc.study_id = v_study
                   AND CASE WHEN rc.is_preview THEN pv ELSE rd AND rc.state = 'accepted' END
                   AND (p_star IS NULL OR (SELECT r.researcher_star FROM responses r
                                            WHERE r.id = rc.response_id) = p_star)
                 ORDER BY rc.date_created DESC, rc.response_id DESC
                 LIMIT p_limit OFFSET p_offset) v
          JOIN responses r ON r.id = v.id) p ON true
     ORDER BY p.date_created DESC, p.id DESC;
END;
$$;

-- PATCH /api/v1/researcher/responses/{id}/: p_attrs holds any of
-- researcher_payment_status, researcher_session_status (text, checked by
-- the caller) and researcher_star (boolean).  A response the caller may
-- not read (unconsented, preview without its permission) is a 404, as if
-- it did not exist.
CREATE OR REPLACE FUNCTION research_response_edit(p_user bigint, p_response uuid, p_attrs jsonb,
                                       p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    r responses;
BEGIN
    SELECT * INTO r FROM responses WHERE uuid = p_response FOR UPDATE;
    IF NOT FOUND OR NOT response_readable(p_user, r.id, r.study_id, r.is_preview) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Response matches the given query.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, r.study_id, 'edit_study__responses') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'Changing a response needs edit_study__responses.');
        RETURN;
    END IF;
    UPDATE responses SET
        researcher_payment_status = coalesce(p_attrs ->> 'researcher_payment_status',
                                             researcher_payment_status),
        researcher_session_status = coalesce(p_attrs ->> 'researcher_session_status',
                                             researcher_session_status),
        researcher_star = coalesce((p_attrs ->> 'researcher_star')::boolean, researcher_star)
     WHERE id = r.id RETURNING * INTO r;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
                        json_build_object('data', research_response_item(r, p_base));
END;
$$;

-- ---------------------------------------------------------------- withdrawal
-- A withdrawn response's non-consent videos are hidden from every list,
-- link and zip at once: the video visibility rules of 040 (which the
-- video list, single reads, link making and the zip task all call) gain
-- one more condition.  The consent footage stays: it is the record of the
-- consent itself.  Deleting the objects is tasks' work (README).
CREATE OR REPLACE FUNCTION response_id_withdrawn(p_response bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT withdrawn FROM responses WHERE id = p_response), false)
$$;

-- ---------------------------------------------------------------- exports
-- exp_data without the keys a de-identified export leaves out (the exit
-- survey's birthDate and the family's free text; src/domain/export.h,
-- EXPORT_FREE_TEXT_KEYS): dropped from every frame of an object exp_data
-- (EFP) and every trial of an array (jsPsych).
CREATE OR REPLACE FUNCTION exp_data_deidentified(p json) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    -- Most exp_data holds none of the keys: a text search (cheap next to
    -- rebuilding 20 KB through jsonb) passes it through untouched.
    SELECT CASE WHEN strpos(p::text, '"birthDate"') = 0 AND strpos(p::text, '"feedback"') = 0
                 AND strpos(p::text, '"childName"') = 0 THEN p
    ELSE CASE json_typeof(p)
        WHEN 'object' THEN (
            SELECT coalesce(json_object_agg(f.key, CASE WHEN json_typeof(f.value) = 'object'
                     THEN (f.value::jsonb - ARRAY['birthDate', 'feedback', 'childName'])::json
                     ELSE f.value END ORDER BY f.o), '{}'::json)
              FROM json_each(p) WITH ORDINALITY AS f(key, value, o))
        WHEN 'array' THEN (
            SELECT coalesce(json_agg(CASE WHEN json_typeof(a.value) = 'object'
                     THEN (a.value::jsonb - ARRAY['birthDate', 'feedback', 'childName'])::json
                     ELSE a.value END ORDER BY a.o), '[]'::json)
              FROM json_array_elements(p) WITH ORDINALITY AS a(value, o))
        ELSE p END END
$$;

-- Is response r in an export that includes consented responses (p_rd)
-- and/or preview responses (p_pv)?  The one rule every batch applies.
CREATE OR REPLACE FUNCTION export_includes(r responses, p_rd boolean, p_pv boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r.is_preview THEN p_pv
                ELSE p_rd AND consent_status(r.id) = 'accepted' END
$$;

-- The newest ruling of a response (time and comments), for exports.
CREATE OR REPLACE FUNCTION consent_latest(p_response bigint)
RETURNS TABLE (action text, created_at timestamptz, comments text)
LANGUAGE sql STABLE AS $$
    SELECT action, created_at, comments FROM consent_rulings
     WHERE response_id = p_response ORDER BY created_at DESC, id DESC LIMIT 1
$$;
