#!/usr/bin/env python3
"""The demo's client: a real imaplib session through imaptap.

It logs in, appends a message, fetches it back, then IDLEs while a second
connection delivers new mail, so the EXISTS arrives during IDLE; then DONE
and LOGOUT. Everything it does shows up on imaptap's timeline."""

import imaplib
import sys
import time


def say(text):
    print(f"\n\033[1m>> {text}\033[0m" if sys.stdout.isatty() else f"\n>> {text}", flush=True)


def main():
    proxy_port, server_port = int(sys.argv[1]), int(sys.argv[2])
    message = (b"From: bob@example.org\r\nTo: alice@example.org\r\n"
               b"Subject: hello through imaptap\r\n\r\n" + b"hello\r\n" * 2000)

    say("client logs in through the proxy (the password is masked on the timeline)")
    m = imaplib.IMAP4("127.0.0.1", proxy_port)
    time.sleep(0.2)
    m.login("alice", "Demo-Pa55word")
    m.select("INBOX")
    time.sleep(0.2)

    say(f"client appends a {len(message)}-byte message (a synchronising literal) and fetches it back")
    m.append("INBOX", None, None, message)
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == message, "the message came back changed"
    time.sleep(0.2)

    say("client IDLEs; 2 seconds later new mail arrives over another connection")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    time.sleep(2)
    other = imaplib.IMAP4("127.0.0.1", server_port)   # straight to the server
    other.login("alice", "Demo-Pa55word")
    other.append("INBOX", None, None, b"Subject: new mail\r\n\r\nnew\r\n")
    other.logout()
    line = m.readline()
    while b"EXISTS" not in line:
        line = m.readline()
    time.sleep(0.5)
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag.encode()):
        pass

    say("client logs out")
    m.logout()


if __name__ == "__main__":
    main()
