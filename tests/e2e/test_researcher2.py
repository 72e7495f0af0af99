"""test_researcher2: what issue 16 added after its first pages, through
the API and studyhubctl, against a real server, PostgreSQL and storage.

- The study list, its name search and the review queue in one indexed
  statement (sql/098): the same studies as has_study_perm allows, for every
  way of holding read_study__details (site, lab umbrella, study group),
  none for an inactive account; the search a literal, case-insensitive
  substring (LIKE's % and _ are plain characters); the queue oldest first.
- The consent state kept beside the responses (sql/099): the consent
  manager and the responses list follow every ruling (a new one, one
  taken back in SQL) and every new response.
- A study's video archives: GET /api/v1/studies/{id}/video-zips/ lists the
  caller's own, with the download link once built (logged in the access
  log), for those who may read the videos only.
- The admin pages' jobs and tasks: GET /api/v1/admin/jobs/ and
  /api/v1/admin/tasks/?state=, as `studyhubctl jobs` and `tasks` show them.
- `studyhubctl user ...`: search, activate/deactivate, grant/revoke the
  researcher and site admin roles, reset two-factor, as the users page
  does (same statements), each change in user_admin_log as the operator.
- The page CSP's media-src names the S3 storage's origin when that
  backend is set (the consent manager plays videos from presigned links).
"""

import os
import secrets
import unittest
import urllib.request
from urllib.parse import urlsplit

from apifixtures import World, lit
from harness import SLOW, StudyhubTestCase, new_dir, request, wait_until

S3_ENDPOINT = os.environ.get("S3_TEST_ENDPOINT", "")
JSONAPI = "application/vnd.api+json"
PAGE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


class ListsTest(StudyhubTestCase):
    """The lists behind the researcher pages, and their permissions."""

    @classmethod
    def setUpClass(cls):
        cls.storage = new_dir("storage")
        cls.srv = cls.class_server(env={"STORAGE_URL": "file://" + cls.storage,
                                        "STORAGE_LINK_SECRET": "t-link-secret",
                                        "TASK_POLL_S": "1"})
        w = cls.w = World(cls.srv)
        cls.lab = w.lab("Lists lab")
        cls.other = w.lab("Other lists lab")
        cls.labreader = w.user("labreader", researcher=True)
        w.member(cls.lab, cls.labreader, "readonly")
        cls.guest = w.user("guest", researcher=True)          # guest: no study details
        w.member(cls.lab, cls.guest, "guest")
        cls.studyonly = w.user("studyonly", researcher=True)
        cls.site = w.user("siteadmin", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.site['id']}")
        cls.s = {}
        for name, lab, state in (("Alpha 100% sure", cls.lab, "created"),
                                 ("alpha_beta", cls.lab, "submitted"),
                                 ("ALPHAXBETA", cls.lab, "submitted"),
                                 ("Gamma", cls.lab, "active"),
                                 ("Other alpha", cls.other, "submitted")):
            cls.s[name] = w.study(lab, name, state=state)
        w.study_member(cls.s["Other alpha"], cls.studyonly, "analysis")

    def names(self, who, query=""):
        r = self.w.api(who, "GET", "/api/v1/researcher/studies/?page_size=100" + query)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["links"]["meta"]["count"], len(r.json["data"]))
        return [d["attributes"]["name"] for d in r.json["data"]]

    def test_who_sees_which_study(self):
        # (Other tests of the class add studies to the lab: a superset.)
        lab_names = {"Alpha 100% sure", "alpha_beta", "ALPHAXBETA", "Gamma"}
        seen = set(self.names(self.labreader))
        self.assertTrue(lab_names <= seen, seen)
        self.assertNotIn("Other alpha", seen)
        self.assertEqual(self.names(self.guest), [])
        self.assertEqual(self.names(self.studyonly), ["Other alpha"])
        self.assertTrue(set(self.s) <= set(self.names(self.site)))
        # The same answers as has_study_perm, study by study.
        for who in (self.labreader, self.guest, self.studyonly, self.site):
            want = self.w.sql(
                "SELECT coalesce(string_agg(name, '|' ORDER BY name), '') FROM studies"
                f" WHERE has_study_perm({who['id']}, id, 'read_study__details')")
            self.assertEqual("|".join(sorted(self.names(who))), want)
        # An inactive account holds nothing (its token is refused first;
        # the SQL says the same).
        self.assertEqual(self.w.sql(
            f"SELECT count(*) FROM study_readable_ids({self.labreader['id']}, 'read_study__details')"),
            str(len(seen)))
        self.w.sql(f"UPDATE users SET is_active = false WHERE id = {self.labreader['id']}")
        try:
            self.assertEqual(self.w.sql(
                f"SELECT count(*) FROM study_readable_ids({self.labreader['id']},"
                " 'read_study__details')"), "0")
            self.assertIn(self.w.api(self.labreader, "GET", "/api/v1/researcher/studies/").status,
                          (401, 403))
        finally:
            self.w.sql(f"UPDATE users SET is_active = true WHERE id = {self.labreader['id']}")

    def test_search_is_a_literal_case_insensitive_substring(self):
        who = self.labreader
        self.assertEqual(sorted(self.names(who, "&search=ALPHA")),
                         ["ALPHAXBETA", "Alpha 100% sure", "alpha_beta"])
        # _ and % are characters, not LIKE wildcards.
        self.assertEqual(self.names(who, "&search=a_b"), ["alpha_beta"])
        self.assertEqual(self.names(who, "&search=100%25"), ["Alpha 100% sure"])
        self.assertEqual(self.names(who, "&search=%25"), ["Alpha 100% sure"])
        self.assertEqual(self.names(who, "&search=%5C"), [])
        self.assertEqual(self.names(self.studyonly, "&search=alpha"), ["Other alpha"])
        self.assertStatus(self.w.api(who, "GET", "/api/v1/researcher/studies/?search=" + "x" * 300),
                          400)
        # The trigram index is there whenever pg_trgm is (sql/098).
        self.assertEqual(
            self.w.sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'studies_name_trgm_idx'"),
            self.w.sql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"))

    def test_review_queue_oldest_first_and_paged_without_loss(self):
        s = self.s
        self.w.sql("UPDATE studies SET status_change_date = '2020-01-02' WHERE id IN"
                   f" ({s['alpha_beta']['id']}, {s['ALPHAXBETA']['id']})")
        self.w.sql("UPDATE studies SET status_change_date = '2020-01-01'"
                   f" WHERE id = {s['Other alpha']['id']}")
        order = self.names(self.site, "&state=submitted&sort=oldest")
        first = sorted([s["alpha_beta"], s["ALPHAXBETA"]], key=lambda x: x["id"])
        self.assertEqual(order[:3], ["Other alpha"] + [
            next(n for n, v in s.items() if v is f) for f in first])
        # One a page: every study once.
        seen = []
        for page in range(1, 4):
            r = self.w.api(self.site, "GET", "/api/v1/researcher/studies/?state=submitted"
                           f"&sort=oldest&page_size=1&page={page}")
            self.assertStatus(r, 200)
            seen += [d["attributes"]["name"] for d in r.json["data"]]
        self.assertEqual(seen, order[:3])
        self.assertStatus(self.w.api(self.site, "GET", "/api/v1/researcher/studies/?state=nope"), 400)

    def test_consent_state_follows_the_rulings(self):
        w = self.w
        admin = w.user("consentadmin", researcher=True)
        w.member(self.lab, admin, "admin")
        st = w.study(self.lab, "Consent cache")
        parent = w.user("parent")
        child = w.child(parent, "Kid")
        rids = [w.row("INSERT INTO responses (study_id, child_id, sequence) VALUES"
                      f" ({st['id']}, {child['id']}, '[]') RETURNING uuid")[0] for _ in range(3)]
        prev = w.row("INSERT INTO responses (study_id, child_id, sequence, is_preview) VALUES"
                     f" ({st['id']}, {child['id']}, '[]', true) RETURNING uuid")[0]

        def consent(state):
            r = w.api(admin, "GET", f"/api/v1/researcher/studies/{st['uuid']}/consent/"
                      f"?state={state}&page_size=50")
            self.assertStatus(r, 200)
            self.assertEqual(r.json["links"]["meta"]["count"], len(r.json["data"]))
            return sorted(d["id"] for d in r.json["data"])

        def readable():
            r = w.api(admin, "GET", f"/api/v1/researcher/studies/{st['uuid']}/responses/?page_size=50")
            self.assertStatus(r, 200)
            return sorted(d["id"] for d in r.json["data"])

        self.assertEqual(consent("pending"), sorted(rids + [prev]))
        self.assertEqual(readable(), [prev])
        r = w.api(admin, "POST", f"/api/v1/researcher/responses/{rids[0]}/consent/",
                  {"data": {"type": "consent-rulings", "attributes": {"action": "accepted"}}})
        self.assertStatus(r, 201)
        w.consent(rids[1], "rejected")
        self.assertEqual(consent("accepted"), [rids[0]])
        self.assertEqual(consent("rejected"), [rids[1]])
        self.assertEqual(consent("pending"), sorted([rids[2], prev]))
        self.assertEqual(readable(), sorted([rids[0], prev]))
        # A newer ruling wins; one taken back (SQL) restores the one before.
        w.consent(rids[0], "rejected")
        self.assertEqual(readable(), [prev])
        w.sql("DELETE FROM consent_rulings WHERE id = (SELECT max(cr.id) FROM consent_rulings cr"
              f" JOIN responses r ON r.id = cr.response_id WHERE r.uuid = {lit(rids[0])})")
        self.assertEqual(readable(), sorted([rids[0], prev]))
        # The cache agrees with consent_status everywhere.
        self.assertEqual(w.sql("SELECT count(*) FROM responses r JOIN response_consent rc"
                               " ON rc.response_id = r.id WHERE rc.state <> consent_status(r.id)"
                               " OR rc.is_preview <> r.is_preview OR rc.study_id <> r.study_id"), "0")
        self.assertEqual(w.sql("SELECT count(*) FROM responses r WHERE NOT EXISTS"
                               " (SELECT 1 FROM response_consent rc WHERE rc.response_id = r.id)"),
                         "0")
        # Starred filter still applies.
        w.sql(f"UPDATE responses SET researcher_star = true WHERE uuid = {lit(prev)}")
        r = w.api(admin, "GET", f"/api/v1/researcher/studies/{st['uuid']}/responses/?starred=true")
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["data"]], [prev])

    def test_video_zip_list_with_its_link(self):
        w = self.w
        member = w.user("zipmember", researcher=True)
        w.member(self.lab, member, "member")
        stranger = w.user("zipstranger", researcher=True)
        w.member(self.other, stranger, "member")
        st = w.study(self.lab, "Zip list")
        parent = w.user("zparent")
        child = w.child(parent, "Zed")
        rid = w.row("INSERT INTO responses (study_id, child_id, sequence) VALUES"
                    f" ({st['id']}, {child['id']}, '[]') RETURNING uuid")[0]
        w.consent(rid, "accepted")
        name = f"videoStream_{st['uuid']}_1-video_{rid}_1700000000000_123.mp4"
        os.makedirs(self.storage, exist_ok=True)
        with open(os.path.join(self.storage, name), "wb") as f:
            f.write(b"not really a video")
        w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name)"
              f" SELECT {st['id']}, id, '1-video', {lit(name)} FROM responses WHERE uuid = {lit(rid)}")
        path = f"/api/v1/studies/{st['uuid']}/video-zips/"

        r = w.api(member, "GET", path)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"], [])
        self.assertStatus(w.api(stranger, "GET", path), 404)
        self.assertStatus(w.api(self.labreader, "GET", path), 403)
        self.assertStatus(w.api(member, "GET", "/api/v1/studies/nope/video-zips/"), 404)

        r = w.api(member, "POST", path, {"data": {"type": "video-zips", "attributes": {}}})
        self.assertStatus(r, 202)
        task = r.json["data"]["id"]

        def done():
            r = w.api(member, "GET", path)
            self.assertStatus(r, 200)
            z = [d for d in r.json["data"] if d["id"] == task]
            return z[0] if z and z[0]["attributes"]["state"] not in ("queued", "running") else None
        z = wait_until(done, 60 * SLOW, interval=0.2, message="the zip")
        a = z["attributes"]
        self.assertEqual((a["state"], a["videos"], a["consent_only"]), ("succeeded", 1, False), a)
        self.assertIn("download_url", a)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.srv.port}"
                                    + urlsplit(a["download_url"])._replace(scheme="", netloc="").geturl(),
                                    timeout=30) as resp:
            body = resp.read()
        self.assertTrue(body.startswith(b"PK"))
        self.assertEqual(w.sql("SELECT count(*) FROM access_log WHERE action = 'video_zip_link'"
                               f" AND study_id = {st['id']} AND user_id = {member['id']}"), "1")
        # Another reader does not see this zip (nor its link).
        other = w.user("zipother", researcher=True)
        w.member(self.lab, other, "admin")
        r = w.api(other, "GET", path)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"], [])
        # Past its link's life the link is gone, the zip still listed.
        w.sql(f"UPDATE tasks SET finished_at = now() - interval '31 minutes',"
              f" started_at = now() - interval '32 minutes', created_at = now() - interval '33 minutes'"
              f" WHERE uuid = {lit(task)}")
        a = w.api(member, "GET", path).json["data"][0]["attributes"]
        self.assertEqual(a["state"], "succeeded")
        self.assertNotIn("download_url", a)

        # The admin pages' task list shows it among the finished.
        r = w.api(self.site, "GET", "/api/v1/admin/tasks/?state=finished&page_size=100")
        self.assertStatus(r, 200)
        t = [d for d in r.json["data"] if d["id"] == task]
        self.assertEqual(len(t), 1)
        self.assertEqual((t[0]["attributes"]["kind"], t[0]["attributes"]["state"]),
                         ("build_zipfile_of_videos", "succeeded"))
        self.assertNotIn("payload", t[0]["attributes"])
        r = w.api(self.site, "GET", "/api/v1/admin/tasks/")
        self.assertStatus(r, 200)
        self.assertNotIn(task, [d["id"] for d in r.json["data"]])


class AdminViewTest(StudyhubTestCase):
    """Jobs and tasks for the admin pages, and `studyhubctl user`."""

    @classmethod
    def setUpClass(cls):
        cls.mail = new_dir("mail")
        cls.srv = cls.class_server(env={"MAIL_DIR": cls.mail, "MAIL_POLL_S": "1"})
        cls.w = World(cls.srv)
        cls.site = cls.w.user("opsadmin", researcher=True)
        cls.w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.site['id']}")

    def test_jobs_as_studyhubctl_shows_them(self):
        ctl = self.srv.ctl("jobs")
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        names = [ln.split()[0][4:] for ln in ctl.stdout.splitlines() if ln.startswith("job=")]
        self.assertIn("cleanup_tasks", names)
        # A run, so that one job has an outcome to show.
        r = self.srv.ctl("run", "cleanup_tasks", timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = self.w.api(self.site, "GET", "/api/v1/admin/jobs/")
        self.assertStatus(r, 200)
        jobs = {d["id"]: d["attributes"] for d in r.json["data"]}
        self.assertEqual(sorted(jobs), sorted(names))
        ct = jobs["cleanup_tasks"]
        self.assertEqual(ct["at"], "04:45")
        self.assertTrue(ct["next_run"].endswith("Z"))
        manual = [x for x in ct["runs"] if x["reason"] == "manual"]
        self.assertEqual(manual[0]["outcome"], "succeeded", ct["runs"])
        # Times as every API time: api_time's text, to the microsecond.
        self.assertRegex(manual[0]["started_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        want = self.w.row(f"SELECT api_time(started_at), api_time(scheduled_for) FROM job_runs"
                          f" WHERE id = {int(manual[0]['id'])}")
        self.assertEqual([manual[0]["started_at"], manual[0]["scheduled_for"]], list(want))
        self.assertLessEqual(len(ct["runs"]), 3)
        plain = self.w.user("opsplain", researcher=True)
        self.assertStatus(self.w.api(plain, "GET", "/api/v1/admin/jobs/"), 403)
        self.assertStatus(self.w.api(plain, "GET", "/api/v1/admin/tasks/"), 403)
        self.assertStatus(self.w.api(self.site, "GET", "/api/v1/admin/tasks/?state=sideways"), 400)

    def test_tasks_queued_and_finished(self):
        w = self.w
        kind = "adminview_test_" + secrets.token_hex(3)
        queued = w.row(f"INSERT INTO tasks (kind, subject, run_after) VALUES ({lit(kind)}, 'q',"
                       " now() + interval '1 day') RETURNING uuid")[0]
        failed = w.row(f"INSERT INTO tasks (kind, state, started_at, finished_at, error) VALUES"
                       f" ({lit(kind)}, 'failed', now() - interval '2 s', now(), 'it broke')"
                       " RETURNING uuid")[0]
        r = w.api(self.site, "GET", "/api/v1/admin/tasks/?page_size=100")
        self.assertStatus(r, 200)
        got = {d["id"]: d["attributes"] for d in r.json["data"]}
        self.assertIn(queued, got)
        self.assertNotIn(failed, got)
        self.assertEqual((got[queued]["state"], got[queued]["subject"]), ("queued", "q"))
        r = w.api(self.site, "GET", "/api/v1/admin/tasks/?state=finished&page_size=1")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"][0]["id"], failed)     # the last to finish first
        a = r.json["data"][0]["attributes"]
        self.assertEqual((a["state"], a["error"]), ("failed", "it broke"))
        self.assertGreaterEqual(float(a["took_s"]), 1.5)
        r = w.api(self.site, "GET", "/api/v1/admin/tasks/?state=all&page_size=100")
        ids = [d["id"] for d in r.json["data"]]
        self.assertIn(queued, ids)
        self.assertIn(failed, ids)
        # The command line sees the same queued task.
        ctl = self.srv.ctl("tasks")
        self.assertIn(f"uuid={queued}", ctl.stdout)
        w.sql(f"DELETE FROM tasks WHERE kind = {lit(kind)}")

    def user_ctl(self, *args, ok=True):
        r = self.srv.ctl("user", *args)
        if ok:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        else:
            self.assertNotEqual(r.returncode, 0, r.stdout)
        return r

    def log(self, email):
        return self.w.sql("SELECT string_agg(admin_email || ':' || action || ':' || detail::text,"
                          " ' ; ' ORDER BY id) FROM user_admin_log"
                          f" WHERE user_email = {lit(email)}")

    def test_user_commands(self):
        w = self.w
        u = w.user("ctluser")
        flags = lambda: w.sql("SELECT is_active || ',' || is_researcher || ',' || is_site_admin"
                              f" FROM users WHERE id = {u['id']}")
        r = self.user_ctl("search", "ctluser")
        self.assertIn(u["email"], r.stdout)
        self.assertIn("1 account", r.stdout)
        self.assertIn("researcher=no", r.stdout)

        r = self.user_ctl("grant", "researcher", u["email"].upper())
        self.assertIn("researcher=yes", r.stdout)
        self.user_ctl("grant", "site-admin", u["uuid"])
        self.assertEqual(flags(), "true,true,true")
        # Deactivating ends the account's tokens.
        self.assertStatus(w.api(u, "GET", "/api/v1/accounts/me/"), 200)
        r = self.user_ctl("deactivate", u["email"])
        self.assertIn("active=no", r.stdout)
        # (The token caches hear of it through NOTIFY, a moment later.)
        wait_until(lambda: w.api(u, "GET", "/api/v1/accounts/me/").status == 401, 10 * SLOW,
                   interval=0.1, message="the token to be refused")
        self.user_ctl("activate", u["email"])
        self.user_ctl("revoke", "site-admin", u["email"])
        self.user_ctl("revoke", "researcher", u["email"])
        self.assertEqual(flags(), "true,false,false")
        log = self.log(u["email"]).split(" ; ")
        self.assertEqual(len(log), 6, log)
        self.assertTrue(all(x.startswith("operator: studyhubctl:change:") for x in log), log)
        self.assertEqual(w.sql("SELECT count(*) FROM user_admin_log WHERE admin_id IS NOT NULL"
                               f" AND user_email = {lit(u['email'])}"), "0")
        # Granting what is already held changes and logs nothing.
        self.user_ctl("activate", u["email"])
        self.assertEqual(len(self.log(u["email"]).split(" ; ")), 6)

        # Two-factor: refused without it; with it, gone, the owner emailed.
        r = self.user_ctl("reset-two-factor", u["email"], ok=False)
        self.assertIn("does not use two-factor", r.stderr)
        w.sql("INSERT INTO user_totp (user_id, secret, confirmed_at) VALUES"
              f" ({u['id']}, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', now())")
        r = self.user_ctl("search", u["email"])
        self.assertIn("two_factor=yes", r.stdout)
        r = self.user_ctl("reset-two-factor", u["email"])
        self.assertIn("two_factor=no", r.stdout)
        self.assertEqual(w.sql(f"SELECT count(*) FROM user_totp WHERE user_id = {u['id']}"), "0")
        self.assertEqual(w.sql("SELECT count(*) FROM mail_outbox WHERE kind = 'totp_reset'"
                               f" AND to_addr = {lit(u['email'])}"), "1")
        self.assertTrue(self.log(u["email"]).endswith("operator: studyhubctl:reset_two_factor:{}"),
                        self.log(u["email"]))

        # Unknown users, bad usage: an error, nothing changed.
        r = self.user_ctl("activate", "nobody@example.test", ok=False)
        self.assertIn("No User", r.stderr)
        for args in (("grant", "wizard", u["email"]), ("promote", u["email"]), ("activate",),
                     ("grant", "researcher")):
            r = self.user_ctl(*args, ok=False)
            self.assertIn("usage: user", r.stderr)
        self.assertEqual(flags(), "true,false,false")


@unittest.skipUnless(S3_ENDPOINT, "S3_TEST_ENDPOINT is not set (tools/test starts s3rver)")
class MediaSrcTest(StudyhubTestCase):
    """With S3 storage the pages may play videos from its origin."""

    def test_page_csp_names_the_storage_origin(self):
        from test_videos import S3Store   # its bucket on s3rver
        srv = self.server(env=S3Store().env())
        r = request(srv.port, "GET", "/researcher/", headers={"Accept": "text/html"})
        self.assertStatus(r, 200)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(S3_ENDPOINT))
        self.assertEqual(r.headers["content-security-policy"],
                         PAGE_CSP + f"; media-src 'self' {origin}")
        # Not on JSON: only pages get the page CSP.
        r = request(srv.port, "GET", "/api/v1/discover/", headers={"Accept": JSONAPI})
        self.assertNotIn("media-src", r.headers["content-security-policy"])


if __name__ == "__main__":
    unittest.main()
