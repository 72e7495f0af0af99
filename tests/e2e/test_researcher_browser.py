"""test_researcher_browser: the researcher and admin pages (issue 16) in
headless chromium, against a real server, PostgreSQL, Redis, storage, the
GitHub stand-in and real builds of tests/runners/good.

The researcher journey: sign up and confirm the address; an admin grants
the researcher role on the users page; the researcher logs in, is sent to
the two-factor page, scans (reads) the key, enrols and sees the recovery
codes; creates a lab, which the admin approves from the review page;
creates a study, types a protocol with an error (shown with its line) and
fixes it; submits; the admin finds it in the review queue (oldest first)
and approves it; the researcher builds it and watches the stages arrive
from the event stream, activates it; a family's response made through the
API waits in the consent manager, whose consent video is in the page; the
researcher accepts it with a comment, opens the response's videos, stars
it, and downloads every export through the page's links; the access log
shows the reads.  The admin journey: search users, grant and revoke roles,
deactivate (the user's session ends), reset two-factor; an admin cannot
remove their own role.  Every page is checked with axe-core (0 serious or
critical violations)."""

import json
import os
import re
import time

from apifixtures import World, lit
from browser import BrowserTestCase
from github_stub import GitHubStub
from harness import Client, SLOW, free_port, new_dir, psql

import test_family_browser as family
from test_accounts import PASSWORD, totp

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.join(os.path.dirname(HERE), "runners")
EXPORTS = ["responses.json", "summary.csv", "summary-dictionary.csv", "children.csv",
           "children-dictionary.csv", "frames.csv", "frames-dictionary.csv",
           "demographics.csv", "demographics-dictionary.csv", "demographics.json"]
BAD_PROTOCOL = '{\n  "frames": {\n    "intro": {"kind": "exp-lookit-text"}\n  },\n  "sequence": ["intro"]\n  "x": 1\n}'
GOOD_PROTOCOL = '{\n  "frames": {\n    "intro": {"kind": "exp-lookit-text"}\n  },\n  "sequence": ["intro"]\n}'


class ResearcherBrowserTest(BrowserTestCase):

    # The family test's helpers (sign-up, the emailed link, login), borrowed
    # rather than inherited so its tests do not run twice.
    mail_link = family.FamilyBrowserTest.mail_link
    sign_up = family.FamilyBrowserTest.sign_up
    verify = family.FamilyBrowserTest.verify
    log_in = family.FamilyBrowserTest.log_in

    @classmethod
    def setUpClass(cls):
        runners = new_dir("runners")
        import shutil
        for name in ("good", "fails"):
            shutil.copytree(os.path.join(RUNNERS, name), os.path.join(runners, name), symlinks=True)
        cls.stub = GitHubStub(free_port(), runners).start()
        cls.addClassCleanup(cls.stub.stop)
        root = new_dir("rpages")
        os.chmod(root, 0o711)   # builds run as BUILD_UID and must reach BUILD_ROOT
        cls.mail_dir = os.path.join(root, "mail")
        cls.srv = cls.class_server(env={
            "MAIL_DIR": cls.mail_dir, "MAIL_POLL_S": "1",
            "GITHUB_API_URL": cls.stub.url,
            "RUNNER_REPO_URL": cls.stub.repo_url("runners/good"),
            "RUNNER_REPO_ALLOW": cls.stub.url + "/",
            "BUILD_ROOT": os.path.join(root, "builds"),
            "STORAGE_URL": "file://" + os.path.join(root, "storage"),
            "STORAGE_LINK_SECRET": "test-link-secret",
            # Slow enough that the page shows a stage before the end.
            "BUILD_ENV": "BUILD_SLEEP_S=2",
            "BUILD_TIMEOUT_S": 120,
            "BUILD_FETCH_TIMEOUT_S": 30,
            "TASK_POLL_S": 1,
        })
        cls.world = World(cls.srv)
        cls.start_browser()

    def setUp(self):
        super().setUp()
        self.browser.delete_all_cookies()

    # -- helpers

    def admin(self):
        """A site admin with two-factor on (through the API), and its
        recovery codes, each of which logs the browser in once."""
        address = f"admin-{int(time.time() * 1000)}@example.test"
        c = Client(self.srv.port)
        self.assertStatus(c.post("/api/v1/accounts/signup/", json_body={
            "email": address, "password": PASSWORD}), 201)
        self.world.sql(f"UPDATE users SET email_verified_at = now(), is_researcher = true,"
                       f" is_site_admin = true WHERE email = {lit(address)}")
        c.post("/api/v1/auth/login/", json_body={"email": address, "password": PASSWORD})
        csrf = {"X-CSRFToken": c.cookies["csrftoken"]}
        secret = c.post("/api/v1/accounts/totp/", headers=csrf).json["data"]["attributes"]["secret"]
        r = c.post("/api/v1/accounts/totp/confirm/", json_body={"code": totp(secret)[0]}, headers=csrf)
        self.assertStatus(r, 200)
        return {"email": address, "codes": list(r.json["data"]["attributes"]["recovery_codes"])}

    def log_in_2fa(self, who, next_path="/"):
        """Logs the browser in as who with one of its recovery codes."""
        self.browser.delete_all_cookies()
        self.browser.get(self.srv.base + "/login/?next=" + next_path)
        self.wait_loaded()
        self.fill("Email address", who["email"])
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_until(lambda: self.visible("//label[normalize-space()="
                                             "'Code from your authenticator app']"),
                        "the second step")
        self.fill("Code from your authenticator app", who["codes"].pop())
        self.press("Continue")
        self.wait_path(next_path)
        self.wait_loaded()

    def notice(self, says):
        return self.wait_until(
            lambda: (lambda el: el.text if el is not None and says in el.text else None)(
                self.visible("//*[@id='done']")),
            f"the notice saying {says!r}")

    def rows(self, table_id):
        return [r.text for r in self.browser.find_elements(
            "xpath", f"//table[@id='{table_id}']/tbody/tr")]

    def wait_rows(self, table_id, text):
        return self.wait_until(lambda: any(text in r for r in self.rows(table_id)),
                               f"a row with {text!r} in #{table_id}")

    def fetch(self, path):
        """GET path from the page (its cookies), as a link's download does:
        (status, content type, body text)."""
        return self.browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {credentials: 'same-origin'})"
            "  .then(r => r.text().then(t => done([r.status, r.headers.get('content-type'), t])))"
            "  .catch(e => done([0, '', String(e)]));", path)

    # -- tests

    def test_researcher_journey(self):
        admin = self.admin()

        # A visitor signs up as anyone does, then asks for researcher access.
        address = self.sign_up("rita")
        self.verify(address)

        # The admin grants the researcher role from the users page.
        self.log_in_2fa(admin, "/admin/users/")
        self.assertAccessible("admin users")
        self.fill("Email or name contains", "rita")
        self.press("Search")
        self.wait_until(lambda: len(self.rows("users")) == 1 and address in self.rows("users")[0],
                        "the search to find rita only")
        self.press(f"Grant researcher for {address}")
        self.notice(f"{address}: is a researcher")

        # The researcher logs in and is sent to enrol in two-factor first.
        self.browser.delete_all_cookies()
        self.browser.get(self.srv.base + "/login/?next=/researcher/")
        self.wait_loaded()
        self.fill("Email address", address)
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_path("/researcher/two-factor/")
        self.wait_loaded()
        self.assertAccessible("two-factor start")
        self.press("Set up two-factor authentication")
        qr = self.wait_until(lambda: self.visible("//*[@id='qr']/*[local-name()='svg']"), "the QR code")
        self.assertIn("QR code", qr.get_attribute("aria-label"))
        self.assertGreater(len(qr.find_element("xpath", "./*[local-name()='path']").get_attribute("d")), 500)
        secret = self.browser.find_element("id", "secret").text
        self.assertRegex(secret, r"^[A-Z2-7]{32}$")
        self.assertAccessible("two-factor QR code")
        self.fill("Code from the app", "12345")   # five digits: refused, beside the field
        self.press("Turn on two-factor authentication")
        self.assertEqual(len(self.error_summary()), 1)
        self.fill("Code from the app", totp(secret)[0])
        self.press("Turn on two-factor authentication")
        self.notice("Two-factor authentication is on")
        codes = self.wait_until(lambda: [li.text for li in self.browser.find_elements(
            "xpath", "//ul[@id='codes']/li")], "the recovery codes")
        self.assertEqual(len(codes), 10)
        self.assertAccessible("recovery codes")
        rita = {"email": address, "codes": codes}
        self.link("Continue").click()
        self.wait_path("/researcher/")
        self.wait_loaded()
        self.assertAccessible("studies, none yet")
        self.wait_until(lambda: self.visible("//p[@id='no-labs']"), "the hint to make a lab")

        # A lab: created, then waiting for the admin's approval.
        self.link("Labs").click()
        self.wait_path("/researcher/labs/")
        self.wait_loaded()
        self.assertAccessible("labs")
        self.fill("Lab name", "Rita's Baby Lab")
        self.fill("Institution (optional)", "Example University")
        self.press("Create lab")
        self.wait_until(lambda: self.heading() == "Rita's Baby Lab", "the lab page")
        lab_path = re.sub(r"^https?://[^/]+", "", self.browser.current_url)
        self.wait_rows("members", address)
        self.assertIn("Not yet", self.browser.find_element("id", "details").text)
        self.assertAccessible("lab")

        self.log_in_2fa(admin, "/admin/")
        self.wait_rows("labs", "Rita's Baby Lab")
        self.assertAccessible("admin review")
        self.press("Approve Rita's Baby Lab")
        self.notice("Rita's Baby Lab is approved")
        self.wait_until(lambda: not any("Rita" in r for r in self.rows("labs")), "the lab to leave the list")

        # A study, and its protocol: an error is shown with its line, then fixed.
        self.log_in_2fa(rita, "/researcher/")
        self.wait_until(lambda: self.visible("//form[@id='create']"), "the study form")
        self.fill("Study name", "Looking at cats")
        self.fill("Lab", self.browser.execute_script(
            "return [...document.querySelectorAll('#lab option')]"
            ".find(o => o.textContent === \"Rita's Baby Lab\").value"))
        self.press("Create study")
        self.wait_until(lambda: self.heading() == "Looking at cats", "the study page")
        study_path = re.sub(r"^https?://[^/]+", "", self.browser.current_url)
        study_uuid = study_path.strip("/").split("/")[-1]
        self.wait_until(lambda: self.browser.find_element("id", "state").text == "created", "the state")
        self.wait_rows("people", address)          # the creator: the study's admin group
        self.assertAccessible("study, created")
        box = self.field("Protocol (JSON)")
        box.clear()
        box.send_keys(BAD_PROTOCOL)
        check = self.wait_until(lambda: (lambda t: t if t.startswith("Line 6") else None)(
            self.browser.find_element("id", "structure-check").text), "the error on line 6")
        self.assertIn("Not valid JSON", check)
        self.press("Save changes")
        summary = self.error_summary()
        self.assertEqual(len(summary), 1)
        self.assertIn("Line 6", summary[0])
        self.assertAccessible("protocol with an error")
        box.clear()
        box.send_keys(GOOD_PROTOCOL)
        self.wait_until(lambda: self.browser.find_element("id", "structure-check").text
                        == "The protocol is valid JSON.", "the protocol to be valid")
        self.press("Save changes")
        self.notice("Your changes are saved")
        saved = json.loads(self.world.sql(f"SELECT structure::text FROM studies WHERE uuid = {lit(study_uuid)}"))
        self.assertEqual(saved["sequence"], ["intro"])

        self.fill("Comments (optional)", "Ready for review, thanks!")
        self.press("Submit")
        self.notice("The study is now submitted")
        self.wait_rows("log", "submitted")

        # The admin reviews: the queue has it, the study page approves it.
        self.log_in_2fa(admin, "/admin/")
        self.wait_rows("queue", "Looking at cats")
        self.link("Review Looking at cats").click()
        self.wait_path(study_path)
        self.wait_until(lambda: self.heading() == "Looking at cats", "the study page")
        self.assertAccessible("study, submitted, as the admin")
        self.press("Approve")
        self.notice("The study is now approved")

        # The researcher builds and watches the stages arrive, then activates.
        self.log_in_2fa(rita, study_path)
        self.wait_until(lambda: self.browser.find_element("id", "state").text == "approved", "approved")
        self.press("Build the experiment")
        self.wait_until(lambda: self.browser.find_elements("xpath", "//ol[@id='stages']/li"),
                        "a first stage on the page")
        self.assertAccessible("study, building")
        self.wait_until(lambda: self.browser.find_element("id", "live-state").text == "succeeded",
                        "the build to succeed", timeout=120 * SLOW)
        stages = [li.text for li in self.browser.find_elements("xpath", "//ol[@id='stages']/li")]
        self.assertGreater(len(stages), 2, stages)
        self.assertTrue(all("succeeded" in s for s in stages), stages)
        self.wait_rows("builds", "succeeded")
        self.wait_until(lambda: "yes" in self.browser.find_element("id", "runner").text, "built: yes")
        self.wait_until(lambda: self.button("Activate").is_enabled(), "Activate to be enabled")
        self.press("Activate")
        self.notice("The study is now active")

        # A family takes part (through the API, as the runner would).
        parent = self.world.user("parent")
        child = self.world.child(parent)
        study = {"uuid": study_uuid}
        response = self.world.create_response(parent, child, study)
        sid = self.world.sql(f"SELECT id FROM studies WHERE uuid = {lit(study_uuid)}")
        rid = self.world.sql(f"SELECT id FROM responses WHERE uuid = {lit(response)}")
        for consent in (True, False):
            full = (f"{'consent-' if consent else ''}videoStream_{study_uuid}_0-video-consent_"
                    f"{response}_{int(time.time() * 1000)}_{1234 if consent else 5678}")
            self.world.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name,"
                           f" is_consent_footage) VALUES ({sid}, {rid}, '0-video-consent',"
                           f" {lit(full)}, {lit(consent)})")

        self.link("Responses and data").click()
        self.wait_path(study_path + "data/")
        self.wait_loaded()
        card = self.wait_until(lambda: self.visible("//form[contains(@class,'consent')]"), "the consent card")
        video = card.find_element("tag name", "video")
        self.assertIn("/storage/", video.get_attribute("src"))
        # Before a ruling, the response is not among those researchers see.
        self.wait_until(lambda: self.visible("//p[@id='responses-empty']"), "no visible response")
        self.assertAccessible("consent manager")
        card.find_element("tag name", "textarea").send_keys("Parent and child visible, consent given")
        self.press("Accept consent")
        self.notice("Consent accepted")
        ruling = self.world.sql("SELECT action || '|' || comments FROM consent_rulings cr"
                                f" JOIN responses r ON r.id = cr.response_id WHERE r.uuid = {lit(response)}")
        self.assertEqual(ruling, "accepted|Parent and child visible, consent given")

        self.wait_until(lambda: len(self.rows("responses")) == 1, "the response in the list")
        self.press("Open videos")
        self.wait_until(lambda: len(self.browser.find_elements("xpath", "//ul[@id='video-list']//video")) == 2,
                        "both videos of the response")
        self.press("☆ Star")
        self.notice("Starred")
        self.assertEqual(self.world.sql(f"SELECT researcher_star FROM responses WHERE uuid = {lit(response)}"), "t")
        self.assertAccessible("responses and videos")

        # Every export, through the page's own links, de-identified unless asked.
        links = [a.get_attribute("href") for a in self.browser.find_elements("xpath", "//ul[@id='exports']//a")]
        self.assertEqual([l.rsplit("/", 1)[-1] for l in links], EXPORTS)
        for href in links:
            status, ctype, body = self.fetch(href)
            self.assertEqual(status, 200, (href, body[:300]))
            self.assertTrue(body, href)
        status, _, body = self.fetch(links[1])
        self.assertIn(response, body)
        self.assertNotIn("Sally", body)            # the child's name: not without the option
        self.check("Include identifiable data (names, birthdays), when you have the permission")
        ident = self.browser.find_element("xpath", "//ul[@id='exports']//a").get_attribute("href")
        self.assertTrue(ident.endswith("?identifiable=true"), ident)
        status, _, body = self.fetch(ident.replace("responses.json", "summary.csv"))
        self.assertEqual(status, 200)
        self.assertIn("Sally", body)

        # The reads are in the study's access log.
        self.browser.refresh()
        self.wait_loaded()
        self.wait_until(lambda: len(self.rows("access")) > 0, "the access log")
        log = "\n".join(self.rows("access"))
        self.assertIn(address, log)
        self.assertAccessible("data page with the access log")

        # The lab page, now with an approved lab and a study.
        self.browser.get(self.srv.base + lab_path)
        self.wait_loaded()
        self.wait_until(lambda: "Yes" in self.browser.find_element("id", "details").text, "approved")

    def test_admin_journey(self):
        admin = self.admin()
        other = self.admin()   # a second admin, whose roles the first changes
        fam = Client(self.srv.port)
        famaddr = f"fam-{int(time.time() * 1000)}@example.test"
        self.assertStatus(fam.post("/api/v1/accounts/signup/", json_body={
            "email": famaddr, "password": PASSWORD}), 201)
        self.world.sql(f"UPDATE users SET email_verified_at = now() WHERE email = {lit(famaddr)}")
        self.assertStatus(fam.post("/api/v1/auth/login/", json_body={"email": famaddr, "password": PASSWORD}), 200)
        self.assertStatus(fam.get("/api/v1/accounts/me/"), 200)

        self.log_in_2fa(admin, "/admin/users/")
        self.assertAccessible("users")
        # The admin's own row cannot remove their role or account.
        self.fill("Email or name contains", admin["email"])
        self.press("Search")
        self.wait_until(lambda: len(self.rows("users")) == 1, "one row")
        self.assertFalse(self.button(f"Revoke site admin for {admin['email']}").is_enabled())
        self.assertFalse(self.button(f"Deactivate {admin['email']}").is_enabled())

        # Deactivating the family ends its session at once.
        self.fill("Email or name contains", famaddr)
        self.press("Search")
        self.wait_until(lambda: len(self.rows("users")) == 1 and famaddr in self.rows("users")[0], "the family")
        self.press(f"Deactivate {famaddr}")
        self.notice(f"{famaddr}: deactivated")
        self.assertEqual(fam.get("/api/v1/accounts/me/").status, 401)
        self.press(f"Activate {famaddr}")
        self.notice(f"{famaddr}: activated")
        self.assertEqual(self.world.sql(f"SELECT is_active FROM users WHERE email = {lit(famaddr)}"), "t")

        # Roles of the other admin: revoke site admin, grant it back; reset two-factor.
        self.fill("Email or name contains", other["email"])
        self.press("Search")
        self.wait_until(lambda: len(self.rows("users")) == 1 and other["email"] in self.rows("users")[0], "the other admin")
        self.press(f"Revoke site admin for {other['email']}")
        self.notice(f"{other['email']}: is no longer a site admin")
        self.assertEqual(self.world.sql(f"SELECT is_site_admin FROM users WHERE email = {lit(other['email'])}"), "f")
        self.press(f"Grant site admin for {other['email']}")
        self.notice(f"{other['email']}: is a site admin")
        self.press(f"Reset two-factor for {other['email']}")
        self.notice("two-factor authentication is reset")
        self.assertEqual(self.world.sql(
            f"SELECT count(*) FROM user_totp t JOIN users u ON u.id = t.user_id WHERE u.email = {lit(other['email'])}"), "0")
        self.assertEqual(self.world.sql(
            "SELECT string_agg(action, ',' ORDER BY id) FROM user_admin_log"
            f" WHERE user_email = {lit(other['email'])}"), "change,change,reset_two_factor")
        self.assertAccessible("users after changes")

        # The review page, the lab and study pages open for the admin too.
        self.open("/admin/")
        self.wait_until(lambda: self.visible("//p[@id='queue-empty']") or self.rows("queue"), "the queue")
        self.assertAccessible("review queue")

        # Without two-factor, a researcher page sends to the enrolment page.
        self.browser.delete_all_cookies()
        self.log_in(famaddr)
        self.wait_path("/")
        self.open("/researcher/labs/")
        self.wait_path("/researcher/two-factor/")
        self.wait_loaded()
        self.assertAccessible("two-factor for a family")

    def test_a_failed_build_is_shown_failed_with_its_stage(self):
        # lookit #503: a build that failed must not look like a success.
        admin = self.admin()
        lab = self.world.lab("Failing lab")
        st = self.world.study(lab, name="Broken runner", state="approved", metadata={
            "player_repo_url": self.stub.repo_url("runners/fails")})
        self.world.sql("INSERT INTO study_runner_approvals (study_id, repo_url)"
                       f" VALUES ({st['id']}, {lit(self.stub.repo_url('runners/fails'))})")
        self.log_in_2fa(admin, f"/researcher/studies/{st['uuid']}/")
        self.wait_until(lambda: self.heading() == "Broken runner", "the study page")
        self.assertIn("runners/fails", self.browser.find_element("id", "runner").text)
        self.press("Build the experiment")
        state = self.wait_until(lambda: (lambda t: t if t.startswith("failed") else None)(
            self.browser.find_element("id", "live-state").text), "the build to fail",
            timeout=120 * SLOW)
        self.assertEqual(state, "failed at the build stage")
        failed = [li.text.split()[0] for li in self.browser.find_elements("xpath", "//ol[@id='stages']/li")
                  if "failed" in li.text]
        self.assertEqual(failed[0], "build", failed)
        self.assertFalse(self.browser.find_element("id", "live-error").get_attribute("hidden"))
        self.wait_rows("builds", "(failed)")
        self.assertIn("not yet", self.browser.find_element("id", "runner").text)
        # Activate waits for a successful build: shown, disabled, with why.
        self.wait_until(lambda: "has not been built yet" in self.browser.find_element("id", "guards").text,
                        "the reason Activate waits")
        self.wait_until(lambda: not self.button("Activate").is_enabled(), "Activate to be disabled")
        self.assertAccessible("a failed build")

    def test_user_admin_api_refuses_bad_input_and_non_admins(self):
        admin = self.world.user("api-admin", researcher=True)
        self.world.sql(f"UPDATE users SET is_site_admin = true WHERE id = {admin['id']}")
        plain = self.world.user("api-researcher", researcher=True)
        path = f"/api/v1/admin/users/{plain['uuid']}/"
        doc = {"data": {"type": "admin-users", "id": plain["uuid"], "attributes": {"email": "x@y.z"}}}
        r = self.world.api(admin, "PATCH", path, doc)
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["source"]["pointer"], "/data/attributes/email")
        doc["data"]["attributes"] = {"is_researcher": "no"}
        self.assertStatus(self.world.api(admin, "PATCH", path, doc), 400)
        self.assertEqual(self.world.sql(f"SELECT is_researcher FROM users WHERE id = {plain['id']}"), "t")
        doc["data"]["attributes"] = {"is_researcher": False}
        self.assertStatus(self.world.api(plain, "PATCH", path, doc), 403)
        self.assertStatus(self.world.api(plain, "GET", "/api/v1/admin/users/"), 403)
        r = self.world.api(admin, "PATCH", path, doc)
        self.assertStatus(r, 200)
        self.assertFalse(r.json["data"]["attributes"]["is_researcher"])
        self.assertStatus(self.world.api(admin, "PATCH", f"/api/v1/admin/users/{admin['uuid']}/", {
            "data": {"type": "admin-users", "id": admin["uuid"], "attributes": {"is_site_admin": False}}}), 409)
        self.assertEqual(self.world.sql(f"SELECT is_site_admin FROM users WHERE id = {admin['id']}"), "t")
        self.assertStatus(self.world.api(admin, "POST", f"/api/v1/admin/users/{plain['uuid']}/reset-two-factor/"), 409)
        self.assertStatus(self.world.api(admin, "PATCH", "/api/v1/admin/users/not-a-uuid/", doc), 404)
        r = self.world.api(admin, "GET", "/api/v1/admin/users/?search=api-researcher")
        self.assertStatus(r, 200)
        self.assertEqual([u["id"] for u in r.json["data"]], [plain["uuid"]])
        self.assertStatus(self.world.api(admin, "GET", "/api/v1/admin/users/?search=" + "x" * 300), 400)
