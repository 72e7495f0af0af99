-- 102_session_user_notify: the session-user cache (src/http/auth.c) keeps
-- what the session lookup reads.  sql/004 notifies changes of the roles,
-- activity and email, sql/060 of two-factor; this adds the session epoch
-- (a password reset, a deactivation or an erasure ends every session):
-- each flushes the caches everywhere.
CREATE TRIGGER users_notify_session AFTER UPDATE OF session_epoch ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
