#include "replay/serve.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/observed.h"
#include "imap/redact.h"
#include "replay/link.h"

#define TAGS_MAX 4096 /* commands in flight at once */
#define LIVE_MAX 64 /* live client units read ahead of the recording */

/* A client unit as it arrived, masked like the recording. */
struct live_unit {
	enum imap_unit_kind kind;
	uint8_t *data;
	size_t len;
	char tag[REPLAY_TAG_MAX];
	imap_time_us at; /* arrival, live clock */
	bool starttls;   /* a STARTTLS command */
};

struct tag_pair {
	char recorded[REPLAY_TAG_MAX];
	char live[REPLAY_TAG_MAX];
};

struct serve {
	const struct replay_recording *rec;
	const struct replay_options *opt;
	struct replay_result *res;
	struct replay_link link;
	struct observed_session *observed; /* frames and masks the live client's bytes */
	struct live_unit live[LIVE_MAX];
	size_t live_head, live_count;
	bool io_error;
	struct tag_pair *tags;
	size_t tag_count;
	imap_time_us start;
	imap_time_us trigger_live;    /* when the last matched client unit arrived */
	imap_time_us trigger_rec;     /* and when it was recorded */
	char starttls_tag[REPLAY_TAG_MAX]; /* recorded tag of a STARTTLS in flight */
	size_t burst_end;             /* coalesce: units before this index are due now */
};

/* Bytes as a person reads them: no CRLF, the escapes of capture/escape.h, and
 * "..." where they had to be cut. */
static void printable(char *out, size_t size, const uint8_t *p, size_t n)
{
	size_t need;

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	need = capture_escaped_len(p, n, 0);
	if (need < size) {
		capture_escape(out, size, p, n, 0, NULL);
		return;
	}
	memcpy(out + capture_escape(out, size - 3, p, n, 0, NULL), "...", 4);
}

void replay_report(struct replay_result *res, const char *fmt, ...)
{
	size_t n = strlen(res->report);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->report + n, sizeof(res->report) - n, fmt, ap);
	va_end(ap);
}

/* The units before index i, as context for a report. */
static void report_context(struct serve *s, size_t i)
{
	size_t from = i > 4 ? i - 4 : 0;
	char text[160];

	if (from >= i)
		return;
	replay_report(s->res, "  the recording before it:\n");
	for (size_t k = from; k < i; k++) {
		const struct replay_unit *u = &s->rec->units[k];

		/* client lines masked: a foreign capture may hold a password */
		printable(text, sizeof(text), u->dir == IMAP_C2S ? u->masked : u->data,
			  u->dir == IMAP_C2S ? u->masked_len : u->len);
		if (u->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(text, sizeof(text), "{%zu bytes}", u->len);
		replay_report(s->res, "    +%" PRId64 ".%03d s %s %s\n", u->at / IMAP_US_PER_S,
		       (int)(u->at % IMAP_US_PER_S / 1000), u->dir == IMAP_C2S ? "C>" : "S<", text);
	}
}

/* The reason, to the client too, before the close: a client test's own
 * log then says why its server went away. */
static void say_bye(struct serve *s, const char *want, const char *have)
{
	char line[1000];
	int n;
	imap_time_us until = replay_now() + IMAP_US_PER_S;

	if (s->link.eof)
		return;
	n = snprintf(line, sizeof(line), "* BYE [imaptap] replay diverged: expected %.400s, "
		     "received %.400s\r\n", want, have);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	replay_link_queue(&s->link, (const uint8_t *)line, (size_t)n);
	while (s->link.out_len > 0 && !s->link.eof && replay_now() < until)
		replay_link_pump(&s->link, 50000);
}

/* The rest of the client's turn where it diverged: each recorded line
 * (-) beside what arrived in its place (+), so that one look shows whether
 * the client skipped, added or changed lines. */
static void report_turn(struct serve *s, size_t i)
{
	char text[160];
	size_t k = i, j = 0, shown = 0;

	if (s->live_count <= 1 && (i + 1 >= s->rec->count || s->rec->units[i + 1].dir != IMAP_C2S))
		return; /* one line each: expected and received say it all */
	replay_report(s->res, "  the client's turn, recorded (-) and received (+):\n");
	while (shown < 16 && ((k < s->rec->count && s->rec->units[k].dir == IMAP_C2S) ||
			      j < s->live_count)) {
		if (k < s->rec->count && s->rec->units[k].dir == IMAP_C2S) {
			const struct replay_unit *u = &s->rec->units[k++];

			printable(text, sizeof(text), u->masked, u->masked_len);
			if (u->kind == IMAP_UNIT_LITERAL_DATA)
				snprintf(text, sizeof(text), "{%zu literal bytes}", u->len);
			replay_report(s->res, "    - %s\n", text);
		}
		if (j < s->live_count) {
			const struct live_unit *l = &s->live[(s->live_head + j++) % LIVE_MAX];

			printable(text, sizeof(text), l->data, l->len);
			if (l->kind == IMAP_UNIT_LITERAL_DATA)
				snprintf(text, sizeof(text), "{%zu literal bytes}", l->len);
			replay_report(s->res, "    + %s\n", text);
		}
		shown++;
	}
}

static void diverged(struct serve *s, size_t i, const char *what, const struct live_unit *got)
{
	const struct replay_unit *u = &s->rec->units[i];
	char want[400], have[400];

	printable(want, sizeof(want), u->masked, u->masked_len);
	if (u->kind == IMAP_UNIT_LITERAL_DATA)
		snprintf(want, sizeof(want), "{%zu literal bytes}", u->len);
	s->res->code = 1;
	replay_report(s->res, "replay: the client diverged from the recording at client line %u "
		  "(recorded at +%" PRId64 ".%03d s): %s\n",
	       u->line_no, u->at / IMAP_US_PER_S, (int)(u->at % IMAP_US_PER_S / 1000), what);
	replay_report(s->res, "  expected: %s\n", want);
	if (got != NULL) {
		printable(have, sizeof(have), got->data, got->len);
		if (got->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(have, sizeof(have), "{%zu literal bytes}", got->len);
		replay_report(s->res, "  received: %s\n", have);
	}
	report_turn(s, i);
	report_context(s, i);
	say_bye(s, want, got != NULL ? have : what);
}

static void on_live(void *ctx, const struct imap_observation *obs)
{
	struct serve *s = ctx;
	struct live_unit *l;

	if (obs->dir != IMAP_C2S)
		return;
	if (s->live_count == LIVE_MAX) {
		s->io_error = true; /* a client far ahead: it diverged long ago */
		return;
	}
	l = &s->live[(s->live_head + s->live_count) % LIVE_MAX];
	memset(l, 0, sizeof(*l));
	l->kind = obs->unit->kind;
	l->data = malloc(obs->len ? obs->len : 1);
	if (l->data == NULL) {
		s->io_error = true;
		return;
	}
	memcpy(l->data, obs->data, obs->len);
	l->len = obs->len;
	l->at = replay_now();
	if (obs->info != NULL && obs->info->cls == IMAP_LINE_COMMAND &&
	    !(obs->unit->flags & IMAP_UNIT_CONTINUED) && obs->info->tag.len < sizeof(l->tag)) {
		memcpy(l->tag, obs->info->tag.p, obs->info->tag.len);
		l->tag[obs->info->tag.len] = '\0';
		l->starttls = obs->info->keyword == IMAP_KW_STARTTLS;
	}
	s->live_count++;
}

/* Replaces every match of the --ignore patterns with one \x01. */
static char *normalised(const struct serve *s, const uint8_t *p, size_t n)
{
	char *text = malloc(n + 1), *out;

	if (text == NULL)
		return NULL;
	memcpy(text, p, n);
	text[n] = '\0';
	for (size_t i = 0; i < s->opt->ignore_count; i++) {
		regmatch_t m;
		size_t at = 0;

		out = malloc(strlen(text) + 1);
		if (out == NULL)
			break;
		out[0] = '\0';
		while (regexec(&s->opt->ignore[i], text + at, 1, &m, at ? REG_NOTBOL : 0) == 0 &&
		       m.rm_eo > 0) {
			strncat(out, text + at, (size_t)m.rm_so);
			strcat(out, "\x01");
			at += (size_t)m.rm_eo;
		}
		strcat(out, text + at);
		free(text);
		text = out;
	}
	return text;
}

/* A masked password is a masked password, quoted or not: "****" -> *. */
static void unquote_masks(char *t)
{
	char *w = t;

	for (char *r = t; *r != '\0';) {
		if (r[0] == '"' && r[1] == '*') {
			char *e = r + 1;

			while (*e == '*')
				e++;
			if (*e == '"') {
				*w++ = '*';
				r = e + 1;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = '\0';
}

/* Equal, where a run of '*' (a masked span) matches any other run. */
static bool masked_equal(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0') {
		if (*a == '*' && *b == '*') {
			while (*a == '*')
				a++;
			while (*b == '*')
				b++;
			continue;
		}
		if (*a != *b)
			return false;
		a++;
		b++;
	}
	return *a == *b;
}

static bool unit_matches(struct serve *s, const struct replay_unit *u, const struct live_unit *l)
{
	size_t rskip = strlen(u->tag), lskip = strlen(l->tag);
	char *a, *b;
	bool eq;

	if (u->kind != l->kind)
		return false;
	/* the live client's tag stands for the recorded one */
	if ((rskip > 0) != (lskip > 0))
		return false;
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		/* bodies masked in the recording match any of the same length */
		bool all_fill = true;

		for (size_t i = 0; i < u->masked_len && all_fill; i++)
			all_fill = u->masked[i] == '*' || u->masked[i] == '\r' || u->masked[i] == '\n';
		if (all_fill && u->masked_len == l->len)
			return true;
	}
	a = normalised(s, u->masked + rskip, u->masked_len - rskip);
	b = normalised(s, l->data + lskip, l->len - lskip);
	if (a != NULL && b != NULL) {
		unquote_masks(a);
		unquote_masks(b);
	}
	eq = a != NULL && b != NULL && masked_equal(a, b);
	free(a);
	free(b);
	return eq;
}

static struct tag_pair *live_tag_for(struct serve *s, const char *recorded)
{
	for (size_t i = s->tag_count; i-- > 0;)
		if (strcmp(s->tags[i].recorded, recorded) == 0)
			return &s->tags[i];
	return NULL;
}

static void map_tag(struct serve *s, const char *recorded, const char *live)
{
	if (recorded[0] == '\0' || s->tag_count == TAGS_MAX)
		return;
	snprintf(s->tags[s->tag_count].recorded, REPLAY_TAG_MAX, "%s", recorded);
	snprintf(s->tags[s->tag_count].live, REPLAY_TAG_MAX, "%s", live);
	s->tag_count++;
}

static void queue_out(struct serve *s, const uint8_t *p, size_t n)
{
	replay_link_queue(&s->link, p, n);
	/* the live conversation follows what the client is told, so its
	 * literals and AUTHENTICATE are framed right */
	observed_feed(s->observed, IMAP_S2C, replay_now(), IMAP_ORIGIN_PEER, p, n);
}

static void send_unit(struct serve *s, const struct replay_unit *u)
{
	struct tag_pair *pair = u->tag[0] != '\0' ? live_tag_for(s, u->tag) : NULL;

	if (pair != NULL) {
		size_t skip = strlen(u->tag);

		queue_out(s, (const uint8_t *)pair->live, strlen(pair->live));
		queue_out(s, u->data + skip, u->len - skip);
		/* a completion ends its command: only tags in flight are kept */
		*pair = s->tags[--s->tag_count];
	} else {
		queue_out(s, u->data, u->len);
	}
}

static void drop_live(struct serve *s)
{
	free(s->live[s->live_head].data);
	s->live_head = (s->live_head + 1) % LIVE_MAX;
	s->live_count--;
}

/* The due time of a server unit: its recorded delay after the last client
 * unit that came before it, scaled. */
static imap_time_us due(const struct serve *s, const struct replay_unit *u)
{
	if (s->opt->speed <= 0)
		return s->trigger_live;
	return s->trigger_live + (imap_time_us)((double)(u->at - s->trigger_rec) / s->opt->speed);
}

/* STARTTLS answered: the rest goes through TLS once what is queued is out. */
static bool start_tls(struct serve *s, size_t i)
{
	if (replay_link_start_tls(&s->link, s->opt->tls, true, NULL, s->opt->quiet))
		return true;
	diverged(s, i, "the TLS handshake after STARTTLS failed (does the client trust the CA?)",
		 NULL);
	return false;
}

/* The index of the first client unit at or after i (count if none). */
static size_t next_client_unit(const struct replay_recording *rec, size_t i)
{
	while (i < rec->count && rec->units[i].dir != IMAP_C2S)
		i++;
	return i;
}

static void run(struct serve *s)
{
	const struct replay_recording *rec = s->rec;
	imap_time_us deadline = s->start + s->opt->timeout;

	for (size_t i = 0; i < rec->count;) {
		const struct replay_unit *u = &rec->units[i];
		imap_time_us now = replay_now();

		if (s->io_error || s->link.nomem) {
			s->res->code = 3;
			replay_report(s->res, "replay: out of memory, or the client ran more than %d lines ahead\n",
			       LIVE_MAX);
			return;
		}
		if (now > deadline) {
			diverged(s, i, "the replay ran past --timeout", NULL);
			return;
		}
		if (u->dir == IMAP_S2C) {
			bool in_burst = i < s->burst_end;

			if (!in_burst && now < due(s, u)) {
				replay_link_pump(&s->link, due(s, u) - now);
				continue;
			}
			/* coalesce: the rest of the server's turn goes with this
			 * unit, in the same write */
			if (!in_burst && s->opt->segment.mode == IMAP_SPLIT_COALESCE)
				s->burst_end = next_client_unit(s->rec, i);
			send_unit(s, u);
			i++;
			if (s->starttls_tag[0] != '\0' && strcmp(u->tag, s->starttls_tag) == 0) {
				s->starttls_tag[0] = '\0';
				if (s->opt->tls != NULL && !start_tls(s, i - 1))
					return;
			}
			continue;
		}
		if (s->live_count == 0) {
			imap_time_us waited = now - (s->trigger_live > s->start ? s->trigger_live : s->start);
			char what[200];

			if (s->link.eof) {
				diverged(s, i, "the client closed the connection instead", NULL);
				return;
			}
			/* the recorded pause before this line, and then some */
			imap_time_us allowed = s->opt->quiet;

			if (s->opt->speed > 0)
				allowed += (imap_time_us)((double)(u->at - s->trigger_rec) /
							  s->opt->speed);
			if (waited > allowed && s->link.out_len == 0) {
				snprintf(what, sizeof(what),
					 "the client sent nothing for %" PRId64 ".%03d s while this line "
					 "was due (is it waiting for something it did not ask for?)",
					 waited / IMAP_US_PER_S, (int)(waited % IMAP_US_PER_S / 1000));
				diverged(s, i, what, NULL);
				return;
			}
			replay_link_pump(&s->link, REPLAY_LINK_SHORT_POLL_US);
			continue;
		}
		if (!unit_matches(s, u, &s->live[s->live_head])) {
			diverged(s, i, "the client sent something else", &s->live[s->live_head]);
			return;
		}
		if (u->tag[0] != '\0')
			map_tag(s, u->tag, s->live[s->live_head].tag);
		if (s->live[s->live_head].starttls)
			snprintf(s->starttls_tag, sizeof(s->starttls_tag), "%s", u->tag);
		s->trigger_live = s->live[s->live_head].at;
		s->trigger_rec = u->at;
		if (u->kind != IMAP_UNIT_LITERAL_DATA)
			s->res->client_lines++;
		drop_live(s);
		i++;
	}
	/* all sent: let it reach the client */
	while (s->link.out_len > 0 && !s->link.eof && replay_now() < deadline)
		replay_link_pump(&s->link, REPLAY_LINK_POLL_US);
	if (!rec->closed_by_server && s->live_count == 0) {
		/* the client closed first in the recording: give it the time */
		imap_time_us until = replay_now() + s->opt->quiet;

		while (!s->link.eof && replay_now() < until && s->live_count == 0)
			replay_link_pump(&s->link, REPLAY_LINK_POLL_US);
	}
	if (s->live_count > 0) {
		char have[300];

		printable(have, sizeof(have), s->live[s->live_head].data, s->live[s->live_head].len);
		s->res->code = 1;
		replay_report(s->res, "replay: the client sent more than the recording holds: %s\n",
			      have);
	}
}

static void on_received(void *ctx, const uint8_t *data, size_t len)
{
	struct serve *s = ctx;

	observed_feed(s->observed, IMAP_C2S, replay_now(), IMAP_ORIGIN_PEER, data, len);
}

void replay_serve_fd(const struct replay_recording *rec, int fd, const struct replay_options *opt,
		     struct replay_result *res)
{
	struct imap_conv_config cc = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct serve s = {.rec = rec, .opt = opt, .res = res};
	struct capture_session_info info = {.id = rec->session, .upstream_tls = "replay"};
	struct observed_hooks hooks = {.observation = on_live, .ctx = &s};

	memset(res, 0, sizeof(*res));
	replay_link_init(&s.link, fd, on_received, &s);
	replay_link_set_split(&s.link, &opt->segment);
	s.observed = observed_open(NULL, &info, &cc, &hooks);
	s.tags = calloc(TAGS_MAX, sizeof(*s.tags));
	if (s.observed == NULL || s.tags == NULL) {
		res->code = 3;
		replay_report(s.res, "replay: out of memory\n");
	} else {
		s.start = replay_now();
		s.trigger_live = s.start;
		s.trigger_rec = 0;
		if (opt->tls != NULL && opt->implicit_tls &&
		    !replay_link_start_tls(&s.link, opt->tls, true, NULL, opt->quiet)) {
			res->code = 1;
			replay_report(s.res, "replay: the client's TLS handshake failed (does it trust the CA? is "
				   "it speaking TLS?)\n");
		} else {
			/* the handshake's time is not the recording's */
			s.start = s.trigger_live = replay_now();
			run(&s);
		}
		if (res->code == 0 && opt->segment.mode == IMAP_SPLIT_NONE) {
			replay_report(s.res, "replay: the client did what the recording did (%zu client lines)\n",
			       res->client_lines);
		} else if (res->code == 0) {
			char how[48];

			imap_split_describe(&opt->segment, how, sizeof(how));
			replay_report(s.res, "replay: the client did what the recording did (%zu client "
				      "lines; server bytes in %zu writes, --segment %s)\n",
				      res->client_lines, s.link.writes, how);
		}
	}
	while (s.live_count > 0)
		drop_live(&s);
	replay_link_free(&s.link);
	observed_discard(&s.observed);
	free(s.tags);
}
