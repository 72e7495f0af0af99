-- 004_cache_notify: notifications that keep the servers' in-process caches
-- right.  Every server LISTENs; a change made anywhere (another instance,
-- psql) evicts the cached copy everywhere.

-- The active-study documents (src/domain/studies.c), by study uuid.
CREATE FUNCTION notify_study_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('studies_changed', coalesce(NEW.uuid, OLD.uuid)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER studies_notify AFTER UPDATE OR DELETE ON studies
    FOR EACH ROW EXECUTE FUNCTION notify_study_changed();

-- The API-token cache (src/http/auth.c), by token hash; '' flushes it all
-- (a user's flags or activity changed, so every token of theirs is stale).
CREATE FUNCTION notify_token_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_changed', OLD.token_hash);
    RETURN NULL;
END;
$$;
CREATE TRIGGER api_tokens_notify AFTER UPDATE OF token_hash, user_id OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION notify_token_changed();

CREATE FUNCTION notify_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_changed', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_notify AFTER UPDATE OF email, is_active, is_researcher, is_site_admin OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
