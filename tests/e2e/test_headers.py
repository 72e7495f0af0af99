"""test_headers: the headers and origins of issue 11 point 9.

Every kind of reply (JSON, errors the router writes itself, HTML pages,
metrics text, stored objects) carries nosniff, a Referrer-Policy and
frame-ancestors; an HTML page gets the strict page CSP (no inline
script); a stored object, HTML included, is served under a CSP sandbox
without allow-same-origin, so its script never runs as the API's origin;
/metrics answers loopback (not through a proxy) or METRICS_TOKEN; the
/debug/ routes exist only with DEBUG_ROUTES=1; links never follow the Host
header; a non-loopback listener needs BASE_URL."""

import hashlib
import hmac
import os
import time
from urllib.parse import quote

from apifixtures import World
from harness import StudyhubTestCase, new_dir, request, run_server_once

LINK_SECRET = "header-test-link-secret"
METRICS_TOKEN = "metrics-" + "x" * 24
PAGE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class HeadersTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.storage = new_dir("storage")
        cls.srv = cls.class_server(env={"STORAGE_URL": "file://" + cls.storage,
                                        "STORAGE_LINK_SECRET": LINK_SECRET,
                                        "METRICS_TOKEN": METRICS_TOKEN})
        cls.w = World(cls.srv)

    def assertSecurityHeaders(self, r, what):
        h = r.headers
        self.assertEqual(h.get("x-content-type-options"), "nosniff", what)
        self.assertEqual(h.get("referrer-policy"), "same-origin", what)
        self.assertEqual(h.get("x-frame-options"), "DENY", what)
        self.assertIn("frame-ancestors 'none'", h.get("content-security-policy", ""), what)

    def test_every_kind_of_reply(self):
        user = self.w.user("headers")
        cases = {
            "json": request(self.srv.port, "GET", "/healthz"),
            "not found": request(self.srv.port, "GET", "/nothing/here"),
            "method not allowed": request(self.srv.port, "DELETE", "/healthz"),
            "bad path": request(self.srv.port, "GET", "/api/v1/studies/%00/"),
            "no credentials": request(self.srv.port, "GET", "/api/v1/responses/"),
            "authenticated": request(self.srv.port, "GET", "/api/v1/accounts/me/",
                                     token=user["token"]),
            "metrics": request(self.srv.port, "GET", "/metrics"),
            "storage refusal": request(self.srv.port, "GET", "/storage/x"),
            "page": request(self.srv.port, "GET", "/debug/page"),
        }
        expect = {"json": 200, "not found": 404, "method not allowed": 405, "bad path": 400,
                  "no credentials": 401, "authenticated": 200, "metrics": 200,
                  "storage refusal": 403, "page": 200}
        for what, r in cases.items():
            self.assertStatus(r, expect[what], what)
            self.assertSecurityHeaders(r, what)
            if what != "page":
                self.assertEqual(r.headers["content-security-policy"], "frame-ancestors 'none'",
                                 what)

    def test_html_gets_the_page_csp(self):
        r = request(self.srv.port, "GET", "/debug/page")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        csp = r.headers["content-security-policy"]
        self.assertEqual(csp, PAGE_CSP)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("unsafe-eval", csp)

    def link(self, key, expires):
        sig = hmac.new(LINK_SECRET.encode(), f"{key}\n{expires}".encode(),
                       hashlib.sha256).hexdigest()
        return f"/storage/{quote(key)}?expires={expires}&sig={sig}"

    def test_stored_html_runs_sandboxed(self):
        """A built runner's page, served from file:// storage: a sandbox
        with scripts but an opaque origin (no allow-same-origin), so it
        cannot read the csrftoken cookie or call the API as its viewer."""
        os.makedirs(os.path.join(self.storage, "builds", "b1"), exist_ok=True)
        html = b"<!doctype html><script>document.title = document.cookie</script>\n"
        with open(os.path.join(self.storage, "builds", "b1", "index.html"), "wb") as f:
            f.write(html)
        r = request(self.srv.port, "GET", self.link("builds/b1/index.html",
                                                     int(time.time()) + 60))
        self.assertStatus(r, 200)
        self.assertEqual(r.body, html)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        csp = r.headers["content-security-policy"]
        self.assertIn("sandbox allow-scripts", csp)
        self.assertNotIn("allow-same-origin", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn(PAGE_CSP, r.headers.get("content-security-policy", ""))
        self.assertSecurityHeaders(r, "stored html")

    def test_metrics_loopback_or_token(self):
        port = self.srv.port
        self.assertStatus(request(port, "GET", "/metrics"), 200)
        # Through a proxy on this host the peer is loopback too: not trusted.
        for hdr in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}):
            r = request(port, "GET", "/metrics", headers=hdr)
            self.assertStatus(r, 401)
            self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
            self.assertNotIn(b"studyhub_", r.body)
        proxied = {"X-Forwarded-For": "203.0.113.9"}
        r = request(port, "GET", "/metrics", headers=proxied, token="Bearer " + METRICS_TOKEN)
        self.assertStatus(r, 200)
        self.assertIn(b"studyhub_http_inflight", r.body)
        for wrong in ("Bearer nope", "Bearer " + METRICS_TOKEN + "x", "Token " + METRICS_TOKEN):
            r = request(port, "GET", "/metrics", headers=proxied, token=wrong)
            self.assertStatus(r, 401)
        # A wrong bearer from loopback is refused too, not waved through.
        self.assertStatus(request(port, "GET", "/metrics", token="Bearer nope"), 401)

    def test_links_do_not_follow_the_host_header(self):
        user = self.w.user("links")
        r = request(self.srv.port, "GET", "/api/v1/accounts/me/", token=user["token"],
                    headers={"Host": "evil.example"})
        self.assertStatus(r, 200)
        self.assertNotIn(b"evil.example", r.body)
        self.assertIn(f"http://127.0.0.1:{self.srv.port}/".encode(), r.body)


class DebugRoutesOffTest(StudyhubTestCase):

    def test_debug_routes_are_404_without_debug_routes(self):
        srv = self.server(env={"DEBUG_ROUTES": "0"})
        for path in ("/debug/page", "/debug/echo/x", "/debug/sleep?ms=1"):
            r = srv.get(path)
            self.assertStatus(r, 404, path)
            self.assertEqual(r.json["errors"][0]["code"], "not_found")


class BaseUrlTest(StudyhubTestCase):

    def test_public_listener_needs_base_url(self):
        code, _, err = run_server_once({"LISTEN_ADDR": "0.0.0.0"})
        self.assertEqual(code, 2, err)
        self.assertIn("BASE_URL", err)
