/* The pcap's fault mark: the text of the UDP syslog datagram (RFC 5424,
 * port 514) that stands for one injected fault in a capture. The pcap
 * writer formats it and the offline analyser reads it back, here, so the
 * two cannot drift apart:
 *
 *   <133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - fault - injected fault
 *   session=1 client=127.0.0.1:50432 action=delay phase=active dir=s2c
 *   spec=delay:s2c:2s: every byte ...
 *
 * (one line). The datagram goes from the server's address to the client's;
 * client= names the client's port too, which finds the TCP session among
 * several from one address. Marks written before client= existed are
 * read too: their session is found by the addresses and session=. */
#ifndef CAPTURE_FAULT_MARK_H
#define CAPTURE_FAULT_MARK_H

#include <stdbool.h>
#include <stddef.h>

#include "capture/reassembly.h"
#include "imap/anomaly.h"
#include "capture/sink.h"

#define CAPTURE_FAULT_MARK_PORT 514       /* syslog, both UDP ports */
#define CAPTURE_FAULT_MARK_TEXT_MAX 1024  /* the whole text, at most */
#define CAPTURE_FAULT_MARK_ACTION_MAX 32
#define CAPTURE_FAULT_MARK_PHASE_MAX 16
#define CAPTURE_FAULT_MARK_SPEC_MAX 128

/* Writes the text of mark (its time in it) for session, whose client is
 * client, into out (NUL-terminated, cut at size - 1). Returns its length. */
size_t capture_fault_mark_format(char *out, size_t size, unsigned session,
				 const struct capture_endpoint *client,
				 const struct capture_fault_mark *mark);

/* A mark read back. mark's strings point into this struct's own buffers:
 * use it where it was filled, do not copy it. mark.ts is 0: the time is
 * the packet's. */
struct capture_fault_mark_read {
	unsigned session;               /* session= as the proxy numbered it */
	bool client_known;              /* client= was there */
	struct capture_endpoint client; /* its address and port */
	struct capture_fault_mark mark;
	char action[CAPTURE_FAULT_MARK_ACTION_MAX];
	char phase[CAPTURE_FAULT_MARK_PHASE_MAX];
	char spec[CAPTURE_FAULT_MARK_SPEC_MAX + 1]; /* room for the colon that ends it */
	char detail[CAPTURE_FAULT_MARK_TEXT_MAX];
};

enum capture_fault_mark_parse_result {
	CAPTURE_FAULT_MARK_NONE,    /* not an imaptap fault mark: other syslog or UDP */
	CAPTURE_FAULT_MARK_OK,      /* read_r filled */
	CAPTURE_FAULT_MARK_DAMAGED, /* imaptap's header, but the rest does not read: why_r says
				       what is wrong */
};

/* Reads the payload text[0..len) of a datagram. Any bytes are safe. */
enum capture_fault_mark_parse_result
capture_fault_mark_parse(const uint8_t *text, size_t len, struct capture_fault_mark_read *read_r,
			 char *why_r, size_t why_size);

/* The close mark, the same kind of datagram for how a session ended where
 * its TCP packets cannot say it (the proxy shut down with it open: FINs,
 * which alone would read as a close by the server):
 *
 *   <133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - close - session ended
 *   session=1 client=127.0.0.1:50432 by=proxy end=shutdown: proxy shutting down
 */
size_t capture_close_mark_format(char *out, size_t size, unsigned session,
				 const struct capture_endpoint *client,
				 const struct capture_close_info *info);

/* The anomaly mark (pcapng only): a rule that fired as time passed, with
 * no packet of its own to carry its comment. analyze does not read it
 * back: it finds the anomaly again by the rules.
 *
 *   <133>1 2024-05-01T14:02:11.503318Z imaptap imaptap - anomaly - finding
 *   session=1 client=127.0.0.1:50432 rule=done-stall: DONE sent ...
 */
size_t capture_anomaly_mark_format(char *out, size_t size, unsigned session,
				   const struct capture_endpoint *client,
				   const struct imap_anomaly *anomaly);

struct capture_close_mark_read {
	unsigned session;
	bool client_known;
	struct capture_endpoint client;
	enum capture_side by;
	enum capture_end end;
	char reason[CAPTURE_FAULT_MARK_TEXT_MAX];
};

/* As capture_fault_mark_parse, for a close mark. */
enum capture_fault_mark_parse_result
capture_close_mark_parse(const uint8_t *text, size_t len, struct capture_close_mark_read *read_r,
			 char *why_r, size_t why_size);

#endif
