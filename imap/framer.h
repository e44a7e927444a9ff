/* Incremental framer for one direction of an IMAP stream.
 *
 * Bytes go in, in chunks of any size; units come out through a callback:
 * a line segment (ending at LF), the same with a literal announcement at its
 * end, and literal data chunks. Any split of the input gives the same units.
 * Memory is bounded: a line is kept up to an observation limit, literal data
 * is counted and handed out in chunks of at most IMAP_FRAMER_CHUNK bytes.
 * The framer never changes the stream; it only describes it. */
#ifndef IMAP_FRAMER_H
#define IMAP_FRAMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/types.h"

#define IMAP_FRAMER_CHUNK (64u * 1024u)
#define IMAP_FRAMER_DEFAULT_MAX_LINE (64u * 1024u)
/* number64 of RFC 9051: the largest literal length accepted. */
#define IMAP_LITERAL_MAX INT64_MAX

enum imap_unit_kind {
	IMAP_UNIT_LINE,         /* a line segment that ends the logical line */
	IMAP_UNIT_LITERAL_HEAD, /* a segment ending in {n}, {n+} or ~{n}: n bytes follow */
	IMAP_UNIT_LITERAL_DATA, /* a chunk of literal bytes */
};

/* Observation problems, as bits in imap_unit.flags. None of them changes
 * what is relayed. */
enum imap_unit_flag {
	IMAP_UNIT_TRUNCATED = 1u << 0,      /* line longer than the limit: data holds its start */
	IMAP_UNIT_BARE_LF = 1u << 1,        /* line ended in LF without CR */
	IMAP_UNIT_OPEN_QUOTE = 1u << 2,     /* line ended inside a quoted string */
	IMAP_UNIT_NUL = 1u << 3,            /* NUL byte outside a literal */
	IMAP_UNIT_BAD_LITERAL = 1u << 4,    /* {..} at line end with a count that is not a number64 */
	IMAP_UNIT_CONTINUED = 1u << 5,      /* segment resumes a logical line after a literal */
	IMAP_UNIT_LITERAL_NONSYNC = 1u << 6, /* head: {n+} */
	IMAP_UNIT_LITERAL_BINARY = 1u << 7,  /* head: ~{n} (literal8) */
	IMAP_UNIT_LITERAL_END = 1u << 8,     /* data: last chunk of its literal */
};

struct imap_unit {
	enum imap_unit_kind kind;
	uint32_t flags;          /* enum imap_unit_flag bits */
	uint64_t offset;         /* stream offset of the unit's first byte */
	uint64_t wire_len;       /* bytes the unit covers on the wire */
	const uint8_t *data;     /* observed bytes, valid only during the callback */
	size_t len;              /* == wire_len unless IMAP_UNIT_TRUNCATED */
	uint64_t literal_len;    /* head: announced n; data: n of its literal */
	uint64_t literal_offset; /* data: position of this chunk inside its literal */
	uint64_t after_literal;  /* IMAP_UNIT_CONTINUED: size of the literal just ended */
};

typedef void imap_unit_cb(void *ctx, const struct imap_unit *unit);
typedef void imap_bytes_cb(void *ctx, const uint8_t *data, size_t len);

struct imap_framer;

/* max_line: observation limit for one line segment, 0 for the default.
 * Returns NULL only when out of memory. */
struct imap_framer *imap_framer_new(enum imap_dir dir, size_t max_line,
				    imap_unit_cb *cb, void *ctx);
void imap_framer_free(struct imap_framer **framer);

/* Feeds len bytes; calls the callback for every unit they complete.
 * Returns len, or fewer when the callback called imap_framer_stop(). */
size_t imap_framer_feed(struct imap_framer *framer, const uint8_t *data, size_t len);

/* Also hands every consumed byte to tap (same ctx), whole, before the
 * unit those bytes complete is reported: for outputs that need the full
 * stream (a pcap) while units keep only the observed part of long lines. */
void imap_framer_set_tap(struct imap_framer *framer, imap_bytes_cb *tap);

/* From inside the tap: the bytes it was handed are a whole unit, reported
 * right after the tap returns with these very bytes (literal data that
 * came in one piece). */
bool imap_framer_tap_whole(const struct imap_framer *framer);

/* From inside the callback: feed returns right after the unit being
 * reported, leaving the rest of its input unread. Used where the stream
 * changes layer mid-read (the OK of COMPRESS). */
void imap_framer_stop(struct imap_framer *framer);

/* Forgets partial state, as when TLS or COMPRESS restarts the stream. The
 * offset keeps counting. */
void imap_framer_reset(struct imap_framer *framer);

/* The peer refused a synchronising literal before any of its bytes came
 * (a tagged NO/BAD instead of "+"): the command is over and the next byte
 * starts a new line. Returns true when a literal was pending and is now
 * dropped; false (and no change) otherwise. */
bool imap_framer_cancel_literal(struct imap_framer *framer);

/* Bytes fed so far. */
uint64_t imap_framer_offset(const struct imap_framer *framer);
/* Bytes of a partial unit held back (a line not yet ended, a literal chunk
 * not yet full). */
uint64_t imap_framer_pending(const struct imap_framer *framer);
/* Literal bytes still expected, 0 when not inside a literal. */
uint64_t imap_framer_literal_left(const struct imap_framer *framer);

/* From the unit callback: zeroes the bytes kept of the unit being reported
 * (explicit_bzero), one that held a credential. Buffers freed or grown are
 * zeroed whole. */
void imap_framer_wipe(struct imap_framer *framer);

/* Frees buffer memory held while idle (no partial unit pending). */
void imap_framer_trim(struct imap_framer *framer);

const char *imap_unit_kind_str(enum imap_unit_kind kind);

#endif
