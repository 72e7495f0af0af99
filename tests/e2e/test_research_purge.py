"""test_research_purge: the job purge_video_storage (issue 15 point 5):
a withdrawn response's non-consent videos lose their objects and rows,
its consent footage stays, the study's cached zips go, and zips too old
for any live link go while fresh zips of other studies stay."""

import io
import json
import os
import time
import zipfile

from apifixtures import lit
from harness import JSONAPI, StudyhubTestCase, new_dir, request, server_env, wait_until, SLOW
from researchfixtures import ResearchWorld


class PurgeTest(StudyhubTestCase):

    def test_withdrawn_videos_and_old_zips_are_deleted(self):
        store = new_dir("storage")
        srv = self.server(env=server_env({"STORAGE_URL": "file://" + store}))
        rw = ResearchWorld(srv)
        names = rw.w.sql("SELECT full_name || '|' || is_consent_footage || '|' || response_id"
                         " FROM videos").split("\n")
        for line in names:
            full, _, _ = line.split("|")
            with open(os.path.join(store, full), "wb") as f:
                f.write(b"video")
        zdir = os.path.join(store, "video-zips")
        os.makedirs(zdir, exist_ok=True)
        other = rw.w.study(rw.lab, "Other")
        zips = {"study": f"{rw.study['uuid']}_videos_{'a' * 64}.zip",
                "old": f"{other['uuid']}_videos_{'b' * 64}.zip",
                "fresh": f"{other['uuid']}_videos_{'c' * 64}.zip"}
        for z in zips.values():
            with open(os.path.join(zdir, z), "wb") as f:
                f.write(b"PK")
        old = time.time() - 2 * 3600
        os.utime(os.path.join(zdir, zips["old"]), (old, old))

        def run():
            r = srv.ctl("run", "purge_video_storage", timeout=30)
            return None if "not ready" in r.stdout + r.stderr else r
        r = wait_until(run, 20 * SLOW, interval=0.2, message="run purge_video_storage")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("deleted 1 withdrawn videos and 2 video zips", r.stdout + r.stderr)

        wid = str(rw.r["withdrawn"]["id"])
        for line in names:
            full, consent, resp = line.split("|")
            gone = resp == wid and consent in ("f", "false")
            self.assertEqual(os.path.exists(os.path.join(store, full)), not gone,
                             (full, consent, resp, wid, sorted(os.listdir(store))))
        self.assertEqual(rw.w.sql(f"SELECT count(*) FROM videos WHERE response_id = {wid}"), "1")
        self.assertEqual(rw.w.sql("SELECT count(*) FROM videos"), str(len(names) - 1))
        self.assertEqual(sorted(os.listdir(zdir)), [zips["fresh"]])
        # a second run has nothing to do
        r = srv.ctl("run", "purge_video_storage", timeout=30)
        self.assertIn("deleted 0 withdrawn videos and 0 video zips", r.stdout + r.stderr)

    def test_zips_hold_only_what_may_be_seen(self):
        """The zip of a study with accepted, rejected, pending, withdrawn
        and preview responses holds, for a reader, the accepted and preview
        videos and the withdrawn one's consent footage; nothing else."""
        store = new_dir("storage")
        srv = self.server(env=server_env({"STORAGE_URL": "file://" + store}))
        rw = ResearchWorld(srv)
        rows = rw.w.sql("SELECT v.full_name || '|' || v.is_consent_footage || '|' || r.uuid"
                        " FROM videos v JOIN responses r ON r.id = v.response_id").split("\n")
        state_of = {v["uuid"]: k for k, v in rw.r.items()}
        allowed = set()
        for line in rows:
            full, consent, ru = line.split("|")
            with open(os.path.join(store, full), "wb") as f:
                f.write(b"video " + full.encode())
            st = state_of[ru]
            if st in ("accepted", "preview") or (st == "withdrawn" and consent == "true"):
                allowed.add(full)
        r = request(srv.port, "POST", f"/api/v1/studies/{rw.study['uuid']}/video-zips/",
                    body=json.dumps({}), headers={"Content-Type": "application/json",
                                                  "Accept": JSONAPI},
                    token=rw.u["member"]["token"])
        self.assertEqual(r.status, 202, r)
        task = r.json["data"]["id"]

        def done():
            row = rw.w.row("SELECT state, coalesce(result::text, '') FROM tasks"
                           f" WHERE uuid = {lit(task)}")
            return row if row and row[0] in ("succeeded", "failed", "cancelled") else None
        state, result = wait_until(done, 120 * SLOW, interval=0.1, message="zip task")
        self.assertEqual(state, "succeeded", result)
        key = json.loads(result)["key"]
        with open(os.path.join(store, key), "rb") as f:
            z = zipfile.ZipFile(io.BytesIO(f.read()))
        names = {os.path.basename(n) for n in z.namelist()}
        self.assertTrue(names, z.namelist())
        for n in names:
            self.assertTrue(any(n.startswith(a) for a in allowed), (n, allowed))
        self.assertEqual(len(names), len(allowed), (names, allowed))
        log = rw.w.sql("SELECT action FROM access_log WHERE user_id = "
                       f"{rw.u['member']['id']}")
        self.assertIn("video_zip", log)
