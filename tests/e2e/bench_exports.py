#!/usr/bin/env python3
"""bench_exports: the streamed exports against a large study (tools/bench
with BENCH_EXPORTS=1 runs it against its own PostgreSQL and Redis; the
services are described as for the end-to-end tests, see harness.py).

A study of BENCH_EXPORT_RESPONSES responses (default 100000) with about
20 KB of exp_data each, every one consented.  Exports all responses as
JSON and the frame data as CSV, reading as fast as the socket gives, and
compares with the floor: psql's \\copy of the same exp_data to /dev/null.
Prints MB/s, the ratio to the floor and the server's peak resident memory
(VmHWM).

The summary, children and demographics CSVs are timed too (rows per
second): BENCH_EXPORT_CHILDREN children (default 200) take turns, so the
hashed ids are computed for nearly every row.  With
BENCH_EXPORT_BASELINE_BIN=PATH (a studyhub built from an older commit), a
second server runs that binary on the same database and each file is
timed on both, best of BENCH_EXPORT_ROUNDS, as a ratio of the two.

BENCH_EXPORT_PERF=DIR records each download with `perf record -g` (the
server and the bench cluster's PostgreSQL processes) into
DIR/<file>.data."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from apifixtures import World  # noqa: E402
import harness  # noqa: E402
from harness import Server, create_database, drop_database, psql  # noqa: E402

N = int(os.environ.get("BENCH_EXPORT_RESPONSES", "100000"))


def mem_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_s(pids):
    """user + system CPU seconds of the processes (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def pg_pids():
    """The bench cluster's postmaster and its children (the backends)."""
    with open(os.path.join(os.environ["TEST_PG_SOCKDIR"], "postmaster.pid")) as f:
        pm = f.readline().strip()
    out = subprocess.run(["pgrep", "-P", pm], capture_output=True, text=True).stdout
    return [pm] + out.split()


def exp_data():
    """About 20 KB: ten frames of text, answers and event timings."""
    frames = {}
    for i in range(10):
        frames[f"{i}-frame"] = {
            "frameType": "CONSENT" if i == 0 else "DEFAULT",
            "text": "lorem ipsum " * 120,
            "answer": i, "selected": ["a", "b"],
            "eventTimings": [{"eventType": f"exp:event{j}", "timestamp": "2026-01-01T00:00:00Z",
                              "streamTime": j * 1.5} for j in range(6)]}
    return json.dumps(frames)


def download(port, token, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t = time.monotonic()
    conn.request("GET", path, headers={"Authorization": token})
    r = conn.getresponse()
    n = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        n += len(b)
    conn.close()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status}")
    return n, time.monotonic() - t


def timed_rows(srv, token, path, rounds):
    """Best of rounds: (seconds, data rows, the server's CPU seconds per
    download) of one download."""
    best, rows, port = None, 0, srv.port
    c0 = cpu_s([srv.proc.pid])
    for _ in range(rounds):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        t = time.monotonic()
        conn.request("GET", path, headers={"Authorization": token})
        r = conn.getresponse()
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status} {r.read(200)!r}")
        rows, last = -1, b""    # -1: the header line
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            # The previous chunk's last byte: a CRLF may straddle the edge.
            rows += (last + chunk).count(b"\r\n")
            last = chunk[-1:]
        dt = time.monotonic() - t
        conn.close()
        best = dt if best is None else min(best, dt)
    return best, rows, (cpu_s([srv.proc.pid]) - c0) / rounds


def small_csvs(srv, admin, S, rounds):
    """The summary, children and demographics files: rows per second, and
    against BENCH_EXPORT_BASELINE_BIN on the same database when given."""
    base_bin = os.environ.get("BENCH_EXPORT_BASELINE_BIN")
    files = ("summary.csv", "children.csv", "demographics.csv") + (
        ("frames.csv",) if base_bin else ())
    base = None
    if base_bin:
        saved = harness.STUDYHUB_BIN
        harness.STUDYHUB_BIN = base_bin
        try:
            base = Server(database=srv.database, name="bench-exports-baseline")
            base.start()
        finally:
            harness.STUDYHUB_BIN = saved
    try:
        for f in files:
            path = f"/api/v1/researcher/studies/{S}/exports/{f}"
            # Taking turns, so that both see the same machine.
            dt, rows, cpu = timed_rows(srv, admin["token"], path, rounds)
            line = (f"{f}: {rows} rows in {dt:.2f} s = {rows / dt:.0f} rows/s"
                    f" (server CPU {cpu:.2f} s)")
            if base:
                bdt, brows, bcpu = timed_rows(base, admin["token"], path, rounds)
                line += (f"; baseline binary {brows} rows in {bdt:.2f} s ="
                         f" {brows / bdt:.0f} rows/s (server CPU {bcpu:.2f} s);"
                         f" speed this/baseline = {bdt / dt:.2f}x,"
                         f" server CPU this/baseline = "
                         + (f"{cpu / bcpu:.2f}x" if bcpu > 0 else "-"))
            print(line)
    finally:
        if base:
            base.stop()


def main():
    db = create_database()
    if os.environ.get("BENCH_EXPORT_LOG_SQL"):
        # every statement's duration in the cluster's log (KEEP_BENCH_DIR=1)
        psql(f'ALTER DATABASE "{db}" SET log_min_duration_statement = 0', db=db)
    srv = Server(database=db, name="bench-exports")
    try:
        srv.start()
        w = World(srv)
        lab = w.lab("bench")
        admin = w.user("admin", researcher=True)
        w.member(lab, admin, "admin")
        study = w.study(lab, "Bench")
        parent = w.user("parent")
        child = w.child(parent)
        # More children (and families) by SQL, copies of the first.
        nchildren = int(os.environ.get("BENCH_EXPORT_CHILDREN", "200"))
        psql("INSERT INTO children (user_id, given_name, birthday, gender)"
             f" SELECT user_id, given_name || g, birthday, gender FROM children, "
             f" generate_series(2, {nchildren}) g WHERE id = {child['id']}", db=db)
        ids = psql(f"SELECT string_agg(id::text, ',') FROM children"
                   f" WHERE user_id = {parent['id']}", db=db).strip()
        body = exp_data().replace("'", "''")
        t = time.monotonic()
        for start in range(0, N, 5000):
            n = min(5000, N - start)
            psql(f"INSERT INTO responses (study_id, child_id, exp_data, sequence)"
                 f" SELECT {study['id']}, (ARRAY[{ids}])[1 + g % {nchildren}], '{body}', '[]'"
                 f" FROM generate_series({start + 1}, {start + n}) g", db=db)
        psql("INSERT INTO consent_rulings (response_id, action) SELECT id, 'accepted'"
             f" FROM responses WHERE study_id = {study['id']}", db=db)
        psql("VACUUM ANALYZE responses", db=db)
        print(f"{N} responses of {len(body) / 1024:.1f} KB exp_data made in"
              f" {time.monotonic() - t:.0f} s")
        total = int(psql("SELECT sum(octet_length(exp_data::text)) FROM responses"
                         f" WHERE study_id = {study['id']}", db=db).strip())

        # Best of ROUNDS on both sides: the floor (psql, a C client) and each
        # export fetched by curl (a C client too) to /dev/null.
        rounds = int(os.environ.get("BENCH_EXPORT_ROUNDS", "3"))
        floors = []
        for _ in range(rounds):
            t = time.monotonic()
            psql(f"\\copy (SELECT exp_data FROM responses WHERE study_id = {study['id']})"
                 " TO '/dev/null'", db=db)
            floors.append(time.monotonic() - t)
        floor = min(floors)
        floor_rate = total / floor / 1e6
        print(f"floor: psql \\copy of exp_data: {total / 1e6:.0f} MB in {floor:.2f} s"
              f" = {floor_rate:.1f} MB/s (best of {rounds}:"
              f" {', '.join(f'{x:.2f}' for x in floors)} s)")
        # The per-row SQL helpers, for reading the numbers below.
        for what, q in (("hashed_id", "SELECT count(hashed_id(gen_random_uuid(),"
                         " gen_random_uuid(), gen_random_uuid(), 6)) FROM generate_series(1, 10000)"),
                        ("consent_status", "SELECT count(consent_status(id)) FROM responses"
                         " LIMIT 10000")):
            t = time.monotonic()
            psql(q, db=db)
            print(f"{what}: {(time.monotonic() - t) / 10000 * 1e6:.0f} us per row")
        rss0 = mem_kb(srv.proc.pid, "VmRSS")
        S = study["uuid"]
        perf_dir = os.environ.get("BENCH_EXPORT_PERF")
        for f in ("responses.json", "frames.csv"):
            perf = None
            if perf_dir:
                os.makedirs(perf_dir, exist_ok=True)
                pids = [str(srv.proc.pid)] + pg_pids()
                perf = subprocess.Popen(["perf", "record", "-q", "-p", ",".join(pids)]
                                        + os.environ.get("BENCH_EXPORT_PERF_ARGS", "-g").split() + [
                                         "-o", os.path.join(perf_dir, f + ".data")])
                time.sleep(1)
            pids = pg_pids()
            c0, p0, r0 = cpu_s([srv.proc.pid]), cpu_s(pids), cpu_s([os.getpid()])
            n, dt = download(srv.port, admin["token"],
                             f"/api/v1/researcher/studies/{S}/exports/{f}")
            cpu = (cpu_s([srv.proc.pid]) - c0, cpu_s(pids) - p0, cpu_s([os.getpid()]) - r0)
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait()
            if shutil.which("curl") and os.environ.get("BENCH_EXPORT_CURL", "1") != "0":
                times = []
                for _ in range(rounds):
                    t = time.monotonic()
                    subprocess.run(["curl", "-s", "-o", "/dev/null", "-H",
                                    f"Authorization: {admin['token']}",
                                    f"http://127.0.0.1:{srv.port}/api/v1/researcher/studies/{S}"
                                    f"/exports/{f}"], check=True)
                    times.append(time.monotonic() - t)
                best = min(times)
                print(f"{f} with curl: best {best:.2f} s of {', '.join(f'{x:.2f}' for x in times)}"
                      f" s: exp_data covered at {total / best / 1e6:.1f} MB/s ="
                      f" {total / best / 1e6 / floor_rate:.2f}x the floor")
            rate = n / dt / 1e6
            print(f"{f}: {n / 1e6:.0f} MB in {dt:.2f} s = {rate:.1f} MB/s;"
                  f" exp_data covered at {total / dt / 1e6:.1f} MB/s ="
                  f" {total / dt / 1e6 / floor_rate:.2f}x the floor with this Python client;"
                  f" CPU: server {cpu[0]:.2f} s, PostgreSQL {cpu[1]:.2f} s,"
                  f" this client {cpu[2]:.2f} s")
        print(f"server RSS before {rss0 / 1024:.1f} MB, peak (VmHWM)"
              f" {mem_kb(srv.proc.pid, 'VmHWM') / 1024:.1f} MB")
        small_csvs(srv, admin, S, rounds)

    finally:
        srv.stop()
        drop_database(db)


if __name__ == "__main__":
    main()
