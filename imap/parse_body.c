/* ENVELOPE and BODY / BODYSTRUCTURE (RFC 9051 section 9: envelope,
 * body, body-type-1part, body-type-mpart and their fields). */
#include "imap/parse_int.h"

static bool address(struct cursor *c)
{
	if (!eat(c, '('))
		return fail(c, IMAP_EL_ADDRESS);
	for (int i = 0; i < 4; i++) {
		if (i > 0 && !sp(c, IMAP_EL_ADDRESS))
			return false;
		if (!nstring(c))
			return fail(c, IMAP_EL_ADDRESS);
	}
	return eat(c, ')') || fail(c, IMAP_EL_ADDRESS);
}

/* "(" 1*address ")" / nil */
static bool address_list(struct cursor *c)
{
	if (is_nil(c))
		return true;
	if (!eat(c, '('))
		return fail(c, IMAP_EL_ENVELOPE);
	do {
		if (!address(c))
			return false;
	} while (peek(c) == '(');
	return eat(c, ')') || fail(c, IMAP_EL_ENVELOPE);
}

bool envelope(struct cursor *c)
{
	if (!eat(c, '('))
		return fail(c, IMAP_EL_ENVELOPE);
	/* date, subject */
	if (!nstring(c) || !sp(c, IMAP_EL_ENVELOPE) || !nstring(c))
		return fail(c, IMAP_EL_ENVELOPE);
	/* from, sender, reply-to, to, cc, bcc */
	for (int i = 0; i < 6; i++)
		if (!sp(c, IMAP_EL_ENVELOPE) || !address_list(c))
			return false;
	/* in-reply-to, message-id */
	for (int i = 0; i < 2; i++)
		if (!sp(c, IMAP_EL_ENVELOPE) || !nstring(c))
			return fail(c, IMAP_EL_ENVELOPE);
	return eat(c, ')') || fail(c, IMAP_EL_ENVELOPE);
}

/* body-fld-param: "(" string SP string *(SP string SP string) ")" / nil */
static bool body_param(struct cursor *c)
{
	if (is_nil(c))
		return true;
	if (!eat(c, '('))
		return fail(c, IMAP_EL_BODY_FIELDS);
	do {
		if (!string(c, NULL) || !sp(c, IMAP_EL_BODY_FIELDS) || !string(c, NULL))
			return fail(c, IMAP_EL_BODY_FIELDS);
	} while (eat(c, ' '));
	return eat(c, ')') || fail(c, IMAP_EL_BODY_FIELDS);
}

static bool body_fields(struct cursor *c)
{
	if (!body_param(c) || !sp(c, IMAP_EL_BODY_FIELDS) || !nstring(c) ||
	    !sp(c, IMAP_EL_BODY_FIELDS) || !nstring(c) || !sp(c, IMAP_EL_BODY_FIELDS) ||
	    !string(c, NULL) || !sp(c, IMAP_EL_BODY_FIELDS) ||
	    !number(c, NULL, IMAP_EL_BODY_FIELDS))
		return fail(c, IMAP_EL_BODY_FIELDS);
	return true;
}

static bool body_extension(struct cursor *c)
{
	int ch = peek(c);

	if (ch >= '0' && ch <= '9')
		return number(c, NULL, IMAP_EL_BODY_EXTENSION);
	if (ch == '(') {
		if (!enter(c))
			return false;
		c->p++;
		do {
			if (!body_extension(c))
				return false;
		} while (eat(c, ' '));
		leave(c);
		return eat(c, ')') || fail(c, IMAP_EL_BODY_EXTENSION);
	}
	return nstring(c) || fail(c, IMAP_EL_BODY_EXTENSION);
}

/* body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]],
 * each optional after the one before it */
static bool body_ext_tail(struct cursor *c)
{
	if (!eat(c, ' '))
		return true;
	/* disposition: "(" string SP body-fld-param ")" / nil */
	if (!is_nil(c)) {
		if (!eat(c, '(') || !string(c, NULL) || !sp(c, IMAP_EL_BODY_EXTENSION) ||
		    !body_param(c) || !eat(c, ')'))
			return fail(c, IMAP_EL_BODY_EXTENSION);
	}
	if (!eat(c, ' '))
		return true;
	/* language: nstring / "(" string *(SP string) ")" */
	if (eat(c, '(')) {
		do {
			if (!string(c, NULL))
				return fail(c, IMAP_EL_BODY_EXTENSION);
		} while (eat(c, ' '));
		if (!eat(c, ')'))
			return fail(c, IMAP_EL_BODY_EXTENSION);
	} else if (!nstring(c)) {
		return fail(c, IMAP_EL_BODY_EXTENSION);
	}
	if (!eat(c, ' '))
		return true;
	/* location */
	if (!nstring(c))
		return fail(c, IMAP_EL_BODY_EXTENSION);
	while (eat(c, ' '))
		if (!body_extension(c))
			return false;
	return true;
}

static bool type_is(struct imap_slice s, const char *name)
{
	return imap_slice_eq(s, name);
}

static bool body_1part(struct cursor *c)
{
	struct imap_slice type = {0}, subtype = {0};

	if (!string(c, &type) || !sp(c, IMAP_EL_BODY) || !string(c, &subtype) ||
	    !sp(c, IMAP_EL_BODY) || !body_fields(c))
		return fail(c, IMAP_EL_BODY);
	if (type_is(type, "MESSAGE") &&
	    (type_is(subtype, "RFC822") || type_is(subtype, "GLOBAL"))) {
		if (!sp(c, IMAP_EL_BODY) || !envelope(c) || !sp(c, IMAP_EL_BODY) || !body(c) ||
		    !sp(c, IMAP_EL_BODY) || !number(c, NULL, IMAP_EL_BODY))
			return fail(c, IMAP_EL_BODY);
	} else if (type_is(type, "TEXT")) {
		if (!sp(c, IMAP_EL_BODY) || !number(c, NULL, IMAP_EL_BODY))
			return fail(c, IMAP_EL_BODY);
	}
	/* body-ext-1part: body-fld-md5 then the common tail */
	if (eat(c, ' ')) {
		if (!nstring(c))
			return fail(c, IMAP_EL_BODY_EXTENSION);
		return body_ext_tail(c);
	}
	return true;
}

static bool body_mpart(struct cursor *c)
{
	do {
		if (!body(c))
			return false;
	} while (peek(c) == '(');
	if (!sp(c, IMAP_EL_BODY) || !string(c, NULL))
		return fail(c, IMAP_EL_BODY);
	/* body-ext-mpart: body-fld-param then the common tail */
	if (eat(c, ' ')) {
		if (!body_param(c))
			return false;
		return body_ext_tail(c);
	}
	return true;
}

bool body(struct cursor *c)
{
	bool ok;

	if (!eat(c, '('))
		return fail(c, IMAP_EL_BODY);
	if (!enter(c))
		return false;
	ok = peek(c) == '(' ? body_mpart(c) : body_1part(c);
	leave(c);
	if (!ok)
		return false;
	return eat(c, ')') || fail(c, IMAP_EL_BODY);
}
