-- 109_session_users_notify: the gate keeps session users in process
-- (src/http/auth.c, session_users) as it keeps token users.  A session
-- ends when users.session_epoch moves on (password reset, two-factor
-- turned on, deactivation, erasure), so a change of the epoch must evict
-- the cached user on every server too.
DROP TRIGGER users_notify ON users;
CREATE TRIGGER users_notify
    AFTER UPDATE OF email, is_active, is_researcher, is_site_admin, session_epoch OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
