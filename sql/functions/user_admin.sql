-- The live text of the functions of user admin (docs/ARCHITECTURE.md, "A SQL function").

-- One account as the admin pages show it.
CREATE OR REPLACE FUNCTION user_admin_item(u users, p_base text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('type', 'admin-users', 'id', u.uuid,
        'attributes', json_build_object(
            'email', u.email, 'given_name', u.given_name, 'family_name', u.family_name,
            'nickname', u.nickname, 'is_active', u.is_active,
            'is_researcher', u.is_researcher, 'is_site_admin', u.is_site_admin,
            'email_verified', u.email_verified_at IS NOT NULL,
            'two_factor_enabled', EXISTS (SELECT 1 FROM user_totp t
                                           WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL),
            'date_created', api_time(u.date_created),
            'last_login', api_time(u.last_login)),
        'links', json_build_object('self', p_base || '/api/v1/admin/users/' || u.uuid || '/'))
$$;
