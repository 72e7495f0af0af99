"""test_users_auth: authentication (API tokens, Redis sessions with the CSRF
check, login and logout), the users / children / demographics / labs
endpoints of runner-api.md section 3 with their visibility rules (a
participant sees only their own records; others' ids are 404), the
pagination edges, and the admin commands `token create` and `seed-demo`.

Pagination decisions (http/jsonapi.c, as upstream's PageNumberPagination):
page=0 or page=abc is 404 "Invalid page."; page_size above 100 is capped at
100, not refused; page_size=abc is 400; a page past the last is 404; an
empty list still answers page 1 with count 0."""

import hashlib
import math
import unittest

from apifixtures import CHILD_ATTRIBUTES, World
from harness import JSONAPI, StudyhubTestCase, request, wait_until

USER_ATTRIBUTES = {
    "given_name", "middle_name", "family_name", "nickname", "identicon",
    "is_active", "is_staff", "is_researcher", "former_lookit_id",
    "linked_former_lookit_ids", "email_next_session", "email_new_studies",
    "email_study_updates", "email_response_questions", "date_created", "pk",
}
DEMOGRAPHIC_ATTRIBUTES = {
    "number_of_children", "child_birthdays", "number_of_guardians",
    "guardians_explanation", "us_race_ethnicity_identification",
    "us_race_ethnicity_identification_describe", "age", "gender",
    "education_level", "annual_income", "former_lookit_annual_income",
    "lookit_referrer", "additional_comments", "country", "state", "density",
    "extra", "date_created", "pk",
}
LAB_ATTRIBUTES = {
    "name", "institution", "principal_investigator_name", "lab_website",
    "description", "approved_to_test", "pk",
}

PARTICIPANT = ("participant@demo.studyhub.test", "studyhub-participant")
SEED_STUDY = "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e"
SEED_CHILD = "c41d0000-5eed-4a11-9e10-5757d1e5ba5e"
CSRF_DETAIL = "CSRF Failed: CSRF token missing or incorrect."


def seed(srv, test):
    out = srv.ctl("seed-demo")
    if out.returncode != 0:
        test.fail(f"seed-demo failed: {out.stdout} {out.stderr}")
    return out.stdout


class UsersAuthTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.base = cls.srv.base
        cls.w = World(cls.srv)
        w = cls.w
        cls.alice = w.user("alice")
        cls.bob = w.user("bob")
        cls.admin = w.user("admin", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {cls.admin['id']}")
        cls.alice_child = w.child(cls.alice, "Ann", age_days=300,
                                  languages_spoken=["en", "fr"])
        cls.alice_child2 = w.child(cls.alice, "Abe", age_days=900)
        cls.bob_child = w.child(cls.bob, "Ben")
        cls.alice_demo_old = w.demographics(cls.alice)
        cls.alice_demo_new = w.row(
            f"INSERT INTO demographic_data (user_id, country, previous_id, created_at)"
            f" SELECT {cls.alice['id']}, 'CA', id, now() + interval '1 second'"
            f" FROM demographic_data WHERE uuid = '{cls.alice_demo_old}' RETURNING uuid")[0]
        cls.bob_demo = w.demographics(cls.bob)
        cls.lab = w.lab("approved")
        cls.hidden_lab = w.row("INSERT INTO labs (name, approved_to_test)"
                               " VALUES ('hidden lab', false) RETURNING id, uuid")

    def get(self, who, path, **kw):
        return self.w.api(who, "GET", path, **kw)

    def assertError(self, r, status, code, detail=None, pointer="/data"):
        self.assertStatus(r, status)
        self.assertEqual(r.headers.get("content-type"), JSONAPI)
        err = r.json["errors"][0]
        self.assertEqual(err["status"], str(status))
        self.assertEqual(err["code"], code)
        if detail is not None:
            self.assertEqual(err["detail"], detail)
        if pointer is None:
            self.assertNotIn("source", err)
        else:
            self.assertEqual(err["source"]["pointer"], pointer)

    def assertNotFound(self, r):
        self.assertError(r, 404, "not_found", pointer=None)

    # -- tokens

    def test_token_auth_user_list_is_yourself(self):
        r = self.get(self.alice, "/api/v1/users/")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers.get("content-type"), JSONAPI)
        self.assertEqual(r.json["links"]["meta"], {"page": 1, "pages": 1, "count": 1})
        [u] = r.json["data"]
        self.assertEqual(u["type"], "users")
        self.assertEqual(u["id"], self.alice["uuid"])
        self.assertEqual(set(u["attributes"]), USER_ATTRIBUTES)   # no username
        self.assertEqual(u["attributes"]["pk"], self.alice["id"])
        self.assertTrue(u["attributes"]["date_created"].endswith("Z"))
        uu = self.alice["uuid"]
        self.assertEqual(u["links"]["self"], f"{self.base}/api/v1/users/{uu}/")
        self.assertEqual(u["relationships"], {
            "demographics": {"links": {"related": f"{self.base}/api/v1/users/{uu}/demographics/"}},
            "children": {"links": {"related": f"{self.base}/api/v1/users/{uu}/children/"}},
        })

    def test_bad_credentials_are_401(self):
        p = self.srv.port
        r = request(p, "GET", "/api/v1/users/")
        self.assertError(r, 401, "not_authenticated",
                         "Authentication credentials were not provided.")
        self.assertEqual(r.headers.get("www-authenticate"), "Token")
        r = request(p, "GET", "/api/v1/users/", headers={"Authorization": "Token nope"})
        self.assertError(r, 401, "authentication_failed", "Invalid token.")
        self.assertEqual(r.headers.get("www-authenticate"), "Token")
        r = request(p, "GET", "/api/v1/users/", headers={"Authorization": "Token"})
        self.assertError(r, 401, "authentication_failed",
                         "Invalid token header. No credentials provided.")
        r = request(p, "GET", "/api/v1/users/", headers={"Authorization": "Token a b"})
        self.assertError(r, 401, "authentication_failed",
                         "Invalid token header. Token string should not contain spaces.")
        # The keyword is case-insensitive, as DRF's.
        key = self.alice["token"].split()[1]
        r = request(p, "GET", "/api/v1/users/", headers={"Authorization": "token " + key})
        self.assertStatus(r, 200)
        # Another scheme is not a token: it falls through to the session.
        r = request(p, "GET", "/api/v1/users/", headers={"Authorization": "Bearer " + key})
        self.assertError(r, 401, "not_authenticated")
        # A garbage session cookie is no session.
        r = request(p, "GET", "/api/v1/users/", cookies={"sessionid": "x" * 64})
        self.assertError(r, 401, "not_authenticated")

    def test_inactive_user_token_is_401(self):
        carl = self.w.user("carl")
        self.assertStatus(self.get(carl, "/api/v1/users/"), 200)
        self.w.sql(f"UPDATE users SET is_active = false WHERE id = {carl['id']}")
        # The token cache hears the change by NOTIFY: at once in practice,
        # but the notification crosses a socket of its own after psql's
        # COMMIT returns, so allow it a moment under load.
        wait_until(lambda: self.get(carl, "/api/v1/users/").status == 401, 5,
                   message="the inactive user's token refused")
        self.assertError(self.get(carl, "/api/v1/users/"), 401, "authentication_failed",
                         "User inactive or deleted.")

    # -- visibility

    def test_participant_sees_only_own_records(self):
        a, b = self.alice, self.bob
        self.assertStatus(self.get(a, f"/api/v1/users/{a['uuid']}/"), 200)
        for path in (f"/api/v1/users/{b['uuid']}/",
                     f"/api/v1/users/{b['uuid']}/children/",
                     f"/api/v1/users/{b['uuid']}/demographics/",
                     f"/api/v1/demographics/{self.bob_demo}/",
                     f"/api/v1/users/{a['uuid'].upper()}/",
                     "/api/v1/users/not-a-uuid/",
                     "/api/v1/demographics/12345/",
                     "/api/v1/users/00000000-0000-0000-0000-000000000000/children/"):
            with self.subTest(path=path):
                self.assertNotFound(self.get(a, path))
        r = self.get(a, f"/api/v1/users/{b['uuid']}/")
        self.assertEqual(r.json["errors"][0]["detail"], "No User matches the given query.")

    def test_own_children(self):
        a = self.alice
        r = self.get(a, f"/api/v1/users/{a['uuid']}/children/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["links"]["meta"]["count"], 2)
        kids = {c["id"]: c for c in r.json["data"]}
        self.assertEqual(set(kids), {self.alice_child["uuid"], self.alice_child2["uuid"]})
        ann = kids[self.alice_child["uuid"]]
        self.assertEqual(ann["type"], "children")
        self.assertEqual(set(ann["attributes"]), CHILD_ATTRIBUTES)
        self.assertEqual(ann["attributes"]["given_name"], "Ann")
        self.assertEqual(ann["attributes"]["language_list"], "en fr")
        self.assertEqual(ann["attributes"]["age_at_birth"], "Not sure or prefer not to answer")
        self.assertEqual(ann["relationships"]["user"]["links"]["related"],
                         f"{self.base}/api/v1/users/{a['uuid']}/")
        self.assertEqual(ann["links"]["self"],
                         f"{self.base}/api/v1/children/{self.alice_child['uuid']}/")
        # ?ordering=birthday (oldest child first) and -birthday.
        r = self.get(a, f"/api/v1/users/{a['uuid']}/children/?ordering=birthday")
        self.assertEqual([c["attributes"]["given_name"] for c in r.json["data"]], ["Abe", "Ann"])
        r = self.get(a, f"/api/v1/users/{a['uuid']}/children/?ordering=-birthday")
        self.assertEqual([c["attributes"]["given_name"] for c in r.json["data"]], ["Ann", "Abe"])

    def test_own_demographics_newest_first(self):
        a = self.alice
        for path in ("/api/v1/demographics/", f"/api/v1/users/{a['uuid']}/demographics/"):
            with self.subTest(path=path):
                r = self.get(a, path)
                self.assertStatus(r, 200)
                self.assertEqual([d["id"] for d in r.json["data"]],
                                 [self.alice_demo_new, self.alice_demo_old])
                d = r.json["data"][0]
                self.assertEqual(d["type"], "demographics")
                self.assertEqual(set(d["attributes"]), DEMOGRAPHIC_ATTRIBUTES)
                self.assertEqual(d["attributes"]["country"], "CA")
                self.assertEqual(d["attributes"]["child_birthdays"], [])
                self.assertEqual(d["links"]["self"],
                                 f"{self.base}/api/v1/demographics/{self.alice_demo_new}/")
        r = self.get(a, f"/api/v1/demographics/{self.alice_demo_old}/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["country"], "US")

    def test_site_admin_reads_everyone(self):
        r = self.get(self.admin, "/api/v1/users/?page_size=100")
        self.assertStatus(r, 200)
        ids = {u["id"] for u in r.json["data"]}
        self.assertTrue({self.alice["uuid"], self.bob["uuid"]} <= ids)
        # can_read_usernames: the username (email) appears.
        mine = [u for u in r.json["data"] if u["id"] == self.bob["uuid"]][0]
        self.assertEqual(mine["attributes"]["username"], self.bob["email"])
        self.assertStatus(self.get(self.admin, f"/api/v1/users/{self.bob['uuid']}/children/"), 200)
        self.assertStatus(self.get(self.admin, f"/api/v1/demographics/{self.bob_demo}/"), 200)

    def test_labs_only_approved(self):
        r = self.get(self.alice, "/api/v1/labs/")
        self.assertStatus(r, 200)
        ids = [lab["id"] for lab in r.json["data"]]
        self.assertIn(self.lab["uuid"], ids)
        self.assertNotIn(self.hidden_lab[1], ids)
        lab = [x for x in r.json["data"] if x["id"] == self.lab["uuid"]][0]
        self.assertEqual(lab["type"], "labs")
        self.assertEqual(set(lab["attributes"]), LAB_ATTRIBUTES)
        self.assertTrue(lab["attributes"]["approved_to_test"])
        self.assertStatus(self.get(self.alice, f"/api/v1/labs/{self.lab['uuid']}/"), 200)
        self.assertNotFound(self.get(self.alice, f"/api/v1/labs/{self.hidden_lab[1]}/"))

    def test_read_only_methods(self):
        r = self.w.api(self.alice, "POST", "/api/v1/users/", body={"data": {}})
        self.assertEqual(r.status, 405)

    # -- pagination

    def test_pagination_edges(self):
        # Enough users that the admin's list spans pages of 100.
        self.w.sql("INSERT INTO users (email) SELECT 'bulk' || i || '@example.test'"
                   " FROM generate_series(1, 105) i")
        total = int(self.w.sql("SELECT count(*) FROM users"))
        adm = self.admin
        r = self.get(adm, "/api/v1/users/?page_size=101")     # capped, not refused
        self.assertStatus(r, 200)
        self.assertEqual(len(r.json["data"]), 100)
        meta = r.json["links"]["meta"]
        self.assertEqual(meta, {"page": 1, "pages": math.ceil(total / 100), "count": total})
        self.assertIsNone(r.json["links"]["prev"])
        self.assertIn("page=2", r.json["links"]["next"])
        self.assertTrue(r.json["links"]["next"].startswith(self.base + "/api/v1/users/?"))
        r2 = self.get(adm, "/api/v1/users/?page_size=100&page=2")
        self.assertStatus(r2, 200)
        self.assertEqual(len(r2.json["data"]), total - 100)
        self.assertFalse({u["id"] for u in r.json["data"]} & {u["id"] for u in r2.json["data"]})
        self.assertIsNone(r2.json["links"]["next"])
        self.assertIsNotNone(r2.json["links"]["prev"])
        # Default page size 10.
        self.assertEqual(len(self.get(adm, "/api/v1/users/").json["data"]), 10)
        for q in ("page=0", "page=abc", "page=-1", f"page={math.ceil(total / 10) + 1}"):
            with self.subTest(q=q):
                r = self.get(adm, f"/api/v1/users/?{q}")
                self.assertNotFound(r)
                self.assertEqual(r.json["errors"][0]["detail"], "Invalid page.")
        self.assertStatus(self.get(adm, "/api/v1/users/?page_size=abc"), 400)
        # An empty list is page 1 of 1 with nothing in it; page 2 is past it.
        dana = self.w.user("dana")
        r = self.get(dana, f"/api/v1/users/{dana['uuid']}/children/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"], [])
        self.assertEqual(r.json["links"]["meta"], {"page": 1, "pages": 1, "count": 0})
        self.assertIsNone(r.json["links"]["next"])
        self.assertNotFound(self.get(dana, "/api/v1/demographics/?page=2"))

    # -- sessions

    def login(self, client, email, password):
        return client.post("/api/v1/auth/login/", json_body={"email": email, "password": password})

    def test_session_login_csrf_logout(self):
        seed(self.srv, self)
        c = self.srv.client()
        r = self.login(c, PARTICIPANT[0].upper(), PARTICIPANT[1])   # emails ignore case
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["type"], "users")
        cookies = {x.split("=", 1)[0]: x for x in r.set_cookies}
        self.assertIn("HttpOnly", cookies["sessionid"])
        self.assertIn("SameSite=Lax", cookies["sessionid"])
        self.assertIn("Path=/", cookies["sessionid"])
        self.assertNotIn("HttpOnly", cookies["csrftoken"])
        self.assertIn("SameSite=Lax", cookies["csrftoken"])
        sid, csrf = c.cookies["sessionid"], c.cookies["csrftoken"]
        self.assertNotEqual(sid, csrf)

        # Safe methods need no CSRF token.
        r = c.get("/api/v1/users/")
        self.assertStatus(r, 200)
        me = r.json["data"][0]["id"]
        r = c.get(f"/api/v1/users/{me}/children/")
        self.assertEqual([x["id"] for x in r.json["data"]], [SEED_CHILD])

        # Unsafe methods of a session: X-CSRFToken must equal the cookie.
        r = c.post("/api/v1/auth/logout/")
        self.assertError(r, 403, "permission_denied", CSRF_DETAIL)
        r = c.post("/api/v1/auth/logout/", headers={"X-CSRFToken": "wrong"})
        self.assertError(r, 403, "permission_denied", CSRF_DETAIL)
        r = c.post("/api/v1/auth/logout/", headers={"X-CSRFToken": ""})
        self.assertError(r, 403, "permission_denied", CSRF_DETAIL)
        # Header present but no csrftoken cookie.
        r = request(self.srv.port, "POST", "/api/v1/auth/logout/",
                    cookies={"sessionid": sid}, headers={"X-CSRFToken": csrf})
        self.assertError(r, 403, "permission_denied", CSRF_DETAIL)
        self.assertStatus(c.get("/api/v1/users/"), 200)        # still logged in

        # The runner's spelling of the header; header names ignore case.
        r = c.post("/api/v1/auth/logout/", headers={"X-CSRFTOKEN": csrf})
        self.assertStatus(r, 204)
        self.assertNotIn("sessionid", c.cookies)
        # The session is gone from Redis: replaying the old cookie fails.
        r = request(self.srv.port, "GET", "/api/v1/users/", cookies={"sessionid": sid})
        self.assertError(r, 401, "not_authenticated")

    def test_login_errors(self):
        seed(self.srv, self)
        c = self.srv.client()
        bad = "Unable to log in with provided credentials."
        self.assertError(self.login(c, PARTICIPANT[0], "wrong"), 400, "invalid", bad)
        self.assertError(self.login(c, "nobody@example.test", "x"), 400, "invalid", bad)
        self.assertEqual(c.cookies, {})
        r = c.post("/api/v1/auth/login/", json_body={"email": PARTICIPANT[0]})
        self.assertError(r, 400, "required", pointer="/password")
        r = c.post("/api/v1/auth/login/", body="{", headers={"Content-Type": "application/json"})
        self.assertError(r, 400, "parse_error")
        # Only JSON: an HTML form post (login CSRF) is refused.
        r = c.post("/api/v1/auth/login/", body="email=a&password=b",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertError(r, 415, "unsupported_media_type")
        # A deactivated user cannot log in.
        self.w.sql("UPDATE users SET is_active = false WHERE email = 'admin@demo.studyhub.test'")
        try:
            self.assertError(self.login(c, "admin@demo.studyhub.test", "studyhub-admin"),
                             400, "invalid", bad)
        finally:
            self.w.sql("UPDATE users SET is_active = true WHERE email = 'admin@demo.studyhub.test'")

    def test_token_write_needs_no_csrf(self):
        r = self.w.api(self.alice, "POST", "/api/v1/auth/logout/")
        self.assertStatus(r, 204)
        self.assertStatus(self.get(self.alice, "/api/v1/users/"), 200)   # token still valid

    # -- admin commands

    def test_token_create(self):
        out = self.srv.ctl("token", "create", self.bob["email"].upper())
        self.assertEqual(out.returncode, 0, out.stderr)
        key = out.stdout.strip().splitlines()[0]
        self.assertRegex(key, r"^[0-9a-f]{40}$")
        r = request(self.srv.port, "GET", "/api/v1/users/", token="Token " + key)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"][0]["id"], self.bob["uuid"])
        # Only the SHA-256 is stored.
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.assertEqual(self.w.sql(f"SELECT count(*) FROM api_tokens WHERE token_hash = '{digest}'"), "1")
        self.assertEqual(self.w.sql(f"SELECT count(*) FROM api_tokens WHERE token_hash = '{key}'"), "0")
        out = self.srv.ctl("token", "create", "nobody@example.test")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no user", out.stdout + out.stderr)
        out = self.srv.ctl("token")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("usage", out.stdout + out.stderr)

    def test_seed_demo_is_idempotent(self):
        def counts():
            return self.w.sql(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM labs),"
                " (SELECT count(*) FROM studies), (SELECT count(*) FROM children),"
                " (SELECT count(*) FROM demographic_data), (SELECT count(*) FROM study_logs),"
                " (SELECT count(*) FROM lab_members)")
        text = seed(self.srv, self)
        first = counts()
        text2 = seed(self.srv, self)
        self.assertEqual(counts(), first)
        # Run again, it leaves the accounts (and their passwords) alone.
        self.assertEqual(text2.count("(existing account: password unchanged)"), 3, text2)
        self.assertEqual([x for x in text.splitlines() if "password" not in x],
                         [x for x in text2.splitlines() if "password" not in x])
        self.assertIn(SEED_STUDY, text)
        self.assertIn(SEED_CHILD, text)
        self.assertIn(f"/studies/{SEED_STUDY}/{SEED_CHILD}/", text)
        for email in ("researcher@demo.studyhub.test", "admin@demo.studyhub.test",
                      "participant@demo.studyhub.test"):
            self.assertIn(email, text)
        state = self.w.row(
            f"SELECT s.state, s.public, s.built, jsonb_array_length(s.structure->'sequence'),"
            f" l.approved_to_test FROM studies s JOIN labs l ON l.id = s.lab_id"
            f" WHERE s.uuid = '{SEED_STUDY}'")
        self.assertEqual(state, ["active", "t", "t", "4", "t"])
        # The researcher reads the study's responses through the one check.
        perm = self.w.sql(
            "SELECT has_study_perm(u.id, s.id, 'read_study__responses')"
            " FROM users u, studies s WHERE u.email = 'researcher@demo.studyhub.test'"
            f" AND s.uuid = '{SEED_STUDY}'")
        self.assertEqual(perm, "t")
        perm = self.w.sql(
            "SELECT has_study_perm(u.id, s.id, 'read_study__responses')"
            " FROM users u, studies s WHERE u.email = 'participant@demo.studyhub.test'"
            f" AND s.uuid = '{SEED_STUDY}'")
        self.assertEqual(perm, "f")
        # The child is inside the study's age range (6 months - 3 years).
        age = int(self.w.sql(f"SELECT current_date - birthday FROM children WHERE uuid = '{SEED_CHILD}'"))
        self.assertTrue(183 < age < 3 * 365, age)


class UnavailableTest(StudyhubTestCase):
    """Redis down: session callers get 503; token callers are unaffected."""

    def test_redis_down_session_is_503(self):
        redis = self.redis()
        srv = self.server(redis_url=redis.url)
        w = World(srv)
        u = w.user("erin")
        redis.stop()
        r = request(srv.port, "GET", "/api/v1/users/", cookies={"sessionid": "a" * 64})
        self.assertStatus(r, 503)
        self.assertEqual(r.headers.get("content-type"), JSONAPI)
        r = w.api(u, "GET", "/api/v1/users/")
        self.assertStatus(r, 200)
        r = srv.post("/api/v1/auth/login/", json_body={"email": u["email"], "password": "x"})
        # The slow-down's counters live in Redis: without them no password
        # is checked at all (fail closed), whoever asks.
        self.assertStatus(r, 503)


if __name__ == "__main__":
    unittest.main()
