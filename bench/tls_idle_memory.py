#!/usr/bin/env python3
"""Memory per idle TLS<->TLS session through imaptap, and where it goes.

Starts a private Dovecot with TLS, imaptap with TLS on both legs, opens N
sessions that log in and sit idle, and reports the proxy's RSS growth per
session against the proxy after one warm-up session, in the same run.

    python3 bench/tls_idle_memory.py [--imaptap build-bench/imaptap] [--sessions 200]
    python3 bench/tls_idle_memory.py --breakdown [--sessions 300]

--breakdown builds imaptap with debug information (build-memdbg) and
bench/heapcount (a counting allocator, LD_PRELOAD), and runs the proxy four
times: TLS on both legs without the counter (the RSS total), then with the
counter on both legs, on the client leg only and on the upstream leg only.
Every live heap block is charged to the source line that allocated it;
OpenSSL's to its own source file. Printed: the total per session, split
into the OpenSSL client leg, the OpenSSL upstream leg, streams (proxy/
stream*.c with their evbuffers), IMAP state (imap/), the session and the
rest of proxy/, and what RSS holds beyond the live blocks (malloc headers,
fragmentation, pages of freed memory), with the target (< 32 KiB).
"""
import argparse
import collections
import imaplib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402

TARGET_KIB = 32
DOVECOT_EXTRA = ("service imap-login {\n  process_limit = 1000\n  client_limit = 2000\n}\n"
                 "service imap {\n  process_limit = 2000\n}\n"
                 "protocol imap {\n  mail_max_userip_connections = 10000\n}\n")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Setup:
    def __init__(self, tmp, pki, dc):
        self.tmp, self.pki, self.dc = tmp, pki, dc


def start_proxy(imaptap, st, client_tls, upstream_tls, env=None, tag="p"):
    port_file = os.path.join(st.tmp, "port-" + tag)
    legs = []
    if upstream_tls:
        legs += ["--upstream", "127.0.0.1:%d" % st.dc.imaps_port, "--upstream-tls", "implicit",
                 "--upstream-ca", st.pki.ca_cert]
    else:
        legs += ["--upstream", "127.0.0.1:%d" % st.dc.port]
    if client_tls:
        legs += ["--client-tls", "implicit", "--ca", os.path.join(st.tmp, "ca")]
    px = subprocess.Popen([imaptap, "proxy"] + legs +
                          ["--listen", "127.0.0.1:0", "--port-file", port_file, "--quiet"],
                          env=env, stderr=subprocess.DEVNULL)
    while not (os.path.exists(port_file) and open(port_file).read().endswith("\n")):
        if px.poll() is not None:
            sys.exit("imaptap exited with %s" % px.returncode)
        time.sleep(0.05)
    return px, int(open(port_file).read())


def connect(port, ctx):
    if ctx is None:
        return imaplib.IMAP4("127.0.0.1", port)
    return imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)


def idle_sessions(st, px, port, client_tls, n, at_base, at_full, burst_kib=0):
    """Warm-up session, at_base(), n idle sessions, at_full(), logout. With
    burst_kib, each session first fetches a message of that size, so what
    the relay keeps after a burst is counted too."""
    ctx = ssl.create_default_context(cafile=os.path.join(st.tmp, "ca", "ca.crt")) \
        if client_tls else None
    warm = connect(port, ctx)
    warm.login("alice", "secret")
    if burst_kib and int(warm.select("INBOX")[1][0]) == 0:
        warm.append("INBOX", None, None, b"Subject: burst\r\n\r\n" +
                    (b"x" * 76 + b"\r\n") * (burst_kib * 1024 // 78))
    warm.select("INBOX")
    if burst_kib:
        warm.fetch("1", "(BODY.PEEK[])")
    warm.logout()
    time.sleep(0.3)
    at_base()
    clients = []
    for _ in range(n):
        m = connect(port, ctx)
        m.login("alice", "secret")
        m.select("INBOX")
        if burst_kib:
            m.fetch("1", "(BODY.PEEK[])")
        clients.append(m)
    time.sleep(0.5)
    at_full()
    for m in clients:
        m.logout()


def stop(px):
    px.send_signal(signal.SIGTERM)
    px.wait()


def rss_run(imaptap, st, n, client_tls=True, upstream_tls=True, burst_kib=0):
    px, port = start_proxy(imaptap, st, client_tls, upstream_tls)
    got = {}
    try:
        idle_sessions(st, px, port, client_tls, n,
                      lambda: got.__setitem__("base", rss_kib(px.pid)),
                      lambda: got.__setitem__("full", rss_kib(px.pid)), burst_kib)
    finally:
        stop(px)
    return got["base"], got["full"]


def snapshot(px, out):
    before = open(out).read().count("\nend\n") if os.path.exists(out) else 0
    px.send_signal(signal.SIGUSR2)
    for _ in range(200):
        time.sleep(0.05)
        if os.path.exists(out) and open(out).read().count("\nend\n") > before:
            break
    text = open(out).read()
    last = text.rsplit("snapshot ", 1)[1]
    sites = {}
    for line in last.splitlines()[1:]:
        w = line.split(" ", 4)
        if w[0] != "site":
            continue
        if w[3] == "ossl":
            sites[("ossl", w[4])] = int(w[1])
        else:
            obj, off = w[4].rsplit(" ", 1)
            sites[("addr", obj, int(off, 16))] = int(w[1])
    return sites


def counted_run(imaptap, heapcount, st, n, client_tls, upstream_tls, tag, burst_kib=0):
    out = os.path.join(st.tmp, "heap-%s.txt" % tag)
    env = dict(os.environ, LD_PRELOAD=heapcount, HEAPCOUNT_OUT=out)
    px, port = start_proxy(imaptap, st, client_tls, upstream_tls, env, tag)
    got = {}
    try:
        idle_sessions(st, px, port, client_tls, n,
                      lambda: got.__setitem__("base", snapshot(px, out)),
                      lambda: got.__setitem__("full", snapshot(px, out)), burst_kib)
    finally:
        stop(px)
    delta = collections.Counter(got["full"])
    delta.subtract(got["base"])
    return {k: v / n for k, v in delta.items() if v != 0}


def resolve(imaptap, keys):
    """(file, function) of each program address, via addr2line."""
    offs = sorted({k[2] for k in keys if k[0] == "addr" and os.path.realpath(k[1]) ==
                   os.path.realpath(imaptap)})
    if not offs:
        return {}
    out = subprocess.run(["addr2line", "-f", "-e", imaptap] + ["0x%x" % (o - 1) for o in offs],
                         capture_output=True, text=True).stdout.splitlines()
    res = {}
    for i, o in enumerate(offs):
        func, where = out[2 * i], out[2 * i + 1]
        res[o] = (os.path.relpath(where.split(":")[0], ROOT) if where.startswith("/") else where,
                  func)
    return res


def category(key, names):
    if key[0] == "ossl":
        return "openssl"
    if key[0] == "addr" and key[2] in names and not key[1].endswith(".so") \
            and ".so." not in key[1]:
        f = names[key[2]][0]
        if f.startswith("proxy/stream"):
            return "streams"
        if f.startswith("imap/"):
            return "imap"
        if f.startswith("proxy/"):
            return "session"
        return "other"
    if "libevent" in key[1]:
        return "streams"
    return "other"


def ossl_group(key):
    path = key[1].split(":")[0]
    for part, name in (("ssl/record", "record layer"), ("ssl/statem", "handshake state"),
                       ("crypto/x509", "certificates (X509)"), ("crypto/asn1", "certificates (ASN.1)"),
                       ("ssl/ssl_sess", "SSL_SESSION"), ("ssl/ssl_lib", "SSL object"),
                       ("ssl/s3_lib", "SSL object"), ("providers/", "cipher/digest contexts"),
                       ("crypto/evp", "cipher/digest contexts"), ("crypto/bio", "BIOs")):
        if part in path:
            return name
    return "other OpenSSL"


def breakdown(args, st):
    build = os.path.join(ROOT, "build-memdbg")
    subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DIMAPTAP_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "-j2", "--target", "imaptap", "heapcount"],
                   check=True, stdout=subprocess.DEVNULL)
    imaptap = os.path.join(build, "imaptap")
    heapcount = os.path.join(build, "bench", "libheapcount.so")
    n = args.sessions
    burst = args.burst
    base, full = rss_run(imaptap, st, n, burst_kib=burst)
    total = (full - base) / n
    both = counted_run(imaptap, heapcount, st, n, True, True, "both", burst)
    client = counted_run(imaptap, heapcount, st, n, True, False, "client", burst)
    upstream = counted_run(imaptap, heapcount, st, n, False, True, "upstream", burst)
    names = resolve(imaptap, list(both) + list(client) + list(upstream))

    def cat_sum(d, cat):
        return sum(v for k, v in d.items() if category(k, names) == cat) / 1024

    a, b = cat_sum(client, "openssl"), cat_sum(upstream, "openssl")
    c, d, e = cat_sum(both, "streams"), cat_sum(both, "imap"), cat_sum(both, "session")
    o = cat_sum(both, "other")
    live = sum(both.values()) / 1024
    f = total - (cat_sum(both, "openssl") + c + d + e + o)
    print("per idle TLS<->TLS session (%d sessions%s): total %.1f KiB (RSS) = OpenSSL client leg "
          "%.1f + OpenSSL upstream leg %.1f + streams %.1f + IMAP state %.1f + session %.1f + "
          "other %.1f + malloc overhead/fragmentation %.1f KiB; target < %d KiB: %s"
          % (n, ", each after a %d KiB FETCH" % args.burst if args.burst else "",
             total, a, b, c, d, e, o, f, TARGET_KIB, "met" if total < TARGET_KIB else "MISSED"))
    print("  live heap blocks %.1f KiB (both legs in one run: OpenSSL %.1f KiB)"
          % (live, cat_sum(both, "openssl")))
    for leg, dd in (("client leg", client), ("upstream leg", upstream)):
        groups = collections.Counter()
        for k, v in dd.items():
            if category(k, names) == "openssl":
                groups[ossl_group(k)] += v / 1024
        print("  OpenSSL %s: %s" % (leg, ", ".join("%s %.1f" % g for g in groups.most_common()
                                                   if abs(g[1]) >= 0.05)))
    rows = collections.Counter()
    for k, v in both.items():
        if category(k, names) != "openssl":
            where = names.get(k[2], (os.path.basename(k[1]), "?")) if k[0] == "addr" else k
            rows["%s %s" % where] += v / 1024
    print("  beyond OpenSSL, by allocating function (KiB): " +
          ", ".join("%s %.2f" % r for r in rows.most_common(12) if abs(r[1]) >= 0.05))
    if args.verbose:
        for leg, dd in (("both legs", both), ("client leg", client), ("upstream leg", upstream)):
            print("  top sites, %s:" % leg)
            for k, v in sorted(dd.items(), key=lambda kv: -kv[1])[:args.verbose_sites]:
                print("   %8.0f B  %s" % (v, k[1] if k[0] == "ossl" else names.get(k[2], k)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imaptap", default="build-bench/imaptap")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--plain", action="store_true",
                    help="plain IMAP on both legs, for comparison")
    ap.add_argument("--breakdown", action="store_true",
                    help="attribute the memory to OpenSSL legs, streams, IMAP state (slower)")
    ap.add_argument("--verbose", action="store_true", help="with --breakdown: the top sites")
    ap.add_argument("--verbose-sites", type=int, default=30)
    ap.add_argument("--burst", type=int, default=0, metavar="KIB",
                    help="each session fetches a message of KIB KiB before it idles")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="imaptap-mem-")
    pki = TestPKI(os.path.join(tmp, "pki"))
    crt, key = pki.server("localhost", "127.0.0.1")
    with Dovecot(users={"alice": "secret"}, ssl=True, ssl_cert=crt, ssl_key=key,
                 extra_conf=DOVECOT_EXTRA) as dc:
        st = Setup(tmp, pki, dc)
        if args.breakdown:
            breakdown(args, st)
            return
        tls = not args.plain
        base, full = rss_run(args.imaptap, st, args.sessions, tls, tls, args.burst)
        per = (full - base) / args.sessions
        print("legs=%s sessions=%d base_rss_kib=%d rss_kib=%d per_session_kib=%.1f "
              "target_kib=%d %s" % ("tls" if tls else "plain", args.sessions, base, full, per,
                                    TARGET_KIB, "met" if per < TARGET_KIB else "MISSED"))


if __name__ == "__main__":
    main()
