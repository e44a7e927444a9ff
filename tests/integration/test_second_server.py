#!/usr/bin/env python3
"""A second real IMAP server: the private Cyrus IMAP of tests/lib/cyrus.py
works as a peer, talked to directly (no proxy) with Python's imaplib and
raw sockets: plain IMAP, STARTTLS and implicit TLS with a certificate of a
test CA, LOGIN (and a wrong password refused), APPEND, SELECT with
CONDSTORE, FETCH byte for byte, IDLE woken by an LMTP delivery, and
COMPRESS=DEFLATE.

    python3 tests/integration/test_second_server.py [-v]
"""

import imaplib
import os
import re
import socket
import ssl
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI  # noqa: E402
from cyrus import Cyrus  # noqa: E402
from imaptap import main, module_tmpdir  # noqa: E402

USERS = {"alice": "Second-S3rver-a", "bob": "Second-S3rver-b",
         "carol": "Second-S3rver-c"}
SRV = None
PKI = None

# What a peer for imaptap's tests must offer once logged in.
WANTED_AFTER_LOGIN = {"IMAP4REV1", "IDLE", "CONDSTORE", "QRESYNC",
                      "COMPRESS=DEFLATE", "UIDPLUS", "LITERAL+", "ENABLE"}


def setUpModule():
    global SRV, PKI
    tmp = module_tmpdir("imaptap-second-")
    PKI = TestPKI(os.path.join(tmp, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    SRV = Cyrus(users=USERS, ssl_cert=crt, ssl_key=key).start()
    unittest.addModuleCleanup(SRV.stop)


def client_context():
    ctx = ssl.create_default_context(cafile=PKI.ca_cert)
    ctx.check_hostname = True
    return ctx


def message(subject, body=b"Hello from the second server test.\r\n"):
    return (b"From: Tester <tester@example.org>\r\n"
            b"To: alice@example.org\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.encode() + b"@imaptap.test>\r\n"
            b"Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n"
            b"\r\n" + body)


def caps(imap):
    typ, data = imap.capability()
    assert typ == "OK", (typ, data)
    return set(data[-1].decode().upper().split())


class Raw:
    """A raw IMAP connection: exact bytes out, lines in; optionally
    COMPRESS=DEFLATE (raw deflate both ways, RFC 4978)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.inflate = None
        self.deflate = None

    def send(self, data):
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def readline(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed; have %r" % self.buf)
            if self.inflate is not None:
                chunk = self.inflate.decompress(chunk)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def command(self, tag, text):
        """Send `tag text`, return (untagged lines, tagged completion)."""
        self.send(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            line = self.readline()
            if line.startswith(tag + b" "):
                return untagged, line
            untagged.append(line)

    def close(self):
        self.sock.close()


class SecondServerTest(unittest.TestCase):
    def test_greeting_and_version(self):
        self.assertRegex(SRV.version or "", r"^3\.\d+\.\d+")
        self.assertTrue(SRV.greeting.startswith(b"* OK "), SRV.greeting)
        self.assertIn(b"Cyrus IMAP", SRV.greeting)
        self.assertLess(SRV.startup_seconds, 30)
        m = imaplib.IMAP4("127.0.0.1", SRV.port)
        try:
            before = caps(m)
            self.assertIn("STARTTLS", before)
            self.assertIn("AUTH=PLAIN", before)
            self.assertNotIn("LOGINDISABLED", before)
        finally:
            m.logout()

    def test_wrong_password_refused(self):
        m = imaplib.IMAP4("127.0.0.1", SRV.port)
        try:
            with self.assertRaises(imaplib.IMAP4.error):
                m.login("alice", "not-the-password")
            with self.assertRaises(imaplib.IMAP4.error):
                m.login("nobody-here", USERS["alice"])
        finally:
            m.logout()

    def test_plain_append_select_fetch(self):
        m = imaplib.IMAP4("127.0.0.1", SRV.port)
        m.login("alice", USERS["alice"])
        after = caps(m)
        self.assertTrue(WANTED_AFTER_LOGIN <= after, WANTED_AFTER_LOGIN - after)
        typ, data = m.select("INBOX")
        self.assertEqual(typ, "OK")
        before = int(data[0])
        msg = message("plain-%d" % time.monotonic_ns())
        typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
        self.assertEqual(typ, "OK", data)
        uid = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
        self.assertIsNotNone(uid, data)
        uid = uid.group(2).decode()
        typ, data = m.select("INBOX")
        self.assertEqual(int(data[0]), before + 1)
        typ, data = m.uid("FETCH", uid, "(FLAGS RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        head, body = data[0]
        self.assertEqual(body, msg)
        self.assertIn(b"\\Flagged", head)
        self.assertIn(b"RFC822.SIZE %d" % len(msg), head)
        typ, data = m.uid("STORE", uid, "+FLAGS", r"(\Seen)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"\\Seen", data[0])
        m.close()
        m.logout()

    def test_starttls_condstore(self):
        m = imaplib.IMAP4("localhost", SRV.port)
        typ, _ = m.starttls(ssl_context=client_context())
        self.assertEqual(typ, "OK")
        self.assertIn(m.sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertNotIn("STARTTLS", caps(m))
        m.login("carol", USERS["carol"])
        msg = message("tls-%d" % time.monotonic_ns())
        self.assertEqual(m.append("INBOX", None, None, msg)[0], "OK")
        typ, data = m._simple_command("SELECT", "INBOX", "(CONDSTORE)")
        self.assertEqual(typ, "OK")
        m.state = "SELECTED"   # imaplib's select() takes no parameters
        typ, data = m._untagged_response(typ, data, "OK")
        self.assertTrue(any(b"HIGHESTMODSEQ" in d for d in data if d), data)
        typ, data = m.fetch("*", "(MODSEQ BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK")
        self.assertIn(b"MODSEQ (", data[0][0])
        self.assertIn(msg.split(b"\r\n")[2], data[0][1])
        m.logout()

    def test_implicit_tls(self):
        m = imaplib.IMAP4_SSL("localhost", SRV.tls_port, ssl_context=client_context())
        try:
            self.assertTrue(m.welcome.startswith(b"* OK"), m.welcome)
            m.login("carol", USERS["carol"])
            self.assertEqual(m.select("INBOX", readonly=True)[0], "OK")
        finally:
            m.logout()

    def test_idle_woken_by_delivery(self):
        c = Raw(SRV.port)
        try:
            self.assertTrue(c.readline().startswith(b"* OK"))
            _, done = c.command(b"a1", b'LOGIN bob "%s"' % USERS["bob"].encode())
            self.assertTrue(done.startswith(b"a1 OK"), done)
            untagged, done = c.command(b"a2", b"SELECT INBOX")
            self.assertTrue(done.startswith(b"a2 OK"), done)
            exists = [int(l.split()[1]) for l in untagged if l.endswith(b" EXISTS\r\n")]
            self.assertEqual(len(exists), 1, untagged)
            c.send(b"a3 IDLE\r\n")
            self.assertTrue(c.readline().startswith(b"+ "))
            t0 = time.monotonic()
            SRV.deliver("bob", message("idle-%d" % time.monotonic_ns()))
            line = c.readline()
            self.assertEqual(line, b"* %d EXISTS\r\n" % (exists[0] + 1))
            self.assertLess(time.monotonic() - t0, 5)
            c.send(b"DONE\r\n")
            while True:
                line = c.readline()
                if line.startswith(b"a3 "):
                    break
            self.assertTrue(line.startswith(b"a3 OK"), line)
            _, done = c.command(b"a4", b"LOGOUT")
            self.assertTrue(done.startswith(b"a4 OK"), done)
        finally:
            c.close()

    def test_compress_deflate(self):
        c = Raw(SRV.port)
        try:
            c.readline()
            _, done = c.command(b"z1", b'LOGIN alice "%s"' % USERS["alice"].encode())
            self.assertTrue(done.startswith(b"z1 OK"), done)
            _, done = c.command(b"z2", b"COMPRESS DEFLATE")
            self.assertTrue(done.startswith(b"z2 OK"), done)
            c.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            c.inflate = zlib.decompressobj(-15)
            untagged, done = c.command(b"z3", b"STATUS INBOX (MESSAGES UIDNEXT)")
            self.assertTrue(done.startswith(b"z3 OK"), done)
            self.assertTrue(any(l.startswith(b"* STATUS INBOX (MESSAGES ")
                                for l in untagged), untagged)
            _, done = c.command(b"z4", b"LOGOUT")
            self.assertTrue(done.startswith(b"z4 OK"), done)
        finally:
            c.close()


if __name__ == "__main__":
    main()
