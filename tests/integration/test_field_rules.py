#!/usr/bin/env python3
"""The rules from the field (docs/rules.md), each reproduced by the bug
behind it: a scripted server or client over real sockets, through the
proxy with --pcap and --events. Every test checks the timeline row and the
event, then reads the pcap back with `imaptap analyze` and checks that it
reaches the same verdict.

    python3 tests/integration/test_field_rules.py [--imaptap build/imaptap] [-v]
"""

import os
import ssl
import sys
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from imaptap import ProxyTestCase, check_binary, main  # noqa: E402
from scripted import RuleScenarios  # noqa: E402


def setUpModule():
    check_binary()


def greeted(peer):
    peer.send(b"* OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] field server\r\n")


def logout(server):
    """The server side of a LOGOUT, after whatever came before."""
    server.until(b"z9 LOGOUT")
    server.send(b"* BYE bye\r\nz9 OK done\r\n")


def client_logout(client):
    client.send(b"z9 LOGOUT\r\n")
    client.read_all()


class FieldRulesTest(RuleScenarios, ProxyTestCase, unittest.TestCase):
    def offline_finding(self, rule, tag, extra=()):
        """analyze's first unresolved finding of rule for tag."""
        found = [a for a in self.analyze(extra) if a["rule"] == rule and a.get("tag") == tag
                 and not a.get("resolved") and not a.get("never_resolved")]
        self.assertTrue(found, "analyze did not report %s %s" % (rule, tag))
        return found[0]

    # -- IDLE ------------------------------------------------------------

    def test_naive_client_expects_plus_next(self):
        """Untagged data between IDLE (or a synchronising literal) and its
        +: legal, but a client that reads one line and expects the + hangs
        (IMAP-NOTES 9: untagged data may come at any time)."""
        def server(p):
            greeted(p)
            p.line()                                    # a1 IDLE
            p.send(b"* 5 EXISTS\r\n")
            p.send(b"+ idling\r\n")
            p.line()                                    # DONE
            p.send(b"a1 OK IDLE done\r\n")
            p.line()                                    # a2 APPEND {5}
            p.send(b"* 6 EXISTS\r\n+ go ahead\r\n")
            p.exactly(7)
            p.send(b"a2 OK appended\r\n")
            logout(p)

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            self.assertEqual(c.line(), b"* 5 EXISTS\r\n")   # a naive client stops here
            c.until(b"+ ")
            c.send(b"DONE\r\n")
            c.until(b"a1 ")
            c.send(b"a2 APPEND INBOX {5}\r\n")
            c.until(b"+ ")
            c.send(b"hello\r\n")
            c.until(b"a2 ")
            client_logout(c)

        px, an = self.scenario(server, client)
        idle = self.assertFired(px, an, "untagged-before-continuation", "a1",
                                "untagged EXISTS before the + to IDLE a1")
        self.assertEqual(idle["severity"], "info")
        self.assertFired(px, an, "untagged-before-continuation", "a2",
                         "untagged EXISTS before the + to the synchronising literal of a2")
        self.assertOnly(an, "untagged-before-continuation")
        self.assertEqual(self.offline_finding("untagged-before-continuation", "a2")["detail"],
                         [a for a in an if a.get("tag") == "a2"][0]["detail"])

    def test_outlook_continuation_after_idle_completion(self):
        """Exchange answered IDLE with its tagged OK and then the +
        (php-imap #258): IDLE is over before it began, the + is for
        nothing, and the client's DONE meets a BAD."""
        def server(p):
            greeted(p)
            p.line()                                    # TAG4 IDLE
            p.send(b"TAG4 OK IDLE completed.\r\n+ IDLE accepted, awaiting DONE command.\r\n")
            p.line()                                    # DONE
            p.send(b"DONE BAD Command Error. 12\r\n")
            logout(p)

        def client(c):
            c.line()
            c.send(b"TAG4 IDLE\r\n")
            c.until(b"+ ")
            c.send(b"DONE\r\n")
            c.until(b"DONE BAD")
            client_logout(c)

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "completion-before-done", "TAG4",
                         "the server ended IDLE TAG4 before the client sent DONE")
        self.assertFired(px, an, "unexpected-continuation", words="no command waits for one")
        self.assertFired(px, an, "stray-done", words="DONE sent while no IDLE is active")
        # the OK came before the server ever sent the + IDLE waits for
        self.assertFired(px, an, "tagged-ok-before-continuation", "TAG4",
                         "TAG4 IDLE completed OK before any +")
        # the server's "DONE BAD" answers the stray DONE: no unknown tag
        self.assertOnly(an, "completion-before-done", "unexpected-continuation", "stray-done",
                        "tagged-ok-before-continuation")

    def test_client_sends_done_after_server_ended_idle(self):
        """The server ends IDLE on its own (a timeout) while the client's
        DONE is on its way: the DONE arrives with no IDLE active, and the
        server reads it as a command tagged DONE."""
        def server(p):
            greeted(p)
            p.line()                                    # a1 IDLE
            p.send(b"+ idling\r\n")
            p.send(b"a1 OK IDLE timed out\r\n")
            p.line()                                    # DONE
            p.send(b"DONE BAD Error in IMAP command received by server.\r\n")
            logout(p)

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.until(b"+ ")
            c.until(b"a1 ")
            c.send(b"DONE\r\n")                         # sent as the OK crossed it
            c.until(b"DONE BAD")
            client_logout(c)

        px, an = self.scenario(server, client)
        self.assertFired(px, an, "completion-before-done", "a1")
        stray = self.assertFired(px, an, "stray-done", tag="",
                                 words="DONE sent while no IDLE is active")
        self.assertEqual(stray["severity"], "warning")
        self.assertOnly(an, "completion-before-done", "stray-done")

    def test_silently_dead_idle_connection(self):
        """GMX and Yandex drop idle connections after 6-15 minutes without a
        BYE (imapclient #234); a NAT may do the same. The server's stream
        goes quiet during IDLE: no keepalive, nothing. The client gives up
        and closes with IDLE unanswered."""
        def server(p):
            greeted(p)
            p.line()                                    # a1 IDLE
            p.send(b"+ idling\r\n")
            p.read_all()                                # nothing more, ever

        def client(c):
            c.line()
            c.send(b"a1 IDLE\r\n")
            c.until(b"+ ")
            # the client's own keepalive timer, much shorter here
            self.px.wait_for_row(lambda r: r["text"].startswith("keepalive-gap"), timeout=10)

        px, an = self.scenario(server, client, ["--keepalive-gap", "1"])
        gap = self.assertFired(px, an, "keepalive-gap", "a1", "no byte from the server for 1.")
        self.assertGreaterEqual(gap["waited_us"], 1000000)
        self.assertFired(px, an, "pending-at-eof", "a1",
                         "the connection ended with 1 command(s) unanswered: a1 IDLE")
        self.assertOnly(an, "keepalive-gap", "pending-at-eof")
        offline = self.offline_finding("keepalive-gap", "a1", ["--keepalive-gap", "1"])
        self.assertIn("no byte from the server for 1.", offline["detail"])

    def test_server_accepts_and_never_greets(self):
        """A server whose listener still accepts while the process behind it
        hangs (an overloaded or wedged imap-login, a load balancer with no
        healthy backend): TCP connects, no greeting ever comes, and the
        client waits in silence. Then the greeting comes after all."""
        def server(p):
            self.px.wait_for_row(lambda r: r["text"].startswith("greeting-stall"), timeout=10)
            greeted(p)
            logout(p)

        def client(c):
            c.line()                                    # the greeting, late
            client_logout(c)

        px, an = self.scenario(server, client, ["--stall", "1"])
        stall = self.assertFired(px, an, "greeting-stall", "",
                                 "the server accepted the connection 1.")
        self.assertIn("and has sent no greeting; the client waits for it", stall["detail"])
        resolved = [a for a in an if a["rule"] == "greeting-stall" and a.get("resolved")]
        self.assertEqual(len(resolved), 1, an)
        self.assertIn("the server spoke first", resolved[0]["detail"])
        self.assertOnly(an, "greeting-stall")

    # -- connections cut short ----------------------------------------------

    def test_reconnect_after_literal_cut_off(self):
        """A server that drops the connection in the middle of an APPEND's
        literal (a size or time limit, a restart): the client reconnects
        and tries again. The first session must say whose literal was cut,
        for which command, and how much of it never came."""
        message = b"Subject: cut\r\n\r\n" + b"x" * 1984

        def cut_server(p):
            greeted(p)
            p.line()                                    # a1 APPEND {2000}
            p.send(b"+ go ahead\r\n")
            p.exactly(500)                              # then the connection drops

        def whole_server(p):
            greeted(p)
            p.line()
            p.send(b"+ go ahead\r\n")
            p.exactly(len(message) + 2)
            p.send(b"a1 OK [APPENDUID 1 1] appended\r\n")
            logout(p)

        def cut_client(c):
            c.line()
            c.send(b"a1 APPEND INBOX (\\Seen) {2000}\r\n")
            c.until(b"+ ")
            c.send(message[:500])
            self.assertEqual(c.read_all(), b"")             # closed on it

        def retry_client(c):
            c.line()
            c.send(b"a1 APPEND INBOX (\\Seen) {2000}\r\n")
            c.until(b"+ ")
            c.send(message + b"\r\n")
            c.until(b"a1 ")
            client_logout(c)

        px, an = self.scenario([cut_server, whole_server], [cut_client, retry_client])
        want = ("the connection ended inside the client's {2000} literal of a1 APPEND: 1500 "
                "of its 2000 byte(s) never came; 1 command(s) unanswered: a1 APPEND")
        live = self.assertFired(px, an, "pending-at-eof", "a1", session=1)
        self.assertEqual(live["detail"], want)
        self.assertEqual([a for a in an if a["session"] == 2], [], "the retry is clean")
        self.assertEqual(self.offline_finding("pending-at-eof", "a1")["detail"], want)

    def test_server_stops_inside_fetch_literal(self):
        """A server that stops in the middle of a FETCH body and later
        drops the connection: command-stall says the server stopped
        mid-response, inside the literal, and pending-at-eof says how much
        of it never came."""
        def server(p):
            greeted(p)
            p.line()                                    # a1 UID FETCH
            p.send(b"* 1 FETCH (UID 7 BODY[] {1000}\r\n" + b"y" * 300)
            self.px.wait_for_row(lambda r: r["text"].startswith("command-stall"), timeout=10)

        def client(c):
            c.line()
            c.send(b"a1 UID FETCH 7 BODY.PEEK[]\r\n")
            c.read_all()

        px, an = self.scenario(server, client, ["--stall", "1"])
        self.assertFired(px, an, "command-stall", "a1",
                         "the server stopped mid-response, inside a {1000} literal with 700 of "
                         "its bytes still to come")
        want = ("the connection ended inside the server's {1000} literal of * FETCH: 700 of "
                "its 1000 byte(s) never came; 1 command(s) unanswered: a1 UID FETCH")
        self.assertEqual(self.assertFired(px, an, "pending-at-eof", "a1")["detail"], want)
        self.assertEqual(self.offline_finding("pending-at-eof", "a1", ["--stall", "1"])["detail"],
                         want)
        stall = self.offline_finding("command-stall", "a1", ["--stall", "1"])
        self.assertIn("the server stopped mid-response, inside a {1000} literal", stall["detail"])

    # -- the stream's layers -------------------------------------------------

    def test_starttls_command_injection_cve_2011_0411_class(self):
        """A client (or a man in the middle) sends a command in the same
        packet as STARTTLS; a vulnerable server runs it as if it came over
        TLS (Postfix CVE-2011-0411, Cyrus CVE-2011-1926). The proxy drops
        those bytes and says so; they never reach the server or the pcap."""
        ca = os.path.join(self.scenario_tmp, "ca-%d" % time.monotonic_ns())
        got = []

        def server(p):
            greeted(p)
            got.append(p.line())                        # the first line after TLS
            p.send(b"a3 OK done\r\n")
            logout(p)

        def client(c):
            c.line()
            c.send(b"a1 STARTTLS\r\na2 LOGIN mallory injected\r\n")
            self.assertTrue(c.line().startswith(b"a1 OK"))
            ctx = ssl.create_default_context(cafile=os.path.join(ca, "ca.crt"))
            c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
            c.send(b"a3 NOOP\r\n")
            c.until(b"a3 ")
            client_logout(c)

        px, an = self.scenario(server, client, proxy_args=["--client-tls", "starttls",
                                                           "--ca", ca], offline=False)
        self.assertEqual(got, [b"a3 NOOP\r\n"], "the injected command reached the server")
        self.assertFired(px, an, "starttls-trailing-data",
                         words="27 byte(s) from the client after STARTTLS and before TLS; "
                               "dropped, never passed on")
        self.assertOnly(an, "starttls-trailing-data")
        # The pcap holds the conversation the server had: STARTTLS, the
        # answer, then a3 over TLS, never the dropped bytes; analyze finds
        # nothing wrong in it (docs/rules.md says why).
        with open(self.pcap, "rb") as f:
            pcap = f.read()
        self.assertNotIn(b"mallory", pcap)
        self.assertIn(b"a1 STARTTLS\r\n", pcap)
        self.assertIn(b"a3 NOOP\r\n", pcap)
        self.assertEqual(self.analyze(), [])

    def test_zlib_header_instead_of_raw_deflate(self):
        """RFC 4978 wants raw DEFLATE; a client built on zlib's defaults
        sends a zlib stream (78 9c ...) instead, which no server inflates.
        The pcap keeps that direction as received, so analyze tells the
        same."""
        def server(p):
            greeted(p)
            p.line()                                    # z1 COMPRESS DEFLATE
            p.send(b"z1 OK DEFLATE active\r\n")
            raw = p.sock.recv(4096)
            try:
                zlib.decompressobj(-15).decompress(raw)
            except zlib.error:
                out = zlib.compressobj(6, zlib.DEFLATED, -15)
                p.send(out.compress(b"* BYE invalid compressed data\r\n")
                       + out.flush(zlib.Z_SYNC_FLUSH))

        def client(c):
            c.line()
            c.send(b"z1 COMPRESS DEFLATE\r\n")
            c.until(b"z1 OK")
            wrong = zlib.compressobj()                  # zlib header, wbits 15
            c.send(wrong.compress(b"z2 NOOP\r\n") + wrong.flush(zlib.Z_SYNC_FLUSH))
            c.read_all()

        px, an = self.scenario(server, client)
        live = self.assertFired(px, an, "compress-stream-error",
                                words="the client's stream after COMPRESS DEFLATE does not "
                                      "inflate at byte ")
        # and the BYE it sent with no LOGOUT is said, with its text
        self.assertFired(px, an, "server-bye", words="invalid compressed data")
        self.assertOnly(an, "compress-stream-error", "server-bye")
        offline = [a for a in self.analyze() if a["rule"] == "compress-stream-error"]
        self.assertEqual([a["detail"] for a in offline], [live["detail"]])
        # the server's own stream inflated fine: its BYE is on the timeline
        self.assertTrue([r for r in px.timeline() if r["text"].startswith("* BYE invalid")])


if __name__ == "__main__":
    main()
