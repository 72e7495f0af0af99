"""test_loadgen: tools/loadgen.py (the capacity benchmark's participant
sessions, tools/bench BENCH_CAPACITY=1) against a test server, a handful
of sessions for a few seconds at a fast pace: every session completes
(study, child, create, past sessions, a PATCH per frame with growing
exp_data, the video webhook of each video frame, the exit) with no request
failing, and what it wrote is there.  No timing is asserted."""

import json
import os
import subprocess
import sys

from apifixtures import World
from harness import StudyhubTestCase, new_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAMBDA_KEY = "loadgen-test-key"


class LoadgenSmoke(StudyhubTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"AWS_LAMBDA_SECRET_ACCESS_KEY": LAMBDA_KEY})
        cls.w = World(cls.srv)

    def test_sessions_complete_without_errors(self):
        w = self.w
        lab = w.lab("Load lab")
        study = w.study(lab, "Load study")
        d = new_dir("loadgen")
        families = os.path.join(d, "families")
        with open(families, "w") as f:
            for i in range(4):
                parent = w.user(f"loadparent{i}")
                w.demographics(parent)
                child = w.child(parent, f"Kid{i}")
                f.write(f"{parent['token'].split()[1]} {child['uuid']}\n")
        out = os.path.join(d, "result.json")
        p = subprocess.run(
            [sys.executable, os.path.join(ROOT, "tools", "loadgen.py"),
             "--ports", str(self.srv.port), "--study", study["uuid"], "--families", families,
             "--lambda-key", LAMBDA_KEY, "--sessions", "4", "--duration", "3", "--finish",
             "--frames", "6", "--video-every", "2", "--exp-data-bytes", "8000",
             "--pace-min", "0.05", "--pace-max", "0.2", "--connections", "4",
             "--timeout", "120", "--json", out],
            capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        res = json.load(open(out))[0]
        self.assertEqual(res["errors"], 0, res)
        self.assertEqual(res["sessions_failed"], 0, res)
        self.assertGreaterEqual(res["sessions_completed"], 4, res)
        # Every completed session wrote its exit frame and completed: true,
        # and each video frame's webhook recorded a video (2 per session).
        sid = study["id"]
        done = int(w.sql(f"SELECT count(*) FROM responses WHERE study_id = {sid} AND completed"))
        self.assertEqual(done, res["sessions_completed"])
        sizes = w.sql(f"SELECT min(octet_length(exp_data::text)) FROM responses"
                      f" WHERE study_id = {sid} AND completed")
        self.assertGreater(int(sizes), 6000)
        videos = int(w.sql(f"SELECT count(*) FROM videos WHERE study_id = {sid}"))
        self.assertEqual(videos, 2 * done)
