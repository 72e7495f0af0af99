-- 081_account_security: API tokens remember whether a two-factor verified
-- session made them and stop working at expires_at; two-factor secrets may
-- be stored sealed (AES-256-GCM under TOTP_SECRET_KEY, src/http/totp.c).

-- Tokens that exist before this migration count as NOT verified: nothing
-- recorded who made them or how.  Operators make verified ones again with
-- `studyhubctl token create EMAIL`.  They keep working for 90 days from
-- now rather than dying at once; the server always gives expires_at
-- (TOKEN_TTL_DAYS), and the default of 90 days is for rows an operator
-- inserts by hand.
ALTER TABLE api_tokens ADD COLUMN mfa_verified boolean NOT NULL DEFAULT false;
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz NOT NULL
    DEFAULT now() + interval '90 days';

-- Sealed secrets are "v1:" + 80 base64 characters.  Plaintext base32 rows
-- written before this version stay readable and are sealed by the server
-- at start (and at their next use).
ALTER TABLE user_totp DROP CONSTRAINT user_totp_secret_check;
ALTER TABLE user_totp ADD CONSTRAINT user_totp_secret_check
    CHECK (secret ~ '^[A-Z2-7]{32}$' OR secret ~ '^v1:[A-Za-z0-9+/]{80}$');

-- A token's expiry or flag changed by hand reaches the servers' token
-- caches as its revocation does (sql/004).
DROP TRIGGER api_tokens_notify ON api_tokens;
CREATE TRIGGER api_tokens_notify
    AFTER UPDATE OF token_hash, user_id, expires_at, mfa_verified OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION notify_token_changed();
