#!/usr/bin/env python3
"""The errors a newcomer meets first, each one line naming what went wrong
and what to do, with the documented exit code (docs/exit-codes.md).

    python3 tests/integration/test_newcomer_errors.py [--imaptap build/imaptap] [-v]
"""

import os
import socket
import ssl
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from dovecot import free_port  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_tmpdir  # noqa: E402

TMP = None


def setUpModule():
    global TMP
    check_binary()
    TMP = module_tmpdir("imaptap-newcomer-")



def one_line(test, text):
    lines = [ln for ln in text.strip().splitlines() if not ln.startswith("run 'imaptap")]
    test.assertEqual(len(lines), 1, text)
    return lines[0]


class NewcomerErrors(ProxyTestCase, unittest.TestCase):
    def test_missing_upstream(self):
        r = run_imaptap(["proxy"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--upstream HOST:PORT is required", one_line(self, r.stderr))

    def test_port_in_use(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:143", "--listen",
                             "127.0.0.1:%d" % s.getsockname()[1]])
        finally:
            s.close()
        self.assertEqual(r.returncode, 3)
        self.assertIn("Address already in use", r.stderr)
        self.assertIn("--listen", r.stderr)

    def test_upstream_refuses(self):
        px = self.start_proxy(free_port())
        c = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = c.recv(4096)
        c.close()
        self.assertRegex(got, rb"^\* BYE \[UNAVAILABLE\] imaptap: upstream .* refused")
        self.assertTrue(px.alive())

    def test_client_rejects_the_certificate(self):
        ca = os.path.join(TMP, "ca")
        px = self.start_proxy(free_port(), extra_args=["--client-tls", "implicit", "--ca", ca])
        ctx = ssl.create_default_context()       # the system store: imaptap's CA is not in it
        with self.assertRaises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", px.port), timeout=10) as raw:
                ctx.wrap_socket(raw, server_hostname="localhost")
        row = px.wait_for_row(lambda r: "client TLS handshake failed" in r["text"])
        self.assertIn(os.path.join(ca, "ca.crt"), row["text"])

    def test_not_a_pcap(self):
        path = os.path.join(TMP, "notes.pcap")
        with open(path, "w") as f:
            f.write("not a capture\n")
        r = run_imaptap(["analyze", path])
        self.assertEqual(r.returncode, 3)
        self.assertIn("not a pcap or pcapng file", one_line(self, r.stderr))

    def test_pcap_without_imap(self):
        script = os.path.join(TMP, "binary.imap")
        with open(script, "w") as f:
            f.write("C= \\x16\\x03\\x01\\x00\\x05\\x01\\x02\\r\\n\nS= \\x16\\x03\\x03\\x00\\x02\\r\\n\n")
        pcap = os.path.join(TMP, "binary.pcap")
        self.assertEqual(run_imaptap(["compile", script, "-o", pcap]).returncode, 0)
        r = run_imaptap(["analyze", pcap, "--quiet"])
        self.assertEqual(r.returncode, 3)
        self.assertIn("but no IMAP in them", one_line(self, r.stderr))

    def test_session_out_of_range(self):
        script = os.path.join(TMP, "one.imap")
        with open(script, "w") as f:
            f.write("S: * OK hi\nC: a1 LOGOUT\nS: * BYE\nS: a1 OK bye\n")
        pcap = os.path.join(TMP, "one.pcap")
        self.assertEqual(run_imaptap(["compile", script, "-o", pcap]).returncode, 0)
        for argv in (["analyze", pcap, "--session", "4"], ["replay", "serve", pcap, "--session", "4"]):
            r = run_imaptap(argv)
            self.assertEqual(r.returncode, 2, (argv, r.stderr))
            self.assertIn("there is no session 4", one_line(self, r.stderr))


if __name__ == "__main__":
    main()
