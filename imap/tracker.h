/* Session tracker: commands in flight and their completions.
 *
 * Fed the classified lines of both directions with their times, it pairs
 * every tagged completion with its command and reports the latency; for
 * IDLE also the time from DONE to the completion. Pure: the caller passes
 * every timestamp. */
#ifndef IMAP_TRACKER_H
#define IMAP_TRACKER_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/anomaly.h"
#include "imap/classify.h"
#include "imap/types.h"

#define IMAP_TAG_SHOW 64       /* bytes of a tag kept for reports */
#define IMAP_TRACKER_MAX_FLIGHT 1024 /* commands in flight remembered per session */

struct imap_completion {
	char tag[IMAP_TAG_SHOW]; /* NUL-terminated, cut at IMAP_TAG_SHOW - 1 bytes */
	char command[IMAP_NAME_MAX];
	enum imap_keyword keyword; /* the command as an id */
	bool uid;
	enum imap_status status;
	imap_time_us started;   /* when the command line was seen */
	imap_time_us finished;  /* when the tagged completion was seen */
	imap_time_us latency;   /* finished - started */
	bool idle;              /* an IDLE command */
	imap_time_us done_at;   /* IDLE: when DONE was seen, -1 if never */
	imap_time_us done_to_ok; /* IDLE: finished - done_at, -1 without DONE */
};

/* Thresholds of the rules that wait; 0 picks the default. */
struct imap_tracker_config {
	imap_time_us stall;         /* command-stall, *-not-reading (default 10 s) */
	imap_time_us done_stall;    /* done-stall (default 5 s) */
	imap_time_us idle_max;      /* idle-too-long (default 29 min) */
	imap_time_us keepalive_gap; /* keepalive-gap; 0 off */
};

#define IMAP_TRACKER_DEFAULT_STALL (10 * IMAP_US_PER_S)
#define IMAP_TRACKER_DEFAULT_DONE_STALL (5 * IMAP_US_PER_S)
#define IMAP_TRACKER_DEFAULT_IDLE_MAX (29 * 60 * IMAP_US_PER_S)

/* config with the defaults where a field is 0 or less (keepalive-gap
 * stays off): the thresholds the rules run with. */
struct imap_tracker_config imap_tracker_config_resolved(const struct imap_tracker_config *config);

typedef void imap_anomaly_cb(void *ctx, const struct imap_anomaly *anomaly);

struct imap_tracker;

struct imap_tracker *imap_tracker_new(void);

/* Turns the anomaly rules on: findings go to cb. config may be NULL. */
void imap_tracker_set_rules(struct imap_tracker *tracker, const struct imap_tracker_config *config,
			    imap_anomaly_cb *cb, void *ctx);

/* The server sent "+"; literal_waits: a client's synchronising literal
 * was waiting for it (the conversation follows those). */
void imap_tracker_continuation(struct imap_tracker *tracker, imap_time_us ts, bool literal_waits);

/* Time passed with no line: fires the rules that wait (stalls). */
void imap_tracker_tick(struct imap_tracker *tracker, imap_time_us now);

/* The earliest time a tick could fire a rule, as things stand; -1 when no
 * rule waits. New lines and bytes only move it later or add to it, so a
 * caller arms one timer per session and looks again when it fires. */
imap_time_us imap_tracker_next_deadline(struct imap_tracker *tracker);
/* Whether imap_tracker_tick at now would fire a rule. */
bool imap_tracker_due(struct imap_tracker *tracker, imap_time_us now);

/* The connection to the server is up at ts: its greeting is due
 * (greeting-stall). */
void imap_tracker_connected(struct imap_tracker *tracker, imap_time_us ts);

/* Any byte of dir seen at ts (lines and literal data): progress. */
void imap_tracker_activity(struct imap_tracker *tracker, enum imap_dir dir, imap_time_us ts);

/* The output toward the receiver of dir has not drained since `since`
 * with `pending` bytes queued (since < 0: it drains again). The proxy
 * reports what it sees; analyze reports zero windows. */
void imap_tracker_blocked(struct imap_tracker *tracker, enum imap_dir dir, imap_time_us since,
			  uint64_t pending, imap_time_us now);

/* What the server's stream holds unfinished, as its framer sees it: the
 * stall rules say whether the server stopped in the middle of a response
 * or never started one. */
struct imap_server_partial {
	uint64_t line_bytes;   /* bytes of a line whose CRLF has not come */
	uint64_t literal_len;  /* n of the literal being received, 0 when none */
	uint64_t literal_left; /* its bytes still to come */
};

/* Updates what the server's stream holds unfinished (zeros: nothing). */
void imap_tracker_server_partial(struct imap_tracker *tracker,
				 const struct imap_server_partial *partial);

/* A literal the connection ended inside of. */
struct imap_literal_cut {
	enum imap_dir dir;     /* whose literal */
	const char *line;      /* the line that announced it, short: "a1 APPEND", "* FETCH" */
	struct imap_slice tag; /* client literal: its command's tag; else empty */
	uint64_t len;          /* n announced */
	uint64_t missing;      /* bytes of the n that never came */
};

/* The connection ended at ts: commands still unanswered are reported, by
 * tag (the first few), and with them the literal the stream was cut
 * inside of, if cut is not NULL. Nothing is said after LOGOUT completed
 * or a BYE. */
void imap_tracker_eof(struct imap_tracker *tracker, imap_time_us ts,
		      const struct imap_literal_cut *cut);

/* The observation ends at ts (closed: the connection closed; else the
 * capture stopped): every finding still open (a stall not answered, a
 * peer still not reading, a greeting that never came) gets its closing
 * row, never_resolved, so no finding is left without an end. */
void imap_tracker_close_findings(struct imap_tracker *tracker, imap_time_us ts, bool closed);
void imap_tracker_free(struct imap_tracker **tracker);

/* Feeds one classified line seen at ts. Returns true and fills
 * completion_r when the line completes a command in flight. */
bool imap_tracker_line(struct imap_tracker *tracker, enum imap_dir dir, imap_time_us ts,
		       const struct imap_line_info *info, struct imap_completion *completion_r);

/* True while an AUTHENTICATE exchange awaits its tagged completion. */
bool imap_tracker_auth_pending(const struct imap_tracker *tracker);

/* Commands sent and not yet completed. */
size_t imap_tracker_in_flight(const struct imap_tracker *tracker);

/* Commands forgotten because too many were in flight at once. */
uint64_t imap_tracker_dropped(const struct imap_tracker *tracker);

#endif
