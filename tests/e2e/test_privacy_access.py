"""test_privacy_access: a family downloads everything the platform holds
about it as one JSON file (issue 15 point 5, access), streamed in
batches and written to the access log; nobody else's data, and every
refusal logs nothing."""

import json

from apifixtures import lit
from harness import StudyhubTestCase
from researchfixtures import ResearchWorld


class AccessTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.rw = ResearchWorld(cls.srv)

    def logged(self, user):
        return int(self.rw.w.sql("SELECT count(*) FROM access_log WHERE action = 'family_data'"
                                 f" AND user_id = {user['id']}"))

    def test_download_holds_everything_and_is_logged(self):
        rw, w = self.rw, self.rw.w
        acc = rw.r["accepted"]
        p, child = acc["parent"], acc["child"]
        w.sql(f"INSERT INTO feedback (response_id, comment) VALUES ({acc['id']}, 'Thank you!')")
        # A hidden (soft-deleted) child is still held: it is in the file.
        hidden = w.child(p, name="Hidden", deleted=True)
        # Enough responses that the section spans several batches.
        w.sql("INSERT INTO responses (study_id, child_id, exp_data)"
              f" SELECT {rw.study['id']}, {child['id']}, jsonb_build_object('n', g)"
              " FROM generate_series(1, 250) g")
        writer = w.user("writer", researcher=True)
        w.study_member(rw.study, writer, "researcher")
        r = rw.api(writer, "POST", f"/api/v1/researcher/studies/{rw.study['uuid']}/messages/",
                   {"data": {"type": "messages", "attributes": {
                       "subject": "Hello", "body": "A question", "responses": [acc["uuid"]]}}})
        self.assertStatus(r, 201)
        before = self.logged(p)

        r = rw.api(p, "GET", f"/api/v1/users/{p['uuid']}/data/", timeout=60)
        self.assertStatus(r, 200)
        self.assertIn("attachment", r.headers["content-disposition"])
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        doc = json.loads(r.body)
        self.assertEqual(doc["format"], "studyhub-family-data-1")
        self.assertEqual(doc["account"][0]["email"], p["email"])
        self.assertEqual(doc["account"][0]["id"], p["uuid"])
        kids = {c["id"]: c["attributes"] for c in doc["children"]}
        self.assertEqual(kids[child["uuid"]]["given_name"], rw.markers["accepted"])
        self.assertTrue(kids[hidden["uuid"]]["deleted"])
        self.assertEqual(len(doc["demographics"]), 1)
        self.assertIn("LEAKDEMOACCEPTED", json.dumps(doc["demographics"]))
        self.assertEqual(len(doc["responses"]), 251)
        first = [x for x in doc["responses"] if x["id"] == acc["uuid"]][0]
        self.assertEqual(first["exp_data"]["1-study-intro"]["answer"], "cats")
        self.assertEqual(first["consent"], "accepted")
        self.assertEqual(first["study"]["id"], rw.study["uuid"])
        self.assertEqual([f["comment"] for f in doc["feedback"]], ["Thank you!"])
        self.assertEqual([m["subject"] for m in doc["messages"]], ["Hello"])
        names = w.sql(f"SELECT full_name FROM videos WHERE response_id = {acc['id']}"
                      " ORDER BY id").split("\n")
        self.assertEqual([v["full_name"] for v in doc["videos"]], names)
        # Only this family's: no other family's marker or response.
        for state in ("rejected", "pending", "withdrawn", "preview"):
            self.assertNotIn(rw.markers[state], r.body.decode())
            self.assertNotIn(rw.r[state]["uuid"], r.body.decode())
        self.assertEqual(self.logged(p), before + 1)

    def test_refusals(self):
        rw = self.rw
        me = rw.r["pending"]["parent"]
        other = rw.r["accepted"]["parent"]
        before = self.logged(me)
        for path in (f"/api/v1/users/{other['uuid']}/data/",
                     "/api/v1/users/00000000-0000-4000-8000-000000000000/data/",
                     "/api/v1/users/not-a-uuid/data/"):
            r = rw.api(me, "GET", path)
            self.assertStatus(r, 404)
            self.assertNotIn(other["email"], r.body.decode())
        self.assertStatus(rw.api(None, "GET", f"/api/v1/users/{me['uuid']}/data/"), 401)
        # A researcher with every right on the study cannot read it either.
        self.assertStatus(rw.api("admin", "GET", f"/api/v1/users/{me['uuid']}/data/"), 404)
        self.assertEqual(self.logged(me), before)
        self.assertEqual(self.logged(rw.u["admin"]), 0)
