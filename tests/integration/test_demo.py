#!/usr/bin/env python3
"""scripts/demo, as a newcomer runs it (with shortened waits and the
binary under test): it exits 0 and tells both stories, the stuck IDLE with
its done-stall live and from the capture, and the client that stops
reading.

    python3 tests/integration/test_demo.py [--imaptap build/imaptap] [-v]
"""

import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from imaptap import check_binary, main, sanitizer_env, sanitizer_reports  # noqa: E402


class DemoTest(unittest.TestCase):
    def test_demo_tells_both_stories(self):
        env = dict(sanitizer_env(), DEMO_FAST="1", IMAPTAP_BIN=check_binary())
        r = subprocess.run([os.path.join(ROOT, "scripts", "demo")], capture_output=True,
                           text=True, timeout=180, env=env)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out[-3000:])
        self.assertEqual(sanitizer_reports(out), [])
        act1, rest = out.split("== The same verdict from the capture", 1)
        act_analyze, act2 = rest.split("== Act 2", 1)
        # live: the DONE row, the stall while the client waits, then the OK
        done = re.search(r"(\d\d:\d\d:\d\d\.\d{6}) #1 C> DONE", act1)
        stall = re.search(r"(\d\d:\d\d:\d\d\.\d{6}) #1 ! done-stall \S+: DONE sent", act1)
        ok = re.search(r"(\d\d:\d\d:\d\d\.\d{6}) #1 S< \S+ OK IDLE terminated .*DONE->OK", act1)
        self.assertTrue(done and stall and ok, act1[-3000:])
        self.assertTrue(done.group(1) < stall.group(1) < ok.group(1))
        # the capture says the same
        self.assertRegex(act_analyze, r"! done-stall \S+: DONE sent")
        self.assertIn("anomalies: done-stall 1", act_analyze)
        self.assertIn("tshark -r", act_analyze)
        for name in ("idle.pcap", "idle.jsonl", "flood.pcap"):
            self.assertTrue(os.path.getsize(os.path.join(ROOT, "build-demo", "out", name)) > 0)
        # act two: the client that stopped reading is named
        self.assertRegex(act2, r"! client-not-reading: client not reading: \d+ KiB pending")
        self.assertIn("(resolved): the client reads again", act2)
        self.assertLess(len(act2.splitlines()), 40, "the flood must not flood the screen")


if __name__ == "__main__":
    main()
