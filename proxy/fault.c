/* The fault engine: what --fault asks of a session's two streams. Bytes
 * taken from a sender wait in a queue of pieces, each released when its
 * time comes (delays, holds, splits, paced writes), dropped, or followed
 * by an answer or a BYE of the proxy's own; proxy/fault_view.c decides
 * from the IMAP lines which fault acts where. */
#include "proxy/fault.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/timefmt.h"
#include "proxy/fault_int.h"

static void pump(struct fault_dir *d, imap_time_us now);

void fault_mark_act(struct proxy_faults *fs, const struct fault_state *st, imap_time_us ts,
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

const char *fault_secs(char *buf, size_t size, imap_time_us us)
{
	return capture_format_duration(buf, size, us);
}

/* ---- pieces ---------------------------------------------------------- */

struct piece *fault_new_piece(struct fault_dir *d, uint64_t end, imap_time_us not_before)
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
imap_time_us fault_due(struct fault_dir *d, imap_time_us now)
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
void fault_cover(struct fault_dir *d, uint64_t end)
{
	struct piece *p;

	if (d->cut_done || end <= d->covered)
		return;
	if (d->cut_at > 0 && d->cut_at <= end && d->cut_at > d->covered) {
		p = fault_new_piece(d, d->cut_at, fault_due(d, d->now));
		if (p == NULL)
			return;
		p->after = AFTER_BYE;
		p->fault = d->cut_fault;
		snprintf(p->text, sizeof(p->text), "* BYE imaptap fault injected (%s)\r\n",
			 d->cut_fault->spec);
		d->cut_done = true;
		return;
	}
	p = fault_new_piece(d, end, fault_due(d, d->now));
	/* the literals and the rest of a command the fault answers */
	if (p != NULL && d->dir == IMAP_C2S && d->owner->swallowing)
		p->drop = true;
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

	fault_mark_act(fs, st, now, "inject", IMAP_S2C, "writing %s to the client: '%.*s'", what,
	     (int)(len >= 2 ? len - 2 : len), text);
	fs->host->inject(fs->ctx, text, len);
}

/* end-idle-early: the OK a server that ends IDLE by itself sends, and the
 * DONE that ends the IDLE the real server still runs; its own completion
 * of that IDLE is dropped when it comes (proxy/fault_view.c). */
static void end_idle(struct proxy_faults *fs, const struct fault_state *st, imap_time_us now)
{
	char text[TEXT_MAX];

	if (fs->idle_tag_len == 0 || fs->idle_done || st->off)
		return; /* the client ended it first */
	snprintf(text, sizeof(text), "%.*s OK imaptap fault injected (%s)\r\n", (int)fs->idle_tag_len,
		 fs->idle_tag, st->spec);
	if (strlen(text) == sizeof(text) - 1) /* cut: a line still ends */
		memcpy(text + sizeof(text) - 3, "\r\n", 3);
	inject(fs, st, text, now, "IDLE's completion, before any DONE,");
	fault_mark_act(fs, st, fs->host->now(), "inject", IMAP_C2S,
		       "writing DONE to the server, which still runs IDLE %.*s; its completion of it "
		       "will not reach the client", (int)fs->idle_tag_len, fs->idle_tag);
	fs->host->inject_server(fs->ctx, "DONE\r\n", 6);
	memcpy(fs->drop_tag, fs->idle_tag, fs->idle_tag_len);
	fs->drop_tag_len = fs->idle_tag_len;
	fs->drop_fault = st;
	fs->idle_done = true;
	fault_idle_over(fs);
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
			fault_mark_act(fs, p->fault, now, "release", d->dir,
			     "releasing the held completion after %s",
			     fault_secs(a, sizeof(a), now - p->held_since));
		if (p->unseen)
			evbuffer_drain(d->queue, (size_t)(p->end - d->out_off));
		else
			fs->host->release(fs->ctx, d->dir, p->origin, d->queue,
					  (size_t)(p->end - d->out_off), !p->drop);
		d->out_off = p->end;
		d->head++;
		released = true;
		if (p->after == AFTER_REPLACE) {
			fault_mark_act(fs, p->fault, now, "inject", IMAP_S2C,
			     "writing the capability list without what the fault hides, instead of "
			     "the server's");
			fs->host->inject(fs->ctx, p->replace, p->replace_len);
			free(p->replace);
			p->replace = NULL;
		} else if (p->after == AFTER_END_IDLE) {
			end_idle(fs, p->fault, now);
		} else if (p->after == AFTER_ANSWER) {
			inject(fs, p->fault, p->text, now, "the answer, instead of the server's");
		} else if (p->after == AFTER_BYE) {
			fs->host->flush(fs->ctx, d->dir);
			inject(fs, p->fault, p->text, now, "a BYE");
			fault_mark_act(fs, p->fault, now, "close", d->dir, "closing the session after the BYE");
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

/* bye-after-idle: the IDLE lasted its time. Still no DONE: the BYE the
 * server would send, then the close. */
static void on_idle_lasted(evutil_socket_t fd, short what, void *arg)
{
	struct fault_state *st = arg;
	struct proxy_faults *fs = st->owner;
	const struct proxy_fault_host *host = fs->host;
	void *ctx = fs->ctx;
	imap_time_us now = host->now();
	char text[TEXT_MAX];

	(void)fd;
	(void)what;
	if (fs->idle_tag_len == 0 || fs->idle_done || fs->closing)
		return;
	host->enter(ctx);
	snprintf(text, sizeof(text), "* BYE imaptap fault injected (%s)\r\n", st->spec);
	host->flush(ctx, IMAP_S2C);
	inject(fs, st, text, now, "a BYE");
	fault_mark_act(fs, st, now, "close", IMAP_S2C, "closing the session after the BYE");
	fs->closing = true;
	snprintf(fs->close_why, sizeof(fs->close_why), "fault %s", st->spec);
	event_active(fs->later, EV_TIMEOUT, 1);
	host->leave(ctx);
}

/* end-idle-early:D: the IDLE lasted D after its "+". Still no DONE: the
 * OK goes after everything the server sent before this instant. */
static void on_end_idle_due(evutil_socket_t fd, short what, void *arg)
{
	struct fault_state *st = arg;
	struct proxy_faults *fs = st->owner;
	struct fault_dir *d = &fs->d[IMAP_S2C];
	const struct proxy_fault_host *host = fs->host;
	void *ctx = fs->ctx;
	struct piece *p;

	(void)fd;
	(void)what;
	if (fs->idle_tag_len == 0 || fs->idle_done || fs->closing || st->off || d->cut_done)
		return;
	host->enter(ctx);
	d->now = host->now();
	d->origin = IMAP_ORIGIN_PEER;
	p = fault_new_piece(d, d->covered, fault_due(d, d->now));
	if (p != NULL) {
		p->after = AFTER_END_IDLE;
		p->fault = st;
	}
	pump(d, d->now);
	host->leave(ctx);
}

void fault_idle_over(struct proxy_faults *fs)
{
	for (size_t i = 0; i < fs->count; i++) {
		const struct proxy_fault *f = fs->st[i].f;

		if (fs->st[i].timer != NULL &&
		    ((f->action == PROXY_FAULT_BYE && f->point == PROXY_FAULT_IDLE_FOR) ||
		     f->action == PROXY_FAULT_END_IDLE_EARLY))
			evtimer_del(fs->st[i].timer);
	}
}

void fault_idle_started(struct fault_state *st, imap_time_us now)
{
	struct timeval tv = {.tv_sec = (time_t)(st->f->duration / IMAP_US_PER_S),
			     .tv_usec = (suseconds_t)(st->f->duration % IMAP_US_PER_S)};

	st->since = now;
	evtimer_add(st->timer, &tv);
}

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
	fault_mark_act(fs, st, now, "release", client ? IMAP_C2S : IMAP_S2C, "reading the %s again after %s",
	     client ? "client" : "server", fault_secs(a, sizeof(a), now - st->since));
	host->set_reading(ctx, client, true);
	host->leave(ctx);
}

void fault_stop_reading(struct fault_state *st, imap_time_us now)
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
	fault_mark_act(fs, st, now, "start", client ? IMAP_C2S : IMAP_S2C,
	     "not reading the %s for %s; what it sends waits in the socket", client ? "client" : "server",
	     fault_secs(a, sizeof(a), st->f->duration));
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
	/* max-connections acts before a session relays: none of its own */
	for (size_t i = 0; i < count; i++)
		n += (faults[i].session == 0 || faults[i].session == session) &&
		     faults[i].action != PROXY_FAULT_MAX_CONNECTIONS;
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

		if ((f->session != 0 && f->session != session) ||
		    f->action == PROXY_FAULT_MAX_CONNECTIONS)
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
		if (f->action == PROXY_FAULT_BYE && f->point == PROXY_FAULT_IDLE_FOR &&
		    (st->timer = evtimer_new(base, on_idle_lasted, st)) == NULL)
			goto fail;
		if (f->action == PROXY_FAULT_END_IDLE_EARLY && f->duration > 0 &&
		    (st->timer = evtimer_new(base, on_end_idle_due, st)) == NULL)
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
		fs->d[i].framer = imap_framer_new((enum imap_dir)i, 0, fault_on_unit, &fs->d[i]);
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
		for (size_t k = d->head; k < d->count; k++)
			free(d->pieces[k].replace);
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
		fault_mark_act(fs, st, now, "active", f->action == PROXY_FAULT_STOP_READING ? (f->read_client ? IMAP_C2S : IMAP_S2C)
					    : f->action == PROXY_FAULT_DELAY || f->action == PROXY_FAULT_SPLIT ? f->dir
					    : IMAP_S2C,
		     "%s", how);
		if (f->action == PROXY_FAULT_SPLIT && f->split.mode != IMAP_SPLIT_COALESCE)
			fs->host->set_split(fs->ctx, f->dir, &fs->d[f->dir].split);
		if (f->action == PROXY_FAULT_STOP_READING && f->after[0] == '\0')
			fault_stop_reading(st, now);
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
		fault_cover(d, imap_framer_offset(d->framer) - imap_framer_pending(d->framer));
	else
		fault_cover(d, d->in_off);
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
		fault_cover(d, d->in_off);
	pump(d, fs->host->now());
	event_active(fs->later, EV_TIMEOUT, 1);
}

bool proxy_faults_reading_stopped(const struct proxy_faults *fs, bool client)
{
	return fs->stopped[client];
}
