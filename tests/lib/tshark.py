"""Wireshark's tshark as an independent judge of imaptap's pcap files."""

import re
import subprocess

TSHARK = "tshark"


def run(args, timeout=120):
    r = subprocess.run([TSHARK] + list(args), capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("tshark %s failed (%d): %s"
                             % (" ".join(args), r.returncode,
                                r.stderr.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def fields(pcap, display_filter, *names, extra=()):
    """Rows (lists of strings) of the named fields for matching packets."""
    args = ["-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    for n in names:
        args += ["-e", n]
    out = run(list(extra) + args)
    return [line.split("\t") for line in out.splitlines() if line]


def streams(pcap):
    """The tcp.stream numbers in the file."""
    return sorted({int(r[0]) for r in fields(pcap, "tcp", "tcp.stream") if r[0]})


def follow(pcap, stream):
    """(client bytes, server bytes, client node, server node) of one TCP
    stream as Wireshark reassembles it; node 0 is the side that sent the
    first packet (the SYN)."""
    out = run(["-r", pcap, "-q", "-z", "follow,tcp,raw,%d" % stream])
    nodes = dict(re.findall(r"^Node (\d): (\S+)$", out, re.M))
    c, s = bytearray(), bytearray()
    body = out.split("Node 1: ", 1)[1].split("\n", 1)[1]
    for line in body.splitlines():
        if line.startswith("====="):
            break
        if line.startswith("\t"):
            s += bytes.fromhex(line.strip())
        elif line.strip():
            c += bytes.fromhex(line.strip())
    return bytes(c), bytes(s), nodes.get("0"), nodes.get("1")


PROBLEMS = ("tcp.analysis.flags || _ws.malformed || _ws.expert.severity >= error"
            " || ip.checksum.status == \"Bad\" || tcp.checksum.status == \"Bad\""
            " || ipv6 && tcp.checksum.status == \"Bad\"")


def problems(pcap):
    """Packets Wireshark finds fault with, checksums validated: one line
    each (frame number and info)."""
    out = run(["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
               "-r", pcap, "-Y", PROBLEMS])
    return [line for line in out.splitlines() if line.strip()]
