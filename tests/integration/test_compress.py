#!/usr/bin/env python3
"""COMPRESS=DEFLATE (RFC 4978) through the proxy: the compressed bytes are
relayed as they are, and the timeline shows the inflated lines.

Against a real Dovecot with its imap_zlib plugin, with Node's imapflow
(which compresses whenever the server offers it) on plain and TLS legs, and
a Python client that compresses with zlib and moves a 1 MiB message.  A
scripted server over a real socket sends a stream that does not inflate,
which no real server does on demand.

    python3 tests/integration/test_compress.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import tshark  # noqa: E402
from certs import TestPKI  # noqa: E402
from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from node import ensure_node_clients, imapflow_session  # noqa: E402

PASSWORD = "Zlib-S3cret-7"
ZLIB_CONF = ("mail_plugins = $mail_plugins zlib\n"
             "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n")
DC = None
PKI = None
TMP = None


def setUpModule():
    global DC, PKI, TMP
    check_binary()
    ensure_node_clients()
    TMP = module_tmpdir("imaptap-compress-")
    PKI = TestPKI(os.path.join(TMP, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt,
                        ssl_key=key, extra_conf=ZLIB_CONF)



class DeflateClient:
    """A raw IMAP client that switches to raw DEFLATE after COMPRESS."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.deflate = None
        self.inflate = None
        self.read_line()   # greeting

    def send(self, data):
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed; have %r" % self.buf[-200:])
        if self.inflate is not None:
            chunk = self.inflate.decompress(chunk)
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def command(self, tag, text, literal=None):
        """Send a command (with one synchronising literal when given) and
        return (lines, literals) up to its tagged completion."""
        if literal is not None:
            self.send(b"%s %s {%d}\r\n" % (tag, text, len(literal)))
            cont = self.read_line()
            assert cont.startswith(b"+"), cont
            self.send(literal + b"\r\n")
        else:
            self.send(b"%s %s\r\n" % (tag, text))
        lines, literals = [], []
        while True:
            line = self.read_line()
            lines.append(line)
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                literals.append(self.read_exact(int(m.group(1))))
                continue
            if line.startswith(tag + b" "):
                return lines, literals

    def start_compress(self, tag=b"z1"):
        self.sock.sendall(tag + b" COMPRESS DEFLATE\r\n")
        line = self.read_line()
        assert line.startswith(tag + b" OK"), line
        # anything read past the OK's CRLF is already compressed
        rest, self.buf = self.buf, b""
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        if rest:
            self.buf = self.inflate.decompress(rest)

    def close(self):
        self.sock.close()


def session_rows(px, session=None):
    rows = px.timeline()
    if session is not None:
        rows = [r for r in rows if r["session"] == session]
    return rows


def rows_after_compress(test, px):
    """The rows of the session after the COMPRESS notice; fails when the
    notice is missing or a compress-stream-error was reported."""
    text = px.stderr_text()
    test.assertNotIn("compress-stream-error", text)
    rows = px.timeline()
    idx = [i for i, r in enumerate(rows)
           if r["dir"] == "--" and "COMPRESS DEFLATE in effect" in r["text"]]
    test.assertEqual(len(idx), 1, "one COMPRESS notice expected:\n" + px.stderr_tail(60))
    before = rows[idx[0] - 1]
    test.assertEqual(before["dir"], "S<")
    test.assertRegex(before["text"], r"^\S+ OK .*\(COMPRESS ")
    return rows[idx[0] + 1:]


class CompressTest(ProxyTestCase, unittest.TestCase):
    def assert_imapflow_lines(self, px, result):
        self.assertTrue(result["compressed"], "imapflow did not compress: %r" % result)
        self.assertIn(result["appended"]["subject"], result["subjects"])
        self.assertEqual(result["bodyLength"], result["appended"]["length"])
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        after = rows_after_compress(self, px)
        texts = [(r["dir"], r["text"]) for r in after]
        joined = "\n".join("%s %s" % t for t in texts)
        n = result["appended"]["length"]
        # the APPEND, its literal and its completion, inflated
        self.assertRegex(joined, r"C> \S+ APPEND INBOX .*\{%d\+?\}" % n)
        self.assertRegex(joined, r"\{%d bytes\}" % n)
        self.assertRegex(joined, r"S< \S+ OK \[APPENDUID \d+ %d\].*\(APPEND "
                         % result["appended"]["uid"])
        # the FETCH answer carries the subject in its ENVELOPE
        self.assertIn(result["appended"]["subject"], joined)
        self.assertRegex(joined, r"S< \S+ OK .*\((UID )?FETCH ")
        self.assertRegex(joined, r"C> \S+ LOGOUT")
        self.assertRegex(joined, r"S< \* BYE")
        self.assertNotIn(PASSWORD, px.stderr_text())
        return after

    def close_bytes(self, px):
        row = px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        return row["text"]

    def test_imapflow_plain_legs(self):
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "z.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        result = imapflow_session("127.0.0.1", px.port, "alice", PASSWORD)
        self.assert_imapflow_lines(px, result)
        # the pcap holds the inflated stream: Wireshark reads the IMAP
        # after COMPRESS as plain lines, checksums and all
        self.assertEqual(tshark.problems(pcap), [])
        commands = [r[0].upper() for r in tshark.fields(pcap, "imap.request.command",
                                                         "imap.request.command")]
        self.assertIn("COMPRESS", commands)
        after = commands[commands.index("COMPRESS") + 1:]
        self.assertIn("APPEND", after)
        self.assertIn("LOGOUT", after)
        c, _, _, _ = tshark.follow(pcap, 0)
        self.assertIn(result["appended"]["subject"].encode(), c)

    def test_imapflow_tls_both_legs(self):
        ca = os.path.join(tempfile.mkdtemp(dir=TMP), "ca")
        px = self.start_proxy(DC.imaps_port, extra_args=[
            "--upstream-tls", "implicit", "--upstream-ca", PKI.ca_cert,
            "--client-tls", "implicit", "--ca", ca])
        result = imapflow_session("127.0.0.1", px.port, "alice", PASSWORD,
                                  tls_ca=os.path.join(ca, "ca.crt"),
                                  servername="localhost")
        self.assert_imapflow_lines(px, result)
        self.assertIn("(client TLS, upstream TLS)", px.stderr_text())

    def close_record(self, events, session=1):
        for _ in range(100):
            with open(events) as f:
                recs = [json.loads(line) for line in f if '"session-close"' in line]
            recs = [r for r in recs if r["session"] == session]
            if recs:
                return recs[0]
            time.sleep(0.1)
        self.fail("no session-close in %s" % events)

    def test_one_mebibyte_each_way_compressed(self):
        d = tempfile.mkdtemp(dir=TMP)
        pcap, events = os.path.join(d, "z.pcap"), os.path.join(d, "z.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        c = DeflateClient(px.port)
        lines, _ = c.command(b"a1", b"LOGIN alice " + PASSWORD.encode())
        self.assertTrue(lines[-1].startswith(b"a1 OK"), lines)
        c.start_compress()
        msg = make_message(1024 * 1024, tag="deflate")
        lines, _ = c.command(b"a2", b"APPEND INBOX", literal=msg)
        self.assertTrue(lines[-1].startswith(b"a2 OK"), lines)
        uid = re.search(rb"APPENDUID \d+ (\d+)", lines[-1]).group(1)
        lines, _ = c.command(b"a3", b"SELECT INBOX")
        self.assertTrue(lines[-1].startswith(b"a3 OK"), lines)
        lines, literals = c.command(b"a4", b"UID FETCH " + uid + b" (BODY.PEEK[])")
        self.assertTrue(lines[-1].startswith(b"a4 OK"), lines)
        self.assertEqual(literals, [msg])
        lines, _ = c.command(b"a5", b"LOGOUT")
        c.close()
        px.wait_for_row(lambda r: "(LOGOUT " in r["text"])
        after = rows_after_compress(self, px)
        joined = "\n".join("%s %s" % (r["dir"], r["text"]) for r in after)
        self.assertRegex(joined, r"C> a2 APPEND INBOX \{1048576\}")
        self.assertRegex(joined, r"S< \+ ")
        self.assertRegex(joined, r"S< a2 OK \[APPENDUID .*\(APPEND ")
        self.assertRegex(joined, r"S< \* \d+ FETCH \(UID %s BODY\[\] \{1048576\}"
                         % uid.decode())
        self.assertEqual(len(re.findall(r"\{1048576 bytes\}", joined)), 2, joined)
        self.assertRegex(joined, r"S< a4 OK .*\(UID FETCH ")
        self.assertRegex(joined, r"S< a5 OK .*\(LOGOUT ")
        # the close counts the IMAP stream as observed (inflated), the
        # same live and from the pcap
        close = self.close_bytes(px)
        m = re.search(r"c2s ([\d.]+) (\w+), s2c ([\d.]+) (\w+)", close)
        self.assertIsNotNone(m, close)
        live = self.close_record(events)
        self.assertGreater(live["bytes_c2s"], 1024 * 1024)
        self.assertGreater(live["bytes_s2c"], 1024 * 1024)
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", "-"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        offline = [json.loads(line) for line in r.stdout.splitlines()
                   if '"session-close"' in line][0]
        self.assertEqual((offline["bytes_c2s"], offline["bytes_s2c"]),
                         (live["bytes_c2s"], live["bytes_s2c"]))

    def test_stream_that_does_not_inflate(self):
        """A scripted server accepts COMPRESS and sends garbage: the client
        gets the garbage byte for byte, the timeline names the failure once
        and keeps showing the other direction."""
        garbage = b"\x00\x05\x00\x00\x00" + os.urandom(64)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        done = threading.Event()
        got_after = []

        def serve():
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] fake\r\n")
                buf = b""
                while b"COMPRESS DEFLATE\r\n" not in buf:
                    buf += conn.recv(4096)
                conn.sendall(b"z1 OK DEFLATE active\r\n" + garbage)
                inflate = zlib.decompressobj(-15)
                data = b""
                while b"\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += inflate.decompress(chunk)
                got_after.append(data)
                done.wait(10)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        px = self.start_proxy(srv.getsockname()[1])
        c = DeflateClient(px.port)
        c.sock.sendall(b"z1 COMPRESS DEFLATE\r\n")
        raw = b""
        while len(raw) < len(b"z1 OK DEFLATE active\r\n") + len(garbage):
            raw += c.sock.recv(4096)
        self.assertEqual(raw, b"z1 OK DEFLATE active\r\n" + garbage)
        d = zlib.compressobj(6, zlib.DEFLATED, -15)
        c.sock.sendall(d.compress(b"z2 NOOP\r\n") + d.flush(zlib.Z_SYNC_FLUSH))
        px.wait_for_row(lambda r: r["dir"] == "C>" and r["text"].startswith("z2 NOOP"))
        done.set()
        c.close()
        t.join(10)
        srv.close()
        self.assertEqual(got_after, [b"z2 NOOP\r\n"])
        text = px.stderr_text()
        self.assertEqual(len(re.findall(r"! compress-stream-error: the server's stream",
                                        text)), 1, px.stderr_tail(40))
        self.assertIn("the relay goes on", text)


if __name__ == "__main__":
    main()
