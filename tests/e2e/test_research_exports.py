"""test_research_exports: the streamed exports (issue 15 point 3) end to
end over HTTP: every format, consented rows only, preview and
identifiable columns behind their permissions and opt-ins, the file
names, the access log, a slow client (the stream waits, nothing is lost),
and a walk over every output of the research routes proving that nothing
unconsented or un-opted-in leaks."""

import csv
import io
import json
import socket
import time

from apifixtures import hash_child_id
from harness import StudyhubTestCase
from researchfixtures import ResearchWorld

EXPORT = "/api/v1/researcher/studies/{}/exports/{}"
FILES = ["responses.json", "summary.csv", "summary-dictionary.csv", "children.csv",
         "children-dictionary.csv", "frames.csv", "frames-dictionary.csv",
         "demographics.json", "demographics.csv", "demographics-dictionary.csv"]


def rows(r):
    return list(csv.DictReader(io.StringIO(r.body.decode())))


class ExportTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.rw = ResearchWorld(cls.srv)
        cls.S = cls.rw.study["uuid"]

    def get(self, who, file, query=""):
        return self.rw.api(who, "GET", EXPORT.format(self.S, file) + query, timeout=60)

    def test_responses_json(self):
        rw = self.rw
        r = self.get("member", "responses.json")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        self.assertIn(f'filename="{self.S}-responses.json"', r.headers["content-disposition"])
        items = json.loads(r.body)
        self.assertEqual({i["response"]["uuid"] for i in items},
                         rw.uuids("accepted", "withdrawn"))
        acc = next(i for i in items if i["response"]["uuid"] == rw.r["accepted"]["uuid"])
        st = rw.study
        self.assertEqual(acc["child"]["hashed_id"], hash_child_id(
            rw.r["accepted"]["child"]["uuid"], st["uuid"], st["salt"], st["hash_digits"]))
        self.assertEqual(acc["child"]["age_in_days"], 500)
        self.assertNotIn("name", acc["child"])
        self.assertNotIn("birthday", acc["child"])
        self.assertEqual(acc["consent"]["ruling"], "accepted")
        self.assertEqual(acc["exp_data"]["1-study-intro"]["answer"], "cats")
        wd = next(i for i in items if i["response"]["uuid"] == rw.r["withdrawn"]["uuid"])
        self.assertNotIn("feedback", wd["exp_data"]["2-exit-survey"])   # free text dropped
        self.assertTrue(wd["response"]["withdrawn"])

    def test_identifiable_opt_in(self):
        rw = self.rw
        r = self.get("admin", "summary.csv", "?identifiable=true")
        self.assertEqual(r.status, 200, r)
        self.assertIn(f'filename="{self.S}-summary-identifiable.csv"',
                      r.headers["content-disposition"])
        got = {x["response_uuid"]: x for x in rows(r)}
        self.assertEqual(got[rw.r["accepted"]["uuid"]]["child_name"], rw.markers["accepted"])
        r = self.get("admin", "responses.json", "?identifiable=true")
        items = json.loads(r.body)
        self.assertIn("birthday", items[0]["child"])
        # without the permission: refused, and nothing logged as read
        n = rw.w.sql("SELECT count(*) FROM access_log")
        for who in ("member", "analysis"):
            r = self.get(who, "summary.csv", "?identifiable=true")
            self.assertEqual(r.status, 403, (who, r))
            self.assertIn("errors", r.json)
        self.assertEqual(rw.w.sql("SELECT count(*) FROM access_log"), n)

    def test_preview_behind_its_permission(self):
        rw = self.rw
        r = self.get("member", "summary.csv", "?preview=true")
        self.assertEqual({x["response_uuid"] for x in rows(r)},
                         rw.uuids("accepted", "withdrawn", "preview"))
        r = self.get("preview", "summary.csv", "?preview=true")     # preview group: preview only
        self.assertEqual(r.status, 200, r)
        self.assertEqual({x["response_uuid"] for x in rows(r)}, rw.uuids("preview"))
        self.assertEqual(self.get("preview", "summary.csv").status, 403)
        # lab member without preview? every lab member has it; a study group without:
        self.assertEqual(self.get("other", "summary.csv", "?preview=true").status, 404)

    def test_every_csv_and_its_dictionary(self):
        rw = self.rw
        r = self.get("member", "summary.csv")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/csv"))
        got = rows(r)
        self.assertEqual({x["response_uuid"] for x in got}, rw.uuids("accepted", "withdrawn"))
        self.assertEqual(got[0]["consent_ruling"], "accepted")
        self.assertIn(got[0]["response_completed"], ("true", "false"))
        d = rows(self.get("member", "summary-dictionary.csv"))
        self.assertEqual([x["column"] for x in d if x["identifiable"] == "false"],
                         list(got[0].keys()))
        ch = rows(self.get("member", "children.csv"))
        self.assertEqual(len(ch), 2)
        self.assertEqual({x["response_count"] for x in ch}, {"1"})
        fr = rows(self.get("member", "frames.csv"))
        self.assertEqual(set(fr[0].keys()), {"response_uuid", "child_hashed_id", "frame_id",
                                             "event_number", "key", "value"})
        answer = [x for x in fr if x["key"] == "answer"]
        self.assertEqual({x["value"] for x in answer}, {"cats"})
        ev = [x for x in fr if x["key"] == "streamTime"]
        self.assertEqual({(x["event_number"], x["value"]) for x in ev}, {("1", "1.5")})
        self.assertFalse([x for x in fr if x["key"] in ("feedback", "birthDate")])
        dm = rows(self.get("member", "demographics.csv"))
        self.assertEqual({x["country"] for x in dm}, {"US"})
        self.assertNotIn("additional_comments", dm[0])
        dj = json.loads(self.get("member", "demographics.json").body)
        self.assertEqual(len(dj), 2)
        self.assertNotIn("additional_comments", dj[0])

    def test_refusals(self):
        rw = self.rw
        self.assertEqual(self.get("other", "summary.csv").status, 404)
        self.assertEqual(self.get("member", "nope.csv").status, 404)
        self.assertEqual(self.get("member", "summary.csv", "?identifiable=yes").status, 400)
        self.assertEqual(self.get("member", "summary.csv", "?preview=1").status, 400)
        r = rw.api("member", "GET", EXPORT.format("not-a-uuid", "summary.csv"))
        self.assertEqual(r.status, 404)

    def test_access_logged(self):
        rw = self.rw
        self.get("analysis", "frames.csv")
        out = rw.w.sql("SELECT object FROM access_log WHERE action = 'export' AND user_id ="
                       f" {rw.u['analysis']['id']}")
        self.assertIn(f"{self.S}-frames.csv", out)

    def test_slow_client_gets_everything(self):
        """Many rows, read slowly: the server waits instead of dropping the
        client or growing without bound."""
        rw = self.rw
        w = rw.w
        big = json.dumps({f"frame-{i}": {"text": "x" * 2000} for i in range(10)})
        w.sql("INSERT INTO responses (study_id, child_id, exp_data, sequence)"
              f" SELECT {rw.study['id']}, {rw.r['accepted']['child']['id']}, '{big}', '[]'"
              " FROM generate_series(1, 400)")
        w.sql("INSERT INTO consent_rulings (response_id, action) SELECT id, 'accepted'"
              f" FROM responses r WHERE study_id = {rw.study['id']}"
              " AND NOT EXISTS (SELECT 1 FROM consent_rulings c WHERE c.response_id = r.id)"
              " AND NOT is_preview AND exp_data::text LIKE '%frame-9%'")
        path = EXPORT.format(self.S, "responses.json")
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {rw.u['member']['token']}"
                   "\r\nConnection: close\r\n\r\n").encode())
        data = b""
        time.sleep(1.5)        # not reading: the server must wait, not drop us
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"200", head.split(b"\r\n")[0])
        # de-chunk
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        items = json.loads(out)
        self.assertEqual(len(items), 402)


class LeakTest(StudyhubTestCase):
    """Walks every output of the research routes for a study with
    accepted, rejected, pending, withdrawn and preview responses."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.rw = ResearchWorld(cls.srv)

    def outputs(self, who):
        S = self.rw.study["uuid"]
        paths = [f"/api/v1/researcher/studies/{S}/consent/?page_size=100",
                 f"/api/v1/researcher/studies/{S}/responses/?page_size=100",
                 f"/api/v1/researcher/studies/{S}/access-log/?page_size=100",
                 f"/api/v1/videos/?study={S}&page_size=100",
                 f"/api/v1/responses/?page_size=100",
                 f"/api/v1/studies/{S}/responses/?page_size=100",
                 f"/api/v1/children/?page_size=100"]
        paths += [EXPORT.format(S, f) for f in FILES]
        paths += [EXPORT.format(S, f) + "?preview=true" for f in FILES]
        out = {}
        for p in paths:
            r = self.rw.api(who, "GET", p, timeout=60)
            out[p] = (r.status, r.text)
        return out

    def test_nothing_unconsented_or_unopted_leaks(self):
        rw = self.rw
        hidden = {s: rw.r[s] for s in ("rejected", "pending")}
        markers = rw.all_markers()
        for who in ("member", "analysis", "admin", "preview", "design", "other"):
            for path, (status, text) in self.outputs(who).items():
                for state, r in hidden.items():
                    # Those who rule on consent see unconsented responses in
                    # the consent manager, and their consent footage only.
                    if "/consent/" in path and who == "admin":
                        continue
                    if "/videos/" in path and who == "admin":
                        for v in json.loads(text)["data"]:
                            if v["relationships"]["response"]["data"]["id"] == r["uuid"]:
                                self.assertTrue(v["attributes"]["is_consent_footage"], v)
                        continue
                    self.assertNotIn(r["uuid"], text, (who, path, state))
                    self.assertNotIn(r["child"]["uuid"], text, (who, path, state))
                for m in markers:
                    if "/api/v1/children/" in path or "/api/v1/responses/" in path:
                        continue    # runner API: children of readable responses only
                    self.assertNotIn(m, text, (who, path))
                if "preview=true" not in path and "/consent/" not in path \
                        and "/responses/" not in path and "/videos/" not in path:
                    self.assertNotIn(rw.r["preview"]["uuid"], text, (who, path))
        # the withdrawn response's non-consent video: in no list
        vid = rw.w.sql("SELECT uuid FROM videos WHERE NOT is_consent_footage AND response_id ="
                       f" {rw.r['withdrawn']['id']}")
        for who in ("member", "admin"):
            for path, (status, text) in self.outputs(who).items():
                self.assertNotIn(vid, text, (who, path))
        # the runner API's children: only the readable responses' children
        for who in ("member", "admin"):
            r = rw.api(who, "GET", "/api/v1/children/?page_size=100")
            for state in ("rejected", "pending"):
                self.assertNotIn(rw.markers[state], r.text, (who, state))
        # the log lines name no child and carry no data
        log = self.srv.log_text()
        for m in markers:
            self.assertNotIn(m, log)
