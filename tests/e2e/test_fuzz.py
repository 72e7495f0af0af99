"""A fuzz pass, short form: every route the server declares (read from
`studyhubctl routes`, so new routes join by themselves) gets malformed and
hostile bodies and queries from a two-factor site admin (who holds every
permission, so handlers run deepest), and the Pipe webhook gets validly
signed hostile payloads.  No answer may be a 5xx but 503, the server must
stay up, and (on the ASan build) its log must stay free of sanitizer
reports, which the harness checks when the server stops.

The mutations are drawn from a fixed seed, so a failure repeats."""

import base64
import hashlib
import hmac
import json
import random
import re
import urllib.parse

from apifixtures import World
from harness import JSONAPI, StudyhubTestCase, request

PIPE_KEY = "fuzz-pipe-key"
SEED = 20261206
PER_ROUTE = 14


def hostile_values(rng):
    """JSON values of every type, at the edges."""
    return [
        None, True, False, 0, -1, 2**63, -2**63 - 1, 1e308, -0.0, 3.5,
        "", " ", "x" * 70000, "\u0000", "\ud800" if False else "\u2028",
        "'; DROP TABLE users; --", "../../etc/passwd", "%00", "\u00e9\u4e2d\U0001f600",
        "2026-13-45", "00000000-0000-0000-0000-000000000000", "not-a-uuid",
        [], [None], [[[[[]]]]], {}, {"a": {"b": {"c": {}}}},
        {"data": None}, {"data": []}, {"data": {"type": 5}},
        rng.randint(-10**9, 10**9),
    ]


def bodies(rng, type_name):
    """Raw bodies (bytes) for one route."""
    vals = hostile_values(rng)
    out = [
        b"", b"{", b"}", b"null", b"[]", b'"s"', b"\xff\xfe\x00", b"{\"data\":",
        b"[" * 3000 + b"]" * 3000,
        b'{"data":{"type":"' + type_name.encode() + b'","attributes":' + b"[" * 500 + b"]" * 500 + b"}}",
    ]
    for _ in range(PER_ROUTE):
        attrs = {rng.choice(["name", "state", "given_name", "birthday", "email", "password",
                             "exp_data", "structure", "metadata", "action", "comment",
                             "child", "study", "role", "code", "public", "min_age_months",
                             rng.choice(["x", "__proto__", "id", "uuid"])]): rng.choice(vals)
                 for _ in range(rng.randint(0, 6))}
        doc = {"data": {"type": rng.choice([type_name, "x", 7, None]),
                        "attributes": rng.choice([attrs, attrs, [], "a", None]),
                        "relationships": rng.choice([{}, {"child": {"data": rng.choice(vals)}},
                                                     None, {"study": vals[rng.randrange(len(vals))]}])}}
        if rng.random() < 0.3:
            doc = rng.choice([attrs, vals, {"data": rng.choice(vals)}])
        text = json.dumps(doc)
        if rng.random() < 0.15:
            text = text[:rng.randint(0, len(text))]   # cut short
        out.append(text.encode())
    return out


class FuzzTest(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"TASK_CONCURRENCY": "0", "PIPE_WEBHOOK_KEY": PIPE_KEY,
                                        "AWS_LAMBDA_SECRET_ACCESS_KEY": "fuzz-lambda-key"})
        w = cls.w = World(cls.srv)
        cls.admin = w.user("fuzzadmin", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.admin['id']}")
        # Made by a two-factor session (when the tokens table records it).
        w.sql("DO $$ BEGIN UPDATE api_tokens SET mfa_verified = true; "
              "EXCEPTION WHEN undefined_column THEN NULL; END $$")
        parent = w.user("fuzzparent")
        lab = w.lab("Fuzz Lab")
        w.member(lab, cls.admin, "admin")
        cls.study = w.study(lab)
        cls.child = w.child(parent)
        cls.response = w.create_response(parent, cls.child, cls.study)
        cls.ids = {"studies": cls.study["uuid"], "responses": cls.response,
                   "children": cls.child["uuid"], "labs": lab["uuid"],
                   "users": cls.admin["uuid"]}
        out = cls.srv.ctl("routes")
        assert out.returncode == 0, out.stderr
        cls.routes = [line.split(" ")[:2] for line in out.stdout.splitlines() if line.strip()]

    def fill(self, pattern, rng):
        parts = pattern.rstrip("?").split("/")
        for i, seg in enumerate(parts):
            if seg.startswith("{"):
                prev = parts[i - 1] if i else ""
                parts[i] = self.ids.get(prev) or rng.choice(
                    [str(self.study["uuid"]), "00000000-0000-0000-0000-000000000000", "1", "x" * 300])
            elif seg == "*":
                parts[i] = rng.choice(["a", "a/../../b", "%2e%2e/x", "x" * 2000])
        return "/".join(parts)

    def check(self, method, path, resp):
        self.assertTrue(resp.status < 500 or resp.status == 503,
                        f"{method} {path} -> {resp.status}: {resp.body[:300]!r}")

    def test_every_route_with_hostile_bodies_and_queries(self):
        rng = random.Random(SEED)
        sent = 0
        for method, pattern in self.routes:
            if pattern.startswith("/debug/") or "/events" in pattern:
                continue
            path = self.fill(pattern, rng)
            type_name = re.sub(r"[^a-z-]", "", pattern.split("/")[3] if pattern.count("/") > 3 else "x")
            if method in ("POST", "PUT", "PATCH"):
                for body in bodies(rng, type_name):
                    ctype = rng.choice([JSONAPI, "application/json", "text/plain",
                                        "application/x-www-form-urlencoded", None])
                    hdrs = {"Accept": JSONAPI}
                    if ctype:
                        hdrs["Content-Type"] = ctype
                    r = request(self.srv.port, method, path, body=body, headers=hdrs,
                                token=self.admin["token"], timeout=30)
                    self.check(method, path, r)
                    sent += 1
            else:
                for q in ("?page=-1", "?page=99999999999999999999", "?page%5Bsize%5D=0",
                          "?filter=%00&sort=-x,,", "?" + "a=b&" * 500, "?format=svg&x=%ff"):
                    r = request(self.srv.port, method, path + q, headers={"Accept": JSONAPI},
                                token=self.admin["token"], timeout=30)
                    self.check(method, path + q, r)
                    sent += 1
        self.assertGreater(sent, 500)
        self.assertStatus(self.srv.get("/healthz"), 200)

    def test_signed_pipe_webhook_with_hostile_payloads(self):
        rng = random.Random(SEED + 1)
        path = "/exp/renamevideo/"
        url = f"http://127.0.0.1:{self.srv.port}{path}"
        vals = hostile_values(rng)
        payloads = ['{"data":', "[]", "null", json.dumps({"data": None})]
        for _ in range(60):
            data = {k: rng.choice(vals) for k in rng.sample(
                ["videoName", "type", "id", "payload", "s3", "duration", "audioCodec"], rng.randint(0, 5))}
            if rng.random() < 0.5:
                data["videoName"] = rng.choice([
                    "videoStream_" + "x" * rng.randint(0, 400),
                    f"videoStream_{self.study['uuid']}_1-frame_{self.response}_1_2",
                    "../../../x"])
            payloads.append(json.dumps({"version": rng.choice(vals), "event": rng.choice(
                ["video_copied_s3", "video_recorded", None, 3]), "data": data}))
        for payload in payloads:
            sig = base64.b64encode(hmac.new(PIPE_KEY.encode(), (url + payload).encode(),
                                            hashlib.sha1).digest()).decode()
            body = urllib.parse.urlencode({"payload": payload}).encode()
            r = request(self.srv.port, "POST", path, body=body, timeout=30, headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Pipe-Signature": sig})
            self.check("POST", path, r)
            self.assertNotEqual(r.status, 403, "the signature was not accepted: the fuzz"
                                " would not reach the payload")
        self.assertStatus(self.srv.get("/healthz"), 200)
