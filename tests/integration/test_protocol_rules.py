#!/usr/bin/env python3
"""The protocol rules (docs/rules.md, "The protocol itself"): each one
reproduced over real sockets by a scripted server or client that makes the
mistake a real one made, through the proxy with --pcap and --events; the
pcap read back with `imaptap analyze` must reach the same verdicts, row for
row. A clean session using the same extensions raises nothing.

    python3 tests/integration/test_protocol_rules.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from scripted import RuleScenarios  # noqa: E402

CAPS = b"IMAP4rev1 LITERAL+ IDLE UIDPLUS MOVE ENABLE CONDSTORE QRESYNC ESEARCH NAMESPACE"


def setUpModule():
    check_binary()


def dialogue(steps, caps=CAPS, close_after=False):
    """A server and a client playing steps in order: (client bytes, server
    bytes). The client sends its bytes and reads until the server's bytes
    (sent whole when the client's line is in) have arrived; then LOGOUT.
    The greeting announces caps; a LOGIN step is the caller's."""
    def server(p):
        p.send(b"* OK [CAPABILITY " + caps + b"] scripted server\r\n")
        for sent, answer in steps:
            for _ in range(sent.count(b"\r\n")):
                p.line()
            if answer:
                p.send(answer)
        if close_after:
            return
        p.until(b"z9 LOGOUT")
        p.send(b"* BYE bye\r\nz9 OK done\r\n")

    def client(c):
        c.line()
        for sent, answer in steps:
            c.send(sent)
            if answer:
                c.exactly(len(answer))
        if close_after:
            c.read_all()
            return
        c.send(b"z9 LOGOUT\r\n")
        c.read_all()
    return server, client


LOGIN = (b"a1 LOGIN alice secret\r\n", b"a1 OK [CAPABILITY " + CAPS + b"] in\r\n")
SELECT = (b"a2 SELECT INBOX\r\n",
          b"* 5 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 20] n\r\n"
          b"* OK [HIGHESTMODSEQ 100] m\r\na2 OK [READ-WRITE] selected\r\n")


class ProtocolRulesTest(RuleScenarios, ProxyTestCase, unittest.TestCase):
    def run_steps(self, steps, **kw):
        server, client = dialogue(steps, **kw)
        return self.scenario(server, client)

    # -- the server ---------------------------------------------------------

    def test_exists_decreased(self):
        """EXISTS went from 5 to 3 with no EXPUNGE: the client's message
        numbers silently point at other messages (seen with a proxying
        server that re-counted after a backend failover)."""
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 NOOP\r\n", b"* 3 EXISTS\r\na3 OK done\r\n")])
        self.assertFired(px, an, "exists-decreased", words="* 3 EXISTS after 5")
        self.assertOnly(an, "exists-decreased")

    def test_exists_after_expunge_is_quiet(self):
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 NOOP\r\n",
                                                 b"* 2 EXPUNGE\r\n* 4 EXISTS\r\na3 OK done\r\n")])
        self.assertOnly(an)

    def test_msn_out_of_range(self):
        """A FETCH for message 7 in a mailbox of 5 (an unsolicited flag
        update for a message the server had not announced yet)."""
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 NOOP\r\n",
                                                 b"* 7 FETCH (FLAGS (\\Seen))\r\na3 OK done\r\n")])
        self.assertFired(px, an, "msn-out-of-range", words="* 7 FETCH but the mailbox has 5")
        self.assertOnly(an, "msn-out-of-range")

    def test_uid_fetch_without_uid(self):
        """UID FETCH answered by FETCH responses without UID (RFC 9051
        6.4.9 requires it): the client cannot match them."""
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 UID FETCH 1:* (FLAGS)\r\n",
                                                 b"* 1 FETCH (FLAGS (\\Seen))\r\na3 OK done\r\n")])
        self.assertFired(px, an, "uid-fetch-without-uid", "a3", "without UID in the answer")
        self.assertOnly(an, "uid-fetch-without-uid")

    def test_uidvalidity_changed_while_selected(self):
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 NOOP\r\n",
                                                 b"* OK [UIDVALIDITY 8] new\r\na3 OK done\r\n")])
        self.assertFired(px, an, "uidvalidity-changed", words="changed from 7 to 8")
        self.assertOnly(an, "uidvalidity-changed")

    def test_uidnext_decreased(self):
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 NOOP\r\n",
                                                 b"* OK [UIDNEXT 12] n\r\na3 OK done\r\n")])
        self.assertFired(px, an, "uidnext-decreased", words="from 20 to 12")
        self.assertOnly(an, "uidnext-decreased")

    def test_modseq_decreased(self):
        """HIGHESTMODSEQ went down between SELECT and STATUS (a replica
        behind its primary): a client resyncing from it misses changes."""
        px, an = self.run_steps([LOGIN, SELECT, (
            b"a3 STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)\r\n",
            b"* STATUS INBOX (HIGHESTMODSEQ 90 UIDVALIDITY 7)\r\na3 OK done\r\n")])
        self.assertFired(px, an, "modseq-decreased", words="from 100 to 90")
        self.assertOnly(an, "modseq-decreased")

    def test_highestmodseq_zero(self):
        px, an = self.run_steps([LOGIN, (b"a2 SELECT INBOX\r\n",
                                         b"* 0 EXISTS\r\n* OK [HIGHESTMODSEQ 0] m\r\n"
                                         b"a2 OK [READ-WRITE] selected\r\n")])
        self.assertFired(px, an, "highestmodseq-zero", words="[NOMODSEQ]")
        self.assertOnly(an, "highestmodseq-zero")

    def test_unsolicited_fetch_without_uid_after_qresync(self):
        px, an = self.run_steps([LOGIN, (b"a5 ENABLE QRESYNC\r\n",
                                         b"* ENABLED QRESYNC\r\na5 OK enabled\r\n"),
                                 SELECT, (b"a3 NOOP\r\n",
                                          b"* 2 FETCH (FLAGS (\\Seen) MODSEQ (101))\r\n"
                                          b"a3 OK done\r\n")])
        self.assertFired(px, an, "unsolicited-fetch-without-uid", words="after ENABLE QRESYNC")
        self.assertOnly(an, "unsolicited-fetch-without-uid")

    def test_untagged_in_wrong_state(self):
        """EXISTS after CLOSE, with no mailbox selected."""
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 CLOSE\r\n", b"a3 OK closed\r\n"),
                                 (b"a4 NOOP\r\n", b"* 3 EXISTS\r\na4 OK done\r\n")])
        self.assertFired(px, an, "untagged-in-wrong-state", words="EXISTS with no mailbox")
        self.assertOnly(an, "untagged-in-wrong-state")

    def test_tagged_ok_before_continuation_of_a_literal(self):
        """A synchronising literal answered OK before its +: the server
        claims a command done whose literal never came."""
        px, an = self.run_steps([LOGIN, (b"a3 APPEND INBOX {5}\r\n", b"a3 OK appended\r\n")])
        self.assertFired(px, an, "tagged-ok-before-continuation", "a3", "before the +")
        self.assertOnly(an, "tagged-ok-before-continuation")

    def test_tagged_ok_before_continuation_of_authenticate(self):
        steps = [(b"a1 AUTHENTICATE PLAIN\r\n", b"a1 OK [CAPABILITY " + CAPS + b"] in\r\n")]
        px, an = self.run_steps(steps)
        self.assertFired(px, an, "tagged-ok-before-continuation", "a1", "AUTHENTICATE")
        self.assertOnly(an, "tagged-ok-before-continuation")

    def test_response_codes(self):
        """[ALERT], [OVERQUOTA] and [THROTTLED] said with their text, the
        ALERT first in the row (Gmail's "Web login required", a full
        mailbox, Office 365 throttling)."""
        px, an = self.run_steps([
            (b"a1 LOGIN alice secret\r\n",
             b"* OK [ALERT] Please log in via your web browser\r\na1 OK in\r\n"),
            (b"a3 APPEND INBOX {5+}\r\nhello\r\n", b"a3 NO [OVERQUOTA] Quota exceeded\r\n"),
            (b"a4 NOOP\r\n", b"a4 NO [THROTTLED] Request is throttled\r\n")])
        alerts = [a for a in an if a["rule"] == "response-code"]
        self.assertEqual(len(alerts), 3, an)
        self.assertTrue(alerts[0]["detail"].startswith("ALERT [ALERT]"), alerts[0])
        self.assertIn("Please log in via your web browser", alerts[0]["detail"])
        self.assertIn("[OVERQUOTA]", alerts[1]["detail"])
        self.assertIn("[THROTTLED]", alerts[2]["detail"])
        self.assertFired(px, an, "response-code", words="Please log in")
        self.assertOnly(an, "response-code")
        # on a terminal the ALERT's row stands out (reverse video), the others not
        r = run_imaptap(["analyze", self.pcap, "--color", "always", "--anomalies-only"],
                        timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [ln for ln in r.stdout.splitlines() if "! response-code" in ln]
        self.assertEqual(len(rows), 3, r.stdout)
        self.assertIn("\x1b[7m! response-code", rows[0])
        self.assertNotIn("\x1b[7m", rows[1] + rows[2])

    def test_unsolicited_bye(self):
        px, an = self.run_steps([LOGIN, (b"a3 NOOP\r\n",
                                         b"* BYE Server shutting down\r\n")], close_after=True)
        self.assertFired(px, an, "server-bye", words="Server shutting down")
        self.assertEqual(an[0]["severity"], "info")

    def test_hostile_text_in_a_code_is_escaped(self):
        px, an = self.run_steps([(b"a1 LOGIN alice secret\r\n",
                                  b"* OK [ALERT] \x1b[2Jcleared\x07\r\na1 OK in\r\n")])
        a = self.assertFired(px, an, "response-code")
        self.assertIn("\\x1b[2Jcleared\\x07", a["detail"])
        self.assertNotIn("\x1b", a["detail"])

    def test_a_bye_the_proxy_wrote_blames_no_server(self):
        """--fault bye: the proxy's own * BYE after IDLE's + is marked as
        injected; no server-bye (or any protocol rule) blames the server."""
        def server(p):
            p.send(b"* OK [CAPABILITY " + CAPS + b"] scripted server\r\n")
            p.line()
            p.send(b"a1 OK [CAPABILITY " + CAPS + b"] in\r\n")
            p.line()
            p.send(b"+ idling\r\n")
            p.read_all()

        def client(c):
            c.line()
            c.send(b"a1 LOGIN alice secret\r\n")
            c.line()
            c.send(b"a2 IDLE\r\n")
            c.read_all()

        px, an = self.scenario(server, client,
                               proxy_args=["--fault", "bye:after-idle-continuation"])
        self.assertTrue([r for r in px.timeline() if r["text"].startswith("* BYE imaptap")],
                        px.stderr_tail(20))
        self.assertNotIn("server-bye", {a["rule"] for a in an}, an)

    # -- the client ---------------------------------------------------------

    def test_nonsync_literal_too_large(self):
        """A {5000+} to a server with LITERAL- only (RFC 7888 section 5:
        at most 4096): it must refuse, and may run the bytes as commands."""
        caps = b"IMAP4rev1 LITERAL-"
        body = b"x" * 5000
        px, an = self.run_steps([(b"a1 LOGIN alice secret\r\n",
                                  b"a1 OK [CAPABILITY " + caps + b"] in\r\n"),
                                 (b"a3 APPEND INBOX {5000+}\r\n" + body + b"\r\n",
                                  b"a3 BAD [TOOBIG] literal too big\r\n")], caps=caps)
        self.assertFired(px, an, "nonsync-literal-too-large", "a3", "5000 bytes")
        self.assertOnly(an, "nonsync-literal-too-large")

    def test_capability_not_advertised(self):
        """MOVE and SEARCH RETURN to a server with neither MOVE nor ESEARCH
        (a client that assumed Gmail's capabilities everywhere)."""
        caps = b"IMAP4rev1 IDLE"
        px, an = self.run_steps([(b"a1 LOGIN alice secret\r\n",
                                  b"a1 OK [CAPABILITY IMAP4rev1 IDLE] in\r\n"),
                                 (b"a2 SELECT INBOX\r\n", b"* 3 EXISTS\r\na2 OK selected\r\n"),
                                 (b"a3 MOVE 1 Trash\r\n", b"a3 BAD unknown command\r\n"),
                                 (b"a4 SEARCH RETURN (COUNT) UNSEEN\r\n", b"a4 BAD no\r\n")],
                                caps=caps)
        self.assertFired(px, an, "capability-not-advertised", "a3", "do not list MOVE")
        self.assertFired(px, an, "capability-not-advertised", "a4", "do not list ESEARCH")
        self.assertOnly(an, "capability-not-advertised")

    def test_unknown_capabilities_are_not_judged(self):
        """After LOGIN with no capabilities in its OK, the list may have
        changed (RFC 9051 6.2.2): nothing is judged until a new one comes."""
        caps = b"IMAP4rev1"
        px, an = self.run_steps([(b"a1 LOGIN alice secret\r\n", b"a1 OK in\r\n"),
                                 (b"a2 SELECT INBOX\r\n", b"* 3 EXISTS\r\na2 OK selected\r\n"),
                                 (b"a3 MOVE 1 Trash\r\n", b"a3 OK moved\r\n")], caps=caps)
        self.assertOnly(an)

    def test_extension_not_enabled(self):
        """SELECT (QRESYNC ...) with no ENABLE QRESYNC first (RFC 7162
        3.2.3): the server must answer BAD."""
        px, an = self.run_steps([LOGIN, (b"a2 SELECT INBOX (QRESYNC (7 100))\r\n",
                                         b"a2 BAD QRESYNC not enabled\r\n")])
        self.assertFired(px, an, "extension-not-enabled", "a2", "before ENABLE QRESYNC")
        self.assertOnly(an, "extension-not-enabled")

    def test_msn_after_expunge(self):
        """Message 5 fetched after the server expunged one of 5: the client
        did not renumber (the classic stale-sequence-number bug)."""
        px, an = self.run_steps([LOGIN, SELECT,
                                 (b"a3 NOOP\r\n", b"* 2 EXPUNGE\r\na3 OK done\r\n"),
                                 (b"a4 FETCH 5 (FLAGS)\r\n", b"a4 BAD no such message\r\n")])
        self.assertFired(px, an, "msn-after-expunge", "a4", "names message 5 but the mailbox has 4")
        self.assertOnly(an, "msn-after-expunge")

    def test_uid_after_uidvalidity_change(self):
        """The mailbox was recreated (new UIDVALIDITY) between two
        SELECTs; the client stored a flag by an old UID without looking."""
        reselect = (b"a6 SELECT INBOX\r\n",
                    b"* 2 EXISTS\r\n* OK [UIDVALIDITY 9] v\r\n* OK [UIDNEXT 3] n\r\n"
                    b"a6 OK [READ-WRITE] selected\r\n")
        px, an = self.run_steps([LOGIN, SELECT,
                                 (b"a3 UID FETCH 1:* (FLAGS)\r\n",
                                  b"* 1 FETCH (UID 15 FLAGS ())\r\na3 OK done\r\n"),
                                 (b"a5 CLOSE\r\n", b"a5 OK closed\r\n"), reselect,
                                 (b"a7 UID STORE 15 +FLAGS (\\Deleted)\r\n",
                                  b"a7 OK stored\r\n")])
        self.assertFired(px, an, "uid-after-uidvalidity-change", "a7", "changed to 9")
        self.assertOnly(an, "uid-after-uidvalidity-change")

    # -- syntax -------------------------------------------------------------

    def test_syntax_named_once_per_element_escaped(self):
        """A FETCH response that does not close, twice, and one with an
        escape sequence: one finding per element, the bytes escaped."""
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 FETCH 1 (FLAGS)\r\n",
                                                 b"* 1 FETCH (FLAGS (\\Seen)\r\n"
                                                 b"* 2 FETCH (FLAGS (\\Seen)\r\n"
                                                 b"* 3 FETCH (FLAGS (\x1b[31m))\r\n"
                                                 b"a3 OK done\r\n")])
        found = [a for a in an if a["rule"] == "syntax"]
        self.assertEqual(len(found), 2, found)
        self.assertIn("server line", found[0]["detail"])
        self.assertIn("msg-att does not parse at byte 24", found[0]["detail"])
        self.assertIn("atom", found[1]["detail"])
        self.assertIn("\\x1b[31m", found[1]["detail"])
        self.assertOnly(an, "syntax")

    def test_client_syntax(self):
        px, an = self.run_steps([LOGIN, SELECT, (b"a3 FETCH 1:x (FLAGS)\r\n", b"a3 BAD syntax\r\n")])
        a = self.assertFired(px, an, "syntax", words="client line")
        self.assertIn("sequence-set", a["detail"])
        self.assertOnly(an, "syntax")

    def test_hostile_mailbox_names_are_escaped(self):
        """A mailbox name with a terminal escape and a quote, and a
        200-byte one, in SELECT and STATUS: the summary row and the event
        log hold them escaped and cut, never raw."""
        evil = b"\x1b]0;pwned\x07\\\"x"
        long_name = b"L" * 200
        px, an = self.run_steps([
            LOGIN,
            (b"a2 SELECT \"" + evil + b"\"\r\n",
             b"* 2 EXISTS\r\n* OK [UIDVALIDITY 3] v\r\na2 OK [READ-WRITE] selected\r\n"),
            (b"a3 STATUS " + long_name + b" (UIDNEXT UIDVALIDITY)\r\n",
             b"* STATUS " + long_name + b" (UIDNEXT 9 UIDVALIDITY 4)\r\na3 OK done\r\n")])
        self.assertOnly(an)
        text = px.stderr_text()
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        rows = [r["text"] for r in px.timeline() if r["text"].startswith("mailboxes:")]
        self.assertEqual(len(rows), 1, rows)
        self.assertIn("(UIDVALIDITY 3, EXISTS 2)", rows[0])
        self.assertIn("L" * 128 + "... (UIDVALIDITY 4, UIDNEXT 9)", rows[0])
        with open(self.events) as f:
            recs = [json.loads(line) for line in f]
        boxes = [r for r in recs if r["kind"] == "session-summary"][0]["mailboxes"]
        self.assertEqual(boxes[0]["name"], '\x1b]0;pwned\x07"x')
        self.assertEqual((boxes[0]["uidvalidity"], boxes[0]["exists"], boxes[0]["selects"]),
                         (3, 2, 1))
        self.assertEqual(boxes[1]["name"], "L" * 128)
        self.assertTrue(boxes[1]["name_cut"])

    # -- a clean session ------------------------------------------------------

    def test_uidonly_session_is_quiet(self):
        """UIDONLY (RFC 9586): UIDFETCH responses carry a UID, not a
        message number, so 4800 in a mailbox of 5 is no finding."""
        steps = [LOGIN, (b"a2 ENABLE UIDONLY\r\n", b"* ENABLED UIDONLY\r\na2 OK enabled\r\n"),
                 SELECT, (b"a3 UID FETCH 4800 (FLAGS)\r\n",
                          b"* 4800 UIDFETCH (FLAGS (\\Seen))\r\na3 OK done\r\n"),
                 (b"a4 NOOP\r\n", b"* 4801 UIDFETCH (FLAGS ())\r\na4 OK done\r\n")]
        px, an = self.run_steps(steps)
        self.assertOnly(an)

    def test_clean_extension_session_is_quiet(self):
        """ENABLE, SELECT (QRESYNC), VANISHED (EARLIER), UID FETCH with
        CHANGEDSINCE, UID MOVE, UID EXPUNGE, ESEARCH, IDLE with EXISTS and
        VANISHED, NAMESPACE, literals both ways: no finding."""
        steps = [LOGIN,
                 (b"a2 ENABLE QRESYNC\r\n", b"* ENABLED QRESYNC\r\na2 OK enabled\r\n"),
                 (b"a3 SELECT INBOX (QRESYNC (7 90 1:19))\r\n",
                  b"* 5 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 20] n\r\n"
                  b"* OK [HIGHESTMODSEQ 100] m\r\n* VANISHED (EARLIER) 3:4\r\n"
                  b"* 2 FETCH (UID 11 FLAGS (\\Seen) MODSEQ (95))\r\n"
                  b"a3 OK [READ-WRITE] selected\r\n"),
                 (b"a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
                  b"(CHANGEDSINCE 90)\r\n",
                  b"* 1 FETCH (UID 10 MODSEQ (96) FLAGS () "
                  b"BODY[HEADER.FIELDS (SUBJECT)] {14}\r\nSubject: x\r\n\r\n)\r\na4 OK done\r\n"),
                 (b"a5 UID SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n",
                  b"* ESEARCH (TAG \"a5\") UID MIN 10 MAX 19 COUNT 3\r\na5 OK done\r\n"),
                 (b"a6 UID MOVE 19 Trash\r\n",
                  b"* OK [COPYUID 3 19 1] moved\r\n* VANISHED 19\r\n"
                  b"* OK [HIGHESTMODSEQ 101] m\r\na6 OK done\r\n"),
                 (b"a7 UID EXPUNGE 10\r\n", b"* VANISHED 10\r\na7 OK done\r\n"),
                 (b"a8 NAMESPACE\r\n", b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\na8 OK done\r\n"),
                 (b"a9 IDLE\r\n", b"+ idling\r\n"),
                 (b"", b"* 4 EXISTS\r\n* VANISHED 11\r\n"),
                 (b"DONE\r\n", b"a9 OK IDLE done\r\n")]
        px, an = self.run_steps(steps)
        self.assertOnly(an)
        rows = [r["text"] for r in px.timeline() if r["text"].startswith("mailboxes:")]
        self.assertEqual(rows, ["mailboxes: INBOX (UIDVALIDITY 7, UIDNEXT 20, EXISTS 3, "
                                "HIGHESTMODSEQ 101)"], rows)


if __name__ == "__main__":
    main()
