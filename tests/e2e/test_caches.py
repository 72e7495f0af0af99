"""test_caches: the in-process caches (active study documents, API-token
users) never serve what PostgreSQL no longer says.  Changes are made behind
the server's back, with psql, as another instance or an operator would;
the NOTIFY triggers must evict the cached copies at commit."""

import unittest

from apifixtures import World
from harness import StudyhubTestCase, wait_until


class TestCaches(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.w = World(cls.srv)
        cls.lab = cls.w.lab("Cache Lab")
        cls.parent = cls.w.user("cache-parent")

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


if __name__ == "__main__":
    unittest.main()
