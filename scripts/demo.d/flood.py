#!/usr/bin/env python3
"""The demo's second act: a server that answers EXPUNGE with a flood of
untagged "* 1 EXPUNGE" lines, and a client that stops reading its socket
for a few seconds, so the TCP window toward it closes.

    flood.py server PORT_FILE        serve one connection
    flood.py client PORT STUCK_S     connect, EXPUNGE, read nothing for STUCK_S
"""
import socket
import sys
import time

if sys.argv[1] == "server":
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    import os
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    c, _ = srv.accept()
    c.sendall(b"* OK [CAPABILITY IMAP4rev1] flood ready\r\n")
    line = c.makefile("rb").readline()
    tag = line.split(b" ")[0]
    block = b"* 1 EXPUNGE\r\n" * 5000
    try:
        for _ in range(60):
            c.sendall(block)
        c.sendall(tag + b" OK EXPUNGE completed\r\n")
        time.sleep(1)
    except OSError:
        pass
    c.close()
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", int(sys.argv[2])))
    s.recv(100)
    s.sendall(b"a1 EXPUNGE\r\n")
    time.sleep(float(sys.argv[3]))   # busy elsewhere: not reading
    s.settimeout(10)
    got = b""
    try:
        while b"a1 OK" not in got[-200:]:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    s.close()
