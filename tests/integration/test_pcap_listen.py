#!/usr/bin/env python3
"""Live capture to Wireshark: `proxy --pcap-listen ADDR:PORT` serves the
capture as PCAP-over-IP while a real imaplib client talks to a real
Dovecot through the proxy.

- tshark reading `-i TCP@ADDR:PORT` decodes the IMAP live, with the
  password masked as in the file;
- two readers at once get the same packets; a reader that connects late
  starts with the file header and the settings mark, then what came after
  it connected;
- a reader that stops reading is dropped once 8 MiB behind, and the client
  is never slowed by it;
- a non-loopback address without --allow-remote and a malformed one are
  refused with one clear message.

    python3 tests/integration/test_pcap_listen.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "Live-S3cret-6"
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-live-")
    DC = module_dovecot(users={"alice": PASSWORD})
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    m.append("INBOX", None, None, make_message(4 * 1024 * 1024, "big"))
    m.logout()


def read_pcap_stream(data):
    """(link type, [(ts, payload bytes)]) of a pcap byte stream; a record
    cut at the end is left out."""
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xa1b2c3d4, hex(magic)
    records, at = [], 24
    while at + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack("<IIII", data[at:at + 16])
        if at + 16 + caplen > len(data):
            break
        records.append((sec + usec / 1e6, data[at + 16:at + 16 + caplen]))
        at += 16 + caplen
    return link, records


class Reader:
    """A raw PCAP-over-IP reader that keeps what it got."""

    def __init__(self, port, reading=True):
        self.sock = socket.create_connection(("127.0.0.1", port))
        if not reading:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.data = b""

    def drain(self, quiet=0.5):
        self.sock.settimeout(quiet)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.data += chunk
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class PcapListenTest(ProxyTestCase, unittest.TestCase):
    def start(self, *extra):
        px = self.start_proxy(DC.port, extra_args=["--pcap-listen", "127.0.0.1:0"] + list(extra))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = re.search(r"serving the capture live on 127\.0\.0\.1:(\d+): tshark -i TCP@",
                          px.stderr_text())
            if m:
                return px, int(m.group(1))
            time.sleep(0.05)
        self.fail("no --pcap-listen line:\n" + px.stderr_text())

    def session(self, port, fetch=False):
        m = imaplib.IMAP4("127.0.0.1", port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        if fetch:
            for _ in range(5):
                m.fetch("1", "(BODY.PEEK[])")
        m.logout()

    def test_tshark_decodes_live(self):
        px, port = self.start()
        ts = subprocess.Popen(["tshark", "-l", "-i", "TCP@127.0.0.1:%d" % port, "-Y", "imap",
                               "-T", "fields", "-e", "imap.request", "-e", "imap.response"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while "reader 127.0.0.1" not in px.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        time.sleep(1)
        self.assertEqual(px.stop(signal.SIGINT), 0)
        out, err = ts.communicate(timeout=30)
        self.assertIn("SELECT INBOX", out, err)
        self.assertIn("OK Logout completed", out, err)
        self.assertIn('LOGIN alice "' + "*" * len(PASSWORD) + '"', out)
        self.assertNotIn(PASSWORD, out)

    def test_two_readers_and_a_late_one(self):
        px, port = self.start()
        a, b = Reader(port), Reader(port)
        self.session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        late = Reader(port)
        self.session(px.port)
        px.wait_for_row(lambda r: r["session"] == 2 and r["dir"] == "--"
                        and r["text"].startswith("close"))
        time.sleep(0.5)
        for r in (a, b, late):
            r.drain()
        self.assertEqual(a.data, b.data)
        link, early = read_pcap_stream(a.data)
        self.assertEqual(link, 1)
        _, later = read_pcap_stream(late.data)
        # both start with the settings mark, from the same bytes
        self.assertIn(b"imaptap imaptap - settings -", early[0][1])
        self.assertEqual(early[0], later[0])
        # the late reader has the second session only, the others both
        self.assertEqual(sum(b"SELECT INBOX" in p for _, p in early), 2)
        self.assertEqual(sum(b"SELECT INBOX" in p for _, p in later), 1)
        self.assertEqual(later[1:], early[-(len(later) - 1):])
        for r in (a, b, late):
            r.close()

    def test_a_reader_that_does_not_read_is_dropped_and_slows_nothing(self):
        px, port = self.start()
        stuck = Reader(port, reading=False)
        t0 = time.monotonic()
        self.session(px.port, fetch=True)  # 20 MiB through the capture
        took = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while "dropped" not in px.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertRegex(px.stderr_text(), r"--pcap-listen: reader 127\.0\.0\.1:\d+ dropped: "
                         r"it fell 8 MiB behind")
        self.assertLess(took, 30)
        # the listener still serves new readers
        fresh = Reader(port)
        self.session(px.port)
        time.sleep(0.5)
        fresh.drain()
        self.assertTrue(any(b"SELECT INBOX" in p for _, p in read_pcap_stream(fresh.data)[1]))
        stuck.close()
        fresh.close()

    def test_refusals(self):
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--pcap-listen", "nonsense"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--pcap-listen", r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--pcap-listen", "0.0.0.0:0"], timeout=20)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("0.0.0.0 is not a loopback address: the capture holds mail; "
                      "--allow-remote serves it to other hosts", r.stderr)


if __name__ == "__main__":
    main()
