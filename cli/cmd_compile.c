/* imaptap compile: a transcript script (docs/script.md) into a recording,
 * written by the same conversation and pcap writer as the live proxy's. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "capture/observed.h"
#include "capture/pcap_writer.h"
#include "capture/sink.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "replay/script.h"

/* 2026-01-01T00:00:00Z: the same script always makes the same file */
#define DEFAULT_START_US (1767225600ll * IMAP_US_PER_S)
#define SCRIPT_MAX (1024ull * 1024 * 1024 + 1024 * 1024)

static const char compile_usage[] =
	"usage: imaptap compile SCRIPT -o FILE.pcap [OPTIONS]\n"
	"\n"
	"Turns a transcript script (C: and S: lines with delays, docs/script.md) into\n"
	"a pcap like the proxy's: a TCP stream per session with its handshake, one\n"
	"segment per IMAP line or literal, stamped at the script's times. Wireshark\n"
	"reads it, 'imaptap analyze' reports it, the replay harness plays it. Bytes\n"
	"are written exactly as the script gives them (nothing is masked).\n"
	"\n"
	"options:\n"
	"  -o, --output FILE.pcap   where to write the recording (required; -: standard\n"
	"                           output, | tshark -r -)\n"
	"  --start EPOCH            time of the first session's start, in seconds since\n"
	"                           1970 (default 1767225600, 2026-01-01T00:00:00Z)\n"
	"  -h, --help               this text\n"
	"\n"
	"exit codes: 0 written, 2 usage error or a malformed script (the message\n"
	"names FILE:LINE:COLUMN), 3 the script cannot be read or the pcap written\n";

enum {
	OPT_START = 256,
};

static const struct option compile_options[] = {
	{"output", required_argument, NULL, 'o'},
	{"start", required_argument, NULL, OPT_START},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

struct compile_args {
	const char *script;
	const char *output;
	imap_time_us start;
};

/* Returns 0 to go on, -1 after --help, else an exit code. */
static int parse_args(int argc, char **argv, struct compile_args *a)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":ho:", compile_options, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->output = optarg;
			break;
		case OPT_START:
			if (cli_seconds(optarg, 0, 4102444800.0, &a->start) != 0)
				return cli_usage_error("compile",
						       "--start takes seconds since 1970 (up to 2100), not '%s'",
						       optarg);
			break;
		case 'h':
			fputs(compile_usage, stdout);
			return -1;
		case ':':
		default:
			return cli_option_error("compile", c, argv, compile_options);
		}
	}
	if (optind >= argc)
		return cli_usage_error("compile", "which script? imaptap compile SCRIPT -o FILE.pcap");
	if (optind + 1 < argc)
		return cli_usage_error("compile", "one script at a time, not '%s' too", argv[optind + 1]);
	a->script = argv[optind];
	if (a->output == NULL)
		return cli_usage_error("compile", "where to? -o FILE.pcap is required");
	return 0;
}

/* The whole file in *text_r (NUL-terminated). Returns 0, or -1 with a
 * message in err. */
static int read_script(const char *path, char **text_r, size_t *len_r, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;

	if (fp == NULL) {
		snprintf(err, errlen, "cannot read the script %s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t n;

		if (cap - len < 65536) {
			char *grown;

			cap = cap ? cap * 2 : 65536 * 2;
			if (cap > SCRIPT_MAX) {
				snprintf(err, errlen, "the script %s is larger than %llu bytes", path,
					 (unsigned long long)SCRIPT_MAX);
				goto fail;
			}
			grown = realloc(text, cap + 1);
			if (grown == NULL) {
				snprintf(err, errlen, "out of memory reading the script %s", path);
				goto fail;
			}
			text = grown;
		}
		n = fread(text + len, 1, cap - len, fp);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "cannot read the script %s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(fp);
	text[len] = '\0';
	*text_r = text;
	*len_r = len;
	return 0;
fail:
	fclose(fp);
	free(text);
	return -1;
}

struct compile_session {
	struct observed_session *observed;
	imap_time_us opened;
};

static void log_write_failure(void *ctx, const char *message)
{
	bool *failed = ctx;

	*failed = true;
	cli_message("%s", message);
}

/* Plays the script's events into the sinks, as the proxy would have seen
 * them. Returns 0, or -1 when out of memory. */
static int play(const struct replay_script *script, imap_time_us start,
		const struct capture_sinks *sinks)
{
	/* sessions follow one another: one is open at a time */
	struct compile_session s = {0};
	struct imap_conv_config cc = {.rules = false};

	for (size_t i = 0; i < script->count; i++) {
		const struct replay_script_event *e = &script->events[i];
		imap_time_us ts = start + e->at;

		if (s.observed == NULL && e->kind != REPLAY_SCRIPT_OPEN)
			continue; /* the parser opens a session before its events */
		switch (e->kind) {
		case REPLAY_SCRIPT_OPEN: {
			struct capture_session_info info = {.id = e->session, .ts = ts,
							    .upstream_tls = "plain"};

			s.opened = ts;
			capture_endpoint_parse(e->client, &info.client);
			capture_endpoint_parse(e->server, &info.upstream);
			info.local = info.upstream;
			s.observed = observed_open(sinks, &info, &cc, NULL);
			if (s.observed == NULL)
				return -1;
			break;
		}
		case REPLAY_SCRIPT_DATA:
			observed_feed(s.observed, e->dir, ts, IMAP_ORIGIN_PEER, e->data, e->len);
			break;
		case REPLAY_SCRIPT_WINDOW:
			observed_flow(s.observed, ts, e->dir, e->blocked, 0);
			break;
		case REPLAY_SCRIPT_CLOSE: {
			struct capture_close_info info = {
				.id = e->session,
				.ts = ts,
				.opened = s.opened,
				.by = e->dir == IMAP_C2S ? CAPTURE_SIDE_CLIENT : CAPTURE_SIDE_SERVER,
				.end = e->reset ? CAPTURE_END_RESET : CAPTURE_END_EOF,
				.reason = e->reset ? "reset" : "EOF",
			};

			observed_close(&s.observed, &info);
			break;
		}
		}
		capture_sinks_flush(sinks);
	}
	observed_discard(&s.observed);
	return 0;
}

int cli_compile_main(int argc, char **argv)
{
	struct compile_args a = {.start = DEFAULT_START_US};
	struct capture_sinks sinks = {0};
	struct capture_sink sink;
	struct replay_script *script = NULL;
	bool write_failed = false;
	struct capture_pcap_config pc = {.log = log_write_failure, .log_ctx = &write_failed};
	char err[4096];
	char *text;
	size_t len;
	int rc;

	rc = parse_args(argc, argv, &a);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (read_script(a.script, &text, &len, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		return CLI_EXIT_RUNTIME;
	}
	rc = replay_script_parse(a.script, text, len, &script, err, sizeof(err));
	free(text);
	if (rc != 0) {
		cli_message("%s", err);
		return CLI_EXIT_USAGE;
	}
	pc.path = a.output;
	pc.mode = CAPTURE_OUTFILE_OVERWRITE; /* a build product: made anew each time */
	if (capture_pcap_writer_new(&pc, &sink, NULL, err, sizeof(err)) != 0) {
		cli_message("%s", err);
		replay_script_free(&script);
		return CLI_EXIT_RUNTIME;
	}
	capture_sinks_add(&sinks, sink);
	rc = play(script, a.start, &sinks);
	replay_script_free(&script);
	capture_sinks_destroy(&sinks);
	if (rc != 0) {
		cli_message("out of memory compiling %s", a.script);
		return CLI_EXIT_RUNTIME;
	}
	return write_failed ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
}
