#!/usr/bin/env python3
"""Forged certificates against hostile names: a real Dovecot whose
certificate carries a DNS name with a comma ("a.example,DNS:evil.example")
and names with control bytes, and a client whose SNI holds a comma. The
certificate the client receives holds one subjectAltName entry per name
imaptap accepted and none of the peer's making; the timeline says what was
left out, printable.

    python3 tests/integration/test_forged_names.py [--imaptap build/imaptap] [-v]
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, read_events  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, run_imaptap  # noqa: E402

PASSWORD = "Forged-N4mes-1"
DC = None
PKI = None
TMP = None

COMMA_SNI = "victim.example,DNS:evil.example"
COMMA_DNS = "a.example,DNS:evil.example"
ESC_CN = "ok.example\x1b[31m"
OSC_DNS = "ok.example\x1b]0;owned\x07"


def setUpModule():
    global DC, PKI, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-forged-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.crafted(ESC_CN, dns=["localhost", COMMA_DNS, OSC_DNS, "*.example.org",
                                        "bad..example", "good.example"],
                           ips=["127.0.0.1"])
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key)


def sans_of(cert):
    return set(cert.get("subjectAltName", ()))


def cn_of(cert):
    return [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]


class ForgedNamesTest(ProxyTestCase, unittest.TestCase):
    def ca_dir(self):
        d = tempfile.mkdtemp(prefix="ca-", dir=TMP)
        os.rmdir(d)  # the proxy creates it
        return d

    def tls_proxy(self, extra=()):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert, "--sni", "localhost",
            "--client-tls", "implicit", "--ca", ca] + list(extra))
        return px, os.path.join(ca, "ca.crt")

    def handshake(self, port, cafile, sni, check_hostname=False):
        """The forged certificate, decoded after verifying it against the
        CA (hostname checking as asked), and the greeting."""
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = check_hostname
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            cert = tls.getpeercert()
            greeting = tls.recv(4096)
            tls.sendall(b"a1 LOGOUT\r\n")
            while b"a1 " not in greeting:
                more = tls.recv(4096)
                if not more:
                    break
                greeting += more
        return cert, greeting

    def left_out_row(self, px):
        return px.wait_for_row(lambda r: r["dir"] == "--" and
                               r["text"].startswith("left out of the forged certificate"))

    def test_comma_in_sni_and_in_upstream_names_adds_no_entry(self):
        px, cafile = self.tls_proxy()
        cert, greeting = self.handshake(px.port, cafile, COMMA_SNI)
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        sans = sans_of(cert)
        values = {v for _, v in sans}
        self.assertNotIn("evil.example", values, "a comma made a SAN entry: %r" % (sans,))
        self.assertNotIn("victim.example", values, "a comma made a SAN entry: %r" % (sans,))
        self.assertFalse(any("," in v or "\x1b" in v for v in values), sans)
        # exactly the names that are host names or addresses, one entry each
        self.assertEqual(sans, {("DNS", "localhost"), ("DNS", "*.example.org"),
                                ("DNS", "good.example"), ("IP Address", "127.0.0.1")})
        self.assertEqual(cn_of(cert), ["localhost"])
        row = self.left_out_row(px)
        text = row["text"]
        self.assertIn("'victim.example,DNS:evil.example' (a byte other than", text)
        self.assertIn("'a.example,DNS:evil.example'", text)
        self.assertIn("'ok.example\\x1b[31m'", text)          # the CN, escaped
        self.assertIn("'ok.example\\x1b]0;owned\\x07'", text)  # a DNS name, escaped
        self.assertIn("'bad..example' (an empty label)", text)
        self.assertNotIn("good.example", text)
        raw = px.stderr_bytes()
        self.assertNotIn(b"\x1b", raw, "a raw ESC reached the timeline")
        self.assertNotIn(b"\x07", raw, "a raw BEL reached the timeline")

    def test_comma_sni_with_openssl_s_client(self):
        """openssl s_client sends the SNI as given."""
        if shutil.which("openssl") is None:
            self.skipTest("no openssl")
        px, cafile = self.tls_proxy()
        out = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % px.port,
             "-servername", COMMA_SNI, "-CAfile", cafile, "-verify_return_error"],
            input=b"a1 LOGOUT\r\n", capture_output=True, timeout=20).stdout
        pem = out[out.index(b"-----BEGIN CERTIFICATE-----"):
                  out.index(b"-----END CERTIFICATE-----") + 25]
        text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                              input=pem, capture_output=True, check=True).stdout.decode()
        self.assertNotIn("evil.example", text)
        self.assertNotIn("victim.example", text)
        self.assertIn("'victim.example,DNS:evil.example'", self.left_out_row(px)["text"])

    def test_bad_sni_is_not_sent_upstream(self):
        events = os.path.join(TMP, "events-bad-sni.jsonl")
        px, cafile = self.tls_proxy(["--events", events])
        self.handshake(px.port, cafile, COMMA_SNI)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        px.stop()
        tls = [e for e in read_events(events) if e.get("kind") == "tls"]
        upstream = [e for e in tls if e.get("leg") == "upstream"]
        client = [e for e in tls if e.get("leg") == "client"]
        self.assertEqual(len(upstream), 1, tls)
        self.assertEqual(upstream[0]["sni"], "localhost", "the client's SNI went upstream")
        self.assertEqual(client[0]["sni"], COMMA_SNI)  # what the client asked, as evidence

    def test_good_sni_and_wildcard_verify(self):
        """The friendly case: a host name the client asks for is in the
        certificate, and the upstream's wildcard covers its names."""
        px, cafile = self.tls_proxy()
        cert, _ = self.handshake(px.port, cafile, "imap.victim.example", check_hostname=True)
        self.assertIn(("DNS", "imap.victim.example"), sans_of(cert))
        self.assertEqual(cn_of(cert), ["imap.victim.example"])
        cert, _ = self.handshake(px.port, cafile, "mail.example.org", check_hostname=True)
        self.assertIn(("DNS", "*.example.org"), sans_of(cert))

    def test_replay_serve_refuses_a_bad_name(self):
        r = run_imaptap(["replay", "serve", os.path.join(TMP, "none.pcap"),
                         "--client-tls", "implicit", "--ca", self.ca_dir(),
                         "--name", COMMA_DNS])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--name 'a.example,DNS:evil.example' is not a host name or IP address",
                      r.stderr)

    def test_ca_init_on_a_host_with_a_long_name(self):
        """An EC2-style host name made the CA's CN longer than 64 bytes."""
        host = "ip-172-31-22-33.eu-west-1.compute.internal"
        probe = subprocess.run(["unshare", "-U", "-r", "-u", "hostname", host],
                               capture_output=True)
        if probe.returncode != 0:
            self.skipTest("cannot set a host name in a namespace: %s" % probe.stderr)
        d = self.ca_dir()
        r = subprocess.run(["unshare", "-U", "-r", "-u", "sh", "-c",
                            'hostname "$1" && exec "$2" ca init "$3"', "sh", host,
                            check_binary(), d], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                                  os.path.join(d, "ca.crt")],
                                 capture_output=True, text=True, check=True).stdout
        self.assertIn("imaptap interception CA (ip-172-31-22-33", subject)


if __name__ == "__main__":
    main()
