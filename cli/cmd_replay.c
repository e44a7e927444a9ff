/* imaptap replay: recordings played to live peers, serve or client. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "capture/escape.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/replay.h"

/* --session N[,M...]: the sessions to play, each once. */
static int session_list(const char *cmd, const char *value, struct cli_replay_pace *pace)
{
	char item[32];
	unsigned long long v;
	const char *p = value;

	pace->session_count = 0;
	do {
		size_t n = strcspn(p, ",");

		snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) ? n : sizeof(item) - 1), p);
		if (n >= sizeof(item) || cli_number(item, 1, 1u << 30, &v) != 0)
			return cli_usage_error(cmd, "--session takes numbers from 1, separated by commas "
					       "(3 or 1,3), not '%.200s'", value);
		for (size_t k = 0; k < pace->session_count; k++)
			if (pace->sessions[k] == (unsigned)v)
				return cli_usage_error(cmd, "--session names session %llu twice", v);
		if (pace->session_count == CLI_REPLAY_SESSIONS_MAX)
			return cli_usage_error(cmd, "--session takes at most %d sessions",
					       CLI_REPLAY_SESSIONS_MAX);
		pace->sessions[pace->session_count++] = (unsigned)v;
		p += n;
	} while (*p++ == ',');
	return 0;
}

int cli_replay_pace_option(const char *cmd, int c, const char *value, struct cli_replay_pace *pace)
{
	imap_time_us us;

	switch (c) {
	case OPT_SESSION:
		return session_list(cmd, value, pace);
	case OPT_SPEED:
		if (cli_seconds(value, 0.01, 10000, &us) != 0)
			return cli_usage_error(cmd, "--speed takes a factor from 0.01 to 10000, not '%s'",
					       value);
		pace->speed = (double)us / 1e6;
		return 0;
	case OPT_ORDER:
		if (strcmp(value, "recording") != 0 && strcmp(value, "session") != 0)
			return cli_usage_error(cmd, "--order takes recording or session, not '%s'",
					       value);
		pace->order_by_session = strcmp(value, "session") == 0;
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
				const struct replay_recordings *recs)
{
	imap_time_us first = 0, last = 0, length, t;

	for (size_t i = 0; i < recs->count; i++) {
		const struct replay_recording *r = &recs->recs[i];
		imap_time_us end = r->opened + (r->count > 0 ? r->units[r->count - 1].at : 0);

		if (i == 0 || r->opened < first)
			first = r->opened;
		if (end > last)
			last = end;
	}
	length = last - first;
	if (pace->timeout > 0)
		return pace->timeout;
	t = 2 * (pace->speed > 0 ? (imap_time_us)((double)length / pace->speed) : 0) + TIMEOUT_SLACK;
	return t < TIMEOUT_FLOOR ? TIMEOUT_FLOOR : t;
}

void cli_replay_describe(const struct replay_recording *rec, char *buf, size_t size)
{
	unsigned lines = 0;

	for (size_t i = 0; i < rec->count; i++)
		lines += rec->units[i].dir == IMAP_C2S && rec->units[i].line_no > 0;
	/* the address is the recording's: escaped like every other row */
	snprintf(buf, size, "session %u (from ", rec->session);
	capture_escape(buf + strlen(buf), size - strlen(buf), (const uint8_t *)rec->client,
		       strlen(rec->client), 0, NULL);
	snprintf(buf + strlen(buf), size - strlen(buf), ", %u client lines)", lines);
}

int cli_replay_load(const char *file, const struct cli_replay_pace *pace,
		    struct replay_recordings *recs)
{
	char err[4096];
	int code;

	if (replay_recordings_load(file, pace->sessions, pace->session_count, recs, &code, err,
				   sizeof(err)) != 0) {
		cli_message("%s", err);
		return code == 2 ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
	}
	if (pace->session_count == 0 && recs->passed_over > 0)
		cli_message("passed over %u of the %u sessions in %s: the client sent no IMAP line "
			    "in %s (a port probe or a health check; --session N plays one)",
			    recs->passed_over, recs->sessions_in_file, file,
			    recs->passed_over == 1 ? "it" : "them");
	return CLI_EXIT_OK;
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
