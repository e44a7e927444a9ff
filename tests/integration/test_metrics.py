#!/usr/bin/env python3
"""`imaptap proxy --metrics ADDR:PORT`: Prometheus metrics over HTTP while
real clients talk to a real Dovecot through the proxy.

- scraped with curl during a session (one open, bytes relayed both ways,
  the LOGIN latency counted) and after it (none open, the DONE->OK
  histogram holds the IDLE), every scrape passing `promtool check metrics`;
- the bytes relayed equal the event log's close records, and the bytes
  written by the pcap and the event log equal their files;
- a held IDLE completion (--fault hold-idle-completion) shows as the
  done-stall rule's counter, the fault's counter and a DONE->OK past the
  hold;
- command names a client makes up end as command="OTHER" (escape bytes,
  quotes, over-long names, more new names than the table holds), and the
  text stays valid;
- an event log that cannot be written counts its error and the records it
  left out; a --pcap-listen reader that stops reading counts as dropped;
- only /metrics answers (404 elsewhere); a taken port exits 3, a
  non-loopback address without --allow-remote exits 2;
- with --workers 2 and clients at once the counts add up;
- `metrics = ADDR:PORT` in a --config file works as the flag does.

    python3 tests/integration/test_metrics.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from clients import RawIMAP, make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, wait_for  # noqa: E402

PASSWORD = "Metr1cs-Pa55"
DC = None
TMP = None
PROMTOOL = "/usr/bin/promtool"

SAMPLE_RE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? '
                       r'(?P<value>\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def setUpModule():
    global DC, TMP
    check_binary()
    # promtool is part of the test: a missing one fails, never skips
    if not os.access(PROMTOOL, os.X_OK):
        raise RuntimeError("%s is missing: apt-get install prometheus "
                           "(scripts/test installs it)" % PROMTOOL)
    if shutil.which("curl") is None:
        raise RuntimeError("curl is missing: apt-get install curl")
    TMP = module_tmpdir("imaptap-metrics-")
    DC = module_dovecot(users={"alice": PASSWORD, "bob": PASSWORD, "carol": PASSWORD},
                        extra_conf="protocol imap {\n  mail_max_userip_connections = 100\n}\n")
    for user in ("alice", "bob"):
        m = imaplib.IMAP4("127.0.0.1", DC.port)
        m.login(user, PASSWORD)
        m.append("INBOX", None, None, make_message(2048, "hello"))
        m.logout()
    m = imaplib.IMAP4("127.0.0.1", DC.port)
    m.login("carol", PASSWORD)
    m.append("INBOX", None, None, make_message(4 * 1024 * 1024, "big"))
    m.logout()


def curl(url, *extra):
    """(status, headers text, body) of a GET by curl."""
    r = subprocess.run(["curl", "-s", "-S", "-D", "-", "--max-time", "10"] + list(extra) + [url],
                       capture_output=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError("curl %s failed: %s" % (url, r.stderr.decode(errors="replace")))
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def parse(text):
    """{(name, frozenset(labels.items())): float} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(LABEL_RE.findall(m.group("labels") or ""))
        value = m.group("value")
        out[(m.group("name"), labels)] = float("inf") if value == "+Inf" else float(value)
    return out


def get(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def label_values(samples, name, label):
    return {dict(k[1]).get(label) for k in samples if k[0] == name}


def idle_and_done(m):
    """IDLE, then DONE once the server's + came; the tagged answer's line."""
    tag = m._new_tag().decode()
    m.send(("%s IDLE\r\n" % tag).encode())
    while not m.readline().startswith(b"+"):
        pass
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag.encode() + b" "):
            return line


class MetricsTest(ProxyTestCase, unittest.TestCase):
    def start(self, *extra, metrics="127.0.0.1:0"):
        px = self.start_proxy(DC.port, extra_args=["--metrics", metrics] + list(extra))
        found = []

        def bound():
            m = re.search(r"metrics on http://([0-9.]+:\d+)/metrics", px.stderr_text())
            if m:
                found.append(m.group(1))
            return bool(found)
        wait_for(bound, "the metrics line on stderr")
        return px, "http://%s/metrics" % found[0]

    def scrape(self, url):
        """The samples of one scrape, after promtool accepted its text."""
        status, head, body = curl(url)
        self.assertEqual(status, 200, head)
        self.assertIn("Content-Type: text/plain; version=0.0.4; charset=utf-8", head)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           timeout=20)
        # promtool prints lint advice and fails on an invalid text
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr).decode() + body.decode())
        self.last_text = body.decode("utf-8")
        return parse(self.last_text)

    def test_a_session_during_and_after(self):
        events = os.path.join(TMP, "live.jsonl")
        pcap = os.path.join(TMP, "live.pcap")
        px, url = self.start("--events", events, "--pcap", pcap, "--overwrite")
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        m.fetch("1", "(FLAGS BODY.PEEK[])")

        s = self.scrape(url)
        self.assertEqual(get(s, "imaptap_sessions_open", route="default"), 1)
        self.assertEqual(get(s, "imaptap_sessions_total", route="default"), 1)
        c2s = get(s, "imaptap_relayed_bytes_total", route="default",
                  direction="client_to_server")
        s2c = get(s, "imaptap_relayed_bytes_total", route="default",
                  direction="server_to_client")
        self.assertGreater(c2s, 0)
        self.assertGreater(s2c, 2048)  # the message came through
        self.assertGreaterEqual(get(s, "imaptap_command_duration_seconds_count",
                                    command="LOGIN"), 1)
        self.assertEqual(get(s, "imaptap_command_duration_seconds_bucket", command="LOGIN",
                             le="+Inf"), get(s, "imaptap_command_duration_seconds_count",
                                             command="LOGIN"))
        self.assertEqual(get(s, "imaptap_command_duration_seconds_count", command="FETCH"), 1)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_count"), 0)

        idle_and_done(m)
        m.logout()
        wait_for(lambda: '"kind":"session-close"' in open(events).read(), "the close record")
        s = self.scrape(url)
        self.assertEqual(get(s, "imaptap_sessions_open", route="default"), 0)
        self.assertEqual(get(s, "imaptap_sessions_total", route="default"), 1)
        # Dovecot closes after LOGOUT's answer
        self.assertEqual(get(s, "imaptap_sessions_closed_total", route="default", by="server",
                             end="eof"), 1)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_count"), 1)
        self.assertEqual(get(s, "imaptap_command_duration_seconds_count", command="IDLE"), 1)
        self.assertEqual(get(s, "imaptap_command_duration_seconds_count", command="LOGOUT"), 1)
        self.assertLess(get(s, "imaptap_idle_done_to_ok_seconds_sum"), 5)
        self.assertEqual(get(s, "imaptap_anomalies_total", rule="done-stall"), 0)
        self.assertEqual(get(s, "imaptap_build_info", version=self.version()), 1)
        self.assertLessEqual(abs(get(s, "imaptap_start_time_seconds") - time.time()), 120)

        # the bytes are the close record's
        close = [json.loads(x) for x in open(events) if '"kind":"session-close"' in x][0]
        self.assertEqual(get(s, "imaptap_relayed_bytes_total", route="default",
                             direction="client_to_server"), close["bytes_c2s"])
        self.assertEqual(get(s, "imaptap_relayed_bytes_total", route="default",
                             direction="server_to_client"), close["bytes_s2c"])
        # what the outputs wrote is in their files, once flushed
        for output, path in (("pcap", pcap), ("events", events)):
            def flushed(output=output, path=path):
                s = self.scrape(url)
                return get(s, "imaptap_capture_written_bytes_total",
                           output=output) == os.path.getsize(path)
            wait_for(flushed, "%s bytes written to equal its file" % output)
            s = self.scrape(url)
            self.assertEqual(get(s, "imaptap_capture_write_errors_total", output=output), 0)
            self.assertEqual(get(s, "imaptap_capture_dropped_records_total", output=output), 0)

    def version(self):
        return run_imaptap(["--version"]).stdout.split()[-1]

    def test_a_held_idle_completion(self):
        px, url = self.start("--fault", "hold-idle-completion:2s", "--done-stall", "1s")
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        t0 = time.monotonic()
        line = idle_and_done(m)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.assertIn(b"OK", line)
        m.logout()
        wait_for(lambda: get(self.scrape(url), "imaptap_sessions_open", route="default") == 0,
                 "the session to close")
        s = self.scrape(url)
        self.assertEqual(get(s, "imaptap_anomalies_total", rule="done-stall"), 1)
        self.assertEqual(get(s, "imaptap_anomalies_total", rule="command-stall"), 0)
        for phase in ("active", "start", "release"):
            self.assertEqual(get(s, "imaptap_faults_injected_total",
                                 action="hold-idle-completion", phase=phase), 1, phase)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_count"), 1)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_bucket", le="1"), 0)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_bucket", le="2.5"), 1)
        self.assertGreaterEqual(get(s, "imaptap_idle_done_to_ok_seconds_sum"), 1.9)

    def test_made_up_command_names_are_other(self):
        px, url = self.start()
        hostile = [b"X\x1b[31mEVIL", b"FOO\"BAR\\", b"A" * 200, b"LO\xc3\x9fGIN",
                   b"UID X\x1bEVIL"]
        # more new atoms of letters than get a label of their own
        made_up = [("XMADE" + chr(ord("A") + i)).encode() for i in range(12)]
        # Dovecot hangs up after a few bad commands: one session each
        for i, name in enumerate(hostile + made_up):
            c = RawIMAP(px.port)
            c.read_greeting()
            _, status = c.command("h%d" % i, name)
            self.assertEqual(status, "BAD")
            c.command("z", "LOGOUT")
            c.close()
        wait_for(lambda: get(self.scrape(url), "imaptap_sessions_open", route="default") == 0,
                 "the session to close")
        s = self.scrape(url)
        commands = label_values(s, "imaptap_command_duration_seconds_count", "command")
        made = {c for c in commands if c.startswith("XMADE")}
        self.assertEqual(len(made), 8, commands)
        self.assertEqual(get(s, "imaptap_command_duration_seconds_count", command="OTHER"),
                         len(hostile) + 12 - 8)
        self.assertEqual(commands - made, {"OTHER", "LOGOUT"})
        self.assertNotIn("EVIL", self.last_text)
        self.assertNotIn("\x1b", self.last_text)
        self.assertNotIn("AAAAAAAAAAAAAAAAAAAAAAAAA", self.last_text)

    def test_an_output_that_fails_and_a_reader_dropped(self):
        px, url = self.start("--events", "/dev/full", "--pcap-listen", "127.0.0.1:0")
        wait_for(lambda: "serving the capture live on" in px.stderr_text(), "--pcap-listen")
        live = int(re.search(r"serving the capture live on 127\.0\.0\.1:(\d+)",
                             px.stderr_text()).group(1))
        stuck = socket.create_connection(("127.0.0.1", live))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        wait_for(lambda: "reader 127.0.0.1" in px.stderr_text(), "the reader to connect")
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("carol", PASSWORD)
        m.select("INBOX")
        for _ in range(4):
            m.fetch("1", "(BODY.PEEK[])")
        m.logout()
        wait_for(lambda: "dropped: it fell 8 MiB behind" in px.stderr_text(), "the drop")
        s = self.scrape(url)
        self.assertEqual(get(s, "imaptap_capture_readers_dropped_total", output="pcap-listen"), 1)
        self.assertGreater(get(s, "imaptap_capture_written_bytes_total", output="pcap-listen"),
                           16 * 1024 * 1024)
        self.assertEqual(get(s, "imaptap_capture_write_errors_total", output="pcap-listen"), 0)
        self.assertEqual(get(s, "imaptap_capture_write_errors_total", output="events"), 1)
        self.assertEqual(get(s, "imaptap_capture_written_bytes_total", output="events"), 0)
        # the session's records (open, lines, close) were left out
        self.assertGreater(get(s, "imaptap_capture_dropped_records_total", output="events"), 10)
        stuck.close()

    def test_only_metrics_answers(self):
        px, url = self.start()
        base = url[:-len("/metrics")]
        for path in ("/", "/metrics/", "/other", "/metricsx", "/%2e%2e/metrics"):
            status, head, _ = curl(base + path)
            self.assertEqual(status, 404, path + "\n" + head)
        status, _, body = curl(url + "?x=1")
        self.assertEqual(status, 200)
        self.assertIn(b"imaptap_sessions_total", body)
        # a request far beyond a scrape's size is refused, and serving goes on
        status, _, _ = curl(url, "-H", "X-Big: " + "b" * 20000)
        self.assertNotEqual(status, 200)
        self.scrape(url)

    def test_a_taken_port_and_a_remote_address(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        try:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                             "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % port])
        finally:
            taken.close()
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("imaptap: --metrics: cannot listen on 127.0.0.1:%d: Address already in "
                      "use (another program uses this port: pick another with --metrics, or "
                      "port 0 for any free one)" % port, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--metrics", "0.0.0.0:0"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--metrics 0.0.0.0 is not a loopback address", r.stderr)
        self.assertIn("--allow-remote", r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port, "--listen",
                         "127.0.0.1:0", "--metrics", "nonsense"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--metrics", r.stderr)

    def test_remote_allowed(self):
        _, url = self.start("--allow-remote", metrics="0.0.0.0:0")
        self.assertTrue(url.startswith("http://0.0.0.0:"), url)
        self.scrape(url.replace("0.0.0.0", "127.0.0.1"))

    def test_workers_add_up(self):
        px, url = self.start("--workers", "2")
        clients = 8
        errors = []

        def one(user):
            try:
                m = imaplib.IMAP4("127.0.0.1", px.port)
                m.login(user, PASSWORD)
                m.select("INBOX")
                m.fetch("1", "(FLAGS)")
                idle_and_done(m)
                m.logout()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(("alice", "bob")[i % 2],))
                   for i in range(clients)]
        for t in threads:
            t.start()
        # scrapes while the loops work: each must be whole and valid
        while any(t.is_alive() for t in threads):
            self.scrape(url)
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        wait_for(lambda: get(self.scrape(url), "imaptap_sessions_open", route="default") == 0,
                 "every session to close")
        s = self.scrape(url)
        self.assertEqual(get(s, "imaptap_sessions_total", route="default"), clients)
        for cmd in ("LOGIN", "SELECT", "FETCH", "IDLE", "LOGOUT"):
            self.assertEqual(get(s, "imaptap_command_duration_seconds_count", command=cmd),
                             clients, cmd)
        self.assertEqual(get(s, "imaptap_idle_done_to_ok_seconds_count"), clients)

    def test_config_file(self):
        conf = os.path.join(TMP, "metrics.conf")
        with open(conf, "w") as f:
            f.write("metrics = 127.0.0.1:0\nquiet = true\n")
        px = self.start_proxy(DC.port, extra_args=["--config", conf])
        wait_for(lambda: "metrics on http://127.0.0.1:" in px.stderr_text(), "the metrics line")
        port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", px.stderr_text()).group(1)
        m = imaplib.IMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        s = self.scrape("http://127.0.0.1:%s/metrics" % port)
        self.assertEqual(get(s, "imaptap_sessions_open", route="default"), 1)
        m.logout()


if __name__ == "__main__":
    main()
