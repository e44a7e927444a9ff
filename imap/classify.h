/* Line classifier: what one IMAP line segment is, from its first tokens.
 * Stateless; the caller says whether an AUTHENTICATE exchange is pending,
 * since only that context tells a SASL response from a command. */
#ifndef IMAP_CLASSIFY_H
#define IMAP_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/types.h"

#define IMAP_NAME_MAX 32

enum imap_line_class {
	IMAP_LINE_COMMAND,       /* c2s: tag SP command [SP args] */
	IMAP_LINE_DONE,          /* c2s: DONE, ending IDLE */
	IMAP_LINE_AUTH_RESPONSE, /* c2s: a SASL response during AUTHENTICATE */
	IMAP_LINE_CONTINUED,     /* either: the rest of a line after a literal */
	IMAP_LINE_UNTAGGED,      /* s2c: "* ..." */
	IMAP_LINE_CONTINUATION,  /* s2c: "+ ..." */
	IMAP_LINE_TAGGED,        /* s2c: tag SP OK|NO|BAD ... */
	IMAP_LINE_MALFORMED,     /* none of the above */
};

enum imap_status {
	IMAP_STATUS_NONE,
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
};

/* The commands and untagged keywords imaptap has rules about, as ids, so
 * no module compares names as strings. */
enum imap_keyword {
	IMAP_KW_OTHER, /* every other word */
	IMAP_KW_AUTHENTICATE,
	IMAP_KW_CAPABILITY,
	IMAP_KW_COMPRESS,
	IMAP_KW_EXPUNGE,
	IMAP_KW_FETCH,
	IMAP_KW_IDLE,
	IMAP_KW_LOGIN,
	IMAP_KW_LOGOUT,
	IMAP_KW_SEARCH,
	IMAP_KW_STARTTLS,
	IMAP_KW_STORE,
	IMAP_KW_VANISHED,
};

/* A slice of the caller's line: valid as long as the line is. */
struct imap_slice {
	const uint8_t *p;
	size_t len;
};

struct imap_line_info {
	enum imap_line_class cls;
	struct imap_slice tag;    /* COMMAND, TAGGED */
	char name[IMAP_NAME_MAX]; /* upper case: command (after UID), untagged keyword
				     (EXISTS, FETCH, CAPABILITY, OK...), status of TAGGED */
	enum imap_keyword keyword; /* COMMAND and UNTAGGED: name as an id */
	bool uid;                 /* COMMAND: "UID FETCH" and the like */
	bool has_number;          /* UNTAGGED: "* 5 EXISTS" */
	uint64_t number;
	enum imap_status status;  /* TAGGED, and UNTAGGED OK/NO/BAD/BYE/PREAUTH */
	struct imap_slice code;   /* response code between [ ], without brackets */
	struct imap_slice args;   /* COMMAND: bytes after the name; others: after the keyword */
};

/* Classifies one line segment (terminator included or not). continued:
 * the segment resumes a line after a literal. auth_pending: a client
 * AUTHENTICATE awaits its tagged completion. */
void imap_classify(enum imap_dir dir, const uint8_t *line, size_t len, bool continued,
		   bool auth_pending, struct imap_line_info *info_r);

/* True when c may appear in a tag (RFC 3501 section 9). */
bool imap_is_tag_char(uint8_t c);

bool imap_slice_eq(struct imap_slice s, const char *str);
bool imap_slice_eq_slice(struct imap_slice a, struct imap_slice b);

const char *imap_line_class_str(enum imap_line_class cls);
const char *imap_status_str(enum imap_status status);

#endif
