-- The live text of the functions of notify announce (docs/ARCHITECTURE.md, "A SQL function").

CREATE OR REPLACE FUNCTION mail_outbox_coalesce() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_window integer := coalesce((SELECT (value #>> '{}')::integer FROM app_settings
                                   WHERE key = 'notify_window_s'), 900);
    -- The body names the study as "Study: <name> (<uuid>)".
    v_study text := substring(NEW.body_text FROM
        'Study: .*\(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)');
    v_joined bigint;
BEGIN
    IF v_window <= 0 OR v_study IS NULL THEN
        RETURN NEW;
    END IF;
    NEW.coalesce_key := NEW.kind || ':' || lower(NEW.to_addr) || ':' || v_study;
    -- Two edits at once must not both start an email.
    PERFORM pg_advisory_xact_lock(hashtext(NEW.coalesce_key));
    UPDATE mail_outbox m
       SET body_text = m.body_text || E'\n----------------------------------------\n\n'
                       || NEW.body_text,
           subject = format('%s changes to a study; the latest: %s', m.coalesced + 1,
                            NEW.subject),
           coalesced = m.coalesced + 1
     WHERE m.coalesce_key = NEW.coalesce_key AND m.sent_at IS NULL AND m.failed_at IS NULL
       AND m.lease_owner IS NULL AND m.attempts = 0 AND m.send_after > now()
    RETURNING m.id INTO v_joined;
    IF v_joined IS NOT NULL THEN
        RETURN NULL;        -- joined the email that waits
    END IF;
    NEW.send_after := greatest(NEW.send_after, now() + make_interval(secs => v_window));
    RETURN NEW;
END;
$$;

-- The job announce_new_studies (daily at 10:00, upstream's): every active,
-- public study a family was not told about yet, when one of its children
-- (not deleted) is in the study's age range today and meets its
-- participation rules (must / must not have taken part) and has not taken
-- part in it already; only families with email_new_studies on, one email
-- per family listing all its new studies.  A study with a criteria
-- expression is not announced (it is evaluated in C at session time, and a
-- family that is not eligible must not be written to).
CREATE OR REPLACE FUNCTION announce_new_studies(p_base text)
RETURNS TABLE (families bigint, studies bigint, emails bigint)
LANGUAGE sql AS $$
    WITH cand AS (
        SELECT DISTINCT s.id AS study_id, u.id AS user_id
          FROM studies s, users u JOIN children c ON c.user_id = u.id
         WHERE s.state = 'active' AND s.public AND s.criteria_expression = ''
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
                                   WHERE r.study_id = x.required_study_id AND r.child_id = c.id))),
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
