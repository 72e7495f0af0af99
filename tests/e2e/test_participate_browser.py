"""test_participate_browser: a family taking part (issue 14 points 4-7), in
headless chromium: find a study by age, pick a child (and see upstream's
eligibility warning), take part in a study built from the demo runner
(tests/runners/demo: the real runner's calls, R1-R4, a PATCH per frame,
the exit), land on past sessions with the researchers' feedback; axe-core
on every new page.  Then over plain HTTP: every refusal of the runner's
page (anonymous, another family's child, an inactive or unknown study,
malformed ids; no answer tells them apart), the sandbox CSP, the runner
key (only its routes, never a cookie, CORS preflight from the sandbox's
opaque origin), the preview behind two-factor, and external studies."""

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import unittest
import uuid
from urllib.parse import parse_qs, urlsplit

from apifixtures import World, hash_child_id
from browser import BrowserTestCase
from harness import JSONAPI, StudyhubTestCase, new_dir, request
from test_videos import S3_ENDPOINT, S3Store

from test_accounts import PASSWORD

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_RUNNER = os.path.join(HERE, "..", "..", "static", "runners", "demo")

STRUCTURE = {
    "frames": {
        "intro": {"kind": "exp-lookit-text", "title": "Welcome",
                  "blocks": [{"text": "Hello {{child}}, let us look at cats."}]},
        "end": {"kind": "exp-lookit-exit-survey", "title": "All done"},
    },
    "sequence": ["intro", "end"],
}


class ParticipateBrowserTest(BrowserTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"MAIL_DIR": new_dir("mail")})
        cls.w = World(cls.srv)
        # One password hash made by the server (sign-up), shared by the
        # fixture families so they can log in through the page.
        email = f"hash-{secrets.token_hex(4)}@example.test"
        r = cls.srv.post("/api/v1/accounts/signup/",
                         json_body={"email": email, "password": PASSWORD})
        assert r.status == 201, r.body
        cls.pw_hash = cls.w.sql(f"SELECT password_hash FROM users WHERE email = '{email}'")
        cls.lab = cls.w.lab("Cats lab")
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    # -- fixtures

    def family(self, name, age_days=400):
        u = self.w.user(name)
        self.w.sql(f"UPDATE users SET password_hash = '{self.pw_hash}' WHERE id = {u['id']}")
        u["child"] = self.w.child(u, name="Sally" if age_days < 1000 else "Max",
                                  age_days=age_days)
        return u

    def built_study(self, name, folder="experiments", **cols):
        cols.setdefault("structure", STRUCTURE)
        cols.setdefault("exit_url", "")
        cols.setdefault("built", True)
        s = self.w.study(self.lab, name=f"{name} {secrets.token_hex(3)}",
                         short_description=f"A short study: {name}.", duration="5 minutes",
                         **cols)
        self.build(s, folder)
        return s

    def build(self, study, folder):
        """The demo runner's build.sh, as the builder runs it, straight into
        the server's file:// storage."""
        out = os.path.join(self.srv.dir, "var", "storage", folder, study["uuid"])
        os.makedirs(out, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "CHECKOUT_DIR": DEMO_RUNNER,
               "PREPEND_FINGERPRINT": f"/studies/{study['uuid']}/", "STUDY_OUTPUT_DIR": out}
        scratch = os.path.join(self.srv.dir, "scratch-" + study["uuid"])
        subprocess.run(["cp", "-R", DEMO_RUNNER, scratch], check=True)
        env["CHECKOUT_DIR"] = scratch
        subprocess.run([os.path.join(scratch, "build.sh")], env=env, check=True,
                       capture_output=True)

    def log_in(self, user):
        self.open("/login/")
        self.fill("Email address", user["email"])
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_until(lambda: "/login/" not in self.browser.current_url, "the login")

    def session(self, user):
        c = self.srv.client()
        r = c.post("/api/v1/auth/login/", json_body={"email": user["email"], "password": PASSWORD})
        self.assertStatus(r, 200)
        return c

    def path(self):
        return re.sub(r"^https?://[^/]+", "", self.browser.current_url)

    # -- the journey

    def test_find_study_by_age_take_part_and_see_feedback(self):
        fam = self.family("fam")
        study = self.built_study("Cats")
        older = self.built_study("Big kids", min_age_months=0, min_age_years=5, max_age_years=7)
        self.log_in(fam)

        self.open("/studies/")
        self.assertAccessible("studies")
        self.fill("Show studies for a child aged", "540")   # 1 to 2 years
        self.wait_until(lambda: older["uuid"] in self.browser.page_source, "every study")
        self.press("Show studies")
        # The list is redrawn for the age: the older children's study goes.
        self.wait_until(lambda: older["uuid"] not in self.browser.page_source, "the age filter")
        self.assertIn("age=540", self.browser.current_url)
        names = [a.text for a in self.browser.find_elements("xpath", "//ul[@id='studies']//h2/a")]
        mine = next(n for n in names if n.startswith("Cats"))
        self.link(mine).click()

        self.wait_path(f"/studies/{study['uuid']}/")
        self.wait_until(lambda: self.visible("//button[normalize-space()='Take part now']"),
                        "the child picker")
        self.assertAccessible("study detail")
        self.assertTrue(self.field("Sally").is_selected())
        self.assertIsNone(self.visible("//*[@id='warning']"), "an eligible child gets no warning")
        self.press("Take part now")

        # The runner (sandboxed, on its own opaque origin) takes over.
        self.wait_path(f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        self.wait_until(lambda: self.heading() == "Welcome", "the first frame")
        self.assertIn("Hello Sally, let us look at cats.", self.browser.page_source)
        response = self.browser.find_element("tag name", "body").get_attribute("data-response")
        self.press("Next")
        self.wait_until(lambda: self.heading() == "All done", "the last frame")
        self.press("Finish")

        # The exit: past sessions with the hashed child id and the response.
        self.wait_path("/studies/history/")
        q = parse_qs(urlsplit(self.browser.current_url).query)
        self.assertEqual(q["response"], [response])
        self.assertEqual(q["child"], [hash_child_id(fam["child"]["uuid"], study["uuid"],
                                                    study["salt"], study["hash_digits"])])
        row = self.w.response_row(response)
        self.assertTrue(row["completed"])
        self.assertEqual(set(row["exp_data"]), {"intro", "end"})
        self.assertEqual(row["sequence"], ["intro", "end"])
        self.assertFalse(row["is_preview"])
        self.assertEqual(row["child_id"], fam["child"]["id"])

        # A researcher writes feedback; the family reads it there.
        self.w.sql(f"INSERT INTO feedback (response_id, comment) SELECT id,"
                   f" 'Thank you, Sally loved the cats!' FROM responses WHERE uuid = '{response}'")
        self.open("/studies/history/")
        self.wait_until(lambda: "Thank you, Sally loved the cats!" in self.browser.page_source,
                        "the feedback")
        self.assertIn(mine, self.browser.page_source)
        self.assertAccessible("past sessions")

    def test_eligibility_warning_for_a_child_too_old(self):
        fam = self.family("old", age_days=2000)
        study = self.built_study("Babies")
        self.log_in(fam)
        self.open(f"/studies/{study['uuid']}/")
        warning = self.wait_until(lambda: self.visible("//*[@id='warning']"), "the warning")
        self.assertIn("Max is older than the children this study is for", warning.text)
        self.assertAccessible("study detail with a warning")

    def test_anonymous_visitor_sees_studies_and_is_asked_to_log_in(self):
        study = self.built_study("Open")
        self.open("/studies/")
        self.wait_until(lambda: study["uuid"] in self.browser.page_source, "the study link")
        self.open(f"/studies/{study['uuid']}/")
        self.link("create an account")
        self.assertAccessible("study detail, anonymous")
        fam = self.family("anon")
        self.browser.get(self.srv.base + f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        self.wait_path("/login/")
        self.assertIn("next=", self.browser.current_url)

    def test_expired_session_on_runner_pages_goes_to_log_in(self):
        """A session that ended (as Redis forgets it) on the runner's page
        or the preview: the browser is sent to log in and comes back, or
        reads why it cannot; never the gate's JSON."""
        fam = self.family("expired")
        study = self.built_study("Expired")
        page = f"/studies/{study['uuid']}/{fam['child']['uuid']}/"
        self.log_in(fam)
        sid = self.cookie("sessionid")
        self.assertTrue(sid)
        # What the server sees once a session expired: an id it no longer knows.
        self.browser.delete_cookie("sessionid")
        self.browser.add_cookie({"name": "sessionid", "value": secrets.token_hex(len(sid) // 2),
                                 "path": "/"})
        self.browser.get(self.srv.base + page + "frames/1")
        self.wait_path("/login/")
        self.assertEqual(parse_qs(urlsplit(self.browser.current_url).query)["next"],
                         [page + "frames/1"])
        self.assertNotIn('"errors"', self.browser.page_source)
        self.fill("Email address", fam["email"])
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_path(page + "frames/1")
        self.wait_until(lambda: self.heading() == "Welcome", "the runner, after logging in")

        # The preview: anonymous goes to log in; a family without two-factor
        # reads why it cannot, as a page.
        prev = f"/exp/studies/{study['uuid']}/{fam['child']['uuid']}/preview/"
        self.browser.get(self.srv.base + prev)
        self.wait_until(lambda: "two-factor" in self.browser.page_source, "the refusal page")
        self.assertNotIn('"errors"', self.browser.page_source)
        self.assertEqual(self.heading(), "This needs your two-factor code")
        self.assertAccessible("two-factor refusal")
        self.browser.delete_all_cookies()
        self.browser.get(self.srv.base + prev)
        self.wait_path("/login/")
        self.assertIn("next=/exp/studies/", self.browser.current_url)
        # An API client still gets the JSON 401.
        self.assertStatus(request(self.srv.port, "GET", prev, headers={"Accept": JSONAPI}), 401)

    # -- refusals over HTTP

    def test_refusals_tell_nothing(self):
        fam = self.family("ref")
        other = self.family("other")
        study = self.built_study("Refusals")
        paused = self.built_study("Paused", state="paused")
        c = self.session(fam)
        html = {"Accept": "text/html"}

        ok = c.get(f"/studies/{study['uuid']}/{fam['child']['uuid']}/", headers=html)
        self.assertStatus(ok, 200)
        csp = ok.headers.get("content-security-policy")
        self.assertIn("sandbox allow-scripts", csp)
        self.assertNotIn("allow-same-origin", csp)
        self.assertIn(b'name="studyhub-runner"', ok.body)
        # Deep paths get the same page.
        deep = c.get(f"/studies/{study['uuid']}/{fam['child']['uuid']}/frames/2", headers=html)
        self.assertStatus(deep, 200)
        self.assertIn(b"runner-1.js", deep.body)

        refused = [
            f"/studies/{study['uuid']}/{other['child']['uuid']}/",    # another family's child
            f"/studies/{paused['uuid']}/{fam['child']['uuid']}/",     # not active
            f"/studies/{uuid.uuid4()}/{fam['child']['uuid']}/",       # unknown study
            f"/studies/{study['uuid']}/{uuid.uuid4()}/",              # unknown child
        ]
        bodies = set()
        for path in refused:
            r = c.get(path, headers=html)
            self.assertStatus(r, 404)
            self.assertTrue(r.headers.get("content-type").startswith("text/html"), path)
            bodies.add(r.body)
        self.assertEqual(len(bodies), 1, "every refusal reads the same")
        self.assertStatus(c.get("/studies/not-a-uuid/x/", headers=html), 404)

        anon = request(self.srv.port, "GET", f"/studies/{study['uuid']}/{fam['child']['uuid']}/",
                       headers=html)
        self.assertStatus(anon, 302)
        self.assertTrue(anon.headers.get("location").startswith("/login/?next=/studies/"))

        # Assets of the build: public, sandboxed too; nothing outside it.
        a = request(self.srv.port, "GET", f"/studies/{study['uuid']}/assets/runner-1.js")
        self.assertStatus(a, 200)
        self.assertIn("sandbox", a.headers.get("content-security-policy"))
        self.assertStatus(request(self.srv.port, "GET",
                                  f"/studies/{study['uuid']}/assets/nope.js"), 404)
        self.assertStatus(request(self.srv.port, "GET",
                                  f"/studies/{study['uuid']}/../../secret"), 404)

        # Eligibility and discovery: active studies only.
        self.assertStatus(c.get(f"/api/v1/studies/{paused['uuid']}/eligibility/",
                                headers={"Accept": JSONAPI}), 404)
        e = c.get(f"/api/v1/studies/{study['uuid']}/eligibility/", headers={"Accept": JSONAPI})
        self.assertStatus(e, 200)
        self.assertEqual([d["id"] for d in e.json["data"]], [fam["child"]["uuid"]])
        self.assertTrue(e.json["data"][0]["attributes"]["eligible"])
        d = request(self.srv.port, "GET", "/api/v1/discover/?page_size=100")
        ids = [s["id"] for s in d.json["data"]]
        self.assertIn(study["uuid"], ids)
        self.assertNotIn(paused["uuid"], ids)
        self.assertStatus(request(self.srv.port, "GET", "/api/v1/discover/?age_days=x"),
                          400)
        self.assertStatus(request(self.srv.port, "GET", f"/api/v1/discover/{paused['uuid']}/"), 404)

    def test_runner_key(self):
        fam = self.family("key")
        study = self.built_study("Key")
        c = self.session(fam)
        page = c.get(f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        key = re.search(rb'name="studyhub-runner" content="([0-9a-f]{64}) ', page.body).group(1)
        runner = {"Authorization": "Runner " + key.decode(), "Origin": "null", "Accept": JSONAPI}

        pre = request(self.srv.port, "OPTIONS", "/api/v1/responses/",
                      headers={"Origin": "null", "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "authorization,content-type"})
        self.assertStatus(pre, 204)
        self.assertEqual(pre.headers.get("access-control-allow-origin"), "*")
        self.assertIn("Authorization", pre.headers.get("access-control-allow-headers"))

        r = request(self.srv.port, "GET", f"/api/v1/children/{fam['child']['uuid']}/",
                    headers=runner)
        self.assertStatus(r, 200)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*")
        body = {"data": {"type": "responses", "attributes": {"exp_data": {}},
                         "relationships": {
                             "child": {"data": {"type": "children", "id": fam["child"]["uuid"]}},
                             "study": {"data": {"type": "studies", "id": study["uuid"]}}}}}
        made = request(self.srv.port, "POST", "/api/v1/responses/", body=json.dumps(body),
                       headers=dict(runner, **{"Content-Type": JSONAPI}))
        self.assertStatus(made, 201)     # no CSRF token: the key is no cookie
        # Only the runner's routes, and never research data.
        self.assertStatus(request(self.srv.port, "GET", "/api/v1/accounts/me/", headers=runner),
                          401)
        self.assertStatus(request(self.srv.port, "GET", "/api/v1/users/", headers=runner), 401)
        bad = dict(runner, Authorization="Runner " + "0" * 64)
        self.assertStatus(request(self.srv.port, "GET", "/api/v1/children/", headers=bad), 401)
        self.assertStatus(request(self.srv.port, "GET", "/api/v1/children/",
                                  headers=dict(runner, Authorization="Runner short")), 401)

    def test_cached_key_and_folder_follow_the_study(self):
        """A reload gets the key it was given (kept a minute), and any
        change of the study is seen at once: the page and its assets are
        refused as soon as the study is paused, and a new key comes after."""
        fam = self.family("cache")
        study = self.built_study("Cached")
        c = self.session(fam)
        page = f"/studies/{study['uuid']}/{fam['child']['uuid']}/"
        asset = f"/studies/{study['uuid']}/assets/runner-1.js"
        key = re.compile(rb'name="studyhub-runner" content="([0-9a-f]{64}) ')

        first = key.search(c.get(page).body).group(1)
        self.assertEqual(key.search(c.get(page + "frames/2").body).group(1), first)
        self.assertStatus(request(self.srv.port, "GET", asset), 200)

        self.w.sql(f"UPDATE studies SET state = 'paused' WHERE id = {study['id']}")
        self.assertStatus(c.get(page), 404)
        self.assertStatus(request(self.srv.port, "GET", asset), 404)

        # A rebuild writes its files, then settles the study's row: the
        # page kept in memory goes with that change.
        index = os.path.join(self.srv.dir, "var", "storage", "experiments", study["uuid"],
                             "index.html")
        with open(index, "rb") as f:
            html = f.read()
        with open(index, "wb") as f:
            f.write(html.replace(b"</head>", b"<!-- rebuilt --></head>", 1))
        self.w.sql(f"UPDATE studies SET state = 'active' WHERE id = {study['id']}")
        again = c.get(page)
        self.assertStatus(again, 200)
        self.assertIn(b"<!-- rebuilt -->", again.body)
        self.assertNotEqual(key.search(again.body).group(1), first)
        self.assertStatus(request(self.srv.port, "GET", asset), 200)

    def test_preview_needs_two_factor_and_permission(self):
        researcher = self.w.user("res", researcher=True)     # token: two-factor verified
        self.w.member(self.lab, researcher, "admin")
        kid = self.w.child(researcher, name="Kim")
        study = self.built_study("Preview", folder="preview_experiments", state="created",
                                 built=False)
        self.w.study_member(study, researcher, "admin")
        path = f"/exp/studies/{study['uuid']}/{kid['uuid']}/preview/"
        r = request(self.srv.port, "GET", path, token=researcher["token"])
        self.assertStatus(r, 200)
        self.assertIn(b' 1">', r.body)          # is_preview for the runner
        self.assertIn("sandbox", r.headers.get("content-security-policy"))
        self.assertStatus(request(self.srv.port, "GET", path + "deep/path",
                                  token=researcher["token"]), 200)
        # A family (no permission, no two-factor) and anonymous are refused.
        fam = self.family("prev")
        c = self.session(fam)
        self.assertIn(c.get(f"/exp/studies/{study['uuid']}/{fam['child']['uuid']}/preview/").status,
                      (403, 404))
        self.assertStatus(request(self.srv.port, "GET", path), 401)
        # The participant URL of a study that is not active: refused.
        self.assertStatus(request(self.srv.port, "GET", f"/studies/{study['uuid']}/{kid['uuid']}/",
                                  token=researcher["token"]), 404)

    def test_external_study(self):
        fam = self.family("ext")
        study = self.w.study(self.lab, name="Elsewhere " + secrets.token_hex(3), study_type=2,
                             metadata={"url": "https://elsewhere.example/study?lang=en"})
        c = self.session(fam)
        r = c.get(f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        self.assertStatus(r, 302)
        loc = urlsplit(r.headers.get("location"))
        self.assertEqual((loc.scheme, loc.netloc, loc.path), ("https", "elsewhere.example", "/study"))
        q = parse_qs(loc.query)
        self.assertEqual(q["lang"], ["en"])
        self.assertEqual(q["child"], [hash_child_id(fam["child"]["uuid"], study["uuid"],
                                                    study["salt"], study["hash_digits"])])
        row = self.w.response_row(q["response"][0])
        self.assertEqual(row["child_id"], fam["child"]["id"])
        self.assertEqual(row["study_id"], study["id"])
        # It shows in past sessions.
        h = c.get("/api/v1/history/", headers={"Accept": JSONAPI})
        self.assertEqual([d["id"] for d in h.json["data"]], q["response"])

    def test_jspsych_study_in_the_browser(self):
        fam = self.family("jsp")
        study = self.w.study(self.lab, name="Pick " + secrets.token_hex(3), study_type=3,
                             exit_url="", structure={"timeline": [
                                 {"type": "html-button-response",
                                  "stimulus": "<p>Which one is a cat?</p>",
                                  "choices": ["Cat", "Dog"]},
                                 {"type": "html-button-response",
                                  "stimulus": "<p>Thank you!</p>", "choices": ["Finish"]}]})
        self.log_in(fam)
        self.open(f"/studies/{study['uuid']}/")
        self.wait_until(lambda: self.visible("//button[normalize-space()='Take part now']"),
                        "the child picker")
        self.press("Take part now")
        self.wait_path(f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        self.wait_until(lambda: "Which one is a cat?" in self.browser.page_source, "the first trial")
        self.assertAccessible("jsPsych study")
        response = self.browser.find_element("tag name", "body").get_attribute("data-response")
        self.press("Cat")
        self.wait_until(lambda: "Thank you!" in self.browser.page_source, "the second trial")
        self.press("Finish")
        self.wait_path("/studies/history/")
        self.assertEqual(parse_qs(urlsplit(self.browser.current_url).query)["response"],
                         [response])
        row = self.w.response_row(response)
        self.assertTrue(row["completed"])
        self.assertEqual(len(row["exp_data"]), 2)
        self.assertEqual(row["exp_data"][0]["response"], 0)      # the first button: Cat

    def test_studies_with_no_build_can_be_activated(self):
        researcher = self.w.user("act", researcher=True)
        self.w.member(self.lab, researcher, "admin")
        for study_type in (2, 3):
            s = self.w.study(self.lab, name="No build", state="approved", study_type=study_type)
            self.w.study_member(s, researcher, "admin")
            r = self.w.api(researcher, "POST", f"/api/v1/studies/{s['uuid']}/transitions/",
                           {"trigger": "activate"})
            self.assertStatus(r, 200)
            self.assertEqual(self.w.sql(f"SELECT state FROM studies WHERE id = {s['id']}"),
                             "active")
        # A frame-player study still needs its build.
        s = self.w.study(self.lab, name="Needs build", state="approved", study_type=1)
        self.w.study_member(s, researcher, "admin")
        r = self.w.api(researcher, "POST", f"/api/v1/studies/{s['uuid']}/transitions/",
                       {"trigger": "activate"})
        self.assertEqual(r.status, 409, r.body)

    def test_demo_seed_installs_the_demo_runner(self):
        out = self.srv.ctl("seed-demo")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("demo runner    installed", out.stdout)
        study = re.search(r"participate\s+\S+/studies/([0-9a-f-]{36})/", out.stdout).group(1)
        page = request(self.srv.port, "GET", f"/studies/{study}/assets/runner-1.js")
        self.assertStatus(page, 200)
        self.assertIn(b"Authorization", page.body)
        index = os.path.join(self.srv.dir, "var", "storage", "experiments", study, "index.html")
        with open(index, encoding="utf-8") as f:
            self.assertIn(f"/studies/{study}/assets/runner-1.js", f.read())


@unittest.skipUnless(S3_ENDPOINT, "S3_TEST_ENDPOINT is not set (tools/test starts s3rver)")
class ParticipateS3Test(StudyhubTestCase):
    """A build kept on s3:// (s3rver): its assets are streamed from the
    bucket, whatever their size (more than the 16 MiB a whole read once
    allowed), with their type, ETag and 304, a year's caching for
    fingerprinted names, and a client that reads slowly holds up nothing."""

    BIG = 17 * 1024 * 1024 + 123

    @classmethod
    def setUpClass(cls):
        cls.store = S3Store()
        cls.srv = cls.class_server(env=cls.store.env())
        cls.w = World(cls.srv)
        cls.lab = cls.w.lab("Bucket lab")

    def study_in_bucket(self):
        s = self.w.study(self.lab, name=f"Bucket {secrets.token_hex(3)}", built=True,
                         structure=STRUCTURE, exit_url="")
        pre = f"experiments/{s['uuid']}/"
        self.store.put(pre + "index.html",
                       b"<!doctype html><html><head><title>r</title></head><body></body></html>")
        return s, pre

    def test_large_fingerprinted_asset_is_streamed(self):
        study, pre = self.study_in_bucket()
        big = (hashlib.sha256(b"seed").digest() * (self.BIG // 32 + 1))[:self.BIG]
        name = "assets/vendor-0123456789abcdef0123456789abcdef.js"
        self.store.put(pre + name, big)
        path = f"/studies/{study['uuid']}/{name}"

        r = request(self.srv.port, "GET", path, timeout=120)
        self.assertStatus(r, 200)
        self.assertEqual(len(r.body), self.BIG)
        self.assertEqual(hashlib.sha256(r.body).digest(), hashlib.sha256(big).digest())
        self.assertEqual(r.headers.get("transfer-encoding"), "chunked")
        self.assertTrue(r.headers.get("content-type").startswith("text/javascript")
                        or r.headers.get("content-type").startswith("application/javascript"),
                        r.headers.get("content-type"))
        self.assertEqual(r.headers.get("cache-control"), "public, max-age=31536000, immutable")
        self.assertIn("sandbox", r.headers.get("content-security-policy"))
        etag = r.headers.get("etag")
        self.assertTrue(etag and etag.startswith('"'), etag)

        again = request(self.srv.port, "GET", path, headers={"If-None-Match": etag})
        self.assertStatus(again, 304)
        self.assertEqual(again.body, b"")
        self.assertEqual(again.headers.get("etag"), etag)

    def test_small_asset_and_page_and_missing(self):
        study, pre = self.study_in_bucket()
        self.store.put(pre + "assets/runner-1.css", b"body{color:red}")
        r = request(self.srv.port, "GET", f"/studies/{study['uuid']}/assets/runner-1.css")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"body{color:red}")
        self.assertTrue(r.headers.get("content-type").startswith("text/css"))
        self.assertEqual(r.headers.get("cache-control"), "private, max-age=3600")
        self.assertStatus(request(self.srv.port, "GET",
                                  f"/studies/{study['uuid']}/assets/nope.js"), 404)
        # The page itself (read whole: the key goes into it) still works.
        fam = self.w.user("bucketfam")
        kid = self.w.child(fam, name="Bo")
        page = request(self.srv.port, "GET", f"/studies/{study['uuid']}/{kid['uuid']}/",
                       token=fam["token"])
        self.assertStatus(page, 200)
        self.assertIn(b'name="studyhub-runner"', page.body)

    def test_slow_reader_holds_up_nothing(self):
        study, pre = self.study_in_bucket()
        big = secrets.token_bytes(8 * 1024 * 1024)
        self.store.put(pre + "assets/big.bin", big)
        sock = socket.create_connection(("127.0.0.1", self.srv.port), timeout=120)
        self.addCleanup(sock.close)
        sock.sendall(f"GET /studies/{study['uuid']}/assets/big.bin HTTP/1.1\r\n"
                     "Host: x\r\nConnection: close\r\n\r\n".encode())
        first = sock.recv(65536)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:100])
        # While this client reads nothing more, others are served.
        for _ in range(3):
            self.assertStatus(request(self.srv.port, "GET", "/healthz"), 200)
        data = bytearray(first)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        self.assertIn(b"chunked", head.lower())
        out = bytearray()
        while True:                         # de-chunk
            line, _, body = body.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                break
            out += body[:n]
            body = body[n + 2:]
        self.assertEqual(hashlib.sha256(out).digest(), hashlib.sha256(big).digest())
