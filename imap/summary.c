#include "imap/summary.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latencies are kept in an array that grows with use up to
 * IMAP_SUMMARY_SAMPLES: most sessions send a few commands of each name,
 * and thousands of idle sessions should not each hold 2 KiB per name. */
struct name_log {
	struct imap_command_stats stats;
	imap_time_us *samples;
	size_t kept;
	size_t cap;
};

struct imap_summary_builder {
	struct name_log *names;
	size_t count;
	size_t cap;
	struct imap_command_stats *out; /* rebuilt by imap_summary_get */
	struct imap_summary summary;
};

struct imap_summary_builder *imap_summary_new(void)
{
	struct imap_summary_builder *b = calloc(1, sizeof(*b));

	if (b != NULL) {
		b->summary.longest_idle = -1;
		b->summary.worst_done_to_ok = -1;
	}
	return b;
}

void imap_summary_free(struct imap_summary_builder **builder)
{
	struct imap_summary_builder *b = *builder;

	if (b == NULL)
		return;
	for (size_t i = 0; i < b->count; i++)
		free(b->names[i].samples);
	free(b->names);
	free(b->out);
	free(b);
	*builder = NULL;
}

static struct name_log *name_log(struct imap_summary_builder *b, const char *name)
{
	for (size_t i = 0; i < b->count; i++)
		if (strcmp(b->names[i].stats.name, name) == 0)
			return &b->names[i];
	/* the last slot is for every name past the limit */
	if (b->count == IMAP_SUMMARY_NAMES)
		return &b->names[b->count - 1];
	if (b->count == IMAP_SUMMARY_NAMES - 1)
		name = IMAP_SUMMARY_OTHER;
	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4;
		struct name_log *n = realloc(b->names, cap * sizeof(*n));

		if (n == NULL)
			return NULL;
		b->names = n;
		b->cap = cap;
	}
	memset(&b->names[b->count], 0, sizeof(b->names[0]));
	snprintf(b->names[b->count].stats.name, sizeof(b->names[0].stats.name), "%s", name);
	return &b->names[b->count++];
}

void imap_summary_completion(struct imap_summary_builder *b, const struct imap_completion *c,
			     bool injected)
{
	char name[IMAP_NAME_MAX + 4];
	struct name_log *log;

	snprintf(name, sizeof(name), "%s%.*s", c->uid ? "UID " : "", IMAP_NAME_MAX - 5, c->command);
	log = name_log(b, name);
	if (log == NULL)
		return;
	if (injected) {
		log->stats.injected++;
		return;
	}
	log->stats.count++;
	if (c->status == IMAP_STATUS_NO)
		log->stats.no++;
	else if (c->status == IMAP_STATUS_BAD)
		log->stats.bad++;
	if (c->latency > log->stats.max)
		log->stats.max = c->latency;
	if (log->kept == log->cap && log->cap < IMAP_SUMMARY_SAMPLES) {
		size_t cap = log->cap ? log->cap * 2 : 4;
		imap_time_us *grown = realloc(log->samples, cap * sizeof(*grown));

		if (grown != NULL) {
			log->samples = grown;
			log->cap = cap;
		}
	}
	if (log->kept < log->cap)
		log->samples[log->kept++] = c->latency;
	else if (log->kept == IMAP_SUMMARY_SAMPLES) /* a deterministic spread over the session */
		log->samples[(log->stats.count * 2654435761u) % IMAP_SUMMARY_SAMPLES] = c->latency;
	if (c->idle) {
		b->summary.idles++;
		if (c->latency > b->summary.longest_idle)
			b->summary.longest_idle = c->latency;
		if (c->done_to_ok > b->summary.worst_done_to_ok)
			b->summary.worst_done_to_ok = c->done_to_ok;
	}
}

void imap_summary_anomaly(struct imap_summary_builder *b, const struct imap_anomaly *a)
{
	if (a->resolved || a->never_resolved || (unsigned)a->rule >= IMAP_RULE_COUNT)
		return;
	b->summary.anomalies[a->rule]++;
	b->summary.anomaly_total++;
}

static int by_value(const void *x, const void *y)
{
	imap_time_us a = *(const imap_time_us *)x, b = *(const imap_time_us *)y;

	return a < b ? -1 : a > b;
}

const struct imap_summary *imap_summary_get(struct imap_summary_builder *b)
{
	free(b->out);
	b->out = calloc(b->count ? b->count : 1, sizeof(*b->out));
	b->summary.commands = b->out;
	b->summary.command_count = 0;
	if (b->out == NULL)
		return &b->summary;
	for (size_t i = 0; i < b->count; i++) {
		struct name_log *log = &b->names[i];
		imap_time_us sorted[IMAP_SUMMARY_SAMPLES];

		if (log->kept > 0)
			memcpy(sorted, log->samples, log->kept * sizeof(sorted[0]));
		qsort(sorted, log->kept, sizeof(sorted[0]), by_value);
		b->out[i] = log->stats;
		if (log->kept > 0) {
			b->out[i].p50 = sorted[(log->kept - 1) / 2];
			b->out[i].p95 = sorted[(log->kept * 95 + 99) / 100 - 1];
		}
	}
	b->summary.command_count = b->count;
	return &b->summary;
}
