"""test_research_consent: the consent manager, response management,
feedback on consented responses only, the access log and the request
log's user (issue 15 points 1, 2 and 6), end to end over HTTP.  Each
refusal is checked to change nothing."""

from harness import StudyhubTestCase
from researchfixtures import ResearchWorld, ruling

CONSENT = "/api/v1/researcher/studies/{}/consent/"
RESPONSES = "/api/v1/researcher/studies/{}/responses/"
RULE = "/api/v1/researcher/responses/{}/consent/"
EDIT = "/api/v1/researcher/responses/{}/"
ACCESS = "/api/v1/researcher/studies/{}/access-log/"


class ConsentTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.rw = ResearchWorld(cls.srv)

    def ids(self, r):
        self.assertEqual(r.status, 200, r)
        return {d["id"] for d in r.json["data"]}

    def count_rulings(self):
        return int(self.rw.w.sql("SELECT count(*) FROM consent_rulings"))

    def test_list_by_state_with_videos_age_and_history(self):
        rw, S = self.rw, self.rw.study["uuid"]
        r = rw.api("admin", "GET", CONSENT.format(S) + "?page_size=100")
        self.assertEqual(self.ids(r), rw.uuids("accepted", "rejected", "pending",
                                               "withdrawn", "preview"))
        item = next(d for d in r.json["data"] if d["id"] == rw.r["accepted"]["uuid"])
        a = item["attributes"]
        self.assertEqual(a["consent"], "accepted")
        self.assertEqual(a["child_age_in_days"], 500)
        self.assertTrue(a["session_date"].endswith("Z"))
        self.assertEqual(len(a["consent_videos"]), 1, a)       # consent footage only
        self.assertTrue(a["consent_videos"][0]["full_name"].startswith("consent-"))
        self.assertTrue(a["consent_videos"][0]["url"], a)
        self.assertEqual([x["action"] for x in a["rulings"]], ["accepted"])
        # hashed id as the runner computes it
        from apifixtures import hash_child_id
        st = rw.study
        self.assertEqual(a["child_hashed_id"], hash_child_id(
            rw.r["accepted"]["child"]["uuid"], st["uuid"], st["salt"], st["hash_digits"]))
        for state, want in (("pending", {"pending", "preview"}), ("accepted", {"accepted", "withdrawn"}),
                            ("rejected", {"rejected"})):
            r = rw.api("admin", "GET", CONSENT.format(S) + "?state=" + state)
            self.assertEqual(self.ids(r), rw.uuids(*want), state)
        # no name, birthday or free text in the consent manager
        text = r.text
        for m in rw.all_markers():
            self.assertNotIn(m, text)

    def test_list_refusals(self):
        rw, S = self.rw, self.rw.study["uuid"]
        r = rw.api("admin", "GET", CONSENT.format(S) + "?state=maybe")
        self.assertEqual((r.status, r.json["errors"][0]["code"]), (400, "invalid"))
        r = rw.api("member", "GET", CONSENT.format(S))            # reads, cannot rule
        self.assertEqual(r.status, 403, r)
        r = rw.api("other", "GET", CONSENT.format(S))             # another lab: no such study
        self.assertEqual(r.status, 404, r)
        r = rw.api("design", "GET", CONSENT.format(S))            # preview rulings only
        self.assertEqual(self.ids(r), rw.uuids("preview"))
        r = rw.api("admin", "GET", CONSENT.format("not-a-uuid"))
        self.assertEqual(r.status, 404, r)

    def test_ruling_keeps_history_and_opens_the_response_at_once(self):
        rw, S = self.rw, self.rw.study["uuid"]
        w = rw.w
        # a fresh pending response of its own
        ru = w.row(f"INSERT INTO responses (study_id, child_id) SELECT {rw.study['id']}, child_id"
                   f" FROM responses WHERE id = {rw.r['pending']['id']} RETURNING uuid")[0]
        # not readable before: 404 on the runner API and on management
        self.assertEqual(rw.api("member", "GET", f"/api/v1/responses/{ru}/").status, 404)
        r = rw.api("admin", "POST", RULE.format(ru), ruling("accepted", "clear consent video"))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["data"]["attributes"]["consent"], "accepted")
        # readable at once (no cache holds consent)
        self.assertEqual(rw.api("member", "GET", f"/api/v1/responses/{ru}/").status, 200)
        r = rw.api("admin", "POST", RULE.format(ru), ruling("rejected", "parent not visible"))
        self.assertEqual(r.status, 201, r)
        hist = r.json["data"]["attributes"]["rulings"]
        self.assertEqual([h["action"] for h in hist], ["rejected", "accepted"])
        self.assertEqual(hist[0]["comments"], "parent not visible")
        self.assertEqual(hist[0]["arbiter"], rw.u["admin"]["uuid"])
        self.assertEqual(rw.api("member", "GET", f"/api/v1/responses/{ru}/").status, 404)

    def test_ruling_refusals_change_nothing(self):
        rw = self.rw
        before = self.count_rulings()
        pend, prev = rw.r["pending"]["uuid"], rw.r["preview"]["uuid"]
        cases = [
            ("member", pend, ruling("accepted"), 403),             # cannot rule
            ("other", pend, ruling("accepted"), 404),              # other lab
            ("design", pend, ruling("accepted"), 403),             # preview rulings only
            ("analysis", prev, ruling("accepted"), 403),           # no preview ruling
            ("admin", pend, ruling("maybe"), 400),
            ("admin", pend, {"data": {"type": "consent-rulings",
                                      "attributes": {"action": "accepted", "arbiter": "x"}}}, 400),
            ("admin", pend, {"data": {"type": "responses",
                                      "attributes": {"action": "accepted"}}}, 409),
            ("admin", "00000000-0000-4000-8000-000000000000", ruling("accepted"), 404),
        ]
        for who, resp, body, status in cases:
            r = rw.api(who, "POST", RULE.format(resp), body)
            self.assertEqual(r.status, status, (who, body, r))
            self.assertIn("errors", r.json)
        r = rw.api("admin", "POST", RULE.format(pend), raw="{not json")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.count_rulings(), before)
        # preview rulings with their own permission
        r = rw.api("design", "POST", RULE.format(prev), ruling("pending", "preview check"))
        self.assertEqual(r.status, 201, r)

    def test_response_management(self):
        rw, S = self.rw, self.rw.study["uuid"]
        r = rw.api("member", "GET", RESPONSES.format(S) + "?page_size=100")
        # consented (withdrawn included: withdrawal hides videos, not data) and preview
        self.assertEqual(self.ids(r), rw.uuids("accepted", "withdrawn", "preview"))
        for m in rw.all_markers():
            self.assertNotIn(m, r.text)
        acc = rw.r["accepted"]["uuid"]
        body = {"data": {"type": "responses", "id": acc, "attributes": {
            "researcher_payment_status": "paid", "researcher_session_status": "follow_up",
            "researcher_star": True}}}
        r = rw.api("admin", "PATCH", EDIT.format(acc), body)
        self.assertEqual(r.status, 200, r)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["researcher_payment_status"], a["researcher_session_status"],
                          a["researcher_star"]), ("paid", "follow_up", True))
        r = rw.api("member", "GET", RESPONSES.format(S) + "?starred=true")
        self.assertEqual(self.ids(r), {acc})

        def row():
            return rw.w.sql("SELECT researcher_payment_status, researcher_star FROM responses"
                            f" WHERE uuid = '{acc}'")
        before = row()
        for who, uuid, b, status in [
                ("member", acc, body, 403),                         # reads, cannot manage
                ("other", acc, body, 404),
                ("admin", acc, {"data": {"type": "responses", "id": acc,
                                         "attributes": {"exp_data": {}}}}, 400),
                ("admin", acc, {"data": {"type": "responses", "id": acc,
                                         "attributes": {"researcher_star": "yes"}}}, 400),
                ("admin", acc, {"data": {"type": "responses", "id": acc,
                                         "attributes": {"researcher_payment_status": "x" * 129}}},
                 400)]:
            r = rw.api(who, "PATCH", EDIT.format(uuid), b)
            self.assertEqual(r.status, status, (who, b, r))
        self.assertEqual(row(), before)
        for state in ("pending", "rejected"):                      # unconsented: 404
            u = rw.r[state]["uuid"]
            r = rw.api("admin", "PATCH", EDIT.format(u),
                       {"data": {"type": "responses", "id": u,
                                 "attributes": {"researcher_star": True}}})
            self.assertEqual(r.status, 404, (state, r))
        self.assertEqual(rw.w.sql("SELECT count(*) FROM responses WHERE researcher_star"), "1")
        self.assertEqual(rw.api("other", "GET", RESPONSES.format(S)).status, 404)
        self.assertEqual(rw.api("admin", "GET", RESPONSES.format(S) + "?starred=2").status, 400)

    def test_feedback_only_on_readable_responses(self):
        rw = self.rw
        before = rw.w.sql("SELECT count(*) FROM feedback")
        for state in ("pending", "rejected"):
            r = rw.api("admin", "POST", "/api/v1/feedback/", {"data": {
                "type": "feedback", "attributes": {"comment": "hello"},
                "relationships": {"response": {"data": {"type": "responses",
                                                        "id": rw.r[state]["uuid"]}}}}})
            self.assertEqual(r.status, 404, (state, r))
        self.assertEqual(rw.w.sql("SELECT count(*) FROM feedback"), before)
        r = rw.api("admin", "POST", "/api/v1/feedback/", {"data": {
            "type": "feedback", "attributes": {"comment": "thanks!"},
            "relationships": {"response": {"data": {"type": "responses",
                                                    "id": rw.r["accepted"]["uuid"]}}}}})
        self.assertEqual(r.status, 201, r)

    def test_access_log(self):
        rw, S = self.rw, self.rw.study["uuid"]
        rw.api("analysis", "GET", RESPONSES.format(S))
        r = rw.api("member", "GET", ACCESS.format(S) + "?page_size=100")
        self.assertEqual(r.status, 200, r)
        entries = [d["attributes"] for d in r.json["data"]]
        self.assertTrue(any(e["user"] == rw.u["analysis"]["uuid"] and e["action"] == "response_list"
                            and e["study"] == S for e in entries), entries)
        self.assertEqual(rw.api("other", "GET", ACCESS.format(S)).status, 404)
        # the whole log: site admins only
        r = rw.api("site", "GET", "/api/v1/researcher/access-log/?study=" + S)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["data"])
        r = rw.api("admin", "GET", "/api/v1/researcher/access-log/")
        self.assertEqual(r.status, 403, r)
        # append-only, even for the database owner
        n = rw.w.sql("SELECT count(*), max(id) FROM access_log")
        for sql in ("UPDATE access_log SET action = 'export'", "DELETE FROM access_log",
                    "TRUNCATE access_log"):
            out = rw.w.sql("DO $$ BEGIN " + sql + "; EXCEPTION WHEN insufficient_privilege"
                           " THEN RAISE NOTICE 'refused'; END $$; SELECT 'done'")
            self.assertIn("done", out)
            self.assertEqual(rw.w.sql("SELECT count(*), max(id) FROM access_log"), n, sql)
        # the request log names the user
        recs = [x for x in self.srv.log_records() if x.get("msg") == "request"
                and x.get("route") == "/api/v1/researcher/studies/{id}/responses/"]
        self.assertTrue(any(x.get("user") == rw.u["analysis"]["uuid"] for x in recs), recs[-3:])

    def test_withdrawn_non_consent_videos_disappear(self):
        rw = self.rw
        r = rw.api("admin", "GET", "/api/v1/videos/?study=" + rw.study["uuid"])
        self.assertEqual(r.status, 200, r)
        by_resp = {}
        for v in r.json["data"]:
            by_resp.setdefault(v["relationships"]["response"]["data"]["id"], []).append(
                v["attributes"]["is_consent_footage"])
        self.assertEqual(sorted(by_resp[rw.r["accepted"]["uuid"]]), [False, True])
        self.assertEqual(by_resp[rw.r["withdrawn"]["uuid"]], [True])   # consent footage only
        # unconsented: the consent footage only, for whoever rules on it
        self.assertEqual(by_resp[rw.r["pending"]["uuid"]], [True])
        r = rw.api("member", "GET", "/api/v1/videos/?study=" + rw.study["uuid"])
        seen = {v["relationships"]["response"]["data"]["id"] for v in r.json["data"]}
        self.assertEqual(seen, rw.uuids("accepted", "withdrawn", "preview"))
        vid = rw.w.sql("SELECT v.uuid FROM videos v WHERE NOT is_consent_footage AND response_id ="
                       f" {rw.r['withdrawn']['id']}")
        self.assertEqual(rw.api("admin", "GET", f"/api/v1/videos/{vid}/").status, 404)
        # reads of video lists and links are in the access log; refused ones are not
        vid_ok = rw.w.sql("SELECT v.uuid FROM videos v WHERE response_id ="
                          f" {rw.r['accepted']['id']} LIMIT 1")
        self.assertEqual(rw.api("member", "GET", f"/api/v1/videos/{vid_ok}/").status, 200)
        log = rw.w.sql("SELECT action || ' ' || object FROM access_log WHERE user_id ="
                       f" {rw.u['member']['id']} ORDER BY id")
        self.assertIn("video_list study", log)
        self.assertIn(f"video_link {vid_ok}", log)
        self.assertNotIn(vid, rw.w.sql("SELECT string_agg(object, ' ') FROM access_log"))
