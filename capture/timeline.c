#include "capture/timeline.h"

#include <stdlib.h>
#include <string.h>

#include "capture/timefmt.h"

#define ROW_MAX 8192

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"
#define C_CLIENT "\033[36m"
#define C_SERVER "\033[32m"
#define C_PROXY "\033[35m"
#define C_WARN "\033[33m"
#define C_BAD "\033[31m"
#define C_BOLD "\033[1m"

struct timeline {
	FILE *out;
	bool color;
	size_t max_text;
};

size_t capture_printable(char *out, size_t out_size, const uint8_t *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (out_size == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];

		if (c >= 0x20 && c < 0x7f) {
			if (o + 1 >= out_size)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= out_size)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

struct row {
	char buf[ROW_MAX];
	size_t len;
};

static void row_add(struct row *r, const char *s)
{
	size_t n = strlen(s);

	if (n > sizeof(r->buf) - 1 - r->len)
		n = sizeof(r->buf) - 1 - r->len;
	memcpy(r->buf + r->len, s, n);
	r->len += n;
	r->buf[r->len] = '\0';
}

static void row_addf(struct row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void row_addf(struct row *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->buf + r->len, sizeof(r->buf) - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < sizeof(r->buf) - r->len ? (size_t)n : sizeof(r->buf) - 1 - r->len;
}

static void row_start(const struct timeline *t, struct row *r, imap_time_us ts, unsigned session)
{
	char clock[32];

	r->len = 0;
	r->buf[0] = '\0';
	capture_format_clock(clock, sizeof(clock), ts);
	if (t->color)
		row_addf(r, C_DIM "%s" C_RESET " #%u ", clock, session);
	else
		row_addf(r, "%s #%u ", clock, session);
}

static void row_end(const struct timeline *t, struct row *r)
{
	row_add(r, "\n");
	fwrite(r->buf, 1, r->len, t->out);
}

static const char *dir_marker(const struct imap_observation *obs)
{
	if (obs->origin == IMAP_ORIGIN_PROXY)
		return obs->dir == IMAP_C2S ? "P>" : "P<";
	return obs->dir == IMAP_C2S ? "C>" : "S<";
}

static const char *dir_color(const struct imap_observation *obs)
{
	if (obs->origin == IMAP_ORIGIN_PROXY)
		return C_PROXY;
	return obs->dir == IMAP_C2S ? C_CLIENT : C_SERVER;
}

static void add_completion(const struct timeline *t, struct row *r,
			   const struct imap_completion *c)
{
	char lat[32], done[32];

	capture_format_duration(lat, sizeof(lat), c->latency);
	if (t->color)
		row_add(r, C_DIM);
	if (c->idle && c->done_to_ok >= 0)
		row_addf(r, "  (%s%s %s, DONE->OK %s)", c->uid ? "UID " : "", c->command, lat,
			 capture_format_duration(done, sizeof(done), c->done_to_ok));
	else
		row_addf(r, "  (%s%s %s)", c->uid ? "UID " : "", c->command, lat);
	if (t->color)
		row_add(r, C_RESET);
}

static void tl_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	const struct timeline *t = self;
	struct row r;
	size_t content, shown;
	char text[ROW_MAX / 2];

	if (obs->unit->kind == IMAP_UNIT_LITERAL_DATA)
		return; /* summarised on the row that resumes the line */
	row_start(t, &r, obs->ts, session);
	if (t->color)
		row_addf(&r, "%s%s" C_RESET " ", dir_color(obs), dir_marker(obs));
	else
		row_addf(&r, "%s ", dir_marker(obs));
	if (obs->unit->flags & IMAP_UNIT_CONTINUED)
		row_addf(&r, "   {%llu bytes}", (unsigned long long)obs->unit->after_literal);
	content = capture_line_content(obs);
	shown = content < t->max_text ? content : t->max_text;
	capture_printable(text, sizeof(text), obs->data, shown);
	if (t->color && obs->info != NULL && obs->info->cls == IMAP_LINE_TAGGED &&
	    obs->info->status != IMAP_STATUS_OK)
		row_addf(&r, "%s%s" C_RESET, obs->info->status == IMAP_STATUS_BAD ? C_BAD : C_WARN,
			 text);
	else
		row_add(&r, text);
	if (obs->unit->wire_len > shown + (obs->len - content))
		row_addf(&r, "... (%llu bytes)", (unsigned long long)obs->unit->wire_len);
	if (obs->completion != NULL)
		add_completion(t, &r, obs->completion);
	row_end(t, &r);
}

static void tl_open(void *self, const struct capture_session_info *info)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, info->ts, info->id);
	row_addf(&r, "-- open %s -> %s (%s)", info->client, info->upstream,
		 info->upstream_tls ? info->upstream_tls : "plain");
	row_end(t, &r);
}

static void tl_notice(void *self, unsigned session, imap_time_us ts, const char *text)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, ts, session);
	if (t->color)
		row_addf(&r, C_BOLD "-- %s" C_RESET, text);
	else
		row_addf(&r, "-- %s", text);
	row_end(t, &r);
}

static void tl_tls(void *self, unsigned session, imap_time_us ts,
		   const struct capture_tls_info *info)
{
	char text[1024];

	if (strcmp(info->leg, "upstream") == 0)
		snprintf(text, sizeof(text), "upstream TLS %s %s; certificate %s%s", info->version,
			 info->cipher,
			 info->verified ? "verified: " : "NOT VERIFIED (--insecure-upstream): ",
			 info->peer);
	else
		snprintf(text, sizeof(text), "%s TLS %s %s%s%s", info->leg, info->version,
			 info->cipher, info->sni[0] ? "; SNI " : "; no SNI", info->sni);
	tl_notice(self, session, ts, text);
}

/* "! done-stall a5: DONE sent 20.004 s ago, ..."; info findings in the
 * warning colour, with "(info)". */
static void tl_anomaly(void *self, unsigned session, const struct imap_anomaly *a)
{
	const struct timeline *t = self;
	const bool info = a->severity == IMAP_SEVERITY_INFO;
	struct row r;

	row_start(t, &r, a->ts, session);
	if (t->color)
		row_add(&r, info ? C_WARN : C_BAD C_BOLD);
	row_addf(&r, "! %s%s%s", imap_rule_id(a->rule), a->tag[0] ? " " : "", a->tag);
	if (t->color)
		row_add(&r, C_RESET);
	row_addf(&r, "%s%s: %s", info ? " (info)" : "", a->resolved ? " (resolved)" : "",
		 a->detail);
	row_end(t, &r);
}

/* "~ fault hold-idle-completion s2c start: ..." in its own colour, so an
 * injected fault never reads as something the peers did. */
static void tl_fault(void *self, unsigned session, const struct capture_fault_mark *m)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, m->ts, session);
	if (t->color)
		row_add(&r, C_PROXY C_BOLD);
	row_addf(&r, "~ fault %s %s %s", m->action, imap_dir_str(m->dir), m->phase);
	if (t->color)
		row_add(&r, C_RESET);
	row_addf(&r, ": %s [%s]", m->detail, m->spec);
	row_end(t, &r);
}

static void tl_summary(void *self, unsigned session, imap_time_us ts,
		       const struct imap_summary *sum)
{
	const struct timeline *t = self;
	char a[32], b[32], c[32];
	struct row r;

	row_start(t, &r, ts, session);
	row_add(&r, "-- summary:");
	if (sum->command_count == 0)
		row_add(&r, " no command completed");
	for (size_t i = 0; i < sum->command_count; i++) {
		const struct imap_command_stats *st = &sum->commands[i];

		if (st->count == 1)
			row_addf(&r, "%s %s 1 (%s)", i ? "," : "", st->name,
				 capture_format_duration(a, sizeof(a), st->max));
		else
			row_addf(&r, "%s %s %llu (p50 %s, p95 %s, max %s)", i ? "," : "", st->name,
				 (unsigned long long)st->count,
				 capture_format_duration(a, sizeof(a), st->p50),
				 capture_format_duration(b, sizeof(b), st->p95),
				 capture_format_duration(c, sizeof(c), st->max));
	}
	row_end(t, &r);
	if (sum->idles == 0 && sum->anomaly_total == 0)
		return;
	row_start(t, &r, ts, session);
	row_add(&r, "-- summary:");
	if (sum->idles > 0) {
		row_addf(&r, " IDLE %llu, longest %s", (unsigned long long)sum->idles,
			 capture_format_duration(a, sizeof(a), sum->longest_idle));
		if (sum->worst_done_to_ok >= 0)
			row_addf(&r, ", worst DONE->OK %s",
				 capture_format_duration(b, sizeof(b), sum->worst_done_to_ok));
		row_add(&r, ";");
	}
	if (sum->anomaly_total == 0) {
		row_add(&r, " no anomalies");
	} else {
		bool first = true;

		row_add(&r, " anomalies:");
		for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
			if (sum->anomalies[i] == 0)
				continue;
			row_addf(&r, "%s %s %u", first ? "" : ",", imap_rule_id((enum imap_rule)i),
				 sum->anomalies[i]);
			first = false;
		}
	}
	row_end(t, &r);
}

static void tl_close(void *self, const struct capture_close_info *info)
{
	const struct timeline *t = self;
	struct row r;
	char dur[32], up[32], down[32];

	row_start(t, &r, info->ts, info->id);
	row_addf(&r, "-- close by %s (%s) after %s; c2s %s, s2c %s", info->by, info->reason,
		 capture_format_duration(dur, sizeof(dur), info->ts - info->opened),
		 capture_format_bytes(up, sizeof(up), info->bytes[IMAP_C2S]),
		 capture_format_bytes(down, sizeof(down), info->bytes[IMAP_S2C]));
	row_end(t, &r);
}

static void tl_flush(void *self)
{
	const struct timeline *t = self;

	fflush(t->out);
}

static void tl_destroy(void *self)
{
	struct timeline *t = self;

	fflush(t->out);
	free(t);
}

static const struct capture_sink_ops timeline_ops = {
	.open = tl_open,
	.observe = tl_observe,
	.notice = tl_notice,
	.tls = tl_tls,
	.anomaly = tl_anomaly,
	.fault = tl_fault,
	.summary = tl_summary,
	.close = tl_close,
	.flush = tl_flush,
	.destroy = tl_destroy,
};

struct capture_sink capture_timeline_new(const struct capture_timeline_config *config)
{
	struct capture_sink sink = {NULL, NULL};
	struct timeline *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return sink;
	t->out = config->out;
	t->color = config->color;
	t->max_text = config->max_text ? config->max_text : CAPTURE_TIMELINE_DEFAULT_WIDTH;
	if (t->max_text > ROW_MAX / 8)
		t->max_text = ROW_MAX / 8;
	sink.ops = &timeline_ops;
	sink.self = t;
	return sink;
}
