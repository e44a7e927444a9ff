/* A time window in front of an output: only what is stamped between since
 * and until reaches it (analyze --since/--until). The rules still see the
 * whole capture, so a stall that began before the window fires inside it
 * with its true wait. The settings a capture was made with always pass:
 * they say how what is shown was judged. */
#ifndef CAPTURE_WINDOW_H
#define CAPTURE_WINDOW_H

#include "capture/sink.h"

/* Wraps inner (taking it over: destroying the window destroys it). since
 * or until < 0: open on that side. Returns 0, or -1 when out of memory
 * (inner is left as it was, still the caller's). */
int capture_window_wrap(struct capture_sink inner, imap_time_us since, imap_time_us until,
			struct capture_sink *sink_r);

#endif
