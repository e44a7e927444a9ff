/* The grammar of lines (imap/sensitive.h): which argument of which
 * command, which field of which response, holds a value, followed across
 * the literals a logical line carries. The values themselves are read by
 * imap/sensitive_text.c. */
#include "imap/sensitive_int.h"

#include <stdlib.h>
#include <string.h>

/* Parentheses followed this deep; deeper ones mask what they hold. */
#define FRAMES 16

#define KINDS_TEXT (IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS | IMAP_SENS_BODIES)

/* What a line is, from its command or response name. */
enum what {
	W_SAFE,      /* no value in it: CAPABILITY, FETCH, EXISTS ... */
	W_LOGIN,     /* LOGIN user password */
	W_AUTH,      /* AUTHENTICATE mechanism [initial response] */
	W_MAILBOX,   /* SELECT, CREATE, STATUS ...: a mailbox first */
	W_RENAME,    /* two mailboxes */
	W_COPY,      /* COPY, MOVE: a set, then a mailbox */
	W_APPEND,    /* a mailbox, then messages */
	W_LIST,      /* LIST, LSUB: reference and patterns */
	W_SEARCH,    /* SEARCH, SORT, THREAD: strings after keys */
	W_ACL,       /* a mailbox, then identifiers */
	W_QUOTA,     /* a quota root (named after a user or a mailbox), then limits */
	W_FETCH,     /* * n FETCH (...) */
	W_LIST_RESP, /* * LIST (flags) delimiter mailbox */
	W_NAMESPACE, /* * NAMESPACE: prefixes */
	W_OTHER,     /* unknown: every argument masked */
};

enum frame_kind {
	F_LINE,    /* a command's or response's arguments */
	F_FETCH,   /* a FETCH response's items */
	F_ENV,     /* an ENVELOPE's fields */
	F_ADDRS,   /* a list of addresses */
	F_ADDR,    /* (name adl mailbox host) */
	F_BS,      /* BODYSTRUCTURE */
	F_KEEP,    /* nothing in it */
	F_MASK,    /* every string masked (kinds in v) */
	F_MAILBOX, /* every string a mailbox name */
};

/* FETCH items: how the value after a name is taken. */
enum att {
	A_VALUE,   /* a string read as v says */
	A_ENV,     /* ENVELOPE */
	A_BS,      /* BODYSTRUCTURE, BODY */
	A_KEEP,    /* FLAGS, UID, sizes, dates */
	A_MAILBOX, /* X-GM-LABELS */
};

/* F_LINE flags */
#define L_NESTED 1u      /* inside parentheses */
#define L_RETURN 2u      /* LIST: after RETURN */
#define L_MASK_NEXT 4u   /* SEARCH: the next string is a value */
#define L_FIELD_NEXT 8u  /* SEARCH: HEADER's field name comes next */
#define L_CHARSET_NEXT 16u

struct frame {
	enum frame_kind kind;
	unsigned idx;   /* arguments, items or fields before this one */
	unsigned flags;
	enum att att;       /* F_FETCH: the item named last */
	struct sens_value v; /* F_FETCH: its value; F_MASK: the kinds */
};

struct sens_dir {
	bool mid;     /* a logical line goes on after a literal */
	bool lost;    /* bytes were lost: everything is masked */
	bool deflate; /* COMPRESS began: the next unit tells if it is inflated */
	bool literal; /* literal data is under way, read as lit says */
	enum what what;
	struct frame f[FRAMES];
	unsigned depth; /* frames in use */
	unsigned deep;  /* parentheses open past FRAMES */
	struct sens_text lit;
};

struct imap_sens {
	struct sens_dir d[2];
	struct sens_bounds bounds;
	bool auth;     /* an AUTHENTICATE exchange is under way */
	bool compress; /* COMPRESS was asked for: compressed bytes cannot be read */
};

enum tok { TOK_ATOM, TOK_QUOTED, TOK_LITERAL };

static const struct sens_value keep = {.mode = SENS_KEEP};

static struct sens_value val(enum sens_mode mode, unsigned kinds)
{
	return (struct sens_value){.mode = mode, .kinds = kinds};
}

struct name_what {
	const char *name;
	enum what what;
};

static const struct name_what commands[] = {
	{"CAPABILITY", W_SAFE}, {"NOOP", W_SAFE}, {"LOGOUT", W_SAFE}, {"STARTTLS", W_SAFE},
	{"CHECK", W_SAFE}, {"CLOSE", W_SAFE}, {"UNSELECT", W_SAFE}, {"EXPUNGE", W_SAFE},
	{"IDLE", W_SAFE}, {"NAMESPACE", W_SAFE}, {"COMPRESS", W_SAFE}, {"ENABLE", W_SAFE},
	{"FETCH", W_SAFE}, {"STORE", W_SAFE}, {"ID", W_SAFE}, {"LOGIN", W_LOGIN},
	{"AUTHENTICATE", W_AUTH}, {"SELECT", W_MAILBOX}, {"EXAMINE", W_MAILBOX},
	{"CREATE", W_MAILBOX}, {"DELETE", W_MAILBOX}, {"SUBSCRIBE", W_MAILBOX},
	{"UNSUBSCRIBE", W_MAILBOX}, {"STATUS", W_MAILBOX}, {"GETQUOTAROOT", W_MAILBOX},
	{"MYRIGHTS", W_MAILBOX}, {"GETACL", W_MAILBOX}, {"GETMETADATA", W_MAILBOX},
	{"RENAME", W_RENAME}, {"COPY", W_COPY}, {"MOVE", W_COPY}, {"APPEND", W_APPEND},
	{"LIST", W_LIST}, {"LSUB", W_LIST}, {"XLIST", W_LIST}, {"SEARCH", W_SEARCH},
	{"SORT", W_SEARCH}, {"THREAD", W_SEARCH}, {"SETACL", W_ACL}, {"DELETEACL", W_ACL},
	{"LISTRIGHTS", W_ACL}, {"GETQUOTA", W_QUOTA}, {"SETQUOTA", W_QUOTA},
};

static const struct name_what responses[] = {
	{"CAPABILITY", W_SAFE}, {"FLAGS", W_SAFE}, {"SEARCH", W_SAFE}, {"ESEARCH", W_SAFE},
	{"SORT", W_SAFE}, {"THREAD", W_SAFE}, {"ENABLED", W_SAFE}, {"ID", W_SAFE},
	{"VANISHED", W_SAFE}, {"LIST", W_LIST_RESP}, {"LSUB", W_LIST_RESP},
	{"XLIST", W_LIST_RESP}, {"STATUS", W_MAILBOX}, {"ACL", W_ACL}, {"MYRIGHTS", W_ACL},
	{"LISTRIGHTS", W_ACL}, {"METADATA", W_ACL}, {"QUOTAROOT", W_ACL},
	{"NAMESPACE", W_NAMESPACE}, {"QUOTA", W_QUOTA},
};

static enum what what_of(const struct name_what *table, size_t n, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (sens_eq(p, len, table[i].name))
			return table[i].what;
	return W_OTHER;
}

/* A FETCH item's name: how its value is read. */
static enum att att_of(const uint8_t *p, size_t n, struct sens_value *v)
{
	size_t i, close;
	bool part = false;

	*v = val(SENS_WORDS, IMAP_SENS_ALL);
	if (sens_eq(p, n, "ENVELOPE"))
		return A_ENV;
	if (sens_eq(p, n, "BODYSTRUCTURE") || sens_eq(p, n, "BODY"))
		return A_BS;
	if (sens_eq(p, n, "X-GM-LABELS"))
		return A_MAILBOX;
	if (sens_eq(p, n, "RFC822")) {
		*v = val(SENS_MESSAGE, 0);
		return A_VALUE;
	}
	if (sens_eq(p, n, "RFC822.HEADER")) {
		*v = val(SENS_HEADER, 0);
		return A_VALUE;
	}
	if (sens_eq(p, n, "RFC822.TEXT")) {
		*v = val(SENS_TEXT, 0);
		return A_VALUE;
	}
	if (sens_eq(p, n, "PREVIEW")) {
		*v = val(SENS_PHRASE, IMAP_SENS_BODIES);
		return A_VALUE;
	}
	if (n >= 12 && sens_eq(p, 12, "BINARY.SIZE["))
		return A_KEEP;
	for (i = 0; i < n && p[i] != '['; i++)
		;
	if (i == n) /* FLAGS, UID, RFC822.SIZE, INTERNALDATE, MODSEQ ... */
		return A_KEEP;
	if (!sens_eq(p, i, "BODY") && !sens_eq(p, i, "BINARY"))
		return A_VALUE;
	for (close = i + 1; close < n && p[close] != ']'; close++)
		;
	/* a piece from past the start (BODY[]<500>): where it begins in the
	 * message is not known, so all of it is masked */
	if (close + 2 < n && p[close + 1] == '<' && p[close + 2] != '0')
		return A_VALUE;
	i++;
	/* part numbers: "1.2." */
	while (i < close && p[i] >= '0' && p[i] <= '9') {
		while (i < close && p[i] >= '0' && p[i] <= '9')
			i++;
		part = true;
		if (i < close && p[i] == '.')
			i++;
	}
	if (i == close)
		*v = val(part ? SENS_TEXT : SENS_MESSAGE, 0);
	else if (close - i >= 6 && sens_eq(p + i, 6, "HEADER"))
		*v = val(SENS_HEADER, 0);
	else if (sens_eq(p + i, close - i, "MIME"))
		*v = val(SENS_HEADER, 0);
	else if (sens_eq(p + i, close - i, "TEXT"))
		*v = val(SENS_TEXT, 0);
	return A_VALUE;
}

static struct sens_value search_value(struct frame *f, enum tok tok, const uint8_t *p, size_t n)
{
	unsigned flags = f->flags & (L_MASK_NEXT | L_FIELD_NEXT | L_CHARSET_NEXT);

	f->flags &= ~(L_MASK_NEXT | L_FIELD_NEXT | L_CHARSET_NEXT);
	if (flags & L_MASK_NEXT)
		return val(SENS_WORDS, KINDS_TEXT | IMAP_SENS_USERS);
	if (flags & L_FIELD_NEXT) {
		f->flags |= L_MASK_NEXT;
		return keep;
	}
	if (flags & L_CHARSET_NEXT)
		return keep;
	if (tok != TOK_ATOM)
		return val(SENS_WORDS, KINDS_TEXT | IMAP_SENS_USERS);
	if (sens_eq(p, n, "FROM") || sens_eq(p, n, "TO") || sens_eq(p, n, "CC") ||
	    sens_eq(p, n, "BCC") || sens_eq(p, n, "SUBJECT") || sens_eq(p, n, "BODY") ||
	    sens_eq(p, n, "TEXT"))
		f->flags |= L_MASK_NEXT;
	else if (sens_eq(p, n, "HEADER"))
		f->flags |= L_FIELD_NEXT;
	else if (sens_eq(p, n, "CHARSET"))
		f->flags |= L_CHARSET_NEXT;
	return keep;
}

/* An argument of a command, or of an untagged response other than FETCH. */
static struct sens_value line_value(struct sens_dir *d, struct frame *f, enum tok tok,
				    const uint8_t *p, size_t n)
{
	bool top = !(f->flags & L_NESTED);
	const struct sens_value mailbox = val(SENS_MAILBOX, IMAP_SENS_MAILBOXES);

	switch (d->what) {
	case W_SAFE:
		return keep;
	case W_FETCH: /* anything but the list of items */
		return val(SENS_WORDS, IMAP_SENS_ALL);
	case W_LOGIN:
		return top && f->idx == 0 ? val(SENS_WORDS, IMAP_SENS_USERS) : keep;
	case W_AUTH:
		return f->idx >= 1 ? val(SENS_WORDS, IMAP_SENS_USERS) : keep;
	case W_MAILBOX:
		return top && f->idx == 0 ? mailbox : keep;
	case W_RENAME:
		return top && f->idx <= 1 ? mailbox : keep;
	case W_COPY:
		return top && f->idx == 1 ? mailbox : keep;
	case W_APPEND:
		if (top && f->idx == 0)
			return mailbox;
		if (tok == TOK_LITERAL)
			return val(SENS_MESSAGE, 0);
		/* CATENATE's URLs name a mailbox, maybe a user */
		return !top && tok == TOK_QUOTED
			       ? val(SENS_WORDS, IMAP_SENS_MAILBOXES | IMAP_SENS_USERS)
			       : keep;
	case W_LIST:
		if (top && tok == TOK_ATOM && sens_eq(p, n, "RETURN")) {
			f->flags |= L_RETURN;
			return keep;
		}
		return (f->flags & L_RETURN) || (!top && f->idx == 0) ? keep : mailbox;
	case W_SEARCH:
		return search_value(f, tok, p, n);
	case W_ACL:
		return f->idx == 0 && top ? mailbox
					  : val(SENS_WORDS, IMAP_SENS_USERS | IMAP_SENS_MAILBOXES);
	case W_QUOTA:
		return top && f->idx == 0 ? val(SENS_WORDS, IMAP_SENS_USERS | IMAP_SENS_MAILBOXES)
					  : keep;
	case W_LIST_RESP:
		if (f->idx <= 1 || !top)
			return f->idx <= 1 ? keep : val(SENS_WORDS, IMAP_SENS_MAILBOXES);
		return f->idx == 2 ? mailbox : val(SENS_WORDS, IMAP_SENS_MAILBOXES);
	case W_NAMESPACE:
		return mailbox;
	case W_OTHER:
		return val(SENS_WORDS, IMAP_SENS_ALL);
	}
	return val(SENS_WORDS, IMAP_SENS_ALL);
}

static struct sens_value fetch_value(struct frame *f, enum tok tok, const uint8_t *p, size_t n)
{
	if (f->idx % 2 == 0) { /* an item's name */
		if (tok != TOK_ATOM) {
			f->att = A_VALUE;
			f->v = val(SENS_WORDS, IMAP_SENS_ALL);
			return f->v;
		}
		f->att = att_of(p, n, &f->v);
		return keep;
	}
	switch (f->att) {
	case A_VALUE:
		return f->v;
	case A_KEEP:
		return keep;
	case A_MAILBOX:
		return val(SENS_MAILBOX, IMAP_SENS_MAILBOXES);
	case A_ENV:
	case A_BS:
		/* a string where a list belongs */
		return val(SENS_WORDS, KINDS_TEXT);
	}
	return val(SENS_WORDS, IMAP_SENS_ALL);
}

/* How the string token at the current place is read. */
static struct sens_value value_at(struct imap_sens *s, struct sens_dir *d, enum tok tok,
				  const uint8_t *p, size_t n)
{
	struct frame *f = &d->f[d->depth - 1];

	if (d->deep > 0)
		return val(SENS_WORDS, IMAP_SENS_ALL);
	switch (f->kind) {
	case F_LINE:
		return line_value(d, f, tok, p, n);
	case F_FETCH:
		return fetch_value(f, tok, p, n);
	case F_ENV:
		if (f->idx == 0)
			return keep; /* the date */
		if (f->idx == 1)
			return val(SENS_PHRASE, IMAP_SENS_SUBJECTS);
		return val(SENS_WORDS, f->idx < 10 ? IMAP_SENS_ADDRESSES
						   : IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS);
	case F_ADDRS:
		return val(SENS_WORDS, IMAP_SENS_ADDRESSES);
	case F_ADDR:
		return val(f->idx == 0 ? SENS_PHRASE : SENS_WORDS, IMAP_SENS_ADDRESSES);
	case F_BS:
		return tok == TOK_LITERAL ? val(SENS_WORDS, KINDS_TEXT)
					  : sens_structure_value(&f->flags, &s->bounds, p, n);
	case F_KEEP:
		return keep;
	case F_MASK:
		return f->v;
	case F_MAILBOX:
		return val(SENS_MAILBOX, IMAP_SENS_MAILBOXES);
	}
	return val(SENS_WORDS, IMAP_SENS_ALL);
}

static void push(struct sens_dir *d, enum frame_kind kind, unsigned flags, struct sens_value v)
{
	if (d->depth == FRAMES) {
		d->deep++;
		return;
	}
	d->f[d->depth++] = (struct frame){.kind = kind, .flags = flags, .v = v};
}

static void token_open(struct sens_dir *d)
{
	struct frame *f = &d->f[d->depth - 1];
	const struct sens_value all = val(SENS_WORDS, IMAP_SENS_ALL);

	if (d->deep > 0 || d->depth == FRAMES) {
		d->deep++;
		return;
	}
	switch (f->kind) {
	case F_LINE:
		if (d->what == W_FETCH && !(f->flags & L_NESTED))
			push(d, F_FETCH, 0, keep);
		else
			push(d, F_LINE, (f->flags & ~(L_MASK_NEXT | L_FIELD_NEXT)) | L_NESTED, keep);
		/* arguments inside count as the one the list is */
		d->f[d->depth - 1].idx = f->idx;
		return;
	case F_FETCH:
		if (f->idx % 2 == 0)
			push(d, F_MASK, 0, all);
		else if (f->att == A_ENV)
			push(d, F_ENV, 0, keep);
		else if (f->att == A_BS)
			push(d, F_BS, 0, keep);
		else if (f->att == A_KEEP)
			push(d, F_KEEP, 0, keep);
		else if (f->att == A_MAILBOX)
			push(d, F_MAILBOX, 0, keep);
		else
			push(d, F_MASK, 0, all);
		return;
	case F_ENV:
		if (f->idx >= 2 && f->idx <= 7)
			push(d, F_ADDRS, 0, keep);
		else
			push(d, F_MASK, 0, val(SENS_WORDS, IMAP_SENS_ADDRESSES | IMAP_SENS_SUBJECTS));
		return;
	case F_ADDRS:
		push(d, F_ADDR, 0, keep);
		return;
	case F_ADDR:
		push(d, F_MASK, 0, val(SENS_WORDS, IMAP_SENS_ADDRESSES));
		return;
	case F_BS:
	case F_KEEP:
	case F_MAILBOX:
		push(d, f->kind, 0, keep);
		return;
	case F_MASK:
		push(d, F_MASK, 0, f->v);
		return;
	}
}

static void token_close(struct sens_dir *d)
{
	if (d->deep > 0) {
		d->deep--;
		return;
	}
	if (d->depth <= 1)
		return; /* unbalanced: nothing to close */
	d->depth--;
	d->f[d->depth - 1].idx++;
}

static void token_value(struct imap_sens *s, struct sens_dir *d, enum tok tok, const uint8_t *p,
			size_t n, const struct sens_emit *e)
{
	struct sens_value v = value_at(s, d, tok, p, n);

	if (tok == TOK_ATOM && sens_eq(p, n, "NIL"))
		v = keep;
	sens_value_scan(v, &s->bounds, p, n, e);
	d->f[d->depth - 1].idx++;
}

/* Where the atom at p[i] ends: at a space, a parenthesis or a quote, a
 * [section] (which may hold them) taken whole when it closes. Once a '['
 * found no ']' (*unclosed), none is looked for again in the line: a line
 * of brackets costs its length, not its square. */
static size_t atom_end(const uint8_t *p, size_t i, size_t end, bool *unclosed)
{
	while (i < end && p[i] != ' ' && p[i] != '(' && p[i] != ')' && p[i] != '"') {
		if (p[i] == '[' && !*unclosed) {
			size_t k = i + 1;
			bool quoted = false;

			for (; k < end && (quoted || p[k] != ']'); k++) {
				if (quoted && p[k] == '\\')
					k++;
				else if (p[k] == '"')
					quoted = !quoted;
			}
			if (k < end) {
				i = k + 1;
				continue;
			}
			*unclosed = true;
		}
		i++;
	}
	return i;
}

static void line_tokens(struct imap_sens *s, struct sens_dir *d, const uint8_t *p, size_t i,
			size_t end, const struct sens_emit *e)
{
	bool unclosed = false;

	while (i < end) {
		size_t j;

		if (p[i] == ' ') {
			i++;
		} else if (p[i] == '(') {
			token_open(d);
			i++;
		} else if (p[i] == ')') {
			token_close(d);
			i++;
		} else if (p[i] == '"') {
			for (j = i + 1; j < end && p[j] != '"'; j++)
				if (p[j] == '\\' && j + 1 < end)
					j++;
			token_value(s, d, TOK_QUOTED, p + i + 1, j - i - 1, e);
			i = j + 1;
		} else {
			j = atom_end(p, i, end, &unclosed);
			token_value(s, d, TOK_ATOM, p + i, j - i, e);
			i = j;
		}
	}
}

/* The next word of a line's head at *i (a tag, a command's name). */
static size_t head_word(const uint8_t *p, size_t *i, size_t end, size_t *len)
{
	size_t at;

	while (*i < end && p[*i] == ' ')
		(*i)++;
	at = *i;
	while (*i < end && p[*i] != ' ' && p[*i] != '(')
		(*i)++;
	*len = *i - at;
	return at;
}

/* A status response's rest: a [code] kept, the text masked where it
 * repeats a value (a mailbox a NO names). */
static void status_text(struct sens_dir *d, const uint8_t *p, size_t i, size_t end,
			const struct sens_emit *e)
{
	/* runs as a mailbox name's, so a name echoed is found whole */
	struct sens_value text = val(SENS_MAILBOX, IMAP_SENS_ALL);

	while (i < end && p[i] == ' ')
		i++;
	if (i < end && p[i] == '[') {
		const uint8_t *close = memchr(p + i, ']', end - i);

		if (close != NULL)
			i = (size_t)(close - p) + 1;
	}
	text.if_known = true;
	d->f[0] = (struct frame){.kind = F_MASK, .v = val(SENS_WORDS, IMAP_SENS_ALL)};
	sens_value_scan(text, NULL, p + i, end - i, e);
}

/* A line that starts a logical line, up to end (its CRLF and any
 * literal announcement left out). */
static void line_start(struct imap_sens *s, enum imap_dir dir, struct sens_dir *d,
		       const uint8_t *p, size_t end, const struct sens_emit *e)
{
	size_t i = 0, at, len;
	bool tagged;

	d->depth = 1;
	d->deep = 0;
	d->f[0] = (struct frame){.kind = F_LINE};
	if (dir == IMAP_C2S && s->auth) { /* a SASL response */
		d->f[0] = (struct frame){.kind = F_MASK, .v = val(SENS_WORDS, IMAP_SENS_USERS)};
		sens_value_scan(d->f[0].v, NULL, p, end, e);
		return;
	}
	at = head_word(p, &i, end, &len);
	if (dir == IMAP_C2S) {
		at = head_word(p, &i, end, &len);
		if (sens_eq(p + at, len, "UID"))
			at = head_word(p, &i, end, &len);
		d->what = len == 0 ? W_SAFE : what_of(commands, sizeof(commands) / sizeof(commands[0]),
						       p + at, len);
		s->auth |= d->what == W_AUTH;
		s->compress |= sens_eq(p + at, len, "COMPRESS");
		line_tokens(s, d, p, i, end, e);
		return;
	}
	if (sens_eq(p + at, len, "+")) { /* a continuation: a SASL challenge, or text */
		d->f[0] = (struct frame){.kind = s->auth ? F_MASK : F_KEEP,
					 .v = val(SENS_WORDS, IMAP_SENS_USERS)};
		sens_value_scan(s->auth ? d->f[0].v : keep, NULL, p + i, end - i, e);
		return;
	}
	tagged = !sens_eq(p + at, len, "*");
	s->auth &= !tagged; /* the command is over */
	at = head_word(p, &i, end, &len);
	if (tagged && s->compress && sens_eq(p + at, len, "OK")) /* deflate from here on */
		s->d[0].deflate = s->d[1].deflate = true;
	s->compress &= !tagged;
	if (len > 0 && p[at] >= '0' && p[at] <= '9') { /* * n FETCH, * n EXISTS */
		at = head_word(p, &i, end, &len);
		d->what = sens_eq(p + at, len, "FETCH") ? W_FETCH : W_SAFE;
	} else if (sens_eq(p + at, len, "OK") || sens_eq(p + at, len, "NO") ||
		   sens_eq(p + at, len, "BAD") || sens_eq(p + at, len, "BYE") ||
		   sens_eq(p + at, len, "PREAUTH")) {
		status_text(d, p, i, end, e);
		return;
	} else {
		d->what = what_of(responses, sizeof(responses) / sizeof(responses[0]), p + at, len);
	}
	line_tokens(s, d, p, i, end, e);
}

/* Where a literal's announcement ({n}, {n+}, {n-}, ~{n}) starts in a
 * line of len bytes without its line end. */
static size_t announcement_at(const uint8_t *p, size_t len)
{
	size_t i = len;

	if (i == 0 || p[i - 1] != '}')
		return len;
	i--;
	while (i > 0 && p[i - 1] != '{')
		i--;
	if (i == 0)
		return len;
	i--;
	if (i > 0 && p[i - 1] == '~')
		i--;
	while (i > 0 && p[i - 1] == ' ')
		i--;
	return i;
}

/* A line of printable ASCII ending in CRLF, as IMAP's are. */
static bool plain_line(const uint8_t *p, size_t n)
{
	if (n < 3 || p[n - 2] != '\r' || p[n - 1] != '\n')
		return false;
	for (size_t i = 0; i + 2 < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

static void mask_all(const uint8_t *p, size_t n, const struct sens_emit *e)
{
	sens_value_scan(val(SENS_WORDS, IMAP_SENS_ALL), NULL, p, n, e);
}

void imap_sens_unit(struct imap_sens *s, enum imap_dir dir, const struct imap_unit *unit,
		    const uint8_t *bytes, size_t len, imap_sens_cb *cb, void *ctx)
{
	struct sens_dir *d = &s->d[dir == IMAP_S2C];
	struct sens_emit e = {.cb = cb, .ctx = ctx, .base = bytes};
	bool head = unit->kind == IMAP_UNIT_LITERAL_HEAD && !(unit->flags & IMAP_UNIT_BAD_LITERAL);
	size_t end = len;

	switch (unit->kind) {
	case IMAP_UNIT_LITERAL_DATA:
		if (d->lost || !d->literal)
			mask_all(bytes, len, &e);
		else
			sens_text_feed(&d->lit, &s->bounds, bytes, len, &e);
		if (unit->flags & IMAP_UNIT_LITERAL_END)
			d->literal = false;
		return;
	case IMAP_UNIT_LINE:
	case IMAP_UNIT_LITERAL_HEAD:
		break;
	}
	d->literal = false;
	if (end > 0 && bytes[end - 1] == '\n')
		end--;
	if (end > 0 && bytes[end - 1] == '\r')
		end--;
	if (head)
		end = announcement_at(bytes, end);
	/* a client line after COMPRESS before its OK was seen: compressed, or
	 * the OK is in bytes lost */
	if (s->compress && (dir == IMAP_C2S || d->lost))
		s->d[0].lost = true;
	if (d->deflate) {
		/* imaptap's own pcap holds the stream inflated; any other capture
		 * holds deflate, where nothing can be told apart */
		d->deflate = false;
		d->lost |= unit->kind == IMAP_UNIT_LITERAL_DATA || !plain_line(bytes, len);
	}
	if (d->lost || ((unit->flags & IMAP_UNIT_CONTINUED) && !d->mid)) {
		/* where this stands in the grammar is not known */
		mask_all(bytes, end, &e);
		d->depth = 1;
		d->deep = 0;
		d->f[0] = (struct frame){.kind = F_MASK, .v = val(SENS_WORDS, IMAP_SENS_ALL)};
	} else if ((unit->flags & IMAP_UNIT_CONTINUED) && d->mid) {
		line_tokens(s, d, bytes, 0, end, &e);
	} else {
		line_start(s, dir, d, bytes, end, &e);
	}
	d->mid = head;
	if (head) {
		sens_text_start(&d->lit, value_at(s, d, TOK_LITERAL, NULL, 0));
		d->f[d->depth - 1].idx++;
		d->literal = true;
	}
}

void imap_sens_partial(struct imap_sens *s, enum imap_dir dir, const uint8_t *bytes, size_t len,
		       imap_sens_cb *cb, void *ctx)
{
	struct sens_dir *d = &s->d[dir == IMAP_S2C];
	struct sens_emit e = {.cb = cb, .ctx = ctx, .base = bytes};

	mask_all(bytes, len, &e);
	d->mid = false;
	d->literal = false;
}

void imap_sens_lost(struct imap_sens *s, enum imap_dir dir)
{
	s->d[dir == IMAP_S2C].lost = true;
}

struct imap_sens *imap_sens_new(void)
{
	return calloc(1, sizeof(struct imap_sens));
}

void imap_sens_free(struct imap_sens **s)
{
	free(*s);
	*s = NULL;
}
