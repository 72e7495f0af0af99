"""test_build_shared: one runner build for every study on its commit
(issue 19), against a real server, the local GitHub stand-in, the real
builder (BUILD_RUNNER=local in its sandbox) and file:// storage.

In headless chromium: the demo runner (static/runners/demo, served by the
stand-in as a repository) built once for one study; a second study on the
same commit goes live with no build at all; a family takes part in both,
and each response lands in its own study.  Over plain HTTP: a study
switching between two built commits (no build either way, the page
follows), the shared assets' caching headers and refusals, and a study
served from its own folder (built before shared runners) that keeps
working until it builds again."""

import os
import re
import shutil
import time
from urllib.parse import parse_qs, urlsplit

from apifixtures import World, lit
from browser import BrowserTestCase
from github_stub import GitHubStub
from harness import SLOW, StudyhubTestCase, free_port, new_dir, psql, request, wait_until

from test_accounts import PASSWORD

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_RUNNER = os.path.join(HERE, "..", "..", "static", "runners", "demo")
GOOD_RUNNER = os.path.join(HERE, "..", "runners", "good")
TERMINAL = ("succeeded", "failed", "cancelled")

STRUCTURE = {
    "frames": {
        "intro": {"kind": "exp-lookit-text", "title": "Welcome",
                  "blocks": [{"text": "Hello {{child}}, let us look at cats."}]},
        "end": {"kind": "exp-lookit-exit-survey", "title": "All done"},
    },
    "sequence": ["intro", "end"],
}


def runner_repos():
    """The stand-in's repositories: the demo runner (its build.sh made to
    build in its working folder, as the sandbox gives it a writable copy
    there and the checkout read-only) and five commits of the test runner."""
    root = new_dir("shared-runners")
    demo = os.path.join(root, "demo")
    shutil.copytree(DEMO_RUNNER, demo)
    path = os.path.join(demo, "build.sh")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('cd "$CHECKOUT_DIR"\n', ''))
    for name in ("one", "two", "three", "four", "five"):
        dst = os.path.join(root, name)
        shutil.copytree(GOOD_RUNNER, dst)
        with open(os.path.join(dst, "VARIANT"), "w") as f:
            f.write(name)
    return root


class SharedRunnerMixin:
    """A GitHub stand-in and a server that builds, and helpers around
    builds through the API."""

    @classmethod
    def start_shared(cls):
        cls.repos = runner_repos()
        cls.stub = GitHubStub(free_port(), cls.repos).start()
        cls.addClassCleanup(cls.stub.stop)
        cls.root = new_dir("shared-root")
        # Builds run as BUILD_UID (nobody), which must reach BUILD_ROOT.
        os.chmod(cls.root, 0o711)
        cls.srv = cls.class_server(env={
            "GITHUB_API_URL": cls.stub.url,
            "RUNNER_REPO_URL": cls.stub.repo_url("runners/demo"),
            "RUNNER_REPO_ALLOW": cls.stub.url + "/",
            "BUILD_ROOT": os.path.join(cls.root, "builds"),
            "STORAGE_URL": "file://" + os.path.join(cls.root, "storage"),
            "STORAGE_LINK_SECRET": "test-link-secret",
            "BUILD_TIMEOUT_S": 60,
            "TASK_POLL_S": 1,
            "MAIL_DIR": new_dir("mail"),
        })
        cls.db = cls.srv.database
        cls.w = World(cls.srv)
        cls.lab = cls.w.lab("Shared lab")
        cls.admin = cls.w.user("builder", researcher=True)
        cls.w.member(cls.lab, cls.admin, "admin")

    def storage(self, *parts):
        return os.path.join(self.root, "storage", *parts)

    def new_study(self, name, repo=None, sha=None):
        meta = {}
        if repo:
            meta["player_repo_url"] = self.stub.repo_url(repo)
        if sha:
            meta["last_known_player_sha"] = sha
        s = self.w.study(self.lab, name=name, state="active", structure=STRUCTURE,
                         exit_url="", metadata=meta)
        s["name"] = name
        self.w.study_member(s, self.admin, "admin")
        if repo:
            self.w.sql(f"INSERT INTO study_runner_approvals (study_id, repo_url)"
                       f" VALUES ({s['id']}, {lit(self.stub.repo_url(repo))})")
        return s

    def build(self, study, mode="build"):
        """POST the build, then read it through the API until it ends: the
        build's attributes and the seconds from the request to its end."""
        t0 = time.monotonic()
        r = self.srv.request("POST", f"/api/v1/studies/{study['uuid']}/{mode}/",
                             headers={"Authorization": self.admin["token"],
                                      "Accept": "application/vnd.api+json"})
        self.assertStatus(r, 202)
        task = r.json["data"]["id"]

        def ended():
            d = self.srv.request("GET", f"/api/v1/studies/{study['uuid']}/builds/{task}/",
                                 headers={"Authorization": self.admin["token"],
                                          "Accept": "application/vnd.api+json"})
            a = d.json["data"]["attributes"] if d.status == 200 else {}
            return a if a.get("state") in TERMINAL else None
        attrs = wait_until(ended, 60 * SLOW, interval=0.02, message=f"build {task} to end")
        took = time.monotonic() - t0
        self.assertEqual(attrs["state"], "succeeded", attrs)
        attrs["task"] = task
        return attrs, took

    def cache_key(self, task):
        return psql(f"SELECT b.cache_key FROM study_builds b JOIN tasks t ON t.id = b.task_id"
                    f" WHERE t.uuid = {lit(task)}", db=self.db).strip()

    def stages(self, attrs):
        return {s["stage"]: s["outcome"] for s in attrs["stages"]}

    def assertNoBuild(self, attrs):
        st = self.stages(attrs)
        self.assertTrue(attrs["reused"], attrs)
        self.assertEqual((st["download"], st["extract"], st["build"]),
                         ("skipped", "skipped", "skipped"), attrs["stages"])
        self.assertEqual(st["upload"], "succeeded")
        log = next(s["log"] for s in attrs["stages"] if s["stage"] == "upload")
        self.assertIn("nothing to copy", log)


class TestSharedRunnerInTheBrowser(SharedRunnerMixin, BrowserTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start_shared()
        email = f"hash-{os.urandom(4).hex()}@example.test"
        r = cls.srv.post("/api/v1/accounts/signup/",
                         json_body={"email": email, "password": PASSWORD})
        assert r.status == 201, r.body
        cls.pw_hash = cls.w.sql(f"SELECT password_hash FROM users WHERE email = '{email}'")
        cls.start_browser()

    def family(self, name):
        u = self.w.user(name)
        self.w.sql(f"UPDATE users SET password_hash = '{self.pw_hash}' WHERE id = {u['id']}")
        u["child"] = self.w.child(u, name="Sally", age_days=400)
        return u

    def log_in(self, user):
        self.open("/login/")
        self.fill("Email address", user["email"])
        self.fill("Password", PASSWORD)
        self.press("Log in")
        self.wait_until(lambda: "/login/" not in self.browser.current_url, "the login")

    def take_part(self, study, fam, key):
        """The runner's page of study for the family's child, through to
        its exit; the response's uuid.  The page is the shared build's,
        its assets under the shared prefix runners/<key>/."""
        self.browser.get(self.srv.base + f"/studies/{study['uuid']}/{fam['child']['uuid']}/")
        self.wait_until(lambda: self.heading() == "Welcome", f"the first frame of {study['name']}")
        self.assertIn("Hello Sally, let us look at cats.", self.browser.page_source)
        scripts = [e.get_attribute("src") for e in
                   self.browser.find_elements("xpath", "//script[@src]")]
        self.assertEqual([urlsplit(s).path for s in scripts],
                         [f"/runners/{key}/assets/runner-1.js"])
        response = self.browser.find_element("tag name", "body").get_attribute("data-response")
        self.assertTrue(response)
        self.press("Next")
        self.wait_until(lambda: self.heading() == "All done", "the last frame")
        self.press("Finish")
        self.wait_until(lambda: "/studies/history/" in self.browser.current_url, "the exit")
        self.assertEqual(parse_qs(urlsplit(self.browser.current_url).query)["response"],
                         [response])
        return response

    def test_two_studies_on_one_commit_each_taken_part_in(self):
        first = self.new_study("Cats one")
        second = self.new_study("Cats two")
        attrs, _ = self.build(first)
        self.assertEqual(self.stages(attrs)["build"], "succeeded")
        key = self.cache_key(attrs["task"])
        # The second study goes live on the first one's runner: no build,
        # no download, nothing copied, nothing written to storage.
        downloads = self.stub.count("/archive/")
        files_before = sorted(os.listdir(self.storage("runners", key, "assets")))
        attrs2, took = self.build(second)
        self.assertNoBuild(attrs2)
        self.assertEqual(self.cache_key(attrs2["task"]), key)
        self.assertEqual(self.stub.count("/archive/"), downloads)
        self.assertEqual(sorted(os.listdir(self.storage("runners", key, "assets"))), files_before)
        self.assertEqual(sorted(os.listdir(self.storage())), [".studyhub", "runners"]
                         if os.path.isdir(self.storage(".studyhub")) else ["runners"])
        self.assertLess(took, 10 * SLOW)    # the target is under a second: tools/bench

        fam = self.family("both")
        self.log_in(fam)
        r1 = self.take_part(first, fam, key)
        r2 = self.take_part(second, fam, key)
        self.assertNotEqual(r1, r2)
        for response, study in ((r1, first), (r2, second)):
            row = self.w.response_row(response)
            self.assertEqual(row["study_id"], study["id"], study["name"])
            self.assertEqual(row["child_id"], fam["child"]["id"])
            self.assertTrue(row["completed"])
            self.assertEqual(set(row["exp_data"]), {"intro", "end"})
            self.assertFalse(row["is_preview"])
        self.assertEqual(psql(f"SELECT count(*) FROM responses WHERE study_id IN"
                              f" ({first['id']}, {second['id']})", db=self.db).strip(), "2")
        self.assertAccessible("past sessions")


class TestSharedRunnerOverHttp(SharedRunnerMixin, StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start_shared()

    def page(self, study, fam):
        return request(self.srv.port, "GET", f"/studies/{study['uuid']}/{fam['child']['uuid']}/",
                       token=fam["token"])

    def family(self, name):
        u = self.w.user(name)
        u["child"] = self.w.child(u, age_days=400)
        return u

    def test_a_study_switching_between_two_built_commits(self):
        one, two = self.stub.sha("runners/one"), self.stub.sha("runners/two")
        a = self.new_study("A", repo="runners/one")
        b = self.new_study("B", repo="runners/two")
        self.w.sql(f"INSERT INTO study_runner_approvals (study_id, repo_url) VALUES"
                   f" ({a['id']}, {lit(self.stub.repo_url('runners/two'))})")
        built_a, _ = self.build(a)
        built_b, _ = self.build(b)
        key_one, key_two = self.cache_key(built_a["task"]), self.cache_key(built_b["task"])
        self.assertNotEqual(key_one, key_two)
        fam = self.family("switch")
        r = self.page(a, fam)
        self.assertStatus(r, 200)
        self.assertIn(f"/runners/{key_one}/assets/", r.text)
        downloads = self.stub.count("/archive/")
        times = []
        for repo, sha, key in (("runners/two", two, key_two), ("runners/one", one, key_one),
                               ("runners/two", two, key_two)):
            self.w.sql(f"UPDATE studies SET metadata = metadata || jsonb_build_object("
                       f"'player_repo_url', {lit(self.stub.repo_url(repo))},"
                       f" 'last_known_player_sha', {lit(sha)}) WHERE id = {a['id']}")
            attrs, took = self.build(a)
            times.append(took)
            self.assertNoBuild(attrs)
            self.assertEqual(attrs["sha"], sha)
            r = self.page(a, fam)
            self.assertStatus(r, 200)
            self.assertIn(f"/runners/{key}/assets/", r.text)
            self.assertIn('name="studyhub-runner"', r.text)
        self.assertEqual(self.stub.count("/archive/"), downloads)
        # The preview is its own choice: a preview of commit one leaves the
        # deployed page on commit two.
        self.w.sql(f"UPDATE studies SET metadata = metadata || jsonb_build_object("
                   f"'player_repo_url', {lit(self.stub.repo_url('runners/one'))},"
                   f" 'last_known_player_sha', {lit(one)}) WHERE id = {a['id']}")
        attrs, _ = self.build(a, "preview")
        self.assertNoBuild(attrs)
        self.assertIn(f"/runners/{key_two}/assets/", self.page(a, fam).text)
        res = self.w.user("researcher2fa", researcher=True)
        self.w.study_member(a, res, "admin")
        r = request(self.srv.port, "GET",
                    f"/exp/studies/{a['uuid']}/{self.w.child(res)['uuid']}/preview/",
                    token=res["token"])
        self.assertStatus(r, 200)
        self.assertIn(f"/runners/{key_one}/assets/", r.text)

    def test_the_cleanup_keeps_a_runner_while_any_study_serves_it(self):
        x = self.new_study("X", repo="runners/four")
        y = self.new_study("Y", repo="runners/four")
        for st in (x, y):
            self.w.sql(f"INSERT INTO study_runner_approvals (study_id, repo_url) VALUES"
                       f" ({st['id']}, {lit(self.stub.repo_url('runners/five'))})")
        four, five = self.stub.sha("runners/four"), self.stub.sha("runners/five")

        def pin(st, repo, sha):
            self.w.sql(f"UPDATE studies SET metadata = metadata || jsonb_build_object("
                       f"'player_repo_url', {lit(self.stub.repo_url(repo))},"
                       f" 'last_known_player_sha', {lit(sha)}) WHERE id = {st['id']}")

        def sweep():
            psql("UPDATE runner_builds SET last_used_at = now() - interval '8 days'",
                 db=self.db)
            r = self.srv.ctl("run", "cleanup_runners", timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("cleanup_runners: succeeded", r.stdout)
            return r.stdout

        key4 = self.cache_key(self.build(x)[0]["task"])
        pin(x, "runners/five", five)
        key5 = self.cache_key(self.build(x)[0]["task"])
        self.build(y, "preview")            # Y's preview serves four
        sweep()
        for key in (key4, key5):
            self.assertTrue(os.path.isfile(self.storage("runners", key, "index.html")), key)
        # Y's preview moves to five: nobody serves four any more.
        pin(y, "runners/five", five)
        self.assertNoBuild(self.build(y, "preview")[0])
        out = sweep()
        self.assertIn(f"runners/{key4}/: 5 files, served by no study", out)
        self.assertFalse(os.path.exists(self.storage("runners", key4, "index.html")))
        self.assertEqual([f for _, _, fs in os.walk(self.storage("runners", key4)) for f in fs],
                         [])
        self.assertTrue(os.path.isfile(self.storage("runners", key5, "index.html")))
        self.assertEqual(psql(f"SELECT count(*) FROM runner_builds WHERE cache_key"
                              f" IN ({lit(key4)}, {lit(key5)})", db=self.db).strip(), "1")
        # Going back to four builds it again.
        pin(x, "runners/four", four)
        attrs, _ = self.build(x)
        self.assertEqual(self.stages(attrs)["build"], "succeeded")
        self.assertTrue(os.path.isfile(self.storage("runners", key4, "index.html")))

    def test_shared_assets_headers_and_refusals(self):
        st = self.new_study("Assets", repo="runners/one")
        attrs, _ = self.build(st)
        key = self.cache_key(attrs["task"])
        r = request(self.srv.port, "GET", f"/runners/{key}/assets/frameplayer-3f2a9c.js")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
        self.assertIn("sandbox", r.headers["content-security-policy"])
        with open(self.storage("runners", key, "assets", "frameplayer-3f2a9c.js"), "rb") as f:
            self.assertEqual(r.body, f.read())
        etag = r.headers["etag"]
        r = request(self.srv.port, "GET", f"/runners/{key}/assets/frameplayer-3f2a9c.js",
                    headers={"If-None-Match": etag})
        self.assertStatus(r, 304)
        # Every file: the folder's name is the hash of what made them.
        r = request(self.srv.port, "GET", f"/runners/{key}/build-info.json")
        self.assertStatus(r, 200)
        self.assertEqual(r.headers["cache-control"], "public, max-age=31536000, immutable")
        self.assertEqual(r.headers["content-type"], "application/json")
        # The index.html only through a study's page (with a family's key).
        for path in (f"/runners/{key}/index.html", f"/runners/{key}/nope.js",
                     f"/runners/{key[:-1]}/assets/frameplayer-3f2a9c.js",
                     f"/runners/{key.upper()}/assets/frameplayer-3f2a9c.js",
                     f"/runners/{key}/../{key}/build-info.json", f"/runners/{key}/"):
            self.assertStatus(request(self.srv.port, "GET", path), 404)

    def test_a_study_built_before_shared_runners_keeps_working(self):
        """Its own folder (experiments/<uuid>/, with its own prefix) is served
        until it builds again; then it serves the shared runner, and the
        old folder is no longer read."""
        st = self.new_study("Old", repo="runners/one")
        old = self.storage("experiments", st["uuid"])
        os.makedirs(os.path.join(old, "assets"))
        with open(os.path.join(old, "index.html"), "w") as f:
            f.write(f'<!doctype html><html><head><title>old</title></head><body>'
                    f'<script src="/studies/{st["uuid"]}/assets/app-0123456789abcdef.js">'
                    f'</script></body></html>')
        with open(os.path.join(old, "assets", "app-0123456789abcdef.js"), "w") as f:
            f.write("console.log('old');\n")
        self.w.sql(f"UPDATE studies SET built = true WHERE id = {st['id']}")
        fam = self.family("old")
        r = self.page(st, fam)
        self.assertStatus(r, 200)
        self.assertIn(f"/studies/{st['uuid']}/assets/app-0123456789abcdef.js", r.text)
        r = request(self.srv.port, "GET", f"/studies/{st['uuid']}/assets/app-0123456789abcdef.js")
        self.assertStatus(r, 200)
        attrs, _ = self.build(st)
        key = self.cache_key(attrs["task"])
        r = self.page(st, fam)
        self.assertStatus(r, 200)
        self.assertIn(f"/runners/{key}/assets/frameplayer-3f2a9c.js", r.text)
        self.assertNotIn("old", re.findall(r"<title>(.*?)</title>", r.text))

    def test_twenty_new_studies_on_one_commit_build_it_once(self):
        studies = [self.new_study(f"Many {i}", repo="runners/three") for i in range(6)]
        before = self.stub.count("/archive/")
        tasks = []
        for s in studies:
            r = self.srv.request("POST", f"/api/v1/studies/{s['uuid']}/build/",
                                 headers={"Authorization": self.admin["token"]})
            self.assertStatus(r, 202)
            tasks.append(r.json["data"]["id"])
        for t in tasks:
            wait_until(lambda: psql(f"SELECT state FROM tasks WHERE uuid = {lit(t)}",
                                    db=self.db).strip() in TERMINAL, 60 * SLOW,
                       message=f"build {t} to end")
        outcomes = psql("SELECT s.outcome FROM task_stages s JOIN tasks t ON t.id = s.task_id"
                        f" WHERE s.stage = 'build' AND t.uuid IN ({', '.join(map(lit, tasks))})"
                        " ORDER BY s.id", db=self.db).split()
        # One build ran; the others waited for it and serve what it made.
        self.assertEqual(sorted(outcomes), ["skipped"] * 5 + ["succeeded"], outcomes)
        self.assertEqual(self.stub.count("/archive/") - before, 1)
        keys = {self.cache_key(t) for t in tasks}
        self.assertEqual(len(keys), 1)
