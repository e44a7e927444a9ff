/* Before login each side is relayed unit by unit as the framer cuts it,
 * so capability lists are edited and the client's STARTTLS, LOGIN and
 * AUTHENTICATE are answered however many literals come first. */
#include "proxy/session_int.h"

void session_note_edit(struct proxy_session *s, const uint8_t *line, size_t len)
{
	char words[96];

	imap_capability_describe(imap_capability_changes(line, len, session_capability_edits(s)),
				 words, sizeof(words));
	if (words[0] != '\0')
		imap_conv_note(observed_conv(s->observed), IMAP_S2C, words);
}

unsigned session_capability_edits(const struct proxy_session *s)
{
	unsigned edits = 0;

	if (s->client_tls == PROXY_TLS_STARTTLS && s->client != CLIENT_TLS)
		edits |= IMAP_CAP_ADD_STARTTLS | IMAP_CAP_ADD_LOGINDISABLED;
	else
		edits |= IMAP_CAP_REMOVE_STARTTLS;
	if (s->client_tls == PROXY_TLS_NONE)
		edits |= IMAP_CAP_REMOVE_LOGINDISABLED;
	return edits;
}

/* Lines are relayed one by one before authentication; after it, or once
 * COMPRESS is on (the bytes are no longer lines), chunks go as read. */
bool session_in_line_mode(const struct proxy_session *s, enum side side)
{
	return s->line_mode[side] && !s->authenticated && !imap_conv_compressed(observed_conv(s->observed));
}

/* One line read in line mode goes on: observed and queued for the other
 * side, or handed to the session's faults. */
static void pass_line(struct proxy_session *s, enum imap_dir dir, enum imap_origin origin,
		      const uint8_t *line, size_t n, struct evbuffer *out)
{
	struct evbuffer *one;

	if (s->faults == NULL) {
		observed_feed(s->observed, dir, session_now(s), origin, line, n);
		evbuffer_add(out, line, n);
		return;
	}
	one = evbuffer_new();
	if (one == NULL || evbuffer_add(one, line, n) != 0) {
		if (one != NULL)
			evbuffer_free(one);
		return;
	}
	proxy_faults_take(s->faults, dir, origin, one, n, session_now(s));
	evbuffer_free(one);
}

/* The first len bytes of from go on toward the other side as they are:
 * observed and queued, or handed to the session's faults. */
static void pass_bytes(struct proxy_session *s, enum imap_dir dir, struct evbuffer *from,
		       size_t len, struct evbuffer *out)
{
	if (len == 0)
		return;
	if (s->faults != NULL) {
		proxy_faults_take(s->faults, dir, IMAP_ORIGIN_PEER, from, len, session_now(s));
		return;
	}
	session_observe(s, dir, from, len, IMAP_ORIGIN_PEER, session_now(s));
	evbuffer_remove_buffer(from, out, len);
}

/* The command word of a client line "tag SP word ...", case-insensitive. */
static bool command_is(const uint8_t *line, size_t n, const char *word, size_t *tag_len_r)
{
	const uint8_t *sp = memchr(line, ' ', n);
	size_t w = strlen(word), rest;

	if (sp == NULL || sp == line)
		return false;
	*tag_len_r = (size_t)(sp - line);
	rest = n - *tag_len_r - 1;
	if (rest < w || strncasecmp((const char *)sp + 1, word, w) != 0)
		return false;
	return rest == w || sp[1 + w] == ' ' || sp[1 + w] == '\r' || sp[1 + w] == '\n';
}

/* A credential sent in clear on a client leg that waits for STARTTLS is
 * not passed on: the proxy answers NO (RFC 9051 PRIVACYREQUIRED). */
static void refuse_in_clear(struct proxy_session *s, struct line_relay *lr)
{
	struct proxy_stream *client = s->stream[SIDE_CLIENT];
	char no[320];
	int len;

	lr->refusing = 0;
	len = snprintf(no, sizeof(no),
		       "%.*s NO [PRIVACYREQUIRED] imaptap: use STARTTLS first; credentials are not "
		       "sent in clear\r\n",
		       (int)lr->tag_len, lr->tag);
	observed_feed(s->observed, IMAP_S2C, session_now(s), IMAP_ORIGIN_PROXY, (const uint8_t *)no,
		       (size_t)len);
	evbuffer_add(proxy_stream_output(client), no, (size_t)len);
	observed_notice(s->observed, session_now(s),
			     "client sent credentials in clear before STARTTLS; not passed on, "
			     "answered NO [PRIVACYREQUIRED]");
}

static bool client_waits_for_tls(const struct proxy_session *s)
{
	return s->client_tls == PROXY_TLS_STARTTLS && s->client != CLIENT_TLS;
}

/* Asks the session to act once the framer has returned. */
static void line_action(struct line_relay *lr, enum line_action action, const uint8_t *line,
			size_t n)
{
	lr->action = action;
	free(lr->action_line);
	lr->action_line = malloc(n > 0 ? n : 1);
	lr->action_len = lr->action_line != NULL ? n : 0;
	if (lr->action_line != NULL)
		memcpy(lr->action_line, line, n);
	imap_framer_stop(lr->framer);
}

static void client_unit(struct line_relay *lr, const struct imap_unit *u, size_t n,
			struct evbuffer *input, struct evbuffer *out)
{
	struct proxy_session *s = lr->s;
	size_t tag_len = 0;
	bool head = u->kind != IMAP_UNIT_LITERAL_DATA && !(u->flags & IMAP_UNIT_CONTINUED);

	if (!client_waits_for_tls(s)) {
		pass_bytes(s, IMAP_C2S, input, n, out);
		return;
	}
	if (head && u->kind == IMAP_UNIT_LINE && !(u->flags & IMAP_UNIT_TRUNCATED) &&
	    session_is_starttls_command(u->data, u->len)) {
		evbuffer_drain(input, n);
		line_action(lr, LINE_ACTION_STARTTLS, u->data, u->len);
		return;
	}
	if (head && (command_is(u->data, u->len, "LOGIN", &tag_len) ||
		     command_is(u->data, u->len, "AUTHENTICATE", &tag_len))) {
		lr->refusing = 1;
		lr->tag_len = tag_len < sizeof(lr->tag) ? tag_len : sizeof(lr->tag);
		memcpy(lr->tag, u->data, lr->tag_len);
	}
	if (!lr->refusing) {
		pass_bytes(s, IMAP_C2S, input, n, out);
		return;
	}
	/* seen (masked) on the client leg, never sent upstream */
	session_observe(s, IMAP_C2S, input, n, IMAP_ORIGIN_PEER, session_now(s));
	evbuffer_drain(input, n);
	if (u->kind == IMAP_UNIT_LINE) {
		refuse_in_clear(s, lr);
	} else if (u->kind == IMAP_UNIT_LITERAL_HEAD && !(u->flags & IMAP_UNIT_LITERAL_NONSYNC)) {
		/* no "+": the NO ends the command and no literal follows */
		refuse_in_clear(s, lr);
		imap_framer_cancel_literal(lr->framer);
	}
}

static void upstream_unit(struct line_relay *lr, const struct imap_unit *u, size_t n,
			  struct evbuffer *input, struct evbuffer *out)
{
	struct proxy_session *s = lr->s;
	size_t m;
	uint8_t line[LINE_MODE_MAX], edited[LINE_MODE_MAX + IMAP_CAPABILITY_EDIT_GROWTH];
	bool whole = u->kind == IMAP_UNIT_LINE && !(u->flags & IMAP_UNIT_TRUNCATED) &&
		     !(u->flags & IMAP_UNIT_CONTINUED) && n <= LINE_MODE_MAX;

	if (whole && !s->greeting_seen) {
		s->greeting_seen = 1;
		if (client_waits_for_tls(s) && n >= 9 &&
		    strncasecmp((const char *)u->data, "* PREAUTH", 9) == 0) {
			/* the client would be logged in before it could start TLS */
			line_action(lr, LINE_ACTION_PREAUTH, u->data, u->len);
			evbuffer_drain(input, n);
			return;
		}
	}
	if (!whole) {
		pass_bytes(s, IMAP_S2C, input, n, out);
		return;
	}
	evbuffer_remove(input, line, n);
	m = imap_capability_edit(line, n, session_capability_edits(s), edited, sizeof(edited));
	if (m > 0) {
		session_note_edit(s, line, n);
		pass_line(s, IMAP_S2C, IMAP_ORIGIN_PROXY, edited, m, out);
	}
	else
		pass_line(s, IMAP_S2C, IMAP_ORIGIN_PEER, line, n, out);
}

static void on_line_unit(void *ctx, const struct imap_unit *u)
{
	struct line_relay *lr = ctx;
	struct proxy_session *s = lr->s;
	enum side side = (enum side)lr->side;
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	struct evbuffer *out = proxy_stream_output(s->stream[!side]);

	size_t n = (size_t)u->wire_len;

	/* the unit's bytes are the first wire_len of the input, less the
	 * literal bytes already passed on as they came */
	if (u->kind == IMAP_UNIT_LITERAL_DATA) {
		size_t skip = lr->ahead < n ? (size_t)lr->ahead : n;

		lr->ahead -= skip;
		n -= skip;
	}
	lr->fed -= n;
	if (side == SIDE_CLIENT)
		client_unit(lr, u, n, input, out);
	else
		upstream_unit(lr, u, n, input, out);
	if (!session_in_line_mode(s, side) || s->stream[!side] == NULL)
		imap_framer_stop(lr->framer);
}

/* Before authentication, passes the framer's units one at a time so the
 * proxy can edit capability lists and answer the client's STARTTLS, LOGIN
 * and AUTHENTICATE. Returns 1 when the rest of the input is handled (the
 * client leg switched to TLS, or the session ends), 0 when raw relaying
 * should go on with what is left. */
int session_relay_lines(struct proxy_session *s, enum side side)
{
	struct line_relay *lr = &s->lines[side];
	struct evbuffer *input = proxy_stream_input(s->stream[side]);
	uint8_t buf[16384];
	enum line_action action;

	if (lr->framer == NULL) {
		lr->s = s;
		lr->side = side;
		lr->framer = imap_framer_new(dir_from(side), LINE_MODE_MAX, on_line_unit, lr);
		if (lr->framer == NULL) {
			s->line_mode[side] = 0;
			return 0;
		}
	}
	while (session_in_line_mode(s, side) && lr->action == LINE_ACTION_NONE && s->stream[!side] != NULL) {
		size_t have = evbuffer_get_length(input), k, used;
		struct evbuffer_ptr pos;

		if (have <= lr->fed)
			break;
		k = have - lr->fed < sizeof(buf) ? have - lr->fed : sizeof(buf);
		if (evbuffer_ptr_set(input, &pos, lr->fed, EVBUFFER_PTR_SET) != 0 ||
		    evbuffer_copyout_from(input, &pos, buf, k) != (ev_ssize_t)k)
			break;
		lr->fed += k;
		used = imap_framer_feed(lr->framer, buf, k);
		lr->fed -= k - used;
	}
	if (lr->action == LINE_ACTION_NONE && session_in_line_mode(s, side) && s->stream[!side] != NULL &&
	    lr->fed > 0 && imap_framer_literal_left(lr->framer) > 0) {
		/* literal bytes go on as they come, not when the framer's chunk
		 * is full: what is held is the literal's alone */
		if (lr->refusing) {
			session_observe(s, dir_from(side), input, lr->fed, IMAP_ORIGIN_PEER, session_now(s));
			evbuffer_drain(input, lr->fed);
		} else {
			pass_bytes(s, dir_from(side), input, lr->fed,
				   proxy_stream_output(s->stream[!side]));
		}
		lr->ahead += lr->fed;
		lr->fed = 0;
	}
	if (lr->action == LINE_ACTION_NONE && session_in_line_mode(s, side) && lr->fed > LINE_MODE_MAX &&
	    imap_framer_literal_left(lr->framer) == 0) {
		if (side == SIDE_CLIENT && client_waits_for_tls(s))
			line_action(lr, LINE_ACTION_TOO_LONG, (const uint8_t *)"", 0);
		else
			s->line_mode[side] = 0; /* not a line we could edit: relay raw from here */
	}
	if (side == SIDE_CLIENT && s->stream[SIDE_CLIENT] != NULL)
		proxy_stream_flush(s->stream[SIDE_CLIENT]); /* a NO of the proxy's */
	action = lr->action;
	lr->action = LINE_ACTION_NONE;
	switch (action) {
	case LINE_ACTION_NONE:
		return 0;
	case LINE_ACTION_STARTTLS:
		session_client_starttls(s, lr->action_line, lr->action_len);
		return 1;
	case LINE_ACTION_PREAUTH:
		session_notice_quoting(s, "upstream greeting (not shown to the client):",
			       (const char *)lr->action_line, lr->action_len);
		session_upstream_failed(s, "greeting",
				"PREAUTH (already authenticated) while the client has yet to start "
				"TLS; no plaintext session");
		return 1;
	case LINE_ACTION_TOO_LONG:
		session_set_closed_by(s, CAPTURE_SIDE_PROXY, CAPTURE_END_ERROR,
			      "a client line over 8 KiB before STARTTLS");
		session_send_bye(s, "* BYE imaptap: a line over 8 KiB before STARTTLS\r\n");
		session_finish(s);
		return 1;
	}
	return 0;
}
