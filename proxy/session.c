/* One relayed session: a client stream, an upstream stream, and the
 * conversation observer between them.
 *
 * Bytes read from one side are shown to the observer, then moved whole to
 * the other side's output (evbuffer chains, no copy, no change) and written
 * at once. When more than PROXY_HIGH_WATER wait toward a peer, reading the
 * other side stops until that queue is half drained (le-proxy's pattern).
 * A FIN from one side is passed on once what is queued for the other side
 * has been written; a reset or an error ends the session after the other
 * side is flushed. */
#include "proxy/session_int.h"

#include "net/proxy_header.h"

static const enum capture_side side_party[2] = {CAPTURE_SIDE_CLIENT, CAPTURE_SIDE_SERVER};

static void drained(struct proxy_session *s, enum side side);

static void on_observation(void *ctx, const struct imap_observation *obs)
{
	struct proxy_session *s = ctx;
	const struct imap_completion *c = obs->completion;

	/* authenticated: LOGIN or AUTHENTICATE answered OK, or a greeting
	 * that says so (PREAUTH); capability lists are edited only before */
	if (c != NULL && c->status == IMAP_STATUS_OK &&
	    (c->keyword == IMAP_KW_LOGIN || c->keyword == IMAP_KW_AUTHENTICATE))
		s->authenticated = 1;
	if (obs->dir == IMAP_S2C && obs->info != NULL && obs->info->cls == IMAP_LINE_UNTAGGED &&
	    obs->info->status == IMAP_STATUS_PREAUTH)
		s->authenticated = 1;
	if (!s->observing)
		session_arm_rules(s, obs->ts);
}

/* The first word on how the session ends is the one that stands. */

void session_set_closed_by(struct proxy_session *s, enum capture_side by, enum capture_end end,
			  const char *fmt, ...)
{
	va_list ap;

	if (s->closed)
		return;
	s->closed = true;
	s->closed_by = by;
	s->end = end;
	va_start(ap, fmt);
	if (vasprintf(&s->reason, fmt, ap) < 0)
		s->reason = NULL; /* out of memory: "closed" */
	else if (strlen(s->reason) > 191)
		s->reason[191] = '\0'; /* as long as a close event ever said */
	va_end(ap);
}

void session_close_side(struct proxy_session *s, enum side side)
{
	/* a peer found not reading may have read everything since the last
	 * look: a last one, before its stream is gone */
	if (s->blocked[side] && s->stream[side] != NULL && s->observed != NULL)
		session_watch_last_look(s, side, session_now(s));
	session_wire_close(s, side);
	proxy_stream_free(&s->stream[side]);
}

static void session_release(struct proxy_session *s);

void session_enter(struct proxy_session *s)
{
	s->frames++;
}

void session_leave(struct proxy_session *s)
{
	struct capture_lock *lock = s->set->shared->lock;
	bool held;

	if (--s->frames > 0)
		return;
	held = s->holds_outputs;
	s->holds_outputs = false;
	if (s->doomed)
		session_release(s); /* under the lock still: it writes the close */
	if (held)
		capture_lock_release(lock);
}

imap_time_us session_now(struct proxy_session *s)
{
	struct capture_lock *lock = s->set->shared->lock;

	if (lock != NULL && !s->holds_outputs && s->frames > 0) {
		capture_lock_acquire(lock);
		s->holds_outputs = true;
	}
	return proxy_now();
}

void session_outputs_done(struct proxy_session *s)
{
	if (s->holds_outputs) {
		s->holds_outputs = false;
		capture_lock_release(s->set->shared->lock);
	}
}

/* The session is over; freed now, or when the callback it ended in
 * returns. */
static void session_free(struct proxy_session *s)
{
	if (s->frames > 0) {
		s->doomed = true;
		return;
	}
	session_release(s);
}

static void session_release(struct proxy_session *s)
{
	const struct session_env *p = s->env;
	struct session_shared *shared = s->set->shared;
	struct capture_close_info close = {
		.id = s->id,
		.ts = 0,
		.opened = s->info.ts,
		.by = s->closed ? s->closed_by : CAPTURE_SIDE_PROXY,
		.end = s->closed ? s->end : CAPTURE_END_ERROR,
		.reason = s->closed && s->reason != NULL ? s->reason : "closed",
	};

	/* outside any callback (a shutdown): the close is written under the
	 * lock all the same */
	capture_lock_acquire(shared->lock);
	close.ts = proxy_now();
	session_close_side(s, SIDE_CLIENT);
	session_close_side(s, SIDE_UPSTREAM);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->rules_timer != NULL)
		event_free(s->rules_timer);
	proxy_faults_free(&s->faults);
	/* with --route, a session that ended before its ClientHello is shown
	 * on the default route */
	session_open_observed(s);
	close.opened = s->info.ts;
	observed_close(&s->observed, &close);
	proxy_route_free(&s->own_route);
	free(s->pending_bye);
	free(s->proxy_header);
	free(s->tls_caps);
	free(s->client_sni);
	free(s->reason);
	for (int i = 0; i < 2; i++) {
		imap_framer_free(&s->lines[i].framer);
		free(s->lines[i].action_line);
	}
	if (s->greeting != NULL)
		evbuffer_free(s->greeting);
	TAILQ_REMOVE(&s->set->all, s, link);
	s->set->count--;
	atomic_fetch_sub(&shared->open, 1);
	free(s);
	capture_lock_release(shared->lock);
	p->gone(p->owner);
}

/* Closes drained sides of a closing session. Returns 1 when the session
 * is gone. */
int session_reap(struct proxy_session *s)
{
	for (int i = 0; i < 2; i++)
		if (s->stream[i] != NULL && proxy_stream_pending(s->stream[i]) == 0)
			session_close_side(s, (enum side)i);
	if (s->stream[0] == NULL && s->stream[1] == NULL) {
		session_free(s);
		return 1;
	}
	return 0;
}

void session_arm_timer(struct proxy_session *s, unsigned seconds)
{
	struct timeval tv = {(time_t)seconds, 0};

	if (s->timer == NULL)
		s->timer = evtimer_new(s->env->base, session_on_timer, s);
	if (s->timer != NULL)
		evtimer_add(s->timer, &tv);
}

/* Stops reading both sides, flushes what is queued and closes. Returns 1
 * when the session is gone. */
int session_finish(struct proxy_session *s)
{
	s->state = SESSION_CLOSING;
	for (int i = 0; i < 2; i++) {
		if (s->stream[i] == NULL)
			continue;
		proxy_stream_set_reading(s->stream[i], false);
		proxy_stream_set_low_water(s->stream[i], 0);
		proxy_stream_flush(s->stream[i]);
	}
	if (session_reap(s))
		return 1;
	session_arm_timer(s, s->env->config->linger_s);
	return 0;
}

/* Shows the first len bytes of input to the conversation. */
void session_observe(struct proxy_session *s, enum imap_dir dir, struct evbuffer *input,
		    size_t len, enum imap_origin origin, imap_time_us ts)
{
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr pos;
	size_t left = len;

	evbuffer_ptr_set(input, &pos, 0, EVBUFFER_PTR_SET);
	s->observing = true;
	while (left > 0) {
		int n = evbuffer_peek(input, (ev_ssize_t)left, &pos, vec, 16);
		size_t done = 0;

		if (n <= 0)
			break;
		if (n > 16)
			n = 16;
		for (int i = 0; i < n && done < left; i++) {
			size_t chunk = vec[i].iov_len < left - done ? vec[i].iov_len : left - done;

			observed_feed(s->observed, dir, ts, origin, vec[i].iov_base, chunk);
			done += chunk;
		}
		left -= done;
		if (left > 0 && evbuffer_ptr_set(input, &pos, done, EVBUFFER_PTR_ADD) < 0)
			break;
	}
	s->observing = false;
	session_arm_rules(s, ts);
}

/* Bytes waiting to reach side: its output, and what a fault still holds. */
size_t session_queued_toward(struct proxy_session *s, enum side side)
{
	size_t n = s->stream[side] != NULL ? evbuffer_get_length(proxy_stream_output(s->stream[side]))
					   : 0;

	if (s->faults != NULL)
		n += proxy_faults_queued(s->faults, dir_from(!side));
	return n;
}

/* Whether side may be read now: not paused for backpressure, not closed,
 * not stopped by a fault. */
bool session_may_read(struct proxy_session *s, enum side side)
{
	return s->stream[side] != NULL && !s->throttled[side] && !s->read_eof[side] &&
	       (s->faults == NULL ||
		!proxy_faults_reading_stopped(s->faults, side == SIDE_CLIENT));
}

void session_relay(struct proxy_session *s, enum side side)
{
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	struct proxy_stream *dst = s->stream[!side];
	size_t n = evbuffer_get_length(input);
	enum imap_dir dir = dir_from(side);
	imap_time_us now;

	if (n == 0)
		return;
	if (side == SIDE_UPSTREAM && session_upstream_in_starttls(s)) {
		session_upstream_starttls_read(s);
		return;
	}
	if (dst == NULL || s->state != SESSION_RELAYING) {
		evbuffer_drain(input, n); /* nobody left to deliver to */
		return;
	}
	if (!s->spoke[side] && session_speaks_tls_to_plain(s, side))
		return;
	s->spoke[side] = true;
	if (session_in_line_mode(s, side)) {
		if (session_relay_lines(s, side))
			return;
		n = evbuffer_get_length(input);
	}
	if (n > 0 && !session_in_line_mode(s, side)) {
		if (s->faults != NULL) {
			proxy_faults_take(s->faults, dir, IMAP_ORIGIN_PEER, input, n, session_now(s));
		} else {
			/* the bytes go on before they are looked at, by reference
			 * (no copy): the peer does not wait for the rules, and
			 * the stamp is read after the write (with several loops,
			 * under the outputs' lock, which the write need not hold) */
			if (evbuffer_add_buffer_reference(proxy_stream_output(dst), input) == 0) {
				proxy_stream_flush(dst);
				session_observe(s, dir, input, n, IMAP_ORIGIN_PEER, session_now(s));
				evbuffer_drain(input, n);
			} else {
				session_observe(s, dir, input, n, IMAP_ORIGIN_PEER, session_now(s));
				evbuffer_add_buffer(proxy_stream_output(dst), input);
			}
		}
	}
	proxy_stream_flush(dst);
	if (session_queued_toward(s, !side) >= PROXY_HIGH_WATER) {
		/* the other side does not keep up: stop reading this one until
		 * its queue is half drained */
		proxy_stream_set_reading(s->stream[side], false);
		s->throttled[side] = 1;
		proxy_stream_set_low_water(dst, PROXY_HIGH_WATER / 2);
	}
	imap_conv_trim(observed_conv(s->observed));
	observed_flush(s->observed);
	now = session_now(s);
	session_rules_due(s, now);
	session_arm_rules(s, now);
}

static void drained(struct proxy_session *s, enum side side)
{
	enum side src = !side;

	if (s->state == SESSION_CLOSING) {
		session_reap(s);
		return;
	}
	if (s->throttled[src] && s->stream[src] != NULL && session_queued_toward(s, side) <= PROXY_HIGH_WATER / 2) {
		s->throttled[src] = 0;
		proxy_stream_set_low_water(s->stream[side], 0);
		if (session_may_read(s, src))
			proxy_stream_set_reading(s->stream[src], true);
	}
}

static void side_eof(struct proxy_session *s, enum side side)
{
	s->read_eof[side] = 1;
	if (s->state == SESSION_CLOSING) {
		session_reap(s);
		return;
	}
	if (side == SIDE_UPSTREAM && session_upstream_in_starttls(s)) {
		session_upstream_failed(s, "STARTTLS", "the server closed the connection before the session began");
		return;
	}
	session_set_closed_by(s, side_party[side], CAPTURE_END_EOF, "EOF");
	if (s->faults != NULL && proxy_faults_queued(s->faults, dir_from(side)) > 0) {
		/* a fault still holds bytes of this side: the FIN follows them */
		s->eof_deferred[side] = true;
		proxy_faults_eof(s->faults, dir_from(side));
		return;
	}
	session_pass_eof(s, side);
}

/* side's FIN goes on to the other side once everything before it did. */
void session_pass_eof(struct proxy_session *s, enum side side)
{
	if (s->read_eof[!side] || s->stream[!side] == NULL) {
		session_finish(s);
		return;
	}
	/* half close: pass the FIN on once the other side is flushed */
	proxy_stream_shutdown_write(s->stream[!side]);
	session_arm_timer(s, s->env->config->linger_s);
}

static void side_error(struct proxy_session *s, enum side side, int err)
{
	session_set_closed_by(s, side_party[side], err == ECONNRESET ? CAPTURE_END_RESET : CAPTURE_END_ERROR,
		      "%s",
		      err == ECONNRESET ? "reset" : err ? strerror(err) : "error");
	session_close_side(s, side);
	session_finish(s);
}

/* The ClientHello's server name, kept only as long as it is (most are a
 * few bytes; a session holds no room for the longest). */
static void session_take_sni(struct proxy_session *s, enum side side)
{
	char sni[256];

	proxy_tls_hello_sni(proxy_stream_ssl(s->stream[side]), sni, sizeof(sni));
	free(s->client_sni);
	s->client_sni = sni[0] != '\0' ? strdup(sni) : NULL;
}

static void on_event(struct proxy_session *s, enum side side, enum proxy_stream_event event)
{
	/* with --route, anything before the ClientHello is on the default route */
	if (event != PROXY_STREAM_TLS_HELLO && s->observed == NULL && !session_choose_route(s, false))
		return;
	switch (event) {
	case PROXY_STREAM_READ:
		session_relay(s, side);
		return;
	case PROXY_STREAM_DRAINED:
		drained(s, side);
		return;
	case PROXY_STREAM_EOF:
		side_eof(s, side);
		return;
	case PROXY_STREAM_ERROR:
		if (s->state == SESSION_CONNECTING && side == SIDE_UPSTREAM &&
		    s->upstream == UPSTREAM_CONNECTING) {
			session_connect_failed(s, "refused the connection",
				       proxy_stream_error(s->stream[side]));
		} else if (s->state == SESSION_CONNECTING && side == SIDE_UPSTREAM) {
			char why[1200], peer[600];

			const char *text = proxy_stream_error_text(s->stream[side]);

			proxy_tls_peer_summary(proxy_stream_ssl(s->stream[side]), peer, sizeof(peer));
			if (strstr(text, "wrong version number") != NULL ||
			    strstr(text, "packet length too long") != NULL)
				/* what OpenSSL says when the first bytes are no TLS record */
				snprintf(why, sizeof(why), "%s: the upstream answered in clear, it does "
					 "not speak TLS from the first byte; use --upstream-tls starttls "
					 "(or none)", text);
			else
				snprintf(why, sizeof(why), "%s (expected name %s)%s%s", text,
					 session_upstream_name(s),
					 peer[0] ? "; server certificate " : "", peer);
			session_upstream_failed(s, "TLS handshake failed", why);
		} else if (side == SIDE_CLIENT &&
			   (s->state == SESSION_CONNECTING ||
			    s->client == CLIENT_STARTTLS_HANDSHAKE)) {
			session_client_tls_failed(s);
		} else {
			side_error(s, side, proxy_stream_error(s->stream[side]));
		}
		return;
	case PROXY_STREAM_CONNECTED:
		session_connected(s);
		return;
	case PROXY_STREAM_TLS_HELLO:
		/* the client's ClientHello: learn its SNI, then reach the upstream */
		session_take_sni(s, side);
		if (s->observed == NULL && !session_choose_route(s, true))
			return;
		if (s->upstream == UPSTREAM_READY)
			session_resume_client_tls(s); /* STARTTLS: the upstream is up already */
		else
			session_connect_upstream(s);
		return;
	case PROXY_STREAM_TLS_READY:
		session_tls_report(s, side);
		if (side == SIDE_UPSTREAM && s->upstream == UPSTREAM_STARTTLS_HANDSHAKE) {
			static const char command[] = "imaptap1 CAPABILITY\r\n";

			session_upstream_enter(s, UPSTREAM_CAPABILITY);
			evbuffer_add(proxy_stream_output(s->stream[side]), command, sizeof(command) - 1);
			proxy_stream_flush(s->stream[side]);
			proxy_stream_set_reading(s->stream[side], true);
			return;
		}
		if (side == SIDE_UPSTREAM) {
			session_upstream_up(s);
			return;
		}
		if (s->client == CLIENT_STARTTLS_HANDSHAKE) {
			/* STARTTLS done: relaying goes on, now encrypted */
			session_client_enter(s, CLIENT_TLS);
			evtimer_del(s->timer);
			s->line_mode[SIDE_CLIENT] = 0;
			proxy_stream_set_reading(s->stream[SIDE_CLIENT], true);
			return;
		}
		session_client_enter(s, CLIENT_TLS);
		if (s->pending_bye != NULL) {
			session_send_bye(s, s->pending_bye);
			session_finish(s);
		} else if (s->upstream == UPSTREAM_READY) {
			session_relaying(s);
		}
		return;
	}
}

static void on_client(struct proxy_stream *stream, enum proxy_stream_event event, void *arg)
{
	(void)stream;
	session_enter(arg);
	on_event(arg, SIDE_CLIENT, event);
	session_leave(arg);
}

void session_on_upstream(struct proxy_stream *stream, enum proxy_stream_event event, void *arg)
{
	(void)stream;
	session_enter(arg);
	on_event(arg, SIDE_UPSTREAM, event);
	session_leave(arg);
}
/* Where the client connected: the server's address as the client saw it. */
static void local_address(int fd, struct capture_endpoint *e)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	memset(e, 0, sizeof(*e));
	if (getsockname(fd, (struct sockaddr *)&local, &len) == 0)
		capture_endpoint_from_sockaddr((struct sockaddr *)&local, e);
}

static const char *leg_name(bool tls, enum proxy_tls_mode mode)
{
	return !tls ? "plain" : mode == PROXY_TLS_STARTTLS ? "STARTTLS" : "TLS";
}

void session_set_init(struct session_set *set, struct session_shared *shared)
{
	TAILQ_INIT(&set->all);
	set->count = 0;
	set->shared = shared;
}

/* Who the client is and where it connected, for the open row. */
static void session_describe(struct proxy_session *s, int fd, const struct sockaddr *client,
			     const struct sockaddr *local)
{
	s->info.id = s->id;
	capture_endpoint_from_sockaddr(client, &s->info.client);
	if (local != NULL)
		capture_endpoint_from_sockaddr(local, &s->info.local);
	else
		local_address(fd, &s->info.local);
}

bool session_open_observed(struct proxy_session *s)
{
	const struct proxy_config *c = s->env->config;
	struct imap_conv_config conv = {
		.max_line = c->max_line,
		.redact_flags = c->redact_flags,
		.rules = !c->no_rules,
	};
	struct observed_hooks hooks = {.observation = on_observation, .ctx = s};

	if (s->observed != NULL)
		return true;
	s->info.ts = session_now(s);
	capture_endpoint_from_sockaddr((const struct sockaddr *)&s->route->addr[0].sa,
				       &s->info.upstream);
	if (s->client_tls == PROXY_TLS_NONE && s->route->tls == PROXY_TLS_NONE)
		snprintf(s->legs, sizeof(s->legs), "plain");
	else
		snprintf(s->legs, sizeof(s->legs), "client %s, upstream %s",
			 leg_name(s->client_tls != PROXY_TLS_NONE, s->client_tls),
			 leg_name(s->route->tls != PROXY_TLS_NONE, s->route->tls));
	s->info.upstream_tls = s->legs;
	s->info.route = s->env->route_count > 1 ? s->route->name : NULL;
	capture_lock_acquire(s->set->shared->lock);
	conv.thresholds = s->set->shared->thresholds;
	s->observed = observed_open(s->env->sinks, &s->info, &conv, &hooks);
	capture_lock_release(s->set->shared->lock);
	return s->observed != NULL;
}

/* --send-proxy v1|v2: the header naming the client and where it
 * connected, kept until the upstream is connected (none when out of
 * memory: the upstream then sees the proxy). */
static void session_make_proxy_header(struct proxy_session *s, int fd,
				      const struct sockaddr *client, const struct sockaddr *local)
{
	uint8_t buf[NET_PROXY_HEADER_MAX];
	struct sockaddr_storage own;
	socklen_t len = sizeof(own);
	size_t n;

	if (local == NULL) {
		if (getsockname(fd, (struct sockaddr *)&own, &len) != 0)
			return;
		local = (struct sockaddr *)&own;
	}
	n = net_proxy_header_build(s->env->config->send_proxy, client, local, buf, sizeof(buf));
	if (n > 0 && (s->proxy_header = malloc(n)) != NULL) {
		memcpy(s->proxy_header, buf, n);
		s->proxy_header_len = n;
	}
}

int proxy_session_start(const struct session_env *p, struct session_set *set, int fd,
			const struct sockaddr *client, const struct sockaddr *local,
			struct proxy_route *own, enum proxy_tls_mode client_tls)
{
	struct proxy_session *s = calloc(1, sizeof(*s));
	bool fault_oom = false, routed = p->route_count > 1;
	SSL *ssl;

	if (s == NULL) {
		proxy_config_log(p->config, "out of memory for a new session; closing the client");
		evutil_closesocket(fd);
		proxy_route_free(&own);
		return -1;
	}
	s->env = p;
	s->own_route = own;
	s->route = own != NULL ? own : p->routes[0];
	s->client_tls = own != NULL ? client_tls : p->config->client_tls;
	s->set = set;
	s->frames = 1; /* set up as if inside a callback: see session_leave */
	s->id = atomic_fetch_add(&set->shared->next_id, 1) + 1;
	s->state = SESSION_CONNECTING;
	s->rules_at = -1;
	if (!p->config->no_rules)
		s->rules_timer = evtimer_new(p->base, session_on_rules_timer, s);
	s->stream[SIDE_CLIENT] = proxy_stream_new(p->base, fd, on_client, s);
	if (p->config->fault_count > 0) {
		bool none;

		s->faults = proxy_faults_new(p->base, p->config->faults, p->config->fault_count, s->id,
					     &session_fault_host, s, &none);
		fault_oom = s->faults == NULL && !none;
	}
	session_describe(s, fd, client, local);
	if (p->config->send_proxy != 0)
		session_make_proxy_header(s, fd, client, local);
	/* with --route, the outputs hear of it once the ClientHello chose */
	if (s->stream[SIDE_CLIENT] != NULL && !fault_oom && !routed)
		session_open_observed(s);
	if (s->stream[SIDE_CLIENT] != NULL && !fault_oom && (routed || s->observed != NULL))
		session_wire_open(s, SIDE_CLIENT);
	else {
		proxy_config_log(p->config, "out of memory for session #%u; closing the client", s->id);
		if (s->stream[SIDE_CLIENT] == NULL)
			evutil_closesocket(fd);
		session_close_side(s, SIDE_CLIENT);
		proxy_faults_free(&s->faults);
		proxy_route_free(&s->own_route);
		if (s->rules_timer != NULL)
			event_free(s->rules_timer);
		session_outputs_done(s);
		free(s);
		return -1;
	}
	/* the client is read only once the upstream answers, so that nothing
	 * it sends is taken and lost if the upstream cannot be reached */
	TAILQ_INSERT_TAIL(&set->all, s, link);
	set->count++;
	session_outputs_done(s); /* the connect and the handshake need not hold it */
	s->line_mode[SIDE_UPSTREAM] = 1;
	s->line_mode[SIDE_CLIENT] = s->client_tls == PROXY_TLS_STARTTLS;
	if (s->client_tls != PROXY_TLS_IMPLICIT) {
		session_client_enter(s, CLIENT_PLAIN);
		session_connect_upstream(s);
	} else if ((ssl = SSL_new(p->client_ctx)) == NULL) {
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "out of memory for TLS");
		session_finish(s);
	} else {
		session_client_enter(s, CLIENT_HANDSHAKE);
		session_arm_timer(s, p->config->connect_timeout_s);
		proxy_stream_start_tls(s->stream[SIDE_CLIENT], ssl, true);
	}
	session_leave(s);
	return 0;
}

void proxy_session_stop_all(struct session_set *set, const char *reason)
{
	struct proxy_session *s, *next;

	for (s = TAILQ_FIRST(&set->all); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		if (reason == NULL) {
			session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_SHUTDOWN, "stopped");
			session_free(s);
			continue;
		}
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_SHUTDOWN, "%s", reason);
		if (s->state == SESSION_CONNECTING)
			session_close_side(s, SIDE_UPSTREAM);
		session_finish(s);
	}
}
