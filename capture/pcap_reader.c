#include "capture/pcap_reader.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#ifdef __linux__
#include <stdio_ext.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <pcap/pcap.h>

#include "imap/zero.h"

/* Ethernet types */
#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88a8
#define ETH_QINQ_OLD 0x9100

#define IPPROTO_TCP_NUM 6
#define IPPROTO_UDP_NUM 17
#define VLAN_TAGS_MAX 4

/* A packet narrowed down as its headers are peeled off: data..data+caplen
 * is in the file; wire_len bytes were on the wire from data on. */
struct packet {
	const uint8_t *data;
	size_t caplen;
	size_t wire_len;
};

/* seg: a TCP segment, or for PARSE_UDP the datagram's addresses, ports
 * and payload (its other fields unused) */
enum parse_result {
	PARSE_TCP,      /* seg filled */
	PARSE_UDP,      /* seg holds a UDP datagram */
	PARSE_SKIP,     /* not TCP, or too malformed to read */
	PARSE_FRAGMENT, /* an IP fragment after the first */
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Drops n bytes of header from the front; false when they are not all
 * captured. */
static bool pull(struct packet *p, size_t n)
{
	if (p->caplen < n)
		return false;
	p->data += n;
	p->caplen -= n;
	p->wire_len = p->wire_len > n ? p->wire_len - n : 0;
	return true;
}

/* The packet holds len bytes from here on (an IP length): anything after
 * them is link padding, not payload. */
static void limit(struct packet *p, size_t len)
{
	if (p->caplen > len)
		p->caplen = len;
	if (p->wire_len > len)
		p->wire_len = len;
}

static enum parse_result parse_tcp(struct packet *p, struct capture_tcp_segment *seg)
{
	size_t hlen;

	if (p->caplen < 20)
		return PARSE_SKIP;
	seg->src.port = get16(p->data);
	seg->dst.port = get16(p->data + 2);
	seg->seq = get32(p->data + 4);
	seg->ack = get32(p->data + 8);
	seg->window = get16(p->data + 14);
	hlen = (size_t)(p->data[12] >> 4) * 4;
	seg->flags = p->data[13] & (CAPTURE_TCP_FIN | CAPTURE_TCP_SYN | CAPTURE_TCP_RST |
				    CAPTURE_TCP_ACK);
	if (hlen < 20 || !pull(p, hlen))
		return PARSE_SKIP;
	seg->payload = p->data;
	seg->len = p->caplen;
	seg->missing = p->wire_len > p->caplen ? p->wire_len - p->caplen : 0;
	return PARSE_TCP;
}

static enum parse_result parse_udp(struct packet *p, struct capture_tcp_segment *seg)
{
	size_t len;

	if (p->caplen < 8)
		return PARSE_SKIP;
	seg->src.port = get16(p->data);
	seg->dst.port = get16(p->data + 2);
	len = get16(p->data + 4);
	if (len < 8)
		return PARSE_SKIP;
	limit(p, len);
	pull(p, 8);
	seg->payload = p->data;
	seg->len = p->caplen;
	/* the UDP length counts what the snapshot length or a fragment cut off */
	seg->missing = len - 8 > p->caplen ? len - 8 - p->caplen : 0;
	return PARSE_UDP;
}

/* TCP or UDP after the IP headers. */
static enum parse_result parse_transport(struct packet *p, uint8_t protocol,
					 struct capture_tcp_segment *seg)
{
	switch (protocol) {
	case IPPROTO_TCP_NUM:
		return parse_tcp(p, seg);
	case IPPROTO_UDP_NUM:
		return parse_udp(p, seg);
	default:
		return PARSE_SKIP;
	}
}

static enum parse_result parse_ipv4(struct packet *p, struct capture_tcp_segment *seg)
{
	size_t ihl, total;
	uint16_t frag;
	uint8_t protocol;

	if (p->caplen < 20 || (p->data[0] >> 4) != 4)
		return PARSE_SKIP;
	ihl = (size_t)(p->data[0] & 0x0f) * 4;
	total = get16(p->data + 2);
	frag = get16(p->data + 6);
	if (total == 0)
		total = p->wire_len; /* segmentation offload: length left to the NIC */
	if (ihl < 20 || total < ihl)
		return PARSE_SKIP;
	if ((frag & 0x1fff) != 0)
		return PARSE_FRAGMENT;
	protocol = p->data[9];
	if (protocol != IPPROTO_TCP_NUM && protocol != IPPROTO_UDP_NUM)
		return PARSE_SKIP;
	seg->src.version = seg->dst.version = 4;
	memset(seg->src.addr, 0, sizeof(seg->src.addr));
	memset(seg->dst.addr, 0, sizeof(seg->dst.addr));
	memcpy(seg->src.addr, p->data + 12, 4);
	memcpy(seg->dst.addr, p->data + 16, 4);
	limit(p, total);
	if (!pull(p, ihl))
		return PARSE_SKIP;
	return parse_transport(p, protocol, seg);
}

static enum parse_result parse_ipv6(struct packet *p, struct capture_tcp_segment *seg)
{
	uint8_t next;
	size_t payload;

	if (p->caplen < 40 || (p->data[0] >> 4) != 6)
		return PARSE_SKIP;
	payload = get16(p->data + 4);
	next = p->data[6];
	if (payload == 0)
		return PARSE_SKIP; /* a jumbogram */
	seg->src.version = seg->dst.version = 6;
	memcpy(seg->src.addr, p->data + 8, 16);
	memcpy(seg->dst.addr, p->data + 24, 16);
	pull(p, 40);
	limit(p, payload);
	for (;;) {
		size_t len;

		switch (next) {
		case IPPROTO_TCP_NUM:
		case IPPROTO_UDP_NUM:
			return parse_transport(p, next, seg);
		case 0:  /* hop-by-hop options */
		case 43: /* routing */
		case 60: /* destination options */
			if (p->caplen < 2)
				return PARSE_SKIP;
			len = ((size_t)p->data[1] + 1) * 8;
			break;
		case 44: /* fragment */
			if (p->caplen < 8)
				return PARSE_SKIP;
			if ((get16(p->data + 2) & 0xfff8) != 0)
				return PARSE_FRAGMENT;
			len = 8;
			break;
		case 51: /* authentication header */
			if (p->caplen < 2)
				return PARSE_SKIP;
			len = ((size_t)p->data[1] + 2) * 4;
			break;
		default: /* ESP, no next header, not TCP or UDP */
			return PARSE_SKIP;
		}
		next = p->data[0];
		if (!pull(p, len))
			return PARSE_SKIP;
	}
}

/* IPv4 or IPv6 by the version in the first byte. */
static enum parse_result parse_ip(struct packet *p, struct capture_tcp_segment *seg)
{
	if (p->caplen < 1)
		return PARSE_SKIP;
	switch (p->data[0] >> 4) {
	case 4:
		return parse_ipv4(p, seg);
	case 6:
		return parse_ipv6(p, seg);
	default:
		return PARSE_SKIP;
	}
}

static enum parse_result parse_ethertype(struct packet *p, uint16_t type,
					 struct capture_tcp_segment *seg)
{
	switch (type) {
	case ETH_IPV4:
		return parse_ipv4(p, seg);
	case ETH_IPV6:
		return parse_ipv6(p, seg);
	default:
		return PARSE_SKIP;
	}
}

static enum parse_result parse_ethernet(struct packet *p, struct capture_tcp_segment *seg)
{
	uint16_t type;

	if (p->caplen < 14)
		return PARSE_SKIP;
	type = get16(p->data + 12);
	pull(p, 14);
	for (int tags = 0; type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD; tags++) {
		if (tags == VLAN_TAGS_MAX || p->caplen < 4)
			return PARSE_SKIP;
		type = get16(p->data + 2);
		pull(p, 4);
	}
	return parse_ethertype(p, type, seg);
}

static enum parse_result parse_link(int linktype, struct packet *p,
				    struct capture_tcp_segment *seg)
{
	uint16_t type;

	switch (linktype) {
	case DLT_EN10MB:
		return parse_ethernet(p, seg);
	case DLT_LINUX_SLL: /* 16 bytes, protocol last */
		if (p->caplen < 16)
			return PARSE_SKIP;
		type = get16(p->data + 14);
		pull(p, 16);
		return parse_ethertype(p, type, seg);
	case DLT_LINUX_SLL2: /* 20 bytes, protocol first */
		if (p->caplen < 20)
			return PARSE_SKIP;
		type = get16(p->data);
		pull(p, 20);
		return parse_ethertype(p, type, seg);
	case DLT_NULL: /* 4-byte address family in either byte order; */
	case DLT_LOOP: /* its values differ per OS, the IP version does not */
		if (!pull(p, 4))
			return PARSE_SKIP;
		return parse_ip(p, seg);
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
		return parse_ip(p, seg);
	default:
		return PARSE_SKIP;
	}
}

static bool link_supported(int linktype)
{
	switch (linktype) {
	case DLT_EN10MB:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_NULL:
	case DLT_LOOP:
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
		return true;
	default:
		return false;
	}
}

static const char *const HOW_TO_CAPTURE =
	"write captures with tcpdump -w, tshark -w or imaptap proxy --pcap";

enum { READ_BUFFER = 64 << 10 };

static FILE *open_capture(const char *path, char *iobuf, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(path, "rb");

	if (f == NULL) {
		int e = errno;

		if (e == ENOENT)
			snprintf(err, errlen, "cannot read capture %s: no such file (check the path)",
				 path);
		else if (e == EACCES)
			snprintf(err, errlen,
				 "cannot read capture %s: permission denied (check the file's "
				 "permissions or run as its owner)",
				 path);
		else
			snprintf(err, errlen, "cannot read capture %s: %s", path, strerror(e));
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0) {
		snprintf(err, errlen, "cannot read capture %s: %s", path, strerror(errno));
		fclose(f);
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen,
			 "cannot read capture %s: it is a directory (give a .pcap or .pcapng file)",
			 path);
		fclose(f);
		return NULL;
	}
	if (S_ISREG(st.st_mode) && st.st_size == 0) {
		snprintf(err, errlen,
			 "cannot read capture %s: the file is empty (did the capture stop before "
			 "writing its header?)",
			 path);
		fclose(f);
		return NULL;
	}
	/* libpcap reads record by record; stdio's default buffer (one page)
	 * would make that a system call every few dozen small packets */
	if (iobuf != NULL)
		setvbuf(f, iobuf, _IOFBF, READ_BUFFER);
#ifdef __linux__
	/* one thread reads it: no lock taken and released per record */
	__fsetlocking(f, FSETLOCKING_BYCALLER);
#endif
	return f;
}

/* libpcap's reason, turned into what the user should know. */
static void open_error(const char *path, const char *why, char *err, size_t errlen)
{
	if (strstr(why, "unknown file format") != NULL)
		snprintf(err, errlen, "cannot read capture %s: not a pcap or pcapng file (%s)",
			 path, HOW_TO_CAPTURE);
	else if (strstr(why, "truncated") != NULL)
		snprintf(err, errlen,
			 "cannot read capture %s: too short to be a capture file, its header is cut "
			 "off (%s)",
			 path, why);
	else
		snprintf(err, errlen, "cannot read capture %s: %s (%s)", path, why, HOW_TO_CAPTURE);
}

/* Latest second a packet may carry: pcapng times are 64-bit counts of the
 * file's own unit, so a damaged one names seconds no microsecond count
 * holds (and whose differences would overflow later); such times are
 * clamped, about 35,000 years after 1970. */
#define PACKET_SEC_MAX (1ll << 40)

static imap_time_us packet_time(const struct timeval *tv)
{
	int64_t sec = tv->tv_sec, usec = tv->tv_usec;

	if (sec < 0)
		sec = 0;
	if (sec > PACKET_SEC_MAX)
		sec = PACKET_SEC_MAX;
	if (usec < 0 || usec > 999999)
		usec = usec < 0 ? 0 : 999999;
	return sec * IMAP_US_PER_S + usec;
}

/* Passes a parsed UDP datagram on; it stays counted as skipped, since
 * the reassembly never sees it. */
static void datagram(capture_datagram_cb *on_datagram, void *ctx,
		     const struct capture_tcp_segment *seg)
{
	struct capture_datagram dg = {
		.ts = seg->ts,
		.src = seg->src,
		.dst = seg->dst,
		.payload = seg->payload,
		.len = seg->len,
		.cut = seg->missing > 0,
	};

	if (on_datagram != NULL)
		on_datagram(ctx, &dg);
}

int capture_pcap_read(const char *path, capture_stream_cb *cb, capture_datagram_cb *on_datagram,
		      void *ctx, struct capture_read_stats *stats_r, char *err, size_t errlen)
{
	char pcap_err[PCAP_ERRBUF_SIZE] = "";
	struct capture_read_stats stats;
	struct capture_reassembly *r;
	struct pcap_pkthdr *hdr;
	const u_char *bytes;
	pcap_t *pc;
	FILE *f;
	int linktype, ret = 0, rc;
	/* outlives the stream: pcap_close() closes it */
	char *iobuf = malloc(READ_BUFFER);

	memset(&stats, 0, sizeof(stats));
	if (stats_r != NULL)
		*stats_r = stats;
	f = open_capture(path, iobuf, err, errlen);
	if (f == NULL) {
		free(iobuf);
		return -1;
	}
	pc = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_MICRO, pcap_err);
	if (pc == NULL) {
		fclose(f);
		free(iobuf);
		open_error(path, pcap_err, err, errlen);
		return -1;
	}
	linktype = pcap_datalink(pc);
	if (!link_supported(linktype)) {
		const char *name = pcap_datalink_val_to_name(linktype);

		snprintf(err, errlen,
			 "cannot read capture %s: unsupported link type %d (%s); supported are "
			 "Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback: capture on "
			 "such an interface, e.g. tcpdump -i any",
			 path, linktype, name != NULL ? name : "unknown");
		pcap_close(pc);
		free(iobuf);
		return -1;
	}
	r = capture_reassembly_new(cb, ctx);
	if (r == NULL) {
		snprintf(err, errlen, "cannot read capture %s: out of memory", path);
		pcap_close(pc);
		free(iobuf);
		return -1;
	}
	while ((rc = pcap_next_ex(pc, &hdr, &bytes)) == 1) {
		struct packet p = {bytes, hdr->caplen, hdr->len};
		struct capture_tcp_segment seg;

		stats.packets++;
		if (p.wire_len < p.caplen)
			p.wire_len = p.caplen;
		if (hdr->caplen < hdr->len)
			stats.truncated++;
		imap_zero(&seg, sizeof(seg));
		seg.ts = packet_time(&hdr->ts);
		switch (parse_link(linktype, &p, &seg)) {
		case PARSE_TCP:
			stats.tcp_segments++;
			if (capture_reassembly_segment(r, &seg) < 0) {
				snprintf(err, errlen,
					 "cannot read capture %s: out of memory at packet %llu", path,
					 (unsigned long long)stats.packets);
				ret = -1;
				goto out;
			}
			break;
		case PARSE_UDP:
			datagram(on_datagram, ctx, &seg);
			stats.skipped++;
			break;
		case PARSE_FRAGMENT:
			stats.fragments++;
			break;
		case PARSE_SKIP:
			stats.skipped++;
			break;
		}
	}
	if (rc == PCAP_ERROR) {
		const char *why = pcap_geterr(pc);

		if (strstr(why, "truncated") != NULL) {
			stats.cut_records = 1; /* the writer stopped mid-record */
		} else if (strstr(why, "different from the type of the first") != NULL) {
			snprintf(err, errlen,
				 "cannot read capture %s: it mixes interfaces of different link types "
				 "(%s); keep one, e.g. tshark -r %s -Y frame.interface_id==0 -w "
				 "one.pcapng",
				 path, why, path);
			ret = -1;
		} else {
			snprintf(err, errlen,
				 "cannot read capture %s: damaged after packet %llu (%s); the packets "
				 "before it were read",
				 path, (unsigned long long)stats.packets, why);
			ret = -1;
		}
	}
	capture_reassembly_finish(r);
out:
	capture_reassembly_free(&r);
	pcap_close(pc);
	free(iobuf);
	if (stats_r != NULL)
		*stats_r = stats;
	return ret;
}
