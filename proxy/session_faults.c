/* What --fault asks of a session: bytes held and released, bytes of its
 * own, reading stopped, writes re-split, a close, and the marks. */
#include "proxy/session_int.h"

/* ---- what the session does for its faults (proxy/fault.h) ---- */

static enum side receiver(enum imap_dir dir)
{
	return dir == IMAP_C2S ? SIDE_UPSTREAM : SIDE_CLIENT;
}

static void fault_release(void *ctx, enum imap_dir dir, enum imap_origin origin,
			  struct evbuffer *from, size_t len, bool forward)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *dst = s->stream[receiver(dir)];

	if (len == 0)
		return;
	session_observe(s, dir, from, len, origin, session_now(s));
	if (forward && dst != NULL)
		evbuffer_remove_buffer(from, proxy_stream_output(dst), len);
	else
		evbuffer_drain(from, len);
	session_arm_rules(s, session_now(s));
}

static void fault_inject(void *ctx, const char *text, size_t len)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *client = s->stream[SIDE_CLIENT];

	/* plain text inside a compressed stream would corrupt it */
	if (client == NULL || imap_conv_compressed(observed_conv(s->observed)))
		return;
	observed_feed(s->observed, IMAP_S2C, session_now(s), IMAP_ORIGIN_PROXY, (const uint8_t *)text, len);
	evbuffer_add(proxy_stream_output(client), text, len);
	proxy_stream_flush(client);
}

static void fault_inject_server(void *ctx, const char *text, size_t len)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *upstream = s->stream[SIDE_UPSTREAM];

	/* not on the client leg, so not observed: the fault's mark says it */
	if (upstream == NULL || imap_conv_compressed(observed_conv(s->observed)))
		return;
	evbuffer_add(proxy_stream_output(upstream), text, len);
	proxy_stream_flush(upstream);
}

static void fault_flush(void *ctx, enum imap_dir dir)
{
	struct proxy_session *s = ctx;
	enum side dst = receiver(dir), src = !dst;

	if (s->stream[dst] != NULL)
		proxy_stream_flush(s->stream[dst]);
	if (s->state == SESSION_RELAYING && s->throttled[src] &&
	    session_queued_toward(s, dst) <= PROXY_HIGH_WATER / 2) {
		s->throttled[src] = 0;
		if (s->stream[dst] != NULL)
			proxy_stream_set_low_water(s->stream[dst], 0);
		if (session_may_read(s, src))
			proxy_stream_set_reading(s->stream[src], true);
	}
	imap_conv_trim(observed_conv(s->observed));
	observed_flush(s->observed);
}

static void fault_set_reading(void *ctx, bool client, bool on)
{
	struct proxy_session *s = ctx;
	enum side side = client ? SIDE_CLIENT : SIDE_UPSTREAM;

	if (s->stream[side] == NULL)
		return;
	if (!on)
		proxy_stream_set_reading(s->stream[side], false);
	else if (s->state == SESSION_RELAYING && session_may_read(s, side))
		proxy_stream_set_reading(s->stream[side], true);
}

static void fault_set_split(void *ctx, enum imap_dir dir, struct imap_split *split)
{
	struct proxy_session *s = ctx;
	struct proxy_stream *dst = s->stream[receiver(dir)];

	if (dst != NULL)
		proxy_stream_set_split(dst, split);
}

static void fault_eof(void *ctx, enum imap_dir dir)
{
	struct proxy_session *s = ctx;
	enum side side = dir == IMAP_C2S ? SIDE_CLIENT : SIDE_UPSTREAM;

	if (!s->eof_deferred[side])
		return;
	s->eof_deferred[side] = false;
	if (s->state == SESSION_CLOSING)
		session_reap(s);
	else
		session_pass_eof(s, side);
}

static void fault_close(void *ctx, const char *why)
{
	struct proxy_session *s = ctx;

	session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "%s", why);
	session_finish(s);
}

static void fault_mark(void *ctx, const struct capture_fault_mark *mark)
{
	struct proxy_session *s = ctx;

	observed_fault(s->observed, mark);
	observed_flush(s->observed);
}

static void fault_enter(void *ctx)
{
	session_enter(ctx);
}

static void fault_leave(void *ctx)
{
	session_leave(ctx);
}

const struct proxy_fault_host session_fault_host = {
	.release = fault_release,
	.inject = fault_inject,
	.inject_server = fault_inject_server,
	.flush = fault_flush,
	.set_reading = fault_set_reading,
	.set_split = fault_set_split,
	.eof = fault_eof,
	.close = fault_close,
	.mark = fault_mark,
	.enter = fault_enter,
	.leave = fault_leave,
	.now = proxy_now,
};

bool session_over_connection_limit(struct proxy_session *s)
{
	const struct proxy_config *config = s->env->config;
	static const char bye[] = "* BYE [ALERT] Too many simultaneous connections. (Failure)\r\n";

	for (size_t i = 0; i < config->fault_count; i++) {
		const struct proxy_fault *f = &config->faults[i];
		char spec[64], detail[160];
		struct capture_fault_mark mark = {.action = "max-connections", .dir = IMAP_S2C,
						  .spec = spec, .detail = detail};

		if (f->action != PROXY_FAULT_MAX_CONNECTIONS || atomic_load(&s->set->shared->open) <= f->limit)
			continue;
		proxy_fault_spec_str(f, spec, sizeof(spec));
		snprintf(detail, sizeof(detail), "%u session(s) open with this one, at most %u: the "
			 "upstream is not asked, the client is told * BYE [ALERT]", atomic_load(&s->set->shared->open),
			 f->limit);
		mark.ts = session_now(s);
		mark.phase = "inject";
		fault_mark(s, &mark);
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "fault %s", spec);
		session_refuse(s, bye);
		return true;
	}
	return false;
}

void session_fault_hide_greeting(struct proxy_session *s)
{
	const struct proxy_config *config = s->env->config;
	size_t len = evbuffer_get_length(s->greeting);
	uint8_t *edited;

	if (len == 0 || (edited = malloc(len)) == NULL)
		return;
	for (size_t i = 0; i < config->fault_count; i++) {
		const struct proxy_fault *f = &config->faults[i];
		char spec[128];
		struct capture_fault_mark mark = {.action = "hide-capability", .phase = "inject",
						  .dir = IMAP_S2C, .spec = spec,
						  .detail = "writing the greeting's capability list without "
							    "what the fault hides"};
		size_t m;

		if (f->action != PROXY_FAULT_HIDE_CAPABILITY || (f->session != 0 && f->session != s->id))
			continue;
		m = proxy_fault_hide(f, evbuffer_pullup(s->greeting, -1), len, edited);
		if (m == 0)
			continue;
		proxy_fault_spec_str(f, spec, sizeof(spec));
		mark.ts = session_now(s);
		fault_mark(s, &mark);
		evbuffer_drain(s->greeting, len);
		evbuffer_add(s->greeting, edited, m);
		len = m;
	}
	free(edited);
}
