#!/usr/bin/env python3
"""The pcap reader and TCP reassembly (capture/) against real captures.

    python3 tests/integration/test_pcap_reader.py [--imaptap build/imaptap] [-v]

tshark captures one imaplib session with a private Dovecot four ways at
once (loopback as pcapng and as classic pcap, `-i any` as Linux cooked v1
and v2). tests/capture_dump (tests/tools/pcapdump.c, found through
$IMAPTAP_CAPTURE_DUMP or next to the imaptap binary) reads each file and
prints the reassembled streams; they must equal what the client sent and
received and, after login, Dovecot's rawlog. Rewritten copies of the
classic capture (a packet dropped, packets reordered and repeated, records
cut short by editcap, the file cut off) check gaps and reordering;
hand-made files check the link types tshark does not write here; garbage
must give exit 3 and a clear message.
"""

import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))

from clients import RecordingIMAP4, appenduid, make_message  # noqa: E402
from capturedump import Dump, capture_dump_bin  # noqa: E402
from imaptap import main  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402
from pcapfile import checksum  # noqa: E402

PASSWORD = "pcap-Pa55-reader"
MIB = 1024 * 1024
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"

# DLT / LINKTYPE numbers as written in classic pcap headers.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

WORK = None     # temporary directory for this module
DC = None       # the Dovecot
SESSION = None  # what the imaplib session did (see setUpModule)
CAPTURES = {}   # name -> path of each tshark capture


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


# ---- tshark ---------------------------------------------------------------

def syn_ports_in(path):
    """Source ports of the SYNs tshark finds in a capture being written
    (tshark reads a file cut mid-record up to the cut)."""
    if not os.path.exists(path):
        return set()
    out = subprocess.run(
        [TSHARK, "-r", path, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0",
         "-T", "fields", "-e", "tcp.srcport"],
        capture_output=True, text=True, timeout=60).stdout
    return {int(p) for p in out.split()}


class Tshark:
    """tshark writing one capture file. start() returns once the capture
    is known to record: tshark prints "Capturing on" a little before it
    does, so probe connections go to the port until one shows up in the
    file. stop() does the same first, so everything before it is on disk:
    packets still in the kernel's ring when SIGINT arrives are lost."""

    def __init__(self, path, iface, port, extra=(), host="127.0.0.1"):
        """iface: an interface name or a list of them."""
        self.path = path
        self.port = port
        self.host = host
        ifaces = [iface] if isinstance(iface, str) else iface
        # -B and -f before the first -i apply to every interface
        self.argv = [TSHARK, "-B", "64", "-f", "tcp port %d" % port]
        for i in ifaces:
            self.argv += ["-i", i]
        self.argv += ["-w", path] + list(extra)
        self.proc = None
        self.probes = []
        self.stderr = b""

    def spawn(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        return self

    def wait_capturing(self, timeout=30):
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while b"Capturing on" not in self.stderr:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError("tshark did not start capturing: %r"
                                     % self.stderr.decode(errors="replace"))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                self.stderr += os.read(fd, 4096)

    def probe(self):
        s = socket.create_connection((self.host, self.port), timeout=10)
        self.probes.append(s.getsockname()[1])
        s.close()

    def sync(self, timeout=30):
        """Probe until tshark has written a probe made now."""
        mark = len(self.probes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.probe()
            time.sleep(0.3)
            if syn_ports_in(self.path) & set(self.probes[mark:]):
                return
        raise AssertionError("tshark wrote none of the probes %r to %s in %d s"
                             % (self.probes[mark:], self.path, timeout))

    def stop(self, timeout=30):
        self.sync()
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tshark ignored SIGINT for %d s" % timeout)
        self.stderr += err
        text = self.stderr.decode(errors="replace")
        if self.proc.returncode != 0:
            raise AssertionError("tshark exited %d: %s"
                                 % (self.proc.returncode, text))
        if re.search(r"\b[1-9][0-9]* packets? dropped", text):
            raise AssertionError("tshark dropped packets (the machine is too "
                                 "busy; not a reader bug): %s" % text)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def setUpModule():
    global WORK, DC, SESSION
    capture_dump_bin()
    WORK = module_tmpdir("imaptap-pcap-reader-")
    DC = module_dovecot(users={"alice": PASSWORD}, rawlog=True)
    specs = {
        "lo.pcapng": ("lo", ()),
        "lo.pcap": ("lo", ("-F", "pcap")),
        "any-sll.pcap": ("any", ("-y", "LINUX_SLL", "-F", "pcap")),
        "any-sll2.pcapng": ("any", ("-y", "LINUX_SLL2")),
    }
    tsharks = [Tshark(os.path.join(WORK, name), iface, DC.port, extra)
               for name, (iface, extra) in specs.items()]
    try:
        for t in tsharks:
            t.spawn()
        for t in tsharks:
            t.wait_capturing()
        for t in tsharks:
            t.sync()

        m = RecordingIMAP4("127.0.0.1", DC.port)
        port = m.local_port
        assert m.login("alice", PASSWORD)[0] == "OK"
        assert m.select("INBOX")[0] == "OK"
        msg = make_message(MIB, "pcap-reader")
        uid = appenduid(m.append("INBOX", None, None, msg))
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg, typ
        lines = m.logout_to_eof()
        assert lines[-1].startswith(b"L999 OK"), lines
        sent_after, received_after = m.after_login()

        for t in tsharks:
            t.stop()
    finally:
        for t in tsharks:
            t.kill()
    for t in tsharks:
        CAPTURES[os.path.basename(t.path)] = t.path
    first_line = sent_after[:sent_after.index(b"\r\n") + 2]
    last_line = received_after[received_after.rindex(
        b"\r\n", 0, len(received_after) - 2) + 2:]
    rawlog = DC.wait_rawlog_session(
        "alice", lambda s: s["in"].startswith(first_line)
        and s["out"].endswith(last_line))
    SESSION = {
        "port": port, "sent": bytes(m.sent), "received": bytes(m.received),
        "sent_after": sent_after, "received_after": received_after,
        "rawlog": rawlog, "message": msg,
        "probes": [p for t in tsharks for p in t.probes],
    }



# ---- classic pcap, parsed and written here ---------------------------------

PCAP_MAGIC_US = 0xa1b2c3d4


def read_pcap(path):
    """(linktype, [record]) of a little-endian microsecond classic pcap;
    a record is [sec, usec, caplen, wire_len, data]."""
    with open(path, "rb") as f:
        raw = f.read()
    magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
    assert magic == PCAP_MAGIC_US, hex(magic)
    recs = []
    at = 24
    while at + 16 <= len(raw):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", raw, at)
        recs.append([sec, usec, caplen, wire, raw[at + 16:at + 16 + caplen]])
        at += 16 + caplen
    return linktype, recs


def write_pcap(path, linktype, recs, snaplen=262144):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, snaplen,
                            linktype))
        for sec, usec, caplen, wire, data in recs:
            f.write(struct.pack("<IIII", sec, usec, len(data), wire))
            f.write(data)


class Tcp:
    """The TCP fields of an Ethernet/IPv4 frame from the loopback."""

    def __init__(self, frame):
        assert struct.unpack_from(">H", frame, 12)[0] == 0x0800
        ip = frame[14:]
        ihl = self.ip_header_len = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ihl:total]
        (self.sport, self.dport, self.seq, self.ack, off,
         self.flags) = struct.unpack_from(">HHIIBB", tcp)
        self.header_len = 14 + ihl + (off >> 4) * 4
        self.payload = tcp[(off >> 4) * 4:]
        self.syn = bool(self.flags & 2)
        self.fin = bool(self.flags & 1)
        self.has_ack = bool(self.flags & 16)

    @property
    def end(self):
        """Sequence number after this segment."""
        return (self.seq + len(self.payload) + self.syn + self.fin) & 0xffffffff


def resegment(rec, start, end):
    """A copy of an Ethernet/IPv4/TCP record carrying only payload bytes
    [start, end) (no FIN)."""
    t = Tcp(rec[4])
    new = bytearray(rec[4][:t.header_len] + t.payload[start:end])
    struct.pack_into(">H", new, 16, len(new) - 14)
    tcp = 14 + t.ip_header_len
    struct.pack_into(">I", new, tcp + 4, (t.seq + start) & 0xffffffff)
    new[tcp + 13] &= ~1 & 0xff
    return [rec[0], rec[1], len(new), len(new), bytes(new)]


def acks_cover(ack, end):
    return ((ack - end) & 0xffffffff) < 0x80000000


def session_records(port):
    """Records of the imaplib session in the classic loopback capture."""
    linktype, recs = read_pcap(CAPTURES["lo.pcap"])
    assert linktype == LINKTYPE_ETHERNET
    out = []
    for r in recs:
        t = Tcp(r[4])
        if port in (t.sport, t.dport):
            out.append(r)
    return out


# ---- hand-made packets -----------------------------------------------------

def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload=b""):
    hdr = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags,
                      65535, 0, 0)
    if len(src) == 4:
        pseudo = src + dst + struct.pack(">BBH", 0, 6, len(hdr) + len(payload))
    else:
        pseudo = src + dst + struct.pack(">IxxxB", len(hdr) + len(payload), 6)
    c = checksum(pseudo + hdr + payload)
    return hdr[:16] + struct.pack(">H", c) + hdr[18:] + payload


def ipv4(src, dst, payload, proto=6, options=b"", frag_offset=0, more=False,
         ident=1):
    ihl = 5 + len(options) // 4
    flags = (frag_offset // 8) | (0x2000 if more else 0)
    hdr = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload),
                      ident, flags, 64, proto, 0, src, dst) + options
    c = checksum(hdr)
    return hdr[:10] + struct.pack(">H", c) + hdr[12:] + payload


def ipv6(src, dst, payload, ext=()):
    """ext: [(header type, body)] in order; bodies padded to 8 bytes."""
    nxt_chain = [t for t, _ in ext] + [6]
    body = b""
    for i, (t, data) in enumerate(ext):
        block = bytes([nxt_chain[i + 1]]) + b"\0" + data
        block += b"\0" * (-len(block) % 8)
        block = block[:1] + bytes([len(block) // 8 - 1]) + block[2:]
        body += block
    return struct.pack(">IHBB16s16s", 0x60000000, len(body) + len(payload),
                       nxt_chain[0], 64, src, dst) + body + payload


V4 = (bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
V6 = (bytes.fromhex("20010db8000000000000000000000001"),
      bytes.fromhex("20010db8000000000000000000000002"))


def conversation(addrs, big=3000):
    """A short IMAP session as (from_client, seq-ready TCP segments):
    [(is_client, tcp bytes)], and the two streams it carries."""
    csrc, ssrc = addrs
    cport, sport = 40123, 143
    cseq, sseq = 0x7ffffff0, 0xfffffa00   # the server's wrap mid-stream
    c2s = [b"a1 CAPABILITY\r\n", b"a2 LOGOUT\r\n"]
    reply = (b"* CAPABILITY IMAP4rev1 " + b"X" * big + b"\r\na1 OK done\r\n")
    s2c = [b"* OK ready\r\n", reply[:1400], reply[1400:], b"* BYE\r\na2 OK\r\n"]
    segs = []

    def c(flags, payload=b""):
        nonlocal cseq
        segs.append((True, tcp_segment(csrc, ssrc, cport, sport, cseq, sseq,
                                       flags, payload)))
        cseq = (cseq + len(payload) + (flags & 3 != 0)) & 0xffffffff

    def s(flags, payload=b""):
        nonlocal sseq
        segs.append((False, tcp_segment(ssrc, csrc, sport, cport, sseq, cseq,
                                        flags, payload)))
        sseq = (sseq + len(payload) + (flags & 3 != 0)) & 0xffffffff

    c(0x02)
    s(0x12)
    c(0x10)
    s(0x18, s2c[0])
    c(0x18, c2s[0])
    s(0x18, s2c[1])
    s(0x18, s2c[2])
    c(0x18, c2s[1])
    s(0x18, s2c[3])
    s(0x11)
    c(0x11)
    s(0x10)
    return segs, b"".join(c2s), b"".join(s2c)


def ip_packet(addrs, is_client, tcp, v4_options=b"", v6_ext=()):
    src, dst = addrs if is_client else addrs[::-1]
    if len(src) == 4:
        return ipv4(src, dst, tcp, options=v4_options)
    return ipv6(src, dst, tcp, ext=v6_ext)


ETH_SRC = bytes.fromhex("020000000001")
ETH_DST = bytes.fromhex("020000000002")


def frame(linktype, ip, vlans=()):
    version = ip[0] >> 4
    ethertype = 0x0800 if version == 4 else 0x86dd
    if linktype == LINKTYPE_ETHERNET:
        tags = b""
        for tpid, vid in vlans:
            tags += struct.pack(">HH", tpid, vid)
        f = ETH_DST + ETH_SRC + tags + struct.pack(">H", ethertype) + ip
        return f + b"\0" * (60 - len(f))   # padded as on the wire: not payload
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack(">HHH8sH", 0, 1, 6, ETH_SRC, ethertype) + ip
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.pack(">HHIHBB8s", ethertype, 0, 1, 1, 0, 6, ETH_SRC) + ip
    if linktype == LINKTYPE_NULL:   # host byte order of the writer
        return struct.pack("<I", 2 if version == 4 else 30) + ip
    if linktype == LINKTYPE_LOOP:   # network byte order
        return struct.pack(">I", 2 if version == 4 else 24) + ip
    return ip                       # raw IP


def records(frames, t0=1700000000):
    return [[t0, i * 1000, len(f), len(f), f] for i, f in enumerate(frames)]


def tshark_follow(path):
    """The two streams of TCP stream 0 as tshark reassembles them
    (node 0 first)."""
    out = subprocess.run([TSHARK, "-r", path, "-q", "-z", "follow,tcp,raw,0"],
                         capture_output=True, text=True, timeout=60).stdout
    streams = [bytearray(), bytearray()]
    started = False
    for line in out.splitlines():
        if line.startswith("Node 1:"):
            started = True
            continue
        if not started or line.startswith("====") or not line.strip():
            continue
        node = 1 if line.startswith("\t") else 0
        streams[node] += bytes.fromhex(line.strip())
    return bytes(streams[0]), bytes(streams[1])


# ---- tests -------------------------------------------------------------------

class RealCaptureTest(BytesAssertions, unittest.TestCase):
    """The four tshark captures of one session."""

    def check_capture(self, name, encapsulation):
        path = CAPTURES[name]
        enc = subprocess.run(["capinfos", "-E", "-T", "-r", path],
                             capture_output=True, text=True).stdout.split()
        self.assertEqual(enc[-1], encapsulation, "capinfos says %r" % enc)
        d = Dump(path)
        self.assertEqual(d.rc, 0, d.stderr)
        s = d.session_of_client_port(SESSION["port"])
        op = d.only(s, "open")
        self.assertEqual(op["client"], "127.0.0.1:%d" % SESSION["port"])
        self.assertEqual(op["server"], "127.0.0.1:%d" % DC.port)
        self.assertFalse(op["midstream"], "the SYN was captured")
        c2s, gaps = d.stream(s, "c2s")
        self.assertEqual(gaps, [], "c2s gaps in %s" % name)
        s2c, gaps = d.stream(s, "s2c")
        self.assertEqual(gaps, [], "s2c gaps in %s" % name)
        self.assertBytesEqual(c2s, SESSION["sent"],
                              "%s c2s and what imaplib sent" % name)
        self.assertBytesEqual(s2c, SESSION["received"],
                              "%s s2c and what imaplib received" % name)
        # Dovecot's own record of the bytes after login
        raw = SESSION["rawlog"]
        self.assertBytesEqual(c2s[len(c2s) - len(raw["in"]):], raw["in"],
                              "%s c2s after login and Dovecot's rawlog .in" % name)
        self.assertBytesEqual(s2c[len(s2c) - len(raw["out"]):], raw["out"],
                              "%s s2c after login and Dovecot's rawlog .out" % name)
        self.assertIn(b" {%d}\r\n" % MIB + SESSION["message"], c2s)
        self.assertIn(b"BODY[] {%d}\r\n" % MIB + SESSION["message"], s2c)
        cl = d.only(s, "close")
        self.assertEqual(cl["reason"], "server-fin", "Dovecot closes after LOGOUT")
        self.assertEqual((cl["bytes_c2s"], cl["bytes_s2c"]),
                         (len(SESSION["sent"]), len(SESSION["received"])))
        self.assertEqual((cl["missing_c2s"], cl["missing_s2c"]), (0, 0))
        ts = [e["ts"] for e in d.session_events(s)]
        self.assertEqual(ts, sorted(ts), "event times go forward")
        # the probe connections are sessions of their own, numbered in order
        self.assertEqual(d.sessions(), list(range(1, len(d.sessions()) + 1)))
        self.assertGreater(len(d.sessions()), 1)
        for sess in d.sessions():
            op = d.only(sess, "open")
            if not op["midstream"]:     # (tshark may catch the last probe half)
                self.assertEqual(op["server"], "127.0.0.1:%d" % DC.port)
            d.only(sess, "close")
        self.assertEqual(d.stats["skipped"], 0)
        self.assertEqual(d.stats["truncated"], 0)
        self.assertEqual(d.stats["cut_records"], 0)
        self.assertEqual(d.stats["packets"], d.stats["tcp_segments"])
        return d

    def test_loopback_pcapng(self):
        self.check_capture("lo.pcapng", "ether")

    def test_loopback_classic_pcap(self):
        self.check_capture("lo.pcap", "ether")

    def test_any_linux_cooked_v1(self):
        self.check_capture("any-sll.pcap", "linux-sll")

    def test_any_linux_cooked_v2(self):
        self.check_capture("any-sll2.pcapng", "linux-sll2")


class RewrittenCaptureTest(BytesAssertions, unittest.TestCase):
    """Copies of the classic capture, changed the way real captures go
    wrong."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rewrite-", dir=WORK)
        self.recs = session_records(SESSION["port"])
        first = Tcp(self.recs[0][4])
        self.assertTrue(first.syn and not first.has_ack)
        self.client_isn = first.seq

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, recs, linktype=LINKTYPE_ETHERNET, snaplen=262144):
        path = os.path.join(self.dir, name)
        write_pcap(path, linktype, recs, snaplen)
        return path

    def dump_session(self, path):
        d = Dump(path)
        self.assertEqual(d.rc, 0, d.stderr)
        self.assertEqual(d.sessions(), [1])
        return d

    def test_dropped_segment_is_a_gap_at_its_offset(self):
        """One client data segment in the middle of the 1 MiB APPEND is
        missing: a GAP of exactly its length at exactly its offset, the
        bytes on both sides intact."""
        cands = [i for i, r in enumerate(self.recs)
                 if Tcp(r[4]).sport == SESSION["port"]
                 and len(Tcp(r[4]).payload) > 1000]
        self.assertGreater(len(cands), 4, "the APPEND should take several segments")
        victim = cands[len(cands) // 2]
        t = Tcp(self.recs[victim][4])
        offset = (t.seq - self.client_isn - 1) & 0xffffffff
        length = len(t.payload)
        path = self.write("dropped.pcap",
                          self.recs[:victim] + self.recs[victim + 1:])
        d = self.dump_session(path)
        c2s, gaps = d.stream(1, "c2s")
        self.assertEqual(gaps, [(offset, length)])
        sent = SESSION["sent"]
        self.assertBytesEqual(c2s, sent[:offset] + sent[offset + length:],
                              "c2s around the gap")
        s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [])
        self.assertBytesEqual(s2c, SESSION["received"], "s2c")
        cl = d.only(1, "close")
        self.assertEqual(cl["missing_c2s"], length)
        # reported when the server acknowledged past it, not at the end
        gap = [e for e in d.events if e["kind"] == "gap"][0]
        self.assertLess(gap["ts"], cl["ts"])

    def test_dropped_last_server_segment_is_a_gap(self):
        """The last server data segment (the LOGOUT answer) missing: the
        FIN and the client's ACK tell how long the stream was."""
        idx = max(i for i, r in enumerate(self.recs)
                  if Tcp(r[4]).dport == SESSION["port"] and Tcp(r[4]).payload)
        t = Tcp(self.recs[idx][4])
        server_isn = next(Tcp(r[4]).seq for r in self.recs
                          if Tcp(r[4]).syn and Tcp(r[4]).has_ack)
        offset = (t.seq - server_isn - 1) & 0xffffffff
        d = self.dump_session(self.write("last.pcap",
                                         self.recs[:idx] + self.recs[idx + 1:]))
        s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [(offset, len(t.payload))])
        self.assertBytesEqual(s2c, SESSION["received"][:offset]
                              + SESSION["received"][offset + len(t.payload):], "s2c")

    def test_reordered_and_repeated_packets(self):
        """Some segments split in two overlapping pieces, packets swapped at
        random (never an ACK before the data it acknowledges, as no
        capture point can see) and some repeated later: the same bytes
        come out, no gap."""
        rnd = random.Random(20240611)
        recs = []
        overlaps = 0
        for r in self.recs:
            t = Tcp(r[4])
            n = len(t.payload)
            if n > 300 and not t.fin and rnd.random() < 0.3:
                pieces = [resegment(r, 0, 2 * n // 3), resegment(r, n // 3, n)]
                if rnd.random() < 0.5:
                    pieces.reverse()
                recs += pieces
                overlaps += 1
            else:
                recs.append(list(r))
        self.assertGreater(overlaps, 5)
        info = [Tcp(r[4]) for r in recs]
        swaps = 0
        for _ in range(6):
            for i in range(3, len(recs) - 1):
                a, b = info[i], info[i + 1]
                if rnd.random() < 0.5:
                    continue
                if (a.sport != b.sport and b.has_ack and
                        (a.payload or a.fin) and acks_cover(b.ack, a.end)):
                    continue    # b acknowledges a: it cannot come first
                recs[i], recs[i + 1] = recs[i + 1], recs[i]
                info[i], info[i + 1] = info[i + 1], info[i]
                swaps += 1
        self.assertGreater(swaps, 20)
        # repeats of some packets a few places after them (retransmissions
        # come after the original), highest first so indexes stay valid
        out = list(recs)
        picks = sorted(rnd.sample(range(3, len(recs)), len(recs) // 6),
                       reverse=True)
        for i in picks:
            out.insert(min(i + rnd.randint(1, 6), len(out)), list(recs[i]))
        d = self.dump_session(self.write("shuffled.pcap", out))
        self.assertGreater(d.stats["packets"], len(self.recs))
        c2s, gaps = d.stream(1, "c2s")
        self.assertEqual(gaps, [])
        self.assertBytesEqual(c2s, SESSION["sent"], "c2s of the reordered capture")
        s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [])
        self.assertBytesEqual(s2c, SESSION["received"],
                              "s2c of the reordered capture")
        self.assertFalse(d.only(1, "open")["midstream"])

    def test_snaplen_cut_records_become_gaps(self):
        """editcap -s 200 cuts every frame to 200 bytes: the cut-off bytes
        are gaps at their place, the bytes kept are right."""
        full = self.write("full.pcap", self.recs)
        cut = os.path.join(self.dir, "cut.pcap")
        subprocess.run(["editcap", "-F", "pcap", "-s", "200", full, cut],
                       check=True, capture_output=True)
        d = self.dump_session(cut)
        self.assertEqual(d.stats["truncated"],
                         sum(1 for r in self.recs if r[2] > 200))
        # each gap is reported by the packet that was cut, at its time
        server_isn = next(Tcp(r[4]).seq for r in self.recs
                          if Tcp(r[4]).syn and Tcp(r[4]).has_ack)
        cuts = {}
        for r in self.recs:
            t = Tcp(r[4])
            if r[2] > 200 and t.payload:
                kept = 200 - t.header_len
                client = t.sport == SESSION["port"]
                isn = self.client_isn if client else server_isn
                off = (t.seq - isn - 1 + kept) & 0xffffffff
                cuts[("c2s" if client else "s2c", off)] = (
                    r[0] * 1000000 + r[1], len(t.payload) - kept)
        got = {(e["dir"], e["offset"]): (e["ts"], e["gap_len"])
               for e in d.events if e["kind"] == "gap"}
        self.assertEqual(got, cuts)
        for direction, want in (("c2s", SESSION["sent"]),
                                ("s2c", SESSION["received"])):
            data, gaps = d.stream(1, direction)
            self.assertTrue(gaps, direction)
            self.assertEqual(len(data) + sum(n for _, n in gaps), len(want),
                             direction)
            # rebuild: data between the gaps must be the original bytes
            at = pos = 0
            for off, n in gaps + [(len(want), 0)]:
                self.assertBytesEqual(data[pos:pos + off - at], want[at:off],
                                      "%s bytes before offset %d" % (direction, off))
                pos += off - at
                at = off + n
        cl = d.only(1, "close")
        self.assertGreater(cl["missing_c2s"], MIB // 2)

    def test_file_cut_mid_record_reads_what_is_whole(self):
        """A capture file that ends inside a record (a killed writer) is
        read up to there and says so; it is no error."""
        full = self.write("full.pcap", self.recs)
        with open(full, "rb") as f:
            raw = f.read()
        path = os.path.join(self.dir, "short.pcap")
        with open(path, "wb") as f:
            f.write(raw[:len(raw) // 2])
        d = self.dump_session(path)
        self.assertEqual(d.stats["cut_records"], 1)
        c2s, gaps = d.stream(1, "c2s")
        self.assertEqual(gaps, [])
        self.assertTrue(SESSION["sent"].startswith(c2s))
        self.assertGreater(len(c2s), MIB // 4)
        s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [])
        self.assertTrue(SESSION["received"].startswith(s2c))
        self.assertEqual(d.only(1, "close")["reason"], "end-of-capture")

    def test_starts_mid_stream(self):
        """A capture that begins after the handshake and the greeting: the
        session is there, marked mid-stream, the server known as the first
        to speak; bytes from the first captured on."""
        # from the first server segment after the client's first command
        start = next(i for i, r in enumerate(self.recs)
                     if i > 3 and Tcp(r[4]).sport == DC.port and Tcp(r[4]).payload
                     and Tcp(self.recs[i - 1][4]).sport == SESSION["port"])
        d = self.dump_session(self.write("mid.pcap", self.recs[start:]))
        op = d.only(1, "open")
        self.assertTrue(op["midstream"])
        self.assertEqual(op["server"], "127.0.0.1:%d" % DC.port)
        s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [])
        self.assertTrue(SESSION["received"].endswith(s2c))
        c2s, gaps = d.stream(1, "c2s")
        self.assertEqual(gaps, [])
        self.assertTrue(SESSION["sent"].endswith(c2s))
        self.assertGreater(len(c2s), MIB)

    def test_damaged_files_never_crash(self):
        """Bytes of the capture changed at random: every run ends with
        exit 0 or 3, never a crash or a sanitizer report."""
        rnd = random.Random(7)
        base = session_records(SESSION["port"])[:40]
        full = self.write("base.pcap", base)
        with open(full, "rb") as f:
            raw = bytearray(f.read())
        path = os.path.join(self.dir, "damaged.pcap")
        for i in range(60):
            mutated = bytearray(raw)
            for _ in range(rnd.randint(1, 20)):
                # mostly in headers: the first 100 bytes of some record
                pos = rnd.randrange(24, min(len(mutated), 24 + 40 * 200))
                mutated[pos] = rnd.randrange(256)
            if i % 10 == 9:
                mutated = mutated[:rnd.randrange(24, len(mutated))]
            with open(path, "wb") as f:
                f.write(mutated)
            d = Dump(path)
            self.assertIn(d.rc, (0, 3), d.stderr)
            if d.rc == 3:
                self.assertIn(path, d.stderr)


class HandMadeCaptureTest(BytesAssertions, unittest.TestCase):
    """Link types, IP options and extension headers, fragments and other
    protocols tshark does not write on this machine."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="handmade-", dir=WORK)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, name, linktype, addrs, vlans=(), v4_options=b"",
              v6_ext=(), extra=(), cross_check=True):
        segs, c2s, s2c = conversation(addrs)
        frames = [frame(linktype, ip_packet(addrs, is_client, tcp,
                                            v4_options, v6_ext), vlans)
                  for is_client, tcp in segs]
        for at, f in extra:
            frames.insert(at, f)
        path = os.path.join(self.dir, name)
        write_pcap(path, linktype, records(frames))
        d = Dump(path)
        self.assertEqual(d.rc, 0, "%s: %s" % (name, d.stderr))
        self.assertEqual(d.sessions(), [1], name)
        op = d.only(1, "open")
        if len(addrs[0]) == 4:
            self.assertEqual((op["client"], op["server"]),
                             ("192.0.2.1:40123", "192.0.2.2:143"))
        else:
            self.assertEqual((op["client"], op["server"]),
                             ("[2001:db8::1]:40123", "[2001:db8::2]:143"))
        got_c2s, gaps = d.stream(1, "c2s")
        self.assertEqual(gaps, [], name)
        self.assertBytesEqual(got_c2s, c2s, name + " c2s")
        got_s2c, gaps = d.stream(1, "s2c")
        self.assertEqual(gaps, [], name)
        self.assertBytesEqual(got_s2c, s2c, name + " s2c")
        self.assertEqual(d.only(1, "close")["reason"], "server-fin")
        self.assertEqual(d.stats["packets"], len(frames))
        if cross_check:     # the file itself is right: tshark agrees
            self.assertEqual(tshark_follow(path), (c2s, s2c), name)
        return d

    def test_ethernet_ipv4(self):
        self.check("eth4.pcap", LINKTYPE_ETHERNET, V4)

    def test_ethernet_ipv6(self):
        self.check("eth6.pcap", LINKTYPE_ETHERNET, V6)

    def test_vlan_tags(self):
        self.check("vlan.pcap", LINKTYPE_ETHERNET, V4, vlans=[(0x8100, 42)])
        self.check("qinq.pcap", LINKTYPE_ETHERNET, V6,
                   vlans=[(0x88a8, 7), (0x8100, 42)])

    def test_linux_cooked(self):
        self.check("sll.pcap", LINKTYPE_LINUX_SLL, V4)
        self.check("sll2.pcap", LINKTYPE_LINUX_SLL2, V6)

    def test_raw_ip(self):
        self.check("raw4.pcap", LINKTYPE_RAW, V4)
        self.check("raw6.pcap", LINKTYPE_RAW, V6)
        self.check("ipv4.pcap", LINKTYPE_IPV4, V4)
        self.check("ipv6.pcap", LINKTYPE_IPV6, V6)

    def test_bsd_loopback(self):
        self.check("null4.pcap", LINKTYPE_NULL, V4)
        self.check("null6.pcap", LINKTYPE_NULL, V6)
        self.check("loop4.pcap", LINKTYPE_LOOP, V4)
        self.check("loop6.pcap", LINKTYPE_LOOP, V6)

    def test_ipv4_options(self):
        # record route (7 bytes) and end-of-list padding
        self.check("ipopt.pcap", LINKTYPE_ETHERNET, V4,
                   v4_options=bytes([7, 7, 4, 0, 0, 0, 0, 0]))

    def test_ipv6_extension_headers(self):
        self.check("ip6ext.pcap", LINKTYPE_ETHERNET, V6,
                   v6_ext=[(0, b"\x01\x04\0\0\0\0"),      # hop-by-hop, PadN
                           (60, b"\x01\x0c" + b"\0" * 12)])  # destination options

    def test_other_protocols_are_skipped(self):
        udp = ipv4(V4[0], V4[1], struct.pack(">HHHH", 53, 53, 8, 0), proto=17)
        icmp = ipv4(V4[0], V4[1], b"\x08\0\0\0\0\0\0\0", proto=1)
        arp = ETH_DST + ETH_SRC + b"\x08\x06" + b"\0" * 28
        d = self.check("mixed.pcap", LINKTYPE_ETHERNET, V4,
                       extra=[(0, frame(LINKTYPE_ETHERNET, udp)),
                              (5, frame(LINKTYPE_ETHERNET, icmp)), (7, arp)])
        self.assertEqual(d.stats["skipped"], 3)

    def test_ip_fragments(self):
        """A data segment sent in two IPv4 fragments: the first is read,
        the second skipped and counted; its bytes are a gap once the
        client acknowledges them."""
        segs, c2s, s2c = conversation(V4)
        frames = []
        frag_len = None
        for is_client, tcp in segs:
            ip = ip_packet(V4, is_client, tcp)
            if not is_client and len(tcp) > 1000 and frag_len is None:
                src, dst = V4[::-1]
                first, rest = tcp[:808], tcp[808:]
                frag_len = len(rest)
                frames.append(ipv4(src, dst, first, more=True, ident=9))
                frames.append(ipv4(src, dst, rest, frag_offset=808, ident=9))
                continue
            frames.append(ip)
        path = os.path.join(self.dir, "frag.pcap")
        write_pcap(path, LINKTYPE_RAW, records(frames))
        d = Dump(path)
        self.assertEqual(d.rc, 0, d.stderr)
        self.assertEqual(d.stats["fragments"], 1)
        got, gaps = d.stream(1, "s2c")
        off = len(b"* OK ready\r\n") + 808 - 20
        self.assertEqual(gaps, [(off, frag_len)])
        self.assertBytesEqual(got, s2c[:off] + s2c[off + frag_len:], "s2c")
        # tshark, which reassembles fragments, sees the whole stream
        self.assertEqual(tshark_follow(path), (c2s, s2c))


class BadInputTest(unittest.TestCase):
    """Files that are no capture: exit 3 and a message that names the
    file and the problem; never a crash."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="bad-", dir=WORK)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def file(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def assertRefused(self, path, *phrases):
        d = Dump(path)
        self.assertEqual(d.rc, 3, "exit for %s: %s" % (path, d.stderr))
        lines = d.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, d.stderr)
        self.assertTrue(lines[0].startswith("capture_dump: cannot read capture %s: "
                                            % path), lines[0])
        for p in phrases:
            self.assertIn(p, lines[0])
        return lines[0]

    def test_missing_file(self):
        self.assertRefused(os.path.join(self.dir, "nope.pcap"), "no such file")

    def test_directory(self):
        self.assertRefused(self.dir, "is a directory")

    def test_empty_file(self):
        self.assertRefused(self.file("empty.pcap", b""), "empty")

    def test_random_bytes(self):
        self.assertRefused(self.file("random.pcap", random.Random(3).randbytes(4096)),
                           "not a pcap or pcapng file", "tcpdump -w")

    def test_text_file(self):
        self.assertRefused(self.file("notes.txt", b"* OK IMAP ready\r\n" * 50),
                           "not a pcap or pcapng file")

    def test_header_cut_short(self):
        self.assertRefused(self.file("short.pcap", struct.pack("<IHH", PCAP_MAGIC_US, 2, 4)),
                           "too short")

    def test_unsupported_link_type(self):
        path = self.file("wifi.pcap", b"")
        write_pcap(path, LINKTYPE_IEEE802_11, [])
        self.assertRefused(path, "unsupported link type 105 (IEEE802_11)")

    def test_damaged_record(self):
        """A record claiming more bytes than any capture holds."""
        path = self.file("bad.pcap", b"")
        segs, _, _ = conversation(V4)
        write_pcap(path, LINKTYPE_RAW, records([ip_packet(V4, c, t)
                                               for c, t in segs[:3]]))
        with open(path, "ab") as f:
            f.write(struct.pack("<IIII", 1700000001, 0, 0x7fffffff, 0x7fffffff))
            f.write(b"\0" * 64)
        line = self.assertRefused(path, "damaged after packet 3")
        self.assertIn("the packets before it were read", line)

    def test_mixed_link_types(self):
        """tshark on two interfaces of different link types writes a pcapng
        that libpcap cannot read: the message says so and what to do."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        path = os.path.join(self.dir, "mixed.pcapng")
        t = Tshark(path, ["lo", "any"], srv.getsockname()[1])
        try:
            t.spawn()
            t.wait_capturing()
            t.stop()
        finally:
            t.kill()
            srv.close()
        line = self.assertRefused(path, "mixes interfaces of different link types",
                                  "frame.interface_id")
        self.assertNotIn("damaged", line)

    def test_usage(self):
        proc = subprocess.run([capture_dump_bin()], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage", proc.stderr)


class Ipv6RealCaptureTest(BytesAssertions, unittest.TestCase):
    """Real kernel TCP over ::1, captured by tshark: a server that speaks
    first, a client that uploads and closes first."""

    def test_ipv6_loopback(self):
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        srv.bind(("::1", 0))
        srv.listen(8)
        srv.settimeout(0.2)
        port = srv.getsockname()[1]
        rnd = random.Random(11)
        greeting = b"* OK " + rnd.randbytes(300000) + b"\r\n"
        upload = rnd.randbytes(700000)
        wanted = set()
        got = {}
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    conn, peer = srv.accept()
                except socket.timeout:
                    continue
                with conn:
                    if peer[1] not in wanted:
                        continue    # a probe
                    conn.settimeout(30)
                    conn.sendall(greeting)
                    data = bytearray()
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    got["upload"] = bytes(data)

        path = os.path.join(WORK, "ipv6.pcapng")
        t = Tshark(path, "lo", port, host="::1")
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        try:
            t.spawn()
            t.wait_capturing()
            t.sync()
            c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            c.settimeout(30)
            c.bind(("::1", 0))
            cport = c.getsockname()[1]
            wanted.add(cport)
            c.connect(("::1", port))
            received = bytearray()
            while len(received) < len(greeting):
                received += c.recv(65536)
            c.sendall(upload)
            c.shutdown(socket.SHUT_WR)
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                received += chunk
            c.close()
            t.stop()
        finally:
            t.kill()
            stop.set()
            th.join(5)
            srv.close()
        self.assertEqual(bytes(received), greeting)
        self.assertEqual(got.get("upload"), upload)
        d = Dump(path)
        self.assertEqual(d.rc, 0, d.stderr)
        s = d.session_of_client_port(cport)
        op = d.only(s, "open")
        self.assertEqual((op["client"], op["server"]),
                         ("[::1]:%d" % cport, "[::1]:%d" % port))
        self.assertFalse(op["midstream"])
        c2s, gaps = d.stream(s, "c2s")
        self.assertEqual(gaps, [])
        self.assertBytesEqual(c2s, upload, "IPv6 c2s")
        s2c, gaps = d.stream(s, "s2c")
        self.assertEqual(gaps, [])
        self.assertBytesEqual(s2c, greeting, "IPv6 s2c")
        self.assertEqual(d.only(s, "close")["reason"], "client-fin")


if __name__ == "__main__":
    main()
