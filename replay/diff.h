/* Two recordings of the same scenario compared at the protocol level:
 * `imaptap diff`. Each recording is read through the same path as
 * `imaptap analyze`; per session it keeps the commands the client sent,
 * in order, and for each its status, its response code, the kinds of
 * untagged response that came while it was in flight and its latency;
 * and the capabilities the server announced and the extensions ENABLEd.
 * Sessions are matched in order; their commands by a longest common
 * subsequence of their names, so identical commands keep their own order
 * and one inserted or dropped shows as that.
 *
 * Every name, code and kind is kept escaped (capture/escape.h): what a
 * peer sent reaches no report raw. */
#ifndef REPLAY_DIFF_H
#define REPLAY_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "imap/types.h"

struct replay_diff_options {
	double time_factor;       /* a latency differs past this factor (0: not compared) */
	imap_time_us time_floor;  /* ... and by more than this much */
	FILE *report;             /* the readable report, or NULL */
	FILE *events;             /* one JSON record per difference, or NULL */
	const char *name_a, *name_b; /* the recordings' names, for the report */
};

struct replay_diff_result {
	unsigned sessions_a, sessions_b;
	unsigned differences;
};

/* Reads both recordings and writes what differs. Returns 0 (result says
 * how many differences), or -1 with a one-line message in err naming the
 * recording that could not be read. */
int replay_diff(const char *path_a, const char *path_b, const struct replay_diff_options *options,
		struct replay_diff_result *result, char *err, size_t errlen);

#endif
