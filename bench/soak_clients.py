#!/usr/bin/env python3
"""Real IMAP clients for the soak (bench/soak.sh): a mix of imaplib sessions
and, when Node is there, imapflow sessions, looping through the proxy until
a deadline.

Each imaplib worker repeats: LOGIN, SELECT INBOX, APPEND one message of a
random size, FETCH a few messages (flags, headers, whole bodies), IDLE for
a moment, now and then an EXPUNGE of everything so that the mailbox stays
small, LOGOUT. Workers have their own user, so mailboxes do not interfere.
The imapflow worker runs tests/node/imapflow_session.mjs (log in, maybe
COMPRESS, APPEND, FETCH every message) for its own user and empties that
mailbox with imaplib every few sessions.

On the last line prints one JSON object: sessions and commands per client
kind, and the errors seen (count and the first few texts).

    python3 bench/soak_clients.py --port P --seconds S --workers N \
        [--users-prefix soak] [--node]
"""

import argparse
import imaplib
import json
import os
import random
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))

PASSWORD = "secret"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = {}
        self.commands = {}
        self.errors = []

    def add(self, kind, sessions=0, commands=0):
        with self.lock:
            self.sessions[kind] = self.sessions.get(kind, 0) + sessions
            self.commands[kind] = self.commands.get(kind, 0) + commands

    def error(self, text):
        with self.lock:
            self.errors.append(text)


def message(size, n):
    head = ("From: soak@example.org\r\nTo: alice@example.org\r\n"
            "Subject: soak message %d\r\nMessage-ID: <soak-%d-%f@example.org>\r\n"
            "\r\n" % (n, n, time.time()))
    line = "soak line of text, the same every time, to fill the body\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def idle(c, seconds):
    """IDLE for a while (imaplib before 3.14 has no idle())."""
    tag = c._new_tag()
    c.send(tag + b" IDLE\r\n")
    while True:
        line = c.readline()
        if not line:
            raise imaplib.IMAP4.abort("EOF in IDLE")
        if line.startswith(b"+"):
            break
    time.sleep(seconds)
    c.send(b"DONE\r\n")
    while True:
        line = c.readline()
        if not line:
            raise imaplib.IMAP4.abort("EOF after DONE")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise imaplib.IMAP4.error("IDLE: %r" % line)
            return


def empty_mailbox(c):
    c.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
    c.expunge()


def imaplib_worker(port, user, deadline, stats, rng):
    n = 0
    while time.time() < deadline:
        n += 1
        cmds = 0
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
            c.login(user, PASSWORD)
            typ, data = c.select("INBOX")
            exists = int(data[0])
            cmds += 2
            size = rng.choice((512, 4096, 30000, 200000, 1000000))
            c.append("INBOX", None, None, message(size, n))
            exists += 1
            cmds += 1
            c.fetch("1:*", "(FLAGS UID RFC822.SIZE)")
            c.fetch("%d" % exists, "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
            c.fetch("%d:%d" % (max(1, exists - 2), exists), "(BODY.PEEK[])")
            cmds += 3
            c.noop()
            cmds += 1
            idle(c, rng.uniform(0.2, 1.5))
            cmds += 1
            if exists >= 20:
                empty_mailbox(c)
                cmds += 2
            c.logout()
            cmds += 1
            stats.add("imaplib", 1, cmds)
        except (imaplib.IMAP4.error, OSError, ValueError) as e:
            stats.error("imaplib %s: %s" % (user, e))
            stats.add("imaplib", 0, cmds)
            time.sleep(1)
        time.sleep(rng.uniform(0, 0.5))


def node_worker(port, user, deadline, stats, rng):
    from node import imapflow_session, NodeError
    n = 0
    while time.time() < deadline:
        n += 1
        try:
            imapflow_session("127.0.0.1", port, user, PASSWORD, timeout=60)
            stats.add("imapflow", 1, 4)
        except (NodeError, OSError, subprocess.TimeoutExpired) as e:
            stats.error("imapflow %s: %s" % (user, str(e)[:300]))
            time.sleep(1)
        if n % 5 == 0:
            try:
                c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
                c.login(user, PASSWORD)
                c.select("INBOX")
                empty_mailbox(c)
                c.logout()
                stats.add("imaplib", 1, 5)
            except (imaplib.IMAP4.error, OSError) as e:
                stats.error("imaplib %s: %s" % (user, e))
        time.sleep(rng.uniform(1, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--users-prefix", default="soak")
    ap.add_argument("--node", action="store_true", help="add an imapflow worker")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    deadline = time.time() + a.seconds
    stats = Stats()
    threads = []
    for i in range(a.workers):
        rng = random.Random(a.seed * 1000 + i)
        t = threading.Thread(target=imaplib_worker, daemon=True,
                             args=(a.port, "%s%d" % (a.users_prefix, i), deadline, stats, rng))
        threads.append(t)
    if a.node:
        rng = random.Random(a.seed * 1000 + 999)
        threads.append(threading.Thread(target=node_worker, daemon=True,
                                        args=(a.port, "%snode" % a.users_prefix, deadline,
                                              stats, rng)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"sessions": stats.sessions, "commands": stats.commands,
                      "errors": len(stats.errors), "first_errors": stats.errors[:5]}),
          flush=True)
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
