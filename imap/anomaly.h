/* Anomaly rules: stable ids, severities, and what one finding carries.
 * The ids are a contract (--fail-on, the event log, docs/rules.md). */
#ifndef IMAP_ANOMALY_H
#define IMAP_ANOMALY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/types.h"

enum imap_rule {
	IMAP_RULE_COMMAND_STALL,
	IMAP_RULE_DONE_STALL,
	IMAP_RULE_DONE_BEFORE_CONTINUATION,
	IMAP_RULE_LITERAL_BEFORE_CONTINUATION,
	IMAP_RULE_COMMAND_DURING_IDLE,
	IMAP_RULE_IDLE_TOO_LONG,
	IMAP_RULE_CLIENT_NOT_READING,
	IMAP_RULE_SERVER_NOT_READING,
	IMAP_RULE_UNKNOWN_TAG,
	IMAP_RULE_DUPLICATE_TAG,
	IMAP_RULE_OUT_OF_ORDER_COMPLETION,
	IMAP_RULE_EXPUNGE_DURING_FETCH,
	IMAP_RULE_UNEXPECTED_CONTINUATION,
	IMAP_RULE_DATA_AFTER_BYE,
	IMAP_RULE_PARSE_ERROR,
	IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION,
	IMAP_RULE_COMPLETION_BEFORE_DONE,
	IMAP_RULE_STRAY_DONE,
	IMAP_RULE_PENDING_AT_EOF,
	IMAP_RULE_STARTTLS_TRAILING_DATA,
	IMAP_RULE_COMPRESS_STREAM_ERROR,
	IMAP_RULE_KEEPALIVE_GAP,
	IMAP_RULE_GREETING_STALL,
	IMAP_RULE_CAPTURE_GAP,
	/* the protocol rules (imap/protocol.c) */
	IMAP_RULE_SYNTAX,
	IMAP_RULE_EXISTS_DECREASED,
	IMAP_RULE_MSN_OUT_OF_RANGE,
	IMAP_RULE_UID_FETCH_WITHOUT_UID,
	IMAP_RULE_UIDVALIDITY_CHANGED,
	IMAP_RULE_UIDNEXT_DECREASED,
	IMAP_RULE_MODSEQ_DECREASED,
	IMAP_RULE_HIGHESTMODSEQ_ZERO,
	IMAP_RULE_UNSOLICITED_FETCH_WITHOUT_UID,
	IMAP_RULE_UNTAGGED_IN_WRONG_STATE,
	IMAP_RULE_TAGGED_OK_BEFORE_CONTINUATION,
	IMAP_RULE_RESPONSE_CODE,
	IMAP_RULE_SERVER_BYE,
	IMAP_RULE_NONSYNC_LITERAL_TOO_LARGE,
	IMAP_RULE_CAPABILITY_NOT_ADVERTISED,
	IMAP_RULE_EXTENSION_NOT_ENABLED,
	IMAP_RULE_MSN_AFTER_EXPUNGE,
	IMAP_RULE_UID_AFTER_UIDVALIDITY_CHANGE,
	IMAP_RULE_COUNT
};

enum imap_severity {
	IMAP_SEVERITY_INFO,
	IMAP_SEVERITY_WARNING,
};

/* Whose behaviour a rule is about (docs/rules.md). EITHER: the finding
 * names the side itself (a stream that does not parse, a connection that
 * ended with commands unanswered). */
enum imap_blame {
	IMAP_BLAME_CLIENT,
	IMAP_BLAME_SERVER,
	IMAP_BLAME_EITHER,
};

#define IMAP_ANOMALY_TAG_MAX 64
#define IMAP_ANOMALY_DETAIL_MAX 320

struct imap_anomaly {
	enum imap_rule rule;
	enum imap_severity severity;
	imap_time_us ts;
	char tag[IMAP_ANOMALY_TAG_MAX];       /* "" when no command is concerned */
	imap_time_us threshold;               /* -1 when the rule has none */
	imap_time_us waited;                  /* -1 when the rule does not wait */
	bool resolved;                        /* a later line about an earlier finding */
	bool never_resolved;                  /* likewise, at the end: the session ended (or the
						 capture stopped) with the finding still open */
	bool alert;                           /* the server's [ALERT] text, which the user must
						 see (RFC 9051 section 7.1): shown prominently */
	char detail[IMAP_ANOMALY_DETAIL_MAX]; /* for a person */
};

/* Builds a finding of rule at ts about the command tagged tag (tag_len 0:
 * none; cut at IMAP_ANOMALY_TAG_MAX - 1 bytes), its detail from fmt. The
 * rule's severity comes from the rule table; threshold and waited are -1
 * and resolved false until the caller says otherwise. */
void imap_anomaly_make(struct imap_anomaly *anomaly, enum imap_rule rule, imap_time_us ts,
		       const uint8_t *tag, size_t tag_len, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
void imap_anomaly_vmake(struct imap_anomaly *anomaly, enum imap_rule rule, imap_time_us ts,
			const uint8_t *tag, size_t tag_len, const char *fmt, va_list ap)
	__attribute__((format(printf, 6, 0)));

/* "command-stall" ... */
const char *imap_rule_id(enum imap_rule rule);
enum imap_severity imap_rule_severity(enum imap_rule rule);
enum imap_blame imap_rule_blame(enum imap_rule rule);
/* The section of the RFC the rule rests on: "RFC 9051 section 7.4.1" */
const char *imap_rule_rfc(enum imap_rule rule);
const char *imap_severity_str(enum imap_severity severity);
/* "client", "server", "either" */
const char *imap_blame_str(enum imap_blame blame);
/* Returns true and sets *rule for a known id. */
bool imap_rule_parse(const char *id, size_t len, enum imap_rule *rule);

#endif
