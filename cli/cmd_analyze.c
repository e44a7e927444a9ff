/* imaptap analyze: a capture file through the same framer, tracker and
 * outputs as the live proxy. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "capture/events.h"
#include "capture/offline.h"
#include "capture/timeline.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "imap/redact.h"

static const char analyze_usage[] =
	"usage: imaptap analyze FILE [OPTIONS]\n"
	"\n"
	"Reads a capture (pcap or pcapng: imaptap's own --pcap, or tcpdump/tshark/\n"
	"Wireshark captures of plaintext IMAP, Ethernet, Linux cooked 'any', raw IP\n"
	"or loopback) and prints the timeline of every TCP session in it, the same\n"
	"rows the live proxy prints. Bytes missing from the capture are reported.\n"
	"A capture made by imaptap proxy records the thresholds it ran with; they\n"
	"stand in for every rule threshold not given here (docs/capture.md).\n"
	"\n"
	"options:\n"
	"  --session N              only the N-th session (numbered from 1 in the order\n"
	"                           they start)\n"
	"  --fail-on RULE[,RULE...]|all\n"
	"                           exit 1 when one of these rules fired (docs/rules.md)\n"
	CLI_RULES_HELP
	"  --no-rules               timeline only, no anomaly rules\n"
	"  --events FILE|-          also write the JSONL event log (docs/events.md); with -\n"
	"                           it takes stdout and the timeline goes to stderr\n"
	"  --overwrite              replace an --events file that holds an earlier run\n"
	"  --append                 add this run's records to an existing --events file\n"
	"  --no-redact              show passwords and SASL data found in the capture\n"
	"  --redact-bodies          mask literal bytes in the event log as well\n"
	"  --max-line BYTES         observe at most BYTES of one line (default: the\n"
	"                           capture's recorded setting, else 65536)\n"
	"  --quiet                  no timeline rows\n"
	"  --color auto|always|never  colour the timeline (default auto)\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 read (and no --fail-on rule fired), 1 a --fail-on rule fired,\n"
	"2 usage error, 3 the file cannot be read\n";

enum {
	OPT_SESSION = 256,
	OPT_EVENTS,
	OPT_NO_REDACT,
	OPT_REDACT_BODIES,
	OPT_MAX_LINE,
	OPT_QUIET,
	OPT_COLOR,
	OPT_FAIL_ON,
	OPT_RULE_THRESHOLD,
	OPT_NO_RULES,
	OPT_OVERWRITE,
	OPT_APPEND,
};

static const struct option analyze_options[] = {
	{"session", required_argument, NULL, OPT_SESSION},
	{"events", required_argument, NULL, OPT_EVENTS},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"redact-bodies", no_argument, NULL, OPT_REDACT_BODIES},
	{"max-line", required_argument, NULL, OPT_MAX_LINE},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"color", required_argument, NULL, OPT_COLOR},
	{"fail-on", required_argument, NULL, OPT_FAIL_ON},
	{"stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"done-stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"idle-max", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"keepalive-gap", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"no-rules", no_argument, NULL, OPT_NO_RULES},
	{"overwrite", no_argument, NULL, OPT_OVERWRITE},
	{"append", no_argument, NULL, OPT_APPEND},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct analyze_args {
	const char *file;
	const char *events;
	const char *color;
	unsigned session;
	size_t max_line;
	int no_redact;
	int redact_bodies;
	int quiet;
	int no_rules;
	bool fail_on[IMAP_RULE_COUNT];
	bool fail_any;
	bool overwrite;
	bool append;
	struct imap_tracker_config thresholds;
};

/* "done-stall,command-stall" or "all" */
static int parse_fail_on(const char *list, struct analyze_args *a)
{
	const char *p = list;

	if (strcmp(list, "all") == 0) {
		for (unsigned i = 0; i < IMAP_RULE_COUNT; i++)
			a->fail_on[i] = true;
		a->fail_any = true;
		return 0;
	}
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		enum imap_rule rule;

		if (!imap_rule_parse(p, n, &rule))
			return cli_usage_error("analyze",
					       "--fail-on: no rule '%.*s' (rule ids are listed in docs/rules.md; "
					       "or 'all')",
					       (int)n, p);
		a->fail_on[rule] = true;
		a->fail_any = true;
		p += n;
		if (*p == ',')
			p++;
	}
	if (!a->fail_any)
		return cli_usage_error("analyze", "--fail-on needs rule ids or 'all'");
	return 0;
}

/* Returns 0 to go on, -1 after --help, else an exit code. */
static int parse_args(int argc, char **argv, struct analyze_args *a)
{
	unsigned long long v;
	int c, index = 0, rc;
	char flag[32];

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", analyze_options, &index)) != -1) {
		switch (c) {
		case OPT_FAIL_ON:
			rc = parse_fail_on(optarg, a);
			if (rc != 0)
				return rc;
			break;
		case OPT_RULE_THRESHOLD:
			snprintf(flag, sizeof(flag), "--%s", analyze_options[index].name);
			rc = cli_rules_option("analyze", flag, optarg, &a->thresholds);
			if (rc != 0)
				return rc;
			break;
		case OPT_NO_RULES:
			a->no_rules = 1;
			break;
		case OPT_SESSION:
			if (cli_number(optarg, 1, 1u << 30, &v) != 0)
				return cli_usage_error("analyze", "--session takes a number from 1, not '%s'",
						       optarg);
			a->session = (unsigned)v;
			break;
		case OPT_EVENTS:
			a->events = optarg;
			break;
		case OPT_NO_REDACT:
			a->no_redact = 1;
			break;
		case OPT_REDACT_BODIES:
			a->redact_bodies = 1;
			break;
		case OPT_MAX_LINE:
			if (cli_number(optarg, 64, 64ull * 1024 * 1024, &v) != 0)
				return cli_usage_error("analyze",
						       "--max-line takes a number of bytes from 64 to 67108864, not '%s'",
						       optarg);
			a->max_line = (size_t)v;
			break;
		case OPT_QUIET:
			a->quiet = 1;
			break;
		case OPT_COLOR:
			a->color = optarg;
			break;
		case OPT_OVERWRITE:
			a->overwrite = true;
			break;
		case OPT_APPEND:
			a->append = true;
			break;
		case 'h':
			fputs(analyze_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("analyze", c, argv, analyze_options);
		}
	}
	if (optind >= argc)
		return cli_usage_error("analyze", "which capture file? imaptap analyze FILE");
	if (optind + 1 < argc)
		return cli_usage_error("analyze", "one capture file at a time, not '%s' too",
				       argv[optind + 1]);
	a->file = argv[optind];
	return cli_output_flags("analyze", a->overwrite, a->append, NULL, a->events);
}

static void log_message(void *ctx, const char *message)
{
	(void)ctx;
	cli_message("%s", message);
}

/* --fail-on: the rules asked for that fired, by count. */
static int fail_on_verdict(const struct analyze_args *a, const struct capture_offline_result *result)
{
	char fired[1024] = "";
	size_t len = 0;

	for (unsigned i = 0; i < IMAP_RULE_COUNT; i++) {
		if (!a->fail_on[i] || result->fired[i] == 0 || len >= sizeof(fired) - 64)
			continue;
		len += (size_t)snprintf(fired + len, sizeof(fired) - len, "%s%s %u", len ? ", " : "",
					imap_rule_id((enum imap_rule)i), result->fired[i]);
	}
	if (len == 0)
		return CLI_EXIT_OK;
	cli_message("%s: --fail-on rule(s) fired: %s", a->file, fired);
	return CLI_EXIT_CHECK;
}

static bool events_to_stdout(const struct analyze_args *a)
{
	return a->events != NULL && strcmp(a->events, "-") == 0;
}

/* The timeline (unless --quiet) and the event log (with --events); the
 * timeline on stderr when the event log takes stdout. */
static int open_sinks(const struct analyze_args *a, int color, struct capture_sinks *sinks,
		      struct cli_fresh_files *made)
{
	struct capture_sink sink;

	if (!a->quiet) {
		/* stdout carries one thing: the event log when it goes there */
		struct capture_timeline_config tc = {
			.out = events_to_stdout(a) ? stderr : stdout,
			.color = color != 0,
			.settings = true,
		};

		sink = capture_timeline_new(&tc);
		if (sink.ops == NULL) {
			cli_message("out of memory");
			return -1;
		}
		capture_sinks_add(sinks, sink);
	}
	if (a->events != NULL &&
	    cli_add_event_log(sinks, a->events, a->overwrite, a->append, "analyze", log_message,
			      made) != 0)
		return -1;
	return 0;
}

/* What the reading found that the user must know; the exit code. */
static int verdict(const struct analyze_args *a, const struct capture_offline_result *result)
{
	if (a->session > result->sessions) {
		cli_message("%s has %u TCP session(s); there is no session %u", a->file,
			    result->sessions, a->session);
		return CLI_EXIT_USAGE;
	}
	if (result->sessions == 0)
		cli_message("%s: no TCP sessions in %llu packet(s)", a->file,
			    (unsigned long long)result->stats.packets);
	if (result->data_bytes > 0 && result->imap_lines == 0) {
		cli_message("%s: %u TCP session(s), but no IMAP in them: is it the right port? A TLS "
			    "capture must be decrypted first (tshark with --keylog's file), or "
			    "recorded by imaptap proxy --pcap",
			    a->file, result->shown);
		return CLI_EXIT_RUNTIME;
	}
	if (result->damaged_marks > 0)
		cli_message("%s: %llu fault mark(s) do not read and are left out; the first %s",
			    a->file, (unsigned long long)result->damaged_marks, result->damaged_mark);
	if (result->gaps > 0)
		cli_message("%s: %llu byte(s) missing from the capture; see the capture-gap rows",
			    a->file, (unsigned long long)result->gaps);
	return a->fail_any ? fail_on_verdict(a, result) : CLI_EXIT_OK;
}

int cli_analyze_main(int argc, char **argv)
{
	struct analyze_args a = {.color = "auto"};
	struct capture_offline_config config = {0};
	struct capture_offline_result result;
	struct capture_sinks sinks = {0};
	struct cli_fresh_files made = {0};
	char err[4096];
	int color, rc;

	rc = parse_args(argc, argv, &a);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	color = cli_color_choice(a.color, events_to_stdout(&a) ? stderr : stdout);
	if (color < 0)
		return cli_usage_error("analyze", "--color takes auto, always or never, not '%s'",
				       a.color);
	if (a.no_rules && a.fail_any)
		return cli_usage_error("analyze", "--fail-on needs the rules: drop --no-rules");
	config.session = a.session;
	config.max_line = a.max_line;
	config.redact_flags = (a.no_redact ? 0 : IMAP_REDACT_CREDENTIALS) |
			      (a.redact_bodies ? IMAP_REDACT_BODIES : 0);
	config.no_rules = a.no_rules;
	config.thresholds = a.thresholds;
	if (open_sinks(&a, color, &sinks, &made) != 0) {
		capture_sinks_destroy(&sinks);
		cli_fresh_remove(&made);
		return CLI_EXIT_RUNTIME;
	}
	rc = capture_offline_run(a.file, &config, &sinks, &result, err, sizeof(err));
	capture_sinks_destroy(&sinks);
	fflush(stdout);
	if (rc != 0) {
		cli_message("%s", err);
		cli_fresh_remove(&made); /* nothing was read: no log of it */
		return CLI_EXIT_RUNTIME;
	}
	return verdict(&a, &result);
}
