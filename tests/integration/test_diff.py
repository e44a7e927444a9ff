#!/usr/bin/env python3
"""imaptap diff: two recordings of a scenario compared at the protocol
level, with real imaplib sessions against a real Dovecot recorded by the
proxy, and compiled scripts for what a real server will not do on demand
(a slow command, hostile names).

    python3 tests/integration/test_diff.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "D1ff-s3cret"
TMP = None
DC = None


def setUpModule():
    global TMP, DC
    check_binary()
    TMP = module_tmpdir("imaptap-diff-")
    # bob's mailbox for the CONDSTORE test alone: once a session enabled
    # CONDSTORE, Dovecot answers every later SELECT with HIGHESTMODSEQ
    DC = module_dovecot(users={"alice": PASSWORD, "bob": PASSWORD}, messages=3)


def scratch(name):
    return os.path.join(tempfile.mkdtemp(dir=TMP), name)


def idle(m):
    """IDLE and DONE with imaplib's own plumbing (it has no IDLE)."""
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    m.send(b"DONE\r\n")
    m._get_tagged_response(tag)


class DiffTest(ProxyTestCase, unittest.TestCase):
    def record(self, condstore=False, use_idle=True, user="alice"):
        """One imaplib session through the proxy; its pcap."""
        pcap = scratch("run.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login(user, PASSWORD)
        if condstore:
            m._simple_command("ENABLE", "CONDSTORE")
        m.select("INBOX")
        m.fetch("1:*", "(UID FLAGS)")
        if use_idle:
            idle(m)
        m.noop()
        m.logout()
        px.wait_for_row(lambda r: any(x["dir"] == "--" and x["text"].startswith("close")
                                      for x in px.timeline()), timeout=20)
        px.stop()
        return pcap

    def diff(self, a, b, *args, rc=None):
        r = run_imaptap(["diff", a, b] + list(args), timeout=120)
        if rc is not None:
            self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
        return r

    def test_same_scenario_twice_is_the_same(self):
        a, b = self.record(), self.record()
        r = self.diff(a, b, rc=0)
        self.assertIn("0 difference(s)", r.stdout)

    def test_a_client_that_stopped_using_idle(self):
        a, b = self.record(use_idle=True), self.record(use_idle=False)
        r = self.diff(a, b, rc=1)
        self.assertRegex(r.stdout, r"- IDLE \(\w+\), command \d+ of A, only in A")
        self.assertIn("1 difference(s)", r.stdout)
        r = self.diff(a, b, "--events", "-", rc=1)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(recs[-1], {"kind": "diff-summary", "differences": 1,
                                    "sessions_a": 1, "sessions_b": 1})
        self.assertEqual((recs[0]["what"], recs[0]["only"], recs[0]["command"]),
                         ("command", "a", "IDLE"))

    def test_select_without_highestmodseq(self):
        b = self.record(condstore=False, user="bob")     # first: see setUpModule
        a = self.record(condstore=True, user="bob")
        r = self.diff(a, b, rc=1)
        self.assertIn("- ENABLE", r.stdout)
        self.assertRegex(r.stdout, r"~ SELECT \(\w+ / \w+\): untagged OK \[HIGHESTMODSEQ\] only in A")
        self.assertIn("ENABLED CONDSTORE only in A", r.stdout)
        out = scratch("events.jsonl")
        self.diff(a, b, "--events", out, "--quiet", rc=1)
        with open(out) as f:
            whats = {json.loads(line).get("what") for line in f}
        self.assertTrue({"command", "untagged", "enabled"} <= whats, whats)

    def compile(self, text):
        src, pcap = scratch("s.imap"), scratch("s.pcap")
        with open(src, "w") as f:
            f.write(text)
        r = run_imaptap(["compile", src, "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        return pcap

    def test_latency_only_with_a_factor(self):
        script = ("S: * OK ready\nC: a1 SELECT INBOX\n%sS: a1 OK done\nC: a2 NOOP\n"
                  "S: a2 BAD no\n")
        fast, slow = self.compile(script % ""), self.compile(script % "+3s\n")
        self.diff(fast, slow, rc=0)
        r = self.diff(fast, slow, "--time-factor", "10", rc=1)
        self.assertIn("~ SELECT (a1 / a1): latency 1.000 ms / 3000.000 ms", r.stdout)
        self.diff(fast, slow, "--time-factor", "10", "--time-floor", "5s", rc=0)
        other = self.compile(script.replace("a2 BAD no", "a2 OK [ALERT] yes") % "")
        r = self.diff(fast, other, rc=1)
        self.assertIn("~ NOOP (a2 / a2): BAD / OK", r.stdout)
        self.assertIn("~ NOOP (a2 / a2): response code [] / [ALERT]", r.stdout)

    def test_hostile_names_reach_no_terminal(self):
        a = self.compile("S: * OK ready\nC= a1 \\x1b]0;x\\x07LOGIN\\r\\n\nS: a1 OK done\n"
                         "S= * CAPABILITY IMAP4rev1 \\x1b[31mRED\\r\\n\n")
        b = self.compile("S: * OK ready\nC: a1 NOOP\nS: a1 OK done\n")
        r = self.diff(a, b, rc=1)
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("\\x1b", r.stdout)

    def test_errors(self):
        b = self.compile("S: * OK ready\nC: a1 NOOP\nS: a1 OK done\n")
        r = run_imaptap(["diff", scratch("missing.pcap"), b])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("missing.pcap", r.stderr)
        for args in (["diff", b], ["diff", b, b, b], ["diff", b, b, "--time-factor", "0.5"],
                     ["diff", b, b, "--time-floor", "soon"], ["diff", b, b, "--bogus"]):
            r = run_imaptap(args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
        r = run_imaptap(["diff", b, b, "--events", os.path.join(scratch("d"), "no", "x")])
        self.assertEqual(r.returncode, 3, r.stderr)


if __name__ == "__main__":
    main()
