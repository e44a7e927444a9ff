#!/usr/bin/env python3
"""imaptap as a service: the systemd unit passes `systemd-analyze verify`,
and `imaptap proxy --config FILE` runs the shipped example configuration
(adapted to a private Dovecot) with the command line's flags winning;
wrong files are refused with the line that is wrong, escaped.

    python3 tests/integration/test_service.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RecordingIMAP4  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
UNIT = os.path.join(ROOT, "systemd", "imaptap@.service")
EXAMPLE = os.path.join(ROOT, "systemd", "example.conf")
PASSWORD = "S3rvice-Pa55"
DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users={"alice": PASSWORD})


def verify(unit_text, name="imaptap@example.service"):
    d = tempfile.mkdtemp(prefix="imaptap-unit-")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(unit_text)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                          capture_output=True, text=True)


class UnitTest(unittest.TestCase):
    def unit_text(self):
        with open(UNIT) as f:
            # the unit names the installed binary; this checkout's stands in
            return f.read().replace("/usr/bin/imaptap", os.path.abspath(check_binary()))

    def test_the_unit_verifies(self):
        r = verify(self.unit_text())
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_a_broken_unit_does_not(self):
        r = verify(self.unit_text().replace("Type=simple", "Type=nonsense"))
        self.assertNotEqual(r.stdout + r.stderr, "")


class ConfigTest(ProxyTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="imaptap-config-")

    def example(self, **changes):
        """The shipped example, its values changed for this machine."""
        out = []
        with open(EXAMPLE) as f:
            for line in f:
                key = line.split("=", 1)[0].strip()
                if not line.startswith("#") and key in changes:
                    value = changes.pop(key)
                    if value is not None:
                        out.append("%s = %s\n" % (key, value))
                    continue
                out.append(line)
        out += ["%s = %s\n" % kv for kv in changes.items() if kv[1] is not None]
        path = os.path.join(self.dir, "instance.conf")
        with open(path, "w") as f:
            f.writelines(out)
        return path

    def test_the_example_runs_with_the_command_line_winning(self):
        events = os.path.join(self.dir, "events.jsonl")
        conf = self.example(upstream="127.0.0.1:1", listen="127.0.0.1:0", **{
            "client-tls": None, "ca": None, "events": events})
        # the file's upstream is wrong on purpose: the command line's wins
        px = self.start_proxy(DC.port, extra_args=["--config", conf])
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())
        with open(events) as f:
            kinds = [json.loads(x)["kind"] for x in f]
        self.assertIn("session-open", kinds)
        # quiet = true from the file: no timeline rows
        self.assertNotIn(" C> ", px.stderr_text())
        # and again: append = true adds to the event log instead of refusing it
        px = self.start_proxy(DC.port, extra_args=["--config", conf])
        self.assertEqual(px.stop(signal.SIGTERM), 0, px.stderr_tail())

    def refused(self, text, *extra):
        path = os.path.join(self.dir, "bad.conf")
        with open(path, "wb") as f:
            f.write(text)
        r = run_imaptap(["proxy", "--config", path] + list(extra))
        self.assertEqual(r.returncode, 2, r.stderr)
        return r.stderr

    def test_wrong_files_are_refused_with_their_line(self):
        err = self.refused(b"upstream = 127.0.0.1:143\n\nbogus = 1\n")
        self.assertIn("line 3: 'bogus' is no option of imaptap proxy", err)
        err = self.refused(b"quiet = maybe\n", "--upstream", "127.0.0.1:143")
        self.assertIn("line 1: quiet takes true or false, not 'maybe'", err)
        err = self.refused(b"just words\n", "--upstream", "127.0.0.1:143")
        self.assertIn("line 1: not 'key = value'", err)
        err = self.refused(b"config = other.conf\n", "--upstream", "127.0.0.1:143")
        self.assertIn("'config' is no option", err)
        path = os.path.join(self.dir, "hostile.conf")
        with open(path, "wb") as f:
            f.write(b"upstream = \x1b]0;owned\x07host:143\n")
        r = run_imaptap(["proxy", "--config", path])
        self.assertEqual(r.returncode, 3, r.stderr)  # it does not resolve
        self.assertIn("\\x1b]0;owned\\x07host", r.stderr)
        self.assertNotIn("\x1b", r.stderr)
        self.assertNotIn("\x07", r.stderr)
        err = self.refused(b"listen = " + b"x" * 5000 + b"\n", "--upstream", "127.0.0.1:143")
        self.assertIn("longer than 4096 bytes", err)
        r = run_imaptap(["proxy", "--config", os.path.join(self.dir, "missing.conf")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.conf: No such file or directory", r.stderr)


if __name__ == "__main__":
    main()
