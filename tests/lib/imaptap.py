"""Run the imaptap binary under test and read what it prints.

The binary is found, in order, from a `--imaptap PATH` argument (stripped
from sys.argv by take_imaptap_arg() before unittest sees it), the
IMAPTAP_BIN environment variable, or build/imaptap under the repository root.

    with Proxy(upstream_port=dc.port) as px:
        imaplib.IMAP4("127.0.0.1", px.port) ...
        rows = px.timeline()
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import procs  # tests/lib, beside this file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Lines that a sanitizer prints when it finds something.
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "WARNING: ThreadSanitizer",
)

# One timeline row: "HH:MM:SS.uuuuuu #N DIR text" (DIR "~" for a fault;
# "#N@ROUTE" with --route).
ROW_RE = re.compile(
    r"^(?P<ts>\d\d:\d\d:\d\d\.\d{6}) #(?P<session>\d+)(?:@(?P<route>\S+))? "
    r"(?P<dir>C>|S<|P<|--|!|~)(?: (?P<text>.*))?$")

# The latency note that ends a tagged completion row.
_DUR = r"(\d+(?:\.\d+)?) (us|ms|s)"
COMPLETION_RE = re.compile(
    r"  \((?P<cmd>[A-Za-z-]+(?: [A-Za-z-]+)?) " + _DUR +
    r"(?:, DONE->OK " + _DUR + r")?\)$")

_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def duration_seconds(number, unit):
    return float(number) * _UNIT[unit]


def take_imaptap_arg(argv=None):
    """Remove `--imaptap PATH` / `--imaptap=PATH` from argv (default
    sys.argv) and export it as IMAPTAP_BIN."""
    argv = sys.argv if argv is None else argv
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--imaptap" and i + 1 < len(argv):
            os.environ["IMAPTAP_BIN"] = os.path.abspath(argv[i + 1])
            del argv[i:i + 2]
        elif a.startswith("--imaptap="):
            os.environ["IMAPTAP_BIN"] = os.path.abspath(a.split("=", 1)[1])
            del argv[i]
        else:
            i += 1
    return argv


def module_dovecot(**kwargs):
    """A private Dovecot (tests/lib/dovecot.py) for a whole test module, from
    its setUpModule: stopped after the module's last test."""
    from dovecot import Dovecot
    dc = Dovecot(**kwargs).start()
    unittest.addModuleCleanup(dc.stop)
    return dc


def module_tmpdir(prefix):
    """A scratch directory for a whole test module, from its setUpModule:
    removed after the module's last test unless KEEP_TMP is set."""
    path = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("KEEP_TMP"):
        unittest.addModuleCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def session_records(records):
    """The records about sessions: without each run's run-start record, the
    capture-summary analyze ends with, and the run id, so the records of
    two runs (live and analyze) compare."""
    out = []
    for r in records:
        if r.get("kind") in ("run-start", "capture-summary"):
            continue
        r = dict(r)
        r.pop("run", None)
        out.append(r)
    return out


def read_events(path):
    """The session records of an event log (JSON lines), as
    session_records gives them."""
    with open(path) as f:
        return session_records(json.loads(line) for line in f if line.strip())


def wait_for(predicate, what, timeout=10.0):
    """Polls predicate until it holds; raises naming what after timeout s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def imaptap_bin():
    path = os.environ.get("IMAPTAP_BIN") or os.path.join(
        REPO_ROOT, "build", "imaptap")
    return path


def check_binary():
    """Raise with a clear message when the binary is missing."""
    path = imaptap_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            "imaptap binary not found or not executable: %s "
            "(build it, or pass --imaptap PATH / set IMAPTAP_BIN)" % path)
    return path


def sanitizer_env(extra_asan=None):
    """The environment for imaptap: sanitizer reports go to stderr, with
    stacks; extra_asan (e.g. "quarantine_size_mb=1") is appended to
    ASAN_OPTIONS."""
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    parts = [p for p in asan.split(":") if p]
    if extra_asan:
        parts.append(extra_asan)
    env["ASAN_OPTIONS"] = ":".join(parts)
    ubsan = env.get("UBSAN_OPTIONS", "")
    if "print_stacktrace" not in ubsan:
        ubsan = ":".join([p for p in (ubsan, "print_stacktrace=1") if p])
    env["UBSAN_OPTIONS"] = ubsan
    return env


def sanitizer_reports(text):
    """The lines of text that carry a sanitizer report."""
    return [line for line in text.splitlines()
            if any(p in line for p in SANITIZER_PATTERNS)]


def run_imaptap(args, timeout=20, input=None, env=None):
    """Run imaptap to completion; return CompletedProcess (text output)."""
    return subprocess.run([check_binary()] + list(args),
                          stdin=subprocess.DEVNULL if input is None else None,
                          input=input, capture_output=True, text=True,
                          errors="replace", timeout=timeout,
                          env=env or sanitizer_env())


def parse_timeline(text):
    """[dict(ts, session:int, dir, text)] for every timeline row in text;
    other lines are ignored."""
    rows = []
    for line in text.splitlines():
        m = ROW_RE.match(line)
        if m:
            rows.append({"ts": m.group("ts"), "session": int(m.group("session")),
                         "dir": m.group("dir"), "text": m.group("text") or "",
                         "route": m.group("route"), "line": line})
    return rows


def completion_of(row_text):
    """(cmd, seconds, done_to_ok_seconds or None) for a completion row, or
    None when the row carries no latency note."""
    m = COMPLETION_RE.search(row_text)
    if not m:
        return None
    cmd = m.group("cmd")
    secs = duration_seconds(m.group(2), m.group(3))
    done = None
    if m.group(4) is not None:
        done = duration_seconds(m.group(4), m.group(5))
    return cmd, secs, done


class ProxyError(RuntimeError):
    pass


_running = set()


@atexit.register
def _kill_leftovers():
    for px in list(_running):
        if px.proc is not None and px.proc.poll() is None:
            px.proc.kill()
            px.proc.wait()


class Proxy:
    """`imaptap proxy` on a free loopback port in front of upstream."""

    def __init__(self, upstream_port=None, upstream_host="127.0.0.1",
                 upstream=None, extra_args=(), listen="127.0.0.1:0",
                 env=None, workdir=None, preexec=None):
        self.upstream = upstream or "%s:%d" % (upstream_host, upstream_port)
        self.listen = listen
        self.extra_args = list(extra_args)
        self.env = env
        self.preexec = preexec  # also run in the child before exec (limits, users)
        self._own_dir = workdir is None
        self.dir = workdir
        self.proc = None
        self.port = None
        self.returncode = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def stderr_path(self):
        return os.path.join(self.dir, "imaptap.stderr")

    @property
    def port_file(self):
        return os.path.join(self.dir, "port")

    def argv(self):
        return [check_binary(), "proxy", "--upstream", self.upstream,
                "--listen", self.listen, "--port-file", self.port_file
                ] + self.extra_args

    def start(self, timeout=15.0):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="imaptap-proxy-")
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(os.path.join(self.dir, "imaptap.stdout"), "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr,
                                     env=self.env or sanitizer_env(),
                                     preexec_fn=self._preexec)
        _running.add(self)
        deadline = time.monotonic() + timeout
        while True:
            text = ""
            try:
                with open(self.port_file) as f:
                    text = f.read()
            except FileNotFoundError:
                pass
            if text.endswith("\n") and text.strip().isdigit():
                self.port = int(text.strip())
                return self
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise ProxyError("imaptap exited with %s before writing "
                                 "its port file\n%s"
                                 % (self.proc.returncode, self.stderr_text()))
            if time.monotonic() > deadline:
                raise ProxyError("imaptap wrote no port file within %.0f s "
                                 "(content %r)\n%s"
                                 % (timeout, text, self.stderr_text()))
            time.sleep(0.02)

    def _preexec(self):
        procs.die_with_parent(signal.SIGKILL)
        if self.preexec is not None:
            self.preexec()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig, wait up to timeout; return the exit code (negative:
        killed by a signal).  After the timeout the process is killed and
        ProxyError raised."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = self.proc.returncode
                self._close_files()
                raise ProxyError("imaptap did not exit within %.1f s of "
                                 "signal %d\n%s" % (timeout, sig,
                                                    self.stderr_tail()))
        self.returncode = self.proc.returncode
        self._close_files()
        return self.returncode

    def _close_files(self):
        for f in (getattr(self, "_stderr", None), getattr(self, "_stdout", None)):
            if f is not None and not f.closed:
                f.close()

    def cleanup(self):
        """Kill if still running and remove the work directory."""
        _running.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_files()
        if self._own_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.cleanup()
        return False

    # ----- observation -------------------------------------------------
    def stderr_bytes(self):
        with open(self.stderr_path, "rb") as f:
            return f.read()

    def stdout_bytes(self):
        with open(os.path.join(self.dir, "imaptap.stdout"), "rb") as f:
            return f.read()

    def stderr_text(self):
        return self.stderr_bytes().decode("utf-8", "replace")

    def stderr_tail(self, n=60):
        return "\n".join(self.stderr_text().splitlines()[-n:])

    def timeline(self):
        return parse_timeline(self.stderr_text())

    def wait_for_row(self, predicate, timeout=5.0):
        """Wait until a timeline row satisfies predicate(row); return it."""
        deadline = time.monotonic() + timeout
        while True:
            for row in self.timeline():
                if predicate(row):
                    return row
            if time.monotonic() > deadline:
                raise AssertionError("no matching timeline row within %.1f s;"
                                     " stderr tail:\n%s"
                                     % (timeout, self.stderr_tail()))
            time.sleep(0.02)

    def rss_kib(self):
        """VmRSS of the proxy process in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ProxyError("no VmRSS for pid %d" % self.proc.pid)

    def sanitizer_reports(self):
        return sanitizer_reports(self.stderr_text())

    def assert_no_sanitizer_reports(self):
        reports = self.sanitizer_reports()
        if reports:
            raise AssertionError("sanitizer report(s) on imaptap stderr:\n"
                                 + "\n".join(reports) + "\n--- stderr tail ---\n"
                                 + self.stderr_tail(120))


class ProxyTestCase:
    """Mixin for unittest.TestCase: start_proxy() registers a proxy that
    tearDown stops with SIGTERM (expecting exit 0) and checks for sanitizer
    reports.  Call it as the first base: class T(ProxyTestCase, TestCase)."""

    def setUp(self):
        super().setUp()
        self._proxies = []

    def start_proxy(self, upstream_port=None, **kw):
        px = Proxy(upstream_port=upstream_port, **kw)
        self._proxies.append(px)
        px.start()
        return px

    def assertRecordingQuiet(self, px, sessions, starttls, min_completions):
        """px, started by start_recording_proxy, saw sessions close with no
        anomaly: none in its event log, none from `analyze --fail-on all`
        of its pcap with the same thresholds; at least min_completions
        commands completed; with starttls, both legs' STARTTLS and TLS
        rows. Returns the event records."""
        px.wait_for_row(lambda r: len([x for x in px.timeline() if x["dir"] == "--"
                                       and x["text"].startswith("close")]) >= sessions,
                        timeout=20)
        with open(self.events) as f:
            recs = [json.loads(line) for line in f]
        anomalies = [r for r in recs if r["kind"] == "anomaly"]
        self.assertEqual(anomalies, [], px.stderr_tail(60))
        self.assertGreater(len([r for r in recs if r["kind"] == "completion"]), min_completions)
        if starttls:
            text = px.stderr_text()
            self.assertIn("(client STARTTLS, upstream STARTTLS)", text)
            self.assertRegex(text, r"-- client TLS TLSv1\.[23] ")
            self.assertRegex(text, r"-- upstream TLS TLSv1\.[23] \S+; SNI localhost; "
                                   r"certificate verified for localhost")
        r = run_imaptap(["analyze", self.pcap, "--quiet", "--stall", "5", "--done-stall", "2",
                         "--fail-on", "all"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout[-4000:] + r.stderr[-4000:])
        return recs

    def start_recording_proxy(self, upstream_port, workdir, upstream_ca=None, starttls=False):
        """A proxy with --events and --pcap in a new directory under
        workdir (self.events, self.pcap) and the stall rules tightened
        (--stall 5, --done-stall 2); with starttls, STARTTLS on both legs,
        the upstream's certificate checked against upstream_ca and the
        client's leg signed by a CA of its own, whose certificate is
        self.client_ca (None without starttls)."""
        d = tempfile.mkdtemp(dir=workdir)
        self.events = os.path.join(d, "events.jsonl")
        self.pcap = os.path.join(d, "quiet.pcap")
        self.client_ca = None
        tls = []
        if starttls:
            ca = os.path.join(d, "ca")
            self.client_ca = os.path.join(ca, "ca.crt")
            tls = ["--client-tls", "starttls", "--ca", ca, "--upstream-tls", "starttls",
                   "--upstream-ca", upstream_ca, "--sni", "localhost"]
        return self.start_proxy(upstream_port, extra_args=[
            "--events", self.events, "--pcap", self.pcap, "--stall", "5", "--done-stall", "2"]
            + tls)

    def tearDown(self):
        try:
            problems = []
            for px in self._proxies:
                try:
                    if px.alive():
                        rc = px.stop(signal.SIGTERM, timeout=10)
                        if rc != 0:
                            problems.append(
                                "imaptap exited %s on SIGTERM (want 0)" % rc)
                    elif px.proc is not None and px.proc.returncode is not None \
                            and px.proc.returncode < 0 \
                            and not getattr(px, "expect_signal_exit", False):
                        problems.append("imaptap died of signal %d"
                                        % -px.proc.returncode)
                    if px.dir:
                        reports = px.sanitizer_reports()
                        if reports:
                            problems.append(
                                "sanitizer report(s):\n" + "\n".join(reports)
                                + "\n--- stderr tail ---\n" + px.stderr_tail(120))
                except ProxyError as e:
                    problems.append(str(e))
                if problems and px.dir:
                    problems.append("--- imaptap stderr tail (%s) ---\n%s"
                                    % (px.stderr_path, px.stderr_tail(40)))
                    px._own_dir = False     # keep it for a look
                else:
                    px.cleanup()
            if problems:
                self.fail("\n".join(problems))
        finally:
            super().tearDown()


def main():
    """Entry point for a test file: strip --imaptap PATH, check the
    binary, run unittest (exits non-zero on failure)."""
    import unittest
    take_imaptap_arg()
    print("imaptap binary: %s" % imaptap_bin(), file=sys.stderr)
    unittest.main()
