#!/usr/bin/env python3
"""A mailbox larger than the protocol checker's message-number to UID map
(16384 entries): a real Dovecot started with 20,000 messages, a client
that syncs flags, stores flags on a range and expunges, through the proxy.
No anomaly live or from the pcap, and the session's mailbox facts say
what the server said (EXISTS after the expunge, UIDNEXT).

    python3 tests/integration/test_big_mailbox.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from imaptap import ProxyTestCase, check_binary, main  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "Big-Mailb0x"
MESSAGES = 20000
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-big-")
    DC = module_dovecot(users={"alice": PASSWORD}, messages=MESSAGES)


class BigMailboxTest(ProxyTestCase, unittest.TestCase):
    def test_flag_sync_past_the_uid_map(self):
        px = self.start_recording_proxy(DC.port, TMP)
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        typ, data = m.select("INBOX")
        self.assertEqual((typ, data), ("OK", [str(MESSAGES).encode()]))
        # every message's UID and flags, by number and by UID
        typ, data = m.fetch("1:*", "(UID FLAGS)")
        self.assertEqual(typ, "OK")
        self.assertEqual(len(data), MESSAGES)
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        self.assertEqual((typ, len(data)), ("OK", MESSAGES))
        # flags on numbers past the map's bound, then two messages gone
        typ, _ = m.store("16000:17000", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "OK")
        typ, _ = m.store("19999:20000", "+FLAGS", "(\\Deleted)")
        self.assertEqual(typ, "OK")
        typ, data = m.expunge()
        self.assertEqual(typ, "OK")
        # two EXPUNGEs: 20000 then 19999, or 19999 twice
        self.assertEqual(len(data), 2, data)
        self.assertTrue(set(int(x) for x in data) <= {19999, 20000}, data)
        typ, data = m.fetch("19990:*", "(UID FLAGS)")
        self.assertEqual((typ, len(data)), ("OK", MESSAGES - 2 - 19990 + 1))
        m.logout()
        recs = self.assertRecordingQuiet(px, sessions=1, starttls=False, min_completions=7)
        closes = [r for r in recs if r["kind"] == "session-summary"]
        self.assertEqual(len(closes), 1, json.dumps(recs[-3:]))
        boxes = closes[0].get("mailboxes")
        self.assertTrue(boxes, json.dumps(closes[0]))
        inbox = [b for b in boxes if b.get("name") == "INBOX"]
        self.assertEqual(len(inbox), 1, json.dumps(boxes))
        self.assertEqual(inbox[0].get("exists"), MESSAGES - 2, json.dumps(inbox[0]))
        self.assertEqual(inbox[0].get("uidnext"), MESSAGES + 1, json.dumps(inbox[0]))
        # the timeline's summary row says the same
        rows = [r["text"] for r in px.timeline() if r["dir"] == "--"]
        self.assertTrue(any(re.search(r"mailboxes: INBOX \(UIDVALIDITY \d+, UIDNEXT %d, EXISTS %d"
                                      % (MESSAGES + 1, MESSAGES - 2), t) for t in rows), rows[-5:])


if __name__ == "__main__":
    main()
