/* libFuzzer target: the input is a whole capture file, analysed offline
 * as `imaptap analyze` does (read from a memfd) into a timeline held in
 * memory, in colour for inputs of odd length. The oracle is the terminal
 * predicate of tests/lib/terminal.py: the timeline holds printable ASCII,
 * line feeds and the timeline's own SGR codes, nothing else, whatever the
 * capture's packets, fault marks and foreign flows carry. The messages
 * analyze prints (the error, the first damaged mark) pass the same gate. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "capture/offline.h"
#include "capture/timeline.h"
#include "imap/redact.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/lib/terminal_safe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *text, size_t len)
{
	long bad = terminal_unsafe_at(text, len);

	if (bad >= 0) {
		size_t from = bad > 20 ? (size_t)bad - 20 : 0;
		char shown[400];

		capture_escape(shown, sizeof(shown), text + from, len - from < 60 ? len - from : 60,
			       0, NULL);
		fprintf(stderr, "a byte that must not reach a terminal at %ld: %s\n", bad, shown);
		abort();
	}
}

/* What cli_message writes of a library's message. */
static void check_message(const char *message)
{
	char out[4 * 4096 + 1];

	capture_escape(out, sizeof(out), message, strlen(message), 0, NULL);
	check(out, strlen(out));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_input_path(data, size);
	struct capture_offline_config config = {.redact_flags = IMAP_REDACT_CREDENTIALS};
	struct capture_offline_result result;
	struct capture_sinks sinks = {0};
	struct capture_sink sink;
	char err[4096] = "", *text = NULL;
	size_t len = 0;
	FILE *out;

	out = open_memstream(&text, &len);
	if (out == NULL)
		abort();
	{
		struct capture_timeline_config tc = {
			.out = out, .color = (size & 1) != 0, .settings = true, .whole_lines = (size & 2) != 0};

		sink = capture_timeline_new(&tc);
		if (sink.ops == NULL || capture_sinks_add(&sinks, sink) != 0)
			abort();
	}
	memset(&result, 0, sizeof(result));
	if (capture_offline_run(path, &config, &sinks, &result, err, sizeof(err)) != 0)
		check_message(err);
	capture_sinks_destroy(&sinks);
	fclose(out);
	check(text, len);
	free(text);
	if (result.damaged_marks > 0)
		check_message(result.damaged_mark);
	return 0;
}
