#include "imap/classify.h"
#include "imap/zero.h"

#include <string.h>

const char *imap_line_class_str(enum imap_line_class cls)
{
	switch (cls) {
	case IMAP_LINE_COMMAND:
		return "command";
	case IMAP_LINE_DONE:
		return "done";
	case IMAP_LINE_AUTH_RESPONSE:
		return "auth-response";
	case IMAP_LINE_CONTINUED:
		return "continued";
	case IMAP_LINE_UNTAGGED:
		return "untagged";
	case IMAP_LINE_CONTINUATION:
		return "continuation";
	case IMAP_LINE_TAGGED:
		return "tagged";
	case IMAP_LINE_MALFORMED:
		return "malformed";
	}
	return "class?";
}

const char *imap_status_str(enum imap_status status)
{
	switch (status) {
	case IMAP_STATUS_NONE:
		return "";
	case IMAP_STATUS_OK:
		return "OK";
	case IMAP_STATUS_NO:
		return "NO";
	case IMAP_STATUS_BAD:
		return "BAD";
	case IMAP_STATUS_BYE:
		return "BYE";
	case IMAP_STATUS_PREAUTH:
		return "PREAUTH";
	}
	return "status?";
}

bool imap_is_tag_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\+", c) == NULL;
}

bool imap_slice_eq(struct imap_slice s, const char *str)
{
	size_t n = strlen(str);

	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t a = s.p[i], b = (uint8_t)str[i];

		if (a >= 'a' && a <= 'z')
			a -= 32;
		if (b >= 'a' && b <= 'z')
			b -= 32;
		if (a != b)
			return false;
	}
	return true;
}

bool imap_slice_eq_slice(struct imap_slice a, struct imap_slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Length without the line terminator. */
static size_t content_len(const uint8_t *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

/* Reads one space-delimited token starting at *pos. */
static struct imap_slice token(const uint8_t *line, size_t len, size_t *pos)
{
	size_t start = *pos, i = start; /* locals: the line's bytes may alias *pos */

	while (i < len && line[i] != ' ')
		i++;
	*pos = i;
	return (struct imap_slice){line + start, i - start};
}

static void skip_space(const uint8_t *line, size_t len, size_t *pos)
{
	if (*pos < len && line[*pos] == ' ')
		(*pos)++;
}

/* The name in upper case, cut to fit; returns its length. */
static size_t upper_name(char out[IMAP_NAME_MAX], struct imap_slice s)
{
	size_t n = s.len < IMAP_NAME_MAX - 1 ? s.len : IMAP_NAME_MAX - 1;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = s.p[i];

		out[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
	}
	out[n] = '\0';
	return n;
}

static bool valid_tag(struct imap_slice s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++)
		if (!imap_is_tag_char(s.p[i]))
			return false;
	return true;
}

static enum imap_status status_of(struct imap_slice s)
{
	if (imap_slice_eq(s, "OK"))
		return IMAP_STATUS_OK;
	if (imap_slice_eq(s, "NO"))
		return IMAP_STATUS_NO;
	if (imap_slice_eq(s, "BAD"))
		return IMAP_STATUS_BAD;
	if (imap_slice_eq(s, "BYE"))
		return IMAP_STATUS_BYE;
	if (imap_slice_eq(s, "PREAUTH"))
		return IMAP_STATUS_PREAUTH;
	return IMAP_STATUS_NONE;
}

/* resp-text: optional "[code]" then text. */
static void response_code(const uint8_t *line, size_t len, size_t pos,
			  struct imap_line_info *info)
{
	if (pos < len && line[pos] == '[') {
		const uint8_t *end = memchr(line + pos, ']', len - pos);

		if (end != NULL) {
			info->code.p = line + pos + 1;
			info->code.len = (size_t)(end - (line + pos + 1));
		}
	}
}

static bool is_base64_line(const uint8_t *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = line[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || c == '='))
			return false;
	}
	return true;
}

/* A response masked in a capture imaptap wrote: the fill character only. */
static bool is_masked_line(const uint8_t *line, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (line[i] != '*')
			return false;
	return len > 0;
}

#define KW(id, word) [id] = {word, sizeof(word) - 1}
static const struct {
	const char *name;
	size_t len;
} keywords[] = {
	KW(IMAP_KW_AUTHENTICATE, "AUTHENTICATE"),
	KW(IMAP_KW_CAPABILITY, "CAPABILITY"),
	KW(IMAP_KW_COMPRESS, "COMPRESS"),
	KW(IMAP_KW_EXPUNGE, "EXPUNGE"),
	KW(IMAP_KW_FETCH, "FETCH"),
	KW(IMAP_KW_IDLE, "IDLE"),
	KW(IMAP_KW_LOGIN, "LOGIN"),
	KW(IMAP_KW_LOGOUT, "LOGOUT"),
	KW(IMAP_KW_SEARCH, "SEARCH"),
	KW(IMAP_KW_STARTTLS, "STARTTLS"),
	KW(IMAP_KW_STORE, "STORE"),
	KW(IMAP_KW_VANISHED, "VANISHED"),
};
#undef KW

/* The id of an upper-case name of n bytes (IMAP_KW_OTHER for names
 * without one): once per line, so the length rules out nearly every word
 * before any byte is compared. */
static enum imap_keyword keyword_of(const char *name, size_t n)
{
	for (size_t i = IMAP_KW_OTHER + 1; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
		size_t k = 0;

		if (keywords[i].len != n)
			continue;
		while (k < n && name[k] == keywords[i].name[k])
			k++;
		if (k == n)
			return (enum imap_keyword)i;
	}
	return IMAP_KW_OTHER;
}

static void classify_client(const uint8_t *line, size_t len, bool auth_pending,
			    struct imap_line_info *info)
{
	size_t pos = 0;
	struct imap_slice tag, name;

	/* A SASL response is base64, "*" (cancel) or empty; anything with a
	 * space is a command sent after the exchange. */
	if (auth_pending && (len == 0 || is_masked_line(line, len) || is_base64_line(line, len))) {
		info->cls = IMAP_LINE_AUTH_RESPONSE;
		return;
	}
	if (imap_slice_eq((struct imap_slice){line, len}, "DONE")) {
		info->cls = IMAP_LINE_DONE;
		upper_name(info->name, (struct imap_slice){line, len});
		return;
	}
	tag = token(line, len, &pos);
	if (!valid_tag(tag) || pos >= len) {
		info->cls = IMAP_LINE_MALFORMED;
		return;
	}
	skip_space(line, len, &pos);
	name = token(line, len, &pos);
	if (name.len == 0) {
		info->cls = IMAP_LINE_MALFORMED;
		return;
	}
	info->cls = IMAP_LINE_COMMAND;
	info->tag = tag;
	if (imap_slice_eq(name, "UID")) {
		skip_space(line, len, &pos);
		name = token(line, len, &pos);
		info->uid = true;
	}
	info->keyword = keyword_of(info->name, upper_name(info->name, name));
	skip_space(line, len, &pos);
	info->args.p = line + pos;
	info->args.len = len - pos;
}

static void classify_server(const uint8_t *line, size_t len, struct imap_line_info *info)
{
	size_t pos = 0;
	struct imap_slice first, word;

	if (len >= 1 && line[0] == '+' && (len == 1 || line[1] == ' ')) {
		info->cls = IMAP_LINE_CONTINUATION;
		pos = len > 1 ? 2 : 1;
		response_code(line, len, pos, info);
		info->args.p = line + pos;
		info->args.len = len - pos;
		return;
	}
	first = token(line, len, &pos);
	skip_space(line, len, &pos);
	word = token(line, len, &pos);
	if (imap_slice_eq(first, "*")) {
		info->cls = IMAP_LINE_UNTAGGED;
		if (word.len > 0 && word.p[0] >= '0' && word.p[0] <= '9') {
			uint64_t n = 0;
			bool ok = word.len <= 19;

			for (size_t i = 0; ok && i < word.len; i++) {
				if (word.p[i] < '0' || word.p[i] > '9')
					ok = false;
				else
					n = n * 10 + (uint64_t)(word.p[i] - '0');
			}
			if (ok) {
				info->has_number = true;
				info->number = n;
				skip_space(line, len, &pos);
				word = token(line, len, &pos);
			}
		}
		info->keyword = keyword_of(info->name, upper_name(info->name, word));
		info->status = info->has_number ? IMAP_STATUS_NONE : status_of(word);
		skip_space(line, len, &pos);
		if (info->status != IMAP_STATUS_NONE)
			response_code(line, len, pos, info);
		info->args.p = line + pos;
		info->args.len = len - pos;
		return;
	}
	info->status = status_of(word);
	if (!valid_tag(first) || (info->status != IMAP_STATUS_OK && info->status != IMAP_STATUS_NO &&
				   info->status != IMAP_STATUS_BAD)) {
		info->cls = IMAP_LINE_MALFORMED;
		info->status = IMAP_STATUS_NONE;
		return;
	}
	info->cls = IMAP_LINE_TAGGED;
	info->tag = first;
	upper_name(info->name, word);
	skip_space(line, len, &pos);
	response_code(line, len, pos, info);
	info->args.p = line + pos;
	info->args.len = len - pos;
}

void imap_classify(enum imap_dir dir, const uint8_t *line, size_t len, bool continued,
		   bool auth_pending, struct imap_line_info *info_r)
{
	imap_zero(info_r, sizeof(*info_r));
	len = content_len(line, len);
	if (continued) {
		info_r->cls = IMAP_LINE_CONTINUED;
		info_r->args.p = line;
		info_r->args.len = len;
		return;
	}
	if (dir == IMAP_C2S)
		classify_client(line, len, auth_pending, info_r);
	else
		classify_server(line, len, info_r);
}
