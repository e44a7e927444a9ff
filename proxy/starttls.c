/* STARTTLS on either leg: the proxy performs the upstream one itself and
 * trusts nothing the server said in clear; it answers the client's.
 * Bytes between STARTTLS and the handshake are dropped and reported. */
#include "proxy/session_int.h"

/* Bytes between STARTTLS and the handshake: the injection class of
 * IMAP-NOTES section 7, dropped and reported. */
static void trailing_data(struct proxy_session *s, enum imap_dir dir, size_t n)
{
	struct imap_anomaly a;

	imap_anomaly_make(&a, IMAP_RULE_STARTTLS_TRAILING_DATA, session_now(s), NULL, 0,
			  "%zu byte(s) from %s and before TLS; dropped, never passed on", n,
			  dir == IMAP_C2S ? "the client after STARTTLS"
					  : "the server after its STARTTLS OK");
	/* counted in the session's summary like any other finding */
	imap_conv_anomaly(observed_conv(s->observed), dir, &a);
}

/* A notice that quotes a peer's line, made printable (capture/escape.h):
 * peer words reach the timeline and the event log this way only. */
void session_notice_quoting(struct proxy_session *s, const char *words, const char *line,
			   size_t len)
{
	char esc[420], notice[700];
	size_t used = 0;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	capture_escape(esc, sizeof(esc), line, len, 0, &used);
	snprintf(notice, sizeof(notice), "%s '%s'%s", words, esc, used < len ? "..." : "");
	observed_notice(s->observed, session_now(s), notice);
}

/* A server line read by the proxy itself, as the classifier sees it. */
static struct imap_line_info server_line(const char *line, size_t n)
{
	struct imap_line_info info;

	imap_classify(IMAP_S2C, (const uint8_t *)line, n, false, false, &info);
	return info;
}

static bool is_untagged(const struct imap_line_info *info, enum imap_status status)
{
	return info->cls == IMAP_LINE_UNTAGGED && info->status == status;
}

/* The tagged completion of one of the proxy's own commands, by its tag. */
static bool answers(const struct imap_line_info *info, const char *tag)
{
	return info->cls == IMAP_LINE_TAGGED && imap_slice_eq(info->tag, tag);
}

/* Over TLS the proxy asks for the capabilities again (IMAP-NOTES section
 * 7: nothing read in clear is trusted) and makes the client's greeting
 * from the answer. Returns 1 when the greeting is made, 0 when more lines
 * are needed, -1 when the session failed (it may be gone). */
static int upstream_tls_capability(struct proxy_session *s, char *line, size_t n)
{
	struct imap_line_info info = server_line(line, n);
	size_t start, end;
	char *cut;

	if (info.cls == IMAP_LINE_UNTAGGED) {
		if (info.keyword == IMAP_KW_CAPABILITY &&
		    imap_capability_list((const uint8_t *)line, n, &start, &end) && s->tls_caps == NULL)
			s->tls_caps = strndup(line + start, end - start);
		else if (is_untagged(&info, IMAP_STATUS_BYE))
			session_notice_quoting(s, "upstream said over TLS:", line, n);
		return 0; /* other untagged data before the answer is not for the client */
	}
	if (!answers(&info, "imaptap1") || info.status != IMAP_STATUS_OK) {
		session_notice_quoting(s, "upstream answered CAPABILITY over TLS:", line, n);
		session_upstream_failed(s, "STARTTLS", "the server did not answer CAPABILITY over TLS with OK");
		return -1;
	}
	if (s->tls_caps == NULL && imap_capability_list((const uint8_t *)line, n, &start, &end))
		s->tls_caps = strndup(line + start, end - start);
	if (s->tls_caps == NULL) {
		session_notice_quoting(s, "upstream answered CAPABILITY over TLS:", line, n);
		session_upstream_failed(s, "STARTTLS", "the server sent no capabilities over TLS");
		return -1;
	}
	/* the list goes inside a response code: it cannot close it */
	if ((cut = strchr(s->tls_caps, ']')) != NULL)
		*cut = '\0';
	session_notice_quoting(s, "upstream STARTTLS: sent 'imaptap1 CAPABILITY' over TLS, capabilities:",
		       s->tls_caps, strlen(s->tls_caps));
	s->greeting = evbuffer_new();
	if (s->greeting == NULL ||
	    evbuffer_add_printf(s->greeting, "* OK [CAPABILITY %s] imaptap: server ready over TLS\r\n",
				s->tls_caps) < 0) {
		session_upstream_failed(s, "STARTTLS", "out of memory");
		return -1;
	}
	return 1;
}

/* Upstream STARTTLS, done by the proxy before the client's first byte:
 * check the greeting is * OK, send STARTTLS, and on its tagged OK start
 * TLS; then ask for the capabilities over TLS. Nothing the server said in
 * clear reaches the client (it is quoted in notices only). Server bytes
 * after the OK's CRLF would be plaintext injected into the TLS session
 * (IMAP-NOTES section 7): they are dropped. */
void session_upstream_starttls_read(struct proxy_session *s)
{
	static const char command[] = "imaptap0 STARTTLS\r\n";
	struct imap_line_info answer;
	struct evbuffer *input = proxy_stream_input(s->stream[SIDE_UPSTREAM]);

	for (;;) {
		size_t n = 0;
		char *line = evbuffer_readln(input, &n, EVBUFFER_EOL_CRLF);

		if (line == NULL) {
			if (evbuffer_get_length(input) > LINE_MODE_MAX)
				session_upstream_failed(s, "STARTTLS", "a line over 8 KiB before the session began");
			return;
		}
		if (s->upstream == UPSTREAM_CAPABILITY) {
			int made = upstream_tls_capability(s, line, n);

			free(line);
			if (made < 0)
				return;
			if (made == 0)
				continue;
			session_upstream_up(s);
			return;
		}
		if (s->upstream == UPSTREAM_GREETING) {
			session_notice_quoting(s, "upstream greeting before TLS (not shown to the client):", line, n);
			struct imap_line_info greeting = server_line(line, n);

			if (!is_untagged(&greeting, IMAP_STATUS_OK)) {
				const char *why =
					is_untagged(&greeting, IMAP_STATUS_PREAUTH)
						? "the greeting before TLS was PREAUTH (already "
						  "authenticated, so TLS cannot be started); no "
						  "plaintext session"
					: is_untagged(&greeting, IMAP_STATUS_BYE)
						? "the server refused the connection (BYE before TLS)"
						: "the greeting before TLS was not * OK";

				free(line);
				session_upstream_failed(s, "STARTTLS", why);
				return;
			}
			free(line);
			evbuffer_add(proxy_stream_output(s->stream[SIDE_UPSTREAM]), command,
				     sizeof(command) - 1);
			proxy_stream_flush(s->stream[SIDE_UPSTREAM]);
			session_upstream_enter(s, UPSTREAM_STARTTLS);
			continue;
		}
		answer = server_line(line, n);
		if (!answers(&answer, "imaptap0")) {
			free(line); /* untagged data before the answer */
			continue;
		}
		if (answer.status != IMAP_STATUS_OK) {
			session_notice_quoting(s, "upstream answered STARTTLS:", line, n);
			free(line);
			session_upstream_failed(s, "STARTTLS", "the server refused STARTTLS");
			return;
		}
		session_notice_quoting(s, "upstream STARTTLS: sent 'imaptap0 STARTTLS', server answered", line, n);
		free(line);
		if (evbuffer_get_length(input) > 0) {
			trailing_data(s, IMAP_S2C, evbuffer_get_length(input));
			evbuffer_drain(input, evbuffer_get_length(input));
		}
		session_upstream_enter(s, UPSTREAM_STARTTLS_HANDSHAKE);
		proxy_stream_set_reading(s->stream[SIDE_UPSTREAM], false);
		session_start_upstream_tls(s);
		return;
	}
}

int session_is_starttls_command(const uint8_t *line, size_t n)
{
	struct imap_line_info info;

	imap_classify(IMAP_C2S, line, n, false, false, &info);
	return info.cls == IMAP_LINE_COMMAND && info.keyword == IMAP_KW_STARTTLS &&
	       info.args.len == 0 && !info.uid;
}

/* The client asked for STARTTLS: answered here, never relayed. */
void session_client_starttls(struct proxy_session *s, const uint8_t *line, size_t n)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	struct evbuffer *input = proxy_stream_input(client);
	size_t tag_len = (size_t)((const uint8_t *)memchr(line, ' ', n) - line);
	char ok[300];
	int len;
	SSL *ssl;

	observed_feed(s->observed, IMAP_C2S, session_now(s), IMAP_ORIGIN_PEER, line, n);
	len = snprintf(ok, sizeof(ok), "%.*s OK Begin TLS negotiation now (imaptap)\r\n",
		       (int)(tag_len < 200 ? tag_len : 200), (const char *)line);
	observed_feed(s->observed, IMAP_S2C, session_now(s), IMAP_ORIGIN_PROXY, (const uint8_t *)ok,
		       (size_t)len);
	evbuffer_add(proxy_stream_output(client), ok, (size_t)len);
	proxy_stream_flush(client);
	if (evbuffer_get_length(input) > 0) {
		trailing_data(s, IMAP_C2S, evbuffer_get_length(input));
		evbuffer_drain(input, evbuffer_get_length(input));
	}
	ssl = SSL_new(s->env->client_ctx);
	if (ssl == NULL || evbuffer_get_length(proxy_stream_output(client)) > 0) {
		SSL_free(ssl);
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR, "could not start TLS with the client");
		session_finish(s);
		return;
	}
	s->line_mode[SIDE_CLIENT] = 0;
	session_client_enter(s, CLIENT_STARTTLS_HANDSHAKE);
	session_arm_timer(s, s->env->config->connect_timeout_s);
	proxy_stream_start_tls(client, ssl, true);
}
