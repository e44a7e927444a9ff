/* imaptap analyze: a capture file through the same framer, tracker and
 * outputs as the live proxy. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "capture/events.h"
#include "capture/offline.h"
#include "capture/timeline.h"
#include "capture/totals.h"
#include "capture/window.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "imap/redact.h"

static const char analyze_usage[] =
	"usage: imaptap analyze FILE [OPTIONS]\n"
	"\n"
	"Reads a capture (pcap or pcapng: imaptap's own --pcap, or tcpdump/tshark/\n"
	"Wireshark captures, Ethernet, Linux cooked 'any', raw IP or loopback) and\n"
	"prints the timeline of every TCP session in it, the same rows the live\n"
	"proxy prints. Bytes missing from the capture are reported. TLS sessions\n"
	"(implicit TLS and STARTTLS; TLS 1.2 and 1.3 with AES-GCM or\n"
	"ChaCha20-Poly1305) are decrypted with the client's key log (--keylog) or\n"
	"the secrets a pcapng holds itself; a session without its secrets is named,\n"
	"with what to do.\n"
	"A capture made by imaptap proxy records the thresholds it ran with; they\n"
	"stand in for every rule threshold not given here (docs/capture.md).\n"
	"\n"
	"options:\n"
	"  --keylog FILE            the TLS key log the client wrote (SSLKEYLOGFILE=FILE\n"
	"                           for curl, Thunderbird, Firefox; keylog_filename in\n"
	"                           Python's ssl): decrypts the TLS sessions it has\n"
	"                           secrets for (docs/capture.md)\n"
	"  --session N[,M...]       only these sessions (numbered from 1 in the order\n"
	"                           they start)\n"
	"  --since TIME, --until TIME\n"
	"                           show only rows and records stamped in this window\n"
	"                           (2026-12-05T16:20:00Z, or seconds since 1970); the\n"
	"                           rules still judge the whole capture\n"
	"  --utc                    the timeline's clock in UTC, not local time\n"
	"  --width N                bytes of a line a row shows (default 400; 0: whole\n"
	"                           lines); the rest is summed up as '... (N bytes)'\n"
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
	"  --anomalies-only         timeline rows only for anomalies and their\n"
	"                           resolutions, sessions opening and closing, summaries\n"
	"  --quiet                  no timeline rows (the verdict, --fail-on and errors\n"
	"                           still speak)\n"
	"  --color auto|always|never  colour the timeline (default auto)\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 read (and no --fail-on rule fired), 1 a --fail-on rule fired,\n"
	"2 usage error, 3 the file or key log cannot be read, or nothing in the\n"
	"capture reads as IMAP (TLS sessions without their secrets, say)\n";

enum {
	OPT_SESSION = 256,
	OPT_EVENTS,
	OPT_NO_REDACT,
	OPT_REDACT_BODIES,
	OPT_MAX_LINE,
	OPT_QUIET,
	OPT_ANOMALIES_ONLY,
	OPT_WIDTH,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_UTC,
	OPT_COLOR,
	OPT_FAIL_ON,
	OPT_RULE_THRESHOLD,
	OPT_NO_RULES,
	OPT_OVERWRITE,
	OPT_APPEND,
	OPT_KEYLOG,
};

static const struct option analyze_options[] = {
	{"session", required_argument, NULL, OPT_SESSION},
	{"events", required_argument, NULL, OPT_EVENTS},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"redact-bodies", no_argument, NULL, OPT_REDACT_BODIES},
	{"max-line", required_argument, NULL, OPT_MAX_LINE},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"anomalies-only", no_argument, NULL, OPT_ANOMALIES_ONLY},
	{"width", required_argument, NULL, OPT_WIDTH},
	{"since", required_argument, NULL, OPT_SINCE},
	{"until", required_argument, NULL, OPT_UNTIL},
	{"utc", no_argument, NULL, OPT_UTC},
	{"color", required_argument, NULL, OPT_COLOR},
	{"fail-on", required_argument, NULL, OPT_FAIL_ON},
	{"stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"done-stall", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"idle-max", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"keepalive-gap", required_argument, NULL, OPT_RULE_THRESHOLD},
	{"no-rules", no_argument, NULL, OPT_NO_RULES},
	{"overwrite", no_argument, NULL, OPT_OVERWRITE},
	{"append", no_argument, NULL, OPT_APPEND},
	{"keylog", required_argument, NULL, OPT_KEYLOG},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

#define SESSIONS_MAX 64

struct analyze_args {
	const char *file;
	const char *events;
	const char *color;
	const char *keylog;
	unsigned sessions[SESSIONS_MAX]; /* --session N,M,... */
	size_t session_count;
	imap_time_us since, until;       /* --since, --until; -1 open */
	bool utc;
	size_t width;
	bool width_given;
	size_t max_line;
	int no_redact;
	int redact_bodies;
	int quiet;
	int anomalies_only;
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
/* --session 3 or --session 1,4,7 */
static int session_list(struct analyze_args *a, const char *text)
{
	char buf[512], *save = NULL;
	unsigned long long v;

	if (snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf))
		return cli_usage_error("analyze", "--session: too long a list");
	for (char *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
		if (cli_number(w, 1, 1u << 30, &v) != 0 || a->session_count == SESSIONS_MAX)
			return cli_usage_error("analyze", "--session takes numbers from 1, "
					       "comma-separated (at most %d), not '%s'", SESSIONS_MAX,
					       text);
		a->sessions[a->session_count++] = (unsigned)v;
	}
	if (a->session_count == 0)
		return cli_usage_error("analyze", "--session takes a number from 1, not '%s'", text);
	return 0;
}

/* The options that take a value with a meaning (times, numbers, lists):
 * 0, or a usage error's exit code; 1 when c is none of them. */
static int valued_option(struct analyze_args *a, int c, int index)
{
	unsigned long long v;
	char flag[32];

	switch (c) {
	case OPT_FAIL_ON:
		return parse_fail_on(optarg, a);
	case OPT_RULE_THRESHOLD:
		snprintf(flag, sizeof(flag), "--%s", analyze_options[index].name);
		return cli_rules_option("analyze", flag, optarg, &a->thresholds);
	case OPT_SESSION:
		return session_list(a, optarg);
	case OPT_SINCE:
	case OPT_UNTIL:
		if (cli_timestamp(optarg, c == OPT_SINCE ? &a->since : &a->until) != 0)
			return cli_usage_error("analyze", "--%s takes a time: 2026-12-05T16:20:00Z "
					       "(ISO 8601; without a zone, local time; a fraction and "
					       "+HH:MM allowed) or seconds since 1970, not '%s'",
					       c == OPT_SINCE ? "since" : "until", optarg);
		return 0;
	case OPT_WIDTH:
		if (cli_number(optarg, 0, 1ull << 26, &v) != 0)
			return cli_usage_error("analyze", "--width takes a number of bytes (0: "
					       "whole lines), not '%s'", optarg);
		a->width = (size_t)v;
		a->width_given = true;
		return 0;
	case OPT_MAX_LINE:
		if (cli_number(optarg, 64, 64ull * 1024 * 1024, &v) != 0)
			return cli_usage_error("analyze", "--max-line takes a number of bytes from 64 "
					       "to 67108864, not '%s'", optarg);
		a->max_line = (size_t)v;
		return 0;
	default:
		return 1;
	}
}

/* The options that only switch something on or name a file. */
static bool plain_option(struct analyze_args *a, int c)
{
	switch (c) {
	case OPT_NO_RULES:
		a->no_rules = 1;
		return true;
	case OPT_UTC:
		a->utc = true;
		return true;
	case OPT_EVENTS:
		a->events = optarg;
		return true;
	case OPT_KEYLOG:
		a->keylog = optarg;
		return true;
	case OPT_NO_REDACT:
		a->no_redact = 1;
		return true;
	case OPT_REDACT_BODIES:
		a->redact_bodies = 1;
		return true;
	case OPT_QUIET:
		a->quiet = 1;
		return true;
	case OPT_ANOMALIES_ONLY:
		a->anomalies_only = 1;
		return true;
	case OPT_COLOR:
		a->color = optarg;
		return true;
	case OPT_OVERWRITE:
		a->overwrite = true;
		return true;
	case OPT_APPEND:
		a->append = true;
		return true;
	default:
		return false;
	}
}

static int parse_args(int argc, char **argv, struct analyze_args *a)
{
	int c, index = 0, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", analyze_options, &index)) != -1) {
		if (plain_option(a, c))
			continue;
		if (c == 'h') {
			fputs(analyze_usage, stdout);
			return -1;
		}
		rc = valued_option(a, c, index);
		if (rc == 1)
			return cli_option_error("analyze", c, argv, analyze_options);
		if (rc != 0)
			return rc;
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
		      struct cli_fresh_files *made, struct capture_totals **totals_r)
{
	struct capture_sink sink;

	if (!a->quiet) {
		/* stdout carries one thing: the event log when it goes there */
		struct capture_timeline_config tc = {
			.out = events_to_stdout(a) ? stderr : stdout,
			.color = color != 0,
			.settings = true,
			.utc = a->utc,
			.max_text = a->width,
			.whole_lines = a->width_given && a->width == 0,
			.anomalies_only = a->anomalies_only != 0,
		};

		sink = capture_timeline_new(&tc);
		if (sink.ops == NULL) {
			cli_message("out of memory");
			return -1;
		}
		capture_sinks_add(sinks, sink);
	}
	/* what the whole capture comes to, for the outputs after the sessions */
	*totals_r = capture_totals_new(&sink);
	if (*totals_r == NULL) {
		cli_message("out of memory");
		return -1;
	}
	capture_sinks_add(sinks, sink);
	if (a->events != NULL &&
	    cli_add_event_log(sinks, a->events, a->overwrite, a->append, "analyze", log_message,
			      made) != 0)
		return -1;
	/* --since/--until narrow what is shown; the totals keep the whole capture */
	for (unsigned i = 0; i < sinks->count && (a->since >= 0 || a->until >= 0); i++) {
		if (*totals_r != NULL && sinks->sink[i].self == *totals_r)
			continue;
		if (capture_window_wrap(sinks->sink[i], a->since, a->until, &sinks->sink[i]) != 0) {
			cli_message("out of memory");
			return -1;
		}
	}
	return 0;
}

static unsigned highest_session(const struct analyze_args *a)
{
	unsigned high = 0;

	for (size_t i = 0; i < a->session_count; i++)
		if (a->sessions[i] > high)
			high = a->sessions[i];
	return high;
}

/* TLS sessions not decrypted, each named on the timeline, summed up here.
 * Returns -1 when nothing in the capture could be read: no IMAP came out
 * of its TLS. */
static int tls_verdict(const struct analyze_args *a, const struct capture_offline_result *result)
{
	unsigned missing = result->tls_no_secrets, failed = result->tls_failed;

	if (result->keylog_bad_lines > 0)
		cli_message("%s: %zu line(s) of the key log do not read (wrong lengths, not hex) and "
			    "are skipped", a->keylog != NULL ? a->keylog : a->file,
			    result->keylog_bad_lines);
	if (missing > 0)
		cli_message("%s: %u session(s) hold IMAP inside TLS that cannot be read without their "
			    "session keys: %s; give --keylog FILE, the key log the client wrote with "
			    "SSLKEYLOGFILE=FILE, or record the plain side with imaptap proxy --pcap "
			    "(the timeline names each session)",
			    a->file, missing, result->keylog_secrets == 0
					      ? "no key log given, and the capture holds no secrets"
					      : "the key log holds none for them");
	if (failed > 0)
		cli_message("%s: %u TLS session(s) undecryptable (the timeline says from where and "
			    "why)", a->file, failed);
	if (result->tls_sessions == 0 || result->imap_lines > 0 || result->tls_decrypted > 0)
		return 0; /* decrypted, yet no IMAP: the verdict on plain sessions says it */
	if (missing == 0 && failed == 0 && result->tls_decrypted == 0)
		cli_message("%s: its %u session(s) hold IMAP inside TLS but end before their "
			    "handshake does: nothing to decrypt", a->file, result->tls_sessions);
	return -1;
}

/* What the reading found that the user must know; the exit code. */
static int verdict(const struct analyze_args *a, const struct capture_offline_result *result)
{
	if (highest_session(a) > result->sessions) {
		cli_message("%s has %u TCP session(s); there is no session %u", a->file,
			    result->sessions, highest_session(a));
		return CLI_EXIT_USAGE;
	}
	if (result->sessions == 0)
		cli_message("%s: no TCP sessions in %llu packet(s)", a->file,
			    (unsigned long long)result->stats.packets);
	if (tls_verdict(a, result) != 0)
		return CLI_EXIT_RUNTIME;
	if (result->data_bytes > 0 && result->imap_lines == 0) {
		cli_message("%s: %u TCP session(s), but no IMAP in them: is it the right port?",
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
	struct analyze_args a = {.color = "auto", .since = -1, .until = -1};
	struct capture_offline_config config = {0};
	struct capture_offline_result result;
	struct capture_sinks sinks = {0};
	struct cli_fresh_files made = {0};
	struct capture_totals *totals = NULL;
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
	if (a.since >= 0 && a.until >= 0 && a.since > a.until)
		return cli_usage_error("analyze", "--since comes after --until: nothing to show");
	if (a.quiet && a.anomalies_only)
		return cli_usage_error("analyze", "--quiet shows no rows, --anomalies-only some: "
				       "choose one");
	config.sessions = a.sessions;
	config.session_count = a.session_count;
	config.max_line = a.max_line;
	config.redact_flags = (a.no_redact ? 0 : IMAP_REDACT_CREDENTIALS) |
			      (a.redact_bodies ? IMAP_REDACT_BODIES : 0);
	config.no_rules = a.no_rules;
	config.thresholds = a.thresholds;
	config.keylog = a.keylog;
	if (open_sinks(&a, color, &sinks, &made, &totals) != 0) {
		capture_sinks_destroy(&sinks);
		cli_fresh_remove(&made);
		return CLI_EXIT_RUNTIME;
	}
	rc = capture_offline_run(a.file, &config, &sinks, &result, err, sizeof(err));
	if (rc == 0 && totals != NULL && result.shown > 0) {
		capture_sinks_whole(&sinks, result.last_ts, capture_totals_get(totals));
		capture_sinks_flush(&sinks);
	}
	capture_sinks_destroy(&sinks);
	fflush(stdout);
	if (rc != 0) {
		cli_message("%s", err);
		cli_fresh_remove(&made); /* nothing was read: no log of it */
		return CLI_EXIT_RUNTIME;
	}
	return verdict(&a, &result);
}
