-- The live text of the functions of messages (docs/ARCHITECTURE.md, "A SQL function").

-- One message as the family sees it (the account page, the data download).
CREATE OR REPLACE FUNCTION family_message_json(m family_messages) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', m.uuid,
        'study', (SELECT json_build_object('id', s.uuid, 'name', s.name)
                    FROM studies s WHERE s.id = m.study_id),
        'kind', m.kind, 'subject', m.subject, 'body', m.body, 'emailed', m.emailed,
        'created_at', api_time(m.created_at))
$$;

-- POST /api/v1/researcher/studies/{id}/messages/.  p_attrs: kind
-- (default study_updates), subject, body, and either responses (uuids of
-- readable responses: their families) or all = true (every family with a
-- readable response).  A family with several responses gets one message.
CREATE OR REPLACE FUNCTION family_message_send(p_user bigint, p_study uuid, p_attrs jsonb)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    s studies;
    v_kind text;
    v_subject text;
    v_body text;
    v_all boolean;
    v_targets uuid[];
    v_found integer;
    v_batch uuid := gen_random_uuid();
    n integer;
    e integer;
BEGIN
    SELECT * INTO s FROM studies WHERE uuid = p_study;
    IF NOT FOUND OR NOT has_study_perm(p_user, s.id, 'read_study__details') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No Study matches the given query.');
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, s.id, 'edit_study__message_set') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'Messages to families need edit_study__message_set.');
        RETURN;
    END IF;
    IF p_attrs ? 'kind' AND (jsonb_typeof(p_attrs -> 'kind') <> 'string' OR p_attrs ->> 'kind'
            NOT IN ('next_session', 'new_studies', 'study_updates', 'response_questions')) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'kind must be next_session, new_studies, study_updates or response_questions.',
            '/data/attributes/kind');
        RETURN;
    END IF;
    v_kind := coalesce(p_attrs ->> 'kind', 'study_updates');
    IF jsonb_typeof(p_attrs -> 'subject') IS DISTINCT FROM 'string'
       OR length(btrim(p_attrs ->> 'subject')) NOT BETWEEN 1 AND 200 THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'subject must be a text of 1 to 200 characters.', '/data/attributes/subject');
        RETURN;
    END IF;
    IF jsonb_typeof(p_attrs -> 'body') IS DISTINCT FROM 'string'
       OR length(btrim(p_attrs ->> 'body')) NOT BETWEEN 1 AND 20000 THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'body must be a text of 1 to 20000 characters.', '/data/attributes/body');
        RETURN;
    END IF;
    v_subject := btrim(p_attrs ->> 'subject');
    v_body := p_attrs ->> 'body';
    v_all := coalesce((p_attrs -> 'all') = 'true'::jsonb, false);
    IF p_attrs ? 'all' AND jsonb_typeof(p_attrs -> 'all') <> 'boolean' THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid', 'all must be true or false.',
                                                '/data/attributes/all');
        RETURN;
    END IF;
    IF v_all = (p_attrs ? 'responses') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
            'Give either responses (a list of response ids) or all: true.',
            '/data/attributes/responses');
        RETURN;
    END IF;
    IF NOT v_all THEN
        IF jsonb_typeof(p_attrs -> 'responses') <> 'array'
           OR jsonb_array_length(p_attrs -> 'responses') NOT BETWEEN 1 AND 1000
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_attrs -> 'responses') x
                       WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' !~*
                             '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$') THEN
            RETURN QUERY SELECT * FROM mgmt_verdict('invalid',
                'responses must be a list of 1 to 1000 response ids.',
                '/data/attributes/responses');
            RETURN;
        END IF;
        SELECT array_agg(DISTINCT (x #>> '{}')::uuid) INTO v_targets
          FROM jsonb_array_elements(p_attrs -> 'responses') x;
        -- Every id must be a response the sender may read, else nothing
        -- is sent (an unreadable one is as unknown as a made-up one).
        SELECT count(*) INTO v_found FROM responses r
         WHERE r.uuid = ANY (v_targets) AND r.study_id = s.id
           AND response_readable(p_user, r.id, r.study_id, r.is_preview);
        IF v_found <> cardinality(v_targets) THEN
            RETURN QUERY SELECT * FROM mgmt_verdict('not_found',
                'No Response matches the given query.', '/data/attributes/responses');
            RETURN;
        END IF;
    END IF;

    INSERT INTO family_messages (batch, study_id, sender_id, user_id, kind, subject, body,
                                 emailed)
    SELECT v_batch, s.id, p_user, u.id, v_kind, v_subject, v_body,
           CASE v_kind WHEN 'next_session' THEN u.email_next_session
                       WHEN 'new_studies' THEN u.email_new_studies
                       WHEN 'study_updates' THEN u.email_study_updates
                       ELSE u.email_response_questions END
      FROM users u
     WHERE u.erased_at IS NULL AND u.is_active AND u.id IN (
           SELECT c.user_id FROM responses r JOIN children c ON c.id = r.child_id
            WHERE r.study_id = s.id
              AND (v_all OR r.uuid = ANY (v_targets))
              AND response_readable(p_user, r.id, r.study_id, r.is_preview));
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    SELECT 'family_message', u.email, m.subject,
           m.body || E'\n\n-- \nFrom the researchers of "' || s.name || E'", a study your family '
           || E'took part in. You can read every message on your account page, and choose '
           || E'which emails you get there.\n'
      FROM family_messages m JOIN users u ON u.id = m.user_id
     WHERE m.batch = v_batch AND m.emailed;
    GET DIAGNOSTICS e = ROW_COUNT;
    RETURN QUERY SELECT 'created', NULL::text, NULL::text,
        json_build_object('data', json_build_object('type', 'messages', 'id', v_batch,
            'attributes', json_build_object('study', s.uuid, 'kind', v_kind,
                'subject', v_subject, 'recipients', n, 'emailed', e)));
END;
$$;

-- GET /api/v1/messages/: the caller's own messages, newest first
-- (perms.h's list layout).
CREATE OR REPLACE FUNCTION family_message_list(p_user bigint, p_limit bigint, p_offset bigint)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM family_messages WHERE user_id = p_user), p.item,
           'ok'::text, NULL::text, NULL::text
      FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT json_build_object('type', 'messages', 'id', m.uuid,
                                 'attributes', family_message_json(m)::jsonb - 'id') AS item,
               m.id
          FROM family_messages m WHERE m.user_id = p_user
         ORDER BY m.id DESC LIMIT p_limit OFFSET p_offset) p ON true
     ORDER BY p.id DESC
$$;

-- GET /api/v1/researcher/studies/{id}/messages/: what was sent for the
-- study, one item per send (no family is named: recipients is a count).
CREATE OR REPLACE FUNCTION study_message_list(p_user bigint, p_study uuid, p_limit bigint,
                                   p_offset bigint)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql AS $$
DECLARE
    v_study bigint;
BEGIN
    SELECT s.id INTO v_study FROM studies s WHERE s.uuid = p_study;
    IF v_study IS NULL OR NOT has_study_perm(p_user, v_study, 'read_study__details') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'not_found',
                            'No Study matches the given query.', NULL::text;
        RETURN;
    END IF;
    IF NOT has_study_perm(p_user, v_study, 'edit_study__message_set') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
            'Messages to families need edit_study__message_set.', NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
    WITH b AS (SELECT m.batch, min(m.id) AS id, min(m.created_at) AS created_at,
                      min(m.kind) AS kind, min(m.subject) AS subject, min(m.body) AS body,
                      min(m.sender_id) AS sender, count(*) AS recipients,
                      count(*) FILTER (WHERE m.emailed) AS emailed
                 FROM family_messages m WHERE m.study_id = v_study GROUP BY m.batch)
    SELECT (SELECT count(*) FROM b), p.item, 'ok'::text, NULL::text, NULL::text
      FROM (SELECT 1) one LEFT JOIN LATERAL (
        SELECT json_build_object('type', 'messages', 'id', b.batch, 'attributes',
                   json_build_object('kind', b.kind, 'subject', b.subject, 'body', b.body,
                       'sender', (SELECT u.uuid FROM users u WHERE u.id = b.sender),
                       'recipients', b.recipients, 'emailed', b.emailed,
                       'created_at', api_time(b.created_at))) AS item, b.id
          FROM b ORDER BY b.id DESC LIMIT p_limit OFFSET p_offset) p ON true
     ORDER BY p.id DESC;
END;
$$;
