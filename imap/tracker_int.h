/* What the tracker's files share: the commands in flight and the
 * tracker's state (imap/tracker.c follows the lines, imap/waiting.c the
 * rules that wait). Only they include it. */
#ifndef IMAP_TRACKER_INT_H
#define IMAP_TRACKER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/tracker.h"

struct command {
	uint8_t *tag;
	size_t tag_len;
	char name[IMAP_NAME_MAX];
	enum imap_keyword keyword;
	bool uid;
	imap_time_us started;
	imap_time_us clock;    /* when its stall clock started: behind pipelined
				  commands, at the previous completion */
	imap_time_us done_at;  /* IDLE: DONE seen */
	imap_time_us plus_at;  /* IDLE: "+" seen */
	bool idle;
	bool stalled;          /* a stall was reported: resolve it on completion */
	bool untagged_early;   /* untagged-before-continuation said once */
	bool too_long;         /* idle-too-long said */
	uint64_t untagged;     /* untagged responses while in flight */
};

struct imap_tracker {
	/* in issue order, a ring from head: the oldest leaves in O(1) when
	 * a pipelining client keeps IMAP_TRACKER_MAX_FLIGHT in flight */
	struct command *flight;
	size_t head;
	size_t count;
	size_t cap; /* a power of two */
	size_t idles; /* IDLE commands among them: most lines need not look */
	uint64_t dropped;
	uint8_t *auth_tag; /* tag of a pending AUTHENTICATE, or NULL */
	size_t auth_tag_len;

	/* rules */
	imap_anomaly_cb *cb;
	void *ctx;
	struct imap_tracker_config config;
	imap_time_us last_activity[2];
	imap_time_us last_completion;
	imap_time_us bye_at;      /* -1 none */
	bool logout_sent;
	bool logout_done;
	bool after_bye_said;
	bool client_turn;   /* a "+" asked the client for more: its delay, not the server's */
	imap_time_us blocked_since[2]; /* -1 draining */
	uint64_t blocked_pending[2];
	bool blocked_said[2];
	imap_time_us keepalive_said; /* activity time a keepalive gap was said for */
	imap_time_us greeting_since; /* connected, no byte from the server yet; -1 */
	bool greeting_said;
	bool stray_done;    /* a stray DONE awaits the server's "DONE BAD" */
	struct imap_server_partial server_partial;
	/* imap_tracker_next_deadline's answer while nothing has changed since
	 * (each function that changes the state forgets it; the server's
	 * partial response only words a finding, no rule's due time reads
	 * it): a tick before then has nothing to fire */
	imap_time_us due;
	bool due_known;
};

/* The i-th command in flight, from the oldest. */
static inline struct command *in_flight(const struct imap_tracker *t, size_t i)
{
	return &t->flight[(t->head + i) & (t->cap - 1)];
}

/* "12.004 s", "850 ms" */
void tracker_secs(char *out, size_t size, imap_time_us us);

/* A finding about command c (NULL: none) to the tracker's callback. */
void tracker_say(struct imap_tracker *t, enum imap_rule rule, imap_time_us ts,
		 const struct command *c, imap_time_us threshold, imap_time_us waited, bool resolved,
		 const char *fmt, ...) __attribute__((format(printf, 8, 9)));

#endif
