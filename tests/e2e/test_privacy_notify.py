"""test_privacy_notify: the scheduled job announce_new_studies (new
studies to the families who asked and whose children are eligible, once
each), and researchers' edit notifications gathered into one email per
study per NOTIFY_WINDOW_S, the first one sent at once (issue 15 point 4)."""

import os

from apifixtures import World, lit
from harness import StudyhubTestCase, new_dir, server_env, wait_until, SLOW


def run_job(srv, name):
    def once():
        r = srv.ctl("run", name, timeout=30)
        return None if "not ready" in r.stdout + r.stderr else r
    return wait_until(once, 20 * SLOW, interval=0.2, message=f"run {name}")


class AnnounceTest(StudyhubTestCase):

    def test_new_studies_reach_eligible_families_once(self):
        mail = new_dir("mail")
        srv = self.server(env=server_env({"MAIL_DIR": mail, "MAIL_POLL_S": "1"}))
        w = World(srv)
        lab = w.lab("announce")
        # Active and public, 6 months to 3 years (the fixture's default).
        st = w.study(lab, "Babies and Cats", short_description="Watch cats.")
        st2 = w.study(lab, "Second Study")
        w.study(lab, "Draft", state="created")
        w.study(lab, "Private", public=False)
        # No child here meets its expression (every one is a girl).
        w.study(lab, "Picky", criteria_expression="gender = m")
        fam = {}
        for name, age, pref in (("yes", 400, True), ("noprefs", 400, False),
                                ("young", 30, True), ("done", 400, True), ("hidden", 400, True)):
            u = w.user("fam-" + name)
            w.sql(f"UPDATE users SET email_new_studies = {lit(pref)} WHERE id = {u['id']}")
            kid = w.child(u, age_days=age, deleted=(name == "hidden"))
            fam[name] = (u, kid)
        # "done" already took part in the first study: told of the second only.
        w.sql("INSERT INTO responses (study_id, child_id) VALUES"
              f" ({st['id']}, {fam['done'][1]['id']})")

        r = run_job(srv, "announce_new_studies")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("announced 2 studies to 2 families (2 emails)", r.stdout + r.stderr)
        rows = w.sql("SELECT to_addr || '|' || subject || '|' || body_text FROM mail_outbox"
                     " WHERE kind = 'new_studies' ORDER BY to_addr")
        by = {}
        for u in (fam["yes"][0], fam["done"][0]):
            body = w.sql("SELECT body_text FROM mail_outbox WHERE kind = 'new_studies'"
                         f" AND to_addr = {lit(u['email'])}")
            by[u["email"]] = body
        self.assertIn("Babies and Cats", by[fam["yes"][0]["email"]])
        self.assertIn(f"/studies/{st['uuid']}/", by[fam["yes"][0]["email"]])
        self.assertIn("Second Study", by[fam["yes"][0]["email"]])
        self.assertNotIn("Babies and Cats", by[fam["done"][0]["email"]])
        self.assertIn(f"/studies/{st2['uuid']}/", by[fam["done"][0]["email"]])
        for name in ("noprefs", "young", "hidden"):
            self.assertNotIn(fam[name][0]["email"], rows)
        for bad in ("Draft", "Private", "Picky"):
            self.assertNotIn(bad, rows)
        # Delivered.
        wait_until(lambda: len([f for f in os.listdir(mail) if f.endswith(".eml")]) >= 2,
                   30 * SLOW, interval=0.2, message="announcement emails")
        # Once: the next run has nothing new.
        r = run_job(srv, "announce_new_studies")
        self.assertIn("announced 0 studies to 0 families (0 emails)", r.stdout + r.stderr)
        self.assertEqual(w.sql("SELECT count(*) FROM mail_outbox WHERE kind = 'new_studies'"),
                         "2")


    def test_criteria_expression_decides_who_hears(self):
        srv = self.server()
        w = World(srv)
        lab = w.lab("criteria")
        w.study(lab, "Plain")
        w.study(lab, "Girls Only", criteria_expression="gender = f")
        w.study(lab, "Bilinguals", criteria_expression="n_languages >= 2 AND NOT gender = f")
        # Cannot be read: nobody is told of it (a session would count it as met).
        w.study(lab, "Broken", criteria_expression="gender = f AND (")
        fam = {name: w.user("crit-" + name) for name in ("girl", "boy", "twins", "quiet")}
        w.child(fam["girl"], gender="f", languages_spoken=["en"])
        w.child(fam["boy"], gender="m", languages_spoken=["en", "fr"])
        # The girl is too young for every study: her brother, who meets no
        # expression, is the one in range; the family hears of Plain only.
        w.child(fam["twins"], gender="m", languages_spoken=["en"])
        w.child(fam["twins"], name="Baby", age_days=30, gender="f", languages_spoken=["en", "fr"])
        # Asked for no announcements.
        w.sql(f"UPDATE users SET email_new_studies = false WHERE id = {fam['quiet']['id']}")
        w.child(fam["quiet"], gender="f")

        r = run_job(srv, "announce_new_studies")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("announced 3 studies to 3 families (3 emails)", r.stdout + r.stderr)

        def told(u):
            return w.sql("SELECT body_text FROM mail_outbox WHERE kind = 'new_studies'"
                         f" AND to_addr = {lit(u['email'])}")
        want = {"girl": {"Plain", "Girls Only"}, "boy": {"Plain", "Bilinguals"},
                "twins": {"Plain"}, "quiet": set()}
        for name, studies in want.items():
            body = told(fam[name])
            for st in ("Plain", "Girls Only", "Bilinguals", "Broken"):
                self.assertEqual(f"- {st}\n" in body, st in studies, (name, st, body))
        # Recorded once: a second run tells nobody anything.
        r = run_job(srv, "announce_new_studies")
        self.assertIn("announced 0 studies to 0 families (0 emails)", r.stdout + r.stderr)


class CoalesceTest(StudyhubTestCase):

    def setup_world(self, window):
        srv = self.server(env=server_env({"NOTIFY_WINDOW_S": str(window)}))
        w = World(srv)
        owner = w.user("owner", researcher=True)
        coadmin = w.user("coadmin", researcher=True)
        lab = w.lab("notify")
        w.member(lab, owner, "admin")
        studies = []
        for name in ("First", "Second"):
            st = w.study(lab, name, creator_id=owner["id"])
            w.study_member(st, owner, "admin")
            w.study_member(st, coadmin, "admin")
            studies.append(st)
        return srv, w, owner, coadmin, studies

    def edit(self, w, who, st, months):
        r = w.api(who, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                  {"data": {"type": "studies", "id": st["uuid"],
                            "attributes": {"min_age_months": months}}})
        self.assertStatus(r, 200)

    def rows(self, w, st):
        out = w.sql("SELECT to_addr || '|' || coalesced || '|' || (send_after > now())"
                    " FROM mail_outbox WHERE kind = 'study_edited'"
                    f" AND body_text LIKE {lit('%' + st['uuid'] + '%')} ORDER BY to_addr")
        return [line.split("|") for line in out.split("\n") if line]

    def test_edits_of_a_study_are_one_email_per_window(self):
        srv, w, owner, coadmin, (a, b) = self.setup_world(600)
        for months in (7, 8, 9):
            self.edit(w, owner, a, months)
        self.edit(w, coadmin, b, 7)
        # Study a, per admin: the first edit's email goes at once (leading
        # edge), the two that followed wait together for the window's end.
        rows = self.rows(w, a)
        self.assertEqual(sorted(r[0] for r in rows),
                         sorted([owner["email"], coadmin["email"]] * 2))
        self.assertEqual(sorted((n, waiting) for _, n, waiting in rows),
                         [("1", "false"), ("1", "false"), ("2", "true"), ("2", "true")])
        waiting = (f"kind = 'study_edited' AND to_addr = {lit(owner['email'])}"
                   f" AND body_text LIKE {lit('%' + a['uuid'] + '%')} AND send_after > now()")
        body = w.sql(f"SELECT body_text FROM mail_outbox WHERE {waiting}")
        self.assertEqual(body.count("min_age_months"), 4)     # subject line + fields, x2
        subject = w.sql(f"SELECT subject FROM mail_outbox WHERE {waiting}")
        self.assertTrue(subject.startswith("2 changes to a study; the latest: "), subject)
        # It waits until the first one's time plus the window.
        self.assertEqual(w.sql(
            f"SELECT (SELECT send_after FROM mail_outbox WHERE {waiting})"
            " - (SELECT min(send_after) FROM mail_outbox WHERE kind = 'study_edited'"
            f" AND to_addr = {lit(owner['email'])}"
            f" AND body_text LIKE {lit('%' + a['uuid'] + '%')}) = interval '600 seconds'"),
            "t")
        # Study b: its one email, at once.
        self.assertEqual(sorted((n, waiting) for _, n, waiting in self.rows(w, b)),
                         [("1", "false"), ("1", "false")])
        # Once the waiting email is on its way, a new edit within its
        # window starts a new waiting one (at most one email per window).
        w.sql("UPDATE mail_outbox SET send_after = now() - interval '1 second', sent_at = now()"
              " WHERE kind = 'study_edited' AND send_after > now()")
        self.edit(w, owner, a, 10)
        self.assertEqual(sorted((n, waiting) for _, n, waiting in self.rows(w, a)),
                         [("1", "false"), ("1", "false"), ("1", "true"), ("1", "true"),
                          ("2", "false"), ("2", "false")])
        # After a quiet window, the next edit goes at once again.
        w.sql("UPDATE mail_outbox SET send_after = now() - interval '601 seconds',"
              " sent_at = now() WHERE kind = 'study_edited'")
        self.edit(w, owner, a, 11)
        rows = self.rows(w, a)
        self.assertEqual(len(rows), 8)
        self.assertFalse([r for r in rows if r[2] == "true"], rows)
        self.assertEqual(w.sql("SELECT value FROM app_settings WHERE key = 'notify_window_s'"),
                         "600")

    def test_window_zero_is_one_email_per_edit(self):
        srv, w, owner, coadmin, (a, _) = self.setup_world(0)
        for months in (7, 8):
            self.edit(w, owner, a, months)
        rows = self.rows(w, a)
        self.assertEqual(len(rows), 4)
        self.assertTrue(all(r[1] == "1" and r[2] == "false" for r in rows), rows)
