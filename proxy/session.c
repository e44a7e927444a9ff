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

#include "capture/escape.h"
#include "imap/capability.h"
#include "imap/framer.h"
#include "proxy/fault.h"
#include "proxy/internal.h"
#include "proxy/stream.h"

enum side {
	SIDE_CLIENT = 0,
	SIDE_UPSTREAM = 1,
};

static const enum capture_side side_party[2] = {CAPTURE_SIDE_CLIENT, CAPTURE_SIDE_SERVER};

struct proxy_session;

/* What a unit seen in line mode asks the session to do once the framer
 * has returned (it may end the session or switch the leg to TLS). */
enum line_action {
	LINE_ACTION_NONE,
	LINE_ACTION_STARTTLS,  /* the client's STARTTLS: answered here */
	LINE_ACTION_PREAUTH,   /* a PREAUTH greeting while the client leg waits for STARTTLS */
	LINE_ACTION_TOO_LONG,  /* a client line over LINE_MODE_MAX before its TLS */
};

/* Before authentication each side is relayed unit by unit as the imap
 * framer cuts it (lines, literal announcements, literal data), so that
 * capability lists are edited and the client's STARTTLS, LOGIN and
 * AUTHENTICATE answered however many literals come first. A unit's bytes
 * stay at the front of the input until the unit is complete. */
struct line_relay {
	struct proxy_session *s;
	int side;                  /* enum side */
	struct imap_framer *framer;
	size_t fed;                /* input bytes given to the framer and not yet passed on */
	uint64_t ahead;            /* bytes of the current literal passed on before its unit */
	int refusing;              /* a LOGIN/AUTHENTICATE in clear: swallowed to its end */
	char tag[200];             /* its tag, for the NO */
	size_t tag_len;
	enum line_action action;
	uint8_t *action_line;      /* the line the action is about */
	size_t action_len;
};

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
		STARTTLS_CAPABILITY, /* over TLS: CAPABILITY sent, waiting for its answer */
	} starttls;
	char *tls_caps;            /* upstream STARTTLS: the capabilities sent over TLS */
	struct evbuffer *greeting; /* the greeting imaptap made, shown to the client later */
	int greeting_seen;         /* a greeting went to the client */
	int line_mode[2];       /* before login: relay unit by unit (capability edits,
				   the client's STARTTLS, LOGIN refused in clear) */
	struct line_relay lines[2];
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
	    (c->keyword == IMAP_KW_LOGIN || c->keyword == IMAP_KW_AUTHENTICATE))
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
	free(s->tls_caps);
	for (int i = 0; i < 2; i++) {
		imap_framer_free(&s->lines[i].framer);
		free(s->lines[i].action_line);
	}
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
static void trailing_data(struct proxy_session *s, enum imap_dir dir, size_t n)
{
	struct imap_anomaly a;

	imap_anomaly_make(&a, IMAP_RULE_STARTTLS_TRAILING_DATA, proxy_now(), NULL, 0,
			  "%zu byte(s) from %s and before TLS; dropped, never passed on", n,
			  dir == IMAP_C2S ? "the client after STARTTLS"
					  : "the server after its STARTTLS OK");
	/* counted in the session's summary like any other finding */
	imap_conv_anomaly(s->conv, dir, &a);
}

#define LINE_MODE_MAX 8192

static void start_upstream_tls(struct proxy_session *s);
static void upstream_up(struct proxy_session *s);
static void upstream_failed(struct proxy_session *s, const char *what, const char *why);
static void send_bye(struct proxy_session *s, const char *bye);

/* A notice that quotes a peer's line, made printable (capture/escape.h):
 * peer words reach the timeline and the event log this way only. */
static void notice_quoting(struct proxy_session *s, const char *words, const char *line,
			   size_t len)
{
	char esc[420], notice[700];
	size_t used = 0;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	capture_escape(esc, sizeof(esc), line, len, 0, &used);
	snprintf(notice, sizeof(notice), "%s '%s'%s", words, esc, used < len ? "..." : "");
	capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(), notice);
}

/* A server line read by the proxy itself, as the classifier sees it. */
static struct imap_line_info server_line(const char *line, size_t n)
{
	struct imap_line_info info;

	imap_classify(IMAP_S2C, (const uint8_t *)line, n, false, false, &info);
	return info;
}

static bool is_untagged(const struct imap_line_info *info, enum imap_status status)
{
	return info->cls == IMAP_LINE_UNTAGGED && info->status == status;
}

/* The tagged completion of one of the proxy's own commands, by its tag. */
static bool answers(const struct imap_line_info *info, const char *tag)
{
	return info->cls == IMAP_LINE_TAGGED && imap_slice_eq(info->tag, tag);
}

/* Over TLS the proxy asks for the capabilities again (IMAP-NOTES section
 * 7: nothing read in clear is trusted) and makes the client's greeting
 * from the answer. Returns 1 when the greeting is made, 0 when more lines
 * are needed, -1 when the session failed (it may be gone). */
static int upstream_tls_capability(struct proxy_session *s, char *line, size_t n)
{
	struct imap_line_info info = server_line(line, n);
	size_t start, end;
	char *cut;

	if (info.cls == IMAP_LINE_UNTAGGED) {
		if (info.keyword == IMAP_KW_CAPABILITY &&
		    imap_capability_list((const uint8_t *)line, n, &start, &end) && s->tls_caps == NULL)
			s->tls_caps = strndup(line + start, end - start);
		else if (is_untagged(&info, IMAP_STATUS_BYE))
			notice_quoting(s, "upstream said over TLS:", line, n);
		return 0; /* other untagged data before the answer is not for the client */
	}
	if (!answers(&info, "imaptap1") || info.status != IMAP_STATUS_OK) {
		notice_quoting(s, "upstream answered CAPABILITY over TLS:", line, n);
		upstream_failed(s, "STARTTLS", "the server did not answer CAPABILITY over TLS with OK");
		return -1;
	}
	if (s->tls_caps == NULL && imap_capability_list((const uint8_t *)line, n, &start, &end))
		s->tls_caps = strndup(line + start, end - start);
	if (s->tls_caps == NULL) {
		notice_quoting(s, "upstream answered CAPABILITY over TLS:", line, n);
		upstream_failed(s, "STARTTLS", "the server sent no capabilities over TLS");
		return -1;
	}
	/* the list goes inside a response code: it cannot close it */
	if ((cut = strchr(s->tls_caps, ']')) != NULL)
		*cut = '\0';
	notice_quoting(s, "upstream STARTTLS: sent 'imaptap1 CAPABILITY' over TLS, capabilities:",
		       s->tls_caps, strlen(s->tls_caps));
	s->greeting = evbuffer_new();
	if (s->greeting == NULL ||
	    evbuffer_add_printf(s->greeting, "* OK [CAPABILITY %s] imaptap: server ready over TLS\r\n",
				s->tls_caps) < 0) {
		upstream_failed(s, "STARTTLS", "out of memory");
		return -1;
	}
	s->greeting_ts = proxy_now();
	return 1;
}

/* Upstream STARTTLS, done by the proxy before the client's first byte:
 * check the greeting is * OK, send STARTTLS, and on its tagged OK start
 * TLS; then ask for the capabilities over TLS. Nothing the server said in
 * clear reaches the client (it is quoted in notices only). Server bytes
 * after the OK's CRLF would be plaintext injected into the TLS session
 * (IMAP-NOTES section 7): they are dropped. */
static void upstream_starttls_read(struct proxy_session *s)
{
	static const char command[] = "imaptap0 STARTTLS\r\n";
	struct imap_line_info answer;
	struct evbuffer *input = proxy_stream_input(s->stream[SIDE_UPSTREAM]);

	for (;;) {
		size_t n = 0;
		char *line = evbuffer_readln(input, &n, EVBUFFER_EOL_CRLF);

		if (line == NULL) {
			if (evbuffer_get_length(input) > LINE_MODE_MAX)
				upstream_failed(s, "STARTTLS", "a line over 8 KiB before the session began");
			return;
		}
		if (s->starttls == STARTTLS_CAPABILITY) {
			int made = upstream_tls_capability(s, line, n);

			free(line);
			if (made < 0)
				return;
			if (made == 0)
				continue;
			s->starttls = STARTTLS_OFF;
			upstream_up(s);
			return;
		}
		if (s->starttls == STARTTLS_GREETING) {
			notice_quoting(s, "upstream greeting before TLS (not shown to the client):", line, n);
			struct imap_line_info greeting = server_line(line, n);

			if (!is_untagged(&greeting, IMAP_STATUS_OK)) {
				const char *why =
					is_untagged(&greeting, IMAP_STATUS_PREAUTH)
						? "the greeting before TLS was PREAUTH (already "
						  "authenticated, so TLS cannot be started); no "
						  "plaintext session"
					: is_untagged(&greeting, IMAP_STATUS_BYE)
						? "the server refused the connection (BYE before TLS)"
						: "the greeting before TLS was not * OK";

				free(line);
				upstream_failed(s, "STARTTLS", why);
				return;
			}
			free(line);
			evbuffer_add(proxy_stream_output(s->stream[SIDE_UPSTREAM]), command,
				     sizeof(command) - 1);
			proxy_stream_flush(s->stream[SIDE_UPSTREAM]);
			s->starttls = STARTTLS_ANSWER;
			continue;
		}
		answer = server_line(line, n);
		if (!answers(&answer, "imaptap0")) {
			free(line); /* untagged data before the answer */
			continue;
		}
		if (answer.status != IMAP_STATUS_OK) {
			notice_quoting(s, "upstream answered STARTTLS:", line, n);
			free(line);
			upstream_failed(s, "STARTTLS", "the server refused STARTTLS");
			return;
		}
		notice_quoting(s, "upstream STARTTLS: sent 'imaptap0 STARTTLS', server answered", line, n);
		free(line);
		if (evbuffer_get_length(input) > 0) {
			trailing_data(s, IMAP_S2C, evbuffer_get_length(input));
			evbuffer_drain(input, evbuffer_get_length(input));
		}
		s->starttls = STARTTLS_CAPABILITY;
		proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], false);
		start_upstream_tls(s);
		return;
	}
}

static unsigned capability_edits(const struct proxy_session *s)
{
	const struct proxy_config *c = &s->proxy->config;
	unsigned edits = 0;

	if (c->client_tls == PROXY_TLS_STARTTLS && !s->client_tls_on)
		edits |= IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED;
	else
		edits |= IMAP_CAP_REMOVE_STARTTLS;
	if (c->client_tls == PROXY_TLS_NONE)
		edits |= IMAP_CAP_REMOVE_LOGINDISABLED;
	return edits;
}

static int is_starttls_command(const uint8_t *line, size_t n)
{
	struct imap_line_info info;

	imap_classify(IMAP_C2S, line, n, false, false, &info);
	return info.cls == IMAP_LINE_COMMAND && info.keyword == IMAP_KW_STARTTLS &&
	       info.args.len == 0 && !info.uid;
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
		trailing_data(s, IMAP_C2S, evbuffer_get_length(input));
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

/* The first len bytes of from go on toward the other side as they are:
 * observed and queued, or handed to the session's faults. */
static void pass_bytes(struct proxy_session *s, enum imap_dir dir, struct evbuffer *from,
		       size_t len, struct evbuffer *out)
{
	if (len == 0)
		return;
	if (s->faults != NULL) {
		proxy_faults_take(s->faults, dir, IMAP_ORIGIN_PEER, from, len, proxy_now());
		return;
	}
	observe(s, dir, from, len, IMAP_ORIGIN_PEER, proxy_now());
	evbuffer_remove_buffer(from, out, len);
	s->bytes[dir] += len;
}

/* The command word of a client line "tag SP word ...", case-insensitive. */
static bool command_is(const uint8_t *line, size_t n, const char *word, size_t *tag_len_r)
{
	const uint8_t *sp = memchr(line, ' ', n);
	size_t w = strlen(word), rest;

	if (sp == NULL || sp == line)
		return false;
	*tag_len_r = (size_t)(sp - line);
	rest = n - *tag_len_r - 1;
	if (rest < w || strncasecmp((const char *)sp + 1, word, w) != 0)
		return false;
	return rest == w || sp[1 + w] == ' ' || sp[1 + w] == '\r' || sp[1 + w] == '\n';
}

/* A credential sent in clear on a client leg that waits for STARTTLS is
 * not passed on: the proxy answers NO (RFC 9051 PRIVACYREQUIRED). */
static void refuse_in_clear(struct proxy_session *s, struct line_relay *lr)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	char no[320];
	int len;

	lr->refusing = 0;
	len = snprintf(no, sizeof(no),
		       "%.*s NO [PRIVACYREQUIRED] imaptap: use STARTTLS first; credentials are not "
		       "sent in clear\r\n",
		       (int)lr->tag_len, lr->tag);
	imap_conv_feed(s->conv, IMAP_S2C, proxy_now(), IMAP_ORIGIN_PROXY, (const uint8_t *)no,
		       (size_t)len);
	evbuffer_add(proxy_stream_output(client), no, (size_t)len);
	s->bytes[IMAP_S2C] += (size_t)len;
	capture_sinks_notice(s->proxy->sinks, s->id, proxy_now(),
			     "client sent credentials in clear before STARTTLS; not passed on, "
			     "answered NO [PRIVACYREQUIRED]");
}

static bool client_waits_for_tls(const struct proxy_session *s)
{
	return s->proxy->config.client_tls == PROXY_TLS_STARTTLS && !s->client_tls_on;
}

/* Asks the session to act once the framer has returned. */
static void line_action(struct line_relay *lr, enum line_action action, const uint8_t *line,
			size_t n)
{
	lr->action = action;
	free(lr->action_line);
	lr->action_line = malloc(n > 0 ? n : 1);
	lr->action_len = lr->action_line != NULL ? n : 0;
	if (lr->action_line != NULL)
		memcpy(lr->action_line, line, n);
	imap_framer_stop(lr->framer);
}

static void client_unit(struct line_relay *lr, const struct imap_unit *u, size_t n,
			struct evbuffer *input, struct evbuffer *out)
{
	struct proxy_session *s = lr->s;
	size_t tag_len = 0;
	bool head = u->kind != IMAP_UNIT_LITERAL_DATA && !(u->flags & IMAP_UNIT_CONTINUED);

	if (!client_waits_for_tls(s)) {
		pass_bytes(s, IMAP_C2S, input, n, out);
		return;
	}
	if (head && u->kind == IMAP_UNIT_LINE && !(u->flags & IMAP_UNIT_TRUNCATED) &&
	    is_starttls_command(u->data, u->len)) {
		evbuffer_drain(input, n);
		line_action(lr, LINE_ACTION_STARTTLS, u->data, u->len);
		return;
	}
	if (head && (command_is(u->data, u->len, "LOGIN", &tag_len) ||
		     command_is(u->data, u->len, "AUTHENTICATE", &tag_len))) {
		lr->refusing = 1;
		lr->tag_len = tag_len < sizeof(lr->tag) ? tag_len : sizeof(lr->tag);
		memcpy(lr->tag, u->data, lr->tag_len);
	}
	if (!lr->refusing) {
		pass_bytes(s, IMAP_C2S, input, n, out);
		return;
	}
	/* seen (masked) on the client leg, never sent upstream */
	observe(s, IMAP_C2S, input, n, IMAP_ORIGIN_PEER, proxy_now());
	evbuffer_drain(input, n);
	if (u->kind == IMAP_UNIT_LINE) {
		refuse_in_clear(s, lr);
	} else if (u->kind == IMAP_UNIT_LITERAL_HEAD && !(u->flags & IMAP_UNIT_LITERAL_NONSYNC)) {
		/* no "+": the NO ends the command and no literal follows */
		refuse_in_clear(s, lr);
		imap_framer_cancel_literal(lr->framer);
	}
}

static void upstream_unit(struct line_relay *lr, const struct imap_unit *u, size_t n,
			  struct evbuffer *input, struct evbuffer *out)
{
	struct proxy_session *s = lr->s;
	size_t m;
	uint8_t line[LINE_MODE_MAX], edited[LINE_MODE_MAX + IMAP_CAPABILITY_EDIT_GROWTH];
	bool whole = u->kind == IMAP_UNIT_LINE && !(u->flags & IMAP_UNIT_TRUNCATED) &&
		     !(u->flags & IMAP_UNIT_CONTINUED) && n <= LINE_MODE_MAX;

	if (whole && !s->greeting_seen) {
		s->greeting_seen = 1;
		if (client_waits_for_tls(s) && n >= 9 &&
		    strncasecmp((const char *)u->data, "* PREAUTH", 9) == 0) {
			/* the client would be logged in before it could start TLS */
			line_action(lr, LINE_ACTION_PREAUTH, u->data, u->len);
			evbuffer_drain(input, n);
			return;
		}
	}
	if (!whole) {
		pass_bytes(s, IMAP_S2C, input, n, out);
		return;
	}
	evbuffer_remove(input, line, n);
	m = imap_capability_edit(line, n, capability_edits(s), edited, sizeof(edited));
	if (m > 0)
		pass_line(s, IMAP_S2C, IMAP_ORIGIN_PROXY, edited, m, out);
	else
		pass_line(s, IMAP_S2C, IMAP_ORIGIN_PEER, line, n, out);
}

static void on_line_unit(void *ctx, const struct imap_unit *u)
{
	struct line_relay *lr = ctx;
	struct proxy_session *s = lr->s;
	enum side side = (enum side)lr->side;
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	struct evbuffer *out = proxy_stream_output(s->stream[!side]);

	size_t n = (size_t)u->wire_len;

	/* the unit's bytes are the first wire_len of the input, less the
	 * literal bytes already passed on as they came */
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		size_t skip = lr->ahead < n ? (size_t)lr->ahead : n;

		lr->ahead -= skip;
		n -= skip;
	}
	lr->fed -= n;
	if (side == SIDE_CLIENT)
		client_unit(lr, u, n, input, out);
	else
		upstream_unit(lr, u, n, input, out);
	if (!in_line_mode(s, side) || s->stream[!side] == NULL)
		imap_framer_stop(lr->framer);
}

/* Before authentication, passes the framer's units one at a time so the
 * proxy can edit capability lists and answer the client's STARTTLS, LOGIN
 * and AUTHENTICATE. Returns 1 when the rest of the input is handled (the
 * client leg switched to TLS, or the session ends), 0 when raw relaying
 * should go on with what is left. */
static int relay_lines(struct proxy_session *s, enum side side)
{
	struct line_relay *lr = &s->lines[side];
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	uint8_t buf[16384];
	enum line_action action;

	if (lr->framer == NULL) {
		lr->s = s;
		lr->side = side;
		lr->framer = imap_framer_new(dir_from(side), LINE_MODE_MAX, on_line_unit, lr);
		if (lr->framer == NULL) {
			s->line_mode[side] = 0;
			return 0;
		}
	}
	while (in_line_mode(s, side) && lr->action == LINE_ACTION_NONE && s->stream[!side] != NULL) {
		size_t have = evbuffer_get_length(input), k, used;
		struct evbuffer_ptr pos;

		if (have <= lr->fed)
			break;
		k = have - lr->fed < sizeof(buf) ? have - lr->fed : sizeof(buf);
		if (evbuffer_ptr_set(input, &pos, lr->fed, EVBUFFER_PTR_SET) != 0 ||
		    evbuffer_copyout_from(input, &pos, buf, k) != (ev_ssize_t)k)
			break;
		lr->fed += k;
		used = imap_framer_feed(lr->framer, buf, k);
		lr->fed -= k - used;
	}
	if (lr->action == LINE_ACTION_NONE && in_line_mode(s, side) && s->stream[!side] != NULL &&
	    lr->fed > 0 && imap_framer_literal_left(lr->framer) > 0) {
		/* literal bytes go on as they come, not when the framer's chunk
		 * is full: what is held is the literal's alone */
		if (lr->refusing) {
			observe(s, dir_from(side), input, lr->fed, IMAP_ORIGIN_PEER, proxy_now());
			evbuffer_drain(input, lr->fed);
		} else {
			pass_bytes(s, dir_from(side), input, lr->fed,
				   proxy_stream_output(s->stream[!side]));
		}
		lr->ahead += lr->fed;
		lr->fed = 0;
	}
	if (lr->action == LINE_ACTION_NONE && in_line_mode(s, side) && lr->fed > LINE_MODE_MAX &&
	    imap_framer_literal_left(lr->framer) == 0) {
		if (side == SIDE_CLIENT && client_waits_for_tls(s))
			line_action(lr, LINE_ACTION_TOO_LONG, (const uint8_t *)"", 0);
		else
			s->line_mode[side] = 0; /* not a line we could edit: relay raw from here */
	}
	if (side == SIDE_CLIENT && s->stream[SIDE_CLIENT] != NULL)
		proxy_stream_flush(s->stream[SIDE_CLIENT]); /* a NO of the proxy's */
	action = lr->action;
	lr->action = LINE_ACTION_NONE;
	switch (action) {
	case LINE_ACTION_NONE:
		return 0;
	case LINE_ACTION_STARTTLS:
		client_starttls(s, lr->action_line, lr->action_len);
		return 1;
	case LINE_ACTION_PREAUTH:
		notice_quoting(s, "upstream greeting (not shown to the client):",
			       (const char *)lr->action_line, lr->action_len);
		upstream_failed(s, "greeting",
				"PREAUTH (already authenticated) while the client has yet to start "
				"TLS; no plaintext session");
		return 1;
	case LINE_ACTION_TOO_LONG:
		set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR,
			      "a client line over 8 KiB before STARTTLS");
		send_bye(s, "* BYE imaptap: a line over 8 KiB before STARTTLS\r\n");
		finish(s);
		return 1;
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
		/* upstream STARTTLS: imaptap's greeting, made from what came over TLS */
		size_t len = evbuffer_get_length(s->greeting), m;
		unsigned char *p = evbuffer_pullup(s->greeting, -1);
		uint8_t edited[LINE_MODE_MAX + IMAP_CAPABILITY_EDIT_GROWTH];

		m = len <= LINE_MODE_MAX
			    ? imap_capability_edit(p, len, capability_edits(s), edited, sizeof(edited))
			    : 0;
		if (m > 0) {
			evbuffer_drain(s->greeting, len);
			evbuffer_add(s->greeting, edited, m);
		}
		len = evbuffer_get_length(s->greeting);
		imap_conv_feed(s->conv, IMAP_S2C, s->greeting_ts, IMAP_ORIGIN_PROXY,
			       evbuffer_pullup(s->greeting, -1), len);
		s->bytes[IMAP_S2C] += len;
		s->greeting_seen = 1;
		evbuffer_add_buffer(proxy_stream_output(s->stream[SIDE_CLIENT]), s->greeting);
		proxy_stream_flush(s->stream[SIDE_CLIENT]);
	}
	s->state = SESSION_RELAYING;
	proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], true);
	proxy_stream_set_reading(s->stream[SIDE_CLIENT], true);
	if (s->faults != NULL)
		proxy_faults_start(s->faults, proxy_now());
	arm_rules(s, proxy_now());
	/* what the server sent over TLS after its CAPABILITY answer */
	if (s->stream[SIDE_UPSTREAM] != NULL &&
	    evbuffer_get_length(proxy_stream_input(s->stream[SIDE_UPSTREAM])) > 0)
		relay(s, SIDE_UPSTREAM);
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
				 : s->starttls == STARTTLS_CAPABILITY
				 ? " (waiting for the answer to CAPABILITY over TLS)"
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
	if (side == SIDE_UPSTREAM && s->starttls != STARTTLS_OFF) {
		upstream_failed(s, "STARTTLS", "the server closed the connection before the session began");
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
		if (side == SIDE_UPSTREAM && s->starttls == STARTTLS_CAPABILITY) {
			static const char command[] = "imaptap1 CAPABILITY\r\n";

			evbuffer_add(proxy_stream_output(s->stream[side]), command, sizeof(command) - 1);
			proxy_stream_flush(s->stream[side]);
			proxy_stream_set_reading(s->stream[side], true);
			return;
		}
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
