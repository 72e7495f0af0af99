"""smtp_sink: a tiny SMTP server (python3 stdlib, socketserver) on
127.0.0.1 that keeps every message it accepts, for the end-to-end tests.

    sink = SmtpSink().start()          # sink.port, sink.url
    ...                                # the server sends to sink.url
    [msg] = sink.wait_for(1)           # msg.rcpt, msg.data, msg.email
    sink.stop()

Faults, to test the sender's retries and its crash window:
    sink.fail_data(451, n=1)           # the next n DATA commands get 451
    sink.reject_rcpt("bad@x", 550)     # RCPT TO that address: 550, always
    sink.reply_delay = 2.0             # wait before the 250 to a message
                                       # (the message is already stored)

RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffing), RSET,
NOOP, QUIT; no STARTTLS (not advertised), no AUTH."""

import email
import email.policy
import socketserver
import threading
import time


class Message:
    """One accepted message: envelope and the raw bytes (CRLF kept)."""

    def __init__(self, mail_from, rcpt, data):
        self.mail_from = mail_from
        self.rcpt = list(rcpt)
        self.data = data
        self.email = email.message_from_bytes(data, policy=email.policy.default)

    @property
    def message_id(self):
        return self.email["Message-ID"]

    @property
    def text(self):
        """The decoded text body."""
        return self.email.get_content()

    def __repr__(self):
        return f"<Message to {self.rcpt} {self.email['Subject']!r}>"


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        with sink.lock:
            sink.connections += 1
        self.reply("220 sink ESMTP ready")
        mail_from, rcpt = None, []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.decode("latin-1").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            arg = cmd[len(verb):].strip()
            if verb == "EHLO":
                self.reply("250-sink")
                self.reply("250-8BITMIME")
                self.reply("250 SIZE 52428800")
            elif verb == "HELO":
                self.reply("250 sink")
            elif verb == "MAIL":
                mail_from, rcpt = _address(arg), []
                self.reply("250 OK")
            elif verb == "RCPT":
                addr = _address(arg)
                code = sink.rejected.get(addr.lower())
                if code:
                    self.reply(f"{code} 5.1.1 rejected by the sink")
                else:
                    rcpt.append(addr)
                    self.reply("250 OK")
            elif verb == "DATA":
                if mail_from is None or not rcpt:
                    self.reply("503 5.5.1 need MAIL and RCPT first")
                    continue
                self.reply("354 end with <CRLF>.<CRLF>")
                chunks = []
                while True:
                    part = self.rfile.readline(1 << 20)
                    if not part:
                        return
                    if part == b".\r\n":
                        break
                    if part.startswith(b".."):
                        part = part[1:]
                    chunks.append(part)
                data = b"".join(chunks)
                fail = sink._take_data_failure()
                if fail:
                    self.reply(f"{fail} 4.3.0 sink told to fail")
                else:
                    with sink.lock:
                        sink.messages.append(Message(mail_from, rcpt, data))
                        sink.cond.notify_all()
                    if sink.reply_delay:
                        time.sleep(sink.reply_delay)
                    self.reply("250 2.0.0 queued")
                mail_from, rcpt = None, []
            elif verb == "RSET":
                mail_from, rcpt = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 5.5.2 not implemented")


def _address(arg):
    """The address inside FROM:<...> / TO:<...>."""
    lt, gt = arg.find("<"), arg.find(">")
    if lt >= 0 and gt > lt:
        return arg[lt + 1:gt]
    return arg.split(":", 1)[-1].strip()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class SmtpSink:
    def __init__(self, port=0):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.messages = []
        self.rejected = {}
        self.data_failures = []
        self.reply_delay = 0.0
        self.connections = 0
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._thread = None

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def fail_data(self, code=451, n=1):
        with self.lock:
            self.data_failures.extend([code] * n)

    def reject_rcpt(self, addr, code=550):
        with self.lock:
            self.rejected[addr.lower()] = code

    def _take_data_failure(self):
        with self.lock:
            return self.data_failures.pop(0) if self.data_failures else None

    def to(self, addr):
        """Messages addressed to addr so far."""
        with self.lock:
            return [m for m in self.messages if addr.lower() in (r.lower() for r in m.rcpt)]

    def wait_for(self, n, timeout=10.0, to=None):
        """Wait until at least n messages (to one address, if given) were
        accepted; returns them (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for m in self.messages
                       if to is None or to.lower() in (r.lower() for r in m.rcpt)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"SMTP sink: {len(got)} of {n} messages"
                                         f"{' to ' + to if to else ''} after {timeout:.1f} s")
                self.cond.wait(left)
