#include "imap/redact.h"

#include <stdlib.h>
#include <string.h>

enum login_state {
	LOGIN_NONE,
	LOGIN_USER_LITERAL, /* the user name's literal is being sent */
	LOGIN_WANT_PASS,    /* the rest of the line starts with the password */
	LOGIN_PASS_LITERAL, /* the password's literal is being sent */
};

struct imap_redact {
	unsigned flags;
	enum login_state login;
};

enum astring_kind {
	ASTRING_NONE,
	ASTRING_ATOM,
	ASTRING_QUOTED,
	ASTRING_LITERAL, /* a literal marker: its bytes come in the next unit */
};

struct imap_redact *imap_redact_new(unsigned flags)
{
	struct imap_redact *r = calloc(1, sizeof(*r));

	if (r != NULL)
		r->flags = flags;
	return r;
}

void imap_redact_free(struct imap_redact **redact)
{
	free(*redact);
	*redact = NULL;
}

/* Parses one astring at p[*pos]; [*start, *end) receives its value (inside
 * the quotes for a quoted string). */
static enum astring_kind astring(const uint8_t *p, size_t len, size_t *pos, size_t *start,
				 size_t *end)
{
	size_t i = *pos;

	while (i < len && p[i] == ' ')
		i++;
	if (i >= len || p[i] == '\r' || p[i] == '\n')
		return ASTRING_NONE;
	if (p[i] == '{' || (p[i] == '~' && i + 1 < len && p[i + 1] == '{')) {
		*pos = len;
		return ASTRING_LITERAL;
	}
	if (p[i] == '"') {
		bool escape = false;

		*start = ++i;
		for (; i < len && p[i] != '\r' && p[i] != '\n'; i++) {
			if (escape)
				escape = false;
			else if (p[i] == '\\')
				escape = true;
			else if (p[i] == '"')
				break;
		}
		*end = i;
		*pos = i < len && p[i] == '"' ? i + 1 : i;
		return ASTRING_QUOTED;
	}
	*start = i;
	while (i < len && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
		i++;
	*end = i;
	*pos = i;
	return ASTRING_ATOM;
}

static void fill(uint8_t *out, size_t start, size_t end)
{
	if (end > start)
		memset(out + start, IMAP_REDACT_FILL, end - start);
}

/* Length of a line's content without its terminator. */
static size_t content_len(const struct imap_unit *u)
{
	size_t n = u->len;

	if (!(u->flags & IMAP_UNIT_TRUNCATED)) {
		if (n > 0 && u->data[n - 1] == '\n')
			n--;
		if (n > 0 && u->data[n - 1] == '\r')
			n--;
	}
	return n;
}

/* The password astring at p[pos]: masks it, or waits for its literal. */
static bool password(struct imap_redact *r, const struct imap_unit *u, size_t pos, uint8_t *out)
{
	size_t start = 0, end = 0;

	switch (astring(u->data, u->len, &pos, &start, &end)) {
	case ASTRING_ATOM:
	case ASTRING_QUOTED:
		r->login = LOGIN_NONE;
		if (end <= start)
			return false;
		memcpy(out, u->data, u->len);
		fill(out, start, end);
		return true;
	case ASTRING_LITERAL:
		r->login = LOGIN_PASS_LITERAL;
		return false;
	case ASTRING_NONE:
		r->login = LOGIN_NONE;
		return false;
	}
	return false;
}

static bool login_line(struct imap_redact *r, const struct imap_unit *u,
		       const struct imap_line_info *info, uint8_t *out)
{
	size_t pos = (size_t)(info->args.p - u->data), start, end;

	switch (astring(u->data, u->len, &pos, &start, &end)) {
	case ASTRING_LITERAL:
		r->login = LOGIN_USER_LITERAL;
		return false;
	case ASTRING_NONE:
		return false;
	case ASTRING_ATOM:
	case ASTRING_QUOTED:
		break;
	}
	return password(r, u, pos, out);
}

/* "tag AUTHENTICATE mech [initial-response]": masks the response. */
static bool authenticate_line(const struct imap_unit *u, const struct imap_line_info *info,
			      uint8_t *out)
{
	size_t pos = (size_t)(info->args.p - u->data), start, end, len = content_len(u);

	while (pos < len && u->data[pos] != ' ')
		pos++;
	while (pos < len && u->data[pos] == ' ')
		pos++;
	start = pos;
	end = len;
	if (end <= start || (end - start == 1 && u->data[start] == '='))
		return false;
	memcpy(out, u->data, u->len);
	fill(out, start, end);
	return true;
}

static bool mask_line(const struct imap_unit *u, uint8_t *out)
{
	size_t len = content_len(u);

	if (len == 0 || (len == 1 && u->data[0] == '*'))
		return false;
	memcpy(out, u->data, u->len);
	fill(out, 0, len);
	return true;
}

static bool literal_data(struct imap_redact *r, enum imap_dir dir, const struct imap_unit *u,
			 uint8_t *out)
{
	bool secret = dir == IMAP_C2S && r->login == LOGIN_PASS_LITERAL &&
		      (r->flags & IMAP_REDACT_CREDENTIALS);

	if (dir == IMAP_C2S && (u->flags & IMAP_UNIT_LITERAL_END)) {
		if (r->login == LOGIN_USER_LITERAL)
			r->login = LOGIN_WANT_PASS;
		else if (r->login == LOGIN_PASS_LITERAL)
			r->login = LOGIN_NONE;
	}
	if (secret) {
		memset(out, IMAP_REDACT_FILL, u->len);
		return true;
	}
	if (r->flags & IMAP_REDACT_BODIES) {
		for (size_t i = 0; i < u->len; i++)
			out[i] = u->data[i] == '\r' || u->data[i] == '\n' ? u->data[i]
									  : IMAP_REDACT_FILL;
		return true;
	}
	return false;
}

bool imap_redact_unit(struct imap_redact *r, enum imap_dir dir, const struct imap_unit *u,
		      const struct imap_line_info *info, uint8_t *out)
{
	bool creds = (r->flags & IMAP_REDACT_CREDENTIALS) != 0;

	if (u->kind == IMAP_UNIT_LITERAL_DATA)
		return literal_data(r, dir, u, out);
	if (dir != IMAP_C2S || info == NULL)
		return false;
	switch (info->cls) {
	case IMAP_LINE_COMMAND:
		r->login = LOGIN_NONE;
		if (!creds)
			return false;
		if (strcmp(info->name, "LOGIN") == 0)
			return login_line(r, u, info, out);
		if (strcmp(info->name, "AUTHENTICATE") == 0)
			return authenticate_line(u, info, out);
		return false;
	case IMAP_LINE_AUTH_RESPONSE:
		return creds && mask_line(u, out);
	case IMAP_LINE_CONTINUED:
		if (r->login == LOGIN_WANT_PASS)
			return creds && password(r, u, 0, out);
		return false;
	case IMAP_LINE_DONE:
	case IMAP_LINE_UNTAGGED:
	case IMAP_LINE_CONTINUATION:
	case IMAP_LINE_TAGGED:
	case IMAP_LINE_MALFORMED:
		r->login = LOGIN_NONE;
		return false;
	}
	return false;
}
