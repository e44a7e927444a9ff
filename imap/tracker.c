#include "imap/tracker.h"
#include "imap/tracker_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct imap_tracker *imap_tracker_new(void)
{
	struct imap_tracker *t = calloc(1, sizeof(struct imap_tracker));

	if (t == NULL)
		return NULL;
	t->bye_at = -1;
	t->blocked_since[0] = t->blocked_since[1] = -1;
	t->last_completion = -1;
	t->keepalive_said = -1;
	t->greeting_since = -1;
	return t;
}

struct imap_tracker_config imap_tracker_config_resolved(const struct imap_tracker_config *config)
{
	struct imap_tracker_config c = *config;

	if (c.stall <= 0)
		c.stall = IMAP_TRACKER_DEFAULT_STALL;
	if (c.done_stall <= 0)
		c.done_stall = IMAP_TRACKER_DEFAULT_DONE_STALL;
	if (c.idle_max <= 0)
		c.idle_max = IMAP_TRACKER_DEFAULT_IDLE_MAX;
	return c;
}

void imap_tracker_set_rules(struct imap_tracker *t, const struct imap_tracker_config *config,
			    imap_anomaly_cb *cb, void *ctx)
{
	static const struct imap_tracker_config none;

	t->due_known = false;
	t->config = imap_tracker_config_resolved(config != NULL ? config : &none);
	t->cb = cb;
	t->ctx = ctx;
}


/* Removes the i-th command, moving whichever side of it is shorter. */
static void forget(struct imap_tracker *t, size_t i)
{
	free(in_flight(t, i)->tag);
	if (in_flight(t, i)->idle)
		t->idles--;
	if (i < t->count / 2) {
		for (size_t j = i; j > 0; j--)
			*in_flight(t, j) = *in_flight(t, j - 1);
		t->head = (t->head + 1) & (t->cap - 1);
	} else {
		for (size_t j = i; j + 1 < t->count; j++)
			*in_flight(t, j) = *in_flight(t, j + 1);
	}
	t->count--;
}

void imap_tracker_free(struct imap_tracker **tracker)
{
	struct imap_tracker *t = *tracker;

	if (t == NULL)
		return;
	while (t->count > 0)
		forget(t, t->count - 1);
	free(t->flight);
	free(t->auth_tag);
	free(t);
	*tracker = NULL;
}

bool imap_tracker_auth_pending(const struct imap_tracker *t)
{
	return t->auth_tag != NULL;
}

size_t imap_tracker_in_flight(const struct imap_tracker *t)
{
	return t->count;
}

uint64_t imap_tracker_dropped(const struct imap_tracker *t)
{
	return t->dropped;
}

/* "12.004 s", "850 ms" */
void tracker_secs(char *out, size_t size, imap_time_us us)
{
	if (us < IMAP_US_PER_S)
		snprintf(out, size, "%" PRId64 " ms", us / 1000);
	else
		snprintf(out, size, "%" PRId64 ".%03d s", us / IMAP_US_PER_S, (int)(us % IMAP_US_PER_S / 1000));
}

void tracker_say(struct imap_tracker *t, enum imap_rule rule, imap_time_us ts,
		const struct command *c, imap_time_us threshold, imap_time_us waited, bool resolved,
		const char *fmt, ...)
{
	struct imap_anomaly a;
	va_list ap;

	if (t->cb == NULL)
		return;
	va_start(ap, fmt);
	imap_anomaly_vmake(&a, rule, ts, c != NULL ? c->tag : NULL, c != NULL ? c->tag_len : 0, fmt,
			   ap);
	va_end(ap);
	a.threshold = threshold;
	a.waited = waited;
	a.resolved = resolved;
	t->cb(t->ctx, &a);
}

static struct command *find_tag(struct imap_tracker *t, struct imap_slice tag, size_t *index)
{
	for (size_t i = 0; i < t->count; i++) {
		if (in_flight(t, i)->tag_len == tag.len && memcmp(in_flight(t, i)->tag, tag.p, tag.len) == 0) {
			if (index != NULL)
				*index = i;
			return in_flight(t, i);
		}
	}
	return NULL;
}

/* The IDLE in flight, if any. */
static struct command *idle_command(struct imap_tracker *t)
{
	if (t->idles == 0)
		return NULL;
	for (size_t i = t->count; i-- > 0;)
		if (in_flight(t, i)->idle)
			return in_flight(t, i);
	return NULL;
}

static void command_started(struct imap_tracker *t, imap_time_us ts,
			    const struct imap_line_info *info)
{
	struct command *c, *idle = idle_command(t);

	if (idle != NULL && idle->done_at < 0)
		tracker_say(t, IMAP_RULE_COMMAND_DURING_IDLE, ts, idle, -1, -1, false,
		    "%.*s %s sent while IDLE %.*s is active%s; the server may take it as the end "
		    "of IDLE or ignore it",
		    (int)info->tag.len, (const char *)info->tag.p, info->name, (int)idle->tag_len,
		    (const char *)idle->tag, idle->plus_at < 0 ? " (before its +)" : "");
	c = find_tag(t, info->tag, NULL);
	if (c != NULL)
		tracker_say(t, IMAP_RULE_DUPLICATE_TAG, ts, c, -1, -1, false,
		    "tag %.*s reused by %s while its %s is still in flight", (int)info->tag.len,
		    (const char *)info->tag.p, info->name, c->name);
	if (t->count == IMAP_TRACKER_MAX_FLIGHT) {
		forget(t, 0);
		t->dropped++;
	}
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 4;
		struct command *n = malloc(cap * sizeof(*n));

		if (n == NULL) {
			t->dropped++;
			return;
		}
		for (size_t i = 0; i < t->count; i++)
			n[i] = *in_flight(t, i);
		free(t->flight);
		t->flight = n;
		t->head = 0;
		t->cap = cap;
	}
	c = in_flight(t, t->count);
	memset(c, 0, sizeof(*c));
	c->tag = malloc(info->tag.len ? info->tag.len : 1);
	if (c->tag == NULL) {
		t->dropped++;
		return;
	}
	memcpy(c->tag, info->tag.p, info->tag.len);
	c->tag_len = info->tag.len;
	memcpy(c->name, info->name, sizeof(c->name));
	c->keyword = info->keyword;
	c->uid = info->uid;
	c->started = ts;
	/* a pipelined command waits its turn: its clock starts when the one
	 * before it completed */
	c->clock = t->count > 0 ? -1 : ts;
	c->done_at = -1;
	c->plus_at = -1;
	c->idle = info->keyword == IMAP_KW_IDLE;
	if (c->idle)
		t->idles++;
	t->count++;
	if (info->keyword == IMAP_KW_LOGOUT)
		t->logout_sent = true;
	if (info->keyword == IMAP_KW_AUTHENTICATE) {
		free(t->auth_tag);
		t->auth_tag = malloc(info->tag.len ? info->tag.len : 1);
		if (t->auth_tag != NULL) {
			memcpy(t->auth_tag, info->tag.p, info->tag.len);
			t->auth_tag_len = info->tag.len;
		}
	}
}

static void done_seen(struct imap_tracker *t, imap_time_us ts)
{
	struct command *idle = idle_command(t);

	/* a server reads a stray DONE as a command tagged DONE and answers
	 * "DONE BAD": that answer is expected, not an unknown tag */
	if (idle == NULL || idle->done_at >= 0)
		t->stray_done = true;
	if (idle == NULL) {
		tracker_say(t, IMAP_RULE_STRAY_DONE, ts, NULL, -1, -1, false,
		    "DONE sent while no IDLE is active; the server will answer it as a bad command");
		return;
	}
	if (idle->done_at >= 0) {
		tracker_say(t, IMAP_RULE_STRAY_DONE, ts, idle, -1, -1, false,
		    "a second DONE for IDLE %.*s", (int)idle->tag_len, (const char *)idle->tag);
		return;
	}
	idle->done_at = ts;
	if (idle->plus_at < 0)
		tracker_say(t, IMAP_RULE_DONE_BEFORE_CONTINUATION, ts, idle, -1, -1, false,
		    "DONE sent before the server's + to IDLE %.*s; a server may read it as a "
		    "command and never end IDLE",
		    (int)idle->tag_len, (const char *)idle->tag);
}

static void completion_details(struct imap_tracker *t, const struct command *c,
			       const struct imap_line_info *info, imap_time_us ts)
{
	char took[32], done[32];

	if (!c->stalled)
		return;
	tracker_secs(took, sizeof(took), ts - c->started);
	if (c->idle && c->done_at >= 0) {
		tracker_secs(done, sizeof(done), ts - c->done_at);
		tracker_say(t, IMAP_RULE_DONE_STALL, ts, c, t->config.done_stall, ts - c->done_at, true,
		    "%.*s %s after %s, DONE->%s %s, %" PRIu64 " untagged response(s) came first",
		    (int)c->tag_len, (const char *)c->tag, imap_status_str(info->status), took,
		    imap_status_str(info->status), done, c->untagged);
	} else {
		tracker_say(t, IMAP_RULE_COMMAND_STALL, ts, c, t->config.stall, ts - c->clock, true,
		    "%.*s %s %s after %s, %" PRIu64 " untagged response(s) came first",
		    (int)c->tag_len, (const char *)c->tag, c->name, imap_status_str(info->status),
		    took, c->untagged);
	}
}

static bool completed(struct imap_tracker *t, imap_time_us ts, const struct imap_line_info *info,
		      struct imap_completion *out)
{
	struct command *c;
	size_t i = 0, n;

	if (t->auth_tag != NULL && info->tag.len == t->auth_tag_len &&
	    memcmp(info->tag.p, t->auth_tag, t->auth_tag_len) == 0) {
		free(t->auth_tag);
		t->auth_tag = NULL;
		t->auth_tag_len = 0;
	}
	c = find_tag(t, info->tag, &i);
	if (c == NULL && t->stray_done && info->tag.len == 4 &&
	    strncasecmp((const char *)info->tag.p, "DONE", 4) == 0) {
		t->stray_done = false;
		return false;
	}
	if (c == NULL) {
		if (t->bye_at < 0)
			tracker_say(t, IMAP_RULE_UNKNOWN_TAG, ts, NULL, -1, -1, false,
			    "tagged %s for %.*s, a tag no command in flight uses: the server and "
			    "the client disagree about the stream",
			    imap_status_str(info->status), (int)info->tag.len, (const char *)info->tag.p);
		return false;
	}
	if (t->bye_at >= 0 && c->keyword != IMAP_KW_LOGOUT && !t->after_bye_said) {
		t->after_bye_said = true;
		tracker_say(t, IMAP_RULE_DATA_AFTER_BYE, ts, c, -1, -1, false,
		    "tagged %s for %s after the server's BYE", imap_status_str(info->status), c->name);
	}
	if (i > 0)
		tracker_say(t, IMAP_RULE_OUT_OF_ORDER_COMPLETION, ts, c, -1, -1, false,
		    "%.*s %s completed before %.*s %s, sent earlier", (int)c->tag_len,
		    (const char *)c->tag, c->name, (int)in_flight(t, 0)->tag_len,
		    (const char *)in_flight(t, 0)->tag, in_flight(t, 0)->name);
	if (c->idle && c->done_at < 0 && info->status == IMAP_STATUS_OK)
		tracker_say(t, IMAP_RULE_COMPLETION_BEFORE_DONE, ts, c, -1, -1, false,
		    "the server ended IDLE %.*s before the client sent DONE; a client that then "
		    "sends DONE gets BAD",
		    (int)c->tag_len, (const char *)c->tag);
	completion_details(t, c, info, ts);
	memset(out, 0, sizeof(*out));
	n = c->tag_len < IMAP_TAG_SHOW - 1 ? c->tag_len : IMAP_TAG_SHOW - 1;
	memcpy(out->tag, c->tag, n);
	out->tag[n] = '\0';
	memcpy(out->command, c->name, sizeof(out->command));
	out->keyword = c->keyword;
	out->uid = c->uid;
	out->status = info->status;
	out->started = c->started;
	out->finished = ts;
	out->latency = ts - c->started;
	out->idle = c->idle;
	out->done_at = c->done_at;
	out->done_to_ok = c->done_at >= 0 ? ts - c->done_at : -1;
	if (c->keyword == IMAP_KW_LOGOUT)
		t->logout_done = true;
	forget(t, i);
	t->last_completion = ts;
	/* the next command in line starts waiting now */
	if (t->count > 0 && in_flight(t, 0)->clock < 0)
		in_flight(t, 0)->clock = ts;
	return true;
}

/* Only non-UID FETCH, STORE and SEARCH in flight: an EXPUNGE now renumbers
 * messages under a command that uses sequence numbers (RFC 3501 7.4.1). */
static bool only_sequence_commands(const struct imap_tracker *t)
{
	if (t->count == 0)
		return false;
	for (size_t i = 0; i < t->count; i++) {
		const struct command *c = in_flight(t, i);

		if (c->uid || (c->keyword != IMAP_KW_FETCH && c->keyword != IMAP_KW_STORE &&
			       c->keyword != IMAP_KW_SEARCH))
			return false;
	}
	return true;
}

static void untagged(struct imap_tracker *t, imap_time_us ts, const struct imap_line_info *info)
{
	struct command *idle = idle_command(t);

	for (size_t i = 0; i < t->count; i++)
		in_flight(t, i)->untagged++;
	if (info->status == IMAP_STATUS_BYE) {
		if (t->bye_at < 0)
			t->bye_at = ts;
		return;
	}
	if (t->bye_at >= 0 && !t->after_bye_said) {
		t->after_bye_said = true;
		tracker_say(t, IMAP_RULE_DATA_AFTER_BYE, ts, NULL, -1, -1, false,
		    "untagged %s after the server's BYE", info->name);
		return;
	}
	if (idle != NULL && idle->plus_at < 0 && !idle->untagged_early) {
		idle->untagged_early = true;
		tracker_say(t, IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION, ts, idle, -1, -1, false,
		    "untagged %s before the + to IDLE %.*s: legal, but a client that waits for "
		    "the + first may hang",
		    info->name, (int)idle->tag_len, (const char *)idle->tag);
	}
	if ((info->keyword == IMAP_KW_EXPUNGE ||
	     (info->keyword == IMAP_KW_VANISHED && !imap_slice_eq(info->code, "EARLIER") &&
	      !(info->args.len >= 9 && memcmp(info->args.p, "(EARLIER)", 9) == 0))) &&
	    only_sequence_commands(t))
		tracker_say(t, IMAP_RULE_EXPUNGE_DURING_FETCH, ts, in_flight(t, 0), -1, -1, false,
		    "%s while only sequence-number commands are in flight (%.*s %s): the message "
		    "numbers they use shift under them",
		    info->name, (int)in_flight(t, 0)->tag_len, (const char *)in_flight(t, 0)->tag,
		    in_flight(t, 0)->name);
}

static void continuation(struct imap_tracker *t, imap_time_us ts, bool literal_waits)
{
	struct command *idle = idle_command(t);

	imap_tracker_activity(t, IMAP_S2C, ts);
	t->client_turn = true;
	if (idle != NULL && idle->plus_at < 0) {
		idle->plus_at = ts;
		return;
	}
	if (literal_waits || t->auth_tag != NULL)
		return;
	tracker_say(t, IMAP_RULE_UNEXPECTED_CONTINUATION, ts, NULL, -1, -1, false,
	    "a + when no command waits for one (no literal, AUTHENTICATE or IDLE pending)");
}

bool imap_tracker_line(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts,
		       const struct imap_line_info *info, struct imap_completion *completion_r)
{
	imap_tracker_activity(t, dir, ts); /* and forgets the next due time */
	if (dir == IMAP_C2S)
		t->client_turn = false;
	switch (info->cls) {
	case IMAP_LINE_COMMAND:
		command_started(t, ts, info);
		return false;
	case IMAP_LINE_DONE:
		done_seen(t, ts);
		return false;
	case IMAP_LINE_TAGGED:
		return completed(t, ts, info, completion_r);
	case IMAP_LINE_UNTAGGED:
		untagged(t, ts, info);
		return false;
	case IMAP_LINE_CONTINUATION:
	case IMAP_LINE_AUTH_RESPONSE:
	case IMAP_LINE_CONTINUED:
	case IMAP_LINE_MALFORMED:
		return false;
	}
	return false;
}

void imap_tracker_continuation(struct imap_tracker *t, imap_time_us ts, bool literal_waits)
{
	t->due_known = false;
	continuation(t, ts, literal_waits);
}

void imap_tracker_connected(struct imap_tracker *t, imap_time_us ts)
{
	t->due_known = false;
	if (t->last_activity[IMAP_S2C] == 0)
		t->greeting_since = ts;
}

void imap_tracker_activity(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts)
{
	t->due_known = false;
	if (dir == IMAP_S2C && t->greeting_since >= 0) {
		if (t->greeting_said) {
			char waited[32];

			tracker_secs(waited, sizeof(waited), ts - t->greeting_since);
			tracker_say(t, IMAP_RULE_GREETING_STALL, ts, NULL, t->config.stall,
			    ts - t->greeting_since, true, "the server spoke first %s after the connection",
			    waited);
		}
		t->greeting_since = -1;
	}
	if (dir == IMAP_C2S)
		t->client_turn = false;
	if (ts > t->last_activity[dir])
		t->last_activity[dir] = ts;
}

void imap_tracker_blocked(struct imap_tracker *t, enum imap_dir dir, imap_time_us since,
			  uint64_t pending, imap_time_us now)
{
	char waited[32];
	const char *peer = dir == IMAP_S2C ? "client" : "server";

	t->due_known = false;
	if (since < 0) {
		if (t->blocked_said[dir] && t->blocked_since[dir] >= 0) {
			tracker_secs(waited, sizeof(waited), now - t->blocked_since[dir]);
			tracker_say(t, dir == IMAP_S2C ? IMAP_RULE_CLIENT_NOT_READING
					       : IMAP_RULE_SERVER_NOT_READING,
			    now, NULL, t->config.stall, now - t->blocked_since[dir], true,
			    "the %s reads again after %s", peer, waited);
		}
		t->blocked_since[dir] = -1;
		t->blocked_said[dir] = false;
		/* a server held back by a client that did not read could not
		 * answer: its command-stall clock starts again now, not from
		 * its last byte before the window closed */
		if (dir == IMAP_S2C && now > t->last_activity[IMAP_S2C])
			t->last_activity[IMAP_S2C] = now;
		return;
	}
	if (t->blocked_since[dir] < 0)
		t->blocked_since[dir] = since;
	t->blocked_pending[dir] = pending;
}

void imap_tracker_server_partial(struct imap_tracker *t, const struct imap_server_partial *partial)
{
	t->server_partial = *partial;
}

/* A finding's closing row: the end came first. */
static void say_never_resolved(struct imap_tracker *t, enum imap_rule rule, imap_time_us ts,
			       const struct command *c, imap_time_us threshold, imap_time_us since,
			       const char *what, bool closed)
{
	struct imap_anomaly a;
	char waited[32];

	tracker_secs(waited, sizeof(waited), ts - since);
	imap_anomaly_make(&a, rule, ts, c != NULL ? c->tag : NULL, c != NULL ? c->tag_len : 0,
			  "%s when the %s ended, %s later", what,
			  closed ? "session" : "capture", waited);
	a.threshold = threshold;
	a.waited = ts - since;
	a.never_resolved = true;
	t->cb(t->ctx, &a);
}

void imap_tracker_close_findings(struct imap_tracker *t, imap_time_us ts, bool closed)
{
	char what[200];

	t->due_known = false;
	if (t->cb == NULL)
		return;
	for (size_t i = 0; i < t->count; i++) {
		const struct command *c = in_flight(t, i);
		bool done = c->idle && c->done_at >= 0;

		if (!c->stalled)
			continue;
		snprintf(what, sizeof(what), "%.*s %s still had no tagged completion",
			 (int)(c->tag_len < 64 ? c->tag_len : 64), (const char *)c->tag, c->name);
		say_never_resolved(t, done ? IMAP_RULE_DONE_STALL : IMAP_RULE_COMMAND_STALL, ts, c,
				   done ? t->config.done_stall : t->config.stall,
				   done ? c->done_at : c->clock, what, closed);
	}
	if (t->greeting_said && t->greeting_since >= 0)
		say_never_resolved(t, IMAP_RULE_GREETING_STALL, ts, NULL, t->config.stall,
				   t->greeting_since, "no greeting had come", closed);
	for (int d = 0; d < 2; d++) {
		if (!t->blocked_said[d] || t->blocked_since[d] < 0)
			continue;
		say_never_resolved(t, d == IMAP_S2C ? IMAP_RULE_CLIENT_NOT_READING
						    : IMAP_RULE_SERVER_NOT_READING,
				   ts, NULL, t->config.stall, t->blocked_since[d],
				   d == IMAP_S2C ? "the client was still not reading"
						 : "the server was still not reading",
				   closed);
	}
}

#define EOF_TAGS_LISTED 4

void imap_tracker_eof(struct imap_tracker *t, imap_time_us ts, const struct imap_literal_cut *cut)
{
	char list[200] = "", inside[200] = "";
	const struct command *about = t->count > 0 ? in_flight(t, 0) : NULL;
	size_t used = 0;

	t->due_known = false;
	if ((t->count == 0 && cut == NULL) || t->cb == NULL)
		return;
	/* LOGOUT answered, or the server said BYE (docs/rules.md): the rest
	 * is moot, the server told why it goes */
	if (t->logout_done || t->bye_at >= 0)
		return;
	for (size_t i = 0; i < t->count && i < EOF_TAGS_LISTED; i++) {
		const struct command *c = in_flight(t, i);
		int n = snprintf(list + used, sizeof(list) - used, "%s%.*s %s%s", i > 0 ? ", " : "",
				 (int)(c->tag_len < 24 ? c->tag_len : 24), (const char *)c->tag,
				 c->uid ? "UID " : "", c->name);

		if (n < 0 || (size_t)n >= sizeof(list) - used)
			break;
		used += (size_t)n;
	}
	if (t->count > EOF_TAGS_LISTED)
		snprintf(list + used, sizeof(list) - used, " and %zu more",
			 t->count - EOF_TAGS_LISTED);
	if (cut != NULL) {
		struct command *owner = cut->tag.len > 0 ? find_tag(t, cut->tag, NULL) : NULL;

		if (owner != NULL)
			about = owner;
		snprintf(inside, sizeof(inside),
			 "inside the %s's {%" PRIu64 "} literal of %s: %" PRIu64 " of its %" PRIu64
			 " byte(s) never came",
			 cut->dir == IMAP_C2S ? "client" : "server", cut->len, cut->line, cut->missing,
			 cut->len);
	}
	if (t->count > 0 && cut != NULL)
		tracker_say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false,
		    "the connection ended %s; %zu command(s) unanswered: %s", inside, t->count, list);
	else if (t->count > 0)
		tracker_say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false,
		    "the connection ended with %zu command(s) unanswered: %s", t->count, list);
	else
		tracker_say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false, "the connection ended %s",
		    inside);
}
