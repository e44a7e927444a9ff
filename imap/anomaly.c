#include "imap/anomaly.h"

#include <stdio.h>
#include <string.h>

#define C IMAP_BLAME_CLIENT
#define S IMAP_BLAME_SERVER
#define E IMAP_BLAME_EITHER
#define W IMAP_SEVERITY_WARNING
#define I IMAP_SEVERITY_INFO

static const struct {
	const char *id;
	enum imap_severity severity;
	enum imap_blame blame;
	const char *rfc;
} rules[IMAP_RULE_COUNT] = {
	[IMAP_RULE_COMMAND_STALL] = {"command-stall", W, S, "RFC 9051 section 2.2.2"},
	[IMAP_RULE_DONE_STALL] = {"done-stall", W, S, "RFC 2177 section 3"},
	[IMAP_RULE_DONE_BEFORE_CONTINUATION] = {"done-before-continuation", W, C,
						"RFC 2177 section 3"},
	[IMAP_RULE_LITERAL_BEFORE_CONTINUATION] = {"literal-before-continuation", W, C,
						   "RFC 9051 section 4.3"},
	[IMAP_RULE_COMMAND_DURING_IDLE] = {"command-during-idle", W, C, "RFC 2177 section 3"},
	[IMAP_RULE_IDLE_TOO_LONG] = {"idle-too-long", W, C, "RFC 9051 section 6.3.13"},
	[IMAP_RULE_CLIENT_NOT_READING] = {"client-not-reading", W, C, "RFC 9051 section 5.5"},
	[IMAP_RULE_SERVER_NOT_READING] = {"server-not-reading", W, S, "RFC 9051 section 5.5"},
	[IMAP_RULE_UNKNOWN_TAG] = {"unknown-tag", W, S, "RFC 9051 section 2.2.2"},
	[IMAP_RULE_DUPLICATE_TAG] = {"duplicate-tag", W, C, "RFC 9051 section 2.2.1"},
	[IMAP_RULE_OUT_OF_ORDER_COMPLETION] = {"out-of-order-completion", I, S,
					       "RFC 9051 section 5.5"},
	[IMAP_RULE_EXPUNGE_DURING_FETCH] = {"expunge-during-fetch", W, S, "RFC 9051 section 7.5.1"},
	[IMAP_RULE_UNEXPECTED_CONTINUATION] = {"unexpected-continuation", W, S,
					       "RFC 9051 section 7.6"},
	[IMAP_RULE_DATA_AFTER_BYE] = {"data-after-bye", W, S, "RFC 9051 section 7.1.5"},
	[IMAP_RULE_PARSE_ERROR] = {"parse-error", W, E, "RFC 9051 section 4"},
	[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION] = {"untagged-before-continuation", I, S,
						    "RFC 9051 section 7"},
	[IMAP_RULE_COMPLETION_BEFORE_DONE] = {"completion-before-done", W, S, "RFC 2177 section 3"},
	[IMAP_RULE_STRAY_DONE] = {"stray-done", W, C, "RFC 2177 section 3"},
	[IMAP_RULE_PENDING_AT_EOF] = {"pending-at-eof", W, E, "RFC 9051 section 2.2.2"},
	[IMAP_RULE_STARTTLS_TRAILING_DATA] = {"starttls-trailing-data", W, E,
					      "RFC 9051 section 6.2.1"},
	[IMAP_RULE_COMPRESS_STREAM_ERROR] = {"compress-stream-error", W, E, "RFC 4978 section 3"},
	[IMAP_RULE_KEEPALIVE_GAP] = {"keepalive-gap", W, S, "RFC 2177 section 3"},
	[IMAP_RULE_GREETING_STALL] = {"greeting-stall", W, S, "RFC 9051 section 7.1.1"},
	[IMAP_RULE_CAPTURE_GAP] = {"capture-gap", W, E, "-"},
	[IMAP_RULE_SYNTAX] = {"syntax", W, E, "RFC 9051 section 9"},
	[IMAP_RULE_EXISTS_DECREASED] = {"exists-decreased", W, S, "RFC 9051 section 7.4.1"},
	[IMAP_RULE_MSN_OUT_OF_RANGE] = {"msn-out-of-range", W, S, "RFC 9051 section 2.3.1.2"},
	[IMAP_RULE_UID_FETCH_WITHOUT_UID] = {"uid-fetch-without-uid", W, S,
					     "RFC 9051 section 6.4.9"},
	[IMAP_RULE_UIDVALIDITY_CHANGED] = {"uidvalidity-changed", W, S, "RFC 9051 section 2.3.1.1"},
	[IMAP_RULE_UIDNEXT_DECREASED] = {"uidnext-decreased", W, S, "RFC 9051 section 2.3.1.1"},
	[IMAP_RULE_MODSEQ_DECREASED] = {"modseq-decreased", W, S, "RFC 7162 section 3.1.1"},
	[IMAP_RULE_HIGHESTMODSEQ_ZERO] = {"highestmodseq-zero", W, S, "RFC 7162 section 3.1.2.1"},
	[IMAP_RULE_UNSOLICITED_FETCH_WITHOUT_UID] = {"unsolicited-fetch-without-uid", W, S,
						     "RFC 7162 section 3.2.4"},
	[IMAP_RULE_UNTAGGED_IN_WRONG_STATE] = {"untagged-in-wrong-state", W, S,
					       "RFC 9051 section 3"},
	[IMAP_RULE_TAGGED_OK_BEFORE_CONTINUATION] = {"tagged-ok-before-continuation", W, S,
						     "RFC 9051 section 7.6"},
	[IMAP_RULE_RESPONSE_CODE] = {"response-code", W, E, "RFC 5530 section 3"},
	[IMAP_RULE_SERVER_BYE] = {"server-bye", I, S, "RFC 9051 section 7.1.5"},
	[IMAP_RULE_NONSYNC_LITERAL_TOO_LARGE] = {"nonsync-literal-too-large", W, C,
						 "RFC 7888 section 5"},
	[IMAP_RULE_CAPABILITY_NOT_ADVERTISED] = {"capability-not-advertised", W, C,
						 "RFC 9051 section 6.1.1"},
	[IMAP_RULE_EXTENSION_NOT_ENABLED] = {"extension-not-enabled", W, C, "RFC 5161 section 3.1"},
	[IMAP_RULE_MSN_AFTER_EXPUNGE] = {"msn-after-expunge", W, C, "RFC 9051 section 7.5.1"},
	[IMAP_RULE_UID_AFTER_UIDVALIDITY_CHANGE] = {"uid-after-uidvalidity-change", W, C,
						    "RFC 9051 section 2.3.1.1"},
};

#undef C
#undef S
#undef E
#undef W
#undef I

void imap_anomaly_vmake(struct imap_anomaly *a, enum imap_rule rule, imap_time_us ts,
			const uint8_t *tag, size_t tag_len, const char *fmt, va_list ap)
{
	memset(a, 0, sizeof(*a));
	a->rule = rule;
	a->severity = imap_rule_severity(rule);
	a->ts = ts;
	a->threshold = -1;
	a->waited = -1;
	if (tag_len >= sizeof(a->tag))
		tag_len = sizeof(a->tag) - 1;
	if (tag_len > 0)
		memcpy(a->tag, tag, tag_len);
	vsnprintf(a->detail, sizeof(a->detail), fmt, ap);
}

void imap_anomaly_make(struct imap_anomaly *a, enum imap_rule rule, imap_time_us ts,
		       const uint8_t *tag, size_t tag_len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_anomaly_vmake(a, rule, ts, tag, tag_len, fmt, ap);
	va_end(ap);
}

const char *imap_rule_id(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT ? rules[rule].id : "rule?";
}

enum imap_severity imap_rule_severity(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT ? rules[rule].severity : IMAP_SEVERITY_WARNING;
}

enum imap_blame imap_rule_blame(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT ? rules[rule].blame : IMAP_BLAME_EITHER;
}

const char *imap_blame_str(enum imap_blame blame)
{
	return blame == IMAP_BLAME_CLIENT ? "client" : blame == IMAP_BLAME_SERVER ? "server" : "either";
}

const char *imap_severity_str(enum imap_severity severity)
{
	return severity == IMAP_SEVERITY_INFO ? "info" : "warning";
}

bool imap_rule_parse(const char *id, size_t len, enum imap_rule *rule)
{
	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
		if (strlen(rules[i].id) == len && memcmp(rules[i].id, id, len) == 0) {
			*rule = (enum imap_rule)i;
			return true;
		}
	}
	return false;
}

const char *imap_rule_rfc(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT && rules[rule].rfc != NULL ? rules[rule].rfc : "-";
}
