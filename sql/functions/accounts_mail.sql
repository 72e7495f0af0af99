-- The live text of the functions of accounts mail (docs/ARCHITECTURE.md, "A SQL function").

-- Wakes the senders (they LISTEN on mail_outbox; a poll is the safety
-- net).  Delivered at commit, so a sender never looks before the row is
-- visible.
CREATE OR REPLACE FUNCTION notify_mail_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mail_outbox', '');
    RETURN NULL;
END;
$$;
