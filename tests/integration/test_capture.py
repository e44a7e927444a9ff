#!/usr/bin/env python3
"""--pcap and --events against a real Dovecot, judged by Wireshark's tshark
and by Dovecot's rawlog: every command decoded, no checksum or TCP analysis
complaint, the streams byte for byte what crossed the client leg (with the
secrets masked to the same length), a SIGKILLed proxy's file still readable,
rotation, the JSONL event log.

    python3 tests/integration/test_capture.py [--imaptap build/imaptap] [-v]
"""

import base64
import json
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import tshark  # noqa: E402
from clients import RawIMAP, RecordingIMAP4, appenduid, make_message  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PASSWORD = "Pcap-S3cret-4711"
USERS = {"alice": PASSWORD}
MIB = 1024 * 1024
DC = None
TMP = None


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-capture-")
    DC = module_dovecot(users=USERS, rawlog=True)



def mask(data, secret):
    return data.replace(secret, b"*" * len(secret))


class CaptureTest(ProxyTestCase, unittest.TestCase):
    def outputs(self):
        d = tempfile.mkdtemp(dir=TMP)
        return os.path.join(d, "cap.pcap"), os.path.join(d, "events.jsonl")

    def closed(self, px, n=1):
        def enough(_row):
            return len([r for r in px.timeline() if r["dir"] == "--"
                        and r["text"].startswith("close")]) >= n
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close")
                        and enough(r))

    def assert_no_secret(self, path, *secrets):
        with open(path, "rb") as f:
            data = f.read()
        for s in secrets:
            self.assertNotIn(s, data, "%r found in %s" % (s, path))

    def test_pcap_decodes_and_matches_the_wire(self):
        pcap, events = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        m = RecordingIMAP4("127.0.0.1", px.port)
        port = m.local_port
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        msg = make_message(MIB, "pcap-exact")
        uid = appenduid(m.append("INBOX", None, None, msg))
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        self.assertEqual(data[0][1], msg)
        m.idle_done(b"I001", wait=0.2)
        lines = m.logout_to_eof()
        self.assertTrue(lines[-1].startswith(b"L999 OK"), lines)
        self.closed(px)
        self.assertEqual(oct(stat.S_IMODE(os.stat(pcap).st_mode)), "0o600")
        self.assertEqual(oct(stat.S_IMODE(os.stat(events).st_mode)), "0o600")

        # Wireshark: nothing to complain about, checksums validated ...
        self.assertEqual(tshark.problems(pcap), [])
        # ... and the judge notices damage: one payload byte flipped
        bad = pcap + ".bad"
        with open(pcap, "rb") as f:
            raw = bytearray(f.read())
        raw[raw.index(b"SELECT INBOX")] ^= 0x20
        with open(bad, "wb") as f:
            f.write(raw)
        self.assertNotEqual(tshark.problems(bad), [])

        # every command the client sent is an IMAP request to tshark
        # (Wireshark also calls each literal segment a request)
        sent_tags = {t.decode() for t in re.findall(rb"^([A-Z]+\d+|L999) ", bytes(m.sent), re.M)}
        requests = {r[0] for r in tshark.fields(pcap, "imap.request", "imap.request_tag")}
        self.assertGreaterEqual(len(sent_tags), 7)
        self.assertEqual(sorted(sent_tags - requests), [])
        self.assertIn("DONE", [r[0] for r in tshark.fields(pcap, "imap.request",
                                                             "imap.request")])

        # the streams are what crossed the client leg, password masked
        self.assertEqual(tshark.streams(pcap), [0])
        c, s, client, server = tshark.follow(pcap, 0)
        self.assertEqual(client, "127.0.0.1:%d" % port)
        self.assertEqual(server, "127.0.0.1:143")
        self.assertEqual(c, mask(bytes(m.sent), PASSWORD.encode()))
        self.assertEqual(s, bytes(m.received))
        # and, after login, what Dovecot itself logged
        sent, received = m.after_login()
        sess = DC.wait_rawlog_session("alice", lambda x: x["in"] == sent)
        self.assertTrue(c.endswith(sess["in"]))
        self.assertTrue(s.endswith(sess["out"]))
        self.assert_no_secret(pcap, PASSWORD.encode())
        self.assert_no_secret(events, PASSWORD.encode())

    def test_every_credential_form_is_masked(self):
        pcap, events = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        pw = PASSWORD.encode()
        plain = base64.b64encode(b"\0alice\0" + pw)
        # bearer tokens: Dovecot here refuses the mechanisms, the client
        # lines are masked all the same
        xoauth = base64.b64encode(b"user=alice\x01auth=Bearer " + pw + b"\x01\x01")
        oauthb = base64.b64encode(b"n,a=alice,\x01host=x\x01port=143\x01auth=Bearer "
                                  + pw + b"\x01\x01")
        forms = [
            [b"a1 LOGIN alice " + pw + b"\r\n"],
            [b"a1 LOGIN alice \"" + pw + b"\"\r\n"],
            [b"a1 LOGIN alice {%d}\r\n" % len(pw), pw + b"\r\n"],
            [b"a1 LOGIN alice {%d+}\r\n" % len(pw) + pw + b"\r\n"],
            [b"a1 AUTHENTICATE PLAIN\r\n", plain + b"\r\n"],
            [b"a1 AUTHENTICATE PLAIN " + plain + b"\r\n"],
            [b"a1 AUTHENTICATE LOGIN\r\n", base64.b64encode(b"alice") + b"\r\n",
             base64.b64encode(pw) + b"\r\n"],
            [b"a1 AUTHENTICATE XOAUTH2 " + xoauth + b"\r\n"],
            [b"a1 AUTHENTICATE OAUTHBEARER " + oauthb + b"\r\n"],
        ]
        refused = 2
        clients = []
        for parts in forms:
            c = RawIMAP(px.port)
            c.read_greeting()
            for i, part in enumerate(parts):
                c.send(part)
                if i + 1 < len(parts):
                    c.expect_continuation()
            c.read_until_tagged(b"a1")
            if len(clients) < len(forms) - refused:
                self.assertIn(b"a1 OK", bytes(c.received))
            c.send(b"a2 LOGOUT\r\n")
            c.read_until_eof()
            c.close()
            clients.append(c)
        self.closed(px, len(forms))
        secrets = (pw, plain, base64.b64encode(pw), xoauth, oauthb, xoauth[-24:], oauthb[-24:])
        self.assert_no_secret(pcap, *secrets)
        self.assert_no_secret(events, *secrets)
        self.assertEqual(tshark.problems(pcap), [])
        # lengths kept: each stream as long as what was sent
        for n, c in zip(tshark.streams(pcap), clients):
            got, _, _, _ = tshark.follow(pcap, n)
            self.assertEqual(len(got), len(c.sent))
            self.assertEqual(got.count(b"\r\n"), bytes(c.sent).count(b"\r\n"))

    def test_sigkill_leaves_a_readable_file(self):
        pcap, _ = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap])
        px.expect_signal_exit = True
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command(b"k1", b"LOGIN alice " + PASSWORD.encode())
        c.command(b"k2", b"SELECT INBOX")
        c.command(b"k3", b"NOOP")
        px.wait_for_row(lambda r: r["text"].startswith("k3 OK"))

        def responses():
            return [r[0] for r in tshark.fields(pcap, "imap.response", "imap.response_tag")]

        # the writer thread puts a batch into the file right after the relay
        # handed it over; what was still queued at a SIGKILL is lost
        deadline = time.monotonic() + 10
        while "k3" not in responses() and time.monotonic() < deadline:
            time.sleep(0.05)
        # killed in the middle of a session: the file must still read whole
        c.command(b"k4", b"NOOP")
        os.kill(px.pid, signal.SIGKILL)
        px.proc.wait(10)
        c.close()
        self.assertEqual(tshark.problems(pcap), [])
        tags = [r[0] for r in tshark.fields(pcap, "imap.request", "imap.request_tag")]
        self.assertEqual(tags[:3], ["k1", "k2", "k3"])
        self.assertIn("k3", responses())

    def test_rotation_keeps_each_file_whole(self):
        pcap, _ = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--pcap-max-size", "1"])
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        for i in range(3):
            appenduid(m.append("INBOX", None, None, make_message(MIB, "rot%d" % i)))
        m.logout_to_eof()
        self.closed(px)
        base = pcap[:-len(".pcap")]
        files = [pcap] + sorted((os.path.join(os.path.dirname(pcap), f)
                                 for f in os.listdir(os.path.dirname(pcap))
                                 if re.match(r"cap\.\d+\.pcap$", f)),
                                key=lambda p: int(p.split(".")[-2]))
        self.assertGreaterEqual(len(files), 3, files)
        self.assertEqual(files[1], base + ".1.pcap")
        whole = b""
        for f in files:
            self.assertLessEqual(os.path.getsize(f), MIB + 2 * 65600)
            self.assertEqual(oct(stat.S_IMODE(os.stat(f).st_mode)), "0o600")
            self.assertEqual(tshark.problems(f), [], f)
            c, _, _, _ = tshark.follow(f, 0)
            whole += c
        self.assertEqual(whole, mask(bytes(m.sent), PASSWORD.encode()))

    def test_event_log(self):
        pcap, events = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--events", events])
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        uid = appenduid(m.append("INBOX", None, None, make_message(100000, "ev")))
        m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        m.logout_to_eof()
        self.closed(px)
        with open(events) as f:
            recs = [json.loads(line) for line in f]
        self.assertEqual(recs[0]["kind"], "run-start")
        self.assertTrue(all(r["run"] == recs[0]["run"] for r in recs))
        kinds = [r["kind"] for r in recs[1:]]
        # what the run judges by, then the session
        self.assertEqual(kinds[0], "settings")
        self.assertEqual(recs[1]["done_stall_us"], 5000000)
        self.assertEqual(recs[1]["upstream"], "127.0.0.1:%d" % DC.port)
        self.assertEqual(kinds[1], "session-open")
        self.assertEqual(kinds[-1], "session-close")
        for r in recs:
            self.assertRegex(r["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertAlmostEqual(r["epoch"], time.mktime(time.strptime(
                r["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
                + int(r["ts"][20:26]) / 1e6, places=5)
            self.assertEqual(r["session"], 0 if r["kind"] in ("run-start", "settings") else 1)
        lines = [r for r in recs if r["kind"] == "line"]
        rows = [r for r in px.timeline() if r["dir"] in ("C>", "S<", "P<")]
        self.assertEqual(len(lines), len(rows))
        login = [r for r in lines if r.get("name") == "LOGIN"][0]
        self.assertEqual(login["text"], "%s LOGIN alice \"%s\"" % (login["tag"],
                                                                   "*" * len(PASSWORD)))
        self.assertTrue(login["masked"])
        comps = {r["command"]: r for r in recs if r["kind"] == "completion"}
        self.assertEqual(comps["APPEND"]["status"], "OK")
        self.assertGreater(comps["APPEND"]["latency_us"], 0)
        self.assertTrue(comps["FETCH"]["uid"])
        lits = [r for r in recs if r["kind"] == "literal"]
        self.assertEqual(sum(r["length"] for r in lits), 2 * 100000)
        close = recs[-1]
        self.assertEqual(close["by"], "server")
        self.assertEqual(close["bytes_c2s"], len(m.sent))
        self.assertEqual(close["bytes_s2c"], len(m.received))
        self.assert_no_secret(events, PASSWORD.encode())

    def test_events_to_stdout(self):
        px = self.start_proxy(DC.port, extra_args=["--events", "-", "--quiet"])
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command(b"s1", b"NOOP")
        c.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            out = px.stdout_bytes().decode()
            if '"session-close"' in out:
                break
            time.sleep(0.05)
        kinds = [json.loads(line)["kind"] for line in out.splitlines()]
        self.assertEqual(kinds[0], "run-start")
        self.assertEqual(kinds[1], "settings")
        self.assertEqual(kinds[2], "session-open")
        self.assertIn("completion", kinds)
        self.assertEqual(kinds[-1], "session-close")

    def test_pcap_to_stdout(self):
        """--pcap - writes the capture to standard output (a pipe into
        Wireshark); analyze reads it back; no file named '-' appears."""
        cwd = tempfile.mkdtemp(dir=TMP)
        px = self.start_proxy(DC.port, extra_args=["--pcap", "-"])
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command(b"s1", b"NOOP")
        c.close()
        self.closed(px)
        self.assertEqual(px.stop(), 0)
        data = px.stdout_bytes()
        self.assertEqual(data[:4], b"\xd4\xc3\xb2\xa1", "no pcap header on stdout")
        self.assertFalse(os.path.exists("-"), "a file named '-' instead of stdout")
        path = os.path.join(cwd, "from-stdout.pcap")
        with open(path, "wb") as f:
            f.write(data)
        r = run_imaptap(["analyze", path, "--color", "never"], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"#1 C> s1 NOOP")
        bad = run_imaptap(["proxy", "--upstream", "127.0.0.1:143", "--pcap", "-",
                           "--events", "-"])
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--pcap - takes standard output for itself", bad.stderr)

    def test_redact_bodies(self):
        pcap, events = self.outputs()
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--redact-bodies"])
        m = RecordingIMAP4("127.0.0.1", px.port)
        m.login("alice", PASSWORD)
        m.select("INBOX")
        msg = make_message(200000, "secret-body")
        uid = appenduid(m.append("INBOX", None, None, msg))
        m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        m.logout_to_eof()
        self.closed(px)
        body = msg.split(b"\r\n\r\n", 1)[1]
        self.assert_no_secret(pcap, body[:76], b"secret-body", PASSWORD.encode())
        c, s, _, _ = tshark.follow(pcap, 0)
        self.assertEqual(len(c), len(m.sent))
        self.assertEqual(len(s), len(m.received))
        self.assertEqual(c.count(b"\r\n"), bytes(m.sent).count(b"\r\n"))
        self.assertIn(b"APPEND INBOX {200000}", c)

    def test_ipv6_client(self):
        pcap, _ = self.outputs()
        px = self.start_proxy(DC.port, listen="[::1]:0", extra_args=["--pcap", pcap])
        s = socket.create_connection(("::1", px.port), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"v1 NOOP\r\nv2 LOGOUT\r\n")
        f.flush()
        while f.readline():
            pass
        f.close()
        s.close()
        self.closed(px)
        self.assertEqual(tshark.problems(pcap), [])
        rows = tshark.fields(pcap, "imap.request", "ipv6.src", "tcp.dstport", "imap.request_tag")
        self.assertEqual([r[2] for r in rows], ["v1", "v2"])
        self.assertEqual(rows[0][0], "::1")
        self.assertEqual(rows[0][1], "143")

    def test_output_errors(self):
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                         "--listen", "127.0.0.1:0", "--pcap", "/nonexistent/dir/x.pcap"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot open the pcap /nonexistent/dir/x.pcap: No such file", r.stderr)
        r = run_imaptap(["proxy", "--upstream", "127.0.0.1:%d" % DC.port,
                         "--listen", "127.0.0.1:0", "--events", "/nonexistent/e.jsonl"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot open the event log /nonexistent/e.jsonl", r.stderr)
        for args, words in [(["--pcap-max-size", "5"], "goes with --pcap"),
                            (["--pcap", "x", "--pcap-max-size", "0"], "MiB from 1")]:
            r = run_imaptap(["proxy", "--upstream", "127.0.0.1:143"] + args)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(words, r.stderr)


if __name__ == "__main__":
    main()
