"""Scripted IMAP peers over real sockets, for behaviour no real server or
client shows on demand, and a test mixin that runs one through the proxy
with --events and --pcap and reads the verdicts back, live and offline.

    class T(RuleScenarios, ProxyTestCase, unittest.TestCase):
        def test_x(self):
            px, found = self.scenario(server_script, client_script, ["--stall", "1"])
            self.assertFired(px, found, "command-stall", "a1", "sent 1.")
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import time

from imaptap import run_imaptap


class Peer:
    """One side of a scripted conversation on a real socket."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(20)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("peer closed; have %r" % self.buf[-100:])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def until(self, prefix):
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(prefix):
                return lines

    def exactly(self, n):
        """n bytes, from what was read ahead first."""
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("peer closed after %d of %d bytes" % (len(self.buf), n))
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_all(self):
        self.sock.settimeout(10)
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ScriptedServer:
    """Accepts one connection per script, in order, and runs script(peer)
    on each in a thread: one after the other, or with concurrent each in
    its own thread as soon as it connects."""

    def __init__(self, *scripts, concurrent=False):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(len(scripts))
        self.port = self.srv.getsockname()[1]
        self.error = None
        self.concurrent = concurrent
        self.workers = []
        self.thread = threading.Thread(target=self._run, args=(scripts,), daemon=True)
        self.thread.start()

    def _serve(self, script, conn):
        peer = Peer(conn)
        try:
            script(peer)
        except Exception as e:  # reported by join()
            self.error = self.error or e
        finally:
            peer.close()

    def _run(self, scripts):
        try:
            for script in scripts:
                conn, _ = self.srv.accept()
                if self.concurrent:
                    t = threading.Thread(target=self._serve, args=(script, conn), daemon=True)
                    self.workers.append(t)
                    t.start()
                else:
                    self._serve(script, conn)
        except Exception as e:  # reported by join()
            self.error = self.error or e

    def join(self):
        self.thread.join(30)
        for t in self.workers:
            t.join(30)
        self.srv.close()
        if self.error is not None and not isinstance(self.error, (EOFError, OSError)):
            raise self.error


def read_anomalies(path):
    with open(path) as f:
        return [json.loads(line) for line in f if '"kind":"anomaly"' in line]


def wait_for_record(path, session, kind, timeout=10.0):
    """Waits until the event log at path holds a record of kind for session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # a record still being written
                    if r.get("session") == session and r.get("kind") == kind:
                        return r
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise AssertionError("no %s record for session %d in %s" % (kind, session, path))


class RuleScenarios:
    """Mixin for a ProxyTestCase: scripted peers through a proxy, and
    assertions on the anomalies it reports. Put it first among the bases."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.scenario_tmp = tempfile.mkdtemp(prefix="imaptap-scenario-")

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(cls.scenario_tmp, ignore_errors=True)
        super().tearDownClass()

    def scenario(self, server_scripts, client_scripts, extra=(), proxy_args=(), offline=True):
        """Runs scripted servers and clients (a script or a list of them,
        one per connection, in order) through a proxy with --events and
        --pcap; returns (proxy, anomaly events). extra goes to the proxy
        and to analyze, proxy_args to the proxy only. With offline, analyze
        of the pcap must name the same rules and tags."""
        if callable(server_scripts):
            server_scripts = [server_scripts]
        if callable(client_scripts):
            client_scripts = [client_scripts]
        d = tempfile.mkdtemp(dir=self.scenario_tmp)
        events = os.path.join(d, "events.jsonl")
        self.pcap = os.path.join(d, "session.pcap")
        self.events = events
        srv = ScriptedServer(*server_scripts)
        px = self.start_proxy(srv.port, extra_args=["--events", events, "--pcap", self.pcap]
                              + list(extra) + list(proxy_args))
        self.px = px    # for scripts that wait on the timeline
        for n, script in enumerate(client_scripts, 1):
            client = Peer(socket.create_connection(("127.0.0.1", px.port)))
            try:
                script(client)
            finally:
                client.close()
            px.wait_for_row(lambda r, n=n: r["session"] == n and r["dir"] == "--"
                            and r["text"].startswith("close"), timeout=15)
            # the timeline row comes first; the event log's record right after
            wait_for_record(events, n, "session-close")
        srv.join()
        found = read_anomalies(events)
        if offline:
            self.assertSameOffline(found, extra)
        return px, found

    def analyze(self, extra=()):
        """The anomaly events of `imaptap analyze` on the scenario's pcap."""
        events = self.pcap + ".jsonl"
        if os.path.exists(events):      # the event log is appended to
            os.unlink(events)
        r = run_imaptap(["analyze", self.pcap, "--quiet", "--events", events] + list(extra),
                        timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return read_anomalies(events)

    def assertSameOffline(self, live, extra):
        """analyze of the proxy's pcap with no flags at all judges by the
        settings the proxy recorded in it, and says what the proxy said,
        row for row: the same rules and tags, resolved or not, in the same
        order, at the same time (10 ms) and with the same wait. With extra
        (the proxy's thresholds given again) it names the same rules and
        tags. Returns the findings of the run with no flags."""
        offline = self.analyze()
        row = lambda a: (a["session"], a["rule"], a.get("tag", ""),  # noqa: E731
                         bool(a.get("resolved")), bool(a.get("never_resolved")))
        self.assertEqual([row(a) for a in offline], [row(a) for a in live],
                         "live and offline verdicts differ")
        # a rule that fires as time passes is stamped live when the loop's
        # timer runs, which a loaded machine (the suite runs two at once)
        # delays by a few ms; analyze stamps the due time itself
        for off, on in zip(offline, live):
            self.assertAlmostEqual(off["epoch"], on["epoch"], delta=0.010,
                                   msg="%s at different times live and offline" % (row(on),))
            self.assertAlmostEqual(off.get("waited_us", 0), on.get("waited_us", 0), delta=10000,
                                   msg="%s waited differently live and offline" % (row(on),))
        if extra:
            again = self.analyze(extra)
            self.assertEqual(sorted(set(map(row, again))), sorted(set(map(row, live))),
                             "live and offline verdicts differ with the proxy's flags given")
        return offline

    def assertFired(self, px, anomalies, rule, tag=None, words=None, session=None):
        """The first unresolved finding of rule (with that tag, in that
        session, when given); its detail must hold words. The timeline has
        a `!` row with the same detail."""
        found = [a for a in anomalies if a["rule"] == rule and not a.get("resolved")
                 and not a.get("never_resolved")
                 and (tag is None or a.get("tag", "") == tag)
                 and (session is None or a["session"] == session)]
        self.assertTrue(found, "%s (tag %r) did not fire; anomalies: %r\n%s"
                        % (rule, tag, anomalies, px.stderr_tail(30)))
        if words is not None:
            self.assertIn(words, found[0]["detail"])
        rows = [r for r in px.timeline() if r["dir"] == "!" and r["text"].startswith(rule)
                and r["text"].endswith(found[0]["detail"])
                and r["session"] == found[0]["session"]]
        self.assertTrue(rows, "no ! %s row ending in %r" % (rule, found[0]["detail"]))
        return found[0]

    def assertOnly(self, anomalies, *rules):
        self.assertEqual(sorted({a["rule"] for a in anomalies}), sorted(set(rules)),
                         anomalies)
