#!/usr/bin/env python3
"""bench_pages: the first page of the lists behind the researcher pages on
a large study (issue 16, point 8; tools/bench with BENCH_PAGES=1 runs it
against its own PostgreSQL and Redis, the services described as for the
end-to-end tests, see harness.py).

One study of BENCH_PAGE_RESPONSES responses (default 20000), each with a
consent video and a session video (so as many videos again and more), half
of them consented; BENCH_PAGE_STUDIES other studies in the lab (default
2000).  Then BENCH_PAGE_REQUESTS (default 300) sequential requests of the
first page of each list, as the pages ask for it, and the p50 / p99 / max
answer times:

  responses list      /api/v1/researcher/studies/{id}/responses/?page_size=20
  consent manager     /api/v1/researcher/studies/{id}/consent/?state=pending&page_size=10
  study list          /api/v1/researcher/studies/?page_size=20
  study list, search  /api/v1/researcher/studies/?search=bench&page_size=20
  review queue        /api/v1/researcher/studies/?state=submitted&sort=oldest&page_size=20

The target is 50 ms at p99 for each.

Then (unless BENCH_PAGE_EXPLAIN=0) each list is asked once more of a
second server whose database connections load auto_explain, and the plans
PostgreSQL ran (nested statements included: the lists' SQL functions) are
printed from the cluster's log (TEST_PG_SOCKDIR/postgresql.log)."""

import http.client
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from apifixtures import World  # noqa: E402
from harness import Server, create_database, drop_database, psql  # noqa: E402

N = int(os.environ.get("BENCH_PAGE_RESPONSES", "20000"))
STUDIES = int(os.environ.get("BENCH_PAGE_STUDIES", "2000"))
REQUESTS = int(os.environ.get("BENCH_PAGE_REQUESTS", "300"))
TARGET_MS = 50.0


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


def explain(db, lists, admin):
    """The plans of one request of each list, through auto_explain (its
    level warning: the bench cluster logs from warning up)."""
    log = os.path.join(os.environ.get("TEST_PG_SOCKDIR", ""), "postgresql.log")
    if not os.path.exists(log):
        print(f"(no plans: {log} is not there)")
        return
    for k, v in (("session_preload_libraries", "auto_explain"),
                 ("auto_explain.log_min_duration", "0"), ("auto_explain.log_analyze", "on"),
                 ("auto_explain.log_nested_statements", "on"),
                 ("auto_explain.log_level", "warning")):
        psql(f'ALTER DATABASE "{db}" SET {k} = {v!r}', db=db)
    srv = Server(database=db, name="bench-pages-explain")
    try:
        srv.start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        timed(conn, admin["token"], lists[0][1])          # the pool's first statements
        for what, path in lists:
            with open(log, "rb") as f:
                f.seek(0, 2)
                start = f.tell()
            timed(conn, admin["token"], path)
            time.sleep(0.5)
            with open(log, "rb") as f:
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
            print(f"\n=== plans of the {what} ({path})")
            # One record per statement; the lists' own (not the many small
            # helper functions each item calls).
            records = re.split(r"\n(?=\S.*WARNING:  duration: )", text)
            for rec in records:
                if not re.search(r"response_consent|WITH me AS|SELECT \* FROM "
                                 r"(consent_list|research_response_list)\(", rec):
                    continue
                for line in rec.splitlines():
                    if re.search(r"duration: |->|Scan|Join|Sort|Limit|Index Cond|Filter|Rows Removed"
                                 r"|Query Text|Aggregate|SubPlan|InitPlan|CTE|WindowAgg", line):
                        print(line[:200])
        conn.close()
    finally:
        srv.stop()
        for k in ("session_preload_libraries", "auto_explain.log_min_duration",
                  "auto_explain.log_analyze", "auto_explain.log_nested_statements",
                  "auto_explain.log_level"):
            psql(f'ALTER DATABASE "{db}" RESET {k}', db=db, check=False)


def main():
    db = create_database()
    srv = Server(database=db, name="bench-pages")
    failed = []
    try:
        srv.start()
        w = World(srv)
        lab = w.lab("bench")
        admin = w.user("admin", researcher=True)
        w.member(lab, admin, "admin")
        study = w.study(lab, "Bench")
        t = time.monotonic()
        psql("INSERT INTO studies (name, lab_id, state, structure)"
             f" SELECT 'bench study ' || g, {lab['id']},"
             " (ARRAY['created','submitted','approved','active'])[1 + g % 4], '{}'"
             f" FROM generate_series(1, {STUDIES}) g", db=db)
        # One child per family, a family per response: the list joins them.
        psql(f"INSERT INTO users (email, given_name) SELECT 'p' || g || '@bench.test', 'p'"
             f" FROM generate_series(1, {N}) g", db=db)
        psql("INSERT INTO children (user_id, given_name, birthday, gender)"
             " SELECT id, 'c', current_date - 400, 'f' FROM users WHERE email LIKE '%@bench.test'",
             db=db)
        psql("INSERT INTO responses (study_id, child_id, exp_data, sequence, completed,"
             " completed_consent_frame)"
             f" SELECT {study['id']}, c.id, '{{}}', '[]', true, true FROM children c"
             " JOIN users u ON u.id = c.user_id WHERE u.email LIKE '%@bench.test'", db=db)
        psql("INSERT INTO videos (study_id, response_id, frame_id, full_name, is_consent_footage)"
             " SELECT r.study_id, r.id, '0-video-consent', k || 'videoStream_' || r.uuid, k = 'consent-'"
             f" FROM responses r, (VALUES ('consent-'), ('')) v(k) WHERE r.study_id = {study['id']}",
             db=db)
        psql("INSERT INTO consent_rulings (response_id, action) SELECT id, 'accepted'"
             f" FROM responses WHERE study_id = {study['id']} AND id % 2 = 0", db=db)
        psql("VACUUM ANALYZE", db=db)
        print(f"{N} responses, {2 * N} videos, {STUDIES + 1} studies made in"
              f" {time.monotonic() - t:.0f} s")
        S = study["uuid"]
        lists = [
            ("responses list", f"/api/v1/researcher/studies/{S}/responses/?page_size=20"),
            ("consent manager", f"/api/v1/researcher/studies/{S}/consent/?state=pending&page_size=10"),
            ("study list", "/api/v1/researcher/studies/?page_size=20"),
            ("study list, search", "/api/v1/researcher/studies/?search=bench&page_size=20"),
            ("review queue", "/api/v1/researcher/studies/?state=submitted&sort=oldest&page_size=20"),
        ]
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        for what, path in lists:
            for _ in range(10):                        # warm the caches and plans
                timed(conn, admin["token"], path)
            times = sorted(timed(conn, admin["token"], path) * 1000 for _ in range(REQUESTS))
            p50 = times[len(times) // 2]
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            ok = p99 < TARGET_MS
            if not ok:
                failed.append(what)
            print(f"{what:20s} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {times[-1]:6.1f} ms"
                  f"  {'ok' if ok else 'OVER ' + str(TARGET_MS) + ' ms'}")
        conn.close()
        if os.environ.get("BENCH_PAGE_EXPLAIN", "1") != "0":
            explain(db, lists, admin)
    finally:
        srv.stop()
        drop_database(db)
    if failed:
        raise SystemExit("over the target: " + ", ".join(failed))


if __name__ == "__main__":
    main()
