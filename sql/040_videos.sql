-- 040_videos: who may watch a video, the consent flag kept right whatever
-- arrives first (upstream #598), and the record of storage objects the
-- nightly reconcile could not place (src/domain/videos.c,
-- src/tasks/reconcile_videos.c, src/tasks/video_zip.c).

-- The zip task and the study video list walk one study's videos by id.
CREATE INDEX videos_study_id_idx ON videos (study_id, id);

-- Video attributes as the API renders them (VideoSerializer, plus
-- created_at).  The presigned url is added by the C code.
CREATE FUNCTION video_attrs(v videos) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'pipe_name', v.pipe_name,
        'pipe_numeric_id', v.pipe_numeric_id,
        'frame_id', v.frame_id,
        'full_name', v.full_name,
        's3_timestamp', api_time(v.s3_timestamp),
        'is_consent_footage', v.is_consent_footage,
        'created_at', api_time(v.created_at),
        'pk', v.id)
$$;

-- May a researcher watch this video?  The permissions are looked up once
-- per study by the caller (rd: read_study__responses, pv: the preview
-- read, cr: edit_study__responses__consent_rulings):
--   preview responses: with the preview read permission;
--   other responses: with read_study__responses when consent was
--   accepted; their consent footage also to whoever rules on consent
--   (the consent manager has to watch it before there is a ruling).
CREATE FUNCTION video_visible_p(p_response bigint, p_is_preview boolean,
                                p_consent_footage boolean, p_rd boolean,
                                p_pv boolean, p_cr boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_is_preview THEN p_pv
                ELSE p_rd AND (consent_status(p_response) = 'accepted'
                               OR (p_consent_footage AND p_cr)) END
$$;

-- The same for one row, permissions looked up here.
CREATE FUNCTION video_visible(p_user bigint, p_study bigint, p_response bigint,
                              p_is_preview boolean, p_consent_footage boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_is_preview
                THEN has_study_perm(p_user, p_study, 'read_study__responses(is_preview=True)')
                ELSE has_study_perm(p_user, p_study, 'read_study__responses')
                     AND (consent_status(p_response) = 'accepted'
                          OR (p_consent_footage AND has_study_perm(p_user, p_study,
                                  'edit_study__responses__consent_rulings'))) END
$$;

-- The videos of one study p_user may download (all, or consent footage
-- only), by id, after p_after and up to p_max (NULL: no bound), at most
-- p_limit (NULL: all).  The zip task reads it in batches; the endpoint
-- that queues the zip hashes all of it.
CREATE FUNCTION videos_visible_in_study(p_user bigint, p_study bigint,
                                        p_consent_only boolean, p_after bigint,
                                        p_max bigint, p_limit integer)
RETURNS TABLE (id bigint, full_name text, mtime bigint)
LANGUAGE sql STABLE AS $$
    WITH p AS MATERIALIZED (
        SELECT has_study_perm(p_user, p_study, 'read_study__responses') AS rd,
               has_study_perm(p_user, p_study, 'read_study__responses(is_preview=True)') AS pv,
               has_study_perm(p_user, p_study, 'edit_study__responses__consent_rulings') AS cr)
    SELECT v.id, v.full_name,
           extract(epoch FROM coalesce(v.s3_timestamp, v.created_at))::bigint
      FROM p, videos v JOIN responses r ON r.id = v.response_id
     WHERE v.study_id = p_study AND (p.rd OR p.pv)
       AND v.id > p_after AND (p_max IS NULL OR v.id <= p_max)
       AND (NOT p_consent_only OR v.is_consent_footage)
       AND video_visible_p(r.id, r.is_preview, v.is_consent_footage, p.rd, p.pv, p.cr)
     ORDER BY v.id
     LIMIT p_limit
$$;

-- Is frame p_frame of this exp_data a consent frame?  (EFP's exp_data is
-- an object keyed by frame id; jsPsych's is an array: never.)
CREATE FUNCTION exp_data_consent_frame(p_exp_data jsonb, p_frame text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_typeof(p_exp_data) = 'object'
                    AND p_exp_data -> p_frame ->> 'frameType' = 'CONSENT', false)
$$;

-- Upstream #598: the webhook that records a video and the PATCH that
-- tells which frame was the consent frame race.  A video insert computes
-- the flag from exp_data while holding the response row FOR SHARE (see
-- src/domain/videos.c), and this trigger marks the videos already there
-- when exp_data changes: whichever commits second sees the other, so the
-- flag is right in both orders.  Never unmarked: the consent- prefix of
-- the upload also sets it.  It runs on every PATCH of the runner (a hot
-- path), so the usual case costs one index probe: no video of this
-- response waits for its flag.  Otherwise exp_data (TOASTed, compressed)
-- is read once into memory rather than once per video.
CREATE FUNCTION videos_mark_consent() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    frames text[];
    ed jsonb;
BEGIN
    SELECT array_agg(DISTINCT v.frame_id) INTO frames FROM videos v
     WHERE v.response_id = NEW.id AND NOT v.is_consent_footage;
    IF frames IS NULL THEN
        RETURN NULL;
    END IF;
    ed := NEW.exp_data || '{}'::jsonb;
    IF jsonb_typeof(ed) <> 'object' THEN
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

-- Parses a video's timestamp as the Lambda sends it: with an offset, or
-- naive (upstream's TIME_ZONE, America/New_York).  NULL when it is not a
-- time at all, so the caller can answer 400 instead of failing.
CREATE FUNCTION video_parse_time(p text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p ~ '\d:\d\d(:\d\d(\.\d*)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$' THEN
        RETURN p::timestamptz;
    END IF;
    RETURN p::timestamp AT TIME ZONE 'America/New_York';
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

-- Objects of the video storage the reconcile could not place: top-level
-- keys that do not follow the naming scheme, or name a study or response
-- that does not exist.  Kept up to date by each complete run (rows not
-- seen again are removed at its end); what operators look at.
CREATE TABLE video_unplaced (
    key         text PRIMARY KEY,
    reason      text NOT NULL,
    size        bigint,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
