/* One session as imaptap observes it, whatever carries it: the proxy's
 * sockets, a capture read offline, a compiled transcript, a replay. It is
 * opened on the sinks, fed both directions through one imap conversation
 * (framer, masker, classifier, rules), hands every observation, anomaly,
 * notice and summary to the sinks, and is closed with typed facts: who
 * ended it and how (capture_close_info). Every path records a session the
 * same way because every path goes through here. */
#ifndef CAPTURE_OBSERVED_H
#define CAPTURE_OBSERVED_H

#include <stdbool.h>

#include "capture/sink.h"
#include "imap/conversation.h"

/* What the owner wants to see besides the sinks; any may be NULL. */
struct observed_hooks {
	/* each observation, after the sinks had it */
	void (*observation)(void *ctx, const struct imap_observation *obs);
	/* each anomaly and resolution, after the sinks had it */
	void (*anomaly)(void *ctx, const struct imap_anomaly *anomaly);
	void *ctx;
};

struct observed_session;

/* Opens info's session on sinks (NULL: none, for a replay that only
 * compares). config's on_event and on_bytes are the adapter's own.
 * Returns NULL when out of memory, with nothing opened. */
struct observed_session *observed_open(const struct capture_sinks *sinks,
				       const struct capture_session_info *info,
				       const struct imap_conv_config *config,
				       const struct observed_hooks *hooks);

/* The conversation, for what only it knows (ticks, deadlines, gaps,
 * blocked peers, COMPRESS). */
struct imap_conv *observed_conv(const struct observed_session *o);

/* Bytes of dir as they went over the wire at ts. */
void observed_feed(struct observed_session *o, enum imap_dir dir, imap_time_us ts,
		   enum imap_origin origin, const uint8_t *data, size_t len);

/* Facts from outside the conversation, to the sinks. */
void observed_notice(struct observed_session *o, imap_time_us ts, const char *text);
void observed_tls(struct observed_session *o, imap_time_us ts, const struct capture_tls_info *info);
void observed_flow(struct observed_session *o, imap_time_us ts, enum imap_dir toward,
		   bool blocked, uint64_t pending);
void observed_fault(struct observed_session *o, const struct capture_fault_mark *mark);
/* Lets the sinks write what they hold (the relay calls it once per read). */
void observed_flush(struct observed_session *o);

/* The session ends as how says: unanswered commands are reported when
 * the connection really closed (not when a capture merely stops), then
 * the summary and the close go to the sinks, which are flushed. The
 * close's byte counts are the adapter's own (how->bytes is not read): the
 * bytes of each direction of the IMAP stream as observed, after TLS,
 * inflated after COMPRESS, lines the proxy wrote to the client included;
 * what a pcap of the session holds. Frees the session and sets *o to
 * NULL. */
void observed_close(struct observed_session **o, const struct capture_close_info *how);

/* Frees the session without a word to the sinks: a capture that could not
 * be read to its end says so itself. */
void observed_discard(struct observed_session **o);

#endif
