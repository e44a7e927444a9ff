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
from scripted import ScriptedServer  # noqa: E402

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

    def test_ca_dir_made_when_missing_says_so(self):
        ca = os.path.join(TMP, "fresh-ca")
        px = self.start_proxy(free_port(), extra_args=["--client-tls", "implicit", "--ca", ca])
        self.assertIn("--ca %s held no CA: created one; clients must trust %s"
                      % (ca, os.path.join(ca, "ca.crt")), px.stderr_text())
        self.assertEqual(px.stop(), 0)
        # the second time it is there: nothing said
        px = self.start_proxy(free_port(), extra_args=["--client-tls", "implicit", "--ca", ca])
        self.assertNotIn("held no CA", px.stderr_text())

    def test_ca_given_as_a_file(self):
        ca = os.path.join(TMP, "file-ca")
        self.assertEqual(run_imaptap(["ca", "init", ca]).returncode, 0)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:143", "--client-tls", "implicit",
                         "--ca", os.path.join(ca, "ca.crt")])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--ca takes the CA's directory (it holds ca.crt and ca.key), not a file: "
                      "--ca %s" % ca, one_line(self, r.stderr))

    def test_ca_init_twice(self):
        ca = os.path.join(TMP, "twice-ca")
        first = run_imaptap(["ca", "init", ca])
        self.assertEqual(first.returncode, 0, first.stderr)
        with open(os.path.join(ca, "ca.crt"), "rb") as f:
            cert = f.read()
        again = run_imaptap(["ca", "init", ca])
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("a CA is there already: %s/ca.crt" % ca, again.stdout)
        with open(os.path.join(ca, "ca.crt"), "rb") as f:
            self.assertEqual(f.read(), cert, "the CA was replaced")
        # there, but not usable: said, and kept
        os.chmod(os.path.join(ca, "ca.key"), 0o644)
        bad = run_imaptap(["ca", "init", ca])
        self.assertEqual(bad.returncode, 3)
        self.assertIn("a CA is there already but cannot be used", one_line(self, bad.stderr))
        self.assertIn("chmod 600", bad.stderr)

    def test_mistyped_command_and_option_suggest(self):
        for args, words in ((["prox"], "unknown command 'prox'; did you mean 'proxy'?"),
                            (["anlyze", "x"], "did you mean 'analyze'?"),
                            (["frobnicate"], "the commands are proxy, analyze, replay serve"),
                            (["proxy", "--upstrem", "h:1"],
                             "unknown option '--upstrem'; did you mean '--upstream'?"),
                            (["analyze", "x", "--fial-on=all"], "did you mean '--fail-on'?"),
                            (["replay", "serve", "x", "--no-dealy"], "did you mean '--no-delay'?"),
                            (["proxy", "--zzzzzz"], "unknown option '--zzzzzz'")):
            with self.subTest(args=args):
                r = run_imaptap(args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(words, one_line(self, r.stderr))
                self.assertNotIn("usage:", r.stderr, "the whole help instead of a hint")

    # -- a TLS mode that does not match the peer, named at once -------------

    def test_client_speaks_tls_to_a_plain_listener(self):
        srv = ScriptedServer(lambda p: (p.send(b"* OK ready\r\n"), p.read_all()))
        px = self.start_proxy(srv.port)
        ctx = ssl.create_default_context()
        with self.assertRaises((ssl.SSLError, OSError)):
            with socket.create_connection(("127.0.0.1", px.port), timeout=10) as raw:
                ctx.wrap_socket(raw, server_hostname="localhost")
        row = px.wait_for_row(lambda r: "ClientHello" in r["text"])
        self.assertIn("the client started TLS (a ClientHello) on a plain listener: run the "
                      "proxy with --client-tls implicit --ca DIR", row["text"])
        self.assertTrue(px.alive())
        srv.join()

    def test_plain_upstream_answers_with_a_tls_record(self):
        alert = bytes([21, 3, 3, 0, 2, 2, 70])       # a TLS alert: protocol_version
        srv = ScriptedServer(lambda p: (p.send(alert), p.read_all()))
        px = self.start_proxy(srv.port)
        c = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = c.recv(4096)
        c.close()
        self.assertRegex(got, rb"^\* BYE \[UNAVAILABLE\] imaptap: upstream \S+ answered with a "
                              rb"TLS record: it speaks TLS from the first byte; use "
                              rb"--upstream-tls implicit\r\n$")
        self.assertNotIn(alert, got)
        srv.join()

    def test_tls_upstream_answers_in_clear(self):
        srv = ScriptedServer(lambda p: (p.send(b"* OK plain server\r\n"), p.read_all()))
        px = self.start_proxy(srv.port, extra_args=["--upstream-tls", "implicit",
                                                    "--insecure-upstream"])
        c = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = c.recv(4096)
        c.close()
        self.assertIn(b"the upstream answered in clear, it does not speak TLS from the first "
                      b"byte; use --upstream-tls starttls (or none)", got)
        srv.join()

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
        # TLS records: named as such, with what to do
        self.assertIn("hold IMAP inside TLS but end before their handshake does: nothing to "
                      "decrypt", one_line(self, r.stderr))
        # neither IMAP nor TLS: the wrong port
        with open(script, "w") as f:
            f.write("C= \\x00\\x05\\x01\\x02\\r\\n\nS= \\x00\\x02\\r\\n\n")
        os.unlink(pcap)
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
