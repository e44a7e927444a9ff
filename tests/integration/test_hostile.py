#!/usr/bin/env python3
"""Hostile clients through the proxy, over real sockets: thousands of
slow-loris clients, a 1 GiB line with no CRLF, literals announcing 2^63-1
bytes and more, TLS handshakes of garbage. Each time memory stays bounded,
the relay stays byte-exact, and a session opened before the hostile one
still works after it.

    python3 tests/integration/test_hostile.py [--imaptap build/imaptap] [-v]

HOSTILE_LINE_MIB (default 1024) sets the size of the endless line.
"""

import hashlib
import imaplib
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from clients import make_message  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, sanitizer_env  # noqa: E402

# ASan keeps freed memory in a quarantine (256 MiB by default); a small
# one makes RSS follow what the proxy actually holds.
SMALL_QUARANTINE = "quarantine_size_mb=1"

SLOW_CLIENTS = 2000
# what one slow client may cost the proxy, with both sockets and the
# session's state (sanitizer build: redzones included)
SLOW_CLIENT_KIB = 24
LINE_MIB = int(os.environ.get("HOSTILE_LINE_MIB", "1024"))
LINE_RSS_MIB = 64


def setUpModule():
    check_binary()


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


class SinkServer:
    """A scripted IMAP server: greets, answers each tagged line with a
    tagged OK (a line ending in a synchronising literal announcement with
    a tagged NO, as a server refusing the size would), and hashes every
    byte each connection sends, keeping none of a long line."""

    GREETING = b"* OK sink ready\r\n"

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.received = {}      # connection number -> (bytes, sha256 hex, head)
        self.accepted = 0
        self.errors = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                n = self.accepted
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    @staticmethod
    def _answer(line):
        words = line.rstrip(b"\r\n").split(b" ")
        if len(words) < 2 or not words[0]:
            return b""
        tag = words[0]
        if line.rstrip(b"\r\n").endswith(b"}") and not line.rstrip(b"\r\n").endswith(b"+}"):
            return tag + b" NO [TOOBIG] literal refused\r\n"
        return tag + b" OK " + words[1] + b" done\r\n"

    def _serve(self, conn, n):
        digest = hashlib.sha256()
        total = 0
        head = b""
        partial = b""
        buf = bytearray(1 << 20)
        try:
            conn.sendall(self.GREETING)
            while True:
                got = conn.recv_into(buf)
                if got == 0:
                    break
                data = memoryview(buf)[:got]
                digest.update(data)
                total += got
                if len(head) < 4096:
                    head += bytes(data[:4096 - len(head)])
                if buf.find(b"\n", 0, got) < 0:
                    # a long line is hashed, never kept
                    partial = partial + bytes(data) if len(partial) < 4096 else b"-"
                    continue
                lines = (partial + bytes(data)).split(b"\n")
                partial = lines.pop()[-4096:]
                reply = b"".join(self._answer(ln + b"\n") for ln in lines)
                if reply:
                    conn.sendall(reply)
        except OSError as e:
            self.errors.append("connection %d: %s" % (n, e))
        finally:
            with self.lock:
                self.received[n] = (total, digest.hexdigest(), head)
            conn.close()

    def wait_received(self, n, timeout=60):
        wait_until(lambda: n in self.received, timeout, "the sink to see connection %d end" % n)
        return self.received[n]

    def close(self):
        self.srv.close()


class Session:
    """A raw IMAP client session: NOOPs with their round-trip time."""

    def __init__(self, port, tls=False):
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("session closed; have %r" % self.buf[-200:])
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln + b"\n"

    def noop(self):
        self.n += 1
        tag = b"k%d" % self.n
        t0 = time.monotonic()
        self.sock.sendall(tag + b" NOOP\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln.startswith(tag + b" OK"):
                    raise AssertionError("NOOP answered %r" % ln)
                return time.monotonic() - t0

    def close(self):
        self.sock.close()


class HostileTest(ProxyTestCase, unittest.TestCase):

    def start_sink_proxy(self, extra_args=()):
        sink = SinkServer()
        self.addCleanup(sink.close)
        px = self.start_proxy(sink.port, extra_args=list(extra_args),
                              env=sanitizer_env(SMALL_QUARANTINE))
        return sink, px

    def rows(self, px, session, text_part, dir_=None):
        return [r for r in px.timeline() if r["session"] == session and text_part in r["text"]
                and (dir_ is None or r["dir"] == dir_)]

    def wait_closed(self, px, session, timeout=30):
        return px.wait_for_row(lambda r: r["session"] == session and r["dir"] == "--"
                               and r["text"].startswith("close"), timeout=timeout)

    # -- slow-loris ---------------------------------------------------------

    def test_slow_loris_clients_do_not_slow_others(self):
        """SLOW_CLIENTS clients each send one byte a second through the
        proxy to a real Dovecot; an imaplib session alongside keeps its
        latency and the proxy's memory grows by a bounded amount per slow
        client."""
        # one login process for every client, so Dovecot itself holds them
        extra = ("service imap-login {\n  service_count = 0\n  client_limit = %d\n"
                 "  process_limit = 1\n}\ndefault_client_limit = %d\n"
                 % (SLOW_CLIENTS + 200, SLOW_CLIENTS + 200))
        dc = Dovecot(extra_conf=extra).start()
        self.addCleanup(dc.stop)
        px = self.start_proxy(dc.port, extra_args=["--quiet"],
                              env=sanitizer_env(SMALL_QUARANTINE))
        message = make_message(20000, tag="hostile-slow")

        def workload():
            t0 = time.monotonic()
            m = imaplib.IMAP4("127.0.0.1", px.port, timeout=30)
            m.login("alice", "secret")
            m.select("INBOX")
            typ, _ = m.append("INBOX", None, None, message)
            self.assertEqual(typ, "OK")
            typ, data = m.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], message)
            m.logout()
            return time.monotonic() - t0

        baseline = statistics.median(workload() for _ in range(3))
        before = Session(px.port)
        self.assertTrue(before.greeting.startswith(b"* OK"), before.greeting)
        before.noop()
        rss_before = px.rss_kib()

        slow = []
        self.addCleanup(lambda: [s.close() for s in slow])
        for _ in range(SLOW_CLIENTS):
            s = socket.create_connection(("127.0.0.1", px.port), timeout=20)
            slow.append(s)
        for s in slow:      # every one relayed and greeted by Dovecot
            self.assertTrue(s.recv(4096).startswith(b"* OK"))
        stop = threading.Event()
        dripped = [0]
        # a command that never ends within the test
        drip = b"s1 NOOP " + b"x" * 100

        def dripper():
            i = 0
            while not stop.is_set() and i < len(drip):
                t = time.monotonic()
                for s in slow:
                    s.send(drip[i:i + 1])
                dripped[0] += 1
                i += 1
                stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

        thread = threading.Thread(target=dripper, daemon=True)
        thread.start()
        self.addCleanup(stop.set)
        wait_until(lambda: dripped[0] >= 3, 30, "three bytes from every slow client")
        loaded = statistics.median(workload() for _ in range(3))
        rss_during = px.rss_kib()
        self.assertTrue(thread.is_alive(), "the slow clients stopped dripping")
        stop.set()
        thread.join(10)

        per_client = (rss_during - rss_before) / SLOW_CLIENTS
        print("\nslow-loris: %d clients, %d byte(s) each; workload %.3f s alone, %.3f s "
              "with them; proxy RSS %d -> %d KiB (%.1f KiB per slow client)"
              % (SLOW_CLIENTS, dripped[0], baseline, loaded, rss_before, rss_during,
                 per_client), file=sys.stderr)
        self.assertLess(per_client, SLOW_CLIENT_KIB)
        self.assertLess(loaded, 5 * baseline + 1.0,
                        "the workload took %.3f s among slow clients, %.3f s alone"
                        % (loaded, baseline))
        before.noop()       # the session opened before still works
        before.close()
        for s in slow:
            s.close()
        slow.clear()
        workload()          # and a new one after them

    # -- a line that never ends ---------------------------------------------

    def test_endless_line_relayed_exactly_with_bounded_memory(self):
        sink, px = self.start_sink_proxy()
        other = Session(px.port)            # sink connection 1
        other.noop()
        wait_until(lambda: sink.accepted == 1, 10, "the first session upstream")
        rss_start = px.rss_kib()

        chunk_pattern = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ-+"
        chunk = chunk_pattern * ((4 << 20) // len(chunk_pattern))
        first = b"a1 SEARCH TEXT " + chunk[15:]
        count = -(-LINE_MIB * (1 << 20) // len(chunk))     # at least LINE_MIB
        expect = hashlib.sha256()
        hostile = socket.create_connection(("127.0.0.1", px.port), timeout=60)
        self.assertTrue(hostile.recv(4096).startswith(b"* OK"))
        sent = [0]
        failure = []

        def send_line():
            try:
                for i in range(count):
                    data = first if i == 0 else chunk
                    hostile.sendall(data)
                    expect.update(data)
                    sent[0] += len(data)
                hostile.shutdown(socket.SHUT_WR)
            except OSError as e:
                failure.append(e)

        sender = threading.Thread(target=send_line, daemon=True)
        sender.start()
        peak = rss_start
        noops = []
        while sender.is_alive():
            peak = max(peak, px.rss_kib())
            noops.append(other.noop())      # served meanwhile
            sender.join(0.2)
        self.assertFalse(failure, failure)
        total, digest, head = sink.wait_received(2, timeout=120)
        hostile.close()
        self.assertEqual(total, sent[0])
        self.assertEqual(total, count * len(chunk))
        self.assertEqual(digest, expect.hexdigest())
        self.assertEqual(head, first[:len(head)])
        print("\nendless line: %d MiB relayed; proxy RSS %d KiB at start, peak %d KiB; "
              "%d NOOPs meanwhile, slowest %.1f ms"
              % (total >> 20, rss_start, peak, len(noops), 1000 * max(noops)), file=sys.stderr)
        self.assertLess(peak - rss_start, LINE_RSS_MIB * 1024)
        self.assertGreater(len(noops), 0)
        self.assertLess(max(noops), 2.0, "a NOOP waited behind the endless line")

        self.wait_closed(px, 2, timeout=60)
        cut = self.rows(px, 2, "parse-error", "!")
        self.assertEqual(len(cut), 1, px.stderr_tail(20))
        self.assertIn("client line at byte 0 cut by the end of the connection: %d byte(s)"
                      % total, cut[0]["text"])
        self.assertFalse([r for r in px.timeline() if r["session"] == 2 and r["dir"] == "C>"],
                         "a row for a line that never ended")
        other.noop()                        # the session opened before
        other.close()
        self.assertFalse(sink.errors, sink.errors)

    # -- literals too big for anyone -------------------------------------------

    def literal_case(self, announce, after, refused):
        """One client announces a huge literal then sends `after`; the
        sink must receive every byte as sent. Returns the proxy and the
        hostile session's number."""
        sink, px = self.start_sink_proxy()
        other = Session(px.port)
        other.noop()
        hostile = Session(px.port)
        sent = b"a1 APPEND INBOX " + announce + b"\r\n"
        hostile.sock.sendall(sent)
        if refused:
            self.assertEqual(hostile.line(), b"a1 NO [TOOBIG] literal refused\r\n")
        hostile.sock.sendall(after)
        sent += after
        if after.endswith(b"a2 NOOP\r\n"):
            self.assertTrue(hostile.line().startswith(b"a2 OK"))
        hostile.sock.shutdown(socket.SHUT_WR)
        total, digest, head = sink.wait_received(2)
        hostile.close()
        self.assertEqual(total, len(sent))
        self.assertEqual(head, sent[:4096])
        self.assertEqual(digest, hashlib.sha256(sent).hexdigest())
        self.wait_closed(px, 2)
        other.noop()
        other.close()
        self.assertFalse(sink.errors, sink.errors)
        return px, 2

    def test_literal_2_63_minus_1_refused(self):
        px, n = self.literal_case(b"{9223372036854775807}", b"a2 NOOP\r\n", refused=True)
        self.assertTrue(self.rows(px, n, "a1 APPEND INBOX {9223372036854775807}", "C>"))
        # the refusal ends the literal: what follows is a command again
        self.assertTrue(self.rows(px, n, "a2 NOOP", "C>"), px.stderr_tail(20))
        self.assertTrue(self.rows(px, n, "(NOOP", "S<"), px.stderr_tail(20))
        self.assertFalse(self.rows(px, n, "parse-error"))

    def test_literal_2_63_minus_1_nonsync_cut(self):
        data = b"x" * 300000
        px, n = self.literal_case(b"{9223372036854775807+}", data, refused=False)
        cut = self.rows(px, n, "pending-at-eof", "!")
        self.assertEqual(len(cut), 1, px.stderr_tail(20))
        self.assertIn("%d of its 9223372036854775807 byte(s) never came"
                      % (9223372036854775807 - len(data)), cut[0]["text"])

    def test_literal_2_64_and_beyond_is_parse_error(self):
        for announce in (b"{18446744073709551616}", b"{99999999999999999999999999999}"):
            with self.subTest(announce=announce):
                px, n = self.literal_case(announce, b"a2 NOOP\r\n", refused=True)
                errors = self.rows(px, n, "parse-error", "!")
                self.assertEqual(len(errors), 1, px.stderr_tail(20))
                self.assertIn("a literal count that is no number", errors[0]["text"])
                self.assertTrue(self.rows(px, n, "a2 NOOP", "C>"), px.stderr_tail(20))
                px.stop()

    # -- TLS handshakes of garbage ---------------------------------------------

    def test_garbage_client_hello(self):
        sink = SinkServer()
        self.addCleanup(sink.close)
        ca = tempfile.mkdtemp(prefix="imaptap-hostile-ca-")
        px = self.start_proxy(sink.port, extra_args=["--client-tls", "implicit", "--ca", ca,
                                                     "--handshake-timeout", "2"],
                              env=sanitizer_env(SMALL_QUARANTINE))
        other = Session(px.port, tls=True)
        other.noop()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing)
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        cases = [
            ("record of garbage", b"\x16\x03\x01\x00\x50" + bytes(range(80)), True,
             "client TLS handshake failed"),
            ("plain IMAP", b"a1 LOGIN alice secret\r\n", True, "client TLS handshake failed"),
            ("random bytes", os.urandom(4096), True, "client TLS handshake failed"),
            ("truncated hello, then silence", hello[:len(hello) // 2], False,
             "client TLS handshake timed out"),
            ("truncated hello, then close", hello[:len(hello) // 2], True, "client TLS"),
        ]
        for n, (what, data, close, notice) in enumerate(cases, 2):
            with self.subTest(what=what):
                s = socket.create_connection(("127.0.0.1", px.port), timeout=20)
                try:
                    s.sendall(data)
                except OSError:
                    pass        # the proxy may have hung up already
                if close:
                    s.close()
                row = self.wait_closed(px, n, timeout=15)
                if not close:
                    s.close()
                self.assertIn("TLS handshake", row["text"])
                rows = self.rows(px, n, notice, "--")
                self.assertTrue(rows, "%s: no %r row\n%s" % (what, notice, px.stderr_tail(20)))
                other.noop()
        other.close()
        self.assertTrue(px.alive())


if __name__ == "__main__":
    main()
