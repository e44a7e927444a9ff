/* One session's script lines, as replay/script.c will read them back:
 * text where text gives the same bytes, escapes everywhere else, and the
 * exact delay before every event. */
#include "replay/export_int.h"
#include "replay/script.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* As docs/script.md: a line without a delay comes 1 ms after the one
 * before; one delay line holds at most 30 days. */
#define SCRIPT_STEP_US 1000
#define SCRIPT_DELAY_MAX_US (30ll * 24 * 3600 * IMAP_US_PER_S)

void xbuf_put(struct xbuf *b, const void *data, size_t len)
{
	if (b->failed || len == 0)
		return;
	if (b->cap - b->len < len) {
		size_t cap = b->cap ? b->cap : 4096;
		char *grown;

		while (cap - b->len < len)
			cap *= 2;
		grown = realloc(b->p, cap);
		if (grown == NULL) {
			b->failed = true;
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

void xbuf_printf(struct xbuf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		xbuf_put(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void xbuf_free(struct xbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void render_init(struct renderer *r, imap_time_us opened, bool raw_only)
{
	memset(r, 0, sizeof(*r));
	r->opened = r->prev = opened;
	r->raw_only = raw_only;
}

void render_duration(char *out, size_t size, imap_time_us us)
{
	long long s = (long long)(us / IMAP_US_PER_S), frac = (long long)(us % IMAP_US_PER_S);

	if (frac == 0)
		snprintf(out, size, "%llds", s);
	else if (s > 0) {
		int digits = 6;

		while (frac % 10 == 0) {
			frac /= 10;
			digits--;
		}
		snprintf(out, size, "%lld.%0*llds", s, digits, frac);
	} else if (us % 1000 == 0)
		snprintf(out, size, "%lldms", (long long)(us / 1000));
	else
		snprintf(out, size, "%lldus", (long long)us);
}

void render_wait(struct xbuf *b, char mark, imap_time_us us)
{
	char d[32];

	/* one line holds at most 30 days; more lines add up ("@" then "+") */
	do {
		imap_time_us part = us > SCRIPT_DELAY_MAX_US ? SCRIPT_DELAY_MAX_US : us;

		render_duration(d, sizeof(d), part);
		xbuf_printf(b, "%c%s\n", mark, d);
		us -= part;
		mark = '+';
	} while (us > 0);
}

/* Places the next event at ts: "@" for a session's first (after its
 * start), "+" after another; nothing when the script's own step gives
 * ts. A clock that went back is held where it was. */
static void place(struct renderer *r, imap_time_us ts, imap_time_us step)
{
	imap_time_us gap = ts - r->prev;

	if (gap < 0) {
		xbuf_printf(&r->out, "# the capture's clock goes back %" PRId64 " us here\n", -gap);
		gap = 0;
		ts = r->prev;
	}
	if (!r->started) {
		r->started = true;
		/* an offset from the start: also the first line's own time,
		 * which a delay before the session cannot set */
		if (gap != SCRIPT_STEP_US)
			render_wait(&r->out, '@', gap);
	} else if (gap != step) {
		render_wait(&r->out, '+', gap);
	}
	r->prev = ts;
}

static bool printable(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	/* a space at the end would be lost to any editor that trims lines */
	return n == 0 || p[n - 1] != ' ';
}

/* "C= " and the bytes with escapes: \\ \r \n \t \xNN, a final space as
 * \x20; nothing else but printable ASCII. */
static void raw_line(struct renderer *r, enum imap_dir dir, const uint8_t *p, size_t n)
{
	xbuf_put(&r->out, dir == IMAP_C2S ? "C= " : "S= ", 3);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		char esc[5];

		if (c == '\\')
			xbuf_put(&r->out, "\\\\", 2);
		else if (c == '\r')
			xbuf_put(&r->out, "\\r", 2);
		else if (c == '\n')
			xbuf_put(&r->out, "\\n", 2);
		else if (c == '\t')
			xbuf_put(&r->out, "\\t", 2);
		else if (c >= 0x20 && c <= 0x7e && !(c == ' ' && i + 1 == n))
			xbuf_put(&r->out, &c, 1);
		else {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			xbuf_put(&r->out, esc, 4);
		}
	}
	xbuf_put(&r->out, "\n", 1);
}

static void text_line(struct renderer *r, enum imap_dir dir, char form, const uint8_t *p,
		      size_t n)
{
	char head[3] = {dir == IMAP_C2S ? 'C' : 'S', form, ' '};

	xbuf_put(&r->out, head, n > 0 ? 3 : 2);
	xbuf_put(&r->out, p, n);
	xbuf_put(&r->out, "\n", 1);
}

/* A line, or a line that announces a literal: as text when the text says
 * to the script's parser what it said to the framer. */
static void line_unit(struct renderer *r, enum imap_dir dir, const uint8_t *p, size_t n,
		      const struct imap_unit *u)
{
	uint64_t framed = u->kind == IMAP_UNIT_LITERAL_HEAD && !(u->flags & IMAP_UNIT_BAD_LITERAL)
				  ? u->literal_len : 0;
	uint64_t said = 0;

	if (!r->raw_only && n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n' &&
	    printable(p, n - 2) &&
	    (replay_script_announced((const char *)p, n - 2, &said) == 0 ? 0 : said) == framed &&
	    framed <= REPLAY_SCRIPT_LITERAL_MAX) {
		text_line(r, dir, ':', p, n - 2);
		r->owed[dir] = framed;
		r->begun[dir] = false;
		return;
	}
	raw_line(r, dir, p, n);
}

/* Literal data the script counts: a line of it as "C~ text" where that
 * gives the same bytes (a CRLF line, or the literal's last bytes), the
 * rest raw; one event, so no delay between its lines. */
static void literal_unit(struct renderer *r, enum imap_dir dir, const uint8_t *p, size_t n)
{
	size_t at = 0;

	while (at < n) {
		const uint8_t *lf = memchr(p + at, '\n', n - at);
		size_t piece = lf != NULL ? (size_t)(lf - (p + at)) + 1 : n - at;
		const uint8_t *q = p + at;

		if (piece >= 2 && q[piece - 1] == '\n' && q[piece - 2] == '\r' &&
		    printable(q, piece - 2))
			text_line(r, dir, '~', q, piece - 2);
		else if (lf == NULL && piece == r->owed[dir] && printable(q, piece) && piece > 0)
			text_line(r, dir, '~', q, piece);
		else
			raw_line(r, dir, q, piece);
		r->owed[dir] -= piece < r->owed[dir] ? piece : r->owed[dir];
		at += piece;
	}
	r->begun[dir] = r->owed[dir] > 0;
}

void render_window(struct renderer *r, imap_time_us ts, enum imap_dir dir, bool closed)
{
	if (r->window_closed[dir] == closed)
		return;
	r->window_closed[dir] = closed;
	place(r, ts, SCRIPT_STEP_US);
	xbuf_printf(&r->out, "window %s %s\n", dir == IMAP_S2C ? "client" : "server",
		    closed ? "closed" : "open");
}

/* Bytes toward a closed window (a zero-window probe): a script sends
 * none there, so the window opens first. */
static void open_for(struct renderer *r, imap_time_us ts, enum imap_dir dir)
{
	if (!r->window_closed[dir])
		return;
	xbuf_printf(&r->out, "# the %s sends while the %s's window is closed; a script opens "
			     "it first\n", dir == IMAP_S2C ? "server" : "client",
		    dir == IMAP_S2C ? "client" : "server");
	render_window(r, ts, dir, false);
}

/* Places bytes of dir at ts; the lines of a literal the parser counts,
 * after its first, come at once (docs/script.md). */
static void place_bytes(struct renderer *r, imap_time_us ts, enum imap_dir dir, bool literal)
{
	open_for(r, ts, dir);
	place(r, ts, literal && r->begun[dir] ? 0 : SCRIPT_STEP_US);
}

void render_unit(struct renderer *r, enum imap_dir dir, imap_time_us ts, const uint8_t *bytes,
		 size_t len, const struct imap_unit *unit)
{
	bool literal = unit->kind == IMAP_UNIT_LITERAL_DATA && r->owed[dir] > 0;

	place_bytes(r, ts, dir, literal);
	if (literal)
		literal_unit(r, dir, bytes, len);
	else if (unit->kind == IMAP_UNIT_LITERAL_DATA)
		raw_line(r, dir, bytes, len);
	else
		line_unit(r, dir, bytes, len, unit);
}

void render_raw(struct renderer *r, enum imap_dir dir, imap_time_us ts, const uint8_t *bytes,
		size_t len)
{
	place_bytes(r, ts, dir, r->owed[dir] > 0);
	raw_line(r, dir, bytes, len);
	r->owed[dir] -= len < r->owed[dir] ? len : r->owed[dir];
	r->begun[dir] = r->owed[dir] > 0;
}

void render_event(struct renderer *r, imap_time_us ts, const char *line)
{
	place(r, ts, SCRIPT_STEP_US);
	xbuf_printf(&r->out, "%s\n", line);
}

void render_time(struct renderer *r, imap_time_us ts)
{
	if (!r->started) {
		/* a session with nothing in it: "@" opens it, or the parser
		 * would take the next session's lines for this one's */
		r->started = true;
		render_wait(&r->out, '@', ts > r->prev ? ts - r->prev : 0);
		r->prev = ts > r->prev ? ts : r->prev;
		return;
	}
	place(r, ts, SCRIPT_STEP_US);
}

void render_comment(struct renderer *r, const char *text)
{
	xbuf_printf(&r->out, "# %s\n", text);
}
