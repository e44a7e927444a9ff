#include "imap/anomaly.h"

#include <string.h>

static const struct {
	const char *id;
	enum imap_severity severity;
} rules[IMAP_RULE_COUNT] = {
	[IMAP_RULE_COMMAND_STALL] = {"command-stall", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_DONE_STALL] = {"done-stall", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_DONE_BEFORE_CONTINUATION] = {"done-before-continuation", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_LITERAL_BEFORE_CONTINUATION] = {"literal-before-continuation",
						   IMAP_SEVERITY_WARNING},
	[IMAP_RULE_COMMAND_DURING_IDLE] = {"command-during-idle", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_IDLE_TOO_LONG] = {"idle-too-long", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_CLIENT_NOT_READING] = {"client-not-reading", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_SERVER_NOT_READING] = {"server-not-reading", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_UNKNOWN_TAG] = {"unknown-tag", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_DUPLICATE_TAG] = {"duplicate-tag", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_OUT_OF_ORDER_COMPLETION] = {"out-of-order-completion", IMAP_SEVERITY_INFO},
	[IMAP_RULE_EXPUNGE_DURING_FETCH] = {"expunge-during-fetch", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_UNEXPECTED_CONTINUATION] = {"unexpected-continuation", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_DATA_AFTER_BYE] = {"data-after-bye", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_PARSE_ERROR] = {"parse-error", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION] = {"untagged-before-continuation",
						    IMAP_SEVERITY_INFO},
	[IMAP_RULE_COMPLETION_BEFORE_DONE] = {"completion-before-done", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_STRAY_DONE] = {"stray-done", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_PENDING_AT_EOF] = {"pending-at-eof", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_STARTTLS_TRAILING_DATA] = {"starttls-trailing-data", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_COMPRESS_STREAM_ERROR] = {"compress-stream-error", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_KEEPALIVE_GAP] = {"keepalive-gap", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_GREETING_STALL] = {"greeting-stall", IMAP_SEVERITY_WARNING},
	[IMAP_RULE_CAPTURE_GAP] = {"capture-gap", IMAP_SEVERITY_WARNING},
};

const char *imap_rule_id(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT ? rules[rule].id : "rule?";
}

enum imap_severity imap_rule_severity(enum imap_rule rule)
{
	return (unsigned)rule < IMAP_RULE_COUNT ? rules[rule].severity : IMAP_SEVERITY_WARNING;
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
