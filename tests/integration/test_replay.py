#!/usr/bin/env python3
"""imaptap replay serve: a session recorded through the proxy against the
real Dovecot (and one recorded by tshark, a foreign capture) played back to
the same real client (Python imaplib), which passes; played to changed
clients, which fail with the expected and received lines; timing at
--speed 1, 3 and --no-delay; a hanging client cut off; bad input.

    python3 tests/integration/test_replay.py [--imaptap build/imaptap] [-v]
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

from imaptap import ProxyTestCase, check_binary, imaptap_bin, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from imaptap import sanitizer_env, sanitizer_reports  # noqa: E402
from node import imapflow_command  # noqa: E402
from test_pcap_reader import Tshark  # noqa: E402

PASSWORD = "Replay-S3cret-8"
DC = None
TMP = None
CLIENT = os.path.join(HERE, "..", "lib", "replay_client.py")
SCENARIOS = os.path.join(HERE, "..", "scenarios")


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-replay-")
    DC = module_dovecot(users={"alice": PASSWORD})
    r = subprocess.run([sys.executable, CLIENT, str(DC.port), "seed", PASSWORD],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr



def replay(pcap, *args, command=None, timeout=90):
    argv = [imaptap_bin(), "replay", "serve", pcap] + list(args)
    if command is not None:
        argv += ["--"] + command
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=sanitizer_env())
    assert not sanitizer_reports(r.stderr), r.stderr
    return r, time.monotonic() - t0


def client(variant, password=PASSWORD):
    # IMAPTAP_PORT comes from replay serve
    return [sys.executable, CLIENT, "env", variant, password]


class ReplayTest(ProxyTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.recorded = None

    def record(self):
        """The client's session through the proxy to Dovecot, as a pcap."""
        if ReplayTest.recorded is None:
            pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "session.pcap")
            px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
            r = subprocess.run([sys.executable, CLIENT, str(px.port), "same", PASSWORD],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            px.wait_for_row(lambda x: x["dir"] == "--" and x["text"].startswith("close"))
            ReplayTest.recorded = pcap
        return ReplayTest.recorded

    def test_a_port_probe_before_the_client_is_passed_over(self):
        """A health check connects and leaves first; the default session
        is the client's, and imaptap says which it chose."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "probed.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        probe = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        probe.recv(4096)                        # the greeting, then gone
        probe.close()
        px.wait_for_row(lambda x: x["session"] == 1 and x["text"].startswith("close"))
        r = subprocess.run([sys.executable, CLIENT, str(px.port), "same", PASSWORD],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        px.wait_for_row(lambda x: x["session"] == 2 and x["text"].startswith("close"))
        r, _ = replay(pcap, command=client("same"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("passed over 1 of the 2 sessions in %s: the client sent no IMAP line "
                      "in it (a port probe or a health check" % pcap, r.stderr)
        self.assertIn("replaying session 2 of %s (" % pcap, r.stderr)
        self.assertIn("the client did what the recording did", r.stderr)
        # --session 1 is still there to ask for: nothing to replay in it
        r, _ = replay(pcap, "--session", "1", command=client("same"))
        self.assertNotEqual(r.returncode, 0)

    def test_a_diverging_turn_is_shown_line_by_line(self):
        """A pipelining client that changes the middle command: the report
        lays the turn's recorded lines beside what arrived."""
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "pipelined.pcap")
        r = run_imaptap(["compile", os.path.join(SCENARIOS, "pipelined.imap"), "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        script = ("import os, socket, time\n"
                  "s = socket.create_connection(('127.0.0.1', int(os.environ['IMAPTAP_PORT'])))\n"
                  "s.settimeout(20)\n"
                  "def line():\n"
                  "    b = b''\n"
                  "    while not b.endswith(b'\\n'): b += s.recv(1)\n"
                  "    return b\n"
                  "line()\n"
                  "s.sendall(b'a1 LOGIN alice secret\\r\\n'); line()\n"
                  "s.sendall(b'a2 SELECT INBOX\\r\\n'); line(); line()\n"
                  "s.sendall(b'a3 UID FETCH 1:* (FLAGS)\\r\\na4 STATUS Junk (MESSAGES)\\r\\n"
                  "a5 NOOP\\r\\n')\n"
                  "time.sleep(3)\n")
        r, _ = replay(pcap, "--no-delay", "--quiet-limit", "2",
                      command=[sys.executable, "-c", script])
        self.assertEqual(r.returncode, 1, r.stderr)
        turn = r.stderr[r.stderr.index("the client's turn, recorded (-) and received (+):"):]
        self.assertRegex(turn, r"- \S+ STATUS Archive \(MESSAGES\)\n\s+\+ \S+ STATUS Junk "
                               r"\(MESSAGES\)\n\s+- \S+ NOOP")

    def test_the_client_hears_why_before_the_close(self):
        """On divergence the client gets a BYE naming what was expected and
        what came, so the reason is in the client test's own log."""
        got = os.path.join(tempfile.mkdtemp(dir=TMP), "client-saw")
        script = ("import os, socket\n"
                  "s = socket.create_connection(('127.0.0.1', int(os.environ['IMAPTAP_PORT'])))\n"
                  "s.settimeout(20)\n"
                  "s.recv(4096)\n"
                  "s.sendall(b'x1 NOOP\\r\\n')\n"
                  "data = b''\n"
                  "while True:\n"
                  "    c = s.recv(4096)\n"
                  "    if not c: break\n"
                  "    data += c\n"
                  "open(%r, 'wb').write(data)\n" % got)
        r, _ = replay(self.record(), "--quiet-limit", "2", command=[sys.executable, "-c", script])
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(got, "rb") as f:
            saw = f.read()
        self.assertRegex(saw, rb"\* BYE \[imaptap\] replay diverged: expected \S+ "
                              rb"(LOGIN|CAPABILITY|ID)[^\r\n]*, received x1 NOOP\r\n$")
        self.assertNotIn(PASSWORD.encode(), saw)

    def test_same_client_passes(self):
        r, _ = replay(self.record(), command=client("same"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("the client did what the recording did", r.stderr)

    def test_changed_clients_fail_with_a_report(self):
        pcap = self.record()
        for variant, expected, received in [
                ("mailbox", "SELECT INBOX", "SELECT Archive"),
                ("extra", "LOGOUT", "NOOP"),
                ("nologout", "LOGOUT", None)]:
            r, _ = replay(pcap, "--quiet-limit", "2", command=client(variant))
            self.assertEqual(r.returncode, 1, (variant, r.stderr))
            self.assertRegex(r.stderr, r"expected: \S+ " + expected, variant)
            if received:
                self.assertRegex(r.stderr, r"received: \S+ " + received, variant)
            else:
                self.assertIn("the client closed the connection instead", r.stderr)
            self.assertIn("the recording before it:", r.stderr)

    def test_ignore_makes_a_span_a_wildcard(self):
        r, _ = replay(self.record(), "--ignore", "SELECT [A-Za-z]+", command=client("mailbox"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r, _ = replay(self.record(), "--ignore", "FETCH [A-Za-z]+", "--quiet-limit", "2",
                      command=client("mailbox"))
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_masked_password_matches_any(self):
        # the recording masks the password: another one is fine for serve
        r, _ = replay(self.record(), command=client("same", password="another-one"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_hanging_client_is_cut_off(self):
        pcap = self.record()
        port_file = os.path.join(tempfile.mkdtemp(dir=TMP), "port")
        proc = subprocess.Popen([imaptap_bin(), "replay", "serve", pcap, "--port-file", port_file,
                                 "--quiet-limit", "1"], stderr=subprocess.PIPE, text=True,
                                env=sanitizer_env())
        while not os.path.exists(port_file):
            time.sleep(0.05)
        s = socket.create_connection(("127.0.0.1", int(open(port_file).read())))
        s.recv(4096)                  # the greeting, then nothing from us
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        s.close()
        self.assertEqual(proc.returncode, 1, err)
        self.assertIn("the client sent nothing for", err)
        self.assertLess(time.monotonic() - t0, 10)

    def test_timing_follows_the_recording(self):
        """A server that held IDLE's OK 1.5 s after DONE: played at speed 1,
        3 and with no delay."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def fake():
            c, _ = srv.accept()
            f = c.makefile("rwb")
            f.write(b"* OK fake\r\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    break
                tag = line.split()[0]
                if b"IDLE" in line:
                    f.write(b"+ idling\r\n")
                    f.flush()
                    f.readline()
                    time.sleep(1.5)
                    f.write(b"* 2 EXISTS\r\n" + tag + b" OK done\r\n")
                elif b"CAPABILITY" in line:
                    f.write(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
                elif b"LOGOUT" in line:
                    f.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                    f.flush()
                    break
                else:
                    f.write(tag + b" OK fine\r\n")
                f.flush()
            f.close()
            c.close()

        th = threading.Thread(target=fake, daemon=True)
        th.start()
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "idle.pcap")
        px = self.start_proxy(srv.getsockname()[1], extra_args=["--pcap", pcap])
        r = subprocess.run([sys.executable, CLIENT, str(px.port), "idle", PASSWORD],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        px.wait_for_row(lambda x: x["dir"] == "--" and x["text"].startswith("close"))
        th.join(10)
        srv.close()
        took = {}
        for label, args in [("1", ["--speed", "1"]), ("3", ["--speed", "3"]),
                            ("none", ["--no-delay"])]:
            r, t = replay(pcap, *args, command=client("idle"))
            self.assertEqual(r.returncode, 0, (label, r.stderr))
            took[label] = t
        self.assertGreater(took["1"], 1.4)
        self.assertLess(took["3"], took["1"] - 0.6)
        self.assertGreater(took["3"], 0.45)
        self.assertLess(took["none"], took["3"])

    def test_foreign_capture_replays(self):
        """tshark's capture of the client talking to Dovecot directly."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "tshark.pcapng")
        ts = Tshark(pcap, "lo", DC.port).spawn()
        try:
            ts.wait_capturing()
            ts.sync()
            r = subprocess.run([sys.executable, CLIENT, str(DC.port), "same", PASSWORD],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            ts.stop()
        # the probes are sessions too; the real one is the one that logged in
        session = None
        for n in range(1, 20):
            r = run_imaptap(["analyze", pcap, "--session", str(n), "--quiet", "--events", "-"])
            if r.returncode != 0:
                break
            if '"LOGIN"' in r.stdout:
                session = n
                break
        self.assertIsNotNone(session, "no LOGIN session in the tshark capture")
        r, _ = replay(pcap, "--session", str(session), command=client("same"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r, _ = replay(pcap, "--session", str(session), "--quiet-limit", "2",
                      command=client("mailbox"))
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_imapflow_over_tls(self):
        """imapflow recorded through the proxy (COMPRESS, IDLE), then served
        to imapflow over TLS with a certificate it trusts."""
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "imapflow.pcap")
        env = dict(os.environ, IMAPFLOW_FIXED="1")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        r = subprocess.run(imapflow_command("127.0.0.1", px.port, "alice", PASSWORD),
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        px.wait_for_row(lambda x: x["dir"] == "--" and x["text"].startswith("close"))
        ca = os.path.join(d, "ca")
        script = os.path.join(d, "client.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec %s\n" % " ".join(
                imapflow_command("127.0.0.1", "$IMAPTAP_PORT", "alice", PASSWORD,
                                 tls_ca=os.path.join(ca, "ca.crt"), servername="localhost")))
        os.chmod(script, 0o755)
        old = os.environ.get("IMAPFLOW_FIXED")
        os.environ["IMAPFLOW_FIXED"] = "1"
        try:
            r, _ = replay(pcap, "--client-tls", "implicit", "--ca", ca, command=[script])
        finally:
            if old is None:
                del os.environ["IMAPFLOW_FIXED"]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("the client did what the recording did", r.stderr)
        # a client that does not trust the certificate is reported, not hung
        script2 = os.path.join(d, "untrusting.sh")
        other_ca = os.path.join(d, "other-ca")
        run_imaptap(["ca", "init", other_ca])
        with open(script2, "w") as f:
            f.write("#!/bin/sh\nexec %s\n" % " ".join(
                imapflow_command("127.0.0.1", "$IMAPTAP_PORT", "alice", PASSWORD,
                                 tls_ca=os.path.join(other_ca, "ca.crt"), servername="localhost")))
        os.chmod(script2, 0o755)
        r, _ = replay(pcap, "--client-tls", "implicit", "--ca", ca, "--quiet-limit", "3",
                      command=[script2])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("TLS handshake failed", r.stderr)

    def test_replay_client_against_dovecot(self):
        pcap = self.record()
        base = ["replay", "client", pcap, "--connect", "127.0.0.1:%d" % DC.port]
        r = run_imaptap(base + ["--login", "alice:" + PASSWORD], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"\d+ command\(s\) completed as recorded")
        r = run_imaptap(base + ["--login", "alice:" + PASSWORD, "--no-delay"],
                        timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_imaptap(base + ["--login", "alice:not-the-password"], timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"\S+ completed NO, recorded OK: \S+ NO \[AUTHENTICATIONFAILED\]")
        # masked credentials and no --login: a usage error, before connecting
        r = run_imaptap(base, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"session 1 of \S+ logs in with credentials the recording "
                                   r"holds masked \(client line \d+\): give --login USER:PASS")
        r = run_imaptap(["replay", "client", pcap, "--connect", "127.0.0.1:1",
                         "--login", "alice:x"], timeout=60)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot connect to 127.0.0.1:1", r.stderr)
        r = run_imaptap(["replay", "client", pcap])
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_login_password_leaves_the_command_line(self):
        """ps and /proc show the command line: --login's password is wiped
        from it once copied, while the replay runs."""
        pcap = self.record()
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        secret = "pw-" + "q7" * 20
        p = subprocess.Popen([imaptap_bin(), "replay", "client", pcap, "--connect",
                              "127.0.0.1:%d" % silent.getsockname()[1], "--login",
                              "alice:" + secret, "--timeout", "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=sanitizer_env())
        try:
            conn, _ = silent.accept()  # connected: the options are parsed
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                cmdline = f.read()
            self.assertIn(b"--login", cmdline)
            self.assertIn(b"alice:", cmdline)
            self.assertNotIn(secret.encode(), cmdline)
            conn.close()
        finally:
            p.kill()
            p.communicate()
            silent.close()

    def test_starttls_client_leg(self):
        """Recorded through a proxy that answers the client's STARTTLS;
        served back with the handshake after the recorded OK."""
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "starttls.pcap")
        ca = os.path.join(d, "ca")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--client-tls", "starttls",
                                                   "--ca", ca])
        env = dict(os.environ, REPLAY_CA=os.path.join(ca, "ca.crt"))
        r = subprocess.run([sys.executable, CLIENT, str(px.port), "starttls", PASSWORD],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        px.wait_for_row(lambda x: x["dir"] == "--" and x["text"].startswith("close"))
        os.environ["REPLAY_CA"] = os.path.join(ca, "ca.crt")
        try:
            r, _ = replay(pcap, "--client-tls", "starttls", "--ca", ca,
                          command=client("starttls"))
        finally:
            del os.environ["REPLAY_CA"]
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_every_scenario_replays(self):
        """Each scenario in tests/scenarios/ compiles, and replay serve plays
        it to replay client (both sides of the same recording)."""
        d = tempfile.mkdtemp(dir=TMP)
        names = sorted(f[:-5] for f in os.listdir(SCENARIOS) if f.endswith(".imap"))
        self.assertGreaterEqual(len(names), 5)
        for name in names:
            pcap = os.path.join(d, name + ".pcap")
            r = run_imaptap(["compile", os.path.join(SCENARIOS, name + ".imap"), "-o", pcap])
            self.assertEqual(r.returncode, 0, (name, r.stderr))
            peer = "exec %s replay client %s --connect 127.0.0.1:$IMAPTAP_PORT --no-delay " \
                   "--login alice:secret" % (imaptap_bin(), pcap)
            r, _ = replay(pcap, "--no-delay", command=["sh", "-c", peer])
            self.assertEqual(r.returncode, 0, (name, r.stderr))
            self.assertIn("the client did what the recording did", r.stderr, name)
            self.assertIn("completed as recorded", r.stderr, name)

    def test_gmail_scenario_to_imaplib(self):
        """The stuck IDLE, played to a real client: its DONE gets the OK only
        after the recorded 30 s (here at --speed 30: one second)."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "gmail.pcap")
        r = run_imaptap(["compile", os.path.join(SCENARIOS, "gmail-ignores-done.imap"),
                         "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        r, took = replay(pcap, "--speed", "30", command=client("gmail", "secret"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(took, 2.5)   # 60 s of IDLE and 30 s after DONE, scaled

    def test_whole_replay_timeout(self):
        pcap = self.record()
        port_file = os.path.join(tempfile.mkdtemp(dir=TMP), "port")
        proc = subprocess.Popen([imaptap_bin(), "replay", "serve", pcap, "--port-file", port_file,
                                 "--quiet-limit", "60", "--timeout", "2"],
                                stderr=subprocess.PIPE, text=True, env=sanitizer_env())
        while not os.path.exists(port_file):
            time.sleep(0.05)
        s = socket.create_connection(("127.0.0.1", int(open(port_file).read())))
        _, err = proc.communicate(timeout=30)
        s.close()
        self.assertEqual(proc.returncode, 1, err)
        self.assertIn("the replay ran past --timeout", err)

    def test_bad_input(self):
        d = tempfile.mkdtemp(dir=TMP)
        junk = os.path.join(d, "junk.pcap")
        with open(junk, "wb") as f:
            f.write(os.urandom(300))
        for args, code, words in [
                ([junk], 3, "not a pcap or pcapng file"),
                ([os.path.join(d, "none.pcap")], 3, "no such file"),
                ([self.record(), "--session", "9"], 2, "there is no session 9"),
                ([self.record(), "--ignore", "("], 2, "--ignore '('"),
                ([self.record(), "--speed", "fast"], 2, "--speed takes"),
                ([], 2, "which recording"),
                ([self.record(), "--"], 2, "followed by a command")]:
            r = run_imaptap(["replay", "serve"] + args)
            self.assertEqual(r.returncode, code, (args, r.stderr))
            self.assertIn(words, r.stderr)
        r = run_imaptap(["replay", "play", "x"])
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    main()
