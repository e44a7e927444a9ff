#include "capture/totals.h"

#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/timefmt.h"
#include "imap/summary.h"

#define END_KINDS ((CAPTURE_SIDE_CAPTURE + 1) * (CAPTURE_END_UNSEEN + 1))

struct capture_totals {
	struct imap_summary_builder *all; /* every session's completions and findings */
	unsigned sessions;
	unsigned ended[END_KINDS];        /* by (who, how) */
};

static void t_open(void *self, const struct capture_session_info *info)
{
	struct capture_totals *t = self;

	(void)info;
	t->sessions++;
}

static void t_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct capture_totals *t = self;

	(void)session;
	if (obs->completion != NULL)
		imap_summary_completion(t->all, obs->completion, obs->origin == IMAP_ORIGIN_PROXY);
}

static void t_anomaly(void *self, unsigned session, const struct imap_anomaly *anomaly)
{
	struct capture_totals *t = self;

	(void)session;
	imap_summary_anomaly(t->all, anomaly);
}

static void t_close(void *self, const struct capture_close_info *info)
{
	struct capture_totals *t = self;
	unsigned k = (unsigned)info->by * (CAPTURE_END_UNSEEN + 1) + (unsigned)info->end;

	if (k < END_KINDS)
		t->ended[k]++;
}

static void t_destroy(void *self)
{
	struct capture_totals *t = self;

	imap_summary_free(&t->all);
	free(t);
}

static const struct capture_sink_ops totals_ops = {
	.open = t_open,
	.observe = t_observe,
	.anomaly = t_anomaly,
	.close = t_close,
	.destroy = t_destroy,
};

struct capture_totals *capture_totals_new(struct capture_sink *sink_r)
{
	struct capture_totals *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->all = imap_summary_new()) == NULL) {
		free(t);
		return NULL;
	}
	sink_r->ops = &totals_ops;
	sink_r->self = t;
	return t;
}

static void report_ends(const struct capture_totals *t, FILE *out)
{
	bool first = true;

	fprintf(out, "== capture: %u session%s", t->sessions, t->sessions == 1 ? "" : "s");
	for (unsigned k = 0; k < END_KINDS; k++) {
		if (t->ended[k] == 0)
			continue;
		fprintf(out, "%s %u by the %s (%s)", first ? "; ended:" : ",", t->ended[k],
			capture_side_str((enum capture_side)(k / (CAPTURE_END_UNSEEN + 1))),
			capture_end_str((enum capture_end)(k % (CAPTURE_END_UNSEEN + 1))));
		first = false;
	}
	fputc('\n', out);
}

static void report_commands(const struct imap_summary *sum, FILE *out)
{
	char a[32], b[32], c[32];

	fputs("== commands:", out);
	if (sum->command_count == 0)
		fputs(" none completed", out);
	for (size_t i = 0; i < sum->command_count; i++) {
		const struct imap_command_stats *st = &sum->commands[i];

		char name[4 * sizeof(st->name) + 1];

		/* a name is what a peer sent: through the one escaping gate */
		capture_escape(name, sizeof(name), st->name, strlen(st->name), 0, NULL);
		fprintf(out, "%s %s %llu", i ? "," : "", name, (unsigned long long)st->count);
		if (st->count > 0)
			fprintf(out, " (p50 %s, p95 %s, max %s", capture_format_duration(a, sizeof(a), st->p50),
				capture_format_duration(b, sizeof(b), st->p95),
				capture_format_duration(c, sizeof(c), st->max));
		else
			fputs(" (", out);
		if (st->no > 0)
			fprintf(out, "; NO %llu", (unsigned long long)st->no);
		if (st->bad > 0)
			fprintf(out, "; BAD %llu", (unsigned long long)st->bad);
		if (st->injected > 0)
			fprintf(out, "%s%llu injected by the proxy", st->count > 0 ? "; " : "",
				(unsigned long long)st->injected);
		fputc(')', out);
	}
	fputc('\n', out);
}

static void report_anomalies(const struct imap_summary *sum, FILE *out)
{
	bool first = true;

	fputs("== anomalies:", out);
	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
		if (sum->anomalies[i] == 0)
			continue;
		fprintf(out, "%s %s %u", first ? "" : ",", imap_rule_id((enum imap_rule)i),
			sum->anomalies[i]);
		first = false;
	}
	if (first)
		fputs(" none", out);
	fputc('\n', out);
}

void capture_totals_report(struct capture_totals *t, FILE *out)
{
	const struct imap_summary *sum = imap_summary_get(t->all);

	report_ends(t, out);
	report_commands(sum, out);
	report_anomalies(sum, out);
	fflush(out);
}
