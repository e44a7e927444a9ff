#!/usr/bin/env python3
"""cmake --install into a scratch prefix: the binary runs, the man page
renders without warnings (one page per command, each its --help), the docs and the scenario library are there.

    python3 tests/integration/test_install.py [--imaptap build/imaptap] [-v]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from imaptap import check_binary, main, sanitizer_env  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class InstallTest(unittest.TestCase):
    def test_install_to_a_scratch_prefix(self):
        build = os.path.dirname(check_binary())
        prefix = tempfile.mkdtemp(prefix="imaptap-install-")
        try:
            r = subprocess.run(["cmake", "--install", build, "--prefix", prefix],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            binary = os.path.join(prefix, "bin", "imaptap")
            r = subprocess.run([binary, "--version"], capture_output=True, text=True,
                               env=sanitizer_env(), timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^imaptap \d+\.\d+\.\d+")
            man1 = os.path.join(prefix, "share", "man", "man1")
            pages = sorted(os.listdir(man1))
            self.assertEqual(pages, sorted(["imaptap.1"] + ["imaptap-%s.1" % c for c in (
                "proxy", "analyze", "replay-serve", "replay-client", "compile", "ca")]))
            for name in pages:
                r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", os.path.join(man1, name)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual((r.returncode, r.stderr), (0, ""), name)
                self.assertIn("imaptap", r.stdout)
            r = subprocess.run(["groff", "-man", "-Tascii", os.path.join(man1, "imaptap-proxy.1")],
                               capture_output=True, text=True, timeout=30)
            self.assertIn("--done-stall", re.sub(".\b", "", r.stdout))
            doc = os.path.join(prefix, "share", "doc", "imaptap")
            for name in ("rules.md", "events.md", "tls.md", "replay.md", "script.md",
                         "scenarios/gmail-ignores-done.imap"):
                self.assertTrue(os.path.isfile(os.path.join(doc, name)), name)
        finally:
            shutil.rmtree(prefix, ignore_errors=True)


    def test_man_pages_match_help(self):
        """Each command's page is its --help text: a flag added, renamed or
        explained anew without rerunning scripts/man-pages fails here."""
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "man-pages"),
                            check_binary(), "--check"], capture_output=True, text=True,
                           env=sanitizer_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_debian_package(self):
        """cpack -G DEB builds a package; dpkg installs it into a scratch
        root, where its binary runs; its metadata names the libraries it
        needs."""
        build = os.path.dirname(check_binary())
        out = tempfile.mkdtemp(prefix="imaptap-deb-")
        try:
            r = subprocess.run(["cpack", "-G", "DEB", "-B", out], cwd=build, capture_output=True,
                               text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            debs = [f for f in os.listdir(out) if f.endswith(".deb")]
            self.assertEqual(len(debs), 1, os.listdir(out))
            deb = os.path.join(out, debs[0])
            info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True).stdout
            for lib in ("libssl3", "libpcap0.8", "libevent-core"):
                self.assertIn(lib, info)
            # installed by dpkg into a scratch root with its own database
            # (its library dependencies are this machine's)
            root = os.path.join(out, "root")
            for d in ("info", "updates"):
                os.makedirs(os.path.join(root, "var", "lib", "dpkg", d))
            open(os.path.join(root, "var", "lib", "dpkg", "status"), "w").close()
            r = subprocess.run(["dpkg", "--root=" + root, "--force-depends", "--force-not-root",
                                "-i", deb], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            with open(os.path.join(root, "var", "lib", "dpkg", "status")) as f:
                self.assertRegex(f.read(), r"Package: imaptap\nStatus: install ok installed")
            r = subprocess.run([os.path.join(root, "usr", "bin", "imaptap"), "--version"],
                               capture_output=True, text=True, env=sanitizer_env(), timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.isfile(os.path.join(root, "usr", "share", "man", "man1",
                                                        "imaptap.1")))
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
