-- 060_auth_cache: two-factor changes also evict the cached token users
-- (sql/004 covers tokens and users).
CREATE TRIGGER user_totp_notify AFTER INSERT OR UPDATE OR DELETE ON user_totp
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
