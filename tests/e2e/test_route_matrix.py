"""test_route_matrix: every route the server has, for every kind of
caller, against one table of who gets past the gate.

The routes come from the server itself (`studyhubctl routes`: method,
pattern and declared policy), so a route added later cannot be missed: one
that is not in EXPECTED below fails the test, and so does one whose
declared policy differs from the table.  Each route is then asked by

  anonymous            no credentials
  participant          a family (a child, a response, feedback, demographics)
  other_participant    another family
  researcher           lab admin of the study's lab, password only
  researcher_2fa       lab admin of the same lab, two-factor verified
  other_lab            two-factor-verified admin of another lab
  site_admin           site admin, password only
  site_admin_2fa       site admin, two-factor verified

every one through a real session (login, CSRF token on writes), and the
answer must fall in the class its policy gives that caller:

  401      no credentials (user, family, researcher, site admin)
  2fa      403 "two_factor_required" (researcher, site admin routes
           without a verified second factor)
  admin    403 "permission_denied" (site admin routes, other callers)
  pass     past the gate: any status but 401, a 403 of the gate or a 5xx
           (the handler may still say 400, 403 by permission, 404 ...)
  signed   a 4xx for everyone, credentials or not (the handler checks a
           signature, which none of them has)

Writes carry an empty JSON object, so they stop at validation; the few
that act on no body (build, clone, zip) only queue work the server does
not run here (TASK_CONCURRENCY=0).

Then the data itself: without two-factor, the family routes show a
researcher only their own family (none) and a site admin only themselves,
while the same rights with two-factor see the research rows.  And every
answer of the walk carries the security headers."""

import http.client
import json
import secrets
import time
import uuid

from apifixtures import World
from harness import JSONAPI, RedisServer, StudyhubTestCase, request

from test_accounts import PASSWORD, totp

# (method, pattern) -> the policy it must declare.
EXPECTED = {}


def _table(policy, *routes):
    for r in routes:
        method, pattern = r.split(" ", 1)
        EXPECTED[(method, pattern)] = policy


_table("public",
       "GET /healthz", "GET /readyz",
       "POST /api/v1/auth/login/", "POST /api/v1/auth/login/2fa/",
       "POST /api/v1/accounts/signup/", "POST /api/v1/accounts/verify/",
       "POST /api/v1/accounts/verify/resend/", "POST /api/v1/accounts/password-reset/",
       "POST /api/v1/accounts/password-reset/confirm/",
       # The web pages and their assets (http/static.c): pages hold no data.
       "GET /", "GET /signup/", "GET /login/", "GET /logout/",
       "GET /accounts/verify/{token}/", "GET /accounts/password-reset/",
       "GET /accounts/password-reset/{token}/", "GET /account/", "GET /children/",
       "GET /children/{id}/", "GET /demographics/",
       "GET /css/*", "GET /js/*", "GET /img/*", "GET /vendor/*")
_table("signed",
       "POST /exp/renamevideo/", "POST /api/v1/video/", "GET /storage/*")
_table("operator", "GET /metrics")
_table("debug", "GET /debug/sleep", "GET /debug/echo/*", "GET /debug/page")
_table("user",
       "POST /api/v1/auth/logout/",
       "GET /api/v1/accounts/me/", "GET /api/v1/accounts/totp/",
       "POST /api/v1/accounts/totp/", "POST /api/v1/accounts/totp/confirm/",
       "POST /api/v1/accounts/totp/disable/", "POST /api/v1/accounts/totp/recovery-codes/",
       "GET /api/v1/accounts/tokens/", "POST /api/v1/accounts/tokens/",
       "DELETE /api/v1/accounts/tokens/{id}/",
       "GET /api/v1/labs/", "GET /api/v1/labs/{id}/", "GET /api/v1/workflow/?",
       # A family's own writes (children.c, family.c).
       "POST /api/v1/children/", "PATCH /api/v1/children/{id}/",
       "DELETE /api/v1/children/{id}/", "POST /api/v1/demographics/",
       "GET /api/v1/demographics/current/", "PATCH /api/v1/users/{id}/")
_table("family",
       "GET /api/v1/studies/", "GET /api/v1/studies/{id}/",
       "GET /api/v1/studies/{id}/responses/", "GET /api/v1/past-sessions/{id}/",
       "GET /api/v1/responses/", "POST /api/v1/responses/", "GET /api/v1/responses/{id}/",
       "PATCH /api/v1/responses/{id}/", "PUT /api/v1/responses/{id}/",
       "GET /api/v1/children/", "GET /api/v1/children/{id}/",
       "GET /api/v1/feedback/", "POST /api/v1/feedback/", "GET /api/v1/feedback/{id}/",
       "PATCH /api/v1/feedback/{id}/", "PUT /api/v1/feedback/{id}/",
       "GET /api/v1/users/", "GET /api/v1/users/{id}/",
       "GET /api/v1/users/{id}/demographics/", "GET /api/v1/users/{id}/children/",
       "GET /api/v1/demographics/", "GET /api/v1/demographics/{id}/")
_table("researcher",
       "GET /api/v1/accounts/researcher-access/", "GET /api/v1/researcher/permissions/",
       "GET /api/v1/researcher/labs/", "GET /api/v1/researcher/labs/{id}/",
       "POST /api/v1/labs/", "PATCH /api/v1/labs/{id}/",
       "POST /api/v1/labs/{id}/join-requests/", "GET /api/v1/labs/{id}/join-requests/",
       "DELETE /api/v1/labs/{id}/join-requests/{user}/",
       "GET /api/v1/labs/{id}/members/", "POST /api/v1/labs/{id}/members/",
       "PATCH /api/v1/labs/{id}/members/{user}/", "DELETE /api/v1/labs/{id}/members/{user}/",
       "GET /api/v1/researcher/studies/", "POST /api/v1/researcher/studies/",
       "GET /api/v1/researcher/studies/{id}/", "PATCH /api/v1/researcher/studies/{id}/",
       "POST /api/v1/researcher/studies/{id}/clone/",
       "GET /api/v1/researcher/studies/{id}/logs/", "GET /api/v1/researcher/studies/{id}/groups/",
       "POST /api/v1/researcher/studies/{id}/groups/{group}/members/",
       "DELETE /api/v1/researcher/studies/{id}/groups/{group}/members/{user}/",
       "POST /api/v1/studies/{id}/transitions/",
       "GET /api/v1/videos/", "GET /api/v1/videos/{id}/",
       "POST /api/v1/studies/{id}/video-zips/",
       "GET /api/v1/studies/{id}/builds/events", "POST /api/v1/studies/{id}/build/?",
       "POST /api/v1/studies/{id}/preview/?", "GET /api/v1/studies/{id}/builds/?",
       "GET /api/v1/studies/{id}/builds/{task}/?", "DELETE /api/v1/studies/{id}/builds/{task}/?",
       "POST /api/v1/studies/{id}/runner-approval/?",
       "DELETE /api/v1/studies/{id}/runner-approval/?",
       "GET /api/v1/researcher/studies/{id}/consent/",
       "POST /api/v1/researcher/responses/{id}/consent/",
       "GET /api/v1/researcher/studies/{id}/responses/",
       "PATCH /api/v1/researcher/responses/{id}/",
       "GET /api/v1/researcher/studies/{id}/access-log/",
       "GET /api/v1/researcher/studies/{id}/exports/{file}")
_table("site_admin", "GET /api/v1/researcher/access-log/")
# Taking part (domain/participate.c): discovery is public (active public
# studies only); a child's runner page under /studies/{id}/* passes the
# gate as a user inside the handler (its assets are public).
_table("public", "GET /studies/", "GET /studies/history/", "GET /studies/{id}/",
       "GET /api/v1/discover/", "GET /api/v1/discover/{id}/", "GET /studies/{id}/*")
_table("family", "GET /api/v1/studies/{id}/eligibility/", "GET /api/v1/history/")
_table("researcher", "GET /exp/studies/{id}/{child}/preview/",
       "GET /exp/studies/{id}/{child}/preview/*")
# The researcher and admin pages (issue 16): public like every page; the
# API each one calls holds the data and its policy.
_table("public",
       "GET /researcher/", "GET /researcher/two-factor/", "GET /researcher/labs/",
       "GET /researcher/labs/{id}/", "GET /researcher/studies/{id}/",
       "GET /researcher/studies/{id}/data/", "GET /admin/", "GET /admin/users/")
_table("site_admin", "GET /api/v1/admin/users/", "PATCH /api/v1/admin/users/{id}/",
       "POST /api/v1/admin/users/{id}/reset-two-factor/")
# Issue 15, the family's rights (privacy.c, messages.c): the caller's own
# account only; messages to families need edit_study__message_set.
_table("user", "DELETE /api/v1/users/{id}/", "GET /api/v1/users/{id}/data/",
       "GET /api/v1/messages/")
_table("researcher", "POST /api/v1/researcher/studies/{id}/messages/",
       "GET /api/v1/researcher/studies/{id}/messages/")
# Issue 16, the rest of the pages: a study's video archives (the caller's
# own), the admin pages' jobs and tasks (read-only) and their page.
_table("researcher", "GET /api/v1/studies/{id}/video-zips/")
_table("site_admin", "GET /api/v1/admin/jobs/", "GET /api/v1/admin/tasks/")
_table("public", "GET /admin/operations/")
# Issue 18, points 4-6 (listings.c, sitepages.c, static.c): the study lists
# by age group and by lab, the public pages and their text, the support
# form are for anyone; editing the text and its log are for site admins.
_table("public",
       "GET /api/v1/age-groups/", "GET /api/v1/age-groups/{group}/studies/",
       "GET /api/v1/lab-pages/{slug}/", "GET /api/v1/lab-pages/{slug}/studies/",
       "GET /ages/{group}/", "GET /labs/{slug}/",
       "GET /api/v1/site-pages/", "GET /api/v1/site-pages/{slug}/", "POST /api/v1/support/",
       "GET /faq/", "GET /privacy/", "GET /terms/", "GET /scientists/", "GET /resources/",
       "GET /publications/", "GET /contact/", "GET /support/", "GET /admin/pages/")
_table("site_admin", "PATCH /api/v1/site-pages/{slug}/", "GET /api/v1/admin/site-page-edits/")
# Issue 19, shared runners (participate.c): a built runner's files, public
# as a study's build folder is (a build holds no data).
_table("public", "GET /runners/{key}/*")
# Issue 18, points 1-3: the participant browser, analytics, housekeeping
# (analytics.c, housekeeping.c) and their pages.
_table("researcher", "GET /api/v1/researcher/labs/{id}/participants/",
       "GET /api/v1/researcher/studies/{id}/analytics/{chart}",
       "GET /api/v1/researcher/labs/{id}/analytics/{chart}",
       "DELETE /api/v1/researcher/studies/{id}/preview-responses/",
       "GET /api/v1/researcher/studies/{id}/hash-check/",
       "GET /api/v1/researcher/responses/{id}/json/")
_table("public", "GET /researcher/studies/{id}/analytics/", "GET /researcher/labs/{id}/analytics/",
       "GET /researcher/labs/{id}/participants/")

# Where a handler itself says more than the gate: API tokens are given to
# researchers only from a two-factor-verified session (accounts.c).
HANDLER_OWN = {
    ("POST", "/api/v1/accounts/tokens/"): {"researcher": "2fa", "site_admin": "2fa"},
}
LOGOUT = ("POST", "/api/v1/auth/logout/")

ROLES = ["anonymous", "participant", "other_participant", "researcher", "researcher_2fa",
         "other_lab", "site_admin", "site_admin_2fa"]
VERIFIED = {"researcher_2fa", "other_lab", "site_admin_2fa"}


def expected_class(policy, role):
    """The answer class of a caller on a route of this policy."""
    if policy in ("public", "operator", "debug"):
        return "pass"       # the operator is on loopback; DEBUG_ROUTES=1
    if policy == "signed":
        return "signed"
    if role == "anonymous":
        return "401"
    if policy in ("user", "family"):
        return "pass"
    if role not in VERIFIED:
        return "2fa"
    if policy == "site_admin" and role != "site_admin_2fa":
        return "admin"
    return "pass"


SECURITY_HEADERS = ("x-content-type-options", "referrer-policy", "content-security-policy",
                    "x-frame-options")


def probe(port, method, path, cookies=None, body=None):
    """One request; (status, headers, json).  An event stream is not read
    past its headers (it would not end)."""
    hdrs = {"Accept": JSONAPI}
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        hdrs["X-CSRFToken"] = cookies.get("csrftoken", "")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        doc = None
        if "text/event-stream" not in headers.get("content-type", ""):
            raw = resp.read()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                pass
        return resp.status, headers, doc
    finally:
        conn.close()


def error_code(doc):
    try:
        return doc["errors"][0]["code"]
    except (TypeError, KeyError, IndexError):
        return None


class RouteMatrixTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        # Its own Redis: the login and sign-up counters of this walk touch
        # no other test's.
        cls.redis_srv = RedisServer().start()
        cls.addClassCleanup(cls.redis_srv.stop)
        cls.srv = cls.class_server(env={"TASK_CONCURRENCY": "0",
                                        "LOGIN_RATE_ADDR_MAX": "100000",
                                        "LOGIN_RATE_ACCOUNT_MAX": "100000"},
                                   redis_url=cls.redis_srv.url)
        w = cls.w = World(cls.srv)
        cls.lab = w.lab("matrix")
        cls.other_lab = w.lab("elsewhere")
        cls.study = w.study(cls.lab, "Matrix")
        cls.u = {}
        cls.u["participant"] = w.user("participant")
        cls.u["other_participant"] = w.user("other-participant")
        for role in ("researcher", "researcher_2fa"):
            cls.u[role] = w.user(role, researcher=True)
            w.member(cls.lab, cls.u[role], "admin")
        cls.u["other_lab"] = w.user("other-lab", researcher=True)
        w.member(cls.other_lab, cls.u["other_lab"], "admin")
        for role in ("site_admin", "site_admin_2fa"):
            cls.u[role] = w.user(role, researcher=True)
            w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.u[role]['id']}")

        # The participant's family: a child, a consented response with
        # feedback, demographics; the other family has a child too.
        p = cls.u["participant"]
        cls.child = w.child(p, "Sally")
        cls.other_child = w.child(cls.u["other_participant"], "Tom")
        cls.response = w.create_response(p, cls.child, cls.study)
        w.consent(cls.response)
        cls.feedback = w.row(
            "INSERT INTO feedback (response_id, researcher_id, comment)"
            f" SELECT r.id, {cls.u['researcher_2fa']['id']}, 'Thanks!' FROM responses r"
            f" WHERE r.uuid = '{cls.response}' RETURNING uuid")[0]
        cls.demographics = w.demographics(p)

        # One password for everyone: signed up once, its hash copied.
        email = f"hash-{secrets.token_hex(4)}@example.test"
        r = cls.srv.post("/api/v1/accounts/signup/",
                         json_body={"email": email, "password": PASSWORD})
        assert r.status == 201, r
        ids = ", ".join(str(x["id"]) for x in cls.u.values())
        w.sql("UPDATE users SET password_hash = (SELECT password_hash FROM users"
              f" WHERE email = '{email}') WHERE id IN ({ids})")

        # Two sessions per caller: the walk's, and one that only its
        # logout request ends, so the other tests keep theirs.
        cls.sessions = {"anonymous": None}
        cls.spare_sessions = {"anonymous": None}
        for role in ROLES[1:]:
            cls.sessions[role], codes = cls.login(cls.u[role], role in VERIFIED)
            cls.spare_sessions[role], _ = cls.login(cls.u[role], role in VERIFIED, codes)

    @classmethod
    def login(cls, user, verified, recovery_codes=None):
        """A session of user and the recovery codes it got: password only;
        or two-factor verified, by TOTP enrolled and confirmed in the
        session, or (when the user has it already) by a recovery code."""
        time.sleep(0.15)          # the process-wide argon2 budget
        c = cls.srv.client()
        r = c.post("/api/v1/auth/login/", json_body={"email": user["email"], "password": PASSWORD})
        codes = None
        if verified and recovery_codes:
            assert r.status == 202, r
            r = c.post("/api/v1/auth/login/2fa/",
                       json_body={"challenge": r.json["meta"]["challenge"],
                                  "recovery_code": recovery_codes[0]})
            assert r.status == 200, r
        elif verified:
            assert r.status == 200, r
            csrf = {"X-CSRFToken": c.cookies["csrftoken"]}
            r = c.post("/api/v1/accounts/totp/", headers=csrf)
            assert r.status == 201, r
            secret = r.json["data"]["attributes"]["secret"]
            r = c.post("/api/v1/accounts/totp/confirm/", json_body={"code": totp(secret)[0]},
                       headers=csrf)
            assert r.status == 200, r
            codes = r.json["data"]["attributes"]["recovery_codes"]
        else:
            assert r.status == 200, r
        r = c.get("/api/v1/accounts/me/")
        assert r.json["data"]["attributes"]["two_factor_verified"] == verified, r
        return dict(c.cookies), codes

    # -- the routes

    def server_routes(self):
        out = self.srv.ctl("routes")
        self.assertEqual(out.returncode, 0, out.stderr)
        routes = {}
        for line in out.stdout.splitlines():
            method, pattern, policy = line.split(" ")
            routes[(method, pattern)] = policy
        return routes

    def fill(self, pattern):
        """A path for pattern, with the fixtures' ids in its parameters."""
        ids = {
            "/api/v1/studies/{id}": self.study["uuid"],
            "/api/v1/researcher/studies/{id}": self.study["uuid"],
            "/api/v1/responses/{id}": self.response,
            "/api/v1/past-sessions/{id}": self.response,
            "/api/v1/children/{id}": self.child["uuid"],
            "/api/v1/feedback/{id}": self.feedback,
            "/api/v1/users/{id}": self.u["participant"]["uuid"],
            "/api/v1/demographics/{id}": self.demographics,
            "/api/v1/labs/{id}": self.lab["uuid"],
            "/api/v1/researcher/labs/{id}": self.lab["uuid"],
        }
        path = pattern
        for prefix, value in ids.items():
            if path.startswith(prefix):
                path = value.join(path.split("{id}", 1))
        path = (path.replace("{id}", str(uuid.uuid4()))      # videos, tokens: unknown ids
                    .replace("{task}", str(uuid.uuid4()))
                    .replace("{user}", str(uuid.uuid4()))   # nobody: writes change nothing
                    .replace("{group}", "design")
                    .replace("{child}", str(uuid.uuid4())))
        if path.endswith("/?"):
            path = path[:-1]
        if path.endswith("/*"):
            path = path[:-1] + "x"
        if path == "/debug/sleep":
            path += "?ms=1"
        return path

    def test_every_route_for_every_caller(self):
        routes = self.server_routes()
        self.assertGreater(len(routes), 50)
        missing = sorted(set(routes) - set(EXPECTED))
        self.assertEqual(missing, [], "routes the server has but this table lacks")
        gone = sorted(set(EXPECTED) - set(routes))
        self.assertEqual(gone, [], "routes in this table the server no longer has")
        for key, policy in routes.items():
            self.assertEqual(policy, EXPECTED[key], f"{key} declares {policy}")

        failures = []
        for method, pattern in sorted(routes):
            path = self.fill(pattern)
            if (method, pattern) in (("DELETE", "/api/v1/children/{id}/"),
                                     ("DELETE", "/api/v1/users/{id}/")):
                # It needs no body: the fixture child (or account) would
                # be erased for the tests that read it.  Unknown: a 404.
                path = self.fill(pattern.replace("{id}", str(uuid.uuid4())))
            body = {} if method in ("POST", "PUT", "PATCH") else None
            # Logout ends the session it is given: the spare one.
            sessions = (self.spare_sessions if (method, pattern) == LOGOUT
                        else self.sessions)
            for role in ROLES:
                status, headers, doc = probe(self.srv.port, method, path,
                                             sessions[role], body)
                want = HANDLER_OWN.get((method, pattern), {}).get(role) or \
                    expected_class(routes[(method, pattern)], role)
                code = error_code(doc)
                if want == "401":
                    ok = status == 401
                elif want == "2fa":
                    ok = status == 403 and code == "two_factor_required"
                elif want == "admin":
                    ok = status == 403 and code == "permission_denied"
                elif want == "signed":
                    ok = 400 <= status < 500
                else:
                    ok = (status < 500 and status != 401
                          and not (status == 403 and code == "two_factor_required"))
                if not ok:
                    failures.append(f"{method} {path} as {role}: {status} {code}, want {want}")
                lacking = [h for h in SECURITY_HEADERS if h not in headers]
                if lacking:
                    failures.append(f"{method} {path} as {role}: no {', '.join(lacking)}")
        self.assertEqual(failures, [])

    # -- what the family routes show

    def count(self, role, path):
        status, _, doc = probe(self.srv.port, "GET", path, self.sessions[role])
        self.assertEqual(status, 200, f"{path} as {role}: {doc}")
        return doc["links"]["meta"]["count"], [d["id"] for d in doc["data"]]

    def test_family_routes_show_research_rows_only_with_two_factor(self):
        child, resp, fb = self.child["uuid"], self.response, self.feedback
        for path, own in (("/api/v1/responses/", resp), ("/api/v1/children/", child),
                          ("/api/v1/feedback/", fb)):
            # The family sees its own; another family sees none of it.
            self.assertIn(own, self.count("participant", path)[1], path)
            self.assertNotIn(own, self.count("other_participant", path)[1], path)
            # The same lab rights: with two-factor the row, without nothing.
            self.assertIn(own, self.count("researcher_2fa", path)[1], path)
            self.assertEqual(self.count("researcher", path), (0, []), path)
            self.assertEqual(self.count("site_admin", path), (0, []), path)
            self.assertNotIn(own, self.count("other_lab", path)[1], path)
        for path in (f"/api/v1/responses/{resp}/", f"/api/v1/children/{child}/",
                     f"/api/v1/feedback/{fb}/", f"/api/v1/studies/{self.study['uuid']}/responses/"):
            status, _, doc = probe(self.srv.port, "GET", path, self.sessions["researcher"])
            if path.endswith("/responses/") and "/studies/" in path:
                self.assertEqual(doc["links"]["meta"]["count"], 0, path)
            else:
                self.assertEqual(status, 404, f"{path}: {doc}")
            status, _, _ = probe(self.srv.port, "GET", path, self.sessions["researcher_2fa"])
            self.assertEqual(status, 200, path)

    def test_users_and_demographics_of_a_site_admin_without_two_factor(self):
        me = self.u["site_admin"]["uuid"]
        self.assertEqual(self.count("site_admin", "/api/v1/users/"), (1, [me]))
        self.assertEqual(self.count("site_admin", "/api/v1/demographics/"), (0, []))
        p = self.u["participant"]["uuid"]
        for path in (f"/api/v1/users/{p}/", f"/api/v1/demographics/{self.demographics}/"):
            status, _, _ = probe(self.srv.port, "GET", path, self.sessions["site_admin"])
            self.assertEqual(status, 404, path)
            status, _, _ = probe(self.srv.port, "GET", path, self.sessions["site_admin_2fa"])
            self.assertEqual(status, 200, path)
        n, ids = self.count("site_admin_2fa", "/api/v1/users/")
        self.assertGreaterEqual(n, len(self.u))
        self.assertIn(p, ids + [x["uuid"] for x in self.u.values()])
        self.assertIn(self.demographics, self.count("site_admin_2fa", "/api/v1/demographics/")[1])
        # A family sees its own record only.
        self.assertEqual(self.count("participant", "/api/v1/users/"), (1, [p]))
        self.assertEqual(self.count("participant", "/api/v1/demographics/"),
                         (1, [self.demographics]))

    def test_anonymous_token_header_is_not_a_session(self):
        """A garbage token is 401 on every authenticated policy, never a
        pass (the gate does not fall back to "anonymous")."""
        r = request(self.srv.port, "GET", "/api/v1/responses/", token="Token nope")
        self.assertStatus(r, 401)
        r = request(self.srv.port, "GET", "/api/v1/researcher/studies/", token="Token nope")
        self.assertStatus(r, 401)
