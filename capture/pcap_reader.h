/* Reads a capture file (pcap or pcapng, through libpcap) and hands every
 * TCP connection in it to capture/reassembly: the callback sees each
 * connection's OPEN, DATA, GAP and CLOSE events (capture/reassembly.h).
 *
 * Link types: Ethernet (with 802.1Q/802.1ad VLAN tags), Linux cooked
 * capture v1 and v2 (tcpdump/tshark -i any), raw IP (DLT_RAW, IPv4,
 * IPv6), BSD loopback (DLT_NULL, DLT_LOOP). IPv4 with options and IPv6
 * with extension headers. UDP datagrams go to a second callback, in
 * capture order with the TCP events: imaptap's pcaps carry their fault
 * marks in them (capture/fault_mark.h). Everything else is skipped. */
#ifndef CAPTURE_PCAP_READER_H
#define CAPTURE_PCAP_READER_H

#include <stddef.h>
#include <stdint.h>

#include "capture/reassembly.h"

struct capture_read_stats {
	uint64_t packets;      /* records read */
	uint64_t tcp_segments; /* handed to the reassembly */
	uint64_t skipped;      /* not TCP (UDP datagrams too, after their callback), or
				  headers too short or malformed */
	uint64_t fragments;    /* IP fragments after the first: skipped (the first is
				  read; the bytes of the others become gaps) */
	uint64_t truncated;    /* records cut short by the snapshot length: their
				  missing payload becomes gaps */
	uint64_t cut_records;  /* 1 when the file ends inside a record (a capture
				  killed while writing): read up to there */
};

/* A UDP datagram of the capture. */
struct capture_datagram {
	imap_time_us ts;
	struct capture_endpoint src, dst;
	const uint8_t *payload; /* the captured bytes; valid during the callback only */
	size_t len;
	bool cut;               /* the capture holds less than the datagram carried */
};

typedef void capture_datagram_cb(void *ctx, const struct capture_datagram *datagram);

/* Reads the whole file at path, then closes every connection still open
 * (capture_reassembly_finish). on_datagram (NULL: none) sees each UDP
 * datagram after the events of the packets before it; both callbacks get
 * ctx. stats may be NULL.
 * Returns 0, or -1 with a one-line message in err that names the file,
 * what is wrong and what to do: not found, unreadable, a directory, empty,
 * not a pcap or pcapng file, an unsupported link type, a pcapng mixing
 * link types, a damaged record (the events of the records before it were
 * delivered), out of memory. */
int capture_pcap_read(const char *path, capture_stream_cb *cb, capture_datagram_cb *on_datagram,
		      void *ctx, struct capture_read_stats *stats, char *err, size_t errlen);

#endif
