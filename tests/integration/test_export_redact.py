#!/usr/bin/env python3
"""imaptap export --redact: a recording of a real client against a real
Dovecot, written with its user name, addresses, subjects, bodies and
mailbox names replaced, still compiles to streams of the same units and
lengths, and still replays.

    python3 tests/integration/test_export_redact.py [--imaptap build/imaptap] [-v]

Every value the session carries is a word that appears nowhere else, so
finding any of them in the script is a leak.
"""

import imaplib
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from capturedump import Dump  # noqa: E402
from imaptap import ProxyTestCase, check_binary, imaptap_bin, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, sanitizer_env, sanitizer_reports  # noqa: E402

USER = "zorblax"
PASSWORD = "Redact-s3cret"
PARENT = "Quokkafolder"
CHILD = "Marmalade"
SEEDED = ("From: \"Wilhelmina Fizzbang\" <wfizz@plumtree.example>\r\n"
          "To: grobnik@tundra.example\r\n"
          "Subject: Pangolin escapade =?utf-8?q?Gr=C3=BCffelkn=C3=B6del?=\r\n"
          "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
          "Message-ID: <4242@plumtree.example>\r\n"
          "MIME-Version: 1.0\r\n"
          "Content-Type: multipart/mixed; boundary=\"=_Part_77\"\r\n"
          "\r\n"
          "--=_Part_77\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "\r\n"
          "The aardvark smuggles marzipan at midnight.\r\n"
          "--=_Part_77\r\n"
          "Content-Type: application/octet-stream; name=\"blueprints.bin\"\r\n"
          "Content-Transfer-Encoding: base64\r\n"
          "\r\n"
          "c2VjcmV0IGJsdWVwcmludHM=\r\n"
          "--=_Part_77--\r\n")
APPENDED = ("From: Quibble <quibble@lantern.example>\r\n"
            "To: \"Grobnik\" <grobnik@tundra.example>\r\n"
            "Subject: Narwhal odyssey\r\n"
            "\r\n"
            "xylophone chrysanthemum\r\n")
SECRETS = ["zorblax", "quokkafolder", "marmalade", "wilhelmina", "fizzbang", "wfizz",
           "plumtree", "grobnik", "tundra", "pangolin", "escapade", "aardvark", "smuggles",
           "marzipan", "midnight", "blueprints", "quibble", "lantern", "narwhal", "odyssey",
           "xylophone", "chrysanthemum", "gr=c3=bcffelkn=c3=b6del", "c2vjcmv0"]

TMP = None
DC = None


def setUpModule():
    global TMP, DC
    check_binary()
    TMP = module_tmpdir("imaptap-redact-")
    DC = module_dovecot(users={USER: PASSWORD})


def scratch(name):
    return os.path.join(tempfile.mkdtemp(dir=TMP), name)


class RedactTest(ProxyTestCase, unittest.TestCase):
    recorded = None

    def record(self):
        """A mailbox with a known message (made directly), then the session
        through the proxy: LOGIN, LIST, SELECT, FETCH ENVELOPE and BODY[],
        APPEND."""
        if RedactTest.recorded is not None:
            return RedactTest.recorded
        c = imaplib.IMAP4("127.0.0.1", DC.port)
        c.login(USER, PASSWORD)
        typ, data = c.list('""', '""')
        delim = re.search(rb'\) "(.)"', data[0]).group(1).decode()
        box = PARENT + delim + CHILD
        self.assertEqual(c.create(PARENT)[0], "OK")
        self.assertEqual(c.create(box)[0], "OK")
        self.assertEqual(c.append(box, None, None, SEEDED.encode())[0], "OK")
        c.logout()

        pcap = scratch("rec.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        c = imaplib.IMAP4("127.0.0.1", px.port)
        c.login(USER, PASSWORD)
        self.assertEqual(c.list()[0], "OK")
        typ, _ = c.select(box)
        self.assertEqual(typ, "OK")
        typ, data = c.fetch("1:*", "(ENVELOPE BODY[])")
        self.assertEqual(typ, "OK")
        self.assertIn(b"aardvark", b"".join(x[1] if isinstance(x, tuple) else x for x in data))
        typ, _ = c.append(box, None, imaplib.Time2Internaldate(time.time()), APPENDED.encode())
        self.assertEqual(typ, "OK")
        c.logout()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"), timeout=20)
        px.stop()
        RedactTest.recorded = (pcap, box)
        return RedactTest.recorded

    def export(self, pcap, *args):
        out = scratch("x.imap")
        r = run_imaptap(["export", pcap, "-o", out] + list(args), timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            return out, f.read()

    def compile(self, script):
        pcap = scratch("y.pcap")
        r = run_imaptap(["compile", script, "-o", pcap], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return pcap

    def test_values_replaced_and_fixture_still_works(self):
        pcap, box = self.record()
        plain = self.export(pcap)[1].lower()
        for word in SECRETS:   # the recording holds them all
            self.assertIn(word.encode(), plain, word)
        path, text = self.export(pcap, "--redact", "all", "--redact-key", "k1")
        low = text.lower()
        for word in SECRETS:
            self.assertNotIn(word.encode(), low, "%s left in the script" % word)
        self.assertIn(b"# redacted: users addresses subjects bodies mailboxes", text)
        # structure kept: INBOX, header names, boundaries, the encoded word's frame
        self.assertIn(b"S~ --=_Part_77", text)
        self.assertIn(b"S~ Content-Type: multipart/mixed; boundary=\"=_Part_77\"", text)
        self.assertRegex(text, rb"S~ Subject: [A-Za-z]{8} [a-z]{8} =\?utf-8\?q\?[A-Za-z0-9]+\?=")
        self.assertRegex(text, rb'S~ From: "[A-Z][a-z]{9} [A-Z][a-z]{7}" <[a-z]{5}@[a-z]{8}\.[a-z]{7}>')

        # the same mailbox name, the same token, in LIST, SELECT and APPEND
        delim = re.escape(box[len(PARENT)])
        sel = re.search(rb"\nC: \S+ SELECT \"?([A-Za-z]{12}" + delim.encode() +
                        rb"[A-Za-z]{9})\"?\n", text)
        self.assertIsNotNone(sel, text[:3000])
        token = sel.group(1)
        self.assertRegex(text, rb"\nS: \* LIST \([^)]*\) \"" + delim.encode() + rb"\" \"?" +
                         re.escape(token) + rb"\"?\n")
        self.assertRegex(text, rb"\nC: \S+ APPEND \"?" + re.escape(token) + rb"\"?")
        self.assertRegex(text, rb"\nC: \S+ LOGIN \"?[a-z]{7}\"? ")

        # the same units, of the same lengths, both ways
        fixture = self.compile(path)
        orig, back = Dump(pcap), Dump(fixture)
        for d in ("c2s", "s2c"):
            self.assertEqual(len(back.stream(1, d)[0]), len(orig.stream(1, d)[0]))
            self.assertEqual([e["len"] for e in back.session_events(1) if e.get("dir") == d
                              and e["kind"] == "data"],
                             [e["len"] for e in orig.session_events(1) if e.get("dir") == d
                              and e["kind"] == "data"])

        # it parses: analyze finds no broken frame, and it replays to a client
        r = run_imaptap(["analyze", fixture], timeout=60)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        self.assertNotRegex(r.stdout, r"(?i)malformed|bad literal|unparsable")
        self.replay_to_imaplib(fixture, text)

        # the ENVELOPE keeps its structure: ten fields, addresses of four
        env = re.search(rb"\nS: \* \d+ FETCH \(.*ENVELOPE (\(.*)\n", text).group(1)
        self.assertRegex(env, rb'^\("[^"]+" "[^"]+" \(\("[A-Z][a-z]+ [A-Z][a-z]+" NIL "[a-z]{5}" '
                              rb'"[a-z]{8}\.[a-z]{7}"\)\)')

    def replay_to_imaplib(self, fixture, text):
        """replay serve plays the fixture's server to imaplib doing what the
        recorded client did with the redacted values: it parses every
        answer, and serve finds each line as recorded."""
        port_file = scratch("port")
        proc = subprocess.Popen([imaptap_bin(), "replay", "serve", fixture, "--no-delay",
                                 "--port-file", port_file], stderr=subprocess.PIPE, text=True,
                                env=sanitizer_env())
        try:
            port = None
            for _ in range(400):
                if os.path.exists(port_file):
                    with open(port_file) as f:
                        port = f.read().strip()
                    if port:
                        break
                time.sleep(0.05)
            port = int(port)
            user = re.search(rb"\nC: \S+ LOGIN (\S+) ", text).group(1).decode()
            box = re.search(rb"\nC: \S+ SELECT (\S+)\n", text).group(1).decode()
            m = re.search(rb"\nC: \S+ APPEND \S+ \(?\)? ?(\"[^\"]+\") \{(\d+)\}\n", text)
            date, n = m.group(1).decode(), int(m.group(2))
            lines = re.findall(rb"\nC~ ?([^\n]*)", text[m.end() - 1:])
            message = b"\r\n".join(lines)[:n]
            if len(message) < n:
                message += b"\r\n"
            c = imaplib.IMAP4("127.0.0.1", port)
            c.login(user, "anything")
            typ, listed = c.list()
            self.assertEqual(typ, "OK")
            self.assertEqual(c.select(box)[0], "OK")
            typ, data = c.fetch("1:*", "(ENVELOPE BODY[])")
            self.assertEqual(typ, "OK")
            fetched = [x for x in data if isinstance(x, tuple)]
            self.assertEqual(len(fetched), 1)
            self.assertIn(b"ENVELOPE (", fetched[0][0])
            self.assertIn(b"--=_Part_77--", fetched[0][1])
            self.assertEqual(c.append(box, None, date, message)[0], "OK")
            c.logout()
        finally:
            _, err = proc.communicate(timeout=60)
        self.assertFalse(sanitizer_reports(err), err)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("the client did what the recording did", err)

    def test_same_key_same_file_other_key_other_tokens(self):
        pcap, _ = self.record()
        a = self.export(pcap, "--redact", "all", "--redact-key", "k1")[1]
        b = self.export(pcap, "--redact", "all", "--redact-key", "k1")[1]
        c = self.export(pcap, "--redact", "all", "--redact-key", "k2")[1]
        d = self.export(pcap, "--redact", "all")[1]
        e = self.export(pcap, "--redact", "all")[1]
        self.assertEqual(a, b)
        login = lambda t: re.search(rb"\nC: \S+ LOGIN (\S+) ", t).group(1)  # noqa: E731
        self.assertNotEqual(login(a), login(c))
        self.assertNotEqual(login(d), login(e))      # a random key each run
        self.assertEqual(len(a), len(c))
        self.assertEqual(len(login(a)), len(USER))

    def test_only_the_kinds_asked_for(self):
        pcap, box = self.record()
        text = self.export(pcap, "--redact", "mailboxes,users")[1].lower()
        for word in ("zorblax", "quokkafolder", "marmalade"):
            self.assertNotIn(word.encode(), text)
        for word in ("aardvark", "pangolin", "wfizz"):
            self.assertIn(word.encode(), text)
        text = self.export(pcap, "--redact", "subjects")[1].lower()
        self.assertNotIn(b"pangolin", text)
        self.assertNotIn(b"narwhal", text)
        self.assertIn(b"aardvark", text)
        self.assertIn(b"wfizz", text)

    def test_hostile_script_cut_literal_and_unknown_lines(self):
        """Values in places the grammar cannot vouch for: a literal the
        connection ended inside of, an unknown command, a response of the
        wrong shape, escapes. All masked, and the streams keep their
        lengths."""
        src = scratch("hostile.imap")
        with open(src, "w") as f:
            f.write("S: * OK ready\n"
                    "C: a1 LOGIN \"zorb\\\"lax\" \"*****\"\n"
                    "S: a1 OK done\n"
                    "C: a2 X-SECRETIVE zebrafish (\"okapi\" {3}\n"
                    "C~ gnu\n"
                    "C: )\n"
                    "S: * 1 FETCH (ENVELOPE (\"x\" \"wombat\" \"not-a-list\"))\n"
                    "S= * 2 FETCH (BODY[TEXT] {9}\\r\\nplatypus\\x1b[31m\\r\\n\n"
                    "S= * 3 FETCH (BODY[] {100}\\r\\nFrom: dingo@outback.example\\r\\n\n"
                    "+1s\n"
                    "reset server\n")
        pcap = self.compile(src)
        path, text = self.export(pcap, "--redact", "all")
        for word in (b"zorb", b"lax", b"zebrafish", b"okapi", b"gnu", b"wombat", b"not-a-list",
                     b"platypus", b"dingo", b"outback"):
            self.assertNotIn(word, text)
        self.assertIn(b"X-SECRETIVE", text)
        self.assertIn(b"S= * 3 FETCH (BODY[] {100}\\r\\n", text)
        orig, back = Dump(pcap), Dump(self.compile(path))
        for d in ("c2s", "s2c"):
            self.assertEqual(len(back.stream(1, d)[0]), len(orig.stream(1, d)[0]))

    def test_usage_errors(self):
        pcap, _ = self.record()
        for args, said in ((["--redact", "users,nope"], "--redact takes"),
                           (["--redact-key", "k"], "without --redact"),
                           (["--redact", "all", "--redact-key", ""], "not empty")):
            r = run_imaptap(["export", pcap] + args, timeout=60)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(said, r.stderr)


if __name__ == "__main__":
    main()
