"""test_public_pages: issue 18, points 4 to 6, end to end.

The study lists by age group (upstream's bounds: babies [0, 1], toddlers
[1, 3], preschoolers [3, 5], school-age kids [5, 18], adults [18, 999]
years, a study listed when its range meets the group's) and by lab slug,
their counts checked against counts made here from the studies table; the
public pages' Markdown, edited only by site admins (403 otherwise), every
edit logged; the support form, its mail in the outbox and on disk, its
checks and its rate limit.  Then the same in headless chromium: the lists
paginated and on a phone-sized screen, the readable 404 pages, a hostile
Markdown document that must not run or link anything, the admin page
that edits the text, the support form; axe-core on every page (no serious
or critical violation)."""

import email
import glob
import json
import os
import time

from apifixtures import World, lit
from browser import BrowserTestCase
from harness import JSONAPI, Client, RedisServer, StudyhubTestCase, new_dir, request, wait_until

import test_researcher_browser as rb

GROUPS = {"babies": (0, 1), "toddlers": (1, 3), "preschoolers": (3, 5),
          "school-age": (5, 18), "adults": (18, 999)}
SLUGS = ["faq", "privacy", "terms", "scientists", "resources", "publications", "contact"]
SUPPORT = "help@support.example.test"

HOSTILE = """# Hostile

<script>window.__pwned = 1</script>

<img src="x" onerror="window.__pwned = 2">

[click me](javascript:window.__pwned=3)

[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)

<a href="javascript:window.__pwned=4">raw link</a>

![picture](x" onerror="window.__pwned=5)

[JaVaScRiPt](JaVaScRiPt:window.__pwned=6)

| left | right |
|:-----|------:|
| a    | b     |

[safe link](https://example.org/ok)
"""


def studies_in(world, lo_years, hi_years, lab_id=None):
    """The uuids of active public studies whose range meets [lo, hi] years,
    counted here from the table (Python, not the server's SQL)."""
    rows = world.sql("SELECT uuid, min_age_years, min_age_months, min_age_days, max_age_years,"
                     " max_age_months, max_age_days, lab_id FROM studies"
                     " WHERE state = 'active' AND public").splitlines()
    out = set()
    for row in rows:
        u, *ages, lab = row.split("|")
        a = [int(x) for x in ages]
        lo = a[0] * 365 + a[1] * 30 + a[2]
        hi = a[3] * 365 + a[4] * 30 + a[5]
        if lab_id is not None and int(lab) != lab_id:
            continue
        if lo <= hi_years * 365 and hi >= lo_years * 365:
            out.add(u)
    return out


def all_pages(port, path, page_size=3):
    """Every item of a paginated list, page by page (each page checked)."""
    items, page = [], 1
    while True:
        r = request(port, "GET", f"{path}?page={page}&page_size={page_size}", jsonapi=True)
        assert r.status == 200, r
        items += r.json["data"]
        meta = r.json["links"]["meta"]
        assert len(r.json["data"]) <= page_size
        if page >= meta["pages"]:
            assert len(items) == meta["count"], (len(items), meta)
            return items
        page += 1


def make_studies(world):
    """Labs and studies over the age groups: the tests' fixtures."""
    lab = world.lab("Baby Lab")
    slug = "baby-lab-" + lab["uuid"][:8]
    world.sql(f"UPDATE labs SET slug = {lit(slug)}, institution = 'Science U',"
              f" description = 'We study babies.', lab_website = 'https://lab.example.org/',"
              f" principal_investigator_name = 'Dr Who' WHERE id = {lab['id']}")
    other = world.lab("Teen Lab")
    world.sql(f"UPDATE labs SET slug = 'teen-lab-{other['uuid'][:8]}' WHERE id = {other['id']}")
    hidden = world.lab("Unapproved Lab")
    world.sql(f"UPDATE labs SET slug = 'hidden-{hidden['uuid'][:8]}', approved_to_test = false"
              f" WHERE id = {hidden['id']}")
    made = []
    # Babies only: 12 of them, so the list has two pages of 10 in the page.
    for i in range(12):
        made.append(world.study(lab, name=f"Baby study {i:02d}", min_age_months=1,
                                max_age_years=0, max_age_months=11))
    # Spanning toddlers and preschoolers (2 to 4 years).
    made.append(world.study(lab, name="Blocks", min_age_months=0, min_age_years=2,
                            max_age_years=4))
    # Exactly one year at most: meets babies and toddlers (the bounds touch).
    made.append(world.study(lab, name="First birthday", min_age_months=6, max_age_years=1))
    # School-age and adults.
    made.append(world.study(other, name="Teen puzzles", min_age_months=0, min_age_years=12,
                            max_age_years=19))
    made.append(world.study(other, name="Grown-ups", min_age_months=0, min_age_years=19,
                            max_age_years=90))
    # Never listed: not active, not public, an unapproved lab's inactive one.
    world.study(lab, name="Paused", state="paused", min_age_months=1, max_age_years=2)
    world.study(lab, name="Private", public=False, min_age_months=1, max_age_years=2)
    world.study(hidden, name="Hidden lab study", state="approved", min_age_months=1,
                max_age_years=2)
    return {"lab": lab, "slug": slug, "other": other, "hidden": f"hidden-{hidden['uuid'][:8]}"}


class PublicApiTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        # Its own Redis: the support limit's counters stay in this class.
        cls.redis_srv = RedisServer()
        cls.redis_srv.start()
        cls.addClassCleanup(cls.redis_srv.stop)
        cls.mail_dir = new_dir("mail")
        cls.srv = cls.class_server(redis_url=cls.redis_srv.url, env={
            "MAIL_DIR": cls.mail_dir, "MAIL_POLL_S": "1",
            "SUPPORT_EMAIL": SUPPORT, "SUPPORT_RATE_MAX": "3"})
        cls.world = World(cls.srv)
        cls.fx = make_studies(cls.world)

    def admin(self):
        u = self.world.user("admin", researcher=True)
        self.world.sql(f"UPDATE users SET is_site_admin = true WHERE id = {u['id']}")
        return u

    # -- point 4: the lists

    def test_age_groups_are_upstreams(self):
        r = request(self.srv.port, "GET", "/api/v1/age-groups/", jsonapi=True)
        self.assertStatus(r, 200)
        got = {g["id"]: (g["attributes"]["min_age_years"], g["attributes"]["max_age_years"])
               for g in r.json["data"]}
        self.assertEqual(got, GROUPS)
        self.assertEqual([g["id"] for g in r.json["data"]], list(GROUPS))

    def test_each_group_lists_what_the_table_says(self):
        for group, (lo, hi) in GROUPS.items():
            items = all_pages(self.srv.port, f"/api/v1/age-groups/{group}/studies/")
            got = {s["id"] for s in items}
            self.assertEqual(got, studies_in(self.world, lo, hi), group)
            self.assertEqual(len(got), len(items), f"{group}: a study twice across pages")
        names = lambda g: {s["attributes"]["name"] for s in all_pages(  # noqa: E731
            self.srv.port, f"/api/v1/age-groups/{g}/studies/")}
        # The fixtures' intent, spelled out.
        self.assertEqual(len(names("babies")), 13)
        self.assertIn("First birthday", names("toddlers"))
        self.assertEqual(names("preschoolers"), {"Blocks"})
        self.assertEqual(names("school-age"), {"Teen puzzles"})
        self.assertEqual(names("adults"), {"Teen puzzles", "Grown-ups"})
        for g in GROUPS:
            self.assertFalse(names(g) & {"Paused", "Private", "Hidden lab study"})

    def test_lab_page_and_its_studies(self):
        slug = self.fx["slug"]
        r = request(self.srv.port, "GET", f"/api/v1/lab-pages/{slug}/", jsonapi=True)
        self.assertStatus(r, 200)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["slug"], a["institution"], a["description"]),
                         (slug, "Science U", "We study babies."))
        items = all_pages(self.srv.port, f"/api/v1/lab-pages/{slug}/studies/", page_size=5)
        self.assertEqual({s["id"] for s in items},
                         studies_in(self.world, 0, 10000, lab_id=self.fx["lab"]["id"]))
        self.assertEqual(len(items), 14)
        self.assertTrue(all(s["attributes"]["lab_slug"] == slug for s in items))

    def test_unknown_group_and_lab(self):
        for path in ("/api/v1/age-groups/teens/studies/", "/api/v1/lab-pages/no-such-lab/",
                     "/api/v1/lab-pages/no-such-lab/studies/",
                     f"/api/v1/lab-pages/{self.fx['hidden']}/",      # not approved
                     f"/api/v1/lab-pages/{self.fx['hidden']}/studies/",
                     "/api/v1/lab-pages/Bad%20Slug/"):
            r = request(self.srv.port, "GET", path, jsonapi=True)
            self.assertStatus(r, 404, path)
            self.assertEqual(r.json["errors"][0]["status"], "404", path)
        # A browser gets the readable page, with its 404.
        for path in ("/ages/teens/", "/labs/no-such-lab/", f"/labs/{self.fx['hidden']}/"):
            r = request(self.srv.port, "GET", path, headers={"Accept": "text/html"})
            self.assertStatus(r, 404, path)
            self.assertIn("text/html", r.headers["content-type"])
            self.assertIn("Page not found", r.text)
        for path in ("/ages/babies/", f"/labs/{self.fx['slug']}/"):
            r = request(self.srv.port, "GET", path, headers={"Accept": "text/html"})
            self.assertStatus(r, 200, path)
        # Past the last page, or not a page: 404 "Invalid page.", as every
        # list (upstream's pagination); a bad page size: 400.
        for q in ("page=9", "page=x", "page=0"):
            r = request(self.srv.port, "GET", "/api/v1/age-groups/adults/studies/?" + q,
                        jsonapi=True)
            self.assertStatus(r, 404, q)
        r = request(self.srv.port, "GET", "/api/v1/age-groups/adults/studies/?page_size=x",
                    jsonapi=True)
        self.assertStatus(r, 400)

    # -- point 5: the pages' text

    def test_pages_exist_and_only_site_admins_edit(self):
        r = request(self.srv.port, "GET", "/api/v1/site-pages/", jsonapi=True)
        self.assertStatus(r, 200)
        self.assertEqual([p["id"] for p in r.json["data"]], SLUGS)
        r = request(self.srv.port, "GET", "/api/v1/site-pages/nope/", jsonapi=True)
        self.assertStatus(r, 404)

        doc = {"data": {"type": "site-pages", "id": "faq",
                        "attributes": {"title": "Questions", "body": "# Hi"}}}
        before = self.world.sql("SELECT title || '|' || body FROM site_pages WHERE slug = 'faq'")
        # Anonymous: 401; a family and a researcher: 403 by the gate; a
        # site admin without the permission's grant: 403 by the statement.
        r = request(self.srv.port, "PATCH", "/api/v1/site-pages/faq/", json_body=doc, jsonapi=True)
        self.assertStatus(r, 401)
        for who in (self.world.user("family"), self.world.user("researcher", researcher=True)):
            r = request(self.srv.port, "PATCH", "/api/v1/site-pages/faq/", json_body=doc,
                        jsonapi=True, token=who["token"])
            self.assertStatus(r, 403)
        admin = self.admin()
        self.world.sql("DELETE FROM group_permissions WHERE permission = 'edit_site_pages'")
        try:
            r = request(self.srv.port, "PATCH", "/api/v1/site-pages/faq/", json_body=doc,
                        jsonapi=True, token=admin["token"])
            self.assertStatus(r, 403)
        finally:
            self.world.sql("INSERT INTO group_permissions (group_kind, group_name, permission)"
                           " VALUES ('site', 'admin', 'edit_site_pages')")
        self.assertEqual(self.world.sql(
            "SELECT title || '|' || body FROM site_pages WHERE slug = 'faq'"), before)

        # Bad inputs: nothing changes, nothing is logged.
        def patch(body, raw=None, slug="faq"):
            return request(self.srv.port, "PATCH", f"/api/v1/site-pages/{slug}/",
                           body=raw if raw is not None else json.dumps(body),
                           headers={"Content-Type": JSONAPI, "Accept": JSONAPI},
                           token=admin["token"])
        bad = [
            (patch(None, raw='{"data": {"type": "site-pages", "id": "faq", "attributes": {'), 400),
            (patch({"data": {"type": "site-pages", "id": "faq",
                             "attributes": {"body": "x" * 100001}}}), 400),
            (patch({"data": {"type": "site-pages", "id": "faq",
                             "attributes": {"title": "t" * 201}}}), 400),
            (patch({"data": {"type": "site-pages", "id": "faq",
                             "attributes": {"title": ""}}}), 400),
            (patch({"data": {"type": "site-pages", "id": "faq",
                             "attributes": {"slug": "x"}}}), 400),
            (patch({"data": {"type": "site-pages", "id": "faq", "attributes": {}}}), 400),
            (patch({"data": {"type": "labs", "id": "faq", "attributes": {"body": "x"}}}), 409),
            (patch({"data": {"type": "site-pages", "id": "terms",
                             "attributes": {"body": "x"}}}), 409),
            (patch({"data": {"type": "site-pages", "id": "nope", "attributes": {"body": "x"}}},
                   slug="nope"), 404),
        ]
        for r, status in bad:
            self.assertStatus(r, status)
            self.assertIn("errors", r.json)
        self.assertEqual(self.world.sql("SELECT count(*) FROM site_page_log"), "0")
        self.assertEqual(self.world.sql(
            "SELECT title || '|' || body FROM site_pages WHERE slug = 'faq'"), before)

        # A good edit, stored as typed (Markdown, HTML and all: it is never
        # rendered on the server) and logged.
        r = patch({"data": {"type": "site-pages", "id": "faq",
                            "attributes": {"title": "Questions", "body": HOSTILE}}})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["body"], HOSTILE)
        r = request(self.srv.port, "GET", "/api/v1/site-pages/faq/", jsonapi=True)
        self.assertEqual((r.json["data"]["attributes"]["title"],
                          r.json["data"]["attributes"]["body"]), ("Questions", HOSTILE))
        log = self.world.row("SELECT slug, admin_email, new_title, new_bytes, admin_id"
                             " FROM site_page_log")
        self.assertEqual(log, ["faq", admin["email"], "Questions",
                               str(len(HOSTILE.encode())), str(admin["id"])])
        r = request(self.srv.port, "GET", "/api/v1/admin/site-page-edits/", jsonapi=True,
                    token=admin["token"])
        self.assertStatus(r, 200)
        self.assertEqual([(e["attributes"]["page"], e["attributes"]["admin_email"])
                          for e in r.json["data"]], [("faq", admin["email"])])
        r = request(self.srv.port, "GET", "/api/v1/admin/site-page-edits/", jsonapi=True,
                    token=self.world.user("nosy", researcher=True)["token"])
        self.assertStatus(r, 403)

    def test_seed_fills_empty_pages_only(self):
        self.world.sql("UPDATE site_pages SET body = 'Kept.' WHERE slug = 'terms'")
        out = self.srv.ctl("seed-demo")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        bodies = dict(line.split("|", 1) for line in self.world.sql(
            "SELECT slug, CASE WHEN body = 'Kept.' THEN 'kept' WHEN body = '' THEN 'empty'"
            " ELSE 'seeded' END FROM site_pages").splitlines())
        self.assertEqual(bodies["terms"], "kept")
        for slug in ("privacy", "scientists", "contact"):
            self.assertEqual(bodies[slug], "seeded", slug)

    # -- point 6: support

    def outbox(self):
        return self.world.sql("SELECT count(*) FROM mail_outbox WHERE kind = 'support'")

    def test_support(self):
        def send(fields=None, raw=None, headers=None):
            body = raw if raw is not None else json.dumps(
                {"data": {"type": "support-messages", "attributes": fields}})
            return request(self.srv.port, "POST", "/api/v1/support/", body=body,
                           headers=headers or {"Content-Type": JSONAPI, "Accept": JSONAPI})
        good = {"name": "Pat", "email": "pat@example.test", "subject": "Cannot log in",
                "message": "Hello,\nthe login page says my password is wrong."}
        bad = [
            (send(raw="{\"data\": "), 400, None),
            (send(raw="[]"), 400, None),
            (send(good, headers={"Content-Type": "text/plain"}), 415, None),
            (send({**good, "email": ""}), 400, "/data/attributes/email"),
            (send({**good, "email": "not-an-address"}), 400, "/data/attributes/email"),
            (send({**good, "email": "a@b.test\r\nBcc: x@y.test"}), 400, "/data/attributes/email"),
            (send({**good, "subject": "x\nBcc: x@y.test"}), 400, "/data/attributes/subject"),
            (send({**good, "subject": "s" * 201}), 400, "/data/attributes/subject"),
            (send({**good, "message": "m" * 5001}), 400, "/data/attributes/message"),
            (send({**good, "message": ""}), 400, "/data/attributes/message"),
            (send({**good, "name": ["x"]}), 400, "/data/attributes/name"),
        ]
        for r, status, pointer in bad:
            self.assertStatus(r, status, pointer)
            if pointer:
                self.assertEqual(r.json["errors"][0]["source"]["pointer"], pointer)
        self.assertEqual(self.outbox(), "0")

        r = send(good)
        self.assertStatus(r, 202)
        row = self.world.row("SELECT to_addr, subject, body_text FROM mail_outbox"
                             " WHERE kind = 'support'")
        self.assertEqual(row[0], SUPPORT)
        self.assertEqual(row[1], "Support: Cannot log in")
        # The sent email, on disk (MAIL_DIR): to the support address, with
        # the sender's address to answer.
        def sent():
            for path in glob.glob(os.path.join(self.mail_dir, "*.eml")):
                with open(path, "rb") as f:
                    msg = email.message_from_bytes(f.read())
                if msg["X-Studyhub-Kind"] == "support":
                    return msg
            return None
        msg = wait_until(sent, 30, message="the support email")
        self.assertEqual(msg["To"], SUPPORT)
        text = next(p for p in msg.walk() if p.get_content_type() == "text/plain") \
            .get_payload(decode=True).decode()
        self.assertIn("Email: pat@example.test", text)
        self.assertIn("the login page says my password is wrong.", text)

        # SUPPORT_RATE_MAX=3 a window per address: the fourth is refused
        # and queues nothing.
        self.assertStatus(send({**good, "email": "sam@example.test"}), 202)
        self.assertStatus(send({**good, "email": "kim@example.test"}), 202)
        r = send({**good, "email": "lee@example.test"})
        self.assertStatus(r, 429)
        self.assertGreater(int(r.headers["retry-after"]), 0)
        self.assertEqual(self.outbox(), "3")


class PublicBrowserTest(BrowserTestCase):

    admin = rb.ResearcherBrowserTest.admin
    log_in_2fa = rb.ResearcherBrowserTest.log_in_2fa
    rows = rb.ResearcherBrowserTest.rows
    wait_rows = rb.ResearcherBrowserTest.wait_rows

    @classmethod
    def setUpClass(cls):
        cls.mail_dir = new_dir("mail")
        cls.srv = cls.class_server(env={"MAIL_DIR": cls.mail_dir, "MAIL_POLL_S": "1",
                                        "SUPPORT_EMAIL": SUPPORT, "SUPPORT_RATE_MAX": "50"})
        cls.world = World(cls.srv)
        cls.fx = make_studies(cls.world)
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    def cards(self):
        return [h.text for h in self.browser.find_elements("css selector", "#studies > li h2")]

    def no_sideways_scroll(self, what):
        self.assertTrue(self.browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"),
            f"{what} scrolls sideways on a phone")

    def test_lists_paginated_on_a_phone(self):
        size = self.browser.get_window_size()
        self.browser.set_window_size(375, 812)
        self.addCleanup(self.browser.set_window_size, size["width"], size["height"])

        self.open("/studies/")
        self.link("Babies (under 1)").click()
        self.wait_path("/ages/babies/")
        self.wait_until(lambda: self.heading() == "Studies for babies (under 1)", "the title")
        self.status_text("13 studies found.")
        self.wait_until(lambda: len(self.cards()) == 10, "ten cards")
        self.assertAccessible("babies, page 1")
        self.no_sideways_scroll("the babies list")
        first = self.cards()
        self.link("Next page").click()
        self.wait_until(lambda: "page=2" in self.browser.current_url, "page 2")
        self.wait_until(lambda: len(self.cards()) == 3, "three cards")
        self.assertFalse(set(first) & set(self.cards()), "a study on both pages")
        self.assertEqual(len(set(first) | set(self.cards())), 13)
        self.assertIn("Page 2 of 2", self.browser.find_element("id", "pages").text)
        self.assertAccessible("babies, page 2")
        self.link("Previous page").click()
        self.wait_until(lambda: self.cards() == first, "page 1 again")

        self.link("Adults (18 and over)").click()
        self.wait_path("/ages/adults/")
        self.wait_until(lambda: sorted(self.cards()) == ["Grown-ups", "Teen puzzles"],
                        "the adults' studies")
        self.assertTrue(self.browser.find_element("id", "pages").get_attribute("hidden"))
        # A card names its lab and links to the lab's page.
        self.link("Teen Lab-" + self.world.sql(
            f"SELECT split_part(name, '-', 2) FROM labs WHERE id = {self.fx['other']['id']}"))

        self.open(f"/labs/{self.fx['slug']}/")
        self.wait_until(lambda: self.heading().startswith("Baby Lab"), "the lab's name")
        self.status_text("14 studies found.")
        self.wait_until(lambda: len(self.cards()) == 10, "ten cards")
        self.assertIn("Dr Who", self.browser.find_element("id", "facts").text)
        self.assertAccessible("lab page")
        self.no_sideways_scroll("the lab page")
        self.link("Next page").click()
        self.wait_until(lambda: len(self.cards()) == 4, "four cards")

    def test_unknown_addresses_read_as_404(self):
        for path in ("/labs/no-such-lab/", "/ages/teens/", f"/labs/{self.fx['hidden']}/"):
            self.open(path)
            self.assertEqual(self.heading(), "Page not found", path)
            self.assertAccessible(path)

    def test_hostile_markdown_stays_text(self):
        admin = self.world.user("editor", researcher=True)
        self.world.sql(f"UPDATE users SET is_site_admin = true WHERE id = {admin['id']}")
        r = request(self.srv.port, "PATCH", "/api/v1/site-pages/resources/", jsonapi=True,
                    token=admin["token"], json_body={"data": {
                        "type": "site-pages", "id": "resources",
                        "attributes": {"title": "Resources <b>bold</b>", "body": HOSTILE}}})
        self.assertStatus(r, 200)
        self.open("/resources/")
        self.wait_until(lambda: self.browser.find_elements("css selector", "#content h1"),
                        "the rendered text")
        self.assertEqual(self.heading(), "Resources <b>bold</b>")
        found = self.browser.execute_script("""
            const c = document.getElementById('content');
            const bad = [];
            for (const el of c.querySelectorAll('*')) {
              if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED', 'STYLE'].includes(el.tagName))
                bad.push(el.tagName);
              for (const a of el.attributes) {
                if (a.name.startsWith('on') || a.name === 'style') bad.push(el.tagName + ' ' + a.name);
                if ((a.name === 'href' || a.name === 'src') &&
                    !/^(https?:|mailto:|\\/|#|x$)/i.test(a.value.trim()))
                  bad.push(el.tagName + ' ' + a.name + '=' + a.value);
              }
            }
            return {bad, pwned: window.__pwned === undefined ? null : window.__pwned,
                    text: c.textContent,
                    links: [...c.querySelectorAll('a')].map(a => a.getAttribute('href')),
                    cells: [...c.querySelectorAll('td')].map(td => td.className)};""")
        self.assertEqual(found["bad"], [])
        self.assertIsNone(found["pwned"])
        self.assertIn("<script>window.__pwned = 1</script>", found["text"])
        self.assertIn('<a href="javascript:window.__pwned=4">raw link</a>', found["text"])
        self.assertEqual(found["links"], ["https://example.org/ok"])
        self.assertEqual(found["cells"], ["align-left", "align-right"])
        self.assertAccessible("hostile page")
        # And nothing the CSP had to stop: no inline script or style tried.
        self.assertFalse([e for e in self.console() if "Content Security Policy" in e["message"]])

    def test_admin_edits_a_page(self):
        who = self.admin()
        self.log_in_2fa(who, "/admin/pages/")
        self.wait_until(lambda: self.field("Title").get_attribute("value"), "the first page")
        self.assertAccessible("admin pages")
        self.fill("Page", "privacy")
        self.wait_until(lambda: self.field("Title").get_attribute("value") == "Privacy",
                        "the privacy page")
        self.fill("Title", "Privacy notice")
        self.fill("Text (Markdown)", "## Your data\n\nIt is **yours**. <em>raw</em>")
        self.press("Preview")
        self.wait_until(lambda: self.browser.find_element("css selector", "#preview strong")
                        .text == "yours", "the preview")
        self.assertIn("<em>raw</em>", self.browser.find_element("id", "preview").text)
        self.assertAccessible("admin preview")
        self.press("Save page")
        self.status_text("Saved")
        self.wait_rows("log", "Privacy notice")
        self.assertIn(who["email"], self.browser.find_element("id", "log").text)
        self.assertEqual(self.world.row("SELECT s.title, u.email FROM site_pages s"
                                        " JOIN users u ON u.id = s.updated_by"
                                        " WHERE s.slug = 'privacy'"),
                         ["Privacy notice", who["email"]])

        self.open("/privacy/")
        self.wait_until(lambda: self.heading() == "Privacy notice", "the new title")
        self.assertEqual(self.browser.find_element("css selector", "#content h2").text,
                         "Your data")
        self.assertAccessible("privacy")
        # Every public page, with its link in the footer.
        for slug in SLUGS:
            self.open(f"/{slug}/")
            self.wait_until(lambda: self.heading() not in ("Loading…", ""), f"/{slug}/")
            self.assertAccessible(f"/{slug}/")

    def test_support_form(self):
        self.open("/")
        self.browser.find_element("xpath", "//footer//a[normalize-space()='Support']").click()
        self.wait_path("/support/")
        self.wait_loaded()
        self.assertAccessible("support")
        self.press("Send message")
        self.assertEqual(self.error_summary(),
                         ["Your email address: This field is required."])
        self.assertAccessible("support with errors")
        self.fill("Your email address", "pat@example.test")
        self.fill("What is it about?", "A question")
        self.fill("Your message", "x" * 10)
        self.browser.execute_script(
            "document.getElementById('message').removeAttribute('maxlength');")
        self.fill("Your message", "y" * 5001)
        self.press("Send message")
        self.assertEqual(self.error_summary(),
                         ["Your message: Use at most 5000 characters."])
        self.fill("Your message", "Where are the results of my study?")
        self.press("Send message")
        self.status_text("your message was sent")
        self.assertEqual(self.field("Your email address").get_attribute("value"), "")
        self.assertEqual(self.world.row("SELECT to_addr, subject FROM mail_outbox"
                                        " WHERE kind = 'support'"),
                         [SUPPORT, "Support: A question"])
