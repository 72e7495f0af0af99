-- The live text of the functions of cache notify (docs/ARCHITECTURE.md, "A SQL function").

-- 004_cache_notify: notifications that keep the servers' in-process caches
-- right.  Every server LISTENs; a change made anywhere (another instance,
-- psql) evicts the cached copy everywhere.

-- The active-study documents (src/domain/studies.c), by study uuid.
CREATE OR REPLACE FUNCTION notify_study_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('studies_changed', coalesce(NEW.uuid, OLD.uuid)::text);
    RETURN NULL;
END;
$$;

-- The API-token cache (src/http/auth.c), by token hash; '' flushes it all
-- (a user's flags or activity changed, so every token of theirs is stale).
CREATE OR REPLACE FUNCTION notify_token_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_changed', OLD.token_hash);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION notify_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_changed', '');
    RETURN NULL;
END;
$$;
