#!/usr/bin/env python3
"""imaptap compile: transcript scripts into pcaps that tshark decodes and
`imaptap analyze` reports; malformed scripts named by line; every scenario
in tests/scenarios/ raises exactly the warnings its @expect line names.

    python3 tests/integration/test_compile.py [--imaptap build/imaptap] [-v]
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import tshark  # noqa: E402
from imaptap import check_binary, main, parse_timeline, run_imaptap  # noqa: E402
from imaptap import module_tmpdir  # noqa: E402

SCENARIOS = os.path.join(HERE, "..", "scenarios")
TMP = None

# The rules of docs/rules.md that are warnings: a scenario names exactly
# those it raises.
WARNINGS = ("command-stall", "done-stall", "done-before-continuation",
            "literal-before-continuation", "command-during-idle", "idle-too-long",
            "client-not-reading", "server-not-reading", "unknown-tag", "duplicate-tag",
            "expunge-during-fetch", "unexpected-continuation", "data-after-bye",
            "parse-error", "completion-before-done", "stray-done", "pending-at-eof",
            "starttls-trailing-data", "compress-stream-error", "keepalive-gap",
            "greeting-stall", "capture-gap")

IDLE_SCRIPT = """\
# the server holds DONE's OK for 30 s, until new mail
@expect done-stall
S: * OK IMAP4rev1 ready
C: a1 LOGIN alice secret
S: a1 OK logged in
C: a2 SELECT INBOX
S: * 1 EXISTS
S: a2 OK [READ-WRITE] selected
C: a3 IDLE
S: + idling
+5s
C: DONE
+30s
S: * 2 EXISTS
S: a3 OK IDLE terminated
C: a4 LOGOUT
S: * BYE
S: a4 OK bye
close server
"""

LITERAL_SCRIPT = """\
@expect none
S: * OK ready
C: a1 APPEND INBOX {11}
S: + go ahead
C~ hello world
C:
S: a1 OK appended
C: a2 FETCH 1 BODY[]
S: * 1 FETCH (BODY[] {12}
S~ hello
S~ world
S: )
S: a2 OK done
"""


def setUpModule():
    global TMP
    check_binary()
    TMP = module_tmpdir("imaptap-compile-")



def expected_rules(text):
    """The rule ids of a script's @expect lines (None without one)."""
    rules = None
    for line in text.splitlines():
        if line.startswith("@expect"):
            rules = rules or set()
            rules |= {w for w in re.split(r"[\s,]+", line[len("@expect"):]) if w}
    return None if rules is None else rules - {"none"}


class CompileTest(unittest.TestCase):
    def write(self, name, text):
        path = os.path.join(tempfile.mkdtemp(dir=TMP), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def compile(self, script, rc=0, *args):
        out = os.path.splitext(script)[0] + ".pcap"
        r = run_imaptap(["compile", script, "-o", out] + list(args))
        self.assertEqual(r.returncode, rc, r.stderr)
        return out, r

    def analyze(self, pcap, *args, rc=0):
        r = run_imaptap(["analyze", pcap, "--color", "never"] + list(args), timeout=60)
        self.assertEqual(r.returncode, rc, r.stdout[-2000:] + r.stderr)
        return r

    def fired_warnings(self, pcap):
        """The warning rules analyze raises on pcap (resolutions aside)."""
        r = self.analyze(pcap, "--quiet", "--events", "-")
        events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        return {e["rule"] for e in events if e["kind"] == "anomaly"
                and e["severity"] == "warning" and not e.get("resolved")
                and not e.get("never_resolved")}

    def test_idle_done_stall(self):
        pcap, _ = self.compile(self.write("idle.imap", IDLE_SCRIPT))
        # (a) Wireshark decodes it, finding nothing wrong
        self.assertEqual(tshark.problems(pcap), [])
        requests = [r[0] for r in tshark.fields(pcap, "imap.request", "imap.request")]
        self.assertIn("a3 IDLE", requests)
        self.assertIn("DONE", requests)
        # the OK comes 30 s after DONE, on the script's clock
        times = {r[1] or r[2]: float(r[0]) for r in
                 tshark.fields(pcap, "imap", "frame.time_epoch", "imap.request",
                               "imap.response")}
        self.assertAlmostEqual(times["a3 OK IDLE terminated"] - times["DONE"], 30.001, places=3)
        # the handshake at the default start, 2026-01-01T00:00:00Z
        first = tshark.fields(pcap, "frame.number == 1", "frame.time_epoch")
        self.assertEqual(float(first[0][0]), 1767225600.0)
        # (b) analyze: done-stall, and none of the other warnings
        self.analyze(pcap, "--quiet", "--fail-on", "done-stall", rc=1)
        others = [w for w in WARNINGS if w != "done-stall"]
        self.analyze(pcap, "--quiet", "--fail-on", ",".join(others))
        # (c) what fired is what @expect says
        self.assertEqual(self.fired_warnings(pcap), expected_rules(IDLE_SCRIPT))
        rows = parse_timeline(self.analyze(pcap).stdout)
        self.assertTrue(any(r["dir"] == "!" and r["text"].startswith("done-stall a3:")
                            for r in rows), rows)

    def test_output_to_stdout_reads_in_tshark(self):
        """-o -: the pcap on standard output, e.g. straight into tshark."""
        script = self.write("pipe.imap", IDLE_SCRIPT)
        r = subprocess.run("%s compile %s -o - | tshark -r - -Y imap -T fields -e imap.line"
                           % (shlex.quote(check_binary()), shlex.quote(script)), shell=True,
                           capture_output=True, text=True, timeout=60, cwd=TMP)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("IDLE", r.stdout)
        self.assertFalse(os.path.exists(os.path.join(TMP, "-")))

    def test_reproducible_and_start(self):
        script = self.write("idle.imap", IDLE_SCRIPT)
        first, _ = self.compile(script)
        with open(first, "rb") as f:
            a = f.read()
        second, _ = self.compile(script)
        with open(second, "rb") as f:
            self.assertEqual(f.read(), a)
        out = os.path.join(os.path.dirname(script), "later.pcap")
        r = run_imaptap(["compile", script, "-o", out, "--start", "1800000000.5"])
        self.assertEqual(r.returncode, 0, r.stderr)
        t = tshark.fields(out, "frame.number == 1", "frame.time_epoch")
        self.assertAlmostEqual(float(t[0][0]), 1800000000.5, places=5)

    def test_literals_show_as_byte_counts(self):
        pcap, _ = self.compile(self.write("literal.imap", LITERAL_SCRIPT))
        self.assertEqual(tshark.problems(pcap), [])
        rows = parse_timeline(self.analyze(pcap).stdout)
        texts = [(r["dir"], r["text"].strip()) for r in rows]
        self.assertIn(("C>", "{11 bytes}"), texts)
        self.assertTrue(any(d == "S<" and t.startswith("{12 bytes}") for d, t in texts), texts)
        # the bytes are exactly the script's, CRLF inside the literal counted
        c, s, _, _ = tshark.follow(pcap, 0)
        self.assertEqual(c, b"a1 APPEND INBOX {11}\r\nhello world\r\na2 FETCH 1 BODY[]\r\n")
        self.assertIn(b"BODY[] {12}\r\nhello\r\nworld)\r\n", s)
        self.assertEqual(self.fired_warnings(pcap), set())

    def test_sessions_and_raw_bytes(self):
        script = ("@expect parse-error\n"
                  "S: * OK one\nC: a1 LOGOUT\nS: * BYE\nS: a1 OK\nclose server\n"
                  "=== session two\n@client 10.1.2.3:40000\n@server 10.1.2.4:1143\n"
                  "S: * OK two\nC= a1 NOOP\\n\nC= a2 \\x00 NOOP\\r\\n\nS: a1 OK\nS: a2 OK\n"
                  "reset client\n")
        pcap, _ = self.compile(self.write("two.imap", script))
        self.assertEqual(tshark.streams(pcap), [0, 1])
        c, _, client, server = tshark.follow(pcap, 1)
        self.assertEqual(c, b"a1 NOOP\na2 \x00 NOOP\r\n")
        self.assertEqual((client, server), ("10.1.2.3:40000", "10.1.2.4:143"))
        self.assertEqual(len(tshark.fields(pcap, "tcp.flags.reset == 1", "frame.number")), 1)
        self.assertEqual(self.fired_warnings(pcap), expected_rules(script))

    def test_malformed_scripts_exit_2_with_the_line(self):
        cases = [
            ("S: * OK\n@expct done-stall\n", ":2:1: unknown directive '@expct'"),
            ("S: * OK\nC: a2 APPEND INBOX {11}\nC~ hello\nC:\n",
             ":4:1: literal announced {11} on line 2 but 7 byte(s) follow"),
            ("S: * OK\n+30 s\n", ":2:2: bad delay"),
        ]
        for text, message in cases:
            script = self.write("bad.imap", text)
            out, r = self.compile(script, 2)
            self.assertIn(script + message, r.stderr)
            self.assertFalse(os.path.exists(out), "no output for a bad script")

    def test_usage_and_io_errors(self):
        missing = os.path.join(TMP, "no-such.imap")
        r = run_imaptap(["compile", missing, "-o", os.path.join(TMP, "x.pcap")])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot read the script %s" % missing, r.stderr)
        script = self.write("ok.imap", LITERAL_SCRIPT)
        r = run_imaptap(["compile", script, "-o", os.path.join(TMP, "no-dir", "x.pcap")])
        self.assertEqual(r.returncode, 3, r.stderr)
        r = run_imaptap(["compile", script])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("-o FILE.pcap is required", r.stderr)
        r = run_imaptap(["compile", script, "-o", "x.pcap", "--start", "soon"])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run_imaptap(["compile", "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: imaptap compile SCRIPT -o FILE.pcap", r.stdout)

    def test_every_scenario_raises_what_it_expects(self):
        scripts = sorted(glob.glob(os.path.join(SCENARIOS, "*.imap")))
        self.assertGreaterEqual(len(scripts), 5)
        for path in scripts:
            with self.subTest(scenario=os.path.basename(path)):
                with open(path) as f:
                    expect = expected_rules(f.read())
                self.assertIsNotNone(expect, "%s has no @expect line" % path)
                out = os.path.join(tempfile.mkdtemp(dir=TMP),
                                   os.path.basename(path)[:-5] + ".pcap")
                r = run_imaptap(["compile", path, "-o", out])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(self.fired_warnings(out), expect)


if __name__ == "__main__":
    main()
