"""test_workflow: the study workflow of reference section 2 as the server
runs it (src/domain/workflow.c, sql/030_workflow.sql), and the researcher's
study and lab management around it (studymgmt.c, labs.c).

- Every trigger from every state: allowed -> 200, the new state,
  status_change_date, one study log (action = new state, user, extra
  {comments, from, trigger}) and the notification emails in mail_outbox
  (study admins on submit, retract, resubmit, activate, pause, deactivate;
  the submitter on approve and reject); not allowed -> 409 naming the
  states it is allowed from, and nothing written.
- The guard: activate needs a built runner.
- The race: two transitions on one study at once, exactly one 200 and one
  409 (made deterministic by holding the row lock while both start).
- Editing a monitored field of an approved/active/paused/deactivated study
  sends it back to rejected, naming the fields in its log and email; an
  eligibility-only edit of an active study is logged and emailed but not
  rejected; the setting is data.
- GET /api/v1/workflow as JSON, dot (region of interest highlighted) and
  SVG (Graphviz as a supervised child; 501 without it).
- Study create / edit / clone, study groups, logs; labs: create, edit,
  approve, join requests, members; the error rules (400/403/404/409/415,
  nothing written)."""

import json
import os
import shutil
import stat
import subprocess
import threading
import time

from apifixtures import World, lit
from harness import JSONAPI, PG_HOST, PG_PORT, PG_SOCKDIR, PG_SUPERUSER, StudyhubTestCase, new_dir, request

STATES = ["created", "submitted", "rejected", "retracted", "approved", "active",
          "paused", "deactivated", "archived"]

# Reference section 2, written out independently of the migration.
TABLE = {
    "submit": (["created"], "submitted"),
    "approve": (["submitted"], "approved"),
    "reject": (["submitted", "approved", "active", "paused", "deactivated"], "rejected"),
    "archive": ([s for s in STATES if s != "archived"], "archived"),
    "retract": (["submitted"], "retracted"),
    "resubmit": (["rejected", "retracted"], "submitted"),
    "activate": (["approved", "paused"], "active"),
    "pause": (["active"], "paused"),
    "deactivate": (["active", "paused"], "deactivated"),
}
NOTIFY = {"submit": "study_admins", "retract": "study_admins", "resubmit": "study_admins",
          "activate": "study_admins", "pause": "study_admins", "deactivate": "study_admins",
          "approve": "submitter", "reject": "submitter", "archive": "none"}
APPROVAL = {"approve", "reject"}
MONITORED_STATES = ["approved", "active", "paused", "deactivated"]


class WorkflowBase(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"PG_POOL_SIZE": "6"})
        cls.w = World(cls.srv)
        w = cls.w
        cls.reviewer = w.user("reviewer", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.reviewer['id']}")
        cls.owner = w.user("owner", researcher=True)        # study admin
        cls.coadmin = w.user("coadmin", researcher=True)    # study admin too
        cls.submitter = w.user("submitter", researcher=True)
        cls.manager = w.user("manager", researcher=True)
        cls.reader = w.user("reader", researcher=True)      # lab readonly
        cls.outsider = w.user("outsider", researcher=True)
        cls.parent = w.user("parent")
        cls.lab = w.lab("wf")
        w.member(cls.lab, cls.owner, "admin")
        w.member(cls.lab, cls.reader, "readonly")
        w.member(cls.lab, cls.manager, "member")
        w.member(cls.lab, cls.coadmin, "member")

    # -- fixtures

    def studies(self, states, built=True):
        """One study per state (owner and coadmin its admins, manager its
        manager, submitter its last submitter); returns dicts in order."""
        w = self.w
        values = ", ".join(
            f"({lit('S-' + s + '-' + str(i))}, {self.lab['id']}, {lit(s)}, {lit(built)},"
            f" {self.owner['id']}, {lit(json.dumps({'frames': {}, 'sequence': []}))}::jsonb)"
            for i, s in enumerate(states))
        out = w.sql(
            "WITH ins AS (INSERT INTO studies (name, lab_id, state, built, creator_id, structure)"
            f" VALUES {values} RETURNING id, uuid, state, name),"
            " m AS (INSERT INTO study_members (study_id, user_id, grp)"
            f"  SELECT id, {self.owner['id']}, 'admin' FROM ins"
            f"  UNION ALL SELECT id, {self.coadmin['id']}, 'admin' FROM ins"
            f"  UNION ALL SELECT id, {self.manager['id']}, 'manager' FROM ins),"
            " l AS (INSERT INTO study_logs (study_id, user_id, action, extra, created_at)"
            f"  SELECT id, {self.submitter['id']}, 'submitted', '{{\"fixture\": true}}',"
            "          now() - interval '1 day' FROM ins)"
            " SELECT id, uuid, state, name FROM ins ORDER BY id")
        rows = [line.split("|") for line in out.split("\n") if line]
        return [{"id": int(r[0]), "uuid": r[1], "state": r[2], "name": r[3]} for r in rows]

    def study(self, state="created", built=True):
        return self.studies([state], built)[0]

    def fire(self, who, study, trigger, comments="", **kw):
        body = {"trigger": trigger}
        if comments is not None:
            body["comments"] = comments
        return self.w.api(who, "POST", f"/api/v1/studies/{study['uuid']}/transitions/",
                          body, **kw)

    def state_of(self, study):
        return self.w.sql(f"SELECT state FROM studies WHERE id = {study['id']}")

    def logs(self, study):
        """The study's logs but the fixture's, oldest first."""
        out = self.w.sql(
            "SELECT coalesce(json_agg(json_build_object('id', l.id, 'action', l.action,"
            " 'user', l.user_id, 'extra', l.extra) ORDER BY l.id), '[]')"
            f" FROM study_logs l WHERE l.study_id = {study['id']} AND NOT l.extra ? 'fixture'")
        return json.loads(out)

    def mails(self, marker):
        """Outbox rows whose body mentions marker (a study uuid)."""
        out = self.w.sql(
            "SELECT coalesce(json_agg(json_build_object('kind', kind, 'to', to_addr,"
            " 'subject', subject, 'body', body_text) ORDER BY id), '[]')"
            f" FROM mail_outbox WHERE body_text LIKE {lit('%' + marker + '%')}")
        return json.loads(out)

    def assertError(self, r, status, code=None, pointer=None, contains=None):
        self.assertStatus(r, status)
        self.assertEqual(r.headers.get("content-type"), JSONAPI)
        err = r.json["errors"][0]
        self.assertEqual(err["status"], str(status))
        if code:
            self.assertEqual(err["code"], code)
        if pointer is not None:
            self.assertEqual(err.get("source", {}).get("pointer"), pointer)
        if contains:
            self.assertIn(contains, err["detail"])
        return err


class TransitionTest(WorkflowBase):

    def snapshot(self, studies):
        """State, recent status change, logs (but the fixture's) and queued
        emails of many studies in one query, by study id."""
        ids = ",".join(str(st["id"]) for st in studies)
        out = self.w.sql(
            "SELECT json_object_agg(s.id, json_build_object("
            " 'state', s.state,"
            " 'changed', s.status_change_date > now() - interval '5 minutes',"
            " 'logs', (SELECT coalesce(json_agg(json_build_object('id', l.id, 'action', l.action,"
            "           'user', l.user_id, 'extra', l.extra) ORDER BY l.id), '[]')"
            "            FROM study_logs l WHERE l.study_id = s.id AND NOT l.extra ? 'fixture'),"
            " 'mails', (SELECT coalesce(json_agg(json_build_object('kind', m.kind, 'to', m.to_addr,"
            "           'subject', m.subject, 'body', m.body_text) ORDER BY m.id), '[]')"
            "            FROM mail_outbox m WHERE m.body_text LIKE '%' || s.uuid || '%')))"
            f" FROM studies s WHERE s.id IN ({ids})")
        return {int(k): v for k, v in json.loads(out).items()}

    def test_every_trigger_from_every_state(self):
        combos = [(t, s) for t in TABLE for s in STATES]
        studies = self.studies([s for _, s in combos])
        emails = {"study_admins": sorted([self.owner["email"], self.coadmin["email"]]),
                  "submitter": [self.submitter["email"]], "none": []}
        replies = [self.fire(self.reviewer, st, trigger, f"why {trigger}")
                   for (trigger, _), st in zip(combos, studies)]
        after = self.snapshot(studies)
        for (trigger, state), st, r in zip(combos, studies, replies):
            with self.subTest(trigger=trigger, state=state):
                froms, to = TABLE[trigger]
                got = after[st["id"]]
                if state in froms:
                    self.assertStatus(r, 200)
                    self.assertEqual(r.json["data"]["id"], st["uuid"])
                    self.assertEqual(r.json["data"]["attributes"]["state"], to)
                    self.assertIsNotNone(r.json["data"]["attributes"]["status_change_date"])
                    meta = r.json["meta"]["transition"]
                    self.assertEqual((meta["trigger"], meta["from"], meta["to"]),
                                     (trigger, state, to))
                    self.assertEqual(got["state"], to)
                    self.assertTrue(got["changed"])
                    logs = got["logs"]
                    self.assertEqual(len(logs), 1, logs)
                    self.assertEqual(logs[0]["action"], to)
                    self.assertEqual(logs[0]["user"], self.reviewer["id"])
                    self.assertEqual(logs[0]["extra"], {"comments": f"why {trigger}",
                                                        "from": state, "trigger": trigger})
                    self.assertEqual(meta["log"], logs[0]["id"])
                    want = emails[NOTIFY[trigger]]
                    self.assertEqual(sorted(m["to"] for m in got["mails"]), want)
                    self.assertEqual(meta["emails_queued"], len(want))
                    for m in got["mails"]:
                        self.assertEqual(m["kind"], "study_" + trigger)
                        self.assertIn(st["name"], m["subject"])
                        self.assertIn(f"{state} -> {to}", m["body"])
                        self.assertIn(f"why {trigger}", m["body"])
                        self.assertIn(self.reviewer["email"], m["body"])
                else:
                    err = self.assertError(r, 409, "conflict")
                    self.assertIn(f"is {state}", err["detail"])
                    self.assertIn(", ".join(froms), err["detail"])
                    self.assertEqual(got["state"], state)
                    self.assertIsNone(got["changed"])
                    self.assertEqual(got["logs"], [])
                    self.assertEqual(got["mails"], [])

    def test_table_is_the_reference(self):
        r = self.w.api(self.parent, "GET", "/api/v1/workflow")
        self.assertStatus(r, 200)
        attrs = r.json["data"]["attributes"]
        self.assertEqual([s["name"] for s in attrs["states"]], STATES)
        got = {}
        for t in attrs["transitions"]:
            froms, to = got.setdefault(t["trigger"], ([], t["to"]))
            froms.append(t["from"])
            self.assertEqual(t["to"], to)
            self.assertEqual(t["permission"], "edit_study__approval" if t["trigger"] in APPROVAL
                             else "edit_study__status")
            self.assertEqual(t["notify"], NOTIFY[t["trigger"]])
            self.assertEqual(t["guard"], "built" if t["trigger"] == "activate" else None)
        self.assertEqual({k: (sorted(v[0]), v[1]) for k, v in got.items()},
                         {k: (sorted(v[0]), v[1]) for k, v in TABLE.items()})
        self.assertIn("built", attrs["guards"])
        self.assertIsNone(attrs["study"])
        self.assertStatus(self.srv.get("/api/v1/workflow"), 401)
        # Same at the trailing-slash spelling.
        self.assertStatus(self.w.api(self.parent, "GET", "/api/v1/workflow/"), 200)

    def test_activate_needs_a_built_runner(self):
        st = self.study("approved", built=False)
        err = self.assertError(self.fire(self.owner, st, "activate"), 409, "conflict")
        self.assertIn("built", err["detail"])
        self.assertEqual(self.state_of(st), "approved")
        self.assertEqual(self.logs(st), [])
        self.assertEqual(self.mails(st["uuid"]), [])
        self.w.sql(f"UPDATE studies SET built = true WHERE id = {st['id']}")
        self.assertStatus(self.fire(self.owner, st, "activate"), 200)
        self.assertEqual(self.state_of(st), "active")

    def test_who_may_fire(self):
        st = self.study("created")
        # A reader of the study without edit_study__status: 403.
        self.assertError(self.fire(self.reader, st, "submit"), 403, "permission_denied",
                         contains="edit_study__status")
        # Someone who cannot see it: 404, whatever the trigger.
        self.assertError(self.fire(self.outsider, st, "submit"), 404, "not_found")
        self.assertError(self.fire(self.parent, st, "nonsense"), 404, "not_found")
        self.assertError(self.fire(None, st, "submit"), 401)
        self.assertEqual(self.state_of(st), "created")
        # A manager submits; only a reviewer approves.
        self.assertStatus(self.fire(self.manager, st, "submit"), 200)
        self.assertError(self.fire(self.manager, st, "approve"), 403, "permission_denied",
                         contains="edit_study__approval")
        self.assertError(self.fire(self.owner, st, "reject"), 403)
        self.assertEqual(self.state_of(st), "submitted")
        # approve/reject mail goes to whoever submitted last (the manager).
        self.assertStatus(self.fire(self.reviewer, st, "approve", "fine"), 200)
        mails = self.mails(st["uuid"])
        self.assertEqual([m["to"] for m in mails if m["kind"] == "study_approve"],
                         [self.manager["email"]])

    def test_bad_requests_change_nothing(self):
        st = self.study("created")
        path = f"/api/v1/studies/{st['uuid']}/transitions/"
        w = self.w
        err = self.assertError(self.fire(self.owner, st, "launch"), 400, "invalid", "/trigger")
        self.assertIn("submit", err["detail"])
        self.assertError(self.fire(self.owner, st, "Submit!"), 400, "invalid", "/trigger")
        self.assertError(w.api(self.owner, "POST", path, {"comments": "x"}), 400, "required",
                         "/trigger")
        self.assertError(w.api(self.owner, "POST", path, raw="{nope"), 400, "parse_error")
        self.assertError(w.api(self.owner, "POST", path, ["submit"]), 400, "parse_error")
        self.assertError(w.api(self.owner, "POST", path, {"trigger": 3}), 400, "invalid")
        self.assertError(w.api(self.owner, "POST", path, {"trigger": "submit", "comment": "x"}),
                         400, "invalid")
        self.assertError(w.api(self.owner, "POST", path, {"trigger": "submit", "comments": 5}),
                         400, "invalid", "/comments")
        self.assertError(w.api(self.owner, "POST", path,
                               {"trigger": "submit", "comments": "x" * 10001}),
                         400, "invalid", "/comments")
        self.assertError(w.api(self.owner, "POST", path, raw='{"trigger":"submit"}',
                               headers={"Content-Type": "text/plain"}), 415)
        self.assertError(w.api(self.owner, "POST", path,
                               raw='{"trigger":"submit","trigger":"archive"}'), 400)
        self.assertError(w.api(self.owner, "POST", "/api/v1/studies/nope/transitions/",
                               {"trigger": "submit"}), 404)
        self.assertError(w.api(self.owner, "POST",
                               "/api/v1/studies/00000000-0000-4000-8000-000000000000/transitions/",
                               {"trigger": "submit"}), 404)
        self.assertEqual(self.state_of(st), "created")
        self.assertEqual(self.logs(st), [])
        # Comments may be omitted or null; upper-case ids work.
        r = w.api(self.owner, "POST", path.replace(st["uuid"], st["uuid"].upper()),
                  {"trigger": "submit", "comments": None})
        self.assertStatus(r, 200)
        self.assertEqual(self.logs(st)[0]["extra"]["comments"], "")


class RaceTest(WorkflowBase):

    def race(self, study, triggers, hold_lock):
        """Fire the triggers at once; with hold_lock, a psql session holds
        the study's row lock until every request has taken its snapshot."""
        holder = None
        if hold_lock:
            host = PG_SOCKDIR or PG_HOST
            holder = subprocess.Popen(
                ["psql", "-X", "-q", "-h", host, "-p", str(PG_PORT), "-U", PG_SUPERUSER,
                 "-d", self.w.db, "-v", "ON_ERROR_STOP=1", "-c",
                 f"BEGIN; SELECT 1 FROM studies WHERE id = {study['id']} FOR UPDATE;"
                 " SELECT pg_sleep(1.5); COMMIT;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.addCleanup(holder.wait)
            # Until the lock is held.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.w.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c"
                              " ON c.oid = l.relation WHERE c.relname = 'studies'"
                              " AND l.database = (SELECT oid FROM pg_database"
                              "                    WHERE datname = current_database())"
                              " AND l.mode = 'RowShareLock' AND l.granted") != "0":
                    break
                time.sleep(0.02)
        results = [None] * len(triggers)
        gate = threading.Barrier(len(triggers))

        def go(i, trig):
            gate.wait()
            results[i] = self.fire(self.owner, study, trig, f"race {trig}")

        threads = [threading.Thread(target=go, args=(i, t)) for i, t in enumerate(triggers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if holder:
            holder.wait(30)
        return results

    def check_one_winner(self, study, results, start):
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 409], [r.body[:300] for r in results])
        winner = [r for r in results if r.status == 200][0]
        loser = [r for r in results if r.status == 409][0]
        self.assertEqual(loser.json["errors"][0]["code"], "conflict")
        to = winner.json["data"]["attributes"]["state"]
        self.assertEqual(self.state_of(study), to)
        logs = self.logs(study)
        self.assertEqual(len(logs), 1, logs)
        self.assertEqual(logs[0]["extra"]["from"], start)
        self.assertEqual(len(self.mails(study["uuid"])), winner.json["meta"]["transition"]
                         ["emails_queued"])

    def test_same_trigger_twice_under_a_held_lock(self):
        st = self.study("created")
        results = self.race(st, ["submit", "submit"], hold_lock=True)
        self.check_one_winner(st, results, "created")
        loser = [r for r in results if r.status == 409][0]
        self.assertIn("changed state", loser.json["errors"][0]["detail"])

    def test_different_triggers_under_a_held_lock(self):
        # pause and deactivate are both allowed from active; whichever goes
        # second expected "active" and must lose.
        st = self.study("active")
        self.check_one_winner(st, self.race(st, ["pause", "deactivate"], hold_lock=True),
                              "active")

    def test_free_races(self):
        for st in self.studies(["submitted"] * 8):
            with self.subTest(study=st["uuid"]):
                self.check_one_winner(st, self.race_as(st, [(self.reviewer, "approve"),
                                                            (self.owner, "retract")]),
                                      "submitted")

    def race_as(self, study, pairs):
        results = [None] * len(pairs)
        gate = threading.Barrier(len(pairs))

        def go(i, who, trig):
            gate.wait()
            results[i] = self.fire(who, study, trig)

        threads = [threading.Thread(target=go, args=(i, w, t)) for i, (w, t) in enumerate(pairs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return results


class ReviewFieldsTest(WorkflowBase):

    def edit(self, who, study, attrs, **kw):
        return self.w.api(who, "PATCH", f"/api/v1/researcher/studies/{study['uuid']}/",
                          {"data": {"type": "studies", "id": study["uuid"], "attributes": attrs}},
                          **kw)

    def test_monitored_field_sends_a_reviewed_study_back(self):
        new = {"frames": {"a": {"kind": "exp-lookit-text"}}, "sequence": ["a"]}
        for state in MONITORED_STATES:
            with self.subTest(state=state):
                st = self.study(state)
                r = self.edit(self.owner, st, {"structure": new, "exit_url": "https://x.test/"})
                self.assertStatus(r, 200)
                self.assertEqual(r.json["data"]["attributes"]["state"], "rejected")
                self.assertEqual(r.json["data"]["attributes"]["structure"], new)
                self.assertTrue(r.json["meta"]["review_forced"])
                self.assertEqual(r.json["meta"]["fields_forcing_review"], ["exit_url", "structure"])
                self.assertEqual(self.state_of(st), "rejected")
                [log] = self.logs(st)
                self.assertEqual(log["action"], "rejected")
                self.assertEqual(log["user"], self.owner["id"])
                self.assertEqual(log["extra"]["from"], state)
                self.assertEqual(log["extra"]["trigger"], "edit")
                self.assertEqual(log["extra"]["fields_changed"], ["exit_url", "structure"])
                mails = self.mails(st["uuid"])
                self.assertEqual(sorted(m["to"] for m in mails),
                                 sorted([self.owner["email"], self.coadmin["email"]]))
                for m in mails:
                    self.assertIn("needs a new review", m["subject"])
                    self.assertIn("exit_url, structure", m["body"])
                    self.assertIn(f"{state} -> rejected", m["body"])
                # It can go round again.
                self.assertStatus(self.fire(self.owner, st, "resubmit"), 200)

    def test_eligibility_only_edit_of_an_active_study_is_not_rejected(self):
        st = self.study("active")
        r = self.edit(self.owner, st, {"min_age_months": 7, "max_age_years": 4,
                                       "criteria_expression": "gender != m"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["state"], "active")
        self.assertFalse(r.json["meta"]["review_forced"])
        self.assertEqual(self.state_of(st), "active")
        [log] = self.logs(st)
        self.assertEqual(log["action"], "edited")
        self.assertEqual(log["extra"]["fields_changed"],
                         ["criteria_expression", "max_age_years", "min_age_months"])
        mails = self.mails(st["uuid"])
        self.assertEqual(len(mails), 2)
        self.assertIn("No new review", mails[0]["body"])
        self.assertIn("criteria_expression, max_age_years, min_age_months", mails[0]["subject"])
        # Settings fields: neither review nor log nor mail; nor are fields
        # set to the value they had.
        r = self.edit(self.owner, st, {"priority": 50, "public": True, "min_age_months": 7})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["meta"]["fields_changed"], ["priority", "public"])
        self.assertEqual(len(self.logs(st)), 1)
        self.assertEqual(len(self.mails(st["uuid"])), 2)
        # Mixed with a content field: back to rejected, all named.
        r = self.edit(self.owner, st, {"name": "Renamed", "max_age_years": 5})
        self.assertEqual(r.json["data"]["attributes"]["state"], "rejected")
        self.assertEqual(self.logs(st)[-1]["extra"]["fields_changed"], ["max_age_years", "name"])

    def test_edits_before_review_are_free(self):
        for state in ("created", "submitted", "rejected", "retracted"):
            st = self.study(state)
            r = self.edit(self.owner, st, {"structure": {"frames": {}, "sequence": ["x"]},
                                           "name": "New name"})
            self.assertStatus(r, 200)
            self.assertEqual(self.state_of(st), state)
            self.assertEqual(self.logs(st), [])
            self.assertEqual(self.mails(st["uuid"]), [])

    def test_the_setting_is_data(self):
        self.w.sql("UPDATE study_review_fields SET forces_review_in = '{active}'"
                   " WHERE field = 'min_age_days'")
        self.w.sql("UPDATE study_review_fields SET forces_review_in = '{}', notify_in = '{}'"
                   " WHERE field = 'duration'")
        try:
            st = self.study("active")
            r = self.edit(self.owner, st, {"duration": "5 minutes"})
            self.assertEqual(r.json["data"]["attributes"]["state"], "active")
            self.assertEqual(self.logs(st), [])
            r = self.edit(self.owner, st, {"min_age_days": 3, "max_age_years": 2})
            self.assertEqual(r.json["data"]["attributes"]["state"], "rejected")
        finally:
            self.w.sql("UPDATE study_review_fields SET forces_review_in = '{}',"
                       " notify_in = '{approved,active,paused,deactivated}'"
                       " WHERE field = 'min_age_days'")
            self.w.sql("UPDATE study_review_fields SET notify_in = '{}',"
                       " forces_review_in = '{approved,active,paused,deactivated}'"
                       " WHERE field = 'duration'")

    def test_moving_lab_is_monitored(self):
        other = self.w.lab("other")
        self.w.member(other, self.owner, "guest")
        st = self.study("active")
        r = self.w.api(self.owner, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                       {"data": {"type": "studies", "id": st["uuid"], "relationships": {
                           "lab": {"data": {"type": "labs", "id": other["uuid"]}}}}})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["relationships"]["lab"]["data"]["id"], other["uuid"])
        self.assertEqual(r.json["data"]["attributes"]["state"], "rejected")
        self.assertEqual(self.logs(st)[0]["extra"]["fields_changed"], ["lab"])
        # A designer without edit_study__lab cannot move it.
        designer = self.w.user("designer", researcher=True)
        self.w.study_member(st, designer, "design")
        self.w.member(self.lab, designer, "guest")
        r = self.w.api(designer, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                       {"data": {"type": "studies", "id": st["uuid"], "relationships": {
                           "lab": {"data": {"type": "labs", "id": self.lab["uuid"]}}}}})
        self.assertError(r, 403)


class GraphTest(WorkflowBase):

    def test_dot_and_region_of_interest(self):
        r = self.w.api(self.reader, "GET", "/api/v1/workflow?format=dot")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/vnd.graphviz"))
        dot = r.text
        self.assertTrue(dot.startswith("digraph workflow {"))
        for trig, (froms, to) in TABLE.items():
            for f in froms:
                self.assertIn(f'"{f}" -> "{to}"', dot)
        self.assertNotIn("fillcolor", dot)
        # A paused study that came from active: paused is current, active
        # previous and reachable, deactivated/rejected/archived reachable.
        st = self.study("active")
        self.assertStatus(self.fire(self.owner, st, "pause"), 200)
        r = self.w.api(self.reader, "GET", f"/api/v1/workflow?study={st['uuid']}")
        self.assertStatus(r, 200)
        info = r.json["data"]["attributes"]["study"]
        self.assertEqual((info["state"], info["previous_state"]), ("paused", "active"))
        nxt = {n["trigger"]: n for n in info["next"]}
        self.assertEqual(set(nxt), {"reject", "archive", "activate", "deactivate"})
        self.assertFalse(nxt["activate"]["allowed"])          # a reader
        self.assertTrue(nxt["activate"]["guard_ok"])
        r = self.w.api(self.reader, "GET", f"/api/v1/workflow?study={st['uuid']}&format=dot")
        dot = r.text
        self.assertIn('"paused" [tooltip="Stopped for now; may be started again",'
                      ' style="rounded,filled,bold"', dot)
        self.assertIn('"active" [tooltip="Running: participants can take part",'
                      ' style="rounded,filled,dashed", fillcolor="#a8dadc"', dot)
        self.assertIn('"created" [tooltip="Being designed; not yet submitted",'
                      ' color="gray60"', dot)
        self.assertRegex(dot, r'"active" -> "paused" \[label="pause", color="#457b9d"')
        self.assertRegex(dot, r'"paused" -> "deactivated" \[label="deactivate",'
                              r' color="#1d3557".*style=dashed')
        r = self.w.api(self.owner, "GET",
                       f"/api/v1/workflow?study={st['uuid']}&format=dot&roi=1")
        roi = r.text
        for s in ("paused", "active", "deactivated", "rejected", "archived"):
            self.assertIn(f'"{s}" [', roi)
        for s in ("created", "submitted", "retracted", "approved"):
            self.assertNotIn(f'"{s}" [', roi)
        self.assertNotIn('"created" ->', roi)
        # The owner may deactivate but not reject (a reviewer's trigger).
        self.assertIn('"paused" -> "deactivated" [label="deactivate", color="#1d3557",'
                      ' fontcolor="#1d3557", penwidth=2];', roi)
        self.assertIn('"paused" -> "rejected" [label="reject", color="#1d3557",'
                      ' fontcolor="#1d3557", penwidth=2, style=dashed];', roi)
        # Errors.
        self.assertStatus(self.w.api(self.outsider, "GET", f"/api/v1/workflow?study={st['uuid']}"),
                          404)
        self.assertStatus(self.w.api(self.reader, "GET", "/api/v1/workflow?study=nope"), 404)
        self.assertStatus(self.w.api(self.reader, "GET", "/api/v1/workflow?format=png"), 400)
        self.assertStatus(self.w.api(self.reader, "GET", "/api/v1/workflow?roi=1"), 400)
        self.assertStatus(self.w.api(self.reader, "GET", "/api/v1/workflow?roi=yes&study="
                                     + st["uuid"]), 400)

    def fake_dot(self, script):
        d = new_dir("fakedot")
        path = os.path.join(d, "dot")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + script)
        os.chmod(path, stat.S_IRWXU)
        return path

    def test_svg_through_a_child(self):
        ok = self.fake_dot('[ "$1" = -Tsvg ] || exit 2\n'
                           'n=$(grep -c -- "->" "$2")\n'
                           'printf \'<svg xmlns="http://www.w3.org/2000/svg"><!-- %s edges -->'
                           '</svg>\\n\' "$n"\n')
        srv = self.server(database=self.w.db, env={"GRAPHVIZ_DOT": ok})
        r = request(srv.port, "GET", "/api/v1/workflow?format=svg", token=self.reader["token"])
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["content-type"], "image/svg+xml")
        edges = sum(len(f) for f, _ in TABLE.values())
        self.assertIn(f"<!-- {edges} edges -->", r.text)
        srv.stop()
        # A dot that fails: 503 with why; one that is missing: 501.
        bad = self.fake_dot("echo broken >&2\nexit 3\n")
        srv = self.server(database=self.w.db, env={"GRAPHVIZ_DOT": bad})
        r = request(srv.port, "GET", "/api/v1/workflow?format=svg", token=self.reader["token"])
        self.assertError(r, 503, "unavailable", contains="exit")
        srv.stop()
        srv = self.server(database=self.w.db, env={"GRAPHVIZ_DOT": "/nonexistent/dot"})
        r = request(srv.port, "GET", "/api/v1/workflow?format=svg", token=self.reader["token"])
        self.assertError(r, 501, "not_implemented", contains="graphviz")
        # No temporary files left behind.
        srv.stop()

    def test_svg_with_graphviz(self):
        dot = shutil.which("dot")
        if not dot:
            self.skipTest("graphviz is not installed")
        st = self.study("approved", built=False)
        r = self.w.api(self.owner, "GET", f"/api/v1/workflow?format=svg&study={st['uuid']}")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["content-type"], "image/svg+xml")
        self.assertIn("<svg", r.text)
        self.assertIn("approved", r.text)


class StudyManagementTest(WorkflowBase):

    def create(self, who, attrs, lab=None):
        body = {"data": {"type": "studies", "attributes": attrs}}
        if lab is not False:
            body["data"]["relationships"] = {
                "lab": {"data": {"type": "labs", "id": (lab or self.lab)["uuid"]}}}
        return self.w.api(who, "POST", "/api/v1/researcher/studies/", body)

    def test_create_edit_clone(self):
        w = self.w
        r = self.create(self.manager, {"name": "Fresh", "min_age_months": 6,
                                       "max_age_years": 2, "structure": {"frames": {},
                                                                         "sequence": []},
                                       "state": "active", "pk": 5})
        self.assertStatus(r, 201)
        d = r.json["data"]
        self.assertEqual(d["type"], "studies")
        a = d["attributes"]
        self.assertEqual((a["name"], a["state"], a["min_age_months"], a["max_age_years"]),
                         ("Fresh", "created", 6, 2))
        self.assertNotIn("salt", a)
        self.assertEqual(d["relationships"]["lab"]["data"]["id"], self.lab["uuid"])
        self.assertEqual(d["relationships"]["creator"]["data"]["id"], self.manager["uuid"])
        sid = d["id"]
        st = {"uuid": sid, "id": a["pk"]}
        # The creator is the study's admin, and the log says created.
        g = w.api(self.manager, "GET", f"/api/v1/researcher/studies/{sid}/groups/")
        self.assertStatus(g, 200)
        groups = {x["id"]: [m["id"] for m in x["attributes"]["members"]] for x in g.json["data"]}
        self.assertEqual(list(groups), ["preview", "design", "analysis", "submission_processor",
                                        "researcher", "manager", "admin"])
        self.assertEqual(groups["admin"], [self.manager["uuid"]])
        lg = w.api(self.manager, "GET", f"/api/v1/researcher/studies/{sid}/logs/")
        self.assertStatus(lg, 200)
        self.assertEqual([x["attributes"]["action"] for x in lg.json["data"]], ["created"])
        self.assertEqual(lg.json["links"]["meta"]["count"], 1)
        # Detail and list.
        r = w.api(self.reader, "GET", f"/api/v1/researcher/studies/{sid}/")
        self.assertStatus(r, 200)
        r = w.api(self.reader, "GET", f"/api/v1/researcher/studies/?state=created&lab={self.lab['uuid']}")
        self.assertIn(sid, [x["id"] for x in r.json["data"]])
        self.assertEqual(w.api(self.outsider, "GET", "/api/v1/researcher/studies/").json
                         ["links"]["meta"]["count"], 0)
        self.assertStatus(w.api(self.reader, "GET", "/api/v1/researcher/studies/?state=nope"), 400)
        # Edit.
        r = w.api(self.manager, "PATCH", f"/api/v1/researcher/studies/{sid}/",
                  {"data": {"type": "studies", "id": sid, "attributes": {
                      "purpose": "To learn", "metadata": {
                          "player_repo_url": "https://github.com/lookit/ember-lookit-frameplayer",
                          "last_known_player_sha": "a" * 40}}}})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["purpose"], "To learn")
        # Clone: new uuid and salt, created, the cloner its creator and admin.
        w.sql(f"UPDATE studies SET state = 'active', built = true WHERE uuid = '{sid}'")
        r = w.api(self.reader, "POST", f"/api/v1/researcher/studies/{sid}/clone/")
        self.assertStatus(r, 201)
        c = r.json["data"]
        self.assertNotEqual(c["id"], sid)
        ca = c["attributes"]
        self.assertEqual((ca["name"], ca["state"], ca["purpose"], ca["built"]),
                         ("Copy of Fresh", "created", "To learn", False))
        self.assertEqual(ca["metadata"]["last_known_player_sha"], "a" * 40)
        self.assertEqual(c["relationships"]["creator"]["data"]["id"], self.reader["uuid"])
        salts = w.sql(f"SELECT count(DISTINCT salt) FROM studies WHERE uuid IN ('{sid}', '{c['id']}')")
        self.assertEqual(salts, "2")
        [log] = json.loads(w.sql(
            "SELECT json_agg(extra) FROM study_logs l JOIN studies s ON s.id = l.study_id"
            f" WHERE s.uuid = '{c['id']}'"))
        self.assertEqual(log, {"cloned_from": sid})
        self.assertEqual(w.sql(f"SELECT grp FROM study_members sm JOIN studies s ON s.id ="
                               f" sm.study_id WHERE s.uuid = '{c['id']}'"), "admin")
        # The original is untouched.
        self.assertEqual(w.sql(f"SELECT state FROM studies WHERE uuid = '{sid}'"), "active")

    def test_bad_input_changes_nothing(self):
        w = self.w
        n = w.sql("SELECT count(*) FROM studies")
        for attrs, pointer in [
            ({}, "/data/attributes/name"),
            ({"name": ""}, "/data/attributes/name"),
            ({"name": "x", "nonsense": 1}, "/data/attributes/nonsense"),
            ({"name": "x", "priority": 0}, "/data/attributes/priority"),
            ({"name": "x", "priority": "5"}, "/data/attributes/priority"),
            ({"name": "x", "min_age_days": -1}, "/data/attributes/min_age_days"),
            ({"name": "x", "min_age_days": 1.5}, "/data/attributes/min_age_days"),
            ({"name": "x", "structure": []}, "/data/attributes/structure"),
            ({"name": "x", "structure": {"frames": [], "sequence": []}}, "/data/attributes/structure"),
            ({"name": "x", "exit_url": "javascript:alert(1)"}, "/data/attributes/exit_url"),
            ({"name": "x", "criteria_expression": "age_in_days >"},
             "/data/attributes/criteria_expression"),
            ({"name": "x", "metadata": {"last_known_player_sha": "abc"}}, "/data/attributes/metadata"),
            ({"name": "x", "metadata": {"player_repo_url": "ftp://x"}}, "/data/attributes/metadata"),
            ({"name": "x", "study_type": 4}, "/data/attributes/study_type"),
            ({"name": "x", "public": "yes"}, "/data/attributes/public"),
            ({"name": "x", "min_age_years": 3, "max_age_years": 2}, "/data/attributes/max_age_years"),
        ]:
            with self.subTest(attrs=attrs):
                r = self.create(self.owner, attrs)
                self.assertError(r, 400, pointer=pointer)
        self.assertError(self.create(self.owner, {"name": "x"}, lab=False), 400,
                         pointer="/data/relationships/lab")
        self.assertError(self.create(self.owner, {"name": "x"},
                                     lab={"uuid": "00000000-0000-4000-8000-000000000000"}), 400,
                         pointer="/data/relationships/lab")
        r = w.api(self.owner, "POST", "/api/v1/researcher/studies/",
                  {"data": {"type": "labs", "attributes": {"name": "x"}}})
        self.assertError(r, 409)
        r = w.api(self.owner, "POST", "/api/v1/researcher/studies/", raw='{"data":',)
        self.assertError(r, 400, "parse_error")
        r = w.api(self.owner, "POST", "/api/v1/researcher/studies/", raw='{"data":{}}',
                  headers={"Content-Type": "text/html"})
        self.assertError(r, 415)
        self.assertEqual(w.sql("SELECT count(*) FROM studies"), n)
        # Edits: the same rules, and nothing written.
        st = self.study("active")
        before = w.sql(f"SELECT row_to_json(s)::text FROM studies s WHERE id = {st['id']}")
        for attrs in ({"name": ""}, {"max_age_years": 0, "min_age_years": 5},
                      {"structure": "x"}, {"salt": "x"}):
            r = w.api(self.owner, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                      {"data": {"type": "studies", "id": st["uuid"], "attributes": attrs}})
            self.assertError(r, 400)
        r = w.api(self.owner, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                  {"data": {"type": "studies", "attributes": {"name": "y"}}})
        self.assertError(r, 400)                         # no id
        r = w.api(self.owner, "PATCH", f"/api/v1/researcher/studies/{st['uuid']}/",
                  {"data": {"type": "studies", "id": self.lab["uuid"],
                            "attributes": {"name": "y"}}})
        self.assertError(r, 409)                         # another id
        self.assertEqual(w.sql(f"SELECT row_to_json(s)::text FROM studies s WHERE id = {st['id']}"),
                         before)
        self.assertEqual(self.logs(st), [])

    def test_groups(self):
        w = self.w
        st = self.study("created")
        base = f"/api/v1/researcher/studies/{st['uuid']}/groups/"
        staff = w.user("staff", researcher=True)
        w.member(self.lab, staff, "guest")

        def add(who, grp, user):
            return w.api(who, "POST", f"{base}{grp}/members/",
                         {"data": {"type": "users", "id": user["uuid"]}})

        r = add(self.manager, "design", staff)
        self.assertStatus(r, 201)
        members = {g["id"]: g["attributes"]["members"] for g in r.json["data"]}
        self.assertEqual([m["id"] for m in members["design"]], [staff["uuid"]])
        self.assertEqual(members["design"][0]["attributes"]["email"], staff["email"])
        self.assertError(add(self.manager, "design", staff), 409)
        # Managers staff a study but do not make admins.
        self.assertError(add(self.manager, "admin", staff), 403,
                         contains="edit_study__admin__user_set")
        self.assertStatus(add(self.owner, "admin", staff), 201)
        # Only lab members can join; unknown groups and users.
        self.assertError(add(self.owner, "design", self.outsider), 400, pointer="/data/id")
        self.assertError(add(self.owner, "design", self.parent), 400, pointer="/data/id")
        self.assertError(add(self.owner, "wizards", staff), 404)
        self.assertError(add(self.reader, "design", staff), 403)
        self.assertError(add(self.outsider, "design", staff), 404)
        r = w.api(self.owner, "POST", f"{base}design/members/",
                  {"data": {"type": "users", "id": "nope"}})
        self.assertError(r, 400, pointer="/data/id")
        # Removing: the last admin stays.
        self.assertStatus(w.api(self.owner, "DELETE", f"{base}design/members/{staff['uuid']}/"), 204)
        self.assertError(w.api(self.owner, "DELETE", f"{base}design/members/{staff['uuid']}/"), 404)
        for u in (self.coadmin, staff):
            self.assertStatus(w.api(self.owner, "DELETE", f"{base}admin/members/{u['uuid']}/"), 204)
        self.assertError(w.api(self.owner, "DELETE", f"{base}admin/members/{self.owner['uuid']}/"),
                         409, contains="at least one admin")
        self.assertEqual(w.sql(f"SELECT count(*) FROM study_members WHERE study_id = {st['id']}"
                               " AND grp = 'admin'"), "1")


class LabTest(WorkflowBase):

    def test_lab_lifecycle(self):
        w = self.w
        founder = w.user("founder", researcher=True)
        joiner = w.user("joiner", researcher=True)
        r = w.api(founder, "POST", "/api/v1/labs/", {"data": {"type": "labs", "attributes": {
            "name": "Baby Lab", "slug": "baby-lab", "institution": "U",
            "lab_website": "https://baby.test/"}}})
        self.assertStatus(r, 201)
        lab = r.json["data"]
        lid = lab["id"]
        self.assertFalse(lab["attributes"]["approved_to_test"])
        self.assertEqual(lab["attributes"]["my_group"], "admin")
        # Unapproved: invisible to others and absent from the public list.
        self.assertStatus(w.api(joiner, "GET", f"/api/v1/researcher/labs/{lid}/"), 404)
        self.assertStatus(w.api(joiner, "GET", f"/api/v1/labs/{lid}/"), 404)
        self.assertError(w.api(joiner, "POST", f"/api/v1/labs/{lid}/join-requests/"), 404)
        # Duplicates and bad input.
        for attrs, status, pointer in [
            ({"name": "Baby Lab"}, 409, "/data/attributes/name"),
            ({"name": "Other", "slug": "baby-lab"}, 409, "/data/attributes/slug"),
            ({"name": "Other", "slug": "Bad Slug"}, 400, "/data/attributes/slug"),
            ({"name": "Other", "approved_to_test": True}, 400, "/data/attributes/approved_to_test"),
            ({"slug": "x"}, 400, "/data/attributes/name"),
        ]:
            r = w.api(founder, "POST", "/api/v1/labs/", {"data": {"type": "labs", "attributes": attrs}})
            self.assertError(r, status, pointer=pointer)
        self.assertError(w.api(self.parent, "POST", "/api/v1/labs/",
                               {"data": {"type": "labs", "attributes": {"name": "P"}}}), 403)
        # The founder cannot approve it; a reviewer can, and the admins hear.
        patch = {"data": {"type": "labs", "id": lid, "attributes": {"approved_to_test": True}}}
        self.assertError(w.api(founder, "PATCH", f"/api/v1/labs/{lid}/", patch), 403,
                         pointer="/data/attributes/approved_to_test")
        r = w.api(self.reviewer, "PATCH", f"/api/v1/labs/{lid}/", patch)
        self.assertStatus(r, 200)
        self.assertTrue(r.json["data"]["attributes"]["approved_to_test"])
        self.assertEqual(w.sql(f"SELECT to_addr FROM mail_outbox WHERE kind = 'lab_approved'"
                               f" AND subject LIKE '%Baby Lab%'"), founder["email"])
        self.assertStatus(w.api(joiner, "GET", f"/api/v1/labs/{lid}/"), 200)
        # Details: the lab's admin.
        r = w.api(founder, "PATCH", f"/api/v1/labs/{lid}/",
                  {"data": {"type": "labs", "id": lid, "attributes": {
                      "description": "We study babies", "approved_to_test": True}}})
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["description"], "We study babies")
        self.assertError(w.api(joiner, "PATCH", f"/api/v1/labs/{lid}/",
                               {"data": {"type": "labs", "id": lid,
                                         "attributes": {"description": "mine"}}}), 403)
        # Join, approve, change group, leave.
        self.assertStatus(w.api(joiner, "POST", f"/api/v1/labs/{lid}/join-requests/"), 201)
        self.assertError(w.api(joiner, "POST", f"/api/v1/labs/{lid}/join-requests/"), 409)
        self.assertEqual(w.sql("SELECT to_addr FROM mail_outbox WHERE kind = 'lab_join_request'"
                               f" AND subject LIKE '%{joiner['email']}%'"), founder["email"])
        self.assertError(w.api(joiner, "GET", f"/api/v1/labs/{lid}/join-requests/"), 403)
        r = w.api(founder, "GET", f"/api/v1/labs/{lid}/join-requests/")
        self.assertEqual([x["id"] for x in r.json["data"]], [joiner["uuid"]])
        body = {"data": {"type": "lab-members", "attributes": {"group": "member"},
                         "relationships": {"user": {"data": {"type": "users",
                                                             "id": joiner["uuid"]}}}}}
        self.assertError(w.api(joiner, "POST", f"/api/v1/labs/{lid}/members/", body), 403)
        bad = json.loads(json.dumps(body))
        bad["data"]["attributes"]["group"] = "overlord"
        self.assertError(w.api(founder, "POST", f"/api/v1/labs/{lid}/members/", bad), 400,
                         pointer="/data/attributes/group")
        r = w.api(founder, "POST", f"/api/v1/labs/{lid}/members/", body)
        self.assertStatus(r, 201)
        self.assertEqual(r.json["data"]["attributes"]["group"], "member")
        self.assertEqual(w.sql("SELECT count(*) FROM lab_join_requests lr JOIN labs l"
                               f" ON l.id = lr.lab_id WHERE l.uuid = '{lid}'"), "0")
        self.assertError(w.api(founder, "POST", f"/api/v1/labs/{lid}/members/", body), 409)
        r = w.api(joiner, "GET", f"/api/v1/labs/{lid}/members/")
        self.assertStatus(r, 200)
        self.assertEqual(sorted(x["id"] for x in r.json["data"]),
                         sorted([founder["uuid"], joiner["uuid"]]))
        mpath = f"/api/v1/labs/{lid}/members/{joiner['uuid']}/"
        r = w.api(founder, "PATCH", mpath, {"data": {"type": "lab-members", "id": joiner["uuid"],
                                                     "attributes": {"group": "admin"}}})
        self.assertStatus(r, 200)
        # The last admin cannot go; with two, one can.
        fpath = f"/api/v1/labs/{lid}/members/{founder['uuid']}/"
        self.assertStatus(w.api(founder, "DELETE", fpath), 204)
        self.assertError(w.api(joiner, "DELETE", mpath), 409, contains="at least one admin")
        self.assertError(w.api(joiner, "PATCH", mpath,
                               {"data": {"type": "lab-members", "id": joiner["uuid"],
                                         "attributes": {"group": "member"}}}), 409)
        # Join requests can be withdrawn by their author or declined.
        self.assertStatus(w.api(founder, "POST", f"/api/v1/labs/{lid}/join-requests/"), 201)
        self.assertStatus(w.api(founder, "DELETE",
                                f"/api/v1/labs/{lid}/join-requests/{founder['uuid']}/"), 204)
        self.assertStatus(w.api(founder, "POST", f"/api/v1/labs/{lid}/join-requests/"), 201)
        self.assertStatus(w.api(joiner, "DELETE",
                                f"/api/v1/labs/{lid}/join-requests/{founder['uuid']}/"), 204)
        self.assertError(w.api(joiner, "DELETE",
                               f"/api/v1/labs/{lid}/join-requests/{founder['uuid']}/"), 404)
        # Researcher lab list shows it; the permissions endpoint agrees.
        r = w.api(joiner, "GET", "/api/v1/researcher/labs/?page_size=100")
        self.assertIn(lid, [x["id"] for x in r.json["data"]])
        r = w.api(joiner, "GET", f"/api/v1/researcher/permissions/?lab={lid}")
        self.assertStatus(r, 200)
        self.assertIn("edit_lab__groups", r.json["data"]["attributes"]["granted"])
        self.assertNotIn("edit_lab__approved_to_test", r.json["data"]["attributes"]["granted"])
