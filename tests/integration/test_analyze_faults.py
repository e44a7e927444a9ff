#!/usr/bin/env python3
"""`imaptap analyze` of a pcap written by `imaptap proxy --fault ... --pcap`:
the fault marks in it (UDP syslog datagrams) come out as the same `~` rows
and `fault` records the proxy wrote live, in the same sessions and in the
same places among the IMAP lines; any other UDP in a capture is ignored,
and a damaged mark is left out with a note. Real Dovecot, real client
(imaplib), real proxy.

    python3 tests/integration/test_analyze_faults.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import os
import shutil
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

import tshark  # noqa: E402
from clients import make_message  # noqa: E402
from imaptap import (ProxyTestCase, check_binary, main, parse_timeline,  # noqa: E402
                     run_imaptap)
from imaptap import module_dovecot, module_tmpdir, read_events  # noqa: E402
from pcapfile import checksum  # noqa: E402

PASSWORD = "marks-secret"
DC = None
TMP = None

# the faults of the main run: one on every session from its start, one
# answered command in session 1, a BYE inside a server literal in session 2
FAULTS = ["delay:s2c:20ms", "answer:SELECT:NO,session=1", "bye:in-literal:s2c,session=2"]
# rows whose order against the fault rows is compared (P< offline is S<:
# a pcap holds bytes, not who wrote them)
STREAM_DIRS = {"C>": "C>", "S<": "S<", "P<": "S<", "~": "~"}


def setUpModule():
    global DC, TMP
    check_binary()
    TMP = module_tmpdir("imaptap-analyze-faults-")
    DC = module_dovecot(users={"alice": PASSWORD, "bob": PASSWORD})


# ---- classic pcap records, read and written with struct ----------------

def read_pcap(path):
    """(file header, [(sec, usec, packet bytes)]) of a little-endian
    microsecond pcap, as imaptap writes them."""
    with open(path, "rb") as f:
        data = f.read()
    if struct.unpack_from("<I", data, 0)[0] != 0xA1B2C3D4:
        raise ValueError("%s: not a little-endian microsecond pcap" % path)
    records, off = [], 24
    while off + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, off)
        records.append((sec, usec, data[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return data[:24], records


def write_pcap(path, header, records):
    with open(path, "wb") as f:
        f.write(header)
        for sec, usec, pkt in records:
            f.write(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)))
            f.write(pkt)


def udp4_frame(src, dst, sport, dport, payload):
    """An Ethernet frame with an IPv4 UDP datagram, checksums right."""
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0x4000, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\x02\0\0\0\0\x09" + b"\x02\0\0\0\0\x08" + b"\x08\x00" + ip + udp


def udp4_parts(pkt):
    """(src, dst, sport, dport, payload) of an Ethernet IPv4 UDP frame, or
    None."""
    if len(pkt) < 42 or pkt[12:14] != b"\x08\x00" or pkt[23] != 17:
        return None
    ihl = (pkt[14] & 15) * 4
    sport, dport, length = struct.unpack_from("!HHH", pkt, 14 + ihl)
    return (pkt[26:30], pkt[30:34], sport, dport,
            pkt[14 + ihl + 8:14 + ihl + length])


def is_mark(pkt):
    parts = udp4_parts(pkt)
    return parts is not None and parts[2] == 514 and b" imaptap imaptap - fault - " in parts[4]


class AnalyzeFaultsTest(ProxyTestCase, unittest.TestCase):
    def proxy(self, *faults):
        """A proxy in front of Dovecot with the faults, an event log and a
        pcap in a fresh directory."""
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.events = os.path.join(self.dir, "events.jsonl")
        self.pcap = os.path.join(self.dir, "faults.pcap")
        args = ["--events", self.events, "--pcap", self.pcap]
        for f in faults:
            args += ["--fault", f]
        return self.start_proxy(DC.port, extra_args=args)

    def finish(self, px, sessions):
        """Waits for every session's close row, then stops the proxy so the
        pcap is complete."""
        for n in sessions:
            px.wait_for_row(lambda r, n=n: r["session"] == n and r["dir"] == "--"
                            and r["text"].startswith("close"), timeout=20)
        self.assertEqual(px.stop(), 0)
        return px.timeline()

    def analyze(self, pcap, *extra):
        """(timeline rows, event records, stderr) of imaptap analyze."""
        # a fresh file: the event log appends
        fd, events = tempfile.mkstemp(suffix=".jsonl", dir=self.dir)
        os.close(fd)
        r = run_imaptap(["analyze", pcap, "--events", events] + list(extra), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return parse_timeline(r.stdout), read_events(events), r.stderr

    def two_sessions(self, px):
        """Session 1 gets its SELECT answered NO by the proxy and stays open
        while session 2, from the same address, is cut by a BYE inside
        the server's literal."""
        one = imaplib.IMAP4("127.0.0.1", px.port)
        one.login("alice", PASSWORD)
        typ, data = one.select("INBOX")
        self.assertEqual(typ, "NO", data)
        self.assertIn(b"imaptap fault injected", data[0])
        one.append("INBOX", None, None, make_message(6000, tag="marks"))
        two = imaplib.IMAP4("127.0.0.1", px.port)
        two.login("alice", PASSWORD)
        typ, _ = two.select("INBOX")
        self.assertEqual(typ, "OK")
        with self.assertRaises((imaplib.IMAP4.abort, OSError, EOFError)):
            two.fetch("1", "(BODY.PEEK[])")
        two.sock.close()
        one.noop()
        one.logout()

    @staticmethod
    def fault_rows(rows):
        return [(r["ts"], r["session"], r["text"]) for r in rows if r["dir"] == "~"]

    @staticmethod
    def stream(rows, session):
        """The session's IMAP lines and fault rows in order, without the
        latency notes (the proxy's and the pcap's clocks agree, but the
        note is not what is compared here)."""
        out = []
        for r in rows:
            if r["session"] != session or r["dir"] not in STREAM_DIRS:
                continue
            text = r["text"]
            if r["dir"] != "~":
                text = text.split("  (", 1)[0]
            out.append((STREAM_DIRS[r["dir"]], text))
        return out

    @staticmethod
    def fault_records(events):
        return [e for e in events if e["kind"] == "fault"]

    def test_offline_fault_rows_and_records_are_the_live_ones(self):
        px = self.proxy(*FAULTS)
        self.two_sessions(px)
        live = self.finish(px, [1, 2])
        live_events = read_events(self.events)
        rows, events, stderr = self.analyze(self.pcap)

        expected = self.fault_rows(live)
        # the faults did act: both sessions, every phase the specs have
        texts = [t for _, _, t in expected]
        self.assertEqual(sorted({s for _, s, _ in expected}), [1, 2], expected)
        for want in ("fault delay s2c active", "fault answer s2c inject",
                     "fault bye s2c inject", "fault bye s2c close"):
            self.assertTrue(any(t.startswith(want) for t in texts), (want, texts))
        # offline: the same rows, same time, same session, same order
        self.assertEqual(self.fault_rows(rows), expected)
        for session in (1, 2):
            self.assertEqual(self.stream(rows, session), self.stream(live, session),
                             "session %d" % session)
        # the event log: the same fault records, field by field
        self.assertEqual(self.fault_records(events), self.fault_records(live_events))
        self.assertEqual(len(self.fault_records(events)), len(expected))
        self.assertNotIn("fault mark", stderr)

        # --session shows only that session's marks
        rows2, events2, _ = self.analyze(self.pcap, "--session", "2")
        self.assertEqual(self.fault_rows(rows2), [f for f in expected if f[1] == 2])
        self.assertEqual(self.fault_records(events2),
                         [e for e in self.fault_records(live_events) if e["session"] == 2])

        # a pcap written before marks named the client's port: found by the
        # addresses and the session number
        header, records = read_pcap(self.pcap)
        old = []
        for sec, usec, pkt in records:
            if is_mark(pkt):
                src, dst, sport, dport, payload = udp4_parts(pkt)
                before, after = payload.split(b" client=", 1)
                payload = before + b" " + after.split(b" ", 1)[1]
                pkt = udp4_frame(src, dst, sport, dport, payload)
            old.append((sec, usec, pkt))
        old_pcap = os.path.join(self.dir, "old-marks.pcap")
        write_pcap(old_pcap, header, old)
        rows3, events3, _ = self.analyze(old_pcap)
        self.assertEqual(self.fault_rows(rows3), expected)
        self.assertEqual(self.fault_records(events3), self.fault_records(live_events))

    def test_foreign_udp_is_ignored_and_tshark_still_decodes_imap(self):
        px = self.proxy()
        im = imaplib.IMAP4("127.0.0.1", px.port)
        im.login("bob", PASSWORD)
        im.select("INBOX")
        im.noop()
        im.logout()
        self.finish(px, [1])
        header, records = read_pcap(self.pcap)
        self.assertFalse(any(is_mark(p) for _, _, p in records))
        sec, usec, _ = records[len(records) // 2]
        lo = bytes([127, 0, 0, 1])
        foreign = [
            # another program's syslog, between the same two addresses
            udp4_frame(lo, lo, 514, 514,
                       b"<134>1 2024-05-01T10:00:00Z host app 42 - - hello from syslog"),
            # BSD syslog, and an imaptap-looking text that is not a mark
            udp4_frame(lo, lo, 40000, 514, b"<13>May  1 10:00:00 host imaptap: fault"),
            udp4_frame(lo, lo, 514, 514, b"<133>1 - imaptap imaptap - other - hi"),
            # DNS, and a UDP header alone
            udp4_frame(lo, lo, 53000, 53, bytes.fromhex("123401000001000000000000")
                       + b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"),
            udp4_frame(lo, lo, 514, 514, b""),
        ]
        mixed = records[:len(records) // 2] + [(sec, usec, f) for f in foreign] \
            + records[len(records) // 2:]
        mixed_pcap = os.path.join(self.dir, "foreign.pcap")
        write_pcap(mixed_pcap, header, mixed)

        plain_rows, plain_events, _ = self.analyze(self.pcap)
        rows, events, stderr = self.analyze(mixed_pcap)
        self.assertEqual(self.fault_rows(rows), [])
        self.assertEqual(self.fault_records(events), [])
        self.assertEqual(stderr.strip(), "")
        self.assertEqual([r["line"] for r in rows], [r["line"] for r in plain_rows])
        self.assertEqual(events, plain_events)

        if shutil.which("tshark") is not None:
            self.assertEqual(tshark.problems(mixed_pcap), [])
            self.assertEqual(tshark.fields(mixed_pcap, "imap", "imap.line"),
                             tshark.fields(self.pcap, "imap", "imap.line"))
            # the foreign datagrams, and the proxy's own settings mark
            self.assertEqual(len(tshark.fields(mixed_pcap, "udp", "udp.length")),
                             len(foreign) + 1)

    def test_damaged_marks_are_left_out_with_a_note(self):
        px = self.proxy("delay:c2s:10ms")
        im = imaplib.IMAP4("127.0.0.1", px.port)
        im.login("alice", PASSWORD)
        im.logout()
        self.finish(px, [1])
        header, records = read_pcap(self.pcap)
        marks = [i for i, (_, _, p) in enumerate(records) if is_mark(p)]
        self.assertEqual(len(marks), 1)
        sec, usec, pkt = records[marks[0]]
        src, dst, sport, dport, payload = udp4_parts(pkt)
        damaged = []
        # cut anywhere from session= to the space before the detail (a
        # cut inside the detail cannot be told from a shorter detail)
        cut_at = payload.index(b"session=")
        detail_at = payload.index(b": ", payload.index(b" spec=")) + 1
        for n in range(cut_at, detail_at + 1):
            damaged.append(udp4_frame(src, dst, sport, dport, payload[:n]))
        damaged.append(udp4_frame(src, dst, sport, dport,
                                  payload[:cut_at] + bytes(range(256)) * 3))
        damaged.append(udp4_frame(src, dst, sport, dport,
                                  payload.replace(b"dir=c2s", b"dir=up")))
        damaged.append(udp4_frame(src, dst, sport, dport,
                                  payload.replace(b"session=1", b"session=0")))
        damaged.append(udp4_frame(src, dst, sport, dport,
                                  payload.replace(b"client=127.0.0.1:", b"client=127.0.0.1:x")))
        # the record cut by the snapshot length: the capture holds less
        short = pkt[:len(pkt) - 10]
        out = records[:marks[0] + 1] + [(sec, usec, d) for d in damaged] \
            + records[marks[0] + 1:]
        path = os.path.join(self.dir, "damaged.pcap")
        write_pcap(path, header, out)
        with open(path, "ab") as f:
            f.write(struct.pack("<IIII", sec, usec, len(short), len(pkt)) + short)

        rows, events, stderr = self.analyze(path)
        live_rows, _, _ = self.analyze(self.pcap)
        # the good mark shows once, the damaged ones not at all
        self.assertEqual(self.fault_rows(rows), self.fault_rows(live_rows))
        self.assertEqual(len(self.fault_rows(rows)), 1)
        self.assertEqual(len(self.fault_records(events)), 1)
        self.assertEqual([r["line"] for r in rows], [r["line"] for r in live_rows])
        self.assertIn("%d fault mark(s) do not read and are left out" % (len(damaged) + 1),
                      stderr)


if __name__ == "__main__":
    main()
