#!/usr/bin/env python3
"""Scale: thousands of concurrent IDLE sessions through one imaptap proxy,
TLS on both legs, against a real Dovecot on loopback.

    bench/scale.py [--sessions 10000] [--rate 400] [--hold 30] [--build-dir build-rel] [--plain]
                   [--users 100] [--workers N] [--skip-direct]

Measures, in one run:
- new TLS sessions per second through the proxy (connect, TLS, LOGIN,
  SELECT, IDLE) against the same load straight to Dovecot;
- memory per session: the proxy's RSS with every session idling, less its
  RSS when empty, divided by the sessions (target: under 32 KiB);
- CPU while idle: the proxy's user+system time over --hold seconds with
  every session in IDLE (target: near zero; timers must not scan all
  sessions);
- new mail during IDLE: after the hold, one message is appended to every
  user's INBOX over a separate connection straight to Dovecot; every
  session must see the untagged EXISTS (a session that does not counts as
  failed);
- DONE -> tagged OK latency when every session then ends IDLE at once.
The sessions spread over --users mailboxes (u0, u1, ...).
Needs root to raise the descriptor limits (the proxy holds two descriptors
per session). Traffic stays on 127.0.0.1.
"""

import argparse
import imaplib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402

DOVECOT_LIMITS = """
default_client_limit = 40000
# one imap process serves many clients; thousands of processes would not fit
default_process_limit = 200
default_vsz_limit = 4G
service imap-login {
  service_count = 0
  client_limit = 40000
  process_min_avail = 4
}
service imap {
  service_count = 0
  client_limit = 2000
  process_limit = 50
}
service anvil {
  client_limit = 50000
}
service auth {
  client_limit = 50000
}
protocol imap {
  mail_max_userip_connections = 100000
  imap_idle_notify_interval = 29 mins
}
# inotify tells an idling session of new mail at once, but not every one of
# hundreds in one process was woken that way (some waited for the 30 s
# check); a check each second bounds the wait
mailbox_idle_check_interval = 1 secs
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(build_dir):
    log("building (Release) in", build_dir)
    subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DIMAPTAP_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2), "--target",
                    "imaptap", "idleload"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(build_dir, "imaptap"), os.path.join(build_dir, "bench", "idleload")


def raise_limits(need):
    """Raises the descriptor limit to need (or as far as allowed); returns
    the hard limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < need:
        with open("/proc/sys/fs/nr_open") as f:
            want = min(int(f.read()), max(need, 1 << 20))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            soft = hard = want
        except (ValueError, OSError):
            pass  # not allowed here (no CAP_SYS_RESOURCE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# descriptors an imaptap proxy holds besides its sessions' (stdio, listening
# sockets, event loops and their wakeup pipes, per worker); measured at start
PROXY_OWN_FDS_BOUND = 32


def proxies_needed(sessions, hard):
    """The fewest imaptap processes whose descriptors fit the limit: each
    holds two per session (client and upstream sockets)."""
    per = (hard - PROXY_OWN_FDS_BOUND) // 2
    return max(1, -(-sessions // per)), per


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_file(path, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().endswith("\n"):
            return int(open(path).read())
        if proc.poll() is not None:
            sys.exit("scale: %s exited %s" % (what, proc.returncode))
        time.sleep(0.05)
    sys.exit("scale: %s wrote no port file" % what)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def parse(line):
    words = line.split()
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


def raise_inotify_limits(sessions):
    """Dovecot watches each idling mailbox with inotify; the defaults (128
    instances, 8192 watches per user) are below thousands of sessions."""
    for name, want in (("max_user_instances", 8192), ("max_user_watches", 1 << 20),
                       ("max_queued_events", 1 << 16)):
        path = "/proc/sys/fs/inotify/" + name
        try:
            with open(path) as f:
                have = int(f.read())
            if have < want:
                with open(path, "w") as f:
                    f.write(str(want))
        except OSError:
            log("scale: cannot raise %s (not root?): Dovecot may poll instead" % path)


def deliver_new_mail(dc, users):
    """One message into each user's INBOX, straight to Dovecot."""
    for u in range(users):
        m = imaplib.IMAP4("127.0.0.1", dc.port)
        m.login("u%d" % u, "secret")
        m.append("INBOX", None, None,
                 b"From: a@example.com\r\nSubject: new mail during IDLE\r\n\r\nhello\r\n")
        m.logout()


def run_load(idleload, ports, args, hold, dc, watch=None):
    """Runs idleload; watch() is called once every session idles, then new
    mail goes to every mailbox and, once every session saw it (or after
    --mail-wait seconds), every IDLE ends. Returns (setup, done, mail_s)."""
    connect = []
    for port in ports:
        connect += ["--connect", "127.0.0.1:%d" % port]
    proc = subprocess.Popen([idleload] + connect + ([] if args.plain else ["--tls"]) +
                            ["--login", "u%d:secret", "--users", str(args.users),
                             "--expect-exists", "--sessions", str(args.sessions),
                             "--rate", str(args.rate), "--parallel", str(args.parallel),
                             "--hold", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    setup = done = None
    mail = {}
    lock = threading.Lock()

    def go():
        with lock:
            if not proc.stdin.closed and "go" not in mail:
                mail["go"] = True
                proc.stdin.write("go\n")
                proc.stdin.flush()
    for line in proc.stdout:
        if line.startswith("setup "):
            setup = parse(line)
        elif line.startswith("idling "):
            if watch is not None:
                watch()
            else:
                time.sleep(hold)
            mail["t0"] = time.monotonic()
            deliver_new_mail(dc, args.users)
            timer = threading.Timer(args.mail_wait, go)
            timer.start()
        elif line.startswith("newmail "):
            mail["seen_s"] = time.monotonic() - mail["t0"]
            if watch is not None:
                watch(after_mail=True)
            timer.cancel()
            go()
        elif line.startswith("done "):
            done = parse(line)
    proc.wait()
    return setup, done, mail.get("seen_s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=400, help="new sessions per second at most")
    ap.add_argument("--parallel", type=int, default=200, help="sessions being set up at once")
    ap.add_argument("--hold", type=int, default=30, help="seconds every session idles")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-rel"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--plain", action="store_true", help="plain IMAP on both legs instead of TLS")
    ap.add_argument("--users", type=int, default=0,
                    help="mailboxes the sessions spread over (default: one per 100 sessions)")
    ap.add_argument("--mail-wait", type=float, default=120,
                    help="seconds to wait for every session to see its new mail")
    ap.add_argument("--workers", type=int, default=None,
                    help="passed to imaptap proxy --workers (only when given)")
    ap.add_argument("--proxies", type=int, default=None,
                    help="imaptap processes sharing the sessions (default: 1, or the fewest "
                    "whose descriptors fit the hard limit)")
    ap.add_argument("--skip-direct", action="store_true",
                    help="no baseline straight to Dovecot (halves the run)")
    args = ap.parse_args()
    if args.users <= 0:
        args.users = max(1, args.sessions // 100)

    limit = raise_limits(2 * args.sessions + PROXY_OWN_FDS_BOUND)
    needed, per_proxy = proxies_needed(args.sessions, limit)
    if args.proxies is None:
        args.proxies = needed
    elif args.proxies < needed:
        sys.exit("scale: %d sessions need %d descriptors in one proxy; the hard limit is %d "
                 "(cannot be raised here): use --proxies %d or fewer sessions"
                 % (args.sessions, 2 * args.sessions + PROXY_OWN_FDS_BOUND, limit, needed))
    if limit < args.sessions + 64:
        sys.exit("scale: idleload holds one descriptor per session; the limit %d is too low"
                 % limit)
    raise_inotify_limits(args.sessions)
    if args.no_build:
        imaptap = os.path.join(args.build_dir, "imaptap")
        idleload = os.path.join(args.build_dir, "bench", "idleload")
    else:
        imaptap, idleload = build(args.build_dir)
    work = tempfile.mkdtemp(prefix="imaptap-scale-")
    pki = TestPKI(os.path.join(work, "pki"))
    cert, key = pki.server("127.0.0.1", "localhost")
    dc = Dovecot(users={"u%d" % u: "secret" for u in range(args.users)}, ssl=True,
                 ssl_cert=cert, ssl_key=key, extra_conf=DOVECOT_LIMITS).start()
    log("dovecot on 127.0.0.1:%d (imaps), descriptor limit %d" % (dc.imaps_port, limit))
    proxies = []
    try:
        server_port = dc.port if args.plain else dc.imaps_port
        direct = direct_done = None
        if not args.skip_direct:
            log("direct to Dovecot: %d sessions over %d mailboxes ..."
                % (args.sessions, args.users))
            direct, direct_done, direct_mail = run_load(idleload, [server_port], args, 2, dc)
            log("  ", direct, direct_done, "new mail seen by all after", direct_mail, "s")

        legs = [] if args.plain else [
            "--upstream-tls", "implicit", "--upstream-ca", pki.ca_cert,
            "--client-tls", "implicit", "--ca", os.path.join(work, "ca")]
        share = -(-args.sessions // args.proxies)
        ports = []
        for k in range(args.proxies):
            port_file = os.path.join(work, "proxy%d.port" % k)
            proxies.append(subprocess.Popen(
                [imaptap, "proxy", "--upstream", "127.0.0.1:%d" % server_port] + legs +
                ["--listen", "127.0.0.1:0", "--port-file", port_file, "--quiet",
                 "--max-sessions", str(share + 100)] +
                ([] if args.workers is None else ["--workers", str(args.workers)]),
                stderr=open(os.path.join(work, "proxy%d.log" % k), "w")))
            ports.append(wait_file(port_file, proxies[-1], "imaptap"))
        time.sleep(1)
        own_fds = max(open_fds(px.pid) for px in proxies)

        def rss():
            return sum(rss_kib(px.pid) for px in proxies)

        def cpu():
            return sum(cpu_seconds(px.pid) for px in proxies)
        empty = rss()
        samples = {}

        def watch(after_mail=False):
            if after_mail:
                samples["rss_mail"] = rss()
                return
            samples["rss_all"] = rss()
            samples["fds"] = max(open_fds(px.pid) for px in proxies)
            c0 = cpu()
            t0 = time.monotonic()
            slices, last = [], c0
            while time.monotonic() - t0 < args.hold:
                time.sleep(min(10, args.hold - (time.monotonic() - t0)))
                now = cpu()
                slices.append(now - last)
                last = now
            samples["cpu"] = last - c0
            samples["slices"] = slices
            samples["wall"] = time.monotonic() - t0
            samples["rss_end"] = rss()
        log("through imaptap (%d process%s): %d sessions ..."
            % (args.proxies, "" if args.proxies == 1 else "es", args.sessions))
        via, via_done, via_mail = run_load(idleload, ports, args, args.hold, dc, watch)
    finally:
        for px in proxies:
            px.terminate()
            px.wait(timeout=60)
        dc.stop()
    n = args.sessions - int(via["failed"])
    failed = args.sessions - int(via_done["sessions"])
    per_session = (samples["rss_all"] - empty) / max(n, 1)
    print("scale: %d sessions over %d mailboxes, %s, Dovecot on loopback, %s%s"
          % (args.sessions, args.users, "plain IMAP" if args.plain else "TLS both legs",
             "one imaptap process" if args.proxies == 1 else
             "%d imaptap processes of %d sessions" % (args.proxies, share),
             "" if args.workers is None else ", imaptap --workers %d" % args.workers))
    print("  descriptors       hard limit %d; an imaptap holds %d of its own + 2 per session "
          "(%d with its sessions idling): at most %d sessions per process%s"
          % (limit, own_fds, samples["fds"], (limit - own_fds) // 2,
             "" if args.proxies == 1 else
             "; %d sessions need %d in one process, so %d processes"
             % (args.sessions, 2 * args.sessions + own_fds, args.proxies) if needed > 1 else
             "; split over %d processes (--proxies)" % args.proxies))
    if direct is not None:
        print("  new sessions/s    direct %8.1f   through imaptap %8.1f   ratio %.2f"
              % (float(direct["per_second"]), float(via["per_second"]),
                 float(via["per_second"]) / float(direct["per_second"])))
        print("  failed            direct %8s   through imaptap %8s"
              % (args.sessions - int(direct_done["sessions"]), failed))
    else:
        print("  new sessions/s    through imaptap %8.1f" % float(via["per_second"]))
    print("  sessions held     %d in IDLE through imaptap; failed %d (set-up %s, no new mail "
          "or no OK to DONE %d): %s"
          % (int(via["sessions"]) - int(via["failed"]), failed, via["failed"],
             failed - int(via["failed"]), "0 failed" if failed == 0 else "FAILED"))
    print("  new mail seen     %s of %d sessions saw EXISTS during IDLE%s"
          % (via_done["newmail"], n, "" if via_mail is None else
             " (all within %.1f s of the APPENDs)" % via_mail))
    print("  proxy RSS         empty %d KiB, %d idling %d KiB, after %d s %d KiB, after new mail %s"
          % (empty, n, samples["rss_all"], args.hold, samples["rss_end"],
             "%d KiB" % samples["rss_mail"] if "rss_mail" in samples else "-"))
    print("  memory/session    %.1f KiB (target < 32 KiB): %s"
          % (per_session, "met" if per_session < 32 else "MISSED"))
    print("  CPU while idle    %.3f s over %.0f s = %.2f%% of one core (by 10 s: %s)"
          % (samples["cpu"], samples["wall"], 100 * samples["cpu"] / samples["wall"],
             " ".join("%.2f" % c for c in samples["slices"])))
    if direct_done is not None:
        print("  DONE->OK          direct p50 %s us p99 %s us; through imaptap p50 %s us p99 %s us"
              % (direct_done["done_ok_p50_us"], direct_done["done_ok_p99_us"],
                 via_done["done_ok_p50_us"], via_done["done_ok_p99_us"]))
    else:
        print("  DONE->OK          through imaptap p50 %s us p99 %s us"
              % (via_done["done_ok_p50_us"], via_done["done_ok_p99_us"]))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
