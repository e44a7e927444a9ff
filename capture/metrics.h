/* The numbers of a proxy run for monitoring (`proxy --metrics`): a sink
 * that counts sessions and bytes by route, command latencies, DONE->OK
 * times, anomalies by rule and faults that acted, and renders them with
 * what the other outputs wrote in the Prometheus text exposition format
 * (version 0.0.4).
 *
 * Pure: no I/O, no clock. Every call, the sink's ops and the rendering,
 * runs under the outputs' lock when several loops share them. Label
 * values that come from a peer (command names) are bounded: a name that
 * is not a plain atom of letters, or one more than the table holds,
 * counts as OTHER. */
#ifndef CAPTURE_METRICS_H
#define CAPTURE_METRICS_H

#include <stddef.h>

#include "capture/sink.h"

/* Seconds, upper bounds of the histograms' buckets (+Inf comes last). */
#define CAPTURE_METRICS_LATENCY_BUCKETS                                                  \
	{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
#define CAPTURE_METRICS_DONE_BUCKETS                                                     \
	{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

/* Routes kept apart; the sessions of any further one count as "other". */
#define CAPTURE_METRICS_ROUTES_MAX 64

struct capture_metrics_config {
	const char *version;  /* imaptap_build_info's label */
	imap_time_us started; /* when the process started, microseconds since the epoch */
};

struct capture_metrics;

/* The metrics and the sink that feeds them; the sink owns them (its
 * destroy frees them). NULL when out of memory. */
struct capture_metrics *capture_metrics_new(const struct capture_metrics_config *config,
					    struct capture_sink *sink_r);

/* The exposition text of everything counted so far, and of the stats of
 * every sink of outputs that has them (several sinks of one kind are
 * summed). Returns a NUL-terminated string to free(), *len_r its length;
 * NULL when out of memory. */
char *capture_metrics_render(const struct capture_metrics *m, const struct capture_sinks *outputs,
			     size_t *len_r);

#endif
