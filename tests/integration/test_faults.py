#!/usr/bin/env python3
"""Injected faults (`imaptap proxy --fault SPEC`) over real sockets, against
a real Dovecot and real clients: each fault must make its bug happen, be
marked as injected in the timeline, the event log and the pcap, and leave
everything else as it was; without --fault nothing is marked.

    python3 tests/integration/test_faults.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import tshark  # noqa: E402
from clients import RawIMAP, RecordingIMAP4, make_message  # noqa: E402
from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imaptap import (ProxyTestCase, check_binary, completion_of, main,  # noqa: E402
                     run_imaptap)
from node import NodeError, ensure_node_clients, imapflow_session  # noqa: E402

PASSWORD = "fault-secret"
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = tempfile.mkdtemp(prefix="imaptap-faults-")
    DC = Dovecot(users={"alice": PASSWORD, "bob": PASSWORD}, rawlog=True).start()


def tearDownModule():
    if DC is not None:
        DC.stop()
    if TMP is not None and not os.environ.get("KEEP_TMP"):
        shutil.rmtree(TMP, ignore_errors=True)


def read_events(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %.0f s" % (what, timeout))
        time.sleep(0.02)


def clock_seconds(row):
    """Seconds since midnight of a timeline row's HH:MM:SS.uuuuuu."""
    h, m, s = row["ts"].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


class FaultTest(ProxyTestCase, unittest.TestCase):
    def proxy(self, *faults, extra=()):
        """A proxy in front of Dovecot with the faults, an event log and a
        pcap in a fresh directory."""
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.events = os.path.join(self.dir, "events.jsonl")
        self.pcap = os.path.join(self.dir, "faults.pcap")
        args = ["--events", self.events, "--pcap", self.pcap]
        for f in faults:
            args += ["--fault", f]
        return self.start_proxy(DC.port, extra_args=args + list(extra))

    def closed(self, px, session=1):
        px.wait_for_row(lambda r: r["session"] == session and r["dir"] == "--"
                        and r["text"].startswith("close"), timeout=20)

    def fault_events(self, **match):
        return [e for e in read_events(self.events) if e["kind"] == "fault"
                and all(e.get(k) == v for k, v in match.items())]

    def fault_rows(self, px, action, phase=None):
        return [r for r in px.timeline() if r["dir"] == "~"
                and r["text"].startswith("fault %s " % action)
                and (phase is None or r["text"].split(":", 1)[0].endswith(" " + phase))]

    def assert_pcap_marks(self, action):
        """The pcap carries the fault as syslog datagrams that tshark
        decodes, and imaptap analyze still reads it."""
        if shutil.which("tshark") is not None:
            rows = tshark.fields(self.pcap, "syslog", "syslog.msg")
            self.assertTrue(any("action=%s" % action in r[0] for r in rows),
                            "no syslog mark for %s in the pcap: %r" % (action, rows))
        r = run_imaptap(["analyze", self.pcap], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- hold-idle-completion --------------------------------------------

    def test_held_idle_completion_gives_done_stall_then_imapflow_carries_on(self):
        try:
            ensure_node_clients()
        except NodeError as e:
            self.skipTest(str(e))
        px = self.proxy("hold-idle-completion:3s", extra=["--done-stall", "1"])
        result = imapflow_session("127.0.0.1", px.port, "alice", PASSWORD,
                                  script="imapflow_idle.mjs", timeout=90)
        # imapflow waited for the held OK, then went on with its commands
        self.assertGreaterEqual(result["idleEndMs"], 2500, result)
        self.assertIsNotNone(result["messagesAfter"], result)
        self.closed(px)
        rows = px.timeline()
        start = self.fault_rows(px, "hold-idle-completion", "start")
        release = self.fault_rows(px, "hold-idle-completion", "release")
        stall = [r for r in rows if r["dir"] == "!" and r["text"].startswith("done-stall")
                 and "(resolved)" not in r["text"]]
        resolved = [r for r in rows if r["dir"] == "!" and r["text"].startswith("done-stall")
                    and "(resolved)" in r["text"]]
        self.assertEqual(len(start), 1, px.stderr_tail())
        self.assertEqual(len(release), 1, px.stderr_tail())
        self.assertEqual(len(stall), 1, px.stderr_tail())
        self.assertEqual(len(resolved), 1, px.stderr_tail())
        # live: the stall fired while the completion was held, and resolved
        # when it was let go
        order = [r["line"] for r in rows]
        self.assertLess(order.index(start[0]["line"]), order.index(stall[0]["line"]))
        self.assertLess(order.index(stall[0]["line"]), order.index(release[0]["line"]))
        self.assertLess(order.index(release[0]["line"]), order.index(resolved[0]["line"]))
        held = clock_seconds(release[0]) - clock_seconds(start[0])
        self.assertGreaterEqual(held, 2.9)
        ok = [r for r in rows if r["dir"] == "S<" and completion_of(r["text"])
              and completion_of(r["text"])[0] == "IDLE"]
        self.assertEqual(len(ok), 1)
        self.assertGreaterEqual(completion_of(ok[0]["text"])[2], 2.9)
        self.assertEqual([e["phase"] for e in self.fault_events(action="hold-idle-completion")],
                         ["active", "start", "release"])
        self.assertTrue(all(e["injected"] for e in self.fault_events()))
        self.assert_pcap_marks("hold-idle-completion")

    # ---- split -----------------------------------------------------------

    def split_roundtrip(self, spec, user):
        """A login, an APPEND and a FETCH of a literal through the proxy;
        the client's bytes against what Dovecot's rawlog says it got and
        sent."""
        capture = None
        if shutil.which("tshark") is not None:
            capture = LoopbackCapture(self.dir if hasattr(self, "dir") else TMP)
        px = self.proxy(spec)
        if capture is not None:
            capture.start(px.port)
        im = RecordingIMAP4("127.0.0.1", px.port)
        im.login(user, PASSWORD)
        im.select("INBOX")
        body = make_message(20000, tag="split")
        im.append("INBOX", None, None, body)
        typ, data = im.fetch("*", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        im.logout_to_eof()
        self.closed(px)
        sent, received = im.after_login()
        # every byte, both ways, exactly as sent: the cuts changed nothing
        sess = DC.wait_rawlog_session(user, lambda x: x["in"] == sent)
        self.assertTrue(received.endswith(sess["out"]),
                        "the client did not get the bytes the server sent")
        self.assertIn(body.encode() if isinstance(body, str) else body, received)
        self.assertEqual(self.fault_rows(px, "split", "active")[0]["session"], 1)
        segments = capture.sizes() if capture is not None else None
        return segments

    def test_split_byte_relays_identical_bytes_one_byte_per_write(self):
        sizes = self.split_roundtrip("split:s2c:byte", "alice")
        if sizes is not None:
            # one-byte writes: the kernel joins some when its congestion
            # window is full, but most segments carry one byte, where
            # without the fault the FETCH of 20 kB takes a handful
            self.assertGreater(len(sizes), 1000, sizes[:50])
            self.assertGreater(sizes.count(1), len(sizes) // 2, sizes[:50])

    def test_split_random_relays_identical_bytes_in_seeded_pieces(self):
        sizes = self.split_roundtrip("split:s2c:random:7", "bob")
        if sizes is not None:
            # mostly short pieces (1-16 bytes), some long ones
            self.assertGreater(len(sizes), 30, sizes[:50])
            self.assertGreater(len([n for n in sizes if n <= 16]), len(sizes) // 2, sizes[:50])

    # ---- bye -------------------------------------------------------------

    def test_bye_in_a_server_literal_gives_pending_at_eof(self):
        px = self.proxy("bye:in-literal:s2c")
        im = imaplib.IMAP4("127.0.0.1", px.port)
        im.login("alice", PASSWORD)
        im.select("INBOX")
        im.append("INBOX", None, None, make_message(8000, tag="bye"))
        with self.assertRaises((imaplib.IMAP4.abort, OSError, EOFError)):
            im.fetch("1", "(BODY.PEEK[])")
        self.closed(px)
        events = read_events(self.events)
        rules = [e["rule"] for e in events if e["kind"] == "anomaly"]
        self.assertIn("pending-at-eof", rules)
        phases = [e["phase"] for e in self.fault_events(action="bye")]
        self.assertEqual(phases, ["active", "inject", "close"])
        close = [e for e in events if e["kind"] == "session-close"][0]
        self.assertEqual(close["by"], "proxy")
        self.assertIn("bye:in-literal:s2c", close["reason"])
        self.assert_pcap_marks("bye")

    def test_bye_in_a_client_literal_gives_the_client_a_bye(self):
        px = self.proxy("bye:in-literal")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        c.send(b"a2 APPEND INBOX {1000}\r\n")
        c.expect_continuation()
        c.send(b"x" * 1000)
        rest = c.read_until_eof()
        self.assertTrue(rest.startswith(b"* BYE imaptap fault injected (bye:in-literal)"), rest)
        self.closed(px)
        # the server never got the rest of the literal
        self.assertEqual([e["phase"] for e in self.fault_events(action="bye")],
                         ["active", "inject", "close"])
        bye = [r for r in px.timeline() if r["dir"] == "P<" and r["text"].startswith("* BYE")]
        self.assertEqual(len(bye), 1)

    def test_bye_after_idle_continuation(self):
        px = self.proxy("bye:after-idle-continuation")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        c.command("a2", "SELECT INBOX")
        c.send(b"a3 IDLE\r\n")
        lines = c.expect_continuation()
        self.assertTrue(lines[-1].startswith(b"+"))
        rest = c.read_until_eof()
        self.assertTrue(rest.startswith(b"* BYE imaptap fault injected"), rest)
        self.closed(px)
        self.assertEqual([e["phase"] for e in self.fault_events(action="bye")],
                         ["active", "inject", "close"])

    # ---- answer ----------------------------------------------------------

    def test_answer_no_never_reaches_the_server(self):
        px = self.proxy("answer:CREATE:NO")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN bob "%s"' % PASSWORD)
        resps, status = c.command("a2", "CREATE Faulty")
        self.assertEqual(status, "NO", resps)
        self.assertIn(b"imaptap fault injected (answer:CREATE:NO)", resps[-1])
        # a synchronising literal: answered at once, no "+", no bytes follow
        c.send(b"a3 CREATE {6}\r\n")
        resps = c.read_until_tagged("a3")
        self.assertTrue(resps[-1].startswith(b"a3 NO "), resps)
        # a non-synchronising literal: swallowed with its command
        c.send(b"a4 CREATE {6+}\r\nFaulty\r\n")
        resps = c.read_until_tagged("a4")
        self.assertTrue(resps[-1].startswith(b"a4 NO "), resps)
        # the session goes on, in step
        resps, status = c.command("a5", 'LIST "" "*"')
        self.assertEqual(status, "OK")
        self.assertFalse(any(b"Faulty" in r for r in resps), resps)
        c.command("a6", "LOGOUT")
        c.close()
        self.closed(px)
        sess = DC.wait_rawlog_session("bob", lambda x: b"a5 LIST" in x["in"]
                                      and b"a6 LOGOUT" in x["in"])
        self.assertNotIn(b"CREATE", sess["in"])
        self.assertIn(b"a5 LIST", sess["in"])
        rows = px.timeline()
        self.assertEqual(len([r for r in rows if r["dir"] == "P<"
                              and " NO imaptap fault injected" in r["text"]]), 3)
        rules = [e["rule"] for e in read_events(self.events) if e["kind"] == "anomaly"]
        self.assertNotIn("parse-error", rules)
        self.assertNotIn("unknown-tag", rules)
        self.assertEqual(len(self.fault_events(action="answer", phase="inject")), 3)

    # ---- delay and stop-reading --------------------------------------------

    def test_delay_shows_as_latency(self):
        px = self.proxy("delay:s2c:700ms")
        c = RawIMAP(px.port)
        t0 = time.monotonic()
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        t1 = time.monotonic()
        c.command("a2", "NOOP")
        rtt = time.monotonic() - t1
        c.command("a3", "LOGOUT")
        c.close()
        self.assertGreaterEqual(t1 - t0, 1.3)
        self.assertGreaterEqual(rtt, 0.65)
        self.closed(px)
        noop = [completion_of(r["text"]) for r in px.timeline() if r["dir"] == "S<"
                and r["text"].startswith("a2 OK")]
        self.assertEqual(len(noop), 1)
        self.assertGreaterEqual(noop[0][1], 0.65)

    def test_stop_reading_the_server_after_a_command(self):
        px = self.proxy("stop-reading:server:1500ms,after=NOOP")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        t1 = time.monotonic()
        c.command("a2", "NOOP")
        rtt = time.monotonic() - t1
        self.assertGreaterEqual(rtt, 1.4)
        c.command("a3", "LOGOUT")
        c.close()
        self.closed(px)
        start = self.fault_rows(px, "stop-reading", "start")
        release = self.fault_rows(px, "stop-reading", "release")
        self.assertEqual((len(start), len(release)), (1, 1), px.stderr_tail())
        self.assertGreaterEqual(clock_seconds(release[0]) - clock_seconds(start[0]), 1.45)

    # ---- the spec and its absence -------------------------------------------

    def test_bad_specs_are_usage_errors(self):
        cases = [
            ("nonsense", "unknown fault 'nonsense'"),
            ("delay:s2c", "delay needs a duration"),
            ("split:c2s:bytes", "unknown way to split 'bytes'"),
            ("hold-idle-completion:30s,session=0", "session= takes a session number"),
            ("answer:SELECT:MAYBE", "answer:SELECT needs NO or BAD"),
        ]
        for spec, message in cases:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                             "--listen", "127.0.0.1:0", "--fault", spec])
            self.assertEqual(r.returncode, 2, (spec, r.stderr))
            first = r.stderr.splitlines()[0]
            self.assertIn(message, first)
            self.assertIn("SPEC is hold-idle-completion:D", first)

    def test_no_fault_no_marks(self):
        px = self.proxy()
        im = imaplib.IMAP4("127.0.0.1", px.port)
        im.login("alice", PASSWORD)
        im.select("INBOX")
        im.noop()
        im.logout()
        self.closed(px)
        self.assertNotIn("FAULT", px.stderr_text())
        self.assertFalse([r for r in px.timeline() if r["dir"] == "~"])
        self.assertFalse(self.fault_events())
        with open(self.pcap, "rb") as f:
            self.assertNotIn(b"imaptap fault", f.read())
        if shutil.which("tshark") is not None:
            self.assertEqual(tshark.fields(self.pcap, "syslog", "frame.number"), [])


class FaultTLSTest(ProxyTestCase, unittest.TestCase):
    """Faults act on the plaintext whatever the legs run."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=TMP)
        cls.pki = TestPKI(os.path.join(cls.tmp, "pki"))
        crt, key = cls.pki.server("localhost", "127.0.0.1")
        cls.dc = Dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt,
                         ssl_key=key).start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def client_context(self, ca):
        return ssl.create_default_context(cafile=os.path.join(ca, "ca.crt"))

    def test_split_and_held_idle_over_implicit_tls_both_legs(self):
        ca = tempfile.mkdtemp(prefix="ca-", dir=self.tmp)
        px = self.start_proxy(self.dc.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", self.pki.ca_cert,
            "--client-tls", "implicit", "--ca", ca, "--done-stall", "0.5",
            "--fault", "split:s2c:random:3", "--fault", "hold-idle-completion:1s"])
        m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=self.client_context(ca))
        m.login("alice", PASSWORD)
        m.select("INBOX")
        body = make_message(30000, tag="tls-split")
        m.append("INBOX", None, None, body)
        typ, data = m.fetch("*", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], body)
        m.send(b"i1 IDLE\r\n")
        while not m.readline().startswith(b"+"):
            pass
        m.send(b"DONE\r\n")
        t0 = time.monotonic()
        while not m.readline().startswith(b"i1 "):
            pass
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "!" and r["text"].startswith("done-stall i1 (resolved)"))
        self.assertIn("(client TLS, upstream TLS)", px.stderr_text())

    def test_answer_bad_with_starttls_on_both_legs(self):
        ca = tempfile.mkdtemp(prefix="ca-", dir=self.tmp)
        px = self.start_proxy(self.dc.port, extra_args=[
            "--upstream-tls", "starttls", "--upstream-ca", self.pki.ca_cert,
            "--client-tls", "starttls", "--ca", ca, "--fault", "answer:CREATE:BAD"])
        m = imaplib.IMAP4("localhost", px.port)
        m.starttls(self.client_context(ca))
        m.login("alice", PASSWORD)
        with self.assertRaises(imaplib.IMAP4.error) as caught:
            m.create("Refused")
        self.assertIn("imaptap fault injected", str(caught.exception))
        typ, _ = m.noop()
        self.assertEqual(typ, "OK")
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "P<" and "BAD imaptap fault injected" in r["text"])


class LoopbackCapture:
    """tshark on the loopback interface, for the segment sizes the proxy
    wrote to the client."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "loopback.pcap")
        self.proc = None
        self.port = None

    def start(self, port):
        self.port = port
        self.err = open(self.path + ".err", "wb")
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", "tcp src port %d" % port, "-w", self.path],
            stdout=subprocess.DEVNULL, stderr=self.err)
        wait_for(lambda: b"Capturing on" in open(self.path + ".err", "rb").read(),
                 timeout=20, what="tshark capturing")

    def sizes(self):
        """Payload sizes of the proxy's segments to the client, in order."""
        time.sleep(0.5)  # the last segments reach the capture
        self.proc.terminate()
        self.proc.wait(10)
        self.err.close()
        rows = tshark.fields(self.path, "tcp.len > 0", "tcp.len")
        return [int(r[0]) for r in rows]


if __name__ == "__main__":
    main()
