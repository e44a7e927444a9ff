/* Logical lines from framed units: a line's segments and the literals
 * between them put back together, so the grammar (imap/parse.h) sees one
 * command or response whole. Incremental and bounded: a literal's content
 * is kept only when short (a mailbox name; never a credential), a line
 * past IMAP_LOGICAL_MAX bytes or IMAP_LOGICAL_MAX_LITERALS literals is
 * given out as not checkable. */
#ifndef IMAP_LOGICAL_H
#define IMAP_LOGICAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/framer.h"
#include "imap/parse.h"

#define IMAP_LOGICAL_MAX (256u * 1024u)
#define IMAP_LOGICAL_MAX_LITERALS 1024u
#define IMAP_LOGICAL_KEEP 256u /* literal content kept up to this length */

struct imap_logical_line {
	const uint8_t *data;    /* the line, literal contents kept or not */
	size_t len;
	const struct imap_literal_span *lits;
	size_t nlits;
	uint64_t offset;        /* stream offset of its first byte */
	bool checkable;         /* false: cut or too big; do not parse */
};

struct imap_logical;

struct imap_logical *imap_logical_new(void);
void imap_logical_free(struct imap_logical **logical);

/* Feeds one unit. keep_literals: the content of this unit's literal may
 * be kept (the caller says no for a line carrying a credential). Returns
 * true and fills line_r when the unit ends a logical line; line_r is
 * valid until the next call. */
bool imap_logical_feed(struct imap_logical *logical, const struct imap_unit *unit,
		       bool keep_literals, struct imap_logical_line *line_r);

/* Forgets a partial line (a gap, a reset of the stream), zeroing it. */
void imap_logical_reset(struct imap_logical *logical);

/* Frees the buffer while no line is partial. */
void imap_logical_trim(struct imap_logical *logical);

/* The offset in the logical line of position at of its data: literal
 * bytes not kept are counted back in. */
uint64_t imap_logical_line_offset(const struct imap_logical_line *line, size_t at);

#endif
