/* What the two replay commands share: their pacing options and the
 * timeout they default to. */
#ifndef CLI_REPLAY_H
#define CLI_REPLAY_H

#include <stdbool.h>

#include "imap/types.h"
#include "replay/recording.h"

/* Option values of both commands, from 256; each command's own follow. */
enum {
	OPT_SESSION = 256,
	OPT_SPEED,
	OPT_NO_DELAY,
	OPT_TIMEOUT,
	OPT_REPLAY_OWN, /* the first of a command's own options */
};

#define CLI_REPLAY_PACE_OPTIONS                                        \
	{"session", required_argument, NULL, OPT_SESSION},             \
	{"speed", required_argument, NULL, OPT_SPEED},                 \
	{"no-delay", no_argument, NULL, OPT_NO_DELAY},                 \
	{"timeout", required_argument, NULL, OPT_TIMEOUT}

struct cli_replay_pace {
	unsigned session;      /* 1-based; 0: the first in which the client spoke */
	double speed;          /* 0: no delays */
	imap_time_us timeout;  /* 0: from the recording's length */
};

/* Handles option c of the pacing options for cmd: 0 when it was one and
 * is fine, 1 when c is not one of them, or the usage error's exit code. */
int cli_replay_pace_option(const char *cmd, int c, const char *value, struct cli_replay_pace *pace);

/* The timeout when none was given: twice the recording's length at the
 * pace plus 30 s, at least 60 s. */
imap_time_us cli_replay_timeout(const struct cli_replay_pace *pace,
				const struct replay_recording *rec);

/* Loads the session pace->session of file; on failure says why and
 * returns the exit code (usage for a session that is not there). */
int cli_replay_load(const char *file, const struct cli_replay_pace *pace,
		    struct replay_recording *rec);

int cli_replay_serve_main(int argc, char **argv);
int cli_replay_client_main(int argc, char **argv);

/* The usage texts, for 'imaptap replay --help'. */
extern const char cli_replay_serve_usage[];
extern const char cli_replay_client_usage[];

#endif
