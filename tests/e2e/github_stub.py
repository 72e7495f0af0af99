"""github_stub: a local stand-in for GitHub, on 127.0.0.1, for the
experiment builder's tests and benchmark.

It serves the three things the builder asks GitHub for:

  GET /repos/{owner}/{repo}                  {"default_branch": "main", ...}
  GET /repos/{owner}/{repo}/commits/{branch} {"sha": "<40 hex>", ...}
  GET /{owner}/{repo}/archive/{sha}.zip      a real zip of the repository,
                                             with GitHub's "<repo>-<sha>/"
                                             top-level folder

Repositories are folders (tests/runners/<name>/ by default, as
"runners/<name>"): a folder's commit SHA is a hash of its files, so it
changes when they do.  Repositories of owner "evil" are archives that try
to leave their folder, made on the fly with zipfile:

  evil/dotdot    an entry "../escaped.txt"
  evil/absolute  an entry "/tmp/studyhub-absolute-<sha>.txt"
  evil/symlink   a link "link" -> "../../../../../../etc" and a file under it
  evil/bomb      a file that inflates far beyond MAX_ARCHIVE_BYTES
  evil/wrongtop  a tidy archive whose top folder is not "<repo>-<sha>/" (a
                 tree of some other repository or commit)

The repository URL to give studyhub is stub.repo_url("runners/good");
GITHUB_API_URL is stub.url.  Faults for retry tests: fail_next(path_part, n,
status) answers the next n matching requests with that status;
cut_next(path_part, hows) cuts the next archive answers short, one per
item of hows: "short" (a Content-Length, then half the bytes and a close)
or "noclen" (no length, half the bytes and a close).  Every
request is recorded in stub.requests (method, path).

Run alone (tools/bench): python3 github_stub.py --port N [--runners DIR]
"""

import argparse
import hashlib
import io
import json
import os
import re
import stat
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.join(os.path.dirname(HERE), "runners")
EVIL = ("dotdot", "absolute", "symlink", "bomb", "wrongtop")


def tree_files(root):
    """(relative path, bytes, mode) of every file under root, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                out.append((rel, f.read(), os.stat(path).st_mode))
    return out


def tree_sha(root):
    h = hashlib.sha1()
    for rel, data, mode in tree_files(root):
        h.update(rel.encode() + b"\0" + data + b"\0" + str(mode & 0o111).encode())
    return h.hexdigest()


def add_file(z, name, data, mode=0o644):
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def add_dir(z, name):
    info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
    z.writestr(info, b"")


def add_link(z, name, target):
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix: the mode bits are read
    z.writestr(info, target)


def repo_zip(root, repo, sha):
    """A GitHub-shaped archive of the folder root."""
    buf = io.BytesIO()
    top = f"{repo}-{sha}/"
    with zipfile.ZipFile(buf, "w") as z:
        z.comment = sha.encode()
        add_dir(z, top)
        dirs = set()
        for rel, data, mode in tree_files(root):
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    add_dir(z, top + d)
            add_file(z, top + rel, data, 0o755 if mode & 0o111 else 0o644)
    return buf.getvalue()


def evil_zip(kind, sha):
    buf = io.BytesIO()
    top = f"{kind}-{sha}/" if kind != "wrongtop" else f"good-{'0' * 40}/"
    with zipfile.ZipFile(buf, "w") as z:
        add_dir(z, top)
        add_file(z, top + "build.sh", b"#!/bin/bash\necho hi\n", 0o755)
        if kind == "dotdot":
            add_file(z, top + "../escaped.txt", b"I left the folder\n")
        elif kind == "absolute":
            add_file(z, f"/tmp/studyhub-absolute-{sha}.txt", b"I am absolute\n")
        elif kind == "symlink":
            add_link(z, top + "link", "../../../../../../etc")
            add_file(z, top + "link/studyhub-through-link.txt", b"written through a link\n")
        elif kind == "bomb":
            # 64 MiB of zeros deflate to ~64 KiB.
            info = zipfile.ZipInfo(top + "zeros.bin", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            with z.open(info, "w") as w:
                chunk = b"\0" * (1 << 20)
                for _ in range(64):
                    w.write(chunk)
    return buf.getvalue()


class GitHubStub:
    """The stand-in; start() serves it on a thread, stop() ends it."""

    def __init__(self, port, runners=RUNNERS, default_branch="main"):
        self.port = port
        self.runners = runners
        self.default_branch = default_branch
        self.requests = []
        self.lock = threading.Lock()
        self.faults = []   # [path_part, remaining, status]
        self.cuts = []     # [path_part, [how, ...]]
        self.delay_s = 0.0  # before every archive answer
        self.server = None
        self.thread = None

    # -- what tests use

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, name):
        """name: "runners/good" or "evil/dotdot"."""
        return f"{self.url}/{name}"

    def sha(self, name):
        owner, repo = name.split("/", 1)
        if owner == "evil":
            return hashlib.sha1(f"evil/{repo}".encode()).hexdigest()
        return tree_sha(os.path.join(self.runners, repo))

    def fail_next(self, path_part, n=1, status=503):
        with self.lock:
            self.faults.append([path_part, n, status])

    def cut_next(self, path_part, hows):
        with self.lock:
            self.cuts.append([path_part, list(hows)])

    def _cut(self, path):
        with self.lock:
            for c in self.cuts:
                if c[0] in path and c[1]:
                    return c[1].pop(0)
        return None

    def count(self, path_part, method="GET"):
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and path_part in p)

    def start(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                stub.handle(self)

        # socketserver listens with a backlog of 5: twenty builds calling at
        # once would see SYNs dropped and retried a second later.
        class Server(ThreadingHTTPServer):
            request_queue_size = 128

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- serving

    def _fault(self, path):
        with self.lock:
            for f in self.faults:
                if f[0] in path and f[1] > 0:
                    f[1] -= 1
                    return f[2]
        return None

    def _exists(self, owner, repo):
        if owner == "evil":
            return repo in EVIL
        return owner == "runners" and os.path.isdir(os.path.join(self.runners, repo))

    def handle(self, h):
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.requests.append(("GET", path))
        status = self._fault(path)
        if status:
            return self.send(h, status, {"message": "injected fault"})
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)", path)
        if m:
            if not self._exists(*m.groups()):
                return self.send(h, 404, {"message": "Not Found"})
            return self.send(h, 200, {"name": m.group(2), "full_name": f"{m.group(1)}/{m.group(2)}",
                                      "default_branch": self.default_branch})
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/commits/(.+)", path)
        if m:
            owner, repo, branch = m.groups()
            if not self._exists(owner, repo) or branch != self.default_branch:
                return self.send(h, 404, {"message": "No commit found for SHA: " + branch})
            return self.send(h, 200, {"sha": self.sha(f"{owner}/{repo}"),
                                      "commit": {"message": "stand-in commit"}})
        m = re.fullmatch(r"/([^/]+)/([^/]+)/archive/([0-9a-f]{40})\.zip", path)
        if m:
            owner, repo, sha = m.groups()
            if not self._exists(owner, repo) or sha != self.sha(f"{owner}/{repo}"):
                return self.send(h, 404, {"message": "Not Found"})
            if self.delay_s:
                time.sleep(self.delay_s)
            data = (evil_zip(repo, sha) if owner == "evil"
                    else repo_zip(os.path.join(self.runners, repo), repo, sha))
            how = self._cut(path)
            if how:
                return self.send_cut(h, data, how)
            return self.send_bytes(h, 200, data, "application/zip")
        return self.send(h, 404, {"message": "Not Found"})

    @staticmethod
    def send(h, status, doc):
        GitHubStub.send_bytes(h, status, json.dumps(doc).encode(), "application/json")

    @staticmethod
    def send_cut(h, data, how):
        """200, then half the archive and a closed connection."""
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        if how == "short":
            h.send_header("Content-Length", str(len(data)))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data[:len(data) // 2])
        h.wfile.flush()
        h.close_connection = True

    @staticmethod
    def send_bytes(h, status, data, ctype):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runners", default=RUNNERS)
    args = ap.parse_args()
    stub = GitHubStub(args.port, args.runners).start()
    print(f"github stub on {stub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
