/* What capture/metrics.c (the counting sink) and capture/metrics_text.c
 * (the exposition text) share. Only these files include it. */
#ifndef CAPTURE_METRICS_INT_H
#define CAPTURE_METRICS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "capture/metrics.h"
#include "capture/session_table.h"
#include "imap/anomaly.h"
#include "imap/classify.h"

#define METRICS_BUCKETS_MAX 16
/* command labels: the known IMAP commands, a few other atoms, then OTHER */
#define METRICS_UNKNOWN_MAX 8
#define METRICS_COMMANDS_MAX 72
#define METRICS_FAULTS_MAX 32
#define METRICS_LABEL_MAX (IMAP_NAME_MAX + 4) /* "UID " and a name */

struct metrics_hist {
	uint64_t bucket[METRICS_BUCKETS_MAX]; /* by upper bound, not cumulative; the last: +Inf */
	uint64_t count;
	uint64_t sum_us;
};

struct metrics_route {
	char *name; /* NULL for the last, "other" */
	uint64_t open;
	uint64_t total;
	uint64_t bytes[2]; /* by enum imap_dir */
	/* closed sessions, by who ended them and how */
	uint64_t closed[CAPTURE_SIDE_CAPTURE + 1][CAPTURE_END_UNSEEN + 1];
};

struct metrics_command {
	char name[METRICS_LABEL_MAX];
	struct metrics_hist h;
};

struct metrics_fault {
	char *action;
	char *phase;
	uint64_t count;
};

struct capture_metrics {
	char *version;
	imap_time_us started;
	/* [CAPTURE_METRICS_ROUTES_MAX] is "other", for routes past the table */
	struct metrics_route route[CAPTURE_METRICS_ROUTES_MAX + 1];
	unsigned routes;
	struct metrics_command command[METRICS_COMMANDS_MAX];
	unsigned commands;
	unsigned unknown_commands;
	struct metrics_hist other_command;
	struct metrics_hist done_to_ok;
	uint64_t anomalies[IMAP_RULE_COUNT];
	struct metrics_fault fault[METRICS_FAULTS_MAX + 1]; /* the last: "other" */
	unsigned faults;
	struct capture_session_table sessions; /* open ones, each with its route's index */
};

extern const double metrics_latency_bounds[];
extern const unsigned metrics_latency_count;
extern const double metrics_done_bounds[];
extern const unsigned metrics_done_count;

#endif
