#!/usr/bin/env python3
"""`imaptap proxy --transparent` behind a real REDIRECT: a client, a
gateway and a server each in a network namespace of their own
(tests/lib/netns.py); the gateway redirects the client's TCP to ports 993,
143, 10993 and 10143 to imaptap, which takes each connection's upstream from
its original destination. A real Dovecot listens on the server's address
10.77.2.2 (993 and 10993 implicit TLS, 143 and 10143 plain with STARTTLS).
The clients (tests/lib/netns_client.py, Python imaplib) run inside the
client's namespace and connect to 10.77.2.2, as a phone or a VM behind the
gateway would; they trust imaptap's CA for the certificate it shows them.

Checked: TLS from the first byte on 993, STARTTLS on 143, on an odd port
TLS found by sniffing the first byte or STARTTLS after a silent client; the
certificate the client sees (issued by imaptap's CA, named from the SNI or
the server's names); the timeline and the event log name the original
destination; the pcap holds the plain IMAP, the password masked; Dovecot's
log tells whether the upstream leg was TLS; a connection that was not
redirected gets a BYE and reaches no server; hostile first bytes and port
probes leave the proxy serving; the usage errors of --transparent.

Needs root (network namespaces, iptables): a test fails saying so
otherwise.

    python3 tests/integration/test_transparent.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib")
sys.path.insert(0, LIB)

import netns  # noqa: E402
from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imaptap import Proxy, ProxyTestCase, check_binary, main, run_imaptap, wait_for  # noqa: E402

PASSWORD = "Tr4nsp-Secret"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
SNI = "mail.example.test"
LISTEN_PORT = 8993              # where the gateway redirects to
REDIRECTED = (993, 143, 10993, 10143)
CLIENT_SCRIPT = os.path.join(LIB, "netns_client.py")
PROVIDER = "10.77.2.3"          # a second server, whose certificate names no address

ODD_LISTENERS = """service imap-login {
  inet_listener imaps_v6 {
    address = %(host6)s
    port = 993
    ssl = yes
  }
  inet_listener imaps_odd {
    address = %(host)s
    port = 10993
    ssl = yes
  }
  inet_listener imap_odd {
    address = %(host)s
    port = 10143
  }
}
"""


class TransparentProxy(Proxy):
    """imaptap proxy --transparent inside the gateway's namespace."""

    def __init__(self, net, extra_args=(), listen=None):
        super().__init__(upstream="(transparent)", extra_args=extra_args,
                         listen=listen or "%s:%d" % (net.GATEWAY, LISTEN_PORT))
        self.net = net

    def argv(self):
        return self.net.argv(self.net.gateway, [
            check_binary(), "proxy", "--transparent", "--listen", self.listen,
            "--allow-remote", "--port-file", self.port_file] + self.extra_args)


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cert_subject_cn(path):
    """The subject CN of a PEM certificate file."""
    info = ssl._ssl._test_decode_cert(path)
    return {k: v for rdn in info["subject"] for k, v in rdn}["commonName"]


class TransparentTest(ProxyTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        check_binary()
        problem = netns.requirements_problem()
        if problem:
            raise RuntimeError(problem)
        cls.tmp = tempfile.mkdtemp(prefix="imaptap-transparent-")
        cls.net = netns.Gateway(redirect_ports=REDIRECTED, to_port=LISTEN_PORT,
                                ipv6=True).start()
        try:
            pki = TestPKI(os.path.join(cls.tmp, "pki"))
            cert, key = pki.server(SNI, "imap.example.test", netns.Gateway.SERVER)
            cls.upstream_ca = pki.ca_cert
            cls.dovecot = Dovecot(users={u: PASSWORD for u in USERS}, ssl=True,
                                  ssl_cert=cert, ssl_key=key, host=netns.Gateway.SERVER,
                                  netns=cls.net.server, port=143, imaps_port=993,
                                  extra_conf=ODD_LISTENERS % {"host": netns.Gateway.SERVER,
                                                              "host6": netns.Gateway.SERVER6})
            cls.dovecot.start()
            # a server like a provider's: its certificate names no address
            cls.net.check_output(cls.net.server, ["ip", "addr", "add", PROVIDER + "/24",
                                                  "dev", "eth0"])
            cert, key = pki.server(SNI, stem="provider")
            cls.provider = Dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=cert,
                                   ssl_key=key, host=PROVIDER, netns=cls.net.server,
                                   port=143, imaps_port=993)
            cls.provider.start()
        except BaseException:
            cls.net.stop()
            raise
        cls.ca_dir = os.path.join(cls.tmp, "ca")

    @classmethod
    def tearDownClass(cls):
        cls.provider.stop()
        cls.dovecot.stop()
        cls.net.stop()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # ----- helpers -----------------------------------------------------
    def proxy(self, *extra, listen=None):
        d = tempfile.mkdtemp(dir=self.tmp)
        self.events = os.path.join(d, "events.jsonl")
        self.pcap = os.path.join(d, "t.pcap")
        px = TransparentProxy(self.net, listen=listen, extra_args=[
            "--ca", self.ca_dir, "--upstream-ca", self.upstream_ca,
            "--events", self.events, "--pcap", self.pcap] + list(extra))
        self._proxies.append(px)
        px.start()
        return px

    def client(self, port, *args, host=netns.Gateway.SERVER, timeout=40):
        r = self.net.run(self.net.client, [sys.executable, CLIENT_SCRIPT, host, str(port)]
                         + list(args), capture_output=True, text=True, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def session(self, port, user, tls, sni=None, idle=False):
        args = ["--tls", tls, "--ca", os.path.join(self.ca_dir, "ca.crt"),
                "--user", user, "--password", PASSWORD]
        if sni:
            args += ["--sni", sni]
        if idle:
            args.append("--idle")
        return self.client(port, *args)

    def assert_session_ok(self, out, px, idle=False):
        self.assertTrue(out["ok"], "%s\n--- imaptap ---\n%s\n--- dovecot ---\n%s"
                        % (out, px.stderr_tail(40), self.dovecot.log_tail(10)))
        want = [["LOGIN", "OK"], ["SELECT", "OK"]]
        if idle:
            want += [["IDLE", "+"], ["DONE", "OK"]]
        self.assertEqual(out["steps"], want + [["LOGOUT", "BYE"]])

    def assert_forged(self, out, name):
        """The client was shown a certificate for name issued by imaptap's CA."""
        cert = out.get("cert")
        self.assertIsNotNone(cert, out)
        self.assertIn("DNS:" + name, cert["san"], cert)
        self.assertEqual(cert["issuer"].get("commonName"),
                         cert_subject_cn(os.path.join(self.ca_dir, "ca.crt")), cert)

    def open_row(self, px, port):
        """The timeline's open row of the session to 10.77.2.2:port."""
        want = re.compile(r"^open %s:\d+ -> %s:%d\b" % (re.escape(netns.Gateway.CLIENT),
                                                      re.escape(netns.Gateway.SERVER), port))
        return px.wait_for_row(lambda r: r["dir"] == "--" and want.search(r["text"]))

    def wait_closes(self, px, n):
        px.wait_for_row(lambda r: len([x for x in px.timeline() if x["dir"] == "--"
                                       and x["text"].startswith("close")]) >= n, timeout=20)

    def dovecot_login(self, user):
        """Dovecot's login line for user (each test logs in as its own)."""
        line = []

        def found():
            line[:] = [x for x in self.dovecot.log_text().splitlines()
                       if "Login: user=<%s>" % user in x]
            return bool(line)
        wait_for(found, "Dovecot's login of %s\n%s" % (user, self.dovecot.log_tail()))
        return line[0]

    def assert_upstream_tls(self, user, tls=True):
        line = self.dovecot_login(user)
        self.assertIn("lip=%s" % netns.Gateway.SERVER, line)
        self.assertIn("rip=%s" % netns.Gateway.GATEWAY_SERVER_SIDE, line,
                      "the upstream leg leaves from the gateway")
        if tls:
            self.assertRegex(line, r", TLS[,:]", "the upstream leg is TLS: " + line)
        else:
            self.assertNotRegex(line, r", TLS[,:]", "the upstream leg is plain: " + line)

    def open_records(self):
        return [r for r in records(self.events) if r["kind"] == "session-open"]

    # ----- the tests ---------------------------------------------------
    def test_993_tls_from_the_first_byte(self):
        px = self.proxy()
        out = self.session(993, "alice", "implicit", sni=SNI, idle=True)
        self.assert_session_ok(out, px, idle=True)
        self.assert_forged(out, SNI)
        self.open_row(px, 993)
        self.wait_closes(px, 1)
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        opens = self.open_records()
        self.assertEqual(len(opens), 1, opens)
        self.assertEqual(opens[0]["upstream"], "%s:993" % netns.Gateway.SERVER)
        self.assertTrue(opens[0]["client"].startswith(netns.Gateway.CLIENT + ":"), opens)
        self.assert_upstream_tls("alice")
        with open(self.pcap, "rb") as f:
            data = f.read()
        self.assertIn(b" LOGIN alice ", data, "the pcap holds the plain IMAP")
        self.assertIn(b" SELECT INBOX\r\n", data)
        self.assertIn(b" IDLE\r\n", data)
        self.assertIn(b"DONE\r\n", data)
        self.assertNotIn(PASSWORD.encode(), data, "the password is masked")
        self.assertIn(b"*" * len(PASSWORD), data)

    def test_ipv6_and_ipv4_through_one_dual_stack_listener(self):
        """ip6tables REDIRECT: the IPv6 original destination; an IPv4 client
        of the same [::] listener arrives v4-mapped and still finds its
        IPv4 destination."""
        px = self.proxy(listen="[::]:%d" % LISTEN_PORT)
        out = self.client(993, "--tls", "implicit", "--ca", os.path.join(self.ca_dir, "ca.crt"),
                          "--user", "heidi", "--password", PASSWORD, "--sni", SNI,
                          host=netns.Gateway.SERVER6)
        self.assert_session_ok(out, px)
        out = self.session(993, "ivan", "implicit", sni=SNI)
        self.assert_session_ok(out, px)
        self.wait_closes(px, 2)
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        upstreams = sorted(r["upstream"] for r in self.open_records())
        self.assertEqual(upstreams, sorted(["[%s]:993" % netns.Gateway.SERVER6,
                                            "%s:993" % netns.Gateway.SERVER]))
        self.assertIn("lip=%s" % netns.Gateway.SERVER6, self.dovecot_login("heidi"))
        self.assertIn("lip=%s" % netns.Gateway.SERVER, self.dovecot_login("ivan"))

    def test_143_starttls(self):
        px = self.proxy()
        out = self.session(143, "bob", "starttls")
        self.assert_session_ok(out, px)
        self.assertIn("STARTTLS", out["capabilities"], "STARTTLS offered to the client")
        # no SNI (the client named an address): the server's own names
        self.assert_forged(out, SNI)
        self.open_row(px, 143)
        self.assert_upstream_tls("bob")
        self.wait_closes(px, 1)
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        self.assertEqual([r["upstream"] for r in self.open_records()],
                         ["%s:143" % netns.Gateway.SERVER])

    def test_odd_port_tls_found_by_sniffing(self):
        px = self.proxy()
        out = self.session(10993, "carol", "implicit", sni=SNI)
        self.assert_session_ok(out, px)
        self.assert_forged(out, SNI)
        self.open_row(px, 10993)
        self.assert_upstream_tls("carol")

    def test_odd_port_silent_client_gets_starttls(self):
        px = self.proxy()
        started = time.monotonic()
        out = self.session(10143, "dave", "starttls", sni=SNI)
        self.assert_session_ok(out, px)
        self.assertIn("STARTTLS", out["capabilities"])
        self.assert_forged(out, SNI)
        self.open_row(px, 10143)
        self.assert_upstream_tls("dave")
        self.assertLess(time.monotonic() - started, 15)

    def test_upstream_tls_none_keeps_the_upstream_leg_plain(self):
        px = self.proxy("--upstream-tls", "none")
        out = self.session(143, "frank", "starttls", sni=SNI)
        self.assert_session_ok(out, px)
        self.assert_forged(out, SNI)
        self.assert_upstream_tls("frank", tls=False)

    def test_upstream_certificate_is_checked_for_the_address(self):
        """No name is known before the upstream's handshake (the client's
        STARTTLS comes later): the server's certificate is checked for the
        original destination's address, and one that names no address is
        refused, the client told why; --insecure-upstream relays it."""
        px = self.proxy()
        out = self.client(143, "--tls", "starttls", "--ca", os.path.join(self.ca_dir, "ca.crt"),
                          "--password", PASSWORD, host=PROVIDER)
        self.assertFalse(out["ok"], out)
        self.assertIn("* BYE [UNAVAILABLE] imaptap: upstream %s:143" % PROVIDER, out["error"])
        self.assertIn("certificate verify failed", out["error"])
        self.assertNotIn("Login: user=<alice>", self.provider.log_text())
        px.wait_for_row(lambda r: "certificate verify failed" in r["text"])
        self.assertEqual(px.stop(), 0, px.stderr_tail())
        px = self.proxy("--insecure-upstream")
        out = self.client(143, "--tls", "starttls", "--ca", os.path.join(self.ca_dir, "ca.crt"),
                          "--password", PASSWORD, "--sni", SNI, host=PROVIDER)
        self.assert_session_ok(out, px)
        self.assert_forged(out, SNI)
        self.assertIn("NOT VERIFIED", px.stderr_text())
        wait_for(lambda: "Login: user=<alice>" in self.provider.log_text(), "the login")

    def test_upstream_certificate_is_checked_for_the_clients_name(self):
        """On 993 the ClientHello comes before the upstream's handshake:
        the name the client asked for goes out as SNI and the server's
        certificate must carry it, as a provider's does; without a name
        the address is what is checked."""
        px = self.proxy()
        out = self.client(993, "--tls", "implicit", "--ca", os.path.join(self.ca_dir, "ca.crt"),
                          "--password", PASSWORD, "--sni", SNI, host=PROVIDER)
        self.assert_session_ok(out, px)
        self.assert_forged(out, SNI)
        wait_for(lambda: "Login: user=<alice>" in self.provider.log_text(), "the login")
        self.assertRegex(px.stderr_text(), r"upstream TLS \S+ \S+; SNI %s; certificate verified "
                         r"for %s" % (re.escape(SNI), re.escape(SNI)))
        self.assertNotIn("NOT VERIFIED", px.stderr_text())
        # a name the certificate does not carry is refused, the client told why
        out = self.client(993, "--tls", "implicit", "--ca", os.path.join(self.ca_dir, "ca.crt"),
                          "--password", PASSWORD, "--sni", "other.example.test", host=PROVIDER)
        self.assertFalse(out["ok"], out)
        self.assertIn("certificate verify failed", out["error"])
        self.assertIn("expected name other.example.test", px.stderr_text())

    def test_not_redirected_gets_bye_and_reaches_no_server(self):
        px = self.proxy()
        before = self.dovecot.log_text().count("rip=")
        for i, ns in enumerate((self.net.client, self.net.gateway)):
            if i:
                time.sleep(1.1)     # such lines come at most one a second
            r = self.net.run(ns, [sys.executable, CLIENT_SCRIPT, netns.Gateway.GATEWAY,
                                  str(LISTEN_PORT), "--read", "--timeout", "10"],
                             capture_output=True, text=True, timeout=30)
            out = json.loads(r.stdout)
            self.assertTrue(out["ok"], out)
            self.assertTrue(out["received"].startswith("* BYE [UNAVAILABLE] imaptap"), out)
            self.assertIn("not redirected", out["received"])
            self.assertTrue(out["received"].endswith("\r\n"), out)
            self.assertIn(out["end"], ("eof", "reset"), "closed by imaptap")
            # stderr says so, naming the peer
            wait_for(lambda: any(out["local"] in line and "redirect" in line.lower()
                                 for line in px.stderr_text().splitlines()),
                     "a line on %s\n%s" % (out["local"], px.stderr_tail()))
        self.assertTrue(px.alive())
        time.sleep(0.3)
        self.assertEqual(self.dovecot.log_text().count("rip="), before,
                         "no connection reached Dovecot:\n" + self.dovecot.log_tail())
        # and it still serves a redirected client
        self.assert_session_ok(self.session(993, "grace", "implicit", sni=SNI), px)

    def test_hostile_first_bytes_and_probes(self):
        px = self.proxy()
        garbage = [(10143, b"\x00\x01\xff GET / HTTP/1.0\r\n\r\n"),
                   (10993, b"\x16\x03\x01\x00\x05hello"),      # a TLS record that is not
                   (993, b"a1 LOGIN x y\r\n"),                   # plain text on 993
                   (143, b"\x1b]0;owned\x07\r\n")]
        for port, data in garbage:
            out = self.client(port, "--raw", data.hex(), "--timeout", "5")
            self.assertTrue(out["ok"], out)
            self.assertTrue(px.alive(), px.stderr_tail())
        for port in REDIRECTED:
            self.assertTrue(self.client(port, "--probe")["ok"])
        self.wait_closes(px, len(garbage) + len(REDIRECTED))
        text = px.stderr_text()
        self.assertNotIn("\x1b]0;owned", text, "no raw escape reaches the terminal")
        self.assertTrue(px.alive(), px.stderr_tail())
        self.assert_session_ok(self.session(993, "erin", "implicit", sni=SNI, idle=True), px,
                               idle=True)


class UsageTest(unittest.TestCase):
    """What --transparent refuses (no namespaces needed)."""

    def usage_error(self, *args):
        r = run_imaptap(["proxy", "--transparent"] + list(args))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertNotIn("AddressSanitizer", r.stderr)
        return r.stderr

    def test_with_upstream(self):
        err = self.usage_error("--upstream", "127.0.0.1:1", "--ca", tempfile.mkdtemp())
        self.assertIn("--transparent", err)
        self.assertIn("--upstream", err)

    def test_without_ca(self):
        err = self.usage_error()
        self.assertIn("--transparent", err)
        self.assertIn("--ca", err)

    def test_with_client_tls(self):
        err = self.usage_error("--client-tls", "implicit", "--ca", tempfile.mkdtemp())
        self.assertIn("--client-tls", err)


class HarnessTest(unittest.TestCase):
    """The namespaces and the redirect themselves: a listener in the
    gateway reads the original destination the client connected to, and
    nothing is left behind."""

    def test_redirect_keeps_the_original_destination(self):
        import socket
        import struct
        import threading
        problem = netns.requirements_problem()
        if problem:
            self.fail(problem)
        for how in ("iptables", "nft"):
            with netns.Gateway(redirect_ports=(10993,), to_port=LISTEN_PORT,
                               redirect_with=how) as net:
                names = (net.client, net.gateway, net.server)
                srv = netns.in_netns(net.gateway,
                                     lambda: socket.create_server((net.GATEWAY, LISTEN_PORT)))
                got = []

                def accept():
                    c, _ = srv.accept()
                    od = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
                    port, addr = struct.unpack_from("!2xH4s", od)
                    got.append("%s:%d" % (socket.inet_ntoa(addr), port))
                    c.close()
                t = threading.Thread(target=accept)
                t.start()
                net.connect(net.client, net.SERVER, 10993).close()
                t.join(10)
                srv.close()
                self.assertEqual(got, ["%s:10993" % net.SERVER], how)
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True).stdout
            for name in names:
                self.assertNotIn(name, listed)


if __name__ == "__main__":
    main()
