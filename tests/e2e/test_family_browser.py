"""test_family_browser: a family's way in, in headless chromium (issue 14
point 7): sign up, follow the emailed link, log in, add a child, change
it, save the demographics twice and see the history, set the email
preferences, log out; the two-step login; errors shown in the summary and
beside their fields; and axe-core on every page with no serious or
critical violation.  Fields are found by their labels, buttons and links
by their text."""

import email
import glob
import os
import re
import time

from browser import BrowserTestCase
from harness import Client, new_dir

from test_accounts import PASSWORD, totp

PAGES = ["/", "/signup/", "/login/", "/accounts/password-reset/",
         "/accounts/password-reset/" + "0" * 64 + "/", "/accounts/verify/" + "0" * 64 + "/",
         "/no/such/page/"]
FAMILY_PAGES = ["/children/", "/demographics/", "/account/", "/logout/"]   # asks first


class FamilyBrowserTest(BrowserTestCase):

    @classmethod
    def setUpClass(cls):
        cls.mail_dir = new_dir("mail")
        cls.srv = cls.class_server(env={"MAIL_DIR": cls.mail_dir, "MAIL_POLL_S": "1"})
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    # -- helpers

    def mail_link(self, address, what):
        """The /accounts/<what>/<token>/ link of the newest email to address."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for path in sorted(glob.glob(os.path.join(self.mail_dir, "*.eml")),
                               key=os.path.getmtime, reverse=True):
                with open(path, "rb") as f:
                    msg = email.message_from_bytes(f.read())
                if address not in msg["To"]:
                    continue
                part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
                text = part.get_payload(decode=True).decode()
                found = re.search(rf"https?://\S+/accounts/{what}/[0-9a-f]{{64}}/", text)
                if found:
                    return found.group(0)
            time.sleep(0.1)
        self.fail(f"no {what} email to {address} in {self.mail_dir}")

    def sign_up(self, name):
        address = f"{name}-{int(time.time() * 1000)}@example.test"
        self.open("/signup/")
        self.fill("What should we call you? (optional)", name.title())
        self.fill("Email address", address)
        self.fill("Create a password", PASSWORD)
        self.fill("Type the password again", PASSWORD)
        self.press("Create account")
        self.status_text("We have sent an email")   # fails unless the notice says it
        return address

    def verify(self, address):
        self.browser.get(self.mail_link(address, "verify"))
        self.wait_loaded()
        self.status_text("your email address is confirmed")   # fails unless the notice says it

    def log_in(self, address, password=PASSWORD):
        self.open("/login/")
        self.fill("Email address", address)
        self.fill("Password", password)
        self.press("Log in")

    def rows(self, table_id):
        return [r.text for r in self.browser.find_elements(
            "xpath", f"//table[@id='{table_id}']/tbody/tr")]

    # -- tests

    def test_family_journey(self):
        self.open("/")
        self.assertAccessible("home")
        self.link("Create an account").click()
        self.wait_path("/signup/")
        self.assertAccessible("sign up")

        # A mistake first: the summary links to the field, the message
        # sits beside it, and nothing is sent until it is right.
        self.fill("Email address", "ada@example.test")
        self.fill("Create a password", PASSWORD)
        self.fill("Type the password again", PASSWORD + "x")
        self.press("Create account")
        self.assertEqual(self.error_summary(),
                         ["Type the password again: The two passwords are not the same."])
        self.assertEqual(self.field("Type the password again").get_attribute("aria-invalid"),
                         "true")
        self.assertAccessible("sign up with errors")

        address = self.sign_up("ada")
        self.verify(address)
        self.assertAccessible("email confirmed")
        self.link("Log in").click()
        self.wait_path("/login/")
        self.log_in(address)
        self.wait_path("/")
        self.wait_until(lambda: "Welcome back" in self.browser.find_element("id", "welcome").text,
                        "the welcome")

        # Children: the form's errors, then a child added and changed.
        self.link("Children").click()
        self.wait_path("/children/")
        self.wait_loaded()
        self.assertAccessible("children")
        self.press("Add child")
        self.assertEqual(sorted(self.error_summary()),
                         ["Birthday: This field is required.",
                          "First name: This field is required.",
                          "Gender: This field is required."])
        self.fill("First name", "Ada")
        self.fill("Birthday", "2023-03-04")
        self.check("Female")
        self.fill("How many weeks pregnant were you when the child was born?", "38")
        self.fill("Languages the child hears at home (optional)", "en fr")
        self.press("Add child")
        self.assertEqual(self.status_text("Ada is added."), "Ada is added.")
        self.wait_until(lambda: self.rows("children"), "the child in the list")
        self.assertIn("Ada", self.rows("children")[0])
        self.assertIn("2023-03-04", self.rows("children")[0])

        self.link("Change Ada's details").click()
        self.wait_until(lambda: self.heading() == "Change Ada's details", "the edit page")
        self.assertAccessible("change a child")
        self.assertEqual(self.field("How many weeks pregnant were you when the child was born?")
                         .get_attribute("value"), "38")
        self.fill("First name", "Ada Mae")
        self.press("Save changes")
        self.assertEqual(self.status_text("Your changes are saved."), "Your changes are saved.")
        self.wait_until(lambda: self.heading() == "Change Ada Mae's details", "the new name")

        # Demographics: two saves, two snapshots in the history.
        self.link("About your family").click()
        self.wait_path("/demographics/")
        self.wait_loaded()
        self.assertAccessible("demographics")
        self.fill("How many children do you have?", "2")
        self.check("Asian")
        self.fill("Country where you live", "us")
        self.press("Save answers")
        self.assertEqual(self.status_text("Your answers are saved."), "Your answers are saved.")
        self.wait_until(lambda: len(self.rows("history")) == 1, "one saved answer")
        self.fill("How many children do you have?", "3")
        self.press("Save answers")
        self.wait_until(lambda: len(self.rows("history")) == 2, "two saved answers")
        newest, older = self.rows("history")
        self.assertIn("3", newest)
        self.assertIn("US", older)
        self.assertAccessible("demographics with history")

        # Email preferences.
        self.link("Account").click()
        self.wait_path("/account/")
        self.wait_until(lambda: self.field("What should we call you?").get_attribute("value"),
                        "the profile")
        self.assertEqual(self.field("What should we call you?").get_attribute("value"), "Ada")
        self.assertTrue(self.field("When there are new studies your child can take part in")
                        .is_selected())
        self.check("When there are new studies your child can take part in", False)
        self.press("Save")
        self.assertEqual(self.status_text("Your changes are saved."), "Your changes are saved.")
        self.assertAccessible("account")

        # Log out: the session is gone, and family pages ask for a login.
        self.link("Log out").click()
        self.wait_path("/logout/")
        self.wait_until(lambda: self.status_text() == "You are logged out.", "the logout")
        self.assertIsNone(self.cookie("sessionid"))
        self.browser.get(self.srv.base + "/children/")
        self.wait_path("/login/")
        self.assertIn("next=%2Fchildren%2F", self.browser.current_url)

        # A link from elsewhere (no same-site referrer) asks first.
        self.log_in(address)
        self.wait_path("/")
        self.open("/logout/")
        self.press("Log out")
        self.wait_until(lambda: self.status_text() == "You are logged out.", "the logout")
        self.assertIsNone(self.cookie("sessionid"))

        # What the browser did is what the API holds.
        c = Client(self.srv.port)
        r = c.post("/api/v1/auth/login/", json_body={"email": address, "password": PASSWORD})
        self.assertStatus(r, 200)
        kids = c.get("/api/v1/children/").json["data"]
        self.assertEqual([k["attributes"]["given_name"] for k in kids], ["Ada Mae"])
        self.assertEqual(kids[0]["attributes"]["language_list"], "en fr")
        me = c.get(f"/api/v1/users/{r.json['data']['id']}/").json["data"]["attributes"]
        self.assertFalse(me["email_new_studies"])
        self.assertTrue(me["email_next_session"])
        # A session's write needs the X-CSRFToken header the pages send.
        doc = {"data": {"type": "children", "attributes": {
            "given_name": "Eve", "birthday": "2024-01-01", "gender": "f"}}}
        r = c.post("/api/v1/children/", json_body=doc, jsonapi=True)
        self.assertStatus(r, 403)
        self.assertEqual(len(c.get("/api/v1/children/").json["data"]), 1)
        r = c.post("/api/v1/children/", json_body=doc, jsonapi=True,
                   headers={"X-CSRFToken": c.cookies["csrftoken"]})
        self.assertStatus(r, 201)

    def test_two_step_login_and_removing_a_child(self):
        address = self.sign_up("grace")
        self.verify(address)
        # Two-step verification turned on through the API.
        c = Client(self.srv.port)
        c.post("/api/v1/auth/login/", json_body={"email": address, "password": PASSWORD})
        csrf = {"X-CSRFToken": c.cookies["csrftoken"]}
        secret = c.post("/api/v1/accounts/totp/", headers=csrf).json["data"]["attributes"]["secret"]
        self.assertStatus(c.post("/api/v1/accounts/totp/confirm/",
                                 json_body={"code": totp(secret)[0]}, headers=csrf), 200)
        kid = c.post("/api/v1/children/", headers=csrf, jsonapi=True, json_body={
            "data": {"type": "children", "attributes": {
                "given_name": "Bo", "birthday": "2022-01-01", "gender": "m"}}}).json["data"]

        self.browser.get(self.srv.base + "/login/?next=/children/")
        self.wait_loaded()
        self.fill("Email address", address)
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_until(lambda: self.visible("//label[normalize-space()="
                                             "'Code from your authenticator app']"),
                        "the second step")
        self.assertAccessible("second step")
        self.fill("Code from your authenticator app", "000000" if totp(secret)[0] != "000000"
                  else "111111")
        self.press("Continue")
        self.assertEqual(len(self.error_summary()), 1)
        # A fresh step: the code of the step before was used to enrol.
        time.sleep(max(0.0, 30 - time.time() % 30 + 0.2) if time.time() % 30 > 27 else 0)
        self.fill("Code from your authenticator app", totp(secret, step_offset=1)[0])
        self.press("Continue")
        self.wait_path("/children/")

        self.link("Change Bo's details").click()
        self.wait_until(lambda: self.heading() == "Change Bo's details", "the edit page")
        self.press("Remove child")
        self.assertEqual(self.error_summary(),
                         ["Yes, remove this child: Tick the box to confirm that you want to"
                          " remove this child."])
        self.check("Yes, remove this child")
        self.press("Remove child")
        self.wait_path("/children/")
        self.wait_until(lambda: self.visible("//p[@id='empty']"), "the empty list")
        self.browser.get(self.srv.base + f"/children/{kid['id']}/")
        self.wait_loaded()
        self.status_text("could not find this child")   # fails unless the notice says it

    def test_password_reset_from_the_emailed_link(self):
        address = self.sign_up("lin")
        self.verify(address)
        self.open("/login/")
        self.link("Forgotten your password?").click()
        self.wait_path("/accounts/password-reset/")
        self.fill("Email address", address)
        self.press("Send the link")
        self.status_text("we have sent it a link")   # fails unless the notice says it
        self.browser.get(self.mail_link(address, "password-reset"))
        self.wait_loaded()
        self.assertEqual(self.heading(), "Choose a new password")
        new = PASSWORD + " again"
        self.fill("New password", new)
        self.fill("Type the new password again", new + "!")
        self.press("Save the new password")
        self.assertEqual(self.error_summary(),
                         ["Type the new password again: The two passwords are not the same."])
        self.fill("Type the new password again", new)
        self.press("Save the new password")
        self.status_text("Your password is changed.")   # fails unless the notice says it
        self.link("Log in with it").click()
        self.log_in(address, new)
        self.wait_path("/")
        # The link works once.
        self.browser.delete_all_cookies()
        self.browser.get(self.mail_link(address, "password-reset"))
        self.wait_loaded()
        self.fill("New password", new + "2")
        self.fill("Type the new password again", new + "2")
        self.press("Save the new password")
        self.assertEqual(len(self.error_summary()), 1)

    def test_every_page_is_accessible(self):
        for path in PAGES:
            with self.subTest(path=path):
                self.open(path)
                self.assertAccessible(path)
        address = self.sign_up("hopper")
        self.verify(address)
        self.log_in(address)
        self.wait_path("/")
        for path in FAMILY_PAGES + ["/"]:
            with self.subTest(path=path):
                self.open(path)
                self.wait_path(path)
                self.assertAccessible(path)
