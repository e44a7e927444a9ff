/* What replay/diff_collect.c (a recording into protocol facts) and
 * replay/diff.c (two sets of facts compared) share. Only they include it. */
#ifndef REPLAY_DIFF_INT_H
#define REPLAY_DIFF_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "imap/classify.h"
#include "imap/types.h"

#define DIFF_WORD 48    /* an escaped name, kind or code, cut to fit */
#define DIFF_KINDS 24   /* untagged kinds kept per command */
#define DIFF_SET 256    /* capabilities kept per session */

/* A set of escaped words, in the order first seen. */
struct diff_set {
	char (*w)[DIFF_WORD];
	size_t n, cap;
	bool full;
};

struct diff_cmd {
	char name[DIFF_WORD]; /* "SELECT", "UID FETCH" */
	char tag[DIFF_WORD];
	bool done;
	enum imap_status status;
	char code[DIFF_WORD];  /* the completion's response code, its first word */
	imap_time_us latency;
	char kinds[DIFF_KINDS][DIFF_WORD]; /* untagged kinds while in flight: "EXISTS", "OK [UIDNEXT]" */
	size_t nkinds;
};

struct diff_session {
	unsigned id;
	struct diff_cmd *cmds;
	size_t n, cap;
	struct diff_set caps;    /* every capability announced */
	struct diff_set enabled; /* ENABLED answers */
};

struct diff_recording {
	struct diff_session *s;
	size_t n, cap;
	bool failed; /* out of memory */
};

/* Reads path into rec. Returns 0, or -1 with err. */
int diff_collect(const char *path, struct diff_recording *rec, char *err, size_t errlen);
void diff_recording_free(struct diff_recording *rec);
bool diff_set_has(const struct diff_set *set, const char *word);

#endif
