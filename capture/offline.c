#include "capture/offline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/fault_mark.h"
#include "capture/keylog.h"
#include "capture/observed.h"
#include "capture/pcapng_secrets.h"
#include "capture/settings.h"
#include "capture/timefmt.h"
#include "capture/tls_decrypt.h"
#include "capture/tls_hello.h"

struct offline_session {
	unsigned id;
	struct observed_session *observed;
	struct imap_conv *conv;                 /* observed's */
	imap_time_us due;                       /* when a rule waits to fire; -1: none */
	imap_time_us opened;
	struct capture_endpoint client, server; /* where its fault marks go and come from */
	bool marked_end;                        /* a close mark said how it ended */
	bool injected_next;                     /* an inject mark: the proxy wrote the next
						   server-side bytes itself */
	bool starttls_ok;                       /* STARTTLS was answered OK: TLS may follow */
	bool tls;                               /* the stream is TLS from here */
	struct capture_tls_decrypt *tls_dec;    /* its decryption; NULL: out of memory */
	enum capture_tls_state tls_said;        /* the state the timeline was told of */
	imap_time_us tls_ts;                    /* the packet being decrypted */
	bool fed;                               /* bytes went to the conversation */
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
	size_t max_line;              /* in effect: the config's, else the capture's */
	struct imap_tracker_config thresholds; /* likewise, field by field */
	struct capture_keylog *keylog;         /* --keylog's secrets and the pcapng's own */
};

/* How often, in capture time, every open session is told time passed:
 * finer than any threshold a rule takes. */
#define TICK_EVERY_US (IMAP_US_PER_S / 10)

/* Rules whose threshold passed before now fire at the instant it passed,
 * as the live timer fires them, with the same waited time: not at the
 * packet that shows time has passed. A due rule always fires (or its
 * deadline moves); the loop still ends should one not. */
static void tick_due(struct offline_session *s, imap_time_us now)
{
	imap_time_us last = -1;

	while (s->due >= 0 && s->due <= now && s->due != last) {
		last = s->due;
		imap_conv_tick(s->conv, last);
		s->due = imap_conv_next_deadline(s->conv);
	}
}

/* What a session was told may move its next deadline. */
static void session_changed(struct offline_session *s)
{
	s->due = imap_conv_next_deadline(s->conv);
}

/* Capture time passes for every open session: stalls fire at the packet
 * time that passes their threshold, as the live timer would. Each
 * session's next deadline is kept, so a packet costs one comparison per
 * open session. */
static void tick_all(struct offline *o, imap_time_us now)
{
	for (struct offline_session *s = o->open; s != NULL; s = s->next)
		tick_due(s, now);
	if (now - o->ticked < TICK_EVERY_US)
		return;
	o->ticked = now;
	for (struct offline_session *s = o->open; s != NULL; s = s->next) {
		imap_conv_tick(s->conv, now);
		session_changed(s);
	}
}

static void on_observation(void *ctx, const struct imap_observation *obs)
{
	struct offline_session *s = ctx;

	if (obs->info != NULL && obs->info->cls != IMAP_LINE_MALFORMED)
		s->run->result->imap_lines++;
	if (obs->completion != NULL && obs->completion->keyword == IMAP_KW_STARTTLS &&
	    obs->completion->status == IMAP_STATUS_OK)
		s->starttls_ok = true;
}

/* A TLS record starts here: handshake (22) or alert (21), version 3.x;
 * as much of that as the first segment holds (one byte may come alone),
 * since no IMAP stream starts with those bytes. */
static bool tls_record(const uint8_t *p, size_t len)
{
	return len >= 1 && (p[0] == 22 || p[0] == 21) && (len < 2 || p[1] == 3) &&
	       (len < 3 || p[2] <= 4);
}

/* Decrypted application data: what the client and server said. */
static void on_plain(void *ctx, enum imap_dir dir, const uint8_t *data, size_t len)
{
	struct offline_session *s = ctx;

	s->fed = true;
	observed_feed(s->observed, dir, s->tls_ts, IMAP_ORIGIN_PEER, data, len);
}

/* A session's stream turns out to be TLS (implicit TLS from its first
 * byte, or after STARTTLS): from here its bytes go through the
 * decryption, never to the conversation as rows of garbage. */
static void saw_tls(struct offline_session *s, imap_time_us ts)
{
	s->tls = true;
	s->tls_said = CAPTURE_TLS_HELLO;
	s->run->result->tls_sessions++;
	s->tls_dec = capture_tls_decrypt_new(s->run->keylog, on_plain, s);
	if (s->tls_dec == NULL) {
		s->run->result->tls_failed++;
		observed_notice(s->observed, ts, "out of memory: its TLS is not decrypted");
	}
}

/* The timeline hears once that the decryption started, and once that it
 * stopped or could not start, with what to do. */
static void tls_report(struct offline_session *s, imap_time_us ts)
{
	struct capture_offline_result *r = s->run->result;
	enum capture_tls_state state = capture_tls_decrypt_state(s->tls_dec);
	struct capture_tls_info info = {.leg = "capture", .peer = ""};
	char text[1024], client[CAPTURE_ENDPOINT_STR_MAX], sni[CAPTURE_TLS_SNI_MAX + 8] = "";

	if (state == s->tls_said)
		return;
	s->tls_said = state;
	capture_endpoint_format(&s->client, client, sizeof(client));
	info.sni = capture_tls_decrypt_sni(s->tls_dec);
	if (info.sni[0] != '\0')
		snprintf(sni, sizeof(sni), "SNI %s, ", info.sni);
	switch (state) {
	case CAPTURE_TLS_HELLO:
		return;
	case CAPTURE_TLS_DECRYPTING:
		r->tls_decrypted++;
		info.version = capture_tls_decrypt_version(s->tls_dec);
		info.cipher = capture_tls_decrypt_cipher(s->tls_dec);
		observed_tls(s->observed, ts, &info);
		return;
	case CAPTURE_TLS_NO_SECRETS:
		r->tls_no_secrets++;
		snprintf(text, sizeof(text), "TLS session of %s to port %u (%sclient_random %s) not "
			 "decrypted: %s. Give analyze --keylog FILE, the key log the client wrote "
			 "(SSLKEYLOGFILE=/path for curl, Thunderbird, Firefox; keylog_filename in "
			 "Python's ssl), or a pcapng holding it (editcap --inject-secrets tls,FILE)",
			 client, s->server.port, sni, capture_tls_decrypt_random(s->tls_dec),
			 capture_tls_decrypt_why(s->tls_dec));
		break;
	case CAPTURE_TLS_UNSUPPORTED:
	case CAPTURE_TLS_FAILED:
		r->tls_failed++;
		snprintf(text, sizeof(text), "TLS session of %s to port %u (%sclient_random %s) "
			 "undecryptable from here: %s", client, s->server.port, sni,
			 capture_tls_decrypt_random(s->tls_dec)[0] ? capture_tls_decrypt_random(s->tls_dec)
								   : "not in the capture",
			 capture_tls_decrypt_why(s->tls_dec));
		break;
	}
	observed_notice(s->observed, ts, text);
}

/* What the end of the session left of its TLS. */
static void tls_end(struct offline_session *s, imap_time_us ts)
{
	char text[200];

	if (capture_tls_decrypt_state(s->tls_dec) == CAPTURE_TLS_HELLO) {
		observed_notice(s->observed, ts, "its TLS handshake is not complete in the capture: "
				"nothing to decrypt");
		return;
	}
	if (capture_tls_decrypt_state(s->tls_dec) != CAPTURE_TLS_DECRYPTING)
		return;
	for (int dir = IMAP_C2S; dir <= IMAP_S2C; dir++) {
		size_t left = capture_tls_decrypt_pending(s->tls_dec, (enum imap_dir)dir);

		if (left == 0)
			continue;
		snprintf(text, sizeof(text), "the %s's last TLS record is cut short after %zu byte(s): "
			 "what it held is not shown", dir == IMAP_C2S ? "client" : "server", left);
		observed_notice(s->observed, ts, text);
	}
}

static void tls_feed(struct offline_session *s, const struct capture_stream_event *ev)
{
	if (s->tls_dec == NULL)
		return;
	s->tls_ts = ev->ts;
	capture_tls_decrypt_feed(s->tls_dec, ev->dir, ev->data, ev->len);
	tls_report(s, ev->ts);
}

static void on_anomaly(void *ctx, const struct imap_anomaly *a)
{
	struct offline_session *s = ctx;

	if (!a->resolved && !a->never_resolved && (unsigned)a->rule < IMAP_RULE_COUNT)
		s->run->result->fired[a->rule]++;
}

static struct offline_session **find(struct offline *o, unsigned id)
{
	struct offline_session **p = &o->open;

	while (*p != NULL && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static bool session_wanted(const struct capture_offline_config *config, unsigned session)
{
	if (config->session_count > 0) {
		for (size_t i = 0; i < config->session_count; i++)
			if (config->sessions[i] == session)
				return true;
		return false;
	}
	return config->session == 0 || config->session == session;
}

static void open_session(struct offline *o, const struct capture_stream_event *ev)
{
	struct imap_conv_config cc = {
		.max_line = o->max_line,
		.redact_flags = o->config->redact_flags,
		.rules = !o->config->no_rules,
		.inflated_capture_ok = true,
		.thresholds = o->thresholds,
	};
	struct capture_session_info info = {
		.id = ev->session,
		.ts = ev->ts,
		.client = *ev->client_ep,
		.upstream = *ev->server_ep,
		.local = *ev->server_ep,
		.upstream_tls = "capture",
	};
	struct offline_session *s;
	struct observed_hooks hooks = {.observation = on_observation, .anomaly = on_anomaly};

	o->result->sessions++;
	if (!session_wanted(o->config, ev->session))
		return;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return;
	s->id = ev->session;
	s->run = o;
	s->opened = ev->ts;
	s->client = *ev->client_ep;
	s->server = *ev->server_ep;
	hooks.ctx = s;
	s->observed = observed_open(o->sinks, &info, &cc, &hooks);
	if (s->observed == NULL) {
		free(s);
		return;
	}
	s->conv = observed_conv(s->observed);
	if (!ev->midstream)
		imap_conv_connected(s->conv, ev->ts);
	session_changed(s);
	s->next = o->open;
	o->open = s;
	o->result->shown++;
	if (ev->midstream)
		observed_notice(s->observed, ev->ts,
				"the capture starts inside this connection (no SYN): what came "
				"before is missing and the first line may be cut");
}

static void close_session(struct offline_session **p, const struct capture_stream_event *ev)
{
	struct offline_session *s = *p;
	struct capture_close_info info = {
		.id = s->id,
		.ts = ev->ts,
		.opened = s->opened,
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

	if (s->tls_dec != NULL)
		tls_end(s, ev->ts);
	*p = s->next;
	observed_close(&s->observed, &info);
	capture_tls_decrypt_free(&s->tls_dec);
	free(s);
}

static void on_stream(void *ctx, const struct capture_stream_event *ev)
{
	struct offline *o = ctx;
	struct offline_session **p, *s;
	struct imap_anomaly gap;

	tick_all(o, ev->ts);
	if (ev->ts > o->result->last_ts)
		o->result->last_ts = ev->ts;
	if (ev->kind == CAPTURE_STREAM_OPEN) {
		open_session(o, ev);
		return;
	}
	p = find(o, ev->session);
	if ((s = *p) == NULL)
		return;
	if (ev->kind != CAPTURE_STREAM_DATA)
		imap_conv_tick(s->conv, ev->ts); /* feeding bytes ticks by itself */
	switch (ev->kind) {
	case CAPTURE_STREAM_OPEN:
		break;
	case CAPTURE_STREAM_DATA:
		o->result->data_bytes += ev->len;
		if (!s->tls && tls_record(ev->data, ev->len) &&
		    (s->starttls_ok || (ev->offset == 0 && !s->fed)))
			saw_tls(s, ev->ts);
		if (s->tls) {
			tls_feed(s, ev);
			break;
		}
		s->fed = true;
		/* what a fault's inject mark announced is the proxy's, as live */
		observed_feed(s->observed, ev->dir, ev->ts,
			      ev->dir == IMAP_S2C && s->injected_next ? IMAP_ORIGIN_PROXY
								    : IMAP_ORIGIN_PEER,
			      ev->data, ev->len);
		if (ev->dir == IMAP_S2C)
			s->injected_next = false;
		break;
	case CAPTURE_STREAM_GAP:
		o->result->gaps += ev->gap_len;
		imap_anomaly_make(&gap, IMAP_RULE_CAPTURE_GAP, ev->ts, NULL, 0,
			 "%llu byte(s) of the %s's stream are missing from the capture at offset %llu; "
			 "lines around them may be misread",
			 (unsigned long long)ev->gap_len, ev->dir == IMAP_C2S ? "client" : "server",
			 (unsigned long long)ev->offset);
		imap_conv_anomaly(s->conv, ev->dir, &gap);
		imap_conv_gap(s->conv, ev->dir);
		if (s->tls_dec != NULL) {
			capture_tls_decrypt_gap(s->tls_dec, ev->dir, ev->gap_len);
			tls_report(s, ev->ts);
		}
		break;
	case CAPTURE_STREAM_CLOSE:
		close_session(p, ev); /* and flushes */
		return;
	case CAPTURE_STREAM_WINDOW:
		/* a zero window from a receiver: what the proxy sees as a
		 * queue that does not drain */
		imap_conv_blocked(s->conv, ev->dir, ev->blocked ? ev->ts : -1, 0, ev->ts);
		break;
	}
	session_changed(s);
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

/* The settings mark: the thresholds and line limit the proxy ran with
 * stand where the config left them open. Returns false when the datagram
 * is no settings mark. */
static bool settings_mark(struct offline *o, const struct capture_datagram *dg)
{
	struct capture_run_settings s;
	const struct imap_tracker_config *given = &o->config->thresholds;
	char why[120];
	enum capture_fault_mark_parse_result rc =
		capture_settings_mark_parse(dg->payload, dg->len, &s, why, sizeof(why));

	if (rc == CAPTURE_FAULT_MARK_NONE)
		return false;
	if (dg->cut || rc == CAPTURE_FAULT_MARK_DAMAGED) {
		mark_damaged(o, dg, dg->cut ? "the capture cut it short" : why);
		return true;
	}
	o->result->settings_read = true;
	if (o->config->max_line == 0 && s.max_line > 0 && s.max_line <= SIZE_MAX)
		o->max_line = (size_t)s.max_line;
	if (given->stall == 0)
		o->thresholds.stall = s.thresholds.stall;
	if (given->done_stall == 0)
		o->thresholds.done_stall = s.thresholds.done_stall;
	if (given->idle_max == 0)
		o->thresholds.idle_max = s.thresholds.idle_max;
	if (given->keepalive_gap == 0)
		o->thresholds.keepalive_gap = s.thresholds.keepalive_gap;
	capture_sinks_settings(o->sinks, dg->ts, &s);
	capture_sinks_flush(o->sinks);
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
	if (settings_mark(o, dg) || close_mark(o, dg))
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
	session_changed(s);
	m.mark.ts = dg->ts;
	if (strcmp(m.mark.phase, "inject") == 0 && m.mark.dir == IMAP_S2C)
		s->injected_next = true;
	o->result->fault_marks++;
	observed_fault(s->observed, &m.mark);
	capture_sinks_flush(o->sinks);
}

/* The secrets of --keylog, then of the capture's own pcapng blocks. */
static int load_secrets(struct offline *o, const char *path, char *err, size_t errlen)
{
	o->keylog = capture_keylog_new();
	if (o->keylog == NULL ||
	    (o->config->keylog != NULL &&
	     capture_keylog_load(o->keylog, o->config->keylog, err, errlen) != 0) ||
	    (o->result->embedded_secrets = capture_pcapng_secrets(path, o->keylog)) < 0) {
		if (o->keylog == NULL || o->result->embedded_secrets < 0)
			snprintf(err, errlen, "%s: out of memory reading its TLS secrets", path);
		capture_keylog_free(&o->keylog);
		return -1;
	}
	return 0;
}

int capture_offline_run(const char *path, const struct capture_offline_config *config,
			const struct capture_sinks *sinks, struct capture_offline_result *result,
			char *err, size_t errlen)
{
	struct offline o = {
		.config = config,
		.sinks = sinks,
		.result = result,
		.max_line = config->max_line,
		.thresholds = config->thresholds,
	};
	int rc;

	memset(result, 0, sizeof(*result));
	if (load_secrets(&o, path, err, errlen) != 0)
		return -1;
	rc = capture_pcap_read(path, on_stream, on_datagram, &o, &result->stats, err, errlen);
	/* the reader closes every session at the end of the file; anything
	 * left is freed here */
	while (o.open != NULL) {
		struct offline_session *s = o.open;

		o.open = s->next;
		observed_discard(&s->observed);
		capture_tls_decrypt_free(&s->tls_dec);
		free(s);
	}
	capture_sinks_flush(sinks);
	result->keylog_secrets = capture_keylog_count(o.keylog);
	result->keylog_bad_lines = capture_keylog_bad_lines(o.keylog);
	capture_keylog_free(&o.keylog);
	return rc;
}
