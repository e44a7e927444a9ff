#!/usr/bin/env python3
"""`proxy --raw-pcap FILE.pcapng`: both TLS legs as they crossed the
network, with the key log in Decryption Secrets Blocks. Against a real
Dovecot with TLS and Python's imaplib (LOGIN, SELECT, FETCH, IDLE, DONE),
with implicit TLS and with STARTTLS on both legs, judged by Wireshark's own
tools with no preferences set: tshark decrypts both legs to the same IMAP
bytes as the plain --pcap of the same run (its password unmasked), finds
the handshakes, and decrypts nothing once editcap has stripped the
secrets; capinfos validates the file. Also: mode 0600, a file already there
refused without --overwrite, usage errors, SIGHUP after the file was moved,
a proxy killed with SIGKILL, and peers that send garbage instead of a TLS
handshake: each leaves a file that still reads and decrypts.

    python3 tests/integration/test_raw_pcap.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import tshark  # noqa: E402
from certs import TestPKI  # noqa: E402
from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "Raw-S3cret-77"
DC = None
PKI = None
TMP = None
BODY = None


def setUpModule():
    global DC, PKI, TMP, BODY
    check_binary()
    TMP = module_tmpdir("imaptap-raw-")
    # no preferences at all: an empty personal configuration for tshark
    os.environ["WIRESHARK_CONFIG_DIR"] = os.path.join(TMP, "wireshark")
    os.makedirs(os.environ["WIRESHARK_CONFIG_DIR"])
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key)
    BODY = make_message(40 * 1024, tag="raw")
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    m.append("INBOX", None, None, BODY)
    m.logout()


def tool(*argv):
    r = subprocess.run(list(argv), capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def follow_tls(pcap, stream):
    """(connector's bytes, acceptor's bytes) of one stream's TLS data as
    tshark decrypts it. tshark's TLS follow names its nodes loosely: the
    client's side is the one that sent LOGOUT."""
    out = tshark.run(["-r", pcap, "-q", "-z", "follow,tls,raw,%d" % stream])
    tabbed, flush = bytearray(), bytearray()
    body = out.split("===\n", 1)[1] if "===\n" in out else ""
    for line in body.splitlines():
        if line.startswith("====="):
            break
        if line.startswith("\t"):
            tabbed += bytes.fromhex(line.strip())
        elif re.fullmatch(r"[0-9a-f]+", line.strip() or "x"):
            flush += bytes.fromhex(line.strip())
    if re.search(rb"(^|\n)\S+ LOGOUT\r\n", bytes(tabbed)):
        return bytes(tabbed), bytes(flush)
    return bytes(flush), bytes(tabbed)


DSB = 0x0000000A
EPB = 0x00000006


def pcapng_blocks(path):
    """(block type, body) of every block of a pcapng in host byte order."""
    with open(path, "rb") as f:
        data = f.read()
    out, at = [], 0
    while at + 12 <= len(data):
        kind, length = struct.unpack("=II", data[at:at + 8])
        out.append((kind, data[at + 8:at + length - 4]))
        at += length
    assert at == len(data), (at, len(data))
    return out


def leg_stream(pcap, leg, session=1):
    """The tcp.stream of a leg, found by the comment on its first SYN."""
    rows = tshark.fields(pcap, 'frame.comment contains "session %d %s leg"' % (session, leg),
                         "tcp.stream")
    assert len(rows) == 1, rows
    return int(rows[0][0])


def clear_prefix(data, end_marker):
    """data up to the end of the line holding end_marker (the clear part of
    a STARTTLS leg), or b"" when there is none."""
    i = data.find(end_marker)
    if i < 0:
        return b""
    return data[:data.index(b"\r\n", i) + 2]


def leg_bytes(pcap, leg, starttls):
    """What the connector and the acceptor of a leg said, TLS decrypted:
    the clear part before STARTTLS, then what TLS carried."""
    stream = leg_stream(pcap, leg)
    c, s = follow_tls(pcap, stream)
    if starttls:
        raw_c, raw_s, _, _ = tshark.follow(pcap, stream)
        c = clear_prefix(raw_c, b" STARTTLS\r\n") + c
        s = clear_prefix(raw_s, b" OK Begin TLS") + s
    return c, s


def tagged(data):
    """The tagged lines of an IMAP server's bytes, response codes that list
    capabilities (which the proxy edits) left out."""
    out = []
    for line in data.split(b"\r\n"):
        if re.match(rb"^[A-Za-z0-9]+ (OK|NO|BAD) ", line) and not line.startswith(b"imaptap"):
            out.append(re.sub(rb"\[CAPABILITY [^\]]*\] ", b"", line))
    return out


class RawPcapTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile_dir()
        self.raw = os.path.join(self.dir, "raw.pcapng")
        self.plain = os.path.join(self.dir, "plain.pcapng")

    def proxy(self, mode, extra=()):
        ca = os.path.join(self.dir, "ca")
        port = DC.imaps_port if mode == "implicit" else DC.port
        return self.start_proxy(port, extra_args=[
            "--client-tls", mode, "--ca", ca, "--upstream-tls", mode,
            "--upstream-ca", PKI.ca_cert, "--sni", "localhost",
            "--raw-pcap", self.raw, "--pcap", self.plain] + list(extra))

    def client(self, px, mode):
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca", "ca.crt"))
        if mode == "implicit":
            return imaplib.IMAP4_SSL("localhost", px.port, ssl_context=ctx)
        m = imaplib.IMAP4("localhost", px.port)
        self.assertEqual(m.starttls(ssl_context=ctx)[0], "OK")
        return m

    def session(self, px, mode):
        m = self.client(px, mode)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], BODY)
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        self.assertTrue(m.readline().startswith(b"+"))
        time.sleep(0.2)
        m.send(b"DONE\r\n")
        while not m.readline().startswith(tag + b" OK"):
            pass
        m.logout()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))

    def stop(self, px):
        self.assertEqual(px.stop(), 0, px.stderr_tail())

    def check_both_legs(self, mode):
        starttls = mode == "starttls"
        px = self.proxy(mode)
        self.session(px, mode)
        self.stop(px)
        self.assertEqual(oct(os.stat(self.raw).st_mode & 0o777), "0o600")

        rc, out, err = tool("capinfos", self.raw)
        self.assertEqual(rc, 0, err)
        self.assertIn("pcapng", out)
        self.assertIn("Strict time order:   True", out)
        # two handshakes, one a leg, decrypted: no -o option anywhere
        hellos = tshark.fields(self.raw, "tls.handshake.type == 1", "tcp.stream")
        self.assertEqual(len(hellos), 2, hellos)
        imap = tshark.fields(self.raw, "imap", "tcp.stream", "imap.request")
        self.assertEqual({r[0] for r in imap}, {r[0] for r in hellos})
        self.assertTrue(any("LOGIN alice" in r[1] for r in imap), imap)
        self.assertEqual(tshark.problems(self.raw), [])

        # the client leg: the plain capture's bytes, its password unmasked
        plain_c, plain_s, _, _ = tshark.follow(self.plain, 0)
        client_c, client_s = leg_bytes(self.raw, "client", starttls)
        self.assertIn(PASSWORD.encode(), client_c)
        self.assertNotIn(PASSWORD.encode(), plain_c)
        self.assertEqual(client_c.replace(PASSWORD.encode(), b"*" * len(PASSWORD)), plain_c)
        self.assertEqual(client_s, plain_s)
        self.assertIn(BODY, client_s)

        # the upstream leg: the client's commands (less the STARTTLS the
        # proxy answered, plus the proxy's own CAPABILITY over TLS), and the
        # server's answers to them
        up_c, up_s = leg_bytes(self.raw, "upstream", starttls)
        want_c = client_c
        if starttls:
            want_c = re.sub(rb"[^\r\n]+ STARTTLS\r\n", b"", client_c)
            self.assertTrue(up_c.startswith(b"imaptap0 STARTTLS\r\nimaptap1 CAPABILITY\r\n"),
                            up_c[:80])
            up_c = up_c[len(b"imaptap0 STARTTLS\r\nimaptap1 CAPABILITY\r\n"):]
        self.assertEqual(up_c, want_c)
        self.assertIn(BODY, up_s)
        client_tagged = [t for t in tagged(client_s) if b"Begin TLS" not in t]
        self.assertEqual(tagged(up_s), client_tagged)

        # imaptap analyze reads the secrets in the file too: both legs
        # decrypted, the password masked as everywhere else
        r = run_imaptap(["analyze", self.raw], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("decrypted with the key log"), 2, r.stdout)
        self.assertEqual(len(re.findall(r"C> \S+ LOGIN alice \"\*+\"", r.stdout)), 2, r.stdout)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)

        # the Decryption Secrets Block is what decrypts: without it, no IMAP
        # over TLS (a STARTTLS leg shows its clear part only)
        stripped = os.path.join(self.dir, "stripped.pcapng")
        rc, out, err = tool("editcap", "--discard-all-secrets", self.raw, stripped)
        self.assertEqual(rc, 0, err)
        imap = tshark.fields(stripped, "imap", "imap.request", "imap.response")
        self.assertTrue(all("LOGIN" not in " ".join(r) and "SELECT" not in " ".join(r)
                            for r in imap), imap)
        if not starttls:
            self.assertEqual(imap, [])
        self.assertNotIn(PASSWORD, tshark.run(["-r", stripped, "-x"]))
        return px

    def test_implicit_tls_both_legs(self):
        self.check_both_legs("implicit")

    def test_starttls_both_legs(self):
        self.check_both_legs("starttls")

    def test_one_secrets_block_a_session_before_its_packets(self):
        px = self.proxy("implicit")
        self.session(px, "implicit")
        self.session(px, "implicit")
        self.stop(px)
        rc, out, err = tool("tshark", "-r", self.raw, "-Y", "imap", "-T", "fields",
                            "-e", "tcp.stream")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(set(out.split())), 4, out)   # two sessions, two legs each
        # new secrets in a block of their own, before the records they decrypt
        blocks = pcapng_blocks(self.raw)
        dsbs = [i for i, (kind, _) in enumerate(blocks) if kind == DSB]
        app = [i for i, (kind, body) in enumerate(blocks)
               if kind == EPB and body[20 + 54:20 + 57] == b"\x17\x03\x03"]
        self.assertGreaterEqual(len(dsbs), 2, dsbs)
        self.assertLess(dsbs[0], app[0])
        self.assertGreater(dsbs[-1], app[0])     # the second session's, later
        secrets = b"".join(body[8:8 + struct.unpack("=I", body[4:8])[0]]
                           for kind, body in blocks if kind == DSB)
        self.assertTrue(all(body[:4] == struct.pack("=I", 0x544c534b)
                            for kind, body in blocks if kind == DSB))
        # both legs of both sessions: TLS 1.3's five secrets each
        self.assertEqual(secrets.count(b"CLIENT_TRAFFIC_SECRET_0 "), 4, secrets)
        self.assertTrue(secrets.endswith(b"\n"))

    def test_tls12_client_leg(self):
        # TLS 1.2 logs CLIENT_RANDOM lines, not TLS 1.3's five secrets
        px = self.proxy("implicit")
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca", "ca.crt"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        m = imaplib.IMAP4_SSL("localhost", px.port, ssl_context=ctx)
        self.assertEqual(m.sock.version(), "TLSv1.2")
        m.login("alice", PASSWORD)
        m.select("INBOX")
        m.logout()
        self.stop(px)
        secrets = b"".join(body[8:] for kind, body in pcapng_blocks(self.raw) if kind == DSB)
        self.assertIn(b"CLIENT_RANDOM ", secrets)
        imap = tshark.fields(self.raw, "imap", "tcp.stream", "imap.request")
        self.assertEqual({r[0] for r in imap if "SELECT INBOX" in r[1]}, {"0", "1"}, imap)

    def test_plain_legs_resplit_byte_by_byte(self):
        # a re-split stream writes a piece at a time: every piece on the wire
        px = self.start_proxy(DC.port, extra_args=[
            "--raw-pcap", self.raw, "--pcap", self.plain, "--fault", "split:s2c:byte"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        m.logout()
        self.stop(px)
        plain_c, plain_s, _, _ = tshark.follow(self.plain, 0)
        raw_c, raw_s, _, _ = tshark.follow(self.raw, leg_stream(self.raw, "client"))
        self.assertEqual(raw_c.replace(PASSWORD.encode(), b"*" * len(PASSWORD)), plain_c)
        # what was written before the client left after LOGOUT's BYE: the
        # plain capture has what the proxy had to write, the raw one what it wrote
        self.assertTrue(plain_s.startswith(raw_s))
        self.assertRegex(raw_s, rb"\S+ OK \[READ-WRITE\] [^\r]*\r\n")
        # written one byte a segment toward the client
        sizes = tshark.fields(self.raw, "tcp.stream == %d && tcp.srcport == 143 && tcp.len > 0"
                              % leg_stream(self.raw, "client"), "tcp.len")
        self.assertEqual({r[0] for r in sizes}, {"1"})
        self.assertEqual(len(sizes), len(raw_s))

    def test_sighup_starts_a_moved_file_anew(self):
        px = self.proxy("implicit")
        self.session(px, "implicit")
        moved = os.path.join(self.dir, "raw.1.pcapng")
        os.rename(self.raw, moved)
        px.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.raw) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.session(px, "implicit")
        self.stop(px)
        for path in (moved, self.raw):
            self.assertEqual(oct(os.stat(path).st_mode & 0o777), "0o600")
            imap = tshark.fields(path, "imap", "tcp.stream", "imap.request")
            self.assertEqual(len({r[0] for r in imap}), 2, (path, imap))
            self.assertTrue(any("LOGIN alice" in r[1] for r in imap), imap)

    def test_sigkill_leaves_a_file_that_decrypts(self):
        px = self.proxy("implicit")
        m = self.client(px, "implicit")
        m.login("alice", PASSWORD)
        m.select("INBOX")
        px.wait_for_row(lambda r: "SELECT" in r["text"] and "OK" in r["text"])
        time.sleep(0.3)
        px.expect_signal_exit = True
        px.proc.send_signal(signal.SIGKILL)
        px.proc.wait()
        rc, out, err = tool("capinfos", self.raw)
        self.assertEqual(rc, 0, err)
        requests = [r[1] for r in tshark.fields(self.raw, "imap", "tcp.stream", "imap.request")]
        # both legs, decrypted, up to the last batch the writer thread had
        self.assertEqual(sum("SELECT INBOX" in r for r in requests), 2, requests)

    def test_refused_without_overwrite(self):
        with open(self.raw, "wb") as f:
            f.write(b"an earlier run")
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--raw-pcap", self.raw])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--raw-pcap", r.stderr)
        self.assertIn("--overwrite", r.stderr)
        with open(self.raw, "rb") as f:
            self.assertEqual(f.read(), b"an earlier run")
        px = self.start_proxy(DC.port, extra_args=["--raw-pcap", self.raw, "--overwrite"])
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.logout()
        self.stop(px)
        self.assertEqual(oct(os.stat(self.raw).st_mode & 0o777), "0o600")
        # a plain leg is written as IMAP on port 143, in clear
        self.assertIn("LOGIN alice", tshark.run(["-r", self.raw, "-Y", "imap"]))

    def test_usage_errors(self):
        up = ["proxy", "--upstream", "127.0.0.1:%d" % DC.port]
        for args, words in (
                (["--raw-pcap", "-"], "not standard output"),
                (["--raw-pcap"], "--raw-pcap"),
                (["--overwrite"], "--raw-pcap")):
            r = run_imaptap(up + args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(words, r.stderr, args)
        r = run_imaptap(["proxy", "--help"])
        self.assertIn("--raw-pcap FILE.pcapng", r.stdout)
        self.assertIn("passwords", r.stdout)

    def test_garbage_instead_of_a_handshake(self):
        # a client that sends garbage to the TLS listener, and an upstream
        # that answers the proxy's ClientHello with garbage
        garbage = bytes(range(256)) * 8
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)

        def hostile_upstream():
            while True:
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                c.recv(4096)
                c.sendall(garbage)
                c.close()
        threading.Thread(target=hostile_upstream, daemon=True).start()
        px = self.proxy("implicit")
        s = socket.create_connection(("127.0.0.1", px.port))
        s.sendall(garbage)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.session(px, "implicit")         # a good session after it decrypts
        self.stop(px)
        bad = self.start_proxy(srv.getsockname()[1], extra_args=[
            "--upstream-tls", "implicit", "--insecure-upstream",
            "--raw-pcap", os.path.join(self.dir, "bad-upstream.pcapng")])
        try:
            m = imaplib.IMAP4("127.0.0.1", bad.port)
            m.logout()
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError, EOFError):
            pass
        bad.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        self.stop(bad)
        srv.close()
        for path in (self.raw, os.path.join(self.dir, "bad-upstream.pcapng")):
            rc, out, err = tool("capinfos", path)
            self.assertEqual(rc, 0, err)
        # the garbage is there as it came, and the session after decrypts
        self.assertIn(garbage, tshark.follow(self.raw, leg_stream(self.raw, "client", 1))[0])
        self.assertIn("LOGIN alice", tshark.run(["-r", self.raw, "-Y", "imap"]))
        bad_c, bad_s, _, _ = tshark.follow(os.path.join(self.dir, "bad-upstream.pcapng"),
                                           leg_stream(os.path.join(self.dir,
                                                                   "bad-upstream.pcapng"),
                                                      "upstream"))
        self.assertEqual(bad_s, garbage)
        self.assertTrue(bad_c.startswith(b"\x16\x03"), bad_c[:8])   # the ClientHello


def tempfile_dir():
    import tempfile
    return tempfile.mkdtemp(dir=TMP)


if __name__ == "__main__":
    main()
