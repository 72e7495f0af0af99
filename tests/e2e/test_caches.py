"""test_caches: the in-process caches (active study documents, API-token
and session users) never serve what PostgreSQL no longer says.  Changes are made behind
the server's back, with psql, as another instance or an operator would;
the NOTIFY triggers must evict the cached copies at commit."""

import secrets
import unittest

from apifixtures import World
from harness import StudyhubTestCase, wait_until

PASSWORD = "cache password 1234"


class TestCaches(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.w = World(cls.srv)
        cls.lab = cls.w.lab("Cache Lab")
        cls.parent = cls.w.user("cache-parent")
        email = f"cache-hash-{secrets.token_hex(4)}@example.test"
        r = cls.srv.post("/api/v1/accounts/signup/",
                         json_body={"email": email, "password": PASSWORD})
        assert r.status == 201, r.body
        cls.pw_hash = cls.w.sql(f"SELECT password_hash FROM users WHERE email = '{email}'")

    def session(self, name):
        """A user signed in by cookie: (user, client)."""
        user = self.w.user(name)
        self.w.sql(f"UPDATE users SET password_hash = '{self.pw_hash}' WHERE id = {user['id']}")
        c = self.srv.client()
        r = c.post("/api/v1/auth/login/", json_body={"email": user["email"], "password": PASSWORD})
        self.assertStatus(r, 200)
        return user, c

    def get_study(self, who, study):
        return self.w.api(who, "GET", f"/api/v1/studies/{study['uuid']}/")

    def test_study_edit_is_seen_at_once(self):
        study = self.w.study(self.lab, name="Before")
        for _ in range(3):   # the second and third come from the cache
            r = self.get_study(self.parent, study)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json["data"]["attributes"]["name"], "Before")
        self.w.sql(f"UPDATE studies SET name = 'After' WHERE id = {study['id']}")
        wait_until(lambda: self.get_study(self.parent, study).json["data"]["attributes"]["name"]
                   == "After", 2, message="the renamed study")

    def test_paused_study_disappears_for_participants(self):
        study = self.w.study(self.lab, name="Pausing")
        self.assertEqual(self.get_study(self.parent, study).status, 200)
        self.assertEqual(self.get_study(self.parent, study).status, 200)
        self.w.sql(f"UPDATE studies SET state = 'paused' WHERE id = {study['id']}")
        wait_until(lambda: self.get_study(self.parent, study).status == 404, 2,
                   message="404 for a paused study")

    def test_non_active_study_is_never_cached_for_others(self):
        researcher = self.w.user("cache-researcher", researcher=True)
        self.w.member(self.lab, researcher, "admin")
        study = self.w.study(self.lab, name="Draft", state="created")
        self.assertEqual(self.get_study(researcher, study).status, 200)
        self.assertEqual(self.get_study(self.parent, study).status, 404)

    def test_revoked_token_stops_working(self):
        user = self.w.user("cache-revoke")
        study = self.w.study(self.lab)
        for _ in range(3):
            self.assertEqual(self.get_study(user, study).status, 200)
        self.w.sql(f"DELETE FROM api_tokens WHERE user_id = {user['id']}")
        wait_until(lambda: self.get_study(user, study).status == 401, 2,
                   message="401 for a revoked token")

    def test_deactivated_user_stops_working(self):
        user = self.w.user("cache-inactive")
        study = self.w.study(self.lab)
        for _ in range(3):
            self.assertEqual(self.get_study(user, study).status, 200)
        self.w.sql(f"UPDATE users SET is_active = false WHERE id = {user['id']}")
        wait_until(lambda: self.get_study(user, study).status == 401, 2,
                   message="401 for an inactive user")

    # -- session users: the gate keeps them too (issue 14's runner page)

    def test_session_ends_when_its_epoch_moves_on(self):
        user, c = self.session("cache-epoch")
        for _ in range(3):   # the second and third come from the cache
            self.assertStatus(c.get("/api/v1/users/"), 200)
        self.w.sql(f"UPDATE users SET session_epoch = session_epoch + 1 WHERE id = {user['id']}")
        wait_until(lambda: c.get("/api/v1/users/").status == 401, 2,
                   message="401 for a session of an older epoch")

    def test_session_of_deactivated_user_ends(self):
        user, c = self.session("cache-session-inactive")
        for _ in range(3):
            self.assertStatus(c.get("/api/v1/users/"), 200)
        self.w.sql(f"UPDATE users SET is_active = false WHERE id = {user['id']}")
        wait_until(lambda: c.get("/api/v1/users/").status == 401, 2,
                   message="401 for a deactivated user's session")

    def test_admin_deactivation_is_seen_at_once(self):
        """A site admin's write clears the cached session users before the
        next request is read: no waiting for the notification."""
        user, c = self.session("cache-admin-off")
        admin = self.w.user("cache-admin")
        self.w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {admin['id']}")
        for _ in range(3):
            self.assertStatus(c.get("/api/v1/users/"), 200)
        doc = {"data": {"type": "admin-users", "id": user["uuid"],
                        "attributes": {"is_active": False}}}
        r = self.w.api(admin, "PATCH", f"/api/v1/admin/users/{user['uuid']}/", doc)
        self.assertStatus(r, 200)
        self.assertEqual(c.get("/api/v1/users/").status, 401)

    def test_admin_deactivation_of_a_token_user_is_seen_at_once(self):
        """The same for a user who calls with an API token: a site admin's
        write clears the cached token users too.  (The notification may
        come first here; check_auth_cache tests the eviction alone.)"""
        user = self.w.user("cache-admin-off-token")
        admin = self.w.user("cache-admin-2")
        self.w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {admin['id']}")
        study = self.w.study(self.lab)
        for _ in range(3):
            self.assertEqual(self.get_study(user, study).status, 200)
        doc = {"data": {"type": "admin-users", "id": user["uuid"],
                        "attributes": {"is_active": False}}}
        r = self.w.api(admin, "PATCH", f"/api/v1/admin/users/{user['uuid']}/", doc)
        self.assertStatus(r, 200)
        self.assertEqual(self.get_study(user, study).status, 401)

    def test_logout_ends_the_session_on_every_server(self):
        """Sessions are kept in process by id: a logout forgets it at once on
        its own server, and on another by the notification it sends."""
        user, c = self.session("cache-logout")
        other = self.server(database=self.srv.database)
        c2 = other.client()
        c2.cookies = dict(c.cookies)
        for _ in range(3):   # the second and third come from each cache
            self.assertStatus(c.get("/api/v1/users/"), 200)
            self.assertStatus(c2.get("/api/v1/users/"), 200)
        jar = dict(c.cookies)
        r = c.post("/api/v1/auth/logout/",
                   headers={"X-CSRFToken": c.cookies.get("csrftoken", "")})
        self.assertStatus(r, 204)
        self.assertEqual(self.srv.client().get("/api/v1/users/", cookies=jar).status, 401)
        wait_until(lambda: c2.get("/api/v1/users/").status == 401, 2,
                   message="401 on the other server after a logout")


if __name__ == "__main__":
    unittest.main()
