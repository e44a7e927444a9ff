#!/usr/bin/env python3
"""`imaptap proxy --accept-proxy` behind a real HAProxy (PROXY protocol v1
and v2, plain and with TLS on the client leg) in front of a real Dovecot:
the timeline, the event log and the pcap name the real client, not the
balancer; HAProxy's own health checks (a v2 LOCAL header) do no harm; a
connection without a valid header (none, malformed, hostile, too slow) is
closed with one line that says why, and never reaches Dovecot.

    python3 tests/integration/test_accept_proxy.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RecordingIMAP4, read_to_eof  # noqa: E402
from pcapfile import tcp_packets  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main  # noqa: E402
from imaptap import module_dovecot, wait_for  # noqa: E402

PASSWORD = "Pr0xy-Pa55"
DC = None
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def setUpModule():
    global DC
    check_binary()
    if not os.access(HAPROXY, os.X_OK):
        raise RuntimeError("haproxy is not installed: scripts/test installs it (apt-get install haproxy)")
    DC = module_dovecot(users={"alice": PASSWORD})


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HAProxy:
    """HAProxy in TCP mode on a free loopback port, sending the PROXY
    protocol (v1 or v2) to imaptap on backend_port."""

    def __init__(self, backend_ports, version, check=False):
        self.dir = tempfile.mkdtemp(prefix="imaptap-haproxy-")
        self.port = free_port()
        send = "send-proxy" if version == 1 else "send-proxy-v2"
        checks = " check inter 300ms check-send-proxy" if check else ""
        if isinstance(backend_ports, int):
            backend_ports = [backend_ports]
        servers = "".join("  server tap%d 127.0.0.1:%d %s%s\n" % (i, p, send, checks)
                          for i, p in enumerate(backend_ports))
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("global\n  maxconn 200\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                    "  timeout server 30s\n"
                    "frontend imap\n  bind 127.0.0.1:%d\n  default_backend tap\n"
                    "backend tap\n  balance roundrobin\n%s"
                    % (self.port, servers))
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-f", conf, "-db"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("haproxy did not start: %s" % self.text())
                time.sleep(0.05)

    def text(self):
        self.log.flush()
        with open(os.path.join(self.dir, "haproxy.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class AcceptProxyTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-accept-proxy-")

    def through_haproxy(self, version, tls=False, check=False):
        events = os.path.join(self.dir, "v%d.jsonl" % version)
        pcap = os.path.join(self.dir, "v%d.pcap" % version)
        args = ["--accept-proxy", "--events", events, "--pcap", pcap]
        if tls:
            args += ["--client-tls", "implicit", "--ca", os.path.join(self.dir, "ca")]
        px = self.start_proxy(DC.port, extra_args=args)
        ha = HAProxy(px.port, version, check=check)
        self.addCleanup(ha.stop)
        if check:  # let a few health checks (LOCAL headers) arrive first
            time.sleep(1.0)
        if tls:
            ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca", "ca.crt"))
            m = imaplib.IMAP4_SSL("localhost", ha.port, ssl_context=ctx)
        else:
            m = RecordingIMAP4("127.0.0.1", ha.port)
        client_port = m.sock.getsockname()[1]
        m.login("alice", PASSWORD)
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()
        wait_for(lambda: any(r["kind"] == "session-close" and r.get("client", "").endswith(
            ":%d" % client_port) for r in records(events) if "client" in r)
            or any(r["kind"] == "session-close" for r in records(events)), "a close")
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        return px, client_port, records(events), pcap

    def assert_real_client(self, px, client_port, recs, pcap):
        opens = [r for r in recs if r["kind"] == "session-open"]
        mine = [r for r in opens if r["client"] == "127.0.0.1:%d" % client_port]
        self.assertEqual(len(mine), 1, opens)
        self.assertIn("127.0.0.1:%d" % client_port, px.stderr_text())
        # the session of the client logged in; HAProxy's own connection
        # from its ephemeral port is nowhere as a client
        logins = [r for r in recs if r["kind"] == "completion" and r.get("command") == "LOGIN"]
        self.assertEqual([r["session"] for r in logins], [mine[0]["session"]])
        ports = {p[1] for p in tcp_packets(pcap)} | {p[2] for p in tcp_packets(pcap)}
        self.assertIn(client_port, ports, "the pcap shows the real client's port")

    def test_v1_names_the_real_client(self):
        self.assert_real_client(*self.through_haproxy(1))

    def test_v2_names_the_real_client(self):
        self.assert_real_client(*self.through_haproxy(2))

    def test_v2_with_tls_on_the_client_leg(self):
        """The ClientHello follows the header in the same socket: the
        header is consumed to its last byte and TLS starts right after."""
        self.assert_real_client(*self.through_haproxy(2, tls=True))

    def test_health_checks_are_harmless(self):
        px, client_port, recs, pcap = self.through_haproxy(2, check=True)
        self.assert_real_client(px, client_port, recs, pcap)
        self.assertNotIn("--accept-proxy: closed", px.stderr_text())

    def refused(self, payload, extra=(), wait=10.0):
        px = self.start_proxy(DC.port, extra_args=["--accept-proxy"] + list(extra))
        s = socket.create_connection(("127.0.0.1", px.port))
        local = s.getsockname()[1]
        if payload:
            s.sendall(payload)
        # a reset: closed with the client's bytes unread
        got, end = read_to_eof(s, wait)
        s.close()
        self.assertNotEqual(end, "timeout", "the connection was not closed")
        self.assertEqual(got, b"", "nothing reaches a connection without a valid header")
        wait_for(lambda: "--accept-proxy: closed 127.0.0.1:%d" % local in px.stderr_text(),
                 "the refusal's line\n" + px.stderr_text())
        self.assertNotIn("-- open", px.stderr_text(), "no session for it")
        return px.stderr_text()

    def test_no_header_is_refused(self):
        text = self.refused(b"a1 LOGIN alice secret\r\n")
        self.assertIn("no PROXY protocol header", text)

    def test_malformed_v1_is_refused(self):
        text = self.refused(b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 143\r\n")
        self.assertIn("a version 1 address or port that does not parse", text)

    def test_hostile_header_reaches_no_terminal(self):
        text = self.refused(b"PROXY TCP4 \x1b]0;owned\x07 1.2.3.4 1 2\r\n")
        self.assertNotIn("\x1b", text)
        self.assertNotIn("owned", text)

    def test_a_header_that_never_ends_times_out(self):
        text = self.refused(b"PROXY TCP4 192.0.2.7", extra=["--handshake-timeout", "1s"])
        self.assertIn("no whole PROXY protocol header within the handshake timeout", text)


class ManyInstancesTest(ProxyTestCase, unittest.TestCase):
    """docs/deploy.md: HAProxy spreading clients over two imaptap instances
    (PROXY v2), each with its own pcap; mergecap joins them, and analyze of
    the merged capture covers every client's session once."""

    def test_merged_captures_cover_every_session_once(self):
        work = tempfile.mkdtemp(prefix="imaptap-deploy-")
        taps = []
        for i in (1, 2):
            pcap = os.path.join(work, "tap%d.pcap" % i)
            taps.append((self.start_proxy(DC.port, extra_args=[
                "--accept-proxy", "--pcap", pcap, "--events", pcap + ".jsonl", "--quiet"]), pcap))
        ha = HAProxy([px.port for px, _ in taps], 2)
        self.addCleanup(ha.stop)
        ports = []
        for _ in range(6):
            m = RecordingIMAP4("127.0.0.1", ha.port)
            ports.append(m.sock.getsockname()[1])
            m.login("alice", PASSWORD)
            m.select("INBOX")
            m.logout()
        for px, pcap in taps:
            self.assertEqual(px.stop(), 0, px.stderr_tail())
            logins = [r for r in records(pcap + ".jsonl")
                      if r["kind"] == "completion" and r.get("command") == "LOGIN"]
            self.assertGreater(len(logins), 0, "HAProxy sent every client to one instance")
        merged = os.path.join(work, "all.pcap")
        r = subprocess.run(["mergecap", "-F", "pcap", "-w", merged] + [p for _, p in taps],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = os.path.join(work, "all.jsonl")
        from imaptap import run_imaptap
        r = run_imaptap(["analyze", merged, "--quiet", "--events", out], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = records(out)
        clients = {x["session"]: x["client"] for x in recs if x["kind"] == "session-open"}
        logged = sorted(int(clients[x["session"]].rsplit(":", 1)[1]) for x in recs
                        if x["kind"] == "completion" and x.get("command") == "LOGIN")
        self.assertEqual(logged, sorted(ports))


class SendProxyTest(ProxyTestCase, unittest.TestCase):
    """--send-proxy toward a Dovecot listener with `haproxy = yes`: Dovecot's
    own log names the client imaptap was told of, not imaptap."""

    def dovecot_behind(self):
        from dovecot import Dovecot
        port = free_port()
        conf = ("haproxy_trusted_networks = 127.0.0.0/8\n"
                "service imap-login {\n  inet_listener imap_haproxy {\n"
                "    address = 127.0.0.1\n    port = %d\n    haproxy = yes\n  }\n}\n" % port)
        dc = Dovecot(users={"alice": PASSWORD}, extra_conf=conf).start()
        self.addCleanup(dc.stop)
        return dc, port

    def balanced_login(self, version):
        dc, haproxy_port = self.dovecot_behind()
        px = self.start_proxy(haproxy_port, extra_args=["--accept-proxy", "--send-proxy", version])
        s = socket.create_connection(("127.0.0.1", px.port))
        # the test is the balancer: its header names a client from elsewhere
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 %d\r\n" % px.port)
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b"a1 LOGIN alice %s\r\n" % PASSWORD.encode())
        line = f.readline()
        while line.startswith(b"* "):
            line = f.readline()
        self.assertTrue(line.startswith(b"a1 OK"), line)
        s.sendall(b"a2 LOGOUT\r\n")
        f.read()
        s.close()
        wait_for(lambda: "rip=192.0.2.7" in dc.log_text(), "Dovecot's login line\n" + dc.log_tail())
        self.assertIn("192.0.2.7:51000", px.stderr_text())

    def test_v1(self):
        self.balanced_login("v1")

    def test_v2(self):
        self.balanced_login("v2")

    def test_without_it_dovecot_refuses(self):
        """The same listener without a header from imaptap: Dovecot drops
        the connection (so the tests above can fail)."""
        dc, haproxy_port = self.dovecot_behind()
        px = self.start_proxy(haproxy_port)
        m = None
        with self.assertRaises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError, EOFError)):
            m = RecordingIMAP4("127.0.0.1", px.port)
            m.login("alice", PASSWORD)
        self.assertNotIn("rip=192.0.2.7", dc.log_text())

    def test_haproxy_then_imaptap_then_dovecot(self):
        """The whole chain: a client on 127.0.0.7 through HAProxy (v2) and
        imaptap (--accept-proxy --send-proxy v1) to Dovecot, whose log
        names 127.0.0.7, and so does imaptap's event log."""
        dc, haproxy_port = self.dovecot_behind()
        events = os.path.join(tempfile.mkdtemp(prefix="imaptap-chain-"), "e.jsonl")
        px = self.start_proxy(haproxy_port, extra_args=["--accept-proxy", "--send-proxy", "v1",
                                                        "--events", events])
        ha = HAProxy(px.port, 2)
        self.addCleanup(ha.stop)
        s = socket.socket()
        s.bind(("127.0.0.7", 0))
        s.connect(("127.0.0.1", ha.port))
        f = s.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        s.sendall(b"a1 LOGIN alice %s\r\na2 LOGOUT\r\n" % PASSWORD.encode())
        f.read()
        s.close()
        wait_for(lambda: "rip=127.0.0.7" in dc.log_text(), "Dovecot's login line\n" + dc.log_tail())
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        recs = records(events)
        clients = {r["session"]: r["client"] for r in recs if r["kind"] == "session-open"}
        logins = [r["session"] for r in recs if r["kind"] == "completion"
                  and r.get("command") == "LOGIN"]
        # (HAProxy's readiness probe above is a session of its own, from 127.0.0.1)
        self.assertEqual([clients[n].split(":")[0] for n in logins], ["127.0.0.7"])

    def test_bad_version_is_a_usage_error(self):
        from imaptap import run_imaptap
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:143", "--send-proxy", "v3"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--send-proxy takes v1 or v2, not 'v3'", r.stderr)


if __name__ == "__main__":
    main()
