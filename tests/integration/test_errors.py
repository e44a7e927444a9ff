#!/usr/bin/env python3
"""Exit codes, error messages, signals and peer failures of `imaptap proxy`.

    python3 tests/integration/test_errors.py [--imaptap build/imaptap] [-v]
"""

import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from clients import RawIMAP, RecordingIMAP4, appenduid, make_message  # noqa: E402
from dovecot import free_port  # noqa: E402
from imaptap import (ProxyTestCase, check_binary, main,  # noqa: E402
                     run_imaptap, sanitizer_reports)
from imaptap import module_dovecot  # noqa: E402

PASSWORD = "S3cr3t-pa55w0rd!"
MIB = 1024 * 1024
PROXY_FLAGS = ["--upstream", "--listen", "--upstream-tls", "--port-file",
               "--quiet", "--color", "--no-redact"]

DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD})



def nonempty_lines(text):
    return [line for line in text.splitlines() if line.strip()]


class StartupErrorTest(unittest.TestCase):

    def check_clean(self, r):
        self.assertEqual(sanitizer_reports(r.stderr + r.stdout), [],
                         r.stderr)

    def test_listen_port_in_use(self):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        try:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                             "--listen", "127.0.0.1:%d" % port], timeout=15)
        finally:
            holder.close()
        self.assertEqual(r.returncode, 3, r.stderr)
        lines = nonempty_lines(r.stderr)
        self.assertEqual(len(lines), 1, "want a one-line message:\n" + r.stderr)
        self.assertIn("127.0.0.1:%d" % port, lines[0])
        self.assertIn("in use", lines[0])
        self.check_clean(r)

    def test_unresolvable_upstream(self):
        r = run_imaptap(["proxy", "--upstream", "no-such-host.invalid:143",
                         "--listen", "127.0.0.1:0"], timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        lines = nonempty_lines(r.stderr)
        self.assertEqual(len(lines), 1, "want a one-line message:\n" + r.stderr)
        self.assertIn("no-such-host.invalid", lines[0])
        self.check_clean(r)

    def test_usage_errors(self):
        """Exit 2, and a message that names what is wrong and points to
        the usage (a usage text or the --help that shows it)."""
        up = "127.0.0.1:%d" % DC.port
        cases = {
            # name: (args, text the message must name)
            "unknown flag": (["proxy", "--upstream", up, "--no-such-flag"],
                             "--no-such-flag"),
            "unknown flag before subcommand": (
                ["--no-such-flag", "proxy", "--upstream", up],
                "--no-such-flag"),
            "missing --upstream": (["proxy", "--listen", "127.0.0.1:0"],
                                   "--upstream"),
            "upstream without port": (["proxy", "--upstream", "127.0.0.1"],
                                      "127.0.0.1"),
            "upstream port too big": (["proxy", "--upstream",
                                       "127.0.0.1:99999"], "99999"),
            "upstream port not a number": (["proxy", "--upstream",
                                            "127.0.0.1:imap"], "imap"),
            "listen port too big": (["proxy", "--upstream", up,
                                     "--listen", "127.0.0.1:65536"], "65536"),
            "listen port negative": (["proxy", "--upstream", up,
                                      "--listen", "127.0.0.1:-1"], "-1"),
            "flag without value": (["proxy", "--upstream"], "--upstream"),
        }
        for name, (args, named) in cases.items():
            with self.subTest(name, args=args):
                r = run_imaptap(args, timeout=15)
                self.assertEqual(r.returncode, 2, "%s\n%s" % (args, r.stderr))
                self.assertIn(named, r.stderr)
                self.assertTrue("usage" in r.stderr.lower()
                                or "--help" in r.stderr, r.stderr)
                self.assertNotIn("listening on", r.stderr)
                self.check_clean(r)

    def test_help(self):
        for args in (["--help"], ["proxy", "--help"]):
            with self.subTest(args=args):
                r = run_imaptap(args, timeout=15)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = r.stdout + r.stderr
                for flag in PROXY_FLAGS:
                    self.assertRegex(out, r"(?<![\w-])%s(?![\w-])"
                                     % re.escape(flag),
                                     "%s not in %s output" % (flag, args))
                self.check_clean(r)

    def test_help_names_every_command(self):
        """imaptap --help lists every command and how to get its options;
        each of those --help calls works."""
        r = run_imaptap(["--help"], timeout=15)
        self.assertEqual(r.returncode, 0, r.stderr)
        for cmd in (["proxy"], ["analyze"], ["replay", "serve"], ["replay", "client"],
                    ["compile"], ["ca"]):
            with self.subTest(cmd=cmd):
                self.assertIn("  %s " % " ".join(cmd), r.stdout)
                self.assertIn("'imaptap %s --help'" % " ".join(cmd), r.stdout)
                h = run_imaptap(cmd + ["--help"], timeout=15)
                self.assertEqual(h.returncode, 0, h.stderr)
                self.assertIn("usage: imaptap %s" % " ".join(cmd), h.stdout)


class RuntimeTest(ProxyTestCase, unittest.TestCase):

    def test_upstream_refused(self):
        dead = free_port()
        px = self.start_proxy(dead)
        for n in (1, 2):
            c = RawIMAP(px.port)
            got = c.read_until_eof(timeout=10)
            c.close()
            self.assertTrue(got.startswith(b"* BYE"), got)
            self.assertTrue(got.endswith(b"\r\n"), got)
            self.assertEqual(got.count(b"\r\n"), 1, got)
            px.wait_for_row(lambda r: r["session"] == n and r["dir"] == "--"
                            and r["text"].startswith("close"))
            rows = [r for r in px.timeline() if r["session"] == n]
            self.assertTrue(any(r["dir"] == "P<" and
                                r["text"].startswith("* BYE") for r in rows),
                            rows)
            self.assertFalse(any(r["dir"] == "S<" for r in rows), rows)
            self.assertTrue(any("refused" in r["text"].lower() and
                                str(dead) in r["text"] for r in rows),
                            "no row names the refusal of port %d:\n%s"
                            % (dead, "\n".join(r["line"] for r in rows)))
            self.assertTrue(px.alive(), "imaptap exited after a refusal")

    def stop_with_session(self, sig, idle):
        px = self.start_proxy(DC.port)
        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        if idle:
            m.send(b"I1 IDLE\r\n")
            self.assertTrue(m.readline().startswith(b"+"))
        t0 = time.monotonic()
        rc = px.stop(sig, timeout=5)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status %s after signal %d\n%s"
                         % (rc, sig, px.stderr_tail()))
        self.assertLess(took, 5)
        try:
            m.shutdown()
        except OSError:
            pass

    def test_sigterm_with_session_open(self):
        self.stop_with_session(signal.SIGTERM, idle=False)

    def test_sigint_with_session_open(self):
        self.stop_with_session(signal.SIGINT, idle=False)

    def test_sigint_during_idle(self):
        self.stop_with_session(signal.SIGINT, idle=True)

    def test_client_reset_mid_response(self):
        """A client that resets the connection while a big FETCH response
        streams to it must not take the proxy down (SIGPIPE, EPIPE,
        ECONNRESET)."""
        px = self.start_proxy(DC.port)
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        # Larger than what the kernel buffers toward the client can hold
        # (the proxy's send buffer grows to 4 MiB), so the proxy is still
        # writing when the reset arrives.
        size = 8 * MIB
        uid = appenduid(m.append("INBOX", None, None, make_message(size, "rst")))
        m.logout()
        sessions = 1
        for read_first in (0, 1000, 200 * 1024, 0, 64 * 1024):
            c = RawIMAP(px.port, rcvbuf=32 * 1024)
            c.read_greeting()
            self.assertEqual(c.command(b"r1", b"LOGIN alice "
                                       + PASSWORD.encode())[1], "OK")
            self.assertEqual(c.command(b"r2", b"SELECT INBOX")[1], "OK")
            c.send(b"r3 UID FETCH %d (BODY.PEEK[])\r\n" % uid)
            while len(c.buf) < read_first:
                c._fill()
            time.sleep(0.05)
            c.close_reset()
            sessions += 1
            time.sleep(0.3)
            self.assertTrue(px.alive(), "imaptap died after a client reset "
                            "(status %s)\n%s" % (px.proc.poll(),
                                                 px.stderr_tail()))
        for n in range(2, sessions + 1):
            px.wait_for_row(lambda r: r["session"] == n and r["dir"] == "--"
                            and r["text"].startswith("close"))
        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(len(data[0][1]), size)
        m.logout()

    def test_server_reset_while_client_sends(self):
        """Dovecot closes after LOGOUT while the client still streams
        commands: Dovecot's unread input makes it send a RST, and the proxy
        keeps getting data to write toward it (EPIPE, SIGPIPE)."""
        px = self.start_proxy(DC.port)
        for n in (1, 2, 3):
            c = RawIMAP(px.port)
            c.read_greeting()
            flood = b"".join(b"n%d NOOP\r\n" % i for i in range(300000))
            try:
                c.send(b"a1 LOGOUT\r\n" + flood)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                c.read_until_eof(timeout=15)
            except ConnectionResetError:
                pass
            c.close()
            time.sleep(0.3)
            self.assertTrue(px.alive(), "imaptap died after an upstream reset "
                            "(status %s)\n%s" % (px.proc.poll(),
                                                 px.stderr_tail()))
            px.wait_for_row(lambda r: r["session"] == n and r["dir"] == "--"
                            and r["text"].startswith("close"), timeout=15)
        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.noop()[0], "OK")
        m.logout()

    def test_close_by_client_and_by_server(self):
        px = self.start_proxy(DC.port)
        # 1: the client hangs up after the greeting.
        c = RawIMAP(px.port)
        c.read_greeting()
        c.close()
        row = px.wait_for_row(lambda r: r["session"] == 1 and r["dir"] == "--"
                              and r["text"].startswith("close"))
        self.assertIn("by client", row["text"])
        # 2: the server closes after LOGOUT while the client keeps reading.
        c = RawIMAP(px.port)
        c.read_greeting()
        c.send(b"a1 LOGOUT\r\n")
        got = c.read_until_eof(timeout=10)
        c.close()
        self.assertIn(b"a1 OK", got)
        row = px.wait_for_row(lambda r: r["session"] == 2 and r["dir"] == "--"
                              and r["text"].startswith("close"))
        self.assertIn("by server", row["text"])


if __name__ == "__main__":
    main()
