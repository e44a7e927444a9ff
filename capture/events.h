/* The JSONL event log: one JSON object per line for every session event,
 * IMAP line, literal chunk, completion and anomaly. Fields are documented
 * in docs/events.md; the schema is a contract. */
#ifndef CAPTURE_EVENTS_H
#define CAPTURE_EVENTS_H

#include <stddef.h>

#include "capture/pcap_writer.h"
#include "capture/sink.h"

struct capture_events_config {
	const char *path;     /* "-" for standard output */
	enum capture_outfile_mode mode; /* NEW: an event log already there is refused */
	const char *command;  /* "proxy", "analyze": who writes, for the run-start record */
	const char *version;  /* imaptap's */
	imap_time_us started; /* when the run began */
	capture_log_fn *log;  /* one message when writing fails */
	void *log_ctx;
};

/* Opens path as config->mode says (created mode 0600) and writes the
 * run-start record: a new run id (16 hex digits) that every record of
 * this run carries, so the records of two runs in one file are told
 * apart. Returns 0 and the sink, or -1 with a message in err and
 * *refused_r (may be NULL) set when a log already there was refused. */
int capture_events_new(const struct capture_events_config *config, struct capture_sink *sink_r,
		       bool *refused_r, char *err, size_t errlen);

#endif
