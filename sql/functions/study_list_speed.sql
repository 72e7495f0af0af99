-- The live text of the functions of study list speed (docs/ARCHITECTURE.md, "A SQL function").

-- 098_study_list_speed: the researcher's study list, its name search and
-- the review queue in one indexed statement (issue 16, point 8).  The list
-- asked has_study_perm of every study before paginating: an SQL function
-- call per row, 0.3 ms each, so 2,000 studies took over half a second.
-- study_grant_ids and lab_umbrella_ids answer the same question for all
-- studies at once: what the user may read through a study group or the
-- umbrella of a lab group (site-wide holders read every study, which the
-- caller tests once with has_site_perm): the labs and the studies it is
-- granted, two small sets each study row is looked up in.  Same rules as has_study_perm:
-- inactive users hold nothing.

-- The studies p_user reads through a study group granting p_perm.
CREATE OR REPLACE FUNCTION study_grant_ids(p_user bigint, p_perm text)
RETURNS TABLE (study_id bigint) LANGUAGE sql STABLE AS $$
    SELECT sm.study_id FROM study_members sm
      JOIN users u ON u.id = sm.user_id AND u.is_active
      JOIN group_permissions gp
        ON gp.group_kind = 'study' AND gp.group_name = sm.grp AND gp.permission = p_perm
     WHERE sm.user_id = p_user
$$;

-- The labs whose studies p_user reads through a lab group granting p_perm
-- (the umbrella).
CREATE OR REPLACE FUNCTION lab_umbrella_ids(p_user bigint, p_perm text)
RETURNS TABLE (lab_id bigint) LANGUAGE sql STABLE AS $$
    SELECT lm.lab_id FROM lab_members lm
      JOIN users u ON u.id = lm.user_id AND u.is_active
      JOIN group_permissions gp
        ON gp.group_kind = 'lab' AND gp.group_name = lm.role AND gp.permission = p_perm
     WHERE lm.user_id = p_user
$$;

-- Both, as study ids (for checks and tests; the list asks the two sets,
-- which are small, against each study row).
CREATE OR REPLACE FUNCTION study_readable_ids(p_user bigint, p_perm text)
RETURNS TABLE (study_id bigint) LANGUAGE sql STABLE AS $$
    SELECT g.study_id FROM study_grant_ids(p_user, p_perm) g
    UNION
    SELECT s.id FROM studies s WHERE s.lab_id IN (SELECT l.lab_id FROM lab_umbrella_ids(p_user, p_perm) l)
$$;

-- A search string as an ILIKE pattern matching it anywhere, the pattern
-- characters escaped (the search is a plain substring).
CREATE OR REPLACE FUNCTION like_contains(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT '%' || replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_') || '%'
$$;
