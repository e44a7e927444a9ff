#!/usr/bin/env python3
"""`imaptap proxy --route NAME=HOST:PORT[,MODE]`: several providers behind
one listener, chosen by the server name each client asks for in its TLS
ClientHello, `--upstream` taking the rest. Two real Dovecots play two
providers (each with its own user and password, so a client that reaches
the wrong one cannot log in); real clients (Python imaplib with SNI and
hostname checking, curl) connect to one imaptap port. Every timeline row
and event record names the route; the certificate each client sees
carries the name it asked for.

    python3 tests/integration/test_routes.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from certs import TestPKI, client_context  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, wait_for  # noqa: E402

HOME = None   # the default route: user alice
WORK = None   # --route work.example.test: user bob, STARTTLS upstream
PLAIN = None  # --route *.plain.example.test: user carol, no TLS upstream
PKI = None
TMP = None
PASSWORDS = {"alice": "H0me-Pa55", "bob": "W0rk-Pa55", "carol": "Pl4in-Pa55"}


def setUpModule():
    global HOME, WORK, PLAIN, PKI, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-routes-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    HOME = module_dovecot(users={"alice": PASSWORDS["alice"]}, ssl=True, ssl_cert=crt,
                          ssl_key=key)
    WORK = module_dovecot(users={"bob": PASSWORDS["bob"]}, ssl=True, ssl_cert=crt,
                          ssl_key=key)
    PLAIN = module_dovecot(users={"carol": PASSWORDS["carol"]})



class RoutesTest(ProxyTestCase, unittest.TestCase):
    def routed_proxy(self, *extra):
        ca = os.path.join(tempfile.mkdtemp(dir=TMP), "ca")
        events = os.path.join(tempfile.mkdtemp(dir=TMP), "events.jsonl")
        px = self.start_proxy(HOME.imaps_port, extra_args=[
            "--client-tls", "implicit", "--ca", ca, "--upstream-ca", PKI.ca_cert,
            "--upstream-tls", "implicit", "--sni", "localhost",
            "--route", "work.example.test=localhost:%d,starttls" % WORK.port,
            "--route", "*.plain.example.test=127.0.0.1:%d" % PLAIN.port,
            "--events", events, "--workers", "2"] + list(extra))
        return px, os.path.join(ca, "ca.crt"), events

    def session(self, px, cafile, sni, user):
        """Logs in as user asking for sni (None: no SNI); returns the
        certificate's subjectAltName names the client was shown."""
        ctx = client_context(cafile)
        if sni is None:
            ctx.check_hostname = False
        m = _SNIClient(px.port, ctx, sni)
        names = [v for k, v in m.sock.getpeercert().get("subjectAltName", ()) if k == "DNS"]
        try:
            self.assertEqual(m.login(user, PASSWORDS[user])[0], "OK")
            self.assertEqual(m.select("INBOX")[0], "OK")
            self.assertEqual(m.noop()[0], "OK")
        finally:
            m.logout()
        return names

    def test_each_name_reaches_its_provider_and_every_row_names_the_route(self):
        px, cafile, events = self.routed_proxy()
        names = {}
        names["work"] = self.session(px, cafile, "work.example.test", "bob")
        names["plain"] = self.session(px, cafile, "Imap.Plain.Example.Test", "carol")
        names["home"] = self.session(px, cafile, "localhost", "alice")
        names["none"] = self.session(px, cafile, None, "alice")
        names["other"] = self.session(px, cafile, "elsewhere.example.test", "alice")
        self.assertIn("work.example.test", names["work"])
        self.assertIn("Imap.Plain.Example.Test".lower(), [n.lower() for n in names["plain"]])
        self.assertIn("elsewhere.example.test", names["other"])
        wait_for(lambda: px.stderr_text().count(" -- close ") >= 5, "five sessions closed")
        text = px.stderr_text()
        # each provider saw exactly its own user
        self.assertIn("user=<bob>", WORK.log_text())
        self.assertNotIn("user=<alice>", WORK.log_text())
        self.assertIn("user=<carol>", PLAIN.log_text())
        # every session row names its route
        rows = [r for r in text.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{6} #\d", r)]
        self.assertGreater(len(rows), 20)
        for r in rows:
            self.assertRegex(r, r"^\S+ #\d+@\S+ ", r)
        by_session = {}
        for r in rows:
            m = re.match(r"^\S+ #(\d+)@(\S+) ", r)
            by_session.setdefault(m.group(1), set()).add(m.group(2))
        self.assertTrue(all(len(v) == 1 for v in by_session.values()), by_session)
        routes = sorted(next(iter(v)) for v in by_session.values())
        self.assertEqual(routes, sorted(["work.example.test", "*.plain.example.test",
                                         "default", "default", "default"]))
        self.assertRegex(text, r"#\d+@work\.example\.test -- route work\.example\.test: the client "
                         r"asked for work\.example\.test; upstream 127\.0\.0\.1:%d" % WORK.port)
        self.assertIn("which no --route names", text)
        self.assertIn("the ClientHello names no server", text)
        # LOGIN masked on every route
        for user in ("alice", "bob", "carol"):
            self.assertNotIn(PASSWORDS[user], text)
        # the event log: every session record carries the route
        with open(events) as f:
            records = [json.loads(line) for line in f]
        session_records = [r for r in records if r.get("session", 0) > 0]
        self.assertTrue(session_records)
        for r in session_records:
            self.assertIn("route", r, r)
        opens = {r["session"]: r for r in records if r["kind"] == "session-open"}
        self.assertEqual(len(opens), 5)
        work = [r for r in opens.values() if r["route"] == "work.example.test"]
        self.assertEqual(len(work), 1)
        self.assertEqual(work[0]["upstream"], "127.0.0.1:%d" % WORK.port)
        self.assertIn("upstream STARTTLS", work[0]["legs"])
        plain = [r for r in opens.values() if r["route"] == "*.plain.example.test"]
        self.assertEqual(plain[0]["upstream"], "127.0.0.1:%d" % PLAIN.port)
        self.assertIn("upstream plain", plain[0]["legs"])
        self.assertIn("route work.example.test: clients asking for that name go to "
                      "localhost:%d (STARTTLS)" % WORK.port, text)

    def test_metrics_by_route(self):
        px, cafile, _ = self.routed_proxy("--metrics", "127.0.0.1:0")
        wait_for(lambda: "metrics on http://" in px.stderr_text(), "the metrics line")
        url = re.search(r"metrics on (http://\S+)", px.stderr_text()).group(1)
        self.session(px, cafile, "work.example.test", "bob")
        self.session(px, cafile, "Imap.Plain.Example.Test", "carol")
        self.session(px, cafile, "localhost", "alice")
        self.session(px, cafile, None, "alice")
        wait_for(lambda: px.stderr_text().count(" -- close ") >= 4, "four sessions closed")
        text = subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True,
                              check=True, timeout=20).stdout
        check = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, timeout=20)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        text = text.decode()
        for route, n in (("work.example.test", 1), ("*.plain.example.test", 1), ("default", 2)):
            self.assertIn('imaptap_sessions_total{route="%s"} %d\n' % (route, n), text)
            self.assertIn('imaptap_sessions_open{route="%s"} 0\n' % route, text)
            self.assertRegex(text, r'imaptap_relayed_bytes_total\{route="%s",'
                             r'direction="server_to_client"\} [1-9]' % re.escape(route))

    def test_curl_with_resolve_picks_the_route(self):
        px, cafile, _ = self.routed_proxy()
        r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", cafile,
                            "--resolve", "work.example.test:%d:127.0.0.1" % px.port,
                            "--user", "bob:%s" % PASSWORDS["bob"],
                            "imaps://work.example.test:%d/INBOX?ALL" % px.port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SEARCH", r.stdout)
        wait_for(lambda: " -- close " in px.stderr_text(), "the session closed")
        self.assertRegex(px.stderr_text(), r"#1@work\.example\.test C> \S+ AUTHENTICATE PLAIN \*+")

    def test_probe_and_garbage_before_the_hello_are_shown_on_the_default_route(self):
        px, cafile, events = self.routed_proxy()
        socket.create_connection(("127.0.0.1", px.port), timeout=5).close()
        s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
        s.sendall(b"a1 LOGIN \x1b[31mevil\r\n")
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        wait_for(lambda: px.stderr_text().count(" -- close ") >= 2, "two sessions closed")
        self.session(px, cafile, "work.example.test", "bob")
        text = px.stderr_text()
        # two loops accept: the probe and the garbage may be numbered either way
        self.assertEqual(len(re.findall(r"#[12]@default -- open ", text)), 2, text)
        self.assertRegex(text, r"#[12]@default -- client TLS handshake failed")
        self.assertNotIn("\x1b", text)
        self.assertRegex(text, r"#3@work\.example\.test -- open ")

    def test_route_usage_errors(self):
        cases = [
            (["--route", "x.example=127.0.0.1:1"], "add --client-tls implicit"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "nohost"], "NAME=HOST:PORT"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "bad name=127.0.0.1:1"], "server name clients ask for"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "a.example=127.0.0.1:0"], "port"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "a.example=127.0.0.1:1,tls13"], "implicit, starttls or none"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "a.example=127.0.0.1:1", "--route", "A.example=127.0.0.1:2"],
             "given twice"),
            (["--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
              "--route", "default=127.0.0.1:1"], "--upstream's route"),
        ]
        for extra, words in cases:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % HOME.port] + extra)
            self.assertEqual(r.returncode, 2, (extra, r.stderr))
            self.assertIn(words, r.stderr, extra)
            self.assertNotIn("\x1b", r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % HOME.port,
                         "--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
                         "--route", "a.example=no-such-host.invalid:993"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("--route a.example: cannot resolve 'no-such-host.invalid'", r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % HOME.port,
                         "--client-tls", "implicit", "--ca", os.path.join(TMP, "ca-u"),
                         "--route", "a.example=\x1b[31m:1"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot resolve '\\x1b[31m'", r.stderr)
        self.assertNotIn("\x1b", r.stderr)


class _SNIClient(imaplib.IMAP4):
    """imaplib over TLS with a chosen SNI (IMAP4_SSL takes no
    server_hostname before Python 3.12)."""

    def __init__(self, port, ctx, sni):
        self._ctx = ctx
        self._sni = sni
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return self._ctx.wrap_socket(sock, server_hostname=self._sni)

    def open(self, host="", port=imaplib.IMAP4_SSL_PORT, timeout=None):
        super().open(host, port, timeout)


if __name__ == "__main__":
    main()
