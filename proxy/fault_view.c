/* The fault engine's IMAP view: each unit of either direction, classified,
 * decides which fault triggers (the nth command, an IDLE's DONE, a
 * literal, an AUTHENTICATE...) and what it queues: a hold, an answer, a
 * cut. COMPRESS takes the view away; faults that need it stop. */
#include "imap/capability.h"
#include "proxy/fault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool counts(struct fault_state *st)
{
	if (st->off || st->done)
		return false;
	st->seen++;
	return st->f->nth == 0 || st->seen == st->f->nth;
}

static void keep_tag(char *buf, size_t *len, struct imap_slice tag)
{
	*len = tag.len < TAG_MAX ? tag.len : 0;
	memcpy(buf, tag.p, *len);
}

static bool tag_is(const char *buf, size_t len, struct imap_slice tag)
{
	return len > 0 && tag.len == len && memcmp(tag.p, buf, len) == 0;
}

/* The IMAP view is gone for dir (COMPRESS): faults that need it stop. */
static void lose_view(struct fault_dir *d)
{
	struct proxy_faults *fs = d->owner;

	imap_framer_stop(d->framer);
	d->view_lost = true;
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];

		if (st->off || st->done || !proxy_fault_needs_imap(st->f))
			continue;
		st->off = true;
		fault_mark_act(fs, st, d->now, "off", d->dir,
		     "COMPRESS=DEFLATE is on: this fault reads IMAP lines and stops here");
	}
}

static void client_unit(struct fault_dir *d, const struct imap_unit *u,
			const struct imap_line_info *info)
{
	struct proxy_faults *fs = d->owner;
	const uint64_t end = u->offset + u->wire_len;

	if (fs->swallowing) {
		if (u->kind == IMAP_UNIT_LINE) {
			struct piece *p;

			fault_cover(d, u->offset);
			p = fault_new_piece(d, end, fault_due(d, d->now));
			if (p == NULL)
				return;
			p->drop = true;
			p->after = AFTER_ANSWER;
			p->fault = fs->swallow_fault;
			snprintf(p->text, sizeof(p->text), "%s", fs->swallow_answer);
			fs->swallowing = false;
		}
		return;
	}
	if (info->cls == IMAP_LINE_DONE) {
		if (fs->idle_tag_len > 0)
			fs->idle_done = true;
		fault_idle_over(fs); /* in time for bye-after-idle and end-idle-early */
		return;
	}
	if (info->cls != IMAP_LINE_COMMAND)
		return;
	if (info->keyword == IMAP_KW_IDLE) {
		keep_tag(fs->idle_tag, &fs->idle_tag_len, info->tag);
		fs->idle_done = false;
		fs->idle_plus = false;
	} else if (info->keyword == IMAP_KW_AUTHENTICATE) {
		keep_tag(fs->auth_tag, &fs->auth_tag_len, info->tag);
	} else if (info->keyword == IMAP_KW_COMPRESS) {
		keep_tag(fs->compress_tag, &fs->compress_tag_len, info->tag);
		/* the client compresses from its next byte once the server agrees */
		fault_cover(d, end);
		lose_view(d);
		return;
	}
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		const struct proxy_fault *f = st->f;

		if (f->action == PROXY_FAULT_STOP_READING && f->after[0] != '\0' &&
		    strcmp(f->after, info->name) == 0 && counts(st)) {
			fault_cover(d, end);
			fault_stop_reading(st, d->now);
		} else if (f->action == PROXY_FAULT_ANSWER && strcmp(f->command, info->name) == 0 &&
			   counts(st)) {
			struct piece *p;
			char answer[TEXT_MAX];

			snprintf(answer, sizeof(answer), "%.*s %s %s%s%simaptap fault injected (%s)\r\n",
				 (int)(info->tag.len < 60 ? info->tag.len : 60),
				 (const char *)info->tag.p, f->bad ? "BAD" : "NO", f->code[0] ? "[" : "",
				 f->code, f->code[0] ? "] " : "", st->spec);
			if (strlen(answer) == sizeof(answer) - 1) /* cut: a line still ends */
				memcpy(answer + sizeof(answer) - 3, "\r\n", 3);
			fault_cover(d, u->offset);
			if (u->kind == IMAP_UNIT_LITERAL_HEAD &&
			    ((u->flags & IMAP_UNIT_LITERAL_NONSYNC) || u->literal_len == 0)) {
				/* its literal comes unasked: swallow to the end of the line */
				p = fault_new_piece(d, end, fault_due(d, d->now));
				if (p == NULL)
					return;
				p->drop = true;
				fs->swallowing = true;
				fs->swallow_fault = st;
				snprintf(fs->swallow_answer, sizeof(fs->swallow_answer), "%s", answer);
				return;
			}
			p = fault_new_piece(d, end, fault_due(d, d->now));
			if (p == NULL)
				return;
			p->drop = true;
			p->after = AFTER_ANSWER;
			p->fault = st;
			snprintf(p->text, sizeof(p->text), "%s", answer);
			/* a synchronising literal refused before its "+": no bytes
			 * follow, which the framer learns once this unit is done */
			if (u->kind == IMAP_UNIT_LITERAL_HEAD) {
				d->cancel_literal = true;
				imap_framer_stop(d->framer);
			}
			return;
		}
	}
}

/* hide-capability: a whole server line with a capability list goes to the
 * client without the names. Returns true when it took the line. */
static bool hide_capabilities(struct fault_dir *d, const struct imap_unit *u)
{
	struct proxy_faults *fs = d->owner;
	size_t start, end;

	/* most lines hold no capability list: nothing to allocate for them */
	if (u->kind != IMAP_UNIT_LINE || u->len != u->wire_len || (u->flags & IMAP_UNIT_CONTINUED) ||
	    !imap_capability_list(u->data, u->len, &start, &end))
		return false;
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		uint8_t *out;
		size_t m;
		struct piece *p;

		if (st->f->action != PROXY_FAULT_HIDE_CAPABILITY)
			continue;
		out = malloc(u->len);
		if (out == NULL)
			return false;
		m = proxy_fault_hide(st->f, u->data, u->len, out);
		if (m == 0 || !counts(st)) {
			free(out);
			continue;
		}
		fault_cover(d, u->offset);
		p = fault_new_piece(d, u->offset + u->wire_len, fault_due(d, d->now));
		if (p == NULL) {
			free(out);
			return false;
		}
		p->drop = true;
		p->after = AFTER_REPLACE;
		p->fault = st;
		p->replace = (char *)out;
		p->replace_len = m;
		return true;
	}
	return false;
}

/* end-idle-early at the server's "+" to IDLE: without a duration the OK
 * goes right before the "+" (the order php-imap #258 recorded from
 * Exchange), else a timer starts. */
static void end_idle_at_continuation(struct fault_dir *d, const struct imap_unit *u,
				     struct fault_state *st)
{
	struct piece *p;

	if (st->f->duration > 0) {
		fault_idle_started(st, d->now);
		return;
	}
	fault_cover(d, u->offset);
	p = fault_new_piece(d, u->offset, fault_due(d, d->now));
	if (p == NULL)
		return;
	p->after = AFTER_END_IDLE;
	p->fault = st;
}

/* end-idle-early: the server's completion of the IDLE the proxy's DONE
 * ended. The client had its OK already: this one never reaches it, nor
 * the recording of its leg; the mark quotes it. */
static void drop_idle_completion(struct fault_dir *d, const struct imap_unit *u)
{
	struct proxy_faults *fs = d->owner;
	struct piece *p;

	fs->drop_tag_len = 0;
	fs->idle_tag_len = 0;
	fault_cover(d, u->offset);
	p = fault_new_piece(d, u->offset + u->wire_len, fault_due(d, d->now));
	if (p == NULL)
		return;
	p->drop = true;
	p->unseen = true;
	fault_mark_act(fs, fs->drop_fault, d->now, "drop", IMAP_S2C,
		       "dropping the server's '%.*s' (its completion of the IDLE the proxy's DONE "
		       "ended): the client had its OK from the proxy",
		       (int)(u->len < 120 ? (u->len >= 2 ? u->len - 2 : u->len) : 120),
		       (const char *)u->data);
}

static void server_unit(struct fault_dir *d, const struct imap_unit *u,
			const struct imap_line_info *info)
{
	struct proxy_faults *fs = d->owner;
	const uint64_t end = u->offset + u->wire_len;
	char a[32];

	if (hide_capabilities(d, u))
		return;

	if (info->cls == IMAP_LINE_CONTINUATION && fs->idle_tag_len > 0 && !fs->idle_plus) {
		fs->idle_plus = true;
		for (size_t i = 0; i < fs->count; i++) {
			struct fault_state *st = &fs->st[i];

			if (st->f->action == PROXY_FAULT_BYE && st->f->point == PROXY_FAULT_IDLE_FOR &&
			    counts(st)) {
				fault_idle_started(st, d->now);
				continue;
			}
			if (st->f->action == PROXY_FAULT_END_IDLE_EARLY && counts(st)) {
				end_idle_at_continuation(d, u, st);
				continue;
			}
			if (st->f->action != PROXY_FAULT_BYE ||
			    st->f->point != PROXY_FAULT_AFTER_IDLE_CONTINUATION || !counts(st))
				continue;
			st->done = true;
			d->cut_at = end;
			d->cut_fault = st;
			fault_cover(d, end);
			return;
		}
		return;
	}
	if (info->cls != IMAP_LINE_TAGGED)
		return;
	if (u->kind == IMAP_UNIT_LINE && tag_is(fs->drop_tag, fs->drop_tag_len, info->tag)) {
		drop_idle_completion(d, u);
		return;
	}
	if (tag_is(fs->auth_tag, fs->auth_tag_len, info->tag))
		fs->auth_tag_len = 0;
	if (tag_is(fs->compress_tag, fs->compress_tag_len, info->tag)) {
		fs->compress_tag_len = 0;
		if (info->status == IMAP_STATUS_OK) {
			fault_cover(d, end);
			lose_view(d);
		}
		return;
	}
	if (!tag_is(fs->idle_tag, fs->idle_tag_len, info->tag))
		return;
	fs->idle_tag_len = 0;
	if (!fs->idle_done)
		return;
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		struct piece *p;

		if (st->f->action != PROXY_FAULT_HOLD_IDLE_COMPLETION || !counts(st))
			continue;
		fault_cover(d, u->offset);
		if (d->now + st->f->duration > d->hold_until)
			d->hold_until = d->now + st->f->duration;
		p = fault_new_piece(d, end, fault_due(d, d->now));
		if (p == NULL)
			return;
		p->mark_release = true;
		p->fault = st;
		p->held_since = d->now;
		fault_mark_act(fs, st, d->now, "start", IMAP_S2C,
		     "holding the server's '%.*s' (the completion of IDLE after DONE) for %s",
		     (int)(u->len < 120 ? (u->len >= 2 ? u->len - 2 : u->len) : 120),
		     (const char *)u->data, fault_secs(a, sizeof(a), st->f->duration));
		return;
	}
}

/* A literal about to start at data: bye:in-literal picks its middle. */
static void literal_head(struct fault_dir *d, const struct imap_unit *u)
{
	struct proxy_faults *fs = d->owner;

	if (u->literal_len < 2 || d->cut_at > 0)
		return;
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		const struct proxy_fault *f = st->f;

		if (f->action != PROXY_FAULT_BYE || f->point != PROXY_FAULT_IN_LITERAL ||
		    (f->dir_set && f->dir != d->dir) || !counts(st))
			continue;
		st->done = true;
		d->cut_at = u->offset + u->wire_len + u->literal_len / 2;
		d->cut_fault = st;
		return;
	}
}

void fault_on_unit(void *ctx, const struct imap_unit *u)
{
	struct fault_dir *d = ctx;
	struct proxy_faults *fs = d->owner;
	struct imap_line_info info;

	if (u->kind == IMAP_UNIT_LITERAL_DATA)
		return;
	imap_classify(d->dir, u->data, u->len, (u->flags & IMAP_UNIT_CONTINUED) != 0,
		      fs->auth_tag_len > 0, &info);
	if (d->dir == IMAP_C2S)
		client_unit(d, u, &info);
	else
		server_unit(d, u, &info);
	if (u->kind == IMAP_UNIT_LITERAL_HEAD && d->framer != NULL && !fs->swallowing)
		literal_head(d, u);
}
