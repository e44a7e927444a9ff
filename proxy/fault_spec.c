#include "proxy/fault_spec.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "imap/capability.h"

const char proxy_fault_grammar[] =
	"hold-idle-completion:D | delay:c2s|s2c:D | split:c2s|s2c:byte|random[:SEED]|coalesce"
	" | stop-reading:client|server:D | bye:after-idle-continuation|in-literal[:c2s|s2c]"
	" | bye-after-idle:D | answer:COMMAND:NO|BAD | respond-code:CODE:COMMAND"
	" | max-connections:N | hide-capability:CAP[,CAP...] | end-idle-early[:D],"
	" then optionally ,session=N ,nth=N"
	" ,after=COMMAND;"
	" D is 500ms, 2s, 1.5m (docs/faults.md)";

#define DURATION_MAX (24 * 3600 * IMAP_US_PER_S)

/* A slice of the spec being parsed. */
struct word {
	const char *p;
	size_t len;
};

static bool word_is(struct word w, const char *s)
{
	return w.len == strlen(s) && memcmp(w.p, s, w.len) == 0;
}

/* Cuts w at the first c: the part before it is returned, w keeps the rest
 * (empty when there is no c; *found says which). */
static struct word cut(struct word *w, char c, bool *found)
{
	const char *at = memchr(w->p, c, w->len);
	struct word head = *w;

	if (at == NULL) {
		w->p += w->len;
		w->len = 0;
		*found = false;
		return head;
	}
	head.len = (size_t)(at - w->p);
	w->len -= head.len + 1;
	w->p = at + 1;
	*found = true;
	return head;
}

/* "500ms", "2s", "1.5m", "3" (seconds): microseconds in (0, 24 h]. */
static int parse_duration(struct word w, imap_time_us *out)
{
	int64_t whole = 0, frac = 0, frac_scale = 1, unit = IMAP_US_PER_S;
	size_t i = 0, digits = 0;

	while (i < w.len && w.p[i] >= '0' && w.p[i] <= '9') {
		if (whole > DURATION_MAX)
			return -1;
		whole = whole * 10 + (w.p[i] - '0');
		i++;
		digits++;
	}
	if (i < w.len && w.p[i] == '.') {
		i++;
		while (i < w.len && w.p[i] >= '0' && w.p[i] <= '9') {
			if (frac_scale < IMAP_US_PER_S) {
				frac = frac * 10 + (w.p[i] - '0');
				frac_scale *= 10;
			}
			i++;
			digits++;
		}
	}
	if (digits == 0)
		return -1;
	if (i == w.len || (w.len - i == 1 && w.p[i] == 's'))
		unit = IMAP_US_PER_S;
	else if (w.len - i == 2 && w.p[i] == 'm' && w.p[i + 1] == 's')
		unit = 1000;
	else if (w.len - i == 1 && w.p[i] == 'm')
		unit = 60 * IMAP_US_PER_S;
	else
		return -1;
	if (whole > DURATION_MAX / unit)
		return -1;
	*out = whole * unit + frac * unit / frac_scale;
	if (*out <= 0 || *out > DURATION_MAX)
		return -1;
	return 0;
}

static int parse_count(struct word w, unsigned *out)
{
	unsigned long v = 0;

	if (w.len == 0 || w.len > 9)
		return -1;
	for (size_t i = 0; i < w.len; i++) {
		if (w.p[i] < '0' || w.p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(w.p[i] - '0');
	}
	if (v == 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* An IMAP command name: letters, digits, '-' and '.'; kept upper case. */
static int parse_command(struct word w, char out[PROXY_FAULT_NAME_MAX])
{
	if (w.len == 0 || w.len >= PROXY_FAULT_NAME_MAX)
		return -1;
	for (size_t i = 0; i < w.len; i++) {
		char c = w.p[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_'))
			return -1;
		out[i] = c;
	}
	out[w.len] = '\0';
	return 0;
}

/* One more capability for hide-capability: an atom (AUTH=PLAIN too). */
static int parse_capability(struct word w, struct proxy_fault *f)
{
	char *out = f->hide[f->hide_count];
	size_t all = w.len;

	/* the canonical spec stays short enough to quote in a mark */
	for (unsigned i = 0; i < f->hide_count; i++)
		all += strlen(f->hide[i]) + 1;
	if (w.len == 0 || w.len >= PROXY_FAULT_NAME_MAX || f->hide_count == PROXY_FAULT_HIDE_MAX ||
	    all > 80)
		return -1;
	for (size_t i = 0; i < w.len; i++) {
		char c = w.p[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c <= ' ' || c > '~' || strchr("(){%*\"\\]", c) != NULL)
			return -1;
		out[i] = c;
	}
	out[w.len] = '\0';
	f->hide_count++;
	return 0;
}

static int parse_dir(struct word w, enum imap_dir *out)
{
	if (word_is(w, "c2s"))
		*out = IMAP_C2S;
	else if (word_is(w, "s2c"))
		*out = IMAP_S2C;
	else
		return -1;
	return 0;
}

#define FAIL(...)                                          \
	do {                                               \
		snprintf(err, err_size, __VA_ARGS__);      \
		return -1;                                 \
	} while (0)

/* The part before the first ',': the action and its arguments. */
static int parse_action(struct word w, struct proxy_fault *f, char *err, size_t err_size)
{
	bool more;
	struct word name = cut(&w, ':', &more), arg;

	if (word_is(name, "hold-idle-completion")) {
		f->action = PROXY_FAULT_HOLD_IDLE_COMPLETION;
		if (!more || parse_duration(w, &f->duration) != 0)
			FAIL("hold-idle-completion needs a duration up to 24h, as in "
			     "hold-idle-completion:30s, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "delay")) {
		f->action = PROXY_FAULT_DELAY;
		arg = cut(&w, ':', &more);
		if (parse_dir(arg, &f->dir) != 0)
			FAIL("delay needs a direction, c2s or s2c, as in delay:s2c:2s, not '%.*s'",
			     (int)arg.len, arg.p);
		if (!more || parse_duration(w, &f->duration) != 0)
			FAIL("delay needs a duration up to 24h after the direction, as in "
			     "delay:s2c:2s, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "split")) {
		char why[200];

		f->action = PROXY_FAULT_SPLIT;
		arg = cut(&w, ':', &more);
		if (parse_dir(arg, &f->dir) != 0)
			FAIL("split needs a direction, c2s or s2c, as in split:s2c:byte, not '%.*s'",
			     (int)arg.len, arg.p);
		if (!more || imap_split_parse(w.p, w.len, &f->split, why, sizeof(why)) != 0)
			FAIL("split:%s: %s", imap_dir_str(f->dir),
			     more ? why : "needs byte, random, random:SEED or coalesce");
		return 0;
	}
	if (word_is(name, "stop-reading")) {
		f->action = PROXY_FAULT_STOP_READING;
		arg = cut(&w, ':', &more);
		if (word_is(arg, "client"))
			f->read_client = true;
		else if (!word_is(arg, "server"))
			FAIL("stop-reading needs a side, client or server, as in "
			     "stop-reading:client:10s, not '%.*s'", (int)arg.len, arg.p);
		if (!more || parse_duration(w, &f->duration) != 0)
			FAIL("stop-reading needs a duration up to 24h after the side, as in "
			     "stop-reading:client:10s, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "bye")) {
		f->action = PROXY_FAULT_BYE;
		arg = cut(&w, ':', &more);
		if (word_is(arg, "after-idle-continuation") && !more) {
			f->point = PROXY_FAULT_AFTER_IDLE_CONTINUATION;
			return 0;
		}
		if (word_is(arg, "in-literal")) {
			f->point = PROXY_FAULT_IN_LITERAL;
			if (!more)
				return 0;
			if (parse_dir(w, &f->dir) != 0)
				FAIL("bye:in-literal takes c2s or s2c (whose literal), not '%.*s'",
				     (int)w.len, w.p);
			f->dir_set = true;
			return 0;
		}
		FAIL("bye needs a point, after-idle-continuation or in-literal[:c2s|s2c], not '%.*s%s%.*s'",
		     (int)arg.len, arg.p, more ? ":" : "", (int)w.len, w.p);
	}
	if (word_is(name, "answer")) {
		f->action = PROXY_FAULT_ANSWER;
		arg = cut(&w, ':', &more);
		if (parse_command(arg, f->command) != 0)
			FAIL("answer needs a command name, as in answer:SELECT:NO, not '%.*s'",
			     (int)arg.len, arg.p);
		if (word_is(w, "NO") || word_is(w, "no"))
			f->bad = false;
		else if (word_is(w, "BAD") || word_is(w, "bad"))
			f->bad = true;
		else
			FAIL("answer:%s needs NO or BAD, not '%.*s'", f->command, (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "bye-after-idle")) {
		f->action = PROXY_FAULT_BYE;
		f->point = PROXY_FAULT_IDLE_FOR;
		if (!more || parse_duration(w, &f->duration) != 0)
			FAIL("bye-after-idle needs how long an IDLE lasts before the BYE, up to 24h, as "
			     "in bye-after-idle:29m, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "respond-code")) {
		/* an answer with a code: NO [THROTTLED], as a throttling server says */
		f->action = PROXY_FAULT_ANSWER;
		arg = cut(&w, ':', &more);
		if (parse_command(arg, f->code) != 0)
			FAIL("respond-code needs a response code, as in respond-code:THROTTLED:FETCH, "
			     "not '%.*s'", (int)arg.len, arg.p);
		if (!more || parse_command(w, f->command) != 0)
			FAIL("respond-code:%s needs the command it answers, as in "
			     "respond-code:%s:FETCH, not '%.*s'", f->code, f->code, (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "hide-capability")) {
		f->action = PROXY_FAULT_HIDE_CAPABILITY;
		if (!more || parse_capability(w, f) != 0)
			FAIL("hide-capability needs a capability name, as in hide-capability:MOVE, "
			     "not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "end-idle-early")) {
		f->action = PROXY_FAULT_END_IDLE_EARLY;
		if (more && parse_duration(w, &f->duration) != 0)
			FAIL("end-idle-early takes how long after the server's + to IDLE the OK comes, "
			     "up to 24h, as in end-idle-early:2s (without it, right before the +), "
			     "not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(name, "max-connections")) {
		f->action = PROXY_FAULT_MAX_CONNECTIONS;
		if (!more || parse_count(w, &f->limit) != 0 || f->limit > 100000)
			FAIL("max-connections needs how many sessions may be open at once, from 1, "
			     "as in max-connections:15, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	FAIL("unknown fault '%.*s'", (int)name.len, name.p);
}

static int parse_qualifier(struct word w, struct proxy_fault *f, char *err, size_t err_size)
{
	bool has_value;
	struct word key = cut(&w, '=', &has_value);

	if (f->action == PROXY_FAULT_MAX_CONNECTIONS)
		FAIL("max-connections counts the sessions open at once: session=, nth= and after= "
		     "do not apply to it");
	/* hide-capability:MOVE,QRESYNC: a part that is no qualifier is one
	 * more capability (AUTH=PLAIN has an = too) */
	if (f->action == PROXY_FAULT_HIDE_CAPABILITY && !word_is(key, "session") &&
	    !word_is(key, "nth") && !word_is(key, "after")) {
		struct word whole = {key.p, has_value ? (size_t)(w.p + w.len - key.p) : key.len};

		if (parse_capability(whole, f) != 0)
			FAIL("hide-capability takes at most %d capability names, 80 characters in all, "
			     "as in hide-capability:MOVE,QRESYNC, not '%.*s'", PROXY_FAULT_HIDE_MAX,
			     (int)whole.len, whole.p);
		return 0;
	}
	if (word_is(key, "session")) {
		if (!has_value || parse_count(w, &f->session) != 0)
			FAIL("session= takes a session number from 1, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(key, "nth")) {
		if (f->action == PROXY_FAULT_DELAY || f->action == PROXY_FAULT_SPLIT)
			FAIL("nth= is for faults that happen at a point; %s applies to every byte",
			     proxy_fault_action_str(f->action));
		if (f->action == PROXY_FAULT_STOP_READING && f->after[0] == '\0')
			FAIL("nth= on stop-reading counts the command named by after=: put after=COMMAND first");
		if (!has_value || parse_count(w, &f->nth) != 0)
			FAIL("nth= takes a count from 1, not '%.*s'", (int)w.len, w.p);
		return 0;
	}
	if (word_is(key, "after")) {
		if (f->action != PROXY_FAULT_STOP_READING)
			FAIL("after= is for stop-reading only");
		if (!has_value || parse_command(w, f->after) != 0)
			FAIL("after= takes a command name, as in after=FETCH, not '%.*s'", (int)w.len,
			     w.p);
		return 0;
	}
	FAIL("unknown qualifier '%.*s' (session=N, nth=N or after=COMMAND)", (int)key.len, key.p);
}

int proxy_fault_parse(const char *spec, size_t len, struct proxy_fault *out, char *err,
		      size_t err_size)
{
	struct proxy_fault f;
	struct word w = {spec, len}, part;
	bool more;

	memset(&f, 0, sizeof(f));
	if (len == 0)
		FAIL("empty fault");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)spec[i] < 0x21 || (unsigned char)spec[i] > 0x7e)
			FAIL("byte %zu of the fault is a space, a control character or not ASCII;"
			     " a fault is printable ASCII without spaces", i + 1);
	part = cut(&w, ',', &more);
	if (parse_action(part, &f, err, err_size) != 0)
		return -1;
	while (more) {
		part = cut(&w, ',', &more);
		if (parse_qualifier(part, &f, err, err_size) != 0)
			return -1;
	}
	*out = f;
	return 0;
}

const char *proxy_fault_action_str(enum proxy_fault_action a)
{
	switch (a) {
	case PROXY_FAULT_HOLD_IDLE_COMPLETION:
		return "hold-idle-completion";
	case PROXY_FAULT_DELAY:
		return "delay";
	case PROXY_FAULT_SPLIT:
		return "split";
	case PROXY_FAULT_STOP_READING:
		return "stop-reading";
	case PROXY_FAULT_BYE:
		return "bye";
	case PROXY_FAULT_ANSWER:
		return "answer";
	case PROXY_FAULT_MAX_CONNECTIONS:
		return "max-connections";
	case PROXY_FAULT_HIDE_CAPABILITY:
		return "hide-capability";
	case PROXY_FAULT_END_IDLE_EARLY:
		return "end-idle-early";
	}
	return "fault?";
}

size_t proxy_fault_hide(const struct proxy_fault *f, const uint8_t *line, size_t len, uint8_t *out)
{
	const char *names[PROXY_FAULT_HIDE_MAX];

	for (unsigned k = 0; k < f->hide_count; k++)
		names[k] = f->hide[k];
	return imap_capability_hide(line, len, names, f->hide_count, out, len);
}

bool proxy_fault_needs_imap(const struct proxy_fault *f)
{
	switch (f->action) {
	case PROXY_FAULT_HOLD_IDLE_COMPLETION:
	case PROXY_FAULT_BYE:
	case PROXY_FAULT_ANSWER:
	case PROXY_FAULT_HIDE_CAPABILITY:
	case PROXY_FAULT_END_IDLE_EARLY:
		return true;
	case PROXY_FAULT_STOP_READING:
		return f->after[0] != '\0';
	case PROXY_FAULT_DELAY:
	case PROXY_FAULT_SPLIT:
	case PROXY_FAULT_MAX_CONNECTIONS:
		return false;
	}
	return false;
}

/* "2s", "1.5s", "250ms": the shortest exact form. */
static void duration_str(imap_time_us d, char *buf, size_t size)
{
	if (d % IMAP_US_PER_S == 0)
		snprintf(buf, size, "%" PRId64 "s", d / IMAP_US_PER_S);
	else if (d % 1000 == 0)
		snprintf(buf, size, "%" PRId64 "ms", d / 1000);
	else
		snprintf(buf, size, "%" PRId64 ".%06" PRId64 "s", d / IMAP_US_PER_S, d % IMAP_US_PER_S);
}

void proxy_fault_spec_str(const struct proxy_fault *f, char *buf, size_t size)
{
	char d[32], how[40];
	int n = 0;

	duration_str(f->duration, d, sizeof(d));
	switch (f->action) {
	case PROXY_FAULT_HOLD_IDLE_COMPLETION:
		n = snprintf(buf, size, "hold-idle-completion:%s", d);
		break;
	case PROXY_FAULT_DELAY:
		n = snprintf(buf, size, "delay:%s:%s", imap_dir_str(f->dir), d);
		break;
	case PROXY_FAULT_SPLIT:
		imap_split_describe(&f->split, how, sizeof(how));
		n = snprintf(buf, size, "split:%s:%s", imap_dir_str(f->dir), how);
		break;
	case PROXY_FAULT_STOP_READING:
		n = snprintf(buf, size, "stop-reading:%s:%s", f->read_client ? "client" : "server", d);
		break;
	case PROXY_FAULT_BYE:
		if (f->point == PROXY_FAULT_IDLE_FOR)
			n = snprintf(buf, size, "bye-after-idle:%s", d);
		else
			n = snprintf(buf, size, "bye:%s%s%s",
				     f->point == PROXY_FAULT_IN_LITERAL ? "in-literal"
									 : "after-idle-continuation",
				     f->dir_set ? ":" : "", f->dir_set ? imap_dir_str(f->dir) : "");
		break;
	case PROXY_FAULT_ANSWER:
		if (f->code[0] != '\0')
			n = snprintf(buf, size, "respond-code:%s:%s", f->code, f->command);
		else
			n = snprintf(buf, size, "answer:%s:%s", f->command, f->bad ? "BAD" : "NO");
		break;
	case PROXY_FAULT_MAX_CONNECTIONS:
		n = snprintf(buf, size, "max-connections:%u", f->limit);
		break;
	case PROXY_FAULT_HIDE_CAPABILITY:
		n = snprintf(buf, size, "hide-capability:");
		for (unsigned i = 0; i < f->hide_count && n > 0 && (size_t)n < size; i++)
			n += snprintf(buf + n, size - (size_t)n, "%s%s", i ? "," : "", f->hide[i]);
		break;
	case PROXY_FAULT_END_IDLE_EARLY:
		n = snprintf(buf, size, "end-idle-early%s%s", f->duration ? ":" : "",
			     f->duration ? d : "");
		break;
	}
	if (n < 0 || (size_t)n >= size)
		return;
	if (f->after[0] != '\0')
		n += snprintf(buf + n, size - (size_t)n, ",after=%s", f->after);
	if (f->nth > 0 && (size_t)n < size)
		n += snprintf(buf + n, size - (size_t)n, ",nth=%u", f->nth);
	if (f->session > 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, ",session=%u", f->session);
}

void proxy_fault_explain(const struct proxy_fault *f, char *buf, size_t size)
{
	char d[32], how[40], when[80], where[40];

	duration_str(f->duration, d, sizeof(d));
	if (f->session > 0)
		snprintf(where, sizeof(where), "in session %u", f->session);
	else
		snprintf(where, sizeof(where), "in every session");
	if (f->nth > 0)
		snprintf(when, sizeof(when), "the %u%s time", f->nth,
			 f->nth % 10 == 1 && f->nth % 100 != 11   ? "st"
			 : f->nth % 10 == 2 && f->nth % 100 != 12 ? "nd"
			 : f->nth % 10 == 3 && f->nth % 100 != 13 ? "rd"
								  : "th");
	else
		snprintf(when, sizeof(when), "every time");
	switch (f->action) {
	case PROXY_FAULT_HOLD_IDLE_COMPLETION:
		snprintf(buf, size,
			 "holds the server's tagged completion of IDLE for %s after DONE, %s, %s", d,
			 when, where);
		break;
	case PROXY_FAULT_DELAY:
		snprintf(buf, size, "delays every byte %s by %s, %s",
			 f->dir == IMAP_C2S ? "from the client to the server"
					    : "from the server to the client",
			 d, where);
		break;
	case PROXY_FAULT_SPLIT:
		imap_split_describe(&f->split, how, sizeof(how));
		snprintf(buf, size, "re-splits the writes %s (%s), bytes unchanged, %s",
			 f->dir == IMAP_C2S ? "to the server" : "to the client", how, where);
		break;
	case PROXY_FAULT_STOP_READING:
		if (f->after[0] != '\0')
			snprintf(buf, size, "stops reading the %s for %s when the client sends %s, %s, %s",
				 f->read_client ? "client" : "server", d, f->after, when, where);
		else
			snprintf(buf, size, "stops reading the %s for %s once the session relays, %s",
				 f->read_client ? "client" : "server", d, where);
		break;
	case PROXY_FAULT_BYE:
		if (f->point == PROXY_FAULT_IDLE_FOR)
			snprintf(buf, size,
				 "sends * BYE to the client and closes when an IDLE has lasted %s without "
				 "DONE, %s, %s", d, f->nth ? when : "every time", where);
		else if (f->point == PROXY_FAULT_IN_LITERAL)
			snprintf(buf, size,
				 "sends * BYE to the client and closes halfway through a literal%s%s, %s, %s",
				 f->dir_set ? " " : "", f->dir_set ? imap_dir_str(f->dir) : "",
				 f->nth ? when : "the first time", where);
		else
			snprintf(buf, size,
				 "sends * BYE to the client and closes right after the server's + to IDLE, %s, %s",
				 f->nth ? when : "the first time", where);
		break;
	case PROXY_FAULT_ANSWER:
		snprintf(buf, size, "answers %s with %s%s%s%s itself, never passing it to the server, "
			 "%s, %s", f->command, f->bad ? "BAD" : "NO", f->code[0] ? " [" : "", f->code,
			 f->code[0] ? "]" : "", when, where);
		break;
	case PROXY_FAULT_MAX_CONNECTIONS:
		snprintf(buf, size, "refuses a connection while %u session(s) are open: * BYE [ALERT] "
			 "Too many simultaneous connections, the server never asked", f->limit);
		break;
	case PROXY_FAULT_HIDE_CAPABILITY: {
		char list[PROXY_FAULT_HIDE_MAX * PROXY_FAULT_NAME_MAX + 8] = "";

		for (unsigned i = 0, n = 0; i < f->hide_count && n < sizeof(list); i++)
			n += (unsigned)snprintf(list + n, sizeof(list) - n, "%s%s", i ? " " : "",
						f->hide[i]);
		snprintf(buf, size, "takes %s out of every capability list the client sees, %s, %s",
			 list, when, where);
		break;
	}
	case PROXY_FAULT_END_IDLE_EARLY:
		snprintf(buf, size, "sends the client IDLE's tagged OK before any DONE (%s%s) and ends "
			 "the server's IDLE with a DONE of its own, %s, %s",
			 f->duration ? d : "right before the server's +",
			 f->duration ? " after the server's +" : "", when, where);
		break;
	}
}
