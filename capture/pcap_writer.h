/* pcap output: the client leg of every session as plain IMAP over a
 * synthetic TCP stream, so Wireshark's IMAP dissector decodes it.
 *
 * Each session gets a three-way handshake, correct sequence and
 * acknowledgement numbers, valid checksums and a FIN (clean close) or RST
 * (abort) at the end; the server port is written as 143. Every framed unit
 * becomes one segment (split where IP cannot carry it), stamped with the
 * time the proxy received it; masked bytes are written masked. */
#ifndef CAPTURE_PCAP_WRITER_H
#define CAPTURE_PCAP_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "capture/outfile.h"
#include "capture/sink.h"

/* Largest TCP payload an IPv4 packet carries (65535 - 20 - 20). */
#define CAPTURE_PCAP_SEGMENT_MAX 65495u
/* The port written for the server, whatever it really was. */
#define CAPTURE_PCAP_SERVER_PORT 143

typedef void capture_log_fn(void *ctx, const char *message);

enum capture_pcap_format {
	CAPTURE_PCAP_BY_NAME,  /* pcapng when the path ends in .pcapng, else pcap */
	CAPTURE_PCAP_CLASSIC,  /* libpcap's format */
	CAPTURE_PCAP_NG,       /* pcapng: the section names imaptap and its settings; each
				  packet its direction; the packet where a rule fired or
				  resolved, a fault acted or a command completed carries a
				  comment saying so ("imaptap anomaly done-stall: ...",
				  "imaptap latency 12.345 ms: a5 FETCH OK") */
};

struct capture_pcap_config {
	const char *path;
	enum capture_pcap_format format;
	enum capture_outfile_mode mode; /* NEW: a capture already there is refused
					   (every file of the rotation) */
	uint64_t max_bytes;   /* rotate after this many bytes; 0 never */
	capture_log_fn *log;  /* one message when writing fails */
	void *log_ctx;
	capture_stream_fn *stream; /* set: no file; the capture goes to stream (path
				      names it in messages; no rotation) */
	void *stream_ctx;
};

/* Creates path (mode 0600). Returns 0 and the sink, or -1 with a message
 * in err; *refused_r (may be NULL) is set when a capture already there
 * was refused (CAPTURE_OUTFILE_NEW), so the caller can name its flag. */
int capture_pcap_writer_new(const struct capture_pcap_config *config,
			    struct capture_sink *sink_r, bool *refused_r, char *err, size_t errlen);

/* The format path is written in. */
enum capture_pcap_format capture_pcap_format_of(const char *path, enum capture_pcap_format asked);

/* Name of the n-th file of a rotation: "cap.pcap" -> "cap.2.pcap". */
void capture_pcap_rotated_name(const char *path, unsigned n, char *out, size_t size);

#endif
