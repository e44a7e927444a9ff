#!/usr/bin/env python3
"""Running imaptap proxy as a service: --max-sessions, running out of
descriptors, SIGHUP after log rotation, a disk that fills up while the
pcap and event log are written, a capture file nobody reads (the relay
must not wait for it), non-loopback listening, --user, a peer
that resets inside a literal either way. After each fault another session,
opened before it, must still work.

    python3 tests/integration/test_operations.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import pwd
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RawIMAP, RecordingIMAP4, appenduid, make_message  # noqa: E402
from pcapfile import tcp_packets  # noqa: E402
from scripted import Peer, ScriptedServer  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap, sanitizer_env  # noqa: E402
from imaptap import module_dovecot, wait_for  # noqa: E402

PASSWORD = "S3cr3t-pa55w0rd!"
DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD})



def logged_in(port):
    m = RecordingIMAP4("127.0.0.1", port)
    m.login("alice", PASSWORD)
    return m


def still_works(test, m):
    """A session opened before the fault answers as before."""
    typ, _ = m.noop()
    test.assertEqual(typ, "OK")
    typ, _ = m.select("INBOX")
    test.assertEqual(typ, "OK")


def analyze(path):
    return run_imaptap(["analyze", path, "--color", "never"], timeout=60)


def close_records(path):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "session-close"]


class ShutdownTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-ops-")

    def test_shutdown_with_a_session_open_is_recorded_as_a_shutdown(self):
        """SIGTERM with a session open: the event log, the pcap and analyze
        all say the proxy shut down, not that the server reset."""
        pcap, events = os.path.join(self.dir, "s.pcap"), os.path.join(self.dir, "s.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        m = logged_in(px.port)
        self.assertEqual(m.noop()[0], "OK")
        self.assertEqual(px.stop(signal.SIGTERM), 0)
        m.shutdown()
        live = close_records(events)
        self.assertEqual(len(live), 1, live)
        self.assertEqual((live[0]["by"], live[0]["end"]), ("proxy", "shutdown"), live[0])
        offline = os.path.join(self.dir, "a.jsonl")
        r = run_imaptap(["analyze", pcap, "--color", "never", "--events", offline], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("-- close by proxy (proxy shutting down)", r.stdout)
        self.assertNotIn("reset", r.stdout)
        got = close_records(offline)
        self.assertEqual((got[0]["by"], got[0]["end"]), ("proxy", "shutdown"), got)
        # drawn with FINs: a reset in the pcap would be a lie about the server
        flags = [p[3] for p in tcp_packets(pcap) if 514 not in (p[1], p[2])]
        self.assertFalse([f for f in flags if f & 0x04], "a reset in the pcap")
        self.assertEqual(len([f for f in flags if f & 0x01]), 2, "a FIN each way")


class SessionLimitTest(ProxyTestCase, unittest.TestCase):
    def test_max_sessions_refuses_with_bye(self):
        px = self.start_proxy(DC.port, extra_args=["--max-sessions", "2"])
        a, b = logged_in(px.port), logged_in(px.port)
        with RawIMAP(px.port) as third:
            line = third.readline()
            self.assertRegex(line, rb"^\* BYE \[UNAVAILABLE\] imaptap: 2 sessions open, the most "
                                   rb"--max-sessions allows")
            self.assertEqual(third.read_until_eof(), b"")
        wait_for(lambda: "refused 127.0.0.1:" in px.stderr_text(), "the refusal's log line")
        self.assertIn("2 sessions open, --max-sessions 2", px.stderr_text())
        still_works(self, a)
        b.logout()
        wait_for(lambda: "#2 -- close" in px.stderr_text(), "the second session's close")
        c = logged_in(px.port)
        still_works(self, c)
        for m in (a, c):
            m.logout()

    def test_out_of_descriptors_pauses_accepting_without_spinning(self):
        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
        px = self.start_proxy(DC.port, preexec=low_limit, extra_args=["--max-sessions", "100",
                                                                      "--quiet"])
        self.assertIn("the descriptor limit (48, the hard limit) leaves room for about",
                      px.stderr_text())
        first = logged_in(px.port)
        clients = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", px.port))
            clients.append(s)
        wait_for(lambda: "out of descriptors (Too many open files): pausing accepts for 1 s"
                 in px.stderr_text(), "the pause\n" + px.stderr_text())
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu_seconds():
            with open("/proc/%d/stat" % px.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks
        before = cpu_seconds()
        time.sleep(2)
        spent = cpu_seconds() - before
        self.assertLess(spent, 0.5, "the proxy spun on a listener it cannot accept from")
        still_works(self, first)
        for s in clients:
            s.close()
        # descriptors free again: new clients are served after the pause
        # (until every loop has closed its dead sessions, one may still be
        # told BYE [UNAVAILABLE] ... Too many open files)
        deadline = time.monotonic() + 15
        while True:
            try:
                late = logged_in(px.port)
                break
            except (OSError, EOFError, imaplib.IMAP4.error) as e:
                if time.monotonic() > deadline:
                    raise AssertionError("no session after the pause: %s" % e)
                time.sleep(0.2)
        still_works(self, late)
        late.logout()
        first.logout()


class OutputFilesTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-ops-")

    def test_sighup_reopens_after_rotation(self):
        pcap, events = os.path.join(self.dir, "s.pcap"), os.path.join(self.dir, "s.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        for name in (pcap, events):
            self.assertEqual(os.stat(name).st_mode & 0o777, 0o600, name)
        long_lived = logged_in(px.port)
        m = logged_in(px.port)
        m.logout()
        wait_for(lambda: "#2 -- close" in px.stderr_text(), "session 2 closing")
        os.rename(pcap, pcap + ".old")
        os.rename(events, events + ".old")
        px.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: the pcap and the event log reopened" in px.stderr_text(),
                 "the reopen")
        self.assertEqual(os.stat(pcap).st_mode & 0o777, 0o600)
        m = logged_in(px.port)
        m.logout()
        still_works(self, long_lived)
        long_lived.logout()
        self.assertEqual(px.stop(signal.SIGTERM), 0)
        old, new = analyze(pcap + ".old"), analyze(pcap)
        self.assertEqual((old.returncode, new.returncode), (0, 0), old.stderr + new.stderr)
        # the old file: sessions 1 and 2 up to the signal; the new one: 1 (a
        # fresh handshake, then its NOOP and SELECT) and 3 whole
        self.assertIn("LOGIN alice", old.stdout)
        self.assertNotIn("SELECT INBOX", old.stdout)
        self.assertIn("SELECT INBOX", new.stdout)
        self.assertEqual(len(re.findall(r"LOGIN alice", new.stdout)), 1, new.stdout)
        with open(events + ".old") as f:
            old_events = f.read()
        with open(events) as f:
            new_events = f.read()
        self.assertIn('"session":2', old_events)
        self.assertNotIn('"session":3', old_events)
        self.assertIn('"session":3', new_events)

    def test_a_stalled_capture_file_does_not_stall_the_relay(self):
        """The pcap is a FIFO nobody reads: the pipe holds 64 KiB, the
        session moves 1.2 MiB. The relay must not wait for the file; the
        file gets everything once it is read."""
        fifo = os.path.join(self.dir, "stalled.pcap")
        os.mkfifo(fifo, 0o600)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the proxy open it
        try:
            px = self.start_proxy(DC.port, extra_args=["--pcap", fifo, "--quiet"])
            m = logged_in(px.port)
            m.sock.settimeout(20)
            body = make_message(600 * 1024, "stalled")
            uid = appenduid(m.append("INBOX", None, None, body))
            m.select("INBOX")
            typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual([part[1] for part in data if isinstance(part, tuple)], [body])
            m.logout()

            captured = []

            def read_all():
                os.set_blocking(rfd, True)
                while True:
                    chunk = os.read(rfd, 1 << 20)
                    if not chunk:
                        break
                    captured.append(chunk)

            reader = threading.Thread(target=read_all)
            reader.start()
            self.assertEqual(px.stop(signal.SIGTERM), 0)
            reader.join(30)
            self.assertFalse(reader.is_alive(), "the proxy never finished the file")
        finally:
            os.close(rfd)
        pcap = os.path.join(self.dir, "read.pcap")
        with open(pcap, "wb") as f:
            f.write(b"".join(captured))
        self.assertGreater(os.path.getsize(pcap), 2 * 600 * 1024)
        r = analyze(pcap)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("LOGIN alice", r.stdout)
        self.assertIn("APPEND INBOX", r.stdout)
        self.assertIn("LOGOUT", r.stdout)

    def test_disk_full_stops_the_capture_not_the_relay(self):
        mnt = os.path.join(self.dir, "small")
        os.mkdir(mnt)
        self.assertEqual(os.geteuid(), 0, "this test mounts a small tmpfs: run it as root")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "imaptap-test", mnt],
                       check=True)
        try:
            self.disk_full(mnt)
        finally:
            subprocess.run(["umount", "-l", mnt])

    def disk_full(self, mnt):
        pcap, events = os.path.join(mnt, "f.pcap"), os.path.join(mnt, "f.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events,
                                                   "--quiet"])
        long_lived = logged_in(px.port)
        m = logged_in(px.port)
        body = make_message(600 * 1024)
        typ, _ = m.append("INBOX", None, None, body)
        self.assertEqual(typ, "OK")
        m.select("INBOX")
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        fetched = [part[1] for part in data if isinstance(part, tuple)]
        self.assertIn(body, fetched, "the relay changed or lost bytes while the disk was full")
        m.logout()
        still_works(self, long_lived)
        wait_for(lambda: "No space left on device" in px.stderr_text(), "the disk-full message")
        text = px.stderr_text()
        self.assertEqual(len(re.findall(r"cannot write the pcap .*No space left on device; the "
                                        r"capture stops here, relaying goes on", text)), 1, text)
        self.assertLessEqual(len(re.findall(r"the event log .*No space left", text)), 1, text)
        long_lived.logout()
        self.assertEqual(px.stop(signal.SIGTERM), 0)
        r = analyze(pcap)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("LOGIN alice", r.stdout)
        r = subprocess.run(["tshark", "-r", pcap], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("cut short", r.stderr)
        with open(events) as f:
            lines = f.read().splitlines()
        for line in lines:
            self.assertTrue(line.startswith("{") and line.endswith("}"),
                            "a half record in the event log: %r" % line[-80:])

    def test_user_drops_privileges(self):
        self.assertEqual(os.geteuid(), 0, "--user needs the test to run as root")
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.dir, 0o777)
        pcap = os.path.join(self.dir, "u.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--user", "nobody"])
        wait_for(lambda: "running as nobody" in px.stderr_text(), "the privilege drop")
        with open("/proc/%d/status" % px.pid) as f:
            uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
        self.assertEqual(set(uids), {str(nobody.pw_uid)})
        self.assertEqual(os.stat(pcap).st_uid, nobody.pw_uid)
        m = logged_in(px.port)
        still_works(self, m)
        m.logout()
        # SIGHUP after rotation creates the new file as the user
        os.rename(pcap, pcap + ".old")
        px.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: os.path.exists(pcap), "the new pcap")
        self.assertEqual(os.stat(pcap).st_uid, nobody.pw_uid)

    def test_user_without_root(self):
        nobody = pwd.getpwnam("nobody")

        def become_nobody():
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        r = subprocess.run([check_binary(), "proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                            "--listen", "127.0.0.1:0", "--user", "nobody"],
                           capture_output=True, text=True, timeout=30, env=sanitizer_env(),
                           preexec_fn=become_nobody)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("--user nobody: imaptap is not running as root", r.stderr)


def steady_server(p):
    """Answers every command OK until LOGOUT: the session that must not
    notice what happens to the others."""
    p.send(b"* OK steady server\r\n")
    while True:
        line = p.line()
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"LOGOUT"):
            p.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return
        p.send(tag + b" OK done\r\n")


def reset(sock):
    """Close with RST (SO_LINGER 0), as a crashed peer's kernel would."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class PeerFailureTest(ProxyTestCase, unittest.TestCase):
    """A peer that fails in the middle of a literal: the bytes before the
    failure arrive exactly, the session ends with pending-at-eof naming the
    cut literal, and another session of the same proxy goes on."""

    def steady_client(self, port):
        c = Peer(socket.create_connection(("127.0.0.1", port)))
        c.line()
        c.send(b"s1 NOOP\r\n")
        self.assertEqual(c.line(), b"s1 OK done\r\n")
        return c

    def still_steady(self, c):
        c.send(b"s2 NOOP\r\n")
        self.assertEqual(c.line(), b"s2 OK done\r\n")
        c.send(b"s3 LOGOUT\r\n")
        self.assertTrue(c.until(b"s3 OK")[-1].startswith(b"s3 OK"))
        c.close()

    def test_upstream_resets_inside_a_literal(self):
        sent = {}

        def resetting(p):
            p.send(b"* OK flaky server\r\n")
            p.line()                                     # a1 FETCH
            data = b"* 1 FETCH (BODY[] {100000}\r\n" + b"x" * 40000
            p.send(data)
            sent["bytes"] = b"* OK flaky server\r\n" + data
            reset(p.sock)

        srv = ScriptedServer(steady_server, resetting, concurrent=True)
        px = self.start_proxy(srv.port, extra_args=["--color", "never"])
        steady = self.steady_client(px.port)
        c = Peer(socket.create_connection(("127.0.0.1", px.port)))
        c.send(b"a1 FETCH 1 BODY[]\r\n")
        got = c.read_all()
        c.close()
        self.assertEqual(got, sent["bytes"], "the bytes before the reset were not all relayed")
        row = px.wait_for_row(lambda r: r["session"] == 2 and r["text"].startswith(
            "pending-at-eof"))
        self.assertIn("inside the server's {100000} literal of * FETCH: 60000 of its 100000 "
                      "byte(s) never came", row["text"])
        px.wait_for_row(lambda r: r["session"] == 2 and r["text"].startswith("close"))
        self.still_steady(steady)
        srv.join()

    def test_client_vanishes_inside_an_append(self):
        got = {}
        part = os.urandom(15000).hex().encode()          # 30000 bytes
        arrived = threading.Event()

        def appending(p):
            p.send(b"* OK server\r\n")
            line = p.line()
            p.send(b"+ go ahead\r\n")
            first = p.exactly(len(part))
            arrived.set()
            got["bytes"] = line + first + p.read_all()

        srv = ScriptedServer(steady_server, appending, concurrent=True)
        px = self.start_proxy(srv.port, extra_args=["--color", "never"])
        steady = self.steady_client(px.port)
        c = Peer(socket.create_connection(("127.0.0.1", px.port)))
        c.line()
        command = b"a1 APPEND INBOX {100000}\r\n"
        c.send(command)
        c.line()                                         # + go ahead
        c.send(part)
        # gone once the proxy has passed it all on: an RST would otherwise
        # discard what the proxy's kernel still held for it
        self.assertTrue(arrived.wait(20))
        reset(c.sock)
        px.wait_for_row(lambda r: r["session"] == 2 and r["text"].startswith("close"))
        srv.thread.join(20)
        for t in srv.workers[1:]:
            t.join(20)
        self.assertEqual(got.get("bytes"), command + part,
                         "the server did not get exactly what the client sent")
        row = px.wait_for_row(lambda r: r["session"] == 2 and r["text"].startswith(
            "pending-at-eof"))
        self.assertIn("inside the client's {100000} literal of a1 APPEND: 70000 of its 100000 "
                      "byte(s) never came", row["text"])
        self.still_steady(steady)
        srv.join()


class ListenTest(unittest.TestCase):
    def test_non_loopback_needs_allow_remote(self):
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "0.0.0.0:0"], timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"--listen 0\.0\.0\.0:\d+ is reachable from other hosts.*"
                                   r"add --allow-remote")
        self.assertEqual(len(r.stderr.strip().splitlines()), 2, r.stderr)  # the line and the hint

    def test_allow_remote_warns(self):
        proc = subprocess.Popen([check_binary(), "proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                                 "--listen", "0.0.0.0:0", "--allow-remote"],
                                stderr=subprocess.PIPE, text=True, env=sanitizer_env())
        try:
            first = proc.stderr.readline()
            self.assertIn("warning: listening on 0.0.0.0:", first)
            self.assertIn("reachable from other hosts", first)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    main()
