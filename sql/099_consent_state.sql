-- 099_consent_state: the consent manager and the researcher's responses
-- list answer their first page without a call per response (issue 16,
-- point 8).  Both filtered every response of the study by its consent
-- state, consent_status(), a lookup of the newest ruling per response:
-- 20,000 of them before the first page.  response_consent keeps that state
-- beside what the lists filter and sort on, one row per response, kept by
-- triggers (a response's insert, a ruling's insert, update or delete), so
-- the lists read one index of narrow rows.  consent_status() stays the
-- definition; the table is its cache, filled from it.  A separate table,
-- not a column of responses: a ruling must not touch the response (its
-- date_modified is the family's and the runner's).

CREATE TABLE response_consent (
    response_id   bigint PRIMARY KEY REFERENCES responses(id) ON DELETE CASCADE,
    study_id      bigint NOT NULL,
    is_preview    boolean NOT NULL,
    date_created  timestamptz NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
);
-- Both lists: one study, newest first, with what they filter on included
-- (an index-only scan counts and pages).
CREATE INDEX response_consent_study_idx
    ON response_consent (study_id, date_created DESC, response_id DESC)
    INCLUDE (state, is_preview);

INSERT INTO response_consent (response_id, study_id, is_preview, date_created, state)
SELECT r.id, r.study_id, r.is_preview, r.date_created, consent_status(r.id) FROM responses r;

-- A new response is pending (no ruling can name it yet); a response moved
-- or re-dated (not done by the server, but by hand) follows.
CREATE FUNCTION response_consent_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO response_consent (response_id, study_id, is_preview, date_created, state)
    VALUES (NEW.id, NEW.study_id, NEW.is_preview, NEW.date_created, consent_status(NEW.id))
    ON CONFLICT (response_id) DO UPDATE
        SET study_id = EXCLUDED.study_id, is_preview = EXCLUDED.is_preview,
            date_created = EXCLUDED.date_created;
    RETURN NULL;
END;
$$;
CREATE TRIGGER responses_consent_sync
    AFTER INSERT OR UPDATE OF study_id, is_preview, date_created ON responses
    FOR EACH ROW EXECUTE FUNCTION response_consent_sync();

-- Any change to a response's rulings recomputes its state from them (the
-- newest ruling wins; consent_rule locks the response, so two rulings on
-- one response are serialised).
CREATE FUNCTION consent_ruling_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE response_consent SET state = consent_status(OLD.response_id)
         WHERE response_id = OLD.response_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.response_id <> OLD.response_id) THEN
        UPDATE response_consent SET state = consent_status(NEW.response_id)
         WHERE response_id = NEW.response_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER consent_rulings_sync AFTER INSERT OR UPDATE OR DELETE ON consent_rulings
    FOR EACH ROW EXECUTE FUNCTION consent_ruling_sync();

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
