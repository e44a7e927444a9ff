/* The live timeline: one human-readable row per IMAP line.
 *
 *   09:17:35.123456 #1 C> a1 LOGIN alice ******
 *   09:17:35.124001 #1 S< a1 OK Logged in  (LOGIN 545 us)
 *
 * Literal bytes are summarised as "{N bytes}" at the start of the row that
 * resumes their line. Rows show masked data only. */
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
};

/* Returns a sink whose ops are NULL when out of memory. */
struct capture_sink capture_timeline_new(const struct capture_timeline_config *config);

/* Appends the printable form of data[0..len) to out (at most max bytes of
 * input shown): printable ASCII as is, everything else as \xNN. Returns the
 * number of characters written, excluding the NUL. */
size_t capture_printable(char *out, size_t out_size, const uint8_t *data, size_t len);

#endif
