#include "imap/protocol.h"
#include "imap/protocol_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct imap_protocol *imap_protocol_new(imap_anomaly_cb *cb, void *ctx)
{
	struct imap_protocol *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->cb = cb;
	p->ctx = ctx;
	p->logical[0] = imap_logical_new();
	p->logical[1] = imap_logical_new();
	if (p->logical[0] == NULL || p->logical[1] == NULL)
		imap_protocol_free(&p);
	return p;
}

void imap_protocol_free(struct imap_protocol **protocol)
{
	struct imap_protocol *p = *protocol;

	if (p == NULL)
		return;
	imap_logical_free(&p->logical[0]);
	imap_logical_free(&p->logical[1]);
	imap_mailboxes_clear(&p->mailboxes);
	free(p->pending);
	free(p->uid_map);
	free(p);
	*protocol = NULL;
}

void protocol_escape(char *out, size_t size, const uint8_t *s, size_t len, size_t max)
{
	size_t o = 0;

	if (size == 0)
		return;
	for (size_t i = 0; i < len && i < max; i++) {
		uint8_t ch = s[i];
		char piece[8];
		size_t n;

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			n = (size_t)snprintf(piece, sizeof(piece), "%c", ch);
		else
			n = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", ch);
		if (o + n + 1 > size)
			break;
		memcpy(out + o, piece, n);
		o += n;
	}
	out[o] = '\0';
	if (len > max && o + 4 <= size) {
		memcpy(out + o, "...", 4);
	}
}

void protocol_emit(struct imap_protocol *p, const struct imap_anomaly *a)
{
	if (p->cb == NULL || p->by_proxy || p->said[a->rule] >= IMAP_PROTOCOL_RULE_CAP)
		return;
	p->said[a->rule]++;
	p->cb(p->ctx, a);
}

void protocol_say(struct imap_protocol *p, enum imap_rule rule, const uint8_t *tag,
		  size_t tag_len, const char *fmt, ...)
{
	struct imap_anomaly a;
	va_list ap;

	va_start(ap, fmt);
	imap_anomaly_vmake(&a, rule, p->ts, tag, tag_len, fmt, ap);
	va_end(ap);
	protocol_emit(p, &a);
}

/* --- server lines --- */

static struct pending *find_pending(struct imap_protocol *p, struct imap_slice tag, size_t *i_r)
{
	for (size_t i = 0; i < p->npending; i++) {
		if (p->pending[i].tag_len == tag.len && memcmp(p->pending[i].tag, tag.p, tag.len) == 0) {
			*i_r = i;
			return &p->pending[i];
		}
	}
	return NULL;
}

void protocol_drop_pending(struct imap_protocol *p, size_t i)
{
	memmove(&p->pending[i], &p->pending[i + 1], (p->npending - i - 1) * sizeof(p->pending[0]));
	p->npending--;
}

static void tagged(struct imap_protocol *p, const struct imap_parsed *r, struct imap_slice tag)
{
	size_t i;
	struct pending *c = find_pending(p, tag, &i);
	bool ok = r->status == IMAP_STATUS_OK;

	if (c == NULL)
		return;
	if (ok && !c->plus &&
	    (c->cmd == IMAP_CMD_IDLE || (c->cmd == IMAP_CMD_AUTHENTICATE && !c->sasl_ir)))
		protocol_say(p, IMAP_RULE_TAGGED_OK_BEFORE_CONTINUATION, c->tag, c->tag_len,
			     "%.*s %s completed OK before any +: the server never asked for what the "
			     "command needs (%s)",
			     (int)c->tag_len, (const char *)c->tag,
			     c->cmd == IMAP_CMD_IDLE ? "IDLE" : "AUTHENTICATE",
			     c->cmd == IMAP_CMD_IDLE ? "a client waiting for + before it idles "
						       "hangs or sends DONE into the next command"
						     : "a SASL exchange without an initial "
						       "response starts with +");
	switch (c->cmd) {
	case IMAP_CMD_LOGIN:
	case IMAP_CMD_AUTHENTICATE:
		if (ok) {
			p->state = STATE_AUTH;
			/* capabilities may change with authentication (RFC 9051
			 * section 6.2.2): unknown until announced again */
			if (r->code != IMAP_CODE_CAPABILITY)
				p->caps_known = false;
		}
		break;
	case IMAP_CMD_STARTTLS:
		if (ok)
			p->caps_known = false;
		break;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
		if (ok) {
			p->state = STATE_SELECTED;
			if (c->mailbox != NULL)
				c->mailbox->selects++;
		} else if (r->status == IMAP_STATUS_NO) {
			/* a failed SELECT leaves no mailbox selected */
			p->state = p->state == STATE_UNKNOWN ? STATE_UNKNOWN : STATE_AUTH;
			protocol_begin_selection(p, NULL);
		}
		break;
	case IMAP_CMD_CLOSE:
	case IMAP_CMD_UNSELECT:
		if (ok) {
			p->state = STATE_AUTH;
			protocol_begin_selection(p, NULL);
		}
		break;
	case IMAP_CMD_LOGOUT:
		p->state = STATE_LOGOUT;
		break;
	case IMAP_CMD_NONE:
	case IMAP_CMD_OTHER:
	case IMAP_CMD_CAPABILITY:
	case IMAP_CMD_FETCH:
	case IMAP_CMD_STORE:
	case IMAP_CMD_SEARCH:
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
	case IMAP_CMD_EXPUNGE:
	case IMAP_CMD_IDLE:
	case IMAP_CMD_ENABLE:
	case IMAP_CMD_COMPRESS:
	case IMAP_CMD_ID:
	case IMAP_CMD_NAMESPACE:
	case IMAP_CMD_STATUS:
	case IMAP_CMD_NOTIFY:
	case IMAP_CMD_SORT:
	case IMAP_CMD_THREAD:
	case IMAP_CMD_LIST:
	case IMAP_CMD_APPEND:
	default:
		break;
	}
	protocol_drop_pending(p, i);
}

bool protocol_pending(const struct imap_protocol *p, enum imap_cmd cmd, bool uid)
{
	for (size_t i = 0; i < p->npending; i++)
		if (p->pending[i].cmd == cmd && p->pending[i].uid == uid)
			return true;
	return false;
}

static bool transition_pending(const struct imap_protocol *p)
{
	return protocol_select_pending(p) || protocol_pending(p, IMAP_CMD_CLOSE, false) ||
	       protocol_pending(p, IMAP_CMD_UNSELECT, false);
}

/* Mailbox data outside the selected state (RFC 9051 section 3). */
static void check_state(struct imap_protocol *p, const struct imap_parsed *r)
{
	const char *word = protocol_kind_word(r->kind);

	if (word == NULL || (r->kind == IMAP_RESP_VANISHED && r->vanished_earlier))
		return;
	/* authenticated with no mailbox selected: before authentication
	 * nothing is selected either, but no server has been seen to send
	 * mailbox data there, and a scripted peer's shortcut is no finding */
	if (p->state != STATE_AUTH)
		return;
	if (transition_pending(p) || (p->wrong_state_said & (1u << r->kind)))
		return;
	p->wrong_state_said |= 1u << r->kind;
	protocol_say(p, IMAP_RULE_UNTAGGED_IN_WRONG_STATE, NULL, 0,
		     "untagged %s with no mailbox selected: mailbox data belongs to the selected "
		     "state; a client may apply it to a mailbox it no longer has open",
		     word);
}

static void server_line(struct imap_protocol *p, const struct imap_parsed *r,
			struct imap_slice tag)
{
	bool first = !p->seen_server_line;

	p->seen_server_line = true;
	if (first && r->kind == IMAP_RESP_STATUS) {
		p->whole = true;
		if (r->status == IMAP_STATUS_OK)
			p->state = STATE_NOT_AUTH;
		else if (r->status == IMAP_STATUS_PREAUTH)
			p->state = STATE_AUTH;
	}
	if (r->code != IMAP_CODE_NONE)
		protocol_apply_code(p, r);
	switch (r->kind) {
	case IMAP_RESP_CONTINUATION:
		for (size_t i = 0; i < p->npending; i++)
			p->pending[i].plus = true;
		break;
	case IMAP_RESP_TAGGED:
		tagged(p, r, tag);
		break;
	case IMAP_RESP_STATUS:
		if (r->status == IMAP_STATUS_BYE && !protocol_pending(p, IMAP_CMD_LOGOUT, false)) {
			char text[200];

			protocol_escape(text, sizeof(text), r->text.p, r->text.len, 160);
			protocol_say(p, IMAP_RULE_SERVER_BYE, NULL, 0,
				     "%s: \"%s\"",
				     first ? "the server refused the session in its greeting"
					   : "the server is closing the session on its own (no LOGOUT)",
				     text);
		}
		break;
	case IMAP_RESP_CAPABILITY:
		p->caps = r->caps;
		p->caps_known = true;
		break;
	case IMAP_RESP_ENABLED:
		p->enabled |= r->caps;
		break;
	case IMAP_RESP_STATUS_DATA:
		protocol_status_data(p, r);
		break;
	case IMAP_RESP_NONE:
	case IMAP_RESP_FLAGS:
	case IMAP_RESP_LIST:
	case IMAP_RESP_SEARCH:
	case IMAP_RESP_ESEARCH:
	case IMAP_RESP_NAMESPACE:
	case IMAP_RESP_ID:
	case IMAP_RESP_VANISHED:
	case IMAP_RESP_EXISTS:
	case IMAP_RESP_RECENT:
	case IMAP_RESP_EXPUNGE:
	case IMAP_RESP_FETCH:
	case IMAP_RESP_UIDFETCH:
	case IMAP_RESP_OTHER:
	default:
		check_state(p, r);
		protocol_mailbox_data(p, r);
		break;
	}
}

/* --- lines in, syntax out --- */

static void say_syntax(struct imap_protocol *p, enum imap_dir dir, const struct imap_parsed *r,
		       const struct imap_logical_line *line)
{
	char near[100];
	const char *side = dir == IMAP_C2S ? "client" : "server";
	uint64_t at = imap_logical_line_offset(line, r->error_at);

	if (p->syntax_said[dir] & ((uint64_t)1 << r->error))
		return;
	p->syntax_said[dir] |= (uint64_t)1 << r->error;
	if (p->quotable[dir]) {
		size_t left = line->len - r->error_at;

		/* the bytes from the failure on, short of the CRLF */
		while (left > 0 && (line->data[r->error_at + left - 1] == '\n' ||
				    line->data[r->error_at + left - 1] == '\r'))
			left--;
		protocol_escape(near, sizeof(near), line->data + r->error_at, left, 24);
	} else {
		snprintf(near, sizeof(near), "(masked)");
	}
	protocol_say(p, IMAP_RULE_SYNTAX, NULL, 0,
		     "%s line at stream byte %" PRIu64 ": %s does not parse at byte %" PRIu64
		     " of the line, at \"%s\"; the relay is unaffected",
		     side, line->offset + at, imap_element_str(r->error), at, near);
}

static void line_done(struct imap_protocol *p, enum imap_dir dir,
		      const struct imap_logical_line *line)
{
	struct imap_parsed r;
	enum imap_line_class cls = p->first_class[dir];
	struct imap_slice tag = {p->line_tag[dir], p->line_tag_len[dir]};

	if (!line->checkable)
		return;
	if (dir == IMAP_S2C) {
		if (cls == IMAP_LINE_MALFORMED)
			return; /* parse-error said it */
		imap_parse_response(line->data, line->len, line->lits, line->nlits, &r);
	} else {
		if (cls != IMAP_LINE_COMMAND)
			return; /* DONE, a SASL response, a malformed line */
		imap_parse_command(line->data, line->len, line->lits, line->nlits, &r);
	}
	if (!r.checked)
		return;
	/* a credential may be in the capture masked ('*' for each byte),
	 * which no longer parses: LOGIN and AUTHENTICATE are not judged */
	if (!r.ok && !p->framing_bad[dir] && r.cmd != IMAP_CMD_LOGIN &&
	    r.cmd != IMAP_CMD_AUTHENTICATE)
		say_syntax(p, dir, &r, line);
	if (dir == IMAP_S2C)
		server_line(p, &r, tag);
	else
		protocol_client_command(p, &r, tag);
}

void imap_protocol_unit(struct imap_protocol *p, enum imap_dir dir, imap_time_us ts,
			const struct imap_unit *unit, const struct imap_line_info *info,
			unsigned flags)
{
	struct imap_logical_line line;
	bool keep = true;

	if (p == NULL)
		return;
	p->ts = ts;
	if (unit->kind != IMAP_UNIT_LITERAL_DATA && !(unit->flags & IMAP_UNIT_CONTINUED)) {
		size_t n = info->tag.len < IMAP_TAG_SHOW ? info->tag.len : IMAP_TAG_SHOW;

		p->first_class[dir] = info->cls;
		p->first_keyword[dir] = info->keyword;
		if (n > 0)
			memcpy(p->line_tag[dir], info->tag.p, n);
		p->line_tag_len[dir] = n;
		p->quotable[dir] = true;
		p->framing_bad[dir] = false;
	}
	p->quotable[dir] = p->quotable[dir] && (flags & IMAP_PROTOCOL_QUOTABLE);
	p->by_proxy = (flags & IMAP_PROTOCOL_BY_PROXY) != 0;
	if (unit->flags & (IMAP_UNIT_NUL | IMAP_UNIT_OPEN_QUOTE | IMAP_UNIT_BAD_LITERAL))
		p->framing_bad[dir] = true;
	/* a credential's literal is not kept */
	if (dir == IMAP_C2S && (p->first_class[dir] != IMAP_LINE_COMMAND ||
				p->first_keyword[dir] == IMAP_KW_LOGIN ||
				p->first_keyword[dir] == IMAP_KW_AUTHENTICATE))
		keep = false;
	if (dir == IMAP_C2S && unit->kind == IMAP_UNIT_LITERAL_HEAD &&
	    p->first_class[dir] == IMAP_LINE_COMMAND)
		protocol_client_literal(p, unit, p->line_tag[dir], p->line_tag_len[dir]);
	if (imap_logical_feed(p->logical[dir], unit, keep, &line))
		line_done(p, dir, &line);
}

void imap_protocol_gap(struct imap_protocol *p, enum imap_dir dir)
{
	if (p == NULL)
		return;
	imap_logical_reset(p->logical[dir]);
	/* what came in the lost bytes is unknown: start over from here */
	p->state = STATE_UNKNOWN;
	p->whole = false;
	p->npending = 0;
	p->caps_known = false;
	p->exists_known = false;
	protocol_map_clear(p);
}

void imap_protocol_wipe(struct imap_protocol *p, enum imap_dir dir)
{
	if (p == NULL)
		return;
	imap_logical_reset(p->logical[dir]);
}

void imap_protocol_trim(struct imap_protocol *p)
{
	if (p == NULL)
		return;
	imap_logical_trim(p->logical[0]);
	imap_logical_trim(p->logical[1]);
}

void imap_protocol_summary(const struct imap_protocol *p, struct imap_summary *summary)
{
	if (p == NULL || p->mailboxes.count == 0)
		return;
	summary->mailboxes = (const struct imap_mailbox_facts *const *)p->mailboxes.kept;
	summary->mailbox_count = p->mailboxes.count;
}
