-- The live text of the functions of the public pages (sql/106_site_pages.sql;
-- docs/ARCHITECTURE.md, "A SQL function").

-- One page as the API shows it: the Markdown source, never HTML (the
-- pages render it with raw HTML off).
CREATE OR REPLACE FUNCTION site_page_item(p site_pages, p_base text) RETURNS json
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN json_build_object('type', 'site-pages', 'id', p.slug,
        'attributes', json_build_object('title', p.title, 'body', p.body,
                                        'position', p.position,
                                        'updated_at', api_time(p.updated_at)),
        'links', json_build_object('self', p_base || '/api/v1/site-pages/' || p.slug || '/'));
END;
$$;

-- PATCH /api/v1/site-pages/{slug}/ (perms.h's management layout): a
-- NULL title or body is left as it is.  The change and its log row are
-- one statement.
CREATE OR REPLACE FUNCTION site_page_edit(p_admin bigint, p_slug text, p_title text,
                                          p_body text, p_base text)
RETURNS TABLE (verdict text, detail text, pointer text, doc json)
LANGUAGE plpgsql AS $$
DECLARE
    a users;
    p site_pages;
    old site_pages;
BEGIN
    IF NOT has_site_perm(p_admin, 'edit_site_pages') THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('forbidden',
            'You may not edit the public pages (edit_site_pages).');
        RETURN;
    END IF;
    SELECT * INTO a FROM users WHERE id = p_admin;
    SELECT * INTO old FROM site_pages WHERE slug = p_slug FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM mgmt_verdict('not_found', 'No page matches the given query.');
        RETURN;
    END IF;
    UPDATE site_pages SET title = coalesce(p_title, title), body = coalesce(p_body, body),
                          updated_at = now(), updated_by = a.id
     WHERE slug = p_slug RETURNING * INTO p;
    INSERT INTO site_page_log (slug, admin_id, admin_email, old_title, new_title,
                               old_bytes, new_bytes)
    VALUES (p.slug, a.id, a.email, old.title, p.title, octet_length(old.body),
            octet_length(p.body));
    RETURN QUERY SELECT 'ok', NULL::text, NULL::text,
        json_build_object('data', site_page_item(p, p_base));
END;
$$;

-- GET /api/v1/admin/site-page-edits/ (perms.h's list layout): newest first.
CREATE OR REPLACE FUNCTION site_page_edits(p_admin bigint, p_limit bigint, p_offset bigint)
RETURNS TABLE (count bigint, item json, verdict text, detail text, pointer text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_count bigint;
BEGIN
    IF NOT has_site_perm(p_admin, 'edit_site_pages') THEN
        RETURN QUERY SELECT 0::bigint, NULL::json, 'forbidden',
            'You may not edit the public pages (edit_site_pages).', NULL::text;
        RETURN;
    END IF;
    SELECT count(*) INTO v_count FROM site_page_log;
    IF v_count = 0 OR p_offset >= v_count THEN
        RETURN QUERY SELECT v_count, NULL::json, 'ok', NULL::text, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT v_count,
           json_build_object('type', 'site-page-edits', 'id', l.id::text,
               'attributes', json_build_object('page', l.slug, 'admin_email', l.admin_email,
                   'old_title', l.old_title, 'new_title', l.new_title,
                   'old_bytes', l.old_bytes, 'new_bytes', l.new_bytes,
                   'created_at', api_time(l.created_at))),
           'ok', NULL::text, NULL::text
      FROM site_page_log l
     ORDER BY l.created_at DESC, l.id DESC LIMIT p_limit OFFSET p_offset;
END;
$$;
