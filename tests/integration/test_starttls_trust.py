#!/usr/bin/env python3
"""Nothing from before the upstream TLS handshake is trusted, and a client
leg that waits for STARTTLS sends no credential in clear.

Scripted servers (real sockets, real TLS) show what no real server does on
demand: capabilities that differ in clear and over TLS, hostile or PREAUTH
greetings, a CAPABILITY refused over TLS, an ID answer with a literal. A
real Dovecot checks that real clients still log in and fetch.

    python3 tests/integration/test_starttls_trust.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI, client_context  # noqa: E402
from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, read_events  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, run_imaptap, sanitizer_env  # noqa: E402
from scripted import Peer, ScriptedServer  # noqa: E402

PASSWORD = "Trust-S3cret-42"
DC = None
PKI = None
TMP = None
SCTX = None


def setUpModule():
    global DC, PKI, TMP, SCTX
    check_binary()
    TMP = module_tmpdir("imaptap-starttls-trust-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    SCTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    SCTX.load_cert_chain(crt, key)
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key)



def serve_commands(p, got):
    """Answers every command with OK until LOGOUT or EOF; records lines."""
    while True:
        ln = p.line()
        got.append(ln)
        tag = ln.split(b" ")[0]
        if b" LOGOUT" in ln.upper():
            p.send(b"* BYE bye\r\n" + tag + b" OK LOGOUT done\r\n")
            return
        p.send(tag + b" OK done\r\n")


def starttls_server(greeting, tls_answer=b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n%s OK caps\r\n",
                    got=None):
    """A server that greets in clear, takes STARTTLS, and answers the
    first command over TLS with tls_answer (the tag put in for %s)."""
    got = [] if got is None else got

    def script(p):
        p.send(greeting)
        ln = p.line()
        got.append(ln)
        p.send(ln.split(b" ")[0] + b" OK Begin TLS\r\n")
        t = Peer(SCTX.wrap_socket(p.sock, server_side=True))
        try:
            ln = t.line()
            got.append(ln)
            t.send(tls_answer.replace(b"%s", ln.split(b" ")[0]))
            serve_commands(t, got)
        finally:
            t.close()
    return script


class Client:
    def __init__(self, port):
        self.peer = Peer(socket.create_connection(("127.0.0.1", port)))
        self.peer.sock.settimeout(10)

    def cmd(self, line):
        """Sends line, returns every line up to its tagged answer."""
        self.peer.send(line)
        return b"".join(self.peer.until(line.split(b" ")[0] + b" "))


class StarttlsTrustTest(ProxyTestCase, unittest.TestCase):
    def events_path(self):
        return tempfile.mktemp(prefix="events-", suffix=".jsonl", dir=TMP)

    def upstream_proxy(self, port, events, pcap=None):
        return self.start_proxy(port, extra_args=[
            "--upstream-tls", "starttls", "--upstream-ca", PKI.ca_cert, "--sni", "localhost",
            "--events", events] + (["--pcap", pcap] if pcap else []))

    def notices(self, events):
        return [e.get("text", "") for e in read_events(events) if e.get("kind") == "notice"]

    def wait_closed(self, px):
        return px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"),
                               timeout=15)

    # ---- upstream STARTTLS ----

    def test_client_sees_only_the_capabilities_sent_over_tls(self):
        got = []
        srv = ScriptedServer(starttls_server(
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN LOGIN-REFERRALS XEVIL] clear hello\r\n",
            got=got))
        events, pcap = self.events_path(), os.path.join(TMP, "caps.pcap")
        px = self.upstream_proxy(srv.port, events, pcap)
        c = Client(px.port)
        self.assertEqual(c.peer.line(),
                         b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] imaptap: server ready over TLS\r\n")
        self.assertEqual(c.cmd(b"a1 CAPABILITY\r\n"), b"a1 OK done\r\n")
        self.assertEqual(c.cmd(b"a2 LOGOUT\r\n"), b"* BYE bye\r\na2 OK LOGOUT done\r\n")
        c.peer.close()
        srv.join()
        self.wait_closed(px)
        self.assertEqual(got[:2], [b"imaptap0 STARTTLS\r\n", b"imaptap1 CAPABILITY\r\n"])
        text = px.stderr_text()
        self.assertNotIn("XEVIL", "".join(r["text"] for r in px.timeline() if r["dir"] != "--"))
        self.assertIn("upstream greeting before TLS (not shown to the client): "
                      "'* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN LOGIN-REFERRALS XEVIL] "
                      "clear hello'", text)
        self.assertRegex(text, r"P< \* OK \[CAPABILITY IMAP4rev1 AUTH=PLAIN\] imaptap: server ready")
        self.assertTrue(any("imaptap1 CAPABILITY" in n for n in self.notices(events)))
        # the hidden exchange leaves no trace in the client leg's pcap or
        # its analysis: no tag left pending, no latency row for imaptap1
        with open(pcap, "rb") as f:
            raw = f.read()
        self.assertNotIn(b"imaptap1", raw)
        self.assertNotIn(b"XEVIL", raw)
        self.assertIn(b"imaptap: server ready over TLS", raw)
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", pcap + ".jsonl"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(pcap + ".jsonl") as f:
            anomalies = [json.loads(ln) for ln in f if '"kind":"anomaly"' in ln]
        self.assertEqual(anomalies, [])
        self.assertNotIn("imaptap1", r.stdout + r.stderr)

    def test_hostile_clear_greeting_never_reaches_the_client(self):
        srv = ScriptedServer(starttls_server(
            b"* OK \x1b[31mPREAUTH\x1b]0;owned\x07 evil words\r\n"))
        events = self.events_path()
        px = self.upstream_proxy(srv.port, events)
        c = Client(px.port)
        greeting = c.peer.line()
        self.assertEqual(greeting,
                         b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] imaptap: server ready over TLS\r\n")
        c.cmd(b"a LOGOUT\r\n")
        c.peer.close()
        srv.join()
        self.wait_closed(px)
        raw = px.stderr_bytes()
        self.assertNotIn(b"\x1b", raw)
        self.assertNotIn(b"\x07", raw)
        self.assertIn(b"\\x1b[31mPREAUTH\\x1b]0;owned\\x07 evil words", raw)
        self.assertTrue(any("\\x1b[31mPREAUTH" in n for n in self.notices(events)))

    def refused_session(self, greeting, words, tls_answer=None):
        """The client gets exactly one BYE naming words, the session ends,
        and the server's own words are only in the notices."""
        if tls_answer is None:
            def script(p):
                p.send(greeting)
                p.read_all()
        else:
            script = starttls_server(greeting, tls_answer=tls_answer)
        srv = ScriptedServer(script)
        events = self.events_path()
        px = self.upstream_proxy(srv.port, events)
        s = Peer(socket.create_connection(("127.0.0.1", px.port), timeout=10))
        got = s.read_all()
        s.close()
        srv.join()
        self.assertRegex(got, rb"\A\* BYE \[UNAVAILABLE\] imaptap: upstream 127\.0\.0\.1:\d+ "
                              rb"STARTTLS: " + words + rb"\r\n\Z")
        row = self.wait_closed(px)
        self.assertIn("by proxy", row["text"])
        return got, self.notices(events), px

    def test_preauth_clear_greeting_ends_the_session(self):
        got, notices, px = self.refused_session(
            b"* PREAUTH [CAPABILITY IMAP4rev1] logged in as admin\r\n",
            rb"the greeting before TLS was PREAUTH \(already authenticated, so TLS cannot "
            rb"be started\); no plaintext session")
        self.assertNotIn(b"admin", got)
        self.assertTrue(any("logged in as admin" in n for n in notices), notices)
        self.assertTrue(any("telling the client * BYE" in n for n in notices), notices)
        self.assertTrue(px.alive())

    def test_bye_and_odd_clear_greetings_end_the_session(self):
        got, notices, _ = self.refused_session(b"* BYE go away, secret host\r\n",
                                               rb"the server refused the connection \(BYE before TLS\)")
        self.assertNotIn(b"secret host", got)
        got, notices, _ = self.refused_session(b"hello there\r\n",
                                               rb"the greeting before TLS was not \* OK")
        self.assertNotIn(b"hello there", got)

    def test_capability_refused_over_tls_ends_the_session(self):
        for answer, words in ((b"%s BAD what?\r\n",
                               rb"the server did not answer CAPABILITY over TLS with OK"),
                              (b"%s NO not now\r\n",
                               rb"the server did not answer CAPABILITY over TLS with OK"),
                              (b"%s OK no list\r\n", rb"the server sent no capabilities over TLS")):
            got, notices, _ = self.refused_session(b"* OK hi\r\n", words, tls_answer=answer)
            self.assertNotIn(b"what?", got)
            self.assertTrue(any("upstream answered CAPABILITY over TLS:" in n for n in notices),
                            notices)

    def test_capability_code_in_the_tagged_ok_is_enough(self):
        srv = ScriptedServer(starttls_server(
            b"* OK hi\r\n", tls_answer=b"%s OK [CAPABILITY IMAP4rev1 IDLE] caps\r\n"))
        px = self.upstream_proxy(srv.port, self.events_path())
        c = Client(px.port)
        self.assertEqual(c.peer.line(),
                         b"* OK [CAPABILITY IMAP4rev1 IDLE] imaptap: server ready over TLS\r\n")
        c.cmd(b"a LOGOUT\r\n")
        c.peer.close()
        srv.join()

    def test_dovecot_upstream_starttls_with_imaplib(self):
        px = self.start_proxy(DC.port, extra_args=[
            "--upstream-tls", "starttls", "--upstream-ca", PKI.ca_cert, "--sni", "localhost"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        self.assertTrue(m.welcome.startswith(b"* OK [CAPABILITY IMAP4rev1"), m.welcome)
        self.assertIn(b"imaptap: server ready over TLS", m.welcome)
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        msg = make_message(8192, tag="trust")
        typ, data = m.append("INBOX", None, None, msg)
        self.assertEqual(typ, "OK", data)
        uid = data[0].split()[2].rstrip(b"]").decode()
        typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
        self.assertEqual(data[0][1], msg)
        m.logout()
        self.assertNotIn(PASSWORD, px.stderr_text())

    def leg_steps(self, extra_args, client):
        """Runs one session with IMAPTAP_DEBUG=legs and returns the steps
        of each leg of session #1, as (from, to) pairs."""
        env = dict(sanitizer_env(), IMAPTAP_DEBUG="legs")
        px = self.start_proxy(DC.port, env=env, extra_args=extra_args)
        client(px.port)
        self.wait_closed(px)
        err = px.stderr_text()
        return {leg: re.findall(r"#1 %s leg: (\S+) -> (\S+)" % leg, err)
                for leg in ("upstream", "client")}

    def test_upstream_leg_steps_are_named(self):
        """IMAPTAP_DEBUG=legs: every step of the upstream leg on stderr, in
        order, from the TCP connect to a leg that carries IMAP."""
        steps = self.leg_steps(
            ["--upstream-tls", "starttls", "--upstream-ca", PKI.ca_cert, "--sni", "localhost"],
            lambda port: imaplib.IMAP4("127.0.0.1", port).logout())
        self.assertEqual(steps["upstream"], [("connecting", "greeting"), ("greeting", "starttls"),
                                             ("starttls", "starttls-handshake"),
                                             ("starttls-handshake", "capability"),
                                             ("capability", "ready")])
        self.assertEqual(steps["client"], [("accepted", "plain")])

    def test_client_leg_steps_are_named(self):
        """The client leg's steps through its STARTTLS, likewise."""
        ca = tempfile.mkdtemp(prefix="ca-", dir=TMP)
        os.rmdir(ca)

        def client(port):
            m = imaplib.IMAP4("127.0.0.1", port)
            m.starttls(ssl.create_default_context(cafile=os.path.join(ca, "ca.crt")))
            m.logout()
        steps = self.leg_steps(["--upstream-tls", "none", "--client-tls", "starttls", "--ca", ca],
                               client)
        self.assertEqual(steps["client"], [("accepted", "plain"), ("plain", "starttls-handshake"),
                                           ("starttls-handshake", "tls")])
        self.assertEqual(steps["upstream"], [("connecting", "ready")])

    # ---- capability edits: before authentication only ----

    def capability_after(self, greeting, login):
        """A plain proxy; the server greets with greeting, the client logs
        in with login (or not) and asks CAPABILITY: what the client gets."""
        def script(p):
            p.send(greeting)
            while True:
                ln = p.line()
                tag = ln.split(b" ")[0]
                if b"CAPABILITY" in ln.upper():
                    p.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED IDLE\r\n" +
                           tag + b" OK done\r\n")
                elif b"LOGOUT" in ln.upper():
                    p.send(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                    return
                else:
                    p.send(tag + b" OK done\r\n")
        srv = ScriptedServer(script)
        px = self.start_proxy(srv.port)
        c = Client(px.port)
        c.peer.line()
        if login:
            self.assertEqual(c.cmd(b"a LOGIN alice secret\r\n"), b"a OK done\r\n")
        got = c.cmd(b"b CAPABILITY\r\n")
        c.cmd(b"c LOGOUT\r\n")
        self.last_proxy = px
        return got

    def test_capabilities_edited_before_login_only(self):
        before = self.capability_after(b"* OK ready\r\n", login=False)
        self.assertEqual(before, b"* CAPABILITY IMAP4rev1 IDLE\r\nb OK done\r\n")
        # the edited row says what imaptap changed
        row = self.last_proxy.wait_for_row(lambda r: r["dir"] == "P<")
        self.assertEqual(row["text"], "* CAPABILITY IMAP4rev1 IDLE  (imaptap: STARTTLS removed, "
                                      "LOGINDISABLED removed)")
        after = self.capability_after(b"* OK ready\r\n", login=True)
        self.assertEqual(after, b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED IDLE\r\n"
                                b"b OK done\r\n")

    def test_preauth_greeting_means_authenticated(self):
        """A PREAUTH greeting: the session is authenticated from its first
        line, and what the server lists afterwards goes through as sent."""
        got = self.capability_after(b"* PREAUTH [CAPABILITY IMAP4rev1] logged in\r\n",
                                    login=False)
        self.assertEqual(got, b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED IDLE\r\n"
                              b"b OK done\r\n")

    # ---- client leg STARTTLS ----

    def test_close_counts_the_same_live_and_offline(self):
        """The STARTTLS the proxy answers itself is in the client leg's
        stream, live and in the pcap: the close counts the same bytes."""
        ca = tempfile.mkdtemp(prefix="ca-", dir=TMP)
        os.rmdir(ca)
        d = tempfile.mkdtemp(dir=TMP)
        pcap, events = os.path.join(d, "s.pcap"), os.path.join(d, "s.jsonl")
        px = self.start_proxy(DC.port, extra_args=[
            "--upstream-tls", "none", "--client-tls", "starttls", "--ca", ca,
            "--pcap", pcap, "--events", events])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.starttls(ssl.create_default_context(cafile=os.path.join(ca, "ca.crt")))
        m.login("alice", PASSWORD)
        m.logout()
        self.wait_closed(px)
        self.assertEqual(px.stop(), 0)
        with open(events) as f:
            live = [json.loads(x) for x in f if '"session-close"' in x][0]
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", "-"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        offline = [json.loads(x) for x in r.stdout.splitlines() if '"session-close"' in x][0]
        self.assertGreater(live["bytes_c2s"], len(b"a STARTTLS\r\n"))
        self.assertEqual((offline["bytes_c2s"], offline["bytes_s2c"]),
                         (live["bytes_c2s"], live["bytes_s2c"]))

    def client_starttls_proxy(self, port, upstream=("--upstream-tls", "none")):
        ca = tempfile.mkdtemp(prefix="ca-", dir=TMP)
        os.rmdir(ca)
        px = self.start_proxy(port, extra_args=list(upstream) + [
            "--client-tls", "starttls", "--ca", ca])
        return px, os.path.join(ca, "ca.crt")

    def test_credentials_in_clear_are_refused(self):
        got = []

        def script(p):
            p.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+ SASL-IR] ready\r\n")
            serve_commands(p, got)
        srv = ScriptedServer(script)
        px, _ = self.client_starttls_proxy(srv.port)
        c = Client(px.port)
        self.assertEqual(c.peer.line(), b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+ SASL-IR "
                                        b"STARTTLS LOGINDISABLED] ready\r\n")
        no = b" NO [PRIVACYREQUIRED] imaptap: use STARTTLS first; credentials are not sent in clear\r\n"
        self.assertEqual(c.cmd(b"a LOGIN alice " + PASSWORD.encode() + b"\r\n"), b"a" + no)
        # LITERAL+: the literals follow at once, and are swallowed with it
        pw = PASSWORD.encode()
        self.assertEqual(c.cmd(b"b LOGIN {5+}\r\nalice {%d+}\r\n%s\r\n" % (len(pw), pw)), b"b" + no)
        # a synchronising literal: NO instead of "+", and no literal follows
        self.assertEqual(c.cmd(b"c login {5}\r\n"), b"c" + no)
        self.assertEqual(c.cmd(b"d NOOP\r\n"), b"d OK done\r\n")
        self.assertEqual(c.cmd(b"e AUTHENTICATE PLAIN AGFsaWNlAFRydXN0LVMzY3JldC00Mg==\r\n"),
                         b"e" + no)
        self.assertEqual(c.cmd(b"f Authenticate PLAIN\r\n"), b"f" + no)
        self.assertEqual(c.cmd(b"g LOGOUT\r\n"), b"* BYE bye\r\ng OK LOGOUT done\r\n")
        c.peer.close()
        srv.join()
        self.assertEqual(got, [b"d NOOP\r\n", b"g LOGOUT\r\n"])
        self.wait_closed(px)
        text = px.stderr_text()
        self.assertNotIn(PASSWORD, text)
        self.assertNotIn("AGFsaWNlAFRydXN0LVMzY3JldC00Mg", text)
        self.assertRegex(text, r"P< a NO \[PRIVACYREQUIRED\]")

    def test_other_literals_before_starttls_go_on(self):
        """Only credentials are held back: a synchronising literal of
        another command goes to the server, whose + reaches the client."""
        got = []

        def script(p):
            p.send(b"* OK ready\r\n")
            ln = p.line()
            got.append(ln)
            p.send(b"+ go on\r\n")
            got.append(p.exactly(4) + p.line())
            p.send(b"* ID NIL\r\n" + ln.split(b" ")[0] + b" OK ID done\r\n")
            serve_commands(p, got)
        srv = ScriptedServer(script)
        px, _ = self.client_starttls_proxy(srv.port)
        c = Client(px.port)
        c.peer.line()
        c.peer.send(b'a ID ("name" {4}\r\n')
        self.assertEqual(c.peer.line(), b"+ go on\r\n")
        c.peer.send(b"test)\r\n")
        self.assertEqual(b"".join(c.peer.until(b"a ")), b"* ID NIL\r\na OK ID done\r\n")
        c.cmd(b"b LOGOUT\r\n")
        c.peer.close()
        srv.join()
        self.assertEqual(got, [b'a ID ("name" {4}\r\n', b"test)\r\n", b"b LOGOUT\r\n"])

    def test_preauth_with_a_client_waiting_for_starttls_ends_the_session(self):
        def script(p):
            p.send(b"* PREAUTH [CAPABILITY IMAP4rev1] welcome root\r\n")
            p.read_all()
        srv = ScriptedServer(script)
        px, _ = self.client_starttls_proxy(srv.port)
        s = Peer(socket.create_connection(("127.0.0.1", px.port), timeout=10))
        got = s.read_all()
        s.close()
        srv.join()
        self.assertRegex(got, rb"\A\* BYE \[UNAVAILABLE\] imaptap: upstream \S+ greeting: PREAUTH "
                              rb"[^\r\n]*no plaintext session\r\n\Z")
        self.assertNotIn(b"root", got)
        self.assertIn("welcome root", px.stderr_text())

    def test_dovecot_client_starttls_logindisabled_until_tls(self):
        px, cafile = self.client_starttls_proxy(DC.port)
        m = imaplib.IMAP4("localhost", px.port)
        self.assertIn("LOGINDISABLED", m.capabilities)
        self.assertIn("STARTTLS", m.capabilities)
        try:
            m.login("alice", PASSWORD)
            self.fail("LOGIN in clear accepted")
        except imaplib.IMAP4.error as e:
            self.assertIn("PRIVACYREQUIRED", str(e))
        typ, _ = m.starttls(ssl_context=client_context(cafile))
        self.assertEqual(typ, "OK")
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()
        self.assertNotIn(PASSWORD, px.stderr_text())

    # ---- capability edits after a pre-login literal ----

    def test_capabilities_edited_after_a_server_literal(self):
        def script(p):
            p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
            ln = p.line()
            p.send(b'* ID ("name" {7}\r\nDovecot)\r\n' + ln.split(b" ")[0] + b" OK ID done\r\n")
            ln = p.line()
            p.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n"
                   + ln.split(b" ")[0] + b" OK [CAPABILITY IMAP4rev1 STARTTLS] done\r\n")
            serve_commands(p, [])
        srv = ScriptedServer(script)
        px = self.start_proxy(srv.port)
        c = Client(px.port)
        self.assertEqual(c.peer.line(), b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        self.assertEqual(c.cmd(b'a ID ("name" "test")\r\n'),
                         b'* ID ("name" {7}\r\nDovecot)\r\na OK ID done\r\n')
        self.assertEqual(c.cmd(b"b CAPABILITY\r\n"),
                         b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nb OK [CAPABILITY IMAP4rev1] done\r\n")
        c.cmd(b"c LOGOUT\r\n")
        c.peer.close()
        srv.join()

    def test_client_starttls_edits_after_a_server_literal(self):
        def script(p):
            p.send(b"* OK ready\r\n")
            ln = p.line()
            p.send(b'* ID ("name" {7}\r\nDovecot)\r\n' + ln.split(b" ")[0] + b" OK ID done\r\n")
            ln = p.line()
            p.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + ln.split(b" ")[0] + b" OK done\r\n")
            serve_commands(p, [])
        srv = ScriptedServer(script)
        px, _ = self.client_starttls_proxy(srv.port)
        c = Client(px.port)
        c.peer.line()
        c.cmd(b"a ID NIL\r\n")
        self.assertEqual(c.cmd(b"b CAPABILITY\r\n"),
                         b"* CAPABILITY IMAP4rev1 AUTH=PLAIN STARTTLS LOGINDISABLED\r\nb OK done\r\n")
        c.cmd(b"c LOGOUT\r\n")
        c.peer.close()
        srv.join()


if __name__ == "__main__":
    main()
