#!/usr/bin/env python3
"""Anomaly rules over real sockets through the proxy. Scripted IMAP
servers and clients (behaviour no real server shows on demand: ignoring
DONE, flooding EXPUNGEs, answering unknown tags) make each rule fire; the
timeline and the JSONL log must name it, and a clean session must not.

    python3 tests/integration/test_rules.py [--imaptap build/imaptap] [-v]
"""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import pcapfile  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, parse_timeline, run_imaptap  # noqa: E402
from scripted import RuleScenarios  # noqa: E402


def setUpModule():
    check_binary()


def idle_held(hold, untagged=b"* 2 EXISTS\r\n"):
    """A server that takes IDLE and DONE, then holds the completion for hold
    seconds; and the client that idles, sends DONE, waits and logs out."""
    def server(p):
        p.send(b"* OK fake\r\n")
        p.line()                       # a1 IDLE
        p.send(b"+ idling\r\n")
        p.line()                       # DONE, ignored for a while
        time.sleep(hold)
        p.send(untagged + b"a1 OK IDLE terminated\r\n")
        p.until(b"a2 ")
        p.send(b"* BYE bye\r\na2 OK done\r\n")

    def client(c):
        c.line()
        c.send(b"a1 IDLE\r\n")
        c.line()
        c.send(b"DONE\r\n")
        c.until(b"a1 ")
        c.send(b"a2 LOGOUT\r\n")
        c.read_all()
    return server, client


class RulesTest(RuleScenarios, ProxyTestCase, unittest.TestCase):
    # -- IDLE -------------------------------------------------------------

    def test_done_stall_then_resolved(self):
        server, client = idle_held(2.2, b"* 2 EXISTS\r\n")

        px, an = self.scenario(server, client, ["--done-stall", "1"])
        a = self.assertFired(px, an, "done-stall", "a1", "DONE sent 1.")
        self.assertGreaterEqual(a["waited_us"], 1000000)
        self.assertEqual(a["threshold_us"], 1000000)
        res = [x for x in an if x["rule"] == "done-stall" and x.get("resolved")]
        self.assertEqual(len(res), 1, an)
        self.assertIn("1 untagged", res[0]["detail"])
        self.assertOnly(an, "done-stall")

    def test_done_before_continuation(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()                        # a1 IDLE
            time.sleep(0.4)                 # the + comes late
            p.send(b"+ idling\r\n")
            p.line()                        # DONE
            p.send(b"a1 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.send(b"DONE\r\n")             # before the +
            c.until(b"a1 ")

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "done-before-continuation", "a1")

    def test_command_during_idle_and_completion_before_done(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.send(b"+ idling\r\n")
            p.line()                        # a2 NOOP during IDLE
            p.send(b"a1 OK IDLE ended by the server\r\na2 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.line()
            c.send(b"a2 NOOP\r\n")
            c.until(b"a2 ")

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "command-during-idle", "a1", "a2 NOOP")
        self.assertFired(px, an, "completion-before-done", "a1")

    def test_stray_done_and_idle_too_long(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()                         # stray DONE
            p.send(b"* BAD what\r\n")
            p.line()                         # a1 IDLE
            p.send(b"+ idling\r\n")
            p.line()                         # DONE after the max
            p.send(b"a1 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"DONE\r\n")
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.line()
            time.sleep(1.6)
            c.send(b"DONE\r\n")
            c.until(b"a1 ")

        px, an = self.scenario(server, client, ["--idle-max", "1"])
        self.assertFired(px, an, "stray-done")
        self.assertFired(px, an, "idle-too-long", "a1")

    # -- commands ---------------------------------------------------------

    def test_command_stall(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()                        # a1 NOOP, answered late
            time.sleep(1.8)
            p.send(b"a1 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"a1 NOOP\r\n")
            c.until(b"a1 ")

        px, an = self.scenario(server, client, ["--stall", "1"])
        a = self.assertFired(px, an, "command-stall", "a1", "a1 NOOP sent 1.")
        self.assertIn("the server never started answering", a["detail"])
        self.assertTrue([x for x in an if x["rule"] == "command-stall" and x.get("resolved")])

    def test_literal_before_continuation(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()                          # APPEND ... {5}
            time.sleep(0.3)
            p.send(b"+ go ahead\r\n")
            p.line()                          # hello\r\n
            p.send(b"a1 OK appended\r\n")

        def client(c):
            c.line()
            c.send(b"a1 APPEND INBOX {5}\r\n")
            c.send(b"hello\r\n")              # before the +
            c.until(b"a1 ")

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "literal-before-continuation", words="{5}")

    def test_literal_plus_is_legal(self):
        def server(p):
            p.send(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] fake\r\n")
            p.line()
            p.line()
            p.send(b"a1 OK appended\r\n")

        def client(c):
            c.line()
            c.send(b"a1 APPEND INBOX {5+}\r\nhello\r\n")
            c.until(b"a1 ")

        px, an = self.scenario(server, client)
        self.assertEqual(an, [])

    def test_unknown_duplicate_and_out_of_order_tags(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.line()
            p.line()
            p.send(b"b2 OK done\r\nb1 OK done\r\nzz9 OK nobody asked\r\nb1 OK again\r\n")

        def client(c):
            c.line()
            c.send(b"b1 NOOP\r\nb2 NOOP\r\nb1 CHECK\r\n")
            c.until(b"b1 OK again")

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "duplicate-tag", "b1")
        ooo = self.assertFired(px, an, "out-of-order-completion", "b2")
        self.assertEqual(ooo["severity"], "info")
        self.assertFired(px, an, "unknown-tag", words="zz9")

    def test_expunge_during_fetch(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.send(b"* 1 FETCH (FLAGS ())\r\n* 2 EXPUNGE\r\n* 2 FETCH (FLAGS ())\r\na1 OK done\r\n")
            p.line()
            p.send(b"* 3 EXPUNGE\r\na2 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"a1 FETCH 1:3 (FLAGS)\r\n")
            c.until(b"a1 ")
            c.send(b"a2 UID FETCH 1:* (FLAGS)\r\n")   # legal: UID command
            c.until(b"a2 ")

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "expunge-during-fetch", "a1")
        self.assertEqual(len([a for a in an if a["rule"] == "expunge-during-fetch"]), 1, an)

    def test_unexpected_continuation_and_data_after_bye(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.send(b"+ nobody asked\r\na1 OK done\r\n")
            p.line()
            p.send(b"* BYE going\r\n* 5 EXISTS\r\n")

        def client(c):
            c.line()
            c.send(b"a1 NOOP\r\n")
            c.until(b"a1 ")
            c.send(b"a2 NOOP\r\n")
            c.read_all()

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "unexpected-continuation")
        self.assertFired(px, an, "data-after-bye", words="EXISTS")

    def test_parse_error_once_and_relay_exact(self):
        junk = b"\x00\x01\x02junk without tag\r\n\x00more\r\n"

        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.send(junk + b"a1 OK done\r\n")

        got = []

        def client(c):
            c.line()
            c.send(b"a1 NOOP\r\n")
            got.extend(c.until(b"a1 "))

        px, an = self.scenario(server, client)
        self.assertEqual(b"".join(got), junk + b"a1 OK done\r\n")
        self.assertFired(px, an, "parse-error")
        self.assertEqual(len([a for a in an if a["rule"] == "parse-error"]), 1, an)

    def test_pending_at_eof(self):
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()                      # a1 NOOP, never answered: close

        def client(c):
            c.line()
            c.send(b"a1 NOOP\r\n")
            c.read_all()

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "pending-at-eof", "a1")

    # -- a client that stops reading -----------------------------------------

    def test_client_not_reading_with_bounded_memory(self):
        """The server floods a million untagged EXPUNGEs while the client
        reads nothing: the proxy says so within the stall time, and its
        memory stays bounded by the backpressure."""
        stop = threading.Event()

        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            block = b"* 1 EXPUNGE\r\n" * 10000
            p.sock.settimeout(60)
            try:
                for _ in range(100):
                    if stop.is_set():
                        break
                    p.send(block)
            except OSError:
                pass

        rss = []

        def client(c):
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.line()
            c.send(b"a1 EXPUNGE\r\n")
            deadline = time.time() + 15
            while time.time() < deadline:
                if "client-not-reading" in self.px.stderr_text():
                    break
                time.sleep(0.1)
            rss.append(self.px.rss_kib())
            # stay stuck a while longer, so that the capture too shows a
            # window closed for longer than --stall
            time.sleep(1.5)
            stop.set()

        px, an = self.scenario(server, client, ["--stall", "1"])
        a = self.assertFired(px, an, "client-not-reading", words="KiB pending toward the client")
        self.assertGreaterEqual(a["waited_us"], 1000000)
        self.assertLess(rss[0], 64 * 1024, "proxy RSS %d KiB while the client is stuck" % rss[0])
        # the pcap shows the closed window: a zero window from the client
        zero = [p for p in pcapfile.tcp_packets(self.pcap) if p[4] == 0 and p[1] != 143
                and not p[3] & 0x02]
        self.assertTrue(zero, "no zero window from the client in the pcap")

    # -- findings open when the session ends ----------------------------------

    def test_stall_open_at_the_end_gets_a_closing_row(self):
        """The server never answers DONE and the client gives up: the
        done-stall gets a closing row, never resolved, live and offline."""
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.send(b"+ idling\r\n")
            p.line()
            p.read_all()

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.line()
            c.send(b"DONE\r\n")
            time.sleep(1.4)

        # a duration with its unit
        px, an = self.scenario(server, client, ["--done-stall", "1000ms"])
        self.assertFired(px, an, "done-stall", "a1", "DONE sent 1.000 s ago")
        end = [a for a in an if a.get("never_resolved")]
        self.assertEqual(len(end), 1, an)
        self.assertEqual((end[0]["rule"], end[0]["tag"]), ("done-stall", "a1"))
        self.assertRegex(end[0]["detail"], r"^a1 IDLE still had no tagged completion when the "
                                           r"session ended, 1\.\d{3} s later$")
        rows = [r for r in px.timeline() if r["dir"] == "!"
                and r["text"].startswith("done-stall a1 (never resolved): a1 IDLE")]
        self.assertEqual(len(rows), 1, px.timeline())
        # counted once in the summary, not twice
        summary = [r["text"] for r in px.timeline() if "anomalies:" in r["text"]]
        self.assertTrue(summary, px.timeline())
        self.assertRegex(summary[0], r"anomalies: done-stall 1(,|$)")

    def test_client_that_reads_and_leaves_at_once_is_resolved(self):
        """client-not-reading fires; then the client reads everything and
        leaves within one quarter-second look: the finding is resolved at
        the close, not left open."""
        def server(p):
            p.send(b"* OK fake\r\n")
            p.line()
            p.sock.settimeout(30)
            p.send(b"* 1 EXPUNGE\r\n" * 60000 + b"a1 OK done\r\n")
            p.read_all()

        def client(c):
            # a normal receive buffer: once it reads, the client takes all
            # that waits in well under a quarter second
            c.line()
            c.send(b"a1 EXPUNGE\r\n")
            deadline = time.time() + 15
            while time.time() < deadline and "client-not-reading" not in self.px.stderr_text():
                time.sleep(0.05)
            c.sock.settimeout(30)
            c.until(b"a1 OK")

        px, an = self.scenario(server, client, ["--stall", "1"])
        self.assertFired(px, an, "client-not-reading")
        res = [a for a in an if a["rule"] == "client-not-reading" and a.get("resolved")]
        self.assertEqual(len(res), 1, an)
        self.assertIn("the client reads again after", res[0]["detail"])
        self.assertFalse([a for a in an if a.get("never_resolved")], an)

    # -- views ----------------------------------------------------------------

    def test_anomalies_only_live_and_offline(self):
        """--anomalies-only: the anomaly, its resolution, the open, the
        summary and the close; no line rows. analyze shows the same rows."""
        server, client = idle_held(1.3, b"* 3 EXISTS\r\n")

        px, an = self.scenario(server, client, ["--done-stall", "1"],
                               proxy_args=["--anomalies-only"])
        live = [r for r in px.timeline() if r["session"] == 1]
        self.assertEqual(sorted({r["dir"] for r in live}), ["!", "--"], live)
        kinds = [r["text"].split(" ")[0] if r["dir"] == "--" else "!" for r in live]
        self.assertEqual(kinds, ["open", "!", "!", "summary:", "summary:", "close"], live)
        r = run_imaptap(["analyze", self.pcap, "--anomalies-only", "--color", "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        offline = [x for x in parse_timeline(r.stdout) if x["session"] == 1]
        self.assertEqual([(x["dir"], x["text"]) for x in offline if x["dir"] == "!"],
                         [(x["dir"], x["text"]) for x in live if x["dir"] == "!"])
        self.assertEqual(len(offline), len(live))
        both = run_imaptap(["analyze", self.pcap, "--anomalies-only", "--quiet"])
        self.assertEqual(both.returncode, 2)
        self.assertIn("choose one", both.stderr)

    def test_width_zero_shows_a_long_hostile_line_whole_and_escaped(self):
        """--width 0: a 45 KB line full of ESC bytes is one row, every byte
        of it shown, none of them raw."""
        long_line = b"* OK [ALERT] " + b"x\x1b[2J" * 9000 + b"end\r\n"

        def server(p):
            p.send(long_line)
            p.line()
            p.send(b"* BYE bye\r\na1 OK bye\r\n")

        def client(c):
            c.line()
            c.send(b"a1 LOGOUT\r\n")
            c.read_all()

        px, _ = self.scenario(server, client, proxy_args=["--width", "0"])
        err = px.stderr_text()
        self.assertNotIn("\x1b", err)
        row = [r for r in px.timeline() if r["text"].startswith("* OK [ALERT] x")][0]
        self.assertEqual(row["text"], "* OK [ALERT] " + "x\\x1b[2J" * 9000 + "end")

    def test_whole_capture_summary_counts_no_bad_and_injected(self):
        """Two sessions: NO and BAD answers are counted per command, the
        answer the proxy injected (--fault answer) is counted apart and
        kept out of the latencies; analyze ends with the whole capture."""
        def server(p):
            p.send(b"* OK fake\r\n")
            while True:
                ln = p.line()
                tag = ln.split(b" ")[0]
                if b"LOGOUT" in ln:
                    p.send(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                    return
                if b"LOGIN" in ln:
                    p.send(tag + (b" NO wrong\r\n" if b"bad" in ln else b" OK in\r\n"))
                elif b"XYZZY" in ln:
                    p.send(tag + b" BAD what\r\n")
                else:
                    p.send(tag + b" OK done\r\n")

        def client(user):
            def run(c):
                c.line()
                c.send(b"a1 LOGIN " + user + b" pw\r\n")
                c.until(b"a1 ")
                c.send(b"a2 SELECT INBOX\r\n")
                c.until(b"a2 ")
                c.send(b"a3 XYZZY\r\n")
                c.until(b"a3 ")
                c.send(b"a4 LOGOUT\r\n")
                c.read_all()
            return run

        px, an = self.scenario([server, server], [client(b"bad"), client(b"alice")],
                               proxy_args=["--fault", "answer:SELECT:NO,session=2"])
        summaries = [r["text"] for r in px.timeline() if r["text"].startswith("summary: LOGIN")]
        self.assertIn("LOGIN 1 (", summaries[0])
        self.assertRegex(summaries[0], r"LOGIN 1 \([^)]*; NO 1\)")
        self.assertRegex(summaries[0], r"XYZZY 1 \([^)]*; BAD 1\)")
        self.assertIn("SELECT (1 injected by the proxy)", summaries[1])
        r = run_imaptap(["analyze", self.pcap, "--color", "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        tail = r.stdout.splitlines()[-3:]
        self.assertEqual(tail[0], "== capture: 2 sessions; ended: 2 by the server (eof)")
        self.assertRegex(tail[1], r"^== commands: LOGIN 2 \(p50 [^;)]*; NO 1\), "
                                  r"SELECT 1 \([^;)]*; 1 injected by the proxy\), "
                                  r"XYZZY 2 \([^;)]*; BAD 2\), LOGOUT 2 \([^;)]*\)$")
        self.assertEqual(tail[2], "== anomalies: none")
        # the timeline's rows are still all there, the totals after them
        self.assertTrue(parse_timeline(r.stdout))

    # -- the settings a capture was made with --------------------------------

    def test_analyze_judges_by_the_recorded_settings_unless_told(self):
        """The pcap records the proxy's thresholds; analyze with no flags
        shows them first and judges by them; its own flag wins."""
        server, client = idle_held(1.6, b"")

        self.scenario(server, client, ["--done-stall", "1", "--keepalive-gap", "30"],
                      proxy_args=["--fault", "delay:c2s:1ms"])
        r = run_imaptap(["analyze", self.pcap, "--color", "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        first = r.stdout.splitlines()[0]
        self.assertRegex(first, r"^\d\d:\d\d:\d\d\.\d{6} -- settings: imaptap \S+ proxy, "
                                r"upstream 127\.0\.0\.1:\d+ \(plain\), client leg plain; "
                                r"rules: command-stall 10\.000 s, done-stall 1\.000 s, "
                                r"idle-max 1740\.000 s, keepalive-gap 30\.000 s; "
                                r"masking: credentials; faults: delay:c2s:1ms$")
        self.assertIn("! done-stall a1: DONE sent 1.000 s ago", r.stdout)
        # told otherwise: 3 s, which the server's 1.6 s never reached
        told = run_imaptap(["analyze", self.pcap, "--color", "never", "--done-stall", "3"],
                           timeout=60)
        self.assertEqual(told.returncode, 0, told.stderr)
        self.assertNotIn("done-stall", told.stdout.split("-- summary")[0].split("\n", 1)[1])
        self.assertIn("done-stall 1.000 s", told.stdout.splitlines()[0])

    # -- no false alarms ------------------------------------------------------

    def test_clean_pipelined_session_is_quiet(self):
        def server(p):
            p.send(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE UIDPLUS] fake\r\n")
            p.line()
            p.line()
            p.line()
            p.send(b"* 3 EXISTS\r\nc1 OK done\r\n* 1 FETCH (FLAGS (\\Seen))\r\nc2 OK done\r\n"
                   b"* 2 EXPUNGE\r\nc3 OK done\r\n")
            p.line()
            p.send(b"+ idling\r\n* 4 EXISTS\r\n")
            p.line()
            p.send(b"* 1 EXPUNGE\r\nc4 OK done\r\n")
            p.line()
            p.send(b"* BYE bye\r\nc5 OK done\r\n")

        def client(c):
            c.line()
            c.send(b"c1 NOOP\r\nc2 UID FETCH 1 (FLAGS)\r\nc3 UID EXPUNGE 2\r\n")
            c.until(b"c3 ")
            c.send(b"c4 IDLE\r\n")
            c.line()
            c.line()
            c.send(b"DONE\r\n")
            c.until(b"c4 ")
            c.send(b"c5 LOGOUT\r\n")
            c.read_all()

        px, an = self.scenario(server, client, ["--stall", "1", "--done-stall", "1"])
        self.assertEqual(an, [], px.stderr_tail(30))


if __name__ == "__main__":
    main()
