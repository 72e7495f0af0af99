"""Faults, short form: a stalled PostgreSQL, the descriptor limit, and a
bad command line.  Each drives the real server into the fault and asserts
that requests end quickly, the log stays JSON, and the server recovers by
itself.  (Long runs under load belong in tools/bench.)"""

import json
import os
import re
import resource
import signal
import socket
import struct
import threading
import time

import harness
from apifixtures import World

# tools/bench (BENCH_FAULTS=1) runs this suite at FAULT_SCALE 10: more
# writers, longer stalls, more slow clients.  tools/test runs it at 1.
SCALE = max(1, int(os.environ.get("FAULT_SCALE", "1")))
from harness import StudyhubTestCase, request


class FreezableProxy:
    """A TCP forwarder to 127.0.0.1:upstream that can be frozen: while
    frozen it accepts and reads nothing more and forwards nothing, which
    is what a client sees of a PostgreSQL stopped with SIGSTOP (or a dead
    path that keepalives have not noticed yet)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closing.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        src.settimeout(0.1)
        while not self.closing.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset(self):
        """Every connection through it dies at once, as when PostgreSQL is
        killed with SIGKILL (the client sees a reset)."""
        conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def close(self):
        self.closing.set()
        self.thread.join(2)
        for s in self.conns + [self.sock]:
            s.close()


def figures(what, **numbers):
    """One line of a fault test's figures, for the log of the run (and for
    tools/bench's long form)."""
    print(f"\n  {what}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in numbers.items()),
          end=" ", flush=True)


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


class StalledPostgres(StudyhubTestCase):
    def test_stalled_queries_are_cut_and_then_fail_fast(self):
        db = self.database()
        proxy = FreezableProxy(harness.PG_PORT)
        self.addCleanup(proxy.close)
        url = harness.database_url(db).replace(f"port={harness.PG_PORT}",
                                               f"port={proxy.port}")
        srv = self.server(database=db, env={
            "DATABASE_URL": url, "PG_QUERY_TIMEOUT_MS": "800",
            "PG_ACQUIRE_TIMEOUT_MS": "800", "TASK_CONCURRENCY": "0"})
        harness.wait_until(lambda: srv.get("/readyz").status == 200, 10,
                           message="/readyz 200 through the proxy")
        # A new token nobody has each time: its lookup is a query on the
        # pool (a token already looked up may be answered from the cache).
        def bogus():
            return {"Authorization": "Token " + os.urandom(20).hex()}
        self.assertStatus(srv.get("/api/v1/users/", headers=bogus()), 401)

        proxy.frozen.set()
        time.sleep(0.3)   # pumps inside a recv() finish it first
        # In flight on a session when PostgreSQL stalls: cut at 0.8 s + 1 s,
        # not held until the stall ends.
        resp, took = timed(lambda: srv.get("/api/v1/users/", headers=bogus(),
                                           timeout=15))
        self.assertStatus(resp, 503)
        # Cut at its deadline (0.8 s + 1 s) on a session, or, when the
        # background work's stalled queries hold every session, at the
        # acquire timeout (0.8 s): either way not held for the stall.
        self.assertLess(took, 4.0 * harness.SLOW, "a stalled query was not cut")
        stalled_took = took
        harness.wait_until(
            lambda: re.search(r"studyhub_pg_query_timeouts_total [1-9]", srv.get("/metrics").text),
            5 * harness.SLOW, message="the stalled sessions' queries cut at their deadline")

        # Known down (no session up for a whole acquire timeout): at once.
        harness.wait_until(lambda: re.search(r"(?m)^studyhub_pg_known_down 1$",
                                             srv.get("/metrics").text),
                           5 * harness.SLOW, message="PostgreSQL known down")
        resp, took = timed(lambda: srv.get("/api/v1/users/", headers=bogus(),
                                           timeout=15))
        self.assertStatus(resp, 503)
        self.assertLess(took, 0.5 * harness.SLOW, "known-down did not fail fast")
        figures("PostgreSQL stalled", stalled_request_s=f"{stalled_took:.2f}",
                known_down_request_s=f"{took:.3f}")
        metrics = srv.get("/metrics").text
        self.assertRegex(metrics, r"studyhub_pg_query_timeouts_total [1-9]")
        self.assertRegex(metrics, r"studyhub_pg_failed_fast_total [1-9]")
        self.assertRegex(metrics, r"(?m)^studyhub_pg_known_down 1$")

        # The stall ends: a reconnect closes the circuit by itself.
        proxy.frozen.clear()
        harness.wait_until(lambda: srv.get("/readyz").status == 200, 15,
                           message="/readyz back to 200 after the stall")
        self.assertStatus(srv.get("/api/v1/users/", headers=bogus()), 401)
        self.assertRegex(srv.get("/metrics").text, r"(?m)^studyhub_pg_known_down 0$")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DescriptorLimit(StudyhubTestCase):
    LIMIT = 96

    def test_at_the_fd_limit_it_refuses_backs_off_and_recovers(self):
        limit = self.LIMIT

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        srv = self.server(preexec=low_limit, env={"TASK_CONCURRENCY": "0"})
        self.assertIn(f"studyhub_max_fds {limit}", srv.get("/metrics").text)
        log_before = len(srv.log_text())
        clients = []
        try:
            for _ in range(limit + 60):
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(("127.0.0.1", srv.port))
                except OSError:
                    s.close()
                    continue
                clients.append(s)
            # Past the limit: the server must not spin on accept errors.
            cpu0 = cpu_seconds(srv.proc.pid)
            time.sleep(2.0)
            busy = (cpu_seconds(srv.proc.pid) - cpu0) / 2.0
            self.assertLess(busy, 0.5, f"server at {busy:.0%} CPU at the fd limit")
            figures("descriptor limit", connections=len(clients), cpu=f"{busy:.0%}",
                    rss_mib=f"{rss_mib(srv.proc.pid):.0f}")
            self.assertTrue(srv.running())
        finally:
            for s in clients:
                s.close()
        harness.wait_until(lambda: srv.get("/healthz").status == 200, 10,
                           message="/healthz after the connections closed")
        metrics = srv.get("/metrics").text
        self.assertRegex(metrics, r"studyhub_http_accepts_refused_total [1-9]")
        # The log of the episode: a few JSON lines, not a flood of raw ones.
        tail = srv.log_text()[log_before:]
        lines = [l for l in tail.splitlines() if l.strip()]
        self.assertLess(len(lines), 400, f"{len(lines)} log lines at the fd limit")
        for line in lines:
            json.loads(line)   # every line is JSON


class CommandLine(StudyhubTestCase):
    def test_an_unknown_option_is_named(self):
        import subprocess
        proc = subprocess.run([harness.STUDYHUB_BIN, "--bogus"], capture_output=True,
                              text=True, timeout=10)
        self.assertEqual(proc.returncode, 2)
        self.assertIn('"--bogus"', proc.stderr)
        self.assertLess(len(proc.stderr.splitlines()), 3)


class SlowClients(StudyhubTestCase):
    def test_trickling_clients_are_cut_and_others_served(self):
        srv = self.server(env={"REQUEST_HEADER_TIMEOUT_S": "2", "TASK_CONCURRENCY": "0"})
        n = 40 * SCALE
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            socks.append(s)
        closed = set()
        t0 = time.monotonic()
        try:
            # A header byte every 0.25 s from each: fresh bytes never save
            # a request that is past its deadline.
            while len(closed) < n and time.monotonic() - t0 < 10 * harness.SLOW:
                for i, s in enumerate(socks):
                    if i in closed:
                        continue
                    try:
                        s.sendall(b"X")
                        s.setblocking(False)
                        if s.recv(1) == b"":
                            closed.add(i)
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed.add(i)
                    finally:
                        s.setblocking(True)
                # Everyone else is served meanwhile.
                self.assertStatus(srv.get("/healthz", timeout=5), 200)
                time.sleep(0.25)
            took = time.monotonic() - t0
        finally:
            for s in socks:
                s.close()
        self.assertEqual(len(closed), n, "trickling connections were left open")
        figures("slowloris", connections=n, all_cut_after_s=f"{took:.1f}",
                rss_mib=f"{rss_mib(srv.proc.pid):.0f}")
        self.assertGreater(took, 1.5, "cut before the deadline")
        self.assertRegex(srv.get("/metrics").text, rf"studyhub_http_slow_closed_total ([4-9]\d|\d{{3,}})")

    def test_connections_per_address_are_capped(self):
        srv = self.server(env={"MAX_CONNS_PER_ADDR": "5", "TASK_CONCURRENCY": "0"})
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(8)]
        try:
            time.sleep(0.3)
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
            self.assertEqual(closed, 3)
        finally:
            for s in socks:
                s.close()
        harness.wait_until(lambda: srv.get("/healthz").status == 200, 5,
                           message="served again once the others closed")
        self.assertIn("studyhub_http_over_cap_total 3", srv.get("/metrics").text)


class PostgresAbsentAtStart(StudyhubTestCase):
    def test_port_opens_while_postgres_is_awaited(self):
        db = self.database()
        proxy = FreezableProxy(harness.PG_PORT)
        self.addCleanup(proxy.close)
        proxy.frozen.set()     # PostgreSQL does not answer yet
        url = harness.database_url(db).replace(f"port={harness.PG_PORT}",
                                               f"port={proxy.port}")
        srv = self.server(database=db, start=False,
                          env={"DATABASE_URL": url, "TASK_CONCURRENCY": "0"})
        srv.spawn().wait_ready(started=False)
        # /healthz answers while the migrations wait.
        self.assertEqual(srv.get("/healthz").json["status"], "starting")
        r = srv.get("/readyz")
        self.assertStatus(r, 503)
        self.assertEqual(r.json["status"], "starting")
        r = srv.get("/api/v1/studies/")
        self.assertStatus(r, 503)
        self.assertEqual(r.json["errors"][0]["code"], "starting")
        self.assertEqual(r.headers.get("retry-after"), "2")

        proxy.frozen.clear()   # PostgreSQL is back: migrate, then serve all
        harness.wait_until(lambda: srv.get("/readyz").status == 200, 30 * harness.SLOW,
                           message="/readyz 200 once PostgreSQL answered")
        self.assertIn("migrations:", srv.log_text())
        self.assertEqual(srv.get("/healthz").json["status"], "ok")
        self.assertStatus(srv.get("/api/v1/studies/"), 401)


class PatchesUnderPostgresFaults(StudyhubTestCase):
    """The runner's PATCHes while PostgreSQL stalls and then dies under
    them: every PATCH the server acknowledged is stored (lost: 0), none
    waits past 5 s, and the server is whole again within seconds."""

    def test_acknowledged_patches_survive_stall_and_crash(self):
        db = self.database()
        proxy = FreezableProxy(harness.PG_PORT)
        self.addCleanup(proxy.close)
        url = harness.database_url(db).replace(f"port={harness.PG_PORT}",
                                               f"port={proxy.port}")
        srv = self.server(database=db, env={
            "DATABASE_URL": url, "PG_QUERY_TIMEOUT_MS": "1000",
            "PG_ACQUIRE_TIMEOUT_MS": "1000", "TASK_CONCURRENCY": "0"})
        w = World(srv)
        parent = w.user("faulty")
        lab = w.lab("Fault Lab")
        study = w.study(lab)
        writers = 4 * SCALE
        rids = [w.create_response(parent, w.child(parent, f"K{i}"), study)
                for i in range(writers)]
        acked = [-1] * writers
        slow = []
        stop = threading.Event()

        def writer(i):
            k = 0
            while not stop.is_set():
                body = {"data": {"id": rids[i], "type": "responses", "attributes": {
                    "exp_data": {"0-frame": {"k": k}}, "sequence": ["0-frame"]}}}
                t0 = time.monotonic()
                try:
                    r = w.api(parent, "PATCH", f"/api/v1/responses/{rids[i]}/", body,
                              timeout=15)
                    if r.status == 200:
                        acked[i] = k
                except OSError:
                    pass
                took = time.monotonic() - t0
                if took > 5:
                    slow.append(took)
                k += 1
                time.sleep(0.02)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0 * SCALE)
            proxy.frozen.set()           # a stall, as SIGSTOP
            time.sleep(0.3)
            time.sleep(2.0)
            proxy.reset()                # then a crash under it, as SIGKILL
            proxy.frozen.clear()
            recovered_from = time.monotonic()
            harness.wait_until(lambda: srv.get("/readyz").status == 200, 15,
                               message="/readyz after the crash")
            recovery = time.monotonic() - recovered_from
            time.sleep(1.0 * SCALE)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        lost = 0
        for i, rid in enumerate(rids):
            stored = w.response_row(rid)["exp_data"].get("0-frame", {}).get("k", -1)
            if stored < acked[i]:
                lost += 1
        print(f"\n  PATCH under faults: {writers} writers, {sum(a + 1 for a in acked)}"
              f" acknowledged, lost {lost}, over 5 s {len(slow)}, recovery {recovery:.1f} s,"
              f" server RSS {rss_mib(srv.proc.pid):.0f} MiB", end=" ")
        self.assertEqual(lost, 0)
        self.assertEqual(slow, [])
        self.assertTrue(all(a >= 0 for a in acked), "a writer never got a PATCH through")
        self.assertLess(recovery, 10)


class RedisFaults(StudyhubTestCase):
    """Redis frozen (SIGSTOP): session callers get 503 within the Redis
    timeout instead of hanging, token callers are served, and all is well
    once it runs again."""

    def test_frozen_redis_is_a_quick_503(self):
        redis = self.redis()
        srv = self.server(redis_url=redis.url, env={"REDIS_TIMEOUT_MS": "500",
                                                   "TASK_CONCURRENCY": "0"})
        w = World(srv)
        u = w.user("rita")
        bogus_session = {"sessionid": "a" * 64}
        self.assertStatus(request(srv.port, "GET", "/api/v1/users/", cookies=bogus_session), 401)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            resp, took = timed(lambda: request(srv.port, "GET", "/api/v1/users/",
                                               cookies=bogus_session, timeout=15))
            self.assertStatus(resp, 503)
            self.assertLess(took, 3.0 * harness.SLOW)
            figures("Redis frozen", session_request_s=f"{took:.2f}")
            self.assertStatus(w.api(u, "GET", "/api/v1/users/"), 200)
            self.assertStatus(srv.get("/healthz"), 200)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        harness.wait_until(lambda: request(srv.port, "GET", "/api/v1/users/",
                                           cookies=bogus_session).status == 401, 15,
                           message="sessions answered again after Redis resumed")


class OversizedInput(StudyhubTestCase):
    def test_headers_over_the_limit_get_431(self):
        srv = self.server(env={"MAX_HEADER_BYTES": "4096", "TASK_CONCURRENCY": "0"})
        r = request(srv.port, "GET", "/api/v1/studies/", headers={"X-Pad": "p" * 5000})
        self.assertStatus(r, 431)
        self.assertEqual(r.json["errors"][0]["code"], "request_header_fields_too_large")
        self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
        # Within the limit: served as usual.
        self.assertStatus(request(srv.port, "GET", "/healthz", headers={"X-Pad": "p" * 3000}), 200)
        # Absurd: evhttp itself refuses it; the server stays up.
        try:
            request(srv.port, "GET", "/healthz", headers={"X-Pad": "p" * 40000})
        except OSError:
            pass
        self.assertStatus(srv.get("/healthz"), 200)
