/* The metrics as Prometheus text exposition (version 0.0.4): a HELP and
 * a TYPE line per family, then its samples, every label value escaped. */
#include "capture/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/metrics_int.h"

struct text {
	char *p;
	size_t len;
	size_t cap;
	bool failed;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2 + (size_t)n;
		char *p = realloc(t->p, cap);

		if (p == NULL) {
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

/* A label value as the format wants it: backslash, double quote and line
 * feed escaped; any other byte outside printable ASCII becomes '?', so
 * the text stays valid UTF-8 whatever the value held. */
static const char *label(const char *value, char *out, size_t outlen)
{
	size_t o = 0;

	for (const unsigned char *s = (const unsigned char *)value; *s != '\0' && o + 3 < outlen; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = (char)*s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *s >= 0x20 && *s < 0x7f ? (char)*s : '?';
		}
	}
	out[o] = '\0';
	return out;
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	add(t, "# HELP imaptap_%s %s\n# TYPE imaptap_%s %s\n", name, help, name, type);
}

static void seconds(struct text *t, uint64_t us)
{
	add(t, "%llu.%06llu", (unsigned long long)(us / IMAP_US_PER_S),
	    (unsigned long long)(us % IMAP_US_PER_S));
}

/* One histogram's samples; labels: "" or `command="LOGIN",`. */
static void histogram(struct text *t, const char *name, const char *labels,
		      const struct metrics_hist *h, const double *bounds, unsigned n)
{
	uint64_t cum = 0;

	for (unsigned i = 0; i < n; i++) {
		cum += h->bucket[i];
		add(t, "imaptap_%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i],
		    (unsigned long long)cum);
	}
	cum += h->bucket[n];
	add(t, "imaptap_%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
	/* labels end with a comma for the le that follows; the others drop it */
	if (labels[0] != '\0')
		add(t, "imaptap_%s_sum{%.*s} ", name, (int)strlen(labels) - 1, labels);
	else
		add(t, "imaptap_%s_sum ", name);
	seconds(t, h->sum_us);
	if (labels[0] != '\0')
		add(t, "\nimaptap_%s_count{%.*s} %llu\n", name, (int)strlen(labels) - 1, labels,
		    (unsigned long long)h->count);
	else
		add(t, "\nimaptap_%s_count %llu\n", name, (unsigned long long)h->count);
}

static const char *route_name(const struct capture_metrics *m, unsigned i)
{
	return i == CAPTURE_METRICS_ROUTES_MAX ? "other" : m->route[i].name;
}

/* The routes that have had a session: the table's, then "other" if used. */
#define EACH_ROUTE(m, i)                                                              \
	for (unsigned i = 0; i <= CAPTURE_METRICS_ROUTES_MAX; i++)                    \
		if (i < (m)->routes || (i == CAPTURE_METRICS_ROUTES_MAX &&            \
					(m)->route[i].total > 0))

static void sessions(struct text *t, const struct capture_metrics *m)
{
	static const char *const dir[] = {"client_to_server", "server_to_client"};
	char r[256];

	family(t, "sessions_open", "gauge", "Sessions open now.");
	EACH_ROUTE(m, i)
		add(t, "imaptap_sessions_open{route=\"%s\"} %llu\n",
		    label(route_name(m, i), r, sizeof(r)), (unsigned long long)m->route[i].open);
	family(t, "sessions_total", "counter", "Sessions opened since the start.");
	EACH_ROUTE(m, i)
		add(t, "imaptap_sessions_total{route=\"%s\"} %llu\n",
		    label(route_name(m, i), r, sizeof(r)), (unsigned long long)m->route[i].total);
	family(t, "relayed_bytes_total", "counter",
	       "Bytes of the IMAP stream relayed, after TLS, inflated after COMPRESS.");
	EACH_ROUTE(m, i)
		for (unsigned d = 0; d < 2; d++)
			add(t, "imaptap_relayed_bytes_total{route=\"%s\",direction=\"%s\"} %llu\n",
			    label(route_name(m, i), r, sizeof(r)), dir[d],
			    (unsigned long long)m->route[i].bytes[d]);
	family(t, "sessions_closed_total", "counter",
	       "Sessions closed, by who ended them (client, server, proxy) and how (eof, "
	       "half-closed, shutdown, reset, error).");
	EACH_ROUTE(m, i)
		for (unsigned by = 0; by <= CAPTURE_SIDE_CAPTURE; by++)
			for (unsigned end = 0; end <= CAPTURE_END_UNSEEN; end++)
				if (m->route[i].closed[by][end] > 0)
					add(t, "imaptap_sessions_closed_total{route=\"%s\",by=\"%s\","
					    "end=\"%s\"} %llu\n", label(route_name(m, i), r, sizeof(r)),
					    capture_side_str((enum capture_side)by),
					    capture_end_str((enum capture_end)end),
					    (unsigned long long)m->route[i].closed[by][end]);
}

static void commands(struct text *t, const struct capture_metrics *m)
{
	char value[METRICS_LABEL_MAX * 2], labels[METRICS_LABEL_MAX * 2 + 16];

	family(t, "command_duration_seconds", "histogram",
	       "Time from a command to its tagged completion, by command.");
	for (unsigned i = 0; i < m->commands; i++) {
		snprintf(labels, sizeof(labels), "command=\"%s\",",
			 label(m->command[i].name, value, sizeof(value)));
		histogram(t, "command_duration_seconds", labels, &m->command[i].h,
			  metrics_latency_bounds, metrics_latency_count);
	}
	if (m->other_command.count > 0)
		histogram(t, "command_duration_seconds", "command=\"OTHER\",", &m->other_command,
			  metrics_latency_bounds, metrics_latency_count);
	family(t, "idle_done_to_ok_seconds", "histogram",
	       "Time from the client's DONE to the server's tagged completion of the IDLE.");
	histogram(t, "idle_done_to_ok_seconds", "", &m->done_to_ok, metrics_done_bounds,
		  metrics_done_count);
}

static void findings(struct text *t, const struct capture_metrics *m)
{
	char a[256], ph[64];

	family(t, "anomalies_total", "counter", "Anomalies found, by rule (docs/rules.md).");
	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++)
		add(t, "imaptap_anomalies_total{rule=\"%s\"} %llu\n",
		    label(imap_rule_id((enum imap_rule)i), a, sizeof(a)),
		    (unsigned long long)m->anomalies[i]);
	family(t, "faults_injected_total", "counter",
	       "Marks of the faults asked for with --fault, by action and phase (docs/faults.md).");
	for (unsigned i = 0; i <= METRICS_FAULTS_MAX; i++) {
		bool other = i == METRICS_FAULTS_MAX;

		if (other ? m->fault[i].count == 0 : i >= m->faults)
			continue;
		add(t, "imaptap_faults_injected_total{action=\"%s\",phase=\"%s\"} %llu\n",
		    label(other ? "other" : m->fault[i].action, a, sizeof(a)),
		    label(other ? "other" : m->fault[i].phase, ph, sizeof(ph)),
		    (unsigned long long)m->fault[i].count);
	}
}

/* The outputs' counters: one family each, a row per kind of output. */
static const struct output_family {
	const char *name;
	const char *help;
	size_t field;     /* of struct capture_output_stats, a uint64_t */
	const char *only; /* the one kind of output that has it, or NULL */
} output_families[] = {
	{"capture_written_bytes_total",
	 "Bytes the outputs (--pcap, --raw-pcap, --events, --pcap-listen) wrote.",
	 offsetof(struct capture_output_stats, bytes), NULL},
	{"capture_write_errors_total", "Writes that failed, each stopping its output until SIGHUP.",
	 offsetof(struct capture_output_stats, write_errors), NULL},
	{"capture_dropped_records_total",
	 "Records (packets, event lines) an output stopped by an error left out.",
	 offsetof(struct capture_output_stats, dropped), NULL},
	{"capture_readers_dropped_total",
	 "Live capture readers (--pcap-listen) dropped for falling behind.",
	 offsetof(struct capture_output_stats, readers_dropped), "pcap-listen"},
};

/* The outputs' stats, one row per kind of output. */
static void outputs(struct text *t, const struct capture_sinks *sinks)
{
	struct capture_output_stats s[CAPTURE_SINKS_MAX];
	unsigned n = 0;
	char o[128];

	for (unsigned i = 0; sinks != NULL && i < sinks->count; i++) {
		struct capture_output_stats one = {0};
		unsigned k;

		if (sinks->sink[i].ops->stats == NULL)
			continue;
		sinks->sink[i].ops->stats(sinks->sink[i].self, &one);
		if (one.output == NULL)
			continue;
		for (k = 0; k < n && strcmp(s[k].output, one.output) != 0; k++)
			;
		if (k == n) {
			s[n++] = one;
			continue;
		}
		s[k].bytes += one.bytes;
		s[k].write_errors += one.write_errors;
		s[k].dropped += one.dropped;
		s[k].readers_dropped += one.readers_dropped;
	}
	for (size_t f = 0; f < sizeof(output_families) / sizeof(output_families[0]); f++) {
		const struct output_family *of = &output_families[f];

		family(t, of->name, "counter", of->help);
		for (unsigned k = 0; k < n; k++)
			if (of->only == NULL || strcmp(s[k].output, of->only) == 0)
				add(t, "imaptap_%s{output=\"%s\"} %llu\n", of->name,
				    label(s[k].output, o, sizeof(o)),
				    (unsigned long long)*(const uint64_t *)((const char *)&s[k] +
									    of->field));
	}
}

char *capture_metrics_render(const struct capture_metrics *m, const struct capture_sinks *sinks,
			     size_t *len_r)
{
	struct text t = {.cap = 16384};
	char v[256];

	t.p = malloc(t.cap);
	if (t.p == NULL)
		return NULL;
	t.p[0] = '\0';
	family(&t, "build_info", "gauge", "The version of imaptap running, as a label; always 1.");
	add(&t, "imaptap_build_info{version=\"%s\"} 1\n", label(m->version, v, sizeof(v)));
	family(&t, "start_time_seconds", "gauge", "When the process started, seconds since the epoch.");
	add(&t, "imaptap_start_time_seconds ");
	seconds(&t, m->started > 0 ? (uint64_t)m->started : 0);
	add(&t, "\n");
	sessions(&t, m);
	commands(&t, m);
	findings(&t, m);
	outputs(&t, sinks);
	if (t.failed) {
		free(t.p);
		return NULL;
	}
	*len_r = t.len;
	return t.p;
}
