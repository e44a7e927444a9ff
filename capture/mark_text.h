/* What the marks of a capture (capture/fault_mark.c, capture/settings.c)
 * share: the syslog header they start with, and reading their text back,
 * which may hold any bytes. Only those files include it. */
#ifndef CAPTURE_MARK_TEXT_H
#define CAPTURE_MARK_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "capture/fault_mark.h"

/* PRI 133: facility local0, severity notice; version 1 */
#define MARK_HEAD "<133>1 "

/* What snprintf wrote into out[size], at most size - 1. */
static inline size_t mark_written(char *out, size_t size, int n)
{
	if (n < 0) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)n < size ? (size_t)n : size - 1;
}

/* The text still to read: p[0..len). */
struct mark_cursor {
	const uint8_t *p;
	size_t len;
};

static inline bool mark_take(struct mark_cursor *c, const char *literal)
{
	size_t n = strlen(literal);

	if (c->len < n || memcmp(c->p, literal, n) != 0)
		return false;
	c->p += n;
	c->len -= n;
	return true;
}

/* A run of printable ASCII without spaces, copied into out; false when
 * empty or longer than out holds. */
static inline bool mark_token(struct mark_cursor *c, char *out, size_t size)
{
	size_t n = 0;

	while (n < c->len && c->p[n] > 0x20 && c->p[n] < 0x7f)
		n++;
	if (n == 0 || n >= size)
		return false;
	memcpy(out, c->p, n);
	out[n] = '\0';
	c->p += n;
	c->len -= n;
	return true;
}

/* The header up to the msgid's text (after); false when the datagram is
 * not one of imaptap's marks of that kind. The timestamp is skipped: the
 * packet's time counts. */
static inline bool mark_take_head(struct mark_cursor *c, const char *after)
{
	if (!mark_take(c, MARK_HEAD))
		return false;
	while (c->len > 0 && c->p[0] != ' ') {
		c->p++;
		c->len--;
	}
	return mark_take(c, after);
}

static inline enum capture_fault_mark_parse_result mark_damaged(char *why, size_t size,
								 const char *what)
{
	snprintf(why, size, "%s", what);
	return CAPTURE_FAULT_MARK_DAMAGED;
}

#endif
