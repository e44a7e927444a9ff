/* The faults of one session (--fault), between what the proxy reads from a
 * peer and what it passes on to the other.
 *
 * Bytes read from a peer are taken into a queue per direction and released
 * later: at once, after a delay, after a hold, or dropped (a command the
 * fault answers itself). The session observes bytes when they are
 * released, so the timeline, the rules and the pcap see what the receiving
 * peer saw, when it saw it. Faults that need to know where IMAP lines are
 * run their own framer over the queue; they release whole units only.
 * Every action is reported through the host's mark(). A session with no
 * fault that applies to it has no proxy_faults at all. */
#ifndef PROXY_FAULT_H
#define PROXY_FAULT_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "capture/sink.h"
#include "imap/conversation.h"
#include "proxy/fault_spec.h"

#define PROXY_FAULTS_MAX 16

/* What the session does for its faults. ctx is the session. */
struct proxy_fault_host {
	/* Observe the first len bytes of from as dir (written by origin), then
	 * pass them on to the receiver (forward) or drop them; they leave from. */
	void (*release)(void *ctx, enum imap_dir dir, enum imap_origin origin, struct evbuffer *from,
			size_t len, bool forward);
	/* Bytes the fault writes to the client as if the server sent them. */
	void (*inject)(void *ctx, const char *text, size_t len);
	/* Bytes the fault writes to the server in the client's place (not on
	 * the client leg: only the fault's mark records them). */
	void (*inject_server)(void *ctx, const char *text, size_t len);
	/* A batch toward dir's receiver is complete: write it, resume readers. */
	void (*flush)(void *ctx, enum imap_dir dir);
	/* Stop or resume reading one side (the client, else the server). */
	void (*set_reading)(void *ctx, bool client, bool on);
	/* Cut the writes toward dir's receiver with split (NULL: as they come). */
	void (*set_split)(void *ctx, enum imap_dir dir, struct imap_split *split);
	/* dir's sender closed and everything it sent is released now. */
	void (*eof)(void *ctx, enum imap_dir dir);
	/* Close the session (after a BYE). */
	void (*close)(void *ctx, const char *why);
	void (*mark)(void *ctx, const struct capture_fault_mark *mark);
	/* Around each of the faults' own timer callbacks: whatever the
	 * callbacks above do (close the session), the session and the faults
	 * stay in memory until leave, which may free both. */
	void (*enter)(void *ctx);
	void (*leave)(void *ctx);
	/* The proxy's clock, the one every row of the session is stamped by. */
	imap_time_us (*now)(void);
};

struct proxy_faults;

/* The faults of count that apply to session; NULL with *none_r true when
 * none does, NULL with *none_r false when out of memory. faults must
 * outlive the result. */
struct proxy_faults *proxy_faults_new(struct event_base *base, const struct proxy_fault *faults,
				      size_t count, unsigned session,
				      const struct proxy_fault_host *host, void *ctx, bool *none_r);
void proxy_faults_free(struct proxy_faults **faults);

/* The session relays now (both legs carry IMAP): faults that act from the
 * start begin. May stop reading a side. */
void proxy_faults_start(struct proxy_faults *faults, imap_time_us now);

/* Takes the first len bytes of from, read from dir's sender at now, into
 * the queue, and releases what is due. */
void proxy_faults_take(struct proxy_faults *faults, enum imap_dir dir, enum imap_origin origin,
		       struct evbuffer *from, size_t len, imap_time_us now);

/* Bytes of dir read and not yet released. */
size_t proxy_faults_queued(const struct proxy_faults *faults, enum imap_dir dir);

/* dir's sender closed: once the queue is empty, host eof() is called
 * (from the loop, never from inside this call). */
void proxy_faults_eof(struct proxy_faults *faults, enum imap_dir dir);

/* True while a stop-reading fault keeps that side unread. */
bool proxy_faults_reading_stopped(const struct proxy_faults *faults, bool client);

#endif
