#!/usr/bin/env python3
"""Quiet servers: the protocol rules (docs/rules.md, "The protocol itself")
raise no false positive when real clients talk to real servers through
`imaptap proxy`.  Two servers, a private Dovecot (with the zlib plugin, so
COMPRESS) and a private Cyrus IMAP 3.6 (tests/lib/cyrus.py), each filled
with ~50 varied messages (MIME multiparts with attachments, a nested
message/rfc822, RFC 2047 encoded words, address groups) so that ENVELOPE
and BODYSTRUCTURE are parsed; four clients, on plain legs and again with
STARTTLS on both legs:

- Python imaplib, an extension-heavy session: ENABLE QRESYNC, SELECT
  (QRESYNC ...), UID FETCH (CHANGEDSINCE n VANISHED), ESEARCH, STATUS=SIZE,
  NAMESPACE, ID, LIST RETURN (SPECIAL-USE), APPEND with {n+}, UID STORE
  (UNCHANGEDSINCE), UID MOVE, UID EXPUNGE, an expunge by a second
  connection (VANISHED arrives unsolicited), EXISTS during IDLE, CLOSE;
- imapflow with COMPRESS (imapflow_session.mjs) and with QRESYNC
  (imapflow_qresync.mjs);
- mbsync syncing INBOX and Archive, pipelined;
- curl fetching one message by UID and listing the mailboxes.

Every session must leave zero `anomaly` records in the event log, and
`imaptap analyze PCAP --fail-on all` must exit 0.

    python3 tests/integration/test_quiet_servers.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
from email.message import EmailMessage
from email.policy import SMTP

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from certs import TestPKI, client_context  # noqa: E402
from clients import make_message, run_mbsync  # noqa: E402
from cyrus import Cyrus  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
import node  # noqa: E402

PASSWORD = "Quiet-Srv-S3cret"
ZLIB_CONF = ("mail_plugins = $mail_plugins zlib\n"
             "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
# Special-use mailboxes, so that Dovecot lists SPECIAL-USE as Cyrus does.
DOVECOT_SPECIAL_USE = ("namespace inbox {\n  inbox = yes\n"
                       "  mailbox Archive {\n    auto = create\n    special_use = \\Archive\n  }\n"
                       "  mailbox Sent {\n    auto = subscribe\n    special_use = \\Sent\n  }\n}\n")
QRESYNC_SCRIPT = "imapflow_qresync.mjs"
SERVERS = {}
PKI = None
TMP = None
FIRST_MESSAGE = {}       # server name: the message of UID 1 in INBOX
POPULATED = 0


# ----- test messages ------------------------------------------------------
def _crlf(msg):
    return msg.as_bytes(policy=SMTP)


def varied_messages():
    """~50 messages: plain ones of many sizes, and MIME structures."""
    out = [make_message(600 + 997 * i, "quiet-srv%d" % i) for i in range(40)]
    m = EmailMessage()
    m["From"] = '"Dürer, Albrecht" <albrecht@example.org>'
    m["To"] = "Bob <bob@example.org>, carol@example.org"
    m["Cc"] = "undisclosed-recipients:;"
    m["Subject"] = "Grüße aus Köln: Rechnung № 42 – ½ Preis"
    m["Message-ID"] = "<mixed-1@imaptap.test>"
    m["In-Reply-To"] = "<earlier@imaptap.test>"
    m["Date"] = "Tue, 2 Jan 2024 09:30:00 +0100"
    m.set_content("Hallo Bob,\n\nanbei die Rechnung.\n")
    m.add_alternative("<html><body><p>Hallo <b>Bob</b></p></body></html>", subtype="html")
    m.add_attachment(os.urandom(5000), maintype="application", subtype="pdf",
                     filename="Rechnung März.pdf")
    m.add_attachment(b"\x89PNG\r\n\x1a\n" + os.urandom(700), maintype="image",
                     subtype="png", filename="logo.png", disposition="inline", cid="<logo@x>")
    out.append(_crlf(m))
    inner = EmailMessage()
    inner["From"] = "Inner Sender <inner@example.net>"
    inner["To"] = "alice@example.org"
    inner["Subject"] = "the forwarded one"
    inner["Date"] = "Mon, 1 Jan 2024 08:00:00 +0000"
    inner.set_content("inner text\n")
    inner.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    fwd = EmailMessage()
    fwd["From"] = "Alice <alice@example.org>"
    fwd["To"] = "Team: bob@example.org, \"Carol Q.\" <carol@example.org>;"
    fwd["Subject"] = "Fwd: the forwarded one"
    fwd["Date"] = "Mon, 1 Jan 2024 09:00:00 +0000"
    fwd.set_content("see the attached message\n")
    fwd.add_attachment(inner)          # message/rfc822, itself multipart
    out.append(_crlf(fwd))
    # hand-written: mixed charsets in encoded words, an 8-bit body,
    # a multipart/related with a quoted boundary, an empty subject
    out.append(b"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n"
               b"To: =?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>\r\n"
               b"Subject: =?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
               b" =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=\r\n"
               b"Date: Wed, 3 Jan 2024 10:00:00 -0500\r\n"
               b"MIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=UTF-8\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\n"
               b"R\xc3\xa9sum\xc3\xa9 \xe2\x80\x94 8-bit body\r\n")
    out.append(b"From: a@example.org\r\nTo: b@example.org\r\nSubject:\r\n"
               b"MIME-Version: 1.0\r\n"
               b"Content-Type: multipart/related; boundary=\"=_b o u n d\"; type=\"text/html\"\r\n\r\n"
               b"preamble\r\n--=_b o u n d\r\nContent-Type: text/html; charset=us-ascii\r\n"
               b"Content-Language: en, de\r\nContent-Location: http://example.org/x\r\n\r\n"
               b"<img src=\"cid:pic\">\r\n--=_b o u n d\r\nContent-Type: image/gif; name=\"p.gif\"\r\n"
               b"Content-ID: <pic>\r\nContent-Description: a \"quoted\" picture\r\n"
               b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n"
               b" filename*=UTF-8''%E2%82%AC%20rates.gif\r\n\r\n"
               b"R0lGODlhAQABAAAAACw=\r\n--=_b o u n d--\r\nepilogue\r\n")
    for i in range(6):
        out.append(("From: \"List %d\" <list@example.org>\r\nTo: alice@example.org\r\n"
                    "Subject: =?UTF-8?Q?Caf=C3=A9_n=C2=B0%d?= [list]\r\n"
                    "Reply-To: list-%d@example.org\r\nSender: owner@example.org\r\n"
                    "Date: Thu, 4 Jan 2024 11:%02d:00 +0000\r\n\r\nbody %d\r\n"
                    % (i, i, i, i, i)).encode())
    return out


# ----- the servers ----------------------------------------------------------
class Server:
    def __init__(self, name, impl):
        self.name = name
        self.impl = impl
        self.port = impl.port

    def deliver(self, msg, proxy_connect):
        """A new message in INBOX while a session idles: Cyrus through LMTP
        (as an MTA would), Dovecot by APPEND over a second connection
        through the proxy.  Returns the number of proxied sessions used."""
        if self.name == "cyrus":
            self.impl.deliver("alice", msg)
            return 0
        b = proxy_connect()
        b.login("alice", PASSWORD)
        typ, data = b.append("INBOX", None, None, msg)
        assert typ == "OK", (typ, data)
        b.logout()
        return 1


def populate(name, port, cyrus):
    global POPULATED
    msgs = varied_messages()
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", PASSWORD)
    for i, msg in enumerate(msgs):
        flags = r"(\Seen)" if i % 3 == 0 else None
        typ, data = m.append("INBOX", flags, None, msg)
        assert typ == "OK", (typ, data)
    if cyrus:
        typ, data = m._simple_command("CREATE", "Archive", r"(USE (\Archive))")
        assert typ == "OK", (typ, data)
    m.logout()
    FIRST_MESSAGE[name], POPULATED = msgs[0], len(msgs)


def setUpModule():
    global PKI, TMP
    check_binary()
    node.ensure_node_clients()
    for prog in ("mbsync", "curl"):
        if shutil.which(prog) is None:
            raise RuntimeError("%s is needed: scripts/test installs it" % prog)
    TMP = module_tmpdir("imaptap-quietsrv-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    dc = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key,
                        extra_conf=ZLIB_CONF + DOVECOT_SPECIAL_USE)
    cy = Cyrus(users={"alice": PASSWORD}, ssl_cert=crt, ssl_key=key).start()
    unittest.addModuleCleanup(cy.stop)
    SERVERS["dovecot"] = Server("dovecot", dc)
    SERVERS["cyrus"] = Server("cyrus", cy)
    populate("dovecot", dc.port, cyrus=False)
    populate("cyrus", cy.port, cyrus=True)


# ----- raw commands through imaplib --------------------------------------------
def cmd(m, text):
    """Send `TAG text` (bytes; literals and all) on imaplib connection m and
    read to its tagged answer.  Returns (status, tagged data, untagged
    responses {TYPE: [data]})."""
    m.untagged_responses = {}
    tag = m._new_tag()
    m.tagged_commands[tag] = None
    m.send(tag + b" " + text + b"\r\n")
    typ, data = m._command_complete(text.split(b" ", 1)[0].decode(), tag)
    return typ, data, dict(m.untagged_responses)


def flat(items):
    """imaplib's untagged data (bytes, or tuples with literals) as one bytes."""
    out = []
    for it in items or []:
        if isinstance(it, tuple):
            out.extend(x for x in it if isinstance(x, bytes))
        elif isinstance(it, bytes):
            out.append(it)
    return b" ".join(out)


class QuietServersTest(ProxyTestCase, unittest.TestCase):
    maxDiff = None

    def start(self, server, starttls=False):
        """A proxy in front of server; with starttls, STARTTLS on both legs.
        self.client_ca is then the CA the client must trust."""
        self.starttls = starttls
        self.px = self.start_recording_proxy(server.port, TMP, PKI.ca_cert, starttls)
        return self.px

    def connect(self):
        """An imaplib connection through the proxy (STARTTLS when the proxy
        runs with it)."""
        m = imaplib.IMAP4("localhost", self.px.port, timeout=30)
        if self.starttls:
            self.assertEqual(m.starttls(ssl_context=client_context(self.client_ca))[0], "OK")
        return m

    def assertQuiet(self, sessions):
        """No anomaly, live or from the pcap."""
        return self.assertRecordingQuiet(self.px, sessions, self.starttls, 2)

    # ----- 1. imaplib, extension-heavy ------------------------------------
    def imaplib_session(self, server, starttls):
        self.start(server, starttls)
        sessions = 1
        m = self.connect()
        typ, data = m.capability()
        self.assertEqual(typ, "OK")
        m.login("alice", PASSWORD)
        typ, data, un = cmd(m, b"CAPABILITY")
        self.assertEqual(typ, "OK", data)
        caps = set(flat(un.get("CAPABILITY")).decode().upper().split())
        for want in ("ENABLE", "QRESYNC", "CONDSTORE", "ESEARCH", "NAMESPACE", "ID",
                     "LITERAL+", "UIDPLUS", "MOVE", "IDLE", "STATUS=SIZE"):
            self.assertIn(want, caps)
        typ, data, un = cmd(m, b"ENABLE QRESYNC")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"QRESYNC", flat(un.get("ENABLED")).upper(), un)
        typ, data, un = cmd(m, b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)")
        self.assertEqual(typ, "OK", data)
        st = flat(un.get("STATUS"))
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", st).group(1))
        modseq0 = int(re.search(rb"HIGHESTMODSEQ (\d+)", st).group(1))
        self.assertRegex(st, rb"SIZE \d+")
        # four new messages: one by a non-synchronising literal (LITERAL+)
        new = [make_message(900 + i, "quiet-new%d" % i) for i in range(4)]
        uids = []
        for i, msg in enumerate(new):
            if i == 0:
                typ, data, un = cmd(m, b"APPEND INBOX (\\Seen) {%d+}\r\n%s" % (len(msg), msg))
            else:
                typ, data = m.append("INBOX", None, None, msg)
            self.assertEqual(typ, "OK", data)
            uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", flat(data)).group(1)))
        x, y, z, w = uids
        typ, data, un = cmd(m, b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq0))
        self.assertEqual(typ, "OK", data)
        m.state = "SELECTED"
        exists = int(flat(un.get("EXISTS")).split()[-1])
        self.assertGreaterEqual(exists, POPULATED)
        typ, data, un = cmd(m, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq0)
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"UID %d " % w, flat(un.get("FETCH")))
        # By message number and without UID: the answers carry no UID, which
        # RFC 7162 section 3.2.4 allows even after ENABLE QRESYNC ("this rule
        # doesn't affect untagged FETCH responses caused by a FETCH command
        # that doesn't include UID and/or a MODSEQ FETCH data item").
        typ, data, un = cmd(m, b"FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
        self.assertEqual(typ, "OK", data)
        starts = [d[0] if isinstance(d, tuple) else d for d in un["FETCH"]]
        self.assertEqual(len([d for d in starts if re.match(rb"\d+ \(", d)]), exists)
        everything = flat(un["FETCH"])
        self.assertIn(b'"MESSAGE" "RFC822"', everything.upper())
        self.assertIn(b"=?", everything)
        typ, data, un = cmd(m, b"UID SEARCH RETURN (MIN MAX COUNT) ALL")
        self.assertEqual(typ, "OK", data)
        es = flat(un.get("ESEARCH"))
        for item in (b"MIN 1", b"MAX %d" % w, b"COUNT %d" % exists):
            self.assertRegex(es, rb"\b%s\b" % item)
        typ, data, un = cmd(m, b"NAMESPACE")
        self.assertEqual(typ, "OK", data)
        typ, data, un = cmd(m, b'ID ("name" "test")')
        self.assertEqual(typ, "OK", data)
        self.assertIn("ID", un)
        typ, data, un = cmd(m, b'LIST "" "*" RETURN (SPECIAL-USE)')
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"\\Archive", flat(un.get("LIST")))
        typ, data, un = cmd(m, b"UID FETCH %d (MODSEQ)" % x)
        self.assertEqual(typ, "OK", data)
        ms = int(re.search(rb"MODSEQ \((\d+)\)", flat(un["FETCH"])).group(1))
        typ, data, un = cmd(m, b"UID STORE %d (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % (x, ms))
        self.assertEqual(typ, "OK", data)
        self.assertNotIn(b"MODIFIED", flat(data))
        typ, data, un = cmd(m, b"UID MOVE %d Archive" % x)
        self.assertEqual(typ, "OK", data)
        typ, data, un = cmd(m, b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % y)
        self.assertEqual(typ, "OK", data)
        typ, data, un = cmd(m, b"UID EXPUNGE %d" % y)
        self.assertEqual(typ, "OK", data)
        # another session expunges z: it reaches this one unsolicited
        b = self.connect()
        sessions += 1
        b.login("alice", PASSWORD)
        self.assertEqual(b.select("INBOX")[0], "OK")
        self.assertEqual(b.uid("STORE", str(z), "+FLAGS.SILENT", r"(\Deleted)")[0], "OK")
        self.assertEqual(b.uid("EXPUNGE", str(z))[0], "OK")
        b.logout()
        gone = b""
        for _ in range(20):
            typ, data, un = cmd(m, b"NOOP")
            self.assertEqual(typ, "OK", data)
            gone += flat(un.get("VANISHED")) + flat(un.get("EXPUNGE"))
            if gone:
                break
            time.sleep(0.1)
        self.assertIn(b"%d" % z, gone)
        typ, data, un = cmd(m, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq0)
        self.assertEqual(typ, "OK", data)
        self.assertRegex(flat(un.get("VANISHED")), rb"\(EARLIER\) ")
        # IDLE while a message arrives: EXISTS during IDLE
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        self.assertTrue(m.readline().startswith(b"+"))
        sessions += server.deliver(make_message(1500, "quiet-idle"), self.connect)
        t0 = time.monotonic()
        line = m.readline()
        while not line.endswith(b" EXISTS\r\n"):
            self.assertFalse(line.startswith(tag), line)
            self.assertLess(time.monotonic() - t0, 15)
            line = m.readline()
        m.send(b"DONE\r\n")
        line = m.readline()
        while not line.startswith(tag + b" "):
            line = m.readline()
        self.assertTrue(line.startswith(tag + b" OK"), line)
        self.assertEqual(m.close()[0], "OK")
        self.assertEqual(m.logout()[0], "BYE")
        recs = self.assertQuiet(sessions)
        names = {r["command"] for r in recs if r["kind"] == "completion"}
        self.assertTrue({"ENABLE", "SELECT", "FETCH", "SEARCH", "STORE", "MOVE", "EXPUNGE",
                         "IDLE", "NAMESPACE", "ID", "LIST", "APPEND", "CLOSE"} <= names, names)

    # ----- 2. imapflow, COMPRESS; and QRESYNC -------------------------------
    def imapflow_compressed(self, server, starttls):
        self.start(server, starttls)
        result = node.imapflow_session("127.0.0.1", self.px.port, "alice", PASSWORD,
                                       tls_ca=self.client_ca, servername="localhost",
                                       starttls=starttls)
        self.assertTrue(result["compressed"])
        self.assertEqual(result["secure"], starttls)
        self.assertTrue(result["idled"])
        self.assertGreaterEqual(len(result["subjects"]), POPULATED)
        self.assertQuiet(1)
        self.assertIn("COMPRESS DEFLATE in effect", self.px.stderr_text())

    def imapflow_qresync(self, server, starttls):
        self.start(server, starttls)
        r = node.imapflow_session("127.0.0.1", self.px.port, "alice", PASSWORD,
                                  tls_ca=self.client_ca, servername="localhost",
                                  starttls=starttls, script=QRESYNC_SCRIPT)
        self.assertTrue(r["qresync"], r)
        self.assertTrue(r["compressed"], r)
        self.assertIn(r["appended"], r["changed"])
        self.assertIn(r["appended"], r["unseen"])
        self.assertIn(str(r["appended"]), r["moved"] or {})
        recs = self.assertQuiet(1)
        names = {r["command"] for r in recs if r["kind"] == "completion"}
        self.assertTrue({"ENABLE", "COMPRESS", "SELECT", "FETCH", "SEARCH", "MOVE"} <= names,
                        names)

    # ----- 3. mbsync ----------------------------------------------------------
    def mbsync(self, server, starttls):
        self.start(server, starttls)
        r, got, maildir = run_mbsync(TMP, self.px.port, "alice", PASSWORD,
                            self.client_ca if starttls else None, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertGreaterEqual(len(got), POPULATED)
        self.assertTrue(os.path.isdir(os.path.join(maildir, "Archive")))
        self.assertQuiet(1)

    # ----- 4. curl ------------------------------------------------------------
    def curl(self, server, starttls):
        self.start(server, starttls)
        base = "imap://localhost:%d/" % self.px.port
        opts = ["-s", "-S", "--max-time", "30", "-u", "alice:" + PASSWORD,
                "--resolve", "localhost:%d:127.0.0.1" % self.px.port]
        if starttls:
            opts += ["--ssl-reqd", "--cacert", self.client_ca]
        r = subprocess.run(["curl"] + opts + [base + "INBOX;UID=1"], capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, FIRST_MESSAGE[server.name])
        r = subprocess.run(["curl"] + opts + [base], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rb'\* LIST \([^)]*\) "[./]" INBOX\r\n')
        self.assertRegex(r.stdout, rb'\* LIST \([^)]*\) "[./]" "?Archive"?\r\n')
        self.assertQuiet(2)

    # ----- a real server's real mistake ------------------------------------------
    def test_cyrus_status_mailboxid_judged_by_its_bytes(self):
        """Cyrus 3.6.1 answers STATUS ... (MAILBOXID) with bytes that are
        no objectid (RFC 8474: letters, digits, "_" and "-"), different on
        every call, where SELECT's [MAILBOXID (...)] is right. The raw
        answer decides: a well-formed one must raise nothing; a broken one
        must raise `syntax` (status-att-val), or `parse-error` when the
        garbage holds a NUL or cuts the line, and nothing else."""
        self.start(SERVERS["cyrus"])
        s = socket.create_connection(("127.0.0.1", self.px.port), timeout=30)
        got = b""

        def until(tag):
            nonlocal got
            while not re.search(rb"(^|\r\n)" + tag + rb" [^\r\n]*\r\n", got):
                chunk = s.recv(65536)
                self.assertTrue(chunk, got)
                got += chunk

        until(rb"\* OK")
        s.sendall(b"a1 LOGIN alice " + PASSWORD.encode() + b"\r\n")
        until(b"a1")
        got = b""
        s.sendall(b"a2 STATUS INBOX (MESSAGES MAILBOXID)\r\n")
        until(b"a2")
        answer = got
        self.assertIn(b"\r\na2 OK", answer)
        s.sendall(b"a3 LOGOUT\r\n")
        until(b"a3")
        s.close()
        self.px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"),
                             timeout=20)
        with open(self.events) as f:
            found = [a for a in map(json.loads, f) if a["kind"] == "anomaly"]
        if re.search(rb"MAILBOXID \([A-Za-z0-9_-]{1,255}\)\)\r\n", answer):
            self.assertEqual(found, [])
            return
        rules = {a["rule"] for a in found}
        self.assertTrue(rules and rules <= {"syntax", "parse-error"}, (answer, found))
        for a in found:
            if a["rule"] == "syntax":
                self.assertIn("server line", a["detail"])
                self.assertIn("status-att-val does not parse", a["detail"])
        r = run_imaptap(["analyze", self.pcap, "--quiet", "--fail-on", "syntax,parse-error"],
                        timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

def _add_tests():
    """test_<server>_<client>_<plain|starttls> for every pairing."""
    for server in ("dovecot", "cyrus"):
        for client in ("imaplib_session", "imapflow_compressed", "imapflow_qresync",
                       "mbsync", "curl"):
            for starttls in (False, True):
                def test(self, server=server, client=client, starttls=starttls):
                    getattr(self, client)(SERVERS[server], starttls)
                name = "test_%s_%s_%s" % (server, client, "starttls" if starttls else "plain")
                test.__name__ = name
                setattr(QuietServersTest, name, test)


_add_tests()


if __name__ == "__main__":
    main()
