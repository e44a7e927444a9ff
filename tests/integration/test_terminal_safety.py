#!/usr/bin/env python3
"""No hostile byte reaches a terminal: escape sequences (CSI, OSC 0/8/52),
C1 controls raw and as UTF-8, BEL, BS, CR, NUL, invalid UTF-8, U+2028 and
U+202E placed by scripted peers over real sockets in every position a
person reads (tag, command, untagged keyword, response code, capability,
greeting, STARTTLS answer, literal announcement, TLS names), in crafted
captures (fault marks, foreign flows), in transcript scripts and on the
command line. Whatever imaptap writes (proxy with --color never and
always, analyze, compile, replay serve, replay client, error messages)
holds printable ASCII, line feeds and its own colour codes, nothing else
(tests/lib/terminal.py); its event log escapes every such byte too.

    python3 tests/integration/test_terminal_safety.py [--imaptap build/imaptap] [-v]
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from imaptap import ProxyTestCase, check_binary, main, module_tmpdir  # noqa: E402
from imaptap import sanitizer_env, sanitizer_reports  # noqa: E402
from pcapfile import TcpFlow, udp4_frame, write_pcap  # noqa: E402
from scripted import Peer, ScriptedServer  # noqa: E402
from terminal import HOSTILE, HOSTILE_NO_NUL, assert_json_safe  # noqa: E402
from terminal import assert_terminal_safe  # noqa: E402

H = HOSTILE
TMP = None


def setUpModule():
    global TMP
    check_binary()
    TMP = module_tmpdir("imaptap-terminal-")


def run(args, timeout=60, cwd=None):
    """imaptap ARGS (bytes or str each) to completion: (exit code, stdout
    bytes, stderr bytes); sanitizer reports fail the caller."""
    r = subprocess.run([check_binary()] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=sanitizer_env(), cwd=cwd)
    reports = sanitizer_reports(r.stderr.decode("utf-8", "replace"))
    if reports:
        raise AssertionError("sanitizer report(s):\n" + "\n".join(reports))
    return r.returncode, r.stdout, r.stderr


def wait_closed(px, timeout=20):
    """Until the proxy's close row (coloured or not) is out."""
    deadline = time.monotonic() + timeout
    while b"-- close by " not in px.stderr_bytes():
        if time.monotonic() > deadline:
            raise AssertionError("no close row within %d s:\n%s" % (timeout, px.stderr_tail()))
        time.sleep(0.05)


def read_file(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def scratch():
    return tempfile.mkdtemp(dir=TMP)


# ---- scripted peers: hostile bytes in every named position --------------

def hostile_server(peer):
    """Greeting, capability, response codes, untagged keywords before a
    continuation (to a literal and to IDLE), a literal announcement, and a
    command left unanswered."""
    peer.send(b"* OK [CAPABILITY IMAP4rev1 X" + H + b"] " + H + b" ready\r\n")
    peer.line()                                     # a1 CAPABILITY
    peer.send(b"* CAPABILITY IMAP4rev1 X" + H + b"\r\na1 OK [" + H + b"] " + H + b"\r\n")
    peer.line()                                     # a2 <hostile command>
    peer.send(b"a2 OK " + H + b"\r\n")
    tag = peer.line().split(b" ")[0]                # <hostile tag> NOOP
    peer.send(tag + b" BAD [" + H + b"] no\r\n")
    peer.line()                                     # a4 APPEND INBOX {5}
    peer.send(b"* " + H + b" 1\r\n+ go " + H + b"\r\n")
    peer.exactly(7)                                 # hello CRLF
    peer.send(b"a4 OK [APPENDUID " + H + b"] done\r\n")
    peer.line()                                     # a5 IDLE
    peer.send(b"* X" + H + b" 2\r\n+ idling\r\n")
    peer.line()                                     # DONE
    peer.send(b"a5 NO " + H + b"\r\n")
    peer.line()                                     # a6 FETCH
    peer.send(b"* 1 FETCH (BODY[" + H + b"] {4" + H + b"}\r\n"
              b"* 2 FETCH (BODY[] {4}\r\nab" + H[:2] + b")\r\na6 OK\r\n")
    peer.line()                                     # a7 X {<hostile>}
    peer.send(b"a7 BAD " + H + b"\r\n")
    peer.line()                                     # a8 <hostile>: never answered
    peer.read_all()


def hostile_client(c):
    c.line()
    c.send(b"a1 CAPABILITY\r\n")
    c.until(b"a1 ")
    c.send(b"a2 " + H + b"\r\n")
    c.until(b"a2 ")
    c.send(H + b" NOOP\r\n")
    c.until(H)
    c.send(b"a4 APPEND INBOX {5}\r\n")
    c.until(b"+ ")
    c.send(b"hello\r\n")
    c.until(b"a4 ")
    c.send(b"a5 IDLE\r\n")
    c.until(b"+ ")
    c.send(b"DONE\r\n")
    c.until(b"a5 ")
    c.send(b"a6 FETCH 1:2 BODY[]\r\n")
    c.until(b"a6 ")
    c.send(b"a7 X {" + H + b"}\r\n")
    c.until(b"a7 ")
    c.send(b"a8 " + H + b"\r\n")


class TerminalSafetyTest(ProxyTestCase, unittest.TestCase):

    def assertSafe(self, data, what):
        assert_terminal_safe(self, data, what)

    def through_proxy(self, server_script, client_script, args):
        """The scripted pair through a proxy with args; waits for the
        close row, stops the proxy; returns it."""
        srv = ScriptedServer(server_script)
        px = self.start_proxy(srv.port, extra_args=list(args))
        client = Peer(socket.create_connection(("127.0.0.1", px.port)))
        try:
            client_script(client)
        except (EOFError, OSError):
            pass
        finally:
            client.close()
        wait_closed(px)
        srv.join()
        self.assertEqual(px.stop(), 0)
        return px

    # -- the proxy ----------------------------------------------------

    def test_proxy_rows_with_hostile_peers(self):
        for color in ("never", "always"):
            with self.subTest(color=color):
                d = scratch()
                events, pcap = os.path.join(d, "events.jsonl"), os.path.join(d, "s.pcap")
                px = self.through_proxy(hostile_server, hostile_client,
                                        ["--color", color, "--events", events, "--pcap", pcap])
                err = px.stderr_bytes()
                self.assertSafe(err, "proxy --color %s stderr" % color)
                self.assertSafe(px.stdout_bytes(), "proxy stdout")
                # the hostile bytes were there, escaped, in the named places
                self.assertIn(b"\\x1b[31m", err)
                for want in (b"untagged-before-continuation", b"pending-at-eof",
                             b"-- summary:", b"-- close by"):
                    self.assertIn(want, err)
                self.assertEqual(color == "always", b"\x1b[" in err)
                with open(events, "rb") as f:
                    assert_json_safe(self, f.read(), "proxy event log")
                for c in ("never", "always"):
                    rc, out, err = run(["analyze", pcap, "--color", c])
                    self.assertEqual(rc, 0, err)
                    self.assertIn(b"pending-at-eof", out)
                    self.assertSafe(out, "analyze --color %s stdout" % c)
                    self.assertSafe(err, "analyze stderr")
                rc, out, err = run(["analyze", pcap, "--quiet", "--events", "-"])
                self.assertEqual(rc, 0, err)
                assert_json_safe(self, out, "analyze --events -")

    def test_proxy_starttls_greeting_and_answer(self):
        def bad_greeting(peer):
            peer.send(b"* " + H + b"\r\n")
            peer.read_all()

        def refused(peer):
            peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS X" + H + b"] " + H + b"\r\n")
            peer.line()
            peer.send(b"* " + H + b" 1\r\nimaptap0 NO [" + H + b"] " + H + b"\r\n")
            peer.read_all()

        def accepted_then_garbage(peer):
            peer.send(b"* OK " + H + b"\r\n")
            peer.line()
            peer.send(b"imaptap0 OK [" + H + b"] " + H + b"\r\n")
            peer.send(b"\x15\x03\x03\x00\x02\x02\x28")  # a TLS alert, not a ServerHello
            peer.read_all()

        def client(c):
            c.read_all()

        for name, script in (("greeting", bad_greeting), ("refused", refused),
                             ("accepted", accepted_then_garbage)):
            for color in ("never", "always"):
                with self.subTest(server=name, color=color):
                    px = self.through_proxy(script, client, ["--upstream-tls", "starttls",
                                                             "--color", color])
                    err = px.stderr_bytes()
                    self.assertSafe(err, "proxy stderr, STARTTLS %s" % name)
                    self.assertIn(b"\\x1b[31m", err)

    def test_proxy_tls_names(self):
        """The client's SNI and the upstream certificate's names, shown in
        the TLS notices. (An SNI with bytes outside printable ASCII is not
        a host name: proxy/tls.c drops it and the notice says no SNI.)"""
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            self.skipTest("python3-cryptography is not installed")
        import datetime

        d = scratch()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             "\x1b[31m\x1b]8;;http://x\x1b\\\x9b\u2028\u202e\x08"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "\x1b]0;t\x07\u202e")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(7)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        certfile, keyfile = os.path.join(d, "up.crt"), os.path.join(d, "up.key")
        with open(certfile, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(keyfile, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(certfile, keyfile)

        def server(peer):
            peer.sock = sctx.wrap_socket(peer.sock, server_side=True)
            peer.send(b"* OK " + H + b"\r\n")
            peer.line()
            peer.send(b"a1 OK " + H + b"\r\n")
            peer.read_all()

        srv = ScriptedServer(server)
        px = self.start_proxy(srv.port, extra_args=[
            "--upstream-tls", "implicit", "--insecure-upstream", "--client-tls", "implicit",
            "--ca", os.path.join(d, "ca"), "--color", "always"])
        # openssl sends the SNI as given, which no TLS library in Python does
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % px.port, "-quiet",
             "-servername", b"x" + HOSTILE_NO_NUL.replace(b" ", b"")],
            input=b"a1 NOOP\r\n", capture_output=True, timeout=30)
        self.assertIn(b"a1 OK", proc.stdout, proc.stderr[-2000:])
        wait_closed(px)
        srv.join()
        self.assertEqual(px.stop(), 0)
        err = px.stderr_bytes()
        self.assertIn(b"client TLS", err)
        self.assertIn(b"NOT VERIFIED", err)
        self.assertSafe(err, "proxy stderr with hostile TLS names")

    # -- captures: fault marks and foreign flows -------------------------

    def crafted_pcap(self):
        """An IMAP flow and a foreign one, both hostile, with a fault mark
        whose detail is hostile and a damaged one."""
        cli, srv = (bytes([10, 0, 0, 1]), 50432), (bytes([10, 0, 0, 2]), 143)
        imap = TcpFlow(cli, srv).open()
        imap.send(1, b"* OK " + H + b"\r\n")
        imap.send(0, b"a1 " + H + b" {3" + H + b"}\r\n")
        imap.send(1, b"* " + H + b" 1\r\na1 NO [" + H + b"] " + H + b"\r\n")
        imap.send(0, b"a2 IDLE\r\n")
        imap.send(1, b"* X" + H + b" 3\r\n")
        records = list(imap.records)
        mark = (b"<133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - fault - injected fault "
                b"session=1 client=10.0.0.1:50432 action=delay phase=active dir=s2c "
                b"spec=delay:s2c:2s: " + HOSTILE_NO_NUL)
        records.append((imap.ts + 10, udp4_frame(srv[0], cli[0], 514, 514, mark)))
        damaged = (b"<133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - fault - injected fault "
                   b"session=" + HOSTILE_NO_NUL)
        records.append((imap.ts + 20, udp4_frame(srv[0], cli[0], 514, 514, damaged)))
        imap.ts += 30
        imap.send(0, b"a3 " + H + b"\r\n")
        records.append(imap.records[-1])
        foreign = TcpFlow((bytes([10, 0, 0, 3]), 40000), (bytes([10, 0, 0, 4]), 8080),
                          ts=imap.ts + 100).open()
        foreign.send(0, b"GET /" + H + b" HTTP/1.0\r\n\r\n").send(1, H * 3).close()
        path = os.path.join(scratch(), "hostile.pcap")
        write_pcap(path, records + foreign.records)
        return path

    def test_analyze_crafted_capture(self):
        pcap = self.crafted_pcap()
        for args in ([], ["--color", "always"], ["--color", "never"], ["--session", "2"],
                     ["--fail-on", "all"]):
            with self.subTest(args=args):
                rc, out, err = run(["analyze", pcap] + args)
                self.assertSafe(out, "analyze %s stdout" % args)
                self.assertSafe(err, "analyze %s stderr" % args)
        rc, out, err = run(["analyze", pcap])
        self.assertIn(b"~ fault delay", out)
        self.assertIn(b"\\x1b[31m", out)
        self.assertIn(b"fault mark(s) do not read", err)
        rc, out, err = run(["analyze", pcap, "--quiet", "--events", "-"])
        assert_json_safe(self, out, "analyze --events - of a crafted capture")

    # -- compile and replay ---------------------------------------------

    def hostile_script(self):
        """A transcript whose every line carries the hostile bytes, with
        the \\xNN escapes of S= and C= lines."""
        esc = "".join("\\x%02x" % b for b in H)
        return ("S= * OK %s\\r\\n\n"
                "C: a1 LOGIN alice secret\n"
                "S= a1 OK [%s] %s\\r\\n\n"
                "C= a2 %s\\r\\n\n"
                "S= * %s 1\\r\\n\n"
                "S= a2 NO %s\\r\\n\n"
                "C= a3 APPEND INBOX {4}\\r\\n\n"
                "S= * X%s 1\\r\\n\n"
                "S: + go\n"
                "C= ab\\r\\n\n"
                "S= a3 OK [%s] done\\r\\n\n"
                "C= a4 %s\\r\\n\n"
                "close client\n" % ((esc,) * 9))

    def compiled(self):
        d = scratch()
        script, pcap = os.path.join(d, "h.imap"), os.path.join(d, "h.pcap")
        with open(script, "w") as f:
            f.write(self.hostile_script())
        rc, out, err = run(["compile", script, "-o", pcap])
        self.assertEqual(rc, 0, err)
        self.assertSafe(out + err, "compile output")
        return pcap

    def test_compile_errors_quote_hostile_lines(self):
        d = scratch()
        bad_scripts = [
            b"S: * OK\n" + H + b"\n",                         # not a line kind
            b"S: * OK\nC: a1 APPEND {5}\nC~ " + H + b"\n",    # literal overrun
            b"S: * OK\nC= a1 \\q" + H + b"\n",                # unknown escape
            b"S: * OK\n@" + H + b"s\n",                        # bad time
            b"S: * OK\nclose " + H + b"\n",                    # bad close
            b"S: * OK\n=== session " + H + b"\nS: x\n+" + H + b"\n",
        ]
        for i, text in enumerate(bad_scripts):
            with self.subTest(script=i):
                path = os.path.join(d, "bad%d.imap" % i)
                with open(path, "wb") as f:
                    f.write(text)
                rc, out, err = run(["compile", path, "-o", os.path.join(d, "o.pcap")])
                self.assertNotEqual(rc, 0)
                self.assertSafe(out + err, "compile error for script %d" % i)
        # the script's own name is quoted too
        name = os.path.join(d.encode(), HOSTILE_NO_NUL.replace(b"/", b"") + b".imap")
        with open(name, "wb") as f:
            f.write(b"S: * OK\nbogus\n")
        rc, out, err = run(["compile", name, "-o", os.path.join(d, "o.pcap")])
        self.assertNotEqual(rc, 0)
        self.assertSafe(out + err, "compile error naming a hostile file")
        self.assertIn(b"\\x1b", err)

    def test_compiled_hostile_recording_analyzed(self):
        pcap = self.compiled()
        for color in ("never", "always"):
            rc, out, err = run(["analyze", pcap, "--color", color])
            self.assertEqual(rc, 0, err)
            self.assertSafe(out + err, "analyze --color %s of a compiled script" % color)
            self.assertIn(b"\\x1b]8;;", out)

    def serve(self, pcap, client_script, *args):
        """replay serve pcap, one connection by client_script; (rc, stderr)."""
        d = scratch()
        port_file = os.path.join(d, "port")
        proc = subprocess.Popen([check_binary(), "replay", "serve", pcap, "--no-delay",
                                 "--port-file", port_file, "--timeout", "20"] + list(args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=sanitizer_env())
        try:
            for _ in range(500):
                if read_file(port_file).endswith("\n") or proc.poll() is not None:
                    break
                time.sleep(0.02)
            port = int(read_file(port_file))
            c = Peer(socket.create_connection(("127.0.0.1", port)))
            try:
                client_script(c)
            except (EOFError, OSError):
                pass
            finally:
                c.close()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertFalse(sanitizer_reports(err.decode("utf-8", "replace")))
        return proc.returncode, out, err

    def test_replay_serve_reports_a_hostile_client(self):
        pcap = self.compiled()

        def diverging(c):
            c.line()
            c.send(b"a1 LOGIN alice secret\r\n")
            c.line()
            c.send(b"a2 " + H + b"X\r\n")     # not what was recorded
            c.read_all()

        def overrunning(c):
            c.line()
            c.send(b"a1 " + H + b" " + H + b"\r\n")
            c.read_all()

        for name, script in (("diverging", diverging), ("overrunning", overrunning)):
            with self.subTest(client=name):
                rc, out, err = self.serve(pcap, script)
                self.assertEqual(rc, 1, err)
                self.assertIn(b"diverged", err)
                self.assertSafe(out + err, "replay serve report, %s client" % name)
                self.assertIn(b"\\x1b", err)

    def test_replay_client_reports_a_hostile_server(self):
        d = scratch()
        script, pcap = os.path.join(d, "c.imap"), os.path.join(d, "c.pcap")
        with open(script, "w") as f:
            f.write("S: * OK ready\nC: a1 NOOP\nS: a1 OK done\nC: a2 NOOP\nS: a2 OK done\n"
                    "close client\n")
        rc, out, err = run(["compile", script, "-o", pcap])
        self.assertEqual(rc, 0, err)

        def server(peer):
            peer.send(b"* OK " + H + b"\r\n")
            tag = peer.line().split(b" ")[0]
            peer.send(b"* " + H + b" 1\r\n" + tag + b" NO [" + H + b"] " + H + b"\r\n")
            tag = peer.line().split(b" ")[0]
            peer.send(tag + b" BAD " + H + b"\r\n")
            peer.read_all()

        srv = ScriptedServer(server)
        rc, out, err = run(["replay", "client", pcap, "--connect", "127.0.0.1:%d" % srv.port,
                            "--timeout", "20"])
        srv.join()
        self.assertEqual(rc, 1, err)
        self.assertIn(b"completed NO", err)
        self.assertSafe(out + err, "replay client report")
        self.assertIn(b"\\x1b[31m", err)

    # -- the command line -----------------------------------------------

    def test_error_messages_quoting_input(self):
        d = scratch()
        v = HOSTILE_NO_NUL
        junk = os.path.join(d, "junk.pcap")
        with open(junk, "wb") as f:
            f.write(H * 4)
        truncated = os.path.join(d, "short.pcap")
        write_pcap(truncated, TcpFlow((bytes([10, 0, 0, 1]), 1), (bytes([10, 0, 0, 2]), 143))
                   .open().send(1, b"* OK " + H + b"\r\n").records)
        with open(truncated, "ab") as f:
            f.write(b"\x00\x01" + H)
        cases = [
            [v],
            ["proxy", "--upstream", v],
            ["proxy", "--upstream", "127.0.0.1:1", "--color", v],
            ["proxy", "--upstream", "127.0.0.1:1", "--listen", v],
            ["proxy", "--upstream", "127.0.0.1:1", "--" + v.decode("latin-1")],
            ["proxy", "--upstream", "127.0.0.1:1", "--max-line", v],
            ["proxy", "--upstream", "127.0.0.1:1", "--fault", v],
            ["proxy", "--upstream", "127.0.0.1:1", "--upstream-ca", os.path.join(d.encode(), v)],
            ["analyze", os.path.join(d.encode(), v)],
            ["analyze", junk],
            ["analyze", truncated],
            ["analyze", junk, "--session", v],
            ["analyze", junk, "--fail-on", v],
            ["analyze", junk, v],
            ["replay", "serve", junk, "--ignore", b"(" + v],
            ["replay", "serve", os.path.join(d.encode(), v)],
            ["replay", "client", junk, "--connect", v],
            ["replay", v],
            ["compile", os.path.join(d.encode(), v), "-o", os.path.join(d, "x.pcap")],
            ["ca", "init", os.path.join(b"/proc/nonexistent", v)],
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = run(args, timeout=30)
                self.assertNotEqual(rc, 0, err)
                self.assertTrue(err, "no message for %r" % args)
                self.assertSafe(out + err, "imaptap %r" % args)


if __name__ == "__main__":
    main()
