/* The rules timer of a session and the peers that stop reading: one
 * timer armed for the earliest time a rule could fire, and a look every
 * quarter second at outputs that do not drain. */
#include "proxy/session_int.h"

/* While bytes may wait toward a peer, look every quarter second whether
 * it still reads. */
#define READING_CHECK_US 250000

/* The kernel's view goes first: with an autotuned send buffer of
 * megabytes, the proxy's own writes go on long after the peer stopped
 * reading; what the peer acknowledges does not. pending grows by what the
 * kernel still holds; written becomes what the peer acknowledged. */
static void kernel_view(struct proxy_session *s, enum side side, const struct proxy_stream *st,
			size_t *pending, uint64_t *written)
{
	uint64_t app_written = *written, acked;
	size_t unsent;

	if (!proxy_stream_peer_progress(st, &acked, &unsent))
		return;
	*pending += unsent;
	*written = acked;
	if (*pending == 0)
		s->written_drained[side] = app_written;
}

/* Nothing written toward side since the kernel last held nothing for it,
 * and nothing queued: no byte can be waiting there. */
static bool all_delivered(const struct proxy_session *s, enum side side)
{
	struct proxy_stream *st = s->stream[side];

	return evbuffer_get_length(proxy_stream_output(st)) == 0 &&
	       proxy_stream_written(st) == s->written_drained[side];
}

/* A side whose output holds bytes and whose written count has not moved
 * since the last look is not reading. */
static void check_reading(struct proxy_session *s, enum side side, imap_time_us now)
{
	struct proxy_stream *st = s->stream[side];
	enum imap_dir toward = side == SIDE_CLIENT ? IMAP_S2C : IMAP_C2S;
	size_t pending;
	uint64_t written;

	if (st == NULL)
		return;
	/* an idle session costs no system call */
	if (all_delivered(s, side)) {
		pending = 0;
		written = s->seen_written[side];
	} else {
		pending = evbuffer_get_length(proxy_stream_output(st));
		written = proxy_stream_written(st);
		kernel_view(s, side, st, &pending, &written);
	}
	if (pending == 0 || written != s->seen_written[side] || s->progress_at[side] == 0) {
		s->seen_written[side] = written;
		s->progress_at[side] = now;
		if (s->blocked[side]) {
			s->blocked[side] = false;
			imap_conv_blocked(observed_conv(s->observed), toward, -1, 0, now);
			observed_flow(s->observed, now, toward, false, 0);
		}
		return;
	}
	/* not reading from the first look that saw no progress: the instant
	 * the capture's zero window carries, so analyze waits from the same
	 * time */
	if (!s->blocked[side]) {
		observed_flow(s->observed, now, toward, true, pending);
		s->blocked_at[side] = now;
	}
	s->blocked[side] = true;
	imap_conv_blocked(observed_conv(s->observed), toward, s->blocked_at[side], pending, now);
}

void session_watch_last_look(struct proxy_session *s, enum side side, imap_time_us now)
{
	check_reading(s, side, now);
}

static bool may_be_waiting(struct proxy_session *s, enum side side)
{
	return s->stream[side] != NULL && (s->blocked[side] || !all_delivered(s, side));
}

/* One timer per session, armed for the earliest time a rule could fire
 * (or a peer be found not reading): an idle session costs nothing until
 * then, however many there are. Armed earlier than needed is harmless: it
 * looks and arms again. */
void session_arm_rules(struct proxy_session *s, imap_time_us now)
{
	imap_time_us at;
	struct timeval tv;

	if (s->rules_timer == NULL || s->state != SESSION_RELAYING)
		return;
	at = imap_conv_next_deadline(observed_conv(s->observed));
	if (may_be_waiting(s, SIDE_CLIENT) || may_be_waiting(s, SIDE_UPSTREAM)) {
		if (at < 0 || now + READING_CHECK_US < at)
			at = now + READING_CHECK_US;
	}
	if (at < 0 || (s->rules_at >= 0 && s->rules_at <= at))
		return;
	if (at < now)
		at = now;
	tv.tv_sec = (time_t)((at - now) / 1000000);
	tv.tv_usec = (suseconds_t)((at - now) % 1000000);
	evtimer_add(s->rules_timer, &tv);
	s->rules_at = at;
}

void session_on_rules_timer(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_session *s = arg;
	imap_time_us now;

	(void)fd;
	(void)what;
	s->rules_at = -1;
	if (s->state != SESSION_RELAYING)
		return;
	session_enter(s);
	now = session_now(s);
	check_reading(s, SIDE_CLIENT, now);
	check_reading(s, SIDE_UPSTREAM, now);
	imap_conv_tick(observed_conv(s->observed), now);
	observed_flush(s->observed);
	session_arm_rules(s, now);
	session_leave(s);
}
