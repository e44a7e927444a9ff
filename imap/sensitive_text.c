/* The values themselves (imap/sensitive.h): which runs of a user name, a
 * mailbox name, a header's text or a message may be replaced, keeping
 * what makes each what it is. */
#include "imap/sensitive_int.h"

#include <string.h>

/* An encoded word's charset, and its text, are at most this long here:
 * RFC 2047 keeps the whole word within 75 bytes. */
#define EW_CHARSET_MAX 40
#define EW_TEXT_MAX 1000

bool sens_word_byte(uint8_t c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80;
}

static bool hex_digit(uint8_t c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

bool sens_eq(const uint8_t *p, size_t n, const char *word)
{
	size_t len = strlen(word);

	if (n != len)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t a = p[i], b = (uint8_t)word[i];

		if (a >= 'a' && a <= 'z')
			a = (uint8_t)(a - 32);
		if (b >= 'a' && b <= 'z')
			b = (uint8_t)(b - 32);
		if (a != b)
			return false;
	}
	return true;
}

static void emit(const struct sens_emit *e, const uint8_t *p, size_t n, unsigned kinds,
		 bool if_known)
{
	struct imap_sens_span s = {
		.off = (size_t)(p - e->base), .len = n, .kinds = kinds, .if_known = if_known};

	if (n > 0 && kinds != 0)
		e->cb(e->ctx, &s);
}

/* Runs of word bytes; with qp, "=HH" (a quoted-printable byte) joins the
 * run, so its replacement is letters, not an escape gone bad. */
static void words(const uint8_t *p, size_t n, unsigned kinds, bool if_known, bool qp,
		  const struct sens_emit *e)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n) {
			if (sens_word_byte(p[j]))
				j++;
			else if (qp && p[j] == '=' && j + 2 < n && hex_digit(p[j + 1]) &&
				 hex_digit(p[j + 2]))
				j += 3;
			else
				break;
		}
		if (j > i) {
			emit(e, p + i, j - i, kinds, if_known);
			i = j;
		} else {
			i++;
		}
	}
}

/* A mailbox name: INBOX (any case) where it starts the name is kept, as
 * IMAP gives it meaning; each part between delimiters is a run, an
 * &...- run of modified UTF-7 with it, so what replaces it is plain
 * letters, valid modified UTF-7 again. */
static void mailbox(const uint8_t *p, size_t n, unsigned kinds, bool if_known,
		    const struct sens_emit *e)
{
	size_t i = 0;

	if (n >= 5 && sens_eq(p, 5, "INBOX") && (n == 5 || !sens_word_byte(p[5])))
		i = 5;
	while (i < n) {
		size_t j = i;

		while (j < n) {
			if (sens_word_byte(p[j])) {
				j++;
			} else if (p[j] == '&') {
				j++;
				while (j < n && (sens_word_byte(p[j]) || p[j] == '+' || p[j] == ','))
					j++;
				if (j < n && p[j] == '-')
					j++;
			} else {
				break;
			}
		}
		if (j > i) {
			emit(e, p + i, j - i, kinds, if_known);
			i = j;
		} else {
			i++;
		}
	}
}

/* "=?charset?B?text?=" at p: its length, and where its text is. 0 when p
 * holds no complete encoded word. */
static size_t encoded_word(const uint8_t *p, size_t n, size_t *text_at, size_t *text_len,
			   uint8_t *enc)
{
	size_t i = 2, t;

	while (i < n && i < 2 + EW_CHARSET_MAX && p[i] != '?' && p[i] > 0x20 && p[i] < 0x7f)
		i++;
	if (i == 2 || i + 2 >= n || p[i] != '?' || p[i + 2] != '?')
		return 0;
	*enc = (uint8_t)(p[i + 1] | 0x20);
	if (*enc != 'b' && *enc != 'q')
		return 0;
	t = i + 3;
	for (i = t; i + 1 < n && i - t < EW_TEXT_MAX; i++) {
		if (p[i] == '?' && p[i + 1] == '=') {
			*text_at = t;
			*text_len = i - t;
			return i + 2;
		}
		if (p[i] <= 0x20 || p[i] >= 0x7f)
			return 0;
	}
	return 0;
}

/* Q text: every byte but '_' (a space), and the quote and backslash a
 * quoted string needs, joins runs ("=C3=A9" becomes letters). */
static void q_text(const uint8_t *p, size_t n, unsigned kinds, const struct sens_emit *e)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && p[j] != '_' && p[j] != '"' && p[j] != '\\')
			j++;
		if (j > i)
			emit(e, p + i, j - i, kinds, false);
		i = j + 1;
	}
}

/* Header text: words, and encoded words whose charset and encoding stay,
 * their text replaced with what the same encoding can hold. */
static void phrase(const uint8_t *p, size_t n, unsigned kinds, const struct sens_emit *e)
{
	size_t i = 0, start = 0, at = 0, len = 0, whole;
	uint8_t enc = 0;

	while (i + 1 < n) {
		if (p[i] == '=' && p[i + 1] == '?' &&
		    (whole = encoded_word(p + i, n - i, &at, &len, &enc)) > 0) {
			words(p + start, i - start, kinds, false, false, e);
			if (enc == 'b') /* base64 letters and digits stay base64 */
				words(p + i + at, len, kinds, false, false, e);
			else
				q_text(p + i + at, len, kinds, e);
			i += whole;
			start = i;
			continue;
		}
		i++;
	}
	words(p + start, n - start, kinds, false, false, e);
}

void sens_bounds_learn(struct sens_bounds *bounds, const uint8_t *p, size_t n)
{
	unsigned slot;

	if (n == 0 || n > SENS_BOUNDARY_MAX)
		return;
	for (unsigned i = 0; i < SENS_BOUNDARIES; i++)
		if (bounds->len[i] == n && memcmp(bounds->b[i], p, n) == 0)
			return;
	slot = bounds->next++ % SENS_BOUNDARIES;
	memcpy(bounds->b[slot], p, n);
	bounds->len[slot] = (uint8_t)n;
}

/* The longest learned boundary p starts with, or 0. */
static size_t boundary_at(const struct sens_bounds *bounds, const uint8_t *p, size_t n)
{
	size_t best = 0;

	for (unsigned i = 0; i < SENS_BOUNDARIES; i++)
		if (bounds->len[i] > best && bounds->len[i] <= n &&
		    memcmp(bounds->b[i], p, bounds->len[i]) == 0)
			best = bounds->len[i];
	return best;
}

/* The end of a parameter's value at p: a quoted string or a token. */
static size_t param_value(const uint8_t *p, size_t n, size_t *from)
{
	size_t i = 0;

	if (n > 0 && p[0] == '"') {
		for (i = 1; i < n && p[i] != '"'; i++)
			if (p[i] == '\\')
				i++;
		*from = 1;
		return i < n ? i : n;
	}
	while (i < n && p[i] != ';' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
		i++;
	*from = 0;
	return i;
}

/* Content-Type and Content-Disposition: kept, for clients to find the
 * parts; a boundary learned, a file's name replaced (as body text). */
static void content_params(struct sens_bounds *bounds, const uint8_t *p, size_t n,
			   const struct sens_emit *e)
{
	size_t i = 0, from, end;

	while (i < n) {
		if (n - i >= 9 && sens_eq(p + i, 9, "boundary=")) {
			i += 9;
			end = param_value(p + i, n - i, &from);
			if (end > from)
				sens_bounds_learn(bounds, p + i + from, end - from);
			i += end + 1;
		} else if (n - i >= 4 && sens_eq(p + i, 4, "name")) {
			size_t j = i + 4;

			while (j < n && (p[j] == '*' || (p[j] >= '0' && p[j] <= '9')))
				j++;
			if (j < n && p[j] == '=') {
				j++;
				end = param_value(p + j, n - j, &from);
				words(p + j + from, end > from ? end - from : 0, IMAP_SENS_BODIES, false,
				      true, e);
				i = j + end + 1;
			} else {
				i = j;
			}
		} else {
			i++;
		}
	}
}

/* How a header field is read, from its name. In a MIME part's header
 * block, what is not structure counts as body. */
static void field_mode(struct sens_text *t)
{
	size_t n = t->name_len;
	const uint8_t *name = (const uint8_t *)t->name;

	while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
		n--;
	t->field_ctype = false;
	t->field = (struct sens_value){.mode = SENS_PHRASE,
				       .kinds = t->part ? IMAP_SENS_BODIES : IMAP_SENS_ADDRESSES};
	if (t->name_len > SENS_NAME_MAX)
		return;
	if (!t->part && (sens_eq(name, n, "Subject") || sens_eq(name, n, "Thread-Topic"))) {
		t->field.kinds = IMAP_SENS_SUBJECTS;
	} else if (sens_eq(name, n, "Content-Type") || sens_eq(name, n, "Content-Disposition")) {
		t->field.mode = SENS_KEEP;
		t->field_ctype = true;
	} else if (sens_eq(name, n, "Date") || sens_eq(name, n, "MIME-Version") ||
		   sens_eq(name, n, "Content-Transfer-Encoding") ||
		   sens_eq(name, n, "Content-Language")) {
		t->field.mode = SENS_KEEP;
	}
}

static void field_value(struct sens_text *t, struct sens_bounds *bounds, const uint8_t *p,
			size_t n, const struct sens_emit *e)
{
	size_t i = 0;

	if (t->field_ctype) {
		while (i < n && (p[i] == ' ' || p[i] == '\t'))
			i++;
		/* an attached message: its own header block comes after the part's */
		if (t->part && n - i >= 14 && sens_eq(p + i, 14, "message/rfc822"))
			t->embedded = true;
		content_params(bounds, p, n, e);
	} else {
		sens_value_scan(t->field, bounds, p, n, e);
	}
}

static bool blank_line(const uint8_t *p, size_t n)
{
	return (n == 1 && (p[0] == '\n' || p[0] == '\r')) || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

/* A piece of a header block; start: it begins a line. */
static void header_piece(struct sens_text *t, struct sens_bounds *bounds, const uint8_t *p,
			 size_t n, bool start, const struct sens_emit *e)
{
	size_t j = 0;

	if (start) {
		t->in_name = false;
		if (blank_line(p, n)) {
			t->body = !t->embedded;
			t->part = false;
			t->embedded = false;
			return;
		}
		if (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
			field_value(t, bounds, p, n, e);
			return;
		}
		t->in_name = true;
		t->name_len = 0;
	}
	if (!t->in_name) {
		field_value(t, bounds, p, n, e);
		return;
	}
	while (j < n && p[j] != ':' && ((p[j] > 0x20 && p[j] < 0x7f) || p[j] == ' ' || p[j] == '\t') &&
	       t->name_len <= SENS_NAME_MAX) {
		if (t->name_len < SENS_NAME_MAX)
			t->name[t->name_len] = (char)p[j];
		t->name_len++;
		j++;
	}
	if (j < n && p[j] == ':') {
		t->in_name = false;
		field_mode(t);
		field_value(t, bounds, p + j + 1, n - j - 1, e);
		return;
	}
	if (j == n) {
		/* the name goes on in the next chunk: whether it is one is not
		 * known yet, so its bytes so far are masked (a name cut so is the
		 * one a token may stand for) */
		words(p, n, IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS | (t->part ? IMAP_SENS_BODIES : 0),
		      false, false, e);
		return;
	}
	/* no field name: nothing here can be told apart, mask it all */
	t->in_name = false;
	t->field_ctype = false;
	t->field = (struct sens_value){
		.mode = SENS_WORDS,
		.kinds = IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS | (t->part ? IMAP_SENS_BODIES : 0)};
	sens_value_scan(t->field, bounds, p, n, e);
}

/* Whether p is a boundary line ("--" boundary ["--"], spaces, its line
 * end), *closing for the last; with partial, whether p (a line's start,
 * the rest in the next chunk) may still become one. */
static bool boundary_line(const struct sens_bounds *bounds, const uint8_t *p, size_t n,
			  bool partial, bool *closing)
{
	size_t k = 0, j;

	*closing = false;
	if (partial) {
		for (unsigned b = 0; b < SENS_BOUNDARIES && n >= 2; b++) {
			size_t blen = bounds->len[b];

			if (blen == 0 || memcmp(p + 2, bounds->b[b], n - 2 < blen ? n - 2 : blen) != 0)
				continue;
			for (j = 2 + blen; j < n && (p[j] == '-' || p[j] == ' ' || p[j] == '\t'); j++)
				;
			if (p[0] == '-' && p[1] == '-' && j >= n)
				return true;
		}
		return n == 1 && p[0] == '-' && bounds->next > 0;
	}
	if (n < 2 || p[0] != '-' || p[1] != '-' || (k = boundary_at(bounds, p + 2, n - 2)) == 0)
		return false;
	j = 2 + k;
	if (j + 1 < n && p[j] == '-' && p[j + 1] == '-') {
		j += 2;
		*closing = true;
	}
	while (j < n && (p[j] == ' ' || p[j] == '\t'))
		j++;
	return j < n && (p[j] == '\r' || p[j] == '\n');
}

/* A piece of a body: a boundary line is kept (a part's header block
 * follows it), the rest is words. A line that a chunk's end cuts while it
 * may still be a boundary line waits in pend for the next chunk. */
static void body_piece(struct sens_text *t, struct sens_bounds *bounds, const uint8_t *p, size_t n,
		       bool start, const struct sens_emit *e)
{
	uint8_t joined[sizeof(t->pend) * 2];
	bool closing = false, boundary = false;

	if (!start && t->pend_len > 0) {
		size_t m = n < sizeof(joined) - t->pend_len ? n : sizeof(joined) - t->pend_len;

		memcpy(joined, t->pend, t->pend_len);
		memcpy(joined + t->pend_len, p, m);
		boundary = boundary_line(bounds, joined, t->pend_len + m, false, &closing);
		t->pend_len = 0;
	} else if (start) {
		boundary = boundary_line(bounds, p, n, false, &closing);
		if (!boundary && n > 0 && p[n - 1] != '\n' && n <= sizeof(t->pend) &&
		    boundary_line(bounds, p, n, true, &closing)) {
			/* the boundary's own bytes so far: nothing to mask in them */
			memcpy(t->pend, p, n);
			t->pend_len = (uint8_t)n;
			return;
		}
	}
	if (boundary) {
		if (!closing) {
			t->body = false;
			t->part = true;
		}
		return;
	}
	words(p, n, IMAP_SENS_BODIES, false, true, e);
}

void sens_text_start(struct sens_text *t, struct sens_value v)
{
	memset(t, 0, sizeof(*t));
	t->v = v;
	t->line_start = true;
	t->body = v.mode == SENS_TEXT;
}

void sens_text_feed(struct sens_text *t, struct sens_bounds *bounds, const uint8_t *p, size_t n,
		    const struct sens_emit *e)
{
	size_t i = 0;

	switch (t->v.mode) {
	case SENS_KEEP:
	case SENS_WORDS:
	case SENS_MAILBOX:
	case SENS_PHRASE:
		/* a run cut by a chunk's end is two runs: lengths stay right */
		sens_value_scan(t->v, bounds, p, n, e);
		return;
	case SENS_MESSAGE:
	case SENS_HEADER:
	case SENS_TEXT:
		break;
	}
	while (i < n) {
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		size_t end = lf != NULL ? (size_t)(lf - p) + 1 : n;
		bool start = t->line_start;

		t->line_start = lf != NULL;
		if (t->body)
			body_piece(t, bounds, p + i, end - i, start, e);
		else
			header_piece(t, bounds, p + i, end - i, start, e);
		i = end;
	}
}

void sens_value_scan(struct sens_value v, struct sens_bounds *bounds, const uint8_t *p, size_t n,
		     const struct sens_emit *e)
{
	struct sens_text t;

	switch (v.mode) {
	case SENS_KEEP:
		return;
	case SENS_WORDS:
		words(p, n, v.kinds, v.if_known, false, e);
		return;
	case SENS_MAILBOX:
		mailbox(p, n, v.kinds, v.if_known, e);
		return;
	case SENS_PHRASE:
		phrase(p, n, v.kinds, e);
		return;
	case SENS_MESSAGE:
	case SENS_HEADER:
	case SENS_TEXT:
		sens_text_start(&t, v);
		sens_text_feed(&t, bounds, p, n, e);
		return;
	}
}

/* BODYSTRUCTURE strings kept as they are: media types, parameter names,
 * encodings, dispositions. Anything else in it (a file's name, a
 * description, an attached message's envelope) is masked. */
static const char *const structure_words[] = {
	"TEXT", "PLAIN", "HTML", "ENRICHED", "CALENDAR", "MULTIPART", "MIXED", "ALTERNATIVE",
	"RELATED", "DIGEST", "SIGNED", "ENCRYPTED", "REPORT", "MESSAGE", "RFC822", "GLOBAL",
	"DELIVERY-STATUS", "DISPOSITION-NOTIFICATION", "RFC822-HEADERS", "APPLICATION",
	"OCTET-STREAM", "PDF", "PGP-SIGNATURE", "PGP-ENCRYPTED", "PKCS7-SIGNATURE",
	"PKCS7-MIME", "IMAGE", "JPEG", "PNG", "GIF", "AUDIO", "VIDEO", "CHARSET", "BOUNDARY",
	"NAME", "FILENAME", "FORMAT", "DELSP", "FLOWED", "FIXED", "TYPE", "PROTOCOL", "MICALG",
	"REPORT-TYPE", "7BIT", "8BIT", "BINARY", "BASE64", "QUOTED-PRINTABLE", "INLINE",
	"ATTACHMENT", "US-ASCII", "UTF-8", "ISO-8859-1", "ISO-8859-15", "WINDOWS-1252", "YES",
	"NO",
};

static bool structure_word(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < sizeof(structure_words) / sizeof(structure_words[0]); i++)
		if (sens_eq(p, n, structure_words[i]))
			return true;
	return false;
}

/* the next string is a parameter value to keep */
#define B_KEEP_NEXT 1u
#define B_BOUNDARY_NEXT 2u

struct sens_value sens_structure_value(unsigned *state, struct sens_bounds *bounds,
				       const uint8_t *p, size_t n)
{
	unsigned flags = *state;

	*state = 0;
	if (flags & B_BOUNDARY_NEXT) {
		sens_bounds_learn(bounds, p, n);
		return (struct sens_value){.mode = SENS_KEEP};
	}
	if (flags & B_KEEP_NEXT)
		return (struct sens_value){.mode = SENS_KEEP};
	if (sens_eq(p, n, "BOUNDARY"))
		*state = B_BOUNDARY_NEXT;
	else if (sens_eq(p, n, "CHARSET") || sens_eq(p, n, "FORMAT") || sens_eq(p, n, "DELSP") ||
		 sens_eq(p, n, "TYPE") || sens_eq(p, n, "PROTOCOL") || sens_eq(p, n, "MICALG") ||
		 sens_eq(p, n, "REPORT-TYPE"))
		*state = B_KEEP_NEXT;
	if (structure_word(p, n))
		return (struct sens_value){.mode = SENS_KEEP};
	/* numbers (sizes, lines) are atoms; strings that are digits too */
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return (struct sens_value){.mode = SENS_WORDS, .kinds = IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS | IMAP_SENS_BODIES};
	return (struct sens_value){.mode = SENS_KEEP};
}

static const char *const kind_names[] = {"users", "addresses", "subjects", "bodies", "mailboxes"};

const char *imap_sens_kind_str(unsigned kind)
{
	for (unsigned i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (kind == 1u << i)
			return kind_names[i];
	return kind == IMAP_SENS_ALL ? "all" : "?";
}

int imap_sens_kinds_parse(const char *list, unsigned *kinds_r, size_t *bad_r)
{
	const char *p = list;

	*kinds_r = 0;
	for (;;) {
		size_t n = strcspn(p, ",");
		unsigned kind = 0;

		if (n == 3 && strncmp(p, "all", 3) == 0)
			kind = IMAP_SENS_ALL;
		for (unsigned i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
			if (strlen(kind_names[i]) == n && strncmp(p, kind_names[i], n) == 0)
				kind = 1u << i;
		if (kind == 0) {
			*bad_r = (size_t)(p - list);
			return -1;
		}
		*kinds_r |= kind;
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}
