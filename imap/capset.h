/* The capabilities a server advertises and a client ENABLEs, as bits, so
 * the protocol rules ask "does the server have MOVE" without comparing
 * strings. Only the ones a rule looks at have a bit. */
#ifndef IMAP_CAPSET_H
#define IMAP_CAPSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_cap {
	IMAP_CAP_IMAP4REV1,
	IMAP_CAP_IMAP4REV2,
	IMAP_CAP_LITERAL_PLUS,  /* LITERAL+ (RFC 7888) */
	IMAP_CAP_LITERAL_MINUS, /* LITERAL- */
	IMAP_CAP_IDLE,
	IMAP_CAP_MOVE,
	IMAP_CAP_UIDPLUS,
	IMAP_CAP_COMPRESS_DEFLATE,
	IMAP_CAP_ESEARCH,
	IMAP_CAP_CONDSTORE,
	IMAP_CAP_QRESYNC,
	IMAP_CAP_ENABLE,
	IMAP_CAP_ID,
	IMAP_CAP_NAMESPACE,
	IMAP_CAP_UNSELECT,
	IMAP_CAP_SPECIAL_USE,
	IMAP_CAP_BINARY,
	IMAP_CAP_UTF8_ACCEPT,
	IMAP_CAP_UTF8_ONLY,
	IMAP_CAP_OBJECTID,
	IMAP_CAP_STATUS_SIZE,
	IMAP_CAP_UIDONLY,
	IMAP_CAP_NOTIFY,
	IMAP_CAP_SASL_IR,
	IMAP_CAP_STARTTLS,
	IMAP_CAP_LOGINDISABLED,
	IMAP_CAP_SEARCHRES,
	IMAP_CAP_LIST_STATUS,
	IMAP_CAP_COUNT
};

typedef uint64_t imap_capset;

#define IMAP_CAPSET_HAS(set, cap) (((set) >> (cap)) & 1u)

/* The bit of one capability name (case-insensitive); false for a name
 * without one. */
bool imap_cap_parse(const uint8_t *name, size_t len, enum imap_cap *cap_r);

/* "MOVE", "LITERAL+" ... */
const char *imap_cap_name(enum imap_cap cap);

/* What a server offers, counting what IMAP4rev2 includes (RFC 9051
 * section 1 and appendix E): MOVE, UIDPLUS, IDLE, ESEARCH... */
imap_capset imap_capset_effective(imap_capset advertised);

#endif
