#!/usr/bin/env python3
"""Credentials are masked in every output: the timeline, the pcap, the
event log, and `imaptap analyze` (timeline and event log) of a capture that
holds them in clear. Every AUTHENTICATE mechanism a real Dovecot offers
(PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256) is driven by Python's
imaplib; bearer tokens and mechanisms no server here speaks (XOAUTH2,
OAUTHBEARER, GSSAPI-style multi-round exchanges, a cancelled exchange) by a
scripted server. Each test also checks the opposite: with --no-redact the
same secrets are there, so a test that finds nothing could find something.

    python3 tests/integration/test_masking.py [--imaptap build/imaptap] [-v]
"""

import base64
import hashlib
import hmac
import imaplib
import os
import socket
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RawIMAP  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot  # noqa: E402

PASSWORD = "Pa55-w0rd.for+masking"
DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD},
                        auth_mechanisms="plain login cram-md5 scram-sha-1 scram-sha-256")



class Scram:
    """The client side of SCRAM (RFC 5802) for imaplib.authenticate; keeps
    every response it sent, which must all be masked."""

    def __init__(self, hash_name, user, password):
        self.hash_name, self.user, self.password = hash_name, user, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = "n=%s,r=%s" % (user, self.nonce)
        self.sent = []
        self.step = 0

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            out = "n,," + self.first_bare
        elif self.step == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            salted = hashlib.pbkdf2_hmac(self.hash_name, self.password.encode(),
                                         base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
            stored = hashlib.new(self.hash_name, client_key).digest()
            without_proof = "c=biws,r=" + attrs["r"]
            message = ",".join([self.first_bare, server_first, without_proof]).encode()
            signature = hmac.new(stored, message, self.hash_name).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, signature))
            out = without_proof + ",p=" + base64.b64encode(proof).decode()
        else:
            out = ""
        self.sent.append(out.encode())
        return out.encode()


class Recorder:
    """Wraps an imaplib authobject, keeping what it answered."""

    def __init__(self, fn):
        self.fn, self.sent = fn, []

    def __call__(self, challenge):
        out = self.fn(challenge)
        self.sent.append(out)
        return out


def secrets_of(responses):
    """What must not show: each response, raw and as sent (base64)."""
    out = [PASSWORD.encode()]
    for r in responses:
        if len(r) >= 8:
            out += [r, base64.b64encode(r)]
    return out


class MaskingCase(ProxyTestCase, unittest.TestCase):
    def outputs(self):
        d = tempfile.mkdtemp(prefix="imaptap-mask-")
        return os.path.join(d, "cap.pcap"), os.path.join(d, "events.jsonl")

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def run_through(self, upstream_port, session, no_redact=False):
        """Runs session(port) through a proxy with every output on; returns
        {output name: bytes} for the timeline, pcap, event log and analyze's
        timeline and event log of that pcap."""
        pcap, events = self.outputs()
        extra = ["--pcap", pcap, "--events", events, "--color", "never"]
        px = self.start_proxy(upstream_port, extra_args=extra + (["--no-redact"] if no_redact
                                                               else []))
        session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.assertEqual(px.stop(), 0)
        outputs = {"timeline": px.stderr_bytes(), "pcap": self.read(pcap),
                   "events": self.read(events)}
        r = run_imaptap(["analyze", pcap, "--color", "never", "--events", "-"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        outputs["analyze"] = (r.stdout + r.stderr).encode()
        return outputs

    def check_masked(self, name, upstream_port, session):
        """session(port) returns the responses it sent."""
        sent = []
        outputs = self.run_through(upstream_port, lambda port: sent.extend(session(port)))
        secrets = secrets_of(sent)
        for where, data in outputs.items():
            for s in secrets:
                self.assertNotIn(s, data, "%s: %r shows in the %s" % (name, s, where))
        # the opposite, so that the checks above can fail: in clear with
        # --no-redact (the pcap and the event log) ...
        sent2 = []
        clear = self.run_through(upstream_port, lambda port: sent2.extend(session(port)),
                                 no_redact=True)
        shown = [s for s in secrets_of(sent2) if s in clear["pcap"]]
        self.assertTrue(shown, "%s: nothing in clear in a --no-redact pcap" % name)
        # ... and analyze masks a capture that holds them in clear
        for s in secrets_of(sent2):
            self.assertNotIn(s, clear["analyze"], "%s: analyze showed %r" % (name, s))


class DovecotMechanismsTest(MaskingCase):
    def authenticate(self, port, mechanism, authobject):
        m = imaplib.IMAP4("127.0.0.1", port)
        typ, _ = m.authenticate(mechanism, authobject)
        self.assertEqual(typ, "OK", mechanism)
        m.logout()

    def test_plain(self):
        def session(port):
            rec = Recorder(lambda _c: b"\0alice\0" + PASSWORD.encode())
            self.authenticate(port, "PLAIN", rec)
            return rec.sent
        self.check_masked("PLAIN", DC.port, session)

    def test_login_mechanism(self):
        def session(port):
            answers = iter([b"alice", PASSWORD.encode()])
            rec = Recorder(lambda _c: next(answers))
            self.authenticate(port, "LOGIN", rec)
            return rec.sent
        self.check_masked("LOGIN", DC.port, session)

    def test_cram_md5(self):
        def session(port):
            def respond(challenge):
                digest = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
                return ("alice " + digest).encode()
            rec = Recorder(respond)
            self.authenticate(port, "CRAM-MD5", rec)
            return rec.sent
        self.check_masked("CRAM-MD5", DC.port, session)

    def test_scram_sha_1_and_256(self):
        for mech, hash_name in (("SCRAM-SHA-1", "sha1"), ("SCRAM-SHA-256", "sha256")):
            def session(port, mech=mech, hash_name=hash_name):
                scram = Scram(hash_name, "alice", PASSWORD)
                self.authenticate(port, mech, scram)
                return scram.sent
            self.check_masked(mech, DC.port, session)

    def test_login_command_forms(self):
        def session(port):
            m = imaplib.IMAP4("127.0.0.1", port)
            m.login("alice", PASSWORD)  # imaplib quotes the password
            m.logout()
            with RawIMAP(port) as c:
                c.read_greeting()
                c.send(b"a1 LOGIN alice {%d}\r\n" % len(PASSWORD))
                c.expect_continuation()
                c.send(PASSWORD.encode() + b"\r\n")
                c.read_until_tagged(b"a1")
                c.send(b"a2 LOGIN alice " + PASSWORD.encode() + b"\r\n")  # an atom, refused
                c.read_until_tagged(b"a2")
                c.send(b"a3 LOGOUT\r\n")
                c.read_until_eof()
            return []
        self.check_masked("LOGIN", DC.port, session)


class ScriptedMechanismsTest(MaskingCase):
    """Mechanisms no server here offers: a scripted server answers each
    client line of an AUTHENTICATE exchange with '+ challenge' until the
    exchange has had its rounds, then OK (or BAD after a '*' cancel)."""

    def serve(self, rounds):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        self.addCleanup(listener.close)

        def run():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn, conn.makefile("rb") as f:
                    conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=X] scripted\r\n")
                    tag, left = None, 0
                    for line in f:
                        if tag is None:
                            words = line.split()
                            tag = words[0]
                            if words[1].upper() == b"LOGOUT":
                                conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                                break
                            left = rounds
                        elif line.strip() == b"*":
                            conn.sendall(tag + b" BAD cancelled\r\n")
                            tag = None
                            continue
                        if left > 0:
                            left -= 1
                            conn.sendall(b"+ " + base64.b64encode(b"challenge %d" % left) + b"\r\n")
                        else:
                            conn.sendall(tag + b" OK authenticated\r\n")
                            tag = None
        threading.Thread(target=run, daemon=True).start()
        return listener.getsockname()[1]

    def exchange(self, port, first_line, responses):
        with RawIMAP(port) as c:
            c.read_greeting()
            c.send(first_line)
            for r in responses:
                c.expect_continuation()
                c.send(r + b"\r\n")
            c.read_until_tagged(b"a1")
            c.send(b"a2 LOGOUT\r\n")
            c.read_until_eof()

    def test_bearer_tokens_and_multi_round(self):
        pw = PASSWORD.encode()
        xoauth = base64.b64encode(b"user=alice\x01auth=Bearer " + pw + b"\x01\x01")
        oauthb = base64.b64encode(b"n,a=alice,\x01auth=Bearer " + pw + b"\x01\x01")
        gss = [base64.b64encode(os.urandom(40) + pw) for _ in range(3)]
        cases = [
            ("XOAUTH2 initial response", 0, b"a1 AUTHENTICATE XOAUTH2 " + xoauth + b"\r\n", []),
            ("OAUTHBEARER initial response", 0, b"a1 AUTHENTICATE OAUTHBEARER " + oauthb + b"\r\n",
             []),
            ("XOAUTH2 after +", 1, b"a1 AUTHENTICATE XOAUTH2\r\n", [xoauth]),
            ("GSSAPI-style, three rounds", 3, b"a1 AUTHENTICATE GSSAPI\r\n", gss),
            ("NTLM-style, then cancelled", 3, b"a1 AUTHENTICATE NTLM\r\n", gss[:1] + [b"*"]),
        ]
        for name, rounds, first, responses in cases:
            port = self.serve(rounds)
            sent = [base64.b64decode(r) for r in responses if r != b"*"]
            initial = first.split()[3:] if len(first.split()) > 3 else []
            sent += [base64.b64decode(i) for i in initial]

            def session(p, first=first, responses=responses):
                self.exchange(p, first, responses)
                return sent
            self.check_masked(name, port, session)


if __name__ == "__main__":
    main()
