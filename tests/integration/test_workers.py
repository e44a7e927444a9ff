#!/usr/bin/env python3
"""`imaptap proxy --workers N`: several event loops on one port.

Many clients at once against a real Dovecot through two loops: every loop
serves some of them, sessions are numbered once across the loops, the
event log, the pcap and the timeline are each one file in time order, and
analyze of the pcap finds every session once. --max-sessions holds across
the loops, a second run cannot quietly share the port, and a shutdown
closes the sessions of every loop.

    python3 tests/integration/test_workers.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import re
import signal
import socket
import struct
import sys
import time
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RawIMAP, RecordingIMAP4  # noqa: E402
from pcapfile import tcp_packets  # noqa: E402
from imaptap import Proxy, ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot  # noqa: E402

PASSWORD = "w0rkers-Pa55"
DC = None
CLIENTS = 24


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD, "bob": PASSWORD},
                        extra_conf="protocol imap {\n  mail_max_userip_connections = 100\n}\n")


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def loop_cpu(pid):
    """CPU ticks (user + system) of each event loop thread, by name: the
    first loop is the main thread, the others are named imaptap-loopN."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm") as f:
                name = f.read().strip()
            with open(base + "stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if tid == str(pid):
            name = "imaptap-loop1"
        if name.startswith("imaptap-loop"):
            out[name] = int(fields[11]) + int(fields[12])
    return out


def busy_client(port, user, errors):
    try:
        m = RecordingIMAP4("127.0.0.1", port)
        m.login(user, PASSWORD)
        m.select("INBOX")
        for _ in range(30):
            if m.noop()[0] != "OK":
                raise AssertionError("NOOP failed")
        m.logout()
    except Exception as e:  # reported by the test
        errors.append(repr(e))


class WorkersTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-workers-")

    def test_many_clients_through_two_loops_make_one_recording_in_time_order(self):
        pcap = os.path.join(self.dir, "w.pcap")
        events = os.path.join(self.dir, "w.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--workers", "2", "--pcap", pcap,
                                                   "--events", events])
        threads, errors = [], []
        for i in range(CLIENTS):
            t = threading.Thread(target=busy_client,
                                 args=(px.port, "alice" if i % 2 else "bob", errors))
            threads.append(t)
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        cpu = loop_cpu(px.pid)
        self.assertEqual(sorted(cpu), ["imaptap-loop1", "imaptap-loop2"], cpu)
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())

        # one numbering across the loops: 1..CLIENTS, each opened and closed once
        recs = records(events)
        opened = [r["session"] for r in recs if r["kind"] == "session-open"]
        closed = [r["session"] for r in recs if r["kind"] == "session-close"]
        self.assertEqual(sorted(opened), list(range(1, CLIENTS + 1)))
        self.assertEqual(sorted(closed), list(range(1, CLIENTS + 1)))
        # one file in time order
        stamps = [r["epoch"] for r in recs if "epoch" in r]
        self.assertGreater(len(stamps), CLIENTS * 30)
        self.assertEqual(stamps, sorted(stamps), "the event log is out of time order")
        # every session's lines are whole and its own: 30 NOOP completions each
        noops = {}
        for r in recs:
            if r["kind"] == "completion" and r.get("command") == "NOOP":
                noops[r["session"]] = noops.get(r["session"], 0) + 1
        self.assertEqual(noops, {n: 30 for n in range(1, CLIENTS + 1)})

        # both loops did work: the kernel spread the clients among them
        self.assertTrue(all(v > 0 for v in cpu.values()), cpu)

        # the pcap: in time order, and analyze finds every session once
        pstamps = [p[0] for p in tcp_packets(pcap)]
        self.assertEqual(pstamps, sorted(pstamps), "the pcap is out of time order")
        out = os.path.join(self.dir, "a.jsonl")
        r = run_imaptap(["analyze", pcap, "--color", "never", "--events", out], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        again = records(out)
        self.assertEqual(sorted(x["session"] for x in again if x["kind"] == "session-open"),
                         list(range(1, CLIENTS + 1)))
        self.assertEqual(len([x for x in again if x["kind"] == "completion"
                              and x.get("command") == "NOOP"]), CLIENTS * 30)

        # the timeline: one row per line, never two rows run together
        rows = [ln for ln in px.stderr_text().splitlines() if re.match(r"^\d\d:\d\d:\d\d\.\d{6} ", ln)]
        self.assertGreater(len(rows), CLIENTS * 60)
        self.assertFalse([ln for ln in rows if len(re.findall(r"\d\d:\d\d:\d\d\.\d{6} ", ln)) > 1])

    def test_a_live_reader_gets_every_loop_s_packets_in_time_order(self):
        """--pcap-listen's readers are served by the first loop and written
        to by every loop: one stream, whole records, in time order, the
        same packets as the pcap file, while one reader comes and goes."""
        pcap = os.path.join(self.dir, "live.pcap")
        px = self.start_proxy(DC.port, extra_args=["--workers", "2", "--pcap", pcap,
                                                   "--pcap-listen", "127.0.0.1:0"])
        m = None
        for _ in range(200):
            m = re.search(r"serving the capture live on 127\.0\.0\.1:(\d+)", px.stderr_text())
            if m:
                break
            time.sleep(0.05)
        self.assertIsNotNone(m, px.stderr_text())
        live_port = int(m.group(1))
        reader = socket.create_connection(("127.0.0.1", live_port))
        got = bytearray()

        def read_all():
            while True:
                chunk = reader.recv(65536)
                if not chunk:
                    return
                got.extend(chunk)
        t = threading.Thread(target=read_all)
        t.start()
        threads, errors = [], []
        for i in range(CLIENTS):
            th = threading.Thread(target=busy_client, args=(px.port, "alice", errors))
            threads.append(th)
            th.start()
            if i == CLIENTS // 2:  # a reader that comes and goes meanwhile
                socket.create_connection(("127.0.0.1", live_port)).close()
        for th in threads:
            th.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())
        t.join(30)
        reader.close()
        data = bytes(got)
        self.assertEqual(struct.unpack("<I", data[:4])[0], 0xA1B2C3D4)
        stamps, at = [], 24
        while at + 16 <= len(data):
            sec, usec, caplen, _ = struct.unpack("<IIII", data[at:at + 16])
            self.assertLessEqual(at + 16 + caplen, len(data), "a record cut short")
            stamps.append(sec * 1000000 + usec)
            at += 16 + caplen
        self.assertEqual(at, len(data))
        self.assertEqual(stamps, sorted(stamps), "the live stream is out of time order")
        self.assertEqual(len(stamps), len(list(tcp_packets(pcap))), px.stderr_tail(8))

    def test_max_sessions_holds_across_loops(self):
        px = self.start_proxy(DC.port, extra_args=["--workers", "2", "--max-sessions", "3"])
        conns = [RawIMAP(px.port) for _ in range(8)]
        try:
            firsts = [c.readline() for c in conns]
        finally:
            for c in conns:
                c.close()
        greeted = [f for f in firsts if f.startswith(b"* OK")]
        refused = [f for f in firsts if f.startswith(b"* BYE [UNAVAILABLE]")]
        self.assertEqual((len(greeted), len(refused)), (3, 5), firsts)

    def test_a_second_run_cannot_share_the_port(self):
        px = self.start_proxy(DC.port, extra_args=["--workers", "2"])
        for workers in ("2", "1"):
            second = Proxy(DC.port, listen="127.0.0.1:%d" % px.port,
                           extra_args=["--workers", workers])
            with self.assertRaises(Exception):
                second.start(timeout=10)
            second.stop()
            self.assertEqual(second.returncode, 3, second.stderr_text())
            self.assertIn("another program uses this port", second.stderr_text())
            second.cleanup()
        # the first one still serves, alone
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.logout()

    def test_shutdown_closes_the_sessions_of_every_loop(self):
        events = os.path.join(self.dir, "s.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--workers", "2", "--events", events])
        clients = []
        for _ in range(12):
            m = RecordingIMAP4("127.0.0.1", px.port)
            m.login("alice", PASSWORD)
            clients.append(m)
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())
        self.assertIn("stopping; 12 session(s) open", px.stderr_text())
        ends = [(r["by"], r["end"]) for r in records(events) if r["kind"] == "session-close"]
        self.assertEqual(ends, [("proxy", "shutdown")] * 12)
        for m in clients:
            try:
                m.shutdown()
            except OSError:
                pass

    def test_workers_must_be_a_number_in_range(self):
        for bad in ("0", "65", "two", ""):
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                             "--workers", bad])
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn("--workers takes a number from 1 to 64", r.stderr)


if __name__ == "__main__":
    main()
