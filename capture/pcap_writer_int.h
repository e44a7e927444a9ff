/* What the files of the pcap writer share: capture/pcap_writer.c (the
 * sink: sessions, units, masking, rotation), capture/pcap_packets.c (the
 * packets: Ethernet, IP, TCP and UDP headers, checksums, the handshake,
 * the marks), capture/pcap_files.c (the file set: opening, rotation's
 * names, errors, flushing, SIGHUP) and capture/raw_pcap.c (both legs as
 * the sockets carried them, on the same packets and files). Only these
 * files include it. */
#ifndef CAPTURE_PCAP_WRITER_INT_H
#define CAPTURE_PCAP_WRITER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <pcap/pcap.h>

#include "capture/fault_mark.h"
#include "capture/outfile.h"
#include "capture/pcap_writer.h"
#include "capture/pcapng.h"

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
	size_t whole_len[2];        /* a whole unit's bytes, not kept: its
				       observation carries them (IMAP_CONV_BYTES_WHOLE) */
	bool c2s_outbound;          /* raw upstream leg: the proxy connected, so
				       the connecting side's packets leave the host */
	struct pcap_session *next;  /* bucket chain */
};

/* pcapng: the unit last observed is written once nothing more can be
 * said of it (the findings its line set off come right after its
 * observation), so they ride on its packet as comments. */
struct pcap_deferred {
	struct pcap_session *s;     /* NULL: nothing deferred */
	enum imap_dir dir;
	imap_time_us ts;
};

struct pcap_writer {
	char *path;
	enum capture_pcap_format format; /* CLASSIC or NG */
	capture_stream_fn *stream;  /* no file: the capture goes here */
	void *stream_ctx;
	size_t header_len;          /* of the current file */
	bool head_due;              /* pcapng: the section not yet written */
	enum capture_outfile_mode mode; /* of every file of the set */
	uint64_t max_bytes;
	unsigned file_no;           /* 0: path itself; n: the n-th rotation */
	pcap_t *dead;
	/* written behind, by a thread of its own: the relay never waits for
	 * the disk; file.fp NULL while stopped by an error */
	struct capture_outfile file;
	uint64_t written;           /* to the current file */
	imap_time_us last_ts;
	int failed;
	/* for monitoring (capture_output_stats): across every file of the
	 * set, bytes committed, and written since the last commit */
	uint64_t total_bytes;
	uint64_t unflushed;
	uint64_t write_errors;
	uint64_t dropped;
	capture_log_fn *log;
	void *log_ctx;
	struct pcap_session *bucket[BUCKETS];
	char *settings;             /* the settings mark, at the start of every file */
	size_t settings_len;
	uint8_t packet[PACKET_MAX];
	struct pcap_deferred deferred;
	/* comments for the next packet written with attach set */
	char comment[PCAPNG_COMMENTS_MAX][PCAPNG_COMMENT_MAX];
	size_t comment_len[PCAPNG_COMMENTS_MAX];
	size_t comments;
	bool attach;
	/* raw capture (capture/raw_pcap.c): both legs as sent and received,
	 * and the key log lines not yet written, which go out in a
	 * Decryption Secrets Block before the next packet */
	bool raw;
	char *secrets;
	size_t secrets_len;
	size_t secrets_cap;
};

/* capture/pcap_packets.c */
/* One TCP segment from dir's sender, its payload written from where it is. */
void pcap_write_segment(struct pcap_writer *w, struct pcap_session *s, enum imap_dir dir,
			imap_time_us ts, uint8_t flags, const uint8_t *payload, size_t len);
void pcap_write_mark(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts,
		     const uint8_t *text, size_t len);
void pcap_write_settings_mark(struct pcap_writer *w, imap_time_us ts);
void pcap_handshake(struct pcap_writer *w, struct pcap_session *s, imap_time_us ts);
/* Frees every session still open, wiping what they held unwritten. */
void pcap_sessions_free(struct pcap_writer *w);

/* Adds a comment (printf-style, escaped to printable ASCII) for the next
 * packet written with w->attach set; pcapng only. */
void pcap_comment(struct pcap_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* capture/pcap_files.c */
void pcap_report(struct pcap_writer *w, const char *what);
int pcap_open_file(struct pcap_writer *w, bool append, char *err, size_t errlen);
void pcap_close_file(struct pcap_writer *w);
void pcap_files_flush(void *self);
/* pcapng: the section's start, when the current file does not have it
 * yet (it waits for the settings, which its comment names). */
void pcap_write_head_due(struct pcap_writer *w);
void pcap_files_reopen(void *self);
void pcap_files_stats(void *self, struct capture_output_stats *stats);
int pcap_check_rotated(const struct pcap_writer *w, char *err, size_t errlen);

#endif
