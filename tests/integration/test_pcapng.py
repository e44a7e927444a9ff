#!/usr/bin/env python3
"""pcapng captures: `proxy --pcap FILE.pcapng` against a real Dovecot, judged
by Wireshark's own tools. capinfos validates the file and names imaptap and
the settings; tshark finds the packet comments (frame.comment) where a rule
fired and resolved, a fault acted and a command completed (its latency, and
IDLE's DONE->OK), and `tshark -z expert` lists them; analyze of the pcapng
equals analyze of the same packets as a pcap, and judges by the settings
the file carries. Hostile server text reaches a comment escaped; each file
of a rotation is a whole pcapng; a proxy killed with SIGKILL leaves a file
tshark reads.

    python3 tests/integration/test_pcapng.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from scripted import Peer, ScriptedServer  # noqa: E402

PASSWORD = "Ng-S3cret-4"
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-pcapng-")
    DC = module_dovecot(users={"alice": PASSWORD})
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    m.append("INBOX", None, None, make_message(1500 * 1024, "big"))
    m.logout()


def tool(*argv):
    r = subprocess.run(list(argv), capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def comments(path):
    """(frame number, [comment, ...]) of every frame with comments."""
    rc, out, err = tool("tshark", "-r", path, "-T", "fields", "-E", "occurrence=a",
                        "-E", "aggregator=\x1f", "-e", "frame.number", "-e", "frame.comment")
    assert rc == 0, err
    rows = []
    for line in out.splitlines():
        number, _, text = line.partition("\t")
        if text:
            rows.append((int(number), text.split("\x1f")))
    return rows


def idle_session(port, hold_done=0.3):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", PASSWORD)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    time.sleep(hold_done)
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag):
        pass
    return m


class PcapngTest(ProxyTestCase, unittest.TestCase):
    def record_stall(self):
        """An IDLE whose completion the proxy holds 2.5 s past DONE, with
        done-stall at 1 s: the rule fires as time passes and resolves on
        the completion."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "stall.pcapng")
        px = self.start_proxy(DC.port, extra_args=[
            "--pcap", pcap, "--fault", "hold-idle-completion:2500ms", "--done-stall", "1s"])
        m = idle_session(px.port)
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.assertEqual(px.stop(signal.SIGINT), 0)
        return pcap

    def test_verdicts_ride_on_their_packets(self):
        pcap = self.record_stall()
        rc, out, err = tool("capinfos", pcap)
        self.assertEqual(rc, 0, err)
        self.assertIn("pcapng", out)
        self.assertRegex(out, r"Capture application: +imaptap \d")
        # the section names what the verdicts rest on
        rc, out, err = tool("capinfos", "-k", pcap)
        self.assertRegex(out, r"Capture comment: +imaptap settings: .*done-stall-us=1000000 "
                         r".*fault=hold-idle-completion:2500ms")
        rows = comments(pcap)
        texts = [c for _, cs in rows for c in cs]
        self.assertTrue(any(c.startswith("imaptap anomaly done-stall: [") for c in texts), texts)
        self.assertTrue(any(c.startswith("imaptap fault hold-idle-completion:2500ms: "
                                         "hold-idle-completion s2c start") for c in texts), texts)
        self.assertTrue(any(c.startswith("imaptap fault hold-idle-completion:2500ms: "
                                         "hold-idle-completion s2c release") for c in texts),
                        texts)
        # the completion's packet: its latency, DONE->OK and the resolution
        rc, out, err = tool("tshark", "-r", pcap, "-Y", 'imap.response contains "OK Idle"',
                            "-T", "fields", "-e", "frame.number")
        ok_frame = int(out.split()[0])
        on_ok = dict(rows)[ok_frame]
        self.assertTrue(any(c.startswith("imaptap latency ") and " IDLE OK" in c for c in on_ok),
                        on_ok)
        done = [c for c in on_ok if c.startswith("imaptap done-to-ok ")]
        self.assertEqual(len(done), 1, on_ok)
        self.assertGreaterEqual(float(done[0].split()[2]), 2.4)
        self.assertTrue(any(c.startswith("imaptap resolved done-stall: ") for c in on_ok), on_ok)
        # the stall fired between DONE and the completion, on a mark of its own
        fired = [n for n, cs in rows if any(c.startswith("imaptap anomaly done-stall") for c in cs)]
        self.assertEqual(len(fired), 1)
        self.assertLess(fired[0], ok_frame)
        rc, out, err = tool("tshark", "-r", pcap, "-Y", "frame.number == %d" % fired[0],
                            "-T", "fields", "-e", "syslog.msg")
        self.assertIn("anomaly - finding session=1", out)
        # every command's completion has its latency
        rc, out, err = tool("tshark", "-r", pcap, "-Y", "imap.response", "-T", "fields",
                            "-e", "imap.response")
        tagged = [x for x in out.splitlines() if not x.startswith("*") and " OK " in x]
        self.assertEqual(len([c for c in texts if c.startswith("imaptap latency ")]), len(tagged))
        # Wireshark's expert info lists them
        rc, out, err = tool("tshark", "-r", pcap, "-q", "-z", "expert")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"Comments \(\d+\)")
        self.assertIn("imaptap anomaly done-stall", out)
        # direction flags: the client's packets inbound, the server's outbound
        rc, out, err = tool("tshark", "-r", pcap, "-Y", "imap.request", "-T", "fields",
                            "-e", "frame.packet_flags_direction")
        self.assertEqual(set(out.split()), {"0x00000001"}, out)

    def test_analyze_reads_it_as_the_pcap_form(self):
        pcap = self.record_stall()
        classic = pcap.replace(".pcapng", ".pcap")
        rc, out, err = tool("editcap", "-F", "pcap", pcap, classic)
        self.assertEqual(rc, 0, err)
        results = []
        for path in (pcap, classic):
            r = run_imaptap(["analyze", path, "--quiet", "--events", "-"])
            self.assertEqual(r.returncode, 0, r.stderr)
            # the run's own record and id are this run's, not the capture's
            records = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
            records = [x for x in records if x["kind"] != "run-start"]
            for rec in records:
                rec.pop("run", None)
            results.append(records)
        self.assertEqual(results[0], results[1])
        # judged by the capture's own done-stall of 1 s, not the default 5 s
        rules = [x.get("rule") for x in results[0] if x.get("kind") == "anomaly"]
        self.assertIn("done-stall", rules)

    def test_hostile_server_text_is_escaped_in_comments(self):
        def server(p):
            p.send(b"* OK [ALERT] \x1b]0;owned\x07\x1b[31mred\xc2\x9b ready\r\n")
            p.until(b"a1 ")
            p.send(b"a1 OK done\r\n")
            p.until(b"a2 ")
            p.send(b"* BYE bye\r\na2 OK bye\r\n")

        srv = ScriptedServer(server)
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "hostile.pcapng")
        px = self.start_proxy(srv.port, extra_args=["--pcap", pcap])
        c = Peer(__import__("socket").create_connection(("127.0.0.1", px.port)))
        c.line()
        c.send(b"a1 NOOP\r\n")
        c.until(b"a1 ")
        c.send(b"a2 LOGOUT\r\n")
        c.until(b"a2 ")
        c.close()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        px.stop(signal.SIGINT)
        srv.join()
        texts = [c for _, cs in comments(pcap) for c in cs]
        alert = [c for c in texts if "owned" in c]
        self.assertTrue(alert, texts)
        for text in texts:
            self.assertTrue(all(0x20 <= ord(ch) < 0x7f for ch in text), repr(text))
        self.assertIn("\\x1b]0;owned\\x07", alert[0])

    def test_each_file_of_a_rotation_is_a_whole_pcapng(self):
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "rot.pcapng")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--pcap-max-size", "1"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        m.fetch("1", "(BODY.PEEK[])")
        m.noop()
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        px.stop(signal.SIGINT)
        # rot.pcapng, then rot.1.pcapng, rot.2.pcapng ...
        files = sorted((f for f in os.listdir(d) if f.endswith(".pcapng")),
                       key=lambda f: int(f.split(".")[1]) if f.count(".") == 2 else 0)
        self.assertGreaterEqual(len(files), 2, files)
        for f in files:
            rc, out, err = tool("capinfos", os.path.join(d, f))
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"Capture application: +imaptap")
            rc, out, err = tool("capinfos", "-k", os.path.join(d, f))
            self.assertRegex(out, r"Capture comment: +imaptap settings: ")
        # the NOOP's latency is in the file where its completion is
        later = [c for f in files[1:] for _, cs in comments(os.path.join(d, f)) for c in cs]
        self.assertTrue(any(" NOOP OK" in c for c in later), later)

    def test_standard_output_as_pcapng_and_bad_values(self):
        px = self.start_proxy(DC.port, extra_args=["--pcap", "-", "--pcap-format", "pcapng"])
        idle_session(px.port, hold_done=0.1).logout()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.assertEqual(px.stop(signal.SIGINT), 0)
        out_path = os.path.join(px.dir, "imaptap.stdout")
        texts = [c for _, cs in comments(out_path) for c in cs]
        self.assertTrue(any(c.startswith("imaptap done-to-ok ") for c in texts), texts)
        for args, want in [(["--pcap-format", "pcapng"], "--pcap-format goes with --pcap FILE"),
                           (["--pcap", "x.pcap", "--pcap-format", "ng"],
                            "--pcap-format takes pcap or pcapng, not 'ng'")]:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port] + args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(want, r.stderr)

    def test_sigkill_leaves_a_file_tshark_reads(self):
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "killed.pcapng")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        px.wait_for_row(lambda r: "SELECT" in r["text"] and "OK" in r["text"])
        time.sleep(0.3)
        px.expect_signal_exit = True
        px.proc.send_signal(signal.SIGKILL)
        px.proc.wait()
        rc, out, err = tool("tshark", "-r", pcap, "-Y", "imap", "-T", "fields",
                            "-e", "imap.request")
        self.assertEqual(rc, 0, err)
        self.assertIn("SELECT INBOX", out)
        rc, out, err = tool("capinfos", pcap)
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    main()
