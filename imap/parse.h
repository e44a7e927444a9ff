/* The IMAP grammar: one logical line (a response or a command, literals
 * included) checked against RFC 9051 / RFC 3501 and the extensions in
 * common use, and the facts the protocol rules need taken out of it.
 *
 * Pure and bounded: the line is read once, front to back, with no
 * allocation; nesting deeper than IMAP_PARSE_MAX_DEPTH is not checked.
 * Literal contents need not be there: a span says how many of a literal's
 * bytes the line holds (imap/logical.h keeps short ones only). */
#ifndef IMAP_PARSE_H
#define IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/capset.h"
#include "imap/classify.h"
#include "imap/types.h"

#define IMAP_PARSE_MAX_DEPTH 64

/* A literal of the line: its announcement ends just before `at`, where
 * `kept` of its `len` content bytes follow in the line. */
struct imap_literal_span {
	size_t at;
	uint64_t len;
	size_t kept;
};

/* The grammar elements a line can fail in, named as RFC 9051's formal
 * syntax names them. */
enum imap_element {
	IMAP_EL_TAG,
	IMAP_EL_RESPONSE,     /* what follows "* ", a tag or "+" */
	IMAP_EL_RESP_TEXT,
	IMAP_EL_RESP_TEXT_CODE,
	IMAP_EL_CAPABILITY,
	IMAP_EL_FLAG_LIST,
	IMAP_EL_MAILBOX_LIST,
	IMAP_EL_STATUS_ATT,
	IMAP_EL_SEARCH,
	IMAP_EL_ESEARCH,
	IMAP_EL_NAMESPACE,
	IMAP_EL_ID,
	IMAP_EL_VANISHED,
	IMAP_EL_MESSAGE_DATA, /* n EXISTS / EXPUNGE / FETCH */
	IMAP_EL_MSG_ATT,
	IMAP_EL_DATE_TIME,
	IMAP_EL_ENVELOPE,
	IMAP_EL_ADDRESS,
	IMAP_EL_BODY,
	IMAP_EL_BODY_FIELDS,
	IMAP_EL_BODY_EXTENSION,
	IMAP_EL_SECTION,
	IMAP_EL_NUMBER,
	IMAP_EL_STRING,
	IMAP_EL_LITERAL,
	IMAP_EL_ASTRING,
	IMAP_EL_ATOM,
	IMAP_EL_SEQUENCE_SET,
	IMAP_EL_COMMAND,       /* the command name and its arguments */
	IMAP_EL_FETCH_ATT,
	IMAP_EL_SELECT_PARAM,
	IMAP_EL_STORE_ATT,
	IMAP_EL_LIST,          /* a parenthesised list that does not close */
	IMAP_EL_CRLF,          /* bytes left where the line should end */
	IMAP_EL_COUNT
};

const char *imap_element_str(enum imap_element element);

/* Response codes a rule looks at (the rest are IMAP_CODE_OTHER). */
enum imap_code {
	IMAP_CODE_NONE,
	IMAP_CODE_OTHER,
	IMAP_CODE_ALERT,
	IMAP_CODE_CAPABILITY,
	IMAP_CODE_UIDVALIDITY,
	IMAP_CODE_UIDNEXT,
	IMAP_CODE_HIGHESTMODSEQ,
	IMAP_CODE_NOMODSEQ,
	IMAP_CODE_CLOSED,
	IMAP_CODE_READ_ONLY,
	IMAP_CODE_READ_WRITE,
	IMAP_CODE_THROTTLED,
	IMAP_CODE_LIMIT,
	IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_OVERQUOTA,
	IMAP_CODE_CLIENTBUG,
	IMAP_CODE_SERVERBUG,
};

/* What a server line is. */
enum imap_resp_kind {
	IMAP_RESP_NONE,         /* not parsed */
	IMAP_RESP_CONTINUATION,
	IMAP_RESP_TAGGED,
	IMAP_RESP_STATUS,       /* * OK / NO / BAD / BYE / PREAUTH */
	IMAP_RESP_CAPABILITY,
	IMAP_RESP_ENABLED,
	IMAP_RESP_FLAGS,
	IMAP_RESP_LIST,         /* LIST, LSUB */
	IMAP_RESP_STATUS_DATA,  /* * STATUS mailbox (...) */
	IMAP_RESP_SEARCH,       /* SEARCH, SORT */
	IMAP_RESP_ESEARCH,
	IMAP_RESP_NAMESPACE,
	IMAP_RESP_ID,
	IMAP_RESP_VANISHED,
	IMAP_RESP_EXISTS,
	IMAP_RESP_RECENT,
	IMAP_RESP_EXPUNGE,
	IMAP_RESP_FETCH,
	IMAP_RESP_UIDFETCH,     /* * uid UIDFETCH (...) under UIDONLY (RFC 9586) */
	IMAP_RESP_OTHER,        /* a response kind with no rule (QUOTA, ACL, METADATA...) */
};

/* Client commands the rules look at. */
enum imap_cmd {
	IMAP_CMD_NONE,
	IMAP_CMD_OTHER,
	IMAP_CMD_CAPABILITY,
	IMAP_CMD_LOGIN,
	IMAP_CMD_AUTHENTICATE,
	IMAP_CMD_STARTTLS,
	IMAP_CMD_LOGOUT,
	IMAP_CMD_SELECT,
	IMAP_CMD_EXAMINE,
	IMAP_CMD_CLOSE,
	IMAP_CMD_UNSELECT,
	IMAP_CMD_FETCH,
	IMAP_CMD_STORE,
	IMAP_CMD_SEARCH,
	IMAP_CMD_COPY,
	IMAP_CMD_MOVE,
	IMAP_CMD_EXPUNGE,
	IMAP_CMD_IDLE,
	IMAP_CMD_ENABLE,
	IMAP_CMD_COMPRESS,
	IMAP_CMD_ID,
	IMAP_CMD_NAMESPACE,
	IMAP_CMD_STATUS,
	IMAP_CMD_NOTIFY,
	IMAP_CMD_SORT,
	IMAP_CMD_THREAD,
	IMAP_CMD_LIST,
	IMAP_CMD_APPEND,
};

/* What a command uses that an extension brings (bits of
 * imap_parsed.uses), for capability-not-advertised and
 * extension-not-enabled. */
enum imap_use {
	IMAP_USE_CHANGEDSINCE = 1u << 0,   /* FETCH modifier (CONDSTORE) */
	IMAP_USE_UNCHANGEDSINCE = 1u << 1, /* STORE modifier (CONDSTORE) */
	IMAP_USE_MODSEQ_KEY = 1u << 2,     /* SEARCH MODSEQ (CONDSTORE) */
	IMAP_USE_MODSEQ_ATT = 1u << 3,     /* FETCH MODSEQ (CONDSTORE) */
	IMAP_USE_CONDSTORE_PARAM = 1u << 4, /* SELECT (CONDSTORE) */
	IMAP_USE_QRESYNC_PARAM = 1u << 5,  /* SELECT (QRESYNC ...) */
	IMAP_USE_VANISHED = 1u << 6,       /* FETCH (... VANISHED) */
	IMAP_USE_SEARCH_RETURN = 1u << 7,  /* SEARCH RETURN (ESEARCH) */
	IMAP_USE_BINARY = 1u << 8,         /* FETCH BINARY[...] / BINARY.SIZE, APPEND ~{n} */
	IMAP_USE_STATUS_SIZE = 1u << 9,    /* STATUS (SIZE) */
	IMAP_USE_OBJECTID = 1u << 10,      /* EMAILID, THREADID, MAILBOXID */
	IMAP_USE_UTF8 = 1u << 11,          /* 8-bit bytes in a quoted string */
	IMAP_USE_SEARCHRES = 1u << 12,     /* "$" as a sequence set */
};

/* The largest message number a sequence set names and whether it uses
 * "*" (for the message-number rules). */
struct imap_seq_facts {
	bool present;
	uint64_t max;   /* 0: none named explicitly */
	bool star;
	bool dollar;    /* "$" (SEARCHRES) */
};

struct imap_parsed {
	bool checked;                 /* false: too long or too deep to check; nothing
					 below is meaningful */
	bool ok;                      /* no syntax error */
	enum imap_element error;      /* where it failed */
	size_t error_at;              /* offset in the line given */

	/* server lines */
	enum imap_resp_kind kind;
	enum imap_status status;      /* TAGGED and STATUS */
	enum imap_code code;
	struct imap_slice code_name;  /* the code's atom as sent */
	uint64_t code_number;         /* UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ */
	struct imap_slice text;       /* resp-text's text after the code */
	uint64_t number;              /* EXISTS, RECENT, EXPUNGE, FETCH */
	bool fetch_uid_present;
	uint64_t fetch_uid;
	bool fetch_modseq_present;
	uint64_t fetch_modseq;
	bool has_caps;                /* CAPABILITY, ENABLED, [CAPABILITY] */
	imap_capset caps;
	bool vanished_earlier;
	uint64_t vanished_count;      /* UIDs in a VANISHED set */
	/* STATUS data */
	struct imap_slice mailbox;    /* STATUS data; SELECT, EXAMINE, STATUS commands
					 (quoted: without quotes, escapes kept) */
	bool mailbox_cut;             /* a literal mailbox name not kept whole */
	bool status_uidvalidity_present, status_uidnext_present, status_modseq_present;
	uint64_t status_uidvalidity, status_uidnext, status_modseq;

	/* client lines */
	enum imap_cmd cmd;
	bool uid;
	struct imap_seq_facts seq;
	unsigned uses;                /* enum imap_use bits */
	imap_capset enable;           /* ENABLE's capabilities */
	bool sasl_ir;                 /* AUTHENTICATE with an initial response */
};

/* A server line (tag, "*" or "+" first), its CRLF included or not;
 * lits: its literals in order. */
void imap_parse_response(const uint8_t *line, size_t len, const struct imap_literal_span *lits,
			 size_t nlits, struct imap_parsed *out);

/* A client command line. */
void imap_parse_command(const uint8_t *line, size_t len, const struct imap_literal_span *lits,
			size_t nlits, struct imap_parsed *out);

#endif
