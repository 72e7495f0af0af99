-- The live text of the functions of responses (docs/ARCHITECTURE.md, "A SQL function").

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

-- Who besides the parent may read a response: consented, non-preview
-- responses for holders of read_study__responses; preview responses for
-- holders of read_study__responses(is_preview=True).  The two functions
-- below say the same thing for one row (the permissions are looked up) and
-- for a list (the permissions were looked up once per study).
CREATE OR REPLACE FUNCTION response_research_visible(p_response bigint, p_is_preview boolean,
                                          p_read boolean, p_read_preview boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_is_preview THEN p_read_preview
                ELSE p_read AND consent_status(p_response) = 'accepted' END
$$;

CREATE OR REPLACE FUNCTION response_readable(p_user bigint, p_response bigint, p_study bigint,
                                  p_is_preview boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_is_preview
                THEN has_study_perm(p_user, p_study, 'read_study__responses(is_preview=True)')
                ELSE consent_status(p_response) = 'accepted'
                     AND has_study_perm(p_user, p_study, 'read_study__responses') END
$$;

-- Has the child taken part in the study?  As upstream, an Ember Frame
-- Player response that never got past its first frame (empty sequence)
-- does not count.
CREATE OR REPLACE FUNCTION child_participated(p_child bigint, p_study bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM responses r JOIN studies s ON s.id = r.study_id
         WHERE r.child_id = p_child AND r.study_id = p_study
           AND NOT (s.study_type = 1 AND r.sequence = '[]'::jsonb))
$$;

-- must_have_participated / must_not_have_participated, for eligibility.
CREATE OR REPLACE FUNCTION child_participation_ok(p_child bigint, p_study bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM study_must_have_participated m
                        WHERE m.study_id = p_study
                          AND NOT child_participated(p_child, m.required_study_id))
       AND NOT EXISTS (SELECT 1 FROM study_must_not_have_participated m
                        WHERE m.study_id = p_study
                          AND child_participated(p_child, m.excluded_study_id))
$$;

-- Study visibility (upstream StudyViewSet): active studies (the list also
-- wants public), shared_preview studies for researchers, and any study the
-- user holds read_study__details on, in any state (that is how preview of
-- a study that is not active works).
CREATE OR REPLACE FUNCTION study_visible(p_user bigint, p_study bigint, p_state text,
                              p_public boolean, p_shared_preview boolean,
                              p_list boolean)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT (p_state = 'active' AND (p_public OR NOT p_list))
        OR (p_shared_preview AND EXISTS (SELECT 1 FROM users u
                                          WHERE u.id = p_user AND u.is_researcher))
        OR has_study_perm(p_user, p_study, 'read_study__details')
$$;

-- StudySerializer's attributes.  An empty exit_url falls back to upstream's
-- default, BASE_URL + "studies/history/": the runner turns an unparsable
-- exit_url into "/", which would lose the hashed child id.
CREATE OR REPLACE FUNCTION study_attrs(s studies, p_base_url text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'name', s.name,
        'short_description', s.short_description,
        'purpose', s.purpose,
        'criteria', s.criteria,
        'duration', s.duration,
        'contact_info', s.contact_info,
        'image', s.image,
        'structure', s.structure,
        'generator', s.generator,
        'use_generator', s.use_generator,
        'display_full_screen', s.display_full_screen,
        'exit_url', coalesce(nullif(s.exit_url, ''), p_base_url || '/studies/history/'),
        'state', s.state,
        'public', s.public,
        'pk', s.id)
$$;
