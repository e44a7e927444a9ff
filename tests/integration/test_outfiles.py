#!/usr/bin/env python3
"""Output files that cannot be turned against their owner: the pcap, the
event log, the key log and the port file are never written through a
symbolic link, are mode 0600 whatever the umask or the file's mode
before, an earlier run's capture or event log is refused unless
--overwrite (or, for the event log, --append) says otherwise, every
record of a run carries its run id, a record too long for the log stays
whole JSON, and a run that does not start leaves no file behind.

    python3 tests/integration/test_outfiles.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RecordingIMAP4  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap, sanitizer_env  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from scripted import Peer, ScriptedServer  # noqa: E402

PASSWORD = "Outfiles-S3cret-9"
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-outfiles-")
    DC = module_dovecot(users={"alice": PASSWORD})


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def one_session(port):
    m = RecordingIMAP4("127.0.0.1", port)
    m.login("alice", PASSWORD)
    m.logout()


class OutputFilesTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.target = os.path.join(self.dir, "precious")
        with open(self.target, "w") as f:
            f.write("the owner's file\n")
        os.chmod(self.target, 0o644)

    def path(self, name):
        return os.path.join(self.dir, name)

    def proxy_fails(self, *args, rc=3):
        """A proxy start that must fail before listening."""
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--color", "never"] + list(args), timeout=30)
        self.assertEqual(r.returncode, rc, r.stderr)
        self.assertNotIn("listening on", r.stderr)
        return r.stderr

    def assert_untouched(self):
        with open(self.target) as f:
            self.assertEqual(f.read(), "the owner's file\n")
        self.assertEqual(mode(self.target), 0o644)

    # -- links ----------------------------------------------------------------

    def test_links_are_refused(self):
        for flag in ("--pcap", "--events", "--keylog"):
            with self.subTest(flag=flag):
                link = self.path("link" + flag)
                os.symlink(self.target, link)
                err = self.proxy_fails(flag, link)
                self.assertIn("is a symbolic link", err)
                self.assertIn(link, err)
                self.assertEqual(err.count("\n"), 1, err)  # one clear message
                self.assert_untouched()
                self.assertTrue(os.path.islink(link))
        # with --overwrite too: the link is never followed
        link = self.path("link-overwrite")
        os.symlink(self.target, link)
        self.assertIn("is a symbolic link", self.proxy_fails("--pcap", link, "--overwrite"))
        self.assert_untouched()

    def test_analyze_events_link_refused(self):
        pcap = self.path("a.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        link = self.path("a-link.jsonl")
        os.symlink(self.target, link)
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", link])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("is a symbolic link", r.stderr)
        self.assert_untouched()

    def test_port_file_replaces_a_link_not_its_target(self):
        link = self.path("port")
        os.symlink(self.target, link)
        p = subprocess.Popen([check_binary(), "proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                              "--listen", "127.0.0.1:0", "--port-file", link],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=sanitizer_env())
        try:
            deadline = time.monotonic() + 15
            while os.path.islink(link) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(os.path.islink(link), "the port file is still the link")
            with open(link) as f:
                self.assertGreater(int(f.read()), 0)
            self.assert_untouched()
            self.assertEqual(mode(link), 0o600)
        finally:
            p.terminate()
            self.assertEqual(p.wait(timeout=15), 0)
            p.stderr.close()

    def test_compile_output_link_refused_file_replaced(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "scenarios", "pipelined.imap")
        link = self.path("out.pcap")
        os.symlink(self.target, link)
        r = run_imaptap(["compile", script, "-o", link])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("symbolic link", r.stderr)
        self.assert_untouched()
        # a build product: an existing file is replaced, and is 0600
        out = self.path("real.pcap")
        with open(out, "w") as f:
            f.write("old")
        os.chmod(out, 0o644)
        r = run_imaptap(["compile", script, "-o", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(mode(out), 0o600)
        with open(out, "rb") as f:
            self.assertNotEqual(f.read(3), b"old")

    # -- modes ------------------------------------------------------------------

    def test_existing_files_become_0600(self):
        pcap, events, keylog = self.path("m.pcap"), self.path("m.jsonl"), self.path("keys")
        for name in (pcap, events, keylog):
            open(name, "w").close()     # empty: a user made them ready
            os.chmod(name, 0o644)
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events,
                                                   "--keylog", keylog])
        for name in (pcap, events, keylog):
            self.assertEqual(mode(name), 0o600, name)
        self.assertEqual(px.stop(), 0)

    def test_umask_zero_still_gives_0600(self):
        pcap, events = self.path("u.pcap"), self.path("u.jsonl")
        old = os.umask(0)
        try:
            px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        finally:
            os.umask(old)
        self.assertEqual(mode(pcap), 0o600)
        self.assertEqual(mode(events), 0o600)
        self.assertEqual(px.stop(), 0)

    # -- earlier runs -------------------------------------------------------------

    def test_earlier_capture_refused_then_overwritten(self):
        pcap = self.path("run.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        with open(pcap, "rb") as f:
            before = f.read()
        err = self.proxy_fails("--pcap", pcap)
        self.assertIn("already exists (%d bytes)" % len(before), err)
        self.assertIn("--overwrite", err)
        with open(pcap, "rb") as f:
            self.assertEqual(f.read(), before, "the refused run changed the capture")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--overwrite"])
        self.assertEqual(px.stop(), 0)
        with open(pcap, "rb") as f:
            anew = f.read()
        # the file header and the run's settings mark, nothing of the first run
        self.assertLess(len(anew), len(before), "not started anew")
        self.assertIn(b"run settings version=", anew)
        self.assertEqual(anew.count(b"run settings"), 1)

    def test_earlier_rotation_refused(self):
        pcap = self.path("rot.pcap")
        with open(self.path("rot.1.pcap"), "wb") as f:
            f.write(b"an earlier run's second file")
        err = self.proxy_fails("--pcap", pcap, "--pcap-max-size", "1")
        self.assertIn("rot.1.pcap already exists", err)
        self.assertFalse(os.path.exists(pcap), "a refused start left a file")

    def test_event_log_append_keeps_runs_apart(self):
        events = self.path("e.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--events", events])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        first = records(events)
        err = self.proxy_fails("--events", events)
        self.assertIn("--overwrite", err)
        self.assertIn("--append", err)
        self.assertEqual(records(events), first)
        px = self.start_proxy(DC.port, extra_args=["--events", events, "--append"])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        both = records(events)
        self.assertEqual(both[:len(first)], first, "--append changed the earlier run")
        starts = [r for r in both if r["kind"] == "run-start"]
        self.assertEqual(len(starts), 2)
        self.assertNotEqual(starts[0]["run"], starts[1]["run"])
        for r in both:
            self.assertIn(r["run"], (starts[0]["run"], starts[1]["run"]))
        second = [r for r in both[len(first):]]
        self.assertEqual(second[0]["kind"], "run-start")
        self.assertTrue(all(r["run"] == starts[1]["run"] for r in second))
        px = self.start_proxy(DC.port, extra_args=["--events", events, "--overwrite"])
        self.assertEqual(px.stop(), 0)
        self.assertEqual([r["kind"] for r in records(events)], ["run-start", "settings"])

    def test_flags_that_do_not_go_together(self):
        err = self.proxy_fails("--pcap", self.path("x.pcap"), "--append", rc=2)
        self.assertIn("a pcap cannot be added to", err)
        err = self.proxy_fails("--events", self.path("x.jsonl"), "--append", "--overwrite",
                               rc=2)
        self.assertIn("do not go together", err)
        self.proxy_fails("--overwrite", rc=2)
        self.assertFalse(os.path.exists(self.path("x.pcap")))
        self.assertFalse(os.path.exists(self.path("x.jsonl")))

    def test_failed_start_leaves_no_file(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        pcap, events = self.path("f.pcap"), self.path("f.jsonl")
        old = self.path("old.jsonl")
        with open(old, "w") as f:
            f.write('{"kind":"earlier"}\n')
        try:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                             "127.0.0.1:%d" % busy.getsockname()[1], "--pcap", pcap,
                             "--events", events], timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertFalse(os.path.exists(pcap), "a failed start left its pcap")
            self.assertFalse(os.path.exists(events), "a failed start left its event log")
            # a file that was there before stays, appended to or not
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                             "127.0.0.1:%d" % busy.getsockname()[1], "--events", old,
                             "--append"], timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertTrue(os.path.exists(old))
        finally:
            busy.close()

    def test_analyze_event_log_refused_then_overwritten(self):
        pcap = self.path("b.pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        events = self.path("b.jsonl")
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", events])
        self.assertEqual(r.returncode, 0, r.stderr)
        first = records(events)
        self.assertEqual(first[0]["kind"], "run-start")
        self.assertEqual(first[0]["command"], "analyze")
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", events])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("--append", r.stderr)
        self.assertEqual(records(events), first)
        r = run_imaptap(["analyze", pcap, "--quiet", "--events", events, "--overwrite"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(records(events)[0]["run"], first[0]["run"])
        # a capture that does not read leaves no event log
        bad, log = self.path("bad.pcap"), self.path("bad.jsonl")
        with open(bad, "wb") as f:
            f.write(b"not a capture at all")
        r = run_imaptap(["analyze", bad, "--quiet", "--events", log])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertFalse(os.path.exists(log))

    # -- records ----------------------------------------------------------------------

    def test_every_record_has_the_run_id(self):
        events = self.path("r.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--events", events])
        one_session(px.port)
        self.assertEqual(px.stop(), 0)
        recs = records(events)
        self.assertEqual(recs[0]["kind"], "run-start")
        self.assertEqual(recs[0]["command"], "proxy")
        self.assertRegex(recs[0]["run"], r"^[0-9a-f]{16}$")
        self.assertIn("version", recs[0])
        self.assertNotIn("argv", recs[0])
        self.assertEqual(recs[1]["kind"], "settings")
        self.assertEqual(recs[2]["kind"], "session-open")
        self.assertTrue(all(r["run"] == recs[0]["run"] for r in recs))

    def test_a_long_record_stays_whole_json(self):
        """A 600 KiB line observed whole (--max-line) is longer than a
        record may be: its text is cut, the record says so and parses."""
        long_line = b"a1 X-LONG " + b"\x01\x02xyz\"\\" * 100000 + b"\r\n"

        def server(p):
            p.send(b"* OK ready\r\n")
            p.line()
            p.send(b"a1 BAD too long\r\n")
            p.line()

        srv = ScriptedServer(server)
        events = self.path("long.jsonl")
        px = self.start_proxy(srv.port, extra_args=["--events", events, "--max-line",
                                                    "1000000", "--quiet"])
        c = Peer(socket.create_connection(("127.0.0.1", px.port)))
        c.line()
        c.send(long_line)
        self.assertTrue(c.line().startswith(b"a1 BAD"))
        c.send(b"a2 LOGOUT\r\n")
        c.close()
        srv.join()
        self.assertEqual(px.stop(), 0)
        with open(events) as f:
            lines = f.read().splitlines()
        recs = [json.loads(line) for line in lines]  # every line parses
        long = [r for r in recs if r["kind"] == "line" and r.get("name") == "X-LONG"]
        self.assertEqual(len(long), 1, [r["kind"] for r in recs])
        self.assertTrue(long[0]["truncated"])
        self.assertEqual(long[0]["length"], len(long_line))
        self.assertTrue(long_line.decode("latin-1").startswith(long[0]["text"][:200]))


if __name__ == "__main__":
    main()
