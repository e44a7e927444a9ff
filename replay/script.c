#include "replay/script.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/endpoint.h"
#include "replay/script_int.h"

const char *replay_script_kind_str(enum replay_script_kind kind)
{
	switch (kind) {
	case REPLAY_SCRIPT_OPEN:
		return "open";
	case REPLAY_SCRIPT_DATA:
		return "data";
	case REPLAY_SCRIPT_WINDOW:
		return "window";
	case REPLAY_SCRIPT_CLOSE:
		return "close";
	}
	return "kind?";
}

/* Returns -1 after writing "name:line:column: message" into err. */
int script_fail(struct parser *p, unsigned column, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(p->err, p->errlen, "%s:%u:%u: ", p->name, p->line, column);
	if (n < 0 || (size_t)n >= p->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

const char *script_who(enum imap_dir dir)
{
	return dir == IMAP_C2S ? "client" : "server";
}

struct replay_script_event *script_add_event(struct parser *p, enum replay_script_kind kind,
					     imap_time_us at)
{
	struct replay_script *s = p->script;
	struct replay_script_event *e;

	if (s->count == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		struct replay_script_event *grown = realloc(s->events, cap * sizeof(*grown));

		if (grown == NULL) {
			script_fail(p, 1, "out of memory");
			return NULL;
		}
		s->events = grown;
		p->cap = cap;
	}
	e = &s->events[s->count++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->session = p->session;
	e->at = at;
	e->line = p->line;
	p->now = at;
	return e;
}

/* The time of the next event: after a delay, or a step after the last. */
imap_time_us script_next_time(struct parser *p)
{
	if (p->delayed) {
		p->delayed = false;
		return p->next;
	}
	if (p->script->count == 0)
		return 0;
	return p->now + STEP_US;
}

int script_open_session(struct parser *p)
{
	struct replay_script_event *e;

	if (p->opened)
		return 0;
	if (p->session == 0)
		p->session = 1;
	e = script_add_event(p, REPLAY_SCRIPT_OPEN, script_next_time(p));
	if (e == NULL)
		return -1;
	if (p->client[0] == '\0')
		snprintf(p->client, sizeof(p->client), "127.0.0.1:%u", DEFAULT_CLIENT_PORT + p->session);
	if (p->server[0] == '\0')
		snprintf(p->server, sizeof(p->server), "%s", DEFAULT_SERVER);
	/* one TCP stream has one IP version on both ends */
	if ((p->client[0] == '[') != (p->server[0] == '['))
		return script_fail(p, 1, "the session's client %s and server %s are of different IP "
			    "versions", p->client, p->server);
	memcpy(e->client, p->client, sizeof(e->client));
	memcpy(e->server, p->server, sizeof(e->server));
	p->opened = true;
	p->started = e->at;
	p->script->sessions = p->session;
	return 0;
}

/* Literal bytes of dir that never came: an error at the current line. */
int script_check_owed(struct parser *p, enum imap_dir dir, unsigned column)
{
	if (p->owed[dir] == 0)
		return 0;
	return script_fail(p, column, "literal announced {%llu} on line %u but %llu byte(s) follow",
		    (unsigned long long)p->announced[dir], p->announced_line[dir],
		    (unsigned long long)(p->announced[dir] - p->owed[dir]));
}

/* Ends the current session: the implied close unless the script closed it. */
static int end_session(struct parser *p)
{
	struct replay_script_event *e;

	if (!p->opened)
		return 0;
	if (script_check_owed(p, IMAP_C2S, 1) != 0 || script_check_owed(p, IMAP_S2C, 1) != 0)
		return -1;
	if (!p->closed) {
		e = script_add_event(p, REPLAY_SCRIPT_CLOSE, script_next_time(p));
		if (e == NULL)
			return -1;
		e->dir = IMAP_C2S;
		e->line = 0;
	}
	return 0;
}

static int new_session(struct parser *p)
{
	if (end_session(p) != 0)
		return -1;
	if (p->opened || p->session == 0)
		p->session++;
	p->opened = p->closed = false;
	p->client[0] = p->server[0] = '\0';
	memset(p->window_closed, 0, sizeof(p->window_closed));
	memset(p->owed, 0, sizeof(p->owed));
	memset(p->literal_begun, 0, sizeof(p->literal_begun));
	return 0;
}

/* An event of the session body may come: opens the session, refuses
 * anything after its close. */
int script_body(struct parser *p, const char *what)
{
	if (p->closed)
		return script_fail(p, 1, "%s after the session closed on line %u (start another with "
			    "'=== session')", what, p->closed_line);
	return script_open_session(p);
}

/* "30s", "250ms", "1.5s", "2m", "100us": microseconds, at most 30 days.
 * Returns 0, or -1 (no message). */
static int parse_duration(const char *t, size_t n, imap_time_us *out)
{
	int64_t whole = 0, frac = 0, scale = 1, unit;
	size_t i = 0, digits = 0, fdigits = 0;

	while (i < n && t[i] >= '0' && t[i] <= '9') {
		if (++digits > 9)
			return -1;
		whole = whole * 10 + (t[i++] - '0');
	}
	if (i < n && t[i] == '.') {
		i++;
		while (i < n && t[i] >= '0' && t[i] <= '9') {
			if (++fdigits > 6)
				return -1;
			frac = frac * 10 + (t[i++] - '0');
			scale *= 10;
		}
	}
	if (digits + fdigits == 0)
		return -1;
	if (n - i == 2 && memcmp(t + i, "us", 2) == 0)
		unit = 1;
	else if (n - i == 2 && memcmp(t + i, "ms", 2) == 0)
		unit = 1000;
	else if (n - i == 1 && t[i] == 's')
		unit = IMAP_US_PER_S;
	else if (n - i == 1 && t[i] == 'm')
		unit = 60000000;
	else
		return -1;
	*out = whole * unit + frac * unit / scale;
	return *out > DELAY_MAX_US ? -1 : 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* The words of a directive line: up to max (pointer, length) pairs.
 * Returns how many, or max + 1 when there are more. */
static unsigned split_words(const char *line, size_t len, const char **word, size_t *wlen,
			    unsigned max)
{
	unsigned n = 0;
	size_t i = 0;

	for (;;) {
		size_t start;

		while (i < len && is_space(line[i]))
			i++;
		if (i == len)
			return n;
		if (n == max)
			return max + 1;
		start = i;
		while (i < len && !is_space(line[i]))
			i++;
		word[n] = line + start;
		wlen[n] = i - start;
		n++;
	}
}

static bool word_is(const char *w, size_t n, const char *s)
{
	return strlen(s) == n && memcmp(w, s, n) == 0;
}

unsigned script_column_of(const char *line, const char *at)
{
	return (unsigned)(at - line) + 1;
}

/* "+30s": the next event comes that long after the last one. */
static int delay_line(struct parser *p, const char *line, size_t len)
{
	imap_time_us d;

	if (parse_duration(line + 1, len - 1, &d) != 0)
		return script_fail(p, 2, "bad delay '%.*s' (a number and a unit: +250ms, +1.5s, +30s, +2m; "
			    "at most 30 days)", (int)(len > 40 ? 40 : len), line);
	p->next = (p->delayed ? p->next : p->now) + d;
	p->delayed = true;
	return 0;
}

/* "@12.5s": the next event comes that long after the session started. */
static int offset_line(struct parser *p, const char *line, size_t len)
{
	imap_time_us d, at;

	if (parse_duration(line + 1, len - 1, &d) != 0)
		return script_fail(p, 2, "bad time '%.*s' (a number and a unit from the session's start: "
			    "@12.5s, @2m)", (int)(len > 40 ? 40 : len), line);
	if (script_body(p, "a time") != 0)
		return -1;
	at = p->started + d;
	if (at < p->now)
		return script_fail(p, 1, "time %.*s is before the previous event (%.3f s into the session)",
			    (int)len, line, (double)(p->now - p->started) / 1e6);
	p->next = at;
	p->delayed = true;
	return 0;
}

/* "127.0.0.1:143" or "[::1]:143" */
/* ADDRESS:PORT in numbers, the port not 0. */
static bool valid_endpoint(const char *t, size_t n)
{
	char text[REPLAY_SCRIPT_ADDR_MAX];
	struct capture_endpoint e;

	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, t, n);
	text[n] = '\0';
	return capture_endpoint_parse(text, &e) && e.port != 0;
}

/* "@expect done-stall, command-stall", "@expect none" */
static int expect_line(struct parser *p, const char *line, size_t len)
{
	struct replay_script *s = p->script;
	size_t i = strlen("@expect");
	bool none = false, any = false;

	if (p->session > 1 || p->opened)
		return script_fail(p, 1, "@expect belongs in the script's header, before the first session's "
			    "first line");
	while (i < len) {
		size_t start;
		enum imap_rule rule;

		while (i < len && (is_space(line[i]) || line[i] == ','))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && !is_space(line[i]) && line[i] != ',')
			i++;
		if (word_is(line + start, i - start, "none")) {
			none = true;
			continue;
		}
		if (!imap_rule_parse(line + start, i - start, &rule))
			return script_fail(p, (unsigned)start + 1, "unknown rule '%.*s' (rule ids are listed in "
				    "docs/rules.md; or 'none')", (int)(i - start), line + start);
		s->expect[rule] = true;
		any = true;
	}
	if (!none && !any)
		return script_fail(p, 1, "@expect needs rule ids, or 'none'");
	if (none && any)
		return script_fail(p, 1, "@expect: 'none' with rules");
	s->expect_given = true;
	return 0;
}

static int endpoint_line(struct parser *p, const char *line, size_t len, bool client)
{
	const char *word[2];
	size_t wlen[2];
	unsigned n = split_words(line, len, word, wlen, 2);
	char *dst = client ? p->client : p->server;

	if (p->opened)
		return script_fail(p, 1, "%s belongs in the session's header, before its first line",
			    client ? "@client" : "@server");
	if (n != 2)
		return script_fail(p, 1, "%s takes one ADDRESS:PORT", client ? "@client" : "@server");
	if (!valid_endpoint(word[1], wlen[1]))
		return script_fail(p, script_column_of(line, word[1]),
			    "'%.*s' is no ADDRESS:PORT (127.0.0.1:50123, [::1]:143)", (int)wlen[1],
			    word[1]);
	snprintf(dst, REPLAY_SCRIPT_ADDR_MAX, "%.*s", (int)wlen[1], word[1]);
	return 0;
}

static int at_line(struct parser *p, const char *line, size_t len)
{
	size_t n = 1;

	if (len > 1 && ((line[1] >= '0' && line[1] <= '9') || line[1] == '.'))
		return offset_line(p, line, len);
	while (n < len && !is_space(line[n]))
		n++;
	if (word_is(line, n, "@expect"))
		return expect_line(p, line, len);
	if (word_is(line, n, "@client") || word_is(line, n, "@server"))
		return endpoint_line(p, line, len, line[1] == 'c');
	return script_fail(p, 1, "unknown directive '%.*s' (@expect, @client, @server, or a time like "
		    "@12.5s)", (int)(n > 40 ? 40 : n), line);
}

/* "close client", "reset server", "window client closed" */
static int directive_line(struct parser *p, const char *line, size_t len)
{
	const char *word[3];
	size_t wlen[3];
	unsigned n = split_words(line, len, word, wlen, 3);
	struct replay_script_event *e;
	enum imap_dir dir;
	bool blocked;

	if (n >= 2 && (word_is(word[0], wlen[0], "close") || word_is(word[0], wlen[0], "reset"))) {
		if (n != 2 || (!word_is(word[1], wlen[1], "client") && !word_is(word[1], wlen[1], "server")))
			return script_fail(p, 1, "expected '%.*s client' or '%.*s server'", (int)wlen[0], word[0],
				    (int)wlen[0], word[0]);
		if (script_body(p, "a close") != 0)
			return -1;
		if (script_check_owed(p, IMAP_C2S, 1) != 0 || script_check_owed(p, IMAP_S2C, 1) != 0)
			return -1;
		e = script_add_event(p, REPLAY_SCRIPT_CLOSE, script_next_time(p));
		if (e == NULL)
			return -1;
		e->dir = word[1][0] == 'c' ? IMAP_C2S : IMAP_S2C;
		e->reset = word[0][0] == 'r';
		p->closed = true;
		p->closed_line = p->line;
		return 0;
	}
	/* the client's window closes: bytes toward the client (s2c) wait */
	if (n != 3 || (!word_is(word[1], wlen[1], "client") && !word_is(word[1], wlen[1], "server")) ||
	    (!word_is(word[2], wlen[2], "closed") && !word_is(word[2], wlen[2], "open")))
		return script_fail(p, 1, "expected 'window client|server closed|open'");
	dir = word[1][0] == 'c' ? IMAP_S2C : IMAP_C2S;
	blocked = word[2][0] == 'c';
	if (script_body(p, "a window change") != 0)
		return -1;
	if (p->window_closed[dir] == blocked)
		return script_fail(p, script_column_of(line, word[2]), "the %s's window is %s already",
			    script_who(!dir), blocked ? "closed" : "open");
	e = script_add_event(p, REPLAY_SCRIPT_WINDOW, script_next_time(p));
	if (e == NULL)
		return -1;
	e->dir = dir;
	e->blocked = blocked;
	p->window_closed[dir] = blocked;
	p->window_line[dir] = p->line;
	return 0;
}

static int parse_line(struct parser *p, const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && is_space(line[i]))
		i++;
	if (i == len || line[0] == '#')
		return 0;
	if ((line[0] == 'C' || line[0] == 'S') && len >= 2 &&
	    (line[1] == ':' || line[1] == '=' || line[1] == '~')) {
		if (len > 2 && line[2] != ' ')
			return script_fail(p, 3, "expected a space after '%.2s' (then the text)", line);
		return script_data_line(p, line, len);
	}
	if (line[0] == '+')
		return delay_line(p, line, len);
	if (line[0] == '@')
		return at_line(p, line, len);
	if (len >= 3 && memcmp(line, "===", 3) == 0)
		return new_session(p);
	if ((len >= 5 && memcmp(line, "close", 5) == 0) || (len >= 5 && memcmp(line, "reset", 5) == 0) ||
	    (len >= 6 && memcmp(line, "window", 6) == 0))
		return directive_line(p, line, len);
	if (i > 0)
		return script_fail(p, 1, "a line starts in the first column ('C:', 'S:', '+30s', a directive or "
			    "'#')");
	return script_fail(p, 1, "expected 'C:', 'S:', 'C=', 'S=', 'C~', 'S~', a delay (+2s), a time "
		    "(@12.5s), a directive (@expect, close, reset, window, ===) or a comment (#), "
		    "not '%.*s'", (int)(len > 20 ? 20 : len), line);
}

int replay_script_parse(const char *name, const char *text, size_t len,
			struct replay_script **script_r, char *err, size_t errlen)
{
	struct parser p = {.name = name, .err = err, .errlen = errlen};
	size_t off = 0;

	*script_r = NULL;
	p.script = calloc(1, sizeof(*p.script));
	if (p.script == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -1;
	}
	while (off < len) {
		const char *line = text + off;
		const char *lf = memchr(line, '\n', len - off);
		size_t n = lf != NULL ? (size_t)(lf - line) : len - off;

		off += n + (lf != NULL);
		p.line++;
		/* a CRLF file's CR belongs to the file, not to the text */
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (parse_line(&p, line, n) != 0)
			goto fail;
	}
	if (end_session(&p) != 0)
		goto fail;
	if (p.script->count == 0 && p.session > 0) {
		/* only separators: one empty session */
		if (script_open_session(&p) != 0 || end_session(&p) != 0)
			goto fail;
	}
	if (p.script->count == 0) {
		p.line = p.line ? p.line : 1;
		script_fail(&p, 1, "the script has no session (no 'C:' or 'S:' line)");
		goto fail;
	}
	*script_r = p.script;
	return 0;
fail:
	replay_script_free(&p.script);
	return -1;
}

void replay_script_free(struct replay_script **script)
{
	struct replay_script *s = *script;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->count; i++)
		free(s->events[i].data);
	free(s->events);
	free(s);
	*script = NULL;
}
