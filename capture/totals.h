/* The whole capture in numbers, for the end of `imaptap analyze`: how many
 * sessions and how they ended, every command across all sessions (count,
 * p50, p95, max, NO and BAD, answers the proxy injected apart), and the
 * anomalies by rule. A sink that collects; once the capture is read its
 * totals go to the other outputs (capture_sinks_whole), which show them. */
#ifndef CAPTURE_TOTALS_H
#define CAPTURE_TOTALS_H

#include <stdbool.h>

#include "capture/sink.h"

struct capture_totals;

/* NULL when out of memory. The sink's self is the returned totals; the
 * sinks' destroy frees it, so report before destroying them. */
struct capture_totals *capture_totals_new(struct capture_sink *sink_r);

/* The totals so far; valid until the next call or the sink's destroy. */
const struct capture_whole *capture_totals_get(struct capture_totals *totals);

#endif
