#include "imap/redact.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Where the client is in a credential-bearing command. */
enum secret_state {
	SECRET_NONE,
	SECRET_USER_LITERAL,   /* LOGIN: the user name's literal is being sent */
	SECRET_WANT_PASS,      /* LOGIN: the rest of the line starts with the password */
	SECRET_PASS_LITERAL,   /* LOGIN: the password's literal is being sent */
	SECRET_LITERAL,        /* a literal of a line that could not be told
				  apart (cut, or SASL data in a literal): all secret */
	SECRET_CONTINUED,      /* the line after that literal: all secret */
};

struct imap_redact {
	unsigned flags;
	enum secret_state state;
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

static bool cut(const struct imap_unit *u)
{
	return (u->flags & IMAP_UNIT_TRUNCATED) != 0;
}

/* Length of a line's content without its terminator. */
static size_t content_len(const struct imap_unit *u)
{
	size_t n = u->len;

	if (!cut(u)) {
		if (n > 0 && u->data[n - 1] == '\n')
			n--;
		if (n > 0 && u->data[n - 1] == '\r')
			n--;
	}
	return n;
}

/* Where a literal announcement ({n}, {n+}, ~{n}) that ends p[0..len)
 * starts; len when there is none. */
static size_t literal_marker_at(const uint8_t *p, size_t len)
{
	size_t i, digits;

	if (len < 3 || p[len - 1] != '}')
		return len;
	i = len - 1;
	if (p[i - 1] == '+')
		i--;
	digits = i;
	while (i > 0 && p[i - 1] >= '0' && p[i - 1] <= '9')
		i--;
	if (i == 0 || i == digits || p[i - 1] != '{')
		return len;
	i--;
	return i > 0 && p[i - 1] == '~' ? i - 1 : i;
}

/* The content of a line from start on: the secret part of a line. A
 * literal announcement at its end stays, so readers of the masked stream
 * still find the literal; so does the terminator. */
static size_t secret_end(const struct imap_unit *u)
{
	size_t len = content_len(u);

	return u->kind == IMAP_UNIT_LITERAL_HEAD && !cut(u) ? literal_marker_at(u->data, len) : len;
}

/* The whole unit from start on is secret: as much as was observed, and
 * the wire bytes past it when the line was cut. */
static enum imap_redact_result mask_rest(struct imap_redact *r, const struct imap_unit *u,
					 size_t start, uint8_t *out)
{
	r->state = u->kind == IMAP_UNIT_LITERAL_HEAD ? SECRET_LITERAL : SECRET_NONE;
	memcpy(out, u->data, u->len);
	/* a cut line may end in its CR */
	imap_redact_fill_from(out, secret_end(u), 0, start, false);
	return cut(u) ? IMAP_REDACT_MASKED_REST : IMAP_REDACT_MASKED;
}

/* The password astring at p[pos]: masks it, or waits for its literal. */
static enum imap_redact_result password(struct imap_redact *r, const struct imap_unit *u,
					size_t pos, uint8_t *out)
{
	size_t start = 0, end = 0;

	if (cut(u))
		return mask_rest(r, u, pos, out);
	switch (astring(u->data, u->len, &pos, &start, &end)) {
	case ASTRING_ATOM:
	case ASTRING_QUOTED:
		r->state = SECRET_NONE;
		if (end <= start)
			return IMAP_REDACT_CLEAR;
		memcpy(out, u->data, u->len);
		fill(out, start, end);
		return IMAP_REDACT_MASKED;
	case ASTRING_LITERAL:
		r->state = SECRET_PASS_LITERAL;
		return IMAP_REDACT_CLEAR;
	case ASTRING_NONE:
		r->state = SECRET_NONE;
		return IMAP_REDACT_CLEAR;
	}
	return IMAP_REDACT_CLEAR;
}

static enum imap_redact_result login_line(struct imap_redact *r, const struct imap_unit *u,
					  size_t args, uint8_t *out)
{
	size_t pos = args, start, end;

	/* a cut line: the password may be anywhere in it, and a literal
	 * after it may be either the user name or the password */
	if (cut(u))
		return mask_rest(r, u, args, out);
	switch (astring(u->data, u->len, &pos, &start, &end)) {
	case ASTRING_LITERAL:
		r->state = SECRET_USER_LITERAL;
		return IMAP_REDACT_CLEAR;
	case ASTRING_NONE:
		return IMAP_REDACT_CLEAR;
	case ASTRING_ATOM:
	case ASTRING_QUOTED:
		break;
	}
	return password(r, u, pos, out);
}

/* "tag AUTHENTICATE mech [initial-response]": masks the response. */
static enum imap_redact_result authenticate_line(struct imap_redact *r, const struct imap_unit *u,
						 size_t args, uint8_t *out)
{
	size_t pos = args, len = content_len(u), start, end;

	while (pos < len && u->data[pos] != ' ')
		pos++;
	/* the mechanism's name may itself be cut */
	if (cut(u) && pos >= len)
		return mask_rest(r, u, args, out);
	while (pos < len && u->data[pos] == ' ')
		pos++;
	if (cut(u) || u->kind == IMAP_UNIT_LITERAL_HEAD)
		return mask_rest(r, u, pos, out);
	start = pos;
	end = len;
	if (end <= start || (end - start == 1 && u->data[start] == '='))
		return IMAP_REDACT_CLEAR;
	memcpy(out, u->data, u->len);
	fill(out, start, end);
	return IMAP_REDACT_MASKED;
}

static enum imap_redact_result literal_data(struct imap_redact *r, enum imap_dir dir,
					    const struct imap_unit *u, uint8_t *out)
{
	bool secret = dir == IMAP_C2S && (r->flags & IMAP_REDACT_CREDENTIALS) &&
		      (r->state == SECRET_PASS_LITERAL || r->state == SECRET_LITERAL);

	if (dir == IMAP_C2S && (u->flags & IMAP_UNIT_LITERAL_END)) {
		if (r->state == SECRET_USER_LITERAL)
			r->state = SECRET_WANT_PASS;
		else if (r->state == SECRET_PASS_LITERAL)
			r->state = SECRET_NONE;
		else if (r->state == SECRET_LITERAL)
			r->state = SECRET_CONTINUED;
	}
	if (secret) {
		memset(out, IMAP_REDACT_FILL, u->len);
		return IMAP_REDACT_MASKED;
	}
	if (r->flags & IMAP_REDACT_BODIES) {
		for (size_t i = 0; i < u->len; i++)
			out[i] = u->data[i] == '\r' || u->data[i] == '\n' ? u->data[i]
									  : IMAP_REDACT_FILL;
		return IMAP_REDACT_MASKED;
	}
	return IMAP_REDACT_CLEAR;
}

/* A cut client command: is its name whole in what was observed? */
static bool name_complete(const struct imap_unit *u, const struct imap_line_info *info)
{
	size_t args = (size_t)(info->args.p - u->data);

	return !cut(u) || (args < u->len && args > 0 && u->data[args - 1] == ' ');
}

static enum imap_redact_result command_line(struct imap_redact *r, const struct imap_unit *u,
					    const struct imap_line_info *info, uint8_t *out)
{
	size_t args = (size_t)(info->args.p - u->data);

	if (!name_complete(u, info))
		return mask_rest(r, u, 0, out);
	if (info->keyword == IMAP_KW_LOGIN)
		return login_line(r, u, args, out);
	if (info->keyword == IMAP_KW_AUTHENTICATE)
		return authenticate_line(r, u, args, out);
	return IMAP_REDACT_CLEAR;
}

enum imap_redact_result imap_redact_unit(struct imap_redact *r, enum imap_dir dir,
					 const struct imap_unit *u,
					 const struct imap_line_info *info, uint8_t *out)
{
	bool creds = (r->flags & IMAP_REDACT_CREDENTIALS) != 0;
	enum secret_state state = r->state;

	if (u->kind == IMAP_UNIT_LITERAL_DATA)
		return literal_data(r, dir, u, out);
	if (dir != IMAP_C2S || info == NULL)
		return IMAP_REDACT_CLEAR;
	r->state = SECRET_NONE;
	if (!creds)
		return IMAP_REDACT_CLEAR;
	switch (info->cls) {
	case IMAP_LINE_COMMAND:
		return command_line(r, u, info, out);
	case IMAP_LINE_AUTH_RESPONSE:
		if (!cut(u) && (content_len(u) == 0 || (content_len(u) == 1 && u->data[0] == '*')))
			return IMAP_REDACT_CLEAR;
		return mask_rest(r, u, 0, out);
	case IMAP_LINE_CONTINUED:
		if (state == SECRET_WANT_PASS)
			return password(r, u, 0, out);
		if (state == SECRET_CONTINUED)
			return mask_rest(r, u, 0, out);
		return IMAP_REDACT_CLEAR;
	case IMAP_LINE_MALFORMED:
		/* a cut client line that does not even show its command */
		return cut(u) ? mask_rest(r, u, 0, out) : IMAP_REDACT_CLEAR;
	case IMAP_LINE_DONE:
	case IMAP_LINE_UNTAGGED:
	case IMAP_LINE_CONTINUATION:
	case IMAP_LINE_TAGGED:
		return IMAP_REDACT_CLEAR;
	}
	return IMAP_REDACT_CLEAR;
}

/* The length of a run of bytes that are not SP, CR or LF. */
static size_t word_len(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
		i++;
	return i;
}

static bool word_is(const uint8_t *p, size_t len, const char *word)
{
	return len == strlen(word) && strncasecmp((const char *)p, word, len) == 0;
}

/* From which offset a client command line beginning with p[0..len) may
 * hold a credential. */
static uint64_t command_secret_from(const uint8_t *p, size_t len)
{
	size_t tag = word_len(p, len), name, pos;

	if (tag == len)
		return 0; /* the tag goes on: cannot tell yet */
	if (tag == 0 || p[tag] != ' ' || !imap_is_tag_char(p[0]))
		return IMAP_REDACT_NONE; /* not a command */
	pos = tag + 1;
	name = word_len(p + pos, len - pos);
	if (pos + name == len)
		return 0;
	if (word_is(p + pos, name, "LOGIN"))
		return p[pos + name] == ' ' ? pos + name + 1 : IMAP_REDACT_NONE;
	if (!word_is(p + pos, name, "AUTHENTICATE"))
		return IMAP_REDACT_NONE;
	if (p[pos + name] != ' ')
		return IMAP_REDACT_NONE;
	pos += name + 1;
	/* the mechanism stays readable once it is whole */
	name = word_len(p + pos, len - pos);
	if (pos + name == len)
		return pos;
	return p[pos + name] == ' ' ? pos + name + 1 : IMAP_REDACT_NONE;
}

uint64_t imap_redact_secret_from(const struct imap_redact *r, enum imap_dir dir, bool literal,
				 bool auth_pending, const uint8_t *prefix, size_t len)
{
	bool creds = (r->flags & IMAP_REDACT_CREDENTIALS) != 0;

	if (literal) {
		if (r->flags & IMAP_REDACT_BODIES)
			return 0;
		return dir == IMAP_C2S && creds &&
				       (r->state == SECRET_PASS_LITERAL || r->state == SECRET_LITERAL)
			       ? 0
			       : IMAP_REDACT_NONE;
	}
	if (dir != IMAP_C2S || !creds)
		return IMAP_REDACT_NONE;
	if (auth_pending || r->state == SECRET_WANT_PASS || r->state == SECRET_CONTINUED)
		return 0;
	return command_secret_from(prefix, len);
}

void imap_redact_fill_from(uint8_t *p, size_t len, uint64_t unit_off, uint64_t secret_from,
			   bool literal_head)
{
	size_t i = 0, end = len;

	if (literal_head) {
		while (end > 0 && (p[end - 1] == '\r' || p[end - 1] == '\n'))
			end--;
		end = literal_marker_at(p, end);
	}

	if (secret_from > unit_off)
		i = secret_from - unit_off < len ? (size_t)(secret_from - unit_off) : len;
	for (; i < end; i++)
		if (p[i] != '\r' && p[i] != '\n')
			p[i] = IMAP_REDACT_FILL;
}
