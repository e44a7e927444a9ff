#!/usr/bin/env python3
"""A client with a connection pool, as a mail backend holds one: it opens
one imaplib connection per mailbox, in the order given, then runs the
tasks of every connection at once (log in, select its mailbox, fetch the
flags of every message, log out).

    pool_client.py PORT USER PASS MAILBOX[,MAILBOX...]

PORT may be "env": the port is $IMAPTAP_PORT. Prints one line per
mailbox ("Work 3") and exits 0 when every task succeeded."""

import imaplib
import os
import sys
import threading


def main():
    port, user, password, boxes = sys.argv[1:5]
    if port == "env":
        port = os.environ["IMAPTAP_PORT"]
    boxes = boxes.split(",")
    # the pool is filled in order; the work then runs on all at once
    pool = [imaplib.IMAP4("127.0.0.1", int(port), timeout=30) for _ in boxes]
    results, start = {}, threading.Barrier(len(boxes))

    def task(conn, box):
        try:
            start.wait()
            conn.login(user, password)
            typ, data = conn.select(box, readonly=True)
            count = int(data[0])
            if count:
                conn.fetch("1:*", "(FLAGS)")
            conn.logout()
            results[box] = count if typ == "OK" else None
        except Exception as err:  # noqa: BLE001 -- reported below
            results[box] = "error: %s" % err

    threads = [threading.Thread(target=task, args=(c, b)) for c, b in zip(pool, boxes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for box in boxes:
        print(box, results.get(box))
    sys.exit(0 if all(isinstance(results.get(b), int) for b in boxes) else 1)


if __name__ == "__main__":
    main()
