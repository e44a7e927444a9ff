/* The live timeline: one human-readable row per IMAP line.
 *
 *   09:17:35.123456 #1 C> a1 LOGIN alice ******
 *   09:17:35.124001 #1 S< a1 OK Logged in  (LOGIN 545 us)
 *
 * Literal bytes are summarised as "{N bytes}" at the start of the row that
 * resumes their line. Rows show masked data only, and every string in
 * them (peer bytes, names from certificates and capture files, notices
 * quoting either) passes capture/escape.h: the only raw ESC bytes a row
 * holds are its own colour codes (SGR 0, 1, 2, 31, 32, 33, 35, 36). */
#ifndef CAPTURE_TIMELINE_H
#define CAPTURE_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "capture/sink.h"

#define CAPTURE_TIMELINE_DEFAULT_WIDTH 400 /* line characters shown per row */

struct capture_timeline_config {
	FILE *out;
	bool color;       /* ANSI colours */
	size_t max_text;  /* bytes of a line shown (a display width, not --max-line: the
			     line is observed whole up to that), 0 for the default; the
			     rest is summed up as "... (N bytes)" */
	bool whole_lines; /* every observed byte of a line shown, however long */
	bool settings;    /* a row for the settings a capture was made with (analyze; the
			     proxy says its own when it starts) */
	bool utc;         /* the clock in UTC, not local time */
	bool anomalies_only; /* only what went wrong: anomaly rows and their resolutions,
				sessions opening and closing, summaries */
};

/* Returns a sink whose ops are NULL when out of memory. */
struct capture_sink capture_timeline_new(const struct capture_timeline_config *config);

#endif
