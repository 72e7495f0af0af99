"""test_privacy_browser: the account page's messages, data download link
and account erasure (with its confirmation) in headless chromium, checked
with axe-core (issue 15 points 4 and 5)."""

import os

from apifixtures import lit
from browser import BrowserTestCase
from harness import new_dir, psql, wait_until

import test_family_browser as fb


class PrivacyBrowserTest(BrowserTestCase):

    @classmethod
    def setUpClass(cls):
        cls.mail_dir = new_dir("mail")
        cls.srv = cls.class_server(env={"MAIL_DIR": cls.mail_dir, "MAIL_POLL_S": "1"})
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    # The family journey's own helpers (sign up, the emailed link, log in).
    mail_link = fb.FamilyBrowserTest.mail_link
    sign_up = fb.FamilyBrowserTest.sign_up
    verify = fb.FamilyBrowserTest.verify
    log_in = fb.FamilyBrowserTest.log_in

    def sql(self, text):
        return psql(text, db=self.srv.database).strip()

    def test_messages_download_and_erasure(self):
        address = self.sign_up("eve")
        self.verify(address)
        self.log_in(address)
        self.wait_path("/")
        uid, uu = self.sql(f"SELECT id || '|' || uuid FROM users WHERE email = {lit(address)}"
                           ).split("|")
        lab = self.sql("INSERT INTO labs (name) VALUES ('Browser lab') RETURNING id")
        study = self.sql(f"INSERT INTO studies (name, lab_id) VALUES ('Cat Study', {lab})"
                         " RETURNING id")
        self.sql("INSERT INTO family_messages (batch, study_id, user_id, kind, subject, body,"
                 f" emailed) VALUES (gen_random_uuid(), {study}, {uid}, 'study_updates',"
                 " 'Our results', E'Line one\\nLine two', true)")

        self.open("/account/")
        self.wait_until(lambda: self.visible("//article/h3[normalize-space()='Our results']"),
                        "the message")
        body = self.browser.find_element("xpath", "//article/p[@class='message-body']").text
        self.assertEqual(body, "Line one\nLine two")
        self.assertIn("Cat Study", self.browser.find_element("xpath", "//article").text)
        link = self.link("Download your data")
        self.wait_until(lambda: link.get_attribute("href").endswith(f"/api/v1/users/{uu}/data/"),
                        "the download link")
        self.assertAccessible("account with a message")

        self.press("Erase account")
        self.assertEqual(self.error_summary(),
                         ["Yes, erase my account: Tick the box to confirm that you want to"
                          " erase your account."])
        self.assertEqual(self.sql(f"SELECT count(*) FROM users WHERE id = {uid}"), "1")
        self.check("Yes, erase my account")
        self.press("Erase account")
        self.wait_path("/")
        self.assertEqual(self.sql(f"SELECT count(*) FROM users WHERE id = {uid}"), "0")
        self.assertEqual(self.sql(f"SELECT count(*) FROM family_messages WHERE user_id = {uid}"),
                         "0")

        def report():
            for name in os.listdir(self.mail_dir):
                with open(os.path.join(self.mail_dir, name), "rb") as f:
                    text = f.read().decode(errors="replace")
                if address in text and "Your account has been erased" in text:
                    return True
            return False
        wait_until(report, 30, interval=0.2, message="the erasure report")
        # The account pages now ask for a login.
        self.open("/account/")
        self.wait_path("/login/")
