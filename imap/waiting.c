/* The rules that wait (stalls, IDLE too long, keepalive gaps, peers that
 * stop reading, a greeting that does not come): when each is due and what
 * it says then, for imap_tracker_tick and imap_tracker_next_deadline. */
#include <inttypes.h>
#include <stdio.h>

#include "imap/tracker.h"
#include "imap/tracker_int.h"

/* Which side is silent for a stalled command: the server stopped inside a
 * response (a line or literal cut short), or after whole responses, or it
 * never started answering. */
static void server_silence(const struct imap_tracker *t, const struct command *c, imap_time_us now,
			   char *out, size_t size)
{
	const struct imap_server_partial *p = &t->server_partial;
	char quiet[32];
	imap_time_us last = t->last_activity[IMAP_S2C];

	tracker_secs(quiet, sizeof(quiet), now - (last > c->clock ? last : c->clock));
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
 * now), NAME_due, and what it says then, NAME_fire; imap_tracker_tick
 * fires what is due and imap_tracker_next_deadline arms the caller's
 * timer for the earliest due time, both from the one list at the end, so
 * they cannot disagree. A rule that cannot fire for now (a server held
 * back by a client that does not read) is not due at all: a due rule
 * always fires. */

static imap_time_us done_stall_due(const struct imap_tracker *t, const struct command *c)
{
	return c->idle && c->done_at >= 0 ? c->done_at + t->config.done_stall : -1;
}

static void done_stall_fire(struct imap_tracker *t, struct command *c, imap_time_us now)
{
	char waited[32];

	c->stalled = true;
	tracker_secs(waited, sizeof(waited), now - c->done_at);
	tracker_say(t, IMAP_RULE_DONE_STALL, now, c, t->config.done_stall, now - c->done_at, false,
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
	tracker_secs(waited, sizeof(waited), now - c->started);
	tracker_say(t, IMAP_RULE_IDLE_TOO_LONG, now, c, t->config.idle_max, now - c->started, false,
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
	tracker_secs(waited, sizeof(waited), now - heard);
	tracker_say(t, IMAP_RULE_KEEPALIVE_GAP, now, c, t->config.keepalive_gap, now - heard, false,
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
	tracker_secs(waited, sizeof(waited), now - c->clock);
	server_silence(t, c, now, where, sizeof(where));
	tracker_say(t, IMAP_RULE_COMMAND_STALL, now, c, t->config.stall, now - c->clock, false,
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
	tracker_secs(waited, sizeof(waited), now - t->greeting_since);
	tracker_say(t, IMAP_RULE_GREETING_STALL, now, NULL, t->config.stall, now - t->greeting_since, false,
	    "the server accepted the connection %s ago and has sent no greeting; the client "
	    "waits for it (a server that speaks TLS from the first byte waits for a ClientHello "
	    "instead: --upstream-tls implicit)",
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
	tracker_secs(waited, sizeof(waited), now - t->blocked_since[dir]);
	if (t->blocked_pending[dir] > 0)
		tracker_say(t, rule, now, NULL, t->config.stall, now - t->blocked_since[dir], false,
		    "%s not reading: %" PRIu64 " KiB pending toward the %s for %s", peer,
		    (t->blocked_pending[dir] + 1023) / 1024, peer, waited);
	else /* from a capture: the window it closed */
		tracker_say(t, rule, now, NULL, t->config.stall, now - t->blocked_since[dir], false,
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

/* Per command in flight, in this order (a command that stalled waits for
 * its completion and nothing more), then per session. Called directly,
 * not through a table: both lists run for every line. */
#define COMMAND_RULES(X) X(done_stall) X(idle_too_long) X(keepalive_gap) X(command_stall)
#define SESSION_RULES(X) X(greeting_stall) X(client_not_reading) X(server_not_reading)

imap_time_us imap_tracker_next_deadline(struct imap_tracker *t)
{
	imap_time_us next = -1;

	if (t->cb == NULL)
		return -1;
	if (t->due_known)
		return t->due;
#define COMMAND_DUE(rule) sooner(&next, rule##_due(t, c));
#define SESSION_DUE(rule) sooner(&next, rule##_due(t, NULL));
	for (size_t i = 0; i < t->count; i++) {
		const struct command *c = in_flight(t, i);

		if (!c->stalled) {
			COMMAND_RULES(COMMAND_DUE)
		}
	}
	SESSION_RULES(SESSION_DUE)
#undef COMMAND_DUE
#undef SESSION_DUE
	t->due = next;
	t->due_known = true;
	return next;
}

bool imap_tracker_due(struct imap_tracker *t, imap_time_us now)
{
	imap_time_us due = imap_tracker_next_deadline(t);

	return due >= 0 && now >= due;
}

void imap_tracker_tick(struct imap_tracker *t, imap_time_us now)
{
	imap_time_us due;

	if (t->cb == NULL || (t->due_known && (t->due < 0 || now < t->due)))
		return;
	t->due_known = false; /* what fires changes the state */
	/* a rule fires stamped with the instant its threshold passed, however
	 * late the tick comes (a timer's slack, the next packet of a capture):
	 * live and offline then say the same time and the same wait */
#define COMMAND_FIRE(rule)                                                  \
	if (!c->stalled && (due = rule##_due(t, c)) >= 0 && now >= due) \
		rule##_fire(t, c, due);
#define SESSION_FIRE(rule)                                  \
	if ((due = rule##_due(t, NULL)) >= 0 && now >= due) \
		rule##_fire(t, NULL, due);
	for (size_t i = 0; i < t->count; i++) {
		struct command *c = in_flight(t, i);

		COMMAND_RULES(COMMAND_FIRE)
	}
	SESSION_RULES(SESSION_FIRE)
#undef COMMAND_FIRE
#undef SESSION_FIRE
}
