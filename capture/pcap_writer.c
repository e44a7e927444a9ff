#include "capture/pcap_writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "capture/fault_mark.h"
#include "capture/settings.h"
#include "capture/outfile.h"

#define ETH_LEN 14
#define UDP_LEN 8
#define IP4_LEN 20
#define IP6_LEN 40
#define TCP_LEN 20
#define SYN_OPTIONS 8     /* MSS, NOP, window scale */
#define WINDOW_SHIFT 7    /* 65535 << 7: 8 MiB, room for a big FETCH */
#define PENDING_MAX (256u * 1024u) /* a longer unit goes out in pieces */
#define ACK_EVERY (1024u * 1024u)  /* a pure ACK after this much one-way data */
#define BUCKETS 1024
/* TCP segments build only their headers here (the payload is written
 * from where it is); a fault mark builds its text behind the UDP header */
#define PACKET_MAX (ETH_LEN + IP6_LEN + TCP_LEN + SYN_OPTIONS + CAPTURE_FAULT_MARK_TEXT_MAX)

enum {
	TH_FIN = 0x01,
	TH_SYN = 0x02,
	TH_RST = 0x04,
	TH_PSH = 0x08,
	TH_ACK = 0x10,
};

struct pcap_session {
	unsigned id;
	int family;                 /* AF_INET or AF_INET6 */
	struct capture_endpoint end[2];     /* by sender: [IMAP_C2S] client, [IMAP_S2C] server */
	uint32_t next_seq[2];       /* by sender */
	uint64_t unacked[2];        /* sent by one side, not yet acknowledged by the other */
	uint16_t ip_id[2];
	bool zero_window[2];        /* by sender: it advertises a closed window */
	uint8_t *pending[2];        /* framed bytes not yet written */
	size_t pending_len[2];
	size_t pending_cap[2];
	uint64_t unit_off[2];       /* bytes of the unit in pending written already */
	uint64_t secret_from[2];    /* of that unit, as its start tells */
	struct pcap_session *next;  /* bucket chain */
};

struct pcap_writer {
	char *path;
	enum capture_outfile_mode mode; /* of every file of the set */
	uint64_t max_bytes;
	unsigned file_no;           /* 0: path itself; n: the n-th rotation */
	pcap_t *dead;
	/* written behind, by a thread of its own: the relay never waits for
	 * the disk; file.fp NULL while stopped by an error */
	struct capture_outfile file;
	uint64_t written;
	imap_time_us last_ts;
	int failed;
	capture_log_fn *log;
	void *log_ctx;
	struct pcap_session *bucket[BUCKETS];
	char *settings;             /* the settings mark, at the start of every file */
	size_t settings_len;
	uint8_t packet[PACKET_MAX];
};

void capture_pcap_rotated_name(const char *path, unsigned n, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(path, '.');

	if (n == 0) {
		snprintf(out, size, "%s", path);
	} else if (dot != NULL && dot != path && (slash == NULL || dot > slash + 1)) {
		snprintf(out, size, "%.*s.%u%s", (int)(dot - path), path, n, dot);
	} else {
		snprintf(out, size, "%s.%u", path, n);
	}
}

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

static void log_error(struct pcap_writer *w, const char *what, const char *then)
{
	char msg[4800];
	char name[4096];

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	snprintf(msg, sizeof(msg), "%s the pcap %s: %s; %s", what, name, strerror(errno), then);
	if (w->log != NULL)
		w->log(w->log_ctx, msg);
}

/* The file ends with the last batch written whole, and writing stops
 * until SIGHUP; sequence numbers go on, so a reader sees the gap. */
static void report(struct pcap_writer *w, const char *what)
{
	if (w->failed)
		return;
	w->failed = 1;
	log_error(w, what, "the capture stops here, relaying goes on (SIGHUP tries again)");
	if (w->file.fp != NULL) {
		capture_outfile_rollback(&w->file);
		capture_outfile_close(&w->file);
	}
}

/* Opens the current file of the set. With append, a file that still holds
 * its header whole (cut back to its last batch after an error) is written
 * on after it; otherwise the file is created anew, header first. */
static int open_file(struct pcap_writer *w, bool append, char *err, size_t errlen)
{
	char name[4096];
	struct stat st;

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	append = append && stat(name, &st) == 0 && st.st_size >= 24;
	/* small segments (lines) go out in big writes */
	if (capture_outfile_open(&w->file, name, append ? CAPTURE_OUTFILE_APPEND : w->mode,
				 CAPTURE_OUTFILE_BEHIND) != 0) {
		capture_outfile_error(err, errlen, "the pcap", name, errno);
		return -1;
	}
	if (append) {
		w->written = (uint64_t)w->file.good;
		return 0;
	}
	/* libpcap writes the file header; its dumper is the stream itself
	 * (pcap_dump_close() is fclose()), which the outfile closes */
	if (pcap_dump_fopen(w->dead, w->file.fp) == NULL) {
		snprintf(err, errlen, "cannot write the pcap %.3000s: %s", name, pcap_geterr(w->dead));
		capture_outfile_close(&w->file);
		return -1;
	}
	/* the header on disk now: a file that cannot take it fails here */
	if (capture_outfile_sync(&w->file) != 0) {
		snprintf(err, errlen, "cannot write the pcap %.3000s: %s", name, strerror(errno));
		capture_outfile_close(&w->file);
		return -1;
	}
	w->written = 24; /* the file header */
	return 0;
}

/* One pcap record: the headers built in w->packet, then the payload from
 * where it is. The same bytes as pcap_dump() of the whole packet (record
 * header in host order, as libpcap writes it), without first copying the
 * payload behind the headers. */
static void dump_segment(struct pcap_writer *w, const struct pcap_pkthdr *hdr, size_t head_len,
			 const uint8_t *payload, size_t len)
{
	FILE *fp = w->file.fp;
	const uint32_t record[4] = {
		(uint32_t)hdr->ts.tv_sec, (uint32_t)hdr->ts.tv_usec, hdr->caplen, hdr->len,
	};

	fwrite(record, sizeof(record), 1, fp);
	fwrite(w->packet, 1, head_len, fp);
	if (len > 0)
		fwrite(payload, 1, len, fp);
	w->written += sizeof(record) + hdr->caplen;
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
static void write_segment(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
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
		dump_segment(w, &hdr, (size_t)(tcp + tcp_len - w->packet), payload, len);
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
static void write_mark(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts,
		       const uint8_t *text, size_t len)
{
	const size_t ip_len = s->family == AF_INET ? IP4_LEN : IP6_LEN;
	const size_t addr_len = s->family == AF_INET ? 4 : 16;
	uint8_t *ip = w->packet + ETH_LEN, *udp;
	struct pcap_pkthdr hdr;
	uint64_t sum;
	uint16_t check;

	if (w->file.fp == NULL)
		return;
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
	dump_segment(w, &hdr, hdr.caplen, NULL, 0);
	if (ts > w->last_ts)
		w->last_ts = ts;
}

/* The settings mark belongs to no session: it goes from loopback to
 * loopback, where a reader finds it by its ports and text alone. */
static void write_settings_mark(struct pcap_writer *w, imap_time_us ts)
{
	struct pcap_session run = {.family = AF_INET};

	for (int d = 0; d < 2; d++) {
		run.end[d].version = 4;
		run.end[d].addr[0] = 127;
		run.end[d].addr[3] = 1;
		run.end[d].port = CAPTURE_FAULT_MARK_PORT;
	}
	write_mark(w, &run, ts, (const uint8_t *)w->settings, w->settings_len);
}

static void handshake(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts)
{
	/* the SYNs take the sequence numbers right before the data */
	s->next_seq[IMAP_C2S]--;
	s->next_seq[IMAP_S2C]--;
	write_segment(w, s, IMAP_C2S, ts, TH_SYN, NULL, 0);
	write_segment(w, s, IMAP_S2C, ts, TH_SYN | TH_ACK, NULL, 0);
	write_segment(w, s, IMAP_C2S, ts, TH_ACK, NULL, 0);
}

static struct pcap_session **slot(struct pcap_writer *w, unsigned id)
{
	struct pcap_session **p = &w->bucket[id % BUCKETS];

	while (*p != NULL && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

/* Continues the file set in a new file: every open session gets a fresh
 * handshake there so each file decodes on its own. */
static void close_file(struct pcap_writer *w)
{
	if (w->file.fp == NULL)
		return;
	if (capture_outfile_close(&w->file) != 0)
		log_error(w, "cannot write", "its end is lost");
}

static void rotate(struct pcap_writer *w)
{
	char err[600];

	close_file(w);
	w->file_no++;
	if (open_file(w, false, err, sizeof(err)) != 0) {
		errno = errno ? errno : EIO;
		report(w, "cannot rotate");
		return;
	}
	if (w->settings != NULL)
		write_settings_mark(w, w->last_ts);
	for (unsigned b = 0; b < BUCKETS; b++)
		for (struct pcap_session *s = w->bucket[b]; s != NULL; s = s->next)
			handshake(w, s, w->last_ts);
}

static void write_data(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
		       imap_time_us ts, const uint8_t *data, size_t len)
{
	while (len > 0) {
		size_t n = len < CAPTURE_PCAP_SEGMENT_MAX ? len : CAPTURE_PCAP_SEGMENT_MAX;

		if (w->max_bytes > 0 && w->written >= w->max_bytes && !w->failed)
			rotate(w);
		write_segment(w, s, dir, ts, TH_PSH | TH_ACK, data, n);
		data += n;
		len -= n;
	}
	/* the receiver acknowledges now and then, as a real one would */
	if (s->unacked[dir] >= ACK_EVERY)
		write_segment(w, s, !dir, ts, TH_ACK, NULL, 0);
}

/* Writes what is pending of a unit before its observation (a unit longer
 * than pending holds, a fault mark, the end of the session): masked from
 * where its start says it may hold a secret, since the observation that
 * would say exactly where has not come. */
static void flush_pending(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			  imap_time_us ts)
{
	if (s->pending_len[dir] == 0)
		return;
	imap_redact_fill_from(s->pending[dir], s->pending_len[dir], s->unit_off[dir],
			      s->secret_from[dir], false);
	write_data(w, s, dir, ts, s->pending[dir], s->pending_len[dir]);
	s->unit_off[dir] += s->pending_len[dir];
	s->pending_len[dir] = 0;
}

static void pw_open(void *self, const struct capture_session_info *info)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = calloc(1, sizeof(*s));
	struct pcap_session **p;

	if (s == NULL)
		return;
	s->id = info->id;
	s->secret_from[IMAP_C2S] = s->secret_from[IMAP_S2C] = IMAP_REDACT_NONE;
	s->end[IMAP_C2S] = info->client;
	s->end[IMAP_S2C] = info->upstream;
	if (info->upstream.version != info->client.version) {
		/* the upstream is of another family: show the address the
		 * client connected to instead */
		s->end[IMAP_S2C] = info->local;
	}
	if (info->client.version == 0 || s->end[IMAP_S2C].version != info->client.version) {
		free(s);
		return;
	}
	s->family = info->client.version == 6 ? AF_INET6 : AF_INET;
	s->end[IMAP_S2C].port = CAPTURE_PCAP_SERVER_PORT;
	/* fixed initial sequence numbers keep captures reproducible */
	s->next_seq[IMAP_C2S] = 0x10000000u + s->id * 0x10000u + 1;
	s->next_seq[IMAP_S2C] = 0x80000000u + s->id * 0x10000u + 1;
	p = slot(w, s->id);
	if (*p != NULL) { /* an id seen twice: keep the newer session */
		free(s);
		return;
	}
	*p = s;
	handshake(w, s, info->ts);
}

/* Out of memory for holding a unit: its bytes go out masked whole in
 * small pieces, as nothing can say they hold no secret. */
static void write_filled(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			 imap_time_us ts, const uint8_t *data, size_t len)
{
	uint8_t piece[4096];

	while (len > 0) {
		size_t n = len < sizeof(piece) ? len : sizeof(piece);

		memcpy(piece, data, n);
		imap_redact_fill_from(piece, n, 0, 0, false);
		write_data(w, s, dir, ts, piece, n);
		s->unit_off[dir] += n;
		data += n;
		len -= n;
	}
}

static bool hold(struct pcap_session *s, enum imap_dir dir, const uint8_t *data, size_t len)
{
	if (s->pending_len[dir] + len > s->pending_cap[dir]) {
		size_t cap = s->pending_cap[dir] ? s->pending_cap[dir] : 4096;
		uint8_t *p;

		while (cap < s->pending_len[dir] + len)
			cap *= 2;
		/* not realloc: the old block holds bytes not masked yet */
		p = malloc(cap);
		if (p == NULL)
			return false;
		if (s->pending[dir] != NULL) {
			memcpy(p, s->pending[dir], s->pending_len[dir]);
			explicit_bzero(s->pending[dir], s->pending_cap[dir]);
			free(s->pending[dir]);
		}
		s->pending[dir] = p;
		s->pending_cap[dir] = cap;
	}
	memcpy(s->pending[dir] + s->pending_len[dir], data, len);
	s->pending_len[dir] += len;
	return true;
}

static void pw_bytes(void *self, unsigned session, enum imap_dir dir, imap_time_us ts,
		     const uint8_t *data, size_t len, uint64_t secret_from)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);

	if (s == NULL)
		return;
	if (secret_from == IMAP_CONV_BYTES_UNFRAMED) {
		/* no unit will complete them: what is held first, then these */
		flush_pending(w, s, dir, ts);
		write_data(w, s, dir, ts, data, len);
		return;
	}
	s->secret_from[dir] = secret_from;
	/* a unit longer than pending holds goes out in pieces, each masked
	 * as far as the unit's start tells */
	while (len > 0) {
		size_t n;

		if (s->pending_len[dir] >= PENDING_MAX)
			flush_pending(w, s, dir, ts);
		n = PENDING_MAX - s->pending_len[dir];
		if (n > len)
			n = len;
		if (!hold(s, dir, data, n)) {
			flush_pending(w, s, dir, ts);
			write_filled(w, s, dir, ts, data, len);
			return;
		}
		data += n;
		len -= n;
	}
}

static void pw_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);
	enum imap_dir dir = obs->dir;

	if (s == NULL)
		return;
	/* pending holds the unit's wire bytes, or its rest when some went
	 * out already: lay the observation's masking over them */
	if (s->pending_len[dir] > 0)
		imap_observation_mask_wire(obs, s->pending[dir], s->pending_len[dir],
					   s->unit_off[dir]);
	write_data(w, s, dir, obs->ts, s->pending[dir], s->pending_len[dir]);
	s->pending_len[dir] = 0;
	s->unit_off[dir] = 0;
	s->secret_from[dir] = IMAP_REDACT_NONE;
	/* idle sessions hold no buffers */
	if (s->pending_cap[dir] > 65536) {
		free(s->pending[dir]);
		s->pending[dir] = NULL;
		s->pending_cap[dir] = 0;
	}
}

/* Backpressure as the proxy saw it: the receiver of dir advertises a zero
 * window while it does not read, and opens it again when it does. */
static void pw_flow(void *self, unsigned session, imap_time_us ts, enum imap_dir dir, bool blocked,
		    uint64_t pending)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);

	(void)pending;
	if (s == NULL || s->zero_window[!dir] == blocked)
		return;
	s->zero_window[!dir] = blocked;
	write_segment(w, s, !dir, ts, TH_ACK, NULL, 0);
}

/* Bytes the fault released are already in the stream; what is pending
 * goes first, so the mark sits where the action happened. */
static void pw_fault(void *self, unsigned session, const struct capture_fault_mark *m)
{
	struct pcap_writer *w = self;
	struct pcap_session *s = *slot(w, session);
	char text[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n;

	if (s == NULL)
		return;
	flush_pending(w, s, IMAP_C2S, m->ts);
	flush_pending(w, s, IMAP_S2C, m->ts);
	/* the client as the TCP headers show it, so a reader finds the session */
	n = capture_fault_mark_format(text, sizeof(text), session, &s->end[IMAP_C2S], m);
	if (n > 0)
		write_mark(w, s, m->ts, (const uint8_t *)text, n);
}

static void pw_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	struct pcap_writer *w = self;
	char text[CAPTURE_SETTINGS_TEXT_MAX];
	size_t n = capture_settings_mark_format(text, sizeof(text), ts, s);
	char *copy = n > 0 ? malloc(n) : NULL;

	if (copy == NULL)
		return;
	memcpy(copy, text, n);
	free(w->settings);
	w->settings = copy;
	w->settings_len = n;
	write_settings_mark(w, ts);
}

static void write_close_mark(struct pcap_writer *w, struct pcap_session *s,
			     const struct capture_close_info *info)
{
	char text[CAPTURE_FAULT_MARK_TEXT_MAX];
	size_t n = capture_close_mark_format(text, sizeof(text), info->id, &s->end[IMAP_C2S], info);

	if (n > 0)
		write_mark(w, s, info->ts, (const uint8_t *)text, n);
}

static void pw_close(void *self, const struct capture_close_info *info)
{
	struct pcap_writer *w = self;
	struct pcap_session **p = slot(w, info->id);
	struct pcap_session *s = *p;
	enum imap_dir closer;

	if (s == NULL)
		return;
	flush_pending(w, s, IMAP_C2S, info->ts);
	flush_pending(w, s, IMAP_S2C, info->ts);
	/* the proxy stands for the server on the client leg */
	closer = info->by == CAPTURE_SIDE_CLIENT ? IMAP_C2S : IMAP_S2C;
	/* TCP cannot tell a shutdown from a server's close: a mark says it */
	if (info->end == CAPTURE_END_SHUTDOWN)
		write_close_mark(w, s, info);
	if (capture_end_is_clean(info->end)) {
		write_segment(w, s, closer, info->ts, TH_FIN | TH_ACK, NULL, 0);
		write_segment(w, s, !closer, info->ts, TH_FIN | TH_ACK, NULL, 0);
		write_segment(w, s, closer, info->ts, TH_ACK, NULL, 0);
	} else {
		write_segment(w, s, closer, info->ts, TH_RST | TH_ACK, NULL, 0);
	}
	*p = s->next;
	free(s->pending[0]);
	free(s->pending[1]);
	free(s);
}

static void pw_flush(void *self)
{
	struct pcap_writer *w = self;

	if (w->file.fp == NULL || w->failed)
		return;
	if (capture_outfile_commit(&w->file) != 0)
		report(w, "cannot write");
}

/* SIGHUP: a file moved away is started anew at its name (every open
 * session with a fresh handshake, as after a rotation); a file stopped by
 * an error and still in place is appended to. */
static void pw_reopen(void *self)
{
	struct pcap_writer *w = self;
	char name[4096], err[600];
	bool moved;

	capture_pcap_rotated_name(w->path, w->file_no, name, sizeof(name));
	moved = w->file.fp != NULL ? capture_outfile_moved(&w->file, name) : access(name, F_OK) != 0;
	if (w->file.fp != NULL && !moved) {
		pw_flush(w);
		return;
	}
	close_file(w);
	/* not moved: still ours, written on after its last whole batch */
	if (open_file(w, !moved, err, sizeof(err)) != 0) {
		if (!moved)
			snprintf(err + strlen(err), sizeof(err) - strlen(err), "; it stays stopped");
		if (w->log != NULL)
			w->log(w->log_ctx, err);
		return;
	}
	if (moved)
		for (unsigned b = 0; b < BUCKETS; b++)
			for (struct pcap_session *s = w->bucket[b]; s != NULL; s = s->next)
				handshake(w, s, w->last_ts);
	w->failed = 0;
}

static void pw_destroy(void *self)
{
	struct pcap_writer *w = self;

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
	close_file(w);
	free(w->settings);
	if (w->dead != NULL)
		pcap_close(w->dead);
	free(w->path);
	free(w);
}

static const struct capture_sink_ops pcap_writer_ops = {
	.settings = pw_settings,
	.open = pw_open,
	.bytes = pw_bytes,
	.observe = pw_observe,
	.flow = pw_flow,
	.fault = pw_fault,
	.close = pw_close,
	.flush = pw_flush,
	.reopen = pw_reopen,
	.destroy = pw_destroy,
};

/* The files of an earlier rotation this run would write over, found
 * before the first is written: refused as the first would be. */
static int check_rotated(const struct pcap_writer *w, char *err, size_t errlen)
{
	char name[4096];
	struct stat st;

	for (unsigned n = 1; n < UINT_MAX; n++) {
		capture_pcap_rotated_name(w->path, n, name, sizeof(name));
		if (lstat(name, &st) != 0)
			return 0;
		if (S_ISLNK(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size > 0)) {
			errno = S_ISLNK(st.st_mode) ? ELOOP : EEXIST;
			capture_outfile_error(err, errlen, "the pcap", name, errno);
			return -1;
		}
	}
	return 0;
}

int capture_pcap_writer_new(const struct capture_pcap_config *config,
			    struct capture_sink *sink_r, bool *refused_r, char *err, size_t errlen)
{
	struct pcap_writer *w = calloc(1, sizeof(*w));

	if (refused_r != NULL)
		*refused_r = false;
	if (w == NULL || (w->path = strdup(config->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(w);
		return -1;
	}
	w->mode = config->mode;
	w->max_bytes = config->max_bytes;
	w->log = config->log;
	w->log_ctx = config->log_ctx;
	w->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144,
						      PCAP_TSTAMP_PRECISION_MICRO);
	if (w->dead == NULL) {
		snprintf(err, errlen, "libpcap cannot write Ethernet captures");
		pw_destroy(w);
		return -1;
	}
	if ((w->max_bytes > 0 && w->mode == CAPTURE_OUTFILE_NEW && check_rotated(w, err, errlen) != 0) ||
	    open_file(w, false, err, errlen) != 0) {
		if (refused_r != NULL)
			*refused_r = errno == EEXIST;
		pw_destroy(w);
		return -1;
	}
	sink_r->ops = &pcap_writer_ops;
	sink_r->self = w;
	return 0;
}
