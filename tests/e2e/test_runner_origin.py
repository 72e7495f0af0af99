"""test_runner_origin: the runner on a host of its own (RUNNER_BASE_URL,
issue 14).  The unchanged upstream runner reads a csrftoken cookie and
relies on a session cookie; here the site hands the family's runner key to
the runner's host through a one-time code, that host sets its own cookies
and serves the page unsandboxed, and answers the runner and nothing else.

The site is http://127.0.0.1:PORT and the runner's host http://localhost:PORT:
the same server, told apart by the Host header (cookies are kept per host
name, so these are two cookie jars for a browser)."""

import hashlib
import json
import os
import re
import secrets
import subprocess
from urllib.parse import parse_qs, urlsplit

from apifixtures import World
from browser import BrowserTestCase
from harness import (JSONAPI, REDIS_PASSWORD, REDIS_PORT, StudyhubTestCase, free_port,
                     redis_command, request)

from test_accounts import PASSWORD

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_RUNNER = os.path.join(HERE, "..", "..", "static", "runners", "demo")
COOKIE_RUNNER = os.path.join(HERE, "..", "runners", "cookie")


class OriginFixtures:
    """The server with a runner host, and the fixtures both classes use."""

    @classmethod
    def origin_server(cls):
        port = free_port()
        cls.runner_host = f"localhost:{port}"
        cls.srv = cls.class_server(env={"LISTEN_PORT": str(port),
                                        "RUNNER_BASE_URL": f"http://{cls.runner_host}"})
        cls.w = World(cls.srv)
        email = f"hash-{secrets.token_hex(4)}@example.test"
        r = cls.srv.post("/api/v1/accounts/signup/",
                         json_body={"email": email, "password": PASSWORD})
        assert r.status == 201, r.body
        cls.pw_hash = cls.w.sql(f"SELECT password_hash FROM users WHERE email = '{email}'")
        cls.lab = cls.w.lab("Origin lab")

    # -- fixtures

    def family(self, name):
        u = self.w.user(name)
        self.w.sql(f"UPDATE users SET password_hash = '{self.pw_hash}' WHERE id = {u['id']}")
        u["child"] = self.w.child(u, name="Sally", age_days=400)
        return u

    def built_study(self, runner=DEMO_RUNNER):
        s = self.w.study(self.lab, name=f"Origin {secrets.token_hex(3)}", exit_url="",
                         built=True, structure={"frames": {}, "sequence": []})
        out = os.path.join(self.srv.dir, "var", "storage", "experiments", s["uuid"])
        os.makedirs(out, exist_ok=True)
        scratch = os.path.join(self.srv.dir, "scratch-" + s["uuid"])
        subprocess.run(["cp", "-R", runner, scratch], check=True)
        env = {"PATH": "/usr/bin:/bin", "CHECKOUT_DIR": scratch,
               "PREPEND_FINGERPRINT": f"/studies/{s['uuid']}/", "STUDY_OUTPUT_DIR": out}
        subprocess.run([os.path.join(scratch, "build.sh")], env=env, check=True,
                       capture_output=True)
        return s

    def session(self, user):
        c = self.srv.client()
        r = c.post("/api/v1/auth/login/", json_body={"email": user["email"], "password": PASSWORD})
        self.assertStatus(r, 200)
        return c

    def on_runner(self, method, path, cookies=None, headers=None, **kw):
        """A request to the runner's host."""
        h = {"Host": self.runner_host}
        h.update(headers or {})
        return request(self.srv.port, method, path, cookies=cookies, headers=h, **kw)

    @staticmethod
    def jar(resp):
        """name -> (value, attributes) of the response's Set-Cookie headers."""
        out = {}
        for c in resp.set_cookies:
            pair, _, attrs = c.partition(";")
            name, _, value = pair.partition("=")
            out[name.strip()] = (value.strip(), attrs)
        return out

    def hand_off(self, fam, study):
        """The site's page, the code, the runner host's cookies: returns
        (cookies for the runner host, the page's path)."""
        c = self.session(fam)
        path = f"/studies/{study['uuid']}/{fam['child']['uuid']}/"
        r = c.get(path)
        self.assertStatus(r, 303)
        loc = urlsplit(r.headers["location"])
        self.assertEqual(f"{loc.scheme}://{loc.netloc}", f"http://{self.runner_host}")
        self.assertEqual(loc.path, path)
        code = parse_qs(loc.query)["handoff"][0]
        self.assertRegex(code, r"^[0-9a-f]{64}$")
        # The site gave no page and no key to this origin.
        self.assertNotIn(b"studyhub-runner", r.body)
        took = self.on_runner("GET", f"{path}?handoff={code}")
        self.assertStatus(took, 303)
        self.assertEqual(took.headers["location"], path)     # the code is gone from the URL
        jar = self.jar(took)
        key, attrs = jar["sessionid"]
        self.assertRegex(key, r"^[0-9a-f]{64}$")
        self.assertIn("HttpOnly", attrs)
        self.assertIn("SameSite=Lax", attrs)
        self.assertNotIn("Domain", attrs)                      # this host only
        csrf, attrs = jar["csrftoken"]
        self.assertNotIn("HttpOnly", attrs)                     # the runner reads it
        # The code is good once.
        again = self.on_runner("GET", f"{path}?handoff={code}", headers={"Accept": "text/html"})
        self.assertStatus(again, 403)
        self.assertIn(b"This link has expired", again.body)
        return {"sessionid": key, "csrftoken": csrf}, path


class RunnerOriginTest(OriginFixtures, StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.origin_server()

    def test_hand_off_then_the_runner_works_with_its_cookies(self):
        fam = self.family("origin")
        study = self.built_study()
        cookies, path = self.hand_off(fam, study)

        page = self.on_runner("GET", path, cookies=cookies)
        self.assertStatus(page, 200)
        self.assertIn(b"studyhub-runner", page.body)
        self.assertIn(cookies["sessionid"].encode(), page.body)
        csp = page.headers["content-security-policy"]
        self.assertNotIn("sandbox", csp)              # the runner reads its cookies
        self.assertIn("frame-ancestors 'none'", csp)
        # A deep path of the page, and an asset of the build, on this host.
        self.assertStatus(self.on_runner("GET", path + "frame/2/", cookies=cookies), 200)
        asset = re.search(rb'src="(/studies/[^"]+\.js)"', page.body)
        if asset:
            self.assertStatus(self.on_runner("GET", asset.group(1).decode()), 200)

        # The runner's API with the cookie, as the upstream runner calls it:
        # writes carry X-CSRFToken equal to the csrftoken cookie.
        child = self.on_runner("GET", f"/api/v1/children/{fam['child']['uuid']}/",
                               cookies=cookies, headers={"Accept": JSONAPI})
        self.assertStatus(child, 200)
        body = json.dumps({"data": {"type": "responses", "attributes": {"exp_data": {}},
                                    "relationships": {
                                        "child": {"data": {"type": "children",
                                                           "id": fam["child"]["uuid"]}},
                                        "study": {"data": {"type": "studies",
                                                           "id": study["uuid"]}}}}})
        hdrs = {"Content-Type": JSONAPI, "Accept": JSONAPI}
        no_csrf = self.on_runner("POST", "/api/v1/responses/", cookies=cookies, body=body,
                                 headers=hdrs)
        self.assertStatus(no_csrf, 403)
        self.assertIn("CSRF", no_csrf.json["errors"][0]["detail"])
        made = self.on_runner("POST", "/api/v1/responses/", cookies=cookies, body=body,
                              headers=dict(hdrs, **{"X-CSRFToken": cookies["csrftoken"]}))
        self.assertStatus(made, 201)
        rid = made.json["data"]["id"]
        patch = json.dumps({"data": {"type": "responses", "id": rid,
                                     "attributes": {"completed": True,
                                                    "exp_data": {"0-x": {"a": 1}}}}})
        patched = self.on_runner("PATCH", f"/api/v1/responses/{rid}/", cookies=cookies,
                                 body=patch,
                                 headers=dict(hdrs, **{"X-CSRFToken": cookies["csrftoken"]}))
        self.assertStatus(patched, 200)
        self.assertEqual(self.w.sql(f"SELECT completed FROM responses WHERE uuid = '{rid}'"),
                         "t")

    def test_the_runner_host_answers_the_runner_and_nothing_else(self):
        fam = self.family("nothing-else")
        study = self.built_study()
        cookies, path = self.hand_off(fam, study)

        # The site's pages and API go back to the site (GET) or are refused.
        r = self.on_runner("GET", "/studies/history/?x=1", cookies=cookies)
        self.assertStatus(r, 302)
        self.assertEqual(r.headers["location"],
                         f"http://127.0.0.1:{self.srv.port}/studies/history/?x=1")
        r = self.on_runner("GET", "/no/such/page/", cookies=cookies)
        self.assertStatus(r, 302)
        self.assertStatus(self.on_runner("POST", "/api/v1/auth/login/", json_body={
            "email": fam["email"], "password": PASSWORD}), 404)
        self.assertStatus(self.on_runner("GET", "/api/v1/accounts/me/", cookies=cookies), 302)
        # The runner key is no session: not on the site, not as a token.
        r = request(self.srv.port, "GET", "/api/v1/accounts/me/",
                    cookies={"sessionid": cookies["sessionid"]})
        self.assertStatus(r, 401)
        # The site's own session cookie means nothing on the runner's host,
        # and API tokens are refused there.
        site = self.session(fam)
        r = self.on_runner("GET", f"/api/v1/children/{fam['child']['uuid']}/",
                           cookies={"sessionid": site.cookies["sessionid"]},
                           headers={"Accept": JSONAPI})
        self.assertStatus(r, 401)
        r = self.on_runner("GET", f"/api/v1/children/{fam['child']['uuid']}/",
                           headers={"Authorization": fam["token"], "Accept": JSONAPI})
        self.assertStatus(r, 401)
        # Without the cookie a page opened there goes back to the site,
        # which hands a key off again.
        r = self.on_runner("GET", path, headers={"Accept": "text/html"})
        self.assertStatus(r, 302)
        self.assertEqual(r.headers["location"], f"http://127.0.0.1:{self.srv.port}{path}")
        # A malformed or unknown code changes nothing and says so.
        for code in ("0" * 64, "nothex", ""):
            r = self.on_runner("GET", f"{path}?handoff={code}", headers={"Accept": "text/html"})
            self.assertStatus(r, 403)
            self.assertEqual(self.jar(r), {})

    def test_an_expired_key_goes_back_for_a_new_one(self):
        fam = self.family("expired")
        study = self.built_study()
        cookies, path = self.hand_off(fam, study)
        # Expire the key itself in Redis (what four days do).
        h = hashlib.sha256(cookies["sessionid"].encode()).hexdigest()
        redis_command(REDIS_PORT, "DEL", f"runner:{h}", password=REDIS_PASSWORD)
        r = self.on_runner("GET", path, cookies=cookies, headers={"Accept": "text/html"})
        self.assertStatus(r, 302)
        self.assertEqual(r.headers["location"], f"http://127.0.0.1:{self.srv.port}{path}")
        r = self.on_runner("GET", f"/api/v1/children/{fam['child']['uuid']}/", cookies=cookies,
                           headers={"Accept": JSONAPI})
        self.assertStatus(r, 401)
        self.assertIn("expired", r.json["errors"][0]["detail"])

    def test_other_studies_and_children_stay_refused(self):
        fam = self.family("other")
        other = self.family("someone-else")
        study = self.built_study()
        cookies, path = self.hand_off(fam, study)
        # Another family's child through this family's key: the same answer
        # as an unknown one.
        r = self.on_runner("GET", f"/studies/{study['uuid']}/{other['child']['uuid']}/",
                           cookies=cookies, headers={"Accept": "text/html"})
        self.assertStatus(r, 404)
        r = self.on_runner("GET", f"/api/v1/children/{other['child']['uuid']}/",
                           cookies=cookies, headers={"Accept": JSONAPI})
        self.assertStatus(r, 404)


class RunnerOriginBrowserTest(OriginFixtures, BrowserTestCase):
    """In chromium: the runner that reads cookies, as the upstream one does,
    runs on the runner's host and its exit lands on the site."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.origin_server()
        cls.start_browser()

    def test_a_cookie_runner_takes_part_and_exits_to_the_site(self):
        fam = self.family("browser")
        study = self.built_study(runner=COOKIE_RUNNER)
        self.open("/login/")
        self.fill("Email address", fam["email"])
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_until(lambda: "/login/" not in self.browser.current_url, "the login")
        site_session = self.browser.get_cookie("sessionid")["value"]

        self.browser.get(f"{self.srv.base}/studies/{study['uuid']}/{fam['child']['uuid']}/")
        # The runner ran on its host, saved, and its exit went back to the site.
        self.wait_until(lambda: self.browser.current_url.startswith(
            f"{self.srv.base}/studies/history/"), "the exit to the site's past sessions")
        row = self.w.sql("SELECT completed, exp_data->'0-cookie'->>'csrftoken_read'"
                         " FROM responses r JOIN children c ON c.id = r.child_id"
                         f" WHERE c.uuid = '{fam['child']['uuid']}'")
        self.assertEqual(row, "t|true")
        # The site's cookies are the site's: its session, never the runner key.
        self.assertEqual(self.browser.get_cookie("sessionid")["value"], site_session)
        keys = self.w.sql("SELECT count(*) FROM responses r JOIN children c"
                          f" ON c.id = r.child_id WHERE c.uuid = '{fam['child']['uuid']}'")
        self.assertEqual(keys, "1")
