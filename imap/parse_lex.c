#include "imap/parse_int.h"
#include "imap/zero.h"

#include <string.h>

static const char *const element_names[IMAP_EL_COUNT] = {
	[IMAP_EL_TAG] = "tag",
	[IMAP_EL_RESPONSE] = "response",
	[IMAP_EL_RESP_TEXT] = "resp-text",
	[IMAP_EL_RESP_TEXT_CODE] = "resp-text-code",
	[IMAP_EL_CAPABILITY] = "capability",
	[IMAP_EL_FLAG_LIST] = "flag-list",
	[IMAP_EL_MAILBOX_LIST] = "mailbox-list",
	[IMAP_EL_STATUS_ATT] = "status-att-val",
	[IMAP_EL_SEARCH] = "mailbox-data SEARCH",
	[IMAP_EL_ESEARCH] = "esearch-response",
	[IMAP_EL_NAMESPACE] = "namespace-response",
	[IMAP_EL_ID] = "id-response",
	[IMAP_EL_VANISHED] = "expunged-resp (VANISHED)",
	[IMAP_EL_MESSAGE_DATA] = "message-data",
	[IMAP_EL_MSG_ATT] = "msg-att",
	[IMAP_EL_DATE_TIME] = "date-time",
	[IMAP_EL_ENVELOPE] = "envelope",
	[IMAP_EL_ADDRESS] = "address",
	[IMAP_EL_BODY] = "body",
	[IMAP_EL_BODY_FIELDS] = "body-fields",
	[IMAP_EL_BODY_EXTENSION] = "body-extension",
	[IMAP_EL_SECTION] = "section",
	[IMAP_EL_NUMBER] = "number",
	[IMAP_EL_STRING] = "string",
	[IMAP_EL_LITERAL] = "literal",
	[IMAP_EL_ASTRING] = "astring",
	[IMAP_EL_ATOM] = "atom",
	[IMAP_EL_SEQUENCE_SET] = "sequence-set",
	[IMAP_EL_COMMAND] = "command",
	[IMAP_EL_FETCH_ATT] = "fetch-att",
	[IMAP_EL_SELECT_PARAM] = "select-param",
	[IMAP_EL_STORE_ATT] = "store-att-flags",
	[IMAP_EL_LIST] = "list",
	[IMAP_EL_CRLF] = "CRLF",
};

const char *imap_element_str(enum imap_element element)
{
	return (unsigned)element < IMAP_EL_COUNT ? element_names[element] : "element?";
}

void cur_init(struct cursor *c, const uint8_t *line, size_t len,
	      const struct imap_literal_span *lits, size_t nlits, struct imap_parsed *out)
{
	static const uint8_t empty[1];

	imap_zero(out, sizeof(*out));
	out->checked = true;
	out->ok = true;
	if (line == NULL) {
		line = empty;
		len = 0;
	}
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	c->base = c->p = line;
	c->end = line + len;
	c->lits = lits;
	c->nlits = nlits;
	c->next_lit = 0;
	c->depth = 0;
	c->failed = false;
	c->too_deep = false;
	c->out = out;
}

bool fail(struct cursor *c, enum imap_element element)
{
	if (!c->failed) {
		c->failed = true;
		if (c->too_deep) {
			c->out->checked = false;
		} else {
			c->out->ok = false;
			c->out->error = element;
			c->out->error_at = (size_t)(c->p - c->base);
		}
	}
	return false;
}

bool cur_finish(struct cursor *c)
{
	if (c->failed)
		return false;
	if (!at_end(c))
		return fail(c, IMAP_EL_CRLF);
	return true;
}

bool enter(struct cursor *c)
{
	if (c->depth >= IMAP_PARSE_MAX_DEPTH) {
		/* a bound of ours, not the peer's error: the line is unchecked */
		c->too_deep = true;
		return fail(c, IMAP_EL_LIST);
	}
	c->depth++;
	return true;
}

#define A2(x) [x] = true, [x + 1] = true
#define A8(x) A2(x), A2(x + 2), A2(x + 4), A2(x + 6)
/* 0x21-0x7e but ( ) { % * " \ ] */
const bool parse_atom_char[256] = {
	['!'] = true, ['#'] = true, ['$'] = true, ['&'] = true, ['\''] = true, ['+'] = true,
	[','] = true, ['-'] = true, ['.'] = true, ['/'] = true, A8('0'), A2('8'), [':'] = true,
	[';'] = true, ['<'] = true, ['='] = true, ['>'] = true, ['?'] = true, ['@'] = true,
	A8('A'), A8('I'), A8('Q'), A2('Y'), ['['] = true, ['^'] = true, ['_'] = true,
	['`'] = true, A8('a'), A8('i'), A8('q'), A2('y'), ['|'] = true, ['}'] = true,
	['~'] = true,
};
#undef A2
#undef A8

bool atom(struct cursor *c, struct imap_slice *s)
{
	const uint8_t *start = c->p;

	while (!at_end(c) && is_atom_char(*c->p))
		c->p++;
	if (c->p == start)
		return fail(c, IMAP_EL_ATOM);
	if (s != NULL) {
		s->p = start;
		s->len = (size_t)(c->p - start);
	}
	return true;
}

bool quoted(struct cursor *c, struct imap_slice *s)
{
	const uint8_t *start;

	if (!eat(c, '"'))
		return fail(c, IMAP_EL_STRING);
	start = c->p;
	while (!at_end(c) && *c->p != '"') {
		uint8_t ch = *c->p;

		if (ch == '\\') {
			c->p++;
			if (at_end(c) || (*c->p != '"' && *c->p != '\\'))
				return fail(c, IMAP_EL_STRING);
		} else if (ch == '\r' || ch == '\n' || ch == 0) {
			return fail(c, IMAP_EL_STRING);
		} else if (ch >= 0x80) {
			c->out->uses |= IMAP_USE_UTF8;
		}
		c->p++;
	}
	if (s != NULL) {
		s->p = start;
		s->len = (size_t)(c->p - start);
	}
	if (!eat(c, '"'))
		return fail(c, IMAP_EL_STRING);
	return true;
}

bool literal(struct cursor *c, struct imap_slice *s, bool *cut, bool binary_ok)
{
	const struct imap_literal_span *span;
	uint64_t n;
	bool binary = eat(c, '~');

	if (binary && !binary_ok)
		return fail(c, IMAP_EL_LITERAL);
	if (!eat(c, '{') || !number(c, &n, IMAP_EL_LITERAL))
		return fail(c, IMAP_EL_LITERAL);
	eat(c, '+');
	if (!eat(c, '}'))
		return fail(c, IMAP_EL_LITERAL);
	/* the announcement ends the segment: the CRLF is in the line given,
	 * before its literal's content */
	if (c->end - c->p >= 2 && c->p[0] == '\r' && c->p[1] == '\n')
		c->p += 2;
	else if (c->end - c->p >= 1 && c->p[0] == '\n')
		c->p += 1;
	else
		return fail(c, IMAP_EL_LITERAL);
	if (c->next_lit >= c->nlits)
		return fail(c, IMAP_EL_LITERAL);
	span = &c->lits[c->next_lit];
	if (span->at != (size_t)(c->p - c->base) || span->len != n ||
	    span->kept > (size_t)(c->end - c->p))
		return fail(c, IMAP_EL_LITERAL);
	c->next_lit++;
	if (binary)
		c->out->uses |= IMAP_USE_BINARY;
	if (s != NULL) {
		s->p = c->p;
		s->len = span->kept;
	}
	if (cut != NULL)
		*cut = span->kept < n;
	c->p += span->kept;
	return true;
}

bool string(struct cursor *c, struct imap_slice *s)
{
	if (peek(c) == '"')
		return quoted(c, s);
	if (peek(c) == '{')
		return literal(c, s, NULL, false);
	return fail(c, IMAP_EL_STRING);
}

bool is_nil(struct cursor *c)
{
	return WORD(c, "NIL");
}

bool nstring(struct cursor *c)
{
	return is_nil(c) || string(c, NULL);
}

bool astring(struct cursor *c, struct imap_slice *s)
{
	const uint8_t *start = c->p;

	if (peek(c) == '"' || peek(c) == '{')
		return string(c, s);
	/* ASTRING-CHAR: ATOM-CHAR or "]" */
	while (!at_end(c) && (is_atom_char(*c->p) || *c->p == ']'))
		c->p++;
	if (c->p == start)
		return fail(c, IMAP_EL_ASTRING);
	if (s != NULL) {
		s->p = start;
		s->len = (size_t)(c->p - start);
	}
	return true;
}

bool mailbox(struct cursor *c)
{
	bool cut = false;

	if (peek(c) == '{') {
		if (!literal(c, &c->out->mailbox, &cut, false))
			return false;
		c->out->mailbox_cut = cut;
		return true;
	}
	return astring(c, &c->out->mailbox);
}

static bool flag(struct cursor *c)
{
	if (eat(c, '\\')) {
		if (eat(c, '*'))
			return true;
	}
	return atom(c, NULL) || fail(c, IMAP_EL_FLAG_LIST);
}

bool flag_list(struct cursor *c)
{
	if (!eat(c, '('))
		return fail(c, IMAP_EL_FLAG_LIST);
	if (eat(c, ')'))
		return true;
	do {
		if (!flag(c))
			return false;
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_FLAG_LIST);
}

static bool digits(struct cursor *c, int n)
{
	for (int i = 0; i < n; i++) {
		if (at_end(c) || *c->p < '0' || *c->p > '9')
			return false;
		c->p++;
	}
	return true;
}

bool date_time(struct cursor *c)
{
	static const char *const months[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
					     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
	bool month = false;

	if (!eat(c, '"'))
		return fail(c, IMAP_EL_DATE_TIME);
	/* date-day-fixed: (SP DIGIT) / 2DIGIT */
	if (!(eat(c, ' ') ? digits(c, 1) : digits(c, 2)) || !eat(c, '-'))
		return fail(c, IMAP_EL_DATE_TIME);
	for (int i = 0; i < 12 && !month; i++)
		month = prefix(c, months[i], 3);
	if (!month || !eat(c, '-') || !digits(c, 4) || !eat(c, ' ') || !digits(c, 2) ||
	    !eat(c, ':') || !digits(c, 2) || !eat(c, ':') || !digits(c, 2) || !eat(c, ' ') ||
	    !(eat(c, '+') || eat(c, '-')) || !digits(c, 4) || !eat(c, '"'))
		return fail(c, IMAP_EL_DATE_TIME);
	return true;
}

bool brackets(struct cursor *c, bool quotes_ok)
{
	int level = 0;

	do {
		if (*c->p == '[')
			level++;
		else if (*c->p == ']')
			level--;
		else if (*c->p < 0x20 || *c->p == 0x7f ||
			 (!quotes_ok && (*c->p == '"' || *c->p == '{')))
			return fail(c, IMAP_EL_SECTION);
		c->p++;
	} while (!at_end(c) && level > 0);
	return level == 0 || fail(c, IMAP_EL_SECTION);
}

/* id-params-list: "(" *(string SP nstring *(SP string SP nstring)) ")" / nil */
bool id_params(struct cursor *c, enum imap_element element)
{
	if (is_nil(c))
		return true;
	if (!eat(c, '('))
		return fail(c, element);
	if (eat(c, ')'))
		return true;
	do {
		if (!string(c, NULL) || !sp(c, element) || !nstring(c))
			return fail(c, element);
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, element);
}

/* A word of a value with no rule: anything but SP, parentheses, quotes,
 * braces and controls; a "[...]" inside it may hold spaces and lists
 * (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>). */
static bool loose_word(struct cursor *c)
{
	const uint8_t *start = c->p;

	while (!at_end(c)) {
		uint8_t ch = *c->p;

		if (ch == '[') {
			if (!brackets(c, true))
				return false;
			continue;
		}
		if (ch <= 0x20 || ch == 0x7f || ch == '(' || ch == ')' || ch == '"' || ch == '{')
			break;
		c->p++;
	}
	if (c->p == start)
		return fail(c, IMAP_EL_ATOM);
	return true;
}

bool any_value(struct cursor *c)
{
	int ch = peek(c);

	if (ch == '"')
		return quoted(c, NULL);
	if (ch == '{' || (ch == '~' && c->end - c->p > 1 && c->p[1] == '{'))
		return literal(c, NULL, NULL, true);
	if (ch == '(') {
		if (!enter(c))
			return false;
		c->p++;
		if (!eat(c, ')')) {
			do {
				if (!any_value(c))
					return false;
			} while (eat(c, ' '));
			if (!eat(c, ')'))
				return fail(c, IMAP_EL_LIST);
		}
		leave(c);
		return true;
	}
	return loose_word(c);
}

bool any_rest(struct cursor *c)
{
	while (!at_end(c) && !c->failed) {
		if (!sp(c, IMAP_EL_ATOM) || !any_value(c))
			return false;
	}
	return !c->failed;
}

static bool seq_number(struct cursor *c, struct imap_seq_facts *f)
{
	uint64_t n;

	if (eat(c, '*')) {
		f->star = true;
		return true;
	}
	if (!nz_number(c, &n, IMAP_EL_SEQUENCE_SET))
		return false;
	if (n > f->max)
		f->max = n;
	return true;
}

bool seq_set(struct cursor *c, struct imap_seq_facts *f, bool allow_dollar)
{
	f->present = true;
	if (allow_dollar && eat(c, '$')) {
		f->dollar = true;
		c->out->uses |= IMAP_USE_SEARCHRES;
		return true;
	}
	do {
		if (!seq_number(c, f))
			return false;
		if (eat(c, ':') && !seq_number(c, f))
			return false;
	} while (eat(c, ','));
	return true;
}

bool uid_set(struct cursor *c, uint64_t *count)
{
	uint64_t total = 0;

	do {
		uint64_t lo, hi;

		if (!nz_number(c, &lo, IMAP_EL_SEQUENCE_SET))
			return false;
		hi = lo;
		if (eat(c, ':') && !nz_number(c, &hi, IMAP_EL_SEQUENCE_SET))
			return false;
		if (hi < lo) {
			uint64_t t = hi;

			hi = lo;
			lo = t;
		}
		total += hi - lo + 1;
		if (total > UINT32_MAX)
			total = UINT32_MAX;
	} while (eat(c, ','));
	if (count != NULL)
		*count = total;
	return true;
}

static bool capability(struct cursor *c, imap_capset *caps)
{
	struct imap_slice s;
	enum imap_cap cap;

	if (!atom(c, &s))
		return fail(c, IMAP_EL_CAPABILITY);
	if (imap_cap_parse(s.p, s.len, &cap))
		*caps |= (imap_capset)1 << cap;
	return true;
}

bool capabilities(struct cursor *c, imap_capset *caps, bool need_one)
{
	c->out->has_caps = true;
	if (need_one && !capability(c, caps))
		return false;
	while (eat(c, ' '))
		if (!capability(c, caps))
			return false;
	return true;
}
