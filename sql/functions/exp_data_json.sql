-- The live text of the functions of exp data json (docs/ARCHITECTURE.md, "A SQL function").

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

-- Is frame p_frame of this exp_data a consent frame?  (EFP's exp_data is
-- an object keyed by frame id; jsPsych's is an array: never.)
CREATE OR REPLACE FUNCTION exp_data_consent_frame(p_exp_data json, p_frame text)
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
