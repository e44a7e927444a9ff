/* Where the values a shared fixture should not carry sit in an IMAP
 * conversation: user names, e-mail addresses, subjects, message bodies,
 * mailbox names.
 *
 * Fed every unit of one session in order, both directions (the whole
 * bytes of a line, however long, or a chunk of literal data), it reports
 * spans: runs of bytes that one token of the same length may replace
 * without breaking the syntax around them. A span never holds a byte
 * that is structure where it sits (space, parenthesis, quote, backslash,
 * '@', '.', '/', CR, LF, a literal's announcement, a MIME boundary, a
 * header's name), so a replacement made of letters and digits keeps an
 * atom an atom, a quoted string valid, an address local@domain, a
 * mailbox its hierarchy, a message its lines and parts. INBOX is left as
 * it is. Where a value's place cannot be told for sure (an unknown
 * command or response, a malformed ENVELOPE, the rest of a stream after
 * a gap, deflate after COMPRESS) every run of letters and digits is
 * reported: masking fails closed. Pure: of the bytes it is fed it keeps
 * only MIME boundaries, and a line's start a literal chunk's end cut. */
#ifndef IMAP_SENSITIVE_H
#define IMAP_SENSITIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/framer.h"
#include "imap/types.h"

/* What a span may hold, as bits: a span is replaced when any of its
 * bits was asked for. */
enum imap_sens_kind {
	IMAP_SENS_USERS = 1u << 0,     /* LOGIN's user, SASL exchanges, ACL identifiers */
	IMAP_SENS_ADDRESSES = 1u << 1, /* ENVELOPE addresses and ids, address header fields */
	IMAP_SENS_SUBJECTS = 1u << 2,  /* ENVELOPE subject, Subject: */
	IMAP_SENS_BODIES = 1u << 3,    /* message text after the header block, parts */
	IMAP_SENS_MAILBOXES = 1u << 4, /* mailbox names, in commands and responses */
};
#define IMAP_SENS_ALL 0x1fu

struct imap_sens_span {
	size_t off, len; /* in the bytes passed */
	unsigned kinds;  /* enum imap_sens_kind bits */
	/* human text (a response's text): replace only a word already
	 * replaced elsewhere, as a mailbox name a NO echoes */
	bool if_known;
};

/* Spans come in order of offset and never overlap. */
typedef void imap_sens_cb(void *ctx, const struct imap_sens_span *span);

struct imap_sens;

/* Returns NULL only when out of memory. */
struct imap_sens *imap_sens_new(void);
void imap_sens_free(struct imap_sens **sens);

/* One framed unit of dir: bytes/len are all its wire bytes (a line longer
 * than the framer keeps included), unit its description. */
void imap_sens_unit(struct imap_sens *sens, enum imap_dir dir, const struct imap_unit *unit,
		    const uint8_t *bytes, size_t len, imap_sens_cb *cb, void *ctx);

/* Bytes that end no unit (a line cut by a gap or the end of the capture):
 * every run of letters and digits. */
void imap_sens_partial(struct imap_sens *sens, enum imap_dir dir, const uint8_t *bytes, size_t len,
		       imap_sens_cb *cb, void *ctx);

/* The capture lost bytes of dir: where the stream resumes cannot be known,
 * so every later unit of dir is masked whole. */
void imap_sens_lost(struct imap_sens *sens, enum imap_dir dir);

/* The kinds named in a comma-separated list ("users,subjects", "all") in
 * *kinds_r. Returns 0, or -1 with the first unknown name's offset in
 * *bad_r. */
int imap_sens_kinds_parse(const char *list, unsigned *kinds_r, size_t *bad_r);
/* "users", "addresses", ...; "?" for anything else. */
const char *imap_sens_kind_str(unsigned kind);

#endif
