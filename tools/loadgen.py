#!/usr/bin/env python3
"""loadgen: whole participant sessions against studyhub, at a participant's
pace, for a capacity figure (issue 17, point 5; README "Sizing").

Each concurrent session is a slot that runs sessions back to back, each as
the experiment runner does it (/work/shared/reference/runner-api.md R1-R6):

  GET  /api/v1/studies/{study}/                      R1
  GET  /api/v1/children/{child}/                     R2
  POST /api/v1/responses/                            R3
  GET  /api/v1/studies/{study}/responses/?...child=  R4, the runner's past sessions
  PATCH /api/v1/responses/{id}/                      R5, the first save
  then per frame, 2-10 s apart: PATCH with that frame added to exp_data
  (growing to about 20 KB by the last), and for every video frame the
  upload Lambda's POST /api/v1/video/ (HMAC-signed);
  the exit: a last PATCH with the exit survey frame and completed: true.

Requests go through a keep-alive connection pool per server (as from a
reverse proxy), stdlib asyncio only.  Families are read from a file of
"TOKEN CHILD_UUID" lines (one family per slot, reused in turn).

Modes:
  --sessions N --duration S     N slots for S seconds, then stop once every
                                session in flight has finished (the smoke
                                test); exit status 1 if any request failed.
  --steps 100,200,400 ...       raise the slots step by step, each step
                                --ramp seconds to settle then --window seconds
                                measured, until p99 > --p99-limit ms or an
                                error; the figure is the last step that held.

Prints one line per step and, last, a JSON summary (--json FILE too)."""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import sys
import time


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.writer:
            self.writer.close()
            self.writer = None

    async def request(self, method, path, headers, body):
        if self.writer is None:
            await self.open()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise HttpError("connection closed")
        status = int(line.split()[1])
        length, chunked, close = None, False, False
        while True:
            h = await self.reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
            elif k == "connection" and v.lower() == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        elif length is not None:
            data = await self.reader.readexactly(length) if method != "HEAD" else b""
        else:
            data = await self.reader.read()
            close = True
        if close:
            self.close()
        return status, data


class Pool:
    """Up to size connections to one server, handed out one request at a time."""

    def __init__(self, host, port, size):
        self.host, self.port = host, port
        self.idle = []
        self.free = asyncio.Semaphore(size)

    async def request(self, method, path, headers, body=None):
        async with self.free:
            c = self.idle.pop() if self.idle else Conn(self.host, self.port)
            try:
                r = await c.request(method, path, headers, body)
            except BaseException:
                c.close()
                raise
            if c.writer is not None:
                self.idle.append(c)
            return r


class Stats:
    """Latencies (ms) and failures of the requests that ended in a window."""

    def __init__(self):
        self.lat, self.errors, self.sessions, self.failed_sessions = [], 0, 0, 0
        self.by_kind, self.samples = {}, []
        self.kind_lat = {}           # kind -> latencies, to see which request is slow

    def summary(self):
        lat = sorted(self.lat)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(len(lat) * p))], 2) if lat else None
        kinds = {}
        for k, v in sorted(self.kind_lat.items()):
            v = sorted(v)
            kinds[k] = {"n": len(v), "p50_ms": round(v[len(v) // 2], 2),
                        "p99_ms": round(v[min(len(v) - 1, int(len(v) * 0.99))], 2)}
        return {"requests": len(lat), "errors": self.errors, "p50_ms": pct(0.50),
                "by_kind": kinds,
                "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2) if lat else None,
                "sessions_completed": self.sessions, "sessions_failed": self.failed_sessions,
                "errors_by_kind": self.by_kind, "error_samples": self.samples[:5]}


class Load:
    def __init__(self, args, families):
        self.a = args
        self.families = families
        self.next_family = 0
        self.pools = [Pool("127.0.0.1", int(p), args.connections) for p in args.ports.split(",")]
        self.stats = Stats()        # the window being measured (or a throwaway)
        self.stop = False           # slots finish their session and end
        self.key = (args.lambda_key or "").encode()
        self.study_doc = None

    # -- one request, measured
    async def call(self, pool, kind, method, path, token, body=None, want=(200,), headers=None):
        h = {"Accept": "application/vnd.api+json"}
        if token:
            h["Authorization"] = "Token " + token
        if body is not None:
            h["Content-Type"] = "application/vnd.api+json"
            body = json.dumps(body, separators=(",", ":")).encode() if not isinstance(body, bytes) else body
        h.update(headers or {})
        stats = self.stats
        t = time.monotonic()
        try:
            status, data = await asyncio.wait_for(pool.request(method, path, h, body),
                                                  self.a.timeout)
        except (OSError, asyncio.TimeoutError, HttpError, asyncio.IncompleteReadError, ValueError) as e:
            self.fail(stats, kind, f"{kind}: {type(e).__name__} {e}")
            return None
        ms = (time.monotonic() - t) * 1000
        stats.lat.append(ms)
        stats.kind_lat.setdefault(kind, []).append(ms)
        if status not in want:
            self.fail(stats, kind, f"{kind}: {status} {data[:200]!r}")
            return None
        return json.loads(data) if data else {}

    def fail(self, stats, kind, text):
        stats.errors += 1
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        if len(stats.samples) < 20:
            stats.samples.append(text)

    # -- one session
    async def session(self, slot):
        a, rnd = self.a, random.Random()
        token, child = self.families[slot % len(self.families)]
        pool = self.pools[slot % len(self.pools)]
        study = a.study
        ok = True

        def need(x):
            nonlocal ok
            ok = ok and x is not None
            return x
        if not need(await self.call(pool, "study", "GET", f"/api/v1/studies/{study}/", token)):
            return False
        if not need(await self.call(pool, "child", "GET", f"/api/v1/children/{child}/", token)):
            return False
        rels = {"child": {"data": {"type": "children", "id": child}},
                "study": {"data": {"type": "studies", "id": study}}}
        attrs = {"global_event_timings": [], "exp_data": {}, "sequence": [], "completed": False,
                 "completed_consent_frame": False, "survey_consent": False, "created_on": None,
                 "is_preview": False, "hash_child_id": None, "recording_method": "recordrtc"}
        doc = await self.call(pool, "create", "POST", "/api/v1/responses/", token,
                              {"data": {"attributes": attrs, "relationships": rels,
                                        "type": "responses"}}, want=(201,))
        if not need(doc):
            return False
        rid = doc["data"]["id"]
        need(await self.call(pool, "past_sessions", "GET",
                             f"/api/v1/studies/{study}/responses/?page%5Bsize%5D=10&page=1"
                             f"&child={child}", token))
        attrs.update({"conditions": {}, "created_on": "2026-12-07T10:00:00.000Z"})
        del attrs["hash_child_id"]

        def patch_body():
            return {"data": {"id": rid, "attributes": attrs, "relationships": rels,
                             "type": "responses"}}
        need(await self.call(pool, "patch", "PATCH", f"/api/v1/responses/{rid}/", token,
                             patch_body()))
        frames = a.frames
        per_frame = max(200, a.exp_data_bytes // frames)
        for i in range(frames):
            await asyncio.sleep(rnd.uniform(a.pace_min, a.pace_max))
            last = i == frames - 1
            video = not last and i % a.video_every == a.video_every - 1
            fid = f"{i}-{'exit-survey' if last else ('video-' if video else 'frame-')}{i}"
            entry = {"frameType": "EXIT" if last else "DEFAULT",
                     "eventTimings": [{"eventType": "exp-frame:nextFrame",
                                       "timestamp": "2026-12-07T10:%02d:%02d.000Z" % (i // 60 % 60, i % 60)}],
                     "frameDuration": round(rnd.uniform(2, 10), 3)}
            pad = per_frame - len(json.dumps(entry)) - 40
            entry["generatedProperties"] = {"note": secrets.token_hex(max(1, pad // 2))}
            if last:
                entry.update({"withdrawal": False, "databraryShare": "no",
                              "useOfMedia": "private", "feedback": ""})
                attrs["completed"] = True
            if video:
                entry["videoId"] = f"videoStream_{study}_{fid}_{rid}_{int(time.time() * 1000)}_{rnd.randrange(1000):03d}"
            attrs["exp_data"][fid] = entry
            attrs["sequence"].append(fid)
            need(await self.call(pool, "exit" if last else "patch", "PATCH",
                                 f"/api/v1/responses/{rid}/", token, patch_body()))
            if video:
                need(await self.webhook(pool, study, rid, fid, entry["videoId"]))
            if self.stop and not a.finish:
                break
        return ok

    async def webhook(self, pool, study, rid, fid, video_id):
        va = {"pipe_name": secrets.token_hex(15) + "x.mp4", "pipe_numeric_id": "12345678",
              "frame_id": fid, "full_name": video_id + ".mp4",
              "s3_timestamp": "2026-12-07 10:00:00.000000", "is_consent_footage": False,
              "pk": None}
        sig = hmac.new(self.key, json.dumps(va, separators=(",", ":")).encode(),
                       hashlib.sha256).hexdigest()
        body = {"data": {"attributes": va, "type": "videos", "relationships": {
            "response": {"data": {"type": "responses", "id": rid}},
            "study": {"data": {"type": "studies", "id": study}}}}}
        return await self.call(pool, "video_webhook", "POST", "/api/v1/video/", None, body,
                               want=(200, 201), headers={"X-AWS-Lambda-HMAC-Sig": sig})

    async def slot(self, slot, delay):
        await asyncio.sleep(delay)      # slots start spread out, as people do
        while not self.stop:
            stats = self.stats
            try:
                ok = await self.session(slot)
            except Exception as e:      # a bug here must show, not hang the run
                self.fail(stats, "session", f"session: {type(e).__name__} {e}")
                ok = False
            # Counted in the window it ended in.
            if ok:
                self.stats.sessions += 1
            else:
                self.stats.failed_sessions += 1


def rss(pids):
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out[p] = int(line.split()[1]) // 1024
        except OSError:
            pass
    return out


async def sample_rss(pids, peak, until):
    while not until.is_set():
        for p, v in rss(pids).items():
            peak[p] = max(peak.get(p, 0), v)
        try:
            await asyncio.wait_for(until.wait(), 0.5)
        except asyncio.TimeoutError:
            pass


tries_left = [0]


def steps_with_tries(args):
    """(sessions, try): a step that fails is measured again, up to
    args.tries times, before it counts as failed: on a shared machine one
    burst of someone else's work can push one window's p99 over."""
    for n in [int(x) for x in args.steps.split(",")]:
        tries_left[0] = args.tries
        attempt = 0
        while tries_left[0] > 0:
            attempt += 1
            tries_left[0] -= 1
            yield n, attempt


async def run(args, families):
    load = Load(args, families)
    pids = [int(p) for p in args.pids.split(",") if p]
    tasks = []
    results = []

    def grow(n):
        while len(tasks) < n:
            spread = (args.pace_max if args.steps else 0.5)
            tasks.append(asyncio.ensure_future(load.slot(len(tasks), random.uniform(0, spread))))

    if not args.steps:                                   # the smoke test
        grow(args.sessions)
        await asyncio.sleep(args.duration)
        load.stop = True
        await asyncio.gather(*tasks)
        s = load.stats.summary()
        s["concurrent_sessions"] = args.sessions
        results.append(s)
        print(f"{args.sessions} sessions: {s['sessions_completed']} completed,"
              f" {s['sessions_failed']} failed, {s['requests']} requests, {s['errors']} errors,"
              f" p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms", flush=True)
        ok = s["errors"] == 0 and s["sessions_failed"] == 0 and s["sessions_completed"] > 0
    else:
        best = None
        for n, attempt in steps_with_tries(args):
            if attempt == 1:
                grow(n)
                load.stats = Stats()                     # the ramp: not counted
                await asyncio.sleep(args.ramp)
            load.stats = Stats()
            peak, until = {}, asyncio.Event()
            sampler = asyncio.ensure_future(sample_rss(pids, peak, until))
            t0 = time.monotonic()
            await asyncio.sleep(args.window)
            took = time.monotonic() - t0
            until.set()
            await sampler
            s = load.stats.summary()
            s.update({"concurrent_sessions": n, "try": attempt,
                      "requests_per_s": round(s["requests"] / took, 1),
                      "server_rss_mib": [peak.get(p) for p in pids]})
            held = s["errors"] == 0 and s["p99_ms"] is not None and s["p99_ms"] <= args.p99_limit
            s["held"] = held
            results.append(s)
            print(f"{n:6d} sessions{'' if attempt == 1 else f' (try {attempt})'}: {s['requests_per_s']:8.1f} req/s, p50 {s['p50_ms']} ms,"
                  f" p99 {s['p99_ms']} ms, errors {s['errors']}, sessions done"
                  f" {s['sessions_completed']}, server RSS {s['server_rss_mib']} MiB"
                  f"{'' if held else '  <- over the limit'}", flush=True)
            print("  by request: " + ", ".join(f"{k} {v['n']} p50 {v['p50_ms']} p99 {v['p99_ms']}"
                                               for k, v in s["by_kind"].items()), flush=True)
            if s["errors"]:
                print("  errors: " + "; ".join(s["error_samples"]), flush=True)
            if held:
                best = s
                tries_left[0] = 0
            elif attempt >= args.tries:
                break
        load.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ok = True
        results.append({"capacity": best})
    for p in load.pools:
        for c in p.idle:
            c.close()
    return ok, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ports", required=True, help="server ports, comma-separated (sessions spread over them)")
    ap.add_argument("--study", required=True, help="study uuid (active)")
    ap.add_argument("--families", required=True, help='file of "TOKEN CHILD_UUID" lines')
    ap.add_argument("--lambda-key", default=os.environ.get("AWS_LAMBDA_SECRET_ACCESS_KEY", ""))
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--finish", action="store_true", help="at the end, sessions finish all their frames")
    ap.add_argument("--steps", default="", help="concurrent sessions per step, comma-separated")
    ap.add_argument("--ramp", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--p99-limit", type=float, default=100.0)
    ap.add_argument("--tries", type=int, default=2, help="windows a step gets before it counts as failed")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--video-every", type=int, default=4, help="every Nth frame records video")
    ap.add_argument("--exp-data-bytes", type=int, default=20000)
    ap.add_argument("--pace-min", type=float, default=2.0)
    ap.add_argument("--pace-max", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=128, help="keep-alive connections per server")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--pids", default="", help="server pids whose RSS is sampled")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    families = [tuple(line.split()[:2]) for line in open(args.families) if line.strip()]
    if not families:
        sys.exit("loadgen: no families")
    ok, results = asyncio.run(run(args, families))
    text = json.dumps(results)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text, flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
