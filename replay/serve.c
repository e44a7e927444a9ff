#include "replay/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "imap/conversation.h"
#include "imap/redact.h"

#define TAGS_MAX 4096
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
	int fd;
	struct imap_conv *conv;       /* frames and masks the live client's bytes */
	struct live_unit live[LIVE_MAX];
	size_t live_head, live_count;
	bool client_eof;
	bool io_error;
	uint8_t *out;                 /* bytes not yet written to the client */
	size_t out_len, out_cap;
	struct tag_pair *tags;
	size_t tag_count;
	imap_time_us start;
	imap_time_us trigger_live;    /* when the last matched client unit arrived */
	imap_time_us trigger_rec;     /* and when it was recorded */
	size_t last_shown;            /* units shown in a report's context */
	SSL *ssl;                     /* the client leg in TLS */
	char starttls_tag[REPLAY_TAG_MAX]; /* recorded tag of a STARTTLS in flight */
};

static imap_time_us now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (imap_time_us)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Bytes as a person reads them: no CRLF, other controls as \xNN, cut. */
static void printable(char *out, size_t size, const uint8_t *p, size_t n)
{
	size_t o = 0, i;

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	for (i = 0; i < n && o + 8 < size; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f) {
			out[o++] = (char)p[i];
		} else {
			snprintf(out + o, size - o, "\\x%02x", p[i]);
			o += 4;
		}
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static void report(struct serve *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct serve *s, const char *fmt, ...)
{
	size_t n = strlen(s->res->report);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->res->report + n, sizeof(s->res->report) - n, fmt, ap);
	va_end(ap);
}

/* The units before index i, as context for a report. */
static void report_context(struct serve *s, size_t i)
{
	size_t from = i > 4 ? i - 4 : 0;
	char text[160];

	if (from >= i)
		return;
	report(s, "  the recording before it:\n");
	for (size_t k = from; k < i; k++) {
		const struct replay_unit *u = &s->rec->units[k];

		/* client lines masked: a foreign capture may hold a password */
		printable(text, sizeof(text), u->dir == IMAP_C2S ? u->masked : u->data,
			  u->dir == IMAP_C2S ? u->masked_len : u->len);
		if (u->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(text, sizeof(text), "{%zu bytes}", u->len);
		report(s, "    +%" PRId64 ".%03d s %s %s\n", u->at / 1000000,
		       (int)(u->at % 1000000 / 1000), u->dir == IMAP_C2S ? "C>" : "S<", text);
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
	report(s, "replay: the client diverged from the recording at client line %u "
		  "(recorded at +%" PRId64 ".%03d s): %s\n",
	       u->line_no, u->at / 1000000, (int)(u->at % 1000000 / 1000), what);
	report(s, "  expected: %s\n", want);
	if (got != NULL) {
		printable(have, sizeof(have), got->data, got->len);
		if (got->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(have, sizeof(have), "{%zu literal bytes}", got->len);
		report(s, "  received: %s\n", have);
	}
	report_context(s, i);
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
	l->at = now_us();
	if (obs->info != NULL && obs->info->cls == IMAP_LINE_COMMAND &&
	    !(obs->unit->flags & IMAP_UNIT_CONTINUED) && obs->info->tag.len < sizeof(l->tag)) {
		memcpy(l->tag, obs->info->tag.p, obs->info->tag.len);
		l->tag[obs->info->tag.len] = '\0';
		l->starttls = strcmp(obs->info->name, "STARTTLS") == 0;
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
	eq = a != NULL && b != NULL && masked_equal(a, b);
	free(a);
	free(b);
	return eq;
}

static const char *live_tag_for(const struct serve *s, const char *recorded)
{
	for (size_t i = s->tag_count; i-- > 0;)
		if (strcmp(s->tags[i].recorded, recorded) == 0)
			return s->tags[i].live;
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
	if (s->out_len + n > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 65536;
		uint8_t *q;

		while (cap < s->out_len + n)
			cap *= 2;
		q = realloc(s->out, cap);
		if (q == NULL) {
			s->io_error = true;
			return;
		}
		s->out = q;
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
	/* the live conversation follows what the client is told, so its
	 * literals and AUTHENTICATE are framed right */
	imap_conv_feed(s->conv, IMAP_S2C, now_us(), IMAP_ORIGIN_PEER, p, n);
}

static void send_unit(struct serve *s, const struct replay_unit *u)
{
	const char *live = u->tag[0] != '\0' ? live_tag_for(s, u->tag) : NULL;

	if (live != NULL) {
		size_t skip = strlen(u->tag);

		queue_out(s, (const uint8_t *)live, strlen(live));
		queue_out(s, u->data + skip, u->len - skip);
	} else {
		queue_out(s, u->data, u->len);
	}
}

static ssize_t io_send(struct serve *s, const uint8_t *p, size_t n)
{
	int r;

	if (s->ssl == NULL)
		return send(s->fd, p, n, MSG_NOSIGNAL);
	r = SSL_write(s->ssl, p, (int)(n > 1 << 20 ? 1 << 20 : n));
	if (r > 0)
		return r;
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		errno = EPIPE;
		return -1;
	}
}

static ssize_t io_recv(struct serve *s, uint8_t *p, size_t n)
{
	int r;

	if (s->ssl == NULL)
		return recv(s->fd, p, n, 0);
	r = SSL_read(s->ssl, p, (int)n);
	if (r > 0)
		return r;
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		return 0; /* a broken TLS session ends the client's side */
	}
}

/* The TLS handshake with the client, within the quiet limit. */
static bool handshake(struct serve *s)
{
	imap_time_us until = now_us() + s->opt->quiet;

	s->ssl = SSL_new(s->opt->tls);
	if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1)
		return false;
	while (now_us() < until) {
		int r = SSL_accept(s->ssl), e;
		struct pollfd p = {.fd = s->fd};

		if (r == 1)
			return true;
		e = SSL_get_error(s->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			p.events = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			p.events = POLLOUT;
		else
			break;
		poll(&p, 1, 100);
	}
	ERR_clear_error();
	return false;
}

/* One round of I/O: writes what is queued, reads what came, waits at most
 * wait_us. */
static void pump(struct serve *s, imap_time_us wait_us)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN};
	uint8_t buf[65536];
	int ms;

	if (s->out_len > 0)
		p.events |= POLLOUT;
	if (s->client_eof)
		p.events &= (short)~POLLIN;
	ms = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);
	if (ms > 1000)
		ms = 1000;
	if (p.events == 0) {
		if (ms > 0)
			poll(NULL, 0, ms);
		return;
	}
	/* records OpenSSL decrypted already wake no poller */
	if (!(s->ssl != NULL && SSL_pending(s->ssl) > 0) && poll(&p, 1, ms) <= 0)
		return;
	if (s->ssl != NULL && SSL_pending(s->ssl) > 0)
		p.revents |= POLLIN;
	if (p.revents & POLLOUT) {
		ssize_t n = io_send(s, s->out, s->out_len);

		if (n > 0) {
			memmove(s->out, s->out + n, s->out_len - (size_t)n);
			s->out_len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			s->client_eof = true;
			s->out_len = 0;
		}
	}
	if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t n = io_recv(s, buf, sizeof(buf));

		if (n > 0)
			imap_conv_feed(s->conv, IMAP_C2S, now_us(), IMAP_ORIGIN_PEER, buf, (size_t)n);
		else if (n == 0 || (errno != EAGAIN && errno != EINTR))
			s->client_eof = true;
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
	while (s->out_len > 0 && !s->client_eof)
		pump(s, 100000);
	if (!s->client_eof && handshake(s))
		return true;
	diverged(s, i, "the TLS handshake after STARTTLS failed (does the client trust the CA?)",
		 NULL);
	return false;
}

static void run(struct serve *s)
{
	const struct replay_recording *rec = s->rec;
	imap_time_us deadline = s->start + s->opt->timeout;

	for (size_t i = 0; i < rec->count;) {
		const struct replay_unit *u = &rec->units[i];
		imap_time_us now = now_us();

		if (s->io_error) {
			s->res->code = 3;
			report(s, "replay: out of memory, or the client ran more than %d lines ahead\n",
			       LIVE_MAX);
			return;
		}
		if (now > deadline) {
			diverged(s, i, "the replay ran past --timeout", NULL);
			return;
		}
		if (u->dir == IMAP_S2C) {
			if (now < due(s, u)) {
				pump(s, due(s, u) - now);
				continue;
			}
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

			if (s->client_eof) {
				diverged(s, i, "the client closed the connection instead", NULL);
				return;
			}
			/* the recorded pause before this line, and then some */
			imap_time_us allowed = s->opt->quiet;

			if (s->opt->speed > 0)
				allowed += (imap_time_us)((double)(u->at - s->trigger_rec) /
							  s->opt->speed);
			if (waited > allowed && s->out_len == 0) {
				snprintf(what, sizeof(what),
					 "the client sent nothing for %" PRId64 ".%03d s while this line "
					 "was due (is it waiting for something it did not ask for?)",
					 waited / 1000000, (int)(waited % 1000000 / 1000));
				diverged(s, i, what, NULL);
				return;
			}
			pump(s, 50000);
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
	while (s->out_len > 0 && !s->client_eof && now_us() < deadline)
		pump(s, 100000);
	if (s->live_count > 0) {
		char have[300];

		printable(have, sizeof(have), s->live[s->live_head].data, s->live[s->live_head].len);
		s->res->code = 1;
		report(s, "replay: the client sent more than the recording holds: %s\n", have);
		return;
	}
	if (!rec->closed_by_server) {
		/* the client closed first in the recording: give it the time */
		imap_time_us until = now_us() + s->opt->quiet;

		while (!s->client_eof && now_us() < until && s->live_count == 0)
			pump(s, 100000);
		if (s->live_count > 0) {
			char have[300];

			printable(have, sizeof(have), s->live[s->live_head].data,
				  s->live[s->live_head].len);
			s->res->code = 1;
			report(s, "replay: the client sent more than the recording holds: %s\n", have);
		}
	}
}

void replay_serve_fd(const struct replay_recording *rec, int fd, const struct replay_options *opt,
		     struct replay_result *res)
{
	struct imap_conv_config cc = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct serve s = {.rec = rec, .opt = opt, .res = res, .fd = fd};

	memset(res, 0, sizeof(*res));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	s.conv = imap_conv_new(&cc, on_live, &s);
	s.tags = calloc(TAGS_MAX, sizeof(*s.tags));
	if (s.conv == NULL || s.tags == NULL) {
		res->code = 3;
		report(&s, "replay: out of memory\n");
	} else {
		s.start = now_us();
		s.trigger_live = s.start;
		s.trigger_rec = 0;
		if (opt->tls != NULL && opt->implicit_tls && !handshake(&s)) {
			res->code = 1;
			report(&s, "replay: the client's TLS handshake failed (does it trust the CA? is "
				   "it speaking TLS?)\n");
		} else {
			/* the handshake's time is not the recording's */
			s.start = s.trigger_live = now_us();
			run(&s);
		}
		if (res->code == 0)
			report(&s, "replay: the client did what the recording did (%zu client lines)\n",
			       res->client_lines);
	}
	while (s.live_count > 0)
		drop_live(&s);
	if (s.ssl != NULL) {
		SSL_shutdown(s.ssl);
		SSL_free(s.ssl);
	}
	imap_conv_free(&s.conv);
	free(s.tags);
	free(s.out);
}
