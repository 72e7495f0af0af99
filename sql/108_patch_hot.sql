-- 108_patch_hot: the runner's PATCH (one per frame, 20 KB of exp_data) as
-- a HOT update that touches one table (issue 17, point 4).
--
-- A PATCH writes exp_data and the trigger moves date_modified.  Three
-- indexes held date_modified, so every PATCH wrote a new entry in each of
-- the table's seven indexes; and the consent triggers (sql/099, sql/107)
-- fired on every PATCH, since the UPDATE names is_preview and completed
-- in its SET list, upserting response_consent twice (and dropping the
-- study's cached charts) although nothing they copy had changed.
--
-- What the lists lose: nothing.  The lists that sort by date_modified read
-- few rows or all of them anyway:
--   the runner's past sessions (one study, one child) and a family's own
--   responses (one child) are a handful of rows, sorted in memory;
--   /api/v1/responses/ and the nested list count every visible response
--   of the study and check each one's visibility before they page, so the
--   index order was never used to stop early.
-- The researcher pages' lists (responses, consent manager, participant
-- browser, charts) read response_consent by date_created (sql/099, 107),
-- which a PATCH does not change.

DROP INDEX responses_study_child_idx;
DROP INDEX responses_child_idx;
DROP INDEX responses_study_idx;   -- responses_study_id_idx (study_id, id) serves it
CREATE INDEX responses_study_child_idx ON responses (study_id, child_id);
CREATE INDEX responses_child_idx ON responses (child_id);

-- Room on each page for the PATCHed row's next version (the row is small:
-- exp_data and the other big values are in TOAST), so the update stays on
-- its page and is HOT.  Rows already there keep their pages until
-- rewritten (VACUUM FULL at a quiet time makes the room for them too).
ALTER TABLE responses SET (fillfactor = 70);

-- The consent copies follow a response only when what they copy changes.
DROP TRIGGER responses_consent_sync ON responses;
CREATE TRIGGER responses_consent_sync
    AFTER INSERT ON responses FOR EACH ROW EXECUTE FUNCTION response_consent_sync();
CREATE TRIGGER responses_consent_sync_moved
    AFTER UPDATE OF study_id, is_preview, date_created ON responses FOR EACH ROW
    WHEN (OLD.study_id IS DISTINCT FROM NEW.study_id
          OR OLD.is_preview IS DISTINCT FROM NEW.is_preview
          OR OLD.date_created IS DISTINCT FROM NEW.date_created)
    EXECUTE FUNCTION response_consent_sync();
-- Named to fire after responses_consent_sync(_moved), which make the row.
DROP TRIGGER responses_consent_sync_facts ON responses;
CREATE TRIGGER responses_consent_sync_facts
    AFTER INSERT ON responses FOR EACH ROW EXECUTE FUNCTION response_facts_sync();
CREATE TRIGGER responses_consent_sync_moved_facts
    AFTER UPDATE OF child_id, completed, demographic_snapshot_id, date_created ON responses
    FOR EACH ROW
    WHEN (OLD.child_id IS DISTINCT FROM NEW.child_id
          OR OLD.completed IS DISTINCT FROM NEW.completed
          OR OLD.demographic_snapshot_id IS DISTINCT FROM NEW.demographic_snapshot_id
          OR OLD.date_created IS DISTINCT FROM NEW.date_created)
    EXECUTE FUNCTION response_facts_sync();
