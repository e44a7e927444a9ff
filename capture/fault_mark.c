#include "capture/fault_mark.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/timefmt.h"

/* PRI 133: facility local0, severity notice; version 1 */
#define HEAD "<133>1 "
/* after the timestamp: host, app, no procid, msgid, no structured data */
#define AFTER_TIME " imaptap imaptap - fault - injected fault "
#define AFTER_TIME_CLOSE " imaptap imaptap - close - session ended "

static size_t written(char *out, size_t size, int n)
{
	if (n < 0) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)n < size ? (size_t)n : size - 1;
}

size_t capture_fault_mark_format(char *out, size_t size, unsigned session,
				 const struct capture_endpoint *client,
				 const struct capture_fault_mark *m)
{
	char when[40], at[CAPTURE_ADDR_MAX];

	if (size == 0)
		return 0;
	capture_format_rfc3339(when, sizeof(when), m->ts);
	capture_endpoint_format(client, at, sizeof(at));
	return written(out, size,
		       snprintf(out, size,
				HEAD "%s" AFTER_TIME "session=%u client=%s action=%s phase=%s dir=%s "
				     "spec=%s: %s",
				when, session, at, m->action, m->phase, imap_dir_str(m->dir), m->spec,
				m->detail));
}

size_t capture_close_mark_format(char *out, size_t size, unsigned session,
				 const struct capture_endpoint *client,
				 const struct capture_close_info *info)
{
	char when[40], at[CAPTURE_ADDR_MAX];

	if (size == 0)
		return 0;
	capture_format_rfc3339(when, sizeof(when), info->ts);
	capture_endpoint_format(client, at, sizeof(at));
	return written(out, size,
		       snprintf(out, size, HEAD "%s" AFTER_TIME_CLOSE "session=%u client=%s by=%s end=%s: %s",
				when, session, at, capture_side_str(info->by),
				capture_end_str(info->end), info->reason));
}

/* The text still to read: p[0..len). */
struct cursor {
	const uint8_t *p;
	size_t len;
};

static bool take(struct cursor *c, const char *literal)
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
static bool token(struct cursor *c, char *out, size_t size)
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


static enum capture_fault_mark_parse_result damaged(char *why, size_t size, const char *what)
{
	snprintf(why, size, "%s", what);
	return CAPTURE_FAULT_MARK_DAMAGED;
}

/* The part every mark shares: the header with its msgid text (after),
 * session= and client=. NONE when the header is not imaptap's. */
static enum capture_fault_mark_parse_result
read_head(struct cursor *c, const char *after, unsigned *session_r, bool *client_known_r,
	  struct capture_endpoint *client_r, char *why, size_t why_size)
{
	char number[16], client[CAPTURE_ADDR_MAX];
	unsigned long session;
	char *end;

	if (why_size > 0)
		why[0] = '\0';
	/* the header decides whether the datagram is a mark at all */
	if (!take(c, HEAD))
		return CAPTURE_FAULT_MARK_NONE;
	while (c->len > 0 && c->p[0] != ' ') { /* the timestamp: the packet's time counts */
		c->p++;
		c->len--;
	}
	if (!take(c, after))
		return CAPTURE_FAULT_MARK_NONE;
	if (!take(c, "session=") || !token(c, number, sizeof(number)))
		return damaged(why, why_size, "no session=N");
	session = strtoul(number, &end, 10);
	if (number[0] < '1' || number[0] > '9' || *end != '\0' || session > 0xffffffffu)
		return damaged(why, why_size, "session= is not a session number");
	*session_r = (unsigned)session;
	if (take(c, " client=")) {
		if (!token(c, client, sizeof(client)) || !capture_endpoint_parse(client, client_r))
			return damaged(why, why_size, "client= is not an address and port");
		*client_known_r = true;
	}
	return CAPTURE_FAULT_MARK_OK;
}

/* The free text after ": ", a C string where it was written. */
static enum capture_fault_mark_parse_result read_text(struct cursor *c, char *out, size_t size,
						      char *why, size_t why_size)
{
	if (memchr(c->p, '\0', c->len) != NULL)
		return damaged(why, why_size, "a NUL byte in the detail");
	if (c->len >= size)
		return damaged(why, why_size, "the detail is too long");
	memcpy(out, c->p, c->len);
	out[c->len] = '\0';
	return CAPTURE_FAULT_MARK_OK;
}

enum capture_fault_mark_parse_result
capture_fault_mark_parse(const uint8_t *text, size_t len, struct capture_fault_mark_read *r,
			 char *why, size_t why_size)
{
	struct cursor c = {text, len};
	char dir[8];
	enum capture_fault_mark_parse_result rc;
	size_t n;

	memset(r, 0, sizeof(*r));
	rc = read_head(&c, AFTER_TIME, &r->session, &r->client_known, &r->client, why, why_size);
	if (rc != CAPTURE_FAULT_MARK_OK)
		return rc;
	if (!take(&c, " action=") || !token(&c, r->action, sizeof(r->action)))
		return damaged(why, why_size, "no action=");
	if (!take(&c, " phase=") || !token(&c, r->phase, sizeof(r->phase)))
		return damaged(why, why_size, "no phase=");
	if (!take(&c, " dir=") || !token(&c, dir, sizeof(dir)) ||
	    (strcmp(dir, "c2s") != 0 && strcmp(dir, "s2c") != 0))
		return damaged(why, why_size, "no dir=c2s or dir=s2c");
	/* a spec has no spaces, and its text ends with the colon before the
	 * detail's space */
	if (!take(&c, " spec=") || !token(&c, r->spec, sizeof(r->spec)))
		return damaged(why, why_size, "no spec=");
	n = strlen(r->spec);
	if (n < 2 || r->spec[n - 1] != ':' || !take(&c, " "))
		return damaged(why, why_size, "the text ends before the detail");
	r->spec[n - 1] = '\0';
	rc = read_text(&c, r->detail, sizeof(r->detail), why, why_size);
	if (rc != CAPTURE_FAULT_MARK_OK)
		return rc;
	r->mark.action = r->action;
	r->mark.phase = r->phase;
	r->mark.dir = strcmp(dir, "c2s") == 0 ? IMAP_C2S : IMAP_S2C;
	r->mark.spec = r->spec;
	r->mark.detail = r->detail;
	return CAPTURE_FAULT_MARK_OK;
}

enum capture_fault_mark_parse_result
capture_close_mark_parse(const uint8_t *text, size_t len, struct capture_close_mark_read *r,
			 char *why, size_t why_size)
{
	struct cursor c = {text, len};
	char by[16], end[24];
	enum capture_fault_mark_parse_result rc;
	size_t n;
	bool found = false;

	memset(r, 0, sizeof(*r));
	rc = read_head(&c, AFTER_TIME_CLOSE, &r->session, &r->client_known, &r->client, why,
		       why_size);
	if (rc != CAPTURE_FAULT_MARK_OK)
		return rc;
	if (!take(&c, " by=") || !token(&c, by, sizeof(by)))
		return damaged(why, why_size, "no by=");
	for (int i = CAPTURE_SIDE_CLIENT; i <= CAPTURE_SIDE_CAPTURE && !found; i++)
		if (strcmp(by, capture_side_str((enum capture_side)i)) == 0) {
			r->by = (enum capture_side)i;
			found = true;
		}
	if (!found)
		return damaged(why, why_size, "by= names no side");
	/* the end's word is followed by the colon before the reason */
	if (!take(&c, " end=") || !token(&c, end, sizeof(end)))
		return damaged(why, why_size, "no end=");
	n = strlen(end);
	if (n < 2 || end[n - 1] != ':' || !take(&c, " "))
		return damaged(why, why_size, "the text ends before the reason");
	end[n - 1] = '\0';
	found = false;
	for (int i = CAPTURE_END_EOF; i <= CAPTURE_END_UNSEEN && !found; i++)
		if (strcmp(end, capture_end_str((enum capture_end)i)) == 0) {
			r->end = (enum capture_end)i;
			found = true;
		}
	if (!found)
		return damaged(why, why_size, "end= names no way a session ends");
	return read_text(&c, r->reason, sizeof(r->reason), why, why_size);
}
