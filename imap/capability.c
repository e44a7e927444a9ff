#include "imap/capability.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool token_is(const uint8_t *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp((const char *)p, word, n) == 0;
}

bool imap_capability_list(const uint8_t *line, size_t len, size_t *start, size_t *end)
{
	static const char key[] = "CAPABILITY ";
	const size_t klen = sizeof(key) - 1;
	size_t content = len;

	while (content > 0 && (line[content - 1] == '\n' || line[content - 1] == '\r'))
		content--;
	if (content >= 2 + klen && line[0] == '*' && line[1] == ' ' &&
	    strncasecmp((const char *)line + 2, key, klen) == 0) {
		*start = 2 + klen;
		*end = content;
		return true;
	}
	for (size_t i = 0; i + 1 + klen <= content; i++) {
		if (line[i] == '[' && strncasecmp((const char *)line + i + 1, key, klen) == 0) {
			const uint8_t *close = memchr(line + i, ']', content - i);

			if (close == NULL)
				return false;
			*start = i + 1 + klen;
			*end = (size_t)(close - line);
			return true;
		}
	}
	return false;
}

size_t imap_capability_edit(const uint8_t *line, size_t len, unsigned edits, uint8_t *out,
			    size_t out_size)
{
	size_t start, end, o = 0, i;
	bool changed = false, has_starttls = false, has_logindisabled = false;

	if (!imap_capability_list(line, len, &start, &end) ||
	    len + IMAP_CAPABILITY_EDIT_GROWTH > out_size)
		return 0;
	memcpy(out, line, start);
	o = start;
	for (i = start; i < end;) {
		size_t j = i;

		while (j < end && line[j] != ' ')
			j++;
		if (token_is(line + i, j - i, "STARTTLS")) {
			has_starttls = true;
			if (edits & IMAP_CAP_REMOVE_STARTTLS) {
				changed = true;
				i = j < end ? j + 1 : j;
				continue;
			}
		}
		if (token_is(line + i, j - i, "LOGINDISABLED")) {
			has_logindisabled = true;
			if (edits & IMAP_CAP_REMOVE_LOGINDISABLED) {
				changed = true;
				i = j < end ? j + 1 : j;
				continue;
			}
		}
		if (o > start && out[o - 1] != ' ')
			out[o++] = ' ';
		memcpy(out + o, line + i, j - i);
		o += j - i;
		i = j < end ? j + 1 : j;
	}
	if ((edits & IMAP_CAP_ADD_STARTTLS) && !has_starttls) {
		memcpy(out + o, " STARTTLS", 9);
		o += 9;
		changed = true;
	}
	if ((edits & IMAP_CAP_ADD_LOGINDISABLED) && !has_logindisabled) {
		memcpy(out + o, " LOGINDISABLED", 14);
		o += 14;
		changed = true;
	}
	if (!changed)
		return 0;
	memcpy(out + o, line + end, len - end);
	return o + (len - end);
}

unsigned imap_capability_changes(const uint8_t *line, size_t len, unsigned edits)
{
	size_t start, end;
	bool has_starttls = false, has_logindisabled = false;
	unsigned done = 0;

	if (!imap_capability_list(line, len, &start, &end))
		return 0;
	for (size_t i = start; i < end;) {
		size_t j = i;

		while (j < end && line[j] != ' ')
			j++;
		has_starttls |= token_is(line + i, j - i, "STARTTLS");
		has_logindisabled |= token_is(line + i, j - i, "LOGINDISABLED");
		i = j < end ? j + 1 : j;
	}
	if (has_starttls && (edits & IMAP_CAP_REMOVE_STARTTLS))
		done |= IMAP_CAP_REMOVE_STARTTLS;
	if (!has_starttls && (edits & IMAP_CAP_ADD_STARTTLS))
		done |= IMAP_CAP_ADD_STARTTLS;
	if (has_logindisabled && (edits & IMAP_CAP_REMOVE_LOGINDISABLED))
		done |= IMAP_CAP_REMOVE_LOGINDISABLED;
	if (!has_logindisabled && (edits & IMAP_CAP_ADD_LOGINDISABLED))
		done |= IMAP_CAP_ADD_LOGINDISABLED;
	return done;
}

void imap_capability_describe(unsigned done, char *out, size_t size)
{
	static const struct {
		unsigned bit;
		const char *words;
	} names[] = {
		{IMAP_CAP_REMOVE_STARTTLS, "STARTTLS removed"},
		{IMAP_CAP_ADD_STARTTLS, "STARTTLS added"},
		{IMAP_CAP_REMOVE_LOGINDISABLED, "LOGINDISABLED removed"},
		{IMAP_CAP_ADD_LOGINDISABLED, "LOGINDISABLED added"},
	};
	size_t used = 0;

	if (size == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n;

		if (!(done & names[i].bit))
			continue;
		n = snprintf(out + used, size - used, "%s%s", used ? ", " : "", names[i].words);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

size_t imap_capability_hide(const uint8_t *line, size_t len, const char *const *names,
			    size_t count, uint8_t *out, size_t out_size)
{
	size_t start, end, o, i;
	bool changed = false;

	if (!imap_capability_list(line, len, &start, &end) || len > out_size)
		return 0;
	memcpy(out, line, start);
	o = start;
	for (i = start; i < end;) {
		size_t j = i;
		bool hide = false;

		while (j < end && line[j] != ' ')
			j++;
		for (size_t k = 0; k < count && !hide; k++)
			hide = strlen(names[k]) == j - i &&
			       strncasecmp((const char *)line + i, names[k], j - i) == 0;
		if (hide) {
			changed = true;
		} else if (j > i) {
			if (o > start)
				out[o++] = ' ';
			memcpy(out + o, line + i, j - i);
			o += j - i;
		}
		i = j + 1;
	}
	if (!changed)
		return 0;
	/* the rest of the line from the list's end: "] text\r\n", or "\r\n" */
	memcpy(out + o, line + end, len - end);
	return o + len - end;
}
