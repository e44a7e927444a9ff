/* libFuzzer target: the input is a whole capture file, exported as
 * `imaptap export` does. The oracles: the script holds printable ASCII
 * and line feeds only, whatever the packets carry; the script parser
 * takes it; and the bytes its lines give, session by session and
 * direction by direction, are the capture's streams (gaps left out). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/pcap_reader.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_input_path(data, size);
	struct replay_export_options o = {.source = "fuzz"};
	struct replay_export_result r;
	struct replay_script *script = NULL;
	struct streams want = {0}, got = {0};
	char err[4096], *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (out == NULL)
		abort();
	if (replay_export(path, &o, out, &r, err, sizeof(err)) != 0) {
		fclose(out);
		free(text);
		return 0;
	}
	fclose(out);
	check_text(text, len);
	if (replay_script_parse("export", text, len, &script, err, sizeof(err)) != 0) {
		fprintf(stderr, "the script does not parse: %s\n", err);
		abort();
	}
	if (capture_pcap_read(path, on_stream, NULL, &want, NULL, err, sizeof(err)) != 0)
		abort();
	/* the script numbers its sessions from 1 in the capture's order */
	for (size_t i = 0; i < script->count; i++) {
		const struct replay_script_event *e = &script->events[i];

		if (e->kind == REPLAY_SCRIPT_DATA && e->session < SESSIONS_MAX)
			append(&got.bytes[e->session][e->dir], &got.len[e->session][e->dir], e->data,
			       e->len);
	}
	for (unsigned s = 1; s < SESSIONS_MAX && r.gap_bytes == 0 && r.sessions < SESSIONS_MAX; s++)
		for (int d = 0; d < 2; d++)
			if (want.len[s][d] != got.len[s][d] ||
			    (want.len[s][d] > 0 && memcmp(want.bytes[s][d], got.bytes[s][d], want.len[s][d]) != 0)) {
				fprintf(stderr, "session %u %s: %zu bytes in the capture, %zu in the script\n",
					s, d == 0 ? "c2s" : "s2c", want.len[s][d], got.len[s][d]);
				abort();
			}
	for (unsigned s = 0; s < SESSIONS_MAX; s++)
		for (int d = 0; d < 2; d++) {
			free(want.bytes[s][d]);
			free(got.bytes[s][d]);
		}
	replay_script_free(&script);
	free(text);
	return 0;
}
