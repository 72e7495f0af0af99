"""test_analytics_browser: issue 18's pages in headless chromium against a
real server, PostgreSQL and file storage:

- a study's analytics page: each chart drawn (uPlot's canvas), its table of
  numbers equal to counts this test makes, a small group shown as
  suppressed, the demographics question changed, the CSV link serving the
  same numbers; the lab's analytics page across its studies;
- the lab's participant browser: its families, children and consented
  sessions, de-identified for a researcher without the identifiable
  permission, with the study filter and each session's JSON link;
- the study page's housekeeping: the warning of a hash length too short
  for the study's children, and deleting the preview responses;
- the data page's JSON link of one response.

axe-core finds 0 serious or critical violations on each page."""

import collections
import json
import os

from apifixtures import World, lit
from browser import BrowserTestCase
from harness import new_dir

import test_family_browser as family
import test_researcher_browser as researcher


class AnalyticsBrowserTest(BrowserTestCase):

    mail_link = family.FamilyBrowserTest.mail_link
    log_in = family.FamilyBrowserTest.log_in
    admin = researcher.ResearcherBrowserTest.admin
    log_in_2fa = researcher.ResearcherBrowserTest.log_in_2fa
    notice = researcher.ResearcherBrowserTest.notice
    rows = researcher.ResearcherBrowserTest.rows
    fetch = researcher.ResearcherBrowserTest.fetch

    @classmethod
    def setUpClass(cls):
        root = new_dir("analytics-pages")
        cls.storage = os.path.join(root, "storage")
        os.makedirs(cls.storage)
        cls.srv = cls.class_server(env={"STORAGE_URL": "file://" + cls.storage,
                                        "TASK_POLL_S": 1})
        cls.world = World(cls.srv)
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    def study_with_families(self, lab, name, genders, digits=6):
        """A study with one consented response per child of genders (one
        family each, its child the given gender), one pending, one preview."""
        w = self.world
        st = w.study(lab, name, hash_digits=digits)
        for i, g in enumerate(genders + ["f", "m"]):
            parent = w.user(f"{name}-parent-{i}")
            w.sql(f"INSERT INTO demographic_data (user_id, country) VALUES ({parent['id']},"
                  f" {lit('US' if i % 2 else 'CA')})")
            child = w.child(parent, name=f"SECRETNAME{i}", gender=g, age_days=400)
            preview = i == len(genders) + 1
            ru = w.row("INSERT INTO responses (study_id, child_id, is_preview, completed,"
                       " demographic_snapshot_id) SELECT"
                       f" {st['id']}, {child['id']}, {lit(preview)}, true, max(d.id)"
                       f" FROM demographic_data d WHERE d.user_id = {parent['id']}"
                       " RETURNING uuid")[0]
            if i < len(genders):
                w.consent(ru, "accepted")
        return st

    def table_of(self, chart):
        box = f"//section[@data-chart='{chart}']"
        self.wait_until(lambda: self.visible(f"{box}//table/tbody/tr"), f"the {chart} table")
        return [[td.text for td in tr.find_elements("xpath", "./td")]
                for tr in self.browser.find_elements("xpath", f"{box}//table/tbody/tr")]

    def test_analytics_pages(self):
        admin = self.admin()
        w = self.world
        lab = w.lab("Charts lab")
        genders = ["f"] * 7 + ["m"] * 6 + ["o"] * 2
        st = self.study_with_families(lab, "Charts", genders)
        self.log_in_2fa(admin, f"/researcher/studies/{st['uuid']}/analytics/")
        self.wait_until(lambda: self.browser.execute_script(
            "return document.body.dataset.ready === 'true'"), "the charts")
        self.assertIn("Charts", self.heading())
        # every chart is drawn on a canvas
        for chart in ("over-time", "ages", "genders", "demographics", "rates"):
            self.assertTrue(self.visible(f"//section[@data-chart='{chart}']//canvas"), chart)
        want = collections.Counter(genders)
        got = {r[0]: r[1] for r in self.table_of("genders")}
        self.assertEqual(got, {"Girl": str(want["f"]), "Boy": str(want["m"]),
                               "Other": "fewer than 5"})
        self.assertEqual(self.table_of("over-time")[0][1], str(len(genders)))
        rates = {(r[0], r[1]): r[2] for r in self.table_of("rates")}
        self.assertEqual(rates[("consent", "accepted")], str(len(genders)))
        self.assertEqual(rates[("consent", "pending")], "1")
        self.assertAccessible("study analytics page")

        # another demographic question, then the CSV of the chart
        self.fill("Question", "country")
        countries = dict(self.table_of("demographics"))
        self.assertEqual(countries, {"US": "7", "CA": "8"})
        link = self.visible("//section[@data-chart='genders']//a[contains(., 'CSV')]")
        status, ctype, body = self.fetch(link.get_attribute("href"))
        self.assertEqual((status, ctype.split(";")[0]), (200, "text/csv"))
        self.assertEqual(body.splitlines()[0], "gender,children")
        self.assertIn("o,<5", body.splitlines())

        # the lab's analytics: both studies together
        st2 = self.study_with_families(lab, "Charts two", ["f"] * 5)
        self.open(f"/researcher/labs/{lab['uuid']}/analytics/")
        self.wait_until(lambda: self.browser.execute_script(
            "return document.body.dataset.ready === 'true'"), "the lab's charts")
        got = {r[0]: r[1] for r in self.table_of("genders")}
        self.assertEqual(got["Girl"], str(want["f"] + 5))
        self.assertAccessible("lab analytics page")
        self.assertTrue(st2)

    def test_participants_page(self):
        w = self.world
        lab = w.lab("Families lab")
        st = self.study_with_families(lab, "Browse", ["f", "m", "f"])
        # a lab member (no identifiable permission) with a two-factor session
        admin = self.admin()
        uid = w.sql(f"SELECT id FROM users WHERE email = {lit(admin['email'])}")
        w.sql(f"UPDATE users SET is_site_admin = false WHERE id = {uid}")
        w.member(lab, {"id": int(uid)}, "member")
        self.log_in_2fa(admin, f"/researcher/labs/{lab['uuid']}/participants/")
        self.wait_until(lambda: self.browser.execute_script(
            "return document.body.dataset.ready === 'true'"), "the families")
        fams = self.browser.find_elements("xpath", "//div[@id='families']/article")
        self.assertEqual(len(fams), 3)
        text = self.browser.find_element("id", "families").text
        self.assertNotIn("SECRETNAME", text)
        self.assertIn("Family ", text)
        self.assertIn("400", text)                        # age in days of each session
        self.assertAccessible("participants page")
        link = self.visible("//div[@id='families']//a[contains(., 'JSON')]")
        status, ctype, body = self.fetch(link.get_attribute("href"))
        self.assertEqual(status, 200)
        self.assertIn('"exp_data"', body)
        self.assertNotIn("SECRETNAME", body)
        # the study filter
        self.fill("Study", st["uuid"])
        self.wait_until(lambda: "Page 1 of 1 (3 in all)" in
                        self.browser.find_element("id", "pager").text, "the filtered list")

    def test_study_page_housekeeping(self):
        admin = self.admin()
        w = self.world
        lab = w.lab("Tidy lab")
        # 40 children at one character: ids collide
        st = self.study_with_families(lab, "Tidy", ["f"] * 38, digits=1)
        video = f"videoStream_{st['uuid']}_0-x_preview_1_1.mp4"
        w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name)"
              f" SELECT {st['id']}, id, '0-x', {lit(video)} FROM responses"
              f" WHERE study_id = {st['id']} AND is_preview")
        with open(os.path.join(self.storage, video), "wb") as f:
            f.write(b"preview video")
        self.log_in_2fa(admin, f"/researcher/studies/{st['uuid']}/")
        warning = self.wait_until(lambda: self.visible("//*[@id='hash-warning']"),
                                  "the hash warning")
        self.assertIn("share a hashed child id", warning.text)
        self.assertIn("40 children", self.browser.find_element("id", "hash-summary").text)
        self.assertAccessible("study page with the hash warning")
        # without the box ticked nothing happens
        self.press("Delete all preview responses")
        self.notice("Tick the box")
        self.assertEqual(w.sql(f"SELECT count(*) FROM responses WHERE study_id = {st['id']}"
                               " AND is_preview"), "1")
        self.check("Yes, delete every preview response of this study and its videos"
                   " (this cannot be undone)")
        self.press("Delete all preview responses")
        self.notice("Deleted 1 preview responses and 1 videos")
        self.assertEqual(w.sql(f"SELECT count(*) FROM responses WHERE study_id = {st['id']}"
                               " AND is_preview"), "0")
        self.wait_until(lambda: not os.path.exists(os.path.join(self.storage, video)),
                        "the preview video deleted from storage", timeout=60)

        # the data page: one response as JSON
        self.open(f"/researcher/studies/{st['uuid']}/data/")
        link = self.wait_until(lambda: self.visible("//table[@id='responses']//a[contains(., 'JSON')]"),
                               "a response's JSON link")
        status, ctype, body = self.fetch(link.get_attribute("href"))
        self.assertEqual((status, ctype.split(";")[0]), (200, "application/json"))
        doc = json.loads(body)
        self.assertEqual(doc["consent"]["ruling"], "accepted")
        self.assertNotIn("name", doc["child"])
