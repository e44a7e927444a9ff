#!/usr/bin/env python3
"""SIGHUP with `imaptap proxy --config FILE` (what `systemctl reload` sends):
the file is read again and the rule thresholds it sets apply to sessions
that start from then on, while open sessions keep theirs. A threshold
given on the command line stands; other changed options are named as
needing a restart; a broken file changes nothing and names its line; with
several event loops every new session takes the new value; and analyze
of the run's pcap gives the verdicts the proxy gave live.

A real Dovecot; --fault hold-idle-completion:3s makes every DONE go
unanswered for 3 s, which fires done-stall only where its threshold is
under 3 s.

    python3 tests/integration/test_reload.py [--imaptap build/imaptap] [-v]
"""

import os
import signal
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RawIMAP  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, module_dovecot  # noqa: E402
from imaptap import read_events, run_imaptap, wait_for  # noqa: E402

PASSWORD = "Rel0ad-Pa55"
HOLD = "hold-idle-completion:3s"
DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD})


def logged_in(port):
    c = RawIMAP(port)
    c.read_greeting()
    for tag, text in (("a1", 'LOGIN alice "%s"' % PASSWORD), ("a2", "SELECT INBOX")):
        resps, status = c.command(tag, text)
        assert status == "OK", resps
    return c


def idle_done(c, tag):
    """IDLE, DONE, and the completion the fault holds 3 s."""
    c.send(tag.encode() + b" IDLE\r\n")
    c.expect_continuation()
    c.send(b"DONE\r\n")
    resps = c.read_until_tagged(tag)
    assert resps[-1].startswith(tag.encode() + b" OK"), resps


def logout(c):
    c.command("z9", "LOGOUT")
    c.read_until_eof()
    c.close()


def one_idle_session(port):
    c = logged_in(port)
    idle_done(c, "a3")
    logout(c)


def done_stalls(events):
    """The sessions done-stall fired in (and the threshold that passed)."""
    return sorted((e["session"], e["threshold_us"]) for e in events
                  if e["kind"] == "anomaly" and e["rule"] == "done-stall"
                  and not e.get("resolved"))


class ReloadTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-reload-")
        self.conf = os.path.join(self.dir, "instance.conf")
        self.events = os.path.join(self.dir, "events.jsonl")
        self.pcap = os.path.join(self.dir, "capture.pcap")
        self.hups = 0

    def write(self, text):
        with open(self.conf, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)

    def proxy(self, text, *extra):
        self.write(text)
        return self.start_proxy(DC.port, extra_args=[
            "--config", self.conf, "--fault", HOLD, "--events", self.events,
            "--pcap", self.pcap] + list(extra))

    def reload(self, px, says):
        """SIGHUP, and the line it must say."""
        self.hups += 1
        px.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: px.stderr_text().count("SIGHUP: the pcap and the event log reopened")
                 == self.hups, "the reopen")
        self.assertIn(says, px.stderr_text())

    def stop(self, px):
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())
        return read_events(self.events)

    def test_new_sessions_take_the_files_new_done_stall(self):
        px = self.proxy("done-stall = 20s\n")
        early = logged_in(px.port)
        idle_done(early, "a3")              # session 1: 3 s under 20 s, nothing
        self.write("done-stall = 1s\n")
        self.reload(px, "SIGHUP: thresholds from %s: done-stall 1s (was 20s)" % self.conf)
        idle_done(early, "a4")              # session 1 keeps the 20 s it started with
        one_idle_session(px.port)           # session 2 starts with 1 s: it fires
        logout(early)
        # the file no longer sets it: back to the default, 5 s
        self.write("# nothing\n")
        self.reload(px, "SIGHUP: thresholds from %s: done-stall 5s (was 1s)" % self.conf)
        one_idle_session(px.port)           # session 3: 3 s under 5 s
        self.write("")
        self.reload(px, "SIGHUP: %s: thresholds unchanged" % self.conf)
        events = self.stop(px)
        self.assertEqual(done_stalls(events), [(2, 1000000)], px.stderr_tail())
        settings = [e for e in events if e["kind"] == "settings"]
        self.assertEqual([s["done_stall_us"] for s in settings], [20000000, 1000000, 5000000])
        # offline: the settings records fall where the thresholds changed,
        # so analyze of the pcap fires where the proxy did, and nowhere else
        offline = os.path.join(self.dir, "offline.jsonl")
        r = run_imaptap(["analyze", self.pcap, "--events", offline], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(done_stalls(read_events(offline)), [(2, 1000000)], r.stdout)

    def test_the_command_line_wins_and_other_options_need_a_restart(self):
        px = self.proxy("done-stall = 20s\nmax-line = 65536\n", "--done-stall", "20s")
        self.write("done-stall = 1s\nmax-line = 70000\nno-redact = true\n")
        self.reload(px, "SIGHUP: %s: max-line, no-redact changed: restart to apply; "
                    "done-stall changed: the command line's value stands" % self.conf)
        self.assertIn("SIGHUP: %s: thresholds unchanged" % self.conf, px.stderr_text())
        one_idle_session(px.port)
        events = self.stop(px)
        self.assertEqual(done_stalls(events), [])
        self.assertEqual(len([e for e in events if e["kind"] == "settings"]), 1)
        # the masking did not change: the password is still masked
        with open(self.events) as f:
            self.assertNotIn(PASSWORD, f.read())

    def test_a_broken_file_changes_nothing(self):
        px = self.proxy("done-stall = 20s\n")
        broken = [
            (b"done-stall = 1s\njust words\n", "%s line 2: not 'key = value'"),
            (b"done-stall = soon\n", "%s line 1: done-stall takes a duration"),
            (b"done-stall = 1s\nb\x1b]0;x\x07gus = 1\n",
             "%s line 2: 'b\\x1b]0;x\\x07gus' is no option of imaptap proxy"),
            (None, "%s: No such file or directory"),
        ]
        for text, says in broken:
            if text is None:
                os.unlink(self.conf)
            else:
                self.write(text)
            self.reload(px, "SIGHUP: " + says % self.conf)
        self.assertEqual(px.stderr_text().count("; the thresholds in effect stay"), 4)
        self.assertNotIn("\x1b", px.stderr_text())
        self.assertTrue(px.alive())
        one_idle_session(px.port)           # still serving, still 20 s
        events = self.stop(px)
        self.assertEqual(done_stalls(events), [])

    def test_every_loop_takes_the_new_value(self):
        px = self.proxy("done-stall = 20s\n", "--workers", "2")
        self.write("done-stall = 1s\n")
        self.reload(px, "SIGHUP: thresholds from %s: done-stall 1s (was 20s)" % self.conf)
        errors = []

        def run():
            try:
                one_idle_session(px.port)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        events = self.stop(px)
        self.assertEqual(done_stalls(events), [(i, 1000000) for i in (1, 2, 3, 4)])

    def test_without_config_sighup_only_reopens(self):
        px = self.start_proxy(DC.port, extra_args=["--done-stall", "20s"])
        px.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: the pcap and the event log reopened" in px.stderr_text(),
                 "the reopen")
        self.assertEqual(px.stderr_text().count("SIGHUP"), 1, px.stderr_tail())


if __name__ == "__main__":
    main()
