#!/usr/bin/env python3
"""The client under test in the replay tests: Python's imaplib doing a
fixed session, or one changed in one way.

    replay_client.py PORT|env VARIANT PASSWORD

VARIANT: seed (put a message in INBOX and create Archive), same, mailbox
(SELECT Archive instead of INBOX), extra (one more NOOP), nologout (close
without LOGOUT), idle (an IDLE ended by DONE after 0.2 s), gmail (the
client of tests/scenarios/gmail-ignores-done.imap), literal (APPEND of a
fixed message, then FETCH of every message's body: literals both ways),
starttls or starttls-VARIANT (STARTTLS verified against $REPLAY_CA, then
same or VARIANT)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clients import RecordingIMAP4  # noqa: E402

# literal-looking text inside the literal, for parsers that scan for it
LITERAL_MESSAGE = (b"Subject: segment {5}\r\n\r\n"
                   + b"a line with a literal-looking {12}\r\n" * 8 + b"the end\r\n")


def main():
    port = int(os.environ["IMAPTAP_PORT"] if sys.argv[1] == "env" else sys.argv[1])
    variant, password = sys.argv[2], sys.argv[3]
    starttls = variant.startswith("starttls")
    m = RecordingIMAP4("localhost" if starttls else "127.0.0.1", port)
    if starttls:
        import ssl
        ctx = ssl.create_default_context(cafile=os.environ["REPLAY_CA"])
        m.starttls(ssl_context=ctx)
        variant = variant[len("starttls-"):] or "same"
    if variant == "gmail":
        # tests/scenarios/gmail-ignores-done.imap, as a client would do it
        m.login("alice", password)
        m.select("INBOX")
        m.idle_done(m._new_tag(), wait=2)
        m.logout()
        return
    if variant == "idle":
        m.idle_done(m._new_tag(), wait=0.2)
        m.logout()
        return
    m.login("alice", password)
    if variant == "literal":
        m.select("INBOX")
        m.append("INBOX", None, None, LITERAL_MESSAGE)
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        bodies = [item[1] for item in data if isinstance(item, tuple)]
        if typ != "OK" or LITERAL_MESSAGE not in bodies:
            sys.exit("the fetched messages lack the appended one: %r" % (data,))
        m.logout()
        return
    if variant == "seed":
        m.append("INBOX", None, None, b"Subject: replay\r\n\r\nhello\r\n")
        m.create("Archive")
        m.logout()
        return
    m.select("Archive" if variant == "mailbox" else "INBOX")
    m.fetch("1:*", "(FLAGS)")
    if variant == "extra":
        m.noop()
    m.noop()
    if variant == "nologout":
        m.shutdown()
        return
    m.logout()


if __name__ == "__main__":
    main()
