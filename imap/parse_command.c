/* Client commands (RFC 9051 section 6 and the extensions' commands). */
#include "imap/parse_int.h"

#include <string.h>

static const struct {
	const char *name;
	enum imap_cmd cmd;
} commands[] = {
	{"CAPABILITY", IMAP_CMD_CAPABILITY}, {"LOGIN", IMAP_CMD_LOGIN},
	{"AUTHENTICATE", IMAP_CMD_AUTHENTICATE}, {"STARTTLS", IMAP_CMD_STARTTLS},
	{"LOGOUT", IMAP_CMD_LOGOUT},        {"SELECT", IMAP_CMD_SELECT},
	{"EXAMINE", IMAP_CMD_EXAMINE},      {"CLOSE", IMAP_CMD_CLOSE},
	{"UNSELECT", IMAP_CMD_UNSELECT},    {"FETCH", IMAP_CMD_FETCH},
	{"STORE", IMAP_CMD_STORE},          {"SEARCH", IMAP_CMD_SEARCH},
	{"COPY", IMAP_CMD_COPY},            {"MOVE", IMAP_CMD_MOVE},
	{"EXPUNGE", IMAP_CMD_EXPUNGE},      {"IDLE", IMAP_CMD_IDLE},
	{"ENABLE", IMAP_CMD_ENABLE},        {"COMPRESS", IMAP_CMD_COMPRESS},
	{"ID", IMAP_CMD_ID},                {"NAMESPACE", IMAP_CMD_NAMESPACE},
	{"STATUS", IMAP_CMD_STATUS},        {"NOTIFY", IMAP_CMD_NOTIFY},
	{"SORT", IMAP_CMD_SORT},            {"THREAD", IMAP_CMD_THREAD},
	{"LIST", IMAP_CMD_LIST},            {"APPEND", IMAP_CMD_APPEND},
};


/* SELECT / EXAMINE parameters (RFC 4466 section 2.1, RFC 7162) */
static bool select_params(struct cursor *c)
{
	if (!eat(c, ' '))
		return true;
	if (!eat(c, '('))
		return fail(c, IMAP_EL_SELECT_PARAM);
	do {
		if (WORD(c, "CONDSTORE")) {
			c->out->uses |= IMAP_USE_CONDSTORE_PARAM;
		} else if (WORD(c, "QRESYNC")) {
			c->out->uses |= IMAP_USE_QRESYNC_PARAM;
			/* "(" uidvalidity SP mod-sequence-value [SP known-uids]
			 * [SP seq-match-data] ")" */
			if (!sp(c, IMAP_EL_SELECT_PARAM) || !eat(c, '(') ||
			    !nz_number(c, NULL, IMAP_EL_SELECT_PARAM) || !sp(c, IMAP_EL_SELECT_PARAM) ||
			    !number(c, NULL, IMAP_EL_SELECT_PARAM))
				return fail(c, IMAP_EL_SELECT_PARAM);
			while (eat(c, ' '))
				if (!any_value(c))
					return false;
			if (!eat(c, ')'))
				return fail(c, IMAP_EL_SELECT_PARAM);
		} else {
			if (!atom(c, NULL))
				return fail(c, IMAP_EL_SELECT_PARAM);
			if (eat(c, ' ') && !any_value(c))
				return false;
		}
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_SELECT_PARAM);
}

static bool fetch_att(struct cursor *c)
{
	struct imap_parsed *o = c->out;
	const uint8_t *start = c->p;

	if (WORD(c, "MODSEQ"))
		o->uses |= IMAP_USE_MODSEQ_ATT;
	else if (WORD(c, "EMAILID") || WORD(c, "THREADID"))
		o->uses |= IMAP_USE_OBJECTID;
	else if (PREFIX(c, "BINARY"))
		o->uses |= IMAP_USE_BINARY;
	c->p = start;
	/* the name and its section, "<" partial ">" included */
	while (!at_end(c) && *c->p != ' ' && *c->p != ')' && *c->p != '(') {
		if (*c->p == '[') {
			if (!brackets(c, false))
				return false;
			continue;
		}
		if (!is_atom_char(*c->p) && *c->p != '<' && *c->p != '>')
			return fail(c, IMAP_EL_FETCH_ATT);
		c->p++;
	}
	if (c->p == start)
		return fail(c, IMAP_EL_FETCH_ATT);
	/* PREVIEW (LAZY) and the like: a parenthesised modifier */
	if (peek(c) == ' ' && c->end - c->p > 1 && c->p[1] == '(' && o->cmd == IMAP_CMD_FETCH &&
	    (size_t)(c->p - start) == 7 && memcmp(start, "PREVIEW", 7) == 0) {
		c->p++;
		return any_value(c);
	}
	return true;
}

static bool fetch_args(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (!sp(c, IMAP_EL_COMMAND) || !seq_set(c, &o->seq, true) || !sp(c, IMAP_EL_FETCH_ATT))
		return false;
	if (eat(c, '(')) {
		do {
			if (!fetch_att(c))
				return false;
		} while (eat(c, ' '));
		if (!eat(c, ')'))
			return fail(c, IMAP_EL_FETCH_ATT);
	} else if (!fetch_att(c)) {
		return false;
	}
	if (!eat(c, ' '))
		return true;
	/* fetch-modifiers: "(" fetch-modifier *(SP fetch-modifier) ")" */
	if (!eat(c, '('))
		return fail(c, IMAP_EL_FETCH_ATT);
	do {
		if (WORD(c, "CHANGEDSINCE")) {
			o->uses |= IMAP_USE_CHANGEDSINCE;
			if (!sp(c, IMAP_EL_FETCH_ATT) || !number(c, NULL, IMAP_EL_FETCH_ATT))
				return false;
		} else if (WORD(c, "VANISHED")) {
			o->uses |= IMAP_USE_VANISHED;
		} else {
			if (!atom(c, NULL))
				return fail(c, IMAP_EL_FETCH_ATT);
			/* an extension's value, if any */
			if (peek(c) == ' ') {
				c->p++;
				if (!any_value(c))
					return false;
			}
		}
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_FETCH_ATT);
}

static bool store_args(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (!sp(c, IMAP_EL_COMMAND) || !seq_set(c, &o->seq, true) || !sp(c, IMAP_EL_STORE_ATT))
		return false;
	if (eat(c, '(')) {
		if (!WORD(c, "UNCHANGEDSINCE") || !sp(c, IMAP_EL_STORE_ATT) ||
		    !number(c, NULL, IMAP_EL_STORE_ATT) || !eat(c, ')') || !sp(c, IMAP_EL_STORE_ATT))
			return fail(c, IMAP_EL_STORE_ATT);
		o->uses |= IMAP_USE_UNCHANGEDSINCE;
	}
	/* ["+" / "-"] "FLAGS" [".SILENT"] (or X-GM-LABELS...), then the flags */
	if (!eat(c, '+'))
		eat(c, '-');
	if (!atom(c, NULL))
		return fail(c, IMAP_EL_STORE_ATT);
	return sp(c, IMAP_EL_STORE_ATT) && any_value(c) && any_rest(c);
}

/* search keys: any values, noting MODSEQ (CONDSTORE) at any depth */
static bool search_key(struct cursor *c)
{
	if (peek(c) == '(') {
		if (!enter(c))
			return false;
		c->p++;
		do {
			if (!search_key(c))
				return false;
		} while (eat(c, ' '));
		leave(c);
		return eat(c, ')') || fail(c, IMAP_EL_LIST);
	}
	if (WORD(c, "MODSEQ")) {
		c->out->uses |= IMAP_USE_MODSEQ_KEY;
		return true;
	}
	return any_value(c);
}

static bool search_args(struct cursor *c)
{
	const uint8_t *save = c->p;

	if (PREFIX(c, " RETURN ")) {
		c->out->uses |= IMAP_USE_SEARCH_RETURN;
		if (peek(c) != '(' || !any_value(c))
			return fail(c, IMAP_EL_COMMAND);
	} else {
		c->p = save;
	}
	if (!eat(c, ' '))
		return fail(c, IMAP_EL_COMMAND);
	do {
		if (!search_key(c))
			return false;
	} while (eat(c, ' '));
	return true;
}

static bool status_args(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	if (!sp(c, IMAP_EL_COMMAND) || !mailbox(c) || !sp(c, IMAP_EL_STATUS_ATT) || !eat(c, '('))
		return fail(c, IMAP_EL_STATUS_ATT);
	do {
		struct imap_slice name;

		if (!atom(c, &name))
			return fail(c, IMAP_EL_STATUS_ATT);
		if (imap_slice_eq(name, "SIZE"))
			o->uses |= IMAP_USE_STATUS_SIZE;
		else if (imap_slice_eq(name, "HIGHESTMODSEQ"))
			o->uses |= IMAP_USE_MODSEQ_ATT;
		else if (imap_slice_eq(name, "MAILBOXID"))
			o->uses |= IMAP_USE_OBJECTID;
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_STATUS_ATT);
}

static bool arguments(struct cursor *c)
{
	struct imap_parsed *o = c->out;

	switch (o->cmd) {
	case IMAP_CMD_CAPABILITY:
	case IMAP_CMD_STARTTLS:
	case IMAP_CMD_LOGOUT:
	case IMAP_CMD_CLOSE:
	case IMAP_CMD_UNSELECT:
	case IMAP_CMD_IDLE:
	case IMAP_CMD_NAMESPACE:
		return true;
	case IMAP_CMD_EXPUNGE:
		if (!o->uid)
			return true;
		return sp(c, IMAP_EL_COMMAND) && seq_set(c, &o->seq, true);
	case IMAP_CMD_LOGIN:
		return sp(c, IMAP_EL_COMMAND) && astring(c, NULL) && sp(c, IMAP_EL_COMMAND) &&
		       astring(c, NULL);
	case IMAP_CMD_AUTHENTICATE:
		if (!sp(c, IMAP_EL_COMMAND) || !atom(c, NULL))
			return false;
		if (eat(c, ' ')) {
			o->sasl_ir = true;
			/* base64 or "=": kept unread (a secret) */
			if (at_end(c))
				return fail(c, IMAP_EL_COMMAND);
			c->p = c->end;
		}
		return true;
	case IMAP_CMD_ENABLE:
		return sp(c, IMAP_EL_CAPABILITY) && capabilities(c, &o->enable, true);
	case IMAP_CMD_ID:
		return sp(c, IMAP_EL_ID) && id_params(c, IMAP_EL_ID);
	case IMAP_CMD_COMPRESS:
		return sp(c, IMAP_EL_COMMAND) && atom(c, NULL);
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
		return sp(c, IMAP_EL_COMMAND) && mailbox(c) && select_params(c);
	case IMAP_CMD_STATUS:
		return status_args(c);
	case IMAP_CMD_FETCH:
		return fetch_args(c);
	case IMAP_CMD_STORE:
		return store_args(c);
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
		return sp(c, IMAP_EL_COMMAND) && seq_set(c, &o->seq, true) &&
		       sp(c, IMAP_EL_COMMAND) && astring(c, NULL);
	case IMAP_CMD_SEARCH:
		return search_args(c);
	case IMAP_CMD_NONE:
	case IMAP_CMD_OTHER:
	case IMAP_CMD_NOTIFY:
	case IMAP_CMD_SORT:
	case IMAP_CMD_THREAD:
	case IMAP_CMD_LIST:
	case IMAP_CMD_APPEND:
		break;
	}
	return any_rest(c);
}

void imap_parse_command(const uint8_t *line, size_t len, const struct imap_literal_span *lits,
			size_t nlits, struct imap_parsed *out)
{
	struct cursor cur, *c = &cur;
	const uint8_t *start = line;
	struct imap_slice name;

	cur_init(c, line, len, lits, nlits, out);
	while (!at_end(c) && (is_atom_char(*c->p) || *c->p == ']') && *c->p != '+')
		c->p++;
	if (c->p == start) {
		fail(c, IMAP_EL_TAG);
		return;
	}
	if (!sp(c, IMAP_EL_TAG))
		return;
	if (WORD(c, "UID")) {
		out->uid = true;
		if (!sp(c, IMAP_EL_COMMAND))
			return;
	}
	if (!atom(c, &name)) {
		fail(c, IMAP_EL_COMMAND);
		return;
	}
	out->cmd = IMAP_CMD_OTHER;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (imap_slice_eq(name, commands[i].name))
			out->cmd = commands[i].cmd;
	arguments(c);
	cur_finish(c);
}
