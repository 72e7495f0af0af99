-- 110_patch_sets_date_modified: the runner's PATCH sets date_modified
-- itself (to now(), as the trigger would), so the BEFORE UPDATE trigger
-- need not run for it: a PL/pgSQL call was about a tenth of PostgreSQL's
-- work for a grouped 20 KB PATCH.  Every other UPDATE of responses leaves
-- date_modified as it was and still gets the trigger's now().
DROP TRIGGER responses_touch ON responses;
CREATE TRIGGER responses_touch BEFORE UPDATE ON responses
    FOR EACH ROW WHEN (NEW.date_modified IS NOT DISTINCT FROM OLD.date_modified)
    EXECUTE FUNCTION touch_date_modified();
