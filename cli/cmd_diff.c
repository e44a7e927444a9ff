/* imaptap diff: two recordings of the same scenario compared at the
 * protocol level (replay/diff.h), for CI. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capture/escape.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "replay/diff.h"

static const char diff_usage[] =
	"usage: imaptap diff A.pcap B.pcap [OPTIONS]\n"
	"\n"
	"Compares two recordings of the same scenario (imaptap's pcaps, or tcpdump\n"
	"captures of plaintext IMAP) at the protocol level, session by session in\n"
	"the order they start: the commands each client sent, in order (aligned by\n"
	"name, so one added or dropped shows as that), and for each its status, its\n"
	"response code and the kinds of untagged response that came while it was in\n"
	"flight ('OK [HIGHESTMODSEQ]', 'EXISTS'); the capabilities each server\n"
	"announced and the extensions ENABLEd; with --time-factor, latencies. Tags,\n"
	"arguments and message data are not compared.\n"
	"\n"
	"options:\n"
	"  --time-factor X          also flag a command X times slower or faster in\n"
	"                           one recording (and by more than --time-floor);\n"
	"                           default: latencies are not compared\n"
	"  --time-floor T           the least difference that counts (default 10ms)\n"
	"  --events FILE|-          also write one JSON record per difference (- for\n"
	"                           standard output, instead of the report)\n"
	"  -q, --quiet              no report: the exit code only\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 no difference, 1 differences (listed), 2 usage error, 3 a\n"
	"recording cannot be read or the events written\n";

enum {
	OPT_FACTOR = 256,
	OPT_FLOOR,
	OPT_EVENTS,
};

static const struct option diff_options[] = {
	{"time-factor", required_argument, NULL, OPT_FACTOR},
	{"time-floor", required_argument, NULL, OPT_FLOOR},
	{"events", required_argument, NULL, OPT_EVENTS},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct diff_args {
	const char *a, *b, *events;
	imap_time_us factor; /* millionths */
	imap_time_us floor;
	bool quiet;
};

/* Returns 0 to go on, -1 after --help, else an exit code. */
static int parse_args(int argc, char **argv, struct diff_args *a)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", diff_options, NULL)) != -1) {
		switch (c) {
		case OPT_FACTOR:
			if (cli_seconds(optarg, 1.0, 1e6, &a->factor) != 0)
				return cli_usage_error("diff", "--time-factor takes a number of at least "
							 "1 (3: three times slower or faster), not '%s'",
						       optarg);
			break;
		case OPT_FLOOR:
			if (cli_duration(optarg, 0, 86400, &a->floor) != 0)
				return cli_usage_error("diff", "--time-floor takes a duration (10ms, 1s), "
							 "not '%s'", optarg);
			break;
		case OPT_EVENTS:
			a->events = optarg;
			break;
		case 'q':
			a->quiet = true;
			break;
		case 'h':
			fputs(diff_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("diff", c, argv, diff_options);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("diff", "two recordings: imaptap diff A.pcap B.pcap");
	a->a = argv[optind];
	a->b = argv[optind + 1];
	return 0;
}

int cli_diff_main(int argc, char **argv)
{
	struct diff_args a = {.floor = 10000};
	struct replay_diff_options o = {0};
	struct replay_diff_result r;
	char err[4096], name_a[300], name_b[300];
	FILE *events = NULL;
	int rc = parse_args(argc, argv, &a);

	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.events != NULL && strcmp(a.events, "-") == 0)
		events = stdout;
	else if (a.events != NULL && (events = fopen(a.events, "w")) == NULL) {
		cli_message("cannot write the events to %s: %s", a.events, strerror(errno));
		return CLI_EXIT_RUNTIME;
	}
	capture_escape(name_a, sizeof(name_a), a.a, strlen(a.a), 0, NULL);
	capture_escape(name_b, sizeof(name_b), a.b, strlen(a.b), 0, NULL);
	o.time_factor = (double)a.factor / 1e6;
	o.time_floor = a.floor;
	o.report = a.quiet || events == stdout ? NULL : stdout;
	o.events = events;
	o.name_a = name_a;
	o.name_b = name_b;
	rc = replay_diff(a.a, a.b, &o, &r, err, sizeof(err));
	if (events != NULL && events != stdout && fclose(events) != 0 && rc == 0) {
		snprintf(err, sizeof(err), "cannot write the events to %s: %s", a.events,
			 strerror(errno));
		rc = -1;
	}
	if (rc != 0) {
		cli_message("%s", err);
		return CLI_EXIT_RUNTIME;
	}
	return r.differences > 0 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}
