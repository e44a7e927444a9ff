"""A plain reader of classic pcap files (Ethernet, IPv4/IPv6, TCP), for
checks over captures too big to hand to tshark in a test."""

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
