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

-- The analytics of one study read its consented, non-preview responses:
-- one index of narrow rows, with the child beside them, so the charts by
-- age and gender join children only once per response.
CREATE INDEX response_consent_analytics_idx ON response_consent (study_id, state, is_preview)
    INCLUDE (date_created, response_id);
