-- 001_foundation: instance-wide settings, read and written by later
-- features (one JSON value per key).
CREATE TABLE app_settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
