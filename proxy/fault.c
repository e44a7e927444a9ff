#include "proxy/fault.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/timefmt.h"
#include "imap/classify.h"
#include "imap/framer.h"

/* split:DIR:coalesce gathers what arrives within this window into one write */
#define COALESCE_WINDOW_US 20000
#define TAG_MAX 64
#define TEXT_MAX 200

/* What happens right after a piece is released. */
enum piece_after {
	AFTER_NONE,
	AFTER_ANSWER, /* write text (a tagged NO/BAD) to the client */
	AFTER_BYE,    /* write text (* BYE) to the client, then close */
};

/* A run of queued bytes, up to stream offset end, released together. */
struct piece {
	uint64_t end;
	imap_time_us not_before;
	enum imap_origin origin;
	bool drop;          /* observed, never passed on */
	bool mark_release;  /* a hold ends with this piece: say so first */
	enum piece_after after;
	const struct fault_state *fault; /* the fault behind after/mark_release */
	imap_time_us held_since;
	char text[TEXT_MAX];
};

/* One fault in this session. */
struct fault_state {
	const struct proxy_fault *f;
	char spec[128];
	unsigned seen;       /* occurrences of its trigger so far */
	bool done;           /* a one-time fault that acted */
	bool off;            /* stopped: COMPRESS took the IMAP view away */
	struct event *timer; /* stop-reading: when to read again */
	imap_time_us since;
	struct proxy_faults *owner;
};

struct fault_dir {
	struct proxy_faults *owner;
	enum imap_dir dir;
	struct evbuffer *queue;
	uint64_t in_off;    /* stream offset after the last byte taken */
	uint64_t out_off;   /* stream offset of the queue's first byte */
	uint64_t covered;   /* bytes up to here have a piece */
	struct piece *pieces;
	size_t head, count, cap;
	struct imap_framer *framer; /* NULL: no IMAP view (not needed, or lost) */
	imap_time_us delay;
	imap_time_us hold_until;
	bool coalesce;
	imap_time_us window_end;
	struct imap_split split;
	bool split_on;
	bool view_lost;     /* COMPRESS: the framer stops after this unit */
	bool cancel_literal; /* a refused synchronising literal: no bytes follow */
	uint64_t cut_at;    /* bye in-literal: where to cut; 0 none */
	const struct fault_state *cut_fault;
	bool cut_done;      /* nothing after the cut is ever released */
	bool eof;           /* the sender closed */
	bool eof_said;
	struct event *timer;
	/* set for the framer's callbacks during a take */
	imap_time_us now;
	enum imap_origin origin;
};

struct proxy_faults {
	struct event_base *base;
	const struct proxy_fault_host *host;
	void *ctx;
	unsigned session;
	struct fault_state st[PROXY_FAULTS_MAX];
	size_t count;
	struct fault_dir d[2];
	bool imap_view;
	/* the IMAP state the faults need */
	char idle_tag[TAG_MAX];
	size_t idle_tag_len;
	bool idle_done;
	bool idle_plus;
	char auth_tag[TAG_MAX];
	size_t auth_tag_len;
	char compress_tag[TAG_MAX];
	size_t compress_tag_len;
	/* a command being answered by the fault, over its literals */
	bool swallowing;
	const struct fault_state *swallow_fault;
	char swallow_answer[TEXT_MAX];
	bool closing;
	char close_why[TEXT_MAX];
	struct event *later; /* close and EOF, from a fresh loop turn */
	bool stopped[2];     /* reading stopped: [0] the server, [1] the client */
};

static void pump(struct fault_dir *d, imap_time_us now);

static void mark(struct proxy_faults *fs, const struct fault_state *st, imap_time_us ts,
		 const char *phase, enum imap_dir dir, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void mark(struct proxy_faults *fs, const struct fault_state *st, imap_time_us ts,
		 const char *phase, enum imap_dir dir, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	struct capture_fault_mark m = {
		.ts = ts,
		.action = proxy_fault_action_str(st->f->action),
		.phase = phase,
		.dir = dir,
		.spec = st->spec,
		.detail = detail,
	};

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	fs->host->mark(fs->ctx, &m);
}

static const char *secs(char *buf, size_t size, imap_time_us us)
{
	return capture_format_duration(buf, size, us);
}

/* ---- pieces ---------------------------------------------------------- */

static struct piece *new_piece(struct fault_dir *d, uint64_t end, imap_time_us not_before)
{
	struct piece *p;

	if (d->head > 0 && d->head == d->count) {
		d->head = d->count = 0;
	} else if (d->count == d->cap && d->head > 0) {
		memmove(d->pieces, d->pieces + d->head, (d->count - d->head) * sizeof(*p));
		d->count -= d->head;
		d->head = 0;
	}
	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct piece *grown = realloc(d->pieces, cap * sizeof(*p));

		if (grown == NULL)
			return NULL;
		d->pieces = grown;
		d->cap = cap;
	}
	p = &d->pieces[d->count++];
	memset(p, 0, sizeof(*p));
	p->end = end;
	p->origin = d->origin;
	/* released in order: never before the piece ahead */
	if (d->count - d->head > 1 && d->pieces[d->count - 2].not_before > not_before)
		not_before = d->pieces[d->count - 2].not_before;
	p->not_before = not_before;
	d->covered = end;
	return p;
}

/* When bytes taken at now may go. */
static imap_time_us due(struct fault_dir *d, imap_time_us now)
{
	imap_time_us t = now + d->delay;

	if (d->hold_until > t)
		t = d->hold_until;
	if (d->coalesce) {
		if (d->window_end <= now)
			d->window_end = now + COALESCE_WINDOW_US;
		if (d->window_end > t)
			t = d->window_end;
	}
	return t;
}

/* Gives the bytes up to end a piece (split at a pending cut). */
static void cover(struct fault_dir *d, uint64_t end)
{
	struct piece *p;

	if (d->cut_done || end <= d->covered)
		return;
	if (d->cut_at > 0 && d->cut_at <= end && d->cut_at > d->covered) {
		p = new_piece(d, d->cut_at, due(d, d->now));
		if (p == NULL)
			return;
		p->after = AFTER_BYE;
		p->fault = d->cut_fault;
		snprintf(p->text, sizeof(p->text), "* BYE imaptap fault injected (%s)\r\n",
			 d->cut_fault->spec);
		d->cut_done = true;
		return;
	}
	p = new_piece(d, end, due(d, d->now));
	/* the literals and the rest of a command the fault answers */
	if (p != NULL && d->dir == IMAP_C2S && d->owner->swallowing)
		p->drop = true;
}

/* ---- the IMAP view ----------------------------------------------------- */

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

static void stop_reading(struct fault_state *st, imap_time_us now);

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
		mark(fs, st, d->now, "off", d->dir,
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

			cover(d, u->offset);
			p = new_piece(d, end, due(d, d->now));
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
		cover(d, end);
		lose_view(d);
		return;
	}
	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		const struct proxy_fault *f = st->f;

		if (f->action == PROXY_FAULT_STOP_READING && f->after[0] != '\0' &&
		    strcmp(f->after, info->name) == 0 && counts(st)) {
			cover(d, end);
			stop_reading(st, d->now);
		} else if (f->action == PROXY_FAULT_ANSWER && strcmp(f->command, info->name) == 0 &&
			   counts(st)) {
			struct piece *p;
			char answer[TEXT_MAX];

			snprintf(answer, sizeof(answer), "%.*s %s imaptap fault injected (%s)\r\n",
				 (int)(info->tag.len < 100 ? info->tag.len : 100),
				 (const char *)info->tag.p, f->bad ? "BAD" : "NO", st->spec);
			cover(d, u->offset);
			if (u->kind == IMAP_UNIT_LITERAL_HEAD &&
			    ((u->flags & IMAP_UNIT_LITERAL_NONSYNC) || u->literal_len == 0)) {
				/* its literal comes unasked: swallow to the end of the line */
				p = new_piece(d, end, due(d, d->now));
				if (p == NULL)
					return;
				p->drop = true;
				fs->swallowing = true;
				fs->swallow_fault = st;
				snprintf(fs->swallow_answer, sizeof(fs->swallow_answer), "%s", answer);
				return;
			}
			p = new_piece(d, end, due(d, d->now));
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

static void server_unit(struct fault_dir *d, const struct imap_unit *u,
			const struct imap_line_info *info)
{
	struct proxy_faults *fs = d->owner;
	const uint64_t end = u->offset + u->wire_len;
	char a[32];

	if (info->cls == IMAP_LINE_CONTINUATION && fs->idle_tag_len > 0 && !fs->idle_plus) {
		fs->idle_plus = true;
		for (size_t i = 0; i < fs->count; i++) {
			struct fault_state *st = &fs->st[i];

			if (st->f->action != PROXY_FAULT_BYE ||
			    st->f->point != PROXY_FAULT_AFTER_IDLE_CONTINUATION || !counts(st))
				continue;
			st->done = true;
			d->cut_at = end;
			d->cut_fault = st;
			cover(d, end);
			return;
		}
		return;
	}
	if (info->cls != IMAP_LINE_TAGGED)
		return;
	if (tag_is(fs->auth_tag, fs->auth_tag_len, info->tag))
		fs->auth_tag_len = 0;
	if (tag_is(fs->compress_tag, fs->compress_tag_len, info->tag)) {
		fs->compress_tag_len = 0;
		if (info->status == IMAP_STATUS_OK) {
			cover(d, end);
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
		cover(d, u->offset);
		if (d->now + st->f->duration > d->hold_until)
			d->hold_until = d->now + st->f->duration;
		p = new_piece(d, end, due(d, d->now));
		if (p == NULL)
			return;
		p->mark_release = true;
		p->fault = st;
		p->held_since = d->now;
		mark(fs, st, d->now, "start", IMAP_S2C,
		     "holding the server's '%.*s' (the completion of IDLE after DONE) for %s",
		     (int)(u->len < 120 ? (u->len >= 2 ? u->len - 2 : u->len) : 120),
		     (const char *)u->data, secs(a, sizeof(a), st->f->duration));
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

static void on_unit(void *ctx, const struct imap_unit *u)
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

/* ---- releasing --------------------------------------------------------- */

static void later(struct proxy_faults *fs)
{
	if (fs->closing) {
		fs->host->close(fs->ctx, fs->close_why);
		return; /* the session, and fs with it, may be gone */
	}
	for (int i = 0; i < 2; i++) {
		struct fault_dir *d = &fs->d[i];
		struct fault_dir *other = &fs->d[!i];

		if (d->eof && !d->eof_said && evbuffer_get_length(d->queue) == 0) {
			d->eof_said = true;
			/* the other direction's turn comes next round */
			if (other->eof && !other->eof_said && evbuffer_get_length(other->queue) == 0)
				event_active(fs->later, EV_TIMEOUT, 1);
			fs->host->eof(fs->ctx, d->dir);
			return; /* the session, and fs with it, may be gone */
		}
	}
}

/* The host's frame around a callback of ours: nothing of fs is touched
 * after leave, which may free it. */
static void on_later(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_faults *fs = arg;
	const struct proxy_fault_host *host = fs->host;
	void *ctx = fs->ctx;

	(void)fd;
	(void)what;
	host->enter(ctx);
	later(fs);
	host->leave(ctx);
}

static void inject(struct proxy_faults *fs, const struct fault_state *st, const char *text,
		   imap_time_us now, const char *what)
{
	size_t len = strlen(text);

	mark(fs, st, now, "inject", IMAP_S2C, "writing %s to the client: '%.*s'", what,
	     (int)(len >= 2 ? len - 2 : len), text);
	fs->host->inject(fs->ctx, text, len);
}

static void pump(struct fault_dir *d, imap_time_us now)
{
	struct proxy_faults *fs = d->owner;
	bool released = false;
	char a[32];

	while (!fs->closing && d->head < d->count) {
		struct piece *p = &d->pieces[d->head];

		if (p->not_before > now) {
			imap_time_us wait = p->not_before - now;
			struct timeval tv = {(time_t)(wait / IMAP_US_PER_S), (suseconds_t)(wait % IMAP_US_PER_S)};

			evtimer_add(d->timer, &tv);
			break;
		}
		if (p->mark_release)
			mark(fs, p->fault, now, "release", d->dir,
			     "releasing the held completion after %s",
			     secs(a, sizeof(a), now - p->held_since));
		fs->host->release(fs->ctx, d->dir, p->origin, d->queue, (size_t)(p->end - d->out_off),
				  !p->drop);
		d->out_off = p->end;
		d->head++;
		released = true;
		if (p->after == AFTER_ANSWER) {
			inject(fs, p->fault, p->text, now, "the answer, instead of the server's");
		} else if (p->after == AFTER_BYE) {
			fs->host->flush(fs->ctx, d->dir);
			inject(fs, p->fault, p->text, now, "a BYE");
			mark(fs, p->fault, now, "close", d->dir, "closing the session after the BYE");
			fs->closing = true;
			snprintf(fs->close_why, sizeof(fs->close_why), "fault %s", p->fault->spec);
			event_active(fs->later, EV_TIMEOUT, 1);
			return;
		}
	}
	if (d->head == d->count)
		d->head = d->count = 0;
	if (released)
		fs->host->flush(fs->ctx, d->dir);
	if (d->eof && !d->eof_said && evbuffer_get_length(d->queue) == 0)
		event_active(fs->later, EV_TIMEOUT, 1);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct fault_dir *d = arg;
	const struct proxy_fault_host *host = d->owner->host;
	void *ctx = d->owner->ctx;

	(void)fd;
	(void)what;
	host->enter(ctx);
	pump(d, host->now());
	host->leave(ctx);
}

/* ---- stop-reading -------------------------------------------------------- */

static void on_read_again(evutil_socket_t fd, short what, void *arg)
{
	struct fault_state *st = arg;
	struct proxy_faults *fs = st->owner;
	const struct proxy_fault_host *host = fs->host;
	void *ctx = fs->ctx;
	const bool client = st->f->read_client;
	imap_time_us now = host->now();
	char a[32];

	(void)fd;
	(void)what;
	host->enter(ctx);
	fs->stopped[client] = false;
	mark(fs, st, now, "release", client ? IMAP_C2S : IMAP_S2C, "reading the %s again after %s",
	     client ? "client" : "server", secs(a, sizeof(a), now - st->since));
	host->set_reading(ctx, client, true);
	host->leave(ctx);
}

static void stop_reading(struct fault_state *st, imap_time_us now)
{
	struct proxy_faults *fs = st->owner;
	const bool client = st->f->read_client;
	struct timeval tv = {(time_t)(st->f->duration / IMAP_US_PER_S),
			     (suseconds_t)(st->f->duration % IMAP_US_PER_S)};
	char a[32];

	if (fs->stopped[client] || st->timer == NULL)
		return;
	fs->stopped[client] = true;
	st->since = now;
	mark(fs, st, now, "start", client ? IMAP_C2S : IMAP_S2C,
	     "not reading the %s for %s; what it sends waits in the socket", client ? "client" : "server",
	     secs(a, sizeof(a), st->f->duration));
	fs->host->set_reading(fs->ctx, client, false);
	evtimer_add(st->timer, &tv);
}

/* ---- the API ------------------------------------------------------------- */

struct proxy_faults *proxy_faults_new(struct event_base *base, const struct proxy_fault *faults,
				      size_t count, unsigned session,
				      const struct proxy_fault_host *host, void *ctx, bool *none_r)
{
	struct proxy_faults *fs;
	size_t n = 0;

	*none_r = false;
	for (size_t i = 0; i < count; i++)
		n += faults[i].session == 0 || faults[i].session == session;
	if (n == 0) {
		*none_r = true;
		return NULL;
	}
	fs = calloc(1, sizeof(*fs));
	if (fs == NULL)
		return NULL;
	fs->base = base;
	fs->host = host;
	fs->ctx = ctx;
	fs->session = session;
	fs->later = event_new(base, -1, 0, on_later, fs);
	for (int i = 0; i < 2; i++) {
		struct fault_dir *d = &fs->d[i];

		d->owner = fs;
		d->dir = (enum imap_dir)i;
		d->queue = evbuffer_new();
		d->timer = evtimer_new(base, on_timer, d);
		if (d->queue == NULL || d->timer == NULL)
			goto fail;
	}
	for (size_t i = 0; i < count && fs->count < PROXY_FAULTS_MAX; i++) {
		const struct proxy_fault *f = &faults[i];
		struct fault_state *st;

		if (f->session != 0 && f->session != session)
			continue;
		st = &fs->st[fs->count++];
		st->f = f;
		st->owner = fs;
		proxy_fault_spec_str(f, st->spec, sizeof(st->spec));
		if (proxy_fault_needs_imap(f))
			fs->imap_view = true;
		if (f->action == PROXY_FAULT_STOP_READING &&
		    (st->timer = evtimer_new(base, on_read_again, st)) == NULL)
			goto fail;
		if (f->action == PROXY_FAULT_DELAY && f->duration > fs->d[f->dir].delay)
			fs->d[f->dir].delay = f->duration;
		if (f->action == PROXY_FAULT_SPLIT) {
			if (f->split.mode == IMAP_SPLIT_COALESCE) {
				fs->d[f->dir].coalesce = true;
			} else {
				fs->d[f->dir].split = f->split;
				fs->d[f->dir].split_on = true;
			}
		}
	}
	if (fs->later == NULL)
		goto fail;
	for (int i = 0; fs->imap_view && i < 2; i++) {
		fs->d[i].framer = imap_framer_new((enum imap_dir)i, 0, on_unit, &fs->d[i]);
		if (fs->d[i].framer == NULL)
			goto fail;
	}
	return fs;
fail:
	proxy_faults_free(&fs);
	return NULL;
}

void proxy_faults_free(struct proxy_faults **faults)
{
	struct proxy_faults *fs = *faults;

	if (fs == NULL)
		return;
	*faults = NULL;
	for (size_t i = 0; i < fs->count; i++)
		if (fs->st[i].timer != NULL)
			event_free(fs->st[i].timer);
	for (int i = 0; i < 2; i++) {
		struct fault_dir *d = &fs->d[i];

		if (d->timer != NULL)
			event_free(d->timer);
		if (d->queue != NULL)
			evbuffer_free(d->queue);
		imap_framer_free(&d->framer);
		free(d->pieces);
	}
	if (fs->later != NULL)
		event_free(fs->later);
	free(fs);
}

void proxy_faults_start(struct proxy_faults *fs, imap_time_us now)
{
	char how[300];

	for (size_t i = 0; i < fs->count; i++) {
		struct fault_state *st = &fs->st[i];
		const struct proxy_fault *f = st->f;

		proxy_fault_explain(f, how, sizeof(how));
		mark(fs, st, now, "active", f->action == PROXY_FAULT_STOP_READING ? (f->read_client ? IMAP_C2S : IMAP_S2C)
					    : f->action == PROXY_FAULT_DELAY || f->action == PROXY_FAULT_SPLIT ? f->dir
					    : IMAP_S2C,
		     "%s", how);
		if (f->action == PROXY_FAULT_SPLIT && f->split.mode != IMAP_SPLIT_COALESCE)
			fs->host->set_split(fs->ctx, f->dir, &fs->d[f->dir].split);
		if (f->action == PROXY_FAULT_STOP_READING && f->after[0] == '\0')
			stop_reading(st, now);
	}
}

/* Feeds the framer; returns the bytes it took (all of them, unless the
 * IMAP view ended: the framer is then gone and the rest goes raw). */
static size_t feed(struct fault_dir *d, const uint8_t *data, size_t len)
{
	size_t done = 0;

	while (done < len && d->framer != NULL) {
		done += imap_framer_feed(d->framer, data + done, len - done);
		if (d->view_lost) {
			imap_framer_free(&d->framer); /* COMPRESS: the rest goes raw */
			break;
		}
		if (d->cancel_literal) {
			d->cancel_literal = false;
			imap_framer_cancel_literal(d->framer);
		}
	}
	return done;
}

void proxy_faults_take(struct proxy_faults *fs, enum imap_dir dir, enum imap_origin origin,
		       struct evbuffer *from, size_t len, imap_time_us now)
{
	struct fault_dir *d = &fs->d[dir];
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr pos;
	size_t left = len;

	if (fs->closing || d->cut_done) {
		evbuffer_drain(from, len); /* nothing after the cut goes anywhere */
		return;
	}
	d->now = now;
	d->origin = origin;
	evbuffer_ptr_set(from, &pos, 0, EVBUFFER_PTR_SET);
	while (d->framer != NULL && left > 0) {
		int n = evbuffer_peek(from, (ev_ssize_t)left, &pos, vec, 16);
		size_t done = 0;

		if (n <= 0)
			break;
		for (int i = 0; i < n && i < 16 && done < left && d->framer != NULL; i++) {
			size_t piece = vec[i].iov_len < left - done ? vec[i].iov_len : left - done;

			done += feed(d, vec[i].iov_base, piece);
		}
		left -= done;
		if (d->framer == NULL || left == 0 ||
		    evbuffer_ptr_set(from, &pos, done, EVBUFFER_PTR_ADD) < 0)
			break;
	}
	evbuffer_remove_buffer(from, d->queue, len);
	d->in_off += len;
	if (d->framer != NULL)
		cover(d, imap_framer_offset(d->framer) - imap_framer_pending(d->framer));
	else
		cover(d, d->in_off);
	pump(d, now);
}

size_t proxy_faults_queued(const struct proxy_faults *fs, enum imap_dir dir)
{
	return evbuffer_get_length(fs->d[dir].queue);
}

void proxy_faults_eof(struct proxy_faults *fs, enum imap_dir dir)
{
	struct fault_dir *d = &fs->d[dir];

	d->eof = true;
	/* a partial line at the end goes as it is */
	if (d->framer != NULL)
		cover(d, d->in_off);
	pump(d, fs->host->now());
	event_active(fs->later, EV_TIMEOUT, 1);
}

bool proxy_faults_reading_stopped(const struct proxy_faults *fs, bool client)
{
	return fs->stopped[client];
}
