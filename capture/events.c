#include "capture/events.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "capture/outfile.h"
#include "capture/route_names.h"
#include "capture/settings.h"
#include "capture/timefmt.h"
#include "imap/redact.h"

#define RECORD_MAX (IMAP_FRAMER_DEFAULT_MAX_LINE * 6 + 4096)
/* Room kept behind a record's long string for the fields after it and
 * its end: a record cut to fit is still whole JSON. */
#define RECORD_TAIL 1024
#define RUN_ID_BYTES 8

struct events {
	FILE *out;
	int own;    /* opened here (not stdout): file holds it */
	struct capture_outfile file;
	int failed;
	char *name;
	uint64_t written;      /* for monitoring (capture_output_stats): committed */
	uint64_t unflushed;    /* written since the last commit */
	uint64_t write_errors;
	uint64_t dropped;
	capture_log_fn *log;
	void *log_ctx;
	char *buf;  /* the record being built */
	size_t len;
	size_t cap;
	bool cut;            /* a string of this record was cut to fit */
	bool said_truncated; /* and the record says so already */
	char run[2 * RUN_ID_BYTES + 1]; /* this run's id, on every record */
	struct capture_route_names *routes; /* --route: each session's, in its records */
};

static void add(struct events *e, const char *s, size_t n)
{
	if (e->len + n >= e->cap)
		n = e->cap - 1 - e->len; /* records are cut, never overrun */
	memcpy(e->buf + e->len, s, n);
	e->len += n;
}

static void addf(struct events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void addf(struct events *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		e->len += (size_t)n < e->cap - e->len ? (size_t)n : e->cap - 1 - e->len;
}

/* A JSON string. Bytes outside printable ASCII become \u00XX, one code
 * point per byte, so any byte sequence gives valid JSON and can be
 * turned back into the exact bytes. */
static void add_string(struct events *e, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	add(e, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (e->len + 8 + RECORD_TAIL >= e->cap) {
			e->cut = true; /* an escape is never split: the string just ends */
			break;
		}
		uint8_t c = p[i];

		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};

			add(e, esc, 2);
		} else if (c >= 0x20 && c < 0x7f) {
			add(e, (const char *)&c, 1);
		} else {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			add(e, esc, 6);
		}
	}
	add(e, "\"", 1);
}

static void add_text(struct events *e, const char *key, const char *text)
{
	addf(e, ",\"%s\":", key);
	add_string(e, (const uint8_t *)text, strlen(text));
}

static void begin(struct events *e, const char *kind, unsigned session, imap_time_us ts)
{
	const char *route;
	char when[40];

	e->len = 0;
	e->cut = false;
	e->said_truncated = false;
	capture_format_rfc3339(when, sizeof(when), ts);
	addf(e, "{\"ts\":\"%s\",\"epoch\":%" PRId64 ".%06d,\"kind\":\"%s\",\"session\":%u,"
		"\"run\":\"%s\"",
	     when, ts / IMAP_US_PER_S, (int)(ts % IMAP_US_PER_S), kind, session, e->run);
	route = capture_route_names_get(e->routes, session);
	if (route != NULL)
		add_text(e, "route", route);
}

static void write_failed(struct events *e)
{
	char msg[4800];

	if (e->own)
		capture_outfile_rollback(&e->file); /* whole records only */
	e->failed = 1;
	e->write_errors++;
	e->unflushed = 0;
	snprintf(msg, sizeof(msg), "cannot write the event log %s: %s; it stops here, "
		 "relaying goes on (SIGHUP tries again)", e->name, strerror(errno));
	if (e->log != NULL)
		e->log(e->log_ctx, msg);
}

static void end(struct events *e)
{
	if (e->cut && !e->said_truncated)
		add(e, ",\"truncated\":true", 17);
	add(e, "}\n", 2);
	if (e->failed) {
		e->dropped++;
		return;
	}
	if (fwrite(e->buf, 1, e->len, e->out) != e->len)
		write_failed(e);
	else
		e->unflushed += e->len;
}

static void ev_open(void *self, const struct capture_session_info *info)
{
	struct events *e = self;
	char at[CAPTURE_ADDR_MAX];

	capture_route_names_open(e->routes, info->id, info->route);
	begin(e, "session-open", info->id, info->ts);
	capture_endpoint_format(&info->client, at, sizeof(at));
	add_text(e, "client", at);
	capture_endpoint_format(&info->upstream, at, sizeof(at));
	add_text(e, "upstream", at);
	if (info->local.version != 0)
		capture_endpoint_format(&info->local, at, sizeof(at));
	else
		at[0] = '\0';
	add_text(e, "local", at);
	add_text(e, "legs", info->upstream_tls);
	end(e);
}

static void ev_tls(void *self, unsigned session, imap_time_us ts,
		   const struct capture_tls_info *info)
{
	struct events *e = self;

	begin(e, "tls", session, ts);
	add_text(e, "leg", info->leg);
	add_text(e, "version", info->version);
	add_text(e, "cipher", info->cipher);
	add_text(e, "sni", info->sni);
	if (strcmp(info->leg, "upstream") == 0) {
		add_text(e, "name", info->name != NULL ? info->name : "");
		addf(e, ",\"verified\":%s", info->verified ? "true" : "false");
		add_text(e, "peer", info->peer);
	}
	end(e);
}

static void ev_line(struct events *e, unsigned session, const struct imap_observation *obs)
{
	const struct imap_unit *u = obs->unit;
	const struct imap_line_info *info = obs->info;

	begin(e, "line", session, obs->ts);
	addf(e, ",\"dir\":\"%s\",\"origin\":\"%s\",\"class\":\"%s\"", imap_dir_str(obs->dir),
	     obs->origin == IMAP_ORIGIN_PROXY ? "proxy" : "peer", imap_line_class_str(info->cls));
	if (info->tag.len > 0) {
		add(e, ",\"tag\":", 7);
		add_string(e, info->tag.p, info->tag.len);
	}
	if (info->name[0] != '\0')
		add_text(e, "name", info->name);
	if (info->uid)
		add(e, ",\"uid\":true", 11);
	addf(e, ",\"offset\":%" PRIu64 ",\"length\":%" PRIu64, u->offset, u->wire_len);
	add(e, ",\"text\":", 8);
	add_string(e, obs->data, capture_line_content(obs));
	if ((u->flags & IMAP_UNIT_TRUNCATED) || e->cut) {
		add(e, ",\"truncated\":true", 17);
		e->said_truncated = true;
	}
	if (obs->note != NULL)
		add_text(e, "note", obs->note);
	if (obs->masked)
		add(e, ",\"masked\":true", 14);
	if (u->flags & IMAP_UNIT_CONTINUED)
		addf(e, ",\"after_literal\":%" PRIu64, u->after_literal);
	if (u->kind == IMAP_UNIT_LITERAL_HEAD)
		addf(e, ",\"literal\":%" PRIu64 ",\"literal_sync\":%s", u->literal_len,
		     (u->flags & IMAP_UNIT_LITERAL_NONSYNC) ? "false" : "true");
	end(e);
}

static void ev_literal(struct events *e, unsigned session, const struct imap_observation *obs)
{
	const struct imap_unit *u = obs->unit;

	begin(e, "literal", session, obs->ts);
	addf(e, ",\"dir\":\"%s\",\"offset\":%" PRIu64 ",\"length\":%" PRIu64
		",\"literal_offset\":%" PRIu64 ",\"literal_length\":%" PRIu64 ",\"last\":%s",
	     imap_dir_str(obs->dir), u->offset, u->wire_len, u->literal_offset, u->literal_len,
	     (u->flags & IMAP_UNIT_LITERAL_END) ? "true" : "false");
	if (obs->masked)
		add(e, ",\"masked\":true", 14);
	end(e);
}

static void ev_completion(struct events *e, unsigned session, const struct imap_observation *obs)
{
	const struct imap_completion *c = obs->completion;

	begin(e, "completion", session, obs->ts);
	add_text(e, "tag", c->tag);
	add_text(e, "command", c->command);
	addf(e, ",\"uid\":%s,\"status\":\"%s\",\"latency_us\":%" PRId64, c->uid ? "true" : "false",
	     imap_status_str(c->status), c->latency);
	if (c->idle) {
		if (c->done_at >= 0)
			addf(e, ",\"done_to_ok_us\":%" PRId64, c->done_to_ok);
		else
			add(e, ",\"done_to_ok_us\":null", 21);
	}
	end(e);
}

static void ev_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct events *e = self;

	if (obs->info == NULL) {
		ev_literal(e, session, obs);
		return;
	}
	ev_line(e, session, obs);
	if (obs->completion != NULL)
		ev_completion(e, session, obs);
}

static void ev_settings(void *self, imap_time_us ts, const struct capture_run_settings *s)
{
	struct events *e = self;

	begin(e, "settings", 0, ts);
	add_text(e, "version", s->version);
	add_text(e, "command", s->command);
	add_text(e, "upstream", s->upstream);
	add_text(e, "upstream_tls", s->upstream_tls);
	add_text(e, "client_tls", s->client_tls);
	add_text(e, "sni", s->sni);
	addf(e, ",\"rules\":%s,\"redact_credentials\":%s,\"redact_bodies\":%s,"
		"\"max_line\":%" PRIu64, s->rules ? "true" : "false",
	     s->redact_flags & IMAP_REDACT_CREDENTIALS ? "true" : "false",
	     s->redact_flags & IMAP_REDACT_BODIES ? "true" : "false", s->max_line);
	addf(e, ",\"command_stall_us\":%" PRId64 ",\"done_stall_us\":%" PRId64
		",\"idle_max_us\":%" PRId64 ",\"keepalive_gap_us\":%" PRId64 ",\"faults\":[",
	     s->thresholds.stall, s->thresholds.done_stall, s->thresholds.idle_max,
	     s->thresholds.keepalive_gap);
	for (unsigned i = 0; i < s->fault_count; i++) {
		if (i > 0)
			add(e, ",", 1);
		add_string(e, (const uint8_t *)s->faults[i], strlen(s->faults[i]));
	}
	add(e, "]", 1);
	end(e);
}

static void ev_notice(void *self, unsigned session, imap_time_us ts, const char *text)
{
	struct events *e = self;

	begin(e, "notice", session, ts);
	add_text(e, "text", text);
	end(e);
}

static void ev_anomaly(void *self, unsigned session, const struct imap_anomaly *a)
{
	struct events *e = self;

	begin(e, "anomaly", session, a->ts);
	add_text(e, "rule", imap_rule_id(a->rule));
	add_text(e, "severity", imap_severity_str(a->severity));
	add_text(e, "blame", imap_blame_str(imap_rule_blame(a->rule)));
	add_text(e, "rfc", imap_rule_rfc(a->rule));
	if (a->tag[0])
		add_text(e, "tag", a->tag);
	if (a->threshold >= 0)
		addf(e, ",\"threshold_us\":%" PRId64, a->threshold);
	if (a->waited >= 0)
		addf(e, ",\"waited_us\":%" PRId64, a->waited);
	if (a->resolved)
		add(e, ",\"resolved\":true", 16);
	if (a->never_resolved)
		add(e, ",\"never_resolved\":true", 22);
	add_text(e, "detail", a->detail);
	end(e);
}

static void ev_fault(void *self, unsigned session, const struct capture_fault_mark *m)
{
	struct events *e = self;

	begin(e, "fault", session, m->ts);
	add_text(e, "action", m->action);
	add_text(e, "phase", m->phase);
	add_text(e, "dir", imap_dir_str(m->dir));
	add_text(e, "spec", m->spec);
	add_text(e, "detail", m->detail);
	add(e, ",\"injected\":true", 16);
	end(e);
}

/* ,"commands":[...] of a summary */
static void add_commands(struct events *e, const struct imap_summary *sum)
{
	add(e, ",\"commands\":[", 13);
	for (size_t i = 0; i < sum->command_count; i++) {
		const struct imap_command_stats *st = &sum->commands[i];

		addf(e, "%s{\"name\":", i ? "," : "");
		add_string(e, (const uint8_t *)st->name, strlen(st->name));
		addf(e, ",\"count\":%" PRIu64 ",\"p50_us\":%" PRId64 ",\"p95_us\":%" PRId64
			",\"max_us\":%" PRId64 ",\"no\":%" PRIu64 ",\"bad\":%" PRIu64
			",\"injected\":%" PRIu64 "}",
		     st->count, st->p50, st->p95, st->max, st->no, st->bad, st->injected);
	}
	add(e, "]", 1);
}

/* ,"anomalies":{rule: count} of a summary */
static void add_anomalies(struct events *e, const struct imap_summary *sum)
{
	bool first = true;

	add(e, ",\"anomalies\":{", 14);
	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
		if (sum->anomalies[i] == 0)
			continue;
		addf(e, "%s\"%s\":%u", first ? "" : ",", imap_rule_id((enum imap_rule)i),
		     sum->anomalies[i]);
		first = false;
	}
	add(e, "}", 1);
}

/* ,"mailboxes":[{"name":..,"uidvalidity":..}] of a summary: the facts
 * known, nothing for the rest */
static void add_mailboxes(struct events *e, const struct imap_summary *sum)
{
	if (sum->mailbox_count == 0)
		return;
	add(e, ",\"mailboxes\":[", 14);
	for (size_t i = 0; i < sum->mailbox_count; i++) {
		const struct imap_mailbox_facts *m = sum->mailboxes[i];

		addf(e, "%s{\"name\":", i ? "," : "");
		add_string(e, m->name, m->name_len);
		if (m->name_cut)
			add(e, ",\"name_cut\":true", 16);
		if (m->uidvalidity_known)
			addf(e, ",\"uidvalidity\":%" PRIu64, m->uidvalidity);
		if (m->uidnext_known)
			addf(e, ",\"uidnext\":%" PRIu64, m->uidnext);
		if (m->exists_known)
			addf(e, ",\"exists\":%" PRIu64, m->exists);
		if (m->nomodseq)
			add(e, ",\"nomodseq\":true", 16);
		else if (m->modseq_known)
			addf(e, ",\"highestmodseq\":%" PRIu64, m->highestmodseq);
		addf(e, ",\"selects\":%" PRIu64 "}", m->selects);
	}
	add(e, "]", 1);
}

static void ev_summary(void *self, unsigned session, imap_time_us ts,
		       const struct imap_summary *sum)
{
	struct events *e = self;

	begin(e, "session-summary", session, ts);
	add_commands(e, sum);
	addf(e, ",\"idles\":%" PRIu64, sum->idles);
	if (sum->longest_idle >= 0)
		addf(e, ",\"longest_idle_us\":%" PRId64, sum->longest_idle);
	if (sum->worst_done_to_ok >= 0)
		addf(e, ",\"worst_done_to_ok_us\":%" PRId64, sum->worst_done_to_ok);
	add_anomalies(e, sum);
	add_mailboxes(e, sum);
	end(e);
}

static void ev_whole(void *self, imap_time_us ts, const struct capture_whole *w)
{
	struct events *e = self;
	bool first = true;

	begin(e, "capture-summary", 0, ts);
	addf(e, ",\"sessions\":%u,\"ended\":[", w->sessions);
	for (unsigned by = 0; by <= CAPTURE_SIDE_CAPTURE; by++)
		for (unsigned how = 0; how <= CAPTURE_END_UNSEEN; how++) {
			if (w->ended[by][how] == 0)
				continue;
			addf(e, "%s{\"by\":\"%s\",\"end\":\"%s\",\"count\":%u}",
			     first ? "" : ",", capture_side_str((enum capture_side)by),
			     capture_end_str((enum capture_end)how), w->ended[by][how]);
			first = false;
		}
	add(e, "]", 1);
	add_commands(e, w->summary);
	add_anomalies(e, w->summary);
	end(e);
}

static void ev_close(void *self, const struct capture_close_info *info)
{
	struct events *e = self;

	begin(e, "session-close", info->id, info->ts);
	add_text(e, "by", capture_side_str(info->by));
	add_text(e, "end", capture_end_str(info->end));
	add_text(e, "reason", info->reason);
	addf(e, ",\"duration_us\":%" PRId64 ",\"bytes_c2s\":%" PRIu64 ",\"bytes_s2c\":%" PRIu64,
	     info->ts - info->opened, info->bytes[IMAP_C2S], info->bytes[IMAP_S2C]);
	end(e);
	capture_route_names_close(e->routes, info->id);
}

static void ev_flush(void *self)
{
	struct events *e = self;

	if (e->failed)
		return;
	if (e->own ? capture_outfile_commit(&e->file) != 0 : fflush(e->out) != 0) {
		write_failed(e);
		return;
	}
	e->written += e->unflushed;
	e->unflushed = 0;
}

static void ev_reopen(void *self)
{
	struct events *e = self;
	struct capture_outfile file;

	if (!e->own)
		return;
	if (!e->failed && !capture_outfile_moved(&e->file, e->name)) {
		ev_flush(e);
		return;
	}
	if (capture_outfile_open(&file, e->name, CAPTURE_OUTFILE_APPEND, 0) != 0) {
		if (e->log != NULL) {
			char msg[4400];

			snprintf(msg, sizeof(msg), "cannot reopen the event log %s: %s; %s", e->name,
				 strerror(errno),
				 e->failed ? "it stays stopped" : "writing goes on to the old file");
			e->log(e->log_ctx, msg);
		}
		return;
	}
	ev_flush(e);
	capture_outfile_close(&e->file);
	e->file = file;
	e->out = file.fp;
	e->failed = 0;
}

static void ev_destroy(void *self)
{
	struct events *e = self;

	ev_flush(e);
	if (e->own)
		capture_outfile_close(&e->file);
	free(e->name);
	free(e->buf);
	capture_route_names_free(&e->routes);
	free(e);
}

static void ev_stats(void *self, struct capture_output_stats *stats)
{
	const struct events *e = self;

	stats->output = "events";
	stats->bytes = e->written;
	stats->write_errors = e->write_errors;
	stats->dropped = e->dropped;
}

static const struct capture_sink_ops events_ops = {
	.open = ev_open,
	.observe = ev_observe,
	.tls = ev_tls,
	.settings = ev_settings,
	.notice = ev_notice,
	.anomaly = ev_anomaly,
	.fault = ev_fault,
	.summary = ev_summary,
	.whole = ev_whole,
	.close = ev_close,
	.flush = ev_flush,
	.reopen = ev_reopen,
	.stats = ev_stats,
	.destroy = ev_destroy,
};

/* A fresh run id from the kernel's random source. */
static void new_run_id(char out[2 * RUN_ID_BYTES + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[RUN_ID_BYTES] = {0};
	struct timespec now;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* no entropy to be had: time and pid still tell runs apart */
		clock_gettime(CLOCK_REALTIME, &now);
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (uint8_t)((uint64_t)now.tv_nsec >> (8 * (i % 4)) ^
					 (uint64_t)getpid() >> (8 * (i / 4)));
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * RUN_ID_BYTES] = '\0';
}

static void run_start(struct events *e, const struct capture_events_config *config)
{
	begin(e, "run-start", 0, config->started);
	add_text(e, "command", config->command != NULL ? config->command : "");
	add_text(e, "version", config->version != NULL ? config->version : "");
	addf(e, ",\"pid\":%ld", (long)getpid());
	end(e);
	ev_flush(e);
}

int capture_events_new(const struct capture_events_config *config, struct capture_sink *sink_r,
		       bool *refused_r, char *err, size_t errlen)
{
	struct events *e = calloc(1, sizeof(*e));

	if (refused_r != NULL)
		*refused_r = false;
	if (e == NULL || (e->buf = malloc(RECORD_MAX)) == NULL ||
	    (e->name = strdup(strcmp(config->path, "-") == 0 ? "(stdout)" : config->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		if (e != NULL)
			free(e->buf);
		free(e);
		return -1;
	}
	e->cap = RECORD_MAX;
	e->log = config->log;
	e->log_ctx = config->log_ctx;
	new_run_id(e->run);
	if (strcmp(config->path, "-") == 0) {
		e->out = stdout;
	} else {
		if (capture_outfile_open(&e->file, config->path, config->mode, 0) != 0) {
			if (refused_r != NULL)
				*refused_r = errno == EEXIST;
			capture_outfile_error(err, errlen, "the event log", config->path, errno);
			free(e->name);
			free(e->buf);
			free(e);
			return -1;
		}
		e->out = e->file.fp;
		e->own = 1;
	}
	e->routes = capture_route_names_new(); /* none: records without route names */
	run_start(e, config);
	sink_r->ops = &events_ops;
	sink_r->self = e;
	return 0;
}
