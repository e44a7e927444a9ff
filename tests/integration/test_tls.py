#!/usr/bin/env python3
"""TLS on both legs against a real Dovecot with a certificate made here,
real clients (Python's imaplib and ssl, curl) verifying imaptap's forged
certificates with hostname checking on.

    python3 tests/integration/test_tls.py [--imaptap build/imaptap] [-v]
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import imaplib
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI, client_context  # noqa: E402
from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "Tls-S3cret-99"
DC = None
PKI = None
TMP = None


def setUpModule():
    global DC, PKI, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-tls-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key)



def recv_until(sock, got, marker, size=4096):
    """Reads until marker is in got; an EOF first fails the test instead
    of spinning on recv() returning nothing."""
    while marker not in got:
        chunk = sock.recv(size)
        if not chunk:
            raise AssertionError("connection closed before %r; got %r" % (marker, got))
        got += chunk
    return got



class TLSTest(ProxyTestCase, unittest.TestCase):
    def ca_dir(self):
        d = tempfile.mkdtemp(prefix="ca-", dir=TMP)
        os.rmdir(d)  # the proxy creates it
        return d

    def full_session(self, m):
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        msg = make_message(256 * 1024, tag="tls")
        typ, data = m.append("INBOX", None, None, msg)
        self.assertEqual(typ, "OK", data)
        uid = data[0].split()[2].rstrip(b"]").decode()
        typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], msg, "message changed on its way through TLS")
        m.logout()

    def assert_masked(self, px):
        text = px.stderr_text()
        self.assertNotIn(PASSWORD, text)
        self.assertRegex(text, r"C> \S+ LOGIN alice \"?\*{%d}\"?" % len(PASSWORD))

    def test_implicit_both_legs_with_forged_certificate(self):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "implicit", "--ca", ca])
        self.assertEqual(oct(os.stat(os.path.join(ca, "ca.key")).st_mode & 0o777), "0o600")
        ctx = client_context(os.path.join(ca, "ca.crt"))
        m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=ctx)
        cert = m.sock.getpeercert()
        names = {v for k, v in cert["subjectAltName"]}
        self.assertIn("localhost", names)      # the client's SNI
        self.assertIn("127.0.0.1", names)      # copied from Dovecot's certificate
        self.full_session(m)
        row = px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        text = px.stderr_text()
        # one name upstream: the --upstream host, an address here, so no SNI
        # (the client's SNI is for the certificate it is shown)
        self.assertRegex(text, r"-- upstream TLS TLSv1\.[23] \S+; no SNI \(an address\); "
                               r"certificate verified for 127\.0\.0\.1: "
                               r"subject /CN=localhost, issuer /CN=imaptap test server CA")
        self.assertRegex(text, r"-- client TLS TLSv1\.[23] \S+; SNI localhost")
        self.assertIn("(client TLS, upstream TLS)", text)
        self.assertNotIn("Protocol error", row["text"])
        self.assert_masked(px)

    def test_plain_client_to_tls_upstream(self):
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--sni", "localhost"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        self.full_session(m)
        self.assert_masked(px)
        self.assertIn("(client plain, upstream TLS)", px.stderr_text())
        # --sni is the one name: sent, and the one the certificate was checked for
        self.assertRegex(px.stderr_text(), r"-- upstream TLS TLSv1\.[23] \S+; SNI localhost; "
                                           r"certificate verified for localhost: subject")

    def test_tls_client_to_plain_upstream_with_given_certificate(self):
        crt, key = PKI.server("proxy.test", stem="given")
        px = self.start_proxy(DC.port, extra_args=[
            "--client-tls", "implicit", "--cert", crt, "--key", key])
        ctx = client_context(PKI.ca_cert)
        # connect to 127.0.0.1 but verify the name proxy.test
        raw = socket.create_connection(("127.0.0.1", px.port))
        tls = ctx.wrap_socket(raw, server_hostname="proxy.test")
        greeting = tls.recv(4096)
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        tls.sendall(b"a1 LOGIN alice " + PASSWORD.encode() + b"\r\n")
        got = recv_until(tls, b"", b"a1 ")
        self.assertIn(b"a1 OK", got)
        tls.sendall(b"a2 LOGOUT\r\n")
        while b"a2 OK" not in got:
            chunk = tls.recv(4096)
            if not chunk:
                break
            got += chunk
        tls.close()
        self.assertIn(b"a2 OK", got)
        self.assertIn("(client TLS, upstream plain)", px.stderr_text())
        self.assert_masked(px)

    def test_upstream_starttls_done_by_the_proxy(self):
        ca = self.ca_dir()
        for client_tls in ("none", "implicit"):
            px = self.start_proxy(DC.port, extra_args=[
                "--upstream-tls", "starttls", "--upstream-ca", PKI.ca_cert,
                "--sni", "localhost", "--client-tls", client_tls]
                + (["--ca", ca] if client_tls == "implicit" else []))
            if client_tls == "none":
                m = imaplib.IMAP4("127.0.0.1", px.port)
            else:
                m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=client_context(
                    os.path.join(ca, "ca.crt")))
            # the client sees imaptap's greeting with the capabilities the
            # server sent over TLS, as for a leg that offers no STARTTLS
            self.assertIn(b"imaptap: server ready over TLS", m.welcome)
            self.assertNotIn(b"Dovecot", m.welcome)     # the clear greeting's words
            if client_tls == "none":
                self.assertIn(b"[CAPABILITY IMAP4rev1", m.welcome)
                self.assertNotIn(b"STARTTLS", m.welcome)
                self.assertNotIn(b"LOGINDISABLED", m.welcome)
                self.assertNotIn("STARTTLS", m.capabilities)
            self.full_session(m)
            text = px.stderr_text()
            self.assertIn("(client %s, upstream STARTTLS)"
                          % ("plain" if client_tls == "none" else "TLS"), text)
            self.assertRegex(text, r"-- upstream STARTTLS: sent 'imaptap0 STARTTLS', "
                                   r"server answered 'imaptap0 OK")
            self.assertRegex(text, r"-- upstream STARTTLS: sent 'imaptap1 CAPABILITY' over TLS")
            self.assertRegex(text, r"-- upstream TLS TLSv1\.[23] \S+; SNI localhost; certificate verified for localhost")
            self.assertRegex(text, r"P< \* OK \[CAPABILITY IMAP4rev1 [^\n]*imaptap: server ready")
            for word in ("imaptap0", "imaptap1"):
                self.assertNotIn(word, "".join(r["text"] for r in px.timeline()
                                               if r["dir"] in ("C>", "S<", "P<")))
            self.assert_masked(px)
            # rows in time order: the greeting when the client got it, after
            # the client's own TLS row
            stamps = [r["ts"] for r in px.timeline() if r["session"] == 1]
            self.assertEqual(stamps, sorted(stamps), client_tls)

    def test_client_starttls_answered_by_the_proxy(self):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "starttls", "--ca", ca])
        m = imaplib.IMAP4("localhost", px.port)
        self.assertIn("STARTTLS", m.capabilities)       # added by the proxy
        typ, data = m.starttls(ssl_context=client_context(os.path.join(ca, "ca.crt")))
        self.assertEqual(typ, "OK", data)
        self.assertNotIn("STARTTLS", m.capabilities)    # asked again over TLS
        self.full_session(m)
        text = px.stderr_text()
        self.assertRegex(text, r"C> \S+ STARTTLS\n")
        self.assertRegex(text, r"P< \S+ OK Begin TLS negotiation now \(imaptap\)  \(STARTTLS ")
        self.assertRegex(text, r"-- client TLS TLSv1\.[23] \S+; SNI localhost")
        self.assertIn("(client STARTTLS, upstream TLS)", text)
        self.assert_masked(px)

    def test_client_starttls_with_starttls_and_plain_upstreams(self):
        """starttls/starttls and starttls/none: the client's STARTTLS is
        answered by the proxy whatever the upstream leg is."""
        for upstream_tls, legs in (("starttls", "(client STARTTLS, upstream STARTTLS)"),
                                   ("none", "(client STARTTLS, upstream plain)")):
            ca = self.ca_dir()
            px = self.start_proxy(DC.port, extra_args=[
                "--upstream-tls", upstream_tls, "--upstream-ca", PKI.ca_cert,
                "--sni", "localhost", "--client-tls", "starttls", "--ca", ca]
                if upstream_tls != "none" else [
                "--upstream-tls", "none", "--client-tls", "starttls", "--ca", ca])
            m = imaplib.IMAP4("localhost", px.port)
            self.assertIn("STARTTLS", m.capabilities)
            typ, data = m.starttls(ssl_context=client_context(os.path.join(ca, "ca.crt")))
            self.assertEqual(typ, "OK", data)
            self.assertNotIn("STARTTLS", m.capabilities)
            self.full_session(m)
            text = px.stderr_text()
            self.assertIn(legs, text)
            self.assertRegex(text, r"P< \S+ OK Begin TLS negotiation now \(imaptap\)")
            # exactly one STARTTLS reached the server, and only the proxy's own
            sent = [r["text"] for r in px.timeline() if r["dir"] == "C>"]
            self.assertEqual(len([t for t in sent if t.endswith("STARTTLS")]), 1, sent)
            self.assert_masked(px)

    def test_client_bytes_after_starttls_are_dropped(self):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "starttls", "--ca", ca])
        raw = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        f = raw.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        raw.sendall(b"a1 STARTTLS\r\na2 LOGIN alice injected\r\n")
        self.assertTrue(f.readline().startswith(b"a1 OK"))
        tls = client_context(os.path.join(ca, "ca.crt")).wrap_socket(
            raw, server_hostname="localhost")
        tls.sendall(b"a3 NOOP\r\n")
        got = recv_until(tls, b"", b"a3 ")
        self.assertIn(b"a3 OK", got)
        self.assertNotIn(b"a2", got)      # the injected command never ran
        tls.close()
        f.close()
        px.wait_for_row(lambda r: r["dir"] == "!" and r["text"].startswith(
            "starttls-trailing-data: 25 byte(s) from the client after STARTTLS"))

    def test_starttls_trailing_server_bytes_are_dropped(self):
        """A server that sends plaintext after its STARTTLS OK (the
        injection class of CVE-2011-1926): those bytes never reach the
        client, and the timeline says so."""
        crt, key = PKI.server("localhost", "127.0.0.1", stem="fake")
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(crt, key)

        def serve():
            c, _ = srv.accept()
            c.sendall(b"* OK fake ready\r\n")
            buf = recv_until(c, b"", b"\r\n", 100)
            tag = buf.split(b" ")[0]
            c.sendall(tag + b" OK Begin TLS\r\n* OK [ALERT] injected\r\n")
            time.sleep(0.2)
            t = sctx.wrap_socket(c, server_side=True)
            for answer in (b"* CAPABILITY IMAP4rev1\r\n%s OK caps\r\n", b"%s OK done\r\n"):
                buf = recv_until(t, b"", b"\r\n", 100)
                t.sendall(answer % buf.split(b" ")[0])
            t.close()

        import threading
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        px = self.start_proxy(port, extra_args=[
            "--upstream-tls", "starttls", "--upstream-ca", PKI.ca_cert])
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = recv_until(s, b"", b"\r\n", 100)
        s.sendall(b"a1 NOOP\r\n")
        got = recv_until(s, got, b"a1 OK", 100)
        s.close()
        th.join(5)
        srv.close()
        self.assertEqual(got, b"* OK [CAPABILITY IMAP4rev1] imaptap: server ready over TLS\r\n"
                              b"a1 OK done\r\n")
        px.wait_for_row(lambda r: r["dir"] == "!" and r["text"].startswith(
            "starttls-trailing-data: ") and "from the server after its STARTTLS OK" in r["text"])

    def test_untrusted_upstream_is_refused_with_bye(self):
        px = self.start_proxy(DC.imaps_port, extra_args=["--upstream-tls", "implicit"])
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        self.assertRegex(got, rb"\A\* BYE \[UNAVAILABLE\] imaptap: upstream 127\.0\.0\.1:\d+ "
                              rb"TLS handshake failed: certificate verify failed: [^\r\n]+\r\n\Z")
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.assertRegex(px.stderr_text(), r"issuer /CN=imaptap test server CA")
        self.assertTrue(px.alive())

    def test_wrong_upstream_name_is_refused(self):
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--sni", "imap.wrong.example"])
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        got = s.recv(4096)
        s.close()
        self.assertIn(b"certificate verify failed: hostname mismatch", got)
        self.assertIn(b"expected name imap.wrong.example", got)

    def test_insecure_upstream_says_so(self):
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--insecure-upstream"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        m.logout()
        text = px.stderr_text()
        self.assertIn("certificate NOT verified", text.splitlines()[0])
        self.assertIn("certificate NOT VERIFIED (--insecure-upstream)", text)

    def test_client_that_does_not_trust_the_ca(self):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "implicit", "--ca", ca])
        ctx = client_context(PKI.ca_cert)   # trusts the server's CA, not imaptap's
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL("localhost", px.port, ssl_context=ctx)
        row = px.wait_for_row(lambda r: r["dir"] == "--"
                              and "client TLS handshake failed" in r["text"])
        self.assertIn(os.path.join(ca, "ca.crt"), row["text"])
        # the proxy keeps serving: a trusting client gets through
        m = imaplib.IMAP4_SSL("localhost", px.port,
                              ssl_context=client_context(os.path.join(ca, "ca.crt")))
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        m.logout()

    def test_curl_imaps_through_the_proxy(self):
        ca = self.ca_dir()
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "implicit", "--ca", ca])
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", os.path.join(ca, "ca.crt"),
             "--resolve", "localhost:%d:127.0.0.1" % px.port,
             "-u", "alice:" + PASSWORD, "imaps://localhost:%d/" % px.port],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("INBOX", out.stdout)
        self.assertNotIn(PASSWORD, px.stderr_text())

    def test_group_readable_ca_key_is_refused(self):
        ca = self.ca_dir()
        r = run_imaptap(["ca", "init", ca])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(ca, "ca.crt")))
        r = run_imaptap(["ca", "init", ca])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("a CA is there already", r.stdout)
        os.chmod(os.path.join(ca, "ca.key"), 0o640)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.imaps_port,
                         "--upstream-tls", "implicit", "--client-tls", "implicit",
                         "--ca", ca, "--listen", "127.0.0.1:0"], timeout=10)
        self.assertEqual(r.returncode, 3)
        self.assertIn("chmod 600", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_keylog_decrypts_a_capture_of_the_client_leg(self):
        ca = self.ca_dir()
        keylog = os.path.join(TMP, "keys-%d.log" % os.getpid())
        pcap = os.path.join(TMP, "client-leg.pcap")
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "implicit", "--ca", ca, "--keylog", keylog])
        cap = subprocess.Popen(["tshark", "-q", "-i", "lo", "-f", "tcp port %d" % px.port,
                                "-w", pcap], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        try:
            # tshark says "Capturing on 'Loopback: lo'" once it listens
            line = cap.stderr.readline()
            while line and "Capturing on" not in line:
                line = cap.stderr.readline()
            self.assertIn("Capturing on", line)
            time.sleep(1.5)  # dumpcap announces itself a moment before it sees packets
            m = imaplib.IMAP4_SSL("localhost", px.port,
                                  ssl_context=client_context(os.path.join(ca, "ca.crt")))
            m.login("alice", PASSWORD)
            m.select("INBOX")
            m.logout()
            px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
            time.sleep(1)
        finally:
            cap.terminate()
            cap.wait(timeout=20)
            cap.stderr.close()
        self.assertEqual(os.stat(keylog).st_mode & 0o777, 0o600)
        with open(keylog) as f:
            keys = f.read()
        self.assertIn("CLIENT_TRAFFIC_SECRET_0 ", keys)
        # both legs: two handshakes per session
        self.assertGreaterEqual(keys.count("SERVER_HANDSHAKE_TRAFFIC_SECRET "), 2)
        out = subprocess.run(
            ["tshark", "-r", pcap, "-o", "tls.keylog_file:" + keylog,
             "-d", "tcp.port==%d,tls" % px.port, "-d", "tls.port==%d,imap" % px.port,
             "-Y", "imap",
             "-T", "fields", "-e", "imap.request"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"SELECT INBOX")
        # without the keys nothing is readable
        out = subprocess.run(["tshark", "-r", pcap, "-Y", "imap", "-T", "fields",
                              "-e", "imap.request"],
                             capture_output=True, text=True, timeout=60)
        self.assertNotIn("SELECT", out.stdout)

    def read_until_closed(self, sock, limit=30):
        sock.settimeout(limit)
        got = b""
        t0 = time.monotonic()
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got, time.monotonic() - t0

    def test_upstream_handshake_timeouts(self):
        """An upstream that takes the TCP connection and never speaks: for
        implicit TLS and for STARTTLS the client gets a BYE naming the wait
        after --handshake-timeout, and the proxy goes on serving."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)     # the kernel completes the TCP handshake; nobody reads
        try:
            for mode, words in (("implicit", rb"TLS handshake failed: no answer within 1 s; "
                                             rb"is the server speaking TLS on this port\?"),
                                ("starttls", rb"STARTTLS failed: no answer within 1 s "
                                             rb"\(waiting for the greeting\)")):
                px = self.start_proxy(silent.getsockname()[1], extra_args=[
                    "--upstream-tls", mode, "--handshake-timeout", "1"])
                s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
                got, took = self.read_until_closed(s)
                s.close()
                self.assertRegex(got, rb"\A\* BYE \[UNAVAILABLE\] imaptap: upstream "
                                      rb"127\.0\.0\.1:\d+ " + words)
                self.assertLess(took, 8)
                row = px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
                self.assertIn("by proxy", row["text"])
                self.assertTrue(px.alive())
        finally:
            silent.close()

    def test_client_handshake_timeouts(self):
        """A client that connects to the TLS port and says nothing, and one
        that sends STARTTLS and then nothing, are closed after the timeout
        with a line that says why."""
        for mode in ("implicit", "starttls"):
            ca = self.ca_dir()
            px = self.start_proxy(DC.imaps_port, extra_args=[
                "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
                "--client-tls", mode, "--ca", ca, "--handshake-timeout", "1"])
            s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
            if mode == "starttls":
                s.settimeout(10)
                greeting = s.recv(4096)
                self.assertTrue(greeting.startswith(b"* OK"), greeting)
                s.sendall(b"s1 STARTTLS\r\n")
            got, took = self.read_until_closed(s)
            s.close()
            if mode == "starttls":
                self.assertEqual(got, b"s1 OK Begin TLS negotiation now (imaptap)\r\n")
            else:
                self.assertEqual(got, b"")
            self.assertLess(took, 8)
            row = px.wait_for_row(lambda r: r["dir"] == "--"
                                  and "client TLS handshake timed out after 1 s" in r["text"])
            self.assertIn("is it speaking TLS", row["text"])
            px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
            # the proxy goes on: a real client gets through
            ctx = client_context(os.path.join(ca, "ca.crt"))
            if mode == "implicit":
                m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=ctx)
            else:
                m = imaplib.IMAP4("localhost", px.port)
                m.starttls(ssl_context=ctx)
            self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
            m.logout()

    def test_tls_flag_usage_errors(self):
        for args, words in [
                (["--handshake-timeout", "0"], "a duration from 1s to 1h"),
                (["--handshake-timeout", "ten"], "a duration from 1s to 1h"),
                (["--handshake-timeout", "2h"], "a duration from 1s to 1h"),
                (["--client-tls", "implicit"], "--ca DIR"),
                (["--client-tls", "bogus"], "implicit, starttls or none"),
                (["--client-tls", "starttls"], "--ca DIR"),
                (["--cert", "x.crt"], "go together"),
                (["--sni", "x"], "TLS upstream")]:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:143"] + args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(words, r.stderr)


if __name__ == "__main__":
    main()
