"""test_runner_session: a whole experiment-runner session over HTTP, request
by request as runner-api.md section 1 describes it (R1 study, R2 child, R3
create, R4 past sessions through the study's related link, R5.. PATCH on
every frame, consent, early exit and completion), with token and with
session-cookie + CSRF authentication; then the exit URL (section 2) with
the hashed child id recomputed in Python (section 4), preview, eligibility,
the demographic snapshot, and the nested list's pagination."""

import json
import threading
import unittest
from urllib.parse import quote, urlsplit

from apifixtures import (CHILD_ATTRIBUTES, RESPONSE_READ_ATTRIBUTES,
                         RESPONSE_WRITE_ATTRIBUTES, STUDY_ATTRIBUTES, World,
                         exit_url, hash_child_id, r1_body)
from harness import JSONAPI, StudyhubTestCase


def frame_data(kind, frame_type="DEFAULT", **extra):
    """One exp_data entry as the runner's saveFrame writes it."""
    data = {"generatedProperties": {}, "frameDuration": 1.5, "frameType": frame_type,
            "eventTimings": [{"eventType": f"{kind}:nextFrame",
                              "timestamp": "2026-05-01T14:11:13.000Z"}]}
    data.update(extra)
    return data


class RunnerSession:
    """Drives one session the way the runner does; send(method, url, body)
    is the transport (token or cookie)."""

    def __init__(self, test, send, study_uuid, child_uuid, base, preview=False):
        self.t = test
        self.send = send
        self.study_uuid = study_uuid
        self.child_uuid = child_uuid
        self.base = base
        self.preview = preview
        self.record = None       # the live ember-data record's attributes
        self.response_id = None

    def r1_study(self):
        r = self.send("GET", f"/api/v1/studies/{self.study_uuid}/")
        self.t.assertStatus(r, 200)
        self.t.assertEqual(r.headers.get("content-type"), JSONAPI)
        d = r.json["data"]
        self.t.assertEqual(d["type"], "studies")
        self.t.assertEqual(d["id"], self.study_uuid)
        self.t.assertEqual(set(d["attributes"]), STUDY_ATTRIBUTES)
        related = d["relationships"]["responses"]["links"]["related"]
        self.t.assertEqual(related, f"{self.base}/api/v1/studies/{self.study_uuid}/responses/")
        self.t.assertEqual(d["links"]["self"], f"{self.base}/api/v1/studies/{self.study_uuid}/")
        self.study = d
        return d

    def r2_child(self):
        r = self.send("GET", f"/api/v1/children/{self.child_uuid}/")
        self.t.assertStatus(r, 200)
        d = r.json["data"]
        self.t.assertEqual((d["type"], d["id"]), ("children", self.child_uuid))
        self.t.assertEqual(set(d["attributes"]), CHILD_ATTRIBUTES)
        self.t.assertTrue(d["relationships"]["user"]["links"]["related"].startswith(
            f"{self.base}/api/v1/users/"))
        return d

    def r3_create(self):
        r = self.send("POST", "/api/v1/responses/",
                      r1_body(self.child_uuid, self.study_uuid, self.preview))
        self.t.assertStatus(r, 201)
        d = r.json["data"]
        self.t.assertEqual(d["type"], "responses")
        self.response_id = d["id"]
        self.t.assertEqual(r.headers.get("location"),
                           f"{self.base}/api/v1/responses/{self.response_id}/")
        # The write serializer: no created_on, no hash_child_id.
        self.t.assertEqual(set(d["attributes"]), RESPONSE_WRITE_ATTRIBUTES)
        self.t.assertEqual(d["attributes"]["is_preview"], self.preview)
        self.t.assertEqual(d["relationships"]["child"]["data"],
                           {"type": "children", "id": self.child_uuid})
        self.t.assertEqual(d["relationships"]["study"]["data"],
                           {"type": "studies", "id": self.study_uuid})
        self.record = dict(d["attributes"])
        return d

    def r4_past_sessions(self):
        """loadAll(): GET the study's related link with the three query
        keys in jQuery's order, paging while count - page*10 > 0."""
        related = self.study["relationships"]["responses"]["links"]["related"]
        path = urlsplit(related).path
        sessions, page = [], 1
        while True:
            q = f"?page%5Bsize%5D=10&page={page}&child={self.child_uuid}"
            r = self.send("GET", path + q)
            self.t.assertStatus(r, 200)
            meta = r.json["links"]["meta"]
            sessions += r.json["data"]
            if meta["count"] - page * 10 <= 0:
                break
            page += 1
        mine = [s for s in sessions if s["id"] == self.response_id]
        self.t.assertEqual(len(mine), 1, "the new response is missing from R4")
        attrs = mine[0]["attributes"]
        self.t.assertEqual(set(attrs), RESPONSE_READ_ATTRIBUTES)
        self.record.update(attrs)     # what pushing into the store does
        return sessions

    def patch(self, **changes):
        """One save(): every attribute of the record, as ember-data sends
        them (id first, then attributes, relationships, type)."""
        self.record.update(changes)
        attrs = {k: self.record.get(k) for k in (
            "conditions", "global_event_timings", "exp_data", "sequence", "completed",
            "completed_consent_frame", "survey_consent", "created_on", "is_preview",
            "hash_child_id", "recording_method")}
        body = {"data": {"id": self.response_id, "attributes": attrs,
                         "relationships": {
                             "child": {"data": {"type": "children", "id": self.child_uuid}},
                             "study": {"data": {"type": "studies", "id": self.study_uuid}}},
                         "type": "responses"}}
        r = self.send("PATCH", f"/api/v1/responses/{self.response_id}/", body)
        self.t.assertStatus(r, 200)
        self.t.assertEqual(r.json["data"]["id"], self.response_id)
        return r.json["data"]

    def save_frame(self, frame_id, payload, **changes):
        seq = list(self.record["sequence"]) + [frame_id]
        exp = dict(self.record["exp_data"])
        exp[frame_id] = payload
        return self.patch(sequence=seq, exp_data=exp, **changes)

    def run(self, withdraw=False):
        """R1..Rn; returns the exit URL the browser would land on."""
        self.r1_study()
        self.r2_child()
        self.r3_create()
        self.r4_past_sessions()
        self.patch(conditions={}, created_on="2026-05-01T14:11:12.123Z")      # R5
        self.save_frame("0-video-config", frame_data("exp-video-config"))
        self.save_frame("1-video-consent", frame_data("exp-lookit-video-consent", "CONSENT",
                                                      videoId="v1", videoList=["v1"]),
                        completed_consent_frame=True)
        self.save_frame("2-study-intro", frame_data("exp-lookit-text"))
        timings = list(self.record["global_event_timings"]) + [{
            "eventType": "exitEarly", "timestamp": "2026-05-01T14:12:00.000Z",
            "exitType": "browserNavigationAttempt", "lastPageSeen": 2}]
        self.patch(global_event_timings=timings)          # beforeunload
        last = self.save_frame("3-exit-survey", frame_data(
            "exp-lookit-exit-survey", "EXIT", withdrawal=withdraw, useOfMedia="private",
            databraryShare="no", birthDate="2025-04-01T00:00:00.000Z", feedback="fun"),
            completed=True)
        self.t.assertTrue(last["attributes"]["completed"])
        self.t.assertEqual(last["attributes"]["withdrawn"], withdraw)
        return exit_url(self.study["attributes"]["exit_url"], self.record["hash_child_id"],
                        self.response_id)


class TestRunnerSession(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.w = World(cls.srv)
        cls.base = f"http://127.0.0.1:{cls.srv.port}"
        cls.lab = cls.w.lab("Baby Lab")
        cls.parent = cls.w.user("parent")
        cls.w.demographics(cls.parent)
        cls.child = cls.w.child(cls.parent, "Sally", age_days=400,
                                languages_spoken=["en", "fr"])
        cls.study = cls.w.study(cls.lab, "Cats")

    def token_send(self, who):
        return lambda method, path, body=None: self.w.api(who, method, path, body)

    def test_token_session_end_to_end(self):
        s = RunnerSession(self, self.token_send(self.parent), self.study["uuid"],
                          self.child["uuid"], self.base)
        url = s.run()
        h = hash_child_id(self.child["uuid"], self.study["uuid"], self.study["salt"])
        self.assertEqual(s.record["hash_child_id"], h)
        self.assertEqual(url, "https://lookit.example/studies/history/"
                              f"?child={h}&response={s.response_id}")
        # What PostgreSQL holds is what the session sent.
        row = self.w.response_row(s.response_id)
        self.assertTrue(row["completed"])
        self.assertTrue(row["completed_consent_frame"])
        self.assertEqual(row["sequence"], ["0-video-config", "1-video-consent",
                                           "2-study-intro", "3-exit-survey"])
        self.assertEqual(row["exp_data"]["3-exit-survey"]["frameType"], "EXIT")
        self.assertEqual(row["global_event_timings"][0]["exitType"], "browserNavigationAttempt")
        self.assertEqual(row["recording_method"], "recordrtc")
        self.assertEqual(row["eligibility"], ["Eligible"])
        self.assertIsNotNone(row["demographic_snapshot_id"])
        # The read serializer, from the detail route.
        r = self.w.api(self.parent, "GET", f"/api/v1/responses/{s.response_id}/")
        self.assertStatus(r, 200)
        d = r.json["data"]
        self.assertEqual(set(d["attributes"]), RESPONSE_READ_ATTRIBUTES)
        self.assertEqual(d["attributes"]["hash_child_id"], h)
        self.assertRegex(d["attributes"]["created_on"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
        rel = d["relationships"]
        self.assertEqual(rel["child"]["links"]["related"],
                         f"{self.base}/api/v1/children/{self.child['uuid']}/")
        self.assertEqual(rel["user"]["links"]["related"],
                         f"{self.base}/api/v1/users/{self.parent['uuid']}/")
        self.assertEqual(rel["study"]["links"]["related"],
                         f"{self.base}/api/v1/studies/{self.study['uuid']}/")
        self.assertTrue(rel["demographic_snapshot"]["links"]["related"].startswith(
            f"{self.base}/api/v1/demographics/"))
        self.assertEqual(d["links"]["self"], f"{self.base}/api/v1/responses/{s.response_id}/")

    def test_second_session_sees_the_first_and_withdrawal(self):
        child = self.w.child(self.parent, "Tom", age_days=500)
        first = RunnerSession(self, self.token_send(self.parent), self.study["uuid"],
                              child["uuid"], self.base)
        first.run(withdraw=True)
        second = RunnerSession(self, self.token_send(self.parent), self.study["uuid"],
                               child["uuid"], self.base)
        second.r1_study()
        second.r3_create()
        sessions = second.r4_past_sessions()
        self.assertEqual([x["id"] for x in sessions], [second.response_id, first.response_id])
        old = [x for x in sessions if x["id"] == first.response_id][0]["attributes"]
        self.assertTrue(old["withdrawn"])
        self.assertTrue(old["completed"])
        # past-sessions (jsPsych): the same two, typed past_sessions.
        r = self.w.api(self.parent, "GET", f"/api/v1/past-sessions/{second.response_id}/")
        self.assertStatus(r, 200)
        self.assertEqual({x["type"] for x in r.json["data"]}, {"past_sessions"})
        self.assertEqual({x["id"] for x in r.json["data"]},
                         {first.response_id, second.response_id})
        self.assertNotIn("links", r.json)   # not paginated

    def test_session_cookie_with_csrf(self):
        """The production runner: same-origin cookies, X-CSRFTOKEN echoed."""
        out = self.srv.ctl("seed-demo")
        if out.returncode != 0 or "ERR" in out.stdout.splitlines()[-1:]:
            self.fail(f"seed-demo failed: {out.stdout} {out.stderr}")
        c = self.srv.client()
        r = c.post("/api/v1/auth/login/", json_body={
            "email": "participant@demo.studyhub.test", "password": "studyhub-participant"})
        self.assertStatus(r, 200)
        self.assertIn("sessionid", c.cookies)
        self.assertIn("csrftoken", c.cookies)
        csrf = c.cookies["csrftoken"]

        def send(method, path, body=None):
            hdrs = {"Accept": JSONAPI, "X-CSRFTOKEN": csrf,
                    "X-Requested-With": "XMLHttpRequest"}
            if body is not None:
                hdrs["Content-Type"] = JSONAPI
            return c.request(method, path, body=json.dumps(body) if body is not None else None,
                             headers=hdrs)

        study = "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e"
        child = "c41d0000-5eed-4a11-9e10-5757d1e5ba5e"
        s = RunnerSession(self, send, study, child, self.base)
        url = s.run()
        salt = self.w.sql(f"SELECT salt FROM studies WHERE uuid = '{study}'")
        digits = int(self.w.sql(f"SELECT hash_digits FROM studies WHERE uuid = '{study}'"))
        h = hash_child_id(child, study, salt, digits)
        self.assertEqual(s.record["hash_child_id"], h)
        self.assertIn(f"child={h}&response={s.response_id}", url)
        # A write without the CSRF token is refused and changes nothing.
        r = c.request("PATCH", f"/api/v1/responses/{s.response_id}/",
                      body=json.dumps({"data": {"id": s.response_id, "type": "responses",
                                                "attributes": {"completed": False}}}),
                      headers={"Content-Type": JSONAPI})
        self.assertStatus(r, 403)
        self.assertTrue(self.w.response_row(s.response_id)["completed"])

    def test_preview_of_a_study_that_is_not_active(self):
        """A researcher holding read_study__details previews a study in any
        state with their own child; a participant cannot see it."""
        researcher = self.w.user("designer", researcher=True)
        kid = self.w.child(researcher, "Own", age_days=300)
        study = self.w.study(self.lab, "Draft", state="created", public=False)
        self.w.study_member(study, researcher, "design")
        s = RunnerSession(self, self.token_send(researcher), study["uuid"], kid["uuid"],
                          self.base, preview=True)
        s.run()
        self.assertTrue(self.w.response_row(s.response_id)["is_preview"])
        self.assertEqual(s.study["attributes"]["state"], "created")
        r = self.w.api(self.parent, "GET", f"/api/v1/studies/{study['uuid']}/")
        self.assertStatus(r, 404)
        r = self.w.api(self.parent, "POST", "/api/v1/responses/",
                       r1_body(self.child["uuid"], study["uuid"]))
        self.assertStatus(r, 404)

    def test_exit_url_default_and_hash_digits(self):
        """An empty exit_url falls back to BASE_URL/studies/history/ (the
        runner would turn "" into "/"); hash_digits sets the hash length."""
        study = self.w.study(self.lab, "Ten digits", exit_url="", hash_digits=10)
        s = RunnerSession(self, self.token_send(self.parent), study["uuid"],
                          self.child["uuid"], self.base)
        url = s.run()
        h = hash_child_id(self.child["uuid"], study["uuid"], study["salt"], 10)
        self.assertEqual(len(h), 10)
        self.assertEqual(url, f"{self.base}/studies/history/?child={h}&response={s.response_id}")

    def test_eligibility_at_creation(self):
        other = self.w.study(self.lab, "Earlier study")
        cases = [
            # (study columns, child age in days, expected eligibility)
            ({}, 400, ["Eligible"]),
            ({"min_age_months": 6}, 100, ["Ineligible_TooYoung"]),
            ({"max_age_years": 1, "max_age_months": 0}, 400, ["Ineligible_TooOld"]),
            ({"criteria_expression": "speaks_de OR gender = m"}, 400,
             ["Ineligible_CriteriaExpression"]),
            ({"criteria_expression": "speaks_fr AND age_in_days >= 300"}, 400, ["Eligible"]),
            ({"criteria_expression": "((("}, 400, ["Eligible"]),   # unparsable: met
        ]
        for cols, age, want in cases:
            with self.subTest(cols=cols, age=age):
                study = self.w.study(self.lab, "Elig", **cols)
                kid = self.w.child(self.parent, "K", age_days=age, languages_spoken=["fr"])
                rid = self.w.create_response(self.parent, kid, study)
                self.assertEqual(self.w.response_row(rid)["eligibility"], want)
        # must_have_participated: not yet -> Ineligible_Participation.
        study = self.w.study(self.lab, "Follow-up")
        self.w.sql(f"INSERT INTO study_must_have_participated VALUES ({study['id']}, {other['id']})")
        kid = self.w.child(self.parent, "P", age_days=400)
        rid = self.w.create_response(self.parent, kid, study)
        self.assertEqual(self.w.response_row(rid)["eligibility"], ["Ineligible_Participation"])
        # An empty EFP response to the earlier study does not count ...
        first = self.w.create_response(self.parent, kid, other)
        rid = self.w.create_response(self.parent, kid, study)
        self.assertEqual(self.w.response_row(rid)["eligibility"], ["Ineligible_Participation"])
        # ... one that got past a frame does.
        r = self.w.api(self.parent, "PATCH", f"/api/v1/responses/{first}/", {"data": {
            "id": first, "type": "responses", "attributes": {"sequence": ["0-video-config"],
                                                             "exp_data": {"0-video-config": {}}}}})
        self.assertStatus(r, 200)
        rid = self.w.create_response(self.parent, kid, study)
        self.assertEqual(self.w.response_row(rid)["eligibility"], ["Eligible"])
        # must_not_have_participated, now that it has.
        study2 = self.w.study(self.lab, "Naive only")
        self.w.sql(f"INSERT INTO study_must_not_have_participated VALUES"
                   f" ({study2['id']}, {other['id']})")
        rid = self.w.create_response(self.parent, kid, study2)
        self.assertEqual(self.w.response_row(rid)["eligibility"], ["Ineligible_Participation"])
        # The server ignores an eligibility sent on create.
        body = r1_body(kid["uuid"], study2["uuid"])
        body["data"]["attributes"]["eligibility"] = ["Eligible"]
        r = self.w.api(self.parent, "POST", "/api/v1/responses/", body)
        self.assertStatus(r, 201)
        self.assertEqual(r.json["data"]["attributes"]["eligibility"], ["Ineligible_Participation"])

    def test_no_demographics_is_not_an_error(self):
        """Upstream answers 500 here; the snapshot is simply empty."""
        parent = self.w.user("newparent")
        kid = self.w.child(parent, "Nodemo", age_days=400)
        rid = self.w.create_response(parent, kid, self.study)
        self.assertIsNone(self.w.response_row(rid)["demographic_snapshot_id"])
        r = self.w.api(parent, "GET", f"/api/v1/responses/{rid}/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["relationships"]["demographic_snapshot"],
                         {"links": {"related": None}})

    def test_nested_list_pagination(self):
        parent = self.w.user("busy")
        kid = self.w.child(parent, "Busy", age_days=400)
        ids = [self.w.create_response(parent, kid, self.study) for _ in range(12)]
        path = f"/api/v1/studies/{self.study['uuid']}/responses/"
        base = f"{self.base}{path}"
        r = self.w.api(parent, "GET", f"{path}?page%5Bsize%5D=10&page=1&child={kid['uuid']}")
        self.assertStatus(r, 200)
        links = r.json["links"]
        self.assertEqual(links["meta"], {"page": 1, "pages": 2, "count": 12})
        self.assertEqual(len(r.json["data"]), 10)      # page[size] is ignored
        self.assertEqual(links["first"],
                         f"{base}?child={kid['uuid']}&page=1&page%5Bsize%5D=10")
        self.assertEqual(links["last"], f"{base}?child={kid['uuid']}&page=2&page%5Bsize%5D=10")
        self.assertEqual(links["next"], links["last"])
        self.assertIsNone(links["prev"])
        # Newest first; the two pages hold every response once.
        r2 = self.w.api(parent, "GET", f"{path}?page%5Bsize%5D=10&page=2&child={kid['uuid']}")
        self.assertStatus(r2, 200)
        self.assertEqual(len(r2.json["data"]), 2)
        self.assertIsNone(r2.json["links"]["next"])
        self.assertEqual(r2.json["links"]["prev"], links["first"])
        got = [x["id"] for x in r.json["data"] + r2.json["data"]]
        self.assertEqual(got, list(reversed(ids)))
        # Beyond the last page, and malformed pages: 404 Invalid page.
        for page in ("3", "0", "-1", "abc", "99999999999"):
            with self.subTest(page=page):
                r = self.w.api(parent, "GET", f"{path}?page={quote(page)}&child={kid['uuid']}")
                self.assertStatus(r, 404)
                self.assertEqual(r.json["errors"][0]["detail"], "Invalid page.")
        # page_size is honoured, capped at 100.
        r = self.w.api(parent, "GET", f"{path}?page_size=5&page=3&child={kid['uuid']}")
        self.assertStatus(r, 200)
        self.assertEqual(len(r.json["data"]), 2)
        self.assertEqual(r.json["links"]["meta"], {"page": 3, "pages": 3, "count": 12})
        r = self.w.api(parent, "GET", f"{path}?page_size=1000&child={kid['uuid']}")
        self.assertEqual(len(r.json["data"]), 12)
        # An empty list still has one page.
        other = self.w.child(parent, "Nobody", age_days=400)
        r = self.w.api(parent, "GET", f"{path}?child={other['uuid']}")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["links"]["meta"], {"page": 1, "pages": 1, "count": 0})
        self.assertEqual(r.json["data"], [])
        # Someone else's child: nothing (the filter is the requester's children).
        r = self.w.api(self.parent, "GET", f"{path}?child={kid['uuid']}")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["links"]["meta"]["count"], 0)

    def test_overlapping_patches_of_one_session(self):
        """The runner does not wait for one PATCH before the next: 20 at
        once all succeed and the row ends as one of them."""
        kid = self.w.child(self.parent, "Quick", age_days=400)
        rid = self.w.create_response(self.parent, kid, self.study)
        results = [None] * 20
        blob = "x" * 1000

        def one(i):
            body = {"data": {"id": rid, "type": "responses", "attributes": {
                "exp_data": {f"{j}-frame": {"n": i, "pad": blob} for j in range(i + 1)},
                "sequence": [f"{j}-frame" for j in range(i + 1)]}}}
            results[i] = self.w.api(self.parent, "PATCH", f"/api/v1/responses/{rid}/", body,
                                    timeout=30)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [200] * 20,
                         [r.body[:200] for r in results if r.status != 200])
        row = self.w.response_row(rid)
        n = len(row["sequence"])
        self.assertTrue(1 <= n <= 20)
        # Columns of one PATCH, never a mix of two.
        self.assertEqual(sorted(row["exp_data"]), sorted(f"{j}-frame" for j in range(n)))
        self.assertEqual({v["n"] for v in row["exp_data"].values()}, {n - 1})


if __name__ == "__main__":
    unittest.main()
