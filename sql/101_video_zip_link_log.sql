-- 101_video_zip_link_log: the data page shows a study's video archives
-- with their download links (GET /api/v1/studies/{id}/video-zips/, issue
-- 16); each link handed out is a read of the videos, written to the
-- access log as 'video_zip_link' (the archive's request is 'video_zip').
-- The list of sql/085, plus that one.
ALTER TABLE access_log DROP CONSTRAINT access_log_action_check;
ALTER TABLE access_log ADD CONSTRAINT access_log_action_check CHECK (action IN (
    'consent_list', 'response_list', 'video_list', 'video_link', 'video_zip', 'export',
    'family_data', 'video_zip_link'));
