/* What the grammar's files share: a cursor over one line and the
 * primitives of RFC 9051's formal syntax. Only imap/parse_*.c include it. */
#ifndef IMAP_PARSE_INT_H
#define IMAP_PARSE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/parse.h"

struct cursor {
	const uint8_t *base;
	const uint8_t *p;
	const uint8_t *end; /* the CRLF, or the end of the line given */
	const struct imap_literal_span *lits;
	size_t nlits;
	size_t next_lit;
	int depth;
	bool failed;
	bool too_deep;
	struct imap_parsed *out;
};

void cur_init(struct cursor *c, const uint8_t *line, size_t len,
	      const struct imap_literal_span *lits, size_t nlits, struct imap_parsed *out);
/* Records the first failure; returns false for "return fail(...)". */
bool fail(struct cursor *c, enum imap_element element);
/* Ends a line: nothing may be left before the CRLF. */
bool cur_finish(struct cursor *c);

static inline bool at_end(const struct cursor *c)
{
	return c->p >= c->end;
}
static inline int peek(const struct cursor *c)
{
	return c->p < c->end ? *c->p : -1;
}
static inline bool eat(struct cursor *c, uint8_t ch)
{
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static inline bool sp(struct cursor *c, enum imap_element element)
{
	return eat(c, ' ') || fail(c, element);
}
/* ATOM-CHAR: any CHAR but atom-specials (RFC 9051 section 9) */
extern const bool parse_atom_char[256];
static inline bool is_atom_char(uint8_t ch)
{
	return parse_atom_char[ch];
}

/* A word that may be followed by anything (for "BODY[", "BINARY.SIZE["):
 * case-insensitive, w in upper case, n its length; consumed on a match.
 * Inline: the grammar tries many words at every step. */
static inline bool prefix(struct cursor *c, const char *w, size_t n)
{
	if ((size_t)(c->end - c->p) < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = c->p[i];

		/* servers send their words in upper case: folded only when
		 * the byte as it is differs */
		if (ch != (uint8_t)w[i] && (ch < 'a' || ch > 'z' || ch - 32 != (uint8_t)w[i]))
			return false;
	}
	c->p += n;
	return true;
}

/* The same, not followed by an atom char. */
static inline bool word(struct cursor *c, const char *w, size_t n)
{
	if (!prefix(c, w, n))
		return false;
	if (!at_end(c) && is_atom_char(*c->p)) {
		c->p -= n;
		return false;
	}
	return true;
}
#define WORD(c, w) word((c), (w), sizeof(w) - 1)
#define PREFIX(c, w) prefix((c), (w), sizeof(w) - 1)
/* Inline: a FETCH line holds several. */
static inline bool number(struct cursor *c, uint64_t *v, enum imap_element element)
{
	const uint8_t *start = c->p, *q = c->p;
	uint64_t n = 0;
	unsigned d;

	while (q < c->end && (d = (unsigned)(*q - '0')) < 10) {
		n = n * 10 + d;
		q++;
	}
	if (q == start)
		return fail(c, element);
	/* number64: at most 2^63 - 1, which 18 digits cannot pass; a longer
	 * one is read again digit by digit, to fail where it overflows */
	if (q - start > 18)
		for (n = 0; c->p < q; c->p++) {
			d = (unsigned)(*c->p - '0');
			if (n > (UINT64_C(0x7fffffffffffffff) - d) / 10)
				return fail(c, element);
			n = n * 10 + d;
		}
	c->p = q;
	if (v != NULL)
		*v = n;
	return true;
}

static inline bool nz_number(struct cursor *c, uint64_t *v, enum imap_element element)
{
	uint64_t n = 0;

	if (peek(c) == '0')
		return fail(c, element);
	if (!number(c, &n, element))
		return false;
	if (v != NULL)
		*v = n;
	return true;
}

bool atom(struct cursor *c, struct imap_slice *s);
bool quoted(struct cursor *c, struct imap_slice *s);
/* literal or literal8 (binary: "~{n}"); s: the content kept */
bool literal(struct cursor *c, struct imap_slice *s, bool *cut, bool binary_ok);
bool string(struct cursor *c, struct imap_slice *s);
bool nstring(struct cursor *c);
bool astring(struct cursor *c, struct imap_slice *s);
/* astring that keeps whether a literal mailbox name was cut */
bool mailbox(struct cursor *c);
bool is_nil(struct cursor *c);
/* flag-list "(" [flag *(SP flag)] ")" */
bool flag_list(struct cursor *c);
bool date_time(struct cursor *c);
/* Any value: atom-like word, number, string, literal, NIL or a
 * parenthesised/bracketed list of values; for what has no rule. */
bool any_value(struct cursor *c);
/* "[" ... "]" with nested brackets, no controls (and, without
 * quotes_ok, no quote or brace): a section inside a word */
bool brackets(struct cursor *c, bool quotes_ok);
/* id-params-list: "(" *(string SP nstring *(SP string SP nstring)) ")" /
 * nil (RFC 2971) */
bool id_params(struct cursor *c, enum imap_element element);
/* Values separated by SP up to the line's end. */
bool any_rest(struct cursor *c);
bool seq_set(struct cursor *c, struct imap_seq_facts *facts, bool allow_dollar);
/* uid-set: counts the UIDs it names (ranges whole, capped). */
bool uid_set(struct cursor *c, uint64_t *count);
/* capability *(SP capability), into out->caps */
bool capabilities(struct cursor *c, imap_capset *caps, bool need_one);
bool enter(struct cursor *c);
static inline void leave(struct cursor *c)
{
	c->depth--;
}

/* resp-text: ["[" resp-text-code "]" [SP]] [text] */
bool resp_text(struct cursor *c);
/* body / BODYSTRUCTURE, envelope (imap/parse_body.c) */
bool body(struct cursor *c);
bool envelope(struct cursor *c);

#endif
