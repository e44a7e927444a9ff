#!/usr/bin/env python3
"""imaptap analyze: the same rows from a pcap as the live proxy printed,
foreign captures (tshark on the client leg) read to the same bytes as the
proxy's own pcap, gaps reported, --fail-on, bad files.

    python3 tests/integration/test_analyze.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import pcapfile  # noqa: E402
from memory_tls import MemoryTLS, tls_contexts  # noqa: E402
from certs import TestPKI  # noqa: E402
from clients import RecordingIMAP4, appenduid, make_message  # noqa: E402
from imaptap import (ProxyTestCase, check_binary, imaptap_bin, main,  # noqa: E402
                     parse_timeline, run_imaptap)
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from test_pcap_reader import Dump, Tshark  # noqa: E402

PASSWORD = "Analyze-S3cret-5"
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-analyze-")
    DC = module_dovecot(users={"alice": PASSWORD})



def session(port, size=100000):
    m = RecordingIMAP4("127.0.0.1", port)
    m.port = m.local_port
    m.login("alice", PASSWORD)
    m.select("INBOX")
    uid = appenduid(m.append("INBOX", None, None, make_message(size, "analyze")))
    m.uid("FETCH", str(uid), "(BODY.PEEK[])")
    m.idle_done(b"I001", wait=0.2)
    m.logout_to_eof()
    return m


def line_rows(rows):
    """(ts, dir, text) of the IMAP line rows; a line the proxy wrote (P<)
    is, in a capture, simply what the server side sent (S<)."""
    return [(r["ts"], "S<" if r["dir"] == "P<" else r["dir"], r["text"])
            for r in rows if r["dir"] in ("C>", "S<", "P<")]


def drop_packet(src, dst, predicate):
    """Copies a classic pcap without the first record predicate(bytes)
    accepts; returns that record's payload."""
    with open(src, "rb") as f:
        data = f.read()
    out = bytearray(data[:24])
    off, dropped = 24, None
    while off + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        rec = data[off:off + 16 + caplen]
        off += 16 + caplen
        if dropped is None and predicate(rec[16:]):
            dropped = rec[16:]
            continue
        out += rec
    with open(dst, "wb") as f:
        f.write(out)
    return dropped


SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios")


class RuleTimingTest(unittest.TestCase):
    """A waiting rule fires at the packet time its threshold passes, with
    the threshold's wait, as the live timer fires it: not at the next
    packet, with however long that came later."""

    def rows(self, scenario):
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "s.pcap")
        r = run_imaptap(["compile", os.path.join(SCENARIOS, scenario), "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_imaptap(["analyze", pcap, "--color", "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_done_stall_at_its_threshold(self):
        out = self.rows("gmail-ignores-done.imap")
        done = re.search(r"^(\d\d):(\d\d):(\d\d\.\d+) #1 C> DONE$", out, re.M)
        stall = re.search(r"^(\d\d):(\d\d):(\d\d\.\d+) #1 ! done-stall \S+: DONE sent "
                          r"(\S+) s ago", out, re.M)
        self.assertTrue(done and stall, out)
        at = lambda m: int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))  # noqa
        self.assertAlmostEqual(at(stall) - at(done), 5.0, places=3)
        self.assertEqual(stall.group(4), "5.000")

    def test_client_not_reading_at_its_threshold(self):
        out = self.rows("client-stops-reading.imap")
        self.assertIn("! client-not-reading: client not reading: its TCP window has been "
                      "closed for 10.000 s", out)


def tls_exchange(pki):
    """Real TLS records (OpenSSL through Python's ssl, in memory): the
    handshake, then a LOGIN and its OK, as [(side, bytes)], 0 the client."""
    cctx, sctx = tls_contexts(pki, "tlscap")
    out = []
    tls = MemoryTLS(cctx, sctx, lambda side, data: out.append((side, data)))
    tls.say(0, b"a1 LOGIN alice secret\r\n")
    tls.say(1, b"a1 OK logged in\r\n")
    return out


class TlsCaptureTest(unittest.TestCase):
    """A capture of IMAP inside TLS (a tcpdump of port 993, or a STARTTLS
    session) without its secrets names the session once, where its TLS
    starts, and shows no rows of TLS bytes (test_analyze_keylog.py
    decrypts such captures)."""

    def capture(self, starttls):
        pki = TestPKI(tempfile.mkdtemp(dir=TMP))
        flow = pcapfile.TcpFlow((bytes([10, 0, 0, 1]), 50100), (bytes([10, 0, 0, 2]), 993))
        flow.open()
        if starttls:
            flow.send(1, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
            flow.send(0, b"s1 STARTTLS\r\n")
            flow.send(1, b"s1 OK Begin TLS negotiation now\r\n")
        for side, data in tls_exchange(pki):
            flow.send(side, data)
        flow.close()
        path = os.path.join(tempfile.mkdtemp(dir=TMP), "tls.pcap")
        pcapfile.write_pcap(path, flow.records)
        return run_imaptap(["analyze", path, "--color", "never"], timeout=60)

    def test_implicit_tls(self):
        r = self.capture(starttls=False)
        self.assertEqual(r.returncode, 3, r.stderr)
        rows = parse_timeline(r.stdout)
        said = [x for x in rows if "not decrypted" in x["text"] and "--keylog" in x["text"]]
        self.assertEqual(len(said), 1, r.stdout)
        self.assertEqual(rows[1], said[0], "not at the top")
        self.assertFalse([x for x in rows if x["dir"] in ("C>", "S<")], r.stdout)
        self.assertNotIn("\\x16", r.stdout)

    def test_after_starttls(self):
        r = self.capture(starttls=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = parse_timeline(r.stdout)
        self.assertEqual([x["text"] for x in rows if x["dir"] in ("C>", "S<")][:3],
                         ["* OK [CAPABILITY IMAP4rev1 STARTTLS] ready", "s1 STARTTLS",
                          "s1 OK Begin TLS negotiation now  (STARTTLS 1.000 ms)"])
        self.assertEqual(len([x for x in rows if "not decrypted" in x["text"]]), 1)
        self.assertFalse([x for x in rows if x["dir"] in ("C>", "S<")][3:], r.stdout)
        self.assertNotIn("\\x", r.stdout)


class WindowTest(unittest.TestCase):
    """--session N,M, --since/--until (ISO 8601 or epoch) and --utc on a
    capture with known times: the scenario compiled to start at
    2026-12-05T16:00:00Z."""

    START = 1796486400

    @classmethod
    def setUpClass(cls):
        d = tempfile.mkdtemp(dir=TMP)
        one = os.path.join(SCENARIOS, "gmail-ignores-done.imap")
        cls.pcap = os.path.join(d, "s.pcap")
        r = run_imaptap(["compile", one, "-o", cls.pcap, "--start", str(cls.START)])
        assert r.returncode == 0, r.stderr

    def rows(self, *args, rc=0):
        r = run_imaptap(["analyze", self.pcap, "--color", "never", "--utc"] + list(args),
                        timeout=60)
        self.assertEqual(r.returncode, rc, r.stderr)
        return parse_timeline(r.stdout), r

    def test_utc_clock(self):
        rows, _ = self.rows()
        self.assertEqual(rows[0]["ts"], "16:00:00.000000")
        self.assertEqual(rows[-1]["ts"], "16:01:30.022000")

    def test_since_until_iso_and_epoch(self):
        rows, r = self.rows("--since", "2026-12-05T16:01:00Z", "--until",
                            "2026-12-05T17:01:10+01:00")
        self.assertEqual([(x["dir"], x["text"][:40]) for x in rows],
                         [("C>", "DONE"),
                          ("!", "done-stall a3: DONE sent 5.000 s ago, no")])
        # the whole-capture totals still come
        self.assertIn("== anomalies: done-stall 1", r.stdout)
        same, _ = self.rows("--since", str(self.START + 60), "--until", str(self.START + 70))
        self.assertEqual(same, rows)
        # an event log through the same window
        r = run_imaptap(["analyze", self.pcap, "--quiet", "--events", "-",
                         "--since", "2026-12-05T16:01:00.5Z"], timeout=60)
        kinds = [json.loads(x)["kind"] for x in r.stdout.splitlines()]
        self.assertNotIn("session-open", kinds)
        self.assertIn("session-close", kinds)
        self.assertEqual(kinds[:2], ["run-start", "anomaly"])

    def test_width(self):
        cap = "* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN"
        rows, _ = self.rows("--width", "20")
        line = [x for x in rows if x["text"].startswith("* CAPABILITY IMAP4re")][0]
        self.assertRegex(line["text"], r"^\* CAPABILITY IMAP4re\.\.\. \(\d+ bytes\)$")
        rows, _ = self.rows("--width", "0")
        whole = [x for x in rows if x["text"].startswith(cap)][0]
        self.assertNotIn("...", whole["text"])
        self.assertTrue(whole["text"].endswith("AUTH=OAUTHBEARER"), whole["text"])
        r = run_imaptap(["analyze", self.pcap, "--width", "-3"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--width takes a number of bytes (0: whole lines)", r.stderr)

    def test_session_list_and_bad_values(self):
        rows, _ = self.rows("--session", "1")
        self.assertTrue(rows)
        _, r = self.rows("--session", "1,2", rc=2)
        self.assertIn("there is no session 2", r.stderr)
        for args, words in ((["--session", "1,x"], "--session takes numbers from 1"),
                            (["--since", "yesterday"], "--since takes a time"),
                            (["--until", "2026-12-05T25:00:00Z"], "--until takes a time"),
                            (["--since", "2026-12-05T16:01:00Z", "--until", "1796486400"],
                             "--since comes after --until")):
            r = run_imaptap(["analyze", self.pcap] + args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(words, r.stderr)


class AnalyzeTest(ProxyTestCase, unittest.TestCase):
    def analyze(self, path, *args, rc=0):
        r = run_imaptap(["analyze", path, "--color", "never"] + list(args), timeout=120)
        self.assertEqual(r.returncode, rc, r.stdout[-2000:] + r.stderr)
        return r

    def test_rows_match_the_live_timeline(self):
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "live.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        live = px.timeline()
        r = self.analyze(pcap)
        offline = parse_timeline(r.stdout)
        self.assertGreater(len(line_rows(live)), 20)
        self.assertEqual(line_rows(offline), line_rows(live))
        # the same summary, word for word
        summ = lambda rows: [x["text"] for x in rows  # noqa: E731
                             if x["dir"] == "--" and x["text"].startswith("summary")]
        self.assertEqual(summ(offline), summ(live))
        self.assertTrue(summ(live))
        # a clean capture passes --fail-on all
        self.analyze(pcap, "--fail-on", "all", "--quiet")

    def test_events_on_stdout_and_nothing_else(self):
        """analyze F --events - | jq . works: stdout holds the event log
        alone, the timeline goes to stderr."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "live.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        r = self.analyze(pcap, "--events", "-")
        kinds = [json.loads(line)["kind"] for line in r.stdout.splitlines()]
        self.assertEqual(kinds[:3], ["run-start", "settings", "session-open"])
        self.assertEqual(kinds[-2:], ["session-close", "capture-summary"])
        whole = json.loads(r.stdout.splitlines()[-1])
        self.assertEqual(whole["sessions"], 1)
        self.assertEqual(whole["ended"], [{"by": "server", "end": "eof", "count": 1}])
        names = [c["name"] for c in whole["commands"]]
        self.assertIn("UID FETCH", names)
        self.assertEqual(whole["anomalies"], {})
        rows = parse_timeline(r.stderr)
        self.assertTrue([x for x in rows if x["dir"] == "C>"], r.stderr[-2000:])
        jq = subprocess.run("%s analyze %s --events - | jq -c .kind" % (
            shlex.quote(imaptap_bin()), shlex.quote(pcap)), shell=True,
            capture_output=True, text=True, timeout=120)
        self.assertEqual(jq.returncode, 0, jq.stderr[-2000:])
        self.assertEqual([json.loads(x) for x in jq.stdout.splitlines()], kinds)

    def test_tshark_capture_reads_like_the_proxy_pcap(self):
        d = tempfile.mkdtemp(dir=TMP)
        own = os.path.join(d, "own.pcap")
        foreign = os.path.join(d, "tshark.pcapng")
        px = self.start_proxy(DC.port, extra_args=["--pcap", own, "--no-redact"])
        ts = Tshark(foreign, "lo", px.port).spawn()
        try:
            ts.wait_capturing()
            ts.sync()
            m = session(px.port, size=300000)
            sid = [x["session"] for x in px.timeline() if x["dir"] == "--"
                   and x["text"].startswith("open 127.0.0.1:%d " % m.port)][0]
            px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close")
                            and r["session"] == sid)
        finally:
            ts.stop()
        mine, theirs = Dump(own), Dump(foreign)
        s1 = mine.session_of_client_port(m.port)
        s2 = theirs.session_of_client_port(m.port)
        for direction in ("c2s", "s2c"):
            a, gaps_a = mine.stream(s1, direction)
            b, gaps_b = theirs.stream(s2, direction)
            self.assertEqual(gaps_a, [])
            self.assertEqual(gaps_b, [])
            self.assertEqual(a, b, direction)
        self.assertEqual(bytes(m.sent), mine.stream(s1, "c2s")[0])
        # and analyze says the same lines about both
        rows_own = [(x["dir"], x["text"]) for x in parse_timeline(
            self.analyze(own, "--no-redact", "--session", str(s1)).stdout)
            if x["dir"] in ("C>", "S<")]
        self.assertGreater(len(rows_own), 20)
        rows_foreign = [(x["dir"], x["text"]) for x in parse_timeline(
            self.analyze(foreign, "--no-redact", "--session", str(s2)).stdout)
            if x["dir"] in ("C>", "S<")]
        # the same lines; the latencies differ by where the clocks stood
        strip = lambda rows: [(d, re.sub(r"  \([A-Z ]+ [^)]*\)$", "", t))  # noqa: E731
                              for d, t in rows]
        self.assertEqual(strip(rows_foreign), strip(rows_own))

    def test_missing_segment_is_a_gap(self):
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "whole.pcap")
        cut = os.path.join(d, "cut.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        dropped = drop_packet(pcap, cut, lambda p: b"SELECT INBOX" in p)
        self.assertIsNotNone(dropped)
        r = self.analyze(cut)
        rows = parse_timeline(r.stdout)
        gap = [x for x in rows if x["dir"] == "!" and x["text"].startswith("capture-gap")]
        self.assertEqual(len(gap), 1, r.stdout[-3000:])
        n = len(dropped) - 54     # Ethernet, IPv4 and TCP headers
        self.assertIn("%d byte(s) of the client's stream are missing" % n, gap[0]["text"])
        self.assertIn("byte(s) missing from the capture", r.stderr)
        r = self.analyze(cut, "--quiet", "--fail-on", "capture-gap,done-stall", rc=1)
        self.assertIn("capture-gap 1", r.stderr)
        # the rest of the session is still read
        self.assertTrue([x for x in rows if x["text"].startswith("I001 OK")])

    def test_bad_input(self):
        d = tempfile.mkdtemp(dir=TMP)
        empty = os.path.join(d, "empty.pcap")
        open(empty, "wb").close()
        text = os.path.join(d, "notes.txt")
        with open(text, "w") as f:
            f.write("this is not a capture\n" * 10)
        for path, words in [(empty, "empty"), (text, "not a pcap or pcapng file"),
                            (d, "directory"), (os.path.join(d, "nope.pcap"), "no such file")]:
            r = run_imaptap(["analyze", path])
            self.assertEqual(r.returncode, 3, (path, r.stderr))
            self.assertIn(words, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # TCP, but no IMAP: what an encrypted capture looks like
        script = os.path.join(d, "tls.imap")
        with open(script, "w") as f:
            f.write("C= \\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03\\x8a\\x91\\r\\n\n"
                    "S= \\x16\\x03\\x03\\x00\\x7a\\x02\\x00\\x00\\x76\\xee\\r\\n\n")
        tls = os.path.join(d, "tls.pcap")
        r = run_imaptap(["compile", script, "-o", tls])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_imaptap(["analyze", tls, "--quiet"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("hold IMAP inside TLS but end before their handshake does", r.stderr)
        # TCP, neither IMAP nor TLS: the wrong port
        script = os.path.join(d, "http.imap")
        with open(script, "w") as f:
            f.write("C= \\x00\\x01\\xfe\\xff\\r\\n\nS= \\x00\\x02\\xfd\\r\\n\n")
        http = os.path.join(d, "http.pcap")
        r = run_imaptap(["compile", script, "-o", http])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_imaptap(["analyze", http, "--quiet"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("but no IMAP in them", r.stderr)
        pcap = os.path.join(d, "one.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        c = RecordingIMAP4("127.0.0.1", px.port)
        c.logout_to_eof()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        r = run_imaptap(["analyze", pcap, "--session", "2"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("has 1 TCP session(s); there is no session 2", r.stderr)
        for args, words in [([], "which capture file"), (["a", "b"], "one capture file"),
                            (["x", "--fail-on", "nope"], "no rule 'nope'"),
                            (["x", "--stall", "-1"], "--stall takes a duration"),
                            (["x", "--done-stall", "5x"], "--done-stall takes a duration"),
                            (["x", "--idle-max", "8d"], "--idle-max takes a duration"),
                            (["x", "--keepalive-gap", "0.5us"], "from 1ms to 7 days"),
                            (["x", "--session", "0"], "--session takes numbers from 1")]:
            r = run_imaptap(["analyze"] + args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(words, r.stderr)
        self.assertTrue(re.search(r"--fail-on RULE", run_imaptap(["analyze", "--help"]).stdout))


if __name__ == "__main__":
    main()
