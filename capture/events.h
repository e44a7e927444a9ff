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
	capture_log_fn *log;  /* one message when writing fails */
	void *log_ctx;
};

/* Opens path for appending (created mode 0600). Returns 0 and the sink,
 * or -1 with a message in err. */
int capture_events_new(const struct capture_events_config *config, struct capture_sink *sink_r,
		       char *err, size_t errlen);

#endif
