/* imaptap export: a recording back into a transcript script that
 * `imaptap compile` turns into the same streams (replay/export.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "imap/sensitive.h"
#include "replay/export.h"

static const char export_usage[] =
	"usage: imaptap export FILE.pcap [-o SCRIPT] [OPTIONS]\n"
	"\n"
	"Writes the sessions of a recording (imaptap's own pcap, or a tcpdump or\n"
	"tshark capture of plaintext IMAP) as a transcript script (docs/script.md):\n"
	"C: and S: lines, literals as C~ and S~ lines, any other bytes as C= and S=\n"
	"lines with escapes, the exact delay before each, closes, resets and closed\n"
	"windows. 'imaptap compile' makes the same streams from it again, so a\n"
	"recording becomes a fixture to read, edit and keep. Bytes are written as the\n"
	"capture holds them: what the proxy masked stays masked; a capture of a\n"
	"client that sent its password in clear has it in the script.\n"
	"\n"
	"options:\n"
	"  -o, --output SCRIPT      where to write the script (default: standard output);\n"
	"                           created mode 0600, never over an existing file\n"
	"                           unless --overwrite\n"
	"  --overwrite              replace SCRIPT if it exists\n"
	"  --session N              only session N (numbered from 1 in the order they\n"
	"                           start, as 'imaptap analyze' shows them)\n"
	"  --since TIME, --until TIME\n"
	"                           only what is stamped in this window\n"
	"                           (2026-12-05T16:20:00Z, or seconds since 1970): a\n"
	"                           session cut by --since starts there (a literal\n"
	"                           already under way as raw bytes), one cut by\n"
	"                           --until ends there\n"
	"  --redact KIND[,KIND...]  replace values a fixture should not carry, each by\n"
	"                           a token of the same length (literal counts stay\n"
	"                           right; the same value gives the same token across\n"
	"                           the file): users (LOGIN's user, SASL exchanges),\n"
	"                           addresses (ENVELOPE addresses and ids, From, To,\n"
	"                           Received and every other header field but Date,\n"
	"                           Subject, MIME-Version and Content-*), subjects\n"
	"                           (ENVELOPE, Subject:), bodies (message text after\n"
	"                           the header block, parts, file names), mailboxes\n"
	"                           (names in commands and LIST, LSUB, STATUS; INBOX\n"
	"                           kept), or all. Tokens keep the syntax: letters for\n"
	"                           letters, digits for digits; delimiters, '@', '.',\n"
	"                           MIME boundaries and header names stay. Where a\n"
	"                           value's place is unclear, every word is replaced\n"
	"                           (repeatable)\n"
	"  --redact-key KEY         draw tokens with this key (HMAC-SHA256): the same\n"
	"                           key and recording give the same script. Without\n"
	"                           it the key is random for each run, so tokens\n"
	"                           cannot be found again by hashing guesses (the\n"
	"                           key is wiped from the command line once read)\n"
	"  -h, --help               this text\n"
	"\n"
	"A script runs its sessions one after the other: sessions that overlapped\n"
	"in the recording are written in order, each marked. Bytes the capture lost\n"
	"cannot be written: a comment marks where.\n"
	"\n"
	"exit codes: 0 written; 1 written, but the capture lost bytes (named on\n"
	"standard error); 2 usage error (also: SCRIPT exists, no such session,\n"
	"nothing in the window); 3 the capture cannot be read or the script written\n";

enum {
	OPT_SESSION = 256,
	OPT_OVERWRITE,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_REDACT,
	OPT_REDACT_KEY,
};

static const struct option export_options[] = {
	{"output", required_argument, NULL, 'o'},
	{"overwrite", no_argument, NULL, OPT_OVERWRITE},
	{"session", required_argument, NULL, OPT_SESSION},
	{"since", required_argument, NULL, OPT_SINCE},
	{"until", required_argument, NULL, OPT_UNTIL},
	{"redact", required_argument, NULL, OPT_REDACT},
	{"redact-key", required_argument, NULL, OPT_REDACT_KEY},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct export_args {
	const char *capture;
	const char *output;
	bool overwrite;
	unsigned session;
	imap_time_us since, until; /* -1: open */
	unsigned redact;           /* enum imap_sens_kind bits */
	const char *redact_key;    /* key, once given */
	char key[1024];
};

static int parse_redact(const char *list, struct export_args *a)
{
	unsigned kinds;
	size_t bad;

	if (imap_sens_kinds_parse(list, &kinds, &bad) != 0)
		return cli_usage_error("export", "--redact takes users, addresses, subjects, bodies, "
					 "mailboxes or all, separated by commas, not '%.40s'",
				       list + bad);
	a->redact |= kinds;
	return 0;
}

/* Returns 0 to go on, -1 after --help, else an exit code. */
static int parse_args(int argc, char **argv, struct export_args *a)
{
	unsigned long long n;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":ho:", export_options, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->output = optarg;
			break;
		case OPT_OVERWRITE:
			a->overwrite = true;
			break;
		case OPT_SESSION:
			if (cli_number(optarg, 1, 1000000000, &n) != 0)
				return cli_usage_error("export", "--session takes a session number from 1, "
							 "not '%s'", optarg);
			a->session = (unsigned)n;
			break;
		case OPT_SINCE:
		case OPT_UNTIL:
			if (cli_timestamp(optarg, c == OPT_SINCE ? &a->since : &a->until) != 0)
				return cli_usage_error("export", "--%s takes a time: 2026-12-05T16:20:00Z "
							 "(ISO 8601; without a zone, local time) or seconds "
							 "since 1970, not '%s'",
						       c == OPT_SINCE ? "since" : "until", optarg);
			break;
		case OPT_REDACT:
			if ((rc = parse_redact(optarg, a)) != 0)
				return rc;
			break;
		case OPT_REDACT_KEY:
			if (strlen(optarg) >= sizeof(a->key))
				return cli_usage_error("export", "--redact-key: at most %zu bytes",
						       sizeof(a->key) - 1);
			strcpy(a->key, optarg);
			a->redact_key = a->key;
			/* the copy is what is used: the command line ps shows loses it */
			explicit_bzero(optarg, strlen(optarg));
			break;
		case 'h':
			fputs(export_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("export", c, argv, export_options);
		}
	}
	if (optind >= argc)
		return cli_usage_error("export", "which recording? imaptap export FILE.pcap -o SCRIPT");
	if (optind + 1 < argc)
		return cli_usage_error("export", "one recording at a time, not '%s' too", argv[optind + 1]);
	a->capture = argv[optind];
	if (a->since >= 0 && a->until >= 0 && a->since > a->until)
		return cli_usage_error("export", "--since comes after --until: nothing to export");
	if (a->redact_key != NULL && a->redact == 0)
		return cli_usage_error("export", "--redact-key without --redact: say what to redact");
	if (a->redact_key != NULL && a->redact_key[0] == '\0')
		return cli_usage_error("export", "--redact-key takes a key that is not empty");
	if (a->output != NULL && strcmp(a->output, "-") == 0)
		a->output = NULL;
	return 0;
}

/* A new file next to path, mode 0600, renamed over path once whole: a
 * failed export leaves no half script. */
static FILE *open_output(const struct export_args *a, char *tmp, size_t size)
{
	int fd;
	FILE *f;

	snprintf(tmp, size, "%s.XXXXXX", a->output);
	fd = mkstemp(tmp);
	if (fd < 0) {
		cli_message("cannot write the script %s: %s", a->output, strerror(errno));
		return NULL;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		cli_message("cannot write the script %s: %s", a->output, strerror(errno));
		close(fd);
		unlink(tmp);
	}
	return f;
}

static void report(const struct export_args *a, const struct replay_export_result *r)
{
	if (r->overlapped > 0)
		cli_message("note: %u session(s) began before the one before them ended; the script "
			    "runs them one after the other", r->overlapped);
	if (r->gap_bytes > 0)
		cli_message("%s lost %llu byte(s) in %u session(s): the script marks where with a "
			    "comment, and cannot hold them", a->capture, (unsigned long long)r->gap_bytes,
			    r->gap_sessions);
}

int cli_export_main(int argc, char **argv)
{
	struct export_args a = {.since = -1, .until = -1};
	struct replay_export_options o = {0};
	struct replay_export_result r;
	char err[4096], tmp[4096];
	FILE *out = stdout;
	int rc = parse_args(argc, argv, &a);

	struct stat st;

	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.output != NULL && !a.overwrite && lstat(a.output, &st) == 0) {
		cli_message("%s exists: give another -o, or --overwrite to replace it", a.output);
		return CLI_EXIT_USAGE;
	}
	if (a.output != NULL && (out = open_output(&a, tmp, sizeof(tmp))) == NULL)
		return CLI_EXIT_RUNTIME;
	o.session = a.session;
	o.source = a.capture;
	o.since = a.since;
	o.until = a.until;
	o.redact = a.redact;
	o.redact_key = a.redact_key;
	rc = replay_export(a.capture, &o, out, &r, err, sizeof(err));
	if (a.output != NULL) {
		if (fclose(out) != 0 && rc == 0) {
			snprintf(err, sizeof(err), "cannot write the script %s: %s", a.output,
				 strerror(errno));
			rc = -1;
		}
		if (rc == 0 && rename(tmp, a.output) != 0) {
			snprintf(err, sizeof(err), "cannot write the script %s: %s", a.output,
				 strerror(errno));
			rc = -1;
		}
		if (rc != 0)
			unlink(tmp);
	}
	if (rc != 0) {
		cli_message("%s", err);
		/* the options chose nothing: a usage error, as a bad flag */
		return r.sessions > 0 && r.written == 0 &&
				       (a.session > 0 || a.since >= 0 || a.until >= 0)
			       ? CLI_EXIT_USAGE
			       : CLI_EXIT_RUNTIME;
	}
	report(&a, &r);
	return r.gap_bytes > 0 ? CLI_EXIT_CHECK : CLI_EXIT_OK;
}
