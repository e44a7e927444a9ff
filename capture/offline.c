#include "capture/offline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/fault_mark.h"
#include "capture/timefmt.h"
#include "imap/conversation.h"

struct offline_session {
	unsigned id;
	struct imap_conv *conv;
	imap_time_us opened;
	struct capture_endpoint client, server; /* where its fault marks go and come from */
	bool marked_end;                        /* a close mark said how it ended */
	struct capture_close_mark_read marked;
	struct offline_session *next;
	struct offline *run;
};

struct offline {
	const struct capture_offline_config *config;
	const struct capture_sinks *sinks;
	struct capture_offline_result *result;
	struct offline_session *open; /* sessions not yet closed */
	imap_time_us ticked;          /* packet time all sessions last saw */
};

/* How often, in capture time, every open session is told time passed:
 * finer than any threshold a rule takes. */
#define TICK_EVERY_US (IMAP_US_PER_S / 10)

/* Rules whose threshold passed before now fire at the instant it passed,
 * as the live timer fires them, with the same waited time: not at the
 * packet that shows time has passed. A due rule always fires (or its
 * deadline moves); the loop still ends should one not. */
static void tick_due(struct imap_conv *conv, imap_time_us now)
{
	imap_time_us at, last = -1;

	while ((at = imap_conv_next_deadline(conv)) >= 0 && at <= now && at != last) {
		imap_conv_tick(conv, at);
		last = at;
	}
}

/* Capture time passes for every open session: stalls fire at the packet
 * time that passes their threshold, as the live timer would. */
static void tick_all(struct offline *o, imap_time_us now)
{
	for (struct offline_session *s = o->open; s != NULL; s = s->next)
		tick_due(s->conv, now);
	if (now - o->ticked < TICK_EVERY_US)
		return;
	o->ticked = now;
	for (struct offline_session *s = o->open; s != NULL; s = s->next)
		imap_conv_tick(s->conv, now);
}

static void on_observation(void *ctx, const struct imap_observation *obs)
{
	struct offline_session *s = ctx;

	if (obs->info != NULL && obs->info->cls != IMAP_LINE_MALFORMED)
		s->run->result->imap_lines++;
	capture_sinks_observe(s->run->sinks, s->id, obs);
}

static void on_conv_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
			  size_t len, uint64_t secret_from)
{
	struct offline_session *s = ctx;

	capture_sinks_bytes(s->run->sinks, s->id, dir, ts, data, len, secret_from);
}

static void on_conv_event(void *ctx, const struct imap_conv_event *e)
{
	struct offline_session *s = ctx;

	switch (e->kind) {
	case IMAP_CONV_ANOMALY:
		if (!e->anomaly->resolved && (unsigned)e->anomaly->rule < IMAP_RULE_COUNT)
			s->run->result->fired[e->anomaly->rule]++;
		capture_sinks_anomaly(s->run->sinks, s->id, e->anomaly);
		break;
	case IMAP_CONV_SUMMARY:
		capture_sinks_summary(s->run->sinks, s->id, e->ts, e->summary);
		break;
	case IMAP_CONV_NOTICE:
		capture_sinks_notice(s->run->sinks, s->id, e->ts, e->text);
		break;
	}
}

static struct offline_session **find(struct offline *o, unsigned id)
{
	struct offline_session **p = &o->open;

	while (*p != NULL && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static void open_session(struct offline *o, const struct capture_stream_event *ev)
{
	struct imap_conv_config cc = {
		.max_line = o->config->max_line,
		.redact_flags = o->config->redact_flags,
		.on_event = on_conv_event,
		.on_bytes = on_conv_bytes,
		.rules = !o->config->no_rules,
		.inflated_capture_ok = true,
		.thresholds = o->config->thresholds,
	};
	struct capture_session_info info = {.id = ev->session, .ts = ev->ts, .upstream_tls = "capture"};
	struct offline_session *s;

	o->result->sessions++;
	if (o->config->session != 0 && o->config->session != ev->session)
		return;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return;
	s->id = ev->session;
	s->run = o;
	s->opened = ev->ts;
	s->client = *ev->client_ep;
	s->server = *ev->server_ep;
	s->conv = imap_conv_new(&cc, on_observation, s);
	if (s->conv == NULL) {
		free(s);
		return;
	}
	if (!ev->midstream)
		imap_conv_connected(s->conv, ev->ts);
	s->next = o->open;
	o->open = s;
	o->result->shown++;
	info.client = *ev->client_ep;
	info.upstream = *ev->server_ep;
	info.local = *ev->server_ep;
	capture_sinks_open(o->sinks, &info);
	if (ev->midstream)
		capture_sinks_notice(o->sinks, s->id, ev->ts,
				     "the capture starts inside this connection (no SYN): what came "
				     "before is missing and the first line may be cut");
}

static void close_session(struct offline *o, struct offline_session **p,
			  const struct capture_stream_event *ev)
{
	struct offline_session *s = *p;
	struct capture_close_info info = {
		.id = s->id,
		.ts = ev->ts,
		.opened = s->opened,
		.bytes = {ev->bytes[0], ev->bytes[1]},
	};

	switch (ev->reason) {
	case CAPTURE_CLOSE_CLIENT_FIN:
		info.by = CAPTURE_SIDE_CLIENT;
		info.end = CAPTURE_END_EOF;
		info.reason = "EOF";
		break;
	case CAPTURE_CLOSE_SERVER_FIN:
		info.by = CAPTURE_SIDE_SERVER;
		info.end = CAPTURE_END_EOF;
		info.reason = "EOF";
		break;
	case CAPTURE_CLOSE_CLIENT_RST:
		info.by = CAPTURE_SIDE_CLIENT;
		info.end = CAPTURE_END_RESET;
		info.reason = "reset";
		break;
	case CAPTURE_CLOSE_SERVER_RST:
		info.by = CAPTURE_SIDE_SERVER;
		info.end = CAPTURE_END_RESET;
		info.reason = "reset";
		break;
	case CAPTURE_CLOSE_END_OF_CAPTURE:
		info.by = CAPTURE_SIDE_CAPTURE;
		info.end = CAPTURE_END_OPEN;
		info.reason = "still open at the end of the capture";
		break;
	case CAPTURE_CLOSE_REUSED:
		info.by = CAPTURE_SIDE_CAPTURE;
		info.end = CAPTURE_END_UNSEEN;
		info.reason = "its end is not in the capture (the ports were reused)";
		break;
	}
	/* the proxy said how it ended where TCP cannot: its shutdown */
	if (s->marked_end && (info.end == CAPTURE_END_EOF || info.end == CAPTURE_END_RESET)) {
		info.by = s->marked.by;
		info.end = s->marked.end;
		info.reason = s->marked.reason;
	}

	imap_conv_eof(s->conv, ev->ts,
		      ev->reason != CAPTURE_CLOSE_END_OF_CAPTURE && ev->reason != CAPTURE_CLOSE_REUSED);
	capture_sinks_close(o->sinks, &info);
	*p = s->next;
	imap_conv_free(&s->conv);
	free(s);
}

static void on_stream(void *ctx, const struct capture_stream_event *ev)
{
	struct offline *o = ctx;
	struct offline_session **p;
	struct imap_anomaly gap;

	tick_all(o, ev->ts);
	if (ev->kind == CAPTURE_STREAM_OPEN) {
		open_session(o, ev);
		return;
	}
	p = find(o, ev->session);
	if (*p == NULL)
		return;
	imap_conv_tick((*p)->conv, ev->ts);
	switch (ev->kind) {
	case CAPTURE_STREAM_OPEN:
		break;
	case CAPTURE_STREAM_DATA:
		o->result->data_bytes += ev->len;
		imap_conv_feed((*p)->conv, ev->dir, ev->ts, IMAP_ORIGIN_PEER, ev->data, ev->len);
		break;
	case CAPTURE_STREAM_GAP:
		o->result->gaps += ev->gap_len;
		imap_anomaly_make(&gap, IMAP_RULE_CAPTURE_GAP, ev->ts, NULL, 0,
			 "%llu byte(s) of the %s's stream are missing from the capture at offset %llu; "
			 "lines around them may be misread",
			 (unsigned long long)ev->gap_len, ev->dir == IMAP_C2S ? "client" : "server",
			 (unsigned long long)ev->offset);
		imap_conv_anomaly((*p)->conv, ev->dir, &gap);
		imap_conv_gap((*p)->conv, ev->dir);
		break;
	case CAPTURE_STREAM_CLOSE:
		close_session(o, p, ev);
		break;
	case CAPTURE_STREAM_WINDOW:
		/* a zero window from a receiver: what the proxy sees as a
		 * queue that does not drain */
		imap_conv_blocked((*p)->conv, ev->dir, ev->blocked ? ev->ts : -1, 0, ev->ts);
		break;
	}
	capture_sinks_flush(o->sinks);
}

/* The writer sends a mark from the server's address to the client's and
 * names the client's port in it; a mark without the port (older pcaps)
 * goes by the session number the proxy gave, which is the capture's
 * order too. */
static struct offline_session *mark_session(struct offline *o, const struct capture_datagram *dg,
					    unsigned session, bool client_known,
					    const struct capture_endpoint *client)
{
	for (struct offline_session *s = o->open; s != NULL; s = s->next) {
		if (!capture_endpoint_same_host(&s->server, &dg->src) ||
		    !capture_endpoint_same_host(&s->client, &dg->dst))
			continue;
		if (client_known ? capture_endpoint_equal(&s->client, client) : s->id == session)
			return s;
	}
	return NULL;
}

static void mark_damaged(struct offline *o, const struct capture_datagram *dg, const char *why)
{
	char clock[32];

	if (o->result->damaged_marks++ > 0)
		return;
	capture_format_clock(clock, sizeof(clock), dg->ts);
	snprintf(o->result->damaged_mark, sizeof(o->result->damaged_mark), "at %s: %s", clock,
		 why);
}

/* A close mark: kept for the session's close, which TCP alone would
 * misreport. Returns false when the datagram is no close mark. */
static bool close_mark(struct offline *o, const struct capture_datagram *dg)
{
	struct capture_close_mark_read m;
	struct offline_session *s;
	char why[120];
	enum capture_fault_mark_parse_result rc =
		capture_close_mark_parse(dg->payload, dg->len, &m, why, sizeof(why));

	if (rc == CAPTURE_FAULT_MARK_NONE)
		return false;
	if (dg->cut || rc == CAPTURE_FAULT_MARK_DAMAGED) {
		mark_damaged(o, dg, dg->cut ? "the capture cut it short" : why);
		return true;
	}
	s = mark_session(o, dg, m.session, m.client_known, &m.client);
	if (s != NULL) {
		s->marked = m;
		s->marked_end = true;
	}
	return true;
}

/* imaptap's fault marks become the same fault rows and records as live;
 * any other datagram is none of analyze's business. */
static void on_datagram(void *ctx, const struct capture_datagram *dg)
{
	struct offline *o = ctx;
	struct capture_fault_mark_read m;
	enum capture_fault_mark_parse_result rc;
	struct offline_session *s;
	char why[120];

	if (dg->src.port != CAPTURE_FAULT_MARK_PORT || dg->dst.port != CAPTURE_FAULT_MARK_PORT)
		return;
	if (close_mark(o, dg))
		return;
	rc = capture_fault_mark_parse(dg->payload, dg->len, &m, why, sizeof(why));
	if (rc == CAPTURE_FAULT_MARK_NONE)
		return;
	if (dg->cut || rc == CAPTURE_FAULT_MARK_DAMAGED) {
		mark_damaged(o, dg, dg->cut ? "the capture cut it short" : why);
		return;
	}
	/* a mark is a packet: capture time passes as with any other, so a
	 * rule that fired while a fault held bytes shows before its release */
	tick_all(o, dg->ts);
	s = mark_session(o, dg, m.session, m.client_known, &m.client);
	if (s == NULL)
		return; /* a session not shown (--session), or not in the capture */
	imap_conv_tick(s->conv, dg->ts);
	m.mark.ts = dg->ts;
	o->result->fault_marks++;
	capture_sinks_fault(o->sinks, s->id, &m.mark);
	capture_sinks_flush(o->sinks);
}

int capture_offline_run(const char *path, const struct capture_offline_config *config,
			const struct capture_sinks *sinks, struct capture_offline_result *result,
			char *err, size_t errlen)
{
	struct offline o = {.config = config, .sinks = sinks, .result = result};
	int rc;

	memset(result, 0, sizeof(*result));
	rc = capture_pcap_read(path, on_stream, on_datagram, &o, &result->stats, err, errlen);
	/* the reader closes every session at the end of the file; anything
	 * left is freed here */
	while (o.open != NULL) {
		struct offline_session *s = o.open;

		o.open = s->next;
		imap_conv_free(&s->conv);
		free(s);
	}
	capture_sinks_flush(sinks);
	return rc;
}
