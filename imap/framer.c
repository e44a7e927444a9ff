/* IMAP framer: a byte-driven state machine over one direction.
 *
 * Three layers of state run together on each line byte:
 *  - the head: the first two tokens of a server line decide whether the
 *    rest is free text (OK/NO/BAD/BYE/PREAUTH, "+"), where braces and quotes
 *    mean nothing (RFC 3501 section 9, resp-text);
 *  - quoting: a quoted string hides braces;
 *  - the literal marker: "{digits[+]}" or "~{digits[+]}" right before the
 *    line end announces a literal.
 * Literal bytes are never scanned; they are counted down. */
#include "imap/framer.h"
#include "imap/line_scan.h"
#include "imap/wipebuf.h"

#include <stdlib.h>
#include <string.h>

enum framer_state {
	ST_LINE,
	ST_LITERAL,
};

enum head_state {
	HEAD_FIRST,  /* in the first token (tag, "*" or "+") */
	HEAD_SECOND, /* in the second token (command, status, number) */
	HEAD_BODY,   /* arguments: quotes and literals count */
	HEAD_TEXT,   /* free text: only the line end counts */
};

enum marker_state {
	MK_NONE,
	MK_TILDE,     /* "~" */
	MK_OPEN,      /* "{" or "~{" */
	MK_DIGITS,    /* "{12" */
	MK_PLUS,      /* "{12+" */
	MK_CLOSE,     /* "{12}" or "{12+}" */
	MK_BAD_OPEN,  /* "{" followed by something that is no count */
	MK_BAD_CLOSE, /* "{..}" with a bad count */
};

struct imap_framer {
	enum imap_dir dir;
	size_t max_line;
	imap_unit_cb *cb;
	void *ctx;
	uint64_t offset; /* bytes fed so far */

	enum framer_state state;
	uint8_t *buf; /* observed bytes of the unit in progress */
	size_t buf_len;
	size_t buf_cap;
	uint64_t unit_start; /* stream offset of the unit in progress */
	uint64_t unit_wire;  /* bytes of it seen so far */
	uint32_t flags;

	/* line state */
	enum head_state head;
	bool first_is_plus;
	size_t first_len;
	char word[8];
	size_t word_len;
	bool continued; /* the next segment resumes a line after a literal */
	bool in_quote;
	bool quote_escape;
	bool prev_cr;
	enum marker_state marker;
	bool marker_cr; /* a CR right after the closing brace */
	bool marker_binary;
	bool marker_plus;
	bool marker_overflow;
	uint64_t marker_n;

	/* literal state */
	uint64_t lit_len;
	uint64_t lit_pos;

	bool stop; /* imap_framer_stop() was called from the callback */
	imap_bytes_cb *tap;
	bool tap_whole; /* the tap's bytes are the whole unit reported next */
};

const char *imap_unit_kind_str(enum imap_unit_kind kind)
{
	switch (kind) {
	case IMAP_UNIT_LINE:
		return "line";
	case IMAP_UNIT_LITERAL_HEAD:
		return "literal-head";
	case IMAP_UNIT_LITERAL_DATA:
		return "literal-data";
	}
	return "unit?";
}

static void reset_line(struct imap_framer *f, bool continued)
{
	/* client lines are arguments throughout (see head_byte) */
	f->head = continued || f->dir == IMAP_C2S ? HEAD_BODY : HEAD_FIRST;
	f->first_is_plus = false;
	f->first_len = 0;
	f->word_len = 0;
	f->continued = continued;
	f->in_quote = false;
	f->quote_escape = false;
	f->prev_cr = false;
	f->marker = MK_NONE;
	f->marker_cr = false;
	f->marker_overflow = false;
	f->flags = continued ? IMAP_UNIT_CONTINUED : 0;
	f->unit_wire = 0;
	f->buf_len = 0;
}

struct imap_framer *imap_framer_new(enum imap_dir dir, size_t max_line,
				    imap_unit_cb *cb, void *ctx)
{
	struct imap_framer *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->dir = dir;
	f->max_line = max_line ? max_line : IMAP_FRAMER_DEFAULT_MAX_LINE;
	f->cb = cb;
	f->ctx = ctx;
	imap_framer_reset(f);
	return f;
}

/* The whole buffer, before it is freed or left for a larger one. */
static void wipe_buffer(struct imap_framer *f)
{
	if (f->buf != NULL)
		explicit_bzero(f->buf, f->buf_cap);
}

void imap_framer_free(struct imap_framer **framer)
{
	if (*framer == NULL)
		return;
	wipe_buffer(*framer);
	free((*framer)->buf);
	free(*framer);
	*framer = NULL;
}

void imap_framer_reset(struct imap_framer *f)
{
	f->state = ST_LINE;
	f->lit_len = 0;
	f->lit_pos = 0;
	reset_line(f, false);
	f->unit_start = f->offset;
}

bool imap_framer_cancel_literal(struct imap_framer *f)
{
	if (f->state != ST_LITERAL || f->lit_pos != 0 || f->unit_wire != 0)
		return false;
	f->state = ST_LINE;
	reset_line(f, false);
	return true;
}

uint64_t imap_framer_offset(const struct imap_framer *f)
{
	return f->offset;
}

uint64_t imap_framer_pending(const struct imap_framer *f)
{
	return f->unit_wire;
}

uint64_t imap_framer_literal_left(const struct imap_framer *f)
{
	return f->state == ST_LITERAL ? f->lit_len - f->lit_pos - f->unit_wire : 0;
}

void imap_framer_wipe(struct imap_framer *f)
{
	if (f->buf != NULL)
		explicit_bzero(f->buf, f->buf_len);
}

void imap_framer_trim(struct imap_framer *f)
{
	if (f->buf_len == 0 && f->buf != NULL) {
		wipe_buffer(f);
		free(f->buf);
		f->buf = NULL;
		f->buf_cap = 0;
	}
}

/* Keeps up to limit observed bytes of the unit in progress. Out of memory
 * only loses observed bytes (the unit is then marked truncated). */
static void keep(struct imap_framer *f, const uint8_t *p, size_t n, size_t limit)
{
	if (f->buf_len >= limit) {
		return;
	}
	if (n > limit - f->buf_len)
		n = limit - f->buf_len;
	if (!imap_wipebuf_grow(&f->buf, &f->buf_cap, f->buf_len, f->buf_len + n, 256, limit)) {
		f->flags |= IMAP_UNIT_TRUNCATED;
		return;
	}
	memcpy(f->buf + f->buf_len, p, n);
	f->buf_len += n;
}

static void emit(struct imap_framer *f, struct imap_unit *u, const uint8_t *direct,
		 size_t direct_len)
{
	u->offset = f->unit_start;
	u->wire_len = f->unit_wire;
	if (f->buf_len == 0 && direct != NULL) {
		u->data = direct;
		u->len = direct_len;
	} else {
		u->data = f->buf;
		u->len = f->buf_len;
	}
	f->cb(f->ctx, u);
	f->unit_start += f->unit_wire;
	f->unit_wire = 0;
	f->buf_len = 0;
}

static bool is_text_word(const char *w, size_t n)
{
	static const char *const words[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i]) == n && memcmp(words[i], w, n) == 0)
			return true;
	return false;
}

static void enter_text(struct imap_framer *f)
{
	f->head = HEAD_TEXT;
	f->in_quote = false;
	f->marker = MK_NONE;
}

/* Head tokens of a server line; client lines are arguments throughout. */
static void head_byte(struct imap_framer *f, uint8_t c)
{
	if (f->dir == IMAP_C2S) {
		f->head = HEAD_BODY;
		return;
	}
	if (f->head == HEAD_FIRST) {
		if (c == ' ') {
			if (f->first_is_plus)
				enter_text(f);
			else
				f->head = HEAD_SECOND;
		} else {
			f->first_is_plus = f->first_len == 0 && c == '+';
			if (f->first_len > 0)
				f->first_is_plus = false;
			f->first_len++;
		}
		return;
	}
	/* HEAD_SECOND */
	if (c == ' ') {
		if (is_text_word(f->word, f->word_len))
			enter_text(f);
		else
			f->head = HEAD_BODY;
	} else if (f->word_len < sizeof(f->word)) {
		f->word[f->word_len++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
	} else {
		f->head = HEAD_BODY;
	}
}

static void marker_byte(struct imap_framer *f, uint8_t c)
{
	if (f->marker_cr) {
		/* only LF may follow "}\r" for a marker; LF is handled by the caller */
		f->marker = MK_NONE;
		f->marker_cr = false;
	}
	if (c == '\r' && (f->marker == MK_CLOSE || f->marker == MK_BAD_CLOSE)) {
		f->marker_cr = true;
		return;
	}
	switch (f->marker) {
	case MK_OPEN:
	case MK_DIGITS:
		if (c >= '0' && c <= '9') {
			uint64_t d = (uint64_t)(c - '0');

			if (f->marker_n > ((uint64_t)IMAP_LITERAL_MAX - d) / 10)
				f->marker_overflow = true;
			else
				f->marker_n = f->marker_n * 10 + d;
			f->marker = MK_DIGITS;
			return;
		}
		if (f->marker == MK_DIGITS && c == '+') {
			f->marker = MK_PLUS;
			f->marker_plus = true;
			return;
		}
		if (f->marker == MK_DIGITS && c == '}') {
			f->marker = MK_CLOSE;
			return;
		}
		f->marker = c == '}' ? MK_BAD_CLOSE : MK_BAD_OPEN;
		return;
	case MK_PLUS:
		f->marker = c == '}' ? MK_CLOSE : c == '{' ? MK_NONE : MK_BAD_OPEN;
		if (c != '{')
			return;
		break;
	case MK_BAD_OPEN:
		if (c == '}')
			f->marker = MK_BAD_CLOSE;
		else if (c == '{')
			break;
		return;
	case MK_NONE:
	case MK_TILDE:
	case MK_CLOSE:
	case MK_BAD_CLOSE:
		break;
	}
	if (c == '{') {
		f->marker_binary = f->marker == MK_TILDE;
		f->marker = MK_OPEN;
		f->marker_n = 0;
		f->marker_plus = false;
		f->marker_overflow = false;
	} else if (c == '~') {
		f->marker = MK_TILDE;
	} else {
		f->marker = MK_NONE;
	}
}

static void body_byte(struct imap_framer *f, uint8_t c)
{
	if (f->in_quote) {
		if (f->quote_escape)
			f->quote_escape = false;
		else if (c == '\\')
			f->quote_escape = true;
		else if (c == '"')
			f->in_quote = false;
		return;
	}
	if (c == '"') {
		f->in_quote = true;
		f->marker = MK_NONE;
		f->marker_cr = false;
		return;
	}
	marker_byte(f, c);
}

/* Line end reached at p[i] (an LF): emits the segment. Returns true when a
 * literal follows. */
static bool end_line(struct imap_framer *f, const uint8_t *seg, size_t seg_len)
{
	struct imap_unit u = {0};
	bool literal = false;

	if (!f->prev_cr)
		f->flags |= IMAP_UNIT_BARE_LF;
	if (f->in_quote)
		f->flags |= IMAP_UNIT_OPEN_QUOTE;
	if (f->head != HEAD_TEXT && f->marker == MK_CLOSE) {
		if (f->marker_overflow) {
			f->flags |= IMAP_UNIT_BAD_LITERAL;
		} else {
			literal = true;
			u.literal_len = f->marker_n;
			if (f->marker_plus)
				f->flags |= IMAP_UNIT_LITERAL_NONSYNC;
			if (f->marker_binary)
				f->flags |= IMAP_UNIT_LITERAL_BINARY;
		}
	} else if (f->head != HEAD_TEXT && f->marker == MK_BAD_CLOSE) {
		f->flags |= IMAP_UNIT_BAD_LITERAL;
	}
	u.kind = literal ? IMAP_UNIT_LITERAL_HEAD : IMAP_UNIT_LINE;
	if (f->continued)
		u.after_literal = f->lit_len;
	if (f->unit_wire > f->max_line)
		f->flags |= IMAP_UNIT_TRUNCATED;
	u.flags = f->flags;
	emit(f, &u, seg, seg_len < f->max_line ? seg_len : f->max_line);
	if (literal) {
		f->lit_len = u.literal_len;
		f->lit_pos = 0;
		reset_line(f, true);
		f->state = f->lit_len > 0 ? ST_LITERAL : ST_LINE;
	} else {
		reset_line(f, false);
	}
	return literal;
}

/* How many bytes from p on leave the line state as it is. */
static size_t quiet_run(const struct imap_framer *f, const uint8_t *p, size_t n)
{
	uint8_t mask;

	if (f->head == HEAD_TEXT)
		mask = IMAP_SCAN_TEXT;
	else if (f->head != HEAD_BODY)
		return 0;
	else if (f->in_quote && !f->quote_escape)
		mask = IMAP_SCAN_QUOTE;
	else if (!f->in_quote && f->marker == MK_NONE && !f->marker_cr)
		mask = IMAP_SCAN_BODY;
	else
		return 0;
	return imap_line_scan(p, n, mask);
}

/* The head's tokens a run at a time: bytes that are neither a space nor
 * a signal of the body change only the token being read (head_byte), and
 * body_byte leaves them be while no quote or marker has begun. Returns
 * how many bytes from p on were taken. */
static size_t head_run(struct imap_framer *f, const uint8_t *p, size_t n)
{
	size_t k = 0;

	if (f->in_quote || f->marker != MK_NONE || f->marker_cr)
		return 0;
	if (f->head == HEAD_FIRST) {
		while (k < n && p[k] != ' ' && !(imap_line_signal[p[k]] & IMAP_SCAN_BODY))
			k++;
		if (k > 0) {
			f->first_is_plus = f->first_len == 0 && k == 1 && p[0] == '+';
			f->first_len += k;
		}
		return k;
	}
	while (k < n && p[k] != ' ' && !(imap_line_signal[p[k]] & IMAP_SCAN_BODY)) {
		uint8_t c = p[k];

		if (f->word_len == sizeof(f->word)) {
			f->head = HEAD_BODY; /* too long for a status word */
			break;
		}
		f->word[f->word_len++] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
		k++;
	}
	return k;
}

/* The line ends at p[len - 1] (an LF): emits it; returns len. */
static size_t line_ends(struct imap_framer *f, const uint8_t *p, size_t len, bool fresh)
{
	if (f->tap != NULL)
		f->tap(f->ctx, p, len);
	f->unit_wire += len;
	if (!fresh || f->buf_len > 0)
		keep(f, p, len, f->max_line);
	end_line(f, fresh ? p : NULL, len);
	return len;
}

/* Consumes line bytes from p[0..n). Returns how many were used. */
static size_t feed_line(struct imap_framer *f, const uint8_t *p, size_t n)
{
	const bool fresh = f->unit_wire == 0;
	size_t i;

	/* Most lines hold no quote, brace, tilde or NUL: such a line ends
	 * plain whatever its head says, and one scan finds its end. Any
	 * other byte first leaves the line to the byte loop, from its start. */
	if (fresh && !f->in_quote && f->marker == MK_NONE && !f->marker_cr) {
		size_t k = imap_line_scan(p, n, IMAP_SCAN_BODY);

		if (k < n && p[k] == '\n') {
			f->prev_cr = false;
			return line_ends(f, p, k + 1, true);
		}
		if (n - k >= 2 && p[k] == '\r' && p[k + 1] == '\n') {
			f->prev_cr = true;
			return line_ends(f, p, k + 2, true);
		}
	}
	for (i = 0; i < n; i++) {
		uint8_t c;
		size_t run = f->head == HEAD_FIRST || f->head == HEAD_SECOND ? head_run(f, p + i, n - i)
									      : quiet_run(f, p + i, n - i);

		if (run > 0) {
			f->prev_cr = false;
			i += run;
			if (i == n)
				break;
		}
		c = p[i];

		if (c == '\n')
			return line_ends(f, p, i + 1, fresh);
		if (c == 0)
			f->flags |= IMAP_UNIT_NUL;
		if (f->head == HEAD_TEXT) {
			f->prev_cr = c == '\r';
			continue;
		}
		if (f->head != HEAD_BODY && !f->in_quote)
			head_byte(f, c);
		if (f->head != HEAD_TEXT)
			body_byte(f, c);
		f->prev_cr = c == '\r';
	}
	if (f->tap != NULL)
		f->tap(f->ctx, p, n);
	f->unit_wire += n;
	keep(f, p, n, f->max_line);
	return n;
}

static size_t feed_literal(struct imap_framer *f, const uint8_t *p, size_t n)
{
	uint64_t left = f->lit_len - f->lit_pos;
	uint64_t chunk_left = IMAP_FRAMER_CHUNK - (f->lit_pos + f->unit_wire) % IMAP_FRAMER_CHUNK;
	uint64_t take;
	struct imap_unit u = {0};

	/* unit_wire counts bytes of the current chunk; lit_pos counts whole
	 * chunks already emitted */
	if (chunk_left > left - f->unit_wire)
		chunk_left = left - f->unit_wire;
	take = n < chunk_left ? n : chunk_left;
	if (f->tap != NULL) {
		/* a chunk in one piece is reported from p, right after */
		f->tap_whole = take == chunk_left && f->unit_wire == 0 && f->buf_len == 0;
		f->tap(f->ctx, p, (size_t)take);
		f->tap_whole = false;
	}
	if (take < chunk_left) {
		keep(f, p, (size_t)take, IMAP_FRAMER_CHUNK);
		f->unit_wire += take;
		return (size_t)take;
	}
	/* completes a chunk */
	if (f->unit_wire > 0)
		keep(f, p, (size_t)take, IMAP_FRAMER_CHUNK);
	f->unit_wire += take;
	u.kind = IMAP_UNIT_LITERAL_DATA;
	u.literal_len = f->lit_len;
	u.literal_offset = f->lit_pos;
	f->lit_pos += f->unit_wire;
	if (f->lit_pos == f->lit_len)
		u.flags = IMAP_UNIT_LITERAL_END;
	if (f->marker_binary)
		u.flags |= IMAP_UNIT_LITERAL_BINARY;
	emit(f, &u, p, (size_t)take);
	if (f->lit_pos == f->lit_len) {
		f->state = ST_LINE;
		reset_line(f, true);
	}
	return (size_t)take;
}

bool imap_framer_tap_whole(const struct imap_framer *f)
{
	return f->tap_whole;
}

void imap_framer_set_tap(struct imap_framer *f, imap_bytes_cb *tap)
{
	f->tap = tap;
}

void imap_framer_stop(struct imap_framer *f)
{
	f->stop = true;
}

size_t imap_framer_feed(struct imap_framer *f, const uint8_t *data, size_t len)
{
	size_t total = len;

	f->stop = false;
	while (len > 0 && !f->stop) {
		size_t used;

		if (f->state == ST_LITERAL)
			used = feed_literal(f, data, len);
		else
			used = feed_line(f, data, len);
		f->offset += used;
		data += used;
		len -= used;
	}
	f->stop = false;
	return total - len;
}
