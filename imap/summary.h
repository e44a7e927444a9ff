/* Per-session summary: commands by name with count and latency p50, p95
 * and max; IDLE count, the longest IDLE and the worst DONE->OK; anomalies
 * by rule. Fed the conversation's completions and findings. */
#ifndef IMAP_SUMMARY_H
#define IMAP_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/anomaly.h"
#include "imap/mailbox.h"
#include "imap/tracker.h"

/* Latencies kept per command name for the percentiles; beyond that a
 * deterministic sample of them. */
#define IMAP_SUMMARY_SAMPLES 256
/* Command names kept apart; the completions of any further name (a
 * hostile or broken peer can invent any number) are counted as one,
 * IMAP_SUMMARY_OTHER, so memory and time stay bounded. */
#define IMAP_SUMMARY_NAMES 128
#define IMAP_SUMMARY_OTHER "(other commands)"

struct imap_command_stats {
	char name[IMAP_NAME_MAX + 4]; /* "FETCH"; "UID FETCH" for UID commands */
	uint64_t count;             /* answered by the server (their latencies below) */
	imap_time_us p50, p95, max;
	uint64_t no, bad;           /* of those, answered NO and BAD */
	uint64_t injected;          /* answered by the proxy itself (--fault answer): not in
				       count or the latencies */
};

struct imap_summary {
	const struct imap_command_stats *commands; /* by first use */
	size_t command_count;
	uint64_t idles;
	imap_time_us longest_idle;  /* -1 none */
	imap_time_us worst_done_to_ok; /* -1 none */
	uint32_t anomalies[IMAP_RULE_COUNT]; /* findings by rule, resolutions not counted */
	uint64_t anomaly_total;
	/* what the session learned of its mailboxes, by first mention (the
	 * state the client saw); NULL when none */
	const struct imap_mailbox_facts *const *mailboxes;
	size_t mailbox_count;
};

struct imap_summary_builder;

struct imap_summary_builder *imap_summary_new(void);
void imap_summary_free(struct imap_summary_builder **builder);
/* injected: the proxy wrote the completion (a fault's answer). */
void imap_summary_completion(struct imap_summary_builder *builder,
			     const struct imap_completion *completion, bool injected);
void imap_summary_anomaly(struct imap_summary_builder *builder, const struct imap_anomaly *anomaly);
/* The summary so far; valid until the next call on the builder. */
const struct imap_summary *imap_summary_get(struct imap_summary_builder *builder);

#endif
