"""test_api_errors: bad input to the runner API gets the right JSON:API
error and changes nothing (issue 4 item 5), and who may see or change what
(participants, researchers of the study's lab and of another lab, consented
and unconsented responses, preview responses, feedback).  Studies,
responses, children, feedback and past-sessions."""

import json
import unittest

from apifixtures import World, r1_body
from harness import JSONAPI, StudyhubTestCase

MAX_BODY = 65536


class ApiCase(StudyhubTestCase):
    """One server and one cast for the class:
    parent (child kid, demographics), other_parent (child other_kid),
    member (lab member: reads consented responses), readonly (lab readonly:
    study details only), admin (lab admin: also feedback), stranger (member
    of another lab); study (active, public), draft (created), hidden
    (active, not public), foreign (the other lab's)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"MAX_BODY_BYTES": MAX_BODY})
        w = cls.w = World(cls.srv)
        cls.lab = w.lab("Lab")
        cls.lab2 = w.lab("Other lab")
        cls.parent = w.user("parent")
        w.demographics(cls.parent)
        cls.other_parent = w.user("other")
        cls.member = w.user("member", researcher=True)
        cls.readonly = w.user("readonly", researcher=True)
        cls.admin = w.user("admin", researcher=True)
        cls.stranger = w.user("stranger", researcher=True)
        w.member(cls.lab, cls.member, "member")
        w.member(cls.lab, cls.readonly, "readonly")
        w.member(cls.lab, cls.admin, "admin")
        w.member(cls.lab2, cls.stranger, "member")
        cls.kid = w.child(cls.parent, "Kid", age_days=400)
        cls.kid2 = w.child(cls.parent, "Kid two", age_days=500)
        cls.gone = w.child(cls.parent, "Gone", age_days=400, deleted=True)
        cls.other_kid = w.child(cls.other_parent, "Other", age_days=400)
        cls.study = w.study(cls.lab, "Public")
        cls.draft = w.study(cls.lab, "Draft", state="created", public=False)
        cls.hidden = w.study(cls.lab, "Hidden", public=False)
        cls.foreign = w.study(cls.lab2, "Foreign")

    def api(self, who, method, path, body=None, **kw):
        return self.w.api(who, method, path, body, **kw)

    def assertError(self, r, status, code=None, pointer=None):
        self.assertStatus(r, status)
        self.assertEqual(r.headers.get("content-type"), JSONAPI)
        err = r.json["errors"][0]
        self.assertEqual(err["status"], str(status))
        if code:
            self.assertEqual(err["code"], code, err)
        if pointer is not None:
            self.assertEqual(err.get("source", {}).get("pointer"), pointer, err)
        return err

    def new_response(self, who=None, child=None, study=None, preview=False):
        return self.w.create_response(who or self.parent, child or self.kid,
                                      study or self.study, preview)


class TestCreateErrors(ApiCase):

    def post(self, body=None, raw=None, who=None, **kw):
        before = self.w.count_responses()
        r = self.w.api(who or self.parent, "POST", "/api/v1/responses/", body, raw=raw, **kw)
        if r.status >= 400:
            self.assertEqual(self.w.count_responses(), before, "an error wrote a row")
        return r

    def test_unauthenticated(self):
        r = self.w.api(None, "POST", "/api/v1/responses/", r1_body(self.kid["uuid"],
                                                                    self.study["uuid"]))
        self.assertError(r, 401)
        self.assertEqual(r.headers.get("www-authenticate"), "Token")
        for path in ("/api/v1/studies/", f"/api/v1/studies/{self.study['uuid']}/",
                     "/api/v1/responses/", "/api/v1/children/", "/api/v1/feedback/"):
            with self.subTest(path=path):
                self.assertError(self.w.api(None, "GET", path), 401)

    def test_document_errors(self):
        self.assertError(self.post(raw="{not json"), 400, "parse_error", "/data")
        self.assertError(self.post(raw="[]"), 400, "parse_error", "/data")
        err = self.assertError(self.post({"meta": {}}), 400, "parse_error", "/data")
        self.assertEqual(err["detail"], "Received document does not contain primary data")
        self.assertError(self.post({"data": {"type": "children", "attributes": {}}}), 409)
        self.assertError(self.post({"data": {"attributes": {}}}), 409)
        r = self.w.api(self.parent, "POST", "/api/v1/responses/", raw="{}",
                       headers={"Content-Type": "text/plain"})
        self.assertError(r, 415)

    def test_json_edges(self):
        """The write body is checked by a scanner, not a JSON library: it
        must refuse what PostgreSQL's jsonb would, and keep the rest
        exactly."""
        good = json.dumps(r1_body(self.kid["uuid"], self.study["uuid"]))
        head, tail = good.split('"exp_data": {}', 1)
        for value in ('"\\u0000"', '"\\ud800"', '"\\udc00x"', '01', '1.', '[1,]', 'NaN',
                      '"\x01"', '{"a" 1}', '"unterminated'):
            with self.subTest(value=value):
                raw = head + '"exp_data": {"v": ' + value + '}' + tail
                self.assertError(self.post(raw=raw), 400, "parse_error", "/data")
        # Invalid UTF-8 bytes.
        raw = (head + '"exp_data": {"v": "') .encode() + b"\xff\xfe" + ('"}' + tail).encode()
        self.assertError(self.post(raw=raw), 400, "parse_error", "/data")
        # Trailing data, and repeated member names where the API looks.
        self.assertError(self.post(raw=good + " {}"), 400, "parse_error")
        self.assertError(self.post(raw='{"data": {}, "data": {}}'), 400, "parse_error")
        dup = good.replace('"completed": false', '"completed": false, "completed": true')
        self.assertError(self.post(raw=dup), 400, "parse_error", "/data/attributes")
        # A number PostgreSQL cannot hold: refused by the statement, 400.
        raw = head + '"exp_data": {"n": 1e999999}' + tail
        self.assertError(self.post(raw=raw), 400, "invalid")
        # Escapes in names and values; non-ASCII text survives the trip.
        raw = head.replace('"sequence"', '"seq\\u0075ence"') + \
            '"exp_data": {"0-f": {"t": "caf\\u00e9 \\ud83d\\ude00 \u00e9", "n": 1.50}}' + tail
        r = self.post(raw=raw)
        self.assertStatus(r, 201)
        row = self.w.response_row(r.json["data"]["id"])
        self.assertEqual(row["exp_data"], {"0-f": {"t": "caf\u00e9 \U0001F600 \u00e9", "n": 1.5}})
        self.assertEqual(r.json["data"]["attributes"]["exp_data"], row["exp_data"])
        # Deeply nested (but reasonable) data is fine.
        deep = "[" * 100 + "]" * 100
        r = self.post(raw=head + '"exp_data": {"d": ' + deep + '}' + tail)
        self.assertStatus(r, 201)

    def test_relationships(self):
        kid, study = self.kid["uuid"], self.study["uuid"]
        body = r1_body(kid, study)
        del body["data"]["relationships"]["child"]
        self.assertError(self.post(body), 400, "required", "/data/relationships/child")
        body = r1_body(kid, study)
        del body["data"]["relationships"]["study"]
        self.assertError(self.post(body), 400, "required", "/data/relationships/study")
        # Both missing: two errors, sorted by pointer.
        body = r1_body(kid, study)
        del body["data"]["relationships"]
        r = self.post(body)
        self.assertStatus(r, 400)
        self.assertEqual([e["source"]["pointer"] for e in r.json["errors"]],
                         ["/data/relationships/child", "/data/relationships/study"])
        # Wrong relationship type: 409.
        body = r1_body(kid, study)
        body["data"]["relationships"]["child"]["data"]["type"] = "users"
        self.assertError(self.post(body), 409)
        body = r1_body(kid, study)
        body["data"]["relationships"]["study"]["data"]["type"] = "study"
        self.assertError(self.post(body), 409)
        # Malformed identifiers.
        body = r1_body("not-a-uuid", study)
        self.assertError(self.post(body), 400, "invalid", "/data/relationships/child")
        body = r1_body(kid, study)
        body["data"]["relationships"]["study"] = {"data": None}
        self.assertError(self.post(body), 400, None, "/data/relationships/study")
        # Someone else's child: 403 (as upstream); unknown or deleted: 404.
        self.assertError(self.post(r1_body(self.other_kid["uuid"], study)), 403,
                         "permission_denied")
        self.assertError(self.post(r1_body("00000000-0000-4000-8000-000000000000", study)),
                         404, "not_found", "/data/relationships/child")
        self.assertError(self.post(r1_body(self.gone["uuid"], study)), 404, "not_found",
                         "/data/relationships/child")
        # Unknown study, or one the participant may not see: 404 at the
        # relationship (no leak of a draft's existence).
        self.assertError(self.post(r1_body(kid, "00000000-0000-4000-8000-000000000000")), 404,
                         "not_found", "/data/relationships/study")
        self.assertError(self.post(r1_body(kid, self.draft["uuid"])), 404, "not_found",
                         "/data/relationships/study")
        # An active study that is not public can be taken part in by link.
        self.assertStatus(self.post(r1_body(kid, self.hidden["uuid"])), 201)

    def test_wrong_member_types(self):
        cases = [
            ("completed", "yes"), ("completed", 1), ("completed_consent_frame", "true"),
            ("survey_consent", None), ("is_preview", "false"),
            ("exp_data", 5), ("exp_data", "{}"), ("exp_data", None),
            ("sequence", "x"), ("sequence", [1, 2]), ("sequence", ["a" * 129]),
            ("sequence", {"a": 1}),
            ("conditions", "x"), ("conditions", 3), ("global_event_timings", {}),
            ("global_event_timings", "[]"), ("recording_method", 5),
            ("recording_method", "r" * 51),
        ]
        for name, value in cases:
            with self.subTest(name=name, value=value):
                body = r1_body(self.kid["uuid"], self.study["uuid"])
                body["data"]["attributes"][name] = value
                self.assertError(self.post(body), 400, None, f"/data/attributes/{name}")
        # Several at once: every one reported, sorted by pointer.
        body = r1_body(self.kid["uuid"], self.study["uuid"])
        body["data"]["attributes"].update(completed="yes", exp_data=5, sequence="x")
        r = self.post(body)
        self.assertStatus(r, 400)
        self.assertEqual([e["source"]["pointer"] for e in r.json["errors"]],
                         ["/data/attributes/completed", "/data/attributes/exp_data",
                          "/data/attributes/sequence"])

    def test_unknown_attributes_are_ignored_and_keys_underscored(self):
        body = r1_body(self.kid["uuid"], self.study["uuid"])
        a = body["data"]["attributes"]
        a.update(created_on="2020-01-01T00:00:00Z", hash_child_id="XXXXXX", pk=999999,
                 withdrawn=True, no_such_attribute={"id": "x"}, demographic_snapshot=None)
        del a["exp_data"]
        a["expData"] = {"0-a": {"frameType": "DEFAULT"}}      # top-level camelCase
        r = self.post(body)
        self.assertStatus(r, 201)
        row = self.w.response_row(r.json["data"]["id"])
        self.assertEqual(row["exp_data"], {"0-a": {"frameType": "DEFAULT"}})
        self.assertNotEqual(r.json["data"]["attributes"]["pk"], 999999)
        self.assertFalse(r.json["data"]["attributes"]["withdrawn"])

    def test_body_over_the_limit(self):
        body = r1_body(self.kid["uuid"], self.study["uuid"])
        body["data"]["attributes"]["exp_data"] = {"big": "x" * (MAX_BODY + 10)}
        before = self.w.count_responses()
        try:
            r = self.w.api(self.parent, "POST", "/api/v1/responses/", body)
            self.assertStatus(r, 413)
        except OSError:
            pass    # evhttp may close before reading it all: no answer to read
        self.assertEqual(self.w.count_responses(), before)
        self.assertStatus(self.w.api(self.parent, "GET", "/api/v1/studies/"), 200)


class TestUpdateErrors(ApiCase):

    def patch(self, rid, body, who=None, method="PATCH"):
        before = self.w.response_row(rid)
        r = self.w.api(who or self.parent, method, f"/api/v1/responses/{rid}/", body)
        if r.status >= 400:
            self.assertEqual(self.w.response_row(rid), before, "an error changed the row")
        return r

    def body(self, rid, **attrs):
        return {"data": {"id": rid, "type": "responses", "attributes": attrs}}

    def test_document_errors(self):
        rid = self.new_response()
        r = self.patch(rid, {"data": {"type": "responses", "attributes": {"completed": True}}})
        self.assertError(r, 400, None, "/data")
        other = "00000000-0000-4000-8000-000000000000"
        self.assertError(self.patch(rid, self.body(other, completed=True)), 409)
        b = self.body(rid, completed=True)
        b["data"]["type"] = "studies"
        self.assertError(self.patch(rid, b), 409)
        self.assertError(self.patch(rid, {"nodata": 1}), 400, "parse_error", "/data")
        b = self.body(rid, completed=True)
        b["data"]["relationships"] = {"child": {"data": {"type": "studies",
                                                         "id": self.kid["uuid"]}}}
        self.assertError(self.patch(rid, b), 409)

    def test_paths(self):
        for path in ("not-a-uuid", "00000000-0000-4000-8000-000000000000",
                     "ABCDEF00-0000-4000-8000-000000000000"):
            with self.subTest(path=path):
                r = self.w.api(self.parent, "PATCH", f"/api/v1/responses/{path}/",
                               self.body(path, completed=True))
                self.assertError(r, 404, "not_found")
                self.assertNotIn("source", r.json["errors"][0])
                self.assertError(self.w.api(self.parent, "GET", f"/api/v1/responses/{path}/"),
                                 404)
        self.assertError(self.w.api(self.parent, "DELETE",
                                    f"/api/v1/responses/{self.new_response()}/"), 405)

    def test_wrong_member_types_change_nothing(self):
        rid = self.new_response()
        for name, value in (("completed", "yes"), ("exp_data", 5), ("sequence", "x"),
                            ("eligibility", ["Maybe"]), ("eligibility", "Eligible"),
                            ("conditions", None)):
            with self.subTest(name=name, value=value):
                b = self.body(rid, **{name: value})
                # A valid change beside the bad one must not be applied either.
                b["data"]["attributes"]["survey_consent"] = True
                self.assertError(self.patch(rid, b), 400, None, f"/data/attributes/{name}")

    def test_who_may_patch(self):
        rid = self.new_response()
        self.w.consent(rid)
        # Another participant: 404, exactly as for a response that does not exist.
        r = self.patch(rid, self.body(rid, completed=True), who=self.other_parent)
        self.assertEqual(self.assertError(r, 404)["detail"], "No Response matches the given query.")
        # A researcher who may read it: 403; one who may not: 404.
        self.assertError(self.patch(rid, self.body(rid, completed=True), who=self.member), 403)
        self.assertError(self.patch(rid, self.body(rid, completed=True), who=self.stranger), 404)
        self.assertError(self.patch(rid, self.body(rid, completed=True), who=self.readonly), 404)
        # Moving a response: to someone else's child 403, to another own child
        # 400, to an unknown study 404; the same ids are fine.
        b = self.body(rid, completed=True)
        b["data"]["relationships"] = {"child": {"data": {"type": "children",
                                                         "id": self.other_kid["uuid"]}}}
        self.assertError(self.patch(rid, b), 403)
        b["data"]["relationships"]["child"]["data"]["id"] = self.kid2["uuid"]
        self.assertError(self.patch(rid, b), 400, "invalid", "/data/relationships/child")
        b["data"]["relationships"] = {"study": {"data": {
            "type": "studies", "id": "00000000-0000-4000-8000-000000000000"}}}
        self.assertError(self.patch(rid, b), 404, None, "/data/relationships/study")
        b["data"]["relationships"] = {
            "child": {"data": {"type": "children", "id": self.kid["uuid"]}},
            "study": {"data": {"type": "studies", "id": self.study["uuid"]}}}
        r = self.patch(rid, b)
        self.assertStatus(r, 200)
        self.assertTrue(self.w.response_row(rid)["completed"])

    def test_put_and_patch_shapes(self):
        rid = self.new_response()
        r = self.patch(rid, self.body(rid, survey_consent=True, eligibility=["Eligible"],
                                      unknown="ignored"))
        self.assertStatus(r, 200)
        self.assertNotIn("hash_child_id", r.json["data"]["attributes"])
        self.assertIn("data", r.json["data"]["relationships"]["child"])
        r = self.patch(rid, self.body(rid, completed=True), method="PUT")
        self.assertStatus(r, 200)
        self.assertIn("hash_child_id", r.json["data"]["attributes"])
        self.assertIn("user", r.json["data"]["relationships"])
        row = self.w.response_row(rid)
        self.assertTrue(row["completed"] and row["survey_consent"])

    def test_empty_patch_keeps_everything(self):
        rid = self.new_response()
        self.assertStatus(self.patch(rid, self.body(rid, exp_data={"a": 1})), 200)
        self.assertStatus(self.patch(rid, self.body(rid)), 200)
        self.assertEqual(self.w.response_row(rid)["exp_data"], {"a": 1})


class TestVisibility(ApiCase):

    def ids(self, r):
        self.assertStatus(r, 200)
        return {x["id"] for x in r.json["data"]}

    def test_responses(self):
        consented = self.new_response()
        self.w.consent(consented, "accepted")
        rejected = self.new_response()
        self.w.consent(rejected, "accepted")
        self.w.consent(rejected, "rejected")          # the newest ruling wins
        pending = self.new_response()
        foreign = self.new_response(study=self.foreign)
        self.w.consent(foreign)
        theirs = self.new_response(self.other_parent, self.other_kid)
        self.w.consent(theirs)
        # A lab member's own child in a preview of the lab's draft.
        mkid = self.w.child(self.member, "Member kid", age_days=400)
        preview = self.new_response(self.member, mkid, self.study, preview=True)

        mine = self.ids(self.api(self.parent, "GET", "/api/v1/responses/?page_size=100"))
        self.assertTrue({consented, rejected, pending, foreign} <= mine)
        self.assertFalse({theirs, preview} & mine)

        seen = self.ids(self.api(self.member, "GET", "/api/v1/responses/?page_size=100"))
        self.assertTrue({consented, theirs, preview} <= seen)
        self.assertFalse({rejected, pending, foreign} & seen)
        for rid, status in ((consented, 200), (pending, 404), (rejected, 404), (foreign, 404)):
            with self.subTest(rid=rid):
                self.assertStatus(self.api(self.member, "GET", f"/api/v1/responses/{rid}/"),
                                  status)

        # Another lab's member, and a readonly member: none of the lab's.
        self.assertFalse({consented, theirs, preview} &
                         self.ids(self.api(self.stranger, "GET", "/api/v1/responses/")))
        self.assertIn(foreign, self.ids(self.api(self.stranger, "GET", "/api/v1/responses/")))
        self.assertEqual(self.ids(self.api(self.readonly, "GET", "/api/v1/responses/")), set())
        self.assertStatus(self.api(self.other_parent, "GET", f"/api/v1/responses/{consented}/"),
                          404)

        # Filters.
        r = self.api(self.member, "GET",
                     f"/api/v1/responses/?study={self.study['uuid']}&page_size=100")
        self.assertNotIn(foreign, self.ids(r))
        r = self.api(self.parent, "GET",
                     f"/api/v1/responses/?child={self.kid['uuid']}&study={self.foreign['uuid']}")
        self.assertEqual(self.ids(r), {foreign})
        self.assertError(self.api(self.parent, "GET", "/api/v1/responses/?child=nope"), 400,
                         "invalid")

        # The nested list without ?child=: what the requester may read.
        r = self.api(self.member, "GET",
                     f"/api/v1/studies/{self.study['uuid']}/responses/?page_size=100")
        self.assertTrue({consented, theirs, preview} <= self.ids(r))
        self.assertFalse({rejected, pending} & self.ids(r))
        self.assertError(self.api(self.member, "GET", "/api/v1/studies/nope/responses/"), 404)

        # past-sessions: own child's only; an unknown id is 404, not 500.
        for who, rid, status in ((self.parent, pending, 200), (self.member, consented, 404),
                                 (self.other_parent, pending, 404),
                                 (self.parent, "00000000-0000-4000-8000-000000000000", 404),
                                 (self.parent, "nope", 404)):
            with self.subTest(past=rid):
                self.assertStatus(self.api(who, "GET", f"/api/v1/past-sessions/{rid}/"), status)

    def test_children(self):
        theirs = self.w.child(self.other_parent, "Fresh", age_days=400)
        rid = self.new_response(self.other_parent, theirs)
        path = f"/api/v1/children/{theirs['uuid']}/"
        self.assertError(self.api(self.parent, "GET", path), 404)
        self.assertError(self.api(self.member, "GET", path), 404)    # not consented yet
        self.w.consent(rid)
        self.assertStatus(self.api(self.member, "GET", path), 200)
        self.assertError(self.api(self.stranger, "GET", path), 404)
        self.assertIn(theirs["uuid"],
                      self.ids(self.api(self.member, "GET", "/api/v1/children/?page_size=100")))
        mine = self.ids(self.api(self.parent, "GET", "/api/v1/children/"))
        self.assertEqual(mine, {self.kid["uuid"], self.kid2["uuid"]})   # not the deleted one
        self.assertError(self.api(self.parent, "GET", f"/api/v1/children/{self.gone['uuid']}/"),
                         404)
        self.assertError(self.api(self.parent, "GET", "/api/v1/children/nope/"), 404)
        r = self.api(self.parent, "GET", "/api/v1/children/?ordering=-birthday")
        self.assertEqual([x["id"] for x in r.json["data"]],
                         [self.kid["uuid"], self.kid2["uuid"]])       # youngest first
        r = self.api(self.parent, "GET", "/api/v1/children/?ordering=birthday")
        self.assertEqual([x["id"] for x in r.json["data"]],
                         [self.kid2["uuid"], self.kid["uuid"]])

    def test_studies(self):
        listed = self.ids(self.api(self.parent, "GET", "/api/v1/studies/?page_size=100"))
        self.assertTrue({self.study["uuid"], self.foreign["uuid"]} <= listed)
        self.assertFalse({self.draft["uuid"], self.hidden["uuid"]} & listed)
        # Detail: active (public or not); a draft only with read_study__details.
        self.assertStatus(self.api(self.parent, "GET", f"/api/v1/studies/{self.hidden['uuid']}/"),
                          200)
        self.assertError(self.api(self.parent, "GET", f"/api/v1/studies/{self.draft['uuid']}/"),
                         404)
        self.assertStatus(self.api(self.readonly, "GET",
                                   f"/api/v1/studies/{self.draft['uuid']}/"), 200)
        self.assertError(self.api(self.stranger, "GET",
                                  f"/api/v1/studies/{self.draft['uuid']}/"), 404)
        self.assertIn(self.draft["uuid"],
                      self.ids(self.api(self.readonly, "GET", "/api/v1/studies/?page_size=100")))
        for bad in ("nope", "00000000-0000-4000-8000-000000000000",
                    self.study["uuid"].upper()):
            with self.subTest(bad=bad):
                r = self.api(self.parent, "GET", f"/api/v1/studies/{bad}/")
                err = self.assertError(r, 404, "not_found")
                self.assertNotIn("source", err)
        a = self.api(self.parent, "GET", f"/api/v1/studies/{self.study['uuid']}/")
        for secret in ("salt", "hash_digits", "metadata", "uuid"):
            self.assertNotIn(secret, a.json["data"]["attributes"])
        self.assertNotIn(self.study["salt"], a.text)
        self.assertError(self.api(self.parent, "POST", "/api/v1/studies/", {}), 405)
        # Pagination edges of the study list.
        r = self.api(self.parent, "GET", "/api/v1/studies/?page_size=1")
        meta = r.json["links"]["meta"]
        self.assertEqual(len(r.json["data"]), 1)
        self.assertGreaterEqual(meta["count"], 2)
        self.assertEqual(meta["pages"], meta["count"])
        self.assertTrue(r.json["links"]["next"].startswith(
            f"http://127.0.0.1:{self.srv.port}/api/v1/studies/?page=2"))
        self.assertError(self.api(self.parent, "GET",
                                  f"/api/v1/studies/?page_size=1&page={meta['pages'] + 1}"), 404)
        self.assertError(self.api(self.parent, "GET", "/api/v1/studies/?page_size=0"), 400)

    def test_feedback(self):
        rid = self.new_response()
        self.w.consent(rid)
        pending = self.new_response()

        def fb(rid_, comment="Thanks!"):
            return {"data": {"type": "feedback", "attributes": {"comment": comment},
                             "relationships": {"response": {"data": {"type": "responses",
                                                                     "id": rid_}}}}}

        count = lambda: int(self.w.sql("SELECT count(*) FROM feedback"))
        before = count()
        # Needs edit_study__feedback: a lab member may read but not comment,
        # a parent neither; someone who cannot see the response gets 404.
        self.assertError(self.api(self.member, "POST", "/api/v1/feedback/", fb(rid)), 403)
        self.assertError(self.api(self.parent, "POST", "/api/v1/feedback/", fb(rid)), 403)
        self.assertError(self.api(self.stranger, "POST", "/api/v1/feedback/", fb(rid)), 404)
        self.assertError(self.api(self.admin, "POST", "/api/v1/feedback/",
                                  fb("00000000-0000-4000-8000-000000000000")), 404, None,
                         "/data/relationships/response")
        self.assertError(self.api(self.admin, "POST", "/api/v1/feedback/", fb(rid, "  ")), 400,
                         "blank", "/data/attributes/comment")
        b = fb(rid)
        del b["data"]["attributes"]["comment"]
        self.assertError(self.api(self.admin, "POST", "/api/v1/feedback/", b), 400, "required")
        b = fb(rid)
        b["data"]["relationships"]["response"]["data"]["type"] = "studies"
        self.assertError(self.api(self.admin, "POST", "/api/v1/feedback/", b), 409)
        self.assertEqual(count(), before)

        r = self.api(self.admin, "POST", "/api/v1/feedback/", fb(rid, " Great job! "))
        self.assertStatus(r, 201)
        d = r.json["data"]
        fid = d["id"]
        self.assertEqual(d["type"], "feedback")
        self.assertEqual(d["attributes"]["comment"], "Great job!")
        self.assertEqual(d["relationships"]["researcher"]["data"],
                         {"type": "users", "id": self.admin["uuid"]})
        self.assertEqual(d["relationships"]["response"]["data"], {"type": "responses", "id": rid})
        self.assertEqual(r.headers.get("location"), d["links"]["self"])
        # Feedback is for consented responses only (issue 15): on an
        # unconsented one even the permission holder gets 404, and nothing
        # reaches the family.
        n = count()
        self.assertError(self.api(self.admin, "POST", "/api/v1/feedback/",
                                  fb(pending, "Hidden")), 404, None,
                         "/data/relationships/response")
        self.assertEqual(count(), n)

        # Visibility: the parent (own child's response), the lab's readers.
        for who, visible in ((self.parent, {fid}), (self.member, {fid}),
                             (self.admin, {fid}), (self.stranger, set()),
                             (self.other_parent, set())):
            with self.subTest(who=who["email"]):
                got = self.ids(self.api(who, "GET", "/api/v1/feedback/?page_size=100"))
                self.assertEqual(got & {fid}, visible)
                self.assertStatus(self.api(who, "GET", f"/api/v1/feedback/{fid}/"),
                                  200 if fid in visible else 404)

        # PATCH: the editor may; a reader 403; others 404; bad input 400.
        patch = {"data": {"id": fid, "type": "feedback", "attributes": {"comment": "Edited"}}}
        self.assertError(self.api(self.member, "PATCH", f"/api/v1/feedback/{fid}/", patch), 403)
        self.assertError(self.api(self.stranger, "PATCH", f"/api/v1/feedback/{fid}/", patch), 404)
        bad = {"data": {"id": fid, "type": "feedback", "attributes": {"comment": 5}}}
        self.assertError(self.api(self.admin, "PATCH", f"/api/v1/feedback/{fid}/", bad), 400)
        wrong = {"data": {"id": pending, "type": "feedback", "attributes": {"comment": "x"}}}
        self.assertError(self.api(self.admin, "PATCH", f"/api/v1/feedback/{fid}/", wrong), 409)
        r = self.api(self.admin, "PATCH", f"/api/v1/feedback/{fid}/", patch)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["comment"], "Edited")
        self.assertError(self.api(self.admin, "GET", "/api/v1/feedback/nope/"), 404)


if __name__ == "__main__":
    unittest.main()
