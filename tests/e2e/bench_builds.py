#!/usr/bin/env python3
"""bench_builds: the experiment builder under load (tools/bench with
BENCH_BUILDS=1 runs it against its own PostgreSQL and Redis; the services
are described as for the end-to-end tests, see harness.py).

  1. one cold build (download, extract, build, upload) of a runner commit:
     what every new study cost before shared runners (issue 19), when the
     cache key held the study's uuid;
  2. N studies (BENCH_BUILD_STUDIES, default 20) built at once on one new
     commit: one download, one extraction and (issue 19) one build, the
     other builds waiting for it (TASK_CONCURRENCY =
     BENCH_BUILD_CONCURRENCY, default N);
  3. N new studies, one after the other, going live on that already-built
     commit: each timed through the API, from the POST to the GET that
     shows the build ended (no build, nothing copied);
  4. one study switching between two built commits, back and forth, each
     switch timed the same way;
  5. a redeploy of an already-built commit.

Prints wall times, per-build stage times from the database, and the
server's peak resident memory (VmHWM) and its resident memory at the end.
The runner is tests/runners/good: its build takes a fraction of a second,
so this measures the builder, not ember (an ember build takes 5 to 10
minutes: every one of them that 3. and 4. avoid)."""

import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from apifixtures import World  # noqa: E402
from github_stub import RUNNERS, GitHubStub  # noqa: E402
from harness import (Server, create_database, drop_database, free_port, new_dir,  # noqa: E402
                     psql, wait_until)

N = int(os.environ.get("BENCH_BUILD_STUDIES", "20"))
CONCURRENCY = int(os.environ.get("BENCH_BUILD_CONCURRENCY", str(N)))


def mem_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def post(srv, who, study, mode="build"):
    r = srv.request("POST", f"/api/v1/studies/{study['uuid']}/{mode}/",
                    headers={"Authorization": who["token"]})
    if r.status != 202:
        raise SystemExit(f"build request: {r.status} {r.body[:300]!r}")
    return r.json["data"]["id"]


def approve(world, study, url):
    """A repository other than RUNNER_REPO_URL needs a reviewer's approval
    for the study (issue 11)."""
    world.sql(f"INSERT INTO study_runner_approvals (study_id, repo_url)"
              f" VALUES ({study['id']}, '{url}') ON CONFLICT DO NOTHING")


def through_api(srv, who, study, mode="build"):
    """POST the build, then GET it until it ended: (seconds, attributes)."""
    t0 = time.monotonic()
    task = post(srv, who, study, mode)
    path = f"/api/v1/studies/{study['uuid']}/builds/{task}/"
    while True:
        r = srv.request("GET", path, headers={"Authorization": who["token"]})
        attrs = r.json["data"]["attributes"] if r.status == 200 else {}
        if attrs.get("state") in ("succeeded", "failed", "cancelled"):
            took = time.monotonic() - t0
            if attrs["state"] != "succeeded":
                raise SystemExit(f"build {task}: {attrs['state']}: {attrs.get('error')}")
            attrs["task"] = task
            return took, attrs
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"build {task} did not end")
        time.sleep(0.005)


def summary(times):
    ms = sorted(t * 1000 for t in times)
    return (f"median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms,"
            f" total {sum(ms) / 1000:.2f} s")


def built_stages(db, tasks):
    ids = ",".join(f"'{t}'" for t in tasks)
    return psql("SELECT count(*) FROM task_stages s JOIN tasks t ON t.id = s.task_id"
                f" WHERE t.uuid IN ({ids}) AND s.stage = 'build' AND s.outcome = 'succeeded'",
                db=db).strip()


def wait_all(db, tasks, timeout=600):
    ids = ",".join(f"'{t}'" for t in tasks)

    def done():
        out = psql(f"SELECT count(*) FILTER (WHERE state IN ('succeeded','failed','cancelled')),"
                   f" count(*) FILTER (WHERE state = 'succeeded') FROM tasks"
                   f" WHERE uuid IN ({ids})", db=db).strip().split("|")
        return int(out[0]) == len(tasks) and out
    out = wait_until(done, timeout, interval=0.02, message="builds to end")
    if int(out[1]) != len(tasks):
        raise SystemExit(f"only {out[1]} of {len(tasks)} builds succeeded")


def stage_times(db, tasks):
    ids = ",".join(f"'{t}'" for t in tasks)
    out = psql("SELECT s.stage, s.outcome, EXTRACT(EPOCH FROM s.ended_at - s.started_at)"
               f" FROM task_stages s JOIN tasks t ON t.id = s.task_id WHERE t.uuid IN ({ids})"
               " AND s.ended_at IS NOT NULL", db=db)
    by = {}
    for line in out.splitlines():
        stage, outcome, secs = line.split("|")
        by.setdefault(stage, []).append((outcome, float(secs)))
    return by


def show_stages(by):
    for stage in ("resolve_sha", "download", "extract", "build", "upload", "finish"):
        rows = by.get(stage, [])
        if not rows:
            continue
        secs = [s for _, s in rows]
        outcomes = {}
        for o, _ in rows:
            outcomes[o] = outcomes.get(o, 0) + 1
        print(f"    {stage:12s} median {statistics.median(secs) * 1000:7.1f} ms"
              f"  max {max(secs) * 1000:7.1f} ms  {outcomes}")


def main():
    tmp = new_dir("bench-builds")
    # Builds run as BUILD_UID (nobody) in the sandbox, which must enter
    # every folder above BUILD_ROOT: var/bench-XXXX and below are 0700.
    top = os.path.dirname(os.path.dirname(os.path.abspath(tmp)))
    p = os.path.abspath(tmp)
    while p.startswith(top) and p != os.path.dirname(p):
        os.chmod(p, os.stat(p).st_mode | 0o001)
        if p == top:
            break
        p = os.path.dirname(p)
    runners = os.path.join(tmp, "runners")
    shutil.copytree(RUNNERS, runners, symlinks=True)
    stub = GitHubStub(free_port(), runners).start()
    db = create_database()
    srv = Server(database=db, name="bench-builds", env={
        "GITHUB_API_URL": stub.url,
        "RUNNER_REPO_URL": stub.repo_url("runners/good"),
        "RUNNER_REPO_ALLOW": stub.url + "/",
        "BUILD_ROOT": os.path.join(tmp, "builds"),
        "STORAGE_URL": "file://" + os.path.join(tmp, "storage"),
        "STORAGE_LINK_SECRET": "bench",
        "TASK_CONCURRENCY": CONCURRENCY,
        "PG_POOL_SIZE": 8,
        "LOG_LEVEL": "warn",
        "DEBUG_ROUTES": "0",
    })
    try:
        srv.start()
        pid = srv.proc.pid
        world = World(srv)
        lab = world.lab("Bench")
        admin = world.user("bench", researcher=True)
        world.member(lab, admin, "admin")
        rss0 = mem_kb(pid, "VmRSS")
        print(f"builder benchmark: {N} studies, TASK_CONCURRENCY={CONCURRENCY},"
              f" runner tests/runners/good, file:// storage")
        print(f"  server resident memory at start: {rss0 / 1024:.1f} MiB")

        # 1. one cold build
        cold = world.study(lab, state="approved",
                           metadata={"player_repo_url": stub.repo_url("runners/good")})
        world.study_member(cold, admin, "admin")
        took, attrs = through_api(srv, admin, cold)
        print(f"  1. one cold build (download, extract, build, upload), through the API:"
              f" {took * 1000:.0f} ms -- before issue 19, every new study cost this")
        show_stages(stage_times(db, [attrs["task"]]))

        # 2. N studies at once on one new commit
        shutil.copytree(os.path.join(runners, "good"), os.path.join(runners, "shared"))
        with open(os.path.join(runners, "shared", "VARIANT"), "w") as f:
            f.write("bench")
        studies = []
        for _ in range(N):
            s = world.study(lab, state="approved",
                            metadata={"player_repo_url": stub.repo_url("runners/shared")})
            world.study_member(s, admin, "admin")
            approve(world, s, stub.repo_url("runners/shared"))
            studies.append(s)
        downloads = stub.count("/archive/")
        t0 = time.monotonic()
        with ThreadPoolExecutor(N) as pool:   # the requests at once, too
            tasks = list(pool.map(lambda s: post(srv, admin, s), studies))
        queued = time.monotonic() - t0
        wait_all(db, tasks)
        took = time.monotonic() - t0
        print(f"  2. {N} studies built at once on one new commit: {took:.2f} s"
              f" ({queued * 1000:.0f} ms to queue them; archive downloads:"
              f" {stub.count('/archive/') - downloads}; builds run: {built_stages(db, tasks)})")
        show_stages(stage_times(db, tasks))

        # 3. N new studies going live on the already-built commit
        new = []
        for _ in range(N):
            s = world.study(lab, state="approved",
                            metadata={"player_repo_url": stub.repo_url("runners/shared")})
            world.study_member(s, admin, "admin")
            approve(world, s, stub.repo_url("runners/shared"))
            new.append(s)
        downloads = stub.count("/archive/")
        runs = [through_api(srv, admin, s) for s in new]
        tasks = [a["task"] for _, a in runs]
        print(f"  3. {N} new studies on the already-built commit, one after the other,"
              f" POST to the GET that shows it ended: {summary([t for t, _ in runs])}"
              f" (builds run: {built_stages(db, tasks)}; archive downloads:"
              f" {stub.count('/archive/') - downloads})")
        show_stages(stage_times(db, tasks))

        # 4. one study switching between two built commits
        one, two = stub.sha("runners/good"), stub.sha("runners/shared")
        sw = new[0]
        approve(world, sw, stub.repo_url("runners/good"))
        runs = []
        for i in range(10):
            repo, sha = (("runners/good", one), ("runners/shared", two))[i % 2]
            world.sql(f"UPDATE studies SET metadata = metadata || jsonb_build_object("
                      f"'player_repo_url', '{stub.repo_url(repo)}', 'last_known_player_sha',"
                      f" '{sha}') WHERE id = {sw['id']}")
            runs.append(through_api(srv, admin, sw))
        tasks = [a["task"] for _, a in runs]
        print(f"  4. one study switching between two built commits, 10 times:"
              f" {summary([t for t, _ in runs])} (builds run: {built_stages(db, tasks)})")
        show_stages(stage_times(db, tasks))

        # 5. a redeploy of an already-built commit
        took, attrs = through_api(srv, admin, studies[0])
        print(f"  5. redeploy of an already-built commit: {took * 1000:.0f} ms")
        show_stages(stage_times(db, [attrs["task"]]))

        print(f"  server peak resident memory (VmHWM): {mem_kb(pid, 'VmHWM') / 1024:.1f} MiB;"
              f" at the end {mem_kb(pid, 'VmRSS') / 1024:.1f} MiB")
        mails = psql("SELECT count(*) FROM mail_outbox", db=db).strip()
        logs = psql("SELECT count(*) FROM study_logs WHERE action = 'deployed'", db=db).strip()
        print(f"  {logs} 'deployed' study logs, {mails} emails queued")
    finally:
        srv.stop(expect_code=None)
        stub.stop()
        drop_database(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
