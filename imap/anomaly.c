#include "imap/anomaly.h"

#include <stdio.h>
#include <string.h>

#define C IMAP_BLAME_CLIENT
#define S IMAP_BLAME_SERVER
#define E IMAP_BLAME_EITHER

static const struct {
	const char *id;
	enum imap_severity severity;
	enum imap_blame blame;
} rules[IMAP_RULE_COUNT] = {
	[IMAP_RULE_COMMAND_STALL] = {"command-stall", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_DONE_STALL] = {"done-stall", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_DONE_BEFORE_CONTINUATION] = {"done-before-continuation", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_LITERAL_BEFORE_CONTINUATION] = {"literal-before-continuation",
						   IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_COMMAND_DURING_IDLE] = {"command-during-idle", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_IDLE_TOO_LONG] = {"idle-too-long", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_CLIENT_NOT_READING] = {"client-not-reading", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_SERVER_NOT_READING] = {"server-not-reading", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_UNKNOWN_TAG] = {"unknown-tag", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_DUPLICATE_TAG] = {"duplicate-tag", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_OUT_OF_ORDER_COMPLETION] = {"out-of-order-completion", IMAP_SEVERITY_INFO, S},
	[IMAP_RULE_EXPUNGE_DURING_FETCH] = {"expunge-during-fetch", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_UNEXPECTED_CONTINUATION] = {"unexpected-continuation", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_DATA_AFTER_BYE] = {"data-after-bye", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_PARSE_ERROR] = {"parse-error", IMAP_SEVERITY_WARNING, E},
	[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION] = {"untagged-before-continuation",
						    IMAP_SEVERITY_INFO, S},
	[IMAP_RULE_COMPLETION_BEFORE_DONE] = {"completion-before-done", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_STRAY_DONE] = {"stray-done", IMAP_SEVERITY_WARNING, C},
	[IMAP_RULE_PENDING_AT_EOF] = {"pending-at-eof", IMAP_SEVERITY_WARNING, E},
	[IMAP_RULE_STARTTLS_TRAILING_DATA] = {"starttls-trailing-data", IMAP_SEVERITY_WARNING, E},
	[IMAP_RULE_COMPRESS_STREAM_ERROR] = {"compress-stream-error", IMAP_SEVERITY_WARNING, E},
	[IMAP_RULE_KEEPALIVE_GAP] = {"keepalive-gap", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_GREETING_STALL] = {"greeting-stall", IMAP_SEVERITY_WARNING, S},
	[IMAP_RULE_CAPTURE_GAP] = {"capture-gap", IMAP_SEVERITY_WARNING, E},
};

#undef C
#undef S
#undef E

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
