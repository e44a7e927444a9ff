#!/usr/bin/env python3
"""Every imaptap (and `tshark -r`) command shown in README.md and docs/*.md
runs, in the order its page gives, as a newcomer would type it: each page
in a fresh directory with its own HOME, so `~/.imaptap-ca` is the CA the
page's own `imaptap ca init` made.

What stands in for the world outside:
- a real Dovecot on loopback plays every provider: `--upstream HOST:993`
  (and `--route NAME=HOST:993`) goes to its implicit-TLS port, `HOST:143`
  to its plain one (STARTTLS offered); its certificate is trusted through SSL_CERT_FILE, as a
  provider's would be through the system store;
- `--listen ADDR:PORT` (and `--pcap-listen`, `--metrics`) becomes port 0 with a port file
  (tests run in parallel);
- the installed Wireshark plugin (`lua_script:.../share/imaptap/wireshark/
  imaptap.lua`) is the repository's wireshark/imaptap.lua;
- a proxy or a replay server left running is driven by a Python imaplib
  client that idles (three sessions through a proxy, one per replay), then
  stopped with SIGINT; a `proxy --transparent`, with no REDIRECT rule in
  front of it, gets one connection straight to its port, which must be
  answered with the not-redirected BYE (tests/integration/test_transparent.py
  runs it behind a real REDIRECT);
- files a page reads but never makes (bug.pcap, run.pcap, tests/clean.pcap,
  ./run-client-test ...) exist: recordings of a server that holds IDLE's
  completion 6 s after DONE (the pages' "bug"), a clean one, a tcpdump-style
  pcapng, a client's TLS capture of port 993 with its key log (and a pcapng
  holding the key log), and the idling client as the "client test".
Expected exit codes: 1 for `analyze --fail-on` on a recording of the bug,
else 0. Not run: synopses (HOST:PORT, `...`) and a `tshark -r` of a raw
capture of a leg, which needs capture rights.

    python3 tests/integration/test_docs_run.py [--imaptap build/imaptap] [-v]
"""

import concurrent.futures
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import pcapfile  # noqa: E402
from memory_tls import MemoryTLS, tls_contexts  # noqa: E402
from certs import TestPKI  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from imaptap import check_binary, main, sanitizer_env, sanitizer_reports  # noqa: E402
from doc_commands import doc_pages  # noqa: E402
from clients import read_to_eof  # noqa: E402

IDLE_CLIENT = r'''#!/usr/bin/env python3
"""Logs in, selects INBOX, idles briefly, ends IDLE with DONE, logs out.
Port: argv[1] or $IMAPTAP_PORT; TLS trusting the CA file argv[2] if given."""
import imaplib, os, ssl, sys
port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["IMAPTAP_PORT"])
if os.environ.get("IMAPTAP_SEND_PROXY_HEADER"):
    # the page's proxy takes --accept-proxy: this client plays the balancer too
    plain_socket = imaplib.IMAP4._create_socket
    def with_header(self, timeout):
        s = plain_socket(self, timeout)
        s.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 %d\r\n" % port)
        return s
    imaplib.IMAP4._create_socket = with_header
if len(sys.argv) > 2:
    m = imaplib.IMAP4_SSL("127.0.0.1", port,
                          ssl_context=ssl.create_default_context(cafile=sys.argv[2]), timeout=60)
else:
    m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
m.login("alice", "secret")
m.select("INBOX")
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
assert m.readline().startswith(b"+"), "no + to IDLE"
m.send(b"DONE\r\n")
while not m.readline().startswith(tag):
    pass
m.logout()
'''

BUG_DELAY = "+6s"  # past analyze's default --done-stall of 5 s


def tls_capture(ws):
    """A client's own capture of port 993 and its key log (what tcpdump and
    SSLKEYLOGFILE give), made in memory with Python's ssl: port993.pcap,
    sslkeys.log, and port993-with-keys.pcapng holding the secrets."""
    pki = TestPKI(os.path.join(ws, "tls-pki"))
    cctx, sctx = tls_contexts(pki, "imap")
    cctx.keylog_filename = os.path.join(ws, "sslkeys.log")
    flow = pcapfile.TcpFlow((bytes([10, 0, 0, 1]), 50100), (bytes([10, 0, 0, 2]), 993))
    flow.open()
    tls = MemoryTLS(cctx, sctx, flow.send)
    for side, line in ((1, b"* OK ready\r\n"), (0, b"a1 LOGIN alice secret\r\n"),
                       (1, b"a1 OK logged in\r\n"), (0, b"a2 LOGOUT\r\n"),
                       (1, b"* BYE\r\na2 OK bye\r\n")):
        tls.say(side, line)
    flow.close()
    pcapfile.write_pcap(os.path.join(ws, "port993.pcap"), flow.records)
    subprocess.run(["editcap", "--inject-secrets", "tls," + os.path.join(ws, "sslkeys.log"),
                    os.path.join(ws, "port993.pcap"), os.path.join(ws, "port993-with-keys.pcapng")],
                   check=True, capture_output=True)


def fixture_recordings(ws, env):
    """The recordings a page reads without making them."""
    with open(os.path.join(ROOT, "tests", "scenarios", "gmail-ignores-done.imap")) as f:
        gmail = f.read()
    short = gmail.replace("+30s", BUG_DELAY)
    assert short != gmail
    clean = short.replace(BUG_DELAY + "\n", "")
    os.makedirs(os.path.join(ws, "tests"), exist_ok=True)
    shutil.copytree(os.path.join(ROOT, "tests", "scenarios"), os.path.join(ws, "tests", "scenarios"))
    shutil.copy(os.path.join(ROOT, "tests", "scenarios", "gmail-ignores-done.imap"),
                os.path.join(ws, "tests", "my-scenario.imap"))
    for name, text in (("bug.imap", short), ("clean.imap", clean)):
        with open(os.path.join(ws, name), "w") as f:
            f.write(text)
    def compile_to(src, out):
        subprocess.run([check_binary(), "compile", os.path.join(ws, src), "-o", os.path.join(ws, out)],
                       check=True, env=env, capture_output=True)
    for out in ("bug.pcap", "tests/bug.pcap", "tests/idle-bug.pcap"):
        compile_to("bug.imap", out)
    compile_to("clean.imap", "tests/clean.pcap")
    compile_to("clean.imap", "clean.pcap")
    compile_to("clean.imap", "run.pcap")      # a fixed client's own session
    subprocess.run(["editcap", "-F", "pcapng", os.path.join(ws, "clean.pcap"),
                    os.path.join(ws, "tcpdump-of-port-143.pcapng")], check=True, capture_output=True)
    tls_capture(ws)
    for name in ("run-client-test", "client-test", "my-client-idle-test"):
        path = os.path.join(ws, name)
        with open(path, "w") as f:
            f.write(IDLE_CLIENT)
        os.chmod(path, 0o755)


def expected_exit(argv):
    if "analyze" in argv and any(a.startswith("--fail-on") for a in argv):
        pcap = next(a for a in argv[argv.index("analyze") + 1:] if not a.startswith("-"))
        return 1 if re.search(r"bug|stall|gmail", os.path.basename(pcap)) else 0
    return 0


class Page:
    """One page's commands run in order in a directory of its own."""

    def __init__(self, path, commands, dovecot, trust, bindir):
        self.path = path
        self.commands = commands
        self.dovecot = dovecot
        self.ws = tempfile.mkdtemp(prefix="imaptap-doc-")
        self.home = os.path.join(self.ws, "home")
        os.makedirs(self.home)
        self.env = sanitizer_env()
        self.env.update(HOME=self.home, SSL_CERT_FILE=trust,
                        PATH=bindir + os.pathsep + self.env.get("PATH", ""))
        self.log = []

    def fail(self, cmd, why, text=""):
        raise AssertionError("%s: `%s`: %s\n%s" % (self.path, cmd, why, text[-3000:]))

    def argv_of(self, cmd):
        argv = shlex.split(cmd.replace("~", self.home))
        out = []
        i = 0
        while i < len(argv):
            a = argv[i]
            if a == "--upstream" and i + 1 < len(argv):
                port = argv[i + 1].rsplit(":", 1)[1]
                real = self.dovecot.imaps_port if port == "993" else self.dovecot.port
                if "--send-proxy" in argv:  # a listener that takes the header
                    real = self.dovecot.haproxy_port
                out += [a, "127.0.0.1:%d" % real]
                if port == "993" and "--upstream-tls" not in argv:
                    # what port 993 implies, said outright for another port
                    out += ["--upstream-tls", "implicit"]
                i += 2
                continue
            if a == "--route" and i + 1 < len(argv):
                # NAME=HOST:PORT[,MODE]: the same Dovecot plays every provider
                name, where = argv[i + 1].split("=", 1)
                port, _, mode = where.rsplit(":", 1)[1].partition(",")
                real = self.dovecot.imaps_port if port == "993" else self.dovecot.port
                mode = mode or ("implicit" if port == "993" else "none")
                out += [a, "%s=127.0.0.1:%d,%s" % (name, real, mode)]
                i += 2
                continue
            if a.startswith("lua_script:") and a.endswith("/share/imaptap/wireshark/imaptap.lua"):
                out.append("lua_script:" + os.path.join(ROOT, "wireshark", "imaptap.lua"))
                i += 1
                continue
            if a in ("--listen", "--pcap-listen", "--metrics") and i + 1 < len(argv):
                out += [a, "127.0.0.1:0"]
                i += 2
                continue
            out.append(a)
            i += 1
        if out[0] == "build/imaptap":
            out[0] = "imaptap"
        return out

    def ca_cert(self):
        return os.path.join(self.home, ".imaptap-ca", "ca.crt")

    def run(self):
        if any("~/.imaptap-ca" in c for c in self.commands) and \
                not any(c.startswith("imaptap ca init") for c in self.commands):
            # the page sends its reader to tls.md for this step
            self.run_command("imaptap ca init ~/.imaptap-ca")
        for cmd in self.commands:
            self.run_command(cmd)

    def run_command(self, cmd):
        argv = self.argv_of(cmd)
        self.log.append(" ".join(argv))
        server = (argv[1] == "proxy" or argv[1:3] == ["replay", "serve"]) and "--" not in argv
        if server:
            return self.run_server(cmd, argv)
        r = subprocess.run(argv, cwd=self.ws, env=self.env, capture_output=True, text=True,
                           timeout=120)
        text = r.stdout + r.stderr
        if sanitizer_reports(text):
            self.fail(cmd, "sanitizer report", text)
        want = expected_exit(argv)
        if r.returncode != want:
            self.fail(cmd, "exit %d, expected %d" % (r.returncode, want), text)
        if argv[0] == "tshark" and "IMAP" not in text:
            self.fail(cmd, "tshark decoded no IMAP", text)

    def run_server(self, cmd, argv):
        port_file = os.path.join(self.ws, "port.%d" % len(self.log))
        argv = argv + ["--port-file", port_file]
        if "--listen" not in argv:
            argv += ["--listen", "127.0.0.1:0"]
        err_path = port_file + ".stderr"
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, cwd=self.ws, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err)
        try:
            port = self.wait_port(proc, port_file, cmd, err_path)
            tls = "--client-tls" in argv and argv[argv.index("--client-tls") + 1] == "implicit"
            sessions = 3 if argv[1] == "proxy" else 1
            if "--transparent" in argv:
                # no REDIRECT rule here: a connection straight to the port
                # is refused with a BYE (the real thing: test_transparent.py)
                sessions = 0
                self.not_redirected(cmd, port, err_path)
            for _ in range(sessions):
                client = [sys.executable, os.path.join(self.ws, "run-client-test"), str(port)]
                if tls:
                    client.append(self.ca_cert())
                env = dict(os.environ)
                if "--accept-proxy" in argv:
                    env["IMAPTAP_SEND_PROXY_HEADER"] = "1"
                try:
                    r = subprocess.run(client, cwd=self.ws, capture_output=True, text=True,
                                       timeout=60, env=env)
                except subprocess.TimeoutExpired:
                    self.fail(cmd, "the client through it hung", self.read(err_path))
                if r.returncode != 0:
                    self.fail(cmd, "the client through it failed", r.stderr + self.read(err_path))
            if argv[1] == "proxy":
                proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = self.read(err_path)
        if rc != 0 or sanitizer_reports(text):
            self.fail(cmd, "exit %d" % rc, text)

    def not_redirected(self, cmd, port, err_path):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            got, _ = read_to_eof(s, 10)
        if not (got.startswith(b"* BYE [UNAVAILABLE] imaptap") and b"not redirected" in got):
            self.fail(cmd, "a connection that was not redirected got %r" % got[:200],
                      self.read(err_path))

    def wait_port(self, proc, port_file, cmd, err_path):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open(port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    return int(text)
            except FileNotFoundError:
                pass
            if proc.poll() is not None:
                self.fail(cmd, "exited %d before listening" % proc.returncode, self.read(err_path))
            time.sleep(0.05)
        self.fail(cmd, "not listening after 20 s", self.read(err_path))

    @staticmethod
    def read(path):
        with open(path, errors="replace") as f:
            return f.read()


class DocsRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="imaptap-docs-run-")
        pki = TestPKI(os.path.join(cls.tmp, "pki"))
        cert, key = pki.server("127.0.0.1", "localhost")
        cls.trust = pki.ca_cert
        # beside its own ports, one that takes a PROXY header (--send-proxy)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        haproxy_port = probe.getsockname()[1]
        probe.close()
        listener = ("haproxy_trusted_networks = 127.0.0.0/8\n"
                    "service imap-login {\n  inet_listener imap_haproxy {\n"
                    "    address = 127.0.0.1\n    port = %d\n    haproxy = yes\n  }\n}\n"
                    % haproxy_port)
        cls.dovecot = Dovecot(users={"alice": "secret"}, ssl=True, ssl_cert=cert, ssl_key=key,
                              extra_conf=listener)
        cls.dovecot.start()
        cls.dovecot.haproxy_port = haproxy_port
        cls.bindir = os.path.join(cls.tmp, "bin")
        os.makedirs(cls.bindir)
        os.symlink(os.path.abspath(check_binary()), os.path.join(cls.bindir, "imaptap"))

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_documented_command_runs(self):
        pages = [Page(path, cmds, self.dovecot, self.trust, self.bindir)
                 for path, cmds in doc_pages(runnable=True) if cmds]
        self.assertGreater(sum(len(p.commands) for p in pages), 30)
        for page in pages:
            fixture_recordings(page.ws, page.env)
        failures = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for page, fut in [(p, pool.submit(p.run)) for p in pages]:
                try:
                    fut.result()
                except AssertionError as e:
                    failures.append(str(e))
                else:
                    shutil.rmtree(page.ws, ignore_errors=True)
        if failures:
            self.fail("\n\n".join(failures))


if __name__ == "__main__":
    main()
