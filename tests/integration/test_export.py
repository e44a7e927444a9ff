#!/usr/bin/env python3
"""imaptap export: recordings written back as transcript scripts that
`imaptap compile` turns into the same TCP streams.

    python3 tests/integration/test_export.py [--imaptap build/imaptap] [-v]

The streams are compared as tests/capture_dump reads them (the pcap reader
and the reassembly, below analyze): the same bytes in the same segments,
at the same times, with the same closes and windows. Recordings: every
scenario in tests/scenarios/, the proxy's pcap of two overlapping imaplib
sessions against a real Dovecot, hostile bytes, a capture that lost a
segment; and the errors.
"""

import glob
import imaplib
import os
import random
import re
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from capturedump import Dump  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
import pcapfile  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PASSWORD = "Exp0rt-s3cret"
TMP = None
DC = None

HOSTILE = r"""S: * OK ready
C: a1 LOGIN alice secret
S: a1 OK done
S= * OK \x1b]0;owned\x07 title \xc2\x9b31m\r\n
S= * 1 FETCH (BODY[] {12}\r\n
S= abc\x00def\r\ngh)\r\n
S: * OK [ALERT] call us {5}
C= a2 NOOP \r\n
C= a3 NO\nOP\r\n
S= a2 OK trailing space \r\n
S= bare lf\n
S= lone \r cr\tand tab\r\n
+1.234567s
S: * 2 FETCH (BODY[] {3}
S~ xyz
S: )
window client closed
+2s
window client open
S= * 3 FETCH (BODY[] {100}\r\n
S= only some of it\r\n
+2s
reset server
"""


def setUpModule():
    global TMP, DC
    check_binary()
    TMP = module_tmpdir("imaptap-export-")
    DC = module_dovecot(users={"alice": PASSWORD})


def scratch(name):
    return os.path.join(tempfile.mkdtemp(dir=TMP), name)


def tcp_events(dump):
    """The TCP events of a capture, without the reader's counts."""
    return [e for e in dump.events if e["kind"] in ("open", "data", "gap", "window", "close")]


def relative(dump, session):
    """A session's events with times from its open and no addresses: what
    a script keeps of a session that overlapped another."""
    evs = dump.session_events(session)
    t0 = [e for e in evs if e["kind"] == "open"][0]["ts"]
    out = []
    for e in evs:
        e = dict(e, ts=e["ts"] - t0)
        e.pop("session", None)
        out.append(e)
    return out


class ExportTest(ProxyTestCase, unittest.TestCase):
    def export(self, pcap, *args, expect_rc=0):
        out = scratch("x.imap")
        r = run_imaptap(["export", pcap, "-o", out] + list(args), timeout=120)
        self.assertEqual(r.returncode, expect_rc, r.stderr)
        with open(out, "rb") as f:
            return out, f.read(), r

    def compile(self, script, start=None):
        pcap = scratch("y.pcap")
        args = ["compile", script, "-o", pcap]
        if start is not None:
            args += ["--start", start]
        r = run_imaptap(args, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return pcap

    def start_of(self, text):
        m = re.search(rb"--start (\d+\.\d{6}) keeps the recorded times", text)
        self.assertIsNotNone(m, text[:300])
        return m.group(1).decode()

    def assertSafeText(self, text):
        bad = [b for b in set(text) if not (0x20 <= b <= 0x7e or b == 0x0a)]
        self.assertEqual(bad, [], "bytes that are not printable ASCII in the script")

    def round_trip(self, pcap):
        """export, compile at the recorded start: the same TCP streams."""
        path, text, _ = self.export(pcap)
        again = self.compile(path, self.start_of(text))
        self.assertEqual(tcp_events(Dump(again)), tcp_events(Dump(pcap)))
        return text

    def round_trip_units(self, pcap):
        """A capture cut into segments other than the proxy's: compile
        writes one segment per framed unit, so what must come back is each
        direction's bytes, and the units at their times: the script of the
        compiled file is the script again."""
        path, text, _ = self.export(pcap)
        self.assertSafeText(text)
        again = self.compile(path, self.start_of(text))
        orig, back = Dump(pcap), Dump(again)
        for d in ("c2s", "s2c"):
            self.assertEqual(back.stream(1, d), orig.stream(1, d))
        text2 = self.export(again)[1]
        strip = lambda t: t.split(b"\n", 1)[1]  # noqa: E731 (the source's name)
        self.assertEqual(strip(text2), strip(text))

    def test_every_scenario_round_trips(self):
        scenarios = sorted(glob.glob(os.path.join(ROOT, "tests", "scenarios", "*.imap")))
        self.assertGreater(len(scenarios), 3)
        for src in scenarios:
            with self.subTest(scenario=os.path.basename(src)):
                pcap = self.compile(src)
                text = self.round_trip(pcap)
                self.assertSafeText(text)
                # the scenario's lines come back as they were written
                with open(src, "rb") as f:
                    written = [ln for ln in f.read().split(b"\n")
                               if ln[:2] in (b"C:", b"S:", b"C~", b"S~")]
                got = [ln for ln in text.split(b"\n") if ln[:2] in (b"C:", b"S:", b"C~", b"S~")]
                self.assertEqual(got, written)

    def test_hostile_bytes_escaped_and_kept(self):
        src = scratch("hostile.imap")
        with open(src, "w") as f:
            f.write(HOSTILE)
        pcap = self.compile(src)
        text = self.round_trip(pcap)
        self.assertSafeText(text)
        for expected in (rb"S= * OK \x1b]0;owned\x07 title \xc2\x9b31m\r\n",
                         rb"S= * OK [ALERT] call us {5}\r\n",   # no literal follows it
                         rb"S= a2 OK trailing space \r\n",
                         b"window client closed", b"window client open",
                         b"reset server", b"+1.234567s"):
            self.assertIn(expected, text)
        # the literal the connection ended inside of: raw from its head on
        self.assertIn(rb"S= * 3 FETCH (BODY[] {100}\r\n", text)
        self.assertNotIn(b"S: * 3 FETCH", text)
        # standard output gives the same script
        r = run_imaptap(["export", pcap], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.export(pcap)[0], "rb") as f:
            self.assertEqual(r.stdout.encode(), f.read())

    def test_dovecot_recording_with_overlapping_sessions(self):
        pcap = scratch("rec.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        body = ("From: Alice <alice@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
                "X-Tab:\there\r\nX-Trailing: space \r\n\r\n" + "x" * 3000 + "\r\nend\r\n")
        a = imaplib.IMAP4("127.0.0.1", px.port)
        a.login("alice", PASSWORD)
        a.select("INBOX")
        typ, _ = a.append("INBOX", None, None, body.encode())
        self.assertEqual(typ, "OK")
        b = imaplib.IMAP4("127.0.0.1", px.port)     # opens while a is open
        b.login("alice", PASSWORD)
        b.select("INBOX", readonly=True)
        b.search(None, "ALL")
        typ, data = a.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        b.logout()
        a.logout()
        px.wait_for_row(lambda r: len([x for x in px.timeline() if x["dir"] == "--"
                                       and x["text"].startswith("close")]) >= 2, timeout=20)
        px.stop()
        orig = Dump(pcap)
        self.assertEqual(orig.sessions(), [1, 2])
        path, text, r = self.export(pcap)
        self.assertSafeText(text)
        self.assertIn(b"# began ", text)            # session 2 overlapped session 1
        self.assertIn("runs them one after the other", r.stderr)
        self.assertNotIn(PASSWORD.encode(), text)   # the proxy masked it
        self.assertRegex(text, rb'\nC: [A-Z]+\d+ LOGIN alice "\*+"\n')
        self.assertIn(b"S~ end", text)               # the body's last line, as text
        again = Dump(self.compile(path, self.start_of(text)))
        # the first session to the microsecond; the second from its start
        self.assertEqual(tcp_events(again)[:len(orig.session_events(1))],
                         [e for e in tcp_events(orig) if e["session"] == 1])
        for s in (1, 2):
            self.assertEqual(relative(again, s), relative(orig, s))
        # one session alone
        path, text, _ = self.export(pcap, "--session", "2")
        self.assertEqual(text.count(b"=== session"), 1)
        alone = Dump(self.compile(path, self.start_of(text)))
        self.assertEqual(relative(alone, 1), relative(orig, 2))

    def test_random_streams_round_trip(self):
        """Streams of the bytes that move a framer (braces, counts, quotes,
        CR, LF, NUL, ESC), real literals among them, cut into random
        segments: every one comes back the same."""
        rng = random.Random(20261205)
        pieces = [b"{", b"}", b"{5}", b"{3+}", b"~{2}", b"\"", b"\\", b"\r", b"\n", b"\r\n",
                  b" ", b"\x00", b"\x1b[2J", b"a1", b"*", b"+", b"OK", b"FETCH", b"(", b")",
                  b"\xff", b"\t", b"x" * 40]
        for n in range(40):
            flow = pcapfile.TcpFlow((bytes([10, 0, 1, n]), 40000 + n),
                                    (bytes([10, 0, 2, 1]), 143)).open()
            for _ in range(rng.randint(5, 40)):
                side = rng.randint(0, 1)
                data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
                if rng.random() < 0.3:      # a literal that is sent whole
                    k = rng.randint(0, 30)
                    data += b"{%d}\r\n" % k + bytes(rng.choice(b"ab\r\n{}") for _ in range(k))
                for i in range(0, len(data), rng.randint(1, 20)):
                    flow.send(side, data[i:i + 20])
            if n % 2:   # half end their last lines; in the others the end cuts them
                flow.send(0, b"x" * 40 + b"\r\n").send(1, b"x" * 40 + b"\r\n")
            flow.close()
            pcap = scratch("random%d.pcap" % n)
            pcapfile.write_pcap(pcap, flow.records)
            with self.subTest(flow=n):
                self.round_trip_units(pcap)

    def test_a_long_session_and_a_literal_cut_by_a_reset(self):
        """Past the size at which a session's script goes out in pieces: a
        megabyte of lines, then a literal the reset cuts after 600 KB."""
        lines = ["S: * OK ready", "C: a1 FETCH 1:* (FLAGS)"]
        lines += ["S: * %d FETCH (FLAGS (\\Seen) UID %d)" % (i, i) for i in range(1, 25000)]
        lines += ["S: a1 OK done", "C: a2 FETCH 1 BODY[]",
                  "S= * 1 FETCH (BODY[] {2000000}\\r\\n"]
        lines += ["S= line %06d of a body that never ends\\r\\n" % i for i in range(15000)]
        lines += ["reset server"]
        src = scratch("long.imap")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        text = self.round_trip(self.compile(src))
        self.assertIn(b"S= * 1 FETCH (BODY[] {2000000}\\r\\n", text)
        self.assertIn(b"S: * 24999 FETCH (FLAGS (\\Seen) UID 24999)", text)

    def test_since_and_until(self):
        """An excerpt: the part of an IDLE around the ignored DONE still
        shows the bug; before --since and after --until is left out."""
        pcap = self.compile(os.path.join(ROOT, "tests", "scenarios", "gmail-ignores-done.imap"))
        data = [e for e in Dump(pcap).events if e["kind"] == "data"]
        done = [e for e in data if bytes.fromhex(e["hex"]) == b"DONE\r\n"][0]["ts"]
        idle = [e for e in data if bytes.fromhex(e["hex"]) == b"a3 IDLE\r\n"][0]["ts"]
        since = "%.6f" % ((idle - 1) / 1e6)
        path, text, _ = self.export(pcap, "--since", since)
        self.assertIn(b"# what came before --since is left out", text)
        self.assertNotIn(b"SELECT", text)
        self.assertIn(b"C: a3 IDLE", text)
        self.assertIn(b"C: DONE", text)
        self.assertEqual(self.start_of(text), since)
        excerpt = self.compile(path, self.start_of(text))
        r = run_imaptap(["analyze", excerpt, "--fail-on", "done-stall", "--quiet"], timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        until = "%.6f" % ((done + 1000000) / 1e6)
        path, text, _ = self.export(pcap, "--until", until)
        self.assertIn(b"C: DONE", text)
        self.assertNotIn(b"IDLE terminated", text)
        self.assertIn(b"# what came after --until is left out", text)
        self.compile(path)
        # nothing in the window, or a window the wrong way round: usage errors
        r = run_imaptap(["export", pcap, "--since", "2000000000"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("nothing in", r.stderr)
        r = run_imaptap(["export", pcap, "--since", until, "--until", since])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run_imaptap(["export", pcap, "--since", "yesterday"])
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_lost_bytes_marked_and_exit_1(self):
        flow = pcapfile.TcpFlow((bytes([10, 0, 0, 1]), 50200), (bytes([10, 0, 0, 2]), 143)).open()
        flow.send(1, b"* OK ready\r\n")
        flow.send(0, b"a1 NOOP\r\n")
        flow.seq[1] += 12                           # a segment the capture missed
        flow.send(1, b"a1 OK done\r\n")
        flow.close()
        pcap = scratch("gap.pcap")
        pcapfile.write_pcap(pcap, flow.records)
        path, text, r = self.export(pcap, expect_rc=1)
        self.assertIn("lost 12 byte(s) in 1 session(s)", r.stderr)
        self.assertIn(b"# 12 byte(s) of the server's stream are missing here", text)
        self.compile(path)                          # still a script compile takes

    def test_errors(self):
        pcap = self.compile(os.path.join(ROOT, "tests", "scenarios", "pipelined.imap"))
        r = run_imaptap(["export", scratch("none.pcap")])
        self.assertEqual(r.returncode, 3)
        self.assertIn("no such file", r.stderr)
        garbage = scratch("garbage.pcap")
        with open(garbage, "wb") as f:
            f.write(b"\x1b[31mnot a capture\n" * 10)
        r = run_imaptap(["export", garbage])
        self.assertEqual(r.returncode, 3)
        self.assertNotIn("\x1b", r.stderr)
        empty = scratch("empty.pcap")
        pcapfile.write_pcap(empty, [])
        r = run_imaptap(["export", empty])
        self.assertEqual(r.returncode, 3)
        self.assertIn("holds no TCP connection", r.stderr)
        r = run_imaptap(["export", pcap, "--session", "7"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("has 1 session(s), no session 7", r.stderr)
        r = run_imaptap(["export", pcap, "--session", "0"])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run_imaptap(["export", pcap, "--sesion", "1"])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run_imaptap(["export"])
        self.assertEqual(r.returncode, 2, r.stderr)
        out, first, _ = self.export(pcap)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
        with open(out, "wb") as f:
            f.write(b"# edited by hand\n")
        r = run_imaptap(["export", pcap, "-o", out])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("exists", r.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"# edited by hand\n")
        r = run_imaptap(["export", pcap, "-o", out, "--overwrite"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), first)
        # nowhere to write: nothing left behind
        d = tempfile.mkdtemp(dir=TMP)
        r = run_imaptap(["export", pcap, "-o", os.path.join(d, "no", "such", "dir.imap")])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
    main()
