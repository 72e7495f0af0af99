"""harness: helpers for studyhub's end-to-end tests (python3 stdlib only).

The tests drive the real server binary against a real PostgreSQL and Redis,
all on 127.0.0.1. tools/test starts those services and describes them with
environment variables:

  STUDYHUB_BIN, STUDYHUBCTL_BIN   the binaries under test (default build/)
  TEST_PG_HOST, TEST_PG_PORT      the throwaway PostgreSQL cluster
  TEST_PG_SOCKDIR                 its Unix socket folder (psql uses it)
  TEST_PG_SUPERUSER, TEST_PG_USER superuser (creates databases), server role
  TEST_REDIS_PORT                 the shared throwaway Redis
  TEST_PG_PASSWORD                the server role's password (TCP needs it)
  TEST_REDIS_PASSWORD             the shared Redis's password (requirepass)
  TEST_TOTP_KEY                   TOTP_SECRET_KEY given to servers
  TEST_TMPDIR                     where server logs and sockets go
  TEST_ASAN                       1 under the sanitizer build (slower start)
  TEST_LOG_LEVEL                  LOG_LEVEL given to servers (default info)

What is here:
  create_database() / drop_database()  a fresh database per class or test
  Server                               one studyhub process: start, request,
                                       stop (SIGTERM, exit 0, clean sanitizer
                                       log, or the test fails with the log)
  request() / Client                   HTTP: (status, headers, body, json)
  RedisServer                          a private redis-server to kill/restart
  run_server_once()                    start a server expected to exit (bad
                                       configuration)
  ctl()                                run studyhubctl
  StudyhubTestCase                     unittest base class tying these to
                                       test and class cleanups
"""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

STUDYHUB_BIN = os.environ.get("STUDYHUB_BIN", os.path.join(REPO_ROOT, "build", "studyhub"))
STUDYHUBCTL_BIN = os.environ.get("STUDYHUBCTL_BIN", os.path.join(REPO_ROOT, "build", "studyhubctl"))
STATIC_DIR = os.path.join(REPO_ROOT, "static")
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "15432"))
PG_SOCKDIR = os.environ.get("TEST_PG_SOCKDIR", "")
PG_SUPERUSER = os.environ.get("TEST_PG_SUPERUSER", "postgres")
PG_USER = os.environ.get("TEST_PG_USER", "studyhub")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "16379"))
PG_PASSWORD = os.environ.get("TEST_PG_PASSWORD", "")
REDIS_PASSWORD = os.environ.get("TEST_REDIS_PASSWORD", "")
# A fixed key when run by hand; tools/test gives each run its own.
TOTP_KEY = os.environ.get("TEST_TOTP_KEY", "00" * 32)
ASAN = os.environ.get("TEST_ASAN", "0") == "1"
LOG_LEVEL = os.environ.get("TEST_LOG_LEVEL", "info")

# Sanitized binaries start and answer more slowly.
SLOW = 3.0 if ASAN else 1.0
START_TIMEOUT = 20.0 * SLOW

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: AddressSanitizer",
)

# Environment variables the server reads; never inherited from the caller
# (a developer's LISTEN_PORT must not leak into a test).
SERVER_VARS = (
    "LISTEN_ADDR", "LISTEN_PORT", "BASE_URL", "DATABASE_URL", "PG_POOL_SIZE",
    "PG_ACQUIRE_TIMEOUT_MS", "REDIS_URL", "REDIS_TIMEOUT_MS",
    "MAX_HEADER_BYTES", "MAX_BODY_BYTES", "IDLE_TIMEOUT_S", "DRAIN_TIMEOUT_S",
    "ADMIN_SOCKET", "LOG_LEVEL", "SESSION_TTL_S", "MIGRATE", "DEBUG_ROUTES",
    "TOTP_SECRET_KEY", "TRUSTED_PROXIES", "LOGIN_DELAY_FREE_ACCOUNT",
    "LOGIN_DELAY_FREE_ADDR", "LOGIN_DELAY_FIRST_MS",
    "STATIC_DIR",
)
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "ASAN_OPTIONS",
              "UBSAN_OPTIONS", "LSAN_OPTIONS", "ASAN_SYMBOLIZER_PATH")

_tmp_root = None
_used_ports = set()
_live = set()  # every process started here, for kill_all() on interrupt


def kill_all():
    """Kill whatever servers and Redis instances are still running (the run
    was interrupted before their cleanups ran)."""
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _live.discard(proc)


def tmp_root():
    """The folder for this run's server logs and sockets."""
    global _tmp_root
    if _tmp_root is None:
        base = os.environ.get("TEST_TMPDIR")
        if base:
            os.makedirs(base, exist_ok=True)
            _tmp_root = base
        else:
            _tmp_root = tempfile.mkdtemp(prefix="studyhub-e2e-")
    return _tmp_root


def new_dir(prefix):
    """A new folder under tmp_root() (named for the test that asked)."""
    return tempfile.mkdtemp(prefix=prefix + "-", dir=tmp_root())


def free_port(low=20000, high=32000):
    """A TCP port on 127.0.0.1 that can be bound now, below the ephemeral
    range (32768-60999) so no outgoing connection takes it meanwhile."""
    for _ in range(500):
        port = random.randint(low, high)
        if port in _used_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Call predicate until it returns a true value (which is returned) or
    timeout seconds pass (AssertionError naming message)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last one
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}{extra}")
        time.sleep(interval)


def tail(path, lines=60):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


# --- PostgreSQL ---------------------------------------------------------------

def psql(sql, db="postgres", user=None, check=True):
    """Run SQL with psql on the test cluster (as the superuser by default);
    returns stdout (unaligned, tuples only, '|' separated)."""
    host = PG_SOCKDIR or PG_HOST
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
           "-h", host, "-p", str(PG_PORT), "-U", user or PG_SUPERUSER,
           "-d", db, "-c", sql]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"psql failed ({proc.returncode}): {sql}\n{proc.stderr}")
    return proc.stdout


def create_database():
    """A fresh, empty database owned by the server's role; returns its name."""
    name = "sh_" + uuid.uuid4().hex[:12]
    psql(f'CREATE DATABASE "{name}" OWNER "{PG_USER}"')
    return name


def drop_database(name):
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)


def database_url(name, password=None):
    """The server's conninfo for database name (password: the role's, unless
    another is given; "" for none)."""
    pw = PG_PASSWORD if password is None else password
    return (f"host={PG_HOST} port={PG_PORT} dbname={name} user={PG_USER}"
            + (f" password={pw}" if pw else ""))


def redis_url(port=None, password=None, db=0):
    """redis://[:PASSWORD@]127.0.0.1:PORT/DB of the shared Redis by default."""
    pw = REDIS_PASSWORD if password is None else password
    auth = f":{pw}@" if pw else ""
    return f"redis://{auth}127.0.0.1:{port or REDIS_PORT}/{db}"


# --- HTTP ---------------------------------------------------------------------

class Response:
    """An HTTP answer: status, headers (lower-case names; repeated headers
    joined with ', ', Set-Cookie kept whole in set_cookies), body (bytes),
    json (parsed body or None)."""

    def __init__(self, status, headers, body, set_cookies):
        self.status = status
        self.headers = headers
        self.body = body
        self.set_cookies = set_cookies
        self.json = None
        if body:
            try:
                self.json = json.loads(body)
            except ValueError:
                pass

    def __iter__(self):  # status, headers, body, json = request(...)
        return iter((self.status, self.headers, self.body, self.json))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


JSONAPI = "application/vnd.api+json"


def request(port, method, path, body=None, json_body=None, headers=None,
            token=None, cookies=None, jsonapi=False, timeout=10.0,
            host="127.0.0.1"):
    """One HTTP/1.1 request on a new connection.

    body: bytes/str sent as is; json_body: serialised to JSON (content type
    application/vnd.api+json when jsonapi, else application/json); token:
    sent as "Authorization: Bearer <token>" (or whole, if it has a space);
    cookies: dict sent as one Cookie header."""
    hdrs = {}
    if jsonapi:
        hdrs["Accept"] = JSONAPI
    if json_body is not None:
        body = json.dumps(json_body).encode()
        hdrs["Content-Type"] = JSONAPI if jsonapi else "application/json"
    if isinstance(body, str):
        body = body.encode()
    if token:
        hdrs["Authorization"] = token if " " in token else f"Bearer {token}"
    if cookies:
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        merged = {}
        set_cookies = []
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk == "set-cookie":
                set_cookies.append(v)
            merged[lk] = v if lk not in merged else merged[lk] + ", " + v
        return Response(resp.status, merged, data, set_cookies)
    finally:
        conn.close()


class Client:
    """Requests to one server that keep cookies (a browser-like session) and
    an optional bearer token."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.cookies = {}

    def request(self, method, path, **kw):
        kw.setdefault("token", self.token)
        cookies = dict(self.cookies)
        cookies.update(kw.pop("cookies", None) or {})
        resp = request(self.port, method, path, cookies=cookies or None, **kw)
        for c in resp.set_cookies:
            pair = c.split(";", 1)[0]
            if "=" in pair:
                k, v = pair.split("=", 1)
                k = k.strip()
                if v == "" or "max-age=0" in c.lower():
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def raw_request(port, chunks, pause=0.2, timeout=10.0):
    """Send bytes in pieces (pausing between them) on one connection and
    return everything read until the server closes or the response is
    complete (Connection: close is up to the caller)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, chunk in enumerate(chunks):
            if i:
                time.sleep(pause)
            s.sendall(chunk)
        data = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
        return data
    finally:
        s.close()


def parse_raw_response(data):
    """(status, headers, body) from the bytes of one HTTP/1.x response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


# --- Redis ----------------------------------------------------------------------

def redis_command(port, *args, password=None, timeout=2.0):
    """One command to a Redis (AUTH first when a password is given); returns
    the raw reply bytes of the command (not of AUTH)."""
    def enc(parts):
        out = b"*%d\r\n" % len(parts)
        for p in parts:
            p = p if isinstance(p, bytes) else str(p).encode()
            out += b"$%d\r\n%s\r\n" % (len(p), p)
        return out
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        if password:
            s.sendall(enc(["AUTH", password]))
            line = f.readline()
            if not line.startswith(b"+OK"):
                return line
        s.sendall(enc(list(args)))
        return f.readline()


def redis_ping(port, timeout=0.5, password=None):
    try:
        reply = redis_command(port, "PING", password=password, timeout=timeout)
        return reply.startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server on its own port, for tests that stop it; it
    wants a password of its own, as every Redis tools/ starts."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = new_dir("redis")
        self.proc = None
        self.password = uuid.uuid4().hex

    @property
    def url(self):
        return redis_url(self.port, self.password)

    def start(self):
        assert self.proc is None, "already running"
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        # The password in a 0600 file, not on the command line (ps shows it).
        conf = os.path.join(self.dir, "redis.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        self.proc = subprocess.Popen(
            ["redis-server", conf, "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _live.add(self.proc)
        log.close()
        try:
            wait_until(lambda: self.proc.poll() is not None
                       or redis_ping(self.port, password=self.password),
                       10, message=f"redis on port {self.port}")
        finally:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"redis-server exited ({code}):\n"
                                   + tail(os.path.join(self.dir, "redis.log")))
        return self

    def stop(self, sig=signal.SIGKILL):
        """Stop it (SIGKILL by default: Redis vanishing, as in a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()


# --- the server ---------------------------------------------------------------------

def server_env(extra=None):
    """The environment a server starts with: PATH, locale and sanitizer
    options from ours, nothing of the server's own configuration."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    supp = os.path.join(HERE, "lsan.supp")
    if os.path.exists(supp) and "suppressions=" not in env.get("LSAN_OPTIONS", ""):
        env["LSAN_OPTIONS"] = ":".join(
            x for x in (env.get("LSAN_OPTIONS"), f"suppressions={supp}") if x)
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def sanitizer_report(text):
    """The lines around the first sanitizer complaint in text, or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, max(0, i - 200)) + 1
            return text[start:start + 6000]
    return None


class ServerError(AssertionError):
    pass


class Server:
    """One studyhub process with its own port, admin socket and log.

    env: extra variables (None removes one); database: database name (the
    DATABASE_URL is made from it); redis_url: defaults to the shared Redis.
    """

    def __init__(self, database=None, env=None, redis_url=None, name="server",
                 preexec=None):
        self.database = database
        self.preexec = preexec  # run in the child before exec (limits)
        self.extra_env = dict(env or {})
        self.redis_url = redis_url or globals()["redis_url"]()
        self.dir = new_dir(name)
        self.port = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.out_path = os.path.join(self.dir, "stdout.log")
        sock = os.path.join(self.dir, "admin.sock")
        if len(sock) > 100:  # sun_path holds 108 bytes
            sock = os.path.join(tempfile.mkdtemp(prefix="sh-"), "admin.sock")
        self.admin_socket = sock
        self.exit_code = None
        self.reported = False  # a failure of this process was already raised
        self.stopping = False  # SIGTERM/SIGINT already sent

    # -- process

    def env(self):
        base = {
            "LISTEN_ADDR": "127.0.0.1",
            "LISTEN_PORT": self.port,
            "REDIS_URL": self.redis_url,
            "ADMIN_SOCKET": self.admin_socket,
            "LOG_LEVEL": LOG_LEVEL,
            "DEBUG_ROUTES": "1",
            "MIGRATE": "1",
            "TOTP_SECRET_KEY": TOTP_KEY,
            # Every test server is reached from 127.0.0.1 and most share one
            # Redis: the login slow-down would tie unrelated tests together.
            # Its own tests set these low.
            "LOGIN_DELAY_FREE_ACCOUNT": "1000000",
            "LOGIN_DELAY_FREE_ADDR": "1000000",
            "STATIC_DIR": STATIC_DIR,
        }
        if self.database:
            base["DATABASE_URL"] = database_url(self.database)
        base.update(self.extra_env)
        return server_env(base)

    def spawn(self):
        """Start the process without waiting for it to serve."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if "LISTEN_PORT" in self.extra_env:
            self.port = int(self.extra_env["LISTEN_PORT"])
        else:
            self.port = free_port()
        err = open(self.log_path, "ab")
        out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([STUDYHUB_BIN], env=self.env(), cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     preexec_fn=self.preexec)
        _live.add(self.proc)
        err.close()
        out.close()
        self.exit_code = None
        self.stopping = False  # SIGTERM/SIGINT already sent
        return self

    def wait_ready(self, timeout=START_TIMEOUT, started=True):
        """Wait until GET /healthz answers 200 (with started, its status
        "ok": the migrations are done and every route is served); fail
        with the log if the process exits first or never answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"studyhub exited with {self.proc.returncode} while starting;"
                                  f" log tail:\n{self.log_tail()}")
            try:
                r = request(self.port, "GET", "/healthz", timeout=2)
                if r.status == 200 and (not started or b'"starting"' not in r.body):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise ServerError(f"studyhub did not answer /healthz within {timeout:.0f} s;"
                          f" log tail:\n{self.log_tail()}")

    def start(self, timeout=START_TIMEOUT):
        """Spawn and wait until it serves. A port taken between our check and
        the server's bind is retried on another port."""
        for attempt in range(3):
            self.spawn()
            try:
                return self.wait_ready(timeout)
            except ServerError:
                if (self.proc.poll() is not None and attempt < 2
                        and "LISTEN_PORT" not in self.extra_env
                        and re.search(r"in use|cannot listen|bind", self.log_text())):
                    continue
                self.kill()
                self.proc = None  # reported here; stop() has nothing to add
                raise
        raise AssertionError("unreachable")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        self.exit_code = self.proc.wait(timeout)
        return self.exit_code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, expect_code=0, timeout=None):
        """SIGTERM (unless it has already ended), wait, then check: the exit
        code is expect_code (None: any) and the log has no sanitizer report.
        Raises ServerError with the log tail otherwise. Returns the code."""
        if self.proc is None:
            return None
        if timeout is None:
            timeout = float(self.extra_env.get("DRAIN_TIMEOUT_S", 10)) + 10 * SLOW
        # A second SIGTERM would cut a drain the test started short.
        if self.proc.poll() is None and not self.stopping:
            self.proc.send_signal(signal.SIGTERM)
            self.stopping = True
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(f"studyhub did not exit within {timeout:.0f} s of SIGTERM;"
                              f" log tail:\n{self.log_tail()}")
        self.exit_code = code
        self.check(expect_code)
        return code

    def check(self, expect_code=0):
        """Fail on a sanitizer report in the log, or (when the process has
        ended and expect_code is not None) on an unexpected exit code."""
        if self.reported:
            return  # one report per problem, not one more at cleanup
        report = sanitizer_report(self.log_text())
        if report:
            self.reported = True
            raise ServerError(f"sanitizer report in {self.log_path}:\n{report}")
        if expect_code is not None and self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            if code != expect_code:
                self.reported = True
                raise ServerError(f"studyhub exited with {code}, expected {expect_code};"
                                  f" log tail:\n{self.log_tail()}")

    # -- logs

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return tail(self.log_path, lines)

    def log_records(self):
        """The JSON log lines as dicts (other lines skipped)."""
        out = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    # -- talking to it

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, **kw):
        return request(self.port, method, path, **kw)

    def get(self, path, **kw):
        return request(self.port, "GET", path, **kw)

    def post(self, path, **kw):
        return request(self.port, "POST", path, **kw)

    def client(self, token=None):
        return Client(self.port, token)

    def ctl(self, *args, timeout=10):
        return ctl(*args, admin_socket=self.admin_socket, timeout=timeout)


def ctl(*args, admin_socket, timeout=10, env=None):
    """Run studyhubctl with ADMIN_SOCKET set; returns CompletedProcess (text)."""
    e = server_env({"ADMIN_SOCKET": admin_socket})
    e.update(env or {})
    return subprocess.run([STUDYHUBCTL_BIN, *args], env=e, capture_output=True,
                          text=True, timeout=timeout * SLOW)


def run_server_once(env, timeout=10):
    """Start a server that is expected to exit by itself (bad config);
    returns (exit code, stdout, stderr). Kills it and raises if it runs on."""
    d = new_dir("once")
    base = {"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": free_port(),
            "ADMIN_SOCKET": os.path.join(d, "admin.sock"), "LOG_LEVEL": LOG_LEVEL,
            "REDIS_URL": redis_url(), "TOTP_SECRET_KEY": TOTP_KEY}
    base.update(env)
    proc = subprocess.Popen([STUDYHUB_BIN], env=server_env(base), cwd=d,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _live.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout * SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"studyhub kept running with {env}; stderr:\n{err[-3000:]}")
    report = sanitizer_report(err)
    if report:
        raise ServerError(f"sanitizer report:\n{report}")
    return proc.returncode, out, err


# --- unittest glue ----------------------------------------------------------------------

class StudyhubTestCase(unittest.TestCase):
    """Base class: fresh databases and servers that are stopped and checked
    (exit 0, clean sanitizer log) when the test or the class ends."""

    maxDiff = None

    @classmethod
    def class_database(cls):
        name = create_database()
        cls.addClassCleanup(drop_database, name)
        return name

    @classmethod
    def class_server(cls, database=None, **kw):
        """A server shared by the tests of the class (its own fresh database
        unless one is given)."""
        if database is None:
            database = cls.class_database()
        srv = Server(database=database, name=cls.__name__, **kw)
        cls.addClassCleanup(srv.stop)
        srv.start()
        return srv

    def database(self):
        name = create_database()
        self.addCleanup(drop_database, name)
        return name

    def server(self, database=None, start=True, **kw):
        """A server for this test only (stopped and checked at its end)."""
        if database is None:
            database = self.database()
        srv = Server(database=database, name=self.id().rsplit(".", 1)[-1], **kw)
        self.addCleanup(srv.stop)
        if start:
            srv.start()
        return srv

    def redis(self, start=True):
        r = RedisServer()
        self.addCleanup(r.stop)
        if start:
            r.start()
        return r

    def assertStatus(self, resp, status, msg=None):
        if resp.status != status:
            self.fail(msg or f"expected HTTP {status}, got {resp.status}: {resp.body[:2000]!r}")

    def assertFileMode(self, path, mode):
        actual = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(actual, mode, f"{path} has mode {actual:o}, expected {mode:o}")


def cleanup_tmp():
    """Remove the temporary folder when it was not given by the caller."""
    if _tmp_root and not os.environ.get("TEST_TMPDIR"):
        shutil.rmtree(_tmp_root, ignore_errors=True)
