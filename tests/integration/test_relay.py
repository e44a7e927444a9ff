#!/usr/bin/env python3
"""The plain relay against a real Dovecot and real clients.

    python3 tests/integration/test_relay.py [--imaptap build/imaptap] [-v]

Dovecot's rawlog records what Dovecot itself received and sent after login:
it is the independent oracle for byte-exactness.
"""

import base64
import hashlib
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from clients import RawIMAP, RecordingIMAP4, appenduid, make_message  # noqa: E402
from imaptap import (ProxyTestCase, check_binary, completion_of,  # noqa: E402
                     main, sanitizer_env)
from imaptap import module_dovecot  # noqa: E402

PASSWORD = "S3cr3t-pa55w0rd!"
BOB_PASSWORD = "b0b-Pa55-4921"
USERS = {"alice": PASSWORD, "bob": BOB_PASSWORD}
MIB = 1024 * 1024

DC = None


def setUpModule():
    global DC
    check_binary()
    DC = module_dovecot(users=USERS, rawlog=True)



def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BytesAssertions:
    def assertBytesEqual(self, got, want, what):
        if got == want:
            return
        i = first_diff(got, want)
        self.fail("%s differ: got %d bytes, want %d; first difference at "
                  "offset %d: got %r, want %r"
                  % (what, len(got), len(want), i, got[max(0, i - 40):i + 40],
                     want[max(0, i - 40):i + 40]))


def rows_of(px, session=None, direction=None):
    return [r for r in px.timeline()
            if (session is None or r["session"] == session)
            and (direction is None or r["dir"] == direction)]


def wait_close_row(px, session, timeout=5):
    return px.wait_for_row(lambda r: r["session"] == session and r["dir"] == "--"
                           and r["text"].startswith("close"), timeout)


def ts_seconds(ts):
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


class RelayTest(ProxyTestCase, BytesAssertions, unittest.TestCase):

    def test_session_is_byte_exact_per_dovecot_rawlog(self):
        """LOGIN, SELECT, APPEND 1 MiB (synchronising literal), FETCH it
        back, IDLE/DONE, LOGOUT: what Dovecot received after login is
        exactly what the client sent, and what the client received from the
        LOGIN response on is exactly what Dovecot sent."""
        px = self.start_proxy(DC.port)
        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        msg = make_message(MIB, "relay-exact")
        uid = appenduid(m.append("INBOX", None, None, msg))
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertTrue(data[0][0].endswith(b"BODY[] {%d}" % MIB), data[0][0])
        self.assertBytesEqual(data[0][1], msg, "fetched message and appended "
                              "message")
        lines = m.idle_done(b"I001", wait=0.2)
        self.assertTrue(lines[-1].startswith(b"I001 OK"), lines)
        lines = m.logout_to_eof()
        self.assertTrue(lines[0].startswith(b"* BYE"), lines)
        self.assertTrue(lines[-1].startswith(b"L999 OK"), lines)
        sent, received = m.after_login()
        self.assertIn(b" APPEND INBOX {%d}\r\n" % MIB, sent)

        first_line = sent[:sent.index(b"\r\n") + 2]
        last_line = received[received.rindex(b"\r\n", 0, len(received) - 2) + 2:]
        sess = DC.wait_rawlog_session(
            "alice", lambda s: s["in"].startswith(first_line)
            and s["out"].endswith(last_line))
        self.assertIn(b" {%d}\r\n" % MIB + msg + b"\r\n", sess["in"])
        self.assertBytesEqual(sess["in"], sent,
                              "Dovecot rawlog .in and bytes the client sent")
        self.assertIn(b"BODY[] {%d}\r\n" % MIB + msg + b")\r\n", sess["out"])
        self.assertBytesEqual(sess["out"], received,
                              "Dovecot rawlog .out and bytes the client got")

    def test_timeline_rows(self):
        px = self.start_proxy(DC.port)
        m = RecordingIMAP4("127.0.0.1", px.port)
        cport = m.local_port
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        msg = make_message(MIB, "timeline")
        uid = appenduid(m.append("INBOX", None, None, msg))
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        self.assertEqual(data[0][1], msg)
        m.idle_done(b"I001", wait=0.3)
        m.logout()
        wait_close_row(px, 1)
        text = px.stderr_text()
        rows = px.timeline()
        self.assertTrue(rows, "no timeline rows on stderr:\n" + text)

        first = text.splitlines()[0]
        self.assertEqual(first, "imaptap: listening on 127.0.0.1:%d (plain), upstream "
                         "127.0.0.1:%d (plain)" % (px.port, DC.port))

        self.assertEqual({r["session"] for r in rows}, {1})
        stamps = [ts_seconds(r["ts"]) for r in rows]
        for k in range(1, len(stamps)):
            if stamps[k] < stamps[k - 1] - 43200:     # past midnight
                stamps[k:] = [t + 86400 for t in stamps[k:]]
        self.assertEqual(stamps, sorted(stamps), "timestamps go backwards")

        self.assertEqual(rows[0]["dir"], "--")
        # Anything after the two addresses (e.g. the TLS mode) is extra.
        self.assertRegex(rows[0]["text"], r"^open 127\.0\.0\.1:%d -> "
                         r"127\.0\.0\.1:%d( .*)?$" % (cport, DC.port))
        self.assertEqual(rows[1]["dir"], "S<")
        self.assertTrue(rows[1]["text"].startswith("* OK "), rows[1])

        def find(direction, pred, start=0):
            for i in range(start, len(rows)):
                if rows[i]["dir"] == direction and pred(rows[i]["text"]):
                    return i
            self.fail("no %s row matching; rows:\n%s"
                      % (direction, "\n".join(r["line"] for r in rows[:80])))

        def completion(tag, cmd, start):
            i = find("S<", lambda t: t.startswith(tag + " OK "), start)
            c = completion_of(rows[i]["text"])
            self.assertIsNotNone(c, "no latency on " + rows[i]["line"])
            self.assertEqual(c[0], cmd, rows[i]["line"])
            self.assertGreater(c[1], 0, rows[i]["line"])
            self.assertLess(c[1], 10, rows[i]["line"])
            return i, c

        # LOGIN (masked) and its completion with latency.
        i = find("C>", lambda t: re.match(r"^\S+ LOGIN alice ", t) is not None)
        login_tag = rows[i]["text"].split()[0]
        self.assertEqual(rows[i]["text"], '%s LOGIN alice "%s"'
                         % (login_tag, "*" * len(PASSWORD)))
        completion(login_tag, "LOGIN", i + 1)

        i = find("C>", lambda t: t.endswith(" SELECT INBOX"), i)
        completion(rows[i]["text"].split()[0], "SELECT", i + 1)

        # APPEND: the literal is announced, then summarised.
        i = find("C>", lambda t: t.endswith(" APPEND INBOX {%d}" % MIB), i)
        append_tag = rows[i]["text"].split()[0]
        j = find("C>", lambda t: True, i + 1)
        self.assertEqual(rows[j]["text"], "   {%d bytes}" % MIB, rows[j]["line"])
        find("S<", lambda t: t.startswith("+"), i + 1)
        completion(append_tag, "APPEND", j)

        # FETCH response: literal announced on the S< row, then summarised.
        i = find("S<", lambda t: t.endswith("BODY[] {%d}" % MIB), j)
        j = find("S<", lambda t: True, i + 1)
        self.assertEqual(rows[j]["text"], "   {%d bytes})" % MIB, rows[j]["line"])

        # IDLE ... DONE -> OK with both latencies.
        i = find("C>", lambda t: t == "I001 IDLE", j)
        find("S<", lambda t: t.startswith("+ "), i)
        d = find("C>", lambda t: t == "DONE", i)
        k, c = completion("I001", "IDLE", d)
        self.assertIsNotNone(c[2], "no DONE->OK on " + rows[k]["line"])
        self.assertGreaterEqual(c[1], 0.25, rows[k]["line"])
        self.assertLess(c[2], c[1], rows[k]["line"])
        self.assertTrue(
            re.search(r"  \(IDLE \d+(\.\d+)? (us|ms|s), DONE->OK "
                      r"\d+(\.\d+)? (us|ms|s)\)$", rows[k]["text"]),
            rows[k]["line"])

        i = find("C>", lambda t: t.endswith(" LOGOUT"), k)
        find("S<", lambda t: t.startswith("* BYE"), i)
        completion(rows[i]["text"].split()[0], "LOGOUT", i)

        close = [r for r in rows if r["dir"] == "--" and
                 r["text"].startswith("close")]
        self.assertEqual(len(close), 1, close)
        self.assertRegex(close[0]["text"], r"by (client|server)")

        # Message bodies are summarised, never printed.
        body_line = msg.split(b"\r\n")[7].decode()
        self.assertNotIn(body_line, text)
        self.assertNotIn(PASSWORD, text)

    def test_two_concurrent_sessions(self):
        px = self.start_proxy(DC.port)
        a = RecordingIMAP4("127.0.0.1", px.port)
        b = RecordingIMAP4("127.0.0.1", px.port)
        while b.tagpre == a.tagpre:
            b.shutdown()
            b = RecordingIMAP4("127.0.0.1", px.port)
        ports = {a.local_port: "a", b.local_port: "b"}
        # Interleaved, one command each in turn.
        self.assertEqual(a.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(b.login("bob", BOB_PASSWORD)[0], "OK")
        self.assertEqual(a.select("INBOX")[0], "OK")
        self.assertEqual(b.select("INBOX")[0], "OK")
        ma = make_message(200 * 1024, "alpha")
        mb = make_message(300 * 1024, "bravo")
        ua = appenduid(a.append("INBOX", None, None, ma))
        ub = appenduid(b.append("INBOX", None, None, mb))
        typ, db = b.uid("FETCH", str(ub), "(BODY.PEEK[])")
        self.assertEqual(db[0][1], mb)
        typ, da = a.uid("FETCH", str(ua), "(BODY.PEEK[])")
        self.assertEqual(da[0][1], ma)

        # Then both at full speed at the same time.
        errors = []

        def work(client, uid, msg, subject):
            try:
                for n in range(15):
                    typ, d = client.uid(
                        "FETCH", str(uid),
                        "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                    if typ != "OK" or subject not in d[0][1]:
                        errors.append("header %d: %r" % (n, d))
                    if n % 5 == 0:
                        typ, d = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
                        if d[0][1] != msg:
                            errors.append("body %d differs" % n)
                    if client.noop()[0] != "OK":
                        errors.append("noop %d" % n)
            except Exception as e:  # reported below
                errors.append(repr(e))

        ta = threading.Thread(target=work, args=(a, ua, ma, b"alpha"))
        tb = threading.Thread(target=work, args=(b, ub, mb, b"bravo"))
        ta.start()
        tb.start()
        ta.join(60)
        tb.join(60)
        self.assertFalse(ta.is_alive() or tb.is_alive(), "clients hung")
        self.assertEqual(errors, [])
        a.logout()
        b.logout()
        wait_close_row(px, 1)
        wait_close_row(px, 2)

        rows = px.timeline()
        self.assertEqual({r["session"] for r in rows}, {1, 2})
        who = {}
        for r in rows:
            if r["dir"] == "--" and r["text"].startswith("open "):
                m = re.match(r"open 127\.0\.0\.1:(\d+) -> "
                             r"127\.0\.0\.1:(\d+)( .*)?$", r["text"])
                self.assertTrue(m, r["line"])
                self.assertEqual(int(m.group(2)), DC.port)
                who[r["session"]] = ports[int(m.group(1))]
        self.assertEqual(sorted(who.values()), ["a", "b"])
        tagpre = {"a": a.tagpre.decode(), "b": b.tagpre.decode()}
        for r in rows:
            if r["dir"] == "C>" and re.match(r"^[A-P]{4}\d+ ", r["text"]):
                self.assertTrue(r["text"].startswith(tagpre[who[r["session"]]]),
                                "command in the wrong session: " + r["line"])
        for s, name in who.items():
            user = "alice" if name == "a" else "bob"
            self.assertTrue(any(r["session"] == s and r["dir"] == "C>" and
                                " LOGIN %s " % user in r["text"] for r in rows),
                            "no LOGIN %s in session #%d" % (user, s))
            self.assertTrue(any(r["session"] == s and r["dir"] == "S<" and
                                completion_of(r["text"]) and
                                completion_of(r["text"])[0] == "UID FETCH"
                                for r in rows))

    def test_odd_input_is_relayed_byte_exact(self):
        px = self.start_proxy(DC.port)
        c = RawIMAP(px.port)
        c.read_greeting()
        c.send(b"z1 LOGIN alice %s\r\n" % PASSWORD.encode())
        mark = len(c.received)
        self.assertTrue(c.read_until_tagged(b"z1")[-1].startswith(b"z1 OK"))
        odd = (b"\x80\xff\xfe garbage \x01\x7f\r\n"
               b"z2 NOOP\x00x\r\n"
               b"z3 NOOP\n"
               b"z4 NOOP\r\n"
               b"z5 " + b"A" * (100 * 1024) + b"\r\n"
               b"z6 NOOP\r\n"
               b"z7 LOGOUT\r\n")
        c.send(odd)
        c.read_until_eof(timeout=15)
        got = bytes(c.received[mark:])
        c.close()
        for tag in (b"z2", b"z3", b"z4", b"z5", b"z6", b"z7"):
            self.assertRegex(got, rb"(^|\n)" + tag + rb" (OK|BAD|NO) ")
        sess = DC.wait_rawlog_session(
            "alice", lambda s: s["in"].startswith(odd[:20])
            and s["in"].endswith(b"z7 LOGOUT\r\n")
            and s["out"].endswith(got[-30:]))
        self.assertBytesEqual(sess["in"], odd, "Dovecot rawlog .in and the "
                              "odd bytes sent")
        self.assertBytesEqual(sess["out"], got, "Dovecot rawlog .out and "
                              "bytes the client got")
        rows = rows_of(px, 1, "C>")
        texts = [r["text"] for r in rows]
        self.assertIn(r"\x80\xff\xfe garbage \x01\x7f", texts)
        self.assertIn(r"z2 NOOP\x00x", texts)
        self.assertTrue(px.alive())

        # The same garbage before login.
        c = RawIMAP(px.port)
        c.read_greeting()
        c.send(odd.replace(b"z7 LOGOUT", b"z8 LOGOUT"))
        # Dovecot answers BAD or hangs up (before login it drops the
        # connection on the long line); either way the close must come
        # through.
        try:
            c.read_until_eof(timeout=15)
        except ConnectionResetError:
            pass
        c.close()
        self.assertTrue(px.alive(), "imaptap exited on odd input")
        px.wait_for_row(lambda r: r["session"] == 2 and r["dir"] == "--"
                        and r["text"].startswith("close"))

        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertEqual(m.noop()[0], "OK")
        m.logout()

    def test_refused_sync_literal_keeps_framing(self):
        """Dovecot answers APPEND to a missing mailbox with NO instead of
        "+": no literal bytes follow, so the next client line is a command
        and the timeline must show it as one (not as literal data)."""
        px = self.start_proxy(DC.port)
        c = RawIMAP(px.port)
        c.read_greeting()
        c.command(b"r1", b"LOGIN alice " + PASSWORD.encode())
        resps, status = c.command(b"r2", b"APPEND no-such-box {4096}")
        self.assertEqual(status, "NO", resps)
        resps, status = c.command(b"r3", b"NOOP")
        self.assertEqual(status, "OK", resps)
        c.command(b"r4", b"LOGOUT")
        c.close()
        row = px.wait_for_row(lambda r: r["dir"] == "C>"
                              and r["text"] == "r3 NOOP")
        self.assertFalse(row["text"].startswith("   {"), row)
        done = px.wait_for_row(lambda r: r["dir"] == "S<"
                               and r["text"].startswith("r3 OK"))
        self.assertIn("(NOOP ", done["text"])
        self.assertFalse(any("{4096 bytes}" in r["text"] for r in rows_of(px, 1)))

    def test_half_close_loses_nothing(self):
        px = self.start_proxy(DC.port)
        c = RawIMAP(px.port)
        c.read_greeting()
        c.send(b"a1 LOGOUT\r\n")
        c.shutdown_write()
        got = c.read_until_eof(timeout=10)
        c.close()
        self.assertRegex(got, rb"\A\* BYE [^\r\n]*\r\na1 OK [^\r\n]*\r\n\Z")
        row = wait_close_row(px, 1)
        self.assertRegex(row["text"], r"by (client|server)")
        self.assertTrue(any(r["dir"] == "S<" and r["text"].startswith("a1 OK")
                            for r in rows_of(px, 1)))

    def test_backpressure_bounded_memory(self):
        """A client reading a 16 MiB FETCH slowly: the proxy must not
        buffer the message (its RSS stays far below the message size)."""
        size = 16 * MIB
        bound_kib = 8 * 1024
        # ASan keeps freed memory in a quarantine (256 MiB by default), so
        # RSS would grow with the bytes relayed even without buffering;
        # a small quarantine makes RSS follow what is actually held.
        px = self.start_proxy(DC.port,
                              env=sanitizer_env("quarantine_size_mb=1"))
        w = RecordingIMAP4("127.0.0.1", px.port)
        w.login("alice", PASSWORD)
        w.select("INBOX")
        small = make_message(256 * 1024, "warmup")
        uid = appenduid(w.append("INBOX", None, None, small))
        self.assertEqual(w.uid("FETCH", str(uid), "(BODY.PEEK[])")[1][0][1],
                         small)
        w.logout()
        time.sleep(0.3)
        baseline = px.rss_kib()

        msg = make_message(size, "backpressure")
        w = RecordingIMAP4("127.0.0.1", px.port)
        w.login("alice", PASSWORD)
        w.select("INBOX")
        uid = appenduid(w.append("INBOX", None, None, msg))
        w.logout()
        after_append = px.rss_kib()

        c = RawIMAP(px.port, rcvbuf=64 * 1024, timeout=60)
        c.read_greeting()
        self.assertEqual(c.command(b"b1", b"LOGIN alice " + PASSWORD.encode())[1],
                         "OK")
        self.assertEqual(c.command(b"b2", b"SELECT INBOX")[1], "OK")
        c.send(b"b3 UID FETCH %d (BODY.PEEK[])\r\n" % uid)
        peak = 0
        slow = bytearray()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            chunk = c.sock.recv(8192)
            self.assertTrue(chunk, "EOF during FETCH")
            slow += chunk
            peak = max(peak, px.rss_kib())
            time.sleep(0.02)
        c.buf[:0] = slow
        head = c.readline()
        self.assertRegex(head, rb"^\* \d+ FETCH \(.*BODY\[\] \{%d\}\r\n$" % size)
        h = hashlib.sha256()
        remaining = size
        while remaining:
            if not c.buf:
                c._fill()
            n = min(remaining, len(c.buf))
            h.update(bytes(c.buf[:n]))
            del c.buf[:n]
            remaining -= n
            peak = max(peak, px.rss_kib())
        self.assertEqual(h.hexdigest(), hashlib.sha256(msg).hexdigest(),
                         "FETCHed data differ from the appended message")
        tail = c.read_until_tagged(b"b3")
        self.assertTrue(tail[-1].startswith(b"b3 OK"), tail)
        c.command(b"b4", b"LOGOUT")
        c.close()
        report = ("RSS baseline %d KiB, after APPEND %d KiB, peak during "
                  "slow FETCH %d KiB (bound: baseline + %d KiB)"
                  % (baseline, after_append, peak, bound_kib))
        print("\n  " + report, file=sys.stderr)
        self.assertLess(after_append - baseline, bound_kib, report)
        self.assertLess(peak - baseline, bound_kib, report)


class RedactionTest(ProxyTestCase, unittest.TestCase):
    """The password never reaches imaptap's output; a same-length filler
    marks where it was."""

    def assert_hidden(self, px, secrets):
        text = px.stderr_text()
        raw = px.stderr_bytes() + px.stdout_bytes()
        for s in secrets:
            self.assertNotIn(s, text, "secret on stderr:\n" + text)
            self.assertNotIn(s.encode(), raw, "secret in imaptap's output")
        return text

    def login_raw(self, px, line, tag=b"a1", literal=None):
        c = RawIMAP(px.port)
        c.read_greeting()
        c.send(line + b"\r\n")
        if literal is not None:
            c.expect_continuation()
            c.send(literal + b"\r\n")
        resps = c.read_until_tagged(tag)
        self.assertTrue(resps[-1].startswith(tag + b" OK"), resps)
        c.command(b"a9", b"LOGOUT")
        c.close()
        wait_close_row(px, 1)

    def c_rows(self, px):
        return [r["text"] for r in rows_of(px, 1, "C>")]

    def test_login_atom(self):
        px = self.start_proxy(DC.port)
        self.login_raw(px, b"a1 LOGIN alice " + PASSWORD.encode())
        self.assert_hidden(px, [PASSWORD])
        self.assertIn("a1 LOGIN alice " + "*" * len(PASSWORD), self.c_rows(px))

    def test_login_quoted(self):
        px = self.start_proxy(DC.port)
        m = RecordingIMAP4("127.0.0.1", px.port)
        self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
        self.assertIn(b' LOGIN alice "%s"\r\n' % PASSWORD.encode(), m.sent)
        m.logout()
        wait_close_row(px, 1)
        self.assert_hidden(px, [PASSWORD])
        rows = self.c_rows(px)
        self.assertTrue(any(re.fullmatch(r'\S+ LOGIN alice "%s"'
                                         % re.escape("*" * len(PASSWORD)), t)
                            for t in rows), rows)

    def test_login_literal(self):
        px = self.start_proxy(DC.port)
        pw = PASSWORD.encode()
        self.login_raw(px, b"a1 LOGIN alice {%d}" % len(pw), literal=pw)
        self.assert_hidden(px, [PASSWORD])
        rows = self.c_rows(px)
        i = rows.index("a1 LOGIN alice {%d}" % len(pw))
        self.assertEqual(rows[i + 1], "   {%d bytes}" % len(pw))

    def test_login_nonsync_literal(self):
        px = self.start_proxy(DC.port)
        pw = PASSWORD.encode()
        self.login_raw(px, b"a1 LOGIN alice {%d+}\r\n%s" % (len(pw), pw))
        self.assert_hidden(px, [PASSWORD])
        rows = self.c_rows(px)
        i = rows.index("a1 LOGIN alice {%d+}" % len(pw))
        self.assertEqual(rows[i + 1], "   {%d bytes}" % len(pw))

    def test_authenticate_plain(self):
        px = self.start_proxy(DC.port)
        token = b"\0alice\0" + PASSWORD.encode()
        b64 = base64.b64encode(token).decode()
        m = RecordingIMAP4("127.0.0.1", px.port)
        typ, _ = m.authenticate("PLAIN", lambda _challenge: token)
        self.assertEqual(typ, "OK")
        self.assertIn(b64.encode() + b"\r\n", m.sent)
        m.logout()
        wait_close_row(px, 1)
        self.assert_hidden(px, [PASSWORD, b64])
        rows = self.c_rows(px)
        i = next(i for i, t in enumerate(rows)
                 if t.endswith(" AUTHENTICATE PLAIN"))
        self.assertEqual(rows[i + 1], "*" * len(b64))

    def test_authenticate_plain_sasl_ir(self):
        self.assertIn(b"SASL-IR", DC.greeting)
        px = self.start_proxy(DC.port)
        token = b"\0alice\0" + PASSWORD.encode()
        b64 = base64.b64encode(token)
        self.login_raw(px, b"a1 AUTHENTICATE PLAIN " + b64)
        self.assert_hidden(px, [PASSWORD, b64.decode()])
        self.assertIn("a1 AUTHENTICATE PLAIN " + "*" * len(b64),
                      self.c_rows(px))

    def test_no_redact_shows_password(self):
        """The control: with --no-redact the same login is shown as sent,
        so the absence checks above can tell."""
        px = self.start_proxy(DC.port, extra_args=["--no-redact"])
        self.login_raw(px, b"a1 LOGIN alice " + PASSWORD.encode())
        self.assertIn("a1 LOGIN alice " + PASSWORD, self.c_rows(px))


if __name__ == "__main__":
    main()
