"""test_responses_hot: the runner's PATCH as a HOT update (sql/108, issue 17
point 4).  No index of responses holds a column a PATCH changes, the table
leaves room on its pages (fillfactor), and a PATCH that changes nothing the
consent copy (response_consent) holds leaves that row alone, while one that
completes the response, or a move to preview, still updates it.  The lists
that sorted by date_modified through those indexes keep their order.
Under load PATCHes share commits (group commit, io/pg.h): each still gets
its own answer, and a bad one among them its own error."""

import re
from concurrent.futures import ThreadPoolExecutor

from apifixtures import World
from harness import StudyhubTestCase


class PatchHot(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()
        cls.w = World(cls.srv)
        w = cls.w
        cls.lab = w.lab("Hot lab")
        cls.study = w.study(cls.lab, "Hot study")
        cls.parent = w.user("hotparent")
        w.demographics(cls.parent)
        cls.child = w.child(cls.parent, "Hotkid")

    def patch(self, rid, **attrs):
        body = {"data": {"id": rid, "type": "responses", "attributes": attrs}}
        r = self.w.api(self.parent, "PATCH", f"/api/v1/responses/{rid}/", body)
        self.assertStatus(r, 200)
        return r

    def consent_row(self, rid):
        return self.w.row("SELECT rc.xmin, rc.completed, rc.is_preview FROM response_consent rc"
                          f" JOIN responses r ON r.id = rc.response_id WHERE r.uuid = '{rid}'")

    def test_indexes_and_fillfactor(self):
        w = self.w
        # The columns an UPDATE by the runner may change (all it may set,
        # and date_modified, set by the trigger) are in no index.
        changed = {"conditions", "global_event_timings", "exp_data", "withdrawn", "sequence",
                   "completed", "completed_consent_frame", "survey_consent", "is_preview",
                   "recording_method", "eligibility", "date_modified"}
        cols = w.sql("SELECT DISTINCT a.attname FROM pg_index i"
                     " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
                     " WHERE i.indrelid = 'responses'::regclass").split("\n")
        self.assertEqual(changed & set(cols), set(), cols)
        exprs = w.sql("SELECT count(*) FROM pg_index WHERE indrelid = 'responses'::regclass"
                      " AND (indexprs IS NOT NULL OR indpred IS NOT NULL)")
        self.assertEqual(exprs, "0")
        opts = w.sql("SELECT array_to_string(reloptions, ',') FROM pg_class"
                     " WHERE oid = 'responses'::regclass")
        self.assertIn("fillfactor=70", opts)

    def test_consent_copy_untouched_by_frame_patches(self):
        rid = self.w.create_response(self.parent, self.child, self.study)
        before = self.consent_row(rid)
        self.assertIsNotNone(before)
        for i in range(3):
            frames = {f"{k}-frame": {"frameType": "DEFAULT", "eventTimings": []} for k in range(i + 1)}
            self.patch(rid, exp_data=frames, sequence=list(frames), completed=False,
                       is_preview=False)
        self.assertEqual(self.consent_row(rid), before)
        # Completing it changes what the charts count: the copy follows.
        self.patch(rid, completed=True)
        after = self.consent_row(rid)
        self.assertNotEqual(after[0], before[0])
        self.assertEqual(after[1:], ["t", "f"])
        # So does a move to preview (the consent lists filter on it).
        self.patch(rid, is_preview=True)
        self.assertEqual(self.consent_row(rid)[1:], ["t", "t"])

    def test_lists_keep_date_modified_order(self):
        w = self.w
        other = w.child(self.parent, "Second")
        rids = [w.create_response(self.parent, other, self.study) for _ in range(3)]
        # Touch the oldest last: it comes first in the runner's past
        # sessions and in the family's list.
        self.patch(rids[0], sequence=["0-frame"], exp_data={"0-frame": {}})
        want = [rids[0], rids[2], rids[1]]
        s, c = self.study["uuid"], other["uuid"]
        r = w.api(self.parent, "GET", f"/api/v1/studies/{s}/responses/?child={c}")
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["data"]], want)
        r = w.api(self.parent, "GET", f"/api/v1/past-sessions/{rids[1]}/")
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["data"]], want)
        r = w.api(self.parent, "GET", f"/api/v1/responses/?child={c}")
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["data"]], want)


class PatchGroups(StudyhubTestCase):
    """One pool connection, so concurrent PATCHes wait together and go in
    groups: every one is answered with what it wrote, and the rows end
    with a value some PATCH wrote."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"PG_POOL_SIZE": "1"})
        cls.w = World(cls.srv)
        w = cls.w
        cls.study = w.study(w.lab("Group lab"), "Group study")
        cls.parent = w.user("groupparent")
        w.demographics(cls.parent)
        cls.child = w.child(cls.parent, "Groupkid")

    def grouped_total(self):
        m = re.search(r"^studyhub_pg_grouped_total (\d+)$", self.srv.get("/metrics").text, re.M)
        return int(m.group(1))

    def test_concurrent_patches_each_get_their_own_answer(self):
        w = self.w
        rids = [w.create_response(self.parent, self.child, self.study) for _ in range(4)]
        before = self.grouped_total()

        def patch(job):
            rid, n = job
            frames = {f"{k}-frame": {"n": n, "pad": "x" * 2000} for k in range(3)}
            body = {"data": {"id": rid, "type": "responses",
                             "attributes": {"exp_data": frames, "sequence": list(frames)}}}
            r = w.api(self.parent, "PATCH", f"/api/v1/responses/{rid}/", body)
            return rid, n, r

        jobs = [(rid, n) for n in range(12) for rid in rids]
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(patch, jobs))
        for rid, n, r in results:
            self.assertStatus(r, 200)
            self.assertEqual(r.json["data"]["id"], rid)
            self.assertEqual(r.json["data"]["attributes"]["exp_data"]["0-frame"]["n"], n)
        # Some waited together and shared a commit.
        self.assertGreater(self.grouped_total(), before)
        for rid in rids:
            r = w.api(self.parent, "GET", f"/api/v1/responses/{rid}/")
            self.assertStatus(r, 200)
            self.assertIn(r.json["data"]["attributes"]["exp_data"]["0-frame"]["n"], range(12))

    def test_someone_elses_patch_among_a_group_is_refused_alone(self):
        w = self.w
        other = w.user("groupother")
        mine = [w.create_response(self.parent, self.child, self.study) for _ in range(3)]

        def patch(job):
            who, rid = job
            body = {"data": {"id": rid, "type": "responses",
                             "attributes": {"exp_data": {"f": {"who": who["email"]}}}}}
            return who, rid, w.api(who, "PATCH", f"/api/v1/responses/{rid}/", body)

        jobs = [(self.parent, rid) for rid in mine for _ in range(4)] + [(other, mine[1])] * 3
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(patch, jobs))
        for who, rid, r in results:
            if who is other:
                self.assertStatus(r, 404)
            else:
                self.assertStatus(r, 200)
        r = w.api(self.parent, "GET", f"/api/v1/responses/{mine[1]}/")
        self.assertEqual(r.json["data"]["attributes"]["exp_data"]["f"]["who"], self.parent["email"])
