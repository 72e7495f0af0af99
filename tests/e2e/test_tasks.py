"""test_tasks: the durable task queue, the scheduler and supervised children
against real servers, PostgreSQL and Redis (the machinery under issues 5,
6 and 7): stages saved as they happen, cancel of queued and running tasks
(the child is killed), retries, one active task per (kind, subject),
enqueueing in the same statement as a change, SIGKILL mid-task and restart
(resumed, or failed with a log; never left running), drain on SIGTERM
handing a task back at a stage boundary, two servers sharing the queue with
each task run once, a lease running out on a dead server's task, and
scheduled jobs: `jobs`, `run JOB`, the Redis lock between servers, a
wall-clock slot run once by two servers, a missed slot caught up at start.

The test kind test_sleep and the test job test_sleep exist only with
DEBUG_ROUTES=1 (the harness sets it)."""

import datetime
import os
import re
import signal
import threading
import time
import unittest
import zoneinfo

from harness import (SLOW, StudyhubTestCase, database_url, psql, run_server_once,
                     wait_until)

NY = zoneinfo.ZoneInfo("America/New_York")
LEASE_S = 3


def kv(line):
    """{key: value} of the key=value words of one output line."""
    out = {}
    for word in line.split():
        if "=" in word:
            k, _, v = word.partition("=")
            out[k] = v
    return out


def pid_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


class TaskTestCase(StudyhubTestCase):
    """Helpers around `studyhubctl task ...` and the tasks table."""

    ENV = {"TASK_LEASE_S": LEASE_S, "TASK_POLL_S": 2}

    def start(self, database=None, **env):
        e = dict(self.ENV)
        e.update(env)
        return self.server(database=database, env=e)

    def ctl_ok(self, srv, *args, timeout=10):
        r = srv.ctl(*args, timeout=timeout)
        self.assertEqual(r.returncode, 0, f"studyhubctl {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def enqueue(self, srv, *args):
        out = self.ctl_ok(srv, "task", "enqueue-test", *args)
        ids = [int(kv(line)["id"]) for line in out.splitlines() if line.startswith("enqueued")]
        self.assertTrue(ids, out)
        return ids if len(ids) > 1 else ids[0]

    def show(self, srv, task_id):
        """(fields of the task, [stage dicts with a 'log' list])."""
        out = self.ctl_ok(srv, "task", "show", str(task_id))
        lines = out.splitlines()
        task = kv(lines[0])
        for line in lines[1:]:
            for key in ("payload", "result", "error"):
                if line.startswith(key + ": "):
                    task[key] = line[len(key) + 2:]
        stages = []
        for line in lines:
            if line.startswith("stage "):
                st = kv(line)
                st["stage"] = line.split()[1]
                st["log"] = []
                stages.append(st)
            elif line.startswith("  | ") and stages:
                stages[-1]["log"].append(line[4:])
        return task, stages

    def row(self, srv, task_id):
        out = psql(f"SELECT state, COALESCE(stage, ''), attempts, COALESCE(lease_owner, '')"
                   f" FROM tasks WHERE id = {int(task_id)}", db=srv.database).strip()
        state, stage, attempts, owner = out.split("|")
        return {"state": state, "stage": stage, "attempts": int(attempts), "owner": owner}

    def wait_state(self, srv, task_id, states, timeout=20, stage=None):
        if isinstance(states, str):
            states = (states,)

        def check():
            r = self.row(srv, task_id)
            return r if r["state"] in states and (stage is None or r["stage"] == stage) else None
        return wait_until(check, timeout * SLOW,
                          message=f"task {task_id} in {states}{' at ' + stage if stage else ''}")

    def child_pid(self, srv, task_id, timeout=10):
        def find():
            _, stages = self.show(srv, task_id)
            for st in reversed(stages):
                for line in st["log"]:
                    m = re.search(r"in child (\d+)", line)
                    if m:
                        return int(m.group(1))
            return None
        return wait_until(find, timeout * SLOW, message=f"a child of task {task_id}")

    def assert_none_running(self, db):
        out = psql("SELECT count(*) FROM tasks WHERE state = 'running'", db=db).strip()
        self.assertEqual(out, "0")
        out = psql("SELECT count(*) FROM task_stages WHERE ended_at IS NULL AND task_id IN"
                   " (SELECT id FROM tasks WHERE state <> 'running')", db=db).strip()
        self.assertEqual(out, "0", "a finished task has an open stage")


class TestTaskRunner(TaskTestCase):
    """One server running test tasks."""

    def test_stages_are_saved_and_listed(self):
        srv = self.start()
        tid = self.enqueue(srv, "0.6", "3")
        self.wait_state(srv, tid, "running")
        listing = self.ctl_ok(srv, "tasks")
        line = next(l for l in listing.splitlines() if l.startswith(f"id={tid} "))
        f = kv(line)
        self.assertEqual(f["kind"], "test_sleep")
        self.assertEqual(f["state"], "running")
        self.assertIn(f["stage"], ("first", "second", "third"))
        self.assertIn("here", line.split())
        self.assertIn("age_s", f)
        self.wait_state(srv, tid, "succeeded")
        task, stages = self.show(srv, tid)
        self.assertEqual([s["stage"] for s in stages], ["first", "second", "third"])
        self.assertTrue(all(s["outcome"] == "succeeded" for s in stages), stages)
        self.assertTrue(all(any("slept" in l for l in s["log"]) for s in stages), stages)
        self.assertIn('"resumed": false', task["result"])
        self.assert_none_running(srv.database)
        # Finished tasks leave the default listing and show up under "all".
        self.assertNotIn(f"id={tid} ", self.ctl_ok(srv, "tasks"))
        self.assertIn(f"id={tid} ", self.ctl_ok(srv, "tasks", "all"))

    def test_cancel_running_kills_the_child(self):
        srv = self.start()
        tid = self.enqueue(srv, "60", "3", "child")
        pid = self.child_pid(srv, tid)
        self.assertFalse(pid_gone(pid))
        out = self.ctl_ok(srv, "task", "cancel", str(tid))
        self.assertIn("cancel requested", out)
        self.wait_state(srv, tid, "cancelled", timeout=10)
        wait_until(lambda: pid_gone(pid), 5 * SLOW, message=f"child {pid} to die")
        task, stages = self.show(srv, tid)
        self.assertEqual(task["cancel_requested"], "yes")
        self.assertEqual(stages[-1]["outcome"], "cancelled")
        self.assertTrue(any("killed on request" in l for l in stages[-1]["log"]), stages)
        # A second cancel says it is over; an unknown one is an error.
        r = srv.ctl("task", "cancel", str(tid))
        self.assertEqual(r.returncode, 1)
        self.assertIn("already finished", r.stderr + r.stdout)
        r = srv.ctl("task", "cancel", "999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such task", r.stderr + r.stdout)
        r = srv.ctl("task", "cancel", "nonsense")
        self.assertEqual(r.returncode, 1)
        self.assert_none_running(srv.database)

    def test_cancel_queued_by_uuid(self):
        srv = self.start(TASK_CONCURRENCY=1)
        busy = self.enqueue(srv, "30")
        self.wait_state(srv, busy, "running")
        queued = self.enqueue(srv, "1")
        time.sleep(0.5)
        self.assertEqual(self.row(srv, queued)["state"], "queued")
        uuid = psql(f"SELECT uuid FROM tasks WHERE id = {queued}", db=srv.database).strip()
        out = self.ctl_ok(srv, "task", "cancel", uuid)
        self.assertIn("it was queued", out)
        self.assertEqual(self.row(srv, queued)["state"], "cancelled")
        self.ctl_ok(srv, "task", "cancel", str(busy))
        self.wait_state(srv, busy, "cancelled")
        self.assert_none_running(srv.database)

    def test_retries_then_fails_with_a_log(self):
        srv = self.start()
        tid = self.enqueue(srv, "0.1", "3", "fail=second")
        self.wait_state(srv, tid, "failed", timeout=30)
        task, stages = self.show(srv, tid)
        self.assertEqual(task["attempts"], "3")
        self.assertIn("failed on purpose in stage second", task["error"])
        self.assertEqual([(s["stage"], s["attempt"], s["outcome"]) for s in stages],
                         [("first", "1", "succeeded"), ("second", "1", "failed"),
                          ("second", "2", "failed"), ("second", "3", "failed")])
        self.assertTrue(all(any("failing on purpose" in l for l in s["log"])
                            for s in stages[1:]), stages)

    def test_one_active_task_per_subject(self):
        srv = self.start()
        tid = self.enqueue(srv, "5", "1", "subject=study-1")
        r = srv.ctl("task", "enqueue-test", "5", "1", "subject=study-1")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("already active", r.stderr)
        other = self.enqueue(srv, "0.1", "1", "subject=study-2")
        self.wait_state(srv, other, "succeeded")
        self.ctl_ok(srv, "task", "cancel", str(tid))
        self.wait_state(srv, tid, "cancelled")
        # Finished: the subject is free again.
        again = self.enqueue(srv, "0.1", "1", "subject=study-1")
        self.wait_state(srv, again, "succeeded")

    def test_enqueue_in_the_same_statement_as_a_change(self):
        """The CTE pattern of task.h: the change and the task commit together,
        the NOTIFY trigger wakes the runner, and a conflict undoes both."""
        srv = self.start(TASK_POLL_S=3600)  # only NOTIFY can wake it quickly
        stmt = ("WITH s AS (INSERT INTO app_settings (key, value) VALUES ('{key}', '1')"
                "  RETURNING key),"
                " t AS (INSERT INTO tasks (kind, subject, payload)"
                "  SELECT 'test_sleep', 'cte-subject', '{{\"seconds\": 0.1, \"stages\": 1}}'"
                "  FROM s RETURNING id)"
                " SELECT id FROM t")
        tid = int(psql(stmt.format(key="cte-1"), db=srv.database, user="studyhub").strip())
        self.wait_state(srv, tid, "succeeded", timeout=5)
        # An active task for the subject: the whole statement fails (23505)
        # and its own change is rolled back with it.
        busy = self.enqueue(srv, "30", "1", "subject=cte-subject")
        self.wait_state(srv, busy, "running")
        with self.assertRaises(RuntimeError) as cm:
            psql(stmt.format(key="cte-2"), db=srv.database, user="studyhub")
        self.assertIn("tasks_one_active", str(cm.exception))
        self.assertEqual(psql("SELECT count(*) FROM app_settings WHERE key = 'cte-2'",
                              db=srv.database).strip(), "0")
        self.ctl_ok(srv, "task", "cancel", str(busy))
        self.wait_state(srv, busy, "cancelled")

    def test_enqueue_test_is_for_tests_only(self):
        srv = self.start(DEBUG_ROUTES=0)
        r = srv.ctl("task", "enqueue-test", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("tests only", r.stderr)
        self.ctl_ok(srv, "tasks")


class TestRestartSafety(TaskTestCase):
    """SIGKILL and SIGTERM in the middle of a task."""

    def test_sigkill_then_restart_resumes_or_fails(self):
        db = self.database()
        srv = self.start(database=db)
        cont = self.enqueue(srv, "1.5", "3", "child")
        fail = self.enqueue(srv, "1.5", "3", "resume=fail")
        self.wait_state(srv, cont, "running", stage="second", timeout=15)
        self.wait_state(srv, fail, "running", stage="second", timeout=15)
        pid = self.child_pid(srv, cont)
        srv.kill()  # SIGKILL: no chance to hand anything back
        # The child dies with the server (PR_SET_PDEATHSIG).
        wait_until(lambda: pid_gone(pid), 5 * SLOW, message=f"child {pid} to die")
        self.assertEqual(self.row(srv, cont)["state"], "running")
        t0 = time.monotonic()
        srv.start()
        # Same host, dead pid: taken back at once, not after the lease.
        self.wait_state(srv, fail, "failed", timeout=10)
        self.assertLess(time.monotonic() - t0, 10 * SLOW)
        self.wait_state(srv, cont, "succeeded", timeout=20)
        task, stages = self.show(srv, cont)
        self.assertIn('"resumed": true', task["result"])
        self.assertEqual([(s["stage"], s["outcome"]) for s in stages],
                         [("first", "succeeded"), ("second", "interrupted"),
                          ("second", "succeeded"), ("third", "succeeded")])
        self.assertTrue(any("stopped before it ended" in l for l in stages[1]["log"]), stages)
        task, stages = self.show(srv, fail)
        self.assertIn("interrupted in stage second", task["error"])
        self.assertIn("not resumable", task["error"])
        self.assertEqual(stages[-1]["outcome"], "interrupted")
        self.assert_none_running(db)

    def test_sigterm_hands_the_task_back_at_a_stage_boundary(self):
        db = self.database()
        srv = self.start(database=db, DRAIN_TIMEOUT_S=20)
        tid = self.enqueue(srv, "1.5", "3", "child")
        self.wait_state(srv, tid, "running", stage="first")
        srv.signal(signal.SIGTERM)
        self.assertEqual(srv.wait(30 * SLOW), 0)
        srv.check(0)
        row = self.row(srv, tid)
        self.assertEqual((row["state"], row["stage"], row["attempts"]), ("queued", "second", 0))
        srv.start()
        self.wait_state(srv, tid, "succeeded", timeout=20)
        task, stages = self.show(srv, tid)
        self.assertIn('"resumed": false', task["result"])
        self.assertEqual([(s["stage"], s["outcome"]) for s in stages],
                         [("first", "succeeded"), ("second", "succeeded"),
                          ("third", "succeeded")])
        self.assertTrue(any("handed back to the queue at stage second" in r.get("msg", "")
                            for r in srv.log_records()))


class TestSharedQueue(TaskTestCase):
    """Two servers on one database and one Redis."""

    def test_each_task_runs_once(self):
        db = self.database()
        a = self.start(database=db, TASK_CONCURRENCY=3)
        b = self.start(database=db, TASK_CONCURRENCY=3)
        ids = self.enqueue(a, "0.3", "2", "count=16")
        for tid in ids:
            self.wait_state(a, tid, "succeeded", timeout=40)
        out = psql("SELECT max(attempts), count(*) FROM tasks", db=db).strip()
        self.assertEqual(out, "1|16")
        # Two stage rows per task, never a repeat.
        out = psql("SELECT count(*), count(DISTINCT (task_id, stage)) FROM task_stages",
                   db=db).strip()
        self.assertEqual(out, "32|32")
        done = {}
        for srv in (a, b):
            for rec in srv.log_records():
                m = re.match(r"task (\d+) test_sleep: succeeded", rec.get("msg", ""))
                if m:
                    self.assertNotIn(m.group(1), done, "a task finished twice")
                    done[m.group(1)] = srv
        self.assertEqual(len(done), 16)
        self.assertEqual(len(set(done.values())), 2, "one server ran everything")
        self.assert_none_running(db)

    def test_lease_runs_out_and_another_server_resumes(self):
        db = self.database()
        a = self.start(database=db)
        # Stages long enough that a is still in "second" when it is killed,
        # however slowly this machine runs; b starts only after the kill,
        # so a cannot finish while b is starting.
        tid = self.enqueue(a, "4", "3")
        row = self.wait_state(a, tid, "running", stage="second", timeout=10)
        owner_a = row["owner"]
        a.kill()
        b = self.start(database=db)
        # b has another pid: it waits for a's lease to run out.
        self.wait_state(b, tid, "succeeded", timeout=20 + 2 * LEASE_S)
        task, stages = self.show(b, tid)
        self.assertIn('"resumed": true', task["result"])
        self.assertIn(("second", "interrupted"), [(s["stage"], s["outcome"]) for s in stages])
        self.assertNotEqual(owner_a, "")
        a.proc = None  # killed on purpose
        self.assert_none_running(db)


class TestJobs(TaskTestCase):
    """Scheduled jobs: listing, manual runs, the lock, the wall clock."""

    def jobs(self, srv):
        out = self.ctl_ok(srv, "jobs")
        jobs, current = {}, None
        for line in out.splitlines():
            if line.startswith("job="):
                current = kv(line)
                current["runs"] = []
                jobs[current["job"]] = current
            elif line.strip().startswith("run ") and current:
                current["runs"].append(kv(line))
        return jobs

    def runs(self, db, job):
        out = psql(f"SELECT reason, outcome, EXTRACT(EPOCH FROM scheduled_for)::bigint"
                   f" FROM job_runs WHERE job = '{job}' ORDER BY id", db=db)
        return [tuple(l.split("|")) for l in out.splitlines() if l]

    def test_jobs_lists_schedule_and_history(self):
        srv = self.start()
        jobs = wait_until(lambda: (lambda j: j if j["cleanup_job_runs"]["runs"] else None)(
            self.jobs(srv)), 10 * SLOW, message="a baseline row")
        j = jobs["cleanup_job_runs"]
        self.assertEqual(j["at"], "04:30")
        self.assertEqual(j["zone"], "America/New_York")
        self.assertRegex(j["next"], r"T04:30:00-0[45]00")
        self.assertEqual(j["runs"][0]["reason"], "baseline")
        self.assertIn("cleanup_tasks", jobs)
        self.assertEqual(jobs["test_sleep"]["at"], "off")
        self.assertEqual(jobs["test_sleep"]["next"], "-")

    def test_run_reports_the_outcome(self):
        srv = self.start()
        psql("INSERT INTO job_runs (job, scheduled_for, reason, started_at, finished_at,"
             " outcome, instance) VALUES ('old', now() - interval '100 days', 'schedule',"
             " now() - interval '100 days', now() - interval '100 days', 'succeeded', 'x')",
             db=srv.database)
        out = self.ctl_ok(srv, "run", "cleanup_job_runs")
        self.assertIn("job cleanup_job_runs: succeeded", out)
        self.assertIn("deleted 1 job run older than 90 days", out)
        self.assertEqual(self.runs(srv.database, "cleanup_job_runs")[-1][:2],
                         ("manual", "succeeded"))
        out = self.ctl_ok(srv, "run", "cleanup_tasks")
        self.assertIn("deleted 0 finished tasks", out)
        r = srv.ctl("run", "no_such_job")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such job", r.stderr)
        jobs = self.jobs(srv)
        self.assertEqual(jobs["cleanup_job_runs"]["runs"][0]["outcome"], "succeeded")

    def test_lock_lets_one_server_run_a_job(self):
        db = self.database()
        a = self.start(database=db)
        b = self.start(database=db)
        results = {}

        def run(name, srv):
            results[name] = srv.ctl("run", "test_sleep", timeout=20)
        threads = [threading.Thread(target=run, args=("a", a))]
        threads[0].start()
        wait_until(lambda: self.runs(db, "test_sleep"), 5 * SLOW, message="a's run to start")
        threads.append(threading.Thread(target=run, args=("b", b)))
        threads[1].start()
        for t in threads:
            t.join(30)
        self.assertEqual(results["a"].returncode, 0, results["a"].stdout + results["a"].stderr)
        self.assertIn("succeeded", results["a"].stdout)
        self.assertEqual(results["b"].returncode, 1, results["b"].stdout)
        self.assertIn("running on another server", results["b"].stderr)
        self.assertEqual(self.runs(db, "test_sleep")[0][:2], ("manual", "succeeded"))
        self.assertEqual(len(self.runs(db, "test_sleep")), 1)
        # The lock was released: b can run it now.
        r = b.ctl("run", "test_sleep", timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_wall_clock_slot_runs_once_on_two_servers(self):
        db = self.database()
        slot = (datetime.datetime.now(NY) + datetime.timedelta(seconds=6 * SLOW)).replace(
            microsecond=0)
        env = {"SCHED_JOBS": f"test_sleep={slot:%H:%M:%S}"}
        a = self.start(database=db, **env)
        b = self.start(database=db, **env)
        want = str(int(slot.timestamp()))

        def ran():
            return [r for r in self.runs(db, "test_sleep") if r[0] == "schedule"
                    and r[1] == "succeeded"]
        got = wait_until(ran, 20 * SLOW, message="the scheduled run")
        time.sleep(1)
        got = [r for r in self.runs(db, "test_sleep") if r[0] == "schedule"]
        self.assertEqual(len(got), 1, got)
        self.assertEqual(got[0][2], want)
        nxt = kv(next(l for l in self.ctl_ok(a, "jobs").splitlines()
                      if l.startswith("job=test_sleep ")))
        self.assertTrue(nxt["next"].startswith(
            (slot + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")), nxt)
        self.assertTrue(b.running())

    def test_missed_slot_runs_once_at_start(self):
        db = self.database()
        srv = self.start(database=db)
        srv.stop()
        # The last slot recorded is two days old; the job is due every day a
        # minute ago: one catch-up run at start, not two.
        psql("INSERT INTO job_runs (job, scheduled_for, reason, finished_at, outcome, instance)"
             " VALUES ('test_sleep', now() - interval '2 days', 'schedule', now() - interval"
             " '2 days', 'succeeded', 'x')", db=db)
        slot = (datetime.datetime.now(NY) - datetime.timedelta(seconds=60)).replace(microsecond=0)
        srv2 = self.start(database=db, SCHED_JOBS=f"test_sleep={slot:%H:%M:%S}")

        def caught_up():
            return [r for r in self.runs(db, "test_sleep") if r[0] == "catch-up"
                    and r[1] == "succeeded"]
        got = wait_until(caught_up, 15 * SLOW, message="the catch-up run")
        self.assertEqual(got[0][2], str(int(slot.timestamp())))
        srv2.stop()
        # Started again: nothing new was missed.
        srv3 = self.start(database=db, SCHED_JOBS=f"test_sleep={slot:%H:%M:%S}")
        time.sleep(2)
        self.assertEqual(len([r for r in self.runs(db, "test_sleep") if r[0] == "catch-up"]), 1)
        del srv3

    def test_abandoned_run_is_marked(self):
        db = self.database()
        srv = self.start(database=db)
        psql("INSERT INTO job_runs (job, scheduled_for, reason, outcome, instance, lease_until)"
             " VALUES ('test_sleep', now() - interval '1 hour', 'manual', 'running', 'dead',"
             " now() - interval '1 minute')", db=db)
        srv.stop()
        srv2 = self.start(database=db)
        wait_until(lambda: ("manual", "abandoned") in [r[:2] for r in self.runs(db, "test_sleep")],
                   10 * SLOW, message="the abandoned run")
        del srv2

    def test_bad_time_zone_is_refused(self):
        db = self.database()
        code, _, err = run_server_once({"SCHED_TIME_ZONE": "Mars/Olympus_Mons",
                                        "DATABASE_URL": database_url(db), "MIGRATE": "1"})
        self.assertNotEqual(code, 0)
        self.assertIn("unknown time zone", err)
        code, _, err = run_server_once({"SCHED_JOBS": "cleanup_job_runs=25:00",
                                        "DATABASE_URL": database_url(db), "MIGRATE": "0"})
        self.assertNotEqual(code, 0)
        self.assertIn("cleanup_job_runs", err)


if __name__ == "__main__":
    unittest.main()
