-- The live text of the functions of model (docs/ARCHITECTURE.md, "A SQL function").

-- 002_model: the data model of the platform (users, labs, studies, children,
-- demographics, responses, consent, feedback, videos, study logs) and the one
-- permission check every researcher-facing query goes through.
--
-- Conventions: bigserial ids stay internal; the uuid column is the public id
-- (JSON:API "id").  Timestamps are timestamptz.  Text fields that upstream
-- keeps as blank-able CharFields are NOT NULL DEFAULT '' so the API never has
-- to tell NULL from "".  date_modified is kept by a trigger so concurrent
-- writers cannot forget it.

-- Keeps date_modified honest on every UPDATE (responses are PATCHed many
-- times per session; the nested list orders by it).
CREATE OR REPLACE FUNCTION touch_date_modified() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.date_modified := now();
    RETURN NEW;
END;
$$;

-- Timestamps as the API renders them: ISO 8601 in UTC with microseconds
-- and "Z", as DRF does with USE_TZ and UTC; independent of the session's
-- TimeZone and DateStyle.  STABLE, as to_char is: an IMMUTABLE SQL function
-- calling a STABLE one is never inlined, and then each statement that
-- renders a time pays for planning the body (about 40 us of a one-row
-- PATCH; check_migrate holds every such function to being inlined).
CREATE OR REPLACE FUNCTION api_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The display label upstream renders as age_at_birth.
CREATE OR REPLACE FUNCTION age_at_birth_label(weeks smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN weeks IS NULL THEN 'Not sure or prefer not to answer'
        WHEN weeks >= 40 THEN '40 or more weeks'
        WHEN weeks <= 23 THEN 'Under 24 weeks'
        ELSE weeks::text || ' weeks'
    END
$$;

-- The newest ruling wins; no ruling means pending.  A plain SQL scalar
-- function so the planner can inline it into list queries.
CREATE OR REPLACE FUNCTION consent_status(p_response bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT action FROM consent_rulings
                      WHERE response_id = p_response
                      ORDER BY created_at DESC, id DESC LIMIT 1), 'pending')
$$;

-- Site-wide permissions, now of two site groups: 'admin' (is_site_admin)
-- and 'researcher' (is_researcher).  Same signature and answers as 002 for
-- every permission granted before; only the researcher rows are new.
CREATE OR REPLACE FUNCTION has_site_perm(p_user bigint, p_perm text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM users u
          JOIN group_permissions gp
            ON gp.group_kind = 'site' AND gp.permission = p_perm
           AND ((gp.group_name = 'admin' AND u.is_site_admin)
             OR (gp.group_name = 'researcher' AND u.is_researcher))
         WHERE u.id = p_user AND u.is_active
    )
$$;

-- THE permission check.  In upstream's order: a site-wide grant, the
-- object grant on the study, the umbrella grant on the study's lab.
-- Inactive users hold nothing.  Unknown users/studies/permissions: false.
CREATE OR REPLACE FUNCTION has_study_perm(p_user bigint, p_study bigint, p_perm text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT has_site_perm(p_user, p_perm) OR EXISTS (
        SELECT 1 FROM study_members sm
          JOIN users u ON u.id = sm.user_id AND u.is_active
          JOIN group_permissions gp
            ON gp.group_kind = 'study' AND gp.group_name = sm.grp
           AND gp.permission = p_perm
         WHERE sm.study_id = p_study AND sm.user_id = p_user
    ) OR EXISTS (
        SELECT 1 FROM studies s
          JOIN lab_members lm ON lm.lab_id = s.lab_id AND lm.user_id = p_user
          JOIN users u ON u.id = lm.user_id AND u.is_active
          JOIN group_permissions gp
            ON gp.group_kind = 'lab' AND gp.group_name = lm.role
           AND gp.permission = p_perm
         WHERE s.id = p_study
    )
$$;
