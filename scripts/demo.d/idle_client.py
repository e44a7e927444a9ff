#!/usr/bin/env python3
"""The demo's IDLE client (Python imaplib): logs in, selects INBOX, idles,
ends IDLE with DONE after a couple of seconds, waits for the tagged OK
however long the server takes, logs out."""
import imaplib
import sys
import time

port, idle_s = int(sys.argv[1]), float(sys.argv[2])
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", "secret")
m.select("INBOX")
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
m.readline()                       # "+ idling"
time.sleep(idle_s)
m.send(b"DONE\r\n")                # on the wire now: the timeline shows when
while not m.readline().startswith(tag):
    pass
m.logout()
