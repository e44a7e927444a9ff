/* imaptap replay: recordings played to live peers, serve or client. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/replay.h"

int cli_replay_pace_option(const char *cmd, int c, const char *value, struct cli_replay_pace *pace)
{
	unsigned long long v;
	imap_time_us us;

	switch (c) {
	case OPT_SESSION:
		if (cli_number(value, 1, 1u << 30, &v) != 0)
			return cli_usage_error(cmd, "--session takes a number from 1, not '%s'", value);
		pace->session = (unsigned)v;
		return 0;
	case OPT_SPEED:
		if (cli_seconds(value, 0.01, 10000, &us) != 0)
			return cli_usage_error(cmd, "--speed takes a factor from 0.01 to 10000, not '%s'",
					       value);
		pace->speed = (double)us / 1e6;
		return 0;
	case OPT_NO_DELAY:
		pace->speed = 0;
		return 0;
	case OPT_TIMEOUT:
		if (cli_duration(value, 1, 7 * 24 * 3600.0, &pace->timeout) != 0)
			return cli_usage_error(cmd, "--timeout takes a duration from 1s to 7 days (120, "
					       "120s, 2m), not '%s'", value);
		return 0;
	default:
		return 1;
	}
}

#define TIMEOUT_FLOOR (60 * IMAP_US_PER_S)
#define TIMEOUT_SLACK (30 * IMAP_US_PER_S)

imap_time_us cli_replay_timeout(const struct cli_replay_pace *pace,
				const struct replay_recording *rec)
{
	imap_time_us length = rec->count > 0 ? rec->units[rec->count - 1].at : 0;
	imap_time_us t;

	if (pace->timeout > 0)
		return pace->timeout;
	t = 2 * (pace->speed > 0 ? (imap_time_us)((double)length / pace->speed) : 0) + TIMEOUT_SLACK;
	return t < TIMEOUT_FLOOR ? TIMEOUT_FLOOR : t;
}

int cli_replay_load(const char *file, const struct cli_replay_pace *pace,
		    struct replay_recording *rec)
{
	char err[4096];
	unsigned session = pace->session, sessions;
	int code;

	if (session == 0) {
		/* the default: the first session in which the client spoke */
		if (replay_recording_first_spoken(file, &session, &sessions, &code, err,
						  sizeof(err)) != 0) {
			cli_message("%s", err);
			return code == 2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
		}
		if (sessions > 1)
			cli_message("replaying session %u of the %u in %s: the first in which the "
				    "client sent an IMAP line%s (--session N picks another)", session,
				    sessions, file, session > 1 ? "; the ones before it sent none "
				    "(a port probe or a health check)" : "");
	}
	if (replay_recording_load(file, session, rec, &code, err, sizeof(err)) == 0)
		return CLI_EXIT_OK;
	cli_message("%s", err);
	return code == 2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
}

int cli_replay_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "client") == 0)
		return cli_replay_client_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return cli_replay_serve_main(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		fputs(cli_replay_serve_usage, stdout);
		fputs("\n", stdout);
		fputs(cli_replay_client_usage, stdout);
		return CLI_EXIT_OK;
	}
	return cli_usage_error("replay", "%s: replay takes 'serve' or 'client' (imaptap replay serve FILE)",
			       argc >= 2 ? argv[1] : "nothing");
}
