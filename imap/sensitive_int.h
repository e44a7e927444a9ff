/* What imap/sensitive.c (the grammar of lines) and imap/sensitive_text.c
 * (the values themselves: words, mailbox names, phrases, messages) share.
 * Only these files include it. */
#ifndef IMAP_SENSITIVE_INT_H
#define IMAP_SENSITIVE_INT_H

#include "imap/sensitive.h"

/* Where spans go: offsets are from base. */
struct sens_emit {
	imap_sens_cb *cb;
	void *ctx;
	const uint8_t *base;
};

/* How a value is read. */
enum sens_mode {
	SENS_KEEP,    /* nothing in it */
	SENS_WORDS,   /* every run of letters, digits and other bytes past 0x7f */
	SENS_MAILBOX, /* a mailbox name: its parts, INBOX kept, &..- runs whole */
	SENS_PHRASE,  /* header text: words, encoded words kept encoded words */
	SENS_MESSAGE, /* a whole message: header block, then body */
	SENS_HEADER,  /* a header block (its blank line and anything after: body) */
	SENS_TEXT,    /* a body: MIME boundary lines and part headers kept */
};

struct sens_value {
	enum sens_mode mode;
	unsigned kinds;
	bool if_known;
};

/* MIME boundaries learned from Content-Type fields and BODYSTRUCTURE, so
 * a body fetched apart from its header still keeps its parts. */
#define SENS_BOUNDARIES 8
#define SENS_BOUNDARY_MAX 70
struct sens_bounds {
	char b[SENS_BOUNDARIES][SENS_BOUNDARY_MAX];
	uint8_t len[SENS_BOUNDARIES];
	unsigned next;
};

void sens_bounds_learn(struct sens_bounds *bounds, const uint8_t *p, size_t n);

#define SENS_NAME_MAX 32

/* A value read in pieces (literal chunks): where its lines stand. */
struct sens_text {
	struct sens_value v;
	bool body;          /* past the header block */
	bool line_start;    /* the next byte starts a line */
	bool in_name;       /* a header line whose name is not complete yet */
	bool part;          /* in the header block of a MIME part */
	bool embedded;      /* that part is a message/rfc822: a message follows */
	/* the start of a body line a chunk's end cut, which may be a boundary */
	uint8_t pend[2 + SENS_BOUNDARY_MAX + 8];
	uint8_t pend_len;
	char name[SENS_NAME_MAX];
	size_t name_len;
	struct sens_value field; /* how the header field under way is read */
	bool field_ctype;        /* the field is Content-Type or -Disposition */
};

void sens_text_start(struct sens_text *t, struct sens_value v);
/* The next n bytes of the value; spans report offsets from e->base. */
void sens_text_feed(struct sens_text *t, struct sens_bounds *bounds, const uint8_t *p, size_t n,
		    const struct sens_emit *e);
/* A value held whole (an atom, a quoted string's content). */
void sens_value_scan(struct sens_value v, struct sens_bounds *bounds, const uint8_t *p, size_t n,
		     const struct sens_emit *e);

bool sens_word_byte(uint8_t c);
bool sens_eq(const uint8_t *p, size_t n, const char *word);
/* A BODYSTRUCTURE string: structure (a media type, an encoding, a
 * charset, a boundary, learned) is kept, anything else masked; state
 * carries what the string before it was, 0 at a list's start. */
struct sens_value sens_structure_value(unsigned *state, struct sens_bounds *bounds,
				       const uint8_t *p, size_t n);

#endif
