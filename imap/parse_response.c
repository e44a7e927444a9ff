/* Server responses (RFC 9051 section 7 and the extensions' responses). */
#include "imap/parse_int.h"

#include <string.h>

static const struct {
	const char *name;
	enum imap_code code;
} codes[] = {
	{"ALERT", IMAP_CODE_ALERT},         {"CAPABILITY", IMAP_CODE_CAPABILITY},
	{"UIDVALIDITY", IMAP_CODE_UIDVALIDITY}, {"UIDNEXT", IMAP_CODE_UIDNEXT},
	{"HIGHESTMODSEQ", IMAP_CODE_HIGHESTMODSEQ}, {"NOMODSEQ", IMAP_CODE_NOMODSEQ},
	{"CLOSED", IMAP_CODE_CLOSED},       {"READ-ONLY", IMAP_CODE_READ_ONLY},
	{"READ-WRITE", IMAP_CODE_READ_WRITE}, {"THROTTLED", IMAP_CODE_THROTTLED},
	{"LIMIT", IMAP_CODE_LIMIT},         {"UNAVAILABLE", IMAP_CODE_UNAVAILABLE},
	{"OVERQUOTA", IMAP_CODE_OVERQUOTA}, {"CLIENTBUG", IMAP_CODE_CLIENTBUG},
	{"SERVERBUG", IMAP_CODE_SERVERBUG},
};

/* "(" objectid ")": 1*255(ALPHA / DIGIT / "_" / "-") */
static bool objectid(struct cursor *c, enum imap_element element)
{
	const uint8_t *start;

	if (!eat(c, '('))
		return fail(c, element);
	start = c->p;
	while (!at_end(c) && ((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z') ||
			      (*c->p >= '0' && *c->p <= '9') || *c->p == '_' || *c->p == '-'))
		c->p++;
	if (c->p == start || c->p - start > 255 || !eat(c, ')'))
		return fail(c, element);
	return true;
}

/* The text of a code the grammar does not name: atom [SP 1*<TEXT-CHAR
 * except "]">] */
static bool code_text(struct cursor *c)
{
	if (!eat(c, ' '))
		return true;
	if (at_end(c) || *c->p == ']')
		return fail(c, IMAP_EL_RESP_TEXT_CODE);
	while (!at_end(c) && *c->p != ']') {
		if (*c->p == '\r' || *c->p == '\n' || *c->p == 0)
			return fail(c, IMAP_EL_RESP_TEXT_CODE);
		c->p++;
	}
	return true;
}

static bool resp_text_code(struct cursor *c)
{
	struct imap_parsed *o = c->out;
	struct imap_slice name;
	const uint8_t *start = c->p;

	while (!at_end(c) && is_atom_char(*c->p))
		c->p++;
	name.p = start;
	name.len = (size_t)(c->p - start);
	if (name.len == 0)
		return fail(c, IMAP_EL_RESP_TEXT_CODE);
	o->code_name = name;
	o->code = IMAP_CODE_OTHER;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (imap_slice_eq(name, codes[i].name))
			o->code = codes[i].code;
	if (o->code == IMAP_CODE_CAPABILITY)
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && capabilities(c, &o->caps, true);
	if (o->code == IMAP_CODE_UIDVALIDITY || o->code == IMAP_CODE_UIDNEXT)
		return sp(c, IMAP_EL_RESP_TEXT_CODE) &&
		       nz_number(c, &o->code_number, IMAP_EL_RESP_TEXT_CODE);
	/* 0 parses: highestmodseq-zero says what is wrong with it */
	if (o->code == IMAP_CODE_HIGHESTMODSEQ)
		return sp(c, IMAP_EL_RESP_TEXT_CODE) &&
		       number(c, &o->code_number, IMAP_EL_RESP_TEXT_CODE);
	if (imap_slice_eq(name, "PERMANENTFLAGS"))
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && flag_list(c);
	if (imap_slice_eq(name, "UNSEEN"))
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && nz_number(c, NULL, IMAP_EL_RESP_TEXT_CODE);
	if (imap_slice_eq(name, "APPENDUID"))
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && nz_number(c, NULL, IMAP_EL_RESP_TEXT_CODE) &&
		       sp(c, IMAP_EL_RESP_TEXT_CODE) && uid_set(c, NULL);
	if (imap_slice_eq(name, "COPYUID"))
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && nz_number(c, NULL, IMAP_EL_RESP_TEXT_CODE) &&
		       sp(c, IMAP_EL_RESP_TEXT_CODE) && uid_set(c, NULL) &&
		       sp(c, IMAP_EL_RESP_TEXT_CODE) && uid_set(c, NULL);
	if (imap_slice_eq(name, "MODIFIED")) {
		struct imap_seq_facts f = {0};

		return sp(c, IMAP_EL_RESP_TEXT_CODE) && seq_set(c, &f, false);
	}
	if (imap_slice_eq(name, "MAILBOXID"))
		return sp(c, IMAP_EL_RESP_TEXT_CODE) && objectid(c, IMAP_EL_RESP_TEXT_CODE);
	if (imap_slice_eq(name, "BADCHARSET") && peek(c) == ' ' && c->end - c->p > 1 &&
	    c->p[1] == '(') {
		c->p += 2;
		do {
			if (!astring(c, NULL))
				return fail(c, IMAP_EL_RESP_TEXT_CODE);
		} while (eat(c, ' '));
		return eat(c, ')') || fail(c, IMAP_EL_RESP_TEXT_CODE);
	}
	return code_text(c);
}

bool resp_text(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (eat(c, '[')) {
		if (!resp_text_code(c))
			return false;
		if (!eat(c, ']'))
			return fail(c, IMAP_EL_RESP_TEXT_CODE);
		/* RFC 9051 wants SP after "]"; a code with no text is common
		 * ("* OK [READ-WRITE]") and harmless */
		if (at_end(c))
			return true;
		if (!sp(c, IMAP_EL_RESP_TEXT))
			return false;
	}
	o->text.p = c->p;
	while (!at_end(c)) {
		if (*c->p == '\r' || *c->p == '\n' || *c->p == 0)
			return fail(c, IMAP_EL_RESP_TEXT);
		c->p++;
	}
	o->text.len = (size_t)(c->p - o->text.p);
	return true;
}

/* After a status word: SP resp-text, or nothing (a bare "a1 OK" is sent
 * by enough servers to be worth no finding). */
static bool status_rest(struct cursor *c)
{
	if (at_end(c))
		return true;
	return sp(c, IMAP_EL_RESP_TEXT) && resp_text(c);
}

static bool status_word(struct cursor *c, enum imap_status *st)
{
	if (WORD(c, "OK"))
		*st = IMAP_STATUS_OK;
	else if (WORD(c, "NO"))
		*st = IMAP_STATUS_NO;
	else if (WORD(c, "BAD"))
		*st = IMAP_STATUS_BAD;
	else if (WORD(c, "BYE"))
		*st = IMAP_STATUS_BYE;
	else if (WORD(c, "PREAUTH"))
		*st = IMAP_STATUS_PREAUTH;
	else
		return false;
	return true;
}

/* section: "[" ... "]" with HEADER.FIELDS lists; kept loose, balanced */
static bool section(struct cursor *c)
{
	if (!eat(c, '['))
		return fail(c, IMAP_EL_SECTION);
	while (!at_end(c) && *c->p != ']') {
		if (*c->p == '(') {
			c->p++;
			do {
				if (!astring(c, NULL))
					return fail(c, IMAP_EL_SECTION);
			} while (eat(c, ' '));
			if (!eat(c, ')'))
				return fail(c, IMAP_EL_SECTION);
			continue;
		}
		if (!(is_atom_char(*c->p) || *c->p == ' '))
			return fail(c, IMAP_EL_SECTION);
		c->p++;
	}
	if (!eat(c, ']'))
		return fail(c, IMAP_EL_SECTION);
	/* "<" number ">" */
	if (eat(c, '<') && (!number(c, NULL, IMAP_EL_SECTION) || !eat(c, '>')))
		return fail(c, IMAP_EL_SECTION);
	return true;
}

static bool msg_att_one(struct cursor *c)
{
	struct imap_parsed *o = c->out;
	int first = peek(c) & ~0x20;

	/* the first letter picks the few names to try */
	if (first == 'F' && WORD(c, "FLAGS"))
		return sp(c, IMAP_EL_MSG_ATT) && flag_list(c);
	if (first == 'U' && WORD(c, "UID")) {
		o->fetch_uid_present = true;
		return sp(c, IMAP_EL_MSG_ATT) && nz_number(c, &o->fetch_uid, IMAP_EL_MSG_ATT);
	}
	if (first == 'M' && WORD(c, "MODSEQ")) {
		o->fetch_modseq_present = true;
		return (sp(c, IMAP_EL_MSG_ATT) && eat(c, '(') &&
			number(c, &o->fetch_modseq, IMAP_EL_MSG_ATT) && eat(c, ')')) ||
		       fail(c, IMAP_EL_MSG_ATT);
	}
	if (first == 'I' && WORD(c, "INTERNALDATE"))
		return sp(c, IMAP_EL_MSG_ATT) && date_time(c);
	if (first == 'R') {
		if (WORD(c, "RFC822.SIZE"))
			return sp(c, IMAP_EL_MSG_ATT) && number(c, NULL, IMAP_EL_MSG_ATT);
		if (WORD(c, "RFC822") || WORD(c, "RFC822.HEADER") || WORD(c, "RFC822.TEXT"))
			return sp(c, IMAP_EL_MSG_ATT) && (nstring(c) || fail(c, IMAP_EL_MSG_ATT));
	}
	if (first == 'E') {
		if (WORD(c, "ENVELOPE"))
			return sp(c, IMAP_EL_MSG_ATT) && envelope(c);
		if (WORD(c, "EMAILID"))
			return sp(c, IMAP_EL_MSG_ATT) && objectid(c, IMAP_EL_MSG_ATT);
	}
	if (first == 'B') {
		if (WORD(c, "BODYSTRUCTURE") || WORD(c, "BODY"))
			return sp(c, IMAP_EL_MSG_ATT) && body(c);
		if (PREFIX(c, "BODY"))
			return section(c) && sp(c, IMAP_EL_MSG_ATT) &&
			       (nstring(c) || fail(c, IMAP_EL_MSG_ATT));
		if (PREFIX(c, "BINARY.SIZE"))
			return section(c) && sp(c, IMAP_EL_MSG_ATT) && number(c, NULL, IMAP_EL_MSG_ATT);
		if (PREFIX(c, "BINARY")) {
			if (!section(c) || !sp(c, IMAP_EL_MSG_ATT))
				return false;
			if (peek(c) == '~')
				return literal(c, NULL, NULL, true);
			return nstring(c) || fail(c, IMAP_EL_MSG_ATT);
		}
	}
	if (first == 'S' && WORD(c, "SAVEDATE"))
		return sp(c, IMAP_EL_MSG_ATT) && (is_nil(c) || date_time(c));
	if (first == 'T' && WORD(c, "THREADID"))
		return sp(c, IMAP_EL_MSG_ATT) && (is_nil(c) || objectid(c, IMAP_EL_MSG_ATT));
	/* X-GM-*, PREVIEW, ANNOTATION and the like: name and any value */
	return (atom(c, NULL) || fail(c, IMAP_EL_MSG_ATT)) && sp(c, IMAP_EL_MSG_ATT) &&
	       any_value(c);
}

static bool msg_att(struct cursor *c)
{
	if (!eat(c, '('))
		return fail(c, IMAP_EL_MSG_ATT);
	do {
		if (!msg_att_one(c))
			return false;
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_MSG_ATT);
}

static bool message_data(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (!number(c, &o->number, IMAP_EL_MESSAGE_DATA) || !sp(c, IMAP_EL_MESSAGE_DATA))
		return false;
	/* the common case first: a FETCH, of a message that exists */
	if (o->number > 0 && WORD(c, "FETCH")) {
		o->kind = IMAP_RESP_FETCH;
		return sp(c, IMAP_EL_MSG_ATT) && msg_att(c);
	}
	if (WORD(c, "EXISTS")) {
		o->kind = IMAP_RESP_EXISTS;
		return true;
	}
	if (WORD(c, "RECENT")) {
		o->kind = IMAP_RESP_RECENT;
		return true;
	}
	/* message numbers start at 1 */
	if (o->number == 0)
		return fail(c, IMAP_EL_MESSAGE_DATA);
	if (WORD(c, "EXPUNGE")) {
		o->kind = IMAP_RESP_EXPUNGE;
		return true;
	}
	if (WORD(c, "FETCH")) {
		o->kind = IMAP_RESP_FETCH;
		return sp(c, IMAP_EL_MSG_ATT) && msg_att(c);
	}
	if (WORD(c, "UIDFETCH")) {
		o->kind = IMAP_RESP_UIDFETCH;
		o->fetch_uid_present = true;
		o->fetch_uid = o->number;
		return sp(c, IMAP_EL_MSG_ATT) && msg_att(c);
	}
	return fail(c, IMAP_EL_MESSAGE_DATA);
}

/* "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
 * [SP "(" mbox-list-extended ")"] */
static bool mailbox_list(struct cursor *c)
{
	if (!sp(c, IMAP_EL_MAILBOX_LIST) || !flag_list(c) || !sp(c, IMAP_EL_MAILBOX_LIST))
		return fail(c, IMAP_EL_MAILBOX_LIST);
	if (!is_nil(c)) {
		struct imap_slice d;

		if (!quoted(c, &d) || d.len == 0 || d.len > 2 || (d.len == 2 && d.p[0] != '\\'))
			return fail(c, IMAP_EL_MAILBOX_LIST);
	}
	if (!sp(c, IMAP_EL_MAILBOX_LIST) || !mailbox(c))
		return fail(c, IMAP_EL_MAILBOX_LIST);
	if (eat(c, ' ') && (peek(c) != '(' || !any_value(c)))
		return fail(c, IMAP_EL_MAILBOX_LIST);
	return true;
}

static bool status_data(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (!sp(c, IMAP_EL_STATUS_ATT) || !mailbox(c) || !sp(c, IMAP_EL_STATUS_ATT) ||
	    !eat(c, '('))
		return fail(c, IMAP_EL_STATUS_ATT);
	if (eat(c, ')'))
		return true;
	do {
		struct imap_slice name;
		uint64_t v = 0;

		if (!atom(c, &name) || !sp(c, IMAP_EL_STATUS_ATT))
			return fail(c, IMAP_EL_STATUS_ATT);
		if (imap_slice_eq(name, "MAILBOXID")) {
			if (!objectid(c, IMAP_EL_STATUS_ATT))
				return false;
			continue;
		}
		if (!number(c, &v, IMAP_EL_STATUS_ATT))
			return false;
		if (imap_slice_eq(name, "UIDVALIDITY")) {
			o->status_uidvalidity_present = true;
			o->status_uidvalidity = v;
		} else if (imap_slice_eq(name, "UIDNEXT")) {
			o->status_uidnext_present = true;
			o->status_uidnext = v;
		} else if (imap_slice_eq(name, "HIGHESTMODSEQ")) {
			o->status_modseq_present = true;
			o->status_modseq = v;
		}
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_STATUS_ATT);
}

/* SEARCH / SORT: *(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"] */
static bool search_data(struct cursor *c)
{
	while (eat(c, ' ')) {
		if (eat(c, '(')) {
			if (!WORD(c, "MODSEQ") || !sp(c, IMAP_EL_SEARCH) ||
			    !number(c, NULL, IMAP_EL_SEARCH) || !eat(c, ')'))
				return fail(c, IMAP_EL_SEARCH);
			return true;
		}
		if (!nz_number(c, NULL, IMAP_EL_SEARCH))
			return false;
	}
	return true;
}

/* ESEARCH [SP "(" "TAG" SP tag-string ")"] [SP "UID"] *(SP search-return-data) */
static bool esearch_data(struct cursor *c)
{
	const uint8_t *save = c->p;

	if (PREFIX(c, " (")) {
		if (!WORD(c, "TAG") || !sp(c, IMAP_EL_ESEARCH) || !string(c, NULL) || !eat(c, ')'))
			return fail(c, IMAP_EL_ESEARCH);
	} else {
		c->p = save;
	}
	save = c->p;
	if (!(eat(c, ' ') && WORD(c, "UID")))
		c->p = save;
	while (eat(c, ' ')) {
		struct imap_slice name;

		if (!atom(c, &name) || !sp(c, IMAP_EL_ESEARCH))
			return fail(c, IMAP_EL_ESEARCH);
		if (imap_slice_eq(name, "MIN") || imap_slice_eq(name, "MAX")) {
			if (!nz_number(c, NULL, IMAP_EL_ESEARCH))
				return false;
		} else if (imap_slice_eq(name, "COUNT") || imap_slice_eq(name, "MODSEQ")) {
			if (!number(c, NULL, IMAP_EL_ESEARCH))
				return false;
		} else if (imap_slice_eq(name, "ALL")) {
			struct imap_seq_facts f = {0};

			if (!seq_set(c, &f, false))
				return false;
		} else if (!any_value(c)) {
			return false;
		}
	}
	return true;
}

/* namespace: nil / "(" 1*( "(" string SP (DQUOTE QUOTED-CHAR DQUOTE / nil)
 * *(namespace-response-extension) ")" ) ")" */
static bool namespace_one(struct cursor *c)
{
	if (is_nil(c))
		return true;
	if (!eat(c, '('))
		return fail(c, IMAP_EL_NAMESPACE);
	do {
		if (!eat(c, '(') || !string(c, NULL) || !sp(c, IMAP_EL_NAMESPACE) ||
		    !(is_nil(c) || quoted(c, NULL)))
			return fail(c, IMAP_EL_NAMESPACE);
		/* extensions: SP string SP "(" string *(SP string) ")" */
		while (eat(c, ' ')) {
			if (!string(c, NULL) || !sp(c, IMAP_EL_NAMESPACE) || !eat(c, '('))
				return fail(c, IMAP_EL_NAMESPACE);
			do {
				if (!string(c, NULL))
					return fail(c, IMAP_EL_NAMESPACE);
			} while (eat(c, ' '));
			if (!eat(c, ')'))
				return fail(c, IMAP_EL_NAMESPACE);
		}
		if (!eat(c, ')'))
			return fail(c, IMAP_EL_NAMESPACE);
	} while (peek(c) == '(');
	return eat(c, ')') || fail(c, IMAP_EL_NAMESPACE);
}


/* thread-list: "(" (thread-members / thread-nested) ")", where
 * thread-members: nz-number *(SP nz-number) [SP thread-nested] and
 * thread-nested: 2*thread-list (RFC 5256 section 4) */
static bool thread_list(struct cursor *c)
{
	if (!eat(c, '(') || !enter(c))
		return fail(c, IMAP_EL_LIST);
	if (peek(c) != '(') {
		do {
			if (peek(c) == '(')
				break;
			if (!nz_number(c, NULL, IMAP_EL_LIST))
				return false;
		} while (eat(c, ' '));
	}
	while (peek(c) == '(')
		if (!thread_list(c))
			return false;
	leave(c);
	return eat(c, ')') || fail(c, IMAP_EL_LIST);
}

static bool untagged(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (peek(c) >= '0' && peek(c) <= '9')
		return message_data(c);
	if (status_word(c, &o->status)) {
		o->kind = IMAP_RESP_STATUS;
		return status_rest(c);
	}
	if (WORD(c, "CAPABILITY")) {
		o->kind = IMAP_RESP_CAPABILITY;
		return sp(c, IMAP_EL_CAPABILITY) && capabilities(c, &o->caps, true);
	}
	if (WORD(c, "ENABLED")) {
		o->kind = IMAP_RESP_ENABLED;
		return capabilities(c, &o->caps, false);
	}
	if (WORD(c, "FLAGS")) {
		o->kind = IMAP_RESP_FLAGS;
		return sp(c, IMAP_EL_FLAG_LIST) && flag_list(c);
	}
	if (WORD(c, "LIST") || WORD(c, "LSUB")) {
		o->kind = IMAP_RESP_LIST;
		return mailbox_list(c);
	}
	if (WORD(c, "STATUS")) {
		o->kind = IMAP_RESP_STATUS_DATA;
		return status_data(c);
	}
	if (WORD(c, "SEARCH") || WORD(c, "SORT")) {
		o->kind = IMAP_RESP_SEARCH;
		return search_data(c);
	}
	if (WORD(c, "ESEARCH")) {
		o->kind = IMAP_RESP_ESEARCH;
		return esearch_data(c);
	}
	if (WORD(c, "NAMESPACE")) {
		o->kind = IMAP_RESP_NAMESPACE;
		for (int i = 0; i < 3; i++)
			if (!sp(c, IMAP_EL_NAMESPACE) || !namespace_one(c))
				return false;
		return true;
	}
	if (WORD(c, "ID")) {
		o->kind = IMAP_RESP_ID;
		return sp(c, IMAP_EL_ID) && id_params(c, IMAP_EL_ID);
	}
	if (WORD(c, "VANISHED")) {
		o->kind = IMAP_RESP_VANISHED;
		if (!sp(c, IMAP_EL_VANISHED))
			return false;
		if (eat(c, '(')) {
			if (!WORD(c, "EARLIER") || !eat(c, ')') || !sp(c, IMAP_EL_VANISHED))
				return fail(c, IMAP_EL_VANISHED);
			o->vanished_earlier = true;
		}
		return uid_set(c, &o->vanished_count) || fail(c, IMAP_EL_VANISHED);
	}
	if (WORD(c, "THREAD")) {
		o->kind = IMAP_RESP_OTHER;
		if (eat(c, ' '))
			do {
				if (!thread_list(c))
					return false;
			} while (peek(c) == '(');
		return true;
	}
	/* QUOTA, ACL, METADATA...: well-formed values */
	o->kind = IMAP_RESP_OTHER;
	return (atom(c, NULL) || fail(c, IMAP_EL_RESPONSE)) && any_rest(c);
}

void imap_parse_response(const uint8_t *line, size_t len, const struct imap_literal_span *lits,
			 size_t nlits, struct imap_parsed *out)
{
	struct cursor cur, *c = &cur;

	cur_init(c, line, len, lits, nlits, out);
	if (eat(c, '+')) {
		/* "+" [SP (resp-text / base64)]: the text is the server's own */
		out->kind = IMAP_RESP_CONTINUATION;
		if (!at_end(c) && sp(c, IMAP_EL_RESPONSE))
			resp_text(c);
	} else if (eat(c, '*')) {
		if (sp(c, IMAP_EL_RESPONSE))
			untagged(c);
	} else {
		const uint8_t *start = c->p;

		/* tag: 1*<any ASTRING-CHAR except "+"> */
		while (!at_end(c) && (is_atom_char(*c->p) || *c->p == ']') && *c->p != '+')
			c->p++;
		if (c->p == start) {
			fail(c, IMAP_EL_TAG);
		} else if (sp(c, IMAP_EL_TAG)) {
			out->kind = IMAP_RESP_TAGGED;
			if (!status_word(c, &out->status) || out->status == IMAP_STATUS_BYE ||
			    out->status == IMAP_STATUS_PREAUTH)
				fail(c, IMAP_EL_RESPONSE);
			else
				status_rest(c);
		}
	}
	cur_finish(c);
}
