#!/usr/bin/env python3
"""Replay speed: a recording of N commands (Python imaplib against a private
Dovecot, through `imaptap proxy --pcap`) served back with
`imaptap replay serve --no-delay` to the same client, against the same
client talking to Dovecot directly, in the same run.

    python3 bench/replay_bench.py [--imaptap build-bench/imaptap] [--commands 10000] [--reps 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from dovecot import Dovecot  # noqa: E402

CLIENT = r'''
import imaplib, os, sys, time
port = int(os.environ.get("IMAPTAP_PORT") or sys.argv[1])
n = int(sys.argv[2])
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", "secret")
t0 = time.monotonic()
for i in range(n // 4):
    m.noop()
    m.select("INBOX")
    m.fetch("1", "(FLAGS)")
    m.status("INBOX", "(MESSAGES)")
t1 = time.monotonic()
m.logout()
print("%.6f" % (t1 - t0))
'''


def run_client(argv, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        sys.exit("client failed: %s %s" % (r.stdout[-500:], r.stderr[-2000:]))
    return float(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imaptap", default=os.path.join(ROOT, "build-bench", "imaptap"))
    ap.add_argument("--commands", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="imaptap-replay-bench-")
    client = os.path.join(tmp, "client.py")
    with open(client, "w") as f:
        f.write(CLIENT)
    with Dovecot(users={"alice": "secret"}) as dc:
        import imaplib
        m = imaplib.IMAP4("127.0.0.1", dc.port)
        m.login("alice", "secret")
        m.append("INBOX", None, None, b"Subject: bench\r\n\r\nhello\r\n")
        m.logout()
        pcap = os.path.join(tmp, "rec.pcap")
        pf = os.path.join(tmp, "port")
        px = subprocess.Popen([a.imaptap, "proxy", "--upstream", "127.0.0.1:%d" % dc.port,
                               "--listen", "127.0.0.1:0", "--port-file", pf, "--pcap", pcap,
                               "--quiet"])
        while not os.path.exists(pf):
            time.sleep(0.05)
        run_client([sys.executable, client, open(pf).read().strip(), str(a.commands)])
        px.terminate()
        px.wait()
        direct, replayed = [], []
        for _ in range(a.reps):
            direct.append(run_client([sys.executable, client, str(dc.port), str(a.commands)]))
            t = run_client([a.imaptap, "replay", "serve", pcap, "--no-delay", "--", sys.executable,
                            client, "0", str(a.commands)])
            replayed.append(t)
        d, r = statistics.median(direct), statistics.median(replayed)
        print("commands=%d reps=%d direct_cps=%.0f replay_cps=%.0f ratio=%.2f"
              % (a.commands, a.reps, a.commands / d, a.commands / r, d / r))


if __name__ == "__main__":
    main()
