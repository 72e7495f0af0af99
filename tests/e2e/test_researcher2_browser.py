"""test_researcher2_browser: the pieces issue 16 added to the researcher
and admin pages after its first journeys, in headless chromium against a
real server, PostgreSQL, Redis and file storage:

- the data page's video archive: asked for, its progress shown until the
  download link appears, the link serving the zip;
- the data page's messages to families: written, sent to every family
  whose response the researcher may read, listed with its counts;
- the admin's scheduled jobs and tasks page, as `studyhubctl jobs` and
  `tasks` show them;
- the study page's link opening the preview in a new tab, as one of the
  researcher's children (or the way to add one).

axe-core finds 0 serious or critical violations on each page."""

import os

from apifixtures import World, lit
from browser import BrowserTestCase
from harness import SLOW, new_dir

import test_family_browser as family
import test_researcher_browser as researcher


class Researcher2BrowserTest(BrowserTestCase):

    mail_link = family.FamilyBrowserTest.mail_link
    log_in = family.FamilyBrowserTest.log_in
    admin = researcher.ResearcherBrowserTest.admin
    log_in_2fa = researcher.ResearcherBrowserTest.log_in_2fa
    notice = researcher.ResearcherBrowserTest.notice
    rows = researcher.ResearcherBrowserTest.rows
    wait_rows = researcher.ResearcherBrowserTest.wait_rows
    fetch = researcher.ResearcherBrowserTest.fetch

    @classmethod
    def setUpClass(cls):
        root = new_dir("rpages2")
        cls.storage = os.path.join(root, "storage")
        os.makedirs(cls.storage)
        cls.srv = cls.class_server(env={
            "MAIL_DIR": os.path.join(root, "mail"), "MAIL_POLL_S": "1",
            "STORAGE_URL": "file://" + cls.storage,
            "STORAGE_LINK_SECRET": "test-link-secret",
            "TASK_POLL_S": 1,
        })
        cls.world = World(cls.srv)
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    def study_with_a_video(self, name):
        """A study of a new lab whose one response is consented and has one
        stored video; returns the study."""
        w = self.world
        lab = w.lab(name + " lab")
        st = w.study(lab, name)
        parent = w.user("parent")
        child = w.child(parent, "Kid")
        rid = w.row("INSERT INTO responses (study_id, child_id, sequence) VALUES"
                    f" ({st['id']}, {child['id']}, '[]') RETURNING uuid")[0]
        w.consent(rid, "accepted")
        video = f"videoStream_{st['uuid']}_1-video_{rid}_1700000000000_123.mp4"
        with open(os.path.join(self.storage, video), "wb") as f:
            f.write(b"a video of the session")
        w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name)"
              f" SELECT {st['id']}, id, '1-video', {lit(video)} FROM responses"
              f" WHERE uuid = {lit(rid)}")
        st["parent"] = parent
        return st

    def test_video_archive_and_messages_on_the_data_page(self):
        admin = self.admin()
        st = self.study_with_a_video("Archive study")
        self.log_in_2fa(admin, f"/researcher/studies/{st['uuid']}/data/")
        self.wait_until(lambda: self.visible("//p[@id='zips-empty']"), "the empty archive list")
        self.assertAccessible("data page with its new sections")

        # The archive: progress, then the link.
        self.press("Make a video archive")
        self.notice("The archive is being made")
        link = self.wait_until(lambda: self.visible("//ul[@id='zips']//a[normalize-space()="
                                                    "'Download the archive']"),
                               "the archive's link", timeout=90 * SLOW)
        item = self.browser.find_element("xpath", "//ul[@id='zips']/li").text
        self.assertIn("All videos (1)", item)
        self.assertIn("ready", item)
        href = link.get_attribute("href")
        self.assertIn("/storage/video-zips/", href)
        status, ctype, _ = self.fetch(href)
        self.assertEqual((status, ctype), (200, "application/zip"))
        # Handing out the link is in the access log.
        self.wait_rows("access", "video_zip_link")
        self.assertAccessible("data page with an archive")

        # A message to every family whose response may be read.
        self.fill("Kind", "next_session")
        self.fill("Subject", "Your next visit")
        self.fill("Message", "Come back next month, please.")
        self.press("Send to every family")
        self.notice("Message sent to 1 family")
        self.wait_rows("messages", "Your next visit")
        row = self.rows("messages")[0]
        self.assertIn("The next session", row)
        self.assertEqual(self.world.sql(
            "SELECT count(*) FROM family_messages m JOIN users u ON u.id = m.user_id"
            f" WHERE u.id = {st['parent']['id']}"), "1")
        # Refused input is said, nothing sent.
        self.fill("Subject", "x")
        self.browser.execute_script("document.getElementById('message-body').removeAttribute('required');")
        self.fill("Message", " ")
        self.press("Send to every family")
        self.wait_until(lambda: (lambda el: el if el is not None and "success" not in
                                 (el.get_attribute("class") or "") else None)(
            self.visible("//*[@id='done']")), "the refusal")
        self.assertEqual(self.world.sql("SELECT count(*) FROM family_messages"
                                        f" WHERE user_id = {st['parent']['id']}"), "1")
        self.assertAccessible("data page after a message")

    def test_scheduled_jobs_and_tasks_page(self):
        admin = self.admin()
        w = self.world
        w.sql("INSERT INTO tasks (kind, subject, state, started_at, finished_at, error) VALUES"
              " ('browser_test_kind', 'subject-1', 'failed', now() - interval '3 s', now(),"
              " 'the test task failed')")
        self.log_in_2fa(admin, "/admin/operations/")
        self.wait_rows("jobs", "cleanup_tasks")
        row = next(r for r in self.rows("jobs") if r.startswith("cleanup_tasks"))
        self.assertIn("04:45", row)
        self.assertAccessible("jobs and tasks")
        self.fill("Show", "finished")
        self.wait_rows("tasks", "the test task failed")
        row = next(r for r in self.rows("tasks") if "browser_test_kind" in r)
        self.assertIn("failed", row)
        self.assertAccessible("finished tasks")
        # Reached from the review page.
        self.open("/admin/")
        self.link("Scheduled jobs and tasks")

    def test_preview_link_opens_in_a_new_tab(self):
        admin = self.admin()
        w = self.world
        lab = w.lab("Preview lab")
        st = w.study(lab, "Preview study", state="created")
        self.log_in_2fa(admin, f"/researcher/studies/{st['uuid']}/")
        self.wait_until(lambda: self.heading() == "Preview study", "the study page")
        # No child yet: the page says how to get one.
        self.wait_until(lambda: self.visible("//p[@id='preview-nochild']"), "the way to add a child")
        uid = w.sql(f"SELECT id FROM users WHERE email = {lit(admin['email'])}")
        kid = w.child({"id": int(uid)}, "Pip")
        self.open(f"/researcher/studies/{st['uuid']}/")
        link = self.wait_until(lambda: self.visible("//a[@id='preview-link']"), "the preview link")
        self.assertEqual(link.get_attribute("target"), "_blank")
        self.assertIn("noopener", link.get_attribute("rel"))
        self.assertTrue(link.get_attribute("href").endswith(
            f"/exp/studies/{st['uuid']}/{kid['uuid']}/preview/"), link.get_attribute("href"))
        self.assertEqual(self.field("Preview as your child").text.strip(), "Pip")
        self.assertAccessible("study page with the preview link")
