-- 107_analytics: the participant browser, study analytics and the
-- housekeeping of responses (issue 18, points 1-3).  Functions are in
-- sql/functions/analytics.sql.

-- The participant browser's reads go to the access log, one entry per
-- study whose responses a page showed.
ALTER TABLE access_log DROP CONSTRAINT access_log_action_check;
ALTER TABLE access_log ADD CONSTRAINT access_log_action_check CHECK (action IN (
    'consent_list', 'response_list', 'video_list', 'video_link', 'video_zip', 'export',
    'family_data', 'video_zip_link', 'participant_list'));

-- Deleting a study's preview responses is an erasure too: the same rows
-- (erasure_objects) and the same task (erase_storage) delete its videos
-- and the study's cached zips.  subject_uuid is then the study's uuid.
ALTER TABLE erasures DROP CONSTRAINT erasures_scope_check;
ALTER TABLE erasures ADD CONSTRAINT erasures_scope_check
    CHECK (scope IN ('child', 'account', 'preview'));
ALTER TABLE erasures DROP CONSTRAINT erasures_requested_by_check;
ALTER TABLE erasures ADD CONSTRAINT erasures_requested_by_check
    CHECK (requested_by IN ('family', 'admin', 'researcher'));

-- The charts and the participant browser read one narrow row per
-- response: response_consent (sql/099) gains what they count by, kept by
-- triggers (functions in sql/functions/analytics.sql): the child, its
-- family, its age in days on the day and gender, completion and the
-- demographics snapshot.  A chart is then one index-only scan of the
-- study's consented rows, with no join per response (tools/bench,
-- BENCH_ANALYTICS=1: 100,000 responses).
ALTER TABLE response_consent
    ADD COLUMN child_id bigint,
    ADD COLUMN user_id bigint,
    ADD COLUMN age_days integer,
    ADD COLUMN gender text,
    ADD COLUMN completed boolean NOT NULL DEFAULT false,
    ADD COLUMN snapshot_id bigint;
UPDATE response_consent rc
   SET child_id = r.child_id, user_id = c.user_id,
       age_days = (r.date_created AT TIME ZONE 'UTC')::date - c.birthday,
       gender = c.gender, completed = r.completed, snapshot_id = r.demographic_snapshot_id
  FROM responses r JOIN children c ON c.id = r.child_id
 WHERE r.id = rc.response_id;
CREATE INDEX response_consent_analytics_idx ON response_consent (study_id, state, is_preview)
    INCLUDE (date_created, child_id, user_id, age_days, gender, completed, snapshot_id);
-- A child's change (gender, birthday, erasure) finds its rows.
CREATE INDEX response_consent_child_idx ON response_consent (child_id);

CREATE FUNCTION response_facts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;
CREATE FUNCTION child_facts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;
-- Named to fire after responses_consent_sync, which inserts the row.
CREATE TRIGGER responses_consent_sync_facts
    AFTER INSERT OR UPDATE OF child_id, completed, demographic_snapshot_id, date_created
    ON responses FOR EACH ROW EXECUTE FUNCTION response_facts_sync();
CREATE TRIGGER children_consent_facts
    AFTER UPDATE OF user_id, gender, birthday ON children
    FOR EACH ROW EXECUTE FUNCTION child_facts_sync();

-- The charts' documents, kept until a counted row of one of their studies
-- changes: any change to response_consent (a response, a ruling, a
-- child's edit through child_facts_sync, a deletion) drops the entries of
-- its study.  key is md5 of the scope, chart, field, cell threshold and
-- the studies counted (a lab's depend on the caller's permissions);
-- studies lists them for that drop.  An entry also ends after
-- ANALYTICS_CACHE_S (sql/functions/analytics.sql), which bounds the one
-- race (a change committed while the entry was being computed).
CREATE TABLE analytics_cache (
    key         text PRIMARY KEY,
    studies     bigint[] NOT NULL,
    doc         json NOT NULL,
    -- the participant browser's families (users.id), newest session first
    ids         bigint[],
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analytics_cache_studies_idx ON analytics_cache USING gin (studies);

CREATE FUNCTION analytics_cache_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;
CREATE TRIGGER response_consent_analytics_cache
    AFTER INSERT OR UPDATE OR DELETE ON response_consent
    FOR EACH ROW EXECUTE FUNCTION analytics_cache_drop();
