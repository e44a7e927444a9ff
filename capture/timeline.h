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
	size_t max_text;  /* characters of a line shown, 0 for the default */
	bool settings;    /* a row for the settings a capture was made with (analyze; the
			     proxy says its own when it starts) */
};

/* Returns a sink whose ops are NULL when out of memory. */
struct capture_sink capture_timeline_new(const struct capture_timeline_config *config);

#endif
