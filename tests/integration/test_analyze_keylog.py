#!/usr/bin/env python3
"""imaptap analyze of a client's own TLS capture: a real tcpdump on the
loopback records real clients (Python's imaplib, curl, and openssl
s_client for KeyUpdate) writing key logs, against a real Dovecot with TLS, over implicit TLS and STARTTLS,
TLS 1.3 and TLS 1.2, AES-GCM and ChaCha20-Poly1305. With --keylog (or the
secrets inside a pcapng, editcap --inject-secrets) analyze shows each
session's commands and completions as the clients saw them; without, it
names each session and says what to do; a damaged record stops the
session's decryption there, with nothing of the damaged record shown.

    python3 tests/integration/test_analyze_keylog.py [--imaptap build/imaptap] [-v]
"""

import imaplib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import pcapfile  # noqa: E402
from memory_tls import MemoryTLS, tls_contexts  # noqa: E402
from certs import TestPKI  # noqa: E402
from imaptap import check_binary, main, parse_timeline, run_imaptap  # noqa: E402
from imaptap import module_dovecot, module_tmpdir, sanitizer_reports  # noqa: E402
from procs import free_port  # noqa: E402

PASSWORD = "Keylog-S3cret-7"
TCPDUMP = shutil.which("tcpdump") or "/usr/sbin/tcpdump"
EDITCAP = shutil.which("editcap") or "/usr/bin/editcap"
WORK = None
DC = None
PCAP = None
KEYS = None
# client port -> what the session was: name, starttls, version, cipher,
# the commands it completed in order
SESSIONS = {}


class Tcpdump:
    """tcpdump writing the loopback's packets of the given ports, packet
    by packet (-U), as root without dropping privileges (-Z root)."""

    def __init__(self, path, ports):
        self.path = path
        expr = " or ".join("port %d" % p for p in ports)
        self.proc = subprocess.Popen(
            [TCPDUMP, "-i", "lo", "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-w",
             path, expr],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sync(self, probe_port, timeout=30):
        """Returns once the file holds a probe connection made now: then
        it holds every packet before it (tcpdump prints "listening on"
        before its filter is in place, and writes what it read late)."""
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("tcpdump exited: %s" % self.proc.stderr.read().decode())
            socket.create_connection(("127.0.0.1", probe_port), timeout=5).close()
            time.sleep(0.3)
            if os.path.exists(self.path) and os.path.getsize(self.path) > max(size, 24):
                return
        raise AssertionError("tcpdump wrote no probe to %s in %d s" % (self.path, timeout))

    def stop(self, probe_port):
        self.sync(probe_port)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        err = err.decode()
        if "0 packets dropped by kernel" not in err:
            raise AssertionError("tcpdump dropped packets: %s" % err)


def context(version, ciphers=None):
    ctx = ssl.create_default_context(cafile=PKI.ca_cert)
    ctx.keylog_filename = KEYS
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def python_session(name, starttls, version, ciphers=None):
    """LOGIN, SELECT, FETCH of a whole message, LOGOUT; over implicit TLS
    or after STARTTLS."""
    ctx = context(version, ciphers)
    if starttls:
        m = imaplib.IMAP4("127.0.0.1", DC.port)
        m.starttls(ssl_context=ctx)
    else:
        m = imaplib.IMAP4_SSL("127.0.0.1", DC.imaps_port, ssl_context=ctx)
    port = m.sock.getsockname()[1]
    tls = m.sock.version(), m.sock.cipher()[0]
    assert m.login("alice", PASSWORD)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    fetch_at = time.time()
    typ, data = m.fetch("1", "(BODY[])")
    assert typ == "OK" and b"Body of message 1." in data[0][1], data
    m.logout()
    commands = (["CAPABILITY", "STARTTLS"] if starttls else []) + \
        ["CAPABILITY", "LOGIN", "SELECT", "FETCH", "LOGOUT"]
    SESSIONS[port] = {"name": name, "starttls": starttls, "version": tls[0],
                      "cipher": tls[1], "commands": commands, "fetch_at": fetch_at}


def curl_session(name, starttls, args, version, cipher):
    """curl's own IMAP: AUTHENTICATE, SELECT, a FETCH; from a port
    chosen here, to know the session by."""
    port = free_port("127.0.0.1")
    url = ("imap://127.0.0.1:%d/INBOX" % DC.port if starttls
           else "imaps://127.0.0.1:%d/INBOX" % DC.imaps_port)
    r = subprocess.run(["curl", "-sS", "--cacert", PKI.ca_cert, "--local-port", str(port),
                        "-u", "alice:" + PASSWORD, url, "-X", "FETCH 1 BODY[]"]
                       + (["--ssl-reqd"] if starttls else []) + args,
                       env=dict(os.environ, SSLKEYLOGFILE=KEYS), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    commands = ["CAPABILITY"] + (["STARTTLS", "CAPABILITY"] if starttls else []) + \
        ["AUTHENTICATE", "SELECT", "FETCH", "LOGOUT"]
    SESSIONS[port] = {"name": name, "starttls": starttls, "version": version,
                      "cipher": cipher, "commands": commands}


def openssl_key_updates(name):
    """openssl s_client over TLS 1.3, sending a KeyUpdate ('k') and one
    that asks the server for its own ('K') between commands: the traffic
    secrets move on in both directions. Its first key share (X448) is
    not one the server takes: a HelloRetryRequest, with a
    ChangeCipherSpec each way before the second ClientHello."""
    port = free_port("127.0.0.1")
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % DC.imaps_port,
                          "-bind", "127.0.0.1:%d" % port, "-CAfile", PKI.ca_cert,
                          "-keylogfile", KEYS, "-tls1_3", "-groups", "X448:P-256", "-crlf"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    for line in (b"a1 LOGIN alice " + PASSWORD.encode(), b"k", b"a2 SELECT INBOX", b"K",
                 b"a3 FETCH 1 BODY[]", b"a4 LOGOUT"):
        time.sleep(0.3)  # each line its own read: a command letter alone
        p.stdin.write(line + b"\n")
        p.stdin.flush()
    time.sleep(0.5)
    out = p.communicate(timeout=30)[0]
    assert out.count(b"KEYUPDATE") == 2 and b"a4 OK" in out, out
    SESSIONS[port] = {"name": name, "starttls": False, "version": "TLSv1.3",
                      "cipher": "TLS_AES_256_GCM_SHA384",
                      "commands": ["LOGIN", "SELECT", "FETCH", "LOGOUT"]}


def setUpModule():
    global WORK, DC, PKI, PCAP, KEYS
    check_binary()
    if os.geteuid() != 0:
        raise AssertionError("capturing on lo with tcpdump needs root here")
    WORK = module_tmpdir("imaptap-keylog-")
    PKI = TestPKI(os.path.join(WORK, "pki"))
    crt, key = PKI.server("localhost", "127.0.0.1")
    # X448 left out: a client leading with it is asked to retry
    DC = module_dovecot(users={"alice": PASSWORD}, ssl=True, ssl_cert=crt, ssl_key=key,
                        messages=2, extra_conf="ssl_curve_list = X25519:P-256:P-384\n")
    PCAP = os.path.join(WORK, "f.pcap")
    KEYS = os.path.join(WORK, "keys.log")
    dump = Tcpdump(PCAP, [DC.port, DC.imaps_port])
    try:
        dump.sync(DC.port)
        v13, v12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
        python_session("py-imaps-1.3", False, v13)
        python_session("py-starttls-1.3", True, v13)
        python_session("py-imaps-1.2-aes128", False, v12, "ECDHE-ECDSA-AES128-GCM-SHA256")
        python_session("py-starttls-1.2-chacha", True, v12, "ECDHE-ECDSA-CHACHA20-POLY1305")
        curl_session("curl-imaps-1.3-chacha", False,
                     ["--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"], "TLSv1.3",
                     "TLS_CHACHA20_POLY1305_SHA256")
        curl_session("curl-starttls-1.3-aes128", True,
                     ["--tls13-ciphers", "TLS_AES_128_GCM_SHA256"], "TLSv1.3",
                     "TLS_AES_128_GCM_SHA256")
        curl_session("curl-imaps-1.2-aes256", False,
                     ["--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"],
                     "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
        openssl_key_updates("openssl-keyupdate-1.3")
    finally:
        dump.stop(DC.port)


IANA = {"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}


def analyze(*args):
    r = run_imaptap(["analyze", "--color", "never", "--width", "0"] + list(args), timeout=120)
    if sanitizer_reports(r.stderr):
        raise AssertionError("sanitizer: %s" % r.stderr)
    return r


def events_by_port(text):
    """The event log's records, by the client port of their session."""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    ports = {r["session"]: int(r["client"].rsplit(":", 1)[1])
             for r in records if r["kind"] == "session-open"}
    out = {}
    for r in records:
        if r["session"] in ports:
            out.setdefault(ports[r["session"]], []).append(r)
    return out


def flip_byte(src, dst, port, after):
    """A copy of the classic pcap src with one ciphertext byte changed: in
    the first segment the server sent to port after the time after (the
    FETCH answer)."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    assert struct.unpack_from("<I", data, 0)[0] == 0xa1b2c3d4
    assert struct.unpack_from("<I", data, 20)[0] == 1  # Ethernet
    at, best = 24, None
    while at + 16 <= len(data) and best is None:
        sec, usec, incl = struct.unpack_from("<III", data, at)
        frame = at + 16
        ihl = (data[frame + 14] & 15) * 4
        tcp = frame + 14 + ihl
        doff = (data[tcp + 12] >> 4) * 4
        payload = tcp + doff
        dport = struct.unpack_from(">H", data, tcp + 2)[0]
        size = frame + incl - payload
        if dport == port and size > 0 and sec + usec / 1e6 > after:
            best = (payload, size)
        at = frame + incl
    payload, size = best
    assert data[payload] == 23, "the segment does not start with a TLS record"
    data[payload + 5 + 20] ^= 0x40  # inside the first record's ciphertext
    with open(dst, "wb") as f:
        f.write(data)


class KeylogTest(unittest.TestCase):
    def check_decrypted(self, r):
        self.assertEqual(r.returncode, 0, r.stderr)
        by_port = events_by_port(r.stdout)
        for port, want in SESSIONS.items():
            records = by_port.get(port)
            self.assertIsNotNone(records, "no session from port %d (%s)" % (port, want["name"]))
            got = [(c["command"], c["status"]) for c in records if c["kind"] == "completion"]
            self.assertEqual(got, [(c, "OK") for c in want["commands"]],
                             "%s: %s" % (want["name"], r.stderr))
            tls = [x for x in records if x["kind"] == "tls"]
            self.assertEqual(len(tls), 1, want["name"])
            self.assertEqual((tls[0]["leg"], tls[0]["version"], tls[0]["cipher"]),
                             ("capture", want["version"], IANA.get(want["cipher"], want["cipher"])),
                             want["name"])
            # the whole message came through, as a literal of its size
            sizes = [x["literal_length"] for x in records
                     if x["kind"] == "literal" and x["dir"] == "s2c" and x["last"]]
            self.assertEqual(len(sizes), 1, want["name"])
            self.assertGreater(sizes[0], 150, want["name"])
            self.assertFalse([x for x in records if x["kind"] == "anomaly"], want["name"])
        self.assertNotIn("not decrypted", r.stderr)

    def test_keylog_decrypts_every_session(self):
        """Every session, every version and cipher: the commands and
        completions the clients saw, the TLS row naming what was used."""
        self.assertEqual(len(SESSIONS), 8)
        self.check_decrypted(analyze(PCAP, "--keylog", KEYS, "--events", "-"))

    def test_pcapng_secrets(self):
        """editcap --inject-secrets: the pcapng carries the key log, and
        analyze reads it without --keylog."""
        ng = os.path.join(WORK, "with-secrets.pcapng")
        subprocess.run([EDITCAP, "--inject-secrets", "tls," + KEYS, PCAP, ng], check=True,
                       capture_output=True)
        self.check_decrypted(analyze(ng, "--events", "-"))

    def test_handshake_secrets_not_needed(self):
        """A key log with only the TLS 1.3 traffic secrets (as some
        clients write) still decrypts: the encrypted handshake is passed
        over."""
        lean = os.path.join(WORK, "lean.log")
        with open(KEYS) as f, open(lean, "w") as out:
            out.writelines(x for x in f if "HANDSHAKE" not in x)
        self.check_decrypted(analyze(PCAP, "--keylog", lean, "--events", "-"))

    def test_without_secrets(self):
        """Each TLS session is named on the timeline (client, server port,
        client random) with what to do; nothing of its TLS is shown."""
        r = analyze(PCAP)
        # the STARTTLS sessions' plain start reads as IMAP
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = parse_timeline(r.stdout)
        named = [x["text"] for x in rows if "not decrypted" in x["text"]]
        self.assertEqual(len(named), len(SESSIONS), r.stdout)
        with open(KEYS) as f:
            randoms = {line.split()[1] for line in f if line.strip() and line[0] != "#"}
        for port in SESSIONS:
            row = [x for x in named if "127.0.0.1:%d " % port in x]
            self.assertEqual(len(row), 1, (port, named))
            random = row[0].split("client_random ")[1].split(")")[0]
            self.assertIn(random, randoms)
            self.assertIn("--keylog FILE", row[0])
            self.assertIn("SSLKEYLOGFILE", row[0])
        self.assertIn("%d session(s) hold IMAP inside TLS that cannot be read" % len(SESSIONS),
                      r.stderr)
        self.assertFalse([x for x in rows if x["dir"] == "C>" and x["text"].split()[1:2] in
                          (["LOGIN"], ["SELECT"], ["AUTHENTICATE"])], r.stdout)
        # implicit TLS alone: nothing in it reads, which is an error
        implicit = next(p for p, s in SESSIONS.items() if not s["starttls"])
        events = analyze(PCAP, "--keylog", KEYS, "--events", "-").stdout
        number = next(x["session"] for x in map(json.loads, events.splitlines())
                      if x["kind"] == "session-open" and x["client"].endswith(":%d" % implicit))
        r = analyze(PCAP, "--session", str(number), "--quiet")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("1 session(s) hold IMAP inside TLS that cannot be read", r.stderr)

    def test_keylog_of_other_sessions(self):
        """Secrets of some sessions only, and lines of the wrong length:
        the rest are named, the bad lines counted, nothing breaks."""
        partial = os.path.join(WORK, "partial.log")
        wanted = next(p for p, s in SESSIONS.items() if s["name"] == "py-imaps-1.3")
        with open(KEYS) as f:
            keep = [x for x in f.read().splitlines() if x and not x.startswith("#")]
        # the randoms of the session wanted come from the run without keys
        plain = analyze(PCAP).stdout
        row = next(x for x in plain.splitlines()
                   if "127.0.0.1:%d " % wanted in x and "client_random" in x)
        random = row.split("client_random ")[1].split(")")[0]
        with open(partial, "w") as out:
            out.write("# only one session\n")
            out.writelines(x + "\n" for x in keep if random in x)
            out.write("CLIENT_RANDOM %s %s\n" % ("ab" * 31, "cd" * 48))     # short random
            out.write("CLIENT_RANDOM %s %s\n" % ("ab" * 32, "cd" * 47))     # short secret
            out.write("CLIENT_TRAFFIC_SECRET_0 %s %s\n" % ("ab" * 32, "zz" * 32))  # not hex
        r = analyze(PCAP, "--keylog", partial)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("3 line(s) of the key log do not read", r.stderr)
        self.assertIn("%d session(s) hold IMAP inside TLS" % (len(SESSIONS) - 1), r.stderr)
        rows = parse_timeline(r.stdout)
        sessions_shown = {x["session"] for x in rows if x["dir"] == "C>" and
                          x["text"].endswith("SELECT INBOX")}
        self.assertEqual(len(sessions_shown), 1, r.stdout)
        self.assertEqual(len([x for x in rows if "not decrypted" in x["text"] and
                              "holds no" in x["text"]]), len(SESSIONS) - 1, r.stdout)

    def test_damaged_record(self):
        """One ciphertext byte changed in the server's FETCH answer: the
        session is undecryptable from that record on, the rows before it
        stand, nothing of the damaged record or after it is shown."""
        port = next(p for p, s in SESSIONS.items() if s["name"] == "py-imaps-1.3")
        damaged = os.path.join(WORK, "damaged.pcap")
        flip_byte(PCAP, damaged, port, SESSIONS[port]["fetch_at"])
        r = analyze(damaged, "--keylog", KEYS, "--events", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        records = events_by_port(r.stdout)[port]
        got = [c["command"] for c in records if c["kind"] == "completion"]
        self.assertEqual(got, ["CAPABILITY", "LOGIN", "SELECT"], r.stderr)
        notes = [x["text"] for x in records if x["kind"] == "notice"
                 and "undecryptable from here" in x["text"]]
        self.assertEqual(len(notes), 1, records)
        self.assertIn("of the server's encrypted stream does not authenticate", notes[0])
        self.assertFalse([x for x in records if x["kind"] == "line" and x["dir"] == "s2c"
                          and "FETCH" in x.get("text", "")], records)
        self.assertIn("1 TLS session(s) undecryptable", r.stderr)
        # the other sessions are untouched
        others = events_by_port(r.stdout)
        for p, want in SESSIONS.items():
            if p != port:
                self.assertEqual(len([c for c in others[p] if c["kind"] == "completion"]),
                                 len(want["commands"]), want["name"])

    def test_keylog_unreadable(self):
        r = analyze(PCAP, "--keylog", os.path.join(WORK, "no-such.log"))
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("--keylog", r.stderr)
        self.assertIn("SSLKEYLOGFILE", r.stderr)
        self.assertEqual(r.stdout, "")


SCRIPT = [(1, b"* OK ready\r\n"), (0, b"a1 LOGIN alice pw\r\n"), (1, b"a1 OK in\r\n"),
          (0, b"a2 NOOP\r\n"), (1, b"a2 OK done\r\n"), (0, b"a3 LOGOUT\r\n"),
          (1, b"* BYE\r\na3 OK bye\r\n")]


def memory_tls(keylog, version, ciphers=None):
    """A TLS connection made in memory with Python's ssl, its key log
    written: [(side, bytes)] as each side sent them (0 the client), the
    handshake then SCRIPT, each line in a record of its own."""
    cctx, sctx = tls_contexts(PKI, "memory")
    cctx.keylog_filename = keylog
    cctx.minimum_version = cctx.maximum_version = version
    if ciphers:
        cctx.set_ciphers(ciphers)
    out = []
    tls = MemoryTLS(cctx, sctx, lambda side, data: out.append((side, data)))
    handshake = len(out)
    for side, line in SCRIPT:
        tls.say(side, line)
    return out, handshake


def write_flow(path, chunks, split=0, gap_at=None, end=True):
    """chunks as a pcap of one connection to port 993: split > 0 cuts
    every chunk into segments of that size; gap_at (an index) leaves that
    chunk out of the capture; end=False stops without FIN."""
    flow = pcapfile.TcpFlow((bytes([10, 0, 0, 1]), 50100), (bytes([10, 0, 0, 2]), 993))
    flow.open()
    for i, (side, data) in enumerate(chunks):
        if i == gap_at:
            flow.seq[side] += len(data)  # sent, not captured; acknowledged after
            continue
        step = split or len(data)
        for at in range(0, len(data), step):
            flow.send(side, data[at:at + step])
    if end:
        flow.close()
    pcapfile.write_pcap(path, flow.records)


class HostileCaptureTest(unittest.TestCase):
    """Captures whose TLS is cut up, cut off, damaged or lying, made from a
    TLS connection in memory: the same lines whatever the segmentation,
    and a reason, never garbage, for the rest."""

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(WORK, "hostile")
        os.makedirs(cls.dir, exist_ok=True)
        cls.keys = os.path.join(cls.dir, "keys.log")
        cls.tls13 = memory_tls(cls.keys, ssl.TLSVersion.TLSv1_3)
        cls.tls12 = memory_tls(cls.keys, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305")

    def run_flow(self, name, chunks, **kw):
        path = os.path.join(self.dir, name + ".pcap")
        write_flow(path, chunks, **kw)
        r = analyze(path, "--keylog", self.keys, "--events", "-")
        records = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        lines = [(x["dir"], x["text"]) for x in records if x["kind"] == "line"]
        notes = [x["text"] for x in records if x["kind"] == "notice"]
        return r, lines, notes

    def test_any_segmentation(self):
        for version, (chunks, _) in (("1.3", self.tls13), ("1.2", self.tls12)):
            r, whole, _ = self.run_flow("whole" + version, chunks)
            tls = [json.loads(x) for x in r.stdout.splitlines() if '"kind":"tls"' in x]
            self.assertEqual([(x["version"], x["sni"]) for x in tls],
                             [("TLSv" + version, "localhost")], r.stdout)
            self.assertEqual(len(whole), 8, whole)
            self.assertEqual(whole[-1], ("s2c", "a3 OK bye"))
            for split in (1, 7, 100):
                r, lines, notes = self.run_flow("split%d-%s" % (split, version), chunks,
                                                split=split)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(lines, whole, (version, split))
            # all of each side's records in one segment
            merged = []
            for side, data in chunks:
                if merged and merged[-1][0] == side:
                    merged[-1] = (side, merged[-1][1] + data)
                else:
                    merged.append((side, data))
            self.assertEqual(self.run_flow("merged" + version, merged)[1], whole)

    def test_record_too_long(self):
        chunks, handshake = self.tls13
        body = chunks[:handshake + 2] + [(1, b"\x17\x03\x03\x41\x01" + b"\x00" * 40)] + \
            chunks[handshake + 2:]
        r, lines, notes = self.run_flow("too-long", body)
        self.assertEqual(lines, [("s2c", "* OK ready"), ("c2s", "a1 LOGIN alice **")])
        self.assertTrue([x for x in notes if "record of 16641 bytes, more than TLS allows"
                         in x and "undecryptable from here" in x], notes)

    def test_not_tls(self):
        chunks, handshake = self.tls12
        body = chunks[:handshake + 1] + [(1, b"* OK plain text where TLS was\r\n")]
        r, lines, notes = self.run_flow("not-tls", body)
        self.assertEqual(lines, [("s2c", "* OK ready")])
        self.assertTrue([x for x in notes if "bytes that are no TLS record (2a 20 4f)" in x],
                        notes)

    def test_cut_short(self):
        chunks, handshake = self.tls13
        side, last = chunks[-1]
        r, lines, notes = self.run_flow("cut", chunks[:-1] + [(side, last[:len(last) // 2])],
                                        end=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(lines[-1], ("c2s", "a3 LOGOUT"))
        self.assertTrue([x for x in notes if "the server's last TLS record is cut short after"
                         in x], notes)

    def test_gap(self):
        chunks, handshake = self.tls12
        r, lines, notes = self.run_flow("gap", chunks, gap_at=handshake + 3)  # a2 NOOP
        self.assertEqual(lines, [("s2c", "* OK ready"), ("c2s", "a1 LOGIN alice **"),
                                 ("s2c", "a1 OK in")])
        self.assertTrue([x for x in notes if "missing from the capture: TLS cannot be followed"
                         in x], notes)

    def test_ciphersuite_not_decrypted(self):
        keys = os.path.join(self.dir, "cbc.log")
        chunks, _ = memory_tls(keys, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256")
        path = os.path.join(self.dir, "cbc.pcap")
        write_flow(path, chunks)
        r = analyze(path, "--keylog", keys)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("uses cipher suite 0xc023; analyze decrypts AES-GCM and "
                      "ChaCha20-Poly1305", r.stdout)


if __name__ == "__main__":
    main()
