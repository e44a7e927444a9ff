"""What the private servers of the tests (tests/lib/dovecot.py,
tests/lib/cyrus.py) share: a child that dies with the test process, a free
port, stopping a server's whole process group, and the life cycle of a
server object (PrivateServer)."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time


def die_with_parent(sig=signal.SIGTERM):
    """In the child before exec: sig when the test process dies, so a
    killed test run leaves no server (or proxy) behind (Linux prctl)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port(host="127.0.0.1"):
    """A port that nothing listens on right now (bind port 0, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def stop_group(proc):
    """SIGTERM to a server's master process, SIGKILL to its group when it
    does not go within 10 s; then the children (login, imap, lmtp...) that
    leave with the master get 5 s before the group is killed. Returns the
    master's exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode


RUNNING = set()


@atexit.register
def _stop_leftovers():
    for server in list(RUNNING):
        server.stop()


class PrivateServer:
    """The life cycle both fixtures share: start() (the subclass's) adds
    the server to RUNNING, stop() kills it (the subclass's _kill), removes
    its directory unless kept, and a context manager wraps the two. An
    instance has proc, dir, keep and _own_dir."""

    def stop(self):
        """Stop the server and its children, and wait for them."""
        rc = self._kill()
        RUNNING.discard(self)
        self.proc = None
        if self._own_dir and not self.keep and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def parse_users(ap, specs):
    """--users USER:PASS ... as a dict (alice:secret when none), or an
    argparse error naming the bad one."""
    users = {}
    for spec in specs or ["alice:secret"]:
        name, sep, pw = spec.partition(":")
        if not sep or not name:
            ap.error("--users wants USER:PASS, got %r" % spec)
        users[name] = pw
    return users


def run_foreground(server, prog, error, port_file, banner):
    """A fixture's command line: starts server, writes its port to
    port_file (atomically) and on stdout, says banner(server) on stderr,
    and runs until SIGTERM or SIGINT, or until the server's master exits
    (3). A start that raises error is said and gives 3."""
    stop = []

    def on_signal(signum, _frame):
        stop.append(signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except error as e:
        print("%s: %s" % (prog, e), file=sys.stderr)
        server.stop()
        return 3
    try:
        if port_file:
            tmp = port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % server.port)
            os.replace(tmp, port_file)
        print("%s: %s" % (prog, banner(server)), file=sys.stderr, flush=True)
        print(server.port, flush=True)
        while not stop:
            if server.proc.poll() is not None:
                print("%s: the server's master exited (%s)\n%s"
                      % (prog, server.proc.returncode, server.log_tail()), file=sys.stderr)
                return 3
            time.sleep(0.2)
    finally:
        server.stop()
    return 0
