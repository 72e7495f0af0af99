"""test_foundation: the skeleton's promises, against a real server,
PostgreSQL and Redis (issue 3): health and readiness, Redis going away and
coming back, metrics, the HTTP parser on split and long request lines,
configuration errors, concurrent migrations, graceful drain on SIGTERM, the
admin socket, and the body size limit."""

import glob
import json
import os
import re
import signal
import socket
import stat
import threading
import time
import unittest

from harness import (REPO_ROOT, SLOW, Server, StudyhubTestCase, ctl, new_dir,
                     parse_raw_response, psql, raw_request, request, run_server_once,
                     wait_until)


class TestBasics(StudyhubTestCase):
    """Routes of a healthy server with the shared PostgreSQL and Redis."""

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()

    def test_healthz(self):
        r = self.srv.get("/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"status": "ok"})
        self.assertTrue(r.headers.get("x-request-id"), f"no X-Request-Id in {r.headers}")

    def test_request_ids_differ(self):
        a = self.srv.get("/healthz").headers.get("x-request-id")
        b = self.srv.get("/healthz").headers.get("x-request-id")
        self.assertTrue(a and b)
        self.assertNotEqual(a, b)

    def test_unknown_route_is_jsonapi_404(self):
        r = self.srv.get("/no/such/route")
        self.assertStatus(r, 404)
        self.assertTrue(r.headers.get("x-request-id"))
        self.assertIsInstance(r.json, dict, f"not JSON: {r.body[:300]!r}")
        errors = r.json.get("errors")
        self.assertIsInstance(errors, list)
        self.assertGreaterEqual(len(errors), 1)
        self.assertEqual(str(errors[0].get("status")), "404")

    def test_readyz(self):
        # Redis connects asynchronously after start: give it a moment.
        r = wait_until(lambda: (lambda r: r if r.status == 200 else None)(self.srv.get("/readyz")),
                       5 * SLOW, message="/readyz 200")
        self.assertIsInstance(r.json, dict)

    def test_metrics(self):
        self.srv.get("/healthz")
        r = self.srv.get("/metrics")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"),
                        r.headers.get("content-type"))
        text = r.text
        self.assertIn("studyhub_http_requests_total", text)
        self.assertRegex(text, r"(?m)^# TYPE studyhub_http_requests_total counter")
        self.assertRegex(text, r'(?m)^studyhub_http_requests_total\{[^}]*\} \d+')
        for gauge in ("studyhub_pg_pool_in_use", "studyhub_pg_pool_waiting"):
            self.assertRegex(text, rf"(?m)^{gauge}(\{{[^}}]*\}})? \d+", f"no {gauge}")
        self.assertRegex(text, r"(?m)^studyhub_redis_connected(\{[^}]*\})? [01]")

    def test_split_request_line(self):
        # The request line arrives in two TCP segments 0.2 s apart; the
        # router must see the whole path (libevhtp lost the second half).
        path = "/debug/echo/" + "segment-one/" * 5 + "segment-two/" * 5 + "end"
        line = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        cut = len("GET ") + len(path) // 2
        status, headers, body = parse_raw_response(
            raw_request(self.srv.port, [line[:cut], line[cut:]], pause=0.2))
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(json.loads(body)["path"], path)

    def test_split_headers(self):
        path = "/debug/echo/headers-split"
        req = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        cut = req.index(b"Host") + 3
        status, _, body = parse_raw_response(raw_request(self.srv.port, [req[:cut], req[cut:]]))
        self.assertEqual(status, 200, body[:300])

    def test_long_path(self):
        # 6,000 bytes of path (libevhtp cut it to 4,092).
        path = "/debug/echo/" + "".join(f"{i:05d}/" for i in range(1000))[: 6000 - len("/debug/echo/")]
        self.assertEqual(len(path), 6000)
        r = self.srv.get(path)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["path"], path)

    def test_long_path_split(self):
        path = "/debug/echo/" + "x" * 5000
        line = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        pieces = [line[i:i + 1400] for i in range(0, len(line), 1400)]
        status, _, body = parse_raw_response(raw_request(self.srv.port, pieces, pause=0.05))
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(json.loads(body)["path"], path)

    def test_echo_decodes_path(self):
        r = self.srv.get("/debug/echo/a%20b%2Fc")
        self.assertStatus(r, 200)
        self.assertIn("a b", r.json["path"])


class TestRedisOutage(StudyhubTestCase):
    """Redis goes away: /readyz says so; Redis comes back: ready again,
    without restarting the server."""

    def test_readyz_follows_redis(self):
        redis = self.redis()
        srv = self.server(redis_url=redis.url)

        def status_is(code):
            r = srv.get("/readyz", timeout=5)
            return r if r.status == code else None

        wait_until(lambda: status_is(200), 5 * SLOW, message="/readyz 200 at start")

        redis.stop()  # SIGKILL: as if the machine under it vanished
        t0 = time.monotonic()
        r = wait_until(lambda: status_is(503), 5 * SLOW, message="/readyz 503 after Redis died")
        self.assertIsInstance(r.json, dict, r.body)
        self.assertIn("redis", r.json.get("down", []), r.json)
        self.assertNotIn("postgres", " ".join(map(str, r.json.get("down", []))), r.json)
        down_after = time.monotonic() - t0

        redis.start()  # same port
        t1 = time.monotonic()
        wait_until(lambda: status_is(200), 6 * SLOW, message="/readyz 200 after Redis returned")
        back_after = time.monotonic() - t1
        self.assertTrue(srv.running())
        print(f"[noticed Redis down in {down_after:.1f} s, ready again {back_after:.1f} s"
              f" after it returned] ", end="", flush=True)


class TestConfig(StudyhubTestCase):
    """A bad value stops the server at start: exit 2, the variable named."""

    def check_bad(self, var, value):
        code, out, err = run_server_once({var: value, "DATABASE_URL":
                                          "host=127.0.0.1 port=1 dbname=x user=x"})
        self.assertEqual(code, 2, f"{var}={value!r}: exit {code}; stderr:\n{err[-2000:]}")
        self.assertIn(var, err + out, f"{var} not named in:\n{err[-2000:]}")

    def test_listen_port_not_a_number(self):
        self.check_bad("LISTEN_PORT", "abc")

    def test_pool_size_zero(self):
        self.check_bad("PG_POOL_SIZE", "0")

    def test_listen_port_out_of_range(self):
        self.check_bad("LISTEN_PORT", "70000")

    def test_drain_timeout_negative(self):
        self.check_bad("DRAIN_TIMEOUT_S", "-1")


def migration_versions():
    """Versions of the migrations in sql/ (compiled into the binary)."""
    out = []
    for path in glob.glob(os.path.join(REPO_ROOT, "sql", "*.sql")):
        m = re.match(r"(\d+)_", os.path.basename(path))
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


class TestMigrations(StudyhubTestCase):

    def test_two_servers_migrate_once(self):
        db = self.database()
        a = Server(database=db, name="migrate-a")
        b = Server(database=db, name="migrate-b")
        self.addCleanup(a.stop)
        self.addCleanup(b.stop)
        a.spawn()
        b.spawn()  # the same moment, the same empty database
        a.wait_ready()
        b.wait_ready()
        rows = psql("SELECT version, count(*) FROM schema_migrations GROUP BY version"
                    " ORDER BY version", db=db).split()
        counts = {int(v): int(c) for v, c in (row.split("|") for row in rows)}
        self.assertTrue(counts, "schema_migrations is empty")
        for version, n in counts.items():
            self.assertEqual(n, 1, f"migration {version} recorded {n} times")
        expected = migration_versions()
        if expected:
            self.assertEqual(sorted(counts), expected)
        names = psql("SELECT count(*) FROM schema_migrations WHERE name IS NULL"
                     " OR applied_at IS NULL", db=db).strip()
        self.assertEqual(names, "0")
        for srv in (a, b):
            self.assertStatus(srv.get("/healthz"), 200)
            wait_until(lambda: srv.get("/readyz").status == 200, 5 * SLOW,
                       message="/readyz 200 on both")

    def test_restart_applies_nothing_new(self):
        db = self.database()
        srv = self.server(database=db)
        before = psql("SELECT version, applied_at FROM schema_migrations ORDER BY 1", db=db)
        srv.stop()
        srv.start()
        after = psql("SELECT version, applied_at FROM schema_migrations ORDER BY 1", db=db)
        self.assertEqual(before, after)


class TestDrain(StudyhubTestCase):

    def test_sigterm_lets_slow_request_finish(self):
        srv = self.server()
        result = {}

        def slow():
            try:
                result["resp"] = srv.get("/debug/sleep?ms=1500", timeout=15 * SLOW)
            except Exception as exc:  # reported by the main thread
                result["exc"] = exc

        t = threading.Thread(target=slow)
        t0 = time.monotonic()
        t.start()
        # Make sure the request has reached the server before SIGTERM.
        time.sleep(0.3 * SLOW)
        srv.signal(signal.SIGTERM)
        time.sleep(0.3)

        # No new connections once draining has begun.
        if srv.running():
            with self.assertRaises(OSError, msg="a new connection was accepted after SIGTERM"):
                c = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
                try:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if not c.recv(100):
                        raise ConnectionResetError("closed without an answer")
                finally:
                    c.close()

        t.join(20 * SLOW)
        self.assertFalse(t.is_alive(), "the slow request never finished")
        self.assertNotIn("exc", result, f"slow request failed: {result.get('exc')!r}")
        self.assertStatus(result["resp"], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 1.4)
        code = srv.wait(15 * SLOW)
        self.assertEqual(code, 0, srv.log_tail())
        srv.check(0)

    def test_sigint_exits_zero(self):
        srv = self.server()
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait(15 * SLOW), 0, srv.log_tail())
        srv.check(0)


class TestAdmin(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server()

    def test_status(self):
        p = self.srv.ctl("status")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        fields = {}
        for line in p.stdout.splitlines():
            k, sep, v = line.partition(":")
            if sep:
                fields[k.strip()] = v.strip()
        self.assertIn("version", fields, p.stdout)
        uptime = [k for k in fields if k == "uptime" or k.startswith("uptime_")]
        self.assertTrue(uptime, f"no uptime line in:\n{p.stdout}")
        self.assertTrue(fields["version"])
        self.assertRegex(fields[uptime[0]], r"^\d")

    def test_socket_mode(self):
        self.assertTrue(stat.S_ISSOCK(os.stat(self.srv.admin_socket).st_mode))
        self.assertFileMode(self.srv.admin_socket, 0o600)

    def test_ctl_without_server(self):
        p = ctl("status", admin_socket=os.path.join(new_dir("nosrv"), "none.sock"))
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip(), "no error message")


class TestLimits(StudyhubTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = cls.class_server(env={"MAX_BODY_BYTES": "1024"})

    def test_oversized_body_is_413(self):
        r = self.srv.post("/debug/echo/x", body=b"x" * 5000,
                          headers={"Content-Type": "application/octet-stream"})
        self.assertStatus(r, 413)

    def test_server_survives_oversized_body(self):
        try:
            request(self.srv.port, "POST", "/healthz", body=b"y" * 20000)
        except OSError:
            pass  # the server may close before reading it all
        self.assertStatus(self.srv.get("/healthz"), 200)


if __name__ == "__main__":
    unittest.main()
