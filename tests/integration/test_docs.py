#!/usr/bin/env python3
"""Every imaptap command shown in README.md and docs/*.md uses real
subcommands and options: each is run with --help appended (before any
"-- COMMAND"), which parses all its options first, so a renamed or
misspelt flag in the docs fails here.

    python3 tests/integration/test_docs.py [--imaptap build/imaptap] [-v]
"""

import os
import shlex
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from imaptap import check_binary, main, sanitizer_env  # noqa: E402
from doc_commands import doc_commands  # noqa: E402


class DocsTest(unittest.TestCase):
    def test_every_documented_command_parses(self):
        commands = doc_commands()
        self.assertGreater(len(commands), 20)
        failures = []
        for path, cmd in commands:
            argv = shlex.split(cmd.replace("~", "/tmp"))[1:]
            if "--" in argv:
                argv.insert(argv.index("--"), "--help")
            else:
                argv.append("--help")
            r = subprocess.run([check_binary()] + argv, capture_output=True, text=True,
                               env=sanitizer_env(), timeout=30)
            if r.returncode != 0 or "usage:" not in r.stdout:
                failures.append("%s: %s\n  -> exit %d: %s" % (path, cmd, r.returncode,
                                                              r.stderr.strip()[:300]))
        self.assertEqual(failures, [], "\n".join(failures))


if __name__ == "__main__":
    main()
