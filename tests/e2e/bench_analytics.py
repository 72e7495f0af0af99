#!/usr/bin/env python3
"""bench_analytics: the analytics endpoints (issue 18) on a study of
BENCH_ANALYTICS_RESPONSES responses (default 100000); tools/bench with
BENCH_ANALYTICS=1 runs it against its own PostgreSQL and Redis, as
bench_pages.py does.

The study's responses come from 50,000 children of 40,000 families (ages
spread over five years, four genders, demographics with five countries
and race answers), 70% consented, 10% rejected, 10% pending, 10% preview,
over 365 days.  Each endpoint is asked BENCH_ANALYTICS_REQUESTS times
(default 200) in sequence after a warm-up; p50 / p99 / max, and p99 as a
ratio of the 100 ms target (under 1.00 passes):

  study charts   over-time, ages, genders, demographics (country, race),
                 rates, and over-time as CSV
  lab charts     over-time and rates across the lab's two studies
  participants   the first page of the lab's participant browser

Charts are cached until a counted row of their studies changes (sql/107):
the repeated requests above are answered from that cache; each chart is
then asked 20 times cold (the cache emptied first), the time of the first
request after a change, reported without a target.

The hash check (every child's hashed id, computed on demand) is timed too,
a few times, without a target: it is a check a researcher runs, not a
page's list."""

import http.client
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from apifixtures import World  # noqa: E402
from harness import Server, create_database, drop_database, psql  # noqa: E402

N = int(os.environ.get("BENCH_ANALYTICS_RESPONSES", "100000"))
REQUESTS = int(os.environ.get("BENCH_ANALYTICS_REQUESTS", "200"))
TARGET_MS = 100.0


def timed(conn, token, path):
    t = time.monotonic()
    conn.request("GET", path, headers={"Authorization": token,
                                       "Accept": "application/vnd.api+json"})
    r = conn.getresponse()
    body = r.read()
    dt = time.monotonic() - t
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:300]!r}")
    return dt


def measure(conn, token, path, n):
    for _ in range(5):                                  # warm the caches and plans
        timed(conn, token, path)
    times = sorted(timed(conn, token, path) * 1000 for _ in range(n))
    return (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))],
            times[-1])


def main():
    db = create_database()
    srv = Server(database=db, name="bench-analytics")
    failed = []
    try:
        srv.start()
        w = World(srv)
        lab = w.lab("bench")
        admin = w.user("admin", researcher=True)
        w.member(lab, admin, "admin")
        study = w.study(lab, "Bench")
        w.study(lab, "Bench two")
        t = time.monotonic()
        fams, kids = max(1, N * 2 // 5), max(1, N // 2)
        psql(f"INSERT INTO users (email, given_name) SELECT 'p' || g || '@bench.test', 'p'"
             f" FROM generate_series(1, {fams}) g", db=db)
        psql("INSERT INTO demographic_data (user_id, country, us_race_ethnicity_identification)"
             " SELECT id, (ARRAY['US','CA','MX','BR',''])[1 + id % 5],"
             " CASE WHEN id % 3 = 0 THEN ARRAY['white'] WHEN id % 3 = 1 THEN ARRAY['asian','black']"
             " ELSE '{}'::text[] END FROM users WHERE email LIKE '%@bench.test'", db=db)
        psql("INSERT INTO children (user_id, given_name, birthday, gender)"
             " SELECT u.id, 'c', current_date - 30 - (g * 7919) % 1800,"
             " (ARRAY['f','m','o','na'])[1 + g % 4]"
             f" FROM generate_series(1, {kids}) g"
             f" JOIN users u ON u.email = 'p' || (1 + g % {fams}) || '@bench.test'", db=db)
        # children's ids are consecutive (one statement): the g-th response
        # is of child (first + g % kids)
        first = psql("SELECT min(c.id) FROM children c JOIN users u ON u.id = c.user_id"
                     " WHERE u.email LIKE '%@bench.test'", db=db).strip()
        for lo in range(0, N, 10000):      # batches: each row runs two triggers
            psql("INSERT INTO responses (study_id, child_id, exp_data, sequence, completed,"
                 " completed_consent_frame, is_preview, date_created, demographic_snapshot_id)"
                 f" SELECT {study['id']}, c.id, '{{}}', '[]', g % 3 <> 0, true, g % 10 = 9,"
                 " now() - ((g % 365) || ' days')::interval, d.id"
                 f" FROM generate_series({lo + 1}, {min(N, lo + 10000)}) g"
                 f" JOIN children c ON c.id = {first} + g % {kids}"
                 " JOIN demographic_data d ON d.user_id = c.user_id", db=db)
        ids = psql(f"SELECT min(id), max(id) FROM responses WHERE study_id = {study['id']}",
                   db=db).strip().split("|")
        for lo in range(int(ids[0]), int(ids[1]) + 1, 10000):
            psql("INSERT INTO consent_rulings (response_id, action)"
                 " SELECT id, CASE WHEN id % 10 < 7 THEN 'accepted' ELSE 'rejected' END"
                 f" FROM responses WHERE study_id = {study['id']} AND NOT is_preview"
                 f" AND id % 10 < 8 AND id >= {lo} AND id < {lo + 10000}", db=db)
        psql("VACUUM ANALYZE", db=db)
        print(f"{N} responses of {kids} children, {fams} families made in"
              f" {time.monotonic() - t:.0f} s")
        S, L = study["uuid"], lab["uuid"]
        base = f"/api/v1/researcher/studies/{S}/analytics/"
        lbase = f"/api/v1/researcher/labs/{L}/analytics/"
        lists = [
            ("study over-time", base + "over-time"),
            ("study ages", base + "ages"),
            ("study genders", base + "genders"),
            ("study demog. country", base + "demographics?field=country"),
            ("study demog. race", base + "demographics?field=race_ethnicity"),
            ("study rates", base + "rates"),
            ("study over-time CSV", base + "over-time?format=csv"),
            ("lab over-time", lbase + "over-time"),
            ("lab rates", lbase + "rates"),
            ("participants page 1", f"/api/v1/researcher/labs/{L}/participants/?page_size=10"),
        ]
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        print(f"{'endpoint':22s} {'p50':>9s} {'p99':>9s} {'max':>9s}  p99/target")
        for what, path in lists:
            p50, p99, mx = measure(conn, admin["token"], path, REQUESTS)
            ratio = p99 / TARGET_MS
            if ratio >= 1:
                failed.append(what)
            print(f"{what:22s} {p50:6.1f} ms {p99:6.1f} ms {mx:6.1f} ms  {ratio:5.2f}"
                  f"  {'ok' if ratio < 1 else 'OVER'}")
        # Cold: each request after the charts' cache is emptied (the first
        # request after a change to the study), no target.
        print("cold (cache emptied before each request; no target):")
        for what, path in lists:
            times = []
            for _ in range(20):
                psql("DELETE FROM analytics_cache", db=db)
                times.append(timed(conn, admin["token"], path) * 1000)
            times.sort()
            print(f"{what:22s} {times[10]:6.1f} ms {times[-1]:6.1f} ms (p50, max of 20)")
        p50, p99, mx = measure(conn, admin["token"], f"/api/v1/researcher/studies/{S}/hash-check/", 3)
        print(f"{'hash check (no target)':22s} {p50:6.1f} ms {p99:6.1f} ms {mx:6.1f} ms")
        conn.close()
    finally:
        srv.stop()
        drop_database(db)
    if failed:
        raise SystemExit("over the target: " + ", ".join(failed))


if __name__ == "__main__":
    main()
