#!/usr/bin/env python3
"""cmake --install into a scratch prefix: the binary runs, the man pages
(one per command, each its --help) render without warnings, the docs and
the scenario library are there, and so is the Wireshark plugin, which
tshark loads from there and from a personal plugin folder it was copied
to (as docs/capture.md tells). The Debian package installs into a scratch
root, and with apt on a minimal Debian 12, where it runs.

    python3 tests/integration/test_install.py [--imaptap build/imaptap] [-v]
"""

import glob
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
                "proxy", "analyze", "replay-serve", "replay-client", "compile", "export", "diff",
                "ca")]))
            for name in pages:
                r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", os.path.join(man1, name)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual((r.returncode, r.stderr), (0, ""), name)
                self.assertIn("imaptap", r.stdout)
            r = subprocess.run(["groff", "-man", "-Tascii", os.path.join(man1, "imaptap-proxy.1")],
                               capture_output=True, text=True, timeout=30)
            self.assertIn("--done-stall", re.sub(".\b", "", r.stdout))
            doc = os.path.join(prefix, "share", "doc", "imaptap")
            for name in ("README.md", "rules.md", "events.md", "tls.md", "replay.md", "script.md",
                         "scenarios/gmail-ignores-done.imap"):
                self.assertTrue(os.path.isfile(os.path.join(doc, name)), name)
            self.check_wireshark_plugin(prefix, binary)
        finally:
            shutil.rmtree(prefix, ignore_errors=True)

    def check_wireshark_plugin(self, prefix, binary):
        plugin = os.path.join(prefix, "share", "imaptap", "wireshark", "imaptap.lua")
        self.assertTrue(os.path.isfile(plugin))
        pcap = os.path.join(prefix, "gmail.pcap")
        r = subprocess.run([binary, "compile", os.path.join(prefix, "share", "doc", "imaptap",
                                                            "scenarios", "gmail-ignores-done.imap"),
                            "-o", pcap], capture_output=True, text=True, env=sanitizer_env(),
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        home = os.path.join(prefix, "home")
        os.makedirs(home)
        query = ["-r", pcap, "-Y", 'imaptap.command == "IDLE" && imaptap.done_to_ok > 1',
                 "-T", "fields", "-e", "imaptap.tag", "-e", "imaptap.status"]

        def tshark(*argv):
            r = subprocess.run(["tshark"] + list(argv), capture_output=True, text=True,
                               env=dict(os.environ, HOME=home), timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("Lua", r.stdout + r.stderr)
            return r.stdout
        self.assertEqual(tshark("-X", "lua_script:" + plugin, *query), "a3\tOK\n")
        # copied into the personal plugin folder: loaded with no option
        personal = os.path.join(home, ".local", "lib", "wireshark", "plugins")
        os.makedirs(personal)
        shutil.copy(plugin, personal)
        self.assertEqual(tshark(*query), "a3\tOK\n")


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
            self.assertTrue(os.path.isfile(os.path.join(root, "usr", "share", "imaptap",
                                                        "wireshark", "imaptap.lua")))
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def test_package_on_a_clean_debian_12(self):
        """A plain (unsanitised) build packaged with cpack installs with apt
        on a minimal Debian 12 made by mmdebstrap from this machine's Debian
        sources, which pulls in exactly the libraries the package names;
        there it runs, compiles a bundled scenario and finds its stall."""
        work = tempfile.mkdtemp(prefix="imaptap-clean-debian-")
        try:
            build = os.path.join(work, "build")
            for argv in (["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                          "-DIMAPTAP_TESTS=OFF"],
                         ["cmake", "--build", build, "-j", "2", "--target", "imaptap"],
                         ["cpack", "-G", "DEB", "-B", os.path.join(work, "deb")]):
                r = subprocess.run(argv, cwd=build if argv[0] == "cpack" else ROOT,
                                   capture_output=True, text=True, timeout=600)
                self.assertEqual(r.returncode, 0, " ".join(argv) + "\n" + r.stdout + r.stderr)
            deb = glob.glob(os.path.join(work, "deb", "*.deb"))
            self.assertEqual(len(deb), 1)
            sources = []
            for f in glob.glob("/etc/apt/sources.list.d/*.sources") + glob.glob("/etc/apt/sources.list"):
                with open(f) as text:
                    if re.search(r"debian.*\n?.*bookworm", text.read()):
                        sources.append(f)
            self.assertTrue(sources, "no Debian 12 apt sources on this machine")
            root = os.path.join(work, "root")
            r = subprocess.run(["mmdebstrap", "--variant=apt", "--mode=root", "--quiet",
                                "--customize-hook=copy-in %s /tmp" % deb[0],
                                "--customize-hook=chroot \"$1\" apt-get install -y -q /tmp/%s"
                                % os.path.basename(deb[0]),
                                "bookworm", root] + sources,
                               capture_output=True, text=True, timeout=900)
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])

            def inside(*argv):
                return subprocess.run(["chroot", root] + list(argv), capture_output=True,
                                      text=True, timeout=60)
            r = inside("imaptap", "--version")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^imaptap \d+\.\d+\.\d+")
            r = inside("imaptap", "compile",
                       "/usr/share/doc/imaptap/scenarios/gmail-ignores-done.imap",
                       "-o", "/tmp/gmail.pcap")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = inside("imaptap", "analyze", "/tmp/gmail.pcap", "--fail-on", "done-stall",
                       "--color", "never")
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("! done-stall", r.stdout + r.stderr)
            self.assertTrue(os.path.isfile(os.path.join(root, "usr", "share", "man", "man1",
                                                        "imaptap-proxy.1")))
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
