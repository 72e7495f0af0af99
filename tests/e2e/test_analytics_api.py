"""test_analytics_api: issue 18 points 1-3 over HTTP against a real server,
PostgreSQL and file storage: the participant browser (consented families
only, de-identified unless the identifiable permission is held, logged),
the charts' numbers checked against counts this test makes from the data
it wrote (small cells suppressed), their CSV, and the housekeeping:
deleting preview responses with their videos and objects, the hashed-id
collision check, one response as JSON; and every refusal."""

import collections
import csv
import datetime
import io
import json
import os
import random
import secrets

from apifixtures import hash_child_id, lit
from harness import StudyhubTestCase, new_dir, server_env, wait_until, SLOW
from researchfixtures import ResearchWorld

MIN_CELL = 5
COUNTRIES = ["US", "CA", "MX", "BR", ""]
RACES = ["white", "black", "asian", "hisp", "other"]


def age_group(days):
    """analytics_age_group, written again."""
    days = max(days, 0)
    m = int(days // 30.4375)
    y = int(days // 365.25)
    if m < 24:
        m3 = m // 3 * 3
        return f"{m3}-{m3 + 3} months"
    if y < 18:
        return f"{y} years"
    return "18 years and over"


def cell(n):
    return n if n >= MIN_CELL else None


class AnalyticsTest(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.store = new_dir("storage")
        cls.srv = cls.class_server(env=server_env({"STORAGE_URL": "file://" + cls.store}))
        cls.rw = ResearchWorld(cls.srv)
        cls.w = cls.rw.w
        cls.make_stats()

    @classmethod
    def make_stats(cls):
        """A second study of the lab with 60 families of known answers."""
        w, rnd = cls.w, random.Random(18)
        cls.stats = w.study(cls.rw.lab, "Stats")
        cls.resp = []   # dicts of what each response is
        base = datetime.date(2026, 3, 1)
        for f in range(60):
            parent = w.user(f"stats-parent-{f}")
            snaps = []
            for k in range(rnd.choice([0, 1, 2])):
                races = rnd.sample(RACES, rnd.choice([0, 1, 2]))
                country = rnd.choice(COUNTRIES)
                sid = w.sql(
                    "INSERT INTO demographic_data (user_id, country,"
                    " us_race_ethnicity_identification) VALUES"
                    f" ({parent['id']}, {lit(country)},"
                    f" ARRAY[{', '.join(lit(r) for r in races)}]::text[]) RETURNING id"
                ).split("\n")[0]
                snaps.append((int(sid), country, races))
            for c in range(rnd.choice([1, 1, 2])):
                gender = rnd.choice(["f", "f", "m", "m", "o", "na"])
                birthday = base - datetime.timedelta(days=rnd.randrange(20, 3000))
                cid, cu = w.row(
                    "INSERT INTO children (user_id, given_name, birthday, gender) VALUES"
                    f" ({parent['id']}, 'STATSNAME{f}x{c}', {lit(birthday.isoformat())},"
                    f" {lit(gender)}) RETURNING id, uuid")
                for r in range(rnd.choice([1, 1, 2])):
                    day = base + datetime.timedelta(days=rnd.randrange(10))
                    state = rnd.choice(["accepted"] * 6 + ["rejected", "pending", "preview"])
                    snap = rnd.choice(snaps) if snaps else None
                    completed = rnd.random() < 0.7
                    rid, ru = w.row(
                        "INSERT INTO responses (study_id, child_id, is_preview, completed,"
                        " demographic_snapshot_id, date_created) VALUES"
                        f" ({cls.stats['id']}, {cid}, {lit(state == 'preview')},"
                        f" {lit(completed)}, {snap[0] if snap else 'NULL'},"
                        f" '{day.isoformat()} {rnd.randrange(24):02d}:30:00+00')"
                        " RETURNING id, uuid")
                    if state in ("accepted", "rejected"):
                        w.consent(ru, state)
                    cls.resp.append({
                        "id": int(rid), "uuid": ru, "family": f, "child": int(cid),
                        "child_uuid": cu, "gender": gender, "day": day,
                        "age": (day - birthday).days, "state": state, "completed": completed,
                        "snap": snap})

    def get(self, who, path):
        return self.rw.api(who, "GET", path)

    def chart(self, who, chart, query="", scope="studies", sid=None):
        sid = sid or self.stats["uuid"]
        return self.get(who, f"/api/v1/researcher/{scope}/{sid}/analytics/{chart}{query}")

    def counted(self):
        return [r for r in self.resp if r["state"] == "accepted"]

    # -- charts

    def test_charts_match_independent_counts(self):
        ok = self.counted()
        got = self.chart("member", "over-time")
        self.assertEqual(got.status, 200, got)
        a = got.json["data"]["attributes"]
        self.assertEqual(a["columns"], ["day", "responses"])
        want = collections.Counter(r["day"].isoformat() for r in ok)
        self.assertEqual({d: n for d, n in a["rows"]}, dict(want))

        a = self.chart("member", "ages").json["data"]["attributes"]
        want = collections.Counter(age_group(r["age"]) for r in ok)
        self.assertEqual({row[0]: row[3] for row in a["rows"]},
                         {k: cell(n) for k, n in want.items()})
        self.assertEqual(a["suppressed"], sum(1 for n in want.values() if n < MIN_CELL))
        froms = [row[1] for row in a["rows"]]
        self.assertEqual(froms, sorted(froms))

        a = self.chart("member", "genders").json["data"]["attributes"]
        kids = {r["child"]: r["gender"] for r in ok}
        want = collections.Counter(kids.values())
        self.assertEqual({g: n for g, n in a["rows"]}, {k: cell(n) for k, n in want.items()})

        for field in ("country", "race_ethnicity"):
            a = self.chart("member", "demographics", f"?field={field}").json["data"]["attributes"]
            newest = {}
            for r in sorted(ok, key=lambda r: (r["day"], r["id"])):
                newest[r["family"]] = r["snap"]
            want = collections.Counter()
            for snap in newest.values():
                if snap is None:
                    want["(no demographics)"] += 1
                elif field == "country":
                    want[snap[1] or "(no answer)"] += 1
                else:
                    for race in snap[2] or [""]:
                        want[race or "(no answer)"] += 1
            self.assertEqual({k: n for k, n in a["rows"]},
                             {k: cell(n) for k, n in want.items()}, field)
            self.assertEqual(a["columns"], [field, "families"])

        a = self.chart("member", "rates").json["data"]["attributes"]
        real = [r for r in self.resp if r["state"] != "preview"]
        rows = {(m, v): (n, of) for m, v, n, of, _ in a["rows"]}
        for state in ("accepted", "rejected", "pending"):
            self.assertEqual(rows[("consent", state)],
                             (sum(r["state"] == state for r in real), len(real)))
        self.assertEqual(rows[("completion", "completed")],
                         (sum(r["completed"] for r in ok), len(ok)))

    def test_lab_charts_add_up_the_readable_studies(self):
        lab = self.rw.lab["uuid"]
        r = self.chart("member", "rates", scope="labs", sid=lab)
        self.assertEqual(r.status, 200, r)
        rows = {(m, v): (n, of) for m, v, n, of, _ in r.json["data"]["attributes"]["rows"]}
        real = [x for x in self.resp if x["state"] != "preview"]
        # the research fixture: accepted, rejected, pending, withdrawn (accepted)
        self.assertEqual(rows[("consent", "accepted")],
                         (sum(x["state"] == "accepted" for x in real) + 2, len(real) + 4))
        self.assertEqual(r.json["data"]["attributes"]["studies"], 2)
        days = self.chart("member", "over-time", scope="labs", sid=lab).json
        total = sum(n for _, n in days["data"]["attributes"]["rows"])
        self.assertEqual(total, len(self.counted()) + 2)

    def test_csv_of_every_chart(self):
        for chart, q in (("over-time", ""), ("ages", ""), ("genders", ""),
                         ("demographics", "?field=country"), ("rates", "")):
            sep = "&" if q else "?"
            r = self.chart("member", chart, f"{q}{sep}format=csv")
            self.assertEqual(r.status, 200, (chart, r))
            self.assertTrue(r.headers["content-type"].startswith("text/csv"))
            self.assertIn("attachment", r.headers["content-disposition"])
            rows = list(csv.reader(io.StringIO(r.body.decode())))
            doc = self.chart("member", chart, q).json["data"]["attributes"]
            self.assertEqual(rows[0], doc["columns"])
            self.assertEqual(len(rows) - 1, len(doc["rows"]))
            for line, row in zip(rows[1:], doc["rows"]):
                last = row[-1]
                if chart in ("ages", "genders", "demographics") and last is None:
                    self.assertEqual(line[-1], f"<{MIN_CELL}")
                elif isinstance(last, (int, float)):
                    self.assertEqual(float(line[-1]), float(last))

    def test_chart_refusals(self):
        S = self.stats["uuid"]
        self.assertEqual(self.chart("other", "ages").status, 404)           # another lab
        self.assertEqual(self.chart("preview", "ages", sid=self.rw.study["uuid"]).status, 403)
        self.assertEqual(self.chart("member", "ages", sid=secrets.token_hex(16)).status, 404)
        self.assertEqual(self.get("member", "/api/v1/researcher/studies/nope/analytics/ages")
                         .status, 404)
        self.assertEqual(self.chart("member", "pie").status, 404)
        self.assertEqual(self.chart("member", "demographics").status, 400)
        self.assertEqual(self.chart("member", "demographics", "?field=email").status, 400)
        self.assertEqual(self.chart("member", "ages", "?field=country").status, 400)
        self.assertEqual(self.chart("member", "ages", "?format=xml").status, 400)
        self.assertEqual(self.chart("other", "ages", scope="labs",
                                    sid=self.rw.lab["uuid"]).status, 404)
        self.assertEqual(self.chart(None, "ages").status, 401)
        r = self.chart("member", "pie")
        self.assertIn("errors", r.json)
        self.assertEqual(S, self.stats["uuid"])

    # -- participant browser

    def participants(self, who, query=""):
        return self.get(who, f"/api/v1/researcher/labs/{self.rw.lab['uuid']}/participants/"
                             f"{query}")

    def test_participants_consented_and_deidentified(self):
        rw = self.rw
        n_log = int(self.w.sql("SELECT count(*) FROM access_log"
                               " WHERE action = 'participant_list'"))
        r = self.participants("member", "?page_size=100")
        self.assertEqual(r.status, 200, r)
        fams = r.json["data"]
        want = {x["family"] for x in self.counted()}
        self.assertEqual(r.json["links"]["meta"]["count"], len(want) + 2)
        shown = {resp["id"] for f in fams for c in f["attributes"]["children"]
                 for resp in c["responses"]}
        self.assertEqual(shown, {x["uuid"] for x in self.counted()}
                         | rw.uuids("accepted", "withdrawn"))
        text = json.dumps(r.json)
        # the lab member holds no identifiable permission: no name, nickname, birthday
        for m in rw.all_markers() + ["STATSNAME"]:
            self.assertNotIn(m, text)
        self.assertTrue(all(f["attributes"]["nickname"] is None for f in fams))
        # the study's hashed child id and the age in days
        acc = next(resp for f in fams for c in f["attributes"]["children"]
                   for resp in c["responses"] if resp["id"] == rw.r["accepted"]["uuid"])
        st = rw.study
        self.assertEqual(acc["child_hashed_id"], hash_child_id(
            rw.r["accepted"]["child"]["uuid"], st["uuid"], st["salt"], st["hash_digits"]))
        self.assertEqual(acc["child_age_in_days"], 500)
        # newest session first
        lasts = [f["attributes"]["last_session"] for f in fams]
        self.assertEqual(lasts, sorted(lasts, reverse=True))
        # one access-log entry per study read
        self.assertEqual(int(self.w.sql("SELECT count(*) FROM access_log"
                                        " WHERE action = 'participant_list'")), n_log + 2)

    def test_participants_identifiable_with_the_permission(self):
        rw = self.rw
        r = self.participants("admin", f"?study={rw.study['uuid']}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["links"]["meta"]["count"], 2)
        names = {c["name"] for f in r.json["data"] for c in f["attributes"]["children"]}
        self.assertEqual(names, {rw.markers["accepted"], rw.markers["withdrawn"]})
        self.assertTrue(all(f["attributes"]["identifiable"] for f in r.json["data"]))

    def test_participant_refusals(self):
        self.assertEqual(self.participants("other").status, 404)
        self.assertEqual(self.participants("analysis").status, 404)   # not of the lab
        r = self.get("member", f"/api/v1/researcher/labs/{secrets.token_hex(16)}/participants/")
        self.assertEqual(r.status, 404)
        self.assertEqual(self.participants("member", "?study=nope").status, 400)
        self.assertEqual(self.participants("member", "?page=zero").status, 404)   # as every list
        other_study = self.w.study(self.rw.other_lab, "Elsewhere")
        self.assertEqual(self.participants("member", f"?study={other_study['uuid']}").status,
                         404)
        self.assertEqual(self.participants(None).status, 401)

    # -- housekeeping

    def test_response_json(self):
        rw = self.rw
        u = rw.r["accepted"]["uuid"]
        r = self.get("member", f"/api/v1/researcher/responses/{u}/json/")
        self.assertEqual(r.status, 200, r)
        self.assertIn(f'filename="response-{u}.json"', r.headers["content-disposition"])
        doc = json.loads(r.body)
        self.assertEqual(doc["response"]["uuid"], u)
        self.assertEqual(doc["consent"]["ruling"], "accepted")
        self.assertEqual(doc["exp_data"]["1-study-intro"]["answer"], "cats")
        for m in rw.all_markers():
            self.assertNotIn(m, r.body.decode())
        # the same element as responses.json
        items = json.loads(self.get("member", "/api/v1/researcher/studies/"
                                    f"{rw.study['uuid']}/exports/responses.json").body)
        self.assertEqual(next(i for i in items if i["response"]["uuid"] == u), doc)
        r = self.get("admin", f"/api/v1/researcher/responses/{u}/json/?identifiable=true")
        self.assertEqual(json.loads(r.body)["child"]["name"], rw.markers["accepted"])
        self.assertEqual(self.w.sql(
            "SELECT count(*) > 0 FROM access_log WHERE action = 'export'"
            f" AND object = 'response-{u}-identifiable.json'"), "t")
        # refusals: unconsented, another lab, no identifiable permission, bad input
        for state in ("pending", "rejected"):
            self.assertEqual(self.get("member", "/api/v1/researcher/responses/"
                                      f"{rw.r[state]['uuid']}/json/").status, 404)
        self.assertEqual(self.get("other", f"/api/v1/researcher/responses/{u}/json/").status, 404)
        self.assertEqual(self.get("member", f"/api/v1/researcher/responses/{u}/json/"
                                            "?identifiable=true").status, 403)
        self.assertEqual(self.get("member", f"/api/v1/researcher/responses/{u}/json/"
                                            "?identifiable=maybe").status, 400)
        self.assertEqual(self.get("member", "/api/v1/researcher/responses/42/json/").status, 404)

    def test_hash_check(self):
        w = self.w
        # 40 children at 1 digit (32 ids): collisions certain, too short.
        # (in the other lab, so the lab-wide counts above stay as they are)
        st = w.study(self.rw.other_lab, "Tiny hash", hash_digits=1)
        parent = w.user("hash-parent")
        uuids = []
        for i in range(40):
            ch = w.child(parent, name=f"H{i}")
            uuids.append(ch["uuid"])
            w.sql("INSERT INTO responses (study_id, child_id) VALUES"
                  f" ({st['id']}, {ch['id']})")
        ids = collections.Counter(hash_child_id(u, st["uuid"], st["salt"], 1) for u in uuids)
        r = self.get("other", f"/api/v1/researcher/studies/{st['uuid']}/hash-check/")
        self.assertEqual(r.status, 200, r)
        a = r.json["data"]["attributes"]
        self.assertEqual(a["children"], 40)
        self.assertEqual(a["distinct_ids"], len(ids))
        self.assertEqual(a["colliding_children"], sum(n for n in ids.values() if n > 1))
        self.assertTrue(a["too_short"])
        self.assertEqual(a["digits_needed"], 4)     # 780 pairs / 32^4 < 1%, / 32^3 not
        # The research study: 5 children at 6 digits, fine.
        r = self.get("member", f"/api/v1/researcher/studies/{self.rw.study['uuid']}/hash-check/")
        a = r.json["data"]["attributes"]
        self.assertEqual((a["children"], a["colliding_children"], a["too_short"]), (5, 0, False))
        self.assertEqual(self.get("member", f"/api/v1/researcher/studies/{st['uuid']}/hash-check/")
                         .status, 404)
        self.assertEqual(self.get("member", "/api/v1/researcher/studies/x/hash-check/").status,
                         404)

    def test_delete_preview_responses(self):
        w, rw = self.w, self.rw
        st = w.study(rw.other_lab, "Previews")
        designer = w.user("designer", researcher=True)    # the design group may delete them
        w.study_member(st, designer, "design")
        parent = w.user("preview-parent")
        child = w.child(parent)
        keep, gone, keys = [], [], []
        for preview in (True, True, False):
            rid, ru = w.row("INSERT INTO responses (study_id, child_id, is_preview) VALUES"
                            f" ({st['id']}, {child['id']}, {lit(preview)}) RETURNING id, uuid")
            full = f"videoStream_{st['uuid']}_0-x_{ru}_{secrets.randbelow(10**12)}_1"
            w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name) VALUES"
                  f" ({st['id']}, {rid}, '0-x', {lit(full)})")
            with open(os.path.join(self.store, full), "wb") as f:
                f.write(b"video")
            (gone if preview else keep).append(ru)
            if preview:
                keys.append(full)
            else:
                kept_key = full
        os.makedirs(os.path.join(self.store, "video-zips"), exist_ok=True)
        zipname = f"video-zips/{st['uuid']}_videos_{secrets.token_hex(8)}.zip"
        with open(os.path.join(self.store, zipname), "wb") as f:
            f.write(b"PK")
        path = f"/api/v1/researcher/studies/{st['uuid']}/preview-responses/"
        before = w.sql("SELECT count(*) FROM responses")
        # refusals change nothing: another lab, a group without the permission, bad ids
        self.assertEqual(rw.api("member", "DELETE", path).status, 404)
        w.study_member(st, rw.u["analysis"], "analysis")
        self.assertEqual(rw.api("analysis", "DELETE", path).status, 403)
        self.assertEqual(rw.api(designer, "DELETE",
                                "/api/v1/researcher/studies/12/preview-responses/").status, 404)
        self.assertEqual(w.sql("SELECT count(*) FROM responses"), before)
        r = rw.api(designer, "DELETE", path)
        self.assertEqual(r.status, 200, r)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["responses_deleted"], a["videos_deleted"]), (2, 2))
        self.assertEqual(w.sql(f"SELECT count(*) FROM responses WHERE study_id = {st['id']}"),
                         "1")
        self.assertEqual(w.sql(f"SELECT count(*) FROM videos WHERE study_id = {st['id']}"), "1")
        wait_until(lambda: w.sql("SELECT count(*) FROM erasures WHERE scope = 'preview'"
                                 " AND storage_done_at IS NULL") == "0",
                   60 * SLOW, interval=0.2, message="erase_storage done")
        for key in keys + [zipname]:
            self.assertFalse(os.path.exists(os.path.join(self.store, key)), key)
        self.assertTrue(os.path.exists(os.path.join(self.store, kept_key)))
        # again: nothing left to delete
        r = rw.api(designer, "DELETE", path)
        self.assertEqual(r.json["data"]["attributes"]["responses_deleted"], 0)

    def test_a_change_shows_at_once(self):
        """The charts' cached documents go when a counted row changes: a
        new consented response, a ruling, a child's edit, a deletion."""
        w = self.w
        st = w.study(self.rw.other_lab, "Fresh")           # the other lab: counts above stay
        parent = w.user("fresh-parent")

        def genders():
            r = self.chart("other", "genders", sid=st["uuid"])
            self.assertEqual(r.status, 200, r)
            return dict(r.json["data"]["attributes"]["rows"])

        def over_time():
            r = self.chart("other", "over-time", sid=st["uuid"])
            return sum(n for _, n in r.json["data"]["attributes"]["rows"])

        kids = []
        for i in range(6):
            ch = w.child(parent, name=f"F{i}", gender="f")
            ru = w.row("INSERT INTO responses (study_id, child_id) VALUES"
                       f" ({st['id']}, {ch['id']}) RETURNING uuid")[0]
            w.consent(ru, "accepted")
            kids.append((ch, ru))
        self.assertEqual(genders(), {"f": 6})
        self.assertEqual(over_time(), 6)
        w.consent(kids[0][1], "rejected")                  # a ruling
        self.assertEqual(genders(), {"f": 5})
        self.assertEqual(over_time(), 5)
        w.sql(f"UPDATE children SET gender = 'm' WHERE id = {kids[1][0]['id']}")   # an edit
        self.assertEqual(genders(), {"f": None, "m": None})
        w.sql(f"DELETE FROM responses WHERE uuid = {lit(kids[2][1])}")            # a deletion
        self.assertEqual(over_time(), 4)
        ch = w.child(parent, name="F9", gender="f")                                # a new one
        ru = w.row("INSERT INTO responses (study_id, child_id) VALUES"
                   f" ({st['id']}, {ch['id']}) RETURNING uuid")[0]
        self.assertEqual(over_time(), 4)                   # pending: not counted
        w.consent(ru, "accepted")
        self.assertEqual(over_time(), 5)
