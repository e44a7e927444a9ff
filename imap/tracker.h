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

#include "imap/classify.h"
#include "imap/types.h"

#define IMAP_TAG_SHOW 64       /* bytes of a tag kept for reports */
#define IMAP_TRACKER_MAX_FLIGHT 1024 /* commands in flight remembered per session */

struct imap_completion {
	char tag[IMAP_TAG_SHOW]; /* NUL-terminated, cut at IMAP_TAG_SHOW - 1 bytes */
	char command[IMAP_NAME_MAX];
	bool uid;
	enum imap_status status;
	imap_time_us started;   /* when the command line was seen */
	imap_time_us finished;  /* when the tagged completion was seen */
	imap_time_us latency;   /* finished - started */
	bool idle;              /* an IDLE command */
	imap_time_us done_at;   /* IDLE: when DONE was seen, -1 if never */
	imap_time_us done_to_ok; /* IDLE: finished - done_at, -1 without DONE */
};

struct imap_tracker;

struct imap_tracker *imap_tracker_new(void);
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
