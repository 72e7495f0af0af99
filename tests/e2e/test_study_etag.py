"""test_study_etag: GET /api/v1/studies/{id}/ (what every runner session
asks first) carries a strong ETag of the document, answers If-None-Match
with 304 and no body, from PostgreSQL and from the in-process copy alike,
and the tag changes when a researcher edits the study."""

import unittest

from apifixtures import World
from harness import StudyhubTestCase, wait_until


class TestStudyETag(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.w = World(cls.srv)
        cls.lab = cls.w.lab("ETag Lab")
        cls.parent = cls.w.user("etag-parent")
        cls.researcher = cls.w.user("etag-researcher", researcher=True)
        cls.w.member(cls.lab, cls.researcher, "admin")

    def get(self, study, etag=None):
        return self.w.api(self.parent, "GET", f"/api/v1/studies/{study['uuid']}/",
                          headers={"If-None-Match": etag} if etag else None)

    def test_etag_and_304(self):
        study = self.w.study(self.lab, name="Tagged")
        first = self.get(study)          # from PostgreSQL
        self.assertStatus(first, 200)
        etag = first.headers.get("etag")
        self.assertRegex(etag or "", r'^"[0-9a-f]{16}"$')
        again = self.get(study)          # from the cache: the same bytes, the same tag
        self.assertStatus(again, 200)
        self.assertEqual(again.headers.get("etag"), etag)
        self.assertEqual(again.body, first.body)
        for inm in (etag, "W/" + etag, '"0000000000000000", ' + etag, "*"):
            r = self.get(study, inm)
            self.assertEqual(r.status, 304, inm)
            self.assertEqual(r.body, b"", inm)
            self.assertEqual(r.headers.get("etag"), etag, inm)
            # A 304 carries the headers every reply does.
            self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
            self.assertIn("frame-ancestors 'none'", r.headers.get("content-security-policy"))
        other = self.get(study, '"0000000000000000"')
        self.assertStatus(other, 200)
        self.assertEqual(other.body, first.body)

    def test_etag_changes_when_the_study_is_edited(self):
        # criteria: an edit that keeps an active study active (a content
        # field would send it back to review, and out of the families' view).
        study = self.w.study(self.lab, name="Editable", creator_id=self.researcher["id"])
        self.w.study_member(study, self.researcher, "admin")
        old = self.get(study)
        self.assertStatus(old, 200)
        self.assertStatus(self.get(study), 200)    # cached now
        old_tag = old.headers["etag"]
        r = self.w.api(self.researcher, "PATCH", f"/api/v1/researcher/studies/{study['uuid']}/",
                       {"data": {"type": "studies", "id": study["uuid"],
                                 "attributes": {"criteria": "Babies who like cats"}}})
        self.assertStatus(r, 200)
        new = wait_until(lambda: (lambda g: g if g.status == 200 else None)(
            self.get(study, old_tag)), 30, message="a 200 for the old tag after the edit")
        self.assertNotEqual(new.headers["etag"], old_tag)
        self.assertEqual(new.json["data"]["attributes"]["criteria"], "Babies who like cats")
        self.assertEqual(self.get(study, new.headers["etag"]).status, 304)

    def test_unknown_study_is_404_whatever_the_tag(self):
        r = self.w.api(self.parent, "GET",
                       "/api/v1/studies/00000000-0000-4000-8000-000000000000/",
                       headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()
