"""test_build: the experiment builder (issue 6) against a real server,
PostgreSQL, Redis, a local GitHub stand-in (github_stub.py) serving real zip
archives of tests/runners/*, real storage (a local folder, and s3rver when
tools/test started it), the mail outbox, and a stand-in docker client
(fake_docker) that records its command lines.

What is checked: a build publishes the runner with the study's prefix and
reports once (one study log with every stage, one email); preview goes to
its own folder and changes no state; a failing build is a failure whatever
it wrote (stage and log tail in the log and the email); a hanging build is
killed at BUILD_TIMEOUT_S with its whole process group; archives that try
to leave their folder are refused; a second request gets 409 with the
running build's id; cancel (API, and studyhubctl for a queued build); a
built commit is reused (no download, no build); the pinned or head SHA;
retried downloads; permissions; the live event stream, across two servers;
SIGKILL mid-build and restart (resumed, or failed with a log; never left
building); `studyhubctl tasks`, `jobs`, `run cleanup_*`; the docker
runner's exact command lines, its timeout removing the container, and
uploads to S3 with content types."""

import http.client
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import threading
import time
import unittest
import urllib.request

from apifixtures import World, lit
from github_stub import GitHubStub
from harness import (PG_PORT, REDIS_PORT, SLOW, StudyhubTestCase, free_port, new_dir, psql,
                     request, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.join(os.path.dirname(HERE), "runners")
FAKE_DOCKER = os.path.join(HERE, "fake_docker")
TERMINAL = ("succeeded", "failed", "cancelled")


def kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def processes_with(marker):
    """Pids of the processes whose command line or environment holds marker
    (a sandboxed build's processes carry the runner's cache key in
    PREPEND_FINGERPRINT; their cwd is inside the sandbox, so it cannot be
    used to find them from here)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(pid)
                        break
            except OSError:
                pass
    return found


def fake_docker_wrapper(root, log):
    """A docker client for DOCKER_BIN: fake_docker with its log named (the
    server runs the docker client with a clean environment, so
    FAKE_DOCKER_LOG cannot come from the server's)."""
    path = os.path.join(root, "docker")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nFAKE_DOCKER_LOG=%s exec %s \"$@\"\n"
                % (shlex.quote(log), shlex.quote(FAKE_DOCKER)))
    os.chmod(path, 0o755)
    return path


class EventStream:
    """A reader of GET .../builds/events on a thread: events land in a queue
    as (event, data)."""

    def __init__(self, port, path, token):
        self.q = queue.Queue()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60 * SLOW)
        self.conn.request("GET", path, headers={"Authorization": token,
                                                "Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event, data = None, []
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and event:
                    self.q.put((event, json.loads("\n".join(data))))
                    event, data = None, []
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close(): http.client drops its file
        self.q.put(("closed", None))

    def next(self, timeout=20):
        return self.q.get(timeout=timeout * SLOW)

    def until(self, pred, timeout=30):
        seen = []
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            try:
                ev = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(ev)
            if pred(ev):
                return seen
            if ev[0] == "closed":
                break
        raise AssertionError(f"no matching event; saw {seen}")

    def close(self):
        # Wake the reader first: closing under its blocked read would wait
        # for the server's next keep-alive.
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()


class BuildCase(StudyhubTestCase):
    """A GitHub stand-in per class (serving a copy of tests/runners, so tests
    can add runner variants) and helpers around builds."""

    ENV = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.runners = new_dir("runners")
        for name in os.listdir(RUNNERS):
            src = os.path.join(RUNNERS, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(cls.runners, name), symlinks=True)
        cls.stub = GitHubStub(free_port(), cls.runners).start()
        cls.addClassCleanup(cls.stub.stop)

    @classmethod
    def env(cls, root, **extra):
        # Builds run as BUILD_UID (nobody), which must reach BUILD_ROOT
        # (new_dir makes 0700 folders), as it must reach var/builds.
        os.chmod(root, 0o711)
        e = {
            "GITHUB_API_URL": cls.stub.url,
            "RUNNER_REPO_URL": cls.stub.repo_url("runners/good"),
            "RUNNER_REPO_ALLOW": cls.stub.url + "/",
            "BUILD_ROOT": os.path.join(root, "builds"),
            "STORAGE_URL": "file://" + os.path.join(root, "storage"),
            "STORAGE_LINK_SECRET": "test-link-secret",
            "BUILD_TIMEOUT_S": 6,
            "BUILD_FETCH_TIMEOUT_S": 20,
            "TASK_POLL_S": 1,
            "MAIL_DIR": os.path.join(root, "mail"),
            "MAX_ARCHIVE_BYTES": 8 << 20,
        }
        e.update(cls.ENV)
        e.update(extra)
        return e

    def variant(self, base, name, extra_file=None):
        """A new runner repository (a new commit) copied from base."""
        dst = os.path.join(self.runners, name)
        shutil.copytree(os.path.join(self.runners, base), dst, symlinks=True)
        with open(os.path.join(dst, "VARIANT"), "w") as f:
            f.write(extra_file or name)
        return "runners/" + name

    # -- fixtures

    def people(self, world):
        lab = world.lab("Lab")
        admin = world.user("admin", researcher=True)
        world.member(lab, admin, "admin")
        return lab, admin

    def study(self, world, lab, admin, repo=None, sha=None, approve=True, **cols):
        """A study; one naming a repository other than RUNNER_REPO_URL gets
        that repository approved for it (issue 11) unless approve=False."""
        meta = {}
        if repo:
            meta["player_repo_url"] = self.stub.repo_url(repo)
        if sha is not None:
            meta["last_known_player_sha"] = sha
        s = world.study(lab, state=cols.pop("state", "approved"), metadata=meta, **cols)
        world.study_member(s, admin, "admin")
        if repo and approve:
            world.sql(f"INSERT INTO study_runner_approvals (study_id, repo_url)"
                      f" VALUES ({s['id']}, {lit(self.stub.repo_url(repo))})")
        return s

    # -- builds

    def request(self, srv, who, study, mode="build"):
        return srv.request("POST", f"/api/v1/studies/{study['uuid']}/{mode}/",
                           headers={"Authorization": who["token"],
                                    "Accept": "application/vnd.api+json"})

    def start_build(self, srv, who, study, mode="build"):
        r = self.request(srv, who, study, mode)
        self.assertStatus(r, 202)
        self.assertEqual(r.json["data"]["type"], "builds")
        return r.json["data"]["id"]

    def task(self, db, task):
        row = psql(f"SELECT state, coalesce(stage, ''), coalesce(error, ''), attempts"
                   f" FROM tasks WHERE uuid = {lit(task)}", db=db).strip()
        return row.split("|") if row else None

    def wait_done(self, db, task, timeout=30):
        return wait_until(lambda: (lambda t: t if t and t[0] in TERMINAL else None)(
            self.task(db, task)), timeout * SLOW, message=f"build {task} to end")

    def wait_stage(self, db, task, stage, timeout=20):
        return wait_until(lambda: (lambda t: t and t[0] == "running" and t[1] == stage)(
            self.task(db, task)), timeout * SLOW, message=f"build {task} in stage {stage}")

    def cache_key(self, db, task):
        """The runner a build resolved to (its folder runners/<key>/ and its
        PREPEND_FINGERPRINT); waits for the resolve stage."""
        q = (f"SELECT coalesce(b.cache_key, '') FROM study_builds b JOIN tasks t"
             f" ON t.id = b.task_id WHERE t.uuid = {lit(task)}")
        return wait_until(lambda: psql(q, db=db).strip() or None, 20 * SLOW,
                          message=f"build {task} to resolve its runner")

    def build_processes(self, db, task):
        return processes_with("/runners/" + self.cache_key(db, task) + "/")

    def study_row(self, db, study):
        out = psql(f"SELECT built, is_building, state, metadata::text FROM studies"
                   f" WHERE id = {study['id']}", db=db).strip().split("|")
        return {"built": out[0] == "t", "is_building": out[1] == "t", "state": out[2],
                "metadata": json.loads(out[3])}

    def logs(self, db, study):
        out = psql(f"SELECT json_build_object('action', action, 'extra', extra)"
                   f" FROM study_logs WHERE study_id = {study['id']} AND action <> 'created'"
                   f" ORDER BY id", db=db)
        return [json.loads(l) for l in out.splitlines() if l]

    def mails(self, db, who):
        out = psql(f"SELECT json_build_object('kind', kind, 'subject', subject,"
                   f" 'body', body_text) FROM mail_outbox WHERE to_addr = {lit(who['email'])}"
                   f" ORDER BY id", db=db)
        return [json.loads(l) for l in out.splitlines() if l]

    def get(self, srv, who, path):
        return srv.request("GET", path, headers={"Authorization": who["token"],
                                                 "Accept": "application/vnd.api+json"})

    def build_doc(self, srv, who, study, task):
        r = self.get(srv, who, f"/api/v1/studies/{study['uuid']}/builds/{task}/")
        self.assertStatus(r, 200)
        return r.json["data"]["attributes"]

    def stages(self, attrs):
        return [(s["stage"], s["outcome"]) for s in attrs["stages"]]


class TestLocalBuilds(BuildCase):
    """BUILD_RUNNER=local, file:// storage, one server for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = new_dir("buildroot")
        cls.srv = cls.class_server(env=cls.env(cls.root))
        cls.db = cls.srv.database
        cls.world = World(cls.srv)
        cls.lab, cls.admin = cls.world.lab("Lab"), cls.world.user("admin", researcher=True)
        cls.world.member(cls.lab, cls.admin, "admin")

    def new_study(self, repo=None, sha=None, **cols):
        return self.study(self.world, self.lab, self.admin, repo=repo, sha=sha, **cols)

    def reviewer(self):
        """A site admin: holds approve_runner_repo."""
        u = self.world.user("reviewer", researcher=True)
        self.world.sql(f"UPDATE users SET is_site_admin = true WHERE id = {u['id']}")
        return u

    def approval(self, who, st, method="POST", url=None):
        body = None
        if method == "POST":
            body = {"data": {"type": "runner-approvals", "attributes": {"repo_url": url}}}
        return self.srv.request(method, f"/api/v1/studies/{st['uuid']}/runner-approval/",
                                json_body=body, jsonapi=True, token=who["token"])

    def test_another_repository_needs_a_reviewers_approval(self):
        repo = self.variant("good", "fork")
        st = self.new_study(repo=repo, approve=False)
        url = self.stub.repo_url(repo)
        # Refused before anything is written, for builds and previews.
        for mode in ("build", "preview"):
            r = self.request(self.srv, self.admin, st, mode)
            self.assertStatus(r, 409)
            self.assertEqual(r.json["errors"][0]["code"], "runner_repo_not_approved")
            self.assertIn(url, r.json["errors"][0]["detail"])
        self.assertFalse(self.study_row(self.db, st)["is_building"])
        self.assertEqual(psql(f"SELECT count(*) FROM tasks WHERE subject = {lit(st['uuid'])}",
                              db=self.db).strip(), "0")
        # The study's own admin may not approve it; a stranger sees no study.
        r = self.approval(self.admin, st, url=url)
        self.assertStatus(r, 403)
        stranger = self.world.user("stranger", researcher=True)
        self.assertStatus(self.approval(stranger, st, url=url), 404)
        # A site reviewer approves the URL the study names, not another.
        rev = self.reviewer()
        r = self.approval(rev, st, url=self.stub.repo_url("runners/good"))
        self.assertStatus(r, 400)
        self.assertEqual(r.json["errors"][0]["source"]["pointer"], "/data/attributes/repo_url")
        self.assertStatus(self.approval(rev, st, url=None), 400)
        self.assertStatus(self.approval(rev, st, url="https://elsewhere.example/x/y"), 400)
        r = self.approval(rev, st, url=url + "/")
        self.assertStatus(r, 201)
        self.assertEqual(r.json["data"]["attributes"]["repo_url"], url)
        self.assertEqual(r.json["data"]["attributes"]["approved_by"], rev["uuid"])
        self.assertStatus(self.approval(rev, st, url=url), 200)   # already approved
        logs = self.logs(self.db, st)
        self.assertEqual([l["action"] for l in logs], ["runner repository approved"])
        self.assertEqual(logs[0]["extra"], {"repo_url": url})
        # Now it builds.
        task = self.start_build(self.srv, self.admin, st, "preview")
        self.assertEqual(self.wait_done(self.db, task)[0], "succeeded")
        # Another repository (a fork of the fork) needs its own approval.
        other = self.variant("good", "fork2")
        psql(f"UPDATE studies SET metadata = metadata || jsonb_build_object('player_repo_url',"
             f" {lit(self.stub.repo_url(other))}) WHERE id = {st['id']}", db=self.db)
        r = self.request(self.srv, self.admin, st, "preview")
        self.assertStatus(r, 409)
        self.assertEqual(r.json["errors"][0]["code"], "runner_repo_not_approved")
        # Revoking: reviewers only; then the old URL is refused again too.
        self.assertStatus(self.approval(self.admin, st, "DELETE"), 403)
        self.assertStatus(self.approval(rev, st, "DELETE"), 204)
        self.assertStatus(self.approval(rev, st, "DELETE"), 404)
        self.assertIn("runner repository approval revoked",
                      [l["action"] for l in self.logs(self.db, st)])

    def test_the_default_repository_needs_no_approval(self):
        st = self.new_study()
        r = self.approval(self.reviewer(), st, url=self.stub.repo_url("runners/good"))
        self.assertStatus(r, 400)
        self.assertIn("default runner repository", r.json["errors"][0]["detail"])
        task = self.start_build(self.srv, self.admin, st, "preview")
        self.assertEqual(self.wait_done(self.db, task)[0], "succeeded")

    def storage(self, *parts):
        return os.path.join(self.root, "storage", *parts)

    def test_missing_asset_is_a_problem(self):
        """The smoke check (issue 12): an output whose index.html asks for
        an asset the build did not produce still goes live, but the build
        succeeds with problems, naming what is missing."""
        repo = self.variant("good", "noasset")
        script = os.path.join(self.runners, "noasset", "build.sh")
        with open(script) as f:
            text = f.read()
        with open(script, "w") as f:
            f.write(text.replace("cp app/logo.png dist/img/logo.png\n", ""))
        st = self.new_study(repo=repo)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "succeeded", state)
        outcome, problems = psql(f"SELECT outcome, problems FROM tasks WHERE uuid = {lit(task)}",
                                 db=self.db).strip().split("|", 1)
        self.assertEqual(outcome, "succeeded_with_problems")
        self.assertIn("index.html asks for img/logo.png, which the build did not produce",
                      problems)
        self.assertNotIn("frameplayer", problems)   # the assets it did produce

    def test_deploy_publishes_the_runner_and_reports_once(self):
        repo = self.variant("good", "deployed")   # a commit built nowhere yet
        st = self.new_study(repo=repo)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "succeeded", state)
        sha = self.stub.sha(repo)
        # Published once under runners/<key>/, with that prefix compiled
        # in (issue 19): nothing of the study, nothing in a study folder.
        key = self.cache_key(self.db, task)
        index = self.storage("runners", key, "index.html")
        with open(index) as f:
            html = f.read()
        self.assertIn(f'src="/runners/{key}/assets/frameplayer-3f2a9c.js"', html)
        self.assertNotIn(st["uuid"], html)
        for rel in ("assets/frameplayer-3f2a9c.js", "assets/frameplayer-77e1b0.css",
                    "img/logo.png", "build-info.json"):
            self.assertTrue(os.path.isfile(self.storage("runners", key, rel)), rel)
        with open(self.storage("runners", key, "build-info.json")) as f:
            info = json.load(f)
        self.assertEqual(info, {"sha": sha, "prefix": f"/runners/{key}/"})
        self.assertFalse(os.path.exists(self.storage("experiments", st["uuid"])))
        # The study: built, not building, its commit pinned.
        row = self.study_row(self.db, st)
        self.assertTrue(row["built"])
        self.assertFalse(row["is_building"])
        self.assertEqual(row["state"], "approved")
        self.assertEqual(row["metadata"]["last_known_player_sha"], sha)
        # Stages, each with start, end, outcome and log.
        attrs = self.build_doc(self.srv, self.admin, st, task)
        self.assertEqual(self.stages(attrs), [
            ("resolve_sha", "succeeded"), ("download", "succeeded"), ("extract", "succeeded"),
            ("build", "succeeded"), ("upload", "succeeded"), ("finish", "succeeded")])
        self.assertEqual(attrs["sha"], sha)
        self.assertFalse(attrs["reused"])
        for s in attrs["stages"]:
            self.assertTrue(s["started"] and s["ended"], s)
        build_log = attrs["stages"][3]["log"]
        self.assertIn("bash build.sh", build_log)
        self.assertIn("built 5 files", build_log)
        self.assertIn("head of main: " + sha, attrs["stages"][0]["log"])
        # ONE study log with every stage, ONE email.
        logs = self.logs(self.db, st)
        self.assertEqual([l["action"] for l in logs], ["deployed"])
        extra = logs[0]["extra"]
        self.assertEqual(extra["outcome"], "succeeded")
        self.assertEqual(extra["sha"], sha)
        self.assertEqual([s["stage"] for s in extra["stages"]][:5],
                         ["resolve_sha", "download", "extract", "build", "upload"])
        self.assertIn("bash build.sh", extra["stages"][3]["log"])
        mails = self.mails(self.db, self.admin)
        mine = [m for m in mails if st["uuid"] in m["body"]]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["kind"], "build_succeeded")
        self.assertIn("deployed", mine[0]["subject"])

    def test_preview_goes_to_its_folder_and_changes_no_state(self):
        st = self.new_study(state="created")
        task = self.start_build(self.srv, self.admin, st, "preview")
        self.assertEqual(self.wait_done(self.db, task)[0], "succeeded")
        key = self.cache_key(self.db, task)
        self.assertTrue(os.path.isfile(self.storage("runners", key, "index.html")))
        self.assertFalse(os.path.exists(self.storage("preview_experiments", st["uuid"])))
        self.assertFalse(os.path.exists(self.storage("experiments", st["uuid"])))
        row = self.study_row(self.db, st)
        self.assertFalse(row["built"])
        self.assertFalse(row["is_building"])
        self.assertEqual(row["state"], "created")
        self.assertEqual([l["action"] for l in self.logs(self.db, st)], ["previewed"])

    def test_failing_build_is_a_failure_with_stage_and_log_tail(self):
        st = self.new_study(repo="runners/fails")
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("the build failed (exit 1)", state[2])
        row = self.study_row(self.db, st)
        self.assertFalse(row["built"])
        self.assertFalse(row["is_building"])
        # What it wrote before failing is not published.
        self.assertFalse(os.path.exists(self.storage("experiments", st["uuid"])))
        self.assertFalse(os.path.exists(self.storage("runners", self.cache_key(self.db, task))))
        logs = self.logs(self.db, st)
        self.assertEqual([l["action"] for l in logs], ["failed to build"])
        extra = logs[0]["extra"]
        self.assertEqual(extra["failed_stage"], "build")
        self.assertIn("ember build failed: Unexpected token", extra["stages"][3]["log"])
        self.assertEqual(extra["stages"][3]["outcome"], "failed")
        mine = [m for m in self.mails(self.db, self.admin) if st["uuid"] in m["body"]]
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["kind"], "build_failed")
        self.assertIn("in stage build", mine[0]["body"])
        self.assertIn("ember build failed: Unexpected token", mine[0]["body"])

    def test_hanging_build_is_killed_at_the_timeout(self):
        st = self.new_study(repo="runners/hangs")
        t0 = time.monotonic()
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task, timeout=40)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("BUILD_TIMEOUT_S=6", state[2])
        self.assertGreater(time.monotonic() - t0, 5.5)
        extra = self.logs(self.db, st)[0]["extra"]
        self.assertEqual(extra["failed_stage"], "build")
        self.assertIn("waiting for the package registry", extra["stages"][3]["log"])
        # The whole sandbox went: no sleep of that build survives.
        self.assertEqual(self.build_processes(self.db, task), [])
        self.assertFalse(self.study_row(self.db, st)["is_building"])

    def test_archives_that_escape_are_refused(self):
        for kind, why in (("dotdot", "'..' component"), ("absolute", "absolute path"),
                          ("symlink", "points outside the folder"),
                          ("bomb", "would pass the limit")):
            st = self.new_study(repo="evil/" + kind)
            task = self.start_build(self.srv, self.admin, st)
            state = self.wait_done(self.db, task)
            self.assertEqual(state[0], "failed", (kind, state))
            self.assertIn(why, state[2], kind)
            extra = self.logs(self.db, st)[0]["extra"]
            self.assertEqual(extra["failed_stage"], "extract", kind)
            sha = self.stub.sha("evil/" + kind)
            self.assertFalse(os.path.exists(os.path.join(self.root, "builds", "checkouts", sha)))
        self.assertFalse(os.path.exists(os.path.join(self.root, "builds", "escaped.txt")))
        self.assertFalse(os.path.exists(os.path.join(self.root, "builds", "checkouts",
                                                     "escaped.txt")))
        self.assertFalse(any(n.startswith("studyhub-absolute") for n in os.listdir("/tmp")))
        self.assertFalse(os.path.exists("/etc/studyhub-through-link.txt"))
        # No temporary folder is left behind.
        wait_until(lambda: not [n for n in os.listdir(os.path.join(self.root, "builds",
                                                                   "checkouts"))
                                if n.startswith(".tmp-")], 10 * SLOW, message="tmp removed")

    def test_an_archive_of_another_tree_is_refused(self):
        """Issue 11: a tree whose top folder is not <repo>-<sha>/ is not the
        commit asked for; it is refused and never kept as its checkout."""
        sha = self.stub.sha("evil/wrongtop")
        for attempt in (1, 2):
            st = self.new_study(repo="evil/wrongtop")
            task = self.start_build(self.srv, self.admin, st)
            state = self.wait_done(self.db, task)
            self.assertEqual(state[0], "failed", state)
            self.assertIn(f"not wrongtop-{sha}/: it is not the repository and commit asked for",
                          state[2])
            self.assertEqual(self.logs(self.db, st)[0]["extra"]["failed_stage"], "extract")
            self.assertFalse(os.path.exists(os.path.join(self.root, "builds", "checkouts", sha)))
            # Downloaded again by the second build: nothing of it was kept.
            self.assertEqual(self.stub.count("/evil/wrongtop/archive/"), attempt)

    def test_a_cut_download_is_retried(self):
        repo = self.variant("good", "cut")
        # A Content-Length and half the bytes; then no length and half.
        self.stub.cut_next(f"/{repo}/archive/", ["short", "noclen"])
        st = self.new_study(repo=repo)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "succeeded", state)
        log = self.build_doc(self.srv, self.admin, st, task)["stages"][1]["log"]
        self.assertIn("attempt 1 of the download: the download was cut short after", log)
        self.assertIn("attempt 2 of the download: the download was cut short: the", log)
        self.assertIn("not a whole zip archive", log)
        self.assertIn("(3 attempts)", log)
        self.assertNotIn("HTTP 200", log)

    def test_a_download_cut_every_time_fails_saying_so(self):
        repo = self.variant("good", "cutall")
        self.stub.cut_next(f"/{repo}/archive/", ["noclen"] * 4)
        st = self.new_study(repo=repo)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task, timeout=40)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("after 4 attempts: the download was cut short", state[2])
        self.assertEqual(self.logs(self.db, st)[0]["extra"]["failed_stage"], "download")
        self.assertFalse(os.path.exists(os.path.join(self.root, "builds", "checkouts",
                                                     self.stub.sha(repo))))

    def test_second_request_gets_409_and_delete_cancels(self):
        st = self.new_study(repo="runners/hangs")
        task = self.start_build(self.srv, self.admin, st)
        self.assertTrue(self.study_row(self.db, st)["is_building"])
        for mode in ("build", "preview"):
            r = self.request(self.srv, self.admin, st, mode)
            self.assertStatus(r, 409)
            err = r.json["errors"][0]
            self.assertEqual(err["code"], "build_in_progress")
            self.assertEqual(err["meta"]["task"], task)
        self.wait_stage(self.db, task, "build")
        r = self.srv.request("DELETE", f"/api/v1/studies/{st['uuid']}/builds/{task}/",
                             headers={"Authorization": self.admin["token"]})
        self.assertStatus(r, 202)
        self.assertEqual(r.json["meta"]["cancel"], "requested")
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "cancelled", state)
        self.assertFalse(self.study_row(self.db, st)["is_building"])
        # Its processes went with it, the daemonised sleep too.
        wait_until(lambda: self.build_processes(self.db, task) == [], 5 * SLOW,
                   message="the cancelled build's processes to be gone")
        logs = self.logs(self.db, st)
        self.assertEqual([l["action"] for l in logs], ["build cancelled"])
        self.assertEqual(logs[0]["extra"]["outcome"], "cancelled")
        mine = [m for m in self.mails(self.db, self.admin) if st["uuid"] in m["body"]]
        self.assertEqual([m["kind"] for m in mine], ["build_cancelled"])
        # Over: a second DELETE is a conflict, a new build is welcome.
        r = self.srv.request("DELETE", f"/api/v1/studies/{st['uuid']}/builds/{task}/",
                             headers={"Authorization": self.admin["token"]})
        self.assertStatus(r, 409)

    def test_a_built_commit_is_reused(self):
        repo = self.variant("good", "reused")
        st = self.new_study(repo=repo)
        first = self.start_build(self.srv, self.admin, st, "preview")
        self.assertEqual(self.wait_done(self.db, first)[0], "succeeded")
        downloads = self.stub.count("/archive/")
        t0 = time.monotonic()
        second = self.start_build(self.srv, self.admin, st)
        self.assertEqual(self.wait_done(self.db, second)[0], "succeeded")
        took = time.monotonic() - t0
        self.assertLess(took, 5 * SLOW)
        self.assertEqual(self.stub.count("/archive/"), downloads, "downloaded again")
        attrs = self.build_doc(self.srv, self.admin, st, second)
        self.assertTrue(attrs["reused"])
        self.assertEqual(self.stages(attrs)[1:4], [("download", "skipped"),
                                                   ("extract", "skipped"),
                                                   ("build", "skipped")])
        # The same runner, served where the preview put it: nothing copied.
        self.assertEqual(self.cache_key(self.db, second), self.cache_key(self.db, first))
        self.assertTrue(os.path.isfile(self.storage("runners", self.cache_key(self.db, first),
                                                    "index.html")))
        self.assertFalse(os.path.exists(self.storage("experiments", st["uuid"])))
        self.assertIn("nothing to copy", attrs["stages"][4]["log"])
        self.assertTrue(self.study_row(self.db, st)["built"])
        self.assertTrue(self.logs(self.db, st)[-1]["extra"]["reused"])

    def test_twenty_studies_on_one_commit_download_it_once(self):
        repo = self.variant("good", "shared")
        studies = [self.new_study(repo=repo) for _ in range(6)]
        before = self.stub.count("/archive/")
        tasks = [self.start_build(self.srv, self.admin, s) for s in studies]
        for t in tasks:
            self.assertEqual(self.wait_done(self.db, t, timeout=60)[0], "succeeded")
        self.assertEqual(self.stub.count("/archive/") - before, 1)

    def test_pinned_blank_and_invalid_shas(self):
        sha = self.stub.sha("runners/good")
        for value, api_calls in ((sha, 0), ("", 2), ("not-a-sha", 2), (sha.upper()[:39], 2)):
            st = self.new_study(sha=value)
            before = self.stub.count("/repos/")
            task = self.start_build(self.srv, self.admin, st, "preview")
            self.assertEqual(self.wait_done(self.db, task)[0], "succeeded", value)
            self.assertEqual(self.stub.count("/repos/") - before, api_calls, value)
            self.assertEqual(self.build_doc(self.srv, self.admin, st, task)["sha"], sha)

    def test_downloads_are_retried(self):
        repo = self.variant("good", "flaky")
        self.stub.fail_next("/runners/flaky/archive/", 2, 503)
        st = self.new_study(repo=repo)
        task = self.start_build(self.srv, self.admin, st)
        self.assertEqual(self.wait_done(self.db, task)[0], "succeeded")
        attrs = self.build_doc(self.srv, self.admin, st, task)
        self.assertIn("(3 attempts)", attrs["stages"][1]["log"])
        # A commit that does not exist is not retried.
        st2 = self.new_study(repo=repo, sha="0" * 40)
        task = self.start_build(self.srv, self.admin, st2)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "failed")
        self.assertIn("HTTP 404", state[2])
        self.assertIn("after 1 attempt", state[2])

    def test_repositories_outside_the_allowed_prefixes_are_refused(self):
        st = self.study(self.world, self.lab, self.admin)
        psql(f"UPDATE studies SET metadata = '{{\"player_repo_url\": "
             f"\"https://evil.example/x/y\"}}' WHERE id = {st['id']}", db=self.db)
        # RUNNER_REPO_ALLOW is the outer fence: even an approval (given
        # before the operator narrowed it) does not let a build past it.
        psql(f"INSERT INTO study_runner_approvals (study_id, repo_url)"
             f" VALUES ({st['id']}, 'https://evil.example/x/y')", db=self.db)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "failed")
        self.assertIn("RUNNER_REPO_ALLOW", state[2])
        self.assertEqual(self.logs(self.db, st)[0]["extra"]["failed_stage"], "resolve_sha")

    def test_permissions(self):
        st = self.new_study()
        outsider = self.world.user("outsider", researcher=True)
        designer = self.world.user("designer", researcher=True)
        self.world.study_member(st, designer, "design")
        r = self.request(self.srv, outsider, st)
        self.assertStatus(r, 404)
        r = self.request(self.srv, designer, st, "build")
        self.assertStatus(r, 403)
        self.assertIn("edit_study__build", r.json["errors"][0]["detail"])
        task = self.start_build(self.srv, designer, st, "preview")
        self.assertEqual(self.wait_done(self.db, task)[0], "succeeded")
        r = self.get(self.srv, outsider, f"/api/v1/studies/{st['uuid']}/builds/")
        self.assertStatus(r, 404)
        r = self.get(self.srv, designer, f"/api/v1/studies/{st['uuid']}/builds/")
        self.assertStatus(r, 200)
        self.assertEqual([d["id"] for d in r.json["data"]], [task])
        r = self.srv.request("POST", f"/api/v1/studies/{st['uuid']}/build/")
        self.assertStatus(r, 401)

    def test_builds_list_is_paginated(self):
        st = self.new_study()
        tasks = []
        for _ in range(3):
            t = self.start_build(self.srv, self.admin, st, "preview")
            self.wait_done(self.db, t)
            tasks.append(t)
        r = self.get(self.srv, self.admin,
                     f"/api/v1/studies/{st['uuid']}/builds/?page_size=2&page=2")
        self.assertStatus(r, 200)
        self.assertEqual(r.json["links"]["meta"]["count"], 3)
        self.assertEqual([d["id"] for d in r.json["data"]], [tasks[0]])
        r = self.get(self.srv, self.admin,
                     f"/api/v1/studies/{st['uuid']}/builds/?page_size=2&page=3")
        self.assertStatus(r, 404)
        # Issue 6 spells the routes without the trailing slash: both work.
        r = self.get(self.srv, self.admin, f"/api/v1/studies/{st['uuid']}/builds")
        self.assertStatus(r, 200)
        self.assertEqual(len(r.json["data"]), 3)
        r = self.get(self.srv, self.admin, f"/api/v1/studies/{st['uuid']}/builds/{tasks[1]}")
        self.assertStatus(r, 200)
        r = self.srv.request("POST", f"/api/v1/studies/{st['uuid']}/preview",
                             headers={"Authorization": self.admin["token"]})
        self.assertStatus(r, 202)
        self.assertEqual(r.json["data"]["attributes"]["mode"], "preview")
        self.wait_done(self.db, r.json["data"]["id"])

    def test_event_stream_shows_every_stage_live(self):
        st = self.new_study()
        ev = EventStream(self.srv.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                         self.admin["token"])
        self.addCleanup(ev.close)
        self.assertEqual(ev.status, 200)
        self.assertTrue(ev.headers["content-type"].startswith("text/event-stream"))
        kind, snap = ev.next()
        self.assertEqual(kind, "snapshot")
        self.assertIsNone(snap["build"])
        task = self.start_build(self.srv, self.admin, st, "preview")
        seen = ev.until(lambda e: e[0] == "finished")
        stages = [d["stage"] for k, d in seen if k == "stage"]
        self.assertEqual(stages, ["resolve_sha", "download", "extract", "build", "upload",
                                  "finish"])
        # "queued" comes from the server that took the request, the stages
        # from the one that runs the task (here the same process, but the
        # task's NOTIFY can beat the request's own reply): it comes once,
        # before the end, in no fixed place among the first stages.
        self.assertEqual([k for k, _ in seen].count("queued"), 1)
        self.assertTrue(all(d["task"] == task for k, d in seen))
        self.assertEqual(seen[-1][1]["outcome"], "succeeded")
        # A new stream starts with the latest build.
        ev2 = EventStream(self.srv.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                          self.admin["token"])
        self.addCleanup(ev2.close)
        kind, snap = ev2.next()
        self.assertEqual(snap["build"]["id"], task)
        self.assertEqual(snap["build"]["attributes"]["state"], "succeeded")
        other = self.world.user("nosy", researcher=True)
        ev3 = EventStream(self.srv.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                          other["token"])
        self.addCleanup(ev3.close)
        self.assertEqual(ev3.status, 404)

    def test_ctl_tasks_jobs_and_cleanup(self):
        st = self.new_study(repo="runners/hangs")
        task = self.start_build(self.srv, self.admin, st)
        self.wait_stage(self.db, task, "build")
        r = self.srv.ctl("tasks")
        self.assertEqual(r.returncode, 0, r.stderr)
        line = [l for l in r.stdout.splitlines() if task in l][0]
        f = kv(line)
        self.assertEqual((f["kind"], f["state"], f["stage"], f["subject"]),
                         ("build_experiment", "running", "build", st["uuid"]))
        self.assertIn("age_s", f)
        # Checkouts: an old unused one goes, the running build's stays,
        # a fresh one stays.
        checkouts = os.path.join(self.root, "builds", "checkouts")
        hang_sha = self.stub.sha("runners/hangs")
        old = os.path.join(checkouts, "a" * 40)
        os.makedirs(os.path.join(old, "sub"), exist_ok=True)
        fresh = os.path.join(checkouts, "b" * 40)
        os.makedirs(fresh, exist_ok=True)
        two_days = time.time() - 2 * 86400
        for p in (old, os.path.join(checkouts, hang_sha)):
            os.utime(p, (two_days, two_days))
        r = self.srv.ctl("run", "cleanup_checkouts", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("cleanup_checkouts: succeeded", r.stdout)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(fresh))
        self.assertTrue(os.path.exists(os.path.join(checkouts, hang_sha)))
        # Build folders: the running build's stays.
        builds = os.path.join(self.root, "builds", "builds")
        old_build = os.path.join(builds, "00000000-0000-4000-8000-000000000000")
        os.makedirs(old_build, exist_ok=True)
        for p in (old_build, os.path.join(builds, task)):
            os.utime(p, (two_days, two_days))
        r = self.srv.ctl("run", "cleanup_builds", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(os.path.exists(old_build))
        self.assertTrue(os.path.exists(os.path.join(builds, task)))
        r = self.srv.ctl("run", "cleanup_docker_images", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("BUILD_RUNNER is local", r.stdout)
        r = self.srv.ctl("jobs")
        jobs = {kv(l)["job"]: kv(l) for l in r.stdout.splitlines() if l.startswith("job=")}
        self.assertEqual(jobs["cleanup_builds"]["at"], "02:00")
        self.assertEqual(jobs["cleanup_docker_images"]["at"], "03:00")
        self.assertEqual(jobs["cleanup_checkouts"]["at"], "04:00")
        r = self.srv.ctl("task", "cancel", task)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.wait_done(self.db, task)[0], "cancelled")
        self.assertFalse(self.study_row(self.db, st)["is_building"])


class TestQueuedAndShared(BuildCase):
    """Servers sharing one database: a web-only one queues, studyhubctl
    cancels a queued build (settled by the trigger), and a stream on one
    server sees the stages of a build another server runs."""

    def test_queued_build_cancelled_by_ctl_is_settled(self):
        root = new_dir("queued")
        srv = self.server(env=self.env(root, TASK_CONCURRENCY=0))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        task = self.start_build(srv, admin, st)
        time.sleep(0.5)
        self.assertEqual(self.task(srv.database, task)[0], "queued")
        self.assertTrue(self.study_row(srv.database, st)["is_building"])
        r = srv.ctl("task", "cancel", task)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.task(srv.database, task)[0], "cancelled")
        self.assertFalse(self.study_row(srv.database, st)["is_building"])
        logs = self.logs(srv.database, st)
        self.assertEqual([l["action"] for l in logs], ["build cancelled"])
        self.assertEqual([m["kind"] for m in self.mails(srv.database, admin)],
                         ["build_cancelled"])

    def test_a_repository_named_after_the_request_is_refused_at_resolve(self):
        """Approval is checked again when the build resolves its commit: a
        study whose metadata names another repository after the request was
        accepted does not get that repository built."""
        db = self.database()
        root = new_dir("reresolve")
        web = self.server(database=db, env=self.env(root, TASK_CONCURRENCY=0))
        world = World(web)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin, repo=self.variant("good", "approved-one"))
        task = self.start_build(web, admin, st, "preview")
        other = self.variant("good", "swapped-in")
        psql(f"UPDATE studies SET metadata = metadata || jsonb_build_object('player_repo_url',"
             f" {lit(self.stub.repo_url(other))}) WHERE id = {st['id']}", db=db)
        self.server(database=db, env=self.env(root))
        state = self.wait_done(db, task)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("runner_repo_not_approved", state[2])
        self.assertIn(self.stub.repo_url(other), state[2])
        self.assertEqual(self.logs(db, st)[0]["extra"]["failed_stage"], "resolve_sha")
        self.assertEqual(self.stub.count(f"/{other}/archive/"), 0)

    def test_stream_on_one_server_sees_a_build_run_by_another(self):
        db = self.database()
        root = new_dir("shared")
        web = self.server(database=db, env=self.env(root, TASK_CONCURRENCY=0))
        worker = self.server(database=db, env=self.env(root))
        world = World(web)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        ev = EventStream(web.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                         admin["token"])
        self.addCleanup(ev.close)
        ev.next()
        task = self.start_build(web, admin, st, "preview")
        seen = ev.until(lambda e: e[0] == "finished")
        self.assertEqual(seen[-1][1]["outcome"], "succeeded")
        self.assertIn("build", [d["stage"] for k, d in seen if k == "stage"])
        self.assertEqual(self.task(db, task)[0], "succeeded")
        self.assertTrue(worker.running())

    def test_stream_hears_builds_after_redis_restarts(self):
        """The event subscriber (io/redis.c) subscribes again when Redis
        comes back; a stream opened before the outage sees a build run
        after it."""
        redis = self.redis()
        srv = self.server(env=self.env(new_dir("redis")), redis_url=redis.url)
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        ev = EventStream(srv.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                         admin["token"])
        self.addCleanup(ev.close)
        self.assertEqual(ev.next()[0], "snapshot")
        redis.stop()
        wait_until(lambda: request(srv.port, "GET", "/readyz").status == 503, 5 * SLOW,
                   message="/readyz 503 while Redis is down")
        redis.start()
        wait_until(lambda: request(srv.port, "GET", "/readyz").status == 200, 6 * SLOW,
                   message="/readyz 200 after Redis returned")
        # The subscriber retries with its own backoff (at most 5 s).
        time.sleep(6)
        self.start_build(srv, admin, st, "preview")
        seen = ev.until(lambda e: e[0] == "finished")
        self.assertEqual(seen[-1][1]["outcome"], "succeeded")

    def test_stream_outlives_the_idle_timeout_and_ends_on_drain(self):
        root = new_dir("idle")
        srv = self.server(env=self.env(root, IDLE_TIMEOUT_S=2))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        ev = EventStream(srv.port, f"/api/v1/studies/{st['uuid']}/builds/events",
                         admin["token"])
        self.addCleanup(ev.close)
        self.assertEqual(ev.next()[0], "snapshot")
        time.sleep(3.5)     # longer than IDLE_TIMEOUT_S, nothing sent either way
        self.start_build(srv, admin, st, "preview")
        seen = ev.until(lambda e: e[0] == "finished")
        self.assertEqual(seen[-1][1]["outcome"], "succeeded")
        # SIGTERM: the open stream ends and the server exits at once.
        t0 = time.monotonic()
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5 * SLOW)
        ev.until(lambda e: e[0] == "closed", timeout=5)


class TestRestart(BuildCase):
    """SIGKILL mid-build, then a restart."""

    def killed_mid_build(self, **env):
        root = new_dir("restart")
        srv = self.server(env=self.env(root, BUILD_ENV="BUILD_SLEEP_S=5", BUILD_TIMEOUT_S=30,
                                       **env))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        task = self.start_build(srv, admin, st)
        self.wait_stage(srv.database, task, "build")
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv.proc = None  # killed on purpose
        wait_until(lambda: self.build_processes(srv.database, task) == [], 5 * SLOW,
                   message="the build's processes to die with the server")
        self.assertEqual(self.task(srv.database, task)[0], "running")
        self.assertTrue(self.study_row(srv.database, st)["is_building"])
        return srv, st, admin, task

    def test_sigkill_mid_build_is_resumed_after_restart(self):
        srv, st, admin, task = self.killed_mid_build()
        srv.start()
        state = self.wait_done(srv.database, task, timeout=40)
        self.assertEqual(state[0], "succeeded", state)
        self.assertEqual(state[3], "2")
        row = self.study_row(srv.database, st)
        self.assertFalse(row["is_building"])
        self.assertTrue(row["built"])
        logs = self.logs(srv.database, st)
        self.assertEqual([l["action"] for l in logs], ["deployed"])
        stages = [(s["stage"], s["attempt"], s["outcome"]) for s in logs[0]["extra"]["stages"]]
        self.assertIn(("build", 1, "interrupted"), stages)
        self.assertIn(("build", 2, "succeeded"), stages)
        resumed = [s for s in logs[0]["extra"]["stages"] if s["attempt"] == 2][0]
        self.assertIn("resumed in stage build", resumed["log"])
        # The sandbox died with the server (bwrap --die-with-parent and its
        # PID namespace): the second attempt found nothing left to kill.
        self.assertNotIn("left running by the previous attempt", resumed["log"])

    def test_a_build_stopped_too_often_fails_with_a_log(self):
        srv, st, admin, task = self.killed_mid_build()
        psql(f"UPDATE tasks SET attempts = 3 WHERE uuid = {lit(task)}", db=srv.database)
        srv.start()
        state = self.wait_done(srv.database, task)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("stopped 3 times", state[2])
        self.assertFalse(self.study_row(srv.database, st)["is_building"])
        logs = self.logs(srv.database, st)
        self.assertEqual([l["action"] for l in logs], ["failed to build"])
        self.assertIn("stopped 3 times", logs[0]["extra"]["error"])
        self.assertEqual([m["kind"] for m in self.mails(srv.database, admin)], ["build_failed"])


class TestHostileRunner(BuildCase):
    """Issue 11: a runner repository whose build.sh tries every escape
    (tests/runners/hostile).  It reports each attempt; any success fails
    the test, and so does a report that did not try everything."""

    LIMITS = {"BUILD_MAX_PROCS": 48, "BUILD_MEMORY_MB": 256, "BUILD_MAX_OUTPUT_MB": 16}

    def test_a_hostile_build_reaches_nothing(self):
        root = new_dir("hostile")
        srv = self.server(env=self.env(root, BUILD_TIMEOUT_S=60, **self.LIMITS))
        secret = os.path.join(root, "secret.txt")
        with open(secret, "w") as f:
            f.write("the server's secret\n")
        os.chmod(secret, 0o644)     # readable by anyone who could see it
        checkouts = os.path.join(root, "builds", "checkouts")
        repo = self.variant("hostile", "hostile-" + os.path.basename(root))
        ports = [srv.port, PG_PORT, REDIS_PORT]
        targets = {
            "SERVER_DIR": srv.dir, "VAR_DIR": root, "STORAGE_DIR": os.path.join(root, "storage"),
            "CHECKOUTS": checkouts, "SECRET_FILE": secret, "ADMIN_SOCKET": srv.admin_socket,
            "PORTS": " ".join(map(str, ports)), "MAX_PROCS": self.LIMITS["BUILD_MAX_PROCS"],
            "MEMORY_MB": self.LIMITS["BUILD_MEMORY_MB"],
            "OUTPUT_MB": self.LIMITS["BUILD_MAX_OUTPUT_MB"],
        }
        with open(os.path.join(self.runners, repo.split("/")[1], "targets.env"), "w") as f:
            for k, v in targets.items():
                f.write(f"{k}={shlex.quote(str(v))}\n")
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin, repo=repo)
        task = self.start_build(srv, admin, st)
        state = self.wait_done(srv.database, task, timeout=90)
        out = os.path.join(root, "builds", "builds", task, "out")
        with open(os.path.join(out, "report.txt")) as f:
            report = f.read().splitlines()
        # Its last attempt fills the disk with small files: the build is
        # killed for it, mid-attempt (so that line stays "pending").
        self.assertEqual(state[0], "failed", "\n".join([str(state)] + report))
        self.assertIn("wrote more than BUILD_MAX_OUTPUT_MB=16 MiB", state[2])
        self.assertTrue(report[-1].startswith("pending disk-total"), report[-1])
        escapes = [l for l in report[:-1] if not l.startswith("blocked ")]
        self.assertEqual(escapes, [], "\n".join(report))
        # Every attempt was made (a report that stopped early proves nothing).
        tried = {l[len("blocked "):].split(": ", 1)[0] for l in report}
        want = {"env", "proc-environ", "proc", "admin-socket", "uid", "caps", "userns", "mount",
                "leftover-started", "fork-bomb", "memory", f"disk:/output", "disk:/tmp",
                f"read:{srv.dir}", f"read:{root}", f"read:{checkouts}", f"read:{secret}",
                "read:/etc/shadow", "write:/checkout", f"write:{root}", "write:/usr"}
        want |= {f"net:{p}" for p in ports}
        self.assertEqual(want - tried, set(), "\n".join(report))
        # Nothing written outside its output folder, on the host's side.
        sha = self.stub.sha(repo)
        for d in (root, checkouts, os.path.join(checkouts, sha)):
            self.assertFalse(os.path.exists(os.path.join(d, "hostile-was-here")), d)
        # Its files belong to BUILD_UID, not to the server's root.
        if os.geteuid() == 0:
            self.assertEqual(os.stat(os.path.join(out, "report.txt")).st_uid, 65534)
        # The daemonised sleep and the fork bomb's children are gone.
        wait_until(lambda: self.build_processes(srv.database, task) == [], 5 * SLOW,
                   message="every process of the hostile build to be gone")
        self.assertEqual(processes_with("hostile-leftover"), [])
        self.assertTrue(srv.running())


class TestSandboxRefusal(BuildCase):
    """BUILD_SANDBOX=bwrap where bubblewrap does not work: local builds are
    refused with the reason, never run without the sandbox."""

    def test_builds_are_refused_when_bwrap_is_missing(self):
        root = new_dir("nobwrap")
        srv = self.server(env=self.env(root, BWRAP_BIN="/nonexistent/bwrap"))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        task = self.start_build(srv, admin, st)
        state = self.wait_done(srv.database, task)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("builds are refused: the build sandbox does not work", state[2])
        self.assertIn("/nonexistent/bwrap", state[2])
        self.assertEqual(self.logs(srv.database, st)[0]["extra"]["failed_stage"], "build")
        self.assertFalse(os.path.exists(os.path.join(root, "builds", "builds", task, "out",
                                                     "index.html")))


    def test_builds_are_refused_when_build_uid_cannot_reach_build_root(self):
        if os.geteuid() != 0:
            self.skipTest("only a root server changes to BUILD_UID")
        root = new_dir("locked")
        locked = os.path.join(root, "locked")
        os.mkdir(locked, 0o700)
        srv = self.server(env=self.env(root, BUILD_ROOT=os.path.join(locked, "builds")))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        task = self.start_build(srv, admin, st)
        state = self.wait_done(srv.database, task)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("builds are refused", state[2])
        self.assertIn("every folder above BUILD_ROOT: o+x", state[2])


class TestNoSandbox(BuildCase):
    """BUILD_SANDBOX=none: the operator's explicit choice, said loudly."""

    def test_none_builds_on_the_host_and_says_so(self):
        root = new_dir("nosandbox")
        srv = self.server(env=self.env(root, BUILD_SANDBOX="none"))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin)
        task = self.start_build(srv, admin, st, "preview")
        self.assertEqual(self.wait_done(srv.database, task)[0], "succeeded")
        log = self.build_doc(srv, admin, st, task)["stages"][3]["log"]
        self.assertIn("WITHOUT a sandbox (BUILD_SANDBOX=none)", log)
        self.assertNotIn("bwrap", log)
        with open(srv.log_path) as f:
            self.assertIn("BUILD_SANDBOX=none", f.read())


class TestDockerBuilds(BuildCase):
    """BUILD_RUNNER=docker through fake_docker; storage on s3rver when
    tools/test runs one (S3_TEST_ENDPOINT), else a local folder."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = new_dir("dockerroot")
        cls.docker_log = os.path.join(cls.root, "docker.log")
        extra = {"BUILD_RUNNER": "docker",
                 "DOCKER_BIN": fake_docker_wrapper(cls.root, cls.docker_log),
                 "BUILDER_IMAGE": "studyhub-builder:test",
                 "BUILD_MEMORY_MB": 1024, "BUILD_MAX_PROCS": 100, "BUILD_MAX_OUTPUT_MB": 64,
                 "BUILD_ENV": "SENTRY_DSN=https://key@sentry.example/1"}
        cls.s3 = os.environ.get("S3_TEST_ENDPOINT")
        if cls.s3:
            cls.bucket = os.environ.get("S3_TEST_BUCKET", "studyhub-test")
            extra.update({"STORAGE_URL": "s3://" + cls.bucket, "S3_ENDPOINT": cls.s3,
                          "S3_ACCESS_KEY_ID": "S3RVER", "S3_SECRET_ACCESS_KEY": "S3RVER",
                          "S3_PATH_STYLE": 1})
        cls.srv = cls.class_server(env=cls.env(cls.root, **extra))
        cls.db = cls.srv.database
        cls.world = World(cls.srv)
        cls.lab, cls.admin = cls.world.lab("Lab"), cls.world.user("admin", researcher=True)
        cls.world.member(cls.lab, cls.admin, "admin")

    def commands(self):
        try:
            with open(self.docker_log) as f:
                return [json.loads(l) for l in f if l.strip()]
        except OSError:
            return []

    def client_env(self):
        """The environment fake_docker recorded for its last command."""
        with open(self.docker_log + ".env") as f:
            return json.load(f)

    def fetch(self, key):
        if self.s3:
            with urllib.request.urlopen(f"{self.s3}/{self.bucket}/{key}", timeout=10) as r:
                return r.read(), r.headers.get("Content-Type")
        with open(os.path.join(self.root, "storage", key), "rb") as f:
            return f.read(), None

    def test_docker_runner_command_lines_and_upload(self):
        st = self.study(self.world, self.lab, self.admin)
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task)
        self.assertEqual(state[0], "succeeded", state)
        sha = self.stub.sha("runners/good")
        checkout = os.path.join(self.root, "builds", "checkouts", sha)
        out = os.path.join(self.root, "builds", "builds", task, "out")
        key = self.cache_key(self.db, task)
        cmds = self.commands()
        self.assertIn(["build", "-t", "studyhub-builder:test", checkout], cmds)
        run = [c for c in cmds if c[:1] == ["run"]][-1]
        user = "65534:65534" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        self.assertEqual(run, [
            "run", "--rm", "--name", "studyhub-build-" + task,
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", user, "--pids-limit", "100", "--memory", "1024m",
            "--memory-swap", "1024m", "--ulimit", f"fsize={64 << 20}",
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",
            "--tmpfs", "/checkout-dir:rw,exec,nosuid,nodev,size=64m",
            "--network", "none",
            "-v", checkout + ":/checkouts:ro", "-v", out + ":/deployments",
            "-e", "HOME=/tmp",
            "-e", "CHECKOUT_DIR=/checkouts",
            "-e", f"PREPEND_FINGERPRINT=/runners/{key}/",
            "-e", "STUDY_OUTPUT_DIR=/deployments",
            "-e", "RUNNER_SHA=" + sha,
            "-e", "RUNNER_REPO_URL=" + self.stub.repo_url("runners/good"),
            "-e", "SENTRY_DSN=https://key@sentry.example/1",
            "studyhub-builder:test", "bash", "-c",
            "cp -R /checkouts/. /checkout-dir && cd /checkout-dir && exec bash ./build.sh"])
        # BUILD_ENV's values (a Sentry DSN is a secret) stay out of the log
        # researchers read.
        log = self.build_doc(self.srv, self.admin, st, task)["stages"][3]["log"]
        self.assertIn("SENTRY_DSN=(hidden)", log)
        self.assertNotIn("https://key@sentry.example/1", log)
        # The docker client itself ran with a clean environment: nothing of
        # the server's (DATABASE_URL, keys) reached it.
        env = self.client_env()
        self.assertNotIn("DATABASE_URL", env)
        self.assertNotIn("STORAGE_LINK_SECRET", env)
        self.assertIn("PATH", env)
        body, ctype = self.fetch(f"runners/{key}/index.html")
        self.assertIn(f"/runners/{key}/assets/".encode(), body)
        if self.s3:
            self.assertEqual(ctype, "text/html; charset=utf-8")
            _, ctype = self.fetch(f"runners/{key}/assets/frameplayer-3f2a9c.js")
            self.assertEqual(ctype, "text/javascript; charset=utf-8")
            _, ctype = self.fetch(f"runners/{key}/img/logo.png")
            self.assertEqual(ctype, "image/png")
        # Served to every study from there (issue 19), streamed from this
        # backend (s3rver when there is one), cached for a year.
        r = self.srv.request("GET", f"/runners/{key}/assets/frameplayer-3f2a9c.js")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
        self.assertEqual(r.body, self.fetch(f"runners/{key}/assets/frameplayer-3f2a9c.js")[0])
        if r.headers.get("etag"):
            r = self.srv.request("GET", f"/runners/{key}/assets/frameplayer-3f2a9c.js",
                                 headers={"If-None-Match": r.headers["etag"]})
            self.assertStatus(r, 304)
        self.assertStatus(self.srv.request("GET", f"/runners/{key}/assets/missing.js"), 404)
        # The checkout mounted read-only stayed pristine.
        self.assertFalse(os.path.exists(os.path.join(checkout, "dist")))

    def test_docker_timeout_removes_the_container(self):
        st = self.study(self.world, self.lab, self.admin, repo="runners/hangs")
        task = self.start_build(self.srv, self.admin, st)
        state = self.wait_done(self.db, task, timeout=40)
        self.assertEqual(state[0], "failed", state)
        self.assertIn("BUILD_TIMEOUT_S", state[2])
        wait_until(lambda: ["rm", "-f", "studyhub-build-" + task] in self.commands(),
                   10 * SLOW, message="docker rm -f of the container")
        self.assertFalse(self.study_row(self.db, st)["is_building"])

    def test_cleanup_docker_images_prunes(self):
        r = self.srv.ctl("run", "cleanup_docker_images", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("succeeded", r.stdout)
        self.assertIn(["image", "prune", "-f", "--filter", "until=24h"], self.commands())


if __name__ == "__main__":
    unittest.main()


class TestLeaseLoss(BuildCase):
    """A server that can no longer renew a build's lease (its database path
    stalled) stops the build, children and all, before the lease runs out:
    by then another server may start the same build, and two must never
    run side by side."""

    def test_build_is_killed_before_its_lease_ends(self):
        from test_faults import FreezableProxy
        import harness
        db = self.database()
        proxy = FreezableProxy(PG_PORT)
        self.addCleanup(proxy.close)
        url = harness.database_url(db).replace(f"port={PG_PORT}", f"port={proxy.port}")
        root = new_dir("lease")
        lease = 4
        srv = self.server(database=db, env=self.env(
            root, DATABASE_URL=url, TASK_LEASE_S=lease, BUILD_TIMEOUT_S=120,
            PG_QUERY_TIMEOUT_MS=500, PG_ACQUIRE_TIMEOUT_MS=500))
        world = World(srv)
        lab, admin = self.people(world)
        st = self.study(world, lab, admin, repo="runners/hangs")
        task = self.start_build(srv, admin, st)
        self.wait_stage(db, task, "build")
        wait_until(lambda: self.build_processes(db, task), 10 * SLOW,
                   message="the build's processes")
        proxy.frozen.set()
        frozen_at = time.monotonic()
        wait_until(lambda: self.build_processes(db, task) == [], (lease + 3) * SLOW,
                   message="the build's processes to die with its lease")
        # Renewed at most a third of a lease before the freeze; stopped a
        # second before the lease's end, at the latest.
        self.assertLess(time.monotonic() - frozen_at, lease + 0.5 * SLOW)
        proxy.frozen.clear()
        wait_until(lambda: "lease could not be renewed" in srv.log_text(), 10 * SLOW,
                   message="the server to say why it stopped the build")
