"""screenshots: the README's pictures (tools/screenshots runs this; tools/test
does not, its name is no test_*.py).  A family with two children, a lab
with a few active studies, a past session with the researchers' feedback,
and a researcher with two-factor on who builds a study from the GitHub
stand-in's runner; headless chromium at 1000 px wide saves into SHOTS_DIR:

  family-studies.png   study discovery
  family-study.png     a study's page with the child picker
  family-history.png   past sessions with feedback
  researcher-build.png the researcher's study page while a build runs
"""

import hashlib
import os
import secrets
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from apifixtures import lit  # noqa: E402
from harness import Client  # noqa: E402
from test_accounts import PASSWORD  # noqa: E402
from test_researcher_browser import ResearcherBrowserTest  # noqa: E402

OUT = os.environ.get("SHOTS_DIR") or os.path.join(HERE, "..", "..", "docs", "img")
WIDTH, HEIGHT = 1000, 1150

STUDIES = [
    ("Looking at cats", "Do babies look longer at a cat that does something surprising?",
     "10 minutes", 6, 0, 2),
    ("Words and pictures", "Which picture goes with a new word? A short game for toddlers.",
     "15 minutes", 0, 1, 3),
    ("Counting with puppets", "Puppets count out loud: does your child notice a mistake?",
     "12 minutes", 0, 3, 6),
]


class Screenshots(ResearcherBrowserTest):

    def shot(self, name):
        path = os.path.join(OUT, name)
        self.browser.save_screenshot(path)
        print(f"screenshots: {path} ({os.path.getsize(path) // 1024} KB)", file=sys.stderr)

    def family(self):
        """A family that logs in with PASSWORD (the server hashes it at sign
        up), with a token for the fixtures' API calls."""
        email = "the.smiths@example.test"
        r = Client(self.srv.port).post("/api/v1/accounts/signup/",
                                       json_body={"email": email, "password": PASSWORD})
        self.assertStatus(r, 201)
        self.world.sql(f"UPDATE users SET given_name = 'Alex', email_verified_at = now()"
                       f" WHERE email = {lit(email)}")
        uid, uu = self.world.row(f"SELECT id, uuid FROM users WHERE email = {lit(email)}")
        token = secrets.token_hex(20)
        self.world.sql(f"INSERT INTO api_tokens (token_hash, user_id, mfa_verified) VALUES"
                       f" ({lit(hashlib.sha256(token.encode()).hexdigest())}, {uid}, true)")
        return {"id": int(uid), "uuid": uu, "email": email, "token": "Token " + token}

    def test_screenshots(self):
        os.makedirs(OUT, exist_ok=True)
        self.browser.set_window_size(WIDTH, HEIGHT)
        lab = self.world.lab("Baby Cognition Lab")
        self.world.sql(f"UPDATE labs SET name = 'Baby Cognition Lab' WHERE id = {lab['id']}")
        studies = []
        for name, summary, duration, min_m, min_y, max_y in STUDIES:
            studies.append(self.world.study(
                lab, name=name, short_description=summary, duration=duration,
                min_age_months=min_m, min_age_years=min_y, max_age_years=max_y,
                purpose="We want to learn how children come to understand the world.",
                compensation_description="A thank-you certificate.", built=True))

        # The family: two children, a past session with feedback.
        admin = self.admin()
        fam = self.family()
        kids = [self.world.child(fam, name="Sally", age_days=420),
                self.world.child(fam, name="Max", age_days=1500)]
        response = self.world.create_response(fam, kids[0], studies[0])
        self.world.sql(f"UPDATE responses SET completed = true WHERE uuid = {lit(response)};"
                       f" INSERT INTO feedback (response_id, comment) SELECT id,"
                       f" 'Thank you! Sally watched the cats closely and was a great helper.'"
                       f" FROM responses WHERE uuid = {lit(response)}")

        self.browser.delete_all_cookies()
        self.log_in(fam["email"])
        self.wait_until(lambda: "/login/" not in self.browser.current_url, "the login")
        self.open("/studies/")
        self.wait_until(lambda: all(s[0] in self.browser.page_source for s in STUDIES),
                        "the studies")
        self.shot("family-studies.png")

        self.open(f"/studies/{studies[0]['uuid']}/")
        self.wait_until(lambda: self.visible("//button[normalize-space()='Take part now']"),
                        "the child picker")
        self.field("Max").click()
        self.wait_until(lambda: self.visible("//*[@id='warning']"), "the eligibility warning")
        self.browser.execute_script(
            "document.getElementById('warning').scrollIntoView({block: 'end'})")
        self.shot("family-study.png")

        self.open("/studies/history/")
        self.wait_until(lambda: "great helper" in self.browser.page_source, "the feedback")
        self.shot("family-history.png")

        # The researcher: a study of the lab, approved, built from the page.
        aid = self.world.sql(f"SELECT id FROM users WHERE email = {lit(admin['email'])}")
        self.world.sql(f"UPDATE users SET given_name = 'Rita', family_name = 'Reyes'"
                       f" WHERE id = {aid}")
        self.world.member(lab, {"id": int(aid)}, "admin")
        new = self.world.study(lab, name="Looking at dogs", state="approved", built=False,
                               short_description="The same question, with dogs.",
                               duration="10 minutes")
        self.world.study_member(new, {"id": int(aid)}, "admin")
        self.log_in_2fa(admin, f"/researcher/studies/{new['uuid']}/")
        self.wait_until(lambda: self.heading() == "Looking at dogs", "the study page")
        self.press("Build the experiment")
        self.wait_until(lambda: len(self.browser.find_elements(
            "xpath", "//ol[@id='stages']/li")) >= 3, "a few stages", timeout=120)
        self.browser.execute_script(
            "document.querySelector('#stages details').open = true;"
            " document.getElementById('build-title').scrollIntoView({block: 'start'})")
        self.shot("researcher-build.png")


if __name__ == "__main__":
    suite = unittest.TestSuite([Screenshots("test_screenshots")])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
