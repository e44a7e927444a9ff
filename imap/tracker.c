#include "imap/tracker.h"

#include <stdlib.h>
#include <string.h>

struct command {
	uint8_t *tag;
	size_t tag_len;
	char name[IMAP_NAME_MAX];
	bool uid;
	imap_time_us started;
	imap_time_us done_at;
};

struct imap_tracker {
	struct command *flight; /* in issue order */
	size_t count;
	size_t cap;
	uint64_t dropped;
	uint8_t *auth_tag; /* tag of a pending AUTHENTICATE, or NULL */
	size_t auth_tag_len;
};

struct imap_tracker *imap_tracker_new(void)
{
	return calloc(1, sizeof(struct imap_tracker));
}

static void forget(struct imap_tracker *t, size_t i)
{
	free(t->flight[i].tag);
	memmove(&t->flight[i], &t->flight[i + 1], (t->count - i - 1) * sizeof(t->flight[0]));
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

static void command_started(struct imap_tracker *t, imap_time_us ts,
			    const struct imap_line_info *info)
{
	struct command *c;

	if (t->count == IMAP_TRACKER_MAX_FLIGHT) {
		forget(t, 0);
		t->dropped++;
	}
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 4;
		struct command *n = realloc(t->flight, cap * sizeof(*n));

		if (n == NULL) {
			t->dropped++;
			return;
		}
		t->flight = n;
		t->cap = cap;
	}
	c = &t->flight[t->count];
	c->tag = malloc(info->tag.len);
	if (c->tag == NULL) {
		t->dropped++;
		return;
	}
	memcpy(c->tag, info->tag.p, info->tag.len);
	c->tag_len = info->tag.len;
	memcpy(c->name, info->name, sizeof(c->name));
	c->uid = info->uid;
	c->started = ts;
	c->done_at = -1;
	t->count++;
	if (strcmp(info->name, "AUTHENTICATE") == 0) {
		free(t->auth_tag);
		t->auth_tag = malloc(info->tag.len);
		if (t->auth_tag != NULL) {
			memcpy(t->auth_tag, info->tag.p, info->tag.len);
			t->auth_tag_len = info->tag.len;
		}
	}
}

static void done_seen(struct imap_tracker *t, imap_time_us ts)
{
	/* DONE ends the latest IDLE that has not seen one */
	for (size_t i = t->count; i-- > 0;) {
		if (strcmp(t->flight[i].name, "IDLE") == 0 && t->flight[i].done_at < 0) {
			t->flight[i].done_at = ts;
			return;
		}
	}
}

static bool completed(struct imap_tracker *t, imap_time_us ts, const struct imap_line_info *info,
		      struct imap_completion *out)
{
	struct command *c = NULL;
	size_t i, n;

	if (t->auth_tag != NULL && info->tag.len == t->auth_tag_len &&
	    memcmp(info->tag.p, t->auth_tag, t->auth_tag_len) == 0) {
		free(t->auth_tag);
		t->auth_tag = NULL;
		t->auth_tag_len = 0;
	}
	for (i = 0; i < t->count; i++) {
		if (t->flight[i].tag_len == info->tag.len &&
		    memcmp(t->flight[i].tag, info->tag.p, info->tag.len) == 0) {
			c = &t->flight[i];
			break;
		}
	}
	if (c == NULL)
		return false;
	memset(out, 0, sizeof(*out));
	n = c->tag_len < IMAP_TAG_SHOW - 1 ? c->tag_len : IMAP_TAG_SHOW - 1;
	memcpy(out->tag, c->tag, n);
	out->tag[n] = '\0';
	memcpy(out->command, c->name, sizeof(out->command));
	out->uid = c->uid;
	out->status = info->status;
	out->started = c->started;
	out->finished = ts;
	out->latency = ts - c->started;
	out->idle = strcmp(c->name, "IDLE") == 0;
	out->done_at = c->done_at;
	out->done_to_ok = c->done_at >= 0 ? ts - c->done_at : -1;
	forget(t, i);
	return true;
}

bool imap_tracker_line(struct imap_tracker *t, enum imap_dir dir, imap_time_us ts,
		       const struct imap_line_info *info, struct imap_completion *completion_r)
{
	(void)dir;
	switch (info->cls) {
	case IMAP_LINE_COMMAND:
		command_started(t, ts, info);
		return false;
	case IMAP_LINE_DONE:
		done_seen(t, ts);
		return false;
	case IMAP_LINE_TAGGED:
		return completed(t, ts, info, completion_r);
	case IMAP_LINE_AUTH_RESPONSE:
	case IMAP_LINE_CONTINUED:
	case IMAP_LINE_UNTAGGED:
	case IMAP_LINE_CONTINUATION:
	case IMAP_LINE_MALFORMED:
		return false;
	}
	return false;
}
