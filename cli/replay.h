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
	OPT_ORDER,
	OPT_REPLAY_OWN, /* the first of a command's own options */
};

#define CLI_REPLAY_PACE_OPTIONS                                        \
	{"session", required_argument, NULL, OPT_SESSION},             \
	{"speed", required_argument, NULL, OPT_SPEED},                 \
	{"no-delay", no_argument, NULL, OPT_NO_DELAY},                 \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},             \
	{"order", required_argument, NULL, OPT_ORDER}

/* --session takes at most this many numbers. */
#define CLI_REPLAY_SESSIONS_MAX 64

struct cli_replay_pace {
	unsigned sessions[CLI_REPLAY_SESSIONS_MAX]; /* 1-based */
	size_t session_count;  /* 0: every session in which the client spoke */
	double speed;          /* 0: no delays */
	imap_time_us timeout;  /* 0: from the recording's length */
	bool order_by_session; /* --order session: no order between sessions */
};

/* Handles option c of the pacing options for cmd: 0 when it was one and
 * is fine, 1 when c is not one of them, or the usage error's exit code. */
int cli_replay_pace_option(const char *cmd, int c, const char *value, struct cli_replay_pace *pace);

/* The timeout of one session when none was given: twice the
 * recording's length at the pace plus 30 s, at least 60 s. The length
 * runs from the first session's start to the last one's end. */
imap_time_us cli_replay_timeout(const struct cli_replay_pace *pace,
				const struct replay_recordings *recs);

/* Loads the sessions pace names of file and says which are played; on
 * failure says why and returns the exit code (usage for a session that
 * is not there). */
int cli_replay_load(const char *file, const struct cli_replay_pace *pace,
		    struct replay_recordings *recs);

/* "session 3 (from 127.0.0.1:40312, 12 client lines)", for messages. */
void cli_replay_describe(const struct replay_recording *rec, char *buf, size_t size);

int cli_replay_serve_main(int argc, char **argv);
int cli_replay_client_main(int argc, char **argv);

/* The usage texts, for 'imaptap replay --help'. */
extern const char cli_replay_serve_usage[];
extern const char cli_replay_client_usage[];

#endif
