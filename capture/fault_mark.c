#include "capture/fault_mark.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/mark_text.h"
#include "capture/timefmt.h"

/* after the timestamp: host, app, no procid, msgid, no structured data */
#define AFTER_TIME " imaptap imaptap - fault - injected fault "
#define AFTER_TIME_CLOSE " imaptap imaptap - close - session ended "
#define AFTER_TIME_ANOMALY " imaptap imaptap - anomaly - finding "

size_t capture_fault_mark_format(char *out, size_t size, unsigned session,
				 const struct capture_endpoint *client,
				 const struct capture_fault_mark *m)
{
	char when[40], at[CAPTURE_ADDR_MAX];

	if (size == 0)
		return 0;
	capture_format_rfc3339(when, sizeof(when), m->ts);
	capture_endpoint_format(client, at, sizeof(at));
	return mark_written(out, size,
		       snprintf(out, size,
				MARK_HEAD "%s" AFTER_TIME "session=%u client=%s action=%s phase=%s dir=%s "
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
	return mark_written(out, size,
		       snprintf(out, size, MARK_HEAD "%s" AFTER_TIME_CLOSE "session=%u client=%s by=%s end=%s: %s",
				when, session, at, capture_side_str(info->by),
				capture_end_str(info->end), info->reason));
}

size_t capture_anomaly_mark_format(char *out, size_t size, unsigned session,
				   const struct capture_endpoint *client,
				   const struct imap_anomaly *a)
{
	char when[40], at[CAPTURE_ADDR_MAX], detail[CAPTURE_FAULT_MARK_TEXT_MAX];

	if (size == 0)
		return 0;
	capture_format_rfc3339(when, sizeof(when), a->ts);
	capture_endpoint_format(client, at, sizeof(at));
	/* the detail quotes peer bytes: a syslog reader shows it as it is */
	capture_escape(detail, sizeof(detail), a->detail, strnlen(a->detail, sizeof(a->detail)), 0,
		       NULL);
	return mark_written(out, size,
		       snprintf(out, size, MARK_HEAD "%s" AFTER_TIME_ANOMALY "session=%u client=%s "
				"rule=%s%s: %s", when, session, at, imap_rule_id(a->rule),
				a->resolved ? " resolved" : "", detail));
}

/* The part every mark shares: the header with its msgid text (after),
 * session= and client=. NONE when the header is not imaptap's. */
static enum capture_fault_mark_parse_result
read_head(struct mark_cursor *c, const char *after, unsigned *session_r, bool *client_known_r,
	  struct capture_endpoint *client_r, char *why, size_t why_size)
{
	char number[16], client[CAPTURE_ADDR_MAX];
	unsigned long session;
	char *end;

	if (why_size > 0)
		why[0] = '\0';
	/* the header decides whether the datagram is a mark at all */
	if (!mark_take_head(c, after))
		return CAPTURE_FAULT_MARK_NONE;
	if (!mark_take(c, "session=") || !mark_token(c, number, sizeof(number)))
		return mark_damaged(why, why_size, "no session=N");
	session = strtoul(number, &end, 10);
	if (number[0] < '1' || number[0] > '9' || *end != '\0' || session > 0xffffffffu)
		return mark_damaged(why, why_size, "session= is not a session number");
	*session_r = (unsigned)session;
	if (mark_take(c, " client=")) {
		if (!mark_token(c, client, sizeof(client)) || !capture_endpoint_parse(client, client_r))
			return mark_damaged(why, why_size, "client= is not an address and port");
		*client_known_r = true;
	}
	return CAPTURE_FAULT_MARK_OK;
}

/* The free text after ": ", a C string where it was written. */
static enum capture_fault_mark_parse_result read_text(struct mark_cursor *c, char *out, size_t size,
						      char *why, size_t why_size)
{
	if (memchr(c->p, '\0', c->len) != NULL)
		return mark_damaged(why, why_size, "a NUL byte in the detail");
	if (c->len >= size)
		return mark_damaged(why, why_size, "the detail is too long");
	memcpy(out, c->p, c->len);
	out[c->len] = '\0';
	return CAPTURE_FAULT_MARK_OK;
}

enum capture_fault_mark_parse_result
capture_fault_mark_parse(const uint8_t *text, size_t len, struct capture_fault_mark_read *r,
			 char *why, size_t why_size)
{
	struct mark_cursor c = {text, len};
	char dir[8];
	enum capture_fault_mark_parse_result rc;
	size_t n;

	memset(r, 0, sizeof(*r));
	rc = read_head(&c, AFTER_TIME, &r->session, &r->client_known, &r->client, why, why_size);
	if (rc != CAPTURE_FAULT_MARK_OK)
		return rc;
	if (!mark_take(&c, " action=") || !mark_token(&c, r->action, sizeof(r->action)))
		return mark_damaged(why, why_size, "no action=");
	if (!mark_take(&c, " phase=") || !mark_token(&c, r->phase, sizeof(r->phase)))
		return mark_damaged(why, why_size, "no phase=");
	if (!mark_take(&c, " dir=") || !mark_token(&c, dir, sizeof(dir)) ||
	    (strcmp(dir, "c2s") != 0 && strcmp(dir, "s2c") != 0))
		return mark_damaged(why, why_size, "no dir=c2s or dir=s2c");
	/* a spec has no spaces, and its text ends with the colon before the
	 * detail's space */
	if (!mark_take(&c, " spec=") || !mark_token(&c, r->spec, sizeof(r->spec)))
		return mark_damaged(why, why_size, "no spec=");
	n = strlen(r->spec);
	if (n < 2 || r->spec[n - 1] != ':' || !mark_take(&c, " "))
		return mark_damaged(why, why_size, "the text ends before the detail");
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
	struct mark_cursor c = {text, len};
	char by[16], end[24];
	enum capture_fault_mark_parse_result rc;
	size_t n;
	bool found = false;

	memset(r, 0, sizeof(*r));
	rc = read_head(&c, AFTER_TIME_CLOSE, &r->session, &r->client_known, &r->client, why,
		       why_size);
	if (rc != CAPTURE_FAULT_MARK_OK)
		return rc;
	if (!mark_take(&c, " by=") || !mark_token(&c, by, sizeof(by)))
		return mark_damaged(why, why_size, "no by=");
	for (int i = CAPTURE_SIDE_CLIENT; i <= CAPTURE_SIDE_CAPTURE && !found; i++)
		if (strcmp(by, capture_side_str((enum capture_side)i)) == 0) {
			r->by = (enum capture_side)i;
			found = true;
		}
	if (!found)
		return mark_damaged(why, why_size, "by= names no side");
	/* the end's word is followed by the colon before the reason */
	if (!mark_take(&c, " end=") || !mark_token(&c, end, sizeof(end)))
		return mark_damaged(why, why_size, "no end=");
	n = strlen(end);
	if (n < 2 || end[n - 1] != ':' || !mark_take(&c, " "))
		return mark_damaged(why, why_size, "the text ends before the reason");
	end[n - 1] = '\0';
	found = false;
	for (int i = CAPTURE_END_EOF; i <= CAPTURE_END_UNSEEN && !found; i++)
		if (strcmp(end, capture_end_str((enum capture_end)i)) == 0) {
			r->end = (enum capture_end)i;
			found = true;
		}
	if (!found)
		return mark_damaged(why, why_size, "end= names no way a session ends");
	return read_text(&c, r->reason, sizeof(r->reason), why, why_size);
}
