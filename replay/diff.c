/* imaptap diff: the facts of two recordings (replay/diff_collect.c)
 * compared session by session, and what differs written as a report and
 * as JSON records. */
#include "replay/diff.h"
#include "replay/diff_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest common subsequence of two command lists takes a table of
 * n * m cells; past this, commands are paired by position. */
#define ALIGN_CELLS (16u * 1024u * 1024u)

struct differ {
	const struct replay_diff_options *o;
	struct replay_diff_result *r;
	unsigned session;
};

/* The strings here are escaped already: only '"' and '\' need more. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* One difference: a report line, and a record of what, with key/value
 * string pairs (NULL-terminated). */
static void said(struct differ *d, const char *what, const char *line, ...)
{
	va_list ap;
	const char *k;

	d->r->differences++;
	if (d->o->report != NULL)
		fprintf(d->o->report, "  %s\n", line);
	if (d->o->events == NULL)
		return;
	fprintf(d->o->events, "{\"kind\":\"diff\",\"session\":%u,\"what\":\"%s\"", d->session, what);
	va_start(ap, line);
	while ((k = va_arg(ap, const char *)) != NULL) {
		fprintf(d->o->events, ",\"%s\":", k);
		json_str(d->o->events, va_arg(ap, const char *));
	}
	va_end(ap);
	fputs("}\n", d->o->events);
}

static const char *status_word(const struct diff_cmd *c)
{
	return c->done ? imap_status_str(c->status) : "no completion";
}

static bool has_kind(const struct diff_cmd *c, const char *k)
{
	for (size_t i = 0; i < c->nkinds; i++)
		if (strcmp(c->kinds[i], k) == 0)
			return true;
	return false;
}

static void only_kinds(struct differ *d, const struct diff_cmd *x, const struct diff_cmd *y,
		       const char *side)
{
	char line[300];

	for (size_t i = 0; i < x->nkinds; i++) {
		if (has_kind(y, x->kinds[i]))
			continue;
		snprintf(line, sizeof(line), "~ %s (%s / %s): untagged %s only in %s", x->name,
			 side[0] == 'a' ? x->tag : y->tag, side[0] == 'a' ? y->tag : x->tag,
			 x->kinds[i], side[0] == 'a' ? "A" : "B");
		said(d, "untagged", line, "command", x->name, "only", side, "response", x->kinds[i],
		     NULL);
	}
}

/* Two commands of the same name, one from each recording. */
static void compare_cmd(struct differ *d, const struct diff_cmd *a, const struct diff_cmd *b)
{
	char line[300], la[32], lb[32];

	if (strcmp(status_word(a), status_word(b)) != 0) {
		snprintf(line, sizeof(line), "~ %s (%s / %s): %s / %s", a->name, a->tag, b->tag,
			 status_word(a), status_word(b));
		said(d, "status", line, "command", a->name, "a", status_word(a), "b", status_word(b),
		     NULL);
	}
	if (strcmp(a->code, b->code) != 0) {
		snprintf(line, sizeof(line), "~ %s (%s / %s): response code [%s] / [%s]", a->name,
			 a->tag, b->tag, a->code, b->code);
		said(d, "code", line, "command", a->name, "a", a->code, "b", b->code, NULL);
	}
	only_kinds(d, a, b, "a");
	only_kinds(d, b, a, "b");
	if (d->o->time_factor > 0 && a->done && b->done) {
		imap_time_us lo = a->latency < b->latency ? a->latency : b->latency;
		imap_time_us hi = a->latency < b->latency ? b->latency : a->latency;

		if (hi - lo > d->o->time_floor && (double)hi > d->o->time_factor * (double)(lo > 0 ? lo : 1)) {
			snprintf(la, sizeof(la), "%" PRId64, a->latency);
			snprintf(lb, sizeof(lb), "%" PRId64, b->latency);
			snprintf(line, sizeof(line), "~ %s (%s / %s): latency %.3f ms / %.3f ms", a->name,
				 a->tag, b->tag, (double)a->latency / 1000.0, (double)b->latency / 1000.0);
			said(d, "latency", line, "command", a->name, "a_us", la, "b_us", lb, NULL);
		}
	}
}

static void only_cmd(struct differ *d, const struct diff_cmd *c, const char *side, size_t at)
{
	char line[300], pos[24];

	snprintf(pos, sizeof(pos), "%zu", at + 1);
	snprintf(line, sizeof(line), "%s %s (%s), command %zu of %s, only in %s",
		 side[0] == 'a' ? "-" : "+", c->name, c->tag, at + 1, side[0] == 'a' ? "A" : "B",
		 side[0] == 'a' ? "A" : "B");
	said(d, "command", line, "only", side, "command", c->name, "tag", c->tag, "position", pos,
	     NULL);
}

/* The commands of two sessions, aligned by their names. */
static int compare_cmds(struct differ *d, const struct diff_session *a, const struct diff_session *b)
{
	size_t n = a->n, m = b->n, i = 0, j = 0;
	uint32_t *t = NULL;

	if (n > 0 && m > 0 && (n + 1) * (m + 1) <= ALIGN_CELLS) {
		t = calloc((n + 1) * (m + 1), sizeof(*t));
		if (t == NULL)
			return -1;
		/* t[i][j]: the common subsequence of a[i..] and b[j..] */
		for (size_t x = n; x-- > 0;)
			for (size_t y = m; y-- > 0;)
				t[x * (m + 1) + y] = strcmp(a->cmds[x].name, b->cmds[y].name) == 0
							     ? t[(x + 1) * (m + 1) + y + 1] + 1
						     : t[(x + 1) * (m + 1) + y] > t[x * (m + 1) + y + 1]
							     ? t[(x + 1) * (m + 1) + y]
							     : t[x * (m + 1) + y + 1];
	} else if (n > 0 && m > 0 && d->o->report != NULL) {
		fprintf(d->o->report, "  (too many commands to align: compared by position)\n");
	}
	while (i < n || j < m) {
		bool same = i < n && j < m && strcmp(a->cmds[i].name, b->cmds[j].name) == 0;

		if (same && (t == NULL || t[i * (m + 1) + j] == t[(i + 1) * (m + 1) + j + 1] + 1)) {
			compare_cmd(d, &a->cmds[i++], &b->cmds[j++]);
		} else if (j >= m || (i < n && t != NULL &&
				      t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1])) {
			only_cmd(d, &a->cmds[i], "a", i);
			i++;
		} else if (i >= n || t != NULL) {
			only_cmd(d, &b->cmds[j], "b", j);
			j++;
		} else { /* by position, names differ */
			only_cmd(d, &a->cmds[i], "a", i);
			only_cmd(d, &b->cmds[j], "b", j);
			i++;
			j++;
		}
	}
	free(t);
	return 0;
}

static void only_words(struct differ *d, const struct diff_set *x, const struct diff_set *y,
		       const char *what, const char *label, const char *side)
{
	char line[300];

	for (size_t i = 0; i < x->n; i++) {
		if (diff_set_has(y, x->w[i]))
			continue;
		snprintf(line, sizeof(line), "%s %s only in %s", label, x->w[i],
			 side[0] == 'a' ? "A" : "B");
		said(d, what, line, "only", side, "name", x->w[i], NULL);
	}
}

static int cmp_session(const void *x, const void *y)
{
	const struct diff_session *a = x, *b = y;

	return a->id < b->id ? -1 : a->id > b->id;
}

static int compare(struct differ *d, struct diff_recording *a, struct diff_recording *b)
{
	size_t n = a->n > b->n ? a->n : b->n;

	qsort(a->s, a->n, sizeof(a->s[0]), cmp_session);
	qsort(b->s, b->n, sizeof(b->s[0]), cmp_session);
	for (size_t k = 0; k < n; k++) {
		d->session = (unsigned)k + 1;
		if (d->o->report != NULL)
			fprintf(d->o->report, "session %zu:\n", k + 1);
		if (k >= a->n || k >= b->n) {
			const char *side = k >= b->n ? "a" : "b";
			char line[120], count[24];

			snprintf(count, sizeof(count), "%zu", k >= b->n ? a->s[k].n : b->s[k].n);
			snprintf(line, sizeof(line), "the session is only in %s (%s commands)",
				 side[0] == 'a' ? "A" : "B", count);
			said(d, "session", line, "only", side, "commands", count, NULL);
			continue;
		}
		if (compare_cmds(d, &a->s[k], &b->s[k]) != 0)
			return -1;
		only_words(d, &a->s[k].caps, &b->s[k].caps, "capability", "capability", "a");
		only_words(d, &b->s[k].caps, &a->s[k].caps, "capability", "capability", "b");
		only_words(d, &a->s[k].enabled, &b->s[k].enabled, "enabled", "ENABLED", "a");
		only_words(d, &b->s[k].enabled, &a->s[k].enabled, "enabled", "ENABLED", "b");
	}
	return 0;
}

int replay_diff(const char *path_a, const char *path_b, const struct replay_diff_options *o,
		struct replay_diff_result *r, char *err, size_t errlen)
{
	struct diff_recording a = {0}, b = {0};
	struct differ d = {.o = o, .r = r};
	int rc = -1;

	memset(r, 0, sizeof(*r));
	if (diff_collect(path_a, &a, err, errlen) != 0 || diff_collect(path_b, &b, err, errlen) != 0)
		goto out;
	r->sessions_a = (unsigned)a.n;
	r->sessions_b = (unsigned)b.n;
	if (o->report != NULL)
		fprintf(o->report, "A: %s (%u session(s))\nB: %s (%u session(s))\n", o->name_a,
			r->sessions_a, o->name_b, r->sessions_b);
	if (compare(&d, &a, &b) != 0) {
		snprintf(err, errlen, "out of memory comparing %s and %s", path_a, path_b);
		goto out;
	}
	if (o->report != NULL)
		fprintf(o->report, "%u difference(s)\n", r->differences);
	if (o->events != NULL)
		fprintf(o->events, "{\"kind\":\"diff-summary\",\"differences\":%u,\"sessions_a\":%u,"
				   "\"sessions_b\":%u}\n", r->differences, r->sessions_a, r->sessions_b);
	rc = 0;
out:
	diff_recording_free(&a);
	diff_recording_free(&b);
	return rc;
}
