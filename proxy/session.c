/* One relayed session: a client stream, an upstream stream, and the
 * conversation observer between them.
 *
 * Bytes read from one side are shown to the observer, then moved whole to
 * the other side's output (evbuffer chains, no copy, no change) and written
 * at once. When more than PROXY_HIGH_WATER wait toward a peer, reading the
 * other side stops until that queue is half drained (le-proxy's pattern).
 * A FIN from one side is passed on once what is queued for the other side
 * has been written; a reset or an error ends the session after the other
 * side is flushed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/capability.h"
#include "proxy/fault.h"
#include "proxy/internal.h"
#include "proxy/stream.h"

enum side {
	SIDE_CLIENT = 0,
	SIDE_UPSTREAM = 1,
};

static const enum capture_side side_party[2] = {CAPTURE_SIDE_CLIENT, CAPTURE_SIDE_SERVER};

enum session_state {
	SESSION_CONNECTING, /* waiting for the upstream TCP connection */
	SESSION_RELAYING,
	SESSION_CLOSING,    /* flushing what is queued, then closing */
};

struct proxy_session {
	struct proxy *proxy;
	unsigned id;
	enum session_state state;
	struct proxy_stream *stream[2]; /* NULL once that side is closed */
	int read_eof[2];                /* that side sent FIN */
	int throttled[2];               /* reading that side paused for backpressure */
	unsigned addr_index;            /* upstream address being tried */
	struct imap_conv *conv;
	struct event *timer;            /* connect timeout, then linger guard */
	struct event *rules_timer;      /* the next time a rule could fire; NULL without rules */
	imap_time_us rules_at;          /* when rules_timer fires, -1 when not armed */
	uint64_t bytes[2];              /* relayed, by enum imap_dir */
	bool closed;                    /* how it ends is decided: */
	enum capture_side closed_by;
	enum capture_end end;
	char reason[192];
	int tcp_up;             /* the upstream TCP connection is established */
	int upstream_ready;     /* the upstream leg carries IMAP (TLS done if any) */
	int client_ready;       /* the client leg carries IMAP (TLS done if any) */
	char client_sni[256];
	char *pending_bye;      /* a BYE to send once the client's TLS is up */
	char legs[64];          /* "client TLS, upstream STARTTLS" for the open row */
	/* peers that stopped reading: by side, the output's written count
	 * when last seen moving, and when */
	uint64_t seen_written[2];
	uint64_t written_drained[2]; /* output written when the kernel last held none of it */
	imap_time_us progress_at[2];
	bool blocked[2];
	enum {
		STARTTLS_OFF,
		STARTTLS_GREETING, /* waiting for the server's greeting */
		STARTTLS_ANSWER,   /* STARTTLS sent, waiting for its tagged answer */
	} starttls;
	struct evbuffer *greeting; /* the server's greeting, shown to the client later */
	int line_mode[2];       /* before login: relay line by line (capability edits,
				   the client's STARTTLS) */
	int authenticated;      /* LOGIN or AUTHENTICATE completed OK */
	int client_handshaking; /* the client's STARTTLS handshake is under way */
	int client_tls_on;      /* the client leg runs TLS */
	imap_time_us greeting_ts;
	struct capture_session_info info;
	struct proxy_faults *faults; /* NULL unless a --fault applies to this session */
	bool eof_deferred[2];        /* by side: its FIN waits behind a fault's queue */
	TAILQ_ENTRY(proxy_session) link;
};

static void on_client(struct proxy_stream *stream, enum proxy_stream_event event, void *arg);
static void on_upstream(struct proxy_stream *stream, enum proxy_stream_event event, void *arg);
static int connect_upstream(struct proxy_session *s);

static enum imap_dir dir_from(enum side side)
{
	return side == SIDE_CLIENT ? IMAP_C2S : IMAP_S2C;
}

static void arm_rules(struct proxy_session *s, imap_time_us now);

static void on_observation(void *ctx, const struct imap_observation *obs)
{
	struct proxy_session *s = ctx;
	const struct imap_completion *c = obs->completion;

	if (c != NULL && c->status == IMAP_STATUS_OK &&
	    (strcmp(c->command, "LOGIN") == 0 || strcmp(c->command, "AUTHENTICATE") == 0))
		s->authenticated = 1;
	capture_sinks_observe(s->proxy->sinks, s->id, obs);
	arm_rules(s, obs->ts);
}

static void on_conv_bytes(void *ctx, enum imap_dir dir, imap_time_us ts, const uint8_t *data,
			  size_t len, uint64_t secret_from)
{
	struct proxy_session *s = ctx;

	capture_sinks_bytes(s->proxy->sinks, s->id, dir, ts, data, len, secret_from);
}

/* The kernel's view goes first: with an autotuned send buffer of
 * megabytes, the proxy's own writes go on long after the peer stopped
 * reading; what the peer acknowledges does not. pending grows by what the
 * kernel still holds; written becomes what the peer acknowledged. */
static void kernel_view(struct proxy_session *s, enum side side, const struct proxy_stream *st,
			size_t *pending, uint64_t *written)
{
	uint64_t app_written = *written, acked;
	size_t unsent;

	if (!proxy_stream_peer_progress(st, &acked, &unsent))
		return;
	*pending += unsent;
	*written = acked;
	if (*pending == 0)
		s->written_drained[side] = app_written;
}

/* Nothing written toward side since the kernel last held nothing for it,
 * and nothing queued: no byte can be waiting there. */
static bool all_delivered(const struct proxy_session *s, enum side side)
{
	struct proxy_stream *st = s->stream[side];

	return evbuffer_get_length(proxy_stream_output(st)) == 0 &&
	       proxy_stream_written(st) == s->written_drained[side];
}

/* A side whose output holds bytes and whose written count has not moved
 * since the last look is not reading. */
static void check_reading(struct proxy_session *s, enum side side, imap_time_us now)
{
	struct proxy_stream *st = s->stream[side];
	enum imap_dir toward = side == SIDE_CLIENT ? IMAP_S2C : IMAP_C2S;
	size_t pending;
	uint64_t written;

	if (st == NULL)
		return;
	/* an idle session costs no system call */
	if (all_delivered(s, side)) {
		pending = 0;
		written = s->seen_written[side];
	} else {
		pending = evbuffer_get_length(proxy_stream_output(st));
		written = proxy_stream_written(st);
		kernel_view(s, side, st, &pending, &written);
	}
	if (pending == 0 || written != s->seen_written[side] || s->progress_at[side] == 0) {
		s->seen_written[side] = written;
		s->progress_at[side] = now;
		if (s->blocked[side]) {
			s->blocked[side] = false;
			imap_conv_blocked(s->conv, toward, -1, 0, now);
			capture_sinks_flow(s->proxy->sinks, s->id, now, toward, false, 0);
		}
		return;
	}
	if (!s->blocked[side])
		capture_sinks_flow(s->proxy->sinks, s->id, now, toward, true, pending);
	s->blocked[side] = true;
	imap_conv_blocked(s->conv, toward, s->progress_at[side], pending, now);
}

/* While bytes may wait toward a peer, look every quarter second whether
 * it still reads. */
#define READING_CHECK_US 250000

static bool may_be_waiting(struct proxy_session *s, enum side side)
{
	return s->stream[side] != NULL && (s->blocked[side] || !all_delivered(s, side));
}

/* One timer per session, armed for the earliest time a rule could fire
 * (or a peer be found not reading): an idle session costs nothing until
 * then, however many there are. Armed earlier than needed is harmless: it
 * looks and arms again. */
static void arm_rules(struct proxy_session *s, imap_time_us now)
{
	imap_time_us at;
	struct timeval tv;

	if (s->rules_timer == NULL || s->state != SESSION_RELAYING)
		return;
	at = imap_conv_next_deadline(s->conv);
	if (may_be_waiting(s, SIDE_CLIENT) || may_be_waiting(s, SIDE_UPSTREAM)) {
		if (at < 0 || now + READING_CHECK_US < at)
			at = now + READING_CHECK_US;
	}
	if (at < 0 || (s->rules_at >= 0 && s->rules_at <= at))
		return;
	if (at < now)
		at = now;
	tv.tv_sec = (time_t)((at - now) / 1000000);
	tv.tv_usec = (suseconds_t)((at - now) % 1000000);
	evtimer_add(s->rules_timer, &tv);
	s->rules_at = at;
}

static void on_rules_timer(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_session *s = arg;
	imap_time_us now = proxy_now();

	(void)fd;
	(void)what;
	s->rules_at = -1;
	if (s->state != SESSION_RELAYING)
		return;
	check_reading(s, SIDE_CLIENT, now);
	check_reading(s, SIDE_UPSTREAM, now);
	imap_conv_tick(s->conv, now);
	capture_sinks_flush(s->proxy->sinks);
	arm_rules(s, now);
}

static void on_conv_event(void *ctx, const struct imap_conv_event *e)
{
	struct proxy_session *s = ctx;

	switch (e->kind) {
	case IMAP_CONV_NOTICE:
		capture_sinks_notice(s->proxy->sinks, s->id, e->ts, e->text);
		break;
	case IMAP_CONV_ANOMALY:
		capture_sinks_anomaly(s->proxy->sinks, s->id, e->anomaly);
		break;
	case IMAP_CONV_SUMMARY:
		capture_sinks_summary(s->proxy->sinks, s->id, e->ts, e->summary);
		break;
	}
}

/* The first word on how the session ends is the one that stands. */
static void set_closed_by(struct proxy_session *s, enum capture_side by, enum capture_end end,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void set_closed_by(struct proxy_session *s, enum capture_side by, enum capture_end end,
			  const char *fmt, ...)
{
	va_list ap;

	if (s->closed)
		return;
	s->closed = true;
	s->closed_by = by;
	s->end = end;
	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
}

static void close_side(struct proxy_session *s, enum side side)
{
	proxy_stream_free(&s->stream[side]);
}

static void session_free(struct proxy_session *s)
{
	struct proxy *p = s->proxy;
	struct capture_close_info close = {
		.id = s->id,
		.ts = proxy_now(),
		.opened = s->info.ts,
		.by = s->closed ? s->closed_by : CAPTURE_SIDE_PROXY,
		.end = s->closed ? s->end : CAPTURE_END_ERROR,
		.reason = s->closed ? s->reason : "closed",
		.bytes = {s->bytes[0], s->bytes[1]},
	};

	close_side(s, SIDE_CLIENT);
	close_side(s, SIDE_UPSTREAM);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->rules_timer != NULL)
		event_free(s->rules_timer);
	proxy_faults_free(&s->faults);
	imap_conv_eof(s->conv, close.ts, true);
	capture_sinks_close(p->sinks, &close);
	capture_sinks_flush(p->sinks);
	imap_conv_free(&s->conv);
	free(s->pending_bye);
	if (s->greeting != NULL)
		evbuffer_free(s->greeting);
	TAILQ_REMOVE(&p->sessions, s, link);
	free(s);
	proxy_session_gone(p);
}

/* Closes drained sides of a closing session. Returns 1 when the session
 * is gone. */
static int reap(struct proxy_session *s)
{
	for (int i = 0; i < 2; i++)
		if (s->stream[i] != NULL && proxy_stream_pending(s->stream[i]) == 0)
			close_side(s, (enum side)i);
	if (s->stream[0] == NULL && s->stream[1] == NULL) {
		session_free(s);
		return 1;
	}
	return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct proxy_session *s, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};

	if (s->timer == NULL)
		s->timer = evtimer_new(s->proxy->base, on_timer, s);
	if (s->timer != NULL)
		evtimer_add(s->timer, &tv);
}

/* Stops reading both sides, flushes what is queued and closes. Returns 1
 * when the session is gone. */
static int finish(struct proxy_session *s)
{
	s->state = SESSION_CLOSING;
	for (int i = 0; i < 2; i++) {
		if (s->stream[i] == NULL)
			continue;
		proxy_stream_set_reading(s->stream[i], false);
		proxy_stream_set_low_water(s->stream[i], 0);
		proxy_stream_flush(s->stream[i]);
	}
	if (reap(s))
		return 1;
	arm_timer(s, s->proxy->config.linger_s);
	return 0;
}

/* Shows the first len bytes of input to the conversation. */
static void observe(struct proxy_session *s, enum imap_dir dir, struct evbuffer *input,
		    size_t len, enum imap_origin origin, imap_time_us ts)
{
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr pos;
	size_t left = len;

	evbuffer_ptr_set(input, &pos, 0, EVBUFFER_PTR_SET);
	while (left > 0) {
		int n = evbuffer_peek(input, (ev_ssize_t)left, &pos, vec, 16);
		size_t done = 0;

		if (n <= 0)
			break;
		if (n > 16)
			n = 16;
		for (int i = 0; i < n && done < left; i++) {
			size_t chunk = vec[i].iov_len < left - done ? vec[i].iov_len : left - done;

			imap_conv_feed(s->conv, dir, ts, origin, vec[i].iov_base, chunk);
			done += chunk;
		}
		left -= done;
		if (left > 0 && evbuffer_ptr_set(input, &pos, done, EVBUFFER_PTR_ADD) < 0)
			break;
	}
}

/* Bytes between STARTTLS and the handshake: the injection class of
 * IMAP-NOTES section 7, dropped and reported. */
static void trailing_data(struct proxy_session *s, const char *from, size_t n)
{
	struct imap_anomaly a = {
		.rule = IMAP_RULE_STARTTLS_TRAILING_DATA,
		.severity = imap_rule_severity(IMAP_RULE_STARTTLS_TRAILING_DATA),
		.ts = proxy_now(),
		.threshold = -1,
		.waited = -1,
	};

	snprintf(a.detail, sizeof(a.detail),
		 "%zu byte(s) from %s and before TLS; dropped, never passed on", n, from);
	capture_sinks_anomaly(s->proxy->sinks, s->id, &a);
}

static void start_upstream_tls(struct proxy_session *s);
static void upstream_failed(struct proxy_session *s, const char *what, const char *why);

/* Upstream STARTTLS, done by the proxy before the client's first byte:
 * keep the greeting for the client, send STARTTLS, and on its tagged OK
 * start TLS. Server bytes after the OK's CRLF would be plaintext injected
 * into the TLS session (IMAP-NOTES section 7): they are dropped. */
static void upstream_starttls_read(struct proxy_session *s)
{
	static const char command[] = "imaptap0 STARTTLS\r\n";
	struct evbuffer *input = proxy_stream_input(s->stream[SIDE_UPSTREAM]);
	char notice[700];

	for (;;) {
		size_t n = 0;
		char *line = evbuffer_readln(input, &n, EVBUFFER_EOL_CRLF);

		if (line == NULL) {
			if (evbuffer_get_length(input) > 8192)
				upstream_failed(s, "STARTTLS", "a line over 8 KiB before TLS");
			return;
		}
		if (s->starttls == STARTTLS_GREETING) {
			if (strncmp(line, "* OK", 4) != 0 && strncmp(line, "* PREAUTH", 9) != 0) {
				snprintf(notice, sizeof(notice), "greeting was not * OK: %.200s", line);
				free(line);
				upstream_failed(s, "STARTTLS", notice);
				return;
			}
			s->greeting = evbuffer_new();
			if (s->greeting != NULL)
				evbuffer_add_printf(s->greeting, "%s\r\n", line);
			s->greeting_ts = proxy_now();
			free(line);
			evbuffer_add(proxy_stream_output(s->stream[SIDE_UPSTREAM]), command,
				     sizeof(command) - 1);
			proxy_stream_flush(s->stream[SIDE_UPSTREAM]);
			s->starttls = STARTTLS_ANSWER;
			continue;
		}
		if (strncmp(line, "imaptap0 ", 9) != 0) {
			free(line); /* untagged data before the answer */
			continue;
		}
		if (strncmp(line + 9, "OK", 2) != 0) {
			snprintf(notice, sizeof(notice), "server refused STARTTLS: %.200s", line);
			free(line);
			upstream_failed(s, "STARTTLS", notice);
			return;
		}
		snprintf(notice, sizeof(notice), "upstream STARTTLS: sent 'imaptap0 STARTTLS', server answered '%.200s'",
			 line);
		free(line);
		capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(), notice);
		if (evbuffer_get_length(input) > 0) {
			trailing_data(s, "the server after its STARTTLS OK", evbuffer_get_length(input));
			evbuffer_drain(input, evbuffer_get_length(input));
		}
		s->starttls = STARTTLS_OFF;
		proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], false);
		start_upstream_tls(s);
		return;
	}
}

#define LINE_MODE_MAX 8192

static unsigned capability_edits(const struct proxy_session *s)
{
	const struct proxy_config *c = &s->proxy->config;
	unsigned edits = 0;

	if (c->client_tls == PROXY_TLS_STARTTLS && !s->client_tls_on)
		edits |= IMAP_CAP_ADD_STARTTLS;
	else
		edits |= IMAP_CAP_REMOVE_STARTTLS;
	if (c->client_tls == PROXY_TLS_NONE)
		edits |= IMAP_CAP_REMOVE_LOGINDISABLED;
	return edits;
}

static int is_starttls_command(const uint8_t *line, size_t n)
{
	const uint8_t *sp = memchr(line, ' ', n);
	size_t rest;

	if (sp == NULL || sp == line)
		return 0;
	rest = n - (size_t)(sp + 1 - line);
	return (rest == 10 && strncasecmp((const char *)sp + 1, "STARTTLS\r\n", 10) == 0) ||
	       (rest == 9 && strncasecmp((const char *)sp + 1, "STARTTLS\n", 9) == 0);
}

/* The client asked for STARTTLS: answered here, never relayed. */
static void client_starttls(struct proxy_session *s, const uint8_t *line, size_t n)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	struct evbuffer *input = proxy_stream_input(client);
	size_t tag_len = (size_t)((const uint8_t *)memchr(line, ' ', n) - line);
	char ok[300];
	int len;
	SSL *ssl;

	imap_conv_feed(s->conv, IMAP_C2S, proxy_now(), IMAP_ORIGIN_PEER, line, n);
	len = snprintf(ok, sizeof(ok), "%.*s OK Begin TLS negotiation now (imaptap)\r\n",
		       (int)(tag_len < 200 ? tag_len : 200), (const char *)line);
	imap_conv_feed(s->conv, IMAP_S2C, proxy_now(), IMAP_ORIGIN_PROXY, (const uint8_t *)ok,
		       (size_t)len);
	evbuffer_add(proxy_stream_output(client), ok, (size_t)len);
	proxy_stream_flush(client);
	if (evbuffer_get_length(input) > 0) {
		trailing_data(s, "the client after STARTTLS", evbuffer_get_length(input));
		evbuffer_drain(input, evbuffer_get_length(input));
	}
	ssl = SSL_new(s->proxy->client_ctx);
	if (ssl == NULL || evbuffer_get_length(proxy_stream_output(client)) > 0) {
		SSL_free(ssl);
		set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "could not start TLS with the client");
		finish(s);
		return;
	}
	s->line_mode[SIDE_CLIENT] = 0;
	s->client_handshaking = 1;
	arm_timer(s, s->proxy->config.connect_timeout_s);
	proxy_stream_start_tls(client, ssl, true);
}

/* Lines are relayed one by one before authentication; after it, or once
 * COMPRESS is on (the bytes are no longer lines), chunks go as read. */
static bool in_line_mode(const struct proxy_session *s, enum side side)
{
	return s->line_mode[side] && !s->authenticated && !imap_conv_compressed(s->conv);
}

/* One line read in line mode goes on: observed and queued for the other
 * side, or handed to the session's faults. */
static void pass_line(struct proxy_session *s, enum imap_dir dir, enum imap_origin origin,
		      const uint8_t *line, size_t n, struct evbuffer *out)
{
	struct evbuffer *one;

	if (s->faults == NULL) {
		imap_conv_feed(s->conv, dir, proxy_now(), origin, line, n);
		evbuffer_add(out, line, n);
		s->bytes[dir] += n;
		return;
	}
	one = evbuffer_new();
	if (one == NULL || evbuffer_add(one, line, n) != 0) {
		if (one != NULL)
			evbuffer_free(one);
		return;
	}
	proxy_faults_take(s->faults, dir, origin, one, n, proxy_now());
	evbuffer_free(one);
}

/* Before authentication, passes complete lines one at a time so the
 * proxy can edit capability lists and answer the client's STARTTLS.
 * Returns 1 when the session's client leg switched to TLS (the rest of
 * the input is handled), 0 when raw relaying should go on with the rest. */
static int relay_lines(struct proxy_session *s, enum side side)
{
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	struct evbuffer *out = proxy_stream_output(s->stream[!side]);
	enum imap_dir dir = dir_from(side);
	uint8_t line[LINE_MODE_MAX], edited[LINE_MODE_MAX + 16];

	while (in_line_mode(s, side)) {
		size_t eol = 0, n, m;
		struct evbuffer_ptr at = evbuffer_search_eol(input, NULL, &eol, EVBUFFER_EOL_LF);

		if (at.pos < 0) {
			if (evbuffer_get_length(input) >= LINE_MODE_MAX)
				s->line_mode[side] = 0; /* not a line we could edit */
			return 0;
		}
		n = (size_t)at.pos + eol;
		if (n > LINE_MODE_MAX) {
			s->line_mode[side] = 0;
			return 0;
		}
		evbuffer_remove(input, line, n);
		if (side == SIDE_CLIENT && s->proxy->config.client_tls == PROXY_TLS_STARTTLS &&
		    !s->client_tls_on && is_starttls_command(line, n)) {
			client_starttls(s, line, n);
			return 1;
		}
		m = side == SIDE_UPSTREAM ? imap_capability_edit(line, n, capability_edits(s), edited,
								 sizeof(edited))
					  : 0;
		if (m > 0)
			pass_line(s, dir, IMAP_ORIGIN_PROXY, edited, m, out);
		else
			pass_line(s, dir, IMAP_ORIGIN_PEER, line, n, out);
		/* a literal follows: its bytes are no line; relay raw from here */
		if (n >= 3 && line[n - 1] == '\n' && (line[n - 2] == '}' || (line[n - 2] == '\r' && line[n - 3] == '}')))
			s->line_mode[side] = 0;
	}
	return 0;
}

/* Bytes waiting to reach side: its output, and what a fault still holds. */
static size_t queued_toward(struct proxy_session *s, enum side side)
{
	size_t n = s->stream[side] != NULL ? evbuffer_get_length(proxy_stream_output(s->stream[side]))
					   : 0;

	if (s->faults != NULL)
		n += proxy_faults_queued(s->faults, dir_from(!side));
	return n;
}

/* Whether side may be read now: not paused for backpressure, not closed,
 * not stopped by a fault. */
static bool may_read(struct proxy_session *s, enum side side)
{
	return s->stream[side] != NULL && !s->throttled[side] && !s->read_eof[side] &&
	       (s->faults == NULL ||
		!proxy_faults_reading_stopped(s->faults, side == SIDE_CLIENT));
}

static void relay(struct proxy_session *s, enum side side)
{
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	struct proxy_stream *dst = s->stream[!side];
	size_t n = evbuffer_get_length(input);
	enum imap_dir dir = dir_from(side);

	if (n == 0)
		return;
	if (side == SIDE_UPSTREAM && s->starttls != STARTTLS_OFF) {
		upstream_starttls_read(s);
		return;
	}
	if (dst == NULL || s->state != SESSION_RELAYING) {
		evbuffer_drain(input, n); /* nobody left to deliver to */
		return;
	}
	if (in_line_mode(s, side)) {
		if (relay_lines(s, side))
			return;
		n = evbuffer_get_length(input);
	}
	if (n > 0 && !in_line_mode(s, side)) {
		if (s->faults != NULL) {
			proxy_faults_take(s->faults, dir, IMAP_ORIGIN_PEER, input, n, proxy_now());
		} else {
			observe(s, dir, input, n, IMAP_ORIGIN_PEER, proxy_now());
			evbuffer_add_buffer(proxy_stream_output(dst), input);
			s->bytes[dir] += n;
		}
	}
	proxy_stream_flush(dst);
	if (queued_toward(s, !side) >= PROXY_HIGH_WATER) {
		/* the other side does not keep up: stop reading this one until
		 * its queue is half drained */
		proxy_stream_set_reading(s->stream[side], false);
		s->throttled[side] = 1;
		proxy_stream_set_low_water(dst, PROXY_HIGH_WATER / 2);
	}
	imap_conv_trim(s->conv);
	capture_sinks_flush(s->proxy->sinks);
	arm_rules(s, proxy_now());
}

static void drained(struct proxy_session *s, enum side side)
{
	enum side src = !side;

	if (s->state == SESSION_CLOSING) {
		reap(s);
		return;
	}
	if (s->throttled[src] && s->stream[src] != NULL && queued_toward(s, side) <= PROXY_HIGH_WATER / 2) {
		s->throttled[src] = 0;
		proxy_stream_set_low_water(s->stream[side], 0);
		if (may_read(s, src))
			proxy_stream_set_reading(s->stream[src], true);
	}
}

static void resume_client_tls(struct proxy_session *s);

static void send_bye(struct proxy_session *s, const char *bye)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	size_t len = strlen(bye);

	/* plain text inside a compressed stream would corrupt it */
	if (client == NULL || imap_conv_compressed(s->conv))
		return;
	imap_conv_feed(s->conv, IMAP_S2C, proxy_now(), IMAP_ORIGIN_PROXY, (const uint8_t *)bye, len);
	evbuffer_add(proxy_stream_output(client), bye, len);
	s->bytes[IMAP_S2C] += len;
}

/* The upstream cannot be used: tells the client with an untagged BYE (over
 * its TLS leg once that is up) and closes. */
static void upstream_failed(struct proxy_session *s, const char *what, const char *why)
{
	char bye[768], notice[800];

	snprintf(bye, sizeof(bye), "* BYE [UNAVAILABLE] imaptap: upstream %s %s: %s\r\n",
		 s->proxy->upstream_str, what, why);
	snprintf(notice, sizeof(notice), "upstream %s %s: %s; telling the client * BYE",
		 s->proxy->upstream_str, what, why);
	capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(), notice);
	set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "upstream %s: %s", what, why);
	close_side(s, SIDE_UPSTREAM);
	if (s->stream[SIDE_CLIENT] != NULL && !s->client_ready) {
		/* the client waits in its TLS handshake: finish it first */
		free(s->pending_bye);
		s->pending_bye = strdup(bye);
		resume_client_tls(s);
		return;
	}
	send_bye(s, bye);
	finish(s);
}

/* The current upstream address failed: tries the next. Returns 1 when the
 * session is gone. */
static int connect_failed(struct proxy_session *s, const char *what, int err)
{
	close_side(s, SIDE_UPSTREAM);
	if (s->state == SESSION_CLOSING) /* shutdown began meanwhile */
		return finish(s);
	if (s->addr_index + 1 < s->proxy->upstream_addr_count) {
		s->addr_index++;
		return connect_upstream(s);
	}
	upstream_failed(s, what, strerror(err));
	return 0;
}

static int connect_upstream(struct proxy_session *s)
{
	struct proxy *p = s->proxy;
	int err = 0;

	arm_timer(s, p->config.connect_timeout_s);
	s->stream[SIDE_UPSTREAM] =
		proxy_stream_connect(p->base, (struct sockaddr *)&p->upstream_addr[s->addr_index],
				     p->upstream_addr_len[s->addr_index], on_upstream, s, &err);
	if (s->stream[SIDE_UPSTREAM] == NULL) {
		proxy_out_of_resources(p, err);
		return connect_failed(s, "cannot be reached", err ? err : ECONNREFUSED);
	}
	return 0;
}

static void relaying(struct proxy_session *s)
{
	evtimer_del(s->timer);
	imap_conv_connected(s->conv, proxy_now());
	if (s->greeting != NULL && s->stream[SIDE_CLIENT] != NULL) {
		/* the greeting read before STARTTLS goes to the client first */
		size_t len = evbuffer_get_length(s->greeting), m;
		unsigned char *p = evbuffer_pullup(s->greeting, -1);
		uint8_t edited[LINE_MODE_MAX + 16];

		m = len <= LINE_MODE_MAX
			    ? imap_capability_edit(p, len, capability_edits(s), edited, sizeof(edited))
			    : 0;
		if (m > 0) {
			imap_conv_feed(s->conv, IMAP_S2C, s->greeting_ts, IMAP_ORIGIN_PROXY, edited, m);
			evbuffer_drain(s->greeting, len);
			evbuffer_add(s->greeting, edited, m);
		} else {
			imap_conv_feed(s->conv, IMAP_S2C, s->greeting_ts, IMAP_ORIGIN_PEER, p, len);
		}
		s->bytes[IMAP_S2C] += evbuffer_get_length(s->greeting);
		evbuffer_add_buffer(proxy_stream_output(s->stream[SIDE_CLIENT]), s->greeting);
		proxy_stream_flush(s->stream[SIDE_CLIENT]);
	}
	s->state = SESSION_RELAYING;
	proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], true);
	proxy_stream_set_reading(s->stream[SIDE_CLIENT], true);
	if (s->faults != NULL)
		proxy_faults_start(s->faults, proxy_now());
	arm_rules(s, proxy_now());
}

static void tls_report(struct proxy_session *s, enum side side)
{
	SSL *ssl = proxy_stream_ssl(s->stream[side]);
	char peer[600] = "";
	const char *sni = NULL;
	struct capture_tls_info info = {
		.leg = side == SIDE_UPSTREAM ? "upstream" : "client",
		.version = SSL_get_version(ssl),
		.cipher = SSL_get_cipher_name(ssl),
		.peer = peer,
	};

	if (side == SIDE_UPSTREAM) {
		proxy_tls_peer_summary(ssl, peer, sizeof(peer));
		sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		info.verified = !s->proxy->config.insecure_upstream;
	} else {
		sni = s->client_sni;
	}
	info.sni = sni != NULL ? sni : "";
	capture_sinks_tls(s->proxy->sinks, s->id, proxy_now(), &info);
}

/* Gives the paused client handshake its certificate and lets it go on. */
static void resume_client_tls(struct proxy_session *s)
{
	struct proxy *p = s->proxy;
	SSL *ssl = proxy_stream_ssl(s->stream[SIDE_CLIENT]);
	char *names[17];
	size_t n = 0;
	char err[512] = "", notice[1024];

	if (p->ca != NULL) {
		X509 *cert;
		bool usable = false;

		if (s->client_sni[0] != '\0' && (names[n] = strdup(s->client_sni)) != NULL)
			n++;
		if (s->stream[SIDE_UPSTREAM] != NULL &&
		    proxy_stream_ssl(s->stream[SIDE_UPSTREAM]) != NULL)
			n += proxy_tls_peer_names(proxy_stream_ssl(s->stream[SIDE_UPSTREAM]),
						  names + n, 16 - n);
		for (size_t i = 0; i < n && !usable; i++)
			usable = proxy_ca_name_check(names[i], NULL) != PROXY_CA_NAME_BAD;
		if (!usable && (names[n] = strdup(p->config.sni ? p->config.sni
							       : p->config.upstream.host)) != NULL)
			n++;
		/* peer names a certificate cannot carry are left out, and said */
		cert = proxy_ca_forge(p->ca, (const char *const *)names, n, notice, sizeof(notice),
				      err, sizeof(err));
		if (notice[0] != '\0')
			capture_sinks_notice(p->sinks, s->id, proxy_now(), notice);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		if (cert == NULL || SSL_use_certificate(ssl, cert) != 1 ||
		    SSL_use_PrivateKey(ssl, proxy_ca_leaf_key(p->ca)) != 1) {
			capture_sinks_notice(p->sinks, s->id, proxy_now(),
					     "cannot make a certificate for the client");
			set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "no certificate for the client: %s", err);
			close_side(s, SIDE_CLIENT);
			finish(s);
			return;
		}
	}
	SSL_set_app_data(ssl, s);
	proxy_stream_tls_resume(s->stream[SIDE_CLIENT]);
}

/* The upstream leg carries IMAP now. */
static void upstream_up(struct proxy_session *s)
{
	s->upstream_ready = 1;
	if (s->client_ready)
		relaying(s);
	else
		resume_client_tls(s);
}

static void connected(struct proxy_session *s)
{
	struct proxy *p = s->proxy;

	s->tcp_up = 1;
	if (p->upstream_ctx == NULL) {
		upstream_up(s);
		return;
	}
	if (p->config.upstream_tls == PROXY_TLS_STARTTLS) {
		s->starttls = STARTTLS_GREETING;
		proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], true);
		return;
	}
	start_upstream_tls(s);
}

static void start_upstream_tls(struct proxy_session *s)
{
	struct proxy *p = s->proxy;
	const char *name = p->config.sni ? p->config.sni : p->config.upstream.host;
	const char *sni = name;
	SSL *ssl;

	/* the client's SNI goes upstream when it is a host name */
	if (s->client_sni[0] != '\0' &&
	    proxy_ca_name_check(s->client_sni, NULL) == PROXY_CA_NAME_DNS)
		sni = s->client_sni;
	ssl = proxy_tls_upstream_ssl(p->upstream_ctx, sni, name, p->config.insecure_upstream);
	if (ssl == NULL) {
		upstream_failed(s, "TLS", "out of memory");
		return;
	}
	proxy_stream_start_tls(s->stream[SIDE_UPSTREAM], ssl, false);
}

static void client_tls_failed(struct proxy_session *s)
{
	char notice[900];
	const char *why = proxy_stream_error_text(s->stream[SIDE_CLIENT]);

	if (s->proxy->ca != NULL)
		snprintf(notice, sizeof(notice),
			 "client TLS handshake failed: %s; if the client does not trust imaptap's "
			 "certificate, make it trust %s",
			 why, proxy_ca_cert_path(s->proxy->ca));
	else
		snprintf(notice, sizeof(notice), "client TLS handshake failed: %s", why);
	capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(), notice);
	set_closed_by(s, CAPTURE_SIDE_CLIENT, CAPTURE_END_ERROR, "TLS handshake failed: %s", why);
	close_side(s, SIDE_CLIENT);
	close_side(s, SIDE_UPSTREAM);
	finish(s);
}

static void client_handshake_timed_out(struct proxy_session *s)
{
	char notice[200];

	snprintf(notice, sizeof(notice),
		 "client TLS handshake timed out after %u s: the client sent no (complete) "
		 "handshake; is it speaking TLS to this port?",
		 s->proxy->config.connect_timeout_s);
	capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(), notice);
	set_closed_by(s, CAPTURE_SIDE_CLIENT, CAPTURE_END_ERROR, "TLS handshake timed out");
	close_side(s, SIDE_CLIENT);
	close_side(s, SIDE_UPSTREAM);
	finish(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_session *s = arg;

	(void)fd;
	(void)what;
	switch (s->state) {
	case SESSION_CONNECTING:
		if (s->stream[SIDE_UPSTREAM] == NULL && !s->client_ready) {
			/* still waiting for the client's ClientHello */
			client_handshake_timed_out(s);
		} else if (!s->tcp_up) {
			connect_failed(s, "did not answer the TCP connection", ETIMEDOUT);
		} else if (!s->upstream_ready) {
			char why[200];

			snprintf(why, sizeof(why), "no answer within %u s%s",
				 s->proxy->config.connect_timeout_s,
				 s->starttls == STARTTLS_GREETING ? " (waiting for the greeting)"
				 : s->starttls == STARTTLS_ANSWER ? " (waiting for the answer to STARTTLS)"
				 : "; is the server speaking TLS on this port? (see --upstream-tls)");
			upstream_failed(s, s->starttls != STARTTLS_OFF ? "STARTTLS failed"
								       : "TLS handshake failed",
					why);
		} else {
			client_handshake_timed_out(s);
		}
		return;

	case SESSION_RELAYING:
		if (s->client_handshaking) {
			client_handshake_timed_out(s);
			return;
		}
		/* one side left and the other has not followed */
		set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_HALF_CLOSED, "half-closed for %u s", s->proxy->config.linger_s);
		finish(s);
		return;
	case SESSION_CLOSING:
		/* a peer does not take what is queued for it: give up on it */
		close_side(s, SIDE_CLIENT);
		close_side(s, SIDE_UPSTREAM);
		reap(s);
		return;
	}
}

static void pass_eof(struct proxy_session *s, enum side side);

static void side_eof(struct proxy_session *s, enum side side)
{
	s->read_eof[side] = 1;
	if (s->state == SESSION_CLOSING) {
		reap(s);
		return;
	}
	set_closed_by(s, side_party[side], CAPTURE_END_EOF, "EOF");
	if (s->faults != NULL && proxy_faults_queued(s->faults, dir_from(side)) > 0) {
		/* a fault still holds bytes of this side: the FIN follows them */
		s->eof_deferred[side] = true;
		proxy_faults_eof(s->faults, dir_from(side));
		return;
	}
	pass_eof(s, side);
}

/* side's FIN goes on to the other side once everything before it did. */
static void pass_eof(struct proxy_session *s, enum side side)
{
	if (s->read_eof[!side] || s->stream[!side] == NULL) {
		finish(s);
		return;
	}
	/* half close: pass the FIN on once the other side is flushed */
	proxy_stream_shutdown_write(s->stream[!side]);
	arm_timer(s, s->proxy->config.linger_s);
}

static void side_error(struct proxy_session *s, enum side side, int err)
{
	set_closed_by(s, side_party[side], err == ECONNRESET ? CAPTURE_END_RESET : CAPTURE_END_ERROR,
		      "%s",
		      err == ECONNRESET ? "reset" : err ? strerror(err) : "error");
	close_side(s, side);
	finish(s);
}

static void on_event(struct proxy_session *s, enum side side, enum proxy_stream_event event)
{
	switch (event) {
	case PROXY_STREAM_READ:
		relay(s, side);
		return;
	case PROXY_STREAM_DRAINED:
		drained(s, side);
		return;
	case PROXY_STREAM_EOF:
		side_eof(s, side);
		return;
	case PROXY_STREAM_ERROR:
		if (s->state == SESSION_CONNECTING && side == SIDE_UPSTREAM && !s->tcp_up) {
			connect_failed(s, "refused the connection",
				       proxy_stream_error(s->stream[side]));
		} else if (s->state == SESSION_CONNECTING && side == SIDE_UPSTREAM) {
			char why[1200], peer[600];

			proxy_tls_peer_summary(proxy_stream_ssl(s->stream[side]), peer, sizeof(peer));
			snprintf(why, sizeof(why), "%s (expected name %s)%s%s",
				 proxy_stream_error_text(s->stream[side]),
				 s->proxy->config.sni ? s->proxy->config.sni
						      : s->proxy->config.upstream.host,
				 peer[0] ? "; server certificate " : "", peer);
			upstream_failed(s, "TLS handshake failed", why);
		} else if (side == SIDE_CLIENT &&
			   (s->state == SESSION_CONNECTING || s->client_handshaking)) {
			client_tls_failed(s);
		} else {
			side_error(s, side, proxy_stream_error(s->stream[side]));
		}
		return;
	case PROXY_STREAM_CONNECTED:
		connected(s);
		return;
	case PROXY_STREAM_TLS_HELLO:
		/* the client's ClientHello: learn its SNI, then reach the upstream */
		proxy_tls_hello_sni(proxy_stream_ssl(s->stream[side]), s->client_sni,
				    sizeof(s->client_sni));
		if (s->upstream_ready)
			resume_client_tls(s); /* STARTTLS: the upstream is up already */
		else
			connect_upstream(s);
		return;
	case PROXY_STREAM_TLS_READY:
		tls_report(s, side);
		if (side == SIDE_UPSTREAM) {
			upstream_up(s);
			return;
		}
		s->client_ready = 1;
		s->client_tls_on = 1;
		if (s->client_handshaking) {
			/* STARTTLS done: relaying goes on, now encrypted */
			s->client_handshaking = 0;
			evtimer_del(s->timer);
			s->line_mode[SIDE_CLIENT] = 0;
			proxy_stream_set_reading(s->stream[SIDE_CLIENT], true);
			return;
		}
		if (s->pending_bye != NULL) {
			send_bye(s, s->pending_bye);
			finish(s);
		} else if (s->upstream_ready) {
			relaying(s);
		}
		return;
	}
}

static void on_client(struct proxy_stream *stream, enum proxy_stream_event event, void *arg)
{
	(void)stream;
	on_event(arg, SIDE_CLIENT, event);
}

static void on_upstream(struct proxy_stream *stream, enum proxy_stream_event event, void *arg)
{
	(void)stream;
	on_event(arg, SIDE_UPSTREAM, event);
}

/* ---- what the session does for its faults (proxy/fault.h) ---- */

static enum side receiver(enum imap_dir dir)
{
	return dir == IMAP_C2S ? SIDE_UPSTREAM : SIDE_CLIENT;
}

static void fault_release(void *ctx, enum imap_dir dir, enum imap_origin origin,
			  struct evbuffer *from, size_t len, bool forward)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *dst = s->stream[receiver(dir)];

	if (len == 0)
		return;
	observe(s, dir, from, len, origin, proxy_now());
	s->bytes[dir] += len;
	if (forward && dst != NULL)
		evbuffer_remove_buffer(from, proxy_stream_output(dst), len);
	else
		evbuffer_drain(from, len);
	arm_rules(s, proxy_now());
}

static void fault_inject(void *ctx, const char *text, size_t len)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *client = s->stream[SIDE_CLIENT];

	/* plain text inside a compressed stream would corrupt it */
	if (client == NULL || imap_conv_compressed(s->conv))
		return;
	imap_conv_feed(s->conv, IMAP_S2C, proxy_now(), IMAP_ORIGIN_PROXY, (const uint8_t *)text, len);
	evbuffer_add(proxy_stream_output(client), text, len);
	s->bytes[IMAP_S2C] += len;
	proxy_stream_flush(client);
}

static void fault_flush(void *ctx, enum imap_dir dir)
{
	struct proxy_session *s = ctx;
	enum side dst = receiver(dir), src = !dst;

	if (s->stream[dst] != NULL)
		proxy_stream_flush(s->stream[dst]);
	if (s->state == SESSION_RELAYING && s->throttled[src] &&
	    queued_toward(s, dst) <= PROXY_HIGH_WATER / 2) {
		s->throttled[src] = 0;
		if (s->stream[dst] != NULL)
			proxy_stream_set_low_water(s->stream[dst], 0);
		if (may_read(s, src))
			proxy_stream_set_reading(s->stream[src], true);
	}
	imap_conv_trim(s->conv);
	capture_sinks_flush(s->proxy->sinks);
}

static void fault_set_reading(void *ctx, bool client, bool on)
{
	struct proxy_session *s = ctx;
	enum side side = client ? SIDE_CLIENT : SIDE_UPSTREAM;

	if (s->stream[side] == NULL)
		return;
	if (!on)
		proxy_stream_set_reading(s->stream[side], false);
	else if (s->state == SESSION_RELAYING && may_read(s, side))
		proxy_stream_set_reading(s->stream[side], true);
}

static void fault_set_split(void *ctx, enum imap_dir dir, struct imap_split *split)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *dst = s->stream[receiver(dir)];

	if (dst != NULL)
		proxy_stream_set_split(dst, split);
}

static void fault_eof(void *ctx, enum imap_dir dir)
{
	struct proxy_session *s = ctx;
	enum side side = dir == IMAP_C2S ? SIDE_CLIENT : SIDE_UPSTREAM;

	if (!s->eof_deferred[side])
		return;
	s->eof_deferred[side] = false;
	if (s->state == SESSION_CLOSING)
		reap(s);
	else
		pass_eof(s, side);
}

static void fault_close(void *ctx, const char *why)
{
	struct proxy_session *s = ctx;

	set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "%s", why);
	finish(s);
}

static void fault_mark(void *ctx, const struct capture_fault_mark *mark)
{
	struct proxy_session *s = ctx;

	capture_sinks_fault(s->proxy->sinks, s->id, mark);
	capture_sinks_flush(s->proxy->sinks);
}

static const struct proxy_fault_host fault_host = {
	.release = fault_release,
	.inject = fault_inject,
	.flush = fault_flush,
	.set_reading = fault_set_reading,
	.set_split = fault_set_split,
	.eof = fault_eof,
	.close = fault_close,
	.mark = fault_mark,
};

/* Where the client connected: the server's address as the client saw it. */
static void local_address(int fd, struct capture_endpoint *e)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	memset(e, 0, sizeof(*e));
	if (getsockname(fd, (struct sockaddr *)&local, &len) == 0)
		capture_endpoint_from_sockaddr((struct sockaddr *)&local, e);
}

static const char *leg_name(bool tls, enum proxy_tls_mode mode)
{
	return !tls ? "plain" : mode == PROXY_TLS_STARTTLS ? "STARTTLS" : "TLS";
}

int proxy_session_start(struct proxy *p, int fd, const struct sockaddr *client,
			socklen_t client_len)
{
	struct proxy_session *s = calloc(1, sizeof(*s));
	struct imap_conv_config conv = {
		.max_line = p->config.max_line,
		.redact_flags = p->config.redact_flags,
		.on_event = on_conv_event,
		.on_bytes = on_conv_bytes,
		.rules = !p->config.no_rules,
		.thresholds = p->config.thresholds,
	};
	bool fault_oom = false;
	SSL *ssl;

	(void)client_len;
	if (s == NULL) {
		proxy_log(p, "out of memory for a new session; closing the client");
		evutil_closesocket(fd);
		return -1;
	}
	s->proxy = p;
	s->id = ++p->next_id;
	s->state = SESSION_CONNECTING;
	s->conv = imap_conv_new(&conv, on_observation, s);
	s->rules_at = -1;
	if (!p->config.no_rules)
		s->rules_timer = evtimer_new(p->base, on_rules_timer, s);
	s->stream[SIDE_CLIENT] = proxy_stream_new(p->base, fd, on_client, s);
	if (p->config.fault_count > 0) {
		bool none;

		s->faults = proxy_faults_new(p->base, p->config.faults, p->config.fault_count, s->id,
					     &fault_host, s, &none);
		fault_oom = s->faults == NULL && !none;
	}
	if (s->conv == NULL || s->stream[SIDE_CLIENT] == NULL || fault_oom) {
		proxy_log(p, "out of memory for session #%u; closing the client", s->id);
		if (s->stream[SIDE_CLIENT] == NULL)
			evutil_closesocket(fd);
		close_side(s, SIDE_CLIENT);
		imap_conv_free(&s->conv);
		proxy_faults_free(&s->faults);
		free(s);
		return -1;
	}
	/* the client is read only once the upstream answers, so that nothing
	 * it sends is taken and lost if the upstream cannot be reached */
	TAILQ_INSERT_TAIL(&p->sessions, s, link);
	p->session_count++;
	s->info.id = s->id;
	s->info.ts = proxy_now();
	capture_endpoint_from_sockaddr(client, &s->info.client);
	capture_endpoint_from_sockaddr((const struct sockaddr *)&p->upstream_addr[0],
				       &s->info.upstream);
	local_address(fd, &s->info.local);
	if (p->client_ctx == NULL && p->upstream_ctx == NULL)
		snprintf(s->legs, sizeof(s->legs), "plain");
	else
		snprintf(s->legs, sizeof(s->legs), "client %s, upstream %s",
			 leg_name(p->client_ctx != NULL, p->config.client_tls),
			 leg_name(p->upstream_ctx != NULL, p->config.upstream_tls));
	s->info.upstream_tls = s->legs;
	capture_sinks_open(p->sinks, &s->info);
	s->line_mode[SIDE_UPSTREAM] = 1;
	s->line_mode[SIDE_CLIENT] = p->config.client_tls == PROXY_TLS_STARTTLS;
	if (p->client_ctx == NULL || p->config.client_tls == PROXY_TLS_STARTTLS) {
		s->client_ready = 1;
		connect_upstream(s);
		return 0;
	}
	ssl = SSL_new(p->client_ctx);
	if (ssl == NULL) {
		set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "out of memory for TLS");
		finish(s);
		return -1;
	}
	arm_timer(s, p->config.connect_timeout_s);
	proxy_stream_start_tls(s->stream[SIDE_CLIENT], ssl, true);
	return 0;
}

void proxy_session_stop_all(struct proxy *p, const char *reason)
{
	struct proxy_session *s, *next;

	for (s = TAILQ_FIRST(&p->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		if (reason == NULL) {
			set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_SHUTDOWN, "stopped");
			session_free(s);
			continue;
		}
		set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_SHUTDOWN, "%s", reason);
		if (s->state == SESSION_CONNECTING)
			close_side(s, SIDE_UPSTREAM);
		finish(s);
	}
}
