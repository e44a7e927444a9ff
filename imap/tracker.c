#include "imap/tracker.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct command {
	uint8_t *tag;
	size_t tag_len;
	char name[IMAP_NAME_MAX];
	enum imap_keyword keyword;
	bool uid;
	imap_time_us started;
	imap_time_us clock;    /* when its stall clock started: behind pipelined
				  commands, at the previous completion */
	imap_time_us done_at;  /* IDLE: DONE seen */
	imap_time_us plus_at;  /* IDLE: "+" seen */
	bool idle;
	bool stalled;          /* a stall was reported: resolve it on completion */
	bool untagged_early;   /* untagged-before-continuation said once */
	bool too_long;         /* idle-too-long said */
	uint64_t untagged;     /* untagged responses while in flight */
};

struct imap_tracker {
	/* in issue order, a ring from head: the oldest leaves in O(1) when
	 * a pipelining client keeps IMAP_TRACKER_MAX_FLIGHT in flight */
	struct command *flight;
	size_t head;
	size_t count;
	size_t cap; /* a power of two */
	size_t idles; /* IDLE commands among them: most lines need not look */
	uint64_t dropped;
	uint8_t *auth_tag; /* tag of a pending AUTHENTICATE, or NULL */
	size_t auth_tag_len;

	/* rules */
	imap_anomaly_cb *cb;
	void *ctx;
	struct imap_tracker_config config;
	imap_time_us last_activity[2];
	imap_time_us last_completion;
	imap_time_us bye_at;      /* -1 none */
	bool logout_sent;
	bool logout_done;
	bool after_bye_said;
	bool client_turn;   /* a "+" asked the client for more: its delay, not the server's */
	imap_time_us blocked_since[2]; /* -1 draining */
	uint64_t blocked_pending[2];
	bool blocked_said[2];
	imap_time_us keepalive_said; /* activity time a keepalive gap was said for */
	imap_time_us greeting_since; /* connected, no byte from the server yet; -1 */
	bool greeting_said;
	bool stray_done;    /* a stray DONE awaits the server's "DONE BAD" */
	struct imap_server_partial server_partial;
};

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

void imap_tracker_set_rules(struct imap_tracker *t, const struct imap_tracker_config *config,
			    imap_anomaly_cb *cb, void *ctx)
{
	if (config != NULL)
		t->config = *config;
	if (t->config.stall <= 0)
		t->config.stall = IMAP_TRACKER_DEFAULT_STALL;
	if (t->config.done_stall <= 0)
		t->config.done_stall = IMAP_TRACKER_DEFAULT_DONE_STALL;
	if (t->config.idle_max <= 0)
		t->config.idle_max = IMAP_TRACKER_DEFAULT_IDLE_MAX;
	t->cb = cb;
	t->ctx = ctx;
}

/* The i-th command in flight, from the oldest. */
static struct command *in_flight(const struct imap_tracker *t, size_t i)
{
	return &t->flight[(t->head + i) & (t->cap - 1)];
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
static void secs(char *out, size_t size, imap_time_us us)
{
	if (us < IMAP_US_PER_S)
		snprintf(out, size, "%" PRId64 " ms", us / 1000);
	else
		snprintf(out, size, "%" PRId64 ".%03d s", us / IMAP_US_PER_S, (int)(us % IMAP_US_PER_S / 1000));
}

static void say(struct imap_tracker *t, enum imap_rule rule, imap_time_us ts,
		const struct command *c, imap_time_us threshold, imap_time_us waited, bool resolved,
		const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static void say(struct imap_tracker *t, enum imap_rule rule, imap_time_us ts,
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
		say(t, IMAP_RULE_COMMAND_DURING_IDLE, ts, idle, -1, -1, false,
		    "%.*s %s sent while IDLE %.*s is active%s; the server may take it as the end "
		    "of IDLE or ignore it",
		    (int)info->tag.len, (const char *)info->tag.p, info->name, (int)idle->tag_len,
		    (const char *)idle->tag, idle->plus_at < 0 ? " (before its +)" : "");
	c = find_tag(t, info->tag, NULL);
	if (c != NULL)
		say(t, IMAP_RULE_DUPLICATE_TAG, ts, c, -1, -1, false,
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
		say(t, IMAP_RULE_STRAY_DONE, ts, NULL, -1, -1, false,
		    "DONE sent while no IDLE is active; the server will answer it as a bad command");
		return;
	}
	if (idle->done_at >= 0) {
		say(t, IMAP_RULE_STRAY_DONE, ts, idle, -1, -1, false,
		    "a second DONE for IDLE %.*s", (int)idle->tag_len, (const char *)idle->tag);
		return;
	}
	idle->done_at = ts;
	if (idle->plus_at < 0)
		say(t, IMAP_RULE_DONE_BEFORE_CONTINUATION, ts, idle, -1, -1, false,
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
	secs(took, sizeof(took), ts - c->started);
	if (c->idle && c->done_at >= 0) {
		secs(done, sizeof(done), ts - c->done_at);
		say(t, IMAP_RULE_DONE_STALL, ts, c, t->config.done_stall, ts - c->done_at, true,
		    "%.*s %s after %s, DONE->%s %s, %" PRIu64 " untagged response(s) came first",
		    (int)c->tag_len, (const char *)c->tag, imap_status_str(info->status), took,
		    imap_status_str(info->status), done, c->untagged);
	} else {
		say(t, IMAP_RULE_COMMAND_STALL, ts, c, t->config.stall, ts - c->clock, true,
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
			say(t, IMAP_RULE_UNKNOWN_TAG, ts, NULL, -1, -1, false,
			    "tagged %s for %.*s, a tag no command in flight uses: the server and "
			    "the client disagree about the stream",
			    imap_status_str(info->status), (int)info->tag.len, (const char *)info->tag.p);
		return false;
	}
	if (t->bye_at >= 0 && c->keyword != IMAP_KW_LOGOUT && !t->after_bye_said) {
		t->after_bye_said = true;
		say(t, IMAP_RULE_DATA_AFTER_BYE, ts, c, -1, -1, false,
		    "tagged %s for %s after the server's BYE", imap_status_str(info->status), c->name);
	}
	if (i > 0)
		say(t, IMAP_RULE_OUT_OF_ORDER_COMPLETION, ts, c, -1, -1, false,
		    "%.*s %s completed before %.*s %s, sent earlier", (int)c->tag_len,
		    (const char *)c->tag, c->name, (int)in_flight(t, 0)->tag_len,
		    (const char *)in_flight(t, 0)->tag, in_flight(t, 0)->name);
	if (c->idle && c->done_at < 0 && info->status == IMAP_STATUS_OK)
		say(t, IMAP_RULE_COMPLETION_BEFORE_DONE, ts, c, -1, -1, false,
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
		say(t, IMAP_RULE_DATA_AFTER_BYE, ts, NULL, -1, -1, false,
		    "untagged %s after the server's BYE", info->name);
		return;
	}
	if (idle != NULL && idle->plus_at < 0 && !idle->untagged_early) {
		idle->untagged_early = true;
		say(t, IMAP_RULE_UNTAGGED_BEFORE_CONTINUATION, ts, idle, -1, -1, false,
		    "untagged %s before the + to IDLE %.*s: legal, but a client that waits for "
		    "the + first may hang",
		    info->name, (int)idle->tag_len, (const char *)idle->tag);
	}
	if ((info->keyword == IMAP_KW_EXPUNGE ||
	     (info->keyword == IMAP_KW_VANISHED && !imap_slice_eq(info->code, "EARLIER") &&
	      !(info->args.len >= 9 && memcmp(info->args.p, "(EARLIER)", 9) == 0))) &&
	    only_sequence_commands(t))
		say(t, IMAP_RULE_EXPUNGE_DURING_FETCH, ts, in_flight(t, 0), -1, -1, false,
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
	say(t, IMAP_RULE_UNEXPECTED_CONTINUATION, ts, NULL, -1, -1, false,
	    "a + when no command waits for one (no literal, AUTHENTICATE or IDLE pending)");
}

bool imap_tracker_line(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts,
		       const struct imap_line_info *info, struct imap_completion *completion_r)
{
	imap_tracker_activity(t, dir, ts);
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
	continuation(t, ts, literal_waits);
}

void imap_tracker_connected(struct imap_tracker *t, imap_time_us ts)
{
	if (t->last_activity[IMAP_S2C] == 0)
		t->greeting_since = ts;
}

void imap_tracker_activity(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts)
{
	if (dir == IMAP_S2C && t->greeting_since >= 0) {
		if (t->greeting_said) {
			char waited[32];

			secs(waited, sizeof(waited), ts - t->greeting_since);
			say(t, IMAP_RULE_GREETING_STALL, ts, NULL, t->config.stall,
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

	if (since < 0) {
		if (t->blocked_said[dir] && t->blocked_since[dir] >= 0) {
			secs(waited, sizeof(waited), now - t->blocked_since[dir]);
			say(t, dir == IMAP_S2C ? IMAP_RULE_CLIENT_NOT_READING
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

/* Which side is silent for a stalled command: the server stopped inside a
 * response (a line or literal cut short), or after whole responses, or it
 * never started answering. */
static void server_silence(const struct imap_tracker *t, const struct command *c, imap_time_us now,
			   char *out, size_t size)
{
	const struct imap_server_partial *p = &t->server_partial;
	char quiet[32];
	imap_time_us last = t->last_activity[IMAP_S2C];

	secs(quiet, sizeof(quiet), now - (last > c->clock ? last : c->clock));
	if (p->literal_left > 0)
		snprintf(out, size, "the server stopped mid-response, inside a {%" PRIu64 "} literal "
			 "with %" PRIu64 " of its bytes still to come, and has sent nothing for %s",
			 p->literal_len, p->literal_left, quiet);
	else if (p->line_bytes > 0)
		snprintf(out, size, "the server stopped mid-response, %" PRIu64 " byte(s) into a line "
			 "that has no CRLF yet, and has sent nothing for %s", p->line_bytes, quiet);
	else if (c->untagged > 0)
		snprintf(out, size, "the server sent %" PRIu64 " untagged response(s), then nothing "
			 "for %s", c->untagged, quiet);
	else
		snprintf(out, size, "the server never started answering (nothing from it since)");
}

static void sooner(imap_time_us *next, imap_time_us at)
{
	if (at >= 0 && (*next < 0 || at < *next))
		*next = at;
}

/* The rules that wait. Each says when it is due (-1: it waits for nothing
 * now) and what it says then; imap_tracker_tick fires what is due and
 * imap_tracker_next_deadline arms the caller's timer for the earliest due
 * time, both from this one table, so they cannot disagree. A rule that
 * cannot fire for now (a server held back by a client that does not read)
 * is not due at all: a due rule always fires. */
struct waiting_rule {
	imap_time_us (*due)(const struct imap_tracker *t, const struct command *c);
	void (*fire)(struct imap_tracker *t, struct command *c, imap_time_us now);
};

static imap_time_us done_stall_due(const struct imap_tracker *t, const struct command *c)
{
	return c->idle && c->done_at >= 0 ? c->done_at + t->config.done_stall : -1;
}

static void done_stall_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32];

	c->stalled = true;
	secs(waited, sizeof(waited), now - c->done_at);
	say(t, IMAP_RULE_DONE_STALL, now, c, t->config.done_stall, now - c->done_at, false,
	    "DONE sent %s ago, no tagged completion for %.*s IDLE", waited, (int)c->tag_len,
	    (const char *)c->tag);
}

static imap_time_us idle_too_long_due(const struct imap_tracker *t, const struct command *c)
{
	return c->idle && c->done_at < 0 && !c->too_long ? c->started + t->config.idle_max : -1;
}

static void idle_too_long_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32];

	c->too_long = true;
	secs(waited, sizeof(waited), now - c->started);
	say(t, IMAP_RULE_IDLE_TOO_LONG, now, c, t->config.idle_max, now - c->started, false,
	    "IDLE %.*s has lasted %s without DONE; servers log out idle clients after 30 minutes",
	    (int)c->tag_len, (const char *)c->tag, waited);
}

static imap_time_us keepalive_gap_due(const struct imap_tracker *t, const struct command *c)
{
	imap_time_us heard = t->last_activity[IMAP_S2C];

	if (!c->idle || c->done_at >= 0 || t->config.keepalive_gap <= 0 || c->plus_at < 0 ||
	    t->keepalive_said == heard)
		return -1;
	return heard + t->config.keepalive_gap;
}

static void keepalive_gap_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32];
	imap_time_us heard = t->last_activity[IMAP_S2C];

	t->keepalive_said = heard;
	secs(waited, sizeof(waited), now - heard);
	say(t, IMAP_RULE_KEEPALIVE_GAP, now, c, t->config.keepalive_gap, now - heard, false,
	    "no byte from the server for %s during IDLE %.*s", waited, (int)c->tag_len,
	    (const char *)c->tag);
}

/* Due when both the command and the server have been quiet for the
 * threshold; after a "+" (AUTHENTICATE, a literal) the client owes the
 * next byte, and while the client does not read the server is held back:
 * nothing is due (when the client reads again, the server's quiet starts
 * anew, imap_tracker_blocked). */
static imap_time_us command_stall_due(const struct imap_tracker *t, const struct command *c)
{
	imap_time_us heard = t->last_activity[IMAP_S2C];

	if (c->idle || c->clock < 0 || t->client_turn || t->blocked_since[IMAP_S2C] >= 0)
		return -1;
	return (heard > c->clock ? heard : c->clock) + t->config.stall;
}

static void command_stall_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32], where[200];

	c->stalled = true;
	secs(waited, sizeof(waited), now - c->clock);
	server_silence(t, c, now, where, sizeof(where));
	say(t, IMAP_RULE_COMMAND_STALL, now, c, t->config.stall, now - c->clock, false,
	    "%.*s %s sent %s ago, no tagged completion: %s", (int)c->tag_len, (const char *)c->tag,
	    c->name, waited, where);
}

static imap_time_us greeting_stall_due(const struct imap_tracker *t, const struct command *c)
{
	(void)c;
	return t->greeting_since >= 0 && !t->greeting_said ? t->greeting_since + t->config.stall
							   : -1;
}

static void greeting_stall_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32];

	(void)c;
	t->greeting_said = true;
	secs(waited, sizeof(waited), now - t->greeting_since);
	say(t, IMAP_RULE_GREETING_STALL, now, NULL, t->config.stall, now - t->greeting_since, false,
	    "the server accepted the connection %s ago and has sent no greeting; the client "
	    "waits for it",
	    waited);
}

/* A client that was told BYE may stop reading: nothing is due then. */
static imap_time_us not_reading_due(const struct imap_tracker *t, enum imap_dir dir)
{
	if (t->blocked_since[dir] < 0 || t->blocked_said[dir] || (dir == IMAP_S2C && t->bye_at >= 0))
		return -1;
	return t->blocked_since[dir] + t->config.stall;
}

static void not_reading_fire(struct imap_tracker *t, enum imap_dir dir, imap_time_us now)
{
	char waited[32];
	const char *peer = dir == IMAP_S2C ? "client" : "server";
	enum imap_rule rule =
		dir == IMAP_S2C ? IMAP_RULE_CLIENT_NOT_READING : IMAP_RULE_SERVER_NOT_READING;

	t->blocked_said[dir] = true;
	secs(waited, sizeof(waited), now - t->blocked_since[dir]);
	if (t->blocked_pending[dir] > 0)
		say(t, rule, now, NULL, t->config.stall, now - t->blocked_since[dir], false,
		    "%s not reading: %" PRIu64 " KiB pending toward the %s for %s", peer,
		    (t->blocked_pending[dir] + 1023) / 1024, peer, waited);
	else /* from a capture: the window it closed */
		say(t, rule, now, NULL, t->config.stall, now - t->blocked_since[dir], false,
		    "%s not reading: its TCP window has been closed for %s", peer, waited);
}

static imap_time_us client_not_reading_due(const struct imap_tracker *t, const struct command *c)
{
	(void)c;
	return not_reading_due(t, IMAP_S2C);
}

static void client_not_reading_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	(void)c;
	not_reading_fire(t, IMAP_S2C, now);
}

static imap_time_us server_not_reading_due(const struct imap_tracker *t, const struct command *c)
{
	(void)c;
	return not_reading_due(t, IMAP_C2S);
}

static void server_not_reading_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	(void)c;
	not_reading_fire(t, IMAP_C2S, now);
}

/* Per command in flight, in this order; a command that stalled waits for
 * its completion and nothing more. */
static const struct waiting_rule command_rules[] = {
	{done_stall_due, done_stall_fire},
	{idle_too_long_due, idle_too_long_fire},
	{keepalive_gap_due, keepalive_gap_fire},
	{command_stall_due, command_stall_fire},
};

/* Per session, after the commands. */
static const struct waiting_rule session_rules[] = {
	{greeting_stall_due, greeting_stall_fire},
	{client_not_reading_due, client_not_reading_fire},
	{server_not_reading_due, server_not_reading_fire},
};

#define RULES_IN(table) (sizeof(table) / sizeof((table)[0]))

imap_time_us imap_tracker_next_deadline(const struct imap_tracker *t)
{
	imap_time_us next = -1;

	if (t->cb == NULL)
		return -1;
	for (size_t i = 0; i < t->count; i++) {
		const struct command *c = in_flight(t, i);

		for (size_t r = 0; r < RULES_IN(command_rules) && !c->stalled; r++)
			sooner(&next, command_rules[r].due(t, c));
	}
	for (size_t r = 0; r < RULES_IN(session_rules); r++)
		sooner(&next, session_rules[r].due(t, NULL));
	return next;
}

void imap_tracker_tick(struct imap_tracker *t, imap_time_us now)
{
	imap_time_us due;

	if (t->cb == NULL)
		return;
	for (size_t i = 0; i < t->count; i++) {
		struct command *c = in_flight(t, i);

		for (size_t r = 0; r < RULES_IN(command_rules) && !c->stalled; r++) {
			due = command_rules[r].due(t, c);
			if (due >= 0 && now >= due)
				command_rules[r].fire(t, c, now);
		}
	}
	for (size_t r = 0; r < RULES_IN(session_rules); r++) {
		due = session_rules[r].due(t, NULL);
		if (due >= 0 && now >= due)
			session_rules[r].fire(t, NULL, now);
	}
}

#define EOF_TAGS_LISTED 4

void imap_tracker_eof(struct imap_tracker *t, imap_time_us ts, const struct imap_literal_cut *cut)
{
	char list[200] = "", inside[200] = "";
	const struct command *about = t->count > 0 ? in_flight(t, 0) : NULL;
	size_t used = 0;

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
		say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false,
		    "the connection ended %s; %zu command(s) unanswered: %s", inside, t->count, list);
	else if (t->count > 0)
		say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false,
		    "the connection ended with %zu command(s) unanswered: %s", t->count, list);
	else
		say(t, IMAP_RULE_PENDING_AT_EOF, ts, about, -1, -1, false, "the connection ended %s",
		    inside);
}
