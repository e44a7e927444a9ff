#!/usr/bin/env python3
"""The Wireshark plugin (wireshark/imaptap.lua) judged through real tshark:
on imaptap's capture of a Dovecot session, on tshark's own loopback capture
of the same session straight to Dovecot, on a compiled scenario with packet
comments added by editcap, and on hostile scripts.

The session APPENDs a message whose lines look like IMAP (`a1 LOGOUT`,
`DONE`, a tagged OK), with a synchronising and a non-synchronising literal,
FETCHes it back (a server literal), IDLEs twice (once with the next command
right behind DONE). The plugin shows exactly the client's commands with
their tags and names (the built-in dissector shows literal lines as
commands), ties every tagged completion to its command, with the latency
imaptap's event log gives, and IDLE's DONE->OK.

    python3 tests/integration/test_wireshark_plugin.py [--imaptap build/imaptap] [-v]
"""

import json
import os
import re
import select
import struct
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from xml.etree import ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from clients import RecordingIMAP4, appenduid  # noqa: E402
from imaptap import ProxyTestCase, check_binary, main, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir  # noqa: E402

PLUGIN = os.environ.get("IMAPTAP_WIRESHARK_PLUGIN",
                        os.path.join(ROOT, "wireshark", "imaptap.lua"))
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
PASSWORD = "Wireshark-S3cret"
DC = None
TMP = None
HOME = None

# lines of the appended message that a reader of lines takes for IMAP
BODY = (b"From: alice@example.org\r\nSubject: looks like IMAP\r\n\r\n"
        b"a1 LOGOUT\r\nDONE\r\nzz9 OK not a completion\r\n* 3 EXPUNGE\r\n"
        b"b7 SELECT Trash\r\nthe end\r\n")
LIT_PLUS_BODY = BODY.replace(b"looks like", b"also looks like")
LITERAL_LINES = (b"a1 LOGOUT", b"zz9 OK not a completion", b"b7 SELECT Trash")

EDGE_SCRIPT = r"""S: * OK ready
C: a1 AUTHENTICATE PLAIN
S: +
C: AGFsaWNlAHNlY3JldA==
S: a1 NO no
C: a2 AUTHENTICATE LOGIN
S: + VXNlcm5hbWU6
C: YWxpY2U=
S: + UGFzc3dvcmQ6
C: *
S: a2 BAD cancelled
C: a3 LOGIN alice {6}
S: + go
C~ secret
C:
S: a3 OK in
C: a4 IDLE
S: a4 NO not now
C: DONE
S: DONE BAD what
C: a5 IDLE
C: DONE
S: + idling
S: a5 OK done
C: a6 SELECT INBOX
S: * 1 FETCH (FLAGS (\Seen) BODY[HEADER.FIELDS (SUBJECT)] {14}
S~ Subject: x
S~ 
S:  BODY[TEXT] ~{3}
S= a\x00b
S: )
S= * OK [ALERT] look {5}\r\n
S= a6 OK selected {3}\r\n
C: a7 STARTTLS
S: a7 OK begin
C: a8 CAPABILITY
S: * CAPABILITY IMAP4rev1
S: a8 OK done
close client
=== session tls
S: * OK ready
C: b1 STARTTLS
S: b1 OK begin
C= \x16\x03\x01\x00\x05hello
S= \x16\x03\x03\x00\x02hi
"""

LUA_ERRORS = re.compile(r"Lua: Error|\[Lua Error\]|Lua Error|attempt to|stack traceback")


def setUpModule():
    global DC, TMP, HOME
    check_binary()
    TMP = module_tmpdir("imaptap-wireshark-")
    if os.environ.get("KEEP_TMP"):
        print("work directory: " + TMP, file=sys.stderr)
    # a HOME of its own: no personal plugin or preference of the machine's
    # user comes in (a second copy of the plugin would clash)
    HOME = os.path.join(TMP, "home")
    os.makedirs(HOME)
    DC = module_dovecot(users={"alice": PASSWORD})


def tshark(args, plugin=PLUGIN, timeout=120):
    """tshark with the plugin loaded (plugin=None: Wireshark alone);
    fails on a non-zero exit and on any Lua error in its output."""
    argv = [TSHARK]
    if plugin:
        argv += ["-X", "lua_script:" + plugin]
    env = dict(os.environ, HOME=HOME)
    r = subprocess.run(argv + list(args), capture_output=True, timeout=timeout, env=env)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        raise AssertionError("tshark %s exited %d: %s" % (" ".join(args), r.returncode, err))
    bad = [line for line in (out + "\n" + err).splitlines() if LUA_ERRORS.search(line)]
    if bad:
        raise AssertionError("Lua error from tshark %s:\n%s" % (" ".join(args), "\n".join(bad[:20])))
    return out


def units_of(pcap, display_filter="imaptap", extra=(), two_pass=True):
    """Every unit the plugin shows (a line, a literal chunk, ...), in
    order, from tshark's PDML: a dict of its fields' values (names without
    "imaptap."; each a list), with the frame's number and time."""
    args = list(extra) + (["-2"] if two_pass else []) + [
        "-r", pcap, "-Y", display_filter, "-T", "pdml"]
    root = ElementTree.fromstring(tshark(args))
    units = []
    for packet in root.iter("packet"):
        frame = {f.get("name"): f.get("show") for f in packet.iter("field")
                 if f.get("name", "").startswith("frame.")}
        for proto in packet.findall("proto"):
            if proto.get("name") != "imaptap":
                continue
            for item in proto.findall("field"):
                unit = {"frame_number": frame["frame.number"],
                        "frame_time_epoch": frame["frame.time_epoch"]}
                for f in [item] + item.findall("field"):
                    name = f.get("name", "").replace("imaptap.", "", 1)
                    unit.setdefault(name, []).append(f.get("show"))
                units.append(unit)
    return units


def frame_fields(pcap, display_filter, names, extra=()):
    """[{name: [values]}] per frame matching the filter."""
    args = list(extra) + ["-r", pcap, "-Y", display_filter, "-T", "fields",
                          "-E", "separator=\t", "-E", "aggregator=\x1f", "-E", "occurrence=a"]
    for n in names:
        args += ["-e", n]
    out = []
    for line in tshark(args).splitlines():
        cols = line.split("\t")
        out.append({n: c.split("\x1f") if c else [] for n, c in zip(names, cols)})
    return out


def client_commands(sent):
    """(tag, command) of every command in what the client sent, reading
    literals as the protocol says (the oracle for the plugin)."""
    out = []
    i = 0
    continued = False
    while i < len(sent):
        j = sent.find(b"\n", i)
        if j < 0:
            break
        line = sent[i:j + 1].rstrip(b"\r\n")
        i = j + 1
        if not continued and line.upper() != b"DONE":
            tag, cmd = (line.split(b" ") + [b""])[:2]
            cmd = cmd.upper()
            if cmd == b"UID":
                cmd += b" " + line.split(b" ")[2].upper()
            out.append((tag.decode(), cmd.decode()))
        m = re.search(rb"\{(\d+)\+?\}$", line)
        continued = bool(m)
        if m:
            i += int(m.group(1))
    return out


def imap_session(port):
    """The session under test, through port; returns the client (with
    every byte it sent)."""
    m = RecordingIMAP4("127.0.0.1", port)
    assert m.login("alice", PASSWORD)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    # a command, a literal's announcement and its data cut across segments
    m.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in (b"S1 SEL", b"ECT INBOX\r\nX2 APPEND INBOX {5", b"+}\r\nhel", b"lo\r\n"):
        m.send(piece)
        time.sleep(0.05)
    while not m.readline().startswith(b"X2 OK"):
        pass
    uid = appenduid(m.append("INBOX", None, None, BODY))         # {N}: waits for +
    # LITERAL+ (Dovecot offers it): the literal right behind its line
    m.send(b"P1 APPEND INBOX {%d+}\r\n" % len(LIT_PLUS_BODY) + LIT_PLUS_BODY + b"\r\n")
    while not m.readline().startswith(b"P1 OK"):
        pass
    typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == BODY, data
    m.idle_done(b"I001", wait=0.3)
    # DONE with the next command in the same write
    m.send(b"I002 IDLE\r\n")
    assert m.readline().startswith(b"+")
    time.sleep(0.2)
    m.send(b"DO")
    time.sleep(0.05)
    m.send(b"NE\r\nN1 NOOP\r\n")
    while not m.readline().startswith(b"N1 "):
        pass
    lines = m.logout_to_eof()
    assert lines[-1].startswith(b"L999 OK"), lines
    return m


class LoopbackCapture:
    """tshark capturing loopback traffic to a port into a pcapng; start()
    returns once a probe connection shows up in the file, stop() once a
    later one does."""

    def __init__(self, path, port):
        self.path, self.port = path, port
        self.proc = subprocess.Popen(
            [TSHARK, "-i", "lo", "-f", "tcp port %d" % port, "-w", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, HOME=HOME))
        self.err = b""
        deadline = time.monotonic() + 30
        while b"Capturing on" not in self.err:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("tshark did not start capturing: %r" % self.err)
            if select.select([self.proc.stderr], [], [], 1)[0]:
                self.err += os.read(self.proc.stderr.fileno(), 4096)
        self.sync()

    def syn_ports(self):
        r = subprocess.run([TSHARK, "-r", self.path, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0",
                            "-T", "fields", "-e", "tcp.srcport"], capture_output=True, text=True,
                           env=dict(os.environ, HOME=HOME))
        return {int(p) for p in r.stdout.split()}

    def sync(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            port = s.getsockname()[1]
            s.close()
            time.sleep(0.3)
            if os.path.exists(self.path) and port in self.syn_ports():
                return
        raise AssertionError("tshark wrote no probe to %s" % self.path)

    def stop(self):
        try:
            self.sync()
        finally:
            self.proc.send_signal(signal.SIGINT)
            self.proc.communicate(timeout=30)


def with_comments(pcap, out, comments):
    """Writes the classic pcap (Ethernet, microseconds) as a pcapng whose
    packets carry the given comments ({frame number: [text, ...]}), as
    imaptap's pcapng does (editcap -a keeps one comment per packet)."""
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    with open(pcap, "rb") as f:
        data = f.read()
    magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert magic == 0xA1B2C3D4
    blocks = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
              block(1, struct.pack("<HHI", linktype, 0, snaplen))]
    off, n = 24, 0
    while off + 16 <= len(data):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, off)
        pkt = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        n += 1
        ts = sec * 1000000 + usec
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen) + pkt
        body += b"\0" * (-len(body) % 4)
        for text in comments.get(n, ()):
            raw = text.encode()
            body += struct.pack("<HH", 1, len(raw)) + raw + b"\0" * (-len(raw) % 4)
        body += struct.pack("<HH", 0, 0)
        blocks.append(block(6, body))
    with open(out, "wb") as f:
        f.write(b"".join(blocks))


def v(unit, name):
    """The unit's (first) value of a field, None when it has none."""
    values = unit.get(name)
    return values[0] if values else None


def kind(units, k):
    return [u for u in units if v(u, "kind") == k]


class PluginTest(ProxyTestCase, unittest.TestCase):
    def check_session(self, pcap, m, extra=()):
        """The plugin's view of one run of imap_session: commands, links,
        latencies as the capture's own times give them. Returns the units."""
        units = units_of(pcap, extra=extra)
        self.assertEqual([u for u in units if not v(u, "kind") and not v(u, "comment")], [])
        # exactly the client's commands, tags and names
        want = client_commands(bytes(m.sent))
        self.assertEqual([(v(u, "tag"), v(u, "command")) for u in kind(units, "command")], want)
        # no line of the literals is shown as a line
        shown = "\n".join(v(u, "line") for u in units if v(u, "line"))
        for text in LITERAL_LINES:
            self.assertNotIn(text.decode(), shown)
        announced = [int(v(u, "literal")) for u in units if v(u, "literal")]
        self.assertEqual(announced, [5, len(BODY), len(LIT_PLUS_BODY), len(BODY)])
        literal = kind(units, "literal-data")
        self.assertEqual(sum(len(bytes.fromhex(v(u, "literal.data").replace(":", "")))
                             for u in literal), 5 + 2 * len(BODY) + len(LIT_PLUS_BODY))
        self.assertEqual([v(u, "for_command") for u in literal][-4:],
                         ["APPEND", "APPEND", "APPEND", None])     # the last: FETCH's answer
        # every tagged completion names its command and links to it
        commands = {(u["frame_number"], v(u, "tag")): u for u in kind(units, "command")}
        completions = kind(units, "completion")
        self.assertEqual([v(c, "tag") for c in completions], [t for t, _ in want])
        for c in completions:
            req = commands[(v(c, "request_in"), v(c, "tag"))]
            self.assertEqual(v(req, "command"), v(c, "command"))
            self.assertEqual(v(req, "response_in"), c["frame_number"])
            self.assertEqual(v(c, "status"), "OK")
            # latency: from the command's frame to this one
            span = float(c["frame_time_epoch"]) - float(req["frame_time_epoch"])
            self.assertAlmostEqual(float(v(c, "latency")), span, delta=2e-6)
        idles = [c for c in completions if v(c, "command") == "IDLE"]
        done = kind(units, "done")
        self.assertEqual([v(d, "for_tag") for d in done], ["I001", "I002"])
        self.assertEqual([v(d, "tag") for d in done], [None, None])   # DONE is no tag
        self.assertEqual(len(idles), 2)
        for i, d in zip(idles, done):
            span = float(i["frame_time_epoch"]) - float(d["frame_time_epoch"])
            self.assertAlmostEqual(float(v(i, "done_to_ok")), span, delta=2e-6)
            self.assertEqual(v(i, "done_in"), d["frame_number"])
            self.assertGreater(float(v(i, "latency")), float(v(i, "done_to_ok")))
        self.assertEqual([v(c, "done_to_ok") for c in completions if v(c, "command") != "IDLE"],
                         [None] * (len(completions) - 2))
        # display filters on the fields
        appends = frame_fields(pcap, 'imaptap.command == "APPEND" && imaptap.request',
                               ["imaptap.tag"], extra=extra)
        self.assertEqual(len(appends), 3)
        self.assertEqual(len(frame_fields(pcap, "imaptap.done", ["frame.number"], extra=extra)), 2)
        return units

    def test_imaptap_capture_of_dovecot(self):
        d = tempfile.mkdtemp(dir=TMP)
        pcap, events = os.path.join(d, "cap.pcap"), os.path.join(d, "events.jsonl")
        px = self.start_proxy(DC.port, extra_args=["--pcap", pcap, "--events", events])
        m = imap_session(px.port)
        px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
        px.stop()
        units = self.check_session(pcap, m)
        # the latencies and DONE->OK are those imaptap measured
        with open(events) as f:
            comps = [json.loads(line) for line in f]
        comps = [r for r in comps if r.get("kind") == "completion"]
        got = kind(units, "completion")
        self.assertEqual([(c["tag"], ("UID " if c.get("uid") else "") + c["command"], c["status"])
                          for c in comps],
                         [(v(u, "tag"), v(u, "command"), v(u, "status")) for u in got])
        for c, u in zip(comps, got):
            self.assertAlmostEqual(float(v(u, "latency")), c["latency_us"] / 1e6, delta=2e-6)
            if c.get("done_to_ok_us") is not None:
                self.assertAlmostEqual(float(v(u, "done_to_ok")), c["done_to_ok_us"] / 1e6,
                                       delta=2e-6)
        self.assertEqual(len([c for c in comps if c.get("done_to_ok_us") is not None]), 2)
        # Wireshark's own dissector reads the literals' lines as commands
        builtin = tshark(["-r", pcap, "-Y", "imap.request", "-T", "fields", "-e", "imap.request"],
                         plugin=None)
        for text in LITERAL_LINES:
            self.assertIn(text.decode(), builtin)
        # one pass (as tshark reads by default) shows the same units
        one = units_of(pcap, two_pass=False)
        strip = ("response_in",)    # a later frame: known on a second pass only
        self.assertEqual([{k: x for k, x in u.items() if k not in strip} for u in one],
                         [{k: x for k, x in u.items() if k not in strip} for u in units])

    def test_proxy_marks_and_comments(self):
        """What the proxy writes beside the packets, a fault held IDLE's
        completion past --done-stall: in a pcap the syslog marks give
        imaptap.fault; in a pcapng the packet comments give imaptap.fault,
        imaptap.anomaly, imaptap.resolved and the proxy's latencies, each
        once per packet."""
        d = tempfile.mkdtemp(dir=TMP)
        for name in ("marks.pcap", "comments.pcapng"):
            pcap = os.path.join(d, name)
            px = self.start_proxy(DC.port, extra_args=[
                "--pcap", pcap, "--done-stall", "1", "--fault", "hold-idle-completion:2s"])
            m = RecordingIMAP4("127.0.0.1", px.port)
            self.assertEqual(m.login("alice", PASSWORD)[0], "OK")
            self.assertEqual(m.select("INBOX")[0], "OK")
            m.idle_done(b"I001", wait=0.1)
            m.logout_to_eof()
            px.wait_for_row(lambda r: r["dir"] == "--" and r["text"].startswith("close"))
            px.stop()
            names = ["frame.number", "imaptap.fault", "imaptap.anomaly", "imaptap.resolved",
                     "imaptap.latency", "imaptap.done_to_ok", "imaptap.command"]
            faults = frame_fields(pcap, 'imaptap.fault == "hold-idle-completion:2s"', names)
            self.assertEqual([r["imaptap.fault"] for r in faults],
                             [["hold-idle-completion:2s"]] * 3, name)
            idle = [u for u in kind(units_of(pcap), "completion") if v(u, "command") == "IDLE"]
            self.assertEqual(len(idle), 1)
            settings = frame_fields(pcap, 'imaptap.comment contains "settings mark"',
                                    ["frame.number"])
            self.assertEqual(settings, [{"frame.number": ["1"]}])
            if name.endswith(".pcap"):
                self.assertGreaterEqual(float(v(idle[0], "done_to_ok")), 2.0)
                self.assertEqual(frame_fields(pcap, "imaptap.anomaly", names), [])
                continue
            stall = frame_fields(pcap, 'imaptap.anomaly == "done-stall"', names)
            self.assertEqual(len(stall), 1)
            self.assertEqual(stall[0]["imaptap.anomaly"], ["done-stall"])
            ok = frame_fields(pcap, 'imaptap.resolved == "done-stall"', names)
            self.assertEqual(len(ok), 1)
            self.assertEqual(ok[0]["frame.number"], [idle[0]["frame_number"]])
            self.assertEqual(ok[0]["imaptap.command"], ["IDLE"])
            # the proxy's figures (to the microsecond), once each
            self.assertEqual(len(ok[0]["imaptap.latency"]), 1)
            self.assertEqual(len(ok[0]["imaptap.done_to_ok"]), 1)
            self.assertGreaterEqual(float(ok[0]["imaptap.done_to_ok"][0]), 2.0)
            for u in kind(units_of(pcap), "completion"):
                span = float(u["frame_time_epoch"]) - float(
                    frame_fields(pcap, "frame.number == %s" % v(u, "request_in"),
                                 ["frame.time_epoch"])[0]["frame.time_epoch"][0])
                got = frame_fields(pcap, "frame.number == %s" % u["frame_number"], names)[0]
                self.assertAlmostEqual(float(got["imaptap.latency"][0]), span, delta=1.5e-6)

    def test_tshark_capture_of_dovecot(self):
        """A capture made by tshark on loopback, straight to Dovecot's
        port (not 143): found by the server's greeting, or chosen with -d."""
        pcap = os.path.join(tempfile.mkdtemp(dir=TMP), "lo.pcapng")
        cap = LoopbackCapture(pcap, DC.port)
        try:
            m = imap_session(DC.port)
        finally:
            cap.stop()
        try:
            units = self.check_session(pcap, m)
        except AssertionError as e:
            # what tshark made of the capture, to tell a missed packet from
            # a session the plugin did not take for IMAP
            frames = tshark(["-r", pcap, "-T", "fields", "-e", "frame.number", "-e", "tcp.stream",
                             "-e", "tcp.flags.str", "-e", "_ws.col.Protocol", "-e", "tcp.len"])
            raise AssertionError("%s\nframes (number, stream, flags, protocol, length):\n%s"
                                 % (e, frames[:6000])) from None
        self.assertEqual(v(units[0], "kind"), "untagged")      # the greeting
        self.assertEqual(v(units[0], "untagged"), "OK")
        # lines cut across segments were put together by TCP reassembly
        joined = frame_fields(pcap, "imaptap && tcp.segments", ["frame.number"])
        self.assertGreaterEqual(len(joined), 3)
        # read as Wireshark loads a file: a first pass without a tree
        # (no field can be read back there), then the packet list
        listing = tshark(["-2", "-r", pcap])
        self.assertRegex(listing, r" IMAP \d+ C: S1 SELECT INBOX\n")
        self.assertRegex(listing, r" IMAP \d+ C: X2 APPEND INBOX \{5\+\} \| \{literal 3 bytes\}\n")
        self.assertRegex(listing, r" IMAP \d+ C: DONE \| N1 NOOP\n")
        # by port, the heuristic off
        off = ["--disable-heuristic", "imaptap_tcp"]
        self.assertEqual(units_of(pcap, extra=off), [])
        self.assertEqual(units_of(pcap, extra=off + ["-d", "tcp.port==%d,imaptap" % DC.port]),
                         units)
        # the preference takes ports too
        self.assertEqual(units_of(pcap, extra=off + ["-o", "imaptap.ports:143,%d" % DC.port]),
                         units)

    def test_scenario_and_packet_comments(self):
        d = tempfile.mkdtemp(dir=TMP)
        pcap = os.path.join(d, "gmail.pcap")
        r = run_imaptap(["compile", os.path.join(ROOT, "tests", "scenarios",
                                                 "gmail-ignores-done.imap"), "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        units = units_of(pcap)
        self.assertEqual([(v(u, "tag"), v(u, "command")) for u in kind(units, "command")],
                         [("a0", "CAPABILITY"), ("a1", "LOGIN"), ("a2", "SELECT"), ("a3", "IDLE"),
                          ("a4", "LOGOUT")])
        idle = [u for u in kind(units, "completion") if v(u, "command") == "IDLE"][0]
        self.assertEqual(v(idle, "done_to_ok"), "30.001000000")
        self.assertEqual(v(idle, "latency"), "90.002000000")
        slow = frame_fields(pcap, "imaptap.latency > 1", ["frame.number"])
        self.assertEqual(slow, [{"frame.number": [idle["frame_number"]]}])
        # compiled as pcapng, the same figures come from its comments
        png = os.path.join(d, "gmail.pcapng")
        r = run_imaptap(["compile", os.path.join(ROOT, "tests", "scenarios",
                                                 "gmail-ignores-done.imap"), "-o", png])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(frame_fields(png, "imaptap.latency > 1",
                                      ["frame.number", "imaptap.latency", "imaptap.done_to_ok",
                                       "frame.comment"])[0],
                         {"frame.number": [idle["frame_number"]], "imaptap.latency": ["90.002000000"],
                          "imaptap.done_to_ok": ["30.001000000"],
                          "frame.comment": ["imaptap latency 90002.000 ms: a3 IDLE OK",
                                            "imaptap done-to-ok 30.001 s: a3 IDLE"]})
        done = kind(units, "done")[0]
        self.assertEqual((v(done, "tag"), v(done, "for_tag")), (None, "a3"))
        # port 143 is the plugin's; the built-in dissector gets it back by
        # -d or when the preference names other ports
        self.assertEqual(tshark(["-r", pcap, "-Y", "imap"]), "")
        builtin = tshark(["-r", pcap, "-Y", "imap", "-d", "tcp.port==143,imap"])
        self.assertEqual(len(builtin.splitlines()), len(units))
        self.assertEqual(units_of(pcap, extra=["-o", "imaptap.ports:10143"]), [])
        self.assertEqual(tshark(["-r", pcap, "-Y", "imap", "-o", "imaptap.ports:10143"]), builtin)

        # comments as imaptap writes them, on the DONE and the completion
        f_done, f_ok = done["frame_number"], idle["frame_number"]
        noted = os.path.join(d, "noted.pcapng")
        # editcap's way (one comment on a packet) ...
        subprocess.run(["editcap", "-a", "%s:imaptap anomaly done-stall: DONE sent 5.000s ago, "
                        "no tagged completion" % f_done, pcap, noted],
                       check=True, capture_output=True)
        stalls = frame_fields(noted, 'imaptap.anomaly == "done-stall"', ["frame.number"])
        self.assertEqual(stalls, [{"frame.number": [f_done]}])
        # ... and several on one packet, as imaptap writes them
        with_comments(pcap, noted, {
            int(f_done): ["imaptap anomaly done-stall: DONE sent 5.000s ago, no tagged completion",
                          "imaptap fault hold-idle-completion:30s: held a3 OK"],
            int(f_ok): ["imaptap resolved done-stall: completed after 30.001 s",
                        "imaptap latency 12.345 ms: a3 IDLE OK",
                        "imaptap done-to-ok 1.234 s: a3 IDLE",
                        "not one of imaptap's",
                        "imaptap anomaly {bad}\x01: binary \xff"]})
        names = ["frame.number", "imaptap.anomaly", "imaptap.fault", "imaptap.resolved",
                 "imaptap.latency", "imaptap.done_to_ok", "imaptap.comment"]
        stalls = frame_fields(noted, 'imaptap.anomaly == "done-stall"', names)
        self.assertEqual([(u["frame.number"], u["imaptap.anomaly"], u["imaptap.fault"])
                          for u in stalls],
                         [([f_done], ["done-stall"], ["hold-idle-completion:30s"])])
        ok = frame_fields(noted, "frame.number == %s" % f_ok, names)[0]
        self.assertEqual(ok["imaptap.resolved"], ["done-stall"])
        # the comment's figures, each once (not beside the computed ones)
        self.assertEqual(ok["imaptap.latency"], ["0.012345000"])
        self.assertEqual(ok["imaptap.done_to_ok"], ["1.234000000"])
        self.assertEqual(len(ok["imaptap.comment"]), 4)
        self.assertEqual(ok["imaptap.anomaly"], ["{bad}\\x01"])
        self.assertEqual(frame_fields(noted, "imaptap.latency > 1", names), [])
        # an anomaly is an expert item too
        out = tshark(["-r", noted, "-q", "-z", "expert,warn"])
        self.assertIn("done-stall", out)

    def test_authenticate_idle_and_layers(self):
        """SASL responses, a literal in LOGIN, IDLE refused then a stray
        DONE, DONE before the +, literals in a server response (literal8
        too), braces in free text, STARTTLS followed by plaintext (imaptap's
        capture) and by TLS (a capture of the wire)."""
        d = tempfile.mkdtemp(dir=TMP)
        src, pcap = os.path.join(d, "edge.imap"), os.path.join(d, "edge.pcap")
        with open(src, "w") as f:
            f.write(EDGE_SCRIPT)
        r = run_imaptap(["compile", src, "-o", pcap])
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [(v(u, "kind"), v(u, "tag") or v(u, "for_tag"), v(u, "command") or v(u, "for_command"),
                v(u, "literal")) for u in units_of(pcap)]
        self.assertEqual(got, [
            ("untagged", None, None, None),
            ("command", "a1", "AUTHENTICATE", None),
            ("continuation-request", "a1", "AUTHENTICATE", None),
            ("sasl-response", "a1", "AUTHENTICATE", None),
            ("completion", "a1", "AUTHENTICATE", None),
            ("command", "a2", "AUTHENTICATE", None),
            ("continuation-request", "a2", "AUTHENTICATE", None),
            ("sasl-response", "a2", "AUTHENTICATE", None),
            ("continuation-request", "a2", "AUTHENTICATE", None),
            ("sasl-response", "a2", "AUTHENTICATE", None),
            ("completion", "a2", "AUTHENTICATE", None),
            ("command", "a3", "LOGIN", "6"),
            ("continuation-request", "a3", "LOGIN", None),
            ("literal-data", "a3", "LOGIN", None),
            ("after-literal", "a3", "LOGIN", None),
            ("completion", "a3", "LOGIN", None),
            ("command", "a4", "IDLE", None),
            ("completion", "a4", "IDLE", None),
            ("stray-done", None, None, None),
            ("completion", "DONE", "DONE", None),      # the server took it for a tag
            ("command", "a5", "IDLE", None),
            ("done", "a5", "IDLE", None),
            ("continuation-request", "a5", "IDLE", None),
            ("completion", "a5", "IDLE", None),
            ("command", "a6", "SELECT", None),
            ("untagged", None, None, "14"),
            ("literal-data", None, None, None),
            ("after-literal", None, None, "3"),
            ("literal-data", None, None, None),
            ("after-literal", None, None, None),
            ("untagged", None, None, None),            # "{5}" in free text
            ("completion", "a6", "SELECT", None),
            ("command", "a7", "STARTTLS", None),
            ("completion", "a7", "STARTTLS", None),
            ("command", "a8", "CAPABILITY", None),      # plaintext after STARTTLS
            ("untagged", None, None, None),
            ("completion", "a8", "CAPABILITY", None),
            ("untagged", None, None, None),
            ("command", "b1", "STARTTLS", None),
            ("completion", "b1", "STARTTLS", None),
            ("opaque", None, None, None),               # TLS after STARTTLS
            ("opaque", None, None, None),
        ])
        notes = tshark(["-r", pcap, "-q", "-z", "expert,note"])
        self.assertIn("DONE before the server's + to IDLE", notes)
        self.assertIn("DONE while no IDLE is in progress", notes)

    def test_hostile_scripts(self):
        """Literal claims past the end, binary, a 100 KB and a 2 MB line,
        a stray DONE, a line without its end: tshark reads it all, no Lua
        error, no internal error of the plugin, no endless loop."""
        d = tempfile.mkdtemp(dir=TMP)
        long_line = "x1 NOOP " + "A" * 100000
        huge = "B" * (2 * 1024 * 1024)
        script = "\n".join([
            "S: * OK hostile",
            "C: DONE",
            "S: DONE BAD no such command",
            "C= \\x00\\x01\\xff\\xfe binary (\\x7f) {3}\\r\\n",
            "C= abc\\r\\n",
            "C: " + long_line,
            "S: x1 OK " + "C" * 50000,
            "C: q1 LOGIN {5}",
            "C~ alice",
            "C=  {18446744073709551616}\\r\\n",
            "C: t\\x01 \"{4}",
            "S: * 1 FETCH (BODY[] ~{4}",
            "S= \\x00\\x00\\x00\\x00)\\r\\n",
            "S= " + huge,
            "S= \\r\\n",
            "C= h1 APPEND INBOX {99999999999}\\r\\n",
            "C: a1 LOGOUT",
            "C: DONE",
            "C= z1 NOOP",
            "close client",
            "=== session two",
            "S= * 1 FETCH (BODY[] {99999999999}\\r\\n",
            "S: a1 OK not a completion",
            "S= \\xff\\xfe",
            "=== session three",
            "S= +",
            "C= \\r\\n\\r\\n\\n\\n{",
            "S= " + "\\r" * 1000,
        ]) + "\n"
        src = os.path.join(d, "hostile.imap")
        with open(src, "w") as f:
            f.write(script)
        pcap = os.path.join(d, "hostile.pcap")
        r = run_imaptap(["compile", src, "-o", pcap], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for extra in ([], ["-2"], ["-o", "tcp.desegment_tcp_streams:FALSE"]):
            out = tshark(extra + ["-r", pcap, "-V"], timeout=120)
            self.assertIn("IMAP (imaptap)", out)
            self.assertEqual(tshark(extra + ["-r", pcap, "-Y", "imaptap.internal.expert"]), "")
        units = units_of(pcap)
        cmds = [(v(u, "tag"), v(u, "command")) for u in kind(units, "command")]
        # the APPEND's claim swallows the rest of the client's bytes
        self.assertEqual(cmds, [("x1", "NOOP"), ("q1", "LOGIN"), ("h1", "APPEND")])
        # the stray DONE is no command; the server's answer is tied to it
        stray = kind(units, "stray-done")
        self.assertEqual([v(u, "tag") for u in stray], [None])
        answer = [u for u in kind(units, "completion") if v(u, "tag") == "DONE"]
        self.assertEqual(v(answer[0], "request_in"), stray[0]["frame_number"])
        # the line of 2 MB: shown in pieces
        pieces = kind(units, "line-piece")
        self.assertGreater(len(pieces), 1)


if __name__ == "__main__":
    main()
