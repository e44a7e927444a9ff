"""Real Node IMAP clients (imapflow) for the tests.

The packages pinned in tests/node/package-lock.json are installed with
`npm ci` into a work directory (IMAPTAP_NODE_DIR, set by CMake to
BUILD/node; else ~/.cache/imaptap/node) next to copies of the scripts, so
that the source tree stays clean.  scripts/test installs Node and npm when
they are missing; the first test to need the packages installs them."""

import filecmp
import json
import os
import shutil
import subprocess

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node")
FILES = ("package.json", "package-lock.json", "options.mjs", "imapflow_session.mjs",
         "imapflow_literal.mjs", "imapflow_idle.mjs", "imapflow_qresync.mjs",
         "imapflow_two.mjs")


class NodeError(RuntimeError):
    pass


def node_dir():
    d = os.environ.get("IMAPTAP_NODE_DIR")
    if not d:
        d = os.path.join(os.path.expanduser("~"), ".cache", "imaptap", "node")
    return d


def ensure_node_clients():
    """The work directory with the pinned packages installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise NodeError("node and npm are needed: run scripts/test, which "
                        "installs them (apt-get install nodejs npm)")
    d = node_dir()
    os.makedirs(d, exist_ok=True)
    marker = os.path.join(d, "node_modules", ".package-lock.json.imaptap")
    lock_same = os.path.exists(marker) and filecmp.cmp(
        os.path.join(SRC, "package-lock.json"), marker, shallow=False)
    for name in FILES:
        shutil.copyfile(os.path.join(SRC, name), os.path.join(d, name))
    installed = os.path.exists(os.path.join(d, "node_modules", "imapflow",
                                            "package.json"))
    if not (installed and lock_same):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund",
                            "--loglevel=error"], cwd=d, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise NodeError("npm ci in %s failed (%d):\n%s%s"
                            % (d, r.returncode, r.stdout, r.stderr))
        shutil.copyfile(os.path.join(SRC, "package-lock.json"), marker)
    return d


def imapflow_command(host, port, user, password, tls_ca=None, servername=None,
                     script="imapflow_session.mjs"):
    """argv running an imapflow script of tests/node (port may be
    "$IMAPTAP_PORT" for a shell)."""
    d = ensure_node_clients()
    argv = ["node", os.path.join(d, script), host, str(port), user, password]
    if tls_ca:
        argv += ["--tls", tls_ca, servername or host]
    return argv


def imapflow_session(host, port, user, password, tls_ca=None,
                     servername=None, timeout=60, starttls=False,
                     script="imapflow_session.mjs"):
    """Run tests/node/imapflow_session.mjs (or another script of the same
    arguments); return its JSON result (dict), raising NodeError when it
    fails. With tls_ca the connection is TLS, implicit or, with starttls,
    upgraded by STARTTLS."""
    d = ensure_node_clients()
    argv = imapflow_command(host, port, user, password, tls_ca, servername, script=script)
    if starttls:
        argv[argv.index("--tls")] = "--starttls"
    r = subprocess.run(argv, cwd=d, capture_output=True, text=True,
                       timeout=timeout)
    try:
        result = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise NodeError("imapflow printed no result (exit %d):\n%s%s"
                        % (r.returncode, r.stdout, r.stderr))
    if r.returncode != 0 or "error" in result:
        raise NodeError("imapflow session failed (exit %d): %s\n%s"
                        % (r.returncode, result.get("error"), r.stderr))
    return result
