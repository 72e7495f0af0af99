-- 070_exp_data_json: exp_data is kept as json (the text the runner sent)
-- rather than jsonb.  The runner rewrites all 20 KB of it on every frame,
-- and PostgreSQL's jsonb parser was the largest cost of a PATCH (about
-- 230 us a write against 60 us for json's validating lexer); nothing
-- queries inside exp_data on the write path.  The C side has already
-- checked the text (src/domain/apidoc.c accepts what jsonb accepts) and
-- computes withdrawn from it, so withdrawn becomes a column written with
-- exp_data instead of a jsonpath query on every read.
ALTER TABLE responses ADD COLUMN withdrawn boolean NOT NULL DEFAULT false;
UPDATE responses SET withdrawn = true WHERE response_withdrawn(exp_data);

-- The consent trigger names the column (UPDATE OF exp_data): it is made
-- again below.
DROP TRIGGER responses_video_consent ON responses;
ALTER TABLE responses DROP CONSTRAINT responses_exp_data_check;
ALTER TABLE responses ALTER COLUMN exp_data DROP DEFAULT;
ALTER TABLE responses ALTER COLUMN exp_data TYPE json USING exp_data::json;
ALTER TABLE responses ALTER COLUMN exp_data SET DEFAULT '{}';
-- json_typeof reads only the first token: cheap on 20 KB.
ALTER TABLE responses ADD CONSTRAINT responses_exp_data_check
    CHECK (json_typeof(exp_data) IN ('object', 'array'));
DO $$
BEGIN
    ALTER TABLE responses ALTER COLUMN exp_data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; exp_data stays pglz-compressed';
END;
$$;

-- response_withdrawn(jsonb) served the backfill above; writes compute the
-- same rule in C now (responses.c: exp_data_withdrawn).
DROP FUNCTION response_withdrawn(jsonb);

CREATE OR REPLACE FUNCTION response_attrs(r responses) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'conditions', r.conditions,
        'global_event_timings', r.global_event_timings,
        'exp_data', r.exp_data,
        'sequence', r.sequence,
        'completed', r.completed,
        'completed_consent_frame', r.completed_consent_frame,
        'survey_consent', r.survey_consent,
        'is_preview', r.is_preview,
        'pk', r.id,
        'withdrawn', r.withdrawn,
        'recording_method', r.recording_method,
        'eligibility', to_json(r.eligibility))
$$;

DROP FUNCTION exp_data_consent_frame(jsonb, text);
-- Is frame p_frame of this exp_data a consent frame?  (EFP's exp_data is
-- an object keyed by frame id; jsPsych's is an array: never.)
CREATE FUNCTION exp_data_consent_frame(p_exp_data json, p_frame text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(json_typeof(p_exp_data) = 'object'
                    AND p_exp_data -> p_frame ->> 'frameType' = 'CONSENT', false)
$$;

-- As in 040_videos.sql, for json: exp_data is read into memory once, and
-- only when a video of this response waits for its flag.
CREATE OR REPLACE FUNCTION videos_mark_consent() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    frames text[];
    ed json;
BEGIN
    SELECT array_agg(DISTINCT v.frame_id) INTO frames FROM videos v
     WHERE v.response_id = NEW.id AND NOT v.is_consent_footage;
    IF frames IS NULL THEN
        RETURN NULL;
    END IF;
    ed := NEW.exp_data;          -- detoasted once, not once per frame
    IF json_typeof(ed) <> 'object' THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(f) INTO frames FROM unnest(frames) AS f
     WHERE exp_data_consent_frame(ed, f);
    IF frames IS NOT NULL THEN
        UPDATE videos SET is_consent_footage = true
         WHERE response_id = NEW.id AND NOT is_consent_footage AND frame_id = ANY (frames);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER responses_video_consent AFTER UPDATE OF exp_data ON responses
    FOR EACH ROW EXECUTE FUNCTION videos_mark_consent();
