"""test_videos: the video pipeline end to end (reference/lookit.md section
6, runner-api.md section 5), against the file:// backend and against
s3rver (S3_TEST_ENDPOINT, started by tools/test):

- Pipe's webhook POST /exp/renamevideo/: good, bad and missing
  signatures, malformed payloads, a missing object, unknown study or
  response, the same webhook twice (one video), the consent- prefix;
- the consent flag in both race orders (upstream #598): webhook then the
  PATCH that names the consent frame, and the PATCH first;
- the Lambda's POST /api/v1/video/ (hex HMAC-SHA256 of the attributes);
- researchers watching: who sees which video, 10-minute links that work
  (and, for file://, refuse a bad or expired signature; ranges);
- reconcile_videos twice (idempotent, reports what it cannot place, goes
  on from a saved token), abort_stale_uploads;
- build_zipfile_of_videos: a zip downloaded through the emailed link,
  unpacked and compared byte for byte (stored entries), reused the second
  time, consent-only, 409 for the same file set, permission denials, a
  video missing from storage."""

import base64
import hashlib
import hmac
import http.client
import io
import json
import os
import re
import secrets
import time
import unittest
import urllib.request
import uuid
import zipfile
from urllib.parse import quote, urlencode, urlsplit

from apifixtures import World, lit, r1_body
from harness import JSONAPI, StudyhubTestCase, new_dir, request, wait_until, SLOW

PIPE_KEY = "pipe-test-key"
LAMBDA_KEY = "lambda-test-key"
LINK_SECRET = "link-test-secret"
S3_ENDPOINT = os.environ.get("S3_TEST_ENDPOINT", "")


# --- the two storage backends, as the tests see them ------------------------------

class FileStore:
    """file://DIR: objects are files."""

    name = "file"

    def __init__(self):
        self.dir = new_dir("storage")

    def env(self):
        return {"STORAGE_URL": "file://" + self.dir}

    def put(self, key, data):
        path = os.path.join(self.dir, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def get(self, key):
        try:
            with open(os.path.join(self.dir, key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None


class S3Store:
    """A bucket of its own on s3rver (which takes unsigned requests)."""

    name = "s3"

    def __init__(self):
        u = urlsplit(S3_ENDPOINT)
        self.host, self.port = u.hostname, u.port
        self.bucket = "vid-" + secrets.token_hex(6)
        status, _ = self._req("PUT", f"/{self.bucket}")
        assert status == 200, f"cannot create bucket {self.bucket}: {status}"

    def _req(self, method, path, body=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def env(self):
        return {"STORAGE_URL": f"s3://{self.bucket}", "S3_ENDPOINT": S3_ENDPOINT,
                "S3_ACCESS_KEY_ID": "S3RVER", "S3_SECRET_ACCESS_KEY": "S3RVER",
                "S3_PATH_STYLE": "1", "S3_REGION": "us-east-1"}

    def put(self, key, data):
        status, body = self._req("PUT", f"/{self.bucket}/{quote(key)}", data)
        assert status == 200, f"PUT {key}: {status} {body[:200]!r}"

    def get(self, key):
        status, body = self._req("GET", f"/{self.bucket}/{quote(key)}")
        return body if status == 200 else None


# --- helpers ----------------------------------------------------------------------

def server_env(store, **extra):
    env = {"PIPE_WEBHOOK_KEY": PIPE_KEY, "AWS_LAMBDA_SECRET_ACCESS_KEY": LAMBDA_KEY,
           "STORAGE_LINK_SECRET": LINK_SECRET, "VIDEO_ZIP_PART_MB": "5",
           "TASK_POLL_S": "1"}
    env.update(store.env())
    env.update(extra)
    return env


def video_name(study, response, frame="2-video-intro", consent=False):
    ms = int(time.time() * 1000)
    rand = secrets.randbelow(1000)
    return (f"{'consent-' if consent else ''}videoStream_{study}_{frame}_{response}"
            f"_{ms}_{rand:03d}")


def pipe_payload(video_name_, name, status="upload success", typ="MP4", pid=12345678,
                 drop=()):
    data = {"s3UploadStatus": status, "videoName": video_name_, "type": typ,
            "size": 1234, "id": pid, "url": "https://example/x.mp4",
            "snapshotUrl": "https://example/x.jpg", "bucket": "b", "region": "us-east-1",
            "acl": "private", "payload": name}
    for k in drop:
        data.pop(k, None)
    return json.dumps({"version": "1.0", "event": "video_copied_s3", "data": data})


def pipe_sig(url, payload, key=PIPE_KEY):
    mac = hmac.new(key.encode(), (url + payload).encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def lambda_sig(attrs, key=LAMBDA_KEY):
    msg = json.dumps(attrs, separators=(",", ":")).encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


class Fixtures:
    """People, a lab and studies in one server's database; responses are
    made in SQL (fast) or through the API (for the PATCH race)."""

    def __init__(self, srv):
        w = self.w = World(srv)
        self.lab = w.lab("Video lab")
        self.other_lab = w.lab("Other lab")
        self.parent = w.user("parent")
        w.demographics(self.parent)
        self.child = w.child(self.parent, "Kid", age_days=400)
        self.member = w.user("member", researcher=True)       # reads responses and previews
        self.labadmin = w.user("labadmin", researcher=True)   # also rules on consent
        self.readonly = w.user("readonly", researcher=True)   # study details only
        self.stranger = w.user("stranger", researcher=True)   # another lab
        self.previewer = w.user("previewer", researcher=True)
        w.member(self.lab, self.member, "member")
        w.member(self.lab, self.labadmin, "admin")
        w.member(self.lab, self.readonly, "readonly")
        w.member(self.other_lab, self.stranger, "member")
        self.study = w.study(self.lab, "Videos")

    def study_for(self, name):
        s = self.w.study(self.lab, name)
        self.w.study_member(s, self.previewer, "preview")
        return s

    def response(self, study, preview=False, consent=None, exp_data=None):
        """A response made in SQL; consent: None (pending), accepted, rejected."""
        rid = self.w.row(
            "INSERT INTO responses (study_id, child_id, is_preview, exp_data, sequence)"
            f" VALUES ({study['id']}, {self.child['id']}, {lit(preview)},"
            f" {lit(exp_data or {})}::json, '[]') RETURNING uuid")[0]
        if consent:
            self.w.consent(rid, consent)
        return rid

    def api_response(self, study):
        return self.w.create_response(self.parent, self.child, study)

    def video_row(self, full_name):
        out = self.w.sql(
            "SELECT row_to_json(x) FROM (SELECT v.uuid, v.full_name, v.pipe_name,"
            " v.pipe_numeric_id, v.frame_id, v.is_consent_footage,"
            " extract(epoch FROM v.s3_timestamp)::float8 AS ts, s.uuid AS study,"
            " r.uuid AS response FROM videos v JOIN studies s ON s.id = v.study_id"
            f" JOIN responses r ON r.id = v.response_id WHERE v.full_name = {lit(full_name)}) x")
        return json.loads(out) if out else None

    def count_videos(self, like="%"):
        return int(self.w.sql(f"SELECT count(*) FROM videos WHERE full_name LIKE {lit(like)}"))

    def add_video(self, study, response, full_name, consent=False):
        """A recorded video (SQL), as if a webhook had come."""
        return self.w.row(
            "INSERT INTO videos (study_id, response_id, frame_id, full_name, is_consent_footage)"
            f" SELECT {study['id']}, r.id, 'f', {lit(full_name)}, {lit(consent)}"
            f" FROM responses r WHERE r.uuid = {lit(response)} RETURNING uuid")[0]


class VideoCase(StudyhubTestCase):
    """The tests, run once per backend by the subclasses below."""

    Store = None

    @classmethod
    def setUpClass(cls):
        if cls.Store is None:
            raise unittest.SkipTest("base class")
        cls.store = cls.Store()
        cls.srv = cls.class_server(env=server_env(cls.store))
        cls.f = Fixtures(cls.srv)

    # -- small helpers

    def api(self, who, method, path, body=None, **kw):
        return self.f.w.api(who, method, path, body, **kw)

    def pipe(self, payload, sig=None, url=None, headers=None, body=None, srv=None):
        srv = srv or self.srv
        url = url or f"http://127.0.0.1:{srv.port}/exp/renamevideo/"
        hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
        if sig is not False:
            hdrs["X-Pipe-Signature"] = sig if sig is not None else pipe_sig(url, payload)
        hdrs.update(headers or {})
        if body is None:
            body = urlencode({"payload": payload})
        return request(srv.port, "POST", "/exp/renamevideo/", body=body, headers=hdrs)

    def wait_task(self, task_uuid, srv=None, timeout=60):
        w = World(srv) if srv else self.f.w

        def done():
            row = w.row(f"SELECT state, coalesce(result::text, ''), coalesce(error, '')"
                        f" FROM tasks WHERE uuid = {lit(task_uuid)}")
            return row if row and row[0] in ("succeeded", "failed", "cancelled") else None
        state, result, error = wait_until(done, timeout * SLOW, interval=0.1,
                                          message=f"task {task_uuid}")
        return state, (json.loads(result) if result else None), error

    def ctl_run(self, srv, job):
        """studyhubctl run JOB, once the scheduler has started."""
        def attempt():
            r = srv.ctl("run", job, timeout=30)
            return None if "not ready" in r.stdout + r.stderr else r
        return wait_until(attempt, 20 * SLOW, interval=0.2, message=f"run {job}")

    def upload_for_pipe(self, data=b"\x00\x00\x00\x18ftypmp42 webcam bytes", ext="mp4"):
        """Pipe's upload: <videoName>.<ext> and its snapshot .jpg."""
        vn = "pipe" + secrets.token_hex(12)
        self.store.put(vn + "." + ext, data)
        self.store.put(vn + ".jpg", b"jpeg")
        return vn

    # -- Pipe's webhook

    def test_pipe_webhook_renames_and_records_once(self):
        f = self.f
        rid = f.response(f.study)
        data = os.urandom(3000)
        vn = self.upload_for_pipe(data)
        name = video_name(f.study["uuid"], rid)
        payload = pipe_payload(vn, name, pid=87654321)
        r = self.pipe(payload)
        self.assertStatus(r, 200)
        self.assertEqual(r.text, f"{vn} --> {name}.mp4")
        # Copied to its searchable name; the original and its .jpg are gone.
        self.assertEqual(self.store.get(name + ".mp4"), data)
        self.assertIsNone(self.store.get(vn + ".mp4"))
        self.assertIsNone(self.store.get(vn + ".jpg"))
        row = f.video_row(name + ".mp4")
        self.assertEqual(row["pipe_name"], vn + ".mp4")
        self.assertEqual(row["pipe_numeric_id"], 87654321)
        self.assertEqual(row["frame_id"], "2-video-intro")
        self.assertEqual((row["study"], row["response"]), (f.study["uuid"], rid))
        self.assertFalse(row["is_consent_footage"])
        ms = int(name.split("_")[-2])
        self.assertAlmostEqual(row["ts"], ms / 1000, places=2)
        # The same webhook again (Pipe retries): 200, still one video.
        r = self.pipe(payload)
        self.assertStatus(r, 200)
        self.assertEqual(f.count_videos(name + "%"), 1)
        self.assertEqual(self.store.get(name + ".mp4"), data)

    def test_pipe_consent_prefix_and_underscored_frame(self):
        f = self.f
        rid = f.response(f.study)
        vn = self.upload_for_pipe(ext="webm")
        name = video_name(f.study["uuid"], rid, frame="1-video_consent", consent=True)
        r = self.pipe(pipe_payload(vn, name, typ="webm"))
        self.assertStatus(r, 200)
        full = name[len("consent-"):] + ".webm"
        row = f.video_row(full)
        self.assertTrue(row["is_consent_footage"])
        self.assertEqual(row["frame_id"], "1-video_consent")

    def test_pipe_signatures(self):
        f = self.f
        rid = f.response(f.study)
        vn = self.upload_for_pipe()
        payload = pipe_payload(vn, video_name(f.study["uuid"], rid))
        # Missing header: upstream's KeyError, a 400 naming it.
        r = self.pipe(payload, sig=False)
        self.assertStatus(r, 400)
        self.assertIn("X-Pipe-Signature", r.text)
        # Wrong key, another URL, a tampered payload, garbage.
        url = f"http://127.0.0.1:{self.srv.port}/exp/renamevideo/"
        for bad in (pipe_sig(url, payload, key="wrong"),
                    pipe_sig(url.replace("renamevideo", "other"), payload),
                    pipe_sig(url, payload + " "), "AAAA"):
            r = self.pipe(payload, sig=bad)
            self.assertStatus(r, 403, f"signature {bad!r}")
        # An empty header is as good as none.
        self.assertStatus(self.pipe(payload, sig=""), 403)
        self.assertEqual(self.store.get(vn + ".mp4")[:4], b"\x00\x00\x00\x18")
        # Missing payload field.
        r = self.pipe(payload, body="other=1")
        self.assertStatus(r, 400)
        self.assertIn("'payload'", r.text)
        # A proxy ended TLS: the https URL Pipe signed is accepted too.
        r = self.pipe(payload, sig=pipe_sig(url.replace("http:", "https:"), payload))
        self.assertStatus(r, 200)
        self.assertEqual(f.count_videos(f"%{rid}%"), 1)

    def test_pipe_refused_without_a_key(self):
        srv = self.server(env=server_env(self.store, PIPE_WEBHOOK_KEY=""))
        payload = pipe_payload("x", "y")
        url = f"http://127.0.0.1:{srv.port}/exp/renamevideo/"
        # Not even a signature made with the empty key.
        r = self.pipe(payload, sig=pipe_sig(url, payload, key=""), srv=srv)
        self.assertStatus(r, 403)

    def test_pipe_malformed(self):
        f = self.f
        rid = f.response(f.study)
        good = video_name(f.study["uuid"], rid)
        vn = self.upload_for_pipe()
        cases = [
            (pipe_payload(vn, good, status="upload failed"), 403, "s3UploadStatus"),
            (pipe_payload(vn, ""), 403, "empty"),
            (pipe_payload(vn, "videoStream_nonsense"), 400, "Malformed video name"),
            (pipe_payload(vn, good.replace(rid, "not-a-uuid" + "x" * 26)), 400, "Malformed"),
            (pipe_payload(vn, good + "_extra_part"), 400, "Malformed"),
            (pipe_payload(vn, good, drop=("s3UploadStatus",)), 400, "'s3UploadStatus'"),
            (pipe_payload(vn, good, drop=("videoName",)), 400, "'videoName'"),
            (pipe_payload(vn, good, drop=("type",)), 400, "'type'"),
            (pipe_payload(vn, good, drop=("id",)), 400, "'id'"),
            (pipe_payload(vn, good, typ="mp4/../x"), 400, "type"),
            (pipe_payload("../" + vn, good), 400, "videoName"),
            ("not json at all", 400, "not a JSON object"),
            (json.dumps({"version": "1.0"}), 400, "'data'"),
            (json.dumps(["a"]), 400, "JSON object"),
        ]
        for payload, status, text in cases:
            with self.subTest(payload=payload[:80]):
                r = self.pipe(payload)
                self.assertStatus(r, status)
                self.assertIn(text, r.text)
        # Unknown study or response, or a response of another study: 404
        # with what was not found (upstream: a 500), object left alone.
        other = f.study_for("Other videos")
        for name, text in ((video_name(str(uuid.uuid4()), rid), "No study"),
                           (video_name(f.study["uuid"], str(uuid.uuid4())), "No response"),
                           (video_name(other["uuid"], rid), "No response")):
            r = self.pipe(pipe_payload(vn, name))
            self.assertStatus(r, 404)
            self.assertIn(text, r.text)
        self.assertIsNotNone(self.store.get(vn + ".mp4"))
        self.assertEqual(f.count_videos(f"%{rid}%"), 0)

    def test_pipe_missing_object(self):
        f = self.f
        rid = f.response(f.study)
        name = video_name(f.study["uuid"], rid)
        r = self.pipe(pipe_payload("never" + secrets.token_hex(8), name))
        self.assertStatus(r, 404)
        self.assertIn("No video", r.text)
        self.assertEqual(f.count_videos(name + "%"), 0)

    # -- the consent flag, both orders (upstream #598)

    def patch_exp_data(self, rid, exp_data):
        r = self.api(self.f.parent, "PATCH", f"/api/v1/responses/{rid}/", {"data": {
            "id": rid, "type": "responses",
            "attributes": {"exp_data": exp_data, "sequence": list(exp_data)}}})
        self.assertStatus(r, 200)

    def test_consent_flag_webhook_first(self):
        f = self.f
        rid = f.api_response(f.study)
        self.patch_exp_data(rid, {"0-video-config": {"frameType": "DEFAULT"}})
        vn = self.upload_for_pipe()
        name = video_name(f.study["uuid"], rid, frame="1-video-consent")
        self.assertStatus(self.pipe(pipe_payload(vn, name)), 200)
        self.assertFalse(f.video_row(name + ".mp4")["is_consent_footage"])
        # The PATCH that says frame 1 was the consent frame marks it.
        self.patch_exp_data(rid, {"0-video-config": {"frameType": "DEFAULT"},
                                  "1-video-consent": {"frameType": "CONSENT"}})
        self.assertTrue(f.video_row(name + ".mp4")["is_consent_footage"])
        # Later PATCHes never unmark it.
        self.patch_exp_data(rid, {"0-video-config": {"frameType": "DEFAULT"}})
        self.assertTrue(f.video_row(name + ".mp4")["is_consent_footage"])

    def test_consent_flag_patch_first(self):
        f = self.f
        rid = f.api_response(f.study)
        self.patch_exp_data(rid, {"1-video-consent": {"frameType": "CONSENT"},
                                  "2-video-intro": {"frameType": "DEFAULT"}})
        vn = self.upload_for_pipe()
        name = video_name(f.study["uuid"], rid, frame="1-video-consent")
        self.assertStatus(self.pipe(pipe_payload(vn, name)), 200)
        self.assertTrue(f.video_row(name + ".mp4")["is_consent_footage"])
        # Another frame's video is not consent footage.
        vn = self.upload_for_pipe()
        name2 = video_name(f.study["uuid"], rid, frame="2-video-intro")
        self.assertStatus(self.pipe(pipe_payload(vn, name2)), 200)
        self.assertFalse(f.video_row(name2 + ".mp4")["is_consent_footage"])

    # -- the upload Lambda

    def lambda_doc(self, rid, **attrs):
        study = self.f.study["uuid"]
        a = {"pipe_name": secrets.token_hex(15) + "x.mp4", "pipe_numeric_id": "12345678",
             "frame_id": "0-video-consent",
             "full_name": video_name(study, rid, frame="0-video-consent") + ".mp4",
             "s3_timestamp": "2026-05-01 14:11:12.123456", "is_consent_footage": True,
             "pk": None}
        a.update(attrs)
        return {"data": {"attributes": a, "type": "videos", "relationships": {
            "response": {"data": {"type": "responses", "id": rid}},
            "study": {"data": {"type": "studies", "id": study}}}}}

    def post_lambda(self, doc, sig=None, header="X-AWS-Lambda-HMAC-Sig"):
        hdrs = {"Content-Type": JSONAPI}
        if sig is not False:
            hdrs[header] = sig or lambda_sig(doc.get("data", {}).get("attributes", {}))
        return request(self.srv.port, "POST", "/api/v1/video/",
                       body=json.dumps(doc, separators=(",", ":")), headers=hdrs)

    def test_lambda_endpoint(self):
        f = self.f
        rid = f.response(f.study)
        doc = self.lambda_doc(rid)
        full = doc["data"]["attributes"]["full_name"]
        r = self.post_lambda(doc)
        self.assertStatus(r, 201)
        d = r.json["data"]
        self.assertEqual(d["type"], "videos")
        self.assertEqual(d["attributes"]["full_name"], full)
        self.assertTrue(d["attributes"]["is_consent_footage"])
        self.assertEqual(d["attributes"]["pipe_numeric_id"], 12345678)
        self.assertNotIn("url", d["attributes"])   # no link for an unauthenticated caller
        self.assertEqual(d["relationships"]["response"]["data"]["id"], rid)
        row = f.video_row(full)
        # A naive time is upstream's TIME_ZONE (America/New_York, EDT in May).
        self.assertAlmostEqual(row["ts"], 1777659072.123456, places=3)
        # The Lambda retried: the same video, once.
        r = self.post_lambda(doc)
        self.assertStatus(r, 200)
        self.assertEqual(f.count_videos(full), 1)
        # The underscored header spelling; the signed text is Python's
        # json.dumps: non-ASCII escaped, floats in repr, nested values,
        # attributes the serializer ignores included.
        doc2 = self.lambda_doc(rid, frame_id="0-vidéo ✓ \U0001F600", duration=12.0,
                               tiny=1e-05, huge=1e16, frac=0.1, neg=-2.5, big=123456789.125,
                               nested={"a": [1, 2.5, "é\t"], "b": None, "c": True})
        self.assertStatus(self.post_lambda(doc2, header="X_AWS_LAMBDA_HMAC_SIG"), 201)
        # Signatures: missing, wrong, for other attributes.
        doc3 = self.lambda_doc(rid)
        r = self.post_lambda(doc3, sig=False)
        self.assertStatus(r, 401)
        self.assertEqual(r.json["errors"][0]["detail"], "No HMAC signature found in request header.")
        for bad in ("0" * 64, lambda_sig(doc3["data"]["attributes"], key="wrong"),
                    lambda_sig(doc["data"]["attributes"])):
            r = self.post_lambda(doc3, sig=bad)
            self.assertStatus(r, 401)
            self.assertEqual(r.json["errors"][0]["detail"], "HMAC signatures do not match.")
        self.assertEqual(f.count_videos(doc3["data"]["attributes"]["full_name"]), 0)
        # No data: parse_error at /data (before the signature).
        r = self.post_lambda({}, sig="x")
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["code"], "parse_error")
        # Wrong type: 409.
        bad_type = self.lambda_doc(rid)
        bad_type["data"]["type"] = "bad"
        self.assertStatus(self.post_lambda(bad_type), 409)
        # Missing full_name: 400 at its pointer.
        missing = self.lambda_doc(rid)
        del missing["data"]["attributes"]["full_name"]
        r = self.post_lambda(missing)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["source"]["pointer"], "/data/attributes/full_name")
        # Missing relationship; unknown response.
        norel = self.lambda_doc(rid)
        del norel["data"]["relationships"]["study"]
        r = self.post_lambda(norel)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["source"]["pointer"], "/data/relationships/study")
        unknown = self.lambda_doc(str(uuid.uuid4()))
        r = self.post_lambda(unknown)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["code"], "does_not_exist")
        # POST only.
        for method in ("GET", "PUT", "PATCH", "DELETE", "OPTIONS"):
            r = request(self.srv.port, method, "/api/v1/video/")
            self.assertStatus(r, 405, method)

    # -- researchers watching

    def test_who_sees_which_video(self):
        f = self.f
        study = f.study_for("Watching")
        acc = f.response(study, consent="accepted")
        pend = f.response(study)
        prev = f.response(study, preview=True)
        files = {}
        names = {}
        for label, rid, consent in (("acc", acc, False), ("pend", pend, False),
                                    ("pend_consent", pend, True), ("prev", prev, False)):
            full = video_name(study["uuid"], rid, frame=label) + ".mp4"
            files[label] = os.urandom(2048)
            self.store.put(full, files[label])
            f.add_video(study, rid, full, consent=consent)
            names[label] = full
        expect = {
            f.member["uuid"]: {"acc", "prev"},
            f.labadmin["uuid"]: {"acc", "pend_consent", "prev"},   # the consent manager
            f.previewer["uuid"]: {"prev"},
        }
        for who in (f.member, f.labadmin, f.previewer):
            r = self.api(who, "GET", f"/api/v1/videos/?study={study['uuid']}&page_size=100")
            self.assertStatus(r, 200)
            seen = {d["attributes"]["full_name"] for d in r.json["data"]}
            want = {names[k] for k in expect[who["uuid"]]}
            self.assertEqual(seen, want, who["email"])
            self.assertEqual(r.json["links"]["meta"]["count"], len(want))
            for d in r.json["data"]:
                self.assertIn(self.fetch(d["attributes"]["url"]), files.values())
        # By response.
        r = self.api(f.labadmin, "GET", f"/api/v1/videos/?response={pend}")
        self.assertEqual({d["attributes"]["full_name"] for d in r.json["data"]},
                         {names["pend_consent"]})
        # No read permission: 403; unknown study 404; no filter 400; no auth 401.
        for who in (f.readonly, f.stranger):
            self.assertStatus(self.api(who, "GET", f"/api/v1/videos/?study={study['uuid']}"), 403)
        self.assertStatus(self.api(f.member, "GET", f"/api/v1/videos/?study={uuid.uuid4()}"), 404)
        self.assertStatus(self.api(f.member, "GET", "/api/v1/videos/"), 400)
        self.assertStatus(self.api(f.member, "GET", "/api/v1/videos/?study=nope"), 400)
        self.assertStatus(self.api(None, "GET", f"/api/v1/videos/?study={study['uuid']}"), 401)
        # One video: 200 with a working 10-minute link, or 404.
        vid = f.w.row(f"SELECT uuid FROM videos WHERE full_name = {lit(names['pend_consent'])}")[0]
        r = self.api(f.labadmin, "GET", f"/api/v1/videos/{vid}/")
        self.assertStatus(r, 200)
        a = r.json["data"]["attributes"]
        self.assertEqual(self.fetch(a["url"]), files["pend_consent"])
        expires = time.mktime(time.strptime(a["url_expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        self.assertAlmostEqual(expires - time.time(), 600, delta=30)
        for who in (f.member, f.previewer, f.readonly, f.stranger):
            self.assertStatus(self.api(who, "GET", f"/api/v1/videos/{vid}/"), 404)
        # Consent accepted later: the member sees the pending response's videos.
        f.w.consent(pend, "accepted")
        r = self.api(f.member, "GET", f"/api/v1/videos/?response={pend}")
        self.assertEqual(len(r.json["data"]), 2)

    def fetch(self, url, headers=None):
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    # -- reconcile

    def test_reconcile_twice_and_resume(self):
        store = self.Store()
        srv = self.server(env=server_env(store))
        f = Fixtures(srv)
        rid = f.response(f.study, exp_data={"1-video-consent": {"frameType": "CONSENT"}})
        missed = video_name(f.study["uuid"], rid) + ".mp4"
        missed_consent = video_name(f.study["uuid"], rid, frame="1-video-consent") + ".webm"
        prefixed = video_name(f.study["uuid"], rid, frame="3-x", consent=True) + ".mp4"
        recorded = video_name(f.study["uuid"], rid, frame="4-y") + ".mp4"
        no_study = video_name(str(uuid.uuid4()), rid) + ".mp4"
        no_resp = video_name(f.study["uuid"], str(uuid.uuid4())) + ".mp4"
        for key in (missed, missed_consent, prefixed, recorded, no_study, no_resp,
                    "leftover123.jpg", "experiments/abc/index.html", "video-zips/x.zip"):
            store.put(key, b"v" * 10)
        f.add_video(f.study, rid, recorded)

        def run():
            r = self.ctl_run(srv, "reconcile_videos")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            m = re.search(r"task ([0-9a-f-]{36})", r.stdout)
            self.assertTrue(m, r.stdout)
            state, result, error = self.wait_task(m.group(1), srv)
            self.assertEqual(state, "succeeded", error)
            # It did its work, and a person should look at what it could
            # not place: the third outcome, with the problem said.
            outcome, problems = f.w.row("SELECT outcome, problems FROM tasks WHERE uuid = "
                                        + lit(m.group(1)))
            self.assertEqual(outcome, "succeeded_with_problems")
            self.assertIn("cannot place 3 objects", problems)
            return result

        res = run()
        self.assertEqual(res["recorded"], 3)
        self.assertEqual(res["listed"], 9)
        self.assertEqual(res["unplaced"], 3)
        for key in (missed, missed_consent, prefixed, recorded):
            self.assertIsNotNone(f.video_row(key), key)
        self.assertFalse(f.video_row(missed)["is_consent_footage"])
        self.assertTrue(f.video_row(missed_consent)["is_consent_footage"])   # from exp_data
        self.assertTrue(f.video_row(prefixed)["is_consent_footage"])         # from the prefix
        unplaced = dict(line.split("|", 1) for line in
                        f.w.sql("SELECT key, reason FROM video_unplaced").splitlines())
        self.assertEqual(set(unplaced), {no_study, no_resp, "leftover123.jpg"})
        self.assertIn("does not exist", unplaced[no_study])
        self.assertIn("not in study", unplaced[no_resp])
        self.assertIn("not a video name", unplaced["leftover123.jpg"])
        n = f.count_videos()
        # Again: nothing new, the same report.
        res = run()
        self.assertEqual((res["recorded"], res["unplaced"]), (0, 3))
        self.assertEqual(f.count_videos(), n)
        # A run that saved its progress goes on after its token.
        a = video_name(f.study["uuid"], rid, frame="5-a") + ".mp4"
        b = video_name(f.study["uuid"], rid, frame="6-b") + ".mp4"
        store.put(a, b"a")
        store.put(b, b"b")
        if store.name == "file":
            token = a   # the file backend's token is the last key listed
            t = f.w.row("INSERT INTO tasks (kind, subject, payload) VALUES ('reconcile_videos',"
                        f" 'videos', jsonb_build_object('token', {lit(token)}, 'pages', 1,"
                        " 'listed', 1, 'recorded', 0, 'unplaced', 0, 'run_started',"
                        " (now() - interval '1 minute')::text)) RETURNING uuid")[0]
            state, result, error = self.wait_task(t, srv)
            self.assertEqual(state, "succeeded", error)
            self.assertIsNone(f.video_row(a))     # before the token: not looked at
            self.assertIsNotNone(f.video_row(b))
        # A full run again finds what the resumed one skipped.
        res = run()
        self.assertEqual((res["recorded"], res["unplaced"]), (1 if store.name == "file" else 2, 3))

    def test_abort_stale_uploads(self):
        store = self.Store()
        srv = self.server(env=server_env(store))
        r = self.ctl_run(srv, "abort_stale_uploads")
        if store.name == "s3":
            # s3rver does not implement ListMultipartUploads: the run fails
            # and says why; the server goes on.
            self.assertIn("fail", (r.stdout + r.stderr).lower())
            self.assertStatus(srv.get("/healthz"), 200)
            return
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        up = os.path.join(store.dir, ".studyhub", "uploads")
        old, young = secrets.token_hex(16), secrets.token_hex(16)
        for uid, age in ((old, 2 * 86400), (young, 60)):
            os.makedirs(os.path.join(up, uid))
            p = os.path.join(up, uid, "key")
            with open(p, "w") as fh:
                fh.write("video-zips/partial.zip")
            t = time.time() - age
            os.utime(p, (t, t))
        r = self.ctl_run(srv, "abort_stale_uploads")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("aborted 1 ", r.stdout)
        self.assertFalse(os.path.exists(os.path.join(up, old)))
        self.assertTrue(os.path.exists(os.path.join(up, young)))

    # -- zips

    def zip_world(self, srv, f):
        """A study with videos: 3 of consented responses (one over a part
        size), consent footage of a consented response, one of a pending
        response and one preview.  Returns (study, {name: bytes}, names)."""
        study = f.study_for("Zip " + secrets.token_hex(3))
        acc = [f.response(study, consent="accepted") for _ in range(3)]
        pend = f.response(study)
        prev = f.response(study, preview=True)
        files, kinds = {}, {}
        sizes = [1000, 6 * 1024 * 1024 + 123, 0]
        for i, rid in enumerate(acc):
            name = video_name(study["uuid"], rid, frame=f"{i}-frame") + ".mp4"
            files[name] = os.urandom(sizes[i])
            kinds[name] = "acc"
        name = video_name(study["uuid"], acc[0], frame="0-video-consent") + ".mp4"
        files[name], kinds[name] = os.urandom(5000), "consent"
        name = video_name(study["uuid"], pend, frame="9-pending") + ".mp4"
        files[name], kinds[name] = os.urandom(700), "pending"
        name = video_name(study["uuid"], prev, frame="8-preview") + ".mp4"
        files[name], kinds[name] = os.urandom(900), "preview"
        for name, data in files.items():
            self.store.put(name, data)
            resp = name.split("_")[-3]
            f.add_video(study, resp, name, consent=kinds[name] == "consent")
        return study, files, kinds

    def mail_links(self, f, who, since_id):
        rows = f.w.sql(f"SELECT id, subject, body_text FROM mail_outbox WHERE id > {since_id}"
                       f" AND to_addr = {lit(who['email'])} AND kind = 'video_zip' ORDER BY id")
        return re.findall(r"(https?://\S+)", rows)

    def last_mail_id(self, f):
        return int(f.w.sql("SELECT coalesce(max(id), 0) FROM mail_outbox"))

    def request_zip(self, who, study, consent_only=None, srv=None):
        body = None if consent_only is None else {"consent_only": consent_only}
        return request((srv or self.srv).port, "POST",
                       f"/api/v1/studies/{study['uuid']}/video-zips/",
                       body=json.dumps(body) if body is not None else None,
                       headers={"Content-Type": "application/json", "Accept": JSONAPI},
                       token=who["token"])

    def check_zip(self, data, files, want):
        z = zipfile.ZipFile(io.BytesIO(data))
        self.assertIsNone(z.testzip())
        self.assertEqual(sorted(z.namelist()), sorted(want))
        for info in z.infolist():
            self.assertEqual(info.compress_type, zipfile.ZIP_STORED, info.filename)
            self.assertEqual(z.read(info), files[info.filename], info.filename)

    def test_zip_of_videos(self):
        f = self.f
        study, files, kinds = self.zip_world(self.srv, f)
        mark = self.last_mail_id(f)
        r = self.request_zip(f.member, study)
        self.assertStatus(r, 202)
        task = r.json["data"]["id"]
        self.assertEqual(r.json["data"]["attributes"]["videos"], 5)   # acc, consent, preview
        state, result, error = self.wait_task(task, timeout=120)
        self.assertEqual(state, "succeeded", error)
        self.assertFalse(result["reused"])
        self.assertTrue(result["key"].startswith(f"video-zips/{study['uuid']}_videos_"))
        want = [n for n, k in kinds.items() if k in ("acc", "consent", "preview")]
        digest = hashlib.sha256("".join(sorted(want)).encode()).hexdigest()
        self.assertEqual(result["key"], f"video-zips/{study['uuid']}_videos_{digest}.zip")
        links = self.mail_links(f, f.member, mark)
        self.assertEqual(len(links), 1)
        self.check_zip(self.fetch(links[0]), files, want)
        # Asked again: the same zip, a new link at once.
        mark = self.last_mail_id(f)
        r = self.request_zip(f.member, study)
        self.assertStatus(r, 202)
        state, result, error = self.wait_task(r.json["data"]["id"])
        self.assertEqual(state, "succeeded", error)
        self.assertTrue(result["reused"])
        links = self.mail_links(f, f.member, mark)
        self.assertEqual(len(links), 1)
        self.check_zip(self.fetch(links[0]), files, want)
        # Consent videos only, for the consent manager: with the pending
        # response's consent footage it may rule on (none here but ours).
        mark = self.last_mail_id(f)
        r = self.request_zip(f.labadmin, study, consent_only=True)
        self.assertStatus(r, 202)
        state, result, error = self.wait_task(r.json["data"]["id"])
        self.assertEqual(state, "succeeded", error)
        self.assertIn("_consent_videos_", result["key"])
        links = self.mail_links(f, f.labadmin, mark)
        self.check_zip(self.fetch(links[0]), files,
                       [n for n, k in kinds.items() if k == "consent"])
        # The previewer: only the preview video.
        mark = self.last_mail_id(f)
        r = self.request_zip(f.previewer, study)
        self.assertStatus(r, 202)
        self.assertEqual(r.json["data"]["attributes"]["videos"], 1)
        state, result, error = self.wait_task(r.json["data"]["id"])
        self.assertEqual(state, "succeeded", error)
        self.check_zip(self.fetch(self.mail_links(f, f.previewer, mark)[0]), files,
                       [n for n, k in kinds.items() if k == "preview"])

    def test_zip_denials_and_conflicts(self):
        f = self.f
        study, files, kinds = self.zip_world(self.srv, f)
        # Who sees the study but not its responses is refused; to a
        # stranger the study does not exist.
        self.assertStatus(self.request_zip(f.readonly, study), 403)
        self.assertStatus(self.request_zip(f.stranger, study), 404)
        self.assertStatus(self.request_zip(f.member, {"uuid": str(uuid.uuid4())}), 404)
        self.assertStatus(self.request_zip(f.member, {"uuid": "nope"}), 404)
        r = request(self.srv.port, "POST", f"/api/v1/studies/{study['uuid']}/video-zips/",
                    body="{}", headers={"Content-Type": "application/json"})
        self.assertStatus(r, 401)
        r = self.request_zip(f.member, study, consent_only="yes")
        self.assertStatus(r, 400)
        empty = f.study_for("Empty")
        r = self.request_zip(f.member, empty)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["code"], "no_videos")
        # One task per (study, kind, file set): on a web-only server (its
        # own database) the task stays queued, so the second request for
        # the same set meets the first; another set (consent only) does not.
        web = self.server(env=server_env(self.store, TASK_CONCURRENCY="0"))
        f2 = Fixtures(web)
        study2, _, _ = self.zip_world(web, f2)
        r1 = self.request_zip(f2.member, study2, srv=web)
        self.assertStatus(r1, 202)
        r2 = self.request_zip(f2.member, study2, srv=web)
        self.assertStatus(r2, 409)
        self.assertEqual(r2.json["errors"][0]["meta"]["task"], r1.json["data"]["id"])
        # The same set seen by another member of the lab is the same task.
        other = f2.w.user("member2", researcher=True)
        f2.w.member(f2.lab, other, "member")
        self.assertStatus(self.request_zip(other, study2, srv=web), 409)
        self.assertStatus(self.request_zip(f2.member, study2, consent_only=True, srv=web), 202)

    def test_zip_lists_missing_videos(self):
        f = self.f
        study = f.study_for("Missing " + secrets.token_hex(3))
        rid = f.response(study, consent="accepted")
        there = video_name(study["uuid"], rid, frame="a") + ".mp4"
        gone = video_name(study["uuid"], rid, frame="b") + ".mp4"
        self.store.put(there, b"here")
        f.add_video(study, rid, there)
        f.add_video(study, rid, gone)
        mark = self.last_mail_id(f)
        r = self.request_zip(f.member, study)
        self.assertStatus(r, 202)
        task = r.json["data"]["id"]
        state, result, error = self.wait_task(task)
        self.assertEqual(state, "succeeded", error)
        self.assertEqual(result["missing"], 1)
        # Succeeded with problems: in the table, `studyhubctl task show`
        # and /metrics (the zip was made on this server).
        self.assertEqual(f.w.row(f"SELECT outcome FROM tasks WHERE uuid = {lit(task)}")[0],
                         "succeeded_with_problems")
        shown = self.srv.ctl("task", "show", task)
        self.assertIn("outcome: succeeded_with_problems", shown.stdout)
        self.assertIn("problem: 1 videos missing from storage", shown.stdout)
        self.assertRegex(self.srv.get("/metrics").text,
                         r'(?m)^studyhub_tasks_finished_total\{outcome="succeeded_with_problems"\} [1-9]')
        z = zipfile.ZipFile(io.BytesIO(self.fetch(self.mail_links(f, f.member, mark)[0])))
        self.assertEqual(sorted(z.namelist()), sorted([there, "MISSING_VIDEOS.txt"]))
        self.assertEqual(z.read("MISSING_VIDEOS.txt").decode().split(), [gone])


class FileVideos(VideoCase):
    Store = FileStore

    def test_storage_links(self):
        """file:// objects behind signed links: bad and expired signatures,
        ranges, keys outside the storage."""
        f = self.f
        key = "links/" + secrets.token_hex(4) + ".mp4"
        data = os.urandom(10000)
        self.store.put(key, data)

        def link(k, expires):
            sig = hmac.new(LINK_SECRET.encode(), f"{k}\n{expires}".encode(),
                           hashlib.sha256).hexdigest()
            return f"/storage/{quote(k)}?expires={expires}&sig={sig}", sig
        path, sig = link(key, int(time.time()) + 60)
        r = self.srv.get(path)
        self.assertStatus(r, 200)
        self.assertEqual(r.body, data)
        self.assertEqual(r.headers["content-type"], "video/mp4")
        r = self.srv.get(path, headers={"Range": "bytes=10-19"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[10:20])
        self.assertEqual(r.headers["content-range"], f"bytes 10-19/{len(data)}")
        r = self.srv.get(path, headers={"Range": "bytes=-5"})
        self.assertEqual(r.body, data[-5:])
        self.assertStatus(self.srv.get(path, headers={"Range": "bytes=20000-"}), 416)
        self.assertStatus(self.srv.get(path.replace(sig, "0" * 64)), 403)
        self.assertStatus(self.srv.get(path.split("?")[0]), 403)
        old, _ = link(key, int(time.time()) - 1)
        r = self.srv.get(old)
        self.assertStatus(r, 403)
        self.assertEqual(r.json["errors"][0]["code"], "link_expired")
        missing, _ = link("links/none.mp4", int(time.time()) + 60)
        self.assertStatus(self.srv.get(missing), 404)
        got = {}
        for bad in ("../etc/passwd", ".studyhub/uploads/x"):
            p, _ = link(bad, int(time.time()) + 60)
            got[bad] = self.srv.get(p).status
        self.assertEqual(got, {"../etc/passwd": 404, ".studyhub/uploads/x": 404})

    def test_reconcile_pages(self):
        """More than one page of listing (1000 keys each), one statement per
        page, the counters carried from page to page in the task."""
        store = self.Store()
        srv = self.server(env=server_env(store))
        f = Fixtures(srv)
        rid = f.response(f.study)
        names = [f"videoStream_{f.study['uuid']}_{i:04d}-f_{rid}_1714572672123_{i}.mp4"
                 for i in range(2100)]
        for n in names:
            store.put(n, b"x")
        r = self.ctl_run(srv, "reconcile_videos")
        task = re.search(r"task ([0-9a-f-]{36})", r.stdout).group(1)
        state, result, error = self.wait_task(task, srv, timeout=120)
        self.assertEqual(state, "succeeded", error)
        self.assertEqual((result["pages"], result["listed"], result["recorded"]), (3, 2100, 2100))
        self.assertEqual(f.count_videos(), 2100)


@unittest.skipUnless(S3_ENDPOINT, "S3_TEST_ENDPOINT is not set (tools/test starts s3rver)")
class S3Videos(VideoCase):
    Store = S3Store


del VideoCase   # run through its subclasses only
