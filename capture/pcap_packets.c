/* The pcap writer's packets: Ethernet, IPv4/IPv6, TCP and UDP headers
 * with their checksums, built in the writer's packet buffer, and the
 * records written from it: segments, the handshake, the syslog marks. */
#include "capture/pcap_writer_int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"

/* The Internet checksum (RFC 1071) of p[0..n) added to sum, taken 32 bits
 * at a time in host order and byte-swapped at the end (RFC 1071 section
 * 2(B)): the payload pass must keep up with the relay. */
static uint64_t sum16(const uint8_t *p, size_t n, uint64_t sum)
{
	uint64_t acc = 0;
	uint32_t w;

	for (; n >= 4; p += 4, n -= 4) {
		memcpy(&w, p, 4);
		acc += w;
	}
	if (n >= 2) {
		uint16_t h;

		memcpy(&h, p, 2);
		acc += h;
		p += 2;
		n -= 2;
	}
	if (n == 1) {
		uint16_t h = 0;

		memcpy(&h, p, 1); /* the odd byte is the high half of a last word */
		acc += h;
	}
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	/* acc is the sum of byte-swapped words on a little-endian host */
	if (htons(1) != 1)
		acc = ((acc & 0xff) << 8) | (acc >> 8);
	return sum + acc;
}

static uint16_t fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One record: the headers built in w->packet, then the payload from
 * where it is. pcap: the same bytes as pcap_dump() of the whole packet
 * (record header in host order, as libpcap writes it), without first
 * copying the payload behind the headers. pcapng: an Enhanced Packet
 * Block with dir and, when w->attach is set, the comments waiting. */
static void dump_segment(struct pcap_writer *w, const struct pcap_pkthdr *hdr, size_t head_len,
			 const uint8_t *payload, size_t len, enum pcapng_direction dir)
{
	FILE *fp = w->file.fp;
	const uint64_t before = w->written;

	if (w->format == CAPTURE_PCAP_NG) {
		struct pcapng_comment c[PCAPNG_COMMENTS_MAX];
		size_t n = w->attach ? w->comments : 0;

		pcap_write_head_due(w);
		if (w->secrets_len > 0) {
			/* before the packets the secrets decrypt: Wireshark takes
			 * a block's keys from where it reads it on */
			w->written += pcapng_write_secrets(fp, PCAPNG_SECRETS_TLS_KEYLOG, w->secrets,
							   w->secrets_len);
			explicit_bzero(w->secrets, w->secrets_len);
			w->secrets_len = 0;
		}
		for (size_t i = 0; i < n; i++)
			c[i] = (struct pcapng_comment){w->comment[i], w->comment_len[i]};
		w->written += pcapng_write_packet(fp, (imap_time_us)hdr->ts.tv_sec * 1000000 +
						  hdr->ts.tv_usec, w->packet, head_len, payload, len,
						  dir, c, n);
		if (w->attach)
			w->comments = 0;
		w->attach = false;
		w->unflushed += w->written - before;
		return;
	}
	const uint32_t record[4] = {
		(uint32_t)hdr->ts.tv_sec, (uint32_t)hdr->ts.tv_usec, hdr->caplen, hdr->len,
	};

	fwrite(record, sizeof(record), 1, fp);
	fwrite(w->packet, 1, head_len, fp);
	if (len > 0)
		fwrite(payload, 1, len, fp);
	w->written += sizeof(record) + hdr->caplen;
	w->unflushed += w->written - before;
}

void pcap_comment(struct pcap_writer *w, const char *fmt, ...)
{
	char raw[PCAPNG_COMMENT_MAX * 2];
	va_list ap;
	int n;

	if (w->format != CAPTURE_PCAP_NG || w->comments == PCAPNG_COMMENTS_MAX)
		return;
	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* peer bytes in a finding's text reach tshark's terminal too */
	w->comment_len[w->comments] = capture_escape(w->comment[w->comments], PCAPNG_COMMENT_MAX, raw,
						     (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1,
						     0, NULL);
	w->comments++;
}

/* Ethernet and IP headers of a packet from dir's sender carrying
 * transport_len bytes of protocol (6 TCP, 17 UDP) into w->packet; returns
 * where the transport header goes. Ethernet addresses are locally
 * administered: 02:..:01 the client, 02:..:02 the server. */
static uint8_t *put_ip_headers(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			       uint8_t protocol, size_t transport_len)
{
	const struct capture_endpoint *src = &s->end[dir], *dst = &s->end[!dir];
	uint8_t *eth = w->packet, *ip = eth + ETH_LEN;

	memset(eth, 0, 12);
	eth[0] = eth[6] = 0x02;
	eth[5] = dir == IMAP_C2S ? 2 : 1;
	eth[11] = dir == IMAP_C2S ? 1 : 2;
	put16(eth + 12, s->family == AF_INET ? 0x0800 : 0x86dd);
	if (s->family == AF_INET) {
		memset(ip, 0, IP4_LEN);
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)(IP4_LEN + transport_len));
		put16(ip + 4, s->ip_id[dir]++);
		put16(ip + 6, 0x4000); /* don't fragment */
		ip[8] = 64;
		ip[9] = protocol;
		memcpy(ip + 12, src->addr, 4);
		memcpy(ip + 16, dst->addr, 4);
		put16(ip + 10, fold(sum16(ip, IP4_LEN, 0)));
		return ip + IP4_LEN;
	}
	memset(ip, 0, IP6_LEN);
	ip[0] = 0x60;
	put16(ip + 4, (uint16_t)transport_len);
	ip[6] = protocol;
	ip[7] = 64;
	memcpy(ip + 8, src->addr, 16);
	memcpy(ip + 24, dst->addr, 16);
	return ip + IP6_LEN;
}

/* One TCP segment from dir's sender. */
void pcap_write_segment(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			  imap_time_us ts, uint8_t flags, const uint8_t *payload, size_t len)
{
	const struct capture_endpoint *src = &s->end[dir], *dst = &s->end[!dir];
	const size_t ip_len = s->family == AF_INET ? IP4_LEN : IP6_LEN;
	const size_t tcp_len = TCP_LEN + ((flags & TH_SYN) ? SYN_OPTIONS : 0);
	const size_t addr_len = s->family == AF_INET ? 4 : 16;
	uint8_t *ip = w->packet + ETH_LEN, *tcp = put_ip_headers(w, s, dir, 6, tcp_len + len);
	struct pcap_pkthdr hdr;
	uint64_t sum;

	memset(tcp, 0, tcp_len);
	put16(tcp, src->port);
	put16(tcp + 2, dst->port);
	put32(tcp + 4, s->next_seq[dir]);
	if (flags & TH_ACK)
		put32(tcp + 8, s->next_seq[!dir]);
	tcp[12] = (uint8_t)((tcp_len / 4) << 4);
	tcp[13] = flags;
	put16(tcp + 14, s->zero_window[dir] ? 0 : 65535);
	if (flags & TH_SYN) {
		tcp[20] = 2; /* MSS */
		tcp[21] = 4;
		put16(tcp + 22, (uint16_t)(s->family == AF_INET ? 65495 : 65475));
		tcp[24] = 1; /* NOP */
		tcp[25] = 3; /* window scale */
		tcp[26] = 3;
		tcp[27] = WINDOW_SHIFT;
	}
	/* pseudo-header: addresses, protocol, TCP length; the header length
	 * is even, so the payload's sum continues it */
	sum = sum16(ip + (s->family == AF_INET ? 12 : 8), 2 * addr_len, 0);
	sum += 6 + (uint64_t)(tcp_len + len);
	sum = sum16(tcp, tcp_len, sum);
	if (len > 0)
		sum = sum16(payload, len, sum);
	put16(tcp + 16, fold(sum));

	hdr.ts.tv_sec = (time_t)(ts / 1000000);
	hdr.ts.tv_usec = (suseconds_t)(ts % 1000000);
	hdr.caplen = hdr.len = (bpf_u_int32)(ETH_LEN + ip_len + tcp_len + len);
	if (w->file.fp != NULL)
		dump_segment(w, &hdr, (size_t)(tcp + tcp_len - w->packet), payload, len,
			     (dir == IMAP_C2S) != s->c2s_outbound ? PCAPNG_DIR_INBOUND
								  : PCAPNG_DIR_OUTBOUND);
	else if (w->failed)
		w->dropped++;
	if (ts > w->last_ts)
		w->last_ts = ts;

	s->next_seq[dir] += (uint32_t)len + ((flags & (TH_SYN | TH_FIN)) ? 1 : 0);
	s->unacked[dir] += len;
	if (flags & TH_ACK)
		s->unacked[!dir] = 0;
}

/* A fault mark: one UDP syslog datagram (RFC 5424, port 514) from the
 * server's address to the client's, between the session's segments, so
 * Wireshark shows the injected action in place and TCP readers skip it. */
void pcap_write_mark(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts,
		       const uint8_t *text, size_t len)
{
	const size_t ip_len = s->family == AF_INET ? IP4_LEN : IP6_LEN;
	const size_t addr_len = s->family == AF_INET ? 4 : 16;
	uint8_t *ip = w->packet + ETH_LEN, *udp;
	struct pcap_pkthdr hdr;
	uint64_t sum;
	uint16_t check;

	if (w->file.fp == NULL) {
		w->dropped += w->failed ? 1 : 0;
		return;
	}
	udp = put_ip_headers(w, s, IMAP_S2C, 17, UDP_LEN + len);
	put16(udp, CAPTURE_FAULT_MARK_PORT);
	put16(udp + 2, CAPTURE_FAULT_MARK_PORT);
	put16(udp + 4, (uint16_t)(UDP_LEN + len));
	put16(udp + 6, 0);
	memcpy(udp + UDP_LEN, text, len);
	sum = sum16(ip + (s->family == AF_INET ? 12 : 8), 2 * addr_len, 0);
	sum += 17 + (uint64_t)(UDP_LEN + len);
	sum = sum16(udp, UDP_LEN + len, sum);
	check = fold(sum);
	put16(udp + 6, check == 0 ? 0xffff : check);

	hdr.ts.tv_sec = (time_t)(ts / 1000000);
	hdr.ts.tv_usec = (suseconds_t)(ts % 1000000);
	hdr.caplen = hdr.len = (bpf_u_int32)(ETH_LEN + ip_len + UDP_LEN + len);
	dump_segment(w, &hdr, hdr.caplen, NULL, 0, PCAPNG_DIR_UNKNOWN);
	if (ts > w->last_ts)
		w->last_ts = ts;
}

/* The settings mark belongs to no session: it goes from loopback to
 * loopback, where a reader finds it by its ports and text alone. */
void pcap_write_settings_mark(struct pcap_writer *w, imap_time_us ts)
{
	struct pcap_session run = {.family = AF_INET};

	for (int d = 0; d < 2; d++) {
		run.end[d].version = 4;
		run.end[d].addr[0] = 127;
		run.end[d].addr[3] = 1;
		run.end[d].port = CAPTURE_FAULT_MARK_PORT;
	}
	pcap_write_mark(w, &run, ts, (const uint8_t *)w->settings, w->settings_len);
}

void pcap_handshake(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts)
{
	/* the SYNs take the sequence numbers right before the data */
	s->next_seq[IMAP_C2S]--;
	s->next_seq[IMAP_S2C]--;
	pcap_write_segment(w, s, IMAP_C2S, ts, TH_SYN, NULL, 0);
	pcap_write_segment(w, s, IMAP_S2C, ts, TH_SYN | TH_ACK, NULL, 0);
	pcap_write_segment(w, s, IMAP_C2S, ts, TH_ACK, NULL, 0);
}

void pcap_sessions_free(struct pcap_writer *w)
{
	for (unsigned b = 0; b < BUCKETS; b++) {
		while (w->bucket[b] != NULL) {
			struct pcap_session *s = w->bucket[b];

			w->bucket[b] = s->next;
			/* a unit never written may hold a credential in clear */
			for (int d = 0; d < 2; d++) {
				if (s->pending[d] != NULL)
					explicit_bzero(s->pending[d], s->pending_cap[d]);
				free(s->pending[d]);
			}
			free(s);
		}
	}
}
