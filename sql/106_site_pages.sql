-- 106_site_pages: the public pages (issue 18, point 5).  FAQ, privacy,
-- terms of use, for scientists, resources, publications and contact are
-- Markdown that a site admin edits in the admin pages; the pages render
-- it in the browser with raw HTML off (markdown-it, html: false).  Every
-- edit is logged: who changed which page, when, and the sizes before and
-- after.  The functions are in sql/functions/site_pages.sql.

INSERT INTO permissions (name, description) VALUES
    ('edit_site_pages', 'Edit the text of the public pages (FAQ, privacy, terms...)')
ON CONFLICT DO NOTHING;
INSERT INTO group_permissions (group_kind, group_name, permission) VALUES
    ('site', 'admin', 'edit_site_pages')
ON CONFLICT DO NOTHING;

-- One row per page; the set of pages is fixed (each has a route).
CREATE TABLE site_pages (
    slug        text PRIMARY KEY CHECK (slug ~ '^[a-z][a-z-]{0,31}$'),
    position    int NOT NULL,
    title       text NOT NULL CHECK (title <> '' AND char_length(title) <= 200),
    body        text NOT NULL DEFAULT '' CHECK (octet_length(body) <= 100000),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  bigint REFERENCES users(id) ON DELETE SET NULL
);

INSERT INTO site_pages (slug, position, title) VALUES
    ('faq', 1, 'Frequently asked questions'),
    ('privacy', 2, 'Privacy'),
    ('terms', 3, 'Terms of use'),
    ('scientists', 4, 'For scientists'),
    ('resources', 5, 'Resources'),
    ('publications', 6, 'Publications'),
    ('contact', 7, 'Contact us')
ON CONFLICT DO NOTHING;

-- Who changed which page and when; never updated or deleted by the server.
CREATE TABLE site_page_log (
    id          bigserial PRIMARY KEY,
    slug        text NOT NULL REFERENCES site_pages(slug),
    admin_id    bigint REFERENCES users(id) ON DELETE SET NULL,
    admin_email text NOT NULL,
    old_title   text NOT NULL,
    new_title   text NOT NULL,
    old_bytes   int NOT NULL,
    new_bytes   int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX site_page_log_created_idx ON site_page_log (created_at DESC, id DESC);
