#!/usr/bin/env python3
"""No false alarms: long, varied sessions of real clients against a real
Dovecot (Python imaplib, Node's imapflow with COMPRESS, mbsync syncing a
few hundred messages with heavy pipelining) raise no anomaly at all, live
or from the pcap: on plain legs, and again with STARTTLS on both legs
(the client's answered by the proxy, the proxy's own to Dovecot), with
COMPRESS inside TLS where the client supports it (imapflow; imaplib and
mbsync 1.4 have no COMPRESS).

    python3 tests/integration/test_no_false_alarms.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI, client_context  # noqa: E402
from clients import make_message, run_mbsync  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from node import ensure_node_clients, imapflow_session  # noqa: E402

PASSWORD = "Quiet-S3cret-3"
MESSAGES = 300
ZLIB_CONF = ("mail_plugins = $mail_plugins zlib\n"
             "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
DC = None
PKI = None
TMP = None


def setUpModule():
    global DC, PKI, TMP
    check_binary()
    ensure_node_clients()
    if shutil.which("mbsync") is None:
        raise RuntimeError("mbsync is needed: scripts/test installs it (apt-get install isync)")
    TMP = module_tmpdir("imaptap-quiet-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key,
                        extra_conf=ZLIB_CONF)
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    for i in range(MESSAGES):
        m.append("INBOX", None, None, make_message(2000 + 37 * i, "quiet%d" % i))
    m.create("Archive")
    m.logout()



class NoFalseAlarmsTest(ProxyTestCase, unittest.TestCase):
    def start(self, starttls=False):
        """A proxy in front of Dovecot; with starttls, STARTTLS on both legs.
        Returns the proxy; self.client_ca is the CA the client must trust."""
        return self.start_recording_proxy(DC.port, TMP, PKI.ca_cert, starttls)

    def assertQuiet(self, px, sessions, starttls=False):
        return self.assertRecordingQuiet(px, sessions, starttls, 5)

    def test_imaplib_varied_session(self):
        self.imaplib_varied_session(starttls=False)

    def test_imaplib_varied_session_starttls(self):
        self.imaplib_varied_session(starttls=True)

    def imaplib_varied_session(self, starttls):
        px = self.start(starttls)
        m = imaplib.IMAP4("localhost", px.port)
        if starttls:
            self.assertEqual(m.starttls(ssl_context=client_context(self.client_ca))[0], "OK")
        m.login("alice", PASSWORD)
        m.list()
        m.select("INBOX")
        typ, data = m.fetch("1:*", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
        self.assertEqual(typ, "OK")
        m.search(None, "ALL")
        m.uid("SEARCH", None, "SUBJECT", "quiet1")
        m.store("1:10", "+FLAGS", "(\\Seen)")
        m.uid("FETCH", "1:50", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
        m.fetch("20", "(BODY.PEEK[])")
        m.copy("1:5", "Archive")
        m.select("Archive")
        m.store("1", "+FLAGS", "(\\Deleted)")
        m.expunge()
        m.select("INBOX")
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        self.assertTrue(m.readline().startswith(b"+"))
        m.send(b"DONE\r\n")
        while not m.readline().startswith(tag):
            pass
        m.noop()
        m.close()
        m.logout()
        recs = self.assertQuiet(px, 1, starttls)
        names = {r["command"] for r in recs if r["kind"] == "completion"}
        self.assertTrue({"FETCH", "SEARCH", "STORE", "COPY", "EXPUNGE", "IDLE"} <= names, names)

    def test_imapflow_compressed(self):
        self.imapflow_compressed(starttls=False)

    def test_imapflow_compressed_inside_starttls(self):
        self.imapflow_compressed(starttls=True)

    def imapflow_compressed(self, starttls):
        px = self.start(starttls)
        result = imapflow_session("127.0.0.1", px.port, "alice", PASSWORD,
                                  tls_ca=self.client_ca, servername="localhost",
                                  starttls=starttls)
        self.assertTrue(result["compressed"])
        self.assertEqual(result["secure"], starttls)
        self.assertTrue(result["idled"])
        self.assertGreaterEqual(len(result["subjects"]), MESSAGES)
        recs = self.assertQuiet(px, 1, starttls)
        if starttls:
            self.assertIn("COMPRESS DEFLATE in effect", px.stderr_text())
        idle = [r for r in recs if r["kind"] == "completion" and r["command"] == "IDLE"]
        self.assertEqual(len(idle), 1, "imapflow's IDLE, seen through COMPRESS")
        self.assertIsNotNone(idle[0]["done_to_ok_us"])

    def test_mbsync_pipelined_sync(self):
        self.mbsync_pipelined_sync(starttls=False)

    def test_mbsync_pipelined_sync_starttls(self):
        self.mbsync_pipelined_sync(starttls=True)

    def mbsync_pipelined_sync(self, starttls):
        px = self.start(starttls)
        r, got, _ = run_mbsync(TMP, px.port, "alice", PASSWORD,
                            self.client_ca if starttls else None, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertGreaterEqual(len(got), MESSAGES - 10)
        recs = self.assertQuiet(px, 1, starttls)
        # mbsync pipelines: commands were in flight together
        self.assertGreater(len([r for r in recs if r["kind"] == "completion"]), 3)



if __name__ == "__main__":
    main()
