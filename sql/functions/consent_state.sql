-- The live text of the functions of consent state (docs/ARCHITECTURE.md, "A SQL function").

-- A new response is pending (no ruling can name it yet); a response moved
-- or re-dated (not done by the server, but by hand) follows.
CREATE OR REPLACE FUNCTION response_consent_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO response_consent (response_id, study_id, is_preview, date_created, state)
    VALUES (NEW.id, NEW.study_id, NEW.is_preview, NEW.date_created, consent_status(NEW.id))
    ON CONFLICT (response_id) DO UPDATE
        SET study_id = EXCLUDED.study_id, is_preview = EXCLUDED.is_preview,
            date_created = EXCLUDED.date_created;
    RETURN NULL;
END;
$$;

-- Any change to a response's rulings recomputes its state from them (the
-- newest ruling wins; consent_rule locks the response, so two rulings on
-- one response are serialised).
CREATE OR REPLACE FUNCTION consent_ruling_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE response_consent SET state = consent_status(OLD.response_id)
         WHERE response_id = OLD.response_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.response_id <> OLD.response_id) THEN
        UPDATE response_consent SET state = consent_status(NEW.response_id)
         WHERE response_id = NEW.response_id;
    END IF;
    RETURN NULL;
END;
$$;
