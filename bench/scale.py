#!/usr/bin/env python3
"""Scale: thousands of concurrent IDLE sessions through one imaptap proxy,
TLS on both legs, against a real Dovecot on loopback.

    bench/scale.py [--sessions 10000] [--rate 400] [--hold 30] [--build-dir build-rel] [--plain]

Measures, in one run:
- new TLS sessions per second through the proxy (connect, TLS, LOGIN,
  SELECT, IDLE) against the same load straight to Dovecot;
- memory per session: the proxy's RSS with every session idling, less its
  RSS when empty, divided by the sessions (target: under 32 KiB);
- CPU while idle: the proxy's user+system time over --hold seconds with
  every session in IDLE (target: near zero; timers must not scan all
  sessions);
- DONE -> tagged OK latency when every session ends IDLE at once.
Needs root to raise the descriptor limits (the proxy holds two descriptors
per session). Traffic stays on 127.0.0.1.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
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
    if hard < need:
        sys.exit("scale: the hard descriptor limit is %d and cannot be raised here; the proxy "
                 "holds two per session, so at most %d sessions: use --sessions %d, or raise "
                 "it (ulimit -Hn as root)" % (hard, (hard - 100) // 2, (hard - 100) // 2))
    return hard


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


def parse(line):
    words = line.split()
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


def run_load(idleload, port, args, hold, watch=None):
    """Runs idleload; watch(proc) is called once every session idles.
    Returns (setup dict, done dict)."""
    proc = subprocess.Popen([idleload, "--connect", "127.0.0.1:%d" % port]
                            + ([] if args.plain else ["--tls"]) +
                            ["--login", "alice:secret", "--sessions", str(args.sessions),
                             "--rate", str(args.rate), "--parallel", str(args.parallel),
                             "--hold", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    setup = done = None
    for line in proc.stdout:
        if line.startswith("setup "):
            setup = parse(line)
        elif line.startswith("idling "):
            if watch is not None:
                watch()
            else:
                time.sleep(hold)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        elif line.startswith("done "):
            done = parse(line)
    proc.wait()
    return setup, done


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=400, help="new sessions per second at most")
    ap.add_argument("--parallel", type=int, default=200, help="sessions being set up at once")
    ap.add_argument("--hold", type=int, default=30, help="seconds every session idles")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-rel"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--plain", action="store_true", help="plain IMAP on both legs instead of TLS")
    args = ap.parse_args()

    limit = raise_limits(2 * args.sessions + 100)
    if args.no_build:
        imaptap = os.path.join(args.build_dir, "imaptap")
        idleload = os.path.join(args.build_dir, "bench", "idleload")
    else:
        imaptap, idleload = build(args.build_dir)
    work = tempfile.mkdtemp(prefix="imaptap-scale-")
    pki = TestPKI(os.path.join(work, "pki"))
    cert, key = pki.server("127.0.0.1", "localhost")
    dc = Dovecot(users={"alice": "secret"}, ssl=True, ssl_cert=cert, ssl_key=key,
                 extra_conf=DOVECOT_LIMITS).start()
    log("dovecot on 127.0.0.1:%d (imaps), descriptor limit %d" % (dc.imaps_port, limit))
    try:
        log("direct to Dovecot: %d sessions ..." % args.sessions)
        server_port = dc.port if args.plain else dc.imaps_port
        direct, direct_done = run_load(idleload, server_port, args, 2)
        log("  ", direct, direct_done)

        port_file = os.path.join(work, "proxy.port")
        legs = [] if args.plain else [
            "--upstream-tls", "implicit", "--upstream-ca", pki.ca_cert,
            "--client-tls", "implicit", "--ca", os.path.join(work, "ca")]
        proxy = subprocess.Popen([imaptap, "proxy", "--upstream", "127.0.0.1:%d" % server_port]
                                 + legs + ["--listen", "127.0.0.1:0", "--port-file", port_file,
                                  "--quiet", "--max-sessions", str(args.sessions + 100)],
                                 stderr=open(os.path.join(work, "proxy.log"), "w"))
        port = wait_file(port_file, proxy, "imaptap")
        time.sleep(1)
        empty = rss_kib(proxy.pid)
        samples = {}

        def watch():
            samples["rss_all"] = rss_kib(proxy.pid)
            c0 = cpu_seconds(proxy.pid)
            t0 = time.monotonic()
            time.sleep(args.hold)
            samples["cpu"] = cpu_seconds(proxy.pid) - c0
            samples["wall"] = time.monotonic() - t0
            samples["rss_end"] = rss_kib(proxy.pid)
        log("through imaptap: %d sessions ..." % args.sessions)
        via, via_done = run_load(idleload, port, args, args.hold, watch)
        proxy.terminate()
        proxy.wait(timeout=60)
    finally:
        dc.stop()
    n = args.sessions - int(via["failed"])
    per_session = (samples["rss_all"] - empty) / max(n, 1)
    print("scale: %d sessions, %s, Dovecot on loopback"
          % (args.sessions, "plain IMAP" if args.plain else "TLS both legs"))
    print("  new sessions/s    direct %8.1f   through imaptap %8.1f   ratio %.2f"
          % (float(direct["per_second"]), float(via["per_second"]),
             float(via["per_second"]) / float(direct["per_second"])))
    print("  failed            direct %8s   through imaptap %8s" % (direct["failed"], via["failed"]))
    print("  proxy RSS         empty %d KiB, %d idling %d KiB, after %d s %d KiB"
          % (empty, n, samples["rss_all"], args.hold, samples["rss_end"]))
    print("  memory/session    %.1f KiB (target < 32 KiB): %s"
          % (per_session, "met" if per_session < 32 else "missed"))
    print("  CPU while idle    %.3f s over %.0f s = %.2f%% of one core"
          % (samples["cpu"], samples["wall"], 100 * samples["cpu"] / samples["wall"]))
    print("  DONE->OK          direct p50 %s us p99 %s us; through imaptap p50 %s us p99 %s us"
          % (direct_done["done_ok_p50_us"], direct_done["done_ok_p99_us"],
             via_done["done_ok_p50_us"], via_done["done_ok_p99_us"]))


if __name__ == "__main__":
    main()
