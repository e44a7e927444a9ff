/* The protocol checker: every logical line of both directions parsed
 * (imap/parse.h), the session's state and mailboxes learned from them
 * (imap/mailbox.h), and the rules that name who broke the protocol:
 * syntax, the mailbox facts (EXISTS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ),
 * message numbers and UIDs, capabilities and ENABLE, response codes.
 * Pure: the caller passes the time. */
#ifndef IMAP_PROTOCOL_H
#define IMAP_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/anomaly.h"
#include "imap/classify.h"
#include "imap/framer.h"
#include "imap/mailbox.h"
#include "imap/summary.h"
#include "imap/tracker.h"
#include "imap/types.h"

/* Findings of one rule said per session; the rest are not shown. */
#define IMAP_PROTOCOL_RULE_CAP 10

struct imap_protocol;

/* cb NULL: the state and the mailboxes are learned, no rule runs. */
struct imap_protocol *imap_protocol_new(imap_anomaly_cb *cb, void *ctx);
void imap_protocol_free(struct imap_protocol **protocol);

/* Every call below accepts NULL (the rules are off) and then does
 * nothing. */

/* How a unit may be used (imap_protocol_unit's flags). */
enum imap_protocol_unit_flag {
	IMAP_PROTOCOL_QUOTABLE = 1u << 0, /* its bytes may be quoted in a finding (not masked) */
	IMAP_PROTOCOL_BY_PROXY = 1u << 1, /* the proxy wrote it (a fault's answer, its own BYE):
					     the state follows it, no finding blames a peer */
};

/* One framed unit of dir seen at ts; info: its classification (NULL for
 * literal data); flags: enum imap_protocol_unit_flag bits. */
void imap_protocol_unit(struct imap_protocol *protocol, enum imap_dir dir, imap_time_us ts,
			const struct imap_unit *unit, const struct imap_line_info *info,
			unsigned flags);

/* Bytes of dir were lost: the line being read is dropped and what the
 * session's state was may no longer hold. */
void imap_protocol_gap(struct imap_protocol *protocol, enum imap_dir dir);

/* Zeroes what is held of the client's line being read (a credential). */
void imap_protocol_wipe(struct imap_protocol *protocol, enum imap_dir dir);

void imap_protocol_trim(struct imap_protocol *protocol);

/* Points summary's mailbox facts at what was learned (valid as long as
 * the checker is). */
void imap_protocol_summary(const struct imap_protocol *protocol, struct imap_summary *summary);

#endif
