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
import re
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


class CutServer:
    """A scripted server that takes any command: it answers "+" to each
    synchronising literal, runs an AUTHENTICATE without initial response
    for the given rounds, and completes everything with OK. Lines of any
    length, over a real socket."""

    def __init__(self, test, rounds=1):
        self.rounds = rounds
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        test.addCleanup(self.listener.close)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] cut\r\n")
            while True:
                first = None
                while True:
                    line = f.readline()
                    if not line:
                        return
                    first = first or line
                    m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
                    if not m:
                        break
                    if not m.group(2):
                        conn.sendall(b"+ go on\r\n")
                    f.read(int(m.group(1)))
                words = first.split()
                tag = words[0]
                if len(words) > 1 and words[1].upper() == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                    return
                if len(words) == 3 and words[1].upper() == b"AUTHENTICATE":
                    for _ in range(self.rounds):
                        conn.sendall(b"+ \r\n")
                        if not f.readline():
                            return
                conn.sendall(tag + b" OK done\r\n")


def fragments(secret, size=24):
    """Pieces of secret, spread over it and at its end: a part of it that
    leaked (the rest of a cut line) shows as one of them."""
    if len(secret) <= size:
        return [secret]
    step = max(size, len(secret) // 64)
    out = [secret[i:i + size] for i in range(0, len(secret) - size, step)]
    return out + [secret[-size:]]


class CutLineTest(MaskingCase):
    """Every credential form at line lengths around the observation limit
    and far past it, with the limit at its smallest and at its default:
    the secret (and its base64) shows in no output, the pcap included,
    where a cut line used to be written as it came."""

    def token(self, n):
        """n bytes of base64, different every call."""
        raw = base64.b64encode(os.urandom(n)).replace(b"=", b"A")
        return raw[:n]

    def cases(self, max_line):
        """(name, rounds, client lines sent in order, secrets)."""
        out = []
        for target in (24, max_line - 1, max_line, max_line + 1, max_line + 2, 300 * 1024):
            def pad(prefix, suffix=b"\r\n", target=target):
                return max(8, target - len(prefix) - len(suffix))
            pw = self.token(pad(b"a1 LOGIN alice "))
            out.append(("LOGIN atom %d" % target, 1, [b"a1 LOGIN alice " + pw + b"\r\n"], [pw]))
            pw = self.token(pad(b'a1 LOGIN "alice" "', b'"\r\n'))
            out.append(("LOGIN quoted %d" % target, 1,
                        [b'a1 LOGIN "alice" "' + pw + b'"\r\n'], [pw]))
            pw = self.token(target)
            out.append(("LOGIN literal %d" % target, 1,
                        [b"a1 LOGIN alice {%d}\r\n" % len(pw), pw + b"\r\n"], [pw]))
            out.append(("LOGIN literal+ %d" % target, 1,
                        [b"a1 LOGIN alice {%d+}\r\n" % len(pw) + pw + b"\r\n"], [pw]))
            pw = self.token(16)
            user = self.token(pad(b"a1 LOGIN ", b" " + pw + b"\r\n"))
            out.append(("LOGIN long user %d" % target, 1,
                        [b"a1 LOGIN " + user + b" " + pw + b"\r\n"], [pw]))
            plain = base64.b64encode(b"\0alice\0" + self.token(max(8, target * 3 // 4 - 10)))
            out.append(("AUTHENTICATE PLAIN %d" % target, 1,
                        [b"a1 AUTHENTICATE PLAIN\r\n", plain + b"\r\n"], [plain]))
            u, p = self.token(target), self.token(target)
            out.append(("AUTHENTICATE LOGIN %d" % target, 2,
                        [b"a1 AUTHENTICATE LOGIN\r\n", u + b"\r\n", p + b"\r\n"], [u, p]))
            for mech in (b"XOAUTH2", b"OAUTHBEARER"):
                tok = self.token(pad(b"a1 AUTHENTICATE " + mech + b" "))
                out.append(("%s SASL-IR %d" % (mech.decode(), target), 1,
                            [b"a1 AUTHENTICATE " + mech + b" " + tok + b"\r\n"], [tok]))
            tok = self.token(target)
            out.append(("GSSAPI token %d" % target, 1,
                        [b"a1 AUTHENTICATE GSSAPI\r\n", tok + b"\r\n"], [tok]))
        # the GSSAPI token size seen in the field
        tok = self.token(69 * 1024)
        out.append(("GSSAPI 69 KB", 1, [b"a1 AUTHENTICATE GSSAPI\r\n", tok + b"\r\n"], [tok]))
        return out

    def drive(self, port, lines):
        with RawIMAP(port) as c:
            c.read_greeting()
            for ln in lines:
                c.send(ln)
                if re.search(rb"\{\d+\}\r\n$", ln) or ln.upper().startswith(b"A1 AUTHENTICATE") \
                        and ln.count(b" ") == 2 or ln is not lines[-1] and lines[0].upper().startswith(
                            b"A1 AUTHENTICATE LOGIN"):
                    c.expect_continuation()
            c.read_until_tagged(b"a1")
            c.send(b"a2 LOGOUT\r\n")
            c.read_until_eof()

    def run_all(self, max_line, no_redact):
        pcap, events = self.outputs()
        extra = ["--pcap", pcap, "--events", events, "--color", "never"]
        if max_line is not None:
            extra += ["--max-line", str(max_line)]
        if no_redact:
            extra.append("--no-redact")
        cases = self.cases(max_line or 65536)
        servers = {1: CutServer(self, 1), 2: CutServer(self, 2)}
        # one proxy per upstream; each case is a session of its own
        outputs = {"timeline": b"", "pcap": b"", "events": b"", "analyze": b""}
        for rounds, server in servers.items():
            px = self.start_proxy(server.port, extra_args=extra)
            mine = [c for c in cases if c[1] == rounds]
            for name, _r, lines, _s in mine:
                self.drive(px.port, lines)
            px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close")
                            and r["session"] == len(mine), timeout=20)
            self.assertEqual(px.stop(), 0)
            r = run_imaptap(["analyze", pcap, "--color", "never", "--events", "-"]
                            + (["--max-line", str(max_line)] if max_line else []), timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            outputs["timeline"] += px.stderr_bytes()
            outputs["pcap"] += self.read(pcap)
            outputs["events"] += self.read(events)
            outputs["analyze"] += (r.stdout + r.stderr).encode()
            os.unlink(pcap)
            os.unlink(events)
        return cases, outputs

    def check_limit(self, max_line):
        cases, outputs = self.run_all(max_line, no_redact=False)
        for name, _r, _lines, secrets in cases:
            for secret in secrets:
                for piece in fragments(secret):
                    for where, data in outputs.items():
                        self.assertFalse(piece in data, "%s (--max-line %s): %r shows in the %s"
                                         % (name, max_line, piece, where))
        # the pcap keeps every byte: same length as without masking
        cases2, clear = self.run_all(max_line, no_redact=True)
        for name, _r, _lines, secrets in cases2:
            for secret in secrets:
                self.assertTrue(secret[:24] in clear["pcap"],
                                "%s: not in clear in a --no-redact pcap" % name)
        # analyze masks a capture that holds them in clear
        for name, _r, _lines, secrets in cases2:
            for secret in secrets:
                for piece in fragments(secret):
                    self.assertFalse(piece in clear["analyze"],
                                     "%s: analyze showed %r" % (name, piece))

    def test_smallest_limit(self):
        self.check_limit(64)

    def test_default_limit(self):
        self.check_limit(None)


if __name__ == "__main__":
    main()
