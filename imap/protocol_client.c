/* The checks of client commands: capabilities, ENABLE, message numbers
 * and UIDs against what the server said. */
#include "imap/protocol_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 7888 section 5: LITERAL- allows {n+} up to this many bytes */
#define LITERAL_MINUS_MAX 4096

static void not_advertised(struct imap_protocol *p, enum imap_cap cap, struct imap_slice tag,
			   const char *what)
{
	if (p->caps_said & ((uint64_t)1 << cap))
		return;
	p->caps_said |= (uint64_t)1 << cap;
	protocol_say(p, IMAP_RULE_CAPABILITY_NOT_ADVERTISED, tag.p, tag.len,
		     "%.*s uses %s, but the server's capabilities do not list %s; it may answer "
		     "BAD or do something else",
		     (int)tag.len, (const char *)tag.p, what, imap_cap_name(cap));
}

void protocol_client_literal(struct imap_protocol *p, const struct imap_unit *unit,
			     const uint8_t *tag, size_t tag_len)
{
	imap_capset eff;
	struct imap_slice t = {tag, tag_len};

	if (!(unit->flags & IMAP_UNIT_LITERAL_NONSYNC) || !p->caps_known ||
	    IMAP_CAPSET_HAS(p->caps, IMAP_CAP_LITERAL_PLUS))
		return;
	eff = imap_capset_effective(p->caps);
	if (!IMAP_CAPSET_HAS(eff, IMAP_CAP_LITERAL_MINUS)) {
		not_advertised(p, IMAP_CAP_LITERAL_PLUS, t, "a non-synchronising literal {n+}");
		return;
	}
	if (unit->literal_len > LITERAL_MINUS_MAX)
		protocol_say(p, IMAP_RULE_NONSYNC_LITERAL_TOO_LARGE, tag, tag_len,
			     "%.*s sends a non-synchronising literal of %" PRIu64
			     " bytes; the server has LITERAL- (not LITERAL+), which allows them up "
			     "to 4096 bytes: it must refuse the command and may read the literal's "
			     "bytes as commands",
			     (int)tag_len, (const char *)tag, unit->literal_len);
}

struct needs {
	unsigned use;     /* enum imap_use bit, or 0 for a command */
	enum imap_cmd cmd;
	bool uid;
	enum imap_cap cap;
	const char *what;
};

static const struct needs needs[] = {
	{0, IMAP_CMD_MOVE, false, IMAP_CAP_MOVE, "MOVE"},
	{0, IMAP_CMD_MOVE, true, IMAP_CAP_MOVE, "UID MOVE"},
	{0, IMAP_CMD_EXPUNGE, true, IMAP_CAP_UIDPLUS, "UID EXPUNGE"},
	{0, IMAP_CMD_IDLE, false, IMAP_CAP_IDLE, "IDLE"},
	{0, IMAP_CMD_COMPRESS, false, IMAP_CAP_COMPRESS_DEFLATE, "COMPRESS"},
	{0, IMAP_CMD_ENABLE, false, IMAP_CAP_ENABLE, "ENABLE"},
	{0, IMAP_CMD_ID, false, IMAP_CAP_ID, "ID"},
	{0, IMAP_CMD_NAMESPACE, false, IMAP_CAP_NAMESPACE, "NAMESPACE"},
	{0, IMAP_CMD_UNSELECT, false, IMAP_CAP_UNSELECT, "UNSELECT"},
	{0, IMAP_CMD_NOTIFY, false, IMAP_CAP_NOTIFY, "NOTIFY"},
	{IMAP_USE_SEARCH_RETURN, 0, false, IMAP_CAP_ESEARCH, "SEARCH RETURN"},
	{IMAP_USE_CHANGEDSINCE, 0, false, IMAP_CAP_CONDSTORE, "the CHANGEDSINCE modifier"},
	{IMAP_USE_UNCHANGEDSINCE, 0, false, IMAP_CAP_CONDSTORE, "the UNCHANGEDSINCE modifier"},
	{IMAP_USE_MODSEQ_KEY, 0, false, IMAP_CAP_CONDSTORE, "the MODSEQ search key"},
	{IMAP_USE_MODSEQ_ATT, 0, false, IMAP_CAP_CONDSTORE, "MODSEQ / HIGHESTMODSEQ"},
	{IMAP_USE_CONDSTORE_PARAM, 0, false, IMAP_CAP_CONDSTORE, "SELECT (CONDSTORE)"},
	{IMAP_USE_QRESYNC_PARAM, 0, false, IMAP_CAP_QRESYNC, "SELECT (QRESYNC ...)"},
	{IMAP_USE_VANISHED, 0, false, IMAP_CAP_QRESYNC, "the VANISHED modifier"},
	{IMAP_USE_BINARY, 0, false, IMAP_CAP_BINARY, "BINARY"},
	{IMAP_USE_STATUS_SIZE, 0, false, IMAP_CAP_STATUS_SIZE, "STATUS (SIZE)"},
	{IMAP_USE_OBJECTID, 0, false, IMAP_CAP_OBJECTID, "EMAILID / THREADID / MAILBOXID"},
	{IMAP_USE_SEARCHRES, 0, false, IMAP_CAP_SEARCHRES, "$ (SEARCHRES)"},
};

static void check_capabilities(struct imap_protocol *p, const struct imap_parsed *r,
			       struct imap_slice tag)
{
	imap_capset eff;

	if (!p->caps_known)
		return;
	eff = imap_capset_effective(p->caps);
	for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++) {
		const struct needs *n = &needs[i];
		bool used = n->use != 0 ? (r->uses & n->use) != 0
					: r->cmd == n->cmd && r->uid == n->uid;

		if (used && !IMAP_CAPSET_HAS(eff, n->cap))
			not_advertised(p, n->cap, tag, n->what);
	}
}

static void not_enabled(struct imap_protocol *p, enum imap_cap cap, struct imap_slice tag,
			const char *what)
{
	if (p->enable_said & ((uint64_t)1 << cap))
		return;
	p->enable_said |= (uint64_t)1 << cap;
	protocol_say(p, IMAP_RULE_EXTENSION_NOT_ENABLED, tag.p, tag.len,
		     "%.*s uses %s before ENABLE %s succeeded (no * ENABLED %s came); the server "
		     "must answer BAD",
		     (int)tag.len, (const char *)tag.p, what, imap_cap_name(cap),
		     imap_cap_name(cap));
}

static void check_enabled(struct imap_protocol *p, const struct imap_parsed *r,
			  struct imap_slice tag)
{
	imap_capset eff = imap_capset_effective(p->caps);

	/* only a session seen from its start tells what was never enabled */
	if (!p->whole)
		return;
	if ((r->uses & (IMAP_USE_QRESYNC_PARAM | IMAP_USE_VANISHED)) &&
	    !IMAP_CAPSET_HAS(p->enabled, IMAP_CAP_QRESYNC) &&
	    (!p->caps_known || IMAP_CAPSET_HAS(eff, IMAP_CAP_QRESYNC)))
		not_enabled(p, IMAP_CAP_QRESYNC, tag,
			    (r->uses & IMAP_USE_VANISHED) ? "the VANISHED modifier"
							  : "SELECT (QRESYNC ...)");
	/* 8-bit text in a quoted string: UTF8=ACCEPT or IMAP4rev2 enabled
	 * (RFC 6855 section 3); a credential's bytes are not quoted */
	if ((r->uses & IMAP_USE_UTF8) && r->cmd != IMAP_CMD_LOGIN &&
	    !IMAP_CAPSET_HAS(p->enabled, IMAP_CAP_UTF8_ACCEPT) &&
	    !IMAP_CAPSET_HAS(p->enabled, IMAP_CAP_IMAP4REV2))
		not_enabled(p, IMAP_CAP_UTF8_ACCEPT, tag, "8-bit (UTF-8) text in a quoted string");
}

static bool uses_numbers(enum imap_cmd cmd)
{
	return cmd == IMAP_CMD_FETCH || cmd == IMAP_CMD_STORE || cmd == IMAP_CMD_COPY ||
	       cmd == IMAP_CMD_MOVE;
}

static void check_numbers(struct imap_protocol *p, const struct imap_parsed *r,
			  struct imap_slice tag)
{
	if (!r->seq.present || r->seq.max == 0)
		return;
	if (!r->uid && uses_numbers(r->cmd) && p->exists_known && p->expunged &&
	    r->seq.max > p->exists && p->npending == 0)
		protocol_say(p, IMAP_RULE_MSN_AFTER_EXPUNGE, tag.p, tag.len,
			     "%.*s names message %" PRIu64 " but the mailbox has %" PRIu64
			     " since the EXPUNGEs the server sent: the client did not renumber",
			     (int)tag.len, (const char *)tag.p, r->seq.max, p->exists);
	if (r->uid && (uses_numbers(r->cmd) || r->cmd == IMAP_CMD_EXPUNGE) && p->validity_changed &&
	    !p->uid_learned)
		protocol_say(p, IMAP_RULE_UID_AFTER_UIDVALIDITY_CHANGE, tag.p, tag.len,
			     "%.*s names UIDs (up to %" PRIu64 ") after UIDVALIDITY changed to %" PRIu64
			     ", before learning any UID under it: they name other messages now",
			     (int)tag.len, (const char *)tag.p, r->seq.max, p->uidvalidity);
}

static void push_pending(struct imap_protocol *p, const struct imap_parsed *r,
			 struct imap_slice tag, struct imap_mailbox_facts *mailbox)
{
	struct pending *c;

	if (p->npending == p->pending_cap && p->pending_cap < PENDING_MAX) {
		size_t cap = p->pending_cap ? p->pending_cap * 2 : 4;
		struct pending *n = realloc(p->pending, cap * sizeof(*n));

		if (n != NULL) {
			p->pending = n;
			p->pending_cap = cap;
		}
	}
	if (p->npending == p->pending_cap) {
		if (p->npending == 0)
			return;
		protocol_drop_pending(p, 0);
	}
	c = &p->pending[p->npending++];
	memset(c, 0, sizeof(*c));
	c->tag_len = tag.len < IMAP_TAG_SHOW ? tag.len : IMAP_TAG_SHOW;
	memcpy(c->tag, tag.p, c->tag_len);
	c->cmd = r->cmd;
	c->uid = r->uid;
	c->sasl_ir = r->sasl_ir;
	c->mailbox = mailbox;
}

void protocol_client_command(struct imap_protocol *p, const struct imap_parsed *r,
			     struct imap_slice tag)
{
	struct imap_mailbox_facts *mailbox = NULL;

	if (r->cmd == IMAP_CMD_NONE || tag.len == 0)
		return;
	check_capabilities(p, r, tag);
	check_enabled(p, r, tag);
	check_numbers(p, r, tag);
	if (r->cmd == IMAP_CMD_SELECT || r->cmd == IMAP_CMD_EXAMINE) {
		if (!r->mailbox_cut)
			mailbox = imap_mailboxes_get(&p->mailboxes, r->mailbox.p, r->mailbox.len);
		protocol_begin_selection(p, mailbox);
	}
	push_pending(p, r, tag, mailbox);
}
