/* TCP stream reassembly for captures read offline.
 *
 * Parsed TCP segments go in, in capture order; per connection come out, in
 * order: one OPEN, DATA (each direction's bytes in stream order, each byte
 * once) and GAP (bytes that went by but are not in the capture), one CLOSE.
 * Retransmissions and overlaps are dropped (the first bytes seen win),
 * out-of-order segments wait in a bounded queue, sequence numbers may wrap.
 * No I/O and no clock: times are the packets' own.
 *
 * A hole in a direction is reported as a GAP, never skipped silently, once
 * its bytes can no longer arrive: the peer acknowledged past it (the
 * capture missed them), more than CAPTURE_REASSEMBLY_QUEUE_MAX bytes or
 * CAPTURE_REASSEMBLY_QUEUE_SEGMENTS segments wait behind it, a truncated
 * packet cut them off, or the connection closed or the capture ended.
 * Delivery goes on after it. */
#ifndef CAPTURE_REASSEMBLY_H
#define CAPTURE_REASSEMBLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/endpoint.h"
#include "imap/types.h"

/* Out-of-order data held per direction before the hole in front of it is
 * declared lost. */
#define CAPTURE_REASSEMBLY_QUEUE_MAX (4u * 1024u * 1024u)
#define CAPTURE_REASSEMBLY_QUEUE_SEGMENTS 4096u
/* A closed connection's 4-tuple absorbs late packets (the last ACK, a
 * retransmitted FIN) for this long in capture time, unless a new SYN
 * starts a new connection on it. */
#define CAPTURE_REASSEMBLY_LINGER_US (120 * IMAP_US_PER_S)


/* TCP header flag bits, as on the wire. */
enum capture_tcp_flag {
	CAPTURE_TCP_FIN = 0x01,
	CAPTURE_TCP_SYN = 0x02,
	CAPTURE_TCP_RST = 0x04,
	CAPTURE_TCP_ACK = 0x10,
};

struct capture_tcp_segment {
	imap_time_us ts;
	struct capture_endpoint src, dst;
	uint32_t seq, ack;
	unsigned flags;         /* enum capture_tcp_flag bits */
	const uint8_t *payload; /* captured payload bytes */
	size_t len;
	size_t missing;         /* payload bytes after those that the capture cut off */
	uint16_t window;        /* the advertised window, unscaled */
};

enum capture_stream_kind {
	CAPTURE_STREAM_OPEN,  /* a connection: session, client, server; ts of its first packet.
				 Reported once client and server are known (a SYN, the port,
				 the first payload), so sessions may open out of number order */
	CAPTURE_STREAM_DATA,  /* in-order bytes of one direction */
	CAPTURE_STREAM_GAP,   /* gap_len bytes of one direction that are not in the capture */
	CAPTURE_STREAM_CLOSE, /* the connection is over: reason, bytes */
	CAPTURE_STREAM_WINDOW, /* the receiver of dir closed its window (blocked) or opened it */
};

enum capture_close_reason {
	CAPTURE_CLOSE_CLIENT_FIN,     /* the client closed first; the server's FIN may be
					 missing if the capture ended before it */
	CAPTURE_CLOSE_SERVER_FIN,     /* the same, the server first */
	CAPTURE_CLOSE_CLIENT_RST,     /* the client reset the connection */
	CAPTURE_CLOSE_SERVER_RST,     /* the server reset the connection */
	CAPTURE_CLOSE_END_OF_CAPTURE, /* still open when the capture ended */
	CAPTURE_CLOSE_REUSED,         /* a new SYN took over the 4-tuple; the end was not captured */
};

struct capture_stream_event {
	enum capture_stream_kind kind;
	unsigned session;      /* from 1, in the order connections start */
	imap_time_us ts;       /* DATA, GAP: the packet that completed or revealed them */
	enum imap_dir dir;     /* DATA, GAP */
	const uint8_t *data;   /* DATA: valid during the callback only */
	size_t len;            /* DATA */
	uint64_t offset;       /* DATA, GAP: stream offset of the first byte */
	uint64_t gap_len;      /* GAP */
	const char *client;    /* every kind: "127.0.0.1:43210", "[::1]:143" */
	const char *server;
	const struct capture_endpoint *client_ep; /* every kind: the same as numbers */
	const struct capture_endpoint *server_ep;
	bool midstream;        /* OPEN: the handshake is not in the capture: offset 0 is
				  the first byte seen, maybe not the stream's first */
	bool blocked;          /* WINDOW: a zero window toward dir's sender */
	enum capture_close_reason reason; /* CLOSE */
	uint64_t bytes[2];     /* CLOSE: delivered, by enum imap_dir */
	uint64_t missing[2];   /* CLOSE: reported in GAPs, by enum imap_dir */
};

/* Must not call back into the reassembly. */
typedef void capture_stream_cb(void *ctx, const struct capture_stream_event *ev);

struct capture_reassembly;

/* Returns NULL only when out of memory. */
struct capture_reassembly *capture_reassembly_new(capture_stream_cb *cb, void *ctx);

/* Feeds one segment; the callback sees every event it causes before this
 * returns. Returns 0, or -1 when out of memory (the segment is lost). */
int capture_reassembly_segment(struct capture_reassembly *r, const struct capture_tcp_segment *seg);

/* The capture ended: reports what is still queued or missing and closes
 * every open connection, in session order. */
void capture_reassembly_finish(struct capture_reassembly *r);

/* Frees everything; no events. Sets *r to NULL. */
void capture_reassembly_free(struct capture_reassembly **r);

/* "client-fin", "server-fin", "client-rst", "server-rst", "end-of-capture",
 * "reused"; "close?" for unknown values. */
const char *capture_close_reason_str(enum capture_close_reason reason);
const char *capture_stream_kind_str(enum capture_stream_kind kind);

#endif
