-- The live text of the functions of videos (docs/ARCHITECTURE.md, "A SQL function").

-- Video attributes as the API renders them (VideoSerializer, plus
-- created_at).  The presigned url is added by the C code.
CREATE OR REPLACE FUNCTION video_attrs(v videos) RETURNS json
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

CREATE OR REPLACE FUNCTION video_visible_p(p_response bigint, p_is_preview boolean,
                                           p_consent_footage boolean, p_rd boolean,
                                           p_pv boolean, p_cr boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (p_consent_footage OR NOT response_id_withdrawn(p_response))
       AND CASE WHEN p_is_preview THEN p_pv
                ELSE p_rd AND (consent_status(p_response) = 'accepted'
                               OR (p_consent_footage AND p_cr)) END
$$;

CREATE OR REPLACE FUNCTION video_visible(p_user bigint, p_study bigint, p_response bigint,
                                         p_is_preview boolean, p_consent_footage boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (p_consent_footage OR NOT response_id_withdrawn(p_response))
       AND CASE WHEN p_is_preview
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
CREATE OR REPLACE FUNCTION videos_visible_in_study(p_user bigint, p_study bigint,
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

-- Parses a video's timestamp as the Lambda sends it: with an offset, or
-- naive (upstream's TIME_ZONE, America/New_York).  NULL when it is not a
-- time at all, so the caller can answer 400 instead of failing.
CREATE OR REPLACE FUNCTION video_parse_time(p text) RETURNS timestamptz
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
