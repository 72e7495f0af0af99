-- The live text of the functions of announce criteria (docs/ARCHITECTURE.md, "A SQL function").

-- 096_announce_criteria: studies with a criteria expression are announced
-- too.  The expression is upstream's grammar, evaluated in C
-- (src/domain/eligibility.c, eligibility_criteria: the same evaluator the
-- session's eligibility uses), so the job is two statements: the C side
-- reads the (study, child) pairs that pass everything but the expression
-- (announce_criteria_candidates), evaluates it for each, and hands the
-- pairs that pass to announce_new_studies, which re-checks the rest and
-- writes the emails and the record of them in one statement as before.

-- Every (study, child) that may hear of a study today, the expression
-- aside: active and public, the child (not deleted) in the age range and
-- meeting the participation rules, not taken part yet, its family asking
-- for new studies and not told of this study yet.
CREATE OR REPLACE FUNCTION announce_candidates()
RETURNS TABLE (study_id bigint, user_id bigint, child_id bigint, criteria_expression text)
LANGUAGE sql STABLE AS $$
    SELECT s.id, u.id, c.id, s.criteria_expression
      FROM studies s, users u JOIN children c ON c.user_id = u.id
     WHERE s.state = 'active' AND s.public
       AND u.is_active AND u.erased_at IS NULL AND u.email_new_studies
       AND NOT c.deleted
       AND (current_date - c.birthday)
           BETWEEN s.min_age_years * 365 + s.min_age_months * 30 + s.min_age_days
               AND s.max_age_years * 365 + s.max_age_months * 30 + s.max_age_days
       AND NOT EXISTS (SELECT 1 FROM study_announcements a
                        WHERE a.study_id = s.id AND a.user_id = u.id)
       AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.study_id = s.id AND r.child_id = c.id)
       AND NOT EXISTS (SELECT 1 FROM study_must_not_have_participated x
                         JOIN responses r ON r.study_id = x.excluded_study_id
                        WHERE x.study_id = s.id AND r.child_id = c.id)
       AND NOT EXISTS (SELECT 1 FROM study_must_have_participated x
                        WHERE x.study_id = s.id AND NOT EXISTS (
                              SELECT 1 FROM responses r
                               WHERE r.study_id = x.required_study_id AND r.child_id = c.id))
$$;

-- The candidates whose study has an expression, with what the expression
-- can ask about the child (struct eligibility_child).
CREATE OR REPLACE FUNCTION announce_criteria_candidates()
RETURNS TABLE (study_id bigint, child_id bigint, criteria_expression text, age_days integer,
               gender text, gestational_weeks integer, languages text, conditions text)
LANGUAGE sql STABLE AS $$
    SELECT a.study_id, a.child_id, a.criteria_expression, current_date - c.birthday,
           c.gender::text, coalesce(c.gestational_age_at_birth, 0)::integer,
           array_to_string(c.languages_spoken, ' '), array_to_string(c.existing_conditions, ' ')
      FROM announce_candidates() a JOIN children c ON c.id = a.child_id
     WHERE a.criteria_expression <> ''
     ORDER BY a.study_id, a.child_id
$$;

CREATE OR REPLACE FUNCTION announce_new_studies(p_base text, p_studies bigint[], p_children bigint[])
RETURNS TABLE (families bigint, studies bigint, emails bigint)
LANGUAGE sql AS $$
    WITH met AS (SELECT * FROM unnest(p_studies, p_children) AS m(study_id, child_id)),
    cand AS (
        SELECT DISTINCT a.study_id, a.user_id FROM announce_candidates() a
         WHERE a.criteria_expression = ''
            OR EXISTS (SELECT 1 FROM met WHERE met.study_id = a.study_id
                                           AND met.child_id = a.child_id)),
    ins AS (
        INSERT INTO study_announcements (study_id, user_id)
        SELECT study_id, user_id FROM cand ON CONFLICT DO NOTHING
        RETURNING study_id, user_id),
    mail AS (
        INSERT INTO mail_outbox (kind, to_addr, subject, body_text)
        SELECT 'new_studies', u.email,
               CASE WHEN count(*) = 1 THEN 'A new study your child can take part in'
                    ELSE format('%s new studies your children can take part in', count(*)) END,
               E'Hello,\n\nThese studies are looking for children like yours:\n\n'
               || string_agg(format(E'- %s\n  %s\n  %s/studies/%s/\n', s.name,
                                    s.short_description, p_base, s.uuid),
                             E'\n' ORDER BY s.name)
               || E'\nYou get this email because you asked to hear about new studies. '
               || E'You can turn it off on your account page.\n'
          FROM ins JOIN users u ON u.id = ins.user_id JOIN studies s ON s.id = ins.study_id
         GROUP BY u.id, u.email
        RETURNING 1)
    SELECT (SELECT count(DISTINCT user_id) FROM ins), (SELECT count(DISTINCT study_id) FROM ins),
           (SELECT count(*) FROM mail)
$$;
