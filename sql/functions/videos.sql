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
