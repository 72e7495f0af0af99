"""test_permissions: every route of labs, study management and the workflow,
for every role, against one table of allow / deny.

Roles: anonymous, a participant, a researcher with no ties (outsider),
each lab group of lab L (guest, readonly, member, admin), each study group
of study S in L (preview, design, analysis, submission_processor,
researcher, manager, admin; study-group users are in no lab group, so
their rights come from the study alone), and a site admin.

The rule the table encodes: no credentials is 401; a study or lab the
caller cannot read is 404; one they can read but not change is 403; a
conflict with what already is (a lab member asking to join) is 409.  For
every write the table also names its effect, checked after each request:
a denied request changed nothing.  The permissions behind the table are
data (sql/002_model.sql, sql/030_workflow.sql): if a grant changes, this
table is what has to agree."""

import json
import secrets
import subprocess

from apifixtures import World, lit
from harness import (JSONAPI, PG_HOST, PG_PORT, PG_SOCKDIR, PG_SUPERUSER, StudyhubTestCase,
                     request)

LAB_GROUPS = ["guest", "readonly", "member", "admin"]
STUDY_GROUPS = ["preview", "design", "analysis", "submission_processor", "researcher",
                "manager", "admin"]
ROLES = (["anonymous", "participant", "outsider"] + [f"lab_{g}" for g in LAB_GROUPS]
         + [f"study_{g}" for g in STUDY_GROUPS] + ["site_admin"])
AUTHED = [r for r in ROLES if r != "anonymous"]
RESEARCHERS = [r for r in AUTHED if r != "participant"]
LAB_MEMBERS = {f"lab_{g}" for g in LAB_GROUPS}
STUDY_MEMBERS = {f"study_{g}" for g in STUDY_GROUPS}
# read_study__details on S: lab readonly and up, every study group, site admins.
READERS = {"lab_readonly", "lab_member", "lab_admin", "site_admin"} | STUDY_MEMBERS
NON_READERS = set(AUTHED) - READERS


class Psql:
    """One psql session for the many small statements of the table walk (a
    process per statement would take most of the test's time)."""

    MARK = "--end-of-statement--"

    def __init__(self, db):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", PG_SOCKDIR or PG_HOST,
             "-p", str(PG_PORT), "-U", PG_SUPERUSER, "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sql(self, text):
        self.proc.stdin.write(text.rstrip().rstrip(";") + ";\n\\echo " + self.MARK + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"psql ended: {''.join(lines)}")
            if line.rstrip("\n") == self.MARK:
                return "".join(lines).strip()
            lines.append(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def expect(ok, allow, hidden=(), conflict=(), deny=403):
    """Expected status per role: ok for allow, 404 for hidden, 409 for
    conflict, deny for the other authenticated roles, 401 anonymous."""
    out = {"anonymous": 401}
    for role in AUTHED:
        out[role] = (ok if role in allow else 404 if role in hidden
                     else 409 if role in conflict else deny)
    return out


def study_rule(ok, allow):
    """A study route: readers without the permission 403, others 404."""
    return expect(ok, set(allow), hidden=NON_READERS)


class PermissionTableTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        w = cls.w = World(cls.srv)
        cls.lab = w.lab("perm")
        cls.hidden_lab = w.row("INSERT INTO labs (name, approved_to_test) VALUES"
                               f" ({lit('unapproved-' + secrets.token_hex(4))}, false)"
                               " RETURNING id, uuid")
        cls.users = {"anonymous": None}
        cls.users["participant"] = w.user("participant")
        cls.users["outsider"] = w.user("outsider", researcher=True)
        for g in LAB_GROUPS:
            u = cls.users[f"lab_{g}"] = w.user(f"lab-{g}", researcher=True)
            w.member(cls.lab, u, g)
        cls.study = w.study(cls.lab, "Perm", state="created", public=False)
        for g in STUDY_GROUPS:
            u = cls.users[f"study_{g}"] = w.user(f"study-{g}", researcher=True)
            w.study_member(cls.study, u, g)
        cls.users["site_admin"] = w.user("site-admin", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.users['site_admin']['id']}")
        cls.staff = w.user("staff", researcher=True)          # moved around by the writes
        w.member(cls.lab, cls.staff, "guest")
        cls.applicant = w.user("applicant", researcher=True)  # asks to join L
        cls.n = 0

    # -- the table

    def routes(self):
        L, S, U = self.lab["uuid"], self.study["uuid"], self.hidden_lab[1]
        lid, sid = self.lab["id"], self.study["id"]
        staff, appl = self.staff, self.applicant
        sg = f"/api/v1/researcher/studies/{S}/groups"

        def ensure_staff_in_lab():
            return (f"INSERT INTO lab_members (lab_id, user_id, role) VALUES"
                    f" ({lid}, {staff['id']}, 'guest') ON CONFLICT (lab_id, user_id)"
                    " DO UPDATE SET role = 'guest'")

        def staff_group(grp):
            return ("SELECT count(*) FROM study_members WHERE study_id = "
                    f"{sid} AND user_id = {staff['id']} AND grp = '{grp}'")

        lab_body = lambda n: {"data": {"type": "labs", "id": L,        # noqa: E731
                                       "attributes": {"description": f"d{n}"}}}
        return [
            # name, method, path, body(n), setup sql, effect (sql, allowed, denied), expected
            ("workflow table", "GET", "/api/v1/workflow", None, None, None,
             expect(200, AUTHED)),
            ("workflow of S", "GET", f"/api/v1/workflow?study={S}&format=dot", None, None, None,
             study_rule(200, READERS)),
            ("runner study detail", "GET", f"/api/v1/studies/{S}/", None, None, None,
             study_rule(200, READERS)),
            ("researcher study list", "GET", "/api/v1/researcher/studies/", None, None, None,
             expect(200, AUTHED)),
            ("researcher study detail", "GET", f"/api/v1/researcher/studies/{S}/", None, None,
             None, study_rule(200, READERS)),
            ("study logs", "GET", f"/api/v1/researcher/studies/{S}/logs/", None, None, None,
             study_rule(200, READERS)),
            ("study groups", "GET", f"{sg}/", None, None, None, study_rule(200, READERS)),
            ("permissions on S", "GET", f"/api/v1/researcher/permissions/?study={S}", None, None,
             None, study_rule(200, READERS)),
            ("site permissions", "GET", "/api/v1/researcher/permissions/", None, None, None,
             expect(200, AUTHED)),
            ("edit S", "PATCH", f"/api/v1/researcher/studies/{S}/",
             lambda n: {"data": {"type": "studies", "id": S, "attributes": {"purpose": f"p{n}"}}},
             None, (f"SELECT purpose FROM studies WHERE id = {sid}", "p{n}", "!p{n}"),
             study_rule(200, {"study_design", "study_researcher", "study_admin", "site_admin"})),
            ("create a study in L", "POST", "/api/v1/researcher/studies/",
             lambda n: {"data": {"type": "studies", "attributes": {"name": f"New {n}"},
                                 "relationships": {"lab": {"data": {"type": "labs", "id": L}}}}},
             None, (None, "New {n}", None),
             expect(201, LAB_MEMBERS | {"site_admin"})),
            ("clone S", "POST", f"/api/v1/researcher/studies/{S}/clone/", None, None,
             (None, "Copy of Perm", None),
             study_rule(201, {"lab_readonly", "lab_member", "lab_admin", "site_admin"})),
            ("add to design", "POST", f"{sg}/design/members/",
             lambda n: {"data": {"type": "users", "id": staff["uuid"]}},
             [ensure_staff_in_lab(), f"DELETE FROM study_members WHERE study_id = {sid}"
              f" AND user_id = {staff['id']}"],
             (staff_group("design"), "1", "0"),
             study_rule(201, {"study_manager", "study_admin", "site_admin"})),
            ("add to admin", "POST", f"{sg}/admin/members/",
             lambda n: {"data": {"type": "users", "id": staff["uuid"]}},
             [ensure_staff_in_lab(), f"DELETE FROM study_members WHERE study_id = {sid}"
              f" AND user_id = {staff['id']}"],
             (staff_group("admin"), "1", "0"),
             study_rule(201, {"study_admin", "site_admin"})),
            ("remove from design", "DELETE", f"{sg}/design/members/{staff['uuid']}/", None,
             [ensure_staff_in_lab(), "INSERT INTO study_members (study_id, user_id, grp) VALUES"
              f" ({sid}, {staff['id']}, 'design') ON CONFLICT DO NOTHING"],
             (staff_group("design"), "0", "1"),
             study_rule(204, {"study_manager", "study_admin", "site_admin"})),
            ("submit S", "POST", f"/api/v1/studies/{S}/transitions/",
             lambda n: {"trigger": "submit", "comments": f"c{n}"},
             [f"UPDATE studies SET state = 'created' WHERE id = {sid}"],
             (f"SELECT state FROM studies WHERE id = {sid}", "submitted", "created"),
             study_rule(200, {"study_manager", "study_admin", "site_admin"})),
            ("approve S", "POST", f"/api/v1/studies/{S}/transitions/",
             lambda n: {"trigger": "approve"},
             [f"UPDATE studies SET state = 'submitted' WHERE id = {sid}"],
             (f"SELECT state FROM studies WHERE id = {sid}", "approved", "submitted"),
             study_rule(200, {"site_admin"})),
            ("researcher lab list", "GET", "/api/v1/researcher/labs/", None, None, None,
             expect(200, AUTHED)),
            ("researcher lab detail", "GET", f"/api/v1/researcher/labs/{L}/", None, None, None,
             expect(200, AUTHED)),
            ("unapproved lab detail", "GET", f"/api/v1/researcher/labs/{U}/", None, None, None,
             expect(200, {"site_admin"}, hidden=AUTHED)),
            ("permissions on L", "GET", f"/api/v1/researcher/permissions/?lab={L}", None, None,
             None, expect(200, AUTHED)),
            ("create a lab", "POST", "/api/v1/labs/",
             lambda n: {"data": {"type": "labs", "attributes": {"name": f"Lab {n}"}}},
             None, ("SELECT count(*) FROM labs WHERE name = 'Lab {n}'", "1", "0"),
             expect(201, RESEARCHERS)),
            ("edit L", "PATCH", f"/api/v1/labs/{L}/", lab_body, None,
             (f"SELECT description FROM labs WHERE id = {lid}", "d{n}", "!d{n}"),
             expect(200, {"lab_admin", "site_admin"})),
            ("approve L", "PATCH", f"/api/v1/labs/{L}/",
             lambda n: {"data": {"type": "labs", "id": L, "attributes": {"approved_to_test": True}}},
             [f"UPDATE labs SET approved_to_test = false WHERE id = {lid}"],
             (f"SELECT approved_to_test FROM labs WHERE id = {lid}", "t", "f"),
             # While unapproved only its members (and site admins) see it.
             expect(200, {"site_admin"}, hidden=set(AUTHED) - LAB_MEMBERS)),
            ("ask to join L", "POST", f"/api/v1/labs/{L}/join-requests/", None,
             ["DELETE FROM lab_join_requests WHERE user_id = {me}"],
             (f"SELECT count(*) FROM lab_join_requests WHERE lab_id = {lid}"
              " AND user_id = {me}", "1", "0"),
             expect(201, set(RESEARCHERS) - LAB_MEMBERS, conflict=LAB_MEMBERS)),
            ("join requests of L", "GET", f"/api/v1/labs/{L}/join-requests/", None, None, None,
             expect(200, {"lab_readonly", "lab_member", "lab_admin", "site_admin"})),
            ("members of L", "GET", f"/api/v1/labs/{L}/members/", None, None, None,
             expect(200, {"lab_readonly", "lab_member", "lab_admin", "site_admin"})),
            ("decline a request", "DELETE", f"/api/v1/labs/{L}/join-requests/{appl['uuid']}/",
             None, [f"DELETE FROM lab_members WHERE lab_id = {lid} AND user_id = {appl['id']}",
                    f"INSERT INTO lab_join_requests (lab_id, user_id) VALUES ({lid}, {appl['id']})"
                    " ON CONFLICT DO NOTHING"],
             (f"SELECT count(*) FROM lab_join_requests WHERE user_id = {appl['id']}", "0", "1"),
             expect(204, {"lab_admin", "site_admin"})),
            ("approve a request", "POST", f"/api/v1/labs/{L}/members/",
             lambda n: {"data": {"type": "lab-members", "attributes": {"group": "readonly"},
                                 "relationships": {"user": {"data": {
                                     "type": "users", "id": appl["uuid"]}}}}},
             [f"DELETE FROM lab_members WHERE lab_id = {lid} AND user_id = {appl['id']}",
              f"INSERT INTO lab_join_requests (lab_id, user_id) VALUES ({lid}, {appl['id']})"
              " ON CONFLICT DO NOTHING"],
             (f"SELECT count(*) FROM lab_members WHERE user_id = {appl['id']}", "1", "0"),
             expect(201, {"lab_admin", "site_admin"})),
            ("change a member's group", "PATCH", f"/api/v1/labs/{L}/members/{staff['uuid']}/",
             lambda n: {"data": {"type": "lab-members", "id": staff["uuid"],
                                 "attributes": {"group": "readonly"}}},
             [ensure_staff_in_lab()],
             (f"SELECT role FROM lab_members WHERE user_id = {staff['id']}", "readonly", "guest"),
             expect(200, {"lab_admin", "site_admin"})),
            ("remove a member", "DELETE", f"/api/v1/labs/{L}/members/{staff['uuid']}/", None,
             [ensure_staff_in_lab()],
             (f"SELECT count(*) FROM lab_members WHERE user_id = {staff['id']}", "0", "1"),
             expect(204, {"lab_admin", "site_admin"})),
        ]

    def test_every_route_for_every_role(self):
        w = Psql(self.w.db)
        self.addCleanup(w.close)
        mismatches = []
        checked = 0
        for name, method, path, body, setup, effect, want in self.routes():
            self.assertEqual(set(want), set(ROLES), name)
            # Every route starts from an approved L (one route unapproves it).
            w.sql(f"UPDATE labs SET approved_to_test = true WHERE id = {self.lab['id']}")
            for role in ROLES:
                self.__class__.n += 1
                n = self.__class__.n
                who = self.users[role]
                me = who["id"] if who else 0
                if setup:
                    w.sql("; ".join(s.replace("{me}", str(me)) for s in setup))
                hdrs = {"Accept": JSONAPI}
                data = None
                if body:
                    data = json.dumps(body(n))
                    hdrs["Content-Type"] = JSONAPI
                r = request(self.srv.port, method, path, body=data, headers=hdrs,
                            token=who["token"] if who else None)
                checked += 1
                expected = want[role]
                problem = None
                if r.status != expected:
                    problem = f"got {r.status}: {r.body[:200]!r}"
                elif r.status >= 400:
                    errs = (r.json or {}).get("errors") or [{}]
                    if errs[0].get("status") != str(r.status):
                        problem = f"not a JSON:API error document: {r.body[:200]!r}"
                elif effect and effect[0] is None and r.status == 201:
                    # Creations: the new resource is in the reply.
                    got = r.json["data"]["attributes"]["name"]
                    if got != effect[1].format(n=n):
                        problem = f"created {got!r}"
                if not problem and effect and effect[0]:
                    sql = effect[0].replace("{me}", str(me)).replace("{n}", str(n))
                    value = w.sql(sql)
                    ok = r.status < 400
                    target = (effect[1] if ok else effect[2]).format(n=n)
                    if target.startswith("!"):
                        bad = value == target[1:]
                    else:
                        bad = value != target
                    if bad:
                        problem = (f"{'allowed' if ok else 'denied'} request left {value!r}"
                                   f" (expected {target!r})")
                if problem:
                    mismatches.append(f"{name} as {role} (want {expected}): {problem}")
        self.assertEqual(mismatches, [], "\n" + "\n".join(mismatches))
        self.assertGreaterEqual(checked, 30 * len(ROLES))

    def test_permissions_endpoint_matches_the_grants(self):
        """What GET /api/v1/researcher/permissions/ says each study role
        holds is what the table above relied on."""
        S = self.study["uuid"]
        want = {
            "study_design": {"edit_study__details"},
            "study_manager": {"edit_study__status", "edit_study__group__user_set"},
            "study_admin": {"edit_study__details", "edit_study__status",
                            "edit_study__group__user_set", "edit_study__admin__user_set"},
            "lab_admin": set(),
        }
        for role, must in want.items():
            r = self.w.api(self.users[role], "GET", f"/api/v1/researcher/permissions/?study={S}")
            self.assertStatus(r, 200)
            held = set(r.json["data"]["attributes"]["granted"])
            self.assertIn("read_study__details", held)
            self.assertTrue(must <= held, (role, held))
            self.assertNotIn("edit_study__approval", held)
        r = self.w.api(self.users["site_admin"], "GET", f"/api/v1/researcher/permissions/?study={S}")
        self.assertIn("edit_study__approval", r.json["data"]["attributes"]["granted"])
        r = self.w.api(self.users["outsider"], "GET", "/api/v1/researcher/permissions/")
        self.assertEqual(sorted(r.json["data"]["attributes"]["granted"]), ["create_lab", "join_lab"])
        r = self.w.api(self.users["participant"], "GET", "/api/v1/researcher/permissions/")
        self.assertEqual(r.json["data"]["attributes"]["granted"], [])
        r = self.w.api(self.users["lab_guest"], "GET",
                       f"/api/v1/researcher/permissions/?lab={self.lab['uuid']}")
        self.assertEqual(sorted(r.json["data"]["attributes"]["granted"]),
                         ["associate_lab__study", "read_lab__details"])
        self.assertStatus(self.w.api(self.users["outsider"], "GET",
                                     f"/api/v1/researcher/permissions/?study={S}"), 404)
        self.assertStatus(self.w.api(self.users["outsider"], "GET",
                                     f"/api/v1/researcher/permissions/?study={S}&lab={S}"), 400)

    def test_inactive_users_hold_nothing(self):
        w = self.w
        u = w.user("gone", researcher=True)
        w.member(self.lab, u, "admin")
        w.sql(f"UPDATE users SET is_active = false WHERE id = {u['id']}")
        r = w.api(u, "GET", f"/api/v1/researcher/permissions/?lab={self.lab['uuid']}")
        # An inactive account cannot authenticate at all.
        self.assertStatus(r, 401)
        self.assertEqual(r.json["errors"][0]["detail"], "User inactive or deleted.")
