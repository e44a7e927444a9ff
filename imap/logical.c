#include "imap/logical.h"
#include "imap/wipebuf.h"

#include <stdlib.h>
#include <string.h>

struct imap_logical {
	uint8_t *buf;
	size_t len;
	size_t cap;
	struct imap_literal_span *lits;
	size_t nlits;
	size_t lits_cap;
	uint64_t offset;
	bool in_line;  /* segments of a line are held */
	bool broken;   /* the line held cannot be checked */
	bool keeping;  /* the literal being received is kept */
};

struct imap_logical *imap_logical_new(void)
{
	return calloc(1, sizeof(struct imap_logical));
}

void imap_logical_free(struct imap_logical **logical)
{
	struct imap_logical *l = *logical;

	if (l == NULL)
		return;
	if (l->buf != NULL)
		explicit_bzero(l->buf, l->cap);
	free(l->buf);
	free(l->lits);
	free(l);
	*logical = NULL;
}

void imap_logical_reset(struct imap_logical *l)
{
	if (l->buf != NULL)
		explicit_bzero(l->buf, l->len);
	l->len = 0;
	l->nlits = 0;
	l->in_line = false;
	l->broken = false;
	l->keeping = false;
}

void imap_logical_trim(struct imap_logical *l)
{
	if (l->in_line)
		return;
	imap_logical_reset(l);
	free(l->buf);
	free(l->lits);
	l->buf = NULL;
	l->lits = NULL;
	l->cap = 0;
	l->lits_cap = 0;
}

static void append(struct imap_logical *l, const uint8_t *p, size_t n)
{
	if (l->broken)
		return;
	if (n > IMAP_LOGICAL_MAX - l->len) {
		l->broken = true;
		return;
	}
	if (!imap_wipebuf_grow(&l->buf, &l->cap, l->len, l->len + n, 1024, IMAP_LOGICAL_MAX)) {
		l->broken = true;
		return;
	}
	memcpy(l->buf + l->len, p, n);
	l->len += n;
}

static void add_literal(struct imap_logical *l, uint64_t n, bool keep)
{
	l->keeping = false;
	if (l->broken)
		return;
	if (l->nlits == IMAP_LOGICAL_MAX_LITERALS) {
		l->broken = true;
		return;
	}
	if (l->nlits == l->lits_cap) {
		size_t cap = l->lits_cap ? l->lits_cap * 2 : 8;
		struct imap_literal_span *s = realloc(l->lits, cap * sizeof(*s));

		if (s == NULL) {
			l->broken = true;
			return;
		}
		l->lits = s;
		l->lits_cap = cap;
	}
	l->lits[l->nlits].at = l->len;
	l->lits[l->nlits].len = n;
	l->lits[l->nlits].kept = 0;
	l->nlits++;
	l->keeping = keep && n <= IMAP_LOGICAL_KEEP;
}

static void give(struct imap_logical *l, struct imap_logical_line *line_r)
{
	line_r->data = l->buf;
	line_r->len = l->len;
	line_r->lits = l->lits;
	line_r->nlits = l->nlits;
	line_r->offset = l->offset;
	line_r->checkable = !l->broken;
	l->in_line = false;
}

bool imap_logical_feed(struct imap_logical *l, const struct imap_unit *unit, bool keep_literals,
		       struct imap_logical_line *line_r)
{
	bool continued = (unit->flags & IMAP_UNIT_CONTINUED) != 0;

	if (unit->kind == IMAP_UNIT_LITERAL_DATA) {
		if (l->in_line && l->keeping && !l->broken) {
			append(l, unit->data, unit->len);
			if (!l->broken)
				l->lits[l->nlits - 1].kept += unit->len;
		}
		return false;
	}
	if (!continued) {
		imap_logical_reset(l);
		l->offset = unit->offset;
		/* the common case, a line in one piece, is read where it is */
		if (unit->kind == IMAP_UNIT_LINE) {
			line_r->data = unit->data;
			line_r->len = unit->len;
			line_r->lits = NULL;
			line_r->nlits = 0;
			line_r->offset = unit->offset;
			line_r->checkable = !(unit->flags & IMAP_UNIT_TRUNCATED);
			return true;
		}
	} else if (!l->in_line) {
		/* the start of this line was lost (a gap): nothing to check */
		l->broken = true;
		l->offset = unit->offset;
	}
	l->in_line = true;
	if (unit->flags & IMAP_UNIT_TRUNCATED)
		l->broken = true;
	append(l, unit->data, unit->len);
	if (unit->kind == IMAP_UNIT_LITERAL_HEAD) {
		add_literal(l, unit->literal_len, keep_literals);
		return false;
	}
	give(l, line_r);
	return true;
}

uint64_t imap_logical_line_offset(const struct imap_logical_line *line, size_t at)
{
	uint64_t off = at;

	for (size_t i = 0; i < line->nlits; i++) {
		const struct imap_literal_span *s = &line->lits[i];

		if (s->at + s->kept <= at && s->len - s->kept <= UINT64_MAX - off)
			off += s->len - s->kept;
	}
	return off;
}
