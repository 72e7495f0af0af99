-- The live text of the functions of exp data json (docs/ARCHITECTURE.md, "A SQL function").

-- Is frame p_frame of this exp_data a consent frame?  (EFP's exp_data is
-- an object keyed by frame id; jsPsych's is an array: never.)
CREATE OR REPLACE FUNCTION exp_data_consent_frame(p_exp_data json, p_frame text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(json_typeof(p_exp_data) = 'object'
                    AND p_exp_data -> p_frame ->> 'frameType' = 'CONSENT', false)
$$;
