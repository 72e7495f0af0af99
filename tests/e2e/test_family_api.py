"""test_family_api: a family's own writes (issue 14 point 3).

Children: create, change, soft delete (hidden from the lists, kept for the
studies done); demographics: a new snapshot each save, linked to the one
before, with the current one and the history; the user's own profile and
email preferences.  A family touches only its own rows (anyone else's id
is a 404); wrong types, malformed JSON, unknown attributes and the wrong
media type are JSON:API errors that change nothing."""

import datetime

from apifixtures import World
from harness import JSONAPI, StudyhubTestCase, request


MAX_BODY = 65536


def child_doc(**attrs):
    base = {"given_name": "Ada", "birthday": "2023-03-04", "gender": "f"}
    base.update(attrs)
    return {"data": {"type": "children", "attributes": base}}


class FamilyApiTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(database=cls.class_database(),
                                   env={"MAX_BODY_BYTES": str(MAX_BODY)})
        cls.w = World(cls.srv)

    def setUp(self):
        self.parent = self.w.user("parent")
        self.other = self.w.user("other")

    def api(self, who, method, path, body=None, **kw):
        return self.w.api(who, method, path, body, **kw)

    def count(self, table, user):
        return int(self.w.sql(f"SELECT count(*) FROM {table} WHERE user_id = {user['id']}"))

    def assertErrors(self, r, status, pointers=None):
        self.assertStatus(r, status)
        self.assertEqual(r.headers["content-type"], JSONAPI)
        self.assertTrue(r.json["errors"], r.json)
        if pointers is not None:
            self.assertEqual(sorted(e["source"]["pointer"] for e in r.json["errors"]),
                             sorted(pointers))

    # -- children

    def test_child_create_read_update_delete(self):
        r = self.api(self.parent, "POST", "/api/v1/children/",
                     child_doc(gestational_age_at_birth=38, language_list="en  fr",
                               condition_list="", additional_information="Likes cats"))
        self.assertStatus(r, 201)
        kid = r.json["data"]
        self.assertEqual(kid["type"], "children")
        a = kid["attributes"]
        self.assertEqual((a["given_name"], a["birthday"], a["gender"], a["age_at_birth"],
                          a["language_list"], a["additional_information"], a["deleted"]),
                         ("Ada", "2023-03-04", "f", "38 weeks", "en fr", "Likes cats", False))
        self.assertTrue(kid["links"]["self"].endswith(f"/api/v1/children/{kid['id']}/"))
        self.assertStatus(self.api(self.parent, "GET", f"/api/v1/children/{kid['id']}/"), 200)

        r = self.api(self.parent, "PATCH", f"/api/v1/children/{kid['id']}/",
                     {"data": {"type": "children", "id": kid["id"],
                               "attributes": {"given_name": "Ada Lovelace",
                                              "gestational_age_at_birth": None,
                                              "pk": 1, "age_at_birth": "x"}}})
        self.assertStatus(r, 200)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["given_name"], a["birthday"], a["age_at_birth"], a["language_list"]),
                         ("Ada Lovelace", "2023-03-04", "Not sure or prefer not to answer",
                          "en fr"))

        # The erasure (test_privacy_erasure has the rest): gone from the
        # family's lists and detail; with no response a study kept, the
        # row is gone too.
        r = self.api(self.parent, "DELETE", f"/api/v1/children/{kid['id']}/")
        self.assertStatus(r, 204)
        self.assertEqual(r.body, b"")
        listed = self.api(self.parent, "GET", "/api/v1/children/").json["data"]
        self.assertNotIn(kid["id"], [c["id"] for c in listed])
        me = self.api(self.parent, "GET", "/api/v1/users/").json["data"][0]["id"]
        r = self.api(self.parent, "GET", f"/api/v1/users/{me}/children/")
        self.assertStatus(r, 200)
        self.assertNotIn(kid["id"], [c["id"] for c in r.json["data"]])
        self.assertEqual(r.json["links"]["meta"]["count"], len(r.json["data"]))
        self.assertStatus(self.api(self.parent, "GET", f"/api/v1/children/{kid['id']}/"), 404)
        self.assertStatus(self.api(self.parent, "DELETE", f"/api/v1/children/{kid['id']}/"), 404)
        self.assertStatus(self.api(self.parent, "PATCH", f"/api/v1/children/{kid['id']}/",
                                   {"data": {"type": "children", "id": kid["id"],
                                             "attributes": {"given_name": "B"}}}), 404)
        self.assertEqual(self.w.sql(f"SELECT count(*) FROM children WHERE uuid = '{kid['id']}'"),
                         "0")

    def test_only_your_own_children(self):
        theirs = self.w.child(self.other)
        doc = {"data": {"type": "children", "id": theirs["uuid"],
                        "attributes": {"given_name": "Mine now"}}}
        self.assertErrors(self.api(self.parent, "PATCH", f"/api/v1/children/{theirs['uuid']}/",
                                   doc), 404)
        self.assertErrors(self.api(self.parent, "DELETE",
                                   f"/api/v1/children/{theirs['uuid']}/"), 404)
        self.assertEqual(self.w.sql(f"SELECT given_name || deleted::text FROM children"
                                    f" WHERE id = {theirs['id']}"), "Sallyfalse")
        for bad in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
            self.assertErrors(self.api(self.parent, "DELETE", f"/api/v1/children/{bad}/"), 404)
        # Anonymous: no way in.
        self.assertErrors(self.api(None, "POST", "/api/v1/children/", child_doc()), 401)
        self.assertEqual(self.count("children", self.parent), 0)

    def test_bad_child_input_changes_nothing(self):
        future = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
        cases = [
            (child_doc(given_name=""), 400, ["/data/attributes/given_name"]),
            (child_doc(given_name="   "), 400, ["/data/attributes/given_name"]),
            (child_doc(given_name=5), 400, ["/data/attributes/given_name"]),
            (child_doc(given_name="x" * 256), 400, ["/data/attributes/given_name"]),
            (child_doc(birthday="2023-02-30"), 400, ["/data/attributes/birthday"]),
            (child_doc(birthday="03/04/2023"), 400, ["/data/attributes/birthday"]),
            (child_doc(birthday=future), 400, ["/data/attributes/birthday"]),
            (child_doc(gender="x"), 400, ["/data/attributes/gender"]),
            (child_doc(gestational_age_at_birth=41), 400,
             ["/data/attributes/gestational_age_at_birth"]),
            (child_doc(gestational_age_at_birth="38"), 400,
             ["/data/attributes/gestational_age_at_birth"]),
            (child_doc(language_list="en; DROP TABLE"), 400, ["/data/attributes/language_list"]),
            (child_doc(nickname="Ada"), 400, ["/data/attributes/nickname"]),
            (child_doc(given_name="a\u0000b"), 400, None),   # JSON parser refuses NUL
            ({"data": {"type": "children", "attributes": {}}}, 400,
             ["/data/attributes/birthday", "/data/attributes/gender",
              "/data/attributes/given_name"]),
            ({"data": {"type": "children", "attributes": {"given_name": None,
                                                           "birthday": 1, "gender": None}}},
             400, ["/data/attributes/birthday", "/data/attributes/gender",
                   "/data/attributes/given_name"]),
            ({"data": {"type": "users", "attributes": {}}}, 409, None),
            ({"data": []}, 400, None),
            ([], 400, None),
        ]
        for body, status, pointers in cases:
            with self.subTest(body=body):
                self.assertErrors(self.api(self.parent, "POST", "/api/v1/children/", body),
                                  status, pointers)
        self.assertErrors(self.api(self.parent, "POST", "/api/v1/children/", raw="{not json"),
                          400)
        r = request(self.srv.port, "POST", "/api/v1/children/", body=b"given_name=Ada",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    token=self.parent["token"])
        self.assertErrors(r, 415)
        self.assertEqual(self.count("children", self.parent), 0)

        # A PATCH with one bad field changes none of the good ones.
        kid = self.w.child(self.parent, name="Bo")
        r = self.api(self.parent, "PATCH", f"/api/v1/children/{kid['uuid']}/",
                     {"data": {"type": "children", "id": kid["uuid"],
                               "attributes": {"given_name": "Bob", "gender": "?"}}})
        self.assertErrors(r, 400, ["/data/attributes/gender"])
        # The id in the document must be the URL's.
        r = self.api(self.parent, "PATCH", f"/api/v1/children/{kid['uuid']}/",
                     {"data": {"type": "children", "attributes": {"given_name": "Bob"}}})
        self.assertErrors(r, 400)
        self.assertEqual(self.w.sql(f"SELECT given_name FROM children WHERE id = {kid['id']}"),
                         "Bo")

    def test_body_over_the_limit(self):
        doc = child_doc(additional_information="x" * (MAX_BODY + 10))
        try:
            # evhttp (libevent 2.1) answers this one itself, before any
            # handler: its own error page, not a JSON:API document.
            self.assertStatus(self.api(self.parent, "POST", "/api/v1/children/", doc), 413)
        except OSError:
            pass    # evhttp may close before reading it all: no answer to read
        self.assertEqual(self.count("children", self.parent), 0)
        self.assertStatus(self.api(self.parent, "GET", "/api/v1/children/"), 200)

    # -- demographics

    def demo(self, **attrs):
        return {"data": {"type": "demographics", "attributes": attrs}}

    def test_demographics_snapshots(self):
        r = self.api(self.parent, "GET", "/api/v1/demographics/current/")
        self.assertStatus(r, 200)
        self.assertIsNone(r.json["data"])

        r = self.api(self.parent, "POST", "/api/v1/demographics/",
                     self.demo(number_of_children="2", child_birthdays=["2021-01-02"],
                               us_race_ethnicity_identification=["asian", "white"],
                               country="US", state="MA", density="urban", age="30-34",
                               extra={"pets": 1}))
        self.assertStatus(r, 201)
        first = r.json["data"]
        self.assertEqual(first["attributes"]["us_race_ethnicity_identification"],
                         ["asian", "white"])
        self.assertEqual(first["attributes"]["child_birthdays"], ["2021-01-02"])
        self.assertEqual(first["attributes"]["extra"], {"pets": 1})
        self.assertIsNone(first["relationships"]["previous"]["data"])

        r = self.api(self.parent, "POST", "/api/v1/demographics/",
                     self.demo(number_of_children="3", country="CA"))
        self.assertStatus(r, 201)
        second = r.json["data"]
        self.assertEqual(second["relationships"]["previous"]["data"],
                         {"type": "demographics", "id": first["id"]})
        # A snapshot is the whole questionnaire: what was not given is unanswered.
        self.assertEqual(second["attributes"]["density"], "")

        cur = self.api(self.parent, "GET", "/api/v1/demographics/current/").json["data"]
        self.assertEqual(cur["id"], second["id"])
        hist = self.api(self.parent, "GET",
                        f"/api/v1/users/{self.parent['uuid']}/demographics/").json
        self.assertEqual([d["id"] for d in hist["data"]], [second["id"], first["id"]])
        # Someone else sees none of it.
        self.assertIsNone(self.api(self.other, "GET",
                                   "/api/v1/demographics/current/").json["data"])
        self.assertErrors(self.api(self.other, "GET", f"/api/v1/demographics/{first['id']}/"), 404)

    def test_bad_demographics_change_nothing(self):
        future = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
        for attrs, pointer in (({"number_of_children": "many"}, "number_of_children"),
                               ({"child_birthdays": "2020-01-01"}, "child_birthdays"),
                               ({"child_birthdays": [future]}, "child_birthdays"),
                               ({"child_birthdays": ["2020-01-01"] * 21}, "child_birthdays"),
                               ({"us_race_ethnicity_identification": ["martian"]},
                                "us_race_ethnicity_identification"),
                               ({"us_race_ethnicity_identification": ["white", "white"]},
                                "us_race_ethnicity_identification"),
                               ({"country": "USA"}, "country"),
                               ({"extra": [1]}, "extra"),
                               ({"extra": {"x": "y" * 20000}}, "extra"),
                               ({"favourite_colour": "red"}, "favourite_colour")):
            with self.subTest(attrs=attrs):
                self.assertErrors(self.api(self.parent, "POST", "/api/v1/demographics/",
                                           self.demo(**attrs)),
                                  400, [f"/data/attributes/{pointer}"])
        self.assertEqual(self.count("demographic_data", self.parent), 0)

    # -- the user's own profile

    def test_profile_and_email_preferences(self):
        me = f"/api/v1/users/{self.parent['uuid']}/"
        r = self.api(self.parent, "PATCH", me,
                     {"data": {"type": "users", "id": self.parent["uuid"],
                               "attributes": {"nickname": "Mum", "email_new_studies": False,
                                              "email": "evil@example.test", "pk": 1}}})
        self.assertStatus(r, 200)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["nickname"], a["email_new_studies"], a["email_next_session"]),
                         ("Mum", False, True))
        self.assertEqual(self.w.sql(f"SELECT email FROM users WHERE id = {self.parent['id']}"),
                         self.parent["email"])
        got = self.api(self.parent, "GET", me).json["data"]["attributes"]
        self.assertEqual((got["nickname"], got["email_new_studies"]), ("Mum", False))

        # Someone else's profile: 404, unchanged.
        theirs = f"/api/v1/users/{self.other['uuid']}/"
        self.assertErrors(self.api(self.parent, "PATCH", theirs,
                                   {"data": {"type": "users", "id": self.other["uuid"],
                                             "attributes": {"nickname": "x"}}}), 404)
        self.assertEqual(self.w.sql(f"SELECT nickname FROM users WHERE id = {self.other['id']}"),
                         "")
        # Wrong types: nothing changes.
        self.assertErrors(self.api(self.parent, "PATCH", me,
                                   {"data": {"type": "users", "id": self.parent["uuid"],
                                             "attributes": {"nickname": "Dad",
                                                            "email_new_studies": "yes"}}}),
                          400, ["/data/attributes/email_new_studies"])
        self.assertEqual(self.w.sql(f"SELECT nickname FROM users WHERE id = {self.parent['id']}"),
                         "Mum")
