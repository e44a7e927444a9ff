/* The mailbox model: the selected mailbox's count, its message-number
 * to UID map as far as seen, and each mailbox's UIDVALIDITY, UIDNEXT and
 * HIGHESTMODSEQ, with the server rules that compare them. */
#include "imap/protocol_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The codes a person should read (RFC 9051 section 7.1, RFC 5530), and
 * what each means. */
static const struct {
	enum imap_code code;
	const char *what;
} read_codes[] = {
	{IMAP_CODE_ALERT, "the server asks that this text be shown to the user"},
	{IMAP_CODE_THROTTLED, "the server is slowing this client down"},
	{IMAP_CODE_LIMIT, "a server limit was reached"},
	{IMAP_CODE_UNAVAILABLE, "the server cannot do this now (a temporary failure)"},
	{IMAP_CODE_OVERQUOTA, "the user is over quota"},
	{IMAP_CODE_CLIENTBUG, "the server says the client did something wrong"},
	{IMAP_CODE_SERVERBUG, "the server says it failed itself"},
};

static void say_code(struct imap_protocol *p, const struct imap_parsed *r)
{
	char name[48], text[200];
	const char *what = "";
	struct imap_anomaly a;

	for (size_t i = 0; i < sizeof(read_codes) / sizeof(read_codes[0]); i++)
		if (read_codes[i].code == r->code)
			what = read_codes[i].what;
	protocol_escape(name, sizeof(name), r->code_name.p, r->code_name.len, 32);
	protocol_escape(text, sizeof(text), r->text.p, r->text.len, 160);
	imap_anomaly_make(&a, IMAP_RULE_RESPONSE_CODE, p->ts, NULL, 0, "%s[%s] %s: \"%s\"",
			  r->code == IMAP_CODE_ALERT ? "ALERT " : "", name, what, text);
	a.alert = r->code == IMAP_CODE_ALERT;
	protocol_emit(p, &a);
}

void protocol_map_clear(struct imap_protocol *p)
{
	p->map_len = 0;
}

static void map_set(struct imap_protocol *p, uint64_t msn, uint64_t uid)
{
	if (msn == 0 || msn > UID_MAP_MAX || uid > UINT32_MAX)
		return;
	/* grown as far as the numbers seen, not to its bound at once */
	if (msn > p->map_cap) {
		size_t cap = p->map_cap ? p->map_cap : 64;
		uint32_t *m;

		while (cap < msn)
			cap *= 2;
		if (cap > UID_MAP_MAX)
			cap = UID_MAP_MAX;
		m = realloc(p->uid_map, cap * sizeof(*m));
		if (m == NULL)
			return;
		p->uid_map = m;
		p->map_cap = cap;
	}
	while (p->map_len < msn)
		p->uid_map[p->map_len++] = 0;
	p->uid_map[msn - 1] = (uint32_t)uid;
}

static void map_expunge(struct imap_protocol *p, uint64_t msn)
{
	if (msn == 0 || msn > p->map_len)
		return;
	memmove(&p->uid_map[msn - 1], &p->uid_map[msn], (p->map_len - msn) * sizeof(uint32_t));
	p->map_len--;
}

void protocol_begin_selection(struct imap_protocol *p, struct imap_mailbox_facts *mailbox)
{
	p->selected = mailbox;
	p->exists_known = false;
	p->exists = 0;
	p->expunged = false;
	p->uidvalidity_known = false;
	p->validity_changed = false;
	p->uid_learned = false;
	p->fetch_uid_said = false;
	p->unsolicited_said = false;
	p->msn_said = false;
	protocol_map_clear(p);
}

bool protocol_select_pending(const struct imap_protocol *p)
{
	return protocol_pending(p, IMAP_CMD_SELECT, false) ||
	       protocol_pending(p, IMAP_CMD_EXAMINE, false);
}

static void set_uidvalidity(struct imap_protocol *p, struct imap_mailbox_facts *m, uint64_t v,
			    bool in_selection)
{
	char name[160];

	if (m == NULL)
		return;
	if (in_selection && p->uidvalidity_known && p->uidvalidity != v && !protocol_select_pending(p)) {
		protocol_escape(name, sizeof(name), m->name, m->name_len, 100);
		protocol_say(p, IMAP_RULE_UIDVALIDITY_CHANGED, NULL, 0,
			     "UIDVALIDITY of the selected mailbox \"%s\" changed from %" PRIu64
			     " to %" PRIu64 " while selected; every UID the client holds is void",
			     name, p->uidvalidity, v);
		p->validity_changed = true;
		p->uid_learned = false;
	} else if (in_selection && m->uidvalidity_known && m->uidvalidity != v) {
		/* legal between selections, but the client must forget its UIDs */
		p->validity_changed = true;
		p->uid_learned = false;
	}
	if (in_selection) {
		p->uidvalidity_known = true;
		p->uidvalidity = v;
	}
	if (m->uidvalidity_known && m->uidvalidity != v) {
		/* a new UID space: the other facts start over */
		m->uidnext_known = false;
		m->modseq_known = false;
	}
	m->uidvalidity_known = true;
	m->uidvalidity = v;
}

static void set_uidnext(struct imap_protocol *p, struct imap_mailbox_facts *m, uint64_t v)
{
	char name[160];

	if (m == NULL)
		return;
	if (m->uidnext_known && v < m->uidnext) {
		protocol_escape(name, sizeof(name), m->name, m->name_len, 100);
		protocol_say(p, IMAP_RULE_UIDNEXT_DECREASED, NULL, 0,
			     "UIDNEXT of \"%s\" went down from %" PRIu64 " to %" PRIu64
			     " with the same UIDVALIDITY; UIDs are never reused",
			     name, m->uidnext, v);
	}
	m->uidnext_known = true;
	m->uidnext = v;
}

static void set_modseq(struct imap_protocol *p, struct imap_mailbox_facts *m, uint64_t v,
		       bool from_code)
{
	char name[160];

	if (m == NULL)
		return;
	if (from_code && v == 0) {
		protocol_escape(name, sizeof(name), m->name, m->name_len, 100);
		protocol_say(p, IMAP_RULE_HIGHESTMODSEQ_ZERO, NULL, 0,
			     "[HIGHESTMODSEQ 0] for \"%s\": a mailbox without mod-sequences is "
			     "announced with [NOMODSEQ]; a client stores 0 and resynchronises "
			     "everything each time",
			     name);
		return;
	}
	if (m->modseq_known && v < m->highestmodseq && v > 0) {
		protocol_escape(name, sizeof(name), m->name, m->name_len, 100);
		protocol_say(p, IMAP_RULE_MODSEQ_DECREASED, NULL, 0,
			     "HIGHESTMODSEQ of \"%s\" went down from %" PRIu64 " to %" PRIu64
			     " with the same UIDVALIDITY; a client resyncing from it misses changes",
			     name, m->highestmodseq, v);
	}
	if (v > 0 || !m->modseq_known) {
		m->modseq_known = true;
		m->highestmodseq = v;
		m->nomodseq = false;
	}
}

void protocol_apply_code(struct imap_protocol *p, const struct imap_parsed *r)
{
	switch (r->code) {
	case IMAP_CODE_CAPABILITY:
		p->caps = r->caps;
		p->caps_known = true;
		break;
	case IMAP_CODE_UIDVALIDITY:
		set_uidvalidity(p, p->selected, r->code_number, true);
		break;
	case IMAP_CODE_UIDNEXT:
		set_uidnext(p, p->selected, r->code_number);
		break;
	case IMAP_CODE_HIGHESTMODSEQ:
		set_modseq(p, p->selected, r->code_number, true);
		break;
	case IMAP_CODE_NOMODSEQ:
		if (p->selected != NULL)
			p->selected->nomodseq = true;
		break;
	case IMAP_CODE_CLOSED:
		/* RFC 7162 section 3.2.11: what follows is the new mailbox's */
		p->exists_known = false;
		p->expunged = false;
		protocol_map_clear(p);
		break;
	case IMAP_CODE_ALERT:
	case IMAP_CODE_THROTTLED:
	case IMAP_CODE_LIMIT:
	case IMAP_CODE_UNAVAILABLE:
	case IMAP_CODE_OVERQUOTA:
	case IMAP_CODE_CLIENTBUG:
	case IMAP_CODE_SERVERBUG:
		say_code(p, r);
		break;
	case IMAP_CODE_NONE:
	case IMAP_CODE_OTHER:
	case IMAP_CODE_READ_ONLY:
	case IMAP_CODE_READ_WRITE:
	default:
		break;
	}
}

const char *protocol_kind_word(enum imap_resp_kind kind)
{
	switch (kind) {
	case IMAP_RESP_EXISTS:
		return "EXISTS";
	case IMAP_RESP_RECENT:
		return "RECENT";
	case IMAP_RESP_EXPUNGE:
		return "EXPUNGE";
	case IMAP_RESP_FETCH:
		return "FETCH";
	case IMAP_RESP_VANISHED:
		return "VANISHED";
	case IMAP_RESP_FLAGS:
		return "FLAGS";
	case IMAP_RESP_NONE:
	case IMAP_RESP_CONTINUATION:
	case IMAP_RESP_TAGGED:
	case IMAP_RESP_STATUS:
	case IMAP_RESP_CAPABILITY:
	case IMAP_RESP_ENABLED:
	case IMAP_RESP_LIST:
	case IMAP_RESP_STATUS_DATA:
	case IMAP_RESP_SEARCH:
	case IMAP_RESP_ESEARCH:
	case IMAP_RESP_NAMESPACE:
	case IMAP_RESP_ID:
	case IMAP_RESP_UIDFETCH:
	case IMAP_RESP_OTHER:
	default:
		return NULL;
	}
}

static void msn_check(struct imap_protocol *p, const struct imap_parsed *r)
{
	if (!p->exists_known || r->number <= p->exists || p->msn_said || protocol_select_pending(p))
		return;
	p->msn_said = true;
	protocol_say(p, IMAP_RULE_MSN_OUT_OF_RANGE, NULL, 0,
		     "* %" PRIu64 " %s but the mailbox has %" PRIu64
		     " message(s) (EXISTS): a message number past EXISTS",
		     r->number, protocol_kind_word(r->kind), p->exists);
}

static void fetch_data(struct imap_protocol *p, const struct imap_parsed *r)
{
	msn_check(p, r);
	if (r->fetch_uid_present) {
		map_set(p, r->number, r->fetch_uid);
		p->uid_learned = true;
		return;
	}
	if (p->npending == 1 && p->pending[0].cmd == IMAP_CMD_FETCH && p->pending[0].uid) {
		if (!p->fetch_uid_said) {
			p->fetch_uid_said = true;
			protocol_say(p, IMAP_RULE_UID_FETCH_WITHOUT_UID, p->pending[0].tag,
				     p->pending[0].tag_len,
				     "* %" PRIu64 " FETCH without UID in the answer to UID FETCH %.*s; "
				     "the client cannot tell which message it is",
				     r->number, (int)p->pending[0].tag_len,
				     (const char *)p->pending[0].tag);
		}
		return;
	}
	/* answers to a FETCH by message number that asked for no UID are
	 * exempt (RFC 7162 section 3.2.4) */
	if (IMAP_CAPSET_HAS(p->enabled, IMAP_CAP_QRESYNC) && !p->unsolicited_said &&
	    !protocol_pending(p, IMAP_CMD_FETCH, false)) {
		p->unsolicited_said = true;
		protocol_say(p, IMAP_RULE_UNSOLICITED_FETCH_WITHOUT_UID, NULL, 0,
			     "* %" PRIu64 " FETCH without UID after ENABLE QRESYNC: every FETCH "
			     "must carry its UID then",
			     r->number);
	}
}

/* The count the client knows, and the selected mailbox's facts with it. */
static void set_exists(struct imap_protocol *p, uint64_t n)
{
	p->exists_known = true;
	p->exists = n;
	if (p->selected != NULL) {
		p->selected->exists_known = true;
		p->selected->exists = n;
	}
}

void protocol_mailbox_data(struct imap_protocol *p, const struct imap_parsed *r)
{
	switch (r->kind) {
	case IMAP_RESP_EXISTS:
		if (p->exists_known && r->number < p->exists && !protocol_select_pending(p))
			protocol_say(p, IMAP_RULE_EXISTS_DECREASED, NULL, 0,
				     "* %" PRIu64 " EXISTS after %" PRIu64
				     ": the count went down with no EXPUNGE or VANISHED for the "
				     "difference; the client's message numbers no longer match",
				     r->number, p->exists);
		set_exists(p, r->number);
		break;
	case IMAP_RESP_EXPUNGE:
		msn_check(p, r);
		map_expunge(p, r->number);
		if (p->exists_known)
			set_exists(p, p->exists > 0 ? p->exists - 1 : 0);
		p->expunged = true;
		break;
	case IMAP_RESP_VANISHED:
		if (!r->vanished_earlier) {
			if (p->exists_known)
				set_exists(p, p->exists > r->vanished_count
						      ? p->exists - r->vanished_count : 0);
			p->expunged = true;
			/* which numbers went is not said: the map is void */
			protocol_map_clear(p);
		}
		break;
	case IMAP_RESP_FETCH:
		fetch_data(p, r);
		break;
	case IMAP_RESP_UIDFETCH:
	case IMAP_RESP_SEARCH:
	case IMAP_RESP_ESEARCH:
		p->uid_learned = true;
		break;
	case IMAP_RESP_NONE:
	case IMAP_RESP_CONTINUATION:
	case IMAP_RESP_TAGGED:
	case IMAP_RESP_STATUS:
	case IMAP_RESP_CAPABILITY:
	case IMAP_RESP_ENABLED:
	case IMAP_RESP_FLAGS:
	case IMAP_RESP_LIST:
	case IMAP_RESP_STATUS_DATA:
	case IMAP_RESP_NAMESPACE:
	case IMAP_RESP_ID:
	case IMAP_RESP_RECENT:
	case IMAP_RESP_OTHER:
	default:
		break;
	}
}

void protocol_status_data(struct imap_protocol *p, const struct imap_parsed *r)
{
	struct imap_mailbox_facts *m;

	if (r->mailbox_cut)
		return;
	m = imap_mailboxes_get(&p->mailboxes, r->mailbox.p, r->mailbox.len);
	if (m == NULL)
		return;
	if (r->status_uidvalidity_present)
		set_uidvalidity(p, m, r->status_uidvalidity, false);
	if (r->status_uidnext_present)
		set_uidnext(p, m, r->status_uidnext);
	/* STATUS HIGHESTMODSEQ 0 is right for a mailbox without them
	 * (RFC 7162 section 3.1.2.2) */
	if (r->status_modseq_present)
		set_modseq(p, m, r->status_modseq, false);
}
