/* One IMAP conversation observed: both directions of a session go through
 * their framers, the masker, the classifier and the tracker, and every unit
 * comes out as one observation. The same code serves the live proxy and a
 * pcap read offline, so both see the same things. */
#ifndef IMAP_CONVERSATION_H
#define IMAP_CONVERSATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/anomaly.h"
#include "imap/classify.h"
#include "imap/framer.h"
#include "imap/redact.h"
#include "imap/summary.h"
#include "imap/tracker.h"
#include "imap/types.h"

/* Who wrote the bytes. */
enum imap_origin {
	IMAP_ORIGIN_PEER,  /* the client or the server */
	IMAP_ORIGIN_PROXY, /* the proxy itself (e.g. a BYE when the upstream is down) */
};

struct imap_observation {
	enum imap_dir dir;
	imap_time_us ts;
	enum imap_origin origin;
	const struct imap_unit *unit;       /* framing; unit->data is NOT masked */
	const struct imap_line_info *info;  /* NULL for literal data; slices point
					       into unit->data */
	const uint8_t *data;                /* the observed bytes, masked */
	size_t len;
	bool masked;                        /* data differs from unit->data */
	bool secret_rest;                   /* the unit's wire bytes past len (a cut
					       line) are secret too */
	const struct imap_completion *completion; /* set when the line completed a command */
	const char *note;                   /* the proxy's word on a line it changed
					       ("STARTTLS removed"), or NULL */
};

typedef void imap_observe_cb(void *ctx, const struct imap_observation *obs);

/* What the conversation finds besides lines. */
enum imap_conv_event_kind {
	IMAP_CONV_NOTICE,  /* a change of the stream's layers (COMPRESS took effect) */
	IMAP_CONV_ANOMALY, /* a rule fired (a stall, a stream that does not inflate...) */
	IMAP_CONV_SUMMARY, /* at the end: the session in numbers */
};

struct imap_conv_event {
	enum imap_conv_event_kind kind;
	enum imap_dir dir;
	imap_time_us ts;
	const char *text;                    /* NOTICE: what happened, in words */
	const struct imap_anomaly *anomaly;  /* ANOMALY */
	const struct imap_summary *summary;  /* SUMMARY */
};

typedef void imap_conv_event_cb(void *ctx, const struct imap_conv_event *event);

/* The stream as framed: every byte of one direction, after inflating,
 * before masking, handed over before the observation of the unit it
 * completes. secret_from: from which offset of the unit these bytes
 * belong to its bytes may be secret, as far as the unit's start and the
 * session so far tell (IMAP_REDACT_NONE: none); an output that writes
 * bytes before their unit's observation masks them by it
 * (imap_redact_fill_from), and the rest by the observation
 * (imap_observation_mask_wire). */
typedef void imap_conv_bytes_cb(void *ctx, enum imap_dir dir, imap_time_us ts,
				 const uint8_t *data, size_t len, uint64_t secret_from);

/* secret_from of bytes no framer cuts (a direction after COMPRESS that
 * does not inflate): no observation follows them, so an output writes
 * them at once, stamped ts, as they are. */
#define IMAP_CONV_BYTES_UNFRAMED (UINT64_MAX - 1)

/* secret_from of bytes that are a whole unit no secret starts in (literal
 * data that came in one piece): its observation comes next, before any
 * other call of this conversation, and carries the same bytes (obs->data, masked as the
 * observation says, obs->len of them unless secret_rest), so an output
 * may write them from there instead of keeping a copy. As an offset it
 * lies past any unit, as IMAP_REDACT_NONE does. */
#define IMAP_CONV_BYTES_WHOLE (UINT64_MAX - 2)

struct imap_conv_config {
	size_t max_line;       /* observation limit per line, 0 for the default */
	unsigned redact_flags; /* enum imap_redact_flag bits */
	imap_conv_event_cb *on_event; /* may be NULL; called with the observer's ctx */
	imap_conv_bytes_cb *on_bytes; /* may be NULL; likewise */
	bool rules;                   /* run the anomaly rules (IMAP_CONV_ANOMALY events) */
	bool inflated_capture_ok;     /* offline: a COMPRESS stream may be there inflated
					 already (imaptap's own pcap) */
	struct imap_tracker_config thresholds; /* of the rules that wait; zeros: defaults */
};

struct imap_conv;

/* Lays obs's masking over wire bytes of its unit, p[0..len) from unit
 * offset unit_off on, for an output that holds the unit's wire bytes (all
 * of a cut line, or what is left of one written in part already): the
 * masked observed bytes where they reach, and with secret_rest every byte
 * past them but CR, LF and a literal announcement ending the line. */
void imap_observation_mask_wire(const struct imap_observation *obs, uint8_t *p, size_t len,
				uint64_t unit_off);

struct imap_conv *imap_conv_new(const struct imap_conv_config *config, imap_observe_cb *cb,
				void *ctx);
void imap_conv_free(struct imap_conv **conv);

/* Feeds bytes of one direction received at ts, as they went over the
 * wire: after COMPRESS DEFLATE the conversation inflates a copy itself
 * (RFC 4978), switching at the byte after the CRLF of the tagged OK. */
void imap_conv_feed(struct imap_conv *conv, enum imap_dir dir, imap_time_us ts,
		    enum imap_origin origin, const uint8_t *data, size_t len);

/* Time passes: rules that wait (stalls) fire when their threshold passes,
 * not when the next byte comes. now is live time or packet time. */
void imap_conv_tick(struct imap_conv *conv, imap_time_us now);

/* The connection to the server is up: its greeting is due. */
void imap_conv_connected(struct imap_conv *conv, imap_time_us ts);

/* When imap_conv_tick should run next (imap_tracker_next_deadline); -1
 * when no rule waits. */
imap_time_us imap_conv_next_deadline(const struct imap_conv *conv);

/* What toward the receiver of dir has not drained since `since` (-1: it
 * drains again), with pending bytes queued: client/server-not-reading. */
void imap_conv_blocked(struct imap_conv *conv, enum imap_dir dir, imap_time_us since,
		       uint64_t pending, imap_time_us now);

/* The observation ends at ts: when the connection closed, unanswered
 * commands are reported (a capture that merely ends does not count), then
 * the summary (IMAP_CONV_SUMMARY). */
void imap_conv_eof(struct imap_conv *conv, imap_time_us ts, bool closed);

/* Bytes of dir are missing (a capture gap): framing restarts with the
 * next byte fed; a compressed direction cannot be inflated past a gap and
 * is no longer observed. */
void imap_conv_gap(struct imap_conv *conv, enum imap_dir dir);

/* A finding made outside the conversation (bytes the proxy dropped
 * around STARTTLS, a gap in a capture), about the stream of dir: counted
 * in the session's summary and handed out as IMAP_CONV_ANOMALY, like
 * the conversation's own. */
void imap_conv_anomaly(struct imap_conv *conv, enum imap_dir dir, const struct imap_anomaly *anomaly);

/* The next line observed in dir is one the proxy changed: note says how
 * (copied; shown with it as the observation's note). */
void imap_conv_note(struct imap_conv *conv, enum imap_dir dir, const char *note);

/* Frees memory held by idle framers. */
void imap_conv_trim(struct imap_conv *conv);

/* True once COMPRESS DEFLATE is in effect: bytes the proxy would write
 * itself can no longer be sent in the clear. */
bool imap_conv_compressed(const struct imap_conv *conv);

const struct imap_tracker *imap_conv_tracker(const struct imap_conv *conv);
const struct imap_framer *imap_conv_framer(const struct imap_conv *conv, enum imap_dir dir);

#endif
