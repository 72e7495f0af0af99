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
    v_last timestamptz;
BEGIN
    IF v_window <= 0 OR v_study IS NULL THEN
        RETURN NEW;
    END IF;
    NEW.coalesce_key := NEW.kind || ':' || lower(NEW.to_addr) || ':' || v_study;
    -- Two edits at once must not both start an email.
    PERFORM pg_advisory_xact_lock(hashtext(NEW.coalesce_key));
    -- An email of the window still waits: this edit joins it.
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
    -- When did the last email of this key go (or is due to go)?  Within
    -- the window: this one waits for the window's end.  Else the window
    -- is quiet and it goes at once (send_after as the caller set it).
    SELECT m.send_after INTO v_last FROM mail_outbox m
     WHERE m.coalesce_key = NEW.coalesce_key
     ORDER BY m.send_after DESC LIMIT 1;
    IF v_last IS NOT NULL AND v_last > now() - make_interval(secs => v_window) THEN
        NEW.send_after := greatest(NEW.send_after, v_last + make_interval(secs => v_window));
    END IF;
    RETURN NEW;
END;
$$;
