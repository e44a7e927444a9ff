/* replay serve's reports: where the client diverged, beside the
 * recording. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "replay/serve_int.h"

void replay_printable(char *out, size_t size, const uint8_t *p, size_t n)
{
	size_t need;

	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	need = capture_escaped_len(p, n, 0);
	if (need < size) {
		capture_escape(out, size, p, n, 0, NULL);
		return;
	}
	memcpy(out + capture_escape(out, size - 3, p, n, 0, NULL), "...", 4);
}

void replay_report(struct replay_result *res, const char *fmt, ...)
{
	size_t n = strlen(res->report);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->report + n, sizeof(res->report) - n, fmt, ap);
	va_end(ap);
}

/* The units before index i, as context for a report. */
static void report_context(struct serve *s, size_t i)
{
	size_t from = i > 4 ? i - 4 : 0;
	char text[160];

	if (from >= i)
		return;
	replay_report(s->res, "  the recording before it:\n");
	for (size_t k = from; k < i; k++) {
		const struct replay_unit *u = &s->rec->units[k];

		/* client lines masked: a foreign capture may hold a password */
		replay_printable(text, sizeof(text), u->dir == IMAP_C2S ? u->masked : u->data,
			  u->dir == IMAP_C2S ? u->masked_len : u->len);
		if (u->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(text, sizeof(text), "{%zu bytes}", u->len);
		replay_report(s->res, "    +%" PRId64 ".%03d s %s %s\n", u->at / IMAP_US_PER_S,
		       (int)(u->at % IMAP_US_PER_S / 1000), u->dir == IMAP_C2S ? "C>" : "S<", text);
	}
}

/* The reason, to the client too, before the close: a client test's own
 * log then says why its server went away. */
static void say_bye(struct serve *s, const char *want, const char *have)
{
	char line[1000];
	int n;
	imap_time_us until = replay_now() + IMAP_US_PER_S;

	if (s->link.eof)
		return;
	n = snprintf(line, sizeof(line), "* BYE [imaptap] replay diverged: expected %.400s, "
		     "received %.400s\r\n", want, have);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	replay_link_queue(&s->link, (const uint8_t *)line, (size_t)n);
	while (s->link.out_len > 0 && !s->link.eof && replay_now() < until)
		replay_link_pump(&s->link, 50000);
}

/* The rest of the client's turn where it diverged: each recorded line
 * (-) beside what arrived in its place (+), so that one look shows whether
 * the client skipped, added or changed lines. */
static void report_turn(struct serve *s, size_t i)
{
	char text[160];
	size_t k = i, j = 0, shown = 0;

	if (s->live_count <= 1 && (i + 1 >= s->rec->count || s->rec->units[i + 1].dir != IMAP_C2S))
		return; /* one line each: expected and received say it all */
	replay_report(s->res, "  the client's turn, recorded (-) and received (+):\n");
	while (shown < 16 && ((k < s->rec->count && s->rec->units[k].dir == IMAP_C2S) ||
			      j < s->live_count)) {
		if (k < s->rec->count && s->rec->units[k].dir == IMAP_C2S) {
			const struct replay_unit *u = &s->rec->units[k++];

			replay_printable(text, sizeof(text), u->masked, u->masked_len);
			if (u->kind == IMAP_UNIT_LITERAL_DATA)
				snprintf(text, sizeof(text), "{%zu literal bytes}", u->len);
			replay_report(s->res, "    - %s\n", text);
		}
		if (j < s->live_count) {
			const struct live_unit *l = &s->live[(s->live_head + j++) % LIVE_MAX];

			replay_printable(text, sizeof(text), l->data, l->len);
			if (l->kind == IMAP_UNIT_LITERAL_DATA)
				snprintf(text, sizeof(text), "{%zu literal bytes}", l->len);
			replay_report(s->res, "    + %s\n", text);
		}
		shown++;
	}
}

void replay_serve_diverged(struct serve *s, size_t i, const char *what, const struct live_unit *got)
{
	const struct replay_unit *u = &s->rec->units[i];
	char want[400], have[400];

	replay_printable(want, sizeof(want), u->masked, u->masked_len);
	if (u->kind == IMAP_UNIT_LITERAL_DATA)
		snprintf(want, sizeof(want), "{%zu literal bytes}", u->len);
	s->res->code = 1;
	replay_report(s->res, "replay: the client diverged from the recording at %s line %u "
		  "(recorded at +%" PRId64 ".%03d s): %s\n", u->dir == IMAP_C2S ? "client" : "server",
	       u->line_no, u->at / IMAP_US_PER_S, (int)(u->at % IMAP_US_PER_S / 1000), what);
	replay_report(s->res, "  %s: %s\n", u->dir == IMAP_C2S ? "expected" : "due", want);
	if (got != NULL) {
		replay_printable(have, sizeof(have), got->data, got->len);
		if (got->kind == IMAP_UNIT_LITERAL_DATA)
			snprintf(have, sizeof(have), "{%zu literal bytes}", got->len);
		replay_report(s->res, "  received: %s\n", have);
	}
	report_turn(s, i);
	report_context(s, i);
	say_bye(s, want, got != NULL ? have : what);
}

