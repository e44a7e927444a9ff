"""A plain reader of classic pcap files (Ethernet, IPv4/IPv6, TCP), for
checks over captures too big to hand to tshark in a test, and a writer of
hand-made ones (TCP flows, UDP datagrams) for what no live run records."""

import struct


def tcp_packets(path):
    """Yields (ts_us, src_port, dst_port, flags, window, payload_len) per
    TCP packet of an Ethernet pcap written with microsecond stamps."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic != 0xA1B2C3D4:
        raise ValueError("%s: not a little-endian microsecond pcap" % path)
    off = 24
    while off + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, off)
        pkt = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if len(pkt) < 14:
            continue
        etype = struct.unpack_from(">H", pkt, 12)[0]
        if etype == 0x0800:
            ihl = (pkt[14] & 15) * 4
            total = struct.unpack_from(">H", pkt, 16)[0]
            tcp = 14 + ihl
            end = 14 + total
        elif etype == 0x86DD:
            tcp = 14 + 40
            end = tcp + struct.unpack_from(">H", pkt, 18)[0]
        else:
            continue
        sport, dport, _, _, offflags, window = struct.unpack_from(">HHIIHH", pkt, tcp)
        hlen = (offflags >> 12) * 4
        yield (sec * 1000000 + usec, sport, dport, offflags & 0x3F, window,
               end - tcp - hlen)


# ---- writing: hand-made captures for tests of the reader's users ---------

def write_pcap(path, records):
    """A little-endian microsecond Ethernet pcap of records [(ts_us,
    frame bytes)]."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, frame in records:
            f.write(struct.pack("<IIII", ts // 1000000, ts % 1000000, len(frame), len(frame)))
            f.write(frame)


def checksum(data):
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4_frame(src, dst, proto, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                      src, dst)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + hdr + payload


def udp4_frame(src, dst, sport, dport, payload):
    """An Ethernet frame with an IPv4 UDP datagram (src, dst: 4 bytes)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    csum = checksum(pseudo + udp) or 0xFFFF
    return _ipv4_frame(src, dst, 17, udp[:6] + struct.pack("!H", csum) + udp[8:])


def tcp4_frame(src, dst, sport, dport, seq, ack, flags, payload=b""):
    """An Ethernet frame with an IPv4 TCP segment, checksums right."""
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = checksum(pseudo + hdr + payload)
    return _ipv4_frame(src, dst, 6, hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload)


SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08


class TcpFlow:
    """One IPv4 TCP connection as frames: handshake, data either way, FIN
    both ways. client and server are (4-byte address, port)."""

    def __init__(self, client, server, ts=1700000000000000):
        self.ends = (client, server)
        self.seq = [1000, 5000]
        self.ts = ts
        self.records = []

    def _frame(self, side, flags, payload=b""):
        (src, sport), (dst, dport) = self.ends[side], self.ends[1 - side]
        self.ts += 1000
        self.records.append((self.ts, tcp4_frame(src, dst, sport, dport, self.seq[side],
                                                 self.seq[1 - side] if flags & ACK else 0,
                                                 flags, payload)))
        self.seq[side] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def open(self):
        self._frame(0, SYN)
        self._frame(1, SYN | ACK)
        self._frame(0, ACK)
        return self

    def send(self, side, data):
        """side 0 the client, 1 the server."""
        self._frame(side, PSH | ACK, data)
        return self

    def close(self):
        self._frame(0, FIN | ACK)
        self._frame(1, FIN | ACK)
        self._frame(0, ACK)
        return self
