/* libFuzzer target: the input is a whole capture file, exported as
 * `imaptap export` does. The oracles: the script holds printable ASCII
 * and line feeds only, whatever the packets carry; the script parser
 * takes it; and the bytes its lines give, session by session and
 * direction by direction, are the capture's streams (gaps left out).
 * Exported again with every value redacted (--redact all), each stream
 * keeps its length and its units, and no byte that frames a line, a
 * quoted string or a literal changes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/pcap_reader.h"
#include "imap/framer.h"
#include "imap/sensitive.h"
#include "replay/export.h"
#include "replay/script.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SESSIONS_MAX 64

/* Every byte of each stream, by session and direction. */
struct streams {
	uint8_t *bytes[SESSIONS_MAX][2];
	size_t len[SESSIONS_MAX][2];
};

static void append(uint8_t **buf, size_t *len, const uint8_t *p, size_t n)
{
	uint8_t *grown = realloc(*buf, *len + n + 1);

	if (grown == NULL)
		abort();
	memcpy(grown + *len, p, n);
	*buf = grown;
	*len += n;
}

static void on_stream(void *ctx, const struct capture_stream_event *ev)
{
	struct streams *s = ctx;

	if (ev->kind == CAPTURE_STREAM_DATA && ev->session < SESSIONS_MAX)
		append(&s->bytes[ev->session][ev->dir], &s->len[ev->session][ev->dir], ev->data,
		       ev->len);
}

static void check_text(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c != '\n' && (c < 0x20 || c > 0x7e)) {
			fprintf(stderr, "byte 0x%02x in the script at %zu\n", c, i);
			abort();
		}
	}
}

/* Exports the capture at path with o; NULL when export refuses it. */
static struct replay_script *export_parsed(const char *path, const struct replay_export_options *o,
					   struct replay_export_result *r)
{
	struct replay_script *script = NULL;
	char err[4096], *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (out == NULL)
		abort();
	if (replay_export(path, o, out, r, err, sizeof(err)) != 0) {
		fclose(out);
		free(text);
		return NULL;
	}
	fclose(out);
	check_text(text, len);
	if (replay_script_parse("export", text, len, &script, err, sizeof(err)) != 0) {
		fprintf(stderr, "the script does not parse: %s\n", err);
		abort();
	}
	free(text);
	return script;
}

static void collect(const struct replay_script *script, struct streams *got)
{
	/* the script numbers its sessions from 1 in the capture's order */
	for (size_t i = 0; i < script->count; i++) {
		const struct replay_script_event *e = &script->events[i];

		if (e->kind == REPLAY_SCRIPT_DATA && e->session < SESSIONS_MAX)
			append(&got->bytes[e->session][e->dir], &got->len[e->session][e->dir], e->data,
			       e->len);
	}
}

/* The units a framer cuts a stream into, as (kind, length) pairs. */
struct cuts {
	uint64_t *v;
	size_t n;
};

static void on_cut(void *ctx, const struct imap_unit *u)
{
	struct cuts *c = ctx;
	uint64_t *grown = realloc(c->v, (c->n + 1) * sizeof(*grown));

	if (grown == NULL)
		abort();
	c->v = grown;
	c->v[c->n++] = u->wire_len << 2 | (uint64_t)u->kind;
}

static struct cuts cut(enum imap_dir dir, const uint8_t *p, size_t n)
{
	struct cuts c = {0};
	struct imap_framer *f = imap_framer_new(dir, 0, on_cut, &c);

	if (f == NULL)
		abort();
	imap_framer_feed(f, p, n);
	imap_framer_free(&f);
	return c;
}

/* A redacted stream against the capture's: the same length, the same
 * units, and a byte changed only into a letter or digit, never from one
 * that frames a line, a quoted string or a literal. */
static void check_redacted(unsigned s, int d, const uint8_t *want, const uint8_t *got, size_t n)
{
	struct cuts a, b;

	for (size_t i = 0; i < n; i++) {
		uint8_t w = want[i], g = got[i];

		if (w == g)
			continue;
		if (strchr(" ()\"\\\r\n{}~", w) != NULL || w == '\0' ||
		    !((g >= '0' && g <= '9') || (g >= 'a' && g <= 'z') || (g >= 'A' && g <= 'Z'))) {
			fprintf(stderr, "session %u %s: byte %zu 0x%02x became 0x%02x\n", s,
				d == 0 ? "c2s" : "s2c", i, w, g);
			abort();
		}
	}
	a = cut((enum imap_dir)d, want, n);
	b = cut((enum imap_dir)d, got, n);
	if (a.n != b.n || (a.n > 0 && memcmp(a.v, b.v, a.n * sizeof(*a.v)) != 0)) {
		fprintf(stderr, "session %u %s: redacting changed the units\n", s, d == 0 ? "c2s" : "s2c");
		abort();
	}
	free(a.v);
	free(b.v);
}

static void free_streams(struct streams *st)
{
	for (unsigned s = 0; s < SESSIONS_MAX; s++)
		for (int d = 0; d < 2; d++)
			free(st->bytes[s][d]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_input_path(data, size);
	struct replay_export_options o = {.source = "fuzz"};
	struct replay_export_result r;
	struct replay_script *script, *redacted;
	struct streams want = {0}, got = {0}, red = {0};
	char err[4096];
	bool whole;

	script = export_parsed(path, &o, &r);
	if (script == NULL)
		return 0;
	if (capture_pcap_read(path, on_stream, NULL, &want, NULL, err, sizeof(err)) != 0)
		abort();
	collect(script, &got);
	whole = r.gap_bytes == 0 && r.sessions < SESSIONS_MAX;
	for (unsigned s = 1; s < SESSIONS_MAX && whole; s++)
		for (int d = 0; d < 2; d++)
			if (want.len[s][d] != got.len[s][d] ||
			    (want.len[s][d] > 0 && memcmp(want.bytes[s][d], got.bytes[s][d], want.len[s][d]) != 0)) {
				fprintf(stderr, "session %u %s: %zu bytes in the capture, %zu in the script\n",
					s, d == 0 ? "c2s" : "s2c", want.len[s][d], got.len[s][d]);
				abort();
			}
	/* again with every value redacted: the same lengths, the same units */
	o.redact = IMAP_SENS_ALL;
	o.redact_key = "fuzz";
	redacted = export_parsed(path, &o, &r);
	if (redacted == NULL)
		abort();
	collect(redacted, &red);
	for (unsigned s = 1; s < SESSIONS_MAX && whole; s++)
		for (int d = 0; d < 2; d++) {
			if (red.len[s][d] != want.len[s][d]) {
				fprintf(stderr, "session %u %s: %zu bytes in the capture, %zu redacted\n", s,
					d == 0 ? "c2s" : "s2c", want.len[s][d], red.len[s][d]);
				abort();
			}
			check_redacted(s, d, want.bytes[s][d], red.bytes[s][d], want.len[s][d]);
		}
	free_streams(&want);
	free_streams(&got);
	free_streams(&red);
	replay_script_free(&script);
	replay_script_free(&redacted);
	return 0;
}
