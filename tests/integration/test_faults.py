#!/usr/bin/env python3
"""Injected faults (`imaptap proxy --fault SPEC`) over real sockets, against
a real Dovecot and real clients: each fault must make its bug happen, be
marked as injected in the timeline, the event log and the pcap, and leave
everything else as it was; without --fault nothing is marked. A split's
pieces are counted at the receiving socket (TCP_INFO data segments): one
segment per piece, plain and over TLS, in both directions.

    python3 tests/integration/test_faults.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import os
import re
import shutil
import socket
import ssl
import struct
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
from imaptap import (ProxyTestCase, check_binary, completion_of, main,  # noqa: E402
                     run_imaptap)
from dovecot import Dovecot  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, read_events  # noqa: E402
from node import NodeError, ensure_node_clients, imapflow_session  # noqa: E402
from scripted import ScriptedServer  # noqa: E402

PASSWORD = "fault-secret"
DC = None
TMP = None
# users whose sessions count segments, each with a mailbox of its own
PACED_USERS = ["carol", "dave", "erin", "frank"]

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in
TCP_INFO_SIZE = 232
DATA_SEGS_IN_AT = 152


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-faults-")
    users = {name: PASSWORD for name in ["alice", "bob"] + PACED_USERS}
    DC = module_dovecot(users=users, rawlog=True)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %.0f s" % (what, timeout))
        time.sleep(0.02)


def split_pieces(seed, total):
    """How many pieces split:DIR:random:SEED cuts total bytes into (the
    generator of imap/split.c)."""
    mask = (1 << 64) - 1
    state = (seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & mask or 1
    pieces = done = 0
    while done < total:
        state ^= state >> 12
        state ^= (state << 25) & mask
        state ^= state >> 27
        r = (state * 0x2545F4914F6CDD1D) & mask
        done += 1 + (r >> 8) % 16 if r & 3 else 1 + (r >> 8) % 4096
        pieces += 1
    return pieces


def segmented_session(port, user, body, ca=None):
    """LOGIN, SELECT, APPEND of body, FETCH of it and LOGOUT to the
    server's close on a raw socket (over TLS from the first byte when ca is
    a CA directory). Returns the client (sent, received: plaintext) and the
    data segments its socket received, TLS handshake included."""
    im = RawIMAP(port, timeout=60)
    if ca is not None:
        ctx = ssl.create_default_context(cafile=os.path.join(ca, "ca.crt"))
        im.sock = ctx.wrap_socket(im.sock, server_hostname="localhost")
    try:
        im.read_greeting()
        im.login_at = (len(im.sent), len(im.received))
        _, status = im.command("a1", "LOGIN %s %s" % (user, PASSWORD))
        assert status == "OK", im.received
        im.command("a2", "SELECT INBOX")
        im.send(b"a3 APPEND INBOX {%d}\r\n" % len(body))
        im.expect_continuation()
        im.send(body + b"\r\n")
        assert im.read_until_tagged("a3")[-1].startswith(b"a3 OK"), im.received[-300:]
        resps, status = im.command("a5", "FETCH * (BODY.PEEK[])")
        assert status == "OK" and body in b"".join(resps), resps[-1]
        im.send(b"a6 LOGOUT\r\n")
        try:
            im.read_until_eof(timeout=30)
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        info = im.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
        return im, struct.unpack_from("I", info, DATA_SEGS_IN_AT)[0]
    finally:
        im.close()


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
            # one-byte writes, each its own segment, where without the
            # fault the FETCH of 20 kB takes a handful
            self.assertGreater(len(sizes), 1000, sizes[:50])
            self.assertEqual(set(sizes), {1}, sizes[:50])

    def test_split_random_relays_identical_bytes_in_seeded_pieces(self):
        sizes = self.split_roundtrip("split:s2c:random:7", "bob")
        if sizes is not None:
            # mostly short pieces (1-16 bytes), some long ones
            self.assertGreater(len(sizes), 30, sizes[:50])
            self.assertGreater(len([n for n in sizes if n <= 16]), len(sizes) // 2, sizes[:50])

    # ---- split: each piece its own TCP segment ---------------------------

    def paced_session(self, spec, user, tls=False, size=3000):
        """segmented_session through a proxy with the fault (over TLS on
        the client leg when tls), checked byte for byte against what
        Dovecot's rawlog says it got and sent. Returns (bytes the client
        received, data segments its socket received)."""
        extra = []
        if tls:
            ca = tempfile.mkdtemp(prefix="ca-", dir=TMP)
            extra = ["--client-tls", "implicit", "--ca", ca]
        px = self.proxy(spec, extra=extra)
        body = make_message(size, tag="paced")
        im, segments = segmented_session(px.port, user, body, ca=ca if tls else None)
        self.closed(px)
        s0, r0 = im.login_at
        sent = bytes(im.sent[s0:])
        sent = sent[sent.index(b"\r\n") + 2:]
        received = bytes(im.received)
        sess = DC.wait_rawlog_session(user, lambda x: x["in"] == sent)
        self.assertTrue(received[r0:].endswith(sess["out"]),
                        "the client did not get the bytes the server sent")
        self.assertGreater(len(sess["out"]), len(body))
        if spec.startswith("split"):
            self.assertEqual(self.fault_rows(px, "split", "active")[0]["session"], 1)
        return received, segments

    def test_split_byte_sends_each_byte_in_a_segment_of_its_own(self):
        received, segments = self.paced_session("split:s2c:byte", "carol")
        self.assertGreaterEqual(segments, len(received))

    def test_split_byte_over_tls_sends_each_byte_in_a_record_and_segment_of_its_own(self):
        received, segments = self.paced_session("split:s2c:byte", "dave", tls=True)
        # a TLS record per byte, a segment per record
        self.assertGreaterEqual(segments, len(received))

    def test_split_random_sends_each_piece_in_a_segment_of_its_own(self):
        received, segments = self.paced_session("split:s2c:random:1", "erin", size=60000)
        # at least the seed's pieces (more where nothing was queued)
        self.assertGreaterEqual(segments, split_pieces(1, len(received)))
        self.assertLess(segments, len(received) / 100)

    def test_split_random_over_tls_sends_each_piece_in_a_record_and_segment_of_its_own(self):
        received, segments = self.paced_session("split:s2c:random:1", "frank", tls=True,
                                                size=60000)
        self.assertGreaterEqual(segments, split_pieces(1, len(received)))

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

    # ---- hide-capability --------------------------------------------------

    def test_hide_capability_in_the_greeting_and_after_login(self):
        px = self.proxy("hide-capability:MOVE,QRESYNC,AUTH=LOGIN")
        m = imaplib.IMAP4("127.0.0.1", px.port)
        self.assertNotIn("AUTH=LOGIN", m.capabilities)     # the greeting's list
        self.assertIn("AUTH=PLAIN", m.capabilities)
        m.login("alice", PASSWORD)
        typ, data = m.capability()                       # after login
        caps = data[0].decode().upper().split()
        self.assertEqual(typ, "OK")
        self.assertNotIn("MOVE", caps)
        self.assertNotIn("QRESYNC", caps)
        self.assertIn("CONDSTORE", caps)
        m.select("INBOX")
        m.append("INBOX", None, None, make_message(300, tag="hide"))
        m.create("Hidden")
        # a client that uses MOVE anyway: the server does it, the rules say
        # the client used what it was not offered
        typ, _ = m._simple_command("MOVE", "1", "Hidden")
        self.assertEqual(typ, "OK")
        m.logout()
        self.closed(px)
        rules = [e["rule"] for e in read_events(self.events) if e["kind"] == "anomaly"]
        self.assertIn("capability-not-advertised", rules)
        self.assertGreaterEqual(len(self.fault_events(action="hide-capability", phase="inject")), 2)
        # the timeline shows the server's list and the one the client got
        rows = px.timeline()
        self.assertTrue(any(r["dir"] == "P<" and r["text"].startswith("* CAPABILITY")
                            and " MOVE" not in r["text"] for r in rows), rows[-20:])
        self.assert_pcap_marks("hide-capability")

    # ---- max-connections -------------------------------------------------

    def test_max_connections_refuses_past_the_limit_as_gmail_does(self):
        px = self.proxy("max-connections:2")
        a = imaplib.IMAP4("127.0.0.1", px.port)
        a.login("alice", PASSWORD)
        b = imaplib.IMAP4("127.0.0.1", px.port)
        b.login("alice", PASSWORD)
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            imaplib.IMAP4("127.0.0.1", px.port)
        self.assertIn("BYE [ALERT] Too many simultaneous connections", str(refused.exception))
        self.closed(px, session=3)
        a.logout()
        self.closed(px, session=1)
        c = imaplib.IMAP4("127.0.0.1", px.port)        # one left: room again
        c.login("alice", PASSWORD)
        c.select("INBOX")
        c.logout()
        b.logout()
        self.closed(px, session=4)
        marks = self.fault_events(action="max-connections")
        self.assertEqual([(e["session"], e["phase"]) for e in marks], [(3, "inject")])
        self.assertEqual(len(self.fault_rows(px, "max-connections", "inject")), 1)
        rows = [r for r in px.timeline() if r["session"] == 3]
        self.assertTrue(any(r["dir"] == "P<" and "[ALERT] Too many" in r["text"] for r in rows), rows)
        self.assertTrue(any("close by proxy (fault max-connections:2)" in r["text"] for r in rows),
                        rows)
        # Dovecot never saw the third connection: sessions 1, 2 and 4 logged in
        self.assertEqual(len([e for e in read_events(self.events) if e["kind"] == "completion"
                              and e.get("command") == "LOGIN"]), 3)
        self.assert_pcap_marks("max-connections")

    def test_bye_after_idle_when_it_lasts_without_done(self):
        px = self.proxy("bye-after-idle:1s")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        c.command("a2", "SELECT INBOX")
        # an IDLE ended in time: nothing happens
        c.send(b"a3 IDLE\r\n")
        c.expect_continuation()
        time.sleep(0.3)
        c.send(b"DONE\r\n")
        c.read_until_tagged("a3")
        time.sleep(1.2)                  # past the first IDLE's second
        resps, status = c.command("a4", "NOOP")
        self.assertEqual(status, "OK", resps)
        # one that lasts: the BYE, then the close
        started = time.monotonic()
        c.send(b"a5 IDLE\r\n")
        c.expect_continuation()
        rest = c.read_until_eof()
        self.assertTrue(rest.startswith(b"* BYE imaptap fault injected (bye-after-idle:1s)"), rest)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        c.close()
        self.closed(px)
        self.assertEqual([e["phase"] for e in self.fault_events(action="bye")], ["active", "inject",
                                                                                 "close"])

    # ---- end-idle-early ---------------------------------------------------

    def anomaly_rules(self):
        return [e["rule"] for e in read_events(self.events) if e["kind"] == "anomaly"]

    def test_end_idle_early_ok_before_the_continuation_as_exchange_did(self):
        px = self.proxy("end-idle-early")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        c.command("a2", "SELECT INBOX")
        c.send(b"a3 IDLE\r\n")
        # no DONE sent: the IDLE's OK comes, then the server's +
        resps = c.read_until_tagged("a3")
        self.assertTrue(resps[-1].startswith(b"a3 OK imaptap fault injected (end-idle-early)"),
                        resps)
        self.assertTrue(c.readline().startswith(b"+"))
        # a client that sends DONE anyway: the server answers it, a stray line
        c.send(b"DONE\r\n")
        self.assertTrue(c.readline().startswith(b"DONE BAD"))
        resps, status = c.command("a4", "NOOP")
        self.assertEqual(status, "OK", resps)
        c.command("a5", "LOGOUT")
        c.read_until_eof()
        c.close()
        self.closed(px)
        # one completion of a3 reached the client: the proxy's, not the server's
        self.assertEqual(c.received.count(b"\r\na3 "), 1, c.received)
        # the server's IDLE was ended by the proxy's DONE, then the client's came
        sess = DC.wait_rawlog_session(
            "alice", lambda x: b"a3 IDLE\r\nDONE\r\nDONE\r\na4 NOOP" in x["in"])
        self.assertIn(b"a3 OK Idle completed", sess["out"])
        self.assertEqual([(e["phase"], e["dir"]) for e in self.fault_events(action="end-idle-early")],
                         [("active", "s2c"), ("inject", "s2c"), ("inject", "c2s"),
                          ("drop", "s2c")])
        rules = self.anomaly_rules()
        # the rules see what the client saw: a server that ended IDLE and
        # then sent a +, and a client's stray DONE, answered as expected
        self.assertIn("completion-before-done", rules)
        self.assertIn("unexpected-continuation", rules)
        self.assertIn("stray-done", rules)
        for wrong in ("unknown-tag", "done-stall", "duplicate-tag", "command-stall"):
            self.assertNotIn(wrong, rules)
        rows = px.timeline()
        self.assertFalse(any(r["dir"] == "S<" and r["text"].startswith("a3 ") for r in rows), rows)
        self.assertEqual(len(self.fault_rows(px, "end-idle-early", "drop")), 1)
        self.assert_pcap_marks("end-idle-early")
        # offline, the pcap of the client's leg tells the same story
        offline = os.path.join(self.dir, "offline.jsonl")
        r = run_imaptap(["analyze", self.pcap, "--events", offline], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        events = read_events(offline)
        self.assertEqual(sorted(e["rule"] for e in events if e["kind"] == "anomaly"),
                         sorted(rules))
        self.assertEqual([e["phase"] for e in events if e["kind"] == "fault"
                          and e["action"] == "end-idle-early"],
                         ["active", "inject", "inject", "drop"])

    def test_end_idle_early_after_a_time_and_a_client_that_needs_no_done(self):
        px = self.proxy("end-idle-early:600ms")
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN alice "%s"' % PASSWORD)
        c.command("a2", "SELECT INBOX")
        # an IDLE the client ends in time: nothing happens
        c.send(b"a3 IDLE\r\n")
        c.expect_continuation()
        c.send(b"DONE\r\n")
        self.assertTrue(c.read_until_tagged("a3")[-1].startswith(b"a3 OK Idle completed"))
        time.sleep(0.8)                  # past the first IDLE's time
        # one that lasts: the OK comes after the + without DONE
        c.send(b"a4 IDLE\r\n")
        c.expect_continuation()
        started = time.monotonic()
        resps = c.read_until_tagged("a4")
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertTrue(resps[-1].startswith(b"a4 OK imaptap fault injected (end-idle-early:600ms)"),
                        resps)
        # the client takes the OK as the end of IDLE and goes on
        resps, status = c.command("a5", "STATUS INBOX (MESSAGES)")
        self.assertEqual(status, "OK", resps)
        c.command("a6", "LOGOUT")
        c.read_until_eof()
        c.close()
        self.closed(px)
        self.assertEqual(c.received.count(b"\r\na4 "), 1, c.received)
        self.assertEqual([e["phase"] for e in self.fault_events(action="end-idle-early")],
                         ["active", "inject", "inject", "drop"])
        rules = self.anomaly_rules()
        self.assertIn("completion-before-done", rules)
        for wrong in ("stray-done", "unknown-tag", "done-stall", "unexpected-continuation"):
            self.assertNotIn(wrong, rules)

    def test_end_idle_early_imapflow_takes_the_ok_and_sends_no_done(self):
        try:
            ensure_node_clients()
        except NodeError as e:
            self.skipTest(str(e))
        for spec in ("end-idle-early:100ms", "end-idle-early"):
            with self.subTest(spec=spec):
                px = self.proxy(spec)
                # imapflow idles, then ends IDLE for a NOOP 300 ms later
                result = imapflow_session("127.0.0.1", px.port, "alice", PASSWORD,
                                          script="imapflow_idle.mjs", timeout=60)
                self.assertIsNotNone(result["messagesAfter"], result)
                self.closed(px)
                rows = px.timeline()
                # it took the proxy's OK as the end of IDLE: no DONE of its own
                self.assertFalse(any(r["dir"] == "C>" and r["text"] == "DONE" for r in rows),
                                 px.stderr_tail())
                self.assertTrue(any(r["dir"] == "P<" and r["text"].startswith(
                    "9 OK imaptap fault injected (%s)" % spec) for r in rows), px.stderr_tail())
                rules = self.anomaly_rules()
                self.assertIn("completion-before-done", rules)
                self.assertNotIn("stray-done", rules)
                self.assertNotIn("unknown-tag", rules)
                self.assertEqual(
                    "unexpected-continuation" in rules, spec == "end-idle-early", rules)
                self.assertEqual([e["phase"] for e in self.fault_events(
                    action="end-idle-early")], ["active", "inject", "inject", "drop"])

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

    def test_respond_code_throttled_on_the_second_status(self):
        px = self.proxy("respond-code:THROTTLED:STATUS,nth=2")
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        self.assertEqual(m.status("INBOX", "(MESSAGES)")[0], "OK")
        typ, data = m.status("INBOX", "(MESSAGES)")
        self.assertEqual(typ, "NO")
        self.assertIn(b"[THROTTLED] imaptap fault injected (respond-code:THROTTLED:STATUS,nth=2)",
                      data[0])
        self.assertEqual(m.status("INBOX", "(MESSAGES)")[0], "OK")  # in step with the server
        m.logout()
        self.closed(px)
        self.assertEqual(len(self.fault_events(action="answer", phase="inject")), 1)
        statuses = [e for e in read_events(self.events) if e["kind"] == "completion"
                    and e.get("command") == "STATUS"]
        self.assertEqual([e["status"] for e in statuses], ["OK", "NO", "OK"])

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
            # the settings mark, first, and no fault mark
            self.assertEqual(tshark.fields(self.pcap, "syslog", "frame.number"), [["1"]])
            msgs = tshark.fields(self.pcap, "syslog", "syslog.msgid")
            self.assertEqual(len(msgs), 1)
            self.assertTrue(msgs[0][0].startswith("settings"), msgs)


class PersonaTest(ProxyTestCase, unittest.TestCase):
    """--persona NAME: each fault of the bundle acts, with --fault options
    added to it, and the start-up lines name the persona."""

    proxy = FaultTest.proxy
    closed = FaultTest.closed
    fault_events = FaultTest.fault_events

    def active_lines(self, px):
        # printed right after the port file is written: wait for them
        deadline = time.monotonic() + 10
        while "FAULT ACTIVE" not in px.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        return [l for l in px.stderr_text().splitlines() if "FAULT ACTIVE" in l]

    def idle_session(self, px):
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command("a1", 'LOGIN bob "%s"' % PASSWORD)
        c.command("a2", "SELECT INBOX")
        c.send(b"a3 IDLE\r\n")
        return c

    def test_gmail_limits_connections_and_holds_idle_completion(self):
        px = self.proxy(extra=["--persona", "gmail", "--done-stall", "1"])
        lines = self.active_lines(px)
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(all("--persona gmail: --fault " in l for l in lines), lines)
        # the 16th connection open at once is refused as Gmail does
        opened = [imaplib.IMAP4("127.0.0.1", px.port) for _ in range(15)]
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            imaplib.IMAP4("127.0.0.1", px.port)
        self.assertIn("BYE [ALERT] Too many simultaneous connections", str(refused.exception))
        self.closed(px, session=16)
        for m in opened:
            m.shutdown()
        for n in range(1, 16):
            self.closed(px, session=n)
        # IDLE's completion after DONE is held: the client waits
        c = self.idle_session(px)
        c.expect_continuation()
        c.send(b"DONE\r\n")
        c.sock.settimeout(2.5)
        with self.assertRaises(socket.timeout):
            c.readline()
        px.wait_for_row(lambda r: r["session"] == 17 and r["dir"] == "!"
                        and r["text"].startswith("done-stall a3"))
        c.close()               # the hold outlasts the test: no close to wait for
        self.assertEqual([(e["session"], e["phase"]) for e in self.fault_events(
            action="max-connections")], [(16, "inject")])
        self.assertEqual([e["phase"] for e in self.fault_events(
            action="hold-idle-completion", session=17)], ["active", "start"])
        rules = [e["rule"] for e in read_events(self.events) if e["kind"] == "anomaly"]
        self.assertIn("done-stall", rules)

    def test_outlook_ends_idle_before_done(self):
        px = self.proxy(extra=["--persona", "outlook"])
        lines = self.active_lines(px)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--persona outlook: --fault end-idle-early", lines[0])
        c = self.idle_session(px)
        resps = c.read_until_tagged("a3")
        self.assertTrue(resps[-1].startswith(b"a3 OK imaptap fault injected (end-idle-early)"),
                        resps)
        self.assertTrue(c.readline().startswith(b"+"))
        resps, status = c.command("a4", "NOOP")
        self.assertEqual(status, "OK", resps)
        c.command("a5", "LOGOUT")
        c.read_until_eof()
        c.close()
        self.closed(px)
        self.assertEqual([e["phase"] for e in self.fault_events(action="end-idle-early")],
                         ["active", "inject", "inject", "drop"])

    def test_yahoo_offers_no_idle_and_takes_faults_added_to_it(self):
        px = self.proxy("answer:CREATE:NO", extra=["--persona", "yahoo"])
        lines = self.active_lines(px)
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("--fault answer:CREATE:NO", lines[0])
        self.assertIn("--persona yahoo: --fault hide-capability:IDLE", lines[1])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        self.assertNotIn("IDLE", m.capabilities)       # the greeting's list
        m.login("bob", PASSWORD)
        typ, data = m.capability()
        self.assertEqual(typ, "OK")
        self.assertNotIn("IDLE", data[0].decode().upper().split())
        self.assertIn("UIDPLUS", data[0].decode().upper().split())
        typ, data = m.create("YahooFolder")           # the --fault added to it
        self.assertEqual(typ, "NO")
        m.logout()
        self.closed(px)
        self.assertGreaterEqual(len(self.fault_events(action="hide-capability", phase="inject")), 2)
        self.assertEqual(len(self.fault_events(action="answer", phase="inject")), 1)


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

    def test_end_idle_early_over_implicit_tls_both_legs(self):
        """The proxy's DONE goes over the upstream's TLS, the OK over the
        client's."""
        ca = tempfile.mkdtemp(prefix="ca-", dir=self.tmp)
        px = self.start_proxy(self.dc.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", self.pki.ca_cert,
            "--client-tls", "implicit", "--ca", ca, "--fault", "end-idle-early:200ms"])
        m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=self.client_context(ca),
                              timeout=10)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        m.send(b"i1 IDLE\r\n")
        while not m.readline().startswith(b"+"):
            pass
        line = m.readline()
        self.assertTrue(line.startswith(b"i1 OK imaptap fault injected"), line)
        typ, _ = m.noop()          # the server left IDLE: it answers at once
        self.assertEqual(typ, "OK")
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "~" and r["text"].startswith(
            "fault end-idle-early s2c drop"))

    def test_max_connections_over_a_tls_client_leg(self):
        """The BYE comes over the client's TLS, once its handshake is done."""
        ca = tempfile.mkdtemp(prefix="ca-", dir=self.tmp)
        px = self.start_proxy(self.dc.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", self.pki.ca_cert,
            "--client-tls", "implicit", "--ca", ca, "--fault", "max-connections:1"])
        m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=self.client_context(ca))
        m.login("alice", PASSWORD)
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            imaplib.IMAP4_SSL("localhost", px.port, ssl_context=self.client_context(ca))
        self.assertIn("Too many simultaneous connections", str(refused.exception))
        m.logout()

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

    def test_hide_capability_in_the_greeting_made_after_upstream_starttls(self):
        """The proxy's own greeting, made from what came over its upstream
        STARTTLS, loses the hidden names too."""
        px = self.start_proxy(self.dc.port, extra_args=[
            "--upstream-tls", "starttls", "--upstream-ca", self.pki.ca_cert,
            "--fault", "hide-capability:IDLE"])
        m = imaplib.IMAP4("localhost", px.port)
        self.assertNotIn("IDLE", m.capabilities)
        self.assertIn("IMAP4REV1", m.capabilities)
        m.login("alice", PASSWORD)
        typ, data = m.capability()
        self.assertNotIn("IDLE", data[0].decode().upper().split())
        m.logout()


def data_segments_in(sock):
    """Data segments the socket received so far (TCP_INFO)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    return struct.unpack_from("I", info, DATA_SEGS_IN_AT)[0]


class SplitScriptedTest(ProxyTestCase, unittest.TestCase):
    """split toward a scripted server that counts the data segments it
    got (plain and over TLS), and coalesce from one that writes each
    answer in three pieces."""

    COMMANDS = [b"a1 CAPABILITY", b"a2 NOOP", b"a3 SELECT INBOX", b"a4 NOOP", b"a5 LOGOUT"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(dir=TMP)
        cls.pki = TestPKI(os.path.join(cls.tmp, "pki"))
        cls.crt, cls.key = cls.pki.server("localhost", "127.0.0.1")

    def counting_server(self, result, tls=False):
        """Greets, answers each command with OK (LOGOUT with BYE and OK,
        then closes), and puts what it received and the data segments of
        its socket into result."""
        def script(peer):
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.crt, self.key)
                peer.sock = ctx.wrap_socket(peer.sock, server_side=True)
            peer.send(b"* OK scripted server ready\r\n")
            got = bytearray()
            while True:
                line = peer.line()
                got += line
                literal = re.search(rb"\{(\d+)\+\}\r\n$", line)
                if literal:  # a non-synchronising literal and the line's end
                    got += peer.exactly(int(literal.group(1)))
                    got += peer.line()
                tag = line.split(b" ", 1)[0]
                if line.startswith(tag + b" LOGOUT"):
                    peer.send(b"* BYE scripted server logging out\r\n" + tag + b" OK LOGOUT\r\n")
                    break
                peer.send(tag + b" OK done\r\n")
            result["received"] = bytes(got)
            result["segments"] = data_segments_in(peer.sock)
        return ScriptedServer(script)

    def client(self, port):
        """Sends commands one at a time, each after the last one's answer
        (an APPEND of 3000 bytes in one write among them), and reads to
        the close. Returns (sent, received)."""
        body = make_message(3000, tag="c2s")
        im = RawIMAP(port, timeout=60)
        try:
            im.read_greeting()
            for command in [b"a1 NOOP", b"a2 APPEND INBOX {%d+}\r\n%s" % (len(body), body),
                            b"a3 NOOP", b"a4 LOGOUT"]:
                tag = command.split(b" ", 1)[0]
                im.send(command + b"\r\n")
                im.read_until_tagged(tag)
            im.read_until_eof(timeout=30)
            return bytes(im.sent), bytes(im.received)
        finally:
            im.close()

    def c2s_byte(self, tls):
        result = {}
        srv = self.counting_server(result, tls=tls)
        extra = ["--fault", "split:c2s:byte"]
        if tls:
            extra += ["--upstream-tls", "implicit", "--upstream-ca", self.pki.ca_cert]
        px = self.start_proxy(srv.port, extra_args=extra)
        sent, _ = self.client(px.port)
        srv.join()
        self.assertEqual(result["received"], sent)
        return result

    def test_split_c2s_byte_sends_each_byte_in_a_segment_of_its_own(self):
        result = self.c2s_byte(tls=False)
        self.assertGreaterEqual(result["segments"], len(result["received"]))

    def test_split_c2s_byte_over_tls_sends_each_byte_in_a_record_and_segment_of_its_own(self):
        result = self.c2s_byte(tls=True)
        self.assertGreaterEqual(result["segments"], len(result["received"]))

    def test_split_coalesce_gathers_a_turn_written_in_pieces(self):
        pieces = [b"* OK ", b"scripted server ", b"ready\r\n"]

        def script(peer):
            peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def in_pieces(answer):
                for piece in answer:  # three writes 1 ms apart
                    peer.send(piece)
                    time.sleep(0.001)
            in_pieces(pieces)
            for i in range(1, 5):
                peer.line()
                in_pieces([b"* 1 EXISTS\r\n", b"* 0 RECENT\r\n", b"a%d OK done\r\n" % i])
            peer.line()
            peer.send(b"* BYE bye\r\na5 OK LOGOUT\r\n")

        def session(spec):
            srv = ScriptedServer(script)
            px = self.start_proxy(srv.port, extra_args=["--fault", spec] if spec else [])
            im = RawIMAP(px.port, timeout=60)
            try:
                im.read_greeting()
                for command in self.COMMANDS:
                    tag = command.split(b" ", 1)[0]
                    im.send(command + b"\r\n")
                    im.read_until_tagged(tag)
                im.read_until_eof(timeout=30)
                segments = data_segments_in(im.sock)
            finally:
                im.close()
            srv.join()
            return bytes(im.received), segments

        plain, apart = session(None)
        coalesced, together = session("split:s2c:coalesce")
        self.assertEqual(coalesced, plain)
        self.assertTrue(plain.startswith(b"* OK scripted server ready\r\n"), plain)
        turns = len(self.COMMANDS) + 1
        # one segment per turn (a turn cut by the 20 ms window at most once)
        self.assertLessEqual(together, turns + 1, (together, apart))
        self.assertGreater(apart, together, (together, apart))


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
