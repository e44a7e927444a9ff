/* imaptap export: the capture's sessions, each cut into units by the
 * framer and written by replay/export_render.c, in session order. */
#include "replay/export.h"
#include "replay/export_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "capture/pcap_reader.h"

/* A session's script goes out in pieces once this much is waiting */
#define STREAM_AT (256u * 1024u)

struct xsession {
	unsigned id;
	bool selected;
	bool done;
	struct imap_framer *framer[2];
	struct xbuf unit[2];       /* bytes of the unit in progress, by direction */
	enum imap_dir dir;         /* of the bytes being fed */
	imap_time_us ts;
	imap_time_us close_ts;
	char client[64], server[64];
	bool addressed; /* both addresses are ones a script can name (a port, IPv4 or IPv6) */
	/* the script, and from the first line that announced a literal not
	 * yet complete, the same without announcements: what stands should
	 * the literal never complete (a gap, the end) */
	struct renderer main, shadow;
	bool shadow_on;
	size_t shadow_from;
	uint64_t gap_bytes;
	imap_time_us since, until; /* the window; 0 or less: open */
	bool cut;                  /* something before since was left out */
	bool preambled;            /* its first lines are in the output */
	struct redactor *redact;   /* the exporter's, or NULL */
	struct imap_sens *sens;    /* where the values to redact sit */
};

struct exporter {
	const struct replay_export_options *o;
	struct replay_export_result *result;
	FILE *out;
	struct redactor *redact;    /* --redact, or NULL */
	struct xsession **sessions; /* by id - 1 */
	size_t count, cap;
	unsigned next;              /* the next id to write or skip */
	imap_time_us last_written;  /* the close of the last session written */
	bool failed;                /* out of memory, or out failed */
};

/* Both renderers see every line while the shadow stands. */
static void comment(struct xsession *s, const char *text)
{
	render_comment(&s->main, text);
	if (s->shadow_on)
		render_comment(&s->shadow, text);
}

static void on_tap(void *ctx, const uint8_t *data, size_t len)
{
	struct xsession *s = ctx;

	xbuf_put(&s->unit[s->dir], data, len);
}

/* Whether ts is in the window; the first time something is, a session
 * cut by since starts there. */
static bool in_window(struct xsession *s, imap_time_us ts)
{
	if ((s->since > 0 && ts < s->since) || (s->until > 0 && ts > s->until)) {
		s->cut |= s->since > 0 && ts < s->since;
		return false;
	}
	if (s->cut && !s->main.started) {
		render_init(&s->main, s->since, false);
		render_comment(&s->main, "what came before --since is left out");
	}
	return true;
}

static void on_unit(void *ctx, const struct imap_unit *u)
{
	struct xsession *s = ctx;
	struct xbuf *b = &s->unit[s->dir];
	struct renderer before;

	/* before the window too: where values sit depends on what came before */
	if (s->redact != NULL && b->len > 0)
		redactor_unit(s->redact, s->sens, s->dir, u, (uint8_t *)b->p, b->len);
	if (!in_window(s, s->ts)) {
		b->len = 0;
		return;
	}
	before = s->main;

	render_unit(&s->main, s->dir, s->ts, (const uint8_t *)b->p, b->len, u);
	if (!s->shadow_on && (s->main.owed[0] > 0 || s->main.owed[1] > 0)) {
		/* this unit announced a literal: from here on, a second form */
		s->shadow_on = true;
		s->shadow_from = before.out.len;
		render_init(&s->shadow, s->main.opened, true);
		s->shadow.prev = before.prev;
		s->shadow.started = before.started;
		memcpy(s->shadow.window_closed, before.window_closed, sizeof(before.window_closed));
	}
	if (s->shadow_on)
		render_unit(&s->shadow, s->dir, s->ts, (const uint8_t *)b->p, b->len, u);
	if (s->shadow_on && s->main.owed[0] == 0 && s->main.owed[1] == 0) {
		s->shadow_on = false;
		xbuf_free(&s->shadow.out);
	}
	b->len = 0;
}

/* A literal that will not complete: the lines since its announcement are
 * taken as raw bytes instead, which the script's parser counts nowhere. */
static void give_up_literals(struct xsession *s)
{
	if (!s->shadow_on)
		return;
	s->main.out.len = s->shadow_from;
	xbuf_put(&s->main.out, s->shadow.out.p, s->shadow.out.len);
	s->main.prev = s->shadow.prev;
	s->main.started = s->shadow.started;
	memcpy(s->main.window_closed, s->shadow.window_closed, sizeof(s->main.window_closed));
	memset(s->main.owed, 0, sizeof(s->main.owed));
	memset(s->main.begun, 0, sizeof(s->main.begun));
	s->main.out.failed |= s->shadow.out.failed;
	xbuf_free(&s->shadow.out);
	s->shadow_on = false;
}

/* Bytes of a unit that will not end (a gap, the end): raw, at ts, the
 * moment it is known not to end, as the proxy and compile write such
 * bytes (not when they came: lines that ended since are written already). */
static void flush_partial(struct xsession *s, enum imap_dir dir, imap_time_us ts)
{
	struct xbuf *b = &s->unit[dir];

	if (b->len == 0)
		return;
	if (s->redact != NULL)
		redactor_partial(s->redact, s->sens, dir, (uint8_t *)b->p, b->len);
	render_raw(&s->main, dir, ts, (const uint8_t *)b->p, b->len);
	if (s->shadow_on)
		render_raw(&s->shadow, dir, ts, (const uint8_t *)b->p, b->len);
	b->len = 0;
}

static void session_free(struct xsession *s)
{
	if (s == NULL)
		return;
	for (int d = 0; d < 2; d++) {
		imap_framer_free(&s->framer[d]);
		xbuf_free(&s->unit[d]);
	}
	xbuf_free(&s->main.out);
	xbuf_free(&s->shadow.out);
	imap_sens_free(&s->sens);
	free(s);
}

static struct xsession *session_of(struct exporter *x, unsigned id)
{
	return id >= 1 && id <= x->count ? x->sessions[id - 1] : NULL;
}

static void open_session(struct exporter *x, const struct capture_stream_event *ev)
{
	struct xsession *s;

	if (ev->session > x->cap) {
		size_t cap = x->cap ? x->cap : 16;
		struct xsession **grown;

		while (cap < ev->session)
			cap *= 2;
		grown = realloc(x->sessions, cap * sizeof(*grown));
		if (grown == NULL) {
			x->failed = true;
			return;
		}
		memset(grown + x->cap, 0, (cap - x->cap) * sizeof(*grown));
		x->sessions = grown;
		x->cap = cap;
	}
	if (ev->session > x->count)
		x->count = ev->session;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		x->failed = true;
		return;
	}
	x->sessions[ev->session - 1] = s;
	x->result->sessions++;
	s->id = ev->session;
	s->selected = x->o->session == 0 || x->o->session == ev->session;
	s->close_ts = ev->ts;
	s->since = x->o->since;
	s->until = x->o->until;
	snprintf(s->client, sizeof(s->client), "%s", ev->client);
	snprintf(s->server, sizeof(s->server), "%s", ev->server);
	s->addressed = ev->client_ep->port != 0 && ev->server_ep->port != 0 &&
		       (ev->client_ep->version == 4 || ev->client_ep->version == 6) &&
		       ev->client_ep->version == ev->server_ep->version;
	render_init(&s->main, ev->ts, false);
	if (!s->selected)
		return;
	s->redact = x->redact;
	if (x->redact != NULL && (s->sens = imap_sens_new()) == NULL) {
		x->failed = true;
		return;
	}
	for (int d = 0; d < 2; d++) {
		s->framer[d] = imap_framer_new((enum imap_dir)d, 0, on_unit, s);
		if (s->framer[d] == NULL) {
			x->failed = true;
			return;
		}
		imap_framer_set_tap(s->framer[d], on_tap);
	}
}

static void close_line(struct xsession *s, const struct capture_stream_event *ev)
{
	static const char *const lines[] = {
		[CAPTURE_CLOSE_CLIENT_FIN] = "close client",
		[CAPTURE_CLOSE_SERVER_FIN] = "close server",
		[CAPTURE_CLOSE_CLIENT_RST] = "reset client",
		[CAPTURE_CLOSE_SERVER_RST] = "reset server",
	};

	flush_partial(s, IMAP_C2S, ev->ts);
	flush_partial(s, IMAP_S2C, ev->ts);
	give_up_literals(s);
	if ((unsigned)ev->reason < sizeof(lines) / sizeof(lines[0]) && lines[ev->reason] != NULL) {
		render_event(&s->main, ev->ts, lines[ev->reason]);
		return;
	}
	render_comment(&s->main, ev->reason == CAPTURE_CLOSE_REUSED
					 ? "the capture holds no end: a new connection took its "
					   "addresses (the client closes here)"
					 : "the capture ends with the session still open (the client "
					   "closes here)");
	render_time(&s->main, ev->ts);
}

/* Where the script comes from, and the time that puts its first session
 * where the recording had it. */
static void header(struct exporter *x, imap_time_us first)
{
	char source[200];
	size_t n = 0;

	for (const char *c = x->o->source; c != NULL && *c != '\0' && n + 1 < sizeof(source); c++)
		source[n++] = *c >= 0x20 && *c <= 0x7e ? *c : '?';
	source[n] = '\0';
	fprintf(x->out, "# imaptap export of %s\n", n > 0 ? source : "a capture");
	if (x->o->redact != 0) {
		fprintf(x->out, "# redacted:");
		for (unsigned k = 1; k <= IMAP_SENS_ALL; k <<= 1)
			if (x->o->redact & k)
				fprintf(x->out, " %s", imap_sens_kind_str(k));
		fprintf(x->out, " (tokens of the same length, keyed %s)\n",
			x->o->redact_key != NULL ? "by --redact-key" : "by a random key");
	}
	fprintf(x->out, "# imaptap compile THIS -o FILE.pcap --start %lld.%06lld keeps the recorded "
			"times\n",
		(long long)(first / IMAP_US_PER_S), (long long)(first % IMAP_US_PER_S));
}

/* A session's first lines in the output: the file's header before the
 * first, the session's line and addresses, the time since the last. */
static void preamble(struct exporter *x, struct xsession *s)
{
	struct replay_export_result *r = x->result;
	char d[32];

	if (s->preambled)
		return;
	s->preambled = true;
	if (r->written == 0) {
		r->first_open = s->main.opened;
		header(x, s->main.opened);
	}
	if (s->addressed)
		fprintf(x->out, "=== session %u\n@client %s\n@server %s\n", s->id, s->client, s->server);
	else /* numbers only: safe to write */
		fprintf(x->out, "=== session %u\n# client %s, server %s: addresses a script cannot "
				"name, the defaults stand in\n", s->id, s->client, s->server);
	if (r->written > 0 && s->main.opened < x->last_written) {
		r->overlapped++;
		render_duration(d, sizeof(d), x->last_written - s->main.opened);
		fprintf(x->out, "# began %s before the session above ended; a script's sessions run "
				"one after the other\n", d);
	} else if (r->written > 0 && s->main.opened - x->last_written != 1000) {
		struct xbuf wait = {0};

		render_wait(&wait, '+', s->main.opened - x->last_written);
		fwrite(wait.p, 1, wait.len, x->out);
		x->failed |= wait.failed;
		xbuf_free(&wait);
	}
	r->written++;
}

/* The session's script so far to the output, all of it or, while a
 * literal may yet be given up (the shadow stands), what comes before it:
 * a long session is not held in memory. */
static void stream_out(struct exporter *x, struct xsession *s, bool all)
{
	size_t n = all || !s->shadow_on ? s->main.out.len : s->shadow_from;

	if (s->main.out.failed)
		x->failed = true;
	if (n == 0 || x->failed)
		return;
	fwrite(s->main.out.p, 1, n, x->out);
	memmove(s->main.out.p, s->main.out.p + n, s->main.out.len - n);
	s->main.out.len -= n;
	if (s->shadow_on)
		s->shadow_from -= n;
}

static bool to_write(const struct xsession *s)
{
	return s->selected && (s->main.started || (s->since <= 0 && s->until <= 0));
}

/* Writes what is done, in session order, and streams the session whose
 * turn it is as it goes. */
static void write_ready(struct exporter *x)
{
	struct xsession *s;

	while (x->next <= x->count && (s = x->sessions[x->next - 1]) != NULL && s->done) {
		if (to_write(s) && !x->failed) {
			preamble(x, s);
			stream_out(x, s, true);
			x->last_written = s->close_ts > x->last_written ? s->close_ts : x->last_written;
		}
		session_free(s);
		x->sessions[x->next - 1] = NULL;
		x->next++;
	}
	if (x->next <= x->count && (s = x->sessions[x->next - 1]) != NULL && s->selected &&
	    s->main.started && !x->failed) {
		preamble(x, s);
		stream_out(x, s, false);
	}
}

static void on_stream(void *ctx, const struct capture_stream_event *ev)
{
	struct exporter *x = ctx;
	struct xsession *s;
	char text[160];

	if (x->failed)
		return;
	if (ev->kind == CAPTURE_STREAM_OPEN) {
		open_session(x, ev);
		return;
	}
	s = session_of(x, ev->session);
	if (s == NULL)
		return;
	if (!s->selected) {
		s->done = ev->kind == CAPTURE_STREAM_CLOSE;
		write_ready(x);
		return;
	}
	switch (ev->kind) {
	case CAPTURE_STREAM_OPEN:
		break;
	case CAPTURE_STREAM_DATA:
		s->dir = ev->dir;
		s->ts = ev->ts;
		imap_framer_feed(s->framer[ev->dir], ev->data, ev->len);
		if (s->id == x->next && s->main.out.len > STREAM_AT)
			write_ready(x);
		break;
	case CAPTURE_STREAM_GAP:
		if (s->sens != NULL)
			imap_sens_lost(s->sens, ev->dir);
		if (!in_window(s, ev->ts)) {
			s->unit[ev->dir].len = 0;
			imap_framer_reset(s->framer[ev->dir]);
			break;
		}
		flush_partial(s, ev->dir, ev->ts);
		give_up_literals(s);
		imap_framer_reset(s->framer[ev->dir]);
		snprintf(text, sizeof(text), "%" PRIu64 " byte(s) of the %s's stream are missing "
			 "here: the capture lost them", ev->gap_len,
			 ev->dir == IMAP_C2S ? "client" : "server");
		comment(s, text);
		if (s->gap_bytes == 0)
			x->result->gap_sessions++;
		s->gap_bytes += ev->gap_len;
		x->result->gap_bytes += ev->gap_len;
		break;
	case CAPTURE_STREAM_WINDOW:
		if (!in_window(s, ev->ts))
			break;
		render_window(&s->main, ev->ts, ev->dir, ev->blocked);
		if (s->shadow_on)
			render_window(&s->shadow, ev->ts, ev->dir, ev->blocked);
		break;
	case CAPTURE_STREAM_CLOSE:
		if (s->until > 0 && ev->ts > s->until) {
			/* ends at until: what is unfinished there is left out */
			s->unit[0].len = s->unit[1].len = 0;
			give_up_literals(s);
			if (s->main.started) {
				render_comment(&s->main, "what came after --until is left out");
				render_time(&s->main, s->until);
			}
			s->close_ts = s->until;
		} else if (in_window(s, ev->ts)) {
			close_line(s, ev);
			s->close_ts = ev->ts;
		}
		s->done = true;
		write_ready(x);
		break;
	}
}

int replay_export(const char *path, const struct replay_export_options *o, FILE *out,
		  struct replay_export_result *result, char *err, size_t errlen)
{
	struct exporter x = {.o = o, .result = result, .out = out, .next = 1};
	int rc;

	memset(result, 0, sizeof(*result));
	result->first_open = -1;
	if (o->redact != 0 && (x.redact = redactor_new(o->redact, o->redact_key)) == NULL) {
		snprintf(err, errlen, "cannot export %s: no key for --redact (OpenSSL failed)", path);
		return -1;
	}
	rc = capture_pcap_read(path, on_stream, NULL, &x, NULL, err, errlen);
	if (x.redact != NULL && redactor_failed(x.redact) && rc == 0) {
		snprintf(err, errlen, "cannot export %s: tokens for --redact could not be made "
			 "(OpenSSL failed)", path);
		rc = -1;
	}
	redactor_free(&x.redact);
	for (size_t i = 0; i < x.count; i++)
		session_free(x.sessions[i]);
	free(x.sessions);
	if (rc != 0)
		return -1;
	if (x.failed) {
		snprintf(err, errlen, "cannot export %s: out of memory", path);
		return -1;
	}
	if (result->sessions == 0) {
		snprintf(err, errlen, "%s holds no TCP connection: nothing to export (capture port 143, "
			 "or record with imaptap proxy --pcap)", path);
		return -1;
	}
	if (result->written == 0 && (o->since > 0 || o->until > 0)) {
		snprintf(err, errlen, "nothing in %s falls between --since and --until", path);
		return -1;
	}
	if (o->session > 0 && result->written == 0) {
		snprintf(err, errlen, "%s has %u session(s), no session %u (imaptap analyze %s lists them)",
			 path, result->sessions, o->session, path);
		return -1;
	}
	if (fflush(out) != 0 || ferror(out)) {
		snprintf(err, errlen, "cannot write the script: %s", strerror(errno));
		return -1;
	}
	return 0;
}
