"""test_family_static: the web pages of static/ served at / (issue 14).

Pages at their pretty URLs (the emailed links included) with the strict
page CSP; assets with their content types; ETag and 304; a year of caching
for the versioned links the pages carry and for vendor/ files, no-cache
for the rest; gzip for text when asked; no way out of the folder; a
readable HTML 404 for a browser and JSON:API errors under /api/; and no
inline script, style or handler anywhere in static/."""

import gzip
import os
import re

from harness import STATIC_DIR, StudyhubTestCase, request

PAGES = ["/", "/signup/", "/login/", "/logout/", "/accounts/verify/abc123/",
         "/accounts/password-reset/", "/accounts/password-reset/abc123/", "/account/",
         "/children/", "/children/6f1c2b1e-0000-4000-8000-000000000000/", "/demographics/"]
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
PAGE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def static_files(ext):
    for d, _, files in os.walk(STATIC_DIR):
        for f in files:
            if f.endswith(ext):
                yield os.path.join(d, f)


class StaticTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()

    def get(self, path, **headers):
        return request(self.srv.port, "GET", path, headers=headers)

    def test_pages_at_their_urls(self):
        for path in PAGES:
            r = self.get(path, **BROWSER)
            self.assertStatus(r, 200, path)
            self.assertEqual(r.headers["content-type"], "text/html; charset=utf-8", path)
            self.assertEqual(r.headers["content-security-policy"], PAGE_CSP, path)
            self.assertEqual(r.headers["cache-control"], "no-cache", path)
            self.assertIn("<main", r.text, path)
            self.assertRegex(r.text, r'<script type="module" src="/js/pages/[a-z-]+\.js\?v=[0-9a-f]{8}">',
                             path)
        # The file names of pages are not URLs of their own.
        self.assertStatus(self.get("/index.html"), 404)
        self.assertStatus(self.get("/js/../index.html"), 404)

    def test_assets_types_etag_and_304(self):
        for path, ctype in (("/css/site.css", "text/css; charset=utf-8"),
                            ("/js/api.js", "text/javascript; charset=utf-8")):
            r = self.get(path)
            self.assertStatus(r, 200, path)
            self.assertEqual(r.headers["content-type"], ctype)
            etag = r.headers["etag"]
            self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
            with open(os.path.join(STATIC_DIR, path.lstrip("/")), "rb") as f:
                self.assertEqual(r.body, f.read())
            again = self.get(path, **{"If-None-Match": etag})
            self.assertStatus(again, 304, path)
            self.assertEqual(again.body, b"")
            self.assertEqual(again.headers["etag"], etag)
            self.assertStatus(self.get(path, **{"If-None-Match": f'"x", W/{etag}'}), 304)
            self.assertStatus(self.get(path, **{"If-None-Match": '"0000000000000000"'}), 200)
        head = request(self.srv.port, "HEAD", "/css/site.css")
        self.assertStatus(head, 200)
        self.assertEqual(head.body, b"")

    def test_versioned_links_cache_for_a_year(self):
        page = self.get("/", **BROWSER).text
        m = re.search(r'href="(/css/site\.css)\?v=([0-9a-f]{8})"', page)
        self.assertIsNotNone(m, page)
        r = self.get(f"{m.group(1)}?v={m.group(2)}")
        self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
        # Without the version, or with an old one: revalidated every time.
        self.assertEqual(self.get(m.group(1)).headers["cache-control"], "no-cache")
        self.assertEqual(self.get(m.group(1) + "?v=00000000").headers["cache-control"],
                         "no-cache")
        # The ETag names the bytes, so it is the version too.
        self.assertTrue(self.get(m.group(1)).headers["etag"].startswith('"' + m.group(2)))

    def test_vendor_files_are_immutable(self):
        """web/vendor.list's files, copied by ensure_web_packages."""
        vendor = os.path.join(STATIC_DIR, "vendor")
        names = sorted(os.listdir(vendor)) if os.path.isdir(vendor) else []
        axe = [n for n in names if n.startswith("axe-core@")]
        self.assertTrue(axe, "tools/test copies axe-core into static/vendor/")
        r = self.get(f"/vendor/{axe[-1]}/axe.min.js")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
        self.assertEqual(r.headers["content-type"], "text/javascript; charset=utf-8")

    def test_gzip_when_asked(self):
        plain = self.get("/js/api.js")
        self.assertNotIn("content-encoding", plain.headers)
        self.assertEqual(plain.headers["vary"], "Accept-Encoding")
        gz = self.get("/js/api.js", **{"Accept-Encoding": "gzip, deflate, br"})
        self.assertEqual(gz.headers["content-encoding"], "gzip")
        self.assertEqual(gz.headers["vary"], "Accept-Encoding")
        self.assertLess(len(gz.body), len(plain.body))
        self.assertEqual(gzip.decompress(gz.body), plain.body)
        # Another representation, another strong ETag; either revalidates.
        self.assertEqual(gz.headers["etag"], plain.headers["etag"][:-1] + '-gz"')
        for tag in (plain.headers["etag"], gz.headers["etag"]):
            self.assertStatus(self.get("/js/api.js", **{"Accept-Encoding": "gzip",
                                                         "If-None-Match": tag}), 304)
        refused = self.get("/js/api.js", **{"Accept-Encoding": "gzip;q=0"})
        self.assertNotIn("content-encoding", refused.headers)

    def test_no_way_out_of_the_folder(self):
        got = {}
        for path in ("/css/../../README", "/css/%2e%2e/%2e%2e/README", "/js/..%2f..%2fREADME",
                     "/css/../css/site.css", "/js/.hidden", "/css//site.css",
                     "/vendor/../../../../etc/passwd", "/css/site.css%00.js"):
            r = self.get(path)
            got[path] = r.status
            self.assertNotIn(b"studyhub\n====", r.body, path)
            self.assertNotIn(b"root:", r.body, path)
        self.assertEqual(got, {"/css/../../README": 404, "/css/%2e%2e/%2e%2e/README": 404,
                               "/js/..%2f..%2fREADME": 404, "/css/../css/site.css": 404,
                               "/js/.hidden": 404, "/css//site.css": 404,
                               "/vendor/../../../../etc/passwd": 404,
                               "/css/site.css%00.js": 400})

    def test_not_found_for_browsers_and_for_the_api(self):
        page = self.get("/no/such/page/", **BROWSER)
        self.assertStatus(page, 404)
        self.assertTrue(page.headers["content-type"].startswith("text/html"))
        self.assertEqual(page.headers["content-security-policy"], PAGE_CSP)
        self.assertIn("Page not found", page.text)
        self.assertStatus(self.get("/css/none.css", **BROWSER), 404)
        self.assertIn("Page not found", self.get("/css/none.css", **BROWSER).text)
        # A client that does not ask for HTML, and anything under /api/,
        # keeps the JSON:API errors.
        for path, headers in (("/no/such/page/", {}),
                              ("/api/v1/nothing/", BROWSER),
                              ("/api/v1/nothing/", {"Accept": "application/vnd.api+json"})):
            r = self.get(path, **headers)
            self.assertStatus(r, 404, path)
            self.assertEqual(r.json["errors"][0]["detail"], "Not found.", path)

    def test_no_inline_script_or_style(self):
        """The page CSP (script-src 'self', default-src 'self') would block
        them: each would be a page that silently does not work."""
        for path in static_files(".html"):
            with open(path, encoding="utf-8") as f:
                html = f.read()
            rel = os.path.relpath(path, STATIC_DIR)
            for tag in re.findall(r"<script\b[^>]*>", html):
                self.assertRegex(tag, r'type="module" src="/js/', rel)
            self.assertNotRegex(html, r"<script\b[^>]*>\s*[^<\s]", rel)
            self.assertNotRegex(html, r"\son[a-z]+\s*=", rel)
            self.assertNotRegex(html, r"\sstyle\s*=", rel)
            self.assertNotIn("<style", html, rel)
            self.assertNotIn("javascript:", html, rel)
            # Should a page's script not load, a form never puts what was
            # typed (a password) into a URL.
            for form in re.findall(r"<form\b[^>]*>", html):
                self.assertIn('method="post"', form, rel)
            if rel.startswith("_partials" + os.sep):
                continue    # a piece of pages, not a page
            self.assertIn('<html lang="en">', html, rel)
            self.assertIn('name="viewport"', html, rel)
        for path in static_files(".js"):
            if "/vendor/" in path or "/runners/" in path:
                continue    # not the pages' code (the demo runner runs sandboxed)
            with open(path, encoding="utf-8") as f:
                js = f.read()
            rel = os.path.relpath(path, STATIC_DIR)
            self.assertNotIn("innerHTML", js, rel)
            self.assertNotIn("eval(", js, rel)
            if not rel.endswith("api.js"):
                self.assertNotIn("fetch(", js, rel)   # every page speaks through api.js
