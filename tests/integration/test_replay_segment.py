#!/usr/bin/env python3
"""imaptap replay serve --segment: the recorded server bytes in other
writes. A raw-socket client reads its socket's TCP_INFO to prove the cuts:
one data segment per byte with `byte` (plain, implicit TLS and STARTTLS:
one TLS record per byte), the same segments for one seed and others for
another with `random`, one segment per server turn with `coalesce`. Real
clients (Python imaplib, Node imapflow) pass recordings with literals made
through the proxy from the real Dovecot, replayed with `--segment byte` and
`--segment random:1`. A bad --segment value is one usage error.

    python3 tests/integration/test_replay_segment.py [--imaptap build/imaptap] [-v]
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from imaptap import ProxyTestCase, check_binary, imaptap_bin, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from imaptap import sanitizer_env, sanitizer_reports  # noqa: E402
from node import imapflow_command  # noqa: E402

PASSWORD = "Segment-S3cret-4"
SCENARIO = os.path.join(HERE, "..", "scenarios", "literal-append-fetch.imap")
CLIENT = os.path.join(HERE, "..", "lib", "replay_client.py")
DC = None
TMP = None
CA = None

# struct tcp_info (linux/tcp.h): tcpi_bytes_received, tcpi_data_segs_in
TCP_INFO_SIZE = 232
BYTES_RECEIVED_AT = 128
DATA_SEGS_IN_AT = 152


def setUpModule():
    global DC, TMP, CA
    check_binary()
    TMP = module_tmpdir("imaptap-segment-")
    CA = os.path.join(TMP, "ca")
    r = run_imaptap(["ca", "init", CA])
    assert r.returncode == 0, r.stderr
    DC = module_dovecot(users={"alice": PASSWORD})
    r = subprocess.run([sys.executable, CLIENT, str(DC.port), "seed", PASSWORD],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr



def compiled(name, text):
    """A scenario script compiled to a pcap in TMP."""
    script = os.path.join(TMP, name + ".imap")
    pcap = os.path.join(TMP, name + ".pcap")
    if not os.path.exists(pcap):
        with open(script, "w") as f:
            f.write(text)
        r = run_imaptap(["compile", script, "-o", pcap])
        assert r.returncode == 0, r.stderr
    return pcap


def scenario_text(starttls=False):
    with open(SCENARIO) as f:
        text = f.read()
    if starttls:
        # a STARTTLS right after the greeting; the rest as it was
        text = re.sub(r"(?m)^(S: \* OK .*\n)",
                      r"\1C: a0 STARTTLS\nS: a0 OK Begin TLS negotiation now\n", text, count=1)
    return text


def server_turns(text):
    """How many runs of server lines the script has (a turn: the server
    lines between two client lines)."""
    turns, last = 0, None
    for line in text.splitlines():
        side = line[:1] if line[:2] in ("S:", "S~", "S=", "C:", "C~", "C=") else None
        if side == "S" and last != "S":
            turns += 1
        if side is not None:
            last = side
    return turns


class Serve:
    """`imaptap replay serve` waiting for one connection."""

    def __init__(self, pcap, *args):
        self.port_file = os.path.join(tempfile.mkdtemp(dir=TMP), "port")
        self.proc = subprocess.Popen([imaptap_bin(), "replay", "serve", pcap, "--port-file",
                                      self.port_file] + list(args),
                                     stderr=subprocess.PIPE, text=True, env=sanitizer_env())
        deadline = time.monotonic() + 15
        text = ""
        while not text.endswith("\n"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("replay serve wrote no port file: %s"
                                     % self.proc.communicate(timeout=10)[1])
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read()
            time.sleep(0.02)
        self.port = int(text)

    def finish(self):
        """Its stderr, once it exited 0 with no sanitizer report."""
        _, err = self.proc.communicate(timeout=60)
        if self.proc.returncode != 0 or sanitizer_reports(err):
            raise AssertionError("replay serve exited %d:\n%s" % (self.proc.returncode, err))
        return err


def scenario_client(port, tls=None):
    """Plays the client side of literal-append-fetch.imap (with tls
    "starttls": of its STARTTLS variant; "implicit": over TLS from the
    first byte). Returns (plaintext bytes received after any TLS handshake,
    data segments the socket received in all)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        return talk(raw, tls)
    finally:
        raw.close()


def talk(raw, tls):
    ctx = ssl.create_default_context(cafile=os.path.join(CA, "ca.crt"))
    s = ctx.wrap_socket(raw, server_hostname="localhost") if tls == "implicit" else raw
    buf = bytearray()

    def wait_for(pattern):
        r = re.compile(pattern)
        while not r.search(buf):
            data = s.recv(65536)
            if not data:
                raise AssertionError("the server closed early; received %r" % bytes(buf))
            buf.extend(data)

    def tagged(tag):
        return rb"(?:^|\n)" + tag + rb" [^\r\n]*\r\n"

    wait_for(rb"^\* OK [^\r\n]*\r\n")
    if tls == "starttls":
        s.sendall(b"a0 STARTTLS\r\n")
        wait_for(tagged(b"a0"))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        buf.clear()
    s.sendall(b"a1 LOGIN alice secret\r\n")
    wait_for(tagged(b"a1"))
    s.sendall(b"a2 SELECT INBOX\r\n")
    wait_for(tagged(b"a2"))
    s.sendall(b"a3 APPEND INBOX (\\Seen) {38}\r\n")
    wait_for(rb"(?:^|\n)\+ [^\r\n]*\r\n")
    s.sendall(b"Subject: hello\r\n\r\na body line\r\nthe end\r\n")
    wait_for(tagged(b"a3"))
    s.sendall(b"a4 APPEND INBOX {5+}\r\nhello\r\n")
    wait_for(tagged(b"a4"))
    s.sendall(b"a5 FETCH 1:2 (FLAGS BODY.PEEK[])\r\n")
    wait_for(tagged(b"a5"))
    s.sendall(b"a6 LOGOUT\r\n")
    wait_for(tagged(b"a6"))
    while True:  # the recorded server closes
        try:
            data = s.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not data:
            break
        buf.extend(data)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    segments = struct.unpack_from("I", info, DATA_SEGS_IN_AT)[0]
    s.close()  # the TLS wrapper owns the descriptor now
    if b"{38}\r\nSubject: hello\r\n\r\na body line\r\nthe end)\r\n" not in buf:
        raise AssertionError("the FETCH literal did not arrive whole: %r" % bytes(buf))
    return len(buf), segments


def segments_of(pcap, *args, tls=None):
    """(bytes, segments, serve's stderr) of one scenario_client run."""
    serve = Serve(pcap, *args)
    try:
        n, segs = scenario_client(serve.port, tls)
    except BaseException:
        serve.proc.kill()
        print(serve.proc.communicate()[1], file=sys.stderr)
        raise
    return n, segs, serve.finish()


class SegmentCutsTest(unittest.TestCase):
    """What the client's socket received, segment by segment."""

    def setUp(self):
        self.text = scenario_text()
        self.pcap = compiled("literal", self.text)

    def test_byte_sends_one_segment_per_byte(self):
        n, segs, err = segments_of(self.pcap)
        self.assertLess(segs, n / 4, "without --segment the lines go whole")
        n, segs, err = segments_of(self.pcap, "--segment", "byte")
        self.assertGreaterEqual(segs, n)
        self.assertRegex(err, r"\(28 units, [\d.]+ s, --segment byte\) on 127\.0\.0\.1:")
        self.assertRegex(err, r"the client did what the recording did \(8 client lines; server "
                              r"bytes in %d writes, --segment byte\)" % n)

    def test_byte_over_tls_sends_one_record_per_byte(self):
        for tls, pcap, args in [
                ("implicit", self.pcap, ["--client-tls", "implicit"]),
                ("starttls", compiled("literal-starttls", scenario_text(starttls=True)),
                 ["--client-tls", "starttls"])]:
            n, segs, err = segments_of(pcap, "--ca", CA, *args, tls=tls)
            self.assertLess(segs, n / 4, tls)
            n, segs, err = segments_of(pcap, "--ca", CA, "--segment", "byte", *args, tls=tls)
            # each byte a TLS record of its own, each record a segment
            self.assertGreaterEqual(segs, n, tls)
            self.assertIn("--segment byte", err)

    def test_random_cuts_follow_the_seed(self):
        # --no-delay: a whole server turn is queued at once, so only the
        # seed decides where the cuts fall
        n, first, _ = segments_of(self.pcap, "--no-delay", "--segment", "random:1")
        _, again, _ = segments_of(self.pcap, "--no-delay", "--segment", "random:1")
        _, other, err = segments_of(self.pcap, "--no-delay", "--segment", "random:2")
        _, plain, _ = segments_of(self.pcap, "--no-delay")
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        self.assertGreater(first, plain)
        self.assertLess(first, n)
        self.assertIn("--segment random:2", err)
        _, default_seed, err = segments_of(self.pcap, "--no-delay", "--segment", "random")
        self.assertEqual(default_seed, first)
        self.assertIn("--segment random:1", err)

    def test_coalesce_sends_one_segment_per_server_turn(self):
        _, default, _ = segments_of(self.pcap)
        _, coalesced, err = segments_of(self.pcap, "--segment", "coalesce")
        turns = server_turns(self.text)
        self.assertEqual(turns, 8)
        self.assertEqual(coalesced, turns)
        self.assertLess(coalesced, default)
        self.assertIn("--segment coalesce", err)

    def test_bad_segment_value_is_a_usage_error(self):
        for value, words in [
                ("bytes", "imaptap replay serve: --segment: unknown way to split 'bytes': "
                          "use byte, random, random:SEED or coalesce"),
                ("random:x", "imaptap replay serve: --segment: bad seed in 'random:x'"),
                ("", "imaptap replay serve: --segment: unknown way to split ''")]:
            r = run_imaptap(["replay", "serve", self.pcap, "--segment", value])
            self.assertEqual(r.returncode, 2, (value, r.stderr))
            lines = r.stderr.splitlines()
            self.assertTrue(lines[0].startswith(words), (value, r.stderr))
            self.assertEqual(len(lines), 2, r.stderr)
            self.assertIn("--help", lines[1])


class RealClientsTest(ProxyTestCase, unittest.TestCase):
    """imaplib and imapflow, recorded against Dovecot, replayed cut."""

    recordings = {}

    def record(self, name, argv, proxy_args=(), env=None):
        """A client's session through the proxy to Dovecot, as a pcap."""
        if name not in RealClientsTest.recordings:
            pcap = os.path.join(tempfile.mkdtemp(dir=TMP), name + ".pcap")
            px = self.start_proxy(DC.port, extra_args=["--pcap", pcap] + list(proxy_args))
            r = subprocess.run([a.replace("$PORT", str(px.port)) for a in argv],
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            px.wait_for_row(lambda x: x["dir"] == "--" and x["text"].startswith("close"))
            RealClientsTest.recordings[name] = pcap
        return RealClientsTest.recordings[name]

    def replay(self, pcap, args, command, env=None):
        argv = [imaptap_bin(), "replay", "serve", pcap] + args + ["--"] + command
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           env=dict(sanitizer_env(), **(env or {})))
        self.assertFalse(sanitizer_reports(r.stderr), r.stderr)
        self.assertEqual(r.returncode, 0, (args, r.stdout + r.stderr))
        how = args[args.index("--segment") + 1]
        self.assertRegex(r.stderr, r"server bytes in \d+ writes, --segment %s\)" % how)

    def test_imaplib(self):
        pcap = self.record("imaplib", [sys.executable, CLIENT, "$PORT", "literal", PASSWORD])
        for how in ("byte", "random:1"):
            self.replay(pcap, ["--segment", how],
                        [sys.executable, CLIENT, "env", "literal", PASSWORD])

    def test_imaplib_starttls(self):
        ca_crt = os.path.join(CA, "ca.crt")
        env = dict(os.environ, REPLAY_CA=ca_crt)
        pcap = self.record("imaplib-starttls",
                           [sys.executable, CLIENT, "$PORT", "starttls-literal", PASSWORD],
                           proxy_args=["--client-tls", "starttls", "--ca", CA], env=env)
        for how in ("byte", "random:1"):
            self.replay(pcap, ["--client-tls", "starttls", "--ca", CA, "--segment", how],
                        [sys.executable, CLIENT, "env", "starttls-literal", PASSWORD],
                        env={"REPLAY_CA": ca_crt})

    def test_imapflow(self):
        pcap = self.record("imapflow", imapflow_command("127.0.0.1", "$PORT", "alice", PASSWORD,
                                                        script="imapflow_literal.mjs"))
        plain = imapflow_command("127.0.0.1", "$IMAPTAP_PORT", "alice", PASSWORD,
                                 script="imapflow_literal.mjs")
        for how in ("byte", "random:1"):
            self.replay(pcap, ["--segment", how], ["sh", "-c", " ".join(plain)])

    def test_imapflow_over_tls(self):
        pcap = self.record("imapflow", imapflow_command("127.0.0.1", "$PORT", "alice", PASSWORD,
                                                        script="imapflow_literal.mjs"))
        tls = imapflow_command("127.0.0.1", "$IMAPTAP_PORT", "alice", PASSWORD,
                               tls_ca=os.path.join(CA, "ca.crt"), servername="localhost",
                               script="imapflow_literal.mjs")
        for how in ("byte", "random:1"):
            self.replay(pcap, ["--client-tls", "implicit", "--ca", CA, "--segment", how],
                        ["sh", "-c", " ".join(tls)])


if __name__ == "__main__":
    main()
