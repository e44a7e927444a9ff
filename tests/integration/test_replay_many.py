#!/usr/bin/env python3
"""Whole recordings replayed: clients that hold several connections at once,
recorded through the proxy against a real Dovecot and played back whole.

- Node's imapflow with an IDLE connection beside one that FETCHes and
  APPENDs: replay
  serve plays both sessions at once, and the IDLE connection hears the
  EXISTS only after the other connection's APPEND (with --order session,
  at --no-delay, it hears it before: the order between sessions is what
  keeps it right); a client that opens only one connection fails, naming
  the session it never opened.
- replay client opens the same two connections to Dovecot in the recorded
  order and overlap: the message is appended again and, with --strict, the
  IDLE hears of it as in the recording.
- mbsync with two channels (two accounts, so two connections) replayed
  to a fresh mbsync; a changed channel fails.
- A Python client with a connection pool whose connections open in another
  order than recorded: --match first-lines tells them apart by their
  SELECT, --match order fails.

    python3 tests/integration/test_replay_many.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from clients import make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, imaptap_bin, main  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from imaptap import sanitizer_env, sanitizer_reports  # noqa: E402
from node import ensure_node_clients  # noqa: E402

PASSWORD = "Many-S3cret-5"
POOL = os.path.join(HERE, "..", "lib", "pool_client.py")
BOXES = ["Work", "Travel", "Family"]
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    ensure_node_clients()
    if shutil.which("mbsync") is None:
        raise RuntimeError("mbsync is needed: scripts/test installs it (apt-get install isync)")
    TMP = module_tmpdir("imaptap-many-")
    DC = module_dovecot(users={"alice": PASSWORD})
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    for i in range(3):
        m.append("INBOX", None, None, make_message(300 + 50 * i, "inbox%d" % i))
    for n, box in enumerate(BOXES + ["Archive"]):
        m.create(box)
        for i in range(n + 1):
            m.append(box, None, None, make_message(200 + 10 * i, "%s%d" % (box, i)))
    m.logout()


def imaptap(args, timeout=120, env=None):
    full = dict(sanitizer_env())
    full.update(env or {})
    r = subprocess.run([imaptap_bin()] + args, capture_output=True, text=True,
                       timeout=timeout, env=full)
    assert not sanitizer_reports(r.stderr), r.stderr
    return r


def imapflow_two(port="$IMAPTAP_PORT"):
    """A shell command running tests/node/imapflow_two.mjs."""
    d = ensure_node_clients()
    return ["sh", "-c", 'cd "%s" && exec node imapflow_two.mjs 127.0.0.1 "%s" alice %s'
            % (d, port, PASSWORD)]


def last_json(text):
    lines = [x for x in text.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def inbox_count():
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    typ, data = m.select("INBOX", readonly=True)
    m.logout()
    return int(data[0])


def drop_appended():
    """Takes the messages imapflow_two.mjs appended out of INBOX, so that a
    replay finds INBOX as the recording did."""
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("alice", PASSWORD)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", "two")
    for num in data[0].split():
        m.store(num, "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()


def mbsync_config(d, port, channels):
    """An mbsync configuration pulling each (name, mailbox) of channels
    through its own account (and so its own connection) into a new
    maildir under d."""
    maildir = os.path.join(d, "mail") + "/"
    os.makedirs(maildir, exist_ok=True)
    rc = os.path.join(d, "mbsyncrc")
    with open(rc, "w") as f:
        f.write("MaildirStore local\nPath %s\nInbox %sINBOX\n\n" % (maildir, maildir))
        for name, box in channels:
            f.write("IMAPAccount %s\nHost 127.0.0.1\nPort %s\nUser alice\nPass %s\n"
                    "SSLType None\nAuthMechs LOGIN\n\nIMAPStore %s-far\nAccount %s\n\n"
                    "Channel %s\nFar :%s-far:%s\nNear :local:%s\nCreate Near\nSync Pull\n"
                    "SyncState *\n\n" % (name, port, PASSWORD, name, name, name, name, box,
                                         box))
    return rc


class ReplayManyTest(ProxyTestCase, unittest.TestCase):
    recordings = {}

    def record(self, name, make_argv, sessions, env=None):
        """make_argv(port) run through a recording proxy in front of
        Dovecot on port; the pcap, once per name."""
        if name in ReplayManyTest.recordings:
            return ReplayManyTest.recordings[name]
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), name + ".pcap")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        r = subprocess.run(make_argv(px.port), capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, **(env or {})))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for n in range(1, sessions + 1):
            px.wait_for_row(lambda x, n=n: x["session"] == n and x["text"].startswith("close"),
                            timeout=15)
        ReplayManyTest.recordings[name] = pcap
        return pcap

    def record_imapflow(self):
        return self.record("imapflow", imapflow_two, 2)

    def test_imapflow_idle_beside_append_replayed_whole(self):
        pcap = self.record_imapflow()
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--"] + imapflow_two())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replaying 2 sessions of %s at once" % pcap, r.stderr)
        self.assertIn("connection 1 (session 1): replay: the client did what the recording did",
                      r.stderr)
        self.assertIn("connection 2 (session 2): replay: the client did what the recording did",
                      r.stderr)
        out = last_json(r.stdout)
        self.assertIsNotNone(out.get("existsMs"), r.stdout)
        self.assertGreaterEqual(out.get("fetched", 0), 3, out)
        # the EXISTS waited for the other connection's APPEND
        self.assertTrue(out["existsAfterAppend"], out)

    def test_loop_plays_the_whole_recording_again(self):
        pcap = self.record_imapflow()
        port_file = os.path.join(tempfile.mkdtemp(dir=TMP), "port")
        serve = subprocess.Popen([imaptap_bin(), "replay", "serve", pcap, "--no-delay", "--loop",
                                  "--port-file", port_file], stderr=subprocess.PIPE, text=True,
                                 env=sanitizer_env())
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(port_file) and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(port_file) as f:
                port = f.read().strip()
            for _ in range(2):
                d = ensure_node_clients()
                r = subprocess.run(["node", "imapflow_two.mjs", "127.0.0.1", port, "alice",
                                    PASSWORD], cwd=d, capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertTrue(last_json(r.stdout)["existsAfterAppend"], r.stdout)
        finally:
            time.sleep(0.5)
            serve.send_signal(signal.SIGINT)
            err = serve.communicate(timeout=30)[1]
        self.assertFalse(sanitizer_reports(err), err)
        self.assertEqual(serve.returncode, 0, err)
        # the second round: connections 3 and 4 played sessions 1 and 2
        self.assertIn("connection 3 (session 1): replay: the client did what the recording did",
                      err)
        self.assertIn("connection 4 (session 2): replay: the client did what the recording did",
                      err)

    def test_without_the_order_between_sessions_the_exists_comes_too_soon(self):
        pcap = self.record_imapflow()
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--order", "session", "--"]
                    + imapflow_two())
        out = last_json(r.stdout)
        self.assertIsNotNone(out.get("existsMs"), r.stdout + r.stderr)
        self.assertFalse(out["existsAfterAppend"], out)

    def test_a_connection_never_opened_is_a_divergence(self):
        pcap = self.record_imapflow()
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--quiet-limit", "2", "--"]
                    + imapflow_two(), env={"ONLY_IDLE": "1", "EXISTS_WAIT_MS": "4000"})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, r"session 2 \(from [0-9.:]+, \d+ client lines\) was never "
                         r"played: the client made fewer connections than the recording")
        # the IDLE connection says what it waited for
        self.assertIn("which has not come in", r.stderr)
        self.assertIn("recorded after session 2's client line", r.stderr)

    def test_replay_client_opens_both_connections_against_dovecot(self):
        pcap = self.record_imapflow()
        drop_appended()
        before = inbox_count()
        r = imaptap(["replay", "client", pcap, "--connect", "127.0.0.1:%d" % DC.port,
                     "--login", "alice:" + PASSWORD, "--strict"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replaying 2 sessions of %s at once" % pcap, r.stderr)
        self.assertRegex(r.stderr, r"session 1: replay client: \d+ command\(s\) completed as "
                         r"recorded")
        self.assertRegex(r.stderr, r"session 2: replay client: \d+ command\(s\) completed as "
                         r"recorded")
        self.assertEqual(inbox_count(), before + 1)
        # INBOX no longer as recorded (the message appended above stays):
        # --strict sees the working session's FETCH get one more message
        r = imaptap(["replay", "client", pcap, "--connect", "127.0.0.1:%d" % DC.port,
                     "--login", "alice:" + PASSWORD, "--strict", "--session", "2"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("untagged response(s)", r.stderr)
        drop_appended()

    def test_mbsync_two_channels(self):
        d = tempfile.mkdtemp(dir=TMP)
        channels = [("inbox", "INBOX"), ("archive", "Archive")]
        pcap = self.record("mbsync", lambda port: ["mbsync", "-c",
                                                   mbsync_config(d, port, channels), "-a"], 2)
        # a fresh maildir, the same channels, the port the replay gives
        d2 = tempfile.mkdtemp(dir=TMP)
        rc2 = mbsync_config(d2, "$IMAPTAP_PORT", channels)
        cmd = ["sh", "-c", 'sed -i "s/\\$IMAPTAP_PORT/$IMAPTAP_PORT/" %s && mbsync -c %s -a'
               % (rc2, rc2)]
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--"] + cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replaying 2 sessions", r.stderr)
        self.assertEqual(len(os.listdir(os.path.join(d2, "mail", "Archive", "cur")))
                         + len(os.listdir(os.path.join(d2, "mail", "Archive", "new"))), 4)
        # another mailbox on the second channel: the replay names the line
        d3 = tempfile.mkdtemp(dir=TMP)
        rc3 = mbsync_config(d3, "$IMAPTAP_PORT", [("inbox", "INBOX"), ("archive", "Work")])
        cmd = ["sh", "-c", 'sed -i "s/\\$IMAPTAP_PORT/$IMAPTAP_PORT/" %s && mbsync -c %s -a'
               % (rc3, rc3)]
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--"] + cmd)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("connection 2 (session 2): replay: the client diverged", r.stderr)
        self.assertIn("Work", r.stderr)

    def test_pool_in_another_order_matched_by_first_lines(self):
        pcap = self.record("pool", lambda port: [sys.executable, POOL, str(port), "alice",
                                                 PASSWORD, ",".join(BOXES)], 3)
        other = ",".join(reversed(BOXES))
        cmd = [sys.executable, POOL, "env", "alice", PASSWORD, other]
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--match", "first-lines", "--"]
                    + cmd)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.assertIn("Family 3", r.stdout)
        # the first connection now selects Family, recorded as session 3
        self.assertIn("connection 1 (session 3): replay: the client did what the recording did",
                      r.stderr)
        r = imaptap(["replay", "serve", pcap, "--no-delay", "--quiet-limit", "3", "--"] + cmd)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("the client sent something else", r.stderr)

    def test_session_lists_and_bad_values(self):
        pcap = self.record_imapflow()
        for args, want in [(["--session", "1,x"], "--session takes numbers from 1"),
                           (["--session", "2,2"], "names session 2 twice"),
                           (["--session", "1,9"], "there is no session 9"),
                           (["--match", "user"], "--match takes order or first-lines"),
                           (["--order", "time"], "--order takes recording or session")]:
            r = imaptap(["replay", "serve", pcap] + args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(want, r.stderr)


if __name__ == "__main__":
    main()
