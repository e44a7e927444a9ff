/* libFuzzer target: the transcript-script compiler's parser on arbitrary
 * text. Any input ends in a script or one error message of the form
 * "name:LINE:COLUMN: ..."; a script's events are in time order, each in a
 * session that was opened, with its data inside the text's means. */
#include <stdlib.h>
#include <string.h>

#include "replay/script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct replay_script *script = NULL;
	char err[512] = "";
	char *text;

	/* an exact-size copy, so that reading past the end is caught */
	text = malloc(size ? size : 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	if (replay_script_parse("fuzz", text, size, &script, err, sizeof(err)) < 0) {
		if (script != NULL || strncmp(err, "fuzz:", 5) != 0)
			abort();
		free(text);
		return 0;
	}
	if (script == NULL)
		abort();
	for (size_t i = 0; i < script->count; i++) {
		const struct replay_script_event *e = &script->events[i];

		if (e->session < 1 || e->session > script->sessions || e->at < 0)
			abort();
		if (i > 0 && e->at < script->events[i - 1].at)
			abort();
		if (e->kind == REPLAY_SCRIPT_DATA && e->len > 0 && e->data == NULL)
			abort();
		if (memchr(e->client, '\0', sizeof(e->client)) == NULL ||
		    memchr(e->server, '\0', sizeof(e->server)) == NULL)
			abort();
	}
	replay_script_free(&script);
	free(text);
	return 0;
}
