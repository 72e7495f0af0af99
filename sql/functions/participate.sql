-- The live text of the functions of participate (docs/ARCHITECTURE.md, "A SQL function").

-- 090_participate: studies with no build (issue 14).  External (2) and
-- jsPsych (3) studies have no experiment runner to build, so the 'built'
-- guard of the workflow (activation) holds for them as it is.
CREATE OR REPLACE FUNCTION workflow_guard_ok(p_guard text, s studies)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_guard IS NULL THEN true
                WHEN p_guard = 'built' THEN s.built OR s.study_type IN (2, 3)
                ELSE false END
$$;
