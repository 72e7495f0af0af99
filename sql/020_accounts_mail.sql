-- 020_accounts_mail: what accounts need beyond 002 (email verification,
-- single-use emailed tokens, session invalidation, TOTP two-factor with
-- recovery codes, token ids for the token API) and the mail outbox that
-- every email of the platform goes through (src/io/mail.c).

-- ---------------------------------------------------------------- users
-- NULL until the address is proven by the emailed link.  The default
-- marks every row made by anything but self-service sign-up as verified:
-- existing users, the demo seed, operators' inserts.  Sign-up inserts
-- NULL explicitly (src/domain/accounts.c).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz DEFAULT now();

-- Part of every session's value in Redis; bumping it ends every session
-- and pending two-factor login of the user at once (password reset),
-- without having to find their keys in Redis.
ALTER TABLE users ADD COLUMN session_epoch integer NOT NULL DEFAULT 0;

-- The public id of a token in the token API (the key itself is never
-- stored, and the row id stays internal).
ALTER TABLE api_tokens ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX api_tokens_uuid_key ON api_tokens (uuid);

-- ---------------------------------------------------------------- emailed tokens
-- Email verification and password reset links.  Only the SHA-256 of the
-- token is kept; a token works once (used_at) and until expires_at.
CREATE TABLE account_tokens (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose)
    WHERE used_at IS NULL;

-- ---------------------------------------------------------------- two-factor
-- One TOTP secret per user.  confirmed_at NULL: enrolment started but not
-- proven with a code, so it does not count.  last_step is the RFC 6238
-- time step of the last accepted code: a code is accepted only for a
-- greater step (UPDATE ... WHERE last_step < $step), so no code works
-- twice, even on two servers at once.  The secret is base32 text: the
-- server must be able to compute codes, so it cannot be hashed.
CREATE TABLE user_totp (
    user_id       bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret        text NOT NULL CHECK (secret ~ '^[A-Z2-7]{32}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    last_step     bigint NOT NULL DEFAULT 0
);

-- Ten single-use recovery codes per confirmed TOTP; SHA-256 of the
-- normalised code (80 random bits each, so a plain hash is enough).
CREATE TABLE user_recovery_codes (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash   text NOT NULL CHECK (code_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    UNIQUE (user_id, code_hash)
);

-- ---------------------------------------------------------------- mail
-- The outbox.  Anyone enqueues an email with a plain INSERT of (kind,
-- to_addr, subject, body_text), in the same statement or transaction as
-- the change it reports; the sender (src/io/mail.c) of any server claims
-- due rows with FOR UPDATE SKIP LOCKED under a lease, sends them (SMTP, or
-- an <id>.eml file in MAIL_DIR) and records the outcome.
CREATE TABLE mail_outbox (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    to_addr      text NOT NULL,
    subject      text NOT NULL,
    body_text    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    send_after   timestamptz NOT NULL DEFAULT now(),
    -- Claims so far (each claim is one delivery attempt).
    attempts     int NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz,
    -- The server sending it now and until when it is trusted to be at it;
    -- both set exactly while a send is in progress.  A row whose lease ran
    -- out (its server died mid-send) is claimed again.
    lease_owner  text,
    lease_until  timestamptz,
    -- Given up: a permanent refusal (SMTP 5xx for the address) or
    -- MAIL_MAX_ATTEMPTS used.  last_error says why.
    failed_at    timestamptz,
    -- The Message-ID it was sent with; the same on every attempt, so a
    -- resend after a crash is recognisably the same message.
    message_id   text,
    -- The body holds a secret (a single-use link): replaced by a note once
    -- sent, so the table keeps no usable link longer than needed.
    redact_after_send boolean NOT NULL DEFAULT false
);
-- The sender's claim: due, unsent, not given up.
CREATE INDEX mail_outbox_due_idx ON mail_outbox (send_after, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- Wakes the senders (they LISTEN on mail_outbox; a poll is the safety
-- net).  Delivered at commit, so a sender never looks before the row is
-- visible.
CREATE FUNCTION notify_mail_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mail_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER mail_outbox_notify AFTER INSERT ON mail_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_mail_outbox();
