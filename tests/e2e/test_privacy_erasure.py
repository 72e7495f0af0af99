"""test_privacy_erasure: a family erases a child or its whole account, and
an admin does the same with `studyhubctl erase` (issue 15 point 5).
Over HTTP against a real server, PostgreSQL, file storage and the .eml
outbox: what goes (rows, videos, objects, zips), what a study keeps (the
accepted response, de-identified), the report email, the erase_storage
task (and its resumption after a crash), and every refusal."""

import email
import json
import os
import secrets

from apifixtures import lit
from harness import StudyhubTestCase, new_dir, server_env, wait_until, SLOW
from researchfixtures import ResearchWorld, marker

EXPORT = "/api/v1/researcher/studies/{}/exports/{}"


class ErasureTest(StudyhubTestCase):

    def setUp(self):
        self.store = new_dir("storage")
        self.mail = new_dir("mail")
        self.srv = self.server(env=server_env({"STORAGE_URL": "file://" + self.store,
                                               "MAIL_DIR": self.mail, "MAIL_POLL_S": "1"}))
        self.rw = ResearchWorld(self.srv)
        self.w = self.rw.w

    # -- helpers

    def put_objects(self):
        """Every video row gets its object; each study a cached zip."""
        for full in self.w.sql("SELECT full_name FROM videos").split("\n"):
            with open(os.path.join(self.store, full), "wb") as f:
                f.write(b"video")
        os.makedirs(os.path.join(self.store, "video-zips"), exist_ok=True)

    def put_zip(self, study):
        name = f"video-zips/{study['uuid']}_videos_{secrets.token_hex(32)}.zip"
        with open(os.path.join(self.store, name), "wb") as f:
            f.write(b"PK")
        return name

    def exists(self, key):
        return os.path.exists(os.path.join(self.store, key))

    def mails_to(self, addr):
        out = []
        for name in os.listdir(self.mail):
            if name.endswith(".eml"):
                with open(os.path.join(self.mail, name), "rb") as f:
                    msg = email.message_from_bytes(f.read())
                if msg["To"] and addr.lower() in msg["To"].lower():
                    out.append(msg)
        return out

    def wait_mail(self, addr, subject_part):
        def got():
            for m in self.mails_to(addr):
                if subject_part in m["Subject"]:
                    return m
            return None
        return wait_until(got, 30 * SLOW, interval=0.2, message=f"mail to {addr}")

    def wait_storage_done(self):
        wait_until(lambda: self.w.sql("SELECT count(*) FROM erasures"
                                      " WHERE storage_done_at IS NULL") == "0",
                   60 * SLOW, interval=0.2, message="erase_storage done")
        self.assertEqual(self.w.sql("SELECT count(*) FROM tasks WHERE kind = 'erase_storage'"
                                    " AND state <> 'succeeded'"), "0")
        self.assertEqual(self.w.sql("SELECT count(*) FROM erasure_objects"), "0")

    def videos_of(self, response_id):
        out = self.w.sql(f"SELECT full_name FROM videos WHERE response_id = {response_id}")
        return out.split("\n") if out else []

    def add_response(self, child, study, exp=None, consent=None):
        rid, ru = self.w.row(
            "INSERT INTO responses (study_id, child_id, exp_data, completed) VALUES"
            f" ({study['id']}, {child['id']}, {lit(exp or {'0-x': {'answer': 'a'}})}, true)"
            " RETURNING id, uuid")
        full = f"videoStream_{study['uuid']}_0-x_{ru}_{secrets.randbelow(10**12)}_1"
        self.w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name) VALUES"
                   f" ({study['id']}, {rid}, '0-x', {lit(full)})")
        if consent:
            self.w.consent(ru, consent)
        return int(rid), ru

    # -- a child

    def test_family_erases_a_child(self):
        rw, w = self.rw, self.w
        acc = rw.r["accepted"]
        parent, child = acc["parent"], acc["child"]
        name = rw.markers["accepted"]
        # The accepted response carries free text the exit survey gathered.
        free = marker("free")
        w.sql("UPDATE responses SET exp_data = (exp_data::jsonb || jsonb_build_object('2-exit',"
              f" jsonb_build_object('childName', {lit(free)}, 'feedback', {lit(free)},"
              f" 'birthDate', '2020-01-01', 'withdrawal', false)))::json WHERE id = {acc['id']}")
        w.sql(f"INSERT INTO feedback (response_id, comment) VALUES ({acc['id']}, 'Thanks!')")
        # The same child in another study: pending there, so it goes.
        other = w.study(rw.lab, "Other study")
        pend_id, pend_uuid = self.add_response(child, other)
        # A sibling that is not erased keeps everything.
        sib = w.child(parent, name="Sibling")
        sib_id, _ = self.add_response(sib, other)
        self.put_objects()
        zip_study, zip_other = self.put_zip(rw.study), self.put_zip(other)
        unrelated = w.study(rw.other_lab, "Unrelated")
        zip_unrelated = self.put_zip(unrelated)
        kept_videos = self.videos_of(acc["id"])
        gone_videos = self.videos_of(pend_id)
        self.assertTrue(kept_videos and gone_videos)

        r = rw.api(parent, "DELETE", f"/api/v1/children/{child['uuid']}/")
        self.assertStatus(r, 204)

        # Gone from the family's lists and reads.
        listed = rw.api(parent, "GET", "/api/v1/children/").json["data"]
        self.assertEqual([c["id"] for c in listed], [sib["uuid"]])
        self.assertStatus(rw.api(parent, "GET", f"/api/v1/children/{child['uuid']}/"), 404)
        self.assertStatus(rw.api(parent, "DELETE", f"/api/v1/children/{child['uuid']}/"), 404)
        # The pending response, its videos and rulings are gone.
        self.assertEqual(w.sql(f"SELECT count(*) FROM responses WHERE id = {pend_id}"), "0")
        self.assertEqual(w.sql(f"SELECT count(*) FROM videos WHERE response_id = {pend_id}"), "0")
        # The accepted one stays, de-identified.
        exp = json.loads(w.sql(f"SELECT exp_data FROM responses WHERE id = {acc['id']}"))
        self.assertNotIn(free, json.dumps(exp))
        self.assertEqual(exp["2-exit"], {"withdrawal": False})
        self.assertEqual(exp["1-study-intro"]["answer"], "cats")
        self.assertEqual(w.sql(f"SELECT count(*) FROM feedback WHERE response_id = {acc['id']}"),
                         "0")
        self.assertEqual(
            w.sql("SELECT given_name || '|' || additional_information || '|' ||"
                  " array_to_string(existing_conditions, ',') || '|' || deleted"
                  f" || '|' || (erased_at IS NOT NULL) FROM children WHERE id = {child['id']}"),
            "erased|||true|true")
        # The sibling is untouched.
        self.assertEqual(w.sql(f"SELECT count(*) FROM responses WHERE id = {sib_id}"), "1")

        # Storage: the pending response's videos and every zip of both
        # studies go; the kept response's videos and other zips stay.
        self.wait_storage_done()
        for key in gone_videos + [zip_study, zip_other]:
            self.assertFalse(self.exists(key), key)
        for key in kept_videos + [zip_unrelated] + self.videos_of(sib_id):
            self.assertTrue(self.exists(key), key)

        # The researcher's exports: the response is there, the child's
        # name and free text nowhere, even with identifiable columns.
        for f in ("responses.json", "children.csv", "frames.csv", "summary.csv"):
            body = rw.api("admin", "GET", EXPORT.format(rw.study["uuid"], f)
                          + "?identifiable=true", timeout=60).body.decode()
            self.assertIn(acc["uuid"] if f != "children.csv" else "erased", body, f)
            for m in (name, free):
                self.assertNotIn(m, body, f)
        # The report.
        msg = self.wait_mail(parent["email"], "child")
        text = msg.get_payload(decode=True).decode()
        self.assertIn("Responses deleted (with their videos): 1", text)
        self.assertIn("Responses kept, de-identified: 1 (studies: Research)", text)
        self.assertNotIn(name, text)

    def test_child_refusals_change_nothing(self):
        rw, w = self.rw, self.w
        mine = rw.r["pending"]["parent"]
        theirs = rw.r["accepted"]["child"]
        before = w.sql("SELECT count(*) FROM responses") + w.sql("SELECT count(*) FROM children")
        for path in (f"/api/v1/children/{theirs['uuid']}/",
                     "/api/v1/children/00000000-0000-4000-8000-000000000000/",
                     "/api/v1/children/not-a-uuid/"):
            self.assertStatus(rw.api(mine, "DELETE", path), 404)
        self.assertStatus(rw.api(None, "DELETE", f"/api/v1/children/{theirs['uuid']}/"), 401)
        self.assertEqual(w.sql("SELECT count(*) FROM responses") +
                         w.sql("SELECT count(*) FROM children"), before)
        self.assertEqual(w.sql("SELECT count(*) FROM erasures"), "0")

    # -- an account

    def test_family_erases_its_account(self):
        rw, w = self.rw, self.w
        self.put_objects()
        zip_study = self.put_zip(rw.study)
        # Nothing kept: the rejected family goes entirely.
        rej = rw.r["rejected"]
        p = rej["parent"]
        gone_videos = self.videos_of(rej["id"])
        r = rw.api(p, "DELETE", f"/api/v1/users/{p['uuid']}/")
        self.assertStatus(r, 200)
        rep = r.json["data"]["attributes"]
        self.assertEqual(r.json["data"]["type"], "erasures")
        self.assertEqual((rep["scope"], rep["responses_deleted"], rep["responses_kept"],
                          rep["children_deleted"], rep["videos_deleted"]),
                         ("account", 1, 0, 1, 2))
        self.assertEqual(w.sql(f"SELECT count(*) FROM users WHERE id = {p['id']}"), "0")
        self.assertEqual(w.sql(f"SELECT count(*) FROM demographic_data WHERE user_id = {p['id']}"),
                         "0")
        self.assertEqual(w.sql(f"SELECT count(*) FROM children WHERE user_id = {p['id']}"), "0")
        # Its token no longer opens anything.
        self.assertStatus(rw.api(p, "GET", "/api/v1/users/"), 401)

        # Kept: the withdrawn family's response was accepted.
        wd = rw.r["withdrawn"]
        q = wd["parent"]
        r = rw.api(q, "DELETE", f"/api/v1/users/{q['uuid']}/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["responses_kept"], 1)
        row = w.sql("SELECT email || '|' || given_name || nickname || '|' || is_active || '|' ||"
                    f" password_hash FROM users WHERE id = {q['id']}")
        self.assertRegex(row, r"^erased-[0-9a-f-]{36}@erased\.invalid\|\|false\|$")
        self.assertEqual(w.sql(f"SELECT count(*) FROM demographic_data WHERE user_id = {q['id']}"),
                         "0")
        self.assertEqual(w.sql("SELECT demographic_snapshot_id IS NULL FROM responses"
                               f" WHERE id = {wd['id']}"), "t")
        self.assertStatus(rw.api(q, "GET", "/api/v1/users/"), 401)
        # Twice is not possible: the account is gone for its owner.
        self.assertStatus(rw.api(q, "DELETE", f"/api/v1/users/{q['uuid']}/"), 401)

        self.wait_storage_done()
        for key in gone_videos + [zip_study]:
            self.assertFalse(self.exists(key), key)
        # The demographics export no longer holds either family's answers.
        body = rw.api("admin", "GET", EXPORT.format(rw.study["uuid"], "demographics.json")
                      + "?identifiable=true", timeout=60).body.decode()
        self.assertNotIn("WITHDRAWN", body)
        self.assertNotIn("REJECTED", body)
        for addr in (p["email"], q["email"]):
            text = self.wait_mail(addr, "account").get_payload(decode=True).decode()
            self.assertIn("your account and everything in it", text)

    def test_account_refusals_change_nothing(self):
        rw, w = self.rw, self.w
        me = rw.r["pending"]["parent"]
        other = rw.r["accepted"]["parent"]
        users = w.sql("SELECT count(*) FROM users")
        for path in (f"/api/v1/users/{other['uuid']}/",
                     "/api/v1/users/00000000-0000-4000-8000-000000000000/",
                     "/api/v1/users/not-a-uuid/"):
            self.assertStatus(rw.api(me, "DELETE", path), 404)
        self.assertStatus(rw.api(None, "DELETE", f"/api/v1/users/{me['uuid']}/"), 401)
        # A researcher's account is closed by a site admin only.
        res = rw.u["member"]
        r = rw.api(res, "DELETE", f"/api/v1/users/{res['uuid']}/")
        self.assertStatus(r, 409)
        self.assertEqual(r.json["errors"][0]["code"], "conflict")
        self.assertEqual(w.sql("SELECT count(*) FROM users"), users)
        self.assertEqual(w.sql("SELECT count(*) FROM erasures"), "0")

    # -- the admin command, and a crash in the middle

    def test_admin_erases_and_the_task_resumes(self):
        rw, w = self.rw, self.w
        self.put_objects()
        # usage and unknown subjects
        r = self.srv.ctl("erase", "everything")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("usage", r.stdout + r.stderr)
        r = self.srv.ctl("erase", "child", "00000000-0000-4000-8000-000000000000")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no such child", r.stdout + r.stderr)
        r = self.srv.ctl("erase", "account", "nobody@example.test")
        self.assertNotEqual(r.returncode, 0)

        # A child by uuid, then a researcher's account by email.
        pend = rw.r["pending"]
        gone = self.videos_of(pend["id"])
        r = self.srv.ctl("erase", "child", pend["child"]["uuid"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('"responses_deleted": 1', r.stdout)
        msg = self.wait_mail(pend["parent"]["email"], "child")
        self.assertIn("a site administrator was", msg.get_payload(decode=True).decode())
        r = self.srv.ctl("erase", "account", rw.u["member"]["email"].upper())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(w.sql(f"SELECT count(*) FROM users WHERE id = {rw.u['member']['id']}"),
                         "0")
        self.wait_storage_done()
        for key in gone:
            self.assertFalse(self.exists(key), key)

        # A server that died in the middle of deleting: its task row is
        # left running with an expired lease; another claim resumes it
        # from what erasure_objects still lists.
        prev = rw.r["preview"]
        left = self.videos_of(prev["id"])
        self.srv.stop()
        eid, eu = w.row("INSERT INTO erasures (scope, subject_uuid, requested_by) VALUES"
                        f" ('child', {lit(prev['child']['uuid'])}, 'admin') RETURNING id, uuid")
        for key in left:
            w.sql(f"INSERT INTO erasure_objects (erasure_id, key, kind) VALUES"
                  f" ({eid}, {lit(key)}, 'video')")
        tid = w.sql("INSERT INTO tasks (kind, subject, payload, state, stage, attempts,"
                    " lease_owner, lease_until, started_at) VALUES ('erase_storage', "
                    f"{lit(eu)}, jsonb_build_object('erasure', {lit(eu)}), 'running', 'delete',"
                    " 1, 'gone-host/1/1/x', now() - interval '1 minute', now()) RETURNING id")
        w.sql(f"INSERT INTO task_stages (task_id, attempt, stage) VALUES ({tid}, 1, 'delete')")
        self.srv.start()
        self.wait_storage_done()
        for key in left:
            self.assertFalse(self.exists(key), key)
        self.assertIn("interrupted", w.sql(
            "SELECT string_agg(s.outcome, ',') FROM task_stages s JOIN tasks t ON t.id = s.task_id"
            f" WHERE t.subject = {lit(eu)}"))
