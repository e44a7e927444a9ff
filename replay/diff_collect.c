/* A recording into the protocol facts `imaptap diff` compares: read as
 * analyze reads it, observed by a sink that keeps commands, completions,
 * untagged kinds and capabilities per session. */
#include "replay/diff_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/offline.h"
#include "capture/sink.h"

static void word(char out[DIFF_WORD], const uint8_t *p, size_t n)
{
	capture_escape(out, DIFF_WORD, p, n, 0, NULL);
}

bool diff_set_has(const struct diff_set *set, const char *w)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->w[i], w) == 0)
			return true;
	return false;
}

static void set_add(struct diff_set *set, const uint8_t *p, size_t n, bool *failed)
{
	uint8_t up[DIFF_WORD];
	char w[DIFF_WORD];

	/* upper case before escaping: an escape's hex digits stay as they are */
	if (n > sizeof(up))
		n = sizeof(up);
	for (size_t i = 0; i < n; i++)
		up[i] = p[i] >= 'a' && p[i] <= 'z' ? (uint8_t)(p[i] - 32) : p[i];
	word(w, up, n);
	if (w[0] == '\0' || diff_set_has(set, w))
		return;
	if (set->n == DIFF_SET) {
		set->full = true;
		return;
	}
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 32;
		char(*grown)[DIFF_WORD] = realloc(set->w, cap * sizeof(*grown));

		if (grown == NULL) {
			*failed = true;
			return;
		}
		set->w = grown;
		set->cap = cap;
	}
	memcpy(set->w[set->n++], w, DIFF_WORD);
}

/* The space-separated words of s[0..n) into set. */
static void set_words(struct diff_set *set, const uint8_t *s, size_t n, bool *failed)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && s[j] != ' ')
			j++;
		if (j > i)
			set_add(set, s + i, j - i, failed);
		i = j + 1;
	}
}

static struct diff_session *session_of(struct diff_recording *rec, unsigned id)
{
	for (size_t i = 0; i < rec->n; i++)
		if (rec->s[i].id == id)
			return &rec->s[i];
	if (rec->n == rec->cap) {
		size_t cap = rec->cap ? rec->cap * 2 : 8;
		struct diff_session *grown = realloc(rec->s, cap * sizeof(*grown));

		if (grown == NULL) {
			rec->failed = true;
			return NULL;
		}
		rec->s = grown;
		rec->cap = cap;
	}
	memset(&rec->s[rec->n], 0, sizeof(rec->s[0]));
	rec->s[rec->n].id = id;
	return &rec->s[rec->n++];
}

static struct diff_cmd *add_cmd(struct diff_recording *rec, struct diff_session *s)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		struct diff_cmd *grown = realloc(s->cmds, cap * sizeof(*grown));

		if (grown == NULL) {
			rec->failed = true;
			return NULL;
		}
		s->cmds = grown;
		s->cap = cap;
	}
	memset(&s->cmds[s->n], 0, sizeof(s->cmds[0]));
	return &s->cmds[s->n++];
}

/* "EXISTS", "FETCH"; a status response by its code: "OK [UIDNEXT]". */
static void add_kind(struct diff_cmd *c, const struct imap_line_info *info)
{
	char k[IMAP_NAME_MAX + DIFF_WORD + 4], code[DIFF_WORD];
	size_t n = 0;

	if (info->status != IMAP_STATUS_NONE && info->code.len > 0) {
		while (n < info->code.len && info->code.p[n] != ' ')
			n++;
		word(code, info->code.p, n);
		/* a status response's name is OK, NO, BAD, BYE or PREAUTH */
		snprintf(k, sizeof(k), "%s [%s]", info->name, code);
	} else {
		word(k, (const uint8_t *)info->name, strlen(info->name));
	}
	k[DIFF_WORD - 1] = '\0'; /* cut to fit, printable still */
	for (size_t i = 0; i < c->nkinds; i++)
		if (strcmp(c->kinds[i], k) == 0)
			return;
	if (c->nkinds < DIFF_KINDS)
		memcpy(c->kinds[c->nkinds++], k, DIFF_WORD);
}

static struct diff_cmd *in_flight(struct diff_session *s, const uint8_t *tag, size_t len)
{
	char t[DIFF_WORD];

	if (tag != NULL)
		word(t, tag, len);
	for (size_t i = 0; i < s->n; i++)
		if (!s->cmds[i].done && (tag == NULL || strcmp(s->cmds[i].tag, t) == 0))
			return &s->cmds[i];
	return NULL;
}

static void on_observe(void *self, unsigned session, const struct imap_observation *obs)
{
	struct diff_recording *rec = self;
	const struct imap_line_info *info = obs->info;
	struct diff_session *s;
	struct diff_cmd *c;

	if (info == NULL || obs->origin != IMAP_ORIGIN_PEER || (s = session_of(rec, session)) == NULL)
		return;
	if (obs->dir == IMAP_C2S && info->cls == IMAP_LINE_COMMAND) {
		if ((c = add_cmd(rec, s)) == NULL)
			return;
		char name[IMAP_NAME_MAX + 4];

		snprintf(name, sizeof(name), "%s%s", info->uid ? "UID " : "", info->name);
		word(c->name, (const uint8_t *)name, strlen(name));
		word(c->tag, info->tag.p, info->tag.len);
		return;
	}
	if (obs->dir != IMAP_S2C)
		return;
	if (info->cls == IMAP_LINE_UNTAGGED && (c = in_flight(s, NULL, 0)) != NULL)
		add_kind(c, info);
	if (info->cls == IMAP_LINE_UNTAGGED && strcmp(info->name, "CAPABILITY") == 0)
		set_words(&s->caps, info->args.p, info->args.len, &rec->failed);
	if (info->cls == IMAP_LINE_UNTAGGED && strcmp(info->name, "ENABLED") == 0)
		set_words(&s->enabled, info->args.p, info->args.len, &rec->failed);
	if (info->code.len > 11 && memcmp(info->code.p, "CAPABILITY ", 11) == 0)
		set_words(&s->caps, info->code.p + 11, info->code.len - 11, &rec->failed);
	if (info->cls == IMAP_LINE_TAGGED && obs->completion != NULL &&
	    (c = in_flight(s, info->tag.p, info->tag.len)) != NULL) {
		size_t n = 0;

		c->done = true;
		c->status = obs->completion->status;
		c->latency = obs->completion->latency;
		while (n < info->code.len && info->code.p[n] != ' ')
			n++;
		word(c->code, info->code.p, n);
	}
}

void diff_recording_free(struct diff_recording *rec)
{
	for (size_t i = 0; i < rec->n; i++) {
		free(rec->s[i].cmds);
		free(rec->s[i].caps.w);
		free(rec->s[i].enabled.w);
	}
	free(rec->s);
	memset(rec, 0, sizeof(*rec));
}

int diff_collect(const char *path, struct diff_recording *rec, char *err, size_t errlen)
{
	static const struct capture_sink_ops ops = {.observe = on_observe};
	struct capture_offline_config config = {.no_rules = true};
	struct capture_offline_result result;
	struct capture_sinks sinks = {0};
	struct capture_sink sink = {.ops = &ops, .self = rec};

	capture_sinks_add(&sinks, sink);
	if (capture_offline_run(path, &config, &sinks, &result, err, errlen) != 0)
		return -1;
	if (rec->failed) {
		snprintf(err, errlen, "cannot compare %s: out of memory", path);
		return -1;
	}
	return 0;
}
