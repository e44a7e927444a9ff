/* The lines of a transcript script that carry bytes (docs/script.md): a
 * line as text, as raw bytes with escapes, or as literal text; literals
 * announced and owed; the event each becomes. */
#include "replay/script_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* one hex digit's value, or -1 (OpenSSL's, as it reads hex itself) */
static int hex_digit(char c)
{
	return OPENSSL_hexchar2int((unsigned char)c);
}

/* Decodes the escapes of a raw line into out (at least len bytes). */
static int unescape(struct parser *p, const char *line, const char *t, size_t len, uint8_t *out,
		    size_t *out_len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (t[i] != '\\') {
			out[o++] = (uint8_t)t[i];
			continue;
		}
		if (i + 1 == len)
			return script_fail(p, script_column_of(line, t + i), "a lone '\\' ends the line (write '\\\\' "
				    "for a backslash)");
		switch (t[++i]) {
		case '\\':
			out[o++] = '\\';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 'n':
			out[o++] = '\n';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'x':
			if (i + 2 >= len || (hi = hex_digit(t[i + 1])) < 0 || (lo = hex_digit(t[i + 2])) < 0)
				return script_fail(p, script_column_of(line, t + i - 1), "'\\x' takes two hex digits");
			out[o++] = (uint8_t)(hi << 4 | lo);
			i += 2;
			break;
		default:
			return script_fail(p, script_column_of(line, t + i - 1),
				    "unknown escape '\\%c' (\\\\, \\r, \\n, \\t or \\xNN)", t[i]);
		}
	}
	*out_len = o;
	return 0;
}

size_t replay_script_announced(const char *t, size_t len, uint64_t *n)
{
	size_t i, end;
	uint64_t v = 0;

	if (len < 3 || t[len - 1] != '}')
		return 0;
	end = len - 1;
	if (t[end - 1] == '+')
		end--;
	i = end;
	while (i > 0 && t[i - 1] >= '0' && t[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || t[i - 1] != '{')
		return 0;
	for (size_t k = i; k < end && v <= REPLAY_SCRIPT_LITERAL_MAX; k++)
		v = v * 10 + (uint64_t)(t[k] - '0');
	*n = v;
	return i;
}

/* The literal a line announces: 1 with *n, 0 for none, -1 for a count
 * larger than a script can spell out. */
static int announced_literal(struct parser *p, const char *line, const char *t, size_t len,
			     uint64_t *n)
{
	size_t digits = replay_script_announced(t, len, n);

	if (digits == 0)
		return 0;
	if (*n > REPLAY_SCRIPT_LITERAL_MAX)
		return script_fail(p, script_column_of(line, t + digits - 1),
			    "literal {%.*s} is larger than a script can spell out (at most %llu bytes)",
			    (int)(len - digits - 1 - (t[len - 2] == '+')), t + digits,
			    (unsigned long long)REPLAY_SCRIPT_LITERAL_MAX);
	return 1;
}

/* "C: text", "S= raw\r\n", "C~ literal text" */
int script_data_line(struct parser *p, const char *line, size_t len)
{
	enum imap_dir dir = line[0] == 'C' ? IMAP_C2S : IMAP_S2C;
	char form = line[1];
	const char *t = len > 3 ? line + 3 : line + len;
	size_t tlen = len > 3 ? len - 3 : 0;
	struct replay_script_event *e;
	uint8_t *data;
	size_t dlen = 0;
	uint64_t lit = 0;
	/* a literal's lines after its first are one unit of the recording:
	 * they come at once unless a delay says otherwise */
	bool same_instant = form != ':' && p->owed[dir] > 0 && p->literal_begun[dir] && !p->delayed;
	imap_time_us at;
	int r;

	if (script_body(p, "a line") != 0)
		return -1;
	if (p->window_closed[dir])
		return script_fail(p, 1, "the %s sends while the %s's window is closed (line %u); open it "
			    "first ('window %s open')", script_who(dir), script_who(!dir), p->window_line[dir],
			    script_who(!dir));
	data = malloc(tlen + 2);
	if (data == NULL)
		return script_fail(p, 1, "out of memory");
	switch (form) {
	case ':':
		if (script_check_owed(p, dir, 1) != 0)
			goto fail;
		r = announced_literal(p, line, t, tlen, &lit);
		if (r < 0)
			goto fail;
		memcpy(data, t, tlen);
		memcpy(data + tlen, "\r\n", 2);
		dlen = tlen + 2;
		if (r > 0 && lit > 0) {
			p->owed[dir] = p->announced[dir] = lit;
			p->announced_line[dir] = p->line;
		}
		break;
	case '~':
		if (p->owed[dir] == 0) {
			script_fail(p, 1, "'%c~' is literal data, but no literal is due (announce one with "
			     "{N} at the end of a '%c:' line)", line[0], line[0]);
			goto fail;
		}
		memcpy(data, t, tlen);
		dlen = tlen;
		/* the last line of a literal gives its CRLF only when the
		 * count says so */
		if (p->owed[dir] != tlen) {
			if (p->owed[dir] < tlen + 2) {
				script_fail(p, 1, "literal announced {%llu} on line %u has %llu byte(s) left, but "
				     "this line gives %zu with its CRLF (%zu without)",
				     (unsigned long long)p->announced[dir], p->announced_line[dir],
				     (unsigned long long)p->owed[dir], tlen + 2, tlen);
				goto fail;
			}
			memcpy(data + tlen, "\r\n", 2);
			dlen += 2;
		}
		p->owed[dir] -= dlen;
		break;
	case '=':
		if (unescape(p, line, t, tlen, data, &dlen) != 0)
			goto fail;
		if (dlen == 0) {
			script_fail(p, 3, "'%c=' with nothing after it sends nothing", line[0]);
			goto fail;
		}
		/* raw bytes are the stream's next bytes: they count toward a
		 * literal due, and are never read for announcements */
		p->owed[dir] -= p->owed[dir] < dlen ? p->owed[dir] : dlen;
		break;
	default:
		script_fail(p, 2, "internal: form '%c'", form);
		goto fail;
	}
	p->literal_begun[dir] = form != ':' && p->owed[dir] > 0;
	at = same_instant && p->script->count > 0 ? p->now : script_next_time(p);
	e = script_add_event(p, REPLAY_SCRIPT_DATA, at);
	if (e == NULL)
		goto fail;
	e->dir = dir;
	e->data = data;
	e->len = dlen;
	return 0;
fail:
	free(data);
	return -1;
}
