/* What the protocol checker's files share (imap/protocol.c follows the
 * lines and the state, imap/protocol_mailbox.c the mailboxes,
 * imap/protocol_client.c checks client commands). Only they include it. */
#ifndef IMAP_PROTOCOL_INT_H
#define IMAP_PROTOCOL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/capset.h"
#include "imap/logical.h"
#include "imap/parse.h"
#include "imap/protocol.h"

#define PENDING_MAX 64 /* commands followed in flight; the oldest goes first */
#define UID_MAP_MAX 16384

enum session_state {
	STATE_UNKNOWN, /* the capture started after the greeting */
	STATE_NOT_AUTH,
	STATE_AUTH,
	STATE_SELECTED,
	STATE_LOGOUT,
};

struct pending {
	uint8_t tag[IMAP_TAG_SHOW];
	size_t tag_len;
	enum imap_cmd cmd;
	bool uid;
	bool plus;     /* a "+" came while it waited */
	bool sasl_ir;
	struct imap_mailbox_facts *mailbox; /* SELECT, EXAMINE */
};

struct imap_protocol {
	imap_anomaly_cb *cb;
	void *ctx;
	imap_time_us ts;
	struct imap_logical *logical[2];
	enum imap_line_class first_class[2]; /* of the logical line being read */
	enum imap_keyword first_keyword[2];
	uint8_t line_tag[2][IMAP_TAG_SHOW];  /* its tag, cut */
	size_t line_tag_len[2];
	bool whole;                          /* seen from the greeting on */
	bool quotable[2];                    /* no segment of it was masked */
	bool framing_bad[2];                 /* parse-error spoke for it already */
	bool by_proxy;                       /* the unit being read was the proxy's */
	bool seen_server_line;
	uint64_t syntax_said[2];             /* elements, by direction */
	uint32_t said[IMAP_RULE_COUNT];

	enum session_state state;
	bool caps_known;
	imap_capset caps;      /* as advertised */
	imap_capset enabled;   /* ENABLED */
	uint64_t caps_said;    /* capability-not-advertised, by capability */
	uint64_t enable_said;  /* extension-not-enabled, by capability */
	unsigned wrong_state_said; /* by enum imap_resp_kind */

	struct pending *pending; /* grows by doubling up to PENDING_MAX */
	size_t npending;
	size_t pending_cap;

	struct imap_mailboxes mailboxes;
	struct imap_mailbox_facts *selected; /* NULL: none, or not kept */
	bool exists_known;
	uint64_t exists;
	bool expunged;         /* EXPUNGE or VANISHED in this selection */
	bool uidvalidity_known;
	uint64_t uidvalidity;  /* of this selection */
	bool validity_changed; /* differs from what the session knew of the name */
	bool uid_learned;      /* a UID came from the server since */
	bool fetch_uid_said;   /* per selection: the per-message rules say it once */
	bool unsolicited_said;
	bool msn_said;
	uint32_t *uid_map;     /* message number - 1 -> UID, 0 unknown */
	size_t map_len;
	size_t map_cap;        /* doubles up to UID_MAP_MAX */
};

/* A finding made, to the caller's callback unless the rule said its
 * IMAP_PROTOCOL_RULE_CAP already or the line is the proxy's own. */
void protocol_emit(struct imap_protocol *p, const struct imap_anomaly *a);
/* A finding of rule about the command tagged tag (tag_len 0: none). */
void protocol_say(struct imap_protocol *p, enum imap_rule rule, const uint8_t *tag,
		  size_t tag_len, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The checks of a parsed client command (imap/protocol_client.c). */
void protocol_client_command(struct imap_protocol *p, const struct imap_parsed *cmd,
			     struct imap_slice tag);
/* A client literal announcement (non-synchronising literal rules). */
void protocol_client_literal(struct imap_protocol *p, const struct imap_unit *unit,
			     const uint8_t *tag, size_t tag_len);

/* Whether a command of cmd (a UID one or not) awaits its completion. */
bool protocol_pending(const struct imap_protocol *p, enum imap_cmd cmd, bool uid);
/* Forgets the i-th command awaiting completion. */
void protocol_drop_pending(struct imap_protocol *p, size_t i);

/* The mailbox model (imap/protocol_mailbox.c). */
void protocol_begin_selection(struct imap_protocol *p, struct imap_mailbox_facts *mailbox);
bool protocol_select_pending(const struct imap_protocol *p);
void protocol_map_clear(struct imap_protocol *p);
void protocol_apply_code(struct imap_protocol *p, const struct imap_parsed *r);
void protocol_mailbox_data(struct imap_protocol *p, const struct imap_parsed *r);
void protocol_status_data(struct imap_protocol *p, const struct imap_parsed *r);
/* The word of a kind of mailbox data ("EXISTS", "FETCH"...): NULL for a
 * response that is no mailbox data. */
const char *protocol_kind_word(enum imap_resp_kind kind);

/* Up to max bytes of s, escaped for a finding's text: printable ASCII
 * but backslash and quote as they are, the rest as \xHH. */
void protocol_escape(char *out, size_t size, const uint8_t *s, size_t len, size_t max);

#endif
