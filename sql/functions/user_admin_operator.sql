-- The live text of the functions of user admin operator (docs/ARCHITECTURE.md, "A SQL function").

-- The id of the account named by p (a uuid, or an email in any case), or NULL.
CREATE OR REPLACE FUNCTION user_admin_ref(p text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT u.id FROM users u
          WHERE u.uuid = CASE WHEN p ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                              THEN p::uuid END),
        (SELECT u.id FROM users u WHERE lower(u.email) = lower(p)))
$$;

CREATE OR REPLACE FUNCTION user_admin_list(p_admin bigint, p_operator text, p_search text, p_limit bigint,
                                p_offset bigint, p_base text)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_count bigint;
BEGIN
    IF p_operator IS NULL AND NOT has_site_perm(p_admin, 'manage_users') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
            'You may not manage accounts (manage_users).', NULL::text;
        RETURN;
    END IF;
    SELECT count(*) INTO v_count FROM users u
     WHERE p_search IS NULL
        OR strpos(lower(u.email), lower(p_search)) > 0
        OR strpos(lower(u.given_name || ' ' || u.family_name || ' ' || u.nickname),
                  lower(p_search)) > 0;
    IF v_count = 0 OR p_offset >= v_count THEN
        RETURN QUERY SELECT v_count, NULL::json, 'ok', NULL::text, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT v_count, user_admin_item(u, p_base), 'ok', NULL::text, NULL::text
      FROM users u
     WHERE p_search IS NULL
        OR strpos(lower(u.email), lower(p_search)) > 0
        OR strpos(lower(u.given_name || ' ' || u.family_name || ' ' || u.nickname),
                  lower(p_search)) > 0
     ORDER BY u.date_created, u.id LIMIT p_limit OFFSET p_offset;
END;
$$;

CREATE OR REPLACE FUNCTION user_admin_change(p_admin bigint, p_operator text, p_user text, p_attrs jsonb, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    a users;
    u users;
    v_changed jsonb := '{}';
BEGIN
    IF p_operator IS NULL AND NOT has_site_perm(p_admin, 'manage_users') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden', 'You may not manage accounts (manage_users).');
        RETURN;
    END IF;
    SELECT * INTO a FROM users WHERE id = p_admin AND p_operator IS NULL;
    SELECT * INTO u FROM users WHERE id = user_admin_ref(p_user) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No User matches the given query.');
        RETURN;
    END IF;
    IF u.id = p_admin AND (p_attrs->>'is_active' = 'false' OR p_attrs->>'is_site_admin' = 'false') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'You cannot deactivate your own account or remove your own site admin role: ask another admin.',
            CASE WHEN p_attrs->>'is_active' = 'false' THEN '/data/attributes/is_active'
                 ELSE '/data/attributes/is_site_admin' END);
        RETURN;
    END IF;
    IF p_attrs ? 'is_active' AND (p_attrs->>'is_active')::boolean <> u.is_active THEN
        v_changed := v_changed || jsonb_build_object('is_active', (p_attrs->>'is_active')::boolean);
    END IF;
    IF p_attrs ? 'is_researcher' AND (p_attrs->>'is_researcher')::boolean <> u.is_researcher THEN
        v_changed := v_changed || jsonb_build_object('is_researcher', (p_attrs->>'is_researcher')::boolean);
    END IF;
    IF p_attrs ? 'is_site_admin' AND (p_attrs->>'is_site_admin')::boolean <> u.is_site_admin THEN
        v_changed := v_changed || jsonb_build_object('is_site_admin', (p_attrs->>'is_site_admin')::boolean);
    END IF;
    IF v_changed <> '{}' THEN
        UPDATE users SET
            is_active = coalesce((v_changed->>'is_active')::boolean, is_active),
            is_researcher = coalesce((v_changed->>'is_researcher')::boolean, is_researcher),
            is_site_admin = coalesce((v_changed->>'is_site_admin')::boolean, is_site_admin),
            -- A deactivated account's sessions end now, not at their expiry.
            session_epoch = session_epoch + CASE WHEN v_changed->>'is_active' = 'false' THEN 1 ELSE 0 END
         WHERE id = u.id RETURNING * INTO u;
        IF v_changed->>'is_active' = 'false' THEN
            DELETE FROM api_tokens WHERE user_id = u.id;
        END IF;
        INSERT INTO user_admin_log (admin_id, admin_email, user_id, user_email, action, detail)
        VALUES (a.id, coalesce(a.email, 'operator: ' || p_operator), u.id, u.email, 'change', v_changed);
    END IF;
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', user_admin_item(u, p_base));
END;
$$;

CREATE OR REPLACE FUNCTION user_admin_reset_2fa(p_admin bigint, p_operator text, p_user text, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    a users;
    u users;
BEGIN
    IF p_operator IS NULL AND NOT has_site_perm(p_admin, 'manage_users') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden', 'You may not manage accounts (manage_users).');
        RETURN;
    END IF;
    SELECT * INTO a FROM users WHERE id = p_admin AND p_operator IS NULL;
    SELECT * INTO u FROM users WHERE id = user_admin_ref(p_user) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No User matches the given query.');
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM user_totp WHERE user_id = u.id) THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('conflict',
            'This account does not use two-factor authentication.');
        RETURN;
    END IF;
    DELETE FROM user_totp WHERE user_id = u.id;
    DELETE FROM user_recovery_codes WHERE user_id = u.id;
    DELETE FROM api_tokens WHERE user_id = u.id;
    UPDATE users SET session_epoch = session_epoch + 1 WHERE id = u.id RETURNING * INTO u;
    INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
    VALUES ('totp_reset', u.email, 'Two-factor authentication was reset',
            'A site administrator turned off two-factor authentication on your account.' || E'\n\n' ||
            'Log in with your password and set it up again at ' || p_base || '/researcher/two-factor/' || E'\n\n' ||
            'If you did not ask for this, reply to this email.');
    INSERT INTO user_admin_log (admin_id, admin_email, user_id, user_email, action)
    VALUES (a.id, coalesce(a.email, 'operator: ' || p_operator), u.id, u.email, 'reset_two_factor');
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', user_admin_item(u, p_base));
END;
$$;
