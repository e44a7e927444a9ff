/* The two legs of a session: connecting upstream (each address in turn),
 * TLS on either side with the certificate forged for the client, the
 * greeting held until both legs carry IMAP, and the timeouts of each step. */
#include "proxy/session_int.h"

void session_send_bye(struct proxy_session *s, const char *bye)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	size_t len = strlen(bye);

	/* plain text inside a compressed stream would corrupt it */
	if (client == NULL || imap_conv_compressed(observed_conv(s->observed)))
		return;
	observed_feed(s->observed, IMAP_S2C, session_now(s), IMAP_ORIGIN_PROXY, (const uint8_t *)bye, len);
	evbuffer_add(proxy_stream_output(client), bye, len);
}

/* The upstream cannot be used: tells the client with an untagged BYE (over
 * its TLS leg once that is up) and closes. */
void session_upstream_failed(struct proxy_session *s, const char *what, const char *why)
{
	char bye[768], notice[800];

	snprintf(bye, sizeof(bye), "* BYE [UNAVAILABLE] imaptap: upstream %s %s: %s\r\n",
		 s->route->str, what, why);
	snprintf(notice, sizeof(notice), "upstream %s %s: %s; telling the client * BYE",
		 s->route->str, what, why);
	observed_notice(s->observed, session_now(s), notice);
	session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "upstream %s: %s", what, why);
	session_refuse(s, bye);
}

void session_refuse(struct proxy_session *s, const char *bye)
{
	session_close_side(s, SIDE_UPSTREAM);
	if (s->stream[SIDE_CLIENT] != NULL && !session_client_ready(s)) {
		/* the client waits in its TLS handshake: finish it first */
		free(s->pending_bye);
		s->pending_bye = strdup(bye);
		session_resume_client_tls(s);
		return;
	}
	session_send_bye(s, bye);
	session_finish(s);
}

/* The current upstream address failed: tries the next. Returns 1 when the
 * session is gone. */
int session_connect_failed(struct proxy_session *s, const char *what, int err)
{
	session_close_side(s, SIDE_UPSTREAM);
	if (s->state == SESSION_CLOSING) /* shutdown began meanwhile */
		return session_finish(s);
	if (s->addr_index + 1 < s->route->addr_count) {
		s->addr_index++;
		return session_connect_upstream(s);
	}
	session_upstream_failed(s, what, strerror(err));
	return 0;
}

int session_connect_upstream(struct proxy_session *s)
{
	const struct session_env *p = s->env;
	int err = 0;

	if (s->addr_index == 0 && session_over_connection_limit(s))
		return 0;
	session_arm_timer(s, p->config->connect_timeout_s);
	s->stream[SIDE_UPSTREAM] =
		proxy_stream_connect(p->base, (struct sockaddr *)&s->route->addr[s->addr_index].sa,
				     s->route->addr[s->addr_index].len, session_on_upstream, s, &err);
	if (s->stream[SIDE_UPSTREAM] == NULL) {
		p->out_of_resources(p->owner, err);
		return session_connect_failed(s, "cannot be reached", err ? err : ECONNREFUSED);
	}
	return 0;
}

void session_relaying(struct proxy_session *s)
{
	evtimer_del(s->timer);
	imap_conv_connected(observed_conv(s->observed), session_now(s));
	if (s->greeting != NULL && s->stream[SIDE_CLIENT] != NULL) {
		/* upstream STARTTLS: imaptap's greeting, made from what came over TLS */
		size_t len = evbuffer_get_length(s->greeting), m;
		unsigned char *p = evbuffer_pullup(s->greeting, -1);
		uint8_t edited[LINE_MODE_MAX + IMAP_CAPABILITY_EDIT_GROWTH];

		m = len <= LINE_MODE_MAX
			    ? imap_capability_edit(p, len, session_capability_edits(s), edited, sizeof(edited))
			    : 0;
		if (m > 0) {
			session_note_edit(s, p, len);
			evbuffer_drain(s->greeting, len);
			evbuffer_add(s->greeting, edited, m);
		}
		session_fault_hide_greeting(s);
		len = evbuffer_get_length(s->greeting);
		/* stamped when the client gets it, after its own TLS handshake */
		observed_feed(s->observed, IMAP_S2C, session_now(s), IMAP_ORIGIN_PROXY,
			       evbuffer_pullup(s->greeting, -1), len);
		s->greeting_seen = 1;
		evbuffer_add_buffer(proxy_stream_output(s->stream[SIDE_CLIENT]), s->greeting);
		proxy_stream_flush(s->stream[SIDE_CLIENT]);
	}
	s->state = SESSION_RELAYING;
	proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], true);
	proxy_stream_set_reading(s->stream[SIDE_CLIENT], true);
	if (s->faults != NULL)
		proxy_faults_start(s->faults, session_now(s));
	session_arm_rules(s, session_now(s));
	/* what the server sent over TLS after its CAPABILITY answer */
	if (s->stream[SIDE_UPSTREAM] != NULL &&
	    evbuffer_get_length(proxy_stream_input(s->stream[SIDE_UPSTREAM])) > 0)
		session_relay(s, SIDE_UPSTREAM);
}

void session_tls_report(struct proxy_session *s, enum side side)
{
	SSL *ssl = proxy_stream_ssl(s->stream[side]);
	char peer[600] = "";
	const char *sni = NULL;
	struct capture_tls_info info = {
		.leg = side == SIDE_UPSTREAM ? "upstream" : "client",
		.version = SSL_get_version(ssl),
		.cipher = SSL_get_cipher_name(ssl),
		.peer = peer,
	};

	if (side == SIDE_UPSTREAM) {
		proxy_tls_peer_summary(ssl, peer, sizeof(peer));
		sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		info.name = session_upstream_name(s);
		info.verified = !s->env->config->insecure_upstream;
	} else {
		sni = s->client_sni;
	}
	info.sni = sni != NULL ? sni : "";
	observed_tls(s->observed, session_now(s), &info);
}

/* Gives the paused client handshake its certificate and lets it go on. */
void session_resume_client_tls(struct proxy_session *s)
{
	const struct session_env *p = s->env;
	SSL *ssl = proxy_stream_ssl(s->stream[SIDE_CLIENT]);
	char *names[17];
	size_t n = 0;
	char err[512] = "", notice[1024];

	if (p->ca != NULL) {
		X509 *cert;
		bool usable = false;

		if (s->client_sni != NULL && (names[n] = strdup(s->client_sni)) != NULL)
			n++;
		if (s->stream[SIDE_UPSTREAM] != NULL &&
		    proxy_stream_ssl(s->stream[SIDE_UPSTREAM]) != NULL)
			n += proxy_tls_peer_names(proxy_stream_ssl(s->stream[SIDE_UPSTREAM]),
						  names + n, 16 - n);
		for (size_t i = 0; i < n && !usable; i++)
			usable = proxy_ca_name_check(names[i], NULL) != PROXY_CA_NAME_BAD;
		if (!usable && (names[n] = strdup(session_upstream_name(s))) != NULL)
			n++;
		/* peer names a certificate cannot carry are left out, and said */
		cert = proxy_ca_forge(p->ca, (const char *const *)names, n, notice, sizeof(notice),
				      err, sizeof(err));
		if (notice[0] != '\0')
			observed_notice(s->observed, session_now(s), notice);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		if (cert == NULL || SSL_use_certificate(ssl, cert) != 1 ||
		    SSL_use_PrivateKey(ssl, proxy_ca_leaf_key(p->ca)) != 1) {
			X509_free(cert);
			observed_notice(s->observed, session_now(s),
					     "cannot make a certificate for the client");
			session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "no certificate for the client: %s", err);
			session_close_side(s, SIDE_CLIENT);
			session_finish(s);
			return;
		}
		X509_free(cert);
	}
	SSL_set_app_data(ssl, s);
	proxy_stream_tls_resume(s->stream[SIDE_CLIENT]);
}

static const char *const upstream_leg_names[] = {
	[UPSTREAM_CONNECTING] = "connecting",
	[UPSTREAM_GREETING] = "greeting",
	[UPSTREAM_STARTTLS] = "starttls",
	[UPSTREAM_STARTTLS_HANDSHAKE] = "starttls-handshake",
	[UPSTREAM_CAPABILITY] = "capability",
	[UPSTREAM_HANDSHAKE] = "handshake",
	[UPSTREAM_READY] = "ready",
};

static bool debug_legs(void)
{
	static _Atomic int on = -1; /* the loops' threads may ask at once */

	if (on < 0) {
		const char *d = getenv("IMAPTAP_DEBUG");

		on = d != NULL && strstr(d, "legs") != NULL;
	}
	return on;
}

void session_upstream_enter(struct proxy_session *s, enum upstream_leg state)
{
	if (debug_legs())
		fprintf(stderr, "imaptap: #%u upstream leg: %s -> %s\n", s->id,
			upstream_leg_names[s->upstream], upstream_leg_names[state]);
	s->upstream = state;
}

static const char *const client_leg_names[] = {
	[CLIENT_ACCEPTED] = "accepted",
	[CLIENT_HANDSHAKE] = "handshake",
	[CLIENT_PLAIN] = "plain",
	[CLIENT_STARTTLS_HANDSHAKE] = "starttls-handshake",
	[CLIENT_TLS] = "tls",
};

void session_client_enter(struct proxy_session *s, enum client_leg state)
{
	if (debug_legs())
		fprintf(stderr, "imaptap: #%u client leg: %s -> %s\n", s->id,
			client_leg_names[s->client], client_leg_names[state]);
	s->client = state;
}

/* Carries IMAP: in clear, or over TLS once its handshake is done. */
bool session_client_ready(const struct proxy_session *s)
{
	return s->client == CLIENT_PLAIN || s->client == CLIENT_TLS;
}

bool session_upstream_in_starttls(const struct proxy_session *s)
{
	return s->upstream == UPSTREAM_GREETING || s->upstream == UPSTREAM_STARTTLS ||
	       s->upstream == UPSTREAM_STARTTLS_HANDSHAKE || s->upstream == UPSTREAM_CAPABILITY;
}

/* The upstream leg carries IMAP now. */
void session_upstream_up(struct proxy_session *s)
{
	session_upstream_enter(s, UPSTREAM_READY);
	if (session_client_ready(s))
		session_relaying(s);
	else
		session_resume_client_tls(s);
}

/* --send-proxy: the header goes out before anything else, TLS included;
 * a fresh socket takes its few bytes at once. */
static bool send_proxy_header(struct proxy_session *s)
{
	ssize_t n = send(proxy_stream_fd(s->stream[SIDE_UPSTREAM]), s->proxy_header,
			 s->proxy_header_len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n != (ssize_t)s->proxy_header_len) {
		session_upstream_failed(s, "the PROXY protocol header",
					n < 0 ? strerror(errno) : "the socket took only part of it");
		return false;
	}
	session_wire_sent(s, SIDE_UPSTREAM, s->proxy_header, s->proxy_header_len);
	free(s->proxy_header);
	s->proxy_header = NULL;
	return true;
}

void session_connected(struct proxy_session *s)
{
	session_wire_open(s, SIDE_UPSTREAM);
	if (s->proxy_header != NULL && !send_proxy_header(s))
		return;
	if (s->route->tls == PROXY_TLS_NONE) {
		session_upstream_up(s);
		return;
	}
	if (s->route->tls == PROXY_TLS_STARTTLS) {
		session_upstream_enter(s, UPSTREAM_GREETING);
		proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], true);
		return;
	}
	session_upstream_enter(s, UPSTREAM_HANDSHAKE);
	session_start_upstream_tls(s);
}

/* --transparent: the name the client asked for is the server's, the one
 * its certificate carries (an address rarely is); without one, and on
 * every other route, the route's own. */
const char *session_upstream_name(const struct proxy_session *s)
{
	if (s->own_route != NULL && s->client_sni != NULL)
		return s->client_sni;
	return s->route->check_name;
}

void session_start_upstream_tls(struct proxy_session *s)
{
	const struct session_env *p = s->env;
	const char *name = session_upstream_name(s);
	SSL *ssl;

	/* one name: sent as SNI (unless an address) and checked in the
	 * certificate (docs/tls.md) */
	ssl = proxy_tls_upstream_ssl(p->upstream_ctx, name, name, p->config->insecure_upstream);
	if (ssl == NULL) {
		session_upstream_failed(s, "TLS", "out of memory");
		return;
	}
	proxy_stream_start_tls(s->stream[SIDE_UPSTREAM], ssl, false);
}

/* --route: the route whose name the ClientHello asked for, else the
 * default (also before the ClientHello, hello false: the session ends
 * before it); then the outputs hear of the session. Returns false when the
 * session cannot go on (out of memory: it is closing). */
bool session_choose_route(struct proxy_session *s, bool hello)
{
	const struct session_env *p = s->env;
	char notice[600];

	for (unsigned i = 1; i < p->route_count; i++)
		if (proxy_route_name_matches(p->routes[i]->name, s->client_sni)) {
			s->route = p->routes[i];
			break;
		}
	if (!session_open_observed(s)) {
		proxy_config_log(p->config, "out of memory for session #%u; closing the client", s->id);
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "out of memory");
		session_close_side(s, SIDE_CLIENT);
		session_close_side(s, SIDE_UPSTREAM);
		session_reap(s);
		return false;
	}
	if (hello && p->route_count > 1) {
		snprintf(notice, sizeof(notice), "route %s: %s%s%s; upstream %s", s->route->name,
			 s->client_sni != NULL ? "the client asked for " : "the ClientHello names no server",
			 s->client_sni != NULL ? s->client_sni : "",
			 s->route == p->routes[0] && s->client_sni != NULL ? ", which no --route names" : "",
			 s->route->str);
		observed_notice(s->observed, session_now(s), notice);
	}
	return true;
}

void session_client_tls_failed(struct proxy_session *s)
{
	char notice[900];
	const char *why = proxy_stream_error_text(s->stream[SIDE_CLIENT]);

	if (s->env->ca != NULL)
		snprintf(notice, sizeof(notice),
			 "client TLS handshake failed: %s; if the client does not trust imaptap's "
			 "certificate, make it trust %s",
			 why, proxy_ca_cert_path(s->env->ca));
	else
		snprintf(notice, sizeof(notice), "client TLS handshake failed: %s", why);
	observed_notice(s->observed, session_now(s), notice);
	session_set_closed_by(s, CAPTURE_SIDE_CLIENT, CAPTURE_END_ERROR, "TLS handshake failed: %s", why);
	session_close_side(s, SIDE_CLIENT);
	session_close_side(s, SIDE_UPSTREAM);
	session_finish(s);
}

static void client_handshake_timed_out(struct proxy_session *s)
{
	char notice[200];

	snprintf(notice, sizeof(notice),
		 "client TLS handshake timed out after %u s: the client sent no (complete) "
		 "handshake; is it speaking TLS to this port?",
		 s->env->config->connect_timeout_s);
	observed_notice(s->observed, session_now(s), notice);
	session_set_closed_by(s, CAPTURE_SIDE_CLIENT, CAPTURE_END_ERROR, "TLS handshake timed out");
	session_close_side(s, SIDE_CLIENT);
	session_close_side(s, SIDE_UPSTREAM);
	session_finish(s);
}

static void timed_out(struct proxy_session *s)
{
	switch (s->state) {
	case SESSION_CONNECTING:
		if (s->stream[SIDE_UPSTREAM] == NULL && !session_client_ready(s)) {
			/* still waiting for the client's ClientHello */
			client_handshake_timed_out(s);
		} else if (s->upstream == UPSTREAM_CONNECTING) {
			session_connect_failed(s, "did not answer the TCP connection", ETIMEDOUT);
		} else if (s->upstream != UPSTREAM_READY) {
			char why[200];

			snprintf(why, sizeof(why), "no answer within %u s%s",
				 s->env->config->connect_timeout_s,
				 s->upstream == UPSTREAM_GREETING ? " (waiting for the greeting)"
				 : s->upstream == UPSTREAM_STARTTLS ? " (waiting for the answer to STARTTLS)"
				 : s->upstream == UPSTREAM_STARTTLS_HANDSHAKE
				 ? " (in the TLS handshake after STARTTLS)"
				 : s->upstream == UPSTREAM_CAPABILITY
				 ? " (waiting for the answer to CAPABILITY over TLS)"
				 : "; is the server speaking TLS on this port? (see --upstream-tls)");
			session_upstream_failed(s, session_upstream_in_starttls(s) ? "STARTTLS failed"
								       : "TLS handshake failed",
					why);
		} else {
			client_handshake_timed_out(s);
		}
		return;

	case SESSION_RELAYING:
		if (s->client == CLIENT_STARTTLS_HANDSHAKE) {
			client_handshake_timed_out(s);
			return;
		}
		/* one side left and the other has not followed */
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_HALF_CLOSED, "half-closed for %u s",
				      s->env->config->linger_s);
		session_finish(s);
		return;
	case SESSION_CLOSING:
		/* a peer does not take what is queued for it: give up on it */
		session_close_side(s, SIDE_CLIENT);
		session_close_side(s, SIDE_UPSTREAM);
		session_reap(s);
		return;
	}
}

/* The connect, handshake or linger timer of the session. */
void session_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_enter(arg);
	if (((struct proxy_session *)arg)->observed != NULL || session_choose_route(arg, false))
		timed_out(arg);
	session_leave(arg);
}

/* A TLS record starts: content type handshake (22) or alert (21), then
 * the protocol version 3.x. */
static bool tls_record_start(struct evbuffer *input)
{
	uint8_t b[3];

	if (evbuffer_copyout(input, b, sizeof(b)) != (ev_ssize_t)sizeof(b))
		return false;
	return (b[0] == 22 || b[0] == 21) && b[1] == 3 && b[2] <= 4;
}

bool session_speaks_tls_to_plain(struct proxy_session *s, enum side side)
{
	char why[300];

	if (!tls_record_start(proxy_stream_input(s->stream[side])))
		return false;
	if (side == SIDE_CLIENT && s->client == CLIENT_PLAIN && s->client_tls == PROXY_TLS_NONE)
		snprintf(why, sizeof(why), "the client started TLS (a ClientHello) on a plain "
			 "listener: run the proxy with --client-tls implicit --ca DIR, or point the "
			 "client at it without TLS");
	else if (side == SIDE_UPSTREAM && s->route->tls == PROXY_TLS_NONE) {
		evbuffer_drain(proxy_stream_input(s->stream[side]),
			       evbuffer_get_length(proxy_stream_input(s->stream[side])));
		session_upstream_failed(s, "answered with a TLS record", "it speaks TLS from the "
					"first byte; use --upstream-tls implicit");
		return true;
	} else {
		return false;
	}
	observed_notice(s->observed, session_now(s), why);
	session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "%s", why);
	evbuffer_drain(proxy_stream_input(s->stream[side]),
		       evbuffer_get_length(proxy_stream_input(s->stream[side])));
	session_close_side(s, SIDE_CLIENT);
	session_close_side(s, SIDE_UPSTREAM);
	session_finish(s);
	return true;
}
