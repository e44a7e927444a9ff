#!/usr/bin/env python3
"""Memory per idle TLS<->TLS session through imaptap.

Starts a private Dovecot with TLS, imaptap with TLS on both legs, opens N
sessions that log in and sit idle, and reports the proxy's RSS growth per
session against the empty proxy measured in the same run.

    python3 bench/tls_idle_memory.py [--imaptap build-bench/imaptap] [--sessions 200]
"""
import argparse
import imaplib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imaptap", default="build-bench/imaptap")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--plain", action="store_true",
                    help="plain IMAP on both legs, for comparison")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="imaptap-mem-")
    pki = TestPKI(os.path.join(tmp, "pki"))
    crt, key = pki.server("localhost", "127.0.0.1")
    extra = "service imap-login {\n  process_limit = 1000\n  client_limit = 2000\n}\n" \
            "service imap {\n  process_limit = 2000\n}\n" \
            "protocol imap {\n  mail_max_userip_connections = 10000\n}\n"
    with Dovecot(users={"alice": "secret"}, ssl=True, ssl_cert=crt, ssl_key=key,
                 extra_conf=extra) as dc:
        port_file = os.path.join(tmp, "port")
        if args.plain:
            legs = ["--upstream", "127.0.0.1:%d" % dc.port]
        else:
            legs = ["--upstream", "127.0.0.1:%d" % dc.imaps_port,
                    "--upstream-tls", "implicit", "--upstream-ca", pki.ca_cert,
                    "--client-tls", "implicit", "--ca", os.path.join(tmp, "ca")]
        px = subprocess.Popen([args.imaptap, "proxy"] + legs +
                              ["--listen", "127.0.0.1:0", "--port-file", port_file, "--quiet"])
        try:
            measure(args, px, port_file, tmp)
        finally:
            px.send_signal(signal.SIGTERM)
            px.wait()


def connect(args, port, ctx):
    if args.plain:
        return imaplib.IMAP4("127.0.0.1", port)
    return imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)


def measure(args, px, port_file, tmp):
    while not os.path.exists(port_file):
        if px.poll() is not None:
            sys.exit("imaptap exited with %s" % px.returncode)
        time.sleep(0.05)
    port = int(open(port_file).read())
    ctx = None if args.plain else ssl.create_default_context(
        cafile=os.path.join(tmp, "ca", "ca.crt"))
    warm = connect(args, port, ctx)
    warm.login("alice", "secret")
    warm.logout()
    time.sleep(0.3)
    base = rss_kib(px.pid)
    clients = []
    for _ in range(args.sessions):
        m = connect(args, port, ctx)
        m.login("alice", "secret")
        m.select("INBOX")
        clients.append(m)
    time.sleep(0.5)
    full = rss_kib(px.pid)
    per = (full - base) / args.sessions
    print("legs=%s sessions=%d base_rss_kib=%d rss_kib=%d per_session_kib=%.1f target_kib=32 %s"
          % ("plain" if args.plain else "tls", args.sessions, base, full, per, "met" if per < 32 else "MISSED"))
    for m in clients:
        m.logout()


if __name__ == "__main__":
    main()
