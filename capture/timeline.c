#include "capture/timeline.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/route_names.h"
#include "capture/settings.h"
#include "capture/timefmt.h"

#define ROW_MAX 8192    /* text of a row, escaped */
#define ROW_RESERVE 64 /* colour codes and the newline */

#define C_RESET "\033[0m"
#define C_DIM "\033[2m"
#define C_CLIENT "\033[36m"
#define C_SERVER "\033[32m"
#define C_PROXY "\033[35m"
#define C_WARN "\033[33m"
#define C_BAD "\033[31m"
#define C_BOLD "\033[1m"
#define C_REVERSE "\033[7m"

struct timeline {
	FILE *out;
	bool color;
	bool utc;
	bool settings;
	size_t max_text;
	struct capture_route_names *routes; /* --route: each session's, on its rows */
};

/* Every byte of a row comes from row_text (through the escaping gate,
 * capture/escape.h) or from row_color (imaptap's own SGR codes), so no
 * byte a peer or a capture file chose reaches the terminal raw. Colour
 * codes and the newline have room of their own: a row cut for length
 * still resets its colour and ends its line. */
struct row {
	char buf[ROW_MAX + ROW_RESERVE];
	size_t len;
};

static void row_bytes(struct row *r, const void *data, size_t len)
{
	if (r->len < ROW_MAX)
		r->len += capture_escape(r->buf + r->len, ROW_MAX - r->len, data, len, 0, NULL);
}

/* Bytes as long as a peer made them (a line shown whole): escaped in
 * pieces, each written out once the row's buffer is full, so a row may
 * be any length while the buffer stays small. */
static void row_stream(const struct timeline *t, struct row *r, const uint8_t *data, size_t len)
{
	while (len > 0) {
		size_t used = 0;

		if (ROW_MAX - r->len < 64) {
			fwrite(r->buf, 1, r->len, t->out);
			r->len = 0;
		}
		r->len += capture_escape(r->buf + r->len, ROW_MAX - r->len, data, len, 0, &used);
		if (used == 0) { /* not even one escape fits: start afresh */
			fwrite(r->buf, 1, r->len, t->out);
			r->len = 0;
			continue;
		}
		data += used;
		len -= used;
	}
}

static void row_text(struct row *r, const char *s)
{
	row_bytes(r, s, strlen(s));
}

static void row_textf(struct row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void row_textf(struct row *r, const char *fmt, ...)
{
	char text[ROW_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n > 0)
		row_bytes(r, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* sgr is one of the C_ codes above, never anything read from outside */
static void row_color(const struct timeline *t, struct row *r, const char *sgr)
{
	size_t n = strlen(sgr);

	if (!t->color || r->len + n >= sizeof(r->buf) - 1)
		return;
	memcpy(r->buf + r->len, sgr, n);
	r->len += n;
	r->buf[r->len] = '\0';
}

/* A row about the whole run: its time, no session. */
static void row_start_run(const struct timeline *t, struct row *r, imap_time_us ts)
{
	char clock[32];

	r->len = 0;
	r->buf[0] = '\0';
	if (t->utc)
		capture_format_clock_utc(clock, sizeof(clock), ts);
	else
		capture_format_clock(clock, sizeof(clock), ts);
	row_color(t, r, C_DIM);
	row_text(r, clock);
	row_color(t, r, C_RESET);
	row_text(r, " ");
}

static void row_start(const struct timeline *t, struct row *r, imap_time_us ts, unsigned session)
{
	const char *route = capture_route_names_get(t->routes, session);

	row_start_run(t, r, ts);
	if (route != NULL)
		row_textf(r, "#%u@%s ", session, route);
	else
		row_textf(r, "#%u ", session);
}

static void row_end(const struct timeline *t, struct row *r)
{
	r->buf[r->len++] = '\n';
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
	row_color(t, r, C_DIM);
	if (c->idle && c->done_to_ok >= 0)
		row_textf(r, "  (%s%s %s, DONE->OK %s)", c->uid ? "UID " : "", c->command, lat,
			  capture_format_duration(done, sizeof(done), c->done_to_ok));
	else
		row_textf(r, "  (%s%s %s)", c->uid ? "UID " : "", c->command, lat);
	row_color(t, r, C_RESET);
}

static void tl_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	const struct timeline *t = self;
	struct row r;
	size_t content, shown;

	if (obs->unit->kind == IMAP_UNIT_LITERAL_DATA)
		return; /* summarised on the row that resumes the line */
	row_start(t, &r, obs->ts, session);
	row_color(t, &r, dir_color(obs));
	row_text(&r, dir_marker(obs));
	row_color(t, &r, C_RESET);
	row_text(&r, " ");
	if (obs->unit->flags & IMAP_UNIT_CONTINUED)
		row_textf(&r, "   {%llu bytes}", (unsigned long long)obs->unit->after_literal);
	content = capture_line_content(obs);
	shown = content < t->max_text ? content : t->max_text;
	if (obs->info != NULL && obs->info->cls == IMAP_LINE_TAGGED &&
	    obs->info->status != IMAP_STATUS_OK) {
		row_color(t, &r, obs->info->status == IMAP_STATUS_BAD ? C_BAD : C_WARN);
		row_stream(t, &r, obs->data, shown);
		row_color(t, &r, C_RESET);
	} else {
		row_stream(t, &r, obs->data, shown);
	}
	if (obs->unit->wire_len > shown + (obs->len - content))
		row_textf(&r, "... (%llu bytes)", (unsigned long long)obs->unit->wire_len);
	if (obs->completion != NULL)
		add_completion(t, &r, obs->completion);
	if (obs->note != NULL) {
		row_text(&r, "  (imaptap: ");
		row_text(&r, obs->note);
		row_text(&r, ")");
	}
	row_end(t, &r);
}

static void tl_open(void *self, const struct capture_session_info *info)
{
	const struct timeline *t = self;
	struct row r;
	char client[CAPTURE_ADDR_MAX], upstream[CAPTURE_ADDR_MAX];

	capture_route_names_open(t->routes, info->id, info->route);
	row_start(t, &r, info->ts, info->id);
	capture_endpoint_format(&info->client, client, sizeof(client));
	capture_endpoint_format(&info->upstream, upstream, sizeof(upstream));
	row_textf(&r, "-- open %s -> %s (%s)", client, upstream,
		  info->upstream_tls ? info->upstream_tls : "plain");
	row_end(t, &r);
}

/* The settings a capture was made with, before its first session. */
static void tl_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	const struct timeline *t = self;
	char text[CAPTURE_SETTINGS_TEXT_MAX];
	struct row r;

	if (!t->settings)
		return;
	capture_settings_describe(s, text, sizeof(text));
	row_start_run(t, &r, ts);
	row_color(t, &r, C_BOLD);
	row_text(&r, "-- ");
	row_text(&r, text);
	row_color(t, &r, C_RESET);
	row_end(t, &r);
}

static void tl_notice(void *self, unsigned session, imap_time_us ts, const char *text)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, ts, session);
	row_color(t, &r, C_BOLD);
	row_text(&r, "-- ");
	row_text(&r, text);
	row_color(t, &r, C_RESET);
	row_end(t, &r);
}

static void tl_tls(void *self, unsigned session, imap_time_us ts,
		   const struct capture_tls_info *info)
{
	char text[1024];

	if (strcmp(info->leg, "upstream") == 0 && info->verified)
		snprintf(text, sizeof(text), "upstream TLS %s %s; %s%s; certificate verified for %s: %s",
			 info->version, info->cipher, info->sni[0] ? "SNI " : "no SNI (an address)",
			 info->sni, info->name != NULL ? info->name : "", info->peer);
	else if (strcmp(info->leg, "upstream") == 0)
		snprintf(text, sizeof(text), "upstream TLS %s %s; %s%s; certificate NOT VERIFIED "
			 "(--insecure-upstream): %s", info->version, info->cipher,
			 info->sni[0] ? "SNI " : "no SNI (an address)", info->sni, info->peer);
	else if (strcmp(info->leg, "capture") == 0)
		snprintf(text, sizeof(text), "TLS %s %s, decrypted with the key log%s%s",
			 info->version, info->cipher, info->sni[0] ? "; SNI " : "", info->sni);
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

	/* an [ALERT] is text the user must see: the whole row stands out */
	const bool alert = a->alert;

	row_start(t, &r, a->ts, session);
	row_color(t, &r, alert ? C_BAD C_BOLD C_REVERSE : info ? C_WARN : C_BAD C_BOLD);
	row_textf(&r, "! %s%s%s", imap_rule_id(a->rule), a->tag[0] ? " " : "", a->tag);
	if (!alert)
		row_color(t, &r, C_RESET);
	row_textf(&r, "%s%s: %s", info ? " (info)" : "",
		  a->resolved ? " (resolved)" : a->never_resolved ? " (never resolved)" : "", a->detail);
	if (alert)
		row_color(t, &r, C_RESET);
	row_end(t, &r);
}

/* "~ fault hold-idle-completion s2c start: ..." in its own colour, so an
 * injected fault never reads as something the peers did. */
static void tl_fault(void *self, unsigned session, const struct capture_fault_mark *m)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, m->ts, session);
	row_color(t, &r, C_PROXY C_BOLD);
	row_textf(&r, "~ fault %s %s %s", m->action, imap_dir_str(m->dir), m->phase);
	row_color(t, &r, C_RESET);
	row_textf(&r, ": %s [%s]", m->detail, m->spec);
	row_end(t, &r);
}

/* " done-stall 1, pending-at-eof 2": findings by rule */
static void rule_counts(struct row *r, const struct imap_summary *sum)
{
	bool first = true;

	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
		if (sum->anomalies[i] == 0)
			continue;
		row_textf(r, "%s %s %u", first ? "" : ",", imap_rule_id((enum imap_rule)i),
			  sum->anomalies[i]);
		first = false;
	}
}

/* "LOGIN 3 (p50 4.100 ms, p95 5.000 ms, max 5.000 ms; NO 1)": answered by
 * the server, their latencies, NO and BAD among them, and answers the
 * proxy injected (counted apart, never in the latencies). */
static void command_stats(struct row *r, const struct imap_command_stats *st, bool comma)
{
	char a[32], b[32], c[32];

	if (st->count == 0) {
		row_textf(r, "%s %s (%llu injected by the proxy)", comma ? "," : "", st->name,
			  (unsigned long long)st->injected);
		return;
	}
	if (st->count == 1)
		row_textf(r, "%s %s 1 (%s", comma ? "," : "", st->name,
			  capture_format_duration(a, sizeof(a), st->max));
	else
		row_textf(r, "%s %s %llu (p50 %s, p95 %s, max %s", comma ? "," : "", st->name,
			  (unsigned long long)st->count,
			  capture_format_duration(a, sizeof(a), st->p50),
			  capture_format_duration(b, sizeof(b), st->p95),
			  capture_format_duration(c, sizeof(c), st->max));
	if (st->no > 0)
		row_textf(r, "; NO %llu", (unsigned long long)st->no);
	if (st->bad > 0)
		row_textf(r, "; BAD %llu", (unsigned long long)st->bad);
	if (st->injected > 0)
		row_textf(r, "; %llu more injected by the proxy", (unsigned long long)st->injected);
	row_text(r, ")");
}

/* "-- mailboxes: INBOX (UIDVALIDITY 1, UIDNEXT 13, EXISTS 12,
 * HIGHESTMODSEQ 40)": the state the client saw, for a bug report */
static void mailbox_facts(const struct timeline *t, imap_time_us ts, unsigned session,
			  const struct imap_summary *sum)
{
	struct row r;

	if (sum->mailbox_count == 0)
		return;
	row_start(t, &r, ts, session);
	row_text(&r, "-- mailboxes:");
	for (size_t i = 0; i < sum->mailbox_count; i++) {
		const struct imap_mailbox_facts *m = sum->mailboxes[i];
		const char *sep = " (";

		row_text(&r, i > 0 ? ", " : " ");
		row_bytes(&r, (const char *)m->name, m->name_len);
		if (m->name_cut)
			row_text(&r, "...");
		if (m->uidvalidity_known) {
			row_textf(&r, "%sUIDVALIDITY %llu", sep, (unsigned long long)m->uidvalidity);
			sep = ", ";
		}
		if (m->uidnext_known) {
			row_textf(&r, "%sUIDNEXT %llu", sep, (unsigned long long)m->uidnext);
			sep = ", ";
		}
		if (m->exists_known) {
			row_textf(&r, "%sEXISTS %llu", sep, (unsigned long long)m->exists);
			sep = ", ";
		}
		if (m->nomodseq) {
			row_textf(&r, "%sNOMODSEQ", sep);
			sep = ", ";
		} else if (m->modseq_known) {
			row_textf(&r, "%sHIGHESTMODSEQ %llu", sep, (unsigned long long)m->highestmodseq);
			sep = ", ";
		}
		if (sep[0] == ',')
			row_text(&r, ")");
	}
	row_end(t, &r);
}

/* "-- summary: IDLE 2, longest 29.001 s, worst DONE->OK 12 ms;
 * anomalies: done-stall 1", when there was an IDLE or a finding */
static void idle_and_anomalies(const struct timeline *t, imap_time_us ts, unsigned session,
			       const struct imap_summary *sum)
{
	char a[32], b[32];
	struct row r;

	if (sum->idles == 0 && sum->anomaly_total == 0)
		return;
	row_start(t, &r, ts, session);
	row_text(&r, "-- summary:");
	if (sum->idles > 0) {
		row_textf(&r, " IDLE %llu, longest %s", (unsigned long long)sum->idles,
			  capture_format_duration(a, sizeof(a), sum->longest_idle));
		if (sum->worst_done_to_ok >= 0)
			row_textf(&r, ", worst DONE->OK %s",
				  capture_format_duration(b, sizeof(b), sum->worst_done_to_ok));
		row_text(&r, ";");
	}
	if (sum->anomaly_total == 0) {
		row_text(&r, " no anomalies");
	} else {
		row_text(&r, " anomalies:");
		rule_counts(&r, sum);
	}
	row_end(t, &r);
}

static void tl_summary(void *self, unsigned session, imap_time_us ts,
		       const struct imap_summary *sum)
{
	const struct timeline *t = self;
	struct row r;

	row_start(t, &r, ts, session);
	row_text(&r, "-- summary:");
	if (sum->command_count == 0)
		row_text(&r, " no command completed");
	for (size_t i = 0; i < sum->command_count; i++)
		command_stats(&r, &sum->commands[i], i > 0);
	row_end(t, &r);
	idle_and_anomalies(t, ts, session, sum);
	mailbox_facts(t, ts, session, sum);
}

static void tl_close(void *self, const struct capture_close_info *info)
{
	const struct timeline *t = self;
	struct row r;
	char dur[32], up[32], down[32];

	row_start(t, &r, info->ts, info->id);
	row_textf(&r, "-- close by %s (%s) after %s; c2s %s, s2c %s", capture_side_str(info->by),
		  info->reason,
		  capture_format_duration(dur, sizeof(dur), info->ts - info->opened),
		  capture_format_bytes(up, sizeof(up), info->bytes[IMAP_C2S]),
		  capture_format_bytes(down, sizeof(down), info->bytes[IMAP_S2C]));
	row_end(t, &r);
	capture_route_names_close(t->routes, info->id);
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
	capture_route_names_free(&t->routes);
	free(t);
}

/* The whole capture, after its sessions: three rows without a clock. */
static void tl_whole(void *self, imap_time_us ts, const struct capture_whole *w)
{
	const struct timeline *t = self;
	const struct imap_summary *sum = w->summary;
	char a[32], b[32], c[32];
	bool first = true;
	struct row r = {.len = 0};

	(void)ts;
	row_textf(&r, "== capture: %u session%s", w->sessions, w->sessions == 1 ? "" : "s");
	for (unsigned by = 0; by <= CAPTURE_SIDE_CAPTURE; by++)
		for (unsigned how = 0; how <= CAPTURE_END_UNSEEN; how++) {
			if (w->ended[by][how] == 0)
				continue;
			row_textf(&r, "%s %u by the %s (%s)", first ? "; ended:" : ",",
				  w->ended[by][how], capture_side_str((enum capture_side)by),
				  capture_end_str((enum capture_end)how));
			first = false;
		}
	row_end(t, &r);
	r.len = 0;
	row_text(&r, "== commands:");
	if (sum->command_count == 0)
		row_text(&r, " none completed");
	for (size_t i = 0; i < sum->command_count; i++) {
		const struct imap_command_stats *st = &sum->commands[i];

		row_textf(&r, "%s ", i ? "," : "");
		row_text(&r, st->name); /* a peer's word: through the escaping gate */
		row_textf(&r, " %llu (", (unsigned long long)st->count);
		if (st->count > 0)
			row_textf(&r, "p50 %s, p95 %s, max %s",
				  capture_format_duration(a, sizeof(a), st->p50),
				  capture_format_duration(b, sizeof(b), st->p95),
				  capture_format_duration(c, sizeof(c), st->max));
		if (st->no > 0)
			row_textf(&r, "; NO %llu", (unsigned long long)st->no);
		if (st->bad > 0)
			row_textf(&r, "; BAD %llu", (unsigned long long)st->bad);
		if (st->injected > 0)
			row_textf(&r, "%s%llu injected by the proxy", st->count > 0 ? "; " : "",
				  (unsigned long long)st->injected);
		row_text(&r, ")");
	}
	row_end(t, &r);
	r.len = 0;
	row_text(&r, "== anomalies:");
	if (sum->anomaly_total == 0)
		row_text(&r, " none");
	rule_counts(&r, sum);
	row_end(t, &r);
}

static const struct capture_sink_ops timeline_ops = {
	.open = tl_open,
	.observe = tl_observe,
	.settings = tl_settings,
	.notice = tl_notice,
	.tls = tl_tls,
	.anomaly = tl_anomaly,
	.fault = tl_fault,
	.summary = tl_summary,
	.close = tl_close,
	.whole = tl_whole,
	.flush = tl_flush,
	.destroy = tl_destroy,
};

/* --anomalies-only: no line, notice, TLS or fault rows */
static const struct capture_sink_ops anomaly_ops = {
	.open = tl_open,
	.settings = tl_settings,
	.anomaly = tl_anomaly,
	.summary = tl_summary,
	.close = tl_close,
	.whole = tl_whole,
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
	t->routes = capture_route_names_new(); /* none: rows without route names */
	t->color = config->color;
	t->settings = config->settings;
	t->utc = config->utc;
	t->max_text = config->max_text ? config->max_text : CAPTURE_TIMELINE_DEFAULT_WIDTH;
	if (config->whole_lines)
		t->max_text = SIZE_MAX;
	sink.ops = config->anomalies_only ? &anomaly_ops : &timeline_ops;
	sink.self = t;
	return sink;
}
